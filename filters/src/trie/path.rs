//! The canonical order of an alternative's atoms: the path it takes through
//! the trie.
//!
//! Atoms are pure tests, so a conjunction means the same in any order. The
//! trie exploits that: before insertion every alternative is sorted into one
//! global order, so that two filters that test the same things share the
//! same prefix of nodes whatever order their expressions were written in.
//!
//! The order is the derived `Ord` of [`Edge`]:
//!
//! 1. every mergeable `Eq` atom first, ordered by its [`SwitchKey`] — the
//!    field's base (frame-relative before IPv4-payload-relative), then
//!    offset, width and mask — and then by value. Protocol layers sit at
//!    increasing offsets, so this puts link-layer tests (EtherType) before
//!    network-layer tests (fragment offset, protocol, addresses) before
//!    transport-layer tests (ports): the fields most filters share come
//!    first and the fields that tell filters apart (addresses, ports) come
//!    last, where they become wide hash nodes;
//! 2. then every other atom (`Ne`, general tests, protocol chains), in the
//!    derived order of [`Atom`]. These cannot be hashed, and a packet pays for
//!    each one it evaluates, so they go below the hash nodes that have
//!    already narrowed the candidates.

use crate::atom::{Atom, Field};

/// What a hash node dispatches on: one field under one mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SwitchKey {
    pub field: Field,
    pub mask: u32,
}

impl SwitchKey {
    /// The masked field value of `frame`, or `None` when it was not captured.
    #[inline]
    pub fn load(&self, frame: &[u8]) -> Option<u32> {
        self.field.load(frame).map(|value| value & self.mask)
    }
}

/// One step of a trie path: the test on the edge into the next node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Edge {
    /// `(field & mask) == value`: one entry of the hash node for `key`.
    Eq { key: SwitchKey, value: u32 },
    /// Any other atom, evaluated on its own.
    Test(Atom),
}

impl Edge {
    fn of(atom: &Atom) -> Edge {
        match atom.as_eq() {
            Some((field, mask, value)) => Edge::Eq {
                key: SwitchKey { field, mask },
                value,
            },
            None => Edge::Test(atom.clone()),
        }
    }
}

/// An alternative's atoms in canonical order, duplicates removed: its path
/// from the root. The path's length is the alternative's specificity.
pub fn canonical_path(alternative: &[Atom]) -> Vec<Edge> {
    let mut path: Vec<Edge> = alternative.iter().map(Edge::of).collect();
    path.sort_unstable();
    path.dedup();
    path
}

/// A program's distinct alternatives as canonical paths, sorted. Two
/// alternatives that differ only in atom order are one path.
pub fn canonical_paths(alternatives: &[Vec<Atom>]) -> Vec<Vec<Edge>> {
    let mut paths: Vec<Vec<Edge>> = alternatives.iter().map(|a| canonical_path(a)).collect();
    paths.sort_unstable();
    paths.dedup();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atom::{Base, Width};

    fn eq(offset: u32, value: u32) -> Atom {
        Atom::Eq {
            field: Field::at(offset, Width::Byte),
            mask: 0xff,
            value,
        }
    }

    #[test]
    fn order_of_atoms_does_not_matter() {
        let a = canonical_path(&[eq(23, 17), eq(12, 8)]);
        let b = canonical_path(&[eq(12, 8), eq(23, 17)]);
        assert_eq!(a, b);
    }

    #[test]
    fn eq_atoms_come_first_by_offset_and_frame_before_payload() {
        let port = Atom::Eq {
            field: Field {
                base: Base::Ipv4Payload { ip: 14 },
                offset: 0,
                width: Width::Half,
            },
            mask: 0xffff,
            value: 53,
        };
        let ne = Atom::Ne {
            field: Field::at(0, Width::Byte),
            mask: 0xff,
            value: 1,
        };
        let path = canonical_path(&[ne.clone(), port.clone(), eq(23, 17)]);
        assert_eq!(path[0], Edge::of(&eq(23, 17)));
        assert_eq!(path[1], Edge::of(&port));
        assert_eq!(path[2], Edge::Test(ne));
    }

    #[test]
    fn reordered_duplicate_alternatives_are_one_path() {
        let paths = canonical_paths(&[vec![eq(1, 1), eq(2, 2)], vec![eq(2, 2), eq(1, 1)]]);
        assert_eq!(paths.len(), 1);
    }
}
