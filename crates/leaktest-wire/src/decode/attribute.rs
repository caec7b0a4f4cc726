//! Which probe a captured frame came from.
//!
//! Two kinds of evidence, used for different things:
//!
//! 1. [`attribute_payload`]: an authentic payload marker anywhere in the
//!    frame ([`Marker::find_verified`]). It survives NAT (an `ip`-suite
//!    probe's NAT-able header is its fixed head,
//!    [`crate::build::IP_SUITE_HEAD`], never the marker), ICMP
//!    quoting, tunnels and fragments that hold the marker. It is a 64-bit
//!    MAC, so it may decide a frame's class: a frame carrying it is a probe.
//! 2. [`attribute_headers`]: for a frame already judged a leak, the header
//!    marker of a run whose payload markers were seen going to the frame's
//!    destination (or to the destination of the packet an ICMP error
//!    quotes). The probe `seq` is recomputed from the headers and the
//!    header-tag fields are compared; a field counts only if it matches in
//!    full, and the match needs at least [`HEADER_MIN_BITS`] bits. No field
//!    is required, so a NAT that rewrites the source address, source port,
//!    IPv4 ID or checksums only removes the bits of the fields it rewrote.
//!    It only labels: it never turns a frame into a leak.
//!
//! Header evidence also names a reflection ([`Evidence::Reflection`]): the
//! gateway's answer, in the target's name, to a forged-source probe, sent
//! out of its uplink to the forged address (see `reflection_match`).
//!
//! Header evidence also names the sender's own answer to a probe: a TCP
//! RST whose sequence number is a SYN probe's plus one, from the probe's
//! source port to its destination port ([`Evidence::Reset`]). A target
//! that accepts the SYN answers with a SYN-ACK acknowledging sequence + 1,
//! and the sender's kernel, which has no such connection, resets it with
//! exactly that sequence number (RFC 9293 section 3.10.7.1).
//!
//! Bits each probe shape can give from headers alone: IPv4 ID 16, IPv6 flow
//! label 20, TCP sequence 32, UDP source port 15, TCP source port 12 (its
//! low 3 bits are the flag set), ICMP id/seq 32, IPv6 fragment
//! identification 32. So `ip`-suite probes (16 or 20 bits) and IPv4
//! non-first fragments (16 bits) can only be attributed by their payload,
//! and an IPv4 UDP probe only if both its ID and its source port are intact.

use super::summary::{FrameSummary, IpFields, LinkType};
use crate::build::{frag_ident, ECN_SRC_SET, FLAGS_SRC_PORT};
use crate::catalogue::kinds::icmp_code_types;
use crate::catalogue::FLAG_PORT_SLOTS;
use crate::catalogue::{
    Family, FragKind, ProbeKind, ProbeSpec, TcpFlags, ECN_SYN, FRAG_PORT, TCP_FLAG_SETS,
};
use crate::hdr::IpProtocol;
use crate::marker::{HeaderTag, Marker, MarkerKeys, RunKey, HEADER_MIN_BITS, MARKER_LEN};
use std::net::IpAddr;

/// How a frame was tied to a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Evidence {
    /// An authentic payload marker was found in the frame.
    Payload,
    /// Header fields matched the header marker of a known run.
    Header,
    /// The sender's RST answering the target's SYN-ACK to a SYN probe.
    Reset,
    /// What the gateway sent, in the target's name, to a `spoof` probe's
    /// forged source: a reflection out of its uplink.
    Reflection,
}

impl Evidence {
    pub fn name(self) -> &'static str {
        match self {
            Evidence::Payload => "payload",
            Evidence::Header => "header",
            Evidence::Reset => "reset",
            Evidence::Reflection => "reflection",
        }
    }
}

/// The probe a frame came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attribution {
    pub spec: ProbeSpec,
    pub seq: u32,
    pub run: RunKey,
    pub evidence: Evidence,
    /// The pulse round the payload marker names (authenticated by its MAC);
    /// `None` for a sweep's probe and for header evidence (a round's header
    /// fields are its own, and header matching tries rounds of no run).
    pub round: Option<u32>,
}

