//! The classifier must be cheap per frame: on the Tor and housekeeping paths
//! (the bulk of a healthy gateway's traffic) it must not allocate at all.
//! A counting global allocator proves it.

use leaktest_watch::{Class, Classifier, ClassifierConfig, Findings, Frame, LinkType};
use leaktest_wire::MarkerKeys;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // try_with: the thread-local may already be gone while a thread exits.
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const GW4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const RELAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

fn eth_ipv4(proto: u8, ttl: u8, src: Ipv4Addr, dst: Ipv4Addr, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&GW_MAC);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, ttl, proto, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(l4);
    f
}

fn tcp(sport: u16, seq: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&9001u16.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 0x50;
    t[13] = flags;
    t.extend_from_slice(data);
    t
}

/// A Tor-like TLS flow from its SYN: ClientHello, then application-data
/// records cut into 1400-byte segments.
fn tor_flow(sport: u16) -> Vec<Vec<u8>> {
    let mut stream = vec![22, 3, 1, 0, 200, 1];
    stream.extend([0x42; 199]);
    for i in 0..300u32 {
        stream.extend_from_slice(&[23, 3, 3, 0x02, 0x02]);
        stream.extend((0..514u32).map(|j| ((i * 131 + j * 7919) % 251) as u8));
    }
    let mut frames = vec![eth_ipv4(6, 64, GW4, RELAY, &tcp(sport, 99, 0x02, &[]))];
    for (k, chunk) in stream.chunks(1400).enumerate() {
        let seq = 100 + (k * 1400) as u32;
        frames.push(eth_ipv4(6, 64, GW4, RELAY, &tcp(sport, seq, 0x18, chunk)));
        frames.push(eth_ipv4(6, 64, GW4, RELAY, &tcp(sport, seq, 0x10, &[])));
    }
    frames
}

#[test]
fn tor_and_housekeeping_frames_do_not_allocate() {
    let mut allow = leaktest_tor::Allowlist::new();
    allow.insert(SocketAddr::new(IpAddr::V4(RELAY), 9001));
    // A run is known for the relay's address, so header labelling would run
    // on any leak there too.
    let mut keys = MarkerKeys::open();
    keys.learn_target(leaktest_wire::RunKey::open(42), IpAddr::V4(RELAY));
    let mut c = Classifier::new(
        ClassifierConfig {
            own_macs: vec![GW_MAC],
            own_nets: vec!["198.51.100.2/24".parse().unwrap()],
            ..ClassifierConfig::default()
        },
        LinkType::Ethernet,
        keys,
    );
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&GW_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&GW_MAC);
    arp.extend_from_slice(&GW4.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[198, 51, 100, 1]);
    let igmp = eth_ipv4(
        2,
        1,
        GW4,
        Ipv4Addr::new(224, 0, 0, 22),
        &[0x22, 0, 0, 0, 0, 0, 0, 0],
    );
    let warm = tor_flow(40000);
    let measured = tor_flow(40001);

    let mut findings = Findings::new();
    // Warm up: the flow table and the findings' endpoint set get their room.
    for f in warm.iter().chain([&arp, &igmp]) {
        let d = c.classify(&frame(f), &allow);
        findings.record(&frame(f), &d);
    }
    // The counter does count (so the zero below means something).
    let b = allocs();
    drop(std::hint::black_box(vec![1u8; 16]));
    assert_eq!(allocs(), b + 1);

    let before = allocs();
    for f in &measured {
        let d = c.classify(&frame(f), &allow);
        assert!(matches!(d.class, Class::Tor(_)), "{d:?}");
        findings.record(&frame(f), &d);
    }
    for _ in 0..10_000 {
        for f in [&arp, &igmp] {
            let d = c.classify(&frame(f), &allow);
            assert!(matches!(d.class, Class::Housekeeping(_)), "{d:?}");
            findings.record(&frame(f), &d);
        }
    }
    assert_eq!(
        allocs() - before,
        0,
        "allocations on the Tor/housekeeping path"
    );
    let flows = c.flows().stats();
    assert_eq!(
        (flows.started, flows.violations, flows.lost_sync),
        (2, 0, 0)
    );
    assert_eq!(flows.bytes_followed, 2 * (205 + 300 * 519));
    assert_eq!(findings.tor_packets, (warm.len() + measured.len()) as u64);
    assert_eq!(findings.housekeeping_packets(), 20_002);
}

fn frame(d: &[u8]) -> Frame<'_> {
    Frame {
        ts_sec: 0,
        ts_nsec: 0,
        data: d,
        orig_len: d.len() as u32,
    }
}
