//! Connections to a server's two sockets: [`Client`] (anyone) and
//! [`Operator`] (the owner-only `PATH.operator` socket).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, Disconnector, RpcSystem};
use futures::AsyncReadExt;
use tokio_util::compat::TokioAsyncReadCompatExt;

use netserver_schema::{filter_options, net_server, operator, OPERATOR_SOCKET_SUFFIX};

use crate::error::{Error, Result};
use crate::fetch::{Fetch, Geometry};
use crate::stats::{FilterStats, GlobalStats, Mode, ServerInfo};

/// One RPC connection; lives as long as anything (a client handle or a
/// [`Fetch`]) still uses it. Dropping the last user closes the socket, and
/// the server then removes every filter installed through it.
pub(crate) struct Connection {
    task: tokio::task::JoinHandle<()>,
    disconnector: RefCell<Option<Disconnector<Side>>>,
    path: PathBuf,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("path", &self.path)
            .finish()
    }
}

impl Connection {
    /// Connects to `path` and returns the server's bootstrap capability.
    ///
    /// Must run inside a `tokio::task::LocalSet` (capnp-rpc is `!Send`).
    async fn open<T: capnp::capability::FromClientHook>(
        path: &Path,
        denied_hint: &'static str,
    ) -> Result<(Rc<Connection>, T)> {
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|source| Error::Connect {
                path: path.to_path_buf(),
                hint: match source.kind() {
                    std::io::ErrorKind::NotFound => {
                        "no server socket there: start `netserver serve --socket PATH`, \
                         or pass --socket / set NETSERVER_SOCKET to where it listens"
                    }
                    std::io::ErrorKind::ConnectionRefused => {
                        "the socket file exists but nothing accepts on it \
                         (left behind by a server that exited?): restart the server"
                    }
                    std::io::ErrorKind::PermissionDenied => denied_hint,
                    _ => "check the path and that the server is running",
                },
                source,
            })?;
        let (reader, writer) = stream.compat().split();
        let network = twoparty::VatNetwork::new(
            futures::io::BufReader::new(reader),
            futures::io::BufWriter::new(writer),
            Side::Client,
            capnp::message::ReaderOptions::new(),
        );
        let mut rpc = RpcSystem::new(Box::new(network), None);
        let bootstrap: T = rpc.bootstrap(Side::Server);
        let disconnector = rpc.get_disconnector();
        let shown = path.display().to_string();
        let task = tokio::task::spawn_local(async move {
            match rpc.await {
                Ok(()) => tracing::debug!(socket = %shown, "connection closed"),
                Err(error) => tracing::debug!(socket = %shown, %error, "connection ended"),
            }
        });
        tracing::debug!(socket = %path.display(), "connected");
        Ok((
            Rc::new(Connection {
                task,
                disconnector: RefCell::new(Some(disconnector)),
                path: path.to_path_buf(),
            }),
            bootstrap,
        ))
    }

    /// Closes the connection cleanly (the server removes this connection's
    /// filters). Later calls on its capabilities fail with `Disconnected`.
    async fn disconnect(&self) -> Result<()> {
        let disconnector = self.disconnector.borrow_mut().take();
        if let Some(disconnector) = disconnector {
            match disconnector.await {
                Ok(()) => {}
                Err(e) if e.kind == capnp::ErrorKind::Disconnected => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// How to install a filter. `0` means "the server's default" everywhere.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstallOptions {
    /// Exclusive (the default) or monitor (operator only).
    pub mode: Mode,
    /// Most frames waiting in the filter's queue before they spill into the
    /// server's overflow pool.
    pub queue_limit: u32,
    /// Size of the filter's frame space (emulated mode); the client starts
    /// owning the upper half.
    pub frames: u32,
    /// Number of small slots.
    pub small_slots: u32,
    /// Shared mode: attach an exchange region right after installing
    /// ([`Fetch::attach_shared`]); the install fails if that fails.
    pub shared: bool,
}

impl InstallOptions {
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
    pub fn queue_limit(mut self, limit: u32) -> Self {
        self.queue_limit = limit;
        self
    }
    pub fn frames(mut self, frames: u32) -> Self {
        self.frames = frames;
        self
    }
    pub fn small_slots(mut self, slots: u32) -> Self {
        self.small_slots = slots;
        self
    }
    /// Shared mode (see [`InstallOptions::shared`](Self#structfield.shared)).
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }

    /// Ring entries of a shared-mode region: the queue limit (the rx ring is
    /// the filter's queue in shared mode), rounded up to a power of two.
    fn ring_entries(&self, info: &ServerInfo) -> u32 {
        let limit = if self.queue_limit == 0 {
            info.queue_limit
        } else {
            self.queue_limit
        };
        limit.clamp(1, 1 << 15).next_power_of_two()
    }

    pub(crate) async fn finish(&self, mut fetch: Fetch, info: &ServerInfo) -> Result<Fetch> {
        fetch.set_ring_entries(self.ring_entries(info));
        if self.shared {
            fetch.attach_shared().await?;
        }
        Ok(fetch)
    }

    /// The geometry both sides will use: zeros replaced by the server's
    /// defaults, so the client's frame table matches the server's.
    pub(crate) fn resolve(&self, info: &ServerInfo) -> Result<Geometry> {
        let frames = if self.frames == 0 {
            info.default_frames
        } else {
            self.frames
        };
        let small_slots = if self.small_slots == 0 {
            info.default_small_slots
        } else {
            self.small_slots
        };
        if frames < 2 {
            return Err(Error::InvalidArgument(format!(
                "a filter needs at least 2 frames (one per side) to receive large packets; \
                 got {frames}"
            )));
        }
        if small_slots == 0 {
            return Err(Error::InvalidArgument(
                "a filter needs at least one small slot".into(),
            ));
        }
        Ok(Geometry {
            frames,
            small_slots,
            small_threshold: info.small_threshold,
            frame_size: info.frame_size,
        })
    }

    pub(crate) fn fill(&self, geometry: &Geometry, mut builder: filter_options::Builder<'_>) {
        builder.set_mode(self.mode.to_schema());
        builder.set_queue_limit(self.queue_limit);
        builder.set_frames(geometry.frames);
        builder.set_small_slots(geometry.small_slots);
    }
}

fn check_expression(expression: &str) -> Result<()> {
    if expression.trim().is_empty() {
        return Err(Error::InvalidArgument(
            "the filter expression is empty: give a pcap-filter expression such as `udp port 53`"
                .into(),
        ));
    }
    Ok(())
}

/// Connects to the server's client socket at `path`.
///
/// Like everything in this crate that talks to the server, it must run on a
/// current-thread tokio runtime inside a `tokio::task::LocalSet` (capnp-rpc
/// is `!Send`); [`crate::block_on`] sets that up.
pub async fn connect(path: impl AsRef<Path>) -> Result<Client> {
    Client::connect(path).await
}

/// A connection to the client socket: installs filters.
pub struct Client {
    conn: Rc<Connection>,
    server: net_server::Client,
    info: ServerInfo,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("socket", &self.conn.path)
            .field("info", &self.info)
            .finish()
    }
}

