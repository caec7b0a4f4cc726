//! The probe shapes of the evasion suites (`flags`, `icmp-codes`, `ipopt`,
//! `ext6`, `lan`, `spoof`, `tunnel`) and the multi-fragment tricks of
//! `frag`: what each one is, in catalogue order, per family.
//!
//! Every list here is part of the `seq` layout: a probe's index inside its
//! suite is its position in these lists, so entries are only ever appended.

use super::Family;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The transport a probe of the `ipopt`, `ext6`, `lan` and `spoof` suites
/// carries after its IP header(s). Each is a complete, checksummed message
/// with the payload marker after its header.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// TCP SYN to [`Transport::TCP_PORT`].
    TcpSyn,
    /// UDP to [`Transport::UDP_PORT`] (a `lan` destination may name the port
    /// of its service instead, see [`LanDest::udp_port`]).
    Udp,
    /// ICMP / ICMPv6 echo request.
    Echo,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::TcpSyn, Transport::Udp, Transport::Echo];
    /// Destination port of [`Transport::TcpSyn`] (HTTPS: what a client most
    /// often opens).
    pub const TCP_PORT: u16 = 443;
    /// Destination port of [`Transport::Udp`] (DNS: what a gateway most often
    /// lets through or redirects).
    pub const UDP_PORT: u16 = 53;

    pub fn name(self) -> &'static str {
        match self {
            Transport::TcpSyn => "tcp-syn",
            Transport::Udp => "udp",
            Transport::Echo => "echo",
        }
    }

    pub(crate) fn index(self) -> u32 {
        self as u32
    }
}

/// The `flags` suite's fixed destination ports (SSH, DNS, HTTP, HTTPS, Tor's
/// usual ORPort and DirPort, Whonix's TransPort and SocksPort), followed in
/// catalogue order by [`FLAG_DRAWN_PORTS`] ports drawn per run from the run
/// key (see `RunKey::drawn_ports`).
pub const FLAG_FIXED_PORTS: [u16; 8] = [22, 53, 80, 443, 9001, 9030, 9040, 9050];
/// How many of the `flags` suite's ports are drawn per run.
pub const FLAG_DRAWN_PORTS: usize = 3;
/// Port slots of the `flags` suite: the fixed ports, then the drawn ones.
pub const FLAG_PORT_SLOTS: u32 = (FLAG_FIXED_PORTS.len() + FLAG_DRAWN_PORTS) as u32;

/// The ICMP types whose every code 0..=255 the `icmp-codes` suite sends:
/// echo, destination unreachable, time exceeded, redirect, parameter
/// problem (RFC 792), the types firewall rules usually name.
pub const ICMP_CODE_TYPES_V4: [u8; 5] = [8, 3, 11, 5, 12];
/// ICMPv6 types of the `icmp-codes` suite: the errors 1..=4, echo request
/// and the neighbour-discovery messages 133..=137 (RFC 4443, RFC 4861).
pub const ICMP_CODE_TYPES_V6: [u8; 10] = [1, 2, 3, 4, 128, 133, 134, 135, 136, 137];

/// The ICMP types of the `icmp-codes` suite in `family`, in catalogue order.
pub fn icmp_code_types(family: Family) -> &'static [u8] {
    match family {
        Family::V4 => &ICMP_CODE_TYPES_V4,
        Family::V6 => &ICMP_CODE_TYPES_V6,
    }
}

/// What the `ipopt` suite varies in the IP header.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum IpOpt {
    /// IPv4 Record Route (option 7, RFC 791), nine empty slots.
    RecordRoute,
    /// IPv4 Timestamp (option 68, RFC 791), timestamps only, four slots.
    Timestamp,
    /// IPv4 Loose Source and Record Route (131) naming the target.
    LooseSourceRoute,
    /// IPv4 Strict Source and Record Route (137) naming the target.
    StrictSourceRoute,
    /// IPv4 Router Alert (148, RFC 2113).
    RouterAlert,
    /// TTL / hop limit 1.
    Ttl1,
    /// TTL / hop limit 2.
    Ttl2,
    /// TTL / hop limit 255.
    Ttl255,
}

impl IpOpt {
    const V4: [IpOpt; 8] = [
        IpOpt::RecordRoute,
        IpOpt::Timestamp,
        IpOpt::LooseSourceRoute,
        IpOpt::StrictSourceRoute,
        IpOpt::RouterAlert,
        IpOpt::Ttl1,
        IpOpt::Ttl2,
        IpOpt::Ttl255,
    ];
    /// IPv6 has no IP options (its router alert is a hop-by-hop option, in
    /// the `ext6` suite): only the hop limits.
    const V6: [IpOpt; 3] = [IpOpt::Ttl1, IpOpt::Ttl2, IpOpt::Ttl255];

