//! The classifier: every installed filter merged into one immutable trie.
//!
//! A [`FilterSet`] is the control plane's mutable view: filters are
//! installed and removed by tag, and every change publishes a new immutable
//! [`Classifier`] (an `Arc`) that shares all untouched parts of the trie with
//! the previous one. The data path holds an `Arc<Classifier>` and swaps in
//! the new one when it likes; it never waits for an update, and an update
//! never waits for it.
//!
//! ## What `classify` returns
//!
//! A filter matches a frame when one of its alternatives matches; its
//! **specificity** for that frame is the number of atoms of the longest
//! alternative that matches ([`Program::specificity`]). `classify` returns
//! the tag of the matching filter with the highest specificity.
//!
//! **Tie rule:** among matching filters of equal specificity, the one
//! installed first wins — the lowest insertion sequence. A filter that is
//! removed and installed again counts as installed at its latest insertion.
//! This is exactly what evaluating every installed filter one after the
//! other, in insertion order, and keeping the first strictly longer match
//! would give, which the property tests check.
//!
//! ## How
//!
//! See [`crate::trie`]: alternatives become paths of a DPF trie, atoms
//! sorted into one canonical order so that filters share prefixes, `Eq`
//! atoms on the same field merged into hash nodes.
//!
//! ## Limits
//!
//! [`Limits`] are checked when a filter is installed, before it touches the
//! trie, and each refusal names the limit and both numbers. They bound the
//! per-packet work a filter can cause: atoms per alternative (the depth of
//! the walk), alternatives, the highest byte offset any atom can read, and
//! the size of a relational test's expressions (their evaluation recursion).

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;

use crate::atom::{Atom, Reach};
use crate::program::Program;
use crate::trie::path::{canonical_paths, Edge};
use crate::trie::{Accept, Trie, TrieStats};
use crate::Tag;

/// Most atoms an alternative may have whatever [`Limits::max_atoms`] says:
/// it bounds the recursion depth of the per-packet walk.
pub const MAX_ATOMS_CEILING: usize = 256;

/// Most nodes one relational test's expressions may have whatever
/// [`Limits::max_expr_nodes`] says: it bounds their evaluation recursion.
pub const MAX_EXPR_NODES_CEILING: usize = 1024;

/// Per-filter limits checked at install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most atoms in one alternative (capped at [`MAX_ATOMS_CEILING`]).
    pub max_atoms: usize,
    /// Most alternatives in one program.
    pub max_alternatives: usize,
    /// Highest byte (exclusive) any atom may read, counted from the start of
    /// the frame with the largest possible IPv4 header for shifted fields.
    pub max_offset: u32,
    /// Most expression nodes in one relational test, both sides together
    /// (capped at [`MAX_EXPR_NODES_CEILING`]).
    pub max_expr_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_atoms: 64,
            max_alternatives: 64,
            max_offset: 65_535,
            max_expr_nodes: 64,
        }
    }
}

/// Why a filter could not be installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    #[error(
        "filter exceeds the limit on {limit}: {actual} > {max}; \
         simplify the expression or ask the operator for a higher limit"
    )]
    Limit {
        limit: &'static str,
        actual: u64,
        max: u64,
    },
    #[error("tag {0} is already installed; remove it first or use a new tag")]
    DuplicateTag(Tag),
    #[error("tag 0 means \"not interested\" and cannot be installed")]
    ZeroTag,
}

/// An immutable classifier: the data path calls [`Classifier::classify`].
#[derive(Debug, Default)]
pub struct Classifier {
    trie: Trie,
    filters: usize,
    reach: Reach,
    /// The largest bounded reach among the filters (see [`Self::head_reach`]).
    head_reach: Reach,
}

impl Classifier {
    /// The tag of the most specific filter that matches (first installed on a
    /// tie), or 0 ([`crate::NOT_INTERESTED`]).
    #[inline]
    pub fn classify(&self, frame: &[u8], wire_len: u32) -> Tag {
        self.trie.classify(frame, wire_len)
    }

    /// Number of installed filters.
    pub fn len(&self) -> usize {
        self.filters
    }

    /// How far into a frame the installed filters can read: the largest
    /// [`Program::reach`] among them. `classify` on a frame cut to a
    /// `Bounded` reach returns what it returns on the whole frame, so a
    /// data path that only peeks at a frame's head knows how much to peek.
    pub fn reach(&self) -> Reach {
        self.reach
    }

    /// The head a data path should peek at: the largest bounded reach among
    /// the filters, leaving out filters whose reach is unbounded (a
    /// protocol-chain walk, a load at a computed offset). On a head that
    /// long, [`classify_head`](Self::classify_head) decides every frame
    /// whose walk does not reach such a filter's tests, so one of them
    /// costs only the frames that need it, not every frame.
    pub fn head_reach(&self) -> Reach {
        self.head_reach
    }

