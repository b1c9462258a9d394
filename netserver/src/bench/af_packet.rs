//! `netserver bench af_packet`: the server's delivery rate over a real
//! interface against the bare AF_PACKET reader, on the same traffic.
//!
//! ```text
//!  netns …-p (peer)                      netns …-s (server)
//!  ┌──────────────────────┐              ┌───────────────────────────────┐
//!  │ sender thread        │── veth ─────▶│ bare reader (no demux)        │
//!  │ PacketRing::         │              │   or                          │
//!  │   send_batch         │              │ DataPath + AfPacket backend   │
//!  └──────────────────────┘              │   → exchange rings → clients  │
//!                                        └───────────────────────────────┘
//! ```
//!
//! With `--iface auto` the bench builds that veth pair in two fresh network
//! namespaces ([`crate::testing::netns::VethLab`]); with `--iface IFACE
//! --peer PEER` it uses an existing veth pair of this namespace.
//!
//! For each frame size the same sender sends `--count` copies of the
//! generator's prebuilt UDP frames ([`udp_frame`], one per client port,
//! round-robin) out of the peer end, once per case, and the cases read them:
//!
//! - `bare_af_packet`: [`bare_reader`] in batch mode (multishot receive into
//!   provided buffers), counting frames and nothing else; `bare_af_packet_peek`
//!   the same in peek mode (peek, then receive each frame into one buffer).
//! - `server_af_packet_batched`: the server's data path ([`DataPathHandle`]
//!   through [`DataPathRig`]) on the [`AfPacket`] backend restricted to
//!   [`Backend::recv_batch`] (copy once into the client's frame), delivering
//!   to shared-mode clients that consume their exchange rings.
//!   `server_af_packet_zero_copy`: the same with [`AfPacket::recv_placed`]
//!   (peek then place: the kernel writes each large frame into the client's
//!   frame), which is what the data path uses when a shared client is
//!   attached. It runs with the backend's backlog switch as `--backlog N`
//!   and `--backlog-bytes N` set it (defaults 64 frames, 16 KiB; see
//!   [`crate::backend::af_packet`]): frames it drains with the batched
//!   receive are counted `copied (backlog …)` in the row's note and in its
//!   `payload_copies`. `--backlog 0` measures pure peek then place.
//!
//! The sender is paced by a window: at most `--window` frames sent and not
//! yet consumed (read by the bare reader; received by the clients for the
//! server), so neither reader loses frames to a full socket buffer, and each
//! runs as fast as its consumer goes. The default (256) is below a client's
//! rx ring (512), so the data path never has to spill or drop either; a
//! window larger than what the server holds for a client (e.g. 1024) makes
//! it drop `queue_full` while the client catches up. `--window 0` sends as
//! fast as the sender can; then the kernel drops what the reader cannot keep
//! up with (`kernel_drops`, from `PACKET_STATISTICS`, reported in every row).
//!
//! Threads are pinned by default (`Placement`): the reader — the bare
//! reader, or the server's data path — alone on the last CPU, the sender and
//! the clients on the others, so that every case reads on a core of its own
//! as `serve --datapath-cpu` places a server; `--no-pin` leaves them all to
//! the scheduler.
//!
//! The rate is frames consumed over the time from the first send to the last
//! frame consumed, measured the same way for every case. Cases alternate
//! within each of `--runs` runs; a summary line per frame size gives the
//! medians and the ratio server / faster bare reader (the issue's target is
//! ≥ 90 %); `vs_baseline` in a server row is its rate over that bare median.
//!
//! [`DataPathHandle`]: crate::datapath::DataPathHandle
//! [`DataPathRig`]: super::delivery::DataPathRig
//! [`Backend::recv_batch`]: crate::backend::Backend::recv_batch

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;

