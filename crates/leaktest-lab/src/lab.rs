//! Bringing the lab up and down: namespaces, keys, the private Tor network,
//! the servers, the gateway's tor, and the proof that the gateway works.
//! Everything the lab makes is listed in its state file before it is made,
//! and [`Lab`] removes it all on drop (error, panic) unless kept.

use crate::gateway::{self, GatewayTor};
use crate::plan::*;
use crate::profiles::Policy;
use crate::servers;
use crate::state::{self, State};
use crate::sys::{self, Tracked};
use crate::topology::{self, Names};
use crate::tornet::{self, NodeKeys, Schedule};
use crate::LabError;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Environment variable that makes the lab fail on purpose when it reaches
/// the named phase (used by the teardown tests).
pub const FAIL_AT_ENV: &str = "LEAKTEST_LAB_FAIL_AT";

/// Environment variable naming a directory where teardown first copies the
/// lab's directory (tor logs, rulesets), for diagnosing a failed run.
pub const SAVE_LOGS_ENV: &str = "LEAKTEST_LAB_SAVE_LOGS";

/// Which of [`Lab::diagnose_gateway`]'s checks to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checks {
    /// Every one (the gateway's tor has the network).
    All,
    /// Those that need no working tor: the workstation's TCP to TransPort
    /// (tor's listeners accept from the start) and tor's user reaching the
    /// guards' ORPorts (the relays listen from the start).
    BeforeTor,
    /// The others: the workstation's DNS (tor's DNSPort answers only once
    /// tor has the network) and, with a bridge, reaching its obfs4 port.
    AfterTor,
}

/// Set when a signal handler is tearing the lab down: from then on the lab
/// starts no process that it would not also stop.
pub static STOPPING: AtomicBool = AtomicBool::new(false);

/// How the web and DNS servers run.
#[derive(Clone, Debug)]
pub enum ServerMode {
    /// Threads of this process (they end with it).
    Threads,
    /// Tracked subprocesses: `EXE lab serve ...` (they survive `--keep`).
    Exe(PathBuf),
}

/// Options of [`Lab::up`].
#[derive(Clone, Debug)]
pub struct Options {
    pub state_dir: PathBuf,
    pub schedule: Schedule,
    /// Seconds from start to the first consensus's valid-after. The
    /// authorities schedule their first vote about 2 s after they start
    /// (measured), and with a 5 s initial interval vote 2 s before
    /// valid-after (measured: "Time to vote" at valid-after minus 2; tor
    /// clamps each delay to a quarter of the interval): 6 s leaves them
    /// and the relays' first uploads 2 s of slack.
    pub lead: u32,
    pub servers: ServerMode,
    /// Who the gateway's tor runs as (`--tor-user`).
    pub tor_user: gateway::TorUser,
    /// Extra gateway torrc lines (`--torrc`).
    pub torrc: Vec<String>,
    /// Start the private network's obfs4 bridge (a profile or `--bridge`
    /// uses it); otherwise its tor and obfs4proxy never run.
    pub bridge: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            state_dir: state::STATE_DIR.into(),
            schedule: Schedule::default(),
            lead: 6,
            servers: ServerMode::Threads,
            tor_user: gateway::TorUser::default(),
            torrc: Vec::new(),
            bridge: false,
        }
    }
}

/// A lab that is up.
pub struct Lab {
    pub state: State,
    pub keys: Vec<NodeKeys>,
    pub gw_tor: Option<GatewayTor>,
    /// Token the web server puts in each page, so a page cannot be faked.
    pub token: String,
    pub web_log: PathBuf,
    pub timings: Vec<(String, Duration)>,
    state_dir: PathBuf,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Result<(), LabError>>>,
    done: bool,
    /// When the private Tor network was started.
    network_started: Instant,
    /// Watches for the first usable consensus from the moment the network
    /// starts, so the phase time is when it formed, whatever ran meanwhile.
    consensus: Option<std::thread::JoinHandle<Result<Duration, LabError>>>,
    /// The gateway tor has bootstrapped and the gateway check passed.
    ready: bool,
    /// The obfs4 bridge runs ([`Options::bridge`]).
    bridge_started: bool,
}

