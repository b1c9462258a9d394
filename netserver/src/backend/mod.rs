//! NIC backends: where received frames come from.
//!
//! The data path owns one [`Backend`] and drives it from its own thread:
//! `recv_batch` lends it each ready frame as an [`RxFrame`] for exactly the
//! duration of one callback, in which the data path classifies the frame and
//! places it (see [`crate::place`]). The frame's memory stays the
//! backend's: a backend that reads into its own frames (the [`RxRing`] of
//! `emulated` and `pcap`, later `tap`) takes the frame back when the callback
//! returns, so a slow client can never hold the receiver's memory.
//!
//! How the next issue's backends slot in:
//!
//! - `af_packet` (TPACKET ring): `recv_batch` walks the kernel ring and lends
//!   each slot in place; the one copy is the placement into the client's
//!   frame. `wait` polls the socket.
//! - *peek then place*: a backend that can show the headers before the
//!   payload is written lends an `RxFrame` whose `data` covers the headers
//!   already read; it will carry a body writer that the placement calls with
//!   the client's frame as destination (one write, counted `zero_copy`).
//!   Classification only ever looks at `data`.
//! - `tap`: reads into an [`RxRing`] like `pcap` does.
//!
//! [`RxRing`]: crate::pool::RxRing

pub mod af_packet;
pub mod emulated;
pub mod generator;
pub mod pcap;
pub mod tap;

use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

/// One received frame, lent to the data path.
#[derive(Debug, Clone, Copy)]
pub struct RxFrame<'a> {
    /// The captured bytes (at most the server's frame size).
    pub data: &'a [u8],
    /// The frame's length on the wire (≥ `data.len()`).
    pub wire_len: u32,
    /// When the server received it, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
}

/// A backend failure (not a client's fault).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    #[error("cannot read capture {path}: {source}")]
    Capture {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("capture {path} is not a pcap file this server can replay: {message}")]
    Format { path: String, message: String },
    #[error(
        "unknown backend {0:?}: use `emulated` or `pcap:FILE` \
         (or `af_packet:IFACE` / `tap:NAME` for a real interface)"
    )]
    Unknown(String),
    #[error("cannot open backend {backend}: {source}")]
    Device {
        backend: String,
        #[source]
        source: std::io::Error,
    },
}

/// A frame to send gathered from two places: `head`, server memory (the
/// validated copy of a client frame's headers), then `rest`, ranges of the
/// client's shared region sent without a copy (see [`crate::txring`]).
#[derive(Debug, Clone, Copy)]
pub struct GatherFrame<'a> {
    pub head: &'a [u8],
    pub rest: &'a [Option<exchange::RawFrame>; 2],
}

/// A source of received frames, driven by the data-path thread.
pub trait Backend: Send {
    /// The backend as `ServerInfo.backend` names it (`emulated`, `pcap:FILE`).
    fn name(&self) -> &str;

