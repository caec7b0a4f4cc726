//! Canary frames: the watcher's proof that its capture sees what leaves.
//!
//! The watcher sends a harmless Ethernet frame on the captured interface at
//! the start, periodically and at the end, and requires its own capture to
//! see every one. A canary goes out through an `AF_PACKET` socket *without*
//! `PACKET_QDISC_BYPASS`, so it passes the same transmit path (qdisc, the
//! taps) as every other outgoing frame and the capture sees it as outbound.
//!
//! Frame layout (64 bytes, integers big-endian):
//!
//! | bytes  | field                                                   |
//! |--------|---------------------------------------------------------|
//! | 0..6   | destination [`CANARY_DST_MAC`] (locally administered, unicast) |
//! | 6..12  | source: the interface's own MAC                         |
//! | 12..14 | EtherType [`CANARY_ETHERTYPE`] (IEEE local experimental) |
//! | 14..22 | [`CANARY_MAGIC`]                                        |
//! | 22..30 | session nonce (random per watch)                        |
//! | 30..38 | counter                                                 |
//! | 38..46 | tag = SipHash-2-4(session key, bytes 14..38)            |
//! | 46..64 | the text `leaktest canary v1`                           |
//!
//! The session key is random and never leaves the process, so no other frame
//! (another watcher's canaries, a replay, random traffic) is taken for one of
//! this session's canaries.

use siphasher::sip::SipHasher24;
use std::collections::BTreeMap;
use std::hash::Hasher;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// EtherType of canary frames: IEEE 802 local experimental EtherType 1.
pub const CANARY_ETHERTYPE: u16 = 0x88B5;
/// Destination of canary frames: a locally administered unicast address
/// that no real station owns, so every receiver drops them.
pub const CANARY_DST_MAC: [u8; 6] = [0x02, 0x6c, 0x6b, 0x74, 0x63, 0x79];
/// First payload bytes of a canary.
pub const CANARY_MAGIC: [u8; 8] = *b"LkTCnry1";
/// Length of a canary frame.
pub const CANARY_FRAME_LEN: usize = 64;
const TEXT: &[u8; 18] = b"leaktest canary v1";

/// Why canaries could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error("interface {0} has no Ethernet address")]
    NoMac(String),
    #[error("canary socket on {iface}: {source}")]
    Socket { iface: String, source: io::Error },
    #[error("sending canary {id} on {iface}: {source}")]
    Send {
        iface: String,
        id: u64,
        source: io::Error,
    },
}

/// What a captured frame is, as far as canaries go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanarySighting {
    /// Not a canary frame (another EtherType or no canary magic).
    NotCanary,
    /// One of this session's canaries, first sighting.
    Ours(u64),
    /// One of this session's canaries seen again.
    Duplicate(u64),
    /// A frame that looks like a canary but is not one of this session's
    /// (another watcher, a forgery, a replay from an earlier session).
    Foreign,
}

/// The canaries of one watch session: their key, which were sent, which seen.
#[derive(Clone)]
pub struct Canary {
    key: [u8; 16],
    nonce: u64,
    src: [u8; 6],
    next: u64,
    outstanding: BTreeMap<u64, Instant>,
    seen: u64,
    duplicates: u64,
    foreign: u64,
}

impl std::fmt::Debug for Canary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canary")
            .field("nonce", &format_args!("{:016x}", self.nonce))
            .field("sent", &self.next)
            .field("seen", &self.seen)
            .finish()
    }
}

