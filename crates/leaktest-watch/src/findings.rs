//! What a watch saw: counts per class, the first leaked packets in detail,
//! and leaks grouped for people to read.
//!
//! Memory is bounded however long the watch runs: at most
//! [`MAX_LEAK_DETAILS`] leak records, [`MAX_GROUPS`] groups (each with an
//! 8 KiB port bitmap and a few sample addresses) and [`MAX_TOR_ENDPOINTS`]
//! distinct Tor endpoints; beyond that only counters grow.

use crate::classify::{Class, HousekeepingKind, Leak, LeakCause, LeakFamily};
use leaktest_capture::Frame;
use leaktest_wire::{Family, Suite, TcpFlags};
use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr};

/// Leaked packets kept in detail (all are counted).
pub const MAX_LEAK_DETAILS: usize = 10_000;
/// Leak groups kept; packets of further groups are counted in
/// [`Findings::ungrouped_leaks`].
pub const MAX_GROUPS: usize = 1024;
/// Distinct Tor endpoints remembered.
pub const MAX_TOR_ENDPOINTS: usize = 65_536;
/// Sample addresses kept per group and direction.
pub const MAX_GROUP_ADDRS: usize = 8;
/// Runs named per group.
pub const MAX_GROUP_RUNS: usize = 8;

/// One leaked packet, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeakRecord {
    pub ts_sec: u64,
    pub ts_nsec: u32,
    /// Length on the wire.
    pub len: u32,
    pub leak: Leak,
}

/// A set of 16-bit values (ports) as a bitmap, printed as compressed ranges.
#[derive(Clone, PartialEq, Eq)]
pub struct PortSet {
    bits: Box<[u64; 1024]>,
    count: u32,
}

impl Default for PortSet {
    fn default() -> Self {
        PortSet {
            bits: Box::new([0; 1024]),
            count: 0,
        }
    }
}

impl fmt::Debug for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PortSet({})", self.ranges())
    }
}

impl PortSet {
    pub fn insert(&mut self, v: u16) {
        let (w, b) = (usize::from(v) / 64, v % 64);
        if self.bits[w] & (1 << b) == 0 {
            self.bits[w] |= 1 << b;
            self.count += 1;
        }
    }

    pub fn contains(&self, v: u16) -> bool {
        self.bits[usize::from(v) / 64] & (1 << (v % 64)) != 0
    }

    /// Number of distinct values.
    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Maximal runs of consecutive values, ascending.
    pub fn range_iter(&self) -> impl Iterator<Item = (u16, u16)> + '_ {
        let mut v: u32 = 0;
        std::iter::from_fn(move || {
            while v <= 65535 {
                let w = self.bits[(v / 64) as usize];
                // Skip empty words quickly.
                if w == 0 && v % 64 == 0 {
                    v += 64;
                    continue;
                }
                if self.contains(v as u16) {
                    let start = v;
                    while v <= 65535 && self.contains(v as u16) {
                        v += 1;
                    }
                    return Some((start as u16, (v - 1) as u16));
                }
                v += 1;
            }
            None
        })
    }

    /// Compressed ranges like `0-79,81-65535`.
    pub fn ranges(&self) -> String {
        let mut s = String::new();
        for (a, b) in self.range_iter() {
            if !s.is_empty() {
                s.push(',');
            }
            if a == b {
                let _ = write!(s, "{a}");
            } else {
                let _ = write!(s, "{a}-{b}");
            }
        }
        s
    }
}

/// A small set of values, at most `cap`, that remembers it overflowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample<T> {
    pub items: Vec<T>,
    pub more: bool,
}

impl<T> Default for Sample<T> {
    fn default() -> Self {
        Sample {
            items: Vec::new(),
            more: false,
        }
    }
}

impl<T: PartialEq> Sample<T> {
    fn add(&mut self, v: T, cap: usize) {
        if self.items.contains(&v) {
            return;
        }
        if self.items.len() < cap {
            self.items.push(v);
        } else {
            self.more = true;
        }
    }
}

