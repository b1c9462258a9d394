//! Trie nodes, the links between them, and the per-packet walk.
//!
//! A node is reached by the atoms on the path from the root. From a node,
//! a packet can go on through any number of branches at once:
//!
//! - each [`HashNode`] (one per `(field, mask)` tested here) leads to at most
//!   one child — the one for the packet's field value;
//! - each [`TestEdge`] (an opaque atom) leads to its child when the atom holds.
//!
//! Several branches may hold for one packet (a hash node on the IP
//! destination beside one on the UDP port, say), so the walk explores every
//! branch that holds. It is a depth-first recursion whose depth is bounded by
//! the longest installed alternative (itself bounded at install), visits
//! each node at most once, allocates nothing, and skips every subtree whose
//! deepest accept could not beat the best match found so far.
//!
//! ## Memory layout, for the cache
//!
//! With thousands of filters, the wide hash nodes and the nodes below them
//! no longer fit in the first cache levels, and each pointer followed costs
//! a miss. Copies of derived data keep that to about one miss per level:
//!
//! - a [`Link`] to a child carries a copy of the child's winning accept and
//!   reach, so a packet that reaches a leaf (the common case: the port entry
//!   of a `udp dst port P` filter) never touches the leaf itself;
//! - a wide hash node's probe table holds copies of the links themselves,
//!   so a lookup that finds its value reads one line of one array (the
//!   node's own array of links only keeps the order, for updates);
//! - a node whose only hash node has only one value (a chain, as below the
//!   `ip dst host A` entry of `ip dst host A and udp dst port P`) keeps that
//!   entry inline as its `chain`.
//!
//! All are computed when a node is built ([`Node::from_parts`]) and nodes
//! are immutable, so they cannot go stale.

use std::sync::Arc;

use super::hash_node::HashNode;
use super::path::SwitchKey;
use crate::atom::{Atom, Reach};
use crate::Tag;

/// A filter whose alternative ends at a node: the alternative's atoms are
/// exactly the path from the root.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Accept {
    /// Insertion sequence of the filter: lower was installed earlier. 32
    /// bits keep a link at half a cache line; the filter set renumbers its
    /// filters before the counter runs out.
    pub seq: u32,
    pub tag: Tag,
}

/// A pointer to a child node with a copy of what the walk needs first.
///
/// 32 bytes, so that two hash slots share a cache line: the child's winning
/// accept is kept as its two fields (an [`Accept`] would pad to 16 bytes),
/// and the word that padding would waste holds a pair table's outer value.
#[derive(Debug, Clone)]
pub struct Link {
    node: Arc<Node>,
    /// The child's winning accept's tag (0 if nothing ends there)…
    head_tag: Tag,
    /// … and its sequence.
    head_seq: u32,
    /// The child's reach: 0 means it is a leaf, nothing to walk below.
    reach: u32,
    /// The value a hash node files this link under (0 elsewhere).
    label: u32,
    /// For a pair table's link (to a grandchild): the value of the
    /// grandparent's field, the other half of the key. 0 elsewhere.
    outer_label: u32,
}

impl Link {
    pub fn new(node: Arc<Node>, label: u32) -> Link {
        Link {
            head_tag: node.head.tag,
            head_seq: node.head.seq,
            reach: node.reach,
            label,
            outer_label: 0,
            node,
        }
    }

    /// This link filed under two values: `outer` for the grandparent's
    /// field, then its own label for the parent's.
    pub fn with_outer_label(mut self, outer: u32) -> Link {
        self.outer_label = outer;
        self
    }

