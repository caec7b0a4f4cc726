//! Link housekeeping judged by content, not by shape.
//!
//! A gateway's own kernel sends a few kinds of frames by itself on its
//! uplink: ARP, neighbour discovery, MLD and IGMP reports, DHCP client
//! messages. Each check here accepts only what the standards let a host
//! send on its own link, as Linux builds it, with nothing more in it; every
//! other frame of those shapes is a leak (*housekeeping-shaped*), because a
//! process on the gateway can write frames of any shape:
//!
//! * ARP (RFC 826; Linux `arp_create`): Ethernet/IPv4, request or reply,
//!   sender = the interface's own MAC (also as the frame's source) and own
//!   address (or 0.0.0.0 for an RFC 5227 probe); a request's target MAC is
//!   zero and its target address on-link (or its own, gratuitous); a reply
//!   goes to the MAC it names, to a unicast address (the requester's
//!   sender address, which Linux answers whatever its prefix: with the
//!   default `arp_announce` 0 a neighbour asks from any of its addresses);
//!   the 28-byte body followed by nothing but zero padding up to the 60-byte
//!   minimum. What remains open is the reply's target address, 4 bytes a
//!   frame that only the inbound request could vouch for (the watcher
//!   captures outbound frames only).
//! * Neighbour discovery (RFC 4861 sections 4, 6, 7): router and neighbour
//!   solicitations and neighbour advertisements only (a host sends no router
//!   advertisement or redirect); hop limit 255, code 0, no extension header;
//!   source the interface's own or link-local address (:: only for a DAD
//!   solicitation); destination link-local, on-link or link-scope multicast;
//!   reserved bits zero; a target that is on-link or link-local (and for an
//!   advertisement the interface's own); options well-formed, of the types
//!   that message carries (source or target link-layer address = own MAC,
//!   the DAD nonce), ending exactly where the message ends.
//! * MLD (RFC 2710, RFC 3810): v1 report and done, v2 report (a host is not
//!   a querier); hop limit 1 behind a Hop-by-Hop header with Router Alert;
//!   source link-local, own, or :: ; v2 reports to ff02::16, v1 reports to
//!   their group, done to ff02::2; records well-formed with multicast groups
//!   and no auxiliary data, filling the message exactly.
//! * IGMP (RFC 2236, RFC 3376): v1/v2 reports, leave, v3 reports (no
//!   queries); TTL 1; source own or 0.0.0.0; no IP option but Router Alert;
//!   reports to their group or 224.0.0.22, leave to 224.0.0.2; exact lengths.
//! * DHCPv4 client (RFC 2131, RFC 2132): UDP with port 67 or 68 on either
//!   side is of the shape; only 68 to 67 is a client message, to the broadcast
//!   address or an on-link server, from 0.0.0.0 or an own address; a
//!   BOOTREQUEST for the interface's own MAC (`chaddr`, the rest of it zero),
//!   no relay hops, `yiaddr`/`siaddr`/`giaddr` zero, `sname` and `file` zero,
//!   options well-formed with a client message type, ended by END and
//!   followed by zeros only.
//! * DHCPv6 client (RFC 8415): UDP 546 to 547, from a link-local address to
//!   ff02::1:2 or a link-local server, a client message type, options
//!   filling the message exactly.

use ipnet::IpNet;
use leaktest_wire::hdr::{
    arp, be16, dhcpv4, dhcpv6, ethernet, icmp, igmp, ipv6, mld, nd, udp, IpProtocol,
};
use leaktest_wire::{Family, FrameSummary};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Kinds of link housekeeping a gateway sends by itself.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum HousekeepingKind {
    Arp,
    #[serde(rename = "nd-rs")]
    RouterSolicitation,
    #[serde(rename = "nd-ns")]
    NeighbourSolicitation,
    #[serde(rename = "nd-na")]
    NeighbourAdvertisement,
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
        HousekeepingKind::NeighbourSolicitation,
        HousekeepingKind::NeighbourAdvertisement,
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
            HousekeepingKind::NeighbourSolicitation => "nd-ns",
            HousekeepingKind::NeighbourAdvertisement => "nd-na",
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

/// What a housekeeping check concluded about a frame of its shape.
pub type Judgement = Result<HousekeepingKind, (HousekeepingKind, &'static str)>;

/// What the checks know about the watched interface.
#[derive(Clone, Copy, Debug)]
pub struct Own<'a> {
    /// Its MAC addresses (empty for a link without them: then not checked).
    pub macs: &'a [[u8; 6]],
    /// Its addresses with their prefixes (the on-link networks).
    pub nets: &'a [IpNet],
    /// Further on-link prefixes (connected routes through it) and the next
    /// hops of routes through it, which may lie outside every prefix.
    pub routes: &'a LinkRoutes,
}

/// What the routing table says is on-link for the watched interface (see
/// `leaktest_capture::iface::link_routes`; empty when unknown).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkRoutes {
    pub prefixes: Vec<IpNet>,
    pub next_hops: Vec<IpAddr>,
}

impl Own<'_> {
    fn mac(&self, m: Option<[u8; 6]>) -> bool {
        match m {
            None => true,
            Some(m) => self.macs.is_empty() || self.macs.contains(&m),
        }
    }
    fn addr(&self, a: IpAddr) -> bool {
        self.nets.iter().any(|n| n.addr() == a)
    }
    fn on_link(&self, a: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&a))
            || self.routes.prefixes.iter().any(|n| n.contains(&a))
            || self.routes.next_hops.contains(&a)
    }
}

