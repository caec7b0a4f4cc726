//! Gateway profiles: the Whonix-style policy and realistic ways to break it.
//!
//! A profile is an nftables ruleset for the gateway namespace plus its
//! forwarding sysctls; the lab swaps them while tor keeps running. Each
//! profile states what the suite must find (see [`crate::expect`]).

use crate::plan::*;

/// What the gateway's forward chain lets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// Policy drop (Whonix).
    Nothing,
    /// Everything.
    All,
    /// Any TCP (someone trusted the SYN redirect to catch every connection).
    Tcp,
    /// UDP port 53 (DNS forwarded instead of redirected).
    Dns,
    /// New TCP connections (`ct state new`), as a gateway that trusts its
    /// SYN redirect to have taken every new connection to Tor.
    NewTcp,
    /// Everything except what comes from the internal subnets, matched by
    /// source address instead of by interface.
    NotFromInternalSubnet,
    /// IPv6 whose `ip6 nexthdr` is not TCP, UDP or ICMPv6 (the IPv6 header's
    /// own next-header field: an extension header hides the transport).
    Ipv6NotTransport,
    /// Stateless: everything but TCP segments with SYN and without ACK.
    StatelessNoSyn,
}

/// The knobs that generate a gateway ruleset.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// `inet` tables (IPv4 and IPv6); `false` gives IPv4-only `ip` tables.
    pub inet: bool,
    pub redirect_syn: bool,
    pub redirect_dns: bool,
    pub forward: Forward,
    pub masquerade: bool,
    /// The output chain also accepts everything from uid 0.
    pub output_root: bool,
    pub ip_forward: bool,
    pub ipv6_forward: bool,
    /// A reverse-path check in prerouting (`fib saddr . iif oif missing
    /// drop`): forged sources that do not route back by the internal
    /// interface are dropped before NAT and filter.
    pub rpf: bool,
    /// The careless SYN redirect `tcp flags == syn` (exactly SYN) instead
    /// of `tcp flags & (fin|syn|rst|ack) == syn`.
    pub exact_syn: bool,
    /// A stateless ruleset: no conntrack, no NAT, no redirect (a router
    /// ACL). Conntrack is what reassembles fragments before the rules.
    pub stateless: bool,
    /// The output chain also accepts every private destination (10.0.0.0/8,
    /// 172.16.0.0/12, 192.168.0.0/16, fc00::/7) for every user: a LAN
    /// exception written wider than the LAN it was meant for.
    pub output_lan: bool,
    /// Not a rule: whether the gateway's tor has the network when the
    /// sweeps run (its TransPort listens). The lab's broken profiles run
    /// before (`DisableNetwork 1`), the Whonix profile and `lab_model`
    /// after. It decides how a redirected SYN is answered (see
    /// `reflection`).
    pub tor_listens: bool,
}

impl Policy {
    /// Whonix-Gateway's policy, reduced to what this lab's gateway runs.
    pub const WHONIX: Policy = Policy {
        inet: true,
        redirect_syn: true,
        redirect_dns: true,
        forward: Forward::Nothing,
        masquerade: false,
        output_root: false,
        ip_forward: false,
        ipv6_forward: false,
        rpf: true,
        exact_syn: false,
        stateless: false,
        output_lan: false,
        tor_listens: false,
    };

    /// The forwarding sysctls of this policy.
    pub fn sysctls(&self) -> Vec<(&'static str, &'static str)> {
        let b = |x: bool| if x { "1" } else { "0" };
        vec![
            ("net.ipv4.ip_forward", b(self.ip_forward)),
            ("net.ipv6.conf.all.forwarding", b(self.ipv6_forward)),
        ]
    }

