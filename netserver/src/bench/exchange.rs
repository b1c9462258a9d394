//! `netserver bench exchange`: what one packet's change of hands costs, by
//! the index exchange the server uses against the two ways it could have
//! been done — copying the payload, or really moving the page (DESIGN.md,
//! "Why ownership moves by index").
//!
//! Each case runs `--packets` packets through one client region, measured
//! as a whole after a warm-up of a tenth as many:
//!
//! - `index_swap`: the server takes a frame the client posted on the fill
//!   ring and puts its index on the rx ring (published every 64, as the data
//!   path does per batch); the client takes the descriptor, reads the
//!   frame's first byte and posts the frame back. What changes hands is the
//!   right to a frame index; the payload is not touched (the NIC, or the
//!   kernel's receive, wrote it once in place).
//! - `copy`: the same, plus the copy path's one copy of `--frame-bytes`
//!   bytes from a server buffer into the client's frame.
//! - `remap`: the page itself moves: a page of a memfd is mapped over a slot
//!   of the client's address space (`MAP_FIXED`), touched (the fault that
//!   makes it present), and unmapped again (`sys::remap`).
//! - `remap_two_threads`: `remap` while another thread of the process runs
//!   on another CPU, so that each unmap must also remove the translation
//!   from that CPU's TLB (a shootdown), as it would in a client whose other
//!   threads are running. Needs two CPUs.
//!
//! Both ends run on the calling thread: this is the cost of the mechanism,
//! not of cross-core traffic (that is `bench delivery`).

use std::hint::black_box;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use exchange::{Geometry, Received, RxMeta, ServerConfig, ServerRegion};
use serde::Serialize;

use super::{load_average, setup, BenchError, Output};
use crate::sys::cpu;
use crate::sys::mem::page_size;
use crate::sys::remap::RemapWindow;

/// Every case, in the order they run.
pub const CASES: [&str; 4] = ["index_swap", "copy", "remap", "remap_two_threads"];

/// Descriptors published at once, as the data path publishes per batch.
const BATCH: usize = 64;

/// `netserver bench exchange` options.
#[derive(Args, Debug, Clone)]
pub struct ExchangeArgs {
    /// One JSON object per line and case.
    #[arg(long)]
    pub json: bool,
    /// Packets per case.
    #[arg(long, default_value_t = 200_000, value_name = "N")]
    pub packets: u64,
    /// Bytes the copy path copies per packet.
    #[arg(long, default_value_t = 1500, value_name = "BYTES")]
    pub frame_bytes: usize,
    /// Runs of every case (cases alternate within a run).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub runs: usize,
}

impl ExchangeArgs {
    /// The defaults.
    pub fn new() -> ExchangeArgs {
        ExchangeArgs {
            json: false,
            packets: 200_000,
            frame_bytes: 1500,
            runs: 1,
        }
    }
}

impl Default for ExchangeArgs {
    fn default() -> Self {
        Self::new()
    }
}

/// One measured case.
#[derive(Debug, Clone, Serialize)]
pub struct ExchangeRow {
    /// One of [`CASES`].
    pub case: &'static str,
    /// Bytes copied per packet by `copy` (the others copy none).
    pub frame_bytes: usize,
    /// Packets measured.
    pub packets: u64,
    /// Nanoseconds per packet, both ends together.
    pub ns_per_packet: f64,
    /// This case's time per packet over `index_swap`'s in the same run.
    pub vs_index_swap: f64,
    /// One-minute load average when the case finished.
    pub load_avg: f64,
    /// Anything worth knowing about this case.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl ExchangeRow {
    fn line(&self, json: bool) -> String {
        if json {
            return serde_json::to_string(self)
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
        }
        let note = if self.note.is_empty() {
            String::new()
        } else {
            format!("  ({})", self.note)
        };
        format!(
            "{:<18} {:>9.1} ns/packet  ×{:<7.2} vs index_swap  load {:.2}{note}",
            self.case, self.ns_per_packet, self.vs_index_swap, self.load_avg
        )
    }
}

