//! Real mode, end to end: a `netserver serve --backend af_packet:IFACE`
//! process in a network namespace on one end of a veth pair, `nsctl install
//! --mode shared` clients (real processes, exchange regions in shared
//! memory), and a capture replayed with `tcpreplay` from the other end.
//!
//! Each client must get exactly the packets libpcap's verdicts (`oracle.tsv`)
//! give its filter, in capture order and byte-identical to the capture's
//! records, and the server's per-filter counters must show that every large
//! packet took the zero-copy path (peeked, classified, then received by the
//! kernel straight into the client's frame) and that nothing was copied,
//! spilled or dropped — or, for packets whose classification reaches the
//! test of a filter whose reach is unbounded (`protochain`), the counted
//! copy path.
//! Filters reading past the 128-byte small threshold (`udp[150]`) are judged
//! on the whole frame all the same: the server peeks as far as they read.
//!
//! ```text
//!  netns …-s                                   netns …-p
//!  netserver (af_packet:nsv0) ── veth ── nsv1 ◀── tcpreplay CAPTURE
//!     │ socket files (visible from every namespace)
//!  nsctl install F1 --mode shared --write c0.pcap
//!  nsctl install F2 --mode shared --write c1.pcap      (test's namespace)
//! ```
//!
//! What the veth and the kernel do to frames, and how the cases avoid it:
//! - Frames shorter than Ethernet's 60-byte minimum are not padded by veth
//!   (`libpcap-gateway_or_not.pcap` has two 42-byte ARP frames): they arrive
//!   as captured.
//! - The kernel strips a frame's outer VLAN tag into metadata on veth; the
//!   backend puts it back from `PACKET_AUXDATA` before classifying
//!   (`tcpdump-QinQpacket.pcap`, all 802.1ad).
//! - A truncated record (caplen < orig_len, e.g. every frame of
//!   `tcpdump-babel_update_oobr.pcap`) cannot be replayed faithfully:
//!   tcpreplay sends the caplen bytes it has, so the server sees a shorter
//!   frame than the one libpcap judged (and `len`/`greater` filters see
//!   another length). Captures with such records are not used here; the test
//!   checks that its captures have none.
//! - The kernel's own traffic on the veth: both namespaces have IPv6 off and
//!   no addresses, so neither sends anything by itself. The filters of each
//!   case claim disjoint protocols or lengths, and each client's packets are
//!   checked against the oracle, so a stray frame would show up as an extra
//!   packet rather than be silently absorbed.
//!
//! The server runs with `--backlog 0`: its backlog switch (draining with
//! the batched receive, one copy per frame, when the data path falls behind)
//! is off, so a stall of the data path (a busy machine) cannot make a large
//! packet legitimately copied, and the zero-copy assertions are
//! deterministic. The switch itself is tested in
//! `netserver/tests/real_af_packet.rs`.
//!
//! Needs root, iproute2 and tcpreplay: prints `SKIPPED <test>: <why>`
//! otherwise, and fails instead under `CI=true`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netserver::testing::netns::{real_mode_or_skip, VethLab, SERVER_IF};
use netserver_e2e::{
    capture, oracle, parse_summary, pcap_path, CapturedFrame, ClientProcess, Server, PATIENCE,
};

/// The server's default small threshold: frames of at most this many bytes
/// are copied into small slots (complete in the 128-byte peek); longer ones
/// are large and must take the zero-copy path.
const SMALL_THRESHOLD: usize = 128;

/// tcpreplay's rate. Peek-then-place costs a few µs per frame in a debug
/// build; a moderate rate keeps a loaded 2-core machine well ahead of the
/// kernel socket's buffer, so a kernel drop never masquerades as a bug.
const REPLAY_PPS: &str = "2000";