impl Client {
    /// See [`connect`].
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client> {
        let path = path.as_ref();
        let (conn, server): (_, net_server::Client) = Connection::open(
            path,
            "the client socket should be open to everyone: check its permissions",
        )
        .await?;
        let info = fetch_info(&server).await?;
        tracing::debug!(?info, "server info");
        Ok(Client { conn, server, info })
    }

    /// What the server runs with (read once at connect).
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// The connection and bootstrap capability, for the `bind` module.
    pub(crate) fn parts(&self) -> (&Rc<Connection>, &net_server::Client, &ServerInfo) {
        (&self.conn, &self.server, &self.info)
    }

    /// Installs `expression` (pcap-filter syntax) with default options.
    pub async fn install(&self, expression: &str) -> Result<Fetch> {
        self.install_with(expression, &InstallOptions::default())
            .await
    }

    /// Installs `expression` with `options`. The filter lives as long as the
    /// returned [`Fetch`] (or this connection).
    pub async fn install_with(&self, expression: &str, options: &InstallOptions) -> Result<Fetch> {
        check_expression(expression)?;
        let geometry = options.resolve(&self.info)?;
        let mut request = self.server.install_filter_request();
        request.get().set_expression(expression);
        options.fill(&geometry, request.get().init_options());
        let install = request.send();
        // Pipelined: the tag call travels with the install.
        let tag = install.pipeline.get_fetch().tag_request().send().promise;
        let reply = install.promise.await?;
        let cap = reply.get()?.get_fetch()?;
        let tag = tag.await?.get()?.get_tag();
        tracing::debug!(tag = format_args!("{tag:#018x}"), expression, "installed");
        let fetch = Fetch::new(self.conn.clone(), cap, tag, geometry);
        options.finish(fetch, &self.info).await
    }

