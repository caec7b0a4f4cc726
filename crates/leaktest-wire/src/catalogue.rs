//! The probe catalogue: every probe leaktest sends, and its sequence number.
//!
//! A probe's sequence number (`seq`) is a pure function of what the probe is,
//! never of which suites a run selected, so a watcher can name a leaked probe
//! from its `seq` alone and a captured header alone gives back its `seq`.
//!
//! Layout of `seq` (u32): bit 20 is the family (0 = IPv4, 1 = IPv6); the low
//! 20 bits are the index inside the family's catalogue. A suite owns a fixed
//! range of indices (its [`Suite::base`] and [`Suite::capacity`]); it uses
//! the first [`Suite::probe_count`] of them, which may differ per family.
//!
//! | base      | suite        | index - base                                          |
//! |-----------|--------------|-------------------------------------------------------|
//! | 0         | `icmp`       | ICMP (ICMPv6) type, code 0                            |
//! | 256       | `ip`         | IP protocol / next header                             |
//! | 512       | `tcp`        | flag set f ([`TCP_FLAG_SETS`]) * 65536 + port         |
//! | 328,192   | `udp`        | port                                                  |
//! | 393,728   | `frag`       | position in [`FragKind::ALL`]                         |
//! | 393,792   | `flags`      | port (SYN+ECE+CWR); 65536 + flags * 11 + port slot    |
//! | 462,144   | `icmp-codes` | type slot ([`kinds::icmp_code_types`]) * 256 + code   |
//! | 466,240   | `ipopt`      | variant ([`IpOpt::of`]) * 3 + transport               |
//! | 466,304   | `ext6`       | chain ([`ExtChain::of`]) * 3 + transport              |
//! | 466,560   | `lan`        | destination ([`LanDest::of`]) * 3 + transport         |
//! | 466,816   | `spoof`      | source ([`SpoofSource::of`]) * 3 + transport          |
//! | 467,072   | `tunnel`     | tunnel ([`TunnelKind::of`])                           |
//!
//! "transport" is the position in [`Transport::ALL`].

pub mod kinds;

pub use kinds::{
    ExtChain, ExtHeader, IpOpt, LanDest, SpoofSource, Transport, TunnelKind, FLAG_DRAWN_PORTS,
    FLAG_FIXED_PORTS, FLAG_PORT_SLOTS,
};

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
    Flags,
    #[serde(rename = "icmp-codes")]
    IcmpCodes,
    Ipopt,
    Ext6,
    Lan,
    Spoof,
    Tunnel,
}

