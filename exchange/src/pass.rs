//! Passing a region's descriptors over a Unix stream socket (`SCM_RIGHTS`).
//!
//! Cap'n Proto RPC cannot carry descriptors, so the client opens a side Unix
//! connection and sends **one message**: the data bytes are exactly the
//! one-time token `Fetch.attachRegion()` returned, and one `SCM_RIGHTS`
//! control message carries three descriptors in this order:
//!
//! 1. the region memfd (sealed, see [`crate::region`]),
//! 2. the client→server eventfd (the server sleeps on it: fill and tx rings),
//! 3. the server→client eventfd (the client sleeps on it: rx and completion).
//!
//! The descriptors ride on the first byte of the token. The server reads with
//! a deadline, never more than `token_len + 1` bytes, and refuses a token of
//! the wrong length, a wrong number of descriptors, or truncated control data.
//! Received descriptors are `O_CLOEXEC` and closed on every error path.

use std::io::IoSlice;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::eventfd::wait_readable;
use crate::PassError;

/// Length of the attach token the server hands out and expects back.
pub const TOKEN_LEN: usize = 16;

/// The three descriptors of an attach message.
#[derive(Debug)]
pub struct RegionFds {
    /// The region memfd.
    pub memfd: OwnedFd,
    /// Client→server doorbell (the server waits on it).
    pub client_to_server: OwnedFd,
    /// Server→client doorbell (the client waits on it).
    pub server_to_client: OwnedFd,
}

/// What the server received: the token (to look up which `Fetch` asked for
/// this attach) and the descriptors (unverified: pass them to
/// [`crate::ServerRegion::attach`]).
#[derive(Debug)]
pub struct AttachRequest {
    /// The token bytes, exactly the expected length.
    pub token: Vec<u8>,
    /// The descriptors.
    pub fds: RegionFds,
}

fn io(op: &'static str) -> impl Fn(Errno) -> PassError {
    move |e| PassError::Io {
        op,
        source: e.into(),
    }
}

/// Sends `token` with the three descriptors (client side). Blocks until the
/// bytes are queued in the socket.
pub fn send_region(
    socket: BorrowedFd<'_>,
    token: &[u8],
    memfd: BorrowedFd<'_>,
    client_to_server: BorrowedFd<'_>,
    server_to_client: BorrowedFd<'_>,
) -> Result<(), PassError> {
    if token.is_empty() {
        return Err(PassError::TokenLength {
            found: 0,
            expected: TOKEN_LEN,
        });
    }
    let fds = [memfd, client_to_server, server_to_client];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let pushed = control.push(SendAncillaryMessage::ScmRights(&fds));
    debug_assert!(pushed, "cmsg space for 3 fds");
    let mut sent = loop {
        match rustix::net::sendmsg(
            socket,
            &[IoSlice::new(token)],
            &mut control,
            SendFlags::NOSIGNAL,
        ) {
            Err(Errno::INTR) => continue,
            r => break r.map_err(io("sendmsg"))?,
        }
    };
    while sent < token.len() {
        match rustix::net::send(socket, &token[sent..], SendFlags::NOSIGNAL) {
            Ok(n) => sent += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(io("send")(e)),
        }
    }
    Ok(())
}

