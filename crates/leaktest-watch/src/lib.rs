//! The gateway side of leaktest: what each outbound frame is and what a watch
//! concludes from all of them. Everything but [`session`] is pure (no
//! capture, no clocks except the pcapng statistics timestamps) and builds
//! without libpcap (`default-features = false`): the lab reads the watcher's
//! typed report with it.
//!
//! * [`classify`]: an ordered table of named rules decides each frame
//!   (probe, canary, Tor, allowed, housekeeping, leak); the Tor flow judge,
//!   housekeeping by content, `--allow` entries.
//! * [`findings`]: counts per class and rule, the first leaked packets in
//!   detail, leak groups, every probe of each run seen.
//! * [`verdict`]: capture health, accounting, and the PASS / LEAK /
//!   INCONCLUSIVE rules.
//! * [`report`]: the typed [`WatchReport`] and its JSON, terminal and JUnit forms.
//! * [`pcapng`]: streaming pcapng writer with interface statistics.
//! * [`timeline`]: events (`--run-at`, `--event-fifo`) and the leaks and
//!   verdict of each phase between them.
//! * [`session`] (feature `session`, on by default): the watch session, the
//!   one module that does I/O: capture, canaries, Tor allowlist feed,
//!   health, live output.

pub mod classify;
pub mod findings;
pub mod hold;
pub mod pcapng;
pub mod report;
#[cfg(feature = "session")]
pub mod session;
pub mod timeline;
pub mod verdict;

#[cfg(test)]
mod testutil;

pub use classify::allow::{
    parse_allow, parse_allow_list, parse_allow_net, AllowEntry, AllowKind, AllowSpec,
};
pub use classify::flows::{Cleartext, FlowStats, Violation};
pub use classify::housekeeping::HousekeepingKind;
pub use classify::{
    Class, Classifier, ClassifierConfig, Decision, Leak, LeakCause, LeakFamily, Rule, RULES,
};
pub use findings::{Findings, LeakGroup, LeakRecord, PortSet};
pub use leaktest_wire::{Attribution, CaptureStats, Evidence, Frame, LinkType};
pub use pcapng::PcapngWriter;
pub use report::{ReportError, WatchOutcome, WatchReport};
pub use verdict::{Accounting, CaptureHealth, Verdict};
