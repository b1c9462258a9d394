//! Hash nodes: DPF's merge of the `Eq` atoms that test one field under one
//! mask with different values, into one table from value to child.
//!
//! A packet pays one field load and one table probe per hash node, however
//! many filters hang below it: this is what keeps classification cost flat
//! as filters are added.
//!
//! The table is immutable. A change produces a new table that shares every
//! child it did not touch (`Arc` clones), so a new trie version costs a copy
//! of the touched tables only.
//!
//! Tables of up to [`LINEAR_MAX`] values are scanned in order, which beats
//! hashing for the one- or two-value nodes near the root. Larger tables use
//! open addressing with linear probing, at most two-thirds full, and a
//! multiply-shift hash whose odd multiplier comes from the filter set's random
//! seed: clients choose the values (ports, addresses), so a fixed hash would
//! let one client install values that all collide and slow every packet down.
//! A table whose longest probe run still exceeds [`PROBE_LIMIT`] is rebuilt
//! with another multiplier (then with more room), and every lookup is bounded
//! by the table's recorded longest run.

use std::sync::Arc;

use super::node::Node;
use super::path::SwitchKey;

/// Largest table that is scanned linearly instead of hashed.
pub const LINEAR_MAX: usize = 4;

/// Longest probe run a hashed table accepts before it is rebuilt.
pub const PROBE_LIMIT: u32 = 24;

/// Multipliers tried per table size before the table grows.
const ATTEMPTS_PER_SIZE: u64 = 4;

/// Table sizes tried (doublings) before accepting a long probe run.
const MAX_GROWTHS: u32 = 3;

/// One slot: a value and the node below it, or an empty slot.
#[derive(Debug, Clone, Default)]
struct Slot {
    value: u32,
    child: Option<Arc<Node>>,
}

/// A hash node: `(key.field & key.mask) == value` for every value in it.
#[derive(Debug, Clone)]
pub struct HashNode {
    key: SwitchKey,
    /// Linear layout (`multiplier == 0`): exactly the occupied slots.
    /// Hashed layout: a power-of-two open-addressing table.
    slots: Box<[Slot]>,
    /// How many slots are occupied.
    count: usize,
    /// Odd hash multiplier, or 0 for the linear layout.
    multiplier: u64,
    /// `64 - log2(slots.len())`: multiply-shift keeps the top bits.
    shift: u32,
    /// Longest probe run in the table; lookups stop after it.
    max_probe: u32,
    /// 1 + the longest path from any child down to an accept.
    reach: u32,
}

impl HashNode {
    /// A hash node from its (value, child) entries; values must be distinct
    /// and `entries` non-empty.
    pub fn new(key: SwitchKey, entries: Vec<(u32, Arc<Node>)>, seed: u64) -> HashNode {
        let reach = 1 + entries.iter().map(|(_, c)| c.reach()).max().unwrap_or(0);
        let count = entries.len();
        let mut node = HashNode {
            key,
            slots: Box::default(),
            count,
            multiplier: 0,
            shift: 0,
            max_probe: 0,
            reach,
        };
        if count <= LINEAR_MAX {
            node.slots = entries
                .into_iter()
                .map(|(value, child)| Slot {
                    value,
                    child: Some(child),
                })
                .collect();
        } else {
            node.fill_hashed(entries, seed);
        }
        node
    }

    pub fn key(&self) -> SwitchKey {
        self.key
    }

    /// 1 + the longest path from a child down to an accept.
    pub fn reach(&self) -> u32 {
        self.reach
    }

    /// Number of distinct values.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The child for a masked field value: the per-packet lookup.
    #[inline]
    pub fn child(&self, value: u32) -> Option<&Arc<Node>> {
        if self.multiplier == 0 {
            return self
                .slots
                .iter()
                .find(|slot| slot.value == value)
                .and_then(|slot| slot.child.as_ref());
        }
        let mask = self.slots.len() - 1;
        let mut at = self.home(value);
        for _ in 0..=self.max_probe {
            let slot = &self.slots[at];
            match &slot.child {
                None => return None,
                Some(child) if slot.value == value => return Some(child),
                Some(_) => at = (at + 1) & mask,
            }
        }
        None
    }

