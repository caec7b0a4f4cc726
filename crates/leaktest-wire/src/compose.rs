//! Probes of the evasion suites, composed header by header.
//!
//! The big suites (every port, every protocol) are built from templates in
//! [`crate::build`]. The evasion suites hold a few thousand probes of many
//! shapes (IP options, extension-header chains, forged sources, LAN
//! destinations, tunnels, multi-fragment datagrams), so they are composed
//! here from their parts into a small `Vec` each: clarity over speed.
//!
//! What each probe carries:
//! * the payload marker of its own `seq` after its transport header (a
//!   tunnel: in the inner packet; a fragment: in the regions it holds);
//! * IPv4 identification / IPv6 flow label from its header tag (fragments:
//!   from the tag of their datagram's head, [`FragKind::datagram_head`]);
//! * TCP SYN: source port `tag.tcp_src_port(7)`, sequence `tag.tcp_seq()`,
//!   window 64240; UDP: source port `tag.src_port()`; echo: id/seq
//!   `tag.icmp_id_seq()`;
//! * `spoof`: after the marker, the claimed source ([`source_claim`]).
//!
//! Every checksum is valid for the packet as sent (the IPv4 header, TCP,
//! UDP, ICMP, ICMPv6 with the pseudo-header of the final destination), and
//! for a fragmented datagram, for the datagram once reassembled.

use crate::build::{fold, frag_ident, sum, Endpoints, Neighbourhood, L2, PROBE_TTL, TCP_WINDOW};
use crate::catalogue::kinds::{TEREDO_PORT, VXLAN_PORT};
use crate::catalogue::{
    ExtChain, ExtHeader, Family, FragKind, IpOpt, LanDest, ProbeKind, ProbeSpec, SpoofSource,
    Suite, Transport, TunnelKind, FRAG_DECOY_PORT, FRAG_TCP_LEN, FRAG_TCP_PORT, SEQ_FAMILY_BIT,
};
use crate::hdr::{ethernet, ipv4, ipv6, tcp, udp};
use crate::marker::{HeaderTag, RunKey, MARKER_LEN};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where the first marker region of the frag suite's TCP datagram starts.
pub const FRAG_REGION0: usize = 24;
/// Where the second marker region of the frag suite's TCP datagram starts.
pub const FRAG_REGION1: usize = 72;
/// Where the tail fragments of the frag suite's TCP datagram start.
pub const FRAG_TAIL: usize = 56;
/// Length of the late-header pair's Destination Options header (whose
/// option holds the head's marker).
pub const LATE_DST_OPTS_LEN: usize = 32;
/// Option type of the Destination Options option that carries the
/// late-header head's marker: an unassigned type whose top bits say "skip
/// if unknown" (RFC 8200 section 4.2), so a host that parses the options
/// keeps the packet (a PadN of 28 marker bytes would not be valid padding).
pub const MARKER_OPTION: u8 = 0x1e;

/// First source port of the composed TCP SYNs ([`composed_src_port`]).
pub const COMPOSED_SRC_PORT: u16 = 23000;

/// VXLAN network identifier of the `tunnel` suite's VXLAN probe.
pub const VXLAN_VNI: u32 = 0x4c6b54;

/// Length of the claimed-source block after a `spoof` probe's marker: the
/// address as 16 bytes (IPv4 as IPv4-mapped), then 8 bytes of MAC.
pub const SOURCE_CLAIM_LEN: usize = 24;

/// The domain a `spoof` UDP probe asks for, after its marker label:
/// `.invalid` never resolves (RFC 6761 section 6.4).
pub const DNS_QUESTION_SUFFIX: [&str; 2] = ["leaktest", "invalid"];

/// The question type of a `spoof` UDP probe's query: TXT (16). A resolver
/// that resolves only address lookups (tor's DNSPort: A, AAAA, PTR)
/// answers it at once without data (`evdns_server_callback` in tor's
/// dnsserv.c), the id and question copied; any other answers it too.
pub const DNS_QUESTION_TYPE: u16 = 16;

/// Length of a `spoof` UDP probe's DNS query: header, a 52-character
/// label (the marker in hex), the suffix, type and class.
pub const DNS_QUERY_LEN: usize = 12 + 1 + 2 * MARKER_LEN + 1 + 8 + 1 + 7 + 1 + 4;

