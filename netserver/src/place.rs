//! Where the bytes go: a filter's frame space and the server's overflow pool.
//!
//! This module is the **one** place where emulated and shared mode differ
//! (STYLE rule 4). Everything above it — which frame a packet takes, the
//! queue, the overflow spill, the accounting, the ownership table, the
//! fetch state machine — is mode-independent and works on [`Page`]s and
//! small [`Staged`] buffers without knowing where their bytes live.
//!
//! - A filter's **frame space** is the client's numbering of its page frames
//!   (`0..frames`). In emulated mode each frame is backed by server memory
//!   ([`PageMem::Emulated`]) that moves with the ownership of its index and
//!   whose bytes travel in `Fetched.data`.
//! - In **shared mode** the frame space is the client's exchange region
//!   ([`RegionSpace`], driven by the data-path thread only, because an
//!   `exchange::ServerRegion` has one driver): [`RegionSpace::place`] is the
//!   one write into the client's memory (a small-slot copy, a frame copy, or
//!   the backend writing the frame itself: zero copy), the fill ring is where
//!   free frames come from, and the rx ring is the filter's queue. The
//!   ownership table of shared mode is `exchange::FrameTable` inside the
//!   region. What stays the same in both modes — the order (waiting frames
//!   first), the spill into the overflow pool, the drop reasons, the
//!   counters — lives in [`crate::filter`], above this module.
//! - A backend that can *peek* (look at the headers before the payload is
//!   written, or write straight into a destination) gets its payload written
//!   once into the [`Page`] the data path took for it; backends that read
//!   into server frames first (tap, pcap, emulated) are copied once. The
//!   `zero_copy` / `copied` counters record which path each large frame took.
//! - The server's own **overflow pool** ([`OverflowPool`]) holds frames of
//!   clients that fell behind: server memory, up to a global limit.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_queue::ArrayQueue;
use exchange::layout::RX_ZERO_COPY;
use exchange::{PlaceError, RxMeta, ServerFrame, ServerRegion, ViolationKind};

use crate::backend::af_packet::FrameBody;
use crate::pool::BufPool;
use crate::stats::Stage;

/// The memory behind one page frame of a client's frame space.
#[derive(Debug)]
#[non_exhaustive]
pub enum PageMem {
    /// Emulated mode: server memory standing in for the client's frame.
    Emulated(Box<[u8]>),
}

/// One page frame of a client's frame space, held by whoever holds this value.
#[derive(Debug)]
pub struct Page {
    /// The frame's number in the client's frame space.
    pub index: u32,
    mem: PageMem,
}

impl Page {
    /// Writes `bytes` (at most the frame size) at the start of the frame;
    /// returns how many were written.
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        match &mut self.mem {
            PageMem::Emulated(m) => {
                let n = bytes.len().min(m.len());
                m[..n].copy_from_slice(&bytes[..n]);
                n
            }
        }
    }

    /// The first `len` bytes of the frame, when the server can show them to
    /// the client through the RPC (emulated mode); empty in shared mode.
    pub fn rpc_bytes(&self, len: usize) -> &[u8] {
        match &self.mem {
            PageMem::Emulated(m) => &m[..len.min(m.len())],
        }
    }
}

/// A small frame waiting for the client to name the slot it goes to.
#[derive(Debug)]
pub struct Staged {
    buf: Box<[u8]>,
}

impl Staged {
    /// The first `len` bytes.
    pub fn bytes(&self, len: usize) -> &[u8] {
        &self.buf[..len.min(self.buf.len())]
    }
}

/// A filter's frame space as the data path sees it: the page frames the
/// server holds free for this client, and staging for small frames.
#[derive(Debug)]
pub struct FrameSpace {
    free: ArrayQueue<Page>,
    small: BufPool,
    frames: u32,
    frame_size: usize,
}

impl FrameSpace {
    /// A frame space of `frames` frames of `frame_size` bytes and
    /// `small_staging` small buffers of `small_size` bytes. The server starts
    /// holding frames `0..frames/2` (free); the rest are returned for the
    /// client's ownership table.
    pub fn emulated(
        frames: u32,
        frame_size: usize,
        small_staging: usize,
        small_size: usize,
    ) -> (FrameSpace, Vec<Page>) {
        let free = ArrayQueue::new(frames.max(1) as usize);
        let mut client = Vec::with_capacity(frames as usize);
        for index in 0..frames {
            let page = Page {
                index,
                mem: PageMem::Emulated(vec![0u8; frame_size].into_boxed_slice()),
            };
            if index < frames / 2 {
                let _ = free.push(page);
            } else {
                client.push(page);
            }
        }
        let space = FrameSpace {
            free,
            small: BufPool::new(small_staging, small_size),
            frames,
            frame_size,
        };
        (space, client)
    }

