//! Differential test against libpcap: every (capture, expression) verdict
//! libpcap 1.10.3 gave must be ours too. Data and origins: `data/README.md`.
//!
//! Rows that cannot agree are listed in [`UNSUPPORTED`] with the reason;
//! they must stay under 1% of the rows.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use filters::compile::{compile_with, Options};

/// Rows we knowingly do not reproduce: (file, expression, reason).
const UNSUPPORTED: &[(&str, &str, &str)] = &[
    (
        "gateway_or_not.pcap",
        "gateway eth-ipv4-ipv6.host123.libpcap.test",
        "needs host name resolution (/etc/hosts, /etc/ethers); the server resolves no names",
    ),
    (
        "gateway_or_not.pcap",
        "gateway eth-ipv4-noipv6.host123.libpcap.test",
        "needs host name resolution (/etc/hosts, /etc/ethers); the server resolves no names",
    ),
    (
        "gateway_or_not.pcap",
        "ip gateway eth-ipv4-ipv6.host123.libpcap.test",
        "needs host name resolution (/etc/hosts, /etc/ethers); the server resolves no names",
    ),
    (
        "gateway_or_not.pcap",
        "arp gateway eth-ipv4-ipv6.host123.libpcap.test",
        "needs host name resolution (/etc/hosts, /etc/ethers); the server resolves no names",
    ),
    (
        "gateway_or_not.pcap",
        "rarp gateway eth-ipv4-ipv6.host123.libpcap.test",
        "needs host name resolution (/etc/hosts, /etc/ethers); the server resolves no names",
    ),
];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Each record of a classic pcap file: (captured bytes, length on the wire).
fn read_capture(path: &Path) -> Vec<(Vec<u8>, u32)> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = pcap_file::pcap::PcapReader::new(file)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut records = Vec::new();
    // Raw records: some captures have an original length above the file's
    // snapshot length, which the validating reader refuses but libpcap reads.
    while let Some(packet) = reader.next_raw_packet() {
        let packet = packet.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        records.push((packet.data.into_owned(), packet.orig_len));
    }
    records
}

struct Row {
    file: String,
    /// Whether libpcap's own test suite ran the row (`expected.tsv` marks
    /// name-resolution rows "not run").
    libpcap_ran: bool,
    expression: String,
    netmask: Option<u32>,
    expected: String,
}

fn netmask(text: &str) -> u32 {
    let octets: Vec<u32> = text.split('.').map(|p| p.parse().unwrap()).collect();
    octets.iter().fold(0, |acc, o| (acc << 8) | o)
}

/// Compares every row; returns the rows listed as unsupported and panics
/// with the list of disagreements.
fn check<'a>(rows: &'a [Row], dir: &Path, what: &str) -> Vec<&'a Row> {
    let mut captures: HashMap<&str, Vec<(Vec<u8>, u32)>> = HashMap::new();
    let mut agreeing = 0;
    let mut listed = Vec::new();
    let mut failures = Vec::new();
    for row in rows {
        let reason = UNSUPPORTED
            .iter()
            .find(|(file, expression, _)| row.file.ends_with(file) && *expression == row.expression)
            .map(|(_, _, reason)| *reason);
        let records = captures
            .entry(&row.file)
            .or_insert_with(|| read_capture(&dir.join(&row.file)));
        let options = Options::with_netmask(row.netmask.unwrap_or(0));
        let actual = match compile_with(&row.expression, &options) {
            Ok(program) => records
                .iter()
                .map(|(frame, wire_len)| {
                    if program.matches(frame, *wire_len) {
                        '1'
                    } else {
                        '0'
                    }
                })
                .collect::<String>(),
            Err(error) => format!("error: {error}"),
        };
        // libpcap refuses an expression its optimizer reduces to "reject
        // everything" and the oracle then has no bitmap: we must match nothing.
        let expected = if row.expected.is_empty() {
            "0".repeat(records.len())
        } else {
            row.expected.clone()
        };
        match (actual == expected, reason) {
            (true, None) => agreeing += 1,
            (false, Some(reason)) => {
                listed.push(row);
                println!("listed  {} | {} | {reason}", row.file, row.expression);
            }
            (true, Some(_)) => failures.push(format!(
                "{} | {}: listed as unsupported but now agrees; remove it from UNSUPPORTED",
                row.file, row.expression
            )),
            (false, None) => failures.push(format!(
                "{} | {}\n    libpcap {}\n    ours    {}",
                row.file, row.expression, expected, actual
            )),
        }
    }
    println!(
        "{what}: {agreeing} of {} rows agree with libpcap, {} listed as unsupported, {} fail",
        rows.len(),
        listed.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} rows disagree with libpcap:\n{}",
        failures.len(),
        failures.join("\n")
    );
    listed
}

#[test]
fn oracle_verdicts_agree_with_libpcap() {
    let dir = data_dir();
    let text = std::fs::read_to_string(dir.join("oracle.tsv")).unwrap();
    let rows: Vec<Row> = text
        .lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            Row {
                file: cols[0].to_string(),
                libpcap_ran: true,
                expression: cols[1].to_string(),
                netmask: None,
                expected: cols[3].to_string(),
            }
        })
        .collect();
    assert!(rows.len() > 1900, "oracle.tsv looks truncated");
    let listed = check(&rows, &dir, "oracle.tsv");
    assert!(
        listed.len() * 100 < rows.len(),
        "more than 1% of the rows are listed as unsupported"
    );
}

#[test]
fn libpcap_apply_tests_agree() {
    let dir = data_dir().join("libpcap-apply");
    let text = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let rows: Vec<Row> = text
        .lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            Row {
                file: cols[0].to_string(),
                libpcap_ran: cols[6] != "not run",
                expression: cols[1].to_string(),
                netmask: (!cols[2].is_empty()).then(|| netmask(cols[2])),
                expected: cols[3].to_string(),
            }
        })
        .collect();
    let listed = check(&rows, &dir, "libpcap-apply/expected.tsv");
    // Only rows libpcap's own suite skips (they need name resolution) may
    // be listed here.
    assert!(
        listed.iter().all(|row| !row.libpcap_ran),
        "a row libpcap's suite runs is listed as unsupported"
    );
}
