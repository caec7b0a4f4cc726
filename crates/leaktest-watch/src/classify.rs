//! The classifier: what each outbound frame is (issue 3, item 2).
//!
//! Rules, first match wins:
//! 1. The frame carries a valid marker of a probe: **leak**, attributed to
//!    that probe, whatever its destination (probe traffic must never leave
//!    in the clear, not even towards a Tor relay).
//! 2. A canary frame (EtherType [`CANARY_ETHERTYPE`] to the canary MAC from
//!    our own MAC, with the canary magic): [`Class::Canary`].
//! 3. TCP to an (address, port) the gateway's own Tor uses, from one of the
//!    gateway's own addresses: **Tor**.
//! 4. Link housekeeping sent by the gateway itself (its own MAC, its own or
//!    an unspecified/link-local source): ARP, IPv6 RS/NS/NA, MLD reports,
//!    IGMP reports, DHCPv4/DHCPv6 client messages: **housekeeping**, or a
//!    leak with `strict`.
//! 5. Anything else: **leak**.
//!
//! Per frame the classifier parses headers once, with leaktest-wire's
//! [`FrameSummary`] (the decoder's own parser), without allocating; the Tor
//! and housekeeping paths never allocate.

use leaktest_capture::canary::CANARY_MAGIC;
use leaktest_capture::{CANARY_DST_MAC, CANARY_ETHERTYPE};
use leaktest_wire::{
    attribute_parsed, Attribution, Family, FrameSummary, LinkType, MarkerKeys, TcpFlags,
};
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The set of TCP endpoints the gateway's Tor may connect to.
///
/// Implemented for the set types a caller may hold; the Tor control-port
/// allowlist implements it too.
pub trait TorEndpoints {
    fn is_tor_endpoint(&self, a: &SocketAddr) -> bool;
}

impl TorEndpoints for leaktest_tor::Allowlist {
    fn is_tor_endpoint(&self, a: &SocketAddr) -> bool {
        self.contains(a)
    }
}

impl TorEndpoints for HashSet<SocketAddr> {
    fn is_tor_endpoint(&self, a: &SocketAddr) -> bool {
        self.contains(a)
    }
}

impl TorEndpoints for BTreeSet<SocketAddr> {
    fn is_tor_endpoint(&self, a: &SocketAddr) -> bool {
        self.contains(a)
    }
}

impl TorEndpoints for [SocketAddr] {
    fn is_tor_endpoint(&self, a: &SocketAddr) -> bool {
        self.contains(a)
    }
}

impl TorEndpoints for Vec<SocketAddr> {
    fn is_tor_endpoint(&self, a: &SocketAddr) -> bool {
        self.contains(a)
    }
}

/// What the classifier must know about the gateway it watches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassifierConfig {
    /// Housekeeping counts as a leak (`--strict`).
    pub strict: bool,
    /// MAC addresses of the watched interface. Housekeeping must come from
    /// one of them (ignored for raw-IP links, which have no MAC).
    pub own_macs: Vec<[u8; 6]>,
    /// IP addresses of the watched interface. Tor traffic and housekeeping
    /// must come from one of them (housekeeping may also use the unspecified
    /// address or an IPv6 link-local address, as DAD, DHCP and MLD do).
    /// When empty, Tor traffic is recognised by destination alone.
    pub own_addrs: Vec<IpAddr>,
}

/// Kinds of link housekeeping a gateway sends by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HousekeepingKind {
    Arp,
    RouterSolicitation,
    NeighborSolicitation,
    NeighborAdvertisement,
    /// MLDv1 report or done, MLDv2 report.
    Mld,
    /// IGMP membership report or leave (the IPv4 counterpart of MLD).
    Igmp,
    Dhcpv4,
    Dhcpv6,
}

impl HousekeepingKind {
    pub const ALL: [HousekeepingKind; 8] = [
        HousekeepingKind::Arp,
        HousekeepingKind::RouterSolicitation,
        HousekeepingKind::NeighborSolicitation,
        HousekeepingKind::NeighborAdvertisement,
        HousekeepingKind::Mld,
        HousekeepingKind::Igmp,
        HousekeepingKind::Dhcpv4,
        HousekeepingKind::Dhcpv6,
    ];

    /// Short stable name, used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            HousekeepingKind::Arp => "arp",
            HousekeepingKind::RouterSolicitation => "nd-rs",
            HousekeepingKind::NeighborSolicitation => "nd-ns",
            HousekeepingKind::NeighborAdvertisement => "nd-na",
            HousekeepingKind::Mld => "mld",
            HousekeepingKind::Igmp => "igmp",
            HousekeepingKind::Dhcpv4 => "dhcpv4",
            HousekeepingKind::Dhcpv6 => "dhcpv6",
        }
    }

    /// Position in [`HousekeepingKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for HousekeepingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The address family of a leaked frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeakFamily {
    Ipv4,
    Ipv6,
    /// Not IP (ARP, LLDP, anything at L2), or unreadable.
    Other,
}