    /// [`classify`](Self::classify) on the first bytes of a frame whose
    /// `wire_len` may be longer: the tag the whole frame would get, or
    /// `None` when that cannot be known from `head` (a test the walk needed
    /// read past it; receive the frame whole and classify that).
    pub fn classify_head(&self, head: &[u8], wire_len: u32) -> Option<Tag> {
        if self.reach.within(head.len()) {
            return Some(self.trie.classify(head, wire_len));
        }
        self.trie.classify_head(head, wire_len)
    }

    pub fn is_empty(&self) -> bool {
        self.filters == 0
    }

    /// What the trie holds (walks the whole trie: not for the data path).
    pub fn stats(&self) -> TrieStats {
        self.trie.stats()
    }

    /// The trie, for structural tests.
    #[doc(hidden)]
    pub fn trie(&self) -> &Trie {
        &self.trie
    }
}

/// An installed filter.
#[derive(Debug, Clone)]
struct Installed {
    seq: u32,
    program: Program,
    reach: Reach,
    /// The program's alternatives as canonical trie paths.
    paths: Vec<Vec<Edge>>,
}

/// The mutable set of installed filters; each change yields a new immutable
/// [`Classifier`].
#[derive(Debug)]
pub struct FilterSet {
    limits: Limits,
    /// Seed of the hash nodes' multipliers; secret so that clients cannot
    /// choose colliding values.
    seed: u64,
    next_seq: u32,
    /// The sequence at which the filters are renumbered: `u32::MAX`, lower
    /// only in tests.
    seq_limit: u32,
    installed: HashMap<Tag, Installed>,
    /// Installed tags by insertion sequence.
    order: BTreeMap<u32, Tag>,
    /// How many installed filters have each reach: the classifier's reach
    /// is the largest key, kept up to date on insert and remove.
    reaches: BTreeMap<Reach, usize>,
    current: Arc<Classifier>,
}

impl Default for FilterSet {
    fn default() -> Self {
        FilterSet::new(Limits::default())
    }
}

