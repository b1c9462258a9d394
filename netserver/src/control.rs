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
    /// A client of the client socket.
    Client,
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
}

/// An installed filter as the control plane holds it.
#[derive(Debug)]
pub struct Installed {
    pub tag: Tag,
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
    started: Instant,
    stopping: Cell<bool>,
    shutdown: tokio::sync::Notify,
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
            started: Instant::now(),
            stopping: Cell::new(false),
            shutdown: tokio::sync::Notify::new(),
        }
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
