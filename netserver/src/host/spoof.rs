//! Transmit validation: a frame a client posts leaves only if its source
//! MAC, IPv4 address, transport and port are the ones the client is bound
//! to.
//!
//! The frame may come as several segments (a header page and a payload
//! page, scatter-gather). The checked prefix — Ethernet, IPv4 with options,
//! the transport ports — is **copied out once** into a [`TxHeader`] and
//! validated there, because the segments live in memory the client can
//! still write (STYLE, rule 1). The caller must then send the validated
//! copy followed by the frame's bytes after it ([`TxHeader::bytes`],
//! [`TxHeader::len`]), so that rewriting the page after the check changes
//! nothing that was checked.
//!
//! Frames that are not IPv4 UDP/TCP (ARP, IPv6, raw EtherTypes) are
//! refused unless [`TxPolicy::allow_other_ethertypes`] is set, in which case
//! only the source MAC is checked. Non-first IPv4 fragments carry no ports
//! and are refused.

use std::net::Ipv4Addr;

use etherparse::Ipv4HeaderSlice;

use super::wire::ethernet::{EthernetRepr, ETHERTYPE_IPV4};
use super::wire::ipv4::Transport;
use super::wire::{internet_checksum, MacAddr, Reader};

/// Ethernet + the longest IPv4 header + UDP (8) — TCP's ports come first
/// too, so 8 bytes of transport header cover both.
pub const CHECKED_LEN: usize = 14 + 60 + 8;

/// The addresses a client may send from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxBinding {
    /// The application's MAC, or the canonical MAC if it has none.
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub transport: Transport,
    pub port: u16,
}

/// What the server accepts beyond the binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxPolicy {
    /// The largest frame, without FCS (1514 for a 1500-byte MTU).
    pub max_frame_len: usize,
    /// Let non-IPv4 frames out, checking only their source MAC (an operator
    /// option for clients trusted with raw Ethernet).
    pub allow_other_ethertypes: bool,
}

impl Default for TxPolicy {
    fn default() -> Self {
        TxPolicy {
            max_frame_len: 1514,
            allow_other_ethertypes: false,
        }
    }
}

/// Why a frame was refused; one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum TxRefusal {
    #[error("frame is not valid Ethernet/IPv4/UDP or TCP (short header, bad IPv4 header checksum or lengths)")]
    Malformed,
    #[error("frame is longer than the link allows")]
    TooLong,
    #[error("source MAC is not the one the client is bound to")]
    WrongSourceMac,
    #[error("source IPv4 address is not the host's")]
    WrongSourceIp,
    #[error("not IPv4 over the bound transport (ARP, IPv6, other protocols are not the client's to send)")]
    WrongProtocol,
    #[error("source port is not the bound port")]
    WrongSourcePort,
    #[error("non-first IPv4 fragment: no ports to check")]
    Fragment,
    #[error("the client holds no binding for this port")]
    NotBound,
}

impl TxRefusal {
    /// Every reason, in counter order.
    pub const ALL: [TxRefusal; 8] = [
        TxRefusal::Malformed,
        TxRefusal::TooLong,
        TxRefusal::WrongSourceMac,
        TxRefusal::WrongSourceIp,
        TxRefusal::WrongProtocol,
        TxRefusal::WrongSourcePort,
        TxRefusal::Fragment,
        TxRefusal::NotBound,
    ];

    /// The counter name (stats, JSON).
    pub const fn name(self) -> &'static str {
        match self {
            TxRefusal::Malformed => "malformed",
            TxRefusal::TooLong => "too_long",
            TxRefusal::WrongSourceMac => "wrong_source_mac",
            TxRefusal::WrongSourceIp => "wrong_source_ip",
            TxRefusal::WrongProtocol => "wrong_protocol",
            TxRefusal::WrongSourcePort => "wrong_source_port",
            TxRefusal::Fragment => "fragment",
            TxRefusal::NotBound => "not_bound",
        }
    }

    /// Index into a counter array of `ALL.len()` entries.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The validated copy of a frame's first bytes.
#[derive(Clone, Copy)]
pub struct TxHeader {
    copy: [u8; CHECKED_LEN],
    len: usize,
    frame_len: usize,
}

impl TxHeader {
    /// The checked bytes: send these in place of the frame's first `len()`.
    pub fn bytes(&self) -> &[u8] {
        &self.copy[..self.len]
    }

