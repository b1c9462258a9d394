//! Moving the calling thread into a network namespace.
//!
//! Sockets and interface lookups use the namespace of the thread that creates
//! them, and a socket stays in its namespace for life, so a thread that
//! entered a namespace can open a packet socket there and hand it to any
//! other thread. Used by the real-mode tests (namespaces made with
//! `ip netns add`) and by `--netns`-style options.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::{context, libc_result};

/// Moves the calling thread into the network namespace at `path` (for
/// example `/run/netns/NAME` or `/proc/PID/ns/net`). Needs `CAP_SYS_ADMIN`.
///
/// Only this thread moves; spawn a dedicated thread for it when the rest of
/// the process must stay where it is.
pub fn enter_path(path: &Path) -> io::Result<()> {
    let file = File::open(path).map_err(|e| {
        context(
            e,
            format_args!("opening network namespace {}", path.display()),
        )
    })?;
    // SAFETY: setns only reads the descriptor, which `file` keeps open for
    // the duration of the call.
    let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    libc_result(ret).map(drop).map_err(|e| {
        context(
            e,
            format_args!("entering network namespace {}", path.display()),
        )
    })
}

/// Moves the calling thread into the namespace `ip netns add NAME` made.
pub fn enter(name: &str) -> io::Result<()> {
    if name.is_empty() || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid network namespace name {name:?}"),
        ));
    }
    enter_path(&Path::new("/run/netns").join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_paths_as_names() {
        assert_eq!(
            enter("../x").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn missing_namespace_is_not_found() {
        let err = enter("netserver-no-such-ns").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }
}