    /// Every (value, child) entry, in table order.
    pub fn entries(&self) -> impl Iterator<Item = (u32, &Arc<Node>)> + '_ {
        self.slots
            .iter()
            .filter_map(|slot| slot.child.as_ref().map(|child| (slot.value, child)))
    }

    /// This node with `value` leading to `child` (replacing any old child).
    pub fn with_child(&self, value: u32, child: Arc<Node>, seed: u64) -> HashNode {
        if self.child(value).is_some() {
            return self.with_replaced_child(value, child);
        }
        let mut entries = self.owned_entries();
        entries.push((value, child));
        HashNode::new(self.key, entries, seed)
    }

    /// This node without `value`, or `None` when it was the last value.
    pub fn without(&self, value: u32, seed: u64) -> Option<HashNode> {
        let mut entries = self.owned_entries();
        entries.retain(|(v, _)| *v != value);
        (!entries.is_empty()).then(|| HashNode::new(self.key, entries, seed))
    }

    /// Replaces the child of a present value in a copy of the table; the
    /// layout (and so the hashing) stays the same.
    fn with_replaced_child(&self, value: u32, child: Arc<Node>) -> HashNode {
        let mut next = self.clone();
        if let Some(slot) = next
            .slots
            .iter_mut()
            .find(|slot| slot.child.is_some() && slot.value == value)
        {
            slot.child = Some(child);
        }
        next.reach = 1 + next.entries().map(|(_, c)| c.reach()).max().unwrap_or(0);
        next
    }

    fn owned_entries(&self) -> Vec<(u32, Arc<Node>)> {
        self.entries().map(|(v, c)| (v, Arc::clone(c))).collect()
    }

    #[inline]
    fn home(&self, value: u32) -> usize {
        (u64::from(value).wrapping_mul(self.multiplier) >> self.shift) as usize
    }

    /// Lays `entries` out in an open-addressing table, trying multipliers
    /// and sizes until the longest probe run is at most [`PROBE_LIMIT`].
    fn fill_hashed(&mut self, entries: Vec<(u32, Arc<Node>)>, seed: u64) {
        // At most two-thirds full.
        let mut bits = (entries.len() * 3 / 2 + 1)
            .next_power_of_two()
            .trailing_zeros()
            .max(3);
        let mut attempt = 0u64;
        for growth in 0..=MAX_GROWTHS {
            for _ in 0..ATTEMPTS_PER_SIZE {
                attempt += 1;
                self.lay_out(&entries, bits, multiplier(seed, attempt));
                if self.max_probe <= PROBE_LIMIT {
                    return;
                }
            }
            if growth < MAX_GROWTHS {
                bits += 1;
            }
        }
        // Every attempt had a long run: keep the last layout. Lookups stay
        // correct and bounded by `max_probe`, only slower.
    }

    fn lay_out(&mut self, entries: &[(u32, Arc<Node>)], bits: u32, multiplier: u64) {
        self.multiplier = multiplier;
        self.shift = 64 - bits;
        self.max_probe = 0;
        let mut slots = vec![Slot::default(); 1usize << bits];
        let mask = slots.len() - 1;
        for (value, child) in entries {
            let mut at = self.home(*value);
            let mut probe = 0;
            while slots[at].child.is_some() {
                at = (at + 1) & mask;
                probe += 1;
            }
            slots[at] = Slot {
                value: *value,
                child: Some(Arc::clone(child)),
            };
            self.max_probe = self.max_probe.max(probe);
        }
        self.slots = slots.into_boxed_slice();
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
    use crate::atom::{Field, Width};

    fn key() -> SwitchKey {
        SwitchKey {
            field: Field::at(0, Width::Half),
            mask: 0xffff,
        }
    }

    fn leaf() -> Arc<Node> {
        Arc::new(Node::default())
    }

    #[test]
    fn small_tables_are_linear_and_large_ones_hashed() {
        let small = HashNode::new(key(), (0..4).map(|v| (v, leaf())).collect(), 1);
        assert_eq!(small.multiplier, 0);
        let large = HashNode::new(key(), (0..100).map(|v| (v, leaf())).collect(), 1);
        assert_ne!(large.multiplier, 0);
        assert!(large.slots.len().is_power_of_two());
        assert!(large.slots.len() * 2 >= large.count * 3);
    }

    #[test]
    fn lookups_find_every_value_and_nothing_else() {
        for size in [1u32, 4, 5, 100, 5000] {
            let node = HashNode::new(key(), (0..size).map(|v| (v * 7, leaf())).collect(), 42);
            for v in 0..size * 7 + 10 {
                assert_eq!(
                    node.child(v).is_some(),
                    v % 7 == 0 && v < size * 7,
                    "{size} {v}"
                );
            }
            assert_eq!(node.entries().count(), size as usize);
        }
    }

    #[test]
    fn adding_and_removing_values_keeps_other_children_shared() {
        let children: Vec<_> = (0..10).map(|v| (v, leaf())).collect();
        let node = HashNode::new(key(), children.clone(), 3);
        let grown = node.with_child(99, leaf(), 3);
        assert_eq!(grown.len(), 11);
        for (v, child) in &children {
            assert!(Arc::ptr_eq(grown.child(*v).unwrap(), child));
        }
        let shrunk = grown.without(3, 3).unwrap();
        assert_eq!(shrunk.len(), 10);
        assert!(shrunk.child(3).is_none());
        assert!(shrunk.child(99).is_some());
        let single = HashNode::new(key(), vec![(1, leaf())], 3);
        assert!(single.without(1, 3).is_none());
    }

    #[test]
    fn colliding_values_stay_within_the_probe_limit() {
        // Values that a fixed multiplier of 1 would put in one run.
        let entries: Vec<_> = (0..2000u32).map(|v| (v << 20, leaf())).collect();
        let node = HashNode::new(key(), entries, 7);
        assert!(node.max_probe <= PROBE_LIMIT, "{}", node.max_probe);
    }
}
