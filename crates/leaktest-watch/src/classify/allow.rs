//! `--allow`: endpoints the operator lets out on purpose, and what each may
//! carry.
//!
//! Syntax: `[KIND:]ADDR[/PREFIX]:PORT[-PORT]`, IPv6 in brackets
//! (`[2001:db8::/32]:51820`). Kinds:
//!
//! | kind | what passes | counted as |
//! |------|-------------|------------|
//! | `any` (the default) | TCP, UDP, SCTP, DCCP or UDP-Lite to that address and port, whatever it carries | allowed |
//! | `tcp` | TCP only | allowed |
//! | `udp` | UDP only (a WireGuard or OpenVPN-UDP server) | allowed |
//! | `tls` | TCP whose flow is TLS from its first byte, and no cleartext | allowed |
//! | `tor` | a Tor relay's or bridge's ORPort given by hand: TLS, as from the control port | Tor |
//! | `obfs4` | an obfs4 bridge given by hand | Tor |
//!
//! `tor` and `obfs4` take one address and one port (they join the Tor
//! allowlist); the others take a network and a port range, e.g. a VPN
//! provider's server range. Traffic must come from one of the watched
//! interface's own addresses (when known): a forwarded packet to an allowed
//! endpoint is still a leak.

use ipnet::IpNet;
use leaktest_tor::Roles;
use leaktest_wire::IpProtocol;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;

/// What an `--allow` entry lets through (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowKind {
    Any,
    Tcp,
    Udp,
    Tls,
    /// `--allow-net`: every protocol and port to a network the operator lets
    /// out on purpose (a LAN).
    Net,
}

impl AllowKind {
    pub fn name(self) -> &'static str {
        match self {
            AllowKind::Any => "any",
            AllowKind::Tcp => "tcp",
            AllowKind::Udp => "udp",
            AllowKind::Tls => "tls",
            AllowKind::Net => "net",
        }
    }

    /// Whether a packet of `p` may match this kind.
    pub fn admits(self, p: IpProtocol) -> bool {
        match self {
            AllowKind::Any => p.has_ports(),
            AllowKind::Tcp | AllowKind::Tls => p == IpProtocol::TCP,
            AllowKind::Udp => p == IpProtocol::UDP,
            AllowKind::Net => true,
        }
    }
}

/// One non-Tor `--allow` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowEntry {
    pub kind: AllowKind,
    pub net: IpNet,
    pub ports: RangeInclusive<u16>,
}

impl AllowEntry {
    /// Whether a packet of `protocol` to `dst` matches.
    pub fn matches(&self, protocol: IpProtocol, dst: &SocketAddr) -> bool {
        if self.kind == AllowKind::Net {
            return self.contains(dst.ip());
        }
        self.kind.admits(protocol)
            && self.ports.contains(&dst.port())
            && self.net.contains(&canonical(dst.ip()))
    }
}

impl AllowEntry {
    /// Whether `addr` is inside the entry's network (IPv4-mapped IPv6 as
    /// its IPv4 address).
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.net.contains(&canonical(addr))
    }
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let net = match self.net {
            IpNet::V4(n) if n.prefix_len() == 32 => n.addr().to_string(),
            IpNet::V6(n) if n.prefix_len() == 128 => format!("[{}]", n.addr()),
            IpNet::V4(n) => n.to_string(),
            IpNet::V6(n) => format!("[{n}]"),
        };
        if self.kind == AllowKind::Net {
            return write!(f, "net:{net}");
        }
        let (lo, hi) = (*self.ports.start(), *self.ports.end());
        if lo == hi {
            write!(f, "{}:{net}:{lo}", self.kind.name())
        } else {
            write!(f, "{}:{net}:{lo}-{hi}", self.kind.name())
        }
    }
}

/// An IPv4-mapped IPv6 address is its IPv4 address.
fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// A parsed `--allow` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowSpec {
    /// Counted as allowed traffic.
    Entry(AllowEntry),
    /// Joins the Tor allowlist with these roles.
    Tor(SocketAddr, Roles),
}

