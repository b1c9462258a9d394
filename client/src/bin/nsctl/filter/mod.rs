//! `nsctl filter eval|compile|bench`: the filter language, offline.

use std::process::ExitCode;

use clap::Subcommand;

mod bench;
mod eval;

#[derive(Subcommand)]
pub enum FilterCommand {
    /// Print the per-packet match bitmap of EXPRESSION over a pcap file.
    Eval(eval::EvalArgs),
    /// Print the atom program EXPRESSION compiles to.
    Compile(eval::CompileArgs),
    /// Benchmark the merged classifier against one-filter-after-another.
    Bench(bench::BenchArgs),
}

pub fn run(command: FilterCommand) -> ExitCode {
    match command {
        FilterCommand::Eval(args) => eval::eval(args),
        FilterCommand::Compile(args) => eval::compile(args),
        FilterCommand::Bench(args) => bench::bench(args),
    }
}
