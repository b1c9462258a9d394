//! An in-memory frame generator: a NIC with no kernel behind it, for
//! `netserver bench delivery`.
//!
//! It holds a few pre-built UDP/IPv4 frames (one per destination port, so
//! each client's filter `udp dst port P` claims its share) and hands them out
//! endlessly, round-robin. Nothing is read from anywhere: the generator's
//! frame *is* the wire. Two ways to receive, mirroring
//! [`super::af_packet`]:
//!
//! - [`Backend::recv_batch`] lends each frame in place, as a NIC that has
//!   already written it into a **server** receive buffer: any later write of
//!   those bytes (the placement into a client's frame) is a payload copy.
//! - [`Backend::recv_placed`] is *peek then place*: it lends the frame's
//!   headers for classification plus a [`FrameBody`] that the placement asks
//!   to write the frame straight into the destination it chose (a client's
//!   frame). That one write is what a NIC's DMA does, not a copy; the body
//!   refuses a second write, and [`GenCounters`] counts both kinds.

use std::cell::Cell;
use std::io;
use std::time::Duration;

use super::af_packet::FrameBody;
use super::{now_ns, Backend, RxFrame};
use crate::sys::af_packet::RecvLen;

/// Ethernet + IPv4 + UDP header bytes.
pub const UDP_HEADERS: usize = 14 + 20 + 8;

/// Smallest frame the generator builds (Ethernet minimum without FCS).
pub const MIN_FRAME: usize = 60;

/// Source MAC of generated frames (locally administered).
pub const SRC_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
/// Destination MAC of generated frames (locally administered).
pub const DST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
/// Source IPv4 address (10.0.0.1).
pub const SRC_IP: [u8; 4] = [10, 0, 0, 1];
/// Destination IPv4 address (10.0.0.2).
pub const DST_IP: [u8; 4] = [10, 0, 0, 2];
/// UDP source port.
pub const SRC_PORT: u16 = 9;

/// Builds one UDP/IPv4 Ethernet frame of `frame_bytes` bytes (at least
/// [`MIN_FRAME`]) to `dst_port`, with a valid IPv4 header checksum, UDP
/// checksum 0 (none) and a payload of `payload_byte`s.
pub fn udp_frame(frame_bytes: usize, dst_port: u16, payload_byte: u8) -> Vec<u8> {
    let len = frame_bytes.max(MIN_FRAME);
    let mut f = vec![payload_byte; len];
    f[0..6].copy_from_slice(&DST_MAC);
    f[6..12].copy_from_slice(&SRC_MAC);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = u16::try_from(len - 14).unwrap_or(u16::MAX);
    let ip = &mut f[14..34];
    ip[0] = 0x45; // version 4, IHL 5
    ip[1] = 0;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&0u16.to_be_bytes()); // identification
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&SRC_IP);
    ip[16..20].copy_from_slice(&DST_IP);
    let csum = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&SRC_PORT.to_be_bytes());
    udp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    f
}

/// The RFC 791 header checksum of `header` (its checksum field zero).
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The UDP destination port of a frame built by [`udp_frame`], if it is one.
pub fn udp_dst_port(frame: &[u8]) -> Option<u16> {
    (frame.len() >= UDP_HEADERS && frame[12..14] == [0x08, 0x00] && frame[23] == 17)
        .then(|| u16::from_be_bytes([frame[36], frame[37]]))
}

/// What the generator did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenCounters {
    /// Frames handed out (either way).
    pub frames: u64,
    /// Frames lent in place by `recv_batch` (a later write is a copy).
    pub lent: u64,
    /// Frames written into a destination by `recv_placed`'s body (the one
    /// write).
    pub dma_writes: u64,
}

/// The generator backend.
#[derive(Debug)]
pub struct Generator {
    name: String,
    frames: Vec<Box<[u8]>>,
    /// How many leading bytes `recv_placed` shows for classification.
    peek_len: usize,
    /// What [`Backend::set_head_len`] asked `Backend::recv_placed` to show,
    /// and the most it shows (like the ring's longest peek).
    head_len: usize,
    max_head_len: usize,
    next: usize,
    counters: GenCounters,
}

