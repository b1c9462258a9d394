//! Extended ARP ("xarp"), the asker's side: resolve IP + transport port to
//! the MAC of the application bound to it.
//!
//! The format is specified in the server's `host::xarp` module (and the
//! README): an ARP packet for IPv4 over Ethernet with RFC 5494's
//! experimental opcodes, **24 for a request, 25 for a reply**, followed by
//! an 8-byte extension:
//!
//! ```text
//! 28  magic "XA"   30 version 1   31 kind (1 resolve, 2 probe)
//! 32  IP protocol (17 UDP, 6 TCP) 33 status (0 owned/application, 1 canonical)
//! 34  port (big-endian)
//! ```
//!
//! Only what `nsctl resolve` needs lives here: building a resolve request
//! and reading the reply. The server's test suite checks both against its
//! own implementation, byte for byte.

use std::net::Ipv4Addr;

const ETHERTYPE_ARP: u16 = 0x0806;
const OP_REQUEST: u16 = 24;
const OP_REPLY: u16 = 25;
const KIND_RESOLVE: u8 = 1;

/// Length of a resolve request frame (14 + 28 + 8, padded to 60).
pub const REQUEST_LEN: usize = 60;

/// What a resolved MAC is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveStatus {
    /// The application bound to the port has its own MAC.
    Application,
    /// No application MAC: the host's canonical MAC.
    Canonical,
}

/// A resolve reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub protocol: u8,
    pub port: u16,
    pub status: ResolveStatus,
}

/// A broadcast resolve request from `asker_mac`/`asker_ip` for `ip`,
/// `protocol` (17 or 6), `port`.
pub fn resolve_request(
    asker_mac: [u8; 6],
    asker_ip: Ipv4Addr,
    ip: Ipv4Addr,
    protocol: u8,
    port: u16,
) -> [u8; REQUEST_LEN] {
    let mut f = [0u8; REQUEST_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&asker_mac);
    f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let a = &mut f[14..];
    a[0..2].copy_from_slice(&1u16.to_be_bytes());
    a[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
    a[4] = 6;
    a[5] = 4;
    a[6..8].copy_from_slice(&OP_REQUEST.to_be_bytes());
    a[8..14].copy_from_slice(&asker_mac);
    a[14..18].copy_from_slice(&asker_ip.octets());
    // target MAC 18..24 stays zero
    a[24..28].copy_from_slice(&ip.octets());
    a[28..30].copy_from_slice(b"XA");
    a[30] = 1;
    a[31] = KIND_RESOLVE;
    a[32] = protocol;
    a[33] = 0;
    a[34..36].copy_from_slice(&port.to_be_bytes());
    f
}

/// Reads `frame` as a resolve reply to `asker_mac` about `ip`, `protocol`,
/// `port`; `None` if it is anything else.
pub fn parse_reply(
    frame: &[u8],
    asker_mac: [u8; 6],
    ip: Ipv4Addr,
    protocol: u8,
    port: u16,
) -> Option<Resolved> {
    let a = frame.get(14..14 + 36)?;
    let be16 = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
    if frame.get(12..14)? != ETHERTYPE_ARP.to_be_bytes()
        || be16(0) != 1
        || be16(2) != 0x0800
        || a[4] != 6
        || a[5] != 4
        || be16(6) != OP_REPLY
        || &a[28..30] != b"XA"
        || a[30] != 1
        || a[31] != KIND_RESOLVE
        || a[18..24] != asker_mac
    {
        return None;
    }
    let sender_ip = Ipv4Addr::new(a[14], a[15], a[16], a[17]);
    if sender_ip != ip || a[32] != protocol || be16(34) != port {
        return None;
    }
    let status = match a[33] {
        0 => ResolveStatus::Application,
        1 => ResolveStatus::Canonical,
        _ => return None,
    };
    Some(Resolved {
        mac: a[8..14].try_into().ok()?,
        ip: sender_ip,
        protocol,
        port,
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let f = resolve_request(
            [2, 0, 0, 0, 0, 9],
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 1),
            17,
            7777,
        );
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[20..22], &[0, 24]);
        assert_eq!(&f[42..44], b"XA");
        assert_eq!(&f[48..50], &7777u16.to_be_bytes());
    }
}
