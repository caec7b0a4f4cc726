//! Header layouts: the byte offset of every field that leaktest builds,
//! decodes or judges, one module per header, each with a `field` module of
//! named ranges (smoltcp's `wire` modules are the model). The probe builder,
//! the frame decoder and the watcher's classifier all read and write headers
//! through these names, never through literal offsets.
//!
//! Offsets are relative to the start of the header they belong to. Every
//! value is from the header's defining document, named in each module.

use std::fmt;

/// A field: a byte range inside a header.
pub type Field = std::ops::Range<usize>;

/// An IP protocol number, as in the IPv4 Protocol and the IPv6 Next Header
/// fields (both use IANA's "Assigned Internet Protocol Numbers" registry).
/// Serialised as the bare number.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// IPv6 Hop-by-Hop Options (RFC 8200).
    pub const HOP_BY_HOP: IpProtocol = IpProtocol(0);
    pub const ICMP: IpProtocol = IpProtocol(1);
    pub const IGMP: IpProtocol = IpProtocol(2);
    /// IPv4 in IP (RFC 2003).
    pub const IPIP: IpProtocol = IpProtocol(4);
    pub const TCP: IpProtocol = IpProtocol(6);
    pub const UDP: IpProtocol = IpProtocol(17);
    pub const DCCP: IpProtocol = IpProtocol(33);
    /// IPv6 in IPv4 (RFC 4213).
    pub const IPV6: IpProtocol = IpProtocol(41);
    /// IPv6 Routing header.
    pub const ROUTING: IpProtocol = IpProtocol(43);
    /// IPv6 Fragment header.
    pub const FRAGMENT: IpProtocol = IpProtocol(44);
    pub const GRE: IpProtocol = IpProtocol(47);
    pub const ESP: IpProtocol = IpProtocol(50);
    pub const AH: IpProtocol = IpProtocol(51);
    pub const ICMPV6: IpProtocol = IpProtocol(58);
    /// IPv6 No Next Header.
    pub const NO_NEXT_HEADER: IpProtocol = IpProtocol(59);
    /// IPv6 Destination Options.
    pub const DESTINATION_OPTIONS: IpProtocol = IpProtocol(60);
    pub const SCTP: IpProtocol = IpProtocol(132);
    /// IPv6 Mobility header (RFC 6275).
    pub const MOBILITY: IpProtocol = IpProtocol(135);
    pub const UDPLITE: IpProtocol = IpProtocol(136);
    /// Host Identity Protocol (RFC 7401), an IPv6 extension header.
    pub const HIP: IpProtocol = IpProtocol(139);
    /// Shim6 (RFC 5533), an IPv6 extension header.
    pub const SHIM6: IpProtocol = IpProtocol(140);

    /// Whether the upper layer starts with a 16-bit source and destination
    /// port (TCP, UDP, DCCP, SCTP, UDP-Lite).
    pub fn has_ports(self) -> bool {
        matches!(
            self,
            IpProtocol::TCP
                | IpProtocol::UDP
                | IpProtocol::DCCP
                | IpProtocol::SCTP
                | IpProtocol::UDPLITE
        )
    }

    /// Whether IPv6 treats this number as an extension header that the
    /// decoder walks (RFC 8200 section 4; RFC 7045's list).
    pub fn is_ipv6_extension(self) -> bool {
        matches!(
            self,
            IpProtocol::HOP_BY_HOP
                | IpProtocol::ROUTING
                | IpProtocol::FRAGMENT
                | IpProtocol::AH
                | IpProtocol::DESTINATION_OPTIONS
                | IpProtocol::MOBILITY
                | IpProtocol::HIP
                | IpProtocol::SHIM6
        )
    }

    /// The short lower-case name of well-known protocols.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            IpProtocol::ICMP => "icmp",
            IpProtocol::IGMP => "igmp",
            IpProtocol::IPIP => "ipip",
            IpProtocol::TCP => "tcp",
            IpProtocol::UDP => "udp",
            IpProtocol::DCCP => "dccp",
            IpProtocol::IPV6 => "ipv6",
            IpProtocol::GRE => "gre",
            IpProtocol::ESP => "esp",
            IpProtocol::AH => "ah",
            IpProtocol::ICMPV6 => "icmpv6",
            IpProtocol::SCTP => "sctp",
            IpProtocol::UDPLITE => "udplite",
            _ => return None,
        })
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "proto {}", self.0),
        }
    }
}