impl LeakFamily {
    pub fn name(self) -> &'static str {
        match self {
            LeakFamily::Ipv4 => "ipv4",
            LeakFamily::Ipv6 => "ipv6",
            LeakFamily::Other => "other",
        }
    }
}

impl From<Family> for LeakFamily {
    fn from(f: Family) -> Self {
        match f {
            Family::V4 => LeakFamily::Ipv4,
            Family::V6 => LeakFamily::Ipv6,
        }
    }
}

/// Why a frame is a leak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeakCause {
    /// It carries a probe's marker.
    Probe,
    /// Housekeeping, counted as a leak because of `--strict`.
    StrictHousekeeping(HousekeepingKind),
    /// Neither Tor nor the gateway's own housekeeping.
    Unexpected,
}

impl LeakCause {
    pub fn name(self) -> &'static str {
        match self {
            LeakCause::Probe => "probe",
            LeakCause::StrictHousekeeping(_) => "strict-housekeeping",
            LeakCause::Unexpected => "unexpected",
        }
    }
}

/// What the watcher knows about one leaked frame. Plain data, `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leak {
    pub family: LeakFamily,
    pub cause: LeakCause,
    pub src_mac: Option<[u8; 6]>,
    pub dst_mac: Option<[u8; 6]>,
    pub ethertype: Option<u16>,
    pub protocol: Option<u8>,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub icmp_type: Option<u8>,
    pub tcp_flags: Option<TcpFlags>,
    /// A fragment with a non-zero offset (no L4 header).
    pub fragment: bool,
    pub probe: Option<Attribution>,
}

impl Leak {
    /// Describes any frame as a leak of the given cause, without probe
    /// attribution (e.g. a frame the session itself decided is a leak, such
    /// as a canary-shaped frame that is not one of its own). Never panics.
    pub fn of_frame(frame: &[u8], link: LinkType, cause: LeakCause) -> Leak {
        Leak::from_summary(&FrameSummary::parse(frame, link), cause, None)
    }

    fn from_summary(p: &FrameSummary, cause: LeakCause, probe: Option<Attribution>) -> Leak {
        let family = match p.family {
            Some(Family::V4) => LeakFamily::Ipv4,
            Some(Family::V6) => LeakFamily::Ipv6,
            None => LeakFamily::Other,
        };
        Leak {
            family,
            cause,
            src_mac: p.l2_src,
            dst_mac: p.l2_dst,
            ethertype: p.ethertype,
            protocol: p.protocol,
            src: p.src,
            dst: p.dst,
            src_port: p.src_port,
            dst_port: p.dst_port,
            icmp_type: p.icmp_type,
            tcp_flags: p.tcp_flags,
            fragment: p.frag_offset != 0,
            probe,
        }
    }
}

/// The class of one outbound frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Leak(Leak),
    /// TCP to this Tor endpoint.
    Tor(SocketAddr),
    Housekeeping(HousekeepingKind),
    Canary,
}

/// Classifies frames; holds the marker keys (which learn runs as probes are seen).
#[derive(Debug)]
pub struct Classifier {
    cfg: ClassifierConfig,
    keys: MarkerKeys,
}

impl Classifier {
    pub fn new(cfg: ClassifierConfig, keys: MarkerKeys) -> Classifier {
        Classifier { cfg, keys }
    }

    pub fn config(&self) -> &ClassifierConfig {
        &self.cfg
    }

    /// Replaces the gateway's own addresses (they may change while watching).
    pub fn set_own_addrs(&mut self, addrs: Vec<IpAddr>) {
        self.cfg.own_addrs = addrs;
    }

    /// The marker keys, with the runs learnt so far.
    pub fn keys(&self) -> &MarkerKeys {
        &self.keys
    }

    /// Classifies one outbound frame. Never panics on any input.
    pub fn classify<A: TorEndpoints + ?Sized>(
        &mut self,
        frame: &[u8],
        link: LinkType,
        allow: &A,
    ) -> Class {
        let p = FrameSummary::parse(frame, link);
        if let Some(probe) = attribute_parsed(frame, &p, &mut self.keys) {
            return Class::Leak(Leak::from_summary(&p, LeakCause::Probe, Some(probe)));
        }
        if self.is_canary(frame, &p) {
            return Class::Canary;
        }
        if let Some(ep) = self.tor_endpoint(&p, allow) {
            return Class::Tor(ep);
        }
        if let Some(kind) = self.housekeeping(frame, &p) {
            if self.cfg.strict {
                return Class::Leak(Leak::from_summary(
                    &p,
                    LeakCause::StrictHousekeeping(kind),
                    None,
                ));
            }
            return Class::Housekeeping(kind);
        }
        Class::Leak(Leak::from_summary(&p, LeakCause::Unexpected, None))
    }

