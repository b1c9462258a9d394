//! An installed filter's data-path state: its queue, its share of the
//! overflow pool, its frame space and its counters.
//!
//! One [`Filter`] is shared (`Arc`) between the data path, which places
//! frames, and the control plane, which hands them to the client. Both sides
//! work through lock-free queues; the data path is the only producer.
//!
//! Order is kept across the two stages: the data path pushes on the queue
//! only while the filter has nothing in overflow, and the control plane pops
//! the queue before the overflow. So everything in the queue is older than
//! everything in overflow, and a client receives its frames in arrival order
//! even after it fell behind.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use exchange::{RxMeta, ViolationKind};

use crate::backend::RxFrame;
use crate::place::{FrameSpace, Full, OverflowPool, Page, RegionSpace, Source, Spilled, Staged};
use crate::stats::{Counters, DropReason, Exit, Stage};
use crate::tag::Tag;

/// How a filter's frames reach its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Through `fetch`/`fetchBatch` replies (the bytes in the RPC).
    Emulated,
    /// `attachRegion` was called; the region has not arrived yet.
    Attaching,
    /// Through the client's exchange region.
    Shared,
}

/// Shared-mode state both threads read: the transport, the revocation and
/// the region's violation counters (written by the data path).
#[derive(Debug, Default)]
struct SharedState {
    transport: AtomicU8,
    revoked: OnceLock<String>,
    violations: [AtomicU64; ViolationKind::COUNT],
}

/// How long a filter's frames are dropped as `overloaded`, instead of being
/// spilled into the server's overflow pool, after the pool could not take
/// one of them or the filter spilled its share of it in one window (see
/// [`SpillGate`]); also the length of that window.
///
/// Why one second: a client that overran its rx ring, its own free frames
/// and its share of the pool is not having a burst, it is slower than its
/// traffic; spilling more would only buy a copy per frame that ends dropped
/// anyway, and take pool room other clients' bursts need. The cool-down must
/// therefore be long against a burst (a 512-entry ring fills in about 50 µs
/// at 10 Mpps, so even a scheduler hiccup of a few ms is long over) yet short
/// enough for a client that caught up to get its burst absorber back before
/// a person or a retransmit timer (TCP's minimum RTO is 200 ms – 1 s) would
/// notice. Frames that find room in the ring or in the client's own frames
/// are delivered throughout: only spilling stops.
pub const SPILL_COOL_DOWN: Duration = Duration::from_secs(1);

/// Whether a filter may spill into the overflow pool: the pool takes short
/// bursts only. A window opens at the first spill; within it the filter may
/// spill at most its overflow share (`budget`) of frames. When the budget
/// is used up, or a frame is lost (the pool could not take it), the gate
/// closes for [`SPILL_COOL_DOWN`], during which frames that would spill are
/// dropped as `overloaded` without being copied; then it opens with a fresh
/// budget. So a client that is merely slower than its traffic costs the
/// server at most one burst of copies per cool-down, not one per frame.
/// Driven by the data-path thread; time comes in as an argument.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpillGate {
    /// Frames spilled in the current window.
    spilled: u32,
    /// The budget is used up or a frame was lost: no spilling.
    closed: bool,
    /// When the current window (or cool-down) started; `None` until the
    /// next tick stamps it.
    since: Option<Instant>,
}

impl SpillGate {
    /// Whether a frame may spill now.
    pub fn is_open(&self) -> bool {
        !self.closed
    }

    /// A frame spilled; `budget` is how many a window may take.
    pub fn spilled(&mut self, budget: u32) {
        self.spilled += 1;
        if self.spilled >= budget {
            self.close();
        }
    }

    /// A frame of the filter was lost: close the gate.
    pub fn lost(&mut self) {
        if !self.closed {
            self.close();
        }
    }

    /// The cool-down starts at the next tick.
    fn close(&mut self) {
        self.closed = true;
        self.since = None;
    }

    /// Whether the gate needs the clock (a window or cool-down is running).
    pub fn needs_tick(&self) -> bool {
        self.closed || self.spilled > 0
    }

    /// Once per batch: stamps the start of a window or cool-down, or opens
    /// the gate with a fresh budget once [`SPILL_COOL_DOWN`] has passed.
    pub fn tick(&mut self, now: Instant) {
        match self.since {
            None if self.needs_tick() => self.since = Some(now),
            Some(t) if now.saturating_duration_since(t) >= SPILL_COOL_DOWN => {
                *self = SpillGate::default();
            }
            _ => {}
        }
    }
}

