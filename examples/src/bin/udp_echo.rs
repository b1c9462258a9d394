//! `udp_echo`: a user-level UDP echo server built only on the client
//! library. It binds a UDP port of the server's IP (optionally with a MAC of
//! its own), receives each datagram through the bind's filter, and sends it
//! back from the binding — header and payload posted as two parts
//! (scatter-gather), the server checking the source MAC, IP and port.
//!
//! ```text
//! netserver serve --backend af_packet:eth0 --ip 10.0.0.1/24 &
//! udp_echo --socket /tmp/netserver.sock --port 7777 --own-mac
//! ```
//!
//! Prints `bound udp/PORT mac=MAC own|canonical` once ready, then one line
//! per echo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use etherparse::{LinkSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use netclient::{format_mac, BindOptions, Transport};

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
        let info = *binding.info();
        println!(
            "bound udp/{} mac={} {}",
            info.port,
            format_mac(&info.mac),
            if info.own_mac { "own" } else { "canonical" }
        );
        let mut echoed = 0u64;
        loop {
            let packets = fetch.fetch_batch(32).await?;
            if packets.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                continue;
            }
            for p in packets {
                let Some((header, payload)) = echo_of(&p.data, info.mac, info.port) else {
                    continue;
                };
                binding.send_parts(&header, &payload).await?;
                echoed += 1;
                println!("echo {} bytes", payload.len());
                if args.count.is_some_and(|c| echoed >= c) {
                    return Ok(());
                }
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
