//! Van Jacobson channels: single-producer single-consumer rings in shared
//! memory, with free-running `u32` indices and a need-wakeup flag.
//!
//! The four rings and which side holds which end:
//!
//! | ring | producer (side) | consumer (side) | entry |
//! |---|---|---|---|
//! | rx | [`RxProducer`] (server) | [`RxConsumer`] (client) | [`RxDesc`] |
//! | fill | [`FillProducer`] (client) | [`FillConsumer`] (server) | `u32` frame index |
//! | tx | [`TxProducer`] (client) | [`TxConsumer`] (server) | [`TxDesc`] |
//! | completion | [`CompletionProducer`] (server) | [`CompletionConsumer`] (client) | [`TxCompletion`] |
//!
//! The handles are created only by [`crate::ServerRegion`] and
//! [`crate::ClientRegion`], which add frame ownership on top.
//!
//! # Trust
//!
//! Each handle keeps its own index privately and never reads it back from
//! shared memory; it only *writes* it there for the peer. The peer's index is
//! loaded once per refresh into a local and validated: the number of filled
//! entries `producer - consumer` (wrapping) must be at most `entries`. A
//! violation refuses the whole refresh ([`Violation::ProducerIndex`] /
//! [`Violation::ConsumerIndex`]) and changes nothing. Entries are copied out
//! word by word (one atomic load each) into a value the caller then validates.
//!
//! # Memory ordering
//!
//! All accesses are atomic. The protocol, with the other side each ordering
//! synchronises with:
//!
//! 1. **Publish.** The producer writes entries with `Relaxed` stores, then
//!    stores the producer index with `Release`. The consumer loads the
//!    producer index with `Acquire`, then loads the entries: it sees every
//!    entry written before the index it saw.
//! 2. **Release slots.** The consumer loads entries, then stores the consumer
//!    index with `Release`. The producer loads the consumer index with
//!    `Acquire` before overwriting slots: it never overwrites an entry the
//!    consumer has not finished reading.
//! 3. **Sleep / wake (Dekker).** A consumer about to sleep stores
//!    `need_wakeup = 1`, issues a `SeqCst` fence, and re-loads the producer
//!    index; only if the ring is still empty does it sleep on the eventfd.
//!    A producer stores the producer index, issues a `SeqCst` fence, and loads
//!    `need_wakeup`; if it is set, it clears it and writes the eventfd. The two
//!    fences make it impossible for both loads to miss the other side's store:
//!    either the consumer sees the new entries or the producer sees the flag.
//!    The eventfd is a counter, so a notify that lands before the consumer
//!    polls is not lost.

use std::marker::PhantomData;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::sync::Arc;

use crate::layout::{RingId, RingLayout, RxDesc, TxCompletion, TxDesc};
use crate::region::Mapping;
use crate::Violation;

mod sealed {
    pub trait Sealed {}
    impl Sealed for u32 {}
    impl Sealed for crate::layout::RxDesc {}
    impl Sealed for crate::layout::TxDesc {}
    impl Sealed for crate::layout::TxCompletion {}
}

/// A ring entry: a fixed number of little-endian `u32` words.
pub trait Entry: Copy + Default + sealed::Sealed {
    /// Size in 4-byte words.
    const WORDS: usize;
    /// Copies the entry out (one `Relaxed` load per word; ordering comes from
    /// the index protocol).
    fn load(words: &[AtomicU32]) -> Self;
    /// Writes the entry (one `Relaxed` store per word; ordering comes from the
    /// index protocol).
    fn store(&self, words: &[AtomicU32]);
}

fn lo(v: u64) -> u32 {
    v as u32
}
fn hi(v: u64) -> u32 {
    (v >> 32) as u32
}
fn join(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | (u64::from(hi) << 32)
}

impl Entry for u32 {
    const WORDS: usize = 1;
    fn load(w: &[AtomicU32]) -> Self {
        w[0].load(Ordering::Relaxed)
    }
    fn store(&self, w: &[AtomicU32]) {
        w[0].store(*self, Ordering::Relaxed);
    }
}

impl Entry for RxDesc {
    const WORDS: usize = 8;
    fn load(w: &[AtomicU32]) -> Self {
        let w = &w[..8];
        let r = |i: usize| w[i].load(Ordering::Relaxed);
        let last = r(7);
        RxDesc {
            tag: join(r(0), r(1)),
            timestamp_ns: join(r(2), r(3)),
            index: r(4),
            len: r(5),
            wire_len: r(6),
            offset: last as u16,
            flags: (last >> 16) as u16,
        }
    }
    fn store(&self, w: &[AtomicU32]) {
        let words = [
            lo(self.tag),
            hi(self.tag),
            lo(self.timestamp_ns),
            hi(self.timestamp_ns),
            self.index,
            self.len,
            self.wire_len,
            u32::from(self.offset) | (u32::from(self.flags) << 16),
        ];
        for (a, v) in w[..8].iter().zip(words) {
            a.store(v, Ordering::Relaxed);
        }
    }
}