    /// The nftables ruleset text (`nft -f`), replacing whatever was loaded.
    pub fn ruleset(&self, tor_uid: u32) -> String {
        if self.stateless {
            return self.stateless_ruleset(tor_uid);
        }
        let fam = if self.inet { "inet" } else { "ip" };
        let mut pre = String::new();
        if self.redirect_dns {
            pre.push_str(&format!(
                "    iifname \"{GW_INT_IF}\" udp dport 53 redirect to :{DNS_PORT}\n"
            ));
        }
        if self.redirect_syn {
            let m = if self.exact_syn {
                "tcp flags == syn"
            } else {
                "tcp flags & (fin|syn|rst|ack) == syn"
            };
            pre.push_str(&format!(
                "    iifname \"{GW_INT_IF}\" {m} redirect to :{TRANS_PORT}\n"
            ));
        }
        let rpf = if self.rpf {
            format!(
                "  chain rpfilter {{\n    type filter hook prerouting priority raw; policy accept;\n    iifname \"{GW_INT_IF}\" fib saddr . iif oif missing drop\n  }}\n"
            )
        } else {
            String::new()
        };
        let forward = match self.forward {
            Forward::Nothing => String::new(),
            Forward::All => format!("    iifname \"{GW_INT_IF}\" oifname \"{GW_EXT_IF}\" accept\n"),
            Forward::Tcp => format!(
                "    iifname \"{GW_INT_IF}\" oifname \"{GW_EXT_IF}\" meta l4proto tcp accept\n"
            ),
            Forward::Dns => {
                format!("    iifname \"{GW_INT_IF}\" oifname \"{GW_EXT_IF}\" udp dport 53 accept\n")
            }
            Forward::NewTcp => format!(
                "    iifname \"{GW_INT_IF}\" oifname \"{GW_EXT_IF}\" meta l4proto tcp ct state new accept\n"
            ),
            Forward::NotFromInternalSubnet => format!(
                "    ip saddr 10.152.152.0/24 drop\n    ip6 saddr fd19:c33d:88bc::/64 drop\n    oifname \"{GW_EXT_IF}\" accept\n"
            ),
            Forward::Ipv6NotTransport => format!(
                "    ip6 nexthdr {{ tcp, udp, ipv6-icmp }} drop\n    iifname \"{GW_INT_IF}\" oifname \"{GW_EXT_IF}\" meta nfproto ipv6 accept\n"
            ),
            Forward::StatelessNoSyn => format!(
                "    tcp flags & (syn|ack) == syn drop\n    iifname \"{GW_INT_IF}\" oifname \"{GW_EXT_IF}\" accept\n"
            ),
        };
        let forward_back = if self.forward != Forward::Nothing {
            format!("    iifname \"{GW_EXT_IF}\" oifname \"{GW_INT_IF}\" ct state established,related accept\n")
        } else {
            String::new()
        };
        let post = if self.masquerade {
            format!(
                "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"{GW_EXT_IF}\" masquerade\n  }}\n"
            )
        } else {
            String::new()
        };
        // Neighbour discovery and MLD only as RFC 4861/3810 send them (hop
        // limit 255, resp. 1): an unrestricted ND accept would let any local
        // user with CAP_NET_RAW send ICMPv6 of these types to any address.
        let icmp6_nd = if self.inet {
            "    icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept\n    icmpv6 type { mld-listener-report, mld2-listener-report } ip6 hoplimit 1 accept\n"
        } else {
            ""
        };
        let local6 = if self.inet {
            "    ip6 daddr { ::1, fd19:c33d:88bc::/64 } accept\n"
        } else {
            ""
        };
        // The gateway's own ICMP errors never leave by the uplink: they are
        // RELATED to what caused them, so `ct state related` would pass
        // them, and a workstation that forges a neighbour's source address
        // (or a link-local one) can make the gateway send them to any
        // internet address it names (tor's SYN-ACK to the forged neighbour
        // fails its resolution; the host-unreachable goes to the SYN-ACK's
        // un-NATed source, the target). Tor needs none of them.
        let icmp_errors = format!(
            "    oifname \"{GW_EXT_IF}\" icmp type {{ destination-unreachable, time-exceeded, parameter-problem }} drop\n{}",
            if self.inet {
                format!("    oifname \"{GW_EXT_IF}\" icmpv6 type {{ destination-unreachable, packet-too-big, time-exceeded, parameter-problem }} drop\n")
            } else {
                String::new()
            }
        );
        let root = if self.output_root {
            "    meta skuid 0 accept\n"
        } else {
            ""
        };
        let lan = match (self.output_lan, self.inet) {
            (true, true) => "    ip daddr { 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 } accept\n    ip6 daddr fc00::/7 accept\n",
            (true, false) => "    ip daddr { 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 } accept\n",
            _ => "",
        };
        format!(
            "flush ruleset\n\
table {fam} leaktest_gw {{\n\
{rpf}\
  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n{pre}  }}\n\
{post}\
  chain input {{\n    type filter hook input priority filter; policy drop;\n\
    ct state invalid drop\n\
    tcp flags & (fin|syn) == (fin|syn) drop\n\
    tcp flags & (syn|rst) == (syn|rst) drop\n\
    tcp flags & (fin|syn|rst|psh|ack|urg) == 0x0 drop\n\
    tcp flags & (fin|psh|urg) == (fin|psh|urg) drop\n\
    ip frag-off & 0x1fff != 0 drop\n\
    iifname \"lo\" accept\n\
    ct state established,related accept\n\
{icmp6_nd}\
    iifname \"{GW_INT_IF}\" tcp dport {{ {TRANS_PORT}, {SOCKS_PORT} }} accept\n\
    iifname \"{GW_INT_IF}\" udp dport {DNS_PORT} accept\n\
  }}\n\
  chain forward {{\n    type filter hook forward priority filter; policy drop;\n{forward}{forward_back}  }}\n\
  chain output {{\n    type filter hook output priority filter; policy drop;\n\
    ct state invalid drop\n\
    tcp flags & (fin|syn) == (fin|syn) drop\n\
    tcp flags & (syn|rst) == (syn|rst) drop\n\
    tcp flags & (fin|syn|rst|psh|ack|urg) == 0x0 drop\n\
    tcp flags & (fin|psh|urg) == (fin|psh|urg) drop\n\
    ip frag-off & 0x1fff != 0 drop\n\
    oifname \"lo\" accept\n\
{icmp_errors}\
    ct state established,related accept\n\
{icmp6_nd}\
    ip daddr {{ 127.0.0.0/8, 10.152.152.0/24 }} accept\n\
{local6}\
{lan}\
    meta skuid {tor_uid} accept\n\
{root}\
  }}\n\
}}\n"
        )
    }
}

impl Policy {
    /// A stateless ruleset (a router's ACL): no `ct`, `nat` or `redirect`
    /// anywhere, so conntrack and its defragmentation never load in the
    /// gateway's namespace; the output chain lets tor's uid and local
    /// traffic out by uid and address alone.
    fn stateless_ruleset(&self, tor_uid: u32) -> String {
        let fam = if self.inet { "inet" } else { "ip" };
        let forward = match self.forward {
            Forward::StatelessNoSyn => format!(
                "    tcp flags & (syn|ack) == syn drop\n    iifname \"{GW_INT_IF}\" oifname \"{GW_EXT_IF}\" accept\n    iifname \"{GW_EXT_IF}\" oifname \"{GW_INT_IF}\" accept\n"
            ),
            _ => String::new(),
        };
        format!(
            "flush ruleset\n\
table {fam} leaktest_gw {{\n\
  chain input {{\n    type filter hook input priority filter; policy accept;\n  }}\n\
  chain forward {{\n    type filter hook forward priority filter; policy drop;\n{forward}  }}\n\
  chain output {{\n    type filter hook output priority filter; policy drop;\n\
    oifname \"lo\" accept\n\
    oifname \"{GW_INT_IF}\" accept\n\
    icmpv6 type {{ nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert }} ip6 hoplimit 255 accept\n\
    meta skuid {tor_uid} accept\n\
  }}\n\
}}\n"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whonix_ruleset_has_the_essentials() {
        let r = Policy::WHONIX.ruleset(102);
        assert!(r.starts_with("flush ruleset\ntable inet leaktest_gw"));
        assert!(r.contains("tcp flags & (fin|syn|rst|ack) == syn redirect to :9040"));
        assert!(r.contains("udp dport 53 redirect to :5300"));
        assert!(r.contains("meta skuid 102 accept"));
        assert!(!r.contains("masquerade"));
        assert!(!r.contains("skuid 0"));
        assert_eq!(
            Policy::WHONIX.sysctls(),
            vec![
                ("net.ipv4.ip_forward", "0"),
                ("net.ipv6.conf.all.forwarding", "0")
            ]
        );
    }
}

/// The suites the lab's sweeps send. The gateway's own sweeps (raw
/// sockets) leave out what only a workstation behind it can send: forged
/// sources, tunnels, IP options and extension headers through its own
/// stack test nothing its output chain does not already show, and its own
/// output path reassembles and refragments the frag suite's
/// multi-fragment datagrams (conntrack), which the model does not predict
/// frame by frame. LAN destinations they do send: an output chain's
/// exceptions are written by destination.
pub fn sweep_suites(sweep: Sweep) -> &'static [Suite] {
    const GATEWAY: [Suite; 7] = [
        Suite::Icmp,
        Suite::Ip,
        Suite::Tcp,
        Suite::Udp,
        Suite::Flags,
        Suite::IcmpCodes,
        Suite::Lan,
    ];
    match sweep {
        Sweep::Workstation => &Suite::ALL,
        Sweep::GatewayRoot | Sweep::GatewayUser => &GATEWAY,
    }
}

/// Where a sweep is sent from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sweep {
    /// The full default sweep from the workstation, through the gateway.
    Workstation,
    /// A raw-socket sweep on the gateway itself, as root.
    GatewayRoot,
    /// A raw-socket sweep on the gateway itself, as an unprivileged uid with CAP_NET_RAW.
    GatewayUser,
}

impl Sweep {
    pub const ALL: [Sweep; 3] = [Sweep::Workstation, Sweep::GatewayRoot, Sweep::GatewayUser];

