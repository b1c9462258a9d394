//! Plain Rust copies of the schema's statistics and info structs, so callers
//! need not touch capnp readers (and can serialise them to JSON).

use serde::Serialize;

use netserver_schema::{drop_count, filter_stats, global_stats, server_info, FilterMode};

use crate::error::Result;

/// Whether a filter gets its frames exclusively or watches a copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Each matching frame goes to this filter only (the default).
    #[default]
    Exclusive,
    /// A copy of matching traffic; needs the operator capability.
    Monitor,
}

impl Mode {
    pub(crate) fn to_schema(self) -> FilterMode {
        match self {
            Mode::Exclusive => FilterMode::Exclusive,
            Mode::Monitor => FilterMode::Monitor,
        }
    }

    fn from_schema(mode: FilterMode) -> Self {
        match mode {
            FilterMode::Exclusive => Mode::Exclusive,
            FilterMode::Monitor => Mode::Monitor,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Exclusive => "exclusive",
            Mode::Monitor => "monitor",
        })
    }
}

/// Frames dropped for one reason (`queue_full`, `closed`, `no_filter`,
/// `firewall`, `no_frame`, `overloaded`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DropCount {
    pub reason: String,
    pub count: u64,
}

fn drops(list: capnp::struct_list::Reader<'_, drop_count::Owned>) -> Result<Vec<DropCount>> {
    list.iter()
        .map(|d| {
            Ok(DropCount {
                reason: d.get_reason()?.to_string()?,
                count: d.get_count(),
            })
        })
        .collect()
}

/// One filter's counters (schema `FilterStats`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FilterStats {
    pub tag: u64,
    pub expression: String,
    pub mode: Mode,
    /// Frames delivered to the client (small + large).
    pub packets: u64,
    pub bytes: u64,
    pub small: u64,
    pub large: u64,
    pub zero_copy: u64,
    pub copied: u64,
    /// Waiting in the filter's queue now.
    pub queued: u64,
    /// Waiting in the server's overflow pool now.
    pub overflow: u64,
    pub dropped: u64,
    pub drops: Vec<DropCount>,
    /// Client requests refused (bad page or slot index, …), including the
    /// protocol violations of an attached exchange region.
    pub refused: u64,
    /// Shared mode: an exchange region is attached.
    pub shared: bool,
    /// Shared mode: the region's protocol violations by kind.
    pub violations: Vec<DropCount>,
    /// Shared mode: why the capability was revoked (empty: it was not).
    pub revoked: String,
}

impl FilterStats {
    pub(crate) fn read(r: filter_stats::Reader<'_>) -> Result<Self> {
        Ok(FilterStats {
            tag: r.get_tag(),
            expression: r.get_expression()?.to_string()?,
            mode: Mode::from_schema(r.get_mode()?),
            packets: r.get_packets(),
            bytes: r.get_bytes(),
            small: r.get_small(),
            large: r.get_large(),
            zero_copy: r.get_zero_copy(),
            copied: r.get_copied(),
            queued: r.get_queued(),
            overflow: r.get_overflow(),
            dropped: r.get_dropped(),
            drops: drops(r.get_drops()?)?,
            refused: r.get_refused(),
            shared: r.get_shared(),
            violations: drops(r.get_violations()?)?,
            revoked: r.get_revoked()?.to_string()?,
        })
    }

    /// Protocol violations of kind `kind` (shared mode), 0 if none.
    pub fn violations_of(&self, kind: &str) -> u64 {
        self.violations
            .iter()
            .filter(|d| d.reason == kind)
            .map(|d| d.count)
            .sum()
    }

    /// Frames dropped for `reason`, 0 if none.
    pub fn drops_for(&self, reason: &str) -> u64 {
        self.drops
            .iter()
            .filter(|d| d.reason == reason)
            .map(|d| d.count)
            .sum()
    }
}

/// Server-wide counters (schema `GlobalStats`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GlobalStats {
    pub received: u64,
    pub delivered_small: u64,
    pub delivered_large: u64,
    pub control: u64,
    pub queued: u64,
    pub overflow: u64,
    pub dropped: u64,
    pub drops: Vec<DropCount>,
    pub filters: u32,
    pub epoch: u16,
    pub uptime_ns: u64,
}

impl GlobalStats {
    pub(crate) fn read(r: global_stats::Reader<'_>) -> Result<Self> {
        Ok(GlobalStats {
            received: r.get_received(),
            delivered_small: r.get_delivered_small(),
            delivered_large: r.get_delivered_large(),
            control: r.get_control(),
            queued: r.get_queued(),
            overflow: r.get_overflow(),
            dropped: r.get_dropped(),
            drops: drops(r.get_drops()?)?,
            filters: r.get_filters(),
            epoch: r.get_epoch(),
            uptime_ns: r.get_uptime_ns(),
        })
    }

    /// The right-hand side of the accounting identity.
    pub fn accounted(&self) -> u64 {
        self.delivered_small
            + self.delivered_large
            + self.control
            + self.queued
            + self.overflow
            + self.dropped
    }

    /// `received = delivered_small + delivered_large + control + queued + overflow + dropped`.
    pub fn identity_holds(&self) -> bool {
        self.received == self.accounted()
    }

    /// Frames dropped for `reason`, 0 if none.
    pub fn drops_for(&self, reason: &str) -> u64 {
        self.drops
            .iter()
            .filter(|d| d.reason == reason)
            .map(|d| d.count)
            .sum()
    }
}

/// What a server runs with (schema `ServerInfo`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerInfo {
    pub version: String,
    pub epoch: u16,
    pub backend: String,
    pub small_threshold: u32,
    pub frame_size: u32,
    pub queue_limit: u32,
    pub default_frames: u32,
    pub default_small_slots: u32,
    pub shared_mode: bool,
}

impl ServerInfo {
    pub(crate) fn read(r: server_info::Reader<'_>) -> Result<Self> {
        Ok(ServerInfo {
            version: r.get_version()?.to_string()?,
            epoch: r.get_epoch(),
            backend: r.get_backend()?.to_string()?,
            small_threshold: r.get_small_threshold(),
            frame_size: r.get_frame_size(),
            queue_limit: r.get_queue_limit(),
            default_frames: r.get_default_frames(),
            default_small_slots: r.get_default_small_slots(),
            shared_mode: r.get_shared_mode(),
        })
    }
}