    /// Data path: a free frame the server holds for this client.
    pub fn take_free(&self) -> Option<Page> {
        self.free.pop()
    }

    /// A frame becomes (again) free for the server to write into: given by
    /// the client in `fetch`, or freed when a queued frame was dropped.
    pub fn give_back(&self, page: Page) {
        if self.free.push(page).is_err() {
            tracing::error!("bug: more free frames than the frame space holds; please report");
        }
    }

    /// Data path: stages a small frame; `None` when all staging is in use.
    pub fn stage_small(&self, bytes: &[u8]) -> Option<Staged> {
        let mut buf = self.small.take()?;
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Some(Staged { buf })
    }

    /// Releases staging after delivery or drop.
    pub fn unstage(&self, staged: Staged) {
        self.small.put(staged.buf);
    }

    /// Frames in the space.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Bytes in a frame.
    pub fn frame_size(&self) -> usize {
        self.frame_size
    }

    /// Free frames the server holds now.
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }
}

/// A frame in the server's overflow pool.
#[derive(Debug)]
pub struct Spilled {
    buf: Box<[u8]>,
    small: bool,
}

impl Spilled {
    /// The first `len` bytes.
    pub fn bytes(&self, len: usize) -> &[u8] {
        &self.buf[..len.min(self.buf.len())]
    }
}

/// The server's overflow pool: frames of clients that fell behind, in
/// server memory, at most `limit` frames in all.
///
/// Room is reserved with one atomic counter *before* any byte is copied
/// ([`spill_with`](Self::spill_with)), so a frame that cannot be kept costs
/// no copy.
#[derive(Debug)]
pub struct OverflowPool {
    pages: BufPool,
    small: BufPool,
    /// Frames reserved or held now (small and large together).
    used: AtomicUsize,
    limit: usize,
    frame_size: usize,
}

impl OverflowPool {
    /// A pool of at most `limit` frames.
    pub fn new(limit: usize, frame_size: usize, small_size: usize) -> OverflowPool {
        OverflowPool {
            pages: BufPool::new(limit, frame_size),
            small: BufPool::new(limit, small_size),
            used: AtomicUsize::new(0),
            limit,
            frame_size,
        }
    }

    /// Bytes in one of its page frames (the server's frame size).
    pub fn frame_size(&self) -> usize {
        self.frame_size
    }

    /// Frames in the pool now.
    pub fn in_use(&self) -> usize {
        // Relaxed: a gauge for stats and tests; `spill_with` reserves with an RMW.
        self.used.load(Ordering::Relaxed)
    }

