//! Lowering of the syntax tree to a [`Formula`], with libpcap 1.10's
//! meaning on Ethernet (its `gencode.c`, function for function: the names
//! in comments are libpcap's).
//!
//! The tree is walked in text order because `vlan` changes the offsets of
//! everything written after it (see [`super::ethernet`]).

use super::ethernet::{
    field_compare, field_equals, Layout, ETHERTYPE_ARP, ETHERTYPE_REVARP, VLAN_TPIDS,
};
use super::formula::{Formula, Layer};
use super::{address, CompileError, Options};
use crate::atom::{Atom, Expr, Field, RelOp, Width};
use crate::parse::ast::{
    AddrKind, Arith, ArithKind, ByteOp, Dir, Node, NodeKind, ProtoName, Qualifiers, Value,
};
use crate::parse::names::{self, Transport};

const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
const IPPROTO_SCTP: u32 = 132;
const IPPROTO_ICMPV6: u32 = 58;

/// Walks the tree; holds the VLAN offset state.
pub struct Lowerer {
    layout: Layout,
    netmask: u32,
}

/// Which transports a port test covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ports {
    One(u32),
    /// TCP, UDP and SCTP (no protocol qualifier and an unambiguous name).
    Any,
}

impl Lowerer {
    pub fn new(options: &Options) -> Lowerer {
        Lowerer {
            layout: Layout::default(),
            netmask: options.netmask,
        }
    }

    pub fn node(&mut self, node: &Node) -> Result<Formula, CompileError> {
        let formula = match &node.kind {
            NodeKind::And(children) => Formula::And(self.nodes(children)?),
            NodeKind::Or(children) => Formula::Or(self.nodes(children)?),
            NodeKind::Not(inner) => Formula::not(self.node(inner)?),
            NodeKind::Id { qualifiers, value } => self.id(qualifiers, value, node.position)?,
            NodeKind::Abbrev(proto) => self.abbrev(*proto, node.position)?,
            NodeKind::Broadcast(proto) => self.broadcast(*proto, node.position)?,
            NodeKind::Multicast(proto) => self.multicast(*proto, node.position)?,
            NodeKind::Less(length) => wire_length(RelOp::Le, *length),
            NodeKind::Greater(length) => wire_length(RelOp::Ge, *length),
            NodeKind::Byte { index, op, value } => byte_test(*index, *op, *value),
            NodeKind::Vlan(id) => self.vlan(*id, node.position)?,
            NodeKind::Relation { lhs, op, rhs } => self.relation(lhs, *op, rhs)?,
        };
        Ok(Formula::At(node.position, Box::new(formula)))
    }

    fn nodes(&mut self, nodes: &[Node]) -> Result<Vec<Formula>, CompileError> {
        nodes.iter().map(|node| self.node(node)).collect()
    }

    // ---- protocols on their own ----

    /// `gen_proto_abbrev`: `tcp`, `ip6`, `arp`, ….
    fn abbrev(&self, proto: ProtoName, position: usize) -> Result<Formula, CompileError> {
        let l = &self.layout;
        Ok(match proto {
            ProtoName::Link => {
                return Err(CompileError::syntax(
                    position,
                    "'link'/'ether' alone is not a test; use 'ether proto', 'ether host' \
                     or 'ether[...]'",
                ))
            }
            ProtoName::Ip => l.ipv4(),
            ProtoName::Ip6 => l.ipv6(),
            ProtoName::Arp => l.ethertype(ETHERTYPE_ARP),
            ProtoName::Rarp => l.ethertype(ETHERTYPE_REVARP),
            ProtoName::Tcp => l.ip_or_ipv6_proto(IPPROTO_TCP),
            ProtoName::Udp => l.ip_or_ipv6_proto(IPPROTO_UDP),
            ProtoName::Sctp => l.ip_or_ipv6_proto(IPPROTO_SCTP),
            ProtoName::Icmp => l.ipv4_proto(1),
            ProtoName::Icmp6 => l.ipv6_proto(IPPROTO_ICMPV6),
            ProtoName::Igmp => l.ipv4_proto(2),
            ProtoName::Igrp => l.ipv4_proto(9),
            ProtoName::Pim => l.ip_or_ipv6_proto(103),
            ProtoName::Vrrp | ProtoName::Carp => l.ipv4_proto(112),
            ProtoName::Ah => l.ip_or_ipv6_proto(51),
            ProtoName::Esp => l.ip_or_ipv6_proto(50),
        })
    }

