//! The data path: one thread that receives, classifies and places frames.
//!
//! It never waits on the control plane. Installs and removals arrive as
//! [`Command`]s on a channel it checks once per batch; each carries the new
//! immutable classifier built by the control plane (`filters::FilterSet`), so
//! swapping it in is a pointer move. Per frame the thread allocates nothing
//! and takes no lock: classification reads the immutable trie, placement
//! moves preallocated buffers through lock-free queues (see [`crate::pool`]).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use filters::{Classifier, Program, Reach, NOT_INTERESTED};

use crate::backend::af_packet::FrameBody;
use crate::backend::{Backend, RxFrame, Wake};
use crate::filter::{Filter, Outcome, SharedPath};
use crate::hostpath::{HostPath, Route};
use crate::place::{OverflowPool, Source};
use crate::stats::{Counters, DropReason};
use crate::tag::Tag;

/// Frames handled between two looks at the command channel (and two
/// publishes of each region): 128 halves the per-batch costs of 64 (ring
/// publishes, refills, the clock and channel looks) while a batch still fits
/// in a quarter of a 512-entry ring.
pub const BATCH: usize = 128;

/// Longest sleep when no frame is ready.
const IDLE_WAIT: Duration = Duration::from_millis(20);

/// Longest sleep while a shared-mode filter has frames waiting for room in
/// its region (the client frees rx entries and posts fill frames without
/// waking the server; the next look moves them).
const WAITING_WAIT: Duration = Duration::from_millis(1);

/// Hashes a tag for the data path's filter table with one multiplication
/// (FxHash's constant): tags are not chosen by clients (the server issues
/// them, a counter in the low bits), so the table needs no SipHash, which
/// was an eighth of the per-packet time. The low bits of the product (the
/// bucket) are a bijection of the counter's low bits, the high bits (the
/// control byte) mix in the whole tag.
#[derive(Debug, Default, Clone, Copy)]
pub struct TagHasher(u64);

const FX_K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(FX_K);
    }
}

/// The data path's table of exclusive filters by tag.
type SlotTable = HashMap<Tag, Slot, BuildHasherDefault<TagHasher>>;

/// A change the control plane asks of the data path.
#[derive(Debug)]
pub enum Command {
    /// An exclusive filter, and the classifier that includes it.
    Install {
        filter: Arc<Filter>,
        classifier: Arc<Classifier>,
    },
    /// A monitor filter (gets copies; evaluated beside the classifier).
    InstallMonitor {
        filter: Arc<Filter>,
        program: Program,
    },
    /// A filter is gone; `classifier` is the new one for exclusive filters.
    /// The data path drops what it still queued for it (reason `closed`).
    Remove {
        tag: Tag,
        classifier: Option<Arc<Classifier>>,
    },
    /// Shared mode: the filter's client attached an exchange region; from
    /// now on its frames go there.
    Attach { tag: Tag, shared: Box<SharedPath> },
    /// Stop the thread.
    Stop,
}

/// One installed filter as the data path holds it.
#[derive(Debug)]
struct Slot {
    filter: Arc<Filter>,
    /// Shared mode: the client's region (the data path is its one driver).
    shared: Option<Box<SharedPath>>,
}

impl Slot {
    fn new(filter: Arc<Filter>) -> Slot {
        Slot {
            filter,
            shared: None,
        }
    }

    /// Ends the filter: drops what waits for it (`closed`) and unmaps its region.
    fn close(mut self, pool: &OverflowPool, global: Option<&Counters>) {
        match self.shared.take() {
            Some(sp) => self.filter.detach_shared(*sp, pool, global),
            None => {
                self.filter.drain_closed(pool, global);
            }
        }
    }

    /// Places a frame this filter matched: into its region in shared mode,
    /// its frame space otherwise. `src` is `Source::Body` only in shared mode.
    fn place(
        &mut self,
        frame: &RxFrame<'_>,
        src: Source<'_>,
        pool: &OverflowPool,
        global: Option<&Counters>,
    ) -> Outcome {
        if self.filter.revoked().is_some() {
            // Its capability is dead; the client has not closed it yet.
            self.filter.counters.drop_on_entry(DropReason::Closed);
            if let Some(g) = global {
                g.drop_on_entry(DropReason::Closed);
            }
            return Outcome::Dropped(DropReason::Closed);
        }
        match (&mut self.shared, src) {
            (Some(sp), src) => self.filter.place_shared(frame, src, sp, pool, global),
            (None, Source::Bytes(data)) => {
                let complete = RxFrame { data, ..*frame };
                self.filter.place(&complete, pool, global)
            }
            (None, Source::Body(_)) => {
                tracing::error!("bug: a peeked frame reached an emulated filter; please report");
                Outcome::Dropped(DropReason::Closed)
            }
        }
    }

    /// Whether a peeked frame of `frame_len` bytes can be written by the
    /// backend straight into this filter's region (zero copy): shared mode,
    /// and a frame that goes into a page frame, not a small slot.
    fn takes_body(&self, frame_len: usize) -> bool {
        self.shared.is_some() && frame_len > self.filter.geometry.small_threshold as usize
    }

    /// Once per batch: takes the client's posted frames, moves waiting
    /// frames into the region, publishes, counts. Returns whether frames
    /// still wait for room in the region.
    fn after_batch(&mut self, pool: &OverflowPool, global: Option<&Counters>) -> bool {
        let Some(sp) = self.shared.as_mut() else {
            return false;
        };
        self.filter.flush_shared(sp, pool);
        if !self.filter.publish_shared(sp, global) {
            tracing::warn!(
                tag = format_args!("{:#018x}", self.filter.tag),
                "exchange region revoked; the filter's frames are dropped until it is closed"
            );
            if let Some(sp) = self.shared.take() {
                self.filter.detach_shared(*sp, pool, global);
            }
            return false;
        }
        sp.is_blocked()
    }
}

/// The data path's own state.
struct DataPath {
    classifier: Arc<Classifier>,
    exclusive: SlotTable,
    monitors: Vec<(Program, Slot)>,
    /// The largest reach of the monitors' programs.
    monitor_reach: Reach,
    pool: Arc<OverflowPool>,
    global: Arc<Counters>,
    /// Filters with a region attached (exclusive and monitors).
    shared: usize,
    /// A frame's worth of server memory, to complete a peeked frame that an
    /// emulated filter, a monitor or the overflow pool needs in full.
    scratch: Box<[u8]>,
    /// Firewall, control plane, destination-MAC fast path (issue 5).
    host: HostPath,
    /// This batch: frames a shared-mode region took, and frames that found
    /// no room in theirs (spilled or dropped).
    batch_placed: u32,
    batch_stalled: u32,
}

/// What a peeked frame's head says ([`DataPath::decide_on_head`]).
enum HeadVerdict {
    /// The head decides; with the classifier's tag when it was computed on
    /// the head.
    Decides(Option<Tag>),
    /// Receive the frame whole first.
    NeedsWhole,
}

