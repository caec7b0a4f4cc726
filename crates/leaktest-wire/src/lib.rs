//! Pure packet logic for leaktest: no sockets, no capture, no clocks.
//!
//! * [`hdr`]: the layout of every header leaktest builds, decodes or judges
//!   (named field offsets), and [`IpProtocol`].
//! * [`catalogue`]: every probe leaktest can send ([`ProbeSpec`]), numbered
//!   so that a probe's sequence number alone says what it was.
//! * [`marker`]: the authenticated marker each probe carries, in its payload
//!   and in header fields, and the per-run key ([`RunKey`]) that signs it.
//! * [`build`]: probe frames built from prebuilt templates ([`ProbeBuilder`]);
//!   [`compose`]: the evasion suites' probes, composed header by header.
//! * [`decode`]: the frame summary ([`FrameSummary`]) a classifier needs and
//!   the decoder that names the probe a captured frame came from
//!   ([`attribute_payload`], [`attribute_headers`]).
//! * [`canary`]: the canary frames a watcher injects to prove its capture
//!   sees, and the ledger that judges every frame of their EtherType.
//! * [`frame`]: one captured [`Frame`].
//! * [`pulse`]: the compact probe set `leaktest probe --duration` sends
//!   every round.

pub mod build;
pub mod canary;
pub mod catalogue;
pub mod compose;
pub mod decode;
pub mod frame;
pub mod hdr;
pub mod marker;
pub mod pulse;

pub use build::{Endpoints, Neighbourhood, ProbeBuilder, L2, MAX_PROBE_FRAME};
pub use canary::{
    CanaryKey, CanaryLedger, CanarySighting, Forgery, CANARY_DST_MAC, CANARY_ETHERTYPE,
    CANARY_FRAME_LEN,
};
pub use catalogue::{Family, FragKind, ProbeKind, ProbeSpec, Suite, TcpFlags};
pub use decode::{
    attribute, attribute_headers, attribute_payload, target_of, ArpFields, Attribution, Evidence,
    FrameSummary, IpFields, LinkType,
};
pub use frame::{CaptureStats, Frame};
pub use hdr::IpProtocol;
pub use marker::{Marker, MarkerKeys, RunKey};
