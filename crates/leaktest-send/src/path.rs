//! Where probes to a target leave this host: target sanity checks, then the
//! route (egress interface, source address, next hop) and, for AF_PACKET
//! sending, the link-layer addresses (the interface's MAC and the next
//! hop's MAC from the neighbour table, resolved on demand).
//!
//! Resolution is triggered by exactly one empty UDP datagram to the next
//! hop's own address, port 9 (discard), and never touches any other address.

use crate::netlink::{self, Link, Netlink, NetlinkError};
use crate::Error;
use leaktest_wire::Endpoints;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

/// How long to wait for the next hop's MAC after triggering resolution:
/// a little over the kernel's default retransmission time (1 s), so that
/// one lost solicitation (common on a link that has just come up) is
/// covered by the kernel's second one.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_millis(1500);

/// The UDP port of the datagram that triggers neighbour resolution (discard).
pub const DISCARD_PORT: u16 = 9;

/// What the caller may force instead of asking the kernel.
#[derive(Clone, Debug, Default)]
pub struct PathOptions {
    /// Send out of this interface (the route is looked up with it as `oif`).
    pub iface: Option<String>,
    /// Destination MAC to use instead of the neighbour table's.
    pub gateway_mac: Option<[u8; 6]>,
    /// Link-layer addresses are required (AF_PACKET): a missing neighbour
    /// entry is resolved, and failing that is an error. Without it (raw IP
    /// sending) the neighbour table is only read, never provoked, because on
    /// a gateway the resolution datagram would itself leave the host.
    pub link_layer: bool,
    /// Wait this long for neighbour resolution ([`RESOLVE_TIMEOUT`] if `None`).
    pub resolve_timeout: Option<Duration>,
    /// Accept a target on the link itself (no router between): probes to it
    /// never pass through a gateway, so they cannot show a forwarding leak.
    /// Off by default ([`Error::OnLinkTarget`]).
    pub allow_on_link: bool,
}

/// The link-layer header probes to a target carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacPair {
    pub src: [u8; 6],
    pub dst: [u8; 6],
}

/// The way out to one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    pub target: IpAddr,
    pub ifindex: u32,
    pub iface: String,
    pub mtu: Option<u32>,
    /// Source address the kernel would use for this target.
    pub source: IpAddr,
    /// The gateway, or the target itself when it is on link.
    pub next_hop: IpAddr,
    pub via_gateway: bool,
    /// Ethernet addresses; `None` when the interface has no Ethernet header
    /// (tun, wireguard, ...) or, for raw IP sending, when the next hop has no
    /// usable neighbour entry yet.
    pub macs: Option<MacPair>,
    /// True if the interface carries Ethernet frames.
    pub ethernet: bool,
    /// What [`crate::hop::check_first_hop`] (or the watched-uplink check)
    /// found, in one line; `None` until [`crate::prepare`] checked it.
    pub first_hop: Option<String>,
}

/// Why a target is refused before any lookup, or `None` if it is a
/// plausible unicast destination. Link-local targets need `iface`.
pub fn target_problem(target: IpAddr, iface: Option<&str>) -> Option<String> {
    match target {
        IpAddr::V4(a) => v4_problem(a, iface),
        IpAddr::V6(a) => v6_problem(a, iface),
    }
}

fn v4_problem(a: Ipv4Addr, iface: Option<&str>) -> Option<String> {
    let o = a.octets();
    let why = if a.is_unspecified() || o[0] == 0 {
        "is unspecified (0.0.0.0/8 means \"this host\", not a destination)"
    } else if a.is_loopback() {
        "is a loopback address: probes must leave the host through the gateway"
    } else if a.is_multicast() {
        "is a multicast address: give a unicast address beyond the gateway"
    } else if a.is_broadcast() {
        "is the broadcast address: give a unicast address beyond the gateway"
    } else if o[0] >= 240 {
        "is in the reserved range 240.0.0.0/4"
    } else if a.is_link_local() && iface.is_none() {
        "is link-local (169.254.0.0/16): name the interface with --iface"
    } else {
        return None;
    };
    Some(format!("target {a} {why}"))
}

fn v6_problem(a: Ipv6Addr, iface: Option<&str>) -> Option<String> {
    let s = a.segments();
    let why = if a.is_unspecified() {
        "is unspecified (::)"
    } else if a.is_loopback() {
        "is the loopback address: probes must leave the host through the gateway"
    } else if a.is_multicast() {
        "is a multicast address: give a unicast address beyond the gateway"
    } else if a.to_ipv4_mapped().is_some() {
        "is an IPv4-mapped address: give IPv4 targets with --target"
    } else if (s[0] & 0xffc0) == 0xfe80 && iface.is_none() {
        "is link-local (fe80::/10) and needs a zone: name the interface with --iface"
    } else {
        return None;
    };
    Some(format!("target {a} {why}"))
}

