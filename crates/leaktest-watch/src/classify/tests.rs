//! Byte-vector tests of the rule table: each shape of exfiltration the
//! issue names decided as a leak with its rule and cause, and its
//! legitimate twin decided as what it is.

use super::*;
use crate::classify::allow::parse_allow_list;
use crate::classify::flows::Cleartext;
use crate::testutil::*;
use leaktest_wire::canary::CanaryKey;
use leaktest_wire::catalogue::ProbeKind;
use leaktest_wire::{
    Endpoints, Evidence, ProbeBuilder, ProbeSpec, RunKey, Suite, TcpFlags, L2, MAX_PROBE_FRAME,
};
use std::net::{Ipv4Addr, Ipv6Addr};

fn nets() -> Vec<IpNet> {
    vec![
        IpNet::new(IpAddr::V4(GW4), 24).unwrap(),
        IpNet::new(IpAddr::V6(GW6), 64).unwrap(),
        IpNet::new(IpAddr::V6(GW6_LL), 64).unwrap(),
    ]
}

fn cfg() -> ClassifierConfig {
    ClassifierConfig {
        strict: false,
        own_macs: vec![GW_MAC],
        own_nets: nets(),
        routes: Default::default(),
        allow: vec![],
    }
}

fn tor_list() -> Allowlist {
    let mut a = Allowlist::new();
    a.insert_with(SocketAddr::new(IpAddr::V4(NET4), 5555), Roles::OR_PORT);
    a.insert_with(SocketAddr::new(IpAddr::V6(NET6), 8443), Roles::OR_PORT);
    a
}

fn classifier() -> Classifier {
    Classifier::new(cfg(), LinkType::Ethernet, MarkerKeys::open())
}

fn decide(c: &mut Classifier, frame: &[u8]) -> Decision {
    c.classify(&Frame::whole(frame), &tor_list())
}

fn classify(frame: &[u8]) -> Decision {
    decide(&mut classifier(), frame)
}

fn leak(d: Decision) -> Leak {
    match d.class {
        Class::Leak(l) => l,
        other => panic!("expected a leak, got {other:?}"),
    }
}

fn udp_probe(key: &RunKey, dport: u16) -> (ProbeSpec, Vec<u8>) {
    let spec = ProbeSpec {
        family: Family::V4,
        kind: ProbeKind::Udp { dst_port: dport },
    };
    let m = key.payload_marker(spec.seq());
    (spec, eth4(WS4, NET4, 17, &udp(40000, dport, &m)))
}

fn client_hello() -> Vec<u8> {
    let mut r = vec![22, 3, 1, 0, 40, 1];
    r.extend([0x5a; 39]);
    r
}

#[test]
fn the_table_is_in_rule_order_and_documented() {
    for (i, (rule, _)) in TABLE.iter().enumerate() {
        assert_eq!(RULES[i], *rule);
        assert_eq!(rule.index(), i);
        assert!(!rule.about().is_empty());
    }
    assert_eq!(RULES.last(), Some(&Rule::Default));
    assert_eq!(
        serde_json::to_string(&Rule::NeighbourDiscovery).unwrap(),
        "\"neighbour-discovery\""
    );
}

#[test]
fn probe_marker_is_a_leak_even_towards_a_tor_relay() {
    let key = RunKey::open(0xfeed);
    let spec = ProbeSpec {
        family: Family::V4,
        kind: ProbeKind::Tcp {
            flags: TcpFlags(TcpFlags::SYN),
            dst_port: 5555,
        },
    };
    let m = key.payload_marker(spec.seq());
    let d = classify(&eth4(GW4, NET4, 6, &tcp(33000, 5555, TcpFlags::SYN, &m)));
    assert_eq!(d.rule, Rule::ProbeMarker);
    let l = leak(d);
    assert_eq!(l.cause, LeakCause::Probe);
    let p = l.probe.unwrap();
    assert_eq!(
        (p.spec, p.seq, p.run.run_id, p.evidence),
        (spec, spec.seq(), 0xfeed, Evidence::Payload)
    );
    assert_eq!(l.family(), LeakFamily::Ipv4);
    assert_eq!(
        (l.summary.ip.protocol, l.summary.ip.dst_port),
        (Some(IpProtocol::TCP), Some(5555))
    );
}

