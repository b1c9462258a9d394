//! The control plane's state: installed filters, tags, the data path's
//! handle. Lives on the control-plane thread only (`Rc`, `RefCell`); the RPC
//! objects in [`crate::rpc`] are thin wrappers around it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use filters::{CompileError, FilterSet, InstallError, Limits};

use crate::attach::{AttachBook, Token};
use crate::backend::emulated::Injector;
use crate::config::Config;
use crate::datapath::{Command, DataPathHandle};
use crate::exchange::Exchange;
use crate::filter::{Filter, FilterGeometry, Mode};
use crate::place::OverflowPool;
use crate::stats::{Counters, Snapshot};
use crate::tag::{Tag, TagAllocator, TagError};

/// Who asks for an install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// A client of the client socket, by its connection: the filters one
    /// connection installs are one client's, which may overlap each other.
    Client { connection: u64 },
    /// A client of the owner-only operator socket.
    Operator,
}

/// Options of an install (`FilterOptions`); 0 means the server default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstallOptions {
    pub mode: Mode,
    pub queue_limit: u32,
    pub frames: u32,
    pub small_slots: u32,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            mode: Mode::Exclusive,
            queue_limit: 0,
            frames: 0,
            small_slots: 0,
        }
    }
}

/// Why an install was refused. All but `Stopping` are the client's to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstallFilterError {
    #[error("invalid filter expression {expression:?}: {source}")]
    Compile {
        expression: String,
        #[source]
        source: CompileError,
    },
    #[error("filter {expression:?} refused: {source}; simplify the expression")]
    Limit {
        expression: String,
        #[source]
        source: InstallError,
    },
    #[error(
        "monitor mode needs operator authority: install monitor filters through the operator \
         socket {operator_socket} (owner-only), or use exclusive mode"
    )]
    MonitorNeedsOperator { operator_socket: PathBuf },
    #[error("FilterOptions.{option} = {value} is out of range: allowed {min}..={max} (0: the server default)")]
    OutOfRange {
        option: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
    #[error("the server has {max} filters installed, its limit; close filters you no longer need")]
    TooManyFilters { max: u32 },
    #[error("the server is shutting down")]
    Stopping,
    #[error(
        "filter {expression:?} is already claimed: an identical exclusive filter (tag \
         {existing:#018x}) owns this traffic; use a more specific expression, or ask the \
         operator for a monitor filter"
    )]
    Claimed { expression: String, existing: Tag },
    #[error(
        "filter {expression:?} would take packets that another client's exclusive filter \
         {theirs:?} (tag {existing:#018x}) already claims: on packets both match, the more \
         specific filter wins; install a filter that does not overlap it, or ask the \
         operator"
    )]
    WouldTake {
        expression: String,
        existing: Tag,
        theirs: String,
    },
}

/// Why `attachRegion` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachRegionError {
    #[error(
        "shared mode is not offered by this server (its frame size {frame_size} is not a \
         region frame size: a power of two, 2048..=65536); use emulated mode (fetch, fetchBatch)"
    )]
    NotOffered { frame_size: u32 },
    #[error("the filter with tag {tag:#018x} already has an exchange region (or one is being attached); use it")]
    AlreadyAttached { tag: Tag },
    #[error(
        "a frame taken by an earlier fetchBatch is still waiting for this filter: fetch it \
         first (offer a spare page), then attach the region"
    )]
    FramePending,
    #[error("the region geometry is refused: {0}; choose sizes within RegionLimits")]
    Geometry(String),
    #[error("the filter with tag {tag:#018x} is closed; install the filter again")]
    Closed { tag: Tag },
}

/// What `attachRegion` returns.
#[derive(Debug, Clone)]
pub struct AttachGrant {
    pub token: Token,
    pub side_path: PathBuf,
    pub limits: exchange::Limits,
    pub frame_size: u32,
    pub small_slot_size: u32,
}

