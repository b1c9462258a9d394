//! Counters and the accounting identity.
//!
//! Every frame the backend produces ends in exactly one place:
//!
//! ```text
//! received = delivered_small + delivered_large + control + queued + overflow + dropped
//! ```
//!
//! ## How a snapshot stays consistent while traffic flows
//!
//! No counter is ever decremented and no "gauge" is stored. A frame passes
//! through at most two stages, and each stage has an *entry* and an *exit*
//! counter:
//!
//! - **entries**, written only by the data-path thread when it has decided a
//!   frame's fate: `to_queue`, `to_overflow`, `control`, and the drops decided
//!   at classification (`no_filter`, `queue_full`, …);
//! - **exits**, written by whoever takes a frame out of a queue (the control
//!   plane on `fetch`, either thread on close): `queue_small`,
//!   `queue_large`, `queue_closed`, and the same three for overflow.
//!
//! `queued = to_queue - queue exits`, `overflow = to_overflow - overflow
//! exits`, and `received` is the sum of the entry counters. The entry counter
//! of a frame is incremented *before* the frame is pushed on its queue (the
//! push is a release, the pop an acquire), and the exit counter *after* the
//! frame was popped, with `Release`. A snapshot loads every exit counter first
//! (`Acquire`) and the entries afterwards, so every exit it sees has its entry
//! visible too: `queued` and `overflow` are never negative, and the identity
//! holds in every snapshot by construction, not by luck of timing. A frame
//! popped but not yet counted as delivered is still `queued` in that snapshot,
//! which is true.
//!
//! The same [`Counters`] type serves the server as a whole and each filter
//! (where `received` reads "matched").

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a frame was dropped. Each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The filter's queue and the server's overflow pool were both full.
    QueueFull,
    /// The filter was removed with the frame still queued.
    Closed,
    /// No filter claimed the frame.
    NoFilter,
    /// An operator rule dropped it.
    Firewall,
    /// Shared mode: the client posted no free frame.
    NoFrame,
    /// Shared mode: the client fell behind for longer than a burst (the
    /// overflow pool could not take one of its frames, or it spilled its
    /// share of the pool within one window), so its frames are not spilled
    /// for a cool-down (`filter::SPILL_COOL_DOWN`) and are dropped when its
    /// rx ring and its own frames are full.
    Overloaded,
}

impl DropReason {
    /// Every reason, in the order stats list them.
    pub const ALL: [DropReason; 6] = [
        DropReason::QueueFull,
        DropReason::Closed,
        DropReason::NoFilter,
        DropReason::Firewall,
        DropReason::NoFrame,
        DropReason::Overloaded,
    ];

    /// The reason's name as the schema documents it.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Closed => "closed",
            DropReason::NoFilter => "no_filter",
            DropReason::Firewall => "firewall",
            DropReason::NoFrame => "no_frame",
            DropReason::Overloaded => "overloaded",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// Which stage a frame leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The filter's own queue (its frames and small staging).
    Queue,
    /// The server's overflow pool.
    Overflow,
}

/// How a frame left a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Delivered by copy into a small slot.
    Small,
    /// Delivered in a page frame.
    Large,
    /// Dropped because the filter closed.
    Closed,
}

#[derive(Debug, Default)]
struct StageExits {
    small: AtomicU64,
    large: AtomicU64,
    closed: AtomicU64,
}

/// Monotonic counters; see the module documentation for the protocol.
#[derive(Debug, Default)]
pub struct Counters {
    // Entries (written by the data-path thread only: `bump_single_writer`).
    to_queue: AtomicU64,
    to_overflow: AtomicU64,
    control: AtomicU64,
    entry_drops: [AtomicU64; DropReason::ALL.len()],
    // Exits.
    queue_exits: StageExits,
    overflow_exits: StageExits,
    // Not part of the identity.
    bytes: AtomicU64,
    zero_copy: AtomicU64,
    copied: AtomicU64,
    refused: AtomicU64,
}

