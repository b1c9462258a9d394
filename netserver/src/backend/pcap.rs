//! Replay of a pcap capture as if its frames arrived on a NIC.
//!
//! The file is read on the backend's own thread with tokio-uring's file API,
//! in chunks (memory stays bounded by the chunk size and the largest record),
//! parsed record by record and pushed into the receive ring at `--rate`
//! frames per second (as fast as the data path takes them when no rate is
//! set), from the start again with `--loop`. A replay never drops: when the
//! ring is full the reader waits, like reading a file, not like a wire.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pcap_file::pcap::PcapParser;
use pcap_file::PcapError;

use super::{now_ns, recv_from_ring, Backend, BackendError, RxFrame, Wake};
use crate::pool::RxRing;

const CHUNK: usize = 64 * 1024;

/// How to replay.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOptions {
    /// Frames per second; `None`: as fast as the data path takes them.
    pub rate: Option<f64>,
    /// Start over at the end of the file.
    pub repeat: bool,
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    finished: AtomicBool,
    replayed: AtomicU64,
}

/// The pcap replay backend (data-path side).
#[derive(Debug)]
pub struct PcapReplay {
    name: String,
    ring: Arc<RxRing>,
    shared: Arc<Shared>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl PcapReplay {
    /// Opens `path` (checking that it is a pcap file) and starts the reader
    /// thread.
    pub fn start(
        path: &Path,
        options: ReplayOptions,
        ring_frames: usize,
        frame_size: usize,
        wake: Wake,
    ) -> Result<PcapReplay, BackendError> {
        let ring = Arc::new(RxRing::new(ring_frames, frame_size));
        let shared = Arc::new(Shared::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reader = {
            let (ring, shared, owned) = (ring.clone(), shared.clone(), path.to_path_buf());
            std::thread::Builder::new()
                .name("netserver-pcap".into())
                .spawn(
                    move || match tokio_uring::Runtime::new(&tokio_uring::builder()) {
                        Ok(rt) => rt.block_on(replay(owned, options, ring, shared, wake, ready_tx)),
                        Err(source) => {
                            let _ = ready_tx.send(Err(BackendError::Capture {
                                path: format!(
                                    "{} (the pcap reader needs io_uring)",
                                    owned.display()
                                ),
                                source,
                            }));
                        }
                    },
                )
                .map_err(|source| BackendError::Capture {
                    path: path.display().to_string(),
                    source,
                })?
        };
        // The reader reports whether the file opened and parsed as pcap.
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = reader.join();
                return Err(e);
            }
            Err(_) => {
                let _ = reader.join();
                return Err(BackendError::Format {
                    path: path.display().to_string(),
                    message: "the reader thread stopped before reading the file".into(),
                });
            }
        }
        Ok(PcapReplay {
            name: format!("pcap:{}", path.display()),
            ring,
            shared,
            reader: Some(reader),
        })
    }

    /// Whether a replay without `--loop` has pushed every frame.
    pub fn finished(&self) -> bool {
        self.shared.finished.load(Ordering::Acquire)
    }

    /// Frames pushed into the ring so far.
    pub fn replayed(&self) -> u64 {
        self.shared.replayed.load(Ordering::Relaxed)
    }
}

impl Drop for PcapReplay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Backend for PcapReplay {
    fn name(&self) -> &str {
        &self.name
    }

    fn recv_batch(&mut self, max: usize, deliver: &mut dyn FnMut(&RxFrame<'_>)) -> usize {
        recv_from_ring(&self.ring, max, deliver)
    }

    fn wait(&mut self, timeout: Duration) {
        if self.ring.pending() == 0 {
            std::thread::park_timeout(timeout);
        }
    }
}

type Ready = std::sync::mpsc::Sender<Result<(), BackendError>>;

/// Reads a capture chunk by chunk, keeping the bytes not parsed yet.
struct Reader {
    path: PathBuf,
    file: tokio_uring::fs::File,
    pos: u64,
    buf: Vec<u8>,
    start: usize,
    eof: bool,
}

impl Reader {
    async fn open(path: &Path) -> Result<Reader, BackendError> {
        let file =
            tokio_uring::fs::File::open(path)
                .await
                .map_err(|source| BackendError::Capture {
                    path: path.display().to_string(),
                    source,
                })?;
        Ok(Reader {
            path: path.to_path_buf(),
            file,
            pos: 0,
            buf: Vec::with_capacity(2 * CHUNK),
            start: 0,
            eof: false,
        })
    }

