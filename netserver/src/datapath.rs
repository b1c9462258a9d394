//! The data path: one thread that receives, classifies and places frames.
//!
//! It never waits on the control plane. Installs and removals arrive as
//! [`Command`]s on a channel it checks once per batch; each carries the new
//! immutable classifier built by the control plane (`filters::FilterSet`), so
//! swapping it in is a pointer move. Per frame the thread allocates nothing
//! and takes no lock: classification reads the immutable trie, placement
//! moves preallocated buffers through lock-free queues (see [`crate::pool`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use filters::{Classifier, Program, NOT_INTERESTED};

use crate::backend::{Backend, RxFrame, Wake};
use crate::filter::Filter;
use crate::place::OverflowPool;
use crate::stats::{Counters, DropReason};
use crate::tag::Tag;

/// Frames handled between two looks at the command channel.
pub const BATCH: usize = 64;

/// Longest sleep when no frame is ready.
const IDLE_WAIT: Duration = Duration::from_millis(20);

/// A change the control plane asks of the data path.
#[derive(Debug)]
pub enum Command {
    /// An exclusive filter, and the classifier that includes it.
    Install {
        filter: Arc<Filter>,
        classifier: Arc<Classifier>,
    },
    /// A monitor filter (gets copies; evaluated beside the classifier).
    InstallMonitor {
        filter: Arc<Filter>,
        program: Program,
    },
    /// A filter is gone; `classifier` is the new one for exclusive filters.
    /// The data path drops what it still queued for it (reason `closed`).
    Remove {
        tag: Tag,
        classifier: Option<Arc<Classifier>>,
    },
    /// Stop the thread.
    Stop,
}

/// The data path's own state.
struct DataPath {
    classifier: Arc<Classifier>,
    exclusive: HashMap<Tag, Arc<Filter>>,
    monitors: Vec<(Program, Arc<Filter>)>,
    pool: Arc<OverflowPool>,
    global: Arc<Counters>,
}

impl DataPath {
    /// Applies a command; returns false on `Stop`.
    fn apply(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Install { filter, classifier } => {
                self.classifier = classifier;
                self.exclusive.insert(filter.tag, filter);
            }
            Command::InstallMonitor { filter, program } => self.monitors.push((program, filter)),
            Command::Remove { tag, classifier } => {
                if let Some(c) = classifier {
                    self.classifier = c;
                }
                if let Some(f) = self.exclusive.remove(&tag) {
                    f.drain_closed(&self.pool, Some(&self.global));
                }
                if let Some(i) = self.monitors.iter().position(|(_, f)| f.tag == tag) {
                    let (_, f) = self.monitors.swap_remove(i);
                    f.drain_closed(&self.pool, None);
                }
            }
            Command::Stop => return false,
        }
        true
    }

    /// Classifies and places one frame.
    fn process(&self, frame: &RxFrame<'_>) {
        for (program, monitor) in &self.monitors {
            if program.matches(frame.data, frame.wire_len) {
                monitor.place(frame, &self.pool, None);
            }
        }
        let tag = self.classifier.classify(frame.data, frame.wire_len);
        match self.exclusive.get(&tag) {
            Some(f) if tag != NOT_INTERESTED => {
                f.place(frame, &self.pool, Some(&self.global));
            }
            // Issue 5 routes some of these to the control plane.
            _ => self.global.drop_on_entry(DropReason::NoFilter),
        }
    }
}

/// The control plane's handle on the data-path thread.
#[derive(Debug)]
pub struct DataPathHandle {
    tx: Sender<Command>,
    wake: Wake,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DataPathHandle {
    /// Starts the data-path thread on `backend`.
    pub fn spawn(
        mut backend: Box<dyn Backend>,
        pool: Arc<OverflowPool>,
        global: Arc<Counters>,
        wake: Wake,
    ) -> std::io::Result<DataPathHandle> {
        let (tx, rx): (Sender<Command>, Receiver<Command>) = crossbeam_channel::unbounded();
        let thread_wake = wake.clone();
        let thread = std::thread::Builder::new()
            .name("netserver-datapath".into())
            .spawn(move || {
                thread_wake.register_current();
                let mut dp = DataPath {
                    classifier: Arc::default(),
                    exclusive: HashMap::new(),
                    monitors: Vec::new(),
                    pool,
                    global,
                };
                tracing::debug!(backend = backend.name(), "data path running");
                loop {
                    loop {
                        match rx.try_recv() {
                            Ok(cmd) => {
                                if !dp.apply(cmd) {
                                    return;
                                }
                            }
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => return,
                        }
                    }
                    let n = backend.recv_batch(BATCH, &mut |f| dp.process(f));
                    if n == 0 {
                        backend.wait(IDLE_WAIT);
                    }
                }
            })?;
        Ok(DataPathHandle {
            tx,
            wake,
            thread: Some(thread),
        })
    }

    /// Sends a command and wakes the thread.
    pub fn send(&self, cmd: Command) {
        // The thread only stops on `Stop` or when this sender is gone.
        let _ = self.tx.send(cmd);
        self.wake.wake();
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        self.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the data-path thread panicked");
            }
        }
    }
}

