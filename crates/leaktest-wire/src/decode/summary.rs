//! [`FrameSummary::parse`]: the one frame parser, used by the probe decoder
//! and by the watcher's classifier.
//!
//! It reads an Ethernet frame (with up to two 802.1Q / 802.1ad tags) or a
//! bare IP packet into the fields a classifier needs: link addresses, ARP,
//! IP addresses, the upper-layer protocol (after IPv6 extension headers),
//! ports, TCP sequence, acknowledgement and flags, ICMP type and code,
//! fragment fields, and for ICMP / ICMPv6 errors the summary of the quoted
//! packet. Parsing is lax and bounds-checked: a truncated or malformed frame
//! gives the fields that could be read and never a panic; it never
//! allocates.

use crate::catalogue::{Family, TcpFlags};
use crate::hdr::{arp, be16, be32, ethernet, icmp, ipv4, ipv6, tcp, udp, IpProtocol};
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

/// The IP-level fields of one packet: the outer one, or one quoted in an
/// ICMP error. Everything a frame does not show is `None` (or 0 / false).
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
    /// Length of the IP header itself (IPv4 with options; IPv6 40).
    pub header_len: usize,
    /// The packet's length as its IP header states it (IPv4 total length,
    /// IPv6 40 + payload length), which a snapped capture may not hold whole.
    pub stated_len: Option<usize>,
    /// The protocol / next header field of the IP header itself.
    pub header_protocol: Option<IpProtocol>,
    /// The upper-layer protocol (IPv6: after the extension headers that
    /// could be walked; if one is truncated, its own number).
    pub protocol: Option<IpProtocol>,
    /// IPv6 extension headers walked before the upper layer.
    pub ext_headers: u8,
    /// A Router Alert option (IPv4 option 148, RFC 2113; IPv6 Hop-by-Hop
    /// option 5, RFC 2711), as MLD and IGMP reports carry.
    pub router_alert: bool,
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
    pub tcp_ack: Option<u32>,
    /// TCP header length from its data offset (20..=60), if readable and sane.
    pub tcp_header_len: Option<usize>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// ICMP / ICMPv6 bytes 4..8 as (identifier, sequence), for every type.
    pub icmp_id_seq: Option<(u16, u16)>,
    /// The upper-layer bytes captured (after IPv6 extension headers; for a
    /// non-first fragment its data) as (start, end) offsets from the IP
    /// header.
    pub upper: Option<(usize, usize)>,
}

impl IpFields {
    /// Whether the packet is a fragment (or carries an IPv6 Fragment header).
    pub fn is_fragment(&self) -> bool {
        self.frag_offset != 0 || self.more_fragments || self.frag_ident.is_some()
    }

    /// Whether the upper-layer protocol is `p`.
    pub fn is(&self, p: IpProtocol) -> bool {
        self.protocol == Some(p)
    }

    /// Whether this is the first (or only) fragment of `p` with its
    /// upper-layer header present: the ports, flags and types are real.
    pub fn is_first(&self, p: IpProtocol) -> bool {
        self.is(p) && self.frag_offset == 0
    }

    /// Length of the upper layer on the wire (from the stated length, so
    /// also for a snapped capture), if known.
    pub fn upper_wire_len(&self) -> Option<usize> {
        let (start, _) = self.upper?;
        self.stated_len?.checked_sub(start)
    }
}