impl Entry for TxDesc {
    const WORDS: usize = 8;
    fn load(w: &[AtomicU32]) -> Self {
        let w = &w[..8];
        let r = |i: usize| w[i].load(Ordering::Relaxed);
        TxDesc {
            frame: r(0),
            offset: r(1),
            len: r(2),
            flags: r(3),
            frame2: r(4),
            offset2: r(5),
            len2: r(6),
            reserved: r(7),
        }
    }
    fn store(&self, w: &[AtomicU32]) {
        let words = [
            self.frame,
            self.offset,
            self.len,
            self.flags,
            self.frame2,
            self.offset2,
            self.len2,
            self.reserved,
        ];
        for (a, v) in w[..8].iter().zip(words) {
            a.store(v, Ordering::Relaxed);
        }
    }
}

impl Entry for TxCompletion {
    const WORDS: usize = 4;
    fn load(w: &[AtomicU32]) -> Self {
        let w = &w[..4];
        let r = |i: usize| w[i].load(Ordering::Relaxed);
        TxCompletion {
            frame: r(0),
            frame2: r(1),
            status: r(2),
            len: r(3),
        }
    }
    fn store(&self, w: &[AtomicU32]) {
        let words = [self.frame, self.frame2, self.status, self.len];
        for (a, v) in w[..4].iter().zip(words) {
            a.store(v, Ordering::Relaxed);
        }
    }
}

/// Marker: the end lives in the server.
#[derive(Debug)]
pub enum Server {}
/// Marker: the end lives in the client.
#[derive(Debug)]
pub enum Client {}

/// Where one ring lives inside a mapping (word indices).
#[derive(Debug, Clone)]
struct RingRef {
    map: Arc<Mapping>,
    id: RingId,
    producer: usize,
    consumer: usize,
    need_wakeup: usize,
    entries_at: usize,
    entries: u32,
}

impl RingRef {
    fn new(map: Arc<Mapping>, id: RingId, l: &RingLayout) -> RingRef {
        assert!(
            l.end() <= map.words().len() * 4,
            "exchange: ring outside the mapped rings"
        );
        assert!(l.entries.is_power_of_two());
        RingRef {
            map,
            id,
            producer: l.producer() / 4,
            consumer: l.consumer() / 4,
            need_wakeup: l.need_wakeup() / 4,
            entries_at: l.entries_offset() / 4,
            entries: l.entries,
        }
    }
    fn word(&self, i: usize) -> &AtomicU32 {
        &self.map.words()[i]
    }
    fn slot<E: Entry>(&self, index: u32) -> &[AtomicU32] {
        let at = self.entries_at + (index & (self.entries - 1)) as usize * E::WORDS;
        &self.map.words()[at..at + E::WORDS]
    }
}

/// The producing end of a ring. `S` is the side it lives on.
#[derive(Debug)]
pub struct Producer<E: Entry, S> {
    ring: RingRef,
    /// Next index to write (private; includes unpublished entries).
    next: u32,
    /// Last index stored for the peer.
    published: u32,
    /// Consumer index last read and validated.
    cached_consumer: u32,
    _marker: PhantomData<(E, S)>,
}

/// The consuming end of a ring. `S` is the side it lives on.
#[derive(Debug)]
pub struct Consumer<E: Entry, S> {
    ring: RingRef,
    /// Next index to read (private).
    next: u32,
    /// Producer index last read and validated.
    cached_producer: u32,
    _marker: PhantomData<(E, S)>,
}

/// Server end of the rx ring.
pub type RxProducer = Producer<RxDesc, Server>;
/// Client end of the rx ring.
pub type RxConsumer = Consumer<RxDesc, Client>;
/// Client end of the fill ring.
pub type FillProducer = Producer<u32, Client>;
/// Server end of the fill ring.
pub type FillConsumer = Consumer<u32, Server>;
/// Client end of the tx ring.
pub type TxProducer = Producer<TxDesc, Client>;
/// Server end of the tx ring.
pub type TxConsumer = Consumer<TxDesc, Server>;
/// Server end of the completion ring.
pub type CompletionProducer = Producer<TxCompletion, Server>;
/// Client end of the completion ring.
pub type CompletionConsumer = Consumer<TxCompletion, Client>;

