//! The probe catalogue: every probe leaktest sends, and its sequence number.
//!
//! A probe's sequence number (`seq`) is a pure function of what the probe is,
//! never of which suites a run selected, so a watcher can name a leaked probe
//! from its `seq` alone and a captured header alone gives back its `seq`.
//!
//! Layout of `seq` (u32): bit 20 is the family (0 = IPv4, 1 = IPv6); the low
//! 20 bits are the index inside the family's catalogue:
//!
//! | index range              | suite | probe                                   |
//! |--------------------------|-------|-----------------------------------------|
//! | 0 ..= 255                | icmp  | ICMP (ICMPv6) type = index, code 0      |
//! | 256 ..= 511              | ip    | IP protocol / next header = index - 256 |
//! | 512 + f*65536 + port     | tcp   | TCP flag set f (see [`TCP_FLAG_SETS`])  |
//! | 512 + 5*65536 + port     | udp   | UDP to port                             |
//! | 512 + 6*65536 + k        | frag  | fragment probe k (see [`FragKind`])     |

use std::fmt;

/// IP family of a probe.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Family {
    #[serde(rename = "ipv4")]
    V4,
    #[serde(rename = "ipv6")]
    V6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }

    /// The ICMP protocol number of this family (1 or 58).
    pub fn icmp_protocol(self) -> u8 {
        match self {
            Family::V4 => 1,
            Family::V6 => 58,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A family of probes selectable with `--suite`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    Icmp,
    Ip,
    Tcp,
    Udp,
    Frag,
}

impl Suite {
    pub const ALL: [Suite; 5] = [Suite::Icmp, Suite::Ip, Suite::Tcp, Suite::Udp, Suite::Frag];

    pub fn name(self) -> &'static str {
        match self {
            Suite::Icmp => "icmp",
            Suite::Ip => "ip",
            Suite::Tcp => "tcp",
            Suite::Udp => "udp",
            Suite::Frag => "frag",
        }
    }

    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Number of probes of this suite in one family.
    pub fn probe_count(self) -> u32 {
        match self {
            Suite::Icmp | Suite::Ip => 256,
            Suite::Tcp => TCP_FLAG_SETS.len() as u32 * 65536,
            Suite::Udp => 65536,
            Suite::Frag => FragKind::ALL.len() as u32,
        }
    }

    /// First catalogue index of this suite inside a family.
    pub fn base(self) -> u32 {
        match self {
            Suite::Icmp => 0,
            Suite::Ip => 256,
            Suite::Tcp => 512,
            Suite::Udp => 512 + 5 * 65536,
            Suite::Frag => 512 + 6 * 65536,
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// TCP flags as on the wire (FIN = 0x01 ... CWR = 0x80).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    /// Index of these flags in [`TCP_FLAG_SETS`] (`None` if they are not a
    /// flag set of the tcp suite).
    pub fn set_index(self) -> Option<u8> {
        TCP_FLAG_SETS
            .iter()
            .position(|f| *f == self)
            .map(|i| i as u8)
    }

    /// Letters from `FSRPAUEC` in that order; `""` for no flags.
    pub fn letters(self) -> String {
        b"FSRPAUEC"
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, &c)| c as char)
            .collect()
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.letters())
    }
}

/// The TCP flag sets of the tcp suite, in catalogue order:
/// SYN, ACK, FIN+ACK, RST, and no flags.
pub const TCP_FLAG_SETS: [TcpFlags; 5] = [
    TcpFlags(TcpFlags::SYN),
    TcpFlags(TcpFlags::ACK),
    TcpFlags(TcpFlags::FIN | TcpFlags::ACK),
    TcpFlags(TcpFlags::RST),
    TcpFlags(0),
];

/// The fragment probes of the frag suite. Each is a UDP datagram to
/// [`FRAG_PORT`] sent as one fragment. IPv4 uses the IPv4 header's
/// fragment fields; IPv6 uses a Fragment extension header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FragKind {
    /// Offset 0, more-fragments set: carries the UDP header and the marker.
    First,
    /// Offset > 0, more-fragments clear: carries only the marker payload.
    NonFirst,
}

impl FragKind {
    pub const ALL: [FragKind; 2] = [FragKind::First, FragKind::NonFirst];
}

/// Destination port of the UDP datagrams that the frag suite fragments.
pub const FRAG_PORT: u16 = 53;

/// Bit of `seq` that holds the family.
pub const SEQ_FAMILY_BIT: u32 = 1 << 20;

/// What one probe is. Plain data, cheap to copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProbeSpec {
    pub family: Family,
    pub kind: ProbeKind,
}

/// The per-suite part of a [`ProbeSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// ICMP or ICMPv6 message of this type, code 0.
    Icmp {
        icmp_type: u8,
    },
    /// A bare IP packet with this protocol (IPv6: next header) and the marker as payload.
    Ip {
        protocol: u8,
    },
    Tcp {
        flags: TcpFlags,
        dst_port: u16,
    },
    Udp {
        dst_port: u16,
    },
    Frag {
        frag: FragKind,
    },
}

impl ProbeSpec {
    pub fn suite(&self) -> Suite {
        match self.kind {
            ProbeKind::Icmp { .. } => Suite::Icmp,
            ProbeKind::Ip { .. } => Suite::Ip,
            ProbeKind::Tcp { .. } => Suite::Tcp,
            ProbeKind::Udp { .. } => Suite::Udp,
            ProbeKind::Frag { .. } => Suite::Frag,
        }
    }