impl Suite {
    pub const ALL: [Suite; 12] = [
        Suite::Icmp,
        Suite::Ip,
        Suite::Tcp,
        Suite::Udp,
        Suite::Frag,
        Suite::Flags,
        Suite::IcmpCodes,
        Suite::Ipopt,
        Suite::Ext6,
        Suite::Lan,
        Suite::Spoof,
        Suite::Tunnel,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Suite::Icmp => "icmp",
            Suite::Ip => "ip",
            Suite::Tcp => "tcp",
            Suite::Udp => "udp",
            Suite::Frag => "frag",
            Suite::Flags => "flags",
            Suite::IcmpCodes => "icmp-codes",
            Suite::Ipopt => "ipopt",
            Suite::Ext6 => "ext6",
            Suite::Lan => "lan",
            Suite::Spoof => "spoof",
            Suite::Tunnel => "tunnel",
        }
    }

    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// What the suite sends, in one line (for `--help` and reports).
    pub fn about(self) -> &'static str {
        match self {
            Suite::Icmp => "every ICMP / ICMPv6 type, code 0",
            Suite::Ip => "every IP protocol / next header, a fixed head and the marker as payload",
            Suite::Tcp => "SYN, ACK, FIN+ACK, RST and no flags to every port",
            Suite::Udp => "UDP to every port",
            Suite::Frag => {
                "lone first and non-first fragments, a tiny first fragment, \
                 overlapping and reordered fragments, (IPv6) a transport header \
                 in a later fragment"
            }
            Suite::Flags => {
                "all 256 TCP flag combinations to 11 ports, SYN+ECE+CWR (ECN setup) to every port"
            }
            Suite::IcmpCodes => "every code of the ICMP types firewalls match on",
            Suite::Ipopt => "IPv4 options (record route, timestamp, source routes, router alert), TTL 1, 2, 255",
            Suite::Ext6 => {
                "IPv6 extension headers and chains of 2-8, an unknown next header, ESP and AH, before TCP, UDP, echo"
            }
            Suite::Lan => "private, link-local, broadcast and multicast destinations instead of the target",
            Suite::Spoof => "forged source addresses, sent past the sender's own stack",
            Suite::Tunnel => "GRE, IP-in-IP, 6in4, Teredo and VXLAN holding a marked probe",
        }
    }

    /// Number of probes of this suite in `family`.
    pub fn probe_count(self, family: Family) -> u32 {
        match self {
            Suite::Icmp | Suite::Ip => 256,
            Suite::Tcp => TCP_FLAG_SETS.len() as u32 * 65536,
            Suite::Udp => 65536,
            Suite::Frag => FragKind::of(family).len() as u32,
            Suite::Flags => 65536 + 256 * FLAG_PORT_SLOTS,
            Suite::IcmpCodes => kinds::icmp_code_types(family).len() as u32 * 256,
            Suite::Ipopt => IpOpt::of(family).len() as u32 * 3,
            Suite::Ext6 => ExtChain::of(family).len() as u32 * 3,
            Suite::Lan => LanDest::of(family).len() as u32 * 3,
            Suite::Spoof => SpoofSource::of(family).len() as u32 * 3,
            Suite::Tunnel => TunnelKind::of(family).len() as u32,
        }
    }

    /// Indices this suite owns in each family's catalogue (at least the
    /// probe count of either family; the rest is room to grow).
    pub fn capacity(self) -> u32 {
        match self {
            Suite::Icmp | Suite::Ip => 256,
            Suite::Tcp => TCP_FLAG_SETS.len() as u32 * 65536,
            Suite::Udp => 65536,
            Suite::Frag | Suite::Ipopt | Suite::Tunnel => 64,
            Suite::Flags => 65536 + 256 * FLAG_PORT_SLOTS,
            Suite::IcmpCodes => 16 * 256,
            Suite::Ext6 | Suite::Lan | Suite::Spoof => 256,
        }
    }

    /// First catalogue index of this suite inside a family.
    pub fn base(self) -> u32 {
        match self {
            Suite::Icmp => 0,
            Suite::Ip => base::IP,
            Suite::Tcp => base::TCP,
            Suite::Udp => base::UDP,
            Suite::Frag => base::FRAG,
            Suite::Flags => base::FLAGS,
            Suite::IcmpCodes => base::ICMP_CODES,
            Suite::Ipopt => base::IPOPT,
            Suite::Ext6 => base::EXT6,
            Suite::Lan => base::LAN,
            Suite::Spoof => base::SPOOF,
            Suite::Tunnel => base::TUNNEL,
        }
    }

    /// The suite that owns catalogue index `index` (without the family bit).
    pub fn of_index(index: u32) -> Option<Suite> {
        let mut base = 0;
        for s in Suite::ALL {
            if index < base + s.capacity() {
                return Some(s);
            }
            base += s.capacity();
        }
        None
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

/// The fragment probes of the frag suite. Every fragment is one probe with
/// its own `seq`; the fragments of one datagram are consecutive in the
/// catalogue and share the datagram's identification (that of the header
/// tag of the datagram's first-listed part, [`FragKind::datagram_head`]).
///
/// `First` and `NonFirst` are a UDP datagram to [`FRAG_PORT`] of which only
/// one fragment is sent. The others cut one TCP SYN to
/// [`FRAG_TCP_PORT`] whose layout is [`FRAG_TCP_LEN`] bytes: the TCP header
/// (20), 4 bytes of padding, a marker region at 24..50, padding to 72, a
/// second marker region at 72..98, padding; heads hold 0..56, tails 56..104
/// (the tiny head 0..8, its tail 8..104). Each fragment carries the markers
/// of the regions it holds, made for its own `seq`. (The byte layout is in
/// `compose`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FragKind {
    /// Offset 0, more-fragments set: carries the UDP header and the marker.
    First,
    /// Offset > 0, more-fragments clear: carries only the marker payload.
    NonFirst,
    /// A first fragment of 8 bytes: the TCP ports and sequence number, not
    /// the flags (too short for the TCP header; RFC 1858 section 3). No
    /// marker fits: attributed by its headers.
    TinyHead,
    /// The rest of the tiny-fragment SYN: flags and both marker regions.
    TinyTail,
    /// Offset 0, 56 bytes: a TCP ACK to port 53 (what stateless rules let
    /// through) with a marker.
    OverlapHead,
    /// Offset 0 again, 56 bytes: the SYN to [`FRAG_TCP_PORT`] whose copy
    /// rewrites the head's ports and flags (RFC 1858 section 4; forbidden
    /// by RFC 5722 for IPv6).
    OverlapRewrite,
    /// The last fragment (offset 56) of the overlapping datagram.
    OverlapTail,
    /// The last fragment (offset 56), sent before the first.
    ReorderedTail,
    /// The first fragment (offset 0, 56 bytes) after its tail.
    ReorderedHead,
    /// IPv6 only: a first fragment holding only a Destination Options header
    /// (with the marker in its PadN option), so the transport header is in
    /// the next fragment (forbidden by RFC 7112).
    LateHeaderHead,
    /// IPv6 only: the fragment with the TCP header and a marker.
    LateHeaderTail,
}

