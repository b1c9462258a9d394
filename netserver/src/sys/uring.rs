//! An io_uring driving one [`PacketSocket`]: peek, receive into a chosen
//! destination, batched receive, send.
//!
//! # Receive modes
//!
//! **Peek then place** (the zero-copy path). [`PacketRing::peek`] looks at the
//! next frame without dequeuing it: a `recv(MSG_PEEK | MSG_TRUNC)` of the first
//! [`UringConfig::peek_len`] bytes (128 by default) into a buffer the ring
//! owns. The result is the frame's full length, so the caller can classify
//! the headers and choose where the frame goes before any payload is written.
//! A caller whose classification reads deeper sets a longer peek with
//! [`PacketRing::set_peek_len`] (up to [`UringConfig::max_peek_len`]): the
//! next peek takes that many bytes, and a frame already peeked shorter is
//! peeked again.
//! Then exactly one of:
//!
//! - [`PacketRing::consume`]: dequeue it without copying anything more (a
//!   small frame is already complete in the peek buffer, or the frame is
//!   dropped);
//! - [`PacketRing::recv_into`] / [`PacketRing::recv_into_raw`]: receive the
//!   frame straight into the destination (a client's fill page): the kernel
//!   writes the payload once, user space copies nothing.
//!
//! Both are submitted together with the peek of the following frame in one
//! `io_uring_enter`, so a busy socket costs one enter per frame, not two.
//! The pair is *not* linked: a linked peek would only be issued from task
//! work after the receive completes, which with cooperative task running
//! (below) waits for the next enter. Unlinked, the receive is issued first
//! and dequeues the peeked frame inline, and the peek then sees the frame
//! after it. Should the peek still complete before its receive (the receive
//! had to wait, so the peek may have seen the frame the receive is about to
//! take), the peek is *overtaken*: its result is discarded and it is issued
//! again ([`PacketRing::peeks_overtaken`] counts these).
//! Peeks cannot be batched (every peek sees the same head frame), so this mode
//! is one frame per enter by construction.
//!
//! # Task running
//!
//! The ring is set up with `IORING_SETUP_COOP_TASKRUN` and
//! `IORING_SETUP_TASKRUN_FLAG`: the kernel does not interrupt the data-path
//! thread to post a completion that arrives asynchronously (a peek or batch
//! that waited for a frame); it sets `IORING_SQ_TASKRUN` in the submission
//! queue flags instead, and the work runs at our next enter. So checking an
//! idle ring with a zero timeout reads two words of shared memory (the
//! completion queue and that flag) and makes no system call unless there is
//! something to submit or to run.
//!
//! **Batched receive** (the copy-once path and the baseline reader).
//! [`PacketRing::recv_batch`] keeps one multishot `recvmsg(MSG_TRUNC)` armed on
//! a provided-buffer ring of server frames ([`UringConfig::batch_buffers`] ×
//! [`UringConfig::batch_buffer_size`]): the kernel fills as many buffers as
//! frames are queued and posts one completion per frame, with no submission
//! per frame at all. Small frames are complete and get copied into a small
//! slot; a large frame is copied once from the server frame. We chose
//! multishot with a buffer ring over a batch of `recvmsg` entries because it
//! needs no per-frame submission and the kernel picks the buffer, so a burst
//! of any length drains in one wait. `MSG_TRUNC` gives the frame's real length,
//! so a frame larger than a buffer is reported, never silently cut.
//!
//! A ring is in one mode at a time: `recv_batch` cancels an outstanding peek
//! (harmless, a peek dequeues nothing); `peek` refuses while a batch receive is
//! armed — call [`PacketRing::stop_batch`], which hands over every frame the
//! kernel already placed, so switching loses and reorders nothing.
//!
//! # Doorbell
//!
//! [`PacketRing::watch_doorbell`] gives the ring an eventfd that another
//! thread writes to get the ring's owner out of a wait (the data path's
//! commands). While a wait with a timeout blocks, a one-shot
//! `IORING_OP_POLL_ADD` on it is armed beside the receive; when it fires,
//! the wait returns early (as a timeout would) and the doorbell is drained.
//! Waits for caller memory (`recv_into*`, `send*`) do not return early.
//!
//! # Memory ownership
//!
//! The ring owns every buffer the kernel may write asynchronously (peek
//! buffer, provided buffers) in mappings that never move. Operations that use
//! caller memory (`recv_into*`, `send*`) wait for their own completion before
//! returning, so the caller's memory is never in the kernel's hands after the
//! call. On drop the ring cancels what is outstanding and waits for it; if
//! the kernel does not give a buffer back, the mapping is leaked rather than
//! unmapped under the kernel's feet.

use std::collections::VecDeque;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exchange::EventFd;
use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::af_packet::{PacketSocket, RecvLen};
use super::cqe_result;
use super::mem::{page_size, Pages};

/// Default number of bytes a peek looks at: the small-packet threshold.
pub const DEFAULT_PEEK_LEN: usize = 128;

/// Default longest peek: the server's default frame size.
pub const DEFAULT_MAX_PEEK_LEN: usize = 4096;

/// Longest peek a ring accepts to be configured with.
const PEEK_LEN_CEILING: usize = 1 << 16;

/// Size of the `io_uring_recvmsg_out` header the kernel writes at the start of
/// each provided buffer in a multishot `recvmsg`.
const RECVMSG_OUT_LEN: usize = 16;

// user_data of each kind of operation.
const UD_PEEK: u64 = 1;
const UD_RECV: u64 = 2;
const UD_BATCH: u64 = 3;
const UD_CANCEL: u64 = 4;
const UD_DOORBELL: u64 = 5;
const UD_SEND: u64 = 1 << 32; // | index within the batch

/// Most ranges one frame of [`PacketRing::send_batch_gather`] is gathered from.
pub const GATHER_PIECES: usize = 3;

/// Buffer group id of the provided-buffer ring.
const BGID: u16 = 7;

/// How to build a [`PacketRing`].
#[derive(Clone, Debug)]
pub struct UringConfig {
    /// Submission queue entries (the completion queue gets enough for a full
    /// batch on top).
    pub entries: u32,
    /// Bytes a peek looks at by default (at least the small threshold).
    pub peek_len: usize,
    /// Most bytes [`PacketRing::set_peek_len`] may ask a peek for (the
    /// ring keeps a buffer this large).
    pub max_peek_len: usize,
    /// Provided buffers for [`PacketRing::recv_batch`]: a power of two, at
    /// most 32768, or 0 for a ring without batched receive.
    pub batch_buffers: u16,
    /// Bytes per provided buffer, including the 16-byte `recvmsg` header: a
    /// frame of up to `batch_buffer_size - 16` bytes is received whole.
    pub batch_buffer_size: u32,
}

impl Default for UringConfig {
    fn default() -> Self {
        Self {
            entries: 256,
            peek_len: DEFAULT_PEEK_LEN,
            max_peek_len: DEFAULT_MAX_PEEK_LEN,
            batch_buffers: 512,
            batch_buffer_size: 2048,
        }
    }
}

/// The head of the next frame, as a peek saw it.
#[derive(Debug)]
pub struct Peek<'a> {
    /// The frame's full length.
    pub frame_len: usize,
    /// Its first `min(frame_len, peek_len)` bytes, `peek_len` being
    /// [`PacketRing::peek_len`] when the peek was returned.
    pub head: &'a [u8],
    /// The frame was already queued when the previous frame was received:
    /// the peek submitted with that receive completed at once, and
    /// [`PacketRing::peek`] neither submitted nor waited for it. A long run
    /// of these means the reader is behind (a backlog).
    pub queued: bool,
}

impl Peek<'_> {
    /// The whole frame is in [`Peek::head`] (a small frame).
    pub fn is_complete(&self) -> bool {
        self.head.len() == self.frame_len
    }
}

