//! `netserver bench delivery`: how fast the server delivers generated frames
//! to clients, with no kernel in the path.
//!
//! Every case runs the same generator ([`Generator::udp`], one frame per
//! client port, round-robin) as the server's backend, and one thread per
//! client; the rate is what the clients received, measured after a warm-up.
//! There is one server: every case runs the server's own data-path thread
//! ([`DataPathHandle`]: classify with the installed filters' trie, look the
//! filter up, place through [`crate::place`], spill or drop with the
//! server's accounting). No case has a server loop of its own.
//!
//! - `shared`: filters attached to exchange regions, as `attachRegion` does
//!   it ([`Command::Attach`]). The generator is a peek-then-place backend
//!   ([`Backend::recv_placed`]): a frame longer than the small threshold is
//!   written once by the backend straight into the frame the placement took
//!   from the client's fill ring (zero copy, counted `zero_copy`); a small
//!   frame is written into the next small slot. Each client thread drains
//!   its rx ring with [`ClientRegion::recv_batch_in_place`] (small slots
//!   read in place), checks the port of every packet and returns the frames on the fill ring, sleeping on its eventfd
//!   when idle. The generator is lossy, like a NIC: the data path decides
//!   what it spills or drops. Sizes are the server's defaults
//!   ([`Config::new`]): frame size, overflow pool, per-filter overflow.
//!   `shared-frames` is the same with small threshold 0: small frames go
//!   into frames too, so nothing is copied anywhere.
//! - `emulated`: the same data path with emulated frame spaces, consumed
//!   with [`Exchange::fetch_batch`] by each client thread, which copies the
//!   bytes out as the RPC reply would (the RPC transport is not measured).
//! - `kernel-recvmmsg`: the same frames' UDP payloads over loopback
//!   ([`super::kernel_baseline`]).
//!
//! [`Backend::recv_placed`]: crate::backend::Backend::recv_placed

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use exchange::{ClientRegion, Frame, Geometry, Packet, ServerConfig, ServerRegion};
use filters::{FilterSet, Limits};

use super::{client_port, setup, BenchError, Output, Printer, Row, Tally};
use crate::backend::generator::{udp_dst_port, Generator};
use crate::backend::Wake;
use crate::config::Config;
use crate::datapath::{Command, DataPathHandle};
use crate::exchange::{Exchange, Location};
use crate::filter::{Filter, FilterGeometry, Mode, SharedPath};
use crate::place::{OverflowPool, RegionSpace};
use crate::stats::{Counters, Snapshot};

/// Empty polls of its rx ring after which a client sleeps on its eventfd.
/// Few: with four clients and the data path on two cores, a client that
/// stays runnable (spinning or yielding) takes CPU time from the data path
/// that feeds it; with 32 polls the 64 B × 4 clients case spent half its
/// client time in `sched_yield` and reached 6–9.5 Mpps, with 8 it reached
/// 10.5–11.5. Asleep, a client lets its ring fill and drains it in larger
/// batches; the wake-up costs the data path one eventfd write.
pub const IDLE_POLLS: u32 = 8;

/// Of those, the first ones pause in the CPU (`spin_loop`) instead of
/// yielding: a yield is a system call and, with more threads than cores, a
/// context switch; the data path publishes a batch every few µs, so a short
/// spin usually finds it without either.
pub const SPIN_POLLS: u32 = 4;

/// `spin_loop` pauses between two spinning polls (a few µs in all: long
/// enough for the next batch to build up, short enough not to hold the core
/// from the data path for long).
pub const SPIN_PAUSES: u32 = 64;

/// Every case `--cases` accepts, in the order they run.
pub const CASES: [&str; 4] = ["shared", "shared-frames", "emulated", "kernel"];