impl<E: Entry, S> Producer<E, S> {
    /// A producer whose private index starts at `start` (0 in the protocol;
    /// other values only in tests of counter wrap-around).
    pub(crate) fn new(map: Arc<Mapping>, id: RingId, layout: &RingLayout, start: u32) -> Self {
        Producer {
            ring: RingRef::new(map, id, layout),
            next: start,
            published: start,
            cached_consumer: start,
            _marker: PhantomData,
        }
    }

    /// Ring size.
    pub fn entries(&self) -> u32 {
        self.ring.entries
    }

    /// Re-reads the consumer index and returns how many entries can be written.
    pub fn refresh(&mut self) -> Result<u32, Violation> {
        // Acquire: pairs with the consumer's Release store of its index
        // (protocol step 2): its reads of the slots we will overwrite are done.
        let consumer = self.ring.word(self.ring.consumer).load(Ordering::Acquire);
        // Measured from `next`, not `published`: entries written but not yet
        // published count too, or a consumer index moved back by a hostile
        // peer would pass this check and underflow `free_cached`.
        let in_flight = self.next.wrapping_sub(consumer);
        if in_flight > self.ring.entries {
            return Err(Violation::ConsumerIndex {
                ring: self.ring.id,
                consumer,
                producer: self.published,
                entries: self.ring.entries,
            });
        }
        self.cached_consumer = consumer;
        Ok(self.free_cached())
    }

    fn free_cached(&self) -> u32 {
        self.ring.entries - self.next.wrapping_sub(self.cached_consumer)
    }

    /// Free entries, re-reading the consumer index only if the cached view is
    /// full.
    pub fn free(&mut self) -> Result<u32, Violation> {
        let free = self.free_cached();
        if free > 0 {
            return Ok(free);
        }
        self.refresh()
    }

    /// Writes one entry (not yet visible to the consumer: call
    /// [`publish`](Self::publish)). Returns `Ok(false)` if the ring is full.
    pub fn push(&mut self, entry: &E) -> Result<bool, Violation> {
        if self.free()? == 0 {
            return Ok(false);
        }
        entry.store(self.ring.slot::<E>(self.next));
        self.next = self.next.wrapping_add(1);
        Ok(true)
    }

    /// Writes as many of `entries` as fit and publishes them. Returns how many
    /// were written and whether the consumer must be woken.
    pub fn push_batch(&mut self, entries: &[E]) -> Result<(usize, bool), Violation> {
        let mut free = self.free()? as usize;
        if free < entries.len() {
            free = self.refresh()? as usize;
        }
        let n = free.min(entries.len());
        for e in &entries[..n] {
            e.store(self.ring.slot::<E>(self.next));
            self.next = self.next.wrapping_add(1);
        }
        Ok((n, self.publish()))
    }

    /// The private index the next entry will be written at.
    pub fn next_index(&self) -> u32 {
        self.next
    }

    /// Number of entries written but not yet published.
    pub fn pending(&self) -> u32 {
        self.next.wrapping_sub(self.published)
    }

    /// Makes every written entry visible to the consumer. Returns `true` if
    /// the consumer asked to be woken (the caller then notifies its eventfd).
    pub fn publish(&mut self) -> bool {
        if self.next != self.published {
            // Release: pairs with the consumer's Acquire load of the producer
            // index (protocol step 1): the entries written above are visible.
            self.ring
                .word(self.ring.producer)
                .store(self.next, Ordering::Release);
            self.published = self.next;
        }
        // SeqCst fence: pairs with the consumer's fence between setting
        // need_wakeup and re-reading the producer index (protocol step 3).
        fence(Ordering::SeqCst);
        let flag = self.ring.word(self.ring.need_wakeup);
        // Relaxed: ordered by the fence above.
        if flag.load(Ordering::Relaxed) != 0 {
            // Relaxed: the flag is only a hint; the eventfd write that
            // follows carries the wake-up.
            flag.store(0, Ordering::Relaxed);
            return true;
        }
        false
    }
}

impl<E: Entry, S> Consumer<E, S> {
    /// A consumer whose private index starts at `start` (0 in the protocol).
    pub(crate) fn new(map: Arc<Mapping>, id: RingId, layout: &RingLayout, start: u32) -> Self {
        Consumer {
            ring: RingRef::new(map, id, layout),
            next: start,
            cached_producer: start,
            _marker: PhantomData,
        }
    }

    /// Ring size.
    pub fn entries(&self) -> u32 {
        self.ring.entries
    }

    /// Which ring.
    pub fn id(&self) -> RingId {
        self.ring.id
    }

