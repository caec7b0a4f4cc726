//! The frame decoder: what a captured frame is, and which probe it came from.
//!
//! [`FrameSummary::parse`] reads an Ethernet frame (with 802.1Q / 802.1ad
//! tags) or a bare IP packet into the fields a classifier needs: addresses,
//! upper-layer protocol (after IPv6 extension headers), ports, TCP flags,
//! ICMP type and code, fragment fields, and for ICMP / ICMPv6 errors the
//! summary of the quoted packet. ARP is recognised. Parsing is lax and
//! bounds-checked by hand: a truncated or malformed frame gives the fields
//! that could be read and never a panic.
//!
//! [`attribute`] names the probe a frame came from:
//!
//! 1. the payload marker anywhere in the frame ([`Marker::find_verified`]):
//!    survives NAT, ICMP quoting, tunnels and fragments that hold the marker;
//! 2. else, for runs already known ([`MarkerKeys::known_runs`]), the header
//!    marker: the probe `seq` is recomputed from the headers (of the packet,
//!    and of the packet quoted in an ICMP error) and the header-tag fields are
//!    compared. A field counts only if it matches in full; the match is
//!    accepted with at least [`HEADER_MIN_BITS`] bits. No field is required,
//!    so a NAT that rewrites the source address, source port, IPv4 ID or
//!    checksums only removes the bits of the fields it rewrote.
//!
//! Bits each probe shape can give from headers alone: IPv4 ID 16, IPv6 flow
//! label 20, TCP sequence 32, UDP source port 15, TCP source port 12 (its
//! low 3 bits are the flag set), ICMP id/seq 32, IPv6 fragment
//! identification 32. So `ip`-suite probes (16 or 20 bits) and IPv4
//! non-first fragments (16 bits) can only be attributed by their payload, and
//! an IPv4 UDP probe only if both its ID and its source port are intact.

use crate::build::frag_ident;
use crate::catalogue::{
    Family, FragKind, ProbeKind, ProbeSpec, TcpFlags, FRAG_PORT, TCP_FLAG_SETS,
};
use crate::marker::{HeaderTag, Marker, MarkerKeys, RunKey, HEADER_MIN_BITS, MAGIC, MARKER_LEN};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a captured frame starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// An Ethernet II header (optionally VLAN tagged).
    Ethernet,
    /// A bare IPv4 or IPv6 packet (the version nibble says which).
    RawIp,
}

impl LinkType {
    /// The link type of a pcap data link type (DLT / LINKTYPE number).
    pub fn from_dlt(dlt: i32) -> Option<LinkType> {
        match dlt {
            1 => Some(LinkType::Ethernet),
            // DLT_RAW (12 on Linux, 14 on some BSDs), LINKTYPE_RAW, IPV4, IPV6.
            12 | 14 | 101 | 228 | 229 => Some(LinkType::RawIp),
            _ => None,
        }
    }
}

/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;

/// The IP-level fields of a packet (the outer one, or one quoted in an ICMP error).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpFields {
    pub family: Option<Family>,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// TTL / hop limit.
    pub ttl: Option<u8>,
    /// IPv4 identification.
    pub ip_id: Option<u16>,
    /// IPv6 flow label.
    pub flow_label: Option<u32>,
    /// The protocol / next header field of the IP header itself.
    pub header_protocol: Option<u8>,
    /// The upper-layer protocol (IPv6: after the extension headers that could
    /// be walked; if one is truncated, its own number).
    pub protocol: Option<u8>,
    /// Fragment offset in bytes (0 if not a fragment).
    pub frag_offset: u16,
    /// More-fragments flag.
    pub more_fragments: bool,
    /// IPv6 Fragment header identification, if the packet has one.
    pub frag_ident: Option<u32>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub tcp_flags: Option<TcpFlags>,
    pub tcp_seq: Option<u32>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// ICMP / ICMPv6 bytes 4..8 as (identifier, sequence), for every type.
    pub icmp_id_seq: Option<(u16, u16)>,
    /// The upper-layer bytes (after IPv6 extension headers; for a non-first
    /// fragment its data) as (start, end) offsets from the IP header.
    pub upper: Option<(usize, usize)>,
}

impl IpFields {
    /// Whether the packet is a fragment (or carries an IPv6 Fragment header).
    pub fn is_fragment(&self) -> bool {
        self.frag_offset != 0 || self.more_fragments || self.frag_ident.is_some()
    }
}

/// The summary of one captured frame. Fields that could not be read are `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameSummary {
    /// Length of the frame as given.
    pub len: usize,
    pub l2_src: Option<[u8; 6]>,
    pub l2_dst: Option<[u8; 6]>,
    /// EtherType after any VLAN tags.
    pub ethertype: Option<u16>,
    /// VLAN id of the outermost 802.1Q / 802.1ad tag.
    pub vlan: Option<u16>,
    /// ARP operation (1 request, 2 reply) if the frame is ARP.
    pub arp_op: Option<u16>,
    /// ARP sender hardware and protocol address, for Ethernet/IPv4 ARP.
    pub arp_sender: Option<([u8; 6], Ipv4Addr)>,
    /// Offset of the IP header in the frame.
    pub ip_offset: Option<usize>,
    pub family: Option<Family>,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub ttl: Option<u8>,
    pub ip_id: Option<u16>,
    pub flow_label: Option<u32>,
    pub header_protocol: Option<u8>,
    pub protocol: Option<u8>,
    pub frag_offset: u16,
    pub more_fragments: bool,
    pub frag_ident: Option<u32>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub tcp_flags: Option<TcpFlags>,
    pub tcp_seq: Option<u32>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub icmp_id_seq: Option<(u16, u16)>,
    /// Upper-layer bytes as (start, end) offsets from the IP header
    /// (add `ip_offset` for offsets in the frame).
    pub upper: Option<(usize, usize)>,
    /// For ICMP / ICMPv6 errors: the packet they quote, as far as quoted.
    pub quoted: Option<IpFields>,
}

impl FrameSummary {
    /// Summarises `frame`. Never panics; unreadable fields stay `None`.
    pub fn parse(frame: &[u8], link: LinkType) -> FrameSummary {
        let mut s = FrameSummary {
            len: frame.len(),
            ..FrameSummary::default()
        };
        let ip_at = match link {
            LinkType::RawIp => Some(0),
            LinkType::Ethernet => s.parse_ethernet(frame),
        };
        if let Some(at) = ip_at {
            if let Some(ip) = frame.get(at..) {
                if let Some((f, quoted)) = parse_ip(ip, true) {
                    s.ip_offset = Some(at);
                    s.set_ip(f);
                    s.quoted = quoted;
                }
            }
        }
        s
    }

