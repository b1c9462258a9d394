//! `netserver demo`: a server on an emulated NIC, the bundled captures
//! replayed into it, and several clients with different filters talking to it
//! over the real Unix socket — one of them too slow to keep up.
//!
//! The library does the work and returns a [`Report`]; the binary prints the
//! progress lines (stderr) and the report (stdout).

use std::cell::Cell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use netclient::{FilterStats, GlobalStats, InjectFrame, InstallOptions, Operator};

use crate::config::Config;
use crate::serve::{serve_with, ServeError};

/// The captures embedded in the binary, so that the demo needs no files at
/// run time: public test captures from tcpdump, libpcap and gopacket, kept
/// once in the project with their licences (`filters/tests/data/`). Frames
/// per demo filter (by `tcpdump -q`):
///
/// | capture | frames | `udp port 53` | `tcp` | `arp` | `ip6` | `udp` |
/// |---|---|---|---|---|---|---|
/// | gopacket-test_ethernet | 10 | 0 | 10 | 0 | 0 | 0 |
/// | libpcap-gateway_or_not | 14 | 0 | 0 | 2 | 6 | 0 |
/// | tcpdump-edns-opts | 42 | 42 | 0 | 0 | 0 | 42 |
/// | tcpdump-eapon1 | 114 | 0 | 0 | 5 | 0 | 66 |
/// | tcpdump-babel_update_oobr | 107 | 0 | 2 | 0 | 0 | 100 |
pub const CAPTURES: &[(&str, &[u8])] = &[
    (
        "gopacket-test_ethernet",
        include_bytes!("../../filters/tests/data/pcaps/gopacket-test_ethernet.pcap"),
    ),
    (
        "libpcap-gateway_or_not",
        include_bytes!("../../filters/tests/data/pcaps/libpcap-gateway_or_not.pcap"),
    ),
    (
        "tcpdump-edns-opts",
        include_bytes!("../../filters/tests/data/pcaps/tcpdump-edns-opts.pcap"),
    ),
    (
        "tcpdump-eapon1",
        include_bytes!("../../filters/tests/data/pcaps/tcpdump-eapon1.pcap"),
    ),
    (
        "tcpdump-babel_update_oobr",
        include_bytes!("../../filters/tests/data/pcaps/tcpdump-babel_update_oobr.pcap"),
    ),
];

/// One demo client.
#[derive(Debug, Clone, Copy)]
struct ClientSpec {
    name: &'static str,
    expression: &'static str,
    /// A client that never fetches: its packets overflow, then drop.
    fetches: bool,
    queue_limit: u32,
}

const CLIENTS: &[ClientSpec] = &[
    ClientSpec {
        name: "dns",
        expression: "udp port 53",
        fetches: true,
        queue_limit: 0,
    },
    ClientSpec {
        name: "web",
        expression: "tcp",
        fetches: true,
        queue_limit: 0,
    },
    ClientSpec {
        name: "arp",
        expression: "arp",
        fetches: true,
        queue_limit: 0,
    },
    ClientSpec {
        name: "slow",
        expression: "udp",
        fetches: false,
        queue_limit: 32,
    },
    // Last: `tcp` and `udp` are more specific than `ip6` on IPv6 TCP and UDP
    // and win those packets, so installed after `ip6` they would take
    // packets its client claims, which the server refuses.
    ClientSpec {
        name: "v6",
        expression: "ip6",
        fetches: true,
        queue_limit: 0,
    },
];

/// `netserver demo` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Times the bundled captures are replayed.
    #[arg(long, default_value_t = 40)]
    pub rounds: u32,
    /// Pause between rounds, in milliseconds.
    #[arg(long, default_value_t = 40)]
    pub pause_ms: u64,
    /// Frames the server's overflow pool holds (small, so the slow client
    /// shows both overflow and `queue_full` drops).
    #[arg(long, default_value_t = 256)]
    pub overflow_limit: u32,
}

