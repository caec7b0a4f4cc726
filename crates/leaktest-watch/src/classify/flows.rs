//! Tor means Tor: every TCP flow to an endpoint Tor uses is judged by what it
//! carries, not only by where it goes.
//!
//! What each endpoint role must carry ([`Roles`], from Tor's control port or
//! an `--allow` entry):
//!
//! * ORPorts and plain bridges, and `--allow tls:` entries: TLS from the
//!   first byte. A flow whose start (its SYN) the watcher saw must open with
//!   a TLS handshake record holding a ClientHello, and then its byte stream
//!   is followed record by record: every record header must have a TLS
//!   content type (20..=23), a TLS record version ({03,00}..={03,03}) and a
//!   length of at most 2^14 + 2048 (RFC 5246 section 6.2, RFC 8446 section
//!   5.1). One cleartext byte where a record header belongs ends the flow's
//!   claim to be Tor.
//! * obfs4 bridges: no plaintext framing at all. The client's first message
//!   is 141 to 8192 bytes of key representative, padding, mark and MAC
//!   (obfs4's `handshake_ntor.go`: `clientMinHandshakeLength` 64 plus
//!   `clientMinPadLength` 77, `maxHandshakeLength` 8192), so the first
//!   segment carries at least 141 bytes; after that only frames with masked
//!   lengths.
//! * Bridges with other transports: their own encryption, never cleartext.
//! * A relay's DirPort (only a Tor relay uses one, see leaktest-tor): one
//!   plain HTTP request, `GET /tor/...`, headers, a blank line, nothing after.
//! * Upstream proxies: a proxy handshake then TLS: not judged by content.
//!
//! Every data segment of every judged flow is also checked for a
//! recognisable cleartext protocol at its start ([`cleartext`]): HTTP request
//! and status lines, SSH and SMTP banners and commands, DNS over TCP, and
//! text in general (at least 90% printable over 64 bytes or more). This
//! covers flows that cannot be followed record by record: flows already open
//! when the watch started (their first bytes were never seen, so they are
//! counted apart), flows whose stream had a gap, and retransmitted bytes.
//!
//! The limit of any content check: a process on the gateway that wraps its
//! data in well-formed TLS records to a relay's ORPort is indistinguishable
//! from Tor without Tor's keys. What is ruled out is anything in the clear.
//!
//! Memory and time are bounded: at most [`MAX_FLOWS`] flows are tracked; a
//! flow idle for [`IDLE_NS`] (closed ones after [`CLOSED_NS`]) is forgotten
//! (seen again, it counts as already open). When the table is full, frames
//! of further flows are judged by [`cleartext`] alone and counted as
//! untracked, which makes a PASS impossible. Time comes from the frames'
//! capture timestamps: no clock is read.

use leaktest_tor::Roles;
use leaktest_wire::hdr::{be16, tls};
use leaktest_wire::{FrameSummary, TcpFlags};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Flows tracked at once.
pub const MAX_FLOWS: usize = 65_536;
/// A flow without frames for this long is forgotten (15 minutes; Tor sends
/// a keepalive on an idle link every 5 minutes, tor's `KeepalivePeriod`).
pub const IDLE_NS: u64 = 15 * 60 * 1_000_000_000;
/// A flow that sent FIN or RST is forgotten after this long without frames.
pub const CLOSED_NS: u64 = 120 * 1_000_000_000;
/// The shortest first segment of an obfs4 flow (see the module docs).
pub const OBFS4_MIN_FIRST_SEGMENT: usize = 141;
/// The longest obfs4 client handshake.
pub const OBFS4_MAX_HANDSHAKE: usize = 8192;

/// A recognisable cleartext protocol at the start of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cleartext {
    HttpRequest,
    HttpResponse,
    Ssh,
    Smtp,
    Dns,
    /// Mostly printable ASCII.
    Text,
}

impl Cleartext {
    pub fn name(self) -> &'static str {
        match self {
            Cleartext::HttpRequest => "an HTTP request",
            Cleartext::HttpResponse => "an HTTP response",
            Cleartext::Ssh => "an SSH banner",
            Cleartext::Smtp => "SMTP",
            Cleartext::Dns => "DNS",
            Cleartext::Text => "text",
        }
    }
}

