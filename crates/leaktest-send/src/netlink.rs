//! A minimal synchronous rtnetlink (NETLINK_ROUTE) client: one route lookup
//! (`RTM_GETROUTE` for a destination, as `ip route get` does), one link
//! lookup (`RTM_GETLINK` by index) and a neighbour dump (`RTM_GETNEIGH`).
//!
//! Requests are built and replies parsed by pure functions over byte slices
//! ([`parse_route`], [`parse_link`], [`parse_neighbour`], [`split_messages`])
//! so they can be tested with byte vectors; only [`Netlink`] touches a socket.
//! Parsing never panics: malformed input gives [`NetlinkError::Malformed`] or
//! is skipped.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// Message types (linux/rtnetlink.h, linux/netlink.h).
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_GETROUTE: u16 = 26;
pub const RTM_NEWNEIGH: u16 = 28;
pub const RTM_GETNEIGH: u16 = 30;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;

// Attributes.
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PREFSRC: u16 = 7;
const RTA_VIA: u16 = 18;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;

const NLMSGHDR_LEN: usize = 16;
const RTMSG_LEN: usize = 12;
const IFINFOMSG_LEN: usize = 16;
const NDMSG_LEN: usize = 12;

/// Route types (`rtm_type`).
pub const RTN_UNICAST: u8 = 1;
pub const RTN_LOCAL: u8 = 2;
pub const RTN_BROADCAST: u8 = 3;
pub const RTN_ANYCAST: u8 = 4;
pub const RTN_MULTICAST: u8 = 5;
pub const RTN_BLACKHOLE: u8 = 6;
pub const RTN_UNREACHABLE: u8 = 7;
pub const RTN_PROHIBIT: u8 = 8;

/// Neighbour states (`ndm_state`).
pub const NUD_INCOMPLETE: u16 = 0x01;
pub const NUD_REACHABLE: u16 = 0x02;
pub const NUD_STALE: u16 = 0x04;
pub const NUD_DELAY: u16 = 0x08;
pub const NUD_PROBE: u16 = 0x10;
pub const NUD_FAILED: u16 = 0x20;
pub const NUD_NOARP: u16 = 0x40;
pub const NUD_PERMANENT: u16 = 0x80;

/// Link types (`ifi_type`, linux/if_arp.h) leaktest cares about.
pub const ARPHRD_ETHER: u16 = 1;
pub const ARPHRD_LOOPBACK: u16 = 772;

/// Errors of the netlink client.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    /// The kernel answered the request with an error (errno, positive).
    #[error("netlink request refused: {}", io::Error::from_raw_os_error(*.0))]
    Kernel(i32),
    #[error("malformed netlink message: {0}")]
    Malformed(&'static str),
    #[error("no netlink reply within the timeout")]
    Timeout,
}

/// The kernel's answer to "which route does a packet to this address take".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// `rtm_type`: [`RTN_UNICAST`], [`RTN_LOCAL`], [`RTN_UNREACHABLE`], ...
    pub kind: u8,
    /// Output interface index (`RTA_OIF`).
    pub oif: Option<u32>,
    /// Preferred source address (`RTA_PREFSRC`).
    pub prefsrc: Option<IpAddr>,
    /// Next hop (`RTA_GATEWAY`, or `RTA_VIA` for an IPv4 route via IPv6); `None` on link.
    pub gateway: Option<IpAddr>,
}

/// One network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    /// `ifi_type` (ARPHRD_*).
    pub kind: u16,
    /// `ifi_flags` (IFF_*).
    pub flags: u32,
    pub name: String,
    /// Link-layer address; 6 bytes on Ethernet.
    pub address: Option<Vec<u8>>,
    pub mtu: Option<u32>,
}

impl Link {
    /// The 6-byte Ethernet address, if the link has one.
    pub fn mac(&self) -> Option<[u8; 6]> {
        self.address.as_deref()?.try_into().ok()
    }
}

/// One neighbour (ARP / NDP) table entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ifindex: u32,
    pub state: u16,
    pub dst: Option<IpAddr>,
    pub lladdr: Option<Vec<u8>>,
}

