//! `netserver bench af_packet`: the server's delivery rate over a real
//! interface against the bare AF_PACKET reader, on the same traffic.

use clap::Args;

use super::{BenchError, Row};

/// `netserver bench af_packet` options.
#[derive(Args, Debug, Clone)]
pub struct AfPacketArgs {
    /// Interface to read, or `auto` to build a veth pair in two fresh network
    /// namespaces (needs root and iproute2).
    #[arg(long, value_name = "IFACE|auto")]
    pub iface: String,
    /// One JSON object per line and case.
    #[arg(long)]
    pub json: bool,
}

/// Runs the comparison.
pub fn run(args: &AfPacketArgs) -> Result<Vec<Row>, BenchError> {
    Err(BenchError::Usage(format!(
        "bench af_packet --iface {}: not built yet",
        args.iface
    )))
}
