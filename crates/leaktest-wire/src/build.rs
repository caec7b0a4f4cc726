//! Probe frame builders: turn a [`ProbeSpec`] into the bytes put on the wire.
//!
//! [`ProbeBuilder::new`] prebuilds one template per (family, probe shape)
//! with every constant field in place (addresses, lengths, TTL, window, the
//! pseudo-header part of the L4 checksum). [`ProbeBuilder::write`] copies the
//! template into the caller's buffer and rewrites only what varies per probe:
//! the payload marker, the header-tag fields, the type/protocol/port/flags
//! and the checksums. It never allocates and never panics.
//!
//! What every probe carries (see [`crate::marker`]):
//!
//! * IPv4 identification = `header_tag.ipv4_id()`, IPv6 flow label =
//!   `header_tag.flow_label()`, TTL / hop limit 64, DF clear;
//! * the 26-byte payload marker at the start of the payload;
//! * ICMP / ICMPv6 (every type, code 0): bytes 4..8 = `header_tag.icmp_id_seq()`;
//! * TCP: source port `header_tag.tcp_src_port(flag set)`, sequence number
//!   `header_tag.tcp_seq()`, acknowledgement number 0 unless ACK is set (then
//!   [`tcp_ack`]), window 64240, no options;
//! * UDP: source port `header_tag.src_port()`;
//! * frag suite: a UDP datagram to [`FRAG_PORT`] of [`FRAG_UDP_LEN`] bytes of
//!   which only one fragment is sent. `First`: offset 0, more-fragments set,
//!   carrying the UDP header, the marker and zero padding ([`FRAG_FIRST_DATA`]
//!   bytes in all). `NonFirst`: offset [`FRAG_FIRST_DATA`], more-fragments
//!   clear, carrying the marker only. IPv6 uses a Fragment extension header
//!   whose identification is [`frag_ident`]. The UDP checksum is the one of the
//!   whole datagram with its unsent bytes taken as zero.
//!
//! Checksums are valid everywhere they can be (IPv4 header, ICMP, ICMPv6 with
//! its pseudo-header, TCP, UDP; a zero UDP checksum is sent as 0xffff). The
//! `ip` suite sends the marker as the entire payload whatever the protocol
//! number, so for protocol numbers with a checksum of their own (6, 17, 1, 58
//! ...) that payload is not a valid upper-layer packet: by design.

use crate::catalogue::{
    Family, FragKind, ProbeKind, ProbeSpec, TcpFlags, FRAG_PORT, TCP_FLAG_SETS,
};
use crate::hdr::{ethernet, icmp, ipv4, ipv6, tcp, udp, IpProtocol};
use crate::marker::{HeaderTag, RunKey, MARKER_LEN};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Source and destination MAC addresses of the Ethernet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct L2 {
    pub src: [u8; 6],
    pub dst: [u8; 6],
}

/// The addresses probes are sent from and to, per family. A family whose
/// source or destination is missing is not built ([`ProbeBuilder::write`]
/// returns 0 for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Endpoints {
    pub src4: Option<Ipv4Addr>,
    pub dst4: Option<Ipv4Addr>,
    pub src6: Option<Ipv6Addr>,
    pub dst6: Option<Ipv6Addr>,
}

/// What the `lan` and `spoof` suites need to know of the network around the
/// sender besides the two endpoints. A probe that needs an address given
/// here as `None` is not built (it counts as unbuilt, never as sent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Neighbourhood {
    /// The sender's next hop toward the target (the gateway's internal
    /// address), per family.
    pub gateway4: Option<Ipv4Addr>,
    pub gateway6: Option<Ipv6Addr>,
    /// Prefix lengths of the sender's own addresses (for the subnet
    /// broadcast / subnet-router anycast destination).
    pub prefix4: Option<u8>,
    pub prefix6: Option<u8>,
    /// The gateway's uplink address and prefix length.
    pub uplink4: Option<(Ipv4Addr, u8)>,
    pub uplink6: Option<(Ipv6Addr, u8)>,
    /// The router on the gateway's uplink.
    pub router4: Option<Ipv4Addr>,
    pub router6: Option<Ipv6Addr>,
}

/// Upper bound of the length of any probe frame, Ethernet header included.
/// (The longest is the IPv6 `ext6` chain of eight headers: 14 + 40 + 80 +
/// 20 + 26 = 180 bytes.)
pub const MAX_PROBE_FRAME: usize = 256;

/// Source ports of the `flags` suite's combinations: `FLAGS_SRC_PORT +
/// flags * 11 + port slot`, so no two of its probes share a 4-tuple and none
/// shares one with the `tcp` suite (whose source ports are >= 32768).
pub const FLAGS_SRC_PORT: u16 = 20000;
/// Flag-set number in the low bits of the ECN SYN's source port (the `tcp`
/// suite uses 0..=4).
pub const ECN_SRC_SET: u8 = 5;

/// TTL / hop limit of every probe.
pub const PROBE_TTL: u8 = 64;
/// TCP window of every TCP probe.
pub const TCP_WINDOW: u16 = 64240;
/// Bytes of the fragmented UDP datagram carried by a `First` fragment probe:
/// UDP header + marker, zero padded to a multiple of 8.
pub const FRAG_FIRST_DATA: usize = (udp::HEADER_LEN + MARKER_LEN).div_ceil(8) * 8;
/// Length the UDP header of a `First` fragment probe claims for the whole
/// datagram (its first fragment plus an equally long, never sent, rest).
pub const FRAG_UDP_LEN: u16 = 2 * FRAG_FIRST_DATA as u16;

/// The acknowledgement number of a TCP probe with ACK set: nonzero, from the tag.
pub fn tcp_ack(tag: HeaderTag) -> u32 {
    ((tag.0 >> 96) as u32) | 1
}

/// The IPv6 Fragment header identification of a frag probe. It reuses the
/// tag's 32-bit TCP sequence field, which frag probes (UDP) do not otherwise use.
pub fn frag_ident(tag: HeaderTag) -> u32 {
    tag.tcp_seq()
}

