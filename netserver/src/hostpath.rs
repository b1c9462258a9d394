//! The control plane on the wire: drives [`crate::host::Host`] (an I/O-free
//! state machine) from the data-path thread, and gives the RPC layer a
//! handle on it.
//!
//! Two halves, one per thread:
//!
//! - [`HostPath`] lives in the data-path thread. It owns the `Host`, the
//!   published [`Firewall`], and a small fixed set of transmit buffers. Per
//!   received frame ([`HostPath::receive`]) it runs the firewall, shows the
//!   frame to running MAC probes, dispatches by destination MAC (the fast
//!   path) and answers control traffic (ARP, xarp, ICMP echo) into a
//!   transmit buffer. After each batch ([`HostPath::service`]) it applies
//!   commands from the control plane, advances the host's timers
//!   (`Host::poll`: probes, announcements, ARP requests) and sends what it
//!   queued through the backend in one batch. Nothing here allocates or
//!   locks per frame; commands carry their own (control-plane) allocations.
//! - [`HostControl`] lives on the control-plane thread: bind, unbind,
//!   transmit (the emulated `Binding.send`), the operator's firewall rules.
//!
//! Shared mode transmits without the control plane: once per batch the data
//! path hands every attached region to [`HostPath::transmit_ring`], which
//! drains its tx ring ([`crate::txring`]) with the same anti-spoofing check
//! and the same counters as the emulated `send`.
//!   It talks to the data path through a channel; answers come back on
//!   oneshot channels, so an RPC awaits them without blocking the runtime.
//!
//! Why the host lives in the data path and not behind a lock: the receive
//! path needs it for every frame (fast path, probes), and the data path
//! must never wait on the control plane.

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rand::rngs::StdRng;
use tokio::sync::oneshot;

use crate::backend::{Backend, RxFrame, Wake};
use crate::host::firewall::{
    Firewall, FirewallError, FirewallRules, FirewallVerdict, RuleAction, RuleId, RuleStats,
};
use crate::host::mac::Binding;
use crate::host::spoof::TxRefusal;
use crate::host::wire::ethernet::{ETHERTYPE_ARP, HEADER_LEN};
use crate::host::{
    BindProgress, Host, HostBindError, HostConfig, HostEvent, MacAddr, Transport, Verdict,
};
use crate::tag::Tag;
use crate::txring::RingTx;

/// Transmit buffers of the data path (replies, probes, client frames
/// waiting for the batch's send).
const TX_SLOTS: usize = 64;
/// Bytes of a transmit buffer: a full 1514-byte frame fits.
const TX_BUF: usize = 2048;
/// Bytes of a frame that decide whether the control plane takes it
/// (`Host::is_control`): the Ethernet header, the largest IPv4 header and
/// the ICMP type. ARP is decided by the EtherType.
pub const CONTROL_HEAD: usize = HEADER_LEN + 60 + 1;
/// Most `Host::poll` events handled after one batch.
const POLL_BUDGET: usize = 256;
/// How long after tx-ring or receive activity the data path keeps looking
/// at tx rings often, and how often.
const TX_HOT: Duration = Duration::from_millis(200);
const TX_HOT_WAIT: Duration = Duration::from_millis(1);

/// Counters of the control plane on the wire (not part of the accounting
/// identity: they count replies and transmits, not received frames).
#[derive(Debug, Default)]
pub struct HostCounters {
    control_replies: AtomicU64,
    mac_fast_path: AtomicU64,
    tx_sent: AtomicU64,
    tx_refused: [AtomicU64; TxRefusal::ALL.len()],
    tx_errors: AtomicU64,
    host_sent: AtomicU64,
    tx_ring: AtomicU64,
    tx_copied: AtomicU64,
}

fn bump(c: &AtomicU64) {
    // Relaxed: independent monotonic counters, read for statistics only.
    c.fetch_add(1, Ordering::Relaxed);
}

/// A copy of [`HostCounters`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCountersSnapshot {
    pub control_replies: u64,
    pub mac_fast_path: u64,
    pub tx_sent: u64,
    /// By reason, in [`TxRefusal::ALL`] order.
    pub tx_refused: [u64; TxRefusal::ALL.len()],
    pub tx_errors: u64,
    pub host_sent: u64,
    /// Client frames taken from shared-mode tx rings (each completed).
    pub tx_ring: u64,
    /// Tx-ring frames sent from a server copy (not zero copy).
    pub tx_copied: u64,
}

