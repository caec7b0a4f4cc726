//! End to end through a veth pair between two namespaces this test creates
//! (with `leaktest-netns`: unique names, deleted on drop): the route/neighbour lookup resolves the
//! peer with one datagram to its own address, both senders send a small
//! plan, and a plain AF_PACKET socket in the peer namespace (no leaktest
//! code on the receiving side) records what arrived. Every planned probe
//! must arrive exactly once, and nothing but ARP/NDP and the one
//! resolution datagram besides.
//!
//! Needs root (namespaces, AF_PACKET); skipped with a message otherwise.

use leaktest_netns::{Netns, Topology};
use leaktest_send::{
    lookup_path, FrameSender, Lane, PacketSender, PathOptions, Plan, Rate, RawIpSender, RunConfig,
};
use leaktest_wire::{
    attribute, Endpoints, Family, LinkType, MarkerKeys, ProbeBuilder, ProbeSpec, RunKey, Suite, L2,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const WS4: &str = "10.152.152.11";
const GW4: &str = "10.152.152.10";
const WS6: &str = "fd19:c33d:88bc::11";
const GW6: &str = "fd19:c33d:88bc::10";

fn is_root() -> bool {
    leaktest_netns::require_root("leaktest-send veth tests")
}

/// Two namespaces joined by a veth; `leaktest-netns` deletes them on drop
/// (also when a test fails).
struct Pair {
    _topo: Topology,
    ws: Arc<Netns>,
    gw: Arc<Netns>,
    ws_if: String,
    gw_if: String,
}

impl Pair {
    fn new() -> Pair {
        let mut topo = Topology::new("lts");
        let ws = topo.add("w").expect("workstation namespace");
        let gw = topo.add("g").expect("gateway namespace");
        let ws_if = format!("{}w", topo.prefix());
        let gw_if = format!("{}g", topo.prefix());
        leaktest_netns::veth(&ws, &ws_if, &gw, &gw_if).expect("veth");
        for (ns, ifn, a4, a6) in [(&ws, &ws_if, WS4, WS6), (&gw, &gw_if, GW4, GW6)] {
            ns.add_addr(ifn, &format!("{a4}/24")).unwrap();
            ns.add_addr(ifn, &format!("{a6}/64")).unwrap();
        }
        Pair {
            _topo: topo,
            ws,
            gw,
            ws_if,
            gw_if,
        }
    }
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_ns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    ns.thread(f).expect("thread in namespace")
}

/// A plain AF_PACKET capture of everything arriving on one interface.
struct Capture {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(Vec<Vec<u8>>, u32)>,
}

impl Capture {
    fn start(ns: &Netns, ifname: &str) -> Capture {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let ifname = ifname.to_string();
        let st = stop.clone();
        let handle = in_ns(ns, move || {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket(2), checked below.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32) };
            assert!(
                fd >= 0,
                "capture socket: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: a fresh descriptor we own.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let c = std::ffi::CString::new(ifname).unwrap();
            // SAFETY: valid C string.
            let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
            // SAFETY: plain data.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = index as i32;
            let rcvbuf: libc::c_int = 64 << 20;
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            // SAFETY: valid fd, pointers and sizes.
            unsafe {
                assert_eq!(
                    libc::bind(
                        fd.as_raw_fd(),
                        (&sll as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32
                    ),
                    0
                );
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&rcvbuf as *const libc::c_int).cast(),
                    4,
                );
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&tv as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as u32,
                );
            }
            ready_tx.send(()).unwrap();
            let mut frames = Vec::new();
            let mut buf = vec![0u8; 65536];
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut quiet_since: Option<Instant> = None;
            while Instant::now() < deadline {
                // SAFETY: plain data.
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut flen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                // SAFETY: valid buffers.
                let n = unsafe {
                    libc::recvfrom(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&mut from as *mut libc::sockaddr_ll).cast(),
                        &mut flen,
                    )
                };
                if n < 0 {
                    // Stop once asked to and nothing came for 200 ms twice over.
                    if st.load(Ordering::Relaxed) {
                        let q = *quiet_since.get_or_insert_with(Instant::now);
                        if q.elapsed() >= Duration::from_millis(300) {
                            break;
                        }
                    }
                    continue;
                }
                quiet_since = None;
                if from.sll_pkttype != libc::PACKET_OUTGOING {
                    frames.push(buf[..n as usize].to_vec());
                }
            }
            // tpacket_stats { packets, drops }
            let mut stats = [0u32; 2];
            let mut slen = 8u32;
            // SAFETY: valid fd and an 8-byte buffer.
            unsafe {
                libc::getsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_STATISTICS,
                    stats.as_mut_ptr().cast(),
                    &mut slen,
                );
            }
            (frames, stats[1])
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("capture ready");
        Capture { stop, handle }
    }

    fn finish(self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::Relaxed);
        let (frames, drops) = self.handle.join().expect("capture thread");
        assert_eq!(
            drops, 0,
            "the test capture dropped frames: the check would be void"
        );
        frames
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Packet,
    Raw,
}