fn builder(key: RunKey, l2: Option<L2>) -> ProbeBuilder {
    ProbeBuilder::new(
        key,
        Endpoints {
            src4: Some(WS4),
            dst4: Some(NET4),
            src6: Some(GW6),
            dst6: Some(NET6),
        },
        l2,
    )
}

#[test]
fn every_kind_of_built_probe_is_an_attributed_leak() {
    let key = RunKey::open(0x5eed);
    for l2 in [
        Some(L2 {
            src: GW_MAC,
            dst: ROUTER_MAC,
        }),
        None,
    ] {
        let link = if l2.is_some() {
            LinkType::Ethernet
        } else {
            LinkType::RawIp
        };
        let b = builder(key, l2);
        // The relay endpoints the probes might hit are in the Tor list: no matter.
        let mut tor = Allowlist::new();
        tor.insert(SocketAddr::new(IpAddr::V4(NET4), 5555));
        tor.insert(SocketAddr::new(IpAddr::V6(NET6), 5555));
        let mut c = Classifier::new(cfg(), link, MarkerKeys::open());
        let mut buf = [0u8; MAX_PROBE_FRAME];
        let mut n_probes = 0;
        for family in Family::BOTH {
            for suite in Suite::ALL {
                for spec in ProbeSpec::all(family, suite).filter(|p| {
                    p.dst_port()
                        .is_none_or(|d| d % 997 == 0 || d == 53 || d == 5555)
                }) {
                    let n = b.write(&spec, &mut buf);
                    // Probes that need the gateway's uplink (not given
                    // here) are not built; the tiny first fragment has no
                    // marker (its headers name it: tested in leaktest-wire).
                    if n == 0
                        || spec.kind
                            == (ProbeKind::Frag {
                                frag: leaktest_wire::FragKind::TinyHead,
                            })
                    {
                        continue;
                    }
                    n_probes += 1;
                    let d = c.classify(&Frame::whole(&buf[..n]), &tor);
                    assert_eq!(d.rule, Rule::ProbeMarker, "{spec:?}");
                    let l = leak(d);
                    let p = l.probe.unwrap_or_else(|| panic!("{spec:?} not attributed"));
                    assert_eq!(
                        (p.spec, p.seq, p.run, p.evidence),
                        (spec, spec.seq(), key, Evidence::Payload)
                    );
                    assert_eq!(l.family(), LeakFamily::from(spec.family));
                }
            }
        }
        assert!(n_probes > 1000);
    }
}

#[test]
fn header_marker_only_labels_leaks_to_a_known_target() {
    let key = RunKey::open(0x4ead);
    let b = builder(
        key,
        Some(L2 {
            src: GW_MAC,
            dst: ROUTER_MAC,
        }),
    );
    let mut buf = [0u8; MAX_PROBE_FRAME];
    let spec = ProbeSpec {
        family: Family::V4,
        kind: ProbeKind::Tcp {
            flags: TcpFlags(TcpFlags::SYN),
            dst_port: 443,
        },
    };
    let n = b.write(&spec, &mut buf);
    // Headers only (a gateway that stripped the payload).
    let mut headers_only = buf[..14 + 40].to_vec();
    headers_only[14 + 2..14 + 4].copy_from_slice(&40u16.to_be_bytes());
    let mut c = classifier();
    // Unknown run: a leak, unattributed.
    let l = leak(decide(&mut c, &headers_only));
    assert_eq!((l.cause, l.probe), (LeakCause::Unexpected, None));
    // Once a payload marker of the run went to this target, the headers label it.
    assert_eq!(decide(&mut c, &buf[..n]).rule, Rule::ProbeMarker);
    let d = decide(&mut c, &headers_only);
    assert_eq!(d.rule, Rule::Default, "labelling does not change the rule");
    let p = leak(d).probe.expect("header attribution");
    assert_eq!((p.spec, p.evidence), (spec, Evidence::Header));
    // The same headers to another destination are not labelled.
    let mut elsewhere = headers_only.clone();
    elsewhere[14 + 16..14 + 20].copy_from_slice(&[203, 0, 113, 99]);
    assert_eq!(leak(decide(&mut c, &elsewhere)).probe, None);
}