/// The DNS query (RFC 1035 section 4.1) a `spoof` UDP probe carries before
/// its marker, so that a resolver the gateway redirects it to answers in a
/// way the watcher can name: id [`HeaderTag::dns_id`], recursion desired,
/// one question `<marker in hex>.leaktest.invalid` of type TXT, class IN.
/// An answer copies the id and the question (RFC 1035 section 4.1.1), and
/// with the question the marker ([`read_dns_answer`]).
pub fn dns_query(tag: HeaderTag, marker: &[u8; MARKER_LEN]) -> [u8; DNS_QUERY_LEN] {
    let mut q = [0u8; DNS_QUERY_LEN];
    q[0..2].copy_from_slice(&tag.dns_id().to_be_bytes());
    q[2] = 0x01; // RD
    q[5] = 1; // QDCOUNT
    let mut at = 12;
    q[at] = (2 * MARKER_LEN) as u8;
    at += 1;
    hex::encode_to_slice(marker, &mut q[at..at + 2 * MARKER_LEN]).expect("sized");
    at += 2 * MARKER_LEN;
    for label in DNS_QUESTION_SUFFIX {
        q[at] = label.len() as u8;
        q[at + 1..at + 1 + label.len()].copy_from_slice(label.as_bytes());
        at += 1 + label.len();
    }
    at += 1; // the root label
    q[at..at + 2].copy_from_slice(&DNS_QUESTION_TYPE.to_be_bytes());
    q[at + 3] = 1; // class IN
    q
}

/// Reads a DNS answer (QR set) whose first question is a `spoof` probe's:
/// its id and the marker from the question's first label (hex, either
/// case: a resolver may change letter case, RFC 4343). Format only: the
/// caller verifies the marker. `None` for anything else.
pub fn read_dns_answer(msg: &[u8]) -> Option<(u16, [u8; MARKER_LEN])> {
    let h = msg.get(..12)?;
    if h[2] & 0x80 == 0 || u16::from_be_bytes([h[4], h[5]]) == 0 {
        return None;
    }
    let len = *msg.get(12)? as usize;
    if len != 2 * MARKER_LEN {
        return None;
    }
    let mut m = [0u8; MARKER_LEN];
    hex::decode_to_slice(msg.get(13..13 + len)?, &mut m).ok()?;
    Some((u16::from_be_bytes([h[0], h[1]]), m))
}

/// Writes the composed probe `spec` into `buf`; returns its length, or 0 if
/// it cannot be built (an address it needs is unknown, `buf` too short).
pub(crate) fn write(
    key: &RunKey,
    ends: &Endpoints,
    hood: &Neighbourhood,
    l2: Option<L2>,
    spec: &ProbeSpec,
    buf: &mut [u8],
) -> usize {
    let Some((dst, packet)) = compose(key, ends, hood, spec) else {
        return 0;
    };
    let mut frame = Vec::with_capacity(ethernet::HEADER_LEN + packet.len());
    if let Some(l2) = l2 {
        frame.extend_from_slice(&dst_mac(dst, l2.dst));
        frame.extend_from_slice(&l2.src);
        let et = match dst {
            IpAddr::V4(_) => ethernet::ETHERTYPE_IPV4,
            IpAddr::V6(_) => ethernet::ETHERTYPE_IPV6,
        };
        frame.extend_from_slice(&et.to_be_bytes());
    }
    frame.extend_from_slice(&packet);
    match buf.get_mut(..frame.len()) {
        Some(out) => {
            out.copy_from_slice(&frame);
            frame.len()
        }
        None => 0,
    }
}

/// The Ethernet destination of a packet to `dst`: the IP multicast mapping
/// (RFC 1112 section 6.4, RFC 2464 section 7), broadcast for
/// 255.255.255.255, else `unicast` (the next hop's).
pub fn dst_mac(dst: IpAddr, unicast: [u8; 6]) -> [u8; 6] {
    match dst {
        IpAddr::V4(a) if a == Ipv4Addr::BROADCAST => ethernet::BROADCAST,
        IpAddr::V4(a) if a.is_multicast() => {
            let o = a.octets();
            [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
        }
        IpAddr::V6(a) if a.is_multicast() => {
            let o = a.octets();
            [0x33, 0x33, o[12], o[13], o[14], o[15]]
        }
        _ => unicast,
    }
}

/// The source port of a composed probe that carries a TCP SYN (the
/// `ipopt`, `ext6`, `lan` and `spoof` suites' TCP transport, the frag
/// suite's TCP datagrams), else `None`: [`COMPOSED_SRC_PORT`] plus the
/// probe's index from the `ipopt` suite's base (0..832), the frag suite's
/// datagrams after them (by the kind that heads the datagram). Distinct for
/// every such probe of a family, so no two share a 4-tuple (the `tcp` suite
/// uses ports >= 32768, the `flags` suite 20000..22816), and a reflection or
/// header-only fragment names its probe by port.
pub fn composed_src_port(spec: &ProbeSpec) -> Option<u16> {
    let index = spec.seq() & (SEQ_FAMILY_BIT - 1);
    match spec.kind {
        ProbeKind::Frag { frag } if frag.is_tcp() => {
            let head = ProbeSpec {
                family: spec.family,
                kind: ProbeKind::Frag {
                    frag: frag.datagram_head(),
                },
            };
            let k = (head.seq() & (SEQ_FAMILY_BIT - 1)) - Suite::Frag.base();
            Some(COMPOSED_SRC_PORT + 900 + k as u16)
        }
        _ if spec.transport() == Some(Transport::TcpSyn) => {
            Some(COMPOSED_SRC_PORT + (index - Suite::Ipopt.base()) as u16)
        }
        _ => None,
    }
}

/// The forged address of a `spoof` source that does not depend on the
/// run's context, or `None`.
pub fn fixed_spoof_address(source: SpoofSource, family: Family) -> Option<IpAddr> {
    match source {
        SpoofSource::SameSubnet
        | SpoofSource::GatewayInternal
        | SpoofSource::GatewayExternal
        | SpoofSource::V4Mapped => None,
        _ => spoof_address(
            source,
            family,
            &Endpoints::default(),
            &Neighbourhood::default(),
        ),
    }
}

/// The claimed-source block of a `spoof` probe: `addr` (IPv4 mapped into
/// 16 bytes) and a 64-bit MAC over (`seq`, `addr`) under the run key.
pub fn source_claim(key: &RunKey, seq: u32, addr: IpAddr) -> [u8; SOURCE_CLAIM_LEN] {
    let a = match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    };
    let mut out = [0u8; SOURCE_CLAIM_LEN];
    out[..16].copy_from_slice(&a);
    out[16..].copy_from_slice(&key.claim_tag(seq, &a).to_be_bytes());
    out
}