    /// How many leading bytes of the frame the copy replaces.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole frame's length.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }
}

impl std::fmt::Debug for TxHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxHeader")
            .field("len", &self.len)
            .field("frame_len", &self.frame_len)
            .finish()
    }
}

/// Checks a frame given as `segments` (concatenated in order) against
/// `binding`. See the module docs.
pub fn check_transmit(
    binding: &TxBinding,
    policy: &TxPolicy,
    segments: &[&[u8]],
) -> Result<TxHeader, TxRefusal> {
    let frame_len: usize = segments.iter().map(|s| s.len()).sum();
    if frame_len > policy.max_frame_len {
        return Err(TxRefusal::TooLong);
    }
    let header = copy_prefix(segments, frame_len);
    check_header(binding, policy, header.bytes(), frame_len)?;
    Ok(header)
}

/// [`check_transmit`] for a frame of `frame_len` bytes whose first bytes
/// the caller already copied out of client memory into `prefix` (at least
/// `min(CHECKED_LEN, frame_len)` bytes for a full check; more are ignored).
/// The caller sends [`TxHeader::bytes`] followed by the frame's bytes from
/// [`TxHeader::len`] on.
pub fn check_prefix(
    binding: &TxBinding,
    policy: &TxPolicy,
    prefix: &[u8],
    frame_len: usize,
) -> Result<TxHeader, TxRefusal> {
    if frame_len > policy.max_frame_len {
        return Err(TxRefusal::TooLong);
    }
    let header = copy_prefix(&[&prefix[..prefix.len().min(frame_len)]], frame_len);
    check_header(binding, policy, header.bytes(), frame_len)?;
    Ok(header)
}

/// Copies the first `CHECKED_LEN` bytes (or the whole frame, if shorter)
/// out of the segments, once.
fn copy_prefix(segments: &[&[u8]], frame_len: usize) -> TxHeader {
    let mut header = TxHeader {
        copy: [0; CHECKED_LEN],
        len: 0,
        frame_len,
    };
    for segment in segments {
        let room = &mut header.copy[header.len..];
        let n = room.len().min(segment.len());
        room[..n].copy_from_slice(&segment[..n]);
        header.len += n;
    }
    header
}

fn check_header(
    binding: &TxBinding,
    policy: &TxPolicy,
    header: &[u8],
    frame_len: usize,
) -> Result<(), TxRefusal> {
    let (eth, packet) = EthernetRepr::parse(header).map_err(|_| TxRefusal::Malformed)?;
    if eth.src != binding.mac {
        return Err(TxRefusal::WrongSourceMac);
    }
    if eth.ethertype != ETHERTYPE_IPV4 {
        return match policy.allow_other_ethertypes {
            true => Ok(()),
            false => Err(TxRefusal::WrongProtocol),
        };
    }
    let ip = Ipv4HeaderSlice::from_slice(packet).map_err(|_| TxRefusal::Malformed)?;
    if internet_checksum(ip.slice()) != 0 {
        return Err(TxRefusal::Malformed);
    }
    // The IPv4 total length must fit in the frame (padding may follow).
    let ip_len = usize::from(ip.total_len());
    if ip_len < ip.slice().len() || frame_len.checked_sub(14).is_none_or(|room| ip_len > room) {
        return Err(TxRefusal::Malformed);
    }
    if ip.source_addr() != binding.ip {
        return Err(TxRefusal::WrongSourceIp);
    }
    if ip.protocol().0 != binding.transport.protocol() {
        return Err(TxRefusal::WrongProtocol);
    }
    if ip.fragments_offset().value() != 0 {
        return Err(TxRefusal::Fragment);
    }
    check_ports(binding, ip.slice().len(), ip_len, packet)
}