/// Why a flow to a Tor endpoint is not Tor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "what")]
pub enum Violation {
    /// Cleartext in a segment.
    Cleartext(Cleartext),
    /// The flow's first bytes are not a TLS handshake record with a ClientHello.
    NotTls,
    /// A TLS record header where the stream has one is not valid.
    BadTlsRecord,
    /// An obfs4 flow whose first segment is shorter than a handshake.
    NotObfs4,
    /// A DirPort flow that is not one `GET /tor/` request.
    NotDirRequest,
    /// A TCP header without a sane data offset, or not captured whole.
    MalformedTcp,
}

impl Violation {
    /// One line for people.
    pub fn describe(self) -> String {
        match self {
            Violation::Cleartext(c) => format!("{} in the clear", c.name()),
            Violation::NotTls => "its first bytes are not a TLS ClientHello".into(),
            Violation::BadTlsRecord => "its byte stream is not TLS records".into(),
            Violation::NotObfs4 => "its first segment is shorter than an obfs4 handshake".into(),
            Violation::NotDirRequest => "it is not one directory request".into(),
            Violation::MalformedTcp => "its TCP header is malformed".into(),
        }
    }
}

/// How a frame of a judged flow was followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Followed {
    /// A flow whose start the watcher saw, followed byte for byte.
    FromStart,
    /// Judged by [`cleartext`] only: already open when the watch started,
    /// forgotten while idle, or its stream could not be followed (a gap).
    SignaturesOnly,
    /// The flow table was full: judged by [`cleartext`] only, untracked.
    Untracked,
}

/// Counters of the flow table, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowStats {
    /// Flows whose SYN the watcher saw.
    pub started: u64,
    /// Flows first seen without their SYN (already open when the watch began, or forgotten).
    pub already_open: u64,
    /// Flows followed from their start that later lost sync (a gap in the stream, or bytes
    /// beyond the snap length where a record header belongs); judged by signatures afterwards.
    pub lost_sync: u64,
    /// Frames of flows that could not be tracked because the table was full.
    pub untracked_frames: u64,
    /// Payload bytes followed record by record (TLS) or as a request (DirPort).
    pub bytes_followed: u64,
    /// Flows that broke their endpoint's shape.
    pub violations: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
}

/// What the flow turned out to carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// No data yet.
    Undecided,
    Tls(RecordWalker),
    DirRequest(RequestWalker),
    Obfs4,
    /// Another transport: cleartext signatures only.
    Opaque,
    /// A proxy: not judged by content.
    Any,
}

#[derive(Clone, Copy, Debug)]
struct FlowState {
    shape: Shape,
    /// The next stream byte's sequence number, while the stream is followed.
    next_seq: Option<u32>,
    start_seen: bool,
    /// The initial sequence number of the SYN seen.
    isn: Option<u32>,
    closed: bool,
    last_ns: u64,
    violated: Option<Violation>,
}

impl FlowState {
    fn new(shape: Shape, syn: bool, seq: u32, now_ns: u64) -> FlowState {
        FlowState {
            shape,
            next_seq: syn.then(|| seq.wrapping_add(1)),
            start_seen: syn,
            isn: syn.then_some(seq),
            closed: false,
            last_ns: now_ns,
            violated: None,
        }
    }
}

/// The TLS record layer as a stream of headers and bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RecordWalker {
    hdr: [u8; tls::RECORD_HEADER_LEN],
    hdr_len: u8,
    body_left: u32,
    /// Records read so far (the first must be a handshake with a ClientHello).
    records: u64,
    /// The first record's first body byte is still to be checked.
    hello_pending: bool,
}

impl RecordWalker {
    fn new() -> RecordWalker {
        RecordWalker {
            hdr: [0; tls::RECORD_HEADER_LEN],
            hdr_len: 0,
            body_left: 0,
            records: 0,
            hello_pending: true,
        }
    }

