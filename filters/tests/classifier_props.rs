//! Property tests: the merged trie classifies exactly like evaluating every
//! installed filter one after the other (most specific match, first installed
//! on a tie), through random installs and removals, for random frames — and
//! every published classifier version keeps classifying like the filter set
//! it was published for.
//!
//! Atoms are drawn from a few fields, masks and values over short frames
//! drawn from a small alphabet, so that filters collide, share prefixes,
//! merge into hash nodes (linear and hashed), and read past the captured
//! bytes.

use std::sync::Arc;

use filters::atom::{ArithOp, Atom, Base, Expr, Field, RelOp, Width};
use filters::{Classifier, FilterSet, InstallError, Limits, Program, Reach, Tag};
use proptest::prelude::*;

/// The reference: every filter evaluated in insertion order.
#[derive(Debug, Clone, Default)]
struct Naive {
    filters: Vec<(Tag, Program)>,
}

impl Naive {
    fn insert(&mut self, tag: Tag, program: Program) -> bool {
        if tag == 0 || self.filters.iter().any(|(t, _)| *t == tag) {
            return false;
        }
        self.filters.push((tag, program));
        true
    }

    fn remove(&mut self, tag: Tag) -> bool {
        let before = self.filters.len();
        self.filters.retain(|(t, _)| *t != tag);
        self.filters.len() != before
    }

    fn classify(&self, frame: &[u8], wire_len: u32) -> Tag {
        let mut best: Option<(usize, Tag)> = None;
        for (tag, program) in &self.filters {
            if let Some(specificity) = program.specificity(frame, wire_len) {
                if best.is_none_or(|(b, _)| specificity > b) {
                    best = Some((specificity, *tag));
                }
            }
        }
        best.map_or(0, |(_, tag)| tag)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(Tag, Program),
    Remove(Tag),
}

fn field() -> impl Strategy<Value = Field> {
    let base = prop_oneof![
        4 => Just(Base::Frame),
        1 => Just(Base::Ipv4Payload { ip: 2 }),
    ];
    let width = prop_oneof![
        4 => Just(Width::Byte),
        2 => Just(Width::Half),
        1 => Just(Width::Word),
    ];
    (base, 0u32..6, width).prop_map(|(base, offset, width)| Field {
        base,
        offset,
        width,
    })
}

fn mask() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => Just(u32::MAX),
        1 => Just(0x07),
        1 => Just(0x0300),
    ]
}

/// Values from the frame alphabet, so that `Eq` atoms often hold.
fn value() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 0u32..8,
        1 => (0u32..8, 0u32..8).prop_map(|(hi, lo)| hi << 8 | lo),
    ]
}

fn eq_atom() -> impl Strategy<Value = Atom> {
    (field(), mask(), value()).prop_map(|(field, mask, value)| {
        let mask = mask & width_mask(field.width);
        Atom::Eq {
            field,
            mask,
            value: value & mask,
        }
    })
}

fn width_mask(width: Width) -> u32 {
    match width {
        Width::Byte => 0xff,
        Width::Half => 0xffff,
        Width::Word => u32::MAX,
    }
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        (0u32..8).prop_map(Expr::Const),
        Just(Expr::WireLen),
        field().prop_map(Expr::Field),
    ];
    leaf.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::Binary {
                op: ArithOp::Add,
                lhs: Box::new(l),
                rhs: Box::new(r),
            }),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Expr::Binary {
                op: ArithOp::Mod,
                lhs: Box::new(l),
                rhs: Box::new(r),
            }),
            inner.prop_map(|index| Expr::Indexed {
                base: Base::Frame,
                index: Box::new(index),
                width: Width::Byte,
            }),
        ]
    })
}

fn atom() -> impl Strategy<Value = Atom> {
    let rel = prop_oneof![Just(RelOp::Lt), Just(RelOp::Ge), Just(RelOp::Eq)];
    prop_oneof![
        6 => eq_atom(),
        2 => eq_atom().prop_map(|atom| match atom {
            Atom::Eq { field, mask, value } => Atom::Ne { field, mask, value },
            other => other,
        }),
        2 => (expr(), rel, expr()).prop_map(|(lhs, op, rhs)| Atom::Test { lhs, op, rhs }),
        1 => (0u32..4, any::<bool>(), 0u8..8)
            .prop_map(|(net, ipv6, proto)| Atom::Protochain { net, ipv6, proto }),
    ]
}

