//! The synchronous control-port connection: TCP or unix socket, a deadline on every read,
//! authentication (NULL, COOKIE, SAFECOOKIE, HASHEDPASSWORD), the handful of commands leaktest
//! needs, and a queue for asynchronous `650` events that arrive between replies.

use crate::auth::{AuthChallenge, AuthMethod, ProtocolInfo, COOKIE_LEN};
use crate::error::{Result, TorError};
use crate::reply::{maybe_unquote, quote, LineBuffer, Reply, ReplyParser};
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Tor's usual control port.
pub const DEFAULT_CONTROL: &str = "127.0.0.1:9051";
/// Default deadline for connecting and for each complete reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a blocking wait (connecting, reading a reply) looks at the cancel flag of
/// [`ConnectOptions::with_cancel`].
pub const CANCEL_POLL: Duration = Duration::from_millis(100);
/// Events kept while nobody reads them; older ones are dropped (and counted).
const MAX_QUEUED_EVENTS: usize = 4096;

/// Where Tor's control port listens.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlTarget {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl ControlTarget {
    /// Parses `--tor-control`: `HOST:PORT`, `[V6]:PORT`, a bare port (on 127.0.0.1, as in
    /// torrc's `ControlPort 9051`), `unix:/path`, or a path (containing `/`).
    pub fn parse(s: &str) -> Result<ControlTarget> {
        let s = s.trim();
        if let Ok(port) = s.parse::<u16>() {
            if port == 0 {
                return Err(TorError::BadTarget(s.into()));
            }
            return Ok(ControlTarget::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
        }
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(TorError::BadTarget(s.into()));
            }
            return Ok(ControlTarget::Unix(PathBuf::from(path)));
        }
        if s.contains('/') {
            return Ok(ControlTarget::Unix(PathBuf::from(s)));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(ControlTarget::Tcp(addr));
        }
        // `localhost:9051` and the like: resolve locally, preferring the first answer.
        if s.contains(':') {
            if let Ok(mut addrs) = s.to_socket_addrs() {
                if let Some(addr) = addrs.next() {
                    return Ok(ControlTarget::Tcp(addr));
                }
            }
        }
        if Path::new(s).exists() {
            return Ok(ControlTarget::Unix(PathBuf::from(s)));
        }
        Err(TorError::BadTarget(s.into()))
    }
}

impl fmt::Display for ControlTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlTarget::Tcp(a) => write!(f, "{a}"),
            ControlTarget::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// How to reach and authenticate to Tor.
#[derive(Clone)]
pub struct ConnectOptions {
    pub target: ControlTarget,
    /// For HASHEDPASSWORD; never written anywhere by this crate.
    pub password: Option<String>,
    /// The environment variable the password came from (recorded in the journal, so a later
    /// restore knows where to look; the secret itself is never stored).
    pub password_env: Option<String>,
    pub timeout: Duration,
    /// Raised (by a signal handler) to abandon a wait: connecting and every reply then
    /// return [`TorError::Interrupted`] within [`CANCEL_POLL`].
    pub cancel: Option<Arc<AtomicBool>>,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("target", &self.target)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .field("timeout", &self.timeout)
            .field("cancellable", &self.cancel.is_some())
            .finish()
    }
}

impl ConnectOptions {
    pub fn new(target: ControlTarget) -> ConnectOptions {
        ConnectOptions {
            target,
            password: None,
            password_env: None,
            timeout: DEFAULT_TIMEOUT,
            cancel: None,
        }
    }

    /// Waits end early (with [`TorError::Interrupted`]) once `flag` is raised.
    pub fn with_cancel(mut self, flag: Arc<AtomicBool>) -> ConnectOptions {
        self.cancel = Some(flag);
        self
    }

    /// The same options without a cancel flag (for work that must still run after a stop
    /// request, such as undoing a restriction).
    pub fn uncancellable(&self) -> ConnectOptions {
        ConnectOptions {
            cancel: None,
            ..self.clone()
        }
    }

    /// Takes the control password from environment variable `var` (which must be set).
    pub fn password_from_env(mut self, var: &str) -> Result<ConnectOptions> {
        match std::env::var(var) {
            Ok(pw) => {
                self.password = Some(pw);
                self.password_env = Some(var.to_string());
                Ok(self)
            }
            Err(_) => Err(TorError::Auth(format!(
                "environment variable {var} (named by --tor-password-env) is not set or not UTF-8"
            ))),
        }
    }

