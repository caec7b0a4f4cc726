//! The composed probes, checked with etherparse (an independent parser,
//! checksum code and IP reassembler), never with this crate's own decoder.

use super::*;
use crate::build::tests::{ends, MACS};
use crate::build::ProbeBuilder;
use crate::catalogue::{Suite, TcpFlags};
use etherparse::checksum::Sum16BitWords;
use etherparse::defrag::IpDefragPool;
use etherparse::{Ipv4Slice, Ipv6ExtensionSlice, Ipv6Slice, SlicedPacket};

pub(crate) fn hood() -> Neighbourhood {
    Neighbourhood {
        gateway4: Some(Ipv4Addr::new(10, 152, 152, 10)),
        gateway6: Some("fd19:c33d:88bc::10".parse().unwrap()),
        prefix4: Some(18),
        prefix6: Some(64),
        uplink4: Some((Ipv4Addr::new(192, 0, 2, 2), 24)),
        uplink6: Some(("2001:db8:1::2".parse().unwrap(), 64)),
        router4: Some(Ipv4Addr::new(192, 0, 2, 1)),
        router6: Some("2001:db8:1::1".parse().unwrap()),
    }
}

fn key() -> RunKey {
    RunKey::open(0x0102030405060708)
}

pub(crate) fn builder(l2: Option<L2>) -> ProbeBuilder {
    ProbeBuilder::new(key(), ends(), l2).with_neighbourhood(hood())
}

const COMPOSED: [Suite; 5] = [
    Suite::Ipopt,
    Suite::Ext6,
    Suite::Lan,
    Suite::Spoof,
    Suite::Tunnel,
];

/// What etherparse reads of an IP packet.
#[derive(Debug)]
struct Opened<'a> {
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    /// The protocol etherparse stops at (the transport, or ESP / 253).
    stop: u8,
    /// IPv6 extension headers (and IPv4 AH) etherparse walked, by number.
    exts: Vec<u8>,
    options: Vec<u8>,
    payload: &'a [u8],
}

fn open(ip: &[u8]) -> Opened<'_> {
    if ip[0] >> 4 == 4 {
        let s = Ipv4Slice::from_slice(ip).expect("etherparse reads the IPv4 packet");
        let h = s.header();
        let sum = Sum16BitWords::new().add_slice(h.slice()).ones_complement();
        assert_eq!(sum, 0, "IPv4 header checksum");
        let mut exts = Vec::new();
        if s.extensions().auth.is_some() {
            exts.push(51);
        }
        Opened {
            src: IpAddr::V4(h.source_addr()),
            dst: IpAddr::V4(h.destination_addr()),
            ttl: h.ttl(),
            stop: s.payload().ip_number.0,
            exts,
            options: h.options().to_vec(),
            payload: s.payload().payload,
        }
    } else {
        let s = Ipv6Slice::from_slice(ip).expect("etherparse reads the IPv6 packet");
        let h = s.header();
        let exts = s
            .extensions()
            .clone()
            .into_iter()
            .map(|e| match e {
                Ipv6ExtensionSlice::HopByHop(_) => 0,
                Ipv6ExtensionSlice::Routing(_) => 43,
                Ipv6ExtensionSlice::Fragment(_) => 44,
                Ipv6ExtensionSlice::DestinationOptions(_) => 60,
                Ipv6ExtensionSlice::Authentication(_) => 51,
            })
            .collect();
        Opened {
            src: IpAddr::V6(h.source_addr()),
            dst: IpAddr::V6(h.destination_addr()),
            ttl: h.hop_limit(),
            stop: s.payload().ip_number.0,
            exts,
            options: Vec::new(),
            payload: s.payload().payload,
        }
    }
}

/// etherparse's sum of the pseudo-header.
fn pseudo_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Sum16BitWords {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Sum16BitWords::new()
            .add_4bytes(s.octets())
            .add_4bytes(d.octets())
            .add_2bytes([0, proto])
            .add_2bytes((len as u16).to_be_bytes()),
        (IpAddr::V6(s), IpAddr::V6(d)) => Sum16BitWords::new()
            .add_16bytes(s.octets())
            .add_16bytes(d.octets())
            .add_4bytes((len as u32).to_be_bytes())
            .add_4bytes([0, 0, 0, proto]),
        _ => panic!("mixed families"),
    }
}

/// Checks a transport message: checksum, header fields, marker, and
/// returns what follows the marker.
fn check_transport(
    transport: Transport,
    udp_port: u16,
    src: IpAddr,
    dst: IpAddr,
    l4: &[u8],
    seq: u32,
) -> &[u8] {
    let tag = key().header_tag(seq);
    let (proto, hl) = match transport {
        Transport::TcpSyn => (6, 20),
        Transport::Udp => (17, 8),
        Transport::Echo if src.is_ipv4() => (1, 8),
        Transport::Echo => (58, 8),
    };
    // A spoof probe's UDP payload opens with its DNS query.
    let spoof_udp = matches!(
        ProbeSpec::from_seq(seq).map(|s| s.kind),
        Some(ProbeKind::Spoof {
            transport: Transport::Udp,
            ..
        })
    );
    let hl = if spoof_udp { hl + DNS_QUERY_LEN } else { hl };
    let sum = if proto == 1 {
        Sum16BitWords::new().add_slice(l4)
    } else {
        pseudo_sum(src, dst, proto, l4.len()).add_slice(l4)
    };
    assert_eq!(sum.ones_complement(), 0, "checksum of {transport:?}");
    match transport {
        Transport::TcpSyn => {
            let t = etherparse::TcpHeaderSlice::from_slice(l4).unwrap();
            assert!(t.syn() && !t.ack() && !t.rst() && !t.fin());
            assert_eq!(t.destination_port(), Transport::TCP_PORT);
            // (a bare chain test builds with source port 0)
            assert_eq!(t.source_port(), composed_src_port_of_seq(seq).unwrap_or(0));
            assert_eq!(t.sequence_number(), tag.tcp_seq());
        }
        Transport::Udp => {
            let u = etherparse::UdpHeaderSlice::from_slice(l4).unwrap();
            assert_eq!(u.destination_port(), udp_port);
            assert_eq!(u.length() as usize, l4.len());
            assert_ne!(u.checksum(), 0);
        }
        Transport::Echo => {
            assert_eq!(l4[0], if proto == 1 { 8 } else { 128 });
            assert_eq!(l4[1], 0);
        }
    }
    assert_eq!(
        &l4[hl..hl + MARKER_LEN],
        &key().payload_marker(seq),
        "marker of {seq:#x}"
    );
    &l4[hl + MARKER_LEN..]
}

