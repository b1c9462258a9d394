//! The open-addressing table behind wide hash nodes: value → index into the
//! node's array of links.
//!
//! Linear probing, at most two-thirds full, and a multiply-shift hash whose
//! odd multiplier comes from the filter set's random seed: clients choose
//! the values (ports, addresses), so a fixed hash would let one client
//! install values that all collide and slow every packet down. A table whose
//! longest probe run still exceeds [`PROBE_LIMIT`] is rebuilt with another
//! multiplier (then with more room), and every lookup is bounded by the
//! table's recorded longest run.
//!
//! A slot holds the value itself and an index, 8 bytes for `u32` values, so
//! a lookup that finds nothing reads one line of a small array.

use std::sync::Arc;

/// Longest probe run a table accepts before it is rebuilt.
pub const PROBE_LIMIT: u32 = 24;

/// Multipliers tried per table size before the table grows.
const ATTEMPTS_PER_SIZE: u64 = 4;

/// Table sizes tried (doublings) before accepting a long probe run.
const MAX_GROWTHS: u32 = 3;

/// Marks an empty slot.
const EMPTY: u32 = u32::MAX;

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

#[derive(Debug, Clone, Copy)]
struct Slot<K> {
    key: K,
    /// Index into the owner's links, or [`EMPTY`].
    index: u32,
}

/// An immutable open-addressing table from keys to indexes.
#[derive(Debug, Clone)]
pub struct ProbeTable<K> {
    slots: Arc<[Slot<K>]>,
    /// Odd hash multiplier.
    multiplier: u64,
    /// `64 - log2(slots.len())`: multiply-shift keeps the top bits.
    shift: u32,
    /// Longest probe run in the table; lookups stop after it.
    max_probe: u32,
}

impl<K: Key> ProbeTable<K> {
    /// A table mapping `keys[i]` to `i`; keys must be distinct.
    pub fn new(keys: &[K], seed: u64) -> ProbeTable<K> {
        // At most two-thirds full.
        let mut bits = (keys.len() * 3 / 2 + 1)
            .next_power_of_two()
            .trailing_zeros()
            .max(3);
        let mut attempt = 0u64;
        let mut table = ProbeTable::lay_out(keys, bits, multiplier(seed, 0));
        for growth in 0..=MAX_GROWTHS {
            for _ in 0..ATTEMPTS_PER_SIZE {
                if table.max_probe <= PROBE_LIMIT {
                    return table;
                }
                attempt += 1;
                table = ProbeTable::lay_out(keys, bits, multiplier(seed, attempt));
            }
            if growth < MAX_GROWTHS {
                bits += 1;
            }
        }
        // Every attempt had a long run: keep the last layout. Lookups stay
        // correct and bounded by `max_probe`, only slower.
        table
    }

    /// The index stored for `key`: the per-packet lookup.
    #[inline]
    pub fn get(&self, key: K) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let mut at = self.home(key);
        for _ in 0..=self.max_probe {
            let slot = self.slots[at];
            if slot.index == EMPTY {
                return None;
            }
            if slot.key == key {
                return Some(slot.index as usize);
            }
            at = (at + 1) & mask;
        }
        None
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
    fn home(&self, key: K) -> usize {
        (key.widen().wrapping_mul(self.multiplier) >> self.shift) as usize
    }

    fn lay_out(keys: &[K], bits: u32, multiplier: u64) -> ProbeTable<K> {
        let mut table = ProbeTable {
            slots: Arc::new([]),
            multiplier,
            shift: 64 - bits,
            max_probe: 0,
        };
        let vacant = Slot {
            key: K::default(),
            index: EMPTY,
        };
        let mut slots = vec![vacant; 1usize << bits];
        let mask = slots.len() - 1;
        for (index, key) in keys.iter().enumerate() {
            let mut at = table.home(*key);
            let mut probe = 0;
            while slots[at].index != EMPTY {
                at = (at + 1) & mask;
                probe += 1;
            }
            // `u32::MAX` links would take 128 GiB, so the index fits.
            slots[at] = Slot {
                key: *key,
                index: index as u32,
            };
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
            let keys: Vec<u32> = (0..size).map(|v| v * 7).collect();
            let table = ProbeTable::new(&keys, 42);
            assert!(table.capacity().is_power_of_two());
            assert!(table.capacity() * 2 >= keys.len() * 3);
            for v in 0..size * 7 + 10 {
                let expected = (v % 7 == 0 && v < size * 7).then_some((v / 7) as usize);
                assert_eq!(table.get(v), expected, "{size} {v}");
            }
        }
    }

    #[test]
    fn wide_keys_work_too() {
        let keys: Vec<u64> = (0..300u64).map(|v| v << 32 | (v * 3)).collect();
        let table = ProbeTable::new(&keys, 1);
        assert_eq!(table.get(5 << 32 | 15), Some(5));
        assert_eq!(table.get(5 << 32 | 16), None);
    }

    #[test]
    fn colliding_values_stay_within_the_probe_limit() {
        // Values that a multiplier of 1 would put in one run.
        let keys: Vec<u32> = (0..2000u32).map(|v| v << 20).collect();
        let table = ProbeTable::new(&keys, 7);
        assert!(table.max_probe() <= PROBE_LIMIT, "{}", table.max_probe());
    }
}
