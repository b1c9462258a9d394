//! The server's side of one region: validated ring access, frame ownership,
//! packet placement, transmit, and the sleep/wake doorbells.
//!
//! A [`ServerRegion`] is driven by one thread (`Send`, `&mut self` methods).
//! Nothing the client writes can make it panic, read out of bounds, or touch
//! memory outside this client's region; every violation is refused, counted in
//! [`ServerRegion::violations`], and past [`ServerConfig::revoke_after`] the
//! region is revoked (every call then fails with [`Violation::Revoked`]).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustix::net::RecvFlags;

use crate::client::{ClientRegion, Frame};
use crate::error::{DescriptorFault, PlaceError, Violation, ViolationCounts};
use crate::eventfd::EventFd;
use crate::frames::FrameTable;
use crate::layout::{
    Geometry, Layout, Limits, RingId, RxDesc, TxCompletion, TxDesc, NO_FRAME, RX_SMALL,
    RX_TRUNCATED, TX_FLAGS_ALL, TX_SEGMENT2,
};
use crate::pass::RegionFds;
use crate::region::{self, Mapping};
use crate::ring::{CompletionProducer, FillConsumer, RxProducer, TxConsumer};
use crate::{PassError, RegionError};

static NEXT_REGION_ID: AtomicU64 = AtomicU64::new(1);

/// Server-side policy for attached regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Size limits the client's geometry must respect.
    pub limits: Limits,
    /// Violations after which the region is revoked (0 = never).
    pub revoke_after: u64,
    /// Largest packet accepted on the tx ring (both segments together).
    pub max_tx_len: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: Limits::default(),
            revoke_after: 1024,
            max_tx_len: 65535,
        }
    }
}

/// Attaching a region failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The memfd or its header was refused.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// An eventfd was refused.
    #[error(transparent)]
    Pass(#[from] PassError),
}

/// Receive metadata for a packet placed into a region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxMeta {
    /// Filter tag.
    pub tag: u64,
    /// Receive time (ns, `CLOCK_REALTIME`), 0 if unknown.
    pub timestamp_ns: u64,
    /// Bytes on the wire; `0` means "same as stored". [`RX_TRUNCATED`] is set
    /// automatically when larger than the stored length.
    pub wire_len: u32,
    /// Extra `RX_*` flags, e.g. [`crate::layout::RX_ZERO_COPY`].
    pub flags: u16,
}

/// The right to write into one frame of a region: taken from the client's
/// free frames, consumed by [`ServerRegion::deliver_frame`] or
/// [`ServerRegion::release_frame`]. Not `Clone`: one writer per frame.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a taken frame must be delivered or released, or the client loses it"]
pub struct ServerFrame {
    index: u32,
    region: u64,
}

impl ServerFrame {
    /// Frame index.
    pub fn index(&self) -> u32 {
        self.index
    }
}

/// A validated tx descriptor whose frames are now in flight. Complete it with
/// [`ServerRegion::complete_tx`] (the frames go back to the client).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a tx packet must be completed, or the client loses its frames"]
pub struct TxPacket {
    desc: TxDesc,
    region: u64,
}

impl TxPacket {
    /// Total length (both segments).
    pub fn len(&self) -> usize {
        self.desc.len as usize + self.second().map_or(0, |(_, _, l)| l as usize)
    }
    /// Always false: empty descriptors are refused.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// First segment `(frame, offset, len)`.
    pub fn first(&self) -> (u32, u32, u32) {
        (self.desc.frame, self.desc.offset, self.desc.len)
    }
    /// Second segment `(frame, offset, len)`, if any.
    pub fn second(&self) -> Option<(u32, u32, u32)> {
        (self.desc.flags & TX_SEGMENT2 != 0).then_some((
            self.desc.frame2,
            self.desc.offset2,
            self.desc.len2,
        ))
    }
}

/// A raw view of bytes inside a region for a system call that writes
/// (zero-copy receive) or reads (zero-copy send) them, e.g. an io_uring SQE.
///
/// It holds the mapping alive, so the pointer stays valid as long as this
/// value lives — keep it until the I/O completes. The memory is shared with
/// the client, which may scribble on it at any time: never form a Rust
/// reference over it; hand `as_ptr()`/`len()` to the kernel only.
#[derive(Debug)]
pub struct RawFrame {
    ptr: NonNull<u8>,
    len: usize,
    _map: Arc<Mapping>,
}

