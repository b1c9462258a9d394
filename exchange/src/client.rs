//! The client's side of one region: create it, hand it to the server, post
//! free frames, receive packets (Frantz's `fetch(smallAddr, pageKey)`),
//! transmit, and sleep on the doorbell when idle.
//!
//! Frames are handed out as [`Frame`] tokens: not `Clone`, one per frame the
//! client holds. Giving a frame to the server (fill, tx) consumes its token;
//! receiving one back (rx, completion) mints a new one. A `&mut Frame` is
//! therefore the proof that no other part of the client touches those bytes,
//! which is what makes [`ClientRegion::frame_mut`] safe. The client trusts
//! the server not to write frames it does not hold, but still checks every
//! index the server returns, so a buggy server cannot mint two tokens for one
//! frame.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{DescriptorFault, Violation};
use crate::eventfd::EventFd;
use crate::layout::{
    Geometry, Layout, Limits, RingId, RxDesc, TxCompletion, TxDesc, NO_FRAME, RX_SMALL, TX_SEGMENT2,
};
use crate::region::{self, Mapping};
use crate::ring::{CompletionConsumer, FillProducer, RxConsumer, TxProducer};
use crate::{PassError, RegionError};

static NEXT_REGION_ID: AtomicU64 = AtomicU64::new(1);

/// The right to one frame of a client region.
///
/// Dropping a `Frame` does not give it back to anyone: the frame is simply
/// lost to the client until the region goes away. Give frames back with
/// [`ClientRegion::fill`] or [`ClientRegion::fetch`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a dropped Frame is lost; post it on the fill ring instead"]
pub struct Frame {
    index: u32,
    region: u64,
}

impl Frame {
    /// Frame index.
    pub fn index(&self) -> u32 {
        self.index
    }
}

/// Something went wrong on the client side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server broke the protocol (the entry was skipped).
    #[error("exchange server broke the protocol: {0}")]
    Violation(#[from] Violation),
    /// A doorbell system call failed.
    #[error("exchange doorbell: {0}")]
    Io(#[from] io::Error),
}

/// Receive metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxInfo {
    /// Filter tag.
    pub tag: u64,
    /// Receive time (ns), 0 if unknown.
    pub timestamp_ns: u64,
    /// Bytes on the wire.
    pub wire_len: u32,
    /// `RX_*` flags.
    pub flags: u16,
}

impl RxInfo {
    fn of(d: &RxDesc) -> RxInfo {
        RxInfo {
            tag: d.tag,
            timestamp_ns: d.timestamp_ns,
            wire_len: d.wire_len,
            flags: d.flags,
        }
    }
}

/// A packet received by [`ClientRegion::recv`].
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A small packet, copied into the caller's buffer (`len` bytes; if the
    /// buffer was shorter, only its length was copied).
    Small {
        /// Packet length.
        len: usize,
        /// Metadata.
        info: RxInfo,
    },
    /// A large packet in a frame that is now the client's.
    Large {
        /// The frame.
        frame: Frame,
        /// Start of the packet in the frame.
        offset: usize,
        /// Packet length.
        len: usize,
        /// Metadata.
        info: RxInfo,
    },
}

/// A packet seen by [`ClientRegion::recv_batch`] or
/// [`ClientRegion::recv_batch_in_place`].
#[derive(Debug)]
pub enum Packet<'a> {
    /// A small packet: a private copy of the slot (`recv_batch`) or the slot
    /// itself, in place (`recv_batch_in_place`).
    Small {
        /// Bytes.
        data: &'a [u8],
        /// Metadata.
        info: RxInfo,
    },
    /// A large packet in a frame that is now the client's.
    Large {
        /// The frame.
        frame: Frame,
        /// Start of the packet in the frame.
        offset: usize,
        /// Packet length.
        len: usize,
        /// Metadata.
        info: RxInfo,
    },
}

/// A frame (or two) to transmit: segment 1 then segment 2.
#[derive(Debug, PartialEq, Eq)]
pub struct TxRequest {
    /// First segment's frame.
    pub frame: Frame,
    /// First segment's offset.
    pub offset: u32,
    /// First segment's length.
    pub len: u32,
    /// Optional second segment `(frame, offset, len)`.
    pub second: Option<(Frame, u32, u32)>,
}

