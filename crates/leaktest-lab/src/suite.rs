//! The suite against one gateway profile: the real `leaktest watch` on the
//! gateway's external interface, the full default `leaktest probe` from the
//! workstation, gateway-local raw sweeps as root and as an unprivileged uid,
//! then the watcher's typed report compared with the profile's expectation
//! probe by probe. Probes that must leak and were not seen are sent again
//! once, exactly those, under a second watch; then every one must be there.

use crate::expect::{self, Comparison, Expectation, SeqSet};
use crate::lab::Lab;
use crate::plan::*;
use crate::profiles::{Policy, Profile, Sweep};
use crate::sys::{self, Tracked};
use crate::LabError;
use leaktest_send::ProbeReport;
use leaktest_watch::{Verdict, WatchReport};
use leaktest_wire::catalogue::{Family, ProbeSpec};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// The unprivileged uid of the gateway-local sweep (`nobody`).
pub const UNPRIVILEGED_UID: u32 = 65534;

/// Niceness of the sweeps.
const PROBE_NICE: libc::c_int = 10;

/// How to run the suite.
#[derive(Clone, Debug)]
pub struct SuiteOptions {
    /// The `leaktest` binary (the lab runs the real commands).
    pub exe: PathBuf,
    /// Extra arguments for every probe (e.g. a rate instead of `max`).
    pub probe_rate: String,
    /// The gateway-local sweeps (root and unprivileged); on by default.
    pub local_sweeps: bool,
    /// Networks let out on purpose (`--allow-net`): given to every watch,
    /// and the probes to them taken out of every expectation.
    pub allow_nets: Vec<ipnet::IpNet>,
    /// Endpoints let out on purpose (`--allow`, the watcher's syntax: a
    /// kill switch's VPN server): given to every watch.
    pub allow: Vec<String>,
}

/// What the lab tests: a built-in profile or a user's ruleset.
#[derive(Clone, Debug)]
pub enum Target {
    Builtin(Profile),
    /// A user's ruleset (nftables or iptables-save), with the verdict its
    /// author expects.
    Ruleset(crate::ruleset::UserRuleset),
}

impl Target {
    /// The networks this target's operator lets out on purpose (a
    /// built-in profile's `allow_nets`).
    pub fn allow_nets(&self) -> Vec<ipnet::IpNet> {
        match self {
            Target::Builtin(p) => p
                .allow_nets
                .iter()
                .map(|n| n.parse().expect("a built-in profile's network"))
                .collect(),
            Target::Ruleset(_) => Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Target::Builtin(p) => p.name,
            Target::Ruleset(r) => &r.name,
        }
    }
    /// Whether the gateway's tor uses only the lab's obfs4 bridge while the
    /// target runs ([`Profile::bridge`], `--bridge`).
    pub fn uses_bridge(&self) -> bool {
        match self {
            Target::Builtin(p) => p.bridge,
            Target::Ruleset(r) => r.bridge,
        }
    }
    /// Whether the target must pass (cheap: [`Target::expectation`] runs
    /// the netfilter model over the whole catalogue).
    pub fn expects_pass(&self) -> bool {
        match self {
            Target::Builtin(p) => p.expect_pass(),
            Target::Ruleset(r) => r.expect == Verdict::Pass,
        }
    }
    /// Whether the target runs once the gateway's tor has the network
    /// (its TransPort and DNSPort listen): every target that must pass, and
    /// the built-in profiles that ask for it ([`Profile::tor_listens`]).
    pub fn needs_tor(&self) -> bool {
        match self {
            Target::Builtin(p) => p.expect_pass() || p.tor_listens,
            // A kill switch uses no anonymizer: it runs without waiting for one.
            Target::Ruleset(r) => r.mode != crate::ruleset::Mode::Killswitch,
        }
    }
    /// The sweeps that run for this target: all three for a user's
    /// ruleset, for a built-in profile those of [`Profile::sweeps`].
    pub fn sweeps(&self) -> &'static [Sweep] {
        match self {
            Target::Builtin(p) => p.sweeps(),
            // A host has nothing behind it.
            Target::Ruleset(r) if r.mode == crate::ruleset::Mode::Host => {
                &[Sweep::GatewayRoot, Sweep::GatewayUser]
            }
            Target::Ruleset(_) => &Sweep::ALL,
        }
    }
    pub fn expectation(&self) -> Expectation {
        match self {
            // A profile that must pass (or asks to) runs once the gateway's
            // tor has the network; the others run before.
            Target::Builtin(p) => Expectation::of(&Policy {
                tor_listens: self.needs_tor(),
                ..p.policy
            }),
            // A user's ruleset has no model: nothing may leak, or (`--expect
            // leak`) the verdict alone is compared.
            Target::Ruleset(_) => Expectation::nothing(),
        }
    }
}

