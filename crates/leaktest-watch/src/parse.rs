//! A small, allocation-free parser of captured frames, made for classification.
//!
//! It reads exactly what the classifier needs: the Ethernet addresses and
//! EtherType (through VLAN tags), the ARP sender, the IPv4/IPv6 addresses, TTL
//! or hop limit, fragment fields, the upper-layer protocol after IPv6
//! extension headers, ports, TCP flags, ICMP type, and the L4 payload (for the
//! DHCP checks). It never panics on any input: every read is bounds-checked
//! and a short or odd frame simply leaves fields unset.

use leaktest_wire::TcpFlags;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use leaktest_wire::LinkType;

/// EtherTypes the parser knows.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const IPV6: u16 = 0x86DD;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88A8;
}

/// The network layer of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    /// An ARP packet (Ethernet/IPv4 form) and its sender fields.
    Arp {
        oper: u16,
        sender_mac: [u8; 6],
        sender_ip: Ipv4Addr,
    },
    Ipv4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ttl: u8,
    },
    Ipv6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
    },
    /// Anything else (or a network header too short to read).
    Other,
}

/// What [`Packet::parse`] found in one frame. Borrows the frame; `Copy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Ethernet source and destination, for Ethernet frames.
    pub src_mac: Option<[u8; 6]>,
    pub dst_mac: Option<[u8; 6]>,
    /// The EtherType after any VLAN tags (`None` for raw IP or a frame too short).
    pub ethertype: Option<u16>,
    pub net: Net,
    /// The IP protocol number (IPv6: the upper-layer protocol after extension headers).
    pub protocol: Option<u8>,
    /// Fragment offset in bytes (0 for an unfragmented packet or a first fragment).
    pub frag_offset: u16,
    /// More-fragments flag.
    pub more_fragments: bool,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub tcp_flags: Option<TcpFlags>,
    /// The bytes after the L4 header (UDP payload, ICMP body after 4 bytes,
    /// TCP payload); the L4 header itself for protocols the parser does not know.
    pub l4_payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn mac(b: &[u8], at: usize) -> Option<[u8; 6]> {
    b.get(at..at + 6)?.try_into().ok()
}

