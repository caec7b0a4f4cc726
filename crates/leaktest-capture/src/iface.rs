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

/// Link changes, as the kernel announces them on the route netlink group
/// `RTMGRP_LINK`: an `RTM_DELLINK` for an interface moved to another
/// namespace carries `IFLA_NEW_NETNSID`, one for a deleted interface does
/// not (Linux `net/core/dev.c` `__dev_change_net_namespace` and
/// `unregister_netdevice_many_notify`, since Linux 4.15; measured on this
/// kernel: `ip link del` gives none, `ip link set … netns` gives it); every
/// `RTM_NEWLINK` carries the interface's flags (`IFF_UP`).
#[derive(Debug)]
struct LinkEvents {
    fd: Option<OwnedFd>,
    /// Why no deletion can be proven (any more): the socket could not be
    /// opened, the kernel is older than 4.15, or a message was lost (the
    /// socket's buffer overflowed).
    unproven: Option<String>,
    /// Per ifindex, what was announced for it.
    seen: std::collections::HashMap<u32, LinkSeen>,
}

/// What the kernel announced for one ifindex.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct LinkSeen {
    /// Deleted under the watched name (and never moved).
    deleted_as: Option<String>,
    /// Moved to another namespace, or a deletion that did not parse: never
    /// a proven deletion again (sticky).
    moved: bool,
    /// Announced up (`IFF_UP`) at least once.
    up: bool,
}

/// One `RTM_NEWLINK` or `RTM_DELLINK` message, as [`parse_links`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkMessage {
    pub ifindex: u32,
    /// `RTM_DELLINK` (else `RTM_NEWLINK`).
    pub deleted: bool,
    /// `IFLA_NEW_NETNSID` present (a move), or attributes that do not
    /// parse: not a proven deletion.
    pub moved: bool,
    /// `IFLA_IFNAME`.
    pub name: Option<String>,
    /// `ifi_flags`.
    pub flags: u32,
}

/// Whether this kernel marks moves (`IFLA_NEW_NETNSID`, Linux 4.15).
fn kernel_marks_moves() -> bool {
    // SAFETY: utsname is plain data filled by uname(2).
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return false;
    }
    let release: String = u
        .release
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8 as char)
        .collect();
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|x| x.parse::<u32>().ok());
    matches!((it.next(), it.next()), (Some(a), Some(b)) if (a, b) >= (4, 15))
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
            // Room for bursts of link messages (a busy host).
            let rcvbuf: libc::c_int = 1 << 20;
            // SAFETY: an int option of its size on a socket this owns.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&rcvbuf as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            (r == 0).then_some(fd)
        })();
        let unproven = match (&fd, kernel_marks_moves()) {
            (None, _) => Some("the link notifications (route netlink) could not be opened".into()),
            (_, false) => Some("this kernel (before Linux 4.15) does not tell a deletion from a move to another namespace".into()),
            _ => None,
        };
        LinkEvents {
            fd,
            unproven,
            seen: Default::default(),
        }
    }

    /// Reads what the kernel announced since the last call. Only the
    /// kernel's messages count (sender port 0).
    fn poll(&mut self, watched: &str) {
        let Some(fd) = self.fd.as_ref().map(|f| f.as_raw_fd()) else {
            return;
        };
        let mut buf = vec![0u8; 1 << 16];
        let lost = |u: &mut Option<String>, why: &str| {
            u.get_or_insert_with(|| format!("link notifications were lost ({why})"));
        };
        // Until the socket is empty (bounded: past the bound, what was not
        // read proves nothing).
        for i in 0.. {
            if i == MAX_LINK_DATAGRAMS {
                lost(&mut self.unproven, "more than a bound's worth waiting");
                return;
            }
            // SAFETY: sockaddr_nl is plain data.
            let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            // SAFETY: reads into a buffer of its length; `from` of `len` bytes.
            let n = unsafe {
                libc::recvfrom(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                    (&mut from as *mut libc::sockaddr_nl).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return,
                    Some(libc::ENOBUFS) => {
                        lost(&mut self.unproven, "the socket's buffer overflowed");
                        continue;
                    }
                    e => {
                        lost(
                            &mut self.unproven,
                            &format!("reading them failed: errno {e:?}"),
                        );
                        return;
                    }
                }
            }
            if n == 0 {
                return;
            }
            if n as usize > buf.len() {
                lost(&mut self.unproven, "a datagram longer than the buffer");
                continue;
            }
            if from.nl_pid != 0 {
                continue;
            }
            let (msgs, whole) = parse_links_whole(&buf[..n as usize]);
            if !whole {
                lost(&mut self.unproven, "a message that does not parse");
            }
            for m in msgs {
                self.note(&m, watched);
            }
        }
    }

    /// Records one message: up once announced up; a move (or malformed
    /// deletion) sticks; a deletion counts only under the watched name.
    fn note(&mut self, m: &LinkMessage, watched: &str) {
        let e = self.seen.entry(m.ifindex).or_default();
        e.up |= m.flags & libc::IFF_UP as u32 != 0;
        if m.deleted {
            if m.moved {
                e.moved = true;
            } else if m.name.as_deref() == Some(watched) {
                e.deleted_as = Some(watched.to_string());
            }
        }
    }

    /// Why `ifindex` is not a proven deletion of the watched interface, or
    /// `None` if it is (announced deleted under its name, never moved,
    /// nothing lost).
    fn not_deleted(&self, ifindex: u32, watched: &str) -> Option<String> {
        if let Some(u) = &self.unproven {
            return Some(u.clone());
        }
        match self.seen.get(&ifindex) {
            Some(s) if s.moved => Some("the old one was moved to another network namespace".into()),
            Some(s) if s.deleted_as.as_deref() == Some(watched) => None,
            _ => Some("the old one's deletion was not seen".into()),
        }
    }
}

