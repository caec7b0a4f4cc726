//! `leaktest lab`: one command that builds an isolated Whonix-style lab in
//! network namespaces (workstation, gateway with a real tor, a private Tor
//! network), runs the whole suite against the correct gateway and a catalogue
//! of broken ones, and shows that every verdict is right.

use anyhow::{bail, Context};
use leaktest_lab::gateway::TorUser;
use leaktest_lab::lab::{Lab, Options, ServerMode};
use leaktest_lab::plan::{DNS4, GW_EXT_IF, GW_INT_IF};
use leaktest_lab::profiles::builtin;
use leaktest_lab::ruleset::{Check, Mode, RulesetFormat, UserRuleset};
use leaktest_lab::state::{self, State};
use leaktest_lab::suite::{self, ProfileResult, SuiteOptions, Target};
use leaktest_lab::transition::{Scenario, Transition};
use leaktest_watch::Verdict;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
#[command(
    after_help = "The lab's gateway is laid out as a Whonix-Gateway: interfaces `eth1` \
(10.152.152.10/18, fd19:c33d:88bc::10/64, towards the workstation at .11) and `eth0` \
(203.0.113.2/24, 2001:db8:1::2/64, the uplink); tor runs as debian-tor (or --tor-user) with \
TransPort 9040, DNSPort 5300 and SocksPort 9050 on the internal addresses and on 127.0.0.1 and ::1, \
and Whonix's other SocksPorts and HTTPTunnelPorts on the internal ones (`leaktest lab plan \
--json`). A --ruleset file is loaded as data in the gateway namespace (`nft -f` after `flush \
ruleset`, nft's `include` refused; or with --format iptables iptables-nft-restore / \
ip6tables-nft-restore; the kernel may load netfilter modules it names) and must get the verdict \
--expect names; `@TOR_UID@` in it stands for tor's uid. --mode host tests a machine that protects \
itself (sweeps from the host as root and unprivileged, works-check per --check), --mode \
killswitch a box that must let nothing out but --allow (no Tor needed). Before any sweep, what \
does not fit is named in one line each, within a few seconds: interfaces the gateway lacks, uids \
nothing runs as, DNS or TCP redirected where tor does not listen, the workstation's TCP or DNS \
unanswered, tor unable to reach its guards. A gateway or host ruleset runs in two parts. While \
the private Tor network forms its first consensus: the checks that need only tor's listeners, \
then every probe except those to port 53 and those carrying a DNS query. Once the gateway's tor \
works: the DNS check, the works-check, then those probes (how tor's DNSPort answers depends on \
its state). A sweep whose next \
hop never resolved makes the verdict INCONCLUSIVE. The class profiles (--list: class 1-9) are rulesets of real tool classes \
with their exact findings pinned; they run with --all or by name.\n\n\
Without options the lab runs the Whonix-style profile and five classic breakages, one per way a \
gateway leaks (forward-masquerade, ipv6-forward, dns-forward, tcp-forward, output-root): about \
40 s on a 2-core machine, most of it the sweeps through the Whonix profile's TransPort redirect \
(about 12 s) and the five broken gateways (3 to 8 s each, while the private Tor network forms its \
consensus). forward-no-nat (forwarding like forward-masquerade, the client's own address \
instead of the gateway's), whonix-bridge (the Whonix profile again, tor on the lab's obfs4 \
bridge, about 15 s) and the class profiles run with --all or by name, and every one in CI. The six \
evasion profiles (exact-syn, src-subnet, no-rpf, ip6-nexthdr, \
stateless, lan-output), each a careless rule that the flags, spoof, ext6, frag or lan suite gets \
past (some leak classic probes too), run with --all or by name (2.6 to 4.6 s each; lan-output \
7.8 s: all three sweeps). The Whonix profile runs the workstation's sweep and the gateway's own \
sweeps as root and as an unprivileged uid; a broken profile runs the gateway's root sweep only \
when its own output path differs from Whonix's (the others would repeat Whonix's sweeps probe \
for probe). The gateway's sweeps send icmp, ip, tcp, udp, flags, icmp-codes and lan (raw sockets \
through its own stack, each packet to the destination in its header: forged sources, tunnels, \
fragment tricks, IP options and extension headers are the workstation's). --list marks each profile default or --all.\n\n\
Transitions (--transition NAME, every one both ways with --all; 3 to 8 s each): the policy \
changes 1 s into a watch (`watch --run-at`) while pulses (`probe --duration`) run from the \
workstation and from the gateway as root and unprivileged. reload: one `nft -f` transaction, or \
flush then load 300 ms later; boot: a closed gateway's firewall loaded in one transaction, or the \
network opened first; boot-bad-file: a firewall file with a syntax error leaves the gateway \
closed, or open when it was opened first; tor-kill: tor killed with SIGKILL and restarted 0.5 s \
later, the firewall staying, or going and coming back with tor; fin-rst (the FIN/RST check, \
without pulses): four TCP connections through the transparent proxy outlive the gateway's \
conntrack table and then send marked data and close, kept in by the Whonix policy, let out by \
one that forwards TCP and NATs only SYNs; iface-bounce: the uplink deleted and created again \
(same name and MAC), kept closed by rules that name it, opened by a kill switch tied to its \
index (nft `oif`); bootstrap: tor's network enabled (its connections were closed, its directory \
cached) through to its first circuit, the firewall closed throughout (the bootstrap counted as \
Tor), or open to root until then. The right way must PASS in every \
phase; the wrong way must LEAK, every leaked packet inside its window (and every gateway-root \
pulse round sent inside it leaked). With --ruleset (nftables), --transition runs your ruleset \
changed the right way (--reload-with FILE: into another ruleset) instead of its sweeps, judged \
by --expect.\n\n\
Exit status: 0 every verdict and finding as expected, 1 some differ (an INCONCLUSIVE too), 2 \
error (a ruleset that does not work in the lab: its diagnosis)."
)]
pub struct Args {
    #[command(subcommand)]
    command: Option<LabCommand>,
    /// Run only this built-in profile (repeatable); default: the Whonix profile and five
    /// classic breakages (see --list)
    #[arg(long = "profile", value_name = "NAME")]
    profiles: Vec<String>,
    /// Run every built-in profile, the evasion profiles too
    #[arg(long, conflicts_with = "profiles")]
    all: bool,
    /// A network let out on purpose (ADDR/PREFIX, repeatable): given to every watch as
    /// --allow-net, and the probes to it are taken out of every profile's expectation
    #[arg(long = "allow-net", value_name = "ADDR/PREFIX")]
    allow_net: Vec<String>,
    /// Test this ruleset as the gateway's policy (expected: PASS, see --expect): an nftables
    /// script, or with --format iptables an iptables-save file. Loaded as data, never run
    #[arg(long, value_name = "FILE")]
    ruleset: Option<PathBuf>,
    /// The ruleset's format: nft (`nft -f`) or iptables (iptables-save / ip6tables-save files,
    /// loaded with iptables-nft-restore / ip6tables-nft-restore)
    #[arg(long, value_name = "nft|iptables", default_value = "nft", requires = "ruleset",
          value_parser = |s: &str| s.parse::<RulesetFormat>())]
    format: RulesetFormat,
    /// With --format iptables: the ip6tables-save file (without it IPv6 has no rules)
    #[arg(long, value_name = "FILE", requires = "ruleset")]
    ruleset6: Option<PathBuf>,
    /// A sysctl for the gateway's namespace, set after the lab's defaults (forwarding off);
    /// repeatable, per-namespace network keys only (net.ipv4.*, net.ipv6.*, net.netfilter.*)
    #[arg(long = "sysctl", value_name = "KEY=VALUE", requires = "ruleset",
          value_parser = |s: &str| leaktest_lab::ruleset::parse_sysctl(s))]
    sysctls: Vec<(String, String)>,
    /// The verdict the ruleset must get: exit status 0 when it does (pin a known result in a
    /// firewall project's CI)
    #[arg(long, value_name = "pass|leak", default_value = "pass", requires = "ruleset",
          value_parser = parse_expect)]
    expect: Verdict,
    /// Run the gateway's tor as this user, by name or number (a uid with no passwd entry
    /// works): the user your ruleset lets out (default: debian-tor)
    #[arg(long, value_name = "NAME|UID")]
    tor_user: Option<TorUser>,
    /// What the ruleset protects: gateway (a workstation behind it), host (the machine
    /// itself: tor's TransPort and DNSPort on 127.0.0.1, sweeps from the host as root and as
    /// an unprivileged uid) or killswitch (no anonymizer: nothing may leave but --allow)
    #[arg(long, value_name = "gateway|host|killswitch", default_value = "gateway",
          requires = "ruleset", value_parser = |s: &str| s.parse::<Mode>())]
    mode: Mode,
    /// A listener line for the gateway's torrc (repeatable): SocksPort, TransPort, DNSPort,
    /// HTTPTunnelPort or NATDPort with [ADDR:]PORT and flags, e.g. 'DNSPort 127.0.0.1:5353';
    /// replaces the lab's own lines for that option (no other option is accepted)
    #[arg(long = "torrc", value_name = "LINE",
          value_parser = |s: &str| leaktest_lab::gateway::parse_torrc_line(s))]
    torrc: Vec<String>,
    /// With --mode host, how the host shows it works: trans (an unprivileged lookup and
    /// connection that the ruleset must take to tor), socks (through SocksPort, a host with no
    /// transparent proxy) or none
    #[arg(long, value_name = "trans|socks|none", default_value = "trans", requires = "ruleset",
          value_parser = |s: &str| s.parse::<Check>())]
    check: Check,
    /// With --ruleset: the gateway's tor reaches the network only through the lab's obfs4
    /// bridge (obfs4proxy in the private network; UseBridges, Bridge, ClientTransportPlugin set
    /// over the control port before the works-check, reset after). The watcher takes the bridge
    /// from GETCONF Bridge; the run must show Tor traffic to it
    #[arg(long, requires = "ruleset")]
    bridge: bool,
    /// An endpoint let out on purpose, in `leaktest watch --allow` syntax (repeatable): a
    /// kill switch's VPN server, e.g. udp:198.51.100.7:51820
    #[arg(long = "allow", value_name = "SPEC")]
    allow: Vec<String>,
    /// Write the per-profile results and the watcher's reports here
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write an HTML page of the results here (one row per profile, then each profile's leaks)
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Leave the lab up afterwards and print how to enter it (`leaktest lab down` removes it)
    #[arg(long)]
    keep: bool,
    /// Probe rate for every sweep
    #[arg(long, default_value = "max", value_name = "PPS|max")]
    rate: String,
    /// Run a transition scenario (repeatable): reload, boot, boot-bad-file, fin-rst, iface-bounce,
    /// bootstrap or tor-kill (see
    /// --list). The policy changes 1 s into a watch while pulses (`probe --duration`) run from the workstation
    /// and from the gateway as root and as an unprivileged uid. Without --ruleset: the Whonix
    /// profile's policy, changed the right way (must PASS in every phase) and the wrong way (must
    /// LEAK, and only inside its window). With --ruleset (nftables): your ruleset changed the
    /// right way (one `nft -f` transaction), judged by --expect; it runs instead of the sweeps.
    /// --all runs every scenario both ways
    #[arg(long = "transition", value_name = "NAME",
          value_parser = parse_scenario)]
    transitions: Vec<Scenario>,
    /// With --transition reload: the ruleset that replaces --ruleset (default: --ruleset itself),
    /// e.g. Whonix's "timesync" and "full" pair
    #[arg(long, value_name = "FILE", requires = "ruleset")]
    reload_with: Option<PathBuf>,
    /// List the built-in profiles and exit
    #[arg(long)]
    list: bool,
}

