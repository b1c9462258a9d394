//! Extended ARP ("xarp"): resolving IPv4 address **and transport port** to
//! the MAC of the application bound to it, and probing whether a MAC is in
//! use, on the wire.
//!
//! # Format
//!
//! An xarp packet is an ordinary ARP packet for IPv4 over Ethernet
//! (EtherType 0x0806, hardware type 1, protocol type 0x0800, lengths 6 and
//! 4) whose opcode is one of the two that RFC 5494 §2 reserves for
//! experiments: **24 (`OP_EXP1`) for a request, 25 (`OP_EXP2`) for a
//! reply**. An 8-byte extension follows the 28-byte ARP body; anything after
//! the extension is Ethernet padding and ignored.
//!
//! ```text
//! offset (from the start of the ARP body)
//!  0  htype = 1          2  ptype = 0x0800     4  hlen = 6   5  plen = 4
//!  6  oper  = 24 | 25    8  sender MAC         14 sender IPv4
//! 18  target MAC        24  target IPv4
//! 28  magic = 0x58 0x41 ("XA")
//! 30  version = 1
//! 31  kind:     1 = resolve IP:port, 2 = probe MAC
//! 32  protocol: IP protocol number, 17 UDP or 6 TCP (0 in a probe)
//! 33  status:   0 in requests; in replies 0 = "owned": the sender MAC is
//!               the application's (resolve) or is in use (probe),
//!               1 = "canonical": no application MAC for that port, the
//!               sender MAC is the host's canonical MAC (resolve only)
//! 34  port:     big-endian transport port (0 in a probe)
//! 36  (Ethernet padding, if any)
//! ```
//!
//! **Resolve.** The asker broadcasts a request with its own MAC/IP as
//! sender, target MAC zero, target IP the address to resolve, and the
//! protocol and port. The host owning that IP unicasts a reply: sender MAC
//! is the answer, sender IP the resolved IP, target the asker, protocol and
//! port echoed, status saying whether the answer is an application's MAC or
//! the canonical one. A host always answers a resolve for its own IP, so
//! the asker gets a usable MAC either way and learns which kind it is.
//!
//! **Announce.** Once a new application MAC is found free, the host
//! broadcasts a reply-shaped packet (`OP_EXP2`, kind resolve, status owned)
//! from it with target MAC zero (what tells it from a reply) and target IP 0.0.0.0, naming the IP,
//! protocol and port. Switches learn the MAC's port; xarp caches may fill.
//! It is deliberately *not* a standard gratuitous ARP, which would bind the
//! host's IP to the application MAC in every neighbour's cache.
//!
//! **Probe.** Before an application MAC is used, the prober broadcasts a
//! request with kind "probe": sender = the prober's canonical MAC and IP
//! (never the candidate: a switch would learn the candidate on the prober's
//! port and steal the owner's traffic), target MAC = the candidate, target
//! IP 0.0.0.0. A host that uses the candidate (as canonical MAC, as an
//! application MAC, or as a candidate it is itself probing) replies with
//! status "owned" and the candidate as sender MAC, from the candidate.
//!
//! Why experimental opcodes and not a new EtherType: hosts that do not know
//! xarp drop unknown ARP opcodes (Linux's `arp_process` answers only
//! requests and replies), so nothing else on the link changes state, and
//! plain ARP for the IP still answers with the canonical MAC. The magic and
//! version guard against other experiments that use the same opcodes.

use std::net::Ipv4Addr;

use super::wire::arp::{ArpOperation, ArpRepr};
use super::wire::ethernet::EthernetRepr;
use super::wire::ipv4::Transport;
use super::wire::{MacAddr, Reader, WireError, BROADCAST, UNSPECIFIED_MAC};

/// Length of the extension after the ARP body.
pub const EXTENSION_LEN: usize = 8;

const MAGIC: [u8; 2] = *b"XA";
const VERSION: u8 = 1;
const KIND_RESOLVE: u8 = 1;
const KIND_PROBE: u8 = 2;
const STATUS_OWNED: u8 = 0;
const STATUS_CANONICAL: u8 = 1;

/// What a resolve reply's MAC is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResolveStatus {
    /// The application bound to the port has this MAC of its own.
    Application,
    /// No application MAC serves the port: this is the host's canonical MAC.
    Canonical,
}

