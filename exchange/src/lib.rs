//! Exchange regions: memfd-backed shared memory between the server and one
//! client, with Van Jacobson channels (SPSC rings) and page-frame ownership.
//!
//! This is the shared-memory and syscall layer of netserver; the server
//! (`netserver`) and the client library (`netclient`) both build their shared
//! mode on it. It is the one crate that opts out of the workspace's
//! `deny(unsafe_code)`: mapping memory and forming views of it cannot be done
//! without `unsafe`, and keeping all of it here lets every other crate stay
//! safe Rust. Every `unsafe` block carries a `// SAFETY:` comment; almost all
//! of them are in [`region`] (mmap/munmap and the atomic view of the mapping).
//!
//! # Layers
//!
//! * [`layout`] — the byte layout (pure computation): header, rings, small
//!   slots, frames. The crate README repeats it byte by byte for clients in
//!   other languages.
//! * [`region`] — create/seal/map the memfd (client), verify/map it (server).
//! * [`ring`] — the four SPSC rings with their memory-ordering protocol and
//!   need-wakeup flag.
//! * [`frames`] — the server's [`FrameTable`]: who holds each frame.
//! * [`eventfd`] — the doorbells.
//! * [`pass`] — sending the memfd and doorbells with `SCM_RIGHTS`.
//! * [`ServerRegion`] / [`ClientRegion`] — the two sides' safe APIs.
//! * [`spec`] — the wire specification, byte by byte (also `README.md`).
//!
//! # A round trip
//!
//! ```
//! use std::os::fd::AsFd;
//! use std::time::Duration;
//! use exchange::{ClientRegion, Geometry, Received, RxMeta, ServerConfig, ServerRegion, pass};
//!
//! // Client: create the region, give the server every frame, send the fds.
//! let (mut client, mut frames) = ClientRegion::create(Geometry::default())?;
//! client.fill(&mut frames)?;
//! let (a, b) = std::os::unix::net::UnixStream::pair()?;
//! client.send_to(a.as_fd(), &[1; pass::TOKEN_LEN])?;
//!
//! // Server: receive, verify, map; take the free frames; place a packet.
//! let req = pass::recv_region(b.as_fd(), pass::TOKEN_LEN, Duration::from_secs(1))?;
//! let mut server = ServerRegion::attach(req.fds, &ServerConfig::default())?;
//! server.refill()?;
//! let frame = server.take_frame()?;
//! server.write_frame(&frame, 0, &[0xab; 1500])?;
//! server.deliver_frame(frame, 0, 1500, &RxMeta { tag: 7, ..Default::default() })?;
//! server.publish()?;
//!
//! // Client: fetch it (no system call: it is already there).
//! let mut small = [0u8; 128];
//! match client.fetch(&mut small, None, Some(Duration::ZERO))? {
//!     Some(Received::Large { frame, len, info, .. }) => {
//!         assert_eq!((len, info.tag), (1500, 7));
//!         assert_eq!(client.frame(&frame)[..len], [0xab; 1500]);
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![allow(unsafe_code)] // The shared-memory layer; see the crate docs.
#![warn(missing_docs)]

pub mod client;
pub mod error;
pub mod eventfd;
pub mod frames;
#[doc(hidden)]
pub mod fuzzing;
pub mod layout;
pub mod pass;
pub mod region;
pub mod ring;
pub mod server;

/// The wire specification (the crate's `README.md`): layout byte by byte,
/// ring protocol, ordering, ownership, and the Rust API in brief.
#[doc = include_str!("../README.md")]
pub mod spec {}

pub use client::{
    ClientError, ClientRegion, Completed, Frame, Packet, Received, RxInfo, TxRequest,
};
pub use error::{
    DescriptorFault, PassError, PlaceError, RegionError, Violation, ViolationCounts, ViolationKind,
};
pub use eventfd::EventFd;
pub use frames::{FrameState, FrameTable};
pub use layout::{Geometry, GeometryError, Layout, Limits, RingId};
pub use server::{
    AttachError, RawFrame, RxMeta, ServerConfig, ServerFrame, ServerRegion, TxPacket,
};

#[cfg(test)]
mod tests {
    fn assert_send<T: Send>() {}

    #[test]
    fn handles_are_send() {
        assert_send::<crate::ServerRegion>();
        assert_send::<crate::ClientRegion>();
        assert_send::<crate::RawFrame>();
    }
}