    pub fn name(self) -> &'static str {
        match self {
            Sweep::Workstation => "ws",
            Sweep::GatewayRoot => "gw-root",
            Sweep::GatewayUser => "gw-user",
        }
    }
}

/// Whether one probe leaks under a policy, as far as the model can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Leaks,
    Stopped,
    /// Depends on bytes the lab does not control (the run id inside a
    /// marker that a protocol parser reads as a header).
    Either,
}

use leaktest_wire::catalogue::{
    ExtChain, ExtHeader, Family, FragKind, IpOpt, LanDest, ProbeKind, ProbeSpec, SpoofSource,
    Suite, TcpFlags, Transport, FRAG_DECOY_PORT, FRAG_TCP_PORT,
};

impl Policy {
    /// Whether a table of this policy sees packets of `family`.
    pub fn filters(&self, family: Family) -> bool {
        self.inet || family == Family::V4
    }

    /// Whether conntrack (and with it defragmentation and NAT) runs for
    /// `family`: a table uses it, which a stateless ruleset does not.
    pub fn tracks(&self, family: Family) -> bool {
        self.filters(family) && !self.stateless
    }

    /// Whether a reply from beyond the gateway to a probe of `sweep` gets
    /// back to its sender. The gateway's own probes come from its external
    /// address; the workstation's only when masquerade gave them that
    /// address: the lab's internet, like the real one, has no route back to
    /// the internal prefixes (10.152.152.0/18, fd19:c33d:88bc::/64).
    pub fn replies_reach_sender(&self, sweep: Sweep, family: Family) -> bool {
        match sweep {
            Sweep::Workstation => self.masquerade && self.filters(family),
            Sweep::GatewayRoot | Sweep::GatewayUser => true,
        }
    }

    /// Whether the sender's RST answering a SYN-ACK from beyond (a segment
    /// of a connection conntrack already knows) leaves by the uplink: from
    /// the gateway itself always (its output chain accepts established
    /// traffic); from the workstation only through a forward chain that
    /// accepts such a segment (not one that takes new connections only, a
    /// source-subnet block or an `ip6 nexthdr` drop).
    pub fn senders_rst_leaves(&self, sweep: Sweep, family: Family) -> bool {
        match sweep {
            Sweep::Workstation => {
                self.forwarding(family)
                    && (!self.filters(family)
                        || matches!(
                            self.forward,
                            Forward::All | Forward::Tcp | Forward::StatelessNoSyn
                        ))
            }
            Sweep::GatewayRoot | Sweep::GatewayUser => true,
        }
    }

    fn forwarding(&self, family: Family) -> bool {
        match family {
            Family::V4 => self.ip_forward,
            Family::V6 => self.ipv6_forward,
        }
    }

    /// The model of this gateway: does `spec`, sent in `sweep`, leave the
    /// external interface? Each rule names the kernel behaviour it relies on.
    pub fn fate(&self, sweep: Sweep, spec: &ProbeSpec) -> Fate {
        let fam = spec.family;
        let filtered = self.filters(fam);
        if self.tracks(fam) {
            if let ProbeKind::Frag { frag } = spec.kind {
                return self.fate_reassembled(sweep, spec.family, frag);
            }
        }
        if let ProbeKind::Ip { protocol } = spec.kind {
            // IPv6: a hop-by-hop header made of marker bytes is malformed and
            // the kernel drops it on receipt (raw-socket output does not parse it).
            if fam == Family::V6 && protocol == 0 && sweep == Sweep::Workstation {
                return Fate::Stopped;
            }
            // (IPv6, 44: a Fragment header made of marker bytes is a short
            // non-last fragment, which conntrack refuses to queue: it passes
            // unreassembled, measured.)
        }
        match sweep {
            Sweep::Workstation => self.fate_forwarded(spec, filtered),
            Sweep::GatewayRoot | Sweep::GatewayUser => self.fate_local(sweep, spec, filtered),
        }
    }

    /// A fragment where conntrack runs: its defragmentation (prerouting and
    /// output alike) holds lone fragments for a reassembly that never
    /// completes, and judges the frag suite's datagrams whole once complete:
    /// the tiny, reordered and late-header ones are a TCP SYN to 443; of the
    /// overlapping one, the rewriting copy covers exactly the head's bytes,
    /// so `inet_frag_queue_insert` drops it as a duplicate (measured) and
    /// the datagram is the head's TCP ACK to 53 with the tail. A forwarded
    /// datagram is fragmented again at the largest fragment's size
    /// (`frag_max_size`): the overlapping and reordered ones along the same
    /// boundaries (each piece keeps its marker), the tiny one not.
    fn fate_reassembled(&self, sweep: Sweep, family: Family, frag: FragKind) -> Fate {
        let as_tcp = |flags: u8, dst_port: u16| ProbeSpec {
            family,
            kind: ProbeKind::Tcp {
                flags: TcpFlags(flags),
                dst_port,
            },
        };
        let whole = match frag {
            // IPv6: conntrack refuses to queue a first fragment that lacks
            // the whole header chain up to the TCP header (RFC 7112; measured:
            // the tiny and late-header heads pass unreassembled, untracked)
            // and their tails wait for a head that never comes. No flags can
            // be read, so no SYN rule takes the head: a forward chain that
            // accepts TCP forwards it.
            FragKind::TinyHead | FragKind::LateHeaderHead if family == Family::V6 => {
                // Untracked (conntrack's state "invalid" for a rule that asks).
                let spec = ProbeSpec {
                    family,
                    kind: ProbeKind::Frag { frag },
                };
                return match (sweep, self.forward) {
                    (Sweep::Workstation, Forward::NewTcp) => Fate::Stopped,
                    (Sweep::Workstation, _) => self.fate_forwarded(&spec, true),
                    _ => Fate::Stopped,
                };
            }
            FragKind::TinyTail | FragKind::LateHeaderTail if family == Family::V6 => {
                return Fate::Stopped
            }
            FragKind::First | FragKind::NonFirst | FragKind::OverlapRewrite => {
                return Fate::Stopped
            }
            FragKind::OverlapHead | FragKind::OverlapTail => {
                return self.fate(sweep, &as_tcp(TcpFlags::ACK, FRAG_DECOY_PORT))
            }
            // Fragmented again at its largest piece, 56 bytes: along the
            // same boundaries, each piece with its marker.
            FragKind::ReorderedHead | FragKind::ReorderedTail => {
                return self.fate(sweep, &as_tcp(TcpFlags::SYN, FRAG_TCP_PORT))
            }
            // Tiny (IPv4; IPv6 above) and late-header (IPv6 only): the
            // largest piece is the 96-byte tail, so the datagram leaves as
            // 96 + 8 bytes: the tail's marker in the first, nothing in the
            // second (the model has no name for that piece: `Either`).
            _ => self.fate(sweep, &as_tcp(TcpFlags::SYN, FRAG_TCP_PORT)),
        };
        match whole {
            Fate::Stopped => Fate::Stopped,
            _ => Fate::Either,
        }
    }