    /// Walks `bytes`, then `tail` bytes that were on the wire but not
    /// captured. `Err(Some(v))`: not TLS; `Err(None)`: sync lost (a header
    /// lies in the uncaptured tail).
    fn feed(&mut self, mut bytes: &[u8], tail: usize) -> Result<(), Option<Violation>> {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                if self.hello_pending {
                    if bytes[0] != tls::CLIENT_HELLO {
                        return Err(Some(Violation::NotTls));
                    }
                    self.hello_pending = false;
                }
                let n = (self.body_left as usize).min(bytes.len());
                self.body_left -= n as u32;
                bytes = &bytes[n..];
                continue;
            }
            let need = tls::RECORD_HEADER_LEN - self.hdr_len as usize;
            let n = need.min(bytes.len());
            self.hdr[self.hdr_len as usize..self.hdr_len as usize + n].copy_from_slice(&bytes[..n]);
            self.hdr_len += n as u8;
            bytes = &bytes[n..];
            if (self.hdr_len as usize) < tls::RECORD_HEADER_LEN {
                continue;
            }
            self.hdr_len = 0;
            let h = &self.hdr;
            let ty = h[tls::field::CONTENT_TYPE];
            let version = be16(h, tls::field::VERSION.start).unwrap_or(0);
            let len = be16(h, tls::field::LENGTH.start).unwrap_or(0) as usize;
            if self.records == 0 && ty != tls::HANDSHAKE {
                return Err(Some(Violation::NotTls));
            }
            if !tls::is_content_type(ty)
                || !tls::is_record_version(version)
                || len > tls::MAX_RECORD_BODY
                || (len == 0 && ty != tls::APPLICATION_DATA)
            {
                return Err(Some(if self.records == 0 {
                    Violation::NotTls
                } else {
                    Violation::BadTlsRecord
                }));
            }
            self.records += 1;
            self.body_left = len as u32;
        }
        if tail == 0 {
            return Ok(());
        }
        if self.hdr_len > 0 || tail > self.body_left as usize || self.hello_pending {
            return Err(None);
        }
        self.body_left -= tail as u32;
        Ok(())
    }
}

/// A DirPort request: `GET /tor/`, printable header lines, a blank line,
/// nothing after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RequestWalker {
    /// Bytes of the request seen.
    seen: u64,
    /// The last four bytes, to find the blank line.
    last4: [u8; 4],
    done: bool,
}

const DIR_REQUEST_PREFIX: &[u8] = b"GET /tor/";
/// Longest DirPort request accepted (tor's requests are a few hundred bytes).
const DIR_REQUEST_MAX: u64 = 8192;

impl RequestWalker {
    fn feed(&mut self, bytes: &[u8], tail: usize) -> Result<(), Option<Violation>> {
        if tail > 0 {
            return Err(None);
        }
        for &b in bytes {
            if self.done {
                return Err(Some(Violation::NotDirRequest));
            }
            if self.seen < DIR_REQUEST_PREFIX.len() as u64
                && b != DIR_REQUEST_PREFIX[self.seen as usize]
            {
                return Err(Some(Violation::NotDirRequest));
            }
            if !(b == b'\r' || b == b'\n' || (0x20..0x7f).contains(&b)) {
                return Err(Some(Violation::NotDirRequest));
            }
            self.seen += 1;
            self.last4 = [self.last4[1], self.last4[2], self.last4[3], b];
            if &self.last4 == b"\r\n\r\n" {
                self.done = true;
            }
            if self.seen > DIR_REQUEST_MAX {
                return Err(Some(Violation::NotDirRequest));
            }
        }
        Ok(())
    }
}

/// Whether a segment starts with a recognisable cleartext protocol. Each
/// test's chance to fire on ciphertext is below 2^-32 per segment (exact
/// prefixes of 4 bytes or more, DNS's length and counts, or 64 bytes of
/// which 90% are printable).
pub fn cleartext(p: &[u8]) -> Option<Cleartext> {
    const METHODS: [&[u8]; 10] = [
        b"GET ",
        b"POST ",
        b"HEAD ",
        b"PUT ",
        b"DELETE ",
        b"OPTIONS ",
        b"CONNECT ",
        b"PATCH ",
        b"TRACE ",
        b"PRI * HTTP/2",
    ];
    if METHODS.iter().any(|m| p.starts_with(m)) {
        return Some(Cleartext::HttpRequest);
    }
    if p.starts_with(b"HTTP/1.") || p.starts_with(b"HTTP/2 ") {
        return Some(Cleartext::HttpResponse);
    }
    if p.starts_with(b"SSH-2.0-") || p.starts_with(b"SSH-1.") {
        return Some(Cleartext::Ssh);
    }
    const SMTP: [&[u8]; 6] = [
        b"EHLO ",
        b"HELO ",
        b"MAIL FROM:",
        b"RCPT TO:",
        b"STARTTLS",
        b"AUTH ",
    ];
    if SMTP.iter().any(|m| starts_with_ignore_case(p, m)) || smtp_reply(p) {
        return Some(Cleartext::Smtp);
    }
    if dns_over_tcp(p) {
        return Some(Cleartext::Dns);
    }
    if mostly_text(p) {
        return Some(Cleartext::Text);
    }
    None
}