/// Looks up the path to `target` in the calling thread's network namespace.
pub fn lookup_path(target: IpAddr, opts: &PathOptions) -> Result<Path, Error> {
    if let Some(why) = target_problem(target, opts.iface.as_deref()) {
        return Err(Error::BadTarget(why));
    }
    let mut nl = Netlink::open().map_err(Error::Netlink)?;
    let forced = match &opts.iface {
        Some(name) => Some(ifindex_of(name)?),
        None => None,
    };
    let route = match nl.route_get(target, forced) {
        Ok(r) => r,
        Err(NetlinkError::Kernel(e))
            if e == libc::ENETUNREACH || e == libc::EHOSTUNREACH || e == libc::EINVAL =>
        {
            return Err(Error::NoRoute {
                target,
                why: std::io::Error::from_raw_os_error(e).to_string(),
            })
        }
        Err(e) => return Err(Error::Netlink(e)),
    };
    match route.kind {
        netlink::RTN_UNICAST => {}
        netlink::RTN_LOCAL => return Err(Error::LocalTarget(target)),
        k => {
            return Err(Error::NoRoute {
                target,
                why: format!("the route is of type {}", netlink::rtn_name(k)),
            })
        }
    }
    let oif = route.oif.ok_or(Error::NoRoute {
        target,
        why: "the route names no output interface".into(),
    })?;
    let link = nl.link_get(oif).map_err(Error::Netlink)?;
    if link.kind == netlink::ARPHRD_LOOPBACK {
        if opts.iface.is_some() {
            return Err(Error::BadTarget(format!(
                "interface {} is the loopback interface: probes must leave through the link towards the gateway; name that one with --iface",
                link.name
            )));
        }
        return Err(Error::LocalTarget(target));
    }
    if route.gateway.is_none() && !opts.allow_on_link {
        return Err(Error::OnLinkTarget {
            target,
            iface: link.name.clone(),
        });
    }
    if link.flags & libc::IFF_UP as u32 == 0 {
        return Err(Error::InterfaceDown(link.name.clone()));
    }
    let source = match route.prefsrc {
        Some(s) if s.is_ipv4() == target.is_ipv4() => s,
        _ => kernel_source(target, oif)?,
    };
    let next_hop = route.gateway.unwrap_or(target);
    let ethernet = link.kind == netlink::ARPHRD_ETHER && link.mac().is_some();
    let src_mac = link.mac().unwrap_or_default();
    let macs = if !ethernet {
        None
    } else if opts.link_layer {
        let dst = match opts.gateway_mac {
            Some(m) => m,
            None => resolve_mac(
                &mut nl,
                &link,
                next_hop,
                opts.resolve_timeout.unwrap_or(RESOLVE_TIMEOUT),
            )?,
        };
        Some(MacPair { src: src_mac, dst })
    } else {
        nl.neighbour_get(link.index, next_hop)
            .map_err(Error::Netlink)?
            .and_then(|n| n.usable_mac())
            .map(|dst| MacPair { src: src_mac, dst })
    };
    Ok(Path {
        target,
        ifindex: oif,
        iface: link.name.clone(),
        mtu: link.mtu,
        source,
        next_hop,
        via_gateway: route.gateway.is_some(),
        macs,
        ethernet,
        first_hop: None,
    })
}

/// The prefix length of `addr` on this host's interface that holds it,
/// from the interface's netmask (getifaddrs(3)), or `None`.
pub fn prefix_len(addr: IpAddr) -> Option<u8> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills head with a list freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return None;
    }
    let mut out = None;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_netmask.is_null() {
            continue;
        }
        // SAFETY: ifa_addr / ifa_netmask point at sockaddrs of the family they state.
        let fam = unsafe { (*ifa.ifa_addr).sa_family } as libc::c_int;
        match (fam, addr) {
            (libc::AF_INET, IpAddr::V4(a)) => {
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                if sin.sin_addr.s_addr.to_ne_bytes() == a.octets() {
                    let m = unsafe { &*(ifa.ifa_netmask as *const libc::sockaddr_in) };
                    out = Some(
                        u32::from_be_bytes(m.sin_addr.s_addr.to_ne_bytes()).count_ones() as u8,
                    );
                }
            }
            (libc::AF_INET6, IpAddr::V6(a)) => {
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                if sin.sin6_addr.s6_addr == a.octets() {
                    let m = unsafe { &*(ifa.ifa_netmask as *const libc::sockaddr_in6) };
                    out = Some(u128::from_be_bytes(m.sin6_addr.s6_addr).count_ones() as u8);
                }
            }
            _ => {}
        }
    }
    // SAFETY: head came from getifaddrs.
    unsafe { libc::freeifaddrs(head) };
    out
}

impl Path {
    /// The probe builder's endpoints for this path: the kernel's source
    /// address and the target, of one family. An error if the kernel chose a
    /// source of the other family.
    pub fn endpoints(&self) -> Result<Endpoints, Error> {
        Ok(match (self.source, self.target) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Endpoints {
                src4: Some(s),
                dst4: Some(d),
                ..Endpoints::default()
            },
            (IpAddr::V6(s), IpAddr::V6(d)) => Endpoints {
                src6: Some(s),
                dst6: Some(d),
                ..Endpoints::default()
            },
            _ => {
                return Err(Error::BadTarget(format!(
                    "the kernel chose a {} source for {}",
                    self.source, self.target
                )))
            }
        })
    }
}