/// The data path's side of a filter in shared mode: its region, and the
/// waiting frame that did not fit the region yet (delivered first).
#[derive(Debug)]
pub struct SharedPath {
    pub space: RegionSpace,
    held: Option<(Stage, Delivery)>,
    /// Why the oldest waiting frame did not fit the region (the drop reason
    /// of newer frames that find the overflow pool full behind it).
    stuck: Full,
    /// Frames may wait for this filter (held, queued before the attach, or
    /// spilled), or the region had no room for a frame in this batch: new
    /// frames do not go straight into the region until
    /// [`Filter::flush_shared`] moved everything waiting there (order), and
    /// the full rings are not re-read for every frame.
    blocked: bool,
    /// Whether frames may spill into the overflow pool now.
    gate: SpillGate,
    /// The arrival sequence of the next frame that waits (parked in a
    /// client frame, or spilled). The two kinds wait in two queues; the
    /// flush delivers from whichever holds the older frame, so order holds
    /// across both. Frames queued before the attach carry 0: older.
    next_seq: u64,
}

impl SharedPath {
    /// `held`: a frame the control plane had already taken out of the queue
    /// (a `fetchBatch` that could not deliver it); it goes first.
    pub fn new(space: RegionSpace, held: Option<(Stage, Delivery)>) -> SharedPath {
        SharedPath {
            space,
            held,
            stuck: Full::Rx,
            // Frames queued in emulated mode before the attach go first.
            blocked: true,
            gate: SpillGate::default(),
            next_seq: 1,
        }
    }

    /// Whether a frame waits for room in the region.
    pub fn has_held(&self) -> bool {
        self.held.is_some()
    }

    /// Whether new frames wait behind older ones (see `blocked`).
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Whether frames may spill into the overflow pool now.
    pub fn spill_gate(&self) -> SpillGate {
        self.gate
    }
}

/// The captured length of a frame: what is stored and what decides small
/// versus large, the same for every backend (a peeked frame's `data` holds
/// only its head; its body holds the frame).
pub fn captured_len(frame: &RxFrame<'_>, src: &Source<'_>, frame_size: usize) -> usize {
    match src {
        Source::Bytes(b) => b.len().min(frame_size),
        Source::Body(body) => body.frame_len().min(frame_size).max(frame.data.len()),
    }
}

/// Whether a filter owns the frames it matches or gets copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One packet, one owner.
    Exclusive,
    /// A copy of matching traffic (operator only).
    Monitor,
}

/// Where a waiting frame's bytes are.
#[derive(Debug)]
pub enum Placed {
    /// Staged small frame, copied into the client's slot at fetch.
    Small(Staged),
    /// In a page frame of the client's frame space the server holds.
    Large(Page),
    /// In the server's overflow pool.
    Spilled(Spilled),
}

/// A frame waiting for the client.
#[derive(Debug)]
pub struct Delivery {
    /// Captured bytes.
    pub len: u32,
    pub wire_len: u32,
    pub ts_ns: u64,
    /// Whether the frame goes to a small slot.
    pub small: bool,
    pub placed: Placed,
    /// Shared mode: arrival order among the filter's waiting frames (see
    /// `SharedPath::next_seq`); 0 in emulated mode.
    pub seq: u64,
}

impl Delivery {
    /// The frame's bytes as the RPC can carry them (emulated mode).
    pub fn rpc_bytes(&self) -> &[u8] {
        let len = self.len as usize;
        match &self.placed {
            Placed::Small(s) => s.bytes(len),
            Placed::Large(p) => p.rpc_bytes(len),
            Placed::Spilled(s) => s.bytes(len),
        }
    }
}

/// What happened to a frame offered to a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Queued,
    /// Shared mode: the rx ring was full; the frame waits, written, in one
    /// of the client's own free frames (in the queue stage, no copy).
    Parked,
    Overflow,
    Dropped(DropReason),
}

/// Sizes of a filter, fixed at install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterGeometry {
    /// Most frames in the filter's own queue.
    pub queue_limit: u32,
    /// Page frames in the frame space.
    pub frames: u32,
    /// Small slots the client names (`0..small_slots`).
    pub small_slots: u32,
    /// Bytes in a page frame.
    pub frame_size: u32,
    /// Frames of at most this many bytes are small.
    pub small_threshold: u32,
}

