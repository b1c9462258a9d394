//! An adversarial client for the end-to-end tests: installs a filter in
//! shared mode, then scribbles over its own exchange region — random and
//! wrapped producer indices on the fill ring, duplicate and out-of-range
//! frame numbers in its entries, a consumer index on the rx ring that claims
//! entries the server never published — until the server revokes it.
//!
//! `e2e-scribbler --socket PATH --expr EXPRESSION` prints `installed
//! tag=0x…` on stderr once attached, `revoked: MESSAGE` when a call on its
//! capability fails, then holds the connection open forever (so its filter's
//! counters can still be read by the operator).

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn main() -> ExitCode {
    let mut socket = None;
    let mut expr = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match arg.as_str() {
            "--socket" => socket = Some(value("--socket")),
            "--expr" => expr = Some(value("--expr")),
            other => {
                eprintln!("e2e-scribbler: unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(socket), Some(expr)) = (socket, expr) else {
        eprintln!("usage: e2e-scribbler --socket PATH --expr EXPRESSION");
        return ExitCode::from(2);
    };
    let result = netclient::block_on(async move {
        let client = netclient::connect(&socket).await?;
        let options = netclient::InstallOptions::default().shared(true);
        let fetch = client.install_with(&expr, &options).await?;
        eprintln!("e2e-scribbler: installed tag={:#018x} {expr}", fetch.tag());
        let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(std::process::id());
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u32
        };
        let mut round = 0u64;
        loop {
            {
                let (words, layout) = fetch.region_words().expect("attached in shared mode");
                let word = |offset: usize| &words[offset / 4];
                let fill = layout.fill;
                let rx = layout.rx;
                let frames = layout.geometry.frame_count;
                let consumer = word(fill.consumer()).load(Ordering::Acquire);
                let n = 1 + next() % 8;
                for i in 0..n {
                    let slot = consumer.wrapping_add(i) & (fill.entries - 1);
                    let index = match next() % 3 {
                        0 => 0,                      // duplicates: the same page again and again
                        1 => frames + next() % 1000, // out of range
                        _ => next(),                 // anything
                    };
                    word(fill.entries_offset() + 4 * slot as usize).store(index, Ordering::Relaxed);
                }
                let producer = match round % 3 {
                    0 => consumer.wrapping_add(n),
                    1 => consumer.wrapping_sub(1), // behind: wrapped counter
                    _ => consumer.wrapping_add(0x8000_0000), // far ahead
                };
                word(fill.producer()).store(producer, Ordering::Release);
                // Claim rx entries the server never published.
                let rx_producer = word(rx.producer()).load(Ordering::Acquire);
                word(rx.consumer()).store(
                    rx_producer.wrapping_add(next() % 4096 + 1),
                    Ordering::Release,
                );
            }
            round += 1;
            if round.is_multiple_of(10) {
                if let Err(e) = fetch.stats().await {
                    eprintln!("e2e-scribbler: revoked: {e}");
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Hold the connection (the filter stays listed for the operator).
        std::future::pending::<()>().await;
        drop((fetch, client));
        Ok::<_, netclient::Error>(())
    });
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("e2e-scribbler: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("e2e-scribbler: {e}");
            ExitCode::FAILURE
        }
    }
}
