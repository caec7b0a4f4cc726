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

#[test]
fn tor_and_housekeeping_frames_do_not_allocate() {
    let mut allow = leaktest_tor::Allowlist::new();
    allow.insert(SocketAddr::new(IpAddr::V4(RELAY), 9001));
    // A run is known, so header-marker matching runs on every frame too.
    let mut keys = MarkerKeys::open();
    keys.learn(leaktest_wire::RunKey::open(42));
    let mut c = Classifier::new(
        ClassifierConfig {
            strict: false,
            own_macs: vec![GW_MAC],
            own_addrs: vec![IpAddr::V4(GW4)],
        },
        keys,
    );
    // TCP ACK and PSH+ACK with TLS-looking payload to the relay.
    let mut tcp_ack = vec![0u8; 20];
    tcp_ack[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp_ack[2..4].copy_from_slice(&9001u16.to_be_bytes());
    tcp_ack[12] = 0x50;
    tcp_ack[13] = 0x10;
    let mut tcp_psh = tcp_ack.clone();
    tcp_psh[13] = 0x18;
    tcp_psh.extend((0..1400u32).map(|i| (i * 7919 % 251) as u8));
    let tor_ack = eth_ipv4(6, 64, GW4, RELAY, &tcp_ack);
    let tor_data = eth_ipv4(6, 64, GW4, RELAY, &tcp_psh);
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&GW_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&GW_MAC);
    arp.extend_from_slice(&GW4.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&RELAY.octets());
    let igmp = eth_ipv4(
        2,
        1,
        GW4,
        Ipv4Addr::new(224, 0, 0, 22),
        &[0x22, 0, 0, 0, 0, 0, 0, 0],
    );

    let mut findings = Findings::new();
    let frames = [&tor_ack, &tor_data, &arp, &igmp];
    // Warm up: the first Tor endpoint is inserted into the findings' set.
    for f in frames {
        let class = c.classify(f, LinkType::Ethernet, &allow);
        findings.record(&frame(f), &class);
    }
    // The counter does count (so the zero below means something).
    let b = allocs();
    drop(std::hint::black_box(vec![1u8; 16]));
    assert_eq!(allocs(), b + 1);

    let before = allocs();
    for _ in 0..10_000 {
        for f in frames {
            let class = c.classify(f, LinkType::Ethernet, &allow);
            assert!(
                matches!(class, Class::Tor(_) | Class::Housekeeping(_)),
                "{class:?}"
            );
            findings.record(&frame(f), &class);
        }
    }
    assert_eq!(
        allocs() - before,
        0,
        "allocations on the Tor/housekeeping path"
    );
    assert_eq!(findings.tor_packets, 20_002);
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
