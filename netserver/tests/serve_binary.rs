//! Runs the real `netserver serve` binary and talks Cap'n Proto to it over
//! its Unix sockets (with the `netclient` library, and raw capnp where the
//! library would stop a bad request before it reaches the server).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netclient::{Delivery, Error, InjectFrame, InstallOptions, Mode, Operator};
use netserver::testing::wait_serving;

const EDNS: &[u8] = include_bytes!("../../filters/tests/data/pcaps/tcpdump-edns-opts.pcap");
const GATEWAY: &[u8] = include_bytes!("../../filters/tests/data/pcaps/libpcap-gateway_or_not.pcap");
const EAPON: &[u8] = include_bytes!("../../filters/tests/data/pcaps/tcpdump-eapon1.pcap");

fn frames(capture: &[u8]) -> Vec<(Vec<u8>, u32)> {
    let mut r = pcap_file::pcap::PcapReader::new(std::io::Cursor::new(capture)).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_raw_packet() {
        let p = p.unwrap();
        out.push((p.data.into_owned(), p.orig_len));
    }
    out
}

fn injectable(frames: &[(Vec<u8>, u32)]) -> Vec<InjectFrame<'_>> {
    frames
        .iter()
        .map(|(d, w)| InjectFrame {
            data: d,
            wire_len: *w,
        })
        .collect()
}

/// A `netserver serve` process on a socket of its own; killed when dropped.
struct Server {
    child: Child,
}

impl Server {
    fn start(socket: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_netserver"))
            .arg("serve")
            .arg("--socket")
            .arg(socket)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start netserver");
        wait_serving(&mut child, socket, Duration::from_secs(20)).unwrap();
        Server { child }
    }

    /// Waits for the process to exit after a shutdown request.
    fn wait_exit(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory of its own for a test's sockets, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("netserver-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("ns.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    netclient::block_on(f).unwrap()
}

async fn fetch_n(fetch: &mut netclient::Fetch, n: usize) -> Vec<netclient::Packet> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "got {} of {n} packets",
            got.len()
        );
        let batch = fetch.fetch_batch(64).await.unwrap();
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        got.extend(batch);
    }
    got
}

