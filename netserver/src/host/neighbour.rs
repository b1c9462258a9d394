//! The neighbour table: which MAC each IPv4 neighbour on the link has (an
//! ARP cache, RFC 826 and RFC 1122 §2.3.2.1), for what the server sends.
//!
//! An entry ages through three states, measured from the last time its
//! mapping was confirmed (a reply to us, or any ARP packet from it):
//!
//! ```text
//!  confirmed ──reachable_time──▶ stale ──stale_time──▶ expired (removed)
//! ```
//!
//! A **reachable** entry is used as is. A **stale** entry is still used (the
//! neighbour has most likely not moved), but the first use asks for a
//! refresh: one request unicast to the MAC we have, as Linux does. An
//! **incomplete** entry is a resolution in progress: broadcast requests go
//! out every `retransmit` up to `max_requests` times, and the frames that
//! wait for the answer sit in a bounded per-neighbour queue; on the answer
//! they are released to the caller, on giving up they are handed back as
//! failed.
//!
//! Queued frames are whatever handle the caller uses (`F`): a transmit
//! descriptor, a pool index. The table never copies packet bytes, and it
//! allocates only when a resolution starts, never per queued frame.
//!
//! No clock is read here: every method takes `now`.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::wire::MacAddr;

/// Times and limits of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighbourConfig {
    /// How long a confirmed mapping is used without question (Linux's
    /// `base_reachable_time`, 30 s).
    pub reachable_time: Duration,
    /// How long a stale mapping is still used before it expires.
    pub stale_time: Duration,
    /// Time between requests while resolving (RFC 1122 asks for at most
    /// one per second per destination).
    pub retransmit: Duration,
    /// Requests sent before a resolution fails.
    pub max_requests: u32,
    /// Frames that may wait for one neighbour's answer.
    pub queue_limit: usize,
    /// Entries (known and in progress) the table holds.
    pub max_entries: usize,
}

impl Default for NeighbourConfig {
    fn default() -> Self {
        NeighbourConfig {
            reachable_time: Duration::from_secs(30),
            stale_time: Duration::from_secs(60),
            retransmit: Duration::from_secs(1),
            max_requests: 3,
            queue_limit: 4,
            max_entries: 1024,
        }
    }
}

/// The state of one neighbour, as [`NeighbourTable::state`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighbourState {
    Reachable(MacAddr),
    Stale(MacAddr),
    Incomplete,
}

/// What to do with a frame for a neighbour ([`NeighbourTable::resolve`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Resolve<F> {
    /// The MAC is known: send the frame to it now.
    Send(MacAddr, F),
    /// The frame waits for the answer; [`NeighbourTable::poll`] sends the
    /// requests and [`NeighbourTable::learn`] releases it.
    Queued,
    /// No room to wait (queue or table full): the frame is handed back, for
    /// the caller to count and return.
    Refused(F),
}

/// Work the table asks of its owner ([`NeighbourTable::poll`]).
#[derive(Debug, PartialEq, Eq)]
pub enum NeighbourEvent<F> {
    /// Send an ARP request for `ip`: broadcast, or unicast to the MAC we
    /// already have when refreshing a stale entry.
    Request {
        ip: Ipv4Addr,
        unicast: Option<MacAddr>,
    },
    /// No answer after `max_requests`: these frames cannot be sent.
    Failed { ip: Ipv4Addr, frames: VecDeque<F> },
    /// Nothing to do before `next` (or ever, if `None`).
    Idle { next: Option<Instant> },
}

#[derive(Debug)]
enum Entry<F> {
    Known {
        mac: MacAddr,
        confirmed: Instant,
        /// A stale entry was used and no refresh has gone out yet.
        refresh_wanted: bool,
    },
    Incomplete {
        requests_sent: u32,
        next_request: Instant,
        waiting: VecDeque<F>,
    },
}

/// The ARP cache. See the module docs.
#[derive(Debug)]
pub struct NeighbourTable<F> {
    config: NeighbourConfig,
    entries: HashMap<Ipv4Addr, Entry<F>>,
}

impl<F> NeighbourTable<F> {
    pub fn new(config: NeighbourConfig) -> Self {
        NeighbourTable {
            config,
            entries: HashMap::new(),
        }
    }

