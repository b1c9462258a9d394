//! Operator firewall rules through `nsctl rule`, as an operator runs them: a
//! real `netserver serve` process, `nsctl` processes on its operator socket,
//! a bundled capture injected, and every count checked against libpcap's
//! verdicts for the same expressions on the same capture.

use netserver_e2e::{capture, oracle, pcap_path, Mode, Server, PATIENCE};

const FILE: &str = "tcpdump-edns-opts.pcap";
/// Counted: 21 of the capture's 42 packets (libpcap).
const COUNTED: &str = "udp dst port 53";
/// Dropped before any dispatch: 18 of 42, some of them also counted.
const DROPPED: &str = "greater 100";
/// The client's filter: all 42, less what the drop rule takes.
const CLIENT: &str = "udp";

/// `(packets, bytes)` of the frames of `FILE` that libpcap says `expression`
/// matches, restricted to those `keep` keeps.
fn oracle_totals(expression: &str, keep: impl Fn(usize) -> bool) -> (u64, u64) {
    let frames = capture(FILE);
    let bits = oracle(FILE, expression);
    assert_eq!(frames.len(), bits.len());
    frames
        .iter()
        .zip(bits)
        .enumerate()
        .filter(|&(i, (_, matched))| matched && keep(i))
        .fold((0, 0), |(n, b), (_, (f, _))| {
            (n + 1, b + f.data.len() as u64)
        })
}

/// The `packets=` and `bytes=` of rule `id` in `nsctl rule list`'s output.
fn listed_counts(list: &str, id: &str) -> (u64, u64) {
    let line = list
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .unwrap_or_else(|| panic!("rule {id} not listed:\n{list}"));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    (field("packets="), field("bytes="))
}

#[test]
fn rules_count_and_drop_exactly_what_libpcap_matches() {
    let server = Server::start(Mode::Emulated);
    // The expression in several words, as an operator types it.
    let counted: Vec<&str> = COUNTED.split(' ').collect();
    let mut add_count = vec!["rule", "add", "count"];
    add_count.extend(&counted);
    let count_id = server.nsctl(&add_count).success().last_line().to_string();
    let drop_id = server
        .nsctl(&["rule", "add", "drop", DROPPED])
        .success()
        .last_line()
        .to_string();
    assert_ne!(count_id, drop_id);
    let listed = server.nsctl(&["rule", "list"]).success().stdout;
    assert!(
        listed.contains(COUNTED) && listed.contains(DROPPED),
        "{listed}"
    );

    let dropped = oracle(FILE, DROPPED);
    let (want_client, _) = oracle_totals(CLIENT, |i| !dropped[i]);
    let want = want_client.to_string();
    let mut client = server.spawn_nsctl(&["install", CLIENT, "--count", &want, "--timeout", "60"]);
    client.wait_installed();
    server
        .nsctl(&["inject", "--pcap", pcap_path(FILE).to_str().unwrap()])
        .success();
    let done = client.wait(PATIENCE * 4).success();
    assert_eq!(
        done.last_line().split_whitespace().next(),
        Some(format!("packets={want}").as_str()),
        "the client gets what the drop rule leaves: {}",
        done.stdout
    );

    let list = server.nsctl(&["rule", "list"]).success().stdout;
    assert_eq!(
        listed_counts(&list, &count_id),
        oracle_totals(COUNTED, |_| true),
        "{list}"
    );
    assert_eq!(
        listed_counts(&list, &drop_id),
        oracle_totals(DROPPED, |_| true),
        "{list}"
    );

    // Removed, a rule is no longer listed; a rule that does not exist is a
    // clear error.
    server.nsctl(&["rule", "remove", &drop_id]).success();
    let list = server.nsctl(&["rule", "list"]).success().stdout;
    assert!(!list.contains(DROPPED), "{list}");
    let again = server.nsctl(&["rule", "remove", &drop_id]);
    assert!(!again.status.success());
    assert!(again.stderr.contains(&drop_id), "{}", again.stderr);
}

#[test]
fn a_malformed_rule_is_refused_with_its_position() {
    let server = Server::start(Mode::Emulated);
    let refused = server.nsctl(&["rule", "add", "drop", "udp", "port", "99999"]);
    assert_eq!(refused.status.code(), Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("position 9") && refused.stderr.contains("99999"),
        "{}",
        refused.stderr
    );
    let list = server.nsctl(&["rule", "list"]).success().stdout;
    assert!(list.trim().is_empty(), "nothing was added: {list}");
}