fn starts_with_ignore_case(p: &[u8], m: &[u8]) -> bool {
    p.len() >= m.len() && p[..m.len()].eq_ignore_ascii_case(m)
}

/// `220 `, `250-` ...: three digits, a space or dash, then at least 12
/// printable bytes up to a CR LF.
fn smtp_reply(p: &[u8]) -> bool {
    if p.len() < 18 || !p[..3].iter().all(u8::is_ascii_digit) || !matches!(p[3], b' ' | b'-') {
        return false;
    }
    let line = &p[4..];
    let end = line
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(line.len());
    end >= 12 && line[..end].iter().all(|b| (0x20..0x7f).contains(b))
}

/// A DNS message over TCP (RFC 1035 section 4.2.2): a length that is the
/// rest of the segment, then a standard query with one question and no
/// answer or authority records.
fn dns_over_tcp(p: &[u8]) -> bool {
    let (Some(len), Some(flags), Some(qd), Some(an), Some(ns), Some(ar)) = (
        be16(p, 0),
        be16(p, 4),
        be16(p, 6),
        be16(p, 8),
        be16(p, 10),
        be16(p, 12),
    ) else {
        return false;
    };
    len as usize == p.len() - 2 && flags & 0xf800 == 0 && qd == 1 && an == 0 && ns == 0 && ar <= 1
}

/// At least 64 bytes (of the first 256) of which at least 90% are printable
/// ASCII or whitespace. Ciphertext is about 38% printable; 58 of 64 happens
/// by chance with a probability near 10^-18.
fn mostly_text(p: &[u8]) -> bool {
    let w = &p[..p.len().min(256)];
    if w.len() < 64 {
        return false;
    }
    let printable = |b: &&u8| matches!(b, 0x20..=0x7e | b'\r' | b'\n' | b'\t');
    // At least 90% of the window is printable only if at least 10 of its
    // first 16 bytes are (at most 6 of the 25.6 allowed misses fall there):
    // ciphertext (38% printable) fails this cheap test almost always.
    if w[..16].iter().filter(printable).count() < 10 {
        return false;
    }
    w.iter().filter(printable).count() * 10 >= w.len() * 9
}

/// The flows of one watch.
#[derive(Debug, Default)]
pub struct FlowTable {
    /// Seeded multiply-mix hash (the allowlist's): cheap per frame, keys
    /// cannot be chosen to collide.
    flows: HashMap<FlowKey, FlowState, leaktest_tor::SeededState>,
    stats: FlowStats,
    last_sweep_ns: u64,
}

impl FlowTable {
    pub fn new() -> FlowTable {
        FlowTable::default()
    }

    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    /// Flows tracked now.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Forgets idle and closed flows (at most once a second of capture time).
    fn sweep(&mut self, now_ns: u64, force: bool) {
        if !force && now_ns.saturating_sub(self.last_sweep_ns) < 1_000_000_000 {
            return;
        }
        self.last_sweep_ns = now_ns;
        self.flows.retain(|_, f| {
            let idle = now_ns.saturating_sub(f.last_ns);
            idle < if f.closed { CLOSED_NS } else { IDLE_NS }
        });
    }

