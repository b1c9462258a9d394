//! `netserver demo`, the README's first command, run as a newcomer runs it:
//! it must exit 0, every client's install must be accepted, each client that
//! fetches must get exactly its filter's packets of the bundled captures,
//! and the accounting identity must hold.

use std::process::Command;

/// Packets of one replay of the bundled captures per fetching client (the
/// demo's default run of 40 rounds delivers 40 times these).
const PER_ROUND: [(&str, &str, u64); 4] = [
    ("dns", "udp port 53", 42),
    ("web", "tcp", 12),
    ("arp", "arp", 7),
    ("v6", "ip6", 6),
];

#[test]
fn the_demo_delivers_every_clients_packets_and_the_identity_holds() {
    let rounds = 5u64;
    let out = Command::new(env!("CARGO_BIN_EXE_netserver"))
        .args(["demo", "--rounds", &rounds.to_string(), "--pause-ms", "20"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run netserver demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for (name, expression, per_round) in PER_ROUND {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for client {name}:\n{stdout}"));
        assert!(row.contains(expression), "{row}");
        let packets: u64 = row[name.len()..]
            .trim_start()
            .strip_prefix(expression)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no packet count in {row:?}"));
        assert_eq!(packets, per_round * rounds, "{row}");
        assert!(
            row.trim_end().ends_with(" -"),
            "a fetching client lost nothing: {row}"
        );
    }
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("slow ") && l.contains("(never fetches)")),
        "{stdout}"
    );
    let identity = stdout
        .lines()
        .find(|l| l.starts_with("identity:"))
        .unwrap_or_else(|| panic!("no identity line:\n{stdout}"));
    assert!(identity.ends_with("holds"), "{identity}");
}
