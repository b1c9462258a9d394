//! Atoms: the unit of a compiled filter (DPF's "atom").
//!
//! An atom is one test on one frame. The common and mergeable kind is
//! [`Atom::Eq`]: load a big-endian field of 1, 2 or 4 bytes, mask it, compare it
//! with a constant — `(offset, width, mask, value)` in DPF's terms. Atoms that
//! test the same [`Field`] under the same mask with different values are what
//! the classifier trie merges into one hash-table node.
//!
//! Every other kind of test (inequalities, arithmetic on header bytes, the
//! wire length, protocol chains) is an [`Atom`] too, evaluated in place; the
//! trie shares them as prefix nodes when they are identical but never hashes
//! them.
//!
//! ## Evaluation contract
//!
//! - A field past the captured bytes makes the atom **fail**, whether it is a
//!   positive or a negated test: libpcap rejects a packet on any read past the
//!   captured bytes, and so do we.
//! - Evaluation is bounded (protocol-chain walks have a fixed step limit),
//!   allocates nothing and never panics, whatever the frame holds.

use std::fmt;

/// Width of a packet field load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Width {
    /// One byte.
    Byte = 1,
    /// Two bytes, big-endian.
    Half = 2,
    /// Four bytes, big-endian.
    Word = 4,
}

impl Width {
    /// Number of bytes the load reads.
    pub const fn bytes(self) -> u32 {
        self as u32
    }

    /// The width for a pcap-filter `[off:size]` size, if it is 1, 2 or 4.
    pub const fn from_bytes(size: u32) -> Option<Width> {
        match size {
            1 => Some(Width::Byte),
            2 => Some(Width::Half),
            4 => Some(Width::Word),
            _ => None,
        }
    }
}

/// Where a field's offset counts from.
///
/// `Ipv4Payload` is DPF's **shift atom**: the IPv4 header starts at byte `ip`
/// of the frame, and its payload begins `4 × IHL` bytes later, where IHL is
/// the low nibble of that first header byte. VLAN tags shift every later
/// offset by a constant, so they are folded into `ip` (and into `Frame`
/// offsets) at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Base {
    /// Byte 0 of the link-layer header.
    Frame,
    /// The first byte after a variable-length IPv4 header that starts at `ip`.
    Ipv4Payload { ip: u32 },
}

impl Base {
    /// The absolute frame offset this base stands for, or `None` when the
    /// byte it depends on was not captured.
    #[inline]
    pub fn resolve(self, frame: &[u8]) -> Option<u32> {
        match self {
            Base::Frame => Some(0),
            Base::Ipv4Payload { ip } => {
                let ihl = *frame.get(ip as usize)? & 0x0f;
                Some(ip + 4 * u32::from(ihl))
            }
        }
    }
}

/// A packet field: `width` bytes at `offset` from `base`, read big-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Field {
    pub base: Base,
    pub offset: u32,
    pub width: Width,
}

impl Field {
    /// A field at an absolute frame offset.
    pub const fn at(offset: u32, width: Width) -> Field {
        Field {
            base: Base::Frame,
            offset,
            width,
        }
    }

    /// Loads the field, or `None` if any byte of it lies past the captured bytes.
    #[inline]
    pub fn load(&self, frame: &[u8]) -> Option<u32> {
        let start = self.base.resolve(frame)?.checked_add(self.offset)?;
        load_at(frame, start, self.width)
    }

    /// The last byte (exclusive) this field can touch relative to its base,
    /// used by install-time limits.
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.width.bytes())
    }
}

/// Loads `width` bytes big-endian at absolute offset `start`, or `None` past
/// the captured bytes.
#[inline]
pub fn load_at(frame: &[u8], start: u32, width: Width) -> Option<u32> {
    let start = start as usize;
    let bytes = frame.get(start..start.checked_add(width.bytes() as usize)?)?;
    Some(match width {
        Width::Byte => u32::from(bytes[0]),
        Width::Half => u32::from(u16::from_be_bytes([bytes[0], bytes[1]])),
        Width::Word => u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
    })
}

