//! Bytes ↔ types for the control plane's protocols: Ethernet II, ARP over
//! Ethernet/IPv4 (RFC 826), the IPv4 header (through `etherparse`) and ICMPv4
//! echo (RFC 792). No state lives here.
//!
//! Every parser reads untrusted bytes through [`Reader`], a slice cursor with
//! no index arithmetic on lengths taken from the packet: a length read from
//! the wire only ever bounds a [`Reader::sub`]. Every emitter writes into a
//! caller-provided buffer and reports how much it wrote, so that answering a
//! packet allocates nothing.
//!
//! Each parse failure is one [`WireError`] variant, a `Copy` reason that can
//! index a per-reason drop counter.

pub mod arp;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
mod reader;

pub use reader::Reader;

pub use crate::sys::netif::MacAddr;

/// Why bytes could not be read as, or written to, a packet. The `Truncated`
/// to `NotEcho` variants blame the peer that sent the frame;
/// `BufferTooSmall` blames the caller of an `emit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("packet truncated: a field runs past the end of the frame")]
    Truncated,
    #[error("bytes left over after the end of the packet")]
    TrailingBytes,
    #[error("not the expected EtherType")]
    WrongEtherType,
    #[error("ARP hardware type is not Ethernet (1)")]
    ArpHardwareType,
    #[error("ARP protocol type is not IPv4 (0x0800)")]
    ArpProtocolType,
    #[error("ARP address lengths are not 6 (hardware) and 4 (protocol)")]
    ArpAddressLength,
    #[error("IP version is not 4")]
    IpVersion,
    #[error("IPv4 header length below 20 bytes or above the total length")]
    IpHeaderLength,
    #[error("IPv4 total length runs past the end of the frame")]
    IpTotalLength,
    #[error("IPv4 header checksum is wrong")]
    IpChecksum,
    #[error("IPv4 packet is a fragment")]
    IpFragment,
    #[error("not the expected IP protocol")]
    WrongIpProtocol,
    #[error("ICMP checksum is wrong")]
    IcmpChecksum,
    #[error("ICMP message is not an echo request or reply (code 0)")]
    NotEcho,
    #[error("extended ARP body has the wrong magic or version")]
    XarpMagic,
    #[error("extended ARP body names an unknown kind, protocol or status")]
    XarpField,
    #[error("output buffer too small for the packet")]
    BufferTooSmall,
}

/// The all-ones broadcast address.
pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

/// The all-zero address, used as "unknown" in ARP requests.
pub const UNSPECIFIED_MAC: MacAddr = MacAddr([0; 6]);

/// Whether the group bit (bit 0 of the first octet, IEEE 802 §8.2) is set:
/// multicast or broadcast. Such an address is never a sender's.
pub fn is_group(mac: MacAddr) -> bool {
    mac.0[0] & 0x01 != 0
}

/// Whether the locally administered bit (bit 1 of the first octet) is set:
/// the address was not assigned by a vendor and may be chosen freely.
pub fn is_locally_administered(mac: MacAddr) -> bool {
    mac.0[0] & 0x02 != 0
}

/// Writes `bytes` at the start of `out`, or fails if `out` is too short.
pub(crate) fn put(out: &mut [u8], bytes: &[u8]) -> Result<(), WireError> {
    out.get_mut(..bytes.len())
        .ok_or(WireError::BufferTooSmall)?
        .copy_from_slice(bytes);
    Ok(())
}

/// The Internet checksum (RFC 1071) of `bytes`: the one's complement of the
/// one's-complement sum of its 16-bit words.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    etherparse::checksum::Sum16BitWords::new()
        .add_slice(bytes)
        .ones_complement()
        .to_be()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_bits() {
        assert!(is_group(BROADCAST));
        assert!(!is_group(MacAddr([0x02, 0, 0, 0, 0, 1])));
        assert!(is_locally_administered(MacAddr([0x02, 0, 0, 0, 0, 1])));
        assert!(!is_locally_administered(MacAddr([
            0x00, 0x1b, 0x21, 0, 0, 1
        ])));
    }

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (folded),
        // so the checksum is its complement, 220d.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&bytes), 0x220d);
    }

    #[test]
    fn put_refuses_short_buffer() {
        let mut out = [0u8; 2];
        assert_eq!(put(&mut out, &[1, 2, 3]), Err(WireError::BufferTooSmall));
        assert_eq!(put(&mut out, &[1, 2]), Ok(()));
        assert_eq!(out, [1, 2]);
    }
}