impl Drop for DataPathHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::emulated::Emulated;
    use crate::exchange::Exchange;
    use crate::filter::{FilterGeometry, Mode};
    use filters::{Atom, Field, FilterSet, Limits, Width};
    use std::sync::atomic::{AtomicBool, Ordering};

    fn ethertype(t: u16) -> Program {
        Program::new(vec![vec![Atom::Eq {
            field: Field::at(12, Width::Half),
            mask: 0xffff,
            value: u32::from(t),
        }]])
    }

    fn frame(ethertype: u16, len: usize, seq: u32) -> Vec<u8> {
        let mut f = vec![0u8; len.max(18)];
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f[14..18].copy_from_slice(&seq.to_be_bytes());
        f
    }

    /// The accounting identity holds in every snapshot while an injector, a
    /// fetching client, a client that never fetches and the data path all run.
    #[test]
    fn identity_holds_in_every_snapshot_under_concurrent_load() {
        let wake = Wake::default();
        let backend = Emulated::new(256, 512, wake.clone());
        let injector = backend.injector().unwrap();
        let pool = Arc::new(OverflowPool::new(64, 512, 64));
        let global = Arc::new(Counters::default());
        let mut dp =
            DataPathHandle::spawn(Box::new(backend), pool.clone(), global.clone(), wake).unwrap();
        let geometry = FilterGeometry {
            queue_limit: 32,
            frames: 16,
            small_slots: 4,
            frame_size: 512,
            small_threshold: 64,
        };
        let mut set = FilterSet::new(Limits::default());
        let (fast, fast_pages) = Filter::new(1, Mode::Exclusive, "fast".into(), geometry, 64);
        let (slow, _) = Filter::new(2, Mode::Exclusive, "slow".into(), geometry, 64);
        let (fast, slow) = (Arc::new(fast), Arc::new(slow));
        let c = set.insert(1, ethertype(0x0800)).unwrap();
        dp.send(Command::Install {
            filter: fast.clone(),
            classifier: c,
        });
        let c = set.insert(2, ethertype(0x86dd)).unwrap();
        dp.send(Command::Install {
            filter: slow.clone(),
            classifier: c,
        });

        const N: u32 = 30_000;
        let done = Arc::new(AtomicBool::new(false));
        let checker = {
            let (global, done) = (global.clone(), done.clone());
            std::thread::spawn(move || {
                let mut checks = 0u64;
                while !done.load(Ordering::Acquire) {
                    let s = global.snapshot();
                    assert!(s.identity_holds(), "identity broken: {s:?}");
                    checks += 1;
                }
                checks
            })
        };
        let consumer = {
            let (fast, pool, global, done) =
                (fast.clone(), pool.clone(), global.clone(), done.clone());
            std::thread::spawn(move || {
                let mut ex = Exchange::new(fast, fast_pages, pool, Some(global));
                let mut mine: Vec<u32> = (8..16).collect();
                let mut last = None;
                while !done.load(Ordering::Acquire) {
                    let page = mine[0];
                    let mut got = None;
                    ex.fetch(0, page, &mut |f| {
                        got = Some((
                            f.location,
                            u32::from_be_bytes(f.data[14..18].try_into().unwrap()),
                        ))
                    })
                    .unwrap();
                    match got {
                        Some((crate::exchange::Location::Large { frame }, seq)) => {
                            mine.remove(0);
                            mine.push(frame);
                            assert!(last < Some(seq), "out of order");
                            last = Some(seq);
                        }
                        Some((_, seq)) => {
                            assert!(last < Some(seq), "out of order");
                            last = Some(seq);
                        }
                        None => std::thread::yield_now(),
                    }
                }
            })
        };
        for i in 0..N {
            let f = match i % 4 {
                0 => frame(0x0800, 60, i),
                1 => frame(0x0800, 300, i),
                2 => frame(0x86dd, 200, i),
                _ => frame(0x0806, 42, i),
            };
            while injector.inject(&f, 0).is_err() {
                injector.wake();
                std::thread::yield_now();
            }
            if i % 16 == 0 {
                injector.wake();
            }
        }
        injector.wake();
        // Let the data path finish, then stop the consumer.
        while global.snapshot().received < u64::from(N) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50));
        done.store(true, Ordering::Release);
        consumer.join().unwrap();
        let checks = checker.join().unwrap();
        assert!(checks > 100, "only {checks} snapshots taken");

        let s = global.snapshot();
        assert_eq!(s.received, u64::from(N));
        assert!(s.identity_holds());
        assert_eq!(s.drops_for(DropReason::NoFilter), u64::from(N / 4));
        let slow_s = slow.counters.snapshot();
        assert_eq!(slow_s.received, u64::from(N / 4));
        assert_eq!(slow_s.delivered(), 0);
        assert!(slow_s.drops_for(DropReason::QueueFull) > 0);
        // Its large frames filled the 8 free frames it started with, then
        // spilled into the overflow pool, then were dropped.
        assert_eq!(slow_s.queued, 8);
        assert!(slow_s.overflow > 0);
        // Removing the slow filter drops what it held and frees the pool.
        dp.send(Command::Remove {
            tag: 2,
            classifier: set.remove(2),
        });
        std::thread::sleep(Duration::from_millis(50));
        let s = global.snapshot();
        assert!(s.identity_holds());
        assert_eq!(
            slow.counters.snapshot().queued + slow.counters.snapshot().overflow,
            0
        );
        dp.stop();
    }
}