/// Names the probe `frame` came from by any evidence, or `None`; a payload
/// marker also teaches `keys` the frame's destination as a target of its
/// run. For tools and tests; the watcher uses the two steps separately.
/// Never panics.
pub fn attribute(frame: &[u8], link: LinkType, keys: &mut MarkerKeys) -> Option<Attribution> {
    let s = FrameSummary::parse(frame, link);
    if let Some(a) = attribute_payload(frame, &s, keys) {
        if let Some(dst) = target_of(&s, &a) {
            keys.learn_target(a.run, dst);
        }
        return Some(a);
    }
    attribute_headers(&s, keys)
}

/// The target a payload-attributed frame shows its run going to: the
/// destination of the packet that carried the marker, which for an ICMP
/// error is the quoted packet (the error itself goes back to the probe's
/// source, possibly a forged one); none for a reflection.
pub fn target_of(s: &FrameSummary, a: &Attribution) -> Option<std::net::IpAddr> {
    if a.evidence != Evidence::Payload {
        return None;
    }
    match &s.quoted {
        Some(q) => q.dst,
        None => s.ip.dst,
    }
}

/// An authentic payload marker in `frame` (`s` is its summary), or
/// (evidence [`Evidence::Reflection`]) a DNS answer to a `spoof` probe's
/// query ([`dns_reflection`]). Only a payload marker says the frame went to a target of its run. Never panics.
pub fn attribute_payload(
    frame: &[u8],
    s: &FrameSummary,
    keys: &mut MarkerKeys,
) -> Option<Attribution> {
    let found = Marker::find_verified(frame, keys)
        .map(|(m, run)| (m, run, Evidence::Payload))
        .or_else(|| dns_reflection(s, frame, keys).map(|(m, run)| (m, run, Evidence::Reflection)));
    let (m, run, evidence) = found?;
    let spec = ProbeSpec::from_seq(m.seq)?;
    Some(Attribution {
        spec,
        seq: m.seq,
        run,
        evidence,
        round: m.round,
    })
}

/// A DNS answer from port 53 whose question is a `spoof` UDP probe's
/// (`compose::dns_query`): the resolver the gateway redirected the probe
/// to (its DNSPort) answered the forged source, out of the uplink. The
/// marker in the question must be authentic, name a `spoof` UDP probe, and
/// the answer's id must be that probe's ([`HeaderTag::dns_id`]).
fn dns_reflection(
    s: &FrameSummary,
    frame: &[u8],
    keys: &mut MarkerKeys,
) -> Option<(Marker, RunKey)> {
    if s.ip.src_port != Some(crate::catalogue::Transport::UDP_PORT) {
        return None;
    }
    let (id, bytes) = crate::compose::read_dns_answer(s.udp_payload(frame))?;
    let spoof_udp = |seq| {
        matches!(
            ProbeSpec::from_seq(seq).map(|s| s.kind),
            Some(ProbeKind::Spoof {
                transport: crate::catalogue::Transport::Udp,
                ..
            })
        )
    };
    // Cheap checks first: no key work for a marker that names no spoof
    // probe.
    if !spoof_udp(Marker::read(&bytes)?.seq) {
        return None;
    }
    let (m, key) = Marker::verify(&bytes, keys)?;
    if key.header_tag(m.seq).dns_id() != id {
        return None;
    }
    // Only an answer that passed every check teaches the keys its run.
    keys.learn(key);
    Some((m, key))
}

/// A header-only match of the outer packet, or of the packet an ICMP error
/// quotes, against the runs known for its destination. Never panics.
pub fn attribute_headers(s: &FrameSummary, keys: &MarkerKeys) -> Option<Attribution> {
    let mut best: Option<(u32, ProbeSpec, RunKey, Evidence)> = None;
    for f in std::iter::once(&s.ip).chain(s.quoted.as_ref()) {
        if let Some(dst) = f.dst {
            header_match(f, keys.runs_for(&dst), &mut best);
        }
        // A reflection leaves from the target's address (the gateway
        // answered in its name): the runs known for the frame's source, or
        // the announced ones (behind a gateway that only reflects, no marker
        // of the run ever reaches the uplink).
        if let Some(src) = f.src {
            reflection_match(f, keys.reflection_runs(&src), &mut best);
        }
    }
    let (bits, spec, run, evidence) = best?;
    (bits >= HEADER_MIN_BITS).then(|| Attribution {
        spec,
        seq: spec.seq(),
        run,
        evidence,
        round: None,
    })
}