    /// The variants of `family`, in catalogue order.
    pub fn of(family: Family) -> &'static [IpOpt] {
        match family {
            Family::V4 => &IpOpt::V4,
            Family::V6 => &IpOpt::V6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            IpOpt::RecordRoute => "record-route",
            IpOpt::Timestamp => "timestamp",
            IpOpt::LooseSourceRoute => "lsrr",
            IpOpt::StrictSourceRoute => "ssrr",
            IpOpt::RouterAlert => "router-alert",
            IpOpt::Ttl1 => "ttl-1",
            IpOpt::Ttl2 => "ttl-2",
            IpOpt::Ttl255 => "ttl-255",
        }
    }

    /// The TTL / hop limit this variant sends (64 unless it is a TTL variant).
    pub fn ttl(self) -> u8 {
        match self {
            IpOpt::Ttl1 => 1,
            IpOpt::Ttl2 => 2,
            IpOpt::Ttl255 => 255,
            _ => crate::build::PROBE_TTL,
        }
    }
}

/// One header of an IPv6 extension-header chain (or IPsec header) that the
/// `ext6` suite puts before the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExtHeader {
    /// Hop-by-Hop Options (0) with a PadN option.
    HopByHop,
    /// Destination Options (60) with a PadN option.
    DestinationOptions,
    /// Routing header (43) of this routing type, segments left 0, naming the
    /// target as its only address (type 0: RFC 5095 deprecated it; type 2:
    /// RFC 6275; type 4, segment routing: RFC 8754).
    Routing(u8),
    /// An atomic Fragment header (44): offset 0, M clear (RFC 6946).
    AtomicFragment,
    /// A header of number 253 (RFC 3692, experimentation) laid out like a
    /// generic extension header: a next header no firewall knows.
    Unknown,
    /// Encapsulating Security Payload (50, RFC 4303) header: SPI and
    /// sequence number, then the transport in the clear.
    Esp,
    /// Authentication Header (51, RFC 4302) with a 96-bit ICV of zeros.
    Ah,
}

impl ExtHeader {
    /// The protocol / next-header number that announces this header.
    pub fn number(self) -> u8 {
        match self {
            ExtHeader::HopByHop => 0,
            ExtHeader::DestinationOptions => 60,
            ExtHeader::Routing(_) => 43,
            ExtHeader::AtomicFragment => 44,
            ExtHeader::Unknown => 253,
            ExtHeader::Esp => 50,
            ExtHeader::Ah => 51,
        }
    }

    /// Length of this header in bytes.
    pub fn len(self) -> usize {
        match self {
            ExtHeader::HopByHop | ExtHeader::DestinationOptions | ExtHeader::Unknown => 8,
            // 8 fixed bytes and one 16-byte address.
            ExtHeader::Routing(_) => 24,
            ExtHeader::AtomicFragment | ExtHeader::Esp => 8,
            // 12 fixed bytes and a 12-byte ICV.
            ExtHeader::Ah => 24,
        }
    }

    /// Always false: no header is empty (for clippy's `len` convention).
    pub fn is_empty(self) -> bool {
        false
    }
}

/// The header chains of the `ext6` suite.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ExtChain {
    HopByHop,
    DestinationOptions,
    Routing0,
    Routing2,
    Routing4,
    AtomicFragment,
    /// The first `n` (2..=8) headers of [`LONG_CHAIN`].
    Chain(u8),
    /// One header of an unknown number ([`ExtHeader::Unknown`]).
    UnknownNextHeader,
    Esp,
    Ah,
}

/// The chain whose prefixes make [`ExtChain::Chain`]: every header type a
/// host must accept, in RFC 8200's recommended order, Destination Options
/// repeated to reach eight.
pub const LONG_CHAIN: [ExtHeader; 8] = [
    ExtHeader::HopByHop,
    ExtHeader::DestinationOptions,
    ExtHeader::Routing(4),
    ExtHeader::AtomicFragment,
    ExtHeader::DestinationOptions,
    ExtHeader::DestinationOptions,
    ExtHeader::DestinationOptions,
    ExtHeader::DestinationOptions,
];

impl ExtChain {
    const V4: [ExtChain; 2] = [ExtChain::Esp, ExtChain::Ah];
    const V6: [ExtChain; 16] = [
        ExtChain::HopByHop,
        ExtChain::DestinationOptions,
        ExtChain::Routing0,
        ExtChain::Routing2,
        ExtChain::Routing4,
        ExtChain::AtomicFragment,
        ExtChain::Chain(2),
        ExtChain::Chain(3),
        ExtChain::Chain(4),
        ExtChain::Chain(5),
        ExtChain::Chain(6),
        ExtChain::Chain(7),
        ExtChain::Chain(8),
        ExtChain::UnknownNextHeader,
        ExtChain::Esp,
        ExtChain::Ah,
    ];

