//! The server as a host on a real link (network namespaces + veth, needs
//! root): the real `arping` and `ping` get answers and `ip neigh` shows the
//! canonical MAC; `udp_echo` with its own MAC answers `socat` from the other
//! namespace from that MAC, `nsctl resolve` returns it, two applications get
//! different MACs and only their own traffic; a forged frame never leaves;
//! a host already using the first candidate MAC makes the server choose
//! another.
//!
//! Without root or namespaces each test prints `SKIPPED <test>: <why>`;
//! under `CI=true` that is a failure. The `udp_echo` and `nsctl` binaries
//! come from the workspace build (`cargo test --workspace` builds them).

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use netserver::sys::af_packet::{PacketSocket, PacketSocketConfig};
use netserver::testing::netns::{real_mode_or_skip, Netns, VethLab, PEER_IF, SERVER_IF};
use netserver::testing::wait_serving;

const HOST_IP: &str = "10.77.0.1";
const PEER_IP: &str = "10.77.0.2";
const CANONICAL: &str = "02:aa:00:00:00:01";

/// A workspace binary beside this test's executable, built by `cargo test
/// --workspace`.
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} not found: run `cargo test --workspace` (it builds the examples and nsctl)",
        path.display()
    );
    path
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Lab {
    lab: VethLab,
    dir: PathBuf,
    _server: Proc,
}