/// A relational operator; comparisons are unsigned 32-bit, as in BPF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RelOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl RelOp {
    #[inline]
    pub fn apply(self, lhs: u32, rhs: u32) -> bool {
        match self {
            RelOp::Eq => lhs == rhs,
            RelOp::Ne => lhs != rhs,
            RelOp::Lt => lhs < rhs,
            RelOp::Le => lhs <= rhs,
            RelOp::Gt => lhs > rhs,
            RelOp::Ge => lhs >= rhs,
        }
    }

    /// The operator whose result is the opposite of this one's.
    pub fn negate(self) -> RelOp {
        match self {
            RelOp::Eq => RelOp::Ne,
            RelOp::Ne => RelOp::Eq,
            RelOp::Lt => RelOp::Ge,
            RelOp::Le => RelOp::Gt,
            RelOp::Gt => RelOp::Le,
            RelOp::Ge => RelOp::Lt,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            RelOp::Eq => "==",
            RelOp::Ne => "!=",
            RelOp::Lt => "<",
            RelOp::Le => "<=",
            RelOp::Gt => ">",
            RelOp::Ge => ">=",
        }
    }
}

/// A binary arithmetic operator on unsigned 32-bit values, as in BPF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    And,
    Or,
    Xor,
    Shl,
    Shr,
}

impl ArithOp {
    /// Applies the operator; `None` for a division or modulo by zero (BPF
    /// rejects the packet then).
    #[inline]
    pub fn apply(self, lhs: u32, rhs: u32) -> Option<u32> {
        Some(match self {
            ArithOp::Add => lhs.wrapping_add(rhs),
            ArithOp::Sub => lhs.wrapping_sub(rhs),
            ArithOp::Mul => lhs.wrapping_mul(rhs),
            ArithOp::Div => lhs.checked_div(rhs)?,
            ArithOp::Mod => lhs.checked_rem(rhs)?,
            ArithOp::And => lhs & rhs,
            ArithOp::Or => lhs | rhs,
            ArithOp::Xor => lhs ^ rhs,
            ArithOp::Shl => lhs.checked_shl(rhs).unwrap_or(0),
            ArithOp::Shr => lhs.checked_shr(rhs).unwrap_or(0),
        })
    }

    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Mod => "%",
            ArithOp::And => "&",
            ArithOp::Or => "|",
            ArithOp::Xor => "^",
            ArithOp::Shl => "<<",
            ArithOp::Shr => ">>",
        }
    }
}

/// An arithmetic expression over packet bytes, the wire length and constants,
/// for the relational tests that are not a plain masked comparison.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Expr {
    Const(u32),
    /// The frame's length on the wire (not the captured length), as
    /// `len`/`less`/`greater` use it.
    WireLen,
    /// A field at a fixed offset.
    Field(Field),
    /// A field whose offset is itself computed (`ip[ip[0] & 0xf]`), counted
    /// from `base`.
    Indexed {
        base: Base,
        index: Box<Expr>,
        width: Width,
    },
    Binary {
        op: ArithOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// Two's complement negation (`-x`).
    Neg(Box<Expr>),
}

impl Expr {
    /// Evaluates the expression; `None` on a read past the captured bytes or a
    /// division by zero. Recursion depth is bounded by the compile-time limit
    /// on expression size.
    pub fn eval(&self, frame: &[u8], wire_len: u32) -> Option<u32> {
        match self {
            Expr::Const(value) => Some(*value),
            Expr::WireLen => Some(wire_len),
            Expr::Field(field) => field.load(frame),
            Expr::Indexed { base, index, width } => {
                let start = base
                    .resolve(frame)?
                    .checked_add(index.eval(frame, wire_len)?)?;
                load_at(frame, start, *width)
            }
            Expr::Binary { op, lhs, rhs } => {
                op.apply(lhs.eval(frame, wire_len)?, rhs.eval(frame, wire_len)?)
            }
            Expr::Neg(inner) => Some(inner.eval(frame, wire_len)?.wrapping_neg()),
        }
    }

    /// Number of nodes, for install-time limits.
    pub fn size(&self) -> usize {
        match self {
            Expr::Const(_) | Expr::WireLen | Expr::Field(_) => 1,
            Expr::Indexed { index, .. } => 1 + index.size(),
            Expr::Binary { lhs, rhs, .. } => 1 + lhs.size() + rhs.size(),
            Expr::Neg(inner) => 1 + inner.size(),
        }
    }
}

