//! The byte layout of an exchange region: pure computations, no I/O, no unsafe.
//!
//! Every integer in the region is **little-endian** and naturally aligned.
//! The client chooses a [`Geometry`]; [`Layout::new`] checks it against the
//! server's [`Limits`] and derives every offset. The client writes the result
//! into the header page ([`RegionHeader`]); the server copies the header out
//! once, recomputes the layout from the geometry with its own limits, and
//! refuses the region unless every offset and the size agree. After attach the
//! server never reads the header again.
//!
//! ```text
//! offset 0                 header page (4096 B): RegionHeader (128 B), rest zero
//! rx_offset          = 4096  rx ring:         128 B control block + rx_entries × 32 B (RxDesc)
//! fill_offset        (64-aligned) fill ring:  128 B control block + fill_entries × 4 B (u32 frame index)
//! tx_offset          (64-aligned) tx ring:    128 B control block + tx_entries × 32 B (TxDesc)
//! completion_offset  (64-aligned) completion: 128 B control block + completion_entries × 16 B (TxCompletion)
//! small_offset       (64-aligned) small slots: small_slot_count × small_slot_size bytes
//! frame_offset       (4096-aligned) frames:   frame_count × frame_size bytes
//! region_size        = frame_offset + frame_count × frame_size, rounded up to 4096
//! ```
//!
//! A ring's control block is two cache lines:
//!
//! ```text
//! +0   u32 producer index      (written by the producer only)
//! +4   u32 need_wakeup flag    (set to 1 by a consumer about to sleep; cleared by the producer when it notifies)
//! +8   .. +64 zero padding
//! +64  u32 consumer index      (written by the consumer only)
//! +68  .. +128 zero padding
//! +128 entries[entries]
//! ```
//!
//! Indices are free-running `u32` counters that wrap at 2³²; entry `i` lives at
//! `entries[i & (entries - 1)]`. `producer - consumer` (wrapping) is the number
//! of filled entries and is never more than `entries`. All indices and flags
//! start at zero.

use thiserror::Error;

/// Size of a page as far as the layout is concerned (also the header size).
pub const PAGE_SIZE: usize = 4096;
/// Cache-line size the control blocks are padded to.
pub const CACHE_LINE: usize = 64;
/// Size of the header page at offset 0.
pub const HEADER_SIZE: usize = PAGE_SIZE;
/// The 8 bytes at offset 0 of every region.
pub const MAGIC: [u8; 8] = *b"NSXCHNG\0";
/// Layout version this crate writes and accepts.
pub const VERSION: u32 = 1;
/// Size of a ring control block (producer line + consumer line).
pub const RING_CTRL_SIZE: usize = 2 * CACHE_LINE;
/// Offset of the producer index inside a control block.
pub const RING_PRODUCER_OFFSET: usize = 0;
/// Offset of the need-wakeup flag inside a control block (producer's line).
pub const RING_NEED_WAKEUP_OFFSET: usize = 4;
/// Offset of the consumer index inside a control block (its own line).
pub const RING_CONSUMER_OFFSET: usize = CACHE_LINE;
/// Frame index meaning "no frame" (second segment absent in a completion).
pub const NO_FRAME: u32 = u32::MAX;

/// [`RxDesc::flags`]: `index` is a small-slot index, not a frame index.
pub const RX_SMALL: u16 = 1 << 0;
/// [`RxDesc::flags`]: the packet was cut to `len` bytes (`len < wire_len`).
pub const RX_TRUNCATED: u16 = 1 << 1;
/// [`RxDesc::flags`]: the payload was written straight into the frame (no copy).
pub const RX_ZERO_COPY: u16 = 1 << 2;
/// All defined rx flags.
pub const RX_FLAGS_ALL: u16 = RX_SMALL | RX_TRUNCATED | RX_ZERO_COPY;

/// [`TxDesc::flags`]: the second segment (`frame2`, `offset2`, `len2`) is present.
pub const TX_SEGMENT2: u32 = 1 << 0;
/// All defined tx flags.
pub const TX_FLAGS_ALL: u32 = TX_SEGMENT2;

/// [`TxCompletion::status`]: the frame was sent.
pub const TX_STATUS_SENT: u32 = 0;
/// [`TxCompletion::status`]: the server refused to send it (policy: spoofed source, too long).
pub const TX_STATUS_REFUSED: u32 = 1;
/// [`TxCompletion::status`]: the backend failed to send it.
pub const TX_STATUS_FAILED: u32 = 2;
/// [`TxCompletion::status`]: the low 16 bits are the `TX_STATUS_*` code.
pub const TX_STATUS_MASK: u32 = 0xffff;
/// [`TxCompletion::status`]: with [`TX_STATUS_REFUSED`], bits 16..32 carry
/// the server's reason code (0: none given; netserver: 1 + the index of its
/// refusal reason, see its `TxRefusal`).
pub const TX_REASON_SHIFT: u32 = 16;

/// A completion status word: `code` (`TX_STATUS_*`) and a refusal `reason`
/// (0: none).
pub const fn tx_status(code: u32, reason: u16) -> u32 {
    (code & TX_STATUS_MASK) | ((reason as u32) << TX_REASON_SHIFT)
}

