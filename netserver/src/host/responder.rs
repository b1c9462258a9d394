//! [`Host`]: the server as a host on the link — its addresses, bindings,
//! neighbour table and MAC probes, driven by received frames
//! ([`Host::handle`]) and by time ([`Host::poll`]).

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Instant;

use rand::rngs::StdRng;

use super::mac::{
    random_app_mac, BindError, Binding, Bindings, MacProbe, ProbeConfig, ProbeError, ProbeStep,
    Prober,
};
use super::neighbour::{NeighbourConfig, NeighbourEvent, NeighbourTable, Resolve};
use super::spoof::{check_transmit, TxBinding, TxHeader, TxPolicy, TxRefusal};
use super::wire::arp::{ArpOperation, ArpRepr};
use super::wire::ethernet::{self, EthernetRepr, ETHERTYPE_ARP, ETHERTYPE_IPV4};
use super::wire::icmp::{EchoKind, EchoRepr};
use super::wire::ipv4::{Ipv4Repr, Transport, PROTO_ICMP};
use super::wire::{is_group, MacAddr, WireError, BROADCAST, UNSPECIFIED_MAC};
use super::xarp::{ResolveStatus, Xarp};
use crate::tag::Tag;

/// The host's identity and the control plane's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostConfig {
    /// The canonical MAC: the interface's, or `--mac`.
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    /// The on-link prefix length (`--ip A.B.C.D/LEN`).
    pub prefix_len: u8,
    /// Where off-link destinations go, if anywhere.
    pub gateway: Option<Ipv4Addr>,
    /// TTL of the packets the host originates (echo replies).
    pub ttl: u8,
    pub neighbour: NeighbourConfig,
    pub probe: ProbeConfig,
    pub tx: TxPolicy,
}

impl HostConfig {
    pub fn new(mac: MacAddr, ip: Ipv4Addr, prefix_len: u8) -> HostConfig {
        HostConfig {
            mac,
            ip,
            prefix_len,
            gateway: None,
            ttl: 64,
            neighbour: NeighbourConfig::default(),
            probe: ProbeConfig::default(),
            tx: TxPolicy::default(),
        }
    }

    /// Whether `ip` is on the link (inside the host's prefix).
    pub fn is_on_link(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len.min(32)))
            .unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.ip) & mask
    }
}

/// What became of a frame shown to [`Host::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Taken by the control plane; send the `usize` bytes written to `out`.
    Reply(usize),
    /// Taken by the control plane, nothing to send (an ARP reply learned,
    /// an xarp claim seen).
    Consumed,
    /// Control traffic the control plane would not answer; count it as
    /// control with this reason.
    Ignored(Ignored),
    /// Not control traffic: the data path classifies it as usual.
    NotControl,
}

/// Why a control frame got no answer; one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ignored {
    /// The bytes did not parse ([`WireError`] says how, for logs).
    Malformed(WireError),
    /// ARP/xarp for another host.
    NotForUs,
    /// An IPv4 fragment of an echo request (not reassembled).
    Fragment,
    /// The reply did not fit in the caller's buffer.
    OutputTooSmall,
}

impl Ignored {
    /// The counter name.
    pub const fn name(self) -> &'static str {
        match self {
            Ignored::Malformed(_) => "malformed",
            Ignored::NotForUs => "not_for_us",
            Ignored::Fragment => "fragment",
            Ignored::OutputTooSmall => "output_too_small",
        }
    }
}