    fn fate_forwarded(&self, spec: &ProbeSpec, filtered: bool) -> Fate {
        if dropped_on_receipt(spec) {
            return Fate::Stopped;
        }
        let l4 = nft_l4(spec);
        if filtered {
            // The reverse-path check drops forged sources that do not route
            // back by the internal interface.
            if self.rpf {
                if let ProbeKind::Spoof { source, .. } = spec.kind {
                    if !routes_back_internal(source) {
                        return Fate::Stopped;
                    }
                }
            }
            match (l4, spec.kind) {
                (L4::Tcp(flags, _), _) if self.redirect_syn && self.syn_redirected(flags) => {
                    // The gateway answers the SYN itself; a forged source that
                    // routes out of the uplink gets that answer there, and the
                    // reflection names the probe.
                    return match spec.kind {
                        ProbeKind::Spoof { source, .. } => {
                            reflection(source, spec.family, self.tor_listens)
                        }
                        _ => Fate::Stopped,
                    };
                }
                (L4::Udp(53), _) if self.redirect_dns => {
                    // Redirected to DNSPort; a forged source may get the answer.
                    return match spec.kind {
                        ProbeKind::Spoof { source, .. } => {
                            dns_reflection(source, spec.family, self.tor_listens)
                        }
                        _ => Fate::Stopped,
                    };
                }
                _ => {}
            }
        }
        if !self.forwarding(spec.family) || not_forwarded(spec) {
            return Fate::Stopped;
        }
        if filtered {
            let accepted = match self.forward {
                Forward::Nothing => false,
                Forward::All => true,
                Forward::Tcp => matches!(l4, L4::Tcp(..) | L4::TcpUnreadable),
                Forward::Dns => l4 == L4::Udp(53),
                Forward::NewTcp => match l4 {
                    L4::Tcp(flags, _) => conntrack_new_tcp(flags),
                    _ => false,
                },
                Forward::NotFromInternalSubnet => match spec.kind {
                    ProbeKind::Spoof { source, .. } => !matches!(
                        source,
                        SpoofSource::SameSubnet | SpoofSource::GatewayInternal
                    ),
                    _ => false,
                },
                Forward::Ipv6NotTransport => {
                    spec.family == Family::V6 && !matches!(nexthdr_field(spec), 6 | 17 | 58)
                }
                Forward::StatelessNoSyn => match l4 {
                    L4::Tcp(flags, _) => flags.0 & (TcpFlags::SYN | TcpFlags::ACK) != TcpFlags::SYN,
                    _ => true,
                },
            };
            if !accepted {
                return Fate::Stopped;
            }
        }
        Fate::Leaks
    }

    /// Whether `spec`, sent in `sweep`, leaves only as a reflection: a
    /// spoof SYN the gateway redirects to its own port and answers, out of
    /// its uplink, to a forged source that routes there.
    pub fn reflects(&self, sweep: Sweep, spec: &ProbeSpec) -> Fate {
        let ProbeKind::Spoof { source, transport } = spec.kind else {
            return Fate::Stopped;
        };
        let reaches_nat = sweep == Sweep::Workstation
            && self.tracks(spec.family)
            && !dropped_on_receipt(spec)
            && (!self.rpf || routes_back_internal(source));
        match transport {
            Transport::TcpSyn
                if reaches_nat
                    && self.redirect_syn
                    && self.syn_redirected(TcpFlags(TcpFlags::SYN)) =>
            {
                reflection(source, spec.family, self.tor_listens)
            }
            Transport::Udp if reaches_nat && self.redirect_dns => {
                dns_reflection(source, spec.family, self.tor_listens)
            }
            _ => Fate::Stopped,
        }
    }

    /// Whether the SYN redirect rule (`tcp flags & (fin|syn|rst|ack) == syn`,
    /// or with `exact_syn` the careless `tcp flags == syn`) takes a segment.
    fn syn_redirected(&self, flags: TcpFlags) -> bool {
        if self.exact_syn {
            flags.0 == TcpFlags::SYN
        } else {
            flags.0 & 0x17 == TcpFlags::SYN
        }
    }

    fn fate_local(&self, sweep: Sweep, spec: &ProbeSpec, filtered: bool) -> Fate {
        if let ProbeKind::Lan { dest, .. } = spec.kind {
            return self.fate_local_lan(sweep, spec.family, dest, filtered);
        }
        if !filtered {
            return Fate::Leaks; // no table for this family: nothing stops it
        }
        // The output chain: conntrack-invalid dropped first. New TCP only for
        // SYN and (loose pickup) ACK; ICMP only for the request types;
        // ND/MLD types are untracked but the ND rules need hop limit 255/1
        // and probes use 64.
        let root_allowed = self.output_root && sweep == Sweep::GatewayRoot;
        if !root_allowed {
            return Fate::Stopped;
        }
        match spec.kind {
            ProbeKind::Tcp { flags, .. } | ProbeKind::Flags { flags, .. } => {
                if conntrack_new_tcp(flags) {
                    Fate::Leaks
                } else {
                    Fate::Stopped
                }
            }
            ProbeKind::Ecn { .. } => Fate::Leaks,
            ProbeKind::Icmp { icmp_type } | ProbeKind::IcmpCode { icmp_type, .. } => {
                match spec.family {
                    Family::V4 if matches!(icmp_type, 8 | 13 | 15 | 17) => Fate::Leaks,
                    Family::V4 => Fate::Stopped,
                    // Requests are new; ND/MLD types are untracked (not invalid).
                    Family::V6 if matches!(icmp_type, 128 | 139 | 130..=136 | 143) => Fate::Leaks,
                    // Errors: the output chain drops the gateway's own ICMP
                    // errors on the uplink (and they quote no valid packet).
                    Family::V6 if (1..=4).contains(&icmp_type) => Fate::Stopped,
                    // Measured: a few other ICMPv6 types pass conntrack as well.
                    Family::V6 => Fate::Either,
                }
            }
            ProbeKind::Udp { .. } => Fate::Leaks,
            ProbeKind::Frag { .. } => Fate::Stopped,
            // Measured: conntrack on output lets only some bare protocols
            // through (generic tracking; per-protocol trackers reject
            // marker-only headers): the lab asserts the range.
            ProbeKind::Ip { .. } => Fate::Either,
            // The lab's gateway sweeps do not send these composed suites
            // (see [`sweep_suites`]); `lan` is judged above.
            ProbeKind::IpOpt { .. }
            | ProbeKind::Ext { .. }
            | ProbeKind::Lan { .. }
            | ProbeKind::Spoof { .. }
            | ProbeKind::Tunnel { .. } => Fate::Stopped,
        }
    }
}

