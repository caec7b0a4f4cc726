//! Canary frames: the watcher's proof that its capture sees what leaves.
//!
//! The watcher sends a harmless Ethernet frame on the captured interface at
//! the start, periodically and at the end, and requires its own capture to
//! see every one, exactly once and exactly as built. This module is the
//! frame format and the ledger of sent and seen canaries; sending them is
//! `leaktest-capture`'s job.
//!
//! Frame layout ([`CANARY_FRAME_LEN`] bytes, integers big-endian; see
//! [`field`]):
//!
//! | bytes  | field                                                   |
//! |--------|---------------------------------------------------------|
//! | 0..6   | destination [`CANARY_DST_MAC`] (locally administered, unicast) |
//! | 6..12  | source: the interface's own MAC                         |
//! | 12..14 | EtherType [`CANARY_ETHERTYPE`] (IEEE local experimental 1) |
//! | 14..22 | [`CANARY_MAGIC`]                                        |
//! | 22..30 | session nonce (random per watch)                        |
//! | 30..38 | canary id (0, 1, 2, ...)                                |
//! | 38..46 | tag = SipHash-2-4(session key, bytes 14..38)            |
//! | 46..64 | the text `leaktest canary v1`                           |
//!
//! The session key is random and never leaves the process. A captured frame
//! of the canary EtherType counts as a canary only if it is byte for byte
//! the frame of an id that was sent and not yet seen: the whole 64 bytes,
//! both MAC addresses, no VLAN tag, nothing before or after. Everything else
//! of that EtherType (a canary seen again, altered, truncated, extended,
//! tagged, or another session's) is a forged canary: a frame a process on
//! the gateway wrote, which the watcher reports as a leak.

use crate::hdr::ethernet;
use siphasher::sip::SipHasher24;
use std::collections::{BTreeMap, HashSet};
use std::hash::Hasher;

/// EtherType of canary frames: IEEE 802 local experimental EtherType 1.
pub const CANARY_ETHERTYPE: u16 = ethernet::ETHERTYPE_LOCAL_EXPERIMENTAL_1;
/// Destination of canary frames: a locally administered unicast address
/// that no real station owns, so every receiver drops them.
pub const CANARY_DST_MAC: [u8; 6] = [0x02, 0x6c, 0x6b, 0x74, 0x63, 0x79];
/// First payload bytes of a canary.
pub const CANARY_MAGIC: [u8; 8] = *b"LkTCnry1";
/// Length of a canary frame (no FCS; above the 60-byte minimum, so never padded).
pub const CANARY_FRAME_LEN: usize = 64;
const TEXT: &[u8; 18] = b"leaktest canary v1";

/// Offsets of the canary frame's fields.
pub mod field {
    use crate::hdr::Field;
    pub const MAGIC: Field = 14..22;
    pub const NONCE: Field = 22..30;
    pub const ID: Field = 30..38;
    pub const TAG: Field = 38..46;
    pub const TEXT: Field = 46..64;
    /// The bytes the tag authenticates.
    pub const AUTHENTICATED: Field = 14..38;
}

/// Builds the canary frames of one watch session.
#[derive(Clone)]
pub struct CanaryKey {
    key: [u8; 16],
    nonce: u64,
    src: [u8; 6],
}

impl std::fmt::Debug for CanaryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("CanaryKey")
            .field("nonce", &format_args!("{:016x}", self.nonce))
            .finish()
    }
}

impl CanaryKey {
    /// A session key; `key` and `nonce` must be random (the caller draws
    /// them: this crate has no random source), `src` is the interface's MAC.
    pub fn new(src: [u8; 6], key: [u8; 16], nonce: u64) -> CanaryKey {
        CanaryKey { key, nonce, src }
    }

    /// The source MAC address of this session's canaries.
    pub fn src(&self) -> [u8; 6] {
        self.src
    }

    fn tag(&self, head: &[u8]) -> u64 {
        let mut h = SipHasher24::new_with_key(&self.key);
        h.write(head);
        h.finish()
    }

