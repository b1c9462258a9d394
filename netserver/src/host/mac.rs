//! Per-application MAC addresses: choosing them, making sure nobody on the
//! link already uses them, and the bindings that map ports and MACs to the
//! applications that own them.
//!
//! # Choosing
//!
//! [`random_app_mac`] draws 46 random bits and sets the first octet's
//! locally-administered bit (bit 1) and clears its group bit (bit 0), as
//! IEEE 802 reserves such addresses for local assignment; it never returns
//! the canonical MAC or one already bound.
//!
//! # Probing ([`MacProbe`])
//!
//! A random 46-bit address is very unlikely to collide, but a second
//! netserver, a VM bridge or a hand-configured interface may already use
//! it, and a collision would silently split traffic. So before use:
//!
//! 1. **Probe**, `probes` rounds `probe_interval` apart, each of two frames:
//!    - an xarp *probe* (see [`crate::host::xarp`]): broadcast, from the
//!      canonical MAC, target MAC = candidate. Any netserver using the
//!      candidate answers with a claim from it.
//!    - an ICMPv6 echo request to the all-nodes group `ff02::1`, sent
//!      **unicast to the candidate MAC** from the canonical MAC and the
//!      canonical MAC's link-local address. Only an interface whose address
//!      is the candidate accepts it, and a stock IPv6 host then answers (or
//!      first sends a neighbour solicitation for our address) — from the
//!      candidate. This catches hosts that do not speak xarp.
//! 2. **Wait** `claim_wait` after the last probe. Meanwhile every received
//!    frame is shown to [`MacProbe::observe`]; it is a **claim** if it comes
//!    *from* the candidate (Ethernet source, or ARP sender hardware address),
//!    or if it is somebody else's xarp probe for the same candidate (two
//!    hosts probing the same address both back off, as RFC 5227 does for
//!    IPv4 addresses). On a claim the caller picks a new candidate
//!    ([`MacProbe::retry`]), at most `max_candidates` times.
//! 3. **Use and announce**: the MAC is ready; `announcements` xarp
//!    announcements go out from it, broadcast, so that switches learn its
//!    port (see [`crate::host::xarp::Xarp::Announce`] for why it is not a
//!    standard gratuitous ARP).
//!
//! The probe is never sent *from* the candidate: a switch would move the
//! candidate to our port and steal its owner's traffic during the probe.
//!
//! # Bindings ([`Bindings`])
//!
//! `(transport, port) → (application MAC or none, owner tag)`, and the
//! reverse `MAC → owner` for dispatch on the destination MAC alone
//! ([`Bindings::owner_of_mac`]), the data path's fast path before any
//! layer-3 parsing. One owner may use one MAC for several ports; a MAC never
//! belongs to two owners.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use rand::Rng;

use super::wire::arp::ArpRepr;
use super::wire::ethernet::{EthernetRepr, ETHERTYPE_ARP};
use super::wire::ipv4::Transport;
use super::wire::{MacAddr, WireError};
use super::xarp::Xarp;
use crate::tag::Tag;

/// A random locally administered unicast MAC for which `is_taken` is false,
/// or `None` if 64 draws were all taken (a full or broken `is_taken`).
pub fn random_app_mac<R: Rng + ?Sized>(
    rng: &mut R,
    is_taken: impl Fn(MacAddr) -> bool,
) -> Option<MacAddr> {
    (0..64).find_map(|_| {
        let mut octets: [u8; 6] = rng.random();
        octets[0] = (octets[0] | 0x02) & !0x01;
        let mac = MacAddr(octets);
        (!is_taken(mac)).then_some(mac)
    })
}

/// Times and counts of a probe. The defaults follow RFC 5227's order of
/// magnitude, shortened: a link that answers ARP answers within
/// milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    pub probes: u32,
    pub probe_interval: Duration,
    /// Silence after the last probe before the candidate is taken.
    pub claim_wait: Duration,
    pub announcements: u32,
    pub announce_interval: Duration,
    /// Candidates tried before giving up.
    pub max_candidates: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            probes: 2,
            probe_interval: Duration::from_millis(200),
            claim_wait: Duration::from_millis(500),
            announcements: 2,
            announce_interval: Duration::from_millis(200),
            max_candidates: 8,
        }
    }
}

