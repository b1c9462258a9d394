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
//! [`bare_reader`] is the `bench af_packet` baseline: the same socket and
//! ring with no classification and no placement.

use std::cell::{Cell, RefCell};
use std::io;
use std::time::{Duration, Instant};

use super::{now_ns, Backend, RxFrame};
use crate::sys::af_packet::{PacketSocket, PacketSocketConfig, PacketStats, RecvLen};
use crate::sys::uring::{PacketRing, UringConfig};

/// How to open an [`AfPacket`] backend.
#[derive(Debug, Clone, Default)]
pub struct AfPacketOptions {
    /// Socket options (promiscuous, receive buffer, …).
    pub socket: PacketSocketConfig,
    /// Ring options; `peek_len` is the small threshold of the zero-copy path,
    /// `max_peek_len` the longest head [`Backend::set_head_len`] gets.
    pub uring: UringConfig,
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
    pub copied: u64,
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
    /// complete (copied); returns how many.
    fn stop_batch(
        &mut self,
        deliver: &mut dyn FnMut(&RxFrame<'_>, Option<&dyn FrameBody>),
    ) -> usize {
        let counters = &mut self.counters;
        let r = self.ring.stop_batch(|f| {
            counters.copied += 1;
            deliver(&batch_frame(&f, now_ns()), None);
        });
        match r {
            Ok(n) => n,
            Err(e) => {
                self.log_error("stopping the batched receive", &e);
                0
            }
        }
    }

    /// Peek then place: lends up to `max` frames, oldest first, each with
    /// `data` = its first `peek_len` bytes (see [`Backend::set_head_len`])
    /// and `wire_len` = its length, plus for a frame longer than the small
    /// threshold a [`FrameBody`] that receives it whole into the placement's
    /// destination. `None` means the frame is small and complete in `data`. Frames whose body is not written out are dequeued after the
    /// callback. Waits up to `timeout` for the first frame; never longer.
    pub fn recv_placed(
        &mut self,
        max: usize,
        timeout: Duration,
        deliver: &mut dyn FnMut(&RxFrame<'_>, Option<&dyn FrameBody>),
    ) -> usize {
        self.placing = true;
        let mut n = 0;
        if self.ring.batch_running() {
            // Switching from batches (no shared-mode client until now): what
            // the kernel already placed in server buffers goes first, whole.
            n += self.stop_batch(deliver);
        }
        while n < max {
            let wait = if n == 0 { timeout } else { Duration::ZERO };
            let (frame_len, head_len) = match self.ring.peek(Some(wait)) {
                Ok(Some(p)) => {
                    self.head[..p.head.len()].copy_from_slice(p.head);
                    (p.frame_len, p.head.len())
                }
                Ok(None) => break,
                Err(e) => {
                    self.log_error("peek", &e);
                    break;
                }
            };
            let frame = RxFrame {
                data: &self.head[..head_len],
                wire_len: u32::try_from(frame_len).unwrap_or(u32::MAX),
                ts_ns: now_ns(),
            };
            let complete = head_len == frame_len && frame_len <= self.small;
            let body = PeekedBody {
                ring: RefCell::new(&mut self.ring),
                frame_len,
                taken: Cell::new(false),
                into_server: Cell::new(false),
            };
            deliver(&frame, (!complete).then_some(&body as &dyn FrameBody));
            let taken = body.taken.get();
            if body.into_server.get() {
                self.counters.copied += 1;
            } else if taken {
                self.counters.zero_copy += 1;
            } else {
                if complete {
                    self.counters.small_in_peek += 1;
                } else {
                    self.counters.discarded += 1;
                }
                if let Err(e) = self.ring.consume() {
                    self.log_error("dequeue", &e);
                }
            }
            n += 1;
        }
        n
    }
}

fn batch_frame<'a>(f: &crate::sys::uring::BatchFrame<'a>, ts_ns: u64) -> RxFrame<'a> {
    RxFrame {
        data: f.data,
        wire_len: u32::try_from(f.frame_len).unwrap_or(u32::MAX),
        ts_ns,
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
        let ts_ns = now_ns();
        let counters = &mut self.counters;
        let r = self.ring.recv_batch(max, Some(Duration::ZERO), |f| {
            counters.copied += 1;
            if !f.is_complete() {
                counters.truncated += 1;
            }
            deliver(&batch_frame(&f, ts_ns));
        });
        match r {
            Ok(n) => n,
            Err(e) => {
                self.log_error("receive", &e);
                0
            }
        }
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

    fn wait(&mut self, timeout: Duration) {
        if self.placing {
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