/// An xarp packet, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Xarp {
    ResolveRequest {
        asker_mac: MacAddr,
        asker_ip: Ipv4Addr,
        ip: Ipv4Addr,
        transport: Transport,
        port: u16,
    },
    ResolveReply {
        asker_mac: MacAddr,
        asker_ip: Ipv4Addr,
        ip: Ipv4Addr,
        transport: Transport,
        port: u16,
        mac: MacAddr,
        status: ResolveStatus,
    },
    ProbeRequest {
        prober_mac: MacAddr,
        prober_ip: Ipv4Addr,
        candidate: MacAddr,
    },
    /// A new application MAC, broadcast once probing found it free, so that
    /// switches learn where it lives and xarp caches can fill; hosts that
    /// do not speak xarp ignore it, so their ARP caches still map the IP to
    /// the canonical MAC (a standard gratuitous ARP from the application
    /// MAC would remap the host's IP for everyone).
    Announce {
        mac: MacAddr,
        ip: Ipv4Addr,
        transport: Transport,
        port: u16,
    },
    /// "I use this MAC."
    ProbeClaim {
        prober_mac: MacAddr,
        prober_ip: Ipv4Addr,
        candidate: MacAddr,
        claimant_ip: Ipv4Addr,
    },
}

impl Xarp {
    /// Decodes an ARP body and what followed it. A packet with a standard
    /// opcode is not xarp ([`WireError::XarpField`]).
    pub fn parse(arp: &ArpRepr, extension: &[u8]) -> Result<Xarp, WireError> {
        let is_request = match arp.operation {
            ArpOperation::Exp1 => true,
            ArpOperation::Exp2 => false,
            _ => return Err(WireError::XarpField),
        };
        let mut r = Reader::new(extension);
        if r.array::<2>()? != MAGIC || r.u8()? != VERSION {
            return Err(WireError::XarpMagic);
        }
        let kind = r.u8()?;
        let protocol = r.u8()?;
        let status = r.u8()?;
        let port = r.u16()?;
        match (kind, is_request) {
            (KIND_RESOLVE, true) => Ok(Xarp::ResolveRequest {
                asker_mac: arp.sender_mac,
                asker_ip: arp.sender_ip,
                ip: arp.target_ip,
                transport: transport(protocol)?,
                port,
            }),
            (KIND_RESOLVE, false)
                if arp.target_mac == UNSPECIFIED_MAC && status == STATUS_OWNED =>
            {
                Ok(Xarp::Announce {
                    mac: arp.sender_mac,
                    ip: arp.sender_ip,
                    transport: transport(protocol)?,
                    port,
                })
            }
            (KIND_RESOLVE, false) => Ok(Xarp::ResolveReply {
                asker_mac: arp.target_mac,
                asker_ip: arp.target_ip,
                ip: arp.sender_ip,
                transport: transport(protocol)?,
                port,
                mac: arp.sender_mac,
                status: match status {
                    STATUS_OWNED => ResolveStatus::Application,
                    STATUS_CANONICAL => ResolveStatus::Canonical,
                    _ => return Err(WireError::XarpField),
                },
            }),
            (KIND_PROBE, true) => Ok(Xarp::ProbeRequest {
                prober_mac: arp.sender_mac,
                prober_ip: arp.sender_ip,
                candidate: arp.target_mac,
            }),
            (KIND_PROBE, false) => Ok(Xarp::ProbeClaim {
                prober_mac: arp.target_mac,
                prober_ip: arp.target_ip,
                candidate: arp.sender_mac,
                claimant_ip: arp.sender_ip,
            }),
            _ => Err(WireError::XarpField),
        }
    }

    /// Decodes a whole frame.
    pub fn parse_frame(frame: &[u8]) -> Result<(EthernetRepr, Xarp), WireError> {
        let (eth, arp, rest) = ArpRepr::parse_frame(frame)?;
        Ok((eth, Xarp::parse(&arp, rest)?))
    }

    /// The ARP body and extension that carry this message.
    pub fn to_wire(&self) -> (ArpRepr, [u8; EXTENSION_LEN]) {
        match *self {
            Xarp::ResolveRequest {
                asker_mac,
                asker_ip,
                ip,
                transport,
                port,
            } => (
                arp(ArpOperation::Exp1, asker_mac, asker_ip, UNSPECIFIED_MAC, ip),
                extension(KIND_RESOLVE, transport.protocol(), 0, port),
            ),
            Xarp::ResolveReply {
                asker_mac,
                asker_ip,
                ip,
                transport,
                port,
                mac,
                status,
            } => {
                let status = match status {
                    ResolveStatus::Application => STATUS_OWNED,
                    ResolveStatus::Canonical => STATUS_CANONICAL,
                };
                (
                    arp(ArpOperation::Exp2, mac, ip, asker_mac, asker_ip),
                    extension(KIND_RESOLVE, transport.protocol(), status, port),
                )
            }
            Xarp::Announce {
                mac,
                ip,
                transport,
                port,
            } => (
                arp(
                    ArpOperation::Exp2,
                    mac,
                    ip,
                    UNSPECIFIED_MAC,
                    Ipv4Addr::UNSPECIFIED,
                ),
                extension(KIND_RESOLVE, transport.protocol(), STATUS_OWNED, port),
            ),
            Xarp::ProbeRequest {
                prober_mac,
                prober_ip,
                candidate,
            } => (
                arp(
                    ArpOperation::Exp1,
                    prober_mac,
                    prober_ip,
                    candidate,
                    Ipv4Addr::UNSPECIFIED,
                ),
                extension(KIND_PROBE, 0, 0, 0),
            ),
            Xarp::ProbeClaim {
                prober_mac,
                prober_ip,
                candidate,
                claimant_ip,
            } => (
                arp(
                    ArpOperation::Exp2,
                    candidate,
                    claimant_ip,
                    prober_mac,
                    prober_ip,
                ),
                extension(KIND_PROBE, 0, STATUS_OWNED, 0),
            ),
        }
    }

