//! End-to-end check of `leaktest probe` (issue 2, "How it is checked").
//!
//! Two namespaces made for this run are joined by a veth pair; the real `leaktest` binary
//! sends the full default suite (both families, every suite, every port: 787,460 probes) at
//! `--rate max` from one to the other. The receiving side captures with libpcap directly
//! (the `pcap` crate, TPACKET_V3 ring, no leaktest capture code) and then every captured frame
//! is
//!
//! * attributed with `leaktest_wire::attribute` (the decoder under test), and
//! * parsed independently with `etherparse` plus hand-written checks of the ICMP, fragment
//!   and checksum fields, and compared field by field with what the attributed probe must
//!   look like: addresses, MACs, protocol, ports, flags, ICMP type, fragment fields, every
//!   header-marker field and the payload marker bytes.
//!
//! It then asserts that every planned probe arrived exactly once and nothing else from the
//! sender did, and that the JSON report counts what was sent. A capture that dropped frames
//! fails with that message instead of a misleading count.

use etherparse::{
    Ethernet2Header, Ipv4Header, Ipv6FragmentHeader, Ipv6Header, TcpHeader, UdpHeader,
};
use leaktest_netns::{status_text, veth, Netns, Topology};
use leaktest_wire::catalogue::{
    Family, FragKind, ProbeKind, ProbeSpec, SpoofSource, Suite, SEQ_FAMILY_BIT,
};
use leaktest_wire::marker::{MarkerKeys, RunKey, MARKER_LEN};
use leaktest_wire::{attribute, Evidence, LinkType};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SRC4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const DST4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

/// Upper bound for the sender: 787k probes at even 50k pps take 16 s.
/// What the lan and spoof suites are told of the (imagined) gateway uplink.
const UPLINK_ARGS: [&str; 8] = [
    "--gateway-uplink",
    "192.0.2.2/24",
    "--gateway-uplink",
    "2001:db8:1::2/64",
    "--uplink-router",
    "192.0.2.1",
    "--uplink-router",
    "2001:db8:1::1",
];
const SEND_TIMEOUT: Duration = Duration::from_secs(180);
/// Ring of the independent capture: the whole run is ~80 MB of frames.
const CAPTURE_BUFFER: i32 = 256 << 20;

/// Frames captured on the receiving interface, stored back to back.
struct Captured {
    data: Vec<u8>,
    spans: Vec<(usize, usize)>,
    received: u32,
    dropped: u32,
    if_dropped: u32,
}

impl Captured {
    fn frames(&self) -> impl Iterator<Item = &[u8]> {
        self.spans.iter().map(|&(o, l)| &self.data[o..o + l])
    }
}

