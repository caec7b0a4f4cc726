//! Typed errors of the control-port client, the allowlist builders and the restriction journal.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong talking to Tor or handling the journal.
#[derive(Debug, thiserror::Error)]
pub enum TorError {
    // The io::Error is in the message rather than a `source`, so a one-line report of the
    // whole chain does not repeat it.
    /// The control port could not be reached at all.
    #[error("cannot connect to Tor's control port {target}: {error}")]
    Connect { target: String, error: io::Error },
    /// A read or write on an established control connection failed.
    #[error("control-port I/O error: {0}")]
    Io(io::Error),
    /// Tor did not complete a reply in time.
    #[error("Tor's control port did not answer within {0:?}")]
    Timeout(Duration),
    /// The wait was abandoned because the cancel flag was raised (a signal).
    #[error("interrupted while waiting for Tor's control port")]
    Interrupted,
    /// Tor closed the control connection.
    #[error("Tor closed the control connection")]
    Closed,
    /// A reply that does not follow control-spec.
    #[error("malformed control-port reply: {0}")]
    Protocol(String),
    /// Tor answered a command with an error status (4xx/5xx).
    #[error("Tor refused {command}: {code} {message}")]
    Refused {
        command: String,
        code: u16,
        message: String,
    },
    /// No usable authentication method, or Tor rejected our credentials.
    #[error("control-port authentication failed: {0}")]
    Auth(String),
    /// A `--tor-control` value that is neither an address nor a path.
    #[error("bad control-port target {0:?}: expected HOST:PORT (e.g. 127.0.0.1:9051) or a unix socket path")]
    BadTarget(String),
    /// Reading, writing or interpreting the restriction journal failed.
    #[error("restriction journal {}: {message}", path.display())]
    Journal { path: PathBuf, message: String },
    /// The journal was written in another network namespace: its Tor is not the one here.
    #[error("restriction journal {}: written in network namespace {netns}, this is {ours}; restore it from that namespace (or `leaktest tor restore --forget` if it is gone)", path.display())]
    OtherNamespace {
        path: PathBuf,
        netns: u64,
        ours: u64,
    },
    /// Another Tor answers the control port than the one the journal restricted, which
    /// still runs: applying the journal would change the wrong Tor.
    #[error("restriction journal {}: it restricted Tor pid {restricted}, which still runs, but {target} leads to Tor pid {answering}; restore it through that Tor's control port (--tor-control)", path.display())]
    OtherTor {
        path: PathBuf,
        target: String,
        restricted: u32,
        answering: u32,
    },
    /// Tor's ports are already restricted by a journal that is still in force.
    #[error("Tor is already restricted (journal {}, written by pid {pid}); run `leaktest tor restore` first", path.display())]
    AlreadyRestricted { path: PathBuf, pid: u32 },
}

impl From<io::Error> for TorError {
    fn from(e: io::Error) -> TorError {
        TorError::Io(e)
    }
}

/// Result alias of this crate.
pub type Result<T, E = TorError> = std::result::Result<T, E>;
