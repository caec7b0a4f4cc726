//! leaktest lab: an isolated Whonix-style lab in network namespaces, with a
//! private Tor network, a real tor gateway, and broken gateway profiles.
//!
//! Layout: [`plan`] fixes addresses and names; [`sys`] runs things inside
//! namespaces and tracks processes by PID; [`topology`] builds `ws`, `gw` and
//! `net`; [`tornet`] makes the private Tor network; [`gateway`] runs the
//! gateway's tor.

pub mod expect;
pub mod gateway;
pub mod html;
pub mod lab;
pub mod plan;
pub mod profiles;
pub mod ruleset;
pub mod servers;
pub mod state;
pub mod suite;
pub mod sys;
pub mod topology;
pub mod tornet;
pub mod transition;

/// Everything that can go wrong while building or running the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{0} failed: {1}")]
    Command(String, String),
    #[error("network namespace {0}: {1}")]
    Netns(String, String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("tor: {0}")]
    Tor(String),
    #[error("missing {0}")]
    Missing(String),
    #[error("injected failure at phase {0} (LEAKTEST_LAB_FAIL_AT)")]
    Injected(String),
    #[error("the gateway does not work: {0}")]
    GatewayBroken(String),
    #[error("interrupted")]
    Interrupted,
    #[error("a lab process died: {0}")]
    Died(String),
}