/// Runs every case `--runs` times, handing each row's line to `out`.
pub fn run(args: &ExchangeArgs, out: Output<'_>) -> Result<Vec<ExchangeRow>, BenchError> {
    if args.packets == 0 {
        return Err(BenchError::Usage("--packets: at least 1".into()));
    }
    let frame_size = page_size();
    if args.frame_bytes == 0 || args.frame_bytes > frame_size {
        return Err(BenchError::Usage(format!(
            "--frame-bytes {}: use 1..={frame_size} (one page frame)",
            args.frame_bytes
        )));
    }
    let mut rows = Vec::new();
    for _ in 0..args.runs.max(1) {
        let swap = time_per_packet(args.packets, |n| index_swap(n, None))?;
        let payload = vec![0x5a_u8; args.frame_bytes];
        let copy = time_per_packet(args.packets, |n| index_swap(n, Some(&payload)))?;
        let remapped = time_per_packet(args.packets, |n| remap(n, false))?;
        let shootdown = time_per_packet(args.packets, |n| remap(n, true));
        let mut emit = |case, frame_bytes, ns: f64, note: String| {
            let row = ExchangeRow {
                case,
                frame_bytes,
                packets: args.packets,
                ns_per_packet: ns,
                vs_index_swap: ns / swap.max(1e-9),
                load_avg: load_average(),
                note,
            };
            out(&row.line(args.json));
            rows.push(row);
        };
        emit("index_swap", 0, swap, String::new());
        emit(
            "copy",
            args.frame_bytes,
            copy,
            format!("{} B copied per packet", args.frame_bytes),
        );
        emit("remap", 0, remapped, "one thread".into());
        match shootdown {
            Ok(ns) => emit(
                "remap_two_threads",
                0,
                ns,
                "a second thread spins on another CPU".into(),
            ),
            Err(BenchError::Usage(why)) => emit("remap_two_threads", 0, f64::NAN, why),
            Err(e) => return Err(e),
        }
    }
    Ok(rows)
}

/// Runs `case` for a tenth of `packets` (warm-up), then for `packets`, and
/// returns the nanoseconds per packet of the second.
fn time_per_packet(
    packets: u64,
    mut case: impl FnMut(u64) -> Result<Duration, BenchError>,
) -> Result<f64, BenchError> {
    case((packets / 10).max(1))?;
    Ok(case(packets)?.as_nanos() as f64 / packets as f64)
}

/// `n` packets through the index exchange (`copy`: with the copy path's
/// write of `copy` into each frame). Returns the time they took.
fn index_swap(n: u64, copy: Option<&[u8]>) -> Result<Duration, BenchError> {
    let geometry = Geometry {
        rx_entries: 256,
        fill_entries: 256,
        small_slot_count: 256,
        frame_count: 256,
        ..Geometry::default()
    };
    let (mut client, mut frames, mut server) =
        ServerRegion::pair(geometry, &ServerConfig::default())
            .map_err(|e| setup("exchange region")(Box::new(e)))?;
    let fail = |what: &'static str| move |e: exchange::ClientError| setup(what)(Box::new(e));
    client.fill(&mut frames).map_err(fail("fill ring"))?;
    let meta = RxMeta {
        tag: 1,
        ..Default::default()
    };
    let len = copy.map_or(64, <[u8]>::len);
    let mut small = [0u8; 128];
    let mut touched = 0u64;
    let mut done = 0u64;
    let t0 = Instant::now();
    while done < n {
        let batch = BATCH.min((n - done) as usize);
        server
            .refill()
            .map_err(|e| setup("fill ring")(Box::new(e)))?;
        for _ in 0..batch {
            let frame = server
                .take_frame()
                .map_err(|e| setup("free frame")(Box::new(e)))?;
            if let Some(bytes) = copy {
                server
                    .write_frame(&frame, 0, bytes)
                    .map_err(|e| setup("copy")(Box::new(e)))?;
            }
            server
                .deliver_frame(frame, 0, len, &meta)
                .map_err(|e| setup("rx ring")(Box::new(e)))?;
        }
        server
            .publish()
            .map_err(|e| setup("publish")(Box::new(e)))?;
        for _ in 0..batch {
            match client
                .fetch(&mut small, None, Some(Duration::ZERO))
                .map_err(fail("fetch"))?
            {
                Some(Received::Large { frame, offset, .. }) => {
                    touched += u64::from(client.frame(&frame)[offset]);
                    frames.push(frame);
                }
                other => {
                    return Err(setup("fetch")(
                        format!("expected a large frame, got {other:?}").into(),
                    ))
                }
            }
        }
        client.fill(&mut frames).map_err(fail("fill ring"))?;
        done += batch as u64;
    }
    let elapsed = t0.elapsed();
    black_box(touched);
    Ok(elapsed)
}

