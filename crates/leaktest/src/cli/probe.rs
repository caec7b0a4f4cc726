//! `leaktest probe`: send every marker-tagged probe of the chosen suites to
//! the gateway, as fast as asked, and report what went out.
//!
//! Argument checks ([`Settings::from_args`]) are pure and unit-tested; the
//! sending is `leaktest_send`'s.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use leaktest_priv::{Ended, Recv, Side};
use leaktest_send::session::{parse_ranges, thousands};
pub use leaktest_send::SocketKind;
use leaktest_send::{ProbeRequest, Rate, Uplinks};
use leaktest_wire::{Family, RunKey, Suite};
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// `leaktest probe --help`: the long description.
pub const LONG_ABOUT: &str = "\
Send marker-tagged probes of every kind to the gateway, from the workstation side.

Every probe carries an authenticated marker (run id + probe number, keyed per run) in its \
payload and in header fields, so `leaktest watch` on the gateway's external interface can name \
the exact probe behind any packet that leaks. The default is the whole catalogue, both families \
(probes per family, IPv4 / IPv6):

  icmp        every ICMP / ICMPv6 type 0-255, code 0                             256 /     256
  ip          every IP protocol / IPv6 next header, a fixed head, marker         256 /     256
  tcp         every port 0-65535 with SYN, ACK, FIN+ACK, RST and no flags    327,680 / 327,680
  udp         every port 0-65535                                              65,536 /  65,536
  frag        lone first and non-first UDP fragments; a TCP SYN cut into a        9 /      11
              tiny first fragment, overlapping copies that rewrite its ports,
              fragments out of order, (IPv6) the TCP header in a later fragment
  flags       all 256 TCP flag combinations to 22, 53, 80, 443, 9001, 9030,   68,352 /  68,352
              9040, 9050 and 3 ports drawn per run; SYN+ECE+CWR (the ECN
              setup SYN of RFC 3168) to every port
  icmp-codes  every code 0-255 of ICMP echo, unreachable, time exceeded,       1,280 /   2,560
              redirect, parameter problem; ICMPv6 1-4, 128, 133-137
  ipopt       record route, timestamp, loose / strict source route (naming       24 /       9
              the target), router alert; TTL / hop limit 1, 2, 255
  ext6        hop-by-hop, destination options, routing types 0, 2, 4, an          6 /      48
              atomic fragment, chains of 2-8 headers, next header 253, ESP
              and AH (IPv4: ESP and AH only) before a TCP SYN, UDP and echo
  lan         private, shared, link-local, broadcast, multicast (mDNS, SSDP,     42 /      36
              LLMNR), 6to4, Teredo and NAT64 destinations, the uplink's router
              and another uplink host, each with a TCP SYN, UDP and echo
  spoof       forged sources: another host of the sender's subnet, another       27 /      30
              private range, an internet address, the gateway's internal and
              external addresses, link-local, unspecified, multicast,
              loopback, (IPv6) IPv4-mapped; each names its claimed source
  tunnel      GRE (IPv4 and IPv6 inside), IP-in-IP, IPv6-in-IP, Teredo, VXLAN,     6 /       5
              each holding a marked UDP probe to the target

That is 463,474 probes for IPv4 and 464,779 for IPv6, 928,253 in all. Probes of the evasion \
suites go through this host's stack unchanged only with --socket packet (the default); the lan \
suite's uplink probes need --gateway-uplink and --uplink-router, the spoof suite's gateway \
addresses the next hop (and --gateway-uplink): without them those probes are skipped and \
listed in the JSON's `skipped`. Each probe's marker (or, for the tiny first fragment, its \
headers) names it in the watcher's report.

Probes go to the target you name: an address beyond the gateway (a host you may probe on the \
other side of it), through the interface and next hop the kernel's routing table chooses for it. \
A target the routing table reaches without a gateway (on the link itself, such as the gateway's \
own address) is refused before anything is sent: packets addressed to the gateway are delivered \
to it and never forwarded, so they cannot show a forwarding leak (--on-link if you mean it). \
For the same reason a target routed through the gateway that is the gateway (another of its \
addresses) is refused: before a packet-socket sweep, one echo request (the catalogue's, marked) goes to the \
target with TTL/hop limit 1, and an answer from the target itself means it is the first hop; Time \
Exceeded from the gateway means it lies beyond (no answer: it cannot tell, and the sweep goes on; \
the JSON's paths.*.first_hop says which). On a host where `leaktest watch` runs (same network \
namespace), the check is replaced by another: each family's route must leave by an interface a \
watcher watches (or one named with --uplink), because probes routed elsewhere cannot show what \
the watched uplink lets out. With \
the default `--socket packet`, leaktest writes complete Ethernet frames on that interface \
(AF_PACKET, batches of up to 128 per sendmmsg call), addressed to the next hop's MAC from the \
neighbour table; if the entry is missing it sends one empty UDP datagram to the next hop's own \
address, port 9, to make the kernel resolve it. `--socket raw` sends through this host's own IP \
stack and firewall instead (raw IP sockets): use it on the gateway itself to test its own output \
path; packets its firewall drops are counted as refused locally.