/// The host doing the probing: its canonical MAC and IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prober {
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
}

/// What [`MacProbe::poll`] asks of its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeStep {
    /// Send the `usize` bytes just written to the output buffer.
    Transmit(usize),
    /// Nothing to do before this instant (frames still go to `observe`).
    WaitUntil(Instant),
    /// The candidate is in use by someone else: [`MacProbe::retry`] with a
    /// new one, or give up if it returns [`ProbeError::Exhausted`].
    Claimed(MacAddr),
    /// The candidate is free: bind it now. Announcements follow.
    Ready(MacAddr),
    /// Announced; the probe can be dropped.
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    #[error("{tried} candidate MACs were all claimed on the link; check for a host answering every MAC (a bridge in a loop, a misconfigured proxy)")]
    Exhausted { tried: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Probe round `round`, frame `frame` (0: xarp, 1: ICMPv6) due at `next`.
    Probing {
        round: u32,
        frame: u8,
        next: Instant,
    },
    Waiting {
        until: Instant,
    },
    Claimed,
    Ready,
    Announcing {
        sent: u32,
        next: Instant,
    },
    Finished,
}

/// The probe–wait–announce state machine for one application MAC. See the
/// module docs for the frames and the claim rules.
#[derive(Debug, Clone)]
pub struct MacProbe {
    config: ProbeConfig,
    prober: Prober,
    transport: Transport,
    port: u16,
    candidate: MacAddr,
    candidates_tried: u32,
    phase: Phase,
}

impl MacProbe {
    /// Starts probing `candidate` for the binding `(transport, port)`; the
    /// first probe is due at `now`.
    pub fn new(
        config: ProbeConfig,
        prober: Prober,
        transport: Transport,
        port: u16,
        candidate: MacAddr,
        now: Instant,
    ) -> MacProbe {
        MacProbe {
            config,
            prober,
            transport,
            port,
            candidate,
            candidates_tried: 1,
            phase: Phase::Probing {
                round: 0,
                frame: 0,
                next: now,
            },
        }
    }

    pub fn candidate(&self) -> MacAddr {
        self.candidate
    }

    pub fn binding(&self) -> (Transport, u16) {
        (self.transport, self.port)
    }

    /// Whether the candidate is still being checked (claims count).
    pub fn is_probing(&self) -> bool {
        matches!(self.phase, Phase::Probing { .. } | Phase::Waiting { .. })
    }

    /// Whether the candidate has been found free (it may be bound).
    pub fn is_ready(&self) -> bool {
        matches!(
            self.phase,
            Phase::Ready | Phase::Announcing { .. } | Phase::Finished
        )
    }

    /// Whether the announcements are done and the probe can be dropped.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// Shows a received frame to the probe. Returns whether it claims the
    /// candidate; the next [`poll`](Self::poll) then reports `Claimed`.
    pub fn observe(&mut self, frame: &[u8]) -> bool {
        if !self.is_probing() || !self.is_claim(frame) {
            return false;
        }
        self.phase = Phase::Claimed;
        true
    }

    fn is_claim(&self, frame: &[u8]) -> bool {
        let Ok((eth, payload)) = EthernetRepr::parse(frame) else {
            return false;
        };
        if eth.src == self.candidate {
            return true;
        }
        if eth.ethertype != ETHERTYPE_ARP {
            return false;
        }
        let Ok((arp, extension)) = ArpRepr::parse(payload) else {
            return false;
        };
        if arp.sender_mac == self.candidate {
            return true;
        }
        matches!(
            Xarp::parse(&arp, extension),
            Ok(Xarp::ProbeRequest { prober_mac, candidate, .. })
                if candidate == self.candidate && prober_mac != self.prober.mac
        )
    }