    /// Judges one TCP frame (`s` is its summary, `frame` its bytes) going to
    /// an endpoint with `roles`, captured at `now_ns`.
    pub fn judge(
        &mut self,
        s: &FrameSummary,
        frame: &[u8],
        roles: Roles,
        now_ns: u64,
    ) -> Result<Followed, Violation> {
        let ip = &s.ip;
        let upper = s.upper_bytes(frame);
        let (Some(hlen), Some(flags), Some(seq)) = (ip.tcp_header_len, ip.tcp_flags, ip.tcp_seq)
        else {
            self.stats.violations += 1;
            return Err(Violation::MalformedTcp);
        };
        let (Some(src), Some(dst), Some(sport), Some(dport)) =
            (ip.src, ip.dst, ip.src_port, ip.dst_port)
        else {
            self.stats.violations += 1;
            return Err(Violation::MalformedTcp);
        };
        if upper.len() < hlen {
            self.stats.violations += 1;
            return Err(Violation::MalformedTcp);
        }
        let payload = s.tcp_payload(frame);
        let wire_len = s.tcp_payload_wire_len().max(payload.len());
        let key = FlowKey {
            src,
            sport,
            dst,
            dport,
        };
        self.sweep(now_ns, false);
        let syn = flags.0 & (TcpFlags::SYN | TcpFlags::ACK) == TcpFlags::SYN;
        if !self.flows.contains_key(&key) && self.flows.len() >= MAX_FLOWS {
            self.sweep(now_ns, true);
        }
        let stats = &mut self.stats;
        let tracked = self.flows.len() < MAX_FLOWS || self.flows.contains_key(&key);
        if !tracked {
            stats.untracked_frames += 1;
            return match cleartext(payload) {
                Some(c) => Err(Violation::Cleartext(c)),
                None => Ok(Followed::Untracked),
            };
        }
        let initial = if roles.intersects(Roles::PROXY) {
            Shape::Any
        } else {
            Shape::Undecided
        };
        let flow = self.flows.entry(key).or_insert_with(|| {
            if syn {
                stats.started += 1;
            } else {
                stats.already_open += 1;
            }
            FlowState::new(initial, syn, seq, now_ns)
        });
        flow.last_ns = now_ns;
        if let Some(v) = flow.violated {
            return Err(v);
        }
        if syn && flow.isn != Some(seq) {
            // The 4-tuple opened anew (another initial sequence number): a
            // new connection, followed from this SYN.
            *flow = FlowState::new(initial, true, seq, now_ns);
            stats.started += 1;
        }
        if flags.0 & (TcpFlags::FIN | TcpFlags::RST) != 0 {
            flow.closed = true;
        }
        let result = judge_payload(flow, stats, roles, syn, seq, payload, wire_len);
        if let Err(v) = result {
            flow.violated = Some(v);
            stats.violations += 1;
        }
        result
    }
}

/// Judges the payload of one segment of `flow`.
fn judge_payload(
    flow: &mut FlowState,
    stats: &mut FlowStats,
    roles: Roles,
    syn: bool,
    seq: u32,
    payload: &[u8],
    wire_len: usize,
) -> Result<Followed, Violation> {
    let followed = |f: &FlowState| {
        if f.start_seen && f.next_seq.is_some() {
            Followed::FromStart
        } else {
            Followed::SignaturesOnly
        }
    };
    if wire_len == 0 {
        return Ok(followed(flow));
    }
    // Stream position of the first payload byte (a SYN's data starts after it).
    let data_seq = if syn { seq.wrapping_add(1) } else { seq };
    // Which part of the payload is new to the stream.
    let mut new_from = 0usize;
    if let Some(next) = flow.next_seq {
        let off = data_seq.wrapping_sub(next) as i32;
        if off > 0 {
            // A gap: bytes the capture never saw went before this segment.
            flow.next_seq = None;
            stats.lost_sync += 1;
        } else if off < 0 {
            new_from = (off.unsigned_abs() as usize).min(wire_len);
        }
    }
    let is_dir_request = matches!(flow.shape, Shape::DirRequest(_))
        || (flow.shape == Shape::Undecided
            && roles.intersects(Roles::DIR_PORT)
            && payload.starts_with(DIR_REQUEST_PREFIX));
    if !is_dir_request && flow.shape != Shape::Any {
        if let Some(c) = cleartext(payload) {
            return Err(Violation::Cleartext(c));
        }
    }
    let Some(next) = flow.next_seq else {
        return Ok(Followed::SignaturesOnly);
    };
    if new_from >= wire_len {
        // A retransmission of bytes already judged (their content was
        // checked for cleartext above).
        return Ok(followed(flow));
    }
    if flow.shape == Shape::Undecided {
        flow.shape = decide_shape(roles, payload, new_from, wire_len, flow.start_seen)?;
    }
    let captured_new = payload.get(new_from..).unwrap_or(&[]);
    let tail = wire_len - new_from - captured_new.len();
    let walked = match &mut flow.shape {
        Shape::Tls(w) => Some(w.feed(captured_new, tail)),
        Shape::DirRequest(w) => Some(w.feed(captured_new, tail)),
        Shape::Undecided | Shape::Obfs4 | Shape::Opaque | Shape::Any => None,
    };
    match walked {
        Some(Ok(())) => stats.bytes_followed += (wire_len - new_from) as u64,
        Some(Err(Some(v))) => return Err(v),
        Some(Err(None)) => {
            flow.next_seq = None;
            stats.lost_sync += 1;
            return Ok(Followed::SignaturesOnly);
        }
        None => {}
    }
    flow.next_seq = Some(next.wrapping_add((wire_len - new_from) as u32));
    Ok(followed(flow))
}