impl HostCountersSnapshot {
    /// Refusals with their reason names.
    pub fn refused_by_reason(&self) -> impl Iterator<Item = (TxRefusal, u64)> + '_ {
        TxRefusal::ALL.iter().copied().zip(self.tx_refused)
    }

    pub fn refused(&self) -> u64 {
        self.tx_refused.iter().sum()
    }
}

impl HostCounters {
    pub fn snapshot(&self) -> HostCountersSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut tx_refused = [0; TxRefusal::ALL.len()];
        for (d, c) in tx_refused.iter_mut().zip(&self.tx_refused) {
            *d = load(c);
        }
        HostCountersSnapshot {
            control_replies: load(&self.control_replies),
            mac_fast_path: load(&self.mac_fast_path),
            tx_sent: load(&self.tx_sent),
            tx_refused,
            tx_errors: load(&self.tx_errors),
            host_sent: load(&self.host_sent),
            tx_ring: load(&self.tx_ring),
            tx_copied: load(&self.tx_copied),
        }
    }
}

/// Why a client's transmit failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransmitError {
    #[error("frame refused ({name}): {0}; send only from the binding's MAC, IP and port", name = .0.name())]
    Refused(#[from] TxRefusal),
    #[error("the backend could not send the frame: {0}")]
    Backend(String),
    #[error("the data path is stopping")]
    Stopping,
}

/// Why a bind failed on the host side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    #[error("this server is not a host on the link: start it with --ip A.B.C.D/LEN to bind ports")]
    NoHost,
    #[error(transparent)]
    Host(#[from] HostBindError),
    #[error("the data path is stopping")]
    Stopping,
}

/// What a bind gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The MAC the port's frames leave from.
    pub mac: MacAddr,
    /// Whether `mac` is the application's own.
    pub own_mac: bool,
}

/// What the host looks like now (for `Operator.hostStats`).
#[derive(Debug, Clone, Default)]
pub struct HostSnapshot {
    pub bindings: Vec<Binding>,
    pub neighbours: usize,
}

type Reply<T> = oneshot::Sender<T>;

/// A bind waiting for its MAC probe.
type PendingBind = (Transport, u16, Reply<Result<Bound, BindError>>);

/// A request of the control plane to the data path's host.
#[derive(Debug)]
enum HostCommand {
    Bind {
        owner: Tag,
        transport: Transport,
        port: u16,
        own_mac: bool,
        reply: Reply<Result<Bound, BindError>>,
    },
    Unbind {
        owner: Tag,
        transport: Transport,
        port: u16,
    },
    Transmit {
        owner: Tag,
        transport: Transport,
        port: u16,
        header: Vec<u8>,
        payload: Vec<u8>,
        reply: Reply<Result<(), TransmitError>>,
    },
    Firewall(Firewall),
    Snapshot(Reply<HostSnapshot>),
}

/// Where the data path sends a received frame next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// An operator rule dropped it (count it as `firewall`).
    Dropped,
    /// The control plane took it (count it as `control`).
    Control,
    /// Addressed to this owner's application MAC: deliver to its filter.
    Owner(Tag),
    /// Classify as usual.
    Classify,
}

/// A fixed set of frames waiting for the batch's send.
struct TxQueue {
    bufs: Vec<Box<[u8]>>,
    lens: Vec<usize>,
    /// A client transmit waiting for its send's result, per slot.
    replies: Vec<Option<Reply<Result<(), TransmitError>>>>,
    /// Whether the slot holds a control-plane frame (else a client's).
    own: Vec<bool>,
    used: usize,
}

impl TxQueue {
    fn new() -> TxQueue {
        TxQueue {
            bufs: (0..TX_SLOTS)
                .map(|_| vec![0u8; TX_BUF].into_boxed_slice())
                .collect(),
            lens: vec![0; TX_SLOTS],
            replies: (0..TX_SLOTS).map(|_| None).collect(),
            own: vec![false; TX_SLOTS],
            used: 0,
        }
    }

    /// The next free buffer, if any.
    fn next(&mut self) -> Option<&mut [u8]> {
        self.bufs.get_mut(self.used).map(|b| &mut b[..])
    }