    // ---- qualified values ----

    fn id(&self, q: &Qualifiers, value: &Value, position: usize) -> Result<Formula, CompileError> {
        if let Some(kind) = q.kind {
            if kind.value == AddrKind::Gateway {
                return Err(CompileError::unsupported(
                    kind.position,
                    "'gateway' needs host name resolution, which the server does not do",
                ));
            }
        }
        match value {
            Value::Num(number) => self.number(q, *number, position),
            Value::Ipv4(text) => self.ipv4_host(q, text, position),
            Value::Ipv4Prefix {
                text,
                len,
                len_position,
            } => {
                self.check_mask_qualifier(q, value, position, "prefix length")?;
                let (net, mask) = address::ipv4_prefix(text, *len, position, *len_position)?;
                self.host(q, net, mask, AddrKind::Net, position)
            }
            Value::Ipv4Masked {
                text,
                mask,
                mask_position,
            } => {
                self.check_mask_qualifier(q, value, position, "netmask")?;
                let (net, mask) = address::ipv4_masked(text, mask, position, *mask_position)?;
                self.host(q, net, mask, AddrKind::Net, position)
            }
            Value::Ipv6 { addr, prefix, .. } => self.ipv6(q, value, *addr, *prefix, position),
            Value::Mac(mac) => self.mac(q, mac, position),
            Value::Name { text, .. } => self.name(q, text, position),
        }
    }

    /// `gen_ncode` for a number: a host as a 32-bit value, a port, a
    /// protocol.
    fn number(
        &self,
        q: &Qualifiers,
        number: u32,
        position: usize,
    ) -> Result<Formula, CompileError> {
        match q.kind() {
            None | Some(AddrKind::Host) | Some(AddrKind::Net) => {
                if q.proto() == Some(ProtoName::Link) {
                    return Err(CompileError::value(
                        position,
                        format!("illegal link-layer address '{number}'"),
                    ));
                }
                let kind = q.kind().unwrap_or(AddrKind::Host);
                let (addr, mask) = if kind == AddrKind::Net {
                    address::promote_short_net(number)
                } else {
                    (number, u32::MAX)
                };
                self.host(q, addr, mask, kind, position)
            }
            Some(AddrKind::Port) => {
                let ports = self.port_protocols(q, None, position)?;
                check_port(number, position)?;
                Ok(self.ports(ports, q.dir(), number, number))
            }
            Some(AddrKind::Portrange) => {
                let ports = self.port_protocols(q, None, position)?;
                check_port(number, position)?;
                Ok(self.ports(ports, q.dir(), number, number))
            }
            Some(AddrKind::Proto) => self.proto(q, number, position),
            Some(AddrKind::Protochain) => self.protochain(q, number, position),
            Some(AddrKind::Gateway) => unreachable!("refused in id()"),
        }
    }

    /// A dotted IPv4 address (`HID`).
    fn ipv4_host(
        &self,
        q: &Qualifiers,
        text: &str,
        position: usize,
    ) -> Result<Formula, CompileError> {
        if let Some(kind) = q.kind {
            if !matches!(kind.value, AddrKind::Host | AddrKind::Net) {
                return Err(CompileError::qualifier(
                    kind.position,
                    format!("'{}' qualifier applied to IPv4 address", kind.value.name()),
                ));
            }
        }
        let (addr, bits) = address::ipv4(text, position)?;
        if q.proto() == Some(ProtoName::Link) {
            return Err(CompileError::value(
                position,
                format!("illegal link-layer address '{text}'"),
            ));
        }
        // libpcap "promotes" a short address: 10.1 is 10.1.0.0 under a /16 mask.
        let mask = if bits == 32 {
            u32::MAX
        } else {
            u32::MAX << (32 - bits)
        };
        let addr = if bits == 32 {
            addr
        } else {
            addr << (32 - bits)
        };
        let kind = q.kind().unwrap_or(AddrKind::Host);
        self.host_described(q, addr, mask, kind, position, "IPv4 address")
    }