fn composed_src_port_of_seq(seq: u32) -> Option<u16> {
    composed_src_port(&ProbeSpec::from_seq(seq).unwrap())
}

fn expected_ends(spec: &ProbeSpec) -> (IpAddr, IpAddr) {
    let e = ends();
    let h = hood();
    let (src, dst) = pair(&e, spec.family).unwrap();
    match spec.kind {
        ProbeKind::Lan { dest, .. } => {
            let to = match (spec.family, dest) {
                (Family::V4, LanDest::SubnetBroadcast) => "10.152.191.255".parse().unwrap(),
                (Family::V6, LanDest::SubnetBroadcast) => "fd19:c33d:88bc::".parse().unwrap(),
                (_, LanDest::UplinkRouter) if spec.family == Family::V4 => {
                    "192.0.2.1".parse().unwrap()
                }
                (_, LanDest::UplinkRouter) => "2001:db8:1::1".parse().unwrap(),
                (_, LanDest::UplinkHost) if spec.family == Family::V4 => {
                    "192.0.2.130".parse().unwrap()
                }
                (_, LanDest::UplinkHost) => "2001:db8:1::82".parse().unwrap(),
                (Family::V4, d) => IpAddr::V4(d.fixed_v4().unwrap()),
                (Family::V6, d) => IpAddr::V6(d.fixed_v6().unwrap()),
            };
            (src, to)
        }
        ProbeKind::Spoof { source, .. } => {
            let from: IpAddr = match (spec.family, source) {
                (Family::V4, SpoofSource::SameSubnet) => "10.152.152.139".parse().unwrap(),
                (Family::V6, SpoofSource::SameSubnet) => "fd19:c33d:88bc::91".parse().unwrap(),
                (Family::V4, SpoofSource::GatewayInternal) => IpAddr::V4(h.gateway4.unwrap()),
                (Family::V6, SpoofSource::GatewayInternal) => IpAddr::V6(h.gateway6.unwrap()),
                (Family::V4, SpoofSource::GatewayExternal) => IpAddr::V4(h.uplink4.unwrap().0),
                (Family::V6, SpoofSource::GatewayExternal) => IpAddr::V6(h.uplink6.unwrap().0),
                (Family::V6, SpoofSource::V4Mapped) => "::ffff:10.152.152.11".parse().unwrap(),
                (Family::V4, SpoofSource::Unspecified) => "0.0.0.0".parse().unwrap(),
                (Family::V6, SpoofSource::Unspecified) => "::".parse().unwrap(),
                (Family::V6, SpoofSource::Loopback) => "::1".parse().unwrap(),
                (Family::V4, SpoofSource::Loopback) => "127.0.0.9".parse().unwrap(),
                (Family::V4, SpoofSource::Multicast) => "224.0.0.9".parse().unwrap(),
                (Family::V6, SpoofSource::Multicast) => "ff02::9".parse().unwrap(),
                (Family::V4, SpoofSource::LinkLocal) => "169.254.9.9".parse().unwrap(),
                (Family::V6, SpoofSource::LinkLocal) => "fe80::9".parse().unwrap(),
                (Family::V4, SpoofSource::Documentation) => "198.51.100.9".parse().unwrap(),
                (Family::V6, SpoofSource::Documentation) => "2001:db8:ffff::9".parse().unwrap(),
                (Family::V4, SpoofSource::OtherPrivate) => "172.16.9.9".parse().unwrap(),
                (Family::V6, SpoofSource::OtherPrivate) => "fd00::9".parse().unwrap(),
                (Family::V4, SpoofSource::V4Mapped) => unreachable!(),
            };
            (from, dst)
        }
        _ => (src, dst),
    }
}

