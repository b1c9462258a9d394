//! Errors, split by blame (as rustls does): what the peer did wrong in shared
//! memory ([`Violation`], `Copy`, one counter per [`ViolationKind`]), why a
//! placement could not happen right now ([`PlaceError`]), and setup failures
//! ([`RegionError`], [`PassError`]) that carry the OS error.

use std::io;

use thiserror::Error;

use crate::layout::{GeometryError, RingId};

/// A protocol violation the peer committed in shared memory. Nothing was
/// changed because of it; the offending entry was skipped. On the server, each
/// one is counted per [`ViolationKind`] and enough of them revoke the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Violation {
    /// The peer's producer index is behind our consumer index or more than a
    /// ring's worth ahead of it (it would make us read entries twice or
    /// overrun): the whole batch was refused.
    #[error("{ring} ring: peer's producer index {producer} is not within {entries} entries ahead of consumer index {consumer}")]
    ProducerIndex {
        /// Ring.
        ring: RingId,
        /// Producer index read.
        producer: u32,
        /// Our consumer index.
        consumer: u32,
        /// Ring size.
        entries: u32,
    },
    /// The peer's consumer index is ahead of our producer index or more than a
    /// ring's worth behind it.
    #[error("{ring} ring: peer's consumer index {consumer} is not within {entries} entries behind producer index {producer}")]
    ConsumerIndex {
        /// Ring.
        ring: RingId,
        /// Consumer index read.
        consumer: u32,
        /// Our producer index.
        producer: u32,
        /// Ring size.
        entries: u32,
    },
    /// A frame index at or above the frame count.
    #[error("{ring} ring: frame index {index} is out of range (region has {count} frames)")]
    FrameOutOfRange {
        /// Ring.
        ring: RingId,
        /// Index read.
        index: u32,
        /// Frame count.
        count: u32,
    },
    /// A frame posted while the server already has it as a free frame.
    #[error("{ring} ring: frame {index} posted twice (the server already holds it free)")]
    FramePostedTwice {
        /// Ring.
        ring: RingId,
        /// Frame.
        index: u32,
    },
    /// A frame posted that is not the peer's to give (server side: the
    /// server holds a packet in it or is sending it; client side: the client
    /// already holds it).
    #[error("{ring} ring: frame {index} is not the sender's to give (the receiving side still holds it: on fill/tx, the server; on rx/completion, the client)")]
    FrameNotOwned {
        /// Ring.
        ring: RingId,
        /// Frame.
        index: u32,
    },
    /// A descriptor field is out of range (offset/length past the frame or
    /// slot, zero length, unknown flags, both segments in one frame).
    #[error("{ring} ring: bad descriptor: {reason}")]
    BadDescriptor {
        /// Ring.
        ring: RingId,
        /// What was wrong.
        reason: DescriptorFault,
    },
    /// The region was revoked after too many violations; nothing more is
    /// accepted from it. Re-attach with a new region.
    #[error("exchange region revoked after {violations} protocol violations; detach and attach a new region")]
    Revoked {
        /// Violations counted.
        violations: u64,
    },
}

/// What was wrong with a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DescriptorFault {
    /// `len` is zero.
    #[error("zero length")]
    ZeroLength,
    /// `offset + len` runs past the end of the frame or slot.
    #[error("offset {offset} + length {len} runs past the {size}-byte buffer")]
    OutOfBounds {
        /// Offset.
        offset: u32,
        /// Length.
        len: u32,
        /// Buffer size.
        size: u32,
    },
    /// Flags the layout does not define.
    #[error("unknown flags {0:#x}")]
    UnknownFlags(u32),
    /// Both segments name the same frame.
    #[error("both segments use frame {0}")]
    SameFrame(u32),
    /// Small-slot index out of range or not the one the protocol assigns.
    #[error("small slot {index} is not slot {expected}")]
    WrongSlot {
        /// Slot read.
        index: u32,
        /// Slot expected.
        expected: u32,
    },
    /// A packet longer than the limit.
    #[error("length {len} exceeds {max}")]
    TooLong {
        /// Length.
        len: u32,
        /// Limit.
        max: u32,
    },
}

/// The reason of a [`Violation`] without its data: an index for per-reason
/// counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum ViolationKind {
    /// [`Violation::ProducerIndex`].
    ProducerIndex,
    /// [`Violation::ConsumerIndex`].
    ConsumerIndex,
    /// [`Violation::FrameOutOfRange`].
    FrameOutOfRange,
    /// [`Violation::FramePostedTwice`].
    FramePostedTwice,
    /// [`Violation::FrameNotOwned`].
    FrameNotOwned,
    /// [`Violation::BadDescriptor`].
    BadDescriptor,
    /// [`Violation::Revoked`].
    Revoked,
}

impl ViolationKind {
    /// Every kind, in counter order.
    pub const ALL: [ViolationKind; 7] = [
        ViolationKind::ProducerIndex,
        ViolationKind::ConsumerIndex,
        ViolationKind::FrameOutOfRange,
        ViolationKind::FramePostedTwice,
        ViolationKind::FrameNotOwned,
        ViolationKind::BadDescriptor,
        ViolationKind::Revoked,
    ];
    /// Number of kinds.
    pub const COUNT: usize = Self::ALL.len();

