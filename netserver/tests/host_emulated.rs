//! The server as a host, end to end over RPC on the emulated backend (no
//! privileges): ARP and ping answered, `bind` with an application MAC,
//! extended ARP, transmit with anti-spoofing, the destination-MAC fast
//! path, and operator firewall rules. Frames go in with `Operator.inject`
//! and what the server sends comes back from `Operator.transmitted`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use netclient::{
    BindOptions, InjectFrame, InstallOptions, Operator, RuleAction, Transport, TxDone, TxStatus,
};
use netserver::testing::wait_serving;

const CANONICAL: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x01];
const PEER_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 0x02];
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

struct Server {
    child: Child,
    dir: PathBuf,
}

impl Server {
    fn start(name: &str) -> Server {
        let dir =
            std::env::temp_dir().join(format!("netserver-host-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("ns.sock");
        let mut child = Command::new(env!("CARGO_BIN_EXE_netserver"))
            .args(["serve", "--backend", "emulated", "--ip", "10.9.0.1/24"])
            .args(["--mac", "02:aa:00:00:00:01"])
            .arg("--socket")
            .arg(&socket)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start netserver");
        wait_serving(&mut child, &socket, Duration::from_secs(20)).unwrap();
        Server { child, dir }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("ns.sock")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn arp_request() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&PEER_MAC);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    let a = &mut f[14..];
    a[0..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    a[8..14].copy_from_slice(&PEER_MAC);
    a[14..18].copy_from_slice(&PEER_IP.octets());
    a[24..28].copy_from_slice(&HOST_IP.octets());
    f
}

fn ping(dst_mac: [u8; 6]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(PEER_MAC, dst_mac)
        .ipv4(PEER_IP.octets(), HOST_IP.octets(), 64)
        .icmpv4_echo_request(0x1234, 7);
    let mut f = Vec::new();
    b.write(&mut f, b"ping payload").unwrap();
    f
}

fn udp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    data: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1);
    let mut f = Vec::new();
    b.write(&mut f, data).unwrap();
    f
}

async fn inject(op: &Operator, frame: &[u8]) {
    let n = op
        .inject(&[InjectFrame {
            data: frame,
            wire_len: 0,
        }])
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// Frames the server sent, waiting until `pred` holds for one of them.
async fn wait_sent(op: &Operator, what: &str, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for f in op.transmitted(256).await.unwrap() {
            if pred(&f) {
                return f;
            }
        }
        assert!(Instant::now() < deadline, "the server never sent {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn arp_and_ping_are_answered_and_counted_as_control() {
    let server = Server::start("arp");
    let socket = server.socket();
    netclient::block_on(async move {
        let op = Operator::connect(&socket).await.unwrap();
        inject(&op, &arp_request()).await;
        let reply = wait_sent(&op, "an ARP reply", |f| {
            f.get(12..14) == Some(&[8, 6]) && f.get(20..22) == Some(&[0, 2])
        })
        .await;
        assert_eq!(&reply[0..6], &PEER_MAC);
        assert_eq!(
            &reply[22..28],
            &CANONICAL,
            "plain ARP answers the canonical MAC"
        );
        inject(&op, &ping(CANONICAL)).await;
        let echo = wait_sent(&op, "an echo reply", |f| {
            SlicedPacket::from_ethernet(f).is_ok_and(
                |p| matches!(p.transport, Some(TransportSlice::Icmpv4(ref i)) if i.type_u8() == 0),
            )
        })
        .await;
        assert_eq!(&echo[0..6], &PEER_MAC);
        assert!(echo.windows(12).any(|w| w == b"ping payload"));
        let stats = op.stats().await.unwrap();
        assert_eq!(stats.control, 2, "{stats:?}");
        let host = op.host_stats().await.unwrap();
        assert_eq!(host.control_replies, 2);
        assert_eq!(host.mac, Some(CANONICAL));
    })
    .unwrap();
}

#[test]
fn bind_with_own_mac_resolve_fast_path_spoofing_and_firewall() {
    let server = Server::start("bind");
    let socket = server.socket();
    netclient::block_on(async move {
        let op = Operator::connect(&socket).await.unwrap();
        let client = netclient::connect(&socket).await.unwrap();
        let options = BindOptions {
            own_mac: true,
            ..Default::default()
        };
        let (mut fetch, binding) = client.bind(Transport::Udp, 7001, &options).await.unwrap();
        let mac = binding.info().mac;
        assert!(binding.info().own_mac);
        assert_ne!(mac, CANONICAL);
        assert_eq!(mac[0] & 0x03, 0x02, "locally administered unicast");
        // A second application on another port gets another MAC.
        let (_fetch2, binding2) = client.bind(Transport::Udp, 7002, &options).await.unwrap();
        assert_ne!(binding2.info().mac, mac);
        // The same port twice is refused.
        let again = client.bind(Transport::Udp, 7001, &options).await;
        assert!(again.is_err(), "{again:?}");

        // Extended ARP: the netclient encoder against the server's decoder
        // and back.
        op.transmitted(4096).await.unwrap();
        let request = netclient::xarp::resolve_request(PEER_MAC, PEER_IP, HOST_IP, 17, 7001);
        inject(&op, &request).await;
        let reply = wait_sent(&op, "an xarp reply", |f| {
            netclient::xarp::parse_reply(f, PEER_MAC, HOST_IP, 17, 7001).is_some()
        })
        .await;
        let resolved = netclient::xarp::parse_reply(&reply, PEER_MAC, HOST_IP, 17, 7001).unwrap();
        assert_eq!(resolved.mac, mac);
        assert_eq!(resolved.status, netclient::xarp::ResolveStatus::Application);
        let request = netclient::xarp::resolve_request(PEER_MAC, PEER_IP, HOST_IP, 17, 9);
        inject(&op, &request).await;
        let reply = wait_sent(&op, "an xarp reply for an unbound port", |f| {
            netclient::xarp::parse_reply(f, PEER_MAC, HOST_IP, 17, 9).is_some()
        })
        .await;
        let resolved = netclient::xarp::parse_reply(&reply, PEER_MAC, HOST_IP, 17, 9).unwrap();
        assert_eq!(resolved.mac, CANONICAL);
        assert_eq!(resolved.status, netclient::xarp::ResolveStatus::Canonical);

        // Fast path: a datagram to the application MAC reaches its fetch.
        let to_app = udp(
            PEER_MAC,
            mac,
            (PEER_IP, 5555),
            (HOST_IP, 7001),
            b"to the app mac",
        );
        inject(&op, &to_app).await;
        // And one to the canonical MAC reaches it through the IP filter.
        let to_ip = udp(
            PEER_MAC,
            CANONICAL,
            (PEER_IP, 5555),
            (HOST_IP, 7001),
            b"to the host ip",
        );
        inject(&op, &to_ip).await;
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < 2 {
            got.extend(fetch.fetch_batch(8).await.unwrap());
            assert!(Instant::now() < deadline, "got {} of 2", got.len());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(got[0].data, to_app);
        assert_eq!(got[1].data, to_ip);
        assert_eq!(op.host_stats().await.unwrap().mac_fast_path, 1);

        // Transmit: a correct frame leaves (scatter-gather) …
        op.transmitted(4096).await.unwrap();
        let good = udp(mac, PEER_MAC, (HOST_IP, 7001), (PEER_IP, 5555), b"echo");
        let (h, p) = good.split_at(42);
        binding.send_parts(h, p).await.unwrap();
        let sent = wait_sent(&op, "the client's frame", |f| f == &good[..]).await;
        assert_eq!(sent, good);
        // … forged ones are refused, counted, and nothing leaves.
        let forged_mac = udp(
            CANONICAL,
            PEER_MAC,
            (HOST_IP, 7001),
            (PEER_IP, 5555),
            b"forged",
        );
        let e = binding.send(&forged_mac).await.unwrap_err();
        assert!(e.to_string().contains("source MAC"), "{e}");
        let forged_port = udp(mac, PEER_MAC, (HOST_IP, 7002), (PEER_IP, 5555), b"forged");
        assert!(binding.send(&forged_port).await.is_err());
        let forged_ip = udp(
            mac,
            PEER_MAC,
            (Ipv4Addr::new(10, 9, 0, 66), 7001),
            (PEER_IP, 5555),
            b"forged",
        );
        assert!(binding.send(&forged_ip).await.is_err());
        let host = op.host_stats().await.unwrap();
        assert_eq!(host.refused_for("wrong_source_mac"), 1, "{host:?}");
        assert_eq!(host.refused_for("wrong_source_port"), 1, "{host:?}");
        assert_eq!(host.refused_for("wrong_source_ip"), 1, "{host:?}");
        assert_eq!(host.tx_sent, 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let leaked: Vec<_> = op
            .transmitted(4096)
            .await
            .unwrap()
            .into_iter()
            .filter(|f| f.windows(6).any(|w| w == b"forged"))
            .collect();
        assert!(leaked.is_empty(), "a forged frame left the interface");
        assert_eq!(host.bindings.len(), 2);

        // Firewall: a drop rule stops frames before any client, fast path
        // included; a count rule counts.
        let count = op.add_rule(RuleAction::Count, "udp").await.unwrap();
        let drop = op
            .add_rule(RuleAction::Drop, "udp dst port 7001")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        inject(&op, &to_app).await;
        inject(&op, &to_ip).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            fetch.fetch_batch(8).await.unwrap().is_empty(),
            "a dropped frame was delivered"
        );
        let rules = op.rules().await.unwrap();
        assert_eq!(rules.iter().find(|r| r.id == drop).unwrap().packets, 2);
        assert_eq!(rules.iter().find(|r| r.id == count).unwrap().packets, 2);
        let stats = op.stats().await.unwrap();
        assert_eq!(stats.drops_for("firewall"), 2, "{stats:?}");
        op.remove_rule(drop).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        inject(&op, &to_app).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if !fetch.fetch_batch(8).await.unwrap().is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "delivery did not resume after the rule went"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Unbinding frees the port.
        binding.unbind().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(op.host_stats().await.unwrap().bindings.len(), 1);
    })
    .unwrap();
}

/// Takes completions until `n` came back.
async fn completions(fetch: &mut netclient::Fetch, n: usize) -> Vec<TxDone> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut done = Vec::new();
    loop {
        fetch.completions(|d| done.push(d)).unwrap();
        if done.len() >= n {
            return done;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} completions came back",
            done.len()
        );
        fetch
            .wait_completions(Duration::from_millis(50))
            .await
            .unwrap();
    }
}

/// Writes `frame` into a spare page of `fetch` and returns the page.
fn write_page(fetch: &mut netclient::Fetch, frame: &[u8]) -> u32 {
    let page = fetch.tx_page().expect("a spare page");
    fetch.frame_mut(page).unwrap()[..frame.len()].copy_from_slice(frame);
    page
}

/// Shared mode, fbufs-style: frames posted on the tx ring from the client's
/// own pages (one page, and a header page + a payload page) leave
/// byte-identical and the pages come back; forged sources are refused with
/// the reason, counted, never on the wire, and their pages come back too;
/// a descriptor naming a page the client does not own is a violation.
#[test]
fn shared_mode_transmit_through_the_tx_ring() {
    let server = Server::start("txring");
    let socket = server.socket();
    netclient::block_on(async move {
        let op = Operator::connect(&socket).await.unwrap();
        let client = netclient::connect(&socket).await.unwrap();
        let options = BindOptions {
            own_mac: true,
            filter: InstallOptions::default().shared(true),
        };
        let (mut fetch, binding) = client.bind(Transport::Udp, 7101, &options).await.unwrap();
        assert!(fetch.is_shared());
        let mac = binding.info().mac;
        let spare = fetch.frame_counts().spare;
        op.transmitted(4096).await.unwrap();

        // One page.
        let good = udp(mac, PEER_MAC, (HOST_IP, 7101), (PEER_IP, 5555), b"one page");
        let page = write_page(&mut fetch, &good);
        fetch.transmit(&binding, page, good.len()).await.unwrap();
        assert!(
            fetch.frame_mut(page).is_err(),
            "a posted page is not the client's"
        );
        assert_eq!(fetch.frame_counts().transmitting, 1);
        let done = completions(&mut fetch, 1).await;
        assert_eq!(
            done,
            [TxDone {
                frame: page,
                frame2: None,
                status: TxStatus::Sent,
                len: good.len() as u32
            }]
        );
        let sent = wait_sent(&op, "the one-page frame", |f| f == &good[..]).await;
        assert_eq!(sent, good);

        // A header page and a payload page, one frame.
        let big = udp(
            mac,
            PEER_MAC,
            (HOST_IP, 7101),
            (PEER_IP, 5555),
            &[0xab; 1200],
        );
        let (h, p) = big.split_at(42);
        let (hp, pp) = (write_page(&mut fetch, h), write_page(&mut fetch, p));
        fetch
            .transmit_parts(&binding, hp, h.len(), pp, p.len())
            .await
            .unwrap();
        let done = completions(&mut fetch, 1).await;
        assert_eq!(
            done,
            [TxDone {
                frame: hp,
                frame2: Some(pp),
                status: TxStatus::Sent,
                len: big.len() as u32
            }]
        );
        let sent = wait_sent(&op, "the two-page frame", |f| f.len() == big.len()).await;
        assert_eq!(sent, big, "scatter-gather frame not byte-identical");

        // Forged sources: refused with the reason, pages back, nothing sent.
        let forged = [
            (
                "wrong_source_mac",
                udp(
                    CANONICAL,
                    PEER_MAC,
                    (HOST_IP, 7101),
                    (PEER_IP, 5555),
                    b"forged",
                ),
            ),
            (
                "wrong_source_ip",
                udp(
                    mac,
                    PEER_MAC,
                    (Ipv4Addr::new(10, 9, 0, 66), 7101),
                    (PEER_IP, 5555),
                    b"forged",
                ),
            ),
            (
                "wrong_source_port",
                udp(mac, PEER_MAC, (HOST_IP, 7102), (PEER_IP, 5555), b"forged"),
            ),
        ];
        let mut pages = Vec::new();
        for (_, frame) in &forged {
            let page = write_page(&mut fetch, frame);
            fetch.transmit(&binding, page, frame.len()).await.unwrap();
            pages.push(page);
        }
        // The port check on a header page + payload page split inside the
        // UDP header.
        let split = udp(mac, PEER_MAC, (HOST_IP, 7102), (PEER_IP, 5555), b"forged");
        let (h, p) = split.split_at(35);
        let (hp, pp) = (write_page(&mut fetch, h), write_page(&mut fetch, p));
        fetch
            .transmit_parts(&binding, hp, h.len(), pp, p.len())
            .await
            .unwrap();
        let done = completions(&mut fetch, 4).await;
        for ((reason, _), (d, page)) in forged.iter().zip(done.iter().zip(&pages)) {
            assert_eq!(d.frame, *page);
            assert_eq!(d.status, TxStatus::Refused { reason }, "{d:?}");
            assert_eq!(d.len, 0);
        }
        assert_eq!(
            done[3].status,
            TxStatus::Refused {
                reason: "wrong_source_port"
            }
        );
        assert_eq!(done[3].frame2, Some(pp));
        let host = op.host_stats().await.unwrap();
        assert_eq!(host.refused_for("wrong_source_mac"), 1, "{host:?}");
        assert_eq!(host.refused_for("wrong_source_ip"), 1, "{host:?}");
        assert_eq!(host.refused_for("wrong_source_port"), 2, "{host:?}");
        assert_eq!((host.tx_ring, host.tx_sent, host.tx_copied), (6, 2, 2));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let leaked: Vec<_> = op
            .transmitted(4096)
            .await
            .unwrap()
            .into_iter()
            .filter(|f| f.windows(6).any(|w| w == b"forged"))
            .collect();
        assert!(leaked.is_empty(), "a forged frame left the interface");
        // Every page came back.
        let counts = fetch.frame_counts();
        assert_eq!(
            (counts.transmitting, counts.spare),
            (0, spare),
            "{counts:?}"
        );

        // A tx descriptor naming a page the server holds (frame 0, on the
        // fill ring) is a violation: counted, never sent, no completion.
        let (words, layout) = fetch.region_words().unwrap();
        let tx = layout.tx;
        let producer = words[tx.producer() / 4].load(Ordering::Acquire);
        let entry = tx.entries_offset() / 4 + 8 * (producer as usize & (tx.entries as usize - 1));
        for (i, v) in [0u32, 0, good.len() as u32, 0, 0, 0, 0, 0]
            .into_iter()
            .enumerate()
        {
            words[entry + i].store(v, Ordering::Relaxed);
        }
        words[tx.producer() / 4].store(producer.wrapping_add(1), Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(10);
        while fetch.stats().await.unwrap().refused == 0 {
            assert!(Instant::now() < deadline, "the violation was not counted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let host = op.host_stats().await.unwrap();
        assert_eq!(host.tx_ring, 6, "a violating descriptor was taken");
        let mut late = Vec::new();
        fetch.completions(|d| late.push(d)).unwrap();
        assert!(late.is_empty(), "{late:?}");
    })
    .unwrap();
}

/// The same calls in emulated mode carry the bytes in the RPC: the same
/// completions, the same refusals.
#[test]
fn emulated_mode_transmit_has_the_same_api() {
    let server = Server::start("txemu");
    let socket = server.socket();
    netclient::block_on(async move {
        let op = Operator::connect(&socket).await.unwrap();
        let client = netclient::connect(&socket).await.unwrap();
        let (mut fetch, binding) = client
            .bind(Transport::Udp, 7201, &BindOptions::default())
            .await
            .unwrap();
        assert!(!fetch.is_shared());
        let mac = binding.info().mac;
        assert_eq!(mac, CANONICAL);
        op.transmitted(4096).await.unwrap();
        let good = udp(mac, PEER_MAC, (HOST_IP, 7201), (PEER_IP, 5555), b"emulated");
        let (h, p) = good.split_at(42);
        let (hp, pp) = (write_page(&mut fetch, h), write_page(&mut fetch, p));
        fetch
            .transmit_parts(&binding, hp, h.len(), pp, p.len())
            .await
            .unwrap();
        let forged = udp(mac, PEER_MAC, (HOST_IP, 7202), (PEER_IP, 5555), b"forged");
        let page = write_page(&mut fetch, &forged);
        fetch.transmit(&binding, page, forged.len()).await.unwrap();
        assert_eq!(fetch.frame_counts().transmitting, 3);
        let done = completions(&mut fetch, 2).await;
        assert_eq!(done[0].status, TxStatus::Sent);
        assert_eq!(done[0].frame2, Some(pp));
        assert_eq!(
            done[1].status,
            TxStatus::Refused {
                reason: "wrong_source_port"
            }
        );
        assert_eq!(fetch.frame_counts().transmitting, 0);
        let sent = wait_sent(&op, "the client's frame", |f| f == &good[..]).await;
        assert_eq!(sent, good);
        let host = op.host_stats().await.unwrap();
        assert_eq!(host.refused_for("wrong_source_port"), 1);
        assert_eq!(host.tx_ring, 0);
    })
    .unwrap();
}