/// Reads and verifies a claimed-source block (the bytes right after a
/// verified marker of probe `seq`); `None` if absent or forged.
pub fn read_source_claim(key: &RunKey, seq: u32, bytes: &[u8]) -> Option<IpAddr> {
    let b = bytes.get(..SOURCE_CLAIM_LEN)?;
    let a: [u8; 16] = b[..16].try_into().ok()?;
    let tag = u64::from_be_bytes(b[16..].try_into().ok()?);
    if tag != key.claim_tag(seq, &a) {
        return None;
    }
    let v6 = Ipv6Addr::from(a);
    Some(match v6.to_ipv4_mapped() {
        Some(v4) if seq & SEQ_FAMILY_BIT == 0 => IpAddr::V4(v4),
        _ => IpAddr::V6(v6),
    })
}

/// The address of a `lan` destination for a sender at `src`, or `None` when
/// it needs what is not known.
pub fn lan_address(
    dest: LanDest,
    family: Family,
    src: IpAddr,
    hood: &Neighbourhood,
) -> Option<IpAddr> {
    match (family, dest) {
        (_, LanDest::UplinkRouter) => match family {
            Family::V4 => hood.router4.map(IpAddr::V4),
            Family::V6 => hood.router6.map(IpAddr::V6),
        },
        (_, LanDest::UplinkHost) => match family {
            Family::V4 => hood
                .uplink4
                .map(|(a, p)| IpAddr::V4(other_host4(a, Some(p)))),
            Family::V6 => hood
                .uplink6
                .map(|(a, p)| IpAddr::V6(other_host6(a, Some(p)))),
        },
        (Family::V4, LanDest::SubnetBroadcast) => {
            let (IpAddr::V4(s), Some(p)) = (src, hood.prefix4) else {
                return None;
            };
            let mask = u32::MAX.checked_shl(32 - p.min(32) as u32).unwrap_or(0);
            (p < 31).then(|| IpAddr::V4(Ipv4Addr::from(u32::from(s) | !mask)))
        }
        (Family::V6, LanDest::SubnetBroadcast) => {
            let (IpAddr::V6(s), Some(p)) = (src, hood.prefix6) else {
                return None;
            };
            let mask = u128::MAX.checked_shl(128 - p.min(128) as u32).unwrap_or(0);
            (p < 127).then(|| IpAddr::V6(Ipv6Addr::from(u128::from(s) & mask)))
        }
        (Family::V4, d) => d.fixed_v4().map(IpAddr::V4),
        (Family::V6, d) => d.fixed_v6().map(IpAddr::V6),
    }
}