/// Adds one to an entry counter. Entry counters have one writer, the
/// data-path thread, so a plain load and store (two `mov`s) do what a locked
/// `fetch_add` would, at a fraction of its cost on the per-packet path.
/// Readers only load; the Relaxed store still makes each value a whole,
/// monotonic one, and the order that snapshots need comes from the queue
/// and exit counters (see the module docs).
fn bump_single_writer(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

impl Counters {
    /// Entry: the frame is about to be pushed on `stage`. Call before the
    /// push, from the data-path thread only (the one writer of entries).
    pub fn enter(&self, stage: Stage) {
        // Relaxed: the queue push that follows is a release and the pop an
        // acquire; the exit counter below carries the order on to readers.
        bump_single_writer(match stage {
            Stage::Queue => &self.to_queue,
            Stage::Overflow => &self.to_overflow,
        });
    }

    /// Entry: the frame went to the control plane (data-path thread only).
    pub fn enter_control(&self) {
        bump_single_writer(&self.control);
    }

    /// Entry: the frame was dropped when its fate was decided (data-path
    /// thread only).
    pub fn drop_on_entry(&self, reason: DropReason) {
        bump_single_writer(&self.entry_drops[reason.index()]);
    }

    /// Exit: a frame popped from `stage` was delivered or dropped. Call after
    /// the pop.
    pub fn exit(&self, stage: Stage, how: Exit, bytes: u64) {
        let s = match stage {
            Stage::Queue => &self.queue_exits,
            Stage::Overflow => &self.overflow_exits,
        };
        let c = match how {
            Exit::Small => &s.small,
            Exit::Large => &s.large,
            Exit::Closed => &s.closed,
        };
        if how != Exit::Closed {
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        // Release: pairs with the Acquire loads in `snapshot`, which must see
        // the entry of every exit they see (the entry happened before the
        // push, the push before our pop, our pop before this increment).
        c.fetch_add(1, Ordering::Release);
    }

    /// Exit of `n` frames at once (`bytes` in all), e.g. the frames one
    /// publish of an exchange region made visible. Call after they left.
    pub fn exit_n(&self, stage: Stage, how: Exit, n: u64, bytes: u64) {
        if n == 0 {
            return;
        }
        let s = match stage {
            Stage::Queue => &self.queue_exits,
            Stage::Overflow => &self.overflow_exits,
        };
        let c = match how {
            Exit::Small => &s.small,
            Exit::Large => &s.large,
            Exit::Closed => &s.closed,
        };
        if how != Exit::Closed {
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        // Release: as in `exit`.
        c.fetch_add(n, Ordering::Release);
    }

    /// `zero_copy` and `copied` large frames at once (see [`Self::large_path`]).
    pub fn large_paths(&self, zero_copy: u64, copied: u64) {
        if zero_copy > 0 {
            self.zero_copy.fetch_add(zero_copy, Ordering::Relaxed);
        }
        if copied > 0 {
            self.copied.fetch_add(copied, Ordering::Relaxed);
        }
    }

    /// `n` client requests or protocol violations were refused.
    pub fn refuse_n(&self, n: u64) {
        self.refused.fetch_add(n, Ordering::Relaxed);
    }

    /// A large frame was delivered by the zero-copy path (`true`) or copied
    /// once from a server frame (`false`).
    pub fn large_path(&self, zero_copy: bool) {
        let c = if zero_copy {
            &self.zero_copy
        } else {
            &self.copied
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A client request was refused (bad index, misuse).
    pub fn refuse(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A consistent snapshot (see the module documentation).
    pub fn snapshot(&self) -> Snapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Acquire);
        // Exits first …
        let qs = load(&self.queue_exits.small);
        let ql = load(&self.queue_exits.large);
        let qc = load(&self.queue_exits.closed);
        let os = load(&self.overflow_exits.small);
        let ol = load(&self.overflow_exits.large);
        let oc = load(&self.overflow_exits.closed);
        // … then entries.
        let to_queue = load(&self.to_queue);
        let to_overflow = load(&self.to_overflow);
        let control = load(&self.control);
        let mut drops = [0u64; DropReason::ALL.len()];
        for (d, c) in drops.iter_mut().zip(&self.entry_drops) {
            *d = load(c);
        }
        // Each counter is loaded once: `received` and the identity's
        // right-hand side must be built from the same values.
        let entry_drops: u64 = drops.iter().sum();
        drops[DropReason::Closed.index()] += qc + oc;
        let queued = to_queue - (qs + ql + qc);
        let overflow = to_overflow - (os + ol + oc);
        Snapshot {
            received: to_queue + to_overflow + control + entry_drops,
            delivered_small: qs + os,
            delivered_large: ql + ol,
            delivered_small_spilled: os,
            control,
            queued,
            overflow,
            drops,
            bytes: load(&self.bytes),
            zero_copy: load(&self.zero_copy),
            copied: load(&self.copied),
            refused: load(&self.refused),
        }
    }
}

/// Counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Frames the backend produced (for a filter: frames that matched it).
    pub received: u64,
    pub delivered_small: u64,
    pub delivered_large: u64,
    /// Of `delivered_small`, those that waited in the server's overflow pool:
    /// copied once more, from the pool into the client's small slot (a
    /// spilled large frame is counted in `copied`). Not part of the identity.
    pub delivered_small_spilled: u64,
    pub control: u64,
    /// Waiting in filters' queues now.
    pub queued: u64,
    /// Waiting in the overflow pool now.
    pub overflow: u64,
    /// Dropped, by reason (indexed like [`DropReason::ALL`]).
    pub drops: [u64; DropReason::ALL.len()],
    /// Captured bytes delivered.
    pub bytes: u64,
    pub zero_copy: u64,
    pub copied: u64,
    pub refused: u64,
}

impl Snapshot {
    /// All drops.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Drops for one reason.
    pub fn drops_for(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// `(reason, count)` for every reason.
    pub fn drops_by_reason(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.drops[r.index()]))
    }

    /// Frames delivered (small + large).
    pub fn delivered(&self) -> u64 {
        self.delivered_small + self.delivered_large
    }

    /// The right-hand side of the identity.
    pub fn accounted(&self) -> u64 {
        self.delivered_small
            + self.delivered_large
            + self.control
            + self.queued
            + self.overflow
            + self.dropped()
    }

    /// Whether `received = delivered_small + delivered_large + control + queued + overflow + dropped`.
    pub fn identity_holds(&self) -> bool {
        self.received == self.accounted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_flow_through_stages() {
        let c = Counters::default();
        c.drop_on_entry(DropReason::NoFilter);
        c.enter(Stage::Queue);
        c.enter(Stage::Queue);
        c.enter(Stage::Overflow);
        c.exit(Stage::Queue, Exit::Small, 60);
        c.exit(Stage::Overflow, Exit::Closed, 0);
        let s = c.snapshot();
        assert_eq!(s.received, 4);
        assert_eq!(s.delivered_small, 1);
        assert_eq!(s.queued, 1);
        assert_eq!(s.overflow, 0);
        assert_eq!(s.drops_for(DropReason::NoFilter), 1);
        assert_eq!(s.drops_for(DropReason::Closed), 1);
        assert_eq!(s.bytes, 60);
        assert!(s.identity_holds());
    }

    #[test]
    fn reason_names_match_the_schema() {
        let names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            [
                "queue_full",
                "closed",
                "no_filter",
                "firewall",
                "no_frame",
                "overloaded"
            ]
        );
    }
}
