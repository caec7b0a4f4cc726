//! `leaktest watch`: argument parsing, signals, the optional Tor restriction,
//! and the reports; the session itself is `leaktest_watch::session`.

use anyhow::{bail, Context};
use leaktest_capture::CaptureConfig;
use leaktest_priv::{Ended, Recv, Sandbox, Side};
use leaktest_tor::restrict::{self, RestrictGuard};
use leaktest_tor::{AllowlistFeed, ConnectOptions, ControlTarget, PendingFeed, DEFAULT_CONTROL};
use leaktest_watch::session::{self, SessionConfig, SessionError, SessionHooks};
use leaktest_watch::{parse_allow_list, RULES};
use leaktest_wire::MarkerKeys;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// SIGINT, SIGTERM, SIGHUP (a dropped SSH session) and SIGQUIT all end a
/// watch the same way: the full report, and a Tor restriction undone.
const STOP_SIGNALS: [i32; 4] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGQUIT,
];

/// Exit status when a signal ends leaktest before a watch began.
const EXIT_INTERRUPTED: u8 = 130;

const LONG_ABOUT: &str = "\
Capture every frame leaving the gateway's external interface and judge it.

Run it on the Tor gateway, on the interface that faces the real network, then run \
`leaktest probe` on the workstation behind the gateway. Every outbound frame (IPv4, IPv6 \
and anything else at layer 2) is decided by an ordered table of rules; the first that \
claims a frame decides, and its name is in every report:
  allow-net      to an --allow-net network: counted as allowed, apart from leaks (probes too)
  probe-marker   the authenticated marker of a probe: LEAK, attributed to that probe, \
whatever its destination (probe traffic must never leave in the clear, not even to a relay)
  canary         the canary EtherType: this watch's own canary, byte for byte and seen \
once; anything else of that EtherType is a forged canary: LEAK
  tor            TCP from the gateway to an endpoint its Tor uses AND carrying what Tor \
