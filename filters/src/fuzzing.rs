//! Fuzzing entry points: each `cargo fuzz` target in `filters/fuzz/` is one
//! call into this module, so the targets stay trivial and the decoding of
//! fuzz input is built and linted with the library.
//!
//! Not a stable API.

use crate::atom::{ArithOp, Atom, Base, Expr, Field, RelOp, Width};
use crate::classifier::{FilterSet, InstallError, Limits};
use crate::program::Program;
use crate::Tag;

/// `parse` target: compiling any UTF-8 text must not panic, and whatever
/// compiles must evaluate without panicking once it passes the install
/// limits.
pub fn parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(program) = crate::compile(text) else {
        return;
    };
    let mut set = FilterSet::with_seed(Limits::default(), 0);
    if set.insert(1, program.clone()).is_ok() {
        for frame in [&[][..], &IPV4_UDP[..], &IPV6_UDP[..]] {
            let wire_len = frame.len() as u32;
            let expected = if program.matches(frame, wire_len) {
                1
            } else {
                0
            };
            assert_eq!(set.classifier().classify(frame, wire_len), expected);
        }
    }
}

/// `classify` target: a filter set built from fuzz-chosen installs and
/// removals (of decoded atom programs, or of expressions from templates)
/// classifies a fuzz-chosen frame exactly like the naive reference after
/// every change, and a fuzz-chosen head of it like the whole frame or not
/// at all (`classify_head`).
pub fn classify(data: &[u8]) {
    let mut input = Reader::new(data);
    let ops = usize::from(input.byte() % 24);
    let mut script = Vec::with_capacity(ops);
    for _ in 0..ops {
        script.push(decode_op(&mut input));
    }
    let (frame, wire_len) = decode_frame(&mut input);
    let head = &frame[..usize::from(input.byte()).min(frame.len())];
    let mut set = FilterSet::with_seed(Limits::default(), u64::from(input.byte()));
    let mut naive = Naive::default();
    for op in script {
        match op {
            Op::Insert(tag, program) => match set.insert(tag, program.clone()) {
                Ok(_) => assert!(naive.insert(tag, program)),
                Err(InstallError::DuplicateTag(_)) => assert!(naive.has(tag)),
                Err(InstallError::Limit { .. }) => {}
                Err(other) => panic!("unexpected install error {other}"),
            },
            Op::Remove(tag) => assert_eq!(set.remove(tag).is_some(), naive.remove(tag)),
        }
        let classifier = set.classifier();
        let whole = classifier.classify(&frame, wire_len);
        assert_eq!(
            whole,
            naive.classify(&frame, wire_len),
            "frame {frame:02x?} wire_len {wire_len}"
        );
        if let Some(tag) = classifier.classify_head(head, wire_len) {
            assert_eq!(tag, whole, "head {head:02x?} of frame {frame:02x?}");
        }
    }
}

/// The reference classifier: every filter evaluated in insertion order,
/// the first strictly more specific match wins.
#[derive(Debug, Default)]
pub struct Naive {
    filters: Vec<(Tag, Program)>,
}

impl Naive {
    pub fn insert(&mut self, tag: Tag, program: Program) -> bool {
        if tag == 0 || self.has(tag) {
            return false;
        }
        self.filters.push((tag, program));
        true
    }

    pub fn has(&self, tag: Tag) -> bool {
        self.filters.iter().any(|(t, _)| *t == tag)
    }

    pub fn remove(&mut self, tag: Tag) -> bool {
        let before = self.filters.len();
        self.filters.retain(|(t, _)| *t != tag);
        self.filters.len() != before
    }

    pub fn classify(&self, frame: &[u8], wire_len: u32) -> Tag {
        let mut best: Option<(usize, Tag)> = None;
        for (tag, program) in &self.filters {
            if let Some(specificity) = program.specificity(frame, wire_len) {
                if best.is_none_or(|(b, _)| specificity > b) {
                    best = Some((specificity, *tag));
                }
            }
        }
        best.map_or(crate::NOT_INTERESTED, |(_, tag)| tag)
    }
}

enum Op {
    Insert(Tag, Program),
    Remove(Tag),
}

/// Byte cursor over fuzz input that yields zeros once exhausted.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { rest: data }
    }

    fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((first, rest)) => {
                self.rest = rest;
                *first
            }
            None => 0,
        }
    }

    fn half(&mut self) -> u32 {
        u32::from(self.byte()) << 8 | u32::from(self.byte())
    }

    fn word(&mut self) -> u32 {
        self.half() << 16 | self.half()
    }

    fn take_rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}

fn decode_op(input: &mut Reader<'_>) -> Op {
    let kind = input.byte();
    let tag = Tag::from(kind % 8) + 1;
    if kind >= 0xc0 {
        return Op::Remove(tag);
    }
    let program = if kind >= 0x80 {
        decode_expression(input).unwrap_or_else(|| decode_program(input))
    } else {
        decode_program(input)
    };
    Op::Insert(tag, program)
}

/// Expressions the front end should compile, with fuzz-chosen numbers.
fn decode_expression(input: &mut Reader<'_>) -> Option<Program> {
    let (a, b) = (input.byte(), input.byte());
    let port = u32::from(a % 4) + 50;
    let text = match input.byte() % 10 {
        0 => format!("udp dst port {port}"),
        1 => format!("tcp dst port {port}"),
        2 => format!("ip dst host 10.0.0.{b} and udp dst port {port}"),
        3 => format!("port {port}"),
        4 => format!("len > {b}"),
        5 => format!("ether[{}] = {b}", a % 64),
        6 => format!("vlan and udp port {port}"),
        7 => format!("ip6 and udp src port {port}"),
        8 => format!("ip proto {} or icmp", b % 32),
        _ => format!("tcp[13] & {b} != 0 and not port {port}"),
    };
    crate::compile(&text).ok()
}

