//! The [`Host`] state machine driven with frames and time, end to end.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::neighbour::Resolve;
use super::spoof::TxRefusal;
use super::wire::arp::{ArpOperation, ArpRepr};
use super::wire::icmp::{EchoKind, EchoRepr};
use super::wire::ipv4::Ipv4Repr;
use super::wire::WireError;
use super::wire::{is_group, is_locally_administered, BROADCAST, UNSPECIFIED_MAC};
use super::xarp::{ResolveStatus, Xarp};
use super::*;

const HOST_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x00, 0x00, 0x02]);
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PEER_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x00, 0x00, 0x01]);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn host() -> Host<u32> {
    Host::new(
        HostConfig::new(HOST_MAC, HOST_IP, 24),
        StdRng::seed_from_u64(1),
    )
}

fn arp_frame(operation: ArpOperation, target_ip: Ipv4Addr, eth_dst: MacAddr) -> [u8; 60] {
    let arp = ArpRepr {
        operation,
        sender_mac: PEER_MAC,
        sender_ip: PEER_IP,
        target_mac: if operation == ArpOperation::Reply {
            HOST_MAC
        } else {
            UNSPECIFIED_MAC
        },
        target_ip,
    };
    let mut frame = [0u8; 60];
    arp.emit_frame(eth_dst, PEER_MAC, &[], &mut frame).unwrap();
    frame
}

fn ping(dst_mac: MacAddr, dst_ip: Ipv4Addr, data: &[u8]) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2(PEER_MAC.0, dst_mac.0)
        .ipv4(PEER_IP.octets(), dst_ip.octets(), 64)
        .icmpv4_echo_request(0x4242, 7);
    let mut frame = Vec::new();
    builder.write(&mut frame, data).unwrap();
    frame
}