Privilege separation: once its sockets are open (and the first-hop check done), probe forks: \
the sweep is sent by a child that runs as --user (default the `leaktest` user, else \
`nobody`) with no capabilities, PR_SET_NO_NEW_PRIVS and a seccomp filter; the parent (the PID \
to signal) writes the report. --no-sandbox keeps one privileged process.";

const AFTER_LONG_HELP: &str = "\
Families: with both --target and --target6, the default `--family both` probes both. If only \
--target is given and --family is not, leaktest probes IPv4 only and says so on stderr (likewise \
IPv6 only with just --target6). An explicit `--family both` needs both targets.

Refused targets: loopback, multicast, unspecified, broadcast and reserved (240/4) addresses, \
addresses of this host, IPv4-mapped IPv6 addresses, link-local addresses without --iface, and \
targets on the link (reached without a gateway) or answering at the first hop unless \
--on-link, and routes that do not leave by the watched uplink. --json must be a new or \
regular file in a writable directory, checked before the first probe; --key-file a regular \
file of at most 4 KiB.

Output: a progress bar on stderr when it is a terminal, and one summary line on stdout, e.g.
  sent 787,460 probes (ipv4 393,730, ipv6 393,730) in 1.42 s, 554,000 pps, run 3f09c4e1a2b3c4d5, key open 5d0c6e3a9b8f7e21
--json FILE writes: run_id (16 hex digits), key {mode, fingerprint}, targets {ipv4, ipv6}, \
interface, socket, rate (pps or \"max\"), families, suites, paths (per family: interface, \
source, next_hop, via_gateway, src_mac, dst_mac, first_hop), planned, sent, counts {ipv4: {total, icmp, \
...}, ipv6: ...}, suite_totals, refused, refused_total, unbuilt, skipped, unreached, retries, complete, started and \
finished (RFC 3339 UTC), seconds, pps, and for a pulse (--duration) pulse {interval_ms, \
rounds, rounds_sent, late_rounds, per_round, round_sent_unix_ns (round r's send time, Unix \
ns)}. It is written also when the run fails or is interrupted \
(complete: false), unless the sending process itself is killed (a second signal, or a sender \
that does not stop within 30 s): then there is nothing to report, and the exit status is 2. \
With --socket raw the kernel resolves each family's next hop itself: a family whose next hop \
never resolved (neighbour state FAILED, e.g. a firewall dropping this host's own neighbour \
solicitations) never reached the wire; the JSON lists it under unreached and the exit status \
is 3 (like the watcher's INCONCLUSIVE: that part of the sweep proves nothing).

Keys: by default the run is signed with an open key derived from a random run id (anyone can \
verify the marker; the watcher needs nothing). With --key-file both sides share a secret: \
create one with `openssl rand -hex 16 > leaktest.key` and give the same file to `leaktest watch`.

Examples:
  leaktest probe --target 203.0.113.7                             # IPv4, 10,000 pps, ~40 s
  leaktest probe --target 203.0.113.7 --target6 2001:db8::7 --rate max --json run.json
  leaktest probe --target 203.0.113.7 --suite udp,frag --rate 50k
  leaktest probe --target 203.0.113.1 --socket raw                # on the gateway itself
  leaktest probe --target 203.0.113.7 --target6 2001:db8::7 --duration 60   # a pulse while
      # `leaktest watch --run-at 20 'systemctl restart tor'` runs on the gateway

Pulse: --duration sends round after round (round r starts r × --interval after the first, \
whatever the last cost) until the duration ends; each probe's marker carries its round (the \
run id's low 24 bits; the run id of a pulse ends in six zero hex digits), authenticated like \
the rest, so the watcher says which round a leaked packet came from and, with this JSON, when it \
was sent. Each round's TCP and UDP probes have their own source ports (new flows to conntrack \
every round). --rate still caps the probes per second.

Needs root or CAP_NET_RAW. Exit status 0 when every planned probe was handed to the kernel, \
3 when a family's probes never reached the wire (--socket raw, next hop never resolved), \
2 on any error (bad option, no privilege, no route, unresolvable next hop, interrupted).";

/// Which families `--family` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FamilyArg {
    #[value(name = "4")]
    V4,
    #[value(name = "6")]
    V6,
    Both,
}

#[derive(clap::Args, Debug)]
// The long description is set on the subcommand in main.rs (its doc comment
// would override one set here).
#[command(after_long_help = AFTER_LONG_HELP)]
pub struct Args {
    /// IPv4 address beyond the gateway to probe (never the gateway's own address). Required for IPv4 probes;
    /// leaktest never guesses a destination
    #[arg(long, value_name = "IPV4")]
    pub target: Option<Ipv4Addr>,