fn decode_program(input: &mut Reader<'_>) -> Program {
    let shape = input.byte();
    let alternatives = (0..shape % 4)
        .map(|_| {
            let atoms = input.byte() % 6;
            (0..atoms).map(|_| decode_atom(input)).collect()
        })
        .collect();
    Program::new(alternatives)
}

fn decode_atom(input: &mut Reader<'_>) -> Atom {
    match input.byte() % 8 {
        0..=4 => {
            let field = decode_field(input);
            let mask = decode_mask(input, field.width);
            Atom::Eq {
                field,
                mask,
                value: decode_value(input) & mask,
            }
        }
        5 => {
            let field = decode_field(input);
            let mask = decode_mask(input, field.width);
            Atom::Ne {
                field,
                mask,
                value: decode_value(input) & mask,
            }
        }
        6 => Atom::Test {
            lhs: decode_expr(input, 3),
            op: decode_relop(input),
            rhs: decode_expr(input, 3),
        },
        _ => {
            let selector = input.byte();
            Atom::Protochain {
                net: u32::from(selector % 32),
                ipv6: selector & 0x80 != 0,
                proto: input.byte(),
            }
        }
    }
}

fn decode_field(input: &mut Reader<'_>) -> Field {
    let selector = input.byte();
    let base = if selector & 0x80 != 0 {
        Base::Ipv4Payload { ip: 14 }
    } else {
        Base::Frame
    };
    let width = match selector % 3 {
        0 => Width::Byte,
        1 => Width::Half,
        _ => Width::Word,
    };
    Field {
        base,
        offset: u32::from(input.byte() % 64),
        width,
    }
}

fn decode_mask(input: &mut Reader<'_>, width: Width) -> u32 {
    let full = match width {
        Width::Byte => 0xff,
        Width::Half => 0xffff,
        Width::Word => u32::MAX,
    };
    match input.byte() % 4 {
        0 => 0x0f,
        1 => 0x1fff & full,
        _ => full,
    }
}

fn decode_value(input: &mut Reader<'_>) -> u32 {
    match input.byte() % 4 {
        0 => u32::from(input.byte()),
        1 => input.half(),
        2 => input.word(),
        _ => u32::from(input.byte() % 4),
    }
}

fn decode_relop(input: &mut Reader<'_>) -> RelOp {
    [
        RelOp::Eq,
        RelOp::Ne,
        RelOp::Lt,
        RelOp::Le,
        RelOp::Gt,
        RelOp::Ge,
    ][usize::from(input.byte() % 6)]
}

fn decode_expr(input: &mut Reader<'_>, depth: u32) -> Expr {
    let selector = input.byte();
    match (selector % 6, depth) {
        (0, _) | (3..=5, 0) => Expr::Const(u32::from(input.byte())),
        (1, _) => Expr::WireLen,
        (2, _) => Expr::Field(decode_field(input)),
        (3, _) => Expr::Indexed {
            base: decode_field(input).base,
            index: Box::new(decode_expr(input, depth - 1)),
            width: Width::Byte,
        },
        (4, _) => Expr::Neg(Box::new(decode_expr(input, depth - 1))),
        _ => {
            let ops = [
                ArithOp::Add,
                ArithOp::Sub,
                ArithOp::Mul,
                ArithOp::Div,
                ArithOp::Mod,
                ArithOp::And,
                ArithOp::Or,
                ArithOp::Xor,
                ArithOp::Shl,
                ArithOp::Shr,
            ];
            Expr::Binary {
                op: ops[usize::from(input.byte() % 10)],
                lhs: Box::new(decode_expr(input, depth - 1)),
                rhs: Box::new(decode_expr(input, depth - 1)),
            }
        }
    }
}

/// A frame: raw bytes, or fuzz bytes written over a UDP/IPv4 or UDP/IPv6
/// template at a fuzz-chosen offset, so that header tests can hold.
fn decode_frame(input: &mut Reader<'_>) -> (Vec<u8>, u32) {
    let selector = input.byte();
    let extra_wire = u32::from(input.byte());
    let at = usize::from(input.byte() % 64);
    let bytes = input.take_rest();
    let template: &[u8] = match selector % 3 {
        0 => &[],
        1 => &IPV4_UDP,
        _ => &IPV6_UDP,
    };
    let frame = if template.is_empty() {
        bytes.to_vec()
    } else {
        let mut frame = template.to_vec();
        overwrite(&mut frame, at, bytes);
        if selector & 0x80 != 0 {
            frame.truncate(usize::from(selector & 0x7f));
        }
        frame
    };
    let wire_len = (frame.len() as u32).saturating_add(extra_wire);
    (frame, wire_len)
}

fn overwrite(frame: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let end = at.saturating_add(bytes.len());
    if frame.len() < end {
        frame.resize(end, 0);
    }
    frame[at..end].copy_from_slice(bytes);
}

/// Ethernet + IPv4 (IHL 5) + UDP 1024 → 53.
const IPV4_UDP: [u8; 42] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00, // ethernet
    0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // ipv4
    0x04, 0x00, 0, 53, 0, 8, 0, 0, // udp
];

/// Ethernet + IPv6 + UDP 1024 → 53.
const IPV6_UDP: [u8; 62] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x86, 0xdd, // ethernet
    0x60, 0, 0, 0, 0, 8, 17, 64, // ipv6: version, length 8, next header udp
    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // source
    0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, // destination
    0x04, 0x00, 0, 53, 0, 8, 0, 0, // udp
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_accept_any_bytes() {
        let mut state = 0x1234_5678_u32;
        for len in 0..400 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            classify(&data);
            parse(&data);
        }
    }
}