/// Work the host asks of its owner ([`Host::poll`]).
#[derive(Debug, PartialEq, Eq)]
pub enum HostEvent<F> {
    /// Send the `usize` bytes written to `out` (a probe, an announcement,
    /// an ARP request).
    Transmit(usize),
    /// A frame that waited for resolution can go: set its destination MAC
    /// to `mac` and send it.
    SendQueued { mac: MacAddr, frame: F },
    /// No answer from `ip`: these frames cannot be sent (complete them as
    /// failed, count them).
    Unresolved { ip: Ipv4Addr, frames: VecDeque<F> },
    /// A MAC was found free and bound: tell the application.
    MacReady {
        owner: Tag,
        transport: Transport,
        port: u16,
        mac: MacAddr,
    },
    /// No free MAC could be found, or the port was taken meanwhile.
    MacFailed {
        owner: Tag,
        transport: Transport,
        port: u16,
        error: HostBindError,
    },
    /// Nothing to do before `next` (or until a frame arrives, if `None`).
    Idle { next: Option<Instant> },
}

/// Why a bind failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostBindError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("{transport} port {port} already has a MAC probe running; wait for it or choose another port")]
    ProbeRunning { transport: Transport, port: u16 },
    #[error("no free random MAC could be drawn (too many in use)")]
    NoCandidate,
}

/// How a bind went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindProgress {
    /// Bound now, with this MAC (the canonical one if none was asked for,
    /// or the MAC the owner already uses for another port).
    Bound(MacAddr),
    /// A MAC probe runs; [`HostEvent::MacReady`] or `MacFailed` follows.
    Probing,
}

#[derive(Debug)]
struct PendingMac {
    owner: Tag,
    probe: MacProbe,
}

/// The server as a host on the link. See the [module docs](super).
#[derive(Debug)]
pub struct Host<F> {
    config: HostConfig,
    bindings: Bindings,
    neighbours: NeighbourTable<F>,
    probes: Vec<PendingMac>,
    /// Frames released by a resolution, handed out by `poll`.
    released: VecDeque<(MacAddr, F)>,
    rng: StdRng,
}