use super::delivery::{pin_bench_thread, DataPathRig, Placement, SharedOpts};
use super::{client_port, setup, BenchError, Output, Printer, Row};
use crate::backend::af_packet::{
    bare_reader, AfPacket, AfPacketOptions, BareMode, FrameBody, PathCounters,
    DEFAULT_BACKLOG_BYTES, DEFAULT_BACKLOG_FRAMES,
};
use crate::backend::generator::udp_frame;
use crate::backend::{Backend, RxFrame};
use crate::sys::af_packet::{PacketSocket, PacketSocketConfig, PacketStats};
use crate::sys::uring::{PacketRing, UringConfig};
use crate::testing::netns::{self, VethLab};

/// Every case, in the order they run.
pub const CASES: [&str; 4] = ["bare", "bare-peek", "batched", "zero-copy"];

/// The `case` of each case's rows, in [`CASES`] order.
pub const CASES_ROWS: [&str; 4] = [
    "bare_af_packet",
    "bare_af_packet_peek",
    "server_af_packet_batched",
    "server_af_packet_zero_copy",
];

/// Frames handed to one `send_batch`.
const BURST: usize = 64;

/// `netserver bench af_packet` options.
#[derive(Args, Debug, Clone)]
pub struct AfPacketArgs {
    /// Interface to read, or `auto` to build a veth pair in two fresh network
    /// namespaces (needs root and iproute2).
    #[arg(long, value_name = "IFACE|auto")]
    pub iface: String,
    /// With a named `--iface`: the other end of its veth pair, in this
    /// namespace, out of which the bench sends the traffic.
    #[arg(long, value_name = "IFACE")]
    pub peer: Option<String>,
    /// One JSON object per line and case.
    #[arg(long)]
    pub json: bool,
    /// Frame sizes, bytes (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 1500], value_name = "BYTES")]
    pub frames: Vec<usize>,
    /// Frames sent per case.
    #[arg(long, default_value_t = 200_000, value_name = "N")]
    pub count: u64,
    /// Client counts for the server cases (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize], value_name = "N")]
    pub clients: Vec<usize>,
    /// Cases (comma-separated): bare, bare-peek, batched, zero-copy.
    #[arg(long, value_delimiter = ',', default_values_t = CASES.map(String::from), value_name = "CASE")]
    pub cases: Vec<String>,
    /// Most frames sent and not yet consumed; 0: send as fast as possible
    /// (the kernel drops what the reader does not keep up with).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub window: u64,
    /// Runs of each case (each printed).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub runs: usize,
    /// Entries in each client's rx and fill rings (power of two).
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub ring: u32,
    /// A case ends when nothing was consumed for this long (milliseconds).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub idle_ms: u64,
    /// Zero copy: drain with the batched receive after this many frames in
    /// a row were already queued when peeked (and the socket holds
    /// `--backlog-bytes`); 0: never, pure peek then place.
    #[arg(long, default_value_t = DEFAULT_BACKLOG_FRAMES, value_name = "N")]
    pub backlog: u32,
    /// Zero copy: bytes of receive memory the socket must hold for the
    /// backlog switch.
    #[arg(long, default_value_t = DEFAULT_BACKLOG_BYTES, value_name = "N")]
    pub backlog_bytes: u32,
    /// Leave the threads unpinned (by default the reader — the bare reader or
    /// the server's data path — runs alone on the last CPU, the sender and
    /// the clients on the others).
    #[arg(long)]
    pub no_pin: bool,
}

impl AfPacketArgs {
    /// Defaults for `iface`.
    pub fn new(iface: &str) -> AfPacketArgs {
        AfPacketArgs {
            iface: iface.into(),
            peer: None,
            json: false,
            frames: vec![64, 1500],
            count: 200_000,
            clients: vec![1],
            cases: CASES.map(String::from).to_vec(),
            window: 256,
            runs: 1,
            ring: 512,
            idle_ms: 1000,
            backlog: DEFAULT_BACKLOG_FRAMES,
            backlog_bytes: DEFAULT_BACKLOG_BYTES,
            no_pin: false,
        }
    }