impl DataPath {
    /// Applies a command; returns false on `Stop`.
    fn apply(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Install { filter, classifier } => {
                self.classifier = classifier;
                self.exclusive.insert(filter.tag, Slot::new(filter));
            }
            Command::InstallMonitor { filter, program } => {
                self.monitor_reach = self.monitor_reach.max(program.reach());
                self.monitors.push((program, Slot::new(filter)))
            }
            Command::Remove { tag, classifier } => {
                if let Some(c) = classifier {
                    self.classifier = c;
                }
                if let Some(slot) = self.exclusive.remove(&tag) {
                    self.shared -= usize::from(slot.shared.is_some());
                    slot.close(&self.pool, Some(&self.global));
                }
                if let Some(i) = self.monitors.iter().position(|(_, s)| s.filter.tag == tag) {
                    let (_, slot) = self.monitors.swap_remove(i);
                    self.shared -= usize::from(slot.shared.is_some());
                    slot.close(&self.pool, None);
                    self.monitor_reach = self
                        .monitors
                        .iter()
                        .map(|(p, _)| p.reach())
                        .max()
                        .unwrap_or_default();
                }
            }
            Command::Attach { tag, shared } => {
                let (slot, global) = match self.exclusive.get_mut(&tag) {
                    Some(s) => (Some(s), Some(&*self.global)),
                    None => (
                        self.monitors
                            .iter_mut()
                            .find(|(_, s)| s.filter.tag == tag)
                            .map(|(_, s)| s),
                        None,
                    ),
                };
                match slot {
                    Some(slot) if slot.shared.is_none() => {
                        slot.shared = Some(shared);
                        slot.filter.set_shared();
                        self.shared += 1;
                        // What waited before the attach goes first, now.
                        slot.after_batch(&self.pool, global);
                    }
                    // Removed in the meantime (the region is unmapped), or a
                    // second region (the control plane refuses that).
                    _ => tracing::debug!(
                        tag = format_args!("{tag:#018x}"),
                        "attach for a gone filter ignored"
                    ),
                }
            }
            Command::Stop => return false,
        }
        true
    }

    /// Classifies and places one frame. `body` is set for a frame the
    /// backend only peeked (`data` is its head): it is written straight into
    /// a shared-mode client's frame when that client alone gets it, and
    /// completed into `scratch` otherwise.
    ///
    /// Operator rules run first, on the head, so that no delivery path —
    /// zero copy included — bypasses them; then the host's control plane
    /// and the destination-MAC fast path ([`crate::hostpath`]).
    fn process(&mut self, frame: &RxFrame<'_>, body: Option<&dyn FrameBody>) {
        let mut head_verdict = None;
        if let Some(body) = body {
            match self.decide_on_head(frame) {
                HeadVerdict::NeedsWhole => return self.process_whole(frame, body),
                HeadVerdict::Decides(tag) => head_verdict = tag,
            }
        }
        let tag = match self.host.receive(frame) {
            Route::Dropped => return self.global.drop_on_entry(DropReason::Firewall),
            Route::Control => return self.global.enter_control(),
            Route::Owner(tag) => tag,
            Route::Classify => {
                head_verdict.unwrap_or_else(|| self.classifier.classify(frame.data, frame.wire_len))
            }
        };
        if !self.monitors.is_empty() {
            return self.process_monitored(tag, frame, body);
        }
        // No monitor: one table lookup, one placement.
        let slot = if tag == NOT_INTERESTED {
            None
        } else {
            self.exclusive.get_mut(&tag)
        };
        let Some(slot) = slot else {
            self.global.drop_on_entry(DropReason::NoFilter);
            return;
        };
        let outcome = match body {
            None => slot.place(
                frame,
                Source::Bytes(frame.data),
                &self.pool,
                Some(&self.global),
            ),
            Some(body) if slot.takes_body(body.frame_len()) => {
                slot.place(frame, Source::Body(body), &self.pool, Some(&self.global))
            }
            Some(body) => match body.read_into(&mut self.scratch) {
                Ok(got) => {
                    let data = &self.scratch[..got.copied.min(self.scratch.len())];
                    let complete = RxFrame { data, ..*frame };
                    slot.place(
                        &complete,
                        Source::Bytes(data),
                        &self.pool,
                        Some(&self.global),
                    )
                }
                Err(e) => {
                    tracing::warn!(error = %e, "receiving a peeked frame failed");
                    return;
                }
            },
        };
        if slot.shared.is_some() {
            self.note(outcome);
        }
    }

    /// Counts a shared-mode placement for the batch's stall check.
    fn note(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Queued => self.batch_placed += 1,
            Outcome::Parked
            | Outcome::Overflow
            | Outcome::Dropped(
                DropReason::QueueFull | DropReason::NoFrame | DropReason::Overloaded,
            ) => self.batch_stalled += 1,
            Outcome::Dropped(_) => {}
        }
    }

    /// [`process`](Self::process) when monitor filters are installed: they
    /// get copies, so a peeked frame they match is completed first.
    fn process_monitored(&mut self, tag: Tag, frame: &RxFrame<'_>, body: Option<&dyn FrameBody>) {
        if let Some(body) = body {
            let straight = tag != NOT_INTERESTED
                && self
                    .exclusive
                    .get(&tag)
                    .is_some_and(|s| s.takes_body(body.frame_len()))
                && !self
                    .monitors
                    .iter()
                    .any(|(p, _)| p.matches(frame.data, frame.wire_len));
            if straight {
                self.place(tag, frame, Source::Body(body));
                return;
            }
            let wanted = (tag != NOT_INTERESTED && self.exclusive.contains_key(&tag))
                || !self.monitors.is_empty();
            if !wanted {
                self.global.drop_on_entry(DropReason::NoFilter);
                return;
            }
            let mut scratch = std::mem::take(&mut self.scratch);
            match body.read_into(&mut scratch) {
                Ok(got) => {
                    let complete = RxFrame {
                        data: &scratch[..got.copied.min(scratch.len())],
                        ..*frame
                    };
                    self.process_complete(tag, &complete);
                }
                Err(e) => tracing::warn!(error = %e, "receiving a peeked frame failed"),
            }
            self.scratch = scratch;
            return;
        }
        self.process_complete(tag, frame);
    }

    /// How far into a frame the firewall, the control plane, the classifier
    /// and the monitors read to decide where it goes.
    #[cfg(test)]
    fn reach(&self) -> Reach {
        self.classifier.reach().max(self.head_reach_of_others())
    }

    /// How much of each frame to peek at: what the firewall, the control
    /// plane and the monitors read (all the operator's), and the
    /// classifier's bounded reach. A client filter whose reach is unbounded
    /// does not make every head longer: the frames whose walk reaches its
    /// tests are received whole one by one ([`Self::decide_on_head`]).
    fn head_reach(&self) -> Reach {
        self.classifier
            .head_reach()
            .max(self.head_reach_of_others())
    }

    fn head_reach_of_others(&self) -> Reach {
        self.monitor_reach.max(self.host.reach())
    }

    /// What a peeked frame's head decides. The head decides when it is the
    /// whole frame, or when it holds every byte the firewall, the control
    /// plane and the monitors read, the control plane (which answers from
    /// the whole frame) does not claim the frame, and the classifier's walk
    /// over the head did not need more (then its verdict comes along, so
    /// the frame is not classified twice).
    fn decide_on_head(&self, frame: &RxFrame<'_>) -> HeadVerdict {
        let head = frame.data;
        if head.len() >= frame.wire_len as usize {
            return HeadVerdict::Decides(None);
        }
        if !self.head_reach_of_others().within(head.len()) || self.host.claims(head) {
            return HeadVerdict::NeedsWhole;
        }
        match self.classifier.classify_head(head, frame.wire_len) {
            Some(tag) => HeadVerdict::Decides(Some(tag)),
            None => HeadVerdict::NeedsWhole,
        }
    }

    /// A peeked frame its head does not decide: received whole into server
    /// memory, then decided and placed like a frame of a copying backend
    /// (a large frame counts as `copied`, never silently).
    fn process_whole(&mut self, frame: &RxFrame<'_>, body: &dyn FrameBody) {
        let mut scratch = std::mem::take(&mut self.scratch);
        match body.read_into(&mut scratch) {
            Ok(got) => {
                let whole = RxFrame {
                    data: &scratch[..got.copied.min(scratch.len())],
                    ..*frame
                };
                self.process(&whole, None);
            }
            Err(e) => tracing::warn!(error = %e, "receiving a peeked frame failed"),
        }
        self.scratch = scratch;
    }

    fn process_complete(&mut self, tag: Tag, frame: &RxFrame<'_>) {
        for (program, monitor) in &mut self.monitors {
            if program.matches(frame.data, frame.wire_len) {
                monitor.place(frame, Source::Bytes(frame.data), &self.pool, None);
            }
        }
        self.place(tag, frame, Source::Bytes(frame.data));
    }

    fn place(&mut self, tag: Tag, frame: &RxFrame<'_>, src: Source<'_>) {
        match self.exclusive.get_mut(&tag) {
            Some(slot) if tag != NOT_INTERESTED => {
                let outcome = slot.place(frame, src, &self.pool, Some(&self.global));
                if slot.shared.is_some() {
                    self.note(outcome);
                }
            }
            // Issue 5 routes some of these to the control plane.
            _ => self.global.drop_on_entry(DropReason::NoFilter),
        }
    }

    /// Once per batch (also when idle), before `after_batch`: shared-mode
    /// clients' tx rings are drained ([`crate::txring`]); the completions
    /// are published with the batch.
    fn transmit(&mut self, backend: &mut dyn Backend, received: bool) {
        if self.shared == 0 {
            return;
        }
        for slot in self.exclusive.values_mut() {
            if let Some(sp) = slot.shared.as_mut() {
                let region = sp.space.region_mut();
                self.host
                    .transmit_ring(slot.filter.tag, region, backend, received);
            }
        }
    }

    /// Whether most of the batch just handled found no room in its
    /// shared-mode region (parked, spilled or dropped): the clients need the
    /// CPU to make room more than this thread needs it to generate waiting
    /// or lost frames. Resets the batch's counts.
    fn take_stalled(&mut self) -> bool {
        let stalled = self.batch_stalled > self.batch_placed;
        self.batch_placed = 0;
        self.batch_stalled = 0;
        stalled
    }

    /// Once per batch (also when idle): shared-mode regions take their
    /// waiting frames and publish. Returns whether frames still wait.
    fn after_batch(&mut self) -> bool {
        if self.shared == 0 {
            return false;
        }
        let mut waiting = false;
        let mut gone = 0;
        for slot in self.exclusive.values_mut() {
            if slot.shared.is_some() {
                waiting |= slot.after_batch(&self.pool, Some(&self.global));
                gone += usize::from(slot.shared.is_none());
            }
        }
        for (_, slot) in &mut self.monitors {
            if slot.shared.is_some() {
                waiting |= slot.after_batch(&self.pool, None);
                gone += usize::from(slot.shared.is_none());
            }
        }
        self.shared -= gone;
        waiting
    }
}