/// The transport header must be complete within the IPv4 total length, and
/// its source port (the first field of both UDP and TCP) the bound one.
fn check_ports(
    binding: &TxBinding,
    ip_header_len: usize,
    ip_len: usize,
    packet: &[u8],
) -> Result<(), TxRefusal> {
    let min_transport_len = match binding.transport {
        Transport::Udp => 8,
        Transport::Tcp => 20,
    };
    if ip_len < ip_header_len + min_transport_len {
        return Err(TxRefusal::Malformed);
    }
    let mut r = Reader::new(packet);
    r.take(ip_header_len).map_err(|_| TxRefusal::Malformed)?;
    let source_port = r.u16().map_err(|_| TxRefusal::Malformed)?;
    if source_port != binding.port {
        return Err(TxRefusal::WrongSourcePort);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::wire::ipv4::{Ipv4Repr, PROTO_TCP, PROTO_UDP};

    const APP_MAC: MacAddr = MacAddr([0x06, 1, 2, 3, 4, 5]);
    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn binding() -> TxBinding {
        TxBinding {
            mac: APP_MAC,
            ip: IP,
            transport: Transport::Udp,
            port: 7,
        }
    }

    /// A UDP datagram 10.0.0.2:7 → 10.0.0.1:5000 with `data`.
    fn udp_frame(
        src_mac: MacAddr,
        src_ip: Ipv4Addr,
        protocol: u8,
        port: u16,
        data: &[u8],
    ) -> Vec<u8> {
        let mut frame = vec![0u8; 14 + 20 + 8 + data.len()];
        EthernetRepr {
            dst: MacAddr([0x02, 0, 0, 0, 0, 1]),
            src: src_mac,
            ethertype: ETHERTYPE_IPV4,
        }
        .emit(&mut frame)
        .unwrap();
        let ip = Ipv4Repr {
            src: src_ip,
            dst: Ipv4Addr::new(10, 0, 0, 1),
            protocol,
            ttl: 64,
            is_fragment: false,
            header_len: 20,
        };
        ip.emit(8 + data.len(), &mut frame[14..]).unwrap();
        let udp_len = (8 + data.len()) as u16;
        frame[34..36].copy_from_slice(&port.to_be_bytes());
        frame[36..38].copy_from_slice(&5000u16.to_be_bytes());
        frame[38..40].copy_from_slice(&udp_len.to_be_bytes());
        frame[42..].copy_from_slice(data);
        frame
    }

    fn good() -> Vec<u8> {
        udp_frame(APP_MAC, IP, PROTO_UDP, 7, b"hello")
    }

    fn check(frame: &[u8]) -> Result<TxHeader, TxRefusal> {
        check_transmit(&binding(), &TxPolicy::default(), &[frame])
    }

    #[test]
    fn a_bound_frame_is_allowed_and_its_header_copied() {
        let frame = good();
        let header = check(&frame).unwrap();
        assert_eq!(header.bytes(), &frame[..]);
        assert_eq!(header.frame_len(), frame.len());
    }

    #[test]
    fn scatter_gather_segments_are_checked_as_one_frame() {
        let frame = good();
        // Split inside the IPv4 header, so no segment holds it whole.
        let (head, payload) = frame.split_at(20);
        let header = check_transmit(&binding(), &TxPolicy::default(), &[head, payload]).unwrap();
        assert_eq!(header.bytes(), &frame[..]);
        let big = udp_frame(APP_MAC, IP, PROTO_UDP, 7, &[0xab; 200]);
        let (head, payload) = big.split_at(42);
        let header = check_transmit(&binding(), &TxPolicy::default(), &[head, payload]).unwrap();
        assert_eq!(header.len(), CHECKED_LEN);
        assert_eq!(header.bytes(), &big[..CHECKED_LEN]);
        let mut forged_in_second = big.clone();
        forged_in_second[34] = 0xff;
        let (head, payload) = forged_in_second.split_at(30);
        assert_eq!(
            check_transmit(&binding(), &TxPolicy::default(), &[head, payload]).err(),
            Some(TxRefusal::WrongSourcePort)
        );
    }

    #[test]
    fn a_copied_prefix_is_checked_against_the_whole_length() {
        let big = udp_frame(APP_MAC, IP, PROTO_UDP, 7, &[0xab; 600]);
        let policy = TxPolicy::default();
        let header = check_prefix(&binding(), &policy, &big[..CHECKED_LEN], big.len()).unwrap();
        assert_eq!(header.bytes(), &big[..CHECKED_LEN]);
        assert_eq!(header.frame_len(), big.len());
        // The IPv4 total length must fit the whole frame, not the prefix.
        assert_eq!(
            check_prefix(&binding(), &policy, &big[..CHECKED_LEN], big.len() - 1).err(),
            Some(TxRefusal::Malformed)
        );
        assert_eq!(
            check_prefix(&binding(), &policy, &big[..CHECKED_LEN], 1515).err(),
            Some(TxRefusal::TooLong)
        );
        let forged = udp_frame(APP_MAC, IP, PROTO_UDP, 8, &[0xab; 600]);
        assert_eq!(
            check_prefix(&binding(), &policy, &forged[..CHECKED_LEN], forged.len()).err(),
            Some(TxRefusal::WrongSourcePort)
        );
        let small = good();
        let header = check_prefix(&binding(), &policy, &small, small.len()).unwrap();
        assert_eq!(header.bytes(), &small[..]);
    }

    #[test]
    fn refuses_wrong_source_mac() {
        let frame = udp_frame(MacAddr([0x06, 9, 9, 9, 9, 9]), IP, PROTO_UDP, 7, b"x");
        assert_eq!(check(&frame).err(), Some(TxRefusal::WrongSourceMac));
    }

    #[test]
    fn refuses_wrong_source_ip() {
        let frame = udp_frame(APP_MAC, Ipv4Addr::new(10, 0, 0, 3), PROTO_UDP, 7, b"x");
        assert_eq!(check(&frame).err(), Some(TxRefusal::WrongSourceIp));
    }

    #[test]
    fn refuses_wrong_source_port() {
        let frame = udp_frame(APP_MAC, IP, PROTO_UDP, 8, b"x");
        assert_eq!(check(&frame).err(), Some(TxRefusal::WrongSourcePort));
    }

    #[test]
    fn refuses_wrong_transport() {
        let frame = udp_frame(APP_MAC, IP, PROTO_TCP, 7, &[0; 12]);
        assert_eq!(check(&frame).err(), Some(TxRefusal::WrongProtocol));
    }

    #[test]
    fn refuses_arp_from_an_application_unless_allowed() {
        let mut frame = good();
        frame[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(check(&frame).err(), Some(TxRefusal::WrongProtocol));
        let open = TxPolicy {
            allow_other_ethertypes: true,
            ..TxPolicy::default()
        };
        assert!(check_transmit(&binding(), &open, &[&frame]).is_ok());
        frame[6] = 0x0a;
        assert_eq!(
            check_transmit(&binding(), &open, &[&frame]).err(),
            Some(TxRefusal::WrongSourceMac),
            "the MAC is checked even then"
        );
    }

    #[test]
    fn refuses_too_long() {
        let frame = udp_frame(APP_MAC, IP, PROTO_UDP, 7, &[0; 1473]);
        assert_eq!(frame.len(), 1515);
        assert_eq!(check(&frame).err(), Some(TxRefusal::TooLong));
    }

    #[test]
    fn refuses_malformed_short_frame() {
        assert_eq!(check(&good()[..30]).err(), Some(TxRefusal::Malformed));
        assert_eq!(check(&[]).err(), Some(TxRefusal::Malformed));
    }

    #[test]
    fn refuses_malformed_ip_checksum() {
        let mut frame = good();
        frame[24] ^= 0xff;
        assert_eq!(check(&frame).err(), Some(TxRefusal::Malformed));
    }

    #[test]
    fn refuses_malformed_total_length_past_frame() {
        let frame = good();
        assert_eq!(
            check(&frame[..frame.len() - 1]).err(),
            Some(TxRefusal::Malformed)
        );
    }

    #[test]
    fn refuses_malformed_truncated_transport_header() {
        let mut frame = udp_frame(APP_MAC, IP, PROTO_UDP, 7, b"");
        // Claim a 4-byte payload: the UDP header no longer fits.
        let ip = Ipv4Repr::parse(&frame[14..]).unwrap().0;
        ip.emit(4, &mut frame[14..]).unwrap();
        assert_eq!(check(&frame).err(), Some(TxRefusal::Malformed));
    }

    #[test]
    fn refuses_non_first_fragment() {
        let mut frame = good();
        frame[14 + 6..14 + 8].copy_from_slice(&[0x00, 0x10]); // offset 16×8
        frame[24..26].copy_from_slice(&[0, 0]);
        let sum = internet_checksum(&frame[14..34]);
        frame[24..26].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(check(&frame).err(), Some(TxRefusal::Fragment));
    }

    #[test]
    fn refusal_names_and_indices() {
        for (i, reason) in TxRefusal::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        assert_eq!(TxRefusal::WrongSourceMac.name(), "wrong_source_mac");
    }
}
