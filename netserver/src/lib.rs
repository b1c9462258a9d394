//! # netserver — the network server domain
//!
//! One process owns a network interface, classifies every received frame
//! with the filters clients installed, and hands each frame to the client
//! whose filter claimed it, through a Cap'n Proto **fetch capability**
//! bound to the filter's 64-bit tag. This crate is that process.
//!
//! Layers, one job per module:
//!
//! - [`backend`]: where frames come from (`emulated`, `pcap:FILE`; later
//!   `af_packet`, `tap`), driven by the data-path thread.
//! - [`datapath`]: the thread that receives, classifies (the `filters`
//!   crate's immutable classifier, swapped in per batch) and places frames.
//!   It never waits on the control plane.
//! - [`pool`]: preallocated server buffers moved between threads through
//!   lock-free queues; [`place`]: where a filter's bytes go (its frame space,
//!   the server's overflow pool) — the one module where emulated and shared
//!   mode differ.
//! - [`filter`]: an installed filter's queue, overflow and counters;
//!   [`exchange`]: Frantz's fetch — the frame-ownership table and state
//!   machine; [`stats`]: counters and the accounting identity; [`tag`]:
//!   tags with a per-start epoch.
//! - [`control`]: the control plane's state; [`rpc`]: the capabilities;
//!   [`serve`]: sockets and the runtime; [`demo`]: `netserver demo`.
//!
//! Threads: the control plane (tokio-uring runtime, all RPC), the data path,
//! and one reader thread for `pcap:` replay.

pub mod attach;
pub mod backend;
pub mod bench;
pub mod config;
pub mod control;
pub mod datapath;
pub mod demo;
pub mod exchange;
pub mod filter;
pub mod host;
pub mod hostpath;
pub mod place;
pub mod pool;
pub mod rpc;
pub mod serve;
pub mod stats;
pub mod sys;
pub mod tag;
#[doc(hidden)]
pub mod testing;
pub mod txring;

pub use config::Config;
pub use serve::{serve, serve_with, ServeError};
