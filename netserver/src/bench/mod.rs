//! `netserver bench`: delivery benchmarks (never timed tests).
//!
//! - [`delivery`]: `bench delivery` — an in-memory generator
//!   ([`crate::backend::generator`]) feeding the server's classify-and-place
//!   path, consumed by client threads in shared mode (exchange rings) and in
//!   emulated mode, against a [`kernel_baseline`] (UDP over loopback with
//!   `recvmmsg`/`sendmmsg`) on the same frames.
//! - [`af_packet`]: `bench af_packet` — the server's delivery rate over a
//!   real interface (a veth pair it may build itself) against the bare
//!   AF_PACKET reader that does no demultiplexing, on the same traffic.
//! - [`exchange`]: `bench exchange` — one packet's change of hands by frame
//!   index (what the server does) against copying the payload and against
//!   really remapping the page (DESIGN.md's baselines).
//!
//! Each case yields one [`Row`]; `--json` prints one JSON object per line.
//! Figures and how to reproduce them: `netserver/BENCH.md`.

pub mod af_packet;
pub mod delivery;
pub mod exchange;
pub mod kernel_baseline;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// One measured case.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// What was measured: `shared`, `shared-frames`, `emulated`,
    /// `kernel-recvmmsg`, `bare_af_packet`, `server_af_packet_batched`, …
    pub case: String,
    /// Bytes per frame on the wire (Ethernet header included, no FCS).
    pub frame_bytes: usize,
    /// Consumers (clients, or receiving sockets for the kernel baseline).
    pub clients: usize,
    /// Millions of packets per second delivered to the consumers.
    pub mpps: f64,
    /// Gigabits per second delivered (frame bytes × 8).
    pub gbps: f64,
    /// Copies of payload bytes per delivered packet after the first write
    /// into memory (a NIC's DMA, or the kernel's write into a socket buffer
    /// for the baseline), averaged over the run.
    pub payload_copies: f64,
    /// Packets delivered during the measurement.
    pub packets: u64,
    /// Frames the source produced that no consumer got (ring full, no free
    /// frame, queue full), during the measurement.
    pub dropped: u64,
    /// Length of the measurement, seconds.
    pub seconds: f64,
    /// This row's rate divided by the baseline's for the same frame size and
    /// consumers (`kernel-recvmmsg` for `bench delivery`, the bare reader
    /// for `bench af_packet`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_baseline: Option<f64>,
    /// Frames the kernel dropped for a full socket buffer
    /// (`PACKET_STATISTICS`), for cases that read a real interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_drops: Option<u64>,
    /// One-minute load average when the case finished.
    pub load_avg: f64,
    /// Anything worth knowing about this case.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl Row {
    /// A row from a count over a duration.
    pub fn measured(
        case: impl Into<String>,
        frame_bytes: usize,
        clients: usize,
        packets: u64,
        dropped: u64,
        elapsed: Duration,
        payload_copies: f64,
    ) -> Row {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let pps = packets as f64 / secs;
        Row {
            case: case.into(),
            frame_bytes,
            clients,
            mpps: pps / 1e6,
            gbps: pps * frame_bytes as f64 * 8.0 / 1e9,
            payload_copies,
            packets,
            dropped,
            seconds: secs,
            vs_baseline: None,
            kernel_drops: None,
            load_avg: load_average(),
            note: String::new(),
        }
    }

    /// One JSON object (no newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// One human-readable line.
    pub fn to_text(&self) -> String {
        let ratio = self
            .vs_baseline
            .map_or(String::new(), |r| format!("  ×{r:.2} vs baseline"));
        let kdrops = self
            .kernel_drops
            .map_or(String::new(), |d| format!("  kernel drops {d}"));
        let note = if self.note.is_empty() {
            String::new()
        } else {
            format!("  ({})", self.note)
        };
        format!(
            "{:<26} {:>5} B  {} client(s)  {:>7.2} Mpps  {:>6.2} Gbit/s  copies/pkt {:.2}  dropped {:>10}{kdrops}  load {:.2}{ratio}{note}",
            self.case,
            self.frame_bytes,
            self.clients,
            self.mpps,
            self.gbps,
            self.payload_copies,
            self.dropped,
            self.load_avg,
        )
    }
}

/// Formats rows as the bench command prints them: JSON lines or text.
/// The library hands the lines to the caller's sink (the binary prints
/// them on stdout as they come); it writes nothing itself.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// One JSON object per line.
    pub json: bool,
}

impl Printer {
    /// The output line of one row.
    pub fn line(&self, row: &Row) -> String {
        if self.json {
            row.to_json()
        } else {
            row.to_text()
        }
    }
}

/// Where a bench's output lines go, one call per line, as they are
/// measured.
pub type Output<'a> = &'a mut dyn FnMut(&str);

/// The one-minute load average (0 when `/proc/loadavg` is unreadable).
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A counter one thread bumps per batch and the measuring thread reads.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    /// Payload copies made by this consumer.
    pub copies: AtomicU64,
    /// Packets that were not what the consumer expected (wrong port).
    pub wrong: AtomicU64,
}

impl Tally {
    pub fn add(&self, packets: u64, bytes: u64, copies: u64, wrong: u64) {
        // Relaxed: counters read for a rate; no ordering with other data.
        self.packets.fetch_add(packets, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.copies.fetch_add(copies, Ordering::Relaxed);
        self.wrong.fetch_add(wrong, Ordering::Relaxed);
    }

    pub fn read(&self) -> [u64; 4] {
        [
            self.packets.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.copies.load(Ordering::Relaxed),
            self.wrong.load(Ordering::Relaxed),
        ]
    }
}

/// Sums the tallies: `[packets, bytes, copies, wrong]`.
pub(crate) fn sum(tallies: &[std::sync::Arc<Tally>]) -> [u64; 4] {
    tallies.iter().fold([0; 4], |mut acc, t| {
        for (a, v) in acc.iter_mut().zip(t.read()) {
            *a += v;
        }
        acc
    })
}

/// `b - a`, element-wise.
pub(crate) fn delta(a: [u64; 4], b: [u64; 4]) -> [u64; 4] {
    let mut d = [0; 4];
    for i in 0..4 {
        d[i] = b[i].saturating_sub(a[i]);
    }
    d
}

/// Measures the consumers' tallies over `measure` after a warm-up; returns
/// `[packets, bytes, copies, wrong]` and the elapsed time.
pub(crate) fn measure(
    tallies: &[std::sync::Arc<Tally>],
    measure: Duration,
    dropped: &dyn Fn() -> u64,
) -> ([u64; 4], u64, Duration) {
    std::thread::sleep(measure / 10 + Duration::from_millis(20));
    let (t0, a, d0) = (Instant::now(), sum(tallies), dropped());
    std::thread::sleep(measure);
    let (b, d1) = (sum(tallies), dropped());
    (delta(a, b), d1.saturating_sub(d0), t0.elapsed())
}

/// The UDP destination port client `i` filters on.
pub fn client_port(i: usize) -> u16 {
    10_000 + u16::try_from(i).unwrap_or(u16::MAX - 10_000)
}

/// A bench failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error("cannot set up the {what}: {source}")]
    Setup {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{case}: consumers received {wrong} packets meant for someone else (a demultiplexing bug; please report)")]
    Misdelivered { case: String, wrong: u64 },
}

pub(crate) fn setup(
    what: &'static str,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> BenchError {
    move |source| BenchError::Setup { what, source }
}