/// Whether bytes are all zero.
fn zero(b: &[u8]) -> bool {
    b.iter().all(|x| *x == 0)
}

/// What follows the IP packet in the frame (Ethernet padding) must be zero.
fn padding_ok(frame: &[u8], s: &FrameSummary) -> bool {
    match (s.ip_offset, s.ip.stated_len) {
        (Some(at), Some(len)) => frame.get(at + len..).is_none_or(zero),
        _ => false,
    }
}

/// ARP: see the module documentation.
pub fn arp(own: Own<'_>, frame: &[u8], s: &FrameSummary) -> Option<Judgement> {
    if !s.is_arp() {
        return None;
    }
    let k = HousekeepingKind::Arp;
    let Some(a) = s.arp else {
        return Some(Err((k, "not an Ethernet/IPv4 ARP body")));
    };
    let body_end = s.l3_offset.unwrap_or(ethernet::HEADER_LEN) + arp::BODY_LEN;
    let max_len = ethernet::MIN_FRAME_LEN.max(body_end);
    if frame.len() > max_len || !frame.get(body_end..).is_none_or(zero) {
        return Some(Err((k, "data after the ARP body")));
    }
    if !own.mac(s.l2_src) || s.l2_src != Some(a.sender_mac) {
        return Some(Err((k, "sender hardware address not the interface's own")));
    }
    let sender = IpAddr::V4(a.sender_ip);
    if !(a.sender_ip.is_unspecified() || own.addr(sender)) {
        return Some(Err((k, "sender address not the interface's own")));
    }
    let target = IpAddr::V4(a.target_ip);
    let target_ok = own.on_link(target) || a.target_ip == a.sender_ip;
    match a.op {
        arp::OP_REQUEST => {
            if !zero(&a.target_mac) {
                return Some(Err((k, "a request with a target hardware address")));
            }
            if !target_ok {
                return Some(Err((k, "a request for an address that is not on-link")));
            }
        }
        arp::OP_REPLY => {
            if s.l2_dst != Some(a.target_mac) || ethernet::is_group(&a.target_mac) {
                return Some(Err((k, "a reply not to the station it names")));
            }
            let t = a.target_ip;
            if t.is_unspecified() || t.is_broadcast() || t.is_multicast() || t.is_loopback() {
                return Some(Err((k, "a reply to an address no station asks from")));
            }
        }
        _ => return Some(Err((k, "an operation other than request or reply"))),
    }
    Some(Ok(k))
}

fn v6(a: Option<IpAddr>) -> Option<Ipv6Addr> {
    match a? {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    }
}

fn v4(a: Option<IpAddr>) -> Option<Ipv4Addr> {
    match a? {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

/// The whole ICMPv6 message, if the frame holds all of it.
fn icmpv6_message<'f>(frame: &'f [u8], s: &FrameSummary) -> Option<&'f [u8]> {
    let msg = s.upper_bytes(frame);
    (Some(msg.len()) == s.ip.upper_wire_len()).then_some(msg)
}

/// Walks neighbour-discovery options; every one must be of an allowed type
/// (`allowed`), link-layer address options must hold `mac`, and the last
/// one must end exactly at the end of the message.
fn nd_options(mut opts: &[u8], allowed: &[u8], mac: Option<[u8; 6]>) -> Result<(), &'static str> {
    while !opts.is_empty() {
        let (Some(&ty), Some(&len8)) = (opts.get(nd::option::TYPE), opts.get(nd::option::LENGTH))
        else {
            return Err("a truncated option");
        };
        let len = len8 as usize * 8;
        if len == 0 || len > opts.len() {
            return Err("options do not fill the message exactly");
        }
        if !allowed.contains(&ty) {
            return Err("an option this message does not carry");
        }
        if matches!(ty, nd::option::SOURCE_LL_ADDR | nd::option::TARGET_LL_ADDR)
            && (len != 8 || (mac.is_some() && opts.get(2..8) != mac.as_ref().map(|m| &m[..])))
        {
            return Err("a link-layer address option that is not the interface's MAC");
        }
        opts = &opts[len..];
    }
    Ok(())
}

