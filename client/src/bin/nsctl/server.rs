//! The `nsctl` commands that talk to a running server: `install`, `inject`,
//! `list`, `stats`, `shutdown`.
//!
//! Exit codes: 0 success; 2 bad input (a refused or malformed expression, a
//! stale tag, an unreadable capture, bad arguments); 1 anything else (no
//! server, connection lost, a server bug).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use netclient::capture::{read_pcap, CaptureError};
use netclient::{FilterStats, GlobalStats, InjectFrame, Operator};

mod install;

const SOCKET_HELP: &str = "Client socket of the server. The operator socket is this path + \
\".operator\". Default: $NETSERVER_SOCKET, else /tmp/netserver.sock";

/// Where the server listens.
#[derive(Args, Clone, Debug)]
pub struct SocketArg {
    #[arg(long, value_name = "PATH", help = SOCKET_HELP)]
    pub socket: Option<PathBuf>,
}

impl SocketArg {
    pub fn path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(netclient::default_socket_path)
    }
}

#[derive(Subcommand)]
pub enum ServerCommand {
    /// Install a filter and print what it receives, one line per packet.
    ///
    /// Prints `TIME small|large len WIRELEN DECODE` per packet (UTC time), then
    /// one summary line, last on stdout: `packets=N small=S large=L`.
    Install(install::InstallArgs),
    /// Push every frame of a pcap capture into the emulated NIC, in order
    /// (needs the operator socket).
    Inject(InjectArgs),
    /// List installed filters with their counters (operator).
    List(ListArgs),
    /// Server-wide counters, the accounting identity and per-filter counters
    /// (operator).
    Stats(ListArgs),
    /// Stop the server (operator).
    Shutdown(SocketArg),
}

#[derive(Args)]
pub struct InjectArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Classic pcap file, link type Ethernet.
    #[arg(long, value_name = "FILE")]
    pcap: PathBuf,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    socket: SocketArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// A failure of a command: what to print and how to exit.
pub enum Failure {
    /// Bad input: exit code 2.
    Input(String),
    /// Anything else: exit code 1.
    Other(String),
}

impl From<netclient::Error> for Failure {
    fn from(e: netclient::Error) -> Self {
        if e.is_caller_error() {
            Failure::Input(e.to_string())
        } else {
            Failure::Other(e.to_string())
        }
    }
}

impl From<CaptureError> for Failure {
    fn from(e: CaptureError) -> Self {
        Failure::Input(e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Other(e.to_string())
    }
}

pub fn run(command: ServerCommand) -> ExitCode {
    let result = netclient::block_on(async move {
        match command {
            ServerCommand::Install(args) => install::run(args).await,
            ServerCommand::Inject(args) => inject(args).await,
            ServerCommand::List(args) => list(args).await,
            ServerCommand::Stats(args) => stats(args).await,
            ServerCommand::Shutdown(socket) => shutdown(socket).await,
        }
    });
    match result {
        Ok(Ok(code)) => code,
        Ok(Err(Failure::Input(message))) => {
            eprintln!("nsctl: {message}");
            ExitCode::from(2)
        }
        Ok(Err(Failure::Other(message))) => {
            eprintln!("nsctl: {message}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("nsctl: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn inject(args: InjectArgs) -> Result<ExitCode, Failure> {
    let frames = read_pcap(&args.pcap)?;
    let operator = Operator::connect(args.socket.path()).await?;
    let views: Vec<InjectFrame<'_>> = frames
        .iter()
        .map(|f| InjectFrame {
            data: &f.data,
            wire_len: f.wire_len,
        })
        .collect();
    let accepted = operator.inject_all(&views).await?;
    println!(
        "injected {} frames from {} (accepted {accepted})",
        frames.len(),
        args.pcap.display()
    );
    operator.close().await?;
    if accepted != frames.len() as u64 {
        return Err(Failure::Other(format!(
            "the server accepted {accepted} of {} frames",
            frames.len()
        )));
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(args: ListArgs) -> Result<ExitCode, Failure> {
    let operator = Operator::connect(args.socket.path()).await?;
    let filters = operator.list_filters().await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &filters).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        filter_table(&mut out, &filters)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn stats(args: ListArgs) -> Result<ExitCode, Failure> {
    let operator = Operator::connect(args.socket.path()).await?;
    let global = operator.stats().await?;
    let filters = operator.list_filters().await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let value = serde_json::json!({
            "global": global,
            "identity_holds": global.identity_holds(),
            "filters": filters,
        });
        serde_json::to_writer_pretty(&mut out, &value).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        global_table(&mut out, &global)?;
        writeln!(out)?;
        filter_table(&mut out, &filters)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown(socket: SocketArg) -> Result<ExitCode, Failure> {
    let operator = Operator::connect(socket.path()).await?;
    operator.shutdown().await?;
    println!("server at {} is shutting down", socket.path().display());
    Ok(ExitCode::SUCCESS)
}

fn global_table(out: &mut impl Write, g: &GlobalStats) -> std::io::Result<()> {
    writeln!(
        out,
        "epoch {:#06x}, up {:.1} s, {} filters",
        g.epoch,
        g.uptime_ns as f64 / 1e9,
        g.filters
    )?;
    writeln!(out, "received         {}", g.received)?;
    writeln!(out, "delivered small  {}", g.delivered_small)?;
    writeln!(out, "delivered large  {}", g.delivered_large)?;
    writeln!(out, "control          {}", g.control)?;
    writeln!(out, "queued           {}", g.queued)?;
    writeln!(out, "overflow         {}", g.overflow)?;
    writeln!(out, "dropped          {}", g.dropped)?;
    for d in &g.drops {
        writeln!(out, "  {:<15}{}", d.reason, d.count)?;
    }
    writeln!(
        out,
        "identity: received {} {} delivered_small + delivered_large + control + queued + overflow + dropped = {}",
        g.received,
        if g.identity_holds() { "=" } else { "!=" },
        g.accounted()
    )
}

fn filter_table(out: &mut impl Write, filters: &[FilterStats]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<18} {:<9} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8}  expression",
        "tag", "mode", "packets", "small", "large", "queued", "overflow", "dropped", "refused"
    )?;
    for f in filters {
        writeln!(
            out,
            "{:#018x} {:<9} {:>9} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8}  {}",
            f.tag,
            f.mode,
            f.packets,
            f.small,
            f.large,
            f.queued,
            f.overflow,
            f.dropped,
            f.refused,
            f.expression
        )?;
    }
    if filters.is_empty() {
        writeln!(out, "(no filters installed)")?;
    }
    Ok(())
}
