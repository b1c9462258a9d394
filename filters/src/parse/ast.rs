//! The syntax tree of a pcap-filter expression.
//!
//! Every node keeps the byte position of the token it starts at (or, for a
//! value, of the value), so that lowering can name the place of a semantic
//! error. Qualifier inheritance (`host a or b`) is resolved by the parser:
//! an [`NodeKind::Id`] always carries the qualifiers it stands under.

use std::net::Ipv6Addr;

use crate::atom::{ArithOp, RelOp};

/// A protocol qualifier (`pname` in libpcap's grammar).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtoName {
    /// `link`, `ether` and their aliases.
    Link,
    Ip,
    Ip6,
    Arp,
    Rarp,
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmp6,
    Igmp,
    Igrp,
    Pim,
    Vrrp,
    Carp,
    Ah,
    Esp,
}

impl ProtoName {
    /// The word as libpcap's messages spell it.
    pub fn name(self) -> &'static str {
        match self {
            ProtoName::Link => "link",
            ProtoName::Ip => "ip",
            ProtoName::Ip6 => "ip6",
            ProtoName::Arp => "arp",
            ProtoName::Rarp => "rarp",
            ProtoName::Tcp => "tcp",
            ProtoName::Udp => "udp",
            ProtoName::Sctp => "sctp",
            ProtoName::Icmp => "icmp",
            ProtoName::Icmp6 => "icmp6",
            ProtoName::Igmp => "igmp",
            ProtoName::Igrp => "igrp",
            ProtoName::Pim => "pim",
            ProtoName::Vrrp => "vrrp",
            ProtoName::Carp => "carp",
            ProtoName::Ah => "ah",
            ProtoName::Esp => "esp",
        }
    }
}

/// A direction qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    Src,
    Dst,
    /// `src or dst`, and the default.
    SrcOrDst,
    /// `src and dst`.
    SrcAndDst,
}

/// An address-kind qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrKind {
    Host,
    Net,
    Port,
    Portrange,
    Proto,
    Protochain,
    Gateway,
}

impl AddrKind {
    pub fn name(self) -> &'static str {
        match self {
            AddrKind::Host => "host",
            AddrKind::Net => "net",
            AddrKind::Port => "port",
            AddrKind::Portrange => "portrange",
            AddrKind::Proto => "proto",
            AddrKind::Protochain => "protochain",
            AddrKind::Gateway => "gateway",
        }
    }
}

/// A qualifier and the position of the word that gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Qualified<T> {
    pub value: T,
    pub position: usize,
}

/// The qualifiers a value stands under; `None` is libpcap's "default".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Qualifiers {
    pub proto: Option<Qualified<ProtoName>>,
    pub dir: Option<Qualified<Dir>>,
    pub kind: Option<Qualified<AddrKind>>,
}

impl Qualifiers {
    pub fn proto(&self) -> Option<ProtoName> {
        self.proto.map(|q| q.value)
    }

    pub fn dir(&self) -> Dir {
        self.dir.map_or(Dir::SrcOrDst, |q| q.value)
    }

    pub fn kind(&self) -> Option<AddrKind> {
        self.kind.map(|q| q.value)
    }
}

/// The value a qualified primitive tests (`id` in libpcap's grammar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A number: a host as a 32-bit value, a port, a protocol number.
    Num(u32),
    /// Dotted IPv4 text with 1–4 parts, checked when lowered (`12.500` is
    /// refused there, as libpcap does).
    Ipv4(String),
    /// `a.b.c.d/len`.
    Ipv4Prefix {
        text: String,
        len: u32,
        len_position: usize,
    },
    /// `a.b.c.d mask m.m.m.m`.
    Ipv4Masked {
        text: String,
        mask: String,
        mask_position: usize,
    },
    /// An IPv6 address, with a prefix length if written.
    Ipv6 {
        addr: Ipv6Addr,
        prefix: Option<(u32, usize)>,
        text: String,
    },
    /// A 48-bit MAC address.
    Mac([u8; 6]),
    /// A name: a service, protocol, host or range (`20-25`); `escaped` when
    /// written with a backslash (`\tcp`).
    Name { text: String, escaped: bool },
}

impl Value {
    /// How libpcap's newer messages describe the value, for errors.
    pub fn describe(&self) -> String {
        match self {
            Value::Num(n) => format!("{n}"),
            Value::Ipv4(text) => text.clone(),
            Value::Ipv4Prefix { text, len, .. } => format!("{text}/{len}"),
            Value::Ipv4Masked { text, mask, .. } => format!("{text} mask {mask}"),
            Value::Ipv6 { text, prefix, .. } => match prefix {
                Some((len, _)) => format!("{text}/{len}"),
                None => text.clone(),
            },
            Value::Mac(mac) => mac
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
            Value::Name { text, .. } => text.clone(),
        }
    }
}

/// An operator of `byte NUM op NUM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOp {
    Eq,
    Lt,
    Gt,
    And,
    Or,
}

/// A node of the boolean expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub position: usize,
    pub kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// All of, evaluated left to right.
    And(Vec<Node>),
    /// Any of, evaluated left to right.
    Or(Vec<Node>),
    Not(Box<Node>),
    /// A qualified value: `host 1.2.3.4`, `tcp dst port 80`, `proto \udp`.
    Id {
        qualifiers: Qualifiers,
        value: Value,
    },
    /// A protocol on its own: `tcp`, `ip6`, `arp`.
    Abbrev(ProtoName),
    /// `[pqual] broadcast`.
    Broadcast(Option<ProtoName>),
    /// `[pqual] multicast`.
    Multicast(Option<ProtoName>),
    /// `less N`: wire length at most N.
    Less(u32),
    /// `greater N`: wire length at least N.
    Greater(u32),
    /// `byte N op V`.
    Byte {
        index: u32,
        op: ByteOp,
        value: u32,
    },
    /// `vlan [id]`.
    Vlan(Option<u32>),
    /// `arith relop arith`.
    Relation {
        lhs: Arith,
        op: RelOp,
        rhs: Arith,
    },
}

/// An arithmetic expression over packet bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arith {
    pub position: usize,
    pub kind: ArithKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArithKind {
    Num(u32),
    /// `len`: the wire length.
    Len,
    /// `proto[index : size]`; `size` defaults to 1.
    Load {
        proto: ProtoName,
        index: Box<Arith>,
        size: u32,
        size_position: usize,
    },
    Binary {
        op: ArithOp,
        lhs: Box<Arith>,
        rhs: Box<Arith>,
    },
    Neg(Box<Arith>),
}