impl FragKind {
    pub const ALL: [FragKind; 11] = [
        FragKind::First,
        FragKind::NonFirst,
        FragKind::TinyHead,
        FragKind::TinyTail,
        FragKind::OverlapHead,
        FragKind::OverlapRewrite,
        FragKind::OverlapTail,
        FragKind::ReorderedTail,
        FragKind::ReorderedHead,
        FragKind::LateHeaderHead,
        FragKind::LateHeaderTail,
    ];

    /// The kinds of `family`, in catalogue order.
    pub fn of(family: Family) -> &'static [FragKind] {
        match family {
            Family::V4 => &FragKind::ALL[..9],
            Family::V6 => &FragKind::ALL,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FragKind::First => "first",
            FragKind::NonFirst => "non-first",
            FragKind::TinyHead => "tiny-head",
            FragKind::TinyTail => "tiny-tail",
            FragKind::OverlapHead => "overlap-head",
            FragKind::OverlapRewrite => "overlap-rewrite",
            FragKind::OverlapTail => "overlap-tail",
            FragKind::ReorderedTail => "reordered-tail",
            FragKind::ReorderedHead => "reordered-head",
            FragKind::LateHeaderHead => "late-header-head",
            FragKind::LateHeaderTail => "late-header-tail",
        }
    }

    /// The kind whose `seq` names the datagram this fragment belongs to
    /// (its identification comes from that `seq`'s header tag).
    pub fn datagram_head(self) -> FragKind {
        match self {
            FragKind::TinyTail => FragKind::TinyHead,
            FragKind::OverlapRewrite | FragKind::OverlapTail => FragKind::OverlapHead,
            FragKind::ReorderedHead => FragKind::ReorderedTail,
            FragKind::LateHeaderTail => FragKind::LateHeaderHead,
            k => k,
        }
    }

    /// Whether this kind is a fragment of the multi-fragment TCP datagram.
    pub fn is_tcp(self) -> bool {
        !matches!(self, FragKind::First | FragKind::NonFirst)
    }

    pub(crate) fn index(self) -> u32 {
        FragKind::ALL.iter().position(|k| *k == self).unwrap_or(0) as u32
    }
}

/// Destination port of the UDP datagrams that the frag suite fragments.
pub const FRAG_PORT: u16 = 53;
/// Destination port of the TCP ACK that the frag suite's overlapping
/// fragments rewrite into the SYN.
pub const FRAG_DECOY_PORT: u16 = 53;
/// Destination port of the frag suite's fragmented TCP SYN.
pub const FRAG_TCP_PORT: u16 = 443;
/// Length of the frag suite's fragmented TCP datagram (TCP header included).
pub const FRAG_TCP_LEN: usize = 104;

