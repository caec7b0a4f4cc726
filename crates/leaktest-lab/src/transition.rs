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
//!
//! Expected: the right way PASS in every phase; the wrong way LEAK, nothing
//! before the change, every leaked packet captured inside its window (from
//! the command's start to its end; for `boot-bad-file`, to the end of the
//! watch), and every gateway-root pulse round sent well inside the window
//! leaked.

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
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::Reload,
        Scenario::Boot,
        Scenario::BootBadFile,
        Scenario::FinRst,
        Scenario::TorKill,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Reload => "reload",
            Scenario::Boot => "boot",
            Scenario::BootBadFile => "boot-bad-file",
            Scenario::TorKill => "tor-kill",
            Scenario::FinRst => "fin-rst",
        }
    }

    pub fn about(self) -> &'static str {
        match self {
            Scenario::Reload => "the policy replaced under the pulses: one nft -f transaction, or flush then load 300 ms later",
            Scenario::Boot => "a closed gateway's firewall comes up: in one transaction, or the network first and the firewall 300 ms later",
            Scenario::BootBadFile => "the firewall file has a syntax error: the gateway stays closed, or it was opened first and stays open",
            Scenario::TorKill => "tor killed (SIGKILL) and restarted 0.5 s later: the firewall stays, or tor's service removes it on stop and loads it on start",
            Scenario::FinRst => "the FIN/RST check: connections through the transparent proxy end after conntrack forgot them; the Whonix policy keeps them in, a filter that accepts all TCP and NATs only SYNs lets them out",
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
                }
            ),
            expect: None,
        })
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
        Scenario::Reload | Scenario::TorKill | Scenario::FinRst => {
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
    };
    let fifo = dir.join("events");
    let pulse_s = if t.scenario == Scenario::TorKill {
        TOR_KILL_PULSE_S
    } else {
        PULSE_S
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
    if matches!(t.scenario, Scenario::TorKill | Scenario::FinRst) {
        extra.extend(["--event-fifo".to_string(), fifo.display().to_string()]);
    }
    // The FIN/RST check's connections, open before the watch begins.
    let fin_rst_run = {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("random source");
        u64::from_be_bytes(b)
    };
    let client = if t.scenario == Scenario::FinRst {
        Some(start_fin_rst_client(lab, &dir, fin_rst_run)?)
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
                if let Err(e) = restart_tor(lab, tp, &atomic, !t.right, &fifo) {
                    failed = Some(e);
                }
            }
            if let Some(c) = &client {
                if let Err(e) = end_fin_rst_connections(lab, tp, c, &fifo) {
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
    }
    let mut mismatches = judge(t, &report, &runs, &round_times);
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
) -> Vec<String> {
    let mut m = Vec::new();
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
        let change = r.events.iter().find(|e| e.source == "run-at");
        for (sweep, run) in runs {
            let times = round_times.get(run).map(Vec::as_slice).unwrap_or(&[]);
            let (Some(first), Some(last)) = (times.first(), times.last()) else {
                m.push(format!("the {sweep} pulse sent no round"));
                continue;
            };
            if let Some(e) = change {
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
    if t.right {
        if r.verdict != Verdict::Pass {
            m.push(format!("verdict {} instead of PASS", r.verdict));
        }
        for p in &r.phases {
            if p.verdict != Verdict::Pass {
                m.push(format!("phase '{}' is {}, not PASS", p.name, p.verdict));
            }
        }
        return m;
    }
    if r.verdict != Verdict::Leak {
        m.push(format!("verdict {} instead of LEAK", r.verdict));
    }
    let change = match t.scenario {
        Scenario::FinRst => "fifo",
        _ => "run-at",
    };
    let Some(e) = r.events.iter().find(|e| e.source == change) else {
        m.push("no event: the change never ran".into());
        return m;
    };
    if r.phases.first().is_some_and(|p| p.verdict != Verdict::Pass) {
        m.push(format!("before the change: {}", r.phases[0].verdict));
    }
    let (start, end) = match t.scenario {
        // Open until the end of the watch.
        Scenario::BootBadFile => (e.start_unix_ns, u64::MAX),
        // Open until the restart loaded the firewall again (the lab marks
        // it on the FIFO once it has).
        // The connections' ends may come any time after the flush.
        Scenario::FinRst => (e.start_unix_ns, u64::MAX),
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
        // The connections' data, by its marker, to the web server.
        let run = runs.get("fin-rst");
        let data = r
            .leaks
            .iter()
            .filter(|l| {
                l.dst == crate::plan::WEB4.to_string()
                    && l.probe.as_ref().map(|p| Some(&p.run)) == Some(run)
            })
            .count();
        let fins = r
            .leaks
            .iter()
            .filter(|l| {
                l.dst == crate::plan::WEB4.to_string()
                    && l.tcp_flags.as_deref().is_some_and(|f| f.contains('F'))
            })
            .count();
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
            let inside =
                *sent > start.saturating_add(50_000_000) && sent.saturating_add(50_000_000) < end;
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

/// Connections the FIN/RST check holds through the transparent proxy.
pub const FIN_RST_CONNECTIONS: usize = 4;

/// The FIN/RST check's client in the workstation (perl, part of every
/// Debian system): [`FIN_RST_CONNECTIONS`] connections to the web server
/// (redirected to tor's TransPort), held until the `go` file appears
/// (at most 20 s), then each sends the payload marker of run `run` (probe
/// `tcp [A]` to port 80 under its open key) and closes (a FIN); 0.5 s
/// later it aborts them (a RST), so nothing of them is retransmitted into a
/// later watch.
const FIN_RST_CLIENT: &str = r#"
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_LINGER);
$| = 1;
$SIG{PIPE} = 'IGNORE';
my ($addr, $n, $hex, $go) = @ARGV;
my $data = pack("H*", $hex);
my @s = map { IO::Socket::INET->new(PeerAddr => $addr, Proto => 'tcp', Timeout => 5)
              or die "connect $addr: $!
" } 1 .. $n;
print "connected
";
my $end = time + 20;
until (-e $go) { die "never told to close
" if time > $end; select(undef, undef, undef, 0.01); }
for my $s (@s) { print {$s} $data; shutdown($s, 1); }
select(undef, undef, undef, 0.5);
# Abortive close: nothing of these connections is retransmitted later
# (into the next check's watch).
for my $s (@s) { setsockopt($s, SOL_SOCKET, SO_LINGER, pack("ii", 1, 0)); close($s); }
"#;

struct FinRstClient {
    child: std::cell::RefCell<std::process::Child>,
    tracked: crate::sys::Tracked,
    go: std::path::PathBuf,
    log: std::path::PathBuf,
}

fn start_fin_rst_client(lab: &mut Lab, dir: &Path, run: u64) -> Result<FinRstClient, LabError> {
    use leaktest_wire::catalogue::{Family, ProbeKind, ProbeSpec, TcpFlags};
    let spec = ProbeSpec {
        family: Family::V4,
        kind: ProbeKind::Tcp {
            flags: TcpFlags(TcpFlags::ACK),
            dst_port: crate::plan::WEB_PORT,
        },
    };
    let marker = leaktest_wire::RunKey::open(run).payload_marker(spec.seq());
    let go = dir.join("fin-rst.go");
    let log = dir.join("fin-rst.log");
    let names = lab.state.names.clone();
    let mut cmd = crate::sys::ns_command(&names.ws, "perl")?;
    cmd.args(["-e", FIN_RST_CLIENT])
        .arg(format!("{}:{}", crate::plan::WEB4, crate::plan::WEB_PORT))
        .arg(FIN_RST_CONNECTIONS.to_string())
        .arg(hex::encode(marker))
        .arg(&go);
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
