//! The marker: what ties a captured packet back to the probe that caused it.
//!
//! Every probe carries a 26-byte *payload marker* and, where a gateway may
//! strip or rewrite the payload, a *header marker* spread over header fields.
//! Both are authenticated by a truncated SipHash-2-4 MAC under a per-run key,
//! so random traffic never decodes as a probe.
//!
//! Payload marker layout (all integers big-endian):
//!
//! | bytes  | field                                             |
//! |--------|---------------------------------------------------|
//! | 0..4   | [`MAGIC`]                                         |
//! | 4      | [`VERSION`]                                       |
//! | 5      | key mode: 0 = open, 1 = shared secret; bit 7 set: |
//! |        | a pulse round ([`PULSE_FLAG`])                    |
//! | 6..14  | run id (a pulse: its low 24 bits are the round)   |
//! | 14..18 | probe `seq` (see [`crate::catalogue`])            |
//! | 18..26 | tag = SipHash-2-4(run key, bytes 0..18), 64 bits  |
//!
//! Header marker: a 128-bit SipHash-2-4 of `"hdr" || seq` under the run key,
//! cut into the fields below ([`HeaderTag`]). A header-only match needs at
//! least [`HEADER_MIN_BITS`] matching tag bits, and a run already seen going
//! to the frame's destination with its payload marker ([`MarkerKeys`]).
//!
//! Run keys: in *open* mode (the default) the run key is derived from the run
//! id with a public constant, so a watcher needs no shared state; a random
//! packet still matches a 64-bit tag with probability 2^-64. In *shared* mode
//! the run key is derived from a 128-bit secret given to both probe and
//! watcher, so nobody without the secret can forge a marker.

use siphasher::sip::SipHasher24;
use siphasher::sip128::{Hasher128, SipHasher24 as SipHasher24x128};
use std::collections::HashMap;
use std::hash::Hasher;
use std::net::IpAddr;

/// First bytes of every payload marker.
pub const MAGIC: [u8; 4] = [0x4c, 0x6b, 0x54, 0xa7];
/// Marker format version.
pub const VERSION: u8 = 1;
/// Set in the key-mode byte of a pulse's marker (`leaktest probe
/// --duration`): the run id's low [`ROUND_BITS`] bits are then the round the
/// probe was sent in, and the rest is the pulse's run id (whose low bits
/// are zero). The MAC covers both, so a leaked copy proves its round.
pub const PULSE_FLAG: u8 = 0x80;
/// Bits of a pulse's run id that carry the round: 2^24 rounds, 19 days at
/// the default 100 ms interval.
pub const ROUND_BITS: u32 = 24;
/// The round bits of a run id.
pub const ROUND_MASK: u64 = (1 << ROUND_BITS) - 1;

/// Length of the payload marker in bytes.
pub const MARKER_LEN: usize = 26;
/// Fewest matching header-tag bits for a header-only attribution.
pub const HEADER_MIN_BITS: u32 = 31;

const OPEN_DOMAIN_KEY: [u8; 16] = *b"leaktest-open-v1";

/// How a run key was derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyMode {
    /// From the run id and a public constant: anyone can verify.
    Open,
    /// From a secret shared by probe and watcher.
    Shared,
}

impl KeyMode {
    fn byte(self) -> u8 {
        match self {
            KeyMode::Open => 0,
            KeyMode::Shared => 1,
        }
    }
}

/// The key of one probe run.
///
/// A pulse's rounds share the run's key (derived from the run id, whose
/// low [`ROUND_BITS`] are zero); [`RunKey::with_round`] names the round its
/// markers carry and its header tags mix in, so every round's probes have
/// fresh header fields (TCP source ports: a new connection to conntrack
/// each round).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RunKey {
    pub run_id: u64,
    pub mode: KeyMode,
    key: [u8; 16],
    round: Option<u32>,
}

impl std::fmt::Debug for RunKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key itself.
        f.debug_struct("RunKey")
            .field("run_id", &format_args!("{:016x}", self.run_id))
            .field("mode", &self.mode)
            .field("round", &self.round)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