#[test]
fn header_matching_never_makes_tor_a_leak() {
    // A Tor segment whose header fields happen to equal a probe's header
    // marker: the Tor rule decides before any attribution is tried.
    let key = RunKey::open(0x70);
    let spec = ProbeSpec {
        family: Family::V4,
        kind: ProbeKind::Tcp {
            flags: TcpFlags(TcpFlags::ACK),
            dst_port: 5555,
        },
    };
    let tag = key.header_tag(spec.seq());
    let mut c = classifier();
    c.keys.learn_target(key, IpAddr::V4(NET4));
    let mut syn = tcp(tag.tcp_src_port(1), 5555, TcpFlags::SYN, &[]);
    syn[4..8].copy_from_slice(&tag.tcp_seq().wrapping_sub(1).to_be_bytes());
    assert_eq!(decide(&mut c, &eth4(GW4, NET4, 6, &syn)).rule, Rule::Tor);
    let mut ack = tcp(tag.tcp_src_port(1), 5555, TcpFlags::ACK, &[]);
    ack[4..8].copy_from_slice(&tag.tcp_seq().to_be_bytes());
    let d = decide(&mut c, &eth4(GW4, NET4, 6, &ack));
    assert!(matches!(d.class, Class::Tor(_)), "{d:?}");
}

#[test]
fn probe_quoted_in_an_icmp_error_is_attributed() {
    let key = RunKey::open(7);
    let (spec, probe) = udp_probe(&key, 53);
    let mut body = vec![0u8; 4];
    body.extend_from_slice(&probe[14..]);
    let l = leak(classify(&eth4(GW4, WS4, 1, &icmp(3, 3, &body))));
    assert_eq!(l.probe.map(|p| p.spec), Some(spec));
    assert_eq!(
        (l.summary.ip.protocol, l.summary.ip.icmp_type),
        (Some(IpProtocol::ICMP), Some(3))
    );
}

/// A resolver behind the gateway (its DNSPort) answers a `spoof` probe's
/// DNS query to the forged source, out of the uplink, from the target's
/// port 53: a leak, named as that probe's reflection; the forged address
/// is not taken for a target of the run.
#[test]
fn a_dns_answer_to_a_forged_source_is_a_reflection() {
    use leaktest_wire::catalogue::{SpoofSource, Transport};
    let key = RunKey::open(0xd45);
    let spec = ProbeSpec {
        family: Family::V4,
        kind: ProbeKind::Spoof {
            source: SpoofSource::Documentation,
            transport: Transport::Udp,
        },
    };
    let tag = key.header_tag(spec.seq());
    let mut answer =
        leaktest_wire::compose::dns_query(tag, &key.payload_marker(spec.seq())).to_vec();
    answer[2] |= 0x80; // QR: an answer
    answer[3] = 4; // NOTIMPL
    let forged = Ipv4Addr::new(198, 51, 100, 9);
    let mut c = classifier();
    let d = decide(&mut c, &eth4(NET4, forged, 17, &udp(53, 40000, &answer)));
    assert_eq!(d.rule, Rule::ProbeMarker);
    let l = leak(d);
    let p = l.probe.expect("attributed");
    assert_eq!((p.spec, p.evidence), (spec, Evidence::Reflection));
    assert!(c.keys().runs_for(&IpAddr::V4(forged)).is_empty());
    // The same bytes from another port are no answer of a resolver.
    let l = leak(decide(
        &mut c,
        &eth4(NET4, forged, 17, &udp(5353, 40000, &answer)),
    ));
    assert_eq!(l.probe, None);
}

#[test]
fn shared_key_marker_needs_the_secret() {
    let secret = [9u8; 16];
    let key = RunKey::shared(&secret, 5);
    let (spec, f) = udp_probe(&key, 1234);
    let l = leak(classify(&f));
    assert_eq!((l.cause, l.probe), (LeakCause::Unexpected, None));
    let mut c = Classifier::new(cfg(), LinkType::Ethernet, MarkerKeys::with_secret(secret));
    let l = leak(decide(&mut c, &f));
    assert_eq!(l.probe.map(|p| p.spec), Some(spec));
    assert_eq!(c.keys().runs().len(), 1);
}