    /// The grandparent's value of a pair table's link.
    pub fn outer_label(&self) -> u32 {
        self.outer_label
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The child's reach: the longest path from it down to an accept.
    pub fn reach(&self) -> u32 {
        self.reach
    }

    pub fn label(&self) -> u32 {
        self.label
    }

    /// Visits the child, which is `depth` atoms below the root.
    #[inline]
    pub(super) fn follow(&self, depth: u32, packet: &Packet<'_>, best: &mut Best) {
        if !best.could_be_beaten_at(depth + self.reach) {
            return;
        }
        if self.head_tag != crate::NOT_INTERESTED {
            best.offer(
                depth,
                Accept {
                    seq: self.head_seq,
                    tag: self.head_tag,
                },
            );
        }
        if self.reach > 0 {
            self.node.walk_below(depth, packet, best);
        }
    }
}

/// An opaque atom leading to a child when it holds.
#[derive(Debug, Clone)]
pub struct TestEdge {
    pub atom: Atom,
    pub link: Link,
    /// How far a frame must be captured for the atom's verdict
    /// ([`Atom::reach`]), kept to tell a walk over a frame's head when the
    /// verdict needed more.
    pub reach: Reach,
}

impl TestEdge {
    pub fn new(atom: Atom, link: Link) -> TestEdge {
        TestEdge {
            reach: atom.reach(),
            atom,
            link,
        }
    }
}

/// The only entry of a node's only hash node, kept inline.
#[derive(Debug, Clone)]
struct Chain {
    key: SwitchKey,
    /// Labelled with the value the field must have.
    link: Link,
}

/// One trie node. Immutable: updates build new nodes with
/// [`Node::from_parts`].
///
/// Cache-line aligned with `chain` first, so that walking through a chain
/// node reads one line.
#[derive(Debug, Clone, Default)]
#[repr(C, align(64))]
pub struct Node {
    /// `switches[0]`'s only entry when that is the only hash node, it has
    /// one value, and there are no test edges: then the walk needs nothing
    /// else from this node.
    chain: Option<Chain>,
    /// One hash node per `(field, mask)`, ordered by that key.
    switches: Box<[HashNode]>,
    /// Opaque atoms, ordered by atom.
    tests: Box<[TestEdge]>,
    /// Filters whose alternative ends here, by insertion sequence, so the
    /// first one wins a tie.
    accepts: Box<[Accept]>,
    /// `accepts[0]`, or tag 0 when nothing ends here.
    head: Accept,
    /// Length of the longest path from here down to an accept (0 if only
    /// this node accepts).
    reach: u32,
}

impl Node {
    /// A node from its accepts (sorted by sequence), hash nodes (sorted by
    /// key) and test edges (sorted by atom), with its derived data.
    pub fn from_parts(
        accepts: Box<[Accept]>,
        switches: Box<[HashNode]>,
        tests: Box<[TestEdge]>,
    ) -> Node {
        let below_switches = switches.iter().map(HashNode::reach);
        let below_tests = tests.iter().map(|edge| 1 + edge.link.reach);
        let reach = below_switches.chain(below_tests).max().unwrap_or(0);
        let chain = match &*switches {
            [only] if only.len() == 1 && tests.is_empty() => {
                only.entries().next().map(|link| Chain {
                    key: only.key(),
                    link: link.clone(),
                })
            }
            _ => None,
        };
        Node {
            chain,
            head: accepts.first().copied().unwrap_or_default(),
            reach,
            switches,
            tests,
            accepts,
        }
    }

    /// The field and link of this node's chain when the node does nothing
    /// else: no accepts, no other branch. Walking it is one comparison.
    pub fn bare_chain(&self) -> Option<(SwitchKey, &Link)> {
        let chain = self.chain.as_ref()?;
        self.accepts.is_empty().then_some((chain.key, &chain.link))
    }

    /// Length of the longest path from here down to an accept.
    pub fn reach(&self) -> u32 {
        self.reach
    }

    /// Whether nothing ends here and nothing hangs below.
    pub fn is_empty(&self) -> bool {
        self.accepts.is_empty() && self.switches.is_empty() && self.tests.is_empty()
    }

    pub fn accepts(&self) -> &[Accept] {
        &self.accepts
    }

    /// The hash nodes below, by `(field, mask)`.
    pub fn switches(&self) -> &[HashNode] {
        &self.switches
    }

    /// The test edges below, by atom.
    pub fn tests(&self) -> &[TestEdge] {
        &self.tests
    }