// SAFETY: a `RawFrame` is an address range plus the `Arc` that keeps its
// mapping alive; neither is tied to a thread (the `Arc<Mapping>` is
// Send + Sync), and the value hands out only raw pointers.
unsafe impl Send for RawFrame {}

impl RawFrame {
    /// Start of the range.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    /// Length of the range.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One attached region, server side.
#[derive(Debug)]
pub struct ServerRegion {
    id: u64,
    map: Arc<Mapping>,
    layout: Layout,
    config: ServerConfig,
    rx: RxProducer,
    fill: FillConsumer,
    tx: TxConsumer,
    completion: CompletionProducer,
    frames: FrameTable,
    /// Tx descriptors taken and not yet completed (≤ completion ring free).
    tx_in_flight: u32,
    to_client: EventFd,
    from_client: EventFd,
    _memfd: OwnedFd,
}

impl ServerRegion {
    /// Verifies and maps a region received with
    /// [`crate::pass::recv_region`]: seals, size, header, and that both
    /// doorbells are eventfds.
    pub fn attach(fds: RegionFds, config: &ServerConfig) -> Result<ServerRegion, AttachError> {
        let to_client = EventFd::from_fd(fds.server_to_client)?;
        let from_client = EventFd::from_fd(fds.client_to_server)?;
        Self::attach_parts(fds.memfd, to_client, from_client, config)
    }

    /// A new client region of `geometry` and its server side, in one
    /// process: the region is created, sent over a socketpair with
    /// `SCM_RIGHTS` and verified and mapped by [`attach`](Self::attach), as
    /// between a client and the server. For tests, benchmarks and fuzzing;
    /// no frame is posted on the fill ring yet.
    pub fn pair(
        geometry: Geometry,
        config: &ServerConfig,
    ) -> Result<(ClientRegion, Vec<Frame>, ServerRegion), AttachError> {
        let (client, frames) = ClientRegion::create(geometry)?;
        let (a, b) = std::os::unix::net::UnixStream::pair().map_err(|source| PassError::Io {
            op: "socketpair",
            source,
        })?;
        client.send_to(a.as_fd(), &[0; crate::pass::TOKEN_LEN])?;
        // Already in the socket: the timeout is never waited out.
        let req = crate::pass::recv_region(
            b.as_fd(),
            crate::pass::TOKEN_LEN,
            std::time::Duration::from_secs(1),
        )?;
        let server = Self::attach(req.fds, config)?;
        Ok((client, frames, server))
    }

    /// [`attach`](Self::attach) with the doorbells already wrapped.
    pub fn attach_parts(
        memfd: OwnedFd,
        to_client: EventFd,
        from_client: EventFd,
        config: &ServerConfig,
    ) -> Result<ServerRegion, AttachError> {
        let (memfd, map, layout) = region::attach(memfd, &config.limits)?;
        let map = Arc::new(map);
        // Every index starts at zero (the protocol), whatever the memory says.
        let r = ServerRegion {
            id: NEXT_REGION_ID.fetch_add(1, Ordering::Relaxed),
            rx: RxProducer::new(map.clone(), RingId::Rx, &layout.rx, 0),
            fill: FillConsumer::new(map.clone(), RingId::Fill, &layout.fill, 0),
            tx: TxConsumer::new(map.clone(), RingId::Tx, &layout.tx, 0),
            completion: CompletionProducer::new(
                map.clone(),
                RingId::Completion,
                &layout.completion,
                0,
            ),
            frames: FrameTable::new(layout.geometry.frame_count, config.revoke_after),
            map,
            layout,
            config: *config,
            tx_in_flight: 0,
            to_client,
            from_client,
            _memfd: memfd,
        };
        tracing::debug!(region = r.id, geometry = ?layout.geometry, "exchange region attached");
        Ok(r)
    }

    /// The validated layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The server's frame table.
    pub fn frames(&self) -> &FrameTable {
        &self.frames
    }

