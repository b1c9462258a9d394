//! Real-mode tests of the AF_PACKET syscall layer over a veth pair between
//! two network namespaces: frames sent at the peer end arrive byte-identical
//! with their real lengths through every receive path of `sys::uring`.
//!
//! They need root and iproute2 (and tcpreplay for the capture replays); they
//! print why they skip otherwise, and fail instead under `CI=true`.

use std::path::PathBuf;
use std::time::Duration;

use netserver::sys::af_packet::{PacketSocket, PacketSocketConfig};
use netserver::sys::uring::{PacketRing, UringConfig};
use netserver::testing::netns::{real_mode_or_skip, PEER_IF, SERVER_IF};

const WAIT: Option<Duration> = Some(Duration::from_secs(5));

fn capture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../filters/tests/data/pcaps")
        .join(name)
}

/// The frames of a capture, in order.
fn capture_frames(name: &str) -> Vec<Vec<u8>> {
    let path = capture(name);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("a pcap file");
    let mut frames = Vec::new();
    while let Some(pkt) = reader.next_packet() {
        let pkt = pkt.expect("a well-formed packet record");
        assert_eq!(
            pkt.orig_len as usize,
            pkt.data.len(),
            "test captures are untruncated"
        );
        frames.push(pkt.data.into_owned());
    }
    frames
}

/// Test frames of the given sizes: broadcast destination, a fixed source,
/// a local-experimental EtherType, then a counter pattern.
fn crafted(sizes: &[usize]) -> Vec<Vec<u8>> {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let mut f = vec![0u8; len];
            f[..6].copy_from_slice(&[0xff; 6]);
            f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
            f[12..14].copy_from_slice(&[0x88, 0xb5]);
            for (j, b) in f[14..].iter_mut().enumerate() {
                *b = (i * 7 + j) as u8;
            }
            f
        })
        .collect()
}

fn open_ring(config: &UringConfig) -> PacketRing {
    let sock = PacketSocket::open(SERVER_IF, &PacketSocketConfig::default())
        .expect("open AF_PACKET socket");
    PacketRing::new(sock, config).expect("create io_uring")
}

/// Sends `frames` from the peer end with a plain packet socket.
fn send_from_peer(lab: &netserver::testing::netns::VethLab, frames: &[Vec<u8>]) {
    lab.peer.run(|| {
        let sock =
            PacketSocket::open(PEER_IF, &PacketSocketConfig::default()).expect("peer socket");
        for f in frames {
            assert_eq!(sock.send(f).expect("send"), f.len());
        }
    });
}

/// Receives `n` frames by peek-then-place: small frames are taken from the
/// peek buffer, large ones received into a destination buffer. Returns the
/// frames and how many took the large path.
fn recv_peek_place(ring: &mut PacketRing, n: usize) -> (Vec<Vec<u8>>, usize) {
    let mut got = Vec::with_capacity(n);
    let mut large = 0;
    let mut dst = vec![0u8; 65536];
    while got.len() < n {
        let peek_len = ring.peek_len();
        let Some(peek) = ring.peek(WAIT).expect("peek") else {
            panic!("timed out after {} of {n} frames", got.len());
        };
        // Also with a reinserted VLAN tag: callers size copies by peek_len.
        assert!(peek.head.len() <= peek_len, "head longer than the peek");
        if peek.is_complete() {
            let frame = peek.head.to_vec();
            assert_eq!(ring.consume().expect("consume"), frame.len());
            got.push(frame);
        } else {
            let frame_len = peek.frame_len;
            let head = peek.head.to_vec();
            let r = ring.recv_into(&mut dst).expect("recv_into");
            assert_eq!(
                r.frame_len, frame_len,
                "peek and receive disagree on the length"
            );
            assert!(r.is_complete());
            assert_eq!(
                &dst[..head.len()],
                &head[..],
                "peeked head differs from the frame"
            );
            got.push(dst[..r.copied].to_vec());
            large += 1;
        }
    }
    (got, large)
}

fn assert_same_frames(got: &[Vec<u8>], want: &[Vec<u8>]) {
    assert_eq!(got.len(), want.len(), "frame count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "length of frame {i}");
        assert!(g == w, "bytes of frame {i} differ");
    }
}

