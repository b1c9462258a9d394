//! `nsctl filter eval` and `nsctl filter compile`, run as a user would.

use std::path::PathBuf;
use std::process::{Command, Output};

fn capture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../filters/tests/data/pcaps/libpcap-gateway_or_not.pcap")
}

fn nsctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nsctl"))
        .args(args)
        .output()
        .expect("nsctl runs")
}

fn eval(expression: &str) -> Output {
    let pcap = capture();
    nsctl(&[
        "filter",
        "eval",
        "--pcap",
        pcap.to_str().unwrap(),
        expression,
    ])
}

/// libpcap 1.10.3's verdicts on this capture (`filters/tests/data/oracle.tsv`).
const ORACLE: &[(&str, &str)] = &[
    ("arp", "00000000101000"),
    ("ip6", "00001111000011"),
    ("dst net 10.0.0.0/8", "11110000111100"),
    ("not ip and not ip6", "00000000101000"),
    ("icmp[icmptype] == icmp-echo", "10100000010000"),
    ("icmp6[icmp6type] == icmp6-echoreply", "00000011000001"),
    ("ip[6] & 0x40 == 0x40", "10100000010000"),
    ("byte 8 > 5", "10111110110010"),
    ("greater 100", "00001111000011"),
];

#[test]
fn eval_prints_libpcaps_bitmap() {
    for (expression, expected) in ORACLE {
        let output = eval(expression);
        assert!(output.status.success(), "{expression}: {output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert_eq!(stdout, format!("{expected}\n"), "{expression}");
    }
}

#[test]
fn eval_refuses_an_invalid_expression_with_status_2() {
    let output = eval("tcp port 99999");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("nsctl: invalid filter: at position 9:"),
        "{stderr}"
    );
}

#[test]
fn compile_prints_the_atoms() {
    let output = nsctl(&["filter", "compile", "udp dst port 53"]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.starts_with("alternative 1 of 2:\n  ether[12:2] == 0x0800\n"),
        "{stdout}"
    );
    assert!(stdout.contains("  ip+ihl[2:2] == 0x0035\n"), "{stdout}");
}

#[test]
fn an_expression_in_several_words_is_joined_as_tcpdump_does() {
    let quoted = nsctl(&["filter", "compile", "udp dst port 53"]);
    let words = nsctl(&["filter", "compile", "udp", "dst", "port", "53"]);
    assert!(words.status.success(), "{words:?}");
    assert_eq!(words.stdout, quoted.stdout);
    // A missing expression is a usage error, not an empty filter.
    let none = nsctl(&["filter", "compile"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("<EXPRESSION>"));
}