/// Splits a completion status word into `(code, reason)`.
pub const fn split_tx_status(status: u32) -> (u32, u16) {
    (status & TX_STATUS_MASK, (status >> TX_REASON_SHIFT) as u16)
}

/// The header at offset 0 of the region, written by the client.
///
/// | offset | type | field |
/// |---|---|---|
/// | 0 | `[u8; 8]` | `magic` = `"NSXCHNG\0"` |
/// | 8 | u32 | `version` = 1 |
/// | 12 | u32 | `header_size` = 4096 |
/// | 16 | u64 | `region_size` (bytes; equals the memfd size) |
/// | 24 | u32 | `rx_entries` |
/// | 28 | u32 | `fill_entries` |
/// | 32 | u32 | `tx_entries` |
/// | 36 | u32 | `completion_entries` |
/// | 40 | u32 | `small_slot_count` |
/// | 44 | u32 | `small_slot_size` |
/// | 48 | u32 | `frame_count` |
/// | 52 | u32 | `frame_size` |
/// | 56 | u64 | `rx_offset` |
/// | 64 | u64 | `fill_offset` |
/// | 72 | u64 | `tx_offset` |
/// | 80 | u64 | `completion_offset` |
/// | 88 | u64 | `small_offset` |
/// | 96 | u64 | `frame_offset` |
/// | 104 | `[u64; 3]` | reserved, zero |
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegionHeader {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`VERSION`].
    pub version: u32,
    /// [`HEADER_SIZE`].
    pub header_size: u32,
    /// Total size of the region in bytes.
    pub region_size: u64,
    /// Entries in the rx ring.
    pub rx_entries: u32,
    /// Entries in the fill ring.
    pub fill_entries: u32,
    /// Entries in the tx ring.
    pub tx_entries: u32,
    /// Entries in the completion ring.
    pub completion_entries: u32,
    /// Number of small slots.
    pub small_slot_count: u32,
    /// Bytes per small slot.
    pub small_slot_size: u32,
    /// Number of frames.
    pub frame_count: u32,
    /// Bytes per frame.
    pub frame_size: u32,
    /// Offset of the rx ring control block.
    pub rx_offset: u64,
    /// Offset of the fill ring control block.
    pub fill_offset: u64,
    /// Offset of the tx ring control block.
    pub tx_offset: u64,
    /// Offset of the completion ring control block.
    pub completion_offset: u64,
    /// Offset of small slot 0.
    pub small_offset: u64,
    /// Offset of frame 0.
    pub frame_offset: u64,
    /// Reserved, zero.
    pub reserved: [u64; 3],
}

/// Number of `u32` words in a [`RegionHeader`].
pub const HEADER_WORDS: usize = core::mem::size_of::<RegionHeader>() / 4;

impl RegionHeader {
    /// The header as little-endian `u32` words, in memory order.
    pub fn to_words(&self) -> [u32; HEADER_WORDS] {
        let mut bytes = [0u8; HEADER_WORDS * 4];
        let mut w = Writer(&mut bytes, 0);
        w.bytes(&self.magic);
        w.u32(self.version);
        w.u32(self.header_size);
        w.u64(self.region_size);
        for v in [
            self.rx_entries,
            self.fill_entries,
            self.tx_entries,
            self.completion_entries,
            self.small_slot_count,
            self.small_slot_size,
            self.frame_count,
            self.frame_size,
        ] {
            w.u32(v);
        }
        for v in [
            self.rx_offset,
            self.fill_offset,
            self.tx_offset,
            self.completion_offset,
            self.small_offset,
            self.frame_offset,
        ] {
            w.u64(v);
        }
        for v in self.reserved {
            w.u64(v);
        }
        let mut words = [0u32; HEADER_WORDS];
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(4)) {
            *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        words
    }

    /// Parses a header from little-endian `u32` words (a copy the caller owns).
    pub fn from_words(words: &[u32; HEADER_WORDS]) -> Self {
        let mut bytes = [0u8; HEADER_WORDS * 4];
        for (chunk, word) in bytes.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        let mut r = Reader(&bytes, 0);
        let mut h = RegionHeader {
            magic: r.bytes8(),
            version: r.u32(),
            header_size: r.u32(),
            region_size: r.u64(),
            ..Default::default()
        };
        h.rx_entries = r.u32();
        h.fill_entries = r.u32();
        h.tx_entries = r.u32();
        h.completion_entries = r.u32();
        h.small_slot_count = r.u32();
        h.small_slot_size = r.u32();
        h.frame_count = r.u32();
        h.frame_size = r.u32();
        h.rx_offset = r.u64();
        h.fill_offset = r.u64();
        h.tx_offset = r.u64();
        h.completion_offset = r.u64();
        h.small_offset = r.u64();
        h.frame_offset = r.u64();
        h.reserved = [r.u64(), r.u64(), r.u64()];
        h
    }