/// An installed filter's shared state.
#[derive(Debug)]
pub struct Filter {
    pub tag: Tag,
    pub mode: Mode,
    pub expression: String,
    pub geometry: FilterGeometry,
    pub counters: Counters,
    queue: ArrayQueue<Delivery>,
    overflow: ArrayQueue<Delivery>,
    space: FrameSpace,
    closed: AtomicBool,
    shared: SharedState,
}

impl Filter {
    /// Counts on the filter's counters and, if given, the server's.
    fn count(&self, global: Option<&Counters>, f: impl Fn(&Counters)) {
        f(&self.counters);
        if let Some(g) = global {
            f(g);
        }
    }

    /// A filter and the page frames its client owns at the start.
    pub fn new(
        tag: Tag,
        mode: Mode,
        expression: String,
        geometry: FilterGeometry,
        overflow_limit: usize,
    ) -> (Filter, Vec<Page>) {
        let (space, client_pages) = FrameSpace::emulated(
            geometry.frames,
            geometry.frame_size as usize,
            geometry.queue_limit as usize,
            geometry.small_threshold as usize,
        );
        let filter = Filter {
            tag,
            mode,
            expression,
            geometry,
            counters: Counters::default(),
            queue: ArrayQueue::new(geometry.queue_limit.max(1) as usize),
            overflow: ArrayQueue::new(overflow_limit.max(1)),
            space,
            closed: AtomicBool::new(false),
            shared: SharedState::default(),
        };
        (filter, client_pages)
    }

    /// Data path: offers a frame this filter matched. `global` is the
    /// server's counters for an exclusive filter, `None` for a monitor's copy.
    ///
    /// Never blocks, never allocates: the frame goes into the filter's own
    /// frame space (queued), else into the server's overflow pool, else it is
    /// dropped as `queue_full`.
    pub fn place(
        &self,
        frame: &RxFrame<'_>,
        pool: &OverflowPool,
        global: Option<&Counters>,
    ) -> Outcome {
        let len = frame.data.len() as u32;
        let small = len <= self.geometry.small_threshold;
        // The queue is used only while nothing waits in overflow (order), and
        // `is_full` is exact here: this thread is the only producer.
        if self.overflow.is_empty() && !self.queue.is_full() {
            let placed = if small {
                self.space.stage_small(frame.data).map(Placed::Small)
            } else {
                self.space.take_free().map(|mut page| {
                    page.write(frame.data);
                    Placed::Large(page)
                })
            };
            if let Some(placed) = placed {
                self.count(global, |c| c.enter(Stage::Queue));
                self.push(Stage::Queue, frame, small, placed, pool, global);
                return Outcome::Queued;
            }
        }
        if !self.overflow.is_full() {
            if let Some(spilled) = pool.spill(frame.data, small) {
                self.count(global, |c| c.enter(Stage::Overflow));
                self.push(
                    Stage::Overflow,
                    frame,
                    small,
                    Placed::Spilled(spilled),
                    pool,
                    global,
                );
                return Outcome::Overflow;
            }
        }
        self.count(global, |c| c.drop_on_entry(DropReason::QueueFull));
        Outcome::Dropped(DropReason::QueueFull)
    }

