//! Operator firewall rules: `(drop | count, filter expression)`, run on
//! every received frame **before dispatch** — before the destination-MAC
//! fast path, the control plane and the filter classifier — so that no
//! delivery path, zero-copy included, bypasses them.
//!
//! # Order
//!
//! Rules run in the order the operator added them. Every matching rule
//! counts the frame (packets and bytes); the **first matching `drop` rule
//! stops evaluation** and the frame is dropped. So a `count` rule sees a
//! frame only if no earlier `drop` rule took it, and rules after the first
//! matching `drop` never see it.
//!
//! # Threads
//!
//! [`FirewallRules`] is the operator's editable list, on the control plane.
//! [`FirewallRules::snapshot`] publishes an immutable [`Firewall`] for the
//! data path (swap it in like the classifier). Counters are atomics shared
//! between snapshots through `Arc`, so a rule keeps its counts across
//! edits, and any thread can read them while the data path counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use filters::{CompileError, Program, Reach};

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleAction {
    Drop,
    Count,
}

/// A rule's identity, stable across edits, never reused in one server run.
pub type RuleId = u32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FirewallError {
    #[error("invalid firewall expression {expression:?}: {source}")]
    Compile {
        expression: String,
        #[source]
        source: CompileError,
    },
    #[error("no firewall rule {id}; list the rules to see their ids")]
    NoSuchRule { id: RuleId },
}

/// A rule's counters, written by the data path and read by anyone.
#[derive(Debug, Default)]
pub struct RuleCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl RuleCounters {
    fn record(&self, wire_len: u32) {
        // Relaxed: the counters are statistics, published to readers with
        // no other data depending on them.
        self.packets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(u64::from(wire_len), Ordering::Relaxed);
    }

    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone)]
struct Rule {
    id: RuleId,
    action: RuleAction,
    expression: String,
    program: Arc<Program>,
    counters: Arc<RuleCounters>,
}

/// A rule as reported to the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStats {
    pub id: RuleId,
    pub action: RuleAction,
    pub expression: String,
    pub packets: u64,
    pub bytes: u64,
}

/// The operator's editable rule list (control plane).
#[derive(Debug, Default)]
pub struct FirewallRules {
    rules: Vec<Rule>,
    next_id: RuleId,
}

impl FirewallRules {
    pub fn new() -> FirewallRules {
        FirewallRules::default()
    }

    /// Compiles `expression` with the filter language and appends the rule.
    pub fn add(&mut self, action: RuleAction, expression: &str) -> Result<RuleId, FirewallError> {
        let program = filters::compile(expression).map_err(|source| FirewallError::Compile {
            expression: expression.to_owned(),
            source,
        })?;
        Ok(self.add_program(action, expression, program))
    }

    /// Appends a rule already compiled (tests, or a program built from atoms).
    pub fn add_program(
        &mut self,
        action: RuleAction,
        expression: &str,
        program: Program,
    ) -> RuleId {
        let id = self.next_id;
        self.next_id += 1;
        self.rules.push(Rule {
            id,
            action,
            expression: expression.to_owned(),
            program: Arc::new(program),
            counters: Arc::default(),
        });
        id
    }

    pub fn remove(&mut self, id: RuleId) -> Result<(), FirewallError> {
        let index = self
            .rules
            .iter()
            .position(|rule| rule.id == id)
            .ok_or(FirewallError::NoSuchRule { id })?;
        self.rules.remove(index);
        Ok(())
    }

    /// The immutable rule set for the data path.
    pub fn snapshot(&self) -> Firewall {
        Firewall {
            rules: self.rules.clone(),
            reach: self
                .rules
                .iter()
                .map(|rule| rule.program.reach())
                .max()
                .unwrap_or(Reach::NOTHING),
        }
    }

    /// Each rule with its counters, in evaluation order.
    pub fn stats(&self) -> Vec<RuleStats> {
        self.rules
            .iter()
            .map(|rule| RuleStats {
                id: rule.id,
                action: rule.action,
                expression: rule.expression.clone(),
                packets: rule.counters.packets(),
                bytes: rule.counters.bytes(),
            })
            .collect()
    }
}

/// The firewall's decision on a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirewallVerdict {
    Pass,
    /// Dropped by this rule.
    Drop(RuleId),
}

/// An immutable rule set, evaluated by the data path.
#[derive(Debug, Clone, Default)]
pub struct Firewall {
    rules: Vec<Rule>,
    /// The largest reach of the rules' programs.
    reach: Reach,
}

impl Firewall {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// How far into a frame the rules can read: [`Firewall::check`] on a
    /// frame cut to a `Bounded` reach gives the whole frame's verdict.
    pub fn reach(&self) -> Reach {
        self.reach
    }

