//! Arithmetic over packet bytes: loads with their protocol guards, and
//! binary operations with libpcap's compile-time checks.

use super::ethernet::Layout;
use super::formula::Formula;
use super::CompileError;
use crate::atom::{ArithOp, Base, Expr, Field, Width};
use crate::parse::ast::ProtoName;

/// `lhs op rhs`, folded when both are constants. A constant zero divisor
/// and a constant shift past 31 bits are refused, as libpcap does.
pub fn binary(op: ArithOp, lhs: Expr, rhs: Expr, position: usize) -> Result<Expr, CompileError> {
    if let Expr::Const(amount) = rhs {
        match op {
            ArithOp::Div if amount == 0 => {
                return Err(CompileError::value(position, "division by zero"))
            }
            ArithOp::Mod if amount == 0 => {
                return Err(CompileError::value(position, "modulus by zero"))
            }
            ArithOp::Shl | ArithOp::Shr if amount > 31 => {
                return Err(CompileError::value(position, "shift by more than 31 bits"))
            }
            _ => {}
        }
        if let Expr::Const(value) = lhs {
            if let Some(folded) = op.apply(value, amount) {
                return Ok(Expr::Const(folded));
            }
        }
    }
    Ok(Expr::Binary {
        op,
        lhs: Box::new(lhs),
        rhs: Box::new(rhs),
    })
}

/// `gen_load`: `proto[index : width]` and the guards that must hold before
/// the load is made.
///
/// - `ether`/`link`: from the start of the frame.
/// - `ip`, `ip6`, `arp`, `rarp`: from the network header, under that
///   protocol's EtherType.
/// - `tcp`, `udp`, `icmp`, … : from the end of the variable-length IPv4
///   header, only for IPv4 packets of that protocol that are first
///   fragments (libpcap has no IPv6 form of these).
/// - `icmp6`: 40 bytes after the IPv6 header start, when the next header
///   is ICMPv6.
pub fn load(
    layout: &Layout,
    proto: ProtoName,
    index: Expr,
    mut guards: Vec<Formula>,
    width: Width,
    position: usize,
) -> Result<(Expr, Vec<Formula>), CompileError> {
    let (base, offset, protocol_guards) = match proto {
        ProtoName::Link => (Base::Frame, 0, Vec::new()),
        ProtoName::Ip => (Base::Frame, layout.net(), vec![layout.ipv4()]),
        ProtoName::Ip6 => (Base::Frame, layout.net(), vec![layout.ipv6()]),
        ProtoName::Arp => (
            Base::Frame,
            layout.net(),
            vec![layout.ethertype(super::ethernet::ETHERTYPE_ARP)],
        ),
        ProtoName::Rarp => (
            Base::Frame,
            layout.net(),
            vec![layout.ethertype(super::ethernet::ETHERTYPE_REVARP)],
        ),
        ProtoName::Icmp6 => (
            Base::Frame,
            layout.net().saturating_add(40),
            vec![layout.ipv6(), layout.ipv6_next_header(58)],
        ),
        ProtoName::Tcp
        | ProtoName::Udp
        | ProtoName::Sctp
        | ProtoName::Icmp
        | ProtoName::Igmp
        | ProtoName::Igrp
        | ProtoName::Pim
        | ProtoName::Vrrp
        | ProtoName::Carp => {
            let number = transport_number(proto);
            (
                Base::Ipv4Payload { ip: layout.net() },
                0,
                vec![
                    layout.ipv4(),
                    layout.ipv4_proto_byte(number),
                    layout.ipv4_first_fragment(),
                ],
            )
        }
        ProtoName::Ah | ProtoName::Esp => {
            return Err(CompileError::unsupported(
                position,
                format!(
                    "'{}[...]': libpcap has no index operation for it",
                    proto.name()
                ),
            ))
        }
    };
    guards.extend(protocol_guards);
    let expr = match index {
        // libpcap adds the offsets as 32-bit numbers; so do we.
        Expr::Const(index) => Expr::Field(Field {
            base,
            offset: offset.wrapping_add(index),
            width,
        }),
        computed => Expr::Indexed {
            base,
            index: Box::new(if offset == 0 {
                computed
            } else {
                Expr::Binary {
                    op: ArithOp::Add,
                    lhs: Box::new(computed),
                    rhs: Box::new(Expr::Const(offset)),
                }
            }),
            width,
        },
    };
    Ok((expr, guards))
}

fn transport_number(proto: ProtoName) -> u32 {
    match proto {
        ProtoName::Tcp => 6,
        ProtoName::Udp => 17,
        ProtoName::Sctp => 132,
        ProtoName::Icmp => 1,
        ProtoName::Igmp => 2,
        ProtoName::Igrp => 9,
        ProtoName::Pim => 103,
        _ => 112, // vrrp, carp
    }
}
