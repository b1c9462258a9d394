//! An `AF_PACKET`/`SOCK_RAW` socket bound to one interface: every frame the
//! interface receives, with its Ethernet header, as packet(7) describes.
//!
//! The socket is created with protocol 0 (it receives nothing) and only then
//! bound with `ETH_P_ALL` to the interface, so no frame of another interface
//! is ever queued on it. It is left in blocking mode so that io_uring can
//! park receives on it (see [`super::uring`]); the plain-syscall methods here
//! pass `MSG_DONTWAIT` and never block.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::net::{socket_with, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::{context, libc_result, netif};

/// `ETH_P_ALL` in network byte order, as `sll_protocol` wants it.
const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();

/// How to set up a [`PacketSocket`].
#[derive(Clone, Debug)]
pub struct PacketSocketConfig {
    /// Add a `PACKET_MR_PROMISC` membership: the interface receives frames
    /// for every destination MAC while the socket is open (the kernel undoes
    /// it when the socket closes). Default on: the server answers for
    /// per-application MACs.
    pub promiscuous: bool,
    /// Set `PACKET_IGNORE_OUTGOING`: frames this host transmits on the
    /// interface (ours included) are not looped back to the socket. Default on.
    pub ignore_outgoing: bool,
    /// `SO_RCVBUFFORCE` (falling back to `SO_RCVBUF`) in bytes: how much the
    /// kernel queues for us before it drops. `None` keeps the system default.
    pub recv_buffer: Option<usize>,
    /// Set `PACKET_QDISC_BYPASS`: transmitted frames go straight to the
    /// driver, skipping the queueing discipline. Default off.
    pub qdisc_bypass: bool,
}

impl Default for PacketSocketConfig {
    fn default() -> Self {
        Self {
            promiscuous: true,
            ignore_outgoing: true,
            recv_buffer: Some(8 << 20),
            qdisc_bypass: false,
        }
    }
}

/// Lengths returned by a receive: bytes written and the frame's real length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvLen {
    /// Bytes written into the buffer.
    pub copied: usize,
    /// The frame's full length on the wire (`MSG_TRUNC` semantics); larger
    /// than `copied` when the buffer was too small.
    pub frame_len: usize,
}

impl RecvLen {
    /// The buffer held the whole frame.
    pub fn is_complete(&self) -> bool {
        self.copied == self.frame_len
    }
}

/// Kernel counters of a packet socket (`PACKET_STATISTICS`). Reading them
/// resets them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketStats {
    /// Frames the kernel passed to the socket since the last read, including
    /// the dropped ones.
    pub packets: u32,
    /// Frames dropped because the socket's receive queue was full.
    pub drops: u32,
}

/// An `AF_PACKET` socket bound to one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
    iface: String,
}

fn setsockopt<T>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<T>())
        .map_err(|_| io::Error::other("socket option too large"))?;
    // SAFETY: `value` is a live, initialised `T` for the duration of the
    // call and `len` is its exact size; the kernel only reads it.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast::<libc::c_void>(),
            len,
        )
    };
    libc_result(ret).map(drop)
}

impl PacketSocket {
    /// Opens a packet socket on interface `iface` of the calling thread's
    /// network namespace. Needs `CAP_NET_RAW`.
    pub fn open(iface: &str, config: &PacketSocketConfig) -> io::Result<Self> {
        let fd = socket_with(
            AddressFamily::PACKET,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| {
            let e = io::Error::from(e);
            if e.kind() == io::ErrorKind::PermissionDenied {
                io::Error::new(
                    e.kind(),
                    "opening an AF_PACKET socket needs CAP_NET_RAW: run as root \
                     or grant the capability (setcap cap_net_raw+ep)",
                )
            } else {
                context(e, "opening an AF_PACKET socket")
            }
        })?;
        let ifindex = netif::index(iface)?;
        let ifindex_c = libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::other(format!("ifindex {ifindex} out of range")))?;

