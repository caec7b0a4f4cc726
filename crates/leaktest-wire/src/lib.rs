//! Pure packet logic for leaktest: no sockets, no capture, no clocks.
//!
//! * [`catalogue`]: every probe leaktest can send ([`ProbeSpec`]), numbered
//!   so that a probe's sequence number alone says what it was.
//! * [`marker`]: the authenticated marker each probe carries, in its payload
//!   and in header fields, and the per-run key ([`RunKey`]) that signs it.
//!
//! The probe builders and the frame decoder build on these two modules.

pub mod catalogue;
pub mod marker;

pub use catalogue::{Family, ProbeSpec, Suite, TcpFlags};
pub use marker::{Marker, MarkerKeys, RunKey};
