//! ARP for IPv4 over Ethernet (RFC 826), the only hardware/protocol pair
//! the control plane answers.
//!
//! The body is 28 bytes. What follows it in the frame is Ethernet padding for
//! the standard operations, and the extended-ARP body (see
//! [`crate::host::xarp`]) for the experimental ones; [`ArpRepr::parse`]
//! returns it untouched and lets the operation decide.

use std::net::Ipv4Addr;

use super::ethernet::{self, EthernetRepr, ETHERTYPE_ARP, ETHERTYPE_IPV4};
use super::{put, MacAddr, Reader, WireError};

/// Length of the ARP body for Ethernet/IPv4.
pub const BODY_LEN: usize = 28;

/// Hardware type Ethernet (RFC 826, IANA "Hardware Types").
const HTYPE_ETHERNET: u16 = 1;

/// ARP opcodes (IANA "Operation Codes"; experimental ones RFC 5494 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// 1: who has the target IP?
    Request,
    /// 2: the sender IP is at the sender MAC.
    Reply,
    /// 24 (`OP_EXP1`): extended-ARP request.
    Exp1,
    /// 25 (`OP_EXP2`): extended-ARP reply.
    Exp2,
    /// Any other opcode (RARP, InARP, …): parsed, never answered.
    Other(u16),
}

impl ArpOperation {
    pub const fn from_u16(code: u16) -> ArpOperation {
        match code {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            24 => ArpOperation::Exp1,
            25 => ArpOperation::Exp2,
            other => ArpOperation::Other(other),
        }
    }

    pub const fn to_u16(self) -> u16 {
        match self {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Exp1 => 24,
            ArpOperation::Exp2 => 25,
            ArpOperation::Other(code) => code,
        }
    }
}

