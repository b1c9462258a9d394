//! `--backend af_packet:IFACE`: a real interface through an `AF_PACKET`
//! socket driven by io_uring (see [`crate::sys::uring`] for the mechanics).
//!
//! Two ways to receive, one per data-path style:
//!
//! - [`Backend::recv_batch`] (**copied**): one multishot receive fills server
//!   frames from a provided-buffer ring, many frames per wait and no
//!   submission per frame; each frame is lent complete, and the placement
//!   copies it once into the client's frame. This is what the data path uses
//!   through the [`Backend`] trait as it stands.
//! - [`AfPacket::recv_placed`] (**zero copy**, peek then place): each frame is
//!   peeked (its first `small_threshold` bytes, or as many as
//!   [`Backend::set_head_len`] asked for, and its real length), lent with
//!   only those bytes in `data`, plus — when it is longer than the small
//!   threshold — a [`FrameBody`] that receives the whole frame straight into
//!   the destination the placement chose, a client's fill page, so the
//!   kernel writes the payload once and user space copies nothing. A frame
//!   no one wrote out (small: complete in `data`; or dropped) is dequeued
//!   after the callback. One `io_uring_enter` per frame.
//!   After it, [`Backend::wait`] waits with a peek too: starting the batched
//!   receive to wait would take the next frames whole into server buffers,
//!   and every one of them would be copied.
//!
//! **Backlog switch.** Peek then place costs one `io_uring_enter` per frame,
//! the batched receive one per burst. When the reader falls behind — the
//! last [`AfPacketOptions::backlog_frames`] peeks all found their frame
//! already queued, and the socket holds at least
//! [`AfPacketOptions::backlog_bytes`] — `recv_placed` drains the backlog
//! with the batched receive instead (each of those frames is copied once,
//! counted `copied` and `backlog_copied`), and goes back to peek then place
//! once a batch finds fewer frames ready than it asked for (caught up).
//! Without it a burst longer than the socket buffer costs the kernel drops;
//! with it, a copy. `backlog_frames = 0` turns the switch off (pure peek then
//! place, e.g. to test the zero-copy path deterministically).
//!
//! [`bare_reader`] is the `bench af_packet` baseline: the same socket and
//! ring with no classification and no placement.

use std::cell::{Cell, RefCell};
use std::io;
use std::time::{Duration, Instant};

use super::{now_ns, Backend, RxFrame};
use crate::sys::af_packet::{PacketSocket, PacketSocketConfig, PacketStats, RecvLen};
use crate::sys::uring::{PacketRing, UringConfig};

/// Default [`AfPacketOptions::backlog_frames`].
pub const DEFAULT_BACKLOG_FRAMES: u32 = 64;
/// Default [`AfPacketOptions::backlog_bytes`].
pub const DEFAULT_BACKLOG_BYTES: u32 = 16 * 1024;

/// How to open an [`AfPacket`] backend.
#[derive(Debug, Clone)]
pub struct AfPacketOptions {
    /// Socket options (promiscuous, receive buffer, …).
    pub socket: PacketSocketConfig,
    /// Ring options; `peek_len` is the small threshold of the zero-copy path,
    /// `max_peek_len` the longest head [`Backend::set_head_len`] gets.
    pub uring: UringConfig,
    /// Peek then place switches to draining with the batched receive after
    /// this many frames in a row were already queued when peeked (and the
    /// socket holds `backlog_bytes`); 0: never (see the module docs).
    pub backlog_frames: u32,
    /// Bytes of receive memory (`SO_MEMINFO`) the socket must hold for the
    /// backlog switch.
    pub backlog_bytes: u32,
}

impl Default for AfPacketOptions {
    fn default() -> Self {
        Self {
            socket: PacketSocketConfig::default(),
            uring: UringConfig::default(),
            backlog_frames: DEFAULT_BACKLOG_FRAMES,
            backlog_bytes: DEFAULT_BACKLOG_BYTES,
        }
    }
}

/// The rest of a frame that the backend has only peeked at: writes the whole
/// frame, headers included, into a destination the placement chose. At most
/// once per frame; a second call fails with `InvalidInput`.
///
/// Proposed to live in `backend/mod.rs` next to [`RxFrame`] (as an
/// `Option<&dyn FrameBody>` in it), so that `Page` can offer
/// `fill_from(body)`; until then [`AfPacket::recv_placed`] passes it beside
/// the frame.
pub trait FrameBody {
    /// The frame's full length.
    fn frame_len(&self) -> usize;

