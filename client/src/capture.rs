//! Classic pcap files: read a capture to inject, write received frames.
//!
//! Reading is lenient about per-record lengths (libpcap accepts records
//! whose original length exceeds the file's snap length, and so do we);
//! only Ethernet captures are accepted, since that is what the server's
//! filters and NIC see.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapReader, PcapWriter, RawPcapPacket};
use pcap_file::{DataLink, TsResolution};

/// A pcap file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a classic pcap file ({source}); convert pcapng with `editcap -F pcap`", path.display())]
    Format {
        path: PathBuf,
        source: pcap_file::PcapError,
    },
    #[error("{} has link type {link:?}; only Ethernet captures can be injected", path.display())]
    LinkType { path: PathBuf, link: DataLink },
    #[error("{}: record {index} is unreadable: {source}", path.display())]
    Record {
        path: PathBuf,
        index: usize,
        source: pcap_file::PcapError,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: pcap_file::PcapError,
    },
}

/// One record of a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedFrame {
    /// Capture time, since the Unix epoch.
    pub timestamp: Duration,
    /// Length on the wire (≥ `data.len()`).
    pub wire_len: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
}

/// Reads every record of the Ethernet pcap file at `path`, in order.
pub fn read_pcap(path: &Path) -> Result<Vec<CapturedFrame>, CaptureError> {
    let file = File::open(path).map_err(|source| CaptureError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader =
        PcapReader::new(BufReader::new(file)).map_err(|source| CaptureError::Format {
            path: path.to_path_buf(),
            source,
        })?;
    let header = reader.header();
    if header.datalink != DataLink::ETHERNET {
        return Err(CaptureError::LinkType {
            path: path.to_path_buf(),
            link: header.datalink,
        });
    }
    let mut frames = Vec::new();
    while let Some(record) = reader.next_raw_packet() {
        let raw = record.map_err(|source| CaptureError::Record {
            path: path.to_path_buf(),
            index: frames.len(),
            source,
        })?;
        let nanos = match header.ts_resolution {
            TsResolution::MicroSecond => u64::from(raw.ts_frac) * 1_000,
            TsResolution::NanoSecond => u64::from(raw.ts_frac),
        };
        let data = raw.data.into_owned();
        let captured = u32::try_from(data.len()).unwrap_or(u32::MAX);
        frames.push(CapturedFrame {
            timestamp: Duration::from_secs(u64::from(raw.ts_sec)) + Duration::from_nanos(nanos),
            wire_len: raw.orig_len.max(captured),
            data,
        });
    }
    Ok(frames)
}

/// Writes frames to a classic pcap file (Ethernet, microsecond timestamps)
/// that tcpdump and Wireshark open. Records are buffered; [`PcapSink::finish`]
/// (or dropping the sink) flushes them.
pub struct PcapSink {
    writer: Option<PcapWriter<BufWriter<File>>>,
    path: PathBuf,
}

/// Snap length written in the file header: tcpdump's maximum, so the
/// largest frames the server delivers (jumbo, BIG TCP) fit.
const SNAPLEN: u32 = 262_144;

impl PcapSink {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<PcapSink, CaptureError> {
        let file = File::create(path).map_err(|source| CaptureError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let header = PcapHeader {
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::MicroSecond,
            endianness: pcap_file::Endianness::native(),
            ..PcapHeader::default()
        };
        let writer = PcapWriter::with_header(BufWriter::new(file), header).map_err(|source| {
            CaptureError::Write {
                path: path.to_path_buf(),
                source,
            }
        })?;
        Ok(PcapSink {
            writer: Some(writer),
            path: path.to_path_buf(),
        })
    }

    /// Appends one frame received at `timestamp_ns` (since the epoch).
    pub fn write(
        &mut self,
        timestamp_ns: u64,
        wire_len: u32,
        data: &[u8],
    ) -> Result<(), CaptureError> {
        let incl_len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let raw = RawPcapPacket {
            ts_sec: u32::try_from(timestamp_ns / 1_000_000_000).unwrap_or(u32::MAX),
            ts_frac: u32::try_from((timestamp_ns % 1_000_000_000) / 1_000).unwrap_or(0),
            incl_len,
            orig_len: wire_len.max(incl_len),
            data: std::borrow::Cow::Borrowed(data),
        };
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        writer
            .write_raw_packet(&raw)
            .map(|_| ())
            .map_err(|source| CaptureError::Write {
                path: self.path.clone(),
                source,
            })
    }

    /// Flushes every record and closes the file.
    pub fn finish(mut self) -> Result<(), CaptureError> {
        self.flush_and_close()
    }

    fn flush_and_close(&mut self) -> Result<(), CaptureError> {
        match self.writer.take() {
            Some(writer) => writer
                .into_writer()
                .flush()
                .map_err(|e| CaptureError::Write {
                    path: self.path.clone(),
                    source: pcap_file::PcapError::IoError(e),
                }),
            None => Ok(()),
        }
    }
}

impl Drop for PcapSink {
    fn drop(&mut self) {
        if let Err(error) = self.flush_and_close() {
            tracing::warn!(%error, "pcap file left incomplete");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../filters/tests/data/pcaps")
    }

    #[test]
    fn every_bundled_capture_reads_and_round_trips() {
        let dir = data_dir();
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).expect("filters/tests/data/pcaps exists") {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("pcap") {
                continue;
            }
            files += 1;
            let frames = read_pcap(&path).unwrap();
            assert!(!frames.is_empty(), "{}", path.display());
            let out = std::env::temp_dir().join(format!(
                "netclient-roundtrip-{}-{files}.pcap",
                std::process::id()
            ));
            let mut sink = PcapSink::create(&out).unwrap();
            for f in &frames {
                let ns = f.timestamp.as_nanos() as u64;
                sink.write(ns, f.wire_len, &f.data).unwrap();
            }
            sink.finish().unwrap();
            let back = read_pcap(&out).unwrap();
            std::fs::remove_file(&out).unwrap();
            assert_eq!(back.len(), frames.len());
            for (a, b) in frames.iter().zip(&back) {
                assert_eq!(a.data, b.data);
                assert_eq!(a.wire_len, b.wire_len);
                assert_eq!(a.timestamp.as_micros(), b.timestamp.as_micros());
            }
        }
        assert!(
            files >= 5,
            "found only {files} captures in {}",
            dir.display()
        );
    }

    #[test]
    fn a_missing_or_non_pcap_file_says_so() {
        let e = read_pcap(Path::new("/nonexistent/x.pcap")).unwrap_err();
        assert!(e.to_string().contains("cannot open"), "{e}");
        let bogus =
            std::env::temp_dir().join(format!("netclient-bogus-{}.pcap", std::process::id()));
        std::fs::write(&bogus, b"this is not a capture at all").unwrap();
        let e = read_pcap(&bogus).unwrap_err();
        std::fs::remove_file(&bogus).unwrap();
        assert!(e.to_string().contains("not a classic pcap"), "{e}");
    }
}
