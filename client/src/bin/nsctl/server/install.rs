//! `nsctl install EXPRESSION`: install a filter, hold its capability and
//! print what arrives.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use netclient::capture::PcapSink;
use netclient::{Delivery, Fetch, InstallOptions, Mode, Operator};

use super::{Failure, SocketArg};
use crate::ExpressionArg;

#[derive(Args)]
pub struct InstallArgs {
    #[command(flatten)]
    socket: SocketArg,
    #[command(flatten)]
    expression: ExpressionArg,
    /// Exit after N packets.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Exit after SECS seconds in all.
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Exit after SECS seconds with no new packet, counting from the first
    /// packet (before the first packet, only --timeout applies).
    #[arg(long, value_name = "SECS")]
    idle_exit: Option<f64>,
    /// Also write every received frame to FILE (classic pcap, Ethernet).
    #[arg(long, value_name = "FILE.pcap")]
    write: Option<PathBuf>,
    /// Print only the summary line.
    #[arg(long)]
    quiet: bool,
    /// Most packets per fetch call.
    #[arg(long, value_name = "N", default_value_t = 64)]
    batch: u32,
    /// Milliseconds to sleep when nothing is waiting (emulated mode has no
    /// push notification).
    #[arg(long, value_name = "MS", default_value_t = 5)]
    poll_ms: u64,
    /// Install in monitor mode (a copy of matching traffic); needs the
    /// operator socket.
    #[arg(long)]
    monitor: bool,
    /// Per-filter queue limit (0: server default).
    #[arg(long, value_name = "N", default_value_t = 0)]
    queue_limit: u32,
    /// Frames in the filter's frame space (0: server default).
    #[arg(long, value_name = "N", default_value_t = 0)]
    frames: u32,
    /// Small slots (0: server default).
    #[arg(long, value_name = "N", default_value_t = 0)]
    small_slots: u32,
    /// How frames reach this client: `shared` (an exchange region in shared
    /// memory; falls back to emulated with a notice on stderr when the server
    /// does not offer it or is not reachable from this host) or `emulated`
    /// (the bytes travel in the RPC replies).
    #[arg(long, value_enum, default_value_t = Transport::Shared)]
    mode: Transport,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Transport {
    Shared,
    Emulated,
}

fn seconds(name: &str, value: Option<f64>) -> Result<Option<Duration>, Failure> {
    match value {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(Failure::Input(format!(
            "--{name} {s}: give a non-negative number of seconds"
        ))),
    }
}

#[derive(Default)]
struct Counts {
    packets: u64,
    small: u64,
    large: u64,
}

impl Counts {
    fn summary(&self) -> String {
        format!(
            "packets={} small={} large={}",
            self.packets, self.small, self.large
        )
    }
}

pub async fn run(args: InstallArgs) -> Result<ExitCode, Failure> {
    let expression = args.expression.text();
    let timeout = seconds("timeout", args.timeout)?;
    let idle_exit = seconds("idle-exit", args.idle_exit)?;
    if args.batch == 0 {
        return Err(Failure::Input("--batch 0: give at least 1".into()));
    }
    let options = InstallOptions::default()
        .mode(if args.monitor {
            Mode::Monitor
        } else {
            Mode::Exclusive
        })
        .queue_limit(args.queue_limit)
        .frames(args.frames)
        .small_slots(args.small_slots);
    let path = args.socket.path();
    // A bad --write path fails before anything is installed.
    let mut sink = match &args.write {
        Some(file) => Some(PcapSink::create(file)?),
        None => None,
    };

    // Keep the connection alive as long as the fetch capability.
    let (_client, _operator, fetch);
    if args.monitor {
        let operator = Operator::connect(&path).await?;
        fetch = operator.install_with(&expression, &options).await?;
        (_client, _operator) = (None, Some(operator));
    } else {
        let client = netclient::connect(&path).await?;
        fetch = client.install_with(&expression, &options).await?;
        (_client, _operator) = (Some(client), None);
    }
    let mut fetch = fetch;
    if args.mode == Transport::Shared {
        let offered = match (&_client, &_operator) {
            (Some(c), _) => c.info().shared_mode,
            (None, Some(o)) => o.info().await?.shared_mode,
            _ => false,
        };
        if !offered {
            eprintln!("nsctl: the server does not offer shared mode; using emulated mode");
        } else if let Err(e) = fetch.attach_shared().await {
            eprintln!("nsctl: shared mode unavailable ({e}); using emulated mode");
        }
    }
    let how = if fetch.is_shared() {
        "shared"
    } else {
        "emulated"
    };
    eprintln!(
        "nsctl: installed tag={:#018x} mode={how} {expression}",
        fetch.tag()
    );

    let mut counts = Counts::default();
    let outcome = receive(fetch, &args, timeout, idle_exit, &mut counts, sink.as_mut()).await;
    let finished = sink.map(PcapSink::finish).transpose();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", counts.summary())?;
    out.flush()?;
    outcome?;
    finished?;
    Ok(ExitCode::SUCCESS)
}

async fn receive(
    mut fetch: Fetch,
    args: &InstallArgs,
    timeout: Option<Duration>,
    idle_exit: Option<Duration>,
    counts: &mut Counts,
    mut sink: Option<&mut PcapSink>,
) -> Result<(), Failure> {
    let start = Instant::now();
    let deadline = timeout.map(|t| start + t);
    let mut last_packet: Option<Instant> = None;
    let poll = Duration::from_millis(args.poll_ms);
    let mut stop = std::pin::pin!(stop_signal());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    loop {
        let now = Instant::now();
        let remaining = args.count.map(|c| c.saturating_sub(counts.packets));
        if remaining == Some(0) || deadline.is_some_and(|d| now >= d) {
            break;
        }
        let idle_deadline = idle_exit.zip(last_packet).map(|(idle, last)| last + idle);
        if idle_deadline.is_some_and(|d| now >= d) {
            break;
        }
        let max = remaining.map_or(args.batch, |r| r.min(u64::from(args.batch)) as u32);
        let packets = tokio::select! {
            _ = &mut stop => break,
            result = fetch.fetch_batch(max) => result?,
        };
        if packets.is_empty() {
            // Shared mode sleeps on the region's doorbell (at most a second,
            // to notice a server that went away); emulated mode polls.
            let nap = if fetch.is_shared() {
                Duration::from_secs(1)
            } else {
                poll
            };
            let wake = [deadline, idle_deadline]
                .into_iter()
                .flatten()
                .fold(now + nap, Instant::min);
            tokio::select! {
                _ = &mut stop => break,
                result = fetch.idle(wake.saturating_duration_since(Instant::now())) => result?,
            }
            continue;
        }
        last_packet = Some(Instant::now());
        for packet in &packets {
            counts.packets += 1;
            match packet.delivery {
                Delivery::Small => counts.small += 1,
                Delivery::Large => counts.large += 1,
            }
            if !args.quiet {
                writeln!(out, "{}", packet.one_line())?;
            }
            if let Some(sink) = sink.as_deref_mut() {
                sink.write(packet.timestamp_ns, packet.wire_len, &packet.data)?;
            }
        }
        out.flush()?;
    }
    out.flush()?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM, so the summary and the pcap file are
/// still written.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