    /// The geometry fields of the header.
    pub fn geometry(&self) -> Geometry {
        Geometry {
            rx_entries: self.rx_entries,
            fill_entries: self.fill_entries,
            tx_entries: self.tx_entries,
            completion_entries: self.completion_entries,
            small_slot_count: self.small_slot_count,
            small_slot_size: self.small_slot_size,
            frame_count: self.frame_count,
            frame_size: self.frame_size,
        }
    }
}

struct Writer<'a>(&'a mut [u8], usize);
impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) {
        self.0[self.1..self.1 + b.len()].copy_from_slice(b);
        self.1 += b.len();
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

struct Reader<'a>(&'a [u8], usize);
impl Reader<'_> {
    fn bytes8(&mut self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out.copy_from_slice(&self.0[self.1..self.1 + 8]);
        self.1 += 8;
        out
    }
    fn u32(&mut self) -> u32 {
        let mut out = [0u8; 4];
        out.copy_from_slice(&self.0[self.1..self.1 + 4]);
        self.1 += 4;
        u32::from_le_bytes(out)
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes8())
    }
}

/// An rx descriptor (server → client), 32 bytes.
///
/// | offset | type | field |
/// |---|---|---|
/// | 0 | u64 | `tag` of the filter that claimed the packet |
/// | 8 | u64 | `timestamp_ns` (receive time, `CLOCK_REALTIME` ns; 0 if unknown) |
/// | 16 | u32 | `index`: frame index, or small-slot index if `flags & RX_SMALL` |
/// | 20 | u32 | `len`: bytes stored |
/// | 24 | u32 | `wire_len`: bytes on the wire (≥ `len`) |
/// | 28 | u16 | `offset`: where the data starts inside the frame or slot |
/// | 30 | u16 | `flags`: [`RX_SMALL`], [`RX_TRUNCATED`], [`RX_ZERO_COPY`] |
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RxDesc {
    /// Tag of the filter that claimed the packet.
    pub tag: u64,
    /// Receive time in nanoseconds (`CLOCK_REALTIME`), 0 if unknown.
    pub timestamp_ns: u64,
    /// Frame index, or small-slot index when `flags & RX_SMALL`.
    pub index: u32,
    /// Bytes stored.
    pub len: u32,
    /// Bytes the packet had on the wire.
    pub wire_len: u32,
    /// Start of the data inside the frame or slot.
    pub offset: u16,
    /// `RX_*` flags.
    pub flags: u16,
}

/// A tx descriptor (client → server), 32 bytes.
///
/// | offset | type | field |
/// |---|---|---|
/// | 0 | u32 | `frame`: first segment's frame index |
/// | 4 | u32 | `offset` of the first segment inside its frame |
/// | 8 | u32 | `len` of the first segment (≥ 1) |
/// | 12 | u32 | `flags`: [`TX_SEGMENT2`] |
/// | 16 | u32 | `frame2`: second segment's frame (if `TX_SEGMENT2`) |
/// | 20 | u32 | `offset2` |
/// | 24 | u32 | `len2` (≥ 1 if `TX_SEGMENT2`) |
/// | 28 | u32 | reserved, zero |
///
/// The packet sent is segment 1 followed by segment 2 (e.g. headers in one
/// frame, payload in another). Each segment lies inside its frame; the two
/// frames differ.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxDesc {
    /// First segment's frame.
    pub frame: u32,
    /// First segment's offset inside the frame.
    pub offset: u32,
    /// First segment's length.
    pub len: u32,
    /// `TX_*` flags.
    pub flags: u32,
    /// Second segment's frame (when `flags & TX_SEGMENT2`).
    pub frame2: u32,
    /// Second segment's offset.
    pub offset2: u32,
    /// Second segment's length.
    pub len2: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// A completion (server → client), 16 bytes: one per accepted [`TxDesc`].
///
/// | offset | type | field |
/// |---|---|---|
/// | 0 | u32 | `frame` given back |
/// | 4 | u32 | `frame2` given back, or [`NO_FRAME`] |
/// | 8 | u32 | `status`: [`TX_STATUS_SENT`], [`TX_STATUS_REFUSED`], [`TX_STATUS_FAILED`] in bits 0..16; a refusal reason in bits 16..32 ([`tx_status`]) |
/// | 12 | u32 | `len`: bytes sent |
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxCompletion {
    /// First frame given back.
    pub frame: u32,
    /// Second frame given back, or [`NO_FRAME`].
    pub frame2: u32,
    /// `TX_STATUS_*`, and a refusal reason ([`tx_status`]).
    pub status: u32,
    /// Bytes sent.
    pub len: u32,
}

/// Which of the four rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RingId {
    /// Server → client packet descriptors.
    Rx,
    /// Client → server free frames.
    Fill,
    /// Client → server frames to send.
    Tx,
    /// Server → client sent frames.
    Completion,
}