    /// Reads the Ethernet header; returns the IP header offset if IP follows.
    fn parse_ethernet(&mut self, frame: &[u8]) -> Option<usize> {
        let hdr = frame.get(..14)?;
        self.l2_dst = Some(hdr[0..6].try_into().ok()?);
        self.l2_src = Some(hdr[6..12].try_into().ok()?);
        let mut ethertype = be16(frame, 12)?;
        let mut at = 14;
        // At most two tags (802.1ad + 802.1Q); more is not a frame we send.
        for _ in 0..2 {
            if !matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
                break;
            }
            let tci = be16(frame, at)?;
            self.vlan.get_or_insert(tci & 0x0fff);
            ethertype = be16(frame, at + 2)?;
            at += 4;
        }
        self.ethertype = Some(ethertype);
        match ethertype {
            0x0800 | 0x86dd => Some(at),
            ETHERTYPE_ARP => {
                self.arp_op = be16(frame, at + 6);
                // Ethernet (1) / IPv4 (0x0800), hardware length 6, protocol length 4.
                let ether_ipv4 = be16(frame, at) == Some(1)
                    && be16(frame, at + 2) == Some(0x0800)
                    && frame.get(at + 4..at + 6) == Some(&[6, 4][..]);
                if ether_ipv4 {
                    if let (Some(mac), Some(ip)) =
                        (frame.get(at + 8..at + 14), frame.get(at + 14..at + 18))
                    {
                        self.arp_sender = Some((
                            mac.try_into().ok()?,
                            Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]),
                        ));
                    }
                }
                None
            }
            _ => None,
        }
    }

    fn set_ip(&mut self, f: IpFields) {
        self.family = f.family;
        self.src = f.src;
        self.dst = f.dst;
        self.ttl = f.ttl;
        self.ip_id = f.ip_id;
        self.flow_label = f.flow_label;
        self.header_protocol = f.header_protocol;
        self.protocol = f.protocol;
        self.frag_offset = f.frag_offset;
        self.more_fragments = f.more_fragments;
        self.frag_ident = f.frag_ident;
        self.src_port = f.src_port;
        self.dst_port = f.dst_port;
        self.tcp_flags = f.tcp_flags;
        self.tcp_seq = f.tcp_seq;
        self.icmp_type = f.icmp_type;
        self.icmp_code = f.icmp_code;
        self.icmp_id_seq = f.icmp_id_seq;
        self.upper = f.upper;
    }

    /// The IP-level fields of the outer packet.
    pub fn ip(&self) -> IpFields {
        IpFields {
            family: self.family,
            src: self.src,
            dst: self.dst,
            ttl: self.ttl,
            ip_id: self.ip_id,
            flow_label: self.flow_label,
            header_protocol: self.header_protocol,
            protocol: self.protocol,
            frag_offset: self.frag_offset,
            more_fragments: self.more_fragments,
            frag_ident: self.frag_ident,
            src_port: self.src_port,
            dst_port: self.dst_port,
            tcp_flags: self.tcp_flags,
            tcp_seq: self.tcp_seq,
            icmp_type: self.icmp_type,
            icmp_code: self.icmp_code,
            icmp_id_seq: self.icmp_id_seq,
            upper: self.upper,
        }
    }

    /// Whether the frame is ARP.
    pub fn is_arp(&self) -> bool {
        self.ethertype == Some(ETHERTYPE_ARP)
    }

    /// Whether the outer packet is a fragment (or carries an IPv6 Fragment header).
    pub fn is_fragment(&self) -> bool {
        self.ip().is_fragment()
    }

    /// The upper-layer bytes of the outer packet (after IPv6 extension
    /// headers; empty if there are none or the frame is not IP). `frame` is
    /// the frame this summary was parsed from.
    pub fn upper_bytes<'f>(&self, frame: &'f [u8]) -> &'f [u8] {
        let (Some(at), Some((start, end))) = (self.ip_offset, self.upper) else {
            return &[];
        };
        frame
            .get(at.saturating_add(start)..at.saturating_add(end))
            .unwrap_or(&[])
    }

    /// The payload after a UDP header (empty if the packet is no UDP).
    pub fn udp_payload<'f>(&self, frame: &'f [u8]) -> &'f [u8] {
        if self.protocol != Some(17) || self.frag_offset != 0 {
            return &[];
        }
        self.upper_bytes(frame).get(8..).unwrap_or(&[])
    }
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    let b = d.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses an IP packet at the start of `d`. `outer` allows one level of ICMP
/// quoting (a quoted packet's own quotes are not followed).
fn parse_ip(d: &[u8], outer: bool) -> Option<(IpFields, Option<IpFields>)> {
    match d.first()? >> 4 {
        4 => parse_ipv4(d, outer),
        6 => parse_ipv6(d, outer),
        _ => None,
    }
}

fn parse_ipv4(d: &[u8], outer: bool) -> Option<(IpFields, Option<IpFields>)> {
    let h = d.get(..20)?;
    let ihl = (h[0] & 0x0f) as usize * 4;
    let frag = u16::from_be_bytes([h[6], h[7]]);
    let mut f = IpFields {
        family: Some(Family::V4),
        src: Some(IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15]))),
        dst: Some(IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19]))),
        ttl: Some(h[8]),
        ip_id: Some(u16::from_be_bytes([h[4], h[5]])),
        header_protocol: Some(h[9]),
        protocol: Some(h[9]),
        frag_offset: (frag & 0x1fff) * 8,
        more_fragments: frag & 0x2000 != 0,
        ..IpFields::default()
    };
    if ihl < 20 || ihl > d.len() {
        // A quoted packet always holds its whole IP header: this is not one.
        return if outer { Some((f, None)) } else { None };
    }
    // Trust the total length only if it fits what was captured (a quoted
    // packet or a snapped capture is shorter; Ethernet padding is longer).
    let total = u16::from_be_bytes([h[2], h[3]]) as usize;
    let end = if total >= ihl && total <= d.len() {
        total
    } else {
        d.len()
    };
    if ihl <= end {
        f.upper = Some((ihl, end));
    }
    let quoted = match d.get(ihl..end) {
        Some(l4) if f.frag_offset == 0 => parse_l4(&mut f, l4, outer),
        _ => None,
    };
    Some((f, quoted))
}

fn parse_ipv6(d: &[u8], outer: bool) -> Option<(IpFields, Option<IpFields>)> {
    let h = d.get(..40)?;
    let src: [u8; 16] = h[8..24].try_into().ok()?;
    let dst: [u8; 16] = h[24..40].try_into().ok()?;
    let mut f = IpFields {
        family: Some(Family::V6),
        src: Some(IpAddr::V6(Ipv6Addr::from(src))),
        dst: Some(IpAddr::V6(Ipv6Addr::from(dst))),
        ttl: Some(h[7]),
        flow_label: Some(u32::from_be_bytes([0, h[1] & 0x0f, h[2], h[3]])),
        header_protocol: Some(h[6]),
        ..IpFields::default()
    };
    let plen = u16::from_be_bytes([h[4], h[5]]) as usize;
    let end = if plen != 0 && 40 + plen <= d.len() {
        40 + plen
    } else {
        d.len()
    };
    let mut nh = h[6];
    let mut at = 40;
    let mut walked = true;
    // Extension headers, bounded: a chain longer than this is not ours.
    for _ in 0..16 {
        let len = match nh {
            0 | 43 | 60 | 135 | 139 | 140 => d.get(at + 1).map(|l| (*l as usize + 1) * 8),
            51 => d.get(at + 1).map(|l| (*l as usize + 2) * 4),
            44 => Some(8),
            _ => break,
        };
        let Some(len) = len.filter(|l| at + l <= end) else {
            // Truncated extension header: report its number as the protocol.
            walked = false;
            break;
        };
        if nh == 44 {
            let off = be16(d, at + 2)?;
            f.frag_offset = off & 0xfff8;
            f.more_fragments = off & 1 != 0;
            f.frag_ident = be32(d, at + 4);
        }
        nh = d[at];
        at += len;
    }
    f.protocol = Some(nh);
    if walked && at <= end {
        f.upper = Some((at, end));
    }
    let quoted = match d.get(at..end) {
        Some(l4) if walked && f.frag_offset == 0 => parse_l4(&mut f, l4, outer),
        _ => None,
    };
    Some((f, quoted))
}