    /// The frame of canary `id`.
    pub fn frame(&self, id: u64) -> [u8; CANARY_FRAME_LEN] {
        let mut f = [0u8; CANARY_FRAME_LEN];
        f[ethernet::field::DESTINATION].copy_from_slice(&CANARY_DST_MAC);
        f[ethernet::field::SOURCE].copy_from_slice(&self.src);
        f[ethernet::field::ETHERTYPE].copy_from_slice(&CANARY_ETHERTYPE.to_be_bytes());
        f[field::MAGIC].copy_from_slice(&CANARY_MAGIC);
        f[field::NONCE].copy_from_slice(&self.nonce.to_be_bytes());
        f[field::ID].copy_from_slice(&id.to_be_bytes());
        let tag = self.tag(&f[field::AUTHENTICATED]);
        f[field::TAG].copy_from_slice(&tag.to_be_bytes());
        f[field::TEXT].copy_from_slice(TEXT);
        f
    }

    /// The canary id `frame` claims to be, if it is this session's (right
    /// magic, nonce and tag in the first 46 bytes), whatever the rest holds.
    fn claimed_id(&self, frame: &[u8]) -> Option<u64> {
        if frame.get(field::MAGIC)? != CANARY_MAGIC
            || frame.get(field::NONCE)? != self.nonce.to_be_bytes()
        {
            return None;
        }
        let id = u64::from_be_bytes(frame.get(field::ID)?.try_into().ok()?);
        let tag = u64::from_be_bytes(frame.get(field::TAG)?.try_into().ok()?);
        (tag == self.tag(&frame[field::AUTHENTICATED])).then_some(id)
    }
}

/// How a frame of the canary EtherType differs from a canary of this session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Forgery {
    /// A canary of this session seen a second time: a replay.
    Repeated,
    /// Longer than a canary, with this session's canary in front: a canary
    /// carrying data.
    Extended,
    /// Shorter than a canary.
    Truncated,
    /// This session's magic, nonce and tag but other bytes (addresses, text).
    Altered,
    /// An authentic id that was never sent.
    NotSent,
    /// Behind a VLAN tag (canaries are sent untagged).
    Tagged,
    /// Not this session's: another watcher's canary or a made-up frame.
    Foreign,
}

impl Forgery {
    pub fn name(self) -> &'static str {
        match self {
            Forgery::Repeated => "repeated",
            Forgery::Extended => "extended",
            Forgery::Truncated => "truncated",
            Forgery::Altered => "altered",
            Forgery::NotSent => "not-sent",
            Forgery::Tagged => "tagged",
            Forgery::Foreign => "foreign",
        }
    }
}

/// What a captured frame of the canary EtherType is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanarySighting {
    /// Canary `id` of this session, exactly as built, seen for the first time.
    Ours(u64),
    /// Anything else of the canary EtherType.
    Forged(Forgery),
}

/// The canaries of one watch: sent, seen, missing, and the judgement of
/// every frame of the canary EtherType. Times are nanoseconds on a clock of
/// the caller's choice (this crate reads no clock). Memory: one entry per
/// canary sent and not yet seen or forgotten, and a set of seen ids (one
/// per canary, a few per second).
#[derive(Clone, Debug)]
pub struct CanaryLedger {
    key: CanaryKey,
    next: u64,
    outstanding: BTreeMap<u64, u64>,
    seen_ids: HashSet<u64>,
    seen: u64,
    forged: u64,
}

impl CanaryLedger {
    pub fn new(key: CanaryKey) -> CanaryLedger {
        CanaryLedger {
            key,
            next: 0,
            outstanding: BTreeMap::new(),
            seen_ids: HashSet::new(),
            seen: 0,
            forged: 0,
        }
    }

    pub fn key(&self) -> &CanaryKey {
        &self.key
    }

    /// The next canary's id and frame; the id counts as sent once
    /// [`CanaryLedger::mark_sent`] is called.
    pub fn next_frame(&self) -> (u64, [u8; CANARY_FRAME_LEN]) {
        (self.next, self.key.frame(self.next))
    }

    /// Records canary `id` (from [`CanaryLedger::next_frame`]) as sent at `at_ns`.
    pub fn mark_sent(&mut self, id: u64, at_ns: u64) {
        if id == self.next {
            self.next += 1;
            self.outstanding.insert(id, at_ns);
        }
    }

    /// Whether `frame` carries the canary EtherType, untagged (a cheap test).
    pub fn has_canary_ethertype(frame: &[u8]) -> bool {
        frame.get(ethernet::field::ETHERTYPE) == Some(&CANARY_ETHERTYPE.to_be_bytes()[..])
    }