#[test]
fn every_composed_probe_reads_back_with_etherparse() {
    let b = builder(Some(MACS));
    let mut buf = [0u8; crate::MAX_PROBE_FRAME];
    let mut n_checked = 0;
    for family in Family::BOTH {
        for suite in COMPOSED {
            for spec in ProbeSpec::all(family, suite) {
                let n = b.write(&spec, &mut buf);
                assert!(n > 0, "{spec:?} was not built");
                let frame = &buf[..n];
                let eth = SlicedPacket::from_ethernet(frame).expect("etherparse reads the frame");
                let link = eth.link.unwrap().to_header().unwrap();
                let Some(etherparse::LinkHeader::Ethernet2(e)) = Some(link) else {
                    panic!()
                };
                let ip = &frame[14..];
                let o = open(ip);
                let (src, dst) = expected_ends(&spec);
                assert_eq!((o.src, o.dst), (src, dst), "{spec:?}");
                // Multicast and broadcast go to their link-layer group address.
                let want_mac = match dst {
                    IpAddr::V4(a) if a.is_broadcast() => [0xff; 6],
                    IpAddr::V4(a) if a.is_multicast() => {
                        let x = a.octets();
                        [1, 0, 0x5e, x[1] & 0x7f, x[2], x[3]]
                    }
                    IpAddr::V6(a) if a.is_multicast() => {
                        let x = a.octets();
                        [0x33, 0x33, x[12], x[13], x[14], x[15]]
                    }
                    _ => MACS.dst,
                };
                assert_eq!(e.destination, want_mac, "{spec:?}");
                let seq = spec.seq();
                match spec.kind {
                    ProbeKind::IpOpt { opt, transport } => {
                        assert_eq!(o.ttl, opt.ttl());
                        if family == Family::V4 {
                            let want = match opt {
                                IpOpt::RecordRoute => Some(7),
                                IpOpt::Timestamp => Some(68),
                                IpOpt::LooseSourceRoute => Some(131),
                                IpOpt::StrictSourceRoute => Some(137),
                                IpOpt::RouterAlert => Some(148),
                                _ => None,
                            };
                            assert_eq!(o.options.first().copied(), want, "{spec:?}");
                            if matches!(opt, IpOpt::LooseSourceRoute | IpOpt::StrictSourceRoute) {
                                assert_eq!(&o.options[3..7], &[203, 0, 113, 7], "names the target");
                            }
                        }
                        check_transport(transport, 53, src, dst, o.payload, seq);
                    }
                    ProbeKind::Ext { chain, transport } => {
                        let numbers: Vec<u8> = chain.headers().iter().map(|h| h.number()).collect();
                        // etherparse walks every header it knows and stops at
                        // ESP and at the unknown 253, which it cannot walk.
                        let walked: Vec<u8> = numbers
                            .iter()
                            .copied()
                            .take_while(|n| *n != 50 && *n != 253)
                            .collect();
                        assert_eq!(o.exts, walked, "{spec:?}");
                        let mut l4 = o.payload;
                        if o.stop == 50 || o.stop == 253 {
                            l4 = &l4[8..];
                        }
                        check_transport(transport, 53, src, dst, l4, seq);
                    }
                    ProbeKind::Lan { dest, transport } => {
                        assert!(o.exts.is_empty());
                        check_transport(transport, dest.udp_port(), src, dst, o.payload, seq);
                    }
                    ProbeKind::Spoof { transport, .. } => {
                        if transport == Transport::Udp {
                            check_dns_query(&o.payload[8..8 + DNS_QUERY_LEN], seq);
                        }
                        let rest = check_transport(transport, 53, src, dst, o.payload, seq);
                        assert_eq!(read_source_claim(&key(), seq, rest), Some(src), "{spec:?}");
                        // A claim moved to another probe does not verify.
                        assert_eq!(read_source_claim(&key(), seq ^ 1, rest), None);
                    }
                    ProbeKind::Tunnel { tunnel } => {
                        let inner = match tunnel {
                            TunnelKind::GreIpv4 | TunnelKind::GreIpv6 => {
                                assert_eq!(o.stop, 47);
                                assert_eq!(&o.payload[..2], &[0, 0]);
                                &o.payload[4..]
                            }
                            TunnelKind::Ipv4InIp => {
                                assert_eq!(o.stop, 4);
                                o.payload
                            }
                            TunnelKind::Ipv6InIp => {
                                assert_eq!(o.stop, 41);
                                o.payload
                            }
                            TunnelKind::Teredo | TunnelKind::Vxlan => {
                                assert_eq!(o.stop, 17);
                                let u = etherparse::UdpHeaderSlice::from_slice(o.payload).unwrap();
                                let sum =
                                    pseudo_sum(src, dst, 17, o.payload.len()).add_slice(o.payload);
                                assert_eq!(sum.ones_complement(), 0);
                                let port = if tunnel == TunnelKind::Teredo {
                                    3544
                                } else {
                                    4789
                                };
                                assert_eq!(u.destination_port(), port);
                                if tunnel == TunnelKind::Vxlan {
                                    assert_eq!(o.payload[8], 0x08, "VXLAN I flag");
                                    let inner =
                                        SlicedPacket::from_ethernet(&o.payload[16..]).unwrap();
                                    assert!(inner.net.is_some());
                                    &o.payload[16 + 14..]
                                } else {
                                    &o.payload[8..]
                                }
                            }
                        };
                        let i = open(inner);
                        let want = tunnel.inner_family(family);
                        let (is, id) = pair(&ends(), want).unwrap();
                        assert_eq!((i.src, i.dst), (is, id), "{spec:?}");
                        check_transport(Transport::Udp, 53, is, id, i.payload, seq);
                    }
                    _ => unreachable!(),
                }
                n_checked += 1;
            }
        }
    }
    // ipopt 24 + 9, ext6 6 + 48, lan 42 + 36, spoof 27 + 30, tunnel 6 + 5.
    assert_eq!(n_checked, 33 + 54 + 78 + 57 + 11);
}

/// Feeds fragments to etherparse's reassembler; the datagram once complete.
fn reassemble(frames: &[Vec<u8>]) -> Option<(u8, Vec<u8>)> {
    let mut pool: IpDefragPool = IpDefragPool::new();
    let mut out = None;
    for f in frames {
        let s = SlicedPacket::from_ip(f).expect("etherparse reads the fragment");
        if let Some(done) = pool
            .process_sliced_packet(&s, (), ())
            .expect("fragment accepted")
        {
            out = Some((done.ip_number.0, done.payload));
        }
    }
    out
}

fn frag_frame(family: Family, frag: FragKind) -> Vec<u8> {
    let mut buf = [0u8; crate::MAX_PROBE_FRAME];
    let spec = ProbeSpec {
        family,
        kind: ProbeKind::Frag { frag },
    };
    let n = builder(None).write(&spec, &mut buf);
    assert!(n > 0, "{spec:?}");
    buf[..n].to_vec()
}

fn frag_seq(family: Family, frag: FragKind) -> u32 {
    ProbeSpec {
        family,
        kind: ProbeKind::Frag { frag },
    }
    .seq()
}