/// A wait on an idle socket ends when the doorbell rings (the data path's
/// commands), not at its timeout. The timeout is long (30 s) and the test
/// fails if a wait lasted that long, so a broken doorbell fails within 30 s
/// rather than passing (a short timeout would end the wait anyway) or
/// hanging CI. Then the frame that arrives is peeked as usual, and a ring
/// rung while no wait blocks ends only the next wait.
#[test]
fn the_doorbell_ends_a_wait_early() {
    let Some(lab) = real_mode_or_skip("afp-doorbell", &[], 1500) else {
        return;
    };
    let mut ring = lab.server.run(|| open_ring(&UringConfig::default()));
    let doorbell = std::sync::Arc::new(exchange::EventFd::new().unwrap());
    ring.watch_doorbell(doorbell.clone());
    let ringer = {
        let doorbell = doorbell.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            doorbell.notify().unwrap();
        })
    };
    let timeout = std::time::Duration::from_secs(30);
    let mut woken_peek = |what: &str| {
        let started = std::time::Instant::now();
        assert!(
            ring.peek(Some(timeout)).expect("peek").is_none(),
            "{what}: no frame"
        );
        assert!(
            started.elapsed() < timeout,
            "{what}: the wait ran to its timeout, the doorbell did not end it"
        );
    };
    woken_peek("rung during the wait");
    ringer.join().unwrap();
    assert_eq!(doorbell.drain().unwrap(), 0, "the ring drained it");

    doorbell.notify().unwrap();
    woken_peek("rung before the wait");
    let want = crafted(&[600]);
    send_from_peer(&lab, &want);
    let (got, _) = recv_peek_place(&mut ring, 1);
    assert_same_frames(&got, &want);
}

/// A longer peek asked for after a frame was peeked (the data path's
/// classification now reads deeper) peeks that frame again; the length is
/// clamped to `peek_len..=max_peek_len`, and the head is always the frame's
/// first `min(frame_len, peek_len)` bytes.
#[test]
fn a_longer_peek_peeks_the_frame_again() {
    let Some(lab) = real_mode_or_skip("afp-longer-peek", &[], 1500) else {
        return;
    };
    let want = crafted(&[600, 600, 1400]);
    let mut ring = lab.server.run(|| open_ring(&UringConfig::default()));
    send_from_peer(&lab, &want);
    let peek = ring.peek(WAIT).expect("peek").expect("a frame");
    assert_eq!((peek.head.len(), peek.frame_len), (128, 600));
    assert_eq!(ring.set_peek_len(300), 300);
    let peek = ring.peek(WAIT).expect("peek").expect("a frame");
    assert_eq!(
        (peek.head.len(), peek.frame_len),
        (300, 600),
        "peeked again"
    );
    assert_eq!(peek.head, &want[0][..300]);
    let mut dst = vec![0u8; 2048];
    assert_eq!(ring.recv_into(&mut dst).expect("recv").copied, 600);
    assert_eq!(&dst[..600], &want[0][..]);
    // The next peek was issued with 300 bytes; asking for more than the
    // buffer holds gets the most it holds.
    assert_eq!(ring.set_peek_len(1 << 20), ring.max_peek_len());
    let peek = ring.peek(WAIT).expect("peek").expect("a frame");
    assert!(peek.is_complete(), "600 bytes, all in the head");
    assert_eq!(peek.head, &want[1][..]);
    assert_eq!(ring.consume().expect("consume"), 600);
    // Shorter again: a peek issued longer shows only `peek_len` bytes.
    assert_eq!(ring.set_peek_len(0), 128);
    let peek = ring.peek(WAIT).expect("peek").expect("a frame");
    assert_eq!((peek.head.len(), peek.frame_len), (128, 1400));
    assert_eq!(peek.head, &want[2][..128]);
    assert_eq!(ring.consume().expect("consume"), 1400);
}

