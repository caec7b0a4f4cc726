//! One captured frame, as the capture hands it to the classifier.

/// One captured frame, borrowed from wherever it was captured into (a
/// capture ring, a pcap file, a test's buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Capture time, seconds since the Unix epoch.
    pub ts_sec: u64,
    /// Capture time, nanoseconds within the second.
    pub ts_nsec: u32,
    /// The captured bytes (at most the capture's snap length).
    pub data: &'a [u8],
    /// The frame's length on the wire (may exceed `data.len()`).
    pub orig_len: u32,
}

impl<'a> Frame<'a> {
    /// A frame captured whole at time 0 (tests, tools).
    pub fn whole(data: &'a [u8]) -> Frame<'a> {
        Frame {
            ts_sec: 0,
            ts_nsec: 0,
            data,
            orig_len: data.len() as u32,
        }
    }

    /// Capture time in nanoseconds since the Unix epoch.
    pub fn ts_ns(&self) -> u64 {
        self.ts_sec
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(self.ts_nsec))
    }

    /// Whether the capture kept fewer bytes than were on the wire.
    pub fn truncated(&self) -> bool {
        (self.data.len() as u64) < u64::from(self.orig_len)
    }
}

/// Kernel packet counters of a capture, running totals since it was opened.
///
/// On Linux they come from `PACKET_STATISTICS` (through `pcap_stats`): a
/// frame is counted only once it passed the capture's filter (so only
/// outbound frames here), and `received` includes the dropped ones (the
/// kernel adds `tp_drops` to `tp_packets`: `net/packet/af_packet.c`,
/// `packet_getsockopt`). `if_dropped` is filled only in promiscuous mode,
/// hence usually 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CaptureStats {
    /// Packets that passed the filter (delivered or dropped).
    pub received: u64,
    /// Packets the kernel dropped because the ring was full.
    pub dropped: u64,
    /// Packets the interface driver dropped.
    pub if_dropped: u64,
}