impl<F> Host<F> {
    /// A host; `rng` draws application MACs (seed it for tests).
    pub fn new(config: HostConfig, rng: StdRng) -> Host<F> {
        Host {
            bindings: Bindings::new(config.mac),
            neighbours: NeighbourTable::new(config.neighbour),
            probes: Vec::new(),
            released: VecDeque::new(),
            rng,
            config,
        }
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    pub fn bindings(&self) -> &Bindings {
        &self.bindings
    }

    pub fn neighbours(&self) -> &NeighbourTable<F> {
        &self.neighbours
    }

    // ---- receive ------------------------------------------------------

    /// Whether the control plane takes this frame — ARP or xarp addressed
    /// to the host (or broadcast), an ICMP echo request to the host's IP —
    /// so that the data path hands it to [`handle`](Self::handle) and counts
    /// it as `control`. Reads headers only; no state changes.
    pub fn is_control(&self, frame: &[u8]) -> bool {
        let Ok((eth, payload)) = EthernetRepr::parse(frame) else {
            return false;
        };
        if eth.dst != BROADCAST && !self.bindings.is_ours(eth.dst) {
            return false;
        }
        match eth.ethertype {
            ETHERTYPE_ARP => true,
            ETHERTYPE_IPV4 => self.is_echo_request_for_us(payload),
            _ => false,
        }
    }

    fn is_echo_request_for_us(&self, packet: &[u8]) -> bool {
        // Header fields only, without checksums: a damaged echo request is
        // still the control plane's to count.
        let Ok(ip) = etherparse::Ipv4HeaderSlice::from_slice(packet) else {
            return false;
        };
        ip.destination_addr() == self.config.ip
            && ip.protocol().0 == PROTO_ICMP
            && packet.get(ip.slice().len()) == Some(&8)
    }

    /// Whether probes are running: then every received frame must also be
    /// shown to [`observe`](Self::observe), since a claim can be any frame
    /// from the candidate MAC.
    pub fn is_probing(&self) -> bool {
        self.probes.iter().any(|p| p.probe.is_probing())
    }

    /// Shows a frame to the running MAC probes (see `is_probing`).
    pub fn observe(&mut self, frame: &[u8]) {
        for pending in &mut self.probes {
            pending.probe.observe(frame);
        }
    }

    /// Handles a received frame at `now`, writing any reply into `out`
    /// (1514 bytes always suffice). Probes are shown the frame too.
    pub fn handle(&mut self, frame: &[u8], now: Instant, out: &mut [u8]) -> Verdict {
        if !self.probes.is_empty() {
            self.observe(frame);
        }
        let Ok((eth, payload)) = EthernetRepr::parse(frame) else {
            return Verdict::NotControl;
        };
        if eth.dst != BROADCAST && !self.bindings.is_ours(eth.dst) {
            return Verdict::NotControl;
        }
        let verdict = match eth.ethertype {
            ETHERTYPE_ARP => self.handle_arp(payload, now, out),
            ETHERTYPE_IPV4 => self.handle_ipv4(&eth, payload, out),
            _ => Ok(Verdict::NotControl),
        };
        verdict.unwrap_or_else(|e| match e {
            WireError::BufferTooSmall => Verdict::Ignored(Ignored::OutputTooSmall),
            other => Verdict::Ignored(Ignored::Malformed(other)),
        })
    }

    fn handle_arp(
        &mut self,
        payload: &[u8],
        now: Instant,
        out: &mut [u8],
    ) -> Result<Verdict, WireError> {
        let (arp, extension) = ArpRepr::parse(payload)?;
        match arp.operation {
            ArpOperation::Request | ArpOperation::Reply => self.handle_plain_arp(&arp, now, out),
            ArpOperation::Exp1 | ArpOperation::Exp2 => {
                let xarp = Xarp::parse(&arp, extension)?;
                self.handle_xarp(&xarp, now, out)
            }
            ArpOperation::Other(_) => Ok(Verdict::Ignored(Ignored::NotForUs)),
        }
    }

    /// RFC 826's algorithm: merge the sender, and answer a request for the
    /// host's IP with the canonical MAC. Application MACs are never given
    /// out by plain ARP, so every other host maps the IP to the canonical
    /// MAC and nothing on the link breaks.
    fn handle_plain_arp(
        &mut self,
        arp: &ArpRepr,
        now: Instant,
        out: &mut [u8],
    ) -> Result<Verdict, WireError> {
        let for_us = arp.target_ip == self.config.ip;
        self.learn(arp.sender_ip, arp.sender_mac, for_us, now);
        if !for_us {
            return Ok(Verdict::Ignored(Ignored::NotForUs));
        }
        if arp.operation != ArpOperation::Request {
            return Ok(Verdict::Consumed);
        }
        let reply = ArpRepr {
            operation: ArpOperation::Reply,
            sender_mac: self.config.mac,
            sender_ip: self.config.ip,
            target_mac: arp.sender_mac,
            target_ip: arp.sender_ip,
        };
        let len = reply.emit_frame(arp.sender_mac, self.config.mac, &[], out)?;
        Ok(Verdict::Reply(len))
    }

    fn handle_xarp(
        &mut self,
        xarp: &Xarp,
        now: Instant,
        out: &mut [u8],
    ) -> Result<Verdict, WireError> {
        match *xarp {
            Xarp::ResolveRequest {
                asker_mac,
                asker_ip,
                ip,
                transport,
                port,
            } if ip == self.config.ip => {
                self.learn(asker_ip, asker_mac, true, now);
                let (mac, status) = match self.bindings.lookup(transport, port).and_then(|b| b.mac)
                {
                    Some(mac) => (mac, ResolveStatus::Application),
                    None => (self.config.mac, ResolveStatus::Canonical),
                };
                self.emit_xarp(xarp.resolve_reply(mac, status), out)
            }
            Xarp::ProbeRequest {
                prober_mac,
                candidate,
                ..
            } if prober_mac != self.config.mac && self.bindings.is_ours(candidate) => {
                self.emit_xarp(xarp.probe_claim(self.config.ip), out)
            }
            Xarp::ProbeClaim { prober_mac, .. } if prober_mac == self.config.mac => {
                Ok(Verdict::Consumed) // the probes saw it in `observe`
            }
            _ => Ok(Verdict::Ignored(Ignored::NotForUs)),
        }
    }

    fn emit_xarp(&self, reply: Option<Xarp>, out: &mut [u8]) -> Result<Verdict, WireError> {
        match reply {
            Some(reply) => Ok(Verdict::Reply(reply.emit_frame(out)?)),
            None => Ok(Verdict::Ignored(Ignored::NotForUs)),
        }
    }

    /// ICMP echo requests to the host's IP get a reply with the same
    /// identifier, sequence and data. Everything else IPv4 is the data
    /// path's, including other ICMP (a client may filter for it).
    fn handle_ipv4(
        &mut self,
        eth: &EthernetRepr,
        packet: &[u8],
        out: &mut [u8],
    ) -> Result<Verdict, WireError> {
        if !self.is_echo_request_for_us(packet) {
            return Ok(Verdict::NotControl);
        }
        let (ip, message) = Ipv4Repr::parse(packet)?;
        if ip.is_fragment {
            return Ok(Verdict::Ignored(Ignored::Fragment));
        }
        let (echo, data) = EchoRepr::parse(message)?;
        let reply_ip = Ipv4Repr {
            src: self.config.ip,
            dst: ip.src,
            protocol: PROTO_ICMP,
            ttl: self.config.ttl,
            is_fragment: false,
            header_len: 20,
        };
        let reply = EchoRepr {
            kind: EchoKind::Reply,
            ..echo
        };
        EthernetRepr {
            dst: eth.src,
            src: self.config.mac,
            ethertype: ETHERTYPE_IPV4,
        }
        .emit(out)?;
        let ip_out = out
            .get_mut(ethernet::HEADER_LEN..)
            .ok_or(WireError::BufferTooSmall)?;
        let ip_len = reply_ip.emit(reply.buffer_len(data), ip_out)?;
        let icmp_out = ip_out.get_mut(ip_len..).ok_or(WireError::BufferTooSmall)?;
        let icmp_len = reply.emit(data, icmp_out)?;
        let len = ethernet::pad_to_minimum(out, ethernet::HEADER_LEN + ip_len + icmp_len)?;
        Ok(Verdict::Reply(len))
    }

    /// Merges an ARP sender into the neighbour table, if it is a plausible
    /// on-link neighbour and not one of our own addresses (a reflection or
    /// a spoof); waiting frames are queued for `poll`.
    fn learn(&mut self, ip: Ipv4Addr, mac: MacAddr, create: bool, now: Instant) {
        if ip == self.config.ip || !self.config.is_on_link(ip) || self.bindings.is_ours(mac) {
            return;
        }
        if let Some(frames) = self.neighbours.learn(ip, mac, create, now) {
            self.released
                .extend(frames.into_iter().map(|frame| (mac, frame)));
        }
    }

    // ---- bind -----------------------------------------------------------

    /// Binds `(transport, port)` for `owner`. Without `own_mac` the port is
    /// reached through the canonical MAC. With it, the owner's existing
    /// application MAC is reused, or a fresh one is probed (completion comes
    /// from [`poll`](Self::poll)).
    pub fn bind(
        &mut self,
        owner: Tag,
        transport: Transport,
        port: u16,
        own_mac: bool,
        now: Instant,
    ) -> Result<BindProgress, HostBindError> {
        if self
            .probes
            .iter()
            .any(|p| p.probe.binding() == (transport, port))
        {
            return Err(HostBindError::ProbeRunning { transport, port });
        }
        let existing = self.bindings.mac_of_owner(owner);
        if !own_mac || existing.is_some() {
            let mac = if own_mac { existing } else { None };
            self.bindings.bind(Binding {
                transport,
                port,
                mac,
                owner,
            })?;
            return Ok(BindProgress::Bound(mac.unwrap_or(self.config.mac)));
        }
        if let Some(holder) = self.bindings.lookup(transport, port) {
            return Err(BindError::PortInUse {
                transport: holder.transport,
                port,
            }
            .into());
        }
        let candidate = self.draw_candidate().ok_or(HostBindError::NoCandidate)?;
        let prober = Prober {
            mac: self.config.mac,
            ip: self.config.ip,
        };
        let probe = MacProbe::new(self.config.probe, prober, transport, port, candidate, now);
        self.probes.push(PendingMac { owner, probe });
        Ok(BindProgress::Probing)
    }

    /// A random application MAC used by nobody we know of.
    fn draw_candidate(&mut self) -> Option<MacAddr> {
        let (bindings, neighbours, probes) = (&self.bindings, &self.neighbours, &self.probes);
        random_app_mac(&mut self.rng, |mac| {
            bindings.is_taken(mac)
                || neighbours.contains_mac(mac)
                || probes.iter().any(|p| p.probe.candidate() == mac)
        })
    }

    pub fn unbind(&mut self, transport: Transport, port: u16) -> Option<Binding> {
        self.probes
            .retain(|p| p.probe.binding() != (transport, port));
        self.bindings.unbind(transport, port)
    }

    /// Removes every binding and probe of `owner` (its connection closed).
    pub fn unbind_owner(&mut self, owner: Tag) -> Vec<Binding> {
        self.probes.retain(|p| p.owner != owner);
        self.bindings.unbind_owner(owner)
    }

    /// The destination-MAC dispatch: the owner of an application MAC.
    pub fn owner_of_mac(&self, mac: MacAddr) -> Option<Tag> {
        self.bindings.owner_of_mac(mac)
    }

    /// The fast-path dispatch on a whole frame: its destination MAC's owner.
    pub fn owner_of_frame(&self, frame: &[u8]) -> Option<Tag> {
        ethernet::destination(frame).and_then(|mac| self.owner_of_mac(mac))
    }

    // ---- transmit -------------------------------------------------------

    /// Checks a frame `owner` wants to send from its binding on
    /// `(transport, port)`. See [`super::spoof`].
    pub fn check_transmit(
        &self,
        owner: Tag,
        transport: Transport,
        port: u16,
        segments: &[&[u8]],
    ) -> Result<TxHeader, TxRefusal> {
        let binding = self
            .bindings
            .lookup(transport, port)
            .filter(|b| b.owner == owner)
            .ok_or(TxRefusal::NotBound)?;
        let tx = TxBinding {
            mac: binding.mac.unwrap_or(self.config.mac),
            ip: self.config.ip,
            transport,
            port,
        };
        check_transmit(&tx, &self.config.tx, segments)
    }

    /// [`check_transmit`](Self::check_transmit) on a prefix the caller
    /// copied out of a frame of `frame_len` bytes
    /// ([`super::spoof::check_prefix`]).
    pub fn check_transmit_prefix(
        &self,
        owner: Tag,
        transport: Transport,
        port: u16,
        prefix: &[u8],
        frame_len: usize,
    ) -> Result<TxHeader, TxRefusal> {
        let binding = self
            .bindings
            .lookup(transport, port)
            .filter(|b| b.owner == owner)
            .ok_or(TxRefusal::NotBound)?;
        let tx = TxBinding {
            mac: binding.mac.unwrap_or(self.config.mac),
            ip: self.config.ip,
            transport,
            port,
        };
        super::spoof::check_prefix(&tx, &self.config.tx, prefix, frame_len)
    }

    /// The neighbour a packet to `dst` goes to: `dst` itself on the link,
    /// else the gateway; `None` if off-link with no gateway.
    pub fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        if self.config.is_on_link(dst) {
            Some(dst)
        } else {
            self.config.gateway
        }
    }