/// Resolves both paths and sends `suites` for both families from the
/// workstation namespace, from two threads that share the plan; returns the
/// paths' MAC pairs.
fn send_from_ws(pair: &Pair, kind: Kind, key: RunKey, suites: &'static [Suite]) -> Vec<L2> {
    in_ns(&pair.ws, move || {
        let mut workers: Vec<Vec<Lane>> = vec![Vec::new(), Vec::new()];
        let mut macs = Vec::new();
        for (family, target) in [(Family::V4, GW4), (Family::V6, GW6)] {
            let target: IpAddr = target.parse().unwrap();
            let path = lookup_path(
                target,
                &PathOptions {
                    link_layer: kind == Kind::Packet,
                    // The peer is on the link: this test probes it directly.
                    allow_on_link: true,
                    ..PathOptions::default()
                },
            )
            .expect("path to the gateway");
            assert_eq!(path.next_hop, target, "on-link target");
            assert!(!path.via_gateway);
            let ends = match (path.source, target) {
                (IpAddr::V4(s), IpAddr::V4(d)) => Endpoints {
                    src4: Some(s),
                    dst4: Some(d),
                    ..Endpoints::default()
                },
                (IpAddr::V6(s), IpAddr::V6(d)) => Endpoints {
                    src6: Some(s),
                    dst6: Some(d),
                    ..Endpoints::default()
                },
                _ => panic!("family mismatch"),
            };
            let l2 = match kind {
                Kind::Packet => {
                    let m = path.macs.expect("resolved MACs");
                    let l2 = L2 {
                        src: m.src,
                        dst: m.dst,
                    };
                    macs.push(l2);
                    Some(l2)
                }
                Kind::Raw => None,
            };
            for lanes in &mut workers {
                let sender: Box<dyn FrameSender> = match kind {
                    Kind::Packet => {
                        Box::new(PacketSender::open(path.ifindex, path.ethernet).unwrap())
                    }
                    Kind::Raw => {
                        Box::new(RawIpSender::open(target.is_ipv6(), None, path.ifindex).unwrap())
                    }
                };
                lanes.push(Lane {
                    family,
                    writer: Box::new(ProbeBuilder::new(key, ends, l2)),
                    sender,
                });
            }
        }
        let plan = Plan::new(&Family::BOTH, suites);
        let cfg = RunConfig {
            rate: Rate::Max,
            ..RunConfig::default()
        };
        let stats = leaktest_send::run(&plan, &mut workers, &cfg, None, &mut |_| {}).unwrap();
        assert!(stats.complete);
        assert_eq!(stats.sent_total(), plan.total());
        assert_eq!(stats.refused_total(), 0);
        macs
    })
    .join()
    .expect("sender thread")
}