    /// `gen_mcode`: a prefix or netmask needs `net`.
    fn check_mask_qualifier(
        &self,
        q: &Qualifiers,
        value: &Value,
        position: usize,
        what: &str,
    ) -> Result<(), CompileError> {
        match q.kind {
            Some(kind) if kind.value == AddrKind::Net => Ok(()),
            Some(kind) if kind.value == AddrKind::Host => Err(CompileError::qualifier(
                kind.position,
                format!(
                    "'host' is not a valid qualifier for '{}': a {what} needs 'net'",
                    value.describe()
                ),
            )),
            Some(kind) => Err(CompileError::qualifier(
                kind.position,
                format!(
                    "'{}' qualifier applied to IPv4 address and {what}",
                    kind.value.name()
                ),
            )),
            None => Err(CompileError::qualifier(
                position,
                format!(
                    "a {what} needs the 'net' qualifier: write 'net {}'",
                    value.describe()
                ),
            )),
        }
    }

    /// `gen_host`: an IPv4 address under a mask.
    fn host(
        &self,
        q: &Qualifiers,
        addr: u32,
        mask: u32,
        kind: AddrKind,
        position: usize,
    ) -> Result<Formula, CompileError> {
        let value = if kind == AddrKind::Net {
            "IPv4 prefix"
        } else {
            "IPv4 address"
        };
        self.host_described(q, addr, mask, kind, position, value)
    }

    /// [`Self::host`], with the value described as `value` in errors.
    fn host_described(
        &self,
        q: &Qualifiers,
        addr: u32,
        mask: u32,
        kind: AddrKind,
        position: usize,
        value: &str,
    ) -> Result<Formula, CompileError> {
        let what = format!("{} <{value}>", kind.name());
        let what = what.as_str();
        let dir = q.dir();
        Ok(match q.proto() {
            None => Formula::or([
                self.hostop(addr, mask, dir, super::ethernet::ETHERTYPE_IP, 12, 16),
                self.hostop(addr, mask, dir, ETHERTYPE_ARP, 14, 24),
                self.hostop(addr, mask, dir, ETHERTYPE_REVARP, 14, 24),
            ]),
            Some(ProtoName::Ip) => {
                self.hostop(addr, mask, dir, super::ethernet::ETHERTYPE_IP, 12, 16)
            }
            Some(ProtoName::Arp) => self.hostop(addr, mask, dir, ETHERTYPE_ARP, 14, 24),
            Some(ProtoName::Rarp) => self.hostop(addr, mask, dir, ETHERTYPE_REVARP, 14, 24),
            Some(other) => {
                let at = q.proto.map_or(position, |p| p.position);
                return Err(invalid_qualifier(at, other, what));
            }
        })
    }

    /// `gen_hostop`: the EtherType, then the source and/or destination
    /// address word.
    fn hostop(
        &self,
        addr: u32,
        mask: u32,
        dir: Dir,
        ethertype: u32,
        src: u32,
        dst: u32,
    ) -> Formula {
        let word = |offset: u32| {
            let field = self.layout.net_field(offset, Width::Word);
            masked_word(field, addr, mask)
        };
        let test = match dir {
            Dir::Src => word(src),
            Dir::Dst => word(dst),
            Dir::SrcAndDst => Formula::and([word(src), word(dst)]),
            Dir::SrcOrDst => Formula::or([word(src), word(dst)]),
        };
        Formula::and([self.layout.ethertype(ethertype), test])
    }