impl Policy {
    /// A `lan` probe sent by the gateway itself (a raw socket sends it to
    /// the destination in its header, through the gateway's routing: the
    /// default route by the uplink, broadcast and multicast on the uplink,
    /// link-scope IPv6 on the uplink by its zone). Its transports (TCP SYN,
    /// UDP, echo request) are all new to conntrack, so only the output
    /// chain's accept rules decide, by user and destination.
    fn fate_local_lan(&self, sweep: Sweep, family: Family, dest: LanDest, filtered: bool) -> Fate {
        // Never on the wire (measured): another host of the uplink subnet
        // (none exists, its ARP / neighbour resolution fails), fe80::1 (no
        // uplink neighbour has it) and the uplink's subnet-router anycast
        // address (the router does not answer for it; a gateway with IPv6
        // forwarding on holds it itself and delivers locally).
        let v6 = family == Family::V6;
        if dest == LanDest::UplinkHost
            || (v6 && matches!(dest, LanDest::LinkLocal | LanDest::SubnetBroadcast))
        {
            return Fate::Stopped;
        }
        // (A stateless ruleset writes no LAN exception.)
        let accepted = !filtered
            || (self.output_root && sweep == Sweep::GatewayRoot)
            || (self.output_lan && !self.stateless && private_destination(dest, family));
        if accepted {
            Fate::Leaks
        } else {
            Fate::Stopped
        }
    }
}

/// Whether a `lan` destination lies in the private ranges (RFC 1918,
/// RFC 4193 `fc00::/7`).
fn private_destination(dest: LanDest, family: Family) -> bool {
    match family {
        Family::V4 => matches!(
            dest,
            LanDest::Private10 | LanDest::Private172 | LanDest::Private192
        ),
        Family::V6 => dest == LanDest::Private10,
    }
}

/// Whether conntrack starts a connection for a locally sent TCP segment
/// with these flags: the flag combination must be valid (ECE, CWR and PSH
/// ignored: `tcp_valid_flags` in nf_conntrack_proto_tcp.c) and open a
/// connection: SYN (with URG) or, with `nf_conntrack_tcp_loose` (default
/// 1), a mid-stream ACK (with URG). Anything else is invalid and dropped by
/// `ct state invalid drop`.
pub fn conntrack_new_tcp(flags: TcpFlags) -> bool {
    let f = flags.0 & !(TcpFlags::ECE | TcpFlags::CWR | TcpFlags::PSH);
    [
        TcpFlags::SYN,
        TcpFlags::SYN | TcpFlags::URG,
        TcpFlags::ACK,
        TcpFlags::ACK | TcpFlags::URG,
    ]
    .contains(&f)
}

/// The upper layer as an nftables rule sees it (`meta l4proto`, `th`): IPv6
/// through the extension headers `ipv6_find_hdr` walks (hop-by-hop,
/// destination options, routing, fragment; nftables asks it to stop at AH,
/// `IP6_FH_F_AUTH`), IPv4 from the protocol field only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum L4 {
    Tcp(TcpFlags, u16),
    /// TCP whose header the rules cannot read: a first fragment too short
    /// for it, or (IPv6) a non-first fragment.
    TcpUnreadable,
    Udp(u16),
    Other,
}

fn nft_l4(spec: &ProbeSpec) -> L4 {
    // A fragment judged as it is (no conntrack): only a first fragment that
    // holds the whole TCP header shows flags; the others show no transport.
    // (IPv4 non-first fragments are read from their first byte as if a TCP
    // header began there, measured; the tails' first 16 bytes are zero, so
    // they show TCP with no flags.)
    if let ProbeKind::Frag { frag } = spec.kind {
        let v4 = spec.family == Family::V4;
        return match frag {
            FragKind::OverlapHead => L4::Tcp(TcpFlags(TcpFlags::ACK), FRAG_DECOY_PORT),
            FragKind::OverlapRewrite | FragKind::ReorderedHead => {
                L4::Tcp(TcpFlags(TcpFlags::SYN), FRAG_TCP_PORT)
            }
            FragKind::TinyTail | FragKind::OverlapTail | FragKind::ReorderedTail if v4 => {
                L4::Tcp(TcpFlags(0), 0)
            }
            FragKind::First => L4::Udp(53),
            FragKind::NonFirst => L4::Other,
            _ => L4::TcpUnreadable,
        };
    }
    if let ProbeKind::Ext { chain, .. } = spec.kind {
        let hidden = chain
            .headers()
            .iter()
            .any(|h| matches!(h, ExtHeader::Esp | ExtHeader::Unknown | ExtHeader::Ah))
            || spec.family == Family::V4;
        if hidden {
            return L4::Other;
        }
    }
    if let ProbeKind::Tunnel { .. } = spec.kind {
        return match spec.dst_port() {
            Some(p) if spec.protocol() == 17 => L4::Udp(p),
            _ => L4::Other,
        };
    }
    if let ProbeKind::Ip { protocol: 6 } = spec.kind {
        // The fixed head read as a TCP header (build::IP_SUITE_HEAD): no
        // flags, data offset 0, which conntrack finds invalid (never new).
        let head = &leaktest_wire::build::IP_SUITE_HEAD;
        return L4::Tcp(TcpFlags(head[13]), u16::from_be_bytes([head[2], head[3]]));
    }
    match (spec.protocol(), spec.tcp_flags(), spec.dst_port()) {
        (6, f, p) => L4::Tcp(f.unwrap_or_default(), p.unwrap_or(0)),
        (17, _, Some(p)) => L4::Udp(p),
        _ => L4::Other,
    }
}

/// What the gateway's kernel drops on receipt, before any rule (and so
/// before a redirect; measured in the lab, Linux 6.x): IPv4 source routes
/// (`accept_source_route` is 0 in `all`: `ip_rcv_options`); martian IPv4
/// sources (0.0.0.0, multicast, loopback) and the gateway's own IPv4
/// addresses as source (`fib_validate_source`); IPv6 multicast and loopback
/// sources (`ipv6_rcv`).
fn dropped_on_receipt(spec: &ProbeSpec) -> bool {
    let v4 = spec.family == Family::V4;
    match spec.kind {
        ProbeKind::IpOpt { opt, .. } => {
            matches!(opt, IpOpt::LooseSourceRoute | IpOpt::StrictSourceRoute)
        }
        ProbeKind::Spoof { source, .. } => match source {
            SpoofSource::Multicast | SpoofSource::Loopback => true,
            SpoofSource::Unspecified
            | SpoofSource::GatewayInternal
            | SpoofSource::GatewayExternal => v4,
            _ => false,
        },
        _ => false,
    }
}