/// A set of 8-bit values (ICMP types, IP protocols), printed as ranges.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ByteSet([u64; 4]);

impl fmt::Debug for ByteSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ByteSet({})", self.ranges())
    }
}

impl ByteSet {
    pub fn insert(&mut self, v: u8) {
        self.0[usize::from(v / 64)] |= 1 << (v % 64);
    }

    pub fn contains(&self, v: u8) -> bool {
        self.0[usize::from(v / 64)] & (1 << (v % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    pub fn len(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    /// Compressed ranges like `0-5,7-255`.
    pub fn ranges(&self) -> String {
        let mut s = String::new();
        let mut v = 0u16;
        while v < 256 {
            if self.contains(v as u8) {
                let a = v;
                while v < 256 && self.contains(v as u8) {
                    v += 1;
                }
                if !s.is_empty() {
                    s.push(',');
                }
                if a == v - 1 {
                    let _ = write!(s, "{a}");
                } else {
                    let _ = write!(s, "{a}-{}", v - 1);
                }
            } else {
                v += 1;
            }
        }
        s
    }
}

/// What makes leaks one group: same family, protocol (or EtherType for
/// non-IP frames), TCP flags, cause, and for probes the suite. Probes of the
/// `ip` suite form one group per family whatever their protocol, so a full
/// sweep reads as a handful of lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub family: LeakFamily,
    /// EtherType of non-IP frames (`None` for IP).
    pub ethertype: Option<u16>,
    /// The IP protocol on the wire (`None` for non-IP frames and for the
    /// `ip` suite's group, whose protocols are in [`LeakGroup::protocols`]).
    pub protocol: Option<u8>,
    pub tcp_flags: Option<TcpFlags>,
    /// The probe suite (attributed groups).
    pub suite: Option<Suite>,
    /// Whether the packets carried a probe marker.
    pub attributed: bool,
    /// Set when `--strict` made housekeeping a leak.
    pub housekeeping: Option<HousekeepingKind>,
}

impl GroupKey {
    fn of(l: &Leak) -> GroupKey {
        let suite = l.probe.map(|p| p.spec.suite());
        GroupKey {
            family: l.family,
            ethertype: if l.family == LeakFamily::Other {
                l.ethertype
            } else {
                None
            },
            protocol: if suite == Some(Suite::Ip) {
                None
            } else {
                l.protocol
            },
            tcp_flags: if suite == Some(Suite::Ip) {
                None
            } else {
                l.tcp_flags
            },
            suite,
            attributed: l.probe.is_some(),
            housekeeping: match l.cause {
                LeakCause::StrictHousekeeping(k) => Some(k),
                _ => None,
            },
        }
    }
}

/// Leaked packets that look alike, summarised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeakGroup {
    pub key: GroupKey,
    pub packets: u64,
    /// Packets with a non-zero fragment offset (no ports).
    pub fragments: u64,
    pub first_ts: (u64, u32),
    pub last_ts: (u64, u32),
    /// Destination ports (TCP, UDP, SCTP, DCCP, UDP-Lite).
    pub dst_ports: Option<PortSet>,
    /// ICMP / ICMPv6 types seen.
    pub icmp_types: ByteSet,
    /// IP protocols seen on the wire.
    pub protocols: ByteSet,
    pub srcs: Sample<IpAddr>,
    pub dsts: Sample<IpAddr>,
    /// Probe suites seen (attributed groups).
    pub suites: Vec<Suite>,
    /// Run ids seen (attributed groups).
    pub runs: Sample<u64>,
    /// Attributed by the header marker alone.
    pub header_evidence: u64,
}

fn proto_name(p: u8, family: LeakFamily) -> String {
    match (p, family) {
        (1, _) => "icmp".into(),
        (58, _) => "icmpv6".into(),
        (2, _) => "igmp".into(),
        (6, _) => "tcp".into(),
        (17, _) => "udp".into(),
        (33, _) => "dccp".into(),
        (47, _) => "gre".into(),
        (50, _) => "esp".into(),
        (51, _) => "ah".into(),
        (132, _) => "sctp".into(),
        (136, _) => "udplite".into(),
        (p, _) => format!("proto {p}"),
    }
}

impl LeakGroup {
    fn new(key: GroupKey, ts: (u64, u32)) -> LeakGroup {
        let has_ports = matches!(key.protocol, Some(6 | 17 | 33 | 132 | 136));
        LeakGroup {
            key,
            packets: 0,
            fragments: 0,
            first_ts: ts,
            last_ts: ts,
            dst_ports: has_ports.then(PortSet::default),
            icmp_types: ByteSet::default(),
            protocols: ByteSet::default(),
            srcs: Sample::default(),
            dsts: Sample::default(),
            suites: Vec::new(),
            runs: Sample::default(),
            header_evidence: 0,
        }
    }

    fn add(&mut self, l: &Leak, ts: (u64, u32)) {
        self.packets += 1;
        self.last_ts = ts;
        if l.fragment {
            self.fragments += 1;
        }
        if let (Some(set), Some(p)) = (self.dst_ports.as_mut(), l.dst_port) {
            set.insert(p);
        }
        if let Some(t) = l.icmp_type {
            self.icmp_types.insert(t);
        }
        if let Some(p) = l.protocol {
            self.protocols.insert(p);
        }
        if let Some(a) = l.src {
            self.srcs.add(a, MAX_GROUP_ADDRS);
        }
        if let Some(a) = l.dst {
            self.dsts.add(a, MAX_GROUP_ADDRS);
        }
        if let Some(p) = l.probe {
            let s = p.spec.suite();
            if !self.suites.contains(&s) {
                self.suites.push(s);
                self.suites.sort();
            }
            self.runs.add(p.run.run_id, MAX_GROUP_RUNS);
            if p.evidence == leaktest_wire::Evidence::Header {
                self.header_evidence += 1;
            }
        }
    }

    /// The protocol part of the group's name: `tcp [S]`, `udp`, `icmpv6`,
    /// `arp`, `ethertype 0x88cc`.
    pub fn what(&self) -> String {
        let k = &self.key;
        match (k.family, k.protocol) {
            (LeakFamily::Other, _) => match k.ethertype {
                Some(0x0806) => "arp".into(),
                Some(et) => format!("ethertype 0x{et:04x}"),
                None => "unreadable frame".into(),
            },
            (_, Some(p)) => {
                let mut s = proto_name(p, k.family);
                if let Some(f) = k.tcp_flags {
                    if f.0 == 0 {
                        s.push_str(" [no flags]");
                    } else {
                        let _ = write!(s, " [{}]", f.letters());
                    }
                }
                s
            }
            (_, None) if k.suite == Some(Suite::Ip) => "ip".into(),
            (_, None) => "truncated ip".into(),
        }
    }

    /// Where the packets went: ports or ICMP types, and sample destinations.
    pub fn detail(&self) -> String {
        let mut s = String::new();
        if let Some(ports) = &self.dst_ports {
            if !ports.is_empty() {
                let _ = write!(s, "dst ports {}", ports.ranges());
            }
        }
        if self.key.protocol.is_none() && !self.protocols.is_empty() {
            let _ = write!(s, "protocols {}", self.protocols.ranges());
        } else if !self.icmp_types.is_empty() {
            let _ = write!(s, "types {}", self.icmp_types.ranges());
        }
        if self.fragments > 0 {
            if !s.is_empty() {
                s.push_str("; ");
            }
            let _ = write!(s, "{} non-first fragments", self.fragments);
        }
        if !self.dsts.items.is_empty() {
            if !s.is_empty() {
                s.push_str("; ");
            }
            s.push_str("to ");
            push_sample(&mut s, &self.dsts);
        }
        if !self.srcs.items.is_empty() {
            s.push_str(" from ");
            push_sample(&mut s, &self.srcs);
        }
        s
    }

    /// Which probes: `probes tcp (run 0123456789abcdef)`, or why it is a leak.
    pub fn origin(&self) -> String {
        if self.key.attributed {
            let suites: Vec<&str> = self.suites.iter().map(|s| s.name()).collect();
            let mut s = format!("probes {}", suites.join(","));
            let runs: Vec<String> = self
                .runs
                .items
                .iter()
                .map(|r| format!("{r:016x}"))
                .collect();
            let _ = write!(
                s,
                ", run {}{}",
                runs.join(","),
                if self.runs.more { ",…" } else { "" }
            );
            if self.header_evidence > 0 {
                let _ = write!(s, ", {} by header marker only", self.header_evidence);
            }
            s
        } else if let Some(k) = self.key.housekeeping {
            format!("housekeeping {k} (--strict)")
        } else {
            "not a probe: unexpected traffic".into()
        }
    }

    /// The one line printed live when the group first appears.
    pub fn live_line(&self) -> String {
        format!(
            "LEAK {} {} {} ({})",
            self.key.family.name(),
            self.what(),
            self.detail(),
            self.origin()
        )
    }
}

fn push_sample(s: &mut String, sample: &Sample<IpAddr>) {
    for (i, a) in sample.items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{a}");
    }
    if sample.more {
        s.push_str(",…");
    }
}

/// Everything a watch counted.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    /// Frames recorded, of every class.
    pub packets: u64,
    pub tor_packets: u64,
    tor_endpoints: HashSet<SocketAddr>,
    /// More distinct Tor endpoints than [`MAX_TOR_ENDPOINTS`] were seen.
    pub tor_endpoints_overflow: bool,
    pub housekeeping: [u64; HousekeepingKind::ALL.len()],
    pub canary_packets: u64,
    pub leak_packets: u64,
    /// Leaked probe packets by family (IPv4, IPv6) and suite (in [`Suite::ALL`] order).
    pub probe_leaks: [[u64; Suite::ALL.len()]; 2],
    /// Leaked packets without a probe marker, by [`LeakFamily`] (IPv4, IPv6, other).
    pub unattributed_leaks: [u64; 3],
    leaks: Vec<LeakRecord>,
    groups: Vec<LeakGroup>,
    group_index: HashMap<GroupKey, usize>,
    /// Leaked packets not in any group because [`MAX_GROUPS`] was reached.
    pub ungrouped_leaks: u64,
}

