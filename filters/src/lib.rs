//! # filters — the server domain's demultiplexer
//!
//! Untrusted clients hand the server pcap-filter expressions (`udp dst port 53`,
//! `vlan and tcp[13] & 2 != 0`, …). This crate turns each one into a
//! [`Program`]: a disjunction of **atom** sequences in the style of DPF
//! (Engler & Kaashoek, SIGCOMM '96), and merges the programs of every installed
//! filter into one immutable [`Classifier`] trie whose `classify` cost does not
//! grow with the number of filters.
//!
//! Layers, each a module named for what it is:
//!
//! - [`atom`]: the unit of a program — a masked comparison of one packet field
//!   (`(offset, width, mask, value)`), DPF's shift for variable-length headers
//!   ([`atom::Base`]), length and general relational tests. Evaluation never
//!   reads out of bounds, never loops unboundedly and never panics.
//! - [`program`]: a compiled filter, a small DNF of atom sequences.
//! - `parse` / `compile`: the pcap-filter front end (expression → AST → program).
//! - `trie` / [`Classifier`]: all installed programs merged, most specific match wins.
//!
//! No I/O and no `unsafe` live here.

pub mod atom;
pub mod classifier;
pub mod compile;
#[doc(hidden)]
pub mod fuzzing;
pub mod parse;
pub mod program;
pub mod trie;
#[doc(hidden)]
pub mod workload;

pub use atom::{ArithOp, Atom, Base, Expr, Extent, Field, Reach, RelOp, Width};
pub use classifier::{Classifier, FilterSet, InstallError, Limits};
pub use compile::{compile, CompileError};
pub use program::Program;

/// A classification result: the tag of the filter that claimed a frame.
/// `0` ([`NOT_INTERESTED`]) means no installed filter wants it.
pub type Tag = u64;

/// The tag meaning "no filter claimed this frame".
pub const NOT_INTERESTED: Tag = 0;
