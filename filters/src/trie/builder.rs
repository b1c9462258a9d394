//! Persistent updates: inserting or removing one path copies the nodes on
//! that path (and the hash nodes it passes through) and shares everything
//! else with the previous version, so old and new tries coexist and a reader
//! of the old one is never disturbed.
//!
//! A removal also drops every node and hash-node entry left empty, so the
//! last `Arc` to a removed filter's private nodes goes away with the last
//! trie version that still held them.

use std::sync::Arc;

use super::hash_node::HashNode;
use super::node::{Accept, Link, Node, TestEdge};
use super::path::{Edge, SwitchKey};
use crate::atom::Atom;

/// `node` with `accept` added at the end of `path` below it.
pub fn inserted(node: &Node, path: &[Edge], accept: Accept, seed: u64) -> Node {
    let (mut accepts, mut switches, mut tests) = parts(node);
    match path.split_first() {
        None => accepts = with_accept(node.accepts(), accept),
        Some((Edge::Eq { key, value }, rest)) => {
            switches = switches_inserted(node.switches(), *key, *value, rest, accept, seed);
        }
        Some((Edge::Test(atom), rest)) => {
            tests = tests_inserted(node.tests(), atom, rest, accept, seed);
        }
    }
    Node::from_parts(accepts, switches, tests)
}

/// `node` without `accept` at the end of `path`, or `None` when nothing is
/// left in it. A path that is not there leaves the node as it was.
pub fn removed(node: &Node, path: &[Edge], accept: Accept, seed: u64) -> Option<Node> {
    let (mut accepts, mut switches, mut tests) = parts(node);
    match path.split_first() {
        None => {
            let kept = node.accepts().iter().copied().filter(|a| *a != accept);
            accepts = kept.collect();
        }
        Some((Edge::Eq { key, value }, rest)) => {
            switches = switches_removed(node.switches(), *key, *value, rest, accept, seed);
        }
        Some((Edge::Test(atom), rest)) => {
            tests = tests_removed(node.tests(), atom, rest, accept, seed);
        }
    }
    let next = Node::from_parts(accepts, switches, tests);
    (!next.is_empty()).then_some(next)
}

/// The node at the end of `path` below `node`, if the path exists.
pub fn find<'a>(node: &'a Node, path: &[Edge]) -> Option<&'a Node> {
    let Some((edge, rest)) = path.split_first() else {
        return Some(node);
    };
    let child = match edge {
        Edge::Eq { key, value } => {
            let at = switch_index(node.switches(), *key).ok()?;
            node.switches()[at].child(*value)?
        }
        Edge::Test(atom) => {
            let at = test_index(node.tests(), atom).ok()?;
            node.tests()[at].link.node()
        }
    };
    find(child, rest)
}

type Parts = (Box<[Accept]>, Box<[HashNode]>, Box<[TestEdge]>);

/// Copies of a node's parts (sharing every child).
fn parts(node: &Node) -> Parts {
    (
        node.accepts().into(),
        node.switches().into(),
        node.tests().into(),
    )
}

fn with_accept(accepts: &[Accept], accept: Accept) -> Box<[Accept]> {
    let mut accepts = accepts.to_vec();
    if let Err(at) = accepts.binary_search(&accept) {
        accepts.insert(at, accept);
    }
    accepts.into_boxed_slice()
}

fn switch_index(switches: &[HashNode], key: SwitchKey) -> Result<usize, usize> {
    switches.binary_search_by_key(&key, |switch| switch.key())
}

fn test_index(tests: &[TestEdge], atom: &Atom) -> Result<usize, usize> {
    tests.binary_search_by(|edge| edge.atom.cmp(atom))
}

fn switches_inserted(
    switches: &[HashNode],
    key: SwitchKey,
    value: u32,
    rest: &[Edge],
    accept: Accept,
    seed: u64,
) -> Box<[HashNode]> {
    let mut switches = switches.to_vec();
    match switch_index(&switches, key) {
        Ok(at) => {
            let switch = &switches[at];
            let below = match switch.child(value) {
                Some(child) => inserted(child, rest, accept, seed),
                None => inserted(&Node::default(), rest, accept, seed),
            };
            switches[at] = switch.with_child(value, Arc::new(below), seed);
        }
        Err(at) => {
            let below = Arc::new(inserted(&Node::default(), rest, accept, seed));
            switches.insert(at, HashNode::new(key, vec![Link::new(below, value)], seed));
        }
    }
    switches.into_boxed_slice()
}

fn switches_removed(
    switches: &[HashNode],
    key: SwitchKey,
    value: u32,
    rest: &[Edge],
    accept: Accept,
    seed: u64,
) -> Box<[HashNode]> {
    let mut switches = switches.to_vec();
    let Ok(at) = switch_index(&switches, key) else {
        return switches.into_boxed_slice();
    };
    let switch = &switches[at];
    let Some(child) = switch.child(value) else {
        return switches.into_boxed_slice();
    };
    let replacement = match removed(child, rest, accept, seed) {
        Some(below) => Some(switch.with_child(value, Arc::new(below), seed)),
        None => switch.without(value, seed),
    };
    match replacement {
        Some(switch) => switches[at] = switch,
        None => {
            switches.remove(at);
        }
    }
    switches.into_boxed_slice()
}

fn tests_inserted(
    tests: &[TestEdge],
    atom: &Atom,
    rest: &[Edge],
    accept: Accept,
    seed: u64,
) -> Box<[TestEdge]> {
    let mut tests = tests.to_vec();
    match test_index(&tests, atom) {
        Ok(at) => {
            let below = inserted(tests[at].link.node(), rest, accept, seed);
            tests[at].link = Link::new(Arc::new(below), 0);
        }
        Err(at) => {
            let below = inserted(&Node::default(), rest, accept, seed);
            let edge = TestEdge::new(atom.clone(), Link::new(Arc::new(below), 0));
            tests.insert(at, edge);
        }
    }
    tests.into_boxed_slice()
}

fn tests_removed(
    tests: &[TestEdge],
    atom: &Atom,
    rest: &[Edge],
    accept: Accept,
    seed: u64,
) -> Box<[TestEdge]> {
    let mut tests = tests.to_vec();
    if let Ok(at) = test_index(&tests, atom) {
        match removed(tests[at].link.node(), rest, accept, seed) {
            Some(below) => tests[at].link = Link::new(Arc::new(below), 0),
            None => {
                tests.remove(at);
            }
        }
    }
    tests.into_boxed_slice()
}