#[test]
fn peek_then_place_receives_a_replayed_capture_byte_identical() {
    let Some(lab) = real_mode_or_skip("afp-peek", &["tcpreplay"], 1500) else {
        return;
    };
    let want = capture_frames("tcpdump-afs.pcap");
    let mut ring = lab.server.run(|| open_ring(&UringConfig::default()));
    lab.replay(&capture("tcpdump-afs.pcap"), &["--topspeed"])
        .expect("tcpreplay");
    let (got, large) = recv_peek_place(&mut ring, want.len());
    assert_same_frames(&got, &want);
    let small = want.len() - large;
    assert_eq!(large, want.iter().filter(|f| f.len() > 128).count());
    assert!(large > 0 && small > 0, "the capture exercises both paths");
    let stats = ring.socket().statistics().expect("PACKET_STATISTICS");
    assert_eq!(stats.drops, 0, "kernel dropped frames: {stats:?}");
    // Nothing else arrived.
    assert!(ring
        .peek(Some(Duration::from_millis(200)))
        .unwrap()
        .is_none());
}

#[test]
fn batched_receive_gets_a_replayed_capture_byte_identical() {
    let Some(lab) = real_mode_or_skip("afp-batch", &["tcpreplay"], 1500) else {
        return;
    };
    let want = capture_frames("tcpdump-QinQpacket.pcap");
    let mut ring = lab.server.run(|| {
        open_ring(&UringConfig {
            batch_buffers: 64, // fewer than the frames: the multishot re-arms
            ..UringConfig::default()
        })
    });
    lab.replay(&capture("tcpdump-QinQpacket.pcap"), &["--topspeed"])
        .expect("tcpreplay");
    let mut got = Vec::new();
    while got.len() < want.len() {
        let n = ring
            .recv_batch(32, WAIT, |f| {
                assert!(f.is_complete());
                got.push(f.data.to_vec());
            })
            .expect("recv_batch");
        assert!(
            n > 0,
            "timed out after {} of {} frames",
            got.len(),
            want.len()
        );
        assert!(n <= 32);
    }
    assert_same_frames(&got, &want);
}

#[test]
fn lengths_are_exact_at_every_boundary_and_oversize_is_reported() {
    let Some(lab) = real_mode_or_skip("afp-len", &[], 9000) else {
        return;
    };
    let sizes = [14, 60, 127, 128, 129, 1514, 2032, 2033, 4096, 9014];
    let want = crafted(&sizes);

    // Peek then place.
    let mut ring = lab.server.run(|| open_ring(&UringConfig::default()));
    send_from_peer(&lab, &want);
    let (got, large) = recv_peek_place(&mut ring, want.len());
    assert_same_frames(&got, &want);
    assert_eq!(large, sizes.iter().filter(|&&s| s > 128).count());

    // Into a destination that is too small: cut, with the real length.
    send_from_peer(&lab, &want[9..]);
    let peek = ring.peek(WAIT).unwrap().expect("a frame");
    assert_eq!(peek.frame_len, 9014);
    let mut page = vec![0u8; 4096];
    let r = ring.recv_into(&mut page).unwrap();
    assert_eq!((r.copied, r.frame_len), (4096, 9014));
    assert_eq!(&page[..], &want[9][..4096]);

    // Batched: frames beyond a buffer (2048 - 16 bytes) are reported cut.
    send_from_peer(&lab, &want);
    let mut got = Vec::new();
    while got.len() < want.len() {
        let n = ring
            .recv_batch(64, WAIT, |f| got.push((f.data.to_vec(), f.frame_len)))
            .unwrap();
        assert!(n > 0, "timed out");
    }
    for ((data, frame_len), w) in got.iter().zip(&want) {
        assert_eq!(*frame_len, w.len());
        let kept = w.len().min(ring.batch_frame_capacity());
        assert_eq!(data.len(), kept);
        assert_eq!(&data[..], &w[..kept]);
    }
}