/// A transmit that finished: the frames are the client's again.
#[derive(Debug, PartialEq, Eq)]
pub struct Completed {
    /// First frame.
    pub frame: Frame,
    /// Second frame, if the request had one.
    pub frame2: Option<Frame>,
    /// `TX_STATUS_*`.
    pub status: u32,
    /// Bytes sent.
    pub len: u32,
}

/// One region, client side.
#[derive(Debug)]
pub struct ClientRegion {
    id: u64,
    map: Arc<Mapping>,
    layout: Layout,
    memfd: OwnedFd,
    rx: RxConsumer,
    fill: FillProducer,
    tx: TxProducer,
    completion: CompletionConsumer,
    /// `true` while a `Frame` token exists for the frame.
    held: Vec<bool>,
    /// Frames given to `fetch` that did not fit the fill ring yet.
    spare: Vec<Frame>,
    /// Private copy of a small slot for `recv_batch`.
    scratch: Vec<u8>,
    /// Small packets copied out of their slots (`recv`, `recv_batch`).
    small_copies: u64,
    to_server: EventFd,
    from_server: EventFd,
}

impl ClientRegion {
    /// Creates a region with the default server limits. Returns the region
    /// and a token for every frame (all frames start as the client's).
    pub fn create(geometry: Geometry) -> Result<(ClientRegion, Vec<Frame>), RegionError> {
        Self::create_with_limits(geometry, &Limits::default())
    }

    /// Creates a region checked against `limits` (as the server announced).
    pub fn create_with_limits(
        geometry: Geometry,
        limits: &Limits,
    ) -> Result<(ClientRegion, Vec<Frame>), RegionError> {
        let created = region::create(geometry, limits)?;
        let map = Arc::new(created.map);
        let layout = created.layout;
        let efd = |e: io::Error| RegionError::Io {
            op: "eventfd",
            source: e,
        };
        let id = NEXT_REGION_ID.fetch_add(1, Ordering::Relaxed);
        let count = layout.geometry.frame_count;
        let region = ClientRegion {
            id,
            rx: RxConsumer::new(map.clone(), RingId::Rx, &layout.rx, 0),
            fill: FillProducer::new(map.clone(), RingId::Fill, &layout.fill, 0),
            tx: TxProducer::new(map.clone(), RingId::Tx, &layout.tx, 0),
            completion: CompletionConsumer::new(
                map.clone(),
                RingId::Completion,
                &layout.completion,
                0,
            ),
            map,
            layout,
            memfd: created.fd,
            held: vec![true; count as usize],
            spare: Vec::new(),
            scratch: vec![0; layout.small_slot_size()],
            small_copies: 0,
            to_server: EventFd::new().map_err(efd)?,
            from_server: EventFd::new().map_err(efd)?,
        };
        let frames = (0..count)
            .map(|index| Frame { index, region: id })
            .collect();
        Ok((region, frames))
    }

    /// Sends the memfd and both doorbells with `token` over the side socket
    /// (see [`crate::pass`]).
    pub fn send_to(&self, socket: BorrowedFd<'_>, token: &[u8]) -> Result<(), PassError> {
        crate::pass::send_region(
            socket,
            token,
            self.memfd.as_fd(),
            self.to_server.as_fd(),
            self.from_server.as_fd(),
        )
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The memfd (e.g. to send it some other way).
    pub fn memfd(&self) -> BorrowedFd<'_> {
        self.memfd.as_fd()
    }