/// Checks a reassembled TCP datagram: checksum, flags, port; returns it.
fn check_tcp_datagram(family: Family, tcp: &[u8], flags: u8, port: u16) {
    let (src, dst) = pair(&ends(), family).unwrap();
    let sum = pseudo_sum(src, dst, 6, tcp.len()).add_slice(tcp);
    assert_eq!(sum.ones_complement(), 0, "TCP checksum after reassembly");
    let t = etherparse::TcpHeaderSlice::from_slice(tcp).unwrap();
    assert_eq!(t.destination_port(), port);
    assert_eq!(tcp[13], flags);
}

#[test]
fn the_fragment_tricks_reassemble_into_what_they_claim() {
    use FragKind::*;
    for family in Family::BOTH {
        // Tiny first fragment: 8 bytes, no flags; the whole is a SYN.
        let head = frag_frame(family, TinyHead);
        let o = open(&head);
        assert_eq!(o.payload.len(), 8, "the tiny head holds 8 bytes of TCP");
        let (p, d) = reassemble(&[head.clone(), frag_frame(family, TinyTail)]).unwrap();
        assert_eq!(p, 6);
        check_tcp_datagram(family, &d, TcpFlags::SYN, 443);
        assert_eq!(
            &d[24..50],
            &key().payload_marker(frag_seq(family, TinyTail))
        );

        // Reordered: tail first, then head.
        let (_, d) = reassemble(&[
            frag_frame(family, ReorderedTail),
            frag_frame(family, ReorderedHead),
        ])
        .unwrap();
        check_tcp_datagram(family, &d, TcpFlags::SYN, 443);
        assert_eq!(
            &d[24..50],
            &key().payload_marker(frag_seq(family, ReorderedHead))
        );
        assert_eq!(
            &d[72..98],
            &key().payload_marker(frag_seq(family, ReorderedTail))
        );
        // A tail read as if it began with a TCP header shows no flags.
        let tail = frag_frame(family, ReorderedTail);
        assert_eq!(&open(&tail).payload[..16], &[0u8; 16]);

        // Overlap: the decoy head with the tail is an ACK to 53; the
        // rewriting copy with the tail is the SYN to 443.
        let (_, d) = reassemble(&[
            frag_frame(family, OverlapHead),
            frag_frame(family, OverlapTail),
        ])
        .unwrap();
        check_tcp_datagram(family, &d, TcpFlags::ACK, 53);
        let (_, d) = reassemble(&[
            frag_frame(family, OverlapRewrite),
            frag_frame(family, OverlapTail),
        ])
        .unwrap();
        check_tcp_datagram(family, &d, TcpFlags::SYN, 443);
        // The three share one identification: a reassembler sees one datagram.
        let ids: Vec<_> = [OverlapHead, OverlapRewrite, OverlapTail]
            .map(|k| {
                let f = frag_frame(family, k);
                match family {
                    Family::V4 => u32::from(u16::from_be_bytes([f[4], f[5]])),
                    Family::V6 => u32::from_be_bytes(f[44..48].try_into().unwrap()),
                }
            })
            .to_vec();
        assert!(ids.iter().all(|i| *i == ids[0]));
    }
    // IPv6: the transport header in the second fragment, behind a
    // Destination Options header that fills the first.
    let head = frag_frame(Family::V6, LateHeaderHead);
    let o = open(&head);
    assert_eq!(
        o.exts,
        vec![44, 60],
        "the first fragment holds the Fragment and Destination Options headers"
    );
    assert_eq!(o.stop, 6);
    assert!(o.payload.is_empty(), "and no byte of TCP");
    // etherparse 0.21's slicer reads a non-first fragment's payload as the
    // header its Fragment header names, so the pair goes to its reassembly
    // buffer directly, each fragment read with etherparse's fragment-header
    // slice.
    let mut buf =
        etherparse::defrag::IpDefragBuf::new(etherparse::IpNumber(60), Vec::new(), Vec::new());
    for f in [head, frag_frame(Family::V6, LateHeaderTail)] {
        let fh = etherparse::Ipv6FragmentHeaderSlice::from_slice(&f[40..48]).unwrap();
        assert_eq!(fh.next_header().0, 60);
        buf.add(fh.fragment_offset(), fh.more_fragments(), &f[48..])
            .unwrap();
    }
    assert!(buf.is_complete());
    let (d, _) = buf.take_bufs();
    let p = 60;
    assert_eq!(
        p, 60,
        "the reassembled payload starts with Destination Options"
    );
    let dst_opts = etherparse::Ipv6RawExtHeaderSlice::from_slice(&d).unwrap();
    assert_eq!(dst_opts.next_header().0, 6);
    assert_eq!(dst_opts.slice().len(), 32);
    assert_eq!(
        &d[4..30],
        &key().payload_marker(frag_seq(Family::V6, LateHeaderHead))
    );
    check_tcp_datagram(Family::V6, &d[32..], TcpFlags::SYN, 443);
    assert_eq!(
        &d[32 + 24..32 + 50],
        &key().payload_marker(frag_seq(Family::V6, LateHeaderTail))
    );
}

#[test]
fn probes_that_need_an_unknown_address_are_not_built() {
    let b = ProbeBuilder::new(key(), ends(), Some(MACS));
    let mut buf = [0u8; crate::MAX_PROBE_FRAME];
    let mut unbuilt = Vec::new();
    for family in Family::BOTH {
        for suite in [Suite::Lan, Suite::Spoof] {
            for spec in ProbeSpec::all(family, suite) {
                if b.write(&spec, &mut buf) == 0 {
                    unbuilt.push(spec.detail().unwrap());
                }
            }
        }
    }
    unbuilt.sort();
    unbuilt.dedup();
    let mut want: Vec<String> = ["to subnet-broadcast", "to uplink-router", "to uplink-host"]
        .iter()
        .chain(&["from gateway-internal", "from gateway-external"])
        .flat_map(|d| Transport::ALL.map(|t| format!("{d} {}", t.name())))
        .collect();
    want.sort();
    assert_eq!(unbuilt, want);
}