sends there (TLS from the first byte to an ORPort, obfs4's shape to an obfs4 bridge, never \
cleartext): Tor; to such an endpoint but not Tor-shaped: LEAK
  allow          to an --allow endpoint, of its kind: counted as allowed, apart from Tor
  arp, neighbour-discovery, mld, igmp, dhcpv4, dhcpv6
                 link housekeeping with exactly the content the gateway's kernel sends \
(own addresses, on-link destinations, nothing after the options): counted, not a leak \
(a leak with --strict); of those shapes but with other content: LEAK
  default        anything else: LEAK

The Tor endpoints come from Tor itself with --tor-control: every relay of the consensus \
(IPv4 and IPv6 ORPorts), directory authorities, fallback directories and bridges with \
their transports, refreshed on every new consensus while watching. DirPorts are not Tor \
endpoints for a Tor client: a client fetches directory documents inside its TLS link, \
never from a DirPort (tor's dirclient.c), so a request to a DirPort is a leak. The seed \
procedure's Step 0 (restricting Tor to ports 80 and 443) is unnecessary: relays on any \
port are recognised, and a leak to port 80, 443, 9001 or 9030 is still reported. \
--restrict-tor still applies Step 0 for the duration of the watch and undoes it afterwards; \
beware that restricting Tor's ports changes which guards Tor selects.

--allow-net ADDR/PREFIX lets out a whole network on purpose (Whonix lets some LANs through \
to the gateway's users by design): every frame to it, probes included, is counted as allowed \
(rule allow-net, before every other rule) and reported apart, never as a leak.

--allow [KIND:]ADDR[/PREFIX]:PORT[-PORT] lets out what the operator means to let out; \
IPv6 in brackets. Kinds: any (the default: TCP, UDP, SCTP, DCCP, UDP-Lite to that address \
and port, whatever they carry), tcp, udp (a WireGuard or OpenVPN-UDP server), tls (TCP \
that must be TLS from its first byte, never cleartext), and tor or obfs4 (a relay or \
bridge given by hand, for a gateway without a control port: counted as Tor).

The watch proves that its capture sees: it injects harmless canary frames (EtherType \
0x88B5 to a locally administered MAC) at the start, every second and at the end, and \
requires its own capture to see every one exactly once. At the end it seals the capture \
and requires the kernel's count of outbound frames to equal the frames it classified. A \
missed canary, a kernel drop, counts that do not close, the interface lost (moved to another \
network namespace, replaced by another, re-created already up, or down or gone at the end), or \
the Tor allowlist becoming unavailable makes PASS impossible. The interface going down and up, \
or deleted and created again with the same name and MAC (bound before it comes up), are \
timeline events: the capture follows it and proves itself again with a canary.

The limit of any content check: a process on the gateway that wraps its data in \
well-formed TLS records to a relay's ORPort looks like Tor; what is ruled out is anything \
in the clear.

The watch ends after --duration, or on SIGINT (Ctrl-C), SIGTERM, SIGHUP (a dropped SSH \
session) or SIGQUIT, and then writes all its reports and undoes --restrict-tor. A second \
signal exits at once without reports.

Files: every output (--json, --junit, --pcap, --ready-file) is checked before the first \
frame: its directory must exist and be writable, it must be a regular file or new (never a \
directory, device or FIFO), and no two may be the same file. Reports are written to a \
temporary file in the same directory and renamed over the target. A report that still \
cannot be written at the end is a warning (on stderr and in the other reports); the exit \
status stays the verdict's. A --pcap file cut short by a full disk keeps every whole block \
and the warning says how many of the frames it holds. --key-file must be a regular file of \
at most 4 KiB.

One watcher per interface: a second watch on the same interface (same network namespace) \
is refused with the first one's PID (lock in $LEAKTEST_RUN_DIR, default /run/leaktest).

Privilege separation: once the capture, the canary socket, Tor's control connection and the \
pcap file are open, the watch forks. The child reads and judges every frame as --user \
(default the `leaktest` user, else `nobody`) in a session of its own, with no capabilities, \
PR_SET_NO_NEW_PRIVS and a seccomp filter allowing only the capture loop's system calls (no \
sending on its packet sockets, no connect, no exec), verified in /proc before the first \
frame. The parent (the PID to signal; the one in the ready file) stays root and reads nothing \
from the network: it keeps Tor's control connection and passes the allowlist down, sends the \
canaries the child asks for (canary-shaped only), passes signals on, and at the end undoes \
--restrict-tor and writes the reports. A child that dies or misbehaves ends the watch with \
exit 2. --no-sandbox keeps one privileged process (debugging only).";

const AFTER_LONG_HELP: &str = "\
Verdict and exit status:
  0  PASS          nothing leaked, and the capture was proven complete
  1  LEAK          at least one frame leaked (printed live, one line per new group)
  3  INCONCLUSIVE  nothing leaked, but the capture could not be proven complete
  2  error         bad option, unusable output path, missing interface, another
                   watcher on it, no privileges (needs root or CAP_NET_RAW),
                   unreachable or refusing control port, a sandbox that could
                   not be entered, a sandboxed reader that died
  130              a signal before the watch began (e.g. while connecting to
                   the control port): nothing was judged

Examples:
  leaktest watch --iface eth0 --tor-control 127.0.0.1:9051 --duration 120 --json watch.json
  leaktest watch --iface eth0 --tor-control 127.0.0.1:9051 --families both --junit leaktest.xml
  leaktest watch --iface eth0 --tor-control /run/tor/control --pcap leaks.pcapng
  leaktest watch --iface eth0 --allow 198.51.100.7:443 --allow [2001:db8::7]:9001
  leaktest watch --iface eth0 --tor-control /run/tor/control --duration 60 \
      --run-at 20 'systemctl restart tor' --run-at 40 'systemctl restart whonix-firewall'

Timeline: each --run-at command and each line on --event-fifo is an event; the watch before \
the first event is the phase `start`, each event begins a phase that lasts until the next. The \
report lists the events (start, end, exit status) and per phase its verdict, its leaked \
packets, the first and last of them in ms after the phase began and, for a pulse's probes \
(`leaktest probe --duration`), the rounds they were sent in; each leak in the JSON names its \
event and since_event_ms. A phase without leaks is PASS only when the whole watch proved it \
saw. The commands run in the privileged parent (not the sandboxed reader), as the user that \
started the watch.

Captured bytes: up to --snaplen bytes of each frame (default 4096). Every probe is far \
shorter; only longer frames (TCP segmentation-offload super-frames up to 64 KiB, jumbo \
frames) are truncated, and their real length is kept.";

#[derive(clap::Args)]
#[command(before_long_help = LONG_ABOUT, after_long_help = AFTER_LONG_HELP)]
pub struct Args {
    /// The gateway's external interface (Ethernet)
    #[arg(long, value_name = "IFACE")]
    iface: String,
    /// Tor's control port, HOST:PORT or a unix socket path: the allowlist of Tor endpoints comes
    /// from it (cookie, password or no authentication, as Tor offers)
    #[arg(long, value_name = "ADDR|PATH")]
    tor_control: Option<String>,
    /// Name of an environment variable holding the control-port password (HASHEDPASSWORD)
    #[arg(long, value_name = "VAR")]
    tor_password_env: Option<String>,
    /// An endpoint let out on purpose: [any|tcp|udp|tls|tor|obfs4:]ADDR[/PREFIX]:PORT[-PORT]
    /// (see above); repeatable
    #[arg(long = "allow", value_name = "[KIND:]ADDR:PORT")]
    allow: Vec<String>,
    /// A network let out on purpose (a LAN the gateway's users may reach by design): every
    /// frame to an address inside it is counted as allowed, probes included, apart from the
    /// leaks; ADDR/PREFIX, repeatable
    #[arg(long = "allow-net", value_name = "ADDR/PREFIX")]
    allow_net: Vec<String>,
    /// Stop after this many seconds (default: until Ctrl-C or SIGTERM)
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// Write the JSON report here
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a JUnit XML report here (one test case per probe family and protocol)
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write a self-contained HTML page of the report here (also `leaktest report FILE.json
    /// --html FILE` later)
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// The families the workstation probes (as its `probe --family`): the JUnit report passes
    /// a family's probe cases only when declared here, and skips them otherwise (a probe that
    /// did not leak is never seen, so the watcher cannot know it was sent)
    #[arg(long, value_enum, value_name = "4|6|both")]
    families: Option<super::probe::FamilyArg>,
    /// Write every leaked frame to this pcapng file (with the kernel's drop counters); each
    /// frame's comment says the rule that decided it and, with --run-at or --event-fifo, the
    /// event it followed and how many ms after it (`after event 1 'reload' +40.123 ms`); the
    /// file's section comment lists the timeline
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Also write Tor, housekeeping and canary frames to the --pcap file
    #[arg(long, requires = "pcap")]
    pcap_all: bool,
    /// Count link housekeeping (ARP, neighbour discovery, MLD, DHCP) as leaks
    #[arg(long)]
    strict: bool,
    /// Restrict Tor to ports 80/443 during the watch (the seed's Step 0) and restore it after,
    /// also on error, Ctrl-C and SIGTERM. Unnecessary with the Tor-aware allowlist, and it
    /// changes which guards Tor selects (only relays on 80/443 qualify): use it only to
    /// reproduce the old procedure. Uses --tor-control, else 127.0.0.1:9051.
    #[arg(long)]
    restrict_tor: bool,
    /// Shared marker secret, 32 hex digits, as given to `leaktest probe --key-file`
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// A probe run to expect (its run id, 16 hex digits, as `leaktest probe --run-id` takes;
    /// repeatable, at most 8 used): its reflections (the gateway's SYN-ACKs and RSTs to the spoof
    /// suite's forged sources) are attributed even when none of its markers reaches the uplink
    /// (a DNS answer to a forged source carries the marker and needs no announcing)
    #[arg(long = "run", value_name = "HEX", value_parser = super::probe::parse_run_id)]
    runs: Vec<u64>,
    /// Written once the capture is proven live (its first canary seen)
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
    /// The unprivileged user (name or uid; a uid without a passwd entry works) that reads and
    /// judges frames once the capture is open; default `leaktest` if that user exists, else
    /// `nobody`. Needs root (started with capabilities only, the reader keeps the current uid)
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Read and judge frames with full privilege, in one process (debugging only: a parser bug
    /// is then a root compromise of the gateway)
    #[arg(long, conflicts_with = "user")]
    no_sandbox: bool,
    /// At SECONDS after the watch began, run COMMAND on this host (`sh -c`, as the user that
    /// started the watch, in its own process group): a moment of change, e.g. `systemctl restart
    /// tor`, `nft -f new.nft`, `ip link set eth0 down`. Repeatable. Its start and end mark the
    /// timeline; the report says what leaked after it (JSON `events`, `phases`, per leak `event`
    /// and `since_event_ms`), with a verdict per phase. Still running at the end: ended
    #[arg(long, num_args = 2, value_names = ["SECONDS", "COMMAND"], action = clap::ArgAction::Append)]
    run_at: Vec<String>,
    /// Read event names from the FIFO at PATH (created if missing, removed then at the end):
    /// each line written to it marks the timeline at that moment, e.g. `echo reload > PATH`
    /// from the script that reloads the firewall
    #[arg(long, value_name = "PATH")]
    event_fifo: Option<PathBuf>,
    /// Capture ring size in MiB
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(2..=2047))]
    buffer_mib: u32,
    /// Bytes kept of each captured frame
    #[arg(long, value_name = "BYTES", default_value_t = leaktest_capture::DEFAULT_SNAPLEN, value_parser = clap::value_parser!(u32).range(256..=262144))]
    snaplen: u32,
}

/// The longest `--duration`, in seconds (about 31 years).
const MAX_DURATION_S: f64 = 1e9;

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .ok()
        .filter(|v: &f64| !v.is_nan())
        .ok_or_else(|| format!("`{s}` is not a number of seconds"))?;
    if v <= 0.0 {
        return Err(format!("`{s}`: the duration must be positive"));
    }
    if v < 0.1 {
        return Err(format!(
            "`{s}` seconds is too short to prove a capture (at least 0.1 s)"
        ));
    }
    if v > MAX_DURATION_S {
        return Err(format!(
            "`{s}` seconds is longer than the longest watch (1,000,000,000 s, about 31 years); \
             leave --duration out to watch until stopped"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

/// One watcher per interface: two on one interface would each see the
/// other's canaries (and a LEAK with the wrong reason). The lock is
/// `$LEAKTEST_RUN_DIR/watch-net<NETNS>-if<IFINDEX>.lock` (default
/// /run/leaktest), named by the network namespace's inode and the
/// interface's index; `None` if the interface does not exist (the session
/// then says so).
fn watch_lock(iface: &str) -> anyhow::Result<Option<leaktest_fs::InstanceLock>> {
    let Ok(name) = std::ffi::CString::new(iface) else {
        return Ok(None);
    };
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Ok(None);
    }
    let netns = leaktest_fs::netns_inode().context("reading this network namespace's identity")?;
    let lock = leaktest_fs::InstanceLock::acquire(
        &format!("interface {iface}"),
        &leaktest_fs::run_dir(),
        &leaktest_fs::watch_lock_name(netns, index),
    )
    .map_err(|e| match e {
        leaktest_fs::FsError::Locked { .. } => anyhow::anyhow!(
            "{e}: one watcher per interface (a second would see the first's canaries as forged); \
             end that watch first"
        ),
        e => anyhow::anyhow!("{e} (set LEAKTEST_RUN_DIR to a writable directory)"),
    })?;
    Ok(Some(lock))
}

fn connect_options(args: &Args) -> anyhow::Result<Option<ConnectOptions>> {
    let target = match (&args.tor_control, args.restrict_tor) {
        (Some(t), _) => t.clone(),
        (None, true) => DEFAULT_CONTROL.to_string(),
        (None, false) => return Ok(None),
    };
    let target = ControlTarget::parse(&target).context("--tor-control")?;
    let mut opts = ConnectOptions::new(target);
    if let Some(var) = &args.tor_password_env {
        opts = opts.password_from_env(var)?;
    }
    Ok(Some(opts))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.tor_password_env.is_some() && args.tor_control.is_none() && !args.restrict_tor {
        bail!("--tor-password-env needs --tor-control");
    }
    let run_at = super::timeline::parse_run_at(&args.run_at)?;
    if let Some(d) = args.duration {
        for (at, cmd) in &run_at {
            if *at >= d.as_secs_f64() {
                bail!(
                    "--run-at {at} '{cmd}': the watch ends at {:.1} s (--duration), so it would never run",
                    d.as_secs_f64()
                );
            }
        }
    }
    if let Some(p) = &args.event_fifo {
        use std::os::unix::fs::FileTypeExt;
        match std::fs::symlink_metadata(p) {
            Ok(m) if !m.file_type().is_fifo() => {
                bail!("--event-fifo {}: exists and is not a FIFO", p.display())
            }
            _ => {}
        }
    }
    let (mut allow, tor_extra) = parse_allow_list(&args.allow)?;
    for n in &args.allow_net {
        allow.push(leaktest_watch::parse_allow_net(n)?);
    }
    let mut keys = match &args.key_file {
        Some(p) => MarkerKeys::with_secret(leaktest_fs::read_secret("--key-file", p)?),
        None => MarkerKeys::open(),
    };
    for id in &args.runs {
        keys.expect_run(*id);
    }
    // Every output is checked before anything starts (not found out at the end).
    let outputs: Vec<(&str, &Path)> = [
        ("--json", &args.json),
        ("--junit", &args.junit),
        ("--html", &args.html),
        ("--pcap", &args.pcap),
        ("--ready-file", &args.ready_file),
    ]
    .into_iter()
    .filter_map(|(n, p)| p.as_deref().map(|p| (n, p)))
    .collect();
    leaktest_fs::check_outputs(&outputs)?;
    if lacks_privileges() {
        bail!(
            "capturing needs CAP_NET_RAW: run leaktest watch as root, or give the binary that \
             capability (README, \"Least privilege\")"
        );
    }

    // Signals only raise a flag; the session polls it and ends normally, so
    // reports are written and a Tor restriction is undone. SIGHUP (a dropped
    // SSH session) and SIGQUIT count as SIGTERM. A second signal exits at
    // once. Every wait before the watch (the control port) looks at the flag
    // at least every 100 ms.
    let sandbox = super::privsep::sandbox_for(args.user.as_deref(), args.no_sandbox)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut at_once = Vec::new();
    for sig in STOP_SIGNALS {
        at_once.push(
            signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
                .context("installing signal handlers")?,
        );
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let opts = connect_options(&args)?.map(|o| o.with_cancel(stop.clone()));
    let lock = watch_lock(&args.iface)?;
    let interrupted = |e: anyhow::Error| -> anyhow::Result<ExitCode> {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("leaktest: interrupted before the watch began: nothing was captured, nothing judged");
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        Err(e)
    };

    // (A restriction left behind by a crashed leaktest was undone in main.)
    let guard = if args.restrict_tor {
        let o = opts
            .as_ref()
            .context("--restrict-tor needs a control port")?;
        let g = match RestrictGuard::restrict(o, &restrict::default_journal_path())
            .context("restricting Tor (--restrict-tor)")
        {
            Ok(g) => g,
            Err(e) => return interrupted(e),
        };
        eprintln!(
            "leaktest: Tor restricted to ports 80/443 for this watch (journal {}); it is restored when the watch ends",
            g.journal_path().display()
        );
        Some(g)
    } else {
        None
    };

    let mut capture = CaptureConfig::new(&args.iface);
    capture.buffer_bytes = (args.buffer_mib as usize) << 20;
    capture.snaplen = args.snaplen;
    let cfg = SessionConfig {
        capture,
        tor_control: opts,
        tor_extra,
        allow,
        duration: args.duration,
        strict: args.strict,
        keys,
        pcap: args.pcap.clone(),
        pcap_all: args.pcap_all,
        ready_file: args.ready_file.clone(),
        ..SessionConfig::new(&args.iface)
    };
    let is_tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if is_tty {
        eprintln!(
            "leaktest: watching {} ({}); Ctrl-C ends the watch",
            args.iface,
            match args.duration {
                Some(d) => format!("for {:.0} s", d.as_secs_f64()),
                None => "until stopped".to_string(),
            }
        );
    }
    let mut stdout = std::io::stdout();
    let mut hooks = Privsep {
        sandbox,
        stop: stop.clone(),
        at_once,
        duties: Some(Duties { guard, lock }),
        reader: None,
        args: &args,
        run_at,
        timeline: None,
    };
    let outcome = session::run_with(cfg, &stop, &mut stdout, &mut hooks);
    if let Some(reader) = hooks.reader.take() {
        // The sandboxed reader: the monitor does the rest.
        reader_exit(&reader, outcome, &args, &stop);
    }
    let Duties { guard, lock } = hooks.duties.take().expect("duties stay in one process");
    // Undo the restriction before anything else can fail.
    let restored = guard.map(|g| g.restore());
    drop(lock);
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            if let Some(Err(r)) = restored {
                eprintln!("leaktest: warning: restoring Tor's configuration failed: {r:#}");
            }
            return interrupted(e.into());
        }
    };
    let mut report = full_report(&outcome, &args);
    if let Some(t) = hooks.timeline.take() {
        t.finish_into(&mut report);
    }
    let summary = summary_line(&outcome);
    Ok(ExitCode::from(finish(report, &summary, restored, &args)))
}

/// The report of a finished session, with what only the command line knows.
fn full_report(outcome: &session::SessionOutcome, args: &Args) -> leaktest_watch::WatchReport {
    let mut report = outcome.report();
    report.families_probed = families_of(args);
    report
}

/// `--families` as the report's `families_probed`.
fn families_of(args: &Args) -> Option<Vec<leaktest_wire::Family>> {
    args.families.map(|f| match f {
        super::probe::FamilyArg::V4 => vec![leaktest_wire::Family::V4],
        super::probe::FamilyArg::V6 => vec![leaktest_wire::Family::V6],
        super::probe::FamilyArg::Both => leaktest_wire::Family::BOTH.to_vec(),
    })
}

/// Writes the reports, prints the verdict and returns the exit status: the
/// last step of a watch, in the monitor when privilege is separated.
fn finish(
    mut report: leaktest_watch::WatchReport,
    summary: &str,
    restored: Option<Result<(), leaktest_tor::TorError>>,
    args: &Args,
) -> u8 {
    if let Some(Err(e)) = restored {
        report
            .warnings
            .push(format!("restoring Tor's configuration failed: {e:#}"));
    }
    // The timeline in the pcapng file: its events on the frames after them.
    if let Some(pcap) = args.pcap.as_deref() {
        if !args.run_at.is_empty() || args.event_fifo.is_some() {
            let start = report.watch_start_unix_ns.unwrap_or(0);
            if let Err(e) = leaktest_watch::pcapng::mark_events(pcap, &report.events, start) {
                report.warnings.push(format!(
                    "the timeline is not marked in {}: {e}",
                    pcap.display()
                ));
            }
        }
    }
    write_reports(
        &mut report,
        args.json.as_deref(),
        args.junit.as_deref(),
        args.html.as_deref(),
    );
    // What the report holds came from the network (and, separated, from the
    // sandboxed reader): control characters are made visible on a terminal.
    let mut out = leaktest_priv::Sanitized::new(std::io::stdout().lock());
    let _ = report.print_terminal(&mut out);
    let _ = writeln!(out, "{summary}");
    let _ = out.flush();
    let mut err = leaktest_priv::Sanitized::new(std::io::stderr().lock());
    for w in &report.warnings {
        let _ = writeln!(err, "leaktest: warning: {w}");
    }
    let _ = err.flush();
    report.exit_code
}

/// The closing line about the capture itself.
fn summary_line(outcome: &session::SessionOutcome) -> String {
    let a = outcome.health.accounting.unwrap_or_default();
    format!(
        "capture: {:.1} s; the kernel counted {} frames, the capture delivered {} ({} before the watch began) and dropped {}, the {} rules classified {}; Tor allowlist: {} endpoints{}",
        outcome.elapsed.as_secs_f64(),
        outcome.stats.received,
        a.delivered,
        a.barrier,
        outcome.stats.dropped,
        RULES.len(),
        a.classified,
        outcome.allowlist.endpoints,
        if outcome.allowlist.from_control_port {
            format!(" from the control port, {} refreshes", outcome.allowlist.refreshes)
        } else {
            " (--allow tor:/obfs4: entries only)".to_string()
        }
    )
}

/// What stays with the privileged process: the Tor restriction to undo and
/// the interface lock.
struct Duties {
    guard: Option<RestrictGuard>,
    lock: Option<leaktest_fs::InstanceLock>,
}

/// Messages from the sandboxed reader to the monitor, one JSON line each.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "msg", rename_all = "lowercase")]
enum ToMonitor {
    /// The capture is proven live: write the ready file.
    Ready { iface: String },
    /// Send this canary frame (hex) on the watched interface.
    Canary { frame: String },
    /// The watch is over: the report and the closing line.
    Done {
        report: Box<leaktest_watch::WatchReport>,
        summary: String,
    },
}

/// Messages from the monitor to the sandboxed reader: the Tor allowlist the
/// monitor's feed keeps (it holds the control connection), whole, at each
/// new generation, and the feed's first outage.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "msg", rename_all = "lowercase")]
enum ToReader {
    Allowlist {
        /// Endpoint and `Roles` bits.
        endpoints: Vec<(std::net::SocketAddr, u8)>,
        counts: leaktest_tor::SourceCounts,
    },
    Outage {
        reason: String,
    },
}

/// Privilege separation of a watch (OpenSSH's shape). Once the session has
/// opened everything that needs privilege, the process forks: the child
/// drops to the sandbox (unprivileged user, no capabilities, no new
/// privileges, seccomp; `leaktest_priv`) and reads and judges every frame;
/// the parent, still privileged, reads nothing from the network: it writes
/// the ready file when told, passes signals on, and at the end undoes
/// `--restrict-tor` (which needs the cookie again), writes the reports and
/// exits with the verdict the reader sent.
struct Privsep<'a> {
    /// `None`: `--no-sandbox`, one process.
    sandbox: Option<Sandbox>,
    stop: Arc<AtomicBool>,
    /// The "second signal exits at once" handlers, which the monitor drops:
    /// it must outlive the reader to restore Tor.
    at_once: Vec<signal_hook::SigId>,
    duties: Option<Duties>,
    /// Set in the reader.
    reader: Option<leaktest_priv::Reader>,
    args: &'a Args,
    /// The `--run-at` commands, parsed.
    run_at: Vec<(f64, String)>,
    /// The timeline, once the capture is open (in the privileged process).
    timeline: Option<super::timeline::Timeline>,
}

impl Privsep<'_> {
    /// Starts the timeline's clock and threads, if there are events to take.
    fn start_timeline(&mut self) -> Result<Option<super::timeline::Timeline>, SessionError> {
        if self.run_at.is_empty() && self.args.event_fifo.is_none() {
            return Ok(None);
        }
        super::timeline::Timeline::start(&self.run_at, self.args.event_fifo.as_deref())
            .map(Some)
            .map_err(|e| SessionError::Sandbox(format!("{e:#}")))
    }
}

impl SessionHooks for Privsep<'_> {
    fn opened(
        &mut self,
        opened: session::Opened<'_>,
        feed: Option<PendingFeed>,
    ) -> Result<Option<AllowlistFeed>, SessionError> {
        let Some(sandbox) = self.sandbox.as_mut() else {
            self.timeline = self.start_timeline()?;
            return Ok(match feed {
                Some(p) => Some(p.spawn()?),
                None => None,
            });
        };
        if let Some(n) = super::privsep::user_note(sandbox) {
            eprintln!("leaktest: note: {n}");
        }
        // The reader's output goes through the monitor (made safe for a
        // terminal); it never holds the operator's terminal.
        let side =
            leaktest_priv::separate(true).map_err(|e| SessionError::Sandbox(e.to_string()))?;
        match side {
            Side::Reader(reader) => {
                // The parent keeps these. The guard's copy holds no connection (a
                // restore reconnects) and is forgotten; the lock's descriptor is
                // closed here without unlinking the file (the parent's keeps the
                // lock: it belongs to the open file, shared by both).
                if let Some(d) = self.duties.take() {
                    std::mem::forget(d.guard);
                    if let Some(l) = d.lock {
                        l.close_in_child();
                    }
                }
                // The monitor escalates a second signal; here each only sets the flag.
                for id in self.at_once.drain(..) {
                    signal_hook::low_level::unregister(id);
                }
                // Tor's control connection stays with the monitor: the reader
                // closes its copy and gets the allowlist's updates from it.
                let feed = feed.map(PendingFeed::detach);
                // Both packet sockets stay open for reading; nothing may be sent on
                // them (the canaries go through the monitor).
                sandbox.protect(&[opened.capture_fd, opened.injector.raw_fd()]);
                let reader = self.reader.insert(reader);
                reader
                    .enter(sandbox)
                    .map_err(|e| SessionError::Sandbox(e.to_string()))?;
                Ok(feed)
            }
            Side::Monitor(m) => {
                for id in self.at_once.drain(..) {
                    signal_hook::low_level::unregister(id);
                }
                let duties = self.duties.take().expect("duties before the fork");
                let timeline = match self.start_timeline() {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("leaktest: error: {e}; ending the watch");
                        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
                        None
                    }
                };
                let code = monitor(
                    m,
                    duties,
                    self.args,
                    &self.stop,
                    opened.injector,
                    feed,
                    timeline,
                );
                std::process::exit(i32::from(code));
            }
        }
    }

    fn poll_feed(&mut self, feed: &AllowlistFeed) {
        let Some(r) = self.reader.as_mut() else {
            return;
        };
        while let Ok(Recv::Message(line)) = r.recv(Duration::ZERO) {
            match serde_json::from_slice::<ToReader>(&line) {
                Ok(ToReader::Allowlist { endpoints, counts }) => {
                    let mut list = leaktest_tor::Allowlist::new();
                    for (a, bits) in endpoints {
                        list.insert_with(a, leaktest_tor::Roles::from_bits(bits));
                    }
                    feed.publish_update(&list, counts);
                }
                Ok(ToReader::Outage { reason }) => feed.report_outage(reason),
                Err(e) => feed.report_outage(format!("a bad message from the monitor: {e}")),
            }
        }
    }

    fn send_canary(&mut self, frame: &[u8]) -> Option<std::io::Result<()>> {
        let r = self.reader.as_ref()?;
        let msg = serde_json::to_vec(&ToMonitor::Canary {
            frame: hex::encode(frame),
        })
        .expect("a plain message serialises");
        Some(r.send(&msg))
    }

    fn ready(&mut self, path: &Path, iface: &str) -> Result<(), SessionError> {
        match &self.reader {
            None => session::write_ready_file(path, iface),
            Some(r) => {
                let msg = serde_json::to_vec(&ToMonitor::Ready {
                    iface: iface.to_string(),
                })
                .expect("a plain message serialises");
                r.send(&msg).map_err(|e| SessionError::ReadyFile {
                    path: path.to_owned(),
                    source: e,
                })
            }
        }
    }
}

