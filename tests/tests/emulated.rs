//! End-to-end tests across real processes: a `netserver serve` process,
//! `nsctl` processes and test clients, in emulated mode and again in shared
//! mode.
//!
//! Each test body takes a [`Mode`]; the `#[test]` functions at the bottom
//! run every body in both modes. Where the modes legitimately differ in
//! *when* a frame counts as delivered (shared mode: when it is published on
//! the client's rx ring; emulated: when the client fetches it), the bodies
//! check the sum that is the same in both (`packets + queued + overflow`).

use std::time::Duration;

use netclient::{Error, InjectFrame, InstallOptions, Operator};
use netserver_e2e::{
    capture, eventually, expected, parse_summary, pcap_path, run, CapturedFrame, Mode, Server,
    PATIENCE,
};

/// The default small threshold: frames of at most this many bytes are
/// copied into small slots.
const SMALL_THRESHOLD: usize = 128;

/// The server's default frames per filter (`serve --default-frames`).
const DEFAULT_FRAMES: u32 = 64;

fn is_small(frame: &CapturedFrame) -> bool {
    frame.data.len() <= SMALL_THRESHOLD
}

/// Checks an `nsctl install` run's stdout (one line per packet, then the
/// summary) and its `--write` capture against the frames it should have got.
fn check_received(
    label: &str,
    stdout: &str,
    written: Option<&std::path::Path>,
    want: &[CapturedFrame],
) {
    let lines: Vec<&str> = stdout.lines().collect();
    let summary = lines.last().copied().unwrap_or("");
    let (packets, small, large) = parse_summary(summary)
        .unwrap_or_else(|| panic!("{label}: last stdout line is not a summary: {summary:?}"));
    let want_small = want.iter().filter(|f| is_small(f)).count() as u64;
    assert_eq!(
        (packets, small, large),
        (
            want.len() as u64,
            want_small,
            want.len() as u64 - want_small
        ),
        "{label}: summary {summary:?}"
    );
    assert_eq!(
        lines.len(),
        want.len() + 1,
        "{label}: one line per packet plus the summary"
    );
    for (i, (line, frame)) in lines.iter().zip(want).enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let delivery = if is_small(frame) { "small" } else { "large" };
        assert_eq!(
            fields.get(1).copied(),
            Some(delivery),
            "{label}: packet {i} ({} bytes): {line:?}",
            frame.data.len()
        );
        assert_eq!(
            fields.get(2..4),
            Some(&["len", frame.wire_len.to_string().as_str()][..]),
            "{label}: packet {i} wire length: {line:?}"
        );
    }
    if let Some(path) = written {
        let got = netclient::capture::read_pcap(path).expect("nsctl --write output reads back");
        assert_eq!(
            got.len(),
            want.len(),
            "{label}: frames in {}",
            path.display()
        );
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.data, w.data, "{label}: bytes of packet {i} (in order)");
            assert_eq!(g.wire_len, w.wire_len, "{label}: wire length of packet {i}");
        }
    }
}

async fn operator(server: &Server) -> Operator {
    Operator::connect(server.socket())
        .await
        .expect("operator socket")
}

/// Two captures × two disjoint filters each, two `nsctl install` processes.
const DISJOINT_CASES: &[(&str, &str, &str)] = &[
    (
        "tcpdump-edns-opts.pcap",
        "udp dst port 53",
        "udp src port domain",
    ),
    ("libpcap-gateway_or_not.pcap", "ip", "ip6"),
    ("tcpdump-eapon1.pcap", "udp", "arp"),
    ("tcpdump-afs.pcap", "udp", "icmp"),
];

