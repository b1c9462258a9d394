//! Where things are in an Ethernet (DLT_EN10MB) frame, and the guard
//! formulas libpcap puts in front of every test.
//!
//! `vlan` moves the EtherType and everything after it 4 bytes further for
//! the **rest of the expression text**, whatever the boolean structure —
//! libpcap's behaviour (`vlan or ip` tests `ip` inside the tag), kept here
//! because verdicts must agree with it. [`Layout`] holds that shift.

use super::formula::{Formula, Layer};
use crate::atom::{Atom, Base, Expr, Field, RelOp, Width};

/// Largest value of the length/type field that is a length (802.3 frame
/// carrying 802.2 LLC) rather than an EtherType.
pub const ETHERMTU: u32 = 1500;

pub const ETHERTYPE_IP: u32 = 0x0800;
pub const ETHERTYPE_IPV6: u32 = 0x86dd;
pub const ETHERTYPE_ARP: u32 = 0x0806;
pub const ETHERTYPE_REVARP: u32 = 0x8035;
/// 802.1Q, 802.1ad and the old QinQ tag protocol identifiers, in libpcap's
/// order.
pub const VLAN_TPIDS: [u32; 3] = [0x8100, 0x88a8, 0x9100];

pub const IPPROTO_FRAGMENT: u32 = 44;

/// Offsets of the link-layer type and payload, after any VLAN tags the
/// expression has stepped into so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Layout {
    /// Bytes of VLAN tags assumed so far (4 per `vlan`).
    vlan_shift: u32,
}

impl Layout {
    /// Offset of the EtherType (or 802.3 length) field.
    pub fn link_type(&self) -> u32 {
        12 + self.vlan_shift
    }

    /// Offset of the network-layer header.
    pub fn net(&self) -> u32 {
        14 + self.vlan_shift
    }

    /// Steps into one more VLAN tag.
    pub fn push_vlan(&mut self) {
        self.vlan_shift = self.vlan_shift.saturating_add(4);
    }

    /// A field of the network-layer header.
    pub fn net_field(&self, offset: u32, width: Width) -> Field {
        Field::at(self.net().saturating_add(offset), width)
    }

    /// A field of the transport header after a variable-length IPv4 header.
    pub fn ipv4_transport_field(&self, offset: u32, width: Width) -> Field {
        Field {
            base: Base::Ipv4Payload { ip: self.net() },
            offset,
            width,
        }
    }

    /// A field of the transport header after the fixed IPv6 header (libpcap
    /// does not walk extension headers for ports).
    pub fn ipv6_transport_field(&self, offset: u32, width: Width) -> Field {
        self.net_field(40u32.saturating_add(offset), width)
    }

    /// `ether proto V` on Ethernet: an EtherType compare, or for values up to
    /// 1500 an 802.2 LLC frame with that DSAP (libpcap's
    /// `gen_ether_linktype`). `None` for the SAPs libpcap matches with SNAP
    /// or IPX heuristics, which are not implemented.
    pub fn ether_proto(&self, proto: u32) -> Option<Formula> {
        const LLCSAP_IP: u32 = 0x06;
        const LLCSAP_NETBEUI: u32 = 0xf0;
        const LLCSAP_ISONS: u32 = 0xfe;
        const LLCSAP_IPX: u32 = 0xe0;
        const ETHERTYPE_ATALK: u32 = 0x809b;
        const ETHERTYPE_AARP: u32 = 0x80f3;
        let is_llc = Formula::leaf(
            Layer::LinkGuard,
            field_compare(
                Field::at(self.link_type(), Width::Half),
                RelOp::Le,
                ETHERMTU,
            ),
        );
        match proto {
            LLCSAP_IPX | ETHERTYPE_ATALK | ETHERTYPE_AARP => None,
            // OSI and NetBEUI always use 802.2: DSAP and SSAP both match.
            LLCSAP_IP | LLCSAP_NETBEUI | LLCSAP_ISONS => Some(Formula::and([
                is_llc,
                Formula::leaf(
                    Layer::LinkGuard,
                    field_equals(Field::at(self.net(), Width::Half), (proto << 8) | proto),
                ),
            ])),
            sap if sap <= ETHERMTU => Some(Formula::and([
                is_llc,
                Formula::leaf(
                    Layer::LinkGuard,
                    field_equals(Field::at(self.link_type() + 2, Width::Byte), sap),
                ),
            ])),
            ethertype => Some(self.ethertype(ethertype)),
        }
    }

    /// The EtherType is `ethertype`.
    pub fn ethertype(&self, ethertype: u32) -> Formula {
        Formula::leaf(
            Layer::LinkGuard,
            field_equals(Field::at(self.link_type(), Width::Half), ethertype),
        )
    }

    pub fn ipv4(&self) -> Formula {
        self.ethertype(ETHERTYPE_IP)
    }

    pub fn ipv6(&self) -> Formula {
        self.ethertype(ETHERTYPE_IPV6)
    }

    /// The IPv4 protocol byte is `proto` (no EtherType check).
    pub fn ipv4_proto_byte(&self, proto: u32) -> Formula {
        Formula::leaf(
            Layer::NetworkGuard,
            field_equals(self.net_field(9, Width::Byte), proto),
        )
    }

    /// The IPv6 next-header byte is `proto` (no EtherType check).
    pub fn ipv6_next_header(&self, proto: u32) -> Formula {
        Formula::leaf(
            Layer::NetworkGuard,
            field_equals(self.net_field(6, Width::Byte), proto),
        )
    }

    /// `ip proto P`.
    pub fn ipv4_proto(&self, proto: u32) -> Formula {
        Formula::and([self.ipv4(), self.ipv4_proto_byte(proto)])
    }

    /// `ip6 proto P`: the next header, or a fragment header followed by it.
    pub fn ipv6_proto(&self, proto: u32) -> Formula {
        let after_fragment = Formula::and([
            self.ipv6_next_header(IPPROTO_FRAGMENT),
            Formula::leaf(
                Layer::NetworkGuard,
                field_equals(self.net_field(40, Width::Byte), proto),
            ),
        ]);
        Formula::and([
            self.ipv6(),
            Formula::or([self.ipv6_next_header(proto), after_fragment]),
        ])
    }

    /// `proto P` with no qualifier: IPv4 or IPv6.
    pub fn ip_or_ipv6_proto(&self, proto: u32) -> Formula {
        Formula::or([self.ipv4_proto(proto), self.ipv6_proto(proto)])
    }

    /// The IPv4 packet is the first (or only) fragment: its fragment offset
    /// is zero.
    pub fn ipv4_first_fragment(&self) -> Formula {
        Formula::leaf(
            Layer::FragmentGuard,
            Atom::Eq {
                field: self.net_field(6, Width::Half),
                mask: 0x1fff,
                value: 0,
            },
        )
    }
}

/// `field == value`, as a mergeable [`Atom::Eq`] when the value fits the
/// field; otherwise a test that can never hold but still reads the field
/// (so its negation keeps libpcap's meaning).
pub fn field_equals(field: Field, value: u32) -> Atom {
    field_compare(field, RelOp::Eq, value)
}

/// `field op value`, normalized to [`Atom::Eq`]/[`Atom::Ne`] when it is a
/// masked equality.
pub fn field_compare(field: Field, op: RelOp, value: u32) -> Atom {
    super::normalize::relation(Expr::Field(field), op, Expr::Const(value))
}