impl Findings {
    pub fn new() -> Findings {
        Findings::default()
    }

    /// Records one classified frame. Returns the leak group when this frame
    /// started a new one, so the caller can print [`LeakGroup::live_line`].
    pub fn record(&mut self, frame: &Frame<'_>, class: &Class) -> Option<&LeakGroup> {
        self.packets += 1;
        match class {
            Class::Tor(ep) => {
                self.tor_packets += 1;
                if self.tor_endpoints.len() < MAX_TOR_ENDPOINTS {
                    self.tor_endpoints.insert(*ep);
                } else if !self.tor_endpoints.contains(ep) {
                    self.tor_endpoints_overflow = true;
                }
                None
            }
            Class::Housekeeping(k) => {
                self.housekeeping[k.index()] += 1;
                None
            }
            Class::Canary => {
                self.canary_packets += 1;
                None
            }
            Class::Leak(leak) => self.record_leak(frame, leak),
        }
    }

    fn record_leak(&mut self, frame: &Frame<'_>, leak: &Leak) -> Option<&LeakGroup> {
        self.leak_packets += 1;
        match &leak.probe {
            Some(p) => {
                let f = usize::from(p.spec.family == Family::V6);
                let su = Suite::ALL
                    .iter()
                    .position(|s| *s == p.spec.suite())
                    .unwrap_or(0);
                self.probe_leaks[f][su] += 1;
            }
            None => self.unattributed_leaks[leak.family as usize] += 1,
        }
        let ts = (frame.ts_sec, frame.ts_nsec);
        if self.leaks.len() < MAX_LEAK_DETAILS {
            self.leaks.push(LeakRecord {
                ts_sec: frame.ts_sec,
                ts_nsec: frame.ts_nsec,
                len: frame.orig_len,
                leak: *leak,
            });
        }
        let key = GroupKey::of(leak);
        match self.group_index.get(&key) {
            Some(&i) => {
                self.groups[i].add(leak, ts);
                None
            }
            None if self.groups.len() < MAX_GROUPS => {
                let mut g = LeakGroup::new(key, ts);
                g.add(leak, ts);
                self.group_index.insert(key, self.groups.len());
                self.groups.push(g);
                self.groups.last()
            }
            None => {
                self.ungrouped_leaks += 1;
                None
            }
        }
    }