/// The forged source of a `spoof` probe from a sender at `src`, or `None`
/// when it needs what is not known.
pub fn spoof_address(
    source: SpoofSource,
    family: Family,
    ends: &Endpoints,
    hood: &Neighbourhood,
) -> Option<IpAddr> {
    Some(match family {
        Family::V4 => IpAddr::V4(match source {
            SpoofSource::SameSubnet => other_host4(ends.src4?, hood.prefix4),
            SpoofSource::OtherPrivate => Ipv4Addr::new(172, 16, 9, 9),
            SpoofSource::Documentation => Ipv4Addr::new(198, 51, 100, 9),
            SpoofSource::GatewayInternal => hood.gateway4?,
            SpoofSource::GatewayExternal => hood.uplink4?.0,
            SpoofSource::LinkLocal => Ipv4Addr::new(169, 254, 9, 9),
            SpoofSource::Unspecified => Ipv4Addr::UNSPECIFIED,
            SpoofSource::Multicast => Ipv4Addr::new(224, 0, 0, 9),
            SpoofSource::Loopback => Ipv4Addr::new(127, 0, 0, 9),
            SpoofSource::V4Mapped => return None,
        }),
        Family::V6 => IpAddr::V6(match source {
            SpoofSource::SameSubnet => other_host6(ends.src6?, hood.prefix6),
            SpoofSource::OtherPrivate => Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 9),
            SpoofSource::Documentation => Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 9),
            SpoofSource::GatewayInternal => hood.gateway6?,
            SpoofSource::GatewayExternal => hood.uplink6?.0,
            SpoofSource::LinkLocal => Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 9),
            SpoofSource::Unspecified => Ipv6Addr::UNSPECIFIED,
            SpoofSource::Multicast => Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 9),
            SpoofSource::Loopback => Ipv6Addr::LOCALHOST,
            SpoofSource::V4Mapped => ends
                .src4
                .unwrap_or(Ipv4Addr::new(198, 51, 100, 9))
                .to_ipv6_mapped(),
        }),
    })
}

/// Another host of `a`'s subnet of prefix length `prefix`: `a` with bit 7
/// of its last byte flipped when that stays a host of the subnet (any
/// prefix up to /24, or unknown), else the subnet's first host (its second
/// if that is `a`).
pub fn other_host4(a: Ipv4Addr, prefix: Option<u8>) -> Ipv4Addr {
    let x = u32::from(a);
    let p = u32::from(prefix.unwrap_or(24).min(32));
    let host_bits = 32 - p;
    let mask = if host_bits >= 32 {
        0
    } else {
        u32::MAX << host_bits
    };
    let (net, bcast) = (x & mask, x | !mask);
    let flip = x ^ 0x80;
    if host_bits > 7 && flip != net && flip != bcast {
        return Ipv4Addr::from(flip);
    }
    let first = net.wrapping_add(1);
    Ipv4Addr::from(if first == x {
        first.wrapping_add(1)
    } else {
        first
    })
}

/// [`other_host4`] for IPv6 (the flip stays inside any prefix up to /120;
/// IPv6 has no broadcast, the subnet-router anycast is avoided).
pub fn other_host6(a: Ipv6Addr, prefix: Option<u8>) -> Ipv6Addr {
    let x = u128::from(a);
    let p = u32::from(prefix.unwrap_or(64).min(128));
    let host_bits = 128 - p;
    let mask = if host_bits >= 128 {
        0
    } else {
        u128::MAX << host_bits
    };
    let net = x & mask;
    let flip = x ^ 0x80;
    if host_bits > 7 && flip != net {
        return Ipv6Addr::from(flip);
    }
    let first = net.wrapping_add(1);
    Ipv6Addr::from(if first == x {
        first.wrapping_add(1)
    } else {
        first
    })
}

fn pair(ends: &Endpoints, family: Family) -> Option<(IpAddr, IpAddr)> {
    match family {
        Family::V4 => Some((IpAddr::V4(ends.src4?), IpAddr::V4(ends.dst4?))),
        Family::V6 => Some((IpAddr::V6(ends.src6?), IpAddr::V6(ends.dst6?))),
    }
}