/// What an `ip`-suite probe carries before its marker: a fixed head that
/// every parser of a protocol header reads instead of marker bytes.
///
/// Without it the marker's run id (bytes 6..14) fell where a TCP header has
/// its data offset and flags and an SCTP packet its first chunk type, so
/// whether conntrack took a protocol-6 probe for a new connection (and a
/// `--syn` REDIRECT sent it to tor's TransPort instead of the wire) changed
/// from run to run: about one run id in 128 (data offset 5 or 6, SYN alone
/// among FIN/SYN/RST/ACK), seen as `ip ×255` in CI. With the head, every
/// protocol reads the same bytes in every run, and 20 bytes hold every
/// header a NAT rewrites (TCP's 20, UDP's 8, SCTP's 12 plus a chunk
/// header, DCCP's 16, ICMP's checksum), so NAT never touches the marker.
///
/// What the kernel makes of it (nf_conntrack_proto_*.c, net/ipv6/exthdrs.c;
/// the same as for the first bytes of the marker before, except TCP's data
/// offset, now always 0):
/// - bytes 0..2 (`0x4c 0x6b`): ICMP/ICMPv6 type 76 code 107 (unassigned);
///   an IPv6 extension header's next header 76 and length 864 bytes, longer
///   than the packet (malformed); the inner IPv4 header of protocol 4 with
///   IHL 12 (48 bytes, longer than the 46 there are).
/// - bytes 2..4 (`0x55 0xa7`): an IPv6 Fragment header's offset with M set
///   (a short non-last fragment).
/// - bytes 4..6 (`0x01 0x00`): a UDP and UDP-Lite length of 256, longer
///   than the datagram; a DCCP data offset of 1 (4 bytes, too short):
///   conntrack finds all three invalid.
/// - byte 12 (`0`): a TCP data offset of 0 (invalid); an SCTP chunk of
///   type 0 and length 0 (invalid).
pub const IP_SUITE_HEAD: [u8; 20] = [
    0x4c, 0x6b, 0x55, 0xa7, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// The shape of a probe: which template it is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Icmp = 0,
    Ip = 1,
    Tcp = 2,
    Udp = 3,
    FragFirst = 4,
    FragNonFirst = 5,
}

const SHAPES: [Shape; 6] = [
    Shape::Icmp,
    Shape::Ip,
    Shape::Tcp,
    Shape::Udp,
    Shape::FragFirst,
    Shape::FragNonFirst,
];

impl Shape {
    /// The template of a probe, or `None` for a composed one.
    fn of(kind: &ProbeKind) -> Option<Shape> {
        Some(match kind {
            ProbeKind::Icmp { .. } | ProbeKind::IcmpCode { .. } => Shape::Icmp,
            ProbeKind::Ip { .. } => Shape::Ip,
            ProbeKind::Tcp { .. } | ProbeKind::Flags { .. } | ProbeKind::Ecn { .. } => Shape::Tcp,
            ProbeKind::Udp { .. } => Shape::Udp,
            ProbeKind::Frag {
                frag: FragKind::First,
            } => Shape::FragFirst,
            ProbeKind::Frag {
                frag: FragKind::NonFirst,
            } => Shape::FragNonFirst,
            _ => return None,
        })
    }

    /// Length of the upper-layer header before the marker.
    fn l4_header_len(self) -> usize {
        match self {
            Shape::Icmp => icmp::HEADER_LEN,
            Shape::Udp | Shape::FragFirst => udp::HEADER_LEN,
            Shape::Tcp => tcp::HEADER_LEN,
            Shape::Ip => IP_SUITE_HEAD.len(),
            Shape::FragNonFirst => 0,
        }
    }

    /// Bytes after the IP header(s): upper-layer header, marker, padding.
    fn l4_len(self) -> usize {
        match self {
            Shape::FragFirst => FRAG_FIRST_DATA,
            s => s.l4_header_len() + MARKER_LEN,
        }
    }
}

/// One prebuilt probe frame with its variable fields zero.
#[derive(Clone, Debug)]
struct Template {
    bytes: [u8; MAX_PROBE_FRAME],
    len: usize,
    /// Offset of the IP header.
    ip: usize,
    /// Offset of the upper-layer data (after any IPv6 Fragment header).
    l4: usize,
    /// Partial one's-complement sum of the pseudo-header.
    pseudo: u64,
}

/// Builds probe frames of one run from prebuilt templates.
#[derive(Clone, Debug)]
pub struct ProbeBuilder {
    key: RunKey,
    ends: Endpoints,
    hood: Neighbourhood,
    l2: Option<L2>,
    /// The run's drawn `flags` ports.
    drawn: [u16; crate::catalogue::FLAG_DRAWN_PORTS],
    /// `templates[family][shape]`; `None` for a family without endpoints.
    templates: [Option<Box<[Template; 6]>>; 2],
}

impl ProbeBuilder {
    /// Marks every probe written from now on with pulse round `round`
    /// ([`RunKey::with_round`]); the templates stay.
    pub fn set_round(&mut self, round: u32) {
        self.key = self.key.with_round(round);
    }
}

