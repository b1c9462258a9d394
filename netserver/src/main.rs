//! `netserver`: the network server domain.
//!
//! - `netserver serve [--socket PATH] [--backend emulated|pcap:FILE] …`
//! - `netserver demo`: a self-contained tour on an emulated NIC.
//! - `netserver bench delivery|af_packet`: delivery benchmarks (see `BENCH.md`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use netserver::backend::BackendSpec;
use netserver::Config;

#[derive(Parser, Debug)]
#[command(
    name = "netserver",
    version,
    about = "A user-space network server domain"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the server: clients connect to --socket, the operator to --socket + ".operator".
    Serve(ServeArgs),
    /// Start a server on an emulated NIC, replay the bundled captures to several
    /// clients and print what each received.
    Demo(netserver::demo::DemoArgs),
    /// Benchmarks: `delivery` (generator → clients, against UDP over
    /// loopback), `af_packet` (server against a bare AF_PACKET reader) and
    /// `exchange` (index exchange against copy and page remapping).
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// Packets/s and bytes/s delivered to 1 and 4 clients from an in-memory
    /// generator, shared and emulated mode, and the kernel baseline.
    Delivery(netserver::bench::delivery::DeliveryArgs),
    /// The server's delivery rate over an interface against the bare
    /// AF_PACKET reader, on the same traffic.
    #[command(name = "af_packet", alias = "af-packet")]
    AfPacket(netserver::bench::af_packet::AfPacketArgs),
    /// One packet's change of hands: frame index exchange (what the server
    /// does) against copying the payload and against remapping the page.
    Exchange(netserver::bench::exchange::ExchangeArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Client socket (mode 0666); the operator socket (mode 0600) is PATH.operator.
    /// Default: $NETSERVER_SOCKET, else /tmp/netserver.sock.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Where frames come from: `emulated` (Operator.inject), `pcap:FILE` (replay),
    /// `af_packet:IFACE` or `tap:NAME` (a real interface).
    #[arg(
        long,
        default_value = "emulated",
        value_name = "emulated|pcap:FILE|af_packet:IFACE|tap:NAME"
    )]
    backend: String,
    /// pcap replay: frames per second (default: as fast as the data path takes them).
    #[arg(long, value_name = "PPS")]
    rate: Option<f64>,
    /// pcap replay: start over at the end of the file.
    #[arg(long = "loop")]
    repeat: bool,
    /// Frames of at most this many bytes are copied into small slots.
    #[arg(long, default_value_t = 128, value_name = "BYTES")]
    small_threshold: u32,
    /// Bytes in a page frame (longer frames are cut to this); raise for jumbo frames.
    #[arg(long, default_value_t = 4096, value_name = "BYTES")]
    frame_size: u32,
    /// Default per-filter queue limit (frames).
    #[arg(long, default_value_t = 256, value_name = "N")]
    queue_limit: u32,
    /// Frames the server's overflow pool holds for clients that fall behind, all filters together.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    overflow_limit: u32,
    /// Default page frames in a filter's frame space.
    #[arg(long, default_value_t = 64, value_name = "N")]
    default_frames: u32,
    /// Default small slots of a filter.
    #[arg(long, default_value_t = 64, value_name = "N")]
    default_small_slots: u32,
    /// Most page frames a filter may ask for.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    max_frames: u32,
    /// Most filters installed at once.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    max_filters: u32,
    /// Frames in the backend's receive ring.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    rx_ring: u32,
    /// Pin the data-path thread to this CPU (as DPDK and AF_XDP pollers
    /// are pinned), so that the scheduler does not move it onto its
    /// clients' core (default: not pinned).
    #[arg(long, value_name = "CPU")]
    datapath_cpu: Option<usize>,
    /// af_packet: when this many frames in a row were already queued when
    /// peeked (the server is behind) and the socket holds --backlog-bytes,
    /// drain them with the batched receive (one copy each) instead of peek
    /// then place; 0: never (pure zero copy, the kernel drops what the
    /// server cannot keep up with).
    #[arg(long, value_name = "N")]
    backlog: Option<u32>,
    /// af_packet: bytes of receive memory the socket must hold for --backlog
    /// to switch (default 16384).
    #[arg(long, value_name = "BYTES")]
    backlog_bytes: Option<u32>,
    /// Be a host on the link with this IPv4 address and prefix: answer ARP
    /// and ping, let clients `bind` ports (with MACs of their own) and send.
    #[arg(long, value_name = "A.B.C.D/LEN")]
    ip: Option<String>,
    /// The host's canonical MAC (default: the interface's for af_packet,
    /// else a random locally administered one). Needs --ip.
    #[arg(long, value_name = "MAC", requires = "ip")]
    mac: Option<String>,
    /// Seed for drawing application MACs (tests: deterministic collisions).
    #[arg(long, value_name = "N", hide = true, requires = "ip")]
    mac_seed: Option<u64>,
}

