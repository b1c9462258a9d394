//! # netclient — the client library of netserver
//!
//! A netserver owns a network interface and hands each client exactly the
//! frames its filters claim. This crate is the client side:
//!
//! - [`connect`] opens the server's client socket and returns a [`Client`];
//!   [`Client::install`] compiles and installs a pcap-filter expression and
//!   returns a [`Fetch`], the capability through which its packets arrive.
//! - [`Fetch::fetch`] is Frantz's call: a small frame is copied into the
//!   caller's small buffer, a large one arrives in a page frame that becomes
//!   the client's while a page the client offers becomes the server's.
//!   [`Fetch::fetch_batch`] and [`Fetch::packets`] (a `Stream`) give owned
//!   [`Packet`]s instead.
//! - [`Operator::connect`] opens the owner-only `PATH.operator` socket:
//!   inject frames into the emulated NIC, list filters, global stats,
//!   shutdown, monitor-mode installs.
//!
//! ## Runtime
//!
//! Cap'n Proto RPC is `!Send`. Every async function here must run on a
//! **current-thread tokio runtime inside a [`tokio::task::LocalSet`]**
//! (connecting spawns the connection's driver with `spawn_local`).
//! [`block_on`] builds exactly that for programs that have no runtime of
//! their own.
//!
//! ## Modes
//!
//! In **emulated mode** the bytes of each frame travel in the RPC reply and
//! the library keeps the client's frame space itself: one page buffer per
//! frame, with the ownership table the server also keeps (`frames` module).
//!
//! In **shared mode** ([`Fetch::attach_shared`], or
//! [`InstallOptions::shared`]) the client's frame space is a `memfd` region
//! it creates and the server maps (the `exchange` crate): the server writes
//! small packets into slots and large ones into frames the client posted,
//! and announces them on the rx ring. The same [`Fetch`] calls work, with
//! the same ownership rules (the server starts holding the lower half of
//! the frames; a large packet swaps one page each way): [`Fetch::fetch`]
//! takes a waiting packet with no system call and [`Fetch::fetch_wait`]
//! sleeps on the region's eventfd. [`Fetch::fetch_batch`] and
//! [`Fetch::packets`] copy each packet out into an owned [`Packet`] (the
//! frame goes straight back to the server); [`Fetch::with_next`] lends the
//! packet's bytes in place instead, with no copy.
//!
//! ## Errors
//!
//! [`Error`] is split by blame: the server refused (its message passed
//! through, e.g. a syntax error with its position), a stale tag from before
//! a restart, the connection closed, an invalid argument caught locally, or
//! a protocol violation by the server.

#![deny(unsafe_code)]

mod bind;
pub mod capture;
mod connection;
pub mod decode;
mod error;
mod fetch;
mod frames;
mod shared;
mod stats;
pub mod sys;
mod transmit;
pub mod xarp;

pub use bind::{
    format_mac, BindOptions, Binding, BindingInfo, HostStats, RuleAction, RuleStats, Transport,
};
pub use connection::{
    connect, operator_socket_path, Client, InjectFrame, InstallOptions, Operator,
};
pub use error::{Error, Result};
pub use fetch::{Delivery, Fetch, Fetched, Geometry, Meta, Packet};
pub use frames::FrameCounts;
pub use stats::{DropCount, FilterStats, GlobalStats, Mode, ServerInfo};
pub use transmit::{TxDone, TxStatus, TX_REFUSAL_REASONS};

/// The socket path used when none is given: `$NETSERVER_SOCKET`, else
/// `/tmp/netserver.sock`.
pub use netserver_schema::default_socket_path;

/// Runs `future` to completion on a new current-thread tokio runtime inside a
/// `LocalSet`, the setting every async function of this crate needs.
pub fn block_on<F: std::future::Future>(future: F) -> std::io::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(tokio::task::LocalSet::new().block_on(&runtime, future))
}
