//! Real-mode tests of the TAP backend inside a network namespace: frames the
//! host sends into the TAP reach the backend byte-identical, frames the
//! backend sends reach the host, and an existing persistent TAP is attached
//! to rather than recreated. They print why they skip when not root, and
//! fail instead under `CI=true`.

use std::path::PathBuf;
use std::time::Duration;

use netserver::backend::tap::Tap;
use netserver::backend::Backend;
use netserver::sys::af_packet::{PacketSocket, PacketSocketConfig};
use netserver::testing::netns::{in_ci, unavailable_because, Netns};

/// A fresh namespace, or `None` after printing why not (panics in CI).
fn namespace(test: &str) -> Option<Netns> {
    let ns = match unavailable_because(&["tcpreplay"]) {
        None => Netns::new(test).map_err(|e| e.to_string()),
        Some(reason) => Err(reason),
    };
    match ns {
        Ok(ns) => Some(ns),
        Err(reason) if in_ci() => {
            panic!("{test}: real-mode test cannot run under CI=true: {reason}")
        }
        Err(reason) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
            None
        }
    }
}

fn capture_frames(name: &str) -> (PathBuf, Vec<Vec<u8>>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../filters/tests/data/pcaps")
        .join(name);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("a pcap file");
    let mut frames = Vec::new();
    while let Some(pkt) = reader.next_packet() {
        frames.push(pkt.expect("a packet record").data.into_owned());
    }
    (path, frames)
}

/// Drains the backend until `n` frames arrived or it stays idle.
fn receive(tap: &mut Tap, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut idle = 0;
    while got.len() < n && idle < 40 {
        if tap.recv_batch(64, &mut |f| {
            assert_eq!(f.wire_len as usize, f.data.len());
            got.push(f.data.to_vec());
        }) == 0
        {
            idle += 1;
            tap.wait(Duration::from_millis(50));
        }
    }
    got
}

#[test]
fn frames_the_host_sends_into_the_tap_reach_the_backend() {
    let Some(ns) = namespace("tap-rx") else {
        return;
    };
    let mut tap = ns.run(|| Tap::open("nstap0").expect("create TAP"));
    assert_eq!(tap.name(), "tap:nstap0");
    ns.ip(&["link", "set", "nstap0", "up"]).unwrap();

    // The host side transmits on the TAP: tcpreplay there.
    let (path, want) = capture_frames("tcpdump-afs.pcap");
    let out = ns
        .command("tcpreplay")
        .args(["--intf1=nstap0", "--topspeed"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tcpreplay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = receive(&mut tap, want.len());
    assert_eq!(got.len(), want.len(), "frame count");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g == w, "frame {i} differs");
    }
    assert_eq!(tap.received(), want.len() as u64);
}

#[test]
fn frames_the_backend_sends_reach_the_host_and_persistent_taps_are_attached() {
    let Some(ns) = namespace("tap-tx") else {
        return;
    };
    ns.ip(&["tuntap", "add", "dev", "nstap1", "mode", "tap"])
        .unwrap();
    ns.ip(&["link", "set", "nstap1", "up"]).unwrap();
    let (tap, host) = ns.run(|| {
        let tap = Tap::open("nstap1").expect("attach to the persistent TAP");
        let host =
            PacketSocket::open("nstap1", &PacketSocketConfig::default()).expect("host socket");
        (tap, host)
    });
    let mut frame = vec![0u8; 300];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 9]);
    frame[12..14].copy_from_slice(&[0x88, 0xb5]);
    for (i, b) in frame[14..].iter_mut().enumerate() {
        *b = i as u8;
    }
    assert_eq!(tap.send(&frame).unwrap(), frame.len());
    assert!(host.wait_readable(Some(Duration::from_secs(5))).unwrap());
    let mut buf = vec![0u8; 2048];
    let r = host.recv(&mut buf, false).unwrap();
    assert_eq!(&buf[..r.copied], &frame[..]);
    // Closing our descriptor leaves a persistent TAP in place.
    drop(tap);
    ns.ip(&["link", "show", "nstap1"])
        .expect("persistent TAP survives");
}