    /// From the command line: `--tor-control` (default [`DEFAULT_CONTROL`]) and
    /// `--tor-password-env` (the variable must be set).
    pub fn from_cli(target: Option<&str>, password_env: Option<&str>) -> Result<ConnectOptions> {
        let opts = ConnectOptions::new(ControlTarget::parse(target.unwrap_or(DEFAULT_CONTROL))?);
        match password_env {
            Some(var) => opts.password_from_env(var),
            None => Ok(opts),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> ConnectOptions {
        self.timeout = timeout;
        self
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
        }
    }
    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }
    fn shutdown(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// Closes a controller's connection from another thread (wakes a blocked read).
pub struct ShutdownHandle(Stream);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        let _ = self.0.shutdown();
    }
}

/// Connects to `addr` within `timeout`, looking at `cancel` every [`CANCEL_POLL`]: a raised
/// flag ends the wait with an [`io::ErrorKind::Interrupted`] error. (A blocking
/// `connect_timeout` to a port that drops SYNs would hold a Ctrl-C for the whole timeout.)
fn connect_tcp(
    addr: &SocketAddr,
    timeout: Duration,
    cancel: Option<&AtomicBool>,
) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    sock.set_nonblocking(true)?;
    match sock.connect(&(*addr).into()) {
        Ok(()) => {}
        Err(e)
            if e.raw_os_error() == Some(libc::EINPROGRESS)
                || e.kind() == io::ErrorKind::WouldBlock =>
        {
            let deadline = Instant::now() + timeout;
            loop {
                if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                    return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no answer within {timeout:?}"),
                    ));
                }
                let wait = (deadline - now).min(CANCEL_POLL);
                let mut pfd = libc::pollfd {
                    fd: sock.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for a descriptor this function owns.
                let rc = unsafe { libc::poll(&mut pfd, 1, wait.as_millis().max(1) as i32) };
                if rc < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                if rc > 0 {
                    if let Some(e) = sock.take_error()? {
                        return Err(e);
                    }
                    break;
                }
            }
        }
        Err(e) => return Err(e),
    }
    sock.set_nonblocking(false)?;
    Ok(sock.into())
}

/// An open control connection.
pub struct Controller {
    stream: Stream,
    lines: LineBuffer,
    parser: ReplyParser,
    events: VecDeque<Reply>,
    events_dropped: u64,
    timeout: Duration,
    target: ControlTarget,
    protocol_info: Option<ProtocolInfo>,
    auth: Option<AuthMethod>,
    password_env: Option<String>,
    /// Set after an error that may have desynchronised replies from commands.
    broken: bool,
    cancel: Option<Arc<AtomicBool>>,
}

impl fmt::Debug for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("target", &self.target)
            .field("auth", &self.auth)
            .field("queued_events", &self.events.len())
            .finish()
    }
}

impl Controller {
    /// Opens a connection without authenticating.
    pub fn open(target: &ControlTarget, timeout: Duration) -> Result<Controller> {
        Controller::open_cancellable(target, timeout, None)
    }