impl RingId {
    /// Lower-case name, for logs and counters.
    pub const fn name(self) -> &'static str {
        match self {
            RingId::Rx => "rx",
            RingId::Fill => "fill",
            RingId::Tx => "tx",
            RingId::Completion => "completion",
        }
    }

    /// Size in bytes of one entry of this ring.
    pub const fn entry_size(self) -> usize {
        match self {
            RingId::Rx => core::mem::size_of::<RxDesc>(),
            RingId::Fill => 4,
            RingId::Tx => core::mem::size_of::<TxDesc>(),
            RingId::Completion => core::mem::size_of::<TxCompletion>(),
        }
    }
}

impl core::fmt::Display for RingId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The sizes a client chooses for its region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Entries in the rx ring (power of two).
    pub rx_entries: u32,
    /// Entries in the fill ring (power of two).
    pub fill_entries: u32,
    /// Entries in the tx ring (power of two).
    pub tx_entries: u32,
    /// Entries in the completion ring (power of two, ≥ `tx_entries`).
    pub completion_entries: u32,
    /// Small slots (power of two, ≥ `rx_entries`). The small packet carried by
    /// rx entry number `i` is always in slot `i & (small_slot_count - 1)`.
    pub small_slot_count: u32,
    /// Bytes per small slot (multiple of 64, 64..=limit).
    pub small_slot_size: u32,
    /// Frames (≥ 1).
    pub frame_count: u32,
    /// Bytes per frame (power of two, 2048..=limit).
    pub frame_size: u32,
}

impl Default for Geometry {
    /// 256-entry rings, 256 small slots of 128 B, 512 frames of 4 KiB (≈ 2.1 MiB).
    fn default() -> Self {
        Geometry {
            rx_entries: 256,
            fill_entries: 256,
            tx_entries: 256,
            completion_entries: 256,
            small_slot_count: 256,
            small_slot_size: 128,
            frame_count: 512,
            frame_size: 4096,
        }
    }
}

/// The server's limits on what a client may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest region in bytes.
    pub max_region_bytes: u64,
    /// Largest number of entries in any ring.
    pub max_ring_entries: u32,
    /// Largest number of small slots.
    pub max_small_slots: u32,
    /// Largest small slot in bytes.
    pub max_small_slot_size: u32,
    /// Largest number of frames.
    pub max_frames: u32,
    /// Largest frame in bytes.
    pub max_frame_size: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_region_bytes: 256 << 20,
            max_ring_entries: 1 << 15,
            max_small_slots: 1 << 15,
            max_small_slot_size: 2048,
            max_frames: 1 << 16,
            max_frame_size: 1 << 16,
        }
    }
}

/// Smallest frame size.
pub const MIN_FRAME_SIZE: u32 = 2048;
/// Smallest small slot.
pub const MIN_SMALL_SLOT_SIZE: u32 = 64;

/// Why a geometry or header was refused. Each names the field and the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GeometryError {
    /// The first 8 bytes are not [`MAGIC`]: not an exchange region.
    #[error("region header magic is wrong: not an exchange region (expected \"NSXCHNG\\0\")")]
    BadMagic,
    /// Unknown layout version.
    #[error(
        "region layout version {found} is not supported (this server speaks version {VERSION})"
    )]
    BadVersion {
        /// Version found in the header.
        found: u32,
    },
    /// A ring's entry count is not a power of two within the limit.
    #[error("{ring} ring has {entries} entries: must be a power of two between 1 and {max}")]
    RingEntries {
        /// The ring.
        ring: RingId,
        /// Entries asked for.
        entries: u32,
        /// The server's limit.
        max: u32,
    },
    /// The completion ring is smaller than the tx ring.
    #[error(
        "completion ring ({completion}) must have at least as many entries as the tx ring ({tx})"
    )]
    CompletionTooSmall {
        /// Completion entries.
        completion: u32,
        /// Tx entries.
        tx: u32,
    },
    /// Small-slot count is not a power of two ≥ rx entries within the limit.
    #[error("{count} small slots: must be a power of two, at least the rx ring's {rx_entries} entries, at most {max}")]
    SmallSlotCount {
        /// Count asked for.
        count: u32,
        /// Rx entries.
        rx_entries: u32,
        /// Limit.
        max: u32,
    },
    /// Small-slot size not a multiple of 64 in range.
    #[error("small slot size {size}: must be a multiple of 64 between 64 and {max}")]
    SmallSlotSize {
        /// Size asked for.
        size: u32,
        /// Limit.
        max: u32,
    },
    /// Frame count 0 or above the limit.
    #[error("{count} frames: must be between 1 and {max}")]
    FrameCount {
        /// Count asked for.
        count: u32,
        /// Limit.
        max: u32,
    },
    /// Frame size not a power of two in range.
    #[error("frame size {size}: must be a power of two between 2048 and {max}")]
    FrameSize {
        /// Size asked for.
        size: u32,
        /// Limit.
        max: u32,
    },
    /// Whole region too large.
    #[error("region would be {size} bytes, more than the server's limit of {max}: use fewer or smaller frames")]
    RegionTooLarge {
        /// Computed size.
        size: u64,
        /// Limit.
        max: u64,
    },
    /// A header field disagrees with the layout computed from the geometry.
    #[error("region header field {field} is {found}, expected {expected} for this geometry")]
    HeaderMismatch {
        /// Field name.
        field: &'static str,
        /// Value in the header.
        found: u64,
        /// Value computed.
        expected: u64,
    },
}

