//! Hash nodes: DPF's merge of the `Eq` atoms that test one field under one
//! mask with different values, into one table from value to child.
//!
//! A packet pays one field load and one table probe per hash node, however
//! many filters hang below it: this is what keeps classification cost flat
//! as filters are added.
//!
//! The table is immutable. A change produces a new table that shares every
//! child it did not touch (`Arc` clones), so a new trie version costs a copy
//! of the touched tables only; replacing the child of a value present keeps
//! the probe table itself shared.
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

use super::node::{Link, Node};
use super::path::SwitchKey;

/// Largest table that is scanned linearly instead of hashed.
pub const LINEAR_MAX: usize = 4;

/// Longest probe run a hashed table accepts before it is rebuilt.
pub const PROBE_LIMIT: u32 = 24;

/// Multipliers tried per table size before the table grows.
const ATTEMPTS_PER_SIZE: u64 = 4;

/// Table sizes tried (doublings) before accepting a long probe run.
const MAX_GROWTHS: u32 = 3;

/// One slot of the probe table: a value and where its link is in `links`.
#[derive(Debug, Clone, Copy)]
struct Probe {
    label: u32,
    /// Index into `links`, or [`EMPTY`].
    index: u32,
}

/// Marks an empty probe slot.
const EMPTY: u32 = u32::MAX;

impl Probe {
    const VACANT: Probe = Probe {
        label: 0,
        index: EMPTY,
    };
}

/// A hash node: `(key.field & key.mask) == value` for every value in it.
///
/// Two arrays: the links, dense (each labelled with its value), and for
/// more than [`LINEAR_MAX`] values an open-addressing probe table of
/// (value, index) pairs. The probe table is 8 bytes a slot, so a lookup that
/// finds nothing (most traffic, at a port table) reads one line of a small
/// array, and one that finds its value reads one more line of the links.
#[derive(Debug, Clone)]
pub struct HashNode {
    key: SwitchKey,
    /// Every link, labelled with its value. Shared between versions of the
    /// trie until one of them changes this node.
    links: Arc<[Link]>,
    /// Power-of-two probe table, empty for the linear layout. Shared between
    /// versions until the set of values changes.
    probes: Arc<[Probe]>,
    /// Odd hash multiplier, or 0 for the linear layout.
    multiplier: u64,
    /// `64 - log2(probes.len())`: multiply-shift keeps the top bits.
    shift: u32,
    /// Longest probe run in the table; lookups stop after it.
    max_probe: u32,
    /// 1 + the longest path from any child down to an accept.
    reach: u32,
}