    /// The IP protocol number on the wire (IPv6: the upper-layer protocol).
    pub fn protocol(&self) -> u8 {
        match self.kind {
            ProbeKind::Icmp { .. } => self.family.icmp_protocol(),
            ProbeKind::Ip { protocol } => protocol,
            ProbeKind::Tcp { .. } => 6,
            ProbeKind::Udp { .. } | ProbeKind::Frag { .. } => 17,
        }
    }

    pub fn dst_port(&self) -> Option<u16> {
        match self.kind {
            ProbeKind::Tcp { dst_port, .. } | ProbeKind::Udp { dst_port } => Some(dst_port),
            ProbeKind::Frag { .. } => Some(FRAG_PORT),
            _ => None,
        }
    }

    pub fn tcp_flags(&self) -> Option<TcpFlags> {
        match self.kind {
            ProbeKind::Tcp { flags, .. } => Some(flags),
            _ => None,
        }
    }

    pub fn icmp_type(&self) -> Option<u8> {
        match self.kind {
            ProbeKind::Icmp { icmp_type } => Some(icmp_type),
            _ => None,
        }
    }

    /// The probe's sequence number (see the module documentation).
    pub fn seq(&self) -> u32 {
        let index = match self.kind {
            ProbeKind::Icmp { icmp_type } => icmp_type as u32,
            ProbeKind::Ip { protocol } => Suite::Ip.base() + protocol as u32,
            ProbeKind::Tcp { flags, dst_port } => {
                let set = flags
                    .set_index()
                    .expect("tcp probe flags are one of TCP_FLAG_SETS")
                    as u32;
                Suite::Tcp.base() + set * 65536 + dst_port as u32
            }
            ProbeKind::Udp { dst_port } => Suite::Udp.base() + dst_port as u32,
            ProbeKind::Frag { frag } => {
                Suite::Frag.base() + FragKind::ALL.iter().position(|k| *k == frag).unwrap() as u32
            }
        };
        match self.family {
            Family::V4 => index,
            Family::V6 => index | SEQ_FAMILY_BIT,
        }
    }

    /// The probe with this sequence number, or `None` if no probe has it.
    pub fn from_seq(seq: u32) -> Option<ProbeSpec> {
        if seq & !(SEQ_FAMILY_BIT | (SEQ_FAMILY_BIT - 1)) != 0 {
            return None;
        }
        let family = if seq & SEQ_FAMILY_BIT != 0 {
            Family::V6
        } else {
            Family::V4
        };
        let index = seq & (SEQ_FAMILY_BIT - 1);
        let kind = if index < Suite::Ip.base() {
            ProbeKind::Icmp {
                icmp_type: index as u8,
            }
        } else if index < Suite::Tcp.base() {
            ProbeKind::Ip {
                protocol: (index - Suite::Ip.base()) as u8,
            }
        } else if index < Suite::Udp.base() {
            let i = index - Suite::Tcp.base();
            ProbeKind::Tcp {
                flags: TCP_FLAG_SETS[(i / 65536) as usize],
                dst_port: (i % 65536) as u16,
            }
        } else if index < Suite::Frag.base() {
            ProbeKind::Udp {
                dst_port: (index - Suite::Udp.base()) as u16,
            }
        } else {
            let k = index - Suite::Frag.base();
            ProbeKind::Frag {
                frag: *FragKind::ALL.get(k as usize)?,
            }
        };
        Some(ProbeSpec { family, kind })
    }

    /// Every probe of `suite` in `family`, in `seq` order.
    pub fn all(family: Family, suite: Suite) -> impl Iterator<Item = ProbeSpec> + Clone {
        let fam = match family {
            Family::V4 => 0,
            Family::V6 => SEQ_FAMILY_BIT,
        };
        (suite.base()..suite.base() + suite.probe_count())
            .map(move |i| ProbeSpec::from_seq(i | fam).expect("catalogue index in range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_round_trips_over_the_whole_catalogue() {
        let mut count = 0u32;
        for family in Family::BOTH {
            for suite in Suite::ALL {
                for spec in ProbeSpec::all(family, suite) {
                    assert_eq!(spec.suite(), suite);
                    assert_eq!(spec.family, family);
                    assert_eq!(ProbeSpec::from_seq(spec.seq()), Some(spec));
                    count += 1;
                }
            }
        }
        // 256 + 256 + 5 * 65536 + 65536 + 2 per family.
        assert_eq!(count, 2 * (512 + 6 * 65536 + 2));
    }

    #[test]
    fn seeds_off_by_one_ranges_are_covered() {
        let last_udp = ProbeSpec::all(Family::V4, Suite::Udp).last().unwrap();
        assert_eq!(last_udp.dst_port(), Some(65535));
        let last_ip = ProbeSpec::all(Family::V6, Suite::Ip).last().unwrap();
        assert_eq!(last_ip.protocol(), 255);
    }

    #[test]
    fn out_of_range_seq_is_none() {
        assert_eq!(ProbeSpec::from_seq(Suite::Frag.base() + 2), None);
        assert_eq!(ProbeSpec::from_seq(1 << 21), None);
        assert_eq!(ProbeSpec::from_seq(u32::MAX), None);
    }

    #[test]
    fn tcp_flag_letters() {
        assert_eq!(TcpFlags(TcpFlags::FIN | TcpFlags::ACK).letters(), "FA");
        assert_eq!(TcpFlags(0).letters(), "");
        assert_eq!(TcpFlags(0xff).letters(), "FSRPAUEC");
    }
}