    fn validate(&self) -> Result<(), BenchError> {
        if let Some(c) = self.cases.iter().find(|c| !CASES.contains(&c.as_str())) {
            return Err(BenchError::Usage(format!(
                "unknown case {c:?}: use {}",
                CASES.join(", ")
            )));
        }
        if !self.ring.is_power_of_two() || self.ring < 64 {
            return Err(BenchError::Usage(format!(
                "--ring {}: use a power of two ≥ 64",
                self.ring
            )));
        }
        if self.count == 0 {
            return Err(BenchError::Usage("--count: at least 1".into()));
        }
        if let Some(&b) = self.frames.iter().find(|&&b| !(60..=1514).contains(&b)) {
            return Err(BenchError::Usage(format!(
                "--frames {b}: use 60..=1514 (the veth MTU is 1500)"
            )));
        }
        Ok(())
    }
}

/// Runs the comparison, handing each output line to `out` (the rows of a
/// frame size and client count, then their summary); returns the rows.
pub fn run(args: &AfPacketArgs, out: Output<'_>) -> Result<Vec<Row>, BenchError> {
    args.validate()?;
    let place = if args.iface == "auto" {
        if let Some(reason) = netns::unavailable_because(&[]) {
            return Err(BenchError::Usage(format!(
                "--iface auto builds a veth pair in two network namespaces: {reason}"
            )));
        }
        let lab = VethLab::new("benchafp", 1500).map_err(|e| setup("veth pair")(Box::new(e)))?;
        Place::Lab(lab)
    } else {
        let Some(peer) = args.peer.clone() else {
            return Err(BenchError::Usage(format!(
                "--iface {}: also give --peer, the other end of its veth pair, \
                 out of which the bench sends (or use --iface auto)",
                args.iface
            )));
        };
        Place::Here {
            iface: args.iface.clone(),
            peer,
        }
    };
    run_at(&place, args, out)
}

/// [`run`] on a veth pair built by the caller (`args.iface` is ignored).
pub fn run_on(lab: VethLab, args: &AfPacketArgs, out: Output<'_>) -> Result<Vec<Row>, BenchError> {
    args.validate()?;
    run_at(&Place::Lab(lab), args, out)
}

fn run_at(place: &Place, args: &AfPacketArgs, out: Output<'_>) -> Result<Vec<Row>, BenchError> {
    let printer = Printer { json: args.json };
    let want = |c: &str| args.cases.iter().any(|x| x == c);
    let mut rows = Vec::new();
    for &frame_bytes in &args.frames {
        for &clients in &args.clients {
            let clients = clients.max(1);
            let ports: Vec<u16> = (0..clients).map(client_port).collect();
            let frames: Arc<[Box<[u8]>]> = ports
                .iter()
                .enumerate()
                .map(|(i, &p)| udp_frame(frame_bytes, p, i as u8).into_boxed_slice())
                .collect();
            let traffic = Traffic {
                frames,
                count: args.count,
                window: args.window,
                idle: Duration::from_millis(args.idle_ms.max(10)),
                backlog_frames: args.backlog,
                backlog_bytes: args.backlog_bytes,
                placement: Placement::of(!args.no_pin),
            };
            let mut group = Vec::new();
            for _ in 0..args.runs.max(1) {
                for (case, mode) in [("bare", BareMode::Batch), ("bare-peek", BareMode::Peek)] {
                    if want(case) {
                        group.push(bare(place, &traffic, frame_bytes, clients, mode)?);
                    }
                }
                for (case, zero_copy) in [("batched", false), ("zero-copy", true)] {
                    if want(case) {
                        let opts = SharedOpts {
                            small_threshold: 128,
                            ring: args.ring,
                            busy_poll: false,
                            // The same CPUs as the bare reader and the
                            // sender ([`Traffic::placement`]).
                            pin: !args.no_pin,
                        };
                        group.push(server(
                            place,
                            &traffic,
                            frame_bytes,
                            clients,
                            zero_copy,
                            opts,
                        )?);
                    }
                }
            }
            let summary = Summary::of(&group, frame_bytes, clients);
            for mut row in group {
                if !row.case.starts_with("bare") {
                    row.vs_baseline = summary.bare_mpps.map(|b| row.mpps / b.max(1e-9));
                }
                out(&printer.line(&row));
                rows.push(row);
            }
            out(&summary.line(args.json));
        }
    }
    Ok(rows)
}