    /// Re-reads the producer index and returns how many entries are ready.
    pub fn refresh(&mut self) -> Result<u32, Violation> {
        // Acquire: pairs with the producer's Release store of its index
        // (protocol step 1): entries before it are visible to our loads.
        let producer = self.ring.word(self.ring.producer).load(Ordering::Acquire);
        let ready = producer.wrapping_sub(self.next);
        if ready > self.ring.entries {
            return Err(Violation::ProducerIndex {
                ring: self.ring.id,
                producer,
                consumer: self.next,
                entries: self.ring.entries,
            });
        }
        self.cached_producer = producer;
        Ok(ready)
    }

    /// The private index of the oldest unconsumed entry.
    pub fn next_index(&self) -> u32 {
        self.next
    }

    /// Entries ready according to the cached producer index.
    pub fn ready_cached(&self) -> u32 {
        self.cached_producer.wrapping_sub(self.next)
    }

    /// Copies up to `out.len()` ready entries into `out` without consuming
    /// them (the slots stay the consumer's until [`release`](Self::release)).
    /// Returns how many were copied.
    pub fn peek(&mut self, out: &mut [E]) -> Result<usize, Violation> {
        let mut ready = self.ready_cached() as usize;
        if ready < out.len() {
            ready = self.refresh()? as usize;
        }
        let n = ready.min(out.len());
        for (i, o) in out[..n].iter_mut().enumerate() {
            *o = E::load(self.ring.slot::<E>(self.next.wrapping_add(i as u32)));
        }
        Ok(n)
    }

    /// Copies the `i`-th ready entry (0 = oldest) without consuming it, if
    /// ready according to the cached producer index.
    pub fn get(&self, i: u32) -> Option<E> {
        (i < self.ready_cached()).then(|| E::load(self.ring.slot::<E>(self.next.wrapping_add(i))))
    }

    /// Gives `n` peeked entries back to the producer. `n` is clamped to what
    /// is ready.
    pub fn release(&mut self, n: u32) {
        let n = n.min(self.ready_cached());
        if n == 0 {
            return;
        }
        self.next = self.next.wrapping_add(n);
        // Release: pairs with the producer's Acquire load of the consumer
        // index (protocol step 2): our loads of these slots are done.
        self.ring
            .word(self.ring.consumer)
            .store(self.next, Ordering::Release);
    }

    /// [`peek`](Self::peek) then [`release`](Self::release).
    pub fn pop(&mut self, out: &mut [E]) -> Result<usize, Violation> {
        let n = self.peek(out)?;
        self.release(n as u32);
        Ok(n)
    }

    /// Sets need-wakeup, then re-checks the ring (protocol step 3). Returns
    /// `Ok(true)` if the ring is still empty and the caller may sleep on its
    /// eventfd; `Ok(false)` (flag cleared again) if entries arrived.
    pub fn arm_wakeup(&mut self) -> Result<bool, Violation> {
        let flag = self.ring.word(self.ring.need_wakeup);
        // Relaxed store, ordered before the producer-index reload by the fence.
        flag.store(1, Ordering::Relaxed);
        // SeqCst fence: pairs with the producer's fence between publishing
        // its index and loading need_wakeup (protocol step 3).
        fence(Ordering::SeqCst);
        if self.refresh()? > 0 {
            self.disarm_wakeup();
            return Ok(false);
        }
        Ok(true)
    }

    /// Clears need-wakeup (after waking, or when switching to busy polling).
    pub fn disarm_wakeup(&self) {
        // Relaxed: a stale 1 only causes one spurious eventfd write.
        self.ring
            .word(self.ring.need_wakeup)
            .store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Geometry, Limits};
    use crate::region;
    use proptest::prelude::*;

    fn pair(
        entries: u32,
        start: u32,
    ) -> (Producer<u32, Server>, Consumer<u32, Client>, Arc<Mapping>) {
        let g = Geometry {
            fill_entries: entries,
            ..Geometry::default()
        };
        let r = region::create(g, &Limits::default()).unwrap();
        let map = Arc::new(r.map);
        let l = r.layout.fill;
        // Start both ends (and the shared words) at `start`.
        map.word(l.producer()).store(start, Ordering::Relaxed);
        map.word(l.consumer()).store(start, Ordering::Relaxed);
        let p = Producer::new(map.clone(), RingId::Fill, &l, start);
        let c = Consumer::new(map.clone(), RingId::Fill, &l, start);
        (p, c, map)
    }