/// How long each of [`Lab::diagnose_gateway`]'s checks waits (they run at
/// once, so a broken ruleset is named within about this time).
pub const DIAGNOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Checks that the lab can run here at all: root and network namespaces.
pub fn preflight() -> Result<(), LabError> {
    if !sys::is_root() {
        return Err(LabError::Missing("root privileges: the lab creates network namespaces, runs tor as debian-tor and loads nftables rulesets (run it as root)".into()));
    }
    if !Path::new("/proc/self/ns/net").exists() {
        return Err(LabError::Missing(
            "network namespace support in this kernel (CONFIG_NET_NS)".into(),
        ));
    }
    for tool in ["ip", "nft", "tor", "tor-gencert", "openssl", "setpriv"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Err(LabError::Missing(format!("the `{tool}` program (install tor, nftables, iproute2 and util-linux; see scripts/install-deps.sh)")));
        }
    }
    Ok(())
}

impl Lab {
    /// Brings the whole lab up, calling `progress(phase, duration)` as each
    /// phase ends: [`Lab::start`] then [`Lab::ready`]. On error everything
    /// made so far is removed.
    pub fn up(opts: &Options, progress: &mut dyn FnMut(&str, Duration)) -> Result<Lab, LabError> {
        let mut lab = Lab::start(opts, progress)?;
        lab.ready(progress)?;
        Ok(lab)
    }

    /// Makes the namespaces and keys and starts every process: the private
    /// Tor network, the servers, and the gateway's tor under the Whonix
    /// policy with its network still disabled (its control port works).
    /// Returns without waiting for the first consensus, so that work which
    /// needs no working Tor can use that time; [`Lab::ready`] waits.
    pub fn start(
        opts: &Options,
        progress: &mut dyn FnMut(&str, Duration),
    ) -> Result<Lab, LabError> {
        preflight()?;
        let removed = state::remove_leftovers(&opts.state_dir, false)?;
        if !removed.is_empty() {
            progress(
                &format!("removed leftover lab(s) {}", removed.join(", ")),
                Duration::ZERO,
            );
        }
        let prefix = state::new_prefix();
        let tmpdir = std::env::temp_dir().join(format!("leaktest-lab-{prefix}"));
        std::fs::create_dir(&tmpdir)
            .map_err(|e| LabError::Io(format!("creating {}", tmpdir.display()), e))?;
        // debian-tor must reach its data directory below this one.
        std::fs::set_permissions(&tmpdir, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| LabError::Io("chmod lab dir".into(), e))?;
        let mut token = [0u8; 8];
        getrandom::fill(&mut token).expect("random source");
        let st = State {
            prefix: prefix.clone(),
            names: Names::new(&prefix),
            tmpdir: tmpdir.clone(),
            owner: state::me(),
            kept: false,
            processes: vec![],
        };
        st.save(&opts.state_dir)?;
        progress(
            &format!("lab {prefix} in {}", tmpdir.display()),
            Duration::ZERO,
        );
        let mut lab = Lab {
            state: st,
            keys: vec![],
            gw_tor: None,
            token: hex::encode(token),
            web_log: tmpdir.join("web.log"),
            timings: vec![],
            state_dir: opts.state_dir.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            threads: vec![],
            done: false,
            network_started: Instant::now(),
            consensus: None,
            ready: false,
            bridge_started: false,
        };
        lab.bring_up(opts, progress)?;
        Ok(lab)
    }

