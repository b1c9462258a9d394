//! The open-addressing table behind wide hash nodes: value → link to the
//! child.
//!
//! Linear probing, at most two-thirds full, and a multiply-shift hash whose
//! odd multiplier comes from the filter set's random seed: clients choose
//! the values (ports, addresses), so a fixed hash would let one client
//! install values that all collide and slow every packet down. A table whose
//! longest probe run still exceeds [`PROBE_LIMIT`] is rebuilt with another
//! multiplier (then with more room), and every lookup is bounded by the
//! table's recorded longest run.
//!
//! A slot holds the entry itself: for a hash node's values, the [`Link`]
//! to the child (labelled with its value, carrying the child's accept and
//! reach), so that a packet aimed at an installed value reads one cache line
//! of one array and nothing else (32-byte slots, two per line); for the pair
//! tables, the outer value and the grandchild's link (40 bytes). A lookup
//! that finds nothing probes about two lines at two-thirds load. [`Indexed`]
//! (key and index, 8 or 16 bytes) is there for tables of plain keys.
//!
//! [`Link`]: super::node::Link

use std::num::NonZeroU32;
use std::sync::Arc;

/// Longest probe run a table accepts before it is rebuilt.
pub const PROBE_LIMIT: u32 = 24;

/// Multipliers tried per table size before the table grows.
const ATTEMPTS_PER_SIZE: u64 = 4;

/// Table sizes tried (doublings) before accepting a long probe run.
const MAX_GROWTHS: u32 = 3;

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

/// A key and an index into the owner's array.
#[derive(Debug, Clone, Copy)]
pub struct Indexed<K> {
    key: K,
    /// Index + 1, so that an empty slot (`None`) costs no extra bytes.
    index: NonZeroU32,
}

impl<K: Key> Indexed<K> {
    pub fn new(key: K, index: usize) -> Indexed<K> {
        // `u32::MAX` links would take 128 GiB, so the index fits.
        let index = NonZeroU32::new(index as u32 + 1).expect("index fits");
        Indexed { key, index }
    }

    /// The index stored with the key.
    #[inline]
    pub fn index(&self) -> usize {
        self.index.get() as usize - 1
    }
}

impl<K: Key> Entry for Indexed<K> {
    type Key = K;
    #[inline]
    fn key(&self) -> K {
        self.key
    }
}

/// An immutable open-addressing table of entries, looked up by key.
#[derive(Debug, Clone)]
pub struct ProbeTable<E> {
    slots: Arc<[Option<E>]>,
    /// Odd hash multiplier.
    multiplier: u64,
    /// `64 - log2(slots.len())`: multiply-shift keeps the top bits.
    shift: u32,
    /// Longest probe run in the table; lookups stop after it.
    max_probe: u32,
}

impl<E: Entry> ProbeTable<E> {
    /// A table holding `entries`; their keys must be distinct.
    pub fn new(entries: &[E], seed: u64) -> ProbeTable<E> {
        // At most two-thirds full.
        let mut bits = (entries.len() * 3 / 2 + 1)
            .next_power_of_two()
            .trailing_zeros()
            .max(3);
        let mut attempt = 0u64;
        let mut table = ProbeTable::lay_out(entries, bits, multiplier(seed, 0));
        for growth in 0..=MAX_GROWTHS {
            for _ in 0..ATTEMPTS_PER_SIZE {
                if table.max_probe <= PROBE_LIMIT {
                    return table;
                }
                attempt += 1;
                table = ProbeTable::lay_out(entries, bits, multiplier(seed, attempt));
            }
            if growth < MAX_GROWTHS {
                bits += 1;
            }
        }
        // Every attempt had a long run: keep the last layout. Lookups stay
        // correct and bounded by `max_probe`, only slower.
        table
    }

    /// The entry stored for `key`: the per-packet lookup.
    #[inline]
    pub fn get(&self, key: E::Key) -> Option<&E> {
        let mask = self.slots.len() - 1;
        let mut at = self.home(key);
        for _ in 0..=self.max_probe {
            let entry = self.slots[at].as_ref()?;
            if entry.key() == key {
                return Some(entry);
            }
            at = (at + 1) & mask;
        }
        None
    }

    /// This table with the entry of `entry`'s key, which must be present,
    /// replaced by `entry` (same layout, same probe runs).
    pub fn with_replaced(&self, entry: E) -> ProbeTable<E> {
        let mut slots = self.slots.to_vec();
        let key = entry.key();
        if let Some(slot) = slots
            .iter_mut()
            .find(|slot| slot.as_ref().is_some_and(|old| old.key() == key))
        {
            *slot = Some(entry);
        }
        ProbeTable {
            slots: slots.into(),
            multiplier: self.multiplier,
            shift: self.shift,
            max_probe: self.max_probe,
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The longest probe run.
    pub fn max_probe(&self) -> u32 {
        self.max_probe
    }

    #[inline]
    fn home(&self, key: E::Key) -> usize {
        (key.widen().wrapping_mul(self.multiplier) >> self.shift) as usize
    }

    fn lay_out(entries: &[E], bits: u32, multiplier: u64) -> ProbeTable<E> {
        let mut table = ProbeTable {
            slots: Arc::new([]),
            multiplier,
            shift: 64 - bits,
            max_probe: 0,
        };
        let mut slots: Vec<Option<E>> = vec![None; 1usize << bits];
        let mask = slots.len() - 1;
        for entry in entries {
            let mut at = table.home(entry.key());
            let mut probe = 0;
            while slots[at].is_some() {
                at = (at + 1) & mask;
                probe += 1;
            }
            slots[at] = Some(entry.clone());
            table.max_probe = table.max_probe.max(probe);
        }
        table.slots = slots.into();
        table
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
    fn slots_are_compact() {
        assert_eq!(std::mem::size_of::<Option<Indexed<u64>>>(), 16);
        assert_eq!(std::mem::size_of::<Option<Indexed<u32>>>(), 8);
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
