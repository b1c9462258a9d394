//! `nsctl filter bench`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Classic pcap file whose packets are classified over and over.
    #[arg(long)]
    pub pcap: PathBuf,
    /// File with one filter expression per line; each becomes its own filter.
    #[arg(long)]
    pub filters: PathBuf,
    /// How long to measure each of the two columns.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
}

pub fn bench(args: BenchArgs) -> ExitCode {
    let _ = args;
    eprintln!("nsctl filter bench: not built yet");
    ExitCode::from(2)
}