/// Per-client sizes, generous enough that every packet of a capture fits
/// even if the client is not scheduled at all during the replay: an rx ring
/// and small slots for 1024 packets, and 1024 frames (the server starts
/// holding half of them, more than any capture's large packets). A client
/// that fell behind would push frames into the overflow pool, and those are
/// copied out later — a legitimate copy this test would mistake for a
/// zero-copy failure.
const CLIENT_SIZES: [&str; 4] = ["--queue-limit", "1024", "--frames", "1024"];

/// One capture and filters whose libpcap verdicts are disjoint.
struct Case {
    file: &'static str,
    filters: &'static [&'static str],
    judge: Judge,
    /// Which path every large packet must take.
    large: LargePath,
}

impl Case {
    /// The path the large packets of filter `i` must take.
    fn large_path(&self, i: usize) -> LargePath {
        match self.large {
            LargePath::PerFilter(paths) => paths[i],
            path => path,
        }
    }
}

/// Where the filters' verdicts come from.
enum Judge {
    /// libpcap's rows in `oracle.tsv`.
    Oracle,
    /// The `filters` crate on each whole frame (expressions `oracle.tsv`
    /// has no row for), with how many packets libpcap matches per filter
    /// (`tcpdump -r CAPTURE EXPRESSION | wc -l`), which the evaluation must
    /// agree with.
    WholeFrame(&'static [usize]),
}

/// The path large packets take.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LargePath {
    /// Peeked, classified on the head, received straight into the client's
    /// frame.
    ZeroCopy,
    /// Received into server memory first, because its classification
    /// reached a test of an installed filter whose reach is unbounded, then
    /// copied once.
    Copied,
    /// One of the above per filter, in the order of `Case::filters`.
    PerFilter(&'static [LargePath]),
}

impl Judge {
    fn verdicts(&self, file: &str, filters: &[&str]) -> Vec<Vec<bool>> {
        match self {
            Judge::Oracle => filters.iter().map(|e| oracle(file, e)).collect(),
            Judge::WholeFrame(libpcap) => {
                let frames = capture(file);
                filters
                    .iter()
                    .zip(*libpcap)
                    .map(|(e, &count)| {
                        let program = filters::compile(e).expect("compiles");
                        let bits: Vec<bool> = frames
                            .iter()
                            .map(|f| program.matches(&f.data, f.wire_len))
                            .collect();
                        assert_eq!(
                            bits.iter().filter(|b| **b).count(),
                            count,
                            "{file} × {e}: the whole-frame evaluation disagrees with libpcap"
                        );
                        bits
                    })
                    .collect()
            }
        }
    }
}

fn is_small(frame: &CapturedFrame) -> bool {
    frame.data.len() <= SMALL_THRESHOLD
}

/// The operator's view of one filter, from `nsctl stats --json`.
fn filter_json(json: &serde_json::Value, tag: u64) -> Option<&serde_json::Value> {
    json["filters"]
        .as_array()?
        .iter()
        .find(|f| f["tag"].as_u64() == Some(tag))
}

fn counter(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("stats --json lacks the counter {key}: {v}"))
}

fn stats(server: &Server) -> serde_json::Value {
    let out = server.nsctl(&["stats", "--json"]).success();
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stats --json is not JSON ({e}): {}", out.stdout))
}

