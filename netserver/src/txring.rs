//! Shared-mode transmit, fbufs-style: the data path drains a client's tx
//! ring once per batch.
//!
//! The client writes a frame into one of its own pages (or a header page and
//! a payload page) and posts it on the tx ring; from then until the page
//! comes back on the completion ring it is not the client's to touch. Per
//! batch and per region, [`RingTx::drain`]:
//!
//! 1. takes at most [`TX_RING_BATCH`] descriptors ([`ServerRegion::pop_tx`]
//!    validates each and moves its frames to in-flight; a descriptor naming
//!    a frame the client does not own is a violation the region counts, and
//!    past its threshold the region is revoked, as for rx);
//! 2. copies each frame **once** out of the client's pages into a server
//!    buffer and runs the anti-spoofing check on that private copy — the
//!    client cannot change what was checked, since what is sent is the copy
//!    (STYLE, rule 1);
//! 3. sends every accepted frame in **one** [`Backend::send_batch`] (no
//!    system call per packet when the backend batches: af_packet submits one
//!    io_uring batch);
//! 4. completes every descriptor it took: sent, refused (with the reason
//!    code, see [`refusal_code`]) or failed, so that the pages go back to the
//!    client and its tx budget never shrinks. A refused frame never reaches
//!    the backend.
//!
//! Nothing here allocates per packet: the buffers are allocated once.
//!
//! The copy costs one `memcpy` of at most 1514 bytes per frame and is
//! counted (`HostStats.txCopied`). The zero-copy ideal — the checked header
//! copy and the payload straight from the client's page as an iovec pair —
//! needs a scatter-gather send in `sys::uring`; the accounting here stays
//! the same when it comes.

use exchange::layout::{tx_status, TX_STATUS_FAILED, TX_STATUS_REFUSED, TX_STATUS_SENT};
use exchange::{ServerRegion, TxPacket};

use crate::backend::Backend;
use crate::host::spoof::TxRefusal;

/// Most tx descriptors taken from one region per batch.
pub const TX_RING_BATCH: usize = 64;

/// Bytes of a copy buffer: more than the largest frame the transmit policy
/// lets out (1514 without FCS); a longer frame is refused `too_long`.
const COPY_BUF: usize = 2048;

/// The reason code of a refusal in a completion's status word: 1 + its
/// index in [`TxRefusal::ALL`] (0 means "no reason given").
pub const fn refusal_code(r: TxRefusal) -> u16 {
    r.index() as u16 + 1
}

/// What one [`RingTx::drain`] did.
#[derive(Debug, Default)]
pub struct Drained {
    /// Descriptors taken from the ring (each got a completion).
    pub taken: usize,
    /// Frames the backend sent (each from a server copy).
    pub sent: usize,
    /// Frames refused, by reason ([`TxRefusal::ALL`] order).
    pub refused: [u64; TxRefusal::ALL.len()],
    /// Frames the backend failed to send.
    pub failed: usize,
    /// Completions the client's broken completion ring could not take (its
    /// frames stay in flight: the client's loss).
    pub lost_completions: usize,
    /// The first send error, for the log.
    pub first_error: Option<std::io::Error>,
}

/// Preallocated state for draining tx rings (one per data path).
pub struct RingTx {
    bufs: Vec<Box<[u8]>>,
    lens: [usize; TX_RING_BATCH],
    packets: Vec<Option<TxPacket>>,
    results: [Option<usize>; TX_RING_BATCH],
}

impl std::fmt::Debug for RingTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingTx").finish_non_exhaustive()
    }
}

impl Default for RingTx {
    fn default() -> Self {
        RingTx::new()
    }
}

impl RingTx {
    pub fn new() -> RingTx {
        RingTx {
            bufs: (0..TX_RING_BATCH)
                .map(|_| vec![0u8; COPY_BUF].into_boxed_slice())
                .collect(),
            lens: [0; TX_RING_BATCH],
            packets: (0..TX_RING_BATCH).map(|_| None).collect(),
            results: [None; TX_RING_BATCH],
        }
    }

    /// Drains up to [`TX_RING_BATCH`] descriptors of `region` (see the
    /// module docs). `check` judges a frame's private copy against the
    /// client's binding.
    pub fn drain(
        &mut self,
        region: &mut ServerRegion,
        check: &mut dyn FnMut(&[u8]) -> Result<(), TxRefusal>,
        backend: &mut dyn Backend,
    ) -> Drained {
        let mut d = Drained::default();
        let mut n = 0;
        while d.taken < TX_RING_BATCH {
            // A violation (bad descriptor, frame not the client's) is counted
            // by the region and skipped inside `pop_tx`; an error here is a
            // broken ring index or a revoked region: stop for this batch.
            let Ok(Some(p)) = region.pop_tx() else { break };
            d.taken += 1;
            let verdict = if p.len() > COPY_BUF {
                Err(TxRefusal::TooLong)
            } else {
                // The one copy out of the client's pages; everything after
                // reads the copy only.
                let len = region.read_tx(&p, &mut self.bufs[n][..p.len()]);
                self.lens[n] = len;
                check(&self.bufs[n][..len])
            };
            match verdict {
                Ok(()) => {
                    self.packets[n] = Some(p);
                    n += 1;
                }
                Err(r) => {
                    d.refused[r.index()] += 1;
                    let status = tx_status(TX_STATUS_REFUSED, refusal_code(r));
                    if region.complete_tx(p, status, 0).is_err() {
                        d.lost_completions += 1;
                    }
                }
            }
        }
        if n == 0 {
            return d;
        }
        let mut frames: [&[u8]; TX_RING_BATCH] = [&[]; TX_RING_BATCH];
        for (i, f) in frames.iter_mut().enumerate().take(n) {
            *f = &self.bufs[i][..self.lens[i]];
        }
        self.results = [None; TX_RING_BATCH];
        let (results, first_error) = (&mut self.results, &mut d.first_error);
        backend.send_batch(&frames[..n], &mut |i, r| match r {
            Ok(len) => {
                if let Some(slot) = results.get_mut(i) {
                    *slot = Some(len);
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        });
        for i in 0..n {
            let Some(p) = self.packets[i].take() else {
                continue;
            };
            let (status, len) = match self.results[i] {
                Some(len) => {
                    d.sent += 1;
                    (tx_status(TX_STATUS_SENT, 0), len)
                }
                None => {
                    d.failed += 1;
                    (tx_status(TX_STATUS_FAILED, 0), 0)
                }
            };
            if region
                .complete_tx(p, status, u32::try_from(len).unwrap_or(u32::MAX))
                .is_err()
            {
                d.lost_completions += 1;
            }
        }
        d
    }
}
