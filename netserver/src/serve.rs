//! `netserver serve`: sockets, the control-plane runtime, shutdown.
//!
//! The control plane runs on tokio-uring's runtime (`tokio_uring::start`).
//! Connections are accepted with tokio's `UnixListener` (tokio-uring 0.5's
//! own listener fails on kernels ≥ 6.12, tokio-rs/tokio-uring#323) and
//! served by capnp-rpc's two-party network over the stream. The capnp RPC
//! system is `!Send`, so every connection is a local task on this thread;
//! the data path runs on its own thread (see [`crate::datapath`]).

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use capnp_rpc::{rpc_twoparty_capnp::Side, twoparty, RpcSystem};
use netserver_schema::netserver_capnp::{net_server, operator};
use tokio::net::UnixListener;
use tokio_util::compat::{TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

use crate::attach::{Acceptor, AttachBook};
use crate::backend::emulated::Emulated;
use crate::backend::pcap::{PcapReplay, ReplayOptions};
use crate::backend::{Backend, BackendError, BackendSpec, Wake};
use crate::config::{Config, ConfigError};
use crate::control::ControlPlane;
use crate::datapath::DataPathHandle;
use crate::host::{HostConfig, MacAddr};
use crate::hostpath::HostControl;
use crate::place::OverflowPool;
use crate::rpc::{reader_options, NetServerImpl, OperatorImpl};
use crate::stats::Counters;
use crate::tag::TagAllocator;

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("another netserver is already listening on {0}; stop it or pick another --socket")]
    InUse(PathBuf),
    #[error("{path} exists and is not a socket; remove it or pick another --socket")]
    NotASocket { path: PathBuf },
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start a server thread or runtime: {0}")]
    Thread(#[source] io::Error),
    #[error("--datapath-cpu {0}: {1}; pick one of those CPUs or leave the option out")]
    DatapathCpu(usize, #[source] io::Error),
}

/// Removes a stale socket file (a server that died without cleaning up);
/// refuses when a server still answers on it.
fn clear_stale(path: &Path) -> Result<(), ServeError> {
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServeError::InUse(path.to_path_buf()));
            }
            tracing::info!(path = %path.display(), "removing stale socket");
            std::fs::remove_file(path).map_err(|source| ServeError::Listen {
                path: path.to_path_buf(),
                source,
            })
        }
        Ok(_) => Err(ServeError::NotASocket {
            path: path.to_path_buf(),
        }),
    }
}

/// A listening socket at `path` with permission bits `mode`.
///
/// The path appears only once the socket listens: the socket is bound and
/// listening under a temporary name in the same directory, then renamed
/// into place. Binding in place left a moment in which the path existed but
/// `connect` was refused, and a client (or a test) that waits for the path
/// to appear could lose that race. The umask is narrowed while binding so
/// the socket never exists with wider permissions.
fn listen_at(path: &Path, mode: u32) -> Result<std::os::unix::net::UnixListener, ServeError> {
    clear_stale(path)?;
    let err = |source| ServeError::Listen {
        path: path.to_path_buf(),
        source,
    };
    let staging = path.with_file_name(format!(".ns{:x}", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o777 & !mode));
    let listener = std::os::unix::net::UnixListener::bind(&staging);
    rustix::process::umask(old);
    let listener = listener.map_err(err)?;
    let placed = std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode))
        .and_then(|()| place_socket(&staging, path));
    if let Err(source) = placed {
        let _ = std::fs::remove_file(&staging);
        if source.kind() == io::ErrorKind::AlreadyExists {
            return Err(ServeError::InUse(path.to_path_buf()));
        }
        return Err(err(source));
    }
    Ok(listener)
}

/// Renames the bound socket at `staging` to `path`, unless something is at
/// `path` by now (another server that bound it since `clear_stale`: it
/// keeps it, `AlreadyExists`). Filesystems without `RENAME_NOREPLACE` get a
/// plain rename.
fn place_socket(staging: &Path, path: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, staging, CWD, path, RenameFlags::NOREPLACE) {
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => std::fs::rename(staging, path),
        other => other.map_err(io::Error::from),
    }
}

/// [`listen_at`] for tokio's accept loops.
fn bind(path: &Path, mode: u32) -> Result<UnixListener, ServeError> {
    let err = |source| ServeError::Listen {
        path: path.to_path_buf(),
        source,
    };
    let listener = listen_at(path, mode)?;
    listener.set_nonblocking(true).map_err(err)?;
    UnixListener::from_std(listener).map_err(err)
}

/// Removes the socket files when dropped.
struct SocketFiles(Vec<PathBuf>);