    /// Where the frame goes and who sends it: requests are broadcast from
    /// the sender hardware address, replies unicast to the asker from the
    /// MAC they answer with (so switches learn it).
    pub fn ethernet_addresses(&self) -> (MacAddr, MacAddr) {
        match *self {
            Xarp::ResolveRequest { asker_mac, .. } => (BROADCAST, asker_mac),
            Xarp::ProbeRequest { prober_mac, .. } => (BROADCAST, prober_mac),
            Xarp::ResolveReply { asker_mac, mac, .. } => (asker_mac, mac),
            Xarp::Announce { mac, .. } => (BROADCAST, mac),
            Xarp::ProbeClaim {
                prober_mac,
                candidate,
                ..
            } => (prober_mac, candidate),
        }
    }

    /// Writes the whole frame (padded to 60 bytes) and returns its length.
    pub fn emit_frame(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let (arp, extension) = self.to_wire();
        let (dst, src) = self.ethernet_addresses();
        arp.emit_frame(dst, src, &extension, out)
    }

    /// The reply a host owning `mac` for this resolve request sends.
    pub fn resolve_reply(&self, mac: MacAddr, status: ResolveStatus) -> Option<Xarp> {
        match *self {
            Xarp::ResolveRequest {
                asker_mac,
                asker_ip,
                ip,
                transport,
                port,
            } => Some(Xarp::ResolveReply {
                asker_mac,
                asker_ip,
                ip,
                transport,
                port,
                mac,
                status,
            }),
            _ => None,
        }
    }

    /// The claim a host using the probed MAC sends, from `claimant_ip`.
    pub fn probe_claim(&self, claimant_ip: Ipv4Addr) -> Option<Xarp> {
        match *self {
            Xarp::ProbeRequest {
                prober_mac,
                prober_ip,
                candidate,
            } => Some(Xarp::ProbeClaim {
                prober_mac,
                prober_ip,
                candidate,
                claimant_ip,
            }),
            _ => None,
        }
    }
}

fn transport(protocol: u8) -> Result<Transport, WireError> {
    Transport::from_protocol(protocol).ok_or(WireError::XarpField)
}

fn arp(
    operation: ArpOperation,
    sender_mac: MacAddr,
    sender_ip: Ipv4Addr,
    target_mac: MacAddr,
    target_ip: Ipv4Addr,
) -> ArpRepr {
    ArpRepr {
        operation,
        sender_mac,
        sender_ip,
        target_mac,
        target_ip,
    }
}

fn extension(kind: u8, protocol: u8, status: u8, port: u16) -> [u8; EXTENSION_LEN] {
    let [magic0, magic1] = MAGIC;
    let [p0, p1] = port.to_be_bytes();
    [magic0, magic1, VERSION, kind, protocol, status, p0, p1]
}

#[cfg(test)]
mod tests {
    use super::*;

    const ASKER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const APP: MacAddr = MacAddr([0x06, 0x11, 0x22, 0x33, 0x44, 0x55]);

    /// 10.0.0.1 asks who serves UDP port 7 on 10.0.0.2.
    const RESOLVE_REQUEST: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x06, // eth
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 24, // ARP, OP_EXP1
        0x02, 0, 0, 0, 0, 0x01, 10, 0, 0, 1, // sender
        0, 0, 0, 0, 0, 0, 10, 0, 0, 2, // target
        b'X', b'A', 1, 1, 17, 0, 0x00, 0x07, // extension: resolve udp 7
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    fn request() -> Xarp {
        Xarp::ResolveRequest {
            asker_mac: ASKER,
            asker_ip: Ipv4Addr::new(10, 0, 0, 1),
            ip: Ipv4Addr::new(10, 0, 0, 2),
            transport: Transport::Udp,
            port: 7,
        }
    }

