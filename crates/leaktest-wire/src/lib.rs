//! Pure packet logic for leaktest: no sockets, no capture, no clocks.
//!
//! * [`catalogue`]: every probe leaktest can send ([`ProbeSpec`]), numbered
//!   so that a probe's sequence number alone says what it was.
//! * [`marker`]: the authenticated marker each probe carries, in its payload
//!   and in header fields, and the per-run key ([`RunKey`]) that signs it.
//!
//! * [`build`]: probe frames built from prebuilt templates ([`ProbeBuilder`]).
//! * [`decode`]: the frame summary ([`FrameSummary`]) a classifier needs and
//!   the decoder ([`attribute`]) that names the probe a captured frame came from.

pub mod build;
pub mod catalogue;
pub mod decode;
pub mod marker;

pub use build::{Endpoints, ProbeBuilder, L2, MAX_PROBE_FRAME};
pub use catalogue::{Family, FragKind, ProbeKind, ProbeSpec, Suite, TcpFlags};
pub use decode::{
    attribute, attribute_parsed, Attribution, Evidence, FrameSummary, IpFields, LinkType,
};
pub use marker::{Marker, MarkerKeys, RunKey};
