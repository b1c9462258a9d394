//! Expansion of a [`Formula`] into disjunctive normal form: the
//! alternatives of a [`crate::Program`].
//!
//! ## Negation keeps libpcap's guards
//!
//! libpcap evaluates `a and b` left to right and stops at the first false
//! test, and a read past the captured bytes rejects the packet. So
//! `not (ip and ip[40] == 1)` accepts a short ARP frame (the `ip` guard fails
//! first) but rejects a short IPv4 one (the read fails). Plain De Morgan
//! would give `not ip or ip[40] != 1`, whose second alternative is false on
//! a short frame — right here — but it also drops the guard from that
//! alternative. The **ordered** De Morgan keeps every guard that libpcap
//! would have evaluated before the negated test:
//! `not (a and b and c) = not a or (a and not b) or (a and b and not c)`.
//! Each negated atom fails past the captured bytes like the positive one,
//! which is libpcap's "reject".
//!
//! ## Simplification and bounds
//!
//! Conjunctions drop duplicate and implied atoms and vanish when
//! contradictory (`ether[12:2] == 0x0800` with `ether[12:2] == 0x86dd`);
//! alternatives are deduplicated and absorbed (`a or (a and b)` is `a`).
//! That keeps `not port 53` — a product of twelve negated port tests — at a
//! handful of alternatives. What remains is bounded by
//! [`MAX_ALTERNATIVES`] and [`MAX_ATOMS_PER_ALTERNATIVE`]; past them the
//! expression is refused, naming the limit.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use super::formula::{Formula, Leaf};
use super::CompileError;
use crate::atom::Atom;

/// Most alternatives a compiled program may have.
pub const MAX_ALTERNATIVES: usize = 256;
/// Most atoms one alternative may have.
pub const MAX_ATOMS_PER_ALTERNATIVE: usize = 64;
/// Most candidate alternatives one expansion step may produce before
/// simplification.
const MAX_CANDIDATES: usize = 4 * MAX_ALTERNATIVES;
/// Most pairwise alternative comparisons one compilation may spend on
/// products and simplification: bounds the time a hostile expression can
/// cost (a few hundred milliseconds at worst), far above what real filters
/// need (`not port 53` takes a few thousand).
const MAX_WORK: usize = 20_000_000;
/// Simplification merges complementary alternatives ([`resolve`]) only in
/// sets up to this size; beyond it the quadratic rescans cost too much.
const MAX_RESOLVE: usize = 128;

type Conjunction = Vec<Leaf>;
type Alternatives = Rc<Vec<Conjunction>>;

/// The alternatives of `formula`, each in canonical layer order.
pub fn expand(formula: &Formula) -> Result<Vec<Vec<Atom>>, CompileError> {
    let mut expander = Expander {
        memo: HashMap::new(),
        position: 0,
        work: 0,
    };
    let alternatives = expander.expand(formula, false)?;
    Ok(alternatives
        .iter()
        .map(|conjunction| {
            let mut ordered = conjunction.clone();
            // Stable: within a layer, libpcap's order is kept.
            ordered.sort_by_key(|leaf| leaf.layer);
            ordered.into_iter().map(|leaf| leaf.atom).collect()
        })
        .collect())
}

struct Expander {
    /// Results by (node address, negated): a negated conjunction needs its
    /// children in both polarities, and without sharing nested negations
    /// would cost exponential time.
    memo: HashMap<(usize, bool), Alternatives>,
    /// Position of the innermost expression being expanded, for errors.
    position: usize,
    /// Pairwise comparisons spent so far, against [`MAX_WORK`].
    work: usize,
}

impl Expander {
    fn expand(&mut self, formula: &Formula, negated: bool) -> Result<Alternatives, CompileError> {
        let key = (formula as *const Formula as usize, negated);
        if let Some(done) = self.memo.get(&key) {
            return Ok(Rc::clone(done));
        }
        let result = match formula {
            Formula::Const(value) => Rc::new(if *value != negated {
                vec![Vec::new()]
            } else {
                Vec::new()
            }),
            Formula::Leaf(leaf) => Rc::new(vec![vec![self.polarity(leaf, negated)?]]),
            Formula::At(position, inner) => {
                let outer = std::mem::replace(&mut self.position, *position);
                let result = self.expand(inner, negated);
                self.position = outer;
                result?
            }
            Formula::Not(inner) => self.expand(inner, !negated)?,
            Formula::And(items) if !negated => self.all_of(items, false)?,
            Formula::Or(items) if negated => self.all_of(items, true)?,
            Formula::Or(items) => self.any_of(items)?,
            Formula::And(items) => self.ordered_de_morgan(items)?,
        };
        self.memo.insert(key, Rc::clone(&result));
        Ok(result)
    }