    /// `gen_mcode6`: an IPv6 address or prefix.
    fn ipv6(
        &self,
        q: &Qualifiers,
        value: &Value,
        addr: std::net::Ipv6Addr,
        prefix: Option<(u32, usize)>,
        position: usize,
    ) -> Result<Formula, CompileError> {
        let with_prefix = if prefix.is_some() {
            " and prefix length"
        } else {
            ""
        };
        match q.kind {
            Some(kind) if !matches!(kind.value, AddrKind::Host | AddrKind::Net) => {
                return Err(CompileError::qualifier(
                    kind.position,
                    format!(
                        "'{}' qualifier applied to IPv6 address{with_prefix}",
                        kind.value.name()
                    ),
                ))
            }
            _ => {}
        }
        let kind = q.kind().unwrap_or(AddrKind::Host);
        let (len, len_position) = prefix.unwrap_or((128, position));
        if kind == AddrKind::Host && len != 128 {
            let at = q.kind.map_or(position, |k| k.position);
            return Err(CompileError::qualifier(
                at,
                format!(
                    "'host' is not a valid qualifier for '{}': a prefix length needs 'net'",
                    value.describe()
                ),
            ));
        }
        let mask = address::ipv6_prefix(addr, len, position, len_position)?;
        let what = if kind == AddrKind::Net {
            "net <IPv6 prefix>"
        } else {
            "host <IPv6 address>"
        };
        match q.proto() {
            None | Some(ProtoName::Ip6) => Ok(self.hostop6(addr, mask, q.dir())),
            Some(other) => {
                let at = q.proto.map_or(position, |p| p.position);
                Err(invalid_qualifier(at, other, what))
            }
        }
    }

