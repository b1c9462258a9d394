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
                crate::atom::protochain::walk(frame, *net, *ipv6) == Some(*proto)
            }
        }
    }
}

pub mod protochain {
    //! The bounded protocol-chain walk behind [`super::Atom::Protochain`].

    use super::{load_at, Width};

    /// Most extension headers a walk will step over before giving up.
    pub const MAX_HEADERS: usize = 16;

    /// Returns the first protocol number in the chain that is not an
    /// extension header, or `None` if the chain runs past the captured bytes
    /// or past [`MAX_HEADERS`].
    pub fn walk(frame: &[u8], net: u32, ipv6: bool) -> Option<u8> {
        let (mut next, mut at) = if ipv6 {
            (load_at(frame, net + 6, Width::Byte)? as u8, net + 40)
        } else {
            let ihl = load_at(frame, net, Width::Byte)? & 0x0f;
            (load_at(frame, net + 9, Width::Byte)? as u8, net + 4 * ihl)
        };
        for _ in 0..MAX_HEADERS {
            match next {
                // hop-by-hop, routing, fragment, destination options: (len+1)*8
                0 | 43 | 44 | 60 if ipv6 => {
                    let nh = load_at(frame, at, Width::Byte)? as u8;
                    let len = if next == 44 {
                        8
                    } else {
                        (load_at(frame, at + 1, Width::Byte)? + 1) * 8
                    };
                    next = nh;
                    at = at.checked_add(len)?;
                }
                // authentication header: (len+2)*4
                51 => {
                    let nh = load_at(frame, at, Width::Byte)? as u8;
                    let len = (load_at(frame, at + 1, Width::Byte)? + 2) * 4;
                    next = nh;
                    at = at.checked_add(len)?;
                }
                other => return Some(other),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