/// One test on one frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Atom {
    /// `(field & mask) == value`: DPF's atom, the one the trie merges into
    /// hash-table nodes. `value` never has bits outside `mask`.
    Eq { field: Field, mask: u32, value: u32 },
    /// `(field & mask) != value`. Fails, like every atom, when the field was
    /// not captured.
    Ne { field: Field, mask: u32, value: u32 },
    /// A general relational test: `lhs op rhs`.
    Test { lhs: Expr, op: RelOp, rhs: Expr },
    /// libpcap's `protochain`: walk the IPv6 extension-header chain (or the
    /// IPv4 protocol field, then AH headers) starting at the network header
    /// at `net`, and compare the first non-extension protocol with `proto`.
    /// The walk is bounded to a fixed number of headers.
    Protochain { net: u32, ipv6: bool, proto: u8 },
}

impl Atom {
    /// The masked comparison this atom is, if it is a mergeable
    /// `(field, mask, value)` atom.
    #[inline]
    pub fn as_eq(&self) -> Option<(Field, u32, u32)> {
        match *self {
            Atom::Eq { field, mask, value } => Some((field, mask, value)),
            _ => None,
        }
    }

    /// Evaluates the atom on a frame of `wire_len` bytes on the wire, of which
    /// `frame` holds the captured ones.
    #[inline]
    pub fn eval(&self, frame: &[u8], wire_len: u32) -> bool {
        match self {
            Atom::Eq { field, mask, value } => {
                field.load(frame).is_some_and(|v| v & mask == *value)
            }
            Atom::Ne { field, mask, value } => {
                field.load(frame).is_some_and(|v| v & mask != *value)
            }
            Atom::Test { lhs, op, rhs } => {
                match (lhs.eval(frame, wire_len), rhs.eval(frame, wire_len)) {
                    (Some(l), Some(r)) => op.apply(l, r),
                    _ => false,
                }
            }
            Atom::Protochain { net, ipv6, proto } => {
                protochain::reaches(frame, *net, *ipv6, *proto) == Some(true)
            }
        }
    }

    /// Whether no frame can pass both `self` and `other`, as far as a look
    /// at the two atoms alone shows: two masked comparisons of one field
    /// that demand different bits, an `Eq` that forces the value a `Ne`
    /// refuses, or a relational test and its negation. `false` means "may
    /// both hold" (other pairs are never called contradictory), so a
    /// caller that refuses what may overlap stays on the safe side. The
    /// compiler drops contradictory alternatives with it too.
    pub fn contradicts(&self, other: &Atom) -> bool {
        match (self, other) {
            (
                Atom::Eq { field, mask, value },
                Atom::Eq {
                    field: f2,
                    mask: m2,
                    value: v2,
                },
            ) => field == f2 && (value ^ v2) & mask & m2 != 0,
            (
                Atom::Eq { field, mask, value },
                Atom::Ne {
                    field: f2,
                    mask: m2,
                    value: v2,
                },
            )
            | (
                Atom::Ne {
                    field: f2,
                    mask: m2,
                    value: v2,
                },
                Atom::Eq { field, mask, value },
            ) => {
                // `x & mask == value` fixes every bit of `m2` when `m2` lies
                // within `mask`; then `x & m2 != v2` fails iff they agree.
                field == f2 && m2 & !mask == 0 && value & m2 == *v2
            }
            // Both evaluate the same expressions: when they can, exactly one
            // holds; when they cannot, both fail.
            (
                Atom::Test { lhs, op, rhs },
                Atom::Test {
                    lhs: l2,
                    op: o2,
                    rhs: r2,
                },
            ) => lhs == l2 && rhs == r2 && *o2 == op.negate(),
            _ => false,
        }
    }
}

/// Whether one frame may satisfy every atom of `a` and every atom of `b`
/// (two alternatives): `false` only when some pair of their atoms
/// [contradicts](Atom::contradicts).
pub fn may_both_hold(a: &[Atom], b: &[Atom]) -> bool {
    !a.iter().any(|x| b.iter().any(|y| x.contradicts(y)))
}

/// Bytes an IPv4 header may span (IHL 15 × 4): the farthest a
/// [`Base::Ipv4Payload`] shift can move a field.
pub const MAX_IPV4_HEADER: u32 = 60;

/// How far into a frame a test can read: the number of leading bytes that
/// decide its verdict.
///
/// `Bounded(n)`: evaluating on the frame cut to its first `n` bytes gives
/// the same verdict as on the whole frame (the wire length is passed
/// separately and is not cut). `Unbounded`: where it reads depends on the
/// packet's own bytes (a protocol-chain walk, a load at a computed offset),
/// so only the whole frame decides. Ordered: every `Bounded` is below
/// `Unbounded`, so the reach of several tests is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reach {
    Bounded(u64),
    Unbounded,
}

