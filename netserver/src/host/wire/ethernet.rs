//! Ethernet II framing (IEEE 802.3 with an EtherType, RFC 894).
//!
//! The control plane speaks untagged frames only: a VLAN-tagged frame has
//! EtherType 0x8100 here and is not the control plane's.

use super::{put, MacAddr, Reader, WireError};

pub const HEADER_LEN: usize = 14;

/// The smallest frame a sender must put on the wire, without the FCS:
/// shorter frames are padded with zeros up to it (IEEE 802.3 §3.2.7).
pub const MIN_FRAME_LEN: usize = 60;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// An Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub ethertype: u16,
}

impl EthernetRepr {
    /// The header and the payload after it (which may end in padding).
    pub fn parse(frame: &[u8]) -> Result<(EthernetRepr, &[u8]), WireError> {
        let mut r = Reader::new(frame);
        let repr = EthernetRepr {
            dst: r.mac()?,
            src: r.mac()?,
            ethertype: r.u16()?,
        };
        Ok((repr, r.rest()))
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header at the start of `out`.
    pub fn emit(&self, out: &mut [u8]) -> Result<(), WireError> {
        let mut header = [0u8; HEADER_LEN];
        header[0..6].copy_from_slice(&self.dst.0);
        header[6..12].copy_from_slice(&self.src.0);
        header[12..14].copy_from_slice(&self.ethertype.to_be_bytes());
        put(out, &header)
    }
}

/// The destination address of a frame, the only field the fast
/// destination-MAC dispatch reads.
pub fn destination(frame: &[u8]) -> Option<MacAddr> {
    frame.first_chunk::<6>().map(|d| MacAddr(*d))
}

/// The source address of a frame.
pub fn source(frame: &[u8]) -> Option<MacAddr> {
    frame
        .get(6..)
        .and_then(|s| s.first_chunk::<6>())
        .map(|s| MacAddr(*s))
}

/// Zero-fills `out[len..MIN_FRAME_LEN]` and returns the padded length, so
/// that short replies (ARP is 42 bytes) go out at the Ethernet minimum.
pub fn pad_to_minimum(out: &mut [u8], len: usize) -> Result<usize, WireError> {
    if len >= MIN_FRAME_LEN {
        return Ok(len);
    }
    out.get_mut(len..MIN_FRAME_LEN)
        .ok_or(WireError::BufferTooSmall)?
        .fill(0);
    Ok(MIN_FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x08, 0x06, // ARP
        0xaa, 0xbb, // payload
    ];

    #[test]
    fn deconstruct() {
        let (repr, payload) = EthernetRepr::parse(&FRAME).unwrap();
        assert_eq!(repr.dst, super::super::BROADCAST);
        assert_eq!(repr.src, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(repr.ethertype, ETHERTYPE_ARP);
        assert_eq!(payload, &[0xaa, 0xbb]);
        assert_eq!(destination(&FRAME), Some(repr.dst));
        assert_eq!(source(&FRAME), Some(repr.src));
    }

    #[test]
    fn construct() {
        let (repr, _) = EthernetRepr::parse(&FRAME).unwrap();
        let mut out = [0u8; HEADER_LEN];
        repr.emit(&mut out).unwrap();
        assert_eq!(&out[..], &FRAME[..HEADER_LEN]);
    }

    #[test]
    fn truncated_header() {
        assert_eq!(
            EthernetRepr::parse(&FRAME[..13]).err(),
            Some(WireError::Truncated)
        );
        assert_eq!(destination(&FRAME[..5]), None);
        assert_eq!(source(&FRAME[..11]), None);
    }

    #[test]
    fn emit_into_short_buffer() {
        let (repr, _) = EthernetRepr::parse(&FRAME).unwrap();
        assert_eq!(repr.emit(&mut [0u8; 13]), Err(WireError::BufferTooSmall));
    }

    #[test]
    fn padding() {
        let mut out = [0xeeu8; 64];
        assert_eq!(pad_to_minimum(&mut out, 42), Ok(60));
        assert!(out[42..60].iter().all(|&b| b == 0));
        assert_eq!(out[60], 0xee);
        assert_eq!(pad_to_minimum(&mut out, 61), Ok(61));
        assert_eq!(
            pad_to_minimum(&mut [0u8; 50], 42),
            Err(WireError::BufferTooSmall)
        );
    }
}