/// Medians over the runs of one frame size and client count, and the
/// server/bare ratios the issue's target (≥ 90 %) is about.
#[derive(Debug, Clone, serde::Serialize)]
struct Summary {
    summary: &'static str,
    frame_bytes: usize,
    clients: usize,
    runs: usize,
    /// The faster bare reader's median rate.
    bare_mpps: Option<f64>,
    bare_case: Option<String>,
    server_batched_mpps: Option<f64>,
    server_zero_copy_mpps: Option<f64>,
    ratio_batched: Option<f64>,
    ratio_zero_copy: Option<f64>,
    target: f64,
}

impl Summary {
    fn of(rows: &[Row], frame_bytes: usize, clients: usize) -> Summary {
        let median = |case: &str| {
            let mut v: Vec<f64> = rows
                .iter()
                .filter(|r| r.case == case)
                .map(|r| r.mpps)
                .collect();
            v.sort_by(f64::total_cmp);
            (!v.is_empty()).then(|| v[v.len() / 2])
        };
        let bare = ["bare_af_packet", "bare_af_packet_peek"]
            .into_iter()
            .filter_map(|c| Some((c, median(c)?)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let batched = median("server_af_packet_batched");
        let zero_copy = median("server_af_packet_zero_copy");
        let ratio = |s: Option<f64>| Some(s? / bare?.1.max(1e-9));
        Summary {
            summary: "median over runs; ratio = server / faster bare reader",
            frame_bytes,
            clients,
            runs: CASES_ROWS
                .iter()
                .map(|c| rows.iter().filter(|r| r.case == *c).count())
                .max()
                .unwrap_or(0),
            bare_mpps: bare.map(|b| b.1),
            bare_case: bare.map(|b| b.0.to_string()),
            server_batched_mpps: batched,
            server_zero_copy_mpps: zero_copy,
            ratio_batched: ratio(batched),
            ratio_zero_copy: ratio(zero_copy),
            target: 0.9,
        }
    }

    /// The summary's output line.
    fn line(&self, json: bool) -> String {
        if json {
            serde_json::to_string(self).unwrap_or_default()
        } else {
            let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
            let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.0} %", v * 100.0));
            format!(
                "summary {} B, {} client(s), medians: bare {} Mpps ({}), server batched {} Mpps = {}, \
                 zero copy {} Mpps = {} of bare (target ≥ 90 %)",
                self.frame_bytes,
                self.clients,
                f(self.bare_mpps),
                self.bare_case.as_deref().unwrap_or("-"),
                f(self.server_batched_mpps),
                pct(self.ratio_batched),
                f(self.server_zero_copy_mpps),
                pct(self.ratio_zero_copy),
            )
        }
    }
}

/// Where the interfaces are.
enum Place {
    /// A veth pair in two namespaces of the bench's own.
    Lab(VethLab),
    /// A veth pair the caller made in this namespace.
    Here { iface: String, peer: String },
}

impl Place {
    fn server_if(&self) -> &str {
        match self {
            Place::Lab(_) => netns::SERVER_IF,
            Place::Here { iface, .. } => iface,
        }
    }

    fn peer_if(&self) -> &str {
        match self {
            Place::Lab(_) => netns::PEER_IF,
            Place::Here { peer, .. } => peer,
        }
    }