    /// Whether a frame could be spilled now (a hint: the data path is the
    /// only taker, but releases race with it).
    pub fn has_room(&self) -> bool {
        self.in_use() < self.limit
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Data path (the only taker): spills `bytes` into the pool, or `None`
    /// when the pool holds `limit` frames.
    pub fn spill(&self, bytes: &[u8], small: bool) -> Option<Spilled> {
        self.spill_with(small, |buf| {
            let n = bytes.len().min(buf.len());
            buf[..n].copy_from_slice(&bytes[..n]);
            Some(n)
        })
    }

    /// Data path: reserves room for one frame, then lets `write` fill a
    /// buffer of the pool (returning how many bytes it wrote, or `None` when
    /// it failed: the buffer goes back). `None` when the pool is full; then
    /// `write` is not called, so a frame the pool cannot keep is never copied.
    pub fn spill_with(
        &self,
        small: bool,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<Spilled> {
        // Relaxed: the counter only bounds memory; the buffers themselves move
        // through the pools' queues (release/acquire).
        if self.used.fetch_add(1, Ordering::Relaxed) >= self.limit {
            self.used.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let pool = if small { &self.small } else { &self.pages };
        let Some(mut buf) = pool.take() else {
            self.used.fetch_sub(1, Ordering::Relaxed);
            return None;
        };
        if write(&mut buf).is_none() {
            pool.put(buf);
            self.used.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Spilled { buf, small })
    }

    /// Frees a spilled frame.
    pub fn release(&self, s: Spilled) {
        if s.small {
            self.small.put(s.buf);
        } else {
            self.pages.put(s.buf);
        }
        self.used.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a frame's bytes are when the data path places it.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// Complete in server memory (a backend buffer, staging, the pool).
    Bytes(&'a [u8]),
    /// Only peeked: the backend writes the whole frame, once, into the
    /// destination the placement chose (the zero-copy path).
    Body(&'a dyn FrameBody),
}

impl std::fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Source::Body(b) => write!(f, "Body({} bytes)", b.frame_len()),
        }
    }
}

/// Why a region cannot take a frame now. Not the client's fault: it is
/// slow (the frame spills or is dropped with the matching reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The rx ring is full (or the region was revoked).
    Rx,
    /// The client posted no free frame on the fill ring.
    NoFrame,
}

/// A frame written into one of the client's frames, waiting for an rx entry.
#[derive(Debug)]
struct Parked {
    /// Arrival order among the filter's waiting frames (see
    /// `filter::SharedPath`).
    seq: u64,
    frame: ServerFrame,
    stored: usize,
    meta: RxMeta,
}

/// Frames placed into a region since the last publish, by stage and size
/// class: counted as delivered only once the client can see them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unpublished {
    /// `[stage][small = 0, large = 1]`: (frames, bytes).
    pub by_stage: [[(u64, u64); 2]; 2],
    /// Large frames the backend wrote straight into the client's frame.
    pub zero_copy: u64,
    /// Large frames copied from server memory into the client's frame.
    pub copied: u64,
    /// Frames that waited in a client frame ([`RegionSpace::park`]) and
    /// could not be delivered because the region was revoked (exits of the
    /// queue as `closed`).
    pub closed: u64,
}

impl Unpublished {
    fn note(&mut self, stage: Stage, small: bool, len: usize, zero_copy: bool) {
        let s = match stage {
            Stage::Queue => 0,
            Stage::Overflow => 1,
        };
        let e = &mut self.by_stage[s][usize::from(!small)];
        e.0 += 1;
        e.1 += len as u64;
        if !small {
            if zero_copy {
                self.zero_copy += 1;
            } else {
                self.copied += 1;
            }
        }
    }

    /// Whether nothing was placed.
    pub fn is_empty(&self) -> bool {
        *self == Unpublished::default()
    }
}

/// A filter's frame space in shared mode: the client's exchange region, as
/// the data-path thread drives it. It trusts nothing in the region (the
/// `exchange` crate validates every index and descriptor it reads); the
/// client's protocol violations are counted there and, past the threshold,
/// revoke the region.
#[derive(Debug)]
pub struct RegionSpace {
    region: ServerRegion,
    /// Frames that found the rx ring full and wait, written, in one of the
    /// client's own free frames for an rx entry (oldest first; see
    /// [`park`](Self::park)). Never longer than the region's frame count,
    /// so it never reallocates on the data path.
    parked: VecDeque<Parked>,
    unpublished: Unpublished,
    /// Violation counts already reported to the filter's counters.
    reported: [u64; ViolationKind::COUNT],
}

/// A region the server cannot use with this filter's sizes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegionFitError {
    #[error(
        "the region's small slots hold {slot} bytes, less than the server's small threshold \
         of {threshold}: use slots of at least {threshold} bytes"
    )]
    SmallSlot { slot: usize, threshold: usize },
    #[error(
        "the region's frames hold {frame} bytes, less than the server's frame size of {want}: \
         use frames of {want} bytes"
    )]
    Frame { frame: usize, want: usize },
}

impl RegionSpace {
    /// Wraps an attached region after checking that its small slots hold a
    /// small frame and its frames a page frame of this server.
    pub fn new(
        region: ServerRegion,
        small_threshold: usize,
        frame_size: usize,
    ) -> Result<RegionSpace, RegionFitError> {
        if region.small_capacity() < small_threshold {
            return Err(RegionFitError::SmallSlot {
                slot: region.small_capacity(),
                threshold: small_threshold,
            });
        }
        if region.frame_capacity() < frame_size {
            return Err(RegionFitError::Frame {
                frame: region.frame_capacity(),
                want: frame_size,
            });
        }
        let frames = region.layout().geometry.frame_count as usize;
        Ok(RegionSpace {
            region,
            parked: VecDeque::with_capacity(frames),
            unpublished: Unpublished::default(),
            reported: [0; ViolationKind::COUNT],
        })
    }

    /// The region (for tests and stats).
    pub fn region(&self) -> &ServerRegion {
        &self.region
    }

    /// The region, for the transmit path ([`crate::txring`]: tx and
    /// completion rings only; placement state is untouched).
    pub fn region_mut(&mut self) -> &mut ServerRegion {
        &mut self.region
    }

