//! What a watch saw: counts per class and per rule, the first leaked
//! packets in detail, leaks grouped for people to read, and per probe run
//! the exact set of probes seen.
//!
//! Memory is bounded however long the watch runs: at most
//! [`MAX_LEAK_DETAILS`] leak records, [`MAX_GROUPS`] groups (each with an
//! 8 KiB port bitmap and a few sample addresses), [`MAX_TOR_ENDPOINTS`]
//! distinct Tor endpoints and [`MAX_RUNS`] probe runs (each a 256 KiB
//! bitmap of the catalogue); beyond that only counters grow.

use crate::classify::housekeeping::HousekeepingKind;
use crate::classify::{Class, Decision, Leak, LeakCause, LeakFamily, Rule, RULES};
use leaktest_wire::catalogue::SEQ_FAMILY_BIT;
use leaktest_wire::marker::KeyMode;
use leaktest_wire::{Evidence, Family, Frame, IpProtocol, Suite, TcpFlags};
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
/// Probe runs whose probes are tracked one by one.
pub const MAX_RUNS: usize = 16;
/// Probe sequence numbers: 21 bits (the family bit 20 and a 20-bit index).
const SEQ_SPACE: usize = 2 * SEQ_FAMILY_BIT as usize;

/// One leaked packet, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeakRecord {
    pub ts_sec: u64,
    pub ts_nsec: u32,
    /// Length on the wire.
    pub len: u32,
    pub leak: Leak,
    /// The rule that decided it.
    pub rule: Rule,
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
/// non-IP frames), TCP flags, cause and rule, and for probes the suite.
/// Probes of the `ip` suite form one group per family whatever their
/// protocol, so a full sweep reads as a handful of lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub family: LeakFamily,
    /// EtherType of non-IP frames (`None` for IP).
    pub ethertype: Option<u16>,
    /// The IP protocol on the wire (`None` for non-IP frames and for the
    /// `ip` suite's group, whose protocols are in [`LeakGroup::protocols`]).
    pub protocol: Option<IpProtocol>,
    pub tcp_flags: Option<TcpFlags>,
    /// The probe suite (attributed groups).
    pub suite: Option<Suite>,
    /// Whether the packets were tied to a probe.
    pub attributed: bool,
    pub cause: LeakCause,
    pub rule: Rule,
}