/// Neighbour discovery: see the module documentation.
pub fn neighbour_discovery(own: Own<'_>, frame: &[u8], s: &FrameSummary) -> Option<Judgement> {
    let ip = &s.ip;
    if ip.family != Some(Family::V6) || !ip.is_first(IpProtocol::ICMPV6) {
        return None;
    }
    let t = ip.icmp_type?;
    let k = match t {
        icmp::V6_ROUTER_SOLICIT => HousekeepingKind::RouterSolicitation,
        icmp::V6_NEIGHBOUR_SOLICIT => HousekeepingKind::NeighbourSolicitation,
        icmp::V6_NEIGHBOUR_ADVERT => HousekeepingKind::NeighbourAdvertisement,
        icmp::V6_ROUTER_ADVERT | icmp::V6_REDIRECT => {
            return Some(Err((
                HousekeepingKind::RouterSolicitation,
                "a host sends no router advertisement or redirect",
            )))
        }
        _ => return None,
    };
    let bad = |why| Some(Err((k, why)));
    if ip.ttl != Some(255) {
        return bad("hop limit not 255 (forwarded, or not from the link)");
    }
    if ip.icmp_code != Some(0) || ip.ext_headers != 0 {
        return bad("a code or an extension header neighbour discovery does not use");
    }
    let (src, dst) = (v6(ip.src)?, v6(ip.dst)?);
    let dad = src.is_unspecified();
    if !(own.addr(IpAddr::V6(src))
        || ipv6::is_link_local(&src)
        || (dad && k == HousekeepingKind::NeighbourSolicitation))
    {
        return bad("source not the interface's own or link-local");
    }
    if !(ipv6::is_link_local(&dst)
        || ipv6::is_link_scope_multicast(&dst)
        || own.on_link(IpAddr::V6(dst)))
    {
        return bad("destination neither on-link, link-local nor link-scope multicast");
    }
    let Some(msg) = icmpv6_message(frame, s) else {
        return bad("the message is not captured whole");
    };
    if !padding_ok(frame, s) {
        return bad("data after the packet");
    }
    if !zero(msg.get(nd::field::RESERVED)?) && k != HousekeepingKind::NeighbourAdvertisement {
        return bad("reserved bits set");
    }
    let mac = s.l2_src;
    let (options, allowed): (usize, &[u8]) = match k {
        HousekeepingKind::RouterSolicitation => (nd::RS_OPTIONS, &[nd::option::SOURCE_LL_ADDR]),
        HousekeepingKind::NeighbourSolicitation => (
            nd::NS_NA_OPTIONS,
            &[nd::option::SOURCE_LL_ADDR, nd::option::NONCE],
        ),
        _ => (nd::NS_NA_OPTIONS, &[nd::option::TARGET_LL_ADDR]),
    };
    if k != HousekeepingKind::RouterSolicitation {
        let target: [u8; 16] = msg.get(nd::field::TARGET)?.try_into().ok()?;
        let target = Ipv6Addr::from(target);
        if k == HousekeepingKind::NeighbourAdvertisement {
            let flags = u32::from_be_bytes(msg.get(nd::field::RESERVED)?.try_into().ok()?);
            if flags & !nd::NA_FLAGS_MASK != 0 {
                return bad("reserved bits set");
            }
            if !own.addr(IpAddr::V6(target)) && !ipv6::is_link_local(&target) {
                return bad("an advertisement for an address not the interface's own");
            }
        } else if target.is_multicast()
            || !(ipv6::is_link_local(&target) || own.on_link(IpAddr::V6(target)))
        {
            return bad("a solicitation for an address that is not on-link");
        }
    }
    if msg.len() < options {
        return bad("the message is too short");
    }
    if let Err(why) = nd_options(
        &msg[options..],
        allowed,
        mac.filter(|_| !own.macs.is_empty()),
    ) {
        return bad(why);
    }
    Some(Ok(k))
}

/// MLD: see the module documentation.
pub fn mld(own: Own<'_>, frame: &[u8], s: &FrameSummary) -> Option<Judgement> {
    let ip = &s.ip;
    if ip.family != Some(Family::V6) || !ip.is_first(IpProtocol::ICMPV6) {
        return None;
    }
    let t = ip.icmp_type?;
    let k = HousekeepingKind::Mld;
    let bad = |why| Some(Err((k, why)));
    match t {
        icmp::V6_MLD_REPORT | icmp::V6_MLD_DONE | icmp::V6_MLD2_REPORT => {}
        icmp::V6_MLD_QUERY => return bad("a host sends no listener query"),
        _ => return None,
    }
    if ip.ttl != Some(1)
        || !ip.router_alert
        || ip.ext_headers != 1
        || ip.header_protocol != Some(IpProtocol::HOP_BY_HOP)
    {
        return bad("not hop limit 1 behind a Hop-by-Hop Router Alert");
    }
    let (src, dst) = (v6(ip.src)?, v6(ip.dst)?);
    if !(src.is_unspecified() || ipv6::is_link_local(&src) || own.addr(IpAddr::V6(src))) {
        return bad("source not link-local");
    }
    if ip.icmp_code != Some(0) {
        return bad("a code MLD does not use");
    }
    let Some(msg) = icmpv6_message(frame, s) else {
        return bad("the message is not captured whole");
    };
    if !padding_ok(frame, s) {
        return bad("data after the packet");
    }
    let group = |b: &[u8]| -> Option<Ipv6Addr> {
        let a: [u8; 16] = b.try_into().ok()?;
        Some(Ipv6Addr::from(a)).filter(|g| g.is_multicast())
    };
    if t == icmp::V6_MLD2_REPORT {
        if dst != Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16) {
            return bad("a v2 report not to ff02::16");
        }
        if !zero(msg.get(mld::field::V2_RESERVED)?) {
            return bad("reserved bits set");
        }
        let n = be16(msg, mld::field::V2_RECORDS.start)? as usize;
        let mut at = mld::V2_RECORDS_START;
        for _ in 0..n {
            let r = msg.get(at..at + mld::record::LEN);
            let Some(r) = r else {
                return bad("records do not fill the message exactly");
            };
            let sources = be16(r, mld::record::SOURCES.start)? as usize;
            if !(1..=6).contains(&r[mld::record::TYPE]) || r[mld::record::AUX_LEN] != 0 {
                return bad("a record of an unknown type or with auxiliary data");
            }
            if group(&r[mld::record::GROUP]).is_none() {
                return bad("a record for an address that is not multicast");
            }
            at += mld::record::LEN + sources * 16;
        }
        if at != msg.len() {
            return bad("records do not fill the message exactly");
        }
    } else {
        if msg.len() != mld::V1_LEN {
            return bad("a v1 message of the wrong length");
        }
        if !zero(msg.get(mld::field::V1_MAX_DELAY)?) || !zero(msg.get(mld::field::V1_RESERVED)?) {
            return bad("reserved bits set");
        }
        let Some(g) = group(msg.get(mld::field::V1_GROUP)?) else {
            return bad("a group that is not multicast");
        };
        let want = if t == icmp::V6_MLD_DONE {
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2)
        } else {
            g
        };
        if dst != want {
            return bad("a v1 message not to its group (report) or ff02::2 (done)");
        }
    }
    Some(Ok(k))
}