impl ServeArgs {
    fn config(self) -> Result<Config, String> {
        let socket = self
            .socket
            .unwrap_or_else(netserver_schema::default_socket_path);
        let mut c = Config::new(socket);
        c.backend = self
            .backend
            .parse::<BackendSpec>()
            .map_err(|e| format!("--backend: {e}"))?;
        if (self.rate.is_some() || self.repeat) && !matches!(c.backend, BackendSpec::Pcap(_)) {
            return Err("--rate and --loop apply to --backend pcap:FILE only".into());
        }
        c.rate = self.rate;
        c.repeat = self.repeat;
        if (self.backlog.is_some() || self.backlog_bytes.is_some())
            && !matches!(c.backend, BackendSpec::AfPacket(_))
        {
            return Err(
                "--backlog and --backlog-bytes apply to --backend af_packet:IFACE only".into(),
            );
        }
        c.backlog_frames = self.backlog.unwrap_or(c.backlog_frames);
        c.backlog_bytes = self.backlog_bytes.unwrap_or(c.backlog_bytes);
        c.small_threshold = self.small_threshold;
        c.frame_size = self.frame_size;
        c.queue_limit = self.queue_limit;
        c.overflow_limit = self.overflow_limit;
        c.default_frames = self.default_frames;
        c.default_small_slots = self.default_small_slots;
        c.max_frames = self.max_frames;
        c.max_filters = self.max_filters;
        c.rx_ring = self.rx_ring;
        c.datapath_cpu = self.datapath_cpu;
        if let Some(ip) = &self.ip {
            let (ip, prefix_len) =
                netserver::config::HostIdentity::parse_ip(ip).map_err(|e| format!("--ip: {e}"))?;
            let mac = match &self.mac {
                Some(m) => Some(
                    netserver::config::HostIdentity::parse_mac(m)
                        .map_err(|e| format!("--mac: {e}"))?,
                ),
                None => None,
            };
            c.host = Some(netserver::config::HostIdentity {
                ip,
                prefix_len,
                mac,
                mac_seed: self.mac_seed,
            });
        }
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` logs at info by default; the demo keeps its output for the
    // report and logs only warnings. RUST_LOG overrides both.
    let default_level = match cli.command {
        Cmd::Serve(_) => "info",
        Cmd::Demo(_) | Cmd::Bench(_) => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Cmd::Serve(args) => {
            let config = match args.config() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("netserver serve: {e}");
                    return ExitCode::from(2);
                }
            };
            match netserver::serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("netserver serve: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Bench(cmd) => {
            // Lines as they are measured (stdout is line-buffered).
            let mut print = |line: &str| println!("{line}");
            let r = match &cmd {
                BenchCmd::Delivery(args) => {
                    netserver::bench::delivery::run(args, &mut print).map(drop)
                }
                BenchCmd::AfPacket(args) => {
                    netserver::bench::af_packet::run(args, &mut print).map(drop)
                }
                BenchCmd::Exchange(args) => {
                    netserver::bench::exchange::run(args, &mut print).map(drop)
                }
            };
            match r {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("netserver bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Demo(args) => match netserver::demo::run(&args, &mut |p| eprintln!("{p}")) {
            Ok(report) => {
                println!("{report}");
                if report.ok() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("netserver demo: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