fn two_clients_receive_exactly_their_oracle_packets(mode: Mode) {
    for &(file, first, second) in DISJOINT_CASES {
        let server = Server::start(mode);
        let info = run(async {
            netclient::connect(server.socket())
                .await
                .expect("client socket")
                .info()
                .clone()
        });
        assert_eq!(info.small_threshold as usize, SMALL_THRESHOLD);

        let mut clients = Vec::new();
        for (i, expression) in [first, second].into_iter().enumerate() {
            let out = server.temp_file(&format!("client{i}.pcap"));
            // Exit after the expected count; a packet delivered wrongly
            // shows up in the content check, or, if it came after the
            // count, as a `closed` drop below.
            let count = expected(file, expression).len().to_string();
            let mut process = server.spawn_nsctl(&[
                "install",
                expression,
                "--write",
                out.to_str().unwrap(),
                "--count",
                &count,
                "--timeout",
                "120",
            ]);
            let tag = process.wait_installed();
            clients.push((expression, out, process, tag));
        }

        // Both filters are listed, with the documented JSON fields.
        let listed = server.nsctl(&["stats", "--json"]).success();
        let json: serde_json::Value =
            serde_json::from_str(&listed.stdout).expect("stats --json is JSON");
        let filters = json["filters"].as_array().expect("filters array");
        assert_eq!(filters.len(), 2, "{json}");
        for f in filters {
            for key in [
                "tag",
                "expression",
                "packets",
                "small",
                "large",
                "zero_copy",
                "copied",
                "overflow",
                "dropped",
            ] {
                assert!(f.get(key).is_some(), "stats --json filter lacks {key}: {f}");
            }
        }
        let mut tags: Vec<u64> = filters.iter().map(|f| f["tag"].as_u64().unwrap()).collect();
        tags.sort_unstable();
        let mut ours: Vec<u64> = clients.iter().map(|c| c.3).collect();
        ours.sort_unstable();
        assert_eq!(tags, ours, "listed tags are the ones nsctl printed");
        assert!(json["global"]["received"].is_u64(), "{json}");

        let injected = server
            .nsctl(&["inject", "--pcap", pcap_path(file).to_str().unwrap()])
            .success();
        let total = capture(file).len();
        assert!(
            injected
                .stdout
                .contains(&format!("injected {total} frames")),
            "{}",
            injected.stdout
        );

        let mut delivered = 0u64;
        for (expression, out, process, _) in clients {
            let done = process.wait(PATIENCE * 4).success();
            let want = expected(file, expression);
            assert!(!want.is_empty());
            check_received(
                &format!("{file} × {expression}"),
                &done.stdout,
                Some(&out),
                &want,
            );
            delivered += want.len() as u64;
        }

        let global = eventually("both filters removed", PATIENCE, || {
            run(async {
                let g = operator(&server)
                    .await
                    .stats()
                    .await
                    .map_err(|e| e.to_string())?;
                if g.filters == 0 {
                    Ok(g)
                } else {
                    Err(format!("{g:?}"))
                }
            })
        });
        assert_eq!(global.received, total as u64, "{global:?}");
        assert_eq!(
            global.drops_for("closed"),
            0,
            "nothing more was waiting for either client: {global:?}"
        );
        assert_eq!((global.queued, global.overflow), (0, 0), "{global:?}");
        assert_eq!(
            global.drops_for("no_filter") + global.control,
            total as u64 - delivered,
            "every other frame went to no one: {global:?}"
        );
        assert_eq!(
            global.delivered_small + global.delivered_large,
            delivered,
            "{global:?}"
        );
        assert!(global.identity_holds(), "accounting identity: {global:?}");
    }
}

