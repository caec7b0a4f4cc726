//! A small, synchronous Tor control-port client written for leaktest, and what the watcher
//! needs from Tor:
//!
//! * [`Controller`]: TCP or unix-socket control connection, `PROTOCOLINFO`, authentication
//!   (NULL, COOKIE, SAFECOOKIE with the server hash verified, HASHEDPASSWORD), `GETINFO`,
//!   `GETCONF`, `SETCONF`, `RESETCONF`, `SETEVENTS`, asynchronous events queued between replies,
//!   a deadline on every read.
//! * [`Allowlist`]: the TCP endpoints Tor may legitimately use and their [`Roles`] (ORPort,
//!   bridge and its transport, proxy, a relay's DirPort), and pure parsers that build it from
//!   `ns/all`, `config/defaults`, `DirAuthority`, `FallbackDir`, `Bridge` and the proxy options.
//! * [`AllowlistFeed`]: the allowlist kept current on `NEWCONSENSUS` in a background thread,
//!   with a health state the verdict depends on.
//! * [`restrict`]: the seed's Step 0 / Step 9 (Tor restricted to ports 80/443 and restored),
//!   journaled so a crash never leaves Tor restricted ([`recover_leftover`] at every start,
//!   [`RestrictGuard`] for `watch --restrict-tor`).
//!
//! # Use from a watch session
//!
//! ```no_run
//! use leaktest_tor::{restrict, Allowlist, AllowlistFeed, ConnectOptions, RestrictGuard, Roles};
//! # fn main() -> Result<(), leaktest_tor::TorError> {
//! // `--tor-control` / `--tor-password-env`, and a relay given by hand:
//! let opts = ConnectOptions::from_cli(Some("/run/tor/control"), None)?;
//! let mut extra = Allowlist::new();
//! extra.insert_with("198.51.100.7:5555".parse().unwrap(), Roles::OR_PORT);
//! // `--restrict-tor`: before the capture; restores when dropped (normal end, error, panic,
//! // and SIGINT/SIGTERM if the handlers only set a flag that ends the loop).
//! let guard = RestrictGuard::restrict(&opts, &restrict::default_journal_path())?;
//! let feed = AllowlistFeed::start(opts, extra)?; // an error here means exit 2
//! let mut allow = feed.reader();
//! # let frames: Vec<std::net::SocketAddr> = Vec::new();
//! for dst in frames {
//!     // per outbound TCP frame: one atomic load, a hash lookup
//!     let _roles = allow.get().roles(&dst);
//! }
//! // verdict: no PASS if the feed was ever unavailable
//! let outage = feed.first_outage(); // Some(Outage { since, reason }) => INCONCLUSIVE
//! let endpoints = feed.current().len();
//! feed.shutdown();
//! guard.restore()?; // or drop(guard); a failure keeps the journal for the next start
//! # let _ = (outage, endpoints);
//! # Ok(()) }
//! ```
//!
//! No controller crate is used: the existing ones are unmaintained or pull in an async runtime.

pub mod allowlist;
pub mod auth;
pub mod client;
pub mod error;
pub mod feed;
pub mod reply;
pub mod restrict;

pub use allowlist::{
    fetch_allowlist, Allowlist, DefaultDirs, MixHasher, Roles, SeededState, SourceCounts,
};
pub use auth::{AuthMethod, ProtocolInfo};
pub use client::{ConnectOptions, ControlTarget, Controller, DEFAULT_CONTROL, DEFAULT_TIMEOUT};
pub use error::{Result, TorError};
pub use feed::{AllowlistFeed, AllowlistReader, FeedHealth, Outage, PendingFeed};
pub use restrict::{recover_leftover, JournalMode, RestrictGuard};
