//! The emulated NIC: frames arrive through `Operator.inject`.

use std::sync::Arc;
use std::time::Duration;

use super::{now_ns, recv_from_ring, Backend, RxFrame, Wake};
use crate::pool::{RingFull, RxRing};

/// The emulated backend (data-path side).
#[derive(Debug)]
pub struct Emulated {
    ring: Arc<RxRing>,
    wake: Wake,
}

impl Emulated {
    /// An emulated NIC with a receive ring of `frames` frames.
    pub fn new(frames: usize, frame_size: usize, wake: Wake) -> Emulated {
        Emulated {
            ring: Arc::new(RxRing::new(frames, frame_size)),
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

    fn wait(&mut self, timeout: Duration) {
        if self.ring.pending() == 0 {
            std::thread::park_timeout(timeout);
        }
    }

    fn injector(&self) -> Option<Injector> {
        Some(Injector {
            ring: self.ring.clone(),
            wake: self.wake.clone(),
        })
    }
}

/// The control plane's handle for pushing frames into the emulated NIC.
#[derive(Debug, Clone)]
pub struct Injector {
    ring: Arc<RxRing>,
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

    /// Free frames in the receive ring.
    pub fn room(&self) -> usize {
        self.ring.free()
    }
}
