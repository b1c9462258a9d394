//! The syscall layer: everything in netserver that talks to the kernel through
//! raw pointers lives here, behind safe types.
//!
//! | module | what it wraps |
//! |---|---|
//! | [`netif`] | interface index, MAC address, MTU, flags (`SIOCGIF*` ioctls) |
//! | [`af_packet`] | an `AF_PACKET`/`SOCK_RAW` socket bound to one interface |
//! | [`uring`] | an `io_uring` driving a packet socket: peek, receive-into, batched receive, send |
//! | [`tun`] | a TAP device from `/dev/net/tun` |
//! | [`netns`] | moving the calling thread into a named network namespace |
//! | [`dma`] | the generator backend's one write of a frame into a client's region frame (a NIC's DMA) |
//! | [`mmsg`] | batched UDP receive and send (`recvmmsg`/`sendmmsg`), the kernel baseline of `bench delivery` |
//! | [`mem`] | anonymous page-aligned mappings the kernel may write into |
//! | [`cpu`] | pinning a thread to a CPU (`sched_setaffinity`) |
//! | [`remap`] | mapping memfd pages in and out of a reserved window (`MAP_FIXED`), the page-flip baseline of `bench exchange` |
//!
//! Everything above this module is safe Rust. The rules, from `STYLE.md`:
//! every `unsafe` block carries a `// SAFETY:` comment, every `unsafe fn` a
//! `# Safety` section, and no buffer-lifetime contract leaks to callers: an
//! operation that lends memory to the kernel does not return until the kernel
//! has given it back (or the memory is owned by the type that issued it and
//! is kept alive until the completion arrives). Raw kernel results are turned
//! into [`std::io::Error`] here, at the boundary.

// The syscall layer is the one place that must call into the kernel with raw
// pointers (ioctls, sockaddr_ll, io_uring submission entries and provided
// buffer rings); the workspace denies `unsafe_code` everywhere else.
#![allow(unsafe_code)]

pub mod af_packet;
pub mod cpu;
pub mod dma;
pub mod mem;
pub mod mmsg;
pub mod netif;
pub mod netns;
pub mod remap;
pub mod tun;
pub mod uring;

use std::io;

/// Turns a negative errno result from the kernel (io_uring CQE convention)
/// into an [`io::Error`]; non-negative results pass through.
pub(crate) fn cqe_result(res: i32) -> io::Result<u32> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res.unsigned_abs())
    }
}

/// Converts a libc-style return value (`-1` and `errno`) into a result.
pub(crate) fn libc_result(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Adds what was being done to an OS error, keeping its kind.
pub(crate) fn context(err: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}
