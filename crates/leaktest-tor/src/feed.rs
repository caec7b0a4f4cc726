//! A live allowlist for a capture loop: connect and build it once, then a background thread
//! listens for `NEWCONSENSUS` (and `CONF_CHANGED`, e.g. a bridge added) and refreshes it.
//!
//! The capture loop reads it cheaply through an [`AllowlistReader`]: one atomic load per
//! packet, and a lock only when a new generation was published.
//!
//! The published list only grows during a run: a relay that drops out of the consensus may
//! still have an open connection from this Tor, and flagging that as a leak would be false.
//!
//! Health: if the control connection is lost or misbehaves, the feed is *unavailable since T*
//! and records the first outage; the watcher must then not say PASS. The thread keeps trying to
//! reconnect (every [`RECONNECT_EVERY`]) so classification stays as good as it can be.

use crate::allowlist::{fetch_allowlist, Allowlist, SourceCounts};
use crate::client::{ConnectOptions, Controller, ShutdownHandle};
use crate::error::Result;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// How long the feed thread waits for an event before checking for shutdown.
const POLL: Duration = Duration::from_millis(250);
/// Delay between reconnection attempts after the control connection was lost.
pub const RECONNECT_EVERY: Duration = Duration::from_secs(2);

/// The feed's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedHealth {
    /// Connected; `refreshed` is when the allowlist was last rebuilt.
    Live {
        refreshed: SystemTime,
        refreshes: u64,
    },
    /// The control connection is gone or failing since `since`.
    Unavailable { since: SystemTime, reason: String },
}

impl FeedHealth {
    pub fn is_live(&self) -> bool {
        matches!(self, FeedHealth::Live { .. })
    }
}

/// A period during which the allowlist could not be kept current.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outage {
    pub since: SystemTime,
    pub reason: String,
}

struct Shared {
    list: RwLock<Arc<Allowlist>>,
    generation: AtomicU64,
    health: Mutex<FeedHealth>,
    first_outage: Mutex<Option<Outage>>,
    counts: Mutex<SourceCounts>,
    stop: AtomicBool,
    shutdown: Mutex<Option<ShutdownHandle>>,
}

impl Shared {
    fn publish(&self, fresh: &Allowlist, counts: SourceCounts) {
        let mut guard = self.list.write().unwrap_or_else(|e| e.into_inner());
        let mut next = Allowlist::clone(&guard);
        next.extend(fresh);
        *guard = Arc::new(next);
        drop(guard);
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()) = counts;
        self.generation.fetch_add(1, Ordering::Release);
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let refreshes = match &*h {
            FeedHealth::Live { refreshes, .. } => refreshes + 1,
            FeedHealth::Unavailable { .. } => 1,
        };
        *h = FeedHealth::Live {
            refreshed: SystemTime::now(),
            refreshes,
        };
    }

    fn mark_unavailable(&self, reason: String) {
        let now = SystemTime::now();
        {
            let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
            if h.is_live() {
                *h = FeedHealth::Unavailable {
                    since: now,
                    reason: reason.clone(),
                };
            }
        }
        let mut first = self.first_outage.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(Outage { since: now, reason });
        }
    }
}

/// The live allowlist, from Tor (plus static entries), or static only.
pub struct AllowlistFeed {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Cheap per-packet access to the current allowlist (one per capture thread).
pub struct AllowlistReader {
    shared: Arc<Shared>,
    generation: u64,
    list: Arc<Allowlist>,
}

impl AllowlistReader {
    /// The current allowlist; refetched only when the feed published a new generation.
    pub fn get(&mut self) -> &Allowlist {
        let g = self.shared.generation.load(Ordering::Acquire);
        if g != self.generation {
            self.list = self
                .shared
                .list
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            self.generation = g;
        }
        &self.list
    }
}

impl AllowlistFeed {
    /// A feed that never changes (no control port: `--allow` entries only). Always live.
    pub fn fixed(list: Allowlist) -> AllowlistFeed {
        let shared = Arc::new(Shared {
            list: RwLock::new(Arc::new(list)),
            generation: AtomicU64::new(1),
            health: Mutex::new(FeedHealth::Live {
                refreshed: SystemTime::now(),
                refreshes: 1,
            }),
            first_outage: Mutex::new(None),
            counts: Mutex::new(SourceCounts::default()),
            stop: AtomicBool::new(false),
            shutdown: Mutex::new(None),
        });
        AllowlistFeed {
            shared,
            thread: None,
        }
    }