/// SYN + ECE + CWR: the ECN-setup SYN of RFC 3168 section 6.1.1, what Linux
/// and macOS clients send with ECN on.
pub const ECN_SYN: TcpFlags = TcpFlags(TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR);

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
    /// A bare IP packet with this protocol (IPv6: next header) whose payload
    /// is a fixed head ([`crate::build::IP_SUITE_HEAD`]) and the marker.
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
    /// `flags` suite: TCP with any flag combination to the port of `slot`
    /// ([`FLAG_FIXED_PORTS`], then the run's drawn ports).
    Flags {
        flags: TcpFlags,
        slot: u8,
    },
    /// `flags` suite: the ECN-setup SYN ([`ECN_SYN`]) to a port.
    Ecn {
        dst_port: u16,
    },
    /// `icmp-codes` suite: ICMP / ICMPv6 of this type and code.
    IcmpCode {
        icmp_type: u8,
        code: u8,
    },
    IpOpt {
        opt: IpOpt,
        transport: Transport,
    },
    Ext {
        chain: ExtChain,
        transport: Transport,
    },
    Lan {
        dest: LanDest,
        transport: Transport,
    },
    Spoof {
        source: SpoofSource,
        transport: Transport,
    },
    Tunnel {
        tunnel: TunnelKind,
    },
}

/// Suite bases as constants (see the module documentation); checked
/// against [`Suite::base`] by the tests.
mod base {
    pub const IP: u32 = 256;
    pub const TCP: u32 = 512;
    pub const UDP: u32 = 328_192;
    pub const FRAG: u32 = 393_728;
    pub const FLAGS: u32 = 393_792;
    pub const ICMP_CODES: u32 = 462_144;
    pub const IPOPT: u32 = 466_240;
    pub const EXT6: u32 = 466_304;
    pub const LAN: u32 = 466_560;
    pub const SPOOF: u32 = 466_816;
    pub const TUNNEL: u32 = 467_072;
    pub const END: u32 = 467_136;
}

impl ProbeSpec {
    pub fn suite(&self) -> Suite {
        match self.kind {
            ProbeKind::Icmp { .. } => Suite::Icmp,
            ProbeKind::Ip { .. } => Suite::Ip,
            ProbeKind::Tcp { .. } => Suite::Tcp,
            ProbeKind::Udp { .. } => Suite::Udp,
            ProbeKind::Frag { .. } => Suite::Frag,
            ProbeKind::Flags { .. } | ProbeKind::Ecn { .. } => Suite::Flags,
            ProbeKind::IcmpCode { .. } => Suite::IcmpCodes,
            ProbeKind::IpOpt { .. } => Suite::Ipopt,
            ProbeKind::Ext { .. } => Suite::Ext6,
            ProbeKind::Lan { .. } => Suite::Lan,
            ProbeKind::Spoof { .. } => Suite::Spoof,
            ProbeKind::Tunnel { .. } => Suite::Tunnel,
        }
    }

    /// The transport of a probe of the `ipopt`, `ext6`, `lan` or `spoof` suite.
    pub fn transport(&self) -> Option<Transport> {
        match self.kind {
            ProbeKind::IpOpt { transport, .. }
            | ProbeKind::Ext { transport, .. }
            | ProbeKind::Lan { transport, .. }
            | ProbeKind::Spoof { transport, .. } => Some(transport),
            _ => None,
        }
    }

