//! Interface lookups in the calling thread's network namespace: index, MAC
//! address, MTU and flags, through the `SIOCGIF*` ioctls of netdevice(7).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::net::{socket_with, AddressFamily, SocketFlags, SocketType};

use super::{context, libc_result};

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl std::fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// What [`info`] reports about an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// The name it was looked up by.
    pub name: String,
    /// Kernel interface index (`sll_ifindex`).
    pub index: u32,
    /// Hardware address (all zero for interfaces without one).
    pub mac: MacAddr,
    /// Link MTU (the largest L3 payload; a frame adds 14 bytes of header,
    /// 18 with one VLAN tag).
    pub mtu: u32,
    /// `IFF_UP` is set.
    pub up: bool,
    /// `IFF_PROMISC` is set (by an explicit `ip link set promisc on`, not by
    /// packet-socket memberships, which the kernel counts separately).
    pub promiscuous: bool,
}

/// An `ifreq` for `name`, checked for length and NUL bytes.
pub(crate) fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid interface name {name:?}: names are 1 to {} bytes without NUL",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    // SAFETY: ifreq is a plain C struct (arrays, integers, a union of those
    // and one pointer); all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// A throwaway datagram socket for interface ioctls (netdevice(7): any
/// socket works; the namespace is the one the socket was created in).
fn ioctl_socket() -> io::Result<OwnedFd> {
    socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .or_else(|_| {
        socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )
    })
    .map_err(|e| context(e.into(), "creating a socket for interface ioctls"))
}

/// Runs one `SIOCGIF*` ioctl on `req`.
fn ioctl_get(fd: &impl AsFd, request: libc::Ioctl, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: every SIOCGIF* request used here reads `ifr_name` and writes
    // within the `ifreq` we pass by exclusive reference, which outlives the
    // call.
    let ret = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), request, req as *mut libc::ifreq) };
    libc_result(ret).map(drop)
}

fn not_found(name: &str, err: io::Error) -> io::Error {
    if err.raw_os_error() == Some(libc::ENODEV) {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no network interface named {name:?} in this network namespace \
                 (list them with `ip link`)"
            ),
        )
    } else {
        context(err, format_args!("looking up interface {name:?}"))
    }
}

/// Index of interface `name`.
pub fn index(name: &str) -> io::Result<u32> {
    let fd = ioctl_socket()?;
    let mut req = ifreq(name)?;
    ioctl_get(&fd, libc::SIOCGIFINDEX, &mut req).map_err(|e| not_found(name, e))?;
    // SAFETY: SIOCGIFINDEX succeeded, so the kernel wrote `ifru_ifindex`.
    let idx = unsafe { req.ifr_ifru.ifru_ifindex };
    u32::try_from(idx).map_err(|_| io::Error::other(format!("negative ifindex {idx}")))
}

/// Index, MAC, MTU and flags of interface `name`.
pub fn info(name: &str) -> io::Result<InterfaceInfo> {
    let fd = ioctl_socket()?;
    let mut req = ifreq(name)?;
    ioctl_get(&fd, libc::SIOCGIFINDEX, &mut req).map_err(|e| not_found(name, e))?;
    // SAFETY: SIOCGIFINDEX succeeded, so the kernel wrote `ifru_ifindex`.
    let index = unsafe { req.ifr_ifru.ifru_ifindex };

    let mut req = ifreq(name)?;
    ioctl_get(&fd, libc::SIOCGIFHWADDR, &mut req).map_err(|e| not_found(name, e))?;
    // SAFETY: SIOCGIFHWADDR succeeded, so the kernel wrote `ifru_hwaddr`.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, &src) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *dst = src as u8;
    }

    let mut req = ifreq(name)?;
    ioctl_get(&fd, libc::SIOCGIFMTU, &mut req).map_err(|e| not_found(name, e))?;
    // SAFETY: SIOCGIFMTU succeeded, so the kernel wrote `ifru_mtu`.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };

    let mut req = ifreq(name)?;
    ioctl_get(&fd, libc::SIOCGIFFLAGS, &mut req).map_err(|e| not_found(name, e))?;
    // SAFETY: SIOCGIFFLAGS succeeded, so the kernel wrote `ifru_flags`.
    let flags = i32::from(unsafe { req.ifr_ifru.ifru_flags });

    Ok(InterfaceInfo {
        name: name.to_owned(),
        index: u32::try_from(index).unwrap_or(0),
        mac: MacAddr(mac),
        mtu: u32::try_from(mtu).unwrap_or(0),
        up: flags & libc::IFF_UP != 0,
        promiscuous: flags & libc::IFF_PROMISC != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found() {
        let lo = info("lo").expect("every namespace has lo");
        assert!(lo.index > 0);
        assert_eq!(lo.mac, MacAddr::default());
        assert_eq!(index("lo").unwrap(), lo.index);
    }

    #[test]
    fn missing_interface_is_not_found_with_a_hint() {
        let err = index("nosuchif0").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("ip link"), "{err}");
    }

    #[test]
    fn bad_names_are_rejected() {
        assert_eq!(ifreq("").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert!(ifreq("0123456789abcdef").is_err());
        assert!(ifreq("a\0b").is_err());
        assert!(ifreq("0123456789abcde").is_ok());
    }

    #[test]
    fn mac_formats() {
        let m = MacAddr([0x02, 0, 0x5e, 0x10, 0xab, 0xff]);
        assert_eq!(m.to_string(), "02:00:5e:10:ab:ff");
    }
}