#[test]
fn switching_modes_loses_and_reorders_nothing() {
    let Some(lab) = real_mode_or_skip("afp-switch", &[], 1500) else {
        return;
    };
    let sizes: Vec<usize> = (0..40)
        .map(|i| if i % 3 == 0 { 1000 } else { 64 + i })
        .collect();
    let want = crafted(&sizes);
    let mut ring = lab.server.run(|| open_ring(&UringConfig::default()));
    send_from_peer(&lab, &want);

    // Peek a frame, then switch to batches without taking it: it comes first.
    let first = ring.peek(WAIT).unwrap().expect("a frame").frame_len;
    assert_eq!(first, want[0].len());
    let mut got = Vec::new();
    let n = ring
        .recv_batch(5, WAIT, |f| got.push(f.data.to_vec()))
        .unwrap();
    assert_eq!(n, 5);
    // Peeking while a batch receive is armed is refused, not silently lossy.
    assert!(ring.peek(WAIT).is_err());
    // Stop: what the kernel had already placed is handed over, in order ...
    ring.stop_batch(|f| got.push(f.data.to_vec())).unwrap();
    // ... and peeking continues with the next frame.
    let rest = want.len() - got.len();
    let (tail, _) = recv_peek_place(&mut ring, rest);
    got.extend(tail);
    assert_same_frames(&got, &want);
}

#[test]
fn sends_through_the_ring_arrive_byte_identical() {
    let Some(lab) = real_mode_or_skip("afp-send", &[], 1500) else {
        return;
    };
    let want = crafted(&[60, 128, 129, 700, 1514, 64, 1514]);
    let mut ring = lab.server.run(|| open_ring(&UringConfig::default()));
    let peer = lab
        .peer
        .run(|| PacketSocket::open(PEER_IF, &PacketSocketConfig::default()).expect("peer socket"));

    assert_eq!(ring.send(&want[0]).unwrap(), want[0].len());
    let refs: Vec<&[u8]> = want[1..].iter().map(Vec::as_slice).collect();
    let mut results = vec![None; refs.len()];
    ring.send_batch(&refs, |i, r| results[i] = Some(r.expect("send")));
    for (r, f) in results.iter().zip(&want[1..]) {
        assert_eq!(*r, Some(f.len()));
    }

    let mut got = Vec::new();
    let mut buf = vec![0u8; 2048];
    while got.len() < want.len() {
        assert!(
            peer.wait_readable(WAIT).unwrap(),
            "timed out after {} frames",
            got.len()
        );
        let r = peer.recv(&mut buf, false).unwrap();
        got.push(buf[..r.copied].to_vec());
    }
    assert_same_frames(&got, &want);
    // PACKET_IGNORE_OUTGOING: the server did not receive its own frames.
    assert!(ring
        .peek(Some(Duration::from_millis(200)))
        .unwrap()
        .is_none());
}

#[test]
fn vlan_tags_stripped_by_the_kernel_are_reinserted_on_the_peek_path() {
    let Some(lab) = real_mode_or_skip("afp-vlan", &["tcpreplay"], 1500) else {
        return;
    };
    // 802.1ad (QinQ) frames from a capture and crafted 802.1Q ones (one
    // priority-tagged, VLAN 0): the kernel strips the outer tag into
    // metadata; the ring puts it back.
    let mut want = capture_frames("tcpdump-QinQpacket.pcap");
    assert!(want.iter().all(|f| f[12..14] == [0x88, 0xa8]));
    let mut dot1q = crafted(&[64, 200, 1518, 130]);
    for (i, f) in dot1q.iter_mut().enumerate() {
        let tci: u16 = if i == 3 { 0 } else { 100 + i as u16 };
        f.splice(12..12, [0x81, 0x00, (tci >> 8) as u8, tci as u8]);
        f.truncate(f.len() - 4);
    }
    let mut ring = lab.server.run(|| open_ring(&UringConfig::default()));
    lab.replay(&capture("tcpdump-QinQpacket.pcap"), &["--topspeed"])
        .expect("tcpreplay");
    send_from_peer(&lab, &dot1q);
    want.extend(dot1q);
    let (got, large) = recv_peek_place(&mut ring, want.len());
    assert_same_frames(&got, &want);
    assert!(large > 0);

    // A destination too small for the tag and the MACs is refused.
    send_from_peer(&lab, &want[want.len() - 2..want.len() - 1]);
    let peek = ring.peek(WAIT).unwrap().expect("a frame");
    assert_eq!(peek.frame_len, 1518);
    assert!(ring.recv_into(&mut [0u8; 15]).is_err());
    let mut page = vec![0u8; 4096];
    let r = ring.recv_into(&mut page).unwrap();
    assert_eq!(&page[..r.copied], &want[want.len() - 2][..]);
}

