//! A hostile client scribbles over its own rings — random indices, duplicate
//! frames, wrapped counters, garbage descriptors — while the server keeps
//! serving it and a well-behaved client. The server must never panic, must
//! refuse and count what is wrong, must keep its frame table consistent, and
//! the well-behaved client must receive every packet, in order, intact.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use exchange::layout::{Layout, TX_STATUS_SENT};
use exchange::{
    ClientRegion, FrameState, Geometry, PlaceError, Received, RxMeta, ServerConfig, ServerRegion,
    Violation, ViolationKind,
};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }
}

fn geometry() -> Geometry {
    Geometry {
        rx_entries: 32,
        fill_entries: 32,
        tx_entries: 16,
        completion_entries: 16,
        small_slot_count: 32,
        small_slot_size: 128,
        frame_count: 64,
        frame_size: 2048,
    }
}

fn attach(config: &ServerConfig) -> (ClientRegion, Vec<exchange::Frame>, ServerRegion) {
    ServerRegion::pair(geometry(), config).unwrap()
}

/// One burst of hostile writes over every ring's control block and entries.
fn scribble(words: &[AtomicU32], l: &Layout, rng: &mut Rng) {
    let frames = l.geometry.frame_count;
    for ring in [&l.rx, &l.fill, &l.tx, &l.completion] {
        let entries = ring.entries;
        let consumer = words[ring.consumer() / 4].load(Ordering::Relaxed);
        let producer = words[ring.producer() / 4].load(Ordering::Relaxed);
        // Entries: in-range, duplicate, out-of-range and wild values.
        let first = ring.entries_offset() / 4;
        let n_words = entries as usize * ring.entry_size / 4;
        for _ in 0..rng.below(16) + 1 {
            let w = first + rng.below(n_words as u32) as usize;
            let v = match rng.below(5) {
                0 => rng.below(frames),
                1 => 0, // everyone posts frame 0
                2 => frames + rng.below(4),
                3 => u32::MAX - rng.below(3),
                _ => rng.next() as u32,
            };
            words[w].store(v, Ordering::Relaxed);
        }
        // Indices: plausible, overrun, behind, wrapped, wild.
        let base = if rng.below(2) == 0 {
            consumer
        } else {
            producer
        };
        let v = match rng.below(10) {
            0..=4 => base.wrapping_add(rng.below(entries + 1)),
            5 => base.wrapping_add(entries + 1 + rng.below(100)),
            6 => base.wrapping_sub(1 + rng.below(entries)),
            7 => u32::MAX - rng.below(entries),
            8 => rng.next() as u32,
            _ => base,
        };
        let which = match rng.below(4) {
            0 | 1 => ring.producer(),
            2 => ring.consumer(),
            _ => ring.need_wakeup(),
        };
        words[which / 4].store(v, Ordering::Release);
    }
    // A plausible batch on each ring the server consumes: entries right at
    // the server's consumer index, in range but duplicated, then a producer
    // index that covers them. This reaches the per-entry checks.
    for ring in [&l.fill, &l.tx] {
        let consumer = words[ring.consumer() / 4].load(Ordering::Relaxed);
        let k = 1 + rng.below(4);
        let per = ring.entry_size / 4;
        for i in 0..k {
            let slot = (consumer.wrapping_add(i) & (ring.entries - 1)) as usize;
            let at = ring.entries_offset() / 4 + slot * per;
            let frame = rng.below(4); // few distinct frames: duplicates
            words[at].store(frame, Ordering::Relaxed);
            if per > 1 {
                // tx: offset, len (sometimes bad), flags (sometimes bad)
                words[at + 1].store(rng.below(2) * 4000, Ordering::Relaxed);
                words[at + 2].store(rng.below(3) * 700, Ordering::Relaxed);
                words[at + 3].store(rng.below(3) & 2, Ordering::Relaxed);
            }
        }
        words[ring.producer() / 4].store(consumer.wrapping_add(k), Ordering::Release);
    }
}

