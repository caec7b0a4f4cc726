//! The classifier: what each outbound frame is, decided by an ordered table
//! of named rules ([`RULES`]); the first rule that claims a frame decides,
//! and its name goes with the frame into every report.
//!
//! | # | rule | decides |
//! |---|------|---------|
//! | 0 | `allow-net` | to an address inside an `--allow-net` network (a LAN the operator lets out on purpose): **allowed**, counted apart, probes included |
//! | 1 | `probe-marker` | an authentic probe payload marker anywhere in the frame: **leak**, attributed |
//! | 2 | `canary` | the canary EtherType: this watch's canary, byte for byte and seen once, is a **canary**; anything else of that EtherType is a **leak** (forged canary) |
//! | 3 | `tor` | TCP from the gateway to an endpoint its Tor uses: **Tor** if the flow carries what Tor sends there ([`flows`]), else a **leak** (not Tor) |
//! | 4 | `allow` | to an `--allow` endpoint, of its kind ([`allow`]): **allowed** (a `tls` entry's flow judged like Tor's) |
//! | 5–10 | `arp`, `neighbour-discovery`, `mld`, `igmp`, `dhcpv4`, `dhcpv6` | frames of those shapes: **housekeeping** if their content is what the gateway's own kernel sends ([`housekeeping`]), else a **leak** (housekeeping-shaped); well-formed housekeeping is a leak too with `--strict` |
//! | 11 | `default` | anything else: **leak** |
//!
//! After the table, a frame judged a leak without a payload marker may be
//! *labelled* with the probe whose header marker it carries
//! (`leaktest_wire::attribute_headers`, restricted to runs seen going to the
//! frame's destination). Labelling never changes a class.
//!
//! Per frame the classifier parses headers once ([`FrameSummary`]) and does
//! not allocate on the Tor, canary and housekeeping paths.

pub mod allow;
pub mod flows;
pub mod housekeeping;

use crate::classify::allow::{AllowEntry, AllowKind};
use crate::classify::flows::{FlowTable, Followed, Violation};
use crate::classify::housekeeping::{HousekeepingKind, Judgement, LinkRoutes, Own};
use ipnet::IpNet;
use leaktest_tor::{Allowlist, Roles};
use leaktest_wire::canary::{CanaryLedger, CanarySighting, Forgery, CANARY_ETHERTYPE};
use leaktest_wire::{
    attribute_headers, attribute_payload, Attribution, Family, Frame, FrameSummary, IpProtocol,
    LinkType, MarkerKeys,
};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// A rule of the classifier's table.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// To an `--allow-net` network.
    AllowNet,
    ProbeMarker,
    Canary,
    Tor,
    Allow,
    Arp,
    NeighbourDiscovery,
    Mld,
    Igmp,
    Dhcpv4,
    Dhcpv6,
    Default,
}

/// The rules in the order they are tried.
pub const RULES: [Rule; 12] = [
    Rule::AllowNet,
    Rule::ProbeMarker,
    Rule::Canary,
    Rule::Tor,
    Rule::Allow,
    Rule::Arp,
    Rule::NeighbourDiscovery,
    Rule::Mld,
    Rule::Igmp,
    Rule::Dhcpv4,
    Rule::Dhcpv6,
    Rule::Default,
];

