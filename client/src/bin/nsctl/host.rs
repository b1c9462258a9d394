//! `nsctl resolve`, `nsctl rule …`, `nsctl host`: the server as a host on
//! the link (issue 5).
//!
//! Exit codes as for the server commands: 0 success; 2 bad input or a
//! refusal; 1 anything else (no answer, no server, no permission).

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use netclient::xarp::{self, ResolveStatus};
use netclient::{format_mac, Operator, RuleAction};

use crate::server::SocketArg;
use crate::ExpressionArg;

#[derive(Args)]
pub struct ResolveArgs {
    /// What to resolve: the server's IPv4 address and a port, `A.B.C.D:PORT`.
    #[arg(value_name = "IP:PORT")]
    target: String,
    /// Interface to ask on (raw AF_PACKET socket: needs root / CAP_NET_RAW).
    #[arg(long, value_name = "IFACE")]
    iface: String,
    /// The transport of the port.
    #[arg(long, value_enum, default_value_t = Proto::Udp)]
    proto: Proto,
    /// Sender IPv4 address in the request (default 0.0.0.0, like an ARP probe).
    #[arg(long, value_name = "A.B.C.D", default_value = "0.0.0.0")]
    source_ip: Ipv4Addr,
    /// How long to wait for the answer, in milliseconds (three tries).
    #[arg(long, value_name = "MS", default_value_t = 1500)]
    timeout_ms: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Proto {
    Udp,
    Tcp,
}

#[derive(Subcommand)]
pub enum RuleCommand {
    /// Add a rule: `drop` or `count` frames matching a pcap-filter expression.
    /// Rules run before any dispatch; prints the rule's id.
    Add {
        #[command(flatten)]
        socket: SocketArg,
        #[arg(value_enum)]
        action: Action,
        #[command(flatten)]
        expression: ExpressionArg,
    },
    /// Remove a rule by id.
    Remove {
        #[command(flatten)]
        socket: SocketArg,
        id: u32,
    },
    /// List rules with their counters.
    List {
        #[command(flatten)]
        socket: SocketArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Action {
    Drop,
    Count,
}

/// Resolves IP:PORT over the wire; prints `MAC application|canonical`.
pub fn resolve(args: ResolveArgs) -> ExitCode {
    let Some((ip, port)) = args
        .target
        .rsplit_once(':')
        .and_then(|(ip, port)| Some((ip.parse::<Ipv4Addr>().ok()?, port.parse::<u16>().ok()?)))
    else {
        eprintln!(
            "nsctl resolve: {:?} is not IP:PORT (e.g. 10.0.0.1:7777)",
            args.target
        );
        return ExitCode::from(2);
    };
    let protocol = match args.proto {
        Proto::Udp => 17,
        Proto::Tcp => 6,
    };
    let socket = match netclient::sys::ArpSocket::open(&args.iface) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nsctl resolve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let me = socket.mac();
    let request = xarp::resolve_request(me, args.source_ip, ip, protocol, port);
    let per_try = Duration::from_millis(args.timeout_ms.max(3) / 3);
    for _ in 0..3 {
        if let Err(e) = socket.send(&request) {
            eprintln!("nsctl resolve: sending on {}: {e}", args.iface);
            return ExitCode::FAILURE;
        }
        let deadline = Instant::now() + per_try;
        match socket.recv_until(deadline, |f| xarp::parse_reply(f, me, ip, protocol, port)) {
            Ok(Some(r)) => {
                let kind = match r.status {
                    ResolveStatus::Application => "application",
                    ResolveStatus::Canonical => "canonical",
                };
                println!("{} {kind}", format_mac(&r.mac));
                return ExitCode::SUCCESS;
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("nsctl resolve: receiving on {}: {e}", args.iface);
                return ExitCode::FAILURE;
            }
        }
    }
    eprintln!(
        "nsctl resolve: no extended-ARP answer for {ip}:{port} on {} (is a netserver with --ip {ip} on this link?)",
        args.iface
    );
    ExitCode::FAILURE
}

pub fn rule(command: RuleCommand) -> ExitCode {
    let socket = match &command {
        RuleCommand::Add { socket, .. }
        | RuleCommand::Remove { socket, .. }
        | RuleCommand::List { socket } => socket.path(),
    };
    let run = async move {
        let op = Operator::connect(&socket).await?;
        match command {
            RuleCommand::Add {
                action, expression, ..
            } => {
                let action = match action {
                    Action::Drop => RuleAction::Drop,
                    Action::Count => RuleAction::Count,
                };
                let id = op.add_rule(action, &expression.text()).await?;
                println!("{id}");
            }
            RuleCommand::Remove { id, .. } => op.remove_rule(id).await?,
            RuleCommand::List { .. } => {
                for r in op.rules().await? {
                    println!(
                        "{:>4} {:<5} packets={} bytes={} {}",
                        r.id,
                        format!("{:?}", r.action).to_lowercase(),
                        r.packets,
                        r.bytes,
                        r.expression
                    );
                }
            }
        }
        Ok::<(), netclient::Error>(())
    };
    finish("rule", netclient::block_on(run))
}

pub fn host(socket: SocketArg) -> ExitCode {
    let path = socket.path();
    let run = async move {
        let op = Operator::connect(&path).await?;
        let s = op.host_stats().await?;
        if !s.configured {
            println!("not a host (start the server with --ip A.B.C.D/LEN)");
        } else {
            println!(
                "ip={}/{} mac={}",
                s.ip.map_or("?".into(), |i| i.to_string()),
                s.prefix_length,
                s.mac.map_or("?".into(), |m| format_mac(&m))
            );
        }
        println!(
            "control_replies={} mac_fast_path={} tx_sent={} tx_refused={} tx_errors={} host_sent={} neighbours={}",
            s.control_replies, s.mac_fast_path, s.tx_sent, s.refused(), s.tx_errors, s.host_sent, s.neighbours
        );
        for d in s.tx_refused.iter().filter(|d| d.count > 0) {
            println!("  refused {}={}", d.reason, d.count);
        }
        for b in &s.bindings {
            println!(
                "  bound {}/{} mac={}{} tag={:#018x}",
                b.transport,
                b.port,
                format_mac(&b.mac),
                if b.own_mac { " (own)" } else { "" },
                b.tag
            );
        }
        Ok::<(), netclient::Error>(())
    };
    finish("host", netclient::block_on(run))
}

fn finish(what: &str, r: std::io::Result<netclient::Result<()>>) -> ExitCode {
    match r {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("nsctl {what}: {e}");
            if e.is_caller_error() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("nsctl {what}: cannot start a runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