/// The `RTM_NEWLINK` and `RTM_DELLINK` messages in a route netlink
/// datagram. Layout: `nlmsghdr` (16 bytes: length, type, …), `ifinfomsg`
/// (16 bytes: family, pad, type, ifindex at offset 4, flags at 8), then
/// 4-byte aligned `rtattr`s (length, type). A malformed message ends the
/// parse; malformed attributes make it `moved` (not a proven deletion).
pub fn parse_links(b: &[u8]) -> Vec<LinkMessage> {
    parse_links_whole(b).0
}

/// [`parse_links`], and whether the datagram parsed to its end.
pub fn parse_links_whole(mut b: &[u8]) -> (Vec<LinkMessage>, bool) {
    let u16_at = |b: &[u8], o: usize| u16::from_ne_bytes([b[o], b[o + 1]]);
    let u32_at = |b: &[u8], o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let mut out = Vec::new();
    while b.len() >= 16 {
        let len = u32_at(b, 0) as usize;
        if len < 16 || len > b.len() {
            break;
        }
        let msg = &b[..len];
        let ty = u16_at(msg, 4);
        if (ty == libc::RTM_DELLINK || ty == libc::RTM_NEWLINK) && len >= 32 {
            let ifindex = u32_at(msg, 20) as i32;
            let flags = u32_at(msg, 24);
            let mut moved = false;
            let mut name = None;
            let mut a = &msg[32..];
            while a.len() >= 4 {
                let alen = usize::from(u16_at(a, 0));
                if alen < 4 || alen > a.len() {
                    moved = true;
                    break;
                }
                match u16_at(a, 2) & 0x3fff {
                    libc::IFLA_NEW_NETNSID => moved = true,
                    libc::IFLA_IFNAME => {
                        let v = &a[4..alen];
                        let v = v.split(|c| *c == 0).next().unwrap_or(v);
                        name = Some(String::from_utf8_lossy(v).into_owned());
                    }
                    _ => {}
                }
                a = &a[((alen + 3) & !3).min(a.len())..];
            }
            if ifindex > 0 {
                out.push(LinkMessage {
                    ifindex: ifindex as u32,
                    deleted: ty == libc::RTM_DELLINK,
                    moved,
                    name,
                    flags,
                });
            }
        }
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    (out, b.is_empty())
}

/// The interface's transmit counters (bytes, packets) from
/// `/proc/self/net/dev` (the calling process's network namespace);
/// `None` if it is not listed or the file cannot be read.
pub fn tx_counters(iface: &str) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/net/dev").ok()?;
    parse_tx_counters(&text, iface)
}

/// [`tx_counters`] from the text of `/proc/net/dev`: `NAME:` then 8
/// receive and 8 transmit counters (bytes, packets first).
pub fn parse_tx_counters(text: &str, iface: &str) -> Option<(u64, u64)> {
    text.lines().find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        if name.trim() != iface {
            return None;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        Some((*v.get(8)?, *v.get(9)?))
    })
}

