//! Transition scenarios: the gateway's policy changes while pulses run
//! (issue 10). The watch (`leaktest watch --run-at 1 COMMAND`) runs the
//! change in the gateway's namespace one second in; three pulses (`leaktest
//! probe --duration`, from the workstation and from the gateway as root and
//! as an unprivileged uid) run across it; the watch's timeline says what
//! leaked when.
//!
//! Scenarios, each with the way that is right and the way that leaks:
//! - `reload`: the policy replaced. Right: one `nft -f` of a file that
//!   flushes and loads in one transaction (nftables applies a file
//!   atomically). Wrong: `nft flush ruleset`, then the load 300 ms later
//!   (how many scripts `restart`): the gateway has no policy meanwhile.
//! - `boot`: from a closed gateway (everything dropped: no network yet),
//!   the firewall comes up. Right: the policy loaded in one transaction.
//!   Wrong: the network up with no policy first (`nft flush ruleset`), the
//!   firewall 300 ms later.
//! - `boot-bad-file`: the same, with a firewall file that has a syntax
//!   error. Right: the load fails as a whole and the gateway stays closed.
//!   Wrong: the network up with no policy first, then the load fails: the
//!   gateway stays open until the end.
//! - `tor-kill`: the gateway's tor killed (SIGKILL) and restarted by the
//!   lab 0.5 s later (an event on the watch's `--event-fifo` once it is
//!   back). Right: the firewall stays, and fails closed while tor is gone.
//!   Wrong: tor's service removes the firewall when tor stops and loads it
//!   again when it starts: open from the kill to the restart. The watcher's
//!   allowlist feed loses tor's control port and gets it back: events, not
//!   a blind watch.
//! - `fin-rst` (the FIN/RST check): the workstation holds
//!   [`FIN_RST_CONNECTIONS`] real TCP connections to the web server through
//!   the gateway's transparent proxy (redirected to tor's TransPort, on to
//!   an exit); 1 s into the watch the lab flushes the gateway's conntrack
//!   table (marked on the FIFO), then the client sends marked data and
//!   closes. Those segments are no new connection to the NAT any more.
//!   Right: the Whonix policy drops what it does not redirect. Wrong: a
//!   gateway whose filter accepts all TCP and whose NAT takes only SYNs
//!   (class 3, the `tcp-forward` profile): the data and the FINs leave for
//!   the web server with the workstation's address, the data attributed by
//!   its marker.
//! - `iface-bounce`: the uplink deleted and, 300 ms later, created again
//!   with the same names, MACs, addresses, routes and neighbour entry
//!   ([`crate::topology::recreate_uplink_script`]), as a re-plugged NIC or a
//!   re-created tunnel. The watch follows it (a deletion, announced by the
//!   kernel) and proves itself there. Right: the Whonix policy, whose rules
//!   name interfaces (`oifname`): PASS. Wrong: the same policy as a kill
//!   switch tied to the uplink's index ([`tied_to_index`]: `policy accept`
//!   and `oif "eth0" drop`, which nftables resolves to an ifindex at load):
//!   once the uplink is back, the gateway's own pulses leave (root's and the
//!   unprivileged uid's, no other pulse's).
//! - `bootstrap`: the gateway's tor with its network off (`DisableNetwork
//!   1`: every connection and circuit closed, its directory cached, as at
//!   boot); 1 s in the lab enables it (marked on the FIFO) and waits for
//!   its first BUILT circuit (marked too). Right: the Whonix policy
//!   throughout: PASS, and tor's new connections seen and counted as Tor
//!   (`tor.flows.started` > 0). Wrong: a bootstrap policy that also lets
//!   root out ([`open_to_root`]), replaced by the full one once tor has a
//!   circuit: root's pulse (and only root's) leaks from the start to then,
//!   nothing after.
//!
//! Expected: the right way PASS in every phase; the wrong way LEAK, nothing
//! before the change (bootstrap: nothing after it), every leaked packet
//! captured inside its window (from the command's start to its end; for
//! `boot-bad-file` and `iface-bounce`, to the end of the watch), and every
//! gateway-root pulse round sent well inside the window (`iface-bounce`:
//! after the uplink is back) leaked.