    /// Lends up to `max` ready frames to `deliver`, oldest first; returns
    /// how many. Never blocks.
    fn recv_batch(&mut self, max: usize, deliver: &mut dyn FnMut(&RxFrame<'_>)) -> usize;

    /// Blocks for at most `timeout` until frames may be ready or
    /// [`Wake::wake`] is called.
    fn wait(&mut self, timeout: Duration);

    /// Called once by the data-path thread before it starts, with the
    /// [`Wake`] its commands come with. A backend whose `wait` blocks in the
    /// kernel rather than by parking the thread (so `unpark` would not end
    /// it) waits on [`Wake::doorbell`] as well. The default does nothing.
    fn watch_wake(&mut self, _wake: &Wake) {}

    /// Peek then place (for shared-mode clients): lends up to `max` frames
    /// like [`recv_batch`](Self::recv_batch), but a frame may come with only
    /// its head in `data` and a [`af_packet::FrameBody`] that writes the
    /// whole frame once into the destination the placement chooses (a
    /// client's frame: zero copy). Waits up to `timeout` for the first frame.
    /// `None`: this backend cannot peek (it reads into server frames first);
    /// use `recv_batch`.
    fn recv_placed(
        &mut self,
        _max: usize,
        _timeout: Duration,
        _deliver: &mut dyn FnMut(&RxFrame<'_>, Option<&dyn af_packet::FrameBody>),
    ) -> Option<usize> {
        None
    }

    /// Peek then place: from the next frame on, `recv_placed` shows at
    /// least the first `bytes` bytes of each frame in `data` (all of a
    /// shorter frame), as far as the backend can peek; 0 (or less than the
    /// backend's small threshold) means its small threshold. The data path
    /// sets it to how far its classification reads, and completes a frame
    /// whose `data` is still too short before classifying it.
    fn set_head_len(&mut self, _bytes: usize) {}

    /// Sends `frames` out of the interface, in order, and reports each
    /// result to `on_done(index, result)` before returning. Backends that
    /// cannot send (pcap replay) refuse every frame with `Unsupported`.
    fn send_batch(
        &mut self,
        frames: &[&[u8]],
        on_done: &mut dyn FnMut(usize, std::io::Result<usize>),
    ) {
        for i in 0..frames.len() {
            on_done(i, Err(std::io::ErrorKind::Unsupported.into()));
        }
    }

    /// Whether [`send_batch_gather`](Self::send_batch_gather) sends from
    /// client memory without a copy. When false the caller copies whole
    /// frames and uses [`send_batch`](Self::send_batch).
    fn sends_gathered(&self) -> bool {
        false
    }

    /// Sends frames gathered from a head and client-region ranges, in order,
    /// reporting each result like [`send_batch`](Self::send_batch). Only
    /// called when [`sends_gathered`](Self::sends_gathered) is true.
    fn send_batch_gather(
        &mut self,
        frames: &[GatherFrame<'_>],
        on_done: &mut dyn FnMut(usize, std::io::Result<usize>),
    ) {
        for i in 0..frames.len() {
            on_done(i, Err(std::io::ErrorKind::Unsupported.into()));
        }
    }

    /// The emulated NIC's injection point, if this backend has one.
    fn injector(&self) -> Option<emulated::Injector> {
        None
    }
}

/// Wakes the data-path thread from [`Backend::wait`]: producers of frames
/// and the control plane (new classifier) call it.
///
/// A backend that waits by parking the thread is woken by `unpark`. One that
/// waits in the kernel (the af_packet io_uring) asks for a [`Wake::doorbell`]
/// in [`Backend::watch_wake`] and waits on it too; from then on every wake
/// also rings it.
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<WakeTargets>);

#[derive(Debug, Default)]
struct WakeTargets {
    thread: OnceLock<Thread>,
    doorbell: OnceLock<Arc<exchange::EventFd>>,
}

impl Wake {
    /// Called once by the data-path thread when it starts.
    pub fn register_current(&self) {
        let _ = self.0.thread.set(std::thread::current());
    }

    /// The eventfd every [`Wake::wake`] rings from now on, made on first
    /// use (for a backend that waits in the kernel, not by parking).
    pub fn doorbell(&self) -> std::io::Result<Arc<exchange::EventFd>> {
        if let Some(d) = self.0.doorbell.get() {
            return Ok(d.clone());
        }
        let made = Arc::new(exchange::EventFd::new()?);
        // Another thread may have made one meanwhile: use whichever won.
        Ok(self.0.doorbell.get_or_init(|| made).clone())
    }

    /// Wakes the data path if it waits.
    pub fn wake(&self) {
        if let Some(t) = self.0.thread.get() {
            t.unpark();
        }
        if let Some(d) = self.0.doorbell.get() {
            if let Err(e) = d.notify() {
                tracing::warn!(error = %e, "ringing the data path's doorbell failed");
            }
        }
    }
}

/// What `--backend` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendSpec {
    Emulated,
    Pcap(std::path::PathBuf),
    /// `af_packet:IFACE`: a real interface through an AF_PACKET socket.
    AfPacket(String),
    /// `tap:NAME`: a TAP interface, created or attached to.
    Tap(String),
}

impl std::str::FromStr for BackendSpec {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<BackendSpec, BackendError> {
        if s == "emulated" {
            Ok(BackendSpec::Emulated)
        } else if let Some(path) = s.strip_prefix("pcap:").filter(|p| !p.is_empty()) {
            Ok(BackendSpec::Pcap(path.into()))
        } else if let Some(iface) = s.strip_prefix("af_packet:").filter(|i| !i.is_empty()) {
            Ok(BackendSpec::AfPacket(iface.to_owned()))
        } else if let Some(name) = s.strip_prefix("tap:").filter(|n| !n.is_empty()) {
            Ok(BackendSpec::Tap(name.to_owned()))
        } else {
            Err(BackendError::Unknown(s.to_owned()))
        }
    }
}

/// Now, nanoseconds since the Unix epoch (a vDSO read, no system call).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Drains an [`crate::pool::RxRing`]: the shared `recv_batch` of backends
/// that read into server frames.
pub(crate) fn recv_from_ring(
    ring: &crate::pool::RxRing,
    max: usize,
    deliver: &mut dyn FnMut(&RxFrame<'_>),
) -> usize {
    let mut n = 0;
    while n < max {
        let Some(rx) = ring.pop() else { break };
        deliver(&RxFrame {
            data: rx.bytes(),
            wire_len: rx.wire_len,
            ts_ns: rx.ts_ns,
        });
        ring.recycle(rx);
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_interface_specs_parse() {
        assert_eq!(
            "af_packet:eth0".parse::<BackendSpec>().unwrap(),
            BackendSpec::AfPacket("eth0".into())
        );
        assert_eq!(
            "tap:tap0".parse::<BackendSpec>().unwrap(),
            BackendSpec::Tap("tap0".into())
        );
        for bad in ["af_packet:", "tap:", "af_packet"] {
            let e = bad.parse::<BackendSpec>().unwrap_err().to_string();
            assert!(e.contains("af_packet:IFACE"), "{e}");
        }
    }

    #[test]
    fn backend_spec_parses() {
        assert_eq!(
            "emulated".parse::<BackendSpec>().unwrap(),
            BackendSpec::Emulated
        );
        assert_eq!(
            "pcap:/x.pcap".parse::<BackendSpec>().unwrap(),
            BackendSpec::Pcap("/x.pcap".into())
        );
        let e = "pcap:".parse::<BackendSpec>().unwrap_err().to_string();
        assert!(e.contains("use `emulated` or `pcap:FILE`"), "{e}");
    }
}
