//! The kernel baseline of `bench delivery`: the same frames' UDP payloads
//! sent over loopback with `sendmmsg` (one sender thread, batches of 64,
//! round-robin over the consumers' ports) and received with `recvmmsg`
//! (batches of 64), one receiving socket and thread per consumer.
//!
//! Rates count the frame size of the generated frame each datagram stands
//! for, so Gbit/s compare with the other cases. Payload copies: the kernel
//! writes each datagram into a socket buffer (its "first write"), then
//! copies it out to the receiver (`recvmmsg`): one copy per packet, not
//! counting the sender's copy into the kernel.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{client_port, setup, BenchError, Row, Tally};
use crate::backend::generator::{udp_frame, UDP_HEADERS};
use crate::sys::mmsg::{set_recv_buffer, MmsgBatch};

/// Datagrams per `sendmmsg`/`recvmmsg`.
pub const BATCH: usize = 64;

/// Measures the kernel baseline for `frame_bytes`-byte frames to `clients`
/// receiving sockets over `measure` (after a warm-up).
pub fn run(frame_bytes: usize, clients: usize, measure: Duration) -> Result<Row, BenchError> {
    let clients = clients.max(1);
    let frame = udp_frame(frame_bytes, client_port(0), 0x5a);
    let payload = frame[UDP_HEADERS..].to_vec();
    let stop = Arc::new(AtomicBool::new(false));
    let mut receivers = Vec::new();
    let mut targets = Vec::new();
    let tallies: Vec<Arc<Tally>> = (0..clients).map(|_| Arc::default()).collect();
    for (i, tally) in tallies.iter().enumerate() {
        // Port 0: the kernel picks free ports (the generator's ports may be
        // taken on this host); each receiver still gets its own socket.
        let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| setup("UDP socket")(Box::new(e)))?;
        set_recv_buffer(&sock, 8 << 20).map_err(|e| setup("SO_RCVBUF")(Box::new(e)))?;
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .map_err(|e| setup("SO_RCVTIMEO")(Box::new(e)))?;
        targets.push(
            sock.local_addr()
                .map_err(|e| setup("UDP socket")(Box::new(e)))?,
        );
        let (stop, tally) = (stop.clone(), tally.clone());
        let expect = payload.len();
        receivers.push(
            std::thread::Builder::new()
                .name(format!("bench-kernel-rx-{i}"))
                .spawn(move || -> std::io::Result<()> {
                    let mut batch = MmsgBatch::new(BATCH);
                    let mut bufs: Vec<Box<[u8]>> =
                        (0..BATCH).map(|_| vec![0u8; 2048].into()).collect();
                    let mut lens = vec![0usize; BATCH];
                    while !stop.load(Ordering::Relaxed) {
                        let n = batch.recv(&sock, &mut bufs, &mut lens)?;
                        let wrong = lens[..n].iter().filter(|&&l| l != expect).count();
                        let bytes: usize = lens[..n].iter().sum();
                        tally.add(n as u64, bytes as u64, n as u64, wrong as u64);
                    }
                    Ok(())
                })
                .map_err(|e| setup("receiver thread")(Box::new(e)))?,
        );
    }
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sender = {
        let (stop, sent) = (stop.clone(), sent.clone());
        let mut socks = Vec::new();
        for t in &targets {
            let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| setup("UDP socket")(Box::new(e)))?;
            s.connect(t)
                .map_err(|e| setup("UDP connect")(Box::new(e)))?;
            socks.push(s);
        }
        std::thread::Builder::new()
            .name("bench-kernel-tx".into())
            .spawn(move || {
                let mut batch = MmsgBatch::new(BATCH);
                let msgs: Vec<&[u8]> = vec![&payload[..]; BATCH];
                let mut total = 0u64;
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    // One batch per socket in turn: the consumers share the
                    // traffic evenly. Errors (ENOBUFS) count as not sent.
                    if let Ok(n) = batch.send(&socks[i], &msgs) {
                        total += n as u64;
                    }
                    i = (i + 1) % socks.len();
                    // Relaxed: a counter read for the drop figure.
                    sent.store(total, Ordering::Relaxed);
                }
            })
            .map_err(|e| setup("sender thread")(Box::new(e)))?
    };
    let received = || super::sum(&tallies)[0];
    let lost = || sent.load(Ordering::Relaxed).saturating_sub(received());
    let (d, dropped, elapsed) = super::measure(&tallies, measure, &lost);
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
    for r in receivers {
        r.join()
            .map_err(|_| setup("receiver thread")("panicked".into()))?
            .map_err(|e| setup("recvmmsg")(Box::new(e)))?;
    }
    let [packets, _bytes, copies, wrong] = d;
    if wrong > 0 {
        return Err(BenchError::Misdelivered {
            case: "kernel-recvmmsg".into(),
            wrong,
        });
    }
    let mut row = Row::measured(
        "kernel-recvmmsg",
        frame_bytes,
        clients,
        packets,
        dropped,
        elapsed,
        copies as f64 / packets.max(1) as f64,
    );
    row.note = format!("UDP over loopback, {BATCH}-datagram sendmmsg/recvmmsg");
    Ok(row)
}
