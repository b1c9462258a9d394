//! The emulated NIC: frames arrive through `Operator.inject`.

use std::sync::Arc;
use std::time::Duration;

use super::{now_ns, recv_from_ring, Backend, RxFrame, Wake};
use crate::pool::{RingFull, RxRing};

/// The emulated backend (data-path side).
#[derive(Debug)]
pub struct Emulated {
    ring: Arc<RxRing>,
    /// Frames the server sent on the emulated wire, for `Operator.transmitted`.
    wire: Arc<RxRing>,
    wake: Wake,
}

/// Frames the emulated wire keeps before refusing sends (`ENOBUFS`).
const WIRE_FRAMES: usize = 512;

impl Emulated {
    /// An emulated NIC with a receive ring of `frames` frames.
    pub fn new(frames: usize, frame_size: usize, wake: Wake) -> Emulated {
        Emulated {
            ring: Arc::new(RxRing::new(frames, frame_size)),
            wire: Arc::new(RxRing::new(WIRE_FRAMES, frame_size.max(2048))),
            wake,
        }
    }
}

impl Backend for Emulated {
    fn name(&self) -> &str {
        "emulated"
    }

    fn recv_batch(&mut self, max: usize, deliver: &mut dyn FnMut(&RxFrame<'_>)) -> usize {
        recv_from_ring(&self.ring, max, deliver)
    }

    fn send_batch(
        &mut self,
        frames: &[&[u8]],
        on_done: &mut dyn FnMut(usize, std::io::Result<usize>),
    ) {
        for (i, f) in frames.iter().enumerate() {
            let r = match self.wire.push(f, 0, now_ns()) {
                Ok(_) => Ok(f.len()),
                Err(RingFull) => Err(std::io::Error::from_raw_os_error(libc::ENOBUFS)),
            };
            on_done(i, r);
        }
    }

    fn wait(&mut self, timeout: Duration) {
        if self.ring.pending() == 0 {
            std::thread::park_timeout(timeout);
        }
    }

    fn injector(&self) -> Option<Injector> {
        Some(Injector {
            ring: self.ring.clone(),
            wire: self.wire.clone(),
            wake: self.wake.clone(),
        })
    }
}

/// The control plane's handle for pushing frames into the emulated NIC.
#[derive(Debug, Clone)]
pub struct Injector {
    ring: Arc<RxRing>,
    wire: Arc<RxRing>,
    wake: Wake,
}

impl Injector {
    /// Pushes one frame as if received now; `wire_len` 0 means the data
    /// length. Fails when the receive ring is full (the caller waits and
    /// retries: an injector is a wire that does not lose frames).
    pub fn inject(&self, data: &[u8], wire_len: u32) -> Result<(), RingFull> {
        self.ring.push(data, wire_len, now_ns()).map(|_| ())
    }

    /// Wakes the data path (after a burst of `inject`s).
    pub fn wake(&self) {
        self.wake.wake();
    }

    /// Takes up to `max` frames the server sent on the emulated wire,
    /// oldest first; returns how many.
    pub fn take_transmitted(&self, max: usize, each: &mut dyn FnMut(&[u8])) -> usize {
        let mut n = 0;
        while n < max {
            let Some(rx) = self.wire.pop() else { break };
            each(rx.bytes());
            self.wire.recycle(rx);
            n += 1;
        }
        n
    }

    /// Free frames in the receive ring.
    pub fn room(&self) -> usize {
        self.ring.free()
    }
}