    /// A canary as leaktest-capture sends them: untagged, EtherType
    /// [`CANARY_ETHERTYPE`], to [`CANARY_DST_MAC`] (which no station owns),
    /// from our own MAC, starting with [`CANARY_MAGIC`]. Whether it is one of
    /// this session's canaries is the session's business (it holds the key);
    /// any other frame of that EtherType is classified like other traffic.
    fn is_canary(&self, frame: &[u8], p: &FrameSummary) -> bool {
        p.ethertype == Some(CANARY_ETHERTYPE)
            && frame.get(12..14) == Some(&CANARY_ETHERTYPE.to_be_bytes()[..])
            && p.l2_dst == Some(CANARY_DST_MAC)
            && self.is_own_mac(p.l2_src)
            && frame.get(14..22) == Some(&CANARY_MAGIC[..])
    }

    fn is_own_addr(&self, a: IpAddr) -> bool {
        self.cfg.own_addrs.contains(&a)
    }

    fn is_own_mac(&self, m: Option<[u8; 6]>) -> bool {
        match m {
            // Raw-IP link: no MAC to check.
            None => true,
            Some(m) => self.cfg.own_macs.contains(&m),
        }
    }

    fn tor_endpoint<A: TorEndpoints + ?Sized>(
        &self,
        p: &FrameSummary,
        allow: &A,
    ) -> Option<SocketAddr> {
        if p.protocol != Some(6) || p.frag_offset != 0 {
            return None;
        }
        let dst = SocketAddr::new(p.dst?, p.dst_port?);
        if !self.cfg.own_addrs.is_empty() && !self.is_own_addr(p.src?) {
            return None;
        }
        allow.is_tor_endpoint(&dst).then_some(dst)
    }

    /// An IPv4 source the gateway may use for housekeeping.
    fn own_or_unspecified4(&self, a: Ipv4Addr) -> bool {
        a.is_unspecified() || self.is_own_addr(IpAddr::V4(a))
    }

    /// An IPv6 source the gateway may use for housekeeping: its own, the
    /// unspecified address (DAD, early MLD) or any link-local address (a
    /// link-local address being configured is not yet in the list).
    fn own_or_local6(&self, a: Ipv6Addr) -> bool {
        a.is_unspecified()
            || (a.segments()[0] & 0xffc0) == 0xfe80
            || self.is_own_addr(IpAddr::V6(a))
    }

