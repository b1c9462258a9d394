//! Lowering of a parsed pcap-filter expression to a [`Program`] with libpcap
//! 1.10's semantics on Ethernet frames.
//!
//! The pipeline: [`crate::parse`] builds the syntax tree; [`lower`] turns it
//! into a boolean [`formula`] over atoms, in text order (`vlan` shifts what
//! follows it); [`dnf`] expands that into the program's alternatives,
//! pushing `not` down with the ordered De Morgan law and emitting each
//! alternative in canonical layer order (link guards, network-protocol
//! guard, fragment guard, field tests).
//!
//! Module map: [`ethernet`] (offsets and guards), [`address`] (IPv4/IPv6
//! values), [`arith`] (loads and arithmetic), [`normalize`] (comparisons to
//! mergeable `Eq`/`Ne` atoms), [`error`].

mod address;
mod arith;
pub mod dnf;
mod error;
mod ethernet;
mod formula;
mod lower;
mod normalize;

pub use dnf::{MAX_ALTERNATIVES, MAX_ATOMS_PER_ALTERNATIVE};
pub use error::CompileError;

use crate::program::Program;

/// Settings a compilation may depend on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// The netmask of the capture network, used only by `ip broadcast`
    /// (libpcap's `pcap_compile` netmask argument). 0, the default, is what
    /// tcpdump passes when reading a file: the broadcast host part is then
    /// the whole address.
    pub netmask: u32,
}

impl Options {
    /// Options with the given netmask.
    pub const fn with_netmask(netmask: u32) -> Options {
        Options { netmask }
    }
}

/// Compiles a pcap-filter expression. The empty expression matches
/// everything.
pub fn compile(expression: &str) -> Result<Program, CompileError> {
    compile_with(expression, &Options::default())
}

/// Compiles a pcap-filter expression with explicit [`Options`].
pub fn compile_with(expression: &str, options: &Options) -> Result<Program, CompileError> {
    let Some(tree) = crate::parse::parse(expression)? else {
        return Ok(Program::accept_all());
    };
    let formula = lower::Lowerer::new(options).node(&tree)?;
    let alternatives = dnf::expand(&formula)?;
    Ok(Program::new(alternatives))
}

#[cfg(test)]
mod tests;