#[test]
fn hostile_client_cannot_hurt_the_server_or_a_neighbour() {
    let hostile_config = ServerConfig {
        revoke_after: 0, // never revoke: keep exercising the checks
        ..ServerConfig::default()
    };
    let (mut bad_client, mut bad_frames, mut bad) = attach(&hostile_config);
    let (mut good_client, mut good_frames, mut good) = attach(&ServerConfig::default());
    bad_client.fill(&mut bad_frames).unwrap();
    good_client.fill(&mut good_frames).unwrap();
    let bad_layout = *bad_client.layout();

    const GOOD_PACKETS: u32 = 4000;
    let stop = AtomicBool::new(false);
    let scribbles = AtomicU32::new(0);
    const MIN_SCRIBBLES: u32 = 3000;
    /// Stops the scribbler even if an assertion fails (a scope joins its
    /// threads before propagating a panic).
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|s| {
        // The hostile client: scribbles until told to stop.
        let bad_client = &bad_client;
        let stop = &stop;
        let scribbles = &scribbles;
        s.spawn(move || {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
            let words = bad_client.shared_words();
            while !stop.load(Ordering::Relaxed) {
                scribble(words, &bad_layout, &mut rng);
                scribbles.fetch_add(1, Ordering::Relaxed);
                std::thread::yield_now();
            }
        });
        let _stop_guard = StopOnDrop(stop);
        // The well-behaved client: receives everything, gives frames back.
        let good_rx = s.spawn(move || {
            let mut small = [0u8; 128];
            let mut give = None;
            for i in 0..GOOD_PACKETS {
                let p = loop {
                    assert!(Instant::now() < deadline, "good client stalled at {i}");
                    if let Some(p) = good_client
                        .fetch(&mut small, give.take(), Some(Duration::from_millis(100)))
                        .unwrap()
                    {
                        break p;
                    }
                };
                let (tag, data): (u64, Vec<u8>) = match p {
                    Received::Small { len, info } => (info.tag, small[..len].to_vec()),
                    Received::Large {
                        frame,
                        offset,
                        len,
                        info,
                    } => {
                        let d = good_client.frame(&frame)[offset..offset + len].to_vec();
                        give = Some(frame);
                        (info.tag, d)
                    }
                };
                assert_eq!(
                    tag,
                    u64::from(i),
                    "good client: packet out of order or lost"
                );
                assert_eq!(data.len(), 60 + (i as usize * 13) % 1400);
                assert!(
                    data.iter().all(|b| *b == i as u8),
                    "good client: packet {i} corrupted"
                );
            }
        });

        // The server: one thread serving both regions.
        let mut rng = Rng(42);
        let mut sent = 0u32;
        let mut bad_delivered = 0u64;
        let mut buf = vec![0u8; 2048];
        // Serve until the good client has everything *and* the scribbler has
        // had enough turns, however the threads were scheduled.
        while sent < GOOD_PACKETS || scribbles.load(Ordering::Relaxed) < MIN_SCRIBBLES {
            assert!(Instant::now() < deadline, "server stalled at {sent}");
            // Hostile region: every operation, errors tolerated.
            let _ = bad.refill();
            for _ in 0..4 {
                let len = 20 + rng.below(1500) as usize;
                let r = if len <= 128 {
                    bad.deliver_small(&buf[..len], &RxMeta::default())
                } else {
                    match bad.take_frame() {
                        Ok(f) => {
                            bad.write_frame(&f, 0, &buf[..len]).unwrap();
                            bad.deliver_frame(f, 0, len, &RxMeta::default())
                        }
                        Err(e) => Err(e),
                    }
                };
                if r.is_ok() {
                    bad_delivered += 1;
                }
            }
            while let Ok(Some(p)) = bad.pop_tx() {
                let mut out = [0u8; 64];
                let _ = bad.read_tx(&p, &mut out);
                let _ = bad.complete_tx(p, TX_STATUS_SENT, 0);
            }
            let _ = bad.publish();
            let _ = bad.arm_wakeup();
            let _ = bad.drain_wakeups();
            assert_eq!(bad.frames().count_in(FrameState::ServerHolding), 0);

            // Good region: deliver the next packet, retrying until it fits.
            if sent == GOOD_PACKETS {
                std::thread::yield_now();
                continue;
            }
            good.refill().unwrap();
            let len = 60 + (sent as usize * 13) % 1400;
            buf[..len].fill(sent as u8);
            let meta = RxMeta {
                tag: u64::from(sent),
                ..Default::default()
            };
            let r = if len <= good.small_capacity() {
                good.deliver_small(&buf[..len], &meta)
            } else {
                match good.take_frame() {
                    Ok(f) => {
                        good.write_frame(&f, 0, &buf[..len]).unwrap();
                        good.deliver_frame(f, 0, len, &meta)
                    }
                    Err(e) => Err(e),
                }
            };
            match r {
                Ok(()) => sent += 1,
                Err(PlaceError::RxFull | PlaceError::NoFreeFrame) => std::thread::yield_now(),
                Err(e) => panic!("good region refused: {e}"),
            }
            good.publish().unwrap();
        }
        good_rx.join().unwrap();
        stop.store(true, Ordering::Relaxed);

        let v = bad.violations();
        eprintln!(
            "hostile region: delivered {bad_delivered}, violations {:?}",
            v.iter().collect::<Vec<_>>()
        );
        assert!(v.total() > 100, "the scribbling should have been noticed");
        for kind in [
            ViolationKind::ProducerIndex,
            ViolationKind::ConsumerIndex,
            ViolationKind::FrameOutOfRange,
            ViolationKind::FramePostedTwice,
            ViolationKind::BadDescriptor,
        ] {
            assert!(v.get(kind) > 0, "no {} violation was provoked", kind.name());
        }
        let frames = bad.frames();
        let states = [
            FrameState::Client,
            FrameState::ServerFree,
            FrameState::ServerHolding,
            FrameState::InFlightTx,
        ];
        assert_eq!(
            states.iter().map(|s| frames.count_in(*s)).sum::<usize>(),
            64
        );
        assert_eq!(frames.count_in(FrameState::ServerFree), frames.free_count());
        assert_eq!(good.violations().total(), 0);
    });
}