/// `netserver bench delivery` options.
#[derive(Args, Debug, Clone)]
pub struct DeliveryArgs {
    /// One JSON object per line and case.
    #[arg(long)]
    pub json: bool,
    /// Seconds measured per case (after a warm-up of a tenth of that).
    #[arg(long, default_value_t = 2.0, value_name = "S")]
    pub seconds: f64,
    /// Frame sizes, bytes (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 1500], value_name = "BYTES")]
    pub frames: Vec<usize>,
    /// Client counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 4], value_name = "N")]
    pub clients: Vec<usize>,
    /// Cases to run (comma-separated): shared, shared-frames, emulated, kernel.
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = CASES.map(String::from),
        value_name = "CASE"
    )]
    pub cases: Vec<String>,
    /// Runs of each case (each printed; spread = min..max).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub runs: usize,
    /// Frames of at most this many bytes go to small slots (`shared`).
    #[arg(long, default_value_t = 128, value_name = "BYTES")]
    pub small_threshold: u32,
    /// Entries in each client's rx and fill rings (power of two).
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub ring: u32,
    /// Shared cases: clients spin on their rx ring instead of sleeping on
    /// the eventfd when it is empty.
    #[arg(long)]
    pub busy_poll: bool,
    /// Shared cases: frames the server's overflow pool (and each filter's
    /// share of it) holds; default the server's (`serve --overflow-limit`).
    /// 0: no spilling, a frame its client has no room for is dropped.
    #[arg(long, value_name = "FRAMES")]
    pub overflow: Option<u32>,
    /// Shared cases: leave the threads where the scheduler puts them
    /// (default: the data path pinned to the last CPU, the clients to the
    /// others, see [`Placement`]).
    #[arg(long)]
    pub no_pin: bool,
}

/// Options of the shared cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedOpts {
    /// Frames of at most this many bytes go to small slots (0: none).
    pub small_threshold: u32,
    /// Entries in each client's rx and fill rings.
    pub ring: u32,
    /// See [`DeliveryArgs::busy_poll`].
    pub busy_poll: bool,
    /// Pin the threads ([`Placement::pinned`]) or not.
    pub pin: bool,
}

/// Which CPUs the shared cases' threads run on.
///
/// Pinned, the data path runs alone on the last CPU this process may use
/// and the clients share the others, as a DPDK or AF_XDP deployment pins
/// its pollers. Unpinned on this 2-core VM, about one run in three found
/// the data path and a client on the same core (half the rate, the other
/// core idle), which made the spread of the figures mostly the
/// scheduler's.
#[derive(Debug, Clone, Default)]
pub(super) struct Placement {
    datapath: Option<usize>,
    clients: Vec<usize>,
}

impl Placement {
    /// The data path on the last allowed CPU, the clients on the others;
    /// nothing pinned with a single CPU (or when `pin` is false).
    pub fn of(pin: bool) -> Placement {
        let cpus = crate::sys::cpu::allowed_cpus().unwrap_or_default();
        match cpus.split_last() {
            Some((&last, others)) if pin && !others.is_empty() => Placement {
                datapath: Some(last),
                clients: others.to_vec(),
            },
            _ => Placement::default(),
        }
    }

    /// The data path's CPU, if pinned.
    pub fn datapath(&self) -> Option<usize> {
        self.datapath
    }

    /// The CPU of client `i`, if pinned.
    pub fn client(&self, i: usize) -> Option<usize> {
        (!self.clients.is_empty()).then(|| self.clients[i % self.clients.len()])
    }
}

/// Pins the calling bench thread, or says why it could not.
pub(super) fn pin_bench_thread(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        if let Err(e) = crate::sys::cpu::pin_current_thread(cpu) {
            tracing::warn!(cpu, error = %e, "bench thread not pinned");
        }
    }
}

/// See [`DeliveryArgs::overflow`]; `None`: the server's default.
fn overflow_or_default(overflow: Option<u32>) -> u32 {
    overflow.unwrap_or(Config::new(Default::default()).overflow_limit)
}

impl Default for DeliveryArgs {
    fn default() -> Self {
        DeliveryArgs {
            json: false,
            seconds: 2.0,
            frames: vec![64, 1500],
            clients: vec![1, 4],
            cases: CASES.map(String::from).to_vec(),
            runs: 1,
            small_threshold: 128,
            ring: 512,
            busy_poll: false,
            overflow: None,
            no_pin: false,
        }
    }
}