fn sip128(key: &[u8; 16], parts: &[&[u8]]) -> u128 {
    let mut h = SipHasher24x128::new_with_key(key);
    for p in parts {
        h.write(p);
    }
    h.finish128().as_u128()
}

/// SipHash-2-4 of a short input in one pass, without the streaming
/// `Hasher` machinery (the sender computes two MACs per probe). Returns
/// (h1, h2); h2 is 0 unless `wide` (the 128-bit variant). Bit-for-bit equal
/// to `siphasher` (checked by the tests).
#[inline]
fn sip24(key: &[u8; 16], data: &[u8], wide: bool) -> (u64, u64) {
    #[inline(always)]
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    #[inline(always)]
    fn compress(v: &mut [u64; 4], m: u64) {
        v[3] ^= m;
        round(v);
        round(v);
        v[0] ^= m;
    }
    let k0 = u64::from_le_bytes([
        key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
    ]);
    let k1 = u64::from_le_bytes([
        key[8], key[9], key[10], key[11], key[12], key[13], key[14], key[15],
    ]);
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    if wide {
        v[1] ^= 0xee;
    }
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        compress(
            &mut v,
            u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
        );
    }
    // Last block: the remaining bytes, little-endian, and the length on top.
    let mut last = (data.len() as u64) << 56;
    for (i, b) in chunks.remainder().iter().enumerate() {
        last |= (*b as u64) << (8 * i);
    }
    compress(&mut v, last);
    v[2] ^= if wide { 0xee } else { 0xff };
    for _ in 0..4 {
        round(&mut v);
    }
    let h1 = v[0] ^ v[1] ^ v[2] ^ v[3];
    if !wide {
        return (h1, 0);
    }
    v[1] ^= 0xdd;
    for _ in 0..4 {
        round(&mut v);
    }
    (h1, v[0] ^ v[1] ^ v[2] ^ v[3])
}

impl RunKey {
    /// The open-mode key of `run_id`.
    pub fn open(run_id: u64) -> RunKey {
        let key = sip128(&OPEN_DOMAIN_KEY, &[b"run", &run_id.to_be_bytes()]).to_be_bytes();
        RunKey {
            run_id,
            mode: KeyMode::Open,
            key,
            round: None,
        }
    }

    /// The shared-mode key of `run_id` under `secret`.
    pub fn shared(secret: &[u8; 16], run_id: u64) -> RunKey {
        let key = sip128(secret, &[b"run", &run_id.to_be_bytes()]).to_be_bytes();
        RunKey {
            run_id,
            mode: KeyMode::Shared,
            key,
            round: None,
        }
    }

    /// The same run's key for pulse round `round` (its low [`ROUND_BITS`]
    /// bits; the run id's own low bits must be zero, see [`pulse_run_id`]).
    pub fn with_round(self, round: u32) -> RunKey {
        RunKey {
            round: Some(round & ROUND_MASK as u32),
            ..self
        }
    }

    /// The pulse round this key marks, if any.
    pub fn round(&self) -> Option<u32> {
        self.round
    }

    /// A short public name of the key (16 hex digits); reveals nothing of it.
    pub fn fingerprint(&self) -> String {
        let mut h = SipHasher24::new_with_key(&self.key);
        h.write(b"fingerprint");
        format!("{:016x}", h.finish())
    }

    fn tag(&self, head: &[u8]) -> u64 {
        sip24(&self.key, head, false).0
    }

    /// The `flags` suite's ports drawn for this run: distinct, in
    /// 1024..=65535, none of `FLAG_FIXED_PORTS`; a pure function of the key,
    /// so a watcher that verified a marker of the run knows them too.
    pub fn drawn_ports(&self) -> [u16; crate::catalogue::FLAG_DRAWN_PORTS] {
        use crate::catalogue::FLAG_FIXED_PORTS;
        let mut out = [0u16; crate::catalogue::FLAG_DRAWN_PORTS];
        let mut n = 0;
        let mut counter = 0u32;
        while n < out.len() {
            let h = sip24(
                &self.key,
                &[b"flagport".as_slice(), &counter.to_be_bytes()].concat(),
                false,
            )
            .0;
            counter += 1;
            let port = 1024 + (h % (65536 - 1024)) as u16;
            if !FLAG_FIXED_PORTS.contains(&port) && !out[..n].contains(&port) {
                out[n] = port;
                n += 1;
            }
        }
        out
    }