    /// Runs `f` in the server's namespace (sockets it opens stay there).
    fn in_server<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match self {
            Place::Lab(lab) => lab.server.run(f),
            Place::Here { .. } => f(),
        }
    }

    /// Spawns a thread in the peer's namespace.
    fn spawn_peer<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        match self {
            Place::Lab(lab) => lab.peer.spawn(f),
            Place::Here { .. } => std::thread::spawn(f),
        }
    }
}

/// What the sender sends for one case.
#[derive(Clone)]
struct Traffic {
    /// Cycled through, one per client port.
    frames: Arc<[Box<[u8]>]>,
    count: u64,
    window: u64,
    /// No progress for this long ends the case.
    idle: Duration,
    /// The receiver's backlog switch ([`AfPacketOptions`]).
    backlog_frames: u32,
    backlog_bytes: u32,
    /// Where the threads run: the reader (bare or the data path) on
    /// `datapath()`, the sender and the clients on `client(_)`.
    placement: Placement,
}

/// Frames consumed so far (read by the bare reader, or received by the
/// clients).
type Progress = Arc<dyn Fn() -> u64 + Send + Sync>;

/// What the sender saw.
#[derive(Debug, Clone, Copy, Default)]
struct SendReport {
    sent: u64,
    /// Frames the consumer had when the case ended.
    consumed: u64,
    send_errors: u64,
    /// From the first send to the last change of the consumed count.
    elapsed: Duration,
    /// Sending took this long (all `count` frames handed to the kernel).
    sending: Duration,
    /// Times the sender waited for the window to open.
    window_waits: u64,
}

/// A sender thread that has opened its socket and waits for `start`.
struct SenderThread {
    start: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<io::Result<SendReport>>,
}

impl SenderThread {
    fn spawn(place: &Place, traffic: &Traffic, progress: Progress) -> Result<Self, BenchError> {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (start, start_rx) = mpsc::channel::<()>();
        let peer = place.peer_if().to_string();
        let traffic = traffic.clone();
        let thread = place.spawn_peer(move || -> io::Result<SendReport> {
            pin_bench_thread(traffic.placement.client(0));
            let config = PacketSocketConfig {
                promiscuous: false,
                ignore_outgoing: true,
                recv_buffer: None,
                qdisc_bypass: true,
            };
            let uring = UringConfig {
                batch_buffers: 0,
                ..UringConfig::default()
            };
            let mut ring =
                match PacketSocket::open(&peer, &config).and_then(|s| PacketRing::new(s, &uring)) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("sender socket on {peer}: {e}")));
                        return Err(e);
                    }
                };
            let _ = ready_tx.send(Ok(()));
            if start_rx.recv().is_err() {
                // The case was called off before it started.
                return Ok(SendReport::default());
            }
            Ok(send_paced(&mut ring, &traffic, &*progress))
        });
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(SenderThread { start, thread }),
            Ok(Err(e)) => Err(setup("sender")(e.into())),
            Err(_) => Err(setup("sender")("the sender thread died".into())),
        }
    }

    /// Starts sending (a no-op if the thread is gone).
    fn go(&self) {
        let _ = self.start.send(());
    }

    fn join(self) -> Result<SendReport, BenchError> {
        drop(self.start);
        self.thread
            .join()
            .map_err(|_| setup("sender")("panicked".into()))?
            .map_err(|e| setup("sender")(Box::new(e)))
    }
}