    /// Waits for the private Tor network's first consensus, lets the
    /// gateway tor bootstrap under the Whonix policy, and proves that the
    /// gateway works (a page fetched through it, seen from an exit). Does
    /// nothing the second time.
    pub fn ready(&mut self, progress: &mut dyn FnMut(&str, Duration)) -> Result<(), LabError> {
        if self.ready {
            return Ok(());
        }
        let names = self.state.names.clone();
        let td = self.state.tmpdir.clone();
        let g = self
            .gw_tor
            .clone()
            .ok_or_else(|| LabError::Tor("the gateway tor is not configured".into()))?;
        let formed = match self.consensus.take() {
            Some(h) => h
                .join()
                .map_err(|_| LabError::Tor("the consensus watcher panicked".into()))??,
            None => return Err(LabError::Tor("the Tor network was not started".into())),
        };
        self.phase("consensus", formed, progress)?;

        let t2 = Instant::now();
        // Whatever profile ran meanwhile, tor bootstraps behind the Whonix policy.
        self.apply_policy(&Policy::WHONIX, g.uid)?;
        if !gateway::bootstrapped(&g) {
            // Its network may have been on already (a ruleset's first part):
            // no backed-off retry of a fetch that found no consensus.
            gateway::retry_downloads(&names.gw)?;
        }
        gateway::enable_network(&names.gw)?;
        let procs = self.state.processes.clone();
        gateway::wait_bootstrap(&g, Duration::from_secs(120), &|| check_alive(&procs, &td))?;
        self.phase("gateway bootstrap", t2.elapsed(), progress)?;

        let t3 = Instant::now();
        // Through SocksPort on the gateway's loopback, as an unprivileged
        // process: what every mode has (a host no workstation, a ruleset
        // maybe its own ports); a profile that must pass fetches from the
        // workstation besides.
        let f = self
            .check_host(crate::ruleset::Check::Socks)?
            .ok_or_else(|| LabError::Tor("no works-check ran".into()))?;
        tracing::info!(?f, "gateway works");
        self.phase("gateway check", t3.elapsed(), progress)?;
        self.ready = true;
        Ok(())
    }

    /// Records that phase `name` took `d`, reports it, and fails here if
    /// [`FAIL_AT_ENV`] names it.
    fn phase(
        &mut self,
        name: &str,
        d: Duration,
        progress: &mut dyn FnMut(&str, Duration),
    ) -> Result<(), LabError> {
        self.timings.push((name.to_string(), d));
        progress(name, d);
        if std::env::var(FAIL_AT_ENV).as_deref() == Ok(name) {
            return Err(LabError::Injected(name.to_string()));
        }
        Ok(())
    }

    pub(crate) fn track(&mut self, t: Tracked) -> Result<(), LabError> {
        if STOPPING.load(Ordering::SeqCst) {
            // A signal is tearing the lab down: this process must not outlive it.
            t.stop(Duration::from_secs(2));
            return Err(LabError::Interrupted);
        }
        self.state.processes.push(t);
        self.state.save(&self.state_dir)
    }

