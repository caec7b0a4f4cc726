//! The pulse: a compact set of probes sent again every round
//! (`leaktest probe --duration`), so that a leak during a moment of change
//! (a reload, tor dying, an interface bouncing) is caught within one
//! interval and says, by its marker's round ([`crate::marker::PULSE_FLAG`]),
//! when it was sent.
//!
//! Per family, every round: ICMP echo and three other types, eight IP
//! protocols, six TCP flag sets to nine ports, UDP to eight ports, and a
//! first and a non-first fragment: [`PER_FAMILY`] probes. One TCP port and
//! one UDP port rotate: round `r` uses [`rotating_port`]`(r)`, a
//! permutation of all 65,536 ports over 65,536 rounds. Every probe is a
//! catalogue probe ([`ProbeSpec`]), so a watcher names it as it names a
//! sweep's.

use crate::catalogue::{Family, FragKind, ProbeKind, ProbeSpec};

/// ICMP types besides echo request: echo reply, destination unreachable,
/// timestamp (RFC 792) — what rules that "allow ICMP errors" or "allow
/// pings" let through.
const ICMP4_TYPES: [u8; 4] = [8, 0, 3, 13];
/// ICMPv6: echo request and reply, packet too big (RFC 4443; rules must
/// let it in, careless ones let it out), neighbour solicitation (RFC 4861;
/// the neighbour-discovery types a gateway's own processes could send
/// anywhere in issue 9).
const ICMP6_TYPES: [u8; 4] = [128, 129, 2, 135];
/// IP protocols / next headers: hop-by-hop (IPv6), IGMP, IPv4-in-IP,
/// IPv6-in-IP, GRE, ESP, SCTP and 255 (reserved): tunnels and the
/// protocols a "drop TCP and UDP" rule forgets.
const IP_PROTOCOLS: [u8; 8] = [0, 2, 4, 41, 47, 50, 132, 255];
/// TCP destination ports: SSH, DNS, HTTP, HTTPS, Tor's ORPort and DirPort
/// defaults, Whonix's TransPort and Tor's SocksPort; the ninth rotates.
const TCP_PORTS: [u16; 8] = [22, 53, 80, 443, 9001, 9030, 9040, 9050];
/// UDP destination ports: DNS, NTP, QUIC, IKE, IPsec NAT-T, OpenVPN,
/// WireGuard; the eighth rotates.
const UDP_PORTS: [u16; 7] = [53, 123, 443, 500, 4500, 1194, 51820];

/// TCP flag sets per port: the sweep's five ([`crate::catalogue::TCP_FLAG_SETS`])
/// and the ECN-setup SYN ([`crate::catalogue::ECN_SYN`]).
const TCP_FLAGS: usize = 6;

/// The catalogue suites the pulse's probes belong to.
pub const SUITES: [crate::catalogue::Suite; 6] = {
    use crate::catalogue::Suite;
    [
        Suite::Icmp,
        Suite::Ip,
        Suite::Tcp,
        Suite::Udp,
        Suite::Frag,
        Suite::Flags,
    ]
};

/// Probes per family per round.
pub const PER_FAMILY: usize = ICMP4_TYPES.len()
    + IP_PROTOCOLS.len()
    + TCP_FLAGS * (TCP_PORTS.len() + 1)
    + UDP_PORTS.len()
    + 1
    + 2;

/// The port round `round` adds to the TCP and UDP ports: an odd multiplier
/// makes it a permutation of 0..=65535 over any 65,536 consecutive rounds.
pub fn rotating_port(round: u32) -> u16 {
    (round.wrapping_mul(40_503) & 0xffff) as u16
}