/// An installed filter as the control plane holds it.
#[derive(Debug)]
pub struct Installed {
    pub tag: Tag,
    /// Who installed it.
    pub owner: Authority,
    pub exchange: RefCell<Exchange>,
}

impl Installed {
    pub fn filter(&self) -> Arc<Filter> {
        self.exchange.borrow().filter().clone()
    }
}

/// The control plane.
#[derive(Debug)]
pub struct ControlPlane {
    pub config: Config,
    tags: TagAllocator,
    exclusive: RefCell<FilterSet>,
    /// Monitors are not in the classifier; this set only checks their limits.
    monitors: RefCell<FilterSet>,
    installed: RefCell<BTreeMap<Tag, Rc<Installed>>>,
    datapath: RefCell<DataPathHandle>,
    global: Arc<Counters>,
    pool: Arc<OverflowPool>,
    injector: Option<Injector>,
    backend: String,
    attach: Option<Arc<AttachBook>>,
    started: Instant,
    stopping: Cell<bool>,
    shutdown: tokio::sync::Notify,
    /// The host half of the control plane (issue 5): bind, transmit, rules.
    host: Option<crate::hostpath::HostControl>,
}

impl ControlPlane {
    /// A control plane over a running data path.
    pub fn new(
        config: Config,
        tags: TagAllocator,
        datapath: DataPathHandle,
        global: Arc<Counters>,
        pool: Arc<OverflowPool>,
        injector: Option<Injector>,
        backend: String,
    ) -> ControlPlane {
        ControlPlane {
            config,
            tags,
            exclusive: RefCell::new(FilterSet::new(Limits::default())),
            monitors: RefCell::new(FilterSet::new(Limits::default())),
            installed: RefCell::new(BTreeMap::new()),
            datapath: RefCell::new(datapath),
            global,
            pool,
            injector,
            backend,
            attach: None,
            started: Instant::now(),
            stopping: Cell::new(false),
            shutdown: tokio::sync::Notify::new(),
            host: None,
        }
    }

    /// Offers shared mode through `book`'s side socket.
    pub fn with_attach(mut self, book: Arc<AttachBook>) -> ControlPlane {
        self.attach = Some(book);
        self
    }

    /// Whether `attachRegion` is offered.
    pub fn shared_mode(&self) -> bool {
        self.attach.is_some() && self.config.shared_mode()
    }

    /// `Fetch.attachRegion`: checks the geometry and issues a one-time token
    /// for the side socket. 0 picks a default for any size.
    pub fn attach_region(
        &self,
        installed: &Installed,
        ring_entries: u32,
        small_slots: u32,
        frames: u32,
    ) -> Result<AttachGrant, AttachRegionError> {
        let c = &self.config;
        let book = match &self.attach {
            Some(b) if c.shared_mode() => b,
            _ => {
                return Err(AttachRegionError::NotOffered {
                    frame_size: c.frame_size,
                })
            }
        };
        let filter = installed.filter();
        if filter.is_closed() {
            return Err(AttachRegionError::Closed { tag: filter.tag });
        }
        let ring = if ring_entries == 0 { 256 } else { ring_entries };
        let frame_count = if frames == 0 {
            filter.geometry.frames
        } else {
            frames
        };
        let geometry = exchange::Geometry {
            rx_entries: ring,
            // Room for every frame: posting a page never finds it full.
            fill_entries: ring.max(frame_count.next_power_of_two()),
            tx_entries: ring,
            completion_entries: ring,
            small_slot_count: if small_slots == 0 {
                ring.max(filter.geometry.small_slots).next_power_of_two()
            } else {
                small_slots
            },
            small_slot_size: c.small_slot_size(),
            frame_count,
            frame_size: c.frame_size,
        };
        let limits = c.region_limits();
        exchange::Layout::new(geometry, &limits)
            .map_err(|e| AttachRegionError::Geometry(e.to_string()))?;
        if installed.exchange.borrow().has_pending() {
            return Err(AttachRegionError::FramePending);
        }
        if !crate::attach::may_attach(book, &filter) {
            return Err(AttachRegionError::AlreadyAttached { tag: filter.tag });
        }
        let token = book.issue(filter, geometry);
        Ok(AttachGrant {
            token,
            side_path: book.path().to_path_buf(),
            limits,
            frame_size: c.frame_size,
            small_slot_size: c.small_slot_size(),
        })
    }