impl Default for Reach {
    /// [`Reach::NOTHING`].
    fn default() -> Reach {
        Reach::NOTHING
    }
}

impl Reach {
    /// The reach of a test that reads nothing (a test of the wire length,
    /// a program with no atoms).
    pub const NOTHING: Reach = Reach::Bounded(0);

    /// Whether the first `captured` bytes of a frame decide every verdict.
    pub fn within(self, captured: usize) -> bool {
        match self {
            Reach::Bounded(n) => n <= captured as u64,
            Reach::Unbounded => false,
        }
    }
}

/// Where an atom reads, computed once for both of its uses: install-time
/// limits ([`Extent::fixed`]) and the data path's head length
/// ([`Extent::reach`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// The farthest byte (exclusive) from the start of the frame that the
    /// atom's fixed offsets can reach, assuming the largest IPv4 header for
    /// shifted fields. A computed offset contributes its base only; a
    /// protocol chain its first header.
    pub fixed: u64,
    /// The atom also reads at offsets computed from packet bytes (an
    /// indexed load, a protocol-chain walk): `fixed` does not bound it.
    pub computed: bool,
}

impl Extent {
    const NOTHING: Extent = Extent {
        fixed: 0,
        computed: false,
    };

    fn fixed(fixed: u64) -> Extent {
        Extent {
            fixed,
            computed: false,
        }
    }

    fn max(self, other: Extent) -> Extent {
        Extent {
            fixed: self.fixed.max(other.fixed),
            computed: self.computed || other.computed,
        }
    }

    /// How far a frame must be captured for the atom's verdict.
    pub fn reach(self) -> Reach {
        if self.computed {
            Reach::Unbounded
        } else {
            Reach::Bounded(self.fixed)
        }
    }
}

impl Base {
    /// The farthest the base itself can lie from the start of the frame
    /// (the largest IPv4 header for a shift).
    fn extent(self) -> u64 {
        match self {
            Base::Frame => 0,
            Base::Ipv4Payload { ip } => u64::from(ip) + u64::from(MAX_IPV4_HEADER),
        }
    }
}

impl Field {
    /// The farthest byte (exclusive) from the start of the frame this field
    /// can touch. Reading it also reads the IHL byte of a shift's IPv4
    /// header, which lies before that.
    pub fn reach(&self) -> u64 {
        self.base.extent() + self.end()
    }
}

impl Expr {
    /// Where the expression reads (see [`Extent`]).
    pub fn extent(&self) -> Extent {
        match self {
            Expr::Const(_) | Expr::WireLen => Extent::NOTHING,
            Expr::Field(field) => Extent::fixed(field.reach()),
            Expr::Indexed { base, index, width } => Extent {
                fixed: base.extent() + u64::from(width.bytes()),
                computed: true,
            }
            .max(index.extent()),
            Expr::Binary { lhs, rhs, .. } => lhs.extent().max(rhs.extent()),
            Expr::Neg(inner) => inner.extent(),
        }
    }
}

impl Atom {
    /// Where the atom reads (see [`Extent`]). A protocol chain reads its
    /// first header at fixed offsets, then walks headers whose positions
    /// the packet gives (IPv6 extension headers, IPv4 AH headers).
    pub fn extent(&self) -> Extent {
        match self {
            Atom::Eq { field, .. } | Atom::Ne { field, .. } => Extent::fixed(field.reach()),
            Atom::Test { lhs, rhs, .. } => lhs.extent().max(rhs.extent()),
            Atom::Protochain { net, ipv6, .. } => {
                let header = if *ipv6 { 40 } else { MAX_IPV4_HEADER };
                Extent {
                    fixed: u64::from(*net) + u64::from(header),
                    computed: true,
                }
            }
        }
    }

    /// How far a frame must be captured for this atom's verdict.
    pub fn reach(&self) -> Reach {
        self.extent().reach()
    }
}