fn reply_of(verdict: Verdict) -> usize {
    match verdict {
        Verdict::Reply(len) => len,
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[test]
fn answers_arp_for_its_ip_with_the_canonical_mac_and_learns_the_asker() {
    let mut host = host();
    let now = Instant::now();
    let frame = arp_frame(ArpOperation::Request, HOST_IP, BROADCAST);
    assert!(host.is_control(&frame));
    let mut out = [0u8; 1514];
    let len = reply_of(host.handle(&frame, now, &mut out));
    let (eth, arp, _) = ArpRepr::parse_frame(&out[..len]).unwrap();
    assert_eq!((eth.dst, eth.src), (PEER_MAC, HOST_MAC));
    assert_eq!(arp.operation, ArpOperation::Reply);
    assert_eq!((arp.sender_mac, arp.sender_ip), (HOST_MAC, HOST_IP));
    assert_eq!((arp.target_mac, arp.target_ip), (PEER_MAC, PEER_IP));
    assert_eq!(len, 60);
    assert_eq!(host.resolve(PEER_IP, 1, now), Resolve::Send(PEER_MAC, 1));
}

#[test]
fn ignores_arp_for_other_hosts_without_creating_entries() {
    let mut host = host();
    let now = Instant::now();
    let frame = arp_frame(ArpOperation::Request, Ipv4Addr::new(10, 0, 0, 3), BROADCAST);
    assert_eq!(
        host.handle(&frame, now, &mut [0u8; 1514]),
        Verdict::Ignored(Ignored::NotForUs)
    );
    assert!(host.neighbours().is_empty());
}

#[test]
fn ignores_frames_unicast_to_other_macs() {
    let mut host = host();
    let frame = arp_frame(
        ArpOperation::Request,
        HOST_IP,
        MacAddr([0x52, 0x54, 0, 0, 0, 9]),
    );
    assert!(!host.is_control(&frame));
    assert_eq!(
        host.handle(&frame, Instant::now(), &mut [0u8; 1514]),
        Verdict::NotControl
    );
}

#[test]
fn answers_echo_requests_with_the_data_a_fresh_checksum_and_its_ttl() {
    let mut host = host();
    let request = ping(
        HOST_MAC,
        HOST_IP,
        b"0123456789abcdef0123456789abcdef0123456789abcdef01234567",
    );
    assert!(host.is_control(&request));
    let mut out = [0u8; 1514];
    let len = reply_of(host.handle(&request, Instant::now(), &mut out));
    let (eth, ip, message) = Ipv4Repr::parse_frame(&out[..len]).unwrap();
    assert_eq!((eth.dst, eth.src), (PEER_MAC, HOST_MAC));
    assert_eq!(
        (ip.src, ip.dst, ip.ttl, ip.protocol),
        (HOST_IP, PEER_IP, 64, 1)
    );
    let (echo, data) = EchoRepr::parse(message).unwrap(); // checks the checksum
    assert_eq!(
        (echo.kind, echo.ident, echo.seq),
        (EchoKind::Reply, 0x4242, 7)
    );
    assert_eq!(data, &request[42..]);
    assert_eq!(len, request.len());
}

#[test]
fn short_echo_replies_are_padded() {
    let mut host = host();
    let mut out = [0xeeu8; 1514];
    assert_eq!(
        reply_of(host.handle(&ping(HOST_MAC, HOST_IP, b"x"), Instant::now(), &mut out)),
        60
    );
}

#[test]
fn echo_to_other_addresses_is_not_control() {
    let mut host = host();
    let request = ping(HOST_MAC, Ipv4Addr::new(10, 0, 0, 3), b"x");
    assert!(!host.is_control(&request));
    assert_eq!(
        host.handle(&request, Instant::now(), &mut [0u8; 1514]),
        Verdict::NotControl
    );
}

#[test]
fn damaged_echo_requests_are_counted_not_answered() {
    let mut host = host();
    let mut request = ping(HOST_MAC, HOST_IP, b"abcd");
    *request.last_mut().unwrap() ^= 1;
    assert!(host.is_control(&request));
    assert_eq!(
        host.handle(&request, Instant::now(), &mut [0u8; 1514]),
        Verdict::Ignored(Ignored::Malformed(WireError::IcmpChecksum))
    );
    let request = ping(HOST_MAC, HOST_IP, b"abcd");
    assert_eq!(
        host.handle(&request, Instant::now(), &mut [0u8; 41]),
        Verdict::Ignored(Ignored::OutputTooSmall)
    );
}

/// Drives `host.poll` until idle, returning the frames it sent and events.
fn drain(
    host: &mut Host<u32>,
    now: Instant,
) -> (Vec<Vec<u8>>, Vec<HostEvent<u32>>, Option<Instant>) {
    let mut frames = Vec::new();
    let mut events = Vec::new();
    let mut out = [0u8; 1514];
    loop {
        match host.poll(now, &mut out) {
            HostEvent::Transmit(len) => frames.push(out[..len].to_vec()),
            HostEvent::Idle { next } => return (frames, events, next),
            event => events.push(event),
        }
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Binds UDP `port` with its own MAC and runs the probe to completion.
fn bind_own_mac(host: &mut Host<u32>, owner: u64, port: u16, t0: Instant) -> MacAddr {
    bind_own_mac_and_announce(host, owner, port, t0).0
}

/// … also returning the frames sent when the MAC became ready.
fn bind_own_mac_and_announce(
    host: &mut Host<u32>,
    owner: u64,
    port: u16,
    t0: Instant,
) -> (MacAddr, Vec<Vec<u8>>) {
    assert_eq!(
        host.bind(owner, Transport::Udp, port, true, t0),
        Ok(BindProgress::Probing)
    );
    let (frames, events, next) = drain(host, t0);
    assert_eq!(frames.len(), 2, "xarp + ICMPv6 probe");
    assert!(events.is_empty());
    assert_eq!(next, Some(t0 + ms(200)));
    let (frames, _, next) = drain(host, t0 + ms(200));
    assert_eq!(frames.len(), 2);
    let (frames, events, _) = drain(host, next.unwrap());
    let Some(HostEvent::MacReady {
        mac,
        owner: o,
        port: p,
        ..
    }) = events.first()
    else {
        panic!("{events:?}")
    };
    assert_eq!((*o, *p), (owner, port));
    (*mac, frames)
}

#[test]
fn own_mac_bind_probes_binds_announces_and_dispatches_by_mac() {
    let mut host = host();
    let t0 = Instant::now();
    let (mac, announced) = bind_own_mac_and_announce(&mut host, 11, 7, t0);
    assert!(is_locally_administered(mac) && !is_group(mac) && mac != HOST_MAC);
    assert_eq!(host.owner_of_mac(mac), Some(11));
    let mut frame = [0u8; 60];
    frame[..6].copy_from_slice(&mac.0);
    assert_eq!(host.owner_of_frame(&frame), Some(11));
    assert_eq!(host.owner_of_frame(&frame[..5]), None);

    // The announcements follow, from the new MAC; then the probe is gone.
    assert_eq!(announced.len(), 1);
    let (eth, xarp) = Xarp::parse_frame(&announced[0]).unwrap();
    assert_eq!((eth.dst, eth.src), (BROADCAST, mac));
    assert!(matches!(xarp, Xarp::Announce { port: 7, .. }));
    let (frames, _, next) = drain(&mut host, t0 + ms(900));
    assert_eq!(frames.len(), 1);
    assert_eq!(next, Some(t0 + ms(1100)));
    let (frames, _, next) = drain(&mut host, t0 + ms(1100));
    assert_eq!((frames.len(), next), (0, None));
    assert!(!host.is_probing());

    // A second port of the same owner shares the MAC, at once.
    assert_eq!(
        host.bind(11, Transport::Udp, 8, true, t0),
        Ok(BindProgress::Bound(mac))
    );
}

#[test]
fn plain_arp_still_answers_the_canonical_mac_after_app_binds() {
    let mut host = host();
    let t0 = Instant::now();
    bind_own_mac(&mut host, 11, 7, t0);
    let mut out = [0u8; 1514];
    let frame = arp_frame(ArpOperation::Request, HOST_IP, BROADCAST);
    let len = reply_of(host.handle(&frame, t0, &mut out));
    assert_eq!(
        ArpRepr::parse_frame(&out[..len]).unwrap().1.sender_mac,
        HOST_MAC
    );
}

fn resolve_request(port: u16) -> [u8; 60] {
    let request = Xarp::ResolveRequest {
        asker_mac: PEER_MAC,
        asker_ip: PEER_IP,
        ip: HOST_IP,
        transport: Transport::Udp,
        port,
    };
    let mut frame = [0u8; 60];
    request.emit_frame(&mut frame).unwrap();
    frame
}

#[test]
fn extended_arp_resolves_ports_to_application_macs() {
    let mut host = host();
    let t0 = Instant::now();
    let app = bind_own_mac(&mut host, 11, 7, t0);
    assert_eq!(
        host.bind(12, Transport::Udp, 9, false, t0),
        Ok(BindProgress::Bound(HOST_MAC))
    );
    let mut out = [0u8; 1514];
    for (port, mac, status) in [
        (7, app, ResolveStatus::Application),
        (9, HOST_MAC, ResolveStatus::Canonical),
        (10, HOST_MAC, ResolveStatus::Canonical),
    ] {
        let frame = resolve_request(port);
        assert!(host.is_control(&frame));
        let len = reply_of(host.handle(&frame, t0, &mut out));
        let (eth, reply) = Xarp::parse_frame(&out[..len]).unwrap();
        assert_eq!((eth.dst, eth.src), (PEER_MAC, mac));
        let Xarp::ResolveReply {
            mac: answer,
            status: s,
            port: p,
            ip,
            ..
        } = reply
        else {
            panic!("{reply:?}")
        };
        assert_eq!((answer, s, p, ip), (mac, status, port, HOST_IP));
    }
}

#[test]
fn extended_arp_for_another_ip_is_not_answered() {
    let mut host = host();
    let request = Xarp::ResolveRequest {
        asker_mac: PEER_MAC,
        asker_ip: PEER_IP,
        ip: Ipv4Addr::new(10, 0, 0, 3),
        transport: Transport::Tcp,
        port: 80,
    };
    let mut frame = [0u8; 60];
    request.emit_frame(&mut frame).unwrap();
    assert_eq!(
        host.handle(&frame, Instant::now(), &mut [0u8; 1514]),
        Verdict::Ignored(Ignored::NotForUs)
    );
}

#[test]
fn another_hosts_probe_for_our_mac_gets_a_claim() {
    let mut host = host();
    let t0 = Instant::now();
    let app = bind_own_mac(&mut host, 11, 7, t0);
    let mut out = [0u8; 1514];
    for mine in [app, HOST_MAC] {
        let probe = Xarp::ProbeRequest {
            prober_mac: PEER_MAC,
            prober_ip: PEER_IP,
            candidate: mine,
        };
        let mut frame = [0u8; 60];
        probe.emit_frame(&mut frame).unwrap();
        let len = reply_of(host.handle(&frame, t0, &mut out));
        let (eth, claim) = Xarp::parse_frame(&out[..len]).unwrap();
        assert_eq!((eth.dst, eth.src), (PEER_MAC, mine));
        assert!(matches!(claim, Xarp::ProbeClaim { candidate, .. } if candidate == mine));
    }
}

#[test]
fn a_claimed_candidate_is_replaced_by_another() {
    let mut host = host();
    let t0 = Instant::now();
    host.bind(11, Transport::Udp, 7, true, t0).unwrap();
    let (frames, _, _) = drain(&mut host, t0);
    let Ok((
        _,
        Xarp::ProbeRequest {
            candidate: first, ..
        },
    )) = Xarp::parse_frame(&frames[0])
    else {
        panic!()
    };
    assert!(host.is_probing());
    // Someone on the link uses the candidate: any frame from it is a claim.
    let mut from_first = ping(HOST_MAC, PEER_IP, b"x");
    from_first[6..12].copy_from_slice(&first.0);
    host.observe(&from_first);
    let (frames, _, _) = drain(&mut host, t0 + ms(10));
    let Ok((
        _,
        Xarp::ProbeRequest {
            candidate: second, ..
        },
    )) = Xarp::parse_frame(&frames[0])
    else {
        panic!()
    };
    assert_ne!(first, second);
    let (_, events, _) = drain(&mut host, t0 + ms(210));
    assert!(events.is_empty());
    let (_, events, _) = drain(&mut host, t0 + ms(710));
    assert!(matches!(events[..], [HostEvent::MacReady { mac, .. }] if mac == second));
}

#[test]
fn candidates_claimed_every_time_fail_the_bind() {
    let mut host = host();
    let t0 = Instant::now();
    host.bind(11, Transport::Udp, 7, true, t0).unwrap();
    let mut out = [0u8; 1514];
    for round in 0..8 {
        let HostEvent::Transmit(len) = host.poll(t0, &mut out) else {
            panic!("round {round}")
        };
        let Ok((_, Xarp::ProbeRequest { candidate, .. })) = Xarp::parse_frame(&out[..len]) else {
            panic!()
        };
        let mut claim = [0u8; 60];
        claim[6..12].copy_from_slice(&candidate.0);
        host.observe(&claim);
    }
    assert!(matches!(
        host.poll(t0, &mut out),
        HostEvent::MacFailed {
            owner: 11,
            port: 7,
            error: HostBindError::Probe(_),
            ..
        }
    ));
    assert!(!host.is_probing());
    assert_eq!(host.bindings().lookup(Transport::Udp, 7), None);
}

#[test]
fn bind_refusals() {
    let mut host = host();
    let t0 = Instant::now();
    host.bind(11, Transport::Udp, 7, true, t0).unwrap();
    assert_eq!(
        host.bind(12, Transport::Udp, 7, true, t0),
        Err(HostBindError::ProbeRunning {
            transport: Transport::Udp,
            port: 7
        })
    );
    host.bind(12, Transport::Udp, 8, false, t0).unwrap();
    assert!(matches!(
        host.bind(13, Transport::Udp, 8, true, t0),
        Err(HostBindError::Bind(super::mac::BindError::PortInUse { .. }))
    ));
    assert_eq!(host.unbind_owner(12).len(), 1);
    assert!(host.bind(13, Transport::Udp, 8, false, t0).is_ok());
    host.unbind(Transport::Udp, 7);
    assert!(!host.is_probing());
}

#[test]
fn frames_wait_for_resolution_and_are_released_by_the_reply() {
    let mut host = host();
    let t0 = Instant::now();
    assert_eq!(host.next_hop(PEER_IP), Some(PEER_IP));
    assert_eq!(host.next_hop(Ipv4Addr::new(192, 0, 2, 1)), None);
    assert_eq!(host.resolve(PEER_IP, 1, t0), Resolve::Queued);
    assert_eq!(host.resolve(PEER_IP, 2, t0), Resolve::Queued);
    let (frames, _, next) = drain(&mut host, t0);
    let (eth, arp, _) = ArpRepr::parse_frame(&frames[0]).unwrap();
    assert_eq!((eth.dst, eth.src), (BROADCAST, HOST_MAC));
    assert_eq!(
        (arp.operation, arp.target_ip, arp.sender_ip),
        (ArpOperation::Request, PEER_IP, HOST_IP)
    );
    assert_eq!(next, Some(t0 + Duration::from_secs(1)));

    let reply = arp_frame(ArpOperation::Reply, HOST_IP, HOST_MAC);
    assert_eq!(
        host.handle(&reply, t0 + ms(5), &mut [0u8; 1514]),
        Verdict::Consumed
    );
    let (_, events, _) = drain(&mut host, t0 + ms(5));
    assert_eq!(
        events,
        [
            HostEvent::SendQueued {
                mac: PEER_MAC,
                frame: 1
            },
            HostEvent::SendQueued {
                mac: PEER_MAC,
                frame: 2
            }
        ]
    );
}

#[test]
fn unanswered_resolution_fails_after_retransmits() {
    let mut host = host();
    let t0 = Instant::now();
    host.resolve(PEER_IP, 1, t0);
    let mut sent = 0;
    let mut failed = Vec::new();
    for second in 0..4 {
        let (frames, events, _) = drain(&mut host, t0 + Duration::from_secs(second));
        sent += frames.len();
        failed.extend(events);
    }
    assert_eq!(sent, 3);
    assert!(
        matches!(&failed[..], [HostEvent::Unresolved { ip, frames }] if *ip == PEER_IP && frames[0] == 1)
    );
}

#[test]
fn transmit_is_checked_against_the_callers_binding() {
    let mut host = host();
    let t0 = Instant::now();
    host.bind(12, Transport::Udp, 9, false, t0).unwrap();
    let builder = etherparse::PacketBuilder::ethernet2(HOST_MAC.0, PEER_MAC.0)
        .ipv4(HOST_IP.octets(), PEER_IP.octets(), 64)
        .udp(9, 5000);
    let mut frame = Vec::new();
    builder.write(&mut frame, b"echo").unwrap();
    assert!(host
        .check_transmit(12, Transport::Udp, 9, &[&frame])
        .is_ok());
    assert_eq!(
        host.check_transmit(13, Transport::Udp, 9, &[&frame]).err(),
        Some(TxRefusal::NotBound),
        "another owner's port"
    );
    assert_eq!(
        host.check_transmit(12, Transport::Udp, 10, &[&frame]).err(),
        Some(TxRefusal::NotBound)
    );
}

#[test]
fn prefix_arithmetic() {
    let mut config = HostConfig::new(HOST_MAC, HOST_IP, 24);
    assert!(config.is_on_link(Ipv4Addr::new(10, 0, 0, 200)));
    assert!(!config.is_on_link(Ipv4Addr::new(10, 0, 1, 1)));
    config.prefix_len = 0;
    assert!(config.is_on_link(Ipv4Addr::new(192, 0, 2, 1)));
    config.prefix_len = 32;
    assert!(!config.is_on_link(PEER_IP));
}

/// Untrusted bytes never panic the host: valid frames of every kind the
/// control plane parses, with random bytes flipped and random truncations,
/// go through every entry point.
#[test]
fn mutated_frames_never_panic() {
    use rand::Rng;
    let mut rng = StdRng::seed_from_u64(5);
    let t0 = Instant::now();
    let mut host = host();
    host.bind(11, Transport::Udp, 7, true, t0).unwrap();
    host.bind(12, Transport::Udp, 9, false, t0).unwrap();
    let mut udp = Vec::new();
    etherparse::PacketBuilder::ethernet2(HOST_MAC.0, PEER_MAC.0)
        .ipv4(HOST_IP.octets(), PEER_IP.octets(), 64)
        .udp(9, 5000)
        .write(&mut udp, b"payload")
        .unwrap();
    let seeds: Vec<Vec<u8>> = vec![
        arp_frame(ArpOperation::Request, HOST_IP, BROADCAST).to_vec(),
        arp_frame(ArpOperation::Reply, HOST_IP, HOST_MAC).to_vec(),
        resolve_request(7).to_vec(),
        ping(HOST_MAC, HOST_IP, b"abcdefgh"),
        udp,
    ];
    let mut out = [0u8; 1514];
    for _ in 0..20_000 {
        let mut frame = seeds[rng.random_range(0..seeds.len())].clone();
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..frame.len());
            frame[i] = rng.random();
        }
        frame.truncate(rng.random_range(0..=frame.len()));
        host.is_control(&frame);
        if let Verdict::Reply(len) = host.handle(&frame, t0, &mut out) {
            assert!(len <= out.len());
        }
        let (head, tail) = frame.split_at(rng.random_range(0..=frame.len()));
        let _ = host.check_transmit(12, Transport::Udp, 9, &[head, tail]);
        let _ = Xarp::parse_frame(&frame);
        let _ = Ipv4Repr::parse_frame(&frame);
    }
    // The probe saw all of that too; the host still runs.
    let _ = drain(&mut host, t0 + ms(1000));
}