    /// Connects, authenticates, builds the first allowlist (failing here is an error the caller
    /// reports: exit 2), subscribes to `NEWCONSENSUS CONF_CHANGED` and starts the refresh thread.
    /// `extra` (the `--allow` entries) is always part of the list.
    pub fn start(opts: ConnectOptions, extra: Allowlist) -> Result<AllowlistFeed> {
        AllowlistFeed::connect(opts, extra)?.spawn()
    }

    /// The first half of [`AllowlistFeed::start`]: connects, authenticates
    /// (reading the cookie file, which needs its privilege), builds the first
    /// allowlist and subscribes, without starting the thread. A process that
    /// drops privilege does so between this and [`PendingFeed::spawn`], so
    /// the thread starts with the dropped credentials.
    pub fn connect(opts: ConnectOptions, extra: Allowlist) -> Result<PendingFeed> {
        let mut ctl = Controller::connect(&opts)?;
        let (fresh, counts) = fetch_allowlist(&mut ctl)?;
        ctl.setevents(&["NEWCONSENSUS", "CONF_CHANGED"])?;
        // The cancel flag covers the start only: once watching, the feed runs until
        // shutdown (a stop request must not look like an allowlist outage).
        ctl.set_cancel(None);
        let opts = opts.uncancellable();
        let feed = AllowlistFeed::fixed(extra);
        feed.shared.publish(&fresh, counts);
        *feed
            .shared
            .shutdown
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(ctl.shutdown_handle()?);
        Ok(PendingFeed { feed, opts, ctl })
    }

    /// Publishes a list fetched elsewhere (by a privileged monitor that holds
    /// the control connection for a sandboxed reader), as the refresh thread
    /// would: merged into the current list, a new generation, live again.
    pub fn publish_update(&self, fresh: &Allowlist, counts: SourceCounts) {
        self.shared.publish(fresh, counts);
    }

    /// Records an outage seen elsewhere (see [`AllowlistFeed::publish_update`]).
    pub fn report_outage(&self, reason: String) {
        self.shared.mark_unavailable(reason);
    }

    /// A reader for a capture loop.
    pub fn reader(&self) -> AllowlistReader {
        AllowlistReader {
            shared: self.shared.clone(),
            generation: self.shared.generation.load(Ordering::Acquire),
            list: self.current(),
        }
    }

