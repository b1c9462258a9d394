//! Classification cost as the number of installed filters grows.
//!
//! Filter sets (distinct ports P = 1024 + i, hosts A = 10.x.y.1):
//! `udp dst port P`, `tcp dst port P`, `ip dst host A and udp dst port P`,
//! at 1, 1,000 and 10,000 filters. Traffic: every packet of the mixed
//! captures (see [`capture_dir`]) plus as many packets aimed at installed
//! filters. Criterion reports time per packet (throughput in elements).
//!
//! `naive` evaluates every filter one after the other, as N sockets with one
//! filter each would (only up to 1,000 filters: at 10,000 it is ~1,000×
//! slower and adds nothing). `install` times one insert plus one remove on
//! a full set.
//!
//! Run: `cargo bench -p filters --bench classify`; see `filters/BENCH.md`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use filters::atom::{Atom, Base, Field, Width};
use filters::{FilterSet, Limits, Program};

const SIZES: [usize; 3] = [1, 1_000, 10_000];

#[derive(Clone, Copy)]
enum Kind {
    Udp,
    Tcp,
    HostAndUdp,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Udp, Kind::Tcp, Kind::HostAndUdp];

    fn name(self) -> &'static str {
        match self {
            Kind::Udp => "udp_dst_port",
            Kind::Tcp => "tcp_dst_port",
            Kind::HostAndUdp => "host_and_udp_port",
        }
    }

    /// The expression of filter `i`, as `nsctl filter bench` lists take it
    /// (`filters/benches/gen-filters.sh` prints the same lists).
    fn expression(self, i: usize) -> String {
        let port = port(i);
        match self {
            Kind::Udp => format!("udp dst port {port}"),
            Kind::Tcp => format!("tcp dst port {port}"),
            Kind::HostAndUdp => {
                let [_, a, b, c] = host(i).to_be_bytes();
                format!("ip dst host 10.{a}.{b}.{c} and udp dst port {port}")
            }
        }
    }

    /// Filter `i` compiled by the front end, or built by hand with
    /// libpcap's semantics while the front end is not there yet.
    fn program(self, i: usize) -> Program {
        filters::compile(&self.expression(i)).unwrap_or_else(|_| self.hand_built(i))
    }

    fn hand_built(self, i: usize) -> Program {
        let port = u32::from(port(i));
        match self {
            Kind::Udp => transport_dst_port(17, port),
            Kind::Tcp => transport_dst_port(6, port),
            Kind::HostAndUdp => {
                let mut ipv4 = transport_dst_port(17, port).alternatives()[0].clone();
                ipv4.push(eq(Field::at(30, Width::Word), host(i)));
                Program::new(vec![ipv4])
            }
        }
    }

    /// A frame that filter `i` claims.
    fn aimed_frame(self, i: usize) -> Vec<u8> {
        let mut frame = match self {
            Kind::Tcp => ipv4_frame(6),
            _ => ipv4_frame(17),
        };
        frame[36..38].copy_from_slice(&port(i).to_be_bytes());
        frame[30..34].copy_from_slice(&host(i).to_be_bytes());
        frame
    }
}

fn port(i: usize) -> u16 {
    1024 + i as u16
}

/// 10.x.y.1 for filter `i`.
fn host(i: usize) -> u32 {
    0x0a00_0001 | ((i as u32) << 8)
}

fn eq(field: Field, value: u32) -> Atom {
    let mask = match field.width {
        Width::Byte => 0xff,
        Width::Half => 0xffff,
        Width::Word => u32::MAX,
    };
    Atom::Eq { field, mask, value }
}

/// `udp|tcp dst port P`: an IPv4 alternative (not a later fragment) and an
/// IPv6 alternative (no extension headers).
fn transport_dst_port(proto: u32, port: u32) -> Program {
    let ipv4 = vec![
        eq(Field::at(12, Width::Half), 0x0800),
        eq(Field::at(23, Width::Byte), proto),
        Atom::Eq {
            field: Field::at(20, Width::Half),
            mask: 0x1fff,
            value: 0,
        },
        eq(
            Field {
                base: Base::Ipv4Payload { ip: 14 },
                offset: 2,
                width: Width::Half,
            },
            port,
        ),
    ];
    let ipv6 = vec![
        eq(Field::at(12, Width::Half), 0x86dd),
        eq(Field::at(20, Width::Byte), proto),
        eq(Field::at(56, Width::Half), port),
    ];
    Program::new(vec![ipv4, ipv6])
}