#[test]
fn tunnels_need_the_inner_family() {
    let mut e = ends();
    e.src6 = None;
    e.dst6 = None;
    let b = ProbeBuilder::new(key(), e, None);
    let mut buf = [0u8; crate::MAX_PROBE_FRAME];
    let built: Vec<_> = ProbeSpec::all(Family::V4, Suite::Tunnel)
        .filter(|s| b.write(s, &mut buf) > 0)
        .map(|s| s.detail().unwrap())
        .collect();
    assert_eq!(built, ["gre-ipv4", "ipv4-in-ip", "vxlan"]);
}

#[test]
fn drawn_ports_are_distinct_and_stable_per_run() {
    for id in 0..2000u64 {
        let k = RunKey::open(id);
        let p = k.drawn_ports();
        assert_eq!(p, k.drawn_ports());
        assert!(p
            .iter()
            .all(|x| *x >= 1024 && !crate::catalogue::FLAG_FIXED_PORTS.contains(x)));
        assert!(p[0] != p[1] && p[1] != p[2] && p[0] != p[2]);
    }
    assert_ne!(RunKey::open(1).drawn_ports(), RunKey::open(2).drawn_ports());
}

#[test]
fn the_flags_suite_is_every_combination_with_a_valid_checksum() {
    let b = builder(None);
    let drawn = b.drawn_ports().to_vec();
    let mut buf = [0u8; crate::MAX_PROBE_FRAME];
    let mut tuples = std::collections::HashSet::new();
    for family in Family::BOTH {
        for spec in ProbeSpec::all(family, Suite::Flags) {
            let n = b.write(&spec, &mut buf);
            let o = open(&buf[..n]);
            assert_eq!(o.stop, 6);
            let (src, dst) = pair(&ends(), family).unwrap();
            let sum = pseudo_sum(src, dst, 6, o.payload.len()).add_slice(o.payload);
            assert_eq!(sum.ones_complement(), 0, "{spec:?}");
            let t = etherparse::TcpHeaderSlice::from_slice(o.payload).unwrap();
            assert_eq!(Some(o.payload[13]), spec.tcp_flags().map(|f| f.0));
            let port = t.destination_port();
            match spec.kind {
                ProbeKind::Flags { slot, .. } => {
                    let want = FLAG_PORTS_FOR_TEST
                        .get(slot as usize)
                        .copied()
                        .unwrap_or_else(|| drawn[slot as usize - 8]);
                    assert_eq!(port, want);
                    assert!(
                        tuples.insert((family, t.source_port(), port)),
                        "4-tuple reused by {spec:?}"
                    );
                }
                ProbeKind::Ecn { dst_port } => {
                    assert_eq!(port, dst_port);
                    assert_eq!(o.payload[13], 0xc2, "SYN+ECE+CWR");
                }
                _ => unreachable!(),
            }
            assert_eq!(&o.payload[20..46], &key().payload_marker(spec.seq()));
        }
    }
}

const FLAG_PORTS_FOR_TEST: [u16; 8] = [22, 53, 80, 443, 9001, 9030, 9040, 9050];

#[test]
fn icmp_codes_carry_their_code() {
    let b = builder(None);
    let mut buf = [0u8; crate::MAX_PROBE_FRAME];
    for family in Family::BOTH {
        let mut n_specs = 0;
        for spec in ProbeSpec::all(family, Suite::IcmpCodes) {
            let n = b.write(&spec, &mut buf);
            let o = open(&buf[..n]);
            let (src, dst) = pair(&ends(), family).unwrap();
            let sum = match family {
                Family::V4 => Sum16BitWords::new().add_slice(o.payload),
                Family::V6 => pseudo_sum(src, dst, 58, o.payload.len()).add_slice(o.payload),
            };
            assert_eq!(sum.ones_complement(), 0);
            assert_eq!(
                (Some(o.payload[0]), Some(o.payload[1])),
                (spec.icmp_type(), spec.icmp_code())
            );
            n_specs += 1;
        }
        assert_eq!(
            n_specs,
            if family == Family::V4 {
                5 * 256
            } else {
                10 * 256
            }
        );
    }
}