#[test]
fn serve_binary_end_to_end_in_emulated_mode() {
    let dir = TempDir::new("e2e");
    let socket = dir.socket();
    let server = Server::start(&socket, &["--backend", "emulated"]);
    let edns = frames(EDNS);
    let gateway = frames(GATEWAY);
    let old_tag = run(async {
        let client = netclient::connect(&socket).await.unwrap();
        assert_eq!(client.info().small_threshold, 128);
        let operator = Operator::connect(&socket).await.unwrap();

        // A malformed expression comes back as a clear error with a position.
        let e = client.install("udp port (").await.unwrap_err().to_string();
        assert!(
            e.contains("invalid filter expression") && e.contains("position"),
            "{e}"
        );
        // Monitor mode needs the operator socket.
        let monitor = InstallOptions::default().mode(Mode::Monitor);
        let e = client
            .install_with("ip6", &monitor)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("operator socket"), "{e}");

        let mut dns = client.install("udp port 53").await.unwrap();
        let mut arp = client.install("arp").await.unwrap();
        // The same traffic cannot be claimed twice: an identical exclusive
        // filter (written differently) is refused, naming the owner's tag.
        let e = client
            .install("port 53 and udp")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("already claimed") && e.contains(&format!("{:#018x}", dns.tag())),
            "{e}"
        );
        let mut mon = operator.install_with("icmp", &monitor).await.unwrap();
        assert_ne!(dns.tag(), arp.tag());
        assert_eq!(dns.tag() >> 48, arp.tag() >> 48, "one epoch per run");

        let mut all = edns.clone();
        all.extend(gateway.iter().cloned());
        assert_eq!(
            operator.inject_all(&injectable(&all)).await.unwrap(),
            all.len() as u64
        );

        // Exactly the DNS frames, in order, small/large by length.
        let got = fetch_n(&mut dns, edns.len()).await;
        for (p, (data, wire)) in got.iter().zip(&edns) {
            assert_eq!(&p.data, data);
            assert_eq!(p.wire_len, *wire);
            let small = data.len() <= 128;
            assert_eq!(p.delivery == Delivery::Small, small, "{} bytes", data.len());
        }
        assert_eq!(fetch_n(&mut arp, 2).await.len(), 2);
        assert_eq!(
            fetch_n(&mut mon, 6).await.len(),
            6,
            "monitor copies of icmp"
        );

        // The server refuses a page the client does not own (page 0 of a
        // new filter starts as the server's), naming the index and the owner.
        let fresh = client.install("tcp").await.unwrap();
        let mut req = fresh.capability().fetch_request();
        req.get().set_small_slot(0);
        req.get().set_page(0);
        let e = req
            .send()
            .promise
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("page 0 is not yours: the server owns it"), "{e}");
        let mut req = fresh.capability().fetch_request();
        req.get().set_small_slot(1_000_000);
        req.get().set_page(63);
        let e = req
            .send()
            .promise
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("small slot 1000000 is out of range"), "{e}");

        let stats = operator.stats().await.unwrap();
        assert!(stats.identity_holds(), "{stats:?}");
        assert_eq!(stats.received, all.len() as u64);
        assert_eq!(
            stats.delivered_small + stats.delivered_large,
            (edns.len() + 2) as u64
        );
        let filters = operator.list_filters().await.unwrap();
        assert_eq!(filters.len(), 4);
        let fresh_stats = filters.iter().find(|f| f.tag == fresh.tag()).unwrap();
        assert_eq!(fresh_stats.refused, 2);

        // Dropping a capability removes the filter.
        let tag = arp.tag();
        drop(arp);
        let deadline = Instant::now() + Duration::from_secs(5);
        while operator
            .list_filters()
            .await
            .unwrap()
            .iter()
            .any(|f| f.tag == tag)
        {
            assert!(Instant::now() < deadline, "filter not removed after drop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let e = operator.filter_stats(tag).await.unwrap_err().to_string();
        assert!(e.contains("unknown tag") && e.contains("closed"), "{e}");
        let old = dns.tag();
        operator.shutdown().await.unwrap();
        old
    });
    assert!(server.wait_exit().success());
    assert!(!socket.exists(), "client socket left behind");

    // After a restart, the old tag is stale.
    let server = Server::start(&socket, &[]);
    run(async {
        let operator = Operator::connect(&socket).await.unwrap();
        let e = operator.filter_stats(old_tag).await.unwrap_err();
        assert!(matches!(e, Error::Stale { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("the server restarted") && e.contains("install the filter again"),
            "{e}"
        );
        operator.shutdown().await.unwrap();
    });
    assert!(server.wait_exit().success());
}

#[test]
fn a_client_that_never_fetches_overflows_and_does_not_stall_others() {
    let dir = TempDir::new("slow");
    let socket = dir.socket();
    let _server = Server::start(&socket, &["--overflow-limit", "16"]);
    let eapon = frames(EAPON);
    run(async {
        let client = netclient::connect(&socket).await.unwrap();
        let operator = Operator::connect(&socket).await.unwrap();
        let _slow = client
            .install_with("udp", &InstallOptions::default().queue_limit(4))
            .await
            .unwrap();
        let mut arp = client.install("arp").await.unwrap();
        for _ in 0..5 {
            operator.inject_all(&injectable(&eapon)).await.unwrap();
        }
        assert_eq!(fetch_n(&mut arp, 25).await.len(), 25);
        let stats = operator.stats().await.unwrap();
        assert!(stats.identity_holds(), "{stats:?}");
        assert_eq!(stats.overflow, 16);
        assert!(stats.drops_for("queue_full") > 0);
        let slow = operator
            .list_filters()
            .await
            .unwrap()
            .into_iter()
            .find(|f| f.expression == "udp")
            .unwrap();
        assert_eq!(slow.queued + slow.overflow + slow.dropped, 5 * 66);
        assert_eq!(slow.packets, 0);
        operator.shutdown().await.unwrap();
    });
}

#[test]
fn pcap_backend_replays_with_rate_and_loop() {
    let dir = TempDir::new("pcap");
    let socket = dir.socket();
    let capture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../filters/tests/data/pcaps/tcpdump-edns-opts.pcap");
    let backend = format!("pcap:{}", capture.display());
    let _server = Server::start(
        &socket,
        &["--backend", &backend, "--rate", "4000", "--loop"],
    );
    run(async {
        let client = netclient::connect(&socket).await.unwrap();
        assert_eq!(client.info().backend, backend);
        let mut dns = client.install("udp port 53").await.unwrap();
        assert!(fetch_n(&mut dns, 100).await.len() >= 100);
        let operator = Operator::connect(&socket).await.unwrap();
        let e = operator
            .inject(&[InjectFrame {
                data: &[0; 60],
                wire_len: 0,
            }])
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("only on the emulated backend"),
            "{e}"
        );
        let stats = operator.stats().await.unwrap();
        assert!(stats.identity_holds(), "{stats:?}");
        operator.shutdown().await.unwrap();
    });
}

#[test]
fn backlog_flags_apply_to_af_packet_only() {
    let out = Command::new(env!("CARGO_BIN_EXE_netserver"))
        .args(["serve", "--backend", "emulated", "--backlog", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("af_packet:IFACE"), "{err}");
}

#[test]
fn a_datapath_cpu_the_process_cannot_use_is_refused_with_the_ones_it_can() {
    let dir = TempDir::new("cpu");
    let out = Command::new(env!("CARGO_BIN_EXE_netserver"))
        .arg("serve")
        .arg("--socket")
        .arg(dir.socket())
        .args(["--datapath-cpu", "4095"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--datapath-cpu 4095") && err.contains("allowed: ["),
        "{err}"
    );
    assert!(
        !dir.socket().exists(),
        "no socket for a server that did not start"
    );
}

#[test]
fn a_server_pinned_to_an_allowed_cpu_serves() {
    let dir = TempDir::new("pinned");
    let socket = dir.socket();
    let cpu = netserver::sys::cpu::allowed_cpus().unwrap()[0].to_string();
    let server = Server::start(&socket, &["--datapath-cpu", &cpu]);
    run(async {
        let operator = Operator::connect(&socket).await.unwrap();
        operator.shutdown().await.unwrap();
    });
    assert!(server.wait_exit().success());
}