impl Rule {
    /// The rule's stable name, as in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Rule::AllowNet => "allow-net",
            Rule::ProbeMarker => "probe-marker",
            Rule::Canary => "canary",
            Rule::Tor => "tor",
            Rule::Allow => "allow",
            Rule::Arp => "arp",
            Rule::NeighbourDiscovery => "neighbour-discovery",
            Rule::Mld => "mld",
            Rule::Igmp => "igmp",
            Rule::Dhcpv4 => "dhcpv4",
            Rule::Dhcpv6 => "dhcpv6",
            Rule::Default => "default",
        }
    }

    /// What the rule decides, in one line.
    pub fn about(self) -> &'static str {
        match self {
            Rule::AllowNet => "to an --allow-net network (a LAN let out on purpose): allowed, probes included, counted apart",
            Rule::ProbeMarker => "a probe's authentic payload marker: leak",
            Rule::Canary => "the canary EtherType: this watch's canary as built and seen once, else a forged canary (leak)",
            Rule::Tor => "TCP from the gateway to an endpoint its Tor uses, carrying what Tor sends there: Tor (else a leak)",
            Rule::Allow => "to an --allow endpoint, of its kind: allowed",
            Rule::Arp => "ARP as the gateway's kernel sends it: housekeeping (else a leak)",
            Rule::NeighbourDiscovery => "router/neighbour solicitation, neighbour advertisement as the kernel sends them: housekeeping (else a leak)",
            Rule::Mld => "MLD reports as the kernel sends them: housekeeping (else a leak)",
            Rule::Igmp => "IGMP reports as the kernel sends them: housekeeping (else a leak)",
            Rule::Dhcpv4 => "a DHCPv4 client message of the gateway's own: housekeeping (else a leak)",
            Rule::Dhcpv6 => "a DHCPv6 client message of the gateway's own: housekeeping (else a leak)",
            Rule::Default => "anything else: leak",
        }
    }

    /// Position in [`RULES`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the classifier must know about the gateway it watches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassifierConfig {
    /// Housekeeping counts as a leak (`--strict`).
    pub strict: bool,
    /// MAC addresses of the watched interface. Housekeeping must come from
    /// one of them (not checked on raw-IP links, which have no MAC).
    pub own_macs: Vec<[u8; 6]>,
    /// The watched interface's addresses with their prefixes. Tor, allowed
    /// and housekeeping traffic must come from one of them (housekeeping
    /// may also use the unspecified or an IPv6 link-local address, as DAD,
    /// DHCP and MLD do); the prefixes say what is on-link. When empty, Tor
    /// and allowed traffic are recognised by destination alone.
    pub own_nets: Vec<IpNet>,
    /// Connected routes and next hops through the interface: on-link too.
    pub routes: LinkRoutes,
    /// `--allow` entries (not the Tor ones, which join the Tor allowlist).
    pub allow: Vec<AllowEntry>,
}

/// Why a frame is a leak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeakCause {
    /// It carries a probe's payload marker.
    Probe,
    /// A frame of the canary EtherType that is not this watch's canary seen once.
    ForgedCanary(Forgery),
    /// To a Tor endpoint (or a `tls` `--allow` entry), not carrying what Tor sends there.
    NotTor(Violation),
    /// Of a housekeeping shape, not with the content the gateway's own kernel sends.
    HousekeepingShaped(HousekeepingKind, &'static str),
    /// Housekeeping, counted as a leak because of `--strict`.
    StrictHousekeeping(HousekeepingKind),
    /// Neither Tor, allowed, nor the gateway's own housekeeping.
    Unexpected,
}

impl LeakCause {
    /// The cause's stable name, as in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            LeakCause::Probe => "probe",
            LeakCause::ForgedCanary(_) => "forged-canary",
            LeakCause::NotTor(_) => "not-tor",
            LeakCause::HousekeepingShaped(..) => "housekeeping-shaped",
            LeakCause::StrictHousekeeping(_) => "strict-housekeeping",
            LeakCause::Unexpected => "unexpected",
        }
    }

    /// The particulars, for people (empty when the name says it all).
    pub fn detail(self) -> String {
        match self {
            LeakCause::Probe | LeakCause::Unexpected => String::new(),
            LeakCause::ForgedCanary(f) => f.name().to_string(),
            LeakCause::NotTor(v) => v.describe(),
            LeakCause::HousekeepingShaped(k, why) => format!("{k}: {why}"),
            LeakCause::StrictHousekeeping(k) => k.name().to_string(),
        }
    }
}

/// The family of a leaked frame.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LeakFamily {
    Ipv4,
    Ipv6,
    /// Not IP (ARP, LLDP, anything at layer 2), or unreadable.
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

    pub fn of(s: &FrameSummary) -> LeakFamily {
        match s.ip.family {
            Some(Family::V4) => LeakFamily::Ipv4,
            Some(Family::V6) => LeakFamily::Ipv6,
            None => LeakFamily::Other,
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

/// What the watcher knows about one leaked frame: its parsed headers, why
/// it is a leak, and the probe it came from if known. Plain data, `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leak {
    pub summary: FrameSummary,
    pub cause: LeakCause,
    pub probe: Option<Attribution>,
}

impl Leak {
    pub fn family(&self) -> LeakFamily {
        LeakFamily::of(&self.summary)
    }

    /// Whether the frame is a fragment with a non-zero offset (no ports).
    pub fn non_first_fragment(&self) -> bool {
        self.summary.ip.frag_offset != 0
    }
}

/// A frame counted as Tor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TorFrame {
    pub endpoint: SocketAddr,
    pub roles: Roles,
    pub followed: Followed,
}

/// A frame counted as allowed by an `--allow` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllowedFrame {
    pub endpoint: SocketAddr,
    /// Index of the entry in [`ClassifierConfig::allow`].
    pub entry: usize,
}