/// What the gateway's kernel takes in but never forwards out of its uplink
/// (measured): TTL 1; broadcast and multicast destinations (no multicast
/// routing), the internal subnet's broadcast, link-local IPv6 destinations
/// (routed back by the interface they came in on), the subnet-router
/// anycast address, an uplink neighbour that does not exist (its resolution
/// fails); IPv6 sources that are unspecified or link-local (`ip6_forward`).
/// (An IPv4-mapped IPv6 source and the gateway's own IPv6 addresses are
/// forwarded.) A redirect to one of its own ports comes first.
fn not_forwarded(spec: &ProbeSpec) -> bool {
    let v4 = spec.family == Family::V4;
    match spec.kind {
        ProbeKind::IpOpt { opt, .. } => opt == IpOpt::Ttl1,
        ProbeKind::Lan { dest, .. } => {
            matches!(
                dest,
                LanDest::Broadcast
                    | LanDest::SubnetBroadcast
                    | LanDest::AllNodes
                    | LanDest::Mdns
                    | LanDest::Ssdp
                    | LanDest::Llmnr
                    | LanDest::UplinkHost
            ) || (!v4 && dest == LanDest::LinkLocal)
        }
        ProbeKind::Spoof { source, .. } => {
            !v4 && matches!(source, SpoofSource::Unspecified | SpoofSource::LinkLocal)
        }
        _ => false,
    }
}

/// Whether the gateway's answer to a redirected SYN from a forged source
/// leaves by its uplink: the address routes there (another private range,
/// an internet address, an IPv4 link-local address, and for IPv6 the
/// unspecified and IPv4-mapped addresses: the default route). With no
/// TransPort listener (`listens` false: the lab's broken profiles run while
/// the gateway's tor has `DisableNetwork 1`) the answer is the kernel's RST,
/// in every run measured, except to an IPv4-mapped source: present in some
/// runs, absent in others (CI), so `Either`. A listening TransPort answers
/// with a SYN-ACK, never to an IPv4-mapped source (`tcp_v6_conn_request`),
/// and not at all while its accept queue is full (measured in `lab_model`:
/// the sweep's own redirected SYNs fill it): `Either`.
fn reflection(source: SpoofSource, family: Family, listens: bool) -> Fate {
    let v6 = family == Family::V6;
    let routes_out = match source {
        SpoofSource::OtherPrivate | SpoofSource::Documentation => true,
        SpoofSource::LinkLocal => !v6,
        SpoofSource::Unspecified | SpoofSource::V4Mapped => v6,
        _ => false,
    };
    match (routes_out, listens, source) {
        (false, _, _) => Fate::Stopped,
        (true, false, SpoofSource::V4Mapped) => Fate::Either,
        (true, false, _) => Fate::Leaks,
        (true, true, SpoofSource::V4Mapped) => Fate::Stopped,
        (true, true, _) => Fate::Either,
    }
}

/// Whether the answer to a redirected `spoof` DNS query leaves by the
/// uplink to its forged source. Without a listener (the broken profiles'
/// tor has `DisableNetwork 1`, which opens no DNSPort) the kernel's port
/// unreachable is the answer, and the output chain drops the gateway's own
/// ICMP errors on the uplink. A listening DNSPort answers the TXT question
/// at once without data, id and question copied (`evdns_server_callback`
/// in tor's dnsserv.c; measured in `lab_model`), through conntrack's
/// reverse NAT from the target's port 53,
/// to every forged source that routes by the uplink except `::` (UDP over
/// IPv6 sends to `::` as to `::1`, `udpv6_sendmsg`) and an IPv4-mapped one
/// (tor's IPv6 listeners are `IPV6_V6ONLY`).
fn dns_reflection(source: SpoofSource, family: Family, listens: bool) -> Fate {
    let v6 = family == Family::V6;
    let routes_out = match source {
        SpoofSource::OtherPrivate | SpoofSource::Documentation => true,
        SpoofSource::LinkLocal => !v6,
        _ => false,
    };
    if routes_out && listens {
        Fate::Leaks
    } else {
        Fate::Stopped
    }
}

/// The number in the IPv6 header's next-header field (IPv4: protocol), as
/// an `ip6 nexthdr` rule reads it.
fn nexthdr_field(spec: &ProbeSpec) -> u8 {
    match spec.kind {
        // Conntrack's defragmentation takes an atomic fragment's header out
        // (measured: an echo behind it is then `ip6 nexthdr ipv6-icmp`).
        ProbeKind::Ext {
            chain: ExtChain::AtomicFragment,
            ..
        } => spec.protocol(),
        ProbeKind::Ext { chain, .. } => chain.headers().first().map_or(0, |h| h.number()),
        ProbeKind::Frag { .. } if spec.family == Family::V6 => 44,
        _ => spec.protocol(),
    }
}

/// Whether a forged source's route from the gateway leaves by the internal
/// interface (so `fib saddr . iif oif missing drop` lets it pass): only a
/// neighbour of the workstation (the gateway's own addresses route to `lo`).
fn routes_back_internal(source: SpoofSource) -> bool {
    source == SpoofSource::SameSubnet
}

/// A gateway profile: a policy and what the suite must conclude about it.
#[derive(Clone, Debug)]
pub struct Profile {
    pub name: &'static str,
    pub about: &'static str,
    pub policy: Policy,
    /// Run by `leaktest lab` without options (the others with `--all` or
    /// by name; `leaktest lab --help` says why).
    pub default: bool,
    /// Networks the profile's operator lets out on purpose: given to its
    /// watch as `--allow-net` (besides the lab's own), counted apart.
    pub allow_nets: &'static [&'static str],
    /// Runs once the gateway's tor has the network, so that its TransPort
    /// and DNSPort listen (a profile that must pass always does; the other
    /// profiles run earlier, while the private network forms its first
    /// consensus).
    pub tor_listens: bool,
    /// The gateway's tor reaches the network only through the lab's obfs4
    /// bridge while this profile runs.
    pub bridge: bool,
}

impl Profile {
    /// Whether the gateway's own output path (what its own processes can
    /// send) differs from the Whonix-style profile's: another output chain,
    /// or no table for one family. Only then do the lab's gateway sweeps
    /// tell something the Whonix profile's do not.
    pub fn own_output_differs(&self) -> bool {
        let p = &self.policy;
        let w = Policy::WHONIX;
        self.expect_pass()
            || p.output_root != w.output_root
            || p.inet != w.inet
            || p.output_lan != w.output_lan
    }

    /// The sweeps the lab runs for this profile. The Whonix-style profile
    /// gets all three (the full proof). A broken profile gets the
    /// workstation's sweep, and the gateway's root sweep only when its own
    /// output path differs from Whonix's ([`Profile::own_output_differs`]);
    /// the unprivileged gateway sweep would repeat another sweep probe for
    /// probe in every built-in profile (an output chain that exempts root
    /// leaves non-root users as Whonix's does; a family with no table lets
    /// every user out alike), so it runs with the Whonix profile only.
    pub fn sweeps(&self) -> &'static [Sweep] {
        // An output exception for every user: the unprivileged sweep shows it too.
        if self.expect_pass() || self.policy.output_lan {
            &Sweep::ALL
        } else if self.own_output_differs() {
            &[Sweep::Workstation, Sweep::GatewayRoot]
        } else {
            &[Sweep::Workstation]
        }
    }

    /// Whether the suite must find this gateway correct.
    pub fn expect_pass(&self) -> bool {
        let p = &self.policy;
        p.inet
            && p.redirect_syn
            && p.redirect_dns
            && p.forward == Forward::Nothing
            && !p.output_root
            && p.rpf
            && !p.exact_syn
            && !p.stateless
            && !p.output_lan
    }
}