/// Captures inbound frames on `ifname` inside `ns` until `stop` is set and the ring is drained.
fn start_capture(
    ns: &Netns,
    ifname: &str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<Captured, String>> {
    let ifname = ifname.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
    let handle = ns
        .thread(move || -> Result<Captured, String> {
            let opened = (|| {
                // No immediate mode: it would fall back from TPACKET_V3 to V2 and drop. The
                // timeout is the kernel's block-retire timer: a partly filled block becomes
                // readable after it.
                let mut cap = pcap::Capture::from_device(ifname.as_str())?
                    .snaplen(4096)
                    .promisc(false)
                    .buffer_size(CAPTURE_BUFFER)
                    .timeout(20)
                    .open()?;
                // Evaluated by the kernel: the receiver's own replies are not captured.
                cap.filter("inbound", true)?;
                // With TPACKET_V3 libpcap's own poll() blocks forever while no packet
                // arrives; non-blocking reads plus our own bounded poll() end the capture.
                cap.setnonblock()
            })();
            let mut cap = match opened {
                Ok(c) => {
                    let _ = ready_tx.send(Ok(()));
                    c
                }
                Err(e) => {
                    let msg = format!("opening capture on {ifname}: {e}");
                    let _ = ready_tx.send(Err(msg.clone()));
                    return Err(msg);
                }
            };
            let fd = cap.as_raw_fd();
            let mut out = Captured {
                data: Vec::with_capacity(128 << 20),
                spans: Vec::with_capacity(800_000),
                received: 0,
                dropped: 0,
                if_dropped: 0,
            };
            let started = Instant::now();
            let mut stop_at: Option<Instant> = None;
            let mut idle = 0;
            loop {
                match cap.next_packet() {
                    Ok(p) => {
                        idle = 0;
                        if p.header.caplen != p.header.len {
                            return Err(format!(
                                "frame truncated by snaplen: {} of {} bytes",
                                p.header.caplen, p.header.len
                            ));
                        }
                        out.spans.push((out.data.len(), p.data.len()));
                        out.data.extend_from_slice(p.data);
                        continue;
                    }
                    Err(pcap::Error::TimeoutExpired) => {}
                    Err(e) => return Err(format!("capture failed: {e}")),
                }
                // Nothing readable now: wait (bounded) for the next retired block.
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ready = unsafe { libc::poll(&mut pfd, 1, 50) };
                if stop.load(Ordering::SeqCst) {
                    let since = *stop_at.get_or_insert_with(Instant::now);
                    if ready == 0 {
                        idle += 1;
                    }
                    // Quiet for 4 polls (well past the 20 ms retire timer): drained.
                    if idle >= 4 || since.elapsed() > Duration::from_secs(10) {
                        break;
                    }
                }
                if started.elapsed() > SEND_TIMEOUT + Duration::from_secs(30) {
                    return Err("capture ran past its time bound".into());
                }
            }
            let st = cap.stats().map_err(|e| format!("capture stats: {e}"))?;
            out.received = st.received;
            out.dropped = st.dropped;
            out.if_dropped = st.if_dropped;
            Ok(out)
        })
        .expect("capture thread enters the receiving namespace");
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("capture thread reports readiness")
        .expect("capture opens");
    handle
}

/// Ones-complement Internet checksum over `parts` (each of even length except the last).
fn inet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u64::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u64::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Pseudo-header for L4 checksums.
fn pseudo(family: Family, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match family {
        Family::V4 => {
            p.extend_from_slice(&SRC4.octets());
            p.extend_from_slice(&DST4.octets());
            p.extend_from_slice(&[0, proto]);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        Family::V6 => {
            p.extend_from_slice(&SRC6.octets());
            p.extend_from_slice(&DST6.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
    }
    p
}

/// Checks one frame, parsed without leaktest code, against the probe it was attributed to.
fn cross_check(
    frame: &[u8],
    spec: &ProbeSpec,
    key: &RunKey,
    mac_src: [u8; 6],
    mac_dst: [u8; 6],
) -> Result<(), String> {
    let seq = spec.seq();
    let tag = key.header_tag(seq);
    let marker = key.payload_marker(seq);
    let (eth, l3) = Ethernet2Header::from_slice(frame).map_err(|e| format!("ethernet: {e}"))?;
    if eth.source != mac_src || eth.destination != mac_dst {
        return Err(format!("MACs {:?} -> {:?}", eth.source, eth.destination));
    }
    // The L4 bytes (or the fragment / bare-IP payload) and the protocol they claim.
    let (proto, l4): (u8, &[u8]) = match spec.family {
        Family::V4 => {
            if eth.ether_type.0 != 0x0800 {
                return Err(format!(
                    "ethertype {:#06x} for an IPv4 probe",
                    eth.ether_type.0
                ));
            }
            let (ip, _) = Ipv4Header::from_slice(l3).map_err(|e| format!("ipv4: {e}"))?;
            if ip.source != SRC4.octets() || ip.destination != DST4.octets() {
                return Err(format!(
                    "ipv4 addresses {:?} -> {:?}",
                    ip.source, ip.destination
                ));
            }
            if ip.calc_header_checksum() != ip.header_checksum {
                return Err("ipv4 header checksum wrong".into());
            }
            if ip.identification != tag.ipv4_id() {
                return Err(format!(
                    "ipv4 id {} != tag {}",
                    ip.identification,
                    tag.ipv4_id()
                ));
            }
            let total = usize::from(ip.total_len);
            if total > l3.len() || total < ip.header_len() {
                return Err(format!("ipv4 total length {total} of {} bytes", l3.len()));
            }
            let (off, mf) = (ip.fragment_offset.value(), ip.more_fragments);
            match spec.kind {
                ProbeKind::Frag {
                    frag: FragKind::First,
                } if off != 0 || !mf => {
                    return Err(format!("first fragment has offset {off} mf {mf}"))
                }
                ProbeKind::Frag {
                    frag: FragKind::NonFirst,
                } if off == 0 || mf => {
                    return Err(format!("non-first fragment has offset {off} mf {mf}"))
                }
                ProbeKind::Frag { .. } => {}
                _ if off != 0 || mf => return Err("unfragmented probe is a fragment".into()),
                _ => {}
            }
            (ip.protocol.0, &l3[ip.header_len()..total])
        }
        Family::V6 => {
            if eth.ether_type.0 != 0x86dd {
                return Err(format!(
                    "ethertype {:#06x} for an IPv6 probe",
                    eth.ether_type.0
                ));
            }
            let (ip, rest) = Ipv6Header::from_slice(l3).map_err(|e| format!("ipv6: {e}"))?;
            if ip.source != SRC6.octets() || ip.destination != DST6.octets() {
                return Err("ipv6 addresses".into());
            }
            if ip.flow_label.value() != tag.flow_label() {
                return Err(format!(
                    "flow label {:#x} != tag {:#x}",
                    ip.flow_label.value(),
                    tag.flow_label()
                ));
            }
            let plen = usize::from(ip.payload_length);
            if plen > rest.len() {
                return Err(format!("ipv6 payload length {plen} of {}", rest.len()));
            }
            let rest = &rest[..plen];
            if let ProbeKind::Frag { frag } = spec.kind {
                if ip.next_header.0 != 44 {
                    return Err(format!(
                        "fragment probe with next header {}",
                        ip.next_header.0
                    ));
                }
                let (fh, body) =
                    Ipv6FragmentHeader::from_slice(rest).map_err(|e| format!("frag hdr: {e}"))?;
                let (off, mf) = (fh.fragment_offset.value(), fh.more_fragments);
                let ok = match frag {
                    FragKind::First => off == 0 && mf,
                    FragKind::NonFirst => off != 0 && !mf,
                    _ => return Err(format!("{frag:?} is not a template probe")),
                };
                if !ok {
                    return Err(format!("{frag:?} fragment header offset {off} mf {mf}"));
                }
                // The design puts the tag's 32-bit TCP field into the identification.
                if fh.identification != tag.tcp_seq() {
                    return Err("ipv6 fragment identification header tag wrong".into());
                }
                (fh.next_header.0, body)
            } else {
                (ip.next_header.0, rest)
            }
        }
    };
    let want_proto = spec.protocol();
    if proto != want_proto {
        return Err(format!("protocol {proto} != {want_proto}"));
    }
    let payload_must_start = |payload: &[u8]| {
        if payload.len() < MARKER_LEN || payload[..MARKER_LEN] != marker {
            Err("payload marker missing or wrong".to_string())
        } else {
            Ok(())
        }
    };
    match spec.kind {
        ProbeKind::Ip { .. } => {
            // A fixed head, then the marker (IP_SUITE_HEAD).
            let head = &leaktest_wire::build::IP_SUITE_HEAD;
            if !l4.starts_with(head) {
                return Err("ip-suite head missing or wrong".into());
            }
            payload_must_start(&l4[head.len()..])
        }
        ProbeKind::Frag {
            frag: FragKind::NonFirst,
        } => payload_must_start(l4),
        ProbeKind::Icmp { icmp_type } => {
            if l4.len() < 8 {
                return Err("icmp header short".into());
            }
            if l4[0] != icmp_type || l4[1] != 0 {
                return Err(format!(
                    "icmp type/code {}/{} != {icmp_type}/0",
                    l4[0], l4[1]
                ));
            }
            let (id, sq) = tag.icmp_id_seq();
            if l4[4..8] != [id.to_be_bytes(), sq.to_be_bytes()].concat()[..] {
                return Err("icmp id/seq header tag wrong".into());
            }
            let sum = match spec.family {
                Family::V4 => inet_checksum(&[l4]),
                Family::V6 => inet_checksum(&[&pseudo(Family::V6, 58, l4.len()), l4]),
            };
            if sum != 0 {
                return Err("icmp checksum wrong".into());
            }
            payload_must_start(&l4[8..])
        }
        ProbeKind::Tcp { flags, dst_port } => {
            let (tcp, payload) = TcpHeader::from_slice(l4).map_err(|e| format!("tcp: {e}"))?;
            if tcp.destination_port != dst_port || l4[13] != flags.0 {
                return Err(format!(
                    "tcp port/flags {}/{:#x} != {dst_port}/{:#x}",
                    tcp.destination_port, l4[13], flags.0
                ));
            }
            if tcp.syn != (flags.0 & 0x02 != 0) || tcp.ack != (flags.0 & 0x10 != 0) {
                return Err("tcp flags disagree with etherparse".into());
            }
            let set = flags.set_index().ok_or("tcp flags outside the catalogue")?;
            if tcp.sequence_number != tag.tcp_seq() || tcp.source_port != tag.tcp_src_port(set) {
                return Err("tcp seq/source port header tag wrong".into());
            }
            if !tcp.ack && tcp.acknowledgment_number != 0 {
                return Err("tcp acknowledgement number without ACK".into());
            }
            if inet_checksum(&[&pseudo(spec.family, 6, l4.len()), l4]) != 0 {
                return Err("tcp checksum wrong".into());
            }
            payload_must_start(payload)
        }
        ProbeKind::Udp { dst_port } => {
            let (udp, payload) = UdpHeader::from_slice(l4).map_err(|e| format!("udp: {e}"))?;
            if udp.destination_port != dst_port || udp.source_port != tag.src_port() {
                return Err(format!(
                    "udp ports {} -> {}",
                    udp.source_port, udp.destination_port
                ));
            }
            if usize::from(udp.length) != l4.len() {
                return Err(format!("udp length {} of {}", udp.length, l4.len()));
            }
            if udp.checksum == 0 || inet_checksum(&[&pseudo(spec.family, 17, l4.len()), l4]) != 0 {
                return Err("udp checksum wrong".into());
            }
            payload_must_start(payload)
        }
        ProbeKind::Frag {
            frag: FragKind::First,
        } => {
            // Only the UDP header is here; its checksum covers the whole datagram.
            let (udp, payload) = UdpHeader::from_slice(l4).map_err(|e| format!("udp: {e}"))?;
            if Some(udp.destination_port) != spec.dst_port() || udp.source_port != tag.src_port() {
                return Err(format!(
                    "first fragment ports {} -> {}",
                    udp.source_port, udp.destination_port
                ));
            }
            if usize::from(udp.length) <= l4.len() {
                return Err(format!(
                    "first fragment's UDP length {} is not beyond it",
                    udp.length
                ));
            }
            payload_must_start(payload)
        }
        _ => Err(format!("{spec:?} is not a template probe")),
    }
}

/// Whether an unattributed inbound frame is ordinary link housekeeping of the sender's
/// kernel (ARP, IPv6 neighbour/router discovery, MLD) rather than a mangled probe.
fn is_housekeeping(frame: &[u8]) -> bool {
    let Ok((eth, l3)) = Ethernet2Header::from_slice(frame) else {
        return false;
    };
    match eth.ether_type.0 {
        0x0806 => true,
        0x86dd => {
            let Ok((ip, rest)) = Ipv6Header::from_slice(l3) else {
                return false;
            };
            // ND uses hop limit 255; MLD rides behind a hop-by-hop header with hop limit 1.
            let icmp = match ip.next_header.0 {
                58 => rest,
                0 if rest.len() >= 8 && rest[0] == 58 => {
                    let hl = (usize::from(rest[1]) + 1) * 8;
                    rest.get(hl..).unwrap_or(&[])
                }
                _ => return false,
            };
            let ok_hops = ip.hop_limit == 255 || ip.hop_limit == 1;
            ok_hops && matches!(icmp.first(), Some(130..=136) | Some(143))
        }
        _ => false,
    }
}

/// The family of the one empty UDP datagram to the target's discard port (9) that
/// `leaktest probe` documents sending to trigger neighbour resolution, if `frame` is it.
fn resolution_trigger(frame: &[u8]) -> Option<Family> {
    let (eth, l3) = Ethernet2Header::from_slice(frame).ok()?;
    let (family, udp) = match eth.ether_type.0 {
        0x0800 => {
            let (ip, rest) = Ipv4Header::from_slice(l3).ok()?;
            let ok = ip.protocol.0 == 17
                && ip.source == SRC4.octets()
                && ip.destination == DST4.octets();
            (ok.then_some(Family::V4)?, rest)
        }
        0x86dd => {
            let (ip, rest) = Ipv6Header::from_slice(l3).ok()?;
            let ok = ip.next_header.0 == 17
                && ip.source == SRC6.octets()
                && ip.destination == DST6.octets();
            (ok.then_some(Family::V6)?, rest)
        }
        _ => return None,
    };
    let (h, _) = UdpHeader::from_slice(udp).ok()?;
    (h.destination_port == 9 && h.length == 8).then_some(family)
}

fn json_u64(v: &serde_json::Value, path: &[&str]) -> Option<u64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_u64()
}

/// The probes this topology cannot have: a target on the link has no
/// gateway whose internal address the spoof suite could forge.
fn unbuildable(spec: &ProbeSpec) -> bool {
    matches!(
        spec.kind,
        ProbeKind::Spoof {
            source: SpoofSource::GatewayInternal,
            ..
        }
    )
}

/// Every probe of the catalogue, both families, less the six unbuildable here.
const TOTAL: usize = 463_474 + 464_779 - 6;

fn expected_seqs() -> Vec<u32> {
    let mut v = Vec::new();
    for family in Family::BOTH {
        for suite in Suite::ALL {
            v.extend(
                ProbeSpec::all(family, suite)
                    .filter(|s| !unbuildable(s))
                    .map(|s| s.seq()),
            );
        }
    }
    v
}

/// Independent checks of a probe of the evasion suites (composed shapes):
/// etherparse reads its headers; MACs, addresses, the payload marker and
/// (spoof) the claimed source are where the design puts them; IPv4 header
/// checksums hold. (Every field and checksum of every shape is checked
/// against etherparse in `leaktest-wire`'s unit tests.)
fn cross_check_composed(
    frame: &[u8],
    spec: &ProbeSpec,
    key: &RunKey,
    mac_src: [u8; 6],
    mac_dst: [u8; 6],
) -> Result<(), String> {
    let seq = spec.seq();
    let (eth, l3) = Ethernet2Header::from_slice(frame).map_err(|e| format!("ethernet: {e}"))?;
    let (src, dst): (std::net::IpAddr, std::net::IpAddr) = match spec.family {
        Family::V4 => {
            let (ip, _) = Ipv4Header::from_slice(l3).map_err(|e| format!("ipv4: {e}"))?;
            if ip.calc_header_checksum() != ip.header_checksum {
                return Err("ipv4 header checksum wrong".into());
            }
            (ip.source.into(), ip.destination.into())
        }
        Family::V6 => {
            let (ip, _) = Ipv6Header::from_slice(l3).map_err(|e| format!("ipv6: {e}"))?;
            (ip.source.into(), ip.destination.into())
        }
    };
    let (own_src, own_dst): (std::net::IpAddr, std::net::IpAddr) = match spec.family {
        Family::V4 => (SRC4.into(), DST4.into()),
        Family::V6 => (SRC6.into(), DST6.into()),
    };
    if eth.source != mac_src {
        return Err("source MAC".into());
    }
    let group = match dst {
        std::net::IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
        std::net::IpAddr::V6(a) => a.is_multicast(),
    };
    if group == (eth.destination == mac_dst) {
        return Err(format!(
            "destination MAC {:02x?} for {dst}",
            eth.destination
        ));
    }
    let marker = key.payload_marker(seq);
    let at = memchr::memmem::find(frame, &marker);
    match spec.kind {
        ProbeKind::Lan { .. } if dst == own_dst || src != own_src => {
            return Err(format!("lan probe {src} -> {dst}"))
        }
        ProbeKind::Spoof { .. } => {
            if src == own_src || dst != own_dst {
                return Err(format!("spoof probe {src} -> {dst}"));
            }
            // The claimed source follows the marker, as 16 bytes (IPv4 mapped).
            let at = at.ok_or("payload marker missing")?;
            let claim = frame
                .get(at + MARKER_LEN..at + MARKER_LEN + 16)
                .ok_or("claimed source missing")?;
            let want = match src {
                std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                std::net::IpAddr::V6(a) => a.octets(),
            };
            if claim != want {
                return Err("claimed source is not the packet's source".into());
            }
        }
        ProbeKind::Lan { .. } => {}
        _ if (src, dst) != (own_src, own_dst) => return Err(format!("{src} -> {dst}")),
        ProbeKind::Frag {
            frag: FragKind::TinyHead,
        } => {
            // 8 bytes of TCP: the ports and the sequence number from the tag.
            let l4_at = match spec.family {
                Family::V4 => 14 + usize::from(l3[0] & 0x0f) * 4,
                Family::V6 => 14 + 40 + 8,
            };
            let l4 = frame
                .get(l4_at..l4_at + 8)
                .ok_or("tiny head shorter than 8 bytes of TCP")?;
            if l4[4..8] != key.header_tag(seq).tcp_seq().to_be_bytes() {
                return Err("tiny head's TCP sequence number is not its tag".into());
            }
            if at.is_some() {
                return Err("a marker in 8 bytes of TCP".into());
            }
            return Ok(());
        }
        _ => {}
    }
    if at.is_none() {
        return Err("payload marker missing".into());
    }
    Ok(())
}

/// Whether a probe is built from a template (checked field by field by
/// [`cross_check`]) rather than composed.
fn templated(spec: &ProbeSpec) -> bool {
    match spec.kind {
        ProbeKind::Icmp { .. }
        | ProbeKind::Ip { .. }
        | ProbeKind::Tcp { .. }
        | ProbeKind::Udp { .. } => true,
        ProbeKind::Frag { frag } => matches!(frag, FragKind::First | FragKind::NonFirst),
        _ => false,
    }
}

#[test]
fn full_default_suite_arrives_exactly_once_and_decodes() {
    let mut topo = Topology::new("lpe");
    let ws = topo.add("w").unwrap();
    let rx = topo.add("r").unwrap();
    let (if_w, if_r) = (format!("{}w", topo.prefix()), format!("{}r", topo.prefix()));
    veth(&ws, &if_w, &rx, &if_r).unwrap();
    ws.add_addr(&if_w, &format!("{SRC4}/24")).unwrap();
    rx.add_addr(&if_r, &format!("{DST4}/24")).unwrap();
    ws.add_addr(&if_w, &format!("{SRC6}/64")).unwrap();
    rx.add_addr(&if_r, &format!("{DST6}/64")).unwrap();
    let (mac_w, mac_r) = (ws.mac(&if_w).unwrap(), rx.mac(&if_r).unwrap());
    // The receiver drops the probes right after the capture tap (AF_PACKET sees frames
    // before netfilter), so its kernel spends no CPU answering 787k probes. Neighbour
    // discovery still passes: the sender resolves the target the ordinary way.
    let mut nft = rx.command("nft");
    nft.arg(format!(
        "add table inet lpe; \
         add chain inet lpe pre {{ type filter hook prerouting priority -450; policy accept; }}; \
         add rule inet lpe pre meta nfproto ipv4 drop; \
         add rule inet lpe pre ip6 saddr {SRC6} icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} ip6 hoplimit 255 accept; \
         add rule inet lpe pre meta nfproto ipv6 drop"
    ));
    rx.exec(nft).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let capture = start_capture(&rx, &if_r, stop.clone());
    // Ends the capture also when this test fails before it would stop it.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let _stop_guard = StopOnDrop(stop.clone());

    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("probe.json");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut cmd = ws.command(env!("CARGO_BIN_EXE_leaktest"));
    cmd.args([
        "probe",
        // The receiver is on the link: this test looks at the probes themselves.
        "--on-link",
        "--target",
        &DST4.to_string(),
        "--target6",
        &DST6.to_string(),
    ])
    .args(UPLINK_ARGS)
    .args(["--rate", "max", "--json"])
    .arg(&json_path)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&out_path).unwrap())
    .stderr(std::fs::File::create(&err_path).unwrap());
    let probe = ws.spawn(cmd).unwrap();
    let status = probe.wait_timeout(SEND_TIMEOUT).unwrap();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let status = status.unwrap_or_else(|| {
        panic!("leaktest probe still running after {SEND_TIMEOUT:?}\nstderr: {stderr}")
    });
    stop.store(true, Ordering::SeqCst);
    let cap = capture.join().expect("capture thread").expect("capture");
    assert!(
        status.success(),
        "leaktest probe failed ({})\nstdout: {stdout}\nstderr: {stderr}",
        status_text(&status)
    );
    eprintln!("leaktest probe: {}", stdout.trim());

    // A lossy capture proves nothing about the sender: say so rather than miscount.
    assert!(
        cap.dropped == 0 && cap.if_dropped == 0,
        "the independent capture itself dropped frames (ring drops {}, interface drops {}, \
         received {}): rerun on a less loaded machine",
        cap.dropped,
        cap.if_dropped,
        cap.received
    );
    // The kernel counts frames as they enter the ring; a late housekeeping frame may still
    // sit in an unretired block when the stats are read, never the other way round.
    assert!(
        u64::from(cap.received) >= cap.spans.len() as u64,
        "capture read {} frames but the kernel counted only {}",
        cap.spans.len(),
        cap.received
    );

    // Attribute every frame and cross-check it against an independent parse.
    let mut keys = MarkerKeys::open();
    let mut counts = vec![0u8; 2 * SEQ_FAMILY_BIT as usize];
    let mut run: Option<RunKey> = None;
    let mut bad = Vec::new();
    let mut strays = Vec::new();
    let mut housekeeping = 0usize;
    let mut triggers = [0u32; 2];
    for frame in cap.frames() {
        let Some(att) = attribute(frame, LinkType::Ethernet, &mut keys) else {
            if is_housekeeping(frame) {
                housekeeping += 1;
            } else if let Some(f) = resolution_trigger(frame) {
                triggers[usize::from(f == Family::V6)] += 1;
            } else if strays.len() < 10 {
                strays.push(hex::encode(&frame[..frame.len().min(80)]));
            } else {
                strays.push(String::new());
            }
            continue;
        };
        let key = *run.get_or_insert(att.run);
        if att.run != key {
            bad.push(format!("seq {:#x}: second run key {:?}", att.seq, att.run));
            continue;
        }
        // The tiny first fragment has no room for a marker: its headers name it.
        let tiny = att.spec.kind
            == (ProbeKind::Frag {
                frag: FragKind::TinyHead,
            });
        let want = if tiny {
            Evidence::Header
        } else {
            Evidence::Payload
        };
        if att.seq != att.spec.seq() || att.evidence != want {
            bad.push(format!(
                "seq {:#x}: inconsistent attribution {att:?}",
                att.seq
            ));
            continue;
        }
        let checked = if templated(&att.spec) {
            cross_check(frame, &att.spec, &key, mac_w, mac_r)
        } else {
            cross_check_composed(frame, &att.spec, &key, mac_w, mac_r)
        };
        if let Err(e) = checked {
            bad.push(format!("{:?} (seq {:#x}): {e}", att.spec, att.seq));
        }
        let c = &mut counts[att.seq as usize];
        *c = c.saturating_add(1);
    }
    assert!(
        strays.is_empty(),
        "{} captured frames are neither probes nor housekeeping, e.g. {:?}",
        strays.len(),
        &strays[..strays.len().min(10)]
    );
    assert!(
        triggers.iter().all(|&n| n <= 1),
        "more than one resolution trigger per family: {triggers:?}"
    );
    assert!(
        bad.is_empty(),
        "{} probes disagree with their headers, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );

    let expected = expected_seqs();
    assert_eq!(expected.len(), TOTAL, "the default suite changed size");
    let mut missing = Vec::new();
    let mut dup = Vec::new();
    for &s in &expected {
        match counts[s as usize] {
            1 => {}
            0 => missing.push(s),
            _ => dup.push(s),
        }
        counts[s as usize] = 0;
    }
    let extra: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] != 0).collect();
    let name = |s: &u32| format!("{:?}", ProbeSpec::from_seq(*s));
    // Where missing frames went: the veth pair's own drop counters (e.g. the receive backlog).
    let link_stats = |ns: &Netns, ifname: &str| {
        ns.ip(["-s", "-o", "link", "show", "dev", ifname])
            .map(|o| String::from_utf8_lossy(&o.stdout).replace('\\', " "))
            .unwrap_or_default()
    };
    assert!(
        missing.is_empty() && dup.is_empty() && extra.is_empty(),
        "of {} planned probes: {} missing (e.g. {:?}), {} duplicated (e.g. {:?}), {} unplanned seqs; \
         {} frames captured, {housekeeping} housekeeping\nsender link: {}\nreceiver link: {}",
        expected.len(),
        missing.len(),
        missing.iter().take(5).map(name).collect::<Vec<_>>(),
        dup.len(),
        dup.iter().take(5).map(name).collect::<Vec<_>>(),
        extra.len(),
        cap.spans.len(),
        link_stats(&ws, &if_w),
        link_stats(&rx, &if_r)
    );

    // The JSON report counts what was sent, for the same run.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).expect("--json file written"))
            .expect("--json file is JSON");
    check_report(
        &report,
        &run.expect("at least one probe"),
        &if_w,
        (mac_w, mac_r),
    );
    eprintln!(
        "probe_e2e: {} probes captured exactly once, {housekeeping} housekeeping frames, \
         resolution triggers (v4, v6) {triggers:?}, capture drops 0",
        expected.len()
    );
}