impl Canary {
    /// A new session with a random key and nonce, sending from `src`.
    pub fn new(src: [u8; 6]) -> io::Result<Canary> {
        let mut key = [0u8; 16];
        getrandom::fill(&mut key).map_err(|e| io::Error::other(e.to_string()))?;
        let nonce = getrandom::u64().map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Canary::with_key(src, key, nonce))
    }

    /// A session with a given key and nonce (tests).
    pub fn with_key(src: [u8; 6], key: [u8; 16], nonce: u64) -> Canary {
        Canary {
            key,
            nonce,
            src,
            next: 0,
            outstanding: BTreeMap::new(),
            seen: 0,
            duplicates: 0,
            foreign: 0,
        }
    }

    fn tag(&self, head: &[u8]) -> u64 {
        let mut h = SipHasher24::new_with_key(&self.key);
        h.write(head);
        h.finish()
    }

    /// The frame of canary `id`.
    pub fn frame(&self, id: u64) -> [u8; CANARY_FRAME_LEN] {
        let mut f = [0u8; CANARY_FRAME_LEN];
        f[0..6].copy_from_slice(&CANARY_DST_MAC);
        f[6..12].copy_from_slice(&self.src);
        f[12..14].copy_from_slice(&CANARY_ETHERTYPE.to_be_bytes());
        f[14..22].copy_from_slice(&CANARY_MAGIC);
        f[22..30].copy_from_slice(&self.nonce.to_be_bytes());
        f[30..38].copy_from_slice(&id.to_be_bytes());
        let tag = self.tag(&f[14..38]);
        f[38..46].copy_from_slice(&tag.to_be_bytes());
        f[46..64].copy_from_slice(TEXT);
        f
    }

    /// Takes the next canary id and its frame; the id counts as sent once
    /// [`Canary::mark_sent`] is called.
    pub fn next_frame(&mut self) -> (u64, [u8; CANARY_FRAME_LEN]) {
        let id = self.next;
        (id, self.frame(id))
    }

    /// Records canary `id` (from [`Canary::next_frame`]) as sent at `at`.
    pub fn mark_sent(&mut self, id: u64, at: Instant) {
        if id == self.next {
            self.next += 1;
            self.outstanding.insert(id, at);
        }
    }

    /// Whether `frame` has the canary EtherType (cheap pre-check).
    pub fn has_canary_ethertype(frame: &[u8]) -> bool {
        frame.get(12..14) == Some(&CANARY_ETHERTYPE.to_be_bytes()[..])
    }

    /// Looks at a captured Ethernet frame and records it if it is one of
    /// this session's canaries. Never panics.
    pub fn observe(&mut self, frame: &[u8]) -> CanarySighting {
        if !Canary::has_canary_ethertype(frame) {
            return CanarySighting::NotCanary;
        }
        let Some(body) = frame.get(14..46) else {
            return CanarySighting::NotCanary;
        };
        if body[0..8] != CANARY_MAGIC {
            return CanarySighting::NotCanary;
        }
        let nonce = u64::from_be_bytes(body[8..16].try_into().unwrap_or_default());
        let id = u64::from_be_bytes(body[16..24].try_into().unwrap_or_default());
        let tag = u64::from_be_bytes(body[24..32].try_into().unwrap_or_default());
        if nonce != self.nonce || tag != self.tag(&body[0..24]) || id >= self.next {
            self.foreign += 1;
            return CanarySighting::Foreign;
        }
        if self.outstanding.remove(&id).is_some() {
            self.seen += 1;
            CanarySighting::Ours(id)
        } else {
            self.duplicates += 1;
            CanarySighting::Duplicate(id)
        }
    }

    /// Canaries sent so far.
    pub fn sent(&self) -> u64 {
        self.next
    }
    /// Distinct canaries seen so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }
    /// Repeated sightings of canaries already seen.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
    /// Frames that looked like canaries but were not this session's.
    pub fn foreign(&self) -> u64 {
        self.foreign
    }
    /// Ids sent and not (yet) seen.
    pub fn missing(&self) -> Vec<u64> {
        self.outstanding.keys().copied().collect()
    }
    /// Ids sent before `now - age` and still not seen.
    pub fn overdue(&self, now: Instant, age: Duration) -> Vec<u64> {
        self.outstanding
            .iter()
            .filter(|(_, &t)| now.saturating_duration_since(t) >= age)
            .map(|(&id, _)| id)
            .collect()
    }
    /// Gives up on canaries sent before `now - age`: they stay counted as
    /// sent and not seen, but are no longer tracked (bounded memory when the
    /// capture is blind for a long time). Returns how many were dropped.
    pub fn forget_overdue(&mut self, now: Instant, age: Duration) -> usize {
        let before = self.outstanding.len();
        self.outstanding
            .retain(|_, t| now.saturating_duration_since(*t) < age);
        before - self.outstanding.len()
    }
}

/// An `AF_PACKET` socket that sends canary frames on one interface.
#[derive(Debug)]
pub struct CanaryInjector {
    fd: OwnedFd,
    iface: String,
    ifindex: u32,
    mac: [u8; 6],
}