/// Runs every selected case, handing each row's line to `out` as it is
/// measured; returns the rows.
pub fn run(args: &DeliveryArgs, out: Output<'_>) -> Result<Vec<Row>, BenchError> {
    for c in &args.cases {
        if !CASES.contains(&c.as_str()) {
            return Err(BenchError::Usage(format!(
                "unknown case {c:?}: use {}",
                CASES.join(", ")
            )));
        }
    }
    if !args.ring.is_power_of_two() || args.ring < 64 {
        return Err(BenchError::Usage(format!(
            "--ring {}: use a power of two ≥ 64",
            args.ring
        )));
    }
    let printer = Printer { json: args.json };
    let measure = Duration::from_secs_f64(args.seconds.max(0.001));
    let mut rows = Vec::new();
    let want = |c: &str| args.cases.iter().any(|x| x == c);
    for &frame_bytes in &args.frames {
        for &clients in &args.clients {
            let clients = clients.max(1);
            let mut baseline = None;
            if want("kernel") {
                for _ in 0..args.runs {
                    let row = super::kernel_baseline::run(frame_bytes, clients, measure)?;
                    out(&printer.line(&row));
                    baseline = Some(baseline.map_or(row.mpps, |b: f64| b.max(row.mpps)));
                    rows.push(row);
                }
            }
            let mut emit = |mut row: Row| {
                row.vs_baseline = baseline.map(|b| row.mpps / b.max(1e-9));
                out(&printer.line(&row));
                rows.push(row);
            };
            let opts = SharedOpts {
                small_threshold: args.small_threshold,
                ring: args.ring,
                busy_poll: args.busy_poll,
                pin: !args.no_pin,
            };
            for _ in 0..args.runs {
                let overflow = overflow_or_default(args.overflow);
                if want("shared") {
                    emit(shared(
                        "shared",
                        frame_bytes,
                        clients,
                        measure,
                        opts,
                        overflow,
                    )?);
                }
                if want("shared-frames") {
                    let opts = SharedOpts {
                        small_threshold: 0,
                        ..opts
                    };
                    emit(shared(
                        "shared-frames",
                        frame_bytes,
                        clients,
                        measure,
                        opts,
                        overflow,
                    )?);
                }
                if want("emulated") {
                    emit(emulated(frame_bytes, clients, measure, args.ring)?);
                }
            }
        }
    }
    Ok(rows)
}

/// The filters `udp dst port 10000+i`, one per client, tags `1..=clients`.
fn filter_programs(clients: usize) -> Result<Vec<(String, filters::Program)>, BenchError> {
    (0..clients)
        .map(|i| {
            let expr = format!("udp dst port {}", client_port(i));
            let program = filters::compile(&expr).map_err(|e| setup("filters")(Box::new(e)))?;
            Ok((expr, program))
        })
        .collect()
}

/// The shared-mode cases (see the module docs): the server's data path with
/// one filter per client attached to the client's exchange region.
/// `small_threshold` 0 sends every frame into a client frame; `overflow`
/// is the overflow pool's size (0: no spilling).
pub fn shared(
    case: &str,
    frame_bytes: usize,
    clients: usize,
    measure: Duration,
    opts: SharedOpts,
    overflow: u32,
) -> Result<Row, BenchError> {
    let ports: Vec<u16> = (0..clients).map(client_port).collect();
    // Peek as far as the small threshold: longer frames come with a body the
    // placement writes straight into the client's frame.
    let backend = Generator::udp(frame_bytes, &ports).with_peek_len(opts.small_threshold as usize);
    let rig = DataPathRig::start_with_overflow(Box::new(backend), clients, opts, overflow)?;
    rig.wait_attached(Duration::from_secs(5))?;
    let global = rig.global.clone();
    // The server's counters at the start and the end of the window.
    let window: Cell<Option<[Snapshot; 2]>> = Cell::new(None);
    let dropped = || {
        let s = global.snapshot();
        let first = window.get().map_or(s, |[first, _]| first);
        window.set(Some([first, s]));
        s.dropped()
    };
    let (d, dropped, elapsed) = super::measure(&rig.tallies, measure, &dropped);
    rig.finish(case)?;
    let [packets, _bytes, client_copies, _wrong] = d;
    // Server-side copies in the window: large frames written from server
    // memory (spilled, or queued before the attach) rather than by the
    // backend into the client's frame, and small frames copied from the
    // overflow pool into their slot.
    let [a, b] = window.get().unwrap_or_default();
    let large_copied = b.copied.saturating_sub(a.copied);
    let small_spilled = b
        .delivered_small_spilled
        .saturating_sub(a.delivered_small_spilled);
    let server_copies = large_copied + small_spilled;
    let mut row = Row::measured(
        case,
        frame_bytes,
        clients,
        packets,
        dropped,
        elapsed,
        (client_copies + server_copies) as f64 / packets.max(1) as f64,
    );
    let end = global.snapshot();
    let drops: Vec<String> = end
        .drops_by_reason()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{}={n}", r.name()))
        .collect();
    row.note = format!(
        "netserver data path, lossy generator, overflow {overflow}; window: large zero_copy {} \
         copied {large_copied}, small copied from the overflow pool {small_spilled}; client \
         copies {client_copies}; run drops: {}",
        b.zero_copy.saturating_sub(a.zero_copy),
        if drops.is_empty() {
            "none".to_string()
        } else {
            drops.join(" ")
        },
    );
    Ok(row)
}