/// Reads a big-endian `u16` at `at`, `None` if `d` is too short.
#[inline]
pub fn be16(d: &[u8], at: usize) -> Option<u16> {
    let b = d.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Reads a big-endian `u32` at `at`, `None` if `d` is too short.
#[inline]
pub fn be32(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Ethernet II (IEEE 802.3 clause 3) and 802.1Q / 802.1ad tags.
pub mod ethernet {
    pub mod field {
        use super::super::Field;
        pub const DESTINATION: Field = 0..6;
        pub const SOURCE: Field = 6..12;
        pub const ETHERTYPE: Field = 12..14;
        /// Inside a VLAN tag (after the tag's own EtherType): the TCI, whose
        /// low 12 bits are the VLAN id, then the inner EtherType.
        pub const TAG_TCI: Field = 0..2;
        pub const TAG_ETHERTYPE: Field = 2..4;
    }
    pub const HEADER_LEN: usize = 14;
    pub const VLAN_TAG_LEN: usize = 4;
    /// The shortest frame on the wire without its FCS: shorter ones are
    /// padded to this length (IEEE 802.3 minimum frame size 64 with FCS).
    pub const MIN_FRAME_LEN: usize = 60;
    pub const ETHERTYPE_IPV4: u16 = 0x0800;
    pub const ETHERTYPE_ARP: u16 = 0x0806;
    pub const ETHERTYPE_IPV6: u16 = 0x86dd;
    pub const ETHERTYPE_VLAN: u16 = 0x8100;
    pub const ETHERTYPE_QINQ: u16 = 0x88a8;
    /// A pre-standard 802.1ad tag some switches still use.
    pub const ETHERTYPE_VLAN_9100: u16 = 0x9100;
    /// IEEE 802 local experimental EtherType 1: leaktest's canary frames.
    pub const ETHERTYPE_LOCAL_EXPERIMENTAL_1: u16 = 0x88b5;
    pub const BROADCAST: [u8; 6] = [0xff; 6];
    /// Whether a MAC address is a group (multicast or broadcast) address.
    pub fn is_group(mac: &[u8; 6]) -> bool {
        mac[0] & 1 == 1
    }
    /// Whether an EtherType is one of the VLAN tag types the decoder skips.
    pub fn is_vlan_tag(ethertype: u16) -> bool {
        matches!(
            ethertype,
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_VLAN_9100
        )
    }
}

/// ARP for IPv4 over Ethernet (RFC 826).
pub mod arp {
    pub mod field {
        use super::super::Field;
        pub const HTYPE: Field = 0..2;
        pub const PTYPE: Field = 2..4;
        pub const HLEN: usize = 4;
        pub const PLEN: usize = 5;
        pub const OPER: Field = 6..8;
        pub const SHA: Field = 8..14;
        pub const SPA: Field = 14..18;
        pub const THA: Field = 18..24;
        pub const TPA: Field = 24..28;
    }
    /// Length of an Ethernet/IPv4 ARP body.
    pub const BODY_LEN: usize = 28;
    pub const HTYPE_ETHERNET: u16 = 1;
    pub const OP_REQUEST: u16 = 1;
    pub const OP_REPLY: u16 = 2;
}

/// IPv4 (RFC 791).
pub mod ipv4 {
    pub mod field {
        use super::super::Field;
        pub const VER_IHL: usize = 0;
        pub const TOS: usize = 1;
        pub const LENGTH: Field = 2..4;
        pub const IDENT: Field = 4..6;
        pub const FLAGS_FRAG: Field = 6..8;
        pub const TTL: usize = 8;
        pub const PROTOCOL: usize = 9;
        pub const CHECKSUM: Field = 10..12;
        pub const SRC: Field = 12..16;
        pub const DST: Field = 16..20;
    }
    /// Length of a header without options.
    pub const HEADER_LEN: usize = 20;
    /// Version 4, IHL 5.
    pub const VER_IHL_NO_OPTIONS: u8 = 0x45;
    pub const FLAG_DF: u16 = 0x4000;
    pub const FLAG_MF: u16 = 0x2000;
    pub const FRAG_OFFSET_MASK: u16 = 0x1fff;
    /// Option type of Router Alert (RFC 2113): copied, class 0, number 20.
    pub const OPTION_ROUTER_ALERT: u8 = 0x94;
    pub const OPTION_END: u8 = 0;
    pub const OPTION_NOP: u8 = 1;
}

/// IPv6 (RFC 8200) and its extension headers.
pub mod ipv6 {
    pub mod field {
        use super::super::Field;
        pub const VER_TC_FLOW: Field = 0..4;
        pub const PAYLOAD_LEN: Field = 4..6;
        pub const NEXT_HEADER: usize = 6;
        pub const HOP_LIMIT: usize = 7;
        pub const SRC: Field = 8..24;
        pub const DST: Field = 24..40;
    }
    /// Fields shared by Hop-by-Hop, Routing, Destination Options (length in
    /// 8-byte units, not counting the first 8) and AH (length in 4-byte
    /// units, not counting the first 2).
    pub mod ext {
        pub const NEXT_HEADER: usize = 0;
        pub const LENGTH: usize = 1;
        /// Options of Hop-by-Hop and Destination Options start here.
        pub const OPTIONS: usize = 2;
    }
    /// The Fragment header.
    pub mod frag {
        use super::super::Field;
        pub const NEXT_HEADER: usize = 0;
        /// 13-bit offset in 8-byte units, 2 reserved bits, M flag.
        pub const OFFSET_M: Field = 2..4;
        pub const IDENT: Field = 4..8;
        pub const LEN: usize = 8;
        pub const OFFSET_MASK: u16 = 0xfff8;
        pub const FLAG_M: u16 = 1;
    }
    pub const HEADER_LEN: usize = 40;
    /// Option types inside Hop-by-Hop / Destination Options (RFC 8200, RFC 2711).
    pub const OPTION_PAD1: u8 = 0;
    pub const OPTION_PADN: u8 = 1;
    pub const OPTION_ROUTER_ALERT: u8 = 5;
    /// Whether an address is link-local unicast (fe80::/10).
    pub fn is_link_local(a: &std::net::Ipv6Addr) -> bool {
        (a.segments()[0] & 0xffc0) == 0xfe80
    }
    /// Whether an address is a link-scope multicast address (ff02::/16).
    pub fn is_link_scope_multicast(a: &std::net::Ipv6Addr) -> bool {
        a.octets()[0] == 0xff && (a.octets()[1] & 0x0f) == 0x02
    }
}

/// TCP (RFC 9293).
pub mod tcp {
    pub mod field {
        use super::super::Field;
        pub const SRC_PORT: Field = 0..2;
        pub const DST_PORT: Field = 2..4;
        pub const SEQ: Field = 4..8;
        pub const ACK: Field = 8..12;
        /// Data offset in the high 4 bits (32-bit words).
        pub const DATA_OFFSET: usize = 12;
        pub const FLAGS: usize = 13;
        pub const WINDOW: Field = 14..16;
        pub const CHECKSUM: Field = 16..18;
        pub const URGENT: Field = 18..20;
    }
    pub const HEADER_LEN: usize = 20;
}

/// UDP (RFC 768).
pub mod udp {
    pub mod field {
        use super::super::Field;
        pub const SRC_PORT: Field = 0..2;
        pub const DST_PORT: Field = 2..4;
        pub const LENGTH: Field = 4..6;
        pub const CHECKSUM: Field = 6..8;
    }
    pub const HEADER_LEN: usize = 8;
}

/// ICMP (RFC 792) and ICMPv6 (RFC 4443): the common first 8 bytes.
pub mod icmp {
    pub mod field {
        use super::super::Field;
        pub const TYPE: usize = 0;
        pub const CODE: usize = 1;
        pub const CHECKSUM: Field = 2..4;
        /// Echo-style identifier and sequence; other types use these bytes
        /// for their own fields (unused, pointer, MTU, reserved).
        pub const IDENT: Field = 4..6;
        pub const SEQ: Field = 6..8;
        /// Where an error message quotes the offending packet.
        pub const QUOTED: usize = 8;
    }
    pub const HEADER_LEN: usize = 8;
    /// ICMPv4 error types (RFC 792, RFC 1812): unreachable, source quench,
    /// redirect, time exceeded, parameter problem.
    pub fn is_error_v4(t: u8) -> bool {
        matches!(t, 3 | 4 | 5 | 11 | 12)
    }
    /// ICMPv6 error types (RFC 4443): 1..=4.
    pub fn is_error_v6(t: u8) -> bool {
        (1..=4).contains(&t)
    }
    // ICMPv6 informational types of neighbour discovery (RFC 4861) and MLD
    // (RFC 2710, RFC 3810).
    pub const V6_MLD_QUERY: u8 = 130;
    pub const V6_MLD_REPORT: u8 = 131;
    pub const V6_MLD_DONE: u8 = 132;
    pub const V6_ROUTER_SOLICIT: u8 = 133;
    pub const V6_ROUTER_ADVERT: u8 = 134;
    pub const V6_NEIGHBOUR_SOLICIT: u8 = 135;
    pub const V6_NEIGHBOUR_ADVERT: u8 = 136;
    pub const V6_REDIRECT: u8 = 137;
    pub const V6_MLD2_REPORT: u8 = 143;
}

/// Neighbour discovery messages (RFC 4861 section 4) after the ICMPv6 type,
/// code and checksum.
pub mod nd {
    pub mod field {
        use super::super::Field;
        /// RS: reserved. NS: reserved. NA: R, S, O flags then reserved.
        pub const RESERVED: Field = 4..8;
        /// NS / NA: the target address.
        pub const TARGET: Field = 8..24;
    }
    /// Options of an RS start here.
    pub const RS_OPTIONS: usize = 8;
    /// Options of an NS or NA start here.
    pub const NS_NA_OPTIONS: usize = 24;
    /// NA flags in the first reserved byte: router, solicited, override.
    pub const NA_FLAGS_MASK: u32 = 0xe000_0000;
    /// Option header: type, then length in 8-byte units (0 is invalid).
    pub mod option {
        pub const TYPE: usize = 0;
        pub const LENGTH: usize = 1;
        pub const SOURCE_LL_ADDR: u8 = 1;
        pub const TARGET_LL_ADDR: u8 = 2;
        /// Nonce (RFC 3971, used by DAD per RFC 7527).
        pub const NONCE: u8 = 14;
    }
}

/// Multicast Listener Discovery v1 (RFC 2710) and v2 reports (RFC 3810).
pub mod mld {
    pub mod field {
        use super::super::Field;
        /// v1: maximum response delay (0 in reports and done).
        pub const V1_MAX_DELAY: Field = 4..6;
        pub const V1_RESERVED: Field = 6..8;
        pub const V1_GROUP: Field = 8..24;
        /// v2 report: reserved, then the number of address records.
        pub const V2_RESERVED: Field = 4..6;
        pub const V2_RECORDS: Field = 6..8;
    }
    pub const V1_LEN: usize = 24;
    pub const V2_RECORDS_START: usize = 8;
    /// A v2 multicast address record: type, aux data length (4-byte
    /// units), number of sources, multicast address, then the sources.
    pub mod record {
        use super::super::Field;
        pub const TYPE: usize = 0;
        pub const AUX_LEN: usize = 1;
        pub const SOURCES: Field = 2..4;
        pub const GROUP: Field = 4..20;
        pub const LEN: usize = 20;
    }
}

/// IGMP v1/v2 (RFC 2236) and v3 reports (RFC 3376).
pub mod igmp {
    pub mod field {
        use super::super::Field;
        pub const TYPE: usize = 0;
        pub const MAX_RESP: usize = 1;
        pub const CHECKSUM: Field = 2..4;
        /// v1/v2: the group address.
        pub const GROUP: Field = 4..8;
        /// v3 report: reserved, then the number of group records.
        pub const V3_RESERVED: Field = 4..6;
        pub const V3_RECORDS: Field = 6..8;
    }
    pub const V2_LEN: usize = 8;
    pub const V3_RECORDS_START: usize = 8;
    pub const V1_REPORT: u8 = 0x12;
    pub const V2_REPORT: u8 = 0x16;
    pub const V2_LEAVE: u8 = 0x17;
    pub const V3_REPORT: u8 = 0x22;
    /// A v3 group record: type, aux data length (4-byte units), number of
    /// sources, multicast address, then the sources.
    pub mod record {
        use super::super::Field;
        pub const TYPE: usize = 0;
        pub const AUX_LEN: usize = 1;
        pub const SOURCES: Field = 2..4;
        pub const GROUP: Field = 4..8;
        pub const LEN: usize = 8;
    }
}

/// DHCPv4 (RFC 2131, options RFC 2132).
pub mod dhcpv4 {
    pub mod field {
        use super::super::Field;
        pub const OP: usize = 0;
        pub const HTYPE: usize = 1;
        pub const HLEN: usize = 2;
        pub const HOPS: usize = 3;
        pub const XID: Field = 4..8;
        pub const SECS: Field = 8..10;
        pub const FLAGS: Field = 10..12;
        pub const CIADDR: Field = 12..16;
        pub const YIADDR: Field = 16..20;
        pub const SIADDR: Field = 20..24;
        pub const GIADDR: Field = 24..28;
        /// Client hardware address (16 bytes; an Ethernet MAC fills the first 6).
        pub const CHADDR: Field = 28..44;
        pub const SNAME: Field = 44..108;
        pub const FILE: Field = 108..236;
        pub const COOKIE: Field = 236..240;
        pub const OPTIONS: usize = 240;
    }
    pub const CLIENT_PORT: u16 = 68;
    pub const SERVER_PORT: u16 = 67;
    pub const OP_BOOTREQUEST: u8 = 1;
    pub const MAGIC_COOKIE: [u8; 4] = [0x63, 0x82, 0x53, 0x63];
    pub const OPTION_PAD: u8 = 0;
    pub const OPTION_END: u8 = 255;
    pub const OPTION_OVERLOAD: u8 = 52;
    pub const OPTION_MESSAGE_TYPE: u8 = 53;
    /// Message types a client sends: DISCOVER, REQUEST, DECLINE, RELEASE, INFORM.
    pub fn is_client_message(t: u8) -> bool {
        matches!(t, 1 | 3 | 4 | 7 | 8)
    }
}

/// DHCPv6 (RFC 8415).
pub mod dhcpv6 {
    pub mod field {
        use super::super::Field;
        pub const MSG_TYPE: usize = 0;
        pub const TRANSACTION_ID: Field = 1..4;
        pub const OPTIONS: usize = 4;
    }
    pub const CLIENT_PORT: u16 = 546;
    pub const SERVER_PORT: u16 = 547;
    /// All_DHCP_Relay_Agents_and_Servers.
    pub const ALL_SERVERS: std::net::Ipv6Addr =
        std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
    /// Client message types: Solicit, Request, Confirm, Renew, Rebind,
    /// Release, Decline, Information-request.
    pub fn is_client_message(t: u8) -> bool {
        matches!(t, 1 | 3 | 4 | 5 | 6 | 8 | 9 | 11)
    }
}

/// The TLS record layer (RFC 8446 section 5.1, RFC 5246 section 6.2).
pub mod tls {
    pub mod field {
        use super::super::Field;
        pub const CONTENT_TYPE: usize = 0;
        pub const VERSION: Field = 1..3;
        pub const LENGTH: Field = 3..5;
    }
    pub const RECORD_HEADER_LEN: usize = 5;
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    pub const ALERT: u8 = 21;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
    /// Handshake message type of a ClientHello.
    pub const CLIENT_HELLO: u8 = 1;
    /// The longest record body: TLSCiphertext.length must not exceed
    /// 2^14 + 2048 (RFC 5246 section 6.2.3; TLS 1.3 lowers it to 2^14 + 256).
    pub const MAX_RECORD_BODY: usize = (1 << 14) + 2048;
    /// Whether a record-layer version is one TLS 1.0 to 1.3 put on the wire:
    /// major 3, minor 0..=3. TLS 1.3 keeps the legacy 0x0303, and 0x0301 in
    /// an initial ClientHello (RFC 8446 section 5.1); a ClientHello record
    /// may carry any {03,XX}, typically {03,00} (RFC 5246 appendix E.1).
    pub fn is_record_version(v: u16) -> bool {
        (0x0300..=0x0303).contains(&v)
    }
    /// Whether a content type is one TLS 1.0 to 1.3 defines for the wire
    /// (heartbeat, 24, is not: OpenSSL builds tor links without it).
    pub fn is_content_type(t: u8) -> bool {
        (CHANGE_CIPHER_SPEC..=APPLICATION_DATA).contains(&t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_and_classes() {
        assert_eq!(IpProtocol::TCP.to_string(), "tcp");
        assert_eq!(IpProtocol(253).to_string(), "proto 253");
        assert!(IpProtocol::SCTP.has_ports() && !IpProtocol::ICMP.has_ports());
        assert!(IpProtocol::FRAGMENT.is_ipv6_extension());
        assert!(!IpProtocol::TCP.is_ipv6_extension());
        assert_eq!(serde_json::to_string(&IpProtocol::UDP).unwrap(), "17");
    }

    #[test]
    fn fields_tile_their_headers() {
        // Each header's fields are contiguous and end at its length.
        let eth = [
            ethernet::field::DESTINATION,
            ethernet::field::SOURCE,
            ethernet::field::ETHERTYPE,
        ];
        assert!(eth.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(eth[2].end, ethernet::HEADER_LEN);
        assert_eq!(ipv4::field::DST.end, ipv4::HEADER_LEN);
        assert_eq!(ipv6::field::DST.end, ipv6::HEADER_LEN);
        assert_eq!(tcp::field::URGENT.end, tcp::HEADER_LEN);
        assert_eq!(udp::field::CHECKSUM.end, udp::HEADER_LEN);
        assert_eq!(arp::field::TPA.end, arp::BODY_LEN);
        assert_eq!(dhcpv4::field::COOKIE.end, dhcpv4::field::OPTIONS);
        assert_eq!(mld::field::V1_GROUP.end, mld::V1_LEN);
        assert_eq!(mld::record::GROUP.end, mld::record::LEN);
        assert_eq!(igmp::record::GROUP.end, igmp::record::LEN);
        assert_eq!(nd::field::TARGET.end, nd::NS_NA_OPTIONS);
    }

    #[test]
    fn address_classes() {
        assert!(ipv6::is_link_local(&"fe80::1".parse().unwrap()));
        assert!(!ipv6::is_link_local(&"fd00::1".parse().unwrap()));
        assert!(ipv6::is_link_scope_multicast(&"ff02::1:2".parse().unwrap()));
        assert!(!ipv6::is_link_scope_multicast(&"ff0e::1".parse().unwrap()));
        assert!(ethernet::is_group(&[0x33, 0x33, 0, 0, 0, 1]));
        assert!(!ethernet::is_group(&[0x02, 0, 0, 0, 0, 1]));
    }
}
