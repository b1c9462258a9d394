//! Hash nodes: DPF's merge of the `Eq` atoms that test one field under one
//! mask with different values, into one table from value to child.
//!
//! A packet pays one field load and one table probe per hash node, however
//! many filters hang below it: this is what keeps classification cost flat
//! as filters are added.
//!
//! Layout: the links to the children, dense, each labelled with its value;
//! up to [`LINEAR_MAX`] of them are scanned in order (which beats hashing
//! for the one- or two-value nodes near the root), more get a
//! [`ProbeTable`] from value to link.
//!
//! **Pairs.** When every child of a wide hash node only tests one more field
//! — the same field for all, one value each, nothing ending at the child —
//! as below the address table of `ip dst host A and udp dst port P` filters,
//! the node also keeps a table keyed by both values at once, straight to
//! the grandchildren: one probe instead of a probe, a visit of the child and
//! a comparison. This is derived data, rebuilt with the node, so the trie's
//! structure (and everything the builder does) is unchanged.
//!
//! The node is immutable. A change produces a new node that shares every
//! child it did not touch (`Arc` clones), so a new trie version costs a copy
//! of the touched nodes only; replacing the child of a value present keeps
//! the probe table shared.

use std::sync::Arc;

use super::node::{Link, Node};
use super::path::SwitchKey;
use super::probe_table::{Entry, ProbeTable};

/// Largest node whose values are scanned linearly instead of hashed.
pub const LINEAR_MAX: usize = 4;

/// A hash node: `(key.field & key.mask) == value` for every value in it.
#[derive(Debug, Clone)]
pub struct HashNode {
    key: SwitchKey,
    /// Every link, labelled with its value. Shared between versions of the
    /// trie until one of them changes this node.
    links: Arc<[Link]>,
    /// Value → a copy of its link; `None` for the linear layout. The walk
    /// reads only this (one line for a hit); `links` keeps the order.
    table: Option<ProbeTable<Link>>,
    /// The two-level shortcut, when every child is a bare one-value test.
    pairs: Option<Pairs>,
    /// 1 + the longest path from any child down to an accept.
    reach: u32,
}

/// `(value here, value of the child's field)` → grandchild.
#[derive(Debug, Clone)]
pub struct Pairs {
    /// The field every child tests.
    inner: SwitchKey,
    /// `value << 32 | inner value` → the grandchild's link (labelled with
    /// both values), held in the slot: 32 bytes, so that 10,000 pairs
    /// (16,384 slots) take 512 KiB, one core's L2 on the machines we
    /// measure on.
    table: ProbeTable<PairLink>,
}

impl Pairs {
    /// Builds the shortcut if every link leads to a bare chain on one key.
    fn of(links: &[Link], seed: u64) -> Option<Pairs> {
        let (inner, _) = links.first()?.node().bare_chain()?;
        let mut entries = Vec::with_capacity(links.len());
        for link in links {
            let (key, next) = link.node().bare_chain()?;
            if key != inner {
                return None;
            }
            entries.push(PairLink(next.clone().with_outer_label(link.label())));
        }
        Some(Pairs {
            inner,
            table: ProbeTable::new(&entries, seed),
        })
    }

    /// The field every child tests.
    #[inline]
    pub fn inner(&self) -> SwitchKey {
        self.inner
    }

    /// The grandchild for the outer and inner values.
    #[inline]
    pub fn link(&self, outer: u32, inner: u32) -> Option<&Link> {
        self.table.get(pair(outer, inner)).map(|entry| &entry.0)
    }
}

#[inline]
fn pair(outer: u32, inner: u32) -> u64 {
    u64::from(outer) << 32 | u64::from(inner)
}