    /// `gen_hostop6`: the EtherType, then the four address words (a word
    /// under a zero mask is no test at all).
    fn hostop6(&self, addr: std::net::Ipv6Addr, mask: [u32; 4], dir: Dir) -> Formula {
        let octets = addr.octets();
        let words: Vec<u32> = octets
            .chunks_exact(4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let address_at = |offset: u32| {
            Formula::and((0..4).map(|i| {
                let field = self.layout.net_field(offset + 4 * i as u32, Width::Word);
                masked_word(field, words[i], mask[i])
            }))
        };
        let test = match dir {
            Dir::Src => address_at(8),
            Dir::Dst => address_at(24),
            Dir::SrcAndDst => Formula::and([address_at(8), address_at(24)]),
            Dir::SrcOrDst => Formula::or([address_at(8), address_at(24)]),
        };
        Formula::and([self.layout.ipv6(), test])
    }

    /// `gen_ecode`: a MAC address, only under `ether`/`link`.
    fn mac(&self, q: &Qualifiers, mac: &[u8; 6], position: usize) -> Result<Formula, CompileError> {
        let is_host = matches!(q.kind(), None | Some(AddrKind::Host));
        if !is_host || q.proto() != Some(ProtoName::Link) {
            return Err(CompileError::qualifier(
                position,
                "Ethernet address used in non-ether expression: write 'ether host', \
                 'ether src' or 'ether dst'",
            ));
        }
        let at = |offset: u32| {
            Formula::and([
                Formula::leaf(
                    Layer::Field,
                    field_equals(
                        Field::at(offset, Width::Half),
                        u32::from(u16::from_be_bytes([mac[0], mac[1]])),
                    ),
                ),
                Formula::leaf(
                    Layer::Field,
                    field_equals(
                        Field::at(offset + 2, Width::Word),
                        u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]),
                    ),
                ),
            ])
        };
        Ok(match q.dir() {
            Dir::Src => at(6),
            Dir::Dst => at(0),
            Dir::SrcAndDst => Formula::and([at(6), at(0)]),
            Dir::SrcOrDst => Formula::or([at(6), at(0)]),
        })
    }

    /// `gen_scode`: a name — a service, protocol or port range; host and
    /// network names are not resolved.
    fn name(&self, q: &Qualifiers, name: &str, position: usize) -> Result<Formula, CompileError> {
        match q.kind() {
            None | Some(AddrKind::Host) | Some(AddrKind::Net) => Err(CompileError::unsupported(
                position,
                format!(
                    "'{name}' is a name; the server does not resolve host or network names, \
                     write the address"
                ),
            )),
            Some(AddrKind::Port) => {
                let (port, transport) = names::service(name).ok_or(CompileError::UnknownName {
                    position,
                    kind: "port",
                    name: name.to_string(),
                })?;
                let ports = self.port_protocols(q, Some((name, transport)), position)?;
                Ok(self.ports(ports, q.dir(), u32::from(port), u32::from(port)))
            }
            Some(AddrKind::Portrange) => {
                let (low, high, transport) = port_range(name, position)?;
                let ports = self.port_protocols(q, transport.map(|t| (name, t)), position)?;
                Ok(self.ports(ports, q.dir(), low, high))
            }
            Some(AddrKind::Proto) | Some(AddrKind::Protochain) => {
                let number = lookup_proto(q, name, position)?;
                if q.kind() == Some(AddrKind::Proto) {
                    self.proto(q, number, position)
                } else {
                    self.protochain(q, number, position)
                }
            }
            Some(AddrKind::Gateway) => unreachable!("refused in id()"),
        }
    }

    // ---- ports ----

    /// Which transport protocols `port`/`portrange` tests under `q`; a
    /// service name restricts them to what it is registered for.
    fn port_protocols(
        &self,
        q: &Qualifiers,
        service: Option<(&str, Transport)>,
        position: usize,
    ) -> Result<Ports, CompileError> {
        let kind = q.kind().map_or("port", AddrKind::name);
        let wanted = match q.proto() {
            None => None,
            Some(ProtoName::Tcp) => Some(IPPROTO_TCP),
            Some(ProtoName::Udp) => Some(IPPROTO_UDP),
            Some(ProtoName::Sctp) => Some(IPPROTO_SCTP),
            Some(other) => {
                let at = q.proto.map_or(position, |p| p.position);
                return Err(invalid_qualifier(at, other, kind));
            }
        };
        let registered = match service {
            None | Some((_, Transport::Both)) => None,
            Some((_, Transport::Tcp)) => Some(IPPROTO_TCP),
            Some((_, Transport::Udp)) => Some(IPPROTO_UDP),
        };
        match (wanted, registered) {
            (Some(want), Some(have)) if want != have => {
                let (name, _) = service.unwrap_or(("", Transport::Both));
                let have = if have == IPPROTO_TCP { "tcp" } else { "udp" };
                Err(CompileError::qualifier(
                    position,
                    format!("port '{name}' is {have} only"),
                ))
            }
            (Some(proto), _) | (None, Some(proto)) => Ok(Ports::One(proto)),
            (None, None) => Ok(Ports::Any),
        }
    }

    /// `gen_port`/`gen_portrange` or'ed with their IPv6 forms.
    fn ports(&self, ports: Ports, dir: Dir, low: u32, high: u32) -> Formula {
        let protos: Vec<u32> = match ports {
            Ports::One(proto) => vec![proto],
            Ports::Any => vec![IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP],
        };
        let l = &self.layout;
        let ipv4 = Formula::and([
            l.ipv4(),
            Formula::or(protos.iter().map(|proto| {
                Formula::and([
                    l.ipv4_proto_byte(*proto),
                    l.ipv4_first_fragment(),
                    port_dir(dir, |offset| {
                        port_test(l.ipv4_transport_field(offset, Width::Half), low, high)
                    }),
                ])
            })),
        ]);
        let ipv6 = Formula::and([
            l.ipv6(),
            Formula::or(protos.iter().map(|proto| {
                Formula::and([
                    l.ipv6_next_header(*proto),
                    port_dir(dir, |offset| {
                        port_test(l.ipv6_transport_field(offset, Width::Half), low, high)
                    }),
                ])
            })),
        ]);
        Formula::or([ipv4, ipv6])
    }

    // ---- protocols ----

    /// `gen_proto`: `proto N` under a protocol qualifier.
    fn proto(&self, q: &Qualifiers, number: u32, position: usize) -> Result<Formula, CompileError> {
        let l = &self.layout;
        match q.proto() {
            None => Ok(l.ip_or_ipv6_proto(number)),
            Some(ProtoName::Ip) => Ok(l.ipv4_proto(number)),
            Some(ProtoName::Ip6) => Ok(l.ipv6_proto(number)),
            Some(ProtoName::Link) => l.ether_proto(number).ok_or_else(|| {
                CompileError::unsupported(
                    position,
                    format!("'ether proto {number}' (IPX/AppleTalk SNAP matching)"),
                )
            }),
            Some(other) => {
                let at = q.proto.map_or(position, |p| p.position);
                Err(invalid_qualifier(at, other, "proto"))
            }
        }
    }

    /// `gen_protochain`.
    fn protochain(
        &self,
        q: &Qualifiers,
        number: u32,
        position: usize,
    ) -> Result<Formula, CompileError> {
        let l = &self.layout;
        let chain = |ipv6: bool| {
            let guard = if ipv6 { l.ipv6() } else { l.ipv4() };
            // The walk compares one byte: a larger number never matches.
            let walk = match u8::try_from(number) {
                Ok(proto) => Formula::leaf(
                    Layer::Field,
                    Atom::Protochain {
                        net: l.net(),
                        ipv6,
                        proto,
                    },
                ),
                Err(_) => Formula::Const(false),
            };
            Formula::and([guard, walk])
        };
        match q.proto() {
            None => Ok(Formula::or([chain(false), chain(true)])),
            Some(ProtoName::Ip) => Ok(chain(false)),
            Some(ProtoName::Ip6) => Ok(chain(true)),
            Some(other) => {
                let at = q.proto.map_or(position, |p| p.position);
                Err(invalid_qualifier(at, other, "protochain"))
            }
        }
    }

    // ---- other primitives ----

    /// `gen_broadcast`.
    fn broadcast(
        &self,
        proto: Option<ProtoName>,
        position: usize,
    ) -> Result<Formula, CompileError> {
        match proto {
            None | Some(ProtoName::Link) => Ok(Formula::and([
                Formula::leaf(
                    Layer::Field,
                    field_equals(Field::at(0, Width::Half), 0xffff),
                ),
                Formula::leaf(
                    Layer::Field,
                    field_equals(Field::at(2, Width::Word), 0xffff_ffff),
                ),
            ])),
            Some(ProtoName::Ip) => {
                // All-zeros or all-ones host part under the netmask given to
                // the compiler (0 by default, as tcpdump offline).
                let host_mask = !self.netmask;
                let dst = self.layout.net_field(16, Width::Word);
                Ok(Formula::and([
                    self.layout.ipv4(),
                    Formula::or([
                        masked_word(dst, 0, host_mask),
                        masked_word(dst, host_mask, host_mask),
                    ]),
                ]))
            }
            Some(other) => Err(CompileError::qualifier(
                position,
                format!(
                    "'{}' is not a valid qualifier for 'broadcast'; only 'ether' and 'ip' are",
                    other.name()
                ),
            )),
        }
    }

    /// `gen_multicast`.
    fn multicast(
        &self,
        proto: Option<ProtoName>,
        position: usize,
    ) -> Result<Formula, CompileError> {
        let l = &self.layout;
        match proto {
            None | Some(ProtoName::Link) => Ok(Formula::leaf(
                Layer::Field,
                Atom::Eq {
                    field: Field::at(0, Width::Byte),
                    mask: 1,
                    value: 1,
                },
            )),
            Some(ProtoName::Ip) => Ok(Formula::and([
                l.ipv4(),
                Formula::leaf(
                    Layer::Field,
                    field_compare(l.net_field(16, Width::Byte), RelOp::Ge, 224),
                ),
            ])),
            Some(ProtoName::Ip6) => Ok(Formula::and([
                l.ipv6(),
                Formula::leaf(
                    Layer::Field,
                    field_equals(l.net_field(24, Width::Byte), 255),
                ),
            ])),
            Some(other) => Err(CompileError::qualifier(
                position,
                format!(
                    "'{}' is not a valid qualifier for 'multicast'; only 'ether', 'ip' and \
                     'ip6' are",
                    other.name()
                ),
            )),
        }
    }

    /// `gen_vlan` without BPF extensions: a VLAN tag protocol identifier,
    /// then (with an ID) the tag's 12-bit VLAN ID; every later offset moves
    /// 4 bytes.
    fn vlan(&mut self, id: Option<u32>, position: usize) -> Result<Formula, CompileError> {
        let l = self.layout;
        let tpid = Formula::or(VLAN_TPIDS.iter().map(|tpid| l.ethertype(*tpid)));
        let formula = match id {
            None => tpid,
            Some(id) if id > 0x0fff => {
                return Err(CompileError::value(
                    position,
                    format!("VLAN tag {id} greater than maximum 4095"),
                ))
            }
            Some(id) => Formula::and([
                tpid,
                Formula::leaf(
                    Layer::LinkGuard,
                    Atom::Eq {
                        field: Field::at(l.net(), Width::Half),
                        mask: 0x0fff,
                        value: id,
                    },
                ),
            ]),
        };
        self.layout.push_vlan();
        Ok(formula)
    }

    // ---- arithmetic ----

    /// `gen_relation`: the guards of both sides, then the comparison.
    fn relation(&self, lhs: &Arith, op: RelOp, rhs: &Arith) -> Result<Formula, CompileError> {
        let (lhs_expr, mut guards) = self.arith(lhs)?;
        let (rhs_expr, rhs_guards) = self.arith(rhs)?;
        guards.extend(rhs_guards);
        let test = match (&lhs_expr, &rhs_expr) {
            (Expr::Const(a), Expr::Const(b)) => Formula::Const(op.apply(*a, *b)),
            _ => Formula::leaf(
                Layer::Field,
                super::normalize::relation(lhs_expr, op, rhs_expr),
            ),
        };
        guards.push(test);
        Ok(Formula::And(guards))
    }

    /// An arithmetic expression and the guards its loads need.
    fn arith(&self, arith: &Arith) -> Result<(Expr, Vec<Formula>), CompileError> {
        match &arith.kind {
            ArithKind::Num(value) => Ok((Expr::Const(*value), Vec::new())),
            ArithKind::Len => Ok((Expr::WireLen, Vec::new())),
            ArithKind::Neg(inner) => {
                let (expr, guards) = self.arith(inner)?;
                Ok(match expr {
                    Expr::Const(value) => (Expr::Const(value.wrapping_neg()), guards),
                    other => (Expr::Neg(Box::new(other)), guards),
                })
            }
            ArithKind::Binary { op, lhs, rhs } => {
                let (lhs_expr, mut guards) = self.arith(lhs)?;
                let (rhs_expr, rhs_guards) = self.arith(rhs)?;
                guards.extend(rhs_guards);
                let expr = super::arith::binary(*op, lhs_expr, rhs_expr, arith.position)?;
                Ok((expr, guards))
            }
            ArithKind::Load {
                proto,
                index,
                size,
                size_position,
            } => {
                let width = Width::from_bytes(*size).ok_or_else(|| {
                    CompileError::value(
                        *size_position,
                        format!("data size must be 1, 2, or 4, not {size}"),
                    )
                })?;
                let (index_expr, index_guards) = self.arith(index)?;
                super::arith::load(
                    &self.layout,
                    *proto,
                    index_expr,
                    index_guards,
                    width,
                    arith.position,
                )
            }
        }
    }
}