/// Ethernet + IPv4 (IHL 5) + 20 transport bytes, 64 bytes in all.
fn ipv4_frame(proto: u8) -> Vec<u8> {
    let mut frame = vec![0u8; 64];
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    frame[23] = proto;
    frame[26..30].copy_from_slice(&[192, 168, 0, 1]);
    frame
}

/// Where the mixed captures are: `$FILTERS_BENCH_PCAPS`, else the crate's
/// test data, else the shared data set this project was seeded from.
fn capture_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("FILTERS_BENCH_PCAPS").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")),
        Some(PathBuf::from("/work/shared/data/filters/pcaps")),
    ];
    candidates.into_iter().flatten().find(|dir| {
        std::fs::read_dir(dir).is_ok_and(|mut entries| {
            entries.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "pcap")))
        })
    })
}

/// Every packet (captured bytes, wire length) of every capture.
fn capture_packets() -> Vec<(Vec<u8>, u32)> {
    let Some(dir) = capture_dir() else {
        eprintln!("no captures found: set FILTERS_BENCH_PCAPS; using aimed traffic only");
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|x| x == "pcap"));
    paths.sort();
    let mut packets = Vec::new();
    for path in paths {
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        let Ok(mut reader) = pcap_file::pcap::PcapReader::new(file) else {
            continue;
        };
        while let Some(Ok(packet)) = reader.next_packet() {
            packets.push((packet.data.into_owned(), packet.orig_len));
        }
    }
    packets
}

/// The capture plus as many packets aimed at filters spread over the set.
fn traffic(kind: Kind, filters: usize, capture: &[(Vec<u8>, u32)]) -> Vec<(Vec<u8>, u32)> {
    let aimed_count = capture.len().max(1_000);
    let mut traffic = capture.to_vec();
    for n in 0..aimed_count {
        // A multiplicative stride visits filters in a scattered order.
        let i = (n * 7_919) % filters;
        let frame = kind.aimed_frame(i);
        let wire_len = frame.len() as u32;
        traffic.push((frame, wire_len));
    }
    // Interleave capture and aimed packets.
    let (mut mixed, mut state) = (Vec::with_capacity(traffic.len()), 0x2545_f491_u32);
    while !traffic.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        mixed.push(traffic.swap_remove(state as usize % traffic.len()));
    }
    mixed
}

fn filter_set(kind: Kind, filters: usize) -> FilterSet {
    let mut set = FilterSet::with_seed(Limits::default(), 0x0062_656e_6368);
    for i in 0..filters {
        set.insert(i as u64 + 1, kind.program(i))
            .expect("bench filter installs");
    }
    set
}

fn classify(c: &mut Criterion) {
    let capture = capture_packets();
    for kind in Kind::ALL {
        let mut group = c.benchmark_group(format!("classify/{}", kind.name()));
        for filters in SIZES {
            let set = filter_set(kind, filters);
            let classifier = set.classifier();
            let packets = traffic(kind, filters, &capture);
            group.throughput(Throughput::Elements(packets.len() as u64));
            group.bench_with_input(BenchmarkId::new("trie", filters), &packets, |b, packets| {
                b.iter(|| {
                    let mut claimed = 0u64;
                    for (frame, wire_len) in packets {
                        claimed ^= classifier.classify(black_box(frame), *wire_len);
                    }
                    claimed
                })
            });
            if filters > 1_000 {
                continue;
            }
            let programs: Vec<Program> = set.iter().map(|(_, p)| p.clone()).collect();
            group.bench_with_input(
                BenchmarkId::new("naive", filters),
                &packets,
                |b, packets| {
                    b.iter(|| {
                        let mut matched = 0usize;
                        for (frame, wire_len) in packets {
                            for program in &programs {
                                matched +=
                                    usize::from(program.matches(black_box(frame), *wire_len));
                            }
                        }
                        matched
                    })
                },
            );
        }
        group.finish();
    }
}

fn install(c: &mut Criterion) {
    let mut group = c.benchmark_group("install");
    for filters in SIZES {
        let kind = Kind::Udp;
        let mut set = filter_set(kind, filters);
        let extra = kind.program(filters);
        group.bench_function(BenchmarkId::new("insert_remove_udp", filters), |b| {
            b.iter(|| {
                let tag = u64::MAX;
                set.insert(tag, extra.clone()).expect("installs");
                set.remove(tag).expect("removes")
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
        .sample_size(20);
    targets = classify, install
}
criterion_main!(benches);
