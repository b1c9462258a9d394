//! The server's own record of who holds each frame of a region. No unsafe,
//! no shared memory: this table is the truth, the region is only a proposal.
//!
//! ```text
//!            fill ring                take_free              rx ring (deliver)
//!   Client ───────────▶ ServerFree ─────────────▶ ServerHolding ──────────────▶ Client
//!     │  ▲                  ▲                          │
//!     │  │                  └──────── release ─────────┘
//!     │  └──────────── completion ring ────────────┐
//!     └─────────── tx ring (start_tx) ────────▶ InFlightTx
//! ```
//!
//! Every transition the client proposes (fill, tx) is checked: the index is in
//! range and the frame is the client's. Anything else is refused, counted per
//! reason, and never changes the table. After `revoke_after` violations the
//! table is revoked and refuses everything with [`Violation::Revoked`].

use crate::error::{Violation, ViolationCounts};
use crate::layout::RingId;

/// Who holds a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameState {
    /// The client's (initial state; back after rx delivery or tx completion).
    Client,
    /// Posted on the fill ring; the server may write a packet into it.
    ServerFree,
    /// The server is writing or has written a packet into it, not yet delivered.
    ServerHolding,
    /// Posted on the tx ring; the server is sending it.
    InFlightTx,
}

/// Per-region frame ownership, kept in server memory.
#[derive(Debug, Clone)]
pub struct FrameTable {
    states: Vec<FrameState>,
    free: Vec<u32>,
    counts: ViolationCounts,
    revoke_after: u64,
    revoked: bool,
}

impl FrameTable {
    /// `count` frames, all the client's. Revoked after `revoke_after`
    /// violations (0 = never).
    pub fn new(count: u32, revoke_after: u64) -> FrameTable {
        FrameTable {
            states: vec![FrameState::Client; count as usize],
            free: Vec::with_capacity(count as usize),
            counts: ViolationCounts::default(),
            revoke_after,
            revoked: false,
        }
    }

    /// Number of frames.
    pub fn count(&self) -> u32 {
        self.states.len() as u32
    }

    /// State of frame `index`, `None` if out of range.
    pub fn state(&self, index: u32) -> Option<FrameState> {
        self.states.get(index as usize).copied()
    }

    /// Frames posted by the client and not yet taken.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Frames currently in a given state (O(n), for stats and tests).
    pub fn count_in(&self, state: FrameState) -> usize {
        self.states.iter().filter(|s| **s == state).count()
    }

    /// Per-reason violation counters.
    pub fn violations(&self) -> &ViolationCounts {
        &self.counts
    }

