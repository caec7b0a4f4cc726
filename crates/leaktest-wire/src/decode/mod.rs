//! The frame decoder: what a captured frame is ([`FrameSummary`], in
//! [`summary`]) and which probe it came from ([`attribute_payload`] and
//! [`attribute_headers`], in [`attribute`](mod@attribute)).

pub mod attribute;
pub mod summary;

pub use attribute::{
    attribute, attribute_headers, attribute_payload, header_destinations, target_of, Attribution,
    Evidence,
};
pub use summary::{ArpFields, FrameSummary, IpFields, LinkType};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::frag_ident;
    use crate::build::tests::{assert_checksums, builder, MACS};
    use crate::build::{MAX_PROBE_FRAME, PROBE_TTL};
    use crate::catalogue::{Family, FragKind, ProbeKind, ProbeSpec, Suite, TcpFlags, FRAG_PORT};
    use crate::hdr::IpProtocol;
    use crate::marker::{MarkerKeys, RunKey, HEADER_MIN_BITS, MAGIC, MARKER_LEN};
    use attribute::max_header_bits;
    use std::net::Ipv6Addr;

    fn run() -> RunKey {
        RunKey::open(0x0102030405060708)
    }

    /// Keys that know the test run going to every destination of `frame`
    /// (as after seeing one of its payload markers there).
    fn knowing_keys_for(frame: &[u8], link: LinkType) -> MarkerKeys {
        let mut k = MarkerKeys::open();
        for dst in header_destinations(&FrameSummary::parse(frame, link)) {
            k.learn_target(run(), dst);
        }
        k
    }

    /// Checks the summary of a freshly built probe against its spec.
    fn check_summary(spec: &ProbeSpec, s: &FrameSummary) {
        let tag = run().header_tag(spec.seq());
        assert_eq!(s.ip.family, Some(spec.family));
        match spec.kind {
            ProbeKind::Flags { .. } | ProbeKind::Ecn { .. } => {
                assert_eq!(s.ip.protocol, Some(IpProtocol::TCP));
                assert_eq!(s.ip.tcp_flags, spec.tcp_flags());
                assert_eq!(s.ip.tcp_seq, Some(tag.tcp_seq()));
                return;
            }
            ProbeKind::IcmpCode { icmp_type, code } => {
                assert_eq!(
                    (s.ip.icmp_type, s.ip.icmp_code),
                    (Some(icmp_type), Some(code))
                );
                assert_eq!(s.ip.icmp_id_seq, Some(tag.icmp_id_seq()));
                return;
            }
            ProbeKind::Frag { frag } if frag.is_tcp() => {
                assert!(s.ip.is_fragment());
                return;
            }
            ProbeKind::Ext { chain, .. } => {
                let first = crate::compose::chain_first_header(chain);
                assert_eq!(s.ip.header_protocol, Some(IpProtocol(first)), "{spec:?}");
                return;
            }
            ProbeKind::IpOpt { .. }
            | ProbeKind::Lan { .. }
            | ProbeKind::Spoof { .. }
            | ProbeKind::Tunnel { .. } => {
                assert_eq!(s.ip.protocol, Some(IpProtocol(spec.protocol())), "{spec:?}");
                return;
            }
            _ => {}
        }
        assert_eq!(s.ip.family, Some(spec.family));
        assert_eq!(s.ip.ttl, Some(PROBE_TTL));
        match spec.family {
            Family::V4 => assert_eq!(s.ip.ip_id, Some(tag.ipv4_id())),
            Family::V6 => assert_eq!(s.ip.flow_label, Some(tag.flow_label())),
        }
        match spec.kind {
            ProbeKind::Icmp { icmp_type } => {
                assert_eq!(s.ip.protocol, Some(IpProtocol(spec.family.icmp_protocol())));
                assert_eq!((s.ip.icmp_type, s.ip.icmp_code), (Some(icmp_type), Some(0)));
                assert_eq!(s.ip.icmp_id_seq, Some(tag.icmp_id_seq()));
                assert!(!s.ip.is_fragment());
            }
            ProbeKind::Ip { protocol } => {
                assert_eq!(s.ip.header_protocol, Some(IpProtocol(protocol)));
                // An IPv6 extension-header number makes the marker parse as that header.
                let ext = matches!(protocol, 0 | 43 | 44 | 51 | 60 | 135 | 139 | 140);
                if spec.family == Family::V4 || !ext {
                    assert_eq!(s.ip.protocol, Some(IpProtocol(protocol)));
                }
            }
            ProbeKind::Tcp { flags, dst_port } => {
                assert_eq!(s.ip.protocol, Some(IpProtocol::TCP));
                assert_eq!(
                    (s.ip.src_port, s.ip.dst_port),
                    (
                        Some(tag.tcp_src_port(flags.set_index().unwrap())),
                        Some(dst_port)
                    )
                );
                assert_eq!(s.ip.tcp_flags, Some(flags));
                assert_eq!(s.ip.tcp_seq, Some(tag.tcp_seq()));
            }
            ProbeKind::Udp { dst_port } => {
                assert_eq!(s.ip.protocol, Some(IpProtocol::UDP));
                assert_eq!(
                    (s.ip.src_port, s.ip.dst_port),
                    (Some(tag.src_port()), Some(dst_port))
                );
                assert!(!s.ip.is_fragment());
            }
            ProbeKind::Frag { frag } => {
                assert_eq!(s.ip.protocol, Some(IpProtocol::UDP));
                assert!(s.ip.is_fragment());
                if spec.family == Family::V6 {
                    assert_eq!(s.ip.header_protocol, Some(IpProtocol::FRAGMENT));
                    assert_eq!(s.ip.frag_ident, Some(frag_ident(tag)));
                }
                match frag {
                    FragKind::First => {
                        assert!(s.ip.more_fragments);
                        assert_eq!(s.ip.frag_offset, 0);
                        assert_eq!(
                            (s.ip.src_port, s.ip.dst_port),
                            (Some(tag.src_port()), Some(FRAG_PORT))
                        );
                    }
                    FragKind::NonFirst => {
                        assert!(!s.ip.more_fragments);
                        assert!(s.ip.frag_offset > 0);
                        assert_eq!(s.ip.dst_port, None);
                    }
                    _ => unreachable!(),
                }
            }
            _ => unreachable!(),
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
        let eth = crate::compose::tests::builder(Some(MACS));
        let raw = crate::compose::tests::builder(None);
        // Learns each target from the payload markers, as a watcher does.
        let mut open = MarkerKeys::open();
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
                    if spec.kind
                        == (ProbeKind::Frag {
                            frag: FragKind::TinyHead,
                        })
                    {
                        // 8 bytes of TCP: no room for a marker; its headers
                        // name it once its run is known for the target.
                        assert_eq!(memchr::memmem::find(frame, &MAGIC), None);
                        assert_eq!(attribute_payload(frame, &s, &mut open), None);
                        let h = attribute(frame, link, &mut open).expect("tiny head by headers");
                        assert_eq!((h.spec, h.evidence), (spec, Evidence::Header));
                        counts[1] += 1;
                        continue;
                    }
                    let a = attribute(frame, link, &mut open).expect("payload attribution");
                    assert_eq!(attribute_payload(frame, &s, &mut open), Some(a));
                    assert_eq!(
                        (a.spec, a.seq, a.run, a.evidence),
                        (spec, spec.seq(), run(), Evidence::Payload)
                    );
                    counts[0] += 1;
                    // Payload stripped: only the header marker is left.
                    // Every marker (the tiny-fragment tail holds two).
                    while let Some(m) = memchr::memmem::find(frame, &MAGIC) {
                        frame[m..m + MARKER_LEN].fill(0);
                    }
                    let h = attribute(frame, link, &mut open);
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
        // Every probe but the two tiny first fragments carries its marker.
        assert_eq!(counts[0], 463_474 + 464_779 - 2);
        // Not by headers: the ip suite (2 x 256), the IPv4 non-first
        // fragment, the flags suite's combinations (2 x 2816), the
        // multi-fragment tricks but the tiny heads (6 + 8) and the composed suites (33 ipopt,
        // 54 ext6, 78 lan, 57 spoof, 11 tunnel).
        assert_eq!(
            counts[2],
            2 * 256 + 1 + 2 * 2816 + 14 + 33 + 54 + 78 + 57 + 11
        );
    }

    #[test]
    fn headers_alone_name_nothing_that_is_not_a_probe() {
        use summary::tests::{ARP_REQUEST, IPV6_EXT_UDP, VLAN_TCP_SYN};
        for (f, link) in [
            (&ARP_REQUEST[..], LinkType::Ethernet),
            (&VLAN_TCP_SYN[..], LinkType::Ethernet),
            (&IPV6_EXT_UDP[..], LinkType::RawIp),
        ] {
            // Even with the run known for every destination these frames have.
            assert_eq!(attribute(f, link, &mut knowing_keys_for(f, link)), None);
        }
    }

    #[test]
    fn header_evidence_needs_a_run_seen_going_to_that_destination() {
        let b = builder(Some(MACS));
        let mut buf = [0u8; MAX_PROBE_FRAME];
        let spec = ProbeSpec {
            family: Family::V4,
            kind: ProbeKind::Tcp {
                flags: TcpFlags(TcpFlags::SYN),
                dst_port: 443,
            },
        };
        let n = b.write(&spec, &mut buf);
        let mut bare = buf[..n].to_vec();
        let m = marker_at(&bare);
        bare[m..m + MARKER_LEN].fill(0);
        // A known run is not enough: its marker must have gone to this target.
        let mut keys = MarkerKeys::open();
        keys.learn(run());
        assert_eq!(attribute(&bare, LinkType::Ethernet, &mut keys), None);
        keys.learn_target(run(), "198.51.100.99".parse().unwrap());
        assert_eq!(attribute(&bare, LinkType::Ethernet, &mut keys), None);
        // Seeing the full probe teaches the target.
        assert!(attribute(&buf[..n], LinkType::Ethernet, &mut keys).is_some());
        let h = attribute(&bare, LinkType::Ethernet, &mut keys).unwrap();
        assert_eq!((h.spec, h.evidence), (spec, Evidence::Header));
    }

    #[test]
    fn the_senders_reset_to_a_syn_ack_names_the_syn_probe() {
        let b = builder(None);
        let mut buf = [0u8; MAX_PROBE_FRAME];
        let spec = ProbeSpec {
            family: Family::V6,
            kind: ProbeKind::Tcp {
                flags: TcpFlags(TcpFlags::SYN),
                dst_port: 80,
            },
        };
        let n = b.write(&spec, &mut buf);
        let tag = run().header_tag(spec.seq());
        // What the sender's kernel sends: same ports, seq = probe seq + 1,
        // RST only, its own flow label, no payload.
        let mut rst = buf[..40 + 20].to_vec();
        rst[4..6].copy_from_slice(&20u16.to_be_bytes());
        rst[1..4].copy_from_slice(&[0, 0, 0]);
        rst[40 + 4..40 + 8].copy_from_slice(&tag.tcp_seq().wrapping_add(1).to_be_bytes());
        rst[40 + 13] = TcpFlags::RST;
        let mut keys = knowing_keys_for(&buf[..n], LinkType::RawIp);
        let a = attribute(&rst, LinkType::RawIp, &mut keys).unwrap();
        assert_eq!((a.spec, a.evidence), (spec, Evidence::Reset));
        // The same RST with the probe's own sequence number is the RST probe's
        // header shape, not a reset answering a SYN: not this SYN.
        rst[40 + 4..40 + 8].copy_from_slice(&tag.tcp_seq().to_be_bytes());
        assert_ne!(
            attribute(&rst, LinkType::RawIp, &mut keys).map(|a| (a.spec, a.evidence)),
            Some((spec, Evidence::Reset))
        );
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
                let family = if v6 { Family::V6 } else { Family::V4 };
                // The template probes (the frag suite's lone fragments, not
                // its multi-fragment tricks: those are checked in `compose`).
                let count = match suite {
                    Suite::Frag => 2,
                    s => s.probe_count(family),
                };
                ProbeSpec::from_seq(fam | (suite.base() + x % count)).unwrap()
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
                // The template suites (the composed ones: `compose::tests`).
                for suite in [Suite::Icmp, Suite::Ip, Suite::Tcp, Suite::Udp, Suite::Frag] {
                    let specs = ProbeSpec::all(family, suite)
                        .filter(|s| !matches!(s.kind, ProbeKind::Frag { frag } if frag.is_tcp()))
                        .filter(|s| match s.dst_port() {
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
                        let h = attribute(
                            &head,
                            LinkType::RawIp,
                            &mut knowing_keys_for(&head, LinkType::RawIp),
                        );
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
                        let h = attribute(
                            &quoted,
                            LinkType::RawIp,
                            &mut knowing_keys_for(&quoted, LinkType::RawIp),
                        );
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
                let h = attribute(&bare, LinkType::RawIp, &mut knowing_keys_for(&bare, LinkType::RawIp));
                if let Some(h) = h {
                    prop_assert_eq!((h.spec, h.evidence), (spec, Evidence::Header));
                }
                // TCP keeps its sequence number (32 bits) through NAT.
                if spec.suite() == Suite::Tcp {
                    prop_assert!(h.is_some());
                }
            }

            /// A pulse probe's round survives NAT with its marker: the
            /// watcher names the probe and the round it was sent in.
            #[test]
            fn a_pulse_round_survives_nat(round in 0u32..(1 << 24), n in any_nat(), v6 in any::<bool>(), k in 0usize..crate::pulse::PER_FAMILY) {
                let family = if v6 { Family::V6 } else { Family::V4 };
                let spec = crate::pulse::specs(family, round)[k];
                let key = RunKey::open(crate::marker::pulse_run_id(0x0102030405060708)).with_round(round);
                let b = crate::ProbeBuilder::new(key, crate::build::tests::ends(), None);
                let mut buf = [0u8; MAX_PROBE_FRAME];
                let len = b.write(&spec, &mut buf);
                let mut ip = buf[..len].to_vec();
                nat(&spec, &mut ip, &n);
                let a = attribute(&ip, LinkType::RawIp, &mut MarkerKeys::open()).unwrap();
                prop_assert_eq!((a.spec, a.evidence, a.round), (spec, Evidence::Payload, Some(round)));
                prop_assert_eq!(a.run.run_id, 0x0102030405000000);
            }

            #[test]
            fn ip_suite_marker_survives_nat_reading_it_as_a_header(v6 in any::<bool>(), icmp6 in any::<bool>(),
                    n in any_nat(), dport in any::<u16>()) {
                let family = if v6 { Family::V6 } else { Family::V4 };
                let protocol = if v6 && icmp6 { 58 } else { 6 };
                let spec = ProbeSpec { family, kind: ProbeKind::Ip { protocol } };
                let mut ip = probe_ip(&spec);
                nat(&spec, &mut ip, &n);
                // A NAT that takes the payload for a TCP header rewrites both
                // ports and the checksum; for ICMPv6 the checksum: all of it
                // in the fixed head before the marker (IP_SUITE_HEAD).
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
                prop_assert_eq!(q.header_protocol, Some(IpProtocol(ip[if spec.family == Family::V4 { 9 } else { 6 }])));
                let a = attribute(&err, LinkType::RawIp, &mut knowing_keys_for(&err, LinkType::RawIp));
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
                    let h = attribute(f, LinkType::RawIp, &mut knowing_keys_for(f, LinkType::RawIp));
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
                    prop_assert_eq!(attribute(&bytes, link, &mut knowing_keys_for(&bytes, link)), None);
                    prop_assert_eq!(attribute_payload(&bytes, &s, &mut MarkerKeys::open()), None);
                    prop_assert_eq!(attribute_headers(&s, &knowing_keys_for(&bytes, link)), None);
                }
            }

            #[test]
            fn ip_like_bytes_never_panic(v6 in any::<bool>(), head in any::<u8>(), bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
                // Start with a plausible version nibble so the IP parsers run deep.
                let mut p = vec![if v6 { 0x60 | (head & 0x0f) } else { 0x40 | (head & 0x0f) }];
                p.extend_from_slice(&bytes);
                let _ = FrameSummary::parse(&p, LinkType::RawIp);
                prop_assert_eq!(attribute(&p, LinkType::RawIp, &mut knowing_keys_for(&p, LinkType::RawIp)), None);
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
                if let Some(a) = attribute(&f, link, &mut knowing_keys_for(&f, link)) {
                    prop_assert_eq!(a.spec, spec);
                }
            }
        }
    }
}