    /// IPv6 address beyond the gateway to probe. Required for IPv6 probes
    #[arg(long, value_name = "IPV6")]
    pub target6: Option<Ipv6Addr>,

    /// Comma-separated suites: icmp, ip, tcp, udp, frag, flags, icmp-codes, ipopt, ext6, lan,
    /// spoof, tunnel, or all (sizes above)
    #[arg(long, value_name = "LIST", default_value = "all", value_parser = parse_suites)]
    pub suite: SuiteList,

    /// Families to probe [default: both when both targets are given, else the one given]
    #[arg(long, value_enum, value_name = "4|6|both")]
    pub family: Option<FamilyArg>,

    /// Probes per second (e.g. 10000, 50k, 1.5m), or "max" for as fast as the interface takes
    /// them (labs and dedicated links only)
    #[arg(long, value_name = "PPS|max", default_value = "10000")]
    pub rate: Rate,

    /// Write a JSON report of the run to FILE
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Sign the markers with the shared secret in FILE (32 hex digits) instead of the open key;
    /// give the same file to `leaktest watch`
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,

    /// Use this run id (16 hex digits) instead of a random one
    #[arg(long, value_name = "HEX", value_parser = parse_run_id)]
    pub run_id: Option<u64>,

    /// packet: Ethernet frames via AF_PACKET (workstation); raw: raw IP sockets through the local
    /// stack and firewall (a gateway testing its own output)
    #[arg(long, value_enum, default_value = "packet")]
    pub socket: SocketArg,

    /// The target is on this host's own link or is the first hop on purpose (a peer in a lab, a
    /// test of the link): probes reach it directly, not through a gateway, so they cannot show a
    /// forwarding leak; also skips the first-hop check
    #[arg(long)]
    pub on_link: bool,

    /// Pulse for SECONDS instead of sweeping: every --interval, one round of a compact set
    /// (per family ICMP echo and 3 other types, 8 IP protocols, 6 TCP flag sets to 9 ports, UDP
    /// to 8 ports, a fragment pair: 76 probes; one TCP and one UDP port rotate through all
    /// 65,536), each marker naming its round, so a leak says when it was sent. For moments of
    /// change: a reload, tor restarting, an interface bouncing
    #[arg(long, value_name = "SECONDS", conflicts_with_all = ["probes"])]
    pub duration: Option<f64>,

    /// With --duration: milliseconds from one round's start to the next's
    #[arg(long, value_name = "MS", default_value = "100", requires = "duration")]
    pub interval: u64,

    /// Send only these probes: a file of probe numbers and ranges (`seq`, as in the watcher's
    /// JSON `runs[].seqs`, e.g. 512-1023,1049088), to send again exactly the probes a watch
    /// missed; with the same --run-id and --key-file the markers are identical
    #[arg(long, value_name = "FILE")]
    pub probes: Option<PathBuf>,

    /// Send out of IFACE instead of the interface the routing table chooses
    #[arg(long, value_name = "IFACE")]
    pub iface: Option<String>,

    /// The unprivileged user (name or uid) that sends the sweep once the sockets are open;
    /// default `leaktest` if that user exists, else `nobody`. Needs root (started with
    /// capabilities only, the sender keeps the current uid and drops the capabilities)
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Send with full privilege, in one process (debugging only)
    #[arg(long, conflicts_with = "user")]
    pub no_sandbox: bool,

    /// The interface the watcher watches on this host (repeatable): each family's route must
    /// leave by it. Found by itself when `leaktest watch` runs in this network namespace
    #[arg(long, value_name = "IFACE")]
    pub uplink: Vec<String>,

    /// The gateway's uplink address and prefix length (ADDR/LEN, one per family, repeatable):
    /// the lan suite probes another host of that subnet, the spoof suite forges that address
    #[arg(long, value_name = "ADDR/LEN", value_parser = parse_cidr)]
    pub gateway_uplink: Vec<(IpAddr, u8)>,

    /// The router on the gateway's uplink (one per family, repeatable): a lan suite destination
    #[arg(long, value_name = "ADDR")]
    pub uplink_router: Vec<IpAddr>,

    /// Destination MAC of every frame (aa:bb:cc:dd:ee:ff) instead of the next hop's from the
    /// neighbour table (packet socket only)
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    pub gateway_mac: Option<[u8; 6]>,
}

/// `--socket` (clap's view of [`SocketKind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SocketArg {
    /// AF_PACKET: whole Ethernet frames on the egress interface (workstation side)
    Packet,
    /// Raw IP sockets through this host's own stack and firewall (gateway side)
    Raw,
}

