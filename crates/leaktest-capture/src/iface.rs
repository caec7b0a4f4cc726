//! Interface identity and health, read with `SIOCGIF*` ioctls.
//!
//! A capture on an interface that was taken down, deleted, or deleted and
//! recreated under the same name (a new ifindex) no longer sees what leaves
//! the machine; [`IfaceMonitor`] notices each of these. It follows a
//! re-created interface (same name and hardware address) only when the
//! kernel announced the old one's deletion, not its move to another
//! namespace (from where it could send unseen): the route netlink
//! `RTM_DELLINK` messages say which. The ioctls go through
//! a socket, so they answer for the calling thread's network namespace (the
//! `/sys/class/net` view would be that of whoever mounted sysfs).

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
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

/// A socket for the `SIOCGIF*` ioctls. Any family serves (the kernel falls
/// back to `dev_ioctl` for requests a family does not handle: net/socket.c
/// `sock_do_ioctl`); a route netlink socket is used because it is the one
/// family the watcher's sandbox may still create (it sends nothing).
fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
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
    networks(iface).into_iter().map(|n| n.addr()).collect()
}

/// Prefix length of a netmask (its leading one bits).
fn prefix_of(mask: &[u8]) -> u8 {
    let mut n = 0u8;
    for b in mask {
        n += b.leading_ones() as u8;
        if *b != 0xff {
            break;
        }
    }
    n
}

/// The addresses of `iface` with their prefix lengths (the on-link
/// networks), as [`addresses`] reads them.
pub fn networks(iface: &str) -> Vec<IpNet> {
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
        let mask = ifa.ifa_netmask;
        if family == libc::AF_INET {
            // SAFETY: an AF_INET address (and its netmask) is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            let addr = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            let prefix = if mask.is_null() {
                32
            } else {
                // SAFETY: as above, for the netmask.
                let m = unsafe { &*(mask as *const libc::sockaddr_in) };
                prefix_of(&m.sin_addr.s_addr.to_ne_bytes())
            };
            if let Ok(n) = Ipv4Net::new(addr, prefix.min(32)) {
                out.push(IpNet::V4(n));
            }
        } else if family == libc::AF_INET6 {
            // SAFETY: an AF_INET6 address (and its netmask) is a sockaddr_in6.
            let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
            let addr = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let prefix = if mask.is_null() {
                128
            } else {
                // SAFETY: as above, for the netmask.
                let m = unsafe { &*(mask as *const libc::sockaddr_in6) };
                prefix_of(&m.sin6_addr.s6_addr)
            };
            if let Ok(n) = Ipv6Net::new(addr, prefix.min(128)) {
                out.push(IpNet::V6(n));
            }
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// What the routing table says is reachable on one interface without a
/// router: the prefixes of its connected routes (which may be wider than
/// its addresses' prefixes) and the next hops of routes through it (a
/// gateway may lie outside every prefix, as with `onlink` routes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkRoutes {
    pub prefixes: Vec<IpNet>,
    pub next_hops: Vec<IpAddr>,
}

/// Reads [`LinkRoutes`] of `iface` from `/proc/net/route` and
/// `/proc/net/ipv6_route` (the calling thread's network namespace: procfs's
/// `net` directory follows the reader's). Missing files give empty lists.
pub fn link_routes(iface: &str) -> LinkRoutes {
    let v4 = std::fs::read_to_string("/proc/self/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/self/net/ipv6_route").unwrap_or_default();
    parse_routes(iface, &v4, &v6)
}

/// RTF_GATEWAY (linux/route.h).
const RTF_GATEWAY: u32 = 0x2;
/// RTF_LOCAL (linux/ipv6_route.h): a route to an address of this host.
const RTF_LOCAL: u32 = 0x8000_0000;