/// Most datagrams [`LinkEvents::poll`] reads in one call (a socket buffer
/// of the default size holds far fewer).
const MAX_LINK_DATAGRAMS: usize = 1 << 16;

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

    /// Whether it was lost ([`IfaceChange::Lost`]): the watch cannot be
    /// proven any more.
    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// Whether it was gone (not in the namespace) at the last check.
    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// Waits up to `timeout` for a link notification (returns at once if
    /// one is waiting; sleeps `timeout` if there is no notification
    /// socket).
    pub fn wait_link_event(&self, timeout: std::time::Duration) {
        let Some(fd) = self.wake_fd() else {
            std::thread::sleep(timeout);
            return;
        };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; EINTR ends the wait.
        unsafe { libc::poll(&mut pfd, 1, timeout.as_millis().min(60_000) as i32) };
    }

    /// Whether a link notification waits to be read (no waiting).
    pub fn link_event_pending(&self) -> bool {
        let Some(fd) = self.wake_fd() else {
            return false;
        };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        unsafe { libc::poll(&mut pfd, 1, 0) > 0 && pfd.revents != 0 }
    }

    /// The link notifications' descriptor: readable when the kernel
    /// announced a link change (a caller may wait on it to look at once).
    pub fn wake_fd(&self) -> Option<std::os::fd::RawFd> {
        self.links.fd.as_ref().map(|f| f.as_raw_fd())
    }

    /// Checks the interface now. Returns each change once: gone, back
    /// (re-created), down, up again; lost once, and then nothing more.
    ///
    /// A re-created interface (same name, a new ifindex) is
    /// [`IfaceChange::Back`] only when the old one's deletion under this
    /// name was announced (never a move to another namespace), its
    /// hardware address is the old one's, and it is still administratively
    /// down, never announced up: nothing can have left it yet. The caller
    /// binds its capture to it and then calls [`IfaceMonitor::confirm_back`]
    /// to prove it was still never up once bound. Otherwise it is
    /// [`IfaceChange::Lost`].
    pub fn check(&mut self) -> Option<IfaceChange> {
        self.links.poll(&self.iface);
        if self.lost {
            return None;
        }
        let Some(info) = IfaceInfo::read(&self.iface) else {
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
            let why = if info.mac != self.mac {
                Some("by an interface of another hardware address".to_string())
            } else if let Some(w) = self.links.not_deleted(old, &self.iface) {
                Some(format!("and {w}"))
            } else if info.ifindex == old {
                Some("under the same ifindex".to_string())
            } else if info.admin_up || self.links.seen.get(&info.ifindex).is_some_and(|s| s.up) {
                Some("and the new one came up before the capture could follow it".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                return Some(self.lose(info, old, &why));
            }
            self.ifindex = info.ifindex;
            self.gone = false;
            self.down = true;
            return Some(IfaceChange::Back {
                ifindex: info.ifindex,
                what: format!(
                    "interface {} was re-created (ifindex {}, was {old}; the same hardware address; bound before it came up): the capture follows it",
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

    /// After [`IfaceChange::Back`] and the capture's bind: the followed
    /// interface must still be administratively down and never announced
    /// up (read after the bind), so no frame left it before the capture
    /// was bound. Otherwise the interface is lost (returned).
    pub fn confirm_back(&mut self) -> Option<IfaceChange> {
        self.links.poll(&self.iface);
        let info = IfaceInfo::read(&self.iface);
        let seen = info
            .as_ref()
            .and_then(|i| self.links.seen.get(&i.ifindex))
            .cloned()
            .unwrap_or_default();
        // A device that ever sent (its counters survive a move between
        // namespaces) is no fresh one: it may have sent elsewhere.
        let sent = tx_counters(&self.iface);
        let why = match &info {
            Some(i) if i.ifindex != self.ifindex => Some("again before the capture was bound"),
            Some(i) if i.admin_up || seen.up => {
                Some("and it came up before the capture was bound to it")
            }
            Some(_) if seen.moved => Some("by an interface moved here from another namespace"),
            Some(_) if sent != Some((0, 0)) => Some(
                "by an interface that had sent frames before (moved here from another namespace?)",
            ),
            Some(_) => None,
            None => Some(""),
        };
        if let Some(unproven) = &self.links.unproven {
            if why.is_none() {
                let i = info.expect("present when why is None");
                let old = self.ifindex;
                return Some(self.lose(i, old, &format!("and {unproven}")));
            }
        }
        let why = why?;
        let old = self.ifindex;
        match info {
            Some(i) => Some(self.lose(i, old, why)),
            None => {
                self.gone = true;
                Some(IfaceChange::Gone(format!(
                    "interface {} disappeared again",
                    self.iface
                )))
            }
        }
    }

    fn lose(&mut self, info: IfaceInfo, old: u32, why: &str) -> IfaceChange {
        self.lost = true;
        // There, but not followed: no longer "gone".
        self.gone = false;
        self.down = !info.is_up();
        IfaceChange::Lost(format!(
            "interface {} was replaced {why} (ifindex {old}, now {}): the capture does not follow it",
            self.iface, info.ifindex
        ))
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

    /// (ifindex, deleted, moved, name) of each message.
    fn parsed(b: &[u8]) -> Vec<(u32, bool, bool, Option<String>)> {
        parse_links(b)
            .into_iter()
            .map(|m| (m.ifindex, m.deleted, m.moved, m.name))
            .collect()
    }

    #[test]
    fn link_messages_say_deleted_moved_up_and_name() {
        // IFLA_IFNAME "gw1" (3), then for the move IFLA_NEW_NETNSID (45).
        let deleted = link_msg(libc::RTM_DELLINK, 7, &[(3, b"gw1\0")]);
        let moved = link_msg(
            libc::RTM_DELLINK,
            8,
            &[(3, b"gw1\0"), (libc::IFLA_NEW_NETNSID, &5i32.to_ne_bytes())],
        );
        let mut new = link_msg(libc::RTM_NEWLINK, 9, &[(3, b"eth0\0")]);
        new[24..28].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
        let mut dgram = deleted.clone();
        dgram.extend(&new);
        dgram.extend(&moved);
        let gw1 = Some("gw1".to_string());
        assert_eq!(
            parsed(&dgram),
            vec![
                (7, true, false, gw1.clone()),
                (9, false, false, Some("eth0".into())),
                (8, true, true, gw1.clone())
            ]
        );
        assert_eq!(parse_links(&new)[0].flags, libc::IFF_UP as u32);
        // The nested flag bit (NLA_F_NESTED) does not hide the type.
        let flagged = link_msg(
            libc::RTM_DELLINK,
            8,
            &[(libc::IFLA_NEW_NETNSID | 0x8000, &5i32.to_ne_bytes())],
        );
        assert_eq!(parsed(&flagged), vec![(8, true, true, None)]);
        // Cut short or malformed: what parsed before stands, nothing after.
        assert_eq!(parsed(&dgram[..dgram.len() - 3]).len(), 2);
        let mut bad = deleted.clone();
        bad[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(parsed(&bad), vec![]);
        assert_eq!(parsed(&[]), vec![]);
        // A bad attribute length ends that message's attributes: not a
        // proven deletion; the next message is read.
        let mut odd = link_msg(libc::RTM_DELLINK, 4, &[(3, b"gw1\0")]);
        odd[32..34].copy_from_slice(&2u16.to_ne_bytes());
        odd.extend(&moved);
        assert_eq!(
            parsed(&odd),
            vec![(4, true, true, None), (8, true, true, gw1)]
        );
    }

    /// The record of an ifindex: a move sticks, whatever deletion is
    /// announced for the same index later (an attacker's `ip link add tmp
    /// index N` and `del`); a deletion counts only under the watched name;
    /// lost messages prove nothing.
    #[test]
    fn a_deletion_is_proven_only_under_the_name_and_never_after_a_move() {
        let mut l = LinkEvents {
            fd: None,
            unproven: None,
            seen: Default::default(),
        };
        let feed = |l: &mut LinkEvents, m: Vec<u8>| {
            for m in parse_links(&m) {
                l.note(&m, "eth0");
            }
        };
        feed(
            &mut l,
            link_msg(
                libc::RTM_DELLINK,
                5,
                &[
                    (3, b"eth0\0"),
                    (libc::IFLA_NEW_NETNSID, &1i32.to_ne_bytes()),
                ],
            ),
        );
        feed(&mut l, link_msg(libc::RTM_DELLINK, 5, &[(3, b"eth0\0")]));
        assert!(l.not_deleted(5, "eth0").unwrap().contains("moved"));
        feed(&mut l, link_msg(libc::RTM_DELLINK, 6, &[(3, b"tmp\0")]));
        assert!(l.not_deleted(6, "eth0").unwrap().contains("not seen"));
        feed(&mut l, link_msg(libc::RTM_DELLINK, 7, &[(3, b"eth0\0")]));
        assert_eq!(l.not_deleted(7, "eth0"), None);
        l.unproven = Some("lost".into());
        assert_eq!(l.not_deleted(7, "eth0").as_deref(), Some("lost"));
    }

    #[test]
    fn transmit_counters_from_proc_net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth0: 5000 40 0 0 0 0 0 0 7000 55 0 0 0 0 0 0
  eth01:    0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
";
        assert_eq!(parse_tx_counters(text, "eth0"), Some((7000, 55)));
        assert_eq!(parse_tx_counters(text, "eth01"), Some((0, 0)));
        assert_eq!(parse_tx_counters(text, "eth1"), None);
        assert_eq!(parse_tx_counters("  eth0: 1 2 3\n", "eth0"), None);
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