/// IGMP: see the module documentation.
pub fn igmp(own: Own<'_>, frame: &[u8], s: &FrameSummary) -> Option<Judgement> {
    let ip = &s.ip;
    if ip.family != Some(Family::V4) || ip.protocol != Some(IpProtocol::IGMP) {
        return None;
    }
    let k = HousekeepingKind::Igmp;
    let bad = |why| Some(Err((k, why)));
    if ip.is_fragment() {
        return bad("a fragment");
    }
    if ip.ttl != Some(1) {
        return bad("TTL not 1");
    }
    // No options, or exactly a Router Alert (4 bytes).
    if !(ip.header_len == 20 || (ip.header_len == 24 && ip.router_alert)) {
        return bad("IP options other than Router Alert");
    }
    let (src, dst) = (v4(ip.src)?, v4(ip.dst)?);
    if !(src.is_unspecified() || own.addr(IpAddr::V4(src))) {
        return bad("source not the interface's own");
    }
    let msg = s.upper_bytes(frame);
    if Some(msg.len()) != ip.upper_wire_len() || !padding_ok(frame, s) {
        return bad("not captured whole, or data after the packet");
    }
    let t = *msg.first()?;
    let group = |b: &[u8]| -> Option<Ipv4Addr> {
        let a: [u8; 4] = b.try_into().ok()?;
        Some(Ipv4Addr::from(a)).filter(|g| g.is_multicast())
    };
    match t {
        igmp::V1_REPORT | igmp::V2_REPORT | igmp::V2_LEAVE => {
            if msg.len() != igmp::V2_LEN || msg[igmp::field::MAX_RESP] != 0 {
                return bad("a v1/v2 message of the wrong length or with a response time");
            }
            let Some(g) = group(&msg[igmp::field::GROUP]) else {
                return bad("a group that is not multicast");
            };
            let want = if t == igmp::V2_LEAVE {
                Ipv4Addr::new(224, 0, 0, 2)
            } else {
                g
            };
            if dst != want {
                return bad("a report not to its group, or a leave not to 224.0.0.2");
            }
        }
        igmp::V3_REPORT => {
            if dst != Ipv4Addr::new(224, 0, 0, 22) {
                return bad("a v3 report not to 224.0.0.22");
            }
            if !zero(msg.get(igmp::field::V3_RESERVED)?) || msg[igmp::field::MAX_RESP] != 0 {
                return bad("reserved bits set");
            }
            let n = be16(msg, igmp::field::V3_RECORDS.start)? as usize;
            let mut at = igmp::V3_RECORDS_START;
            for _ in 0..n {
                let Some(r) = msg.get(at..at + igmp::record::LEN) else {
                    return bad("records do not fill the message exactly");
                };
                let sources = be16(r, igmp::record::SOURCES.start)? as usize;
                if !(1..=6).contains(&r[igmp::record::TYPE]) || r[igmp::record::AUX_LEN] != 0 {
                    return bad("a record of an unknown type or with auxiliary data");
                }
                if group(&r[igmp::record::GROUP]).is_none() {
                    return bad("a record for an address that is not multicast");
                }
                at += igmp::record::LEN + sources * 4;
            }
            if at != msg.len() {
                return bad("records do not fill the message exactly");
            }
        }
        _ => return bad("a host sends no query (or an unknown type)"),
    }
    Some(Ok(k))
}

