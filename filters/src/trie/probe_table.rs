//! The open-addressing table behind wide hash nodes: value → link to the
//! child.
//!
//! **Buckets of one cache line.** Slots come in 64-byte-aligned buckets of
//! two (the entries are 32 bytes), and a value's home is a bucket: a lookup
//! reads the home line, and the next line only when both slots are taken by
//! earlier values (linear probing by bucket, at most two-thirds full). With
//! per-slot homes, a value whose home was the second slot of a line and
//! that was displaced by one read two lines; at 10,000 filters that was a
//! quarter of the hits, and each such miss cost more than the hash.
//!
//! **Hashing.** A multiply-shift hash (the top bits of the 64-bit product
//! pick the bucket) with an odd multiplier drawn from the
//! filter set's random seed: clients choose the values (ports, addresses),
//! so a fixed hash would let one client install values that all collide
//! and slow every packet down. Installed values are mostly sequential, and
//! how evenly one multiplier spreads a sequence varies: each table tries up
//! to [`ATTEMPTS_PER_SIZE`] multipliers and keeps the layout whose values
//! sit closest to their homes. A table whose longest run still exceeds
//! [`PROBE_LIMIT`] buckets gets more room, and every lookup is bounded by
//! the table's recorded longest run.
//!
//! A slot holds the entry itself: for a hash node's values, the [`Link`]
//! to the child (labelled with its value, carrying the child's accept and
//! reach), so that a packet aimed at an installed value reads one cache line
//! of one array and nothing else; for the pair tables, the grandchild's
//! link labelled with both values.
//!
//! [`Link`]: super::node::Link

use std::sync::Arc;

/// Longest probe run, in buckets, that a table accepts before it is given
/// more room.
pub const PROBE_LIMIT: u32 = 12;

/// Multipliers tried per table size before the table grows.
const ATTEMPTS_PER_SIZE: u64 = 8;

/// Table sizes tried (doublings) before accepting a long probe run.
const MAX_GROWTHS: u32 = 3;

/// Entries per bucket.
const BUCKET_SLOTS: usize = 2;

/// A value the table can hash: widened to 64 bits.
pub trait Key: Copy + Eq + Default + std::fmt::Debug {
    fn widen(self) -> u64;
}

impl Key for u32 {
    #[inline]
    fn widen(self) -> u64 {
        u64::from(self)
    }
}

impl Key for u64 {
    #[inline]
    fn widen(self) -> u64 {
        self
    }
}

/// What a slot holds: an entry that knows its key.
pub trait Entry: Clone + std::fmt::Debug {
    type Key: Key;
    fn key(&self) -> Self::Key;
}

/// One cache line of slots, filled first to last.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
struct Bucket<E>([Option<E>; BUCKET_SLOTS]);

impl<E> Default for Bucket<E> {
    fn default() -> Self {
        Bucket([None, None])
    }
}

/// An immutable open-addressing table of entries, looked up by key.
#[derive(Debug, Clone)]
pub struct ProbeTable<E> {
    buckets: Arc<[Bucket<E>]>,
    /// Odd hash multiplier.
    multiplier: u64,
    /// `64 - log2(buckets.len())`: multiply-shift keeps the top bits.
    shift: u32,
    /// Longest probe run in the table, in buckets after the home one;
    /// lookups stop after it.
    max_probe: u32,
}

impl<E: Entry> ProbeTable<E> {
    /// A table holding `entries`; their keys must be distinct.
    pub fn new(entries: &[E], seed: u64) -> ProbeTable<E> {
        // At most two-thirds full.
        let slots = (entries.len() * 3 / 2 + 1).next_power_of_two();
        let mut bits = (slots / BUCKET_SLOTS).max(4).trailing_zeros();
        // Good enough to stop looking: one value in sixteen off its home.
        let good_enough = entries.len() as u64 / 16;
        let mut attempt = 0u64;
        let mut last = None;
        for growth in 0..=MAX_GROWTHS {
            let mut best: Option<(u64, ProbeTable<E>)> = None;
            for _ in 0..ATTEMPTS_PER_SIZE {
                let (table, displacement) =
                    ProbeTable::lay_out(entries, bits, multiplier(seed, attempt));
                attempt += 1;
                if table.max_probe <= PROBE_LIMIT
                    && best.as_ref().is_none_or(|(least, _)| displacement < *least)
                {
                    let done = displacement <= good_enough;
                    best = Some((displacement, table));
                    if done {
                        break;
                    }
                } else {
                    last = Some(table);
                }
            }
            if let Some((_, table)) = best {
                return table;
            }
            if growth < MAX_GROWTHS {
                bits += 1;
            }
        }
        // Every attempt had a long run: keep the last layout. Lookups stay
        // correct and bounded by `max_probe`, only slower.
        last.expect("at least one layout was tried")
    }

    /// The entry stored for `key`: the per-packet lookup.
    #[inline]
    pub fn get(&self, key: E::Key) -> Option<&E> {
        let mask = self.buckets.len() - 1;
        let mut at = self.home(key);
        for _ in 0..=self.max_probe {
            for slot in &self.buckets[at].0 {
                // Slots fill in probe order: an empty one ends the run.
                let entry = slot.as_ref()?;
                if entry.key() == key {
                    return Some(entry);
                }
            }
            at = (at + 1) & mask;
        }
        None
    }

