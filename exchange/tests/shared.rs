//! Both sides in one process, each with its own mapping of the same memfd
//! (exactly as they would be in two processes), wired through the real
//! `SCM_RIGHTS` path.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use exchange::layout::{RX_SMALL, RX_TRUNCATED, RX_ZERO_COPY, TX_STATUS_SENT};
use exchange::{
    pass, ClientRegion, FrameState, Geometry, Packet, PlaceError, Received, RxMeta, ServerConfig,
    ServerRegion, TxRequest, Violation, ViolationKind,
};

fn small_geometry() -> Geometry {
    Geometry {
        rx_entries: 8,
        fill_entries: 8,
        tx_entries: 4,
        completion_entries: 4,
        small_slot_count: 8,
        small_slot_size: 128,
        frame_count: 16,
        frame_size: 4096,
    }
}

fn attach(
    g: Geometry,
    config: &ServerConfig,
) -> (ClientRegion, Vec<exchange::Frame>, ServerRegion) {
    ServerRegion::pair(g, config).unwrap()
}

#[test]
fn small_and_large_round_trip() {
    let (mut client, mut frames, mut server) = attach(small_geometry(), &ServerConfig::default());
    assert_eq!(client.fill(&mut frames).unwrap(), 8, "fill ring holds 8");
    assert_eq!(server.refill().unwrap(), 8);
    assert_eq!(server.free_frames(), 8);

    // A small packet, a large one, and a truncated one.
    server
        .deliver_small(
            b"hello",
            &RxMeta {
                tag: 1,
                timestamp_ns: 5,
                ..Default::default()
            },
        )
        .unwrap();
    let f = server.take_frame().unwrap();
    let big: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    server.write_frame(&f, 64, &big).unwrap();
    let fidx = f.index();
    server
        .deliver_frame(
            f,
            64,
            big.len(),
            &RxMeta {
                tag: 2,
                flags: RX_ZERO_COPY,
                ..Default::default()
            },
        )
        .unwrap();
    let f = server.take_frame().unwrap();
    server.write_frame(&f, 0, &[1; 100]).unwrap();
    server
        .deliver_frame(
            f,
            0,
            100,
            &RxMeta {
                tag: 3,
                wire_len: 9000,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(server.frames().state(fidx), Some(FrameState::Client));
    // Not visible before publish.
    let mut small = [0u8; 128];
    assert!(client.recv(&mut small).unwrap().is_none());
    server.publish().unwrap();

    match client.recv(&mut small).unwrap().unwrap() {
        Received::Small { len, info } => {
            assert_eq!(&small[..len], b"hello");
            assert_eq!((info.tag, info.timestamp_ns, info.wire_len), (1, 5, 5));
            assert_eq!(info.flags, RX_SMALL);
        }
        other => panic!("{other:?}"),
    }
    let frame = match client.recv(&mut small).unwrap().unwrap() {
        Received::Large {
            frame,
            offset,
            len,
            info,
        } => {
            assert_eq!((offset, len, info.tag), (64, 3000, 2));
            assert_eq!(info.flags, RX_ZERO_COPY);
            assert_eq!(&client.frame(&frame)[offset..offset + len], &big[..]);
            frame
        }
        other => panic!("{other:?}"),
    };
    let mut n = 0;
    client
        .recv_batch(10, |p| {
            n += 1;
            match p {
                Packet::Large {
                    frame, len, info, ..
                } => {
                    assert_eq!((len, info.wire_len, info.flags), (100, 9000, RX_TRUNCATED));
                    let _kept = frame;
                }
                other => panic!("{other:?}"),
            }
        })
        .unwrap();
    assert_eq!(n, 1);

    // Give the frame back in the same step as the next fetch (Frantz).
    assert!(client
        .fetch(&mut small, Some(frame), Some(Duration::ZERO))
        .unwrap()
        .is_none());
    assert_eq!(server.refill().unwrap(), 1);
    assert_eq!(server.free_frames(), 7);
    assert_eq!(server.violations().total(), 0);
}

#[test]
fn rx_full_and_no_free_frame_are_not_violations() {
    let (mut client, mut frames, mut server) = attach(small_geometry(), &ServerConfig::default());
    let meta = RxMeta::default();
    assert_eq!(server.take_frame(), Err(PlaceError::NoFreeFrame));
    for _ in 0..8 {
        server.deliver_small(&[0; 10], &meta).unwrap();
    }
    assert_eq!(
        server.deliver_small(&[0; 10], &meta),
        Err(PlaceError::RxFull)
    );
    assert!(matches!(
        server.deliver_small(&[0; 200], &meta),
        Err(PlaceError::TooLarge {
            len: 200,
            capacity: 128
        })
    ));
    client.fill(&mut frames).unwrap();
    server.refill().unwrap();
    let f = server.take_frame().unwrap();
    let idx = f.index();
    assert_eq!(
        server.deliver_frame(f, 0, 10, &meta),
        Err(PlaceError::RxFull)
    );
    assert_eq!(
        server.frames().state(idx),
        Some(FrameState::ServerFree),
        "frame went back to the free list"
    );
    server.publish().unwrap();
    // The client drains; the server sees the room once it re-reads.
    let mut small = [0u8; 128];
    let mut got = 0;
    while client.recv(&mut small).unwrap().is_some() {
        got += 1;
    }
    assert_eq!(got, 8);
    assert_eq!(server.rx_free().unwrap(), 8);
    assert_eq!(server.violations().total(), 0);
}

#[test]
fn small_slots_follow_rx_positions_across_wrap() {
    let (mut client, _frames, mut server) = attach(small_geometry(), &ServerConfig::default());
    let mut small = [0u8; 128];
    for i in 0..100u32 {
        let k = (i % 5 + 1) as usize;
        for j in 0..k {
            let data = [(i as usize * 7 + j) as u8; 33];
            server
                .deliver_small(
                    &data,
                    &RxMeta {
                        tag: u64::from(i),
                        ..Default::default()
                    },
                )
                .unwrap();
        }
        server.publish().unwrap();
        for j in 0..k {
            match client.recv(&mut small).unwrap().unwrap() {
                Received::Small { len, info } => {
                    assert_eq!(len, 33);
                    assert_eq!(info.tag, u64::from(i));
                    assert_eq!(small[..33], [(i as usize * 7 + j) as u8; 33]);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

#[test]
fn transmit_with_two_segments_and_completion() {
    let (mut client, mut frames, mut server) = attach(small_geometry(), &ServerConfig::default());
    let mut hdr = frames.pop().unwrap();
    let mut payload = frames.pop().unwrap();
    client.frame_mut(&mut hdr)[..14].copy_from_slice(b"HEADERHEADER14");
    client.frame_mut(&mut payload)[100..110].copy_from_slice(b"0123456789");
    let (h, p) = (hdr.index(), payload.index());
    client
        .transmit(TxRequest {
            frame: hdr,
            offset: 0,
            len: 14,
            second: Some((payload, 100, 10)),
        })
        .unwrap()
        .unwrap();
    assert!(server.tx_budget().unwrap() > 0);
    let pkt = server.pop_tx().unwrap().unwrap();
    assert_eq!(pkt.len(), 24);
    assert_eq!(server.frames().state(h), Some(FrameState::InFlightTx));
    assert_eq!(server.frames().state(p), Some(FrameState::InFlightTx));
    let mut out = [0u8; 64];
    let n = server.read_tx(&pkt, &mut out);
    assert_eq!(&out[..n], b"HEADERHEADER140123456789");
    let (raw1, raw2) = server.tx_raw(&pkt);
    let raw2 = raw2.unwrap();
    assert_eq!((raw1.len(), raw2.len()), (14, 10));
    // What follows a copied prefix: the rest of segment 1, then segment 2.
    let view = |skip| {
        server
            .tx_raw_after(&pkt, skip)
            .map(|r| r.map(|r| (r.as_ptr() as usize, r.len())))
    };
    let (p1, p2) = (raw1.as_ptr() as usize, raw2.as_ptr() as usize);
    assert_eq!(view(0), [Some((p1, 14)), Some((p2, 10))]);
    assert_eq!(view(4), [Some((p1 + 4, 10)), Some((p2, 10))]);
    assert_eq!(view(14), [Some((p2, 10)), None]);
    assert_eq!(view(16), [Some((p2 + 2, 8)), None]);
    assert_eq!(view(24), [None, None]);
    assert_eq!(view(99), [None, None]);
    assert!(server.pop_tx().unwrap().is_none());
    server.complete_tx(pkt, TX_STATUS_SENT, 24).unwrap();
    server.publish().unwrap();
    let mut done = Vec::new();
    client.completions(|c| done.push(c)).unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].frame.index(), h);
    assert_eq!(done[0].frame2.as_ref().map(|f| f.index()), Some(p));
    assert_eq!((done[0].status, done[0].len), (TX_STATUS_SENT, 24));
    assert_eq!(server.frames().state(h), Some(FrameState::Client));
}

#[test]
fn tx_budget_bounds_in_flight() {
    let (mut client, mut frames, mut server) = attach(small_geometry(), &ServerConfig::default());
    for _ in 0..4 {
        let f = frames.pop().unwrap();
        client
            .transmit(TxRequest {
                frame: f,
                offset: 0,
                len: 60,
                second: None,
            })
            .unwrap()
            .unwrap();
    }
    let f = frames.pop().unwrap();
    assert!(client
        .transmit(TxRequest {
            frame: f,
            offset: 0,
            len: 60,
            second: None
        })
        .unwrap()
        .is_err());
    let mut pkts = Vec::new();
    while let Some(p) = server.pop_tx().unwrap() {
        pkts.push(p);
    }
    assert_eq!(pkts.len(), 4);
    assert_eq!(server.tx_budget().unwrap(), 0);
    for p in pkts {
        server.complete_tx(p, TX_STATUS_SENT, 60).unwrap();
    }
    server.publish().unwrap();
    // The client has not consumed the completions yet: no budget.
    assert_eq!(server.tx_budget().unwrap(), 0);
    assert_eq!(client.completions(|_| {}).unwrap(), 4);
    assert_eq!(server.tx_budget().unwrap(), 4);
}

#[test]
fn client_sleeps_and_server_wakes_it() {
    let (mut client, mut frames, mut server) = attach(small_geometry(), &ServerConfig::default());
    client.fill(&mut frames).unwrap();
    server.refill().unwrap();
    std::thread::scope(|s| {
        let h = s.spawn(move || {
            let mut small = [0u8; 128];
            let mut got = Vec::new();
            while got.len() < 3 {
                match client
                    .fetch(&mut small, None, Some(Duration::from_secs(10)))
                    .unwrap()
                {
                    Some(Received::Small { info, .. }) => got.push(info.tag),
                    Some(Received::Large { info, frame, .. }) => {
                        got.push(info.tag);
                        let _kept = frame;
                    }
                    None => panic!("timed out: the doorbell was not rung"),
                }
            }
            got
        });
        for tag in 1..=3u64 {
            std::thread::sleep(Duration::from_millis(20));
            server
                .deliver_small(
                    &[1, 2, 3],
                    &RxMeta {
                        tag,
                        ..Default::default()
                    },
                )
                .unwrap();
            server.publish().unwrap();
        }
        assert_eq!(h.join().unwrap(), vec![1, 2, 3]);
    });
}

#[test]
fn server_sleeps_and_client_wakes_it() {
    let (mut client, mut frames, mut server) = attach(small_geometry(), &ServerConfig::default());
    assert!(server.arm_wakeup().unwrap(), "nothing posted yet");
    let f = frames.pop().unwrap();
    let mut v = vec![f];
    client.fill(&mut v).unwrap();
    // The doorbell must be readable now.
    let mut fds = [rustix::event::PollFd::from_borrowed_fd(
        server.wait_fd(),
        rustix::event::PollFlags::IN,
    )];
    let ts = rustix::event::Timespec {
        tv_sec: 2,
        tv_nsec: 0,
    };
    assert_eq!(rustix::event::poll(&mut fds, Some(&ts)).unwrap(), 1);
    assert_eq!(server.drain_wakeups().unwrap(), 1);
    assert_eq!(server.refill().unwrap(), 1);
    // Work waiting: arming says "don't sleep".
    let f = server.take_frame().unwrap();
    server.release_frame(f);
    let mut v = vec![frames.pop().unwrap()];
    client.fill(&mut v).unwrap();
    assert!(!server.arm_wakeup().unwrap());
}

#[test]
fn revoked_after_threshold_with_clear_error() {
    let config = ServerConfig {
        revoke_after: 3,
        ..ServerConfig::default()
    };
    let (mut client, mut frames, mut server) = attach(small_geometry(), &config);
    let mut v: Vec<_> = frames.drain(..2).collect();
    client.fill(&mut v).unwrap();
    server.refill().unwrap();
    // Post the same frames again by writing the ring directly, as a hostile client would.
    let l = *client.layout();
    let words = client.shared_words();
    let fill_entries = l.fill.entries_offset() / 4;
    for k in 0..4u32 {
        words[fill_entries + 2 + k as usize].store(k % 2, std::sync::atomic::Ordering::Relaxed);
    }
    words[l.fill.producer() / 4].store(6, std::sync::atomic::Ordering::Release);
    assert_eq!(server.refill().unwrap(), 0);
    assert!(server.is_revoked());
    assert_eq!(server.violations().get(ViolationKind::FramePostedTwice), 3);
    let err = server.refill().unwrap_err();
    assert!(matches!(err, Violation::Revoked { violations: 3 }));
    assert!(err.to_string().contains("revoked"), "{err}");
    assert!(matches!(
        server.take_frame(),
        Err(PlaceError::Violation(Violation::Revoked { .. }))
    ));
}

#[test]
fn client_refuses_a_frame_it_already_holds() {
    // A buggy server that returns a frame the client holds must not make the
    // client mint a second token for it (that would alias `&mut` bytes).
    let (mut client, frames, _server) = attach(small_geometry(), &ServerConfig::default());
    let l = *client.layout();
    let w = client.shared_words();
    let at = l.rx.entries_offset() / 4;
    let held = frames[0].index();
    // RxDesc words: tag lo/hi, ts lo/hi, index, len, wire_len, offset|flags<<16.
    for (i, v) in [1, 0, 0, 0, held, 10, 10, 0].iter().enumerate() {
        w[at + i].store(*v, std::sync::atomic::Ordering::Relaxed);
    }
    // A small descriptor naming the wrong slot.
    for (i, v) in [1, 0, 0, 0, 5, 10, 10, u32::from(RX_SMALL) << 16]
        .iter()
        .enumerate()
    {
        w[at + 8 + i].store(*v, std::sync::atomic::Ordering::Relaxed);
    }
    w[l.rx.producer() / 4].store(2, std::sync::atomic::Ordering::Release);
    let mut small = [0u8; 128];
    let e = client.recv(&mut small).unwrap_err();
    assert!(e.to_string().contains("not the sender's"), "{e}");
    let e = client.recv(&mut small).unwrap_err();
    assert!(e.to_string().contains("small slot 5"), "{e}");
    assert!(client.recv(&mut small).unwrap().is_none());
}

mod attach_refusals {
    use super::*;
    use exchange::layout::{Layout, Limits};
    use exchange::{AttachError, EventFd, GeometryError, RegionError};
    use rustix::fs::{MemfdFlags, SealFlags};
    use std::os::fd::OwnedFd;

    fn memfd(size: u64, seals: SealFlags, header: Option<&[u8]>) -> OwnedFd {
        let fd =
            rustix::fs::memfd_create("t", MemfdFlags::ALLOW_SEALING | MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, size).unwrap();
        if let Some(h) = header {
            rustix::io::pwrite(&fd, h, 0).unwrap();
        }
        if !seals.is_empty() {
            rustix::fs::fcntl_add_seals(&fd, seals).unwrap();
        }
        fd
    }

    fn header_bytes(layout: &Layout) -> Vec<u8> {
        layout
            .header()
            .to_words()
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect()
    }

    fn try_attach(fd: OwnedFd) -> Result<ServerRegion, AttachError> {
        ServerRegion::attach_parts(
            fd,
            EventFd::new().unwrap(),
            EventFd::new().unwrap(),
            &ServerConfig::default(),
        )
    }

    #[test]
    fn refused_with_reasons() {
        let layout = Layout::new(small_geometry(), &Limits::default()).unwrap();
        let size = layout.region_size as u64;
        let good = header_bytes(&layout);

        // The real thing attaches.
        assert!(try_attach(memfd(size, SealFlags::SHRINK, Some(&good))).is_ok());
        // Not sealed against shrinking.
        assert!(matches!(
            try_attach(memfd(size, SealFlags::GROW, Some(&good))),
            Err(AttachError::Region(RegionError::MissingSeals { .. }))
        ));
        // Sealed against writing.
        assert!(matches!(
            try_attach(memfd(
                size,
                SealFlags::SHRINK | SealFlags::WRITE,
                Some(&good)
            )),
            Err(AttachError::Region(RegionError::WriteSealed))
        ));
        // Not a memfd at all.
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(matches!(
            try_attach(OwnedFd::from(a)),
            Err(AttachError::Region(RegionError::NotSealable { .. }))
        ));
        // Too small for a header.
        assert!(matches!(
            try_attach(memfd(100, SealFlags::SHRINK, None)),
            Err(AttachError::Region(RegionError::TooSmall { size: 100 }))
        ));
        // Zero header.
        assert!(matches!(
            try_attach(memfd(size, SealFlags::SHRINK, None)),
            Err(AttachError::Region(RegionError::Geometry(
                GeometryError::BadMagic
            )))
        ));
        // File larger than the header says.
        assert!(matches!(
            try_attach(memfd(size + 4096, SealFlags::SHRINK, Some(&good))),
            Err(AttachError::Region(RegionError::SizeMismatch { .. }))
        ));
        // Larger than the server allows.
        let huge = memfd(1 << 30, SealFlags::SHRINK, Some(&good));
        let err = try_attach(huge).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
        // A lying offset.
        let mut lie = layout.header();
        lie.small_offset += 64;
        let mut bytes_lie = good.clone();
        bytes_lie[88..96].copy_from_slice(&lie.small_offset.to_le_bytes());
        assert!(matches!(
            try_attach(memfd(size, SealFlags::SHRINK, Some(&bytes_lie))),
            Err(AttachError::Region(RegionError::Geometry(
                GeometryError::HeaderMismatch {
                    field: "small_offset",
                    ..
                }
            )))
        ));
        // An eventfd slot holding something else.
        let (a, _b) = UnixStream::pair().unwrap();
        let fds = pass::RegionFds {
            memfd: memfd(size, SealFlags::SHRINK, Some(&good)),
            client_to_server: OwnedFd::from(a),
            server_to_client: EventFd::new().unwrap().into_fd(),
        };
        assert!(matches!(
            ServerRegion::attach(fds, &ServerConfig::default()),
            Err(AttachError::Pass(exchange::PassError::NotEventFd { .. }))
        ));
    }
}

#[test]
fn small_slots_are_read_in_place_and_only_copies_are_counted() {
    let (mut client, mut frames, mut server) = attach(small_geometry(), &ServerConfig::default());
    client.fill(&mut frames).unwrap();
    server.refill().unwrap();
    let meta = RxMeta {
        tag: 4,
        ..Default::default()
    };
    for word in [b"one", b"two", b"six"] {
        server.deliver_small(word, &meta).unwrap();
    }
    let f = server.take_frame().unwrap();
    server.write_frame(&f, 0, &[5; 300]).unwrap();
    server.deliver_frame(f, 0, 300, &meta).unwrap();
    server.publish().unwrap();

    // In place: the view is the slot itself, nothing is copied.
    let mut seen = Vec::new();
    let n = client
        .recv_batch_in_place(2, |p| match p {
            Packet::Small { data, info } => {
                assert_eq!(info.flags, RX_SMALL);
                seen.push(data.to_vec());
            }
            other => panic!("{other:?}"),
        })
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(seen, [b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(client.small_copies(), 0);

    // `recv` copies the small slot (counted); a large packet is no copy.
    let mut small = [0u8; 128];
    match client.recv(&mut small).unwrap().unwrap() {
        Received::Small { len, .. } => assert_eq!(&small[..len], b"six"),
        other => panic!("{other:?}"),
    }
    assert_eq!(client.small_copies(), 1);
    let mut large = 0;
    client
        .recv_batch(8, |p| match p {
            Packet::Large { frame, len, .. } => {
                assert_eq!(len, 300);
                large += 1;
                let _kept = frame;
            }
            other => panic!("{other:?}"),
        })
        .unwrap();
    assert_eq!((large, client.small_copies()), (1, 1));

    // The released slots are the server's again: it can fill all eight.
    for _ in 0..8 {
        server.deliver_small(b"again", &meta).unwrap();
    }
    server.publish().unwrap();
    let n = client
        .recv_batch(8, |p| match p {
            Packet::Small { data, .. } => assert_eq!(data, b"again"),
            other => panic!("{other:?}"),
        })
        .unwrap();
    assert_eq!((n, client.small_copies()), (8, 9));
}
