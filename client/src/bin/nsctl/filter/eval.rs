//! `nsctl filter eval` and `nsctl filter compile`.

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;

use filters::{CompileError, Program};

use crate::ExpressionArg;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Classic pcap file (Ethernet link type) to evaluate on.
    #[arg(long)]
    pub pcap: PathBuf,
    #[command(flatten)]
    pub expression: ExpressionArg,
}

#[derive(clap::Args)]
pub struct CompileArgs {
    #[command(flatten)]
    pub expression: ExpressionArg,
}

/// Exit status for an expression the compiler refuses.
const INVALID_FILTER: u8 = 2;
/// Exit status for a capture that cannot be read.
const BAD_CAPTURE: u8 = 1;

/// Prints one line: `1`/`0` per record of the capture, in file order.
pub fn eval(args: EvalArgs) -> ExitCode {
    let program = match compile_expression(&args.expression.text()) {
        Ok(program) => program,
        Err(code) => return code,
    };
    match bitmap(&program, &args.pcap) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("nsctl: {}: {message}", args.pcap.display());
            ExitCode::from(BAD_CAPTURE)
        }
    }
}

/// Prints the atom program, one block per alternative.
pub fn compile(args: CompileArgs) -> ExitCode {
    match compile_expression(&args.expression.text()) {
        Ok(program) => {
            print!("{program}");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// The program, or the exit status after printing why the expression was
/// refused.
fn compile_expression(expression: &str) -> Result<Program, ExitCode> {
    filters::compile(expression).map_err(|error: CompileError| {
        eprintln!("nsctl: invalid filter: {error}");
        ExitCode::from(INVALID_FILTER)
    })
}

fn bitmap(program: &Program, path: &std::path::Path) -> Result<String, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut reader = pcap_file::pcap::PcapReader::new(file).map_err(|e| e.to_string())?;
    let link_type = reader.header().datalink;
    if link_type != pcap_file::DataLink::ETHERNET {
        return Err(format!("link type {link_type:?} is not Ethernet"));
    }
    let mut line = String::new();
    // Raw records: libpcap reads records whose original length exceeds the
    // file's snapshot length, which the validating reader refuses.
    while let Some(record) = reader.next_raw_packet() {
        let record = record.map_err(|e| e.to_string())?;
        let matched = program.matches(&record.data, record.orig_len);
        line.push(if matched { '1' } else { '0' });
    }
    Ok(line)
}