    /// Where a frame to next hop `ip` goes (see [`NeighbourTable::resolve`]).
    pub fn resolve(&mut self, ip: Ipv4Addr, frame: F, now: Instant) -> Resolve<F> {
        self.neighbours.resolve(ip, frame, now)
    }

    // ---- time -----------------------------------------------------------

    /// Advances time and returns the next piece of work; frames to send are
    /// written into `out` (at least 1514 bytes). Call until it returns `Idle`, then again at
    /// `next` or when a frame arrives.
    pub fn poll(&mut self, now: Instant, out: &mut [u8]) -> HostEvent<F> {
        if let Some((mac, frame)) = self.released.pop_front() {
            return HostEvent::SendQueued { mac, frame };
        }
        let mut next = None;
        for index in 0..self.probes.len() {
            match self.poll_probe(index, now, out) {
                Ok(Some(event)) => return event,
                Ok(None) => {}
                Err(at) => next = earliest(next, Some(at)),
            }
        }
        self.probes.retain(|p| !p.probe.is_finished());
        match self.neighbours.poll(now) {
            NeighbourEvent::Request { ip, unicast } => match self.arp_request(ip, unicast, out) {
                Ok(len) => HostEvent::Transmit(len),
                Err(_) => HostEvent::Idle { next }, // `out` below 60 bytes
            },
            NeighbourEvent::Failed { ip, frames } => HostEvent::Unresolved { ip, frames },
            NeighbourEvent::Idle { next: at } => HostEvent::Idle {
                next: earliest(next, at),
            },
        }
    }