/// Checks the `--json` report against the run and the link seen on the wire.
fn check_report(report: &serde_json::Value, key: &RunKey, iface: &str, macs: ([u8; 6], [u8; 6])) {
    let ctx = || format!("report: {report:#}");
    let run_id = report["run_id"]
        .as_str()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .unwrap_or_else(|| panic!("no run_id; {}", ctx()));
    assert_eq!(
        run_id, key.run_id,
        "report's run id is not the one on the wire"
    );
    assert_eq!(
        report["key"]["fingerprint"].as_str(),
        Some(key.fingerprint().as_str())
    );
    assert_eq!(report["key"]["mode"].as_str(), Some("open"));
    assert_eq!(report["complete"].as_bool(), Some(true), "{}", ctx());
    assert_eq!(
        json_u64(report, &["planned"]),
        Some(TOTAL as u64 + 6),
        "{}",
        ctx()
    );
    assert_eq!(json_u64(report, &["sent"]), Some(TOTAL as u64), "{}", ctx());
    assert_eq!(json_u64(report, &["refused_total"]), Some(0), "{}", ctx());
    // The six probes this topology cannot have, each named with its reason.
    assert_eq!(json_u64(report, &["unbuilt"]), Some(6), "{}", ctx());
    let skipped = report["skipped"].as_array().expect("skipped");
    let mut seqs: Vec<u64> = skipped.iter().filter_map(|s| s["seq"].as_u64()).collect();
    seqs.sort();
    let mut want: Vec<u64> = Family::BOTH
        .into_iter()
        .flat_map(|f| ProbeSpec::all(f, Suite::Spoof))
        .filter(unbuildable)
        .map(|s| u64::from(s.seq()))
        .collect();
    want.sort();
    assert_eq!(seqs, want, "{}", ctx());
    assert!(
        skipped
            .iter()
            .all(|s| s["why"].as_str().is_some_and(|w| w.contains("gateway"))),
        "{}",
        ctx()
    );
    let mac = |m: [u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    for family in Family::BOTH {
        let fam = family.name();
        let per_family = |f: Family| {
            Suite::ALL
                .iter()
                .map(|s| u64::from(s.probe_count(f)))
                .sum::<u64>()
                - 3
        };
        assert_eq!(
            json_u64(report, &["counts", fam, "total"]),
            Some(per_family(family)),
            "{}",
            ctx()
        );
        let path = &report["paths"][fam];
        assert_eq!(path["interface"].as_str(), Some(iface), "{}", ctx());
        assert_eq!(
            path["src_mac"].as_str().map(str::to_lowercase),
            Some(mac(macs.0))
        );
        assert_eq!(
            path["dst_mac"].as_str().map(str::to_lowercase),
            Some(mac(macs.1))
        );
        for suite in Suite::ALL {
            let s = suite.name();
            let skip = |f: Family| ProbeSpec::all(f, suite).filter(unbuildable).count() as u64;
            assert_eq!(
                json_u64(report, &["counts", fam, s]),
                Some(u64::from(suite.probe_count(family)) - skip(family)),
                "count {fam}/{s}; {}",
                ctx()
            );
            let both: u64 = Family::BOTH
                .iter()
                .map(|f| u64::from(suite.probe_count(*f)) - skip(*f))
                .sum();
            assert_eq!(
                json_u64(report, &["suite_totals", s]),
                Some(both),
                "suite total {s}; {}",
                ctx()
            );
        }
    }
    let seconds = report["seconds"].as_f64().unwrap_or(0.0);
    let pps = report["pps"].as_f64().unwrap_or(0.0);
    assert!(seconds > 0.0 && pps > 0.0, "timing; {}", ctx());
    // pps is sent / seconds (rounded): a report that invents a rate fails here.
    let implied = TOTAL as f64 / seconds;
    assert!(
        (pps - implied).abs() <= implied * 0.01 + 1.0,
        "pps {pps} vs {implied}; {}",
        ctx()
    );
}

/// The independent checker itself: it accepts frames built as the design says and rejects
/// each kind of corruption, so the end-to-end test cannot pass by checking nothing.
#[test]
fn cross_check_accepts_good_frames_and_rejects_corrupt_ones() {
    use leaktest_wire::{Endpoints, ProbeBuilder, L2, MAX_PROBE_FRAME};
    let key = RunKey::open(0x0123_4567_89ab_cdef);
    let (src, dst) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ends = Endpoints {
        src4: Some(SRC4),
        dst4: Some(DST4),
        src6: Some(SRC6),
        dst6: Some(DST6),
    };
    let builder = ProbeBuilder::new(key, ends, Some(L2 { src, dst }));
    let mut buf = [0u8; MAX_PROBE_FRAME];
    let mut checked = 0;
    for family in Family::BOTH {
        for suite in Suite::ALL {
            // Every probe of the small suites, a spread of ports of the big ones.
            for spec in ProbeSpec::all(family, suite).step_by(if suite.probe_count(family) > 512 {
                997
            } else {
                1
            }) {
                if !templated(&spec) {
                    continue;
                }
                let n = builder.write(&spec, &mut buf);
                let frame = &buf[..n];
                cross_check(frame, &spec, &key, src, dst)
                    .unwrap_or_else(|e| panic!("{spec:?} rejected: {e}"));
                let mut keys = MarkerKeys::open();
                assert_eq!(
                    attribute(frame, LinkType::Ethernet, &mut keys).map(|a| a.spec),
                    Some(spec)
                );
                // Wrong MAC, a flipped bit in the marker tag, a different run key.
                let mut f = frame.to_vec();
                f[6] ^= 1;
                assert!(
                    cross_check(&f, &spec, &key, src, dst).is_err(),
                    "{spec:?} MAC"
                );
                let mut f = frame.to_vec();
                let last = f.len() - 1;
                let pos = f
                    .windows(4)
                    .position(|w| w == [0x4c, 0x6b, 0x54, 0xa7])
                    .unwrap()
                    + MARKER_LEN
                    - 1;
                f[pos.min(last)] ^= 0x80;
                assert!(
                    cross_check(&f, &spec, &key, src, dst).is_err(),
                    "{spec:?} marker"
                );
                assert!(
                    cross_check(frame, &spec, &RunKey::open(1), src, dst).is_err(),
                    "{spec:?} key"
                );
                checked += 1;
            }
        }
        // A probe claimed to be another one (neighbouring seq) is caught by the header parse.
        let udp = ProbeSpec::all(family, Suite::Udp).nth(80).unwrap();
        let udp2 = ProbeSpec::all(family, Suite::Udp).nth(81).unwrap();
        let n = builder.write(&udp, &mut buf);
        assert!(cross_check(&buf[..n], &udp2, &key, src, dst).is_err());
        let tcp = ProbeSpec::all(family, Suite::Tcp).nth(443).unwrap();
        let rst = ProbeSpec::all(family, Suite::Tcp)
            .nth(3 * 65536 + 443)
            .unwrap();
        let n = builder.write(&tcp, &mut buf);
        assert!(cross_check(&buf[..n], &rst, &key, src, dst).is_err());
    }
    assert!(checked > 1000);

    // The composed probes' checker: accepts every one, rejects a wrong MAC,
    // a flipped marker bit, another run's key, a probe claimed to be another.
    let hood = leaktest_wire::Neighbourhood {
        gateway4: Some(Ipv4Addr::new(203, 0, 113, 9)),
        gateway6: Some("2001:db8::9".parse().unwrap()),
        prefix4: Some(24),
        prefix6: Some(64),
        uplink4: Some((Ipv4Addr::new(192, 0, 2, 2), 24)),
        uplink6: Some(("2001:db8:1::2".parse().unwrap(), 64)),
        router4: Some(Ipv4Addr::new(192, 0, 2, 1)),
        router6: Some("2001:db8:1::1".parse().unwrap()),
    };
    let builder = ProbeBuilder::new(key, ends, Some(L2 { src, dst })).with_neighbourhood(hood);
    let mut composed = 0;
    for family in Family::BOTH {
        for suite in Suite::ALL {
            if suite.probe_count(family) > 8192 {
                continue;
            }
            let specs: Vec<ProbeSpec> = ProbeSpec::all(family, suite)
                .filter(|s| !templated(s))
                .collect();
            for (i, spec) in specs.iter().enumerate() {
                let n = builder.write(spec, &mut buf);
                assert!(n > 0, "{spec:?} not built");
                let frame = &buf[..n];
                cross_check_composed(frame, spec, &key, src, dst)
                    .unwrap_or_else(|e| panic!("{spec:?} rejected: {e}"));
                let mut f = frame.to_vec();
                f[6] ^= 2;
                assert!(
                    cross_check_composed(&f, spec, &key, src, dst).is_err(),
                    "{spec:?} MAC"
                );
                if spec.kind
                    != (ProbeKind::Frag {
                        frag: FragKind::TinyHead,
                    })
                {
                    // Every copy (the tiny tail holds two).
                    let mut f = frame.to_vec();
                    let m = key.payload_marker(spec.seq());
                    while let Some(at) = memchr::memmem::find(&f, &m) {
                        f[at + MARKER_LEN - 1] ^= 0x80;
                    }
                    assert!(
                        cross_check_composed(&f, spec, &key, src, dst).is_err(),
                        "{spec:?} marker"
                    );
                }
                assert!(
                    cross_check_composed(frame, spec, &RunKey::open(1), src, dst).is_err(),
                    "{spec:?} key"
                );
                if let Some(other) = specs.get(i + 1) {
                    assert!(
                        cross_check_composed(frame, other, &key, src, dst).is_err(),
                        "{spec:?} taken for {other:?}"
                    );
                }
                composed += 1;
            }
        }
    }
    // frag tricks 7 + 9, icmp-codes 1,280 + 2,560, ipopt, ext6, lan, spoof, tunnel.
    assert_eq!(composed, 16 + 3840 + 33 + 54 + 78 + 57 + 11);
}