    /// The IP protocol number on the wire (IPv6: the upper-layer protocol;
    /// for a tunnel, the outer packet's).
    pub fn protocol(&self) -> u8 {
        if let Some(t) = self.transport() {
            return match t {
                Transport::TcpSyn => 6,
                Transport::Udp => 17,
                Transport::Echo => self.family.icmp_protocol(),
            };
        }
        match self.kind {
            ProbeKind::Icmp { .. } | ProbeKind::IcmpCode { .. } => self.family.icmp_protocol(),
            ProbeKind::Ip { protocol } => protocol,
            ProbeKind::Tcp { .. } | ProbeKind::Flags { .. } | ProbeKind::Ecn { .. } => 6,
            ProbeKind::Frag { frag } if frag.is_tcp() => 6,
            ProbeKind::Tunnel { tunnel } => match tunnel {
                TunnelKind::GreIpv4 | TunnelKind::GreIpv6 => 47,
                TunnelKind::Ipv4InIp => 4,
                TunnelKind::Ipv6InIp => 41,
                TunnelKind::Teredo | TunnelKind::Vxlan => 17,
            },
            _ => 17,
        }
    }

    /// The destination port, when the catalogue alone knows it (a `flags`
    /// probe to a drawn port: see [`ProbeSpec::dst_port_with`]).
    pub fn dst_port(&self) -> Option<u16> {
        self.dst_port_with(None)
    }

    /// The destination port, given the run's drawn `flags` ports
    /// (`RunKey::drawn_ports`) when known.
    pub fn dst_port_with(&self, drawn: Option<&[u16; FLAG_DRAWN_PORTS]>) -> Option<u16> {
        match self.kind {
            ProbeKind::Tcp { dst_port, .. }
            | ProbeKind::Udp { dst_port }
            | ProbeKind::Ecn { dst_port } => Some(dst_port),
            ProbeKind::Frag { frag } => Some(match frag {
                FragKind::First | FragKind::NonFirst => FRAG_PORT,
                FragKind::OverlapHead => FRAG_DECOY_PORT,
                _ => FRAG_TCP_PORT,
            }),
            ProbeKind::Flags { slot, .. } => match FLAG_FIXED_PORTS.get(slot as usize) {
                Some(p) => Some(*p),
                None => drawn?.get(slot as usize - FLAG_FIXED_PORTS.len()).copied(),
            },
            ProbeKind::Lan {
                dest,
                transport: Transport::Udp,
            } => Some(dest.udp_port()),
            ProbeKind::Tunnel {
                tunnel: TunnelKind::Teredo,
            } => Some(kinds::TEREDO_PORT),
            ProbeKind::Tunnel {
                tunnel: TunnelKind::Vxlan,
            } => Some(kinds::VXLAN_PORT),
            _ => match self.transport()? {
                Transport::TcpSyn => Some(Transport::TCP_PORT),
                Transport::Udp => Some(Transport::UDP_PORT),
                Transport::Echo => None,
            },
        }
    }

    pub fn tcp_flags(&self) -> Option<TcpFlags> {
        match self.kind {
            ProbeKind::Tcp { flags, .. } | ProbeKind::Flags { flags, .. } => Some(flags),
            ProbeKind::Ecn { .. } => Some(ECN_SYN),
            ProbeKind::Frag {
                frag: FragKind::OverlapHead,
            } => Some(TcpFlags(TcpFlags::ACK)),
            ProbeKind::Frag { frag } if frag.is_tcp() => Some(TcpFlags(TcpFlags::SYN)),
            _ if self.transport() == Some(Transport::TcpSyn) => Some(TcpFlags(TcpFlags::SYN)),
            _ => None,
        }
    }

    pub fn icmp_type(&self) -> Option<u8> {
        match self.kind {
            ProbeKind::Icmp { icmp_type } | ProbeKind::IcmpCode { icmp_type, .. } => {
                Some(icmp_type)
            }
            _ if self.transport() == Some(Transport::Echo) => Some(match self.family {
                Family::V4 => 8,
                Family::V6 => 128,
            }),
            _ => None,
        }
    }

    /// The ICMP code (0 except in the `icmp-codes` suite).
    pub fn icmp_code(&self) -> Option<u8> {
        match self.kind {
            ProbeKind::IcmpCode { code, .. } => Some(code),
            _ => self.icmp_type().map(|_| 0),
        }
    }