    /// Whether the region was revoked.
    pub fn is_revoked(&self) -> bool {
        self.region.is_revoked()
    }

    /// Takes the frames the client posted on the fill ring (no system call).
    pub fn refill(&mut self) {
        // A violation is counted by the region; the valid entries are kept.
        let _ = self.region.refill();
    }

    /// Whether a frame of this size class fits now (rx entry, and for a
    /// large frame a free frame); re-reads the fill ring when out of frames.
    pub fn room(&mut self, small: bool) -> Result<(), Full> {
        if self.region.is_revoked() || !matches!(self.region.rx_free(), Ok(n) if n > 0) {
            return Err(Full::Rx);
        }
        if !small && self.region.free_frames() == 0 {
            self.refill();
            if self.region.free_frames() == 0 {
                return Err(Full::NoFrame);
            }
        }
        Ok(())
    }

    /// Writes one frame into the client's region and queues its rx
    /// descriptor (visible after [`publish`](Self::publish)); counts it as
    /// placed from `stage`. A small frame is copied into the next small slot;
    /// a large one into a free frame the client posted — copied from
    /// [`Source::Bytes`], or written by the backend itself from
    /// [`Source::Body`] (zero copy). `len` is the captured length.
    pub fn place(
        &mut self,
        stage: Stage,
        src: Source<'_>,
        len: usize,
        small: bool,
        meta: &RxMeta,
    ) -> Result<(), Full> {
        self.room(small)?;
        if small {
            let Source::Bytes(bytes) = src else {
                // The data path completes small frames before placing them.
                tracing::error!("bug: a small frame placed from a body; please report");
                return Err(Full::Rx);
            };
            let bytes = &bytes[..len.min(bytes.len())];
            return match self.region.deliver_small(bytes, meta) {
                Ok(()) => {
                    self.unpublished.note(stage, true, bytes.len(), false);
                    Ok(())
                }
                Err(PlaceError::NoFreeFrame) => Err(Full::NoFrame),
                Err(_) => Err(Full::Rx),
            };
        }
        let (frame, stored, meta) = self.write_frame(src, len, meta)?;
        match self.region.deliver_frame(frame, 0, stored, &meta) {
            Ok(()) => {
                let zero_copy = meta.flags & RX_ZERO_COPY != 0;
                self.unpublished.note(stage, false, stored, zero_copy);
                Ok(())
            }
            // `deliver_frame` gave the frame back to the free list.
            Err(PlaceError::NoFreeFrame) => Err(Full::NoFrame),
            Err(_) => Err(Full::Rx),
        }
    }

    /// Takes one of the client's free frames and writes a large frame into
    /// it: copied from [`Source::Bytes`], or written by the backend itself
    /// from [`Source::Body`] (zero copy, flagged `RX_ZERO_COPY` in the
    /// returned metadata). Returns the frame, the bytes stored and the
    /// metadata to deliver it with.
    fn write_frame(
        &mut self,
        src: Source<'_>,
        len: usize,
        meta: &RxMeta,
    ) -> Result<(ServerFrame, usize, RxMeta), Full> {
        if self.region.free_frames() == 0 {
            self.refill();
        }
        let frame = match self.region.take_frame() {
            Ok(f) => f,
            Err(PlaceError::NoFreeFrame) => return Err(Full::NoFrame),
            Err(_) => return Err(Full::Rx),
        };
        let cap = self.region.frame_capacity();
        let (stored, zero_copy) = match src {
            Source::Bytes(bytes) => {
                let n = len.min(bytes.len()).min(cap);
                match self.region.write_frame(&frame, 0, &bytes[..n]) {
                    Ok(()) => (n, false),
                    Err(_) => {
                        self.region.release_frame(frame);
                        return Err(Full::Rx);
                    }
                }
            }
            Source::Body(body) => match body.read_into_frame(&self.region.raw_frame(&frame)) {
                Ok(got) => (got.copied.min(cap), true),
                Err(e) => {
                    tracing::warn!(error = %e, "zero-copy receive into a client frame failed");
                    self.region.release_frame(frame);
                    return Err(Full::Rx);
                }
            },
        };
        let meta = RxMeta {
            flags: meta.flags | if zero_copy { RX_ZERO_COPY } else { 0 },
            ..*meta
        };
        Ok((frame, stored, meta))
    }