/// Parses the two procfs route tables (see [`link_routes`]).
pub fn parse_routes(iface: &str, v4: &str, v6: &str) -> LinkRoutes {
    let mut out = LinkRoutes::default();
    // Iface Destination Gateway Flags RefCnt Use Metric Mask ...: addresses
    // are the kernel's in-memory u32 (network order) printed in hex.
    for line in v4.lines().skip(1) {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 8 || w[0] != iface {
            continue;
        }
        let hex = |s: &str| {
            u32::from_str_radix(s, 16)
                .ok()
                .map(|v| Ipv4Addr::from(v.swap_bytes()))
        };
        let (Some(dst), Some(gw), Ok(flags), Some(mask)) = (
            hex(w[1]),
            hex(w[2]),
            u32::from_str_radix(w[3], 16),
            hex(w[7]),
        ) else {
            continue;
        };
        if flags & RTF_GATEWAY != 0 {
            out.next_hops.push(IpAddr::V4(gw));
        } else if let Ok(n) = Ipv4Net::with_netmask(dst, mask) {
            out.prefixes.push(IpNet::V4(n.trunc()));
        }
    }
    // dst dst_len src src_len next_hop metric refcnt use flags iface
    for line in v6.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 10 || w[9] != iface {
            continue;
        }
        let addr = |s: &str| u128::from_str_radix(s, 16).ok().map(Ipv6Addr::from);
        let (Some(dst), Ok(len), Some(hop), Ok(flags)) = (
            addr(w[0]),
            u8::from_str_radix(w[1], 16),
            addr(w[4]),
            u32::from_str_radix(w[8], 16),
        ) else {
            continue;
        };
        if flags & RTF_LOCAL != 0 || dst.is_multicast() {
            continue;
        }
        if flags & RTF_GATEWAY != 0 {
            out.next_hops.push(IpAddr::V6(hop));
        } else if let Ok(n) = Ipv6Net::new(dst, len) {
            out.prefixes.push(IpNet::V6(n.trunc()));
        }
    }
    out.next_hops.sort();
    out.next_hops.dedup();
    out
}

/// What [`IfaceMonitor::check`] found changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfaceChange {
    /// Replaced by an interface of the same name that the capture may not
    /// follow (another hardware address, or the old one left the namespace
    /// or its deletion was not seen), or it came back after leaving the
    /// namespace: what leaves the machine may no longer pass the capture.
    /// A problem; the monitor reports nothing after it.
    Lost(String),
    /// The same interface went down (administratively, or lost its
    /// carrier): nothing can leave it until it is up again.
    Down(String),
    /// The same interface is up again.
    Up,
    /// The interface disappeared from the namespace (deleted or moved out;
    /// which one is known once it is back or not). Nothing can leave it
    /// meanwhile.
    Gone(String),
    /// After it was deleted (the kernel's `RTM_DELLINK` for it carried no
    /// `IFLA_NEW_NETNSID`: a deletion, not a move to another namespace),
    /// an interface of the same name and hardware address appeared: a
    /// re-created tunnel, a re-plugged NIC, a re-created veth. The capture
    /// must be bound to `ifindex` to see it ([`crate::LiveCapture::rebind`]).
    /// It may still be down (an [`IfaceChange::Up`] follows).
    Back { ifindex: u32, what: String },
}

/// Link deletions and moves, as the kernel announces them on the route
/// netlink group `RTMGRP_LINK`: an `RTM_DELLINK` for an interface moved to
/// another namespace carries `IFLA_NEW_NETNSID`, one for a deleted
/// interface does not (Linux `net/core/dev.c` `__dev_change_net_namespace`
/// and `unregister_netdevice_many_notify`; measured on this kernel: `ip
/// link del` gives none, `ip link set … netns` gives it).
#[derive(Debug)]
struct LinkEvents {
    fd: Option<OwnedFd>,
    /// A message was lost (the socket's buffer overflowed, or it could not
    /// be opened): no deletion can be proven any more.
    lossy: bool,
    /// ifindex → moved (true) or deleted (false), as announced.
    ended: std::collections::HashMap<u32, bool>,
}

impl LinkEvents {
    fn open() -> LinkEvents {
        let fd = (|| {
            // SAFETY: plain socket(2); the result is checked.
            let raw = unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    libc::NETLINK_ROUTE,
                )
            };
            if raw < 0 {
                return None;
            }
            // SAFETY: fresh descriptor owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: sockaddr_nl is plain data.
            let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            sa.nl_family = libc::AF_NETLINK as u16;
            sa.nl_groups = libc::RTMGRP_LINK as u32;
            // SAFETY: a valid sockaddr_nl of its size.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            (r == 0).then_some(fd)
        })();
        LinkEvents {
            lossy: fd.is_none(),
            fd,
            ended: Default::default(),
        }
    }

    /// Reads what the kernel announced since the last call.
    fn poll(&mut self) {
        let Some(fd) = &self.fd else { return };
        let mut buf = vec![0u8; 1 << 16];
        // Bounded: what arrives while this reads waits for the next call.
        for _ in 0..1024 {
            // SAFETY: reads into a buffer of its length.
            let n = unsafe {
                libc::recv(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::ENOBUFS) => {
                        self.lossy = true;
                        continue;
                    }
                    _ => return,
                }
            }
            if n == 0 {
                return;
            }
            for (ifindex, moved) in parse_dellinks(&buf[..n as usize]) {
                self.ended.insert(ifindex, moved);
            }
        }
    }

    /// Whether `ifindex` was deleted (announced, not moved, nothing lost).
    fn deleted(&mut self, ifindex: u32) -> bool {
        self.poll();
        !self.lossy && self.ended.get(&ifindex) == Some(&false)
    }
}

