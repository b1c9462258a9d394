//! The merged DPF trie of every installed filter.
//!
//! Every alternative of every installed filter is one path from the root:
//! its atoms in the canonical order of [`path`] (EtherType before IP fields
//! before ports; opaque tests last), one edge per atom. The node at the end
//! of the path records the filter (its tag and insertion sequence) as an
//! [`Accept`]. Paths with a common prefix share nodes, so filters that test
//! the same headers pay for those tests once.
//!
//! Node kinds ([`node`]):
//!
//! - **hash nodes** ([`hash_node`]): every `Eq` edge out of a node that tests
//!   the same field under the same mask is one entry of one hash table, value
//!   → child. A packet does one load and one probe ([`probe_table`]),
//!   whatever the number of values — DPF's merge of atoms that differ only in
//!   their constant. A wide hash node whose children all test one more field
//!   and nothing else also looks both values up at once (pairs);
//! - **test edges**: every other atom (`Ne`, relational tests, protocol
//!   chains) is an edge of its own, shared when identical, evaluated per
//!   packet;
//! - **accepts**: the filters whose alternative ends at the node.
//!
//! The depth of an accept is the length of its alternative, its specificity,
//! so the walk finds the most specific match by keeping the deepest accept it
//! reaches (lowest insertion sequence on a tie, see [`crate::classifier`]).
//! The walk is a bounded, allocation-free depth-first recursion that prunes
//! subtrees whose deepest accept cannot win ([`node`]).
//!
//! Updates are persistent ([`builder`]): a new trie shares every untouched
//! subtree with the old one, and a removal drops the nodes only the removed
//! filter used.

pub mod builder;
pub mod hash_node;
pub mod node;
pub mod path;
pub mod probe_table;

use std::sync::Arc;

pub use node::{Accept, TrieStats};
use node::{Best, Link, Node, Packet};
use path::Edge;

/// An immutable trie. Cloning it is cheap (one `Arc`).
#[derive(Debug, Clone)]
pub struct Trie {
    root: Link,
}

impl Default for Trie {
    fn default() -> Self {
        Trie::with_root(Node::default())
    }
}

impl Trie {
    /// The tag of the best accept matching `frame`: deepest, then lowest
    /// sequence. Allocation-free; see [`node`] for the bounds of the walk.
    #[inline]
    pub fn classify(&self, frame: &[u8], wire_len: u32) -> crate::Tag {
        let mut best = Best::default();
        self.root
            .follow(0, &Packet::new(frame, wire_len), &mut best);
        best.tag()
    }

    /// [`classify`](Self::classify) on the first bytes of a frame: the tag,
    /// or `None` when a test the walk needed read past them (the whole
    /// frame could be classified otherwise). Subtrees that could not beat
    /// the best match are skipped as usual, so a cut there does not count.
    pub fn classify_head(&self, head: &[u8], wire_len: u32) -> Option<crate::Tag> {
        let mut best = Best::default();
        let packet = Packet::new(head, wire_len);
        self.root.follow(0, &packet, &mut best);
        (!packet.cut.get()).then(|| best.tag())
    }

    /// This trie with `accept` at the end of each of `paths`.
    pub fn inserted(&self, paths: &[Vec<Edge>], accept: Accept, seed: u64) -> Trie {
        let mut trie = self.clone();
        for path in paths {
            trie = Trie::with_root(builder::inserted(trie.root.node(), path, accept, seed));
        }
        trie
    }

    /// This trie without `accept` at the end of each of `paths`.
    pub fn removed(&self, paths: &[Vec<Edge>], accept: Accept, seed: u64) -> Trie {
        let mut trie = self.clone();
        for path in paths {
            let root = builder::removed(trie.root.node(), path, accept, seed);
            trie = Trie::with_root(root.unwrap_or_default());
        }
        trie
    }

    fn with_root(root: Node) -> Trie {
        Trie {
            root: Link::new(Arc::new(root), 0),
        }
    }

    /// The accepts at the end of `path`, by insertion sequence (empty when
    /// no installed alternative has exactly these atoms).
    pub fn accepts_at(&self, path: &[Edge]) -> &[Accept] {
        builder::find(self.root.node(), path).map_or(&[], Node::accepts)
    }

    /// What the trie holds (walks every node: not for the data path).
    pub fn stats(&self) -> TrieStats {
        let mut stats = TrieStats::default();
        self.root.node().add_stats(&mut stats);
        stats
    }

    /// Whether `other` shares this trie's root node (no change between them).
    pub fn same_root(&self, other: &Trie) -> bool {
        Arc::ptr_eq(self.root.node(), other.root.node())
    }

    /// The root node, for structural-sharing tests.
    #[doc(hidden)]
    pub fn root(&self) -> &Arc<Node> {
        self.root.node()
    }
}