/// The control plane's handle on the data-path thread.
#[derive(Debug)]
pub struct DataPathHandle {
    tx: Sender<Command>,
    wake: Wake,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DataPathHandle {
    /// Starts the data-path thread on `backend`, with no host (firewall
    /// only, no rules).
    pub fn spawn(
        backend: Box<dyn Backend>,
        pool: Arc<OverflowPool>,
        global: Arc<Counters>,
        wake: Wake,
    ) -> std::io::Result<DataPathHandle> {
        Self::spawn_on(backend, pool, global, wake, None)
    }

    /// [`spawn`](Self::spawn) with the thread pinned to `cpu` (if given).
    pub fn spawn_on(
        backend: Box<dyn Backend>,
        pool: Arc<OverflowPool>,
        global: Arc<Counters>,
        wake: Wake,
        cpu: Option<usize>,
    ) -> std::io::Result<DataPathHandle> {
        let (_, host) = crate::hostpath::HostControl::disabled(wake.clone());
        Self::spawn_with_host(backend, pool, global, wake, host, cpu)
    }

    /// Starts the data-path thread on `backend`, with the host half of the
    /// control plane (see [`crate::hostpath`]), pinned to `cpu` if given.
    /// A CPU the process may not run on is refused here, before the thread
    /// starts.
    pub fn spawn_with_host(
        mut backend: Box<dyn Backend>,
        pool: Arc<OverflowPool>,
        global: Arc<Counters>,
        wake: Wake,
        host: HostPath,
        cpu: Option<usize>,
    ) -> std::io::Result<DataPathHandle> {
        if let Some(cpu) = cpu {
            crate::sys::cpu::check_allowed(cpu)?;
        }
        let (tx, rx): (Sender<Command>, Receiver<Command>) = crossbeam_channel::unbounded();
        let thread_wake = wake.clone();
        let thread = std::thread::Builder::new()
            .name("netserver-datapath".into())
            .spawn(move || {
                if let Some(cpu) = cpu {
                    match crate::sys::cpu::pin_current_thread(cpu) {
                        Ok(()) => tracing::debug!(cpu, "data path pinned"),
                        Err(e) => tracing::warn!(cpu, error = %e, "data path not pinned"),
                    }
                }
                thread_wake.register_current();
                backend.watch_wake(&thread_wake);
                let mut dp = DataPath {
                    classifier: Arc::default(),
                    exclusive: SlotTable::default(),
                    monitors: Vec::new(),
                    monitor_reach: Reach::NOTHING,
                    scratch: vec![0u8; pool.frame_size()].into_boxed_slice(),
                    pool,
                    global,
                    shared: 0,
                    host,
                    batch_placed: 0,
                    batch_stalled: 0,
                };
                tracing::debug!(backend = backend.name(), "data path running");
                loop {
                    loop {
                        match rx.try_recv() {
                            Ok(cmd) => {
                                if !dp.apply(cmd) {
                                    return;
                                }
                            }
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => return,
                        }
                    }
                    // Peek then place only helps a shared-mode client.
                    let placed = if dp.shared > 0 {
                        backend.set_head_len(match dp.head_reach() {
                            Reach::Bounded(n) => usize::try_from(n).unwrap_or(usize::MAX),
                            // An operator's rule or monitor reads without
                            // bound: every frame is completed before it is
                            // decided, no use peeking.
                            Reach::Unbounded => 0,
                        });
                        backend
                            .recv_placed(BATCH, Duration::ZERO, &mut |f, body| dp.process(f, body))
                    } else {
                        None
                    };
                    let n = match placed {
                        Some(n) => n,
                        None => backend.recv_batch(BATCH, &mut |f| dp.process(f, None)),
                    };
                    dp.transmit(&mut *backend, n > 0);
                    let waiting = dp.after_batch();
                    dp.host.service(&mut *backend, n > 0);
                    if n == 0 {
                        let longest = if waiting { WAITING_WAIT } else { IDLE_WAIT };
                        backend.wait(dp.host.wait_for(longest));
                    } else if dp.take_stalled() {
                        // Every region this batch went to was full: let the
                        // clients run (one system call per batch, and only
                        // when frames are being lost anyway).
                        std::thread::yield_now();
                    }
                }
            })?;
        Ok(DataPathHandle {
            tx,
            wake,
            thread: Some(thread),
        })
    }

    /// A handle that sends commands from another thread (the region
    /// acceptor).
    pub fn commander(&self) -> Commander {
        Commander {
            tx: self.tx.clone(),
            wake: self.wake.clone(),
        }
    }

    /// Sends a command and wakes the thread.
    pub fn send(&self, cmd: Command) {
        // The thread only stops on `Stop` or when this sender is gone.
        let _ = self.tx.send(cmd);
        self.wake.wake();
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        self.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the data-path thread panicked");
            }
        }
    }
}