/// Sends `traffic.count` frames in bursts, keeping at most `traffic.window`
/// in flight (sent, not yet consumed), then waits until the consumer has
/// them all or makes no progress for `traffic.idle`.
fn send_paced(ring: &mut PacketRing, traffic: &Traffic, progress: &dyn Fn() -> u64) -> SendReport {
    let n = traffic.frames.len();
    // Frame i of the stream is `frames[i % n]`: a burst starting at stream
    // position `s` is `cycle[s % n ..][..len]`.
    let cycle: Vec<&[u8]> = (0..BURST + n).map(|i| &*traffic.frames[i % n]).collect();
    let window = if traffic.window == 0 {
        u64::MAX
    } else {
        traffic.window
    };
    // The pause below is 20 µs; the default timer slack (50 µs) would
    // stretch it to ~70 µs, long enough for a shallow pipeline to run dry.
    // A failure leaves the default: pacing is coarser, counts stay right.
    let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1_000));
    let mut r = SendReport::default();
    let t0 = Instant::now();
    let mut last_change = t0;
    loop {
        let got = progress();
        let now = Instant::now();
        if got != r.consumed {
            r.consumed = got;
            last_change = now;
        }
        if r.consumed >= traffic.count {
            break;
        }
        let left = traffic.count - r.sent;
        let room = window.saturating_sub(r.sent.saturating_sub(r.consumed));
        let len = room.min(left).min(BURST as u64) as usize;
        // Small bursts cost a submission each: wait for a quarter burst of
        // room unless it is the tail.
        if len > 0 && (len >= BURST / 4 || len as u64 == left) {
            let start = (r.sent % n as u64) as usize;
            let mut ok = 0u64;
            ring.send_batch(&cycle[start..start + len], |_, res| match res {
                Ok(_) => ok += 1,
                Err(_) => r.send_errors += 1,
            });
            if r.sent < traffic.count && r.sent + ok >= traffic.count {
                r.sending = t0.elapsed();
            }
            r.sent += ok;
            if ok > 0 {
                continue;
            }
        } else if left > 0 {
            r.window_waits += 1;
        }
        if now.duration_since(last_change) > traffic.idle {
            break;
        }
        // Let the consumer run (sleeping, so a spinning sender does not take
        // a core from the reader on a small machine).
        std::thread::sleep(Duration::from_micros(20));
    }
    r.elapsed = last_change.duration_since(t0);
    r
}

fn receive_options(traffic: &Traffic) -> AfPacketOptions {
    AfPacketOptions {
        backlog_frames: traffic.backlog_frames,
        backlog_bytes: traffic.backlog_bytes,
        ..AfPacketOptions::default()
    }
}

fn row(
    case: &str,
    frame_bytes: usize,
    clients: usize,
    sent: &SendReport,
    kernel_drops: u64,
    payload_copies: f64,
) -> Row {
    let mut row = Row::measured(
        case,
        frame_bytes,
        clients,
        sent.consumed,
        sent.sent.saturating_sub(sent.consumed),
        sent.elapsed,
        payload_copies,
    );
    row.kernel_drops = Some(kernel_drops);
    row
}

fn sender_note(traffic: &Traffic, s: &SendReport) -> String {
    let pacing = if traffic.window == 0 {
        "unpaced".to_string()
    } else {
        format!("window {}", traffic.window)
    };
    format!(
        "sent {} ({pacing}, {} send errors, {} waits for the window, all sent after {:.0} ms)",
        s.sent,
        s.send_errors,
        s.window_waits,
        s.sending.as_secs_f64() * 1e3
    )
}