    /// Receives the frame into `dst`; a frame longer than `dst` is cut.
    fn read_into(&self, dst: &mut [u8]) -> io::Result<RecvLen>;

    /// Receives the frame straight into a frame of a client's exchange
    /// region: the kernel writes the payload once, user space copies nothing.
    fn read_into_frame(&self, frame: &exchange::server::RawFrame) -> io::Result<RecvLen>;
}

/// The body of a peeked frame, backed by the ring.
struct PeekedBody<'r> {
    ring: RefCell<&'r mut PacketRing>,
    frame_len: usize,
    taken: Cell<bool>,
    /// Written out into server memory (to be copied), not a client's frame.
    into_server: Cell<bool>,
}

impl PeekedBody<'_> {
    fn take(&self) -> io::Result<()> {
        if self.taken.replace(true) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the frame body was already written out",
            ));
        }
        Ok(())
    }
}

impl FrameBody for PeekedBody<'_> {
    fn frame_len(&self) -> usize {
        self.frame_len
    }

    fn read_into(&self, dst: &mut [u8]) -> io::Result<RecvLen> {
        self.take()?;
        self.into_server.set(true);
        self.ring.borrow_mut().recv_into(dst)
    }

    fn read_into_frame(&self, frame: &exchange::server::RawFrame) -> io::Result<RecvLen> {
        self.take()?;
        self.ring.borrow_mut().recv_into_frame(frame)
    }
}

/// Counters of the receive paths, for the stats and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathCounters {
    /// Frames lent complete from a server frame, or peeked and then received
    /// into server memory because the head did not decide them (copy once).
    /// Includes `backlog_copied`.
    pub copied: u64,
    /// Of `copied`: frames the zero-copy receive drained with the batched
    /// receive because it had fallen behind (the backlog switch).
    pub backlog_copied: u64,
    /// Times the zero-copy receive switched to draining a backlog.
    pub backlog_switches: u64,
    /// Peeked frames whose body the placement received into a client's frame.
    pub zero_copy: u64,
    /// Peeked frames complete in the peek (small).
    pub small_in_peek: u64,
    /// Peeked frames dequeued without being written out (dropped).
    pub discarded: u64,
    /// Frames larger than a server frame, lent cut (`wire_len` > data).
    pub truncated: u64,
    /// Receive errors (logged).
    pub errors: u64,
}

/// The AF_PACKET backend.
pub struct AfPacket {
    name: String,
    ring: PacketRing,
    /// The peeked head of the current frame, copied out of the ring so the
    /// body can use the ring while the data path reads the head.
    head: Box<[u8]>,
    /// The small threshold: a longer frame comes with its body, even when a
    /// long peek holds all of it, so that it can still go zero copy.
    small: usize,
    counters: PathCounters,
    last_error_log: Option<Instant>,
    /// The data path last received by peek then place: [`Backend::wait`]
    /// then waits with a peek, not by starting the batched receive (which
    /// would take the next frames whole into server buffers: copied).
    placing: bool,
    backlog: Backlog,
}

/// The backlog switch's settings and state (see the module docs).
#[derive(Debug, Clone, Copy)]
struct Backlog {
    /// Queued peeks in a row that make the switch check the socket; 0: off.
    frames: u32,
    bytes: u32,
    /// Peeks in a row that found their frame already queued.
    queued_run: u32,
    /// Draining with the batched receive.
    draining: bool,
}