/// One frame from [`PacketRing::recv_batch`].
#[derive(Debug)]
pub struct BatchFrame<'a> {
    /// The bytes received: the whole frame unless it was larger than a buffer.
    pub data: &'a [u8],
    /// The frame's real length.
    pub frame_len: usize,
}

impl BatchFrame<'_> {
    /// The buffer held the whole frame.
    pub fn is_complete(&self) -> bool {
        self.data.len() == self.frame_len
    }
}

/// The kernel's `struct io_uring_buf`: one entry of a provided-buffer ring.
/// The `resv` field of entry 0 is the ring's tail.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct IoUringBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// Progress of a single-slot operation (peek, recv).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Idle,
    InFlight,
    Done(i32),
}

/// Everything the completion handler updates.
#[derive(Debug)]
struct State {
    peek: Slot,
    recv: Slot,
    sends_pending: usize,
    send_results: Vec<i32>,
    batch_armed: bool,
    /// (buffer id, bytes the kernel placed in it)
    batch_ready: VecDeque<(u16, u32)>,
    batch_error: Option<i32>,
    /// Operations whose last completion has not arrived yet.
    in_flight: usize,
    /// Peeks discarded because they completed before their receive.
    peeks_overtaken: u64,
    /// A poll on the doorbell is in flight.
    doorbell_armed: bool,
    /// The doorbell poll fired and the wait it interrupts has not seen it.
    doorbell_rang: bool,
}

impl State {
    fn new(config: &UringConfig) -> Self {
        Self {
            peek: Slot::Idle,
            recv: Slot::Idle,
            sends_pending: 0,
            send_results: Vec::with_capacity(config.entries as usize),
            batch_armed: false,
            batch_ready: VecDeque::with_capacity(usize::from(config.batch_buffers)),
            batch_error: None,
            in_flight: 0,
            peeks_overtaken: 0,
            doorbell_armed: false,
            doorbell_rang: false,
        }
    }

    /// Applies one completion: its `user_data`, result and flags.
    fn complete(&mut self, user_data: u64, res: i32, flags: u32) {
        match user_data {
            UD_PEEK => {
                self.in_flight -= 1;
                if self.recv == Slot::InFlight {
                    // Overtaken: a receive is only in flight together with
                    // the peek submitted beside it, and this peek finished
                    // first, so it may have seen the frame that receive is
                    // about to dequeue. Discard it; `peek` issues it again.
                    self.peek = Slot::Idle;
                    self.peeks_overtaken += 1;
                } else {
                    self.peek = Slot::Done(res);
                }
            }
            UD_RECV => {
                self.recv = Slot::Done(res);
                self.in_flight -= 1;
            }
            UD_BATCH => {
                if let Some(bid) = cqueue::buffer_select(flags) {
                    // A buffer is attached whenever res >= 0.
                    self.batch_ready.push_back((bid, res.max(0).unsigned_abs()));
                }
                if !cqueue::more(flags) {
                    self.batch_armed = false;
                    self.in_flight -= 1;
                    // ENOBUFS: every buffer is full; re-armed once some are
                    // handed back. ECANCELED: stop_batch.
                    if res < 0 && res != -libc::ENOBUFS && res != -libc::ECANCELED {
                        self.batch_error = Some(res);
                    }
                }
            }
            UD_CANCEL => self.in_flight -= 1,
            UD_DOORBELL => {
                self.in_flight -= 1;
                self.doorbell_armed = false;
                // ECANCELED: the ring is being dropped; nothing rang.
                self.doorbell_rang |= res != -libc::ECANCELED;
            }
            ud if ud & UD_SEND != 0 => {
                let idx = usize::try_from(ud & 0xffff_ffff).unwrap_or(usize::MAX);
                if let Some(r) = self.send_results.get_mut(idx) {
                    *r = res;
                }
                self.sends_pending -= 1;
                self.in_flight -= 1;
            }
            ud => tracing::error!(ud, res, "completion with unknown user_data (please report)"),
        }
    }
}

/// The provided-buffer ring and its buffers.
#[derive(Debug)]
struct BufRing {
    entries: Pages,
    bufs: Pages,
    count: u16,
    buf_size: u32,
    tail: u16,
}