    /// Spawns `cmd` (already set up for its namespace), tracked in the state
    /// file until [`Lab::untrack`]; stdout and stderr go to `log`.
    pub fn spawn_tracked(
        &mut self,
        mut cmd: std::process::Command,
        log: &Path,
        what: &str,
    ) -> Result<(std::process::Child, Tracked), LabError> {
        let out = std::fs::File::create(log)
            .map_err(|e| LabError::Io(format!("creating {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| LabError::Io("log file".into(), e))?;
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| LabError::Io(format!("starting {what}"), e))?;
        let pid = child.id();
        let t = Tracked {
            pid,
            start_time: sys::proc_start_time(pid).unwrap_or(0),
            what: what.to_string(),
        };
        self.track(t.clone())?;
        Ok((child, t))
    }

    /// Forgets a process that has ended.
    pub fn untrack(&mut self, t: &Tracked) -> Result<(), LabError> {
        self.state.processes.retain(|p| p != t);
        self.state.save(&self.state_dir)
    }

    /// Fails if a process of the lab died.
    pub fn check_alive(&self) -> Result<(), LabError> {
        check_alive(&self.state.processes, &self.state.tmpdir)
    }

    fn bring_up(
        &mut self,
        opts: &Options,
        progress: &mut dyn FnMut(&str, Duration),
    ) -> Result<(), LabError> {
        let tmp = self.state.tmpdir.clone();
        let names = self.state.names.clone();
        // Keys (CPU-bound, parallel) while the namespaces are made.
        let t0 = Instant::now();
        let tor_root = tmp.join("tor");
        let kr = tor_root.clone();
        let keys_thread = std::thread::spawn(move || tornet::generate_keys(&kr));
        let ns_result = topology::create(&names);
        let ns_done = t0.elapsed();
        let keys = keys_thread
            .join()
            .unwrap_or_else(|_| Err(LabError::Tor("key generation panicked".into())));
        ns_result?;
        self.timings.push(("namespaces".into(), ns_done));
        progress("namespaces", ns_done);
        if std::env::var(FAIL_AT_ENV).as_deref() == Ok("namespaces") {
            return Err(LabError::Injected("namespaces".into()));
        }
        self.keys = keys?;
        self.phase("keys", t0.elapsed(), progress)?;

        // The private Tor network and the servers, all at once.
        self.network_started = Instant::now();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let offset = tornet::voting_offset(now, opts.lead, opts.schedule);
        tornet::write_configs(&tor_root, &self.keys, opts.schedule, offset)?;
        // The authorities first, and the relays once every authority's
        // DirPort accepts: a relay uploads its descriptor once, at start,
        // and does not retry a failed upload (tor's
        // router_upload_dir_desc_to_dirservers; it uploads again only when
        // its descriptor changes, e.g. after its first self-test, which
        // needs a consensus). Started together, a relay that lost that race
        // was missing from the first consensus and the lab waited one more
        // voting round (measured: 8 s or 14-15 s to a usable consensus).
        let (auths, relays): (Vec<_>, Vec<_>) = self
            .keys
            .clone()
            .into_iter()
            .filter(|k| opts.bridge || k.plan.role != Role::Bridge)
            .partition(|k| k.plan.role == Role::Authority);
        self.bridge_started = opts.bridge;
        for group in [auths, relays] {
            for k in &group {
                let t = tornet::start_tor(
                    &names.net,
                    &k.dir.join("torrc"),
                    &k.dir.join("stderr.log"),
                    k.plan.nick,
                )?;
                self.track(t)?;
            }
            if group.iter().any(|k| k.plan.role == Role::Authority) {
                let dirports: Vec<SocketAddr> = group
                    .iter()
                    .filter_map(|k| Some(SocketAddr::from((k.plan.addr, k.plan.dir_port?))))
                    .collect();
                let (procs, td) = (self.state.processes.clone(), tmp.clone());
                tornet::wait_listening(&names.net, &dirports, Duration::from_secs(20), &|| {
                    check_alive(&procs, &td)
                })?;
            }
        }
        let (keys, procs, td) = (self.keys.clone(), self.state.processes.clone(), tmp.clone());
        self.consensus = Some(std::thread::spawn(move || {
            tornet::wait_consensus(&keys, Duration::from_secs(120), &|| {
                check_alive(&procs, &td)
            })
        }));
        self.start_servers(opts)?;
        // The gateway's policy is in place before its tor starts.
        let g = gateway::configure(
            &tmp,
            &tornet::dir_authority_lines(&self.keys),
            &opts.tor_user,
            &opts.torrc,
        )?;
        self.apply_policy(&Policy::WHONIX, g.uid)?;
        let t = gateway::start(&names.gw, &tmp, &g)?;
        self.gw_tor = Some(g);
        self.track(t)?;
        let procs = self.state.processes.clone();
        gateway::wait_control(&names.gw, Duration::from_secs(30), &|| {
            check_alive(&procs, &tmp)
        })?;
        self.phase("tor started", self.network_started.elapsed(), progress)?;
        Ok(())
    }

    fn start_servers(&mut self, opts: &Options) -> Result<(), LabError> {
        let net = self.state.names.net.clone();
        match &opts.servers {
            ServerMode::Threads => {
                let (stop, log, token) =
                    (self.stop.clone(), self.web_log.clone(), self.token.clone());
                let web = sys::spawn_in(&net, "lab-web", move || {
                    servers::serve_web(servers::bind_web()?, token, log, stop)
                })?;
                let stop = self.stop.clone();
                let dns = sys::spawn_in(&net, "lab-dns", move || {
                    servers::serve_dns(servers::bind_dns(DNS4)?, stop)
                })?;
                self.threads.push(web);
                self.threads.push(dns);
            }
            ServerMode::Exe(exe) => {
                let log = self.state.tmpdir.join("serve.stderr");
                let err = std::fs::File::create(&log)
                    .map_err(|e| LabError::Io("creating server log".into(), e))?;
                let child = sys::ns_command(&net, &exe.to_string_lossy())?
                    .args(["lab", "serve", "--token", &self.token, "--web-log"])
                    .arg(&self.web_log)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(err)
                    .spawn()
                    .map_err(|e| LabError::Io("starting the lab servers".into(), e))?;
                let pid = child.id();
                std::mem::forget(child);
                let start_time = sys::proc_start_time(pid)
                    .ok_or_else(|| LabError::Tor("lab servers exited at once".into()))?;
                self.track(Tracked {
                    pid,
                    start_time,
                    what: "lab servers".into(),
                })?;
            }
        }
        Ok(())
    }

    /// Loads a gateway policy: its sysctls, then its ruleset.
    pub fn apply_policy(&self, p: &Policy, tor_uid: u32) -> Result<(), LabError> {
        self.apply_ruleset(&p.ruleset(tor_uid), &p.sysctls())
    }

    /// Loads an nftables ruleset text and sysctls into the gateway namespace.
    pub fn apply_ruleset(&self, ruleset: &str, sysctls: &[(&str, &str)]) -> Result<(), LabError> {
        let gw = &self.state.names.gw;
        // Forwarding off first, so there is no moment with forwarding on and no rules.
        sys::sysctls(
            gw,
            &[
                ("net.ipv4.ip_forward", "0"),
                ("net.ipv6.conf.all.forwarding", "0"),
            ],
        )?;
        let path = self.state.tmpdir.join("gw-ruleset.nft");
        std::fs::write(&path, ruleset).map_err(|e| LabError::Io("writing ruleset".into(), e))?;
        sys::run(sys::ns_command(gw, "nft")?.arg("-f").arg(&path))?;
        sys::sysctls(gw, sysctls)?;
        sys::conntrack_flush(gw)?;
        Ok(())
    }

    /// Loads `iptables-save` text (and `ip6tables-save` text, if any) into
    /// the gateway with the nftables-backed restore tools, after emptying
    /// the whole ruleset; then `sysctls`. Forwarding is off meanwhile, as
    /// in [`Lab::apply_ruleset`].
    pub fn apply_iptables(
        &self,
        v4: &str,
        v6: Option<&str>,
        sysctls: &[(&str, &str)],
    ) -> Result<(), LabError> {
        let gw = &self.state.names.gw;
        sys::sysctls(
            gw,
            &[
                ("net.ipv4.ip_forward", "0"),
                ("net.ipv6.conf.all.forwarding", "0"),
            ],
        )?;
        sys::run(sys::ns_command(gw, "nft")?.args(["flush", "ruleset"]))?;
        for (tool, text, file) in [
            ("iptables-nft-restore", Some(v4), "gw-ruleset.iptables"),
            ("ip6tables-nft-restore", v6, "gw-ruleset.ip6tables"),
        ] {
            let Some(text) = text else { continue };
            let path = self.state.tmpdir.join(file);
            std::fs::write(&path, text).map_err(|e| LabError::Io(format!("writing {file}"), e))?;
            sys::run(sys::ns_command(gw, tool)?.arg(&path))?;
        }
        sys::sysctls(gw, sysctls)?;
        sys::conntrack_flush(gw)?;
        Ok(())
    }

    /// What keeps the gateway from working, each as one line with its
    /// cause and fix, found within [`DIAGNOSE_TIMEOUT`] (the checks run
    /// at once): the workstation's TCP not reaching tor's TransPort, its
    /// DNS not answered by tor's DNSPort, tor's user not reaching any
    /// guard (with `bridge`, the obfs4 bridge). `checks` picks those that
    /// can run now ([`Checks`]). Empty when all of them work.
    pub fn diagnose_gateway(
        &self,
        tor: &GatewayTor,
        mode: crate::ruleset::Mode,
        bridge: bool,
        checks: Checks,
    ) -> Result<Vec<String>, LabError> {
        let before = checks != Checks::AfterTor;
        let after = checks != Checks::BeforeTor;
        // The relays' ORPorts listen from the start; the bridge's obfs4
        // port once its obfs4proxy runs.
        let check_guards = if bridge { after } else { before };
        let (tor_uid, tor_gid) = (tor.uid, tor.gid);
        let names = self.state.names.clone();
        let t = DIAGNOSE_TIMEOUT;
        if mode == crate::ruleset::Mode::Killswitch {
            return Ok(Vec::new()); // no anonymizer to reach
        }
        // A host's transparent proxy is what its works-check tries.
        let gateway = mode == crate::ruleset::Mode::Gateway;
        let ws = names.ws.clone();
        let trans = std::thread::spawn(move || {
            // tor's TransPort accepts before tor has the network.
            if !gateway || !before {
                return Ok(None);
            }
            sys::run_in(&ws, move || {
                Ok(
                    std::net::TcpStream::connect_timeout(&SocketAddr::from((WEB4, WEB_PORT)), t)
                        .err(),
                )
            })
        });
        let ws = names.ws.clone();
        let dns = std::thread::spawn(move || {
            // tor's DNSPort answers only once tor has the network.
            if !gateway || !after {
                return Ok(None);
            }
            sys::run_in(&ws, move || {
                Ok(servers::dns_answers(SocketAddr::from((GW_INT4, 53)), t).err())
            })
        });
        let gw = names.gw.clone();
        // With a bridge, tor's first hop is the bridge's obfs4 port.
        let guards: Vec<SocketAddr> = if bridge {
            let b = crate::plan::bridge_node();
            vec![SocketAddr::from((b.addr, crate::plan::BRIDGE_OBFS4_PORT))]
        } else {
            NODES
                .iter()
                .filter(|n| n.role == Role::Guard)
                .map(|n| SocketAddr::from((n.addr, n.or_port)))
                .collect()
        };
        let first_hops = if bridge {
            "its obfs4 bridge"
        } else {
            "its guards"
        };
        let g2 = guards.clone();
        let guard = std::thread::spawn(move || {
            if !check_guards {
                return Ok(None);
            }
            sys::run_in(&gw, move || sys::connect_as(tor_uid, tor_gid, &g2, t))
        });
        let join = |h: std::thread::JoinHandle<Result<Option<std::io::Error>, LabError>>| {
            h.join()
                .map_err(|_| LabError::Died("a gateway check panicked".into()))?
        };
        let mut out = Vec::new();
        if let Some(e) = join(trans)? {
            out.push(format!(
                "the workstation's TCP to {WEB4}:{WEB_PORT} was not answered ({e}): the ruleset does not redirect it to tor's TransPort {TRANS_PORT} ({GW_INT_IF}, `tcp flags & (fin|syn|rst|ack) == syn redirect to :{TRANS_PORT}`) or its input chain drops port {TRANS_PORT} on {GW_INT_IF}"
            ));
        }
        if let Some(e) = join(dns)? {
            out.push(format!(
                "the workstation's DNS to {GW_INT4}:53 was not answered ({e}): the ruleset does not redirect UDP 53 to tor's DNSPort {DNS_PORT} or its input chain drops port {DNS_PORT} on {GW_INT_IF}"
            ));
        }
        if let Some(e) = join(guard)? {
            let list: Vec<String> = guards.iter().map(|a| a.to_string()).collect();
            out.push(format!(
                "tor (uid {tor_uid}) cannot connect to {first_hops} ({}: {e}): the ruleset's output chain does not let uid {tor_uid} out; if it lets tor's uid out under another number, pass --tor-user UID",
                list.join(", ")
            ));
        }
        Ok(out)
    }

    /// The `Bridge` line of the lab's obfs4 bridge (waits up to 10 s for
    /// obfs4proxy to write it).
    pub fn bridge_line(&self) -> Result<String, LabError> {
        if !self.bridge_started {
            return Err(LabError::Tor(
                "the lab's obfs4 bridge was not started (Options::bridge)".into(),
            ));
        }
        let k = self
            .keys
            .iter()
            .find(|k| k.plan.role == Role::Bridge)
            .ok_or_else(|| LabError::Tor("the lab has no bridge".into()))?;
        tornet::bridge_line(k, Duration::from_secs(10))
    }

    /// [`gateway::configure_bridge`] with the lab bridge's line.
    pub fn configure_bridge(&self) -> Result<(), LabError> {
        gateway::configure_bridge(&self.state.names.gw, &self.bridge_line()?)
    }

    /// [`gateway::bridge_circuit`]: the gateway's tor connects through the
    /// lab bridge; returns how long until a circuit through it was built.
    pub fn bridge_circuit(&self) -> Result<Duration, LabError> {
        let fp = self
            .keys
            .iter()
            .find(|k| k.plan.role == Role::Bridge)
            .map(|k| k.fingerprint.clone())
            .ok_or_else(|| LabError::Tor("the lab has no bridge".into()))?;
        let (procs, td) = (self.state.processes.clone(), self.state.tmpdir.clone());
        gateway::bridge_circuit(&self.state.names.gw, &fp, Duration::from_secs(60), &|| {
            check_alive(&procs, &td)
        })
    }

    /// A host's works-check: an unprivileged process
    /// ([`crate::suite::UNPRIVILEGED_UID`]) on the host fetches the lab's
    /// page, resolving its name with the lab's resolver and connecting as
    /// any program would (`Check::Trans`: the ruleset must take both to
    /// tor), or through tor's SocksPort (`Check::Socks`); the web server
    /// must see an exit. `Check::None`: `None`.
    pub fn check_host(
        &self,
        check: crate::ruleset::Check,
    ) -> Result<Option<servers::Fetch>, LabError> {
        use crate::ruleset::Check;
        let token = self.token.clone();
        let uid = crate::suite::UNPRIVILEGED_UID;
        let f = match check {
            Check::None => return Ok(None),
            Check::Trans => sys::run_in(&self.state.names.gw, move || {
                sys::as_user(uid, uid, || {
                    servers::fetch_through(
                        SocketAddr::from((DNS4, 53)),
                        &token,
                        Duration::from_secs(30),
                    )
                })?
            })?,
            Check::Socks => {
                let port = self.gw_tor.as_ref().map_or(SOCKS_PORT, |g| g.socks_port);
                let socks = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
                sys::run_in(&self.state.names.gw, move || {
                    sys::as_user(uid, uid, || {
                        servers::fetch_socks(socks, &token, Duration::from_secs(30))
                    })?
                })?
            }
        };
        let exits: Vec<IpAddr> = exit_addrs().into_iter().map(IpAddr::V4).collect();
        if !exits.contains(&f.seen_as) {
            return Err(LabError::GatewayBroken(format!(
                "the web server saw {} instead of an exit's address ({exits:?})",
                f.seen_as
            )));
        }
        Ok(Some(f))
    }

    /// Fetches the lab page from the workstation through the gateway and checks
    /// that the web server saw an exit's address, not the gateway's.
    pub fn check_gateway(&self) -> Result<servers::Fetch, LabError> {
        let token = self.token.clone();
        let dns = SocketAddr::from((GW_INT4, 53));
        let f = sys::run_in(&self.state.names.ws, move || {
            servers::fetch_through(dns, &token, Duration::from_secs(30))
        })?;
        let exits: Vec<IpAddr> = exit_addrs().into_iter().map(IpAddr::V4).collect();
        if !exits.contains(&f.seen_as) {
            return Err(LabError::GatewayBroken(format!(
                "the web server saw {} instead of an exit's address ({exits:?})",
                f.seen_as
            )));
        }
        let log = std::fs::read_to_string(&self.web_log).unwrap_or_default();
        if !log.lines().any(|l| l == f.seen_as.to_string()) {
            return Err(LabError::GatewayBroken(
                "the web server's log does not show the request".into(),
            ));
        }
        Ok(f)
    }

    /// Leaves the lab up (for `--keep`): the state file stays, marked kept.
    pub fn keep(mut self) -> Result<State, LabError> {
        self.state.kept = true;
        self.state.save(&self.state_dir)?;
        self.done = true;
        Ok(self.state.clone())
    }

    /// Removes everything the lab made.
    pub fn teardown(&mut self) -> Result<(), LabError> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        if STOPPING.load(Ordering::SeqCst) {
            return Ok(()); // the signal handler removes everything from the state file
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(dir) = std::env::var_os(SAVE_LOGS_ENV) {
            // Only when asked: the logs leave the lab's directory on purpose.
            let _ = sys::run(
                std::process::Command::new("cp")
                    .arg("-a")
                    .arg(&self.state.tmpdir)
                    .arg(dir),
            );
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.state.remove(&self.state_dir)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("leaktest lab: teardown: {e}");
        }
    }
}

fn check_alive(procs: &[Tracked], tmp: &Path) -> Result<(), LabError> {
    for p in procs {
        if !p.alive() {
            let hint = tmp.display();
            return Err(LabError::Died(format!(
                "{} (pid {}) exited; logs under {hint}",
                p.what, p.pid
            )));
        }
    }
    Ok(())
}