    fn polarity(&self, leaf: &Leaf, negated: bool) -> Result<Leaf, CompileError> {
        if !negated {
            return Ok(leaf.clone());
        }
        let atom = match &leaf.atom {
            Atom::Eq { field, mask, value } => Atom::Ne {
                field: *field,
                mask: *mask,
                value: *value,
            },
            Atom::Ne { field, mask, value } => Atom::Eq {
                field: *field,
                mask: *mask,
                value: *value,
            },
            Atom::Test { lhs, op, rhs } => Atom::Test {
                lhs: lhs.clone(),
                op: op.negate(),
                rhs: rhs.clone(),
            },
            Atom::Protochain { .. } => {
                return Err(CompileError::unsupported(
                    self.position,
                    "'not' applied to 'protochain' (the negated chain walk has no atom yet)",
                ))
            }
        };
        Ok(Leaf {
            layer: leaf.layer,
            atom,
        })
    }

    /// Conjunction of the items (each negated if `negated`): the product
    /// of their alternatives.
    fn all_of(&mut self, items: &[Formula], negated: bool) -> Result<Alternatives, CompileError> {
        let mut product: Alternatives = Rc::new(vec![Vec::new()]);
        for item in items {
            let next = self.expand(item, negated)?;
            product = Rc::new(self.product(&product, &next)?);
            if product.is_empty() {
                break;
            }
        }
        Ok(product)
    }

    fn any_of(&mut self, items: &[Formula]) -> Result<Alternatives, CompileError> {
        let mut union = Vec::new();
        for item in items {
            let next = self.expand(item, false)?;
            union.extend(next.iter().cloned());
            self.check_candidates(union.len())?;
        }
        self.simplify(union).map(Rc::new)
    }

    /// `not (a1 and … and an)` = `not a1 or (a1 and not a2) or …`.
    fn ordered_de_morgan(&mut self, items: &[Formula]) -> Result<Alternatives, CompileError> {
        let mut union = Vec::new();
        let mut prefix: Vec<Conjunction> = vec![Vec::new()];
        for (index, item) in items.iter().enumerate() {
            let negated = self.expand(item, true)?;
            union.extend(self.product(&prefix, &negated)?);
            self.check_candidates(union.len())?;
            if index + 1 < items.len() {
                let positive = self.expand(item, false)?;
                prefix = self.product(&prefix, &positive)?;
                if prefix.is_empty() {
                    break;
                }
            }
        }
        self.simplify(union).map(Rc::new)
    }

    fn product(
        &mut self,
        left: &[Conjunction],
        right: &[Conjunction],
    ) -> Result<Vec<Conjunction>, CompileError> {
        self.check_candidates(left.len().saturating_mul(right.len()))?;
        self.spend(left.len() * right.len())?;
        let mut out = Vec::with_capacity(left.len() * right.len());
        for a in left {
            for b in right {
                if let Some(both) = conjoin(a, b) {
                    out.push(both);
                }
            }
        }
        self.simplify(out)
    }

    fn check_candidates(&self, count: usize) -> Result<(), CompileError> {
        if count > MAX_CANDIDATES {
            return Err(self.too_many_alternatives());
        }
        Ok(())
    }

    fn spend(&mut self, comparisons: usize) -> Result<(), CompileError> {
        self.work = self.work.saturating_add(comparisons);
        if self.work > MAX_WORK {
            return Err(CompileError::too_complex(
                self.position,
                format!(
                    "expanding it takes more than {MAX_WORK} steps (limit MAX_WORK);                      split it into several filters"
                ),
            ));
        }
        Ok(())
    }

    fn too_many_alternatives(&self) -> CompileError {
        CompileError::too_complex(
            self.position,
            format!(
                "expands to more than {MAX_ALTERNATIVES} alternatives (limit \
                 MAX_ALTERNATIVES); split it into several filters or avoid 'not' over 'or'"
            ),
        )
    }

    /// Deduplicates and absorbs alternatives, then enforces the limits.
    fn simplify(
        &mut self,
        alternatives: Vec<Conjunction>,
    ) -> Result<Vec<Conjunction>, CompileError> {
        let mut seen = HashSet::new();
        let mut distinct = Vec::new();
        for conjunction in alternatives {
            if seen.insert(sorted_atoms(&conjunction)) {
                distinct.push(conjunction);
            }
        }
        self.spend(distinct.len() * distinct.len())?;
        let resolved = if distinct.len() <= MAX_RESOLVE {
            resolve(distinct)
        } else {
            distinct
        };
        let kept = absorb(resolved);
        if kept.len() > MAX_ALTERNATIVES {
            return Err(self.too_many_alternatives());
        }
        if let Some(long) = kept.iter().find(|c| c.len() > MAX_ATOMS_PER_ALTERNATIVE) {
            return Err(CompileError::too_complex(
                self.position,
                format!(
                    "an alternative needs {} atoms, more than the {MAX_ATOMS_PER_ALTERNATIVE} \
                     allowed (limit MAX_ATOMS_PER_ALTERNATIVE)",
                    long.len()
                ),
            ));
        }
        Ok(kept)
    }
}