impl From<SocketArg> for SocketKind {
    fn from(s: SocketArg) -> SocketKind {
        match s {
            SocketArg::Packet => SocketKind::Packet,
            SocketArg::Raw => SocketKind::Raw,
        }
    }
}

/// The suites of `--suite`, in catalogue order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuiteList(pub Vec<Suite>);

fn parse_suites(s: &str) -> Result<SuiteList, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.eq_ignore_ascii_case("all") {
            out.extend(Suite::ALL);
            continue;
        }
        match Suite::from_name(&part.to_ascii_lowercase()) {
            Some(x) => out.push(x),
            None => {
                return Err(format!(
                    "unknown suite {part:?}: choose from {}, all",
                    suite_names()
                ))
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(SuiteList(out))
}

fn suite_names() -> String {
    Suite::ALL.map(|s| s.name()).join(", ")
}

/// `ADDR/LEN`: an address and its prefix length (at most 32 / 128).
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let bad =
        || format!("invalid {s:?}: expected ADDR/LEN, e.g. 203.0.113.2/24 or 2001:db8:1::2/64");
    let (a, l) = s.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = a.parse().map_err(|_| bad())?;
    let len: u8 = l.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(format!("prefix length {len} is longer than {max}"));
    }
    Ok((addr, len))
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let bad = || format!("invalid MAC {s:?}: expected six hex bytes like 02:00:00:00:00:01");
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        if p.is_empty() || p.len() > 2 {
            return Err(bad());
        }
        *m = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 != 0 {
        return Err(format!("MAC {s} is a multicast/broadcast address"));
    }
    Ok(mac)
}

/// A run id: up to 16 hex digits, `0x` allowed.
pub fn parse_run_id(s: &str) -> Result<u64, String> {
    let t = s.trim_start_matches("0x");
    if t.is_empty() || t.len() > 16 {
        return Err(format!("invalid run id {s:?}: up to 16 hex digits"));
    }
    u64::from_str_radix(t, 16).map_err(|_| format!("invalid run id {s:?}: up to 16 hex digits"))
}

/// The checked request: what to probe, where, how.
#[derive(Debug, PartialEq, Eq)]
pub struct Settings {
    pub families: Vec<Family>,
    pub target4: Option<Ipv4Addr>,
    pub target6: Option<Ipv6Addr>,
    /// Things to tell the user on stderr before starting.
    pub notes: Vec<String>,
}

impl Settings {
    /// Resolves the family choice against the targets given. Pure.
    pub fn from_args(a: &Args) -> Result<Settings> {
        if a.target.is_none() && a.target6.is_none() {
            bail!(
                "no target: give --target IPV4 (and --target6 IPV6 for IPv6 probes); \
                 leaktest never guesses a destination"
            );
        }
        if a.suite.0.is_empty() {
            bail!("--suite is empty: choose from {}, all", suite_names());
        }
        let mut notes = Vec::new();
        let families = match (a.family, a.target, a.target6) {
            (None, Some(_), Some(_)) | (Some(FamilyArg::Both), Some(_), Some(_)) => {
                Family::BOTH.to_vec()
            }
            (Some(FamilyArg::Both), None, _) => {
                bail!("--family both needs --target IPV4 too (or use --family 6)")
            }
            (Some(FamilyArg::Both), _, None) => {
                bail!("--family both needs --target6 IPV6 too (or use --family 4)")
            }
            (None, Some(_), None) => {
                notes.push(
                    "no --target6 given: probing IPv4 only (add --target6 IPV6 to probe IPv6 too)"
                        .to_string(),
                );
                vec![Family::V4]
            }
            (None, None, Some(_)) => {
                notes.push(
                    "no --target given: probing IPv6 only (add --target IPV4 to probe IPv4 too)"
                        .to_string(),
                );
                vec![Family::V6]
            }
            (Some(FamilyArg::V4), None, _) => bail!("--family 4 needs --target IPV4"),
            (Some(FamilyArg::V6), _, None) => bail!("--family 6 needs --target6 IPV6"),
            (Some(FamilyArg::V4), Some(_), t6) => {
                if t6.is_some() {
                    notes.push("--family 4: --target6 is not used".to_string());
                }
                vec![Family::V4]
            }
            (Some(FamilyArg::V6), t4, Some(_)) => {
                if t4.is_some() {
                    notes.push("--family 6: --target is not used".to_string());
                }
                vec![Family::V6]
            }
            (None, None, None) => unreachable!("checked above"),
        };
        for fam in [true, false] {
            let name = if fam { "IPv4" } else { "IPv6" };
            if a.gateway_uplink
                .iter()
                .filter(|(x, _)| x.is_ipv4() == fam)
                .count()
                > 1
            {
                bail!("--gateway-uplink: give at most one {name} address");
            }
            if a.uplink_router
                .iter()
                .filter(|x| x.is_ipv4() == fam)
                .count()
                > 1
            {
                bail!("--uplink-router: give at most one {name} address");
            }
        }
        if a.gateway_mac.is_some() && a.socket == SocketArg::Raw {
            bail!("--gateway-mac only applies to --socket packet");
        }
        let target4 = a.target.filter(|_| families.contains(&Family::V4));
        let target6 = a.target6.filter(|_| families.contains(&Family::V6));
        for t in [target4.map(IpAddr::V4), target6.map(IpAddr::V6)]
            .into_iter()
            .flatten()
        {
            if let Some(why) = leaktest_send::path::target_problem(t, a.iface.as_deref()) {
                bail!("{why}");
            }
        }
        Ok(Settings {
            families,
            target4,
            target6,
            notes,
        })
    }
}