/// A client thread on its exchange region, as the client library drives
/// it: drain the rx ring in batches, check each packet's port, return the
/// frames on the fill ring; when idle, poll a little, then sleep on the
/// eventfd.
fn spawn_region_client(
    i: usize,
    mut client: ClientRegion,
    mut spare: Vec<Frame>,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    opts: SharedOpts,
    cpu: Option<usize>,
) -> Result<std::thread::JoinHandle<Result<(), exchange::ClientError>>, BenchError> {
    let port = client_port(i);
    let SharedOpts {
        ring, busy_poll, ..
    } = opts;
    std::thread::Builder::new()
        .name(format!("bench-client-{i}"))
        .spawn(move || -> Result<(), exchange::ClientError> {
            pin_bench_thread(cpu);
            let mut got: Vec<(Frame, usize, usize)> = Vec::with_capacity(ring as usize);
            let mut idle = 0u32;
            let mut copies_counted = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (mut packets, mut bytes, mut wrong) = (0u64, 0u64, 0u64);
                let n = client.recv_batch_in_place(ring as usize, |p| match p {
                    Packet::Small { data, .. } => {
                        // Read in place, in the slot: no copy.
                        packets += 1;
                        bytes += data.len() as u64;
                        wrong += u64::from(udp_dst_port(data) != Some(port));
                    }
                    Packet::Large {
                        frame, offset, len, ..
                    } => got.push((frame, offset, len)),
                })?;
                for (frame, offset, len) in got.drain(..) {
                    let b = client.frame(&frame);
                    wrong += u64::from(udp_dst_port(&b[offset..offset + len]) != Some(port));
                    packets += 1;
                    bytes += len as u64;
                    spare.push(frame);
                }
                if !spare.is_empty() {
                    client.fill(&mut spare)?;
                }
                // What the client library copied (none, read in place):
                // measured, not assumed.
                let copied = client.small_copies();
                tally.add(packets, bytes, copied - copies_counted, wrong);
                copies_counted = copied;
                // Idle: poll a little (yielding the core) before
                // sleeping on the eventfd, as NAPI does: a sleep and a
                // wake-up cost the server an eventfd write and both sides
                // two context switches.
                if n == 0 {
                    idle += 1;
                    if idle < SPIN_POLLS {
                        (0..SPIN_PAUSES).for_each(|_| std::hint::spin_loop());
                    } else if busy_poll || idle < IDLE_POLLS {
                        std::thread::yield_now();
                    } else {
                        client.wait_rx(Some(Duration::from_millis(5)))?;
                        idle = 0;
                    }
                } else {
                    idle = 0;
                }
            }
            Ok(())
        })
        .map_err(|e| setup("client thread")(Box::new(e)))
}

/// Makes a client region of `geometry` with every frame posted on the fill
/// ring, passes it like the real attach does (`SCM_RIGHTS`), and attaches
/// the server side.
fn region_pair(geometry: Geometry) -> Result<(ClientRegion, Vec<Frame>, ServerRegion), BenchError> {
    let (mut client, mut frames, server) = ServerRegion::pair(geometry, &ServerConfig::default())
        .map_err(|e| setup("exchange region")(Box::new(e)))?;
    client
        .fill(&mut frames)
        .map_err(|e| setup("fill ring")(Box::new(e)))?;
    Ok((client, frames, server))
}