impl HashNode {
    /// A hash node from links labelled with their values; the values must be
    /// distinct and `links` non-empty.
    pub fn new(key: SwitchKey, links: Vec<Link>, seed: u64) -> HashNode {
        let wide = links.len() > LINEAR_MAX;
        let table = wide.then(|| ProbeTable::new(&links, seed));
        let pairs = if wide { Pairs::of(&links, seed) } else { None };
        HashNode {
            key,
            reach: reach_of(&links),
            links: links.into(),
            table,
            pairs,
        }
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

    /// The two-level shortcut, if every child is a bare one-value test.
    #[inline]
    pub fn pairs(&self) -> Option<&Pairs> {
        self.pairs.as_ref()
    }

    /// The link for a masked field value: the per-packet lookup.
    #[inline]
    pub fn link(&self, value: u32) -> Option<&Link> {
        match &self.table {
            Some(table) => table.get(value),
            None => self.links.iter().find(|link| link.label() == value),
        }
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
            return self.with_replaced(at, link, seed);
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

    /// Where the link for `value` is in `links` (not for the data path).
    fn position(&self, value: u32) -> Option<usize> {
        self.links.iter().position(|link| link.label() == value)
    }

    /// Replaces the link at `at` in a copy of the links; the value table
    /// keeps its layout (one slot replaced).
    fn with_replaced(&self, at: usize, link: Link, seed: u64) -> HashNode {
        let mut links = self.links.to_vec();
        links[at] = link.clone();
        let pairs = if self.table.is_some() {
            Pairs::of(&links, seed)
        } else {
            None
        };
        HashNode {
            key: self.key,
            reach: reach_of(&links),
            links: links.into(),
            table: self.table.as_ref().map(|table| table.with_replaced(link)),
            pairs,
        }
    }
}

/// A pair table's slot: the grandchild's link, labelled with the outer and
/// the inner value.
#[derive(Debug, Clone)]
pub struct PairLink(Link);

impl Entry for PairLink {
    type Key = u64;
    #[inline]
    fn key(&self) -> u64 {
        pair(self.0.outer_label(), self.0.label())
    }
}

impl Entry for Link {
    type Key = u32;
    #[inline]
    fn key(&self) -> u32 {
        self.label()
    }
}

fn reach_of(links: &[Link]) -> u32 {
    1 + links.iter().map(Link::reach).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atom::{Field, Width};
    use crate::trie::node::Accept;

    fn key(offset: u32) -> SwitchKey {
        SwitchKey {
            field: Field::at(offset, Width::Half),
            mask: 0xffff,
        }
    }

    fn leaf() -> Arc<Node> {
        let accept = Accept { seq: 1, tag: 1 };
        Arc::new(Node::from_parts(
            [accept].into(),
            Box::default(),
            Box::default(),
        ))
    }

    fn links(entries: impl Iterator<Item = (u32, Arc<Node>)>) -> Vec<Link> {
        entries
            .map(|(value, node)| Link::new(node, value))
            .collect()
    }

    /// A node that only tests `key(9) == value` before `leaf`.
    fn bare_chain(value: u32) -> Arc<Node> {
        let switch = HashNode::new(key(9), links([(value, leaf())].into_iter()), 0);
        Arc::new(Node::from_parts(
            Box::default(),
            [switch].into(),
            Box::default(),
        ))
    }

    #[test]
    fn small_nodes_are_linear_and_wide_ones_hashed() {
        let small = HashNode::new(key(0), links((0..4).map(|v| (v, leaf()))), 1);
        assert!(small.table.is_none());
        let large = HashNode::new(key(0), links((0..100).map(|v| (v, leaf()))), 1);
        assert!(large.table.is_some());
    }

    #[test]
    fn lookups_find_every_value_and_nothing_else() {
        for size in [1u32, 4, 5, 100, 5000] {
            let node = HashNode::new(key(0), links((0..size).map(|v| (v * 7, leaf()))), 42);
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
        let node = HashNode::new(key(0), links(children.clone().into_iter()), 3);
        let grown = node.with_child(99, leaf(), 3);
        assert_eq!(grown.len(), 11);
        for (v, child) in &children {
            assert!(Arc::ptr_eq(grown.child(*v).unwrap(), child));
        }
        let shrunk = grown.without(3, 3).unwrap();
        assert_eq!(shrunk.len(), 10);
        assert!(shrunk.child(3).is_none());
        assert!(shrunk.child(99).is_some());
        let single = HashNode::new(key(0), links([(1, leaf())].into_iter()), 3);
        assert!(single.without(1, 3).is_none());
    }

    #[test]
    fn pairs_shortcut_wide_nodes_of_bare_chains_only() {
        let chains = links((0..10).map(|v| (v, bare_chain(100 + v))));
        let node = HashNode::new(key(0), chains.clone(), 5);
        let pairs = node.pairs().expect("every child is a bare chain");
        assert_eq!(pairs.inner(), key(9));
        assert!(pairs.link(3, 103).is_some());
        assert!(pairs.link(3, 104).is_none());
        // A child that accepts, or tests something else, disables the shortcut.
        let mixed = node.with_child(3, leaf(), 5);
        assert!(mixed.pairs().is_none());
        let narrow = HashNode::new(key(0), chains[..4].to_vec(), 5);
        assert!(narrow.pairs().is_none());
    }
}
