//! `nsctl filter eval` and `nsctl filter compile`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Classic pcap file (Ethernet link type) to evaluate on.
    #[arg(long)]
    pub pcap: PathBuf,
    /// pcap-filter expression.
    pub expression: String,
}

#[derive(clap::Args)]
pub struct CompileArgs {
    /// pcap-filter expression.
    pub expression: String,
}

pub fn eval(args: EvalArgs) -> ExitCode {
    let _ = args;
    eprintln!("nsctl filter eval: not built yet");
    ExitCode::from(2)
}

pub fn compile(args: CompileArgs) -> ExitCode {
    let _ = args;
    eprintln!("nsctl filter compile: not built yet");
    ExitCode::from(2)
}