impl GroupKey {
    fn of(l: &Leak, rule: Rule) -> GroupKey {
        let suite = l.probe.map(|p| p.spec.suite());
        let family = l.family();
        let ip = &l.summary.ip;
        GroupKey {
            family,
            ethertype: if family == LeakFamily::Other {
                l.summary.ethertype
            } else {
                None
            },
            protocol: if suite == Some(Suite::Ip) {
                None
            } else {
                ip.protocol
            },
            tcp_flags: if suite == Some(Suite::Ip) {
                None
            } else {
                ip.tcp_flags
            },
            suite,
            attributed: l.probe.is_some(),
            cause: l.cause,
            rule,
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
    /// The sender's RST answering a probe.
    pub reset_evidence: u64,
    /// The gateway's answers to forged-source probes, out of its uplink.
    pub reflection_evidence: u64,
    /// VLAN ids seen.
    pub vlans: Sample<u16>,
}

impl LeakGroup {
    fn new(key: GroupKey, ts: (u64, u32)) -> LeakGroup {
        let has_ports = key.protocol.is_some_and(IpProtocol::has_ports);
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
            reset_evidence: 0,
            reflection_evidence: 0,
            vlans: Sample::default(),
        }
    }

    fn add(&mut self, l: &Leak, ts: (u64, u32)) {
        let ip = &l.summary.ip;
        self.packets += 1;
        self.last_ts = ts;
        if l.non_first_fragment() {
            self.fragments += 1;
        }
        if let (Some(set), Some(p)) = (self.dst_ports.as_mut(), ip.dst_port) {
            set.insert(p);
        }
        if let Some(t) = ip.icmp_type {
            self.icmp_types.insert(t);
        }
        if let Some(p) = ip.protocol {
            self.protocols.insert(p.0);
        }
        if let Some(a) = ip.src {
            self.srcs.add(a, MAX_GROUP_ADDRS);
        }
        if let Some(a) = ip.dst {
            self.dsts.add(a, MAX_GROUP_ADDRS);
        }
        if let Some(v) = l.summary.vlan {
            self.vlans.add(v, MAX_GROUP_ADDRS);
        }
        if let Some(p) = l.probe {
            let s = p.spec.suite();
            if !self.suites.contains(&s) {
                self.suites.push(s);
                self.suites.sort();
            }
            self.runs.add(p.run.run_id, MAX_GROUP_RUNS);
            match p.evidence {
                Evidence::Header => self.header_evidence += 1,
                Evidence::Reset => self.reset_evidence += 1,
                Evidence::Reflection => self.reflection_evidence += 1,
                Evidence::Payload => {}
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
                let mut s = p.to_string();
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
        if !self.vlans.items.is_empty() {
            s.push_str(" vlan ");
            push_sample(&mut s, &self.vlans);
        }
        s
    }

    /// Which probes, or why it is a leak: `probes tcp, run 0123456789abcdef`,
    /// `forged canary (extended)`, `not Tor: an HTTP request in the clear`.
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
            if self.reset_evidence > 0 {
                let _ = write!(
                    s,
                    ", {} the sender's RST to the target's SYN-ACK",
                    self.reset_evidence
                );
            }
            if self.reflection_evidence > 0 {
                let _ = write!(
                    s,
                    ", {} the gateway's reflection to a forged source",
                    self.reflection_evidence
                );
            }
            if self.key.cause != LeakCause::Probe {
                let _ = write!(s, "; {}", cause_text(self.key.cause));
            }
            s
        } else {
            cause_text(self.key.cause)
        }
    }

    /// The one line printed live when the group first appears.
    pub fn live_line(&self) -> String {
        format!(
            "LEAK {} {} {} ({}) [rule {}]",
            self.key.family.name(),
            self.what(),
            self.detail(),
            self.origin(),
            self.key.rule
        )
    }
}

/// A cause for people.
pub fn cause_text(c: LeakCause) -> String {
    match c {
        LeakCause::Probe => "a probe".into(),
        LeakCause::ForgedCanary(f) => format!("forged canary ({})", f.name()),
        LeakCause::NotTor(v) => format!("to a Tor endpoint but not Tor: {}", v.describe()),
        LeakCause::HousekeepingShaped(k, why) => format!("housekeeping-shaped {k}: {why}"),
        LeakCause::StrictHousekeeping(k) => format!("housekeeping {k} (--strict)"),
        LeakCause::Unexpected => "not a probe: unexpected traffic".into(),
    }
}

fn push_sample<T: fmt::Display>(s: &mut String, sample: &Sample<T>) {
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

/// The probes of one run the watch saw, one by one.
#[derive(Clone, PartialEq, Eq)]
pub struct RunSeen {
    pub run_id: u64,
    pub mode: KeyMode,
    /// One bit per probe `seq` seen (payload or header evidence).
    seqs: Box<[u64]>,
    /// Distinct probes seen.
    pub distinct: u64,
    /// Leaked packets attributed to the run (a probe seen twice counts twice).
    pub packets: u64,
    /// The sender's RSTs answering SYN probes, per family (IPv4, IPv6).
    pub resets: [u64; 2],
    /// Reflections: the gateway's answers to forged-source probes, per
    /// family. Their probes count as seen (a reflection leaves because of
    /// the probe).
    pub reflections: [u64; 2],
}

impl fmt::Debug for RunSeen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunSeen")
            .field("run_id", &format_args!("{:016x}", self.run_id))
            .field("distinct", &self.distinct)
            .field("packets", &self.packets)
            .field("resets", &self.resets)
            .finish()
    }
}