    /// What sets this probe apart inside its suite beyond protocol, port,
    /// flags and ICMP type, as a short name (`"lsrr tcp-syn"`,
    /// `"chain-5 udp"`, `"tiny-head"`, `"internet-source echo"`), or `None`.
    pub fn detail(&self) -> Option<String> {
        Some(match self.kind {
            ProbeKind::Frag { frag } => frag.name().to_string(),
            ProbeKind::Flags { slot, .. } if slot as usize >= FLAG_FIXED_PORTS.len() => {
                format!("drawn port {}", slot as usize - FLAG_FIXED_PORTS.len() + 1)
            }
            ProbeKind::Ecn { .. } => "ecn-setup".to_string(),
            ProbeKind::IcmpCode { code, .. } => format!("code {code}"),
            ProbeKind::IpOpt { opt, transport } => format!("{} {}", opt.name(), transport.name()),
            ProbeKind::Ext { chain, transport } => format!("{} {}", chain.name(), transport.name()),
            ProbeKind::Lan { dest, transport } => {
                format!("to {} {}", dest.name(), transport.name())
            }
            ProbeKind::Spoof { source, transport } => {
                format!("from {} {}", source.name(), transport.name())
            }
            ProbeKind::Tunnel { tunnel } => tunnel.name().to_string(),
            _ => return None,
        })
    }

    /// A name shared by the probes a frame parser treats alike: family,
    /// suite and variant (every variant of the composed suites; one for a
    /// port or flag sweep; one per ICMP type of `icmp-codes`), e.g.
    /// `"ipv6 ext6 chain-5 udp"`. The fuzz corpus holds one frame of each.
    pub fn shape(&self) -> String {
        let variant = match self.kind {
            ProbeKind::Flags { .. } => "flags".to_string(),
            ProbeKind::Ecn { .. } => "ecn".to_string(),
            ProbeKind::IcmpCode { icmp_type, .. } => format!("type {icmp_type}"),
            _ => self.detail().unwrap_or_default(),
        };
        format!("{} {} {}", self.family, self.suite(), variant)
    }

    /// The probe's sequence number (see the module documentation). A spec
    /// that is not in the catalogue (a variant its family does not have, a
    /// tcp-suite flag set outside [`TCP_FLAG_SETS`]) gets index 0xfffff,
    /// which no probe has ([`ProbeSpec::is_catalogued`] is false).
    pub fn seq(&self) -> u32 {
        let index = self.index().unwrap_or(SEQ_FAMILY_BIT - 1);
        match self.family {
            Family::V4 => index,
            Family::V6 => index | SEQ_FAMILY_BIT,
        }
    }

    /// The index inside the family's catalogue, or `None` if not catalogued.
    fn index(&self) -> Option<u32> {
        let pos = |list_pos: Option<usize>| list_pos.map(|p| p as u32);
        let fam = self.family;
        Some(match self.kind {
            ProbeKind::Icmp { icmp_type } => icmp_type as u32,
            ProbeKind::Ip { protocol } => base::IP + protocol as u32,
            ProbeKind::Tcp { flags, dst_port } => {
                base::TCP + flags.set_index()? as u32 * 65536 + dst_port as u32
            }
            ProbeKind::Udp { dst_port } => base::UDP + dst_port as u32,
            ProbeKind::Frag { frag } => {
                FragKind::of(fam).contains(&frag).then_some(())?;
                base::FRAG + frag.index()
            }
            ProbeKind::Ecn { dst_port } => base::FLAGS + dst_port as u32,
            ProbeKind::Flags { flags, slot } => {
                (u32::from(slot) < FLAG_PORT_SLOTS).then_some(())?;
                base::FLAGS + 65536 + flags.0 as u32 * FLAG_PORT_SLOTS + slot as u32
            }
            ProbeKind::IcmpCode { icmp_type, code } => {
                let t = pos(kinds::icmp_code_types(fam)
                    .iter()
                    .position(|t| *t == icmp_type))?;
                base::ICMP_CODES + t * 256 + code as u32
            }
            ProbeKind::IpOpt { opt, transport } => {
                base::IPOPT
                    + pos(IpOpt::of(fam).iter().position(|o| *o == opt))? * 3
                    + transport.index()
            }
            ProbeKind::Ext { chain, transport } => {
                base::EXT6
                    + pos(ExtChain::of(fam).iter().position(|c| *c == chain))? * 3
                    + transport.index()
            }
            ProbeKind::Lan { dest, transport } => {
                base::LAN
                    + pos(LanDest::of(fam).iter().position(|d| *d == dest))? * 3
                    + transport.index()
            }
            ProbeKind::Spoof { source, transport } => {
                base::SPOOF
                    + pos(SpoofSource::of(fam).iter().position(|s| *s == source))? * 3
                    + transport.index()
            }
            ProbeKind::Tunnel { tunnel } => {
                base::TUNNEL + pos(TunnelKind::of(fam).iter().position(|t| *t == tunnel))?
            }
        })
    }