mod backend {
    //! The `af_packet` backend over the same lab: the copied path through
    //! the `Backend` trait, and peek-then-place straight into a client's
    //! exchange-region frame.

    use std::time::Duration;

    use exchange::layout::RX_ZERO_COPY;
    use exchange::{ClientRegion, Geometry, Received, RxMeta, ServerConfig, ServerRegion};
    use netserver::backend::af_packet::{AfPacket, AfPacketOptions};
    use netserver::backend::{now_ns, Backend};
    use netserver::testing::netns::{real_mode_or_skip, PEER_IF, SERVER_IF};

    use super::{assert_same_frames, capture, capture_frames};

    fn open() -> AfPacket {
        AfPacket::open(SERVER_IF, &AfPacketOptions::default()).expect("open af_packet backend")
    }

    #[test]
    fn recv_batch_lends_complete_frames_through_the_trait() {
        let Some(lab) = real_mode_or_skip("afb-copy", &["tcpreplay"], 1500) else {
            return;
        };
        let want = capture_frames("tcpdump-afs.pcap");
        let mut nic = lab.server.run(open);
        assert_eq!(nic.name(), format!("af_packet:{SERVER_IF}"));
        lab.replay(&capture("tcpdump-afs.pcap"), &["--topspeed"])
            .expect("tcpreplay");
        let mut got = Vec::new();
        let mut idle = 0;
        while got.len() < want.len() && idle < 100 {
            let n = nic.recv_batch(64, &mut |f| {
                assert_eq!(f.wire_len as usize, f.data.len());
                got.push(f.data.to_vec());
            });
            if n == 0 {
                idle += 1;
                nic.wait(Duration::from_millis(50));
            }
        }
        assert_same_frames(&got, &want);
        let c = nic.counters();
        assert_eq!(c.copied, want.len() as u64);
        assert_eq!(c.zero_copy + c.truncated + c.errors, 0);
        assert_eq!(nic.kernel_stats().unwrap().drops, 0);
    }

    fn region() -> (ClientRegion, Vec<exchange::Frame>, ServerRegion) {
        let geometry = Geometry {
            rx_entries: 64,
            fill_entries: 64,
            tx_entries: 4,
            completion_entries: 4,
            small_slot_count: 64,
            small_slot_size: 128,
            frame_count: 64,
            frame_size: 4096,
        };
        ServerRegion::pair(geometry, &ServerConfig::default()).unwrap()
    }

    /// The backend with its backlog switch off: pure peek then place, so a
    /// stall of this test (a busy machine) cannot make a large frame
    /// legitimately copied.
    fn open_zero_copy_only() -> AfPacket {
        let options = AfPacketOptions {
            backlog_frames: 0,
            ..AfPacketOptions::default()
        };
        AfPacket::open(SERVER_IF, &options).expect("open af_packet backend")
    }

    /// What [`place_until`] saw.
    struct Placed {
        /// Every frame the client received, in order.
        frames: Vec<Vec<u8>>,
        /// Large frames the client got flagged `RX_ZERO_COPY`.
        zero_copy_flagged: u64,
        /// The backend's timestamp of each frame, in the order lent.
        stamps: Vec<u64>,
    }

    /// Every stamp lies in `[from, to]` and none goes back in time: the
    /// backend stamps a frame when it takes it (once per call, for all the
    /// frames of the call).
    fn assert_stamped(stamps: &[u64], from: u64, to: u64) {
        assert!(!stamps.is_empty());
        for (i, &t) in stamps.iter().enumerate() {
            assert!(
                (from..=to).contains(&t),
                "frame {i} stamped {t}, outside {from}..={to}"
            );
        }
        assert!(
            stamps.windows(2).all(|w| w[0] <= w[1]),
            "stamps go back in time: {stamps:?}"
        );
    }