    /// Attaches the control-plane half of the host (see [`crate::hostpath`]).
    pub fn with_host(mut self, host: crate::hostpath::HostControl) -> ControlPlane {
        self.host = Some(host);
        self
    }

    /// The host half, if this control plane has one.
    pub fn host(&self) -> Option<&crate::hostpath::HostControl> {
        self.host.as_ref()
    }

    pub fn epoch(&self) -> u16 {
        self.tags.epoch()
    }

    pub fn backend(&self) -> &str {
        &self.backend
    }

    pub fn injector(&self) -> Option<&Injector> {
        self.injector.as_ref()
    }

    pub fn uptime_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The server's counters now.
    pub fn snapshot(&self) -> Snapshot {
        self.global.snapshot()
    }

    /// Installed filters, oldest first.
    pub fn filters(&self) -> Vec<Rc<Installed>> {
        self.installed.borrow().values().cloned().collect()
    }

    pub fn filter_count(&self) -> usize {
        self.installed.borrow().len()
    }

    fn pick(
        option: &'static str,
        value: u32,
        default: u32,
        min: u32,
        max: u32,
    ) -> Result<u32, InstallFilterError> {
        match value {
            0 => Ok(default),
            v if (min..=max).contains(&v) => Ok(v),
            v => Err(InstallFilterError::OutOfRange {
                option,
                value: v,
                min,
                max,
            }),
        }
    }

    /// DESIGN: a client may not claim traffic that another client's filter
    /// already owns exclusively; the operator may. Refused, for a client:
    /// a filter identical to an installed one (it would never receive a
    /// frame: the first installed wins ties), and a filter that could win
    /// frames from another owner's filter by being more specific on them
    /// (`udp port 53 and greater 100` under someone's `udp port 53`). A
    /// connection may narrow its own filters.
    fn check_claims(
        &self,
        expression: &str,
        program: &filters::Program,
        authority: Authority,
    ) -> Result<(), InstallFilterError> {
        let Authority::Client { connection } = authority else {
            return Ok(());
        };
        let exclusive = self.exclusive.borrow();
        if let Some(existing) = exclusive.identical(program) {
            return Err(InstallFilterError::Claimed {
                expression: expression.to_owned(),
                existing,
            });
        }
        let installed = self.installed.borrow();
        let own = |tag: Tag| {
            installed
                .get(&tag)
                .is_some_and(|f| f.owner == Authority::Client { connection })
        };
        match exclusive.would_take_from(program, own) {
            Some(existing) => Err(InstallFilterError::WouldTake {
                expression: expression.to_owned(),
                existing,
                theirs: installed
                    .get(&existing)
                    .map(|f| f.filter().expression.clone())
                    .unwrap_or_default(),
            }),
            None => Ok(()),
        }
    }