#[test]
fn marker_outside_the_catalogue_is_not_attributed() {
    let m = RunKey::open(1).payload_marker(u32::MAX);
    assert_eq!(
        leak(classify(&eth4(GW4, NET4, 17, &udp(1, 2, &m)))).probe,
        None
    );
}

#[test]
fn forged_markers_cost_a_bounded_number_of_checks() {
    // A frame stuffed with 150 forged open-mode markers of distinct runs.
    let mut payload = Vec::new();
    for r in 0..150u64 {
        let mut m = RunKey::open(r).payload_marker(3);
        m[25] ^= 1;
        payload.extend_from_slice(&m);
    }
    let mut c = classifier();
    let l = leak(decide(&mut c, &eth4(GW4, NET4, 17, &udp(1, 2, &payload))));
    assert_eq!((l.cause, l.probe), (LeakCause::Unexpected, None));
    assert!(c.keys().runs().is_empty());
}

fn with_canaries() -> (Classifier, CanaryLedger) {
    let ledger = CanaryLedger::new(CanaryKey::new(GW_MAC, [1; 16], 77));
    (classifier().with_canaries(ledger.clone()), ledger)
}

#[test]
fn canaries_cannot_be_borrowed() {
    let (mut c, mut l) = with_canaries();
    let (id, f) = l.next_frame();
    l.mark_sent(id, 0);
    c.canaries_mut().unwrap().mark_sent(id, 0);
    // The attack: the injected canary, sniffed, sent again to the
    // next hop with 93 bytes of data appended.
    let mut replay = f.to_vec();
    replay[0..6].copy_from_slice(&ROUTER_MAC);
    replay.extend_from_slice(&[b'D'; 93]);
    let d = decide(&mut c, &replay);
    assert_eq!(d.rule, Rule::Canary);
    assert_eq!(leak(d).cause, LeakCause::ForgedCanary(Forgery::Altered));
    let d = decide(&mut c, &f);
    assert_eq!((d.class, d.rule), (Class::Canary, Rule::Canary));
    // Seen once only.
    assert_eq!(
        leak(decide(&mut c, &f)).cause,
        LeakCause::ForgedCanary(Forgery::Repeated)
    );
    // Extended, truncated, tagged, another watcher's.
    let (id, g) = c.canaries().unwrap().next_frame();
    c.canaries_mut().unwrap().mark_sent(id, 0);
    let mut ext = g.to_vec();
    ext.push(0);
    assert_eq!(
        leak(decide(&mut c, &ext)).cause,
        LeakCause::ForgedCanary(Forgery::Extended)
    );
    assert_eq!(
        leak(decide(&mut c, &g[..40])).cause,
        LeakCause::ForgedCanary(Forgery::Truncated)
    );
    let mut tagged = g[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0, 0, 5]);
    tagged.extend_from_slice(&g[12..]);
    assert_eq!(
        leak(decide(&mut c, &tagged)).cause,
        LeakCause::ForgedCanary(Forgery::Tagged)
    );
    let other = CanaryKey::new(GW_MAC, [2; 16], 77).frame(0);
    assert_eq!(
        leak(decide(&mut c, &other)).cause,
        LeakCause::ForgedCanary(Forgery::Foreign)
    );
    assert_eq!(decide(&mut c, &g).class, Class::Canary);
    // A probe marker wins even inside a canary-looking frame.
    let mut marked = g.to_vec();
    marked.extend_from_slice(&RunKey::open(3).payload_marker(5));
    assert_eq!(leak(decide(&mut c, &marked)).cause, LeakCause::Probe);
    // Without a ledger, nothing of the EtherType is a canary.
    assert!(matches!(classify(&g).class, Class::Leak(_)));
}