/// `(word & mask) == addr & mask`; no test at all under a zero mask (libpcap's
/// optimizer removes the load then).
fn masked_word(field: Field, addr: u32, mask: u32) -> Formula {
    if mask == 0 {
        return Formula::Const(true);
    }
    Formula::leaf(
        Layer::Field,
        Atom::Eq {
            field,
            mask,
            value: addr & mask,
        },
    )
}

/// One port or a range; a one-port range is the equality.
fn port_test(field: Field, low: u32, high: u32) -> Formula {
    let (low, high) = (low.min(high), low.max(high));
    if low == high {
        return Formula::leaf(Layer::Field, field_equals(field, low));
    }
    Formula::and([
        Formula::leaf(Layer::Field, field_compare(field, RelOp::Ge, low)),
        Formula::leaf(Layer::Field, field_compare(field, RelOp::Le, high)),
    ])
}

/// Source port at offset 0, destination at 2.
fn port_dir(dir: Dir, test: impl Fn(u32) -> Formula) -> Formula {
    match dir {
        Dir::Src => test(0),
        Dir::Dst => test(2),
        Dir::SrcAndDst => Formula::and([test(0), test(2)]),
        Dir::SrcOrDst => Formula::or([test(0), test(2)]),
    }
}

fn check_port(port: u32, position: usize) -> Result<(), CompileError> {
    if port > 65535 {
        return Err(CompileError::value(
            position,
            format!("illegal port number {port} > 65535"),
        ));
    }
    Ok(())
}