/// A probe the headers of a packet could be, and how its headers would show it.
#[derive(Clone, Copy)]
struct Candidate {
    spec: ProbeSpec,
    evidence: Evidence,
}

/// Scores every probe the headers of `f` could be against `runs`.
fn header_match(
    f: &IpFields,
    runs: &[RunKey],
    best: &mut Option<(u32, ProbeSpec, RunKey, Evidence)>,
) {
    if runs.is_empty() {
        return;
    }
    let mut cands = [None; 8];
    header_candidates(f, &mut cands);
    for c in cands.into_iter().flatten() {
        let reset_of_flags =
            c.evidence == Evidence::Reset && matches!(c.spec.kind, ProbeKind::Flags { .. });
        if max_header_bits(&c.spec) < HEADER_MIN_BITS && !reset_of_flags {
            continue;
        }
        for run in runs {
            if reset_of_flags && f.dst_port != c.spec.dst_port_with(Some(&run.drawn_ports())) {
                continue; // the RST goes to the port of the probe's slot
            }
            let bits = header_bits(f, &c, run.header_tag(c.spec.seq()));
            if best.is_none_or(|(b, _, _, _)| bits > b) {
                *best = Some((bits, c.spec, *run, c.evidence));
            }
        }
    }
}

/// A reflection of a `spoof` TCP SYN: the SYN-ACK (or RST) that the gateway
/// sends, in the target's name, to the forged source when it takes the SYN
/// itself (a transparent proxy's port): from the probe's destination port to
/// its source port, acknowledging its sequence number + 1 (a SYN-ACK, RFC
/// 9293 section 3.5) or + 1 + its payload (a RST for want of a listener).
/// The source port names the probe ([`crate::compose::composed_src_port`]);
/// the 32 bits of the acknowledgement are the tag bits (two values are
/// accepted: 31 bits of evidence).
fn reflection_match(
    f: &IpFields,
    runs: &[RunKey],
    best: &mut Option<(u32, ProbeSpec, RunKey, Evidence)>,
) {
    let (Some(family), Some(IpProtocol::TCP)) = (f.family, f.protocol) else {
        return;
    };
    let (Some(flags), Some(ack), Some(dport)) = (f.tcp_flags, f.tcp_ack, f.dst_port) else {
        return;
    };
    if runs.is_empty()
        || flags.0 & TcpFlags::ACK == 0
        || f.src_port != Some(crate::catalogue::Transport::TCP_PORT)
    {
        return;
    }
    for &source in crate::catalogue::SpoofSource::of(family) {
        // A forged source of a fixed address must be the reflection's
        // destination (cheap, and no run key is tried otherwise).
        if let (Some(fixed), Some(dst)) =
            (crate::compose::fixed_spoof_address(source, family), f.dst)
        {
            if fixed != dst {
                continue;
            }
        }
        let spec = ProbeSpec {
            family,
            kind: ProbeKind::Spoof {
                source,
                transport: crate::catalogue::Transport::TcpSyn,
            },
        };
        if crate::compose::composed_src_port(&spec) != Some(dport) {
            continue;
        }
        for run in runs {
            let tag = run.header_tag(spec.seq());
            // A SYN-ACK acknowledges the SYN alone; a RST (no listener)
            // acknowledges the SYN and its payload (RFC 9293 section 3.10.7.1).
            let syn = tag.tcp_seq().wrapping_add(1);
            let all = syn.wrapping_add((MARKER_LEN + crate::compose::SOURCE_CLAIM_LEN) as u32);
            if ack == syn || ack == all {
                let bits = 31;
                if best.is_none_or(|(b, _, _, _)| bits > b) {
                    *best = Some((bits, spec, *run, Evidence::Reflection));
                }
            }
        }
    }
}

/// The `flags` probe whose source port is `port` (see
/// `build::FLAGS_SRC_PORT`), if any.
fn flags_probe_of_port(port: u16) -> Option<ProbeKind> {
    let i = u32::from(port.checked_sub(FLAGS_SRC_PORT)?);
    (i < 256 * FLAG_PORT_SLOTS).then_some(ProbeKind::Flags {
        flags: TcpFlags((i / FLAG_PORT_SLOTS) as u8),
        slot: (i % FLAG_PORT_SLOTS) as u8,
    })
}

