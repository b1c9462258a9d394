//! A boolean formula over atoms: what lowering produces and
//! [`super::dnf`] expands into a program's alternatives.

use crate::atom::Atom;

/// Where an atom belongs in the canonical order of an alternative. The
/// trie merges filters by their common prefixes, so every filter lists its
/// tests outermost first: link guards (EtherType, VLAN tags), then the
/// network-protocol guard (IP protocol, IPv6 next header), then the
/// fragment guard, then the specific field tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    LinkGuard,
    NetworkGuard,
    FragmentGuard,
    Field,
}

/// An atom with its place in the canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Leaf {
    pub layer: Layer,
    pub atom: Atom,
}

/// A formula. Conjunctions and disjunctions keep libpcap's evaluation
/// order, which matters when `not` is pushed down (see [`super::dnf`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Formula {
    Const(bool),
    Leaf(Leaf),
    And(Vec<Formula>),
    Or(Vec<Formula>),
    Not(Box<Formula>),
    /// The formula lowered from the expression text at this byte position,
    /// so an expansion that grows too large can say where.
    At(usize, Box<Formula>),
}

impl Formula {
    pub fn leaf(layer: Layer, atom: Atom) -> Formula {
        Formula::Leaf(Leaf { layer, atom })
    }

    pub fn and(items: impl IntoIterator<Item = Formula>) -> Formula {
        Formula::And(items.into_iter().collect())
    }

    pub fn or(items: impl IntoIterator<Item = Formula>) -> Formula {
        Formula::Or(items.into_iter().collect())
    }

    #[allow(clippy::should_implement_trait)]
    pub fn not(inner: Formula) -> Formula {
        Formula::Not(Box::new(inner))
    }
}