/// The end of the sandboxed reader: the report goes to the monitor, and the
/// process ends without running anything else (it owns nothing to undo).
fn reader_exit(
    reader: &leaktest_priv::Reader,
    outcome: Result<session::SessionOutcome, SessionError>,
    args: &Args,
    stop: &AtomicBool,
) -> ! {
    let code = match outcome {
        Ok(o) => {
            let msg = ToMonitor::Done {
                report: Box::new(full_report(&o, args)),
                summary: summary_line(&o),
            };
            // Streamed onto the socket: no second copy of a large report.
            match reader
                .send_with(|w| serde_json::to_writer(w, &msg).map_err(std::io::Error::other))
            {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("leaktest: error: sending the report to the monitor: {e}");
                    2
                }
            }
        }
        Err(e) => {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                i32::from(EXIT_INTERRUPTED)
            } else {
                eprintln!("leaktest: error: {e}");
                2
            }
        }
    };
    // SAFETY: ends the process at once; nothing of it needs to run.
    unsafe { libc::_exit(code) }
}

/// How long the reader may take to end after the monitor passed a stop
/// signal on (its end grace and the seal take about 2 s); then it is killed.
const READER_GRACE: Duration = Duration::from_secs(30);

/// Canaries the monitor sends for the reader per second, on average, and in
/// one burst (the reader asks for one a second and one at the end): a
/// compromised reader cannot turn canaries into a channel of any rate.
const CANARY_RATE: f64 = 4.0;
const CANARY_BURST: f64 = 4.0;