/// Polls `nsctl stats --json` until `done` accepts it; returns that snapshot.
fn stats_when(
    server: &Server,
    what: &str,
    mut done: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let json = stats(server);
        if done(&json) {
            return json;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {PATIENCE:?}; last stats:\n{json:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks a finished client's stdout (one line per packet, then the
/// summary) and its `--write` capture against the frames it should have got.
fn check_client(label: &str, stdout: &str, written: &Path, want: &[CapturedFrame]) {
    let lines: Vec<&str> = stdout.lines().collect();
    let summary = lines.last().copied().unwrap_or("");
    let want_small = want.iter().filter(|f| is_small(f)).count() as u64;
    assert_eq!(
        parse_summary(summary),
        Some((
            want.len() as u64,
            want_small,
            want.len() as u64 - want_small
        )),
        "{label}: summary line {summary:?} (packets, small, large)"
    );
    for (i, (line, frame)) in lines.iter().zip(want).enumerate() {
        let delivery = if is_small(frame) { "small" } else { "large" };
        assert_eq!(
            line.split_whitespace().nth(1),
            Some(delivery),
            "{label}: packet {i} ({} bytes): {line:?}",
            frame.data.len()
        );
    }
    let got = netclient::capture::read_pcap(written)
        .unwrap_or_else(|e| panic!("{label}: {} reads back: {e}", written.display()));
    assert_eq!(
        got.len(),
        want.len(),
        "{label}: packets in {}",
        written.display()
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.wire_len, w.wire_len, "{label}: wire length of packet {i}");
        assert!(
            g.data == w.data,
            "{label}: bytes of packet {i} differ from the capture record \
             (in order; {} bytes received, {} captured)\n got: {:02x?}\nwant: {:02x?}",
            g.data.len(),
            w.data.len(),
            &g.data[..g.data.len().min(64)],
            &w.data[..w.data.len().min(64)],
        );
    }
}

struct Client {
    expression: &'static str,
    out: PathBuf,
    process: ClientProcess,
    tag: u64,
    want: Vec<CapturedFrame>,
}

/// Runs one case; `test` names it in a `SKIPPED` line and in the names of
/// its network namespaces.
fn replay_case(test: &str, case: &Case) {
    let Some(lab) = real_mode_or_skip(test, &["tcpreplay"], 1500) else {
        return;
    };
    let frames = capture(case.file);
    // Replayable: no truncated record (see the module docs).
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(
            f.wire_len as usize,
            f.data.len(),
            "{}: record {i} is truncated; tcpreplay cannot send it as captured",
            case.file
        );
    }
    // Disjoint verdicts: each packet is wanted by at most one client.
    let verdicts = case.judge.verdicts(case.file, case.filters);
    for i in 0..frames.len() {
        let claimed = verdicts.iter().filter(|v| v[i]).count();
        assert!(
            claimed <= 1,
            "{}: packet {i} matches {claimed} of {:?}",
            case.file,
            case.filters
        );
    }

    // Pure peek then place (see the module docs).
    let server = Server::start_af_packet(lab.server.name(), SERVER_IF, &["--backlog", "0"]);
    let mut clients = Vec::new();
    for (i, &expression) in case.filters.iter().enumerate() {
        let out = server.temp_file(&format!("client{i}.pcap"));
        let want: Vec<CapturedFrame> = frames
            .iter()
            .zip(&verdicts[i])
            .filter(|(_, &b)| b)
            .map(|(f, _)| f.clone())
            .collect();
        assert!(!want.is_empty(), "{} × {expression}: no packets", case.file);
        // No --count: the client runs until told to stop, after the stats
        // snapshot below (nsctl's filter, and its counters, go when it exits).
        let mut args = vec![
            "install",
            expression,
            "--write",
            out.to_str().unwrap(),
            "--timeout",
            "120",
        ];
        args.extend(CLIENT_SIZES);
        let mut process = server.spawn_nsctl(&args);
        // Fails if nsctl fell back to emulated mode.
        let tag = process.wait_installed();
        clients.push(Client {
            expression,
            out,
            process,
            tag,
            want,
        });
    }
    // Every client's region is in the data path before the first frame.
    stats_when(&server, "every filter attached its region", |json| {
        clients
            .iter()
            .all(|c| filter_json(json, c.tag).is_some_and(|f| f["shared"].as_bool() == Some(true)))
    });

    replay(&lab, &pcap_path(case.file), frames.len());

    // Each client has fetched (and printed) all of its packets ...
    for c in &clients {
        c.process.wait_for_stdout_lines(c.want.len(), PATIENCE);
    }
    // ... so the server has published them; the counters follow the publish.
    let json = stats_when(&server, "every packet counted", |json| {
        clients.iter().all(|c| {
            filter_json(json, c.tag).is_some_and(|f| counter(f, "packets") >= c.want.len() as u64)
        })
    });

    let mut delivered = 0;
    for (i, c) in clients.iter().enumerate() {
        let label = format!("{} × {}", case.file, c.expression);
        let f = filter_json(&json, c.tag).expect("listed");
        let large = c.want.iter().filter(|f| !is_small(f)).count() as u64;
        let small = c.want.len() as u64 - large;
        let got = |key| counter(f, key);
        assert_eq!(
            (got("packets"), got("small"), got("large")),
            (c.want.len() as u64, small, large),
            "{label}: packets, small, large: {f:#}"
        );
        let path = case.large_path(i);
        let paths = match path {
            LargePath::ZeroCopy => (large, 0),
            LargePath::Copied => (0, large),
            LargePath::PerFilter(_) => unreachable!("large_path resolves it"),
        };
        assert_eq!(
            (got("zero_copy"), got("copied")),
            paths,
            "{label}: every large packet took the {path:?} path: {f:#}"
        );
        assert_eq!(
            (
                got("queued"),
                got("overflow"),
                got("dropped"),
                got("refused")
            ),
            (0, 0, 0, 0),
            "{label}: nothing waits, spilled, dropped or refused: {f:#}"
        );
        assert_eq!(f["shared"].as_bool(), Some(true), "{label}: {f:#}");
        delivered += c.want.len() as u64;
    }
    let global = &json["global"];
    assert_eq!(
        json["identity_holds"].as_bool(),
        Some(true),
        "accounting identity: {json:#}"
    );
    let received = counter(global, "received");
    assert!(
        received >= frames.len() as u64,
        "the server received {received} of {} replayed frames: {json:#}",
        frames.len()
    );
    assert_eq!(
        counter(global, "delivered_small") + counter(global, "delivered_large"),
        delivered,
        "delivered to the clients: {json:#}"
    );
    if received > frames.len() as u64 {
        eprintln!(
            "{test}: {} frames besides the capture's reached the interface \
             (delivered to no client)",
            received - frames.len() as u64
        );
    }

    // Stop the clients: each prints its summary and finishes its capture.
    for c in &clients {
        c.process.terminate();
    }
    for c in clients {
        let label = format!("{} × {}", case.file, c.expression);
        let done = c.process.wait(PATIENCE).success();
        check_client(&label, &done.stdout, &c.out, &c.want);
    }
    drop(server);
    drop(lab);
}

/// Replays `pcap` from the peer end at [`REPLAY_PPS`] and checks that
/// tcpreplay sent every record.
fn replay(lab: &VethLab, pcap: &Path, count: usize) {
    let report = lab
        .replay(pcap, &["--pps", REPLAY_PPS])
        .unwrap_or_else(|e| panic!("tcpreplay {}: {e}", pcap.display()));
    // "Successful packets:        601"
    let sent = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Successful packets:"))
        .and_then(|n| n.trim().parse::<usize>().ok());
    assert_eq!(
        sent,
        Some(count),
        "tcpreplay sent every record of {}; its report:\n{report}",
        pcap.display()
    );
}

/// 601 IPv4 frames, 404 of them large (up to 1514 bytes): UDP (AFS RPC)
/// and ICMP.
#[test]
fn afs_udp_and_icmp_clients_get_their_packets_large_ones_zero_copy() {
    replay_case(
        "afs_udp_and_icmp_clients_get_their_packets_large_ones_zero_copy",
        &Case {
            file: "tcpdump-afs.pcap",
            filters: &["udp", "icmp"],
            judge: Judge::Oracle,
            large: LargePath::ZeroCopy,
        },
    );
}

/// DNS queries and answers, small and large (up to 269 bytes).
#[test]
fn dns_queries_and_answers_go_to_separate_clients() {
    replay_case(
        "dns_queries_and_answers_go_to_separate_clients",
        &Case {
            file: "tcpdump-edns-opts.pcap",
            filters: &["udp dst port 53", "udp src port domain"],
            judge: Judge::Oracle,
            large: LargePath::ZeroCopy,
        },
    );
}

/// ARP (42-byte frames, shorter than Ethernet's minimum: veth does not
/// pad), IPv4 and IPv6, three clients; all small.
#[test]
fn arp_ip_and_ip6_clients_get_unpadded_short_frames() {
    replay_case(
        "arp_ip_and_ip6_clients_get_unpadded_short_frames",
        &Case {
            file: "libpcap-gateway_or_not.pcap",
            filters: &["arp", "ip", "ip6"],
            judge: Judge::Oracle,
            large: LargePath::ZeroCopy,
        },
    );
}

/// 802.1ad (QinQ) frames: the kernel strips the outer tag on the veth, the
/// backend reinserts it, so lengths, classification and bytes are the
/// captured ones. Split by length (the capture has none of 100–200 bytes).
#[test]
fn qinq_frames_keep_their_tags_on_both_paths() {
    replay_case(
        "qinq_frames_keep_their_tags_on_both_paths",
        &Case {
            file: "tcpdump-QinQpacket.pcap",
            filters: &["greater 100", "less 200"],
            judge: Judge::Oracle,
            large: LargePath::ZeroCopy,
        },
    );
}

/// A filter that reads past the 128-byte small threshold (`udp[150]`, byte
/// 225 of the frame): the server peeks that far, so its client gets exactly
/// the packets the whole frame matches (judged on a 128-byte head, none
/// would match), and both its large packets and those of a plain port
/// filter still go zero copy.
#[test]
fn a_filter_reading_past_the_small_threshold_gets_whole_frame_verdicts_zero_copy() {
    replay_case(
        "a_filter_reading_past_the_small_threshold_gets_whole_frame_verdicts_zero_copy",
        &Case {
            file: "tcpdump-afs.pcap",
            filters: &["udp and udp[150] == 0xff", "udp dst port 7002"],
            judge: Judge::WholeFrame(&[10, 30]),
            large: LargePath::ZeroCopy,
        },
    );
}

/// A filter whose reach is unbounded (`protochain` walks headers the packet
/// locates): a large packet whose classification reaches its test is
/// received whole into server memory, classified on the whole frame and
/// copied once, counted `copied`. Here every IPv4 packet reaches it (`icmp`
/// is no more specific than `ip protochain`, so the tie is evaluated), so
/// both clients' large packets take that path; a packet decided before the
/// chain's test stays zero copy (the data path's unit tests show both).
#[test]
fn an_unbounded_filter_makes_large_packets_take_the_counted_copy_path() {
    replay_case(
        "an_unbounded_filter_makes_large_packets_take_the_counted_copy_path",
        &Case {
            file: "tcpdump-afs.pcap",
            filters: &["ip protochain \\udp", "icmp"],
            judge: Judge::Oracle,
            large: LargePath::Copied,
        },
    );
}

/// One client's filter of unbounded reach costs a whole frame only to the
/// packets whose classification reaches its test: the AFS client's large
/// packets (its port-range test is more specific than `ip protochain` can
/// be) stay zero copy, while the ICMP packets, which reach the protocol
/// chain's test, are received whole and copied, counted `copied`.
#[test]
fn an_unbounded_filter_copies_only_the_packets_that_reach_its_test() {
    replay_case(
        "an_unbounded_filter_copies_only_the_packets_that_reach_its_test",
        &Case {
            file: "tcpdump-afs.pcap",
            filters: &["udp portrange 7000-7009", "ip protochain \\icmp"],
            // tcpdump 4.99 / libpcap 1.10: 228 and 25 packets.
            judge: Judge::WholeFrame(&[228, 25]),
            large: LargePath::PerFilter(&[LargePath::ZeroCopy, LargePath::Copied]),
        },
    );
}