fn family_index(f: Family) -> usize {
    match f {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

impl ProbeBuilder {
    /// Prebuilds the templates of every family that has both endpoints.
    pub fn new(key: RunKey, ends: Endpoints, l2: Option<L2>) -> ProbeBuilder {
        let v4 = match (ends.src4, ends.dst4) {
            (Some(s), Some(d)) => Some(Box::new(SHAPES.map(|sh| template_v4(sh, s, d, l2)))),
            _ => None,
        };
        let v6 = match (ends.src6, ends.dst6) {
            (Some(s), Some(d)) => Some(Box::new(SHAPES.map(|sh| template_v6(sh, s, d, l2)))),
            _ => None,
        };
        ProbeBuilder {
            key,
            ends,
            hood: Neighbourhood::default(),
            l2,
            drawn: key.drawn_ports(),
            templates: [v4, v6],
        }
    }

    /// The same builder with what the `lan` and `spoof` suites need to know
    /// of the network (without it, probes that need it are not built).
    pub fn with_neighbourhood(mut self, hood: Neighbourhood) -> ProbeBuilder {
        self.hood = hood;
        self
    }

    /// The run's drawn `flags` ports.
    pub fn drawn_ports(&self) -> &[u16; crate::catalogue::FLAG_DRAWN_PORTS] {
        &self.drawn
    }

    /// The run key probes are marked with.
    pub fn key(&self) -> &RunKey {
        &self.key
    }

    /// Whether probes of `family` can be built (both its endpoints are known).
    pub fn has_family(&self, family: Family) -> bool {
        self.templates[family_index(family)].is_some()
    }

    /// Length of the frame [`ProbeBuilder::write`] writes for `spec` (0 if it
    /// cannot be built).
    pub fn frame_len(&self, spec: &ProbeSpec) -> usize {
        match (
            &self.templates[family_index(spec.family)],
            Shape::of(&spec.kind),
        ) {
            (Some(t), Some(shape)) => t[shape as usize].len,
            (Some(_), None) => self.write(spec, &mut [0u8; MAX_PROBE_FRAME]),
            (None, _) => 0,
        }
    }

    /// Writes the probe into `buf` (Ethernet frame if l2 is Some, else bare IP
    /// packet); returns its length. Panics never; returns 0 if the family has
    /// no endpoints, if `buf` is too short, if `spec` is not in the
    /// catalogue (a TCP flag set outside [`TCP_FLAG_SETS`]) or if it needs an
    /// address of the [`Neighbourhood`] that is unknown. Template probes
    /// never allocate; the evasion suites' composed probes
    /// ([`crate::compose`]) build in a small `Vec`.
    pub fn write(&self, spec: &ProbeSpec, buf: &mut [u8]) -> usize {
        match spec.kind {
            ProbeKind::Tcp { flags, .. } if !TCP_FLAG_SETS.contains(&flags) => return 0,
            ProbeKind::Flags { .. } | ProbeKind::IcmpCode { .. } if !spec.is_catalogued() => {
                return 0
            }
            _ => {}
        }
        let Some(templates) = &self.templates[family_index(spec.family)] else {
            return 0;
        };
        let Some(shape) = Shape::of(&spec.kind) else {
            if !spec.is_catalogued() {
                return 0;
            }
            return crate::compose::write(&self.key, &self.ends, &self.hood, self.l2, spec, buf);
        };
        let t = &templates[shape as usize];
        let Some(out) = buf.get_mut(..t.len) else {
            return 0;
        };
        out.copy_from_slice(&t.bytes[..t.len]);

        let seq = spec.seq();
        let tag = self.key.header_tag(seq);
        let marker_at = t.l4 + shape.l4_header_len();
        out[marker_at..marker_at + MARKER_LEN].copy_from_slice(&self.key.payload_marker(seq));

        let ip = &mut out[t.ip..];
        match spec.family {
            Family::V4 => {
                use ipv4::field;
                ip[field::IDENT].copy_from_slice(&tag.ipv4_id().to_be_bytes());
                if let ProbeKind::Ip { protocol } = spec.kind {
                    ip[field::PROTOCOL] = protocol;
                }
                let c = fold(sum(&ip[..ipv4::HEADER_LEN], 0));
                ip[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
            }
            Family::V6 => {
                use ipv6::field;
                let fl = tag.flow_label();
                let vtf = &mut ip[field::VER_TC_FLOW];
                vtf[1] = (vtf[1] & 0xf0) | ((fl >> 16) as u8 & 0x0f);
                vtf[2] = (fl >> 8) as u8;
                vtf[3] = fl as u8;
                if let ProbeKind::Ip { protocol } = spec.kind {
                    ip[field::NEXT_HEADER] = protocol;
                }
                if matches!(shape, Shape::FragFirst | Shape::FragNonFirst) {
                    ip[ipv6::HEADER_LEN..][ipv6::frag::IDENT]
                        .copy_from_slice(&frag_ident(tag).to_be_bytes());
                }
            }
        }

        let l4 = &mut out[t.l4..t.len];
        match spec.kind {
            ProbeKind::Icmp { icmp_type } | ProbeKind::IcmpCode { icmp_type, .. } => {
                use icmp::field;
                l4[field::TYPE] = icmp_type;
                l4[field::CODE] = spec.icmp_code().unwrap_or(0);
                let (id, sq) = tag.icmp_id_seq();
                l4[field::IDENT].copy_from_slice(&id.to_be_bytes());
                l4[field::SEQ].copy_from_slice(&sq.to_be_bytes());
                // ICMPv4 has no pseudo-header: its template sum is 0.
                let c = fold(sum(l4, t.pseudo));
                l4[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
            }
            ProbeKind::Ip { .. }
            | ProbeKind::Frag {
                frag: FragKind::NonFirst,
            } => {}
            ProbeKind::Tcp { .. } | ProbeKind::Flags { .. } | ProbeKind::Ecn { .. } => {
                use tcp::field;
                let flags = spec.tcp_flags().unwrap_or_default();
                let Some(dst_port) = spec.dst_port_with(Some(&self.drawn)) else {
                    return 0;
                };
                let src_port = match spec.kind {
                    ProbeKind::Flags { flags, slot } => {
                        FLAGS_SRC_PORT
                            + flags.0 as u16 * crate::catalogue::FLAG_PORT_SLOTS as u16
                            + slot as u16
                    }
                    ProbeKind::Ecn { .. } => tag.tcp_src_port(ECN_SRC_SET),
                    _ => tag.tcp_src_port(flags.set_index().unwrap_or(0)),
                };
                l4[field::SRC_PORT].copy_from_slice(&src_port.to_be_bytes());
                l4[field::DST_PORT].copy_from_slice(&dst_port.to_be_bytes());
                l4[field::SEQ].copy_from_slice(&tag.tcp_seq().to_be_bytes());
                if flags.0 & TcpFlags::ACK != 0 {
                    l4[field::ACK].copy_from_slice(&tcp_ack(tag).to_be_bytes());
                }
                l4[field::FLAGS] = flags.0;
                let c = fold(sum(l4, t.pseudo));
                l4[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
            }
            ProbeKind::Udp { dst_port } => {
                use udp::field;
                l4[field::SRC_PORT].copy_from_slice(&tag.src_port().to_be_bytes());
                l4[field::DST_PORT].copy_from_slice(&dst_port.to_be_bytes());
                let c = nonzero(fold(sum(l4, t.pseudo)));
                l4[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
            }
            ProbeKind::Frag {
                frag: FragKind::First,
            } => {
                use udp::field;
                l4[field::SRC_PORT].copy_from_slice(&tag.src_port().to_be_bytes());
                let c = nonzero(fold(sum(l4, t.pseudo)));
                l4[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
            }
            _ => return 0,
        }
        t.len
    }
}

/// Adds `data` to a one's-complement partial sum (big-endian 16-bit words;
/// an odd trailing byte is padded with zero). Summing 32-bit words is the
/// same modulo 0xffff and twice as fast.
#[inline]
pub(crate) fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64;
    }
    // 0..=3 trailing bytes, in their big-endian positions (no memcpy call).
    for (i, b) in chunks.remainder().iter().enumerate() {
        acc += (*b as u64) << (24 - 8 * i);
    }
    acc
}

/// Folds a partial sum and complements it: the checksum field value.
#[inline]
pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// UDP sends a computed checksum of 0 as 0xffff (0 means "none").
#[inline]
fn nonzero(c: u16) -> u16 {
    if c == 0 {
        0xffff
    } else {
        c
    }
}

fn empty_template() -> Template {
    Template {
        bytes: [0; MAX_PROBE_FRAME],
        len: 0,
        ip: 0,
        l4: 0,
        pseudo: 0,
    }
}

fn write_l2(t: &mut Template, l2: Option<L2>, ethertype: u16) {
    use ethernet::field;
    if let Some(l2) = l2 {
        t.bytes[field::DESTINATION].copy_from_slice(&l2.dst);
        t.bytes[field::SOURCE].copy_from_slice(&l2.src);
        t.bytes[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
        t.ip = ethernet::HEADER_LEN;
    }
}

/// Fills in the constant upper-layer fields of a template.
fn write_l4_constants(t: &mut Template, shape: Shape) {
    let b = &mut t.bytes[t.l4..];
    match shape {
        Shape::Tcp => {
            // Data offset: 20 bytes, no options.
            b[tcp::field::DATA_OFFSET] = ((tcp::HEADER_LEN / 4) as u8) << 4;
            b[tcp::field::WINDOW].copy_from_slice(&TCP_WINDOW.to_be_bytes());
        }
        Shape::Udp => {
            let len = (udp::HEADER_LEN + MARKER_LEN) as u16;
            b[udp::field::LENGTH].copy_from_slice(&len.to_be_bytes());
        }
        Shape::FragFirst => {
            b[udp::field::DST_PORT].copy_from_slice(&FRAG_PORT.to_be_bytes());
            b[udp::field::LENGTH].copy_from_slice(&FRAG_UDP_LEN.to_be_bytes());
        }
        Shape::Ip => b[..IP_SUITE_HEAD.len()].copy_from_slice(&IP_SUITE_HEAD),
        Shape::Icmp | Shape::FragNonFirst => {}
    }
}

/// Protocol number of the upper layer of a shape (0 for `ip`: set per probe).
fn shape_protocol(shape: Shape, family: Family) -> u8 {
    match shape {
        Shape::Icmp => family.icmp_protocol(),
        Shape::Ip => 0,
        Shape::Tcp => IpProtocol::TCP.0,
        Shape::Udp | Shape::FragFirst | Shape::FragNonFirst => IpProtocol::UDP.0,
    }
}

/// The length the L4 checksum's pseudo-header states for a shape.
fn pseudo_len(shape: Shape) -> u32 {
    match shape {
        Shape::FragFirst => FRAG_UDP_LEN as u32,
        s => s.l4_len() as u32,
    }
}

fn template_v4(shape: Shape, src: Ipv4Addr, dst: Ipv4Addr, l2: Option<L2>) -> Template {
    use ipv4::field;
    let mut t = empty_template();
    write_l2(&mut t, l2, ethernet::ETHERTYPE_IPV4);
    t.l4 = t.ip + ipv4::HEADER_LEN;
    t.len = t.l4 + shape.l4_len();
    let protocol = shape_protocol(shape, Family::V4);
    let total = (t.len - t.ip) as u16;
    let b = &mut t.bytes[t.ip..];
    b[field::VER_IHL] = ipv4::VER_IHL_NO_OPTIONS;
    b[field::LENGTH].copy_from_slice(&total.to_be_bytes());
    let frag: u16 = match shape {
        Shape::FragFirst => ipv4::FLAG_MF,
        Shape::FragNonFirst => (FRAG_FIRST_DATA / 8) as u16,
        _ => 0,
    };
    b[field::FLAGS_FRAG].copy_from_slice(&frag.to_be_bytes());
    b[field::TTL] = PROBE_TTL;
    b[field::PROTOCOL] = protocol;
    b[field::SRC].copy_from_slice(&src.octets());
    b[field::DST].copy_from_slice(&dst.octets());
    write_l4_constants(&mut t, shape);
    t.pseudo = match shape {
        Shape::Icmp | Shape::Ip | Shape::FragNonFirst => 0,
        _ => {
            let acc = sum(&src.octets(), 0) + sum(&dst.octets(), 0);
            acc + protocol as u64 + pseudo_len(shape) as u64
        }
    };
    t
}

fn template_v6(shape: Shape, src: Ipv6Addr, dst: Ipv6Addr, l2: Option<L2>) -> Template {
    use ipv6::field;
    let mut t = empty_template();
    write_l2(&mut t, l2, ethernet::ETHERTYPE_IPV6);
    let frag = matches!(shape, Shape::FragFirst | Shape::FragNonFirst);
    t.l4 = t.ip + ipv6::HEADER_LEN + if frag { ipv6::frag::LEN } else { 0 };
    t.len = t.l4 + shape.l4_len();
    let protocol = shape_protocol(shape, Family::V6);
    let payload = (t.len - t.ip - ipv6::HEADER_LEN) as u16;
    let b = &mut t.bytes[t.ip..];
    b[field::VER_TC_FLOW.start] = 0x60;
    b[field::PAYLOAD_LEN].copy_from_slice(&payload.to_be_bytes());
    b[field::NEXT_HEADER] = if frag {
        IpProtocol::FRAGMENT.0
    } else {
        protocol
    };
    b[field::HOP_LIMIT] = PROBE_TTL;
    b[field::SRC].copy_from_slice(&src.octets());
    b[field::DST].copy_from_slice(&dst.octets());
    if frag {
        let f = &mut b[ipv6::HEADER_LEN..];
        f[ipv6::frag::NEXT_HEADER] = protocol;
        let off_m: u16 = match shape {
            Shape::FragFirst => ipv6::frag::FLAG_M,
            _ => ((FRAG_FIRST_DATA / 8) as u16) << 3,
        };
        f[ipv6::frag::OFFSET_M].copy_from_slice(&off_m.to_be_bytes());
    }
    write_l4_constants(&mut t, shape);
    t.pseudo = match shape {
        Shape::Ip | Shape::FragNonFirst => 0,
        _ => {
            let acc = sum(&src.octets(), 0) + sum(&dst.octets(), 0);
            acc + protocol as u64 + pseudo_len(shape) as u64
        }
    };
    t
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::catalogue::{Suite, TcpFlags};
    use etherparse::checksum::Sum16BitWords;

    pub(crate) fn ends() -> Endpoints {
        Endpoints {
            src4: Some(Ipv4Addr::new(10, 152, 152, 11)),
            dst4: Some(Ipv4Addr::new(203, 0, 113, 7)),
            src6: Some("fd19:c33d:88bc::11".parse().unwrap()),
            dst6: Some("2001:db8::7".parse().unwrap()),
        }
    }

    pub(crate) const MACS: L2 = L2 {
        src: [2, 0, 0, 0, 0, 1],
        dst: [2, 0, 0, 0, 0, 2],
    };

    pub(crate) fn builder(l2: Option<L2>) -> ProbeBuilder {
        ProbeBuilder::new(RunKey::open(0x0102030405060708), ends(), l2)
    }

    fn spec(family: Family, kind: ProbeKind) -> ProbeSpec {
        ProbeSpec { family, kind }
    }

    /// Verifies every checksum of a probe with etherparse's summing code (not
    /// ours). `frame` is a bare IP packet.
    pub(crate) fn assert_checksums(spec: &ProbeSpec, ip: &[u8]) {
        if Shape::of(&spec.kind).is_none() {
            // Composed probes: checked with etherparse in `compose::tests`.
            return;
        }
        let (l4, pseudo) = match spec.family {
            Family::V4 => {
                let hdr = Sum16BitWords::new().add_slice(&ip[..20]);
                assert_eq!(hdr.ones_complement(), 0, "IPv4 header checksum of {spec:?}");
                let l4 = &ip[20..];
                let len = match spec.kind {
                    ProbeKind::Frag { .. } => FRAG_UDP_LEN,
                    _ => l4.len() as u16,
                };
                let p = Sum16BitWords::new()
                    .add_slice(&ip[12..20])
                    .add_2bytes([0, ip[9]])
                    .add_2bytes(len.to_be_bytes());
                (l4, p)
            }
            Family::V6 => {
                let l4 = if ip[6] == 44 { &ip[48..] } else { &ip[40..] };
                let len = match spec.kind {
                    ProbeKind::Frag { .. } => FRAG_UDP_LEN as u32,
                    _ => l4.len() as u32,
                };
                let p = Sum16BitWords::new()
                    .add_slice(&ip[8..40])
                    .add_4bytes(len.to_be_bytes())
                    .add_4bytes([0, 0, 0, spec.protocol()]);
                (l4, p)
            }
        };
        let check =
            |s: Sum16BitWords| assert_eq!(s.ones_complement(), 0, "L4 checksum of {spec:?}");
        match spec.kind {
            ProbeKind::Icmp { .. } | ProbeKind::IcmpCode { .. } if spec.family == Family::V4 => {
                check(Sum16BitWords::new().add_slice(l4))
            }
            ProbeKind::Icmp { .. }
            | ProbeKind::IcmpCode { .. }
            | ProbeKind::Tcp { .. }
            | ProbeKind::Flags { .. }
            | ProbeKind::Ecn { .. } => check(pseudo.add_slice(l4)),
            ProbeKind::Udp { .. }
            | ProbeKind::Frag {
                frag: FragKind::First,
            } => {
                assert_ne!(&l4[6..8], &[0, 0], "UDP checksum of {spec:?} is 0");
                check(pseudo.add_slice(l4))
            }
            _ => {}
        }
    }

    /// The frame of `spec` from the test builder, with Ethernet header.
    fn frame(spec: ProbeSpec) -> Vec<u8> {
        let mut buf = [0u8; MAX_PROBE_FRAME];
        let n = builder(Some(MACS)).write(&spec, &mut buf);
        buf[..n].to_vec()
    }

    // Vectors: run id 0x0102030405060708 (open key), 10.152.152.11 ->
    // 203.0.113.7 and fd19:c33d:88bc::11 -> 2001:db8::7, MAC 02::01 -> 02::02.
    // Checked with tshark 4.0 (all checksums "Good", fields as commented).

    #[rustfmt::skip]
    const ICMP4_ECHO: [u8; 68] = [
        // Ethernet
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
        // IPv4: len 54, id = tag, ttl 64, proto 1
        0x45, 0x00, 0x00, 0x36, 0x66, 0xa9, 0x00, 0x00, 0x40, 0x01, 0x35, 0x73, 0x0a, 0x98, 0x98, 0x0b, 0xcb, 0x00, 0x71, 0x07,
        // ICMP: type 8 code 0, checksum, id/seq = tag
        0x08, 0x00, 0x15, 0x84, 0x72, 0x0b, 0xd4, 0xe1,
        // marker: magic, version, mode, run id
        0x4c, 0x6b, 0x54, 0xa7, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
        // marker: seq 8, MAC
        0x00, 0x00, 0x00, 0x08, 0x6e, 0xbc, 0xd9, 0xc6, 0xf1, 0x29, 0xaf, 0xb2,
    ];
    #[rustfmt::skip]
    const IP4_PROTO_253: [u8; 80] = [
        // Ethernet
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
        // IPv4: len 66, id = tag, ttl 64, proto 253
        0x45, 0x00, 0x00, 0x42, 0xa4, 0xba, 0x00, 0x00, 0x40, 0xfd, 0xf6, 0x59, 0x0a, 0x98, 0x98, 0x0b, 0xcb, 0x00, 0x71, 0x07,
        // the ip suite's fixed head
        0x4c, 0x6b, 0x55, 0xa7, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        // marker: magic, version, mode, run id
        0x4c, 0x6b, 0x54, 0xa7, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
        // marker: seq 256 + 253, MAC
        0x00, 0x00, 0x01, 0xfd, 0x75, 0x62, 0x86, 0xdf, 0x88, 0xbc, 0x03, 0xa4,
    ];

    #[rustfmt::skip]
    const TCP4_SYN_443: [u8; 80] = [
        // Ethernet
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
        // IPv4: len 66, id = tag, ttl 64, proto 6
        0x45, 0x00, 0x00, 0x42, 0xd7, 0xbf, 0x00, 0x00, 0x40, 0x06, 0xc4, 0x4b, 0x0a, 0x98, 0x98, 0x0b, 0xcb, 0x00, 0x71, 0x07,
        // TCP: ports (src = tag, flag set 0 in the low 3 bits), seq = tag, ack 0
        0xf9, 0xc8, 0x01, 0xbb, 0x8e, 0xb5, 0xde, 0x50, 0x00, 0x00, 0x00, 0x00,
        // TCP: offset 5, SYN, window 64240, checksum, urgent 0
        0x50, 0x02, 0xfa, 0xf0, 0x00, 0x28, 0x00, 0x00,
        // marker: magic, version, mode, run id
        0x4c, 0x6b, 0x54, 0xa7, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
        // marker: seq, MAC
        0x00, 0x00, 0x03, 0xbb, 0x8a, 0x20, 0x9a, 0xce, 0xfe, 0xed, 0x93, 0xbb,
    ];

    #[rustfmt::skip]
    const FRAG4_FIRST: [u8; 74] = [
        // Ethernet
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
        // IPv4: len 60, id = tag, MF offset 0, ttl 64, proto 17
        0x45, 0x00, 0x00, 0x3c, 0x0a, 0x24, 0x20, 0x00, 0x40, 0x11, 0x71, 0xe2, 0x0a, 0x98, 0x98, 0x0b, 0xcb, 0x00, 0x71, 0x07,
        // UDP: src = tag, dst 53, len 80, checksum
        0xc3, 0x52, 0x00, 0x35, 0x00, 0x50, 0xc4, 0xab,
        // marker: magic, version, mode, run id
        0x4c, 0x6b, 0x54, 0xa7, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
        // marker: seq, MAC
        0x00, 0x06, 0x02, 0x00, 0xff, 0x43, 0xe3, 0x4b, 0x7d, 0xe6, 0x83, 0xcc,
        // padding to a multiple of 8
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    #[rustfmt::skip]
    const FRAG4_NON_FIRST: [u8; 60] = [
        // Ethernet
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
        // IPv4: len 46, id = tag, offset 40, ttl 64, proto 17
        0x45, 0x00, 0x00, 0x2e, 0xcf, 0x44, 0x00, 0x05, 0x40, 0x11, 0xcc, 0xca, 0x0a, 0x98, 0x98, 0x0b, 0xcb, 0x00, 0x71, 0x07,
        // marker: magic, version, mode, run id
        0x4c, 0x6b, 0x54, 0xa7, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
        // marker: seq, MAC
        0x00, 0x06, 0x02, 0x01, 0xba, 0xbd, 0xf6, 0xa5, 0x0a, 0xd1, 0x8f, 0xb2,
    ];

    #[rustfmt::skip]
    const ICMP6_ECHO: [u8; 88] = [
        // Ethernet
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd,
        // IPv6: flow = tag, plen 34, nh 58, hop limit 64
        0x60, 0x05, 0xe1, 0x1f, 0x00, 0x22, 0x3a, 0x40,
        // src
        0xfd, 0x19, 0xc3, 0x3d, 0x88, 0xbc, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x11,
        // dst
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,
        // ICMPv6: type 128 code 0, checksum, id/seq = tag
        0x80, 0x00, 0x92, 0x81, 0xaf, 0xb2, 0xea, 0xe1,
        // marker: magic, version, mode, run id
        0x4c, 0x6b, 0x54, 0xa7, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
        // marker: seq, MAC
        0x00, 0x10, 0x00, 0x80, 0x70, 0x73, 0x32, 0x8f, 0x13, 0x84, 0x72, 0x6a,
    ];

    #[rustfmt::skip]
    const TCP6_FIN_ACK_80: [u8; 100] = [
        // Ethernet
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd,
        // IPv6: flow = tag, plen 46, nh 6, hop limit 64
        0x60, 0x0d, 0x89, 0xc9, 0x00, 0x2e, 0x06, 0x40,
        // src
        0xfd, 0x19, 0xc3, 0x3d, 0x88, 0xbc, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x11,
        // dst
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,
        // TCP: ports (src = tag, flag set 2 in the low 3 bits), seq = tag, ack = from tag
        0xd6, 0xba, 0x00, 0x50, 0x59, 0x3a, 0xa8, 0x0e, 0x0d, 0xd5, 0x6b, 0xa3,
        // TCP: offset 5, FIN+ACK, window 64240, checksum, urgent 0
        0x50, 0x11, 0xfa, 0xf0, 0xbd, 0x22, 0x00, 0x00,
        // marker: magic, version, mode, run id
        0x4c, 0x6b, 0x54, 0xa7, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
        // marker: seq, MAC
        0x00, 0x12, 0x02, 0x50, 0x89, 0x4d, 0x95, 0x9b, 0x4b, 0x05, 0x10, 0x7e,
    ];

    #[rustfmt::skip]
    const UDP6_53: [u8; 88] = [
        // Ethernet
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd,
        // IPv6: flow = tag, plen 34, nh 17, hop limit 64
        0x60, 0x03, 0x11, 0xa0, 0x00, 0x22, 0x11, 0x40,
        // src
        0xfd, 0x19, 0xc3, 0x3d, 0x88, 0xbc, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x11,
        // dst
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,
        // UDP: src = tag, dst 53, len 34, checksum
        0x9e, 0x88, 0x00, 0x35, 0x00, 0x22, 0x7a, 0xb8,
        // marker: magic, version, mode, run id
        0x4c, 0x6b, 0x54, 0xa7, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
        // marker: seq, MAC
        0x00, 0x15, 0x02, 0x35, 0xe3, 0xdb, 0x12, 0xcf, 0xbd, 0x8b, 0x06, 0xa8,
    ];

    #[rustfmt::skip]
    const FRAG6_FIRST: [u8; 102] = [
        // Ethernet
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd,
        // IPv6: flow = tag, plen 48, nh 44, hop limit 64
        0x60, 0x04, 0x74, 0xf6, 0x00, 0x30, 0x2c, 0x40,
        // src
        0xfd, 0x19, 0xc3, 0x3d, 0x88, 0xbc, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x11,
        // dst
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,
        // Fragment: nh 17, offset 0, M, identification = tag
        0x11, 0x00, 0x00, 0x01, 0xea, 0xcc, 0x59, 0xb0,
        // UDP: src = tag, dst 53, len 80, checksum
        0xcc, 0x10, 0x00, 0x35, 0x00, 0x50, 0x3e, 0x47,
        // marker: magic, version, mode, run id
        0x4c, 0x6b, 0x54, 0xa7, 0x01, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
        // marker: seq, MAC
        0x00, 0x16, 0x02, 0x00, 0x38, 0xde, 0xa8, 0xe6, 0xba, 0xc6, 0x2d, 0x14,
        // padding to a multiple of 8
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    #[test]
    fn vectors() {
        use ProbeKind::*;
        let v = [
            (spec(Family::V4, Icmp { icmp_type: 8 }), &ICMP4_ECHO[..]),
            (spec(Family::V4, Ip { protocol: 253 }), &IP4_PROTO_253[..]),
            (
                spec(
                    Family::V4,
                    Tcp {
                        flags: TcpFlags(TcpFlags::SYN),
                        dst_port: 443,
                    },
                ),
                &TCP4_SYN_443[..],
            ),
            (
                spec(
                    Family::V4,
                    Frag {
                        frag: FragKind::First,
                    },
                ),
                &FRAG4_FIRST[..],
            ),
            (
                spec(
                    Family::V4,
                    Frag {
                        frag: FragKind::NonFirst,
                    },
                ),
                &FRAG4_NON_FIRST[..],
            ),
            (spec(Family::V6, Icmp { icmp_type: 128 }), &ICMP6_ECHO[..]),
            (
                spec(
                    Family::V6,
                    Tcp {
                        flags: TcpFlags(TcpFlags::FIN | TcpFlags::ACK),
                        dst_port: 80,
                    },
                ),
                &TCP6_FIN_ACK_80[..],
            ),
            (spec(Family::V6, Udp { dst_port: 53 }), &UDP6_53[..]),
            (
                spec(
                    Family::V6,
                    Frag {
                        frag: FragKind::First,
                    },
                ),
                &FRAG6_FIRST[..],
            ),
        ];
        let bare = builder(None);
        for (s, bytes) in v {
            assert_eq!(frame(s), bytes, "{s:?}");
            // Without L2 the same packet, minus the Ethernet header.
            let mut buf = [0u8; MAX_PROBE_FRAME];
            let n = bare.write(&s, &mut buf);
            assert_eq!(&buf[..n], &bytes[14..], "{s:?} without L2");
            assert_checksums(&s, &bytes[14..]);
        }
    }

    #[test]
    fn no_two_tcp_probes_share_a_four_tuple() {
        // Otherwise a stateful gateway would take the later probe for a
        // packet of the earlier one's connection and not judge it alone.
        let b = builder(Some(MACS));
        let mut buf = [0u8; MAX_PROBE_FRAME];
        for family in Family::BOTH {
            let l4 = 14
                + match family {
                    Family::V4 => 20,
                    Family::V6 => 40,
                };
            let mut seen = std::collections::HashSet::new();
            for s in ProbeSpec::all(family, Suite::Tcp) {
                assert!(b.write(&s, &mut buf) > 0);
                let ports = (
                    u16::from_be_bytes([buf[l4], buf[l4 + 1]]),
                    u16::from_be_bytes([buf[l4 + 2], buf[l4 + 3]]),
                );
                assert_eq!(Some(ports.1), s.dst_port());
                assert!(ports.0 >= 32768, "{s:?}");
                assert!(seen.insert(ports), "{s:?} repeats {ports:?}");
            }
        }
    }

    #[test]
    fn header_tag_fields_are_where_the_contract_says() {
        let key = RunKey::open(0x0102030405060708);
        for family in Family::BOTH {
            for kind in [
                ProbeKind::Icmp { icmp_type: 3 },
                ProbeKind::Tcp {
                    flags: TcpFlags(TcpFlags::ACK),
                    dst_port: 9001,
                },
                ProbeKind::Tcp {
                    flags: TcpFlags(0),
                    dst_port: 0,
                },
                ProbeKind::Udp { dst_port: 65535 },
                ProbeKind::Frag {
                    frag: FragKind::First,
                },
                ProbeKind::Frag {
                    frag: FragKind::NonFirst,
                },
            ] {
                let s = spec(family, kind);
                let f = frame(s);
                let ip = &f[14..];
                let tag = key.header_tag(s.seq());
                let l4 = match family {
                    Family::V4 => {
                        assert_eq!(&ip[4..6], &tag.ipv4_id().to_be_bytes());
                        assert_eq!(ip[8], PROBE_TTL);
                        20
                    }
                    Family::V6 => {
                        let fl = u32::from_be_bytes([0, ip[1] & 0x0f, ip[2], ip[3]]);
                        assert_eq!(fl, tag.flow_label());
                        assert_eq!(ip[7], PROBE_TTL);
                        if ip[6] == 44 {
                            assert_eq!(&ip[44..48], &frag_ident(tag).to_be_bytes());
                            48
                        } else {
                            40
                        }
                    }
                };
                let l4 = &ip[l4..];
                let marker = key.payload_marker(s.seq());
                match kind {
                    ProbeKind::Icmp { icmp_type } => {
                        assert_eq!((l4[0], l4[1]), (icmp_type, 0));
                        let (id, sq) = tag.icmp_id_seq();
                        assert_eq!(
                            &l4[4..8],
                            &[id.to_be_bytes(), sq.to_be_bytes()].concat()[..]
                        );
                        assert_eq!(&l4[8..], &marker);
                    }
                    ProbeKind::Tcp { flags, dst_port } => {
                        let set = flags.set_index().unwrap();
                        assert_eq!(&l4[0..2], &tag.tcp_src_port(set).to_be_bytes());
                        assert_eq!(&l4[2..4], &dst_port.to_be_bytes());
                        assert_eq!(&l4[4..8], &tag.tcp_seq().to_be_bytes());
                        let ack = u32::from_be_bytes(l4[8..12].try_into().unwrap());
                        assert_eq!(ack != 0, flags.0 & TcpFlags::ACK != 0);
                        assert_eq!(l4[13], flags.0);
                        assert_eq!(&l4[14..16], &TCP_WINDOW.to_be_bytes());
                        assert_eq!(&l4[20..], &marker);
                    }
                    ProbeKind::Udp { dst_port } => {
                        assert_eq!(&l4[0..2], &tag.src_port().to_be_bytes());
                        assert_eq!(&l4[2..4], &dst_port.to_be_bytes());
                        assert_eq!(&l4[4..6], &34u16.to_be_bytes());
                        assert_eq!(&l4[8..], &marker);
                    }
                    ProbeKind::Frag {
                        frag: FragKind::First,
                    } => {
                        assert_eq!(&l4[0..2], &tag.src_port().to_be_bytes());
                        assert_eq!(&l4[2..4], &FRAG_PORT.to_be_bytes());
                        assert_eq!(&l4[4..6], &FRAG_UDP_LEN.to_be_bytes());
                        assert_eq!(&l4[8..34], &marker);
                        assert_eq!(l4.len(), FRAG_FIRST_DATA);
                        assert_eq!(l4.len() % 8, 0);
                    }
                    ProbeKind::Frag {
                        frag: FragKind::NonFirst,
                    } => assert_eq!(l4, &marker),
                    _ => unreachable!(),
                }
            }
        }
    }

    #[test]
    fn every_icmp_type_and_protocol_has_valid_checksums() {
        let b = builder(None);
        let mut buf = [0u8; MAX_PROBE_FRAME];
        for family in Family::BOTH {
            for suite in [Suite::Icmp, Suite::Ip, Suite::Frag] {
                for s in ProbeSpec::all(family, suite) {
                    let n = b.write(&s, &mut buf);
                    assert!(n > 0 && n <= MAX_PROBE_FRAME);
                    assert_checksums(&s, &buf[..n]);
                }
            }
        }
    }

    #[test]
    fn write_refuses_what_it_cannot_build() {
        let mut buf = [0u8; MAX_PROBE_FRAME];
        let v4_only = ProbeBuilder::new(
            RunKey::open(1),
            Endpoints {
                src6: None,
                ..ends()
            },
            Some(MACS),
        );
        let udp6 = spec(Family::V6, ProbeKind::Udp { dst_port: 1 });
        assert_eq!(v4_only.write(&udp6, &mut buf), 0);
        assert!(!v4_only.has_family(Family::V6) && v4_only.has_family(Family::V4));
        // Too short a buffer: nothing written, no panic.
        let udp4 = spec(Family::V4, ProbeKind::Udp { dst_port: 1 });
        let n = v4_only.write(&udp4, &mut buf);
        assert_eq!(n, v4_only.frame_len(&udp4));
        assert_eq!(v4_only.write(&udp4, &mut buf[..n - 1]), 0);
        // A flag set outside the catalogue has no seq: not built.
        let odd = spec(
            Family::V4,
            ProbeKind::Tcp {
                flags: TcpFlags(0xff),
                dst_port: 1,
            },
        );
        assert_eq!(v4_only.write(&odd, &mut buf), 0);
    }

    #[test]
    fn longest_probe_fits_max_probe_frame() {
        let b = crate::compose::tests::builder(Some(MACS));
        // Every probe of every suite whose probes differ in length (the
        // port-sweeping suites are one template each: their first stands in).
        let longest = Family::BOTH
            .into_iter()
            .flat_map(|f| {
                Suite::ALL.into_iter().flat_map(move |s| {
                    let all = ProbeSpec::all(f, s);
                    let n = if s.probe_count(f) > 8192 {
                        1
                    } else {
                        usize::MAX
                    };
                    all.take(n)
                })
            })
            .map(|s| b.frame_len(&s))
            .max()
            .unwrap();
        // An IPv6 spoof probe's UDP: its DNS query, the marker and the
        // claimed source.
        assert_eq!(
            longest,
            14 + 40 + 8 + crate::compose::DNS_QUERY_LEN + 26 + crate::compose::SOURCE_CLAIM_LEN
        );
        assert!(longest <= MAX_PROBE_FRAME);
    }

    proptest::proptest! {
        /// Whatever the run id, every parser of a protocol header reads the
        /// same bytes in an `ip`-suite probe: before the fixed head, a run id
        /// with data offset 5 and SYN alone made the protocol-6 probe a new
        /// TCP connection to conntrack (one run in 128; a `--syn` REDIRECT
        /// took it, `ip ×255` in CI). Etherparse, not our parser, reads it.
        #[test]
        fn no_run_id_changes_what_an_ip_suite_probe_is(run in proptest::prelude::any::<u64>(), v6 in proptest::prelude::any::<bool>(), protocol in 0u8..=255) {
            let family = if v6 { Family::V6 } else { Family::V4 };
            let b = ProbeBuilder::new(RunKey::open(run), ends(), None);
            let mut buf = [0u8; MAX_PROBE_FRAME];
            let n = b.write(&spec(family, ProbeKind::Ip { protocol }), &mut buf);
            let ip_len = if v6 { 40 } else { 20 };
            let payload = &buf[ip_len..n];
            proptest::prop_assert_eq!(&payload[..IP_SUITE_HEAD.len()], &IP_SUITE_HEAD[..]);
            proptest::prop_assert_eq!(payload.len(), IP_SUITE_HEAD.len() + MARKER_LEN);
            // TCP: data offset 0, so no conntrack or NAT takes it for a
            // segment (nf_conntrack_proto_tcp.c: doff * 4 < 20 is invalid).
            proptest::prop_assert!(etherparse::TcpHeader::from_slice(payload).is_err());
            // UDP: a length longer than the datagram (invalid to conntrack).
            let udp = etherparse::UdpHeader::from_slice(payload).unwrap().0;
            proptest::prop_assert!(usize::from(udp.length) > payload.len());
        }
    }
}