/// True if `frame` is shaped like a canary of this interface (see
/// `leaktest_wire::canary`): the only frames the monitor puts on the wire
/// for the sandboxed reader. What is not fixed (nonce, id, tag) is 24 bytes.
fn canary_shaped(frame: &[u8], mac: [u8; 6]) -> bool {
    use leaktest_wire::canary::{CANARY_DST_MAC, CANARY_ETHERTYPE, CANARY_FRAME_LEN, CANARY_MAGIC};
    frame.len() == CANARY_FRAME_LEN
        && frame[0..6] == CANARY_DST_MAC
        && frame[6..12] == mac
        && frame[12..14] == CANARY_ETHERTYPE.to_be_bytes()
        && frame[14..22] == CANARY_MAGIC
        && &frame[46..64] == b"leaktest canary v1"
}

/// The monitor's whole life: pass signals on (the first as SIGTERM, a
/// second kills the reader), send the canaries the reader asks for, write
/// the ready file when the reader says so, then restore Tor and write the
/// reports from the reader's report. Returns the exit status. The reader is
/// not trusted with anything but its report: a message that does not parse
/// or a frame that is not a canary ends it, the exit status is recomputed
/// from the verdict, and the probed families are the monitor's own.
fn monitor(
    mut m: leaktest_priv::Monitor,
    duties: Duties,
    args: &Args,
    stop: &AtomicBool,
    injector: &leaktest_capture::CanaryInjector,
    pending: Option<PendingFeed>,
    timeline: Option<super::timeline::Timeline>,
) -> u8 {
    use std::sync::atomic::Ordering;
    use std::time::Instant;
    let mut done: Option<(leaktest_watch::WatchReport, String)> = None;
    let mut failed = false;
    let mut signals = 0u32;
    let mut termed_at: Option<Instant> = None;
    // With --duration the reader must be done by its end plus the grace: one
    // that is stopped or stuck (SIGSTOP from another process of its uid) is
    // ended, not waited for.
    let overdue = args.duration.map(|d| Instant::now() + d + READER_GRACE);
    // The Tor allowlist feed runs here, with the control connection (and its
    // reconnections, which need the cookie); the reader gets its lists.
    let feed = match pending.map(PendingFeed::spawn) {
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => {
            let msg = serde_json::to_vec(&ToReader::Outage {
                reason: format!("starting the allowlist feed: {e}"),
            })
            .expect("a plain message serialises");
            let _ = m.send(&msg);
            None
        }
        None => None,
    };
    // Messages to the reader go through a thread of their own (a whole
    // consensus is a large message): this loop never blocks on the reader.
    let to_reader = match m.sender() {
        Ok(chan) => {
            let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
            std::thread::Builder::new()
                .name("to-reader".into())
                .spawn(move || {
                    for msg in rx {
                        if chan.send(&msg).is_err() {
                            break;
                        }
                    }
                })
                .ok()
                .map(|_| tx)
        }
        Err(_) => None,
    };
    let send = |msg: &ToReader| {
        if let Some(tx) = &to_reader {
            let _ = tx.send(serde_json::to_vec(msg).expect("plain data serialises"));
        }
    };
    let mut sent_generation = feed.as_ref().map(|f| f.generation());
    let mut outage_sent = false;
    let mut tokens = CANARY_BURST;
    let mut refilled = Instant::now();
    let kill = |m: &leaktest_priv::Monitor, why: &str| {
        eprintln!("leaktest: error: {why}; the sandboxed reader was ended");
        m.signal(libc::SIGKILL);
    };
    loop {
        if stop.swap(false, Ordering::SeqCst) {
            signals += 1;
            if signals == 1 {
                m.signal(libc::SIGTERM);
                termed_at = Some(Instant::now());
            } else {
                // A second signal ends the watch at once, without reports.
                m.signal(libc::SIGKILL);
                failed = true;
            }
        }
        if termed_at.is_some_and(|t| t.elapsed() > READER_GRACE) {
            kill(&m, "the reader did not end after the stop signal");
            failed = true;
            termed_at = None;
        }
        if !failed && overdue.is_some_and(|t| Instant::now() > t) {
            kill(&m, "the reader did not end after --duration");
            failed = true;
        }
        if let Some(f) = &feed {
            if Some(f.generation()) != sent_generation {
                sent_generation = Some(f.generation());
                send(&ToReader::Allowlist {
                    endpoints: f.current().iter().map(|(a, r)| (a, r.bits())).collect(),
                    counts: f.source_counts(),
                });
            }
            if !outage_sent {
                if let Some(o) = f.first_outage() {
                    outage_sent = true;
                    send(&ToReader::Outage { reason: o.reason });
                }
            }
        }
        let line = match m.recv(Duration::from_millis(100)) {
            Ok(Recv::Timeout) => continue,
            Ok(Recv::Closed) => break,
            Ok(Recv::Message(line)) => line,
            Err(e) => {
                kill(&m, &format!("reading from the sandboxed reader: {e}"));
                failed = true;
                break;
            }
        };
        match serde_json::from_slice::<ToMonitor>(&line) {
            Ok(ToMonitor::Canary { frame }) => {
                let frame = hex::decode(frame).unwrap_or_default();
                tokens =
                    (tokens + refilled.elapsed().as_secs_f64() * CANARY_RATE).min(CANARY_BURST);
                refilled = Instant::now();
                if tokens < 1.0 || !canary_shaped(&frame, injector.mac()) {
                    kill(
                        &m,
                        "the sandboxed reader asked to send a frame that is not a canary",
                    );
                    failed = true;
                    break;
                }
                tokens -= 1.0;
                // A failure shows as a canary never seen: never a PASS.
                let _ = injector.send_frame(&frame);
            }
            Ok(ToMonitor::Ready { iface }) => {
                if let Some(p) = &args.ready_file {
                    if let Err(e) = session::write_ready_file(p, &iface) {
                        eprintln!("leaktest: error: {e}");
                        m.signal(libc::SIGTERM);
                        failed = true;
                    }
                }
            }
            Ok(ToMonitor::Done { report, summary }) => done = Some((*report, summary)),
            Err(e) => {
                // Nothing but the reader writes there: a message that does not
                // parse is a reader that is not ours any more.
                kill(&m, &format!("the sandboxed reader sent garbage ({e})"));
                failed = true;
                break;
            }
        }
    }
    if let Some(f) = feed {
        f.shutdown();
    }
    let pid = m.reader_pid();
    let ended = m.end(Duration::from_secs(5));
    let restored = duties.guard.map(|g| g.restore());
    drop(duties.lock);
    match (done, failed) {
        (Some((mut report, summary)), false) => {
            report.exit_code = report.verdict.exit_code();
            report.families_probed = families_of(args);
            if let Some(t) = timeline {
                t.finish_into(&mut report);
            }
            finish(report, &summary, restored, args)
        }
        _ => {
            if let Some(Err(e)) = restored {
                eprintln!("leaktest: warning: restoring Tor's configuration failed: {e:#}");
            }
            if signals >= 2 {
                return EXIT_INTERRUPTED;
            }
            match ended {
                Ok(Ended::Exited(c)) if c == i32::from(EXIT_INTERRUPTED) => EXIT_INTERRUPTED,
                Ok(Ended::Exited(2)) => 2,
                Ok(Ended::Exited(c)) => {
                    eprintln!("leaktest: error: the sandboxed reader (PID {pid}) ended (exit {c}) without a report");
                    2
                }
                Ok(Ended::Signaled(sig)) => {
                    eprintln!("leaktest: error: the sandboxed reader (PID {pid}) was killed by signal {sig}; no report");
                    2
                }
                Err(e) => {
                    eprintln!("leaktest: error: waiting for the sandboxed reader: {e}");
                    2
                }
            }
        }
    }
}