impl RunSeen {
    fn new(run_id: u64, mode: KeyMode) -> RunSeen {
        RunSeen {
            run_id,
            mode,
            seqs: vec![0u64; SEQ_SPACE / 64].into_boxed_slice(),
            distinct: 0,
            packets: 0,
            resets: [0; 2],
            reflections: [0; 2],
        }
    }

    fn insert(&mut self, seq: u32) {
        let i = seq as usize;
        if let Some(w) = self.seqs.get_mut(i / 64) {
            if *w & (1 << (i % 64)) == 0 {
                *w |= 1 << (i % 64);
                self.distinct += 1;
            }
        }
    }

    /// Whether probe `seq` was seen.
    pub fn contains(&self, seq: u32) -> bool {
        let i = seq as usize;
        self.seqs
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// The probes seen as maximal ranges of `seq`, ascending.
    pub fn ranges(&self) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut start: Option<u32> = None;
        for (wi, &w) in self.seqs.iter().enumerate() {
            if w == 0 && start.is_none() {
                continue;
            }
            if w == u64::MAX && start.is_some() {
                continue;
            }
            for b in 0..64 {
                let i = (wi * 64 + b) as u32;
                let set = w & (1 << b) != 0;
                match (set, start) {
                    (true, None) => start = Some(i),
                    (false, Some(s)) => {
                        out.push((s, i - 1));
                        start = None;
                    }
                    _ => {}
                }
            }
        }
        if let Some(s) = start {
            out.push((s, SEQ_SPACE as u32 - 1));
        }
        out
    }
}

/// Everything a watch counted.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    /// Frames recorded, of every class.
    pub packets: u64,
    /// Frames decided by each rule, in [`RULES`] order.
    pub by_rule: [u64; RULES.len()],
    pub tor_packets: u64,
    tor_endpoints: HashSet<SocketAddr>,
    /// More distinct Tor endpoints than [`MAX_TOR_ENDPOINTS`] were seen.
    pub tor_endpoints_overflow: bool,
    /// Tor frames by the role of their endpoint, in
    /// [`leaktest_tor::Roles::NAMED`] order (orport, dirport, bridge,
    /// obfs4-bridge, ...); a frame to an endpoint with several roles counts
    /// under each. An array: counting allocates nothing.
    pub tor_by_role: [u64; leaktest_tor::Roles::NAMED.len()],
    /// Frames let out by each `--allow` entry (by entry index).
    pub allowed: Vec<u64>,
    pub housekeeping: [u64; HousekeepingKind::ALL.len()],
    pub canary_packets: u64,
    pub leak_packets: u64,
    /// Leaked probe packets by family (IPv4, IPv6) and suite (in [`Suite::ALL`] order).
    pub probe_leaks: [[u64; Suite::ALL.len()]; 2],
    /// Leaked packets without a probe, by [`LeakFamily`] (IPv4, IPv6, other).
    pub unattributed_leaks: [u64; 3],
    leaks: Vec<LeakRecord>,
    groups: Vec<LeakGroup>,
    group_index: HashMap<GroupKey, usize>,
    /// Leaked packets not in any group because [`MAX_GROUPS`] was reached.
    pub ungrouped_leaks: u64,
    runs: Vec<RunSeen>,
    /// Attributed packets of runs beyond [`MAX_RUNS`].
    pub untracked_run_packets: u64,
}

impl Findings {
    pub fn new() -> Findings {
        Findings::default()
    }