/// The `RTM_DELLINK` messages in a route netlink datagram: (ifindex, moved
/// to another namespace, or attributes that do not parse: not a proven
/// deletion). Layout: `nlmsghdr` (16 bytes: length, type, …),
/// `ifinfomsg` (16 bytes, ifindex at offset 4), then 4-byte aligned
/// `rtattr`s (length, type). Malformed input ends the parse.
pub fn parse_dellinks(mut b: &[u8]) -> Vec<(u32, bool)> {
    let u16_at = |b: &[u8], o: usize| u16::from_ne_bytes([b[o], b[o + 1]]);
    let mut out = Vec::new();
    while b.len() >= 16 {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len < 16 || len > b.len() {
            break;
        }
        let msg = &b[..len];
        if u16_at(msg, 4) == libc::RTM_DELLINK && len >= 32 {
            let ifindex = i32::from_ne_bytes([msg[20], msg[21], msg[22], msg[23]]);
            let mut moved = false;
            let mut a = &msg[32..];
            while a.len() >= 4 {
                let alen = usize::from(u16_at(a, 0));
                if alen < 4 || alen > a.len() {
                    // Malformed: not a proven deletion.
                    moved = true;
                    break;
                }
                if u16_at(a, 2) & 0x3fff == libc::IFLA_NEW_NETNSID {
                    moved = true;
                }
                a = &a[((alen + 3) & !3).min(a.len())..];
            }
            if ifindex > 0 {
                out.push((ifindex as u32, moved));
            }
        }
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    out
}

/// Watches one interface for going down, going away, coming back, or
/// being replaced.
#[derive(Debug)]
pub struct IfaceMonitor {
    iface: String,
    /// The ifindex followed now (changes when a deleted interface is back).
    ifindex: u32,
    /// The hardware address at the start: a re-created interface is
    /// followed only with the same one.
    mac: Option<[u8; 6]>,
    lost: bool,
    down: bool,
    gone: bool,
    links: LinkEvents,
}

impl IfaceMonitor {
    /// Starts watching `iface` as it is now; `None` if it does not exist.
    pub fn new(iface: &str) -> Option<IfaceMonitor> {
        // Listening before the first look: no deletion after it is missed.
        let links = LinkEvents::open();
        let info = IfaceInfo::read(iface)?;
        Some(IfaceMonitor {
            iface: iface.to_string(),
            ifindex: info.ifindex,
            mac: info.mac,
            lost: false,
            down: !info.is_up(),
            gone: false,
            links,
        })
    }

    /// The ifindex followed now: the interface's at the start, or the
    /// re-created one's after [`IfaceChange::Back`].
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Whether nothing can leave it: down or gone at the last check.
    pub fn is_down(&self) -> bool {
        self.down || self.gone
    }

    /// Whether it was gone (not in the namespace) at the last check.
    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// Checks the interface now. Returns each change once: gone, back
    /// (re-created), down, up again; lost once, and then nothing more.
    pub fn check(&mut self) -> Option<IfaceChange> {
        if self.lost {
            return None;
        }
        let Some(info) = IfaceInfo::read(&self.iface) else {
            self.links.poll();
            if self.gone {
                return None;
            }
            self.gone = true;
            return Some(IfaceChange::Gone(format!(
                "interface {} disappeared",
                self.iface
            )));
        };
        if info.ifindex != self.ifindex || self.gone {
            let old = self.ifindex;
            let deleted = self.links.deleted(old);
            if info.mac != self.mac || !deleted {
                self.lost = true;
                // There, but not followed: no longer "gone".
                self.gone = false;
                self.down = !info.is_up();
                let why = if info.mac != self.mac {
                    "by an interface of another hardware address".to_string()
                } else if self.links.ended.get(&old) == Some(&true) {
                    "after the old one was moved to another network namespace".to_string()
                } else {
                    "and the old one's deletion was not seen".to_string()
                };
                return Some(IfaceChange::Lost(format!(
                    "interface {} was replaced {why} (ifindex {old}, now {}): the capture does not follow it",
                    self.iface, info.ifindex
                )));
            }
            self.ifindex = info.ifindex;
            self.gone = false;
            self.down = !info.is_up();
            return Some(IfaceChange::Back {
                ifindex: info.ifindex,
                what: format!(
                    "interface {} was re-created (ifindex {}, was {old}; the same hardware address): the capture follows it",
                    self.iface, info.ifindex
                ),
            });
        }
        match (info.is_up(), self.down) {
            (false, false) => {
                self.down = true;
                Some(IfaceChange::Down(format!(
                    "interface {} went down ({})",
                    self.iface,
                    if info.admin_up {
                        "no carrier"
                    } else {
                        "administratively down"
                    }
                )))
            }
            (true, true) => {
                self.down = false;
                Some(IfaceChange::Up)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `RTM_*LINK` message: nlmsghdr, ifinfomsg, then attributes.
    fn link_msg(ty: u16, ifindex: i32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut m = vec![0u8; 32];
        m[4..6].copy_from_slice(&ty.to_ne_bytes());
        m[20..24].copy_from_slice(&ifindex.to_ne_bytes());
        for (t, v) in attrs {
            let len = 4 + v.len() as u16;
            m.extend_from_slice(&len.to_ne_bytes());
            m.extend_from_slice(&t.to_ne_bytes());
            m.extend_from_slice(v);
            while m.len() % 4 != 0 {
                m.push(0);
            }
        }
        let len = m.len() as u32;
        m[0..4].copy_from_slice(&len.to_ne_bytes());
        m
    }

    #[test]
    fn dellinks_say_deleted_or_moved() {
        // IFLA_IFNAME "gw1" (3), then for the move IFLA_NEW_NETNSID (45).
        let deleted = link_msg(libc::RTM_DELLINK, 7, &[(3, b"gw1\0")]);
        let moved = link_msg(
            libc::RTM_DELLINK,
            8,
            &[(3, b"gw1\0"), (libc::IFLA_NEW_NETNSID, &5i32.to_ne_bytes())],
        );
        let new = link_msg(libc::RTM_NEWLINK, 9, &[(3, b"gw1\0")]);
        let mut dgram = deleted.clone();
        dgram.extend(&new);
        dgram.extend(&moved);
        assert_eq!(parse_dellinks(&dgram), vec![(7, false), (8, true)]);
        // The nested flag bit (NLA_F_NESTED) does not hide the type.
        let flagged = link_msg(
            libc::RTM_DELLINK,
            8,
            &[(libc::IFLA_NEW_NETNSID | 0x8000, &5i32.to_ne_bytes())],
        );
        assert_eq!(parse_dellinks(&flagged), vec![(8, true)]);
        // Cut short or malformed: what parsed before stands, nothing after.
        assert_eq!(parse_dellinks(&dgram[..dgram.len() - 3]), vec![(7, false)]);
        let mut bad = deleted.clone();
        bad[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(parse_dellinks(&bad), vec![]);
        assert_eq!(parse_dellinks(&[]), vec![]);
        // A bad attribute length ends that message's attributes: not a
        // proven deletion; the next message is read.
        let mut odd = link_msg(libc::RTM_DELLINK, 4, &[(3, b"gw1\0")]);
        odd[32..34].copy_from_slice(&2u16.to_ne_bytes());
        odd.extend(&moved);
        assert_eq!(parse_dellinks(&odd), vec![(4, true), (8, true)]);
    }

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
    fn route_tables() {
        let v4 =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                  eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                  eth1\t0098980A\t00000000\t0001\t0\t0\t0\t00C0FFFF\t0\t0\t0\n";
        let v6 = "20010db8000100000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n\
                  20010db8000100000000000000000002 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000003 00000000 80200001     eth0\n\
                  ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000003 00000000 00000001     eth0\n";
        let r = parse_routes("eth0", v4, v6);
        assert_eq!(
            r.prefixes,
            vec![
                "192.0.2.0/24".parse().unwrap(),
                "2001:db8:1::/64".parse().unwrap()
            ]
        );
        assert_eq!(
            r.next_hops,
            vec![
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
        assert_eq!(
            parse_routes("eth1", v4, v6).prefixes,
            vec!["10.152.128.0/18".parse().unwrap()]
        );
        assert_eq!(parse_routes("eth9", v4, v6), LinkRoutes::default());
    }

    #[test]
    fn prefixes_of_netmasks() {
        assert_eq!(prefix_of(&[255, 255, 255, 0]), 24);
        assert_eq!(prefix_of(&[255, 255, 192, 0]), 18);
        assert_eq!(prefix_of(&[0; 4]), 0);
        assert_eq!(prefix_of(&[0xff; 16]), 128);
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