/// The probes whose headers `f` could be (at most 8).
fn header_candidates(f: &IpFields, out: &mut [Option<Candidate>; 8]) {
    let (Some(family), Some(protocol)) = (f.family, f.protocol) else {
        return;
    };
    let mut n = 0;
    let mut push = |kind, evidence| {
        if let Some(slot) = out.get_mut(n) {
            *slot = Some(Candidate {
                spec: ProbeSpec { family, kind },
                evidence,
            });
            n += 1;
        }
    };
    let first = f.frag_offset == 0;
    match protocol {
        p if p.0 == family.icmp_protocol() && first => {
            if let (Some(icmp_type), Some(code)) = (f.icmp_type, f.icmp_code) {
                if code == 0 {
                    push(ProbeKind::Icmp { icmp_type }, Evidence::Header);
                }
                if icmp_code_types(family).contains(&icmp_type) {
                    push(ProbeKind::IcmpCode { icmp_type, code }, Evidence::Header);
                }
            }
        }
        IpProtocol::TCP if first => {
            let Some(dst_port) = f.dst_port else { return };
            match f.tcp_flags {
                Some(flags) => {
                    if TCP_FLAG_SETS.contains(&flags) {
                        push(ProbeKind::Tcp { flags, dst_port }, Evidence::Header);
                    }
                    if flags == ECN_SYN {
                        push(ProbeKind::Ecn { dst_port }, Evidence::Header);
                    }
                    if flags.0 & (TcpFlags::RST | TcpFlags::SYN | TcpFlags::FIN) == TcpFlags::RST {
                        push(
                            ProbeKind::Tcp {
                                flags: TcpFlags(TcpFlags::SYN),
                                dst_port,
                            },
                            Evidence::Reset,
                        );
                        push(ProbeKind::Ecn { dst_port }, Evidence::Reset);
                        // A `flags` probe's source port names its flags and port slot.
                        if let Some(kind) = f.src_port.and_then(flags_probe_of_port) {
                            push(kind, Evidence::Reset);
                        }
                    }
                }
                // An ICMP error may quote only 8 bytes of TCP: no flags. So
                // does the frag suite's tiny first fragment.
                None => {
                    for flags in TCP_FLAG_SETS {
                        push(ProbeKind::Tcp { flags, dst_port }, Evidence::Header);
                    }
                    push(ProbeKind::Ecn { dst_port }, Evidence::Header);
                    if f.more_fragments {
                        push(
                            ProbeKind::Frag {
                                frag: FragKind::TinyHead,
                            },
                            Evidence::Header,
                        );
                    }
                }
            }
        }
        IpProtocol::UDP if first => {
            let Some(dst_port) = f.dst_port else { return };
            push(ProbeKind::Udp { dst_port }, Evidence::Header);
            if dst_port == FRAG_PORT {
                push(
                    ProbeKind::Frag {
                        frag: FragKind::First,
                    },
                    Evidence::Header,
                );
            }
        }
        IpProtocol::UDP => push(
            ProbeKind::Frag {
                frag: FragKind::NonFirst,
            },
            Evidence::Header,
        ),
        _ => {}
    }
}

/// The most header-tag bits a probe can show from headers alone.
pub(crate) fn max_header_bits(spec: &ProbeSpec) -> u32 {
    let ip = match spec.family {
        Family::V4 => 16,
        Family::V6 => 20,
    };
    let l4 = match (spec.kind, spec.family) {
        (ProbeKind::Icmp { .. }, _) => 32,
        (ProbeKind::Tcp { .. }, _) => 32 + 15,
        (ProbeKind::Udp { .. }, _) => 15,
        (
            ProbeKind::Frag {
                frag: FragKind::First,
            },
            Family::V4,
        ) => 15,
        (
            ProbeKind::Frag {
                frag: FragKind::First,
            },
            Family::V6,
        ) => 15 + 32,
        // Its IPv4 ID / flow label, TCP sequence number and (IPv6) fragment
        // identification are all from its own tag (it heads its datagram).
        (
            ProbeKind::Frag {
                frag: FragKind::TinyHead,
            },
            Family::V4,
        ) => 32,
        (
            ProbeKind::Frag {
                frag: FragKind::TinyHead,
            },
            Family::V6,
        ) => 32 + 32,
        (ProbeKind::Frag { frag }, _) if frag.is_tcp() => 0,
        (ProbeKind::Frag { .. }, Family::V4) => 0,
        (ProbeKind::Frag { .. }, Family::V6) => 32,
        (ProbeKind::Ecn { .. }, _) => 32 + 12,
        (ProbeKind::IcmpCode { .. }, _) => 32,
        // Composed probes are attributed by their payload marker only.
        (ProbeKind::Ip { .. }, _)
        | (ProbeKind::Flags { .. }, _)
        | (ProbeKind::IpOpt { .. }, _)
        | (ProbeKind::Ext { .. }, _)
        | (ProbeKind::Lan { .. }, _)
        | (ProbeKind::Spoof { .. }, _)
        | (ProbeKind::Tunnel { .. }, _) => 0,
    };
    ip + l4
}