/// Checks that `frames` hold every probe of `suites` (both families) exactly
/// once, and that everything else is ARP, NDP or the resolution datagram.
fn check(frames: &[Vec<u8>], mut keys: MarkerKeys, key: RunKey, suites: &[Suite]) -> usize {
    keys.learn(key);
    let mut seen: HashMap<u32, u32> = HashMap::new();
    let mut resolution_datagrams = 0;
    for f in frames {
        if let Some(a) = attribute(f, LinkType::Ethernet, &mut keys) {
            assert_eq!(a.run.run_id, key.run_id);
            assert_eq!(ProbeSpec::from_seq(a.seq), Some(a.spec));
            *seen.entry(a.seq).or_default() += 1;
            continue;
        }
        let ethertype = u16::from_be_bytes([f[12], f[13]]);
        match ethertype {
            0x0806 => {}                                                                // ARP
            0x86dd if f.len() > 54 && f[20] == 58 && (133..=137).contains(&f[54]) => {} // NDP
            0x0800 if f[23] == 17 && u16::from_be_bytes([f[36], f[37]]) == 9 => {
                // The one resolution datagram, to the next hop itself.
                assert_eq!(
                    &f[30..34],
                    &GW4.parse::<std::net::Ipv4Addr>().unwrap().octets()
                );
                resolution_datagrams += 1;
            }
            0x86dd if f[20] == 17 && u16::from_be_bytes([f[56], f[57]]) == 9 => {
                assert_eq!(
                    &f[38..54],
                    &GW6.parse::<std::net::Ipv6Addr>().unwrap().octets()
                );
                resolution_datagrams += 1;
            }
            0x86dd if f[20] == 58 || f[20] == 0 => {} // other ICMPv6 / MLD (hop-by-hop)
            0x0800 if f[23] == 2 => {}                // IGMP
            _ => panic!("unexpected frame arrived: {:02x?}", &f[..f.len().min(64)]),
        }
    }
    for family in Family::BOTH {
        for &suite in suites {
            for spec in ProbeSpec::all(family, suite) {
                assert_eq!(
                    seen.get(&spec.seq()).copied(),
                    Some(1),
                    "probe {spec:?} must arrive exactly once"
                );
            }
        }
    }
    let planned: usize = suites
        .iter()
        .map(|s| {
            Family::BOTH
                .iter()
                .map(|f| s.probe_count(*f) as usize)
                .sum::<usize>()
        })
        .sum();
    assert_eq!(seen.len(), planned, "only planned probes arrive");
    resolution_datagrams
}

const SMALL: &[Suite] = &[Suite::Icmp, Suite::Ip, Suite::Frag];

#[test]
fn packet_sender_resolves_the_peer_and_delivers_every_probe_once() {
    if !is_root() {
        return;
    }
    let pair = Pair::new();
    let gw_mac = pair.gw.mac(&pair.gw_if).unwrap();
    let ws_mac = pair.ws.mac(&pair.ws_if).unwrap();
    let cap = Capture::start(&pair.gw, &pair.gw_if);
    let key = RunKey::open(0x5e4d_0000_0000_0001);
    let macs = send_from_ws(&pair, Kind::Packet, key, SMALL);
    let frames = cap.finish();
    for l2 in &macs {
        assert_eq!(l2.dst, gw_mac, "next hop MAC from the neighbour table");
        assert_eq!(l2.src, ws_mac);
    }
    let datagrams = check(&frames, MarkerKeys::open(), key, SMALL);
    // Fresh namespaces have empty neighbour tables: one datagram per family.
    assert_eq!(datagrams, 2, "exactly one resolution datagram per family");
}

#[test]
fn raw_ip_sender_goes_through_the_stack_and_delivers_every_probe_once() {
    if !is_root() {
        return;
    }
    let pair = Pair::new();
    // Resolve the neighbours first (the raw path never provokes resolution
    // and the kernel would drop probes queued beyond its unresolved queue).
    send_from_ws(&pair, Kind::Packet, RunKey::open(1), &[Suite::Frag]);
    let cap = Capture::start(&pair.gw, &pair.gw_if);
    let key = RunKey::shared(&[0x42; 16], 0x5e4d_0000_0000_0002);
    send_from_ws(&pair, Kind::Raw, key, SMALL);
    let frames = cap.finish();
    assert_eq!(
        check(&frames, MarkerKeys::with_secret([0x42; 16]), key, SMALL),
        0
    );
}