    /// The descriptor the client polls for server→client doorbells.
    pub fn wait_fd(&self) -> BorrowedFd<'_> {
        self.from_server.as_fd()
    }

    /// The header and rings as atomic words, for fault-injection tests that play
    /// a hostile client. Writing here breaks the protocol by design.
    #[doc(hidden)]
    pub fn shared_words(&self) -> &[AtomicU32] {
        self.map.words()
    }

    fn check(&self, f: &Frame) {
        assert_eq!(
            f.region, self.id,
            "exchange: frame {} belongs to another region (caller bug)",
            f.index
        );
    }

    /// The bytes of a frame the client holds.
    pub fn frame<'a>(&'a self, f: &'a Frame) -> &'a [u8] {
        self.check(f);
        let len = self.layout.frame_size();
        let ptr = self.map.raw(self.layout.frame(f.index), len);
        // SAFETY: the range is inside the mapping (checked by `raw`), which
        // lives as long as `self`. The `Frame` token is unique per frame (not
        // Clone; minted only when the frame comes back, checked against
        // `held`), and we borrow it shared, so no `&mut` to these bytes exists
        // in this process. The server writes only frames it holds (the
        // protocol the client trusts the server to follow).
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }

    /// The bytes of a frame the client holds, writable.
    pub fn frame_mut<'a>(&'a self, f: &'a mut Frame) -> &'a mut [u8] {
        self.check(f);
        let len = self.layout.frame_size();
        let ptr = self.map.raw(self.layout.frame(f.index), len);
        // SAFETY: as in `frame`, and the token is borrowed mutably, so this is
        // the only reference to these bytes in this process for 'a.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }

    fn give(&mut self, f: Frame) -> u32 {
        self.check(&f);
        self.held[f.index as usize] = false;
        f.index
    }

    fn mint(&mut self, ring: RingId, index: u32) -> Result<Frame, Violation> {
        match self.held.get(index as usize) {
            None => Err(Violation::FrameOutOfRange {
                ring,
                index,
                count: self.layout.geometry.frame_count,
            }),
            Some(true) => Err(Violation::FrameNotOwned { ring, index }),
            Some(false) => {
                self.held[index as usize] = true;
                Ok(Frame {
                    index,
                    region: self.id,
                })
            }
        }
    }

    fn ring_server(&self, wake: bool) -> io::Result<()> {
        if wake {
            self.to_server.notify()?;
        }
        Ok(())
    }

    /// Posts free frames from the end of `frames` on the fill ring, as many
    /// as fit; publishes them and rings the server if it sleeps. Returns how
    /// many were posted.
    pub fn fill(&mut self, frames: &mut Vec<Frame>) -> Result<usize, ClientError> {
        let mut n = 0;
        while let Some(f) = frames.pop() {
            self.check(&f);
            match self.fill.push(&f.index) {
                Ok(true) => {
                    self.give(f);
                    n += 1;
                }
                Ok(false) => {
                    frames.push(f);
                    break;
                }
                Err(v) => {
                    // Keep the token: the frame never reached the ring.
                    frames.push(f);
                    self.fill.publish();
                    return Err(v.into());
                }
            }
        }
        let wake = self.fill.publish();
        self.ring_server(wake)?;
        Ok(n)
    }

    /// Validates the rx descriptor `ahead` entries past the oldest one.
    fn validate_rx(&self, d: &RxDesc, ahead: u32) -> Result<(), Violation> {
        let bad = |reason| Violation::BadDescriptor {
            ring: RingId::Rx,
            reason,
        };
        let (size, count) = if d.flags & RX_SMALL != 0 {
            let position = self.rx.next_index().wrapping_add(ahead);
            let expected = position & (self.layout.geometry.small_slot_count - 1);
            if d.index != expected {
                return Err(bad(DescriptorFault::WrongSlot {
                    index: d.index,
                    expected,
                }));
            }
            (
                self.layout.geometry.small_slot_size,
                self.layout.geometry.small_slot_count,
            )
        } else {
            (
                self.layout.geometry.frame_size,
                self.layout.geometry.frame_count,
            )
        };
        if d.index >= count {
            return Err(Violation::FrameOutOfRange {
                ring: RingId::Rx,
                index: d.index,
                count,
            });
        }
        if u64::from(d.offset) + u64::from(d.len) > u64::from(size) {
            return Err(bad(DescriptorFault::OutOfBounds {
                offset: d.offset.into(),
                len: d.len,
                size,
            }));
        }
        Ok(())
    }

    /// The bytes of small slot `d.index` from `d.offset`, `d.len` long, in
    /// place in the region.
    ///
    /// # Safety
    ///
    /// `d` must have passed [`validate_rx`](Self::validate_rx) (a small
    /// descriptor: slot index in range, offset and length inside the slot),
    /// its rx entry must not be released while the returned slice lives, and
    /// the caller must drop the slice before it releases the entry. Until the
    /// release the slot is the client's: the server writes a slot only
    /// between the consumer and the producer index, after the client
    /// released it (the protocol the client trusts the server to follow, as
    /// for [`frame`](Self::frame)).
    unsafe fn slot_view(&self, d: &RxDesc) -> &[u8] {
        let at = self.layout.small_slot(d.index) + usize::from(d.offset);
        let len = d.len as usize;
        let ptr = self.map.raw(at, len);
        // SAFETY: `raw` checked that `at..at+len` is inside the mapping, which
        // lives as long as `&self`. Slot bytes are never viewed as atomics
        // (`Mapping::words` ends before the slots) and this process never
        // writes a slot, so no `&mut` aliases it; the server does not write it
        // until the entry is released, which the caller promises happens only
        // after the slice is gone.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }

    /// The one descriptor loop behind every receive: validates up to `max`
    /// rx entries and lends each packet to `f` — a small one as a view of its
    /// slot, in place, a large one as a newly minted [`Frame`] — then
    /// releases them all with one store. Stops at the first protocol
    /// violation (that entry is skipped; the rest stay for next time).
    fn drain_rx(
        &mut self,
        max: usize,
        mut f: impl FnMut(Packet<'_>),
    ) -> Result<usize, ClientError> {
        let mut ready = self.rx.ready_cached() as usize;
        if ready < max {
            ready = self.rx.refresh()? as usize;
        }
        let mut taken = 0u32;
        for ahead in 0..ready.min(max) as u32 {
            let Some(d) = self.rx.get(ahead) else { break };
            let info = RxInfo::of(&d);
            if let Err(v) = self.validate_rx(&d, ahead) {
                self.rx.release(ahead + 1);
                return Err(v.into());
            }
            if d.flags & RX_SMALL != 0 {
                // SAFETY: `d` passed `validate_rx` as a small descriptor; the
                // entry is released below, after `f` returned and the view
                // (borrowed only for the call) is gone.
                let data = unsafe { self.slot_view(&d) };
                f(Packet::Small { data, info });
            } else {
                match self.mint(RingId::Rx, d.index) {
                    Ok(frame) => f(Packet::Large {
                        frame,
                        offset: d.offset.into(),
                        len: d.len as usize,
                        info,
                    }),
                    Err(v) => {
                        self.rx.release(ahead + 1);
                        return Err(v.into());
                    }
                }
            }
            taken = ahead + 1;
        }
        // One release for the whole batch: the views are gone, the frames minted.
        self.rx.release(taken);
        Ok(taken as usize)
    }

    /// Receives up to `max` packets without blocking, lending each to `f`
    /// with no copy: a small packet as a view of its slot in the region
    /// (valid for the call only: the slot goes back to the server when the
    /// batch is released), a large one as a [`Frame`] that is now the
    /// client's. Stops at the first protocol violation (that entry is
    /// skipped).
    pub fn recv_batch_in_place(
        &mut self,
        max: usize,
        f: impl FnMut(Packet<'_>),
    ) -> Result<usize, ClientError> {
        self.drain_rx(max, f)
    }

    /// Receives one packet without blocking: a small one is copied into
    /// `small_buf` (counted in [`small_copies`](Self::small_copies)), a large
    /// one comes as a [`Frame`]. `Ok(None)` if the rx ring is empty.
    pub fn recv(&mut self, small_buf: &mut [u8]) -> Result<Option<Received>, ClientError> {
        let mut got = None;
        let mut copies = 0;
        self.drain_rx(1, |p| {
            got = Some(match p {
                Packet::Small { data, info } => {
                    let n = data.len().min(small_buf.len());
                    small_buf[..n].copy_from_slice(&data[..n]);
                    copies += 1;
                    Received::Small {
                        len: data.len(),
                        info,
                    }
                }
                Packet::Large {
                    frame,
                    offset,
                    len,
                    info,
                } => Received::Large {
                    frame,
                    offset,
                    len,
                    info,
                },
            })
        })?;
        self.small_copies += copies;
        Ok(got)
    }

    /// Receives up to `max` packets without blocking, calling `f` for each;
    /// a small packet is first copied out of its slot into a private buffer
    /// (counted in [`small_copies`](Self::small_copies)), so its bytes cannot
    /// change under `f`. [`recv_batch_in_place`](Self::recv_batch_in_place)
    /// does the same without the copy. Stops at the first protocol violation
    /// (that entry is skipped).
    pub fn recv_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(Packet<'_>),
    ) -> Result<usize, ClientError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut copies = 0;
        let r = self.drain_rx(max, |p| match p {
            Packet::Small { data, info } => {
                let n = data.len().min(scratch.len());
                scratch[..n].copy_from_slice(&data[..n]);
                copies += 1;
                f(Packet::Small {
                    data: &scratch[..n],
                    info,
                })
            }
            large => f(large),
        });
        self.scratch = scratch;
        self.small_copies += copies;
        r
    }

    /// Small packets [`recv`](Self::recv) and [`recv_batch`](Self::recv_batch)
    /// (and so [`fetch`](Self::fetch)) copied out of their slots so far.
    pub fn small_copies(&self) -> u64 {
        self.small_copies
    }

    /// Frantz's `fetch(smallAddr, pageKey)`: gives `give` back to the server
    /// as a free frame (if any) and receives the next packet, sleeping on the
    /// doorbell up to `timeout` (`None`: forever; `Some(ZERO)`: never) if
    /// none is waiting. No system call when a packet is waiting.
    pub fn fetch(
        &mut self,
        small_buf: &mut [u8],
        give: Option<Frame>,
        timeout: Option<Duration>,
    ) -> Result<Option<Received>, ClientError> {
        if let Some(f) = give {
            self.check(&f);
            self.spare.push(f);
        }
        if !self.spare.is_empty() {
            let mut spare = std::mem::take(&mut self.spare);
            let r = self.fill(&mut spare);
            self.spare = spare;
            r?;
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(p) = self.recv(small_buf)? {
                return Ok(Some(p));
            }
            let left = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    Some(left)
                }
            };
            self.wait_rx(left)?;
        }
    }

    /// Sleeps until the rx ring has entries or `timeout` passes (set
    /// need-wakeup, re-check, poll the doorbell). Returns whether entries are
    /// ready.
    pub fn wait_rx(&mut self, timeout: Option<Duration>) -> Result<bool, ClientError> {
        if self.rx.ready_cached() > 0 || self.rx.refresh()? > 0 {
            return Ok(true);
        }
        if !self.rx.arm_wakeup()? {
            return Ok(true);
        }
        let woke = self.from_server.wait(timeout)?;
        self.from_server.drain()?;
        self.rx.disarm_wakeup();
        Ok(woke || self.rx.refresh()? > 0)
    }

    /// For a caller that sleeps in its own event loop (e.g. an async runtime
    /// polling [`wait_fd`](Self::wait_fd)): sets need-wakeup on the rx ring
    /// and re-checks it (protocol step 3). `Ok(true)`: still empty, sleep
    /// until `wait_fd` is readable, then call
    /// [`finish_wait_rx`](Self::finish_wait_rx). `Ok(false)`: entries are
    /// ready, do not sleep.
    pub fn prepare_wait_rx(&mut self) -> Result<bool, ClientError> {
        if self.rx.ready_cached() > 0 || self.rx.refresh()? > 0 {
            return Ok(false);
        }
        Ok(self.rx.arm_wakeup()?)
    }

    /// After sleeping (woken or not): resets the doorbell, clears
    /// need-wakeup and returns whether rx entries are ready.
    pub fn finish_wait_rx(&mut self) -> Result<bool, ClientError> {
        self.from_server.drain()?;
        self.rx.disarm_wakeup();
        Ok(self.rx.refresh()? > 0)
    }

    /// [`prepare_wait_rx`](Self::prepare_wait_rx) for the completion ring:
    /// `Ok(true)`: still empty, sleep until `wait_fd` is readable, then call
    /// [`finish_wait_completion`](Self::finish_wait_completion).
    pub fn prepare_wait_completion(&mut self) -> Result<bool, ClientError> {
        if self.completion.ready_cached() > 0 || self.completion.refresh()? > 0 {
            return Ok(false);
        }
        Ok(self.completion.arm_wakeup()?)
    }

    /// After sleeping (woken or not): resets the doorbell, clears
    /// need-wakeup and returns whether completions are ready.
    pub fn finish_wait_completion(&mut self) -> Result<bool, ClientError> {
        self.from_server.drain()?;
        self.completion.disarm_wakeup();
        Ok(self.completion.refresh()? > 0)
    }

    /// Sleeps until the completion ring has entries or `timeout` passes.
    pub fn wait_completion(&mut self, timeout: Option<Duration>) -> Result<bool, ClientError> {
        if self.completion.ready_cached() > 0 || self.completion.refresh()? > 0 {
            return Ok(true);
        }
        if !self.completion.arm_wakeup()? {
            return Ok(true);
        }
        let woke = self.from_server.wait(timeout)?;
        self.from_server.drain()?;
        self.completion.disarm_wakeup();
        Ok(woke || self.completion.refresh()? > 0)
    }

    /// Queues a transmit and publishes it (ringing the server if it sleeps).
    /// Gives the request back (`Ok(Err(req))`) if the tx ring is full. If the
    /// server broke the ring's consumer index (`Err`), the request's frames
    /// are lost with it: the region is unusable anyway.
    pub fn transmit(&mut self, req: TxRequest) -> Result<Result<(), TxRequest>, ClientError> {
        self.check(&req.frame);
        let mut d = TxDesc {
            frame: req.frame.index,
            offset: req.offset,
            len: req.len,
            ..TxDesc::default()
        };
        if let Some((f2, o2, l2)) = &req.second {
            self.check(f2);
            d.flags |= TX_SEGMENT2;
            d.frame2 = f2.index;
            d.offset2 = *o2;
            d.len2 = *l2;
        }
        if !self.tx.push(&d)? {
            return Ok(Err(req));
        }
        self.give(req.frame);
        if let Some((f2, _, _)) = req.second {
            self.give(f2);
        }
        let wake = self.tx.publish();
        self.ring_server(wake)?;
        Ok(Ok(()))
    }

    /// Takes finished transmits, calling `f` with each (frames are the
    /// client's again). Returns how many.
    pub fn completions(&mut self, mut f: impl FnMut(Completed)) -> Result<usize, ClientError> {
        let mut n = 0;
        loop {
            if self.completion.ready_cached() == 0 && self.completion.refresh()? == 0 {
                return Ok(n);
            }
            let Some(c) = self.completion.get(0) else {
                return Ok(n);
            };
            self.completion.release(1);
            let done = self.validate_completion(&c)?;
            f(done);
            n += 1;
        }
    }

    fn validate_completion(&mut self, c: &TxCompletion) -> Result<Completed, Violation> {
        if c.frame2 == c.frame {
            return Err(Violation::BadDescriptor {
                ring: RingId::Completion,
                reason: DescriptorFault::SameFrame(c.frame),
            });
        }
        // Check both before minting either, so a bad second frame leaks nothing.
        let count = self.layout.geometry.frame_count;
        for idx in [c.frame, c.frame2] {
            if idx == NO_FRAME && idx != c.frame {
                continue;
            }
            match self.held.get(idx as usize) {
                None => {
                    return Err(Violation::FrameOutOfRange {
                        ring: RingId::Completion,
                        index: idx,
                        count,
                    })
                }
                Some(true) => {
                    return Err(Violation::FrameNotOwned {
                        ring: RingId::Completion,
                        index: idx,
                    })
                }
                Some(false) => {}
            }
        }
        let frame = self.mint(RingId::Completion, c.frame)?;
        let frame2 = if c.frame2 == NO_FRAME {
            None
        } else {
            Some(self.mint(RingId::Completion, c.frame2)?)
        };
        Ok(Completed {
            frame,
            frame2,
            status: c.status,
            len: c.len,
        })
    }
}