#[test]
fn tor_needs_tcp_a_tor_endpoint_our_source_and_a_tor_flow() {
    let mut c = classifier();
    let syn = eth4(GW4, NET4, 6, &tcp(40001, 5555, TcpFlags::SYN, &[]));
    let d = decide(&mut c, &syn);
    assert_eq!(d.rule, Rule::Tor);
    match d.class {
        Class::Tor(t) => {
            assert_eq!(t.endpoint, SocketAddr::new(IpAddr::V4(NET4), 5555));
            assert_eq!(t.followed, Followed::FromStart);
        }
        other => panic!("{other:?}"),
    }
    let mut hello = tcp(40001, 5555, 0x18, &client_hello());
    hello[4..8].copy_from_slice(&1u32.to_be_bytes());
    assert!(matches!(
        decide(&mut c, &eth4(GW4, NET4, 6, &hello)).class,
        Class::Tor(_)
    ));
    let f6 = eth6(GW6, NET6, 6, &tcp(40001, 8443, 0x10, &[]));
    assert!(matches!(decide(&mut c, &f6).class, Class::Tor(_)));
    // Other port, UDP, a forwarded (not our source) packet: leaks by default.
    for f in [
        eth4(GW4, NET4, 6, &tcp(40001, 5556, 0x10, &[])),
        eth4(GW4, NET4, 17, &udp(40001, 5555, &[])),
        eth4(WS4, NET4, 6, &tcp(40001, 5555, 0x02, &[])),
        eth6(GW6, NET6, 6, &tcp(40001, 5555, 0x02, &[])),
    ] {
        let d = decide(&mut c, &f);
        assert_eq!(
            (d.rule, leak(d).cause),
            (Rule::Default, LeakCause::Unexpected)
        );
    }
}