    /// Runs the rules on `frame` (`wire_len` is its length on the wire, for
    /// the byte counters and for `len` tests). Allocates nothing.
    pub fn check(&self, frame: &[u8], wire_len: u32) -> FirewallVerdict {
        for rule in &self.rules {
            if !rule.program.matches(frame, wire_len) {
                continue;
            }
            rule.counters.record(wire_len);
            if rule.action == RuleAction::Drop {
                return FirewallVerdict::Drop(rule.id);
            }
        }
        FirewallVerdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filters::{Atom, Field, Width};

    /// `ether[12:2] == ethertype`, built from atoms.
    fn ethertype(t: u16) -> Program {
        Program::new(vec![vec![Atom::Eq {
            field: Field::at(12, Width::Half),
            mask: 0xffff,
            value: u32::from(t),
        }]])
    }

    fn frame(ethertype: u16) -> [u8; 60] {
        let mut f = [0u8; 60];
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f
    }

    #[test]
    fn first_matching_drop_wins_and_counts_stop_there() {
        let mut rules = FirewallRules::new();
        let count_all_ip = rules.add_program(RuleAction::Count, "ip", ethertype(0x0800));
        let drop_ip = rules.add_program(RuleAction::Drop, "ip", ethertype(0x0800));
        let count_after = rules.add_program(RuleAction::Count, "ip", ethertype(0x0800));
        let firewall = rules.snapshot();

        assert_eq!(
            firewall.check(&frame(0x0800), 60),
            FirewallVerdict::Drop(drop_ip)
        );
        assert_eq!(firewall.check(&frame(0x0806), 60), FirewallVerdict::Pass);

        let stats = rules.stats();
        let packets = |id| stats.iter().find(|s| s.id == id).unwrap().packets;
        assert_eq!(packets(count_all_ip), 1);
        assert_eq!(packets(drop_ip), 1);
        assert_eq!(packets(count_after), 0, "after the drop: never evaluated");
        assert_eq!(stats[0].bytes, 60);
    }

    #[test]
    fn counters_survive_edits_and_are_read_from_another_thread() {
        let mut rules = FirewallRules::new();
        let id = rules.add_program(RuleAction::Count, "arp", ethertype(0x0806));
        let firewall = Arc::new(rules.snapshot());
        let data_path = {
            let firewall = Arc::clone(&firewall);
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    firewall.check(&frame(0x0806), 60);
                }
            })
        };
        data_path.join().unwrap();
        rules.add_program(RuleAction::Drop, "ip", ethertype(0x0800));
        let next = rules.snapshot();
        next.check(&frame(0x0806), 60);
        assert_eq!(rules.stats()[0].packets, 1001);
        assert_eq!(rules.stats()[0].id, id);
        rules.remove(id).unwrap();
        assert_eq!(rules.remove(id), Err(FirewallError::NoSuchRule { id }));
        assert_eq!(rules.stats().len(), 1);
    }

    #[test]
    fn reach_is_the_deepest_rules() {
        let mut rules = FirewallRules::new();
        assert_eq!(rules.snapshot().reach(), Reach::NOTHING);
        rules.add(RuleAction::Count, "udp dst port 53").unwrap();
        assert_eq!(rules.snapshot().reach(), Reach::Bounded(14 + 60 + 4));
        let deep = rules.add(RuleAction::Drop, "udp[150] == 1").unwrap();
        assert_eq!(rules.snapshot().reach(), Reach::Bounded(14 + 60 + 151));
        let chain = rules.add(RuleAction::Drop, "ip protochain 17").unwrap();
        assert_eq!(rules.snapshot().reach(), Reach::Unbounded);
        rules.remove(chain).unwrap();
        rules.remove(deep).unwrap();
        assert_eq!(rules.snapshot().reach(), Reach::Bounded(78));
    }

    #[test]
    fn expressions_compile_with_the_filter_language() {
        let mut rules = FirewallRules::new();
        let id = rules.add(RuleAction::Drop, "udp dst port 53").unwrap();
        let mut dns = [0u8; 60];
        dns[12..14].copy_from_slice(&[0x08, 0x00]);
        dns[14] = 0x45;
        dns[23] = 17;
        dns[36..38].copy_from_slice(&53u16.to_be_bytes());
        assert_eq!(rules.snapshot().check(&dns, 60), FirewallVerdict::Drop(id));
        assert!(matches!(
            rules.add(RuleAction::Drop, "udp dst port"),
            Err(FirewallError::Compile { .. })
        ));
    }
}