/// The bare reader case.
fn bare(
    place: &Place,
    traffic: &Traffic,
    frame_bytes: usize,
    clients: usize,
    mode: BareMode,
) -> Result<Row, BenchError> {
    let read = Arc::new(AtomicU64::new(0));
    let progress: Progress = {
        let read = read.clone();
        // Relaxed: a count; see `bare_reader`.
        Arc::new(move || read.load(Ordering::Relaxed))
    };
    let sender = SenderThread::spawn(place, traffic, progress)?;
    let options = receive_options(traffic);
    let report = place.in_server(|| {
        pin_bench_thread(traffic.placement.datapath());
        bare_reader(
            place.server_if(),
            &options,
            mode,
            traffic.count,
            traffic.idle,
            &read,
            || sender.go(),
        )
    });
    let sent = sender.join()?;
    let report = report.map_err(|e| setup("bare reader")(Box::new(e)))?;
    let case = match mode {
        BareMode::Batch => "bare_af_packet",
        BareMode::Peek => "bare_af_packet_peek",
    };
    // The kernel writes each frame into the reader's buffer; no copy after.
    let mut row = row(case, frame_bytes, clients, &sent, report.kernel_drops, 0.0);
    row.note = format!(
        "bare reader ({}), no demultiplexing; {}",
        match mode {
            BareMode::Batch => "multishot receive into provided buffers",
            BareMode::Peek => "peek, then receive into one buffer",
        },
        sender_note(traffic, &sent)
    );
    Ok(row)
}

/// What the server's backend reported when the data path dropped it.
type BackendReport = Arc<Mutex<Option<(PathCounters, io::Result<PacketStats>)>>>;

/// The AF_PACKET backend as the bench drives it: `zero_copy` false hides
/// [`AfPacket::recv_placed`] so the data path uses `recv_batch`; on drop
/// (on the data-path thread) it reports its path counters and the kernel's
/// drop count.
struct Measured {
    inner: AfPacket,
    zero_copy: bool,
    report: BackendReport,
}