/// The outcome of one profile.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProfileResult {
    pub profile: String,
    pub expected: Verdict,
    pub got: Option<Verdict>,
    pub matched: bool,
    pub mismatches: Vec<String>,
    pub findings: Vec<String>,
    pub expected_leaks: Vec<String>,
    pub seconds: f64,
    /// Run id of each sweep.
    pub runs: BTreeMap<String, String>,
    /// Probes that must leak that the first watch did not see, sent again once.
    pub resent: u64,
    /// The watcher's reports (the second one saw the probes sent again).
    pub reports: Vec<WatchReport>,
    /// What the workstation's fetch through the gateway showed, if it ran.
    pub gateway_check: Option<String>,
    /// Where the profile's time went: each step and its seconds, in order
    /// (diagnosis, works-check, each watch's start and end, each sweep).
    pub steps: Vec<(String, f64)>,
}

pub(crate) fn io(what: &str) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |e| LabError::Io(what.to_string(), e)
}

/// Waits for a child with a deadline; kills it when the deadline passes.
pub(crate) fn wait_child(
    child: &mut Child,
    t: &Tracked,
    timeout: Duration,
    what: &str,
) -> Result<std::process::ExitStatus, LabError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().map_err(io(what))? {
            return Ok(st);
        }
        if Instant::now() > deadline {
            t.stop(Duration::from_secs(1));
            let _ = child.wait();
            return Err(LabError::Died(format!(
                "{what} did not finish within {timeout:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Loads the target's gateway policy (sysctls and ruleset) into the gateway.
pub fn apply_target(lab: &Lab, target: &Target, tor_uid: u32) -> Result<(), LabError> {
    match target {
        Target::Builtin(p) => lab.apply_policy(&p.policy, tor_uid),
        Target::Ruleset(r) => {
            let r = &r.with_tor_uid(tor_uid);
            let sysctls = crate::ruleset::sysctls(r);
            let sysctls: Vec<(&str, &str)> = sysctls
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match r.format {
                crate::ruleset::RulesetFormat::Nft => {
                    // Whatever the file says, nothing of the last profile stays.
                    crate::ruleset::check_data(&r.text, r.format)?;
                    lab.apply_ruleset(&format!("flush ruleset\n{}", r.text), &sysctls)
                }
                crate::ruleset::RulesetFormat::Iptables => {
                    lab.apply_iptables(&r.text, r.text6.as_deref(), &sysctls)
                }
            }
        }
    }
}

/// The part of a target's run that needs no working Tor, done while the
/// private network forms its first consensus ([`prepare_target`]), kept for
/// [`run_target`].
pub struct Prepared {
    dir: PathBuf,
    key: PathBuf,
    run_ids: Vec<(Sweep, u64)>,
    runs: BTreeMap<String, Sweep>,
    blind: Vec<String>,
    reports: Vec<WatchReport>,
    notes: Vec<String>,
    steps: Vec<(String, f64)>,
    seconds: f64,
}

/// How long the second part's watch stays open after its port-53 probes.
pub const ANSWER_SETTLE: Duration = Duration::from_secs(1);

/// Which part of a target's run.
enum Stage {
    /// Everything, once the gateway's tor has the network.
    Whole,
    /// What needs no working Tor: the ruleset's static diagnosis and the
    /// checks that need only tor's listeners and the relays' ORPorts, then
    /// every sweep's probes but those to port 53.
    BeforeTor,
    /// The rest, once tor has the network: the DNS check, the bridge, the
    /// works-check, the probes to port 53.
    AfterTor(Prepared),
}

/// Whether a probe's fate depends on tor having the network: a probe to
/// port 53, which a gateway or host redirects to tor's DNSPort, and any
/// probe that carries a DNS query (the `spoof` suite's UDP, whose answer to
/// its forged source is a reflection out of the uplink). How DNSPort
/// answers depends on tor's state (it holds a query it must resolve until
/// it can), so these are sent once tor works, as on a running gateway.
/// Every other probe meets only the kernel and tor's listeners: a SYN
/// redirected to TransPort is answered by the listening socket, and bytes
/// that are no DNS message get no answer from DNSPort.
pub fn needs_working_tor(p: &ProbeSpec) -> bool {
    use leaktest_wire::catalogue::{ProbeKind, Transport};
    p.dst_port() == Some(53)
        || matches!(
            p.kind,
            ProbeKind::Spoof {
                transport: Transport::Udp,
                ..
            }
        )
}

/// The probes of `sweep`'s catalogue that [`needs_working_tor`] picks
/// (`late`) and the others.
pub fn split_by_tor(sweep: Sweep) -> (SeqSet, SeqSet) {
    let (mut early, mut late) = (SeqSet::default(), SeqSet::default());
    for family in [Family::V4, Family::V6] {
        for &suite in crate::profiles::sweep_suites(sweep) {
            for p in ProbeSpec::all(family, suite) {
                if needs_working_tor(&p) {
                    late.insert(p.seq());
                } else {
                    early.insert(p.seq());
                }
            }
        }
    }
    (early, late)
}

impl Target {
    /// Whether [`prepare_target`] can run part of this target before the
    /// gateway's tor has the network: a user's (or class) ruleset of a
    /// gateway or host (a kill switch runs whole without Tor anyway). Not
    /// with a bridge: its tor must reach the network through the bridge
    /// alone, and the watch must see it connect.
    pub fn runs_in_two_parts(&self) -> bool {
        matches!(self, Target::Ruleset(r)
            if r.mode != crate::ruleset::Mode::Killswitch && !r.bridge)
    }
}

/// Runs the part of the target that needs no working Tor (see
/// [`Target::runs_in_two_parts`]): loads its ruleset, names what does not
/// fit (the checks that need only tor's listeners and the relays' ORPorts),
/// and sends every probe but those to port 53 ([`needs_working_tor`]) under
/// a watch. [`run_target`] does the rest once the lab is ready.
pub fn prepare_target(
    lab: &mut Lab,
    target: &Target,
    opts: &SuiteOptions,
) -> Result<Prepared, LabError> {
    let bridged = std::cell::Cell::new(false);
    match run_target_on(lab, target, opts, &bridged, Stage::BeforeTor)? {
        Done::Prepared(p) => Ok(p),
        Done::Result(_) => unreachable!("the first part returns what it prepared"),
    }
}

/// Runs the suite against one target on a lab that is up (whose gateway
/// works, see [`Lab::ready`]); with `prepared`, only what
/// [`prepare_target`] left.
pub fn run_target(
    lab: &mut Lab,
    target: &Target,
    opts: &SuiteOptions,
    prepared: Option<Prepared>,
) -> Result<ProfileResult, LabError> {
    let bridged = std::cell::Cell::new(false);
    let stage = match prepared {
        Some(p) => Stage::AfterTor(p),
        None => Stage::Whole,
    };
    let r = run_target_on(lab, target, opts, &bridged, stage);
    if bridged.get() {
        // Back to the guards for the next profile, whatever happened.
        let reset = crate::gateway::stop_bridge(&lab.state.names.gw);
        if r.is_ok() {
            reset?;
        }
    }
    match r? {
        Done::Result(r) => Ok(*r),
        Done::Prepared(_) => unreachable!("a whole run or its second part returns a result"),
    }
}

enum Done {
    Prepared(Prepared),
    Result(Box<ProfileResult>),
}

fn run_target_on(
    lab: &mut Lab,
    target: &Target,
    opts: &SuiteOptions,
    bridged: &std::cell::Cell<bool>,
    stage: Stage,
) -> Result<Done, LabError> {
    let t0 = Instant::now();
    let name = target.name().to_string();
    let (before_tor, mut prepared) = match stage {
        Stage::Whole => (false, None),
        Stage::BeforeTor => (true, None),
        Stage::AfterTor(p) => (false, Some(p)),
    };
    let after_tor = prepared.is_some();
    let prepared_seconds = prepared.as_ref().map(|p| p.seconds).unwrap_or(0.0);
    // The profile's own allowed networks join the lab's (`--allow-net`).
    // A class profile's findings are pinned as they are: the lab's own
    // allowed networks are not given to its watch.
    let pinned = matches!(
        target,
        Target::Ruleset(crate::ruleset::UserRuleset {
            findings: Some(_),
            ..
        })
    );
    let opts = &SuiteOptions {
        allow_nets: opts
            .allow_nets
            .iter()
            .copied()
            .filter(|_| !pinned)
            .chain(target.allow_nets())
            .collect(),
        allow: opts
            .allow
            .iter()
            .filter(|_| !pinned)
            .cloned()
            .chain(match target {
                Target::Ruleset(r) => r.allow.clone(),
                Target::Builtin(_) => vec![],
            })
            .collect(),
        ..opts.clone()
    };
    let g = lab
        .gw_tor
        .clone()
        .ok_or_else(|| LabError::Tor("the gateway tor is not configured".into()))?;
    // (Again in the second part: the lab's own policy was loaded while tor
    // bootstrapped.)
    apply_target(lab, target, g.uid)?;
    if before_tor {
        // tor's listeners open only with its network (`DisableNetwork 0`):
        // the ruleset's redirects must meet TransPort and DNSPort as they
        // are on a running gateway. tor bootstraps from here on, under this
        // ruleset (the guards' check below names a ruleset that stops it).
        crate::gateway::enable_network(&lab.state.names.gw)?;
    }
    // The netfilter model over the whole catalogue takes a few hundred
    // milliseconds: it runs while the watcher starts and the sweeps run.
    let model = (!before_tor).then(|| {
        let target = target.clone();
        std::thread::spawn(move || target.expectation())
    });
    let steps = std::cell::RefCell::new(
        prepared
            .as_mut()
            .map(|p| std::mem::take(&mut p.steps))
            .unwrap_or_default(),
    );
    let step = |what: &str, since: Instant| {
        let what = if before_tor {
            format!("before tor: {what}")
        } else {
            what.to_string()
        };
        steps
            .borrow_mut()
            .push((what, since.elapsed().as_secs_f64()))
    };
    // A user's ruleset: what does not fit the lab, named before anything
    // waits on it (each check gives up within 3 s, all at once).
    let mut notes = prepared
        .as_mut()
        .map(|p| std::mem::take(&mut p.notes))
        .unwrap_or_default();
    if let Target::Ruleset(r) = target {
        let td = Instant::now();
        let r = &r.with_tor_uid(g.uid);
        if !after_tor {
            notes = crate::ruleset::diagnose(r, &g, &|n| sys::user_ids(n).map(|(u, _)| u));
            // The user's sysctls as the gateway's namespace has them now.
            for (k, _) in &r.sysctls {
                let out = sys::ns_command(&lab.state.names.gw, "sysctl")?
                    .args(["-n", k])
                    .output()
                    .map_err(io("reading a sysctl back"))?;
                notes.push(format!(
                    "sysctl {k} = {} in the gateway's namespace",
                    String::from_utf8_lossy(&out.stdout).trim()
                ));
            }
        }
        let checks = if before_tor {
            crate::lab::Checks::BeforeTor
        } else if after_tor {
            crate::lab::Checks::AfterTor
        } else {
            crate::lab::Checks::All
        };
        let broken = lab.diagnose_gateway(&g, r.mode, r.bridge, checks)?;
        if !broken.is_empty() {
            // What the ruleset names that the lab lacks first (the cause),
            // then what failed because of it.
            let mut lines = notes;
            lines.extend(broken);
            return Err(LabError::GatewayBroken(format!(
                "{} does not work in the lab's gateway:\n  {}\n(named in {:.1} s after the ruleset was loaded)",
                r.name,
                lines.join("\n  "),
                td.elapsed().as_secs_f64()
            )));
        }
        step("diagnosis", td);
    }
    // A gateway must work before it can pass: fetch through Tor first (a
    // host per its --check; a kill switch has nothing to fetch through).
    let works_check = |lab: &mut Lab| -> Result<Option<String>, LabError> {
        let tc = Instant::now();
        let fetched = match target {
            Target::Ruleset(r) => match r.mode {
                crate::ruleset::Mode::Gateway => Some(lab.check_gateway()?),
                crate::ruleset::Mode::Host => lab.check_host(r.check)?,
                crate::ruleset::Mode::Killswitch => None,
            },
            Target::Builtin(_) if target.expects_pass() => Some(lab.check_gateway()?),
            Target::Builtin(_) => None,
        };
        step("works-check", tc);
        Ok(fetched.map(|f| {
            format!(
                "fetched http://{WEB_NAME}/ in {} ms; the web server saw exit {}",
                f.millis, f.seen_as
            )
        }))
    };
    // With a bridge, tor is set to use it with its network off; the watch
    // starts, then tor connects: the bridge's obfs4 flow is watched from
    // its first byte, and the works-check goes through the bridge.
    let bridge = target.uses_bridge() && !before_tor;
    let mut gateway_check = None;
    if bridge {
        bridged.set(true);
        lab.configure_bridge()?;
    } else if !before_tor {
        gateway_check = works_check(lab)?;
    }
    let sweeps: &[Sweep] = if opts.local_sweeps {
        target.sweeps()
    } else {
        &[Sweep::Workstation]
    };
    let (dir, key, run_ids, mut runs, mut blind, mut reports) = match prepared {
        Some(p) => (p.dir, p.key, p.run_ids, p.runs, p.blind, p.reports),
        None => {
            let dir = lab.state.tmpdir.join(format!("profile-{name}"));
            std::fs::create_dir_all(&dir).map_err(io("creating profile dir"))?;
            // The unprivileged sweep writes its JSON here.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))
                .map_err(io("chmod profile dir"))?;
            let key = dir.join("key");
            let mut secret = [0u8; 16];
            getrandom::fill(&mut secret).expect("random source");
            std::fs::write(&key, format!("{}\n", hex::encode(secret)))
                .map_err(io("writing key file"))?;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))
                .map_err(io("chmod key"))?;
            // Each sweep's run id is chosen here and announced to the
            // watcher (`--run`), so that leaks with header evidence only (a
            // reflection to a forged source, when no marker of the run ever
            // reaches the uplink) are attributed too.
            let run_ids: Vec<(Sweep, u64)> = sweeps
                .iter()
                .map(|&s| {
                    let mut b = [0u8; 8];
                    getrandom::fill(&mut b).expect("random source");
                    (s, u64::from_be_bytes(b))
                })
                .collect();
            (dir, key, run_ids, BTreeMap::new(), Vec::new(), Vec::new())
        }
    };
    let names = lab.state.names.clone();
    let announced: Vec<u64> = run_ids.iter().map(|(_, r)| *r).collect();
    // In two parts, each sweep sends its probes by list: those that need no
    // working Tor first, those to port 53 after.
    let mut lists: BTreeMap<Sweep, PathBuf> = BTreeMap::new();
    if before_tor || after_tor {
        for &(sweep, _) in &run_ids {
            let (early, late) = split_by_tor(sweep);
            let (tag, set) = if before_tor {
                ("before-tor", early)
            } else {
                ("after-tor", late)
            };
            let list = dir.join(format!("{tag}-{}.seqs", sweep.name()));
            std::fs::write(&list, leaktest_send::session::ranges_text(&set.ranges()))
                .map_err(io("writing a sweep's probe list"))?;
            lists.insert(sweep, list);
        }
    }
    let (watch_tag, sweep_tag) = if before_tor {
        ("watch-before-tor", "-before-tor")
    } else if after_tor {
        ("watch", "-after-tor")
    } else {
        ("watch", "")
    };
    // The watch whose report shows the bridge's flow.
    let bridge_report = reports.len();
    // Sweeps whose next hop never resolved: their part proves nothing.
    let watched = watch_while(
        lab,
        opts,
        &dir,
        watch_tag,
        &key,
        &announced,
        &step,
        &mut |lab| {
            if bridge {
                let tb = Instant::now();
                lab.bridge_circuit()?;
                step("circuit through the bridge", tb);
                gateway_check = works_check(lab)?;
            }
            for &(sweep, id) in &run_ids {
                let ts = Instant::now();
                let r = sweep_once(
                    lab,
                    &dir,
                    &names,
                    opts,
                    sweep,
                    &key,
                    Some(id),
                    lists.get(&sweep).map(|p| p.as_path()),
                    sweep_tag,
                )?;
                step(&format!("sweep {}", sweep.name()), ts);
                runs.insert(r.run_id.clone(), sweep);
                blind.extend(r.unreached.iter().map(|u| {
                    format!(
                    "{} {}: {} probes never reached the wire (next hop {} on {} {}): INCONCLUSIVE",
                    sweep.name(),
                    u.family,
                    u.probes,
                    u.next_hop,
                    u.interface,
                    u.state
                )
                }));
            }
            if after_tor {
                // The port-53 probes are all this watch sends: give the
                // answers (a resolver's round trip through Tor) time to
                // come out before the watch ends.
                let ta = Instant::now();
                std::thread::sleep(ANSWER_SETTLE);
                step("answers settle", ta);
            }
            Ok(())
        },
    )?;
    reports.push(watched);
    let Some(model) = model else {
        return Ok(Done::Prepared(Prepared {
            dir,
            key,
            run_ids,
            runs,
            blind,
            reports,
            notes,
            steps: steps.into_inner(),
            seconds: t0.elapsed().as_secs_f64(),
        }));
    };
    let expect = model
        .join()
        .map_err(|_| LabError::Died("the expectation model panicked".into()))?
        .only(sweeps)
        .allowing(&opts.allow_nets);
    let refs: Vec<&WatchReport> = reports.iter().collect();
    let mut cmp: Comparison = expect::compare(&refs, &expect, &runs);
    // Probes that must leak and were not seen: sent again once, exactly
    // those (same run, same key, so the same markers), under a new watch.
    let missing: Vec<(Sweep, SeqSet)> = cmp
        .missing
        .iter()
        .filter(|(_, m)| !m.is_empty())
        .map(|(s, m)| (*s, m.clone()))
        .collect();
    let resent: u64 = missing.iter().map(|(_, m)| m.len()).sum();
    if resent > 0 {
        let by_sweep: BTreeMap<Sweep, String> = runs.iter().map(|(r, s)| (*s, r.clone())).collect();
        let second = watch_while(
            lab,
            opts,
            &dir,
            "watch-resend",
            &key,
            &announced,
            &step,
            &mut |lab| {
                for (sweep, m) in &missing {
                    let run = u64::from_str_radix(&by_sweep[sweep], 16)
                        .map_err(|e| LabError::Died(format!("run id {}: {e}", by_sweep[sweep])))?;
                    let list = dir.join(format!("resend-{}.seqs", sweep.name()));
                    std::fs::write(&list, leaktest_send::session::ranges_text(&m.ranges()))
                        .map_err(io("writing the probes to send again"))?;
                    sweep_once(
                        lab,
                        &dir,
                        &names,
                        opts,
                        *sweep,
                        &key,
                        Some(run),
                        Some(&list),
                        "-resend",
                    )?;
                }
                Ok(())
            },
        )?;
        reports.push(second);
        let refs: Vec<&WatchReport> = reports.iter().collect();
        cmp = expect::compare(&refs, &expect, &runs);
    }
    cmp.missing_as_mismatches();
    if bridge {
        // The bridge's traffic must have been seen, and seen as Tor: the
        // watcher knew it from GETCONF Bridge, and followed its obfs4 flow
        // from the first segment (tor connected during the watch).
        let first = &reports[bridge_report].tor;
        let to_bridge = first.by_role.get("obfs4-bridge").copied().unwrap_or(0);
        // With UseBridges, tor reaches nothing but its bridge.
        let elsewhere: Vec<String> = reports
            .iter()
            .flat_map(|r| r.tor.by_role.iter())
            .filter(|(role, n)| role.as_str() != "obfs4-bridge" && **n > 0)
            .map(|(role, n)| format!("{role} {n}"))
            .collect();
        if !elsewhere.is_empty() {
            cmp.mismatches.push(format!(
                "tor reached the network other than through its obfs4 bridge (Tor frames by role: {})",
                elsewhere.join(", ")
            ));
        }
        if to_bridge == 0 {
            cmp.mismatches.push(
                "no Tor traffic to the obfs4 bridge was seen: the gateway's tor did not use it, or the watcher did not count it as Tor".into(),
            );
        } else if first.flows.started == 0 {
            cmp.mismatches.push(format!(
                "{to_bridge} packet(s) to the obfs4 bridge, but no Tor flow was followed from its first segment"
            ));
        } else {
            cmp.findings.push(format!(
                "note: {to_bridge} packet(s) to the obfs4 bridge counted as Tor ({} flow(s) followed from their first segment)",
                first.flows.started
            ));
        }
    }
    if !blind.is_empty() {
        // Never PASS on a sweep that did not reach the wire.
        if cmp.verdict == Some(Verdict::Pass) {
            cmp.verdict = Some(Verdict::Inconclusive);
        }
        cmp.mismatches.extend(blind);
    }
    // `--expect leak`: the verdict is what is pinned.
    let expected_verdict = match target {
        Target::Ruleset(r) if r.expect == Verdict::Leak => {
            // What differs from "nothing may leak" is what was expected;
            // anything else wrong with the run (a watch that could not
            // prove it saw, a sweep that never reached the wire) stays.
            cmp.mismatches.retain(|m| {
                let consequence = (m.contains("sender RSTs to the target's SYN-ACK")
                    || m.contains("reflections to forged sources"))
                    && m.ends_with("expected 0");
                // Leaks without a marker are leaks too (in a long run some
                // are the last profile's late answers, e.g. TransPort's
                // SYN-ACK retransmissions to forged sources).
                !m.starts_with("verdict LEAK instead of PASS")
                    && !m.contains("probes leaked that the model stops")
                    && !m.contains("leaked packets that carry no probe marker")
                    && !consequence
            });
            if !cmp.findings.iter().any(|f| !f.starts_with("note: ")) {
                cmp.mismatches
                    .push("a LEAK without any probe's finding: nothing pins it".into());
            }
            if cmp.verdict != Some(Verdict::Leak) {
                cmp.mismatches.push(format!(
                    "expected LEAK, got {}",
                    cmp.verdict
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "no verdict".into())
                ));
            }
            Verdict::Leak
        }
        _ => expect.verdict(),
    };
    // A class profile: its exact findings.
    if let Target::Ruleset(crate::ruleset::UserRuleset {
        findings: Some(want),
        ..
    }) = target
    {
        let got: Vec<String> = cmp
            .findings
            .iter()
            .filter(|f| !f.contains(" [R] ") && !f.starts_with("note: "))
            .cloned()
            .collect();
        if &got != want {
            cmp.mismatches.push(format!(
                "findings differ from the class profile's: expected {want:?}"
            ));
        }
    }
    cmp.findings
        .extend(notes.into_iter().map(|n| format!("note: {n}")));
    if resent > 0 {
        cmp.findings.push(format!(
            "{resent} probe(s) not seen by the first watch were sent again once"
        ));
    }
    let seconds = t0.elapsed().as_secs_f64() + prepared_seconds;
    Ok(Done::Result(Box::new(ProfileResult {
        profile: name,
        expected: expected_verdict,
        got: cmp.verdict,
        matched: cmp.ok(),
        mismatches: cmp.mismatches,
        findings: cmp.findings,
        expected_leaks: expect.summary(),
        seconds,
        runs: runs
            .into_iter()
            .map(|(r, s)| (s.name().to_string(), r))
            .collect(),
        resent,
        reports,
        gateway_check,
        steps: steps.into_inner(),
    })))
}

/// Runs `leaktest watch` on the gateway's external interface while `work`
/// runs, then ends it and returns its report. `tag` names its files.
#[allow(clippy::too_many_arguments)]
fn watch_while(
    lab: &mut Lab,
    opts: &SuiteOptions,
    dir: &Path,
    tag: &str,
    key: &Path,
    runs: &[u64],
    step: &dyn Fn(&str, Instant),
    work: &mut dyn FnMut(&mut Lab) -> Result<(), LabError>,
) -> Result<WatchReport, LabError> {
    watch_while_with(lab, opts, dir, tag, key, runs, &[], step, work)
}

/// [`watch_while`] with `extra` arguments for `leaktest watch` (a
/// transition's `--run-at`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn watch_while_with(
    lab: &mut Lab,
    opts: &SuiteOptions,
    dir: &Path,
    tag: &str,
    key: &Path,
    runs: &[u64],
    extra: &[String],
    step: &dyn Fn(&str, Instant),
    work: &mut dyn FnMut(&mut Lab) -> Result<(), LabError>,
) -> Result<WatchReport, LabError> {
    let names = lab.state.names.clone();
    let report_path = dir.join(format!("{tag}.json"));
    let ready = dir.join(format!("{tag}.ready"));
    let watch_log = dir.join(format!("{tag}.log"));
    let control = format!("127.0.0.1:{CONTROL_PORT}");
    let mut wcmd = sys::ns_command(&names.gw, &opts.exe.to_string_lossy())?;
    wcmd.arg("watch")
        .args(["--iface", GW_EXT_IF, "--tor-control", &control, "--json"])
        .arg(&report_path)
        .arg("--ready-file")
        .arg(&ready)
        .arg("--key-file")
        .arg(key);
    for r in runs {
        wcmd.args(["--run", &format!("{r:016x}")]);
    }
    for n in &opts.allow_nets {
        wcmd.args(["--allow-net", &n.to_string()]);
    }
    for a in &opts.allow {
        wcmd.args(["--allow", a]);
    }
    wcmd.args(extra);
    let (mut watcher, wt) = lab.spawn_tracked(wcmd, &watch_log, "leaktest watch")?;
    let wait_ready = Instant::now();
    while !ready.exists() {
        if let Some(st) = watcher.try_wait().map_err(io("watch"))? {
            lab.untrack(&wt)?;
            return Err(LabError::Died(format!(
                "leaktest watch exited ({st}) before it was ready: {}",
                tail(&watch_log)
            )));
        }
        if wait_ready.elapsed() > Duration::from_secs(30) {
            wt.stop(Duration::from_secs(2));
            let _ = watcher.wait();
            lab.untrack(&wt)?;
            return Err(LabError::Died(format!(
                "leaktest watch not ready after 30 s: {}",
                tail(&watch_log)
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    step(&format!("{tag} ready"), wait_ready);
    let worked = work(lab);
    let te = Instant::now();
    // On a veth a forwarded probe reaches the capture inside the sender's
    // own system call; this only lets stragglers (a frame queued for
    // neighbour resolution, the sender's RST to a SYN-ACK) out. The
    // watcher's final canary then proves that its capture caught up.
    std::thread::sleep(Duration::from_millis(150));
    wt.signal(libc::SIGTERM);
    let st = wait_child(&mut watcher, &wt, Duration::from_secs(60), "leaktest watch");
    lab.untrack(&wt)?;
    step(&format!("{tag} end"), te);
    worked?;
    let st = st?;
    read_json(&report_path).map_err(|e| {
        LabError::Died(format!(
            "watch ended ({st}) without a readable report ({e}): {}",
            tail(&watch_log)
        ))
    })
}

/// Runs one sweep (or, with `only`, the probes listed in that file under
/// run `run_id`) and returns the probe's report.
#[allow(clippy::too_many_arguments)]
fn sweep_once(
    lab: &mut Lab,
    dir: &Path,
    names: &crate::topology::Names,
    opts: &SuiteOptions,
    sweep: Sweep,
    key: &Path,
    run_id: Option<u64>,
    only: Option<&Path>,
    suffix: &str,
) -> Result<ProbeReport, LabError> {
    let json = dir.join(format!("probe-{}{suffix}.json", sweep.name()));
    let log = dir.join(format!("probe-{}{suffix}.log", sweep.name()));
    let mut cmd = probe_command(
        names,
        &opts.exe,
        sweep,
        key,
        &json,
        &opts.probe_rate,
        run_id,
    )?;
    if let Some(list) = only {
        cmd.arg("--probes").arg(list);
    }
    let (mut child, t) =
        lab.spawn_tracked(cmd, &log, &format!("leaktest probe ({})", sweep.name()))?;
    let st = wait_child(&mut child, &t, Duration::from_secs(300), "leaktest probe");
    lab.untrack(&t)?;
    let st = st?;
    // 3: ran, but a family never reached the wire (the report says which).
    if !st.success() && st.code() != Some(3) {
        return Err(LabError::Died(format!(
            "leaktest probe ({}) failed ({st}): {}",
            sweep.name(),
            tail(&log)
        )));
    }
    read_json(&json)
}

/// The `leaktest probe` command of one sweep: the full default catalogue to
/// the lab web server, from the workstation (AF_PACKET) or from the gateway
/// itself (raw sockets), as root or as [`UNPRIVILEGED_UID`] with only
/// CAP_NET_RAW.
pub fn probe_command(
    names: &crate::topology::Names,
    exe: &Path,
    sweep: Sweep,
    key: &Path,
    json: &Path,
    rate: &str,
    run_id: Option<u64>,
) -> Result<std::process::Command, LabError> {
    let ns = if sweep == Sweep::Workstation {
        &names.ws
    } else {
        &names.gw
    };
    let mut cmd = if sweep == Sweep::GatewayUser {
        let mut c = sys::ns_command(ns, "setpriv")?;
        c.arg(format!("--reuid={UNPRIVILEGED_UID}"))
            .arg(format!("--regid={UNPRIVILEGED_UID}"))
            .args([
                "--clear-groups",
                "--inh-caps=+net_raw",
                "--ambient-caps=+net_raw",
            ])
            .arg(exe);
        c
    } else {
        sys::ns_command(ns, &exe.to_string_lossy())?
    };
    cmd.arg("probe")
        .args([
            "--target",
            &WEB4.to_string(),
            "--target6",
            &WEB6.to_string(),
            "--rate",
            rate,
        ])
        .arg("--key-file")
        .arg(key)
        .arg("--json")
        .arg(json);
    if sweep != Sweep::Workstation {
        cmd.args(["--socket", "raw"]);
    }
    let suites: Vec<&str> = crate::profiles::sweep_suites(sweep)
        .iter()
        .map(|s| s.name())
        .collect();
    cmd.args(["--suite", &suites.join(",")]);
    {
        // What the `lan` and `spoof` suites need to know of the gateway's uplink.
        cmd.args([
            "--gateway-uplink",
            &format!("{GW_EXT4}/24"),
            "--gateway-uplink",
            &format!("{GW_EXT6}/64"),
            "--uplink-router",
            &NET_ROUTER4.to_string(),
            "--uplink-router",
            &NET_ROUTER6.to_string(),
        ]);
    }
    if let Some(r) = run_id {
        cmd.args(["--run-id", &format!("{r:016x}")]);
    }
    // Below the watcher and the Tor network in CPU priority: the sender is
    // CPU-bound by design, the watcher must not drop and the authorities
    // must vote on time.
    // SAFETY: setpriority is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setpriority(libc::PRIO_PROCESS, 0, PROBE_NICE);
            Ok(())
        });
    }
    Ok(cmd)
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T, LabError> {
    let t = std::fs::read_to_string(p)
        .map_err(|e| LabError::Io(format!("reading {}", p.display()), e))?;
    serde_json::from_str(&t)
        .map_err(|e| LabError::Died(format!("{} is not the expected JSON: {e}", p.display())))
}

/// The last line of a log, for error messages.
pub(crate) fn tail(p: &Path) -> String {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("(see {})", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probes_that_wait_for_tor_are_those_to_port_53() {
        use leaktest_wire::catalogue::{Suite, Transport};
        for sweep in Sweep::ALL {
            let (early, late) = split_by_tor(sweep);
            let mut total = 0u64;
            for family in [Family::V4, Family::V6] {
                for &suite in crate::profiles::sweep_suites(sweep) {
                    for p in ProbeSpec::all(family, suite) {
                        total += 1;
                        // Each probe in exactly one part.
                        assert_ne!(early.contains(p.seq()), late.contains(p.seq()), "{p:?}");
                        assert_eq!(late.contains(p.seq()), needs_working_tor(&p), "{p:?}");
                        if p.dst_port() == Some(53) {
                            assert!(late.contains(p.seq()), "{p:?}");
                        }
                    }
                }
            }
            assert_eq!(early.len() + late.len(), total);
            // Few wait: the whole sweep minus a handful of probes runs early.
            assert!(
                late.len() * 100 < total,
                "{sweep:?}: {} of {total}",
                late.len()
            );
            // Every family's plain UDP probe to 53 waits for tor...
            for family in [Family::V4, Family::V6] {
                let udp53 = ProbeSpec::all(family, Suite::Udp)
                    .find(|p| p.dst_port() == Some(53))
                    .unwrap();
                assert!(late.contains(udp53.seq()));
            }
            // ...and from the workstation, the forged-source DNS queries
            // (whose answers are the reflections) too.
            if sweep == Sweep::Workstation {
                let spoofed: Vec<_> = [Family::V4, Family::V6]
                    .into_iter()
                    .flat_map(|f| ProbeSpec::all(f, Suite::Spoof))
                    .filter(|p| p.transport() == Some(Transport::Udp))
                    .collect();
                assert!(!spoofed.is_empty());
                assert!(
                    spoofed.iter().all(|p| late.contains(p.seq())),
                    "{spoofed:?}"
                );
            }
        }
    }

    #[test]
    fn the_cheap_pass_test_agrees_with_the_model() {
        for p in crate::profiles::builtin() {
            let t = Target::Builtin(p);
            assert_eq!(
                t.expects_pass(),
                t.expectation().verdict() == Verdict::Pass,
                "{}",
                t.name()
            );
        }
        let mut r = crate::ruleset::UserRuleset {
            name: "mine".into(),
            format: crate::ruleset::RulesetFormat::Nft,
            text: String::new(),
            text6: None,
            sysctls: vec![],
            expect: Verdict::Pass,
            mode: crate::ruleset::Mode::Gateway,
            check: crate::ruleset::Check::Trans,
            allow: vec![],
            findings: None,
            bridge: false,
        };
        let user = Target::Ruleset(r.clone());
        assert!(user.expects_pass() && user.needs_tor());
        assert_eq!(user.expectation().verdict(), Verdict::Pass);
        r.expect = Verdict::Leak;
        assert!(!Target::Ruleset(r).expects_pass());
    }
}
