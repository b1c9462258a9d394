//! A client process for the end-to-end tests that installs one filter and
//! then holds its capability without ever fetching (the slow client whose
//! packets must overflow, and the process a test kills to check that a
//! closed connection frees the filter's buffers).
//!
//! `e2e-hold-client --socket PATH --expr EXPRESSION [--queue-limit N] [--mode shared|emulated]`
//! prints `installed tag=0x…` on stderr once installed, then waits forever.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut socket = None;
    let mut expr = None;
    let mut queue_limit = 0u32;
    let mut shared = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match arg.as_str() {
            "--socket" => socket = Some(value("--socket")),
            "--expr" => expr = Some(value("--expr")),
            "--mode" => shared = value("--mode") == "shared",
            "--queue-limit" => {
                queue_limit = value("--queue-limit")
                    .parse()
                    .expect("--queue-limit takes a number")
            }
            other => {
                eprintln!("e2e-hold-client: unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(socket), Some(expr)) = (socket, expr) else {
        eprintln!("usage: e2e-hold-client --socket PATH --expr EXPRESSION [--queue-limit N]");
        return ExitCode::from(2);
    };
    let result = netclient::block_on(async move {
        let client = netclient::connect(&socket).await?;
        let options = netclient::InstallOptions::default()
            .queue_limit(queue_limit)
            .shared(shared);
        let fetch = client.install_with(&expr, &options).await?;
        eprintln!(
            "e2e-hold-client: installed tag={:#018x} {expr}",
            fetch.tag()
        );
        // Hold the capability (and keep the connection serviced) forever.
        std::future::pending::<()>().await;
        drop(fetch);
        Ok::<_, netclient::Error>(())
    });
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("e2e-hold-client: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("e2e-hold-client: {e}");
            ExitCode::FAILURE
        }
    }
}