/// An ARP packet for IPv4 over Ethernet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub operation: ArpOperation,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// The ARP body at the start of `payload` (an Ethernet payload) and the
    /// bytes after it: padding, or an extended-ARP body.
    pub fn parse(payload: &[u8]) -> Result<(ArpRepr, &[u8]), WireError> {
        let mut r = Reader::new(payload);
        if r.u16()? != HTYPE_ETHERNET {
            return Err(WireError::ArpHardwareType);
        }
        if r.u16()? != ETHERTYPE_IPV4 {
            return Err(WireError::ArpProtocolType);
        }
        if r.array::<2>()? != [6, 4] {
            return Err(WireError::ArpAddressLength);
        }
        let repr = ArpRepr {
            operation: ArpOperation::from_u16(r.u16()?),
            sender_mac: r.mac()?,
            sender_ip: r.ipv4()?,
            target_mac: r.mac()?,
            target_ip: r.ipv4()?,
        };
        Ok((repr, r.rest()))
    }

    /// A whole frame: its Ethernet header, the ARP body and what follows.
    pub fn parse_frame(frame: &[u8]) -> Result<(EthernetRepr, ArpRepr, &[u8]), WireError> {
        let (eth, payload) = EthernetRepr::parse(frame)?;
        if eth.ethertype != ETHERTYPE_ARP {
            return Err(WireError::WrongEtherType);
        }
        let (arp, rest) = ArpRepr::parse(payload)?;
        Ok((eth, arp, rest))
    }

    pub const fn buffer_len(&self) -> usize {
        BODY_LEN
    }

    /// Writes the 28-byte body at the start of `out`.
    pub fn emit(&self, out: &mut [u8]) -> Result<(), WireError> {
        let mut body = [0u8; BODY_LEN];
        body[0..2].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        body[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        body[4] = 6;
        body[5] = 4;
        body[6..8].copy_from_slice(&self.operation.to_u16().to_be_bytes());
        body[8..14].copy_from_slice(&self.sender_mac.0);
        body[14..18].copy_from_slice(&self.sender_ip.octets());
        body[18..24].copy_from_slice(&self.target_mac.0);
        body[24..28].copy_from_slice(&self.target_ip.octets());
        put(out, &body)
    }

    /// Writes a whole frame — Ethernet header, this body, `extension` —
    /// padded to the Ethernet minimum, and returns its length.
    pub fn emit_frame(
        &self,
        eth_dst: MacAddr,
        eth_src: MacAddr,
        extension: &[u8],
        out: &mut [u8],
    ) -> Result<usize, WireError> {
        let eth = EthernetRepr {
            dst: eth_dst,
            src: eth_src,
            ethertype: ETHERTYPE_ARP,
        };
        eth.emit(out)?;
        let body = out
            .get_mut(ethernet::HEADER_LEN..)
            .ok_or(WireError::BufferTooSmall)?;
        self.emit(body)?;
        let ext = body.get_mut(BODY_LEN..).ok_or(WireError::BufferTooSmall)?;
        put(ext, extension)?;
        let len = ethernet::HEADER_LEN + BODY_LEN + extension.len();
        ethernet::pad_to_minimum(out, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request from 10.0.0.1 (02:00:00:00:00:01) for 10.0.0.2, with the
    /// 18 bytes of padding a real 60-byte frame carries.
    const REQUEST: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08,
        0x06, // eth
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype ptype hlen plen op
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 10, 0, 0, 1, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 10, 0, 0, 2, // target
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    fn request_repr() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            sender_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            sender_ip: Ipv4Addr::new(10, 0, 0, 1),
            target_mac: MacAddr([0; 6]),
            target_ip: Ipv4Addr::new(10, 0, 0, 2),
        }
    }

    #[test]
    fn deconstruct() {
        let (eth, arp, rest) = ArpRepr::parse_frame(&REQUEST).unwrap();
        assert_eq!(eth.src, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(arp, request_repr());
        assert_eq!(rest.len(), 18);
    }

    #[test]
    fn construct() {
        let mut out = [0xeeu8; 64];
        let len = request_repr()
            .emit_frame(
                super::super::BROADCAST,
                MacAddr([2, 0, 0, 0, 0, 1]),
                &[],
                &mut out,
            )
            .unwrap();
        assert_eq!(len, 60);
        assert_eq!(&out[..60], &REQUEST[..]);
    }

    #[test]
    fn opcodes_round_trip() {
        for code in [1, 2, 3, 8, 24, 25, 0xffff] {
            assert_eq!(ArpOperation::from_u16(code).to_u16(), code);
        }
        assert_eq!(ArpOperation::from_u16(24), ArpOperation::Exp1);
    }

    fn with(offset: usize, byte: u8) -> [u8; 60] {
        let mut frame = REQUEST;
        frame[offset] = byte;
        frame
    }

    #[test]
    fn malformed_hardware_type() {
        let frame = with(15, 6); // IEEE 802 networks
        assert_eq!(
            ArpRepr::parse_frame(&frame).err(),
            Some(WireError::ArpHardwareType)
        );
    }

    #[test]
    fn malformed_protocol_type() {
        let frame = with(16, 0x86); // 0x8600
        assert_eq!(
            ArpRepr::parse_frame(&frame).err(),
            Some(WireError::ArpProtocolType)
        );
    }

    #[test]
    fn malformed_address_lengths() {
        let frame = with(19, 16); // IPv6-sized protocol address
        assert_eq!(
            ArpRepr::parse_frame(&frame).err(),
            Some(WireError::ArpAddressLength)
        );
    }

    #[test]
    fn malformed_truncated_body() {
        assert_eq!(
            ArpRepr::parse_frame(&REQUEST[..41]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn malformed_wrong_ethertype() {
        let frame = with(13, 0x00); // 0x0800, IPv4
        assert_eq!(
            ArpRepr::parse_frame(&frame).err(),
            Some(WireError::WrongEtherType)
        );
    }

    #[test]
    fn emit_into_short_buffer() {
        let mut out = [0u8; 59];
        assert_eq!(
            request_repr().emit_frame(
                MacAddr([0xff; 6]),
                MacAddr([2, 0, 0, 0, 0, 1]),
                &[],
                &mut out
            ),
            Err(WireError::BufferTooSmall)
        );
    }
}
