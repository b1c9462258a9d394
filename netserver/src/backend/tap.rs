//! `--backend tap:NAME`: a TAP interface (created, or attached to when it
//! already exists) — frames the host sends into it are received here, frames
//! sent here reach the host as if from a wire.
//!
//! A TAP cannot show a frame before it is read, so this backend reads each
//! frame into its own server buffer and lends it complete; the placement
//! copies it once (counted `copied`, never `zero_copy`). One `read` per frame:
//! the TAP character device has no batched read.

use std::io;
use std::time::{Duration, Instant};

use super::{now_ns, Backend, RxFrame};
use crate::sys::tun::TapDevice;

/// Largest frame a TAP without offloads hands over: a 64 KiB MTU plus an
/// Ethernet header and a VLAN tag.
const MAX_FRAME: usize = 65536 + 18;

/// The TAP backend.
#[derive(Debug)]
pub struct Tap {
    name: String,
    dev: TapDevice,
    buf: Box<[u8]>,
    received: u64,
    errors: u64,
    last_error_log: Option<Instant>,
}

impl Tap {
    /// Creates TAP interface `name`, or attaches to an existing persistent
    /// one, in the calling thread's network namespace. The interface still
    /// has to be brought up (`ip link set NAME up`) to carry traffic.
    pub fn open(name: &str) -> io::Result<Tap> {
        let dev = TapDevice::open(name)?;
        Ok(Tap {
            name: format!("tap:{}", dev.name()),
            dev,
            buf: vec![0u8; MAX_FRAME].into_boxed_slice(),
            received: 0,
            errors: 0,
            last_error_log: None,
        })
    }

    /// The interface name.
    pub fn iface(&self) -> &str {
        self.dev.name()
    }

    /// Frames received so far (all of them took the copied path).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Sends one frame to the host through the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        self.dev.send(frame)
    }

    fn log_error(&mut self, e: &io::Error) {
        self.errors += 1;
        let now = Instant::now();
        if self
            .last_error_log
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(1))
        {
            self.last_error_log = Some(now);
            tracing::warn!(backend = %self.name, error = %e, "TAP read failed");
        }
    }
}

impl Backend for Tap {
    fn name(&self) -> &str {
        &self.name
    }

    fn send_batch(&mut self, frames: &[&[u8]], on_done: &mut dyn FnMut(usize, io::Result<usize>)) {
        for (i, f) in frames.iter().enumerate() {
            on_done(i, self.dev.send(f));
        }
    }

    fn recv_batch(&mut self, max: usize, deliver: &mut dyn FnMut(&RxFrame<'_>)) -> usize {
        let mut n = 0;
        while n < max {
            match self.dev.recv(&mut self.buf) {
                Ok(len) => {
                    deliver(&RxFrame {
                        data: &self.buf[..len],
                        wire_len: u32::try_from(len).unwrap_or(u32::MAX),
                        ts_ns: now_ns(),
                    });
                    self.received += 1;
                    n += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EIO while the interface is down, for instance.
                    self.log_error(&e);
                    break;
                }
            }
        }
        n
    }

    fn wait(&mut self, timeout: Duration) {
        match self.dev.wait_readable(Some(timeout)) {
            Ok(_) => {}
            Err(e) => {
                self.log_error(&e);
                std::thread::sleep(timeout);
            }
        }
    }
}