/// Writes the JSON, JUnit and HTML reports. A report that cannot be written is a
/// warning in the others (rewritten once to carry it) and on stderr; the
/// verdict's exit status stands.
fn write_reports(
    report: &mut leaktest_watch::WatchReport,
    json: Option<&Path>,
    junit: Option<&Path>,
    html: Option<&Path>,
) {
    type Write = fn(&leaktest_watch::WatchReport, &Path) -> Result<(), leaktest_watch::ReportError>;
    let outputs: Vec<(&Path, Write)> = [
        json.map(|p| (p, leaktest_watch::WatchReport::write_json as Write)),
        junit.map(|p| (p, leaktest_watch::WatchReport::write_junit as Write)),
        html.map(|p| (p, leaktest_watch::WatchReport::write_html as Write)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut written = vec![false; outputs.len()];
    for (i, (path, write)) in outputs.iter().enumerate() {
        match write(report, path) {
            Ok(()) => written[i] = true,
            Err(e) => report.warnings.push(e.to_string()),
        }
    }
    if written.iter().all(|w| *w) {
        return;
    }
    // The ones written before a later one failed lack its warning.
    for (i, (path, write)) in outputs.iter().enumerate() {
        if written[i] {
            if let Err(e) = write(report, path) {
                report.warnings.push(e.to_string());
            }
        }
    }
}

/// Whether we plainly lack privileges (not root and no CAP_NET_RAW).
fn lacks_privileges() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return false;
    }
    // CapEff in /proc/self/status; CAP_NET_RAW is bit 13.
    let caps = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = caps
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    eff & (1 << 13) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("2.5").unwrap(), Duration::from_millis(2500));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("nan").is_err());
        assert!(parse_seconds("x").is_err());
        let e = parse_seconds("99999999999999999999").unwrap_err();
        assert!(e.contains("longer than the longest watch"), "{e}");
        assert!(parse_seconds("1e9").is_ok());
        assert!(parse_seconds("1e-10").unwrap_err().contains("too short"));
        assert!(parse_seconds("inf").unwrap_err().contains("longer"));
        assert!(parse_seconds("-inf").unwrap_err().contains("positive"));
    }
}