fn sorted_atoms(conjunction: &Conjunction) -> Vec<Atom> {
    let mut atoms: Vec<Atom> = conjunction.iter().map(|leaf| leaf.atom.clone()).collect();
    atoms.sort();
    atoms
}

/// Most pairs of alternatives [`resolve`] merges in one simplification;
/// bounds its work (each merge rescans).
const MAX_RESOLUTIONS: usize = 64;

/// Merges two alternatives that differ in one atom each when those two
/// atoms cover every value of the field: `(s and x == 1) or (s and x != 1)`
/// is `s`, and so is `(s and x != 1) or (s and x != 2)`.
///
/// This is what libpcap's optimizer does when both branches of a test lead
/// to the same verdict: the test, and its read, disappear. So `ip or not ip`
/// accepts even a frame too short to hold an EtherType, as libpcap does.
fn resolve(mut alternatives: Vec<Conjunction>) -> Vec<Conjunction> {
    for _ in 0..MAX_RESOLUTIONS {
        let keys: Vec<Vec<Atom>> = alternatives.iter().map(sorted_atoms).collect();
        let Some((keep, drop, atom)) = find_resolvable(&keys) else {
            break;
        };
        alternatives[keep].retain(|leaf| leaf.atom != atom);
        alternatives.remove(drop);
    }
    alternatives
}

/// Two alternatives (earlier, later) that [`resolve`] can merge, and the
/// atom to remove from the earlier one.
fn find_resolvable(keys: &[Vec<Atom>]) -> Option<(usize, usize, Atom)> {
    for (i, a) in keys.iter().enumerate() {
        for (j, b) in keys.iter().enumerate().skip(i + 1) {
            if a.len() != b.len() {
                continue;
            }
            if let Some((x, y)) = single_difference(a, b) {
                if cover_everything(x, y) {
                    return Some((i, j, x.clone()));
                }
            }
        }
    }
    None
}

/// For two sorted atom lists of equal length that differ in exactly one
/// atom each, those two atoms.
fn single_difference<'a>(a: &'a [Atom], b: &'a [Atom]) -> Option<(&'a Atom, &'a Atom)> {
    let (mut i, mut j) = (0, 0);
    let (mut only_a, mut only_b) = (None, None);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                if only_a.replace(x).is_some() {
                    return None;
                }
                i += 1;
            }
            (_, Some(y)) => {
                if only_b.replace(y).is_some() {
                    return None;
                }
                j += 1;
            }
            (Some(x), None) => {
                if only_a.replace(x).is_some() {
                    return None;
                }
                i += 1;
            }
            (None, None) => break,
        }
    }
    only_a.zip(only_b)
}

/// Whether `x or y` holds for every value of the field they both test.
fn cover_everything(x: &Atom, y: &Atom) -> bool {
    match (x, y) {
        (
            Atom::Eq { field, mask, value },
            Atom::Ne {
                field: f2,
                mask: m2,
                value: v2,
            },
        )
        | (
            Atom::Ne {
                field: f2,
                mask: m2,
                value: v2,
            },
            Atom::Eq { field, mask, value },
        ) => field == f2 && mask == m2 && value == v2,
        (
            Atom::Ne { field, mask, value },
            Atom::Ne {
                field: f2,
                mask: m2,
                value: v2,
            },
        ) => field == f2 && mask == m2 && value != v2,
        (
            Atom::Test { lhs, op, rhs },
            Atom::Test {
                lhs: l2,
                op: o2,
                rhs: r2,
            },
        ) => lhs == l2 && rhs == r2 && *o2 == op.negate(),
        _ => false,
    }
}

/// Drops every alternative that contains all the atoms of another one
/// (`a or (a and b)` is `a`); the earlier of two equal ones stays.
fn absorb(alternatives: Vec<Conjunction>) -> Vec<Conjunction> {
    let keys: Vec<Vec<Atom>> = alternatives.iter().map(sorted_atoms).collect();
    let absorbed: Vec<bool> = (0..keys.len())
        .map(|i| {
            (0..keys.len()).any(|j| {
                j != i
                    && keys[j].len() <= keys[i].len()
                    && is_subset(&keys[j], &keys[i])
                    && (keys[j].len() < keys[i].len() || j < i)
            })
        })
        .collect();
    alternatives
        .into_iter()
        .zip(absorbed)
        .filter(|(_, gone)| !gone)
        .map(|(conjunction, _)| conjunction)
        .collect()
}