    /// [`Controller::open`] that gives up with [`TorError::Interrupted`] once `cancel` is
    /// raised (checked every [`CANCEL_POLL`]).
    pub fn open_cancellable(
        target: &ControlTarget,
        timeout: Duration,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Result<Controller> {
        let connect_err = |error: io::Error| {
            if error.kind() == io::ErrorKind::Interrupted {
                TorError::Interrupted
            } else {
                TorError::Connect {
                    target: target.to_string(),
                    error,
                }
            }
        };
        let stream = match target {
            ControlTarget::Tcp(addr) => {
                Stream::Tcp(connect_tcp(addr, timeout, cancel.as_deref()).map_err(connect_err)?)
            }
            ControlTarget::Unix(path) => {
                Stream::Unix(UnixStream::connect(path).map_err(connect_err)?)
            }
        };
        stream.set_write_timeout(Some(timeout))?;
        Ok(Controller {
            stream,
            lines: LineBuffer::default(),
            parser: ReplyParser::default(),
            events: VecDeque::new(),
            events_dropped: 0,
            timeout,
            target: target.clone(),
            protocol_info: None,
            auth: None,
            password_env: None,
            broken: false,
            cancel,
        })
    }

    /// Opens and authenticates with the best method Tor offers.
    pub fn connect(opts: &ConnectOptions) -> Result<Controller> {
        let mut c = Controller::open_cancellable(&opts.target, opts.timeout, opts.cancel.clone())?;
        c.password_env = opts.password_env.clone();
        c.authenticate(opts.password.as_deref())?;
        Ok(c)
    }

    pub fn target(&self) -> &ControlTarget {
        &self.target
    }
    /// The method that authenticated this connection.
    pub fn auth_method(&self) -> Option<&AuthMethod> {
        self.auth.as_ref()
    }
    /// The environment variable the password came from, if any.
    pub fn password_env(&self) -> Option<&str> {
        self.password_env.as_deref()
    }
    /// What `PROTOCOLINFO` said, once asked.
    pub fn protocol_info_cached(&self) -> Option<&ProtocolInfo> {
        self.protocol_info.as_ref()
    }
    /// Events that were dropped because the queue was full.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// Replaces the cancel flag (`None`: waits run to their deadline).
    pub fn set_cancel(&mut self, cancel: Option<Arc<AtomicBool>>) {
        self.cancel = cancel;
    }

    /// A handle that can close this connection from another thread.
    pub fn shutdown_handle(&self) -> Result<ShutdownHandle> {
        Ok(ShutdownHandle(self.stream.try_clone()?))
    }

    /// Reads one complete reply before `deadline`; partial input is kept on timeout.
    fn read_reply(&mut self, deadline: Instant, budget: Duration) -> Result<Reply> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            while let Some(line) = self.lines.next_line()? {
                if let Some(reply) = self.parser.push_line(&line)? {
                    return Ok(reply);
                }
            }
            if self
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
            {
                return Err(TorError::Interrupted);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(TorError::Timeout(budget));
            }
            let wait = (deadline - now).min(if self.cancel.is_some() {
                CANCEL_POLL
            } else {
                Duration::MAX
            });
            self.stream.set_read_timeout(Some(wait))?;
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(TorError::Closed),
                Ok(n) => self.lines.push(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(TorError::Io(e)),
            }
        }
    }

    fn queue_event(&mut self, ev: Reply) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(ev);
    }

    /// Sends one command line and returns its reply, whatever the status; events that arrive
    /// first are queued.
    pub fn raw_command(&mut self, line: &str) -> Result<Reply> {
        if self.broken {
            return Err(TorError::Protocol(
                "control connection unusable after an earlier error".into(),
            ));
        }
        if line.contains(['\r', '\n']) {
            return Err(TorError::Protocol("command contains a line break".into()));
        }
        let result = self.raw_command_inner(line);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    fn raw_command_inner(&mut self, line: &str) -> Result<Reply> {
        let mut wire = Vec::with_capacity(line.len() + 2);
        wire.extend_from_slice(line.as_bytes());
        wire.extend_from_slice(b"\r\n");
        self.stream.write_all(&wire)?;
        self.stream.flush()?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let reply = self.read_reply(deadline, self.timeout)?;
            if reply.is_event() {
                self.queue_event(reply);
            } else {
                return Ok(reply);
            }
        }
    }

    /// Sends a command and requires a 2xx reply.
    pub fn command(&mut self, line: &str) -> Result<Reply> {
        let reply = self.raw_command(line)?;
        if reply.is_ok() {
            Ok(reply)
        } else {
            Err(TorError::Refused {
                command: describe_command(line),
                code: reply.status(),
                message: reply.message().to_string(),
            })
        }
    }

    /// `PROTOCOLINFO 1` (Tor answers it once before authentication; the answer is cached).
    pub fn protocol_info(&mut self) -> Result<ProtocolInfo> {
        if let Some(info) = &self.protocol_info {
            return Ok(info.clone());
        }
        let reply = self.raw_command("PROTOCOLINFO 1")?;
        let info = ProtocolInfo::parse(&reply)?;
        self.protocol_info = Some(info.clone());
        Ok(info)
    }

    /// Authenticates with the best method Tor offers: NULL, then SAFECOOKIE, COOKIE, then
    /// HASHEDPASSWORD if a password is given.
    pub fn authenticate(&mut self, password: Option<&str>) -> Result<AuthMethod> {
        let info = self.protocol_info()?;
        let offered = |m: AuthMethod| info.methods.contains(&m);
        if offered(AuthMethod::Null) {
            self.authenticate_with(&AuthMethod::Null, &info, password)?;
            return Ok(AuthMethod::Null);
        }
        let mut problems = Vec::new();
        // Plain COOKIE sends the file's contents to whatever answers on the
        // control address; SAFECOOKIE (control-spec section 3.24) makes the
        // server prove it knows the cookie first. A listener that offers only
        // COOKIE (and names any file it likes) gets nothing.
        let cookie_method = if offered(AuthMethod::SafeCookie) {
            Some(AuthMethod::SafeCookie)
        } else {
            if offered(AuthMethod::Cookie) {
                problems.push(
                    "it offers COOKIE but not SAFECOOKIE: leaktest never sends a cookie file's \
                     contents to a control port that has not proved it knows them (every Tor \
                     since 0.2.3.13 offers SAFECOOKIE)"
                        .to_string(),
                );
            }
            None
        };
        if let Some(m) = cookie_method {
            match read_cookie(info.cookie_file.as_deref()) {
                Ok(_) => {
                    self.authenticate_with(&m, &info, password)?;
                    return Ok(m);
                }
                Err(e) => problems.push(e),
            }
        }
        if offered(AuthMethod::HashedPassword) {
            if password.is_some() {
                self.authenticate_with(&AuthMethod::HashedPassword, &info, password)?;
                return Ok(AuthMethod::HashedPassword);
            }
            problems.push(
                "Tor wants a password: put it in an environment variable and name it with --tor-password-env"
                    .to_string(),
            );
        }
        let offered: Vec<String> = info.methods.iter().map(|m| m.to_string()).collect();
        Err(TorError::Auth(format!(
            "Tor offers {}{}{}",
            if offered.is_empty() {
                "no methods".to_string()
            } else {
                offered.join(",")
            },
            if problems.is_empty() { "" } else { "; " },
            problems.join("; ")
        )))
    }

    /// Authenticates with one given method.
    pub fn authenticate_with(
        &mut self,
        method: &AuthMethod,
        info: &ProtocolInfo,
        password: Option<&str>,
    ) -> Result<()> {
        let line = match method {
            AuthMethod::Null => "AUTHENTICATE".to_string(),
            AuthMethod::Cookie => {
                let cookie = read_cookie(info.cookie_file.as_deref()).map_err(TorError::Auth)?;
                format!("AUTHENTICATE {}", hex::encode_upper(cookie))
            }
            AuthMethod::SafeCookie => {
                let cookie = read_cookie(info.cookie_file.as_deref()).map_err(TorError::Auth)?;
                let mut nonce = [0u8; 32];
                getrandom::fill(&mut nonce).map_err(|e| {
                    TorError::Auth(format!("no randomness for SAFECOOKIE nonce: {e}"))
                })?;
                let reply = self.raw_command(&format!(
                    "AUTHCHALLENGE SAFECOOKIE {}",
                    hex::encode_upper(nonce)
                ))?;
                if !reply.is_ok() {
                    return Err(TorError::Auth(format!(
                        "AUTHCHALLENGE refused: {} {}",
                        reply.status(),
                        reply.message()
                    )));
                }
                let challenge = AuthChallenge::parse(&reply)?;
                let hash = challenge.respond(&cookie, &nonce)?;
                format!("AUTHENTICATE {}", hex::encode_upper(hash))
            }
            AuthMethod::HashedPassword => {
                let pw = password.ok_or_else(|| {
                    TorError::Auth("HASHEDPASSWORD needs a password (--tor-password-env)".into())
                })?;
                format!("AUTHENTICATE {}", quote(pw))
            }
            AuthMethod::Other(m) => {
                return Err(TorError::Auth(format!("unsupported method {m}")));
            }
        };
        let reply = self.raw_command(&line)?;
        if !reply.is_ok() {
            // Tor closes the connection after a failed AUTHENTICATE.
            self.broken = true;
            return Err(TorError::Auth(format!(
                "Tor rejected {method}: {} {}",
                reply.status(),
                reply.message()
            )));
        }
        self.auth = Some(method.clone());
        Ok(())
    }

    /// `GETINFO k1 k2 ...`: the values in reply order (data blocks included).
    pub fn getinfo(&mut self, keys: &[&str]) -> Result<Vec<(String, String)>> {
        let reply = self.command(&format!("GETINFO {}", keys.join(" ")))?;
        Ok(getinfo_values(&reply))
    }

    /// `GETINFO key`: one value.
    pub fn getinfo_one(&mut self, key: &str) -> Result<String> {
        self.getinfo(&[key])?
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .ok_or_else(|| TorError::Protocol(format!("GETINFO reply lacks {key}")))
    }

    /// `GETCONF k1 k2 ...`: every (key, value) line in order; `None` means unset / default.
    pub fn getconf(&mut self, keys: &[&str]) -> Result<Vec<(String, Option<String>)>> {
        let reply = self.command(&format!("GETCONF {}", keys.join(" ")))?;
        Ok(getconf_values(&reply))
    }

    /// The values of one (possibly repeated) option; empty when unset.
    pub fn getconf_values(&mut self, key: &str) -> Result<Vec<String>> {
        Ok(self
            .getconf(&[key])?
            .into_iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .filter_map(|(_, v)| v)
            .collect())
    }

    /// `SETCONF`: each pair is `Key="value"`, or a bare `Key` for `None`.
    pub fn setconf(&mut self, pairs: &[(&str, Option<&str>)]) -> Result<()> {
        self.command(&format!("SETCONF {}", conf_args(pairs)))?;
        Ok(())
    }

    /// `RESETCONF`: bare keys go back to their defaults; keys with values are set.
    pub fn resetconf(&mut self, pairs: &[(&str, Option<&str>)]) -> Result<()> {
        self.command(&format!("RESETCONF {}", conf_args(pairs)))?;
        Ok(())
    }

    /// `SETEVENTS e1 e2 ...` (replaces the subscription; empty clears it).
    pub fn setevents(&mut self, events: &[&str]) -> Result<()> {
        let line = if events.is_empty() {
            "SETEVENTS".to_string()
        } else {
            format!("SETEVENTS {}", events.join(" "))
        };
        self.command(&line)?;
        Ok(())
    }

    /// The next asynchronous event: from the queue, or read within `wait`. `Ok(None)` on timeout
    /// (partial input is kept for the next call).
    pub fn next_event(&mut self, wait: Duration) -> Result<Option<Reply>> {
        if let Some(ev) = self.events.pop_front() {
            return Ok(Some(ev));
        }
        if self.broken {
            return Err(TorError::Protocol(
                "control connection unusable after an earlier error".into(),
            ));
        }
        match self.read_reply(Instant::now() + wait, wait) {
            Ok(r) if r.is_event() => Ok(Some(r)),
            Ok(r) => {
                self.broken = true;
                Err(TorError::Protocol(format!(
                    "unsolicited non-event reply {} {}",
                    r.status(),
                    r.message()
                )))
            }
            Err(TorError::Timeout(_)) => Ok(None),
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// Politely ends the session.
    pub fn quit(mut self) {
        let _ = self.raw_command("QUIT");
    }
}

/// Names a command for error messages without ever echoing secrets.
fn describe_command(line: &str) -> String {
    let word = line.split(' ').next().unwrap_or("");
    if word.eq_ignore_ascii_case("AUTHENTICATE") || word.eq_ignore_ascii_case("AUTHCHALLENGE") {
        return word.to_string();
    }
    let mut s: String = line.chars().take(120).collect();
    if s.len() < line.len() {
        s.push('…');
    }
    format!("`{s}`")
}

fn conf_args(pairs: &[(&str, Option<&str>)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={}", quote(v)),
            None => (*k).to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Values of a GETINFO reply: `key=value` lines and `key=` data blocks; the final `OK` is not
/// a value.
pub fn getinfo_values(reply: &Reply) -> Vec<(String, String)> {
    let n = reply.lines.len();
    reply
        .lines
        .iter()
        .enumerate()
        .filter(|(i, l)| *i + 1 < n || l.text.contains('='))
        .filter_map(|(_, l)| {
            let (k, v) = l.text.split_once('=')?;
            Some((
                k.to_string(),
                l.data.clone().unwrap_or_else(|| v.to_string()),
            ))
        })
        .collect()
}

/// Values of a GETCONF reply: `Key=Value` (maybe quoted) or bare `Key` (unset); every line,
/// including the last, carries one.
pub fn getconf_values(reply: &Reply) -> Vec<(String, Option<String>)> {
    reply
        .lines
        .iter()
        .map(|l| match (&l.data, l.text.split_once('=')) {
            (Some(d), Some((k, _))) => (k.to_string(), Some(d.clone())),
            (None, Some((k, v))) => (k.to_string(), Some(maybe_unquote(v))),
            (_, None) => (l.text.trim().to_string(), None),
        })
        .collect()
}

/// The largest cookie file read. The path comes from whoever answers the control port, so
/// it is read only as a regular file under this cap (`/dev/zero` or a FIFO is refused).
const MAX_COOKIE_FILE: u64 = 4096;

fn read_cookie(path: Option<&Path>) -> std::result::Result<Vec<u8>, String> {
    let path = path.ok_or("Tor offers cookie authentication but names no COOKIEFILE")?;
    let cookie = leaktest_fs::read_bounded("Tor's cookie file", path, MAX_COOKIE_FILE)
        .map_err(|e| format!("cannot read {e} (run as root or as a member of Tor's group)"))?;
    if cookie.len() != COOKIE_LEN {
        return Err(format!(
            "cookie file {} has {} bytes, expected {COOKIE_LEN}",
            path.display(),
            cookie.len()
        ));
    }
    Ok(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::parse_replies;

    #[test]
    fn cookie_files_are_read_bounded_and_regular_only() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("control_auth_cookie");
        std::fs::write(&p, [7u8; COOKIE_LEN]).unwrap();
        assert_eq!(read_cookie(Some(&p)).unwrap(), vec![7u8; COOKIE_LEN]);
        // A control port that names /dev/zero (or a FIFO) gets a refusal, not a read forever.
        let e = read_cookie(Some(Path::new("/dev/zero"))).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        std::fs::write(&p, vec![0u8; 1 << 20]).unwrap();
        let e = read_cookie(Some(&p)).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn targets() {
        assert_eq!(
            ControlTarget::parse("127.0.0.1:9051").unwrap(),
            ControlTarget::Tcp("127.0.0.1:9051".parse().unwrap())
        );
        assert_eq!(
            ControlTarget::parse("[::1]:9051").unwrap(),
            ControlTarget::Tcp("[::1]:9051".parse().unwrap())
        );
        assert_eq!(
            ControlTarget::parse("/run/tor/control").unwrap(),
            ControlTarget::Unix("/run/tor/control".into())
        );
        assert_eq!(
            ControlTarget::parse("unix:ctl.sock").unwrap(),
            ControlTarget::Unix("ctl.sock".into())
        );
        assert!(ControlTarget::parse("unix:").is_err());
        assert_eq!(
            ControlTarget::parse("9051").unwrap(),
            ControlTarget::Tcp("127.0.0.1:9051".parse().unwrap())
        );
        assert!(ControlTarget::parse("0").is_err());
        assert!(ControlTarget::parse("nonsense-no-port").is_err());
        assert_eq!(
            ControlTarget::parse("unix:/x").unwrap().to_string(),
            "unix:/x"
        );
    }

    #[test]
    fn getinfo_and_getconf_values() {
        let r = &parse_replies(b"250-version=0.4.9.11\r\n250+ns/all=\r\nr a\r\n.\r\n250 OK\r\n")
            .unwrap()[0];
        assert_eq!(
            getinfo_values(r),
            vec![
                ("version".into(), "0.4.9.11".into()),
                ("ns/all".into(), "r a".into())
            ]
        );
        // Recorded from tor 0.4.9.11 after SETCONF ReachableORAddresses twice.
        let r = &parse_replies(
            b"250-ReachableDirAddresses\r\n250-ReachableORAddresses=accept *:443, reject *:*\r\n250-ReachableORAddresses=*:9001\r\n250 FascistFirewall=0\r\n",
        )
        .unwrap()[0];
        assert_eq!(
            getconf_values(r),
            vec![
                ("ReachableDirAddresses".into(), None),
                (
                    "ReachableORAddresses".into(),
                    Some("accept *:443, reject *:*".into())
                ),
                ("ReachableORAddresses".into(), Some("*:9001".into())),
                ("FascistFirewall".into(), Some("0".into())),
            ]
        );
        let r = &parse_replies(b"250 Bridge=\"obfs4 192.0.2.1:443 cert=a\\\"b\"\r\n").unwrap()[0];
        assert_eq!(
            getconf_values(r),
            vec![(
                "Bridge".into(),
                Some("obfs4 192.0.2.1:443 cert=a\"b".into())
            )]
        );
    }

    #[test]
    fn conf_args_quote_values() {
        assert_eq!(
            conf_args(&[
                ("ReachableDirAddresses", Some("*:80")),
                ("FascistFirewall", Some("1")),
                ("Bridge", None)
            ]),
            "ReachableDirAddresses=\"*:80\" FascistFirewall=\"1\" Bridge"
        );
    }

    #[test]
    fn secrets_never_in_error_text() {
        assert_eq!(describe_command("AUTHENTICATE \"hunter2\""), "AUTHENTICATE");
        assert_eq!(describe_command("GETINFO ns/all"), "`GETINFO ns/all`");
    }
}
