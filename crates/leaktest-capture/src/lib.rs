//! Capture of outbound frames with libpcap (TPACKET_V3 ring, kernel-side
//! direction), kernel drop counters, and canary frames that prove the capture
//! sees.
//!
//! * [`live`]: [`LiveCapture`] opens an interface the way a leak watcher needs
//!   it: a large buffer so libpcap maps a TPACKET_V3 ring (no immediate mode,
//!   which falls back to TPACKET_V2), a read timeout so the drain loop wakes
//!   up regularly, and the direction decided by the kernel with `outbound` in
//!   the BPF program. [`LiveCapture::drain`] hands out borrowed [`Frame`]s
//!   straight from the ring, without copying.
//! * [`canary`]: harmless Ethernet frames of EtherType [`CANARY_ETHERTYPE`]
//!   that the watcher sends on the interface and must see in its own capture;
//!   [`Canary`] keeps track of sent, seen and missing ones.
//! * [`iface`]: [`IfaceMonitor`] notices the interface going down or away.
//!
//! What is truncated: every frame is captured up to [`DEFAULT_SNAPLEN`] bytes
//! (configurable). Every probe frame is far shorter; longer frames are TCP
//! segmentation-offload super-frames (up to 64 KiB) and jumbo frames, whose
//! headers and first payload bytes are kept and whose real length is in
//! [`Frame::orig_len`].

pub mod canary;
pub mod iface;
pub mod live;

pub use canary::{Canary, CanaryError, CanaryInjector, CANARY_DST_MAC, CANARY_ETHERTYPE};
pub use iface::{addresses as iface_addresses, IfaceInfo, IfaceMonitor};
pub use live::{CaptureConfig, LiveCapture, DEFAULT_BUFFER_BYTES, DEFAULT_SNAPLEN};

/// One captured frame, borrowed from the capture ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Capture time, seconds since the Unix epoch.
    pub ts_sec: u64,
    /// Capture time, nanoseconds within the second.
    pub ts_nsec: u32,
    /// The captured bytes (at most the snap length).
    pub data: &'a [u8],
    /// The frame's length on the wire (may exceed `data.len()`).
    pub orig_len: u32,
}

/// Kernel packet counters of a capture, running totals since it was opened.
///
/// On Linux they come from `PACKET_STATISTICS` through `pcap_stats`: they
/// count only packets that passed the BPF filter (so only outbound frames
/// here). `if_dropped` is filled only in promiscuous mode, hence usually 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Packets that passed the filter (captured or dropped).
    pub received: u64,
    /// Packets the kernel dropped because the ring was full.
    pub dropped: u64,
    /// Packets the interface driver dropped.
    pub if_dropped: u64,
}

/// Why a capture could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error("capturing on {iface} needs root or CAP_NET_RAW ({msg})")]
    Permission { iface: String, msg: String },
    #[error("interface {iface} has link type {dlt}; only Ethernet interfaces are supported")]
    UnsupportedLink { iface: String, dlt: i32 },
    #[error("libpcap on {iface}: {msg}")]
    Pcap { iface: String, msg: String },
}