/// Receives a token of exactly `token_len` bytes and three descriptors
/// (server side), giving up after `timeout`. The socket may be blocking or
/// not: every read is `MSG_DONTWAIT` after a `poll` bounded by the deadline.
pub fn recv_region(
    socket: BorrowedFd<'_>,
    token_len: usize,
    timeout: Duration,
) -> Result<AttachRequest, PassError> {
    let deadline = Instant::now() + timeout;
    let mut token = vec![0u8; token_len + 1];
    let mut got = 0usize;
    let mut fds: Vec<OwnedFd> = Vec::with_capacity(3);
    // Room for one more descriptor than expected, so "too many" is seen as a
    // count rather than only as truncation.
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
    while got < token_len {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero()
            || !wait_readable(socket, Some(left)).map_err(|e| PassError::Io {
                op: "poll",
                source: e,
            })?
        {
            return Err(PassError::Timeout);
        }
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(&mut token[got..])];
        let msg = match rustix::net::recvmsg(
            socket,
            &mut iov,
            &mut control,
            RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(Errno::AGAIN | Errno::INTR) => continue,
            Err(e) => return Err(io("recvmsg")(e)),
        };
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = m {
                fds.extend(received);
            }
        }
        if msg.flags.contains(ReturnFlags::CTRUNC) {
            return Err(PassError::Truncated);
        }
        if msg.bytes == 0 {
            return Err(PassError::Closed);
        }
        got += msg.bytes;
    }
    if got != token_len {
        return Err(PassError::TokenLength {
            found: got,
            expected: token_len,
        });
    }
    if fds.len() != 3 {
        return Err(PassError::FdCount { found: fds.len() });
    }
    token.truncate(token_len);
    let mut it = fds.into_iter();
    let (Some(memfd), Some(client_to_server), Some(server_to_client)) =
        (it.next(), it.next(), it.next())
    else {
        return Err(PassError::FdCount { found: 0 });
    };
    Ok(AttachRequest {
        token,
        fds: RegionFds {
            memfd,
            client_to_server,
            server_to_client,
        },
    })
}

/// `AsFd` convenience for [`send_region`].
pub fn send_region_fds(
    socket: &impl AsFd,
    token: &[u8],
    memfd: &impl AsFd,
    client_to_server: &impl AsFd,
    server_to_client: &impl AsFd,
) -> Result<(), PassError> {
    send_region(
        socket.as_fd(),
        token,
        memfd.as_fd(),
        client_to_server.as_fd(),
        server_to_client.as_fd(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventFd;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn round_trip() {
        let (a, b) = UnixStream::pair().unwrap();
        let (e1, e2) = (EventFd::new().unwrap(), EventFd::new().unwrap());
        let m = EventFd::new().unwrap(); // any fd will do for the memfd slot here
        send_region_fds(&a, &[7u8; TOKEN_LEN], &m, &e1, &e2).unwrap();
        let r = recv_region(b.as_fd(), TOKEN_LEN, Duration::from_secs(1)).unwrap();
        assert_eq!(r.token, vec![7u8; TOKEN_LEN]);
        let s2c = EventFd::from_fd(r.fds.server_to_client).unwrap();
        s2c.notify().unwrap();
        assert_eq!(e2.drain().unwrap(), 1);
    }

    #[test]
    fn silent_peer_times_out() {
        let (_a, b) = UnixStream::pair().unwrap();
        let t = Instant::now();
        assert!(matches!(
            recv_region(b.as_fd(), TOKEN_LEN, Duration::from_millis(50)),
            Err(PassError::Timeout)
        ));
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn short_token_then_close() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&[1, 2, 3]).unwrap();
        drop(a);
        assert!(matches!(
            recv_region(b.as_fd(), TOKEN_LEN, Duration::from_secs(1)),
            Err(PassError::Closed)
        ));
    }

    #[test]
    fn long_token_refused() {
        let (a, b) = UnixStream::pair().unwrap();
        let e = EventFd::new().unwrap();
        send_region_fds(&a, &[1u8; TOKEN_LEN + 5], &e, &e, &e).unwrap();
        assert!(matches!(
            recv_region(b.as_fd(), TOKEN_LEN, Duration::from_secs(1)),
            Err(PassError::TokenLength {
                found: 17,
                expected: TOKEN_LEN
            })
        ));
    }

    #[test]
    fn no_fds_refused() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&[0u8; TOKEN_LEN]).unwrap();
        assert!(matches!(
            recv_region(b.as_fd(), TOKEN_LEN, Duration::from_secs(1)),
            Err(PassError::FdCount { found: 0 })
        ));
    }
}