impl BufRing {
    fn new(count: u16, buf_size: u32) -> io::Result<Self> {
        if !count.is_power_of_two() || count > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("batch_buffers must be a power of two up to 32768, not {count}"),
            ));
        }
        if (buf_size as usize) < RECVMSG_OUT_LEN + CONTROL_LEN + 64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("batch_buffer_size {buf_size} is too small for a frame"),
            ));
        }
        let entries = Pages::new(usize::from(count) * std::mem::size_of::<IoUringBuf>())?;
        let bufs = Pages::new(usize::from(count) * buf_size as usize)?;
        let mut ring = Self {
            entries,
            bufs,
            count,
            buf_size,
            tail: 0,
        };
        for bid in 0..count {
            ring.push(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Writes buffer `bid` into the slot at the (private) tail. The kernel
    /// does not look at it until [`BufRing::publish`].
    fn push(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (self.count - 1));
        let entry = self
            .entries
            .ptr_at(
                slot * std::mem::size_of::<IoUringBuf>(),
                std::mem::size_of::<IoUringBuf>(),
            )
            .cast::<IoUringBuf>();
        let addr = self.bufs.ptr_at(
            usize::from(bid) * self.buf_size as usize,
            self.buf_size as usize,
        );
        // SAFETY: `entry` is an in-bounds, aligned (page-aligned base, 16-byte
        // entries) IoUringBuf slot. The kernel only reads slots between its
        // head and the published tail; this slot is past the published tail,
        // so no one reads it concurrently. We write the three fields and not
        // `resv`, which in slot 0 is the tail the kernel reads.
        unsafe {
            std::ptr::addr_of_mut!((*entry).addr).write(addr as u64);
            std::ptr::addr_of_mut!((*entry).len).write(self.buf_size);
            std::ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every pushed buffer visible to the kernel.
    fn publish(&self) {
        let tail = self.entries.ptr_at(14, 2).cast::<u16>();
        // SAFETY: offset 14 of entry 0 is its `resv` field, the ring tail: an
        // aligned u16 inside the mapping that only atomic accesses touch.
        let tail = unsafe { AtomicU16::from_ptr(tail) };
        // Release: the entry writes in `push` happen before the kernel's
        // smp_load_acquire of the tail in io_ring_buffer_select.
        tail.store(self.tail, Ordering::Release);
    }

    /// The bytes the kernel placed in buffer `bid`, writable.
    ///
    /// # Safety
    /// As [`BufRing::filled`], and no other slice of the buffer is alive.
    #[allow(clippy::mut_from_ref)]
    unsafe fn filled_mut(&self, bid: u16, len: u32) -> &mut [u8] {
        let len = len.min(self.buf_size) as usize;
        // SAFETY: the caller guarantees the kernel is done with this buffer
        // and that the slice is exclusive; Pages::slice_mut checks bounds.
        unsafe {
            self.bufs
                .slice_mut(usize::from(bid) * self.buf_size as usize, len)
        }
    }

    /// The bytes the kernel placed in buffer `bid`.
    ///
    /// # Safety
    /// `bid` must have been handed back by a completion and not pushed again
    /// since: the kernel does not write a buffer it has not been given.
    unsafe fn filled(&self, bid: u16, len: u32) -> &[u8] {
        let len = len.min(self.buf_size) as usize;
        // SAFETY: the caller guarantees the kernel is done with this buffer;
        // the range is in bounds (Pages::slice checks).
        unsafe {
            self.bufs
                .slice(usize::from(bid) * self.buf_size as usize, len)
        }
    }
}

/// Memory the kernel may write asynchronously; leaked if it may still do so.
#[derive(Debug)]
struct Memory {
    /// `msghdr`s, iovecs and control buffers (see the `*_OFF` constants).
    page: Pages,
    /// The peek buffer: the head lands at [`PEEK_DATA_OFF`].
    peek: Pages,
    bufring: Option<BufRing>,
}

// The peek lands 4 bytes into its buffer (`Memory::peek`), leaving room to
// reinsert a stripped VLAN tag in front of the EtherType.
const PEEK_DATA_OFF: usize = 4;
// Layout of the ring's own page (`Memory::page`).
const BATCH_MSG_OFF: usize = 2048;
const PEEK_MSG_OFF: usize = 2048 + 128;
const PEEK_IOV_OFF: usize = 2048 + 256;
const PEEK_CTL_OFF: usize = 2048 + 512;
const RECV_MSG_OFF: usize = 2048 + 1024;
const RECV_IOV_OFF: usize = 2048 + 1024 + 128;
const PAGE_LEN: usize = 4096;
/// The socket's index in the ring's fixed-file table.
const SOCKET_FIXED_FILE: u32 = 0;

/// Control-message space for one `PACKET_AUXDATA` (CMSG_SPACE(20) = 40).
const CONTROL_LEN: usize = 64;
/// Where a VLAN tag goes: after the two MAC addresses.
const VLAN_AT: usize = 12;

/// A stripped outer VLAN tag (TPID and TCI, network order) to reinsert.
type VlanTag = [u8; 4];

/// Finds the `PACKET_AUXDATA` control message in `control` (the bytes the
/// kernel wrote) and returns the outer VLAN tag it reports, if any.
fn vlan_from_control(control: &[u8]) -> Option<VlanTag> {
    const HDR: usize = std::mem::size_of::<libc::cmsghdr>();
    let mut rest = control;
    while rest.len() >= HDR {
        let len = usize::from_ne_bytes(rest[..8].try_into().ok()?);
        let level = i32::from_ne_bytes(rest[8..12].try_into().ok()?);
        let kind = i32::from_ne_bytes(rest[12..16].try_into().ok()?);
        if len < HDR || len > rest.len() {
            return None;
        }
        if level == libc::SOL_PACKET && kind == libc::PACKET_AUXDATA && len >= HDR + 20 {
            let d = &rest[HDR..len];
            let status = u32::from_ne_bytes(d[0..4].try_into().ok()?);
            let tci = u16::from_ne_bytes(d[16..18].try_into().ok()?);
            let tpid = u16::from_ne_bytes(d[18..20].try_into().ok()?);
            // A tag with TCI 0 is still a tag when VLAN_VALID says so.
            if status & libc::TP_STATUS_VLAN_VALID == 0 {
                return None;
            }
            let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                tpid
            } else {
                0x8100
            };
            let [a, b] = tpid.to_be_bytes();
            let [c, d] = tci.to_be_bytes();
            return Some([a, b, c, d]);
        }
        // CMSG_ALIGN: the next header starts 8-byte aligned.
        rest = rest.get(len.next_multiple_of(8)..)?;
    }
    None
}

/// What a completed peek found, computed once per frame.
#[derive(Clone, Copy, Debug)]
struct PeekInfo {
    /// Full frame length, a reinserted VLAN tag included.
    frame_len: usize,
    /// Where the head starts in the page (0 with a reinserted tag, else 4).
    head_off: usize,
    head_len: usize,
    vlan: Option<VlanTag>,
}

/// An io_uring bound to one packet socket. See the module docs.
pub struct PacketRing {
    ring: IoUring,
    sock: PacketSocket,
    state: State,
    mem: ManuallyDrop<Memory>,
    /// Bytes the next peek looks at.
    peek_len: usize,
    /// `set_peek_len` bounds: the configured default and the buffer's size.
    min_peek_len: usize,
    max_peek_len: usize,
    /// Bytes the outstanding (or completed) peek was issued with.
    peek_issued: usize,
    peek_info: Option<PeekInfo>,
    /// Rung to end a wait early ([`PacketRing::watch_doorbell`]). Shared
    /// with its ringers; the `Arc` keeps it open while a poll may be armed
    /// (declared after `ring`, so it is dropped after the ring is closed).
    doorbell: Option<Arc<EventFd>>,
}

impl std::fmt::Debug for PacketRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketRing")
            .field("sock", &self.sock)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

fn retryable_wait(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
    )
}