    /// Compiles and installs a filter.
    pub fn install(
        &self,
        expression: &str,
        options: InstallOptions,
        authority: Authority,
    ) -> Result<Rc<Installed>, InstallFilterError> {
        let c = &self.config;
        if self.stopping.get() {
            return Err(InstallFilterError::Stopping);
        }
        if options.mode == Mode::Monitor && authority != Authority::Operator {
            return Err(InstallFilterError::MonitorNeedsOperator {
                operator_socket: c.operator_socket(),
            });
        }
        if self.filter_count() >= c.max_filters as usize {
            return Err(InstallFilterError::TooManyFilters { max: c.max_filters });
        }
        let geometry = FilterGeometry {
            queue_limit: Self::pick(
                "queueLimit",
                options.queue_limit,
                c.queue_limit,
                1,
                c.max_queue_limit,
            )?,
            frames: Self::pick("frames", options.frames, c.default_frames, 2, c.max_frames)?,
            small_slots: Self::pick(
                "smallSlots",
                options.small_slots,
                c.default_small_slots,
                1,
                c.max_small_slots,
            )?,
            frame_size: c.frame_size,
            small_threshold: c.small_threshold,
        };
        let program =
            filters::compile(expression).map_err(|source| InstallFilterError::Compile {
                expression: expression.to_owned(),
                source,
            })?;
        if options.mode == Mode::Exclusive {
            self.check_claims(expression, &program, authority)?;
        }
        let tag = self.tags.issue();
        let set = match options.mode {
            Mode::Exclusive => &self.exclusive,
            Mode::Monitor => &self.monitors,
        };
        let classifier = set
            .borrow_mut()
            .insert(tag, program.clone())
            .map_err(|source| InstallFilterError::Limit {
                expression: expression.to_owned(),
                source,
            })?;
        let (filter, client_pages) = Filter::new(
            tag,
            options.mode,
            expression.to_owned(),
            geometry,
            c.overflow_limit as usize,
        );
        let filter = Arc::new(filter);
        let global = (options.mode == Mode::Exclusive).then(|| self.global.clone());
        let exchange = Exchange::new(filter.clone(), client_pages, self.pool.clone(), global);
        let installed = Rc::new(Installed {
            tag,
            owner: authority,
            exchange: RefCell::new(exchange),
        });
        self.installed.borrow_mut().insert(tag, installed.clone());
        let cmd = match options.mode {
            Mode::Exclusive => Command::Install { filter, classifier },
            Mode::Monitor => Command::InstallMonitor { filter, program },
        };
        self.datapath.borrow().send(cmd);
        tracing::info!(tag = format_args!("{tag:#018x}"), expression, mode = ?options.mode, ?geometry, "filter installed");
        Ok(installed)
    }

    /// The installed filter with `tag`, or why there is none.
    pub fn lookup(&self, tag: Tag) -> Result<Rc<Installed>, TagError> {
        self.tags.check(tag)?;
        self.installed
            .borrow()
            .get(&tag)
            .cloned()
            .ok_or_else(|| self.tags.unknown(tag))
    }

    /// Removes a filter: the data path stops placing frames for it, what it
    /// held is dropped (reason `closed`) and its frames and slots are freed.
    pub fn remove(&self, tag: Tag) -> Result<(), TagError> {
        let installed = self.lookup(tag)?;
        self.installed.borrow_mut().remove(&tag);
        let mode = installed.filter().mode;
        let classifier = match mode {
            Mode::Exclusive => self.exclusive.borrow_mut().remove(tag),
            Mode::Monitor => {
                self.monitors.borrow_mut().remove(tag);
                None
            }
        };
        self.datapath
            .borrow()
            .send(Command::Remove { tag, classifier });
        let dropped = installed.exchange.borrow_mut().close();
        tracing::info!(tag = format_args!("{tag:#018x}"), dropped, "filter removed");
        Ok(())
    }

    /// Asks the server to stop (after the current replies went out).
    pub fn request_shutdown(&self) {
        self.stopping.set(true);
        self.shutdown.notify_one();
    }

    /// Resolves when a shutdown was requested.
    pub async fn shutdown_requested(&self) {
        self.shutdown.notified().await;
    }

    /// Stops the data path and closes every filter.
    pub fn stop(&self) {
        self.stopping.set(true);
        let tags: Vec<Tag> = self.installed.borrow().keys().copied().collect();
        for t in tags {
            let _ = self.remove(t);
        }
        self.datapath.borrow_mut().stop();
    }
}