    /// Starts over with a new candidate after a claim.
    pub fn retry(&mut self, candidate: MacAddr, now: Instant) -> Result<(), ProbeError> {
        if self.candidates_tried >= self.config.max_candidates {
            return Err(ProbeError::Exhausted {
                tried: self.candidates_tried,
            });
        }
        self.candidates_tried += 1;
        self.candidate = candidate;
        self.phase = Phase::Probing {
            round: 0,
            frame: 0,
            next: now,
        };
        Ok(())
    }

    /// Advances time; writes a frame into `out` when one is due.
    pub fn poll(&mut self, now: Instant, out: &mut [u8]) -> Result<ProbeStep, WireError> {
        let config = self.config;
        match self.phase {
            Phase::Probing { next, .. } | Phase::Announcing { next, .. } if now < next => {
                Ok(ProbeStep::WaitUntil(next))
            }
            Phase::Probing { round, frame, .. } => {
                let len = match frame {
                    0 => self.xarp_probe().emit_frame(out)?,
                    _ => icmpv6_probe(self.prober.mac, self.candidate, round, out)?,
                };
                self.phase = match (frame, round + 1 < config.probes) {
                    (0, _) => Phase::Probing {
                        round,
                        frame: 1,
                        next: now,
                    },
                    (_, true) => Phase::Probing {
                        round: round + 1,
                        frame: 0,
                        next: now + config.probe_interval,
                    },
                    (_, false) => Phase::Waiting {
                        until: now + config.claim_wait,
                    },
                };
                Ok(ProbeStep::Transmit(len))
            }
            Phase::Waiting { until } if now < until => Ok(ProbeStep::WaitUntil(until)),
            Phase::Waiting { .. } => {
                self.phase = Phase::Ready;
                Ok(ProbeStep::Ready(self.candidate))
            }
            Phase::Claimed => Ok(ProbeStep::Claimed(self.candidate)),
            Phase::Ready => {
                self.phase = Phase::Announcing { sent: 0, next: now };
                self.poll(now, out)
            }
            Phase::Announcing { sent, .. } if sent >= config.announcements => {
                self.phase = Phase::Finished;
                Ok(ProbeStep::Finished)
            }
            Phase::Announcing { sent, .. } => {
                let len = self.announcement().emit_frame(out)?;
                self.phase = Phase::Announcing {
                    sent: sent + 1,
                    next: now + config.announce_interval,
                };
                Ok(ProbeStep::Transmit(len))
            }
            Phase::Finished => Ok(ProbeStep::Finished),
        }
    }

    fn xarp_probe(&self) -> Xarp {
        Xarp::ProbeRequest {
            prober_mac: self.prober.mac,
            prober_ip: self.prober.ip,
            candidate: self.candidate,
        }
    }

    fn announcement(&self) -> Xarp {
        Xarp::Announce {
            mac: self.candidate,
            ip: self.prober.ip,
            transport: self.transport,
            port: self.port,
        }
    }
}

/// The payload of the ICMPv6 probe, so that a capture says what it is.
const ICMPV6_PROBE_DATA: &[u8] = b"netserver mac probe";

/// The IPv6 all-nodes link-local multicast group (RFC 4291 §2.7.1).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The modified-EUI-64 link-local address of `mac` (RFC 4291 appendix A).
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    let [a, b, c, d, e, f] = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        a ^ 0x02,
        b,
        c,
        0xff,
        0xfe,
        d,
        e,
        f,
    ])
}

/// Writes the ICMPv6 echo probe (see the module docs) with `etherparse`.
fn icmpv6_probe(
    prober: MacAddr,
    candidate: MacAddr,
    round: u32,
    out: &mut [u8],
) -> Result<usize, WireError> {
    let seq = u16::try_from(round).unwrap_or(u16::MAX);
    let builder = etherparse::PacketBuilder::ethernet2(prober.0, candidate.0)
        .ipv6(link_local(prober).octets(), ALL_NODES.octets(), 255)
        .icmpv6_echo_request(0x6e73, seq); // "ns"
    let len = builder.size(ICMPV6_PROBE_DATA.len());
    let mut window = out.get_mut(..len).ok_or(WireError::BufferTooSmall)?;
    builder
        .write(&mut window, ICMPV6_PROBE_DATA)
        .map_err(|_| WireError::BufferTooSmall)?;
    Ok(len)
}