/// `pcap_nametoportrange`: `low-high` as numbers or service names. The
/// transport is known only when both ends are names of one protocol.
fn port_range(text: &str, position: usize) -> Result<(u32, u32, Option<Transport>), CompileError> {
    let unknown = || CompileError::UnknownName {
        position,
        kind: "port range",
        name: text.to_string(),
    };
    let (low, high) = text.split_once('-').ok_or_else(unknown)?;
    if let (Ok(low), Ok(high)) = (low.parse::<u32>(), high.parse::<u32>()) {
        check_port(low, position)?;
        check_port(high, position)?;
        return Ok((low, high, None));
    }
    let (low_port, low_transport) = names::service(low).ok_or_else(unknown)?;
    let (high_port, high_transport) = names::service(high).ok_or_else(unknown)?;
    let transport = (low_transport == high_transport).then_some(low_transport);
    Ok((u32::from(low_port), u32::from(high_port), transport))
}

/// `lookup_proto`: a protocol name under `proto`/`protochain`.
fn lookup_proto(q: &Qualifiers, name: &str, position: usize) -> Result<u32, CompileError> {
    match q.proto() {
        None | Some(ProtoName::Ip) | Some(ProtoName::Ip6) => {
            names::ip_protocol(name).ok_or(CompileError::UnknownName {
                position,
                kind: "ip proto",
                name: name.to_string(),
            })
        }
        Some(ProtoName::Link) => names::ether_protocol(name).ok_or(CompileError::UnknownName {
            position,
            kind: "ether proto",
            name: name.to_string(),
        }),
        Some(other) => {
            let kind = q.kind().map_or("proto", AddrKind::name);
            let at = q.proto.map_or(position, |p| p.position);
            Err(invalid_qualifier(at, other, kind))
        }
    }
}