/// Offsets of one ring inside the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    /// Offset of the control block.
    pub offset: usize,
    /// Number of entries (power of two).
    pub entries: u32,
    /// Bytes per entry.
    pub entry_size: usize,
}

impl RingLayout {
    /// Offset of the producer index.
    pub const fn producer(&self) -> usize {
        self.offset + RING_PRODUCER_OFFSET
    }
    /// Offset of the need-wakeup flag.
    pub const fn need_wakeup(&self) -> usize {
        self.offset + RING_NEED_WAKEUP_OFFSET
    }
    /// Offset of the consumer index.
    pub const fn consumer(&self) -> usize {
        self.offset + RING_CONSUMER_OFFSET
    }
    /// Offset of entry slot 0.
    pub const fn entries_offset(&self) -> usize {
        self.offset + RING_CTRL_SIZE
    }
    /// Offset one past the ring's last byte.
    pub const fn end(&self) -> usize {
        self.entries_offset() + self.entries as usize * self.entry_size
    }
}

/// A checked geometry with every offset computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The geometry this layout was computed from.
    pub geometry: Geometry,
    /// Rx ring.
    pub rx: RingLayout,
    /// Fill ring.
    pub fill: RingLayout,
    /// Tx ring.
    pub tx: RingLayout,
    /// Completion ring.
    pub completion: RingLayout,
    /// Offset of small slot 0.
    pub small_offset: usize,
    /// Offset of frame 0.
    pub frame_offset: usize,
    /// Total bytes.
    pub region_size: usize,
}

fn check_ring(ring: RingId, entries: u32, limits: &Limits) -> Result<(), GeometryError> {
    if entries == 0 || !entries.is_power_of_two() || entries > limits.max_ring_entries {
        return Err(GeometryError::RingEntries {
            ring,
            entries,
            max: limits.max_ring_entries,
        });
    }
    Ok(())
}

impl Layout {
    /// Checks `geometry` against `limits` and computes every offset.
    pub fn new(geometry: Geometry, limits: &Limits) -> Result<Layout, GeometryError> {
        let g = geometry;
        check_ring(RingId::Rx, g.rx_entries, limits)?;
        check_ring(RingId::Fill, g.fill_entries, limits)?;
        check_ring(RingId::Tx, g.tx_entries, limits)?;
        check_ring(RingId::Completion, g.completion_entries, limits)?;
        if g.completion_entries < g.tx_entries {
            return Err(GeometryError::CompletionTooSmall {
                completion: g.completion_entries,
                tx: g.tx_entries,
            });
        }
        if !g.small_slot_count.is_power_of_two()
            || g.small_slot_count < g.rx_entries
            || g.small_slot_count > limits.max_small_slots
        {
            return Err(GeometryError::SmallSlotCount {
                count: g.small_slot_count,
                rx_entries: g.rx_entries,
                max: limits.max_small_slots,
            });
        }
        if g.small_slot_size < MIN_SMALL_SLOT_SIZE
            || g.small_slot_size & 63 != 0
            || g.small_slot_size > limits.max_small_slot_size
        {
            return Err(GeometryError::SmallSlotSize {
                size: g.small_slot_size,
                max: limits.max_small_slot_size,
            });
        }
        if g.frame_count == 0 || g.frame_count > limits.max_frames {
            return Err(GeometryError::FrameCount {
                count: g.frame_count,
                max: limits.max_frames,
            });
        }
        if !g.frame_size.is_power_of_two()
            || g.frame_size < MIN_FRAME_SIZE
            || g.frame_size > limits.max_frame_size
        {
            return Err(GeometryError::FrameSize {
                size: g.frame_size,
                max: limits.max_frame_size,
            });
        }
        // All arithmetic in checked u64: a hostile geometry cannot overflow.
        let too_large = GeometryError::RegionTooLarge {
            size: u64::MAX,
            max: limits.max_region_bytes,
        };
        let add = |a: u64, b: u64| a.checked_add(b).ok_or(too_large);
        let mul = |a: u64, b: u64| a.checked_mul(b).ok_or(too_large);
        let align = |v: u64, a: u64| add(v, a - 1).map(|v| v & !(a - 1));
        let line = CACHE_LINE as u64;
        let mut at = HEADER_SIZE as u64;
        let mut rings = [(0u64, 0u32, 0usize); 4];
        for (slot, (id, entries)) in rings.iter_mut().zip([
            (RingId::Rx, g.rx_entries),
            (RingId::Fill, g.fill_entries),
            (RingId::Tx, g.tx_entries),
            (RingId::Completion, g.completion_entries),
        ]) {
            let offset = align(at, line)?;
            at = add(
                add(offset, RING_CTRL_SIZE as u64)?,
                mul(entries.into(), id.entry_size() as u64)?,
            )?;
            *slot = (offset, entries, id.entry_size());
        }
        let [rx, fill, tx, completion] = rings;
        let small_offset = align(at, line)?;
        let small_end = add(
            small_offset,
            mul(g.small_slot_count.into(), g.small_slot_size.into())?,
        )?;
        let frame_offset = align(small_end, PAGE_SIZE as u64)?;
        let end = add(
            frame_offset,
            mul(g.frame_count.into(), g.frame_size.into())?,
        )?;
        let region_size = align(end, PAGE_SIZE as u64)?;
        if region_size > limits.max_region_bytes || region_size > isize::MAX as u64 {
            return Err(GeometryError::RegionTooLarge {
                size: region_size,
                max: limits.max_region_bytes,
            });
        }
        let rl = |(offset, entries, entry_size): (u64, u32, usize)| RingLayout {
            offset: offset as usize,
            entries,
            entry_size,
        };
        Ok(Layout {
            geometry,
            rx: rl(rx),
            fill: rl(fill),
            tx: rl(tx),
            completion: rl(completion),
            small_offset: small_offset as usize,
            frame_offset: frame_offset as usize,
            region_size: region_size as usize,
        })
    }