impl std::fmt::Debug for AfPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacket")
            .field("name", &self.name)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl AfPacket {
    /// Opens interface `iface` in the calling thread's network namespace.
    /// Needs `CAP_NET_RAW` (and `CAP_NET_ADMIN` for promiscuous mode).
    pub fn open(iface: &str, options: &AfPacketOptions) -> io::Result<AfPacket> {
        let sock = PacketSocket::open(iface, &options.socket)?;
        let ring = PacketRing::new(sock, &options.uring)?;
        Ok(AfPacket {
            name: format!("af_packet:{iface}"),
            head: vec![0u8; ring.max_peek_len()].into_boxed_slice(),
            small: ring.peek_len(),
            ring,
            counters: PathCounters::default(),
            last_error_log: None,
            placing: false,
            backlog: Backlog {
                frames: options.backlog_frames,
                bytes: options.backlog_bytes,
                queued_run: 0,
                draining: false,
            },
        })
    }

    /// Which path each frame took so far.
    pub fn counters(&self) -> PathCounters {
        self.counters
    }

    /// Reads and resets the kernel's counters (frames queued, dropped for a
    /// full socket buffer).
    pub fn kernel_stats(&self) -> io::Result<PacketStats> {
        self.ring.socket().statistics()
    }

    /// Sends one frame out of the interface (the transmit path, issue 5).
    pub fn send(&mut self, frame: &[u8]) -> io::Result<usize> {
        self.ring.send(frame)
    }

    fn log_error(&mut self, what: &str, e: &io::Error) {
        self.counters.errors += 1;
        let now = Instant::now();
        if self
            .last_error_log
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(1))
        {
            self.last_error_log = Some(now);
            tracing::warn!(backend = %self.name, error = %e, "{what} failed");
        }
    }

    /// Stops the batched receive, lending the frames it already holds
    /// complete (copied; `backlog`: drained by the backlog switch); returns
    /// how many.
    fn stop_batch(
        &mut self,
        backlog: bool,
        deliver: &mut dyn FnMut(&RxFrame<'_>, Option<&dyn FrameBody>),
    ) -> usize {
        let counters = &mut self.counters;
        let ts_ns = now_ns();
        let r = self.ring.stop_batch(|f| {
            deliver(&counters.batch_frame(&f, backlog, ts_ns), None);
        });
        match r {
            Ok(n) => n,
            Err(e) => {
                self.log_error("stopping the batched receive", &e);
                0
            }
        }
    }

    /// Lends up to `max` frames from the batched receive without waiting
    /// (`backlog`: drained by the backlog switch); returns how many.
    fn recv_batch_counted(
        &mut self,
        max: usize,
        backlog: bool,
        deliver: &mut dyn FnMut(&RxFrame<'_>),
    ) -> usize {
        let ts_ns = now_ns();
        let counters = &mut self.counters;
        let r = self.ring.recv_batch(max, Some(Duration::ZERO), |f| {
            deliver(&counters.batch_frame(&f, backlog, ts_ns));
        });
        match r {
            Ok(n) => n,
            Err(e) => {
                self.log_error("receive", &e);
                0
            }
        }
    }

    /// Whether the frame just peeked (`queued`: it was already waiting)
    /// ends a run long enough, with enough bytes held by the socket, to
    /// drain the backlog with the batched receive. Asks the kernel for the
    /// socket's memory only at the end of each run, not per frame.
    fn backlog_reached(&mut self, queued: bool) -> bool {
        let b = &mut self.backlog;
        if b.frames == 0 {
            return false;
        }
        if !queued {
            b.queued_run = 0;
            return false;
        }
        b.queued_run += 1;
        if b.queued_run < b.frames {
            return false;
        }
        b.queued_run = 0;
        let bytes = b.bytes;
        match self.ring.socket().queued_bytes() {
            Ok(held) => held >= bytes,
            Err(e) => {
                self.log_error("reading the socket's queued bytes", &e);
                false
            }
        }
    }

    /// Drains a backlog with the batched receive (every frame copied once);
    /// once a batch finds fewer than `max` frames ready, hands over what the
    /// kernel already placed and goes back to peek then place.
    fn drain_backlog(
        &mut self,
        max: usize,
        deliver: &mut dyn FnMut(&RxFrame<'_>, Option<&dyn FrameBody>),
    ) -> usize {
        let mut n = self.recv_batch_counted(max, true, &mut |f| deliver(f, None));
        if n < max {
            n += self.stop_batch(true, deliver);
            self.backlog.draining = false;
            tracing::trace!(backend = %self.name, "backlog drained, back to peek then place");
        }
        n
    }

    /// Peek then place: lends up to `max` frames, oldest first, each with
    /// `data` = its first `peek_len` bytes (see [`Backend::set_head_len`])
    /// and `wire_len` = its length, plus for a frame longer than the small
    /// threshold a [`FrameBody`] that receives it whole into the placement's
    /// destination. `None` means the frame is small and complete in `data`. Frames whose body is not written out are dequeued after the
    /// callback. Waits up to `timeout` for the first frame; never longer.
    /// While draining a backlog (module docs), frames come complete from
    /// the batched receive instead, without a body.
    pub fn recv_placed(
        &mut self,
        max: usize,
        timeout: Duration,
        deliver: &mut dyn FnMut(&RxFrame<'_>, Option<&dyn FrameBody>),
    ) -> usize {
        self.placing = true;
        if self.backlog.draining {
            return self.drain_backlog(max, deliver);
        }
        let mut n = 0;
        if self.ring.batch_running() {
            // Switching from batches (no shared-mode client until now): what
            // the kernel already placed in server buffers goes first, whole.
            n += self.stop_batch(false, deliver);
        }
        // One clock read per call, once its first frame is in, as the
        // batched receive stamps its batches: a read per frame was 1–2 % of
        // a frame's cost, and the frames after the first are peeked without
        // waiting, so they are stamped at most one batch late.
        let mut ts_ns = None;
        while n < max {
            let wait = if n == 0 { timeout } else { Duration::ZERO };
            let (frame_len, head_len, queued, complete) = match self.ring.peek(Some(wait)) {
                Ok(Some(p)) => {
                    // Small and whole in the peek: lent from the ring below.
                    let complete = p.head.len() == p.frame_len && p.frame_len <= self.small;
                    if !complete {
                        self.head[..p.head.len()].copy_from_slice(p.head);
                    }
                    (p.frame_len, p.head.len(), p.queued, complete)
                }
                Ok(None) => break,
                Err(e) => {
                    self.log_error("peek", &e);
                    break;
                }
            };
            if self.backlog_reached(queued) {
                // The peeked frame stays first in the socket (a peek dequeues
                // nothing): the batched receive takes it next.
                self.backlog.draining = true;
                self.counters.backlog_switches += 1;
                tracing::trace!(backend = %self.name, "backlog: draining with the batched receive");
                return n + self.drain_backlog(max - n, deliver);
            }
            let wire_len = u32::try_from(frame_len).unwrap_or(u32::MAX);
            let ts_ns = *ts_ns.get_or_insert_with(now_ns);
            if complete {
                // Complete in the peek: lent straight from the ring's peek
                // area (asking again returns the same peek, no system call),
                // so the placement's copy into a small slot is the only one.
                let again = match self.ring.peek(Some(Duration::ZERO)) {
                    Ok(Some(p)) => p,
                    Ok(None) => {
                        let gone = io::Error::other("a peeked frame is gone (please report)");
                        self.log_error("peek", &gone);
                        break;
                    }
                    Err(e) => {
                        self.log_error("peek", &e);
                        break;
                    }
                };
                let frame = RxFrame {
                    data: again.head,
                    wire_len,
                    ts_ns,
                };
                deliver(&frame, None);
                self.counters.small_in_peek += 1;
                if let Err(e) = self.ring.consume() {
                    self.log_error("dequeue", &e);
                }
                n += 1;
                continue;
            }
            // A body to receive: the head is copied out of the ring, which
            // the body needs while the placement reads the head.
            let frame = RxFrame {
                data: &self.head[..head_len],
                wire_len,
                ts_ns,
            };
            let body = PeekedBody {
                ring: RefCell::new(&mut self.ring),
                frame_len,
                taken: Cell::new(false),
                into_server: Cell::new(false),
            };
            deliver(&frame, Some(&body as &dyn FrameBody));
            let taken = body.taken.get();
            if body.into_server.get() {
                self.counters.copied += 1;
            } else if taken {
                self.counters.zero_copy += 1;
            } else {
                self.counters.discarded += 1;
                if let Err(e) = self.ring.consume() {
                    self.log_error("dequeue", &e);
                }
            }
            n += 1;
        }
        n
    }
}

impl PathCounters {
    /// Counts a frame of the batched receive (copied; `backlog`: drained by
    /// the backlog switch) and lends it as an [`RxFrame`].
    fn batch_frame<'a>(
        &mut self,
        f: &crate::sys::uring::BatchFrame<'a>,
        backlog: bool,
        ts_ns: u64,
    ) -> RxFrame<'a> {
        self.copied += 1;
        if backlog {
            self.backlog_copied += 1;
        }
        if !f.is_complete() {
            self.truncated += 1;
        }
        RxFrame {
            data: f.data,
            wire_len: u32::try_from(f.frame_len).unwrap_or(u32::MAX),
            ts_ns,
        }
    }
}

impl Backend for AfPacket {
    fn name(&self) -> &str {
        &self.name
    }

    fn recv_placed(
        &mut self,
        max: usize,
        timeout: Duration,
        deliver: &mut dyn FnMut(&RxFrame<'_>, Option<&dyn FrameBody>),
    ) -> Option<usize> {
        Some(AfPacket::recv_placed(self, max, timeout, deliver))
    }

    fn set_head_len(&mut self, bytes: usize) {
        self.ring.set_peek_len(bytes);
    }

    fn recv_batch(&mut self, max: usize, deliver: &mut dyn FnMut(&RxFrame<'_>)) -> usize {
        self.placing = false;
        // Every frame goes through the batched receive now: no backlog to
        // drain separately.
        self.backlog.draining = false;
        self.recv_batch_counted(max, false, deliver)
    }

    fn send_batch(&mut self, frames: &[&[u8]], on_done: &mut dyn FnMut(usize, io::Result<usize>)) {
        self.ring.send_batch(frames, on_done);
    }

    fn sends_gathered(&self) -> bool {
        true
    }

    fn send_batch_gather(
        &mut self,
        frames: &[super::GatherFrame<'_>],
        on_done: &mut dyn FnMut(usize, io::Result<usize>),
    ) {
        self.ring.send_batch_gathered(frames, on_done);
    }

    fn watch_wake(&mut self, wake: &super::Wake) {
        match wake.doorbell() {
            Ok(doorbell) => self.ring.watch_doorbell(doorbell),
            // Commands then wait for the end of a wait (at most ~20 ms).
            Err(e) => self.log_error("making the data path's doorbell", &e),
        }
    }

    fn wait(&mut self, timeout: Duration) {
        if self.placing && !self.backlog.draining {
            // The frame a peek finds stays peeked: the next `recv_placed`
            // starts with it.
            if let Err(e) = self.ring.peek(Some(timeout)) {
                self.log_error("wait", &e);
                std::thread::sleep(timeout);
            }
            return;
        }
        if let Err(e) = self.ring.wait_batch(Some(timeout)) {
            self.log_error("wait", &e);
            std::thread::sleep(timeout);
        }
    }
}

/// How [`bare_reader`] receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareMode {
    /// Multishot receive into provided buffers (what `recv_batch` does).
    Batch,
    /// Peek, then receive each frame into one destination buffer, or dequeue
    /// it when complete in the peek (what `recv_placed` does).
    Peek,
}

/// What [`bare_reader`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BareReport {
    /// Frames received.
    pub frames: u64,
    /// Their bytes (wire lengths).
    pub bytes: u64,
    /// From the first frame to the last.
    pub elapsed: Duration,
    /// Frames the kernel dropped for a full socket buffer meanwhile.
    pub kernel_drops: u64,
}

impl BareReport {
    /// Frames per second.
    pub fn pps(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Bits per second (frame bytes, without preamble and gaps).
    pub fn bps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The `bench af_packet` baseline: reads interface `iface` with no
/// classification and no placement until `frames` frames arrived or no
/// frame came for `idle` (after the first) — the ceiling the server's
/// delivery rate is compared with. `ready` is called once the socket is
/// open, so the caller can start the traffic; `progress` holds the frames
/// received so far, updated after each batch (a sender paces against it).
pub fn bare_reader(
    iface: &str,
    options: &AfPacketOptions,
    mode: BareMode,
    frames: u64,
    idle: Duration,
    progress: &std::sync::atomic::AtomicU64,
    ready: impl FnOnce(),
) -> io::Result<BareReport> {
    let sock = PacketSocket::open(iface, &options.socket)?;
    let mut ring = PacketRing::new(sock, &options.uring)?;
    let _ = ring.socket().statistics()?; // reset
    ready();
    let mut report = BareReport {
        frames: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        kernel_drops: 0,
    };
    let mut first = None;
    let mut last = Instant::now();
    let mut dst = vec![0u8; 65536];
    // Before the first frame, wait long; afterwards `idle` ends the run.
    let mut wait = Duration::from_secs(30);
    while report.frames < frames {
        let got = match mode {
            BareMode::Batch => {
                let mut got = 0u64;
                ring.recv_batch(256, Some(wait), |f| {
                    got += 1;
                    report.bytes += f.frame_len as u64;
                })?;
                got
            }
            BareMode::Peek => match ring.peek(Some(wait))? {
                None => 0,
                Some(p) => {
                    report.bytes += p.frame_len as u64;
                    if p.is_complete() {
                        ring.consume()?;
                    } else {
                        ring.recv_into(&mut dst)?;
                    }
                    1
                }
            },
        };
        if got == 0 {
            break;
        }
        let now = Instant::now();
        first.get_or_insert(now);
        last = now;
        report.frames += got;
        // Relaxed: a count the sender reads for pacing; no data rides on it.
        progress.store(report.frames, std::sync::atomic::Ordering::Relaxed);
        wait = idle;
    }
    report.elapsed = first.map_or(Duration::ZERO, |f| last.duration_since(f));
    report.kernel_drops = u64::from(ring.socket().statistics()?.drops);
    Ok(report)
}