    /// The 64-bit MAC of a `spoof` probe's claimed source (`addr`: 16
    /// bytes, IPv4 mapped) for probe `seq`.
    pub fn claim_tag(&self, seq: u32, addr: &[u8; 16]) -> u64 {
        let mut d = [0u8; 3 + 4 + 16];
        d[..3].copy_from_slice(b"src");
        d[3..7].copy_from_slice(&seq.to_be_bytes());
        d[7..].copy_from_slice(addr);
        sip24(&self.key, &d, false).0
    }

    /// The payload marker of probe `seq`.
    pub fn payload_marker(&self, seq: u32) -> [u8; MARKER_LEN] {
        let mut m = [0u8; MARKER_LEN];
        m[0..4].copy_from_slice(&MAGIC);
        m[4] = VERSION;
        m[5] = self.mode.byte();
        let mut id = self.run_id;
        if let Some(r) = self.round {
            m[5] |= PULSE_FLAG;
            id = (id & !ROUND_MASK) | u64::from(r);
        }
        m[6..14].copy_from_slice(&id.to_be_bytes());
        m[14..18].copy_from_slice(&seq.to_be_bytes());
        let tag = self.tag(&m[..18]);
        m[18..26].copy_from_slice(&tag.to_be_bytes());
        m
    }

    /// The header marker of probe `seq`.
    pub fn header_tag(&self, seq: u32) -> HeaderTag {
        let s = seq.to_be_bytes();
        let (h1, h2) = match self.round {
            None => sip24(&self.key, &[b'h', b'd', b'r', s[0], s[1], s[2], s[3]], true),
            // A round's own header fields: "hdr" || seq || round.
            Some(r) => {
                let r = r.to_be_bytes();
                let d = [b'h', b'd', b'r', s[0], s[1], s[2], s[3], r[1], r[2], r[3]];
                sip24(&self.key, &d, true)
            }
        };
        // Same value as sip128(key, ["hdr", seq]).
        HeaderTag(h1 as u128 | (h2 as u128) << 64)
    }
}

/// The header marker of one probe: 128 bits cut into header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderTag(pub u128);

impl HeaderTag {
    fn bits(self, from: u32, width: u32) -> u128 {
        (self.0 >> from) & ((1u128 << width) - 1)
    }
    /// IPv4 identification (16 bits, never 0: a raw socket would replace 0).
    pub fn ipv4_id(self) -> u16 {
        (self.bits(0, 16) as u16).max(1)
    }
    /// IPv6 flow label (20 bits).
    pub fn flow_label(self) -> u32 {
        self.bits(16, 20) as u32
    }
    /// TCP sequence number (32 bits).
    pub fn tcp_seq(self) -> u32 {
        self.bits(36, 32) as u32
    }
    /// ICMP echo-style identifier and sequence (16 + 16 bits), for every ICMP type.
    pub fn icmp_id_seq(self) -> (u16, u16) {
        (self.bits(68, 16) as u16, self.bits(84, 16) as u16)
    }
    /// DNS message id of a probe that carries a DNS query (16 bits; the
    /// same bits as the ICMP sequence: no probe carries both).
    pub fn dns_id(self) -> u16 {
        self.bits(84, 16) as u16
    }
    /// UDP source port (15 bits, in 32768..=65535).
    pub fn src_port(self) -> u16 {
        32768 + self.bits(100, 15) as u16
    }
    /// TCP source port of the probe with TCP flag set `flag_set` (0..=4,
    /// see `catalogue::TCP_FLAG_SETS`): 12 tag bits, then the flag set in the
    /// low 3 bits. The five TCP probes to one port thus never share a
    /// 4-tuple, so a stateful gateway never takes one for a packet of an
    /// earlier probe's connection (a SYN's, say) and handles each on its own.
    pub fn tcp_src_port(self, flag_set: u8) -> u16 {
        (self.src_port() & !7) | (flag_set & 7) as u16
    }
}