/// A port bound by an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub transport: Transport,
    pub port: u16,
    /// The application's own MAC, or `None` to be reached through the
    /// canonical MAC (and the IP filter) only.
    pub mac: Option<MacAddr>,
    pub owner: Tag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    #[error("{transport} port {port} is already bound; choose another port or release the binding that holds it")]
    PortInUse { transport: Transport, port: u16 },
    #[error("MAC {mac} belongs to another application; request a fresh MAC")]
    MacInUse { mac: MacAddr },
    #[error(
        "MAC {mac} is not a locally administered unicast address; use one from random_app_mac"
    )]
    MacNotLocalUnicast { mac: MacAddr },
    #[error("MAC {mac} is the host's canonical MAC; an application MAC must differ from it")]
    MacIsCanonical { mac: MacAddr },
}

/// The MAC a binding uses and how many bindings share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MacOwner {
    owner: Tag,
    bindings: u32,
}

/// Bound ports and application MACs. See the module docs.
#[derive(Debug, Clone)]
pub struct Bindings {
    canonical: MacAddr,
    by_port: HashMap<(Transport, u16), Binding>,
    by_mac: HashMap<MacAddr, MacOwner>,
}

impl Bindings {
    pub fn new(canonical: MacAddr) -> Bindings {
        Bindings {
            canonical,
            by_port: HashMap::new(),
            by_mac: HashMap::new(),
        }
    }

    pub fn bind(&mut self, binding: Binding) -> Result<(), BindError> {
        let key = (binding.transport, binding.port);
        if self.by_port.contains_key(&key) {
            return Err(BindError::PortInUse {
                transport: binding.transport,
                port: binding.port,
            });
        }
        if let Some(mac) = binding.mac {
            self.check_mac(mac, binding.owner)?;
            self.by_mac
                .entry(mac)
                .or_insert(MacOwner {
                    owner: binding.owner,
                    bindings: 0,
                })
                .bindings += 1;
        }
        self.by_port.insert(key, binding);
        Ok(())
    }

    fn check_mac(&self, mac: MacAddr, owner: Tag) -> Result<(), BindError> {
        if mac == self.canonical {
            return Err(BindError::MacIsCanonical { mac });
        }
        if super::wire::is_group(mac) || !super::wire::is_locally_administered(mac) {
            return Err(BindError::MacNotLocalUnicast { mac });
        }
        match self.by_mac.get(&mac) {
            Some(holder) if holder.owner != owner => Err(BindError::MacInUse { mac }),
            _ => Ok(()),
        }
    }

    /// Removes a binding; its MAC is released with its last binding.
    pub fn unbind(&mut self, transport: Transport, port: u16) -> Option<Binding> {
        let binding = self.by_port.remove(&(transport, port))?;
        if let Some(mac) = binding.mac {
            self.release_mac(mac);
        }
        Some(binding)
    }

    /// Removes every binding of `owner` (its connection closed).
    pub fn unbind_owner(&mut self, owner: Tag) -> Vec<Binding> {
        let keys: Vec<_> = self
            .by_port
            .iter()
            .filter(|(_, b)| b.owner == owner)
            .map(|(key, _)| *key)
            .collect();
        keys.into_iter()
            .filter_map(|(transport, port)| self.unbind(transport, port))
            .collect()
    }

    fn release_mac(&mut self, mac: MacAddr) {
        if let Some(holder) = self.by_mac.get_mut(&mac) {
            holder.bindings -= 1;
            if holder.bindings == 0 {
                self.by_mac.remove(&mac);
            }
        }
    }

    pub fn lookup(&self, transport: Transport, port: u16) -> Option<&Binding> {
        self.by_port.get(&(transport, port))
    }

    /// The owner of an application MAC: the destination-MAC dispatch, a
    /// hash lookup with no parsing beyond the first six bytes.
    pub fn owner_of_mac(&self, mac: MacAddr) -> Option<Tag> {
        self.by_mac.get(&mac).map(|holder| holder.owner)
    }