/// A memfd of `pages` pages, every page written once (present in memory),
/// as a client region's frames are.
fn memfd_pages(pages: usize) -> Result<OwnedFd, BenchError> {
    let flags = rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING;
    let fd = rustix::fs::memfd_create("netserver-bench-remap", flags)
        .map_err(|e| setup("memfd")(Box::new(std::io::Error::from(e))))?;
    let page = vec![0x5a_u8; page_size()];
    for i in 0..pages {
        rustix::io::pwrite(&fd, &page, (i * page_size()) as u64)
            .map_err(|e| setup("memfd")(Box::new(std::io::Error::from(e))))?;
    }
    Ok(fd)
}

/// `n` packets by remapping: each maps the next of 256 memfd pages over the
/// next of 64 window slots, touches it and unmaps it. `other_thread`: on a
/// thread pinned to one CPU while a second thread of this process spins on
/// another (the caller's own affinity is left alone). Returns the time they
/// took.
fn remap(n: u64, other_thread: bool) -> Result<Duration, BenchError> {
    if !other_thread {
        return remap_here(n);
    }
    let allowed = cpu::allowed_cpus().map_err(|e| setup("CPU set")(Box::new(e)))?;
    let [here, there, ..] = allowed[..] else {
        return Err(BenchError::Usage(format!(
            "skipped: needs two CPUs, this process may use {allowed:?}"
        )));
    };
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            if cpu::pin_current_thread(there).is_ok() {
                // Relaxed: a stop flag; nothing else rides on it.
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            }
        });
        let measured = s.spawn(|| {
            cpu::pin_current_thread(here).map_err(|e| setup("pinning")(Box::new(e)))?;
            // Let the spinner reach its CPU first.
            std::thread::sleep(Duration::from_millis(20));
            remap_here(n)
        });
        let r = measured
            .join()
            .unwrap_or_else(|_| Err(setup("remap")("the measuring thread panicked".into())));
        stop.store(true, Ordering::Relaxed);
        r
    })
}

/// [`remap`] on the calling thread.
fn remap_here(n: u64) -> Result<Duration, BenchError> {
    const PAGES: usize = 256;
    let mut window = RemapWindow::reserve(64, memfd_pages(PAGES)?)
        .map_err(|e| setup("remap window")(Box::new(e)))?;
    let mut touched = 0u64;
    let t0 = Instant::now();
    for i in 0..n as usize {
        let slot = i % window.slots();
        touched += u64::from(
            window
                .flip_in(slot, i % PAGES)
                .map_err(|e| setup("remap")(Box::new(e)))?,
        );
        window
            .flip_out(slot)
            .map_err(|e| setup("unmap")(Box::new(e)))?;
    }
    let elapsed = t0.elapsed();
    black_box(touched);
    Ok(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_runs_and_prints_its_fields() {
        let args = ExchangeArgs {
            packets: 2_000,
            json: true,
            ..ExchangeArgs::new()
        };
        let mut lines = Vec::new();
        let rows = run(&args, &mut |l| lines.push(l.to_string())).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.case).collect::<Vec<_>>(),
            CASES.to_vec()
        );
        for (row, line) in rows.iter().zip(&lines) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["case"], row.case);
            assert!(v["ns_per_packet"].is_number() || row.ns_per_packet.is_nan());
        }
        assert!(rows[0].ns_per_packet > 0.0);
        assert_eq!(rows[0].vs_index_swap, 1.0);
    }

    #[test]
    fn bad_options_are_usage_errors() {
        let zero = ExchangeArgs {
            packets: 0,
            ..ExchangeArgs::new()
        };
        assert!(matches!(run(&zero, &mut |_| {}), Err(BenchError::Usage(_))));
        let huge = ExchangeArgs {
            frame_bytes: 1 << 20,
            ..ExchangeArgs::new()
        };
        let err = run(&huge, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("--frame-bytes"), "{err}");
    }
}
