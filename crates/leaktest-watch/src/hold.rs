//! Frames held back for a moment: TCP from the gateway to an endpoint the
//! Tor allowlist does not know yet.
//!
//! A bootstrapping tor learns its guards from the consensus it has just
//! fetched and connects to one at once. It announces the consensus on its
//! control port (`NEWCONSENSUS`), and the watcher's allowlist feed asks for
//! it (`GETINFO ns/all`), but the connection's first segments can reach the
//! capture before the refreshed allowlist reaches the classifier (measured
//! in the lab: a guard's SYN and eleven more frames judged "unexpected"
//! while the refresh was on its way). So a TCP frame that would be an
//! unexpected leak, while a control-port feed is live, waits here: when a
//! refresh puts its endpoint in the allowlist *from the consensus*
//! (`Roles::IN_CONSENSUS`: signed by the directory authorities) it is
//! judged again (as Tor, its flow followed from the first segment held),
//! and when [`HOLD_MAX`] passes without one it is judged as it is (a leak,
//! with its capture time). An endpoint added by configuration (a `Bridge`,
//! `FallbackDir` or proxy set over the control port after the frame left)
//! approves nothing after the fact: found by a fresh-eyes test, where a
//! root process sent a TLS ClientHello to a web server and then set it as
//! a `Bridge`. Later frames to a held endpoint wait behind it, so a flow is
//! judged in order.
//!
//! Nothing is hidden: every held frame is judged before the watch ends,
//! with the capture time it had; at most [`MAX_HELD_FRAMES`] wait (beyond
//! that a frame is judged at once, as before).

use leaktest_wire::Frame;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Longest a frame waits for an allowlist refresh. A refresh follows tor's
/// event within milliseconds (a control-port round trip and a parse: 10.8
/// ms for 8,000 relays, `benches/allowlist.rs`); a sandboxed reader gets it
/// at its next health check (250 ms).
pub const HOLD_MAX: Duration = Duration::from_secs(3);

/// Most frames held at once (a connection's handshake is a handful).
pub const MAX_HELD_FRAMES: usize = 4096;
/// Most captured bytes held at once.
pub const MAX_HELD_BYTES: usize = 8 << 20;
/// Most endpoints remembered as having waited in vain (their later frames
/// are judged at once: they already had their chance).
pub const MAX_EXPIRED: usize = 4096;

/// One held frame, owned.
#[derive(Clone, Debug)]
pub struct HeldFrame {
    pub ts_sec: u64,
    pub ts_nsec: u32,
    pub orig_len: u32,
    pub data: Vec<u8>,
    /// Its destination (address and TCP port).
    pub endpoint: SocketAddr,
    since: Instant,
    /// Set on release: whether the consensus approved its endpoint (judge
    /// it with the allowlist now) or its wait ended (judge it as it was
    /// when it left: no Tor endpoint approved it).
    pub approved: bool,
}

impl HeldFrame {
    /// The frame as captured.
    pub fn frame(&self) -> Frame<'_> {
        Frame {
            ts_sec: self.ts_sec,
            ts_nsec: self.ts_nsec,
            data: &self.data,
            orig_len: self.orig_len,
        }
    }
}

/// The frames waiting, in capture order.
#[derive(Debug, Default)]
pub struct Hold {
    frames: VecDeque<HeldFrame>,
    by_endpoint: HashMap<SocketAddr, usize>,
    bytes: usize,
    /// Endpoints whose frames waited [`HOLD_MAX`] and were judged as they
    /// were: not held again.
    expired: HashSet<SocketAddr>,
    /// Frames ever held.
    pub held: u64,
}

impl Hold {
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether frames to `endpoint` are waiting (a later one waits too).
    pub fn holds(&self, endpoint: &SocketAddr) -> bool {
        self.by_endpoint.contains_key(endpoint)
    }

    /// Whether a frame of `len` bytes fits.
    pub fn has_room(&self, len: usize) -> bool {
        self.frames.len() < MAX_HELD_FRAMES && self.bytes + len <= MAX_HELD_BYTES
    }

    /// Whether a frame to `endpoint` of `len` bytes may wait: there is
    /// room, and the endpoint has not waited in vain before.
    pub fn may_hold(&self, endpoint: &SocketAddr, len: usize) -> bool {
        self.has_room(len) && !self.expired.contains(endpoint)
    }

    /// Holds a copy of `f`, going to `endpoint`, from `now`.
    pub fn push(&mut self, f: &Frame<'_>, endpoint: SocketAddr, now: Instant) {
        self.frames.push_back(HeldFrame {
            ts_sec: f.ts_sec,
            ts_nsec: f.ts_nsec,
            orig_len: f.orig_len,
            data: f.data.to_vec(),
            endpoint,
            since: now,
            approved: false,
        });
        self.bytes += f.data.len();
        *self.by_endpoint.entry(endpoint).or_default() += 1;
        self.held += 1;
    }