    /// Data path, shared mode: offers a frame this filter matched. Same
    /// state machine as [`place`](Self::place): frames already waiting go
    /// first (order), then the client's region (rx ring = the queue; a small
    /// slot, or a frame from the fill ring). When the rx ring is full, a
    /// large frame waits in one of the client's own free frames (parked:
    /// written once, zero copy). Only when the client has no free frame (or
    /// the frame is small) does it spill into the server's overflow pool —
    /// short bursts only, see [`SpillGate`] — else it is dropped: `no_frame`
    /// when the client posted no free frame, `queue_full` when its rx ring
    /// is full, `overloaded` while the spill gate is closed (after a loss,
    /// or once the filter spilled its share in one window).
    ///
    /// Per frame this is one look at cached ring indices and one write into
    /// the region. Once the region had no room, the rest of the batch does
    /// not look again (the rings are re-read, and waiting frames moved, by
    /// [`flush_shared`](Self::flush_shared) once per batch); a frame that has
    /// to spill is written once into a pool buffer reserved first, and one
    /// that cannot be kept is dropped without being copied.
    pub fn place_shared(
        &self,
        frame: &RxFrame<'_>,
        src: Source<'_>,
        shared: &mut SharedPath,
        pool: &OverflowPool,
        global: Option<&Counters>,
    ) -> Outcome {
        let len = captured_len(frame, &src, self.geometry.frame_size as usize);
        let small = len <= self.geometry.small_threshold as usize;
        let meta = RxMeta {
            tag: self.tag,
            timestamp_ns: frame.ts_ns,
            wire_len: frame.wire_len,
            flags: 0,
        };
        if !shared.blocked {
            match shared.space.place(Stage::Queue, src, len, small, &meta) {
                Ok(()) => {
                    // Entered now; delivered when the batch is published.
                    self.count(global, |c| c.enter(Stage::Queue));
                    return Outcome::Queued;
                }
                Err(full) => {
                    shared.blocked = true;
                    shared.stuck = full;
                }
            }
        }
        // Behind older frames, or no rx entry: a large frame waits in a
        // free frame of the client's — unless frames wait in server memory:
        // they need the client's free frames first (a parked frame newer
        // than a spilled one would hold the frame the spilled one waits for).
        let mut full = shared.stuck;
        let seq = shared.next_seq;
        if !small && !self.waits_in_server_memory(shared) {
            match shared.space.park(seq, src, len, &meta) {
                Ok(()) => {
                    shared.next_seq += 1;
                    self.count(global, |c| c.enter(Stage::Queue));
                    return Outcome::Parked;
                }
                Err(why) => full = why,
            }
        }
        if !shared.gate.is_open() {
            self.count(global, |c| c.drop_on_entry(DropReason::Overloaded));
            return Outcome::Dropped(DropReason::Overloaded);
        }
        if self.spill_shared(seq, frame, src, len, small, pool) {
            shared.next_seq += 1;
            let budget = u32::try_from(self.overflow.capacity()).unwrap_or(u32::MAX);
            shared.gate.spilled(budget);
            self.count(global, |c| c.enter(Stage::Overflow));
            return Outcome::Overflow;
        }
        shared.gate.lost();
        let reason = match full {
            Full::NoFrame => DropReason::NoFrame,
            Full::Rx => DropReason::QueueFull,
        };
        self.count(global, |c| c.drop_on_entry(reason));
        Outcome::Dropped(reason)
    }

    /// Shared mode: whether frames of this filter wait in server memory
    /// (held, queued before the attach, or spilled).
    fn waits_in_server_memory(&self, shared: &SharedPath) -> bool {
        shared.held.is_some() || !self.queue.is_empty() || !self.overflow.is_empty()
    }

    /// Shared mode: copies a frame into the server's overflow pool, behind
    /// the filter's other waiting frames, if the filter's share and the pool
    /// have room (reserved before the copy). Returns whether it was kept.
    fn spill_shared(
        &self,
        seq: u64,
        frame: &RxFrame<'_>,
        src: Source<'_>,
        len: usize,
        small: bool,
        pool: &OverflowPool,
    ) -> bool {
        if self.overflow.is_full() {
            return false;
        }
        let spilled = pool.spill_with(small, |buf| match src {
            Source::Bytes(b) => {
                let n = len.min(b.len()).min(buf.len());
                buf[..n].copy_from_slice(&b[..n]);
                Some(n)
            }
            Source::Body(body) => match body.read_into(buf) {
                Ok(got) => Some(got.copied),
                Err(e) => {
                    tracing::warn!(error = %e, "reading a peeked frame to spill it failed");
                    None
                }
            },
        });
        let Some(spilled) = spilled else {
            return false;
        };
        let d = Delivery {
            len: len as u32,
            wire_len: frame.wire_len,
            ts_ns: frame.ts_ns,
            small,
            placed: Placed::Spilled(spilled),
            seq,
        };
        // `is_full` is exact here: this thread is the only producer.
        if let Err(d) = self.overflow.push(d) {
            tracing::error!(
                tag = self.tag,
                "bug: overflow full after check; please report"
            );
            self.release(d, pool);
            return false;
        }
        true
    }