    /// Closes the connection; every filter installed through it is removed
    /// (also what dropping the client and all its `Fetch`es does).
    pub async fn close(self) -> Result<()> {
        self.conn.disconnect().await
    }
}

async fn fetch_info(server: &net_server::Client) -> Result<ServerInfo> {
    let reply = server.info_request().send().promise.await?;
    ServerInfo::read(reply.get()?.get_info()?)
}

/// A frame to push into the emulated NIC.
#[derive(Clone, Copy, Debug)]
pub struct InjectFrame<'a> {
    pub data: &'a [u8],
    /// Length on the wire; 0 means `data.len()`.
    pub wire_len: u32,
}

/// Most bytes per `inject` call made by [`Operator::inject_all`].
const INJECT_BATCH_BYTES: usize = 1 << 20;
/// Most frames per `inject` call made by [`Operator::inject_all`].
const INJECT_BATCH_FRAMES: usize = 512;

/// A connection to the owner-only operator socket (`PATH.operator`).
///
/// Only the user the server runs as can open it: the socket's file mode is
/// the authority.
#[derive(Debug)]
pub struct Operator {
    conn: Rc<Connection>,
    op: OperatorCap,
    client_path: PathBuf,
    info: RefCell<Option<ServerInfo>>,
}

struct OperatorCap(operator::Client);

impl Operator {
    /// The operator capability, for the `bind` module.
    pub(crate) fn capability(&self) -> &operator::Client {
        &self.op.0
    }
}

impl std::fmt::Debug for OperatorCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Operator")
    }
}

/// The operator socket beside the client socket `path`.
pub fn operator_socket_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(OPERATOR_SOCKET_SUFFIX);
    PathBuf::from(p)
}