fn a_client_that_never_fetches_does_not_stall_another(mode: Mode) {
    // A small overflow pool, so the lazy client also reaches the drop stage.
    let server = Server::start_with(mode, &["--overflow-limit", "64"]);
    let file = "tcpdump-afs.pcap";
    let lazy_limit = 8;
    let mut lazy = server.spawn_hold_client("udp", lazy_limit);
    let lazy_tag = lazy.wait_installed();
    let active_count = expected(file, "icmp").len().to_string();
    let active = server.spawn_nsctl(&[
        "install",
        "icmp",
        "--count",
        &active_count,
        "--timeout",
        "120",
    ]);
    let mut active = active;
    active.wait_installed();

    let started = std::time::Instant::now();
    server
        .nsctl(&["inject", "--pcap", pcap_path(file).to_str().unwrap()])
        .success();
    let done = active.wait(PATIENCE * 4).success();
    let elapsed = started.elapsed();
    // The active client got every packet of its filter, in order, even the
    // ones that arrived after the lazy client's queue and the overflow pool
    // were full.
    check_received(
        "active icmp client",
        &done.stdout,
        None,
        &expected(file, "icmp"),
    );
    // A generous bound (debug build, loaded machine): nothing waited on the
    // lazy client.
    assert!(
        elapsed < Duration::from_secs(20),
        "the active client took {elapsed:?}"
    );

    let lazy_matches = expected(file, "udp").len() as u64;
    let (stats, global) = run(async {
        let op = operator(&server).await;
        (
            op.filter_stats(lazy_tag).await.expect("lazy filter stats"),
            op.stats().await.expect("global stats"),
        )
    });
    // Emulated: nothing fetched, at most the queue limit queued. Shared: the
    // rx ring (as long as the queue limit) holds what was published, and
    // large frames may also wait (queued) in the client's own free frames,
    // at most the frames the server held for it.
    let waiting_room = match mode {
        Mode::Emulated => u64::from(lazy_limit),
        Mode::Shared => u64::from(lazy_limit) + u64::from(DEFAULT_FRAMES),
    };
    assert!(stats.packets <= u64::from(lazy_limit), "{stats:?}");
    assert!(stats.packets + stats.queued <= waiting_room, "{stats:?}");
    assert!(
        stats.overflow > 0,
        "its packets spilled into the overflow pool: {stats:?}"
    );
    assert!(stats.overflow <= 64, "{stats:?}");
    assert!(stats.dropped > 0, "the rest were dropped: {stats:?}");
    // Emulated: every drop is `queue_full`. Shared: the overflow pool takes
    // bursts only: once the filter spilled its share (64) in a window, or
    // the pool could not take a frame (`queue_full`, `no_frame`), the rest
    // drop as `overloaded` while the spill gate cools down.
    match mode {
        Mode::Emulated => assert_eq!(stats.drops_for("queue_full"), stats.dropped, "{stats:?}"),
        Mode::Shared => {
            assert!(stats.drops_for("overloaded") > 0, "{stats:?}");
            assert_eq!(
                stats.drops_for("queue_full")
                    + stats.drops_for("no_frame")
                    + stats.drops_for("overloaded"),
                stats.dropped,
                "{stats:?}"
            );
        }
    }
    assert_eq!(
        stats.packets + stats.queued + stats.overflow + stats.dropped,
        lazy_matches,
        "every matching frame is counted exactly once: {stats:?}"
    );
    assert!(global.identity_holds(), "{global:?}");
    assert_eq!(global.received, capture(file).len() as u64);
    lazy.kill();
}

/// Frames a filter was given and not fetched (queued, in overflow, or — in
/// shared mode — published on its rx ring) according to the operator.
fn held(server: &Server, tag: u64) -> Result<u64, String> {
    run(async {
        let op = operator(server).await;
        let s = op.filter_stats(tag).await.map_err(|e| e.to_string())?;
        Ok(s.packets + s.queued + s.overflow)
    })
}

fn gone_and_freed(server: &Server, tag: u64) -> Result<netclient::GlobalStats, String> {
    run(async {
        let op = operator(server).await;
        let filters = op.list_filters().await.map_err(|e| e.to_string())?;
        if filters.iter().any(|f| f.tag == tag) {
            return Err(format!("filter {tag:#x} still listed: {filters:?}"));
        }
        let g = op.stats().await.map_err(|e| e.to_string())?;
        if g.queued != 0 || g.overflow != 0 {
            return Err(format!("buffers still held: {g:?}"));
        }
        Ok(g)
    })
}