/// Header-tag bits of `tag` that `f` shows in full-field matches, read as
/// the candidate says.
fn header_bits(f: &IpFields, c: &Candidate, tag: HeaderTag) -> u32 {
    let spec = &c.spec;
    let mut bits = 0;
    // The sender's RST is a new packet of the sender's own stack: its IP ID
    // and flow label are the stack's, not the probe's.
    if c.evidence != Evidence::Reset {
        match spec.family {
            Family::V4 if f.ip_id == Some(tag.ipv4_id()) => bits += 16,
            Family::V6 if f.flow_label == Some(tag.flow_label()) => bits += 20,
            _ => {}
        }
    }
    let port = match spec.kind {
        ProbeKind::Tcp { .. } | ProbeKind::Ecn { .. } => {
            let set = match spec.kind {
                ProbeKind::Ecn { .. } => ECN_SRC_SET,
                _ => spec.tcp_flags().and_then(|f| f.set_index()).unwrap_or(0),
            };
            if f.src_port == Some(tag.tcp_src_port(set)) {
                12 // tag bits; the low 3 bits only repeat the flags
            } else {
                0
            }
        }
        // The frag suite's datagrams have a fixed source port per kind
        // (`compose::composed_src_port`): a filter, no tag bits.
        ProbeKind::Frag {
            frag: FragKind::TinyHead,
        } => {
            if f.src_port == crate::compose::composed_src_port(spec) {
                0
            } else {
                return 0;
            }
        }
        _ => {
            if f.src_port == Some(tag.src_port()) {
                15
            } else {
                0
            }
        }
    };
    let ident = if f.frag_ident == Some(frag_ident(tag)) {
        32
    } else {
        0
    };
    bits += match spec.kind {
        ProbeKind::Icmp { .. } | ProbeKind::IcmpCode { .. } => {
            u32::from(f.icmp_id_seq == Some(tag.icmp_id_seq())) * 32
        }
        ProbeKind::Tcp { .. } | ProbeKind::Ecn { .. } => {
            let want = match c.evidence {
                Evidence::Reset => tag.tcp_seq().wrapping_add(1),
                _ => tag.tcp_seq(),
            };
            port + if f.tcp_seq == Some(want) { 32 } else { 0 }
        }
        ProbeKind::Udp { .. } => port,
        ProbeKind::Frag {
            frag: FragKind::First,
        } => port + ident,
        ProbeKind::Frag {
            frag: FragKind::NonFirst,
        } => ident,
        ProbeKind::Frag {
            frag: FragKind::TinyHead,
        } => {
            port + ident
                + if f.tcp_seq == Some(tag.tcp_seq()) {
                    32
                } else {
                    0
                }
        }
        // The sender's RST answering a `flags` SYN: sequence + 1, and the
        // source port that names the probe (no tag bits: the sequence number
        // carries them).
        ProbeKind::Flags { .. } if c.evidence == Evidence::Reset => {
            u32::from(f.tcp_seq == Some(tag.tcp_seq().wrapping_add(1))) * 32
        }
        _ => 0,
    };
    bits
}

/// The destinations a frame's header evidence is checked against (outer,
/// quoted): for tests and tools that teach [`MarkerKeys`] targets by hand.
pub fn header_destinations(s: &FrameSummary) -> impl Iterator<Item = IpAddr> + '_ {
    std::iter::once(&s.ip)
        .chain(s.quoted.as_ref())
        .filter_map(|f| f.dst)
}