/// DHCPv4 client messages: see the module documentation.
pub fn dhcpv4(own: Own<'_>, frame: &[u8], s: &FrameSummary) -> Option<Judgement> {
    let ip = &s.ip;
    let dhcp_port = |p: Option<u16>| matches!(p, Some(dhcpv4::CLIENT_PORT | dhcpv4::SERVER_PORT));
    if !ip.is_first(IpProtocol::UDP) || !(dhcp_port(ip.src_port) || dhcp_port(ip.dst_port)) {
        return None;
    }
    let k = HousekeepingKind::Dhcpv4;
    let bad = |why| Some(Err((k, why)));
    if ip.family != Some(Family::V4) {
        return bad("DHCPv4 ports over IPv6");
    }
    if ip.src_port != Some(dhcpv4::CLIENT_PORT) || ip.dst_port != Some(dhcpv4::SERVER_PORT) {
        return bad("not from port 68 to port 67");
    }
    if ip.is_fragment() {
        return bad("a fragment");
    }
    let (src, dst) = (v4(ip.src)?, v4(ip.dst)?);
    if !(dst.is_broadcast() || own.on_link(IpAddr::V4(dst))) || own.addr(IpAddr::V4(dst)) {
        return bad("not to the broadcast address or an on-link server");
    }
    if !(src.is_unspecified() || own.addr(IpAddr::V4(src))) {
        return bad("source not the interface's own");
    }
    if !own.mac(s.l2_src) {
        return bad("not from the interface's MAC");
    }
    let upper = s.upper_bytes(frame);
    if Some(upper.len()) != ip.upper_wire_len() || !padding_ok(frame, s) {
        return bad("not captured whole, or data after the packet");
    }
    if be16(upper, udp::field::LENGTH.start) != Some(upper.len() as u16) {
        return bad("a UDP length that is not the datagram's");
    }
    let b = s.udp_payload(frame);
    use dhcpv4::field as f;
    if b.len() < f::OPTIONS {
        return bad("shorter than a BOOTP message");
    }
    if b[f::OP] != dhcpv4::OP_BOOTREQUEST || b[f::HTYPE] != 1 || b[f::HLEN] != 6 || b[f::HOPS] != 0
    {
        return bad("not a client's BOOTREQUEST for an Ethernet address");
    }
    if b[f::COOKIE] != dhcpv4::MAGIC_COOKIE {
        return bad("no DHCP magic cookie");
    }
    let chaddr = &b[f::CHADDR];
    let mac_ok = match (s.l2_src, own.macs.is_empty()) {
        (_, true) | (None, _) => true,
        (Some(m), false) => chaddr[..6] == m,
    };
    if !mac_ok || !zero(&chaddr[6..]) {
        return bad("a client hardware address that is not the interface's MAC");
    }
    let ciaddr = Ipv4Addr::from(<[u8; 4]>::try_from(&b[f::CIADDR]).ok()?);
    if !(ciaddr.is_unspecified() || own.addr(IpAddr::V4(ciaddr))) {
        return bad("a client address that is not the interface's own");
    }
    if !zero(&b[f::YIADDR]) || !zero(&b[f::SIADDR]) || !zero(&b[f::GIADDR]) {
        return bad("server, relay or 'your' address fields set");
    }
    if !zero(&b[f::SNAME]) || !zero(&b[f::FILE]) {
        return bad("data in the sname or file fields");
    }
    // Options: code, length, value; PAD and END alone; then zeros only.
    let mut opts = &b[f::OPTIONS..];
    let mut msg_type = None;
    loop {
        let Some(&code) = opts.first() else {
            return bad("options without END");
        };
        match code {
            dhcpv4::OPTION_PAD => opts = &opts[1..],
            dhcpv4::OPTION_END => {
                if !zero(&opts[1..]) {
                    return bad("data after the END option");
                }
                break;
            }
            _ => {
                let Some(&len) = opts.get(1) else {
                    return bad("a truncated option");
                };
                let len = len as usize;
                let Some(value) = opts.get(2..2 + len) else {
                    return bad("a truncated option");
                };
                match code {
                    dhcpv4::OPTION_OVERLOAD => return bad("option overload (data in sname/file)"),
                    dhcpv4::OPTION_MESSAGE_TYPE if len == 1 => msg_type = Some(value[0]),
                    dhcpv4::OPTION_MESSAGE_TYPE => return bad("a malformed message type"),
                    _ => {}
                }
                opts = &opts[2 + len..];
            }
        }
    }
    if !msg_type.is_some_and(dhcpv4::is_client_message) {
        return bad("no client message type");
    }
    Some(Ok(k))
}

