//! Figures for the watcher's per-packet cost and the refresh cost: parsing a consensus-sized
//! `ns/all` (8,000 relays, a third with IPv6) and looking endpoints up in the allowlist.
//! Run: `cargo bench -p leaktest-tor --bench allowlist`.

use leaktest_tor::allowlist::parse_ns_all;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

const RELAYS: u32 = 8_000;
const LOOKUPS: u32 = 10_000_000;

fn synthetic_ns_all() -> String {
    let mut s = String::new();
    for i in 0..RELAYS {
        let ip = Ipv4Addr::from(0x0a00_0000u32 + i * 7);
        let dir = if i % 5 == 0 { 80 } else { 0 };
        s.push_str(&format!(
            "r relay{i} AAoQ1DAR6kkoo19hBAX5K0QztNw 5pWVo+vGpyKuCYh6+tt2mGC9JDY 2026-11-27 04:39:47 {ip} {} {dir}\n",
            9001 + (i % 50)
        ));
        if i % 3 == 0 {
            s.push_str(&format!("a [2001:db8::{:x}]:9001\n", i));
        }
        s.push_str("s Fast Guard Running Stable V2Dir Valid\nw Bandwidth=1000\n");
    }
    s
}

fn main() {
    let text = synthetic_ns_all();
    let t = Instant::now();
    let mut list = parse_ns_all(&text);
    for _ in 0..9 {
        list = parse_ns_all(black_box(&text));
    }
    let parse = t.elapsed() / 10;
    println!(
        "parse ns/all: {} bytes, {} relays -> {} endpoints in {:.2} ms",
        text.len(),
        RELAYS,
        list.len(),
        parse.as_secs_f64() * 1e3
    );

    // Half hits, half misses, alternating families, as a capture of mixed traffic would ask.
    let probes: Vec<SocketAddr> = (0..1024u32)
        .map(|i| match i % 4 {
            0 => SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + (i * 21) % RELAYS * 7)),
                9001 + ((i * 21) % RELAYS % 50) as u16,
            ),
            1 => SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, (i * 3) as u16)),
                9001,
            ),
            2 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, i as u8)), 443),
            _ => SocketAddr::new(
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i as u16)),
                443,
            ),
        })
        .collect();
    let t = Instant::now();
    let mut hits = 0u64;
    for i in 0..LOOKUPS {
        if list.contains(black_box(&probes[(i & 1023) as usize])) {
            hits += 1;
        }
    }
    let el = t.elapsed();
    println!(
        "lookups: {LOOKUPS} in {:.1} ms = {:.1} ns each ({:.1} M/s), {:.0}% hits",
        el.as_secs_f64() * 1e3,
        el.as_secs_f64() * 1e9 / f64::from(LOOKUPS),
        f64::from(LOOKUPS) / el.as_secs_f64() / 1e6,
        hits as f64 * 100.0 / f64::from(LOOKUPS)
    );
}
