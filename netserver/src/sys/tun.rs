//! TAP devices: `/dev/net/tun` with `TUNSETIFF` and `IFF_TAP | IFF_NO_PI`.
//!
//! Each `read` returns one whole Ethernet frame the host sent into the
//! device, each `write` injects one frame as if received from a wire. A TAP
//! has no peek: the frame has to be read before it can be classified, so its
//! backend reads into a server frame and copies once.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::{context, libc_result, netif};

/// An open TAP interface. Closing it removes a non-persistent interface.
#[derive(Debug)]
pub struct TapDevice {
    file: File,
    name: String,
}

impl TapDevice {
    /// Creates TAP interface `name`, or attaches to it when it exists (a
    /// persistent TAP made with `ip tuntap add mode tap`). An empty name lets
    /// the kernel pick `tapN`. Needs `CAP_NET_ADMIN` (or ownership of a
    /// persistent device). The descriptor is non-blocking.
    pub fn open(name: &str) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => io::Error::new(
                    e.kind(),
                    "/dev/net/tun is missing: load the tun module (modprobe tun) \
                     or, in a container, pass the device in",
                ),
                _ => context(e, "opening /dev/net/tun"),
            })?;
        let mut req = if name.is_empty() {
            // SAFETY: ifreq is a plain C struct; all-zero is valid.
            unsafe { std::mem::zeroed::<libc::ifreq>() }
        } else {
            netif::ifreq(name)?
        };
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes the ifreq we pass by exclusive
        // reference, which outlives the call.
        let ret = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                libc::TUNSETIFF,
                &mut req as *mut libc::ifreq,
            )
        };
        libc_result(ret).map_err(|e| match e.raw_os_error() {
            Some(libc::EPERM) => io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "creating or attaching TAP {name:?} needs CAP_NET_ADMIN, or a \
                     persistent device owned by this user (ip tuntap add {name} mode tap user $USER)"
                ),
            ),
            Some(libc::EBUSY) => io::Error::new(
                e.kind(),
                format!("TAP {name:?} is already attached to another process"),
            ),
            Some(libc::EINVAL) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} exists and is not a TAP interface"),
            ),
            _ => context(e, format_args!("TUNSETIFF {name:?}")),
        })?;
        let actual: Vec<u8> = req
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        let name = String::from_utf8_lossy(&actual).into_owned();
        tracing::debug!(%name, "TAP device open");
        Ok(Self { file, name })
    }

    /// The interface name (the kernel's choice when opened with "").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one frame; `WouldBlock` when none is waiting. A frame longer
    /// than `buf` is truncated (the kernel drops the rest).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one frame into the interface (the host receives it).
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        (&self.file).write(frame)
    }

    /// Waits until a frame is readable or `timeout` passes; true if readable.
    pub fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let ts = timeout.map(|t| Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        let mut fds = [PollFd::new(&self.file, PollFlags::IN)];
        loop {
            match poll(&mut fds, ts.as_ref()) {
                Ok(n) => return Ok(n > 0),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for TapDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