#[test]
fn cleartext_http_to_a_relay_is_a_leak() {
    // The issue: cleartext HTTP to an allowlisted relay's ORPort (and a DirPort).
    let mut c = classifier();
    decide(
        &mut c,
        &eth4(GW4, NET4, 6, &tcp(40002, 5555, TcpFlags::SYN, &[])),
    );
    let mut get = tcp(
        40002,
        5555,
        0x18,
        b"GET /secret HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    get[4..8].copy_from_slice(&1u32.to_be_bytes());
    let d = decide(&mut c, &eth4(GW4, NET4, 6, &get));
    assert_eq!(d.rule, Rule::Tor);
    assert_eq!(
        leak(d).cause,
        LeakCause::NotTor(Violation::Cleartext(Cleartext::HttpRequest))
    );
    // A flow already open when the watch started, too.
    let mid = eth4(
        GW4,
        NET4,
        6,
        &tcp(40003, 5555, 0x18, b"POST /x HTTP/1.0\r\n\r\n"),
    );
    assert_eq!(
        leak(decide(&mut c, &mid)).cause,
        LeakCause::NotTor(Violation::Cleartext(Cleartext::HttpRequest))
    );
    // A relay's DirPort is not in a client's Tor list: the request is unexpected.
    let dir = eth4(
        GW4,
        NET4,
        6,
        &tcp(40004, 9030, 0x18, b"GET /tor/keys HTTP/1.0\r\n\r\n"),
    );
    assert_eq!(leak(decide(&mut c, &dir)).cause, LeakCause::Unexpected);
    // A "TCP" header of 4 bytes to a relay.
    let short = eth4(GW4, NET4, 6, &[0x9c, 0x41, 0x15, 0xb3]);
    assert_eq!(
        leak(decide(&mut c, &short)).cause,
        LeakCause::NotTor(Violation::MalformedTcp)
    );
    assert_eq!(c.flows().stats().violations, 3);
}

#[test]
fn allow_entries_by_kind_counted_apart_from_tor() {
    let (entries, tor) = parse_allow_list(&[
        "udp:198.51.100.0/24:51820",
        "tls:203.0.113.9:443",
        "tor:203.0.113.8:9001",
    ])
    .unwrap();
    let mut c = Classifier::new(
        ClassifierConfig {
            allow: entries,
            ..cfg()
        },
        LinkType::Ethernet,
        MarkerKeys::open(),
    );
    let vpn = Ipv4Addr::new(198, 51, 100, 77);
    let wg = eth4(GW4, vpn, 17, &udp(40000, 51820, &[4, 0, 0, 0, 1, 2, 3]));
    let d = c.classify(&Frame::whole(&wg), &tor);
    assert_eq!(d.rule, Rule::Allow);
    assert!(matches!(
        d.class,
        Class::Allowed(AllowedFrame { entry: 0, .. })
    ));
    // TCP to the WireGuard entry is not allowed; nor UDP from a forwarded source.
    let d = c.classify(
        &Frame::whole(&eth4(GW4, vpn, 6, &tcp(1, 51820, 2, &[]))),
        &tor,
    );
    assert_eq!(d.rule, Rule::Default);
    let d = c.classify(
        &Frame::whole(&eth4(WS4, vpn, 17, &udp(1, 51820, b"x"))),
        &tor,
    );
    assert_eq!(d.rule, Rule::Default);
    // A tls: entry wants TLS.
    let tls_ep = Ipv4Addr::new(203, 0, 113, 9);
    c.classify(
        &Frame::whole(&eth4(GW4, tls_ep, 6, &tcp(40005, 443, 2, &[]))),
        &tor,
    );
    let mut get = tcp(40005, 443, 0x18, b"GET / HTTP/1.1\r\n\r\n");
    get[4..8].copy_from_slice(&1u32.to_be_bytes());
    let d = c.classify(&Frame::whole(&eth4(GW4, tls_ep, 6, &get)), &tor);
    assert_eq!(
        (d.rule, leak(d).cause),
        (
            Rule::Allow,
            LeakCause::NotTor(Violation::Cleartext(Cleartext::HttpRequest))
        )
    );
    // tor: joins the Tor list.
    let d = c.classify(
        &Frame::whole(&eth4(
            GW4,
            Ipv4Addr::new(203, 0, 113, 8),
            6,
            &tcp(1, 9001, 2, &[]),
        )),
        &tor,
    );
    assert_eq!(d.rule, Rule::Tor);
}

#[test]
fn tor_on_a_raw_ip_link() {
    let p = ipv4(GW4, NET4, 6, 64, &tcp(40001, 5555, 0x10, &[]));
    let mut c = Classifier::new(cfg(), LinkType::RawIp, MarkerKeys::open());
    assert!(matches!(
        c.classify(&Frame::whole(&p), &tor_list()).class,
        Class::Tor(_)
    ));
    // The same bytes read as Ethernet are garbage, hence a leak.
    assert!(matches!(classify(&p).class, Class::Leak(_)));
}

#[test]
fn housekeeping_by_content_with_its_rule() {
    let d = classify(&arp_frame(
        GW_MAC,
        1,
        GW_MAC,
        GW4,
        Ipv4Addr::new(198, 51, 100, 1),
    ));
    assert_eq!(
        (d.class, d.rule),
        (Class::Housekeeping(HousekeepingKind::Arp), Rule::Arp)
    );
    // The DHCP exfiltration: to an internet address.
    let mut named = dhcp4_discover(GW_MAC);
    named.truncate(named.len() - 1);
    named.extend_from_slice(&[12, 9]);
    named.extend_from_slice(b"SECRETDAT");
    named.push(255);
    let d = classify(&eth4(GW4, NET4, 17, &udp(68, 67, &named)));
    assert_eq!(d.rule, Rule::Dhcpv4);
    assert!(matches!(
        leak(d).cause,
        LeakCause::HousekeepingShaped(HousekeepingKind::Dhcpv4, _)
    ));
    // The off-link neighbour solicitation with data after its options.
    let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&"2001:db8:1::1".parse::<Ipv6Addr>().unwrap().octets());
    ns.extend_from_slice(&[1, 1]);
    ns.extend_from_slice(&GW_MAC);
    let good = eth(
        GW_MAC,
        [0x33, 0x33, 0xff, 0, 0, 1],
        0x86dd,
        &ipv6(GW6, "ff02::1:ff00:1".parse().unwrap(), 58, 255, &ns),
    );
    assert_eq!(
        classify(&good).class,
        Class::Housekeeping(HousekeepingKind::NeighbourSolicitation)
    );
    let mut bad = ns.clone();
    bad.extend_from_slice(b"payload after the options");
    let off_link = eth(GW_MAC, ROUTER_MAC, 0x86dd, &ipv6(GW6, NET6, 58, 255, &bad));
    let d = classify(&off_link);
    assert_eq!(d.rule, Rule::NeighbourDiscovery);
    assert!(matches!(
        leak(d).cause,
        LeakCause::HousekeepingShaped(HousekeepingKind::NeighbourSolicitation, _)
    ));
}