/// What the first data of a flow whose start was seen says it is.
fn decide_shape(
    roles: Roles,
    payload: &[u8],
    new_from: usize,
    wire_len: usize,
    start_seen: bool,
) -> Result<Shape, Violation> {
    let first = payload.get(new_from..).unwrap_or(&[]);
    if !start_seen {
        return Ok(Shape::Opaque);
    }
    if roles.intersects(Roles::DIR_PORT) && first.starts_with(DIR_REQUEST_PREFIX) {
        return Ok(Shape::DirRequest(RequestWalker {
            seen: 0,
            last4: [0; 4],
            done: false,
        }));
    }
    let tls_allowed = roles.expects_tls();
    if tls_allowed && first.first() == Some(&tls::HANDSHAKE) {
        return Ok(Shape::Tls(RecordWalker::new()));
    }
    if roles.intersects(Roles::BRIDGE_OBFS4) {
        return if wire_len - new_from >= OBFS4_MIN_FIRST_SEGMENT.min(OBFS4_MAX_HANDSHAKE) {
            Ok(Shape::Obfs4)
        } else {
            Err(Violation::NotObfs4)
        };
    }
    if roles.intersects(Roles::BRIDGE_OTHER_TRANSPORT) {
        return Ok(Shape::Opaque);
    }
    Err(Violation::NotTls)
}