/// A `--allow` value that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad --allow value {value:?}: {why}; expected [any|tcp|udp|tls|tor|obfs4:]ADDR[/PREFIX]:PORT[-PORT], e.g. udp:198.51.100.0/24:51820 or tls:[2001:db8::7]:443")]
pub struct AllowError {
    pub value: String,
    pub why: &'static str,
}

/// Parses one `--allow` value (see the module documentation).
pub fn parse_allow(value: &str) -> Result<AllowSpec, AllowError> {
    let err = |why| AllowError {
        value: value.to_string(),
        why,
    };
    let v = value.trim();
    let (kind, rest) = match v.split_once(':') {
        Some((k, rest))
            if k.chars().all(|c| c.is_ascii_alphanumeric())
                && !k.is_empty()
                && k.parse::<u8>().is_err()
                && !rest.starts_with(':') =>
        {
            (Some(k.to_ascii_lowercase()), rest)
        }
        _ => (None, v),
    };
    // ADDR[/PREFIX] and PORT[-PORT]; IPv6 in brackets.
    let (addr, ports) = if let Some(inner) = rest.strip_prefix('[') {
        let (a, p) = inner
            .split_once("]:")
            .ok_or_else(|| err("an IPv6 address goes in brackets, then :PORT"))?;
        (a, p)
    } else {
        let (a, p) = rest.rsplit_once(':').ok_or_else(|| err("no port"))?;
        if a.contains(':') {
            return Err(err("an IPv6 address goes in brackets"));
        }
        (a, p)
    };
    let net = parse_net(addr).map_err(err)?;
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (a.parse::<u16>(), b.parse::<u16>()),
        None => (ports.parse::<u16>(), ports.parse::<u16>()),
    };
    let (Ok(lo), Ok(hi)) = (lo, hi) else {
        return Err(err("not a port or port range"));
    };
    if lo == 0 || lo > hi {
        return Err(err("ports run from 1 to 65535, low to high"));
    }
    let kind = match kind.as_deref() {
        None | Some("any") => AllowKind::Any,
        Some("tcp") => AllowKind::Tcp,
        Some("udp") => AllowKind::Udp,
        Some("tls") => AllowKind::Tls,
        Some(k @ ("tor" | "obfs4")) => {
            let single = matches!(net, IpNet::V4(n) if n.prefix_len() == 32)
                || matches!(net, IpNet::V6(n) if n.prefix_len() == 128);
            if !single || lo != hi {
                return Err(err("tor: and obfs4: take one address and one port"));
            }
            let role = if k == "tor" {
                Roles::OR_PORT
            } else {
                Roles::BRIDGE_OBFS4
            };
            return Ok(AllowSpec::Tor(SocketAddr::new(net.addr(), lo), role));
        }
        Some(_) => return Err(err("unknown kind")),
    };
    Ok(AllowSpec::Entry(AllowEntry {
        kind,
        net,
        ports: lo..=hi,
    }))
}

/// A `--allow-net` value that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "bad --allow-net value {value:?}: {why}; expected ADDR/PREFIX, e.g. 192.168.0.0/16 or fd00::/8"
)]
pub struct AllowNetError {
    pub value: String,
    pub why: &'static str,
}

/// `ADDR[/PREFIX]` as a network (host bits cleared); an IPv4-mapped IPv6
/// network of prefix 96 or more is its IPv4 network.
fn parse_net(addr: &str) -> Result<IpNet, &'static str> {
    let net: IpNet = if addr.contains('/') {
        addr.parse::<IpNet>()
            .map_err(|_| "not an address or network")?
            .trunc()
    } else {
        IpNet::from(
            addr.parse::<IpAddr>()
                .map_err(|_| "not an address or network")?,
        )
    };
    Ok(match net {
        IpNet::V6(n) => match n.addr().to_ipv4_mapped() {
            Some(a) if n.prefix_len() >= 96 => {
                IpNet::new(IpAddr::V4(a), n.prefix_len() - 96).map_err(|_| "bad prefix")?
            }
            _ => net,
        },
        n => n,
    })
}