    /// Whether this spec is one the catalogue holds (its `seq` gives it back).
    pub fn is_catalogued(&self) -> bool {
        ProbeSpec::from_seq(self.seq()) == Some(*self)
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
        let by3 = |i: u32| (i / 3, Transport::ALL[(i % 3) as usize]);
        let kind = if index < base::IP {
            ProbeKind::Icmp {
                icmp_type: index as u8,
            }
        } else if index < base::TCP {
            ProbeKind::Ip {
                protocol: (index - base::IP) as u8,
            }
        } else if index < base::UDP {
            let i = index - base::TCP;
            ProbeKind::Tcp {
                flags: TCP_FLAG_SETS[(i / 65536) as usize],
                dst_port: (i % 65536) as u16,
            }
        } else if index < base::FRAG {
            ProbeKind::Udp {
                dst_port: (index - base::UDP) as u16,
            }
        } else if index < base::FLAGS {
            ProbeKind::Frag {
                frag: *FragKind::of(family).get((index - base::FRAG) as usize)?,
            }
        } else if index < base::ICMP_CODES {
            let i = index - base::FLAGS;
            if i < 65536 {
                ProbeKind::Ecn { dst_port: i as u16 }
            } else {
                let i = i - 65536;
                ProbeKind::Flags {
                    flags: TcpFlags((i / FLAG_PORT_SLOTS) as u8),
                    slot: (i % FLAG_PORT_SLOTS) as u8,
                }
            }
        } else if index < base::IPOPT {
            let i = index - base::ICMP_CODES;
            ProbeKind::IcmpCode {
                icmp_type: *kinds::icmp_code_types(family).get((i / 256) as usize)?,
                code: (i % 256) as u8,
            }
        } else if index < base::EXT6 {
            let (v, transport) = by3(index - base::IPOPT);
            ProbeKind::IpOpt {
                opt: *IpOpt::of(family).get(v as usize)?,
                transport,
            }
        } else if index < base::LAN {
            let (v, transport) = by3(index - base::EXT6);
            ProbeKind::Ext {
                chain: *ExtChain::of(family).get(v as usize)?,
                transport,
            }
        } else if index < base::SPOOF {
            let (v, transport) = by3(index - base::LAN);
            ProbeKind::Lan {
                dest: *LanDest::of(family).get(v as usize)?,
                transport,
            }
        } else if index < base::TUNNEL {
            let (v, transport) = by3(index - base::SPOOF);
            ProbeKind::Spoof {
                source: *SpoofSource::of(family).get(v as usize)?,
                transport,
            }
        } else if index < base::END {
            ProbeKind::Tunnel {
                tunnel: *TunnelKind::of(family).get((index - base::TUNNEL) as usize)?,
            }
        } else {
            return None;
        };
        Some(ProbeSpec { family, kind })
    }