/// The built-in profiles: the correct gateway first, then the broken ones.
pub fn builtin() -> Vec<Profile> {
    let w = Policy::WHONIX;
    vec![
        Profile { name: "whonix", about: "Whonix-style policy: SYN and DNS redirected to Tor, nothing forwarded, only tor's uid out", policy: w, default: true, allow_nets: &[], tor_listens: true, bridge: false },
        Profile {
            name: "whonix-bridge",
            about: "the Whonix-style policy with the gateway's tor using only an obfs4 bridge (obfs4proxy): the bridge (from GETCONF Bridge) and its obfs4 flows count as Tor, the verdict is PASS",
            policy: w,
            default: false,
            allow_nets: &[],
            tor_listens: true,
            bridge: true,
        },
        Profile {
            name: "forward-masquerade",
            about: "IPv4 forwarding on, forward chain open, masquerade on the external interface",
            policy: Policy { ip_forward: true, forward: Forward::All, masquerade: true, ..w },
            default: true,
            allow_nets: &[],
            tor_listens: false,
            bridge: false,
        },
        Profile {
            name: "forward-no-nat",
            about: "IPv4 forwarding on, forward chain open, no NAT: the workstation's own address leaves (class 4: a client jailed with forwarding on and no NAT)",
            policy: Policy { ip_forward: true, forward: Forward::All, ..w },
            default: false,
            allow_nets: &[],
            tor_listens: false,
            bridge: false,
        },
        Profile {
            name: "ipv6-forward",
            about: "IPv4-only (`ip`) tables with IPv6 forwarding on: IPv6 is neither filtered nor redirected",
            policy: Policy { inet: false, ipv6_forward: true, forward: Forward::All, ..w },
            default: true,
            allow_nets: &[],
            tor_listens: false,
            bridge: false,
        },
        Profile {
            name: "dns-forward",
            about: "DNS forwarded and masqueraded instead of redirected to DNSPort",
            policy: Policy { redirect_dns: false, ip_forward: true, ipv6_forward: true, forward: Forward::Dns, masquerade: true, ..w },
            default: true,
            allow_nets: &[],
            tor_listens: false,
            bridge: false,
        },
        Profile {
            name: "tcp-forward",
            about: "TCP forwarded (only SYN is redirected): the FIN/RST/ACK leak class (class 3: a transparent proxy that sends only new connections to Tor)",
            policy: Policy { ip_forward: true, ipv6_forward: true, forward: Forward::Tcp, ..w },
            default: true,
            allow_nets: &[],
            tor_listens: false,
            bridge: false,
        },
        Profile {
            name: "output-root",
            about: "the gateway's output chain also accepts everything from root",
            policy: Policy { output_root: true, ..w },
            default: true,
            allow_nets: &[],
            tor_listens: false,
            bridge: false,
        },
        Profile {
            name: "exact-syn",
            about: "only segments whose flags are exactly SYN redirected, new TCP forwarded and masqueraded: the ECN setup SYN (SYN+ECE+CWR) and every other SYN variant leave in the clear",
            policy: Policy { exact_syn: true, ip_forward: true, ipv6_forward: true, forward: Forward::NewTcp, masquerade: true, ..w },
            default: false,
            allow_nets: &[],
            tor_listens: false,
            bridge: false,
        },
        Profile {
            name: "src-subnet",
            about: "forwarding blocked by the workstations' source subnet instead of by interface, no reverse-path check: forged sources are forwarded and masqueraded, and the gateway's answers to their redirected SYNs reflect out of the uplink",
            policy: Policy { ip_forward: true, ipv6_forward: true, forward: Forward::NotFromInternalSubnet, masquerade: true, rpf: false, ..w },
            default: false,
            allow_nets: &[],
            tor_listens: false,
            bridge: false,
        },
        Profile {
            name: "no-rpf",
            about: "Whonix-style without a reverse-path (fib saddr) check: with tor running, TransPort's SYN-ACKs to forged sources' redirected SYNs and DNSPort's answers to their redirected queries leave by the uplink, in the clear, to addresses the workstation chose",
            policy: Policy { rpf: false, ..w },
            default: false,
            allow_nets: &[],
            tor_listens: true,
            bridge: false,
        },
        Profile {
            name: "ip6-nexthdr",
            about: "IPv6 forwarded unless `ip6 nexthdr` is TCP, UDP or ICMPv6: extension headers, tunnels and unreassembled fragments hide the transport",
            policy: Policy { ipv6_forward: true, forward: Forward::Ipv6NotTransport, ..w },
            default: false,
            allow_nets: &[],
            tor_listens: false,
            bridge: false,
        },
        Profile {
            name: "stateless",
            about: "a stateless ACL (no conntrack) that drops only TCP segments with SYN and without ACK: a tiny first fragment and its tail pass, and so does every non-SYN segment",
            policy: Policy { stateless: true, redirect_syn: false, redirect_dns: false, rpf: false, ip_forward: true, ipv6_forward: true, forward: Forward::StatelessNoSyn, ..w },
            default: false,
            allow_nets: &[],
            tor_listens: false,
            bridge: false,
        },
        Profile {
            name: "lan-output",
            about: "Whonix-style, but the output chain lets every user reach every private range (10/8, 172.16/12, 192.168/16, fc00::/7) where the operator meant only the home LAN 192.168.0.0/16 (allowed on purpose, counted apart): the gateway's own processes reach the other ranges in the clear",
            policy: Policy { output_lan: true, ..w },
            default: false,
            allow_nets: &["192.168.0.0/16"],
            tor_listens: false,
            bridge: false,
        },
    ]
}

#[cfg(test)]
mod model_tests {
    use super::*;
    use leaktest_wire::catalogue::Suite;

    fn count(p: &Policy, sweep: Sweep, family: Family, suite: Suite) -> (usize, usize) {
        let mut leaks = 0;
        let mut either = 0;
        for s in ProbeSpec::all(family, suite) {
            match p.fate(sweep, &s) {
                Fate::Leaks => leaks += 1,
                Fate::Either => either += 1,
                Fate::Stopped => {}
            }
        }
        (leaks, either)
    }

