//! Trie nodes and the per-packet walk.
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

use std::sync::Arc;

use super::hash_node::HashNode;
use crate::atom::Atom;
use crate::Tag;

/// A filter whose alternative ends at a node: the alternative's atoms are
/// exactly the path from the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Accept {
    /// Insertion sequence of the filter: lower was installed earlier.
    pub seq: u64,
    pub tag: Tag,
}

/// An opaque atom leading to a child when it holds.
#[derive(Debug, Clone)]
pub struct TestEdge {
    pub atom: Atom,
    pub child: Arc<Node>,
}

/// One trie node. Immutable once shared: updates build new nodes (see the
/// builder).
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// Filters whose alternative ends here, by insertion sequence, so the
    /// first one wins a tie.
    pub(super) accepts: Box<[Accept]>,
    /// One hash node per `(field, mask)`, ordered by that key.
    pub(super) switches: Box<[Arc<HashNode>]>,
    /// Opaque atoms, ordered by atom.
    pub(super) tests: Box<[TestEdge]>,
    /// Length of the longest path from here down to an accept (0 if only
    /// this node accepts).
    pub(super) reach: u32,
}

impl Node {
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
    pub fn switches(&self) -> &[Arc<HashNode>] {
        &self.switches
    }

    /// The test edges below, by atom.
    pub fn tests(&self) -> &[TestEdge] {
        &self.tests
    }

    /// The longest path below, recomputed from the children.
    pub(super) fn compute_reach(&self) -> u32 {
        let switches = self.switches.iter().map(|s| s.reach());
        let tests = self.tests.iter().map(|t| 1 + t.child.reach());
        switches.chain(tests).max().unwrap_or(0)
    }

    /// Visits every node matching `frame` below (and including) this one,
    /// which is `depth` atoms below the root, and records the best accept.
    pub(super) fn walk(&self, depth: u32, packet: &Packet<'_>, best: &mut Best) {
        if !best.could_be_beaten_at(depth + self.reach) {
            return;
        }
        if let Some(first) = self.accepts.first() {
            best.offer(depth, first);
        }
        for switch in self.switches.iter() {
            if !best.could_be_beaten_at(depth + switch.reach()) {
                continue;
            }
            let Some(value) = switch.key().load(packet.frame) else {
                continue;
            };
            if let Some(child) = switch.child(value) {
                child.walk(depth + 1, packet, best);
            }
        }
        for edge in self.tests.iter() {
            if best.could_be_beaten_at(depth + 1 + edge.child.reach)
                && edge.atom.eval(packet.frame, packet.wire_len)
            {
                edge.child.walk(depth + 1, packet, best);
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
            for (_, child) in switch.entries() {
                child.add_stats(stats);
            }
        }
        for edge in self.tests.iter() {
            edge.child.add_stats(stats);
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
    fn offer(&mut self, depth: u32, accept: &Accept) {
        let better = match self.found {
            None => true,
            Some((best, current)) => depth > best || (depth == best && accept.seq < current.seq),
        };
        if better {
            self.found = Some((depth, *accept));
        }
    }

    pub fn tag(&self) -> Tag {
        self.found
            .map_or(crate::NOT_INTERESTED, |(_, accept)| accept.tag)
    }
}