impl CanaryInjector {
    /// Opens the socket on `iface` (needs root or CAP_NET_RAW).
    pub fn open(iface: &str) -> Result<CanaryInjector, CanaryError> {
        let info = crate::iface::IfaceInfo::read(iface)
            .ok_or_else(|| CanaryError::NoSuchInterface(iface.to_string()))?;
        let mac = info
            .mac
            .ok_or_else(|| CanaryError::NoMac(iface.to_string()))?;
        // Protocol 0: this socket receives nothing, it only sends.
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(CanaryError::Socket {
                iface: iface.to_string(),
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(CanaryInjector {
            fd,
            iface: iface.to_string(),
            ifindex: info.ifindex,
            mac,
        })
    }

    /// The interface's MAC (the canaries' source address).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Sends one raw Ethernet frame on the interface.
    pub fn send_frame(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = CANARY_ETHERTYPE.to_be();
        sll.sll_ifindex = self.ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&CANARY_DST_MAC);
        // SAFETY: buffer and address are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != frame.len() {
            return Err(io::Error::other("short send"));
        }
        Ok(())
    }

    /// Sends the next canary of `canary` and records it as sent.
    pub fn send_next(&self, canary: &mut Canary, now: Instant) -> Result<u64, CanaryError> {
        let (id, frame) = canary.next_frame();
        self.send_frame(&frame)
            .map_err(|source| CanaryError::Send {
                iface: self.iface.clone(),
                id,
                source,
            })?;
        canary.mark_sent(id, now);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

    #[test]
    fn frame_layout() {
        let c = Canary::with_key(SRC, [9; 16], 0x1122334455667788);
        let f = c.frame(5);
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
    }

    #[test]
    fn tracks_sent_seen_and_missing() {
        let mut c = Canary::with_key(SRC, [1; 16], 7);
        let t0 = Instant::now();
        let mut frames = vec![];
        for _ in 0..4 {
            let (id, f) = c.next_frame();
            c.mark_sent(id, t0);
            frames.push(f);
        }
        assert_eq!(c.sent(), 4);
        assert_eq!(c.observe(&frames[0]), CanarySighting::Ours(0));
        assert_eq!(c.observe(&frames[2]), CanarySighting::Ours(2));
        assert_eq!(c.observe(&frames[2]), CanarySighting::Duplicate(2));
        assert_eq!((c.seen(), c.duplicates()), (2, 1));
        assert_eq!(c.missing(), vec![1, 3]);
        assert_eq!(c.overdue(t0, Duration::from_secs(1)), Vec::<u64>::new());
        assert_eq!(
            c.overdue(t0 + Duration::from_secs(2), Duration::from_secs(1)),
            vec![1, 3]
        );
        assert_eq!(
            c.forget_overdue(t0 + Duration::from_secs(2), Duration::from_secs(1)),
            2
        );
        assert_eq!((c.sent(), c.seen()), (4, 2));
    }

    #[test]
    fn other_sessions_and_forgeries_are_foreign() {
        let mut mine = Canary::with_key(SRC, [1; 16], 7);
        let (id, f) = mine.next_frame();
        mine.mark_sent(id, Instant::now());
        // Same nonce, other key: a forgery.
        let other = Canary::with_key(SRC, [2; 16], 7);
        assert_eq!(mine.observe(&other.frame(0)), CanarySighting::Foreign);
        // Another session.
        let other = Canary::with_key(SRC, [1; 16], 8);
        assert_eq!(mine.observe(&other.frame(0)), CanarySighting::Foreign);
        // Not yet sent.
        assert_eq!(mine.observe(&mine.frame(1)), CanarySighting::Foreign);
        // Any flipped bit in the authenticated part.
        for bit in 14 * 8..46 * 8 {
            let mut g = f;
            g[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(mine.observe(&g), CanarySighting::Ours(0), "bit {bit}");
        }
        assert_eq!(mine.observe(&f), CanarySighting::Ours(0));
    }

    #[test]
    fn never_panics_on_short_or_odd_frames() {
        let mut c = Canary::with_key(SRC, [1; 16], 7);
        for len in 0..80 {
            let mut f = vec![0u8; len];
            if len >= 14 {
                f[12..14].copy_from_slice(&CANARY_ETHERTYPE.to_be_bytes());
            }
            if len >= 22 {
                f[14..22].copy_from_slice(&CANARY_MAGIC);
            }
            let s = c.observe(&f);
            assert!(matches!(
                s,
                CanarySighting::NotCanary | CanarySighting::Foreign
            ));
        }
    }
}