fn program() -> impl Strategy<Value = Program> {
    prop::collection::vec(prop::collection::vec(atom(), 0..5), 0..4).prop_map(Program::new)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..12, program()).prop_map(|(tag, p)| Op::Insert(tag, p)),
        1 => (0u64..12).prop_map(Op::Remove),
    ]
}

fn frame() -> impl Strategy<Value = (Vec<u8>, u32)> {
    (prop::collection::vec(0u8..8, 0..24), 0u32..40)
}

/// Applies `ops` to a filter set and the reference, keeping every published
/// classifier with a snapshot of the reference it must agree with.
fn replay(ops: &[Op]) -> (FilterSet, Naive, Vec<(Arc<Classifier>, Naive)>) {
    let mut set = FilterSet::with_seed(Limits::default(), 0x5eed);
    let mut naive = Naive::default();
    let mut versions = Vec::new();
    for op in ops {
        match op {
            Op::Insert(tag, program) => {
                let installed = set.insert(*tag, program.clone());
                assert_eq!(installed.is_ok(), naive.insert(*tag, program.clone()));
                if let Err(err) = installed {
                    assert!(matches!(err, InstallError::DuplicateTag(_)));
                }
            }
            Op::Remove(tag) => {
                assert_eq!(set.remove(*tag).is_some(), naive.remove(*tag));
            }
        }
        versions.push((set.classifier(), naive.clone()));
    }
    (set, naive, versions)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn classify_equals_naive_most_specific_first_installed(
        ops in prop::collection::vec(op(), 1..24),
        frames in prop::collection::vec(frame(), 1..16),
    ) {
        let (set, naive, versions) = replay(&ops);
        let classifier = set.classifier();
        for (frame, wire_len) in &frames {
            prop_assert_eq!(
                classifier.classify(frame, *wire_len),
                naive.classify(frame, *wire_len),
                "frame {:?} wire_len {}", frame, wire_len
            );
        }
        // Persistence: every earlier version still answers for its own set.
        for (version, snapshot) in &versions {
            for (frame, wire_len) in &frames {
                prop_assert_eq!(
                    version.classify(frame, *wire_len),
                    snapshot.classify(frame, *wire_len)
                );
            }
        }
    }

    #[test]
    fn trie_after_removals_equals_trie_built_from_scratch(
        ops in prop::collection::vec(op(), 1..24),
    ) {
        let (set, naive, _) = replay(&ops);
        let mut fresh = FilterSet::with_seed(Limits::default(), 0x5eed);
        for (tag, program) in &naive.filters {
            fresh.insert(*tag, program.clone()).unwrap();
        }
        prop_assert_eq!(set.classifier().stats(), fresh.classifier().stats());
        prop_assert_eq!(set.len(), naive.filters.len());
        let order: Vec<Tag> = set.iter().map(|(tag, _)| tag).collect();
        let expected: Vec<Tag> = naive.filters.iter().map(|(tag, _)| *tag).collect();
        prop_assert_eq!(order, expected);
    }

    /// Many filters with Eq atoms on the same few fields: wide, hashed
    /// hash nodes.
    #[test]
    fn wide_hash_nodes_classify_like_naive(
        programs in prop::collection::vec(
            prop::collection::vec(
                prop::collection::vec(
                    prop_oneof![
                        4 => (0u32..3, 0u32..64).prop_map(|(offset, value)| Atom::Eq {
                            field: Field::at(offset, Width::Byte),
                            mask: 0xff,
                            value,
                        }),
                        1 => atom(),
                    ],
                    0..4,
                ),
                1..3,
            ).prop_map(Program::new),
            1..80,
        ),
        frames in prop::collection::vec(
            (prop::collection::vec(0u8..64, 0..8), 0u32..40), 1..32),
        removals in prop::collection::vec(0usize..80, 0..20),
    ) {
        let mut set = FilterSet::with_seed(Limits::default(), 7);
        let mut naive = Naive::default();
        for (index, program) in programs.iter().enumerate() {
            let tag = index as Tag + 1;
            set.insert(tag, program.clone()).unwrap();
            naive.insert(tag, program.clone());
        }
        for index in removals {
            let tag = index as Tag + 1;
            prop_assert_eq!(set.remove(tag).is_some(), naive.remove(tag));
        }
        let classifier = set.classifier();
        for (frame, wire_len) in &frames {
            prop_assert_eq!(
                classifier.classify(frame, *wire_len),
                naive.classify(frame, *wire_len)
            );
        }
    }

    /// Filters that test one field and then one more (`host A and port P`
    /// shapes): wide hash nodes whose children are bare one-value tests,
    /// looked up two levels at once — until a deviant filter (one that ends
    /// at the first level, or goes on differently) is installed or removed.
    /// Filters on other fields compete at other depths, so a wrong depth
    /// through the shortcut would pick the wrong winner.
    #[test]
    fn two_level_tables_classify_like_naive(
        filters in prop::collection::vec((0u32..3, 0u32..3, 0u8..12), 1..60),
        frames in prop::collection::vec(
            (0u8..70, prop::collection::vec(0u8..3, 0..4), 0u32..8), 1..32),
        removals in prop::collection::vec(0usize..60, 0..10),
    ) {
        let byte = |offset, value| Atom::Eq {
            field: Field::at(offset, Width::Byte),
            mask: 0xff,
            value,
        };
        let mut set = FilterSet::with_seed(Limits::default(), 11);
        let mut naive = Naive::default();
        for (index, (inner, other, shape)) in filters.iter().enumerate() {
            // Mostly distinct first values, so the shortcut applies.
            let outer = index as u32;
            let alternative = match shape {
                0..=5 => vec![byte(0, outer), byte(1, *inner)],
                6 => vec![byte(0, *inner)],
                7 => vec![byte(0, outer), byte(1, *inner), byte(2, *other)],
                8 => vec![byte(0, *inner), byte(2, *other)],
                9 => vec![byte(3, *inner)],
                10 => vec![byte(3, *inner), byte(2, *other)],
                _ => vec![byte(3, *inner), byte(2, *other), byte(1, *inner)],
            };
            let program = Program::new(vec![alternative]);
            let tag = index as Tag + 1;
            set.insert(tag, program.clone()).unwrap();
            naive.insert(tag, program);
        }
        let check = |set: &FilterSet, naive: &Naive| -> Result<(), TestCaseError> {
            let classifier = set.classifier();
            for (first, rest, wire_len) in &frames {
                let mut frame = vec![*first];
                frame.extend_from_slice(rest);
                prop_assert_eq!(
                    classifier.classify(&frame, *wire_len),
                    naive.classify(&frame, *wire_len),
                    "frame {:?}", frame
                );
            }
            Ok(())
        };
        check(&set, &naive)?;
        for index in removals {
            let tag = index as Tag + 1;
            prop_assert_eq!(set.remove(tag).is_some(), naive.remove(tag));
            check(&set, &naive)?;
        }
    }

    /// `would_take_from` is conservative: when it names no filter, the new
    /// filter, once installed, classifies no frame that another owner's
    /// filter had (only frames its installer's own filters had, or nobody's).
    #[test]
    fn a_filter_said_to_take_nothing_takes_no_frame(
        programs in prop::collection::vec((program(), any::<bool>()), 1..8),
        random_probe in program(),
        narrowing in (any::<prop::sample::Index>(), prop::collection::vec(eq_atom(), 1..3)),
        narrow in any::<bool>(),
        frames in prop::collection::vec(frame(), 1..64),
    ) {
        // Half the probes narrow an installed filter's alternative with more
        // atoms: the way one client would take another's frames.
        let probe = if narrow {
            let alternatives: Vec<&Vec<Atom>> =
                programs.iter().flat_map(|(p, _)| p.alternatives()).collect();
            if alternatives.is_empty() {
                random_probe
            } else {
                let (index, extra) = narrowing;
                let mut alt = alternatives[index.index(alternatives.len())].clone();
                alt.extend(extra);
                Program::new(vec![alt])
            }
        } else {
            random_probe
        };
        let mut set = FilterSet::with_seed(Limits::default(), 2);
        for (index, (program, _)) in programs.iter().enumerate() {
            set.insert(index as Tag + 1, program.clone()).unwrap();
        }
        let is_own = |tag: Tag| programs[(tag - 1) as usize].1;
        let before = set.classifier();
        let verdict = set.would_take_from(&probe, is_own);
        let new_tag = 100;
        set.insert(new_tag, probe).unwrap();
        let after = set.classifier();
        if verdict.is_none() {
            for (frame, wire_len) in &frames {
                let was = before.classify(frame, *wire_len);
                let now = after.classify(frame, *wire_len);
                prop_assert!(
                    now != new_tag || was == filters::NOT_INTERESTED || is_own(was),
                    "the new filter took a frame of {} ({:?})", was, frame
                );
            }
        }
    }

    #[test]
    fn identical_finds_exactly_the_same_alternative_sets(
        programs in prop::collection::vec(program(), 1..8),
        probe in program(),
    ) {
        let mut set = FilterSet::with_seed(Limits::default(), 1);
        for (index, program) in programs.iter().enumerate() {
            set.insert(index as Tag + 1, program.clone()).unwrap();
        }
        let canonical = |p: &Program| {
            let mut alternatives: Vec<Vec<Atom>> = p
                .alternatives()
                .iter()
                .map(|alt| {
                    let mut alt = alt.clone();
                    alt.sort();
                    alt
                })
                .collect();
            alternatives.sort();
            alternatives.dedup();
            alternatives
        };
        let expected = set
            .iter()
            .find(|(_, p)| !p.alternatives().is_empty() && canonical(p) == canonical(&probe))
            .map(|(tag, _)| tag);
        prop_assert_eq!(set.identical(&probe), expected);
    }
}