    /// The chains of `family` in catalogue order (IPv4 has only the IPsec
    /// headers).
    pub fn of(family: Family) -> &'static [ExtChain] {
        match family {
            Family::V4 => &ExtChain::V4,
            Family::V6 => &ExtChain::V6,
        }
    }

    /// The headers of this chain, outermost first.
    pub fn headers(self) -> &'static [ExtHeader] {
        match self {
            ExtChain::HopByHop => &[ExtHeader::HopByHop],
            ExtChain::DestinationOptions => &[ExtHeader::DestinationOptions],
            ExtChain::Routing0 => &[ExtHeader::Routing(0)],
            ExtChain::Routing2 => &[ExtHeader::Routing(2)],
            ExtChain::Routing4 => &[ExtHeader::Routing(4)],
            ExtChain::AtomicFragment => &[ExtHeader::AtomicFragment],
            ExtChain::Chain(n) => &LONG_CHAIN[..(n as usize).clamp(1, LONG_CHAIN.len())],
            ExtChain::UnknownNextHeader => &[ExtHeader::Unknown],
            ExtChain::Esp => &[ExtHeader::Esp],
            ExtChain::Ah => &[ExtHeader::Ah],
        }
    }

    pub fn name(self) -> String {
        match self {
            ExtChain::HopByHop => "hop-by-hop".into(),
            ExtChain::DestinationOptions => "dst-opts".into(),
            ExtChain::Routing0 => "routing-0".into(),
            ExtChain::Routing2 => "routing-2".into(),
            ExtChain::Routing4 => "routing-4".into(),
            ExtChain::AtomicFragment => "atomic-fragment".into(),
            ExtChain::Chain(n) => format!("chain-{n}"),
            ExtChain::UnknownNextHeader => "unknown-253".into(),
            ExtChain::Esp => "esp".into(),
            ExtChain::Ah => "ah".into(),
        }
    }
}

/// The destinations of the `lan` suite: addresses that are not the target
/// and that a gateway should never reach for a workstation.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum LanDest {
    /// 10.0.0.1 (RFC 1918) / fd00::1 (a unique local address, RFC 4193).
    Private10,
    /// 172.16.0.1 (RFC 1918).
    Private172,
    /// 192.168.1.1 (RFC 1918).
    Private192,
    /// 100.64.0.1 (shared address space, RFC 6598).
    SharedCgn,
    /// 169.254.1.1 / fe80::1 (link-local, RFC 3927 / RFC 4291).
    LinkLocal,
    /// 255.255.255.255 (limited broadcast).
    Broadcast,
    /// The broadcast address of the source's subnet (needs its prefix).
    SubnetBroadcast,
    /// 224.0.0.1 / ff02::1 (all hosts / all nodes).
    AllNodes,
    /// 224.0.0.251 / ff02::fb, UDP 5353 (mDNS, RFC 6762).
    Mdns,
    /// 239.255.255.250 / ff02::c, UDP 1900 (SSDP).
    Ssdp,
    /// 224.0.0.252 / ff02::1:3, UDP 5355 (LLMNR, RFC 4795).
    Llmnr,
    /// 192.88.99.1 (6to4 relay anycast, RFC 3068) / 2002:c000:201::1 (a
    /// 6to4 address, RFC 3056).
    SixToFour,
    /// 2001::1 (Teredo, RFC 4380); IPv6 only.
    Teredo,
    /// 64:ff9b::c000:201 (NAT64 well-known prefix, RFC 6052); IPv6 only.
    Nat64,
    /// The router on the gateway's uplink (needs it given).
    UplinkRouter,
    /// Another host of the gateway's uplink subnet (needs it given).
    UplinkHost,
}

impl LanDest {
    const V4: [LanDest; 14] = [
        LanDest::Private10,
        LanDest::Private172,
        LanDest::Private192,
        LanDest::SharedCgn,
        LanDest::LinkLocal,
        LanDest::Broadcast,
        LanDest::SubnetBroadcast,
        LanDest::AllNodes,
        LanDest::Mdns,
        LanDest::Ssdp,
        LanDest::Llmnr,
        LanDest::SixToFour,
        LanDest::UplinkRouter,
        LanDest::UplinkHost,
    ];
    const V6: [LanDest; 12] = [
        LanDest::Private10,
        LanDest::LinkLocal,
        LanDest::AllNodes,
        LanDest::Mdns,
        LanDest::Ssdp,
        LanDest::Llmnr,
        LanDest::SixToFour,
        LanDest::Teredo,
        LanDest::Nat64,
        LanDest::UplinkRouter,
        LanDest::UplinkHost,
        LanDest::SubnetBroadcast,
    ];