    /// Commits the buffer `next` gave, `len` bytes long.
    fn commit(&mut self, len: usize, own: bool, reply: Option<Reply<Result<(), TransmitError>>>) {
        self.lens[self.used] = len;
        self.own[self.used] = own;
        self.replies[self.used] = reply;
        self.used += 1;
    }

    fn is_full(&self) -> bool {
        self.used == TX_SLOTS
    }
}

/// The data-path half (see the module docs).
pub struct HostPath {
    host: Option<Host<Vec<u8>>>,
    firewall: Firewall,
    commands: Receiver<HostCommand>,
    counters: Arc<HostCounters>,
    tx: TxQueue,
    /// A scratch buffer for replies when the queue is full.
    scratch: Box<[u8]>,
    pending_binds: Vec<PendingBind>,
    next_poll: Option<Instant>,
    last_error_log: Option<Instant>,
    /// Shared-mode transmit buffers.
    ring_tx: RingTx,
    /// Until when the data path polls tx rings often (a client that just
    /// received or sent is likely to send soon; regions do not ring the
    /// data path's doorbell).
    tx_hot_until: Option<Instant>,
}

impl std::fmt::Debug for HostPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostPath")
            .field("host", &self.host.as_ref().map(|h| *h.config()))
            .finish_non_exhaustive()
    }
}

impl HostPath {
    /// The firewall and, with a host, the control plane on one received
    /// frame. See [`crate::host`] for the order.
    pub fn receive(&mut self, frame: &RxFrame<'_>) -> Route {
        let data = frame.data;
        if !self.firewall.is_empty() {
            if let FirewallVerdict::Drop(_) = self.firewall.check(data, frame.wire_len) {
                return Route::Dropped;
            }
        }
        let Some(host) = self.host.as_mut() else {
            return Route::Classify;
        };
        // Layer 2 only: the destination MAC, and ARP (which the control
        // plane answers whatever MAC it was sent to).
        let is_arp = data.get(12..14) == Some(&ETHERTYPE_ARP.to_be_bytes()[..]);
        if !is_arp {
            if let Some(owner) = host.owner_of_frame(data) {
                if host.is_probing() {
                    host.observe(data);
                }
                bump(&self.counters.mac_fast_path);
                return Route::Owner(owner);
            }
        }
        if !host.is_control(data) {
            if host.is_probing() {
                host.observe(data);
            }
            return Route::Classify;
        }
        let now = Instant::now();
        let queued = !self.tx.is_full();
        let out = match self.tx.next() {
            Some(buf) => buf,
            None => &mut self.scratch[..],
        };
        match host.handle(data, now, out) {
            Verdict::Reply(len) if queued => {
                self.tx.commit(len, true, None);
                bump(&self.counters.control_replies);
            }
            Verdict::Reply(_) => bump(&self.counters.tx_errors),
            Verdict::Consumed | Verdict::Ignored(_) => {}
            Verdict::NotControl => return Route::Classify,
        }
        // Something may wait on this (an ARP reply releasing frames, a
        // claim ending a probe): poll after the batch.
        self.next_poll = Some(now);
        Route::Control
    }

    /// How far into a frame [`HostPath::receive`] reads to decide where it
    /// goes: the firewall rules' reach, and with a host the headers
    /// `is_control` reads (see [`CONTROL_HEAD`]). A frame the control plane
    /// claims is handled whole: see [`HostPath::claims`].
    pub fn reach(&self) -> filters::Reach {
        let control = match self.host {
            Some(_) => filters::Reach::Bounded(CONTROL_HEAD as u64),
            None => filters::Reach::NOTHING,
        };
        self.firewall.reach().max(control)
    }

    /// Whether the control plane takes the frame whose first bytes (at least
    /// [`HostPath::reach`]) are `head`: then the data path must complete it
    /// before [`HostPath::receive`] (an echo reply carries the request's
    /// whole payload).
    pub fn claims(&self, head: &[u8]) -> bool {
        self.host.as_ref().is_some_and(|host| host.is_control(head))
    }

    /// After a batch: applies commands, advances timers, sends what was
    /// queued. `received` says whether the batch had frames.
    pub fn service(&mut self, backend: &mut dyn Backend, received: bool) {
        let mut poll = received && self.host.is_some();
        while let Ok(cmd) = self.commands.try_recv() {
            poll = true;
            self.apply(cmd, backend);
        }
        let now = Instant::now();
        if poll || self.next_poll.is_some_and(|t| t <= now) {
            self.poll(now, backend);
        }
        self.flush(backend);
    }

