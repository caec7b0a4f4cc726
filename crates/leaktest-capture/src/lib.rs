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
//! * [`canary`]: sends the harmless Ethernet frames of EtherType
//!   [`CANARY_ETHERTYPE`] that the watcher must see in its own capture (their
//!   format and the [`CanaryLedger`] of sent and seen ones are
//!   `leaktest_wire::canary`'s).
//! * [`iface`]: [`IfaceMonitor`] notices the interface going down, away,
//!   or being re-created (which the capture follows, [`LiveCapture::rebind`]).
//!
//! What is truncated: every frame is captured up to [`DEFAULT_SNAPLEN`] bytes
//! (configurable). Every probe frame is far shorter; longer frames are TCP
//! segmentation-offload super-frames (up to 64 KiB) and jumbo frames, whose
//! headers and first payload bytes are kept and whose real length is in
//! [`Frame::orig_len`].

pub mod canary;
pub mod iface;
pub mod live;

pub use canary::{new_ledger, CanaryError, CanaryInjector};
pub use iface::{
    addresses as iface_addresses, link_routes, networks as iface_networks, IfaceChange, IfaceInfo,
    IfaceMonitor, LinkRoutes,
};
pub use leaktest_wire::canary::{CanaryLedger, CANARY_DST_MAC, CANARY_ETHERTYPE};
pub use leaktest_wire::{CaptureStats, Frame};
pub use live::{CaptureConfig, LiveCapture, DEFAULT_BUFFER_BYTES, DEFAULT_SNAPLEN};

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