use crate::expect::Expectation;
use crate::lab::Lab;
use crate::profiles::Sweep;
use crate::suite::{io, probe_command, tail, wait_child, ProfileResult, SuiteOptions};
use crate::LabError;
use leaktest_watch::{Verdict, WatchReport};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// A scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Reload,
    Boot,
    BootBadFile,
    TorKill,
    FinRst,
    IfaceBounce,
    Bootstrap,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Reload,
        Scenario::Boot,
        Scenario::BootBadFile,
        Scenario::FinRst,
        Scenario::IfaceBounce,
        Scenario::Bootstrap,
        Scenario::TorKill,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Reload => "reload",
            Scenario::Boot => "boot",
            Scenario::BootBadFile => "boot-bad-file",
            Scenario::TorKill => "tor-kill",
            Scenario::FinRst => "fin-rst",
            Scenario::IfaceBounce => "iface-bounce",
            Scenario::Bootstrap => "bootstrap",
        }
    }

    pub fn about(self) -> &'static str {
        match self {
            Scenario::Reload => "the policy replaced under the pulses: one nft -f transaction, or flush then load 300 ms later",
            Scenario::Boot => "a closed gateway's firewall comes up: in one transaction, or the network first and the firewall 300 ms later",
            Scenario::BootBadFile => "the firewall file has a syntax error: the gateway stays closed, or it was opened first and stays open",
            Scenario::TorKill => "tor killed (SIGKILL) and restarted 0.5 s later: the firewall stays, or tor's service removes it on stop and loads it on start",
            Scenario::FinRst => "the FIN/RST check: connections through the transparent proxy end after conntrack forgot them; the Whonix policy keeps them in, a filter that accepts all TCP and NATs only SYNs lets them out",
            Scenario::IfaceBounce => "the uplink deleted and created again (same name, address, MAC): rules by interface name keep it closed, a kill switch tied to its index (nft oif) lets the gateway's own traffic out",
            Scenario::Bootstrap => "tor's network enabled under the pulses, through bootstrap to its first circuit: the firewall closed throughout (the bootstrap counted as Tor), or open to root until tor has a circuit",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// When the change runs, in seconds after the watch began.
pub const CHANGE_AT_S: f64 = 1.0;
/// How long each pulse runs (tor-kill: [`TOR_KILL_PULSE_S`]).
pub const PULSE_S: f64 = 2.5;
/// tor-kill: the FIN/RST check's client closes this long after the kill
/// (tor gone, not yet restarted).
const CLOSE_AFTER_KILL_S: f64 = 0.2;
/// tor-kill's pulses: long enough for the watcher's feed to reconnect to
/// the restarted tor (it retries every 2 s, `leaktest_tor::RECONNECT_EVERY`).
pub const TOR_KILL_PULSE_S: f64 = 4.5;
/// tor-kill: the restart, seconds after the kill.
const RESTART_AFTER_S: f64 = 0.5;
/// The wrong way's gap between opening and loading.
const GAP: &str = "0.3";

/// What to run: a scenario, done the right way or the wrong way, on the
/// policy `before` (nft text) replaced by `after`.
#[derive(Clone, Debug)]
pub struct Transition {
    pub scenario: Scenario,
    /// The right way (expected PASS) or the wrong way (expected LEAK).
    pub right: bool,
    /// The policy before (`reload`) and after, nftables text without a
    /// leading `flush ruleset`.
    pub before: String,
    pub after: String,
    /// sysctls of the policy (forwarding), applied with it.
    pub sysctls: Vec<(String, String)>,
    /// The name in the results: `reload (atomic)`, `reload (flush, then load)`.
    pub name: String,
    /// A user's ruleset done the right way: the verdict its author expects
    /// (`--expect`); `None` for the built-in policy (the right way must
    /// pass, the wrong way leak inside its window).
    pub expect: Option<Verdict>,
}

impl Transition {
    /// The right and the wrong way of `scenario` on one policy.
    pub fn both(
        scenario: Scenario,
        before: &str,
        after: &str,
        sysctls: &[(String, String)],
    ) -> [Transition; 2] {
        [true, false].map(|right| Transition {
            scenario,
            right,
            before: before.to_string(),
            after: after.to_string(),
            sysctls: sysctls.to_vec(),
            name: format!(
                "{} ({})",
                scenario.name(),
                match (scenario, right) {
                    (Scenario::Reload, true) => "atomic",
                    (Scenario::Reload, false) => "flush, then load",
                    (Scenario::Boot, true) => "firewall first",
                    (Scenario::Boot, false) => "network first",
                    (Scenario::BootBadFile, true) => "fails closed",
                    (Scenario::BootBadFile, false) => "fails open",
                    (Scenario::TorKill, true) => "firewall stays",
                    (Scenario::TorKill, false) => "firewall goes with tor",
                    (Scenario::FinRst, true) => "whonix",
                    (Scenario::FinRst, false) => "NAT of SYNs only",
                    (Scenario::IfaceBounce, true) => "rules by name",
                    (Scenario::IfaceBounce, false) => "kill switch by index",
                    (Scenario::Bootstrap, true) => "closed throughout",
                    (Scenario::Bootstrap, false) => "root open until a circuit",
                }
            ),
            expect: None,
        })
    }

    /// The right and the wrong way of `scenario` on the lab's policy
    /// `text` (nftables, without `flush ruleset`): both ways on `text`,
    /// except where the wrong way is another policy: `iface-bounce`'s
    /// index-tied kill switch ([`tied_to_index`]), `bootstrap`'s root
    /// opening ([`open_to_root`]; replaced by `text` once tor has a
    /// circuit). `None` if `text` lacks the chains those need.
    pub fn builtin(
        scenario: Scenario,
        text: &str,
        sysctls: &[(String, String)],
    ) -> Option<[Transition; 2]> {
        let [r, mut w] = Transition::both(scenario, text, text, sysctls);
        match scenario {
            Scenario::IfaceBounce => {
                let tied = tied_to_index(text, crate::plan::GW_EXT_IF)?;
                w.before = tied.clone();
                w.after = tied;
            }
            Scenario::Bootstrap => w.before = open_to_root(text)?,
            _ => {}
        }
        Some([r, w])
    }

    /// The FIN/RST check: on the policy `right` (expected PASS) and on
    /// `wrong` (expected LEAK), each with its sysctls.
    pub fn fin_rst(
        right: &str,
        right_sysctls: &[(String, String)],
        wrong: &str,
        wrong_sysctls: &[(String, String)],
    ) -> [Transition; 2] {
        let [r, mut w] = Transition::both(Scenario::FinRst, right, right, right_sysctls);
        w.before = wrong.to_string();
        w.after = wrong.to_string();
        w.sysctls = wrong_sysctls.to_vec();
        [r, w]
    }

    /// A user's ruleset `before`, changed to `after` the right way only,
    /// expected to get `expect`.
    pub fn of_ruleset(
        scenario: Scenario,
        name: &str,
        before: &str,
        after: &str,
        sysctls: &[(String, String)],
        expect: Verdict,
    ) -> Transition {
        let [mut right, _] = Transition::both(scenario, before, after, sysctls);
        right.name = format!("{} {name}", right.name);
        right.expect = Some(expect);
        right
    }

    fn expected(&self) -> Verdict {
        match (self.expect, self.right) {
            (Some(v), _) => v,
            (None, true) => Verdict::Pass,
            (None, false) => Verdict::Leak,
        }
    }
}

/// A gateway before its firewall and network are up: nothing in or out
/// but loopback (local services, tor's control port, still work).
const CLOSED: &str = "table inet leaktest_closed {
  chain input { type filter hook input priority filter; policy drop; iifname \"lo\" accept; }
  chain forward { type filter hook forward priority filter; policy drop; }
  chain output { type filter hook output priority filter; policy drop; oifname \"lo\" accept; }
}
";

/// `iface-bounce`'s wrong way: `policy` with its output and forward
/// chains turned into a kill switch tied to the uplink's index: `policy
/// accept` and a last rule `oif "UPLINK" drop`. While the uplink is the
/// one the rule was loaded for, it passes and drops what `policy` does on
/// the uplink; nftables resolves `oif` to an ifindex at load time, so
/// once the uplink is re-created (a new ifindex) the rule matches nothing
/// and everything leaves. (`oifname` compares the name per packet and
/// survives.) `None` if `policy` has no such chains with `policy drop`.
pub fn tied_to_index(policy: &str, uplink: &str) -> Option<String> {
    let mut out = policy.to_string();
    for chain in ["output", "forward"] {
        out = edit_chain(&out, chain, |lines| {
            let head = lines.first_mut()?;
            if !head.contains("policy drop;") {
                return None;
            }
            *head = head.replace("policy drop;", "policy accept;");
            lines.push(format!("    oif \"{uplink}\" drop"));
            Some(())
        })?;
    }
    Some(out)
}

/// `bootstrap`'s wrong way: `policy` that also lets root out (the last
/// rule of its output chain `meta skuid 0 accept`), as a gateway that lets
/// its clock sync or captive-portal login out in the clear until tor is
/// up. `None` if `policy` has no output chain.
pub fn open_to_root(policy: &str) -> Option<String> {
    edit_chain(policy, "output", |lines| {
        lines.push("    meta skuid 0 accept".into());
        Some(())
    })
}

/// `policy` with the body of its chain `name` (the lines between `chain
/// NAME {` and the line `}` that closes it, its `type … hook …` line
/// first) changed by `edit`; `None` if there is no such chain or `edit`
/// says `None`.
fn edit_chain(
    policy: &str,
    name: &str,
    edit: impl FnOnce(&mut Vec<String>) -> Option<()>,
) -> Option<String> {
    let lines: Vec<&str> = policy.lines().collect();
    let open = format!("chain {name} {{");
    let i = lines.iter().position(|l| l.trim() == open)?;
    let j = i + 1 + lines[i + 1..].iter().position(|l| l.trim() == "}")?;
    let mut body: Vec<String> = lines[i + 1..j].iter().map(|l| l.to_string()).collect();
    edit(&mut body)?;
    let mut out: Vec<String> = lines[..=i].iter().map(|l| l.to_string()).collect();
    out.extend(body);
    out.extend(lines[j..].iter().map(|l| l.to_string()));
    let mut text = out.join("\n");
    if policy.ends_with('\n') {
        text.push('\n');
    }
    Some(text)
}

/// Runs one transition and judges it.
pub fn run_transition(
    lab: &mut Lab,
    t: &Transition,
    opts: &SuiteOptions,
) -> Result<ProfileResult, LabError> {
    let t0 = Instant::now();
    let slug: String = t
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let dir = lab.state.tmpdir.join(format!("transition-{slug}"));
    std::fs::create_dir_all(&dir).map_err(io("creating the transition's directory"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        // The unprivileged pulse writes its JSON here.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))
            .map_err(io("chmod transition dir"))?;
    }
    let key = dir.join("key");
    let mut secret = [0u8; 16];
    getrandom::fill(&mut secret).expect("random source");
    std::fs::write(&key, format!("{}\n", hex::encode(secret))).map_err(io("writing key file"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))
            .map_err(io("chmod key"))?;
    }
    let write = |name: &str, text: &str| -> Result<std::path::PathBuf, LabError> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(io("writing a transition's ruleset"))?;
        Ok(p)
    };
    let atomic = write("after-atomic.nft", &format!("flush ruleset\n{}", t.after))?;
    let plain = write("after.nft", &t.after)?;
    // A syntax error after valid tables: nft applies nothing of it.
    let bad = write(
        "after-bad.nft",
        &format!(
            "{}\ntable inet broken {{ chain c {{ this is not nft }} }}\n",
            t.after
        ),
    )?;
    let sysctl_cmd: String = t
        .sysctls
        .iter()
        .map(|(k, v)| format!(" && sysctl -qw {k}={v}"))
        .collect();
    // The state before the change.
    let start_state = match t.scenario {
        Scenario::Reload
        | Scenario::TorKill
        | Scenario::FinRst
        | Scenario::IfaceBounce
        | Scenario::Bootstrap => {
            format!("flush ruleset\n{}", t.before)
        }
        Scenario::Boot | Scenario::BootBadFile => format!("flush ruleset\n{CLOSED}"),
    };
    let sysctls: Vec<(&str, &str)> = t
        .sysctls
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    lab.apply_ruleset(&start_state, &sysctls)?;
    let d = |p: &Path| p.display().to_string();
    let command = match (t.scenario, t.right) {
        (Scenario::Reload | Scenario::Boot, true) => format!("nft -f {}{sysctl_cmd}", d(&atomic)),
        (Scenario::Reload | Scenario::Boot, false) => {
            format!(
                "nft flush ruleset && sleep {GAP} && nft -f {}{sysctl_cmd}",
                d(&plain)
            )
        }
        // The load fails; what stays is what was there.
        (Scenario::BootBadFile, true) => format!("! nft -f {}", d(&bad)),
        (Scenario::BootBadFile, false) => format!("nft flush ruleset && ! nft -f {}", d(&bad)),
        (Scenario::TorKill, right) => {
            let tor = lab
                .state
                .processes
                .iter()
                .find(|p| p.what == "gateway tor")
                .ok_or_else(|| LabError::Died("no gateway tor to kill".into()))?;
            if right {
                format!("kill -9 {}", tor.pid)
            } else {
                // Its service's stop hook.
                format!("kill -9 {} && nft flush ruleset", tor.pid)
            }
        }
        // The lab flushes conntrack itself (no conntrack tool here) and
        // marks it on the FIFO; nothing runs at 1 s.
        (Scenario::FinRst, _) => String::new(),
        // The same way both times: what differs is the policy.
        (Scenario::IfaceBounce, _) => {
            let script = write(
                "recreate-uplink.sh",
                &crate::topology::recreate_uplink_script(&lab.state.names),
            )?;
            format!("sh {}", d(&script))
        }
        // The lab enables tor's network itself and marks it on the FIFO.
        (Scenario::Bootstrap, _) => String::new(),
    };
    let fifo = dir.join("events");
    let pulse_s = match t.scenario {
        Scenario::TorKill => TOR_KILL_PULSE_S,
        Scenario::Bootstrap => BOOTSTRAP_PULSE_S,
        _ => PULSE_S,
    };
    let names = lab.state.names.clone();
    let sweeps = if t.scenario == Scenario::FinRst {
        // Its connections alone: a pulse through a gateway that forwards
        // TCP would leak before the change.
        &[][..]
    } else if opts.local_sweeps {
        &Sweep::ALL[..]
    } else {
        &[Sweep::Workstation][..]
    };
    let mut pulses: Vec<(Sweep, std::path::PathBuf)> = Vec::new();
    let steps = std::cell::RefCell::new(Vec::<(String, f64)>::new());
    let step = |what: &str, since: Instant| {
        steps
            .borrow_mut()
            .push((what.to_string(), since.elapsed().as_secs_f64()));
    };
    let mut extra = Vec::new();
    if !command.is_empty() {
        extra.extend([
            "--run-at".to_string(),
            format!("{CHANGE_AT_S}"),
            command.clone(),
        ]);
    }
    if matches!(
        t.scenario,
        Scenario::TorKill | Scenario::FinRst | Scenario::Bootstrap
    ) {
        extra.extend(["--event-fifo".to_string(), fifo.display().to_string()]);
    }
    // The FIN/RST check's connections, open before the watch begins.
    let fin_rst_run = {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("random source");
        u64::from_be_bytes(b)
    };
    if t.scenario == Scenario::Bootstrap {
        // Tor as at boot: its network off (it closes every connection and
        // circuit), its cached directory kept.
        crate::gateway::disable_network(&lab.state.names.gw)?;
    }
    // The FIN/RST check runs in fin-rst and in tor-kill (its connections
    // end after tor was killed: the client closes after the proxy is gone).
    let client = if matches!(t.scenario, Scenario::FinRst | Scenario::TorKill) {
        Some(start_fin_rst_client(lab, &opts.exe, &dir, fin_rst_run)?)
    } else {
        None
    };
    let report: WatchReport = crate::suite::watch_while_with(
        lab,
        opts,
        &dir,
        "watch",
        &key,
        &[],
        &extra,
        &step,
        &mut |lab| {
            let tp = Instant::now();
            let mut children = Vec::new();
            for &sweep in sweeps {
                let json = dir.join(format!("pulse-{}.json", sweep.name()));
                let log = dir.join(format!("pulse-{}.log", sweep.name()));
                let mut cmd = probe_command(
                    &names,
                    &opts.exe,
                    sweep,
                    &key,
                    &json,
                    &opts.probe_rate,
                    None,
                )?;
                cmd.args(["--duration", &format!("{pulse_s}")]);
                let (child, tr) = lab.spawn_tracked(
                    cmd,
                    &log,
                    &format!("leaktest probe --duration ({})", sweep.name()),
                )?;
                children.push((sweep, child, tr, log));
                pulses.push((sweep, json));
            }
            let mut failed = None;
            if t.scenario == Scenario::TorKill {
                if let Some(c) = &client {
                    // Tor is gone (killed at the change): its connections'
                    // client sends its data and closes.
                    let at = tp + Duration::from_secs_f64(CHANGE_AT_S + CLOSE_AFTER_KILL_S);
                    while Instant::now() < at {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    if let Err(e) = std::fs::write(&c.go, b"")
                        .map_err(io("telling the FIN/RST client to close"))
                    {
                        failed = Some(e);
                    }
                }
                if let Err(e) = restart_tor(lab, tp, &atomic, !t.right, &fifo) {
                    failed.get_or_insert(e);
                }
            } else if let Some(c) = &client {
                if let Err(e) = end_fin_rst_connections(lab, tp, c, &fifo) {
                    failed = Some(e);
                }
            }
            if t.scenario == Scenario::Bootstrap {
                if let Err(e) = bootstrap_tor(lab, tp, &atomic, !t.right, &fifo) {
                    failed = Some(e);
                }
            }
            for (sweep, mut child, tr, log) in children {
                let st = wait_child(
                    &mut child,
                    &tr,
                    Duration::from_secs(60),
                    "leaktest probe --duration",
                );
                lab.untrack(&tr)?;
                match st {
                    Ok(s) if s.success() => {}
                    Ok(s) => {
                        failed.get_or_insert(LabError::Died(format!(
                            "the {} pulse failed ({s}): {}",
                            sweep.name(),
                            tail(&log)
                        )));
                    }
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            step("pulses", tp);
            match failed {
                Some(e) => Err(e),
                None => Ok(()),
            }
        },
    )?;
    let mut runs: BTreeMap<String, String> = BTreeMap::new();
    let mut round_times: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (sweep, json) in &pulses {
        let text = std::fs::read_to_string(json).map_err(io("reading a pulse's report"))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            LabError::Died(format!("{} is not a probe report: {e}", json.display()))
        })?;
        let run = v["run_id"].as_str().unwrap_or_default().to_string();
        let times = v["pulse"]["round_sent_unix_ns"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
            .unwrap_or_default();
        runs.insert(sweep.name().to_string(), run.clone());
        round_times.insert(run, times);
    }
    let mut fin_rst_ports = Vec::new();
    let mut fin_rst_summary = None;
    if let Some(c) = client {
        let mut child = c.child.into_inner();
        let st = wait_child(
            &mut child,
            &c.tracked,
            Duration::from_secs(10),
            "the FIN/RST client",
        );
        lab.untrack(&c.tracked)?;
        match st {
            Ok(s) if s.success() => {}
            Ok(s) => {
                return Err(LabError::Died(format!(
                    "the FIN/RST client failed ({s}): {}",
                    tail(&c.log)
                )))
            }
            Err(e) => return Err(e),
        }
        runs.insert("fin-rst".into(), format!("{fin_rst_run:016x}"));
        let (ports, summary) = fin_rst_ports_of(&dir.join("fin-rst.json"))?;
        fin_rst_ports = ports;
        fin_rst_summary = Some(summary);
    }
    let mut mismatches = judge(t, &report, &runs, &round_times, &fin_rst_ports);
    match report.events.iter().find(|e| e.source == "run-at") {
        None if command.is_empty() => {}
        None => mismatches.push("the change never ran".into()),
        Some(e) if e.problem.is_some() => mismatches.push(format!(
            "the change ({command}) {}",
            e.problem.as_deref().unwrap_or_default()
        )),
        Some(e) if e.exit_code != Some(0) => {
            mismatches.push(format!("the change ({command}) exited {:?}", e.exit_code))
        }
        Some(_) => {}
    }
    let start_ns = report.watch_start_unix_ns.unwrap_or(0);
    // The change by its files' names, not their scratch directory.
    let label = command.replace(&format!("{}/", dir.display()), "");
    let findings: Vec<String> = report
        .phases
        .iter()
        .map(|p| p.line(start_ns).replacen(&command, &label, 1))
        .chain(fin_rst_summary)
        .collect();
    let got = Some(report.verdict);
    Ok(ProfileResult {
        profile: format!("transition {}", t.name),
        expected: t.expected(),
        got,
        matched: mismatches.is_empty() && got == Some(t.expected()),
        mismatches,
        findings,
        expected_leaks: Expectation::nothing().summary(),
        seconds: t0.elapsed().as_secs_f64(),
        runs,
        resent: 0,
        reports: vec![report],
        gateway_check: None,
        steps: steps.into_inner(),
    })
}

/// What is wrong with a transition's watch: the right way must pass in
/// every phase; the wrong way must leak, only inside its window, from
/// every gateway-root round sent well inside it. Pure (tested below).
pub fn judge(
    t: &Transition,
    r: &WatchReport,
    runs: &BTreeMap<String, String>,
    round_times: &BTreeMap<String, Vec<u64>>,
    fin_rst_ports: &[u16],
) -> Vec<String> {
    let mut m = Vec::new();
    // The FIN/RST check's segments: its marked data (by its run) and
    // anything from its connections' source ports to the web server.
    let fin_rst_leaks = |r: &WatchReport| -> (usize, usize) {
        let run = runs.get("fin-rst");
        let is_data = |l: &leaktest_watch::report::LeakReport| {
            run.is_some_and(|run| l.probe.as_ref().is_some_and(|p| &p.run == run))
        };
        // Unattributed segments of the workstation's connections: a pulse
        // probe from another host may share a source port by chance.
        let from_ports = |l: &leaktest_watch::report::LeakReport| {
            l.probe.is_none()
                && l.src == crate::plan::WS4.to_string()
                && l.dst == crate::plan::WEB4.to_string()
                && l.src_port.is_some_and(|p| fin_rst_ports.contains(&p))
        };
        let data = r.leaks.iter().filter(|l| is_data(l)).count();
        let fins = r
            .leaks
            .iter()
            .filter(|l| is_data(l) || from_ports(l))
            .filter(|l| l.tcp_flags.as_deref().is_some_and(|f| f.contains('F')))
            .count();
        (data, fins)
    };
    if t.scenario == Scenario::TorKill && runs.contains_key("fin-rst") {
        // Tor's end closed its side; the client's data and FIN still
        // match the connections' conntrack entries (their redirect kept
        // even when the firewall went with tor): they never leave.
        let (data, fins) = fin_rst_leaks(r);
        if data + fins > 0 {
            m.push(format!(
                "the FIN/RST check's connections leaked after tor was killed: {data} marked data, {fins} FIN segment(s)"
            ));
        }
    }
    if t.expect == Some(Verdict::Leak) {
        // A user's pinned LEAK: the verdict is what is pinned.
        if r.verdict != Verdict::Leak {
            m.push(format!("verdict {} instead of LEAK", r.verdict));
        }
        return m;
    }
    // The pulses ran across the change: each sent rounds before it began
    // and after it ended (else a PASS would prove nothing about it).
    if t.scenario != Scenario::FinRst {
        let fifo: Vec<&leaktest_watch::timeline::Event> =
            r.events.iter().filter(|e| e.source == "fifo").collect();
        // From the change's start to its end: bootstrap's from the network
        // enabled to tor's first circuit.
        let change = match t.scenario {
            Scenario::Bootstrap => {
                fifo.first()
                    .zip(fifo.last())
                    .map(|(a, b)| leaktest_watch::timeline::Event {
                        end_unix_ns: Some(b.start_unix_ns),
                        ..(*a).clone()
                    })
            }
            _ => r.events.iter().find(|e| e.source == "run-at").cloned(),
        };
        for (sweep, run) in runs.iter().filter(|(k, _)| *k != "fin-rst") {
            let times = round_times.get(run).map(Vec::as_slice).unwrap_or(&[]);
            let (Some(first), Some(last)) = (times.first(), times.last()) else {
                m.push(format!("the {sweep} pulse sent no round"));
                continue;
            };
            if let Some(e) = &change {
                let end = e.end_unix_ns.unwrap_or(e.start_unix_ns);
                if *first >= e.start_unix_ns || *last <= end {
                    m.push(format!(
                        "the {sweep} pulse did not span the change (rounds from {:+.0} to {:+.0} ms of it)",
                        (*first as f64 - e.start_unix_ns as f64) / 1e6,
                        (*last as f64 - e.start_unix_ns as f64) / 1e6
                    ));
                }
            }
        }
    }
    let circuit = r
        .events
        .iter()
        .find(|e| e.source == "fifo" && e.name.starts_with("tor has a circuit"));
    if t.scenario == Scenario::Bootstrap && circuit.is_none() {
        m.push("tor built no circuit during the watch".into());
    }
    if t.scenario == Scenario::IfaceBounce
        && !r
            .events
            .iter()
            .any(|e| e.source == "link" && e.name.contains("re-created"))
    {
        m.push("the watch did not follow the re-created uplink".into());
    }
    if t.right {
        if r.verdict != Verdict::Pass {
            m.push(format!("verdict {} instead of PASS", r.verdict));
        }
        for p in &r.phases {
            if p.verdict != Verdict::Pass {
                m.push(format!("phase '{}' is {}, not PASS", p.name, p.verdict));
            }
        }
        // The bootstrap was seen, and counted as Tor: new connections of
        // tor's, followed from their SYN.
        if t.scenario == Scenario::Bootstrap && r.tor.flows.started == 0 {
            m.push(format!(
                "no Tor connection was opened during the bootstrap (Tor packets {})",
                r.tor.packets
            ));
        }
        return m;
    }
    if r.verdict != Verdict::Leak {
        m.push(format!("verdict {} instead of LEAK", r.verdict));
    }
    let change = match t.scenario {
        Scenario::FinRst | Scenario::Bootstrap => "fifo",
        _ => "run-at",
    };
    let Some(e) = r.events.iter().find(|e| e.source == change) else {
        m.push("no event: the change never ran".into());
        return m;
    };
    if t.scenario == Scenario::Bootstrap {
        // Open from the start: closed once the full firewall loaded.
        if r.phases.last().is_some_and(|p| p.verdict != Verdict::Pass) {
            m.push(format!(
                "after the full firewall loaded: {}",
                r.phases.last().map_or(Verdict::Pass, |p| p.verdict)
            ));
        }
    } else if r.phases.first().is_some_and(|p| p.verdict != Verdict::Pass) {
        m.push(format!("before the change: {}", r.phases[0].verdict));
    }
    // Whose probes may leak: root's pulse when root was let out, the
    // gateway's own pulses when its output chain stopped matching. (What
    // the kernel sends because of them, unattributed, is checked by the
    // window alone: RSTs to the answers of leaked SYNs, ARP for them.)
    let leakers: Option<Vec<&str>> = match t.scenario {
        Scenario::Bootstrap => Some(vec![Sweep::GatewayRoot.name()]),
        Scenario::IfaceBounce => Some(vec![Sweep::GatewayRoot.name(), Sweep::GatewayUser.name()]),
        _ => None,
    };
    if let Some(who) = &leakers {
        let allowed: Vec<&String> = who.iter().filter_map(|w| runs.get(*w)).collect();
        let other: Vec<&leaktest_watch::report::LeakReport> = r
            .leaks
            .iter()
            .filter(|l| l.probe.as_ref().is_some_and(|p| !allowed.contains(&&p.run)))
            .collect();
        if !other.is_empty() {
            let first = other[0];
            m.push(format!(
                "{} leak(s) of another pulse than the {}, e.g. {} {} to {} ({}: {}; run {})",
                other.len(),
                who.join(" or "),
                first.kind(),
                first.src,
                first.dst,
                first.cause,
                first.cause_detail,
                first.probe.as_ref().map_or("none", |p| p.run.as_str())
            ));
        }
    }
    // Rounds sent in the window (after `rounds_from`) must all leak.
    let mut rounds_from = None;
    let (start, end) = match t.scenario {
        // Open until the end of the watch.
        Scenario::BootBadFile => (e.start_unix_ns, u64::MAX),
        // Open until the restart loaded the firewall again (the lab marks
        // it on the FIFO once it has).
        // The connections' ends may come any time after the flush.
        Scenario::FinRst => (e.start_unix_ns, u64::MAX),
        // From the watch's start to the full firewall's load.
        Scenario::Bootstrap => (
            r.watch_start_unix_ns.unwrap_or(0),
            circuit.map_or(u64::MAX, |c| c.start_unix_ns),
        ),
        // Nothing leaves while the uplink is gone; once it is back, the
        // index-tied rule never matches again.
        Scenario::IfaceBounce => {
            rounds_from = e.end_unix_ns;
            (e.start_unix_ns, u64::MAX)
        }
        Scenario::TorKill => (
            e.start_unix_ns,
            r.events
                .iter()
                .find(|e| e.source == "fifo")
                .map_or(u64::MAX, |e| e.start_unix_ns),
        ),
        _ => (e.start_unix_ns, e.end_unix_ns.unwrap_or(u64::MAX)),
    };
    let mut outside = 0u64;
    let mut leaked_rounds: BTreeMap<String, std::collections::BTreeSet<u32>> = BTreeMap::new();
    for l in &r.leaks {
        let at = l.ts_sec * 1_000_000_000 + u64::from(l.ts_nsec);
        if !(start..=end).contains(&at) {
            outside += 1;
            if outside <= 3 {
                m.push(format!(
                    "a leak outside the window, {:+.1} ms from the change: {} to {}",
                    (at as f64 - start as f64) / 1e6,
                    l.kind(),
                    l.dst
                ));
            }
        }
        if let Some(p) = &l.probe {
            if let Some(round) = p.round {
                leaked_rounds
                    .entry(p.run.clone())
                    .or_default()
                    .insert(round);
            }
        }
    }
    if outside > 3 {
        m.push(format!("{outside} leaks outside the window in all"));
    }
    if r.leak_packets == 0 {
        m.push("nothing leaked".into());
    }
    if r.leaks_truncated {
        m.push("the leak details were cut short: the window cannot be checked".into());
    }
    if t.scenario == Scenario::FinRst {
        // The connections' data, by its marker, and their FINs, by their
        // source ports, to the web server.
        let (data, fins) = fin_rst_leaks(r);
        if data == 0 {
            m.push("no marked data of the connections to the web server leaked".into());
        }
        if fins == 0 {
            m.push("no FIN of the connections to the web server leaked".into());
        }
        return m;
    }
    // Every gateway-root round sent well inside the window leaked.
    if let Some(run) = runs.get(Sweep::GatewayRoot.name()) {
        let got = leaked_rounds.get(run);
        for (round, sent) in round_times.get(run).into_iter().flatten().enumerate() {
            let from = rounds_from.unwrap_or(start);
            let inside =
                *sent > from.saturating_add(50_000_000) && sent.saturating_add(50_000_000) < end;
            if inside && !got.is_some_and(|g| g.contains(&(round as u32))) {
                m.push(format!(
                    "gw-root pulse round {round}, sent inside the window, did not leak"
                ));
                break;
            }
        }
    }
    m
}

/// The source ports of the FIN/RST client's connections, from its JSON
/// report (`connections[].local`, `ADDR:PORT`), and a line on how they
/// ended: `FIN/RST check: 4 connections from ports 40312-40318: data 4,
/// FIN 4, RST 4`, with the first error if any.
fn fin_rst_ports_of(json: &Path) -> Result<(Vec<u16>, String), LabError> {
    let text = std::fs::read_to_string(json).map_err(io("reading the FIN/RST client's report"))?;
    let r: leaktest_send::finrst::FinRstReport = serde_json::from_str(&text)
        .map_err(|e| LabError::Died(format!("{} is not a fin-rst report: {e}", json.display())))?;
    let ports: Vec<u16> = r
        .connections
        .iter()
        .filter_map(|c| c.local.rsplit(':').next()?.parse().ok())
        .collect();
    let count = |f: &dyn Fn(&leaktest_send::finrst::FinRstConnection) -> bool| {
        r.connections.iter().filter(|c| f(c)).count()
    };
    let mut line = format!(
        "FIN/RST check: {} connection(s) from port(s) {}: data {}, FIN {}, RST {}",
        r.connections.len(),
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        count(&|c| c.data_unix_ns.is_some()),
        count(&|c| c.fin_unix_ns.is_some()),
        count(&|c| c.rst_unix_ns.is_some()),
    );
    if let Some(e) = r.connections.iter().find_map(|c| c.error.as_deref()) {
        line.push_str(&format!(" (first error: {e})"));
    }
    Ok((ports, line))
}

/// tor-kill: once the kill has had its time, waits for the killed tor to be
/// gone, starts the gateway tor again (tracked; its control port up),
/// loads the firewall again if `reload` (the wrong way's start hook), and
/// marks the moment on the watch's FIFO. `t_work` is when the pulses began
/// (just after the watch was ready, at about its start).
fn restart_tor(
    lab: &mut Lab,
    t_work: Instant,
    atomic: &Path,
    reload: bool,
    fifo: &Path,
) -> Result<(), LabError> {
    let at = t_work + Duration::from_secs_f64(CHANGE_AT_S + RESTART_AFTER_S);
    while Instant::now() < at {
        std::thread::sleep(Duration::from_millis(10));
    }
    let old = lab
        .state
        .processes
        .iter()
        .find(|p| p.what == "gateway tor")
        .cloned()
        .ok_or_else(|| LabError::Died("no gateway tor".into()))?;
    // Gone (or a zombie) within 2 s of the kill.
    let gone = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|st| {
                st.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while !gone(old.pid) {
        if Instant::now() > deadline {
            return Err(LabError::Died(format!(
                "the gateway tor (pid {}) survived kill -9",
                old.pid
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    lab.untrack(&old)?;
    let g = lab
        .gw_tor
        .clone()
        .ok_or_else(|| LabError::Died("no gateway tor".into()))?;
    let ns = lab.state.names.gw.clone();
    let tmp = lab.state.tmpdir.clone();
    let t = crate::gateway::start(&ns, &tmp, &g)?;
    lab.track(t)?;
    let procs = lab.state.processes.clone();
    crate::gateway::wait_control(&ns, Duration::from_secs(10), &|| {
        if procs.iter().all(|p| p.alive()) {
            Ok(())
        } else {
            Err(LabError::Died(
                "a lab process died while tor restarted".into(),
            ))
        }
    })?;
    // As a service manager restarts it: with its network (the lab's torrc
    // starts tor with DisableNetwork 1).
    crate::gateway::enable_network(&ns)?;
    if reload {
        crate::sys::run(crate::sys::ns_command(&ns, "nft")?.arg("-f").arg(atomic))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"tor restarted\n"))
        .map_err(io("writing the restart to the watch's FIFO"))?;
    Ok(())
}

/// bootstrap's pulses: tor's network is enabled at [`CHANGE_AT_S`]; its
/// first circuit came 0.2-1 s later in most lab runs (cached directory),
/// once more than 2.5 s; the pulses must outlast the longest wait.
pub const BOOTSTRAP_PULSE_S: f64 = 6.0;
/// bootstrap: longest wait for the first circuit after the network is on.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_millis(4500);

/// bootstrap: at the change's time enables the gateway tor's network
/// (marked on the FIFO), waits for its first BUILT circuit (`GETINFO
/// circuit-status`), loads the full firewall if `close` (the wrong way's
/// root opening ends), and marks that on the FIFO.
fn bootstrap_tor(
    lab: &mut Lab,
    t_work: Instant,
    full: &Path,
    close: bool,
    fifo: &Path,
) -> Result<(), LabError> {
    let at = t_work + Duration::from_secs_f64(CHANGE_AT_S);
    while Instant::now() < at {
        std::thread::sleep(Duration::from_millis(10));
    }
    let ns = lab.state.names.gw.clone();
    let mark = |what: &str| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(fifo)
            .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{what}\n").as_bytes()))
            .map_err(io("writing to the watch's FIFO"))
    };
    crate::gateway::enable_network(&ns)?;
    mark("tor network enabled")?;
    let procs = lab.state.processes.clone();
    crate::gateway::wait_circuit(&ns, BOOTSTRAP_TIMEOUT, &|| {
        if procs.iter().all(|p| p.alive()) {
            Ok(())
        } else {
            Err(LabError::Died(
                "a lab process died while tor bootstrapped".into(),
            ))
        }
    })?;
    if close {
        crate::sys::run(crate::sys::ns_command(&ns, "nft")?.arg("-f").arg(full))?;
        mark("tor has a circuit; full firewall loaded")
    } else {
        mark("tor has a circuit")
    }
}

/// Connections the FIN/RST check holds through the transparent proxy.
pub const FIN_RST_CONNECTIONS: usize = 4;

/// The FIN/RST check's client in the workstation: `leaktest fin-rst`
/// ([`leaktest_send::finrst`]) with [`FIN_RST_CONNECTIONS`] connections to
/// the web server (redirected to tor's TransPort), held until the `go`
/// file appears (at most 20 s), then each sends the payload marker of run
/// `run` (probe `tcp [A]` to port 80 under its open key) and closes (a
/// FIN); 0.5 s later it aborts them (a RST), so nothing of them is
/// retransmitted into a later watch.
struct FinRstClient {
    child: std::cell::RefCell<std::process::Child>,
    tracked: crate::sys::Tracked,
    go: std::path::PathBuf,
    log: std::path::PathBuf,
}

fn start_fin_rst_client(
    lab: &mut Lab,
    exe: &Path,
    dir: &Path,
    run: u64,
) -> Result<FinRstClient, LabError> {
    let go = dir.join("fin-rst.go");
    let log = dir.join("fin-rst.log");
    let names = lab.state.names.clone();
    let mut cmd = crate::sys::ns_command(&names.ws, &exe.display().to_string())?;
    cmd.args(["fin-rst", "--target"])
        .arg(crate::plan::WEB4.to_string())
        .args(["--port", &crate::plan::WEB_PORT.to_string()])
        .args(["--connections", &FIN_RST_CONNECTIONS.to_string()])
        .args(["--hold", "20", "--connect-timeout", "5"])
        .args(["--run-id", &format!("{run:016x}")])
        .arg("--close-on")
        .arg(&go)
        .arg("--json")
        .arg(dir.join("fin-rst.json"));
    let (child, tracked) = lab.spawn_tracked(cmd, &log, "the FIN/RST client")?;
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("connected")) {
            break;
        }
        let ended = child.try_wait().map_err(io("the FIN/RST client"))?;
        if ended.is_some() || Instant::now() > deadline {
            if ended.is_none() {
                tracked.stop(Duration::from_secs(1));
                let _ = child.wait();
            }
            lab.untrack(&tracked)?;
            return Err(LabError::Died(format!(
                "the FIN/RST client could not connect through the gateway: {}",
                tail(&log)
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(FinRstClient {
        child: std::cell::RefCell::new(child),
        tracked,
        go,
        log,
    })
}

/// At the change's time: forgets the gateway's connections (its conntrack
/// table flushed), marks it on the FIFO, and 0.3 s later lets the client
/// send its data and close.
fn end_fin_rst_connections(
    lab: &mut Lab,
    t_work: Instant,
    c: &FinRstClient,
    fifo: &Path,
) -> Result<(), LabError> {
    let at = t_work + Duration::from_secs_f64(CHANGE_AT_S);
    while Instant::now() < at {
        std::thread::sleep(Duration::from_millis(10));
    }
    crate::sys::conntrack_flush(&lab.state.names.gw)?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"conntrack flushed\n"))
        .map_err(io("writing to the watch's FIFO"))?;
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&c.go, b"").map_err(io("telling the FIN/RST client to close"))?;
    // Its segments out, and their retransmissions' first round.
    let deadline = Instant::now() + Duration::from_secs(5);
    while c
        .child
        .borrow_mut()
        .try_wait()
        .map_err(io("the FIN/RST client"))?
        .is_none()
    {
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaktest_watch::report::{AllowlistSummary, LeakReport, ProbeReport};
    use leaktest_watch::timeline::{Event, Phase};
    use leaktest_watch::{
        CaptureHealth, CaptureStats, Findings, FlowStats, LeakFamily, Rule, WatchOutcome,
    };

    const S: u64 = 1_000_000_000;
    /// The watch's start, in Unix ns.
    const T0: u64 = 1_700_000_000 * S;

    fn policy() -> String {
        let p = crate::profiles::Policy::WHONIX.ruleset(102);
        p.strip_prefix("flush ruleset\n").unwrap().to_string()
    }

    #[test]
    fn an_index_tied_kill_switch_is_the_policy_with_oif() {
        let p = policy();
        let t = tied_to_index(&p, "eth0").unwrap();
        for chain in ["output", "forward"] {
            let at = t.find(&format!("chain {chain} {{")).unwrap();
            let body = &t[at..at + t[at..].find("\n}").or(t[at..].find("\n  }")).unwrap()];
            assert!(body.contains("policy accept;"), "{body}");
            assert!(!body.contains("policy drop;"), "{body}");
            assert!(body.ends_with("    oif \"eth0\" drop"), "{body}");
        }
        // Everything else as it was: the input chain still drops.
        assert!(t.contains("type filter hook input priority filter; policy drop;"));
        assert_eq!(
            t.replace(
                "hook output priority filter; policy accept;",
                "hook output priority filter; policy drop;"
            )
            .replace(
                "hook forward priority filter; policy accept;",
                "hook forward priority filter; policy drop;"
            )
            .replace("    oif \"eth0\" drop\n", ""),
            p
        );
        assert_eq!(tied_to_index("table inet x { }", "eth0"), None);
    }

    #[test]
    fn opening_to_root_adds_one_rule_to_output() {
        let p = policy();
        let o = open_to_root(&p).unwrap();
        assert_eq!(o.replace("    meta skuid 0 accept\n", ""), p);
        let at = o.find("chain output {").unwrap();
        let body = &o[at..at + o[at..].find("\n}").or(o[at..].find("\n  }")).unwrap()];
        assert!(body.ends_with("    meta skuid 0 accept"), "{body}");
        assert_eq!(open_to_root("table inet x { }"), None);
    }

    fn report(verdict: Verdict) -> WatchReport {
        let f = Findings::new();
        let h = CaptureHealth::default();
        let mut r = WatchReport::build(&WatchOutcome {
            iface: "eth0",
            findings: &f,
            health: &h,
            flows: FlowStats::default(),
            allowlist: &AllowlistSummary::default(),
            allow: &[],
            stats: CaptureStats::default(),
            elapsed_s: 4.0,
            interrupted: false,
            pcap_frames: 0,
        });
        r.verdict = verdict;
        r.watch_start_unix_ns = Some(T0);
        r
    }

    fn event(source: &str, name: &str, at_ms: u64, ran_ms: Option<u64>) -> Event {
        Event {
            name: name.into(),
            source: source.into(),
            at_s: at_ms as f64 / 1e3,
            start_unix_ns: T0 + at_ms * 1_000_000,
            end_unix_ns: ran_ms.map(|r| T0 + (at_ms + r) * 1_000_000),
            exit_code: Some(0),
            problem: None,
        }
    }

    fn phase(name: &str, verdict: Verdict) -> Phase {
        Phase {
            name: name.into(),
            from_unix_ns: T0,
            to_unix_ns: None,
            verdict,
            leak_packets: 0,
            probe_leak_packets: 0,
            first_leak_ms: None,
            last_leak_ms: None,
            rounds: None,
            what: vec![],
        }
    }

    fn leak(run: &str, round: u32, at_ms: u64) -> LeakReport {
        LeakReport {
            family: LeakFamily::Ipv4,
            protocol: Some(17),
            src: "198.51.100.2".into(),
            dst: "203.0.113.7".into(),
            src_port: Some(40000),
            dst_port: Some(53),
            icmp_type: None,
            tcp_flags: None,
            probe: Some(ProbeReport {
                run: run.into(),
                seq: 1,
                suite: "udp".into(),
                family: "ipv4".into(),
                protocol: 17,
                dst_port: Some(53),
                tcp_flags: None,
                icmp_type: None,
                icmp_code: None,
                detail: None,
                evidence: "payload".into(),
                key_mode: leaktest_wire::marker::KeyMode::Shared,
                round: Some(round),
            }),
            cause: "probe".into(),
            cause_detail: String::new(),
            rule: Rule::ProbeMarker,
            ts_sec: (T0 + at_ms * 1_000_000) / S,
            ts_nsec: ((T0 + at_ms * 1_000_000) % S) as u32,
            len: 60,
            fragment: false,
            src_mac: None,
            dst_mac: None,
            ethertype: None,
            vlan: None,
            event: None,
            since_event_ms: None,
        }
    }

    /// Three pulses (ws, gw-root, gw-user), rounds every 100 ms from 0.2 s
    /// to 3.9 s after the watch began.
    fn pulses() -> (BTreeMap<String, String>, BTreeMap<String, Vec<u64>>) {
        let mut runs = BTreeMap::new();
        let mut times = BTreeMap::new();
        for (i, sweep) in Sweep::ALL.iter().enumerate() {
            let run = format!("{:016x}", i + 1);
            runs.insert(sweep.name().to_string(), run.clone());
            times.insert(
                run,
                (0..38)
                    .map(|r| T0 + 200_000_000 + r * 100_000_000)
                    .collect(),
            );
        }
        (runs, times)
    }

    fn transition(sc: Scenario, right: bool) -> Transition {
        let p = policy();
        let [r, w] = Transition::builtin(sc, &p, &[]).unwrap();
        if right {
            r
        } else {
            w
        }
    }

    #[test]
    fn iface_bounce_is_judged_by_the_uplink_coming_back() {
        let (runs, times) = pulses();
        let root = runs["gw-root"].clone();
        let change = event("run-at", "recreate", 1000, Some(350));
        let gone = event("link", "interface eth0 disappeared", 1010, None);
        let back = event(
            "link",
            "interface eth0 was re-created (ifindex 9, was 3): the capture follows it",
            1360,
            None,
        );
        // Right: PASS everywhere, and the uplink was followed.
        let mut r = report(Verdict::Pass);
        r.events = vec![change.clone(), gone.clone(), back.clone()];
        r.phases = vec![
            phase("start", Verdict::Pass),
            phase("recreate", Verdict::Pass),
        ];
        let right = transition(Scenario::IfaceBounce, true);
        assert_eq!(judge(&right, &r, &runs, &times, &[]), Vec::<String>::new());
        // Not followed: a mismatch even when it says PASS.
        r.events = vec![change.clone(), gone.clone()];
        assert!(judge(&right, &r, &runs, &times, &[])[0].contains("did not follow"));
        // Wrong: every gw-root round sent after the uplink was back leaked.
        let wrong = transition(Scenario::IfaceBounce, false);
        assert!(wrong.before.contains("oif \"eth0\" drop"));
        let mut r = report(Verdict::Leak);
        r.events = vec![change, gone, back];
        r.phases = vec![
            phase("start", Verdict::Pass),
            phase("recreate", Verdict::Leak),
        ];
        let after: Vec<(u32, u64)> = times[&root]
            .iter()
            .enumerate()
            .filter(|(_, t)| **t > T0 + 1_350_000_000)
            .map(|(i, t)| (i as u32, (t - T0) / 1_000_000 + 1))
            .collect();
        r.leaks = after.iter().map(|(i, ms)| leak(&root, *i, *ms)).collect();
        r.leak_packets = r.leaks.len() as u64;
        assert_eq!(judge(&wrong, &r, &runs, &times, &[]), Vec::<String>::new());
        // One round missing: named.
        let mut short = r.clone();
        short.leaks.remove(3);
        let m = judge(&wrong, &short, &runs, &times, &[]);
        assert!(m.iter().any(|m| m.contains("did not leak")), "{m:?}");
        // The workstation's pulse leaking: not this policy's leak.
        let mut ws = r.clone();
        ws.leaks.push(leak(&runs["ws"], 20, 2100));
        let m = judge(&wrong, &ws, &runs, &times, &[]);
        assert!(
            m.iter()
                .any(|m| m.contains("another pulse than the gw-root or gw-user")),
            "{m:?}"
        );
        // A leak before the change: outside the window.
        let mut early = r.clone();
        early.leaks.push(leak(&root, 3, 500));
        let m = judge(&wrong, &early, &runs, &times, &[]);
        assert!(m.iter().any(|m| m.contains("outside the window")), "{m:?}");
    }

    #[test]
    fn bootstrap_is_judged_by_tor_and_by_roots_window() {
        let (runs, times) = pulses();
        let root = runs["gw-root"].clone();
        let enabled = event("fifo", "tor network enabled", 1000, None);
        let circuit = event("fifo", "tor has a circuit", 1600, None);
        let right = transition(Scenario::Bootstrap, true);
        let mut r = report(Verdict::Pass);
        r.events = vec![enabled.clone(), circuit.clone()];
        r.phases = vec![
            phase("start", Verdict::Pass),
            phase("tor network enabled", Verdict::Pass),
            phase("tor has a circuit", Verdict::Pass),
        ];
        // No Tor connection seen: the bootstrap was not counted as Tor.
        let m = judge(&right, &r, &runs, &times, &[]);
        assert!(m.iter().any(|m| m.contains("no Tor connection")), "{m:?}");
        r.tor.flows.started = 4;
        r.tor.packets = 120;
        assert_eq!(judge(&right, &r, &runs, &times, &[]), Vec::<String>::new());
        // No circuit: a mismatch.
        r.events = vec![enabled.clone()];
        let m = judge(&right, &r, &runs, &times, &[]);
        assert!(m.iter().any(|m| m.contains("no circuit")), "{m:?}");
        // Wrong: root's rounds leak from the start to the full firewall.
        let wrong = transition(Scenario::Bootstrap, false);
        assert!(wrong.before.contains("meta skuid 0 accept"));
        assert!(!wrong.after.contains("meta skuid 0 accept"));
        let circuit = event(
            "fifo",
            "tor has a circuit; full firewall loaded",
            1600,
            None,
        );
        let mut r = report(Verdict::Leak);
        r.events = vec![enabled, circuit];
        r.phases = vec![
            phase("start", Verdict::Leak),
            phase("tor network enabled", Verdict::Leak),
            phase("tor has a circuit; full firewall loaded", Verdict::Pass),
        ];
        r.leaks = times[&root]
            .iter()
            .enumerate()
            .filter(|(_, t)| **t < T0 + 1_600_000_000)
            .map(|(i, t)| leak(&root, i as u32, (t - T0) / 1_000_000 + 1))
            .collect();
        r.leak_packets = r.leaks.len() as u64;
        assert_eq!(judge(&wrong, &r, &runs, &times, &[]), Vec::<String>::new());
        // Still open after the full firewall: named.
        let mut late = r.clone();
        late.phases[2].verdict = Verdict::Leak;
        late.leaks.push(leak(&root, 20, 2200));
        let m = judge(&wrong, &late, &runs, &times, &[]);
        assert!(
            m.iter().any(|m| m.contains("after the full firewall")),
            "{m:?}"
        );
        assert!(m.iter().any(|m| m.contains("outside the window")), "{m:?}");
        // The unprivileged pulse leaking: root's opening does not explain it.
        let mut user = r.clone();
        user.leaks.push(leak(&runs["gw-user"], 5, 800));
        let m = judge(&wrong, &user, &runs, &times, &[]);
        assert!(
            m.iter()
                .any(|m| m.contains("another pulse than the gw-root")),
            "{m:?}"
        );
        // Pulses that ended before the circuit: they prove nothing of it.
        let mut short_times = times.clone();
        for t in short_times.values_mut() {
            t.truncate(12);
        }
        let m = judge(&wrong, &r, &runs, &short_times, &[]);
        assert!(m.iter().any(|m| m.contains("did not span")), "{m:?}");
    }

    #[test]
    fn reload_windows_are_the_commands() {
        let (runs, times) = pulses();
        let root = runs["gw-root"].clone();
        let change = event(
            "run-at",
            "nft flush ruleset && sleep 0.3 && nft -f after.nft",
            1000,
            Some(320),
        );
        let [right, wrong] = Transition::both(Scenario::Reload, &policy(), &policy(), &[]);
        let mut r = report(Verdict::Pass);
        r.events = vec![change.clone()];
        r.phases = vec![phase("start", Verdict::Pass), phase("x", Verdict::Pass)];
        assert_eq!(judge(&right, &r, &runs, &times, &[]), Vec::<String>::new());
        r.phases[1].verdict = Verdict::Leak;
        r.verdict = Verdict::Leak;
        let m = judge(&right, &r, &runs, &times, &[]);
        assert!(m.iter().any(|m| m.contains("instead of PASS")), "{m:?}");
        let mut r = report(Verdict::Leak);
        r.events = vec![change];
        r.phases = vec![phase("start", Verdict::Pass), phase("x", Verdict::Leak)];
        r.leaks = times[&root]
            .iter()
            .enumerate()
            .filter(|(_, t)| **t > T0 + 1_000_000_000 && **t < T0 + 1_320_000_000)
            .map(|(i, t)| leak(&root, i as u32, (t - T0) / 1_000_000 + 1))
            .collect();
        r.leak_packets = r.leaks.len() as u64;
        assert_eq!(judge(&wrong, &r, &runs, &times, &[]), Vec::<String>::new());
        // A leak after the load ended: outside the window.
        r.leaks.push(leak(&root, 20, 2200));
        let m = judge(&wrong, &r, &runs, &times, &[]);
        assert!(m.iter().any(|m| m.contains("outside the window")), "{m:?}");
    }
}