impl Neighbour {
    /// The entry's MAC if the kernel would use it to send now (not
    /// incomplete or failed).
    pub fn usable_mac(&self) -> Option<[u8; 6]> {
        let ok = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP;
        if self.state & ok == 0 {
            return None;
        }
        self.lladdr.as_deref()?.try_into().ok()
    }
}

/// A readable name of a neighbour state, as `ip neigh` prints it.
pub fn nud_name(state: u16) -> &'static str {
    match state {
        NUD_INCOMPLETE => "INCOMPLETE",
        NUD_REACHABLE => "REACHABLE",
        NUD_STALE => "STALE",
        NUD_DELAY => "DELAY",
        NUD_PROBE => "PROBE",
        NUD_FAILED => "FAILED",
        NUD_NOARP => "NOARP",
        NUD_PERMANENT => "PERMANENT",
        0 => "NONE",
        _ => "MIXED",
    }
}

/// A readable name of a route type.
pub fn rtn_name(kind: u8) -> &'static str {
    match kind {
        RTN_UNICAST => "unicast",
        RTN_LOCAL => "local",
        RTN_BROADCAST => "broadcast",
        RTN_ANYCAST => "anycast",
        RTN_MULTICAST => "multicast",
        RTN_BLACKHOLE => "blackhole",
        RTN_UNREACHABLE => "unreachable",
        RTN_PROHIBIT => "prohibit",
        _ => "unknown",
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// A netlink message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NlHeader {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
}

/// Splits a receive buffer into netlink messages (header, payload).
/// Stops with an error at the first malformed header.
pub fn split_messages(mut buf: &[u8]) -> Result<Vec<(NlHeader, &[u8])>, NetlinkError> {
    let mut out = Vec::new();
    while buf.len() >= NLMSGHDR_LEN {
        let len = u32_at(buf, 0).unwrap_or(0) as usize;
        if len < NLMSGHDR_LEN || len > buf.len() {
            return Err(NetlinkError::Malformed("message length out of bounds"));
        }
        let hdr = NlHeader {
            kind: u16_at(buf, 4).unwrap_or(0),
            flags: u16_at(buf, 6).unwrap_or(0),
            seq: u32_at(buf, 8).unwrap_or(0),
            pid: u32_at(buf, 12).unwrap_or(0),
        };
        out.push((hdr, &buf[NLMSGHDR_LEN..len]));
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(out)
}

/// Iterates over the route attributes (type, value) of `buf`; stops at the
/// first malformed one. The nested and byte-order flags are masked off.
pub fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16_at(buf, 0)? as usize;
        let kind = u16_at(buf, 2)? & 0x3fff;
        if len < 4 || len > buf.len() {
            buf = &[];
            return None;
        }
        let value = &buf[4..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((kind, value))
    })
}

fn ip_from(family: u8, b: &[u8]) -> Option<IpAddr> {
    match (family as i32, b.len()) {
        (libc::AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?))),
        (libc::AF_INET6, 16) => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?))),
        _ => None,
    }
}

/// The errno of an `NLMSG_ERROR` payload (0 = acknowledgement).
pub fn parse_error(payload: &[u8]) -> Result<i32, NetlinkError> {
    let e = u32_at(payload, 0).ok_or(NetlinkError::Malformed("short error message"))? as i32;
    Ok(-e)
}

/// Parses the payload of an `RTM_NEWROUTE` message.
pub fn parse_route(payload: &[u8]) -> Result<Route, NetlinkError> {
    if payload.len() < RTMSG_LEN {
        return Err(NetlinkError::Malformed("short rtmsg"));
    }
    let family = payload[0];
    let kind = payload[7];
    let mut route = Route {
        kind,
        oif: None,
        prefsrc: None,
        gateway: None,
    };
    for (t, v) in attributes(&payload[RTMSG_LEN..]) {
        match t {
            RTA_OIF => route.oif = u32_at(v, 0),
            RTA_PREFSRC => route.prefsrc = ip_from(family, v),
            RTA_GATEWAY => route.gateway = ip_from(family, v),
            // struct rtvia { __kernel_sa_family_t (u16) rtvia_family; __u8 rtvia_addr[]; }
            RTA_VIA if v.len() >= 2 => {
                let fam = u16_at(v, 0).unwrap_or(0);
                route.gateway = u8::try_from(fam).ok().and_then(|f| ip_from(f, &v[2..]));
            }
            _ => {}
        }
    }
    Ok(route)
}

