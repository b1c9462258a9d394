//! Classification cost as the number of installed filters grows.
//!
//! Filter sets ([`filters::workload`]; ports P = 1024 + i, hosts
//! A = 10.x.y.1): `udp dst port P`, `tcp dst port P`,
//! `ip dst host A and udp dst port P`, at 1, 1,000 and 10,000 filters.
//! Traffic: every packet of the captures in `tests/data/pcaps/` (or
//! `$FILTERS_BENCH_PCAPS`) plus 1,000 packets aimed at filters of the set,
//! shuffled together. Criterion reports time per packet (throughput in
//! elements).
//!
//! `naive` evaluates every filter on every packet, as N sockets with one
//! filter each would (up to 1,000 filters: at 10,000 it only gets slower in
//! proportion). `install` times one insert plus one remove on a full set:
//! the cost of publishing a new classifier.
//!
//! Run: `cargo bench -p filters --bench classify`; see `filters/BENCH.md`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use filters::workload::Kind;
use filters::{FilterSet, Limits, Program};

const SIZES: [usize; 3] = [1, 1_000, 10_000];

/// One packet: captured bytes and length on the wire.
type Packet = (Vec<u8>, u32);

/// Where the captures are: `$FILTERS_BENCH_PCAPS`, else the crate's test
/// data.
fn capture_dir() -> PathBuf {
    std::env::var_os("FILTERS_BENCH_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/pcaps"))
}

/// Every packet of every capture, files in name order.
fn capture_packets() -> Vec<Packet> {
    let dir = capture_dir();
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
        // Raw records: like libpcap, accept an original length above the
        // snap length.
        while let Some(Ok(raw)) = reader.next_raw_packet() {
            let captured = raw.data.len() as u32;
            packets.push((raw.data.into_owned(), raw.orig_len.max(captured)));
        }
    }
    if packets.is_empty() {
        eprintln!("no captures in {}: aimed traffic only", dir.display());
    }
    packets
}

/// The capture and the packets aimed at the set, shuffled together.
fn traffic(kind: Kind, filters: usize, capture: &[Packet]) -> Vec<Packet> {
    let mut traffic = capture.to_vec();
    for frame in kind.aimed_traffic(filters) {
        let wire_len = frame.len() as u32;
        traffic.push((frame, wire_len));
    }
    let (mut mixed, mut state) = (Vec::with_capacity(traffic.len()), 0x2545_f491_u32);
    while !traffic.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        mixed.push(traffic.swap_remove(state as usize % traffic.len()));
    }
    mixed
}

fn program(kind: Kind, i: usize) -> Program {
    filters::compile(&kind.expression(i)).expect("bench expressions compile")
}

fn filter_set(kind: Kind, filters: usize) -> FilterSet {
    let mut set = FilterSet::with_seed(Limits::default(), 0x0062_656e_6368);
    for i in 0..filters {
        set.insert(i as u64 + 1, program(kind, i))
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
    for (kind, filters) in Kind::ALL.into_iter().flat_map(|k| SIZES.map(|n| (k, n))) {
        let mut set = filter_set(kind, filters);
        let extra = program(kind, filters);
        let name = format!("insert_remove_{}", kind.name());
        group.bench_function(BenchmarkId::new(name, filters), |b| {
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
