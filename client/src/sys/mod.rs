//! The client's one piece of raw system interface: an `AF_PACKET` socket
//! for `nsctl resolve`, which asks over the wire (extended ARP) from any
//! host, netserver or not.
//!
//! # Why there is `unsafe` here
//!
//! The client crate is `#![deny(unsafe_code)]` and uses `rustix` for system
//! calls. rustix 1.1 opens packet sockets, finds interface indices and
//! sends and receives on them safely, but has no `sockaddr_ll` type, and
//! implementing its `SocketAddrArg` trait for one is itself `unsafe`. So
//! this module binds the socket to the interface with one `libc::bind`
//! call (one `unsafe` block with its `// SAFETY:` comment); everything
//! else goes through rustix. Putting it in the `exchange` crate's syscall
//! layer instead would have tied a shared-memory crate to a diagnostic
//! tool's socket; depending on `netserver` (which has a packet socket) would
//! pull the whole server into the client.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};

/// An `AF_PACKET` raw socket bound to one interface and to ARP frames.
#[derive(Debug)]
pub struct ArpSocket {
    fd: OwnedFd,
    mac: [u8; 6],
}

impl ArpSocket {
    /// Opens a socket on `iface` receiving ARP frames. Needs `CAP_NET_RAW`.
    pub fn open(iface: &str) -> io::Result<ArpSocket> {
        let protocol = rustix::net::eth::ARP;
        let fd = rustix::net::socket(AddressFamily::PACKET, SocketType::RAW, Some(protocol))
            .map_err(|e| {
                ctx(
                    e.into(),
                    "opening an AF_PACKET socket (needs CAP_NET_RAW: run as root)",
                )
            })?;
        let ifindex = rustix::net::netdevice::name_to_index(&fd, iface)
            .map_err(|e| ctx(e.into(), &format!("finding interface {iface:?}")))?;
        // SAFETY: `sockaddr_ll` is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
        addr.sll_ifindex = i32::try_from(ifindex).unwrap_or(i32::MAX);
        // SAFETY: `fd` is an open socket we own; `addr` is a valid
        // `sockaddr_ll` that lives across the call, and the length passed is
        // its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(ctx(
                io::Error::last_os_error(),
                &format!("binding to {iface:?}"),
            ));
        }
        let mac = read_mac(iface)?;
        Ok(ArpSocket { fd, mac })
    }

    /// The interface's MAC.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Sends one frame out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        rustix::net::send(&self.fd, frame, SendFlags::empty())?;
        Ok(())
    }

    /// Receives frames until `accept` takes one or `deadline` passes.
    pub fn recv_until<T>(
        &self,
        deadline: Instant,
        mut accept: impl FnMut(&[u8]) -> Option<T>,
    ) -> io::Result<Option<T>> {
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut fds = [rustix::event::PollFd::new(
                &self.fd,
                rustix::event::PollFlags::IN,
            )];
            let timeout = rustix::event::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            match rustix::net::recv(&self.fd, &mut buf[..], RecvFlags::DONTWAIT) {
                Ok((n, _)) => {
                    if let Some(t) = accept(&buf[..n.min(buf.len())]) {
                        return Ok(Some(t));
                    }
                }
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A short pause, for retransmits.
pub fn pause(d: Duration) {
    std::thread::sleep(d);
}

fn read_mac(iface: &str) -> io::Result<[u8; 6]> {
    let path = format!("/sys/class/net/{iface}/address");
    let text = std::fs::read_to_string(&path).map_err(|e| ctx(e, &format!("reading {path}")))?;
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for o in &mut mac {
        *o = parts
            .next()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(|| io::Error::other(format!("{path}: not a MAC: {text:?}")))?;
    }
    Ok(mac)
}

fn ctx(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
