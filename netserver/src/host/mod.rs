//! # host — the server as a host on the link (the control plane)
//!
//! A domain that owns the NIC must keep the control plane the kernel used to
//! keep, so that applications can be given the data path without being
//! given the network. This module is that control plane, as pure state
//! machines and wire formats: **no I/O, no clock, no `unsafe`**. Frames come
//! in as `&[u8]`, time as `now: Instant`, replies go out into a buffer the
//! caller provides (smoltcp's style). The data path and the RPC layer drive
//! it; nothing here sends or sleeps.
//!
//! ## What the host does
//!
//! - **Identity.** The host has a canonical MAC and an IPv4 address with a
//!   prefix ([`HostConfig`]). It answers ARP requests for the IP with the
//!   canonical MAC and ICMP echo requests to the IP (same identifier,
//!   sequence and data, fresh checksum, its own TTL) — [`Host::handle`].
//! - **Neighbours.** ARP senders are merged into an ARP cache with ageing
//!   (reachable → stale → expired), resolutions retransmit on a schedule and
//!   hold a bounded queue of frames waiting for the answer
//!   ([`neighbour`]).
//! - **Application MACs.** An application binding a port may get its own
//!   random, locally administered unicast MAC, probed for collisions on the
//!   link before use and then announced ([`mac`]). Frames to it dispatch by
//!   destination MAC alone, before any layer-3 parsing
//!   ([`Host::owner_of_frame`]). Plain ARP never hands these out: every
//!   other host keeps mapping the IP to the canonical MAC.
//! - **Extended ARP.** IP + port → the application's MAC, on the wire: an
//!   ARP packet with RFC 5494's experimental opcodes 24/25 and an 8-byte
//!   extension carrying protocol and port ([`xarp`], where the format is
//!   laid out byte by byte).
//! - **Transmit validation.** A client's frame leaves only from its bound
//!   MAC, IP, transport and port; the checked header is copied out of the
//!   client's memory once and sent from the copy ([`spoof`]).
//! - **Firewall.** Operator rules (drop or count, by filter expression) run
//!   on every received frame before dispatch, first matching drop wins, with
//!   per-rule atomic counters ([`firewall`]).
//!
//! ## Order on the receive path
//!
//! ```text
//! frame ─▶ firewall ─drop─▶ counted, gone
//!            │pass
//!            ├─ probes running? ─▶ Host::observe (claims are any frame from a candidate)
//!            ├─ Host::owner_of_frame(dst MAC) ─▶ that application   (fast path, counted apart)
//!            ├─ Host::is_control ─▶ Host::handle ─▶ reply into a server buffer, sent ("control")
//!            └─ filter classifier ─▶ clients, or the server's pool
//! ```
//!
//! ## Driving it
//!
//! After frames and whenever the `next` instant of [`HostEvent::Idle`]
//! passes, call [`Host::poll`] until it is idle: it hands out probe,
//! announcement and ARP-request frames to transmit, frames released by a
//! resolution, failed resolutions, and the outcome of MAC probes for
//! pending binds.
//!
//! ## Layers
//!
//! - [`wire`]: bytes ↔ types (Ethernet, ARP, IPv4 via `etherparse`, ICMP
//!   echo), read through a checked cursor, one `Copy` error reason each.
//! - [`xarp`]: the extended-ARP format.
//! - [`neighbour`], [`mac`]: the ARP cache; MAC choice, probe, bindings.
//! - [`spoof`], [`firewall`]: transmit validation; operator rules.
//! - [`Host`] (in `responder`): all of the above behind one state machine.

pub mod firewall;
pub mod mac;
pub mod neighbour;
mod responder;
pub mod spoof;
pub mod wire;
pub mod xarp;

pub use responder::{BindProgress, Host, HostBindError, HostConfig, HostEvent, Ignored, Verdict};
pub use wire::ipv4::Transport;
pub use wire::MacAddr;

#[cfg(test)]
mod tests;