impl Drop for SocketFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn start_backend(config: &Config, wake: &Wake) -> Result<Box<dyn Backend>, ServeError> {
    let (ring, fs) = (config.rx_ring as usize, config.frame_size as usize);
    Ok(match &config.backend {
        BackendSpec::Emulated => Box::new(Emulated::new(ring, fs, wake.clone())),
        BackendSpec::Pcap(path) => Box::new(PcapReplay::start(
            path,
            ReplayOptions {
                rate: config.rate,
                repeat: config.repeat,
            },
            ring,
            fs,
            wake.clone(),
        )?),
        BackendSpec::AfPacket(iface) => Box::new(
            crate::backend::af_packet::AfPacket::open(
                iface,
                &crate::backend::af_packet::AfPacketOptions {
                    backlog_frames: config.backlog_frames,
                    backlog_bytes: config.backlog_bytes,
                    ..Default::default()
                },
            )
            .map_err(|source| BackendError::Device {
                backend: format!("af_packet:{iface}"),
                source,
            })?,
        ),
        BackendSpec::Tap(name) => {
            Box::new(crate::backend::tap::Tap::open(name).map_err(|source| {
                BackendError::Device {
                    backend: format!("tap:{name}"),
                    source,
                }
            })?)
        }
    })
}

/// The host's identity from `--ip`/`--mac`: the canonical MAC defaults to
/// the interface's (af_packet), else a random locally administered one.
fn host_config(config: &Config) -> Result<Option<HostConfig>, ServeError> {
    let Some(id) = config.host else {
        return Ok(None);
    };
    let mac = match (id.mac, &config.backend) {
        (Some(mac), _) => mac,
        (None, BackendSpec::AfPacket(iface)) => {
            crate::sys::netif::info(iface)
                .map_err(|source| BackendError::Device {
                    backend: format!("af_packet:{iface}"),
                    source,
                })?
                .mac
        }
        (None, _) => {
            let mut rng = rand::rng();
            crate::host::mac::random_app_mac(&mut rng, |_| false)
                .unwrap_or(MacAddr([2, 0, 0, 0, 0, 1]))
        }
    };
    Ok(Some(HostConfig::new(mac, id.ip, id.prefix_len)))
}

fn mac_rng(config: &Config) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    match config.host.and_then(|h| h.mac_seed) {
        Some(seed) => rand::rngs::StdRng::seed_from_u64(seed),
        None => rand::rngs::StdRng::from_os_rng(),
    }
}

/// Runs a server until an operator asks it to stop or the process gets
/// SIGINT/SIGTERM. Blocks; call from a thread of its own.
pub fn serve(config: Config) -> Result<(), ServeError> {
    serve_with(config, |_| {})
}

/// [`serve`], calling `ready` with the socket path once both sockets listen.
pub fn serve_with(config: Config, ready: impl FnOnce(&Path)) -> Result<(), ServeError> {
    config.validate()?;
    let wake = Wake::default();
    let backend = start_backend(&config, &wake)?;
    let backend_name = backend.name().to_owned();
    let injector = backend.injector();
    let global = Arc::new(Counters::default());
    let pool = Arc::new(OverflowPool::new(
        config.overflow_limit as usize,
        config.frame_size as usize,
        config.small_threshold as usize,
    ));
    let host_config = host_config(&config)?;
    let (host, host_path) = HostControl::new(host_config, mac_rng(&config), wake.clone());
    if let Some(h) = &host_config {
        tracing::info!(ip = %h.ip, prefix = h.prefix_len, mac = %h.mac, "host on the link");
    }
    let datapath = DataPathHandle::spawn_with_host(
        backend,
        pool.clone(),
        global.clone(),
        wake,
        host_path,
        config.datapath_cpu,
    )
    .map_err(|e| match config.datapath_cpu {
        Some(cpu) if e.kind() == io::ErrorKind::InvalidInput => ServeError::DatapathCpu(cpu, e),
        _ => ServeError::Thread(e),
    })?;
    let attach_book = Arc::new(AttachBook::new(
        datapath.commander(),
        exchange::server::ServerConfig {
            limits: config.region_limits(),
            revoke_after: config.revoke_after,
            ..Default::default()
        },
        config.small_threshold as usize,
        config.frame_size as usize,
        config.attach_socket(),
    ));
    let tags = TagAllocator::random();

    run_local(async move {
        // Bound in the order clients use them last to first, so that a
        // client that sees the client socket finds the others listening.
        // Shared mode's side socket: the client socket's permissions; the
        // one-time token from attachRegion is the authority (crate::attach).
        let attach_path = config.attach_socket();
        // (The acceptor is dropped before the socket file is removed: its
        // drop wakes the accept by connecting.)
        let (_files_attach, _acceptor) = if config.shared_mode() {
            let l = listen_at(&attach_path, 0o666)?;
            let files = SocketFiles(vec![attach_path.clone()]);
            let acceptor = Acceptor::spawn(l, attach_book.clone()).map_err(ServeError::Thread)?;
            (Some(files), Some(acceptor))
        } else {
            (None, None)
        };
        let client_path = config.socket.clone();
        let operator_path = config.operator_socket();
        let operator = bind(&operator_path, 0o600)?;
        let _files_operator = SocketFiles(vec![operator_path.clone()]);
        let client = bind(&client_path, 0o666)?;
        let _files_client = SocketFiles(vec![client_path.clone()]);
        let mut cp = ControlPlane::new(
            config,
            tags,
            datapath,
            global,
            pool,
            injector,
            backend_name.clone(),
        )
        .with_host(host);
        if _acceptor.is_some() {
            cp = cp.with_attach(attach_book);
        }
        let cp = Rc::new(cp);
        tracing::info!(
            socket = %client_path.display(),
            operator = %operator_path.display(),
            backend = %backend_name,
            epoch = format_args!("{:#06x}", cp.epoch()),
            "netserver listening"
        );
        let client_loop = {
            let cp = cp.clone();
            tokio::task::spawn_local(async move {
                // One bootstrap per connection: it knows which client asks.
                let bootstrap = |connection| {
                    let client: net_server::Client =
                        capnp_rpc::new_client(NetServerImpl::new(cp.clone(), connection));
                    client.client
                };
                accept_loop(client, bootstrap, "client").await;
            })
        };
        let operator_loop = {
            let cp = cp.clone();
            tokio::task::spawn_local(async move {
                let bootstrap: operator::Client = capnp_rpc::new_client(OperatorImpl::new(cp));
                accept_loop(operator, |_| bootstrap.client.clone(), "operator").await;
            })
        };
        ready(&client_path);
        wait_for_stop(&cp).await;
        // Let the reply to `shutdown` go out.
        tokio::time::sleep(Duration::from_millis(50)).await;
        client_loop.abort();
        operator_loop.abort();
        cp.stop();
        let s = cp.snapshot();
        tracing::info!(
            received = s.received,
            delivered = s.delivered(),
            dropped = s.dropped(),
            identity = s.identity_holds(),
            "netserver stopped"
        );
        Ok(())
    })
}