impl Backend for Measured {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn recv_batch(&mut self, max: usize, deliver: &mut dyn FnMut(&RxFrame<'_>)) -> usize {
        self.inner.recv_batch(max, deliver)
    }

    fn wait(&mut self, timeout: Duration) {
        self.inner.wait(timeout);
    }

    fn watch_wake(&mut self, wake: &crate::backend::Wake) {
        self.inner.watch_wake(wake);
    }

    fn send_batch(&mut self, frames: &[&[u8]], on_done: &mut dyn FnMut(usize, io::Result<usize>)) {
        self.inner.send_batch(frames, on_done);
    }

    fn recv_placed(
        &mut self,
        max: usize,
        timeout: Duration,
        deliver: &mut dyn FnMut(&RxFrame<'_>, Option<&dyn FrameBody>),
    ) -> Option<usize> {
        self.zero_copy
            .then(|| AfPacket::recv_placed(&mut self.inner, max, timeout, deliver))
    }
}

impl Drop for Measured {
    fn drop(&mut self) {
        let stats = self.inner.kernel_stats();
        if let Ok(mut r) = self.report.lock() {
            *r = Some((self.inner.counters(), stats));
        }
    }
}

/// The server case: the data path on the AF_PACKET backend, shared-mode
/// clients.
fn server(
    place: &Place,
    traffic: &Traffic,
    frame_bytes: usize,
    clients: usize,
    zero_copy: bool,
    opts: SharedOpts,
) -> Result<Row, BenchError> {
    let case = if zero_copy {
        "server_af_packet_zero_copy"
    } else {
        "server_af_packet_batched"
    };
    let options = receive_options(traffic);
    let afp = place
        .in_server(|| AfPacket::open(place.server_if(), &options))
        .map_err(|e| setup("af_packet backend")(Box::new(e)))?;
    // Reset the kernel's counters: only this case's drops count.
    afp.kernel_stats()
        .map_err(|e| setup("af_packet backend")(Box::new(e)))?;
    let report = BackendReport::default();
    let backend = Measured {
        inner: afp,
        zero_copy,
        report: report.clone(),
    };
    let rig = DataPathRig::start(Box::new(backend), clients, opts)?;
    rig.wait_attached(Duration::from_secs(5))?;
    let progress: Progress = {
        let tallies = rig.tallies.clone();
        Arc::new(move || super::sum(&tallies)[0])
    };
    let sender = SenderThread::spawn(place, traffic, progress)?;
    let before = rig.global.snapshot();
    let client_copies_before = super::sum(&rig.tallies)[2];
    sender.go();
    let sent = sender.join()?;
    let after = rig.global.snapshot();
    let client_copies = super::sum(&rig.tallies)[2].saturating_sub(client_copies_before);
    rig.finish(case)?;
    let (counters, kstats) = report
        .lock()
        .ok()
        .and_then(|mut r| r.take())
        .ok_or_else(|| setup("af_packet backend")("no report from the backend".into()))?;
    let kstats = kstats.map_err(|e| setup("af_packet statistics")(Box::new(e)))?;
    // Server side, from the backend's counters: a frame lent complete
    // (batched) is copied once into the client's slot or frame; a peeked
    // frame written into the client's frame by the kernel, none; a small
    // frame complete in the peek, once (lent from the ring's peek area, copied
    // into the slot). What the client library copies is counted by the
    // clients (nothing: they read small slots in place). Spills to the
    // overflow pool are not counted.
    let received = (counters.copied + counters.zero_copy + counters.small_in_peek).max(1);
    let copies = (counters.copied + counters.small_in_peek) as f64 / received as f64
        + client_copies as f64 / sent.consumed.max(1) as f64;
    let mut row = row(
        case,
        frame_bytes,
        clients,
        &sent,
        u64::from(kstats.drops),
        copies,
    );
    let PathCounters {
        copied,
        backlog_copied,
        backlog_switches,
        zero_copy: placed,
        small_in_peek,
        discarded,
        ..
    } = counters;
    let drops: Vec<String> = after
        .drops_by_reason()
        .zip(before.drops_by_reason())
        .filter(|((_, a), (_, b))| a > b)
        .map(|((reason, a), (_, b))| format!("{} {}", reason.name(), a - b))
        .collect();
    row.note = format!(
        "data path drops [{}]; backend: copied {copied} (backlog {backlog_copied} \
         in {backlog_switches} switches), zero copy {placed}, \
         small in peek {small_in_peek}, discarded {discarded}; {}",
        drops.join(", "),
        sender_note(traffic, &sent)
    );
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_iface_needs_a_peer() {
        let err = run(&AfPacketArgs::new("eth0"), &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("--peer"), "{err}");
        let mut args = AfPacketArgs::new("auto");
        args.cases = vec!["nope".into()];
        assert!(matches!(run(&args, &mut |_| {}), Err(BenchError::Usage(_))));
    }

    /// Runs every case on a tiny count and checks the rows' fields; never a
    /// timed assertion. Skips (printed) without root, fails under CI=true.
    #[test]
    fn smoke_runs_and_prints_the_fields() {
        let Some(lab) = netns::real_mode_or_skip("bench_af_packet_smoke", &[], 1500) else {
            return;
        };
        let args = AfPacketArgs {
            json: true,
            count: 2000,
            ..AfPacketArgs::new("auto")
        };
        let mut lines = Vec::new();
        let rows = run_on(lab, &args, &mut |line| lines.push(line.to_string())).unwrap();
        assert_eq!(rows.len(), 2 * CASES.len(), "{rows:#?}");
        // Every row, then one summary per frame size, each a JSON object.
        assert_eq!(lines.len(), rows.len() + 2, "{lines:#?}");
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v.get("case").is_some() || v.get("summary").is_some(), "{v}");
        }
        for r in &rows {
            let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
            for k in [
                "case",
                "frame_bytes",
                "clients",
                "mpps",
                "gbps",
                "payload_copies",
                "kernel_drops",
            ] {
                assert!(v.get(k).is_some(), "{k} missing in {v}");
            }
            assert!(r.packets > 0, "{r:?}");
        }
        let cases: Vec<&str> = rows[..4].iter().map(|r| r.case.as_str()).collect();
        assert_eq!(cases, CASES_ROWS);
        assert!(rows
            .iter()
            .filter(|r| r.case.starts_with("server"))
            .all(|r| r.vs_baseline.is_some()));
    }
}
