//! `udp_echo`: a user-level UDP echo server built only on the client
//! library. It binds a UDP port of the server's IP (optionally with a MAC of
//! its own), receives each datagram through the bind's filter, and sends it
//! back from its own pages, fbufs-style: the reply's headers written into
//! one page and its payload into another, posted as one frame
//! (scatter-gather) with `Fetch::transmit_parts`; the server checks the
//! source MAC, IP and port and gives the pages back on the completion ring.
//!
//! By default the fetch is in shared mode (an exchange region: the pages
//! are posted on its tx ring with no system call); `--emulated` (or a server
//! on another host) keeps emulated mode, where the same calls carry the
//! bytes in the RPC.
//!
//! ```text
//! netserver serve --backend af_packet:eth0 --ip 10.0.0.1/24 &
//! udp_echo --socket /tmp/netserver.sock --port 7777 --own-mac
//! ```
//!
//! Prints `bound udp/PORT mode=shared|emulated mac=MAC own|canonical` once
//! ready, then one line per echo.

use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use clap::Parser;
use etherparse::{LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use netclient::{format_mac, BindOptions, Fetch, Transport, TxDone, TxStatus};

#[derive(Parser)]
#[command(about = "User-level UDP echo server on netserver")]
struct Args {
    /// The server's client socket (default: $NETSERVER_SOCKET, else /tmp/netserver.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// The UDP port to bind on the server's IP.
    #[arg(long)]
    port: u16,
    /// Ask for a MAC of the application's own.
    #[arg(long)]
    own_mac: bool,
    /// Exit after this many echoes (default: run until killed).
    #[arg(long)]
    count: Option<u64>,
    /// Stay in emulated mode (bytes in the RPC) instead of shared mode.
    #[arg(long)]
    emulated: bool,
}

/// Takes finished transmits; fails on one the server refused or could not
/// send. Returns how many finished.
fn reap(fetch: &mut Fetch) -> Result<usize, netclient::Error> {
    let mut bad: Option<TxDone> = None;
    let n = fetch.completions(|done| {
        if done.status != TxStatus::Sent {
            bad.get_or_insert(done);
        }
    })?;
    match bad {
        None => Ok(n),
        Some(done) => Err(netclient::Error::InvalidArgument(format!(
            "the server did not send an echo: {:?}",
            done.status
        ))),
    }
}

/// A spare page to write into, waiting for completions if all are posted.
async fn page(fetch: &mut Fetch, in_flight: &mut usize) -> Result<u32, netclient::Error> {
    loop {
        if let Some(p) = fetch.tx_page() {
            return Ok(p);
        }
        if *in_flight == 0 {
            return Err(netclient::Error::InvalidArgument(
                "no spare page to write an echo into: install with more frames".into(),
            ));
        }
        fetch.wait_completions(Duration::from_millis(100)).await?;
        *in_flight -= reap(fetch)?;
    }
}

/// The echo of one received frame, if it is a UDP datagram to our port.
fn echo_of(frame: &[u8], mac: [u8; 6], port: u16) -> Option<(Vec<u8>, Vec<u8>)> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(LinkSlice::Ethernet2(eth)) = p.link else {
        return None;
    };
    let Some(NetSlice::Ipv4(ip)) = p.net else {
        return None;
    };
    let Some(TransportSlice::Udp(udp)) = p.transport else {
        return None;
    };
    if udp.destination_port() != port {
        return None;
    }
    let payload = udp.payload().to_vec();
    let builder = PacketBuilder::ethernet2(mac, eth.source())
        .ipv4(ip.header().destination(), ip.header().source(), 64)
        .udp(port, udp.source_port());
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, &payload).ok()?;
    // Header page and payload page: the frame minus its payload, then the payload.
    let header = frame[..frame.len() - payload.len()].to_vec();
    Some((header, payload))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let socket = args.socket.unwrap_or_else(netclient::default_socket_path);
    let run = async move {
        let client = netclient::connect(&socket).await?;
        let options = BindOptions {
            own_mac: args.own_mac,
            ..Default::default()
        };
        let (mut fetch, binding) = client.bind(Transport::Udp, args.port, &options).await?;
        if !args.emulated {
            if let Err(e) = fetch.attach_shared().await {
                eprintln!("udp_echo: staying in emulated mode: {e}");
            }
        }
        let info = *binding.info();
        println!(
            "bound udp/{} mode={} mac={} {}",
            info.port,
            if fetch.is_shared() {
                "shared"
            } else {
                "emulated"
            },
            format_mac(&info.mac),
            if info.own_mac { "own" } else { "canonical" }
        );
        let mut echoed = 0u64;
        // Frames posted whose pages have not come back.
        let mut in_flight = 0usize;
        loop {
            in_flight -= reap(&mut fetch)?;
            if args.count.is_some_and(|c| echoed >= c) {
                if in_flight == 0 {
                    return Ok(());
                }
                fetch.wait_completions(Duration::from_millis(100)).await?;
                continue;
            }
            let packets = fetch.fetch_batch(32).await?;
            if packets.is_empty() {
                fetch.idle(Duration::from_millis(2)).await?;
                continue;
            }
            for p in packets {
                if args.count.is_some_and(|c| echoed >= c) {
                    break;
                }
                let Some((header, payload)) = echo_of(&p.data, info.mac, info.port) else {
                    continue;
                };
                // Write the reply into two of our own pages, then post them:
                // from here until their completion they are the server's.
                let h = page(&mut fetch, &mut in_flight).await?;
                fetch.frame_mut(h)?[..header.len()].copy_from_slice(&header);
                if payload.is_empty() {
                    fetch.transmit(&binding, h, header.len()).await?;
                    in_flight += 1;
                    echoed += 1;
                    println!("echo 0 bytes");
                    continue;
                }
                let d = match page(&mut fetch, &mut in_flight).await {
                    Ok(d) => d,
                    Err(e) => {
                        fetch.release(h)?;
                        return Err(e);
                    }
                };
                fetch.frame_mut(d)?[..payload.len()].copy_from_slice(&payload);
                fetch
                    .transmit_parts(&binding, h, header.len(), d, payload.len())
                    .await?;
                in_flight += 1;
                echoed += 1;
                println!("echo {} bytes", payload.len());
            }
        }
    };
    match netclient::block_on(run) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            let e: netclient::Error = e;
            eprintln!("udp_echo: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("udp_echo: {e}");
            ExitCode::FAILURE
        }
    }
}