fn random_run_id() -> Result<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness for the run id: {e}"))?;
    Ok(u64::from_be_bytes(b))
}

fn progress_bar(total: u64) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(10));
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:36}] {human_pos}/{human_len} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    Some(pb)
}

/// The watched uplinks of this host: `--uplink` if given, else the
/// interfaces that a running `leaktest watch` in this network namespace
/// holds its lock on (`$LEAKTEST_RUN_DIR`); `None` when there is no watcher
/// here (the host is behind the gateway: the first-hop check runs instead).
fn uplinks(args: &Args) -> Result<Option<Uplinks>> {
    if !args.uplink.is_empty() {
        let mut ifindexes = Vec::new();
        for name in &args.uplink {
            ifindexes.push(
                leaktest_send::path::ifindex_of(name)
                    .map_err(|e| anyhow::anyhow!("--uplink: {e}"))?,
            );
        }
        return Ok(Some(Uplinks {
            ifindexes,
            from: format!("--uplink names {}", args.uplink.join(", ")),
        }));
    }
    let dir = leaktest_fs::run_dir();
    let found = leaktest_fs::netns_inode().and_then(|ns| leaktest_fs::watched_interfaces(&dir, ns));
    let watched = match found {
        Ok(w) if !w.is_empty() => w,
        Ok(_) => return Ok(None),
        Err(e) => {
            eprintln!(
                "leaktest: note: cannot see which interfaces a watcher watches here ({}: {e}); \
                 checking the first hop instead",
                dir.display()
            );
            return Ok(None);
        }
    };
    let from = watched
        .iter()
        .map(|w| {
            format!(
                "the watcher (PID {}) on this host watches {}",
                w.pid,
                ifname(w.ifindex)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    Ok(Some(Uplinks {
        ifindexes: watched.iter().map(|w| w.ifindex).collect(),
        from,
    }))
}

/// The name of interface `index`, or `if<index>` if it has none any more.
fn ifname(index: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf holds IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return format!("if{index}");
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

pub fn run(args: Args) -> Result<ExitCode> {
    let settings = Settings::from_args(&args)?;
    for n in &settings.notes {
        eprintln!("leaktest: note: {n}");
    }
    // Inputs and outputs are checked before touching the network.
    if let Some(p) = &args.json {
        leaktest_fs::check_outputs(&[("--json", p)])?;
    }
    let sandbox = super::privsep::sandbox_for(args.user.as_deref(), args.no_sandbox)?;
    let only = match &args.probes {
        Some(p) => {
            let text = leaktest_fs::read_bounded_string("--probes", p, 64 << 20)?;
            let r = parse_ranges(&text)
                .map_err(|e| anyhow::anyhow!("--probes {}: {e}", p.display()))?;
            if r.is_empty() {
                bail!("--probes {}: names no probe", p.display());
            }
            Some(r)
        }
        None => None,
    };
    let run_id = match args.run_id {
        Some(id) => id,
        None => random_run_id()?,
    };
    let pulse = match args.duration {
        Some(d) if !(0.0..=86_400.0 * 30.0).contains(&d) => {
            bail!("--duration {d}: give seconds between 0 and 2,592,000 (30 days)")
        }
        Some(d) => Some(
            leaktest_send::pulse::PulseConfig::for_duration(
                std::time::Duration::from_secs_f64(d),
                std::time::Duration::from_millis(args.interval),
                args.rate,
            )
            .map_err(|e| anyhow::anyhow!("--duration/--interval: {e}"))?,
        ),
        None => None,
    };
    // A pulse's run id has its low 24 bits free for the round.
    let run_id = match pulse {
        Some(_) => {
            let base = leaktest_wire::marker::pulse_run_id(run_id);
            if args.run_id.is_some() && base != run_id {
                bail!(
                    "--run-id {run_id:016x}: a pulse's run id ends in six zero hex digits (they carry the round), e.g. {base:016x}"
                );
            }
            base
        }
        None => run_id,
    };
    let key = match &args.key_file {
        Some(p) => RunKey::shared(&leaktest_fs::read_secret("--key-file", p)?, run_id),
        None => RunKey::open(run_id),
    };
    let suites = match pulse {
        Some(_) => leaktest_wire::pulse::SUITES.to_vec(),
        None => args.suite.0.clone(),
    };
    let prepared = leaktest_send::prepare(ProbeRequest {
        families: settings.families.clone(),
        target4: settings.target4,
        target6: settings.target6,
        suites,
        only,
        rate: args.rate,
        key,
        socket: args.socket.into(),
        iface: args.iface.clone(),
        gateway_mac: args.gateway_mac,
        allow_on_link: args.on_link,
        uplinks: uplinks(&args)?,
        uplink_nets: args.gateway_uplink.clone(),
        uplink_routers: args.uplink_router.clone(),
    })?;
    for n in &prepared.notes {
        eprintln!("leaktest: note: {n}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    // SIGHUP (a dropped SSH session) and SIGQUIT too: the JSON is still written, so the
    // probes that were not sent can be sent later with --probes.
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGQUIT,
    ] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot install signal handler")?;
    }
    // Privilege separation: every socket is open. The sweep is sent by a
    // child without privilege; this process writes the report.
    if let Some(mut sandbox) = sandbox {
        if let Some(n) = super::privsep::user_note(&sandbox) {
            eprintln!("leaktest: note: {n}");
        }
        // The sender reads nothing from the network: it keeps the terminal
        // for its progress bar.
        match leaktest_priv::separate(false)? {
            Side::Reader(reader) => {
                if let Err(e) = reader.enter(&mut sandbox) {
                    eprintln!("leaktest: error: dropping privilege: {e}");
                    // SAFETY: ends the process at once; it owns nothing to undo.
                    unsafe { libc::_exit(2) }
                }
                let outcome = send(prepared, pulse.as_ref(), &stop);
                let msg = SweepDone {
                    report: Box::new(outcome.report),
                    error: outcome.error.map(|e| e.to_string()),
                };
                let code = match reader
                    .send_with(|w| serde_json::to_writer(w, &msg).map_err(std::io::Error::other))
                {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("leaktest: error: sending the report to the monitor: {e}");
                        2
                    }
                };
                // SAFETY: as above.
                unsafe { libc::_exit(code) }
            }
            Side::Monitor(m) => {
                let done = monitor(m, &stop)?;
                return finish(&done.report, done.error, &args);
            }
        }
    }
    let outcome = send(prepared, pulse.as_ref(), &stop);
    finish(&outcome.report, outcome.error.map(|e| e.to_string()), &args)
}

/// What the sandboxed sender tells the monitor at the end (one JSON line).
#[derive(serde::Serialize, serde::Deserialize)]
struct SweepDone {
    report: Box<leaktest_send::ProbeReport>,
    /// The error that ended the sweep early, as its message.
    error: Option<String>,
}

/// The privileged parent of a separated probe: passes signals on (a second
/// kills the sender) and waits for the report. A sender that dies without
/// one is an error; one that closes its end and lingers is killed.
fn monitor(mut m: leaktest_priv::Monitor, stop: &AtomicBool) -> Result<SweepDone> {
    use std::sync::atomic::Ordering;
    let mut done = None;
    let mut signals = 0;
    let mut termed_at: Option<std::time::Instant> = None;
    loop {
        // A sender that does not stop within 30 s of the first signal (one
        // stopped with SIGSTOP, say) is killed, not waited for.
        if termed_at.is_some_and(|t| t.elapsed() > std::time::Duration::from_secs(30)) {
            m.signal(libc::SIGKILL);
            termed_at = None;
        }
        if stop.swap(false, Ordering::SeqCst) {
            // The first ends the sweep at a batch boundary (the report says how
            // far it got); a second kills the sender.
            signals += 1;
            termed_at.get_or_insert_with(std::time::Instant::now);
            m.signal(if signals == 1 {
                libc::SIGTERM
            } else {
                libc::SIGKILL
            });
        }
        match m.recv(std::time::Duration::from_millis(100))? {
            Recv::Timeout => {}
            Recv::Closed => break,
            Recv::Message(line) => match serde_json::from_slice::<SweepDone>(&line) {
                Ok(d) => done = Some(d),
                Err(e) => {
                    m.signal(libc::SIGKILL);
                    let _ = m.wait();
                    bail!("the sandboxed sender sent garbage ({e}); ended it");
                }
            },
        }
    }
    let pid = m.reader_pid();
    let ended = m.end(std::time::Duration::from_secs(5))?;
    match (done, ended) {
        (Some(d), _) => Ok(d),
        (None, Ended::Exited(c)) if c != 0 => Err(anyhow::anyhow!(
            "the sandboxed sender (PID {pid}) failed (exit {c})"
        )),
        (None, e) => Err(anyhow::anyhow!(
            "the sandboxed sender (PID {pid}) ended without a report ({e:?})"
        )),
    }
}

/// Sends the plan with a progress bar on a terminal.
fn send(
    prepared: leaktest_send::Prepared,
    pulse: Option<&leaktest_send::pulse::PulseConfig>,
    stop: &AtomicBool,
) -> leaktest_send::ProbeOutcome {
    if let Some(cfg) = pulse {
        let pb = progress_bar(u64::from(cfg.rounds));
        let outcome = prepared.run_pulse(cfg, stop, &mut |r| {
            if let Some(pb) = &pb {
                pb.set_position(u64::from(r));
                pb.set_message(format!("rounds of {} ms", cfg.interval.as_millis()));
            }
        });
        if let Some(pb) = &pb {
            pb.finish_and_clear();
        }
        return outcome;
    }
    let total = prepared.plan().total();
    let threads = prepared.threads();
    let pb = progress_bar(total);
    let outcome = prepared.run(stop, &mut |p| {
        if let Some(pb) = &pb {
            pb.set_position(p.done);
            let secs = p.elapsed.as_secs_f64();
            let pps = if secs > 0.0 {
                p.done as f64 / secs
            } else {
                0.0
            };
            let at = if p.parallel {
                format!("{} {} ({threads} threads)", p.family, p.suite)
            } else {
                format!("{} {}", p.family, p.suite)
            };
            pb.set_message(format!("{} pps  {at}", thousands(pps as u64)));
        }
    });
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    outcome
}

/// Prints the summary, writes the JSON report and returns the exit status.
fn finish(r: &leaktest_send::ProbeReport, error: Option<String>, args: &Args) -> Result<ExitCode> {
    println!("{}", r.summary());
    if let Some(path) = &args.json {
        // The sweep went out: a report that cannot be written is a warning.
        let written = leaktest_fs::write_atomic("--json", path, |w| {
            serde_json::to_writer_pretty(&mut *w, r)?;
            w.write_all(b"\n")
        });
        if let Err(e) = written {
            eprintln!("leaktest: warning: {e}");
        }
    }
    if let Some(e) = error {
        return Err(anyhow::anyhow!(e).context(format!(
            "stopped after {} of {} probes",
            thousands(r.sent),
            thousands(r.planned)
        )));
    }
    if !r.complete {
        bail!(
            "interrupted after {} of {} probes",
            thousands(r.sent),
            thousands(r.planned)
        );
    }
    if !r.unreached.is_empty() {
        for u in &r.unreached {
            eprintln!(
                concat!(
                    "leaktest: {} probes never reached the wire: the next hop {} on {} never ",
                    "resolved (neighbour state {}; a firewall that drops this host's own ARP or ",
                    "neighbour solicitations does this). Their part of the sweep proves nothing: ",
                    "put the next hop in the neighbour cache (as a running gateway usually has ",
                    "it) and sweep again."
                ),
                u.family, u.next_hop, u.interface, u.state
            );
        }
        // Not clean, not a failure to run: as the watcher's INCONCLUSIVE.
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct T {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        T::try_parse_from(std::iter::once("probe").chain(argv.iter().copied())).map(|t| t.args)
    }

    fn settings(argv: &[&str]) -> Result<Settings> {
        Settings::from_args(&parse(argv).map_err(|e| anyhow::anyhow!("{e}"))?)
    }

    #[test]
    fn defaults() {
        let a = parse(&["--target", "10.152.152.10"]).unwrap();
        assert_eq!(a.rate, Rate::Pps(10_000));
        assert_eq!(a.suite.0, Suite::ALL.to_vec());
        assert_eq!(a.socket, SocketArg::Packet);
        assert_eq!(a.family, None);
    }

    #[test]
    fn refuses_without_a_target() {
        let e = settings(&[]).unwrap_err().to_string();
        assert!(e.contains("no target"), "{e}");
        let e = settings(&["--family", "both", "--rate", "max"]).unwrap_err();
        assert!(e.to_string().contains("no target"));
    }

    #[test]
    fn family_defaults_follow_the_targets() {
        let s = settings(&["--target", "10.152.152.10"]).unwrap();
        assert_eq!(s.families, vec![Family::V4]);
        assert!(s.notes[0].contains("IPv4 only"));
        let s = settings(&[
            "--target",
            "10.152.152.10",
            "--target6",
            "fd19:c33d:88bc::10",
        ])
        .unwrap();
        assert_eq!(s.families, Family::BOTH.to_vec());
        assert!(s.notes.is_empty());
        let s = settings(&["--target6", "fd19:c33d:88bc::10"]).unwrap();
        assert_eq!(s.families, vec![Family::V6]);
        assert_eq!(s.target4, None);
    }

    #[test]
    fn explicit_families_need_their_targets() {
        let e = settings(&["--target", "10.152.152.10", "--family", "both"]).unwrap_err();
        assert!(e.to_string().contains("--target6"), "{e}");
        let e = settings(&["--target", "10.152.152.10", "--family", "6"]).unwrap_err();
        assert!(e.to_string().contains("--target6"), "{e}");
        let e = settings(&["--target6", "2001:db8::1", "--family", "4"]).unwrap_err();
        assert!(e.to_string().contains("--target IPV4"), "{e}");
        let s = settings(&[
            "--target",
            "10.152.152.10",
            "--target6",
            "2001:db8::1",
            "--family",
            "4",
        ])
        .unwrap();
        assert_eq!(s.families, vec![Family::V4]);
        assert_eq!(s.target6, None);
        assert!(s.notes[0].contains("not used"));
    }

    #[test]
    fn refuses_nonsense_targets_clearly() {
        for (t, word) in [
            ("127.0.0.1", "loopback"),
            ("224.0.0.1", "multicast"),
            ("0.0.0.0", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("169.254.1.1", "--iface"),
        ] {
            let e = settings(&["--target", t]).unwrap_err().to_string();
            assert!(e.contains(word), "{t}: {e}");
        }
        for (t, word) in [
            ("::1", "loopback"),
            ("ff02::1", "multicast"),
            ("::", "unspecified"),
            ("fe80::1", "--iface"),
            ("::ffff:10.0.0.1", "IPv4-mapped"),
        ] {
            let e = settings(&["--target6", t]).unwrap_err().to_string();
            assert!(e.contains(word), "{t}: {e}");
        }
        // A refused target of an unused family does not matter.
        assert!(settings(&["--target", "10.1.1.1", "--target6", "::1", "--family", "4"]).is_ok());
        assert!(settings(&["--target6", "fe80::1", "--iface", "eth0"]).is_ok());
    }

    #[test]
    fn bad_options_are_parse_errors() {
        for argv in [
            &["--target", "2001:db8::1"][..],
            &["--target6", "10.0.0.1"],
            &["--target", "10.0.0.1", "--suite", "tcp,bogus"],
            &["--target", "10.0.0.1", "--family", "5"],
            &["--target", "10.0.0.1", "--rate", "0"],
            &["--target", "10.0.0.1", "--rate", "fast"],
            &["--target", "10.0.0.1", "--socket", "udp"],
            &["--target", "10.0.0.1", "--gateway-mac", "02:00:00:00:00"],
            &["--target", "10.0.0.1", "--gateway-mac", "ff:ff:ff:ff:ff:ff"],
            &["--target", "10.0.0.1", "--run-id", "xyz"],
        ] {
            let e = parse(argv).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{argv:?}");
        }
        let e = settings(&[
            "--target",
            "10.0.0.1",
            "--socket",
            "raw",
            "--gateway-mac",
            "02:00:00:00:00:01",
        ]);
        assert!(e.is_err());
    }

    #[test]
    fn suite_lists() {
        assert_eq!(parse_suites("all").unwrap().0, Suite::ALL.to_vec());
        assert_eq!(
            parse_suites("udp, icmp,UDP").unwrap().0,
            vec![Suite::Icmp, Suite::Udp]
        );
        assert_eq!(parse_suites("frag,all").unwrap().0.len(), Suite::ALL.len());
        assert_eq!(
            parse_suites("icmp-codes,ext6").unwrap().0,
            vec![Suite::IcmpCodes, Suite::Ext6]
        );
        assert!(parse_suites("").is_err());
        assert!(parse_suites("tcp,,udp").is_err());
    }

    #[test]
    fn uplink_networks() {
        assert_eq!(
            parse_cidr("203.0.113.2/24").unwrap(),
            ("203.0.113.2".parse().unwrap(), 24)
        );
        assert_eq!(parse_cidr("2001:db8:1::2/64").unwrap().1, 64);
        for bad in [
            "203.0.113.2",
            "203.0.113.2/33",
            "2001:db8::1/129",
            "x/24",
            "/24",
        ] {
            let e = parse_cidr(bad).unwrap_err();
            assert!(
                e.contains("ADDR/LEN") || e.contains("longer than"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn macs_and_run_ids() {
        assert_eq!(
            parse_mac("02:00:5e:10:00:0A"),
            Ok([2, 0, 0x5e, 0x10, 0, 0xa])
        );
        assert_eq!(
            parse_mac("02-00-5e-10-00-0a"),
            Ok([2, 0, 0x5e, 0x10, 0, 0xa])
        );
        assert!(parse_mac("02:00:5e:10:00:0a:01").is_err());
        assert!(parse_mac("02:00:5e:10:00:xyz").is_err());
        assert!(parse_mac("01:00:5e:00:00:01").is_err());
        assert_eq!(parse_run_id("3f"), Ok(0x3f));
        assert_eq!(parse_run_id("0xffffffffffffffff"), Ok(u64::MAX));
        assert!(parse_run_id("1ffffffffffffffff").is_err());
    }
}