pub mod protochain {
    //! The bounded protocol-chain walk behind [`super::Atom::Protochain`],
    //! step for step the BPF loop libpcap 1.10 generates for `protochain`.
    //!
    //! Its quirks are libpcap's, kept so verdicts agree:
    //! - the protocol is compared **before** a header is recognised as an
    //!   extension header, so `protochain 51` matches an AH header anywhere
    //!   in the chain and `ip6 protochain 0` matches hop-by-hop options;
    //! - `59` (no next header) ends the walk;
    //! - IPv6 hop-by-hop, routing, fragment and destination-options headers
    //!   are stepped over by `(len + 1) * 8` bytes (the fragment header too);
    //! - after an AH header the offset becomes `(len + 2) * 4` counted from
    //!   the network header, **not** the previous offset plus that: libpcap's
    //!   code says `X = X + …` in its comment and stores `X = …`.

    use super::{load_at, Width};

    /// Most headers a walk steps over before giving up. libpcap does not
    /// bound the loop (libpcap's own tests walk 100 IPv6 extension headers).
    /// Each IPv6 step consumes at least 8 bytes, so in a 1500-byte frame this
    /// bound is never the one that stops the walk; only an AH chain that
    /// loops back on itself (libpcap would spin forever) reaches it, and is
    /// rejected.
    pub const MAX_HEADERS: usize = 256;

    const NO_NEXT_HEADER: u32 = 59;
    const AUTHENTICATION_HEADER: u32 = 51;

    /// Whether the chain starting at the network header at `net` reaches
    /// protocol `proto`; `None` when the walk reads past the captured bytes
    /// or past [`MAX_HEADERS`] headers, which rejects the packet.
    pub fn reaches(frame: &[u8], net: u32, ipv6: bool, proto: u8) -> Option<bool> {
        let byte = |offset: u32| load_at(frame, net.checked_add(offset)?, Width::Byte);
        let (mut next, mut offset) = if ipv6 {
            (byte(6)?, 40)
        } else {
            (byte(9)?, 4 * (byte(0)? & 0x0f))
        };
        for _ in 0..MAX_HEADERS {
            if next == u32::from(proto) {
                return Some(true);
            }
            if next == NO_NEXT_HEADER {
                return Some(false);
            }
            let len = byte(offset.checked_add(1)?)?;
            let next_offset = match next {
                // hop-by-hop, routing, fragment, destination options
                0 | 43 | 44 | 60 if ipv6 => offset.checked_add((len + 1) * 8)?,
                AUTHENTICATION_HEADER => (len + 2) * 4,
                _ => return Some(false),
            };
            next = byte(offset)?;
            offset = next_offset;
        }
        None
    }
}

// ---- Display: the notation `nsctl filter compile` prints ----

impl Width {
    /// The all-ones mask of a field of this width.
    pub const fn full_mask(self) -> u32 {
        match self {
            Width::Byte => 0xff,
            Width::Half => 0xffff,
            Width::Word => 0xffff_ffff,
        }
    }
}

/// The standard Ethernet offset of the IPv4 header; other offsets (after
/// VLAN tags) are printed explicitly.
const ETHERNET_NETWORK_OFFSET: u32 = 14;

impl fmt::Display for Base {
    /// `ether` for the frame, `ip+ihl` for the payload of the IPv4 header at
    /// byte 14, `ip@18+ihl` for one at another offset.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base::Frame => f.write_str("ether"),
            Base::Ipv4Payload { ip } if *ip == ETHERNET_NETWORK_OFFSET => f.write_str("ip+ihl"),
            Base::Ipv4Payload { ip } => write!(f, "ip@{ip}+ihl"),
        }
    }
}

impl fmt::Display for Field {
    /// `ether[12:2]`, `ip+ihl[2:2]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}:{}]", self.base, self.offset, self.width.bytes())
    }
}

/// A constant in hex, padded to the width of the field it is compared with.
struct Hex(u32, Width);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = 2 * self.1.bytes() as usize;
        write!(f, "0x{:0digits$x}", self.0)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Const(value) => write!(f, "{value}"),
            Expr::WireLen => f.write_str("len"),
            Expr::Field(field) => write!(f, "{field}"),
            Expr::Indexed { base, index, width } => {
                write!(f, "{base}[{index}:{}]", width.bytes())
            }
            Expr::Binary { op, lhs, rhs } => write!(f, "({lhs} {} {rhs})", op.symbol()),
            Expr::Neg(inner) => write!(f, "-{inner}"),
        }
    }
}