#[test]
fn fill_entries_are_each_judged_once() {
    // Deterministic: duplicates, out-of-range and server-held frames in one
    // batch; the good entries are accepted, each bad one counted once.
    let (client, _frames, mut server) = attach(&ServerConfig::default());
    let l = *client.layout();
    let w = client.shared_words();
    let base = l.fill.entries_offset() / 4;
    for (i, v) in [5u32, 5, 64, 1000, 6, u32::MAX].iter().enumerate() {
        w[base + i].store(*v, Ordering::Relaxed);
    }
    w[l.fill.producer() / 4].store(6, Ordering::Release);
    assert_eq!(server.refill().unwrap(), 2);
    let v = server.violations();
    assert_eq!(v.get(ViolationKind::FramePostedTwice), 1);
    assert_eq!(v.get(ViolationKind::FrameOutOfRange), 3);
    // Frame 5 now holds a packet: posting it again is "not the client's".
    let (a, b) = (server.take_frame().unwrap(), server.take_frame().unwrap());
    let (f, other) = if a.index() == 5 { (a, b) } else { (b, a) };
    assert_eq!(f.index(), 5);
    server.release_frame(other);
    w[base + 6].store(5, Ordering::Relaxed);
    w[l.fill.producer() / 4].store(7, Ordering::Release);
    assert_eq!(server.refill().unwrap(), 0);
    assert_eq!(server.violations().get(ViolationKind::FrameNotOwned), 1);
    server.release_frame(f);
    // A producer index far ahead is refused as a whole.
    w[l.fill.producer() / 4].store(7 + 33, Ordering::Release);
    assert!(matches!(
        server.refill(),
        Err(Violation::ProducerIndex { producer: 40, .. })
    ));
}

#[test]
fn garbage_tx_descriptors_are_refused() {
    let (client, _frames, mut server) = attach(&ServerConfig::default());
    let l = *client.layout();
    let w = client.shared_words();
    let base = l.tx.entries_offset() / 4;
    let descs: [[u32; 8]; 6] = [
        [1, 0, 0, 0, 0, 0, 0, 0],      // zero length
        [1, 2000, 100, 0, 0, 0, 0, 0], // past the frame end
        [64, 0, 10, 0, 0, 0, 0, 0],    // frame out of range
        [1, 0, 10, 0x80, 0, 0, 0, 0],  // unknown flags
        [1, 0, 10, 1, 1, 0, 10, 0],    // both segments in one frame
        [2, 0, 60, 1, 3, 0, 70, 0],    // valid, two segments
    ];
    for (i, d) in descs.iter().enumerate() {
        for (j, v) in d.iter().enumerate() {
            w[base + i * 8 + j].store(*v, Ordering::Relaxed);
        }
    }
    w[l.tx.producer() / 4].store(6, Ordering::Release);
    let p = server.pop_tx().unwrap().expect("the valid descriptor");
    assert_eq!(p.len(), 130);
    assert_eq!(server.violations().get(ViolationKind::BadDescriptor), 4);
    assert_eq!(server.violations().get(ViolationKind::FrameOutOfRange), 1);
    assert_eq!(server.frames().state(2), Some(FrameState::InFlightTx));
    assert_eq!(server.frames().state(1), Some(FrameState::Client));
    server.complete_tx(p, TX_STATUS_SENT, 130).unwrap();
}
