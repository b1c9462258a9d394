//! The IPv4 header (RFC 791), read and written with `etherparse`, which
//! does this well; this module adds what the control plane needs on top:
//! the header checksum check, the total length followed through a
//! [`Reader`] (so Ethernet padding is cut off), and reasons as [`WireError`].

use std::net::Ipv4Addr;

use etherparse::err::ipv4::{HeaderError, HeaderSliceError};
use etherparse::{IpNumber, Ipv4Header, Ipv4HeaderSlice};

use super::ethernet::{EthernetRepr, ETHERTYPE_IPV4};
use super::{internet_checksum, put, Reader, WireError};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// The transports a port can be bound on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub const fn from_protocol(protocol: u8) -> Option<Transport> {
        match protocol {
            PROTO_UDP => Some(Transport::Udp),
            PROTO_TCP => Some(Transport::Tcp),
            _ => None,
        }
    }

    /// Its IP protocol number.
    pub const fn protocol(self) -> u8 {
        match self {
            Transport::Udp => PROTO_UDP,
            Transport::Tcp => PROTO_TCP,
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

/// The fields of an IPv4 header the control plane uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// IP protocol number (IANA "Assigned Internet Protocol Numbers").
    pub protocol: u8,
    pub ttl: u8,
    /// More-fragments set or a non-zero offset: the payload is not the
    /// whole datagram, and a non-first fragment has no transport header.
    pub is_fragment: bool,
    /// Header length in bytes (20 plus options).
    pub header_len: usize,
}

impl Ipv4Repr {
    /// The header at the start of `packet` and the payload it delimits
    /// (trailing Ethernet padding removed). Checks version, header length,
    /// total length and the header checksum.
    pub fn parse(packet: &[u8]) -> Result<(Ipv4Repr, &[u8]), WireError> {
        let header = Ipv4HeaderSlice::from_slice(packet).map_err(header_error)?;
        if internet_checksum(header.slice()) != 0 {
            return Err(WireError::IpChecksum);
        }
        let mut r = Reader::new(packet);
        let mut datagram = r
            .sub(usize::from(header.total_len()))
            .map_err(|_| WireError::IpTotalLength)?;
        datagram
            .take(header.slice().len())
            .map_err(|_| WireError::IpHeaderLength)?;
        let repr = Ipv4Repr {
            src: header.source_addr(),
            dst: header.destination_addr(),
            protocol: header.protocol().0,
            ttl: header.ttl(),
            is_fragment: header.is_fragmenting_payload(),
            header_len: header.slice().len(),
        };
        Ok((repr, datagram.rest()))
    }

    /// A whole frame: Ethernet header, IPv4 header, IP payload.
    pub fn parse_frame(frame: &[u8]) -> Result<(EthernetRepr, Ipv4Repr, &[u8]), WireError> {
        let (eth, payload) = EthernetRepr::parse(frame)?;
        if eth.ethertype != ETHERTYPE_IPV4 {
            return Err(WireError::WrongEtherType);
        }
        let (ip, payload) = Ipv4Repr::parse(payload)?;
        Ok((eth, ip, payload))
    }

    /// Writes a 20-byte header (no options, DF set, identification 0 as
    /// RFC 6864 allows for atomic datagrams) for `payload_len` bytes of
    /// payload, with its checksum, and returns its length.
    pub fn emit(&self, payload_len: usize, out: &mut [u8]) -> Result<usize, WireError> {
        let payload_len = u16::try_from(payload_len).map_err(|_| WireError::BufferTooSmall)?;
        let mut header = Ipv4Header::new(
            payload_len,
            self.ttl,
            IpNumber(self.protocol),
            self.src.octets(),
            self.dst.octets(),
        )
        .map_err(|_| WireError::BufferTooSmall)?;
        header.header_checksum = header.calc_header_checksum();
        let bytes = header.to_bytes();
        put(out, &bytes)?;
        Ok(bytes.len())
    }
}

fn header_error(e: HeaderSliceError) -> WireError {
    match e {
        HeaderSliceError::Len(_) => WireError::Truncated,
        HeaderSliceError::Content(HeaderError::UnexpectedVersion { .. }) => WireError::IpVersion,
        HeaderSliceError::Content(HeaderError::HeaderLengthSmallerThanHeader { .. }) => {
            WireError::IpHeaderLength
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// 10.0.0.1 → 10.0.0.2, UDP, TTL 64, 4 bytes of payload, then 2 bytes
    /// of Ethernet padding outside the total length.
    pub(crate) const PACKET: [u8; 26] = [
        0x45, 0x00, 0x00, 0x18, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x26, 0xd3, // .. checksum
        10, 0, 0, 1, 10, 0, 0, 2, // addresses
        0xde, 0xad, 0xbe, 0xef, // payload
        0x00, 0x00, // padding
    ];

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            protocol: PROTO_UDP,
            ttl: 64,
            is_fragment: false,
            header_len: 20,
        }
    }

    #[test]
    fn deconstruct() {
        let (ip, payload) = Ipv4Repr::parse(&PACKET).unwrap();
        assert_eq!(ip, repr());
        assert_eq!(payload, &[0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn construct() {
        let mut out = [0u8; 20];
        assert_eq!(repr().emit(4, &mut out), Ok(20));
        assert_eq!(&out[..], &PACKET[..20]);
    }

    fn with(offset: usize, byte: u8) -> [u8; 26] {
        let mut p = PACKET;
        p[offset] = byte;
        p
    }

    #[test]
    fn malformed_truncated_header() {
        assert_eq!(
            Ipv4Repr::parse(&PACKET[..19]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn malformed_version() {
        assert_eq!(
            Ipv4Repr::parse(&with(0, 0x65)).err(),
            Some(WireError::IpVersion)
        );
    }

    #[test]
    fn malformed_header_length() {
        assert_eq!(
            Ipv4Repr::parse(&with(0, 0x44)).err(),
            Some(WireError::IpHeaderLength)
        );
    }

    #[test]
    fn malformed_checksum() {
        assert_eq!(
            Ipv4Repr::parse(&with(11, 0xd2)).err(),
            Some(WireError::IpChecksum)
        );
    }

    /// A total length past the end of the frame (with a valid checksum, so
    /// the length check is what refuses it).
    #[test]
    fn malformed_total_length_too_long() {
        let mut out = [0u8; 24];
        repr().emit(20, &mut out).unwrap();
        out[20..].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(Ipv4Repr::parse(&out).err(), Some(WireError::IpTotalLength));
    }

    /// A total length shorter than the header.
    #[test]
    fn malformed_total_length_below_header() {
        let mut p = with(3, 0x10); // total length 16 < 20
        p[10..12].copy_from_slice(&[0, 0]);
        let sum = internet_checksum(&p[..20]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(Ipv4Repr::parse(&p).err(), Some(WireError::IpHeaderLength));
    }

    #[test]
    fn fragments_are_flagged() {
        let mut p = with(6, 0x20); // MF set, DF clear
        p[10..12].copy_from_slice(&[0, 0]);
        let sum = internet_checksum(&p[..20]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        assert!(Ipv4Repr::parse(&p).unwrap().0.is_fragment);
    }

    #[test]
    fn wrong_ethertype() {
        let mut frame = [0u8; 40];
        frame[12] = 0x08;
        frame[13] = 0x06;
        assert_eq!(
            Ipv4Repr::parse_frame(&frame).err(),
            Some(WireError::WrongEtherType)
        );
    }
}