/// The Ethernet/IPv4 ARP body of a frame (RFC 826), when it holds one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpFields {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
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
    /// Number of VLAN tags read (at most 2).
    pub vlan_tags: u8,
    /// Offset of whatever follows the link header (ARP body, IP header).
    pub l3_offset: Option<usize>,
    /// The ARP body, for Ethernet/IPv4 ARP (hardware type 1, protocol
    /// 0x0800, lengths 6 and 4) with the whole 28 bytes captured.
    pub arp: Option<ArpFields>,
    /// ARP operation, for any ARP frame whose operation field was captured.
    pub arp_op: Option<u16>,
    /// Offset of the IP header in the frame.
    pub ip_offset: Option<usize>,
    /// The outer IP packet (`family` is `None` if the frame is not IP).
    pub ip: IpFields,
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
            if let Some((f, quoted)) = frame.get(at..).and_then(|ip| parse_ip(ip, true)) {
                s.ip_offset = Some(at);
                s.ip = f;
                s.quoted = quoted;
            }
        }
        s
    }

    /// Reads the Ethernet header; returns the IP header offset if IP follows.
    fn parse_ethernet(&mut self, frame: &[u8]) -> Option<usize> {
        use ethernet::field;
        self.l2_dst = Some(frame.get(field::DESTINATION)?.try_into().ok()?);
        self.l2_src = Some(frame.get(field::SOURCE)?.try_into().ok()?);
        let mut ethertype = be16(frame, field::ETHERTYPE.start)?;
        let mut at = ethernet::HEADER_LEN;
        // At most two tags (802.1ad + 802.1Q); a third is read as an EtherType.
        for _ in 0..2 {
            if !ethernet::is_vlan_tag(ethertype) {
                break;
            }
            let tci = be16(frame, at + field::TAG_TCI.start)?;
            self.vlan.get_or_insert(tci & 0x0fff);
            ethertype = be16(frame, at + field::TAG_ETHERTYPE.start)?;
            at += ethernet::VLAN_TAG_LEN;
            self.vlan_tags += 1;
        }
        self.ethertype = Some(ethertype);
        self.l3_offset = Some(at);
        match ethertype {
            ethernet::ETHERTYPE_IPV4 | ethernet::ETHERTYPE_IPV6 => Some(at),
            ethernet::ETHERTYPE_ARP => {
                self.parse_arp(frame.get(at..).unwrap_or(&[]));
                None
            }
            _ => None,
        }
    }

    fn parse_arp(&mut self, b: &[u8]) {
        use arp::field;
        self.arp_op = be16(b, field::OPER.start);
        let ether_ipv4 = be16(b, field::HTYPE.start) == Some(arp::HTYPE_ETHERNET)
            && be16(b, field::PTYPE.start) == Some(ethernet::ETHERTYPE_IPV4)
            && b.get(field::HLEN) == Some(&6)
            && b.get(field::PLEN) == Some(&4);
        if !ether_ipv4 || b.len() < arp::BODY_LEN {
            return;
        }
        let v4 = |r: std::ops::Range<usize>| {
            let o = &b[r];
            Ipv4Addr::new(o[0], o[1], o[2], o[3])
        };
        let mac = |r: std::ops::Range<usize>| {
            let mut m = [0u8; 6];
            m.copy_from_slice(&b[r]);
            m
        };
        self.arp = Some(ArpFields {
            op: self.arp_op.unwrap_or(0),
            sender_mac: mac(field::SHA),
            sender_ip: v4(field::SPA),
            target_mac: mac(field::THA),
            target_ip: v4(field::TPA),
        });
    }

    /// Whether the frame is ARP.
    pub fn is_arp(&self) -> bool {
        self.ethertype == Some(ethernet::ETHERTYPE_ARP)
    }

    /// The upper-layer bytes of the outer packet that were captured (after
    /// IPv6 extension headers; empty if there are none or the frame is not
    /// IP). `frame` is the frame this summary was parsed from.
    pub fn upper_bytes<'f>(&self, frame: &'f [u8]) -> &'f [u8] {
        let (Some(at), Some((start, end))) = (self.ip_offset, self.ip.upper) else {
            return &[];
        };
        frame
            .get(at.saturating_add(start)..at.saturating_add(end))
            .unwrap_or(&[])
    }

    /// The payload after a UDP header (empty if the packet is no UDP or not
    /// its first fragment).
    pub fn udp_payload<'f>(&self, frame: &'f [u8]) -> &'f [u8] {
        if !self.ip.is_first(IpProtocol::UDP) {
            return &[];
        }
        self.upper_bytes(frame)
            .get(udp::HEADER_LEN..)
            .unwrap_or(&[])
    }

    /// The captured payload after a TCP header and its options (empty if
    /// the packet is no TCP, not its first fragment, or its data offset is
    /// not sane).
    pub fn tcp_payload<'f>(&self, frame: &'f [u8]) -> &'f [u8] {
        if !self.ip.is_first(IpProtocol::TCP) {
            return &[];
        }
        match self.ip.tcp_header_len {
            Some(h) => self.upper_bytes(frame).get(h..).unwrap_or(&[]),
            None => &[],
        }
    }

    /// Length of the TCP payload on the wire (from the IP header's stated
    /// length, so also for a snapped capture); 0 if unknown.
    pub fn tcp_payload_wire_len(&self) -> usize {
        match (self.ip.upper_wire_len(), self.ip.tcp_header_len) {
            (Some(u), Some(h)) if self.ip.is_first(IpProtocol::TCP) => u.saturating_sub(h),
            _ => 0,
        }
    }
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
    use ipv4::field;
    let h = d.get(..ipv4::HEADER_LEN)?;
    let ihl = (h[field::VER_IHL] & 0x0f) as usize * 4;
    let frag = be16(h, field::FLAGS_FRAG.start)?;
    let ip4 = |r: std::ops::Range<usize>| {
        let o = &h[r];
        IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3]))
    };
    let protocol = IpProtocol(h[field::PROTOCOL]);
    let mut f = IpFields {
        family: Some(Family::V4),
        src: Some(ip4(field::SRC)),
        dst: Some(ip4(field::DST)),
        ttl: Some(h[field::TTL]),
        ip_id: be16(h, field::IDENT.start),
        header_len: ihl,
        header_protocol: Some(protocol),
        protocol: Some(protocol),
        frag_offset: (frag & ipv4::FRAG_OFFSET_MASK) * 8,
        more_fragments: frag & ipv4::FLAG_MF != 0,
        ..IpFields::default()
    };
    if ihl < ipv4::HEADER_LEN || ihl > d.len() {
        // A quoted packet always holds its whole IP header: this is not one.
        return if outer { Some((f, None)) } else { None };
    }
    f.router_alert = ipv4_has_router_alert(&d[ipv4::HEADER_LEN..ihl]);
    // Trust the total length only if it fits what was captured (a quoted
    // packet or a snapped capture is shorter; Ethernet padding is longer).
    let total = be16(h, field::LENGTH.start)? as usize;
    if total >= ihl {
        f.stated_len = Some(total);
    }
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