    /// Follows every branch out of this node, which is `depth` atoms below
    /// the root, that holds for the packet. (The node's own accepts were
    /// offered by the link that led here.)
    ///
    /// Every test that reads past the captured bytes is noted in the packet
    /// ([`Packet::cut`]): on a frame's head, the whole frame might have
    /// passed it.
    fn walk_below(&self, depth: u32, packet: &Packet<'_>, best: &mut Best) {
        if let Some(chain) = &self.chain {
            match chain.key.load(packet.frame) {
                Some(value) if value == chain.link.label => {
                    chain.link.follow(depth + 1, packet, best)
                }
                Some(_) => {}
                None => packet.cut.set(true),
            }
            return;
        }
        for switch in self.switches.iter() {
            if !best.could_be_beaten_at(depth + switch.reach()) {
                continue;
            }
            let Some(value) = switch.key().load(packet.frame) else {
                packet.cut.set(true);
                continue;
            };
            if let Some(pairs) = switch.pairs() {
                // Two levels at once: the child would only test `inner`.
                let Some(inner) = pairs.inner().load(packet.frame) else {
                    packet.cut.set(true);
                    continue;
                };
                if let Some(link) = pairs.link(value, inner) {
                    link.follow(depth + 2, packet, best);
                }
            } else if let Some(link) = switch.link(value) {
                link.follow(depth + 1, packet, best);
            }
        }
        for edge in self.tests.iter() {
            if !best.could_be_beaten_at(depth + 1 + edge.link.reach) {
                continue;
            }
            if !edge.reach.within(packet.frame.len()) {
                packet.cut.set(true);
            }
            if edge.atom.eval(packet.frame, packet.wire_len) {
                edge.link.follow(depth + 1, packet, best);
            }
        }
    }

    /// Counts of what this subtree holds, for statistics and tests.
    pub(super) fn add_stats(&self, stats: &mut TrieStats) {
        stats.nodes += 1;
        stats.accepts += self.accepts.len();
        stats.test_edges += self.tests.len();
        for switch in self.switches.iter() {
            stats.hash_nodes += 1;
            stats.hash_entries += switch.len();
            for link in switch.entries() {
                link.node.add_stats(stats);
            }
        }
        for edge in self.tests.iter() {
            edge.link.node.add_stats(stats);
        }
    }
}

/// What the trie holds: nodes, hash nodes and their entries, test edges and
/// accepts (one per installed distinct alternative and filter).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrieStats {
    pub nodes: usize,
    pub hash_nodes: usize,
    pub hash_entries: usize,
    pub test_edges: usize,
    pub accepts: usize,
}

/// The frame being classified.
pub(super) struct Packet<'a> {
    pub frame: &'a [u8],
    pub wire_len: u32,
    /// Set when a test the walk evaluated needed bytes past `frame`: its
    /// verdict on these bytes may differ from its verdict on more of them.
    pub cut: std::cell::Cell<bool>,
}

impl<'a> Packet<'a> {
    pub fn new(frame: &'a [u8], wire_len: u32) -> Packet<'a> {
        Packet {
            frame,
            wire_len,
            cut: std::cell::Cell::new(false),
        }
    }
}

/// The best match so far: longest alternative, then lowest sequence.
#[derive(Debug, Default)]
pub(super) struct Best {
    found: Option<(u32, Accept)>,
}

impl Best {
    /// Whether an accept at `depth` could beat the best match so far (an
    /// equal depth may still win the tie on insertion sequence).
    #[inline]
    fn could_be_beaten_at(&self, depth: u32) -> bool {
        self.found.is_none_or(|(best, _)| depth >= best)
    }

    #[inline]
    fn offer(&mut self, depth: u32, accept: Accept) {
        let better = match self.found {
            None => true,
            Some((best, current)) => depth > best || (depth == best && accept.seq < current.seq),
        };
        if better {
            self.found = Some((depth, accept));
        }
    }

    pub fn tag(&self) -> Tag {
        self.found
            .map_or(crate::NOT_INTERESTED, |(_, accept)| accept.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_data_fits_the_layout_the_walk_assumes() {
        // A hash link: half a cache line.
        assert_eq!(std::mem::size_of::<Link>(), 32);
        assert_eq!(std::mem::size_of::<Option<Link>>(), 32);
        assert_eq!(
            std::mem::size_of::<Option<super::super::hash_node::PairLink>>(),
            32
        );
        // A chain node's walk reads only its first line.
        assert_eq!(std::mem::offset_of!(Node, chain), 0);
        assert!(std::mem::size_of::<Option<Chain>>() <= 64);
        assert_eq!(std::mem::align_of::<Node>(), 64);
    }
}