fn region_geometry(ring: u32, frame_size: u32) -> Geometry {
    Geometry {
        rx_entries: ring,
        fill_entries: ring,
        small_slot_count: ring,
        small_slot_size: 128,
        frame_count: ring * 2,
        frame_size,
        ..Geometry::default()
    }
}

pub(super) struct DataPathRig {
    dp: DataPathHandle,
    filters: Vec<Arc<Filter>>,
    /// The server's counters.
    pub global: Arc<Counters>,
    /// One per client: what it received.
    pub tallies: Vec<Arc<Tally>>,
    stop: Arc<AtomicBool>,
    consumers: Vec<std::thread::JoinHandle<Result<(), exchange::ClientError>>>,
}

impl DataPathRig {
    /// Starts the data path on `backend` with `clients` attached clients.
    /// The server's default overflow pool and per-filter overflow limit:
    /// shared mode spills there when a client's rx ring is full or it
    /// posted no frame.
    pub fn start(
        backend: Box<dyn crate::backend::Backend>,
        clients: usize,
        opts: SharedOpts,
    ) -> Result<DataPathRig, BenchError> {
        let overflow = Config::new(Default::default()).overflow_limit;
        Self::start_with_overflow(backend, clients, opts, overflow)
    }

    /// [`start`](Self::start) with an overflow pool (and per-filter
    /// overflow limit) of `overflow` frames; 0 turns spilling off (a frame
    /// its client has no room for is dropped, as AF_XDP or netmap do).
    pub fn start_with_overflow(
        backend: Box<dyn crate::backend::Backend>,
        clients: usize,
        opts: SharedOpts,
        overflow: u32,
    ) -> Result<DataPathRig, BenchError> {
        let config = Config::new(Default::default());
        let frame_size = config.frame_size;
        let overflow = overflow as usize;
        let pool = Arc::new(OverflowPool::new(
            overflow,
            frame_size as usize,
            config.small_slot_size() as usize,
        ));
        let global = Arc::new(Counters::default());
        let placement = Placement::of(opts.pin);
        let dp = DataPathHandle::spawn_on(
            backend,
            pool,
            global.clone(),
            Wake::default(),
            placement.datapath,
        )
        .map_err(|e| setup("data path")(Box::new(e)))?;
        let geometry = FilterGeometry {
            queue_limit: opts.ring,
            frames: opts.ring * 2,
            small_slots: opts.ring,
            frame_size,
            small_threshold: opts.small_threshold,
        };
        let mut rig = DataPathRig {
            dp,
            filters: Vec::new(),
            global,
            tallies: (0..clients).map(|_| Arc::default()).collect(),
            stop: Arc::new(AtomicBool::new(false)),
            consumers: Vec::new(),
        };
        let mut set = FilterSet::new(Limits::default());
        for (i, (expr, program)) in filter_programs(clients)?.into_iter().enumerate() {
            let tag = i as u64 + 1;
            let (filter, _pages) = Filter::new(tag, Mode::Exclusive, expr, geometry, overflow);
            let filter = Arc::new(filter);
            let classifier = set
                .insert(tag, program)
                .map_err(|e| setup("filters")(Box::new(e)))?;
            let (client, spare, server) = region_pair(region_geometry(opts.ring, frame_size))?;
            let space =
                RegionSpace::new(server, opts.small_threshold as usize, frame_size as usize)
                    .map_err(|e| setup("region space")(Box::new(e)))?;
            if !filter.begin_attach() {
                return Err(setup("attach")("filter not in emulated mode".into()));
            }
            // Install and attach back to back, as `nsctl install --mode
            // shared` does; frames matched in between wait in the filter's
            // queue and go first when the region arrives.
            rig.dp.send(Command::Install {
                filter: filter.clone(),
                classifier,
            });
            rig.dp.send(Command::Attach {
                tag,
                shared: Box::new(SharedPath::new(space, None)),
            });
            rig.filters.push(filter);
            rig.consumers.push(spawn_region_client(
                i,
                client,
                spare,
                rig.stop.clone(),
                rig.tallies[i].clone(),
                opts,
                placement.client(i),
            )?);
        }
        Ok(rig)
    }