/// A NAT rewrites addresses (and ports and checksums of the outermost
/// transport); an ICMP error quotes the packet. The payload marker of every
/// composed probe survives both, read back by this crate's decoder.
#[test]
fn markers_of_composed_probes_survive_nat_and_quoting() {
    use crate::decode::{attribute, Evidence, LinkType};
    use crate::marker::MarkerKeys;
    let b = builder(None);
    let mut buf = [0u8; crate::MAX_PROBE_FRAME];
    for family in Family::BOTH {
        for suite in COMPOSED.into_iter().chain([Suite::Frag]) {
            for spec in ProbeSpec::all(family, suite) {
                if spec.kind
                    == (ProbeKind::Frag {
                        frag: FragKind::TinyHead,
                    })
                {
                    continue;
                }
                let n = b.write(&spec, &mut buf);
                let mut ip = buf[..n].to_vec();
                match family {
                    Family::V4 => {
                        ip[12..16].copy_from_slice(&[192, 0, 2, 99]);
                        ip[4..6].copy_from_slice(&[0x12, 0x34]);
                    }
                    Family::V6 => ip[8..24]
                        .copy_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 99).octets()),
                }
                let a =
                    attribute(&ip, LinkType::RawIp, &mut MarkerKeys::open()).expect("after NAT");
                assert_eq!((a.spec, a.evidence), (spec, Evidence::Payload));
                // Quoted whole in an ICMP error (RFC 4884 allows up to 576 / 1280).
                let mut err = match family {
                    Family::V4 => vec![
                        0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 198, 51, 100, 1, 192, 0, 2, 99, 3,
                        3, 0, 0, 0, 0, 0, 0,
                    ],
                    Family::V6 => {
                        let mut e = vec![0x60, 0, 0, 0, 0, 0, 58, 64];
                        e.extend_from_slice(&[
                            0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                        ]);
                        e.extend_from_slice(&ip[8..24]);
                        e.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]);
                        e
                    }
                };
                err.extend_from_slice(&ip);
                let a = attribute(&err, LinkType::RawIp, &mut MarkerKeys::open()).expect("quoted");
                assert_eq!(a.spec, spec);
            }
        }
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any flag combination to any slot: built, checksummed, and its
        /// seq gives the same probe back.
        #[test]
        fn any_flag_set(flags in any::<u8>(), slot in 0u8..11, v6 in any::<bool>()) {
            let family = if v6 { Family::V6 } else { Family::V4 };
            let spec = ProbeSpec { family, kind: ProbeKind::Flags { flags: TcpFlags(flags), slot } };
            prop_assert_eq!(ProbeSpec::from_seq(spec.seq()), Some(spec));
            let mut buf = [0u8; crate::MAX_PROBE_FRAME];
            let n = builder(None).write(&spec, &mut buf);
            let o = open(&buf[..n]);
            prop_assert_eq!(o.payload[13], flags);
        }

        /// Any chain of 1..=8 known extension headers (in any order) before
        /// any transport: etherparse walks exactly those headers.
        #[test]
        fn any_header_chain(
            picks in proptest::collection::vec(0usize..6, 1..=8),
            transport in 0usize..3,
        ) {
            let all = [
                ExtHeader::HopByHop,
                ExtHeader::DestinationOptions,
                ExtHeader::Routing(0),
                ExtHeader::Routing(4),
                ExtHeader::AtomicFragment,
                ExtHeader::Ah,
            ];
            let headers: Vec<ExtHeader> = picks.iter().map(|i| all[*i]).collect();
            let transport = Transport::ALL[transport];
            let (src, dst) = pair(&ends(), Family::V6).unwrap();
            let tag = key().header_tag(7);
            let marker = key().payload_marker(7);
            let (proto, l4) = transport_message(Family::V6, transport, None, 0, src, dst, tag, &marker, &[], &[]);
            let (first, ext) = ext_chain(&headers, proto, dst, tag);
            let ip = ip_packet(src, dst, 64, tag, first, &[], &ext, 0, &l4);
            let s = Ipv6Slice::from_slice(&ip);
            // etherparse refuses a Hop-by-Hop header that is not first (RFC 8200).
            let hbh_late = headers.iter().skip(1).any(|h| *h == ExtHeader::HopByHop);
            if hbh_late {
                prop_assert!(s.is_err());
            } else {
                let o = open(&ip);
                let want: Vec<u8> = headers.iter().map(|h| h.number()).collect();
                prop_assert_eq!(o.exts, want);
                check_transport(transport, 53, src, dst, o.payload, 7);
            }
        }
    }
}