    /// Whether the table was revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked
    }

    /// `Err(Revoked)` once revoked (and counts the refusal).
    pub fn check(&mut self) -> Result<(), Violation> {
        if self.revoked {
            let v = Violation::Revoked {
                violations: self.counts.total(),
            };
            self.counts.add(&v);
            return Err(v);
        }
        Ok(())
    }

    /// Counts a violation found elsewhere (ring indices, descriptors) and
    /// revokes past the threshold. Returns it for `?`.
    pub fn record(&mut self, v: Violation) -> Violation {
        self.counts.add(&v);
        if !self.revoked && self.revoke_after != 0 && self.counts.total() >= self.revoke_after {
            self.revoked = true;
            tracing::warn!(
                violations = self.counts.total(),
                last = %v,
                "exchange region revoked after too many protocol violations"
            );
        }
        v
    }

    fn expect_client(&mut self, ring: RingId, index: u32) -> Result<(), Violation> {
        self.check()?;
        let v = match self.states.get(index as usize) {
            None => Violation::FrameOutOfRange {
                ring,
                index,
                count: self.count(),
            },
            Some(FrameState::Client) => return Ok(()),
            Some(FrameState::ServerFree) => Violation::FramePostedTwice { ring, index },
            Some(FrameState::ServerHolding | FrameState::InFlightTx) => {
                Violation::FrameNotOwned { ring, index }
            }
        };
        Err(self.record(v))
    }

    /// The client posted `index` on the fill ring: Client → ServerFree.
    pub fn post_free(&mut self, index: u32) -> Result<(), Violation> {
        self.expect_client(RingId::Fill, index)?;
        self.states[index as usize] = FrameState::ServerFree;
        self.free.push(index);
        Ok(())
    }

    /// Takes a free frame to write a packet into: ServerFree → ServerHolding.
    pub fn take_free(&mut self) -> Option<u32> {
        if self.revoked {
            return None;
        }
        let index = self.free.pop()?;
        debug_assert_eq!(self.states[index as usize], FrameState::ServerFree);
        self.states[index as usize] = FrameState::ServerHolding;
        Some(index)
    }

    fn server_transition(&mut self, index: u32, from: FrameState, to: FrameState) {
        let state = &mut self.states[index as usize];
        assert_eq!(
            *state, from,
            "exchange: frame {index} is {state:?}, not {from:?} (server bug, please report)"
        );
        *state = to;
    }

    /// A packet in `index` was delivered on the rx ring: ServerHolding → Client.
    pub fn deliver(&mut self, index: u32) {
        self.server_transition(index, FrameState::ServerHolding, FrameState::Client);
    }

    /// The server did not use `index` after all: ServerHolding → ServerFree.
    pub fn release(&mut self, index: u32) {
        self.server_transition(index, FrameState::ServerHolding, FrameState::ServerFree);
        self.free.push(index);
    }

    /// The client posted `index` on the tx ring: Client → InFlightTx.
    pub fn start_tx(&mut self, index: u32) -> Result<(), Violation> {
        self.expect_client(RingId::Tx, index)?;
        self.states[index as usize] = FrameState::InFlightTx;
        Ok(())
    }

    /// The send of `index` finished (completion posted): InFlightTx → Client.
    pub fn complete_tx(&mut self, index: u32) {
        self.server_transition(index, FrameState::InFlightTx, FrameState::Client);
    }

    /// Undoes [`start_tx`](Self::start_tx) when the rest of a descriptor is
    /// refused: InFlightTx → Client.
    pub(crate) fn abort_tx(&mut self, index: u32) {
        self.complete_tx(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ViolationKind;

    #[test]
    fn lifecycle() {
        let mut t = FrameTable::new(4, 0);
        t.post_free(2).unwrap();
        assert_eq!(t.state(2), Some(FrameState::ServerFree));
        let f = t.take_free().unwrap();
        assert_eq!(f, 2);
        assert_eq!(t.take_free(), None);
        t.deliver(f);
        assert_eq!(t.state(2), Some(FrameState::Client));
        t.start_tx(2).unwrap();
        t.complete_tx(2);
        t.post_free(1).unwrap();
        let f = t.take_free().unwrap();
        t.release(f);
        assert_eq!(t.free_count(), 1);
        assert_eq!(t.violations().total(), 0);
    }

    #[test]
    fn refusals_are_counted_and_change_nothing() {
        let mut t = FrameTable::new(4, 0);
        assert!(matches!(
            t.post_free(4),
            Err(Violation::FrameOutOfRange {
                index: 4,
                count: 4,
                ..
            })
        ));
        t.post_free(0).unwrap();
        assert!(matches!(
            t.post_free(0),
            Err(Violation::FramePostedTwice { index: 0, .. })
        ));
        let f = t.take_free().unwrap();
        assert!(matches!(
            t.post_free(f),
            Err(Violation::FrameNotOwned { .. })
        ));
        assert!(matches!(
            t.start_tx(f),
            Err(Violation::FrameNotOwned {
                ring: RingId::Tx,
                ..
            })
        ));
        t.start_tx(1).unwrap();
        assert!(matches!(
            t.post_free(1),
            Err(Violation::FrameNotOwned { .. })
        ));
        assert_eq!(t.state(0), Some(FrameState::ServerHolding));
        assert_eq!(t.state(1), Some(FrameState::InFlightTx));
        let c = t.violations();
        assert_eq!(c.get(ViolationKind::FrameOutOfRange), 1);
        assert_eq!(c.get(ViolationKind::FramePostedTwice), 1);
        assert_eq!(c.get(ViolationKind::FrameNotOwned), 3);
        assert_eq!(c.total(), 5);
    }

    #[test]
    fn revoked_after_threshold() {
        let mut t = FrameTable::new(2, 3);
        for _ in 0..3 {
            let _ = t.post_free(9);
        }
        assert!(t.is_revoked());
        assert!(matches!(
            t.post_free(0),
            Err(Violation::Revoked { violations: 3 })
        ));
        assert_eq!(t.take_free(), None);
        assert_eq!(t.violations().get(ViolationKind::Revoked), 1);
    }

    #[test]
    #[should_panic(expected = "server bug")]
    fn server_misuse_panics() {
        let mut t = FrameTable::new(2, 0);
        t.deliver(0);
    }
}