    #[test]
    fn deconstruct_resolve_request() {
        let (eth, xarp) = Xarp::parse_frame(&RESOLVE_REQUEST).unwrap();
        assert_eq!(eth.src, ASKER);
        assert_eq!(xarp, request());
    }

    #[test]
    fn construct_resolve_request() {
        let mut out = [0u8; 60];
        assert_eq!(request().emit_frame(&mut out), Ok(60));
        assert_eq!(out, RESOLVE_REQUEST);
    }

    #[test]
    fn resolve_reply_round_trips_and_is_unicast_from_the_answer() {
        let reply = request()
            .resolve_reply(APP, ResolveStatus::Application)
            .unwrap();
        let mut out = [0u8; 60];
        reply.emit_frame(&mut out).unwrap();
        let (eth, parsed) = Xarp::parse_frame(&out).unwrap();
        assert_eq!(parsed, reply);
        assert_eq!((eth.dst, eth.src), (ASKER, APP));
        assert_eq!(u16::from_be_bytes([out[20], out[21]]), 25, "OP_EXP2");
        let canonical = request()
            .resolve_reply(ASKER, ResolveStatus::Canonical)
            .unwrap();
        canonical.emit_frame(&mut out).unwrap();
        assert_eq!(out[14 + 33], 1, "status canonical");
        assert_eq!(Xarp::parse_frame(&out).unwrap().1, canonical);
    }

    #[test]
    fn announce_round_trips_as_a_broadcast_from_the_new_mac() {
        let announce = Xarp::Announce {
            mac: APP,
            ip: Ipv4Addr::new(10, 0, 0, 2),
            transport: Transport::Tcp,
            port: 443,
        };
        let mut out = [0u8; 60];
        announce.emit_frame(&mut out).unwrap();
        let (eth, parsed) = Xarp::parse_frame(&out).unwrap();
        assert_eq!(parsed, announce);
        assert_eq!((eth.dst, eth.src), (BROADCAST, APP));
        assert_eq!(&out[14 + 18..14 + 28], &[0; 10], "target zero");
    }

    #[test]
    fn probe_round_trips() {
        let probe = Xarp::ProbeRequest {
            prober_mac: ASKER,
            prober_ip: Ipv4Addr::new(10, 0, 0, 1),
            candidate: APP,
        };
        let mut out = [0u8; 60];
        probe.emit_frame(&mut out).unwrap();
        let (eth, parsed) = Xarp::parse_frame(&out).unwrap();
        assert_eq!(parsed, probe);
        assert_eq!(
            (eth.dst, eth.src),
            (BROADCAST, ASKER),
            "never sent from the candidate"
        );
        let claim = probe.probe_claim(Ipv4Addr::new(10, 0, 0, 9)).unwrap();
        claim.emit_frame(&mut out).unwrap();
        let (eth, parsed) = Xarp::parse_frame(&out).unwrap();
        assert_eq!(parsed, claim);
        assert_eq!((eth.dst, eth.src), (ASKER, APP));
        assert_eq!(probe.resolve_reply(APP, ResolveStatus::Application), None);
        assert_eq!(request().probe_claim(Ipv4Addr::UNSPECIFIED), None);
    }

    fn with(offset: usize, byte: u8) -> [u8; 60] {
        let mut frame = RESOLVE_REQUEST;
        frame[offset] = byte;
        frame
    }

    #[test]
    fn malformed_standard_opcode() {
        let frame = with(21, 1);
        assert_eq!(Xarp::parse_frame(&frame).err(), Some(WireError::XarpField));
    }

    #[test]
    fn malformed_magic() {
        let frame = with(42, b'Y');
        assert_eq!(Xarp::parse_frame(&frame).err(), Some(WireError::XarpMagic));
    }

    #[test]
    fn malformed_version() {
        let frame = with(44, 2);
        assert_eq!(Xarp::parse_frame(&frame).err(), Some(WireError::XarpMagic));
    }

    #[test]
    fn malformed_kind() {
        let frame = with(45, 9);
        assert_eq!(Xarp::parse_frame(&frame).err(), Some(WireError::XarpField));
    }

    #[test]
    fn malformed_protocol() {
        let frame = with(46, 1); // ICMP has no ports
        assert_eq!(Xarp::parse_frame(&frame).err(), Some(WireError::XarpField));
    }

    #[test]
    fn malformed_reply_status() {
        let mut frame = with(21, 25);
        frame[47] = 7;
        assert_eq!(Xarp::parse_frame(&frame).err(), Some(WireError::XarpField));
    }

    #[test]
    fn malformed_truncated_extension() {
        assert_eq!(
            Xarp::parse_frame(&RESOLVE_REQUEST[..49]).err(),
            Some(WireError::Truncated)
        );
    }
}