/// The gateway's SYN-ACK to a forged source (its transparent proxy took the
/// SYN) names the spoof probe: from the probe's destination port to its
/// source port, acknowledging its sequence number + 1. Nothing else does.
#[test]
fn a_reflection_names_its_spoof_probe() {
    use crate::decode::{attribute, Evidence, LinkType};
    use crate::marker::MarkerKeys;
    for family in Family::BOTH {
        let spec = ProbeSpec {
            family,
            kind: ProbeKind::Spoof {
                source: SpoofSource::Documentation,
                transport: Transport::TcpSyn,
            },
        };
        let mut buf = [0u8; crate::MAX_PROBE_FRAME];
        let n = builder(None).write(&spec, &mut buf);
        let probe = buf[..n].to_vec();
        let o = open(&probe);
        let (forged, target) = (o.src, o.dst);
        let tag = key().header_tag(spec.seq());
        let syn_ack = |ack: u32, dport: u16| {
            let mut t = vec![0u8; 20];
            t[0..2].copy_from_slice(&443u16.to_be_bytes());
            t[2..4].copy_from_slice(&dport.to_be_bytes());
            t[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
            t[8..12].copy_from_slice(&ack.to_be_bytes());
            t[12] = 0x50;
            t[13] = TcpFlags::SYN | TcpFlags::ACK;
            let c = fold(sum(&t, pseudo(target, forged, 6, 20)));
            t[16..18].copy_from_slice(&c.to_be_bytes());
            // The gateway's own header fields: not the probe's tag.
            ip_packet(
                target,
                forged,
                63,
                key().header_tag(0xfff),
                6,
                &[],
                &[],
                0,
                &t,
            )
        };
        let sport = composed_src_port(&spec).unwrap();
        let good = syn_ack(tag.tcp_seq().wrapping_add(1), sport);
        // Unknown until the run's probes were seen going to the target.
        let mut keys = MarkerKeys::open();
        assert_eq!(attribute(&good, LinkType::RawIp, &mut keys), None);
        attribute(&probe, LinkType::RawIp, &mut keys).expect("the probe itself");
        let a = attribute(&good, LinkType::RawIp, &mut keys).expect("reflection");
        assert_eq!((a.spec, a.evidence), (spec, Evidence::Reflection));
        for bad in [
            syn_ack(tag.tcp_seq(), sport),
            syn_ack(tag.tcp_seq().wrapping_add(2), sport),
            syn_ack(tag.tcp_seq().wrapping_add(1), sport ^ 8),
        ] {
            assert_eq!(attribute(&bad, LinkType::RawIp, &mut keys), None);
        }
    }
}

/// A `spoof` UDP probe's DNS query, read by an independent parser
/// (simple-dns): id from the header tag, recursion desired, one TXT
/// question for `<marker in hex>.leaktest.invalid`, class IN.
fn check_dns_query(q: &[u8], seq: u32) {
    use simple_dns::{Packet, PacketFlag, CLASS, QCLASS, QTYPE, TYPE};
    let p = Packet::parse(q).expect("simple-dns reads the query");
    assert_eq!(p.id(), key().header_tag(seq).dns_id());
    assert!(p.has_flags(PacketFlag::RECURSION_DESIRED));
    assert!(!p.has_flags(PacketFlag::RESPONSE));
    assert_eq!(p.questions.len(), 1);
    let question = &p.questions[0];
    assert_eq!(
        question.qname.to_string(),
        format!(
            "{}.leaktest.invalid",
            hex::encode(key().payload_marker(seq))
        )
    );
    assert_eq!(question.qtype, QTYPE::TYPE(TYPE::TXT));
    assert_eq!(question.qclass, QCLASS::CLASS(CLASS::IN));
}

/// A resolver's answer to a `spoof` probe's DNS query, out of the uplink
/// to the forged source (tor's DNSPort answers TXT without data, id and
/// question copied; another resolver NXDOMAIN), built by an independent DNS
/// library, names the probe; letter case changed on the way (RFC 4343)
/// still does. A wrong id, a marker for another probe, a forged marker or
/// another source port does not.
#[test]
fn a_dns_answer_names_its_spoof_probe() {
    use crate::decode::{attribute, Evidence, LinkType};
    use crate::marker::MarkerKeys;
    use simple_dns::{Packet, RCODE};
    for family in Family::BOTH {
        let spec = ProbeSpec {
            family,
            kind: ProbeKind::Spoof {
                source: SpoofSource::Documentation,
                transport: Transport::Udp,
            },
        };
        let mut buf = [0u8; crate::MAX_PROBE_FRAME];
        let n = builder(None).write(&spec, &mut buf);
        let probe = buf[..n].to_vec();
        let o = open(&probe);
        let (forged, target) = (o.src, o.dst);
        let sport = u16::from_be_bytes([o.payload[0], o.payload[1]]);
        let query = &o.payload[8..8 + DNS_QUERY_LEN];
        let answer = |rcode: RCODE, id_delta: u16, upper: bool, from: u16| {
            let q = Packet::parse(query).unwrap();
            let mut r = Packet::new_reply(q.id().wrapping_add(id_delta));
            *r.rcode_mut() = rcode;
            r.questions = q.questions.clone();
            let mut bytes = r.build_bytes_vec().unwrap();
            if upper {
                bytes[13..13 + 2 * MARKER_LEN].make_ascii_uppercase();
            }
            let u = udp_datagram(target, forged, from, sport, &bytes);
            ip_packet(
                target,
                forged,
                63,
                key().header_tag(0xfff),
                17,
                &[],
                &[],
                0,
                &u,
            )
        };
        for (rcode, upper) in [
            (RCODE::NoError, false),
            (RCODE::NotImplemented, false),
            (RCODE::NameError, false),
            (RCODE::NoError, true),
        ] {
            let mut keys = MarkerKeys::open();
            let a = attribute(&answer(rcode, 0, upper, 53), LinkType::RawIp, &mut keys)
                .expect("the answer names its probe");
            assert_eq!((a.spec, a.evidence), (spec, Evidence::Reflection));
        }
        let mut keys = MarkerKeys::open();
        for bad in [
            answer(RCODE::NotImplemented, 1, false, 53),
            answer(RCODE::NotImplemented, 0, false, 5353),
        ] {
            assert_eq!(attribute(&bad, LinkType::RawIp, &mut keys), None);
        }
        assert!(keys.runs().is_empty(), "a rejected answer teaches no run");
        // A marker whose MAC is altered by one hex digit (its last: the
        // question's suffix, root label, type and class follow, 22 bytes).
        let mut forged_marker = answer(RCODE::NotImplemented, 0, false, 53);
        let at = forged_marker.len() - 23;
        forged_marker[at] = if forged_marker[at] == b'0' {
            b'1'
        } else {
            b'0'
        };
        assert_eq!(attribute(&forged_marker, LinkType::RawIp, &mut keys), None);
        // The same question naming a probe that is no spoof probe.
        let other = ProbeSpec {
            family,
            kind: ProbeKind::Lan {
                dest: LanDest::Private10,
                transport: Transport::Udp,
            },
        };
        let mut q = query.to_vec();
        let m = key().payload_marker(other.seq());
        hex::encode_to_slice(m, &mut q[13..13 + 2 * MARKER_LEN]).unwrap();
        q[0..2].copy_from_slice(&key().header_tag(other.seq()).dns_id().to_be_bytes());
        q[2] |= 0x80;
        let u = udp_datagram(target, forged, 53, sport, &q);
        let p = ip_packet(
            target,
            forged,
            63,
            key().header_tag(0xfff),
            17,
            &[],
            &[],
            0,
            &u,
        );
        assert_eq!(attribute(&p, LinkType::RawIp, &mut keys), None);
    }
}

/// The sender's RST to the SYN-ACK that answers a `flags` probe with SYN
/// names that probe by its source port and sequence number + 1.
#[test]
fn the_senders_reset_names_its_flags_probe() {
    use crate::decode::{attribute, Evidence, LinkType};
    use crate::marker::MarkerKeys;
    let spec = ProbeSpec {
        family: Family::V4,
        kind: ProbeKind::Flags {
            flags: TcpFlags(TcpFlags::SYN | TcpFlags::URG),
            slot: 2,
        },
    };
    let mut buf = [0u8; crate::MAX_PROBE_FRAME];
    let n = builder(None).write(&spec, &mut buf);
    let probe = buf[..n].to_vec();
    let mut keys = MarkerKeys::open();
    attribute(&probe, LinkType::RawIp, &mut keys).unwrap();
    let mut rst = probe[..40].to_vec();
    rst[2..4].copy_from_slice(&40u16.to_be_bytes());
    let seq = u32::from_be_bytes(rst[24..28].try_into().unwrap());
    rst[24..28].copy_from_slice(&seq.wrapping_add(1).to_be_bytes());
    rst[33] = TcpFlags::RST;
    let a = attribute(&rst, LinkType::RawIp, &mut keys).expect("reset");
    assert_eq!((a.spec, a.evidence), (spec, Evidence::Reset));
    rst[24..28].copy_from_slice(&seq.to_be_bytes());
    assert_ne!(
        attribute(&rst, LinkType::RawIp, &mut keys).map(|a| a.evidence),
        Some(Evidence::Reset)
    );
}

/// A run announced in advance (`leaktest watch --run`) is enough: a
/// gateway that reflects but lets no probe out still gets each reflection
/// named, RST+ACK (no listener behind the redirect) as well as SYN-ACK.
#[test]
fn a_reflection_of_an_announced_run_needs_no_marker_seen() {
    use crate::decode::{attribute, Evidence, LinkType};
    use crate::marker::MarkerKeys;
    let secret = [7u8; 16];
    let run = RunKey::shared(&secret, 0x0102030405060708);
    let spec = ProbeSpec {
        family: Family::V4,
        kind: ProbeKind::Spoof {
            source: SpoofSource::OtherPrivate,
            transport: Transport::TcpSyn,
        },
    };
    let tag = run.header_tag(spec.seq());
    let (forged, target): (IpAddr, IpAddr) = (
        "172.16.9.9".parse().unwrap(),
        "203.0.113.7".parse().unwrap(),
    );
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&443u16.to_be_bytes());
    t[2..4].copy_from_slice(&composed_src_port(&spec).unwrap().to_be_bytes());
    // A RST for want of a listener acknowledges the SYN and its 50 bytes.
    t[8..12].copy_from_slice(&tag.tcp_seq().wrapping_add(1 + 50).to_be_bytes());
    t[12] = 0x50;
    t[13] = TcpFlags::RST | TcpFlags::ACK;
    let c = fold(sum(&t, pseudo(target, forged, 6, 20)));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    let rst = ip_packet(
        target,
        forged,
        64,
        run.header_tag(0xfff),
        6,
        &[],
        &[],
        0,
        &t,
    );
    let mut keys = MarkerKeys::with_secret(secret);
    assert_eq!(
        attribute(&rst, LinkType::RawIp, &mut keys),
        None,
        "unknown run"
    );
    keys.expect_run(0x0102030405060708);
    let a = attribute(&rst, LinkType::RawIp, &mut keys).expect("announced run");
    assert_eq!((a.spec, a.evidence), (spec, Evidence::Reflection));
}