/// Parses the payload of an `RTM_NEWLINK` message.
pub fn parse_link(payload: &[u8]) -> Result<Link, NetlinkError> {
    if payload.len() < IFINFOMSG_LEN {
        return Err(NetlinkError::Malformed("short ifinfomsg"));
    }
    let mut link = Link {
        kind: u16_at(payload, 2).unwrap_or(0),
        index: u32_at(payload, 4).unwrap_or(0),
        flags: u32_at(payload, 8).unwrap_or(0),
        name: String::new(),
        address: None,
        mtu: None,
    };
    for (t, v) in attributes(&payload[IFINFOMSG_LEN..]) {
        match t {
            IFLA_ADDRESS => link.address = Some(v.to_vec()),
            IFLA_IFNAME => {
                let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
                link.name = String::from_utf8_lossy(&v[..end]).into_owned();
            }
            IFLA_MTU => link.mtu = u32_at(v, 0),
            _ => {}
        }
    }
    Ok(link)
}

/// Parses the payload of an `RTM_NEWNEIGH` message.
pub fn parse_neighbour(payload: &[u8]) -> Result<Neighbour, NetlinkError> {
    if payload.len() < NDMSG_LEN {
        return Err(NetlinkError::Malformed("short ndmsg"));
    }
    let family = payload[0];
    let mut n = Neighbour {
        ifindex: u32_at(payload, 4).unwrap_or(0),
        state: u16_at(payload, 8).unwrap_or(0),
        dst: None,
        lladdr: None,
    };
    for (t, v) in attributes(&payload[NDMSG_LEN..]) {
        match t {
            NDA_DST => n.dst = ip_from(family, v),
            NDA_LLADDR => n.lladdr = Some(v.to_vec()),
            _ => {}
        }
    }
    Ok(n)
}

/// A netlink request under construction.
struct Request(Vec<u8>);

impl Request {
    fn new(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Request {
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish()
        b.extend_from_slice(&kind.to_ne_bytes());
        b.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(body);
        b.resize(align4(b.len()), 0);
        Request(b)
    }

    fn attr(mut self, kind: u16, value: &[u8]) -> Request {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(align4(self.0.len()), 0);
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

fn family_of(addr: &IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn addr_bytes(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Builds an `RTM_GETROUTE` request for `dst` (optionally forced out of `oif`).
pub fn route_request(seq: u32, dst: IpAddr, oif: Option<u32>) -> Vec<u8> {
    let mut rtm = [0u8; RTMSG_LEN];
    rtm[0] = family_of(&dst);
    rtm[1] = if dst.is_ipv4() { 32 } else { 128 };
    let mut req = Request::new(RTM_GETROUTE, 0, seq, &rtm).attr(RTA_DST, &addr_bytes(&dst));
    if let Some(oif) = oif {
        req = req.attr(RTA_OIF, &oif.to_ne_bytes());
    }
    req.finish()
}

/// Builds an `RTM_GETLINK` request for interface `index`.
pub fn link_request(seq: u32, index: u32) -> Vec<u8> {
    let mut ifi = [0u8; IFINFOMSG_LEN];
    ifi[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
    Request::new(RTM_GETLINK, 0, seq, &ifi).finish()
}

/// Builds an `RTM_GETNEIGH` dump request for one address family.
pub fn neighbour_dump_request(seq: u32, family: u8, ifindex: u32) -> Vec<u8> {
    let mut nd = [0u8; NDMSG_LEN];
    nd[0] = family;
    nd[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    Request::new(RTM_GETNEIGH, NLM_F_DUMP, seq, &nd).finish()
}

/// A NETLINK_ROUTE socket in the calling thread's network namespace.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// Opens the socket. Needs no privilege.
    pub fn open() -> Result<Netlink, NetlinkError> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error().into());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: valid fd, pointer and size of a timeval.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error().into());
        }
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1);
        Ok(Netlink {
            fd,
            seq,
            buf: vec![0u8; 64 * 1024],
        })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&self, req: &[u8]) -> Result<(), NetlinkError> {
        // SAFETY: a zeroed sockaddr_nl addresses the kernel (pid 0).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: valid fd, request buffer and address.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error().into());
        }
        Ok(())
    }