impl Generator {
    /// A generator cycling through one `frame_bytes`-byte UDP frame per
    /// destination port in `dst_ports` (at least one port).
    pub fn udp(frame_bytes: usize, dst_ports: &[u16]) -> Generator {
        let ports: &[u16] = if dst_ports.is_empty() {
            &[10_000]
        } else {
            dst_ports
        };
        let frames = ports
            .iter()
            .enumerate()
            .map(|(i, &p)| udp_frame(frame_bytes, p, i as u8).into_boxed_slice())
            .collect();
        Generator::from_frames(format!("generator:{frame_bytes}"), frames)
    }

    /// A generator cycling through `frames` (at least one).
    pub fn from_frames(name: String, frames: Vec<Box<[u8]>>) -> Generator {
        assert!(!frames.is_empty(), "a generator needs at least one frame");
        Generator {
            name,
            frames,
            peek_len: 128,
            head_len: 0,
            max_head_len: 4096,
            next: 0,
            counters: GenCounters::default(),
        }
    }

    /// Sets how many leading bytes `recv_placed` shows (the small threshold).
    pub fn with_peek_len(mut self, peek_len: usize) -> Generator {
        self.peek_len = peek_len.max(UDP_HEADERS);
        self
    }

    /// Sets the most bytes [`Backend::set_head_len`] can make
    /// `Backend::recv_placed` show (4096 by default).
    pub fn with_max_head_len(mut self, max_head_len: usize) -> Generator {
        self.max_head_len = max_head_len;
        self
    }

    /// The frames it cycles through.
    pub fn frames(&self) -> &[Box<[u8]>] {
        &self.frames
    }

    /// What it did so far.
    pub fn counters(&self) -> GenCounters {
        self.counters
    }

    fn advance(&mut self) -> usize {
        let i = self.next;
        self.next += 1;
        if self.next == self.frames.len() {
            self.next = 0;
        }
        i
    }
}

/// The data path's view of a frame's body ([`Backend::recv_placed`]): the
/// one write of the frame into the destination the placement chose, at
/// most once, like a NIC's DMA.
struct Body<'a> {
    bytes: &'a [u8],
    written: &'a Cell<bool>,
}

impl Body<'_> {
    fn take(&self) -> io::Result<()> {
        if self.written.replace(true) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the generated frame was already written out once",
            ));
        }
        Ok(())
    }

    fn len(&self, copied: usize) -> RecvLen {
        RecvLen {
            copied,
            frame_len: self.bytes.len(),
        }
    }
}

impl FrameBody for Body<'_> {
    fn frame_len(&self) -> usize {
        self.bytes.len()
    }

    fn read_into(&self, dst: &mut [u8]) -> io::Result<RecvLen> {
        self.take()?;
        let n = self.bytes.len().min(dst.len());
        dst[..n].copy_from_slice(&self.bytes[..n]);
        Ok(self.len(n))
    }

    fn read_into_frame(&self, frame: &exchange::server::RawFrame) -> io::Result<RecvLen> {
        self.take()?;
        Ok(self.len(crate::sys::dma::write_frame(frame, self.bytes)))
    }
}

impl Backend for Generator {
    fn name(&self) -> &str {
        &self.name
    }