#[test]
fn unroutable_and_local_targets_are_clear_errors() {
    if !is_root() {
        return;
    }
    let pair = Pair::new();
    // The gateway stops answering ARP: its address stays unresolved.
    pair.gw
        .sysctl(&format!("net.ipv4.conf.{}.arp_ignore", pair.gw_if), "8")
        .unwrap();
    let r = in_ns(&pair.ws, || {
        let opts = PathOptions {
            link_layer: true,
            resolve_timeout: Some(Duration::from_millis(300)),
            allow_on_link: true,
            ..PathOptions::default()
        };
        let strict = PathOptions {
            allow_on_link: false,
            ..opts.clone()
        };
        (
            lookup_path("203.0.113.7".parse().unwrap(), &opts).map(|_| ()),
            lookup_path(WS4.parse().unwrap(), &opts).map(|_| ()),
            // On link but not answering: resolution gives up after the timeout.
            lookup_path(GW4.parse().unwrap(), &opts).map(|_| ()),
            // The gateway's own address, without --on-link: refused, and
            // before any resolution datagram is sent.
            lookup_path(GW4.parse().unwrap(), &strict).map(|_| ()),
        )
    })
    .join()
    .unwrap();
    let e = r.0.unwrap_err().to_string();
    assert!(e.contains("no route to 203.0.113.7"), "{e}");
    let e = r.1.unwrap_err().to_string();
    assert!(e.contains("address of this host"), "{e}");
    let e = r.2.unwrap_err().to_string();
    assert!(
        e.contains("no MAC address for next hop 10.152.152.10"),
        "{e}"
    );
    let e = r.3.unwrap_err().to_string();
    assert!(
        e.contains("is on the link of") && e.contains("beyond the gateway"),
        "{e}"
    );
}

#[test]
fn routed_targets_go_to_the_gateways_mac_also_via_an_ipv6_link_local_gateway() {
    if !is_root() {
        return;
    }
    let pair = Pair::new();
    // The "internet" addresses live on the gateway's loopback; the
    // workstation reaches them through the gateway, IPv6 via its link-local
    // address (as a router advertisement would set it up).
    pair.gw.add_addr("lo", "203.0.113.1/32").unwrap();
    pair.gw.add_addr("lo", "2001:db8::1/128").unwrap();
    pair.gw.add_addr(&pair.gw_if, "fe80::10/64").unwrap();
    pair.ws
        .route_add("203.0.113.0/24", Some(GW4.parse().unwrap()), None)
        .unwrap();
    pair.ws
        .ip([
            "-6",
            "route",
            "add",
            "2001:db8::/32",
            "via",
            "fe80::10",
            "dev",
            pair.ws_if.as_str(),
        ])
        .unwrap();
    let gw_mac = pair.gw.mac(&pair.gw_if).unwrap();
    let paths = in_ns(&pair.ws, || {
        let opts = PathOptions {
            link_layer: true,
            ..PathOptions::default()
        };
        (
            lookup_path("203.0.113.1".parse().unwrap(), &opts).unwrap(),
            lookup_path("2001:db8::1".parse().unwrap(), &opts).unwrap(),
        )
    })
    .join()
    .unwrap();
    let (p4, p6) = paths;
    assert!(p4.via_gateway && p6.via_gateway);
    assert_eq!(p4.next_hop, GW4.parse::<IpAddr>().unwrap());
    assert_eq!(p6.next_hop, "fe80::10".parse::<IpAddr>().unwrap());
    assert_eq!(p4.source, WS4.parse::<IpAddr>().unwrap());
    assert_eq!(p6.source, WS6.parse::<IpAddr>().unwrap());
    assert_eq!(p4.macs.unwrap().dst, gw_mac);
    assert_eq!(p6.macs.unwrap().dst, gw_mac, "resolved through fe80::10%ws");
}