    #[test]
    fn reflections_are_certain_without_a_listener_and_possible_with_one() {
        let p = builtin()
            .into_iter()
            .find(|p| p.name == "no-rpf")
            .unwrap()
            .policy;
        let spoof = |family, source| ProbeSpec {
            family,
            kind: ProbeKind::Spoof {
                source,
                transport: Transport::TcpSyn,
            },
        };
        let doc4 = spoof(Family::V4, SpoofSource::Documentation);
        let mapped6 = spoof(Family::V6, SpoofSource::V4Mapped);
        let near4 = spoof(Family::V4, SpoofSource::SameSubnet);
        assert_eq!(p.fate(Sweep::Workstation, &doc4), Fate::Leaks);
        assert_eq!(p.fate(Sweep::Workstation, &mapped6), Fate::Either);
        assert_eq!(p.fate(Sweep::Workstation, &near4), Fate::Stopped);
        let listening = Policy {
            tor_listens: true,
            ..p
        };
        assert_eq!(listening.fate(Sweep::Workstation, &doc4), Fate::Either);
        assert_eq!(listening.fate(Sweep::Workstation, &mapped6), Fate::Stopped);
        // The reverse-path check stops them all.
        let whonix = Policy::WHONIX;
        assert_eq!(whonix.fate(Sweep::Workstation, &doc4), Fate::Stopped);
        assert_eq!(whonix.reflects(Sweep::Workstation, &doc4), Fate::Stopped);
        assert_eq!(p.reflects(Sweep::Workstation, &doc4), Fate::Leaks);
        // DNS: no DNSPort without the network (the port unreachable is
        // dropped on the way out); a listening one answers at once.
        let dns = |family, source| ProbeSpec {
            family,
            kind: ProbeKind::Spoof {
                source,
                transport: Transport::Udp,
            },
        };
        let doc6 = dns(Family::V6, SpoofSource::Documentation);
        assert_eq!(p.reflects(Sweep::Workstation, &doc6), Fate::Stopped);
        assert_eq!(p.fate(Sweep::Workstation, &doc6), Fate::Stopped);
        assert_eq!(listening.reflects(Sweep::Workstation, &doc6), Fate::Leaks);
        assert_eq!(listening.fate(Sweep::Workstation, &doc6), Fate::Leaks);
        for quiet in [
            dns(Family::V6, SpoofSource::V4Mapped),
            dns(Family::V6, SpoofSource::Unspecified),
            dns(Family::V4, SpoofSource::SameSubnet),
        ] {
            assert_eq!(
                listening.reflects(Sweep::Workstation, &quiet),
                Fate::Stopped
            );
        }
        let whonix_listening = Policy {
            tor_listens: true,
            ..whonix
        };
        assert_eq!(
            whonix_listening.fate(Sweep::Workstation, &doc6),
            Fate::Stopped
        );
    }

    #[test]
    fn whonix_stops_everything() {
        for sweep in Sweep::ALL {
            for family in Family::BOTH {
                for suite in Suite::ALL {
                    assert_eq!(
                        count(&Policy::WHONIX, sweep, family, suite),
                        (0, 0),
                        "{sweep:?} {family} {suite}"
                    );
                }
            }
        }
    }

    #[test]
    fn forwarding_leaks_what_is_not_redirected() {
        let p = builtin()
            .into_iter()
            .find(|p| p.name == "forward-masquerade")
            .unwrap()
            .policy;
        assert_eq!(
            count(&p, Sweep::Workstation, Family::V4, Suite::Tcp),
            (4 * 65536, 0)
        );
        assert_eq!(
            count(&p, Sweep::Workstation, Family::V4, Suite::Udp),
            (65535, 0)
        );
        // Conntrack reassembles the frag suite's datagrams: the overlapping
        // one is the head's TCP ACK to 53 (the rewriting copy is dropped as
        // a duplicate), forwarded in the head's and the tail's pieces; the
        // others are SYNs, redirected.
        assert_eq!(
            count(&p, Sweep::Workstation, Family::V4, Suite::Frag),
            (2, 0)
        );
        // All 256 protocol numbers, 6 too: its fixed head is no new TCP
        // connection, so no SYN redirect takes it.
        assert_eq!(
            count(&p, Sweep::Workstation, Family::V4, Suite::Ip),
            (256, 0)
        );
        assert_eq!(
            count(&p, Sweep::Workstation, Family::V6, Suite::Tcp),
            (0, 0)
        );
        assert_eq!(
            count(&p, Sweep::GatewayRoot, Family::V4, Suite::Udp),
            (0, 0)
        );
    }

    #[test]
    fn ipv6_unfiltered_leaks_everything_ipv6() {
        let p = builtin()
            .into_iter()
            .find(|p| p.name == "ipv6-forward")
            .unwrap()
            .policy;
        assert_eq!(
            count(&p, Sweep::Workstation, Family::V6, Suite::Tcp),
            (5 * 65536, 0)
        );
        // No IPv6 table, no conntrack, no reassembly: every fragment of every
        // trick is forwarded as it is.
        assert_eq!(
            count(&p, Sweep::Workstation, Family::V6, Suite::Frag),
            (11, 0)
        );
        assert_eq!(
            count(&p, Sweep::GatewayUser, Family::V6, Suite::Udp),
            (65536, 0)
        );
        assert_eq!(
            count(&p, Sweep::Workstation, Family::V4, Suite::Udp),
            (0, 0)
        );
    }

    #[test]
    fn a_wide_lan_exception_lets_every_user_reach_the_private_ranges() {
        let lan = builtin()
            .into_iter()
            .find(|p| p.name == "lan-output")
            .unwrap();
        assert_eq!(lan.sweeps(), &Sweep::ALL);
        for sweep in [Sweep::GatewayRoot, Sweep::GatewayUser] {
            // 10.0.0.1, 172.16.0.1, 192.168.1.1 / fd00::1, three transports each.
            assert_eq!(count(&lan.policy, sweep, Family::V4, Suite::Lan), (9, 0));
            assert_eq!(count(&lan.policy, sweep, Family::V6, Suite::Lan), (3, 0));
        }
        assert_eq!(
            count(&lan.policy, Sweep::Workstation, Family::V4, Suite::Lan),
            (0, 0)
        );
        // The operator's own LAN is counted apart, the rest leaks.
        let nets: Vec<ipnet::IpNet> = lan.allow_nets.iter().map(|n| n.parse().unwrap()).collect();
        let e = crate::expect::Expectation::of(&lan.policy).allowing(&nets);
        let root = &e.sweeps[&Sweep::GatewayRoot];
        assert_eq!(root.certain.len(), 6 + 3);
        assert!(root.possible.is_empty());
        // With root's output open, every LAN destination that exists leaves:
        // 13 of 14 IPv4 (not the absent uplink host), 9 of 12 IPv6.
        let root_open = Policy {
            output_root: true,
            ..Policy::WHONIX
        };
        assert_eq!(
            count(&root_open, Sweep::GatewayRoot, Family::V4, Suite::Lan),
            (39, 0)
        );
        assert_eq!(
            count(&root_open, Sweep::GatewayRoot, Family::V6, Suite::Lan),
            (27, 0)
        );
    }

    #[test]
    fn only_expected_profiles_pass() {
        let passing: Vec<_> = builtin()
            .into_iter()
            .filter(|p| p.expect_pass())
            .map(|p| p.name)
            .collect();
        assert_eq!(passing, vec!["whonix", "whonix-bridge"]);
        assert!(builtin().len() >= 7);
    }
}