/// Sends commands to the data path from any thread.
#[derive(Debug, Clone)]
pub struct Commander {
    tx: Sender<Command>,
    wake: Wake,
}

impl Commander {
    /// Sends a command and wakes the thread.
    pub fn send(&self, cmd: Command) {
        let _ = self.tx.send(cmd);
        self.wake.wake();
    }
}

impl Drop for DataPathHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::emulated::Emulated;
    use crate::exchange::Exchange;
    use crate::filter::{FilterGeometry, Mode, SharedPath};
    use filters::{Atom, Field, FilterSet, Limits, Width};
    use std::sync::atomic::{AtomicBool, Ordering};

    fn ethertype(t: u16) -> Program {
        Program::new(vec![vec![Atom::Eq {
            field: Field::at(12, Width::Half),
            mask: 0xffff,
            value: u32::from(t),
        }]])
    }

    /// The server's default page and small-slot sizes, with small queues.
    fn default_test_geometry() -> FilterGeometry {
        FilterGeometry {
            queue_limit: 32,
            frames: 8,
            small_slots: 8,
            frame_size: 4096,
            small_threshold: 128,
        }
    }

    fn frame(ethertype: u16, len: usize, seq: u32) -> Vec<u8> {
        let mut f = vec![0u8; len.max(18)];
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f[14..18].copy_from_slice(&seq.to_be_bytes());
        f
    }

    /// The accounting identity holds in every snapshot while an injector, a
    /// fetching client, a client that never fetches and the data path all run.
    #[test]
    fn identity_holds_in_every_snapshot_under_concurrent_load() {
        let wake = Wake::default();
        let backend = Emulated::new(256, 512, wake.clone());
        let injector = backend.injector().unwrap();
        let pool = Arc::new(OverflowPool::new(64, 512, 64));
        let global = Arc::new(Counters::default());
        let mut dp =
            DataPathHandle::spawn(Box::new(backend), pool.clone(), global.clone(), wake).unwrap();
        let geometry = FilterGeometry {
            queue_limit: 32,
            frames: 16,
            small_slots: 4,
            frame_size: 512,
            small_threshold: 64,
        };
        let mut set = FilterSet::new(Limits::default());
        let (fast, fast_pages) = Filter::new(1, Mode::Exclusive, "fast".into(), geometry, 64);
        let (slow, _) = Filter::new(2, Mode::Exclusive, "slow".into(), geometry, 64);
        let (fast, slow) = (Arc::new(fast), Arc::new(slow));
        let c = set.insert(1, ethertype(0x0800)).unwrap();
        dp.send(Command::Install {
            filter: fast.clone(),
            classifier: c,
        });
        let c = set.insert(2, ethertype(0x86dd)).unwrap();
        dp.send(Command::Install {
            filter: slow.clone(),
            classifier: c,
        });

        const N: u32 = 30_000;
        let done = Arc::new(AtomicBool::new(false));
        let checker = {
            let (global, done) = (global.clone(), done.clone());
            std::thread::spawn(move || {
                let mut checks = 0u64;
                while !done.load(Ordering::Acquire) {
                    let s = global.snapshot();
                    assert!(s.identity_holds(), "identity broken: {s:?}");
                    checks += 1;
                }
                checks
            })
        };
        let consumer = {
            let (fast, pool, global, done) =
                (fast.clone(), pool.clone(), global.clone(), done.clone());
            std::thread::spawn(move || {
                let mut ex = Exchange::new(fast, fast_pages, pool, Some(global));
                let mut mine: Vec<u32> = (8..16).collect();
                let mut last = None;
                while !done.load(Ordering::Acquire) {
                    let page = mine[0];
                    let mut got = None;
                    ex.fetch(0, page, &mut |f| {
                        got = Some((
                            f.location,
                            u32::from_be_bytes(f.data[14..18].try_into().unwrap()),
                        ))
                    })
                    .unwrap();
                    match got {
                        Some((crate::exchange::Location::Large { frame }, seq)) => {
                            mine.remove(0);
                            mine.push(frame);
                            assert!(last < Some(seq), "out of order");
                            last = Some(seq);
                        }
                        Some((_, seq)) => {
                            assert!(last < Some(seq), "out of order");
                            last = Some(seq);
                        }
                        None => std::thread::yield_now(),
                    }
                }
            })
        };
        for i in 0..N {
            let f = match i % 4 {
                0 => frame(0x0800, 60, i),
                1 => frame(0x0800, 300, i),
                2 => frame(0x86dd, 200, i),
                _ => frame(0x0806, 42, i),
            };
            while injector.inject(&f, 0).is_err() {
                injector.wake();
                std::thread::yield_now();
            }
            if i % 16 == 0 {
                injector.wake();
            }
        }
        injector.wake();
        // Let the data path finish, then stop the consumer.
        while global.snapshot().received < u64::from(N) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50));
        done.store(true, Ordering::Release);
        consumer.join().unwrap();
        let checks = checker.join().unwrap();
        assert!(checks > 100, "only {checks} snapshots taken");

        let s = global.snapshot();
        assert_eq!(s.received, u64::from(N));
        assert!(s.identity_holds());
        assert_eq!(s.drops_for(DropReason::NoFilter), u64::from(N / 4));
        let slow_s = slow.counters.snapshot();
        assert_eq!(slow_s.received, u64::from(N / 4));
        assert_eq!(slow_s.delivered(), 0);
        assert!(slow_s.drops_for(DropReason::QueueFull) > 0);
        // Its large frames filled the 8 free frames it started with, then
        // spilled into the overflow pool, then were dropped.
        assert_eq!(slow_s.queued, 8);
        assert!(slow_s.overflow > 0);
        // Removing the slow filter drops what it held and frees the pool.
        dp.send(Command::Remove {
            tag: 2,
            classifier: set.remove(2),
        });
        std::thread::sleep(Duration::from_millis(50));
        let s = global.snapshot();
        assert!(s.identity_holds());
        assert_eq!(
            slow.counters.snapshot().queued + slow.counters.snapshot().overflow,
            0
        );
        dp.stop();
    }

    /// A client region attached over a socket pair, as the acceptor does it.
    fn attach_pair(
        frames: u32,
        revoke_after: u64,
    ) -> (
        exchange::ClientRegion,
        Vec<exchange::Frame>,
        exchange::ServerRegion,
    ) {
        let geometry = exchange::Geometry {
            rx_entries: 8,
            fill_entries: 8,
            tx_entries: 8,
            completion_entries: 8,
            small_slot_count: 8,
            small_slot_size: 128,
            frame_count: frames,
            frame_size: 4096,
        };
        let config = exchange::server::ServerConfig {
            revoke_after,
            ..Default::default()
        };
        exchange::ServerRegion::pair(geometry, &config).unwrap()
    }

    fn shared_setup(
        revoke_after: u64,
    ) -> (
        DataPathHandle,
        crate::backend::emulated::Injector,
        Arc<Filter>,
        Arc<Counters>,
        exchange::ClientRegion,
        Vec<exchange::Frame>,
    ) {
        let wake = Wake::default();
        let backend = Emulated::new(256, 4096, wake.clone());
        let injector = backend.injector().unwrap();
        let pool = Arc::new(OverflowPool::new(8, 4096, 128));
        let global = Arc::new(Counters::default());
        let dp = DataPathHandle::spawn(Box::new(backend), pool, global.clone(), wake).unwrap();
        let geometry = default_test_geometry();
        let mut set = FilterSet::new(Limits::default());
        let (f, _) = Filter::new(7, Mode::Exclusive, "ip".into(), geometry, 8);
        let f = Arc::new(f);
        let c = set.insert(7, ethertype(0x0800)).unwrap();
        dp.send(Command::Install {
            filter: f.clone(),
            classifier: c,
        });
        let (client, tokens, server) = attach_pair(8, revoke_after);
        let space = crate::place::RegionSpace::new(server, 128, 4096).unwrap();
        assert!(f.begin_attach());
        dp.send(Command::Attach {
            tag: 7,
            shared: Box::new(SharedPath::new(space, None)),
        });
        (dp, injector, f, global, client, tokens)
    }

    fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
        let t = std::time::Instant::now();
        while !ok() {
            assert!(t.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Shared mode end to end in one process: small frames into slots, large
    /// ones into fill frames (copied: the emulated backend reads first), a
    /// full rx ring spills into the overflow pool and comes back in order,
    /// no fill frame drops as `no_frame`, and the identity holds throughout.
    #[test]
    fn shared_mode_places_into_the_region_in_order() {
        let (mut dp, injector, f, global, mut client, mut tokens) = shared_setup(0);
        // Post 4 of the 8 frames (as the client library does).
        let mut posted: Vec<exchange::Frame> = tokens.drain(..4).collect();
        client.fill(&mut posted).unwrap();
        wait_until("attached", || {
            f.transport() == crate::filter::Transport::Shared
        });
        // 12 frames: more than the 8 rx entries; larges alternate with smalls.
        for i in 0..12u32 {
            let len = if i % 2 == 0 { 60 } else { 600 };
            injector.inject(&frame(0x0800, len, i), 0).unwrap();
        }
        injector.inject(&frame(0x86dd, 60, 99), 0).unwrap();
        injector.wake();
        wait_until("all received", || global.snapshot().received == 13);
        let s = f.counters.snapshot();
        assert_eq!(s.delivered(), 8, "{s:?}");
        assert_eq!(s.overflow, 4, "{s:?}");
        assert!(global.snapshot().identity_holds());
        let mut seqs = Vec::new();
        let mut small = [0u8; 128];
        let mut got_frames = Vec::new();
        while seqs.len() < 12 {
            match client.recv(&mut small).unwrap() {
                Some(exchange::Received::Small { len, info }) => {
                    assert_eq!((len, info.tag), (60, 7));
                    seqs.push(u32::from_be_bytes(small[14..18].try_into().unwrap()));
                }
                Some(exchange::Received::Large {
                    frame,
                    offset,
                    len,
                    info,
                }) => {
                    assert_eq!((len, info.tag), (600, 7));
                    let b = &client.frame(&frame)[offset..offset + len];
                    seqs.push(u32::from_be_bytes(b[14..18].try_into().unwrap()));
                    got_frames.push(frame);
                }
                None => {
                    // Give the frames back so the spilled larges find room.
                    client.fill(&mut got_frames).unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        assert_eq!(seqs, (0..12).collect::<Vec<_>>(), "arrival order");
        wait_until("counted", || f.counters.snapshot().delivered() == 12);
        let s = f.counters.snapshot();
        assert_eq!((s.delivered_small, s.delivered_large), (6, 6), "{s:?}");
        assert_eq!((s.copied, s.zero_copy, s.queued, s.overflow), (6, 0, 0, 0));
        assert_eq!(s.bytes, 6 * 60 + 6 * 600);
        // No free frame left: the next large frames spill, until the filter
        // spilled its share of the pool (8) in this window (4 spilled
        // above): the spill gate closes and the rest drop as `overloaded`,
        // without a copy, while it cools down.
        for i in 0..12u32 {
            injector.inject(&frame(0x0800, 700, 100 + i), 0).unwrap();
        }
        injector.wake();
        wait_until("all received", || global.snapshot().received == 25);
        let s = f.counters.snapshot();
        assert_eq!(s.overflow, 4, "{s:?}");
        assert_eq!(s.dropped(), s.drops_for(DropReason::Overloaded), "{s:?}");
        assert_eq!(s.received, s.delivered() + s.overflow + s.dropped());
        assert!(global.snapshot().identity_holds());
        // Removing the filter drops what waits (`closed`) and frees the pool.
        dp.send(Command::Remove {
            tag: 7,
            classifier: None,
        });
        wait_until("removed", || f.counters.snapshot().overflow == 0);
        let g = global.snapshot();
        assert!(g.identity_holds(), "{g:?}");
        assert_eq!(g.drops_for(DropReason::Closed), 4);
        dp.stop();
    }

    /// A full rx ring with free frames posted: large frames wait, written,
    /// in the client's own frames (parked, counted queued) instead of the
    /// server's overflow pool, and reach the client in order once it frees
    /// rx entries.
    #[test]
    fn a_full_rx_ring_parks_large_frames_in_the_clients_own_frames() {
        let wake = Wake::default();
        let backend = Emulated::new(256, 4096, wake.clone());
        let injector = backend.injector().unwrap();
        let pool = Arc::new(OverflowPool::new(8, 4096, 128));
        let global = Arc::new(Counters::default());
        let mut dp =
            DataPathHandle::spawn(Box::new(backend), pool.clone(), global.clone(), wake).unwrap();
        let mut set = FilterSet::new(Limits::default());
        let (f, _) = Filter::new(7, Mode::Exclusive, "ip".into(), default_test_geometry(), 8);
        let f = Arc::new(f);
        dp.send(Command::Install {
            filter: f.clone(),
            classifier: set.insert(7, ethertype(0x0800)).unwrap(),
        });
        // 16 frames, 8 rx entries.
        let (mut client, mut tokens, server) = attach_pair(16, 0);
        let space = crate::place::RegionSpace::new(server, 128, 4096).unwrap();
        assert!(f.begin_attach());
        dp.send(Command::Attach {
            tag: 7,
            shared: Box::new(SharedPath::new(space, None)),
        });
        wait_until("attached", || {
            f.transport() == crate::filter::Transport::Shared
        });
        // The fill ring holds 8: post the rest once the server took them.
        wait_until("all frames posted", || {
            client.fill(&mut tokens).unwrap();
            tokens.is_empty()
        });
        std::thread::sleep(Duration::from_millis(30));
        for i in 0..12u32 {
            injector.inject(&frame(0x0800, 700, i), 0).unwrap();
        }
        injector.wake();
        wait_until("all received", || global.snapshot().received == 12);
        let s = f.counters.snapshot();
        assert_eq!((s.delivered(), s.queued, s.overflow), (8, 4, 0), "{s:?}");
        assert_eq!(pool.in_use(), 0);
        let mut seqs = Vec::new();
        let mut small = [0u8; 128];
        let mut back = Vec::new();
        wait_until("all delivered", || {
            while let Some(r) = client.recv(&mut small).unwrap() {
                let exchange::Received::Large {
                    frame, offset, len, ..
                } = r
                else {
                    panic!("{r:?}");
                };
                let b = &client.frame(&frame)[offset..offset + len];
                seqs.push(u32::from_be_bytes(b[14..18].try_into().unwrap()));
                back.push(frame);
            }
            seqs.len() == 12
        });
        assert_eq!(seqs, (0..12).collect::<Vec<_>>(), "arrival order");
        let s = f.counters.snapshot();
        assert_eq!((s.delivered_large, s.dropped(), s.overflow), (12, 0, 0));
        assert!(global.snapshot().identity_holds());
        dp.stop();
    }

    /// The generator's peek-then-place path through the data path: large
    /// frames are written once into the client's frames, and every large
    /// frame delivered is counted in exactly one of `zero_copy` / `copied`,
    /// for the filter and for the server, while the identity holds.
    #[test]
    fn every_large_frame_is_counted_zero_copy_or_copied() {
        use crate::backend::generator::{udp_frame, Generator};
        let frames = vec![
            udp_frame(1500, 10_000, 1).into_boxed_slice(),
            udp_frame(64, 10_000, 2).into_boxed_slice(),
            udp_frame(600, 10_000, 3).into_boxed_slice(),
        ];
        let backend = Generator::from_frames("gen".into(), frames).with_peek_len(128);
        let pool = Arc::new(OverflowPool::new(16, 4096, 128));
        let global = Arc::new(Counters::default());
        let mut dp =
            DataPathHandle::spawn(Box::new(backend), pool, global.clone(), Wake::default())
                .unwrap();
        let geometry = FilterGeometry {
            queue_limit: 8,
            frames: 16,
            small_slots: 8,
            frame_size: 4096,
            small_threshold: 128,
        };
        let mut set = FilterSet::new(Limits::default());
        let (f, _) = Filter::new(3, Mode::Exclusive, "udp".into(), geometry, 4);
        let f = Arc::new(f);
        let c = set
            .insert(3, filters::compile("udp dst port 10000").unwrap())
            .unwrap();
        let (mut client, mut tokens, server) = attach_pair(16, 0);
        client.fill(&mut tokens).unwrap();
        let space = crate::place::RegionSpace::new(server, 128, 4096).unwrap();
        assert!(f.begin_attach());
        dp.send(Command::Install {
            filter: f.clone(),
            classifier: c,
        });
        dp.send(Command::Attach {
            tag: 3,
            shared: Box::new(SharedPath::new(space, None)),
        });
        let mut got = 0u64;
        let mut spare = Vec::new();
        let t = std::time::Instant::now();
        while got < 2_000 {
            assert!(t.elapsed() < Duration::from_secs(10), "only {got} received");
            let n = client
                .recv_batch(64, |p| {
                    if let exchange::Packet::Large { frame, .. } = p {
                        spare.push(frame);
                    }
                })
                .unwrap();
            got += n as u64;
            client.fill(&mut spare).unwrap();
            if n == 0 {
                std::thread::yield_now();
            }
        }
        dp.stop();
        for s in [f.counters.snapshot(), global.snapshot()] {
            assert!(s.identity_holds(), "{s:?}");
            assert!(s.zero_copy > 0, "{s:?}");
            assert_eq!(s.zero_copy + s.copied, s.delivered_large, "{s:?}");
        }
    }

    /// A client that scribbles over its fill ring is refused, counted, then
    /// revoked; its frames are dropped (`closed`) and the server goes on.
    #[test]
    fn a_scribbling_client_is_revoked() {
        let (mut dp, injector, f, global, client, _tokens) = shared_setup(16);
        wait_until("attached", || {
            f.transport() == crate::filter::Transport::Shared
        });
        let words = client.shared_words();
        let fill = client.layout().fill;
        let entries = fill.entries_offset() / 4;
        for round in 0..40u32 {
            // Duplicate and out-of-range frame indices, then a wild index.
            words[entries].store(3, std::sync::atomic::Ordering::Relaxed);
            words[entries + 1].store(3, std::sync::atomic::Ordering::Relaxed);
            words[entries + 2].store(1000 + round, std::sync::atomic::Ordering::Relaxed);
            let producer = if round % 2 == 0 {
                3 * (round + 1)
            } else {
                0x8000_0000
            };
            words[fill.producer() / 4].store(producer, std::sync::atomic::Ordering::Release);
            injector.inject(&frame(0x0800, 600, round), 0).unwrap();
            injector.wake();
            std::thread::sleep(Duration::from_millis(2));
        }
        wait_until("revoked", || f.revoked().is_some());
        let why = f.revoked().unwrap();
        assert!(
            why.contains("revoked") && why.contains("install the filter again"),
            "{why}"
        );
        let s = f.counters.snapshot();
        assert!(s.refused >= 16, "{s:?}");
        // Which violation the data path sees first depends on when it reads
        // the ring relative to the scribbles (a wild producer index refuses
        // the whole batch; otherwise it meets the duplicate or the wild
        // frame index), so check the kinds, not their order.
        let violations = f.violations();
        let seen: u64 = violations
            .iter()
            .filter(|(kind, _)| {
                matches!(
                    *kind,
                    "frame_posted_twice"
                        | "frame_out_of_range"
                        | "frame_not_owned"
                        | "producer_index"
                )
            })
            .map(|(_, n)| *n)
            .sum();
        assert!(seen >= 16, "{violations:?}");
        injector.inject(&frame(0x0800, 60, 999), 0).unwrap();
        injector.wake();
        wait_until("all received", || global.snapshot().received == 41);
        let g = global.snapshot();
        assert!(g.identity_holds(), "{g:?}");
        assert!(f.counters.snapshot().drops_for(DropReason::Closed) >= 1);
        dp.stop();
    }

    /// The body of a peeked frame that records where it was written out:
    /// `"server"` (server memory, to be copied) or `"client"` (a client's
    /// frame, zero copy).
    struct RecordingBody<'a> {
        bytes: &'a [u8],
        wrote: std::cell::Cell<Option<&'static str>>,
    }

    impl FrameBody for RecordingBody<'_> {
        fn frame_len(&self) -> usize {
            self.bytes.len()
        }

        fn read_into(&self, dst: &mut [u8]) -> std::io::Result<crate::sys::af_packet::RecvLen> {
            assert!(
                self.wrote.replace(Some("server")).is_none(),
                "written twice"
            );
            let n = self.bytes.len().min(dst.len());
            dst[..n].copy_from_slice(&self.bytes[..n]);
            Ok(crate::sys::af_packet::RecvLen {
                copied: n,
                frame_len: self.bytes.len(),
            })
        }

        fn read_into_frame(
            &self,
            frame: &exchange::server::RawFrame,
        ) -> std::io::Result<crate::sys::af_packet::RecvLen> {
            assert!(
                self.wrote.replace(Some("client")).is_none(),
                "written twice"
            );
            Ok(crate::sys::af_packet::RecvLen {
                copied: crate::sys::dma::write_frame(frame, self.bytes),
                frame_len: self.bytes.len(),
            })
        }
    }

    /// A data path driven by hand (no thread), with one shared-mode
    /// exclusive filter per `(tag, expression)`, installed in that order,
    /// each with 4 fill frames posted.
    fn hand_driven(
        filters: &[(Tag, &str)],
        host: HostPath,
    ) -> (DataPath, Vec<(Arc<Filter>, exchange::ClientRegion)>) {
        let pool = Arc::new(OverflowPool::new(8, 4096, 128));
        let mut dp = DataPath {
            classifier: Arc::default(),
            exclusive: SlotTable::default(),
            monitors: Vec::new(),
            monitor_reach: Reach::NOTHING,
            scratch: vec![0u8; pool.frame_size()].into_boxed_slice(),
            pool,
            global: Arc::new(Counters::default()),
            shared: 0,
            host,
            batch_placed: 0,
            batch_stalled: 0,
        };
        let geometry = default_test_geometry();
        let mut set = FilterSet::new(Limits::default());
        let mut clients = Vec::new();
        for &(tag, expression) in filters {
            let program = filters::compile(expression).unwrap();
            dp.classifier = set.insert(tag, program).unwrap();
            let (f, _) = Filter::new(tag, Mode::Exclusive, expression.into(), geometry, 8);
            let f = Arc::new(f);
            let (mut client, mut tokens, server) = attach_pair(8, 0);
            let mut posted: Vec<exchange::Frame> = tokens.drain(..4).collect();
            client.fill(&mut posted).unwrap();
            let space = crate::place::RegionSpace::new(server, 128, 4096).unwrap();
            assert!(f.begin_attach());
            assert!(dp.apply(Command::Install {
                filter: f.clone(),
                classifier: Arc::clone(&dp.classifier),
            }));
            assert!(dp.apply(Command::Attach {
                tag,
                shared: Box::new(SharedPath::new(space, None)),
            }));
            clients.push((f, client));
        }
        (dp, clients)
    }

    fn no_host() -> HostPath {
        crate::hostpath::HostControl::disabled(Wake::default()).1
    }

    /// Shows `frame` to the data path as a peek of its first `head` bytes
    /// would (with its body when longer than the 128-byte small threshold);
    /// returns where the body was written out, if it was.
    fn peeked(dp: &mut DataPath, frame: &[u8], head: usize) -> Option<&'static str> {
        let body = RecordingBody {
            bytes: frame,
            wrote: std::cell::Cell::new(None),
        };
        let rx = RxFrame {
            data: &frame[..head.min(frame.len())],
            wire_len: frame.len() as u32,
            ts_ns: 0,
        };
        dp.process(&rx, (frame.len() > 128).then_some(&body as &dyn FrameBody));
        dp.after_batch();
        body.wrote.get()
    }

    /// A UDP/IPv4 frame of `len` bytes to `port` whose `udp[150]` is `deep`.
    fn udp(len: usize, port: u16, deep: u8) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[23] = 17;
        f[36..38].copy_from_slice(&port.to_be_bytes());
        f[14 + 20 + 150] = deep;
        f
    }

    fn paths(f: &Filter) -> (u64, u64, u64) {
        let s = f.counters.snapshot();
        (s.delivered(), s.zero_copy, s.copied)
    }

    /// A filter reading past the 128-byte peek (`udp[150]`, reach 225): a
    /// head that holds the reach is classified as it is and the frame goes
    /// zero copy; a shorter head (a backend that could not peek that far)
    /// is completed into server memory first, classified whole, and copied.
    #[test]
    fn a_head_shorter_than_the_reach_is_completed_before_classifying() {
        let (mut dp, clients) = hand_driven(
            &[(2, "udp and udp[150] == 7"), (1, "udp dst port 9")],
            no_host(),
        );
        assert_eq!(dp.reach(), Reach::Bounded(225));
        let (deep, plain) = (&clients[0].0, &clients[1].0);
        // Both match on the whole frame (tie: the first installed, 2).
        assert_eq!(peeked(&mut dp, &udp(300, 9, 7), 225), Some("client"));
        assert_eq!(paths(deep), (1, 1, 0));
        // Cut at 128, `udp[150]` is missing: judged on the head, it would
        // have gone to 1.
        assert_eq!(peeked(&mut dp, &udp(300, 9, 7), 128), Some("server"));
        assert_eq!(paths(deep), (2, 1, 1));
        assert_eq!(peeked(&mut dp, &udp(300, 9, 0), 128), Some("server"));
        assert_eq!(peeked(&mut dp, &udp(300, 9, 0), 225), Some("client"));
        assert_eq!(paths(plain), (2, 1, 1));
        // A frame shorter than the reach is decided by its whole head.
        assert_eq!(peeked(&mut dp, &udp(200, 9, 0), 200), Some("client"));
        assert_eq!(paths(plain), (3, 2, 1));
        assert!(dp.global.snapshot().identity_holds());
    }

    /// A filter whose reach is unbounded (a protocol-chain walk) does not
    /// make every frame go through server memory: the head stays as long as
    /// the bounded filters read, and only a frame whose walk reaches the
    /// unbounded test is received whole, classified whole and copied,
    /// counted `copied`.
    #[test]
    fn an_unbounded_filter_costs_a_whole_frame_only_to_frames_that_reach_its_test() {
        let (mut dp, clients) = hand_driven(&[(1, "udp dst port 9")], no_host());
        assert_eq!(dp.reach(), Reach::Bounded(78));
        assert_eq!(peeked(&mut dp, &udp(300, 9, 0), 128), Some("client"));
        assert_eq!(paths(&clients[0].0), (1, 1, 0));

        let (mut dp, clients) =
            hand_driven(&[(1, "udp dst port 9"), (3, "ip protochain 6")], no_host());
        let (port, chain) = (&clients[0].0, &clients[1].0);
        assert_eq!(dp.reach(), Reach::Unbounded);
        assert_eq!(dp.head_reach(), Reach::Bounded(78));
        // UDP to port 9: the port filter is more specific than the chain
        // could be, decided on the head, zero copy.
        assert_eq!(peeked(&mut dp, &udp(300, 9, 0), 78), Some("client"));
        assert_eq!(paths(port), (1, 1, 0));
        // TCP reaches the chain's test: received whole, then copied.
        let mut tcp = udp(300, 9, 0);
        tcp[23] = 6;
        assert_eq!(peeked(&mut dp, &tcp, 78), Some("server"));
        assert_eq!(paths(chain), (1, 0, 1));
        // A head that is the whole frame decides whatever the reach.
        assert_eq!(peeked(&mut dp, &tcp, 4096), Some("client"));
        assert_eq!(paths(chain), (2, 1, 1));
        // Small frames are complete in the head: nothing to complete.
        assert_eq!(peeked(&mut dp, &udp(190, 9, 0)[..100], 128), None);
        assert_eq!(port.counters.snapshot().delivered_small, 1);
    }

    /// Operator rules and monitors count in the reach: a drop rule on
    /// `udp[150]` sees the whole frame, not the 128-byte head.
    #[test]
    fn firewall_rules_and_monitors_reading_deep_count_in_the_reach() {
        let wake = Wake::default();
        let (control, host) = crate::hostpath::HostControl::disabled(wake.clone());
        let (mut dp, clients) = hand_driven(&[(1, "udp dst port 9")], host);
        control
            .add_rule(crate::host::firewall::RuleAction::Drop, "udp[150] == 7")
            .unwrap();
        let mut backend = Emulated::new(4, 2048, wake);
        dp.host.service(&mut backend, false);
        assert_eq!(dp.reach(), Reach::Bounded(225));
        assert_eq!(peeked(&mut dp, &udp(300, 9, 7), 128), Some("server"));
        assert_eq!(dp.global.snapshot().drops_for(DropReason::Firewall), 1);
        assert_eq!(
            peeked(&mut dp, &udp(300, 9, 7), 225),
            None,
            "dropped on the head"
        );
        assert_eq!(dp.global.snapshot().drops_for(DropReason::Firewall), 2);
        assert_eq!(paths(&clients[0].0), (0, 0, 0));

        let (monitor, _) = Filter::new(5, Mode::Monitor, "deep".into(), clients[0].0.geometry, 8);
        assert!(dp.apply(Command::InstallMonitor {
            filter: Arc::new(monitor),
            program: filters::compile("ip protochain 17").unwrap(),
        }));
        assert_eq!(dp.reach(), Reach::Unbounded);
        assert!(dp.apply(Command::Remove {
            tag: 5,
            classifier: None,
        }));
        assert_eq!(dp.reach(), Reach::Bounded(225));
    }

    /// An ICMP echo request longer than the head is read whole before the
    /// control plane answers it: the reply carries all of its data.
    #[test]
    fn control_frames_are_completed_before_the_control_plane_handles_them() {
        use crate::host::{HostConfig, MacAddr};
        use rand::SeedableRng;
        let ours = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
        let ip = std::net::Ipv4Addr::new(10, 0, 0, 1);
        let wake = Wake::default();
        let (_control, host) = crate::hostpath::HostControl::new(
            Some(HostConfig::new(ours, ip, 24)),
            rand::rngs::StdRng::seed_from_u64(7),
            wake.clone(),
        );
        let (mut dp, _clients) = hand_driven(&[], host);
        assert_eq!(dp.reach(), Reach::Bounded(75));
        let data: Vec<u8> = (0..400u32).map(|i| i as u8).collect();
        let mut request = Vec::new();
        etherparse::PacketBuilder::ethernet2([0x02, 0, 0, 0, 0, 0x0b], ours.0)
            .ipv4([10, 0, 0, 2], ip.octets(), 64)
            .icmpv4_echo_request(0x4242, 7)
            .write(&mut request, &data)
            .unwrap();
        assert_eq!(peeked(&mut dp, &request, 128), Some("server"));
        assert_eq!(dp.global.snapshot().control, 1);
        let mut backend = Emulated::new(4, 2048, wake);
        let wire = backend.injector().unwrap();
        dp.host.service(&mut backend, true);
        let mut sent = Vec::new();
        wire.take_transmitted(8, &mut |f| sent.push(f.to_vec()));
        assert_eq!(sent.len(), 1, "one echo reply");
        assert_eq!(sent[0].len(), request.len());
        assert_eq!(
            &sent[0][sent[0].len() - 400..],
            &data[..],
            "the whole data echoed"
        );
    }
}
