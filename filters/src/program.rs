//! A compiled filter: a disjunction of atom sequences.
//!
//! Each alternative is a conjunction, evaluated left to right: DPF's atom
//! sequence. A frame matches the program when any alternative's atoms all
//! hold. The number of atoms in the alternative that matched is the match's
//! **specificity**, which the classifier uses to let the most specific filter
//! win (see the classifier's documentation for the tie rule).

use crate::atom::{Atom, Reach};

/// A compiled filter program.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Program {
    alternatives: Vec<Vec<Atom>>,
}

impl Program {
    /// A program from its alternatives. An empty alternative matches every
    /// frame; a program with no alternatives matches none.
    ///
    /// Atoms are pure tests, so a conjunction does not depend on their order
    /// and an atom repeated within one alternative counts once: duplicates are
    /// removed here (keeping the first), which makes an alternative's length
    /// its specificity.
    pub fn new(alternatives: Vec<Vec<Atom>>) -> Program {
        let alternatives = alternatives
            .into_iter()
            .map(|alternative| {
                let mut distinct: Vec<Atom> = Vec::with_capacity(alternative.len());
                for atom in alternative {
                    if !distinct.contains(&atom) {
                        distinct.push(atom);
                    }
                }
                distinct
            })
            .collect();
        Program { alternatives }
    }

    /// The program that matches every frame (the empty expression).
    pub fn accept_all() -> Program {
        Program::new(vec![Vec::new()])
    }

    /// The program that matches no frame.
    pub fn reject_all() -> Program {
        Program::new(Vec::new())
    }

    pub fn alternatives(&self) -> &[Vec<Atom>] {
        &self.alternatives
    }

    /// How far into a frame the program can read: the largest reach of any
    /// of its atoms ([`Reach::NOTHING`] without atoms). Evaluated on a frame
    /// cut to a `Bounded` reach, the program gives the whole frame's verdict.
    pub fn reach(&self) -> Reach {
        self.alternatives
            .iter()
            .flatten()
            .map(Atom::reach)
            .max()
            .unwrap_or(Reach::NOTHING)
    }

    /// Whether the frame matches: the naive evaluation, one alternative after
    /// the other. The classifier must agree with this.
    pub fn matches(&self, frame: &[u8], wire_len: u32) -> bool {
        self.specificity(frame, wire_len).is_some()
    }

    /// The length of the longest alternative that matches, or `None`.
    pub fn specificity(&self, frame: &[u8], wire_len: u32) -> Option<usize> {
        self.alternatives
            .iter()
            .filter(|alt| alt.iter().all(|atom| atom.eval(frame, wire_len)))
            .map(Vec::len)
            .max()
    }
}

impl std::fmt::Display for Program {
    /// One block per alternative, one atom per line:
    ///
    /// ```text
    /// alternative 1 of 2:
    ///   ether[12:2] == 0x0800
    ///   ether[23:1] == 0x11
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.alternatives.len();
        if count == 0 {
            return writeln!(f, "matches no frame");
        }
        for (index, alternative) in self.alternatives.iter().enumerate() {
            writeln!(f, "alternative {} of {count}:", index + 1)?;
            if alternative.is_empty() {
                writeln!(f, "  (every frame)")?;
            }
            for atom in alternative {
                writeln!(f, "  {atom}")?;
            }
        }
        Ok(())
    }
}