    /// The current allowlist (an `Arc` clone under a short read lock).
    pub fn current(&self) -> Arc<Allowlist> {
        self.shared
            .list
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Increases by one at every published refresh.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    pub fn health(&self) -> FeedHealth {
        self.shared
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The first time the feed became unavailable during this run, if ever (stays set after a
    /// reconnection: the run was not fully covered).
    pub fn first_outage(&self) -> Option<Outage> {
        self.shared
            .first_outage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Endpoints per source in the latest refresh.
    pub fn source_counts(&self) -> SourceCounts {
        self.shared
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the refresh thread and closes the control connection.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self
            .shared
            .shutdown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            h.shutdown();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for AllowlistFeed {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stopping(shared: &Shared) -> bool {
    shared.stop.load(Ordering::SeqCst)
}

/// How the first connection authenticated: a reconnection must do the
/// same (the same method, the same cookie file), or it is not trusted.
/// While tor restarts, anyone may listen on its control address; a
/// listener that offers NULL authentication, or SAFECOOKIE with a cookie
/// file of its own, would otherwise feed the watcher an allowlist of its
/// choosing.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AuthPin {
    method: Option<crate::AuthMethod>,
    cookie_file: Option<std::path::PathBuf>,
}

impl AuthPin {
    fn of(c: &Controller) -> AuthPin {
        let method = c.auth_method().cloned();
        let cookie = matches!(
            method,
            Some(crate::AuthMethod::SafeCookie) | Some(crate::AuthMethod::Cookie)
        );
        AuthPin {
            cookie_file: c
                .protocol_info_cached()
                .and_then(|i| i.cookie_file.clone())
                .filter(|_| cookie),
            method,
        }
    }
}

fn run(shared: Arc<Shared>, opts: ConnectOptions, ctl: Controller) {
    let pin = AuthPin::of(&ctl);
    let mut ctl = Some(ctl);
    while !stopping(&shared) {
        let Some(c) = ctl.as_mut() else {
            match reconnect(&shared, &opts, &pin) {
                Some(c) => ctl = Some(c),
                None => sleep_unless_stopping(&shared, RECONNECT_EVERY),
            }
            continue;
        };
        match c.next_event(POLL) {
            Ok(None) => {}
            Ok(Some(ev)) => {
                let name = ev.event_name().unwrap_or("");
                if name == "NEWCONSENSUS" || name == "CONF_CHANGED" {
                    match fetch_allowlist(c) {
                        Ok((fresh, counts)) => shared.publish(&fresh, counts),
                        Err(e) => {
                            if !stopping(&shared) {
                                shared.mark_unavailable(format!(
                                    "refreshing the allowlist after {name} failed: {e}"
                                ));
                            }
                            close(&shared, &mut ctl);
                        }
                    }
                }
            }
            Err(e) => {
                if !stopping(&shared) {
                    shared.mark_unavailable(format!("Tor control connection lost: {e}"));
                }
                close(&shared, &mut ctl);
            }
        }
    }
}

/// Drops a connection we no longer trust. The shutdown handle holds a duplicate of its socket,
/// so the socket is shut down explicitly: otherwise it would stay open until replaced.
fn close(shared: &Shared, ctl: &mut Option<Controller>) {
    if let Some(h) = shared
        .shutdown
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        h.shutdown();
    }
    *ctl = None;
}

fn reconnect(shared: &Shared, opts: &ConnectOptions, pin: &AuthPin) -> Option<Controller> {
    let attempt = || -> Result<(Controller, Allowlist, SourceCounts)> {
        let mut c = Controller::connect(opts)?;
        let now = AuthPin::of(&c);
        if &now != pin {
            return Err(crate::TorError::Auth(format!(
                "the control port now authenticates as {now:?}, not as at the start ({pin:?}): not trusted"
            )));
        }
        let (fresh, counts) = fetch_allowlist(&mut c)?;
        c.setevents(&["NEWCONSENSUS", "CONF_CHANGED"])?;
        Ok((c, fresh, counts))
    };
    match attempt() {
        Ok((c, fresh, counts)) => {
            if let Ok(h) = c.shutdown_handle() {
                *shared.shutdown.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
            }
            if stopping(shared) {
                return None;
            }
            shared.publish(&fresh, counts);
            Some(c)
        }
        Err(_) => None,
    }
}

/// A feed connected and holding its first allowlist, whose refresh thread
/// has not started ([`AllowlistFeed::connect`]).
pub struct PendingFeed {
    feed: AllowlistFeed,
    opts: ConnectOptions,
    ctl: Controller,
}

impl std::fmt::Debug for PendingFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingFeed").finish_non_exhaustive()
    }
}

impl PendingFeed {
    /// Starts the refresh thread (named `tor-allowlist`).
    pub fn spawn(self) -> Result<AllowlistFeed> {
        let PendingFeed {
            mut feed,
            opts,
            ctl,
        } = self;
        let shared = feed.shared.clone();
        let thread = std::thread::Builder::new()
            .name("tor-allowlist".into())
            .spawn(move || run(shared, opts, ctl))?;
        feed.thread = Some(thread);
        Ok(feed)
    }

    /// The allowlist as first fetched.
    pub fn generation(&self) -> u64 {
        self.feed.generation()
    }

    /// In a process that must not talk to Tor (a sandboxed reader forked
    /// while the connection was open): closes its copy of the connection
    /// without a word and without `shutdown(2)` (the other process's copy
    /// stays usable), and keeps the first allowlist, to be updated with
    /// [`AllowlistFeed::publish_update`].
    pub fn detach(self) -> AllowlistFeed {
        let PendingFeed { feed, opts: _, ctl } = self;
        *feed
            .shared
            .shutdown
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        drop(ctl);
        feed
    }
}

fn sleep_unless_stopping(shared: &Shared, total: Duration) {
    let step = Duration::from_millis(50);
    let mut left = total;
    while !left.is_zero() && !stopping(shared) {
        let d = left.min(step);
        std::thread::sleep(d);
        left -= d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_feed_is_live_and_readable() {
        let mut l = Allowlist::new();
        l.insert("198.51.100.1:5555".parse().unwrap());
        let feed = AllowlistFeed::fixed(l);
        assert!(feed.health().is_live());
        assert!(feed.first_outage().is_none());
        let mut r = feed.reader();
        assert!(r.get().contains(&"198.51.100.1:5555".parse().unwrap()));
        feed.shared.publish(
            &["203.0.113.2:443".parse::<std::net::SocketAddr>().unwrap()]
                .into_iter()
                .collect(),
            SourceCounts::default(),
        );
        // The reader picks up the new generation; the list only grows.
        assert!(r.get().contains(&"203.0.113.2:443".parse().unwrap()));
        assert!(r.get().contains(&"198.51.100.1:5555".parse().unwrap()));
        assert_eq!(feed.generation(), 2);
        feed.shared.mark_unavailable("gone".into());
        feed.shared.mark_unavailable("again".into());
        match feed.health() {
            FeedHealth::Unavailable { reason, .. } => assert_eq!(reason, "gone"),
            h => panic!("{h:?}"),
        }
        assert_eq!(feed.first_outage().unwrap().reason, "gone");
        feed.shutdown();
    }
}