/// Runs the control plane on tokio-uring's runtime; where io_uring is not
/// available (old kernel, seccomp) on tokio's current-thread runtime with a
/// `LocalSet` instead: the control plane needs nothing io_uring-specific.
fn run_local<F: std::future::Future<Output = Result<(), ServeError>>>(
    f: F,
) -> Result<(), ServeError> {
    match tokio_uring::Runtime::new(&tokio_uring::builder()) {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            tracing::warn!(error = %e, "io_uring unavailable; running the control plane on tokio's runtime");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(ServeError::Thread)?;
            tokio::task::LocalSet::new().block_on(&rt, f)
        }
    }
}

async fn wait_for_stop(cp: &ControlPlane) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = cp.shutdown_requested() => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
        () = term => tracing::info!("terminated"),
    }
}

/// Serves every connection to `listener` with the capability `bootstrap`
/// makes for it (given the connection's number, from 1).
async fn accept_loop(
    listener: UnixListener,
    bootstrap: impl Fn(u64) -> capnp::capability::Client,
    which: &'static str,
) {
    let mut connections = 0u64;
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, which, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        tracing::debug!(which, "connection accepted");
        let (reader, writer) = stream.into_split();
        let network = twoparty::VatNetwork::new(
            futures::io::BufReader::new(reader.compat()),
            futures::io::BufWriter::new(writer.compat_write()),
            Side::Server,
            reader_options(),
        );
        connections += 1;
        let rpc = RpcSystem::new(Box::new(network), Some(bootstrap(connections)));
        tokio::task::spawn_local(async move {
            if let Err(e) = rpc.await {
                tracing::debug!(error = %e, which, "connection ended with an error");
            } else {
                tracing::debug!(which, "connection closed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_path_appears_listening_with_its_mode_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("ns-listen-at-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ns.sock");
        let listener = listen_at(&path, 0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::os::unix::net::UnixStream::connect(&path).expect("listening as soon as it exists");
        assert!(listener.accept().is_ok());
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["ns.sock"], "the staging name is gone");
        // A second server on the same path is refused, and the first keeps it.
        assert!(matches!(listen_at(&path, 0o600), Err(ServeError::InUse(_))));
        drop(listener);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn placing_a_socket_never_replaces_what_another_server_put_there() {
        let dir = std::env::temp_dir().join(format!("ns-place-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (staging, path) = (dir.join(".staging"), dir.join("ns.sock"));
        std::fs::write(&staging, b"ours").unwrap();
        std::fs::write(&path, b"theirs").unwrap();
        let err = place_socket(&staging, &path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"theirs");
        std::fs::remove_file(&path).unwrap();
        place_socket(&staging, &path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"ours");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
