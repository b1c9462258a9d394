//! Frantz's exchange: the per-filter frame-ownership table and the fetch
//! state machine, on the control plane.
//!
//! The server keeps its own record of which page frames of a filter's frame
//! space the client owns and trusts nothing the client says about it: a
//! `fetch` names a small slot (range-checked) and a page the client gives up
//! (range-checked, and it must be the client's *now*). A large frame changes
//! hands in the same step: the frame holding the packet becomes the
//! client's, the given page the server's. Nothing here knows whether the
//! bytes travel in the RPC reply (emulated) or sit in shared memory: that is
//! [`crate::place`]'s business.
//!
//! Shared mode has no fetch call: the client takes packets off its region's
//! rx ring and gives pages on the fill ring, and the ownership table is
//! `exchange::FrameTable` inside the region, driven by the data path. This
//! table is not that one, on purpose: in emulated mode the table *is* the
//! storage (it holds the client's [`Page`]s) and ownership spans two threads
//! (the data path takes free pages from a lock-free queue, the control plane
//! exchanges them on `fetch`), while `exchange::FrameTable` is a
//! single-threaded `&mut` state machine whose refusals count towards
//! revoking a region. Sharing it would put a lock on the per-packet path.
//! What the two modes share is the state machine above them: the queue,
//! overflow, order, drop reasons and counters in [`crate::filter`].

use std::sync::Arc;

use crate::filter::{Delivery, Filter, Placed};
use crate::place::{OverflowPool, Page};
use crate::stats::{Counters, Exit, Stage};
use crate::tag::Tag;

/// A client request the exchange refuses. The client's fault; each says
/// what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    #[error(
        "small slot {slot} is out of range: this filter has {slots} small slots (0..{slots}); \
         name one of them"
    )]
    SmallSlotOutOfRange { slot: u32, slots: u32 },
    #[error(
        "page {page} is out of range: this filter's frame space has {frames} frames \
         (0..{frames}); give a frame you own"
    )]
    PageOutOfRange { page: u32, frames: u32 },
    #[error(
        "page {page} is not yours: the server owns it now (it was given to the server in an \
         earlier fetch, or is one of frames 0..{server_start} the server started with); give a \
         frame you own — one a fetch returned to you, or one of {server_start}..{frames} not \
         given away yet"
    )]
    PageNotYours {
        page: u32,
        server_start: u32,
        frames: u32,
    },
    #[error("page {page} is given twice in one batch; give each page once")]
    PageGivenTwice { page: u32 },
    #[error(
        "the filter with tag {tag:#018x} is closed (closed by its holder, removed by the \
         operator, or the server is stopping); install the filter again"
    )]
    Closed { tag: Tag },
    #[error(
        "the filter with tag {tag:#018x} receives through its exchange region (shared mode): \
         its packets are on the region's rx ring and the pages it gives go on the fill ring; \
         fetch and fetchBatch are for emulated mode"
    )]
    Shared { tag: Tag },
}

/// Where a fetched frame is, as `Fetched` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// Copied into the small slot the client named.
    Small { slot: u32 },
    /// In page frame `frame`, now the client's.
    Large { frame: u32 },
}

/// One fetched frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched<'a> {
    pub location: Location,
    pub len: u32,
    pub wire_len: u32,
    pub ts_ns: u64,
    /// The bytes, when they travel in the RPC (emulated mode).
    pub data: &'a [u8],
}

/// Owner of a page frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Client,
    Server,
}

/// The control plane's side of one filter.
#[derive(Debug)]
pub struct Exchange {
    filter: Arc<Filter>,
    pool: Arc<OverflowPool>,
    /// The server's counters, for exclusive filters (monitor copies are
    /// outside the server-wide identity).
    global: Option<Arc<Counters>>,
    /// `Some(page)`: the client owns frame `i`; `None`: the server does.
    table: Vec<Option<Page>>,
    /// A frame popped by a batch that could not take it (no slot or page
    /// left in the lists); still counted as waiting, delivered first next.
    pending: Option<(Stage, Delivery)>,
}

impl Exchange {
    /// The exchange for `filter`, whose client owns `client_pages` at start.
    pub fn new(
        filter: Arc<Filter>,
        client_pages: Vec<Page>,
        pool: Arc<OverflowPool>,
        global: Option<Arc<Counters>>,
    ) -> Exchange {
        let mut table: Vec<Option<Page>> = (0..filter.geometry.frames).map(|_| None).collect();
        for p in client_pages {
            let i = p.index as usize;
            table[i] = Some(p);
        }
        Exchange {
            filter,
            pool,
            global,
            table,
            pending: None,
        }
    }

