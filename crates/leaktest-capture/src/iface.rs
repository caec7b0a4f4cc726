//! Interface identity and health, read with `SIOCGIF*` ioctls.
//!
//! A capture on an interface that was taken down, deleted, or deleted and
//! recreated under the same name (a new ifindex) no longer sees what leaves
//! the machine; [`IfaceMonitor`] notices each of these. The ioctls go through
//! a socket, so they answer for the calling thread's network namespace (the
//! `/sys/class/net` view would be that of whoever mounted sysfs).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// What the kernel says about an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceInfo {
    pub ifindex: u32,
    /// Administratively up (IFF_UP).
    pub admin_up: bool,
    /// Operationally up (IFF_RUNNING: carrier present, operstate up or unknown).
    pub running: bool,
    /// The hardware address, if it is an Ethernet interface.
    pub mac: Option<[u8; 6]>,
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn ifreq(iface: &str) -> Option<libc::ifreq> {
    let name = iface.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&0) {
        return None;
    }
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    Some(req)
}

fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn ioctl(fd: &OwnedFd, req: libc::c_ulong, ifr: &mut libc::ifreq) -> bool {
    // SAFETY: `ifr` is a valid ifreq for these SIOCGIF* requests.
    unsafe { libc::ioctl(fd.as_raw_fd(), req as _, ifr as *mut libc::ifreq) == 0 }
}

impl IfaceInfo {
    /// Reads the interface's state; `None` if it does not exist.
    pub fn read(iface: &str) -> Option<IfaceInfo> {
        let fd = ioctl_socket().ok()?;
        let mut r = ifreq(iface)?;
        if !ioctl(&fd, libc::SIOCGIFINDEX, &mut r) {
            return None;
        }
        // SAFETY: the kernel filled the ifindex member of the union.
        let ifindex = unsafe { r.ifr_ifru.ifru_ifindex } as u32;
        let mut r = ifreq(iface)?;
        if !ioctl(&fd, libc::SIOCGIFFLAGS, &mut r) {
            return None;
        }
        // SAFETY: the kernel filled the flags member of the union.
        let flags = unsafe { r.ifr_ifru.ifru_flags } as u16 as i32;
        let mut r = ifreq(iface)?;
        let mac = if ioctl(&fd, libc::SIOCGIFHWADDR, &mut r) {
            // SAFETY: the kernel filled the hwaddr member of the union.
            let sa = unsafe { r.ifr_ifru.ifru_hwaddr };
            (sa.sa_family == libc::ARPHRD_ETHER).then(|| {
                let mut m = [0u8; 6];
                for (d, s) in m.iter_mut().zip(sa.sa_data.iter()) {
                    *d = *s as u8;
                }
                m
            })
        } else {
            None
        };
        Some(IfaceInfo {
            ifindex,
            admin_up: flags & libc::IFF_UP != 0,
            running: flags & libc::IFF_RUNNING != 0,
            mac,
        })
    }

    /// Whether frames can leave: administratively and operationally up.
    pub fn is_up(&self) -> bool {
        self.admin_up && self.running
    }
}

/// The IPv4 and IPv6 addresses currently assigned to `iface` (empty if it
/// has none or does not exist). Read through netlink (`getifaddrs`), so for
/// the calling thread's network namespace.
pub fn addresses(iface: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if name.to_bytes() != iface.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr is non-null; its family says which sockaddr it is.
        let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
        if family == libc::AF_INET {
            // SAFETY: an AF_INET address is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))));
        } else if family == libc::AF_INET6 {
            // SAFETY: an AF_INET6 address is a sockaddr_in6.
            let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
            out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// Watches one interface for going down, going away or being replaced.
#[derive(Clone, Debug)]
pub struct IfaceMonitor {
    iface: String,
    ifindex: u32,
    was_ok: bool,
}

impl IfaceMonitor {
    /// Starts watching `iface` as it is now; `None` if it does not exist.
    pub fn new(iface: &str) -> Option<IfaceMonitor> {
        let info = IfaceInfo::read(iface)?;
        Some(IfaceMonitor {
            iface: iface.to_string(),
            ifindex: info.ifindex,
            was_ok: true,
        })
    }

    /// The ifindex the interface had when watching started.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Checks the interface now. Returns a problem the first time the
    /// interface is found down, gone or replaced (once per episode, so a
    /// long outage is reported once), `None` while it is fine.
    pub fn check(&mut self) -> Option<String> {
        let problem = match IfaceInfo::read(&self.iface) {
            None => Some(format!("interface {} disappeared", self.iface)),
            Some(i) if i.ifindex != self.ifindex => Some(format!(
                "interface {} was replaced (ifindex {} became {})",
                self.iface, self.ifindex, i.ifindex
            )),
            Some(i) if !i.is_up() => Some(format!(
                "interface {} went down ({})",
                self.iface,
                if i.admin_up {
                    "no carrier"
                } else {
                    "administratively down"
                }
            )),
            Some(_) => None,
        };
        let report = problem.is_some() && self.was_ok;
        self.was_ok = problem.is_none();
        if report {
            problem
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_macs() {
        assert_eq!(
            parse_mac("02:6c:6B:74:63:79\n"),
            Some([2, 0x6c, 0x6b, 0x74, 0x63, 0x79])
        );
        assert_eq!(parse_mac("02:6c:6b:74:63"), None);
        assert_eq!(parse_mac("02:6c:6b:74:63:79:00"), None);
        assert_eq!(parse_mac("zz:6c:6b:74:63:79"), None);
    }

    #[test]
    fn loopback_is_readable_and_missing_ones_are_not() {
        let lo = IfaceInfo::read("lo").expect("lo exists");
        assert_eq!(lo.ifindex, 1);
        assert!(IfaceInfo::read("lt-nonexist0").is_none());
        assert!(IfaceInfo::read("a-name-far-too-long-for-linux").is_none());
        assert!(IfaceInfo::read("").is_none());
        assert!(IfaceMonitor::new("lt-nonexist0").is_none());
    }

    #[test]
    fn loopback_addresses() {
        let a = addresses("lo");
        // lo may be down in a fresh namespace, but when it has addresses
        // they are the loopback ones.
        assert!(a.iter().all(|a| a.is_loopback()), "{a:?}");
        assert!(addresses("lt-nonexist0").is_empty());
    }

    #[test]
    fn up_means_admin_and_oper() {
        let mut i = IfaceInfo {
            ifindex: 3,
            admin_up: true,
            running: true,
            mac: None,
        };
        assert!(i.is_up());
        i.running = false;
        assert!(!i.is_up());
        i.running = true;
        assert!(i.is_up());
        i.admin_up = false;
        assert!(!i.is_up());
    }
}