    /// When the oldest frame's wait ends ([`HOLD_MAX`] after it was held).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.frames.front().map(|h| h.since + HOLD_MAX)
    }

    /// Takes the frames to judge now, in capture order: every frame to an
    /// endpoint that `known` approves ([`HeldFrame::approved`]), every frame
    /// to an endpoint whose first held frame has waited [`HOLD_MAX`], or
    /// (`all`) every frame.
    pub fn release(
        &mut self,
        known: impl Fn(&SocketAddr) -> bool,
        now: Instant,
        all: bool,
    ) -> Vec<HeldFrame> {
        if self.frames.is_empty() {
            return Vec::new();
        }
        let mut first_held: HashMap<SocketAddr, Instant> = HashMap::new();
        for h in &self.frames {
            first_held.entry(h.endpoint).or_insert(h.since);
        }
        let mut go: HashSet<SocketAddr> = HashSet::new();
        let mut approved: HashSet<SocketAddr> = HashSet::new();
        for (ep, since) in first_held {
            if known(&ep) {
                go.insert(ep);
                approved.insert(ep);
            } else if all || now.duration_since(since) >= HOLD_MAX {
                go.insert(ep);
                if self.expired.len() < MAX_EXPIRED {
                    self.expired.insert(ep);
                }
            }
        }
        if go.is_empty() {
            return Vec::new();
        }
        let (out, keep): (VecDeque<HeldFrame>, VecDeque<HeldFrame>) =
            std::mem::take(&mut self.frames)
                .into_iter()
                .partition(|h| go.contains(&h.endpoint));
        self.frames = keep;
        self.bytes = self.frames.iter().map(|h| h.data.len()).sum();
        for ep in &go {
            self.by_endpoint.remove(ep);
        }
        out.into_iter()
            .map(|mut h| {
                h.approved = approved.contains(&h.endpoint);
                h
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, 21], port))
    }

    #[test]
    fn frames_wait_until_known_or_too_long_and_leave_in_order() {
        let t0 = Instant::now();
        let mut h = Hold::default();
        for (i, port) in [5555u16, 9001, 5555, 5555].into_iter().enumerate() {
            let data = [i as u8; 4];
            let f = Frame {
                ts_sec: 100 + i as u64,
                ts_nsec: 7,
                data: &data,
                orig_len: 60,
            };
            h.push(&f, ep(port), t0 + Duration::from_millis(i as u64 * 10));
        }
        assert!(h.holds(&ep(5555)) && h.holds(&ep(9001)) && !h.holds(&ep(443)));
        // Nothing known, not long enough: all stay.
        assert!(h
            .release(|_| false, t0 + Duration::from_secs(1), false)
            .is_empty());
        assert_eq!(h.len(), 4);
        // The guard became known: its three frames leave, in capture order,
        // with their capture times and bytes.
        let out = h.release(|e| *e == ep(5555), t0 + Duration::from_secs(1), false);
        let secs: Vec<u64> = out.iter().map(|f| f.ts_sec).collect();
        assert_eq!(secs, [100, 102, 103]);
        assert!(out.iter().all(|f| f.approved));
        assert_eq!(out[1].frame().data, &[2u8; 4]);
        assert_eq!(out[1].frame().orig_len, 60);
        assert!(!h.holds(&ep(5555)) && h.holds(&ep(9001)));
        // The other waits HOLD_MAX, then leaves as it is.
        assert!(h.release(|_| false, t0 + HOLD_MAX, false).is_empty());
        let out = h.release(|_| false, t0 + HOLD_MAX + Duration::from_millis(10), false);
        assert_eq!(out.len(), 1);
        assert!(!out[0].approved);
        assert!(h.is_empty() && h.next_deadline().is_none());
        assert_eq!(h.held, 4);
        // It waited in vain: its later frames are judged at once; the
        // guard, released because it became known, may wait again.
        assert!(!h.may_hold(&ep(9001), 60));
        assert!(h.may_hold(&ep(5555), 60));
    }

    #[test]
    fn everything_leaves_at_the_end_and_room_is_bounded() {
        let t0 = Instant::now();
        let mut h = Hold::default();
        let data = [0u8; 60];
        for i in 0..MAX_HELD_FRAMES {
            assert!(h.may_hold(&ep(i as u16), data.len()));
            h.push(&Frame::whole(&data), ep(i as u16), t0);
        }
        assert!(!h.may_hold(&ep(1), data.len()));
        assert_eq!(h.next_deadline(), Some(t0 + HOLD_MAX));
        assert_eq!(h.release(|_| false, t0, true).len(), MAX_HELD_FRAMES);
        assert!(h.is_empty() && h.may_hold(&ep(60000), data.len()));
        // Bytes are bounded too.
        let big = vec![0u8; MAX_HELD_BYTES / 2 + 1];
        h.push(&Frame::whole(&big), ep(60000), t0);
        assert!(!h.may_hold(&ep(60000), big.len()));
    }
}