/// The class of one outbound frame.
///
/// A leak carries its whole parsed summary (about 500 bytes) by value: a
/// decision is made once per frame and consumed at once, and a heap
/// allocation per leaked frame would cost more than the copy.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Leak(Leak),
    Tor(TorFrame),
    Allowed(AllowedFrame),
    Housekeeping(HousekeepingKind),
    Canary,
}

/// A class and the rule that decided it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub class: Class,
    pub rule: Rule,
}

impl Decision {
    pub fn leak(&self) -> Option<&Leak> {
        match &self.class {
            Class::Leak(l) => Some(l),
            _ => None,
        }
    }
}

/// One frame on its way through the rules.
struct Input<'a> {
    frame: &'a Frame<'a>,
    s: &'a FrameSummary,
    tor: &'a Allowlist,
}

type RuleFn = fn(&mut Classifier, &Input<'_>) -> Option<Class>;

/// The table: each rule and its check, in [`RULES`] order.
const TABLE: [(Rule, RuleFn); 12] = [
    (Rule::AllowNet, Classifier::allow_net),
    (Rule::ProbeMarker, Classifier::probe_marker),
    (Rule::Canary, Classifier::canary),
    (Rule::Tor, Classifier::tor),
    (Rule::Allow, Classifier::allow),
    (Rule::Arp, |c, i| c.housekeeping(i, housekeeping::arp)),
    (Rule::NeighbourDiscovery, |c, i| {
        c.housekeeping(i, housekeeping::neighbour_discovery)
    }),
    (Rule::Mld, |c, i| c.housekeeping(i, housekeeping::mld)),
    (Rule::Igmp, |c, i| c.housekeeping(i, housekeeping::igmp)),
    (Rule::Dhcpv4, |c, i| c.housekeeping(i, housekeeping::dhcpv4)),
    (Rule::Dhcpv6, |c, i| c.housekeeping(i, housekeeping::dhcpv6)),
    (Rule::Default, |_, i| {
        Some(leak(i, LeakCause::Unexpected, None))
    }),
];

fn leak(i: &Input<'_>, cause: LeakCause, probe: Option<Attribution>) -> Class {
    Class::Leak(Leak {
        summary: *i.s,
        cause,
        probe,
    })
}

/// Classifies frames. Holds the marker keys (which learn runs and their
/// targets as probes are seen), the canary ledger, and the Tor flow table.
#[derive(Debug)]
pub struct Classifier {
    cfg: ClassifierConfig,
    link: LinkType,
    keys: MarkerKeys,
    canaries: Option<CanaryLedger>,
    flows: FlowTable,
}

impl Classifier {
    /// A classifier for frames of `link`, verifying markers with `keys`.
    pub fn new(cfg: ClassifierConfig, link: LinkType, keys: MarkerKeys) -> Classifier {
        Classifier {
            cfg,
            link,
            keys,
            canaries: None,
            flows: FlowTable::new(),
        }
    }

    /// Judges canary frames with `ledger` (without one, every frame of the
    /// canary EtherType is a forged canary).
    pub fn with_canaries(mut self, ledger: CanaryLedger) -> Classifier {
        self.canaries = Some(ledger);
        self
    }

    pub fn config(&self) -> &ClassifierConfig {
        &self.cfg
    }

    /// Replaces the gateway's own networks and routes (they may change
    /// while watching).
    pub fn set_own_nets(&mut self, nets: Vec<IpNet>, routes: LinkRoutes) {
        self.cfg.own_nets = nets;
        self.cfg.routes = routes;
    }

    /// The marker keys, with the runs learnt so far.
    pub fn keys(&self) -> &MarkerKeys {
        &self.keys
    }

    pub fn canaries(&self) -> Option<&CanaryLedger> {
        self.canaries.as_ref()
    }

    pub fn canaries_mut(&mut self) -> Option<&mut CanaryLedger> {
        self.canaries.as_mut()
    }

    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    /// Classifies one outbound frame; `tor` is the Tor allowlist now.
    /// Never panics on any input.
    pub fn classify(&mut self, frame: &Frame<'_>, tor: &Allowlist) -> Decision {
        let s = FrameSummary::parse(frame.data, self.link);
        let input = Input { frame, s: &s, tor };
        for (rule, check) in TABLE {
            if let Some(mut class) = check(self, &input) {
                if let Class::Leak(l) = &mut class {
                    if l.probe.is_none() {
                        // Labelling only: the class is already decided.
                        l.probe = attribute_headers(&s, &self.keys);
                    }
                }
                return Decision { class, rule };
            }
        }
        unreachable!("the default rule claims every frame")
    }

    fn probe_marker(&mut self, i: &Input<'_>) -> Option<Class> {
        let a = attribute_payload(i.frame.data, i.s, &mut self.keys)?;
        // A reflection goes to the forged source, an ICMP error back to the
        // probe's source: only the packet that carried the marker names a
        // target.
        if let Some(dst) = leaktest_wire::target_of(i.s, &a) {
            self.keys.learn_target(a.run, dst);
        }
        Some(leak(i, LeakCause::Probe, Some(a)))
    }

    fn canary(&mut self, i: &Input<'_>) -> Option<Class> {
        if i.s.ethertype != Some(CANARY_ETHERTYPE) {
            return None;
        }
        let tagged = i.s.vlan_tags > 0;
        let sighting = match &mut self.canaries {
            Some(l) => l.observe(i.frame.data, tagged),
            None => CanarySighting::Forged(Forgery::Foreign),
        };
        Some(match sighting {
            CanarySighting::Ours(_) => Class::Canary,
            CanarySighting::Forged(f) => leak(i, LeakCause::ForgedCanary(f), None),
        })
    }

    /// Whether `a` is one of the interface's addresses (always, when none are known).
    pub fn sent_by_us(&self, a: Option<IpAddr>) -> bool {
        self.cfg.own_nets.is_empty()
            || a.is_some_and(|a| self.cfg.own_nets.iter().any(|n| n.addr() == a))
    }

    fn tor(&mut self, i: &Input<'_>) -> Option<Class> {
        let ip = &i.s.ip;
        if !ip.is(IpProtocol::TCP) || ip.frag_offset != 0 || !self.sent_by_us(ip.src) {
            return None;
        }
        let endpoint = flows::endpoint(i.s)?;
        let roles = i.tor.roles(&endpoint)?;
        Some(
            match self.flows.judge(i.s, i.frame.data, roles, i.frame.ts_ns()) {
                Ok(followed) => Class::Tor(TorFrame {
                    endpoint,
                    roles,
                    followed,
                }),
                Err(v) => leak(i, LeakCause::NotTor(v), None),
            },
        )
    }

    /// `--allow-net`: any frame to an address inside an allowed network.
    fn allow_net(&mut self, i: &Input<'_>) -> Option<Class> {
        let dst = i.s.ip.dst?;
        let entry = self
            .cfg
            .allow
            .iter()
            .position(|e| e.kind == AllowKind::Net && e.contains(dst))?;
        let endpoint = SocketAddr::new(dst, i.s.ip.dst_port.unwrap_or(0));
        Some(Class::Allowed(AllowedFrame { endpoint, entry }))
    }

    fn allow(&mut self, i: &Input<'_>) -> Option<Class> {
        let ip = &i.s.ip;
        let protocol = ip.protocol?;
        if self.cfg.allow.is_empty()
            || !protocol.has_ports()
            || ip.frag_offset != 0
            || !self.sent_by_us(ip.src)
        {
            return None;
        }
        let endpoint = flows::endpoint(i.s)?;
        let entry = self
            .cfg
            .allow
            .iter()
            .position(|e| e.matches(protocol, &endpoint))?;
        if self.cfg.allow[entry].kind == AllowKind::Tls {
            if let Err(v) = self
                .flows
                .judge(i.s, i.frame.data, Roles::BRIDGE, i.frame.ts_ns())
            {
                return Some(leak(i, LeakCause::NotTor(v), None));
            }
        }
        Some(Class::Allowed(AllowedFrame { endpoint, entry }))
    }

    fn housekeeping(
        &mut self,
        i: &Input<'_>,
        check: fn(Own<'_>, &[u8], &FrameSummary) -> Option<Judgement>,
    ) -> Option<Class> {
        let own = Own {
            macs: if self.link == LinkType::Ethernet {
                &self.cfg.own_macs
            } else {
                &[]
            },
            nets: &self.cfg.own_nets,
            routes: &self.cfg.routes,
        };
        Some(match check(own, i.frame.data, i.s)? {
            Ok(k) if self.cfg.strict => leak(i, LeakCause::StrictHousekeeping(k), None),
            Ok(k) => Class::Housekeeping(k),
            Err((k, why)) => leak(i, LeakCause::HousekeepingShaped(k, why), None),
        })
    }
}

#[cfg(test)]
mod tests;
