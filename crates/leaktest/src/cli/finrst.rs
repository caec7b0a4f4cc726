//! `leaktest fin-rst`: the FIN/RST check's client on the workstation (see
//! `leaktest_send::finrst`): argument parsing and wiring only.

use anyhow::{bail, Context, Result};
use leaktest_send::finrst::{FinRstConfig, FinRstReport, MAX_CONNECTIONS};
use leaktest_wire::RunKey;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub const LONG_ABOUT: &str = "The FIN/RST check, workstation side: open real TCP connections \
through the gateway's transparent proxy to a server beyond it, hold them while the gateway \
changes (on the gateway: `leaktest watch --run-at 20 'conntrack -D -p tcp'`, `--run-at 20 \
'systemctl kill -s KILL tor@default'`, a firewall reload), then end each the ways that leak \
through a gateway that forgot them: marked data, a FIN, and 0.5 s later a RST.\n\n\
A transparent proxy redirects a connection by its conntrack entry. Once the entry is gone \
(flushed, timed out, tor restarted by a service that flushes conntrack), the client's next \
segments are no new connection to the NAT and go wherever the filter lets them: a gateway \
whose filter accepts all TCP and whose NAT redirects only SYNs sends them to the real \
destination with the workstation's address. The watcher catches them: the data carries the \
payload marker of probe `tcp [A]` to the port under this run's key (attributed like any \
probe); the FIN and the RST are leaks by themselves, and this report names their ports.\n\n\
Needs no privilege and opens nothing but the connections asked for (at most 64 per target). \
The target must accept TCP on the port through Tor (the exit connects to it): your own server, \
or in the lab its web server.";

const AFTER_LONG_HELP: &str = "Exit status: 0 every connection was opened and ended as asked \
(the verdict is the watcher's), 2 error (bad option, a connection that could not be opened, \
interrupted: the connections were reset at once, without data).";

#[derive(clap::Args, Debug)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub struct Args {
    /// IPv4 server beyond the gateway that accepts TCP on --port (through Tor, the exit
    /// connects to it)
    #[arg(long, value_name = "IPV4", required_unless_present = "target6")]
    pub target: Option<Ipv4Addr>,

    /// IPv6 server beyond the gateway
    #[arg(long, value_name = "IPV6")]
    pub target6: Option<Ipv6Addr>,

    /// Destination port
    #[arg(long, default_value = "80")]
    pub port: u16,

    /// Connections per target (1 to 64)
    #[arg(long, default_value = "4", value_name = "N")]
    pub connections: usize,

    /// Longest hold, in seconds, before the connections are ended
    #[arg(long, default_value = "30", value_name = "SECONDS", value_parser = parse_hold)]
    pub hold: Duration,

    /// End them as soon as FILE exists (e.g. touched by a script once the gateway changed)
    #[arg(long, value_name = "FILE")]
    pub close_on: Option<PathBuf>,

    /// Seconds to wait for each connection to open
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = parse_hold)]
    pub connect_timeout: Duration,

    /// Sign the markers with the shared secret in FILE (32 hex digits), as `leaktest probe
    /// --key-file`; give the same file to `leaktest watch`
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// Use this run id (16 hex digits) instead of a random one
    #[arg(long, value_name = "HEX", value_parser = super::probe::parse_run_id)]
    pub run_id: Option<u64>,

    /// Write the JSON report (each connection's ports and times) to FILE
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

fn parse_hold(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?}: give seconds, e.g. 30 or 2.5"))?;
    if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
        return Err(format!("{s}: give seconds above 0, at most 86400"));
    }
    Ok(Duration::from_secs_f64(v))
}

pub fn run(args: Args) -> Result<ExitCode> {
    if !(1..=MAX_CONNECTIONS).contains(&args.connections) {
        bail!(
            "--connections {}: give 1 to {MAX_CONNECTIONS}",
            args.connections
        );
    }
    if let Some(p) = &args.json {
        leaktest_fs::check_output("--json", p)?;
    }
    let run_id = match args.run_id {
        Some(r) => r,
        None => {
            getrandom::u64().map_err(|e| anyhow::anyhow!("no random source for the run id: {e}"))?
        }
    };
    let key = match &args.key_file {
        Some(p) => RunKey::shared(&leaktest_fs::read_secret("--key-file", p)?, run_id),
        None => RunKey::open(run_id),
    };
    let targets: Vec<SocketAddr> = args
        .target
        .map(|a| SocketAddr::from((a, args.port)))
        .into_iter()
        .chain(args.target6.map(|a| SocketAddr::from((a, args.port))))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot install signal handler")?;
    }
    let cfg = FinRstConfig {
        targets,
        connections: args.connections,
        connect_timeout: args.connect_timeout,
        hold: args.hold,
        close_on: args.close_on.clone(),
        key,
    };
    let report = leaktest_send::finrst::run(&cfg, &stop, &mut |c| {
        let ports: Vec<&str> = c.iter().map(|c| c.local.as_str()).collect();
        eprintln!(
            "leaktest: connected: {} connection(s) from {} (run {run_id:016x}); ending them {}",
            c.len(),
            ports.join(" "),
            match &args.close_on {
                Some(p) => format!(
                    "when {} exists or in {:.1} s",
                    p.display(),
                    args.hold.as_secs_f64()
                ),
                None => format!("in {:.1} s", args.hold.as_secs_f64()),
            }
        );
    })?;
    if let Some(p) = &args.json {
        leaktest_fs::write_atomic("--json", p, |w| {
            serde_json::to_writer_pretty(&mut *w, &report).map_err(std::io::Error::other)?;
            writeln!(w)
        })?;
    }
    print_summary(&report);
    if report.ended_by == "signal" {
        bail!("interrupted: the connections were reset at once, without data or FIN");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(r: &FinRstReport) {
    let ended = r.connections.iter().filter(|c| c.error.is_none()).count();
    println!(
        "fin-rst run {}: {} connection(s) ended by {} ({ended} with data, FIN and RST as asked)",
        r.run_id,
        r.connections.len(),
        r.ended_by
    );
    for c in &r.connections {
        if let Some(e) = &c.error {
            println!("  {} -> {}: {e}", c.local, c.remote);
        }
    }
}
