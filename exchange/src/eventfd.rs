//! A nonblocking `eventfd`, closed on drop: the doorbell an idle ring consumer
//! sleeps on.
//!
//! One eventfd per direction: the client waits on the server→client one (rx
//! and completion rings), the server on the client→server one (fill and tx).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::event::{EventfdFlags, PollFd, PollFlags};
use rustix::fs::OFlags;
use rustix::io::Errno;

/// An eventfd counter.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A new eventfd (counter 0, `EFD_CLOEXEC | EFD_NONBLOCK`).
    pub fn new() -> io::Result<EventFd> {
        let fd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(EventFd { fd })
    }

    /// Wraps a received descriptor after checking it is an eventfd (through
    /// `/proc/self/fd`), and makes it nonblocking so a hostile sender cannot
    /// make `notify` or `drain` block.
    pub fn from_fd(fd: OwnedFd) -> Result<EventFd, crate::PassError> {
        let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let target =
            rustix::fs::readlink(link.as_str(), Vec::new()).map_err(|e| crate::PassError::Io {
                op: "readlink(/proc/self/fd)",
                source: e.into(),
            })?;
        if target.as_bytes() != b"anon_inode:[eventfd]" {
            return Err(crate::PassError::NotEventFd { which: "eventfd" });
        }
        let flags = rustix::fs::fcntl_getfl(&fd).map_err(|e| crate::PassError::Io {
            op: "fcntl(F_GETFL)",
            source: e.into(),
        })?;
        if !flags.contains(OFlags::NONBLOCK) {
            rustix::fs::fcntl_setfl(&fd, flags | OFlags::NONBLOCK).map_err(|e| {
                crate::PassError::Io {
                    op: "fcntl(F_SETFL)",
                    source: e.into(),
                }
            })?;
        }
        Ok(EventFd { fd })
    }

    /// Adds 1 to the counter, waking a poller. A saturated counter
    /// (`EAGAIN`) already wakes it, so that is not an error.
    pub fn notify(&self) -> io::Result<()> {
        match rustix::io::write(&self.fd, &1u64.to_ne_bytes()) {
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads and resets the counter; 0 if it was 0.
    pub fn drain(&self) -> io::Result<u64> {
        let mut buf = [0u8; 8];
        match rustix::io::read(&self.fd, &mut buf) {
            Ok(8) => Ok(u64::from_ne_bytes(buf)),
            Ok(_) => Ok(0),
            Err(Errno::AGAIN) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until the counter is nonzero or `timeout` passes (`None` =
    /// forever). Returns whether it is readable. Does not drain.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        wait_readable(self.fd.as_fd(), timeout)
    }

    /// Gives up the descriptor.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

/// Polls one descriptor for readability. `EINTR` is retried with the same
/// timeout (close enough for a doorbell).
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let ts = match timeout {
        None => None,
        Some(d) => Some(
            rustix::event::Timespec::try_from(d)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        ),
    };
    loop {
        let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_wait_drain() {
        let e = EventFd::new().unwrap();
        assert!(!e.wait(Some(Duration::from_millis(1))).unwrap());
        assert_eq!(e.drain().unwrap(), 0);
        e.notify().unwrap();
        e.notify().unwrap();
        assert!(e.wait(Some(Duration::ZERO)).unwrap());
        assert_eq!(e.drain().unwrap(), 2);
        assert!(!e.wait(Some(Duration::ZERO)).unwrap());
    }

    #[test]
    fn from_fd_checks_type() {
        let e = EventFd::new().unwrap();
        let e = EventFd::from_fd(e.into_fd()).unwrap();
        e.notify().unwrap();
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(matches!(
            EventFd::from_fd(OwnedFd::from(a)),
            Err(crate::PassError::NotEventFd { .. })
        ));
    }
}