    pub fn filter(&self) -> &Arc<Filter> {
        &self.filter
    }

    /// Who owns page frame `page` (`None`: out of range).
    pub fn owner(&self, page: u32) -> Option<Owner> {
        self.table.get(page as usize).map(|p| {
            if p.is_some() {
                Owner::Client
            } else {
                Owner::Server
            }
        })
    }

    /// Frames the client owns now.
    pub fn client_frames(&self) -> usize {
        self.table.iter().filter(|p| p.is_some()).count()
    }

    fn refuse(&self, e: ExchangeError) -> ExchangeError {
        self.filter.counters.refuse();
        e
    }

    fn check_open(&self) -> Result<(), ExchangeError> {
        if self.filter.is_closed() {
            return Err(ExchangeError::Closed {
                tag: self.filter.tag,
            });
        }
        Ok(())
    }

    fn check_transport(&self) -> Result<(), ExchangeError> {
        // While a region is only being attached, emulated fetches still work
        // (a client whose attach failed falls back to them).
        if self.filter.transport() == crate::filter::Transport::Shared {
            return Err(self.refuse(ExchangeError::Shared {
                tag: self.filter.tag,
            }));
        }
        Ok(())
    }

    /// Whether a `fetchBatch` holds back a frame it could not deliver.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    fn check_slot(&self, slot: u32) -> Result<(), ExchangeError> {
        let slots = self.filter.geometry.small_slots;
        if slot >= slots {
            return Err(self.refuse(ExchangeError::SmallSlotOutOfRange { slot, slots }));
        }
        Ok(())
    }

    fn check_page(&self, page: u32) -> Result<(), ExchangeError> {
        let frames = self.filter.geometry.frames;
        match self.owner(page) {
            None => Err(self.refuse(ExchangeError::PageOutOfRange { page, frames })),
            Some(Owner::Server) => Err(self.refuse(ExchangeError::PageNotYours {
                page,
                server_start: frames / 2,
                frames,
            })),
            Some(Owner::Client) => Ok(()),
        }
    }

    fn next(&mut self) -> Option<(Stage, Delivery)> {
        self.pending.take().or_else(|| self.filter.pop())
    }

    fn count_exit(&self, stage: Stage, how: Exit, bytes: u64) {
        self.filter.counters.exit(stage, how, bytes);
        if let Some(g) = &self.global {
            g.exit(stage, how, bytes);
        }
    }

    /// Delivers `d` using `slot` (small) or `page` (large); both validated.
    fn deliver(
        &mut self,
        stage: Stage,
        d: Delivery,
        slot: u32,
        page: u32,
        emit: &mut dyn FnMut(Fetched<'_>),
    ) {
        let (len, wire_len, ts_ns) = (d.len, d.wire_len, d.ts_ns);
        if d.small {
            emit(Fetched {
                location: Location::Small { slot },
                len,
                wire_len,
                ts_ns,
                data: d.rpc_bytes(),
            });
            self.filter.release(d, &self.pool);
            self.count_exit(stage, Exit::Small, u64::from(len));
            return;
        }
        // The client gives `page` up …
        let Some(mut given) = self.table[page as usize].take() else {
            unreachable!("page validated as the client's")
        };
        let frame = match d.placed {
            Placed::Large(full) => {
                // … and receives the frame the server filled.
                self.filter.give_back(given);
                full
            }
            Placed::Spilled(spilled) => {
                // The frame waited in the server's pool: it is written into
                // the page the client gave, which is the one it gets back.
                given.write(spilled.bytes(len as usize));
                self.pool.release(spilled);
                given
            }
            Placed::Small(_) => unreachable!("small deliveries handled above"),
        };
        let index = frame.index;
        emit(Fetched {
            location: Location::Large { frame: index },
            len,
            wire_len,
            ts_ns,
            data: frame.rpc_bytes(len as usize),
        });
        self.table[index as usize] = Some(frame);
        self.filter.counters.large_path(false);
        if let Some(g) = &self.global {
            g.large_path(false);
        }
        self.count_exit(stage, Exit::Large, u64::from(len));
    }

    /// Frantz's `fetch(smallSlot, page)`: emits the next frame, if any;
    /// returns whether one was waiting.
    pub fn fetch(
        &mut self,
        small_slot: u32,
        page: u32,
        emit: &mut dyn FnMut(Fetched<'_>),
    ) -> Result<bool, ExchangeError> {
        self.check_open()?;
        self.check_transport()?;
        self.check_slot(small_slot)?;
        self.check_page(page)?;
        match self.next() {
            None => Ok(false),
            Some((stage, d)) => {
                self.deliver(stage, d, small_slot, page, emit);
                Ok(true)
            }
        }
    }

    /// The batch form: up to `max` frames; small ones use `slots` in order,
    /// large ones consume `pages` in order; stops when the list the next
    /// frame needs has run out or nothing more is waiting. Every slot and
    /// page is validated before anything is delivered.
    pub fn fetch_batch(
        &mut self,
        max: u32,
        slots: &[u32],
        pages: &[u32],
        emit: &mut dyn FnMut(Fetched<'_>),
    ) -> Result<u32, ExchangeError> {
        self.check_open()?;
        self.check_transport()?;
        for &s in slots {
            self.check_slot(s)?;
        }
        for (i, &p) in pages.iter().enumerate() {
            self.check_page(p)?;
            if pages[..i].contains(&p) {
                return Err(self.refuse(ExchangeError::PageGivenTwice { page: p }));
            }
        }
        let (mut si, mut pi, mut n) = (0, 0, 0);
        while n < max {
            let Some((stage, d)) = self.next() else { break };
            let fits = if d.small {
                si < slots.len()
            } else {
                pi < pages.len()
            };
            if !fits {
                self.pending = Some((stage, d));
                break;
            }
            let (slot, page) = if d.small {
                si += 1;
                (slots[si - 1], 0)
            } else {
                pi += 1;
                (0, pages[pi - 1])
            };
            self.deliver(stage, d, slot, page, emit);
            n += 1;
        }
        Ok(n)
    }

    /// Closes the filter's exchange: the frame held back by a batch and
    /// everything waiting are dropped (reason `closed`) and freed. Returns
    /// how many frames were dropped. Idempotent.
    pub fn close(&mut self) -> u64 {
        self.filter.close();
        let mut n = 0;
        if let Some((stage, d)) = self.pending.take() {
            self.filter.release(d, &self.pool);
            self.count_exit(stage, Exit::Closed, 0);
            n += 1;
        }
        n + self.filter.drain_closed(&self.pool, self.global.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::RxFrame;
    use crate::filter::{FilterGeometry, Mode};

    fn setup() -> (Exchange, Arc<Counters>, Arc<OverflowPool>) {
        let g = FilterGeometry {
            queue_limit: 4,
            frames: 8,
            small_slots: 2,
            frame_size: 256,
            small_threshold: 16,
        };
        let pool = Arc::new(OverflowPool::new(4, 256, 16));
        let global = Arc::new(Counters::default());
        let (f, pages) = Filter::new(0x11, Mode::Exclusive, "x".into(), g, 4);
        let ex = Exchange::new(Arc::new(f), pages, pool.clone(), Some(global.clone()));
        (ex, global, pool)
    }

    fn inject(ex: &Exchange, pool: &OverflowPool, global: &Counters, data: &[u8]) {
        ex.filter().place(
            &RxFrame {
                data,
                wire_len: data.len() as u32,
                ts_ns: 5,
            },
            pool,
            Some(global),
        );
    }

    fn fetch_one(
        ex: &mut Exchange,
        slot: u32,
        page: u32,
    ) -> Result<Option<(Location, Vec<u8>)>, ExchangeError> {
        let mut got = None;
        ex.fetch(slot, page, &mut |f| {
            got = Some((f.location, f.data.to_vec()))
        })?;
        Ok(got)
    }

    #[test]
    fn the_client_starts_owning_the_upper_half() {
        let (ex, _, _) = setup();
        for p in 0..4 {
            assert_eq!(ex.owner(p), Some(Owner::Server));
        }
        for p in 4..8 {
            assert_eq!(ex.owner(p), Some(Owner::Client));
        }
        assert_eq!(ex.owner(8), None);
    }

    #[test]
    fn large_fetch_swaps_ownership() {
        let (mut ex, global, pool) = setup();
        inject(&ex, &pool, &global, &[3; 100]);
        let (loc, data) = fetch_one(&mut ex, 0, 5).unwrap().unwrap();
        assert_eq!(loc, Location::Large { frame: 0 });
        assert_eq!(data, vec![3; 100]);
        assert_eq!(ex.owner(0), Some(Owner::Client));
        assert_eq!(ex.owner(5), Some(Owner::Server));
        // Giving page 5 again is refused, naming the index and the owner.
        let err = fetch_one(&mut ex, 0, 5).unwrap_err();
        assert!(matches!(err, ExchangeError::PageNotYours { page: 5, .. }));
        assert!(err
            .to_string()
            .contains("page 5 is not yours: the server owns it"));
        // The frame it got is the client's to give.
        assert_eq!(fetch_one(&mut ex, 0, 0).unwrap(), None);
        assert_eq!(ex.filter().counters.snapshot().refused, 1);
        let s = global.snapshot();
        assert_eq!((s.delivered_large, s.bytes), (1, 100));
        assert!(s.identity_holds());
    }

    #[test]
    fn small_fetch_keeps_the_page_and_checks_the_slot() {
        let (mut ex, global, pool) = setup();
        inject(&ex, &pool, &global, b"tiny");
        let err = fetch_one(&mut ex, 2, 4).unwrap_err();
        assert_eq!(
            err,
            ExchangeError::SmallSlotOutOfRange { slot: 2, slots: 2 }
        );
        let err = fetch_one(&mut ex, 0, 99).unwrap_err();
        assert_eq!(
            err,
            ExchangeError::PageOutOfRange {
                page: 99,
                frames: 8
            }
        );
        let (loc, data) = fetch_one(&mut ex, 1, 4).unwrap().unwrap();
        assert_eq!(loc, Location::Small { slot: 1 });
        assert_eq!(data, b"tiny");
        assert_eq!(ex.owner(4), Some(Owner::Client));
    }

    #[test]
    fn spilled_large_frames_come_back_in_the_given_page() {
        let (mut ex, global, pool) = setup();
        for i in 0..6u8 {
            inject(&ex, &pool, &global, &[i; 50]);
        }
        let s = global.snapshot();
        assert_eq!((s.queued, s.overflow), (4, 2));
        let mut order = Vec::new();
        let mut mine: Vec<u32> = (4..8).collect();
        while let Some(page) = mine.pop() {
            match fetch_one(&mut ex, 0, page).unwrap() {
                Some((Location::Large { frame }, data)) => {
                    order.push(data[0]);
                    mine.insert(0, frame);
                }
                other => panic!("{other:?}"),
            }
            if order.len() == 6 {
                break;
            }
        }
        assert_eq!(order, [0, 1, 2, 3, 4, 5]);
        assert_eq!(ex.client_frames(), 4);
        assert_eq!(pool.in_use(), 0);
        let s = global.snapshot();
        assert_eq!((s.delivered_large, s.queued, s.overflow), (6, 0, 0));
        assert!(s.identity_holds());
    }

    #[test]
    fn batch_stops_when_the_needed_list_runs_out_and_keeps_the_frame() {
        let (mut ex, global, pool) = setup();
        inject(&ex, &pool, &global, b"s1");
        inject(&ex, &pool, &global, &[1; 40]);
        inject(&ex, &pool, &global, b"s2");
        let mut got = Vec::new();
        let n = ex
            .fetch_batch(10, &[0, 1], &[], &mut |f| got.push(f.location))
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(global.snapshot().queued, 2);
        let n = ex
            .fetch_batch(10, &[1], &[6, 7], &mut |f| got.push(f.location))
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            got,
            [
                Location::Small { slot: 0 },
                Location::Large { frame: 0 },
                Location::Small { slot: 1 }
            ]
        );
        let err = ex.fetch_batch(1, &[], &[4, 4], &mut |_| {}).unwrap_err();
        assert_eq!(err, ExchangeError::PageGivenTwice { page: 4 });
        assert!(global.snapshot().identity_holds());
    }

    #[test]
    fn close_drops_pending_and_queued_and_refuses_later_calls() {
        let (mut ex, global, pool) = setup();
        for _ in 0..3 {
            inject(&ex, &pool, &global, &[1; 40]);
        }
        ex.fetch_batch(5, &[], &[], &mut |_| {}).unwrap();
        assert_eq!(ex.close(), 3);
        assert_eq!(ex.filter().free_frames(), 4);
        let s = global.snapshot();
        assert_eq!(s.drops_for(crate::stats::DropReason::Closed), 3);
        assert!(s.identity_holds());
        assert!(matches!(
            fetch_one(&mut ex, 0, 4),
            Err(ExchangeError::Closed { tag: 0x11 })
        ));
        assert_eq!(ex.close(), 0);
    }
}