    /// Receives replies to `seq` and hands each message of `want` type to
    /// `f`, until a non-multipart reply, `NLMSG_DONE` or an error.
    fn collect(
        &mut self,
        seq: u32,
        want: u16,
        dump: bool,
        mut f: impl FnMut(&[u8]) -> Result<(), NetlinkError>,
    ) -> Result<(), NetlinkError> {
        loop {
            // SAFETY: buf is a valid writable buffer of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        Err(NetlinkError::Timeout)
                    }
                    _ => Err(e.into()),
                };
            }
            let msgs = split_messages(&self.buf[..n as usize])?;
            for (hdr, payload) in msgs {
                if hdr.seq != seq {
                    continue; // a stale reply to an earlier request
                }
                match hdr.kind {
                    NLMSG_ERROR => {
                        let errno = parse_error(payload)?;
                        if errno != 0 {
                            return Err(NetlinkError::Kernel(errno));
                        }
                        return Ok(());
                    }
                    NLMSG_DONE => return Ok(()),
                    k if k == want => {
                        f(payload)?;
                        if !dump {
                            return Ok(());
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// `ip route get DST [oif OIF]`.
    pub fn route_get(&mut self, dst: IpAddr, oif: Option<u32>) -> Result<Route, NetlinkError> {
        let seq = self.next_seq();
        self.send(&route_request(seq, dst, oif))?;
        let mut out = None;
        self.collect(seq, RTM_NEWROUTE, false, |p| {
            out = Some(parse_route(p)?);
            Ok(())
        })?;
        out.ok_or(NetlinkError::Malformed("no route in reply"))
    }

    /// `ip link show` of one interface index.
    pub fn link_get(&mut self, index: u32) -> Result<Link, NetlinkError> {
        let seq = self.next_seq();
        self.send(&link_request(seq, index))?;
        let mut out = None;
        self.collect(seq, RTM_NEWLINK, false, |p| {
            out = Some(parse_link(p)?);
            Ok(())
        })?;
        out.ok_or(NetlinkError::Malformed("no link in reply"))
    }

    /// The neighbour entry of `addr` on interface `ifindex`, if any.
    pub fn neighbour_get(
        &mut self,
        ifindex: u32,
        addr: IpAddr,
    ) -> Result<Option<Neighbour>, NetlinkError> {
        let seq = self.next_seq();
        self.send(&neighbour_dump_request(seq, family_of(&addr), ifindex))?;
        let mut out = None;
        self.collect(seq, RTM_NEWNEIGH, true, |p| {
            // Entries we cannot parse are skipped; the one we want is checked below.
            if let Ok(n) = parse_neighbour(p) {
                if n.ifindex == ifindex && n.dst == Some(addr) {
                    out = Some(n);
                }
            }
            Ok(())
        })?;
        Ok(out)
    }
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    //! Byte vectors are real kernel replies (kernel 6.18, x86_64) captured in
    //! a throwaway namespace: workstation 10.152.152.11 / fd19:c33d:88bc::11 on
    //! a veth with MAC 02:00:00:00:00:01, gateway 10.152.152.10 with a
    //! permanent ARP entry 02:00:00:00:00:02, IPv4 default route via it.
    use super::*;

    fn bytes(h: &str) -> Vec<u8> {
        hex::decode(h).unwrap()
    }

    const ROUTE4_VIA_GATEWAY: &str = "700000001800000007000000ef31000002200000fe0000010002000008000f00fe00000008000100cb0071050800040002000000080007000a98980b080005000a98980a080019000000000024000c000200000000000000000000000000000000000000000000000000000000000000";
    const ROUTE4_ON_LINK: &str = "680000001800000007000000ef31000002200000fe0000010002000008000f00fe000000080001000a98980a0800040002000000080007000a98980b080019000000000024000c000200000000000000000000000000000000000000000000000000000000000000";
    const ROUTE6_ON_LINK: &str = "9c0000001800000007000000ef3100000a808000fe0200010000000008000f00fe00000014000100fd19c33d88bc00000000000000000010140002000000000000000000000000000000000014000700fd19c33d88bc000000000000000000110800060000010000080004000200000024000c0002000000000000000000000000000000000000000000000000000000000000000500140000000000";
    const ROUTE6_UNREACHABLE: &str = "440000000200000007000000ef3100009bffffff300000001a00010007000000000000000a80000000000000000000001400010020010db8000000000000000000000001";
    const NEIGH4_DUMP: &str = "4c0000001c00020007000000ef310000020000000200000080000001080001000a98980a0a000200020000000002000008000400000000001400030013000000130000001300000000000000140000000300020007000000ef31000000000000";
    // RTM_NEWLINK for the veth, cut after IFLA_BROADCAST (the nlmsg length is patched).
    const LINK_HEAD: &str = "e40500001000000007000000ef310000000001000200000043100100000000000e000300766c7473363137346100000008000d00e803000005001000060000000500110000000000050043000000000008000400dc050000080032004400000008003300ffff000008001b000000000008001e000000000008003d000000000008001f000200000008002800ffff0000080029000000010008003a000000010008003f0000000100080040000000010008003b00f8ff070008003c00ffff0000080042000000000008002000020000000500210001000000080023000200000008002f000100000008003000010000000600440000000000060045000000000005002700000000000a00010002000000000100000a000200ffffffffffff0000";

    fn one(h: &str) -> (NlHeader, Vec<u8>) {
        let b = bytes(h);
        let msgs = split_messages(&b).unwrap();
        assert_eq!(msgs.len(), 1);
        (msgs[0].0, msgs[0].1.to_vec())
    }

    #[test]
    fn route_via_gateway() {
        let (h, p) = one(ROUTE4_VIA_GATEWAY);
        assert_eq!(h.kind, RTM_NEWROUTE);
        assert_eq!(h.seq, 7);
        let r = parse_route(&p).unwrap();
        assert_eq!(r.kind, RTN_UNICAST);
        assert_eq!(r.oif, Some(2));
        assert_eq!(r.prefsrc, Some("10.152.152.11".parse().unwrap()));
        assert_eq!(r.gateway, Some("10.152.152.10".parse().unwrap()));
    }

    #[test]
    fn route_on_link_has_no_gateway() {
        let r = parse_route(&one(ROUTE4_ON_LINK).1).unwrap();
        assert_eq!(r.gateway, None);
        assert_eq!(r.oif, Some(2));
        let r6 = parse_route(&one(ROUTE6_ON_LINK).1).unwrap();
        assert_eq!(r6.kind, RTN_UNICAST);
        assert_eq!(r6.gateway, None);
        assert_eq!(r6.oif, Some(2));
        assert_eq!(r6.prefsrc, Some("fd19:c33d:88bc::11".parse().unwrap()));
    }

    #[test]
    fn unreachable_is_a_kernel_error() {
        let (h, p) = one(ROUTE6_UNREACHABLE);
        assert_eq!(h.kind, NLMSG_ERROR);
        assert_eq!(parse_error(&p).unwrap(), libc::ENETUNREACH);
    }

    #[test]
    fn neighbour_dump_then_done() {
        let b = bytes(NEIGH4_DUMP);
        let msgs = split_messages(&b).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].0.kind, RTM_NEWNEIGH);
        assert_eq!(msgs[1].0.kind, NLMSG_DONE);
        let n = parse_neighbour(msgs[0].1).unwrap();
        assert_eq!(n.ifindex, 2);
        assert_eq!(n.state, NUD_PERMANENT);
        assert_eq!(n.dst, Some("10.152.152.10".parse().unwrap()));
        assert_eq!(n.usable_mac(), Some([2, 0, 0, 0, 0, 2]));
    }

    #[test]
    fn incomplete_neighbour_is_not_usable() {
        let n = Neighbour {
            ifindex: 2,
            state: NUD_INCOMPLETE,
            dst: None,
            lladdr: Some(vec![2, 0, 0, 0, 0, 2]),
        };
        assert_eq!(n.usable_mac(), None);
        let failed = Neighbour {
            state: NUD_FAILED,
            ..n.clone()
        };
        assert_eq!(failed.usable_mac(), None);
        let stale_no_addr = Neighbour {
            state: NUD_STALE,
            lladdr: None,
            ..n
        };
        assert_eq!(stale_no_addr.usable_mac(), None);
    }

    #[test]
    fn link_name_mac_mtu() {
        let mut b = bytes(LINK_HEAD);
        let len = b.len() as u32;
        b[0..4].copy_from_slice(&len.to_ne_bytes());
        let msgs = split_messages(&b).unwrap();
        assert_eq!(msgs[0].0.kind, RTM_NEWLINK);
        let l = parse_link(msgs[0].1).unwrap();
        assert_eq!(l.index, 2);
        assert_eq!(l.kind, ARPHRD_ETHER);
        assert_eq!(l.name, "vlts6174a");
        assert_eq!(l.mtu, Some(1500));
        assert_eq!(l.mac(), Some([2, 0, 0, 0, 0, 1]));
        assert_ne!(l.flags & libc::IFF_UP as u32, 0);
    }

    #[test]
    fn requests_have_the_kernel_layout() {
        // The bytes the capture script sent for ROUTE4_VIA_GATEWAY (seq 7).
        let r = route_request(7, "203.0.113.5".parse().unwrap(), None);
        assert_eq!(
            hex::encode(&r),
            "240000001a000100070000000000000002200000000000000000000008000100cb007105"
        );
        let r = route_request(9, "2001:db8::1".parse().unwrap(), Some(3));
        assert_eq!(r.len(), 16 + 12 + 20 + 8);
        assert_eq!(&r[16..18], &[libc::AF_INET6 as u8, 128]);
        let msgs = split_messages(&r).unwrap();
        let attrs: Vec<_> = attributes(&msgs[0].1[12..]).collect();
        assert_eq!(attrs[1], (RTA_OIF, &3u32.to_ne_bytes()[..]));
        let n = neighbour_dump_request(3, libc::AF_INET6 as u8, 5);
        assert_eq!(u16_at(&n, 6), Some(NLM_F_DUMP | NLM_F_REQUEST));
        assert_eq!(u32_at(&n, 20), Some(5));
    }

    #[test]
    fn malformed_input_never_panics() {
        for h in [ROUTE4_VIA_GATEWAY, NEIGH4_DUMP, ROUTE6_ON_LINK] {
            let b = bytes(h);
            for cut in 0..b.len() {
                let _ = split_messages(&b[..cut]);
                let _ = parse_route(&b[16..cut.max(16)]);
                let _ = parse_neighbour(&b[16..cut.max(16)]);
                let _ = parse_link(&b[16..cut.max(16)]);
            }
            let mut bad = b.clone();
            bad[0] = 0xff; // length beyond the buffer
            assert!(split_messages(&bad).is_err());
            // An attribute whose length runs past the end stops the iteration.
            let mut p = b[16..].to_vec();
            p[12] = 0xff;
            let _ = attributes(&p[12..]).count();
        }
        let via = [8u8, 0, RTA_VIA as u8, 0, 2, 0, 10, 152]; // truncated rtvia
        let mut rt = vec![2u8, 32, 0, 0, 254, 0, 0, 1, 0, 0, 0, 0];
        rt.extend_from_slice(&via);
        assert_eq!(parse_route(&rt).unwrap().gateway, None);
    }
}