    /// The destinations of `family` in catalogue order. (IPv6 has no
    /// broadcast; its `SubnetBroadcast` is the subnet-router anycast address,
    /// RFC 4291 section 2.6.1.)
    pub fn of(family: Family) -> &'static [LanDest] {
        match family {
            Family::V4 => &LanDest::V4,
            Family::V6 => &LanDest::V6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LanDest::Private10 => "private-10",
            LanDest::Private172 => "private-172",
            LanDest::Private192 => "private-192",
            LanDest::SharedCgn => "shared-100.64",
            LanDest::LinkLocal => "link-local",
            LanDest::Broadcast => "broadcast",
            LanDest::SubnetBroadcast => "subnet-broadcast",
            LanDest::AllNodes => "all-nodes",
            LanDest::Mdns => "mdns",
            LanDest::Ssdp => "ssdp",
            LanDest::Llmnr => "llmnr",
            LanDest::SixToFour => "6to4",
            LanDest::Teredo => "teredo",
            LanDest::Nat64 => "nat64",
            LanDest::UplinkRouter => "uplink-router",
            LanDest::UplinkHost => "uplink-host",
        }
    }

    /// The fixed IPv4 address of this destination (`None` if it depends on
    /// the run's context or does not exist in IPv4).
    pub fn fixed_v4(self) -> Option<Ipv4Addr> {
        Some(match self {
            LanDest::Private10 => Ipv4Addr::new(10, 0, 0, 1),
            LanDest::Private172 => Ipv4Addr::new(172, 16, 0, 1),
            LanDest::Private192 => Ipv4Addr::new(192, 168, 1, 1),
            LanDest::SharedCgn => Ipv4Addr::new(100, 64, 0, 1),
            LanDest::LinkLocal => Ipv4Addr::new(169, 254, 1, 1),
            LanDest::Broadcast => Ipv4Addr::BROADCAST,
            LanDest::AllNodes => Ipv4Addr::new(224, 0, 0, 1),
            LanDest::Mdns => Ipv4Addr::new(224, 0, 0, 251),
            LanDest::Ssdp => Ipv4Addr::new(239, 255, 255, 250),
            LanDest::Llmnr => Ipv4Addr::new(224, 0, 0, 252),
            LanDest::SixToFour => Ipv4Addr::new(192, 88, 99, 1),
            _ => return None,
        })
    }

    /// The fixed IPv6 address of this destination (`None` if it depends on
    /// the run's context or does not exist in IPv6).
    pub fn fixed_v6(self) -> Option<Ipv6Addr> {
        Some(match self {
            LanDest::Private10 => Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
            LanDest::LinkLocal => Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
            LanDest::AllNodes => Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
            LanDest::Mdns => Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb),
            LanDest::Ssdp => Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xc),
            LanDest::Llmnr => Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 3),
            LanDest::SixToFour => Ipv6Addr::new(0x2002, 0xc000, 0x0201, 0, 0, 0, 0, 1),
            LanDest::Teredo => Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 1),
            LanDest::Nat64 => Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0xc000, 0x0201),
            _ => return None,
        })
    }

    /// The UDP port of this destination's service (53 when it has none).
    pub fn udp_port(self) -> u16 {
        match self {
            LanDest::Mdns => 5353,
            LanDest::Ssdp => 1900,
            LanDest::Llmnr => 5355,
            _ => Transport::UDP_PORT,
        }
    }
}

/// The forged source addresses of the `spoof` suite.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum SpoofSource {
    /// Another address of the sender's own subnet: the sender's address
    /// with bit 7 of its last byte flipped.
    SameSubnet,
    /// 172.16.9.9 / fd00::9: an address of another private range.
    OtherPrivate,
    /// 198.51.100.9 / 2001:db8:ffff::9: a documentation address, standing
    /// for "any internet address of the attacker's choosing".
    Documentation,
    /// The gateway's internal address (the sender's next hop; needs it).
    GatewayInternal,
    /// The gateway's external (uplink) address (needs it given).
    GatewayExternal,
    /// 169.254.9.9 / fe80::9.
    LinkLocal,
    /// 0.0.0.0 / ::.
    Unspecified,
    /// 224.0.0.9 / ff02::9: a multicast source (never valid, RFC 1122 / 4291).
    Multicast,
    /// 127.0.0.9 / ::1.
    Loopback,
    /// ::ffff:<the sender's IPv4 address or 198.51.100.9>: an IPv4-mapped
    /// IPv6 source (RFC 4291 section 2.5.5.2); IPv6 only.
    V4Mapped,
}