    /// Drives `nic` the way the data path does — classify on `data`, then
    /// place: a body into a client frame (zero copy), a complete frame into
    /// a small slot or, when large, by copy into a client frame — and a
    /// client that takes everything and gives the frames back, until `want`
    /// frames arrived or nothing came for 100 idle waits.
    fn place_until(nic: &mut AfPacket, want: usize) -> Placed {
        let (mut client, mut frames, mut server) = region();
        client.fill(&mut frames).unwrap();
        let mut placed = Placed {
            frames: Vec::new(),
            zero_copy_flagged: 0,
            stamps: Vec::new(),
        };
        let mut small = [0u8; 128];
        let mut idle = 0;
        while placed.frames.len() < want && idle < 100 {
            server.refill().unwrap();
            let n = nic.recv_placed(8, Duration::ZERO, &mut |f, body| {
                placed.stamps.push(f.ts_ns);
                let meta = RxMeta {
                    tag: 1,
                    timestamp_ns: f.ts_ns,
                    wire_len: f.wire_len,
                    ..Default::default()
                };
                match body {
                    None if f.data.len() <= small.len() => {
                        server.deliver_small(f.data, &meta).unwrap()
                    }
                    None => {
                        // Complete in a server buffer (the backlog switch):
                        // the one copy.
                        let frame = server.take_frame().expect("a free client frame");
                        server.write_frame(&frame, 0, f.data).unwrap();
                        server.deliver_frame(frame, 0, f.data.len(), &meta).unwrap();
                    }
                    Some(body) => {
                        let frame = server.take_frame().expect("a free client frame");
                        let raw = server.raw_frame(&frame);
                        let r = body.read_into_frame(&raw).expect("receive into the frame");
                        drop(raw);
                        assert_eq!(r.frame_len, f.wire_len as usize);
                        // A second write-out of the same body is refused.
                        assert!(body.read_into(&mut [0u8; 64]).is_err());
                        let meta = RxMeta {
                            flags: RX_ZERO_COPY,
                            ..meta
                        };
                        server.deliver_frame(frame, 0, r.copied, &meta).unwrap();
                    }
                }
            });
            server.publish().unwrap();
            if n == 0 {
                idle += 1;
                // Idle like the data path: the wait must not start the
                // batched receive, which would take the next frames whole
                // into server buffers (copied).
                nic.wait(Duration::from_millis(20));
            } else {
                idle = 0;
            }
            // The client's side: take everything, give the frames back.
            while let Some(p) = client
                .fetch(&mut small, None, Some(Duration::ZERO))
                .unwrap()
            {
                match p {
                    Received::Small { len, .. } => placed.frames.push(small[..len].to_vec()),
                    Received::Large {
                        frame,
                        offset,
                        len,
                        info,
                    } => {
                        if info.flags & RX_ZERO_COPY != 0 {
                            placed.zero_copy_flagged += 1;
                        }
                        placed
                            .frames
                            .push(client.frame(&frame)[offset..offset + len].to_vec());
                        frames.push(frame);
                    }
                }
            }
            client.fill(&mut frames).unwrap();
        }
        placed
    }