fn invalid_qualifier(position: usize, proto: ProtoName, what: &str) -> CompileError {
    CompileError::qualifier(
        position,
        format!("'{}' is not a valid qualifier for '{what}'", proto.name()),
    )
}

fn wire_length(op: RelOp, length: u32) -> Formula {
    Formula::leaf(
        Layer::Field,
        Atom::Test {
            lhs: Expr::WireLen,
            op,
            rhs: Expr::Const(length),
        },
    )
}

/// `gen_byteop`. libpcap compiles `byte N & V` and `byte N | V` to an ALU
/// operation on the accumulator **without loading byte N** (the accumulator
/// is 0 at that point), so they are constant: `& V` never matches, `| V`
/// always does when V is not 0. Kept for agreement with libpcap.
fn byte_test(index: u32, op: ByteOp, value: u32) -> Formula {
    let field = Field::at(index, Width::Byte);
    let relation = |op: RelOp| Formula::leaf(Layer::Field, field_compare(field, op, value));
    match op {
        ByteOp::Eq => relation(RelOp::Eq),
        ByteOp::Lt => relation(RelOp::Lt),
        ByteOp::Gt => relation(RelOp::Gt),
        ByteOp::And => Formula::Const(false),
        ByteOp::Or => Formula::Const(value != 0),
    }
}