impl<'a> Packet<'a> {
    fn empty() -> Packet<'a> {
        Packet {
            src_mac: None,
            dst_mac: None,
            ethertype: None,
            net: Net::Other,
            protocol: None,
            frag_offset: 0,
            more_fragments: false,
            src_port: None,
            dst_port: None,
            icmp_type: None,
            icmp_code: None,
            tcp_flags: None,
            l4_payload: &[],
        }
    }

    /// Parses `frame`. Never panics, never allocates.
    pub fn parse(frame: &'a [u8], link: LinkType) -> Packet<'a> {
        let mut p = Packet::empty();
        let l3: &'a [u8] = match link {
            LinkType::Ethernet => {
                p.dst_mac = mac(frame, 0);
                p.src_mac = mac(frame, 6);
                let mut at = 12;
                let mut et = match be16(frame, at) {
                    Some(et) => et,
                    None => return p,
                };
                // At most two VLAN tags (802.1ad outer, 802.1Q inner).
                for _ in 0..2 {
                    if et != ethertype::VLAN && et != ethertype::QINQ {
                        break;
                    }
                    at += 4;
                    et = match be16(frame, at) {
                        Some(et) => et,
                        None => return p,
                    };
                }
                p.ethertype = Some(et);
                let body = frame.get(at + 2..).unwrap_or(&[]);
                match et {
                    ethertype::IPV4 | ethertype::IPV6 => body,
                    ethertype::ARP => {
                        p.parse_arp(body);
                        return p;
                    }
                    _ => return p,
                }
            }
            LinkType::RawIp => frame,
        };
        match l3.first().map(|b| b >> 4) {
            Some(4) => p.parse_ipv4(l3),
            Some(6) => p.parse_ipv6(l3),
            _ => {}
        }
        p
    }

    fn parse_arp(&mut self, b: &[u8]) {
        // Ethernet (1) / IPv4 (0x0800), hlen 6, plen 4.
        if be16(b, 0) != Some(1) || be16(b, 2) != Some(0x0800) || b.get(4..6) != Some(&[6, 4]) {
            return;
        }
        let (Some(oper), Some(sender_mac), Some(ip)) = (be16(b, 6), mac(b, 8), b.get(14..18))
        else {
            return;
        };
        self.net = Net::Arp {
            oper,
            sender_mac,
            sender_ip: Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]),
        };
    }

    fn parse_ipv4(&mut self, b: &'a [u8]) {
        let Some(&vihl) = b.first() else { return };
        let ihl = usize::from(vihl & 0x0f) * 4;
        if ihl < 20 || b.len() < 20 {
            return;
        }
        let src = Ipv4Addr::new(b[12], b[13], b[14], b[15]);
        let dst = Ipv4Addr::new(b[16], b[17], b[18], b[19]);
        self.net = Net::Ipv4 {
            src,
            dst,
            ttl: b[8],
        };
        self.protocol = Some(b[9]);
        let frag = be16(b, 6).unwrap_or(0);
        self.more_fragments = frag & 0x2000 != 0;
        self.frag_offset = (frag & 0x1fff).wrapping_mul(8);
        // Trust the total length when it is sane (Ethernet pads short frames).
        let total = usize::from(be16(b, 2).unwrap_or(0));
        let end = if total >= ihl && total <= b.len() {
            total
        } else {
            b.len()
        };
        if self.frag_offset == 0 {
            if let Some(l4) = b.get(ihl..end) {
                self.parse_l4(b[9], 1, l4);
            }
        }
    }

    fn parse_ipv6(&mut self, b: &'a [u8]) {
        if b.len() < 40 {
            return;
        }
        let mut s = [0u8; 16];
        let mut d = [0u8; 16];
        s.copy_from_slice(&b[8..24]);
        d.copy_from_slice(&b[24..40]);
        self.net = Net::Ipv6 {
            src: Ipv6Addr::from(s),
            dst: Ipv6Addr::from(d),
            hop_limit: b[7],
        };
        let plen = usize::from(be16(b, 4).unwrap_or(0));
        let end = if 40 + plen <= b.len() && plen > 0 {
            40 + plen
        } else {
            b.len()
        };
        let mut next = b[6];
        let mut at = 40;
        // Walk the extension headers (bounded: a frame cannot hold many
        // anyway). A header that does not fit in the packet ends the walk and
        // its number is reported as the protocol, as leaktest-wire does.
        let mut walked = true;
        for _ in 0..16 {
            let len = match next {
                // Hop-by-hop, routing, destination options, mobility, HIP, shim6.
                0 | 43 | 60 | 135 | 139 | 140 => b.get(at + 1).map(|l| (usize::from(*l) + 1) * 8),
                51 => b.get(at + 1).map(|l| (usize::from(*l) + 2) * 4),
                44 => Some(8),
                _ => break,
            };
            let Some(len) = len.filter(|l| at + l <= end) else {
                walked = false;
                break;
            };
            if next == 44 {
                let fo = be16(b, at + 2).unwrap_or(0);
                self.frag_offset = fo & !7;
                self.more_fragments = fo & 1 != 0;
            }
            next = b[at];
            at += len;
        }
        self.protocol = Some(next);
        if !walked {
            return;
        }
        if self.frag_offset == 0 {
            if let Some(l4) = b.get(at..end.max(at)) {
                self.parse_l4(next, 58, l4);
            }
        }
    }

    /// `icmp` is the family's ICMP protocol (1 for IPv4, 58 for IPv6): the
    /// other family's number is just another protocol.
    fn parse_l4(&mut self, protocol: u8, icmp: u8, l4: &'a [u8]) {
        match protocol {
            p if p == icmp => {
                self.icmp_type = l4.first().copied();
                self.icmp_code = l4.get(1).copied();
                self.l4_payload = l4.get(4..).unwrap_or(&[]);
            }
            // TCP
            6 => {
                self.src_port = be16(l4, 0);
                self.dst_port = be16(l4, 2);
                self.tcp_flags = l4.get(13).map(|&f| TcpFlags(f));
                let off = l4.get(12).map_or(20, |b| usize::from(b >> 4) * 4);
                self.l4_payload = l4.get(off.max(20)..).unwrap_or(&[]);
            }
            // UDP, UDP-Lite, SCTP, DCCP: ports in the first four bytes.
            17 | 136 => {
                self.src_port = be16(l4, 0);
                self.dst_port = be16(l4, 2);
                self.l4_payload = l4.get(8..).unwrap_or(&[]);
            }
            132 | 33 => {
                self.src_port = be16(l4, 0);
                self.dst_port = be16(l4, 2);
                self.l4_payload = l4;
            }
            _ => self.l4_payload = l4,
        }
    }

    /// Source IP address, for IP packets.
    pub fn src_ip(&self) -> Option<IpAddr> {
        match self.net {
            Net::Ipv4 { src, .. } => Some(IpAddr::V4(src)),
            Net::Ipv6 { src, .. } => Some(IpAddr::V6(src)),
            _ => None,
        }
    }

    /// Destination IP address, for IP packets.
    pub fn dst_ip(&self) -> Option<IpAddr> {
        match self.net {
            Net::Ipv4 { dst, .. } => Some(IpAddr::V4(dst)),
            Net::Ipv6 { dst, .. } => Some(IpAddr::V6(dst)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaktest_wire::FrameSummary;

    #[test]
    fn never_panics_on_truncations_of_an_ipv6_tcp_frame() {
        let mut f = [0u8; 14 + 40 + 8 + 8 + 20];
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        f[14] = 0x60;
        f[14 + 6] = 0; // hop-by-hop
        f[14 + 40] = 44; // then fragment
        f[14 + 48] = 6; // then TCP
        for n in 0..=f.len() {
            let p = Packet::parse(&f[..n], LinkType::Ethernet);
            if n >= 14 + 40 + 16 + 14 {
                assert_eq!(p.protocol, Some(6));
                assert!(p.tcp_flags.is_some());
            }
        }
        for n in 0..=f.len() {
            Packet::parse(&f[..n], LinkType::RawIp);
        }
    }

    /// This parser and leaktest-wire's decoder agree on every probe frame.
    #[test]
    fn agrees_with_the_wire_decoder_on_probe_frames() {
        use leaktest_wire::{Endpoints, Family, ProbeBuilder, ProbeSpec, Suite, L2};
        let b = |l2| {
            ProbeBuilder::new(
                leaktest_wire::RunKey::open(1),
                Endpoints {
                    src4: Some(Ipv4Addr::new(10, 152, 152, 11)),
                    dst4: Some(Ipv4Addr::new(203, 0, 113, 7)),
                    src6: Some("fd19:c33d:88bc::11".parse().unwrap()),
                    dst6: Some("2001:db8::7".parse().unwrap()),
                },
                l2,
            )
        };
        let mut buf = [0u8; leaktest_wire::MAX_PROBE_FRAME];
        let mut checked = 0;
        for (link, builder) in [
            (
                LinkType::Ethernet,
                b(Some(L2 {
                    src: [2, 0, 0, 0, 0, 1],
                    dst: [2, 0, 0, 0, 0, 2],
                })),
            ),
            (LinkType::RawIp, b(None)),
        ] {
            for family in Family::BOTH {
                for suite in Suite::ALL {
                    for spec in ProbeSpec::all(family, suite)
                        .filter(|s| s.dst_port().is_none_or(|p| p % 251 == 0))
                    {
                        let n = builder.write(&spec, &mut buf);
                        let f = &buf[..n];
                        let (p, w) = (Packet::parse(f, link), FrameSummary::parse(f, link));
                        let what = format!("{spec:?} {link:?}");
                        assert_eq!((p.src_ip(), p.dst_ip()), (w.src, w.dst), "{what}");
                        assert_eq!(p.protocol, w.protocol, "{what}");
                        assert_eq!(p.frag_offset, w.frag_offset, "{what}");
                        assert_eq!((p.src_port, p.dst_port), (w.src_port, w.dst_port), "{what}");
                        assert_eq!(
                            (p.icmp_type, p.tcp_flags),
                            (w.icmp_type, w.tcp_flags),
                            "{what}"
                        );
                        assert_eq!(
                            (p.src_mac, p.dst_mac, p.ethertype),
                            (w.l2_src, w.l2_dst, w.ethertype),
                            "{what}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 3000);
    }

    proptest::proptest! {
        /// On random IP packets (random header fields, extension headers,
        /// fragments and truncation) both parsers read the same fields.
        #[test]
        fn agrees_with_the_wire_decoder_on_random_packets(
            v6 in proptest::prelude::any::<bool>(),
            head in proptest::collection::vec(proptest::prelude::any::<u8>(), 40),
            proto in proptest::sample::select(vec![0u8, 1, 6, 17, 43, 44, 51, 58, 60, 132, 200]),
            frag in proptest::prelude::any::<u16>(),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            cut in 0usize..140,
        ) {
            let mut f = head.clone();
            if v6 {
                f[0] = 0x60 | (f[0] & 0x0f);
                f[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
                f[6] = proto;
            } else {
                f.truncate(20);
                f[0] = 0x45;
                f[2..4].copy_from_slice(&((20 + body.len()) as u16).to_be_bytes());
                f[6..8].copy_from_slice(&(frag & 0x3fff).to_be_bytes());
                f[9] = proto;
            }
            f.extend_from_slice(&body);
            f.truncate(cut.max(1));
            let (p, w) = (Packet::parse(&f, LinkType::RawIp), FrameSummary::parse(&f, LinkType::RawIp));
            proptest::prop_assert_eq!((p.src_ip(), p.dst_ip()), (w.src, w.dst));
            proptest::prop_assert_eq!(p.protocol, w.protocol);
            proptest::prop_assert_eq!(p.frag_offset, w.frag_offset);
            proptest::prop_assert_eq!((p.src_port, p.dst_port), (w.src_port, w.dst_port));
            proptest::prop_assert_eq!((p.icmp_type, p.tcp_flags), (w.icmp_type, w.tcp_flags));
        }
    }

    #[test]
    fn ipv4_non_first_fragment_has_no_ports() {
        let mut f = [0u8; 20 + 8];
        f[0] = 0x45;
        f[2..4].copy_from_slice(&28u16.to_be_bytes());
        f[6..8].copy_from_slice(&0x0003u16.to_be_bytes()); // offset 24 bytes
        f[9] = 17;
        let p = Packet::parse(&f, LinkType::RawIp);
        assert_eq!(
            (p.protocol, p.frag_offset, p.src_port),
            (Some(17), 24, None)
        );
    }

    #[test]
    fn vlan_tagged_arp() {
        let mut f = [0u8; 18 + 28];
        f[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        f[16..18].copy_from_slice(&0x0806u16.to_be_bytes());
        f[18..20].copy_from_slice(&1u16.to_be_bytes());
        f[20..22].copy_from_slice(&0x0800u16.to_be_bytes());
        f[22] = 6;
        f[23] = 4;
        f[25] = 1;
        f[26..32].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        f[32..36].copy_from_slice(&[10, 0, 0, 1]);
        let p = Packet::parse(&f, LinkType::Ethernet);
        assert_eq!(p.ethertype, Some(0x0806));
        assert_eq!(
            p.net,
            Net::Arp {
                oper: 1,
                sender_mac: [2, 0, 0, 0, 0, 9],
                sender_ip: Ipv4Addr::new(10, 0, 0, 1)
            }
        );
    }
}