    #[test]
    fn peek_then_place_writes_large_frames_straight_into_a_client_frame() {
        let Some(lab) = real_mode_or_skip("afb-zc", &["tcpreplay"], 1500) else {
            return;
        };
        let want = capture_frames("tcpdump-afs.pcap");
        let mut nic = lab.server.run(open_zero_copy_only);
        // At a moderate rate, in the background: frames also arrive while
        // the loop idles in `wait`, as they do for the data path.
        let mut replay = lab
            .peer
            .command("tcpreplay")
            .arg(format!("--intf1={PEER_IF}"))
            .args(["--pps", "2000"])
            .arg(capture("tcpdump-afs.pcap"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("tcpreplay");
        let started = now_ns();
        let placed = place_until(&mut nic, want.len());
        assert!(replay.wait().expect("tcpreplay").success());
        assert_same_frames(&placed.frames, &want);
        assert_stamped(&placed.stamps, started, now_ns());
        let c = nic.counters();
        let large = want.iter().filter(|f| f.len() > 128).count() as u64;
        assert_eq!(
            c.zero_copy, large,
            "every large frame took the zero-copy path"
        );
        assert_eq!(placed.zero_copy_flagged, large);
        assert_eq!(c.small_in_peek, want.len() as u64 - large);
        assert_eq!(c.copied + c.discarded + c.errors + c.backlog_switches, 0);
    }

    #[test]
    fn a_backlog_is_drained_by_the_batched_receive_and_counted_copied() {
        let Some(lab) = real_mode_or_skip("afb-backlog", &["tcpreplay"], 1500) else {
            return;
        };
        let want = capture_frames("tcpdump-afs.pcap");
        // Tiny thresholds: 4 queued frames in a row and any queued bytes.
        let options = AfPacketOptions {
            backlog_frames: 4,
            backlog_bytes: 1,
            ..AfPacketOptions::default()
        };
        let mut nic = lab
            .server
            .run(|| AfPacket::open(SERVER_IF, &options))
            .expect("open af_packet backend");
        // The reader is held back until the whole capture is queued: a
        // backlog by construction (the socket buffer holds it all; see
        // `recv_batch_lends_complete_frames_through_the_trait`).
        lab.replay(&capture("tcpdump-afs.pcap"), &["--topspeed"])
            .expect("tcpreplay");
        let started = now_ns();
        let placed = place_until(&mut nic, want.len());
        assert_same_frames(&placed.frames, &want);
        assert_stamped(&placed.stamps, started, now_ns());
        let c = nic.counters();
        assert!(c.backlog_switches >= 1, "{c:?}");
        assert!(c.backlog_copied > 0, "{c:?}");
        // The backlog's frames are the only copies, and every frame is in
        // exactly one counter.
        assert_eq!(c.copied, c.backlog_copied, "{c:?}");
        assert_eq!(
            c.copied + c.zero_copy + c.small_in_peek,
            want.len() as u64,
            "{c:?}"
        );
        assert_eq!(c.discarded + c.truncated + c.errors, 0, "{c:?}");
        assert_eq!(nic.kernel_stats().unwrap().drops, 0);
    }
}

mod server_binary {
    //! `netserver serve --backend af_packet:IFACE` inside the namespace.
    //! (Per-filter delivery over the real interface is checked by the
    //! workspace's end-to-end tests, which drive clients with `nsctl`.)

    use std::process::{Command, Stdio};
    use std::time::Duration;

    use netserver::testing::netns::{real_mode_or_skip, SERVER_IF};
    use netserver::testing::wait_serving;

    use super::capture;

    fn promiscuity(lab: &netserver::testing::netns::VethLab) -> u32 {
        let out = Command::new("ip")
            .args(["-n", lab.server.name(), "-d", "link", "show", SERVER_IF])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace()
            .skip_while(|w| *w != "promiscuity")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no promiscuity in {text}"))
    }

    #[test]
    fn serves_an_interface_and_stops_cleanly() {
        let Some(lab) = real_mode_or_skip("afs-serve", &["tcpreplay"], 1500) else {
            return;
        };
        let dir = std::env::temp_dir().join(format!("netserver-afs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("ns.sock");
        let mut server = lab
            .server
            .command(env!("CARGO_BIN_EXE_netserver"))
            .args([
                "serve",
                "--backend",
                &format!("af_packet:{SERVER_IF}"),
                "--socket",
            ])
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Err(e) = wait_serving(&mut server, &socket, Duration::from_secs(20)) {
            let _ = server.kill();
            let out = server.wait_with_output().unwrap();
            panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
        }
        // The backend's socket joined the interface promiscuously.
        assert_eq!(promiscuity(&lab), 1);
        lab.replay(&capture("tcpdump-afs.pcap"), &["--topspeed"])
            .expect("tcpreplay");
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            server.try_wait().unwrap().is_none(),
            "server died under traffic"
        );
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(server.id() as i32).unwrap(),
            rustix::process::Signal::TERM,
        )
        .unwrap();
        let out = server.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "server exit {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(promiscuity(&lab), 0, "membership left with the socket");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_interface_is_a_clear_startup_error() {
        let Some(lab) = real_mode_or_skip("afs-missing", &[], 1500) else {
            return;
        };
        let socket =
            std::env::temp_dir().join(format!("netserver-afm-{}.sock", std::process::id()));
        let out = lab
            .server
            .command(env!("CARGO_BIN_EXE_netserver"))
            .args(["serve", "--backend", "af_packet:nosuch0", "--socket"])
            .arg(&socket)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("nosuch0") && err.contains("ip link"), "{err}");
    }
}
