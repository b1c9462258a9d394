//! The netserver public API as Cap'n Proto interfaces.
//!
//! `schema/netserver.capnp` is the single source of truth: every interface and
//! field is documented there. The Rust code in `netserver_capnp.rs` is
//! generated from it by `regen.sh` and checked in, so building needs no
//! `capnp` binary; a test fails when the two drift apart.

#[allow(
    clippy::all,
    clippy::pedantic,
    unused_qualifications,
    missing_docs,
    unsafe_code,
    clippy::undocumented_unsafe_blocks
)]
#[rustfmt::skip]
pub mod netserver_capnp;

pub use netserver_capnp::*;

/// Socket path suffix of the owner-only operator socket, beside the client socket.
pub const OPERATOR_SOCKET_SUFFIX: &str = ".operator";

/// Where `netserver serve` listens and `nsctl` connects when no `--socket` is
/// given and `NETSERVER_SOCKET` is unset.
pub const DEFAULT_SOCKET_PATH: &str = "/tmp/netserver.sock";

/// The socket path from `NETSERVER_SOCKET`, or [`DEFAULT_SOCKET_PATH`].
pub fn default_socket_path() -> std::path::PathBuf {
    std::env::var_os("NETSERVER_SOCKET")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| DEFAULT_SOCKET_PATH.into())
}