    /// Judges a captured frame whose EtherType (after any VLAN tags, which
    /// `tagged` says were there) is [`CANARY_ETHERTYPE`], and records it.
    /// Never panics.
    pub fn observe(&mut self, frame: &[u8], tagged: bool) -> CanarySighting {
        let s = self.judge(frame, tagged);
        match s {
            CanarySighting::Ours(id) => {
                self.outstanding.remove(&id);
                self.seen_ids.insert(id);
                self.seen += 1;
            }
            CanarySighting::Forged(_) => self.forged += 1,
        }
        s
    }

    fn judge(&self, frame: &[u8], tagged: bool) -> CanarySighting {
        use CanarySighting::Forged;
        if tagged {
            return Forged(Forgery::Tagged);
        }
        if frame.len() < CANARY_FRAME_LEN {
            // This session's magic and nonce, cut short.
            let ours = frame.get(field::MAGIC) == Some(&CANARY_MAGIC[..])
                && frame.get(field::NONCE) == Some(&self.key.nonce.to_be_bytes()[..]);
            return Forged(if ours {
                Forgery::Truncated
            } else {
                Forgery::Foreign
            });
        }
        let Some(id) = self.key.claimed_id(frame) else {
            return Forged(Forgery::Foreign);
        };
        if frame[..CANARY_FRAME_LEN] != self.key.frame(id) {
            return Forged(Forgery::Altered);
        }
        if frame.len() > CANARY_FRAME_LEN {
            return Forged(Forgery::Extended);
        }
        if id >= self.next {
            return Forged(Forgery::NotSent);
        }
        if self.seen_ids.contains(&id) {
            return Forged(Forgery::Repeated);
        }
        CanarySighting::Ours(id)
    }

