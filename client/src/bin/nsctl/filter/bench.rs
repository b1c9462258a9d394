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
//! filter each would. Both columns are the median over passes through all
//! packets, so that a pass during which another process took the CPU does
//! not count.
//!
//! `--pcap` may be given several times (the packets of all files, in
//! order). With `--generate KIND --count N` nothing is measured: the
//! standard set of N filters of KIND (`udp`: `udp dst port P`, `tcp`:
//! `tcp dst port P`, `host`: `ip dst host A and udp dst port P`, with
//! P = 1024 + i and A = 10.x.y.1) is written to `--filters`, and 1,000
//! packets aimed at them to `--pcap` — the same sets and traffic as
//! `cargo bench -p filters` (see `filters/BENCH.md`).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use filters::workload::Kind;
use filters::{FilterSet, Limits, Program, Tag};
use netclient::capture::{read_pcap, PcapSink};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Classic pcap file whose packets are classified over and over; repeat
    /// for several files. With --generate: where to write aimed packets.
    #[arg(long, required = true)]
    pub pcap: Vec<PathBuf>,
    /// File with one filter expression per line; each becomes its own filter.
    /// With --generate: where to write the generated list.
    #[arg(long)]
    pub filters: PathBuf,
    /// How long to measure each of the two columns.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Write a generated filter set (udp, tcp or host) and traffic aimed at
    /// it instead of measuring.
    #[arg(long, value_name = "KIND")]
    pub generate: Option<String>,
    /// Number of filters to generate.
    #[arg(long, default_value_t = 1000, requires = "generate")]
    pub count: usize,
    /// Seed of the hash tables' multipliers, to repeat a measurement exactly
    /// (default: random, as in the server).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// One packet: captured bytes and length on the wire.
type Packet = (Vec<u8>, u32);

pub fn bench(args: BenchArgs) -> ExitCode {
    let outcome = match &args.generate {
        Some(kind) => generate(&args, kind),
        None => run(&args),
    };
    match outcome {
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

/// Writes the generated filter list and aimed traffic; returns a summary.
fn generate(args: &BenchArgs, kind: &str) -> Result<String, String> {
    let kind = Kind::from_name(kind)
        .ok_or_else(|| format!("--generate {kind}: expected udp, tcp or host"))?;
    if args.count == 0 || args.count > filters::workload::MAX_FILTERS {
        return Err(format!(
            "--count must be between 1 and {}, not {}",
            filters::workload::MAX_FILTERS,
            args.count
        ));
    }
    let [pcap] = args.pcap.as_slice() else {
        return Err("--generate writes exactly one --pcap file".into());
    };
    let list: String = (0..args.count).map(|i| kind.expression(i) + "\n").collect();
    std::fs::write(&args.filters, list)
        .map_err(|err| format!("{}: {err}", args.filters.display()))?;
    let aimed = kind.aimed_traffic(args.count);
    write_packets(pcap, &aimed)?;
    let summary = serde_json::json!({
        "filters": args.count,
        "packets": aimed.len(),
        "filters_file": args.filters.display().to_string(),
        "pcap": pcap.display().to_string(),
    });
    Ok(summary.to_string())
}

fn write_packets(path: &Path, frames: &[Vec<u8>]) -> Result<(), String> {
    let mut sink = PcapSink::create(path).map_err(|err| err.to_string())?;
    for (n, frame) in frames.iter().enumerate() {
        let timestamp_ns = n as u64 * 1_000;
        sink.write(timestamp_ns, frame.len() as u32, frame)
            .map_err(|err| err.to_string())?;
    }
    sink.finish().map_err(|err| err.to_string())
}

fn run(args: &BenchArgs) -> Result<String, String> {
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        return Err(format!("--seconds must be positive, not {}", args.seconds));
    }
    let mut packets = Vec::new();
    for path in &args.pcap {
        packets.extend(read_packets(path)?);
    }
    if packets.is_empty() {
        return Err("no packets to classify in the --pcap files".into());
    }
    let programs = read_programs(&args.filters)?;
    let mut set = match args.seed {
        Some(seed) => FilterSet::with_seed(Limits::default(), seed),
        None => FilterSet::new(Limits::default()),
    };
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
    let frames = read_pcap(path).map_err(|err| err.to_string())?;
    Ok(frames
        .into_iter()
        .map(|frame| (frame.data, frame.wire_len))
        .collect())
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

/// Classifies every packet over and over for about `budget` (at least three
/// passes); returns the median over passes of nanoseconds per packet.
fn time_per_packet(
    packets: &[Packet],
    budget: Duration,
    classify: impl Fn(&[u8], u32) -> Tag,
) -> f64 {
    let started = Instant::now();
    let mut passes = Vec::new();
    let mut sink = 0;
    while passes.len() < 3 || started.elapsed() < budget {
        let pass = Instant::now();
        for (frame, wire_len) in packets {
            sink ^= classify(black_box(frame), *wire_len);
        }
        passes.push(pass.elapsed().as_nanos() as f64 / packets.len() as f64);
    }
    black_box(sink);
    passes.sort_by(f64::total_cmp);
    passes[passes.len() / 2]
}