/// The IP packet of `spec` and its destination.
fn compose(
    key: &RunKey,
    ends: &Endpoints,
    hood: &Neighbourhood,
    spec: &ProbeSpec,
) -> Option<(IpAddr, Vec<u8>)> {
    let family = spec.family;
    let (src, dst) = pair(ends, family)?;
    let seq = spec.seq();
    let tag = key.header_tag(seq);
    let marker = key.payload_marker(seq);
    let sport = composed_src_port(spec).unwrap_or(0);
    match spec.kind {
        ProbeKind::IpOpt { opt, transport } => {
            let (proto, l4) = transport_message(
                family,
                transport,
                None,
                sport,
                src,
                dst,
                tag,
                &marker,
                &[],
                &[],
            );
            let options = ipv4_options(opt, dst);
            Some((
                dst,
                ip_packet(src, dst, opt.ttl(), tag, proto, &options, &[], 0, &l4),
            ))
        }
        ProbeKind::Ext { chain, transport } => {
            let (proto, l4) = transport_message(
                family,
                transport,
                None,
                sport,
                src,
                dst,
                tag,
                &marker,
                &[],
                &[],
            );
            let (first, ext) = ext_chain(chain.headers(), proto, dst, tag);
            Some((
                dst,
                ip_packet(src, dst, PROBE_TTL, tag, first, &[], &ext, 0, &l4),
            ))
        }
        ProbeKind::Lan { dest, transport } => {
            let to = lan_address(dest, family, src, hood)?;
            let port = (transport == Transport::Udp).then(|| dest.udp_port());
            let (proto, l4) = transport_message(
                family,
                transport,
                port,
                sport,
                src,
                to,
                tag,
                &marker,
                &[],
                &[],
            );
            Some((
                to,
                ip_packet(src, to, PROBE_TTL, tag, proto, &[], &[], 0, &l4),
            ))
        }
        ProbeKind::Spoof { source, transport } => {
            let from = spoof_address(source, family, ends, hood)?;
            let claim = source_claim(key, seq, from);
            // UDP (to 53) is a DNS query whose question holds the marker, so
            // a resolver's answer to the forged source names the probe; the
            // marker itself and the claim follow the query.
            let prefix = match transport {
                Transport::Udp => dns_query(tag, &marker).to_vec(),
                _ => Vec::new(),
            };
            let (proto, l4) = transport_message(
                family, transport, None, sport, from, dst, tag, &marker, &prefix, &claim,
            );
            Some((
                dst,
                ip_packet(from, dst, PROBE_TTL, tag, proto, &[], &[], 0, &l4),
            ))
        }
        ProbeKind::Tunnel { tunnel } => {
            let inner_family = tunnel.inner_family(family);
            let (isrc, idst) = pair(ends, inner_family)?;
            let (iproto, il4) = transport_message(
                inner_family,
                Transport::Udp,
                None,
                0,
                isrc,
                idst,
                tag,
                &marker,
                &[],
                &[],
            );
            let inner = ip_packet(isrc, idst, PROBE_TTL, tag, iproto, &[], &[], 0, &il4);
            let inner_et = match inner_family {
                Family::V4 => ethernet::ETHERTYPE_IPV4,
                Family::V6 => ethernet::ETHERTYPE_IPV6,
            };
            let (proto, payload) = match tunnel {
                TunnelKind::GreIpv4 | TunnelKind::GreIpv6 => {
                    let mut p = vec![0, 0];
                    p.extend_from_slice(&inner_et.to_be_bytes());
                    p.extend_from_slice(&inner);
                    (47, p)
                }
                TunnelKind::Ipv4InIp => (4, inner),
                TunnelKind::Ipv6InIp => (41, inner),
                TunnelKind::Teredo => (
                    17,
                    udp_datagram(src, dst, tag.src_port(), TEREDO_PORT, &inner),
                ),
                TunnelKind::Vxlan => {
                    let mut p = vec![0x08, 0, 0, 0];
                    p.extend_from_slice(&(VXLAN_VNI << 8).to_be_bytes());
                    p.extend_from_slice(&[0x02, 0x00, 0x5e, 0x4c, 0x6b, 0x02]);
                    p.extend_from_slice(&[0x02, 0x00, 0x5e, 0x4c, 0x6b, 0x01]);
                    p.extend_from_slice(&inner_et.to_be_bytes());
                    p.extend_from_slice(&inner);
                    (17, udp_datagram(src, dst, tag.src_port(), VXLAN_PORT, &p))
                }
            };
            Some((
                dst,
                ip_packet(src, dst, PROBE_TTL, tag, proto, &[], &[], 0, &payload),
            ))
        }
        ProbeKind::Frag { frag } if frag.is_tcp() => {
            Some((dst, fragment(key, spec, frag, src, dst)?))
        }
        _ => None,
    }
}