/// Parses one `--allow-net` value: `ADDR/PREFIX` (or one address), a
/// network every frame to which is counted as allowed, probes included.
pub fn parse_allow_net(value: &str) -> Result<AllowEntry, AllowNetError> {
    let err = |why| AllowNetError {
        value: value.to_string(),
        why,
    };
    let v = value.trim();
    let v = v
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(v);
    let net = parse_net(v).map_err(err)?;
    if net.prefix_len() == 0 {
        return Err(err("a network of prefix 0 is the whole internet"));
    }
    Ok(AllowEntry {
        kind: AllowKind::Net,
        net,
        ports: 0..=u16::MAX,
    })
}

/// Parses every `--allow` value: the entries, and the endpoints that join
/// the Tor allowlist.
pub fn parse_allow_list<S: AsRef<str>>(
    values: &[S],
) -> Result<(Vec<AllowEntry>, leaktest_tor::Allowlist), AllowError> {
    let mut entries = Vec::new();
    let mut tor = leaktest_tor::Allowlist::new();
    for v in values {
        match parse_allow(v.as_ref())? {
            AllowSpec::Entry(e) => entries.push(e),
            AllowSpec::Tor(a, r) => tor.insert_with(a, r),
        }
    }
    Ok((entries, tor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(v: &str) -> AllowEntry {
        match parse_allow(v).unwrap() {
            AllowSpec::Entry(e) => e,
            t => panic!("{t:?}"),
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn syntax() {
        let e = entry("198.51.100.7:443");
        assert_eq!((e.kind, e.ports.clone()), (AllowKind::Any, 443..=443));
        assert_eq!(e.to_string(), "any:198.51.100.7:443");
        let e = entry("udp:198.51.100.0/24:51820");
        assert!(e.matches(IpProtocol::UDP, &sa("198.51.100.99:51820")));
        assert!(!e.matches(IpProtocol::TCP, &sa("198.51.100.99:51820")));
        assert!(!e.matches(IpProtocol::UDP, &sa("198.51.101.1:51820")));
        assert_eq!(e.to_string(), "udp:198.51.100.0/24:51820");
        let e = entry("TLS:[2001:db8::/32]:443-444");
        assert!(e.matches(IpProtocol::TCP, &sa("[2001:db8:5::1]:444")));
        assert!(!e.matches(IpProtocol::UDP, &sa("[2001:db8:5::1]:444")));
        assert_eq!(e.to_string(), "tls:[2001:db8::/32]:443-444");
        // The network is truncated to its prefix; IPv4-mapped is IPv4.
        assert_eq!(
            entry("tcp:198.51.100.77/24:1").net.to_string(),
            "198.51.100.0/24"
        );
        assert!(
            entry("[::ffff:198.51.100.7]:1194").matches(IpProtocol::UDP, &sa("198.51.100.7:1194"))
        );
        assert!(entry("[2001:db8::7]:1194").matches(IpProtocol::SCTP, &sa("[2001:db8::7]:1194")));
        assert!(!entry("[2001:db8::7]:1194").matches(IpProtocol::ICMPV6, &sa("[2001:db8::7]:1194")));
        assert_eq!(
            parse_allow("tor:203.0.113.5:5555").unwrap(),
            AllowSpec::Tor(sa("203.0.113.5:5555"), Roles::OR_PORT)
        );
        assert_eq!(
            parse_allow("obfs4:[2001:db8::5]:443").unwrap(),
            AllowSpec::Tor(sa("[2001:db8::5]:443"), Roles::BRIDGE_OBFS4)
        );
        for bad in [
            "1.2.3.4",
            "1.2.3.4:0",
            "1.2.3.4:70000",
            "2001:db8::1:443",
            "host:443",
            "",
            "ssh:1.2.3.4:22",
            "tor:198.51.100.0/24:443",
            "tor:198.51.100.7:443-444",
            "udp:1.2.3.4:9-8",
            "[2001:db8::1:443",
        ] {
            assert!(parse_allow(bad).is_err(), "{bad}");
        }
        let (entries, tor) =
            parse_allow_list(&["udp:198.51.100.7:51820", "tor:203.0.113.5:5555"]).unwrap();
        assert_eq!((entries.len(), tor.len()), (1, 1));
    }
}
