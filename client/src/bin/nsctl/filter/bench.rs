//! `nsctl filter bench`: the merged classifier against one filter after
//! another.
//!
//! Installs every expression of `--filters` (one per line; blank lines and
//! lines starting with `#` are skipped) as its own filter, checks once that
//! the trie and the naive evaluation pick the same filter for every packet
//! of `--pcap`, then classifies every packet over and over for `--seconds`
//! each way and prints one JSON line:
//!
//! ```text
//! {"filters":N,"packets":P,"ns_per_packet":X,"naive_ns_per_packet":Y}
//! ```
//!
//! `naive` evaluates every filter on every packet, as N sockets with one
//! filter each would. Lists for the standard sets come from
//! `filters/benches/gen-filters.sh` (see `filters/BENCH.md`).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use filters::{FilterSet, Limits, Program, Tag};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Classic pcap file whose packets are classified over and over.
    #[arg(long)]
    pub pcap: PathBuf,
    /// File with one filter expression per line; each becomes its own filter.
    #[arg(long)]
    pub filters: PathBuf,
    /// How long to measure each of the two columns.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
}

/// One packet: captured bytes and length on the wire.
type Packet = (Vec<u8>, u32);

pub fn bench(args: BenchArgs) -> ExitCode {
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("nsctl filter bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &BenchArgs) -> Result<String, String> {
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        return Err(format!("--seconds must be positive, not {}", args.seconds));
    }
    let packets = read_packets(&args.pcap)?;
    if packets.is_empty() {
        return Err(format!("{}: no packets to classify", args.pcap.display()));
    }
    let programs = read_programs(&args.filters)?;
    let mut set = FilterSet::new(Limits::default());
    for (index, program) in programs.iter().enumerate() {
        set.insert(tag_of(index), program.clone())
            .map_err(|err| format!("{}: filter {}: {err}", args.filters.display(), index + 1))?;
    }
    let classifier = set.classifier();
    check_agreement(&packets, &programs, |frame, len| {
        classifier.classify(frame, len)
    })?;

    let budget = Duration::from_secs_f64(args.seconds);
    let trie = time_per_packet(&packets, budget, |frame, len| {
        classifier.classify(frame, len)
    });
    let naive = time_per_packet(&packets, budget, |frame, len| {
        let matched = programs.iter().filter(|p| p.matches(frame, len)).count();
        matched as Tag
    });
    let line = serde_json::json!({
        "filters": programs.len(),
        "packets": packets.len(),
        "ns_per_packet": round2(trie),
        "naive_ns_per_packet": round2(naive),
    });
    Ok(line.to_string())
}

fn tag_of(index: usize) -> Tag {
    index as Tag + 1
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn read_packets(path: &Path) -> Result<Vec<Packet>, String> {
    let file = std::fs::File::open(path).map_err(|err| format!("{}: {err}", path.display()))?;
    let mut reader = pcap_file::pcap::PcapReader::new(file)
        .map_err(|err| format!("{}: not a classic pcap file: {err}", path.display()))?;
    let mut packets = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.map_err(|err| format!("{}: {err}", path.display()))?;
        packets.push((packet.data.into_owned(), packet.orig_len));
    }
    Ok(packets)
}

fn read_programs(path: &Path) -> Result<Vec<Program>, String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
    let mut programs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let expression = line.trim();
        if expression.is_empty() || expression.starts_with('#') {
            continue;
        }
        let program = filters::compile(expression)
            .map_err(|err| format!("{}:{}: `{expression}`: {err}", path.display(), number + 1))?;
        programs.push(program);
    }
    if programs.is_empty() {
        return Err(format!("{}: no filter expressions", path.display()));
    }
    Ok(programs)
}

/// Fails if the trie ever picks another filter than the naive evaluation
/// (most specific match, first listed on a tie): that would be a bug.
fn check_agreement(
    packets: &[Packet],
    programs: &[Program],
    classify: impl Fn(&[u8], u32) -> Tag,
) -> Result<(), String> {
    for (number, (frame, wire_len)) in packets.iter().enumerate() {
        let mut best: Option<(usize, Tag)> = None;
        for (index, program) in programs.iter().enumerate() {
            if let Some(specificity) = program.specificity(frame, *wire_len) {
                if best.is_none_or(|(b, _)| specificity > b) {
                    best = Some((specificity, tag_of(index)));
                }
            }
        }
        let expected = best.map_or(filters::NOT_INTERESTED, |(_, tag)| tag);
        let got = classify(frame, *wire_len);
        if got != expected {
            return Err(format!(
                "packet {}: trie chose filter {got}, naive evaluation {expected} (please report)",
                number + 1
            ));
        }
    }
    Ok(())
}

/// Classifies every packet over and over for about `budget`; returns the
/// mean nanoseconds per packet.
fn time_per_packet(
    packets: &[Packet],
    budget: Duration,
    classify: impl Fn(&[u8], u32) -> Tag,
) -> f64 {
    let started = Instant::now();
    let mut classified = 0u64;
    let mut sink = 0;
    while started.elapsed() < budget {
        for (frame, wire_len) in packets {
            sink ^= classify(black_box(frame), *wire_len);
        }
        classified += packets.len() as u64;
    }
    black_box(sink);
    started.elapsed().as_nanos() as f64 / classified as f64
}