/// The endpoint a TCP frame goes to.
pub fn endpoint(s: &FrameSummary) -> Option<SocketAddr> {
    Some(SocketAddr::new(s.ip.dst?, s.ip.dst_port?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use leaktest_wire::LinkType;

    const T0: u64 = 1_700_000_000_000_000_000;

    /// A TCP segment from the gateway to the relay NET4:5555.
    fn seg(sport: u16, seq: u32, flags: u8, data: &[u8]) -> Vec<u8> {
        let mut t = tcp(sport, 5555, flags, data);
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        eth4(GW4, NET4, 6, &t)
    }

    fn judge(ft: &mut FlowTable, f: &[u8], roles: Roles) -> Result<Followed, Violation> {
        let s = FrameSummary::parse(f, LinkType::Ethernet);
        ft.judge(&s, f, roles, T0)
    }

    fn client_hello(len: usize) -> Vec<u8> {
        let mut r = vec![22, 3, 1];
        r.extend_from_slice(&(len as u16).to_be_bytes());
        r.push(1);
        r.extend(std::iter::repeat_n(0xa5, len - 1));
        r
    }

    fn app_record(len: usize, fill: u8) -> Vec<u8> {
        let mut r = vec![23, 3, 3];
        r.extend_from_slice(&(len as u16).to_be_bytes());
        r.extend((0..len).map(|i| fill ^ (i as u8).wrapping_mul(151)));
        r
    }

    /// A Tor-like TLS stream cut into segments at arbitrary places.
    fn tls_stream() -> Vec<u8> {
        let mut s = client_hello(300);
        s.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
        for i in 0..6 {
            s.extend(app_record(514 + 37 * i, i as u8));
        }
        s
    }

    fn send_stream(
        ft: &mut FlowTable,
        sport: u16,
        stream: &[u8],
        cuts: &[usize],
        roles: Roles,
    ) -> Vec<Result<Followed, Violation>> {
        let isn = 1000u32;
        let mut out = vec![judge(ft, &seg(sport, isn, TcpFlags::SYN, &[]), roles)];
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
            let c = c.min(stream.len());
            if c <= at {
                continue;
            }
            let f = seg(sport, isn + 1 + at as u32, 0x18, &stream[at..c]);
            out.push(judge(ft, &f, roles));
            at = c;
        }
        out
    }

    #[test]
    fn a_tls_flow_followed_from_its_start_is_tor() {
        let mut ft = FlowTable::new();
        let s = tls_stream();
        let r = send_stream(
            &mut ft,
            40001,
            &s,
            &[2, 7, 305, 900, 1500, 1501, 2600],
            Roles::OR_PORT,
        );
        assert!(r.iter().all(|r| *r == Ok(Followed::FromStart)), "{r:?}");
        let st = ft.stats();
        assert_eq!((st.started, st.already_open, st.violations), (1, 0, 0));
        assert_eq!(st.bytes_followed, s.len() as u64);
        // A retransmission of judged bytes is fine; a FIN closes.
        let f = seg(40001, 1001 + 300, 0x18, &s[300..400]);
        assert_eq!(judge(&mut ft, &f, Roles::OR_PORT), Ok(Followed::FromStart));
    }

    #[test]
    fn cleartext_where_a_record_header_belongs_is_not_tor() {
        let mut ft = FlowTable::new();
        let mut s = tls_stream();
        let boundary = s.len();
        s.extend_from_slice(b"\x00\x01binary but not a record");
        let r = send_stream(&mut ft, 40002, &s, &[boundary], Roles::OR_PORT);
        assert_eq!(r.last().unwrap(), &Err(Violation::BadTlsRecord));
        // Every later frame of that flow is judged the same.
        let f = seg(40002, 5, 0x10, &[]);
        assert_eq!(
            judge(&mut ft, &f, Roles::OR_PORT),
            Err(Violation::BadTlsRecord)
        );
        assert_eq!(ft.stats().violations, 1);
    }

    #[test]
    fn http_to_an_orport_is_not_tor() {
        let mut ft = FlowTable::new();
        let req = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n";
        let r = send_stream(&mut ft, 40003, req, &[], Roles::OR_PORT);
        assert_eq!(r[0], Ok(Followed::FromStart), "the SYN alone is Tor-shaped");
        assert_eq!(r[1], Err(Violation::Cleartext(Cleartext::HttpRequest)));
        // Binary that is not a handshake record.
        let r = send_stream(
            &mut ft,
            40004,
            &[0x17, 3, 3, 0, 5, 1, 2, 3, 4, 5],
            &[],
            Roles::OR_PORT,
        );
        assert_eq!(r[1], Err(Violation::NotTls));
        // A handshake record that is not a ClientHello.
        let mut hs = client_hello(50);
        hs[5] = 2;
        let r = send_stream(&mut ft, 40005, &hs, &[], Roles::OR_PORT);
        assert_eq!(r[1], Err(Violation::NotTls));
    }

    #[test]
    fn flows_already_open_are_judged_by_signatures_and_counted_apart() {
        let mut ft = FlowTable::new();
        let ct = app_record(600, 7);
        let f = seg(40010, 777, 0x18, &ct[100..]);
        assert_eq!(
            judge(&mut ft, &f, Roles::OR_PORT),
            Ok(Followed::SignaturesOnly)
        );
        let f = seg(
            40010,
            777 + 500,
            0x18,
            b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n",
        );
        assert_eq!(
            judge(&mut ft, &f, Roles::OR_PORT),
            Err(Violation::Cleartext(Cleartext::HttpResponse))
        );
        assert_eq!((ft.stats().started, ft.stats().already_open), (0, 1));
    }

    #[test]
    fn a_gap_or_a_snapped_header_loses_sync_without_a_false_leak() {
        let mut ft = FlowTable::new();
        let s = tls_stream();
        let isn = 5u32;
        judge(
            &mut ft,
            &seg(40020, isn, TcpFlags::SYN, &[]),
            Roles::OR_PORT,
        )
        .unwrap();
        judge(
            &mut ft,
            &seg(40020, isn + 1, 0x18, &s[..400]),
            Roles::OR_PORT,
        )
        .unwrap();
        // Bytes 400..900 never captured: the next segment is judged by signatures.
        let r = judge(
            &mut ft,
            &seg(40020, isn + 1 + 900, 0x18, &s[900..1400]),
            Roles::OR_PORT,
        );
        assert_eq!(r, Ok(Followed::SignaturesOnly));
        assert_eq!(ft.stats().lost_sync, 1);
        // Snapped: the IP header states more bytes than were captured.
        let mut f = seg(40021, isn, TcpFlags::SYN, &[]);
        judge(&mut ft, &f, Roles::OR_PORT).unwrap();
        f = seg(40021, isn + 1, 0x18, &s[..1200]);
        let ip_len = u16::from_be_bytes([f[16], f[17]]) as usize;
        f[16..18].copy_from_slice(&((ip_len + 3000) as u16).to_be_bytes());
        assert_eq!(
            judge(&mut ft, &f, Roles::OR_PORT),
            Ok(Followed::SignaturesOnly)
        );
        assert_eq!(ft.stats().lost_sync, 2);
    }

    #[test]
    fn obfs4_dirport_transport_and_proxy_shapes() {
        let mut ft = FlowTable::new();
        let random: Vec<u8> = (0..1400u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let r = send_stream(&mut ft, 40030, &random, &[700], Roles::BRIDGE_OBFS4);
        assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
        let r = send_stream(&mut ft, 40031, &random[..100], &[], Roles::BRIDGE_OBFS4);
        assert_eq!(r[1], Err(Violation::NotObfs4));
        let text = "x".repeat(300);
        let r = send_stream(&mut ft, 40032, text.as_bytes(), &[], Roles::BRIDGE_OBFS4);
        assert_eq!(r[1], Err(Violation::Cleartext(Cleartext::Text)));
        // A relay's DirPort: one request, nothing after.
        let req = b"GET /tor/status-vote/current/consensus-microdesc HTTP/1.0\r\nHost: 203.0.113.7\r\n\r\n";
        let r = send_stream(&mut ft, 40033, req, &[20], Roles::DIR_PORT);
        assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
        let mut more = req.to_vec();
        more.extend_from_slice(b"exfiltrated");
        let r = send_stream(&mut ft, 40034, &more, &[], Roles::DIR_PORT);
        assert_eq!(r[1], Err(Violation::NotDirRequest));
        let r = send_stream(
            &mut ft,
            40035,
            b"GET /index.html HTTP/1.0\r\n\r\n",
            &[],
            Roles::DIR_PORT,
        );
        assert_eq!(r[1], Err(Violation::Cleartext(Cleartext::HttpRequest)));
        // A proxy is not judged by content.
        let r = send_stream(
            &mut ft,
            40036,
            b"CONNECT 198.51.100.7:443 HTTP/1.0\r\n\r\n",
            &[],
            Roles::PROXY,
        );
        assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    }

    #[test]
    fn a_four_byte_tcp_header_is_malformed() {
        let mut ft = FlowTable::new();
        let f = eth4(GW4, NET4, 6, &[0x9c, 0x41, 0x15, 0xb3]);
        assert_eq!(
            judge(&mut ft, &f, Roles::OR_PORT),
            Err(Violation::MalformedTcp)
        );
        let mut t = tcp(40040, 5555, 0x10, &[]);
        t[12] = 4 << 4;
        assert_eq!(
            judge(&mut ft, &eth4(GW4, NET4, 6, &t), Roles::OR_PORT),
            Err(Violation::MalformedTcp)
        );
    }

    #[test]
    fn memory_is_bounded_and_overflow_is_counted() {
        let mut ft = FlowTable::new();
        for i in 0..(MAX_FLOWS as u32 + 10) {
            let sport = (i % 60000) as u16 + 1024;
            let src = std::net::Ipv4Addr::from(0x0a00_0000 + i / 60000);
            let mut t = tcp(sport, 5555, TcpFlags::SYN, &[]);
            t[4..8].copy_from_slice(&i.to_be_bytes());
            let f = eth4(src, NET4, 6, &t);
            let s = FrameSummary::parse(&f, LinkType::Ethernet);
            let _ = ft.judge(&s, &f, Roles::OR_PORT, T0);
        }
        assert_eq!(ft.len(), MAX_FLOWS);
        assert_eq!(ft.stats().untracked_frames, 10);
        // Idle flows are forgotten: the table has room again.
        let later = T0 + IDLE_NS + 1;
        let f = seg(40050, 1, TcpFlags::SYN, &[]);
        let s = FrameSummary::parse(&f, LinkType::Ethernet);
        assert_eq!(
            ft.judge(&s, &f, Roles::OR_PORT, later),
            Ok(Followed::FromStart)
        );
        assert_eq!(ft.len(), 1);
    }

    #[test]
    fn cleartext_signatures() {
        for (p, want) in [
            (&b"POST /upload HTTP/1.1\r\n"[..], Some(Cleartext::HttpRequest)),
            (b"HTTP/1.0 200 OK\r\n", Some(Cleartext::HttpResponse)),
            (b"SSH-2.0-OpenSSH_9.2\r\n", Some(Cleartext::Ssh)),
            (b"ehlo gateway.example\r\n", Some(Cleartext::Smtp)),
            (b"220 mail.example ESMTP ready\r\n", Some(Cleartext::Smtp)),
            (b"\x00\x1d\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01", Some(Cleartext::Dns)),
            (&[b'a'; 64][..], Some(Cleartext::Text)),
            (&[b'a'; 63][..], None),
            (b"\x17\x03\x03\x02\x02", None),
        ] {
            assert_eq!(cleartext(p), want, "{:?}", String::from_utf8_lossy(p));
        }
        // Pseudo-random bytes never look like cleartext.
        let mut x = 0x9e3779b97f4a7c15u64;
        for _ in 0..20_000 {
            let buf: Vec<u8> = (0..100)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert_eq!(cleartext(&buf), None);
        }
    }
}