/// A payload marker read from bytes, not yet verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    pub mode: KeyMode,
    /// The run id (of a pulse: without its round bits).
    pub run_id: u64,
    /// The pulse round ([`PULSE_FLAG`]), if any.
    pub round: Option<u32>,
    pub seq: u32,
    pub tag: u64,
}

impl Marker {
    /// Reads a marker at the start of `bytes` (format only, no MAC check).
    pub fn read(bytes: &[u8]) -> Option<Marker> {
        let m = bytes.get(..MARKER_LEN)?;
        if m[0..4] != MAGIC || m[4] != VERSION {
            return None;
        }
        let mode = match m[5] & !PULSE_FLAG {
            0 => KeyMode::Open,
            1 => KeyMode::Shared,
            _ => return None,
        };
        let id = u64::from_be_bytes(m[6..14].try_into().ok()?);
        let (run_id, round) = if m[5] & PULSE_FLAG != 0 {
            (id & !ROUND_MASK, Some((id & ROUND_MASK) as u32))
        } else {
            (id, None)
        };
        Some(Marker {
            mode,
            run_id,
            round,
            seq: u32::from_be_bytes(m[14..18].try_into().ok()?),
            tag: u64::from_be_bytes(m[18..26].try_into().ok()?),
        })
    }

    /// Finds and verifies the first authentic payload marker in `bytes`,
    /// looking at no more than [`MAX_MARKER_CANDIDATES`] places that start
    /// with [`MAGIC`] (so a frame full of forged markers costs a bounded
    /// number of MACs). Learns the run ([`MarkerKeys::learn`]).
    pub fn find_verified(bytes: &[u8], keys: &mut MarkerKeys) -> Option<(Marker, RunKey)> {
        let (m, key) = memchr::memmem::find_iter(bytes, &MAGIC)
            .take(MAX_MARKER_CANDIDATES)
            .find_map(|pos| Marker::verify(&bytes[pos..], keys))?;
        keys.learn(key);
        Some((m, key))
    }

    /// Reads and verifies the marker at the start of `bytes`: its MAC must
    /// be right under the key of its mode and run. Learns nothing (the
    /// caller decides, after its own checks, with [`MarkerKeys::learn`]).
    pub fn verify(bytes: &[u8], keys: &mut MarkerKeys) -> Option<(Marker, RunKey)> {
        let m = Marker::read(bytes)?;
        let key = keys.key_for(m.mode, m.run_id)?;
        (key.tag(&bytes[..18]) == m.tag).then_some((m, key))
    }
}

/// A run id fit for a pulse: `id` with its low [`ROUND_BITS`] bits zero.
pub fn pulse_run_id(id: u64) -> u64 {
    id & !ROUND_MASK
}

/// Places starting with [`MAGIC`] that [`Marker::find_verified`] checks per
/// frame. A probe frame holds its marker once (also when quoted in an ICMP
/// error or tunnelled), so a genuine marker is among the first few; beyond
/// that a frame is stuffed with forged ones.
pub const MAX_MARKER_CANDIDATES: usize = 4;

/// Runs remembered for reports and for tools ([`MarkerKeys::runs`]).
pub const MAX_KNOWN_RUNS: usize = 64;
/// Probe targets remembered for header-only matching.
pub const MAX_TARGETS: usize = 1024;
/// Runs remembered per target.
pub const MAX_RUNS_PER_TARGET: usize = 4;
/// Runs announced in advance that header matching tries ([`MarkerKeys::expect_run`]).
pub const MAX_ANNOUNCED_RUNS: usize = 8;

