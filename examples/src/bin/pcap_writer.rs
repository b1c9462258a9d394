//! `pcap_writer`: writes every frame a filter receives to a pcap file
//! (classic pcap, link type Ethernet, nanosecond timestamps) that Wireshark
//! and tcpdump open.
//!
//! ```text
//! pcap_writer --socket /tmp/netserver.sock --filter 'udp port 53' --out dns.pcap --count 100
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};

#[derive(Parser)]
#[command(about = "Write what a netserver filter receives to a pcap file")]
struct Args {
    /// The server's client socket (default: $NETSERVER_SOCKET, else /tmp/netserver.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// pcap-filter expression to install.
    #[arg(long, value_name = "EXPR")]
    filter: String,
    /// The pcap file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Stop after this many frames (default: until killed; the file is
    /// written unbuffered, so it is valid at any time).
    #[arg(long)]
    count: Option<u64>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let file = match std::fs::File::create(&args.out) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("pcap_writer: cannot create {}: {e}", args.out.display());
            return ExitCode::from(2);
        }
    };
    let socket = args.socket.unwrap_or_else(netclient::default_socket_path);
    let run = async move {
        let client = netclient::connect(&socket).await?;
        let snaplen = client.info().frame_size;
        let mut fetch = client.install(&args.filter).await?;
        let header = PcapHeader {
            snaplen,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            ..Default::default()
        };
        let mut writer = PcapWriter::with_header(file, header).map_err(|e| {
            netclient::Error::InvalidArgument(format!("writing the pcap header: {e}"))
        })?;
        println!("writing {:?} to {}", args.filter, args.out.display());
        let mut written = 0u64;
        while args.count.is_none_or(|c| written < c) {
            let packets = fetch.fetch_batch(64).await?;
            if packets.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            for p in packets {
                let packet =
                    PcapPacket::new(Duration::from_nanos(p.timestamp_ns), p.wire_len, &p.data);
                writer
                    .write_packet(&packet)
                    .map_err(|e| netclient::Error::InvalidArgument(format!("writing: {e}")))?;
                written += 1;
                if args.count.is_some_and(|c| written >= c) {
                    break;
                }
            }
        }
        println!("wrote {written} frames");
        Ok::<(), netclient::Error>(())
    };
    match netclient::block_on(run) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("pcap_writer: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("pcap_writer: {e}");
            ExitCode::FAILURE
        }
    }
}