    /// Every probe of `suite` in `family`, in `seq` order.
    pub fn all(family: Family, suite: Suite) -> impl Iterator<Item = ProbeSpec> + Clone {
        let fam = match family {
            Family::V4 => 0,
            Family::V6 => SEQ_FAMILY_BIT,
        };
        (suite.base()..suite.base() + suite.probe_count(family))
            .map(move |i| ProbeSpec::from_seq(i | fam).expect("catalogue index in range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_round_trips_over_the_whole_catalogue() {
        let mut count = [0u32; 2];
        for family in Family::BOTH {
            for suite in Suite::ALL {
                let mut n = 0;
                for spec in ProbeSpec::all(family, suite) {
                    assert_eq!(spec.suite(), suite);
                    assert_eq!(spec.family, family);
                    assert_eq!(ProbeSpec::from_seq(spec.seq()), Some(spec));
                    assert!(spec.is_catalogued());
                    n += 1;
                }
                assert_eq!(n, suite.probe_count(family), "{suite} {family}");
                assert!(n <= suite.capacity(), "{suite} {family} outgrew its range");
                count[family as usize] += n;
            }
        }
        // The sizes --help and the README state.
        assert_eq!(count, [463_474, 464_779]);
    }

    #[test]
    fn suite_ranges_are_contiguous_and_fit_the_family_bit() {
        let mut next = 0;
        for s in Suite::ALL {
            assert_eq!(s.base(), next, "{s}");
            assert_eq!(Suite::of_index(s.base()), Some(s));
            assert_eq!(Suite::of_index(s.base() + s.capacity() - 1), Some(s));
            next += s.capacity();
        }
        assert_eq!(next, base::END);
        assert!(next < SEQ_FAMILY_BIT);
        assert_eq!(Suite::of_index(next), None);
    }

    #[test]
    fn every_index_decodes_to_its_own_seq_or_nothing() {
        for family in Family::BOTH {
            let fam = if family == Family::V6 {
                SEQ_FAMILY_BIT
            } else {
                0
            };
            for i in 0..base::END + 16 {
                if let Some(spec) = ProbeSpec::from_seq(i | fam) {
                    assert_eq!(spec.seq(), i | fam);
                } else {
                    let s = Suite::of_index(i);
                    assert!(
                        s.is_none_or(|s| i - s.base() >= s.probe_count(family)),
                        "{i} of {s:?} decodes to nothing"
                    );
                }
            }
        }
    }

    #[test]
    fn seeds_off_by_one_ranges_are_covered() {
        let last_udp = ProbeSpec::all(Family::V4, Suite::Udp).last().unwrap();
        assert_eq!(last_udp.dst_port(), Some(65535));
        let last_ip = ProbeSpec::all(Family::V6, Suite::Ip).last().unwrap();
        assert_eq!(last_ip.protocol(), 255);
        let last_ecn = ProbeSpec::all(Family::V4, Suite::Flags)
            .filter(|s| matches!(s.kind, ProbeKind::Ecn { .. }))
            .last()
            .unwrap();
        assert_eq!(last_ecn.dst_port(), Some(65535));
        assert_eq!(last_ecn.tcp_flags(), Some(ECN_SYN));
    }

    #[test]
    fn the_flags_suite_sends_every_combination_to_every_slot() {
        let mut seen = std::collections::HashSet::new();
        for s in ProbeSpec::all(Family::V6, Suite::Flags) {
            if let ProbeKind::Flags { flags, slot } = s.kind {
                seen.insert((flags.0, slot));
                let drawn = [40000, 40001, 40002];
                let port = s.dst_port_with(Some(&drawn)).unwrap();
                match FLAG_FIXED_PORTS.get(slot as usize) {
                    Some(p) => assert_eq!(port, *p),
                    None => assert!(drawn.contains(&port)),
                }
            }
        }
        assert_eq!(seen.len(), 256 * 11);
    }

    #[test]
    fn suite_names_round_trip() {
        for s in Suite::ALL {
            assert_eq!(Suite::from_name(s.name()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.name()));
        }
    }

    #[test]
    fn out_of_range_seq_is_none() {
        assert_eq!(ProbeSpec::from_seq(Suite::Frag.base() + 9), None);
        assert!(ProbeSpec::from_seq(Suite::Frag.base() + 9 + SEQ_FAMILY_BIT).is_some());
        assert_eq!(
            ProbeSpec::from_seq(Suite::Frag.base() + 11 + SEQ_FAMILY_BIT),
            None
        );
        assert_eq!(ProbeSpec::from_seq(base::END), None);
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