/// The keys a watcher verifies markers with: every open-mode run, shared-mode
/// runs if it holds the secret, the runs seen so far, and per probe target
/// the runs whose payload markers were seen going there.
///
/// Header-only matching (a probe whose payload a gateway stripped or
/// rewrote) carries no run id; it is tried only against the runs known for
/// the frame's own destination ([`MarkerKeys::runs_for`]), so its cost is
/// bounded (at most [`MAX_RUNS_PER_TARGET`] runs) and traffic to other
/// destinations is never matched against a probe run. All memory is bounded
/// however many forged markers arrive.
#[derive(Clone, Debug, Default)]
pub struct MarkerKeys {
    secret: Option<[u8; 16]>,
    cache: HashMap<(KeyMode, u64), RunKey>,
    known: Vec<RunKey>,
    /// Runs announced in advance ([`MarkerKeys::expect_run`]).
    announced: Vec<RunKey>,
    targets: HashMap<IpAddr, Vec<RunKey>>,
}

impl MarkerKeys {
    /// Keys that accept open-mode markers only.
    pub fn open() -> MarkerKeys {
        MarkerKeys::default()
    }

    /// Keys that also accept shared-mode markers made with `secret`.
    pub fn with_secret(secret: [u8; 16]) -> MarkerKeys {
        MarkerKeys {
            secret: Some(secret),
            ..MarkerKeys::default()
        }
    }

    /// The run key for a marker's mode and run id, if these keys can verify it.
    pub fn key_for(&mut self, mode: KeyMode, run_id: u64) -> Option<RunKey> {
        if let Some(k) = self.cache.get(&(mode, run_id)) {
            return Some(*k);
        }
        let key = match mode {
            KeyMode::Open => RunKey::open(run_id),
            KeyMode::Shared => RunKey::shared(self.secret.as_ref()?, run_id),
        };
        if self.cache.len() >= 4096 {
            // Bounded memory however many forged run ids arrive.
            self.cache.clear();
        }
        self.cache.insert((mode, run_id), key);
        Some(key)
    }

    /// Remembers a run announced in advance by its id (`leaktest watch
    /// --run`): its open-mode key, and its shared-mode key if these keys
    /// hold the secret (at most [`MAX_ANNOUNCED_RUNS`] runs). A reflection
    /// of an announced run needs no payload marker of it to have been seen
    /// first ([`MarkerKeys::reflection_runs`]); other header-only evidence
    /// still does (so that a flood of unmarked leaks to new destinations
    /// costs no key work).
    pub fn expect_run(&mut self, run_id: u64) {
        let mut modes = vec![KeyMode::Open];
        if self.secret.is_some() {
            modes.push(KeyMode::Shared);
        }
        for mode in modes {
            if let Some(k) = self.key_for(mode, run_id) {
                if !self.announced.contains(&k) && self.announced.len() < MAX_ANNOUNCED_RUNS {
                    self.announced.push(k);
                }
                self.learn(k);
            }
        }
    }

    /// The runs a reflection from `addr` (the target, in whose name the
    /// gateway answered) is checked against: those seen going there, else
    /// the announced ones. At most [`MAX_RUNS_PER_TARGET`] or
    /// [`MAX_ANNOUNCED_RUNS`], so the cost per frame stays bounded however
    /// many runs forged markers make the keys learn.
    pub fn reflection_runs(&self, addr: &IpAddr) -> &[RunKey] {
        match self.runs_for(addr) {
            [] => &self.announced,
            r => r,
        }
    }

    /// Remembers a run (at most [`MAX_KNOWN_RUNS`]).
    pub fn learn(&mut self, key: RunKey) {
        if !self.known.contains(&key) && self.known.len() < MAX_KNOWN_RUNS {
            self.known.push(key);
        }
    }

    /// Remembers that a payload marker of `key`'s run went to `target`, so
    /// that header-only markers of that run to that address can be matched.
    /// At most [`MAX_TARGETS`] targets (beyond that one is forgotten to make
    /// room) and [`MAX_RUNS_PER_TARGET`] runs each (the oldest gives way).
    pub fn learn_target(&mut self, key: RunKey, target: IpAddr) {
        self.learn(key);
        if !self.targets.contains_key(&target) && self.targets.len() >= MAX_TARGETS {
            if let Some(k) = self.targets.keys().next().copied() {
                self.targets.remove(&k);
            }
        }
        let runs = self.targets.entry(target).or_default();
        if !runs.contains(&key) {
            if runs.len() >= MAX_RUNS_PER_TARGET {
                runs.remove(0);
            }
            runs.push(key);
        }
    }