/// Frames long enough to be cut: the alphabet's small values, and now and
/// then an IPv4-looking byte (IHL up to 15) for the shifted fields.
fn long_frame() -> impl Strategy<Value = (Vec<u8>, u32)> {
    (
        prop::collection::vec(prop_oneof![4 => 0u8..8, 1 => 0x40u8..0x50], 0..100),
        0u32..120,
    )
}

/// The frame cut to `reach`, or whole when the reach is past its end.
fn cut(frame: &[u8], reach: Reach) -> Option<&[u8]> {
    match reach {
        Reach::Bounded(n) => Some(&frame[..frame.len().min(n as usize)]),
        Reach::Unbounded => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// What the data path relies on to classify a peeked head: a frame cut
    /// at the classifier's reach classifies exactly like the whole frame,
    /// for every published version; and each program's verdict and
    /// specificity on a frame cut at its own reach are the whole frame's.
    #[test]
    fn a_frame_cut_at_the_reach_classifies_like_the_whole_frame(
        ops in prop::collection::vec(op(), 1..24),
        frames in prop::collection::vec(long_frame(), 1..16),
    ) {
        let (_, naive, versions) = replay(&ops);
        for (version, _) in &versions {
            let reach = version.reach();
            for (frame, wire_len) in &frames {
                if let Some(head) = cut(frame, reach) {
                    prop_assert_eq!(
                        version.classify(head, *wire_len),
                        version.classify(frame, *wire_len),
                        "reach {:?}, frame {:?}", reach, frame
                    );
                }
            }
        }
        for (_, program) in &naive.filters {
            for (frame, wire_len) in &frames {
                if let Some(head) = cut(frame, program.reach()) {
                    prop_assert_eq!(
                        program.specificity(head, *wire_len),
                        program.specificity(frame, *wire_len)
                    );
                }
            }
        }
    }

    /// What the data path relies on when it peeks at a head shorter than
    /// some filter reads (one with an unbounded reach): `classify_head`
    /// on any head returns the whole frame's tag or says it cannot know,
    /// and with only bounded filters a head as long as the reach always
    /// knows.
    #[test]
    fn a_head_classifies_like_the_whole_frame_or_asks_for_it(
        ops in prop::collection::vec(op(), 1..24),
        frames in prop::collection::vec(long_frame(), 1..16),
        cuts in prop::collection::vec(0usize..100, 1..4),
    ) {
        let (_, _, versions) = replay(&ops);
        for (version, _) in &versions {
            for (frame, wire_len) in &frames {
                let whole = version.classify(frame, *wire_len);
                for &len in &cuts {
                    let head = &frame[..len.min(frame.len())];
                    match version.classify_head(head, *wire_len) {
                        Some(tag) => prop_assert_eq!(
                            tag, whole, "head {:?} of frame {:?}", head, frame
                        ),
                        None => prop_assert!(
                            !version.reach().within(head.len()),
                            "a head within the reach {:?} must decide", version.reach()
                        ),
                    }
                }
            }
        }
    }

    /// The classifier's reach is the largest reach of the filters installed
    /// now, whatever was installed and removed before.
    #[test]
    fn reach_is_the_largest_installed_reach(ops in prop::collection::vec(op(), 1..24)) {
        let (set, naive, _) = replay(&ops);
        let expected = naive
            .filters
            .iter()
            .map(|(_, program)| program.reach())
            .max()
            .unwrap_or(Reach::NOTHING);
        prop_assert_eq!(set.classifier().reach(), expected);
        let head_expected = naive
            .filters
            .iter()
            .map(|(_, program)| program.reach())
            .filter(|reach| *reach != Reach::Unbounded)
            .max()
            .unwrap_or(Reach::NOTHING);
        prop_assert_eq!(set.classifier().head_reach(), head_expected);
    }
}