    /// This table with the entry of `entry`'s key, which must be present,
    /// replaced by `entry` (same layout, same probe runs).
    pub fn with_replaced(&self, entry: E) -> ProbeTable<E> {
        let mut buckets = self.buckets.to_vec();
        let key = entry.key();
        if let Some(slot) = buckets
            .iter_mut()
            .flat_map(|bucket| bucket.0.iter_mut())
            .find(|slot| slot.as_ref().is_some_and(|old| old.key() == key))
        {
            *slot = Some(entry);
        }
        ProbeTable {
            buckets: buckets.into(),
            multiplier: self.multiplier,
            shift: self.shift,
            max_probe: self.max_probe,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * BUCKET_SLOTS
    }

    /// The longest probe run, in buckets after the home one.
    pub fn max_probe(&self) -> u32 {
        self.max_probe
    }

    /// Multiply-shift: the top bits of the product are the bucket. (Folding
    /// the 128-bit product spreads sequences no better once the layout is
    /// the best of several multipliers, and lengthens every lookup.)
    #[inline]
    fn hash(&self, key: E::Key) -> u64 {
        key.widen().wrapping_mul(self.multiplier)
    }

    /// The home bucket of a key: the top bits of its hash.
    #[inline]
    fn home(&self, key: E::Key) -> usize {
        (self.hash(key) >> self.shift) as usize
    }

    /// The table for `multiplier` with `1 << bits` buckets, and its total
    /// displacement: the sum over entries of how many buckets past their
    /// home they sit (each is one more line a hit reads).
    fn lay_out(entries: &[E], bits: u32, multiplier: u64) -> (ProbeTable<E>, u64) {
        let mut table = ProbeTable {
            buckets: Arc::new([]),
            multiplier,
            shift: 64 - bits,
            max_probe: 0,
        };
        let mut buckets: Vec<Bucket<E>> = vec![Bucket::default(); 1usize << bits];
        let mask = buckets.len() - 1;
        let mut displacement = 0u64;
        for entry in entries {
            let mut at = table.home(entry.key());
            let mut probe = 0;
            let slot = loop {
                if let Some(free) = buckets[at].0.iter_mut().find(|slot| slot.is_none()) {
                    break free;
                }
                at = (at + 1) & mask;
                probe += 1;
            };
            *slot = Some(entry.clone());
            table.max_probe = table.max_probe.max(probe);
            displacement += u64::from(probe);
        }
        table.buckets = buckets.into();
        (table, displacement)
    }
}

/// An odd multiplier for attempt `attempt` under `seed` (splitmix64).
fn multiplier(seed: u64, attempt: u64) -> u64 {
    let mut z = seed.wrapping_add(attempt.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key and a number: the smallest entry there is.
    #[derive(Debug, Clone, Copy)]
    struct Indexed<K> {
        key: K,
        index: usize,
    }

    impl<K: Key> Indexed<K> {
        fn new(key: K, index: usize) -> Indexed<K> {
            Indexed { key, index }
        }

        fn index(&self) -> usize {
            self.index
        }
    }

    impl<K: Key> Entry for Indexed<K> {
        type Key = K;
        fn key(&self) -> K {
            self.key
        }
    }

    #[test]
    fn finds_every_key_and_nothing_else() {
        for size in [1u32, 5, 100, 5000] {
            let keys: Vec<_> = (0..size).map(|v| Indexed::new(v * 7, v as usize)).collect();
            let table = ProbeTable::new(&keys, 42);
            assert!(table.capacity().is_power_of_two());
            assert!(table.capacity() * 2 >= keys.len() * 3);
            for v in 0..size * 7 + 10 {
                let expected = (v % 7 == 0 && v < size * 7).then_some((v / 7) as usize);
                assert_eq!(table.get(v).map(Indexed::index), expected, "{size} {v}");
            }
        }
    }

    #[test]
    fn wide_keys_work_too() {
        let keys: Vec<_> = (0..300u64)
            .map(|v| Indexed::new(v << 32 | (v * 3), v as usize))
            .collect();
        let table = ProbeTable::new(&keys, 1);
        assert_eq!(table.get(5 << 32 | 15).map(Indexed::index), Some(5));
        assert!(table.get(5 << 32 | 16).is_none());
    }

    #[test]
    fn a_bucket_of_links_is_one_cache_line() {
        use crate::trie::node::Link;
        assert_eq!(std::mem::size_of::<Bucket<Link>>(), 64);
        assert_eq!(std::mem::align_of::<Bucket<Link>>(), 64);
    }

    #[test]
    fn sequential_pairs_sit_in_their_home_line_whatever_the_seed() {
        // `ip dst host 10.0.i.1 and udp dst port 1024+i`, as pair keys.
        let keys: Vec<_> = (0..10_000u64)
            .map(|i| Indexed::new((0x0a00_0001 + (i << 8)) << 32 | (1024 + i), i as usize))
            .collect();
        for seed in 0..8 {
            let table = ProbeTable::new(&keys, seed);
            let displaced = keys
                .iter()
                .filter(|entry| {
                    let home = &table.buckets[table.home(entry.key)].0;
                    !home.iter().flatten().any(|slot| slot.key == entry.key)
                })
                .count();
            // A uniform hash would leave about one in eight off home.
            assert!(
                displaced < keys.len() / 16,
                "seed {seed}: {displaced} displaced"
            );
            assert_eq!(table.capacity(), 16_384, "seed {seed}");
        }
    }

    #[test]
    fn colliding_values_stay_within_the_probe_limit() {
        // Values that a multiplier of 1 would put in one run.
        let keys: Vec<_> = (0..2000u32)
            .map(|v| Indexed::new(v << 20, v as usize))
            .collect();
        let table = ProbeTable::new(&keys, 7);
        assert!(table.max_probe() <= PROBE_LIMIT, "{}", table.max_probe());
    }
}