impl FilterSet {
    /// An empty set whose hash nodes use a random seed.
    pub fn new(limits: Limits) -> FilterSet {
        // The standard library's per-process random keys: no I/O of ours.
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x6e65_7473_u64);
        FilterSet::with_seed(limits, seed)
    }

    /// An empty set with a fixed hash seed, for reproducible tests and
    /// benchmarks.
    pub fn with_seed(limits: Limits, seed: u64) -> FilterSet {
        FilterSet {
            limits,
            seed,
            next_seq: 0,
            seq_limit: u32::MAX,
            installed: HashMap::new(),
            order: BTreeMap::new(),
            reaches: BTreeMap::new(),
            current: Arc::default(),
        }
    }

    /// An empty set that renumbers its filters when the insertion sequence
    /// reaches `seq_limit` (at least 2) instead of `u32::MAX`: for tests.
    #[doc(hidden)]
    pub fn with_seq_limit(limits: Limits, seed: u64, seq_limit: u32) -> FilterSet {
        assert!(seq_limit >= 2, "a sequence limit below 2 leaves no room");
        FilterSet {
            seq_limit,
            ..FilterSet::with_seed(limits, seed)
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Number of installed filters.
    pub fn len(&self) -> usize {
        self.installed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.installed.is_empty()
    }

    /// The program installed under `tag`.
    pub fn get(&self, tag: Tag) -> Option<&Program> {
        self.installed.get(&tag).map(|filter| &filter.program)
    }

    /// Installed filters in insertion order (which is tie-break order).
    pub fn iter(&self) -> impl Iterator<Item = (Tag, &Program)> + '_ {
        self.order
            .values()
            .filter_map(|tag| Some((*tag, &self.installed.get(tag)?.program)))
    }

    /// Checks `program` against the limits without installing it.
    pub fn check(&self, program: &Program) -> Result<(), InstallError> {
        check_limits(&self.limits, program)
    }

    /// The first-installed filter whose alternatives are exactly those of
    /// `program` (up to atom order), which would win every frame `program`
    /// matches: the server may refuse such a filter as a conflict.
    pub fn identical(&self, program: &Program) -> Option<Tag> {
        let paths = canonical_paths(program.alternatives());
        let (first, rest) = paths.split_first()?;
        self.current
            .trie
            .accepts_at(first)
            .iter()
            .filter(|accept| {
                let theirs = self.installed.get(&accept.tag);
                theirs.is_some_and(|filter| filter.paths.len() == paths.len())
                    && rest
                        .iter()
                        .all(|path| self.current.trie.accepts_at(path).contains(accept))
            })
            .map(|accept| accept.tag)
            .next()
    }

    /// The first-installed filter not `is_own` from which `program` would
    /// take frames if it were installed now: a frame that filter wins today
    /// and `program` matches more specifically (the new filter loses every
    /// tie, being the last installed). Filters that `is_own` selects are
    /// the installer's own: taking frames from them is allowed, and frames
    /// they already win from another filter are theirs to give.
    ///
    /// Conservative: for an alternative of `program` and one of another
    /// owner's filter with fewer atoms, the two are taken to match a common
    /// frame unless two of their atoms contradict each other
    /// ([`Atom::contradicts`]), and that frame to be the other owner's
    /// unless one of the installer's own alternatives, with more atoms than
    /// theirs, is implied by the new one (all its atoms are among the new
    /// alternative's, so it matches every frame the new one does). So `None`
    /// means `program` can take no frame from another owner; `Some` may
    /// name a filter that would in fact keep its frames.
    pub fn would_take_from(&self, program: &Program, is_own: impl Fn(Tag) -> bool) -> Option<Tag> {
        let own: Vec<&[Atom]> = self
            .iter()
            .filter(|&(tag, _)| is_own(tag))
            .flat_map(|(_, p)| p.alternatives().iter().map(Vec::as_slice))
            .collect();
        // `theirs` may lose a frame both match to `ours`, and no own
        // alternative already wins that frame from it.
        let may_lose = |ours: &[Atom], theirs: &[Atom]| {
            ours.len() > theirs.len()
                && crate::atom::may_both_hold(ours, theirs)
                && !own
                    .iter()
                    .any(|c| c.len() > theirs.len() && c.iter().all(|atom| ours.contains(atom)))
        };
        self.iter()
            .filter(|&(tag, _)| !is_own(tag))
            .find(|(_, theirs)| {
                program
                    .alternatives()
                    .iter()
                    .any(|ours| theirs.alternatives().iter().any(|alt| may_lose(ours, alt)))
            })
            .map(|(tag, _)| tag)
    }

    /// Installs `program` under `tag` and returns the new classifier.
    pub fn insert(&mut self, tag: Tag, program: Program) -> Result<Arc<Classifier>, InstallError> {
        if tag == crate::NOT_INTERESTED {
            return Err(InstallError::ZeroTag);
        }
        if self.installed.contains_key(&tag) {
            return Err(InstallError::DuplicateTag(tag));
        }
        check_limits(&self.limits, &program)?;
        if self.next_seq >= self.seq_limit {
            self.renumber();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let paths = canonical_paths(program.alternatives());
        let trie = self
            .current
            .trie
            .inserted(&paths, Accept { seq, tag }, self.seed);
        let reach = program.reach();
        *self.reaches.entry(reach).or_default() += 1;
        self.installed.insert(
            tag,
            Installed {
                seq,
                program,
                reach,
                paths,
            },
        );
        self.order.insert(seq, tag);
        self.publish(trie);
        Ok(self.classifier())
    }

    /// Removes the filter with `tag`; returns the new classifier, or `None`
    /// if no such filter was installed.
    pub fn remove(&mut self, tag: Tag) -> Option<Arc<Classifier>> {
        let filter = self.installed.remove(&tag)?;
        self.order.remove(&filter.seq);
        if let Some(count) = self.reaches.get_mut(&filter.reach) {
            *count -= 1;
            if *count == 0 {
                self.reaches.remove(&filter.reach);
            }
        }
        let accept = Accept {
            seq: filter.seq,
            tag,
        };
        let trie = self.current.trie.removed(&filter.paths, accept, self.seed);
        self.publish(trie);
        Some(self.classifier())
    }

    /// Gives the installed filters the sequences 0, 1, … in their order and
    /// rebuilds the trie with them: the order, so every tie, is unchanged,
    /// and the counter starts again after the last. Runs once in
    /// `seq_limit` installs (about four billion), so rebuilding from
    /// scratch costs nothing that matters.
    fn renumber(&mut self) {
        let mut trie = Trie::default();
        let mut order = BTreeMap::new();
        for (new_seq, tag) in self.order.values().enumerate() {
            // Each filter costs far more than a byte of memory: fewer than
            // `u32::MAX` of them can be installed.
            let new_seq = u32::try_from(new_seq).expect("fewer than 2^32 filters");
            let filter = self
                .installed
                .get_mut(tag)
                .expect("order and installed agree");
            filter.seq = new_seq;
            let accept = Accept {
                seq: new_seq,
                tag: *tag,
            };
            trie = trie.inserted(&filter.paths, accept, self.seed);
            order.insert(new_seq, *tag);
        }
        self.next_seq = u32::try_from(order.len()).expect("fewer than 2^32 filters");
        assert!(
            self.next_seq < self.seq_limit,
            "no sequence left after renumbering"
        );
        self.order = order;
        self.publish(trie);
    }

    /// The classifier for the filters installed now.
    pub fn classifier(&self) -> Arc<Classifier> {
        Arc::clone(&self.current)
    }

    fn publish(&mut self, trie: Trie) {
        let reach = self
            .reaches
            .last_key_value()
            .map_or(Reach::NOTHING, |(reach, _)| *reach);
        // `Bounded` sorts before `Unbounded`: the last bounded key.
        let head_reach = self
            .reaches
            .keys()
            .rev()
            .find(|reach| **reach != Reach::Unbounded)
            .copied()
            .unwrap_or(Reach::NOTHING);
        self.current = Arc::new(Classifier {
            trie,
            filters: self.installed.len(),
            reach,
            head_reach,
        });
    }
}

/// Checks every per-filter limit.
fn check_limits(limits: &Limits, program: &Program) -> Result<(), InstallError> {
    let alternatives = program.alternatives();
    within("alternatives", alternatives.len(), limits.max_alternatives)?;
    let max_atoms = limits.max_atoms.min(MAX_ATOMS_CEILING);
    let max_expr_nodes = limits.max_expr_nodes.min(MAX_EXPR_NODES_CEILING);
    for alternative in alternatives {
        within("atoms in one alternative", alternative.len(), max_atoms)?;
        for atom in alternative {
            within(
                "expression nodes in one test",
                expr_nodes(atom),
                max_expr_nodes,
            )?;
            let reach = atom.extent().fixed;
            if reach > u64::from(limits.max_offset) {
                return Err(InstallError::Limit {
                    limit: "highest byte offset",
                    actual: reach,
                    max: u64::from(limits.max_offset),
                });
            }
        }
    }
    Ok(())
}

fn within(limit: &'static str, actual: usize, max: usize) -> Result<(), InstallError> {
    if actual > max {
        return Err(InstallError::Limit {
            limit,
            actual: actual as u64,
            max: max as u64,
        });
    }
    Ok(())
}

/// Expression nodes of a relational test (0 for other atoms).
fn expr_nodes(atom: &Atom) -> usize {
    match atom {
        Atom::Test { lhs, rhs, .. } => lhs.size() + rhs.size(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atom::{Base, Expr, Field, RelOp, Width};

    fn eq(field: Field, value: u32) -> Atom {
        let mask = match field.width {
            Width::Byte => 0xff,
            Width::Half => 0xffff,
            Width::Word => u32::MAX,
        };
        Atom::Eq { field, mask, value }
    }

    fn payload(offset: u32) -> Field {
        Field {
            base: Base::Ipv4Payload { ip: 14 },
            offset,
            width: Width::Half,
        }
    }

    /// `udp dst port P` (IPv4 alternative only), atoms in expression order.
    fn udp_dst_port(port: u16) -> Program {
        Program::new(vec![vec![
            eq(Field::at(12, Width::Half), 0x0800),
            eq(Field::at(23, Width::Byte), 17),
            Atom::Eq {
                field: Field::at(20, Width::Half),
                mask: 0x1fff,
                value: 0,
            },
            eq(payload(2), u32::from(port)),
        ]])
    }

    /// A UDP/IPv4 frame to `port` with a 20-byte IP header.
    fn udp_frame(port: u16) -> Vec<u8> {
        let mut frame = vec![0u8; 42];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[23] = 17;
        frame[36..38].copy_from_slice(&port.to_be_bytes());
        frame
    }

    fn set() -> FilterSet {
        FilterSet::with_seed(Limits::default(), 1)
    }

    /// One filter whose reach is unbounded costs a whole frame only to the
    /// frames whose walk reaches its test: a UDP frame to an installed port
    /// is decided on the head (its match is more specific than the
    /// protocol chain could be), a TCP frame is not, an ARP frame is.
    #[test]
    fn only_frames_that_reach_an_unbounded_test_need_the_whole_frame() {
        let mut set = set();
        set.insert(1, udp_dst_port(9)).unwrap();
        let chain = crate::compile("ip protochain 6").unwrap();
        let classifier = set.insert(2, chain).unwrap();
        assert_eq!(classifier.reach(), Reach::Unbounded);
        let head_reach = classifier.head_reach();
        assert_eq!(head_reach, udp_dst_port(9).reach());
        let Reach::Bounded(head) = head_reach else {
            panic!("bounded: {head_reach:?}")
        };
        let mut udp = udp_frame(9);
        udp.resize(300, 0);
        assert_eq!(
            classifier.classify_head(&udp[..head as usize], 300),
            Some(1)
        );
        let mut tcp = udp.clone();
        tcp[23] = 6;
        assert_eq!(classifier.classify_head(&tcp[..head as usize], 300), None);
        assert_eq!(classifier.classify(&tcp, 300), 2);
        let mut arp = udp.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(
            classifier.classify_head(&arp[..head as usize], 300),
            Some(0)
        );
    }

    #[test]
    fn classifiers_can_be_shared_with_the_data_path() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Arc<Classifier>>();
        shareable::<FilterSet>();
    }

    #[test]
    fn empty_set_is_not_interested() {
        assert_eq!(set().classifier().classify(&udp_frame(53), 42), 0);
    }

    #[test]
    fn each_port_goes_to_its_filter() {
        let mut filters = set();
        for port in 1..=100u16 {
            filters
                .insert(u64::from(port) + 1000, udp_dst_port(port))
                .unwrap();
        }
        let classifier = filters.classifier();
        for port in 1..=100u16 {
            assert_eq!(
                classifier.classify(&udp_frame(port), 42),
                u64::from(port) + 1000
            );
        }
        assert_eq!(classifier.classify(&udp_frame(101), 42), 0);
        assert_eq!(classifier.classify(&udp_frame(1)[..30], 42), 0);
    }

    #[test]
    fn filters_share_prefixes_and_merge_ports_into_one_hash_node() {
        let mut filters = set();
        for port in 1..=100u16 {
            filters.insert(u64::from(port), udp_dst_port(port)).unwrap();
        }
        let stats = filters.classifier().stats();
        // root, ethertype, proto, fragment nodes, then one leaf per port.
        assert_eq!(stats.nodes, 4 + 100);
        assert_eq!(stats.hash_nodes, 4);
        assert_eq!(stats.hash_entries, 3 + 100);
        assert_eq!(stats.accepts, 100);
    }

    #[test]
    fn a_narrower_filter_would_take_from_a_broader_one_and_nothing_else_would() {
        let compiled = |e: &str| crate::compile(e).unwrap();
        let mut filters = FilterSet::with_seed(Limits::default(), 3);
        filters.insert(1, compiled("udp port 53")).unwrap();
        filters.insert(2, compiled("arp")).unwrap();
        let none_own = |_| false;
        // More atoms on frames the installed filter matches: it would win
        // them (the hijack the server refuses).
        for narrower in [
            "udp port 53 and greater 100",
            "udp dst port 53 and src net 10.0.0.0/8",
        ] {
            let p = compiled(narrower);
            assert_eq!(filters.would_take_from(&p, none_own), Some(1), "{narrower}");
        }
        // Broader, disjoint, or as specific (ties go to the first): nothing.
        for harmless in [
            "udp",
            "ip",
            "tcp port 53",
            "udp port 54",
            "ip6 and tcp",
            "udp port 53",
        ] {
            let p = compiled(harmless);
            assert_eq!(filters.would_take_from(&p, none_own), None, "{harmless}");
        }
        // From one's own filter, anything may be taken.
        let narrower = compiled("udp port 53 and greater 100");
        assert_eq!(filters.would_take_from(&narrower, |t| t == 1), None);
    }

    #[test]
    fn frames_an_own_filter_already_wins_are_not_another_owners() {
        let compiled = |e: &str| crate::compile(e).unwrap();
        let mut filters = FilterSet::with_seed(Limits::default(), 4);
        filters.insert(1, compiled("udp")).unwrap(); // someone else's
        filters.insert(2, compiled("udp port 53")).unwrap(); // ours
        let narrower = compiled("udp port 53 and greater 100");
        // Port 53 is already ours, not the `udp` owner's: narrowing it
        // takes nothing from them.
        assert_eq!(filters.would_take_from(&narrower, |t| t == 2), None);
        // Without our filter, the same narrowing would take from `udp`.
        assert_eq!(filters.would_take_from(&narrower, |_| false), Some(1));
        // A narrowing that reaches beyond what we own still would.
        let wider = compiled("udp and greater 100");
        assert_eq!(filters.would_take_from(&wider, |t| t == 2), Some(1));
    }

    #[test]
    fn more_specific_filter_wins_whatever_the_order() {
        let udp_only = Program::new(vec![vec![
            eq(Field::at(12, Width::Half), 0x0800),
            eq(Field::at(23, Width::Byte), 17),
        ]]);
        for specific_first in [false, true] {
            let mut filters = set();
            if specific_first {
                filters.insert(2, udp_dst_port(53)).unwrap();
                filters.insert(1, udp_only.clone()).unwrap();
            } else {
                filters.insert(1, udp_only.clone()).unwrap();
                filters.insert(2, udp_dst_port(53)).unwrap();
            }
            let classifier = filters.classifier();
            assert_eq!(classifier.classify(&udp_frame(53), 42), 2);
            assert_eq!(classifier.classify(&udp_frame(54), 42), 1);
        }
    }

    #[test]
    fn tie_goes_to_the_filter_installed_first() {
        let mut filters = set();
        filters.insert(7, udp_dst_port(53)).unwrap();
        filters.insert(3, udp_dst_port(53)).unwrap();
        assert_eq!(filters.classifier().classify(&udp_frame(53), 42), 7);
        // Reinstalled: now the later one.
        filters.remove(7).unwrap();
        filters.insert(7, udp_dst_port(53)).unwrap();
        assert_eq!(filters.classifier().classify(&udp_frame(53), 42), 3);
    }

    #[test]
    fn renumbering_keeps_every_tie_and_frees_the_counter() {
        // Tags 1..=3 all claim port 53 and tie; the first installed wins.
        // With a limit of 4, the churn below renumbers several times.
        let mut filters = FilterSet::with_seq_limit(Limits::default(), 1, 4);
        let mut reference = set();
        let winner = |filters: &FilterSet| filters.classifier().classify(&udp_frame(53), 42);
        for round in 0..10u64 {
            for set in [&mut filters, &mut reference] {
                if round > 0 {
                    // The oldest leaves and comes back last.
                    let oldest = set.iter().next().map(|(tag, _)| tag).unwrap();
                    set.remove(oldest).unwrap();
                    set.insert(oldest, udp_dst_port(53)).unwrap();
                } else {
                    for tag in 1..=3 {
                        set.insert(tag, udp_dst_port(53)).unwrap();
                    }
                }
            }
            assert_eq!(winner(&filters), winner(&reference), "round {round}");
            assert_eq!(winner(&filters), round % 3 + 1, "round {round}");
            let order: Vec<Tag> = filters.iter().map(|(tag, _)| tag).collect();
            let expected: Vec<Tag> = reference.iter().map(|(tag, _)| tag).collect();
            assert_eq!(order, expected, "round {round}");
            assert!(filters.next_seq <= 4);
        }
        assert!(reference.next_seq > 4, "the reference never renumbered");
    }

    #[test]
    fn test_atoms_beside_hash_nodes_are_both_explored() {
        let long_frames = Program::new(vec![vec![
            eq(Field::at(12, Width::Half), 0x0800),
            Atom::Test {
                lhs: Expr::WireLen,
                op: RelOp::Gt,
                rhs: Expr::Const(100),
            },
            Atom::Ne {
                field: Field::at(23, Width::Byte),
                mask: 0xff,
                value: 6,
            },
            Atom::Ne {
                field: Field::at(0, Width::Byte),
                mask: 0xff,
                value: 1,
            },
            Atom::Ne {
                field: Field::at(1, Width::Byte),
                mask: 0xff,
                value: 1,
            },
        ]]);
        let mut filters = set();
        filters.insert(1, udp_dst_port(53)).unwrap();
        filters.insert(2, long_frames).unwrap();
        let classifier = filters.classifier();
        assert_eq!(classifier.classify(&udp_frame(53), 42), 1);
        assert_eq!(classifier.classify(&udp_frame(53), 200), 2);
        assert_eq!(classifier.classify(&udp_frame(54), 200), 2);
        assert_eq!(classifier.classify(&udp_frame(54), 42), 0);
    }

    #[test]
    fn updates_share_untouched_subtrees_and_leave_old_versions_intact() {
        let mut filters = set();
        filters.insert(1, udp_dst_port(1)).unwrap();
        let tcp = Program::new(vec![vec![
            eq(Field::at(12, Width::Half), 0x0800),
            eq(Field::at(23, Width::Byte), 6),
        ]]);
        let ipv6 = Program::new(vec![vec![eq(Field::at(12, Width::Half), 0x86dd)]]);
        filters.insert(2, ipv6).unwrap();
        let before = filters.classifier();
        let after = filters.insert(3, tcp).unwrap();
        // The IPv6 leaf, in another branch of the root hash node, is shared.
        let ipv6_leaf = |c: &Classifier| {
            let root = c.trie().root();
            Arc::clone(root.switches()[0].child(0x86dd).unwrap())
        };
        assert!(Arc::ptr_eq(&ipv6_leaf(&before), &ipv6_leaf(&after)));
        // The old version still classifies as before.
        let mut tcp_frame = udp_frame(1);
        tcp_frame[23] = 6;
        assert_eq!(before.classify(&tcp_frame, 42), 0);
        assert_eq!(after.classify(&tcp_frame, 42), 3);
    }

    #[test]
    fn removal_frees_the_filters_nodes() {
        let mut filters = set();
        filters.insert(1, udp_dst_port(1)).unwrap();
        let alone = filters.classifier().stats();
        filters.insert(2, udp_dst_port(2)).unwrap();
        let leaf = Arc::downgrade(
            filters.classifier().trie().root().switches()[0]
                .child(0x0800)
                .unwrap()
                .switches()[0]
                .child(0)
                .unwrap(),
        );
        assert!(leaf.upgrade().is_some());
        filters.remove(2).unwrap();
        filters.remove(1).unwrap();
        assert!(
            leaf.upgrade().is_none(),
            "nodes of removed filters are dropped"
        );
        filters.insert(1, udp_dst_port(1)).unwrap();
        assert_eq!(filters.classifier().stats(), alone);
        filters.remove(1).unwrap();
        assert_eq!(filters.classifier().stats().nodes, 1);
        assert!(filters.remove(1).is_none());
    }

    #[test]
    fn empty_alternative_matches_everything_with_specificity_zero() {
        let mut filters = set();
        filters.insert(1, Program::accept_all()).unwrap();
        filters.insert(2, udp_dst_port(9)).unwrap();
        filters.insert(3, Program::reject_all()).unwrap();
        let classifier = filters.classifier();
        assert_eq!(classifier.classify(&[], 0), 1);
        assert_eq!(classifier.classify(&udp_frame(9), 42), 2);
        assert_eq!(classifier.len(), 3);
    }

    #[test]
    fn tags_are_checked() {
        let mut filters = set();
        assert_eq!(
            filters.insert(0, udp_dst_port(1)).unwrap_err(),
            InstallError::ZeroTag
        );
        filters.insert(5, udp_dst_port(1)).unwrap();
        assert_eq!(
            filters.insert(5, udp_dst_port(2)).unwrap_err(),
            InstallError::DuplicateTag(5)
        );
    }

    #[test]
    fn identical_programs_are_found_up_to_atom_order() {
        let mut filters = set();
        filters.insert(5, udp_dst_port(1)).unwrap();
        let mut reordered = udp_dst_port(1).alternatives()[0].clone();
        reordered.reverse();
        assert_eq!(filters.identical(&Program::new(vec![reordered])), Some(5));
        assert_eq!(filters.identical(&udp_dst_port(2)), None);
        let two = Program::new(vec![
            udp_dst_port(1).alternatives()[0].clone(),
            udp_dst_port(2).alternatives()[0].clone(),
        ]);
        assert_eq!(filters.identical(&two), None);
    }

    #[test]
    fn limits_name_the_limit_and_the_numbers() {
        let limits = Limits {
            max_atoms: 3,
            max_alternatives: 1,
            max_offset: 100,
            max_expr_nodes: 3,
        };
        let mut filters = FilterSet::with_seed(limits, 1);
        let err = filters.insert(1, udp_dst_port(1)).unwrap_err();
        assert_eq!(
            err,
            InstallError::Limit {
                limit: "atoms in one alternative",
                actual: 4,
                max: 3
            }
        );
        assert!(err.to_string().contains("atoms in one alternative: 4 > 3"));
        let two = Program::new(vec![vec![], vec![eq(Field::at(0, Width::Byte), 1)]]);
        assert!(matches!(
            filters.insert(1, two),
            Err(InstallError::Limit {
                limit: "alternatives",
                actual: 2,
                max: 1
            })
        ));
        let far = Program::new(vec![vec![eq(payload(30), 1)]]);
        // 14 + 60 (largest IPv4 header) + 30 + 2.
        assert!(matches!(
            filters.insert(1, far),
            Err(InstallError::Limit {
                limit: "highest byte offset",
                actual: 106,
                max: 100
            })
        ));
        let deep = Atom::Test {
            lhs: Expr::Neg(Box::new(Expr::Neg(Box::new(Expr::WireLen)))),
            op: RelOp::Eq,
            rhs: Expr::Const(1),
        };
        assert!(matches!(
            filters.insert(1, Program::new(vec![vec![deep]])),
            Err(InstallError::Limit {
                actual: 4,
                max: 3,
                ..
            })
        ));
        let chain = Atom::Protochain {
            net: 70,
            ipv6: true,
            proto: 6,
        };
        assert!(matches!(
            filters.insert(1, Program::new(vec![vec![chain]])),
            Err(InstallError::Limit { actual: 110, .. })
        ));
        assert!(filters.is_empty());
    }

    #[test]
    fn reach_follows_installs_and_removals() {
        let mut filters = set();
        assert_eq!(filters.classifier().reach(), Reach::NOTHING);
        // Ethertype, protocol, fragment, then ip+ihl[2:2]: 14 + 60 + 4.
        filters.insert(1, udp_dst_port(53)).unwrap();
        assert_eq!(filters.classifier().reach(), Reach::Bounded(78));
        let deep = crate::compile("udp[150] == 1").unwrap();
        assert_eq!(deep.reach(), Reach::Bounded(14 + 60 + 151));
        filters.insert(2, deep.clone()).unwrap();
        filters.insert(3, deep).unwrap();
        assert_eq!(filters.classifier().reach(), Reach::Bounded(225));
        let chain = crate::compile("ip6 protochain 17").unwrap();
        assert_eq!(chain.reach(), Reach::Unbounded);
        filters.insert(4, chain).unwrap();
        assert_eq!(filters.classifier().reach(), Reach::Unbounded);
        filters.remove(4).unwrap();
        assert_eq!(filters.classifier().reach(), Reach::Bounded(225));
        // Two filters reach 225: removing one leaves the other's.
        filters.remove(2).unwrap();
        assert_eq!(filters.classifier().reach(), Reach::Bounded(225));
        filters.remove(3).unwrap();
        assert_eq!(filters.classifier().reach(), Reach::Bounded(78));
        filters.remove(1).unwrap();
        assert_eq!(filters.classifier().reach(), Reach::NOTHING);
    }

    #[test]
    fn a_frame_cut_at_the_reach_classifies_like_the_whole_frame_and_one_cut_shorter_may_not() {
        let mut filters = set();
        filters
            .insert(2, crate::compile("udp and udp[150] == 7").unwrap())
            .unwrap();
        filters.insert(1, udp_dst_port(9)).unwrap();
        let classifier = filters.classifier();
        let Reach::Bounded(reach) = classifier.reach() else {
            panic!("bounded filters");
        };
        let mut frame = udp_frame(9);
        frame.resize(300, 0);
        frame[14 + 20 + 150] = 7;
        let wire_len = frame.len() as u32;
        // Both match the whole frame, with four atoms each: the first
        // installed wins.
        assert_eq!(classifier.classify(&frame, wire_len), 2);
        assert_eq!(classifier.classify(&frame[..reach as usize], wire_len), 2);
        // Cut at 128 (the old fixed peek), `udp[150]` is not captured: the
        // verdict changes.
        assert_eq!(classifier.classify(&frame[..128], wire_len), 1);
    }

    #[test]
    fn reach_of_each_kind_of_atom() {
        let shifted = |offset| Field {
            base: Base::Ipv4Payload { ip: 18 },
            offset,
            width: Width::Word,
        };
        assert_eq!(
            eq(Field::at(20, Width::Half), 1).reach(),
            Reach::Bounded(22)
        );
        assert_eq!(eq(shifted(8), 1).reach(), Reach::Bounded(18 + 60 + 12));
        let len_only = Atom::Test {
            lhs: Expr::WireLen,
            op: RelOp::Gt,
            rhs: Expr::Const(100),
        };
        assert_eq!(len_only.reach(), Reach::NOTHING);
        let arith = Atom::Test {
            lhs: Expr::Binary {
                op: crate::ArithOp::Add,
                lhs: Box::new(Expr::Field(Field::at(200, Width::Byte))),
                rhs: Box::new(Expr::Field(shifted(0))),
            },
            op: RelOp::Gt,
            rhs: Expr::Const(3),
        };
        assert_eq!(arith.reach(), Reach::Bounded(201));
        let indexed = Atom::Test {
            lhs: Expr::Indexed {
                base: Base::Frame,
                index: Box::new(Expr::Field(Field::at(0, Width::Byte))),
                width: Width::Byte,
            },
            op: RelOp::Eq,
            rhs: Expr::Const(1),
        };
        assert_eq!(indexed.reach(), Reach::Unbounded);
        // The limit check still counts its fixed part only.
        assert_eq!(indexed.extent().fixed, 1);
        let chain = Atom::Protochain {
            net: 14,
            ipv6: false,
            proto: 17,
        };
        assert_eq!(chain.reach(), Reach::Unbounded);
        assert_eq!(Program::accept_all().reach(), Reach::NOTHING);
        assert_eq!(Program::reject_all().reach(), Reach::NOTHING);
        assert!(Reach::Bounded(u64::MAX) < Reach::Unbounded);
        assert!(Reach::Bounded(128).within(128));
        assert!(!Reach::Bounded(129).within(128));
        assert!(!Reach::Unbounded.within(usize::MAX));
    }

    #[test]
    fn configured_atom_limit_is_capped_by_the_ceiling() {
        let limits = Limits {
            max_atoms: usize::MAX,
            ..Limits::default()
        };
        let long: Vec<Atom> = (0..=MAX_ATOMS_CEILING as u32)
            .map(|offset| eq(Field::at(offset, Width::Byte), 0))
            .collect();
        let mut filters = FilterSet::with_seed(limits, 1);
        assert!(matches!(
            filters.insert(1, Program::new(vec![long])),
            Err(InstallError::Limit { max: 256, .. })
        ));
    }
}