#[derive(clap::Subcommand)]
enum LabCommand {
    /// Remove every lab left up (with --keep) or left over from a crash
    Down,
    /// Print the lab's plan (namespaces, interfaces, addresses, tor's ports and uid, the sweeps
    /// and their uids), to write a ruleset for it
    Plan {
        /// As JSON
        #[arg(long)]
        json: bool,
    },
    /// (internal) the lab's web and DNS servers, run inside the lab's `net` namespace
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        token: String,
        #[arg(long)]
        web_log: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let r = run_inner(args);
    if leaktest_lab::lab::STOPPING.load(Ordering::SeqCst) {
        // A signal is tearing the lab down; its thread ends the process.
        loop {
            std::thread::park();
        }
    }
    r
}

fn run_inner(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(LabCommand::Down) => return down(),
        Some(LabCommand::Plan { json }) => return plan(json),
        Some(LabCommand::Serve { token, web_log }) => return serve(token, web_log),
        None => {}
    }
    if args.list {
        for p in builtin() {
            println!(
                "{:<30} {:<5} {:<8} {}",
                p.name,
                if p.expect_pass() { "PASS" } else { "LEAK" },
                if p.default { "default" } else { "--all" },
                p.about
            );
        }
        for c in leaktest_lab::ruleset::classes() {
            println!(
                "{:<30} {:<5} {:<8} class {} ({}): {}",
                c.name,
                if c.findings.is_empty() {
                    "PASS"
                } else {
                    "LEAK"
                },
                "--all",
                c.class,
                match c.mode {
                    Mode::Gateway => "gateway",
                    Mode::Host => "host",
                    Mode::Killswitch => "kill switch",
                },
                c.about
            );
        }
        for sc in Scenario::ALL {
            println!(
                "{:<30} {:<5} {:<8} transition, right way PASS, wrong way LEAK: {}",
                format!("--transition {}", sc.name()),
                "both",
                "--all",
                sc.about()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.transitions.is_empty() && args.ruleset.is_some() && args.format != RulesetFormat::Nft {
        bail!("--transition with --ruleset takes an nftables ruleset (--format nft)");
    }
    if args.reload_with.is_some() && !args.transitions.contains(&Scenario::Reload) {
        bail!("--reload-with needs --transition reload");
    }
    let targets = targets(&args)?;
    for a in &args.allow {
        leaktest_watch::parse_allow(a).with_context(|| format!("--allow {a}"))?;
    }
    let allow_nets: Vec<_> = args
        .allow_net
        .iter()
        .map(|n| leaktest_watch::parse_allow_net(n).map(|e| e.net))
        .collect::<Result<_, _>>()?;
    // The outputs are checked before a namespace exists, not found out at the end.
    let outputs: Vec<(&str, &std::path::Path)> = [("--json", &args.json), ("--html", &args.html)]
        .into_iter()
        .filter_map(|(n, p)| p.as_deref().map(|p| (n, p)))
        .collect();
    leaktest_fs::check_outputs(&outputs)?;
    leaktest_lab::lab::preflight()?;
    install_signal_teardown()?;
    let exe = std::env::current_exe().context("finding the leaktest binary")?;
    let opts = Options {
        servers: ServerMode::Exe(exe.clone()),
        tor_user: args.tor_user.clone().unwrap_or_default(),
        torrc: args.torrc.clone(),
        bridge: targets.iter().any(|t| t.uses_bridge()),
        ..Options::default()
    };
    let t0 = Instant::now();
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "leaktest lab: building the lab ({} profile(s))",
        targets.len()
    );
    let mut progress = |phase: &str, d: Duration| {
        let _ = writeln!(
            std::io::stderr(),
            "[{:6.1}s] {phase:<22} {:5.1}s",
            t0.elapsed().as_secs_f64(),
            d.as_secs_f64()
        );
    };
    let mut lab = Lab::start(&opts, &mut progress).context("building the lab")?;
    let sopts = SuiteOptions {
        exe,
        probe_rate: args.rate.clone(),
        local_sweeps: true,
        allow_nets,
        allow: args.allow.clone(),
    };
    // Profiles that must leak need no working Tor: they run while the
    // private Tor network forms its first consensus. Profiles that must pass
    // (and those that need tor's ports listening) run after the gateway has
    // bootstrapped and been shown to work; a gateway or host ruleset sends
    // all its probes but those to port 53 and those carrying a DNS query
    // meanwhile (`suite::prepare_target`: how tor's DNSPort answers depends
    // on tor's state). No verdict is reported unless that proof succeeds
    // (`ready` fails the lab).
    let (early, late): (Vec<usize>, Vec<usize>) =
        (0..targets.len()).partition(|&i| !targets[i].needs_tor());
    let mut results: Vec<Option<ProfileResult>> = vec![None; targets.len()];
    let mut prepared: Vec<Option<suite::Prepared>> = (0..targets.len()).map(|_| None).collect();
    let mut report = |r: &ProfileResult, note: &str| {
        let _ = writeln!(
            err,
            "[{:6.1}s] profile {:<19} {:5.1}s  expected {}, got {}{}{note}",
            t0.elapsed().as_secs_f64(),
            r.profile,
            r.seconds,
            r.expected,
            r.got.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            if r.matched { "" } else { "  MISMATCH" },
        );
    };
    for &i in &early {
        let t = &targets[i];
        let r = suite::run_target(&mut lab, t, &sopts, None)
            .with_context(|| format!("profile {}", t.name()))?;
        report(&r, "  (before the gateway check)");
        results[i] = Some(r);
    }
    // (A kill switch alone needs no working Tor: no wait for one.)
    if !late.is_empty() {
        for &i in &late {
            let t = &targets[i];
            if t.runs_in_two_parts() {
                let tp = Instant::now();
                prepared[i] = Some(
                    suite::prepare_target(&mut lab, t, &sopts)
                        .with_context(|| format!("profile {}", t.name()))?,
                );
                progress(&format!("{}: before tor", t.name()), tp.elapsed());
            }
        }
        lab.ready(&mut progress)
            .context("making the gateway work (consensus, bootstrap, a fetch through Tor)")?;
    }
    for &i in &late {
        let t = &targets[i];
        let r = suite::run_target(&mut lab, t, &sopts, prepared[i].take())
            .with_context(|| format!("profile {}", t.name()))?;
        report(&r, "");
        results[i] = Some(r);
    }
    let mut results: Vec<ProfileResult> = results.into_iter().flatten().collect();
    let transitions = transitions(&args, &lab)?;
    // The FIN/RST check's connections go through the gateway's tor (in
    // fin-rst and tor-kill); bootstrap starts from a tor that has been up
    // (its directory cached).
    if late.is_empty()
        && transitions.iter().any(|t| {
            matches!(
                t.scenario,
                Scenario::FinRst | Scenario::TorKill | Scenario::Bootstrap
            )
        })
    {
        lab.ready(&mut progress)
            .context("making the gateway work (consensus, bootstrap, a fetch through Tor)")?;
    }
    for t in transitions {
        let r = leaktest_lab::transition::run_transition(&mut lab, &t, &sopts)
            .with_context(|| format!("transition {}", t.name))?;
        report(&r, "");
        results.push(r);
    }
    let total = t0.elapsed().as_secs_f64();
    print_table(&results);
    println!("nothing to last verdict: {total:.1} s");
    if let Some(path) = &args.json {
        let phases: Vec<_> = lab
            .timings
            .iter()
            .map(|(p, d)| serde_json::json!({"phase": p, "seconds": d.as_secs_f64()}))
            .collect();
        let doc = serde_json::json!({"lab": lab.state.prefix, "tmpdir": lab.state.tmpdir, "seconds": total, "phases": phases, "profiles": results});
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        let page = leaktest_lab::html::lab_page(&results, total);
        leaktest_fs::write_atomic("--html", path, |w| w.write_all(page.as_bytes()))?;
    }
    if args.keep {
        // The profiles did not run in the order given (see above): leave
        // the gateway with the last one's policy, as asked.
        if let (Some(last), Some(g)) = (targets.last(), lab.gw_tor.clone()) {
            suite::apply_target(&lab, last, g.uid)
                .with_context(|| format!("loading the policy of {}", last.name()))?;
            eprintln!(
                "leaktest lab: the gateway keeps the policy of {}",
                last.name()
            );
        }
        let st = lab.keep()?;
        print_keep(&st);
    } else {
        lab.teardown().context("tearing the lab down")?;
    }
    Ok(if results.iter().all(|r| r.matched) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The transitions to run: with --ruleset, each of --transition on it the
/// right way; else each of --transition (every one with --all) on the
/// Whonix profile's policy, both ways.
fn transitions(args: &Args, lab: &Lab) -> anyhow::Result<Vec<Transition>> {
    let uid = lab.gw_tor.as_ref().map(|g| g.uid).unwrap_or(0);
    let scenarios: Vec<Scenario> = if args.all && args.ruleset.is_none() {
        Scenario::ALL.to_vec()
    } else {
        args.transitions.clone()
    };
    let mut v = Vec::new();
    match &args.ruleset {
        Some(path) => {
            let read = |p: &std::path::Path| -> anyhow::Result<String> {
                let (text, _) = leaktest_lab::ruleset::read(p, None, RulesetFormat::Nft)?;
                let r = UserRuleset {
                    name: String::new(),
                    format: RulesetFormat::Nft,
                    text,
                    text6: None,
                    sysctls: vec![],
                    expect: args.expect,
                    mode: args.mode,
                    check: args.check,
                    allow: vec![],
                    findings: None,
                    bridge: false,
                };
                Ok(r.with_tor_uid(uid).text)
            };
            let before = read(path)?;
            let after = match &args.reload_with {
                Some(p) => read(p)?,
                None => before.clone(),
            };
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut sysctls = vec![
                ("net.ipv4.ip_forward".to_string(), "0".to_string()),
                ("net.ipv6.conf.all.forwarding".to_string(), "0".to_string()),
            ];
            sysctls.extend(args.sysctls.iter().cloned());
            for sc in scenarios {
                v.push(Transition::of_ruleset(
                    sc,
                    &name,
                    &before,
                    &after,
                    &sysctls,
                    args.expect,
                ));
            }
        }
        None => {
            let p = leaktest_lab::profiles::Policy::WHONIX;
            let text = p.ruleset(uid);
            let text = text
                .strip_prefix("flush ruleset\n")
                .unwrap_or(&text)
                .to_string();
            let sysctls: Vec<(String, String)> = p
                .sysctls()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let tcp_forward = builtin()
                .into_iter()
                .find(|p| p.name == "tcp-forward")
                .expect("the tcp-forward profile")
                .policy;
            let wrong = tcp_forward.ruleset(uid);
            let wrong = wrong
                .strip_prefix("flush ruleset\n")
                .unwrap_or(&wrong)
                .to_string();
            let wrong_sysctls: Vec<(String, String)> = tcp_forward
                .sysctls()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            for sc in scenarios {
                if sc == Scenario::FinRst {
                    v.extend(Transition::fin_rst(&text, &sysctls, &wrong, &wrong_sysctls));
                } else {
                    v.extend(Transition::builtin(sc, &text, &sysctls).ok_or_else(|| {
                        anyhow::anyhow!(
                            "the Whonix profile's policy lacks the chains --transition {} changes",
                            sc.name()
                        )
                    })?);
                }
            }
        }
    }
    Ok(v)
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    Scenario::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Scenario::ALL.iter().map(|x| x.name()).collect();
        format!("{s:?}: one of {}", names.join(", "))
    })
}

fn parse_expect(s: &str) -> Result<Verdict, String> {
    match s {
        "pass" => Ok(Verdict::Pass),
        "leak" => Ok(Verdict::Leak),
        _ => Err(format!("{s:?}: pass or leak")),
    }
}

fn targets(args: &Args) -> anyhow::Result<Vec<Target>> {
    let all = builtin();
    let classes = leaktest_lab::ruleset::classes();
    let mut v = Vec::new();
    for name in &args.profiles {
        match (
            all.iter().find(|p| p.name == name),
            classes.iter().find(|c| c.name == name),
        ) {
            (Some(p), _) => v.push(Target::Builtin(p.clone())),
            (None, Some(c)) => v.push(Target::Ruleset(c.ruleset())),
            (None, None) => bail!(
                "unknown profile {name:?} (known: {})",
                all.iter()
                    .map(|p| p.name)
                    .chain(classes.iter().map(|c| c.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    // With --transition, a ruleset's transitions run instead of its sweeps
    // (see `transitions`).
    if let Some(path) = args
        .ruleset
        .as_ref()
        .filter(|_| args.transitions.is_empty())
    {
        let (text, text6) =
            leaktest_lab::ruleset::read(path, args.ruleset6.as_deref(), args.format)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ruleset".into());
        v.push(Target::Ruleset(UserRuleset {
            name,
            format: args.format,
            text,
            text6,
            sysctls: args.sysctls.clone(),
            expect: args.expect,
            mode: args.mode,
            check: args.check,
            allow: vec![],
            findings: None,
            bridge: args.bridge,
        }));
    }
    if args.all {
        v.extend(all.into_iter().map(Target::Builtin));
        v.extend(classes.iter().map(|c| Target::Ruleset(c.ruleset())));
    } else if v.is_empty() && args.transitions.is_empty() {
        v = all
            .into_iter()
            .filter(|p| p.default)
            .map(Target::Builtin)
            .collect::<Vec<_>>();
    }
    Ok(v)
}

fn print_table(results: &[ProfileResult]) {
    println!();
    println!(
        "{:<20} {:<9} {:<13} {:>7}  leaks found",
        "profile", "expected", "got", "seconds"
    );
    for r in results {
        let got = match (r.got, r.matched) {
            (Some(v), true) => v.to_string(),
            (Some(v), false) => format!("{v} (!)"),
            (None, _) => "- (!)".into(),
        };
        let first = r.findings.first().cloned().unwrap_or_else(|| "none".into());
        println!(
            "{:<20} {:<9} {:<13} {:>7.1}  {first}",
            r.profile,
            r.expected.to_string(),
            got,
            r.seconds
        );
        for f in r.findings.iter().skip(1) {
            println!("{:<53}  {f}", "");
        }
        for m in &r.mismatches {
            println!("{:<53}  MISMATCH: {m}", "");
        }
    }
    let ok = results.iter().filter(|r| r.matched).count();
    println!("\n{ok} of {} profile(s) as expected", results.len());
}

fn print_keep(st: &State) {
    println!(
        "\nThe lab stays up (state: {}/{}.json). Enter it with:",
        state::STATE_DIR,
        st.prefix
    );
    println!("  workstation: ip netns exec {} bash", st.names.ws);
    println!("  gateway:     ip netns exec {} bash   (interfaces {GW_INT_IF}, {GW_EXT_IF}; nft list ruleset)", st.names.gw);
    println!(
        "  internet:    ip netns exec {} bash   (Tor network, web server, DNS {DNS4})",
        st.names.net
    );
    println!("Remove it with: leaktest lab down");
}

fn down() -> anyhow::Result<ExitCode> {
    leaktest_lab::lab::preflight()?;
    let removed = state::remove_leftovers(std::path::Path::new(state::STATE_DIR), true)?;
    if removed.is_empty() {
        println!("no lab to remove");
    } else {
        println!("removed lab(s): {}", removed.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// SIGINT/SIGTERM tear down this process's labs (from their state files) and exit.
fn install_signal_teardown() -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("lab-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                eprintln!("\nleaktest lab: signal {sig}: tearing the lab down");
                leaktest_lab::lab::STOPPING.store(true, Ordering::SeqCst);
                // Let a process being started right now be recorded (or stopped) first.
                std::thread::sleep(std::time::Duration::from_millis(200));
                let me = std::process::id();
                let dir = std::path::Path::new(state::STATE_DIR);
                for (_, s) in State::load_all(dir) {
                    if s.owner.pid == me && !s.kept {
                        if let Err(e) = s.remove(dir) {
                            eprintln!("leaktest lab: teardown: {e}");
                        }
                    }
                }
                std::process::exit(128 + sig);
            }
        })?;
    Ok(())
}

fn serve(token: String, web_log: PathBuf) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let web = leaktest_lab::servers::bind_web()?;
    let dns = leaktest_lab::servers::bind_dns(DNS4)?;
    let s2 = stop.clone();
    let d = std::thread::spawn(move || leaktest_lab::servers::serve_dns(dns, s2));
    leaktest_lab::servers::serve_web(web, token, web_log, stop.clone())?;
    stop.store(true, Ordering::Relaxed);
    let _ = d.join();
    Ok(ExitCode::SUCCESS)
}

/// `leaktest lab plan`: the plan the lab builds, from the lab's own constants.
fn plan(json: bool) -> anyhow::Result<ExitCode> {
    let uid = leaktest_lab::sys::user_ids(leaktest_lab::gateway::TOR_USER).map(|(u, _)| u);
    let v = leaktest_lab::plan::describe(uid);
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let ns = &v["namespaces"];
    for (role, key) in [
        ("workstation", "workstation"),
        ("gateway", "gateway"),
        ("internet", "internet"),
    ] {
        println!("{role} ({}):", ns[key]["name"].as_str().unwrap_or(""));
        for i in ns[key]["interfaces"].as_array().into_iter().flatten() {
            let addrs: Vec<&str> = i["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str())
                .collect();
            let what = i["role"]
                .as_str()
                .map(|r| format!(" [{r}]"))
                .unwrap_or_default();
            println!(
                "  {}{what}: {}",
                i["name"].as_str().unwrap_or(""),
                addrs.join(", ")
            );
        }
    }
    let t = &v["tor"];
    println!(
        "tor on the gateway: user {} (uid {}), TransPort {}, DNSPort {}, SocksPort {} on {}; ControlPort {}",
        t["user"].as_str().unwrap_or(""),
        t["uid"],
        t["trans_port"],
        t["dns_port"],
        t["socks_port"],
        t["listen"].as_array().into_iter().flatten().filter_map(|a| a.as_str()).collect::<Vec<_>>().join(" and "),
        t["control_port"].as_str().unwrap_or("")
    );
    for s in v["sweeps"].as_array().into_iter().flatten() {
        println!(
            "sweep {}: from {} with {} sockets as uid {}",
            s["name"].as_str().unwrap_or(""),
            s["from"].as_str().unwrap_or(""),
            s["socket"].as_str().unwrap_or(""),
            s["uid"]
        );
    }
    Ok(ExitCode::SUCCESS)
}