    /// Whether any run is known for any target.
    pub fn has_targets(&self) -> bool {
        !self.targets.is_empty()
    }

    /// Runs whose payload markers were seen going to `target`.
    pub fn runs_for(&self, target: &IpAddr) -> &[RunKey] {
        self.targets.get(target).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Runs learnt so far (or added with [`MarkerKeys::learn`]).
    pub fn runs(&self) -> &[RunKey] {
        &self.known
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn payload_marker_vector() {
        let key = RunKey::open(0x0102030405060708);
        let m = key.payload_marker(0x0010_0203);
        assert_eq!(
            &m[..18],
            &[0x4c, 0x6b, 0x54, 0xa7, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x00, 0x10, 0x02, 0x03]
        );
        let read = Marker::read(&m).unwrap();
        assert_eq!(
            (read.run_id, read.seq, read.mode),
            (0x0102030405060708, 0x0010_0203, KeyMode::Open)
        );
    }

    #[test]
    fn shared_marker_needs_the_secret() {
        let key = RunKey::shared(&[7; 16], 42);
        let m = key.payload_marker(9);
        assert!(Marker::find_verified(&m, &mut MarkerKeys::open()).is_none());
        assert!(Marker::find_verified(&m, &mut MarkerKeys::with_secret([8; 16])).is_none());
        let (got, k) = Marker::find_verified(&m, &mut MarkerKeys::with_secret([7; 16])).unwrap();
        assert_eq!((got.seq, k.run_id), (9, 42));
    }

    #[test]
    fn header_tag_fields_are_in_range() {
        let t = RunKey::open(1).header_tag(5);
        assert!(t.ipv4_id() != 0);
        assert!(t.flow_label() < 1 << 20);
        assert!(t.src_port() >= 32768);
        for set in 0..5 {
            let p = t.tcp_src_port(set);
            assert!(p >= 32768);
            assert_eq!(p & 7, set as u16);
            assert_eq!(p >> 3, t.src_port() >> 3);
        }
    }

    proptest! {
        #[test]
        fn one_pass_siphash_equals_siphasher(key in any::<[u8; 16]>(),
                data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut h = SipHasher24::new_with_key(&key);
            h.write(&data);
            prop_assert_eq!(sip24(&key, &data, false).0, h.finish());
            let (h1, h2) = sip24(&key, &data, true);
            prop_assert_eq!(h1 as u128 | (h2 as u128) << 64, sip128(&key, &[&data]));
        }

        #[test]
        fn header_tag_is_the_documented_sip128(run in any::<u64>(), seq in any::<u32>()) {
            let key = RunKey::open(run);
            prop_assert_eq!(key.header_tag(seq).0, sip128(&key.key, &[b"hdr", &seq.to_be_bytes()]));
        }

        #[test]
        fn marker_round_trips_anywhere_in_a_buffer(run in any::<u64>(), seq in any::<u32>(),
                prefix in proptest::collection::vec(any::<u8>(), 0..64),
                suffix in proptest::collection::vec(any::<u8>(), 0..64)) {
            let key = RunKey::open(run);
            let mut buf = prefix.clone();
            buf.extend_from_slice(&key.payload_marker(seq));
            buf.extend_from_slice(&suffix);
            let (m, k) = Marker::find_verified(&buf, &mut MarkerKeys::open()).unwrap();
            prop_assert_eq!((m.run_id, m.seq), (run, seq));
            prop_assert_eq!(k, key);
        }

        #[test]
        fn any_flipped_bit_breaks_the_marker(run in any::<u64>(), seq in any::<u32>(), bit in 0usize..(MARKER_LEN * 8)) {
            let mut m = RunKey::open(run).payload_marker(seq);
            m[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(Marker::find_verified(&m, &mut MarkerKeys::open()).is_none());
        }

        #[test]
        fn random_bytes_never_verify(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            prop_assert!(Marker::find_verified(&bytes, &mut MarkerKeys::with_secret([1; 16])).is_none());
        }
    }
}
