//! `netserver demo` (work in progress).

/// Demo options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {}

/// Runs the demo.
pub fn run(_args: DemoArgs) -> Result<(), String> {
    Err("not written yet".into())
}