/// The decoder fuzz target's seed corpus (written by `examples/fuzz_seeds`)
/// holds a frame of every probe shape of the catalogue, each decoding to a
/// probe of the shape it was written for.
#[test]
fn fuzz_seeds_cover_every_probe_shape() {
    use crate::decode::{attribute, LinkType};
    use crate::marker::MarkerKeys;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/decode");
    let mut keys = MarkerKeys::open();
    let mut have = std::collections::BTreeSet::new();
    let frames: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("fuzz/seeds/decode")
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    // Twice: the tiny head is named by its headers once the run's markers
    // were seen going to its target.
    for _ in 0..2 {
        for bytes in &frames {
            if let Some(a) = attribute(bytes, LinkType::Ethernet, &mut keys) {
                have.insert(a.spec.shape());
            }
        }
    }
    let want: std::collections::BTreeSet<String> = Family::BOTH
        .into_iter()
        .flat_map(|f| {
            Suite::ALL
                .into_iter()
                .flat_map(move |s| ProbeSpec::all(f, s))
        })
        .map(|s| s.shape())
        .collect();
    let missing: Vec<&String> = want.difference(&have).collect();
    assert!(missing.is_empty(), "shapes without a seed: {missing:?}");
}

#[test]
fn another_host_stays_inside_the_subnet() {
    let v4 = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    assert_eq!(
        other_host4(v4("10.152.152.11"), Some(24)),
        v4("10.152.152.139")
    );
    assert_eq!(other_host4(v4("10.152.152.11"), None), v4("10.152.152.139"));
    // A /25: the flip would leave it; the first host is taken.
    assert_eq!(other_host4(v4("192.0.2.2"), Some(25)), v4("192.0.2.1"));
    assert_eq!(other_host4(v4("192.0.2.1"), Some(25)), v4("192.0.2.2"));
    // .127 flipped is .255, the /24's broadcast.
    assert_eq!(other_host4(v4("192.0.2.127"), Some(24)), v4("192.0.2.1"));
    for p in 0..=30u8 {
        for a in [v4("10.0.0.5"), v4("203.0.113.254"), v4("198.51.100.127")] {
            let o = other_host4(a, Some(p));
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            assert_ne!(o, a, "/{p}");
            assert_eq!(
                u32::from(o) & mask,
                u32::from(a) & mask,
                "/{p}: {o} outside"
            );
            assert!(
                u32::from(o) & !mask != 0 && u32::from(o) | mask != u32::MAX,
                "/{p}: {o}"
            );
        }
    }
    let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    assert_eq!(
        other_host6(v6("fd19:c33d:88bc::11"), Some(64)),
        v6("fd19:c33d:88bc::91")
    );
    assert_eq!(other_host6(v6("2001:db8::2"), Some(126)), v6("2001:db8::1"));
}

#[test]
fn composed_syns_never_share_a_source_port() {
    for family in Family::BOTH {
        let mut seen = std::collections::HashMap::new();
        for suite in COMPOSED.into_iter().chain([Suite::Frag]) {
            for spec in ProbeSpec::all(family, suite) {
                if let Some(p) = composed_src_port(&spec) {
                    assert!((23000..24000).contains(&p));
                    let head = match spec.kind {
                        ProbeKind::Frag { frag } => ProbeSpec {
                            family,
                            kind: ProbeKind::Frag {
                                frag: frag.datagram_head(),
                            },
                        },
                        _ => spec,
                    };
                    if let Some(other) = seen.insert(p, head) {
                        assert_eq!(other, head, "{spec:?} shares port {p}");
                    }
                }
            }
        }
        assert!(seen.len() > 20);
    }
}