    /// Distinct Tor endpoints seen (at most [`MAX_TOR_ENDPOINTS`]).
    pub fn tor_endpoints(&self) -> usize {
        self.tor_endpoints.len()
    }

    /// Housekeeping packets of every kind.
    pub fn housekeeping_packets(&self) -> u64 {
        self.housekeeping.iter().sum()
    }

    /// Housekeeping packets of one kind.
    pub fn housekeeping_of(&self, k: HousekeepingKind) -> u64 {
        self.housekeeping[k.index()]
    }

    /// The first [`MAX_LEAK_DETAILS`] leaked packets, in capture order.
    pub fn leaks(&self) -> &[LeakRecord] {
        &self.leaks
    }

    /// Leak groups in order of appearance.
    pub fn groups(&self) -> &[LeakGroup] {
        &self.groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Classifier, ClassifierConfig};
    use crate::testutil::*;
    use leaktest_wire::catalogue::ProbeKind;
    use leaktest_wire::LinkType;
    use leaktest_wire::{MarkerKeys, ProbeSpec, RunKey};
    use std::net::Ipv4Addr;

    fn frame(data: &[u8]) -> Frame<'_> {
        Frame {
            ts_sec: 1_700_000_000,
            ts_nsec: 5,
            data,
            orig_len: data.len() as u32,
        }
    }

    fn classifier() -> Classifier {
        Classifier::new(
            ClassifierConfig {
                strict: false,
                own_macs: vec![GW_MAC],
                own_addrs: vec![IpAddr::V4(GW4)],
            },
            MarkerKeys::open(),
        )
    }

    #[test]
    fn port_ranges_compress() {
        let mut p = PortSet::default();
        assert_eq!(p.ranges(), "");
        for v in (0..=65535u16).filter(|v| *v != 80) {
            p.insert(v);
        }
        assert_eq!(p.ranges(), "0-79,81-65535");
        assert_eq!(p.len(), 65535);
        let mut q = PortSet::default();
        for v in [22, 5, 6, 7, 65535, 64, 63] {
            q.insert(v);
        }
        q.insert(6);
        assert_eq!(q.ranges(), "5-7,22,63-64,65535");
        assert_eq!(q.len(), 7);
    }

    #[test]
    fn one_new_group_signal_per_group_and_ports_in_it() {
        let key = RunKey::open(0xabc);
        let mut c = classifier();
        let mut f = Findings::new();
        let allow: Vec<SocketAddr> = vec![];
        let mut new_groups = 0;
        for port in (0..=65535u16).filter(|p| *p != 80) {
            let spec = ProbeSpec {
                family: leaktest_wire::Family::V4,
                kind: ProbeKind::Tcp {
                    flags: TcpFlags(TcpFlags::SYN),
                    dst_port: port,
                },
            };
            let data = eth4(
                WS4,
                NET4,
                6,
                &tcp(40000, port, TcpFlags::SYN, &key.payload_marker(spec.seq())),
            );
            let class = c.classify(&data, LinkType::Ethernet, &allow);
            if let Some(g) = f.record(&frame(&data), &class) {
                new_groups += 1;
                assert!(g.live_line().contains("tcp [S]"), "{}", g.live_line());
            }
        }
        // Another flag set is another group; unattributed traffic another still.
        let data = eth4(WS4, NET4, 6, &tcp(40000, 80, TcpFlags::ACK, &[]));
        assert!(f
            .record(
                &frame(&data),
                &c.classify(&data, LinkType::Ethernet, &allow)
            )
            .is_some());
        let data = eth4(WS4, NET4, 6, &tcp(40000, 81, TcpFlags::ACK, &[]));
        assert!(f
            .record(
                &frame(&data),
                &c.classify(&data, LinkType::Ethernet, &allow)
            )
            .is_none());
        assert_eq!(new_groups, 1);
        assert_eq!(f.leak_packets, 65537);
        assert_eq!(f.leaks().len(), MAX_LEAK_DETAILS);
        assert_eq!(f.groups().len(), 2);
        let g = &f.groups()[0];
        assert_eq!(g.packets, 65535);
        assert_eq!(g.dst_ports.as_ref().unwrap().ranges(), "0-79,81-65535");
        assert_eq!(g.suites, vec![Suite::Tcp]);
        assert_eq!(g.runs.items, vec![0xabc]);
        assert_eq!(g.origin(), "probes tcp, run 0000000000000abc");
        assert_eq!(
            f.probe_leaks[0][Suite::ALL.iter().position(|s| *s == Suite::Tcp).unwrap()],
            65535
        );
        assert_eq!(f.unattributed_leaks, [2, 0, 0]);
        assert_eq!(f.groups()[1].origin(), "not a probe: unexpected traffic");
    }

    #[test]
    fn counts_tor_endpoints_housekeeping_and_canaries() {
        let mut f = Findings::new();
        let d = [0u8; 60];
        for i in 0..10u16 {
            let ep = SocketAddr::new(IpAddr::V4(NET4), 9000 + i % 3);
            assert!(f.record(&frame(&d), &Class::Tor(ep)).is_none());
        }
        f.record(&frame(&d), &Class::Housekeeping(HousekeepingKind::Mld));
        f.record(&frame(&d), &Class::Housekeeping(HousekeepingKind::Mld));
        f.record(&frame(&d), &Class::Housekeeping(HousekeepingKind::Arp));
        f.record(&frame(&d), &Class::Canary);
        assert_eq!((f.packets, f.tor_packets, f.tor_endpoints()), (14, 10, 3));
        assert_eq!(f.housekeeping_packets(), 3);
        assert_eq!(f.housekeeping_of(HousekeepingKind::Mld), 2);
        assert_eq!((f.canary_packets, f.leak_packets), (1, 0));
    }

    #[test]
    fn groups_are_bounded() {
        let mut f = Findings::new();
        let d = [0u8; 60];
        let mut made = 0;
        // 256 protocols x 5 flag values x 2 families = 2560 distinct keys.
        for proto in 0..=255u8 {
            for flags in 0..5u8 {
                for v6 in [false, true] {
                    let l = Leak {
                        family: if v6 {
                            LeakFamily::Ipv6
                        } else {
                            LeakFamily::Ipv4
                        },
                        cause: LeakCause::Unexpected,
                        src_mac: None,
                        dst_mac: None,
                        ethertype: None,
                        protocol: Some(proto),
                        src: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, flags))),
                        dst: None,
                        src_port: None,
                        dst_port: Some(u16::from(proto)),
                        icmp_type: None,
                        tcp_flags: Some(TcpFlags(flags)),
                        fragment: false,
                        probe: None,
                    };
                    if f.record(&frame(&d), &Class::Leak(l)).is_some() {
                        made += 1;
                    }
                }
            }
        }
        assert_eq!(made, MAX_GROUPS);
        assert_eq!(f.groups().len(), MAX_GROUPS);
        assert_eq!(f.ungrouped_leaks, 2560 - MAX_GROUPS as u64);
        assert_eq!(f.leak_packets, 2560);
    }

    #[test]
    fn byte_set_ranges() {
        let mut b = ByteSet::default();
        assert_eq!((b.ranges(), b.is_empty()), (String::new(), true));
        for v in (0..=255u8).filter(|v| *v != 6) {
            b.insert(v);
        }
        assert_eq!((b.ranges(), b.len()), ("0-5,7-255".to_string(), 255));
        let mut c = ByteSet::default();
        c.insert(255);
        c.insert(0);
        c.insert(64);
        c.insert(63);
        assert_eq!(c.ranges(), "0,63-64,255");
    }

    #[test]
    fn a_full_ip_suite_sweep_is_one_group_per_family() {
        let key = RunKey::open(9);
        let b = leaktest_wire::ProbeBuilder::new(
            key,
            leaktest_wire::Endpoints {
                src4: Some(WS4),
                dst4: Some(NET4),
                src6: Some(GW6),
                dst6: Some(NET6),
            },
            Some(leaktest_wire::L2 {
                src: GW_MAC,
                dst: ROUTER_MAC,
            }),
        );
        let mut c = classifier();
        let mut f = Findings::new();
        let mut buf = [0u8; leaktest_wire::MAX_PROBE_FRAME];
        let allow: Vec<SocketAddr> = vec![];
        let mut lines = Vec::new();
        for family in leaktest_wire::Family::BOTH {
            for spec in ProbeSpec::all(family, Suite::Ip) {
                let n = b.write(&spec, &mut buf);
                let class = c.classify(&buf[..n], LinkType::Ethernet, &allow);
                if let Some(g) = f.record(&frame(&buf[..n]), &class) {
                    lines.push(g.live_line());
                }
            }
        }
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with("LEAK ipv4 ip protocols 0; to 203.0.113.7"),
            "{}",
            lines[0]
        );
        assert!(
            f.groups()[0].detail().starts_with("protocols 0-255; to"),
            "{}",
            f.groups()[0].detail()
        );
        assert_eq!(f.groups()[0].protocols.len(), 256);
        assert_eq!(f.groups()[1].packets, 256);
    }

    fn parse_ranges(s: &str) -> Vec<u16> {
        let mut v = Vec::new();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((a, b)) => v.extend(a.parse::<u16>().unwrap()..=b.parse::<u16>().unwrap()),
                None => v.push(part.parse().unwrap()),
            }
        }
        v
    }

    proptest::proptest! {
        #[test]
        fn port_ranges_round_trip(ports in proptest::collection::btree_set(proptest::prelude::any::<u16>(), 0..300),
                                  dense in proptest::prelude::any::<bool>()) {
            let mut set = PortSet::default();
            let mut want: std::collections::BTreeSet<u16> = ports.clone();
            if dense {
                // Long runs too, around the word boundaries of the bitmap.
                want.extend(60..200);
                want.extend(65500..=65535);
            }
            for p in &want {
                set.insert(*p);
            }
            let r = set.ranges();
            proptest::prop_assert_eq!(parse_ranges(&r), want.iter().copied().collect::<Vec<_>>());
            proptest::prop_assert_eq!(set.len() as usize, want.len());
            // Maximal runs: no two ranges touch.
            let runs: Vec<(u16, u16)> = set.range_iter().collect();
            for w in runs.windows(2) {
                proptest::prop_assert!(u32::from(w[0].1) + 1 < u32::from(w[1].0));
            }
        }
    }

    #[test]
    fn samples_are_capped() {
        let mut s = Sample::default();
        for i in 0..20 {
            s.add(i, 8);
            s.add(i, 8);
        }
        assert_eq!(s.items, (0..8).collect::<Vec<_>>());
        assert!(s.more);
    }
}