/// One fragment of the frag suite's TCP datagram (see [`FragKind`]).
fn fragment(
    key: &RunKey,
    spec: &ProbeSpec,
    frag: FragKind,
    src: IpAddr,
    dst: IpAddr,
) -> Option<Vec<u8>> {
    let family = spec.family;
    let seq_of = |k: FragKind| {
        ProbeSpec {
            family,
            kind: ProbeKind::Frag { frag: k },
        }
        .seq()
    };
    let head = seq_of(frag.datagram_head());
    let gtag = key.header_tag(head);
    let own = key.payload_marker(spec.seq());
    // Which part's marker fills each region of the datagram as the
    // receiver reassembles it (this part's own where it holds the region).
    let carriers: [FragKind; 2] = match frag {
        FragKind::TinyHead | FragKind::TinyTail => [FragKind::TinyTail; 2],
        FragKind::OverlapHead => [FragKind::OverlapHead, FragKind::OverlapTail],
        FragKind::OverlapRewrite | FragKind::OverlapTail => {
            [FragKind::OverlapRewrite, FragKind::OverlapTail]
        }
        FragKind::ReorderedTail | FragKind::ReorderedHead => {
            [FragKind::ReorderedHead, FragKind::ReorderedTail]
        }
        FragKind::LateHeaderHead | FragKind::LateHeaderTail => [FragKind::LateHeaderTail; 2],
        FragKind::First | FragKind::NonFirst => return None,
    };
    let (flags, port) = if frag == FragKind::OverlapHead {
        (crate::catalogue::TcpFlags::ACK, FRAG_DECOY_PORT)
    } else {
        (crate::catalogue::TcpFlags::SYN, FRAG_TCP_PORT)
    };
    let late = matches!(frag, FragKind::LateHeaderHead | FragKind::LateHeaderTail);
    if late && family == Family::V4 {
        return None;
    }
    // The TCP datagram: header, pad, region 0 at 24, pad, region 1 at 72.
    // The tail fragments start at 56 with 16 zero bytes: a filter that
    // reads a non-first fragment as if it began with a TCP header (measured:
    // Linux 6.18's nftables on IPv4 fragments) sees no flags, whatever the
    // run key, so what it does with them is the same for every run.
    let tcp_len = if late { FRAG_TAIL } else { FRAG_TCP_LEN };
    let mut t = vec![0u8; tcp_len];
    let sport = composed_src_port(spec).unwrap_or(0);
    t[tcp::field::SRC_PORT].copy_from_slice(&sport.to_be_bytes());
    t[tcp::field::DST_PORT].copy_from_slice(&port.to_be_bytes());
    t[tcp::field::SEQ].copy_from_slice(&gtag.tcp_seq().to_be_bytes());
    if flags == crate::catalogue::TcpFlags::ACK {
        t[tcp::field::ACK].copy_from_slice(&crate::build::tcp_ack(gtag).to_be_bytes());
    }
    t[tcp::field::DATA_OFFSET] = ((tcp::HEADER_LEN / 4) as u8) << 4;
    t[tcp::field::FLAGS] = flags;
    t[tcp::field::WINDOW].copy_from_slice(&TCP_WINDOW.to_be_bytes());
    let region = |k: FragKind| {
        if k == frag {
            own
        } else {
            key.payload_marker(seq_of(k))
        }
    };
    t[FRAG_REGION0..FRAG_REGION0 + MARKER_LEN].copy_from_slice(&region(carriers[0]));
    if !late {
        t[FRAG_REGION1..FRAG_REGION1 + MARKER_LEN].copy_from_slice(&region(carriers[1]));
    }
    let c = fold(sum(&t, pseudo(src, dst, 6, tcp_len as u32)));
    t[tcp::field::CHECKSUM].copy_from_slice(&c.to_be_bytes());

    // The fragmentable part: for the late-header pair, a Destination Options
    // header whose PadN option holds the head's marker, then the TCP datagram.
    let mut data = Vec::with_capacity(LATE_DST_OPTS_LEN + tcp_len);
    if late {
        let mut d = [0u8; LATE_DST_OPTS_LEN];
        d[ipv6::ext::NEXT_HEADER] = 6;
        d[ipv6::ext::LENGTH] = (LATE_DST_OPTS_LEN / 8 - 1) as u8;
        d[2] = MARKER_OPTION;
        d[3] = (LATE_DST_OPTS_LEN - 4) as u8;
        d[4..4 + MARKER_LEN].copy_from_slice(&region(FragKind::LateHeaderHead));
        data.extend_from_slice(&d);
    }
    data.extend_from_slice(&t);
    let (range, more) = match frag {
        FragKind::TinyHead => (0..8, true),
        FragKind::TinyTail => (8..FRAG_TCP_LEN, false),
        FragKind::OverlapHead | FragKind::OverlapRewrite | FragKind::ReorderedHead => {
            (0..FRAG_TAIL, true)
        }
        FragKind::OverlapTail | FragKind::ReorderedTail => (FRAG_TAIL..FRAG_TCP_LEN, false),
        FragKind::LateHeaderHead => (0..LATE_DST_OPTS_LEN, true),
        FragKind::LateHeaderTail => (LATE_DST_OPTS_LEN..LATE_DST_OPTS_LEN + FRAG_TAIL, false),
        FragKind::First | FragKind::NonFirst => return None,
    };
    let offset = (range.start / 8) as u16;
    let part = &data[range];
    Some(match family {
        Family::V4 => {
            let ff = offset | if more { ipv4::FLAG_MF } else { 0 };
            ip_packet(src, dst, PROBE_TTL, gtag, 6, &[], &[], ff, part)
        }
        Family::V6 => {
            let mut fh = [0u8; ipv6::frag::LEN];
            fh[ipv6::frag::NEXT_HEADER] = if late { 60 } else { 6 };
            let om = (offset << 3) | if more { ipv6::frag::FLAG_M } else { 0 };
            fh[ipv6::frag::OFFSET_M].copy_from_slice(&om.to_be_bytes());
            fh[ipv6::frag::IDENT].copy_from_slice(&frag_ident(gtag).to_be_bytes());
            ip_packet(src, dst, PROBE_TTL, gtag, 44, &[], &fh, 0, part)
        }
    })
}

