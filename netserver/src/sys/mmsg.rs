//! Batched UDP receive and send (`recvmmsg(2)` / `sendmmsg(2)`): the kernel
//! baseline of `netserver bench delivery`.
//!
//! [`MmsgBatch`] owns the `mmsghdr`/`iovec` arrays a call needs, so a batch
//! of up to [`MAX_BATCH`] datagrams costs one system call and no allocation;
//! the buffers are borrowed only for the duration of the call.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::ptr;

use super::libc_result;

/// Most datagrams one call moves.
pub const MAX_BATCH: usize = 1024;

/// Reusable header arrays for `recvmmsg`/`sendmmsg`.
pub struct MmsgBatch {
    hdrs: Vec<libc::mmsghdr>,
    iov: Vec<libc::iovec>,
}

impl std::fmt::Debug for MmsgBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmsgBatch")
            .field("capacity", &self.hdrs.len())
            .finish()
    }
}

impl MmsgBatch {
    /// Arrays for up to `n` datagrams per call (at most [`MAX_BATCH`]).
    pub fn new(n: usize) -> MmsgBatch {
        let n = n.clamp(1, MAX_BATCH);
        let iov = libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        };
        MmsgBatch {
            // SAFETY: `mmsghdr` is a plain C struct of integers and raw
            // pointers, for which all-zero bytes are a valid value (null
            // pointers, zero lengths).
            hdrs: vec![unsafe { std::mem::zeroed::<libc::mmsghdr>() }; n],
            iov: vec![iov; n],
        }
    }

    /// Datagrams per call.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Points header `i` at the one buffer `(base, len)`.
    fn set(&mut self, i: usize, base: *mut u8, len: usize) {
        self.iov[i] = libc::iovec {
            iov_base: base.cast(),
            iov_len: len,
        };
        let iov_ptr: *mut libc::iovec = &mut self.iov[i];
        let h = &mut self.hdrs[i];
        h.msg_hdr.msg_name = ptr::null_mut();
        h.msg_hdr.msg_namelen = 0;
        h.msg_hdr.msg_iov = iov_ptr;
        h.msg_hdr.msg_iovlen = 1;
        h.msg_hdr.msg_control = ptr::null_mut();
        h.msg_hdr.msg_controllen = 0;
        h.msg_hdr.msg_flags = 0;
        h.msg_len = 0;
    }

    /// Receives up to `min(bufs.len(), capacity)` datagrams on `sock` with
    /// one `recvmmsg` (`MSG_WAITFORONE`: blocks, subject to the socket's
    /// read timeout, until the first one, then takes what is queued).
    /// `lens[i]` receives datagram `i`'s length. `Ok(0)` on timeout.
    pub fn recv(
        &mut self,
        sock: &UdpSocket,
        bufs: &mut [Box<[u8]>],
        lens: &mut [usize],
    ) -> io::Result<usize> {
        let n = bufs.len().min(lens.len()).min(self.capacity());
        for (i, b) in bufs[..n].iter_mut().enumerate() {
            self.set(i, b.as_mut_ptr(), b.len());
        }
        // SAFETY: headers 0..n point at `iov[i]`, which point at `bufs[i]`:
        // all live and exclusively borrowed for the whole call, and the
        // kernel writes at most `iov_len` bytes into each. `msg_name` and
        // `msg_control` are null with zero lengths. `n` fits a u32 (≤ MAX_BATCH).
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                ptr::null_mut(),
            )
        };
        match libc_result(r) {
            Ok(got) => {
                let got = got as usize;
                for (l, h) in lens.iter_mut().zip(&self.hdrs[..got]) {
                    *l = h.msg_len as usize;
                }
                Ok(got)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends `msgs` (at most `capacity` of them) on the connected `sock`
    /// with one `sendmmsg`; returns how many the kernel took.
    pub fn send(&mut self, sock: &UdpSocket, msgs: &[&[u8]]) -> io::Result<usize> {
        let n = msgs.len().min(self.capacity());
        for (i, m) in msgs[..n].iter().enumerate() {
            // The kernel only reads through a send iovec.
            self.set(i, m.as_ptr().cast_mut(), m.len());
        }
        // SAFETY: headers 0..n point at `iov[i]`, which point at `msgs[i]`:
        // all live for the whole call, and `sendmmsg` only reads the payload
        // memory (the `*mut` in `iovec` is the C type, not a write). No
        // address: the socket is connected.
        let r = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                0,
            )
        };
        libc_result(r).map(|n| n as usize)
    }
}

/// Sets `SO_RCVBUF` (with `SO_RCVBUFFORCE` when permitted, which may exceed
/// `net.core.rmem_max`) to `bytes`.
pub fn set_recv_buffer(sock: &UdpSocket, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: `v` is a live c_int and the length passed is its size; the
        // kernel only reads it.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                ptr::from_ref(&v).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if libc_result(r).is_ok() {
            return Ok(());
        }
    }
    Err(io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_batch_goes_through_loopback() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        set_recv_buffer(&rx, 1 << 20).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let payloads: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
        let msgs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let mut batch = MmsgBatch::new(64);
        assert_eq!(batch.send(&tx, &msgs).unwrap(), 8);
        let mut bufs: Vec<Box<[u8]>> = (0..64).map(|_| vec![0u8; 64].into()).collect();
        let mut lens = vec![0usize; 64];
        let mut got = 0;
        while got < 8 {
            let n = batch.recv(&rx, &mut bufs[got..], &mut lens[got..]).unwrap();
            assert!(n > 0, "timed out");
            got += n;
        }
        for i in 0..8 {
            assert_eq!(&bufs[i][..lens[i]], &payloads[i][..]);
        }
    }
}