impl fmt::Display for Atom {
    /// `ether[12:2] == 0x0800`, `ether[20:2] & 0x1fff == 0x0000`,
    /// `len >= 100`, `protochain(ip6@14) == 17`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masked =
            |f: &mut fmt::Formatter<'_>, field: &Field, mask: u32, op: &str, value: u32| {
                let width = field.width;
                if mask == width.full_mask() {
                    write!(f, "{field} {op} {}", Hex(value, width))
                } else {
                    write!(
                        f,
                        "{field} & {} {op} {}",
                        Hex(mask, width),
                        Hex(value, width)
                    )
                }
            };
        match self {
            Atom::Eq { field, mask, value } => masked(f, field, *mask, "==", *value),
            Atom::Ne { field, mask, value } => masked(f, field, *mask, "!=", *value),
            Atom::Test { lhs, op, rhs } => write!(f, "{lhs} {} {rhs}", op.symbol()),
            Atom::Protochain { net, ipv6, proto } => {
                let version = if *ipv6 { "ip6" } else { "ip" };
                write!(f, "protochain({version}@{net}) == {proto}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contradictions_are_found_only_where_no_frame_can_pass_both() {
        let f = Field::at(12, Width::Half);
        let eq = |mask, value| Atom::Eq {
            field: f,
            mask,
            value,
        };
        let ne = |mask, value| Atom::Ne {
            field: f,
            mask,
            value,
        };
        // Different values under one mask; bits that disagree where the
        // masks overlap.
        assert!(eq(0xffff, 0x0800).contradicts(&eq(0xffff, 0x86dd)));
        assert!(eq(0xff00, 0x0800).contradicts(&eq(0x0f00, 0x0900)));
        // Overlapping masks that agree, disjoint masks: a value passes both.
        assert!(!eq(0xff00, 0x0800).contradicts(&eq(0x0f00, 0x0800)));
        assert!(!eq(0xff00, 0x0800).contradicts(&eq(0x00ff, 0x0006)));
        // Another field is never a contradiction.
        let other = Atom::Eq {
            field: Field::at(14, Width::Half),
            mask: 0xffff,
            value: 0x86dd,
        };
        assert!(!eq(0xffff, 0x0800).contradicts(&other));
        // Eq forces what Ne refuses, in either order; a Ne on bits the Eq
        // leaves free, or on another value, can hold.
        assert!(eq(0xffff, 0x0800).contradicts(&ne(0xffff, 0x0800)));
        assert!(ne(0xff00, 0x0800).contradicts(&eq(0xffff, 0x0806)));
        assert!(!eq(0xffff, 0x0800).contradicts(&ne(0xffff, 0x0806)));
        assert!(!eq(0x00ff, 0x0000).contradicts(&ne(0xffff, 0x0800)));
        // Two Ne atoms never contradict; a relational test contradicts only
        // its own negation.
        assert!(!ne(0xffff, 1).contradicts(&ne(0xffff, 2)));
        let test = Atom::Test {
            lhs: Expr::WireLen,
            op: RelOp::Lt,
            rhs: Expr::Const(10),
        };
        let negated = Atom::Test {
            lhs: Expr::WireLen,
            op: RelOp::Lt.negate(),
            rhs: Expr::Const(10),
        };
        assert!(test.contradicts(&negated) && negated.contradicts(&test));
        let other = Atom::Test {
            lhs: Expr::WireLen,
            op: RelOp::Lt,
            rhs: Expr::Const(20),
        };
        assert!(!test.contradicts(&other));
        assert!(!test.contradicts(&eq(0xffff, 0x0800)));
        assert!(may_both_hold(
            &[eq(0xffff, 0x0800)],
            std::slice::from_ref(&test)
        ));
        assert!(!may_both_hold(
            &[test, eq(0xffff, 0x0800)],
            &[eq(0xffff, 0x86dd)]
        ));
    }

    #[test]
    fn loads_are_big_endian_and_bounded() {
        let frame = [0x12, 0x34, 0x56, 0x78, 0x9a];
        assert_eq!(Field::at(0, Width::Byte).load(&frame), Some(0x12));
        assert_eq!(Field::at(1, Width::Half).load(&frame), Some(0x3456));
        assert_eq!(Field::at(1, Width::Word).load(&frame), Some(0x3456789a));
        assert_eq!(Field::at(2, Width::Word).load(&frame), None);
        assert_eq!(Field::at(u32::MAX, Width::Word).load(&frame), None);
    }

    #[test]
    fn shift_base_follows_ihl() {
        // IPv4 header at 2 with IHL 6 (24 bytes): payload at 26.
        let mut frame = vec![0u8; 40];
        frame[2] = 0x46;
        frame[26] = 0xab;
        let field = Field {
            base: Base::Ipv4Payload { ip: 2 },
            offset: 0,
            width: Width::Byte,
        };
        assert_eq!(field.load(&frame), Some(0xab));
        assert_eq!(field.load(&frame[..2]), None);
    }

    #[test]
    fn negated_atom_fails_past_captured_bytes() {
        let atom = Atom::Ne {
            field: Field::at(10, Width::Byte),
            mask: 0xff,
            value: 1,
        };
        assert!(!atom.eval(&[0; 4], 100));
        assert!(atom.eval(&[0; 11], 100));
    }

    #[test]
    fn division_by_zero_rejects() {
        let atom = Atom::Test {
            lhs: Expr::Binary {
                op: ArithOp::Div,
                lhs: Box::new(Expr::Const(4)),
                rhs: Box::new(Expr::Field(Field::at(0, Width::Byte))),
            },
            op: RelOp::Eq,
            rhs: Expr::Const(0),
        };
        assert!(!atom.eval(&[0], 1));
        assert!(atom.eval(&[5], 1));
    }

    #[test]
    fn atoms_display_in_filter_notation() {
        let ethertype = Atom::Eq {
            field: Field::at(12, Width::Half),
            mask: 0xffff,
            value: 0x0800,
        };
        assert_eq!(ethertype.to_string(), "ether[12:2] == 0x0800");
        let fragment = Atom::Eq {
            field: Field::at(20, Width::Half),
            mask: 0x1fff,
            value: 0,
        };
        assert_eq!(fragment.to_string(), "ether[20:2] & 0x1fff == 0x0000");
        let port = Atom::Ne {
            field: Field {
                base: Base::Ipv4Payload { ip: 14 },
                offset: 2,
                width: Width::Half,
            },
            mask: 0xffff,
            value: 53,
        };
        assert_eq!(port.to_string(), "ip+ihl[2:2] != 0x0035");
        let length = Atom::Test {
            lhs: Expr::WireLen,
            op: RelOp::Ge,
            rhs: Expr::Const(100),
        };
        assert_eq!(length.to_string(), "len >= 100");
    }

    /// An IPv6 header at 14 whose chain is hop-by-hop (8 bytes), then UDP.
    fn ipv6_hop_by_hop_udp() -> Vec<u8> {
        let mut frame = vec![0u8; 14 + 40 + 8 + 8];
        frame[14 + 6] = 0; // next header: hop-by-hop
        frame[54] = 17; // hop-by-hop's next header: UDP
        frame[55] = 0; // length: 8 bytes
        frame
    }

    #[test]
    fn protochain_steps_over_ipv6_extension_headers() {
        let frame = ipv6_hop_by_hop_udp();
        assert_eq!(protochain::reaches(&frame, 14, true, 17), Some(true));
        assert_eq!(protochain::reaches(&frame, 14, true, 6), Some(false));
        // libpcap compares before stepping: the hop-by-hop header itself matches.
        assert_eq!(protochain::reaches(&frame, 14, true, 0), Some(true));
        assert_eq!(protochain::reaches(&frame[..55], 14, true, 17), None);
    }

    #[test]
    fn protochain_after_ah_counts_from_the_network_header() {
        // IPv4 (IHL 5) carrying AH (length 4: 24 bytes) carrying AH again.
        // libpcap reads the second AH at network offset (4 + 2) * 4 = 24,
        // inside the first one, not at 20 + 24 = 44.
        let mut frame = vec![0u8; 14 + 20 + 24 + 24 + 8];
        frame[14] = 0x45;
        frame[14 + 9] = 51;
        frame[14 + 20] = 51; // first AH: next header AH
        frame[14 + 21] = 4; // first AH: length
        frame[14 + 24] = 6; // what libpcap takes for the second AH's next header
        frame[14 + 44] = 17; // the real second AH's next header
        assert_eq!(protochain::reaches(&frame, 14, false, 51), Some(true));
        assert_eq!(protochain::reaches(&frame, 14, false, 6), Some(true));
        assert_eq!(protochain::reaches(&frame, 14, false, 17), Some(false));
    }
}