    /// One probe's step: `Ok(Some(event))` to report, `Ok(None)` if it has
    /// nothing now (finished, or removed), `Err(at)` to wait until `at`.
    fn poll_probe(
        &mut self,
        index: usize,
        now: Instant,
        out: &mut [u8],
    ) -> Result<Option<HostEvent<F>>, Instant> {
        let Some(pending) = self.probes.get_mut(index) else {
            return Ok(None);
        };
        let owner = pending.owner;
        let (transport, port) = pending.probe.binding();
        // Only a caller's `out` below 1514 bytes fails; the probe then
        // stays where it is rather than spin.
        let Ok(step) = pending.probe.poll(now, out) else {
            return Ok(None);
        };
        match step {
            ProbeStep::Transmit(len) => Ok(Some(HostEvent::Transmit(len))),
            ProbeStep::WaitUntil(at) => Err(at),
            ProbeStep::Finished => Ok(None),
            ProbeStep::Ready(mac) => {
                let bound = self.bindings.bind(Binding {
                    transport,
                    port,
                    mac: Some(mac),
                    owner,
                });
                Ok(Some(match bound {
                    Ok(()) => HostEvent::MacReady {
                        owner,
                        transport,
                        port,
                        mac,
                    },
                    Err(error) => {
                        self.probes.remove(index);
                        HostEvent::MacFailed {
                            owner,
                            transport,
                            port,
                            error: error.into(),
                        }
                    }
                }))
            }
            ProbeStep::Claimed(_) => {
                let retried = match self.draw_candidate() {
                    Some(candidate) => self.probes[index]
                        .probe
                        .retry(candidate, now)
                        .map_err(HostBindError::from),
                    None => Err(HostBindError::NoCandidate),
                };
                match retried {
                    Ok(()) => self.poll_probe(index, now, out),
                    Err(error) => {
                        self.probes.remove(index);
                        Ok(Some(HostEvent::MacFailed {
                            owner,
                            transport,
                            port,
                            error,
                        }))
                    }
                }
            }
        }
    }

    /// A who-has request for `ip`, broadcast or unicast (a stale refresh).
    fn arp_request(
        &self,
        ip: Ipv4Addr,
        unicast: Option<MacAddr>,
        out: &mut [u8],
    ) -> Result<usize, WireError> {
        let request = ArpRepr {
            operation: ArpOperation::Request,
            sender_mac: self.config.mac,
            sender_ip: self.config.ip,
            target_mac: UNSPECIFIED_MAC,
            target_ip: ip,
        };
        let dst = unicast.filter(|mac| !is_group(*mac)).unwrap_or(BROADCAST);
        request.emit_frame(dst, self.config.mac, &[], out)
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
