//! The pcap-filter front end: expression text to a syntax tree.
//!
//! - [`lexer`]: text to tokens with byte spans (libpcap's scanner rules).
//! - [`parser`](parse): tokens to an [`ast::Node`] (libpcap's grammar,
//!   including qualifier inheritance and equal `and`/`or` precedence).
//! - [`names`]: keywords, named constants, protocol and service names.
//!
//! Lowering the tree to atoms is [`crate::compile`]'s job.

pub mod ast;
pub mod lexer;
pub mod names;
mod parser;

pub use parser::{parse, MAX_EXPRESSION_BYTES, MAX_NESTING};