/// Reads the upper-layer fields that are present; returns the quoted packet
/// of an ICMP error if `outer`.
fn parse_l4(f: &mut IpFields, l4: &[u8], outer: bool) -> Option<IpFields> {
    let proto = f.protocol?;
    let icmp = f.family.map(Family::icmp_protocol);
    match proto {
        // TCP, UDP, DCCP, SCTP, UDP-Lite: ports first.
        6 | 17 | 33 | 132 | 136 => {
            f.src_port = be16(l4, 0);
            f.dst_port = be16(l4, 2);
            if proto == 6 {
                f.tcp_seq = be32(l4, 4);
                f.tcp_flags = l4.get(13).map(|b| TcpFlags(*b));
            }
            None
        }
        p if Some(p) == icmp => {
            f.icmp_type = l4.first().copied();
            f.icmp_code = l4.get(1).copied();
            if let (Some(id), Some(sq)) = (be16(l4, 4), be16(l4, 6)) {
                f.icmp_id_seq = Some((id, sq));
            }
            let is_error = match (f.family, f.icmp_type) {
                (Some(Family::V4), Some(t)) => matches!(t, 3 | 4 | 5 | 11 | 12),
                (Some(Family::V6), Some(t)) => matches!(t, 1..=4),
                _ => false,
            };
            if outer && is_error {
                // An error quotes a packet of its own family.
                let inner = l4.get(8..)?;
                let quoted = match f.family? {
                    Family::V4 if inner.first()? >> 4 == 4 => parse_ipv4(inner, false),
                    Family::V6 if inner.first()? >> 4 == 6 => parse_ipv6(inner, false),
                    _ => None,
                };
                quoted.map(|(q, _)| q)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// How a frame was tied to a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Evidence {
    /// An authentic payload marker was found in the frame.
    Payload,
    /// Header fields matched the header marker of a known run.
    Header,
}

/// The probe a frame came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attribution {
    pub spec: ProbeSpec,
    pub seq: u32,
    pub run: RunKey,
    pub evidence: Evidence,
}

/// Names the probe `frame` came from, or `None`. Never panics.
pub fn attribute(frame: &[u8], link: LinkType, keys: &mut MarkerKeys) -> Option<Attribution> {
    if let Some(a) = payload_attribution(frame, keys) {
        return Some(a);
    }
    if keys.known_runs().is_empty() && frame.len() > REPAIR_MAX_FRAME {
        // Neither a repairable ip-suite probe nor a header-only match: done
        // without parsing (most frames a watcher sees).
        return None;
    }
    attribute_from_headers(frame, &FrameSummary::parse(frame, link), keys)
}

/// [`attribute`] for a frame the caller has already summarised (`s` is
/// `FrameSummary::parse` of `frame`): the same answer, one parse fewer.
pub fn attribute_parsed(
    frame: &[u8],
    s: &FrameSummary,
    keys: &mut MarkerKeys,
) -> Option<Attribution> {
    payload_attribution(frame, keys).or_else(|| attribute_from_headers(frame, s, keys))
}

/// An authentic payload marker anywhere in the frame.
fn payload_attribution(frame: &[u8], keys: &mut MarkerKeys) -> Option<Attribution> {
    let (m, run) = Marker::find_verified(frame, keys)?;
    let spec = ProbeSpec::from_seq(m.seq)?;
    Some(Attribution {
        spec,
        seq: m.seq,
        run,
        evidence: Evidence::Payload,
    })
}

/// A repaired `ip`-suite marker, or else a header-only match with a known run.
fn attribute_from_headers(
    frame: &[u8],
    s: &FrameSummary,
    keys: &mut MarkerKeys,
) -> Option<Attribution> {
    if let Some((m, run)) = repaired_ip_suite_marker(s, frame, keys) {
        if let Some(spec) = ProbeSpec::from_seq(m.seq) {
            return Some(Attribution {
                spec,
                seq: m.seq,
                run,
                evidence: Evidence::Payload,
            });
        }
    }
    let runs = keys.known_runs();
    if runs.is_empty() {
        return None;
    }
    let mut best: Option<(u32, ProbeSpec, RunKey)> = None;
    header_match(&s.ip(), runs, &mut best);
    if let Some(q) = &s.quoted {
        header_match(q, runs, &mut best);
    }
    let (bits, spec, run) = best?;
    (bits >= HEADER_MIN_BITS).then(|| Attribution {
        spec,
        seq: spec.seq(),
        run,
        evidence: Evidence::Header,
    })
}

/// Longest frame that can hold an `ip`-suite probe whose marker a NAT
/// rewrote: two VLAN tags, an IPv4 header with options, the marker.
const REPAIR_MAX_FRAME: usize = 14 + 8 + 60 + MARKER_LEN;

/// An `ip`-suite probe's payload is the bare marker, so for protocol numbers
/// whose header a NAT rewrites, the NAT rewrites marker bytes: TCP source and
/// destination ports (marker bytes 0..4, the magic) and checksum (bytes
/// 16..18, inside `seq`); ICMPv6 checksum (bytes 2..4, the magic). Those
/// bytes are known for the probe these headers would be, so they are put
/// back and the MAC decides. (UDP, DCCP and SCTP checksums and UDP's length
/// fall on the run id and cannot be repaired; a NAT that checks UDP's length
/// does not rewrite these packets anyway.)
fn repaired_ip_suite_marker(
    s: &FrameSummary,
    frame: &[u8],
    keys: &mut MarkerKeys,
) -> Option<(Marker, RunKey)> {
    let (family, protocol) = (s.family?, s.protocol?);
    let (start, end) = s.upper?;
    let at = s.ip_offset?;
    let seg = frame.get(at.checked_add(start)?..at.checked_add(end)?)?;
    if s.is_fragment() || seg.len() != MARKER_LEN || s.header_protocol != Some(protocol) {
        return None;
    }
    let mut m: [u8; MARKER_LEN] = seg.try_into().ok()?;
    let seq = ProbeSpec {
        family,
        kind: ProbeKind::Ip { protocol },
    }
    .seq();
    match (protocol, family) {
        (6, _) => {
            m[0..4].copy_from_slice(&MAGIC);
            m[14..18].copy_from_slice(&seq.to_be_bytes());
        }
        (58, Family::V6) => m[2..4].copy_from_slice(&MAGIC[2..4]),
        _ => return None,
    }
    if m[..] == seg[..] {
        // Nothing was rewritten: the plain search already failed on these bytes.
        return None;
    }
    Marker::find_verified(&m, keys).filter(|(found, _)| found.seq == seq)
}

/// Scores every probe the headers of `f` could be against every known run.
fn header_match(f: &IpFields, runs: &[RunKey], best: &mut Option<(u32, ProbeSpec, RunKey)>) {
    let mut cands = [None; 8];
    header_candidates(f, &mut cands);
    for spec in cands.into_iter().flatten() {
        if max_header_bits(&spec) < HEADER_MIN_BITS {
            continue;
        }
        for run in runs {
            let bits = header_bits(f, &spec, run.header_tag(spec.seq()));
            if best.is_none_or(|(b, _, _)| bits > b) {
                *best = Some((bits, spec, *run));
            }
        }
    }
}

/// The probes whose headers `f` could be (at most 8).
fn header_candidates(f: &IpFields, out: &mut [Option<ProbeSpec>; 8]) {
    let (Some(family), Some(protocol)) = (f.family, f.protocol) else {
        return;
    };
    let mut n = 0;
    let mut push = |kind| {
        if let Some(slot) = out.get_mut(n) {
            *slot = Some(ProbeSpec { family, kind });
            n += 1;
        }
    };
    let first = f.frag_offset == 0;
    match protocol {
        p if p == family.icmp_protocol() && first => {
            if let (Some(icmp_type), Some(0)) = (f.icmp_type, f.icmp_code) {
                push(ProbeKind::Icmp { icmp_type });
            }
        }
        6 if first => {
            let Some(dst_port) = f.dst_port else { return };
            match f.tcp_flags {
                Some(flags) if TCP_FLAG_SETS.contains(&flags) => {
                    push(ProbeKind::Tcp { flags, dst_port })
                }
                Some(_) => {}
                // An ICMP error may quote only 8 bytes of TCP: no flags.
                None => {
                    for flags in TCP_FLAG_SETS {
                        push(ProbeKind::Tcp { flags, dst_port });
                    }
                }
            }
        }
        17 if first => {
            let Some(dst_port) = f.dst_port else { return };
            push(ProbeKind::Udp { dst_port });
            if dst_port == FRAG_PORT {
                push(ProbeKind::Frag {
                    frag: FragKind::First,
                });
            }
        }
        17 => push(ProbeKind::Frag {
            frag: FragKind::NonFirst,
        }),
        _ => {}
    }
}

/// The most header-tag bits a probe can show from headers alone.
fn max_header_bits(spec: &ProbeSpec) -> u32 {
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
        (ProbeKind::Frag { .. }, Family::V4) => 0,
        (ProbeKind::Frag { .. }, Family::V6) => 32,
        (ProbeKind::Ip { .. }, _) => 0,
    };
    ip + l4
}

/// Header-tag bits of `tag` that `f` shows in full-field matches.
fn header_bits(f: &IpFields, spec: &ProbeSpec, tag: HeaderTag) -> u32 {
    let mut bits = 0;
    match spec.family {
        Family::V4 if f.ip_id == Some(tag.ipv4_id()) => bits += 16,
        Family::V6 if f.flow_label == Some(tag.flow_label()) => bits += 20,
        _ => {}
    }
    let port = match spec.kind {
        ProbeKind::Tcp { flags, .. } => {
            let set = flags.set_index().unwrap_or(0);
            if f.src_port == Some(tag.tcp_src_port(set)) {
                12 // tag bits; the low 3 bits only repeat the flags
            } else {
                0
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
        ProbeKind::Icmp { .. } => {
            if f.icmp_id_seq == Some(tag.icmp_id_seq()) {
                32
            } else {
                0
            }
        }
        ProbeKind::Tcp { .. } => {
            port + if f.tcp_seq == Some(tag.tcp_seq()) {
                32
            } else {
                0
            }
        }
        ProbeKind::Udp { .. } => port,
        ProbeKind::Frag {
            frag: FragKind::First,
        } => port + ident,
        ProbeKind::Frag {
            frag: FragKind::NonFirst,
        } => ident,
        ProbeKind::Ip { .. } => 0,
    };
    bits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::{assert_checksums, builder, MACS};
    use crate::build::{MAX_PROBE_FRAME, PROBE_TTL};
    use crate::catalogue::Suite;

    fn run() -> RunKey {
        RunKey::open(0x0102030405060708)
    }

    /// Keys that know the test run (as after seeing one of its payload markers).
    fn knowing_keys() -> MarkerKeys {
        let mut k = MarkerKeys::open();
        k.learn(run());
        k
    }

    /// Checks the summary of a freshly built probe against its spec.
    fn check_summary(spec: &ProbeSpec, s: &FrameSummary) {
        let tag = run().header_tag(spec.seq());
        assert_eq!(s.family, Some(spec.family));
        assert_eq!(s.ttl, Some(PROBE_TTL));
        match spec.family {
            Family::V4 => assert_eq!(s.ip_id, Some(tag.ipv4_id())),
            Family::V6 => assert_eq!(s.flow_label, Some(tag.flow_label())),
        }
        match spec.kind {
            ProbeKind::Icmp { icmp_type } => {
                assert_eq!(s.protocol, Some(spec.family.icmp_protocol()));
                assert_eq!((s.icmp_type, s.icmp_code), (Some(icmp_type), Some(0)));
                assert_eq!(s.icmp_id_seq, Some(tag.icmp_id_seq()));
                assert!(!s.is_fragment());
            }
            ProbeKind::Ip { protocol } => {
                assert_eq!(s.header_protocol, Some(protocol));
                // An IPv6 extension-header number makes the marker parse as that header.
                let ext = matches!(protocol, 0 | 43 | 44 | 51 | 60 | 135 | 139 | 140);
                if spec.family == Family::V4 || !ext {
                    assert_eq!(s.protocol, Some(protocol));
                }
            }
            ProbeKind::Tcp { flags, dst_port } => {
                assert_eq!(s.protocol, Some(6));
                assert_eq!(
                    (s.src_port, s.dst_port),
                    (
                        Some(tag.tcp_src_port(flags.set_index().unwrap())),
                        Some(dst_port)
                    )
                );
                assert_eq!(s.tcp_flags, Some(flags));
                assert_eq!(s.tcp_seq, Some(tag.tcp_seq()));
            }
            ProbeKind::Udp { dst_port } => {
                assert_eq!(s.protocol, Some(17));
                assert_eq!(
                    (s.src_port, s.dst_port),
                    (Some(tag.src_port()), Some(dst_port))
                );
                assert!(!s.is_fragment());
            }
            ProbeKind::Frag { frag } => {
                assert_eq!(s.protocol, Some(17));
                assert!(s.is_fragment());
                if spec.family == Family::V6 {
                    assert_eq!(s.header_protocol, Some(44));
                    assert_eq!(s.frag_ident, Some(frag_ident(tag)));
                }
                match frag {
                    FragKind::First => {
                        assert!(s.more_fragments);
                        assert_eq!(s.frag_offset, 0);
                        assert_eq!(
                            (s.src_port, s.dst_port),
                            (Some(tag.src_port()), Some(FRAG_PORT))
                        );
                    }
                    FragKind::NonFirst => {
                        assert!(!s.more_fragments);
                        assert!(s.frag_offset > 0);
                        assert_eq!(s.dst_port, None);
                    }
                }
            }
        }
        assert_eq!(s.quoted, None);
    }

    /// Offset of the payload marker in a frame.
    fn marker_at(frame: &[u8]) -> usize {
        memchr::memmem::find(frame, &MAGIC).unwrap()
    }

    fn can_match_headers(spec: &ProbeSpec) -> bool {
        max_header_bits(spec) >= HEADER_MIN_BITS
    }

    /// Every probe of the catalogue, both families (787k probes): built,
    /// checksums verified independently, parsed back, attributed by payload
    /// and, with the marker wiped, by headers where the headers carry enough.
    #[test]
    fn whole_catalogue_round_trips() {
        let eth = builder(Some(MACS));
        let raw = builder(None);
        let mut open = MarkerKeys::open();
        let mut knowing = knowing_keys();
        let mut buf = [0u8; MAX_PROBE_FRAME];
        let mut counts = [0u32; 3];
        for family in Family::BOTH {
            for suite in Suite::ALL {
                for spec in ProbeSpec::all(family, suite) {
                    // Alternate the link type so both are covered in every suite.
                    let (b, link, at) = if spec.seq() % 2 == 0 {
                        (&eth, LinkType::Ethernet, 14)
                    } else {
                        (&raw, LinkType::RawIp, 0)
                    };
                    let n = b.write(&spec, &mut buf);
                    assert!(n > at, "{spec:?}");
                    let frame = &mut buf[..n];
                    assert_checksums(&spec, &frame[at..]);
                    let s = FrameSummary::parse(frame, link);
                    check_summary(&spec, &s);
                    let a = attribute(frame, link, &mut open).expect("payload attribution");
                    assert_eq!(attribute_parsed(frame, &s, &mut open), Some(a));
                    assert_eq!(
                        (a.spec, a.seq, a.run, a.evidence),
                        (spec, spec.seq(), run(), Evidence::Payload)
                    );
                    counts[0] += 1;
                    // Payload stripped: only the header marker is left.
                    let m = marker_at(frame);
                    frame[m..m + MARKER_LEN].fill(0);
                    let h = attribute(frame, link, &mut knowing);
                    if can_match_headers(&spec) {
                        let h = h.unwrap_or_else(|| panic!("header attribution of {spec:?}"));
                        assert_eq!((h.spec, h.evidence), (spec, Evidence::Header));
                        counts[1] += 1;
                    } else {
                        assert_eq!(h, None, "{spec:?}");
                        counts[2] += 1;
                    }
                }
            }
        }
        assert_eq!(counts[0], 2 * (512 + 6 * 65536 + 2));
        // Not by headers: the ip suite (2 x 256) and the IPv4 non-first fragment.
        assert_eq!(counts[2], 2 * 256 + 1);
    }

    fn v4(a: Ipv4Addr) -> IpAddr {
        IpAddr::V4(a)
    }

    #[test]
    fn link_types_from_dlt() {
        assert_eq!(LinkType::from_dlt(1), Some(LinkType::Ethernet));
        assert_eq!(LinkType::from_dlt(12), Some(LinkType::RawIp));
        assert_eq!(LinkType::from_dlt(101), Some(LinkType::RawIp));
        assert_eq!(LinkType::from_dlt(113), None);
    }

    #[rustfmt::skip]
    const ARP_REQUEST: [u8; 42] = [
        // Ethernet: broadcast, 02::01, ARP
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06,
        // Ethernet/IPv4, request
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
        // sender 02::01 10.152.152.11, target ? 10.152.152.10
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a, 0x98, 0x98, 0x0b,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x98, 0x98, 0x0a,
    ];

    #[test]
    fn arp_is_recognised() {
        let s = FrameSummary::parse(&ARP_REQUEST, LinkType::Ethernet);
        assert!(s.is_arp());
        assert_eq!(s.arp_op, Some(1));
        assert_eq!(
            s.arp_sender,
            Some(([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 152, 152, 11)))
        );
        assert_eq!(s.l2_dst, Some([0xff; 6]));
        assert_eq!((s.family, s.src), (None, None));
        assert_eq!(
            attribute(&ARP_REQUEST, LinkType::Ethernet, &mut knowing_keys()),
            None
        );
        // Behind a VLAN tag: the same sender.
        let mut tagged = ARP_REQUEST[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
        tagged.extend_from_slice(&ARP_REQUEST[12..]);
        let t = FrameSummary::parse(&tagged, LinkType::Ethernet);
        assert_eq!(
            (t.vlan, t.arp_op, t.arp_sender),
            (Some(42), s.arp_op, s.arp_sender)
        );
        // Not Ethernet/IPv4 ARP (hardware length 8): no sender.
        let mut odd = ARP_REQUEST;
        odd[18] = 8;
        assert_eq!(
            FrameSummary::parse(&odd, LinkType::Ethernet).arp_sender,
            None
        );
    }

    #[test]
    fn ipv4_non_first_fragment_has_no_ports_and_no_udp_payload() {
        // IPv4 header (20 bytes), UDP header (8), 3 bytes of payload.
        let mut f = [0u8; 20 + 8 + 3];
        f[0] = 0x45;
        f[2..4].copy_from_slice(&31u16.to_be_bytes());
        f[9] = 17;
        f[20..28].copy_from_slice(&[0, 68, 0, 67, 0, 11, 0, 0]);
        f[28..].copy_from_slice(&[1, 2, 3]);
        let s = FrameSummary::parse(&f, LinkType::RawIp);
        assert_eq!((s.src_port, s.dst_port), (Some(68), Some(67)));
        assert_eq!(s.upper_bytes(&f), &f[20..]);
        assert_eq!(s.udp_payload(&f), &[1, 2, 3][..]);
        // The same bytes as a non-first fragment (offset 24): no ports, no UDP header.
        f[6..8].copy_from_slice(&0x0003u16.to_be_bytes());
        let s = FrameSummary::parse(&f, LinkType::RawIp);
        assert_eq!(
            (s.protocol, s.frag_offset, s.src_port),
            (Some(17), 24, None)
        );
        assert!(s.udp_payload(&f).is_empty());
    }

    #[rustfmt::skip]
    const VLAN_TCP_SYN: [u8; 62] = [
        // Ethernet with 802.1Q tag, VLAN 42, IPv4
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x81, 0x00, 0x00, 0x2a, 0x08, 0x00,
        // IPv4 with 4 bytes of options (IHL 6), total length 44, id 0x1234, DF, TTL 63, TCP
        0x46, 0x00, 0x00, 0x2c, 0x12, 0x34, 0x40, 0x00, 0x3f, 0x06, 0x00, 0x00, 0xc6, 0x33, 0x64, 0x02, 0xcb, 0x00, 0x71, 0x07,
        0x01, 0x01, 0x01, 0x00,
        // TCP 40000 -> 9001, seq 1, SYN, window 1024
        0x9c, 0x40, 0x23, 0x29, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x50, 0x02, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn vlan_tag_and_ipv4_options() {
        let s = FrameSummary::parse(&VLAN_TCP_SYN, LinkType::Ethernet);
        assert_eq!(
            (s.vlan, s.ethertype, s.ip_offset),
            (Some(42), Some(0x0800), Some(18))
        );
        assert_eq!(s.src, Some(v4(Ipv4Addr::new(198, 51, 100, 2))));
        assert_eq!(s.dst, Some(v4(Ipv4Addr::new(203, 0, 113, 7))));
        assert_eq!(
            (s.protocol, s.src_port, s.dst_port),
            (Some(6), Some(40000), Some(9001))
        );
        assert_eq!(
            (s.tcp_flags, s.tcp_seq, s.ttl),
            (Some(TcpFlags(2)), Some(1), Some(63))
        );
        assert_eq!(
            (s.ip_id, s.frag_offset, s.more_fragments),
            (Some(0x1234), 0, false)
        );
        // Not a probe, and a known run does not change that.
        assert_eq!(
            attribute(&VLAN_TCP_SYN, LinkType::Ethernet, &mut knowing_keys()),
            None
        );
    }

    #[rustfmt::skip]
    const IPV6_EXT_UDP: [u8; 72] = [
        // IPv6: flow 0x12345, payload length 32, next header 0 (hop-by-hop), hop limit 1
        0x60, 0x01, 0x23, 0x45, 0x00, 0x20, 0x00, 0x01,
        0xfd, 0x19, 0xc3, 0x3d, 0x88, 0xbc, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11,
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07,
        // hop-by-hop: next 60, length 0 (8 bytes), PadN
        0x3c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
        // destination options: next 44, length 0
        0x2c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
        // fragment: next 17, offset 0, M, identification 0xdeadbeef
        0x11, 0x00, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef,
        // UDP 5353 -> 53, length 8
        0x14, 0xe9, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00,
    ];

    #[test]
    fn ipv6_extension_headers_are_walked() {
        let s = FrameSummary::parse(&IPV6_EXT_UDP, LinkType::RawIp);
        assert_eq!(
            (s.family, s.flow_label, s.ttl),
            (Some(Family::V6), Some(0x12345), Some(1))
        );
        assert_eq!((s.header_protocol, s.protocol), (Some(0), Some(17)));
        assert_eq!(
            (s.frag_ident, s.frag_offset, s.more_fragments),
            (Some(0xdeadbeef), 0, true)
        );
        assert_eq!((s.src_port, s.dst_port), (Some(5353), Some(53)));
        assert!(s.is_fragment());
        // Truncated inside the destination options: protocol is that header's number.
        let t = FrameSummary::parse(&IPV6_EXT_UDP[..50], LinkType::RawIp);
        assert_eq!((t.protocol, t.dst_port), (Some(60), None));
        // A bare IP packet read as Ethernet is no IP at all, and no panic.
        let e = FrameSummary::parse(&IPV6_EXT_UDP, LinkType::Ethernet);
        assert_eq!(e.family, None);
    }

    mod props {
        use super::*;
        use crate::catalogue::SEQ_FAMILY_BIT;
        use etherparse::checksum::Sum16BitWords;
        use proptest::prelude::*;

        /// Any probe of the catalogue, every suite equally likely.
        fn any_spec() -> impl Strategy<Value = ProbeSpec> {
            (any::<bool>(), 0usize..5, any::<u32>()).prop_map(|(v6, suite, x)| {
                let suite = Suite::ALL[suite];
                let fam = if v6 { SEQ_FAMILY_BIT } else { 0 };
                ProbeSpec::from_seq(fam | (suite.base() + x % suite.probe_count())).unwrap()
            })
        }

        /// The probe as a bare IP packet.
        fn probe_ip(spec: &ProbeSpec) -> Vec<u8> {
            let mut buf = [0u8; MAX_PROBE_FRAME];
            let n = builder(None).write(spec, &mut buf);
            buf[..n].to_vec()
        }

        /// Offset of the upper layer of a bare IP packet, its protocol, and
        /// whether it is the first (or only) fragment.
        fn upper(ip: &[u8]) -> (usize, u8, bool) {
            if ip[0] >> 4 == 4 {
                let off = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
                (20, ip[9], off == 0)
            } else if ip[6] == 44 {
                let off = u16::from_be_bytes([ip[42], ip[43]]) & 0xfff8;
                (48, ip[40], off == 0)
            } else {
                (40, ip[6], true)
            }
        }

        fn set_ipv4_checksum(ip: &mut [u8]) {
            ip[10..12].fill(0);
            let c = Sum16BitWords::new().add_slice(&ip[..20]).ones_complement();
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }

        /// Recomputes the L4 checksum at `at` (offset in `ip`) with
        /// etherparse's summing code; ICMPv4 has no pseudo-header.
        fn set_l4_checksum(ip: &mut [u8], at: usize, udp: bool) {
            let (l4, proto) = (upper(ip).0, upper(ip).1);
            ip[at..at + 2].fill(0);
            let seg = &ip[l4..];
            let sum = if ip[0] >> 4 == 4 {
                if proto == 1 {
                    Sum16BitWords::new().add_slice(seg)
                } else {
                    Sum16BitWords::new()
                        .add_slice(&ip[12..20])
                        .add_2bytes([0, proto])
                        .add_2bytes((seg.len() as u16).to_be_bytes())
                        .add_slice(seg)
                }
            } else {
                Sum16BitWords::new()
                    .add_slice(&ip[8..40])
                    .add_4bytes((seg.len() as u32).to_be_bytes())
                    .add_4bytes([0, 0, 0, proto])
                    .add_slice(seg)
            };
            let c = if udp {
                sum.to_ones_complement_with_no_zero()
            } else {
                sum.ones_complement()
            };
            ip[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }

        #[derive(Debug, Clone)]
        struct Nat {
            src4: [u8; 4],
            dst4: [u8; 4],
            src6: [u8; 16],
            dst6: [u8; 16],
            sport: u16,
            ipv4_id: Option<u16>,
            icmp_id: Option<u16>,
        }

        fn any_nat() -> impl Strategy<Value = Nat> {
            (
                any::<[u8; 4]>(),
                any::<[u8; 4]>(),
                any::<[u8; 16]>(),
                any::<[u8; 16]>(),
                any::<u16>(),
                proptest::option::of(any::<u16>()),
                proptest::option::of(any::<u16>()),
            )
                .prop_map(|(src4, dst4, src6, dst6, sport, ipv4_id, icmp_id)| Nat {
                    src4,
                    dst4,
                    src6,
                    dst6,
                    sport,
                    ipv4_id,
                    icmp_id,
                })
        }

        /// What a NAT gateway does to a forwarded probe: new addresses, a
        /// new source port (or ICMP identifier), maybe a new IPv4 ID, TTL
        /// decremented, checksums recomputed. The `ip` suite's payload is not
        /// a real upper-layer header, so (as a NAT that does not understand
        /// it) only the IP header is rewritten there.
        fn nat(spec: &ProbeSpec, ip: &mut [u8], n: &Nat) {
            let v4 = ip[0] >> 4 == 4;
            if v4 {
                ip[12..16].copy_from_slice(&n.src4);
                ip[16..20].copy_from_slice(&n.dst4);
                ip[8] -= 1;
                if let Some(id) = n.ipv4_id {
                    ip[4..6].copy_from_slice(&id.to_be_bytes());
                }
            } else {
                ip[8..24].copy_from_slice(&n.src6);
                ip[24..40].copy_from_slice(&n.dst6);
                ip[7] -= 1;
            }
            let (l4, proto, first) = upper(ip);
            if first && spec.suite() != Suite::Ip {
                match proto {
                    6 | 17 => {
                        ip[l4..l4 + 2].copy_from_slice(&n.sport.to_be_bytes());
                        let full = matches!(spec.kind, ProbeKind::Frag { .. });
                        let at = if proto == 6 { l4 + 16 } else { l4 + 6 };
                        if !full {
                            set_l4_checksum(ip, at, proto == 17);
                        }
                    }
                    _ => {
                        if let Some(id) = n.icmp_id {
                            ip[l4 + 4..l4 + 6].copy_from_slice(&id.to_be_bytes());
                        }
                        set_l4_checksum(ip, l4 + 2, false);
                    }
                }
            }
            if v4 {
                set_ipv4_checksum(ip);
            }
        }

        /// An ICMP (ICMPv6) error from a router quoting the first `keep`
        /// bytes of `ip` (time exceeded / destination unreachable).
        fn icmp_error(ip: &[u8], keep: usize) -> Vec<u8> {
            let quoted = &ip[..keep.min(ip.len())];
            let mut p = Vec::new();
            if ip[0] >> 4 == 4 {
                p.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0]);
                p.extend_from_slice(&[198, 51, 100, 1]);
                p.extend_from_slice(&ip[12..16]);
                p.extend_from_slice(&[11, 0, 0, 0, 0, 0, 0, 0]);
                p.extend_from_slice(quoted);
                let len = p.len() as u16;
                p[2..4].copy_from_slice(&len.to_be_bytes());
                set_ipv4_checksum(&mut p);
                let c = Sum16BitWords::new().add_slice(&p[20..]).ones_complement();
                p[22..24].copy_from_slice(&c.to_be_bytes());
            } else {
                p.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, 58, 64]);
                p.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
                p.extend_from_slice(&ip[8..24]);
                p.extend_from_slice(&[1, 3, 0, 0, 0, 0, 0, 0]);
                p.extend_from_slice(quoted);
                let plen = (p.len() - 40) as u16;
                p[4..6].copy_from_slice(&plen.to_be_bytes());
                let c = Sum16BitWords::new()
                    .add_slice(&p[8..40])
                    .add_4bytes((plen as u32).to_be_bytes())
                    .add_4bytes([0, 0, 0, 58])
                    .add_slice(&p[40..])
                    .ones_complement();
                p[42..44].copy_from_slice(&c.to_be_bytes());
            }
            p
        }

        /// Splits an IPv4 packet into fragments of `size` data bytes (a
        /// multiple of 8), as a router would.
        fn fragment_v4(ip: &[u8], size: usize) -> Vec<Vec<u8>> {
            let frag = u16::from_be_bytes([ip[6], ip[7]]);
            let (base, mf) = ((frag & 0x1fff) as usize * 8, frag & 0x2000 != 0);
            let chunks: Vec<&[u8]> = ip[20..].chunks(size).collect();
            chunks
                .iter()
                .enumerate()
                .map(|(k, data)| {
                    let mut f = ip[..20].to_vec();
                    f.extend_from_slice(data);
                    let len = f.len() as u16;
                    f[2..4].copy_from_slice(&len.to_be_bytes());
                    let more = mf || k + 1 < chunks.len();
                    let field = ((base + k * size) / 8) as u16 | if more { 0x2000 } else { 0 };
                    f[6..8].copy_from_slice(&field.to_be_bytes());
                    set_ipv4_checksum(&mut f);
                    f
                })
                .collect()
        }

        /// Header-tag bits a probe still shows after this test's NAT (which
        /// rewrites the source port but here keeps IPv4 ID and ICMP id).
        fn header_bits_left(spec: &ProbeSpec, natted: bool) -> u32 {
            let port = matches!(
                spec.kind,
                ProbeKind::Tcp { .. }
                    | ProbeKind::Udp { .. }
                    | ProbeKind::Frag {
                        frag: FragKind::First
                    }
            );
            max_header_bits(spec) - if natted && port { 15 } else { 0 }
        }

        fn wipe_marker(p: &mut [u8]) {
            if let Some(m) = memchr::memmem::find(p, &MAGIC) {
                p[m..m + MARKER_LEN].fill(0);
            }
        }

        /// Deterministic sweep: every ICMP type and protocol number, both
        /// fragment probes and every TCP flag set / UDP on ports 0, 65535 and
        /// a stride, both families: through a NAT, quoted whole and quoted
        /// header-only in an ICMP error.
        #[test]
        fn every_kind_survives_nat_and_quoting() {
            let n = Nat {
                src4: [198, 51, 100, 9],
                dst4: [203, 0, 113, 77],
                src6: "2001:db8:1::9".parse::<Ipv6Addr>().unwrap().octets(),
                dst6: "2001:db8:2::77".parse::<Ipv6Addr>().unwrap().octets(),
                sport: 61000,
                ipv4_id: None,
                icmp_id: None,
            };
            let mut swept = 0;
            for family in Family::BOTH {
                for suite in Suite::ALL {
                    let specs = ProbeSpec::all(family, suite).filter(|s| match s.dst_port() {
                        Some(p) if suite != Suite::Frag => p == 0 || p == 65535 || p % 251 == 0,
                        _ => true,
                    });
                    for spec in specs {
                        swept += 1;
                        let mut ip = probe_ip(&spec);
                        let whole = icmp_error(&ip, ip.len());
                        let a =
                            attribute(&whole, LinkType::RawIp, &mut MarkerKeys::open()).unwrap();
                        assert_eq!((a.spec, a.evidence), (spec, Evidence::Payload));
                        let keep = upper(&ip).0 + 8;
                        let head = icmp_error(&ip, keep);
                        let h = attribute(&head, LinkType::RawIp, &mut knowing_keys());
                        if can_match_headers(&spec) {
                            assert_eq!(
                                h.map(|h| (h.spec, h.evidence)),
                                Some((spec, Evidence::Header))
                            );
                        } else {
                            assert_eq!(h, None, "{spec:?}");
                        }
                        nat(&spec, &mut ip, &n);
                        let a = attribute(&ip, LinkType::RawIp, &mut MarkerKeys::open()).unwrap();
                        assert_eq!((a.spec, a.evidence), (spec, Evidence::Payload));
                        let quoted = icmp_error(&ip, upper(&ip).0 + 8);
                        let h = attribute(&quoted, LinkType::RawIp, &mut knowing_keys());
                        if header_bits_left(&spec, true) >= HEADER_MIN_BITS {
                            assert_eq!(h.map(|h| h.spec), Some(spec), "NAT then quoted");
                        } else if let Some(h) = h {
                            assert_eq!(h.spec, spec);
                        }
                    }
                }
            }
            assert!(swept > 2 * (512 + 2 + 6 * 262));
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn marker_survives_nat(spec in any_spec(), n in any_nat(), eth in any::<bool>()) {
                let mut ip = probe_ip(&spec);
                nat(&spec, &mut ip, &n);
                let (frame, link) = if eth {
                    let mut f = vec![2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 8, 0x08, 0x00];
                    if spec.family == Family::V6 { f[12..14].copy_from_slice(&[0x86, 0xdd]); }
                    f.extend_from_slice(&ip);
                    (f, LinkType::Ethernet)
                } else {
                    (ip.clone(), LinkType::RawIp)
                };
                let a = attribute(&frame, link, &mut MarkerKeys::open()).unwrap();
                prop_assert_eq!((a.spec, a.evidence), (spec, Evidence::Payload));
                // Payload stripped too: the headers NAT left alone may still carry enough.
                let mut bare = ip.clone();
                wipe_marker(&mut bare);
                let h = attribute(&bare, LinkType::RawIp, &mut knowing_keys());
                if let Some(h) = h {
                    prop_assert_eq!((h.spec, h.evidence), (spec, Evidence::Header));
                }
                // TCP keeps its sequence number (32 bits) through NAT.
                if spec.suite() == Suite::Tcp {
                    prop_assert!(h.is_some());
                }
            }

            #[test]
            fn ip_suite_marker_survives_nat_reading_it_as_a_header(v6 in any::<bool>(), icmp6 in any::<bool>(),
                    n in any_nat(), dport in any::<u16>()) {
                let family = if v6 { Family::V6 } else { Family::V4 };
                let protocol = if v6 && icmp6 { 58 } else { 6 };
                let spec = ProbeSpec { family, kind: ProbeKind::Ip { protocol } };
                let mut ip = probe_ip(&spec);
                nat(&spec, &mut ip, &n);
                // A NAT that takes the marker for a TCP header rewrites both
                // ports and the checksum; for ICMPv6 the checksum.
                let (l4, _, _) = upper(&ip);
                if protocol == 6 {
                    ip[l4..l4 + 2].copy_from_slice(&n.sport.to_be_bytes());
                    ip[l4 + 2..l4 + 4].copy_from_slice(&dport.to_be_bytes());
                    set_l4_checksum(&mut ip, l4 + 16, false);
                } else {
                    set_l4_checksum(&mut ip, l4 + 2, false);
                }
                let a = attribute(&ip, LinkType::RawIp, &mut MarkerKeys::open()).unwrap();
                prop_assert_eq!((a.spec, a.evidence), (spec, Evidence::Payload));
            }

            #[test]
            fn marker_survives_icmp_quoting(spec in any_spec(), whole in any::<bool>(), n in any_nat(), natted in any::<bool>()) {
                let mut ip = probe_ip(&spec);
                if natted {
                    // The gateway forwarded it (NAT), then a router quoted it.
                    nat(&spec, &mut ip, &Nat { ipv4_id: None, icmp_id: None, ..n });
                }
                let (l4, _, _) = upper(&ip);
                let keep = if whole { ip.len() } else { l4 + 8 };
                let err = icmp_error(&ip, keep);
                let s = FrameSummary::parse(&err, LinkType::RawIp);
                let q = s.quoted.expect("quoted packet");
                prop_assert_eq!(q.family, Some(spec.family));
                prop_assert_eq!(q.header_protocol, Some(ip[if spec.family == Family::V4 { 9 } else { 6 }]));
                let a = attribute(&err, LinkType::RawIp, &mut knowing_keys());
                if whole {
                    let a = a.unwrap();
                    prop_assert_eq!((a.spec, a.evidence), (spec, Evidence::Payload));
                } else if header_bits_left(&spec, natted) >= HEADER_MIN_BITS {
                    let a = a.unwrap_or_else(|| panic!("header attribution of quoted {spec:?}"));
                    prop_assert_eq!((a.spec, a.evidence), (spec, Evidence::Header));
                } else if let Some(a) = a {
                    prop_assert_eq!(a.spec, spec);
                }
                // Without a known run the header-only quote decodes to nothing.
                if !whole {
                    prop_assert_eq!(attribute(&err, LinkType::RawIp, &mut MarkerKeys::open()), None);
                }
            }

            #[test]
            fn marker_survives_ipv4_fragmentation(spec in any_spec(), units in 1usize..8) {
                let spec = ProbeSpec { family: Family::V4, ..spec };
                let ip = probe_ip(&spec);
                let m = memchr::memmem::find(&ip, &MAGIC).unwrap();
                let size = units * 8;
                for (k, f) in fragment_v4(&ip, size).iter().enumerate() {
                    let (start, end) = (20 + k * size, 20 + k * size + f.len() - 20);
                    let holds_marker = start <= m && m + MARKER_LEN <= end;
                    let a = attribute(f, LinkType::RawIp, &mut MarkerKeys::open());
                    if holds_marker {
                        let a = a.unwrap();
                        prop_assert_eq!((a.spec, a.evidence), (spec, Evidence::Payload));
                    } else {
                        prop_assert_eq!(a, None);
                    }
                    // With the run known, a first fragment holding the L4 header
                    // attributes by headers; no fragment ever names another probe.
                    let h = attribute(f, LinkType::RawIp, &mut knowing_keys());
                    if let Some(h) = h {
                        prop_assert_eq!(h.spec, spec);
                    }
                    let orig_first = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
                    if k == 0 && orig_first && can_match_headers(&spec) {
                        prop_assert!(h.is_some(), "first fragment of {:?}", spec);
                    }
                }
            }

            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                for link in [LinkType::Ethernet, LinkType::RawIp] {
                    let s = FrameSummary::parse(&bytes, link);
                    prop_assert_eq!(s.len, bytes.len());
                    prop_assert!(s.upper_bytes(&bytes).len() <= bytes.len());
                    prop_assert!(s.udp_payload(&bytes).len() <= bytes.len());
                    prop_assert_eq!(attribute(&bytes, link, &mut knowing_keys()), None);
                    prop_assert_eq!(attribute_parsed(&bytes, &s, &mut knowing_keys()), None);
                }
            }

            #[test]
            fn ip_like_bytes_never_panic(v6 in any::<bool>(), head in any::<u8>(), bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
                // Start with a plausible version nibble so the IP parsers run deep.
                let mut p = vec![if v6 { 0x60 | (head & 0x0f) } else { 0x40 | (head & 0x0f) }];
                p.extend_from_slice(&bytes);
                let _ = FrameSummary::parse(&p, LinkType::RawIp);
                prop_assert_eq!(attribute(&p, LinkType::RawIp, &mut knowing_keys()), None);
            }

            #[test]
            fn damaged_probes_never_name_another_probe(spec in any_spec(), eth in any::<bool>(),
                    edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
                    cut in any::<usize>()) {
                let mut buf = [0u8; MAX_PROBE_FRAME];
                let (b, link) = if eth { (builder(Some(MACS)), LinkType::Ethernet) } else { (builder(None), LinkType::RawIp) };
                let n = b.write(&spec, &mut buf);
                let mut f = buf[..n].to_vec();
                for (at, v) in edits {
                    let i = at % f.len();
                    f[i] = v;
                }
                f.truncate(cut % (n + 1));
                let _ = FrameSummary::parse(&f, link);
                if let Some(a) = attribute(&f, link, &mut knowing_keys()) {
                    prop_assert_eq!(a.spec, spec);
                }
            }
        }
    }
}