impl HashNode {
    /// A hash node from links labelled with their values; the values must be
    /// distinct and `links` non-empty.
    pub fn new(key: SwitchKey, links: Vec<Link>, seed: u64) -> HashNode {
        let reach = 1 + links.iter().map(Link::reach).max().unwrap_or(0);
        let mut node = HashNode {
            key,
            links: links.into(),
            probes: Arc::new([]),
            multiplier: 0,
            shift: 0,
            max_probe: 0,
            reach,
        };
        if node.links.len() > LINEAR_MAX {
            node.fill_probes(seed);
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
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The link for a masked field value: the per-packet lookup.
    #[inline]
    pub fn link(&self, value: u32) -> Option<&Link> {
        self.position(value).and_then(|at| self.links.get(at))
    }

    /// The child node for a value.
    pub fn child(&self, value: u32) -> Option<&Arc<Node>> {
        self.link(value).map(Link::node)
    }

    /// Every link, labelled with its value.
    pub fn entries(&self) -> impl Iterator<Item = &Link> + '_ {
        self.links.iter()
    }

    /// This node with `value` leading to `child` (replacing any old child).
    pub fn with_child(&self, value: u32, child: Arc<Node>, seed: u64) -> HashNode {
        let link = Link::new(child, value);
        if let Some(at) = self.position(value) {
            return self.with_replaced(at, link);
        }
        let mut links = self.links.to_vec();
        links.push(link);
        HashNode::new(self.key, links, seed)
    }

    /// This node without `value`, or `None` when it was the last value.
    pub fn without(&self, value: u32, seed: u64) -> Option<HashNode> {
        let links: Vec<Link> = self
            .links
            .iter()
            .filter(|link| link.label() != value)
            .cloned()
            .collect();
        (!links.is_empty()).then(|| HashNode::new(self.key, links, seed))
    }

    /// Where the link for `value` is in `links`.
    #[inline]
    fn position(&self, value: u32) -> Option<usize> {
        if self.multiplier == 0 {
            return self.links.iter().position(|link| link.label() == value);
        }
        let mask = self.probes.len() - 1;
        let mut at = self.home(value);
        for _ in 0..=self.max_probe {
            let probe = self.probes[at];
            if probe.index == EMPTY {
                return None;
            }
            if probe.label == value {
                return Some(probe.index as usize);
            }
            at = (at + 1) & mask;
        }
        None
    }

    /// Replaces the link at `at` in a copy of the links; the probe table
    /// stays shared.
    fn with_replaced(&self, at: usize, link: Link) -> HashNode {
        let mut links = self.links.to_vec();
        links[at] = link;
        let mut next = self.clone();
        next.reach = 1 + links.iter().map(Link::reach).max().unwrap_or(0);
        next.links = links.into();
        next
    }

    #[inline]
    fn home(&self, value: u32) -> usize {
        (u64::from(value).wrapping_mul(self.multiplier) >> self.shift) as usize
    }

    /// Builds the probe table, trying multipliers and sizes until the
    /// longest probe run is at most [`PROBE_LIMIT`].
    fn fill_probes(&mut self, seed: u64) {
        // At most two-thirds full.
        let mut bits = (self.links.len() * 3 / 2 + 1)
            .next_power_of_two()
            .trailing_zeros()
            .max(3);
        let mut attempt = 0u64;
        for growth in 0..=MAX_GROWTHS {
            for _ in 0..ATTEMPTS_PER_SIZE {
                attempt += 1;
                self.lay_out(bits, multiplier(seed, attempt));
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

    fn lay_out(&mut self, bits: u32, multiplier: u64) {
        self.multiplier = multiplier;
        self.shift = 64 - bits;
        self.max_probe = 0;
        let mut probes = vec![Probe::VACANT; 1usize << bits];
        let mask = probes.len() - 1;
        for (index, link) in self.links.iter().enumerate() {
            let mut at = self.home(link.label());
            let mut probe = 0;
            while probes[at].index != EMPTY {
                at = (at + 1) & mask;
                probe += 1;
            }
            // `u32::MAX` links would take 128 GiB, so the index fits.
            probes[at] = Probe {
                label: link.label(),
                index: index as u32,
            };
            self.max_probe = self.max_probe.max(probe);
        }
        self.probes = probes.into();
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

    fn links(entries: impl Iterator<Item = (u32, Arc<Node>)>) -> Vec<Link> {
        entries
            .map(|(value, node)| Link::new(node, value))
            .collect()
    }

    #[test]
    fn small_tables_are_linear_and_large_ones_hashed() {
        let small = HashNode::new(key(), links((0..4).map(|v| (v, leaf()))), 1);
        assert_eq!(small.multiplier, 0);
        let large = HashNode::new(key(), links((0..100).map(|v| (v, leaf()))), 1);
        assert_ne!(large.multiplier, 0);
        assert!(large.probes.len().is_power_of_two());
        assert!(large.probes.len() * 2 >= large.len() * 3);
    }

    #[test]
    fn lookups_find_every_value_and_nothing_else() {
        for size in [1u32, 4, 5, 100, 5000] {
            let node = HashNode::new(key(), links((0..size).map(|v| (v * 7, leaf()))), 42);
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
        let node = HashNode::new(key(), links(children.clone().into_iter()), 3);
        let grown = node.with_child(99, leaf(), 3);
        assert_eq!(grown.len(), 11);
        for (v, child) in &children {
            assert!(Arc::ptr_eq(grown.child(*v).unwrap(), child));
        }
        let shrunk = grown.without(3, 3).unwrap();
        assert_eq!(shrunk.len(), 10);
        assert!(shrunk.child(3).is_none());
        assert!(shrunk.child(99).is_some());
        let single = HashNode::new(key(), links([(1, leaf())].into_iter()), 3);
        assert!(single.without(1, 3).is_none());
    }

    #[test]
    fn colliding_values_stay_within_the_probe_limit() {
        // Values that a fixed multiplier of 1 would put in one run.
        let node = HashNode::new(key(), links((0..2000u32).map(|v| (v << 20, leaf()))), 7);
        assert!(node.max_probe <= PROBE_LIMIT, "{}", node.max_probe);
    }
}