    pub fn config(&self) -> &NeighbourConfig {
        &self.config
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The state of `ip` at `now`, without side effects (for stats and
    /// tests). Expired entries read as absent.
    pub fn state(&self, ip: Ipv4Addr, now: Instant) -> Option<NeighbourState> {
        match self.entries.get(&ip)? {
            Entry::Incomplete { .. } => Some(NeighbourState::Incomplete),
            Entry::Known { mac, confirmed, .. } => match self.age(*confirmed, now) {
                Age::Reachable => Some(NeighbourState::Reachable(*mac)),
                Age::Stale => Some(NeighbourState::Stale(*mac)),
                Age::Expired => None,
            },
        }
    }

    /// Whether some neighbour is known to use `mac` (a new application MAC
    /// must not be one of these).
    pub fn contains_mac(&self, mac: MacAddr) -> bool {
        self.entries
            .values()
            .any(|entry| matches!(entry, Entry::Known { mac: known, .. } if *known == mac))
    }

    /// The MAC to send to `ip`, if known and not expired. Using a stale
    /// entry asks for a refresh.
    pub fn lookup(&mut self, ip: Ipv4Addr, now: Instant) -> Option<MacAddr> {
        let age = match self.entries.get(&ip)? {
            Entry::Known { confirmed, .. } => self.age(*confirmed, now),
            Entry::Incomplete { .. } => return None,
        };
        match (age, self.entries.get_mut(&ip)) {
            (Age::Expired, _) => {
                self.entries.remove(&ip);
                None
            }
            (
                age,
                Some(Entry::Known {
                    mac,
                    refresh_wanted,
                    ..
                }),
            ) => {
                if age == Age::Stale {
                    *refresh_wanted = true;
                }
                Some(*mac)
            }
            _ => None,
        }
    }

    /// Where a frame for `ip` goes: sent now, queued behind a resolution
    /// (started here if none runs), or refused.
    pub fn resolve(&mut self, ip: Ipv4Addr, frame: F, now: Instant) -> Resolve<F> {
        if let Some(mac) = self.lookup(ip, now) {
            return Resolve::Send(mac, frame);
        }
        let is_full = self.entries.len() >= self.config.max_entries;
        let queue_limit = self.config.queue_limit;
        match self.entries.entry(ip) {
            MapEntry::Occupied(mut slot) => match slot.get_mut() {
                Entry::Incomplete { waiting, .. } if waiting.len() < queue_limit => {
                    waiting.push_back(frame);
                    Resolve::Queued
                }
                _ => Resolve::Refused(frame),
            },
            MapEntry::Vacant(_) if is_full || queue_limit == 0 => Resolve::Refused(frame),
            MapEntry::Vacant(slot) => {
                let mut waiting = VecDeque::with_capacity(queue_limit);
                waiting.push_back(frame);
                slot.insert(Entry::Incomplete {
                    requests_sent: 0,
                    next_request: now,
                    waiting,
                });
                Resolve::Queued
            }
        }
    }

    /// Records that `ip` is at `mac` (an ARP packet from it). Following RFC
    /// 826's merge rule, an unknown sender is added only when `create` is
    /// set (the packet was addressed to us); a known one is updated and
    /// confirmed. Returns the frames that waited for this answer, to be sent
    /// to `mac` in order.
    pub fn learn(
        &mut self,
        ip: Ipv4Addr,
        mac: MacAddr,
        create: bool,
        now: Instant,
    ) -> Option<VecDeque<F>> {
        if ip.is_unspecified() || super::wire::is_group(mac) {
            return None; // an ARP probe's sender, or a forged group sender
        }
        let known = Entry::Known {
            mac,
            confirmed: now,
            refresh_wanted: false,
        };
        let has_room = self.entries.len() < self.config.max_entries;
        match self.entries.get_mut(&ip) {
            Some(entry) => match std::mem::replace(entry, known) {
                Entry::Incomplete { waiting, .. } => Some(waiting),
                Entry::Known { .. } => None,
            },
            None if create && has_room => {
                self.entries.insert(ip, known);
                None
            }
            None => None,
        }
    }

    /// Forgets `ip` (an operator's `ip neigh del`); returns frames waiting.
    pub fn forget(&mut self, ip: Ipv4Addr) -> Option<VecDeque<F>> {
        match self.entries.remove(&ip)? {
            Entry::Incomplete { waiting, .. } => Some(waiting),
            Entry::Known { .. } => None,
        }
    }

    /// Advances time: removes expired entries and returns the first piece
    /// of work due at `now`. Call until it returns `Idle`.
    pub fn poll(&mut self, now: Instant) -> NeighbourEvent<F> {
        self.remove_expired(now);
        let config = self.config;
        // Expired entries are gone, so only a request or refresh can be due.
        let due = self
            .entries
            .iter()
            .find(|(_, entry)| entry.wakeup(&config, now) <= now)
            .map(|(ip, _)| *ip);
        match due {
            Some(ip) => self.work_on(ip, now),
            None => NeighbourEvent::Idle {
                next: self.entries.values().map(|e| e.wakeup(&config, now)).min(),
            },
        }
    }

    fn work_on(&mut self, ip: Ipv4Addr, now: Instant) -> NeighbourEvent<F> {
        let config = self.config;
        let Some(entry) = self.entries.get_mut(&ip) else {
            return NeighbourEvent::Idle { next: None };
        };
        match entry {
            Entry::Known {
                mac,
                refresh_wanted,
                ..
            } => {
                *refresh_wanted = false;
                NeighbourEvent::Request {
                    ip,
                    unicast: Some(*mac),
                }
            }
            Entry::Incomplete {
                requests_sent,
                next_request,
                ..
            } if *requests_sent < config.max_requests => {
                *requests_sent += 1;
                *next_request = now + config.retransmit;
                NeighbourEvent::Request { ip, unicast: None }
            }
            Entry::Incomplete { .. } => match self.entries.remove(&ip) {
                Some(Entry::Incomplete { waiting, .. }) => NeighbourEvent::Failed {
                    ip,
                    frames: waiting,
                },
                _ => NeighbourEvent::Idle { next: None },
            },
        }
    }

    fn remove_expired(&mut self, now: Instant) {
        let config = self.config;
        self.entries.retain(|_, entry| match entry {
            Entry::Known { confirmed, .. } => age(&config, *confirmed, now) != Age::Expired,
            Entry::Incomplete { .. } => true,
        });
    }

    fn age(&self, confirmed: Instant, now: Instant) -> Age {
        age(&self.config, confirmed, now)
    }
}

impl<F> Entry<F> {
    /// When this entry next needs [`NeighbourTable::poll`]: a request to
    /// send, a refresh, or its expiry.
    fn wakeup(&self, config: &NeighbourConfig, now: Instant) -> Instant {
        match self {
            Entry::Incomplete { next_request, .. } => *next_request,
            Entry::Known {
                refresh_wanted: true,
                ..
            } => now,
            Entry::Known { confirmed, .. } => {
                *confirmed + config.reachable_time + config.stale_time
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Age {
    Reachable,
    Stale,
    Expired,
}

fn age(config: &NeighbourConfig, confirmed: Instant, now: Instant) -> Age {
    let elapsed = now.saturating_duration_since(confirmed);
    if elapsed < config.reachable_time {
        Age::Reachable
    } else if elapsed < config.reachable_time + config.stale_time {
        Age::Stale
    } else {
        Age::Expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
    const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 9]);

    fn config() -> NeighbourConfig {
        NeighbourConfig {
            reachable_time: Duration::from_secs(10),
            stale_time: Duration::from_secs(20),
            retransmit: Duration::from_secs(1),
            max_requests: 3,
            queue_limit: 2,
            max_entries: 4,
        }
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn ages_reachable_stale_expired() {
        let t0 = Instant::now();
        let mut table = NeighbourTable::<u32>::new(config());
        assert_eq!(table.learn(IP, MAC, true, t0), None);
        assert_eq!(
            table.state(IP, t0 + s(9)),
            Some(NeighbourState::Reachable(MAC))
        );
        assert_eq!(
            table.state(IP, t0 + s(10)),
            Some(NeighbourState::Stale(MAC))
        );
        assert_eq!(table.lookup(IP, t0 + s(29)), Some(MAC));
        assert_eq!(table.state(IP, t0 + s(30)), None);
        assert_eq!(table.lookup(IP, t0 + s(30)), None);
        assert!(table.is_empty());
    }

    #[test]
    fn confirmation_restarts_ageing() {
        let t0 = Instant::now();
        let mut table = NeighbourTable::<u32>::new(config());
        table.learn(IP, MAC, true, t0);
        table.learn(IP, MAC, false, t0 + s(25));
        assert!(table.contains_mac(MAC));
        assert_eq!(
            table.state(IP, t0 + s(34)),
            Some(NeighbourState::Reachable(MAC))
        );
    }

    #[test]
    fn using_a_stale_entry_asks_for_one_unicast_refresh() {
        let t0 = Instant::now();
        let mut table = NeighbourTable::<u32>::new(config());
        table.learn(IP, MAC, true, t0);
        let t = t0 + s(15);
        assert!(matches!(
            table.poll(t),
            NeighbourEvent::Idle { next: Some(_) }
        ));
        assert_eq!(table.resolve(IP, 1, t), Resolve::Send(MAC, 1));
        assert_eq!(
            table.poll(t),
            NeighbourEvent::Request {
                ip: IP,
                unicast: Some(MAC)
            }
        );
        assert_eq!(
            table.poll(t),
            NeighbourEvent::Idle {
                next: Some(t0 + s(30))
            }
        );
    }

    #[test]
    fn unknown_senders_are_added_only_when_asked() {
        let t0 = Instant::now();
        let mut table = NeighbourTable::<u32>::new(config());
        table.learn(IP, MAC, false, t0);
        assert_eq!(table.state(IP, t0), None);
        table.learn(Ipv4Addr::UNSPECIFIED, MAC, true, t0);
        table.learn(IP, MacAddr([0xff; 6]), true, t0);
        assert!(table.is_empty());
    }

    #[test]
    fn resolution_queues_retransmits_and_releases() {
        let t0 = Instant::now();
        let mut table = NeighbourTable::new(config());
        assert_eq!(table.resolve(IP, 1, t0), Resolve::Queued);
        assert_eq!(table.resolve(IP, 2, t0), Resolve::Queued);
        assert_eq!(
            table.resolve(IP, 3, t0),
            Resolve::Refused(3),
            "queue limit 2"
        );
        assert_eq!(table.state(IP, t0), Some(NeighbourState::Incomplete));
        assert_eq!(
            table.poll(t0),
            NeighbourEvent::Request {
                ip: IP,
                unicast: None
            }
        );
        assert_eq!(
            table.poll(t0),
            NeighbourEvent::Idle {
                next: Some(t0 + s(1))
            }
        );
        assert_eq!(
            table.poll(t0 + s(1)),
            NeighbourEvent::Request {
                ip: IP,
                unicast: None
            }
        );
        let released = table.learn(IP, MAC, false, t0 + s(1)).unwrap();
        assert_eq!(released, [1, 2]);
        assert_eq!(table.resolve(IP, 4, t0 + s(2)), Resolve::Send(MAC, 4));
    }

    #[test]
    fn resolution_gives_up_after_max_requests() {
        let t0 = Instant::now();
        let mut table = NeighbourTable::new(config());
        table.resolve(IP, 7, t0);
        for i in 0..3 {
            assert_eq!(
                table.poll(t0 + s(i)),
                NeighbourEvent::Request {
                    ip: IP,
                    unicast: None
                }
            );
        }
        assert_eq!(
            table.poll(t0 + s(3)),
            NeighbourEvent::Failed {
                ip: IP,
                frames: VecDeque::from([7])
            }
        );
        assert!(table.is_empty());
    }

    #[test]
    fn a_full_table_refuses_new_resolutions() {
        let t0 = Instant::now();
        let mut table = NeighbourTable::new(config());
        for i in 0..4 {
            assert_eq!(
                table.resolve(Ipv4Addr::new(10, 0, 1, i), 0, t0),
                Resolve::Queued
            );
        }
        assert_eq!(table.resolve(IP, 9, t0), Resolve::Refused(9));
        table.learn(IP, MAC, true, t0);
        assert_eq!(table.state(IP, t0), None, "full: not added");
    }

    #[test]
    fn forget_hands_back_waiting_frames() {
        let t0 = Instant::now();
        let mut table = NeighbourTable::new(config());
        table.resolve(IP, 5, t0);
        assert_eq!(table.forget(IP), Some(VecDeque::from([5])));
        assert_eq!(table.forget(IP), None);
    }
}