impl Lab {
    /// A veth lab with netserver on the server side as HOST_IP/24, and the
    /// peer configured as PEER_IP/24.
    fn start(
        test: &str,
        tools: &[&str],
        extra: &[&str],
        setup_peer: impl FnOnce(&Netns),
    ) -> Option<Lab> {
        let lab = real_mode_or_skip(test, tools, 1500)?;
        let dir = std::env::temp_dir().join(format!("netserver-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        setup_peer(&lab.peer);
        lab.peer
            .ip(&["addr", "add", &format!("{PEER_IP}/24"), "dev", PEER_IF])
            .unwrap();
        let socket = dir.join("ns.sock");
        let server = lab
            .server
            .command(env!("CARGO_BIN_EXE_netserver"))
            .args(["serve", "--backend", &format!("af_packet:{SERVER_IF}")])
            .args(["--ip", &format!("{HOST_IP}/24"), "--mac", CANONICAL])
            .args(extra)
            .arg("--socket")
            .arg(&socket)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start netserver");
        let mut server = Proc(server);
        wait_serving(&mut server.0, &socket, Duration::from_secs(20)).unwrap();
        Some(Lab {
            lab,
            dir,
            _server: server,
        })
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("ns.sock")
    }

    fn peer_output(&self, program: &str, args: &[&str]) -> (bool, String) {
        let out = self
            .lab
            .peer
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Starts `udp_echo` on `port`; returns it and its MAC once bound.
    fn udp_echo(&self, port: u16, count: u64) -> (Proc, BufReader<ChildStdout>, String) {
        let (child, mut out) = self.spawn_udp_echo(port, count);
        let mac = read_bound(&mut out);
        (child, out, mac)
    }

    fn spawn_udp_echo(&self, port: u16, count: u64) -> (Proc, BufReader<ChildStdout>) {
        let mut child = Command::new(binary("udp_echo"))
            .arg("--socket")
            .arg(self.socket())
            .args([
                "--port",
                &port.to_string(),
                "--own-mac",
                "--count",
                &count.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start udp_echo");
        let out = BufReader::new(child.stdout.take().unwrap());
        (Proc(child), out)
    }
}

/// Reads `udp_echo`'s `bound udp/PORT mode=shared mac=MAC own` line (it
/// echoes through its shared-mode tx ring); returns the MAC.
fn read_bound(out: &mut BufReader<ChildStdout>) -> String {
    {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        // `bound udp/PORT mode=shared mac=MAC own`
        assert!(
            line.contains(" mode=shared "),
            "udp_echo is not in shared mode: {line}"
        );
        let mac = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("mac="))
            .unwrap_or_else(|| panic!("udp_echo said {line:?}"))
            .to_owned();
        assert!(line.trim_end().ends_with(" own"), "{line}");
        mac
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mac_text(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn arping_and_ping_are_answered_and_neigh_shows_the_canonical_mac() {
    let Some(lab) = Lab::start("host-arp", &["arping", "ping"], &[], |_| {}) else {
        return;
    };
    let (ok, out) = lab.peer_output("arping", &["-c", "2", "-w", "5", "-I", PEER_IF, HOST_IP]);
    assert!(ok, "arping got no answer: {out}");
    assert!(out.to_lowercase().contains(CANONICAL), "arping: {out}");
    let (ok, out) = lab.peer_output("ping", &["-c", "2", "-W", "2", HOST_IP]);
    assert!(ok, "ping got no answer: {out}");
    assert!(out.contains("2 received"), "{out}");
    let (_, out) = lab.peer_output("ip", &["neigh", "show", HOST_IP, "dev", PEER_IF]);
    assert!(out.to_lowercase().contains(CANONICAL), "ip neigh: {out}");
}

/// Captures frames on the peer interface from now on.
fn peer_capture(lab: &Lab) -> PacketSocket {
    lab.lab.peer.run(|| {
        PacketSocket::open(
            PEER_IF,
            &PacketSocketConfig {
                ignore_outgoing: true,
                ..Default::default()
            },
        )
        .expect("peer capture socket")
    })
}

/// Every frame the capture holds after waiting `settle`.
fn drain(cap: &PacketSocket, settle: Duration) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut buf = vec![0u8; 4096];
    while cap.wait_readable(Some(settle)).unwrap_or(false) {
        match cap.recv(&mut buf, false) {
            Ok(r) => frames.push(buf[..r.copied].to_vec()),
            Err(_) => break,
        }
    }
    frames
}

fn udp_src_port(f: &[u8]) -> Option<u16> {
    (f.get(12..14)? == [8, 0] && *f.get(23)? == 17).then(|| {
        let ihl = usize::from(f[14] & 0x0f) * 4;
        u16::from_be_bytes([f[14 + ihl], f[15 + ihl]])
    })
}

#[test]
fn udp_echo_with_own_macs_resolve_and_no_spoofing_on_the_wire() {
    let Some(lab) = Lab::start("host-echo", &["socat"], &[], |_| {}) else {
        return;
    };
    let (mut echo1, mut out1, mac1) = lab.udp_echo(7001, 1);
    let (mut echo2, mut out2, mac2) = lab.udp_echo(7002, 1);
    assert_ne!(mac1, mac2, "two applications share a MAC");
    assert_ne!(mac1, CANONICAL);

    // nsctl resolve over the wire, from the peer.
    let nsctl = binary("nsctl");
    let nsctl = nsctl.to_str().unwrap();
    let (ok, out) = lab.peer_output(
        nsctl,
        &["resolve", &format!("{HOST_IP}:7001"), "--iface", PEER_IF],
    );
    assert!(ok, "nsctl resolve: {out}");
    assert_eq!(out.trim(), format!("{mac1} application"));
    let (ok, out) = lab.peer_output(
        nsctl,
        &["resolve", &format!("{HOST_IP}:7002"), "--iface", PEER_IF],
    );
    assert!(ok, "nsctl resolve: {out}");
    assert_eq!(out.trim(), format!("{mac2} application"));
    let (ok, out) = lab.peer_output(
        nsctl,
        &["resolve", &format!("{HOST_IP}:9"), "--iface", PEER_IF],
    );
    assert!(ok, "nsctl resolve: {out}");
    assert_eq!(out.trim(), format!("{CANONICAL} canonical"));

    // Real datagrams from the peer's kernel stack; echoes from each app's MAC.
    let cap = peer_capture(&lab);
    // Long enough that most of the echo is sent from udp_echo's payload
    // page, past the header copy.
    let long = format!("hello one {}", "x".repeat(1200));
    for (port, text, echo, out) in [
        (7001u16, long.as_str(), &mut echo1, &mut out1),
        (7002, "hello two", &mut echo2, &mut out2),
    ] {
        let reply = lab
            .lab
            .peer
            .command("socat")
            .args(["-t", "3", "-T", "3", "-", &format!("UDP4:{HOST_IP}:{port}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(text.as_bytes())?;
                c.wait_with_output()
            })
            .expect("socat");
        assert_eq!(
            String::from_utf8_lossy(&reply.stdout),
            text,
            "echo on port {port}"
        );
        let status = echo.0.wait().unwrap();
        assert!(status.success(), "udp_echo on {port} exited with {status}");
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            format!("echo {} bytes", text.len()),
            "port {port} got only its own datagram"
        );
    }
    let frames = drain(&cap, Duration::from_millis(300));
    for (port, mac) in [(7001, &mac1), (7002, &mac2)] {
        let echo = frames
            .iter()
            .find(|f| udp_src_port(f) == Some(port))
            .unwrap_or_else(|| panic!("no echo from port {port} captured"));
        assert_eq!(
            &mac_text(&echo[6..12]),
            mac,
            "the echo from {port} carries the app's MAC"
        );
    }

    // The echoes left through the tx rings (udp_echo is in shared mode),
    // their payloads straight from the client's pages (af_packet sends the
    // checked header copy and the rest of the frame as an iovec list).
    let socket = lab.socket();
    netclient::block_on(async move {
        let op = netclient::Operator::connect(&socket).await.unwrap();
        let stats = op.host_stats().await.unwrap();
        assert_eq!((stats.tx_ring, stats.tx_sent), (2, 2), "{stats:?}");
        assert_eq!(stats.tx_copied, 0, "af_packet copied a frame: {stats:?}");
    })
    .unwrap();

    // A client posting a forged source, over the RPC or on its tx ring, is
    // refused and counted, and nothing leaves the interface.
    let socket = lab.socket();
    let cap = peer_capture(&lab);
    netclient::block_on(async move {
        let client = netclient::connect(&socket).await.unwrap();
        let options = netclient::BindOptions {
            own_mac: true,
            filter: netclient::InstallOptions::default().shared(true),
        };
        let (mut fetch, binding) = client
            .bind(netclient::Transport::Udp, 7003, &options)
            .await
            .unwrap();
        let mac = binding.info().mac;
        let peer_mac = [0x02, 0, 0, 0, 0, 0x77];
        let forged = |src_mac: [u8; 6], src_ip: Ipv4Addr, sport: u16| {
            let b = etherparse::PacketBuilder::ethernet2(src_mac, peer_mac)
                .ipv4(src_ip.octets(), [10, 77, 0, 2], 64)
                .udp(sport, 9999);
            let mut f = Vec::new();
            b.write(&mut f, b"FORGED-FRAME").unwrap();
            f
        };
        let host: Ipv4Addr = HOST_IP.parse().unwrap();
        assert!(binding
            .send(&forged([0x02, 0xaa, 0, 0, 0, 0x01], host, 7003))
            .await
            .is_err());
        assert!(binding
            .send(&forged(mac, Ipv4Addr::new(10, 77, 0, 99), 7003))
            .await
            .is_err());
        assert!(binding.send(&forged(mac, host, 7001)).await.is_err());
        // The same three from the client's pages on the tx ring.
        for frame in [
            forged([0x02, 0xaa, 0, 0, 0, 0x01], host, 7003),
            forged(mac, Ipv4Addr::new(10, 77, 0, 99), 7003),
            forged(mac, host, 7001),
        ] {
            let page = fetch.tx_page().unwrap();
            fetch.frame_mut(page).unwrap()[..frame.len()].copy_from_slice(&frame);
            fetch.transmit(&binding, page, frame.len()).await.unwrap();
        }
        let mut done = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while done.len() < 3 {
            assert!(Instant::now() < deadline, "completions: {done:?}");
            fetch
                .wait_completions(Duration::from_millis(50))
                .await
                .unwrap();
            fetch.completions(|d| done.push(d.status)).unwrap();
        }
        assert_eq!(
            done,
            ["wrong_source_mac", "wrong_source_ip", "wrong_source_port"]
                .map(|reason| netclient::TxStatus::Refused { reason })
        );
        let op = netclient::Operator::connect(&socket).await.unwrap();
        let stats = op.host_stats().await.unwrap();
        assert_eq!(stats.refused(), 6, "{stats:?}");
        assert_eq!(stats.refused_for("wrong_source_mac"), 2);
    })
    .unwrap();
    let leaked = drain(&cap, Duration::from_millis(300))
        .into_iter()
        .filter(|f| f.windows(12).any(|w| w == b"FORGED-FRAME"))
        .count();
    assert_eq!(leaked, 0, "a forged frame left the interface");

    // A drop rule stops matching frames before any client.
    let socket = lab.socket();
    netclient::block_on(async move {
        let op = netclient::Operator::connect(&socket).await.unwrap();
        op.add_rule(netclient::RuleAction::Drop, "udp dst port 7004")
            .await
            .unwrap();
    })
    .unwrap();
    let (_echo4, _out4, _mac4) = lab.udp_echo(7004, 1);
    let reply = lab
        .lab
        .peer
        .command("socat")
        .args(["-t", "1", "-T", "1", "-", &format!("UDP4:{HOST_IP}:7004")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"blocked")?;
            c.wait_with_output()
        })
        .expect("socat");
    assert!(reply.stdout.is_empty(), "a dropped datagram was echoed");
    let socket = lab.socket();
    netclient::block_on(async move {
        let op = netclient::Operator::connect(&socket).await.unwrap();
        let rules = op.rules().await.unwrap();
        assert!(rules[0].packets >= 1, "{rules:?}");
        assert!(op.stats().await.unwrap().drops_for("firewall") >= 1);
    })
    .unwrap();
}

#[test]
fn a_host_already_using_the_candidate_mac_makes_the_server_choose_another() {
    use rand::SeedableRng;
    const SEED: u64 = 4242;
    let candidate =
        netserver::host::mac::random_app_mac(&mut rand::rngs::StdRng::seed_from_u64(SEED), |_| {
            false
        })
        .unwrap();
    let candidate_text = mac_text(&candidate.0);
    let Some(lab) = Lab::start(
        "host-collide",
        &["arping"],
        &["--mac-seed", &SEED.to_string()],
        |peer| {
            // The peer's interface already uses the candidate, with IPv6 on so
            // it answers the probe's ICMPv6 echo to ff02::1 sent to that MAC.
            peer.ip(&["link", "set", PEER_IF, "address", &candidate_text])
                .unwrap();
            let _ = peer.sysctl(&format!("net.ipv6.conf.{PEER_IF}.disable_ipv6"), "0");
        },
    ) else {
        return;
    };
    // The peer is a live host on the link before the bind: one answered ARP
    // (synchronous, so the order does not depend on scheduling) means the
    // server has seen a frame from the candidate MAC.
    let answered = lab
        .lab
        .peer
        .command("arping")
        .args(["-c", "1", "-w", "10", "-I", PEER_IF, HOST_IP])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("arping");
    assert!(
        answered.success(),
        "the server did not answer the peer's ARP"
    );
    // And it keeps talking while the server probes (any frame from the
    // candidate is a claim).
    let _chatter = Proc(
        lab.lab
            .peer
            .command("arping")
            .args(["-c", "40", "-i", "0.1", "-I", PEER_IF, HOST_IP])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("arping"),
    );
    let (_echo, mut out) = lab.spawn_udp_echo(7010, 1);
    let mac = read_bound(&mut out);
    assert_ne!(mac, candidate_text, "the server took a MAC the peer uses");
    assert_ne!(mac, CANONICAL);
}
