//! Exclusive ownership (DESIGN.md, "Capabilities"): a client may not install
//! a filter that would take packets another client's exclusive filter
//! already claims — on packets both match the more specific filter wins, so
//! a narrower filter would — but it may narrow its own, install broader or
//! disjoint ones, and the operator may install anything. A real server
//! process; each client on its own connection.

use netclient::{InstallOptions, Operator};
use netserver_e2e::{expected, pcap_path, run, Mode, Server, PATIENCE};

const FILE: &str = "tcpdump-edns-opts.pcap";

#[test]
fn another_process_cannot_take_the_packets_a_client_claims() {
    let server = Server::start(Mode::Emulated);
    let want = expected(FILE, "udp port 53").len().to_string();
    let mut owner = server.spawn_nsctl(&["install", "udp", "port", "53", "--count", &want]);
    owner.wait_installed();

    // A narrower filter from another process would win some of them.
    let thief = server.nsctl(&["install", "udp port 53 and greater 100", "--count", "1"]);
    assert_eq!(thief.status.code(), Some(2), "{}", thief.stderr);
    assert!(
        thief.stderr.contains("would take packets") && thief.stderr.contains("\"udp port 53\""),
        "the refusal names the claimed filter: {}",
        thief.stderr
    );

    // So the owner still gets every packet of its filter.
    server
        .nsctl(&["inject", "--pcap", pcap_path(FILE).to_str().unwrap()])
        .success();
    let done = owner.wait(PATIENCE).success();
    assert_eq!(
        done.last_line().split_whitespace().next(),
        Some(format!("packets={want}").as_str()),
        "{}",
        done.stdout
    );
}

#[test]
fn a_client_may_narrow_its_own_filter_and_the_operator_anything() {
    let server = Server::start(Mode::Emulated);
    run(async {
        let owner = netclient::connect(server.socket()).await.unwrap();
        let other = netclient::connect(server.socket()).await.unwrap();
        let _dns = owner.install("udp port 53").await.unwrap();
        // Broader and disjoint filters leave the owner's packets alone.
        let _udp = other.install("udp").await.unwrap();
        let _tcp = other.install("tcp port 53").await.unwrap();
        // Narrower: refused for another client, not for the owner itself.
        let err = other
            .install("udp port 53 and greater 100")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("would take packets"), "{err}");
        let _big = owner.install("udp port 53 and greater 100").await.unwrap();
        // Identical to a claimed filter: refused for everyone (it would
        // never receive a packet).
        let same = owner.install("udp port 53").await.unwrap_err().to_string();
        assert!(same.contains("already claimed"), "{same}");
        // The operator's authority overrides ownership.
        let op = Operator::connect(server.socket()).await.unwrap();
        op.install_with("udp port 53 and greater 200", &InstallOptions::default())
            .await
            .unwrap();
    });
}