    /// Reads the next chunk, keeping unparsed bytes. Returns false at EOF.
    async fn fill(&mut self) -> Result<bool, BackendError> {
        if self.eof {
            return Ok(false);
        }
        self.buf.drain(..self.start);
        self.start = 0;
        let chunk = vec![0u8; CHUNK];
        let (res, chunk) = self.file.read_at(chunk, self.pos).await;
        let n = res.map_err(|source| BackendError::Capture {
            path: self.path.display().to_string(),
            source,
        })?;
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.pos += n as u64;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(true)
    }

    fn rest(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn rewind(&mut self) {
        self.pos = 0;
        self.buf.clear();
        self.start = 0;
        self.eof = false;
    }

    fn format_error(&self, e: impl std::fmt::Display) -> BackendError {
        BackendError::Format {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// Parses the file header (reading as much as needed).
    async fn header(&mut self) -> Result<PcapParser, BackendError> {
        loop {
            match PcapParser::new(self.rest()) {
                Ok((rest, parser)) => {
                    self.start = self.buf.len() - rest.len();
                    return Ok(parser);
                }
                Err(PcapError::IncompleteBuffer) => {
                    if !self.fill().await? {
                        return Err(self.format_error("the file ends inside the pcap header"));
                    }
                }
                Err(e) => return Err(self.format_error(e)),
            }
        }
    }
}

async fn replay(
    path: PathBuf,
    options: ReplayOptions,
    ring: Arc<RxRing>,
    shared: Arc<Shared>,
    wake: Wake,
    ready: Ready,
) {
    let mut reader = match Reader::open(&path).await {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut parser = match reader.header().await {
        Ok(p) => p,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let datalink = parser.header().datalink;
    if datalink != pcap_file::DataLink::ETHERNET {
        tracing::warn!(?datalink, path = %path.display(), "capture is not Ethernet; filters assume Ethernet frames");
    }
    let _ = ready.send(Ok(()));
    tracing::info!(path = %path.display(), rate = ?options.rate, repeat = options.repeat, "pcap replay started");

    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut pass_frames: u64 = 0;
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let parsed = parser
            .next_raw_packet(reader.rest())
            .map(|(rest, p)| (rest.len(), p.orig_len));
        match parsed {
            Ok((rest_len, orig_len)) => {
                let end = reader.buf.len() - rest_len;
                let record = &reader.buf[reader.start..end];
                // Record header: 16 bytes, then the captured bytes.
                let data = &record[16.min(record.len())..];
                let ts = now_ns();
                // Pace to the rate.
                if let Some(rate) = options.rate.filter(|r| *r > 0.0) {
                    let due = started + Duration::from_secs_f64(sent as f64 / rate);
                    let now = Instant::now();
                    if due > now + Duration::from_millis(1) {
                        wake.wake();
                        tokio::time::sleep(due - now).await;
                    }
                }
                while ring.push(data, orig_len, ts).is_err() {
                    if shared.stop.load(Ordering::Acquire) {
                        return;
                    }
                    wake.wake();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                reader.start = end;
                sent += 1;
                pass_frames += 1;
                shared.replayed.store(sent, Ordering::Relaxed);
                if sent.is_multiple_of(32) {
                    wake.wake();
                }
            }
            Err(PcapError::IncompleteBuffer) => match reader.fill().await {
                Ok(true) => {}
                Ok(false) => {
                    wake.wake();
                    if !reader.rest().is_empty() {
                        tracing::warn!(path = %path.display(), bytes = reader.rest().len(), "capture ends inside a record; ignoring the partial record");
                    }
                    if options.repeat && pass_frames > 0 {
                        reader.rewind();
                        pass_frames = 0;
                        match reader.header().await {
                            Ok(p) => parser = p,
                            Err(e) => {
                                tracing::error!(error = %e, "cannot restart the replay");
                                break;
                            }
                        }
                        continue;
                    }
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "replay stopped");
                    break;
                }
            },
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "replay stopped at a malformed record");
                break;
            }
        }
    }
    shared.finished.store(true, Ordering::Release);
    wake.wake();
    tracing::info!(path = %path.display(), frames = sent, "pcap replay finished");
}
