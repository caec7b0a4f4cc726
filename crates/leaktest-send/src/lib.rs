//! The probe sender: everything between a planned probe and the wire.
//!
//! * [`path`]: target sanity checks, and where packets to a target go (egress
//!   interface, source address, next hop and its MAC) from the kernel's
//!   routing and neighbour tables over rtnetlink ([`netlink`]).
//! * [`finrst`]: the FIN/RST check's client (`leaktest fin-rst`): real TCP
//!   connections through the transparent proxy, ended after a change.
//! * [`hop`]: the first-hop check (is the target the first router itself?).
//! * [`socket`]: the AF_PACKET ([`PacketSender`]) and raw IP
//!   ([`RawIpSender`]) senders, both batching with `sendmmsg`.
//! * [`rate`]: the token-bucket rate limiter and `--rate` parsing.
//! * [`pulse`]: the pulse driver (`--duration`): a compact probe set every
//!   interval, each round's markers naming the round.
//! * [`run`]: the run driver that builds every planned probe into reused
//!   buffers and sends it, with counts per family and suite.
//! * [`session`]: a whole probe run as the command line and the lab drive
//!   it: paths resolved, senders opened, the plan sent, the typed JSON
//!   report ([`ProbeReport`]).
//!
//! Everything works in the calling thread's network namespace, which is how
//! tests drive it inside namespaces of their own.

pub mod finrst;
pub mod hop;
pub mod netlink;
pub mod path;
pub mod pulse;
pub mod rate;
pub mod run;
pub mod session;
pub mod socket;

pub use path::{lookup_path, MacPair, Path, PathOptions};
pub use rate::{Rate, RateLimiter};
pub use run::{run, Lane, Plan, ProbeWriter, Progress, RunConfig, RunFailure, RunStats};
pub use session::{
    prepare, Prepared, ProbeOutcome, ProbeReport, ProbeRequest, SocketKind, Uplinks,
};
pub use socket::{Batch, FrameSender, PacketSender, RawIpSender, SendOutcome};

use std::net::IpAddr;

/// Errors of the sender. Messages are one line and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadTarget(String),
    #[error("no route to {target}: {why}")]
    NoRoute { target: IpAddr, why: String },
    #[error("target {0} is an address of this host: probes must leave through the gateway")]
    LocalTarget(IpAddr),
    #[error(
        "target {target} is on the link of {iface}, reached directly and not through a gateway, so \
         its probes cannot show what a gateway forwards (the gateway's own address is such a \
         target): give an address beyond the gateway, not one on the link of {iface}, or \
         --on-link if you mean to probe a host on this link"
    )]
    OnLinkTarget { target: IpAddr, iface: String },
    #[error(
        "target {target} is the first hop: {answer}. It is the gateway itself (another of its \
         addresses), so probes to it are delivered to the gateway and never forwarded: give an \
         address beyond the gateway, or --on-link if you mean to probe the first hop"
    )]
    FirstHopTarget { target: IpAddr, answer: String },
    #[error(
        "the route to {target} leaves by {iface}, but {watched}: probes that way cannot show what \
         the watched uplink lets out. Give a target routed through the uplink, or name the \
         interface you watch with --uplink"
    )]
    NotWatchedUplink {
        target: IpAddr,
        iface: String,
        watched: String,
    },
    #[error("no interface named {0:?}")]
    NoSuchInterface(String),
    #[error("interface {0} is down")]
    InterfaceDown(String),
    #[error(
        "no MAC address for next hop {next_hop} on {iface} after {waited_ms} ms (neighbour state \
         {state}): is it up and on that link? Give it with --gateway-mac"
    )]
    NeighbourUnresolved {
        next_hop: IpAddr,
        iface: String,
        state: &'static str,
        waited_ms: u64,
    },
    #[error("needs root or CAP_NET_RAW to open {0}")]
    Permission(&'static str),
    #[error("cannot open {0}: {1}")]
    Socket(&'static str, #[source] std::io::Error),
    #[error("sending failed: {0}")]
    Send(#[source] std::io::Error),
    #[error("a {0}-byte probe frame exceeds the interface MTU")]
    FrameTooBig(usize),
    #[error("the interface stopped taking frames ({errno}) for over 2 s")]
    Stalled { errno: String },
    #[error("route lookup: {0}")]
    Netlink(#[source] netlink::NetlinkError),
    #[error("{0}")]
    Io(#[source] std::io::Error),
}
