//! `nsctl`: install filters on a netserver, watch what they receive, and
//! inspect the server. `nsctl filter …` works offline on pcap files.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod filter;
mod host;
mod server;

/// A pcap-filter expression given as one or more words, joined with spaces
/// as tcpdump does: `nsctl install udp port 53` and `nsctl install 'udp
/// port 53'` are the same. Every command that takes an expression takes it
/// this way.
#[derive(Args)]
pub struct ExpressionArg {
    /// pcap-filter expression (several words are joined with spaces, as
    /// tcpdump does).
    #[arg(required = true, num_args = 1.., value_name = "EXPRESSION")]
    words: Vec<String>,
}

impl ExpressionArg {
    /// The expression as one string.
    pub fn text(&self) -> String {
        self.words.join(" ")
    }
}

#[derive(Parser)]
#[command(name = "nsctl", version, about = "netserver control tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with filter expressions offline (no server needed).
    #[command(subcommand)]
    Filter(filter::FilterCommand),
    #[command(flatten)]
    Server(server::ServerCommand),
    /// Resolve IP:PORT to the MAC of the application bound to it, over the
    /// wire (extended ARP; raw socket, needs root). Prints `MAC application`
    /// or `MAC canonical`.
    Resolve(host::ResolveArgs),
    /// Operator firewall rules (drop/count by filter expression).
    #[command(subcommand)]
    Rule(host::RuleCommand),
    /// The server's control plane: identity, bindings, transmit counters (operator).
    Host(server::SocketArg),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Filter(command) => filter::run(command),
        Command::Server(command) => server::run(command),
        Command::Resolve(args) => host::resolve(args),
        Command::Rule(command) => host::rule(command),
        Command::Host(socket) => host::host(socket),
    }
}