    /// Whether `mac` is the canonical MAC or an application's: the host
    /// answers for it (xarp probes) and accepts frames addressed to it.
    pub fn is_ours(&self, mac: MacAddr) -> bool {
        mac == self.canonical || self.by_mac.contains_key(&mac)
    }

    /// Whether `mac` may not be chosen for a new application.
    pub fn is_taken(&self, mac: MacAddr) -> bool {
        self.is_ours(mac)
    }

    /// A MAC `owner` already uses, to share across its ports.
    pub fn mac_of_owner(&self, owner: Tag) -> Option<MacAddr> {
        self.by_mac
            .iter()
            .find(|(_, holder)| holder.owner == owner)
            .map(|(mac, _)| *mac)
    }

    pub fn canonical(&self) -> MacAddr {
        self.canonical
    }

    pub fn iter(&self) -> impl Iterator<Item = &Binding> {
        self.by_port.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::wire::{is_group, is_locally_administered, BROADCAST};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const CANONICAL: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    /// A vendor-assigned (universally administered) address.
    const OTHER: MacAddr = MacAddr([0x00, 0x1b, 0x21, 0xab, 0xcd, 0xef]);

    fn prober() -> Prober {
        Prober {
            mac: CANONICAL,
            ip: Ipv4Addr::new(10, 0, 0, 2),
        }
    }

    #[test]
    fn random_macs_are_local_unicast_and_avoid_taken_ones() {
        let mut rng = StdRng::seed_from_u64(7);
        let first = random_app_mac(&mut rng, |_| false).unwrap();
        for _ in 0..1000 {
            let mac = random_app_mac(&mut rng, |m| m == first || m == CANONICAL).unwrap();
            assert!(is_locally_administered(mac) && !is_group(mac), "{mac}");
            assert_ne!(mac, first);
        }
        assert_eq!(random_app_mac(&mut rng, |_| true), None);
    }

    fn config() -> ProbeConfig {
        ProbeConfig {
            probes: 2,
            probe_interval: Duration::from_millis(100),
            claim_wait: Duration::from_millis(300),
            announcements: 2,
            announce_interval: Duration::from_millis(100),
            max_candidates: 2,
        }
    }

    const CANDIDATE: MacAddr = MacAddr([0x06, 1, 2, 3, 4, 5]);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn unclaimed_candidate_is_probed_waited_and_announced() {
        let t0 = Instant::now();
        let mut probe = MacProbe::new(config(), prober(), Transport::Udp, 7, CANDIDATE, t0);
        let mut out = [0u8; 128];

        // Round 1: xarp probe (broadcast, from the canonical MAC) …
        let ProbeStep::Transmit(len) = probe.poll(t0, &mut out).unwrap() else {
            panic!()
        };
        let (eth, xarp) = Xarp::parse_frame(&out[..len]).unwrap();
        assert_eq!((eth.dst, eth.src), (BROADCAST, CANONICAL));
        assert!(matches!(
            xarp,
            Xarp::ProbeRequest {
                candidate: CANDIDATE,
                ..
            }
        ));
        // … then ICMPv6 echo to ff02::1, unicast to the candidate.
        let ProbeStep::Transmit(len) = probe.poll(t0, &mut out).unwrap() else {
            panic!()
        };
        {
            let sliced = etherparse::SlicedPacket::from_ethernet(&out[..len]).unwrap();
            let Some(etherparse::LinkSlice::Ethernet2(eth)) = sliced.link else {
                panic!()
            };
            assert_eq!(
                (eth.destination(), eth.source()),
                (CANDIDATE.0, CANONICAL.0)
            );
            let Some(etherparse::NetSlice::Ipv6(ip)) = sliced.net else {
                panic!()
            };
            assert_eq!(ip.header().destination_addr(), ALL_NODES);
            assert_eq!(ip.header().source_addr(), link_local(CANONICAL));
            let Some(etherparse::TransportSlice::Icmpv6(icmp)) = sliced.transport else {
                panic!()
            };
            assert!(matches!(
                icmp.icmp_type(),
                etherparse::Icmpv6Type::EchoRequest(_)
            ));
            assert_eq!(icmp.payload(), ICMPV6_PROBE_DATA);
        }

        assert_eq!(
            probe.poll(t0, &mut out),
            Ok(ProbeStep::WaitUntil(t0 + ms(100)))
        );
        assert!(matches!(
            probe.poll(t0 + ms(100), &mut out),
            Ok(ProbeStep::Transmit(_))
        ));
        assert!(matches!(
            probe.poll(t0 + ms(100), &mut out),
            Ok(ProbeStep::Transmit(_))
        ));
        assert_eq!(
            probe.poll(t0 + ms(100), &mut out),
            Ok(ProbeStep::WaitUntil(t0 + ms(400)))
        );
        assert!(probe.is_probing());
        assert!(!probe.observe(&out[..len]), "our own probe is no claim");
        assert_eq!(
            probe.poll(t0 + ms(400), &mut out),
            Ok(ProbeStep::Ready(CANDIDATE))
        );
        assert!(probe.is_ready());

        let ProbeStep::Transmit(len) = probe.poll(t0 + ms(400), &mut out).unwrap() else {
            panic!()
        };
        let (eth, xarp) = Xarp::parse_frame(&out[..len]).unwrap();
        assert_eq!((eth.dst, eth.src), (BROADCAST, CANDIDATE));
        assert!(matches!(
            xarp,
            Xarp::Announce {
                mac: CANDIDATE,
                port: 7,
                ..
            }
        ));
        assert!(
            !probe.observe(&out[..len]),
            "after probing, frames from it are ours"
        );
        assert_eq!(
            probe.poll(t0 + ms(450), &mut out),
            Ok(ProbeStep::WaitUntil(t0 + ms(500)))
        );
        assert!(matches!(
            probe.poll(t0 + ms(500), &mut out),
            Ok(ProbeStep::Transmit(_))
        ));
        assert_eq!(probe.poll(t0 + ms(600), &mut out), Ok(ProbeStep::Finished));
    }

    fn frame_from(src: MacAddr, ethertype: u16) -> [u8; 60] {
        let mut frame = [0u8; 60];
        EthernetRepr {
            dst: CANONICAL,
            src,
            ethertype,
        }
        .emit(&mut frame)
        .unwrap();
        frame
    }

    #[test]
    fn any_frame_from_the_candidate_is_a_claim() {
        let t0 = Instant::now();
        let mut probe = MacProbe::new(config(), prober(), Transport::Udp, 7, CANDIDATE, t0);
        assert!(!probe.observe(&frame_from(OTHER, 0x86dd)));
        assert!(
            probe.observe(&frame_from(CANDIDATE, 0x86dd)),
            "an IPv6 neighbour solicitation"
        );
        assert_eq!(
            probe.poll(t0, &mut [0u8; 128]),
            Ok(ProbeStep::Claimed(CANDIDATE))
        );
    }

    #[test]
    fn an_xarp_claim_is_a_claim() {
        let t0 = Instant::now();
        let mut probe = MacProbe::new(config(), prober(), Transport::Udp, 7, CANDIDATE, t0);
        let mut out = [0u8; 128];
        probe.poll(t0, &mut out).unwrap();
        let (_, request) = Xarp::parse_frame(&out).unwrap();
        let claim = request.probe_claim(Ipv4Addr::new(10, 0, 0, 77)).unwrap();
        let len = claim.emit_frame(&mut out).unwrap();
        // Rewrite the Ethernet source, so only the ARP body tells.
        out[6..12].copy_from_slice(&OTHER.0);
        assert!(probe.observe(&out[..len]));
    }

    #[test]
    fn a_simultaneous_probe_for_the_same_candidate_is_a_claim() {
        let t0 = Instant::now();
        let mut probe = MacProbe::new(config(), prober(), Transport::Udp, 7, CANDIDATE, t0);
        let theirs = Xarp::ProbeRequest {
            prober_mac: OTHER,
            prober_ip: Ipv4Addr::new(10, 0, 0, 3),
            candidate: CANDIDATE,
        };
        let mut out = [0u8; 60];
        theirs.emit_frame(&mut out).unwrap();
        assert!(probe.observe(&out));
    }

    #[test]
    fn claims_lead_to_retry_until_exhausted() {
        let t0 = Instant::now();
        let mut probe = MacProbe::new(config(), prober(), Transport::Udp, 7, CANDIDATE, t0);
        probe.observe(&frame_from(CANDIDATE, 0x0800));
        let next = MacAddr([0x06, 9, 9, 9, 9, 9]);
        probe.retry(next, t0 + ms(10)).unwrap();
        assert_eq!(probe.candidate(), next);
        assert!(matches!(
            probe.poll(t0 + ms(10), &mut [0u8; 128]),
            Ok(ProbeStep::Transmit(_))
        ));
        probe.observe(&frame_from(next, 0x0800));
        assert_eq!(
            probe.retry(CANDIDATE, t0 + ms(20)),
            Err(ProbeError::Exhausted { tried: 2 })
        );
    }

    #[test]
    fn probe_into_short_buffer_fails() {
        let t0 = Instant::now();
        let mut probe = MacProbe::new(config(), prober(), Transport::Udp, 7, CANDIDATE, t0);
        assert_eq!(
            probe.poll(t0, &mut [0u8; 40]),
            Err(WireError::BufferTooSmall)
        );
    }

    #[test]
    fn link_local_is_modified_eui64() {
        assert_eq!(
            link_local(CANONICAL),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
    }

    fn binding(port: u16, mac: Option<MacAddr>, owner: Tag) -> Binding {
        Binding {
            transport: Transport::Udp,
            port,
            mac,
            owner,
        }
    }

    #[test]
    fn bindings_dispatch_by_mac_and_port() {
        let mut table = Bindings::new(CANONICAL);
        table.bind(binding(7, Some(CANDIDATE), 11)).unwrap();
        table.bind(binding(8, Some(CANDIDATE), 11)).unwrap();
        table.bind(binding(9, None, 12)).unwrap();
        assert_eq!(table.owner_of_mac(CANDIDATE), Some(11));
        assert_eq!(table.owner_of_mac(CANONICAL), None);
        assert_eq!(table.lookup(Transport::Udp, 9).unwrap().owner, 12);
        assert_eq!(table.lookup(Transport::Tcp, 9), None);
        assert_eq!(table.mac_of_owner(11), Some(CANDIDATE));
        assert!(table.is_ours(CANONICAL) && table.is_ours(CANDIDATE) && !table.is_ours(OTHER));

        table.unbind(Transport::Udp, 7);
        assert_eq!(
            table.owner_of_mac(CANDIDATE),
            Some(11),
            "port 8 still uses it"
        );
        assert_eq!(table.unbind_owner(11).len(), 1);
        assert_eq!(table.owner_of_mac(CANDIDATE), None);
        assert_eq!(table.iter().count(), 1);
    }

    #[test]
    fn bind_refusals() {
        let mut table = Bindings::new(CANONICAL);
        table.bind(binding(7, Some(CANDIDATE), 11)).unwrap();
        assert_eq!(
            table.bind(binding(7, None, 12)),
            Err(BindError::PortInUse {
                transport: Transport::Udp,
                port: 7
            })
        );
        assert_eq!(
            table.bind(binding(8, Some(CANDIDATE), 12)),
            Err(BindError::MacInUse { mac: CANDIDATE })
        );
        let canonical_local = MacAddr([0x02, 0, 0, 0, 0, 1]);
        let mut local = Bindings::new(canonical_local);
        assert_eq!(
            local.bind(binding(8, Some(canonical_local), 12)),
            Err(BindError::MacIsCanonical {
                mac: canonical_local
            })
        );
        assert_eq!(
            table.bind(binding(8, Some(OTHER), 12)),
            Err(BindError::MacNotLocalUnicast { mac: OTHER })
        );
        assert_eq!(
            table.bind(binding(8, Some(MacAddr([0x03, 0, 0, 0, 0, 1])), 12)),
            Err(BindError::MacNotLocalUnicast {
                mac: MacAddr([0x03, 0, 0, 0, 0, 1])
            })
        );
    }
}