impl PacketRing {
    /// Sets up a ring for `sock`. Needs a kernel with provided-buffer rings
    /// and multishot receive (6.0 or later) when `batch_buffers > 0`.
    pub fn new(sock: PacketSocket, config: &UringConfig) -> io::Result<Self> {
        let (peek_len, max_peek_len) = (config.peek_len, config.max_peek_len);
        if !(VLAN_AT + 4..=PEEK_LEN_CEILING).contains(&peek_len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("peek_len must be 16..={PEEK_LEN_CEILING}, not {peek_len}"),
            ));
        }
        if !(peek_len..=PEEK_LEN_CEILING).contains(&max_peek_len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "max_peek_len must be peek_len ({peek_len})..={PEEK_LEN_CEILING}, \
                     not {max_peek_len}"
                ),
            ));
        }
        let cq = config
            .entries
            .saturating_mul(2)
            .max(u32::from(config.batch_buffers).saturating_mul(2));
        // Not SINGLE_ISSUER: a backend is built on one thread and driven
        // from the data-path thread. COOP_TASKRUN + TASKRUN_FLAG: see the
        // module docs (Linux 5.19 or later).
        let ring = IoUring::builder()
            .setup_cqsize(cq)
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .build(config.entries)
            .map_err(|e| super::context(e, "creating an io_uring"))?;
        // The socket as fixed file 0: each operation then skips looking the
        // descriptor up and taking a reference to it (`fget`/`fput`), a few
        // percent of a peek-then-place frame's cost. The ring holds its own
        // reference until it is dropped.
        ring.submitter()
            .register_files(&[sock.as_fd().as_raw_fd()])
            .map_err(|e| super::context(e, "registering the socket with the io_uring"))?;
        let page = Pages::new(page_size().max(PAGE_LEN))?;
        let peek = Pages::new((PEEK_DATA_OFF + max_peek_len).next_multiple_of(page_size()))?;
        // The multishot recvmsg template: no name, room for PACKET_AUXDATA.
        // SAFETY: msghdr is a plain C struct; all-zero (null pointers, zero
        // lengths) is valid.
        let mut msghdr: libc::msghdr = unsafe { std::mem::zeroed() };
        msghdr.msg_controllen = CONTROL_LEN as _;
        let at = page
            .ptr_at(BATCH_MSG_OFF, std::mem::size_of::<libc::msghdr>())
            .cast::<libc::msghdr>();
        // SAFETY: in bounds, 8-byte aligned (page base + 2048), and no one
        // else accesses the page yet.
        unsafe { at.write(msghdr) };

        let bufring = if config.batch_buffers > 0 {
            let br = BufRing::new(config.batch_buffers, config.batch_buffer_size)?;
            // SAFETY: the entry array lives in `br.entries`, which `Memory`
            // keeps mapped until the group is unregistered in Drop (or leaks
            // it if the ring cannot be quiesced).
            unsafe {
                ring.submitter().register_buf_ring_with_flags(
                    br.entries.as_ptr() as u64,
                    br.count,
                    BGID,
                    0,
                )
            }
            .map_err(|e| {
                super::context(e, "registering the provided-buffer ring (Linux ≥ 5.19)")
            })?;
            Some(br)
        } else {
            None
        };
        Ok(Self {
            ring,
            sock,
            state: State::new(config),
            mem: ManuallyDrop::new(Memory {
                page,
                peek,
                bufring,
            }),
            peek_len,
            min_peek_len: peek_len,
            max_peek_len,
            peek_issued: peek_len,
            peek_info: None,
            doorbell: None,
        })
    }

    /// The socket this ring drives.
    pub fn socket(&self) -> &PacketSocket {
        &self.sock
    }

    /// Bytes a peek looks at.
    pub fn peek_len(&self) -> usize {
        self.peek_len
    }

    /// Most bytes a peek may look at ([`UringConfig::max_peek_len`]).
    pub fn max_peek_len(&self) -> usize {
        self.max_peek_len
    }

    /// Sets how many bytes peeks look at from now on, clamped to the
    /// configured `peek_len..=max_peek_len`; returns the length set. A frame
    /// already peeked with fewer bytes than that (and longer than its peek)
    /// is peeked again by the next [`Self::peek`]; one peeked with more shows
    /// only `peek_len` of them.
    pub fn set_peek_len(&mut self, len: usize) -> usize {
        self.peek_len = len.clamp(self.min_peek_len, self.max_peek_len);
        self.peek_len
    }

    /// A batched receive is armed or has frames to hand over: [`Self::peek`]
    /// is refused until [`Self::stop_batch`].
    pub fn batch_running(&self) -> bool {
        self.state.batch_armed || !self.state.batch_ready.is_empty()
    }

    /// Largest frame [`PacketRing::recv_batch`] receives whole (0 without
    /// batched receive).
    pub fn batch_frame_capacity(&self) -> usize {
        self.mem
            .bufring
            .as_ref()
            .map_or(0, |b| b.buf_size as usize - RECVMSG_OUT_LEN - CONTROL_LEN)
    }

    /// The socket, as the ring's fixed file 0 (registered in [`Self::new`]).
    fn fd(&self) -> types::Fixed {
        types::Fixed(SOCKET_FIXED_FILE)
    }

    /// Queues `entries` (in order) for the next enter, submitting first if
    /// the submission queue is full.
    ///
    /// # Safety
    /// Every pointer in `entries` must stay valid for the kernel's access
    /// until that entry's completion is reaped.
    unsafe fn push(&mut self, entries: &[squeue::Entry]) -> io::Result<()> {
        loop {
            // SAFETY: forwarded from this function's contract.
            let pushed = unsafe { self.ring.submission().push_multiple(entries) };
            if pushed.is_ok() {
                self.state.in_flight += entries.len();
                return Ok(());
            }
            match self.ring.submit() {
                Ok(_) => self.reap(),
                Err(e) if retryable_wait(&e) => self.reap(),
                Err(e) => return Err(e),
            }
        }
    }

    /// Handles every completion that has arrived.
    fn reap(&mut self) {
        let Self { ring, state, .. } = self;
        for cqe in ring.completion() {
            state.complete(cqe.user_data(), cqe.result(), cqe.flags());
        }
    }

    /// Submits what is queued and waits until `done` holds or `timeout`
    /// passes (`None`: no limit). Returns whether `done` holds. A wait with
    /// a timeout also ends when the doorbell rings (module docs); one
    /// without (caller memory in the kernel's hands) never ends early.
    fn wait(
        &mut self,
        done: impl Fn(&State) -> bool,
        timeout: Option<Duration>,
    ) -> io::Result<bool> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            self.reap();
            if timeout.is_some() && self.take_doorbell() {
                return Ok(done(&self.state));
            }
            if done(&self.state) {
                // Hand over anything still queued without waiting.
                if !self.ring.submission().is_empty() {
                    self.ring.submit()?;
                }
                return Ok(true);
            }
            let res = match deadline {
                None => self.ring.submit_and_wait(1),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        self.enter_if_needed()?;
                        return Ok(done(&self.state));
                    }
                    self.arm_doorbell()?;
                    let ts = types::Timespec::new()
                        .sec(left.as_secs())
                        .nsec(left.subsec_nanos());
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.ring.submitter().submit_with_args(1, &args)
                }
            };
            match res {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
                Err(e) if retryable_wait(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Submits what is queued and runs pending task work — entering the
    /// kernel only if there is either (or completions overflowed) — then
    /// reaps. An idle ring costs no system call.
    fn enter_if_needed(&mut self) -> io::Result<()> {
        let sq = self.ring.submission();
        // Acquire loads of the SQ flags (in `taskrun` / `cq_overflow`) pair
        // with the kernel's atomic_or when it queues task work or overflows.
        let needed = !sq.is_empty() || sq.taskrun() || sq.cq_overflow();
        drop(sq);
        if needed {
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if retryable_wait(&e) => {}
                Err(e) => return Err(e),
            }
        }
        self.reap();
        Ok(())
    }

    /// Peeks discarded and issued again because they completed before the
    /// receive submitted with them (see the module docs).
    pub fn peeks_overtaken(&self) -> u64 {
        self.state.peeks_overtaken
    }

    /// From now on, a wait with a timeout ([`Self::peek`],
    /// [`Self::wait_batch`], [`Self::recv_batch`]) also ends, early and
    /// empty-handed, when `doorbell` is written to (see the module docs).
    pub fn watch_doorbell(&mut self, doorbell: Arc<EventFd>) {
        self.doorbell = Some(doorbell);
    }

    /// Arms the poll on the doorbell unless it is armed (or there is none).
    fn arm_doorbell(&mut self) -> io::Result<()> {
        let Some(doorbell) = &self.doorbell else {
            return Ok(());
        };
        if self.state.doorbell_armed {
            return Ok(());
        }
        let poll = opcode::PollAdd::new(
            types::Fd(doorbell.as_raw_fd()),
            libc::POLLIN.unsigned_abs().into(),
        )
        .build()
        .user_data(UD_DOORBELL);
        // SAFETY: a poll carries no pointers; the eventfd stays open while
        // the poll may be armed (`Self::doorbell` outlives the ring).
        unsafe { self.push(&[poll])? };
        self.state.doorbell_armed = true;
        Ok(())
    }

    /// Whether the doorbell rang since the last call; if so, drains it so
    /// the next poll waits for the next ring.
    fn take_doorbell(&mut self) -> bool {
        if !std::mem::take(&mut self.state.doorbell_rang) {
            return false;
        }
        if let Some(doorbell) = &self.doorbell {
            if let Err(e) = doorbell.drain() {
                tracing::warn!(error = %e, "draining the data path's doorbell failed");
            }
        }
        true
    }

    /// Waits for an operation that uses caller memory. It must not return
    /// before the completion, so an unexpected ring failure aborts.
    fn wait_caller_memory(&mut self, done: impl Fn(&State) -> bool) {
        if let Err(e) = self.wait(done, None) {
            tracing::error!(
                error = %e,
                "io_uring failed while the kernel holds caller memory; aborting (please report)"
            );
            std::process::abort();
        }
    }

    /// Looks at the next frame without dequeuing it, waiting up to `timeout`
    /// (`None`: until one arrives). `Ok(None)` on timeout. Calling it again
    /// before [`Self::consume`] / [`Self::recv_into`] returns the same frame.
    /// An outer VLAN tag the kernel stripped is reinserted in the head and
    /// counted in the length, so frames look as they did on the wire.
    pub fn peek(&mut self, timeout: Option<Duration>) -> io::Result<Option<Peek<'_>>> {
        if self.state.batch_armed || !self.state.batch_ready.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a batched receive is running: call stop_batch before peeking",
            ));
        }
        let queued = matches!(self.state.peek, Slot::Done(res) if res >= 0);
        let info = loop {
            match self.state.peek {
                Slot::Idle => self.push_peek(None)?,
                Slot::InFlight => {
                    if !self.wait(|s| s.peek != Slot::InFlight, timeout)? {
                        return Ok(None);
                    }
                }
                Slot::Done(res) if res >= 0 => {
                    let info = self.peek_info(res.unsigned_abs() as usize);
                    if self.peek_issued < self.peek_len && self.peek_issued < info.frame_len {
                        // Peeked before a longer peek was asked for: again
                        // (a peek dequeues nothing, the frame is still next).
                        self.state.peek = Slot::Idle;
                        continue;
                    }
                    break info;
                }
                Slot::Done(res) => {
                    self.state.peek = Slot::Idle;
                    if res != -libc::ECANCELED && res != -libc::EINTR && res != -libc::EAGAIN {
                        return Err(io::Error::from_raw_os_error(-res));
                    }
                }
            }
        };
        // SAFETY: the peek completed and no operation writing the peek area
        // is in flight: only push_peek issues one, and it needs `&mut self`,
        // which the returned borrow holds. peek_info is done rearranging.
        let head = unsafe {
            self.mem
                .peek
                .slice(info.head_off, info.head_len.min(self.peek_len))
        };
        Ok(Some(Peek {
            frame_len: info.frame_len,
            head,
            queued,
        }))
    }

    /// Interprets the completed peek of `res` bytes once: finds a stripped
    /// VLAN tag in the control data and reinserts it in front of the head.
    fn peek_info(&mut self, res: usize) -> PeekInfo {
        if let Some(info) = self.peek_info {
            return info;
        }
        // SAFETY: the peek completed; the kernel wrote back the msghdr and
        // the control bytes and no longer touches them.
        let controllen = unsafe {
            (*self
                .mem
                .page
                .ptr_at(PEEK_MSG_OFF, std::mem::size_of::<libc::msghdr>())
                .cast::<libc::msghdr>())
            .msg_controllen
        };
        // SAFETY: as above.
        let control = unsafe {
            self.mem
                .page
                .slice(PEEK_CTL_OFF, (controllen as usize).min(CONTROL_LEN))
        };
        let vlan = vlan_from_control(control);
        let got = res.min(self.peek_issued);
        let info = match vlan {
            Some(tag) if got >= VLAN_AT => {
                // SAFETY: the peek completed, nothing in flight writes the
                // peek area, and no slice of it is alive (`&mut self`).
                let area = unsafe { self.mem.peek.slice_mut(0, PEEK_DATA_OFF + got) };
                area.copy_within(PEEK_DATA_OFF..PEEK_DATA_OFF + VLAN_AT, 0);
                area[VLAN_AT..VLAN_AT + 4].copy_from_slice(&tag);
                // The head stays at most the peek's length, as on the wire:
                // callers size their copies by it, and a frame longer than
                // the peek must not count as complete because the tag made
                // room for 4 more bytes.
                PeekInfo {
                    frame_len: res + 4,
                    head_off: 0,
                    head_len: (got + 4).min(self.peek_issued),
                    vlan,
                }
            }
            _ => PeekInfo {
                frame_len: res,
                head_off: PEEK_DATA_OFF,
                head_len: got,
                vlan: None,
            },
        };
        self.peek_info = Some(info);
        info
    }

    /// Writes a `msghdr` (and its iovecs) for a receive into the ring page.
    /// Returns its address.
    fn write_msghdr(
        &mut self,
        msg_off: usize,
        iov_off: usize,
        iovs: &[(*mut u8, usize)],
        control: Option<usize>,
    ) -> *mut libc::msghdr {
        let iov_ptr = self
            .mem
            .page
            .ptr_at(iov_off, iovs.len() * std::mem::size_of::<libc::iovec>())
            .cast::<libc::iovec>();
        for (k, &(base, len)) in iovs.iter().enumerate() {
            // SAFETY: in bounds (checked by ptr_at for all entries), aligned
            // (page offsets are multiples of 16), and not in the kernel's
            // hands: the operation that used it has completed.
            unsafe {
                iov_ptr.add(k).write(libc::iovec {
                    iov_base: base.cast(),
                    iov_len: len,
                })
            };
        }
        // SAFETY: msghdr is a plain C struct; all-zero is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov_ptr;
        msg.msg_iovlen = iovs.len() as _;
        if let Some(ctl_off) = control {
            msg.msg_control = self.mem.page.ptr_at(ctl_off, CONTROL_LEN).cast();
            msg.msg_controllen = CONTROL_LEN as _;
        }
        let at = self
            .mem
            .page
            .ptr_at(msg_off, std::mem::size_of::<libc::msghdr>())
            .cast::<libc::msghdr>();
        // SAFETY: as for the iovecs above.
        unsafe { at.write(msg) };
        at
    }

    /// Queues a peek, optionally behind `first`, the receive of the frame
    /// peeked before. The two are not linked; a peek that completes before
    /// `first` is discarded (see [`State::complete`]).
    fn push_peek(&mut self, first: Option<squeue::Entry>) -> io::Result<()> {
        let data = self.mem.peek.ptr_at(PEEK_DATA_OFF, self.peek_len);
        let msg = self.write_msghdr(
            PEEK_MSG_OFF,
            PEEK_IOV_OFF,
            &[(data, self.peek_len)],
            Some(PEEK_CTL_OFF),
        );
        self.peek_issued = self.peek_len;
        let peek = opcode::RecvMsg::new(self.fd(), msg)
            .flags((libc::MSG_PEEK | libc::MSG_TRUNC) as u32)
            .build()
            .user_data(UD_PEEK);
        self.state.peek = Slot::InFlight;
        self.peek_info = None;
        match first {
            None => {
                // SAFETY: the peek's msghdr, iovec, control and data buffers
                // are in `self.mem`, which stays mapped until the completion
                // is reaped (or is leaked).
                unsafe { self.push(&[peek]) }
            }
            Some(first) => {
                self.state.recv = Slot::InFlight;
                let first = first.user_data(UD_RECV);
                // SAFETY: the peek's memory as above; `first`'s memory is the
                // caller's contract (see consume / recv_into_raw).
                unsafe { self.push(&[first, peek]) }
            }
        }
    }

    fn require_peeked(&mut self) -> io::Result<PeekInfo> {
        match self.state.peek {
            Slot::Done(res) if res >= 0 => Ok(self.peek_info(res.unsigned_abs() as usize)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no frame has been peeked: call peek first",
            )),
        }
    }

    fn take_recv(&mut self) -> io::Result<u32> {
        let Slot::Done(res) = std::mem::replace(&mut self.state.recv, Slot::Idle) else {
            unreachable!("waited for the receive to complete")
        };
        cqe_result(res)
    }

    /// Dequeues the peeked frame without copying more of it (it was small,
    /// so [`Peek::head`] holds all of it, or it is being dropped), and starts
    /// peeking at the next one. Returns the dequeued frame's length.
    pub fn consume(&mut self) -> io::Result<usize> {
        let info = self.require_peeked()?;
        let discard = opcode::Recv::new(self.fd(), self.mem.page.as_ptr(), 0)
            .flags(libc::MSG_TRUNC)
            .build();
        self.push_peek(Some(discard))?;
        self.wait_caller_memory(|s| s.recv != Slot::InFlight);
        let res = self.take_recv()? as usize;
        Ok(if info.vlan.is_some() { res + 4 } else { res })
    }

    /// Receives the peeked frame into `dst`, and starts peeking at the next
    /// one. A frame larger than `dst` is cut (`copied < frame_len`).
    pub fn recv_into(&mut self, dst: &mut [u8]) -> io::Result<RecvLen> {
        // SAFETY: `dst` is valid for writes of its length and exclusively
        // ours for the duration of the call.
        unsafe { self.recv_into_raw(dst.as_mut_ptr(), dst.len()) }
    }

    /// Receives the peeked frame straight into a frame of a client's
    /// exchange region (the zero-copy path), and starts peeking at the next
    /// frame.
    pub fn recv_into_frame(&mut self, frame: &exchange::server::RawFrame) -> io::Result<RecvLen> {
        // SAFETY: a RawFrame is a range inside a region mapping that it keeps
        // alive while it lives (it outlives this call), over which no Rust
        // reference is ever formed (its documented contract); we return only
        // after the kernel is done writing it.
        unsafe { self.recv_into_raw(frame.as_ptr(), frame.len()) }
    }

    /// Receives the peeked frame into the `cap` bytes at `dst` — for example
    /// a page of a client's shared-memory region, which must not be turned
    /// into a `&mut [u8]` because the client maps it too — and starts peeking
    /// at the next frame. A stripped VLAN tag is reinserted: the frame is
    /// received around a 4-byte gap after the MAC addresses (two iovecs) and
    /// the tag written into the gap, so the payload is still written once.
    ///
    /// # Safety
    /// `dst..dst + cap` must be one allocation valid for writes until this
    /// function returns (it does not return before the kernel is done with
    /// it). No Rust reference to that memory may be alive during the call.
    /// Other processes writing the same memory concurrently cannot make the
    /// server misbehave (the kernel just copies bytes into it) but will
    /// corrupt the frame for them.
    pub unsafe fn recv_into_raw(&mut self, dst: *mut u8, cap: usize) -> io::Result<RecvLen> {
        let info = self.require_peeked()?;
        let cap = cap.min(u32::MAX as usize);
        let recv = match info.vlan {
            None => opcode::Recv::new(self.fd(), dst, cap as u32)
                .flags(libc::MSG_TRUNC)
                .build(),
            Some(_) if cap < VLAN_AT + 4 => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a destination for a VLAN-tagged frame needs at least 16 bytes",
                ))
            }
            Some(_) => {
                // SAFETY: VLAN_AT + 4 <= cap, so both pointers stay inside
                // the caller's allocation.
                let (after_macs, after_tag) = unsafe { (dst, dst.add(VLAN_AT + 4)) };
                let msg = self.write_msghdr(
                    RECV_MSG_OFF,
                    RECV_IOV_OFF,
                    &[(after_macs, VLAN_AT), (after_tag, cap - VLAN_AT - 4)],
                    None,
                );
                opcode::RecvMsg::new(self.fd(), msg)
                    .flags(libc::MSG_TRUNC as u32)
                    .build()
            }
        };
        self.push_peek(Some(recv))?;
        self.wait_caller_memory(|s| s.recv != Slot::InFlight);
        let res = self.take_recv()? as usize;
        match info.vlan {
            None => Ok(RecvLen {
                copied: res.min(cap),
                frame_len: res,
            }),
            Some(tag) => {
                // SAFETY: dst + 12 .. dst + 16 is inside the caller's
                // allocation (cap >= 16) and the kernel is done with it.
                unsafe { std::ptr::copy_nonoverlapping(tag.as_ptr(), dst.add(VLAN_AT), 4) };
                Ok(RecvLen {
                    copied: (res + 4).min(cap),
                    frame_len: res + 4,
                })
            }
        }
    }

    /// Cancels an outstanding peek (it dequeues nothing, so nothing is lost)
    /// and waits for it.
    fn cancel_peek(&mut self) -> io::Result<()> {
        if self.state.peek == Slot::InFlight {
            let cancel = opcode::AsyncCancel::new(UD_PEEK)
                .build()
                .user_data(UD_CANCEL);
            // SAFETY: a cancel carries no pointers.
            unsafe { self.push(&[cancel])? };
            self.wait(|s| s.peek != Slot::InFlight, None)?;
        }
        self.state.peek = Slot::Idle;
        Ok(())
    }

    fn arm_batch(&mut self) -> io::Result<()> {
        if self.state.batch_armed {
            return Ok(());
        }
        let msghdr = self
            .mem
            .page
            .ptr_at(BATCH_MSG_OFF, std::mem::size_of::<libc::msghdr>())
            .cast::<libc::msghdr>();
        let sqe = opcode::RecvMsgMulti::new(self.fd(), msghdr, BGID)
            .flags(libc::MSG_TRUNC as u32)
            .build()
            .user_data(UD_BATCH);
        // SAFETY: the msghdr and the provided buffers live in `self.mem`,
        // kept mapped until the final completion is reaped (or leaked).
        unsafe { self.push(&[sqe])? };
        self.state.batch_armed = true;
        Ok(())
    }

    /// Receives up to `max` frames, waiting up to `timeout` for the first
    /// (`None`: until one arrives), and hands each to `f` while its buffer is
    /// borrowed. Returns how many were handed over (0 on timeout).
    pub fn recv_batch(
        &mut self,
        max: usize,
        timeout: Option<Duration>,
        mut f: impl FnMut(BatchFrame<'_>),
    ) -> io::Result<usize> {
        if self.mem.bufring.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "this ring was built without batched receive (batch_buffers = 0)",
            ));
        }
        if self.state.peek != Slot::Idle {
            self.cancel_peek()?;
        }
        if self.state.batch_ready.is_empty() {
            self.arm_batch()?;
            self.wait(
                |s| !s.batch_ready.is_empty() || s.batch_error.is_some(),
                timeout,
            )?;
        } else {
            self.reap();
        }
        let n = self.deliver(max, &mut f);
        if let Some(res) = self.state.batch_error.take() {
            return Err(io::Error::from_raw_os_error(-res));
        }
        // The multishot stops when it runs out of buffers; they are back now.
        if !self.state.batch_armed {
            self.arm_batch()?;
            self.ring.submit()?;
        }
        Ok(n)
    }

    /// Waits up to `timeout` (`None`: no limit) until [`Self::recv_batch`]
    /// has frames to hand over, starting the batched receive if needed.
    pub fn wait_batch(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        if self.mem.bufring.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "this ring was built without batched receive (batch_buffers = 0)",
            ));
        }
        if self.state.peek != Slot::Idle {
            self.cancel_peek()?;
        }
        if !self.state.batch_ready.is_empty() {
            return Ok(true);
        }
        self.arm_batch()?;
        self.wait(
            |s| !s.batch_ready.is_empty() || s.batch_error.is_some(),
            timeout,
        )
    }

    /// Hands up to `max` reaped frames to `f` and gives their buffers back,
    /// reinserting stripped VLAN tags.
    fn deliver(&mut self, max: usize, f: &mut impl FnMut(BatchFrame<'_>)) -> usize {
        let Memory { page, bufring, .. } = &mut *self.mem;
        let Some(bufring) = bufring.as_mut() else {
            return 0;
        };
        // SAFETY: the msghdr template is written once in `new` and only read
        // (by us and by the kernel) afterwards.
        let msghdr = unsafe {
            &*page
                .ptr_at(BATCH_MSG_OFF, std::mem::size_of::<libc::msghdr>())
                .cast::<libc::msghdr>()
        };
        const PAYLOAD_OFF: usize = RECVMSG_OUT_LEN + CONTROL_LEN;
        let mut n = 0;
        while n < max {
            let Some((bid, len)) = self.state.batch_ready.pop_front() else {
                break;
            };
            // SAFETY: the completion handed `bid` back and we push it again
            // only below, after the last use of the buffer.
            let buf = unsafe { bufring.filled(bid, len) };
            let parsed = types::RecvMsgOut::parse(buf, msghdr).map(|out| {
                (
                    vlan_from_control(out.control_data()),
                    out.payload_data().len(),
                    out.incoming_payload_len() as usize,
                )
            });
            match parsed {
                Ok((vlan, kept, frame_len)) => {
                    // SAFETY: as above; `buf` is no longer used.
                    let buf = unsafe { bufring.filled_mut(bid, len) };
                    let frame = match vlan {
                        Some(tag) if kept >= VLAN_AT => {
                            // Move the MAC addresses 4 bytes back, into the
                            // (already parsed) control area, and put the
                            // tag between them and the EtherType.
                            let start = PAYLOAD_OFF - 4;
                            buf.copy_within(PAYLOAD_OFF..PAYLOAD_OFF + VLAN_AT, start);
                            buf[start + VLAN_AT..PAYLOAD_OFF + VLAN_AT].copy_from_slice(&tag);
                            BatchFrame {
                                data: &buf[start..PAYLOAD_OFF + kept],
                                frame_len: frame_len + 4,
                            }
                        }
                        _ => BatchFrame {
                            data: &buf[PAYLOAD_OFF..PAYLOAD_OFF + kept],
                            frame_len,
                        },
                    };
                    f(frame);
                    n += 1;
                }
                Err(()) => tracing::error!(
                    bid,
                    len,
                    "malformed multishot recvmsg buffer (please report)"
                ),
            }
            bufring.push(bid);
        }
        bufring.publish();
        n
    }

    /// Stops the batched receive and hands every frame the kernel had already
    /// placed to `f`, so that [`Self::peek`] continues in order. Returns how
    /// many frames were handed over.
    pub fn stop_batch(&mut self, mut f: impl FnMut(BatchFrame<'_>)) -> io::Result<usize> {
        if self.state.batch_armed {
            let cancel = opcode::AsyncCancel::new(UD_BATCH)
                .build()
                .user_data(UD_CANCEL);
            // SAFETY: a cancel carries no pointers.
            unsafe { self.push(&[cancel])? };
            self.wait(|s| !s.batch_armed, None)?;
        }
        let n = self.deliver(usize::MAX, &mut f);
        self.state.batch_error = None;
        Ok(n)
    }

    /// Sends one frame out of the interface; returns once the kernel has it.
    pub fn send(&mut self, frame: &[u8]) -> io::Result<usize> {
        let mut out = Ok(0);
        // SAFETY: `frame` is valid for reads for the whole call.
        unsafe { self.send_batch_raw(&[(frame.as_ptr(), frame.len())], |_, r| out = r) };
        out
    }

    /// Sends `frames` with one submission per chunk of up to 64 and reports
    /// each result to `on_done(index, result)`; returns once the kernel has
    /// all of them.
    pub fn send_batch(
        &mut self,
        frames: &[&[u8]],
        mut on_done: impl FnMut(usize, io::Result<usize>),
    ) {
        const CHUNK: usize = 64;
        let mut raw = [(std::ptr::null::<u8>(), 0usize); CHUNK];
        for (c, chunk) in frames.chunks(CHUNK).enumerate() {
            for (dst, f) in raw.iter_mut().zip(chunk) {
                *dst = (f.as_ptr(), f.len());
            }
            // SAFETY: each slice is valid for reads for the whole call.
            unsafe {
                self.send_batch_raw(&raw[..chunk.len()], |i, r| on_done(c * CHUNK + i, r));
            }
        }
    }

    /// [`Self::send_batch`] on raw ranges, for frames in a client's
    /// shared-memory region.
    ///
    /// # Safety
    /// Each `(ptr, len)` must be valid for reads of `len` bytes until this
    /// function returns. Another process may write the memory meanwhile; the
    /// kernel then sends whatever bytes it reads, which is the writer's loss.
    pub unsafe fn send_batch_raw(
        &mut self,
        frames: &[(*const u8, usize)],
        mut on_done: impl FnMut(usize, io::Result<usize>),
    ) {
        let sq_cap = self.ring.params().sq_entries() as usize;
        for (chunk_no, chunk) in frames.chunks(sq_cap.max(1)).enumerate() {
            self.state.send_results.clear();
            self.state
                .send_results
                .resize(chunk.len(), -libc::ECANCELED);
            let mut pushed = 0;
            for (i, &(ptr, len)) in chunk.iter().enumerate() {
                let Ok(len32) = u32::try_from(len) else {
                    self.state.send_results[i] = -libc::EMSGSIZE;
                    continue;
                };
                let sqe = opcode::Send::new(self.fd(), ptr, len32)
                    .build()
                    .user_data(UD_SEND | i as u64);
                // SAFETY: the frame is valid until we return (contract), and
                // we wait below for every send's completion.
                match unsafe { self.push(&[sqe]) } {
                    Ok(()) => pushed += 1,
                    Err(e) => {
                        self.state.send_results[i] = -e.raw_os_error().unwrap_or(libc::EIO);
                    }
                }
            }
            self.state.sends_pending += pushed;
            self.wait_caller_memory(|s| s.sends_pending == 0);
            for (i, &res) in self.state.send_results.iter().enumerate() {
                on_done(chunk_no * sq_cap + i, cqe_result(res).map(|n| n as usize));
            }
        }
    }

    /// Sends frames whose head is server memory and whose rest lies in a
    /// client's region ([`crate::backend::GatherFrame`]: the zero-copy
    /// transmit), like [`Self::send_batch`].
    pub fn send_batch_gathered(
        &mut self,
        frames: &[crate::backend::GatherFrame<'_>],
        mut on_done: impl FnMut(usize, io::Result<usize>),
    ) {
        const CHUNK: usize = 64;
        let none = (std::ptr::null::<u8>(), 0usize);
        let mut raw = [[none; GATHER_PIECES]; CHUNK];
        for (c, chunk) in frames.chunks(CHUNK).enumerate() {
            for (dst, f) in raw.iter_mut().zip(chunk) {
                dst[0] = (f.head.as_ptr(), f.head.len());
                for (d, r) in dst[1..].iter_mut().zip(f.rest) {
                    *d = r
                        .as_ref()
                        .map_or(none, |r| (r.as_ptr().cast_const(), r.len()));
                }
            }
            // SAFETY: each head is a slice borrowed for the whole call; each
            // `RawFrame` is borrowed for the whole call and keeps its region
            // mapped, so every range stays valid for reads until we return.
            unsafe {
                self.send_batch_gather(&raw[..chunk.len()], |i, r| on_done(c * CHUNK + i, r));
            }
        }
    }

    /// Sends frames each gathered from up to [`GATHER_PIECES`] raw ranges
    /// (one `sendmsg` with an iovec array per frame: e.g. a validated header
    /// copy, then the rest of the frame straight from a client's page), one
    /// submission per chunk of up to 64 frames; reports each result to
    /// `on_done(index, result)` and returns once the kernel has all of them.
    /// Empty ranges are left out.
    ///
    /// # Safety
    /// Each `(ptr, len)` must be valid for reads of `len` bytes until this
    /// function returns. Another process may write the memory meanwhile; the
    /// kernel then sends whatever bytes it reads, which is the writer's loss.
    pub unsafe fn send_batch_gather(
        &mut self,
        frames: &[[(*const u8, usize); GATHER_PIECES]],
        mut on_done: impl FnMut(usize, io::Result<usize>),
    ) {
        const CHUNK: usize = 64;
        let chunk_len = (self.ring.params().sq_entries() as usize).clamp(1, CHUNK);
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        // The iovecs and message headers the kernel reads live in this stack
        // frame, which outlives every send: we wait for all completions of a
        // chunk before reusing them or returning.
        let mut iovs = [[empty; GATHER_PIECES]; CHUNK];
        // SAFETY: `msghdr` is plain old data (pointers and integers); all
        // zeroes is a valid empty message (no name, no control data).
        let mut msgs: [libc::msghdr; CHUNK] = unsafe { std::mem::zeroed() };
        for (chunk_no, chunk) in frames.chunks(chunk_len).enumerate() {
            self.state.send_results.clear();
            self.state
                .send_results
                .resize(chunk.len(), -libc::ECANCELED);
            let mut pushed = 0;
            for (i, pieces) in chunk.iter().enumerate() {
                let mut n = 0;
                for &(ptr, len) in pieces.iter().filter(|(_, len)| *len > 0) {
                    iovs[i][n] = libc::iovec {
                        iov_base: ptr.cast_mut().cast(),
                        iov_len: len,
                    };
                    n += 1;
                }
                msgs[i].msg_iov = iovs[i].as_mut_ptr();
                msgs[i].msg_iovlen = n as _;
                let sqe = opcode::SendMsg::new(self.fd(), &msgs[i])
                    .build()
                    .user_data(UD_SEND | i as u64);
                // SAFETY: the message header and its iovecs live until we
                // return, the ranges are valid until then (contract), and we
                // wait below for every send's completion.
                match unsafe { self.push(&[sqe]) } {
                    Ok(()) => pushed += 1,
                    Err(e) => {
                        self.state.send_results[i] = -e.raw_os_error().unwrap_or(libc::EIO);
                    }
                }
            }
            self.state.sends_pending += pushed;
            self.wait_caller_memory(|s| s.sends_pending == 0);
            for (i, &res) in self.state.send_results.iter().enumerate() {
                on_done(
                    chunk_no * chunk_len + i,
                    cqe_result(res).map(|n| n as usize),
                );
            }
        }
    }

    /// Cancels everything outstanding and waits (bounded) for it.
    fn quiesce(&mut self) -> bool {
        // Not re-armed by the waits below; kept open until we return (the
        // kernel holds its own reference to a polled file anyway).
        let _doorbell = self.doorbell.take();
        let mut cancels = Vec::new();
        if self.state.peek == Slot::InFlight {
            cancels.push(
                opcode::AsyncCancel::new(UD_PEEK)
                    .build()
                    .user_data(UD_CANCEL),
            );
        }
        if self.state.recv == Slot::InFlight {
            cancels.push(
                opcode::AsyncCancel::new(UD_RECV)
                    .build()
                    .user_data(UD_CANCEL),
            );
        }
        if self.state.batch_armed {
            cancels.push(
                opcode::AsyncCancel::new(UD_BATCH)
                    .build()
                    .user_data(UD_CANCEL),
            );
        }
        if self.state.doorbell_armed {
            cancels.push(
                opcode::AsyncCancel::new(UD_DOORBELL)
                    .build()
                    .user_data(UD_CANCEL),
            );
        }
        // SAFETY: cancels carry no pointers.
        if !cancels.is_empty() && unsafe { self.push(&cancels) }.is_err() {
            return false;
        }
        for _ in 0..50 {
            match self.wait(|s| s.in_flight == 0, Some(Duration::from_millis(20))) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

impl AsFd for PacketRing {
    /// The ring's descriptor: readable when completions are waiting (for
    /// epoll-driven loops).
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the ring's fd is open for as long as `self.ring` lives,
        // which the returned borrow of `self` bounds.
        unsafe { BorrowedFd::borrow_raw(self.ring.as_raw_fd()) }
    }
}

impl Drop for PacketRing {
    fn drop(&mut self) {
        if self.state.in_flight > 0 && !self.quiesce() {
            tracing::error!(
                in_flight = self.state.in_flight,
                "io_uring operations still outstanding at drop; leaking their buffers"
            );
            return; // `mem` stays ManuallyDrop: leaked, never unmapped.
        }
        if self.mem.bufring.is_some() {
            let _ = self.ring.submitter().unregister_buf_ring(BGID);
        }
        // Give the socket back now: the ring's own teardown after its close
        // runs later, in a kernel worker, and until then the socket would
        // stay open (its promiscuous membership and its share of the
        // interface's traffic with it) although `sock` is closed.
        let _ = self.ring.submitter().unregister_files();
        // SAFETY: nothing in flight uses `mem` any more (quiesced above, and
        // the buffer group is unregistered), and it is not used after this.
        unsafe { ManuallyDrop::drop(&mut self.mem) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_uring_buf_matches_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<IoUringBuf>(), 16);
        assert_eq!(std::mem::offset_of!(IoUringBuf, addr), 0);
        assert_eq!(std::mem::offset_of!(IoUringBuf, len), 8);
        assert_eq!(std::mem::offset_of!(IoUringBuf, bid), 12);
        assert_eq!(std::mem::offset_of!(IoUringBuf, resv), 14);
        assert_eq!(
            std::mem::size_of::<IoUringBuf>(),
            std::mem::size_of::<io_uring::types::BufRingEntry>()
        );
    }

    fn auxdata_cmsg(status: u32, tci: u16, tpid: u16) -> Vec<u8> {
        let mut c = Vec::new();
        c.extend_from_slice(&(16usize + 20).to_ne_bytes());
        c.extend_from_slice(&libc::SOL_PACKET.to_ne_bytes());
        c.extend_from_slice(&libc::PACKET_AUXDATA.to_ne_bytes());
        c.extend_from_slice(&status.to_ne_bytes());
        c.extend_from_slice(&[0; 12]); // len, snaplen, mac, net
        c.extend_from_slice(&tci.to_ne_bytes());
        c.extend_from_slice(&tpid.to_ne_bytes());
        c.resize(40, 0);
        c
    }

    #[test]
    fn vlan_tags_are_read_from_auxdata() {
        let valid = libc::TP_STATUS_VLAN_VALID | libc::TP_STATUS_VLAN_TPID_VALID;
        assert_eq!(
            vlan_from_control(&auxdata_cmsg(valid, 0x2064, 0x88a8)),
            Some([0x88, 0xa8, 0x20, 0x64])
        );
        // No TPID reported: 802.1Q.
        assert_eq!(
            vlan_from_control(&auxdata_cmsg(libc::TP_STATUS_VLAN_VALID, 5, 0)),
            Some([0x81, 0x00, 0, 5])
        );
        assert_eq!(vlan_from_control(&auxdata_cmsg(0, 5, 0x8100)), None);
        assert_eq!(vlan_from_control(&[]), None);
        // A header claiming more bytes than there are is ignored.
        let mut bad = auxdata_cmsg(valid, 1, 0x8100);
        bad[..8].copy_from_slice(&1000usize.to_ne_bytes());
        assert_eq!(vlan_from_control(&bad), None);
    }

    /// A receive and the peek of the next frame, submitted together.
    fn state_with_pair_in_flight() -> State {
        let mut state = State::new(&UringConfig::default());
        state.recv = Slot::InFlight;
        state.peek = Slot::InFlight;
        state.in_flight = 2;
        state
    }

    #[test]
    fn a_peek_that_overtakes_its_receive_is_discarded() {
        let mut state = state_with_pair_in_flight();
        // The peek completes first: it may have seen the frame the receive
        // is about to take, so it must not be used.
        state.complete(UD_PEEK, 1514, 0);
        assert_eq!(state.peek, Slot::Idle, "reissued by the next peek");
        assert_eq!(state.peeks_overtaken, 1);
        state.complete(UD_RECV, 1514, 0);
        assert_eq!(state.recv, Slot::Done(1514));
        assert_eq!(state.in_flight, 0);
    }

    #[test]
    fn a_peek_after_its_receive_is_kept() {
        let mut state = state_with_pair_in_flight();
        state.complete(UD_RECV, 1514, 0);
        state.complete(UD_PEEK, 60, 0);
        assert_eq!(state.peek, Slot::Done(60));
        assert_eq!(state.recv, Slot::Done(1514));
        assert_eq!(state.peeks_overtaken, 0);
        assert_eq!(state.in_flight, 0);
    }

    #[test]
    fn buf_ring_rejects_bad_sizes() {
        assert!(BufRing::new(3, 2048).is_err());
        assert!(BufRing::new(4, 8).is_err());
        let r = BufRing::new(4, 2048).unwrap();
        assert_eq!(r.tail, 4);
    }
}