    /// Records one classified frame. Returns the leak group when this frame
    /// started a new one, so the caller can print [`LeakGroup::live_line`].
    pub fn record(&mut self, frame: &Frame<'_>, d: &Decision) -> Option<&LeakGroup> {
        self.packets += 1;
        self.by_rule[d.rule.index()] += 1;
        match &d.class {
            Class::Tor(t) => {
                self.tor_packets += 1;
                for (i, (role, _)) in leaktest_tor::Roles::NAMED.iter().enumerate() {
                    if t.roles.contains(*role) {
                        self.tor_by_role[i] += 1;
                    }
                }
                if self.tor_endpoints.len() < MAX_TOR_ENDPOINTS {
                    self.tor_endpoints.insert(t.endpoint);
                } else if !self.tor_endpoints.contains(&t.endpoint) {
                    self.tor_endpoints_overflow = true;
                }
                None
            }
            Class::Allowed(a) => {
                if self.allowed.len() <= a.entry {
                    self.allowed.resize(a.entry + 1, 0);
                }
                self.allowed[a.entry] += 1;
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
            Class::Leak(leak) => self.record_leak(frame, leak, d.rule),
        }
    }

    fn record_leak(&mut self, frame: &Frame<'_>, leak: &Leak, rule: Rule) -> Option<&LeakGroup> {
        self.leak_packets += 1;
        match &leak.probe {
            Some(p) => {
                let f = usize::from(p.spec.family == Family::V6);
                if p.evidence != Evidence::Reset {
                    let su = Suite::ALL
                        .iter()
                        .position(|s| *s == p.spec.suite())
                        .unwrap_or(0);
                    self.probe_leaks[f][su] += 1;
                }
                self.record_run(p.run.run_id, p.run.mode, p.seq, p.evidence, f);
            }
            None => self.unattributed_leaks[leak.family() as usize] += 1,
        }
        let ts = (frame.ts_sec, frame.ts_nsec);
        if self.leaks.len() < MAX_LEAK_DETAILS {
            self.leaks.push(LeakRecord {
                ts_sec: frame.ts_sec,
                ts_nsec: frame.ts_nsec,
                len: frame.orig_len,
                leak: *leak,
                rule,
            });
        }
        let key = GroupKey::of(leak, rule);
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

    fn record_run(
        &mut self,
        run_id: u64,
        mode: KeyMode,
        seq: u32,
        evidence: Evidence,
        family: usize,
    ) {
        let i = match self
            .runs
            .iter()
            .position(|r| r.run_id == run_id && r.mode == mode)
        {
            Some(i) => i,
            None if self.runs.len() < MAX_RUNS => {
                self.runs.push(RunSeen::new(run_id, mode));
                self.runs.len() - 1
            }
            None => {
                self.untracked_run_packets += 1;
                return;
            }
        };
        let r = &mut self.runs[i];
        r.packets += 1;
        match evidence {
            Evidence::Reset => r.resets[family] += 1,
            Evidence::Reflection => {
                r.reflections[family] += 1;
                r.insert(seq);
            }
            Evidence::Payload | Evidence::Header => r.insert(seq),
        }
    }

    /// Distinct Tor endpoints seen (at most [`MAX_TOR_ENDPOINTS`]).
    pub fn tor_endpoints(&self) -> usize {
        self.tor_endpoints.len()
    }

    /// Frames let out by `--allow` entries, all together.
    pub fn allowed_packets(&self) -> u64 {
        self.allowed.iter().sum()
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

    /// The probe runs seen, with their probes one by one.
    pub fn runs(&self) -> &[RunSeen] {
        &self.runs
    }

    /// Frames of every class together: equals [`Findings::packets`].
    pub fn classified(&self) -> u64 {
        self.by_rule.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::flows::Followed;
    use crate::classify::{Classifier, ClassifierConfig, TorFrame};
    use crate::testutil::*;
    use ipnet::IpNet;
    use leaktest_tor::{Allowlist, Roles};
    use leaktest_wire::catalogue::ProbeKind;
    use leaktest_wire::LinkType;
    use leaktest_wire::{FrameSummary, MarkerKeys, ProbeSpec, RunKey};

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
                own_macs: vec![GW_MAC],
                own_nets: vec![IpNet::new(IpAddr::V4(GW4), 24).unwrap()],
                ..ClassifierConfig::default()
            },
            LinkType::Ethernet,
            MarkerKeys::open(),
        )
    }

    fn decision(class: Class, rule: Rule) -> Decision {
        Decision { class, rule }
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
        let allow = Allowlist::new();
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
            let d = c.classify(&frame(&data), &allow);
            if let Some(g) = f.record(&frame(&data), &d) {
                new_groups += 1;
                assert!(g.live_line().contains("tcp [S]"), "{}", g.live_line());
            }
        }
        // Another flag set is another group; unattributed traffic another still.
        let data = eth4(WS4, NET4, 6, &tcp(40000, 80, TcpFlags::ACK, &[]));
        let d = c.classify(&frame(&data), &allow);
        assert!(f.record(&frame(&data), &d).is_some());
        let data = eth4(WS4, NET4, 6, &tcp(40000, 81, TcpFlags::ACK, &[]));
        let d = c.classify(&frame(&data), &allow);
        assert!(f.record(&frame(&data), &d).is_none());
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
        // Every probe of the run, one by one.
        let run = &f.runs()[0];
        assert_eq!(
            (run.run_id, run.distinct, run.packets),
            (0xabc, 65535, 65535)
        );
        let tcp_syn = Suite::Tcp.base();
        assert_eq!(
            run.ranges(),
            vec![(tcp_syn, tcp_syn + 79), (tcp_syn + 81, tcp_syn + 65535)]
        );
        assert!(run.contains(tcp_syn + 81) && !run.contains(tcp_syn + 80));
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
            let t = TorFrame {
                endpoint: ep,
                roles: Roles::OR_PORT,
                followed: Followed::FromStart,
            };
            assert!(f
                .record(&frame(&d), &decision(Class::Tor(t), Rule::Tor))
                .is_none());
        }
        let hk = |k| decision(Class::Housekeeping(k), Rule::Mld);
        f.record(&frame(&d), &hk(HousekeepingKind::Mld));
        f.record(&frame(&d), &hk(HousekeepingKind::Mld));
        f.record(
            &frame(&d),
            &decision(Class::Housekeeping(HousekeepingKind::Arp), Rule::Arp),
        );
        f.record(&frame(&d), &decision(Class::Canary, Rule::Canary));
        assert_eq!((f.packets, f.tor_packets, f.tor_endpoints()), (14, 10, 3));
        assert_eq!(f.tor_by_role[0], 10, "orport");
        assert_eq!(f.tor_by_role[1..], [0; 5]);
        assert_eq!(f.by_rule[Rule::Tor.index()], 10);
        assert_eq!(f.by_rule[Rule::Mld.index()], 2);
        assert_eq!(f.classified(), f.packets);
        assert_eq!(f.housekeeping_packets(), 3);
        assert_eq!(f.housekeeping_of(HousekeepingKind::Mld), 2);
        assert_eq!((f.canary_packets, f.leak_packets), (1, 0));
    }

    #[test]
    fn groups_are_bounded() {
        let mut f = Findings::new();
        let mut made = 0;
        // 256 protocols x 5 flag values x 2 families = 2560 distinct keys.
        for proto in 0..=255u8 {
            for flags in 0..5u8 {
                for v6 in [false, true] {
                    let l4 = tcp(1, u16::from(proto), flags, &[]);
                    let data = if v6 {
                        eth6(GW6, NET6, proto, &l4)
                    } else {
                        eth4(GW4, NET4, proto, &l4)
                    };
                    let mut s = FrameSummary::parse(&data, LinkType::Ethernet);
                    s.ip.tcp_flags = Some(TcpFlags(flags));
                    s.ip.protocol = Some(IpProtocol(proto));
                    let l = Leak {
                        summary: s,
                        cause: LeakCause::Unexpected,
                        probe: None,
                    };
                    if f.record(&frame(&data), &decision(Class::Leak(l), Rule::Default))
                        .is_some()
                    {
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
        let allow = Allowlist::new();
        let mut lines = Vec::new();
        for family in leaktest_wire::Family::BOTH {
            for spec in ProbeSpec::all(family, Suite::Ip) {
                let n = b.write(&spec, &mut buf);
                let d = c.classify(&frame(&buf[..n]), &allow);
                if let Some(g) = f.record(&frame(&buf[..n]), &d) {
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