        // SAFETY: sockaddr_ll is a plain C struct; all-zero is valid.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_protocol = ETH_P_ALL_BE;
        addr.sll_ifindex = ifindex_c;
        let addr_len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_ll>())
            .map_err(|_| io::Error::other("sockaddr_ll too large"))?;
        // SAFETY: `addr` is a fully initialised sockaddr_ll that outlives the
        // call, and `addr_len` is its size; bind only reads it.
        let ret = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
                addr_len,
            )
        };
        libc_result(ret).map_err(|e| context(e, format_args!("binding to interface {iface:?}")))?;

        if config.promiscuous {
            // SAFETY: packet_mreq is a plain C struct; all-zero is valid.
            let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
            mreq.mr_ifindex = ifindex_c;
            mreq.mr_type = libc::PACKET_MR_PROMISC as libc::c_ushort;
            setsockopt(
                fd.as_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                &mreq,
            )
            .map_err(|e| context(e, format_args!("making {iface:?} promiscuous")))?;
        }
        // The kernel strips the outer VLAN tag into metadata (in software on
        // veth, in hardware with rx-vlan-offload); PACKET_AUXDATA hands it
        // back so the ring can reinsert it, as libpcap does.
        setsockopt(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_AUXDATA, &1i32)
            .map_err(|e| context(e, "setting PACKET_AUXDATA"))?;
        if config.ignore_outgoing {
            setsockopt(
                fd.as_fd(),
                libc::SOL_PACKET,
                libc::PACKET_IGNORE_OUTGOING,
                &1i32,
            )
            .map_err(|e| context(e, "setting PACKET_IGNORE_OUTGOING"))?;
        }
        if config.qdisc_bypass {
            setsockopt(
                fd.as_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                &1i32,
            )
            .map_err(|e| context(e, "setting PACKET_QDISC_BYPASS"))?;
        }
        if let Some(bytes) = config.recv_buffer {
            let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
            if setsockopt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &bytes).is_err() {
                setsockopt(fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, &bytes)
                    .map_err(|e| context(e, "setting SO_RCVBUF"))?;
            }
        }
        tracing::debug!(iface, ifindex, ?config, "AF_PACKET socket open");
        Ok(Self {
            fd,
            ifindex,
            iface: iface.to_owned(),
        })
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The interface name the socket was opened on.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Receives (or, with `peek`, looks at without dequeuing) the next frame
    /// into `buf`, without blocking: `WouldBlock` when none is queued.
    pub fn recv(&self, buf: &mut [u8], peek: bool) -> io::Result<RecvLen> {
        let mut flags = RecvFlags::DONTWAIT | RecvFlags::TRUNC;
        if peek {
            flags |= RecvFlags::PEEK;
        }
        let (copied, frame_len) = rustix::net::recv(&self.fd, &mut *buf, flags)?;
        Ok(RecvLen { copied, frame_len })
    }

    /// Sends one complete Ethernet frame out of the interface without
    /// blocking: `WouldBlock` when the transmit queue is full.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        Ok(rustix::net::send(&self.fd, frame, SendFlags::DONTWAIT)?)
    }

    /// Waits until a frame is queued or `timeout` passes; true if readable.
    pub fn wait_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let ts = timeout.map(|t| rustix::event::Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        loop {
            match poll(&mut fds, ts.as_ref()) {
                Ok(n) => return Ok(n > 0),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads and resets the kernel's counters for this socket.
    pub fn statistics(&self) -> io::Result<PacketStats> {
        // SAFETY: tpacket_stats is two u32; all-zero is valid.
        let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
        let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::tpacket_stats>())
            .map_err(|_| io::Error::other("tpacket_stats too large"))?;
        // SAFETY: `st` and `len` are live for the call; the kernel writes at
        // most `len` bytes into `st` and updates `len`.
        let ret = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast::<libc::c_void>(),
                &mut len,
            )
        };
        libc_result(ret)?;
        Ok(PacketStats {
            packets: st.tp_packets,
            drops: st.tp_drops,
        })
    }
}

/// `SO_MEMINFO` (include/uapi/asm-generic/socket.h; libc does not export
/// it). The same number on every architecture we build for.
const SO_MEMINFO: libc::c_int = 55;
/// Entries of the `SO_MEMINFO` array (`SK_MEMINFO_VARS`); the kernel copies
/// at most as many as we make room for.
const SK_MEMINFO_VARS: usize = 9;

impl PacketSocket {
    /// Bytes of receive memory the socket holds: the frames queued and not
    /// yet received, with the kernel's per-buffer overhead
    /// (`SK_MEMINFO_RMEM_ALLOC` of `getsockopt(SO_MEMINFO)`). One system call;
    /// the zero-copy receive asks only when it suspects a backlog.
    pub fn queued_bytes(&self) -> io::Result<u32> {
        let mut info = [0u32; SK_MEMINFO_VARS];
        let mut len = libc::socklen_t::try_from(std::mem::size_of_val(&info))
            .map_err(|_| io::Error::other("SO_MEMINFO array too large"))?;
        // SAFETY: `info` and `len` are live for the call; the kernel writes
        // at most `len` bytes into `info` and updates `len`.
        let ret = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_MEMINFO,
                info.as_mut_ptr().cast::<libc::c_void>(),
                &mut len,
            )
        };
        libc_result(ret)?;
        Ok(info[libc::SK_MEMINFO_RMEM_ALLOC as usize])
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_ll_protocol_is_big_endian() {
        assert_eq!(ETH_P_ALL_BE.to_ne_bytes(), [0x00, 0x03]);
    }

    #[test]
    fn missing_interface_is_reported() {
        match PacketSocket::open("nosuchif0", &PacketSocketConfig::default()) {
            Ok(_) => panic!("opened a socket on a missing interface"),
            // Unprivileged: the socket itself is refused, with a hint.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                assert!(e.to_string().contains("CAP_NET_RAW"), "{e}");
            }
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}"),
        }
    }
}
