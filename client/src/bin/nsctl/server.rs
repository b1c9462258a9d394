//! The `nsctl` commands that talk to a running server.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum ServerCommand {}

pub fn run(command: ServerCommand) -> ExitCode {
    match command {}
}