fn removing_a_filter_frees_its_buffers(mode: Mode) {
    let server = Server::start(mode);
    let file = "tcpdump-edns-opts.pcap";
    let queries = expected(file, "udp dst port 53").len() as u64;
    let answers = expected(file, "udp src port domain").len() as u64;
    let total = capture(file).len() as u64;

    // 1. Killing the client process closes its connection.
    let mut holder = server.spawn_hold_client("udp dst port 53", 0);
    let tag = holder.wait_installed();
    server
        .nsctl(&["inject", "--pcap", pcap_path(file).to_str().unwrap()])
        .success();
    eventually("the holder's frames are queued", PATIENCE, || {
        held(&server, tag).and_then(|n| {
            if n == queries {
                Ok(n)
            } else {
                Err(format!("{n} held"))
            }
        })
    });
    holder.kill();
    let g = eventually("killed client's filter removed", PATIENCE, || {
        gone_and_freed(&server, tag)
    });
    // Queued frames are dropped as `closed`; frames already published on a
    // shared-mode client's rx ring were delivered (the client's memory).
    assert_eq!(
        g.drops_for("closed") + g.delivered_small + g.delivered_large,
        queries,
        "{g:?}"
    );
    assert_eq!(g.filters, 0);
    assert!(g.identity_holds(), "{g:?}");

    // 2. Dropping the capability (connection stays open), and 3. close().
    run(async {
        let client = netclient::connect(server.socket()).await.unwrap();
        let dropped = client
            .install_with("udp dst port 53", &mode.options())
            .await
            .unwrap();
        let closed = client
            .install_with("udp src port domain", &mode.options())
            .await
            .unwrap();
        let (dropped_tag, closed_tag) = (dropped.tag(), closed.tag());
        let op = operator(&server).await;
        let frames: Vec<CapturedFrame> = capture(file);
        let views: Vec<InjectFrame<'_>> = frames
            .iter()
            .map(|f| InjectFrame {
                data: &f.data,
                wire_len: f.wire_len,
            })
            .collect();
        assert_eq!(op.inject_all(&views).await.unwrap(), total);
        for (tag, n) in [(dropped_tag, queries), (closed_tag, answers)] {
            let deadline = std::time::Instant::now() + PATIENCE;
            loop {
                let s = op.filter_stats(tag).await.unwrap();
                if s.packets + s.queued + s.overflow == n {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "never queued: {s:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let before = op.stats().await.unwrap();
        assert_eq!(before.filters, 2);

        drop(dropped);
        closed.close().await.expect("close");
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let g = op.stats().await.unwrap();
            let listed = op.list_filters().await.unwrap();
            if listed.is_empty() && g.queued == 0 && g.overflow == 0 {
                assert_eq!(
                    g.drops_for("closed") + g.delivered_small + g.delivered_large,
                    before.drops_for("closed")
                        + before.delivered_small
                        + before.delivered_large
                        + before.queued
                        + before.overflow,
                    "{g:?}"
                );
                assert!(g.identity_holds(), "{g:?}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "filters not removed after drop/close: {listed:?} {g:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The connection itself is still usable.
        let again = client
            .install_with("udp", &mode.options())
            .await
            .expect("install after removals");
        assert_ne!(again.tag(), dropped_tag);
        assert_ne!(again.tag(), closed_tag);
    });
}

fn stale_tags_fail_after_a_restart(mode: Mode) {
    let mut server = Server::start(mode);
    let (tag, epoch) = run(async {
        let client = netclient::connect(server.socket()).await.unwrap();
        let fetch = client.install_with("udp", &mode.options()).await.unwrap();
        assert_eq!(fetch.is_shared(), mode == Mode::Shared);
        let op = operator(&server).await;
        op.filter_stats(fetch.tag()).await.expect("fresh tag works");
        (fetch.tag(), client.info().epoch)
    });
    assert_ne!(tag, 0);
    assert_eq!(
        tag >> 48,
        u64::from(epoch),
        "tag carries the epoch in its high 16 bits"
    );

    server.restart();
    run(async {
        let op = operator(&server).await;
        for result in [
            op.filter_stats(tag).await.map(|_| ()),
            op.remove_filter(tag).await,
        ] {
            match result {
                Err(Error::Stale { message }) => assert!(
                    message.contains("restarted"),
                    "stale error names the restart: {message}"
                ),
                other => panic!("expected a stale error for {tag:#x}, got {other:?}"),
            }
        }
    });
}

fn a_held_capability_sees_the_connection_close(mode: Mode) {
    let mut server = Server::start(mode);
    let socket = server.socket().to_path_buf();
    // One runtime across the restart: the old capability is still held.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<String>();
    let thread = std::thread::spawn(move || {
        run(async move {
            let client = netclient::connect(&socket).await.unwrap();
            let fetch = client.install_with("udp", &mode.options()).await.unwrap();
            tx.send(()).unwrap();
            // Wait (without blocking the runtime) for the restart.
            loop {
                match done_rx.try_recv() {
                    Ok(_) => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            fetch.stats().await.map(|_| ()).unwrap_err()
        })
    });
    rx.recv_timeout(PATIENCE).expect("installed");
    server.restart();
    done_tx.send("restarted".into()).unwrap();
    let error = thread.join().expect("client thread");
    assert!(matches!(error, Error::Disconnected), "{error:?}");
    assert_eq!(
        error.to_string(),
        "the server closed the connection (restarted or exited)"
    );
}

fn malformed_expressions_come_back_with_their_position(mode: Mode) {
    let server = Server::start(mode);
    run(async {
        let client = netclient::connect(server.socket()).await.unwrap();
        for bad in ["udp and and", "tcp port", "ip host 1.2.3.4.5"] {
            match client.install(bad).await {
                Err(Error::Refused { message }) => assert!(
                    message.contains("position"),
                    "{bad:?}: the error names a position: {message}"
                ),
                other => panic!("{bad:?}: expected a refusal, got {other:?}"),
            }
        }
    });
    let out = server
        .spawn_nsctl(&["install", "udp and and"])
        .wait(PATIENCE);
    assert_eq!(out.status.code(), Some(2), "bad input exits 2: {out:?}");
    assert!(out.stderr.contains("position"), "{}", out.stderr);
    assert!(
        out.stdout.is_empty(),
        "nothing installed, no summary: {:?}",
        out.stdout
    );
}

/// An Ethernet/IPv4/UDP frame to port 9999, `len` bytes long.
fn udp_frame(len: usize, fill: u8) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    let ip_len = (len - 14) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&ip_len.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    f.extend_from_slice(&[0x30, 0x39, 0x27, 0x0f]);
    f.extend_from_slice(&(ip_len - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.resize(len, fill);
    f
}

fn pages_the_client_does_not_own_are_refused(mode: Mode) {
    let server = Server::start(mode);
    run(async {
        let client = netclient::connect(server.socket()).await.unwrap();
        let options = mode.options().frames(8).small_slots(4);
        let mut fetch = client
            .install_with("udp dst port 9999", &options)
            .await
            .unwrap();
        assert_eq!(fetch.spare_page(), Some(4), "the client starts owning 4..8");
        let op = operator(&server).await;
        let big = udp_frame(600, 0xab);
        let small = udp_frame(90, 0xcd);
        let frames = [
            InjectFrame {
                data: &big,
                wire_len: 0,
            },
            InjectFrame {
                data: &small,
                wire_len: 0,
            },
        ];
        assert_eq!(op.inject(&frames).await.unwrap(), 2);
        let deadline = std::time::Instant::now() + PATIENCE;
        while {
            let s = fetch.stats().await.unwrap();
            s.packets + s.queued < 2
        } {
            assert!(std::time::Instant::now() < deadline, "frames never queued");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Straight through the schema: page 0 is the server's, page 8 does
        // not exist, small slot 4 does not exist.
        for (slot, page, what) in [(0, 0, "page 0"), (0, 8, "page 8"), (4, 5, "slot 4")] {
            let mut request = fetch.capability().fetch_request();
            request.get().set_small_slot(slot);
            request.get().set_page(page);
            match request
                .send()
                .promise
                .await
                .map(|_| ())
                .map_err(Error::from)
            {
                Err(Error::Refused { message }) => {
                    assert!(!message.is_empty(), "{what}: refusal says why")
                }
                other => panic!("{what}: expected a refusal, got {other:?}"),
            }
        }
        let stats = fetch.stats().await.unwrap();
        assert_eq!(stats.refused, 3, "{stats:?}");
        assert_eq!(
            stats.packets + stats.queued,
            2,
            "refused calls took nothing: {stats:?}"
        );

        // The library never offers a page it does not own.
        let mut buf = [0u8; SMALL_THRESHOLD];
        assert!(matches!(
            fetch.fetch(&mut buf, 0).await,
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(fetch.stats().await.unwrap().refused, 3);

        // And the filter still works: Frantz's fetch, large then small.
        let page = fetch.spare_page().unwrap();
        match fetch.fetch(&mut buf, page).await.unwrap() {
            netclient::Fetched::Large { frame, len, meta } => {
                assert_eq!(len, big.len());
                assert_eq!(meta.wire_len as usize, big.len());
                assert!(frame < 4, "delivered in a frame the server held: {frame}");
                assert_eq!(fetch.frame(frame).unwrap(), &big[..]);
                assert!(
                    fetch.frame(page).is_err(),
                    "the offered page is now the server's"
                );
                fetch.release(frame).unwrap();
            }
            other => panic!("expected the large frame, got {other:?}"),
        }
        let page = fetch.spare_page().unwrap();
        match fetch.fetch(&mut buf, page).await.unwrap() {
            netclient::Fetched::Small { len, .. } => assert_eq!(&buf[..len], &small[..]),
            other => panic!("expected the small frame, got {other:?}"),
        }
        assert_eq!(
            fetch.fetch(&mut buf, page).await.unwrap(),
            netclient::Fetched::Empty
        );
        let counts = fetch.frame_counts();
        assert_eq!((counts.server, counts.in_use + counts.spare), (4, 4));
        let stats = fetch.stats().await.unwrap();
        assert_eq!(
            (stats.small, stats.large, stats.refused),
            (1, 1, 3),
            "{stats:?}"
        );
    });
}

fn the_packet_stream_yields_owned_packets_in_order(mode: Mode) {
    let server = Server::start(mode);
    let file = "tcpdump-edns-opts.pcap";
    let want = expected(file, "udp src port domain");
    run(async {
        use futures::StreamExt;
        let client = netclient::connect(server.socket()).await.unwrap();
        let mut fetch = client
            .install_with("udp src port domain", &mode.options())
            .await
            .unwrap();
        let tag = fetch.tag();
        server
            .nsctl(&["inject", "--pcap", pcap_path(file).to_str().unwrap()])
            .success();
        let mut got = Vec::new();
        {
            let stream = fetch.packets(7, Duration::from_millis(5));
            let mut stream = std::pin::pin!(stream);
            while got.len() < want.len() {
                let next = tokio::time::timeout(PATIENCE, stream.next())
                    .await
                    .expect("stream stalled")
                    .expect("stream ended")
                    .expect("packet");
                got.push(next);
            }
        }
        for (p, w) in got.iter().zip(&want) {
            assert_eq!(p.tag, tag);
            assert_eq!(p.data, w.data);
            assert_eq!(p.wire_len, w.wire_len);
            assert_eq!(p.delivery == netclient::Delivery::Small, is_small(w));
        }
        let counts = fetch.frame_counts();
        assert_eq!(counts.in_use, 0, "owned packets leave no frame in use");
    });
}

fn a_monitor_sees_copies_beside_an_exclusive_client(mode: Mode) {
    let server = Server::start(mode);
    let file = "tcpdump-edns-opts.pcap";
    let exclusive_count = expected(file, "udp dst port 53").len().to_string();
    let mut exclusive = server.spawn_nsctl(&[
        "install",
        "udp dst port 53",
        "--count",
        &exclusive_count,
        "--timeout",
        "120",
    ]);
    exclusive.wait_installed();
    let mut monitor = server.spawn_nsctl(&[
        "install",
        "--monitor",
        "udp",
        // One inject call delivers the whole capture at once; 3 s without a
        // packet after the first means it is over.
        "--idle-exit",
        "3",
        "--timeout",
        "600",
    ]);
    monitor.wait_installed();
    // An ordinary client may not install a monitor.
    run(async {
        let client = netclient::connect(server.socket()).await.unwrap();
        let refused = client
            .install_with(
                "udp",
                &InstallOptions::default().mode(netclient::Mode::Monitor),
            )
            .await;
        assert!(
            matches!(refused, Err(Error::Refused { .. })),
            "monitor without operator authority: {refused:?}"
        );
    });
    server
        .nsctl(&["inject", "--pcap", pcap_path(file).to_str().unwrap()])
        .success();
    let exclusive = exclusive.wait(PATIENCE * 4).success();
    check_received(
        "exclusive beside a monitor",
        &exclusive.stdout,
        None,
        &expected(file, "udp dst port 53"),
    );
    // Well before --timeout: --idle-exit ended it.
    let monitor = monitor.wait(PATIENCE).success();
    check_received("monitor", &monitor.stdout, None, &expected(file, "udp"));
}

fn a_running_install_reports_the_server_going_away(mode: Mode) {
    let mut server = Server::start(mode);
    let file = "tcpdump-edns-opts.pcap";
    let mut watcher = server.spawn_nsctl(&["install", "udp dst port 53", "--timeout", "120"]);
    watcher.wait_installed();
    server
        .nsctl(&["inject", "--pcap", pcap_path(file).to_str().unwrap()])
        .success();
    let want = expected(file, "udp dst port 53");
    eventually("the watcher drained its queue", PATIENCE, || {
        run(async {
            let g = operator(&server)
                .await
                .stats()
                .await
                .map_err(|e| e.to_string())?;
            if g.delivered_small + g.delivered_large == want.len() as u64 {
                Ok(())
            } else {
                Err(format!("{g:?}"))
            }
        })
    });
    let bye = server.nsctl(&["shutdown"]).success();
    assert!(bye.stdout.contains("shutting down"), "{}", bye.stdout);
    eventually("the server exits after shutdown", PATIENCE, || {
        if server.is_running() {
            Err("still running".to_string())
        } else {
            Ok(())
        }
    });
    let done = watcher.wait(PATIENCE);
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    assert!(
        done.stderr
            .contains("the server closed the connection (restarted or exited)"),
        "{}",
        done.stderr
    );
    // What arrived before is still reported, summary last.
    check_received("watcher", &done.stdout, None, &want);
}

#[test]
fn emulated_two_clients_receive_exactly_their_oracle_packets() {
    two_clients_receive_exactly_their_oracle_packets(Mode::Emulated);
}

#[test]
fn shared_two_clients_receive_exactly_their_oracle_packets() {
    two_clients_receive_exactly_their_oracle_packets(Mode::Shared);
}

#[test]
fn emulated_a_client_that_never_fetches_does_not_stall_another() {
    a_client_that_never_fetches_does_not_stall_another(Mode::Emulated);
}

#[test]
fn shared_a_client_that_never_fetches_does_not_stall_another() {
    a_client_that_never_fetches_does_not_stall_another(Mode::Shared);
}

#[test]
fn emulated_removing_a_filter_frees_its_buffers() {
    removing_a_filter_frees_its_buffers(Mode::Emulated);
}

#[test]
fn shared_removing_a_filter_frees_its_buffers() {
    removing_a_filter_frees_its_buffers(Mode::Shared);
}

#[test]
fn emulated_stale_tags_fail_after_a_restart() {
    stale_tags_fail_after_a_restart(Mode::Emulated);
}

#[test]
fn shared_stale_tags_fail_after_a_restart() {
    stale_tags_fail_after_a_restart(Mode::Shared);
}

#[test]
fn emulated_a_held_capability_sees_the_connection_close() {
    a_held_capability_sees_the_connection_close(Mode::Emulated);
}

#[test]
fn shared_a_held_capability_sees_the_connection_close() {
    a_held_capability_sees_the_connection_close(Mode::Shared);
}

#[test]
fn emulated_malformed_expressions_come_back_with_their_position() {
    malformed_expressions_come_back_with_their_position(Mode::Emulated);
}

#[test]
fn shared_malformed_expressions_come_back_with_their_position() {
    malformed_expressions_come_back_with_their_position(Mode::Shared);
}

#[test]
fn emulated_pages_the_client_does_not_own_are_refused() {
    pages_the_client_does_not_own_are_refused(Mode::Emulated);
}

#[test]
fn shared_pages_the_client_does_not_own_are_refused() {
    pages_the_client_does_not_own_are_refused(Mode::Shared);
}

#[test]
fn emulated_the_packet_stream_yields_owned_packets_in_order() {
    the_packet_stream_yields_owned_packets_in_order(Mode::Emulated);
}

#[test]
fn shared_the_packet_stream_yields_owned_packets_in_order() {
    the_packet_stream_yields_owned_packets_in_order(Mode::Shared);
}

#[test]
fn emulated_a_monitor_sees_copies_beside_an_exclusive_client() {
    a_monitor_sees_copies_beside_an_exclusive_client(Mode::Emulated);
}

#[test]
fn shared_a_monitor_sees_copies_beside_an_exclusive_client() {
    a_monitor_sees_copies_beside_an_exclusive_client(Mode::Shared);
}

#[test]
fn emulated_a_running_install_reports_the_server_going_away() {
    a_running_install_reports_the_server_going_away(Mode::Emulated);
}

#[test]
fn shared_a_running_install_reports_the_server_going_away() {
    a_running_install_reports_the_server_going_away(Mode::Shared);
}

/// An adversarial client process scribbles over its own region's rings
/// (random, duplicate and out-of-range frame numbers, wrapped and far-ahead
/// counters, an rx consumer index past what was published) while a
/// well-behaved shared-mode client keeps receiving: the well-behaved client
/// loses nothing, the server survives, the scribbler's violations show in
/// its filter's stats and its capability is revoked with a clear error.
#[test]
fn shared_an_adversarial_client_is_revoked_and_harms_no_one() {
    let mut server = Server::start(Mode::Shared);
    let file = "tcpdump-edns-opts.pcap";
    let mut scribbler = server.spawn_scribbler("udp src port domain");
    let bad_tag = scribbler.wait_installed();
    let want = expected(file, "udp dst port 53");
    let rounds = 3;
    let count = (want.len() * rounds).to_string();
    let mut good = server.spawn_nsctl(&[
        "install",
        "udp dst port 53",
        "--count",
        &count,
        "--timeout",
        "120",
    ]);
    let line = good.wait_for_stderr("installed tag=", PATIENCE);
    assert!(line.contains("mode=shared"), "{line}");
    for _ in 0..rounds {
        server
            .nsctl(&["inject", "--pcap", pcap_path(file).to_str().unwrap()])
            .success();
    }
    let revoked = scribbler.wait_for_stderr("revoked", PATIENCE * 2);
    assert!(
        revoked.contains("was revoked") && revoked.contains("install the filter again"),
        "a clear error: {revoked}"
    );
    let done = good.wait(PATIENCE * 4).success();
    let mut all = Vec::new();
    for _ in 0..rounds {
        all.extend(want.iter().cloned());
    }
    check_received("well-behaved client", &done.stdout, None, &all);

    let (bad, global) = run(async {
        let op = operator(&server).await;
        (
            op.filter_stats(bad_tag).await.expect("scribbler's stats"),
            op.stats().await.expect("global stats"),
        )
    });
    assert!(bad.refused > 0, "{bad:?}");
    assert!(bad.revoked.contains("revoked"), "{bad:?}");
    assert!(
        bad.violations.iter().map(|v| v.count).sum::<u64>() >= 1024,
        "violations by kind: {bad:?}"
    );
    assert!(global.identity_holds(), "{global:?}");
    assert!(server.is_running(), "the server survived");
    scribbler.kill();
}