    /// Data path, shared mode, once per batch (before the region is
    /// published): takes the frames the client posted on the fill ring, then
    /// moves waiting frames (held, queued before the attach, or spilled) into
    /// the region, oldest first, as far as it has room, then gives parked
    /// frames their rx entries; once none waits, new frames go straight into
    /// the region again. Spilled frames are copied from server memory
    /// (counted `copied`, or `delivered_small_spilled`). Also ticks the
    /// spill gate (reading the clock only while a window or cool-down runs).
    pub fn flush_shared(&self, shared: &mut SharedPath, pool: &OverflowPool) {
        if shared.gate.needs_tick() {
            shared.gate.tick(Instant::now());
        }
        shared.space.refill();
        if !shared.blocked {
            return;
        }
        loop {
            if shared.held.is_none() {
                shared.held = self.pop();
            }
            // The older of the oldest spilled (or held) and the oldest
            // parked frame goes first.
            let parked_first = match (&shared.held, shared.space.oldest_parked()) {
                (None, None) => {
                    shared.blocked = false;
                    return;
                }
                (Some((_, d)), Some(seq)) => seq < d.seq,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            if parked_first {
                if let Err(full) = shared.space.deliver_parked() {
                    shared.stuck = full;
                    return;
                }
                continue;
            }
            let Some((stage, d)) = shared.held.take() else {
                continue;
            };
            let meta = RxMeta {
                tag: self.tag,
                timestamp_ns: d.ts_ns,
                wire_len: d.wire_len,
                flags: 0,
            };
            let bytes = d.rpc_bytes();
            match shared
                .space
                .place(stage, Source::Bytes(bytes), bytes.len(), d.small, &meta)
            {
                Ok(()) => self.release(d, pool),
                Err(full) => {
                    shared.held = Some((stage, d));
                    shared.stuck = full;
                    return;
                }
            }
        }
    }

    /// Data path, shared mode, once per batch: makes the placed frames
    /// visible to the client, counts them delivered (exits of their stage),
    /// reports the region's new protocol violations, and notices a
    /// revocation. Returns whether the region is still usable.
    pub fn publish_shared(&self, shared: &mut SharedPath, global: Option<&Counters>) -> bool {
        let u = shared.space.publish();
        if !u.is_empty() {
            for (stage, by) in [Stage::Queue, Stage::Overflow].into_iter().zip(u.by_stage) {
                for (how, (n, bytes)) in [Exit::Small, Exit::Large].into_iter().zip(by) {
                    self.count(global, |c| c.exit_n(stage, how, n, bytes));
                }
            }
            // Every large frame delivered is counted in exactly one of
            // `zero_copy` / `copied`, for the filter and for the server.
            self.count(global, |c| c.large_paths(u.zero_copy, u.copied));
            // Parked frames a revoked region could not take.
            self.count(global, |c| {
                c.exit_n(Stage::Queue, Exit::Closed, u.closed, 0)
            });
        }
        for (kind, n) in shared.space.new_violations() {
            self.shared.violations[kind as usize].fetch_add(n, Ordering::Relaxed);
            self.counters.refuse_n(n);
        }
        if shared.space.is_revoked() {
            let summary = self.violations_summary();
            let _ = self.shared.revoked.set(format!(
                "the fetch capability of filter {:#018x} was revoked: its exchange region broke \
                 the ring protocol too often ({summary}); the client wrote invalid ring indices \
                 or frame numbers into shared memory. Fix the client, then install the filter \
                 again",
                self.tag
            ));
            self.close();
            return false;
        }
        true
    }

    /// Data path: ends shared mode after a revocation. Frames still waiting
    /// (parked, held or queued) are dropped (`closed`).
    pub fn detach_shared(
        &self,
        mut shared: SharedPath,
        pool: &OverflowPool,
        global: Option<&Counters>,
    ) {
        let parked = shared.space.close_parked();
        self.count(global, |c| c.exit_n(Stage::Queue, Exit::Closed, parked, 0));
        if let Some((stage, d)) = shared.held {
            self.release(d, pool);
            self.count(global, |c| c.exit(stage, Exit::Closed, 0));
        }
        self.drain_closed(pool, global);
    }

    /// How frames reach the client now.
    pub fn transport(&self) -> Transport {
        match self.shared.transport.load(Ordering::Acquire) {
            0 => Transport::Emulated,
            1 => Transport::Attaching,
            _ => Transport::Shared,
        }
    }

    /// Control plane: `attachRegion` was called. False if the filter is not
    /// in emulated mode (already attaching or attached).
    pub fn begin_attach(&self) -> bool {
        self.shared
            .transport
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The attach failed or its token expired: back to emulated mode.
    pub fn abort_attach(&self) {
        let _ = self
            .shared
            .transport
            .compare_exchange(1, 0, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The region arrived and was handed to the data path.
    pub fn set_shared(&self) {
        self.shared.transport.store(2, Ordering::Release);
    }

    /// Why the capability was revoked, if it was.
    pub fn revoked(&self) -> Option<&str> {
        self.shared.revoked.get().map(String::as_str)
    }

    /// The region's protocol violations by kind (names as the exchange crate
    /// gives them).
    pub fn violations(&self) -> Vec<(&'static str, u64)> {
        ViolationKind::ALL
            .iter()
            .map(|k| {
                (
                    k.name(),
                    self.shared.violations[*k as usize].load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    fn violations_summary(&self) -> String {
        let parts: Vec<String> = self
            .violations()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        parts.join(", ")
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        stage: Stage,
        frame: &RxFrame<'_>,
        small: bool,
        placed: Placed,
        pool: &OverflowPool,
        global: Option<&Counters>,
    ) {
        let q = match stage {
            Stage::Queue => &self.queue,
            Stage::Overflow => &self.overflow,
        };
        let d = Delivery {
            len: frame.data.len() as u32,
            wire_len: frame.wire_len,
            ts_ns: frame.ts_ns,
            small,
            placed,
            seq: 0,
        };
        if let Err(d) = q.push(d) {
            // Unreachable: we checked for room and are the only producer.
            // The frame is already counted as entered; count it out as
            // dropped so the identity survives even this.
            tracing::error!(
                tag = self.tag,
                "bug: filter queue full after check; please report"
            );
            self.release(d, pool);
            self.count(global, |c| c.exit(stage, Exit::Closed, 0));
        }
    }

    /// Control plane: the oldest waiting frame and the stage it leaves.
    /// The caller must count its exit (deliver or drop) with
    /// [`Counters::exit`] on this filter and, for exclusive filters, globally.
    pub fn pop(&self) -> Option<(Stage, Delivery)> {
        if let Some(d) = self.queue.pop() {
            return Some((Stage::Queue, d));
        }
        self.overflow.pop().map(|d| (Stage::Overflow, d))
    }

    /// Frees the storage of a frame that is leaving (its bytes already
    /// delivered, or dropped). Pages go back to the server's free frames.
    pub fn release(&self, d: Delivery, pool: &OverflowPool) {
        match d.placed {
            Placed::Small(s) => self.space.unstage(s),
            Placed::Large(p) => self.space.give_back(p),
            Placed::Spilled(s) => pool.release(s),
        }
    }

    /// The client gave page frame `page` back in an exchange.
    pub fn give_back(&self, page: Page) {
        self.space.give_back(page);
    }

    /// Marks the filter closed: the control plane refuses further calls.
    pub fn close(&self) -> bool {
        !self.closed.swap(true, Ordering::AcqRel)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Drops every waiting frame (reason `closed`) and frees its storage.
    /// Safe to call from either thread, and more than once.
    pub fn drain_closed(&self, pool: &OverflowPool, global: Option<&Counters>) -> u64 {
        let mut n = 0;
        while let Some((stage, d)) = self.pop() {
            self.release(d, pool);
            self.count(global, |c| c.exit(stage, Exit::Closed, 0));
            n += 1;
        }
        n
    }

    /// Frames in the queue and in overflow now (approximate while traffic flows).
    pub fn waiting(&self) -> (usize, usize) {
        (self.queue.len(), self.overflow.len())
    }

    /// Free page frames the server holds for this filter now.
    pub fn free_frames(&self) -> usize {
        self.space.free_frames()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn geometry() -> FilterGeometry {
        FilterGeometry {
            queue_limit: 4,
            frames: 8,
            small_slots: 4,
            frame_size: 256,
            small_threshold: 16,
        }
    }

    fn rx(data: &[u8]) -> RxFrame<'_> {
        RxFrame {
            data,
            wire_len: data.len() as u32,
            ts_ns: 1,
        }
    }

    #[test]
    fn spills_in_order_then_drops_queue_full() {
        let pool = OverflowPool::new(2, 256, 16);
        let global = Counters::default();
        let (f, _client) = Filter::new(1, Mode::Exclusive, "x".into(), geometry(), 2);
        let mut outcomes = Vec::new();
        for i in 0u8..8 {
            outcomes.push(f.place(&rx(&[i; 8]), &pool, Some(&global)));
        }
        use Outcome::*;
        assert_eq!(
            outcomes,
            [
                Queued,
                Queued,
                Queued,
                Queued,
                Overflow,
                Overflow,
                Dropped(DropReason::QueueFull),
                Dropped(DropReason::QueueFull)
            ]
        );
        let s = global.snapshot();
        assert_eq!(
            (s.received, s.queued, s.overflow, s.dropped()),
            (8, 4, 2, 2)
        );
        assert!(s.identity_holds());
        // Arrival order across the two stages.
        let mut seen = Vec::new();
        while let Some((stage, d)) = f.pop() {
            seen.push(d.rpc_bytes()[0]);
            f.release(d, &pool);
            f.counters.exit(stage, Exit::Small, 8);
            global.exit(stage, Exit::Small, 8);
        }
        assert_eq!(seen, [0, 1, 2, 3, 4, 5]);
        let s = global.snapshot();
        assert_eq!((s.delivered_small, s.queued, s.overflow), (6, 0, 0));
        assert!(s.identity_holds());
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn large_frames_need_a_free_page_then_spill() {
        let pool = OverflowPool::new(8, 256, 16);
        let (f, _client) = Filter::new(1, Mode::Exclusive, "x".into(), geometry(), 8);
        // 8 frames: the server holds 4 free; the queue holds 4.
        for _ in 0..4 {
            assert_eq!(f.place(&rx(&[7; 100]), &pool, None), Outcome::Queued);
        }
        assert_eq!(f.free_frames(), 0);
        assert_eq!(f.place(&rx(&[7; 100]), &pool, None), Outcome::Overflow);
        // Once something is in overflow, small frames follow it there.
        assert_eq!(f.place(&rx(&[1; 4]), &pool, None), Outcome::Overflow);
    }

    #[test]
    fn the_spill_gate_closes_on_a_loss_and_reopens_after_the_cool_down() {
        let t0 = Instant::now();
        let mut gate = SpillGate::default();
        gate.tick(t0);
        assert!(gate.is_open() && !gate.needs_tick());
        gate.lost();
        assert!(!gate.is_open(), "closed at once, for the rest of the batch");
        gate.tick(t0);
        gate.lost();
        gate.tick(t0 + SPILL_COOL_DOWN / 2);
        assert!(!gate.is_open(), "a loss while closed does not extend it");
        gate.tick(t0 + SPILL_COOL_DOWN);
        assert_eq!(gate, SpillGate::default());
    }

    #[test]
    fn the_spill_gate_takes_one_budget_of_frames_per_window() {
        let t0 = Instant::now();
        let mut gate = SpillGate::default();
        for _ in 0..3 {
            gate.spilled(4);
        }
        gate.tick(t0);
        assert!(gate.is_open());
        gate.spilled(4);
        assert!(!gate.is_open(), "the burst's budget is used up");
        gate.tick(t0 + SPILL_COOL_DOWN / 2);
        gate.tick(t0 + SPILL_COOL_DOWN);
        assert!(!gate.is_open(), "the cool-down runs from the closing");
        gate.tick(t0 + SPILL_COOL_DOWN * 3 / 2);
        assert!(gate.is_open());
        // A window that ends without using its budget starts afresh.
        gate.spilled(4);
        gate.tick(t0 + SPILL_COOL_DOWN * 2);
        gate.tick(t0 + SPILL_COOL_DOWN * 3);
        assert_eq!(gate, SpillGate::default());
    }

    #[test]
    fn drain_closed_frees_everything() {
        let pool = OverflowPool::new(8, 256, 16);
        let global = Counters::default();
        let (f, _client) = Filter::new(1, Mode::Exclusive, "x".into(), geometry(), 8);
        for i in 0..10u8 {
            f.place(&rx(&[i; 100]), &pool, Some(&global));
        }
        assert_eq!(f.drain_closed(&pool, Some(&global)), 10);
        assert_eq!(f.free_frames(), 4);
        assert_eq!(pool.in_use(), 0);
        let s = global.snapshot();
        assert_eq!(s.drops_for(DropReason::Closed), 10);
        assert!(s.identity_holds());
    }
}