    /// The header a client writes for this layout.
    pub fn header(&self) -> RegionHeader {
        let g = &self.geometry;
        RegionHeader {
            magic: MAGIC,
            version: VERSION,
            header_size: HEADER_SIZE as u32,
            region_size: self.region_size as u64,
            rx_entries: g.rx_entries,
            fill_entries: g.fill_entries,
            tx_entries: g.tx_entries,
            completion_entries: g.completion_entries,
            small_slot_count: g.small_slot_count,
            small_slot_size: g.small_slot_size,
            frame_count: g.frame_count,
            frame_size: g.frame_size,
            rx_offset: self.rx.offset as u64,
            fill_offset: self.fill.offset as u64,
            tx_offset: self.tx.offset as u64,
            completion_offset: self.completion.offset as u64,
            small_offset: self.small_offset as u64,
            frame_offset: self.frame_offset as u64,
            reserved: [0; 3],
        }
    }

    /// Validates a header (a copy read out of the region) against `limits`:
    /// magic, version, geometry, and every offset must match what
    /// [`Layout::new`] computes, and the reserved words must be zero.
    pub fn from_header(header: &RegionHeader, limits: &Limits) -> Result<Layout, GeometryError> {
        if header.magic != MAGIC {
            return Err(GeometryError::BadMagic);
        }
        if header.version != VERSION {
            return Err(GeometryError::BadVersion {
                found: header.version,
            });
        }
        let layout = Layout::new(header.geometry(), limits)?;
        let expected = layout.header();
        let pairs: [(&'static str, u64, u64); 11] = [
            (
                "header_size",
                header.header_size.into(),
                expected.header_size.into(),
            ),
            ("region_size", header.region_size, expected.region_size),
            ("rx_offset", header.rx_offset, expected.rx_offset),
            ("fill_offset", header.fill_offset, expected.fill_offset),
            ("tx_offset", header.tx_offset, expected.tx_offset),
            (
                "completion_offset",
                header.completion_offset,
                expected.completion_offset,
            ),
            ("small_offset", header.small_offset, expected.small_offset),
            ("frame_offset", header.frame_offset, expected.frame_offset),
            // Zero today, so that a later version can give them a meaning.
            ("reserved[0]", header.reserved[0], expected.reserved[0]),
            ("reserved[1]", header.reserved[1], expected.reserved[1]),
            ("reserved[2]", header.reserved[2], expected.reserved[2]),
        ];
        for (field, found, expected) in pairs {
            if found != expected {
                return Err(GeometryError::HeaderMismatch {
                    field,
                    found,
                    expected,
                });
            }
        }
        Ok(layout)
    }

    /// Byte offset of frame `index` (caller checks `index < frame_count`).
    pub const fn frame(&self, index: u32) -> usize {
        self.frame_offset + index as usize * self.geometry.frame_size as usize
    }

    /// Byte offset of small slot `index` (caller checks `index < small_slot_count`).
    pub const fn small_slot(&self, index: u32) -> usize {
        self.small_offset + index as usize * self.geometry.small_slot_size as usize
    }

    /// Frame size in bytes.
    pub const fn frame_size(&self) -> usize {
        self.geometry.frame_size as usize
    }

    /// Small-slot size in bytes.
    pub const fn small_slot_size(&self) -> usize {
        self.geometry.small_slot_size as usize
    }

    /// The layout of one ring.
    pub const fn ring(&self, id: RingId) -> &RingLayout {
        match id {
            RingId::Rx => &self.rx,
            RingId::Fill => &self.fill,
            RingId::Tx => &self.tx,
            RingId::Completion => &self.completion,
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn tx_status_carries_a_refusal_reason() {
        assert_eq!(tx_status(TX_STATUS_SENT, 0), 0);
        let s = tx_status(TX_STATUS_REFUSED, 3);
        assert_eq!(s, 0x0003_0001);
        assert_eq!(split_tx_status(s), (TX_STATUS_REFUSED, 3));
        assert_eq!(split_tx_status(TX_STATUS_FAILED), (TX_STATUS_FAILED, 0));
    }

    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn header_layout() {
        assert_eq!(size_of::<RegionHeader>(), 128);
        assert_eq!(align_of::<RegionHeader>(), 8);
        assert_eq!(offset_of!(RegionHeader, magic), 0);
        assert_eq!(offset_of!(RegionHeader, version), 8);
        assert_eq!(offset_of!(RegionHeader, header_size), 12);
        assert_eq!(offset_of!(RegionHeader, region_size), 16);
        assert_eq!(offset_of!(RegionHeader, rx_entries), 24);
        assert_eq!(offset_of!(RegionHeader, fill_entries), 28);
        assert_eq!(offset_of!(RegionHeader, tx_entries), 32);
        assert_eq!(offset_of!(RegionHeader, completion_entries), 36);
        assert_eq!(offset_of!(RegionHeader, small_slot_count), 40);
        assert_eq!(offset_of!(RegionHeader, small_slot_size), 44);
        assert_eq!(offset_of!(RegionHeader, frame_count), 48);
        assert_eq!(offset_of!(RegionHeader, frame_size), 52);
        assert_eq!(offset_of!(RegionHeader, rx_offset), 56);
        assert_eq!(offset_of!(RegionHeader, fill_offset), 64);
        assert_eq!(offset_of!(RegionHeader, tx_offset), 72);
        assert_eq!(offset_of!(RegionHeader, completion_offset), 80);
        assert_eq!(offset_of!(RegionHeader, small_offset), 88);
        assert_eq!(offset_of!(RegionHeader, frame_offset), 96);
        assert_eq!(offset_of!(RegionHeader, reserved), 104);
    }

    #[test]
    fn descriptor_layouts() {
        assert_eq!(size_of::<RxDesc>(), 32);
        assert_eq!(offset_of!(RxDesc, tag), 0);
        assert_eq!(offset_of!(RxDesc, timestamp_ns), 8);
        assert_eq!(offset_of!(RxDesc, index), 16);
        assert_eq!(offset_of!(RxDesc, len), 20);
        assert_eq!(offset_of!(RxDesc, wire_len), 24);
        assert_eq!(offset_of!(RxDesc, offset), 28);
        assert_eq!(offset_of!(RxDesc, flags), 30);

        assert_eq!(size_of::<TxDesc>(), 32);
        assert_eq!(offset_of!(TxDesc, frame), 0);
        assert_eq!(offset_of!(TxDesc, offset), 4);
        assert_eq!(offset_of!(TxDesc, len), 8);
        assert_eq!(offset_of!(TxDesc, flags), 12);
        assert_eq!(offset_of!(TxDesc, frame2), 16);
        assert_eq!(offset_of!(TxDesc, offset2), 20);
        assert_eq!(offset_of!(TxDesc, len2), 24);
        assert_eq!(offset_of!(TxDesc, reserved), 28);

        assert_eq!(size_of::<TxCompletion>(), 16);
        assert_eq!(offset_of!(TxCompletion, frame), 0);
        assert_eq!(offset_of!(TxCompletion, frame2), 4);
        assert_eq!(offset_of!(TxCompletion, status), 8);
        assert_eq!(offset_of!(TxCompletion, len), 12);

        assert_eq!(RingId::Fill.entry_size(), 4);
        const { assert!(RING_CONSUMER_OFFSET - RING_PRODUCER_OFFSET >= CACHE_LINE) };
        const { assert!(RING_NEED_WAKEUP_OFFSET < CACHE_LINE) };
        const { assert!(RING_CTRL_SIZE == 128) };
    }

    #[test]
    fn default_geometry_offsets() {
        let l = Layout::new(Geometry::default(), &Limits::default()).unwrap();
        assert_eq!(l.rx.offset, 4096);
        assert_eq!(l.rx.entries_offset(), 4096 + 128);
        assert_eq!(l.fill.offset, 4096 + 128 + 256 * 32);
        assert_eq!(l.tx.offset, l.fill.offset + 128 + 256 * 4);
        assert_eq!(l.completion.offset, l.tx.offset + 128 + 256 * 32);
        assert_eq!(l.small_offset, l.completion.offset + 128 + 256 * 16);
        assert_eq!(l.frame_offset % PAGE_SIZE, 0);
        assert!(l.frame_offset >= l.small_offset + 256 * 128);
        assert_eq!(l.region_size, l.frame_offset + 512 * 4096);
        assert_eq!(l.frame(3), l.frame_offset + 3 * 4096);
        assert_eq!(l.small_slot(2), l.small_offset + 256);
    }

    #[test]
    fn odd_fill_ring_is_realigned() {
        let g = Geometry {
            fill_entries: 1,
            ..Geometry::default()
        };
        let l = Layout::new(g, &Limits::default()).unwrap();
        assert_eq!(l.tx.offset % CACHE_LINE, 0);
        assert_eq!(l.tx.offset, l.fill.offset + 128 + 64);
    }

    #[test]
    fn header_round_trip_and_validation() {
        let l = Layout::new(Geometry::default(), &Limits::default()).unwrap();
        let h = l.header();
        let words = h.to_words();
        assert_eq!(words[0].to_le_bytes(), *b"NSXC");
        assert_eq!(words[2], VERSION);
        let back = RegionHeader::from_words(&words);
        assert_eq!(back, h);
        assert_eq!(Layout::from_header(&back, &Limits::default()).unwrap(), l);

        let mut bad = h;
        bad.magic[0] = b'X';
        assert_eq!(
            Layout::from_header(&bad, &Limits::default()),
            Err(GeometryError::BadMagic)
        );
        let mut bad = h;
        bad.version = 9;
        assert!(matches!(
            Layout::from_header(&bad, &Limits::default()),
            Err(GeometryError::BadVersion { found: 9 })
        ));
        let mut bad = h;
        bad.frame_offset += 4096;
        assert!(matches!(
            Layout::from_header(&bad, &Limits::default()),
            Err(GeometryError::HeaderMismatch {
                field: "frame_offset",
                ..
            })
        ));
        let mut bad = h;
        bad.region_size -= 1;
        assert!(matches!(
            Layout::from_header(&bad, &Limits::default()),
            Err(GeometryError::HeaderMismatch {
                field: "region_size",
                ..
            })
        ));
    }

    #[test]
    fn nonzero_reserved_words_are_refused() {
        // Found by the `header` fuzz target: the reserved words were not
        // checked, so a header with garbage there was accepted.
        let h = Layout::new(Geometry::default(), &Limits::default())
            .unwrap()
            .header();
        for (word, field) in ["reserved[0]", "reserved[1]", "reserved[2]"]
            .into_iter()
            .enumerate()
        {
            for value in [1, 1 << 63, u64::MAX] {
                let mut bad = h;
                bad.reserved[word] = value;
                assert_eq!(
                    Layout::from_header(&bad, &Limits::default()),
                    Err(GeometryError::HeaderMismatch {
                        field,
                        found: value,
                        expected: 0,
                    })
                );
            }
        }
    }

    #[test]
    fn wrong_header_size_is_refused() {
        let mut bad = Layout::new(Geometry::default(), &Limits::default())
            .unwrap()
            .header();
        bad.header_size = 128;
        assert_eq!(
            Layout::from_header(&bad, &Limits::default()),
            Err(GeometryError::HeaderMismatch {
                field: "header_size",
                found: 128,
                expected: 4096,
            })
        );
    }

    #[test]
    fn geometry_rules() {
        let lim = Limits::default();
        let ok = Geometry::default();
        let bad = |g: Geometry| Layout::new(g, &lim).unwrap_err();
        assert!(matches!(
            bad(Geometry {
                rx_entries: 3,
                ..ok
            }),
            GeometryError::RingEntries {
                ring: RingId::Rx,
                ..
            }
        ));
        assert!(matches!(
            bad(Geometry {
                fill_entries: 0,
                ..ok
            }),
            GeometryError::RingEntries {
                ring: RingId::Fill,
                ..
            }
        ));
        assert!(matches!(
            bad(Geometry {
                tx_entries: 1 << 20,
                ..ok
            }),
            GeometryError::RingEntries {
                ring: RingId::Tx,
                ..
            }
        ));
        assert!(matches!(
            bad(Geometry {
                completion_entries: 128,
                ..ok
            }),
            GeometryError::CompletionTooSmall { .. }
        ));
        assert!(matches!(
            bad(Geometry {
                small_slot_count: 128,
                ..ok
            }),
            GeometryError::SmallSlotCount { .. }
        ));
        assert!(matches!(
            bad(Geometry {
                small_slot_size: 100,
                ..ok
            }),
            GeometryError::SmallSlotSize { .. }
        ));
        assert!(matches!(
            bad(Geometry {
                frame_count: 0,
                ..ok
            }),
            GeometryError::FrameCount { .. }
        ));
        assert!(matches!(
            bad(Geometry {
                frame_size: 3000,
                ..ok
            }),
            GeometryError::FrameSize { .. }
        ));
        assert!(matches!(
            bad(Geometry {
                frame_size: 1024,
                ..ok
            }),
            GeometryError::FrameSize { .. }
        ));
        let big = Geometry {
            frame_count: 1 << 16,
            frame_size: 1 << 16,
            ..ok
        };
        assert!(matches!(bad(big), GeometryError::RegionTooLarge { .. }));
    }

    #[test]
    fn maximal_geometry_does_not_overflow() {
        let lim = Limits {
            max_region_bytes: u64::MAX,
            max_ring_entries: 1 << 31,
            max_small_slots: 1 << 31,
            max_small_slot_size: u32::MAX,
            max_frames: u32::MAX,
            max_frame_size: 1 << 31,
        };
        let g = Geometry {
            rx_entries: 1 << 31,
            fill_entries: 1 << 31,
            tx_entries: 1 << 31,
            completion_entries: 1 << 31,
            small_slot_count: 1 << 31,
            small_slot_size: u32::MAX - 63,
            frame_count: u32::MAX,
            frame_size: 1 << 31,
        };
        // Either a layout or a clean error, never an overflow panic.
        let _ = Layout::new(g, &lim);
    }
}