/// The interface index of `name`.
pub fn ifindex_of(name: &str) -> Result<u32, Error> {
    let c = std::ffi::CString::new(name).map_err(|_| Error::NoSuchInterface(name.into()))?;
    // SAFETY: c is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(Error::NoSuchInterface(name.into()));
    }
    Ok(i)
}

/// The source address the kernel picks for `target` (a UDP `connect` sends
/// nothing; used when the route reply has no preferred source).
fn kernel_source(target: IpAddr, oif: u32) -> Result<IpAddr, Error> {
    let dst = match target {
        IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80 => {
            SocketAddr::V6(SocketAddrV6::new(a, DISCARD_PORT, 0, oif))
        }
        _ => SocketAddr::new(target, DISCARD_PORT),
    };
    let bind: SocketAddr = match target {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = std::net::UdpSocket::bind(bind).map_err(Error::Io)?;
    s.connect(dst).map_err(|e| Error::NoRoute {
        target,
        why: e.to_string(),
    })?;
    Ok(s.local_addr().map_err(Error::Io)?.ip())
}

/// The MAC of `next_hop` on `link`: from the neighbour table, or after
/// triggering resolution with one UDP datagram to the next hop itself.
fn resolve_mac(
    nl: &mut Netlink,
    link: &Link,
    next_hop: IpAddr,
    timeout: Duration,
) -> Result<[u8; 6], Error> {
    let lookup = |nl: &mut Netlink| -> Result<(Option<[u8; 6]>, u16), Error> {
        let n = nl
            .neighbour_get(link.index, next_hop)
            .map_err(Error::Netlink)?;
        Ok(match n {
            Some(n) => (n.usable_mac(), n.state),
            None => (None, 0),
        })
    };
    if let (Some(mac), _) = lookup(nl)? {
        return Ok(mac);
    }
    trigger_resolution(link, next_hop);
    let deadline = Instant::now() + timeout;
    let mut state = 0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        let (mac, s) = lookup(nl)?;
        if let Some(mac) = mac {
            return Ok(mac);
        }
        state = s;
    }
    Err(Error::NeighbourUnresolved {
        next_hop,
        iface: link.name.clone(),
        state: netlink::nud_name(state),
        waited_ms: timeout.as_millis() as u64,
    })
}

/// Sends one empty UDP datagram to `next_hop`:9 out of `link`, so that the
/// kernel resolves the next hop's MAC. Best effort: a failure shows up as an
/// unresolved neighbour afterwards.
fn trigger_resolution(link: &Link, next_hop: IpAddr) {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let (domain, dst) = match next_hop {
        IpAddr::V4(a) => (Domain::IPV4, SocketAddr::new(a.into(), DISCARD_PORT)),
        IpAddr::V6(a) => {
            let scope = if (a.segments()[0] & 0xffc0) == 0xfe80 {
                link.index
            } else {
                0
            };
            (
                Domain::IPV6,
                SocketAddr::V6(SocketAddrV6::new(a, DISCARD_PORT, 0, scope)),
            )
        }
    };
    let Ok(s) = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)) else {
        return;
    };
    // Binding to the device needs CAP_NET_RAW; the route already points there.
    let _ = s.bind_device(Some(link.name.as_bytes()));
    let _ = s.send_to(&[], &SockAddr::from(dst));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(s: &str, iface: Option<&str>) -> Option<String> {
        target_problem(s.parse().unwrap(), iface)
    }

    #[test]
    fn refuses_nonsense_targets() {
        for t in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.8.9.10",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "169.254.1.1",
            "::",
            "::1",
            "ff02::1",
            "::ffff:10.152.152.10",
            "fe80::1",
        ] {
            assert!(problem(t, None).is_some(), "{t} must be refused");
        }
        assert!(problem("127.0.0.1", None).unwrap().contains("loopback"));
        assert!(problem("ff02::1", None).unwrap().contains("multicast"));
        assert!(problem("::", None).unwrap().contains("unspecified"));
    }

    #[test]
    fn accepts_unicast_targets() {
        for t in [
            "10.152.152.10",
            "203.0.113.5",
            "192.168.1.1",
            "8.8.8.8",
            "fd19:c33d:88bc::10",
            "2001:db8::1",
        ] {
            assert_eq!(problem(t, None), None, "{t} must be accepted");
        }
        // Link-local is fine once the zone is given.
        assert_eq!(problem("fe80::1", Some("eth0")), None);
        assert_eq!(problem("169.254.3.4", Some("eth0")), None);
    }

    #[test]
    fn unknown_interface_is_a_clear_error() {
        let e = ifindex_of("nosuchif-lt0").unwrap_err();
        assert!(e.to_string().contains("nosuchif-lt0"));
    }

    #[test]
    fn loopback_route_is_refused_before_sending() {
        // Refused by the sanity check without any lookup.
        let e = lookup_path("127.0.0.1".parse().unwrap(), &PathOptions::default()).unwrap_err();
        assert!(matches!(e, Error::BadTarget(_)));
    }
}