    /// Waits (up to `limit`) until the data path has attached every
    /// client's region: frames sent before that would find no filter.
    pub fn wait_attached(&self, limit: Duration) -> Result<(), BenchError> {
        let t0 = std::time::Instant::now();
        while !self
            .filters
            .iter()
            .all(|f| f.transport() == crate::filter::Transport::Shared)
        {
            if t0.elapsed() > limit {
                return Err(setup("attach")(
                    "the data path did not attach the regions".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Stops the clients and the data path (the backend is dropped on the
    /// data-path thread before this returns); `case` names a misdelivery.
    pub fn finish(mut self, case: &str) -> Result<(), BenchError> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.consumers.drain(..) {
            t.join()
                .map_err(|_| setup("client thread")("panicked".into()))?
                .map_err(|e| setup("client")(Box::new(e)))?;
        }
        self.dp.stop();
        let wrong = super::sum(&self.tallies)[3];
        if wrong > 0 {
            return Err(BenchError::Misdelivered {
                case: case.into(),
                wrong,
            });
        }
        Ok(())
    }
}

/// The emulated case (see the module docs).
pub fn emulated(
    frame_bytes: usize,
    clients: usize,
    measure: Duration,
    ring: u32,
) -> Result<Row, BenchError> {
    let ports: Vec<u16> = (0..clients).map(client_port).collect();
    let backend = Generator::udp(frame_bytes, &ports);
    let wake = Wake::default();
    // No overflow pool: frames a client has no room for are dropped at once
    // (spilling would add two copies per frame to a throughput test).
    let pool = Arc::new(OverflowPool::new(0, 2048, 128));
    let global = Arc::new(Counters::default());
    let mut dp = DataPathHandle::spawn(Box::new(backend), pool.clone(), global.clone(), wake)
        .map_err(|e| setup("data path")(Box::new(e)))?;
    let geometry = FilterGeometry {
        queue_limit: ring,
        frames: ring * 2,
        small_slots: ring,
        frame_size: 2048,
        small_threshold: 128,
    };
    let mut set = FilterSet::new(Limits::default());
    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Vec<Arc<Tally>> = (0..clients).map(|_| Arc::default()).collect();
    let mut consumers = Vec::new();
    for (i, (expr, program)) in filter_programs(clients)?.into_iter().enumerate() {
        let tag = i as u64 + 1;
        let (filter, pages) = Filter::new(tag, Mode::Exclusive, expr, geometry, 1);
        let filter = Arc::new(filter);
        let classifier = set
            .insert(tag, program)
            .map_err(|e| setup("filters")(Box::new(e)))?;
        dp.send(Command::Install {
            filter: filter.clone(),
            classifier,
        });
        let (stop, tally, port, pool, global) = (
            stop.clone(),
            tallies[i].clone(),
            client_port(i),
            pool.clone(),
            global.clone(),
        );
        let t = std::thread::Builder::new()
            .name(format!("bench-client-{i}"))
            .spawn(move || -> Result<(), crate::exchange::ExchangeError> {
                let mut ex = Exchange::new(filter, pages, pool, Some(global));
                let slots: Vec<u32> = (0..ring).collect();
                let mut mine: std::collections::VecDeque<u32> =
                    (ring..ring * 2).collect::<std::collections::VecDeque<u32>>();
                let mut give = Vec::with_capacity(ring as usize);
                let mut reply = vec![0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    give.clear();
                    give.extend(mine.iter().copied());
                    let (mut packets, mut bytes, mut wrong, mut large) = (0u64, 0u64, 0u64, 0usize);
                    let mut back = Vec::new();
                    let n = ex.fetch_batch(ring, &slots, &give, &mut |f| {
                        // The bytes the RPC reply would carry: one copy.
                        let len = f.data.len().min(reply.len());
                        reply[..len].copy_from_slice(&f.data[..len]);
                        wrong += u64::from(udp_dst_port(&reply[..len]) != Some(port));
                        packets += 1;
                        bytes += u64::from(f.len);
                        if let Location::Large { frame } = f.location {
                            large += 1;
                            back.push(frame);
                        }
                    })?;
                    mine.drain(..large);
                    mine.extend(back);
                    // Placement into the page or staging, and the reply.
                    tally.add(packets, bytes, 2 * packets, wrong);
                    if n == 0 {
                        std::thread::yield_now();
                    }
                }
                Ok(())
            })
            .map_err(|e| setup("client thread")(Box::new(e)))?;
        consumers.push(t);
    }
    let dropped = || global.snapshot().dropped();
    let (d, dropped, elapsed) = super::measure(&tallies, measure, &dropped);
    stop.store(true, Ordering::Relaxed);
    for t in consumers {
        t.join()
            .map_err(|_| setup("client thread")("panicked".into()))?
            .map_err(|e| setup("client")(Box::new(e)))?;
    }
    dp.stop();
    let [packets, _bytes, copies, wrong] = d;
    if wrong > 0 {
        return Err(BenchError::Misdelivered {
            case: "emulated".into(),
            wrong,
        });
    }
    let mut row = Row::measured(
        "emulated",
        frame_bytes,
        clients,
        packets,
        dropped,
        elapsed,
        copies as f64 / packets.max(1) as f64,
    );
    row.note =
        "in-process: data-path thread + Exchange::fetch_batch; RPC transport not measured".into();
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: SharedOpts = SharedOpts {
        small_threshold: 128,
        ring: 256,
        busy_poll: false,
        pin: true,
    };

    #[test]
    fn shared_case_runs_through_the_data_path_with_zero_copies_for_large_frames() {
        let row = shared("shared", 1500, 2, Duration::from_millis(50), OPTS, 1024).unwrap();
        assert!(row.packets > 0, "{row:?}");
        assert_eq!(row.case, "shared");
        // Only frames that waited in server memory (queued before the
        // attach, or spilled) are copied, once.
        assert!(row.payload_copies <= 1.0, "{row:?}");
        let row = shared("shared", 64, 1, Duration::from_millis(50), OPTS, 1024).unwrap();
        assert!(row.packets > 0, "{row:?}");
        // The client reads small slots in place.
        assert!(row.note.contains("client copies 0;"), "{row:?}");
        assert!(row.payload_copies <= 1.0, "{row:?}");
        let frames_only = SharedOpts {
            small_threshold: 0,
            busy_poll: true,
            pin: true,
            ..OPTS
        };
        let row = shared(
            "shared-frames",
            64,
            1,
            Duration::from_millis(50),
            frames_only,
            1024,
        )
        .unwrap();
        assert!(row.packets > 0, "{row:?}");
        // The client copies nothing; the server only frames that waited in
        // its memory (spilled while the client was behind).
        assert!(row.note.contains("client copies 0;"), "{row:?}");
        assert!(row.payload_copies <= 1.0, "{row:?}");
        // Without an overflow pool nothing waits in server memory: every
        // frame is written once, by the backend, into the client's frame.
        let row = shared(
            "shared-frames",
            1500,
            2,
            Duration::from_millis(50),
            frames_only,
            0,
        )
        .unwrap();
        assert!(row.packets > 0, "{row:?}");
        assert_eq!(row.payload_copies, 0.0, "{row:?}");
    }

    #[test]
    fn emulated_case_runs() {
        let row = emulated(64, 2, Duration::from_millis(50), 256).unwrap();
        assert!(row.packets > 0, "{row:?}");
        assert_eq!(row.case, "emulated");
    }

    #[test]
    fn json_rows_have_the_fields() {
        let args = DeliveryArgs {
            json: true,
            seconds: 0.02,
            frames: vec![64],
            clients: vec![1],
            ring: 256,
            ..DeliveryArgs::default()
        };
        let mut lines = Vec::new();
        let rows = run(&args, &mut |line| lines.push(line.to_string())).unwrap();
        assert_eq!(rows.len(), 4);
        assert!(rows[0].case.starts_with("kernel"));
        let cases: Vec<&str> = rows.iter().map(|r| r.case.as_str()).collect();
        assert_eq!(
            cases,
            ["kernel-recvmmsg", "shared", "shared-frames", "emulated"]
        );
        // One output line per row, as measured, each the row's JSON.
        assert_eq!(lines.len(), rows.len());
        for (r, line) in rows.iter().zip(&lines) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["case"], r.case.as_str());
            for k in [
                "case",
                "frame_bytes",
                "clients",
                "mpps",
                "gbps",
                "payload_copies",
            ] {
                assert!(v.get(k).is_some(), "{k} missing in {v}");
            }
        }
        assert!(rows[1..].iter().all(|r| r.vs_baseline.is_some()));
    }
}