    /// Canaries sent so far.
    pub fn sent(&self) -> u64 {
        self.next
    }
    /// Distinct canaries seen so far (each exactly as built).
    pub fn seen(&self) -> u64 {
        self.seen
    }
    /// Frames of the canary EtherType that were not one of this session's
    /// canaries seen for the first time.
    pub fn forged(&self) -> u64 {
        self.forged
    }
    /// Ids sent and not (yet) seen.
    pub fn missing(&self) -> Vec<u64> {
        self.outstanding.keys().copied().collect()
    }
    /// Ids sent at or before `now_ns - age_ns` and still not seen.
    pub fn overdue(&self, now_ns: u64, age_ns: u64) -> Vec<u64> {
        self.outstanding
            .iter()
            .filter(|(_, &t)| now_ns.saturating_sub(t) >= age_ns)
            .map(|(&id, _)| id)
            .collect()
    }
    /// Gives up on canaries sent at or before `now_ns - age_ns`: they stay
    /// counted as sent and not seen but are no longer tracked (bounded
    /// memory when the capture is blind for a long time). Returns how many.
    pub fn forget_overdue(&mut self, now_ns: u64, age_ns: u64) -> usize {
        let before = self.outstanding.len();
        self.outstanding
            .retain(|_, t| now_ns.saturating_sub(*t) < age_ns);
        before - self.outstanding.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

    fn ledger() -> CanaryLedger {
        CanaryLedger::new(CanaryKey::new(SRC, [1; 16], 7))
    }

    fn send(l: &mut CanaryLedger, at: u64) -> [u8; CANARY_FRAME_LEN] {
        let (id, f) = l.next_frame();
        l.mark_sent(id, at);
        f
    }

    #[test]
    fn frame_layout() {
        let k = CanaryKey::new(SRC, [9; 16], 0x1122334455667788);
        let f = k.frame(5);
        assert_eq!(&f[0..6], &CANARY_DST_MAC);
        assert_eq!(
            CANARY_DST_MAC[0] & 0x03,
            0x02,
            "locally administered unicast"
        );
        assert_eq!(&f[6..12], &SRC);
        assert_eq!(&f[12..14], &[0x88, 0xb5]);
        assert_eq!(&f[14..22], b"LkTCnry1");
        assert_eq!(&f[22..30], &0x1122334455667788u64.to_be_bytes());
        assert_eq!(&f[30..38], &5u64.to_be_bytes());
        assert_eq!(&f[46..], b"leaktest canary v1");
        assert!(CanaryLedger::has_canary_ethertype(&f));
    }

    #[test]
    fn tracks_sent_seen_and_missing() {
        let mut l = ledger();
        let frames: Vec<_> = (0..4).map(|_| send(&mut l, 100)).collect();
        assert_eq!(l.sent(), 4);
        assert_eq!(l.observe(&frames[0], false), CanarySighting::Ours(0));
        assert_eq!(l.observe(&frames[2], false), CanarySighting::Ours(2));
        assert_eq!((l.seen(), l.forged()), (2, 0));
        assert_eq!(l.missing(), vec![1, 3]);
        assert_eq!(l.overdue(100, 1_000), Vec::<u64>::new());
        assert_eq!(l.overdue(1_100, 1_000), vec![1, 3]);
        assert_eq!(l.forget_overdue(1_100, 1_000), 2);
        assert_eq!((l.sent(), l.seen()), (4, 2));
    }

    #[test]
    fn only_the_exact_frame_seen_once_is_a_canary() {
        let mut l = ledger();
        let f = send(&mut l, 0);
        let g = send(&mut l, 0);
        // Extended with data: the exfiltration the watcher must catch.
        let mut extended = f.to_vec();
        extended.extend_from_slice(&[0x41; 93]);
        assert_eq!(
            l.observe(&extended, false),
            CanarySighting::Forged(Forgery::Extended)
        );
        // The genuine one is still ours, once.
        assert_eq!(l.observe(&f, false), CanarySighting::Ours(0));
        assert_eq!(
            l.observe(&f, false),
            CanarySighting::Forged(Forgery::Repeated)
        );
        // Other destination MAC (sent again to the next hop), other text, other source.
        for at in [0usize, 5, 6, 11, 46, 63] {
            let mut h = g;
            h[at] ^= 0x20;
            assert_eq!(
                l.observe(&h, false),
                CanarySighting::Forged(Forgery::Altered),
                "byte {at}"
            );
        }
        // Truncated (what a short frame of the EtherType used to pass as).
        assert_eq!(
            l.observe(&g[..46], false),
            CanarySighting::Forged(Forgery::Truncated)
        );
        assert_eq!(
            l.observe(&g[..30], false),
            CanarySighting::Forged(Forgery::Truncated)
        );
        assert_eq!(
            l.observe(&g[..29], false),
            CanarySighting::Forged(Forgery::Foreign)
        );
        // Behind a VLAN tag.
        assert_eq!(l.observe(&g, true), CanarySighting::Forged(Forgery::Tagged));
        // Authentic but never sent.
        let later = l.key().frame(9);
        assert_eq!(
            l.observe(&later, false),
            CanarySighting::Forged(Forgery::NotSent)
        );
        // Another session (other nonce, other key).
        let other = CanaryKey::new(SRC, [1; 16], 8).frame(1);
        assert_eq!(
            l.observe(&other, false),
            CanarySighting::Forged(Forgery::Foreign)
        );
        let other = CanaryKey::new(SRC, [2; 16], 7).frame(1);
        assert_eq!(
            l.observe(&other, false),
            CanarySighting::Forged(Forgery::Foreign)
        );
        // Any flipped bit in the authenticated part.
        for bit in field::AUTHENTICATED.start * 8..field::TAG.end * 8 {
            let mut h = g;
            h[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(l.observe(&h, false), CanarySighting::Forged(_)),
                "bit {bit}"
            );
        }
        assert_eq!(l.observe(&g, false), CanarySighting::Ours(1));
        assert_eq!((l.seen(), l.missing()), (2, vec![]));
        assert!(l.forged() > 100);
    }

    #[test]
    fn never_panics_on_short_or_odd_frames() {
        let mut l = ledger();
        send(&mut l, 0);
        for len in 0..80 {
            let mut f = vec![0u8; len];
            if len >= 14 {
                f[12..14].copy_from_slice(&CANARY_ETHERTYPE.to_be_bytes());
            }
            if len >= 22 {
                f[14..22].copy_from_slice(&CANARY_MAGIC);
            }
            assert!(matches!(l.observe(&f, false), CanarySighting::Forged(_)));
        }
    }
}