    /// Peek then place for the data path: frames longer than `peek_len`
    /// come with their head (`peek_len` bytes, or up to `max_head_len` as
    /// `set_head_len` asked) and a [`FrameBody`] that writes them once into
    /// the client's frame; shorter ones are complete in `data` (the wire
    /// bytes). Not lossless: the data path decides what it drops.
    fn recv_placed(
        &mut self,
        max: usize,
        _timeout: Duration,
        deliver: &mut dyn FnMut(&RxFrame<'_>, Option<&dyn FrameBody>),
    ) -> Option<usize> {
        let ts_ns = now_ns();
        let written = Cell::new(false);
        let mut dma_writes = 0u64;
        let head = self.peek_len.max(self.head_len.min(self.max_head_len));
        for _ in 0..max {
            let i = self.advance();
            let bytes = &self.frames[i][..];
            let complete = bytes.len() <= self.peek_len;
            let frame = RxFrame {
                data: &bytes[..bytes.len().min(head)],
                wire_len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
                ts_ns,
            };
            written.set(false);
            let body = Body {
                bytes,
                written: &written,
            };
            deliver(&frame, (!complete).then_some(&body as &dyn FrameBody));
            dma_writes += u64::from(written.get());
        }
        self.counters.frames += max as u64;
        self.counters.dma_writes += dma_writes;
        Some(max)
    }

    fn set_head_len(&mut self, bytes: usize) {
        self.head_len = bytes;
    }

    fn recv_batch(&mut self, max: usize, deliver: &mut dyn FnMut(&RxFrame<'_>)) -> usize {
        let ts_ns = now_ns();
        for _ in 0..max {
            let i = self.advance();
            let data = &self.frames[i][..];
            deliver(&RxFrame {
                data,
                wire_len: u32::try_from(data.len()).unwrap_or(u32::MAX),
                ts_ns,
            });
        }
        self.counters.frames += max as u64;
        self.counters.lent += max as u64;
        max
    }

    fn wait(&mut self, _timeout: Duration) {
        // Frames are always ready.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_udp_ipv4_with_a_valid_header_checksum() {
        for len in [10, 64, 1500] {
            let f = udp_frame(len, 10_007, 0xee);
            assert_eq!(f.len(), len.max(MIN_FRAME));
            assert_eq!(udp_dst_port(&f), Some(10_007));
            assert_eq!(
                ipv4_checksum(&f[14..34]),
                0,
                "checksum over a valid header is 0"
            );
            let ip_len = u16::from_be_bytes([f[16], f[17]]) as usize;
            assert_eq!(ip_len, f.len() - 14);
            let udp_len = u16::from_be_bytes([f[38], f[39]]) as usize;
            assert_eq!(udp_len, f.len() - 34);
        }
    }

    #[test]
    fn frames_match_their_filters() {
        let p = filters::compile("udp dst port 10001").unwrap();
        let g = Generator::udp(64, &[10_000, 10_001]);
        let hits: Vec<bool> = g
            .frames()
            .iter()
            .map(|f| p.matches(f, f.len() as u32))
            .collect();
        assert_eq!(hits, [false, true]);
    }

    #[test]
    fn recv_batch_cycles_and_counts_lent_frames() {
        let mut g = Generator::udp(100, &[1, 2, 3]);
        let mut ports = Vec::new();
        assert_eq!(
            g.recv_batch(7, &mut |f| ports.push(udp_dst_port(f.data).unwrap())),
            7
        );
        assert_eq!(ports, [1, 2, 3, 1, 2, 3, 1]);
        assert_eq!(g.counters().lent, 7);
        assert_eq!(g.counters().dma_writes, 0);
    }

    #[test]
    fn recv_placed_lends_the_head_and_writes_once() {
        let mut g = Generator::udp(1500, &[5]).with_peek_len(128);
        let mut dst = vec![0u8; 2048];
        let mut second = None;
        let n = g.recv_placed(2, Duration::ZERO, &mut |f, body| {
            assert_eq!(f.data.len(), 128);
            assert_eq!(f.wire_len, 1500);
            let body = body.expect("a long frame comes with its body");
            assert_eq!(body.frame_len(), 1500);
            if second.is_none() {
                assert_eq!(body.read_into(&mut dst).unwrap().copied, 1500);
                second = Some(body.read_into(&mut dst).is_err());
            }
        });
        assert_eq!(n, Some(2));
        assert_eq!(second, Some(true), "a second write is refused");
        assert_eq!(udp_dst_port(&dst), Some(5));
        let c = g.counters();
        assert_eq!((c.frames, c.dma_writes), (2, 1));
    }

    #[test]
    fn recv_placed_lends_short_frames_whole() {
        let mut g = Generator::udp(64, &[1, 2]).with_peek_len(128);
        let mut seen = Vec::new();
        g.recv_placed(3, Duration::ZERO, &mut |f, body| {
            assert!(body.is_none());
            seen.push(udp_dst_port(f.data).unwrap());
        });
        assert_eq!(seen, [1, 2, 1]);
    }

    #[test]
    fn set_head_len_shows_longer_heads_up_to_the_cap() {
        let mut g = Generator::udp(1500, &[5]).with_max_head_len(600);
        let mut heads = Vec::new();
        for ask in [0, 300, 5000, 0] {
            g.set_head_len(ask);
            Backend::recv_placed(&mut g, 1, Duration::ZERO, &mut |f, body| {
                heads.push((f.data.len(), body.is_some()));
            });
        }
        assert_eq!(
            heads,
            [(128, true), (300, true), (600, true), (128, true)],
            "at least the small threshold, at most the cap; large frames keep their body"
        );
        let mut g = Generator::udp(200, &[5]);
        g.set_head_len(300);
        Backend::recv_placed(&mut g, 1, Duration::ZERO, &mut |f, body| {
            assert_eq!(f.data.len(), 200, "the whole frame in the head");
            assert!(body.is_some(), "still its body: it may go zero copy");
        });
    }
}