    #[test]
    fn push_pop_and_full() {
        let (mut p, mut c, _m) = pair(4, 0);
        assert_eq!(p.push_batch(&[1, 2, 3, 4, 5]).unwrap(), (4, false));
        assert_eq!(p.free().unwrap(), 0);
        assert!(!p.push(&9).unwrap());
        let mut out = [0u32; 8];
        assert_eq!(c.pop(&mut out).unwrap(), 4);
        assert_eq!(&out[..4], &[1, 2, 3, 4]);
        assert_eq!(c.pop(&mut out).unwrap(), 0);
        assert_eq!(p.free().unwrap(), 4);
    }

    #[test]
    fn counters_wrap_around() {
        let (mut p, mut c, _m) = pair(8, u32::MAX - 5);
        let mut expect = 0u32;
        let mut got = 0u32;
        let mut out = [0u32; 3];
        for round in 0..20u32 {
            let batch: Vec<u32> = (0..(round % 7 + 1)).map(|i| expect + i).collect();
            let (n, _) = p.push_batch(&batch).unwrap();
            expect += n as u32;
            let k = c.pop(&mut out).unwrap();
            for v in &out[..k] {
                assert_eq!(*v, got);
                got += 1;
            }
        }
        while got < expect {
            let k = c.pop(&mut out).unwrap();
            for v in &out[..k] {
                assert_eq!(*v, got);
                got += 1;
            }
        }
        assert!(p.next < 100, "producer index wrapped past zero");
    }

    #[test]
    fn peek_then_release() {
        let (mut p, mut c, _m) = pair(4, 0);
        p.push_batch(&[7, 8]).unwrap();
        let mut out = [0u32; 4];
        assert_eq!(c.peek(&mut out).unwrap(), 2);
        assert_eq!(c.get(1), Some(8));
        assert_eq!(c.get(2), None);
        c.release(1);
        assert_eq!(c.pop(&mut out).unwrap(), 1);
        assert_eq!(out[0], 8);
        c.release(10); // clamped: nothing ready
        assert_eq!(p.refresh().unwrap(), 4);
    }

    #[test]
    fn bad_producer_index_is_refused() {
        let (mut p, mut c, m) = pair(4, 0);
        p.push_batch(&[1]).unwrap();
        let l = crate::layout::Layout::new(
            Geometry {
                fill_entries: 4,
                ..Geometry::default()
            },
            &Limits::default(),
        )
        .unwrap();
        for bogus in [5u32, u32::MAX, 1000] {
            m.word(l.fill.producer()).store(bogus, Ordering::Relaxed);
            let mut out = [0u32; 4];
            assert!(matches!(
                c.pop(&mut out),
                Err(Violation::ProducerIndex { producer, .. }) if producer == bogus
            ));
        }
        // Consumer index ahead of what was published.
        m.word(l.fill.consumer()).store(3, Ordering::Relaxed);
        assert!(matches!(
            p.refresh(),
            Err(Violation::ConsumerIndex { consumer: 3, .. })
        ));
    }

    #[test]
    fn wakeup_protocol() {
        let (mut p, mut c, _m) = pair(4, 0);
        // Empty: may sleep, and the producer is told to wake.
        assert!(c.arm_wakeup().unwrap());
        assert!(p.push_batch(&[1]).unwrap().1);
        // The flag was cleared by the producer: no second wake.
        assert!(!p.push_batch(&[2]).unwrap().1);
        // Not empty: do not sleep, flag cleared.
        assert!(!c.arm_wakeup().unwrap());
        assert!(!p.publish());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any interleaving of batch pushes and pops, starting anywhere in the
        /// counter space, delivers exactly the pushed sequence in order.
        #[test]
        fn sequence_is_preserved(
            start in prop_oneof![Just(0u32), Just(u32::MAX - 3), any::<u32>()],
            shift in 0u32..5,
            ops in proptest::collection::vec((any::<bool>(), 0usize..20), 1..60),
        ) {
            let entries = 1u32 << shift;
            let (mut p, mut c, _m) = pair(entries, start);
            let mut sent = 0u32;
            let mut recv = 0u32;
            let mut buf = [0u32; 20];
            for (is_push, n) in ops {
                if is_push {
                    let batch: Vec<u32> = (0..n as u32).map(|i| sent + i).collect();
                    let before = p.free().unwrap();
                    let (k, _) = p.push_batch(&batch).unwrap();
                    prop_assert!(k as u32 <= entries);
                    prop_assert!(k == n || k as u32 >= before);
                    sent += k as u32;
                } else {
                    let k = c.pop(&mut buf[..n]).unwrap();
                    for v in &buf[..k] {
                        prop_assert_eq!(*v, recv);
                        recv += 1;
                    }
                }
                prop_assert!(sent - recv <= entries);
            }
        }
    }
}
