//! The gateway side of leaktest: what each outbound frame is and what a watch
//! concludes from all of them. Pure (no capture I/O, no clocks except the
//! pcapng statistics timestamps); the watch session drives it.
//!
//! * [`classify`]: probe leak / canary / Tor / housekeeping / leak, per frame.
//! * [`findings`]: counts, the first leaked packets in detail, leak groups.
//! * [`verdict`]: capture health and the PASS / LEAK / INCONCLUSIVE rules.
//! * [`report`]: terminal, JSON and JUnit reports.
//! * [`pcapng`]: streaming pcapng writer with interface statistics.
//! * [`session`]: the watch session, the one module that does I/O: capture,
//!   canaries, Tor allowlist feed, health, live output.

pub mod classify;
pub mod findings;
pub mod pcapng;
pub mod report;
pub mod session;
pub mod verdict;

#[cfg(test)]
mod testutil;

pub use classify::{
    Class, Classifier, ClassifierConfig, HousekeepingKind, Leak, LeakCause, LeakFamily,
    TorEndpoints,
};
pub use findings::{Findings, LeakGroup, LeakRecord, PortSet};
pub use leaktest_capture::{CaptureStats, Frame, CANARY_ETHERTYPE};
pub use leaktest_wire::{Attribution, Evidence, LinkType};
pub use pcapng::PcapngWriter;
pub use report::{Report, ReportError};
pub use verdict::{CaptureHealth, Verdict};