    /// Per-reason violation counters.
    pub fn violations(&self) -> &ViolationCounts {
        self.frames.violations()
    }

    /// Whether the region was revoked.
    pub fn is_revoked(&self) -> bool {
        self.frames.is_revoked()
    }

    /// The descriptor to poll for client→server doorbells (fill, tx).
    pub fn wait_fd(&self) -> BorrowedFd<'_> {
        self.from_client.as_fd()
    }

    fn record(&mut self, v: Violation) -> Violation {
        self.frames.record(v)
    }

    /// Takes every frame index the client posted on the fill ring into the
    /// free list. Bad indices are refused and counted one by one; the rest are
    /// accepted. Returns how many were accepted.
    pub fn refill(&mut self) -> Result<usize, Violation> {
        self.frames.check()?;
        let ready = match self.fill.refresh() {
            Ok(n) => n,
            Err(v) => return Err(self.record(v)),
        };
        let mut accepted = 0;
        for i in 0..ready {
            // Each index is loaded once; `post_free` validates the copy.
            let Some(index) = self.fill.get(i) else { break };
            if self.frames.post_free(index).is_ok() {
                accepted += 1;
            }
        }
        self.fill.release(ready);
        Ok(accepted)
    }

    /// Free frames the server holds for this client.
    pub fn free_frames(&self) -> usize {
        self.frames.free_count()
    }

    /// Free rx entries (re-reads the client's consumer index if needed).
    pub fn rx_free(&mut self) -> Result<u32, Violation> {
        self.frames.check()?;
        match self.rx.free() {
            Ok(n) => Ok(n),
            Err(v) => Err(self.record(v)),
        }
    }

    /// Bytes a small slot holds.
    pub fn small_capacity(&self) -> usize {
        self.layout.small_slot_size()
    }

    /// Bytes a frame holds.
    pub fn frame_capacity(&self) -> usize {
        self.layout.frame_size()
    }

    fn rx_desc(&self, index: u32, len: usize, offset: u16, meta: &RxMeta, flags: u16) -> RxDesc {
        let len = len as u32;
        let wire_len = if meta.wire_len == 0 {
            len
        } else {
            meta.wire_len
        };
        let truncated = if wire_len > len { RX_TRUNCATED } else { 0 };
        RxDesc {
            tag: meta.tag,
            timestamp_ns: meta.timestamp_ns,
            index,
            len,
            wire_len,
            offset,
            flags: meta.flags | flags | truncated,
        }
    }

    /// Copies a small packet into the next small slot and queues its rx
    /// descriptor (visible after [`publish`](Self::publish)).
    pub fn deliver_small(&mut self, data: &[u8], meta: &RxMeta) -> Result<(), PlaceError> {
        if data.len() > self.small_capacity() {
            return Err(PlaceError::TooLarge {
                len: data.len(),
                capacity: self.small_capacity(),
            });
        }
        if self.rx_free()? == 0 {
            return Err(PlaceError::RxFull);
        }
        let slot = self.rx.next_index() & (self.layout.geometry.small_slot_count - 1);
        self.map.copy_in(self.layout.small_slot(slot), data);
        let desc = self.rx_desc(slot, data.len(), 0, meta, RX_SMALL);
        let pushed = self.rx.push(&desc).map_err(|v| self.frames.record(v))?;
        debug_assert!(pushed, "rx_free said there was room");
        Ok(())
    }

    /// Takes one of the client's free frames to receive a large packet into.
    pub fn take_frame(&mut self) -> Result<ServerFrame, PlaceError> {
        self.frames.check()?;
        match self.frames.take_free() {
            Some(index) => Ok(ServerFrame {
                index,
                region: self.id,
            }),
            None => Err(PlaceError::NoFreeFrame),
        }
    }

    fn check_frame(&self, frame: &ServerFrame) {
        assert_eq!(
            frame.region, self.id,
            "exchange: frame {} belongs to another region (caller bug)",
            frame.index
        );
    }