impl Default for DemoArgs {
    fn default() -> Self {
        DemoArgs {
            rounds: 40,
            pause_ms: 40,
            overflow_limit: 256,
        }
    }
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    #[error("the demo server failed: {0}")]
    Server(#[from] ServeError),
    #[error("the demo server did not start within 10 s")]
    ServerTimeout,
    #[error("the demo server thread panicked; please report")]
    ServerPanicked,
    #[error("a demo client failed: {0}")]
    Client(#[from] netclient::Error),
    #[error("bundled capture {name} is unreadable: {message}; please report")]
    Capture { name: &'static str, message: String },
    #[error("cannot set up the demo: {0}")]
    Io(#[from] std::io::Error),
}

/// A progress line while the demo runs.
#[derive(Debug, Clone)]
pub struct Progress {
    pub elapsed: Duration,
    pub round: u32,
    pub rounds: u32,
    pub stats: GlobalStats,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        write!(
            f,
            "[{:>5.2}s] round {:>3}/{}  received {:>6}  delivered {:>6}  queued {:>4}  overflow {:>4}  dropped {:>6}",
            self.elapsed.as_secs_f64(),
            self.round,
            self.rounds,
            s.received,
            s.delivered_small + s.delivered_large,
            s.queued,
            s.overflow,
            s.dropped
        )
    }
}

/// One client's line in the report.
#[derive(Debug, Clone)]
pub struct ClientReport {
    pub name: &'static str,
    pub fetches: bool,
    /// The server's counters for its filter.
    pub stats: FilterStats,
    /// Packets the client itself counted.
    pub received: u64,
}

/// What the demo shows at the end.
#[derive(Debug, Clone)]
pub struct Report {
    pub frames_injected: u64,
    pub elapsed: Duration,
    pub clients: Vec<ClientReport>,
    pub global: GlobalStats,
}

impl Report {
    /// Whether everything the demo checks held: the identity, and every
    /// fetching client got exactly what the server counted as delivered.
    pub fn ok(&self) -> bool {
        self.global.identity_holds()
            && self.global.received == self.frames_injected
            && self
                .clients
                .iter()
                .all(|c| !c.fetches || c.received == c.stats.packets)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.global;
        writeln!(
            f,
            "netserver demo: {} frames from {} bundled captures in {:.2} s, {} clients over the Unix socket",
            self.frames_injected,
            CAPTURES.len(),
            self.elapsed.as_secs_f64(),
            self.clients.len(),
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<6} {:<13} {:>8} {:>9} {:>7} {:>7} {:>7} {:>9} {:>8}  drops by reason",
            "client",
            "filter",
            "packets",
            "bytes",
            "small",
            "large",
            "queued",
            "overflow",
            "dropped"
        )?;
        for c in &self.clients {
            let s = &c.stats;
            let reasons: Vec<String> = s
                .drops
                .iter()
                .filter(|d| d.count > 0)
                .map(|d| format!("{}={}", d.reason, d.count))
                .collect();
            writeln!(
                f,
                "{:<6} {:<13} {:>8} {:>9} {:>7} {:>7} {:>7} {:>9} {:>8}  {}{}",
                c.name,
                s.expression,
                s.packets,
                s.bytes,
                s.small,
                s.large,
                s.queued,
                s.overflow,
                s.dropped,
                if reasons.is_empty() {
                    "-".to_owned()
                } else {
                    reasons.join(" ")
                },
                if c.fetches { "" } else { "   (never fetches)" }
            )?;
        }
        writeln!(f)?;
        let reasons: Vec<String> = g
            .drops
            .iter()
            .filter(|d| d.count > 0)
            .map(|d| format!("{}={}", d.reason, d.count))
            .collect();
        writeln!(
            f,
            "server: received {}  delivered small {}  large {}  control {}  queued {}  overflow {}  dropped {} ({})",
            g.received,
            g.delivered_small,
            g.delivered_large,
            g.control,
            g.queued,
            g.overflow,
            g.dropped,
            reasons.join(" ")
        )?;
        writeln!(
            f,
            "identity: received {} = delivered_small {} + delivered_large {} + control {} + queued {} + overflow {} + dropped {} = {}  {}",
            g.received,
            g.delivered_small,
            g.delivered_large,
            g.control,
            g.queued,
            g.overflow,
            g.dropped,
            g.accounted(),
            if g.identity_holds() { "holds" } else { "BROKEN" }
        )?;
        for c in self.clients.iter().filter(|c| c.fetches) {
            if c.received != c.stats.packets {
                writeln!(
                    f,
                    "MISMATCH: client {} counted {} packets, the server delivered {}",
                    c.name, c.received, c.stats.packets
                )?;
            }
        }
        Ok(())
    }
}

fn parse_captures() -> Result<Vec<(Vec<u8>, u32)>, DemoError> {
    let mut frames = Vec::new();
    for (name, bytes) in CAPTURES {
        let bad = |e: pcap_file::PcapError| DemoError::Capture {
            name,
            message: e.to_string(),
        };
        let mut reader =
            pcap_file::pcap::PcapReader::new(std::io::Cursor::new(*bytes)).map_err(bad)?;
        // Raw records: some captures have records longer than their snap
        // length, which the strict reader refuses; the bytes are what count.
        while let Some(p) = reader.next_raw_packet() {
            let p = p.map_err(bad)?;
            frames.push((p.data.into_owned(), p.orig_len));
        }
    }
    Ok(frames)
}

/// A socket path of our own under the temp directory.
fn demo_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("netserver-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs the demo; `progress` is called a few times a second.
pub fn run(args: &DemoArgs, progress: &mut dyn FnMut(&Progress)) -> Result<Report, DemoError> {
    let frames = parse_captures()?;
    let dir = demo_dir()?;
    let socket = dir.join("netserver.sock");
    let mut config = Config::new(socket.clone());
    config.overflow_limit = args.overflow_limit;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::Builder::new()
        .name("netserver-demo-server".into())
        .spawn(move || {
            serve_with(config, |_| {
                let _ = ready_tx.send(());
            })
        })?;
    let result = match ready_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(()) => netclient::block_on(drive(&socket, args, &frames, progress))?,
        Err(_) => Err(DemoError::ServerTimeout),
    };
    if result.is_err() {
        // `drive` stops the server when it finishes; when it failed on the
        // way, stop it here, or joining it would wait for ever.
        let stop =
            netclient::block_on(async { Operator::connect(&socket).await?.shutdown().await });
        if let Ok(Err(e)) = stop {
            tracing::warn!(error = %e, "could not stop the demo server after a failure");
        }
    }
    let served = server.join().map_err(|_| DemoError::ServerPanicked)?;
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    served?;
    Ok(report)
}

async fn consume(
    mut fetch: netclient::Fetch,
    stop: Rc<Cell<bool>>,
) -> Result<(u64, netclient::Fetch), netclient::Error> {
    let mut received = 0u64;
    loop {
        let batch = fetch.fetch_batch(64).await?;
        received += batch.len() as u64;
        if batch.is_empty() {
            if stop.get() {
                return Ok((received, fetch));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

async fn drive(
    socket: &Path,
    args: &DemoArgs,
    frames: &[(Vec<u8>, u32)],
    progress: &mut dyn FnMut(&Progress),
) -> Result<Report, DemoError> {
    let started = Instant::now();
    let operator = Operator::connect(socket).await?;
    let stop = Rc::new(Cell::new(false));
    let mut consumers = Vec::new();
    let mut idle = Vec::new();
    let mut tags = Vec::new();
    for spec in CLIENTS {
        let client = netclient::connect(socket).await?;
        let options = InstallOptions::default().queue_limit(spec.queue_limit);
        let fetch = client.install_with(spec.expression, &options).await?;
        tags.push(fetch.tag());
        if spec.fetches {
            consumers.push((
                client,
                tokio::task::spawn_local(consume(fetch, stop.clone())),
            ));
        } else {
            idle.push((client, fetch));
        }
    }

    let inject: Vec<InjectFrame<'_>> = frames
        .iter()
        .map(|(data, wire_len)| InjectFrame {
            data,
            wire_len: *wire_len,
        })
        .collect();
    let mut injected = 0u64;
    let mut last_progress = Instant::now();
    for round in 1..=args.rounds {
        injected += operator.inject_all(&inject).await?;
        if last_progress.elapsed() >= Duration::from_millis(250) || round == args.rounds {
            last_progress = Instant::now();
            progress(&Progress {
                elapsed: started.elapsed(),
                round,
                rounds: args.rounds,
                stats: operator.stats().await?,
            });
        }
        tokio::time::sleep(Duration::from_millis(args.pause_ms)).await;
    }

    // Let the fetching clients drain their queues (at most 5 s).
    let fetching: Vec<u64> = tags
        .iter()
        .zip(CLIENTS)
        .filter(|(_, c)| c.fetches)
        .map(|(t, _)| *t)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let filters = operator.list_filters().await?;
        let stats = operator.stats().await?;
        let drained = filters
            .iter()
            .filter(|f| fetching.contains(&f.tag))
            .all(|f| f.queued == 0 && f.overflow == 0);
        if (drained && stats.received == injected) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let filters = operator.list_filters().await?;
    let global = operator.stats().await?;
    progress(&Progress {
        elapsed: started.elapsed(),
        round: args.rounds,
        rounds: args.rounds,
        stats: global.clone(),
    });

    stop.set(true);
    let mut received = Vec::new();
    for (client, task) in consumers {
        let (n, fetch) = match task.await {
            Ok(r) => r?,
            Err(e) => {
                return Err(DemoError::Io(std::io::Error::other(format!(
                    "a demo client task failed: {e}"
                ))))
            }
        };
        received.push(n);
        fetch.close().await?;
        client.close().await?;
    }
    for (client, fetch) in idle {
        fetch.close().await?;
        client.close().await?;
    }
    operator.shutdown().await?;

    let mut received = received.into_iter();
    let clients = CLIENTS
        .iter()
        .zip(&tags)
        .map(|(spec, tag)| {
            let stats = filters
                .iter()
                .find(|f| f.tag == *tag)
                .cloned()
                .unwrap_or_else(|| FilterStats {
                    tag: *tag,
                    expression: spec.expression.into(),
                    mode: netclient::Mode::default(),
                    packets: 0,
                    bytes: 0,
                    small: 0,
                    large: 0,
                    zero_copy: 0,
                    copied: 0,
                    queued: 0,
                    overflow: 0,
                    dropped: 0,
                    drops: Vec::new(),
                    refused: 0,
                    shared: false,
                    violations: Vec::new(),
                    revoked: String::new(),
                });
            ClientReport {
                name: spec.name,
                fetches: spec.fetches,
                stats,
                received: if spec.fetches {
                    received.next().unwrap_or(0)
                } else {
                    0
                },
            }
        })
        .collect();
    Ok(Report {
        frames_injected: injected,
        elapsed: started.elapsed(),
        clients,
        global,
    })
}
