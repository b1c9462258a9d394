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
//! 2. copies the frame's headers ([`CHECKED_LEN`] bytes at most) **once**
//!    out of the client's pages into a server buffer and runs the
//!    anti-spoofing check on that private copy; what is sent is that copy
//!    followed by the rest of the frame, so the client cannot change what
//!    was checked (STYLE, rule 1);
//! 3. sends every accepted frame in **one** batch (no system call per
//!    packet when the backend batches: af_packet submits one io_uring
//!    batch). A backend that [`Backend::sends_gathered`] (af_packet) sends
//!    the header copy and the rest **straight from the client's pages**
//!    (one `sendmsg` with an iovec list per frame: zero copy of the
//!    payload; the pages stay in flight until the kernel is done). Others
//!    (tap, emulated) get the whole frame copied once into the server
//!    buffer, checked there, and sent with [`Backend::send_batch`]; those
//!    copies are counted (`HostStats.txCopied`);
//! 4. completes every descriptor it took: sent, refused (with the reason
//!    code, see [`refusal_code`]) or failed, so that the pages go back to the
//!    client and its tx budget never shrinks. A refused frame never reaches
//!    the backend.
//!
//! Nothing here allocates per packet: the buffers are allocated once.

use exchange::layout::{tx_status, TX_STATUS_FAILED, TX_STATUS_REFUSED, TX_STATUS_SENT};
use exchange::{RawFrame, ServerRegion, TxPacket};

use crate::backend::{Backend, GatherFrame};
use crate::host::spoof::{TxRefusal, CHECKED_LEN};

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

/// The anti-spoofing check [`RingTx::drain`] runs: `(prefix, frame_len)`
/// to the number of prefix bytes checked (sent from the copy).
pub type TxCheck<'a> = dyn FnMut(&[u8], usize) -> Result<usize, TxRefusal> + 'a;

/// What one [`RingTx::drain`] did.
#[derive(Debug, Default)]
pub struct Drained {
    /// Descriptors taken from the ring (each got a completion).
    pub taken: usize,
    /// Frames the backend sent.
    pub sent: usize,
    /// Of those, frames sent from a whole copy (not zero copy).
    pub copied: usize,
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
    /// Zero copy: the frame's bytes after the header copy, in client pages.
    rest: Vec<[Option<RawFrame>; 2]>,
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
            rest: (0..TX_RING_BATCH).map(|_| [None, None]).collect(),
            results: [None; TX_RING_BATCH],
        }
    }

    /// Drains up to [`TX_RING_BATCH`] descriptors of `region` (see the
    /// module docs). `check(prefix, frame_len)` judges the private copy of
    /// a frame's first bytes against the client's binding and returns how
    /// many of them it checked (the header sent from the copy).
    pub fn drain(
        &mut self,
        region: &mut ServerRegion,
        check: &mut TxCheck<'_>,
        backend: &mut dyn Backend,
    ) -> Drained {
        let mut d = Drained::default();
        let gather = backend.sends_gathered();
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
                // The one copy out of the client's pages (the headers, or
                // the whole frame); everything after reads the copy only.
                let want = if gather {
                    p.len().min(CHECKED_LEN)
                } else {
                    p.len()
                };
                let got = region.read_tx(&p, &mut self.bufs[n][..want]);
                check(&self.bufs[n][..got], p.len()).map(|checked| {
                    if gather {
                        self.lens[n] = checked.min(got);
                        self.rest[n] = region.tx_raw_after(&p, self.lens[n]);
                    } else {
                        self.lens[n] = got;
                    }
                })
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
        self.results = [None; TX_RING_BATCH];
        let (results, first_error) = (&mut self.results, &mut d.first_error);
        let mut on_done = |i: usize, r: std::io::Result<usize>| match r {
            Ok(len) => {
                if let Some(slot) = results.get_mut(i) {
                    *slot = Some(len);
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        };
        if gather {
            let none = [None, None];
            let mut frames = [GatherFrame {
                head: &[],
                rest: &none,
            }; TX_RING_BATCH];
            for (i, f) in frames.iter_mut().enumerate().take(n) {
                *f = GatherFrame {
                    head: &self.bufs[i][..self.lens[i]],
                    rest: &self.rest[i],
                };
            }
            backend.send_batch_gather(&frames[..n], &mut on_done);
        } else {
            let mut frames: [&[u8]; TX_RING_BATCH] = [&[]; TX_RING_BATCH];
            for (i, f) in frames.iter_mut().enumerate().take(n) {
                *f = &self.bufs[i][..self.lens[i]];
            }
            backend.send_batch(&frames[..n], &mut on_done);
        }
        for i in 0..n {
            // The kernel is done with the client's pages: drop our views.
            self.rest[i] = [None, None];
            let Some(p) = self.packets[i].take() else {
                continue;
            };
            let (status, len) = match self.results[i] {
                Some(len) => {
                    d.sent += 1;
                    d.copied += usize::from(!gather);
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