    /// Copies `data` into `frame` at `offset` (the copy path).
    pub fn write_frame(
        &mut self,
        frame: &ServerFrame,
        offset: usize,
        data: &[u8],
    ) -> Result<(), PlaceError> {
        self.check_frame(frame);
        let cap = self.frame_capacity();
        if offset.checked_add(data.len()).is_none_or(|end| end > cap) {
            return Err(PlaceError::TooLarge {
                len: offset.saturating_add(data.len()),
                capacity: cap,
            });
        }
        self.map
            .copy_in(self.layout.frame(frame.index) + offset, data);
        Ok(())
    }

    /// A raw pointer range over the whole of `frame` for a system call that
    /// writes into it (zero-copy receive through io_uring and the like).
    pub fn raw_frame(&self, frame: &ServerFrame) -> RawFrame {
        self.check_frame(frame);
        let len = self.frame_capacity();
        let ptr = self.map.raw(self.layout.frame(frame.index), len);
        RawFrame {
            ptr: NonNull::new(ptr).unwrap_or(NonNull::dangling()),
            len,
            _map: self.map.clone(),
        }
    }

    /// Runs `f` with the frame's bytes as a `&mut [u8]` that only a system
    /// call may touch.
    fn with_frame_for_syscall<R>(
        &mut self,
        frame: &ServerFrame,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> R {
        self.check_frame(frame);
        let len = self.frame_capacity();
        let ptr = self.map.raw(self.layout.frame(frame.index), len);
        // SAFETY: `ptr..ptr+len` is inside the mapping (checked by `raw`) and
        // the mapping outlives this call (`self` is borrowed). The frame is
        // in state ServerHolding (the `ServerFrame` token proves it), so no
        // other reference to these bytes exists in this process. The slice
        // is only handed to a system call (the kernel writes it) and dropped
        // before we return; no Rust code reads through it, so a concurrent
        // write by the client process cannot influence our control flow.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
        f(buf)
    }

    /// `recv(fd, frame, flags)` straight into the client's frame (zero-copy
    /// receive). Returns the kernel's length, which with `RecvFlags::TRUNC`
    /// may exceed the frame (then only the frame's capacity was stored).
    pub fn recv_into_frame(
        &mut self,
        frame: &ServerFrame,
        fd: BorrowedFd<'_>,
        flags: RecvFlags,
    ) -> io::Result<usize> {
        self.with_frame_for_syscall(frame, |buf| {
            rustix::net::recv(fd, buf, flags).map(|(_, total)| total)
        })
        .map_err(Into::into)
    }

    /// `read(fd, frame)` straight into the client's frame (e.g. a TAP device).
    pub fn read_into_frame(
        &mut self,
        frame: &ServerFrame,
        fd: BorrowedFd<'_>,
    ) -> io::Result<usize> {
        self.with_frame_for_syscall(frame, |buf| rustix::io::read(fd, buf))
            .map_err(Into::into)
    }

    /// Queues the rx descriptor for a packet of `len` bytes at `offset` in
    /// `frame`; the frame becomes the client's. If the rx ring is full (or
    /// the client broke its consumer index) the frame goes back to the free
    /// list and the error says why — check [`rx_free`](Self::rx_free) first
    /// to choose to spill instead.
    pub fn deliver_frame(
        &mut self,
        frame: ServerFrame,
        offset: u16,
        len: usize,
        meta: &RxMeta,
    ) -> Result<(), PlaceError> {
        self.check_frame(&frame);
        let cap = self.frame_capacity();
        if usize::from(offset) + len > cap {
            self.frames.release(frame.index);
            return Err(PlaceError::TooLarge { len, capacity: cap });
        }
        let free = match self.rx_free() {
            Ok(n) => n,
            Err(v) => {
                self.frames.release(frame.index);
                return Err(v.into());
            }
        };
        if free == 0 {
            self.frames.release(frame.index);
            return Err(PlaceError::RxFull);
        }
        let desc = self.rx_desc(frame.index, len, offset, meta, 0);
        match self.rx.push(&desc) {
            Ok(true) => {
                self.frames.deliver(frame.index);
                Ok(())
            }
            Ok(false) => {
                self.frames.release(frame.index);
                Err(PlaceError::RxFull)
            }
            Err(v) => {
                self.frames.release(frame.index);
                Err(self.record(v).into())
            }
        }
    }

    /// Gives back a frame the server took but did not use.
    pub fn release_frame(&mut self, frame: ServerFrame) {
        self.check_frame(&frame);
        self.frames.release(frame.index);
    }

    /// Makes queued rx descriptors and completions visible to the client and
    /// rings its doorbell if it asked (once per call at most). Returns
    /// whether the doorbell was rung.
    pub fn publish(&mut self) -> io::Result<bool> {
        let wake_rx = self.rx.publish();
        let wake_comp = self.completion.publish();
        if wake_rx || wake_comp {
            self.to_client.notify()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// How many more tx descriptors may be taken now: completion-ring room
    /// not already promised to packets in flight.
    pub fn tx_budget(&mut self) -> Result<u32, Violation> {
        self.frames.check()?;
        let free = match self.completion.free() {
            Ok(n) if n <= self.tx_in_flight => self.completion.refresh(),
            r => r,
        };
        match free {
            Ok(n) => Ok(n.saturating_sub(self.tx_in_flight)),
            Err(v) => Err(self.record(v)),
        }
    }

    fn validate_tx(&self, d: &TxDesc) -> Result<(), Violation> {
        let bad = |reason| Violation::BadDescriptor {
            ring: RingId::Tx,
            reason,
        };
        let count = self.layout.geometry.frame_count;
        let size = self.layout.geometry.frame_size;
        if d.flags & !TX_FLAGS_ALL != 0 {
            return Err(bad(DescriptorFault::UnknownFlags(d.flags)));
        }
        let mut segs = [(d.frame, d.offset, d.len), (0, 0, 0)];
        let n = if d.flags & TX_SEGMENT2 != 0 {
            if d.frame2 == d.frame {
                return Err(bad(DescriptorFault::SameFrame(d.frame)));
            }
            segs[1] = (d.frame2, d.offset2, d.len2);
            2
        } else {
            1
        };
        let mut total = 0u64;
        for &(frame, offset, len) in &segs[..n] {
            if frame >= count {
                return Err(Violation::FrameOutOfRange {
                    ring: RingId::Tx,
                    index: frame,
                    count,
                });
            }
            if len == 0 {
                return Err(bad(DescriptorFault::ZeroLength));
            }
            if u64::from(offset) + u64::from(len) > u64::from(size) {
                return Err(bad(DescriptorFault::OutOfBounds { offset, len, size }));
            }
            total += u64::from(len);
        }
        if total > u64::from(self.config.max_tx_len) {
            return Err(bad(DescriptorFault::TooLong {
                len: total.min(u64::from(u32::MAX)) as u32,
                max: self.config.max_tx_len,
            }));
        }
        Ok(())
    }

    /// Takes the next valid tx descriptor, if any and if
    /// [`tx_budget`](Self::tx_budget) allows. Invalid descriptors are
    /// refused, counted and skipped (their frames stay the client's; no
    /// completion is posted for them).
    pub fn pop_tx(&mut self) -> Result<Option<TxPacket>, Violation> {
        loop {
            if self.tx_budget()? == 0 {
                return Ok(None);
            }
            if self.tx.ready_cached() == 0 {
                match self.tx.refresh() {
                    Ok(0) => return Ok(None),
                    Ok(_) => {}
                    Err(v) => return Err(self.record(v)),
                }
            }
            // One copy of the descriptor, validated and used from here on.
            let Some(desc) = self.tx.get(0) else {
                return Ok(None);
            };
            self.tx.release(1);
            if let Err(v) = self.validate_tx(&desc) {
                self.record(v);
                continue;
            }
            if self.frames.start_tx(desc.frame).is_err() {
                continue;
            }
            if desc.flags & TX_SEGMENT2 != 0 && self.frames.start_tx(desc.frame2).is_err() {
                self.frames.abort_tx(desc.frame);
                continue;
            }
            self.tx_in_flight += 1;
            return Ok(Some(TxPacket {
                desc,
                region: self.id,
            }));
        }
    }

    fn check_tx(&self, p: &TxPacket) {
        assert_eq!(
            p.region, self.id,
            "exchange: tx packet belongs to another region (caller bug)"
        );
    }

    /// Copies the packet's bytes (segment 1 then 2) into `out`; returns the
    /// length copied (the whole packet if `out` is large enough). Validate
    /// headers (anti-spoofing) on this copy, never on the shared frame.
    pub fn read_tx(&self, p: &TxPacket, out: &mut [u8]) -> usize {
        self.check_tx(p);
        let mut at = 0;
        for (frame, offset, len) in std::iter::once(p.first()).chain(p.second()) {
            let n = (len as usize).min(out.len() - at);
            self.map.copy_out(
                self.layout.frame(frame) + offset as usize,
                &mut out[at..at + n],
            );
            at += n;
        }
        at
    }

    /// Raw ranges of the packet's segments, for a zero-copy send whose
    /// headers were validated on a copy (see [`RawFrame`]).
    pub fn tx_raw(&self, p: &TxPacket) -> (RawFrame, Option<RawFrame>) {
        self.check_tx(p);
        let raw = |(frame, offset, len): (u32, u32, u32)| {
            let ptr = self
                .map
                .raw(self.layout.frame(frame) + offset as usize, len as usize);
            RawFrame {
                ptr: NonNull::new(ptr).unwrap_or(NonNull::dangling()),
                len: len as usize,
                _map: self.map.clone(),
            }
        };
        (raw(p.first()), p.second().map(raw))
    }

    /// Raw ranges of the packet's bytes after its first `skip` bytes (at
    /// most two: what is left of segment 1, then segment 2), for a send
    /// that puts a validated copy of those first bytes in front (see
    /// [`RawFrame`]).
    pub fn tx_raw_after(&self, p: &TxPacket, skip: usize) -> [Option<RawFrame>; 2] {
        self.check_tx(p);
        let mut out = [None, None];
        let mut skip = skip;
        let mut n = 0;
        for (frame, offset, len) in std::iter::once(p.first()).chain(p.second()) {
            let len = len as usize;
            if skip >= len {
                skip -= len;
                continue;
            }
            let at = self.layout.frame(frame) + offset as usize + skip;
            let left = len - skip;
            skip = 0;
            let ptr = self.map.raw(at, left);
            out[n] = Some(RawFrame {
                ptr: NonNull::new(ptr).unwrap_or(NonNull::dangling()),
                len: left,
                _map: self.map.clone(),
            });
            n += 1;
        }
        out
    }

    /// Posts the completion for `p` (status `TX_STATUS_*`, `len` bytes sent)
    /// and gives its frames back to the client. Visible after
    /// [`publish`](Self::publish).
    pub fn complete_tx(&mut self, p: TxPacket, status: u32, len: u32) -> Result<(), PlaceError> {
        self.check_tx(&p);
        let second = p.second();
        let c = TxCompletion {
            frame: p.desc.frame,
            frame2: second.map_or(NO_FRAME, |s| s.0),
            status,
            len,
        };
        // Room is guaranteed by `tx_budget`, unless the client broke its
        // consumer index; then the frames stay in flight (the client's fault).
        match self.completion.push(&c) {
            Ok(true) => {}
            Ok(false) => return Err(PlaceError::CompletionFull),
            Err(v) => return Err(self.record(v).into()),
        }
        self.tx_in_flight -= 1;
        self.frames.complete_tx(p.desc.frame);
        if let Some((f2, _, _)) = second {
            self.frames.complete_tx(f2);
        }
        Ok(())
    }

    /// Asks the client to ring the doorbell on new fill or tx entries, then
    /// re-checks both rings. `Ok(true)`: both are empty, poll
    /// [`wait_fd`](Self::wait_fd). `Ok(false)`: work arrived, do not sleep.
    pub fn arm_wakeup(&mut self) -> Result<bool, Violation> {
        self.frames.check()?;
        let fill = self.fill.arm_wakeup().map_err(|v| self.frames.record(v))?;
        let tx = self.tx.arm_wakeup().map_err(|v| self.frames.record(v))?;
        if !(fill && tx) {
            self.fill.disarm_wakeup();
            self.tx.disarm_wakeup();
            return Ok(false);
        }
        Ok(true)
    }

    /// Clears the doorbell counter after waking.
    pub fn drain_wakeups(&self) -> io::Result<u64> {
        self.from_client.drain()
    }
}