    /// A large frame that found the rx ring full waits in one of the
    /// client's own free frames instead of the server's overflow pool: it is
    /// written now (by the backend itself from a [`Source::Body`]: zero
    /// copy) and gets its rx entry when the client frees one
    /// ([`deliver_parked`](Self::deliver_parked)). The client pays for its
    /// own backlog with the frames it posted, and the server copies nothing.
    /// `Err(Full::NoFrame)`: the client posted no free frame.
    /// `seq` orders it among the filter's other waiting frames.
    pub fn park(
        &mut self,
        seq: u64,
        src: Source<'_>,
        len: usize,
        meta: &RxMeta,
    ) -> Result<(), Full> {
        if self.region.is_revoked() {
            return Err(Full::Rx);
        }
        let (frame, stored, meta) = self.write_frame(src, len, meta)?;
        self.parked.push_back(Parked {
            seq,
            frame,
            stored,
            meta,
        });
        Ok(())
    }

    /// Frames waiting in client frames for an rx entry.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    /// The arrival sequence of the oldest parked frame.
    pub fn oldest_parked(&self) -> Option<u64> {
        self.parked.front().map(|p| p.seq)
    }

    /// Gives the oldest parked frame its rx entry (counted as placed from
    /// the queue). `Err(Full::Rx)` when the rx ring has no room. A frame the
    /// region refuses (it was revoked) is counted `closed`, with every other
    /// parked frame.
    pub fn deliver_parked(&mut self) -> Result<(), Full> {
        if self.parked.is_empty() {
            return Ok(());
        }
        if !matches!(self.region.rx_free(), Ok(n) if n > 0) {
            if self.region.is_revoked() {
                self.unpublished.closed += self.close_parked();
            }
            return Err(Full::Rx);
        }
        if let Some(p) = self.parked.pop_front() {
            let zero_copy = p.meta.flags & RX_ZERO_COPY != 0;
            match self.region.deliver_frame(p.frame, 0, p.stored, &p.meta) {
                Ok(()) => self
                    .unpublished
                    .note(Stage::Queue, false, p.stored, zero_copy),
                // The frame went back to the region's free list.
                Err(_) => self.unpublished.closed += 1,
            }
        }
        Ok(())
    }

    /// Gives every parked frame back to the region's free list (the region
    /// is revoked or the filter is going away); returns how many, for the
    /// caller to count as `closed`.
    pub fn close_parked(&mut self) -> u64 {
        let mut n = 0;
        while let Some(p) = self.parked.pop_front() {
            self.region.release_frame(p.frame);
            n += 1;
        }
        n
    }

    /// Makes what was placed since the last call visible to the client (one
    /// release store, and one eventfd write only if the client sleeps) and
    /// returns it, for the caller to count as delivered.
    pub fn publish(&mut self) -> Unpublished {
        if let Err(e) = self.region.publish() {
            tracing::warn!(error = %e, "ringing a client's doorbell failed");
        }
        std::mem::take(&mut self.unpublished)
    }

    /// Violations by kind counted since the last call (for the filter's
    /// counters): `(kind, new)` for each kind with new ones.
    pub fn new_violations(&mut self) -> impl Iterator<Item = (ViolationKind, u64)> + '_ {
        let counts = self.region.violations();
        ViolationKind::ALL
            .iter()
            .zip(self.reported.iter_mut())
            .filter_map(move |(kind, seen)| {
                let now = counts.get(*kind);
                let new = now.saturating_sub(*seen);
                *seen = now;
                (new > 0).then_some((*kind, new))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_space_starts_with_half_the_frames_free() {
        let (space, client) = FrameSpace::emulated(8, 64, 4, 16);
        assert_eq!(space.free_frames(), 4);
        let idx: Vec<u32> = client.iter().map(|p| p.index).collect();
        assert_eq!(idx, [4, 5, 6, 7]);
        let mut p = space.take_free().unwrap();
        assert_eq!(p.index, 0);
        assert_eq!(p.write(&[9; 100]), 64);
        assert_eq!(p.rpc_bytes(3), [9, 9, 9]);
        space.give_back(p);
        assert_eq!(space.free_frames(), 4);
    }

    #[test]
    fn overflow_pool_enforces_one_global_limit() {
        let pool = OverflowPool::new(3, 64, 16);
        let a = pool.spill(b"small", true).unwrap();
        let b = pool.spill(&[1; 60], false).unwrap();
        let c = pool.spill(b"x", true).unwrap();
        assert!(pool.spill(b"y", true).is_none());
        assert!(pool.spill(&[1; 60], false).is_none());
        assert_eq!(pool.in_use(), 3);
        assert_eq!(a.bytes(5), b"small");
        pool.release(a);
        pool.release(b);
        pool.release(c);
        assert_eq!(pool.in_use(), 0);
    }
}