    /// How long the data path may sleep before the host needs it.
    pub fn wait_for(&self, longest: Duration) -> Duration {
        let now = Instant::now();
        let longest = match self.tx_hot_until {
            Some(t) if t > now => longest.min(TX_HOT_WAIT),
            _ => longest,
        };
        match self.next_poll {
            Some(t) => t
                .saturating_duration_since(now)
                .min(longest)
                .max(Duration::from_millis(1)),
            None => longest,
        }
    }

    /// Shared mode: checks and sends what `owner`'s client posted on its tx
    /// ring, and completes every descriptor taken (see [`crate::txring`]).
    /// `received`: the batch delivered frames (a reply may follow soon).
    /// The completions become visible at the region's next publish.
    pub fn transmit_ring(
        &mut self,
        owner: Tag,
        region: &mut exchange::ServerRegion,
        backend: &mut dyn Backend,
        received: bool,
    ) {
        let now = Instant::now();
        if received {
            self.tx_hot_until = Some(now + TX_HOT);
        }
        let host = self.host.as_ref();
        // The binding is looked up once per drain, and only if a frame came.
        let mut bound: Option<Option<(Transport, u16)>> = None;
        let mut check = |prefix: &[u8], frame_len: usize| -> Result<usize, TxRefusal> {
            let host = host.ok_or(TxRefusal::NotBound)?;
            let (transport, port) = bound
                .get_or_insert_with(|| {
                    host.bindings()
                        .iter()
                        .find(|b| b.owner == owner)
                        .map(|b| (b.transport, b.port))
                })
                .ok_or(TxRefusal::NotBound)?;
            host.check_transmit_prefix(owner, transport, port, prefix, frame_len)
                .map(|h| h.len())
        };
        let d = self.ring_tx.drain(region, &mut check, backend);
        if d.taken == 0 {
            return;
        }
        self.tx_hot_until = Some(now + TX_HOT);
        let c = &self.counters;
        // Relaxed: independent statistics counters.
        c.tx_ring.fetch_add(d.taken as u64, Ordering::Relaxed);
        c.tx_sent.fetch_add(d.sent as u64, Ordering::Relaxed);
        c.tx_copied.fetch_add(d.copied as u64, Ordering::Relaxed);
        c.tx_errors
            .fetch_add((d.failed + d.lost_completions) as u64, Ordering::Relaxed);
        for (counter, n) in c.tx_refused.iter().zip(d.refused) {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
        if d.refused.iter().any(|&n| n > 0) {
            tracing::debug!(
                owner = format_args!("{owner:#018x}"),
                refused = d.refused.iter().sum::<u64>(),
                "tx-ring frames refused"
            );
        }
        if let Some(e) = d.first_error {
            self.log_send_error(backend, &e);
        }
    }

    fn log_send_error(&mut self, backend: &dyn Backend, e: &std::io::Error) {
        let now = Instant::now();
        if self
            .last_error_log
            .is_none_or(|t| now.duration_since(t) > Duration::from_secs(1))
        {
            self.last_error_log = Some(now);
            tracing::warn!(backend = backend.name(), error = %e, "send failed");
        }
    }

    fn apply(&mut self, cmd: HostCommand, backend: &mut dyn Backend) {
        match cmd {
            HostCommand::Firewall(fw) => self.firewall = fw,
            HostCommand::Bind {
                owner,
                transport,
                port,
                own_mac,
                reply,
            } => {
                let Some(host) = self.host.as_mut() else {
                    let _ = reply.send(Err(BindError::NoHost));
                    return;
                };
                let canonical = host.config().mac;
                match host.bind(owner, transport, port, own_mac, Instant::now()) {
                    Ok(BindProgress::Bound(mac)) => {
                        let _ = reply.send(Ok(Bound {
                            mac,
                            own_mac: mac != canonical,
                        }));
                    }
                    Ok(BindProgress::Probing) => self.pending_binds.push((transport, port, reply)),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            HostCommand::Unbind {
                owner,
                transport,
                port,
            } => {
                if let Some(host) = self.host.as_mut() {
                    if host
                        .bindings()
                        .lookup(transport, port)
                        .is_some_and(|b| b.owner == owner)
                    {
                        host.unbind(transport, port);
                    } else {
                        // Still probing, or already gone.
                        host.unbind_owner(owner);
                    }
                }
                self.pending_binds
                    .retain(|(t, p, _)| (*t, *p) != (transport, port));
            }
            HostCommand::Transmit {
                owner,
                transport,
                port,
                header,
                payload,
                reply,
            } => self.transmit(owner, transport, port, &header, &payload, reply, backend),
            HostCommand::Snapshot(reply) => {
                let snap = match &self.host {
                    Some(h) => HostSnapshot {
                        bindings: h.bindings().iter().copied().collect(),
                        neighbours: h.neighbours().len(),
                    },
                    None => HostSnapshot::default(),
                };
                let _ = reply.send(snap);
            }
        }
    }

    /// Checks a client's frame and queues it for the batch's send. The
    /// checked header is sent from the copy `check_transmit` made.
    #[allow(clippy::too_many_arguments)]
    fn transmit(
        &mut self,
        owner: Tag,
        transport: Transport,
        port: u16,
        header: &[u8],
        payload: &[u8],
        reply: Reply<Result<(), TransmitError>>,
        backend: &mut dyn Backend,
    ) {
        let Some(host) = self.host.as_ref() else {
            let _ = reply.send(Err(TxRefusal::NotBound.into()));
            return;
        };
        let checked = match host.check_transmit(owner, transport, port, &[header, payload]) {
            Ok(h) => h,
            Err(refusal) => {
                bump(&self.counters.tx_refused[refusal.index()]);
                tracing::debug!(
                    owner = format_args!("{owner:#018x}"),
                    reason = refusal.name(),
                    "transmit refused"
                );
                let _ = reply.send(Err(refusal.into()));
                return;
            }
        };
        if self.tx.is_full() {
            self.flush(backend);
        }
        let Some(buf) = self.tx.next() else {
            let _ = reply.send(Err(TransmitError::Backend("transmit queue full".into())));
            return;
        };
        let len = checked.frame_len();
        // `check_transmit` bounded the frame by the policy's maximum (1514),
        // below TX_BUF.
        let mut at = 0;
        for seg in [header, payload] {
            let n = seg.len().min(len - at);
            buf[at..at + n].copy_from_slice(&seg[..n]);
            at += n;
        }
        buf[..checked.len()].copy_from_slice(checked.bytes());
        self.tx.commit(len, false, Some(reply));
    }

    fn poll(&mut self, now: Instant, backend: &mut dyn Backend) {
        self.next_poll = None;
        for _ in 0..POLL_BUDGET {
            if self.tx.is_full() {
                self.flush(backend);
            }
            let Some(host) = self.host.as_mut() else {
                return;
            };
            let Some(out) = self.tx.next() else { return };
            match host.poll(now, out) {
                HostEvent::Transmit(len) => {
                    self.tx.commit(len, true, None);
                    bump(&self.counters.host_sent);
                }
                HostEvent::SendQueued { mac, frame } => {
                    if frame.len() <= out.len() && frame.len() >= HEADER_LEN {
                        out[..frame.len()].copy_from_slice(&frame);
                        out[..6].copy_from_slice(&mac.0);
                        self.tx.commit(frame.len(), true, None);
                    }
                }
                HostEvent::Unresolved { ip, frames } => {
                    tracing::debug!(%ip, frames = frames.len(), "no ARP answer");
                    for _ in frames {
                        bump(&self.counters.tx_errors);
                    }
                }
                HostEvent::MacReady {
                    transport,
                    port,
                    mac,
                    ..
                } => {
                    tracing::info!(%transport, port, %mac, "application MAC ready");
                    self.answer_bind(transport, port, Ok(Bound { mac, own_mac: true }));
                }
                HostEvent::MacFailed {
                    transport,
                    port,
                    error,
                    ..
                } => {
                    tracing::warn!(%transport, port, %error, "no application MAC");
                    self.answer_bind(transport, port, Err(error.into()));
                }
                HostEvent::Idle { next } => {
                    self.next_poll = next;
                    return;
                }
            }
        }
        self.next_poll = Some(now);
    }

    fn answer_bind(&mut self, transport: Transport, port: u16, r: Result<Bound, BindError>) {
        if let Some(i) = self
            .pending_binds
            .iter()
            .position(|(t, p, _)| (*t, *p) == (transport, port))
        {
            let (_, _, reply) = self.pending_binds.swap_remove(i);
            let _ = reply.send(r);
        }
    }

    /// Sends the queued frames in one batch through the backend.
    fn flush(&mut self, backend: &mut dyn Backend) {
        let n = self.tx.used;
        if n == 0 {
            return;
        }
        let mut frames: [&[u8]; TX_SLOTS] = [&[]; TX_SLOTS];
        for (i, f) in frames.iter_mut().enumerate().take(n) {
            *f = &self.tx.bufs[i][..self.tx.lens[i]];
        }
        let (counters, replies, own) = (&self.counters, &mut self.tx.replies, &self.tx.own);
        let mut first_error = None;
        backend.send_batch(&frames[..n], &mut |i, result| {
            let reply = replies.get_mut(i).and_then(Option::take);
            match result {
                Ok(_) => {
                    if !own.get(i).copied().unwrap_or(true) {
                        bump(&counters.tx_sent);
                    }
                    if let Some(r) = reply {
                        let _ = r.send(Ok(()));
                    }
                }
                Err(e) => {
                    bump(&counters.tx_errors);
                    if let Some(r) = reply {
                        let _ = r.send(Err(TransmitError::Backend(e.to_string())));
                    }
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
        });
        self.tx.used = 0;
        if let Some(e) = first_error {
            self.log_send_error(backend, &e);
        }
    }
}

/// The control-plane half (see the module docs).
#[derive(Debug)]
pub struct HostControl {
    commands: Sender<HostCommand>,
    wake: Wake,
    config: Option<HostConfig>,
    rules: RefCell<FirewallRules>,
    counters: Arc<HostCounters>,
}

impl HostControl {
    /// Both halves: with `config`, the server is a host on the link; without
    /// it, only the firewall runs. `rng` draws application MACs.
    pub fn new(config: Option<HostConfig>, rng: StdRng, wake: Wake) -> (HostControl, HostPath) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let counters = Arc::new(HostCounters::default());
        let path = HostPath {
            host: config.map(|c| Host::new(c, rng)),
            firewall: Firewall::default(),
            commands: rx,
            counters: counters.clone(),
            tx: TxQueue::new(),
            scratch: vec![0u8; TX_BUF].into_boxed_slice(),
            pending_binds: Vec::new(),
            next_poll: None,
            last_error_log: None,
            ring_tx: RingTx::new(),
            tx_hot_until: None,
        };
        let control = HostControl {
            commands: tx,
            wake,
            config,
            rules: RefCell::new(FirewallRules::new()),
            counters,
        };
        (control, path)
    }

    /// A firewall-only pair (no `--ip`), for tests and servers that are
    /// not hosts.
    pub fn disabled(wake: Wake) -> (HostControl, HostPath) {
        use rand::SeedableRng;
        HostControl::new(None, StdRng::seed_from_u64(0), wake)
    }

    /// The host's identity, if the server is a host.
    pub fn config(&self) -> Option<&HostConfig> {
        self.config.as_ref()
    }

    pub fn counters(&self) -> HostCountersSnapshot {
        self.counters.snapshot()
    }

    fn send(&self, cmd: HostCommand) -> bool {
        let ok = self.commands.send(cmd).is_ok();
        self.wake.wake();
        ok
    }

    /// Binds a port for `owner`; waits for the MAC probe when `own_mac`.
    pub async fn bind(
        &self,
        owner: Tag,
        transport: Transport,
        port: u16,
        own_mac: bool,
    ) -> Result<Bound, BindError> {
        if self.config.is_none() {
            return Err(BindError::NoHost);
        }
        let (reply, answer) = oneshot::channel();
        if !self.send(HostCommand::Bind {
            owner,
            transport,
            port,
            own_mac,
            reply,
        }) {
            return Err(BindError::Stopping);
        }
        answer.await.unwrap_or(Err(BindError::Stopping))
    }

    /// Releases a binding (no answer needed).
    pub fn unbind(&self, owner: Tag, transport: Transport, port: u16) {
        self.send(HostCommand::Unbind {
            owner,
            transport,
            port,
        });
    }

    /// Checks and sends one frame of `owner`'s binding; `header` then
    /// `payload` form the frame.
    pub async fn transmit(
        &self,
        owner: Tag,
        transport: Transport,
        port: u16,
        header: Vec<u8>,
        payload: Vec<u8>,
    ) -> Result<(), TransmitError> {
        let (reply, answer) = oneshot::channel();
        if !self.send(HostCommand::Transmit {
            owner,
            transport,
            port,
            header,
            payload,
            reply,
        }) {
            return Err(TransmitError::Stopping);
        }
        answer.await.unwrap_or(Err(TransmitError::Stopping))
    }

    /// Bindings and the neighbour table's size, from the data path.
    pub async fn snapshot(&self) -> HostSnapshot {
        let (reply, answer) = oneshot::channel();
        if !self.send(HostCommand::Snapshot(reply)) {
            return HostSnapshot::default();
        }
        answer.await.unwrap_or_default()
    }

    /// Adds an operator rule and publishes the new rule set.
    pub fn add_rule(&self, action: RuleAction, expression: &str) -> Result<RuleId, FirewallError> {
        let id = self.rules.borrow_mut().add(action, expression)?;
        self.publish();
        tracing::info!(id, ?action, expression, "firewall rule added");
        Ok(id)
    }

    pub fn remove_rule(&self, id: RuleId) -> Result<(), FirewallError> {
        self.rules.borrow_mut().remove(id)?;
        self.publish();
        tracing::info!(id, "firewall rule removed");
        Ok(())
    }

    pub fn rules(&self) -> Vec<RuleStats> {
        self.rules.borrow().stats()
    }

    fn publish(&self) {
        let fw = self.rules.borrow().snapshot();
        self.send(HostCommand::Firewall(fw));
    }
}

/// The host's IPv4 address as octets (for the RPC).
pub fn ip_octets(ip: Ipv4Addr) -> [u8; 4] {
    ip.octets()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::emulated::Emulated;
    use crate::host::wire::arp::{ArpOperation, ArpRepr};
    use rand::SeedableRng;

    const PEER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
    const OURS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);

    fn pair() -> (HostControl, HostPath, Emulated) {
        let wake = Wake::default();
        let config = HostConfig::new(OURS, Ipv4Addr::new(10, 0, 0, 1), 24);
        let (c, p) = HostControl::new(Some(config), StdRng::seed_from_u64(7), wake.clone());
        (c, p, Emulated::new(16, 2048, wake))
    }

    fn arp_request() -> Vec<u8> {
        let mut out = vec![0u8; 60];
        let len = ArpRepr {
            operation: ArpOperation::Request,
            sender_mac: PEER,
            sender_ip: Ipv4Addr::new(10, 0, 0, 2),
            target_mac: MacAddr([0; 6]),
            target_ip: Ipv4Addr::new(10, 0, 0, 1),
        }
        .emit_frame(MacAddr([0xff; 6]), PEER, &[], &mut out)
        .unwrap();
        out.truncate(len);
        out
    }

    #[test]
    fn arp_request_is_control_and_the_reply_leaves_after_the_batch() {
        let (_c, mut p, mut backend) = pair();
        let wire = backend.injector().unwrap();
        let f = arp_request();
        let route = p.receive(&RxFrame {
            data: &f,
            wire_len: f.len() as u32,
            ts_ns: 0,
        });
        assert_eq!(route, Route::Control);
        p.service(&mut backend, true);
        let mut sent = Vec::new();
        wire.take_transmitted(8, &mut |f| sent.push(f.to_vec()));
        assert_eq!(sent.len(), 1);
        assert_eq!(&sent[0][0..6], &PEER.0);
        assert_eq!(&sent[0][6..12], &OURS.0);
        assert_eq!(p.counters.snapshot().control_replies, 1);
    }

    #[test]
    fn a_drop_rule_stops_frames_before_the_control_plane() {
        let (c, mut p, mut backend) = pair();
        c.add_rule(RuleAction::Drop, "arp").unwrap();
        p.service(&mut backend, false);
        let f = arp_request();
        let route = p.receive(&RxFrame {
            data: &f,
            wire_len: f.len() as u32,
            ts_ns: 0,
        });
        assert_eq!(route, Route::Dropped);
        assert_eq!(c.rules()[0].packets, 1);
    }
}
