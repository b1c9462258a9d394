//! Server and client in two processes. The test binary re-runs itself with
//! `EXCHANGE_TEST_ROLE=client` to play the client; the two talk over a Unix
//! socket pair whose child end is inherited across `exec`.
//!
//! The client creates the region, sends it with a token, keeps the fill ring
//! stocked (giving each received frame back in the same `fetch`), checks
//! every packet's bytes, then transmits one frame and waits for its
//! completion. The server produces a mix of small and large packets, waiting
//! on its doorbell when it has no free frame. The child's end of the socket
//! is its standard input, so no descriptor number needs adopting.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use exchange::layout::TX_STATUS_SENT;
use exchange::{
    pass, ClientRegion, Geometry, PlaceError, Received, RxMeta, ServerConfig, ServerRegion,
    TxRequest,
};

const ROLE: &str = "EXCHANGE_TEST_ROLE";
const PACKETS: u32 = 3000;
const TOKEN: [u8; pass::TOKEN_LEN] = *b"cross-process-ok";

fn packet_len(i: u32) -> usize {
    if i % 3 == 0 {
        40 + (i % 80) as usize
    } else {
        129 + ((i * 37) % 1400) as usize
    }
}

fn byte(i: u32, j: usize) -> u8 {
    (i as usize * 31 + j) as u8
}

fn geometry() -> Geometry {
    Geometry {
        rx_entries: 64,
        fill_entries: 64,
        tx_entries: 8,
        completion_entries: 8,
        small_slot_count: 64,
        small_slot_size: 128,
        frame_count: 96,
        frame_size: 2048,
    }
}

fn client_role() {
    let stdin = std::io::stdin();
    let sock = stdin.as_fd();
    let (mut client, mut frames) = ClientRegion::create(geometry()).unwrap();
    client.fill(&mut frames).unwrap();
    client.send_to(sock, &TOKEN).unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut small = [0u8; 128];
    let mut give = None;
    for i in 0..PACKETS {
        let got = loop {
            assert!(Instant::now() < deadline, "client: timed out at packet {i}");
            if let Some(p) = client
                .fetch(&mut small, give.take(), Some(Duration::from_secs(1)))
                .unwrap()
            {
                break p;
            }
        };
        let want = packet_len(i);
        match got {
            Received::Small { len, info } => {
                assert!(want <= 128, "packet {i} should be large");
                assert_eq!((len, info.tag), (want, u64::from(i)));
                for (j, b) in small[..len].iter().enumerate() {
                    assert_eq!(*b, byte(i, j), "packet {i} byte {j}");
                }
            }
            Received::Large {
                frame,
                offset,
                len,
                info,
            } => {
                assert!(want > 128, "packet {i} should be small");
                assert_eq!((len, info.tag), (want, u64::from(i)));
                let data = &client.frame(&frame)[offset..offset + len];
                for (j, b) in data.iter().enumerate() {
                    assert_eq!(*b, byte(i, j), "packet {i} byte {j}");
                }
                give = Some(frame);
            }
        }
    }
    // One transmit back.
    let mut f = give
        .take()
        .unwrap_or_else(|| frames.pop().expect("a spare frame"));
    client.frame_mut(&mut f)[..5].copy_from_slice(b"reply");
    client
        .transmit(TxRequest {
            frame: f,
            offset: 0,
            len: 5,
            second: None,
        })
        .unwrap()
        .unwrap();
    assert!(client
        .wait_completion(Some(Duration::from_secs(10)))
        .unwrap());
    let mut done = 0;
    client
        .completions(|c| {
            assert_eq!((c.status, c.len), (TX_STATUS_SENT, 5));
            done += 1;
        })
        .unwrap();
    assert_eq!(done, 1);
}

#[test]
fn cross_process() {
    if std::env::var(ROLE).as_deref() == Ok("client") {
        client_role();
        return;
    }
    let (parent, child) = UnixStream::pair().unwrap();
    let mut proc = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cross_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, "client")
        .stdin(Stdio::from(OwnedFd::from(child)))
        .spawn()
        .unwrap();

    let req = pass::recv_region(parent.as_fd(), pass::TOKEN_LEN, Duration::from_secs(20)).unwrap();
    assert_eq!(req.token, TOKEN);
    let mut server = ServerRegion::attach(req.fds, &ServerConfig::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0u32;
    let mut scratch = vec![0u8; 2048];
    while i < PACKETS {
        assert!(Instant::now() < deadline, "server: timed out at packet {i}");
        server.refill().unwrap();
        let len = packet_len(i);
        for (j, b) in scratch[..len].iter_mut().enumerate() {
            *b = byte(i, j);
        }
        let meta = RxMeta {
            tag: u64::from(i),
            ..Default::default()
        };
        let r = if len <= server.small_capacity() {
            server.deliver_small(&scratch[..len], &meta)
        } else {
            match server.take_frame() {
                Ok(f) => {
                    server.write_frame(&f, 0, &scratch[..len]).unwrap();
                    server.deliver_frame(f, 0, len, &meta)
                }
                Err(e) => Err(e),
            }
        };
        match r {
            Ok(()) => {
                i += 1;
                if i % 16 == 0 {
                    server.publish().unwrap();
                }
            }
            Err(PlaceError::RxFull | PlaceError::NoFreeFrame) => {
                server.publish().unwrap();
                if server.arm_wakeup().unwrap() {
                    // The client rings on fill; an rx-full wait has no bell, so keep it short.
                    let mut fds = [rustix::event::PollFd::from_borrowed_fd(
                        server.wait_fd(),
                        rustix::event::PollFlags::IN,
                    )];
                    let ts = rustix::event::Timespec {
                        tv_sec: 0,
                        tv_nsec: 2_000_000,
                    };
                    rustix::event::poll(&mut fds, Some(&ts)).unwrap();
                    server.drain_wakeups().unwrap();
                }
            }
            Err(e) => panic!("server: {e}"),
        }
    }
    server.publish().unwrap();

    // Serve the one transmit.
    let pkt = loop {
        assert!(Instant::now() < deadline, "server: no transmit");
        server.refill().unwrap();
        if let Some(p) = server.pop_tx().unwrap() {
            break p;
        }
        if server.arm_wakeup().unwrap() {
            let mut fds = [rustix::event::PollFd::from_borrowed_fd(
                server.wait_fd(),
                rustix::event::PollFlags::IN,
            )];
            let ts = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 50_000_000,
            };
            rustix::event::poll(&mut fds, Some(&ts)).unwrap();
            server.drain_wakeups().unwrap();
        }
    };
    let mut out = [0u8; 16];
    let n = server.read_tx(&pkt, &mut out);
    assert_eq!(&out[..n], b"reply");
    server.complete_tx(pkt, TX_STATUS_SENT, n as u32).unwrap();
    server.publish().unwrap();

    let status = proc.wait().unwrap();
    assert!(status.success(), "client process failed: {status}");
    assert_eq!(server.violations().total(), 0);
}
