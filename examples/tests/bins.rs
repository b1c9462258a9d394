//! The example programs start and describe themselves.
//!
//! Also why this file exists: `cargo test --workspace` builds a package's
//! binaries only for that package's integration tests, and the server's
//! real-mode tests (`netserver/tests/real_host.rs`) run `udp_echo` from
//! `target/<profile>/`.

use std::process::Command;

fn help(exe: &str) -> String {
    let out = Command::new(exe)
        .arg("--help")
        .output()
        .expect("run example");
    assert!(out.status.success(), "{exe} --help: {}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_example_prints_its_usage() {
    for exe in [
        env!("CARGO_BIN_EXE_udp_echo"),
        env!("CARGO_BIN_EXE_pcap_writer"),
    ] {
        assert!(help(exe).contains("Usage"), "{exe}");
    }
}