#[test]
fn strict_makes_housekeeping_a_leak_and_tor_stays_tor() {
    let mut c = Classifier::new(
        ClassifierConfig {
            strict: true,
            ..cfg()
        },
        LinkType::Ethernet,
        MarkerKeys::open(),
    );
    let d = decide(
        &mut c,
        &arp_frame(GW_MAC, 1, GW_MAC, GW4, Ipv4Addr::new(198, 51, 100, 1)),
    );
    assert_eq!(
        (d.rule, leak(d).cause),
        (
            Rule::Arp,
            LeakCause::StrictHousekeeping(HousekeepingKind::Arp)
        )
    );
    let f = eth4(GW4, NET4, 6, &tcp(40001, 5555, 0x10, &[]));
    assert!(matches!(decide(&mut c, &f).class, Class::Tor(_)));
}

#[test]
fn anything_else_is_a_leak_with_its_details() {
    let l = leak(classify(&eth6(GW6, NET6, 17, &udp(5353, 443, b"quic"))));
    assert_eq!(l.family(), LeakFamily::Ipv6);
    let ip = l.summary.ip;
    assert_eq!(
        (ip.protocol, ip.src_port, ip.dst_port),
        (Some(IpProtocol::UDP), Some(5353), Some(443))
    );
    let l = leak(classify(&eth(
        GW_MAC,
        [1, 0x80, 0xc2, 0, 0, 0xe],
        0x88cc,
        &[0; 40],
    )));
    assert_eq!(
        (l.family(), l.summary.ethertype),
        (LeakFamily::Other, Some(0x88cc))
    );
    assert!(matches!(classify(&[]).class, Class::Leak(_)));
    assert!(matches!(classify(&[0x45]).class, Class::Leak(_)));
}

proptest::proptest! {
    #[test]
    fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
                    raw in proptest::prelude::any::<bool>()) {
        let link = if raw { LinkType::RawIp } else { LinkType::Ethernet };
        let (c, _) = with_canaries();
        let mut c = Classifier { link, ..c };
        c.classify(&Frame::whole(&bytes), &tor_list());
    }
}

#[test]
fn allow_net_takes_every_frame_to_its_network_first_probes_included() {
    let lan = crate::classify::allow::parse_allow_net("203.0.113.0/24").unwrap();
    assert_eq!(lan.to_string(), "net:203.0.113.0/24");
    let mut c = Classifier::new(
        ClassifierConfig {
            allow: vec![lan],
            ..cfg()
        },
        LinkType::Ethernet,
        MarkerKeys::open(),
    );
    let tor = Allowlist::new();
    // A probe to the network: allowed, not a leak.
    let key = RunKey::open(0xabcd);
    let (_, frame) = udp_probe(&key, 53);
    let d = c.classify(&Frame::whole(&frame), &tor);
    assert_eq!(d.rule, Rule::AllowNet);
    assert!(matches!(
        d.class,
        Class::Allowed(AllowedFrame { entry: 0, .. })
    ));
    // Any protocol, from the gateway or forwarded.
    let icmp = eth4(
        WS4,
        Ipv4Addr::new(203, 0, 113, 9),
        1,
        &[8, 0, 0, 0, 0, 1, 0, 1],
    );
    assert_eq!(c.classify(&Frame::whole(&icmp), &tor).rule, Rule::AllowNet);
    // Elsewhere: the rules as before.
    let other = eth4(WS4, Ipv4Addr::new(192, 0, 2, 9), 17, &udp(1, 53, b"x"));
    assert_eq!(c.classify(&Frame::whole(&other), &tor).rule, Rule::Default);
    for bad in ["0.0.0.0/0", "10.0.0.0/33", "lan", "::/0"] {
        assert!(
            crate::classify::allow::parse_allow_net(bad).is_err(),
            "{bad}"
        );
    }
    assert!(crate::classify::allow::parse_allow_net("[fd00::/8]").is_ok());
}