impl SpoofSource {
    const V4: [SpoofSource; 9] = [
        SpoofSource::SameSubnet,
        SpoofSource::OtherPrivate,
        SpoofSource::Documentation,
        SpoofSource::GatewayInternal,
        SpoofSource::GatewayExternal,
        SpoofSource::LinkLocal,
        SpoofSource::Unspecified,
        SpoofSource::Multicast,
        SpoofSource::Loopback,
    ];
    const V6: [SpoofSource; 10] = [
        SpoofSource::SameSubnet,
        SpoofSource::OtherPrivate,
        SpoofSource::Documentation,
        SpoofSource::GatewayInternal,
        SpoofSource::GatewayExternal,
        SpoofSource::LinkLocal,
        SpoofSource::Unspecified,
        SpoofSource::Multicast,
        SpoofSource::Loopback,
        SpoofSource::V4Mapped,
    ];

    /// The sources of `family` in catalogue order.
    pub fn of(family: Family) -> &'static [SpoofSource] {
        match family {
            Family::V4 => &SpoofSource::V4,
            Family::V6 => &SpoofSource::V6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SpoofSource::SameSubnet => "same-subnet",
            SpoofSource::OtherPrivate => "other-private",
            SpoofSource::Documentation => "internet",
            SpoofSource::GatewayInternal => "gateway-internal",
            SpoofSource::GatewayExternal => "gateway-external",
            SpoofSource::LinkLocal => "link-local",
            SpoofSource::Unspecified => "unspecified",
            SpoofSource::Multicast => "multicast",
            SpoofSource::Loopback => "loopback",
            SpoofSource::V4Mapped => "v4-mapped",
        }
    }
}

/// The tunnels of the `tunnel` suite. The outer packet goes from the
/// sender to the target; the inner packet is a marked UDP probe to port
/// [`Transport::UDP_PORT`] of the target of the inner family.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum TunnelKind {
    /// GRE (47, RFC 2784) carrying IPv4.
    GreIpv4,
    /// GRE carrying IPv6.
    GreIpv6,
    /// IPv4 in IP (protocol 4, RFC 2003).
    Ipv4InIp,
    /// IPv6 in IP (protocol 41, RFC 4213: 6in4 over IPv4, 6in6 over IPv6).
    Ipv6InIp,
    /// Teredo: IPv6 in UDP to port 3544 (RFC 4380); IPv4 only.
    Teredo,
    /// VXLAN: Ethernet in UDP to port 4789 (RFC 7348), inner frame of the
    /// outer family.
    Vxlan,
}

impl TunnelKind {
    const V4: [TunnelKind; 6] = [
        TunnelKind::GreIpv4,
        TunnelKind::GreIpv6,
        TunnelKind::Ipv4InIp,
        TunnelKind::Ipv6InIp,
        TunnelKind::Teredo,
        TunnelKind::Vxlan,
    ];
    const V6: [TunnelKind; 5] = [
        TunnelKind::GreIpv4,
        TunnelKind::GreIpv6,
        TunnelKind::Ipv4InIp,
        TunnelKind::Ipv6InIp,
        TunnelKind::Vxlan,
    ];

    /// The tunnels of `family` (the outer family) in catalogue order.
    pub fn of(family: Family) -> &'static [TunnelKind] {
        match family {
            Family::V4 => &TunnelKind::V4,
            Family::V6 => &TunnelKind::V6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TunnelKind::GreIpv4 => "gre-ipv4",
            TunnelKind::GreIpv6 => "gre-ipv6",
            TunnelKind::Ipv4InIp => "ipv4-in-ip",
            TunnelKind::Ipv6InIp => "ipv6-in-ip",
            TunnelKind::Teredo => "teredo",
            TunnelKind::Vxlan => "vxlan",
        }
    }

    /// The family of the inner packet.
    pub fn inner_family(self, outer: Family) -> Family {
        match self {
            TunnelKind::GreIpv4 | TunnelKind::Ipv4InIp => Family::V4,
            TunnelKind::GreIpv6 | TunnelKind::Ipv6InIp | TunnelKind::Teredo => Family::V6,
            TunnelKind::Vxlan => outer,
        }
    }
}

/// UDP port of Teredo (RFC 4380).
pub const TEREDO_PORT: u16 = 3544;
/// UDP port of VXLAN (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;