    /// snake_case name, for stats output.
    pub const fn name(self) -> &'static str {
        match self {
            ViolationKind::ProducerIndex => "producer_index",
            ViolationKind::ConsumerIndex => "consumer_index",
            ViolationKind::FrameOutOfRange => "frame_out_of_range",
            ViolationKind::FramePostedTwice => "frame_posted_twice",
            ViolationKind::FrameNotOwned => "frame_not_owned",
            ViolationKind::BadDescriptor => "bad_descriptor",
            ViolationKind::Revoked => "revoked",
        }
    }
}

impl Violation {
    /// The counter this violation goes to.
    pub const fn kind(&self) -> ViolationKind {
        match self {
            Violation::ProducerIndex { .. } => ViolationKind::ProducerIndex,
            Violation::ConsumerIndex { .. } => ViolationKind::ConsumerIndex,
            Violation::FrameOutOfRange { .. } => ViolationKind::FrameOutOfRange,
            Violation::FramePostedTwice { .. } => ViolationKind::FramePostedTwice,
            Violation::FrameNotOwned { .. } => ViolationKind::FrameNotOwned,
            Violation::BadDescriptor { .. } => ViolationKind::BadDescriptor,
            Violation::Revoked { .. } => ViolationKind::Revoked,
        }
    }
}

/// Per-reason violation counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ViolationCounts {
    counts: [u64; ViolationKind::COUNT],
}

impl ViolationCounts {
    /// Counts one violation.
    pub fn add(&mut self, v: &Violation) {
        self.counts[v.kind() as usize] += 1;
    }
    /// Count for one reason.
    pub fn get(&self, kind: ViolationKind) -> u64 {
        self.counts[kind as usize]
    }
    /// Sum over all reasons except [`ViolationKind::Revoked`] (which counts
    /// refusals after revocation, not new misbehaviour).
    pub fn total(&self) -> u64 {
        ViolationKind::ALL
            .iter()
            .filter(|k| **k != ViolationKind::Revoked)
            .map(|k| self.get(*k))
            .sum()
    }
    /// `(name, count)` pairs, for stats.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ViolationKind::ALL.iter().map(|k| (k.name(), self.get(*k)))
    }
}

/// Why the server could not place a packet in a region right now. None of
/// these is the peer misbehaving except [`PlaceError::Violation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PlaceError {
    /// The rx ring is full: the client is not keeping up (drop or spill).
    #[error("rx ring full: the client is not consuming")]
    RxFull,
    /// The client has posted no free frame on the fill ring.
    #[error("no free frame: the client has not posted frames on the fill ring")]
    NoFreeFrame,
    /// The packet does not fit the small slot or frame.
    #[error("packet of {len} bytes does not fit a {capacity}-byte buffer")]
    TooLarge {
        /// Packet length.
        len: usize,
        /// Buffer capacity.
        capacity: usize,
    },
    /// The completion ring is full (cannot happen if the caller takes at most
    /// [`crate::ServerRegion::tx_budget`] tx descriptors).
    #[error("completion ring full")]
    CompletionFull,
    /// The peer violated the protocol (already counted).
    #[error(transparent)]
    Violation(#[from] Violation),
}

/// Setting up a region failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RegionError {
    /// Geometry or header refused.
    #[error("exchange region refused: {0}")]
    Geometry(#[from] GeometryError),
    /// The fd does not support seals: not a memfd.
    #[error("the region fd is not a sealable memfd (create it with memfd_create(MFD_ALLOW_SEALING)): {source}")]
    NotSealable {
        /// `fcntl(F_GET_SEALS)` error.
        source: io::Error,
    },
    /// `F_SEAL_SHRINK` is missing.
    #[error("the region memfd is not sealed against shrinking (seals {found:#x}): add F_SEAL_SHRINK before sending it")]
    MissingSeals {
        /// Seals found.
        found: u32,
    },
    /// The memfd is sealed against writing: the server could not place packets.
    #[error("the region memfd is sealed against writing: remove F_SEAL_WRITE/F_SEAL_FUTURE_WRITE")]
    WriteSealed,
    /// The memfd is smaller than a header page.
    #[error("the region memfd is {size} bytes, smaller than the 4096-byte header page")]
    TooSmall {
        /// File size.
        size: u64,
    },
    /// File size and header disagree.
    #[error("the region memfd is {file} bytes but its header describes {header} bytes")]
    SizeMismatch {
        /// File size.
        file: u64,
        /// Size the header implies.
        header: u64,
    },
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// Passing the region's descriptors over the Unix socket failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PassError {
    /// Nothing (complete) arrived in time.
    #[error("timed out waiting for the region descriptors on the side socket")]
    Timeout,
    /// The peer closed the socket before sending everything.
    #[error("the peer closed the side socket before sending the token and descriptors")]
    Closed,
    /// The token is not the expected length.
    #[error("attach token has {found} bytes, expected {expected}")]
    TokenLength {
        /// Bytes received.
        found: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// Wrong number of descriptors attached.
    #[error("expected 3 file descriptors (memfd, client→server eventfd, server→client eventfd), got {found}")]
    FdCount {
        /// Descriptors received.
        found: usize,
    },
    /// The kernel truncated the ancillary data.
    #[error("ancillary data truncated: the peer sent too many descriptors")]
    Truncated,
    /// A descriptor that should be an eventfd is something else.
    #[error("descriptor {which} is not an eventfd")]
    NotEventFd {
        /// Which one.
        which: &'static str,
    },
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
}