/// DHCPv6 client messages: see the module documentation.
pub fn dhcpv6(own: Own<'_>, frame: &[u8], s: &FrameSummary) -> Option<Judgement> {
    let ip = &s.ip;
    let dhcp_port = |p: Option<u16>| matches!(p, Some(dhcpv6::CLIENT_PORT | dhcpv6::SERVER_PORT));
    if !ip.is_first(IpProtocol::UDP) || !(dhcp_port(ip.src_port) || dhcp_port(ip.dst_port)) {
        return None;
    }
    let k = HousekeepingKind::Dhcpv6;
    let bad = |why| Some(Err((k, why)));
    if ip.family != Some(Family::V6) {
        return bad("DHCPv6 ports over IPv4");
    }
    if ip.src_port != Some(dhcpv6::CLIENT_PORT) || ip.dst_port != Some(dhcpv6::SERVER_PORT) {
        return bad("not from port 546 to port 547");
    }
    let (src, dst) = (v6(ip.src)?, v6(ip.dst)?);
    if !ipv6::is_link_local(&src) {
        return bad("source not link-local");
    }
    if !(dst == dhcpv6::ALL_SERVERS || ipv6::is_link_local(&dst)) {
        return bad("not to ff02::1:2 or a link-local server");
    }
    if !own.mac(s.l2_src) || ip.is_fragment() {
        return bad("not from the interface's MAC, or a fragment");
    }
    let upper = s.upper_bytes(frame);
    if Some(upper.len()) != ip.upper_wire_len() || !padding_ok(frame, s) {
        return bad("not captured whole, or data after the packet");
    }
    if be16(upper, udp::field::LENGTH.start) != Some(upper.len() as u16) {
        return bad("a UDP length that is not the datagram's");
    }
    let b = s.udp_payload(frame);
    let Some(&t) = b.get(dhcpv6::field::MSG_TYPE) else {
        return bad("empty");
    };
    if !dhcpv6::is_client_message(t) || b.len() < dhcpv6::field::OPTIONS {
        return bad("not a client message");
    }
    let mut opts = &b[dhcpv6::field::OPTIONS..];
    while !opts.is_empty() {
        let Some(len) = be16(opts, 2) else {
            return bad("options do not fill the message exactly");
        };
        let end = 4 + len as usize;
        if end > opts.len() {
            return bad("options do not fill the message exactly");
        }
        opts = &opts[end..];
    }
    Some(Ok(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use leaktest_wire::LinkType;

    fn nets() -> Vec<IpNet> {
        vec![
            "198.51.100.2/24".parse().unwrap(),
            "2001:db8:1::2/64".parse().unwrap(),
            "fe80::2/64".parse().unwrap(),
        ]
    }

    fn with<T>(f: impl FnOnce(Own<'_>) -> T) -> T {
        let n = nets();
        let routes = LinkRoutes {
            prefixes: vec!["192.0.2.0/24".parse().unwrap()],
            next_hops: vec!["203.0.113.254".parse().unwrap()],
        };
        f(Own {
            macs: &[GW_MAC],
            nets: &n,
            routes: &routes,
        })
    }

    fn run(
        check: fn(Own<'_>, &[u8], &FrameSummary) -> Option<Judgement>,
        frame: &[u8],
    ) -> Option<Judgement> {
        let s = FrameSummary::parse(frame, LinkType::Ethernet);
        with(|own| check(own, frame, &s))
    }

    #[test]
    fn arp_by_content() {
        let ok = Some(Ok(HousekeepingKind::Arp));
        let router = Ipv4Addr::new(198, 51, 100, 1);
        assert_eq!(run(arp, &arp_frame(GW_MAC, 1, GW_MAC, GW4, router)), ok);
        // RFC 5227 probe, gratuitous ARP, a reply.
        assert_eq!(
            run(
                arp,
                &arp_frame(GW_MAC, 1, GW_MAC, Ipv4Addr::UNSPECIFIED, GW4)
            ),
            ok
        );
        assert_eq!(run(arp, &arp_frame(GW_MAC, 1, GW_MAC, GW4, GW4)), ok);
        let mut reply = arp_frame(GW_MAC, 2, GW_MAC, GW4, router);
        reply[0..6].copy_from_slice(&ROUTER_MAC);
        reply[32..38].copy_from_slice(&ROUTER_MAC);
        assert_eq!(run(arp, &reply), ok);
        // A reply to a neighbour that asked from an address of another prefix.
        let mut reply_far = arp_frame(GW_MAC, 2, GW_MAC, GW4, Ipv4Addr::new(203, 0, 113, 80));
        reply_far[0..6].copy_from_slice(&ROUTER_MAC);
        reply_far[32..38].copy_from_slice(&ROUTER_MAC);
        assert_eq!(run(arp, &reply_far), ok);
        // Requests for on-link destinations by route, and for a next hop
        // outside every prefix (an `onlink` gateway).
        assert_eq!(
            run(
                arp,
                &arp_frame(GW_MAC, 1, GW_MAC, GW4, Ipv4Addr::new(192, 0, 2, 9))
            ),
            ok
        );
        assert_eq!(
            run(
                arp,
                &arp_frame(GW_MAC, 1, GW_MAC, GW4, Ipv4Addr::new(203, 0, 113, 254))
            ),
            ok
        );
        // Zero padding to 60 bytes is fine, data after the body is not.
        let mut padded = arp_frame(GW_MAC, 1, GW_MAC, GW4, router);
        padded.resize(60, 0);
        assert_eq!(run(arp, &padded), ok);
        let mut carrying = padded.clone();
        carrying[50] = b'x';
        assert!(matches!(run(arp, &carrying), Some(Err(_))));
        carrying = padded.clone();
        carrying.extend_from_slice(b"more data");
        assert!(matches!(run(arp, &carrying), Some(Err(_))));
        // Another station's, a spoofed sender, an off-link target (4 bytes
        // of data per frame), a target MAC in a request, odd opcode.
        let mut tmac = arp_frame(GW_MAC, 1, GW_MAC, GW4, router);
        tmac[32] = 0x41;
        for f in [
            arp_frame(WS_MAC, 1, WS_MAC, WS4, router),
            arp_frame(GW_MAC, 1, WS_MAC, GW4, router),
            arp_frame(GW_MAC, 1, GW_MAC, WS4, router),
            arp_frame(GW_MAC, 1, GW_MAC, GW4, Ipv4Addr::new(8, 8, 8, 8)),
            tmac,
            arp_frame(GW_MAC, 3, GW_MAC, GW4, router),
        ] {
            assert!(
                matches!(run(arp, &f), Some(Err((HousekeepingKind::Arp, _)))),
                "{f:?}"
            );
        }
        assert_eq!(run(arp, &eth4(GW4, NET4, 17, &udp(1, 2, b"x"))), None);
    }

    fn nd_frame(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, body: &[u8]) -> Vec<u8> {
        eth(
            GW_MAC,
            [0x33, 0x33, 0, 0, 0, 1],
            0x86dd,
            &ipv6(src, dst, 58, hop, body),
        )
    }

    fn ns_body(target: Ipv6Addr, opts: &[u8]) -> Vec<u8> {
        let mut b = vec![135, 0, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&target.octets());
        b.extend_from_slice(opts);
        b
    }

    fn slla(mac: [u8; 6]) -> Vec<u8> {
        let mut o = vec![1, 1];
        o.extend_from_slice(&mac);
        o
    }

    #[test]
    fn neighbour_discovery_by_content() {
        let ll: Ipv6Addr = "fe80::2".parse().unwrap();
        let router: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let solicited: Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
        let internet: Ipv6Addr = "2001:db8:99::7".parse().unwrap();
        let ns = |src, dst, target, opts: &[u8]| nd_frame(src, dst, 255, &ns_body(target, opts));
        let ok = Some(Ok(HousekeepingKind::NeighbourSolicitation));
        assert_eq!(
            run(
                neighbour_discovery,
                &ns(GW6, solicited, router, &slla(GW_MAC))
            ),
            ok
        );
        // NUD probe, unicast to the router, no option.
        assert_eq!(run(neighbour_discovery, &ns(GW6, router, router, &[])), ok);
        // DAD: from ::, with a nonce.
        assert_eq!(
            run(
                neighbour_discovery,
                &ns(
                    Ipv6Addr::UNSPECIFIED,
                    solicited,
                    GW6,
                    &[14, 1, 1, 2, 3, 4, 5, 6]
                )
            ),
            ok
        );
        // RS with SLLA; NA for own address.
        let mut rs = vec![133, 0, 0, 0, 0, 0, 0, 0];
        rs.extend(slla(GW_MAC));
        assert_eq!(
            run(
                neighbour_discovery,
                &nd_frame(ll, "ff02::2".parse().unwrap(), 255, &rs)
            ),
            Some(Ok(HousekeepingKind::RouterSolicitation))
        );
        let mut na = vec![136, 0, 0, 0, 0x60, 0, 0, 0];
        na.extend_from_slice(&GW6.octets());
        na.extend([2, 1]);
        na.extend_from_slice(&GW_MAC);
        assert_eq!(
            run(neighbour_discovery, &nd_frame(GW6, router, 255, &na)),
            Some(Ok(HousekeepingKind::NeighbourAdvertisement))
        );
        // The attack of the issue: off-link destination, data after the options.
        let mut data = slla(GW_MAC);
        data.extend_from_slice(b"exfiltrated bytes here");
        for f in [
            ns(GW6, internet, router, &slla(GW_MAC)),
            ns(GW6, solicited, router, &data),
            ns(GW6, solicited, internet, &slla(GW_MAC)),
            ns(GW6, solicited, router, &slla(WS_MAC)),
            ns(NET6, solicited, router, &[]),
            nd_frame(GW6, solicited, 64, &ns_body(router, &[])),
            nd_frame(
                ll,
                "ff02::1".parse().unwrap(),
                255,
                &[134, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ),
        ] {
            assert!(
                matches!(run(neighbour_discovery, &f), Some(Err(_))),
                "{f:?}"
            );
        }
        // Reserved bits of an NS carry 4 bytes: not allowed.
        let mut res = ns_body(router, &[]);
        res[4] = 0x41;
        assert!(matches!(
            run(neighbour_discovery, &nd_frame(GW6, solicited, 255, &res)),
            Some(Err(_))
        ));
        // An echo request is not neighbour discovery at all.
        assert_eq!(
            run(
                neighbour_discovery,
                &nd_frame(GW6, router, 255, &icmp(128, 0, &[0; 8]))
            ),
            None
        );
    }

    fn mld2(src: Ipv6Addr, dst: Ipv6Addr, hop: u8, records: &[u8], n: u16) -> Vec<u8> {
        let mut payload = vec![58, 0, 5, 2, 0, 0, 1, 0];
        let mut m = vec![143, 0, 0, 0, 0, 0];
        m.extend_from_slice(&n.to_be_bytes());
        m.extend_from_slice(records);
        payload.extend_from_slice(&m);
        eth(
            GW_MAC,
            [0x33, 0x33, 0, 0, 0, 0x16],
            0x86dd,
            &ipv6(src, dst, 0, hop, &payload),
        )
    }

    fn record(group: Ipv6Addr) -> Vec<u8> {
        let mut r = vec![4, 0, 0, 0];
        r.extend_from_slice(&group.octets());
        r
    }

    #[test]
    fn mld_by_content() {
        let ll: Ipv6Addr = "fe80::2".parse().unwrap();
        let to: Ipv6Addr = "ff02::16".parse().unwrap();
        let g: Ipv6Addr = "ff02::1:ff00:2".parse().unwrap();
        let r = record(g);
        assert_eq!(
            run(mld, &mld2(ll, to, 1, &r, 1)),
            Some(Ok(HousekeepingKind::Mld))
        );
        assert_eq!(
            run(
                mld,
                &mld2(
                    Ipv6Addr::UNSPECIFIED,
                    to,
                    1,
                    &[r.clone(), r.clone()].concat(),
                    2
                )
            ),
            Some(Ok(HousekeepingKind::Mld))
        );
        let mut extra = r.clone();
        extra.extend_from_slice(b"data");
        let mut aux = r.clone();
        aux[1] = 1;
        for f in [
            mld2(ll, "2001:db8:99::1".parse().unwrap(), 1, &r, 1),
            mld2(ll, to, 64, &r, 1),
            mld2(ll, to, 1, &extra, 1),
            mld2(ll, to, 1, &aux, 1),
            mld2(ll, to, 1, &record("2001:db8::1".parse().unwrap()), 1),
            mld2(NET6, to, 1, &r, 1),
        ] {
            assert!(matches!(run(mld, &f), Some(Err(_))), "{f:?}");
        }
    }

    fn igmp_frame(dst: Ipv4Addr, ttl: u8, body: &[u8]) -> Vec<u8> {
        eth(
            GW_MAC,
            [1, 0, 0x5e, 0, 0, 0x16],
            0x0800,
            &ipv4(GW4, dst, 2, ttl, body),
        )
    }

    #[test]
    fn igmp_by_content() {
        let g = Ipv4Addr::new(239, 1, 2, 3);
        let v2 = [0x16, 0, 0, 0, 239, 1, 2, 3];
        assert_eq!(
            run(igmp, &igmp_frame(g, 1, &v2)),
            Some(Ok(HousekeepingKind::Igmp))
        );
        let v3 = [0x22, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0, 239, 1, 2, 3];
        assert_eq!(
            run(igmp, &igmp_frame(Ipv4Addr::new(224, 0, 0, 22), 1, &v3)),
            Some(Ok(HousekeepingKind::Igmp))
        );
        for f in [
            igmp_frame(NET4, 1, &v2),
            igmp_frame(g, 64, &v2),
            igmp_frame(g, 1, &[&v2[..], b"data"].concat()),
            igmp_frame(g, 1, &[0x11, 100, 0, 0, 0, 0, 0, 0]),
        ] {
            assert!(matches!(run(igmp, &f), Some(Err(_))), "{f:?}");
        }
    }

    #[test]
    fn dhcpv4_by_content() {
        let bcast = Ipv4Addr::BROADCAST;
        let frame = |src, dst, body: &[u8]| {
            eth(
                GW_MAC,
                [0xff; 6],
                0x0800,
                &ipv4(src, dst, 17, 64, &udp(68, 67, body)),
            )
        };
        let ok = Some(Ok(HousekeepingKind::Dhcpv4));
        assert_eq!(
            run(
                dhcpv4,
                &frame(Ipv4Addr::UNSPECIFIED, bcast, &dhcp4_discover(GW_MAC))
            ),
            ok
        );
        // Renewal from our address to the on-link server.
        assert_eq!(
            run(
                dhcpv4,
                &frame(GW4, Ipv4Addr::new(198, 51, 100, 1), &dhcp4_discover(GW_MAC))
            ),
            ok
        );
        // A hostname option is part of what a client sends.
        let mut named = dhcp4_discover(GW_MAC);
        let end = named.len() - 1;
        named.truncate(end);
        named.extend_from_slice(&[12, 7]);
        named.extend_from_slice(b"gateway");
        named.push(255);
        assert_eq!(
            run(dhcpv4, &frame(Ipv4Addr::UNSPECIFIED, bcast, &named)),
            ok
        );
        // The attack: to an internet address.
        assert!(matches!(
            run(dhcpv4, &frame(GW4, Ipv4Addr::new(203, 0, 113, 7), &named)),
            Some(Err(_))
        ));
        // Data after END, in sname, another machine's MAC, no message type, wrong ports.
        let mut after = dhcp4_discover(GW_MAC);
        after.extend_from_slice(b"tail");
        let mut sname = dhcp4_discover(GW_MAC);
        sname[50] = b'x';
        let mut notype = dhcp4_discover(GW_MAC);
        notype.truncate(240);
        notype.push(255);
        for body in [after, sname, dhcp4_discover(WS_MAC), notype] {
            assert!(matches!(
                run(dhcpv4, &frame(Ipv4Addr::UNSPECIFIED, bcast, &body)),
                Some(Err(_))
            ));
        }
        let server = eth(
            GW_MAC,
            [0xff; 6],
            0x0800,
            &ipv4(GW4, bcast, 17, 64, &udp(67, 68, &dhcp4_discover(GW_MAC))),
        );
        assert!(matches!(run(dhcpv4, &server), Some(Err(_))));
        assert_eq!(
            run(dhcpv4, &eth4(GW4, NET4, 17, &udp(5000, 53, b"q"))),
            None
        );
    }

    #[test]
    fn dhcpv6_by_content() {
        let ll: Ipv6Addr = "fe80::2".parse().unwrap();
        let all = dhcpv6::ALL_SERVERS;
        // Solicit with a client-id option (type 1, 4 bytes).
        let solicit = [1, 0xab, 0xcd, 0xef, 0, 1, 0, 4, 1, 2, 3, 4];
        let frame = |src, dst, body: &[u8]| {
            eth(
                GW_MAC,
                [0x33, 0x33, 0, 1, 0, 2],
                0x86dd,
                &ipv6(src, dst, 17, 1, &udp(546, 547, body)),
            )
        };
        assert_eq!(
            run(dhcpv6, &frame(ll, all, &solicit)),
            Some(Ok(HousekeepingKind::Dhcpv6))
        );
        for f in [
            frame(ll, "2001:db8:99::1".parse().unwrap(), &solicit),
            frame(GW6, all, &solicit),
            frame(ll, all, &[&solicit[..], b"x"].concat()),
            frame(ll, all, &[2, 0, 0, 0]),
        ] {
            assert!(matches!(run(dhcpv6, &f), Some(Err(_))), "{f:?}");
        }
    }
}