/// Whether IPv4 options hold a Router Alert (type-length walk; a malformed
/// option list ends the walk).
fn ipv4_has_router_alert(mut opts: &[u8]) -> bool {
    while let Some(&t) = opts.first() {
        match t {
            ipv4::OPTION_END => return false,
            ipv4::OPTION_NOP => opts = &opts[1..],
            _ => {
                let Some(&len) = opts.get(1) else {
                    return false;
                };
                let len = len as usize;
                if len < 2 || len > opts.len() {
                    return false;
                }
                if t == ipv4::OPTION_ROUTER_ALERT {
                    return true;
                }
                opts = &opts[len..];
            }
        }
    }
    false
}

fn parse_ipv6(d: &[u8], outer: bool) -> Option<(IpFields, Option<IpFields>)> {
    use ipv6::field;
    let h = d.get(..ipv6::HEADER_LEN)?;
    let src: [u8; 16] = h[field::SRC].try_into().ok()?;
    let dst: [u8; 16] = h[field::DST].try_into().ok()?;
    let mut f = IpFields {
        family: Some(Family::V6),
        src: Some(IpAddr::V6(Ipv6Addr::from(src))),
        dst: Some(IpAddr::V6(Ipv6Addr::from(dst))),
        ttl: Some(h[field::HOP_LIMIT]),
        flow_label: be32(h, field::VER_TC_FLOW.start).map(|v| v & 0x000f_ffff),
        header_len: ipv6::HEADER_LEN,
        header_protocol: Some(IpProtocol(h[field::NEXT_HEADER])),
        ..IpFields::default()
    };
    let plen = be16(h, field::PAYLOAD_LEN.start)? as usize;
    if plen != 0 {
        f.stated_len = Some(ipv6::HEADER_LEN + plen);
    }
    let end = if plen != 0 && ipv6::HEADER_LEN + plen <= d.len() {
        ipv6::HEADER_LEN + plen
    } else {
        d.len()
    };
    let mut nh = IpProtocol(h[field::NEXT_HEADER]);
    let mut at = ipv6::HEADER_LEN;
    let mut walked = true;
    // Extension headers, bounded: a chain longer than this is not ours.
    for _ in 0..16 {
        if !nh.is_ipv6_extension() {
            break;
        }
        let len = match nh {
            IpProtocol::FRAGMENT => Some(ipv6::frag::LEN),
            IpProtocol::AH => d.get(at + ipv6::ext::LENGTH).map(|l| (*l as usize + 2) * 4),
            _ => d.get(at + ipv6::ext::LENGTH).map(|l| (*l as usize + 1) * 8),
        };
        let Some(len) = len.filter(|l| at + l <= end) else {
            // Truncated extension header: report its number as the protocol.
            walked = false;
            break;
        };
        match nh {
            IpProtocol::FRAGMENT => {
                let off = be16(d, at + ipv6::frag::OFFSET_M.start)?;
                f.frag_offset = off & ipv6::frag::OFFSET_MASK;
                f.more_fragments = off & ipv6::frag::FLAG_M != 0;
                f.frag_ident = be32(d, at + ipv6::frag::IDENT.start);
            }
            IpProtocol::HOP_BY_HOP if f.ext_headers == 0 => {
                f.router_alert |= ipv6_options_have(&d[at + ipv6::ext::OPTIONS..at + len]);
            }
            _ => {}
        }
        nh = IpProtocol(d[at + ipv6::ext::NEXT_HEADER]);
        at += len;
        f.ext_headers += 1;
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

/// Whether IPv6 Hop-by-Hop options hold a Router Alert (TLV walk).
fn ipv6_options_have(mut opts: &[u8]) -> bool {
    while let Some(&t) = opts.first() {
        if t == ipv6::OPTION_PAD1 {
            opts = &opts[1..];
            continue;
        }
        let Some(&len) = opts.get(1) else {
            return false;
        };
        let len = 2 + len as usize;
        if len > opts.len() {
            return false;
        }
        if t == ipv6::OPTION_ROUTER_ALERT {
            return true;
        }
        opts = &opts[len..];
    }
    false
}

/// Reads the upper-layer fields that are present; returns the quoted packet
/// of an ICMP error if `outer`.
fn parse_l4(f: &mut IpFields, l4: &[u8], outer: bool) -> Option<IpFields> {
    let proto = f.protocol?;
    let icmp_proto = f.family.map(Family::icmp_protocol);
    if proto.has_ports() {
        f.src_port = be16(l4, tcp::field::SRC_PORT.start);
        f.dst_port = be16(l4, tcp::field::DST_PORT.start);
        if proto == IpProtocol::TCP {
            f.tcp_seq = be32(l4, tcp::field::SEQ.start);
            f.tcp_ack = be32(l4, tcp::field::ACK.start);
            f.tcp_flags = l4.get(tcp::field::FLAGS).map(|b| TcpFlags(*b));
            f.tcp_header_len = l4
                .get(tcp::field::DATA_OFFSET)
                .map(|b| (b >> 4) as usize * 4)
                .filter(|h| *h >= tcp::HEADER_LEN);
        }
        return None;
    }
    if Some(proto.0) != icmp_proto {
        return None;
    }
    f.icmp_type = l4.get(icmp::field::TYPE).copied();
    f.icmp_code = l4.get(icmp::field::CODE).copied();
    if let (Some(id), Some(sq)) = (
        be16(l4, icmp::field::IDENT.start),
        be16(l4, icmp::field::SEQ.start),
    ) {
        f.icmp_id_seq = Some((id, sq));
    }
    let is_error = match (f.family, f.icmp_type) {
        (Some(Family::V4), Some(t)) => icmp::is_error_v4(t),
        (Some(Family::V6), Some(t)) => icmp::is_error_v6(t),
        _ => false,
    };
    if !(outer && is_error) {
        return None;
    }
    // An error quotes a packet of its own family.
    let inner = l4.get(icmp::field::QUOTED..)?;
    let quoted = match f.family? {
        Family::V4 if inner.first()? >> 4 == 4 => parse_ipv4(inner, false),
        Family::V6 if inner.first()? >> 4 == 6 => parse_ipv6(inner, false),
        _ => None,
    };
    quoted.map(|(q, _)| q)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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
    pub(crate) const ARP_REQUEST: [u8; 42] = [
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
        let a = s.arp.unwrap();
        assert_eq!(
            (a.op, a.sender_mac, a.sender_ip),
            (1, [2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 152, 152, 11))
        );
        assert_eq!(
            (a.target_mac, a.target_ip),
            ([0; 6], Ipv4Addr::new(10, 152, 152, 10))
        );
        assert_eq!((s.l2_dst, s.l3_offset), (Some([0xff; 6]), Some(14)));
        assert_eq!((s.ip.family, s.ip.src), (None, None));
        // Behind a VLAN tag: the same body.
        let mut tagged = ARP_REQUEST[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
        tagged.extend_from_slice(&ARP_REQUEST[12..]);
        let t = FrameSummary::parse(&tagged, LinkType::Ethernet);
        assert_eq!((t.vlan, t.vlan_tags, t.arp), (Some(42), 1, s.arp));
        // Not Ethernet/IPv4 ARP (hardware length 8), or cut short: no body.
        let mut odd = ARP_REQUEST;
        odd[18] = 8;
        let o = FrameSummary::parse(&odd, LinkType::Ethernet);
        assert_eq!((o.arp, o.arp_op), (None, Some(1)));
        assert_eq!(
            FrameSummary::parse(&ARP_REQUEST[..41], LinkType::Ethernet).arp,
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
        assert_eq!((s.ip.src_port, s.ip.dst_port), (Some(68), Some(67)));
        assert_eq!(s.upper_bytes(&f), &f[20..]);
        assert_eq!(s.udp_payload(&f), &[1, 2, 3][..]);
        // The same bytes as a non-first fragment (offset 24): no ports, no UDP header.
        f[6..8].copy_from_slice(&0x0003u16.to_be_bytes());
        let s = FrameSummary::parse(&f, LinkType::RawIp);
        assert_eq!(
            (s.ip.protocol, s.ip.frag_offset, s.ip.src_port),
            (Some(IpProtocol::UDP), 24, None)
        );
        assert!(s.udp_payload(&f).is_empty());
    }

    #[rustfmt::skip]
    pub(crate) const VLAN_TCP_SYN: [u8; 62] = [
        // Ethernet with 802.1Q tag, VLAN 42, IPv4
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x81, 0x00, 0x00, 0x2a, 0x08, 0x00,
        // IPv4 with a Router Alert option (IHL 6), total length 44, id 0x1234, DF, TTL 63, TCP
        0x46, 0x00, 0x00, 0x2c, 0x12, 0x34, 0x40, 0x00, 0x3f, 0x06, 0x00, 0x00, 0xc6, 0x33, 0x64, 0x02, 0xcb, 0x00, 0x71, 0x07,
        0x94, 0x04, 0x00, 0x00,
        // TCP 40000 -> 9001, seq 1, ack 0, SYN, window 1024
        0x9c, 0x40, 0x23, 0x29, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x50, 0x02, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn vlan_tag_and_ipv4_options() {
        let s = FrameSummary::parse(&VLAN_TCP_SYN, LinkType::Ethernet);
        assert_eq!(
            (s.vlan, s.ethertype, s.ip_offset),
            (Some(42), Some(0x0800), Some(18))
        );
        let ip = s.ip;
        assert_eq!(ip.src, Some(v4(Ipv4Addr::new(198, 51, 100, 2))));
        assert_eq!(ip.dst, Some(v4(Ipv4Addr::new(203, 0, 113, 7))));
        assert_eq!(
            (ip.protocol, ip.src_port, ip.dst_port),
            (Some(IpProtocol::TCP), Some(40000), Some(9001))
        );
        assert_eq!(
            (ip.tcp_flags, ip.tcp_seq, ip.tcp_ack, ip.ttl),
            (Some(TcpFlags(2)), Some(1), Some(0), Some(63))
        );
        assert_eq!(
            (ip.header_len, ip.stated_len, ip.tcp_header_len),
            (24, Some(44), Some(20))
        );
        assert!(ip.router_alert);
        assert_eq!(
            (ip.ip_id, ip.frag_offset, ip.more_fragments),
            (Some(0x1234), 0, false)
        );
        assert!(s.tcp_payload(&VLAN_TCP_SYN).is_empty());
        assert_eq!(s.tcp_payload_wire_len(), 0);
    }

    #[test]
    fn tcp_payload_and_its_length_on_the_wire() {
        // IPv4 + TCP with 12 bytes of options, 5 bytes of data, stated as 10
        // (a snapped capture).
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p[2..4].copy_from_slice(&(20u16 + 32 + 10).to_be_bytes());
        let mut t = vec![0u8; 32];
        t[12] = 8 << 4;
        t[13] = 0x18;
        p.extend_from_slice(&t);
        p.extend_from_slice(b"hello");
        let s = FrameSummary::parse(&p, LinkType::RawIp);
        assert_eq!(s.ip.tcp_header_len, Some(32));
        assert_eq!(s.tcp_payload(&p), b"hello");
        assert_eq!(s.tcp_payload_wire_len(), 10);
        // A data offset below 5 words is no TCP header.
        p[20 + 12] = 4 << 4;
        let s = FrameSummary::parse(&p, LinkType::RawIp);
        assert_eq!((s.ip.tcp_header_len, s.tcp_payload(&p)), (None, &[][..]));
    }

    #[rustfmt::skip]
    pub(crate) const IPV6_EXT_UDP: [u8; 72] = [
        // IPv6: flow 0x12345, payload length 32, next header 0 (hop-by-hop), hop limit 1
        0x60, 0x01, 0x23, 0x45, 0x00, 0x20, 0x00, 0x01,
        0xfd, 0x19, 0xc3, 0x3d, 0x88, 0xbc, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11,
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07,
        // hop-by-hop: next 60, length 0 (8 bytes), Router Alert (MLD), PadN
        0x3c, 0x00, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00,
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
        let ip = s.ip;
        assert_eq!(
            (ip.family, ip.flow_label, ip.ttl),
            (Some(Family::V6), Some(0x12345), Some(1))
        );
        assert_eq!(
            (ip.header_protocol, ip.protocol, ip.ext_headers),
            (Some(IpProtocol(0)), Some(IpProtocol::UDP), 3)
        );
        assert!(ip.router_alert);
        assert_eq!(
            (ip.frag_ident, ip.frag_offset, ip.more_fragments),
            (Some(0xdeadbeef), 0, true)
        );
        assert_eq!((ip.src_port, ip.dst_port), (Some(5353), Some(53)));
        assert!(ip.is_fragment());
        // Truncated inside the destination options: protocol is that header's number.
        let t = FrameSummary::parse(&IPV6_EXT_UDP[..50], LinkType::RawIp);
        assert_eq!((t.ip.protocol, t.ip.dst_port), (Some(IpProtocol(60)), None));
        // A bare IP packet read as Ethernet is no IP at all, and no panic.
        let e = FrameSummary::parse(&IPV6_EXT_UDP, LinkType::Ethernet);
        assert_eq!(e.ip.family, None);
    }
}
