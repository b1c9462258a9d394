//! Shared mode's side door: attaching a client's exchange region.
//!
//! Cap'n Proto carries no file descriptors, so `Fetch.attachRegion` only
//! issues a **one-time 16-byte token** (random, valid for
//! [`TOKEN_LIFETIME`], bound to one filter and the exact geometry asked for)
//! and names the side socket, `PATH.attach` beside the client socket, with
//! the client socket's permissions (any local user may connect). The token is
//! the only authority on the side socket: whoever presents it attaches a
//! region to that one filter, once. The client connects, sends the token with
//! its sealed memfd and two eventfds (`exchange::pass`), and reads one line
//! back: `ok`, or `error: WHY`.
//!
//! The acceptor is a blocking thread (descriptor passing and the region's
//! verification are system calls, not for the control plane's event loop),
//! with one short-lived thread per connection so a client that connects and
//! sends nothing holds up no one (each read has a deadline). A verified
//! region goes to the data path as [`Command::Attach`]; from then on the data
//! path is its only driver.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exchange::pass::TOKEN_LEN;
use exchange::server::ServerConfig;
use exchange::{Geometry, ServerRegion};

use crate::datapath::{Command, Commander};
use crate::filter::{Filter, SharedPath, Transport};
use crate::place::RegionSpace;
use crate::tag::Tag;

/// How long a token stays valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(30);

/// How long the acceptor waits for a connected client's token and fds.
const RECV_DEADLINE: Duration = Duration::from_secs(5);

/// An attach token.
pub type Token = [u8; TOKEN_LEN];

/// Why an attach was refused; sent back on the side socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachRefused {
    #[error(
        "unknown attach token: it was used already, expired ({}s), or never issued; call \
         attachRegion again",
        TOKEN_LIFETIME.as_secs()
    )]
    UnknownToken,
    #[error("the filter with tag {tag:#018x} is closed; install it again")]
    Closed { tag: Tag },
    #[error("the region descriptors did not arrive: {0}")]
    Pass(#[from] exchange::PassError),
    #[error("{0}")]
    Attach(#[from] exchange::server::AttachError),
    #[error(
        "the region's geometry {found:?} is not the one attachRegion was asked for \
         ({expected:?}); create the region with exactly that geometry"
    )]
    Geometry { found: Geometry, expected: Geometry },
    #[error("{0}")]
    Fit(#[from] crate::place::RegionFitError),
}

struct Pending {
    filter: Arc<Filter>,
    geometry: Geometry,
    issued: Instant,
}

/// The tokens issued and not yet redeemed, and what a redeemed one needs.
pub struct AttachBook {
    pending: Mutex<HashMap<Token, Pending>>,
    commander: Commander,
    config: ServerConfig,
    small_threshold: usize,
    frame_size: usize,
    path: PathBuf,
}

impl std::fmt::Debug for AttachBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachBook")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl AttachBook {
    pub fn new(
        commander: Commander,
        config: ServerConfig,
        small_threshold: usize,
        frame_size: usize,
        path: PathBuf,
    ) -> AttachBook {
        AttachBook {
            pending: Mutex::new(HashMap::new()),
            commander,
            config,
            small_threshold,
            frame_size,
            path,
        }
    }

    /// The side socket's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The region policy (limits, revocation threshold).
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Token, Pending>> {
        // A panic while holding it leaves a plain map behind: keep going.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets expired tokens; their filters go back to emulated mode.
    fn purge(&self) {
        self.lock().retain(|_, p| {
            let keep = p.issued.elapsed() < TOKEN_LIFETIME;
            if !keep {
                p.filter.abort_attach();
            }
            keep
        });
    }

    /// Control plane: a token for attaching a region of `geometry` to
    /// `filter` (already in [`Transport::Attaching`]).
    pub fn issue(&self, filter: Arc<Filter>, geometry: Geometry) -> Token {
        self.purge();
        let token: Token = rand::random();
        self.lock().insert(
            token,
            Pending {
                filter,
                geometry,
                issued: Instant::now(),
            },
        );
        token
    }

    /// Control plane: a filter in `Attaching` whose token expired may ask
    /// again.
    pub fn expire_stale(&self) {
        self.purge();
    }

    fn redeem(&self, token: &[u8]) -> Result<Pending, AttachRefused> {
        let p = self
            .lock()
            .remove(token)
            .ok_or(AttachRefused::UnknownToken)?;
        if p.issued.elapsed() >= TOKEN_LIFETIME {
            p.filter.abort_attach();
            return Err(AttachRefused::UnknownToken);
        }
        Ok(p)
    }

    /// Serves one side-socket connection: token and descriptors in, one
    /// line out.
    pub fn serve_connection(&self, mut stream: UnixStream) {
        let answer = match self.attach(&stream) {
            Ok(tag) => {
                tracing::info!(
                    tag = format_args!("{tag:#018x}"),
                    "exchange region attached"
                );
                "ok\n".to_owned()
            }
            Err(e) => {
                tracing::info!(error = %e, "exchange region refused");
                format!("error: {e}\n")
            }
        };
        let _ = stream.set_write_timeout(Some(RECV_DEADLINE));
        let _ = stream.write_all(answer.as_bytes());
    }

    fn attach(&self, stream: &UnixStream) -> Result<Tag, AttachRefused> {
        let req = exchange::pass::recv_region(stream.as_fd(), TOKEN_LEN, RECV_DEADLINE)?;
        let p = self.redeem(&req.token)?;
        let filter = p.filter.clone();
        let result = (|| {
            if filter.is_closed() {
                return Err(AttachRefused::Closed { tag: filter.tag });
            }
            let region = ServerRegion::attach(req.fds, &self.config)?;
            let found = region.layout().geometry;
            if found != p.geometry {
                return Err(AttachRefused::Geometry {
                    found,
                    expected: p.geometry,
                });
            }
            let space = RegionSpace::new(region, self.small_threshold, self.frame_size)?;
            Ok(space)
        })();
        match result {
            Ok(space) => {
                self.commander.send(Command::Attach {
                    tag: filter.tag,
                    shared: Box::new(SharedPath::new(space, None)),
                });
                Ok(filter.tag)
            }
            Err(e) => {
                filter.abort_attach();
                Err(e)
            }
        }
    }
}

/// The acceptor thread of the side socket; stops when dropped.
#[derive(Debug)]
pub struct Acceptor {
    stop: Arc<AtomicBool>,
    path: PathBuf,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Acceptor {
    /// Accepts on `listener` (already bound with the right permissions).
    pub fn spawn(listener: UnixListener, book: Arc<AttachBook>) -> std::io::Result<Acceptor> {
        let stop = Arc::new(AtomicBool::new(false));
        let path = book.path().to_path_buf();
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("netserver-attach".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::Acquire) {
                            return;
                        }
                        let stream = match conn {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::warn!(error = %e, "side socket accept failed");
                                std::thread::sleep(Duration::from_millis(10));
                                continue;
                            }
                        };
                        let book = book.clone();
                        let spawned = std::thread::Builder::new()
                            .name("netserver-attach-conn".into())
                            .spawn(move || book.serve_connection(stream));
                        if let Err(e) = spawned {
                            tracing::warn!(error = %e, "cannot start an attach thread");
                        }
                    }
                })?
        };
        Ok(Acceptor {
            stop,
            path,
            thread: Some(thread),
        })
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether this filter may be given a token now (emulated, or attaching
/// with an expired token).
pub fn may_attach(book: &AttachBook, filter: &Filter) -> bool {
    if filter.transport() == Transport::Attaching {
        book.expire_stale();
    }
    filter.begin_attach()
}