/// The probes of one family in round `round`, in sending order.
pub fn specs(family: Family, round: u32) -> Vec<ProbeSpec> {
    let mut out = Vec::with_capacity(PER_FAMILY);
    let spec = |kind| ProbeSpec { family, kind };
    let icmp = match family {
        Family::V4 => ICMP4_TYPES,
        Family::V6 => ICMP6_TYPES,
    };
    out.extend(icmp.map(|icmp_type| spec(ProbeKind::Icmp { icmp_type })));
    out.extend(IP_PROTOCOLS.map(|protocol| spec(ProbeKind::Ip { protocol })));
    let turn = rotating_port(round);
    for dst_port in TCP_PORTS.into_iter().chain([turn]) {
        for flags in crate::catalogue::TCP_FLAG_SETS {
            out.push(spec(ProbeKind::Tcp { flags, dst_port }));
        }
        out.push(spec(ProbeKind::Ecn { dst_port }));
    }
    for dst_port in UDP_PORTS.into_iter().chain([turn]) {
        out.push(spec(ProbeKind::Udp { dst_port }));
    }
    out.push(spec(ProbeKind::Frag {
        frag: FragKind::First,
    }));
    out.push(spec(ProbeKind::Frag {
        frag: FragKind::NonFirst,
    }));
    debug_assert_eq!(out.len(), PER_FAMILY);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marker::{pulse_run_id, Marker, MarkerKeys, RunKey, ROUND_MASK};

    #[test]
    fn a_round_is_catalogue_probes_with_its_rotating_port() {
        for family in Family::BOTH {
            let a = specs(family, 0);
            let b = specs(family, 1);
            assert_eq!(a.len(), PER_FAMILY);
            assert_eq!(PER_FAMILY, 4 + 8 + 6 * 9 + 8 + 2);
            for s in &a {
                assert!(s.is_catalogued(), "{s:?}");
                assert!(SUITES.contains(&s.suite()), "{s:?}");
                assert_eq!(ProbeSpec::from_seq(s.seq()), Some(*s));
            }
            // Only the rotating port's probes differ between rounds.
            let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
            assert_eq!(differ, TCP_FLAGS + 1);
        }
    }

    #[test]
    fn the_rotating_port_visits_every_port() {
        let mut seen = vec![false; 65536];
        for r in 0..65536u32 {
            seen[rotating_port(r) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        // And again from any start.
        assert_eq!(rotating_port(65536 + 7), rotating_port(7));
    }

    proptest::proptest! {
        /// The round survives the marker round trip, authenticated: the
        /// watcher reads the run (without round bits) and the round, and a
        /// changed round breaks the MAC.
        #[test]
        fn the_round_survives_the_marker_round_trip(id in proptest::prelude::any::<u64>(),
                round in 0u32..(1 << 24), seq in 0u32..(1 << 21), shared in proptest::prelude::any::<bool>()) {
            let run = pulse_run_id(id);
            let base = if shared { RunKey::shared(&[3; 16], run) } else { RunKey::open(run) };
            let m = base.with_round(round).payload_marker(seq);
            let mut keys = MarkerKeys::with_secret([3; 16]);
            let (got, key) = Marker::find_verified(&m, &mut keys).unwrap();
            proptest::prop_assert_eq!((got.run_id, got.round, got.seq), (run, Some(round), seq));
            proptest::prop_assert_eq!(key, base);
            // Another round's bits with this round's MAC: no marker.
            let mut forged = m;
            let other = (round ^ 1) & ROUND_MASK as u32;
            forged[11..14].copy_from_slice(&other.to_be_bytes()[1..]);
            proptest::prop_assert!(Marker::find_verified(&forged, &mut keys).is_none());
            // A sweep's marker has no round.
            let plain = base.payload_marker(seq);
            proptest::prop_assert_eq!(Marker::find_verified(&plain, &mut keys).unwrap().0.round, None);
        }

        /// Each round's header fields are its own: a TCP probe's source port
        /// (a new connection to conntrack every round) and IPv4 ID differ.
        #[test]
        fn rounds_have_their_own_header_tags(id in proptest::prelude::any::<u64>(), round in 0u32..(1 << 23), seq in 0u32..(1 << 21)) {
            let base = RunKey::open(pulse_run_id(id));
            let a = base.with_round(round).header_tag(seq);
            let b = base.with_round(round + 1).header_tag(seq);
            proptest::prop_assert_ne!(a, b);
            proptest::prop_assert_ne!(a, base.header_tag(seq));
        }
    }
}