impl Operator {
    /// Connects to `path` + ".operator", where `path` is the client socket.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Operator> {
        let client_path = path.as_ref().to_path_buf();
        let (conn, op) = Connection::open(
            &operator_socket_path(&client_path),
            "the operator socket is owner-only: run this as the user that runs the server",
        )
        .await?;
        Ok(Operator {
            conn,
            op: OperatorCap(op),
            client_path,
            info: RefCell::new(None),
        })
    }

    /// Pushes `frames` into the emulated NIC in one call, in order; returns
    /// how many the server accepted.
    pub async fn inject(&self, frames: &[InjectFrame<'_>]) -> Result<u32> {
        let count = u32::try_from(frames.len()).map_err(|_| {
            Error::InvalidArgument(format!("{} frames in one inject call", frames.len()))
        })?;
        let mut request = self.op.0.inject_request();
        let mut list = request.get().init_frames(count);
        for (i, frame) in frames.iter().enumerate() {
            let wire_len = if frame.wire_len == 0 {
                u32::try_from(frame.data.len()).unwrap_or(u32::MAX)
            } else {
                frame.wire_len
            };
            let mut entry = list.reborrow().get(i as u32);
            entry.set_data(frame.data);
            entry.set_wire_length(wire_len);
        }
        let reply = request.send().promise.await?;
        Ok(reply.get()?.get_accepted())
    }

    /// Pushes every frame, in order, in batches of bounded size; returns how
    /// many the server accepted in total.
    pub async fn inject_all(&self, frames: &[InjectFrame<'_>]) -> Result<u64> {
        let mut accepted = 0u64;
        let mut start = 0;
        while start < frames.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < frames.len()
                && end - start < INJECT_BATCH_FRAMES
                && (end == start || bytes + frames[end].data.len() <= INJECT_BATCH_BYTES)
            {
                bytes += frames[end].data.len();
                end += 1;
            }
            accepted += u64::from(self.inject(&frames[start..end]).await?);
            start = end;
        }
        Ok(accepted)
    }

    /// Every installed filter with its counters.
    pub async fn list_filters(&self) -> Result<Vec<FilterStats>> {
        let reply = self.op.0.list_filters_request().send().promise.await?;
        reply
            .get()?
            .get_filters()?
            .iter()
            .map(FilterStats::read)
            .collect()
    }

    /// Server-wide counters.
    pub async fn stats(&self) -> Result<GlobalStats> {
        let reply = self.op.0.stats_request().send().promise.await?;
        GlobalStats::read(reply.get()?.get_stats()?)
    }

    /// One filter's counters by tag; a tag from before a restart fails with
    /// [`Error::Stale`].
    pub async fn filter_stats(&self, tag: u64) -> Result<FilterStats> {
        let mut request = self.op.0.filter_stats_request();
        request.get().set_tag(tag);
        let reply = request.send().promise.await?;
        FilterStats::read(reply.get()?.get_stats()?)
    }

    /// Removes a filter by tag.
    pub async fn remove_filter(&self, tag: u64) -> Result<()> {
        let mut request = self.op.0.remove_filter_request();
        request.get().set_tag(tag);
        request.send().promise.await?;
        Ok(())
    }

    /// Stops the server. A connection that drops before the reply arrives
    /// counts as success: the server was exiting.
    pub async fn shutdown(&self) -> Result<()> {
        match self.op.0.shutdown_request().send().promise.await {
            Ok(_) => Ok(()),
            Err(e) => match Error::from(e) {
                Error::Disconnected => Ok(()),
                other => Err(other),
            },
        }
    }

    /// The server's info, read once through the client socket (the operator
    /// interface has no `info` of its own).
    pub async fn info(&self) -> Result<ServerInfo> {
        if let Some(info) = self.info.borrow().as_ref() {
            return Ok(info.clone());
        }
        let client = Client::connect(&self.client_path).await?;
        let info = client.info().clone();
        client.close().await?;
        *self.info.borrow_mut() = Some(info.clone());
        Ok(info)
    }

    /// Installs a filter with operator authority (monitor mode allowed).
    pub async fn install_with(&self, expression: &str, options: &InstallOptions) -> Result<Fetch> {
        check_expression(expression)?;
        let geometry = options.resolve(&self.info().await?)?;
        let mut request = self.op.0.install_filter_request();
        request.get().set_expression(expression);
        options.fill(&geometry, request.get().init_options());
        let install = request.send();
        let tag = install.pipeline.get_fetch().tag_request().send().promise;
        let reply = install.promise.await?;
        let cap = reply.get()?.get_fetch()?;
        let tag = tag.await?.get()?.get_tag();
        tracing::debug!(
            tag = format_args!("{tag:#018x}"),
            expression,
            "installed (operator)"
        );
        let fetch = Fetch::new(self.conn.clone(), cap, tag, geometry);
        options.finish(fetch, &self.info().await?).await
    }

    /// Closes the operator connection (filters installed through it go).
    pub async fn close(self) -> Result<()> {
        self.conn.disconnect().await
    }
}