/// The pseudo-header sum of RFC 9293 section 3.1 / RFC 8200 section 8.1.
fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: u32) -> u64 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            sum(&s.octets(), 0) + sum(&d.octets(), 0) + proto as u64 + len as u64
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            sum(&s.octets(), 0) + sum(&d.octets(), 0) + proto as u64 + len as u64
        }
        _ => 0,
    }
}

/// A transport message with `prefix`, the marker and `extra` as payload:
/// (protocol, bytes).
#[allow(clippy::too_many_arguments)]
fn transport_message(
    family: Family,
    transport: Transport,
    udp_port: Option<u16>,
    tcp_sport: u16,
    src: IpAddr,
    dst: IpAddr,
    tag: HeaderTag,
    marker: &[u8; MARKER_LEN],
    prefix: &[u8],
    extra: &[u8],
) -> (u8, Vec<u8>) {
    let mut payload = prefix.to_vec();
    payload.extend_from_slice(marker);
    payload.extend_from_slice(extra);
    match transport {
        Transport::TcpSyn => {
            let mut t = vec![0u8; tcp::HEADER_LEN];
            t[tcp::field::SRC_PORT].copy_from_slice(&tcp_sport.to_be_bytes());
            t[tcp::field::DST_PORT].copy_from_slice(&Transport::TCP_PORT.to_be_bytes());
            t[tcp::field::SEQ].copy_from_slice(&tag.tcp_seq().to_be_bytes());
            t[tcp::field::DATA_OFFSET] = ((tcp::HEADER_LEN / 4) as u8) << 4;
            t[tcp::field::FLAGS] = crate::catalogue::TcpFlags::SYN;
            t[tcp::field::WINDOW].copy_from_slice(&TCP_WINDOW.to_be_bytes());
            t.extend_from_slice(&payload);
            let c = fold(sum(&t, pseudo(src, dst, 6, t.len() as u32)));
            t[tcp::field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
            (6, t)
        }
        Transport::Udp => (
            17,
            udp_datagram(
                src,
                dst,
                tag.src_port(),
                udp_port.unwrap_or(Transport::UDP_PORT),
                &payload,
            ),
        ),
        Transport::Echo => {
            let (ty, proto) = match family {
                Family::V4 => (8, 1),
                Family::V6 => (128, 58),
            };
            let mut m = vec![ty, 0, 0, 0];
            let (id, sq) = tag.icmp_id_seq();
            m.extend_from_slice(&id.to_be_bytes());
            m.extend_from_slice(&sq.to_be_bytes());
            m.extend_from_slice(&payload);
            let acc = match family {
                Family::V4 => 0,
                Family::V6 => pseudo(src, dst, 58, m.len() as u32),
            };
            let c = fold(sum(&m, acc));
            m[2..4].copy_from_slice(&c.to_be_bytes());
            (proto, m)
        }
    }
}

fn udp_datagram(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = udp::HEADER_LEN + payload.len();
    let mut u = vec![0u8; udp::HEADER_LEN];
    u[udp::field::SRC_PORT].copy_from_slice(&sport.to_be_bytes());
    u[udp::field::DST_PORT].copy_from_slice(&dport.to_be_bytes());
    u[udp::field::LENGTH].copy_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(payload);
    let c = fold(sum(&u, pseudo(src, dst, 17, len as u32)));
    let c = if c == 0 { 0xffff } else { c };
    u[udp::field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    u
}

/// IPv4 options of an `ipopt` variant, padded with End of Option List to a
/// multiple of 4 bytes (RFC 791 section 3.1). Empty for the TTL variants.
fn ipv4_options(opt: IpOpt, dst: IpAddr) -> Vec<u8> {
    let target = match dst {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => return Vec::new(),
    };
    let mut o = match opt {
        // Type 7, length 39 (nine addresses), pointer 4 (the first slot).
        IpOpt::RecordRoute => {
            let mut v = vec![7, 39, 4];
            v.resize(39, 0);
            v
        }
        // Type 68, length 20 (four timestamps), pointer 5, flags 0
        // (timestamps only).
        IpOpt::Timestamp => {
            let mut v = vec![68, 20, 5, 0];
            v.resize(20, 0);
            v
        }
        // Type 131 / 137, length 7, pointer 4, the route: the target.
        IpOpt::LooseSourceRoute | IpOpt::StrictSourceRoute => {
            let t = if opt == IpOpt::LooseSourceRoute {
                131
            } else {
                137
            };
            let mut v = vec![t, 7, 4];
            v.extend_from_slice(&target);
            v
        }
        // RFC 2113: type 148, length 4, value 0.
        IpOpt::RouterAlert => vec![ipv4::OPTION_ROUTER_ALERT, 4, 0, 0],
        IpOpt::Ttl1 | IpOpt::Ttl2 | IpOpt::Ttl255 => Vec::new(),
    };
    while o.len() % 4 != 0 {
        o.push(ipv4::OPTION_END);
    }
    o
}

/// The bytes of an extension-header chain ending in `last` (the transport's
/// protocol) and the number that announces its first header.
fn ext_chain(headers: &[ExtHeader], last: u8, target: IpAddr, tag: HeaderTag) -> (u8, Vec<u8>) {
    let mut out = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        let next = headers.get(i + 1).map_or(last, |n| n.number());
        let start = out.len();
        out.resize(start + h.len(), 0);
        let b = &mut out[start..];
        match *h {
            ExtHeader::HopByHop | ExtHeader::DestinationOptions | ExtHeader::Unknown => {
                b[0] = next;
                b[1] = 0;
                if *h != ExtHeader::Unknown {
                    // PadN of 4 bytes fills the 8.
                    b[2] = ipv6::OPTION_PADN;
                    b[3] = 4;
                }
            }
            ExtHeader::Routing(rt) => {
                b[0] = next;
                b[1] = 2; // (24 / 8) - 1
                b[2] = rt;
                b[3] = 0; // segments left: the target is the last hop
                if let IpAddr::V6(t) = target {
                    b[8..24].copy_from_slice(&t.octets());
                }
            }
            ExtHeader::AtomicFragment => {
                b[0] = next;
                b[4..8].copy_from_slice(&frag_ident(tag).to_be_bytes());
            }
            ExtHeader::Esp => {
                // SPI (nonzero, RFC 4303 section 2.1), sequence number 1; the
                // transport follows in the clear.
                b[0..4].copy_from_slice(&0x4c6b_5401u32.to_be_bytes());
                b[4..8].copy_from_slice(&1u32.to_be_bytes());
            }
            ExtHeader::Ah => {
                b[0] = next;
                b[1] = 4; // (24 / 4) - 2
                b[4..8].copy_from_slice(&0x4c6b_5402u32.to_be_bytes());
                b[8..12].copy_from_slice(&1u32.to_be_bytes());
            }
        }
        if *h == ExtHeader::Esp {
            break; // nothing after ESP is a header
        }
    }
    (headers.first().map_or(last, |h| h.number()), out)
}

/// An IP packet. IPv4: `options` in the header, `frag` the flags/offset
/// field, `ext` (an IPsec header) before `payload`. IPv6: `ext` are the
/// extension headers after the fixed header, announced by `proto`.
#[allow(clippy::too_many_arguments)]
fn ip_packet(
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    tag: HeaderTag,
    proto: u8,
    options: &[u8],
    ext: &[u8],
    frag: u16,
    payload: &[u8],
) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let hl = ipv4::HEADER_LEN + options.len();
            let total = hl + ext.len() + payload.len();
            let mut p = vec![0u8; hl];
            p[ipv4::field::VER_IHL] = 0x40 | (hl / 4) as u8;
            p[ipv4::field::LENGTH].copy_from_slice(&(total as u16).to_be_bytes());
            p[ipv4::field::IDENT].copy_from_slice(&tag.ipv4_id().to_be_bytes());
            p[ipv4::field::FLAGS_FRAG].copy_from_slice(&frag.to_be_bytes());
            p[ipv4::field::TTL] = ttl;
            p[ipv4::field::PROTOCOL] = proto;
            p[ipv4::field::SRC].copy_from_slice(&s.octets());
            p[ipv4::field::DST].copy_from_slice(&d.octets());
            p[ipv4::HEADER_LEN..].copy_from_slice(options);
            let c = fold(sum(&p, 0));
            p[ipv4::field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
            p.extend_from_slice(ext);
            p.extend_from_slice(payload);
            p
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut p = vec![0u8; ipv6::HEADER_LEN];
            let fl = tag.flow_label();
            p[0] = 0x60;
            p[1] = ((fl >> 16) & 0x0f) as u8;
            p[2] = (fl >> 8) as u8;
            p[3] = fl as u8;
            p[ipv6::field::PAYLOAD_LEN]
                .copy_from_slice(&((ext.len() + payload.len()) as u16).to_be_bytes());
            p[ipv6::field::NEXT_HEADER] = proto;
            p[ipv6::field::HOP_LIMIT] = ttl;
            p[ipv6::field::SRC].copy_from_slice(&s.octets());
            p[ipv6::field::DST].copy_from_slice(&d.octets());
            p.extend_from_slice(ext);
            p.extend_from_slice(payload);
            p
        }
        _ => Vec::new(),
    }
}

/// The announcing number of an `ext6` chain's first header (for tests and
/// reports).
pub fn chain_first_header(chain: ExtChain) -> u8 {
    chain.headers().first().map_or(0, |h| h.number())
}

#[cfg(test)]
pub(crate) mod tests;