/// Whether sorted `small` is a subset of sorted `big`.
fn is_subset(small: &[Atom], big: &[Atom]) -> bool {
    let mut rest = big.iter();
    small
        .iter()
        .all(|atom| rest.by_ref().any(|candidate| candidate == atom))
}

/// `a and b`, simplified; `None` if they contradict each other.
fn conjoin(a: &Conjunction, b: &Conjunction) -> Option<Conjunction> {
    let mut both = a.clone();
    for leaf in b {
        if !add(&mut both, leaf) {
            return None;
        }
    }
    Some(both)
}

/// Adds one atom to a conjunction, keeping it free of duplicates and of
/// tests implied by an equality on the same field; `false` when the atom
/// contradicts one already there ([`Atom::contradicts`]). Reasoning across
/// atoms on one field is sound because they read the same bytes: both fail
/// or neither does when the field was not captured.
fn add(conjunction: &mut Conjunction, leaf: &Leaf) -> bool {
    if conjunction
        .iter()
        .any(|existing| existing.atom.contradicts(&leaf.atom))
    {
        return false;
    }
    if let Atom::Eq { field, mask, .. } | Atom::Ne { field, mask, .. } = &leaf.atom {
        // An equality on the same field that fixes at least these bits
        // implies the atom (it agrees with it: no contradiction above).
        let implied = conjunction.iter().any(|existing| {
            matches!(existing.atom, Atom::Eq { field: other, mask: other_mask, .. }
                if other == *field && mask & !other_mask == 0)
        });
        if implied {
            return true;
        }
    }
    if let Atom::Eq { field, mask, .. } = &leaf.atom {
        // And a new equality implies every inequality on bits it fixes.
        conjunction.retain(|existing| {
            !matches!(existing.atom, Atom::Ne { field: other, mask: other_mask, .. }
                if other == *field && other_mask & !mask == 0)
        });
    }
    if !conjunction
        .iter()
        .any(|existing| existing.atom == leaf.atom)
    {
        conjunction.push(leaf.clone());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atom::{Field, Width};
    use crate::compile::formula::Layer;

    fn eq(offset: u32, value: u32) -> Formula {
        Formula::leaf(
            Layer::Field,
            Atom::Eq {
                field: Field::at(offset, Width::Byte),
                mask: 0xff,
                value,
            },
        )
    }

    fn ne(offset: u32, value: u32) -> Atom {
        Atom::Ne {
            field: Field::at(offset, Width::Byte),
            mask: 0xff,
            value,
        }
    }

    fn atom(formula: &Formula) -> Atom {
        match formula {
            Formula::Leaf(leaf) => leaf.atom.clone(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn ordered_de_morgan_keeps_guards() {
        let (a, b, c) = (eq(0, 1), eq(1, 2), eq(2, 3));
        let formula = Formula::not(Formula::and([a.clone(), b.clone(), c.clone()]));
        let alternatives = expand(&formula).unwrap();
        assert_eq!(
            alternatives,
            vec![
                vec![ne(0, 1)],
                vec![atom(&a), ne(1, 2)],
                vec![atom(&a), atom(&b), ne(2, 3)],
            ]
        );
    }

    #[test]
    fn contradictions_vanish_and_implied_tests_drop() {
        // (x == 1 or x == 2) and x != 2  →  x == 1
        let formula = Formula::and([Formula::or([eq(0, 1), eq(0, 2)]), Formula::not(eq(0, 2))]);
        assert_eq!(expand(&formula).unwrap(), vec![vec![atom(&eq(0, 1))]]);
    }

    #[test]
    fn complementary_alternatives_merge() {
        // x == 1 or x != 1: always (libpcap's optimizer drops the read too).
        let formula = Formula::or([eq(0, 1), Formula::not(eq(0, 1))]);
        assert_eq!(expand(&formula).unwrap(), vec![Vec::<Atom>::new()]);
        // x != 1 or x != 2: always.
        let formula = Formula::or([Formula::not(eq(0, 1)), Formula::not(eq(0, 2))]);
        assert_eq!(expand(&formula).unwrap(), vec![Vec::<Atom>::new()]);
    }

    #[test]
    fn absorption() {
        let formula = Formula::or([eq(0, 1), Formula::and([eq(0, 1), eq(1, 1)])]);
        assert_eq!(expand(&formula).unwrap(), vec![vec![atom(&eq(0, 1))]]);
    }

    #[test]
    fn blow_up_is_refused_with_the_limit_named() {
        // (a1 or b1) and (a2 or b2) and … : 2^10 alternatives.
        let factors = (0..10).map(|i| Formula::or([eq(i, 1), eq(i + 100, 1)]));
        let formula = Formula::At(7, Box::new(Formula::and(factors)));
        let error = expand(&formula).unwrap_err();
        assert_eq!(error.position(), 7);
        assert!(error.to_string().contains("256 alternatives"), "{error}");
    }
}