    fn housekeeping(&self, frame: &[u8], p: &FrameSummary) -> Option<HousekeepingKind> {
        if !self.is_own_mac(p.l2_src) {
            return None;
        }
        if p.is_arp() {
            let (sender_mac, sender_ip) = p.arp_sender?;
            let ok = matches!(p.arp_op, Some(1 | 2))
                && self.is_own_mac(Some(sender_mac))
                && p.l2_src == Some(sender_mac)
                && self.own_or_unspecified4(sender_ip);
            return ok.then_some(HousekeepingKind::Arp);
        }
        if p.frag_offset != 0 || p.more_fragments {
            return None;
        }
        match (p.src?, p.dst?) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => match p.protocol? {
                // IGMP membership report v1/v2/v3 or leave, link-local scope.
                2 => {
                    let ty = *p.upper_bytes(frame).first()?;
                    let ok = matches!(ty, 0x12 | 0x16 | 0x17 | 0x22)
                        && p.ttl == Some(1)
                        && dst.is_multicast()
                        && self.own_or_unspecified4(src);
                    ok.then_some(HousekeepingKind::Igmp)
                }
                17 if p.src_port == Some(68) && p.dst_port == Some(67) => {
                    let ok =
                        self.own_or_unspecified4(src) && self.dhcpv4_client(p.udp_payload(frame));
                    ok.then_some(HousekeepingKind::Dhcpv4)
                }
                _ => None,
            },
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                if !self.own_or_local6(src) {
                    return None;
                }
                let hop_limit = p.ttl?;
                match p.protocol? {
                    58 => {
                        let t = p.icmp_type?;
                        match t {
                            133 | 135 | 136 if hop_limit == 255 => Some(match t {
                                133 => HousekeepingKind::RouterSolicitation,
                                135 => HousekeepingKind::NeighborSolicitation,
                                _ => HousekeepingKind::NeighborAdvertisement,
                            }),
                            131 | 132 | 143
                                if hop_limit == 1 && (dst.segments()[0] & 0xff00) == 0xff00 =>
                            {
                                Some(HousekeepingKind::Mld)
                            }
                            _ => None,
                        }
                    }
                    17 if p.src_port == Some(546) && p.dst_port == Some(547) => {
                        // Client message types: Solicit, Request, Confirm,
                        // Renew, Rebind, Release, Decline, Information-request.
                        let ok = matches!(
                            p.udp_payload(frame).first(),
                            Some(1 | 3 | 4 | 5 | 6 | 8 | 9 | 11)
                        );
                        ok.then_some(HousekeepingKind::Dhcpv6)
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// A BOOTREQUEST for one of our own MACs, with the DHCP magic cookie.
    fn dhcpv4_client(&self, b: &[u8]) -> bool {
        const COOKIE: [u8; 4] = [0x63, 0x82, 0x53, 0x63];
        let (Some(&op), Some(&htype), Some(&hlen)) = (b.first(), b.get(1), b.get(2)) else {
            return false;
        };
        if op != 1 || htype != 1 || hlen != 6 || b.get(236..240) != Some(&COOKIE) {
            return false;
        }
        match b.get(28..34).and_then(|c| <[u8; 6]>::try_from(c).ok()) {
            Some(chaddr) => self.cfg.own_macs.is_empty() || self.cfg.own_macs.contains(&chaddr),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use leaktest_wire::catalogue::ProbeKind;
    use leaktest_wire::{
        Endpoints, Evidence, ProbeBuilder, ProbeSpec, RunKey, Suite, L2, MAX_PROBE_FRAME,
    };

    fn cfg() -> ClassifierConfig {
        ClassifierConfig {
            strict: false,
            own_macs: vec![GW_MAC],
            own_addrs: vec![IpAddr::V4(GW4), IpAddr::V6(GW6), IpAddr::V6(GW6_LL)],
        }
    }

    fn tor_set() -> HashSet<SocketAddr> {
        [
            SocketAddr::new(IpAddr::V4(NET4), 5555),
            SocketAddr::new(IpAddr::V6(NET6), 8443),
        ]
        .into_iter()
        .collect()
    }

    fn classify(frame: &[u8]) -> Class {
        Classifier::new(cfg(), MarkerKeys::open()).classify(frame, LinkType::Ethernet, &tor_set())
    }

    fn leak(c: Class) -> Leak {
        match c {
            Class::Leak(l) => l,
            other => panic!("expected a leak, got {other:?}"),
        }
    }

    fn udp_probe(key: &RunKey, dport: u16) -> (ProbeSpec, Vec<u8>) {
        let spec = ProbeSpec {
            family: Family::V4,
            kind: ProbeKind::Udp { dst_port: dport },
        };
        let m = key.payload_marker(spec.seq());
        (spec, eth4(WS4, NET4, 17, &udp(40000, dport, &m)))
    }

    #[test]
    fn probe_marker_is_a_leak_even_towards_a_tor_relay() {
        let key = RunKey::open(0xfeed);
        let spec = ProbeSpec {
            family: Family::V4,
            kind: ProbeKind::Tcp {
                flags: TcpFlags(TcpFlags::SYN),
                dst_port: 5555,
            },
        };
        let m = key.payload_marker(spec.seq());
        // From the gateway's own address, to an allowlisted relay port: still a leak.
        let f = eth4(GW4, NET4, 6, &tcp(33000, 5555, TcpFlags::SYN, &m));
        let l = leak(classify(&f));
        assert_eq!(l.cause, LeakCause::Probe);
        let p = l.probe.unwrap();
        assert_eq!((p.spec, p.seq, p.run.run_id), (spec, spec.seq(), 0xfeed));
        assert_eq!(p.evidence, Evidence::Payload);
        assert_eq!(l.family, LeakFamily::Ipv4);
        assert_eq!((l.protocol, l.dst_port), (Some(6), Some(5555)));
        assert_eq!(l.tcp_flags, Some(TcpFlags(TcpFlags::SYN)));
    }

    fn builder(key: RunKey, l2: Option<L2>) -> ProbeBuilder {
        ProbeBuilder::new(
            key,
            Endpoints {
                src4: Some(WS4),
                dst4: Some(NET4),
                src6: Some(GW6),
                dst6: Some(NET6),
            },
            l2,
        )
    }

    /// A sample of every suite in both families, every probe of the small suites.
    fn sample_probes() -> Vec<ProbeSpec> {
        let mut v = Vec::new();
        for family in Family::BOTH {
            for suite in Suite::ALL {
                v.extend(ProbeSpec::all(family, suite).filter(|p| {
                    p.dst_port()
                        .is_none_or(|d| d % 997 == 0 || d == 53 || d == 5555)
                }));
            }
        }
        v
    }

    #[test]
    fn every_kind_of_built_probe_is_an_attributed_leak() {
        let key = RunKey::open(0x5eed);
        for l2 in [
            Some(L2 {
                src: GW_MAC,
                dst: ROUTER_MAC,
            }),
            None,
        ] {
            let link = if l2.is_some() {
                LinkType::Ethernet
            } else {
                LinkType::RawIp
            };
            let b = builder(key, l2);
            // The relay endpoints the probes might hit are allowlisted: no matter.
            let allow: HashSet<SocketAddr> = [
                SocketAddr::new(IpAddr::V4(NET4), 5555),
                SocketAddr::new(IpAddr::V6(NET6), 5555),
            ]
            .into_iter()
            .collect();
            let mut c = Classifier::new(cfg(), MarkerKeys::open());
            let mut buf = [0u8; MAX_PROBE_FRAME];
            let probes = sample_probes();
            assert!(probes.len() > 1000);
            for spec in probes {
                let n = b.write(&spec, &mut buf);
                assert!(n > 0, "{spec:?}");
                let l = leak(c.classify(&buf[..n], link, &allow));
                let p = l.probe.unwrap_or_else(|| panic!("{spec:?} not attributed"));
                assert_eq!((p.spec, p.seq, p.run), (spec, spec.seq(), key));
                assert_eq!(p.evidence, Evidence::Payload);
                assert_eq!(l.cause, LeakCause::Probe);
                assert_eq!(l.family, LeakFamily::from(spec.family));
                // An IPv6 `ip` probe whose next header is the Fragment header
                // has marker bytes where the fragment fields are: the wire
                // shows another protocol then.
                if !(spec.family == Family::V6 && spec.kind == (ProbeKind::Ip { protocol: 44 })) {
                    assert_eq!(l.protocol, Some(spec.protocol()), "{spec:?}");
                }
                // (An `ip` probe of protocol 6 or 17 has marker bytes where
                // ports would be: the leak shows what is on the wire.)
                if matches!(spec.suite(), Suite::Tcp | Suite::Udp) {
                    assert_eq!(l.dst_port, spec.dst_port(), "{spec:?}");
                }
                assert_eq!(
                    l.tcp_flags.filter(|_| spec.suite() == Suite::Tcp),
                    spec.tcp_flags()
                );
                assert_eq!(
                    l.icmp_type.filter(|_| spec.suite() == Suite::Icmp),
                    spec.icmp_type()
                );
            }
        }
    }

    #[test]
    fn header_marker_alone_attributes_once_the_run_is_known() {
        let key = RunKey::open(0x4ead);
        let b = builder(
            key,
            Some(L2 {
                src: GW_MAC,
                dst: ROUTER_MAC,
            }),
        );
        let mut buf = [0u8; MAX_PROBE_FRAME];
        let spec = ProbeSpec {
            family: Family::V4,
            kind: ProbeKind::Tcp {
                flags: TcpFlags(TcpFlags::SYN),
                dst_port: 443,
            },
        };
        let n = b.write(&spec, &mut buf);
        // Headers only (a gateway that rewrote or dropped the payload).
        let headers_only = eth4(WS4, NET4, 6, &buf[14 + 20..14 + 20 + 20]);
        let mut headers_only = headers_only;
        headers_only[14..14 + 20].copy_from_slice(&buf[14..14 + 20]);
        headers_only[14 + 2..14 + 4].copy_from_slice(&40u16.to_be_bytes());
        let mut c = Classifier::new(cfg(), MarkerKeys::open());
        let allow: Vec<SocketAddr> = vec![];
        // Unknown run: nothing ties it to a probe.
        assert_eq!(
            leak(c.classify(&headers_only, LinkType::Ethernet, &allow)).probe,
            None
        );
        // Once a payload marker of the run was seen, the headers suffice.
        assert!(leak(c.classify(&buf[..n], LinkType::Ethernet, &allow))
            .probe
            .is_some());
        let p = leak(c.classify(&headers_only, LinkType::Ethernet, &allow))
            .probe
            .expect("header attribution");
        assert_eq!((p.spec, p.evidence), (spec, Evidence::Header));
    }

    #[test]
    fn probe_quoted_in_an_icmp_error_is_attributed() {
        let key = RunKey::open(7);
        let (spec, probe) = udp_probe(&key, 53);
        // The gateway answers with port unreachable quoting the probe's IP packet.
        let mut body = vec![0u8; 4];
        body.extend_from_slice(&probe[14..]);
        let f = eth4(GW4, WS4, 1, &icmp(3, 3, &body));
        let l = leak(classify(&f));
        assert_eq!(l.probe.map(|p| p.spec), Some(spec));
        assert_eq!((l.protocol, l.icmp_type), (Some(1), Some(3)));
    }

    #[test]
    fn shared_key_marker_needs_the_secret() {
        let secret = [9u8; 16];
        let key = RunKey::shared(&secret, 5);
        let (spec, f) = udp_probe(&key, 1234);
        let l = leak(classify(&f));
        assert_eq!((l.cause, l.probe), (LeakCause::Unexpected, None));
        let mut c = Classifier::new(cfg(), MarkerKeys::with_secret(secret));
        let l = leak(c.classify(&f, LinkType::Ethernet, &tor_set()));
        assert_eq!(l.probe.map(|p| p.spec), Some(spec));
        assert_eq!(c.keys().known_runs().len(), 1);
    }

    #[test]
    fn marker_outside_the_catalogue_is_not_attributed() {
        let m = RunKey::open(1).payload_marker(u32::MAX);
        let f = eth4(GW4, NET4, 17, &udp(1, 2, &m));
        assert_eq!(leak(classify(&f)).probe, None);
    }

    #[test]
    fn canary_frames() {
        let mut canary = leaktest_capture::Canary::with_key(GW_MAC, [1; 16], 77);
        let (_, f) = canary.next_frame();
        assert_eq!(classify(&f), Class::Canary);
        // Same EtherType but not a canary: another sender, another
        // destination, no magic: classified like any other frame.
        let mut other_src = f;
        other_src[6..12].copy_from_slice(&WS_MAC);
        let mut other_dst = f;
        other_dst[0..6].copy_from_slice(&[0xff; 6]);
        let mut no_magic = f;
        no_magic[14] ^= 1;
        for g in [other_src, other_dst, no_magic] {
            let l = leak(classify(&g));
            assert_eq!(
                (l.family, l.ethertype),
                (LeakFamily::Other, Some(CANARY_ETHERTYPE))
            );
        }
        // A probe marker wins even inside a canary.
        let mut marked = f.to_vec();
        marked.extend_from_slice(&RunKey::open(3).payload_marker(5));
        assert_eq!(leak(classify(&marked)).cause, LeakCause::Probe);
    }

    #[test]
    fn tor_traffic_needs_tcp_an_allowlisted_endpoint_and_our_source() {
        let f = eth4(GW4, NET4, 6, &tcp(40001, 5555, 0x18, b"\x17\x03\x03"));
        assert_eq!(
            classify(&f),
            Class::Tor(SocketAddr::new(IpAddr::V4(NET4), 5555))
        );
        let f6 = eth6(GW6, NET6, 6, &tcp(40001, 8443, 0x10, &[]));
        assert_eq!(
            classify(&f6),
            Class::Tor(SocketAddr::new(IpAddr::V6(NET6), 8443))
        );
        // Other port, UDP, or a forwarded (not our source) packet: leaks.
        for f in [
            eth4(GW4, NET4, 6, &tcp(40001, 5556, 0x10, &[])),
            eth4(GW4, NET4, 17, &udp(40001, 5555, &[])),
            eth4(WS4, NET4, 6, &tcp(40001, 5555, 0x02, &[])),
            eth6(GW6, NET6, 6, &tcp(40001, 5555, 0x02, &[])),
        ] {
            assert_eq!(leak(classify(&f)).cause, LeakCause::Unexpected);
        }
        // Without known own addresses, the destination alone decides.
        let mut c = Classifier::new(
            ClassifierConfig {
                own_addrs: vec![],
                ..cfg()
            },
            MarkerKeys::open(),
        );
        let f = eth4(WS4, NET4, 6, &tcp(40001, 5555, 0x02, &[]));
        assert!(matches!(
            c.classify(&f, LinkType::Ethernet, &tor_set()),
            Class::Tor(_)
        ));
    }

    #[test]
    fn tor_allowlist_from_the_control_port_crate() {
        let mut allow = leaktest_tor::Allowlist::new();
        allow.insert(SocketAddr::new(IpAddr::V6(NET6), 8443));
        let mut c = Classifier::new(cfg(), MarkerKeys::open());
        let f6 = eth6(GW6, NET6, 6, &tcp(40001, 8443, 0x10, &[]));
        assert!(matches!(
            c.classify(&f6, LinkType::Ethernet, &allow),
            Class::Tor(_)
        ));
        let f4 = eth4(GW4, NET4, 6, &tcp(40001, 5555, 0x10, &[]));
        assert!(matches!(
            c.classify(&f4, LinkType::Ethernet, &allow),
            Class::Leak(_)
        ));
    }

    #[test]
    fn tor_on_a_raw_ip_link() {
        let p = ipv4(GW4, NET4, 6, 64, &tcp(40001, 5555, 0x10, &[]));
        let mut c = Classifier::new(cfg(), MarkerKeys::open());
        assert!(matches!(
            c.classify(&p, LinkType::RawIp, &tor_set()),
            Class::Tor(_)
        ));
        // The same bytes read as Ethernet are garbage, hence a leak.
        assert!(matches!(
            c.classify(&p, LinkType::Ethernet, &tor_set()),
            Class::Leak(_)
        ));
    }

    #[test]
    fn arp_from_the_gateway_is_housekeeping() {
        let hk = Class::Housekeeping(HousekeepingKind::Arp);
        assert_eq!(classify(&arp(GW_MAC, 1, GW_MAC, GW4, NET4)), hk);
        assert_eq!(classify(&arp(GW_MAC, 2, GW_MAC, GW4, NET4)), hk);
        // ARP probe (RFC 5227): sender address 0.0.0.0.
        assert_eq!(
            classify(&arp(GW_MAC, 1, GW_MAC, Ipv4Addr::UNSPECIFIED, GW4)),
            hk
        );
        // Someone else's ARP bridged out, a spoofed sender, a foreign address, odd opcode.
        for f in [
            arp(WS_MAC, 1, WS_MAC, WS4, NET4),
            arp(GW_MAC, 1, WS_MAC, GW4, NET4),
            arp(GW_MAC, 1, GW_MAC, WS4, NET4),
            arp(GW_MAC, 3, GW_MAC, GW4, NET4),
        ] {
            let l = leak(classify(&f));
            assert_eq!((l.family, l.ethertype), (LeakFamily::Other, Some(0x0806)));
        }
    }

    fn nd(src: Ipv6Addr, dst: Ipv6Addr, ty: u8, hop: u8) -> Vec<u8> {
        eth(
            GW_MAC,
            [0x33, 0x33, 0, 0, 0, 1],
            0x86dd,
            &ipv6(src, dst, 58, hop, &icmp(ty, 0, &[0; 20])),
        )
    }

    #[test]
    fn neighbour_discovery() {
        let all_routers: Ipv6Addr = "ff02::2".parse().unwrap();
        let solicited: Ipv6Addr = "ff02::1:ff00:7".parse().unwrap();
        assert_eq!(
            classify(&nd(GW6_LL, all_routers, 133, 255)),
            Class::Housekeeping(HousekeepingKind::RouterSolicitation)
        );
        assert_eq!(
            classify(&nd(Ipv6Addr::UNSPECIFIED, solicited, 135, 255)),
            Class::Housekeeping(HousekeepingKind::NeighborSolicitation)
        );
        assert_eq!(
            classify(&nd(GW6, NET6, 136, 255)),
            Class::Housekeeping(HousekeepingKind::NeighborAdvertisement)
        );
        // Hop limit other than 255 (forwarded), or a foreign global source: leaks.
        assert!(matches!(
            classify(&nd(GW6_LL, all_routers, 133, 64)),
            Class::Leak(_)
        ));
        assert!(matches!(
            classify(&nd(NET6, solicited, 135, 255)),
            Class::Leak(_)
        ));
        // Router advertisements and redirects are not a host's housekeeping.
        assert!(matches!(
            classify(&nd(GW6_LL, all_routers, 134, 255)),
            Class::Leak(_)
        ));
        assert!(matches!(
            classify(&nd(GW6_LL, NET6, 137, 255)),
            Class::Leak(_)
        ));
        // Echo requests never are.
        assert!(matches!(
            classify(&nd(GW6_LL, NET6, 128, 255)),
            Class::Leak(_)
        ));
    }

    #[test]
    fn mldv2_report_behind_a_hop_by_hop_header() {
        let mld_routers: Ipv6Addr = "ff02::16".parse().unwrap();
        // Hop-by-hop with router alert, then ICMPv6 type 143.
        let mut payload = vec![58, 0, 5, 2, 0, 0, 1, 0];
        payload.extend_from_slice(&icmp(143, 0, &[0, 0, 0, 0]));
        let f = eth(
            GW_MAC,
            [0x33, 0x33, 0, 0, 0, 0x16],
            0x86dd,
            &ipv6(Ipv6Addr::UNSPECIFIED, mld_routers, 0, 1, &payload),
        );
        assert_eq!(classify(&f), Class::Housekeeping(HousekeepingKind::Mld));
        // MLD to a unicast address is not a report to the link.
        let f = eth(
            GW_MAC,
            ROUTER_MAC,
            0x86dd,
            &ipv6(GW6_LL, NET6, 0, 1, &payload),
        );
        assert!(matches!(classify(&f), Class::Leak(_)));
    }

    #[test]
    fn igmp_report() {
        let f = eth(
            GW_MAC,
            [1, 0, 0x5e, 0, 0, 0x16],
            0x0800,
            &ipv4(
                GW4,
                "224.0.0.22".parse().unwrap(),
                2,
                1,
                &[0x22, 0, 0, 0, 0, 0, 0, 0],
            ),
        );
        assert_eq!(classify(&f), Class::Housekeeping(HousekeepingKind::Igmp));
        let f = eth(
            GW_MAC,
            ROUTER_MAC,
            0x0800,
            &ipv4(GW4, NET4, 2, 1, &[0x22, 0, 0, 0]),
        );
        assert!(matches!(classify(&f), Class::Leak(_)));
    }

    #[test]
    fn dhcp_clients() {
        let bcast = Ipv4Addr::BROADCAST;
        let f = eth(
            GW_MAC,
            [0xff; 6],
            0x0800,
            &ipv4(
                Ipv4Addr::UNSPECIFIED,
                bcast,
                17,
                64,
                &udp(68, 67, &dhcp4_discover(GW_MAC)),
            ),
        );
        assert_eq!(classify(&f), Class::Housekeeping(HousekeepingKind::Dhcpv4));
        // Renewal from our address, unicast to the server.
        let f = eth4(GW4, NET4, 17, &udp(68, 67, &dhcp4_discover(GW_MAC)));
        assert_eq!(classify(&f), Class::Housekeeping(HousekeepingKind::Dhcpv4));
        // On behalf of another machine, or without the cookie, or a server reply: leak.
        let f = eth4(GW4, NET4, 17, &udp(68, 67, &dhcp4_discover(WS_MAC)));
        assert!(matches!(classify(&f), Class::Leak(_)));
        let mut nocookie = dhcp4_discover(GW_MAC);
        nocookie[236] = 0;
        assert!(matches!(
            classify(&eth4(GW4, NET4, 17, &udp(68, 67, &nocookie))),
            Class::Leak(_)
        ));
        assert!(matches!(
            classify(&eth4(GW4, NET4, 17, &udp(67, 68, &dhcp4_discover(GW_MAC)))),
            Class::Leak(_)
        ));

        let all_dhcp: Ipv6Addr = "ff02::1:2".parse().unwrap();
        let solicit = udp(546, 547, &[1, 0xab, 0xcd, 0xef, 0, 1, 0, 0]);
        let f = eth(
            GW_MAC,
            [0x33, 0x33, 0, 1, 0, 2],
            0x86dd,
            &ipv6(GW6_LL, all_dhcp, 17, 1, &solicit),
        );
        assert_eq!(classify(&f), Class::Housekeeping(HousekeepingKind::Dhcpv6));
        // Advertise (2) is a server message.
        let adv = udp(546, 547, &[2, 0, 0, 0]);
        let f = eth(
            GW_MAC,
            [0x33, 0x33, 0, 1, 0, 2],
            0x86dd,
            &ipv6(GW6_LL, all_dhcp, 17, 1, &adv),
        );
        assert!(matches!(classify(&f), Class::Leak(_)));
    }

    #[test]
    fn strict_makes_housekeeping_a_leak() {
        let mut c = Classifier::new(
            ClassifierConfig {
                strict: true,
                ..cfg()
            },
            MarkerKeys::open(),
        );
        let l = leak(c.classify(
            &arp(GW_MAC, 1, GW_MAC, GW4, NET4),
            LinkType::Ethernet,
            &tor_set(),
        ));
        assert_eq!(
            l.cause,
            LeakCause::StrictHousekeeping(HousekeepingKind::Arp)
        );
        // Tor stays Tor under --strict.
        let f = eth4(GW4, NET4, 6, &tcp(40001, 5555, 0x10, &[]));
        assert!(matches!(
            c.classify(&f, LinkType::Ethernet, &tor_set()),
            Class::Tor(_)
        ));
    }

    #[test]
    fn anything_else_is_a_leak_with_its_details() {
        let f = eth6(GW6, NET6, 17, &udp(5353, 443, b"quic"));
        let l = leak(classify(&f));
        assert_eq!(l.family, LeakFamily::Ipv6);
        assert_eq!(
            (l.protocol, l.src_port, l.dst_port),
            (Some(17), Some(5353), Some(443))
        );
        assert_eq!(
            (l.src, l.dst),
            (Some(IpAddr::V6(GW6)), Some(IpAddr::V6(NET6)))
        );
        let l = leak(classify(&eth(
            GW_MAC,
            [1, 0x80, 0xc2, 0, 0, 0xe],
            0x88cc,
            &[0; 40],
        )));
        assert_eq!(
            (l.family, l.ethertype, l.protocol),
            (LeakFamily::Other, Some(0x88cc), None)
        );
        // Empty and tiny frames.
        assert!(matches!(classify(&[]), Class::Leak(_)));
        assert!(matches!(classify(&[0x45]), Class::Leak(_)));
    }

    #[test]
    fn leak_of_any_frame() {
        let f = eth4(WS4, NET4, 17, &udp(1000, 53, b"q"));
        let l = Leak::of_frame(&f, LinkType::Ethernet, LeakCause::Unexpected);
        assert_eq!(
            (l.family, l.protocol, l.dst_port),
            (LeakFamily::Ipv4, Some(17), Some(53))
        );
        assert_eq!((l.src_mac, l.probe), (Some(GW_MAC), None));
        let l = Leak::of_frame(&[1, 2, 3], LinkType::RawIp, LeakCause::Unexpected);
        assert_eq!(
            (l.family, l.src, l.protocol),
            (LeakFamily::Other, None, None)
        );
    }

    #[test]
    fn tor_endpoints_trait_for_slices() {
        let v = vec![SocketAddr::new(IpAddr::V4(NET4), 5555)];
        let mut c = Classifier::new(cfg(), MarkerKeys::open());
        let f = eth4(GW4, NET4, 6, &tcp(40001, 5555, 0x10, &[]));
        assert!(matches!(
            c.classify(&f, LinkType::Ethernet, &v),
            Class::Tor(_)
        ));
        assert!(matches!(
            c.classify(&f, LinkType::Ethernet, v.as_slice()),
            Class::Tor(_)
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
                        raw in proptest::prelude::any::<bool>()) {
            let link = if raw { LinkType::RawIp } else { LinkType::Ethernet };
            Classifier::new(cfg(), MarkerKeys::open()).classify(&bytes, link, &tor_set());
        }
    }
}
