//! A whole probe run, as `leaktest probe` and the lab drive it: resolve
//! where each family's probes go ([`prepare`]), open the senders, send the
//! plan ([`Prepared::run`]), and report what went out ([`ProbeReport`],
//! whose JSON the lab reads back).
//!
//! Argument parsing and the progress display are the command line's; the
//! sending itself is [`crate::run`]'s.

use crate::path::{lookup_path, Path, PathOptions};
use crate::rate::Rate;
use crate::run::{Lane, Plan, Progress, RunConfig, RunStats};
use crate::socket::{FrameSender, PacketSender, RawIpSender};
use crate::Error;
use leaktest_wire::marker::KeyMode;
use leaktest_wire::{Endpoints, Family, Neighbourhood, ProbeBuilder, ProbeSpec, RunKey, Suite, L2};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

/// How probes leave the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketKind {
    /// AF_PACKET: whole Ethernet frames on the egress interface (workstation side).
    Packet,
    /// Raw IP sockets through this host's own stack and firewall (gateway side).
    Raw,
}

impl SocketKind {
    pub fn name(self) -> &'static str {
        match self {
            SocketKind::Packet => "packet",
            SocketKind::Raw => "raw",
        }
    }
}

/// What to send, already checked (targets per family, suites).
#[derive(Clone, Debug)]
pub struct ProbeRequest {
    pub families: Vec<Family>,
    pub target4: Option<Ipv4Addr>,
    pub target6: Option<Ipv6Addr>,
    pub suites: Vec<Suite>,
    /// Only these probes (inclusive `seq` ranges), e.g. to resend what a
    /// watcher missed; `None`: every probe of the suites.
    pub only: Option<Vec<(u32, u32)>>,
    pub rate: Rate,
    pub key: RunKey,
    pub socket: SocketKind,
    pub iface: Option<String>,
    pub gateway_mac: Option<[u8; 6]>,
    /// Accept targets on the link itself (see [`PathOptions::allow_on_link`])
    /// and targets that answer at the first hop ([`crate::hop`]).
    pub allow_on_link: bool,
    /// The interfaces a watcher on this host watches, when known: each
    /// family's route must leave by one of them ([`Error::NotWatchedUplink`]),
    /// and the first-hop check is skipped (the first hop is beyond the
    /// watched link). `None`: no watcher here, the host is behind the
    /// gateway, and the first-hop check runs.
    pub uplinks: Option<Uplinks>,
    /// The gateway's uplink addresses with their prefix lengths (at most one
    /// per family), for the `lan` suite's uplink destinations and the
    /// `spoof` suite's gateway-external source.
    pub uplink_nets: Vec<(IpAddr, u8)>,
    /// The routers on the gateway's uplink (at most one per family), for the
    /// `lan` suite's uplink-router destination.
    pub uplink_routers: Vec<IpAddr>,
}

/// A planned probe that cannot be built on this host, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub seq: u32,
    /// The probe, as reports name it (`"lan ipv4 to uplink-router udp"`).
    pub probe: String,
    pub why: String,
}

/// A family whose probes never reached the wire: the kernel could not
/// resolve its next hop (ARP / neighbour discovery failed, e.g. because a
/// firewall drops the gateway's own neighbour solicitations), so it
/// queued and then dropped them. What the sweep found for that family
/// proves nothing (INCONCLUSIVE, never clean).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreached {
    pub family: Family,
    pub interface: String,
    pub next_hop: IpAddr,
    /// The neighbour entry's state when the check gave up (`FAILED`,
    /// `INCOMPLETE`, or `none` when the kernel kept no entry).
    pub state: String,
    /// Probes of the family the kernel accepted (and then dropped).
    pub probes: u64,
}

/// How long [`Prepared::run`] waits after a raw-socket sweep for a next
/// hop that is still being resolved: the kernel gives up after three
/// solicitations one second apart (`mcast_solicit` 3, `retrans_time_ms`
/// 1000, Linux defaults for both ARP and neighbour discovery).
pub const NEXT_HOP_SETTLE: Duration = Duration::from_millis(3500);

/// The interface a path's next hop is reached by now: the path's own, or
/// the one of the same name that replaced it during the run (a re-created
/// uplink has a new ifindex; its neighbour entries are its own).
fn current_ifindex(nl: &mut crate::netlink::Netlink, p: &Path) -> u32 {
    match nl.route_get(p.next_hop, None) {
        Ok(crate::netlink::Route { oif: Some(oif), .. }) if oif != p.ifindex => {
            match nl.link_get(oif) {
                Ok(l) if l.name == p.iface => oif,
                _ => p.ifindex,
            }
        }
        _ => p.ifindex,
    }
}

/// The next hops of a raw-socket sweep that never resolved (see
/// [`Unreached`]). Only families whose probes the kernel took, on links
/// with a link layer to resolve. Waits up to [`NEXT_HOP_SETTLE`] while a
/// resolution is still under way; returns at once when all resolved.
fn unreached_next_hops(paths: &[(Family, Path)], sent: &BTreeMap<Family, u64>) -> Vec<Unreached> {
    let mut pending: Vec<&(Family, Path)> = paths
        .iter()
        .filter(|(f, p)| p.ethernet && sent.get(f).copied().unwrap_or(0) > 0)
        .collect();
    if pending.is_empty() {
        return Vec::new();
    }
    // Unable to look: not proven to have reached the wire (fail closed).
    let Ok(mut nl) = crate::netlink::Netlink::open() else {
        return pending
            .into_iter()
            .map(|(f, p)| Unreached {
                family: *f,
                interface: p.iface.clone(),
                next_hop: p.next_hop,
                state: "not checked (no netlink socket)".into(),
                probes: sent[f],
            })
            .collect();
    };
    let deadline = std::time::Instant::now() + NEXT_HOP_SETTLE;
    let mut out = Vec::new();
    loop {
        let mut still = Vec::new();
        for fp in pending {
            let (f, p) = fp;
            let ifindex = current_ifindex(&mut nl, p);
            let n = nl.neighbour_get(ifindex, p.next_hop).ok().flatten();
            match n {
                Some(n) if n.usable_mac().is_some() => {}
                Some(n) if n.state & crate::netlink::NUD_FAILED != 0 => out.push(Unreached {
                    family: *f,
                    interface: p.iface.clone(),
                    next_hop: p.next_hop,
                    state: crate::netlink::nud_name(n.state).into(),
                    probes: sent[f],
                }),
                _ => still.push(fp),
            }
        }
        pending = still;
        if pending.is_empty() || std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (f, p) in pending {
        let state = nl
            .neighbour_get(p.ifindex, p.next_hop)
            .ok()
            .flatten()
            .map_or("none", |n| crate::netlink::nud_name(n.state));
        out.push(Unreached {
            family: *f,
            interface: p.iface.clone(),
            next_hop: p.next_hop,
            state: state.into(),
            probes: sent[f],
        });
    }
    out.sort_by_key(|u| u.family);
    out
}

/// The watched uplink interfaces of this host (see [`ProbeRequest::uplinks`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uplinks {
    /// Interface indexes.
    pub ifindexes: Vec<u32>,
    /// Where they come from, for messages ("the watcher (PID 812) watches eth0",
    /// "--uplink eth0").
    pub from: String,
}

impl ProbeRequest {
    fn target(&self, f: Family) -> Option<IpAddr> {
        match f {
            Family::V4 => self.target4.map(IpAddr::V4),
            Family::V6 => self.target6.map(IpAddr::V6),
        }
    }

    /// The plan of this request.
    pub fn plan(&self) -> Plan {
        let p = Plan::new(&self.families, &self.suites);
        match &self.only {
            Some(r) => p.only(r),
            None => p,
        }
    }
}

/// Sending threads: at `--rate max` one per core (at most four), which share
/// the plan; at a fixed rate one, whose pacing is the rate.
pub fn sending_threads(rate: Rate) -> usize {
    match rate {
        Rate::Max => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4),
        Rate::Pps(_) => 1,
    }
}

/// A run ready to send: paths resolved, senders open.
pub struct Prepared {
    request: ProbeRequest,
    plan: Plan,
    paths: Vec<(Family, Path)>,
    workers: Vec<Vec<Lane>>,
    /// Planned probes that cannot be built here (they count as unbuilt).
    skipped: Vec<Skipped>,
    /// Things to tell the user before sending.
    pub notes: Vec<String>,
}

/// Resolves each family's path and opens one sender per family and thread.
/// Refuses before resolving anything when the privilege is missing
/// (resolution may send a datagram).
pub fn prepare(request: ProbeRequest) -> Result<Prepared, Error> {
    for &family in &request.families {
        crate::socket::check_privilege(request.socket.name(), family == Family::V6)?;
    }
    let opts = PathOptions {
        iface: request.iface.clone(),
        gateway_mac: request.gateway_mac,
        link_layer: request.socket == SocketKind::Packet,
        resolve_timeout: None,
        allow_on_link: request.allow_on_link,
    };
    let mut notes = Vec::new();
    let mut paths = Vec::new();
    let mut resolved = Vec::new();
    let mut workers: Vec<Vec<Lane>> = (0..sending_threads(request.rate))
        .map(|_| Vec::new())
        .collect();
    for &family in &request.families {
        let Some(target) = request.target(family) else {
            return Err(Error::BadTarget(format!("no {family} target given")));
        };
        // A route by a watched uplink may be link-scope (ppp, wwan, a tunnel):
        // its probes cross the watched interface, which is all that matters.
        let mut path = match &request.uplinks {
            Some(_) => lookup_path(
                target,
                &PathOptions {
                    allow_on_link: true,
                    ..opts.clone()
                },
            )?,
            None => lookup_path(target, &opts)?,
        };
        path.first_hop = Some(match &request.uplinks {
            Some(u) if !u.ifindexes.contains(&path.ifindex) => {
                return Err(Error::NotWatchedUplink {
                    target,
                    iface: path.iface.clone(),
                    watched: u.from.clone(),
                })
            }
            Some(u) => format!(
                "not checked: the route leaves by the watched uplink ({})",
                u.from
            ),
            None if request.allow_on_link => "not checked (--on-link)".into(),
            // Raw sockets test this host's own output path (the gateway's): its
            // first hop lies beyond its own uplink, which is what is watched.
            None if request.socket == SocketKind::Raw => {
                "not checked (--socket raw: this host's own output path)".into()
            }
            None => match crate::hop::check_first_hop(&path, request.key, None)? {
                crate::hop::FirstHop::Target { answer } => {
                    return Err(Error::FirstHopTarget { target, answer })
                }
                crate::hop::FirstHop::Silent { why } => {
                    notes.push(format!(
                        "cannot tell whether {target} lies beyond the gateway ({why}): if it is \
                         one of the gateway's own addresses, its probes cannot show a leak"
                    ));
                    crate::hop::FirstHop::Silent { why }.describe()
                }
                h => h.describe(),
            },
        });
        if request.socket == SocketKind::Raw && path.ethernet && path.macs.is_none() {
            notes.push(format!(
                "next hop {} on {} has no neighbour entry yet: the kernel resolves it with the \
                 first {family} probes and may drop a few meanwhile",
                path.next_hop, path.iface
            ));
        }
        let ends = path.endpoints()?;
        let l2 = match request.socket {
            SocketKind::Packet => path.macs.map(|m| L2 {
                src: m.src,
                dst: m.dst,
            }),
            SocketKind::Raw => None,
        };
        resolved.push((family, target, ends, l2));
        paths.push((family, path));
    }
    // Every builder knows both families' endpoints (a tunnel carries the
    // other family inside) and the neighbourhood the evasion suites need.
    let mut all_ends = Endpoints::default();
    for (_, _, e, _) in &resolved {
        all_ends.src4 = all_ends.src4.or(e.src4);
        all_ends.dst4 = all_ends.dst4.or(e.dst4);
        all_ends.src6 = all_ends.src6.or(e.src6);
        all_ends.dst6 = all_ends.dst6.or(e.dst6);
    }
    let hood = neighbourhood(&request, &paths);
    let mut skipped = Vec::new();
    for (family, target, _, l2) in resolved {
        let builder = ProbeBuilder::new(request.key, all_ends, l2).with_neighbourhood(hood);
        skipped.extend(unbuildable(
            &builder,
            family,
            &request.suites,
            &hood,
            &all_ends,
        ));
        // One sender per worker thread: a socket is not shared between threads.
        for lanes in &mut workers {
            let sender: Box<dyn FrameSender> = match request.socket {
                SocketKind::Packet => {
                    let p = &paths.iter().find(|(f, _)| *f == family).expect("path").1;
                    Box::new(PacketSender::open(p.ifindex, p.ethernet)?)
                }
                SocketKind::Raw => {
                    // Link-scope IPv6 destinations leave where the target's route does.
                    let p = &paths.iter().find(|(f, _)| *f == family).expect("path").1;
                    Box::new(RawIpSender::open(
                        target.is_ipv6(),
                        request.iface.as_deref(),
                        p.ifindex,
                    )?)
                }
            };
            if sender.wants_ethernet() && l2.is_none() {
                let p = &paths.iter().find(|(f, _)| *f == family).expect("path").1;
                return Err(Error::BadTarget(format!(
                    "interface {} needs Ethernet addresses that could not be found",
                    p.iface
                )));
            }
            lanes.push(Lane {
                family,
                writer: Box::new(builder.clone()),
                sender,
            });
        }
    }
    if !skipped.is_empty() {
        let mut whys: Vec<&str> = skipped.iter().map(|s| s.why.as_str()).collect();
        whys.sort();
        whys.dedup();
        notes.push(format!(
            "{} probe(s) cannot be built here and are skipped (JSON `skipped`): {}",
            skipped.len(),
            whys.join("; ")
        ));
    }
    Ok(Prepared {
        plan: request.plan(),
        request,
        paths,
        workers,
        skipped,
        notes,
    })
}

/// What the `lan` and `spoof` suites need to know around this host: the
/// next hops (when routed via a gateway), the prefix lengths of the source
/// addresses (from the interfaces' netmasks), and the gateway uplink the
/// user named.
fn neighbourhood(request: &ProbeRequest, paths: &[(Family, Path)]) -> Neighbourhood {
    let mut h = Neighbourhood::default();
    for (_, p) in paths {
        match (p.next_hop, p.via_gateway) {
            (IpAddr::V4(a), true) => h.gateway4 = Some(a),
            (IpAddr::V6(a), true) => h.gateway6 = Some(a),
            _ => {}
        }
        match p.source {
            IpAddr::V4(_) => h.prefix4 = crate::path::prefix_len(p.source),
            IpAddr::V6(_) => h.prefix6 = crate::path::prefix_len(p.source),
        }
    }
    for (a, len) in &request.uplink_nets {
        match a {
            IpAddr::V4(a) => h.uplink4 = Some((*a, *len)),
            IpAddr::V6(a) => h.uplink6 = Some((*a, *len)),
        }
    }
    for a in &request.uplink_routers {
        match a {
            IpAddr::V4(a) => h.router4 = Some(*a),
            IpAddr::V6(a) => h.router6 = Some(*a),
        }
    }
    h
}

/// The planned probes of `family` that `builder` cannot build, with why.
/// Only the small composed suites can have any.
fn unbuildable(
    builder: &ProbeBuilder,
    family: Family,
    suites: &[Suite],
    hood: &Neighbourhood,
    ends: &Endpoints,
) -> Vec<Skipped> {
    use leaktest_wire::catalogue::{LanDest, ProbeKind, SpoofSource};
    let mut out = Vec::new();
    for &suite in suites {
        if suite.probe_count(family) > 8192 {
            continue; // template suites: always built
        }
        for spec in ProbeSpec::all(family, suite) {
            if builder.frame_len(&spec) > 0 {
                continue;
            }
            let why = match spec.kind {
                ProbeKind::Lan {
                    dest: LanDest::UplinkRouter,
                    ..
                } => "the uplink router is unknown (--uplink-router ADDR)".to_string(),
                ProbeKind::Lan {
                    dest: LanDest::UplinkHost,
                    ..
                }
                | ProbeKind::Spoof {
                    source: SpoofSource::GatewayExternal,
                    ..
                } => "the gateway's uplink is unknown (--gateway-uplink ADDR/LEN)".to_string(),
                ProbeKind::Lan {
                    dest: LanDest::SubnetBroadcast,
                    ..
                } => "the source address's prefix length is unknown".to_string(),
                ProbeKind::Spoof {
                    source: SpoofSource::GatewayInternal,
                    ..
                } => "the target is not routed via a gateway".to_string(),
                ProbeKind::Tunnel { tunnel } if tunnel.inner_family(family) != family => format!(
                    "a tunnel of {} inside {family} needs a {} target too",
                    tunnel.inner_family(family),
                    tunnel.inner_family(family)
                ),
                _ => format!("not buildable ({hood:?}, {ends:?})"),
            };
            out.push(Skipped {
                seq: spec.seq(),
                probe: format!("{} {} {}", suite, family, spec.detail().unwrap_or_default()),
                why,
            });
        }
    }
    out
}

/// A finished (or stopped) run.
pub struct ProbeOutcome {
    pub report: ProbeReport,
    /// The error that ended the run early, if one did.
    pub error: Option<Error>,
}

impl Prepared {
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn paths(&self) -> &[(Family, Path)] {
        &self.paths
    }

    /// Sending threads this run uses.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Sends the plan; `stop` ends it early at a batch boundary.
    pub fn run(mut self, stop: &AtomicBool, progress: &mut dyn FnMut(&Progress)) -> ProbeOutcome {
        let cfg = RunConfig {
            rate: self.request.rate,
            ..RunConfig::default()
        };
        let started = SystemTime::now();
        let result = crate::run(&self.plan, &mut self.workers, &cfg, Some(stop), progress);
        let finished = SystemTime::now();
        let (stats, error) = match result {
            Ok(s) => (s, None),
            Err(f) => (*f.stats, Some(f.error)),
        };
        let mut report = ProbeReport::build(
            &self.request,
            &self.plan,
            &self.paths,
            &self.skipped,
            &stats,
            self.workers.len(),
            started,
            finished,
        );
        self.check_reached(&stats, &mut report);
        ProbeOutcome { report, error }
    }

    /// Through the local stack the kernel resolves the next hop itself and
    /// drops what it cannot deliver, silently: a raw-socket run checks it
    /// did ([`Unreached`]).
    fn check_reached(&self, stats: &crate::RunStats, report: &mut ProbeReport) {
        if self.request.socket == SocketKind::Raw {
            let sent: BTreeMap<Family, u64> = stats
                .sent
                .iter()
                .map(|(f, m)| (*f, m.values().sum()))
                .collect();
            report.unreached = unreached_next_hops(&self.paths, &sent);
        }
    }

    /// Sends a pulse ([`crate::pulse`]) instead of the plan, from the first
    /// worker's lanes; `stop` ends it between rounds. `progress` gets the
    /// rounds sent so far.
    pub fn run_pulse(
        mut self,
        cfg: &crate::pulse::PulseConfig,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(u32),
    ) -> ProbeOutcome {
        let started = SystemTime::now();
        let lanes = self
            .workers
            .first_mut()
            .map(Vec::as_mut_slice)
            .unwrap_or(&mut []);
        let (p, error) = crate::pulse::run_pulse(lanes, cfg, Some(stop), progress);
        let finished = SystemTime::now();
        let (stats, times, late) = (p.run, p.round_sent_unix_ns, p.late_rounds);
        let mut report = ProbeReport::build(
            &self.request,
            &self.plan,
            &self.paths,
            &self.skipped,
            &stats,
            1,
            started,
            finished,
        );
        report.planned = u64::from(cfg.rounds)
            * leaktest_wire::pulse::PER_FAMILY as u64
            * self.request.families.len() as u64;
        report.pulse = Some(PulseReport {
            interval_ms: cfg.interval.as_secs_f64() * 1e3,
            rounds: cfg.rounds,
            rounds_sent: times.len() as u32,
            late_rounds: late,
            per_round: leaktest_wire::pulse::PER_FAMILY as u32 * self.request.families.len() as u32,
            round_sent_unix_ns: times,
        });
        self.check_reached(&stats, &mut report);
        ProbeOutcome { report, error }
    }
}

/// What a pulse sent and when (`leaktest probe --duration`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PulseReport {
    /// Milliseconds from one round's start to the next's.
    pub interval_ms: f64,
    /// Rounds planned and sent.
    pub rounds: u32,
    pub rounds_sent: u32,
    /// Rounds that started more than an interval after their slot (a busy
    /// sender: the pulse was thinner than planned then).
    pub late_rounds: u64,
    /// Probes per round over all families.
    pub per_round: u32,
    /// Round `r`'s send time, Unix ns: a leak whose marker names round `r`
    /// was sent then.
    pub round_sent_unix_ns: Vec<u64>,
}

/// The key a run was signed with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyReport {
    pub mode: KeyMode,
    /// A public name of the key (16 hex digits); reveals nothing of it.
    pub fingerprint: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

/// Where one family's probes went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathReport {
    pub interface: String,
    pub target: IpAddr,
    pub source: IpAddr,
    pub next_hop: IpAddr,
    pub via_gateway: bool,
    pub src_mac: Option<String>,
    pub dst_mac: Option<String>,
    /// What the first-hop check found (see `leaktest_send::hop`).
    #[serde(default)]
    pub first_hop: Option<String>,
}

/// `"max"` or probes per second.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RateReport {
    Pps(u64),
    Named(String),
}

/// The JSON report of a probe run (`leaktest probe --json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub tool: String,
    pub version: String,
    /// 16 hex digits.
    pub run_id: String,
    pub key: KeyReport,
    pub targets: Targets,
    pub interface: String,
    pub socket: SocketKind,
    pub rate: RateReport,
    pub families: Vec<Family>,
    pub suites: Vec<Suite>,
    /// The `seq` ranges sent, when only some probes were asked for.
    pub only: Option<String>,
    pub paths: BTreeMap<String, PathReport>,
    pub planned: u64,
    pub sent: u64,
    /// Per family: `total` and one count per suite.
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
    pub suite_totals: BTreeMap<String, u64>,
    pub refused: BTreeMap<String, BTreeMap<String, u64>>,
    pub refused_total: u64,
    pub unbuilt: u64,
    /// The probes that could not be built on this host, and why (they are
    /// the unbuilt ones).
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// Families whose next hop never resolved: their probes never reached
    /// the wire (`--socket raw` only; see [`Unreached`]).
    #[serde(default)]
    pub unreached: Vec<Unreached>,
    pub retries: u64,
    pub threads: usize,
    pub complete: bool,
    /// A pulse (`--duration`): its rounds and their send times.
    #[serde(default)]
    pub pulse: Option<PulseReport>,
    /// RFC 3339 UTC.
    pub started: String,
    pub finished: String,
    pub seconds: f64,
    pub pps: f64,
}

fn fmt_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `[(0, 255), (300, 300)]` as `0-255,300`.
pub fn ranges_text(r: &[(u32, u32)]) -> String {
    r.iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads `0-255,300` (commas, spaces or newlines between items).
pub fn parse_ranges(s: &str) -> Result<Vec<(u32, u32)>, String> {
    let mut v = Vec::new();
    for part in s
        .split([',', ' ', '\n', '\t', '\r'])
        .filter(|p| !p.is_empty())
    {
        let bad = || format!("{part:?} is not a probe number or range (like 512-1023)");
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
            None => {
                let x = part.parse().map_err(|_| bad())?;
                (x, x)
            }
        };
        if a > b {
            return Err(bad());
        }
        v.push((a, b));
    }
    Ok(v)
}

impl ProbeReport {
    #[allow(clippy::too_many_arguments)]
    fn build(
        req: &ProbeRequest,
        plan: &Plan,
        paths: &[(Family, Path)],
        skipped: &[Skipped],
        s: &RunStats,
        threads: usize,
        started: SystemTime,
        finished: SystemTime,
    ) -> ProbeReport {
        let per = |m: &BTreeMap<Family, BTreeMap<Suite, u64>>| {
            let mut out = BTreeMap::new();
            for &f in plan.families() {
                let mut fm = BTreeMap::new();
                let sub = m.get(&f);
                fm.insert("total".into(), sub.map_or(0, |x| x.values().sum::<u64>()));
                for &su in plan.suites() {
                    fm.insert(
                        su.name().into(),
                        sub.and_then(|x| x.get(&su)).copied().unwrap_or(0),
                    );
                }
                out.insert(f.name().into(), fm);
            }
            out
        };
        let mut ifaces: Vec<&str> = paths.iter().map(|(_, p)| p.iface.as_str()).collect();
        ifaces.dedup();
        ProbeReport {
            tool: "leaktest probe".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            run_id: format!("{:016x}", req.key.run_id),
            key: KeyReport {
                mode: req.key.mode,
                fingerprint: req.key.fingerprint(),
            },
            targets: Targets {
                ipv4: req.target4,
                ipv6: req.target6,
            },
            interface: ifaces.join(","),
            socket: req.socket,
            rate: match req.rate {
                Rate::Max => RateReport::Named("max".into()),
                Rate::Pps(p) => RateReport::Pps(p),
            },
            families: plan.families().to_vec(),
            suites: plan.suites().to_vec(),
            only: req.only.as_deref().map(ranges_text),
            paths: paths
                .iter()
                .map(|(f, p)| {
                    (
                        f.name().to_string(),
                        PathReport {
                            interface: p.iface.clone(),
                            target: p.target,
                            source: p.source,
                            next_hop: p.next_hop,
                            via_gateway: p.via_gateway,
                            src_mac: p.macs.map(|m| fmt_mac(&m.src)),
                            dst_mac: p.macs.map(|m| fmt_mac(&m.dst)),
                            first_hop: p.first_hop.clone(),
                        },
                    )
                })
                .collect(),
            planned: plan.total(),
            sent: s.sent_total(),
            counts: per(&s.sent),
            suite_totals: plan
                .suites()
                .iter()
                .map(|su| (su.name().to_string(), s.sent_suite(*su)))
                .collect(),
            refused: per(&s.refused),
            refused_total: s.refused_total(),
            unbuilt: s.unbuilt,
            skipped: skipped.to_vec(),
            unreached: Vec::new(),
            retries: s.retries,
            threads,
            complete: s.complete,
            pulse: None,
            started: rfc3339(started),
            finished: rfc3339(finished),
            seconds: s.elapsed.as_secs_f64(),
            pps: s.pps().round(),
        }
    }

    /// The one summary line.
    pub fn summary(&self) -> String {
        let fams: Vec<String> = self
            .families
            .iter()
            .map(|f| {
                let n = self
                    .counts
                    .get(f.name())
                    .and_then(|m| m.get("total"))
                    .copied();
                format!("{f} {}", thousands(n.unwrap_or(0)))
            })
            .collect();
        let mut line = format!(
            "sent {} probes ({}) in {:.2} s, {} pps",
            thousands(self.sent),
            fams.join(", "),
            self.seconds,
            thousands(self.pps as u64),
        );
        if let Some(p) = &self.pulse {
            line.push_str(&format!(
                ", pulse of {} of {} rounds every {} ms",
                thousands(u64::from(p.rounds_sent)),
                thousands(u64::from(p.rounds)),
                p.interval_ms
            ));
            if p.late_rounds > 0 {
                line.push_str(&format!(" ({} late)", thousands(p.late_rounds)));
            }
        }
        if self.refused_total > 0 {
            line.push_str(&format!(
                ", {} refused by the local stack",
                thousands(self.refused_total)
            ));
        }
        if !self.complete {
            line.push_str(&format!(
                ", INCOMPLETE ({} planned)",
                thousands(self.planned)
            ));
        }
        for u in &self.unreached {
            line.push_str(&format!(
                ", {} NEVER REACHED THE WIRE ({} probes: next hop {} on {} {})",
                u.family,
                thousands(u.probes),
                u.next_hop,
                u.interface,
                u.state
            ));
        }
        line.push_str(&format!(
            ", run {}, key {} {}",
            self.run_id,
            match self.key.mode {
                KeyMode::Open => "open",
                KeyMode::Shared => "shared",
            },
            self.key.fingerprint
        ));
        line
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// RFC 3339 UTC with milliseconds, from the system clock.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::MacPair;
    use std::time::Duration;

    #[test]
    fn number_time_and_range_formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(787_460), "787,460");
        assert_eq!(thousands(1_234_567), "1,234,567");
        // Checked with `date -u -d @1796000000`.
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_000_000_123);
        assert_eq!(rfc3339(t), "2026-11-30T00:53:20.123Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            parse_ranges("0-255, 300\n512-513").unwrap(),
            vec![(0, 255), (300, 300), (512, 513)]
        );
        assert_eq!(ranges_text(&[(0, 255), (300, 300)]), "0-255,300");
        assert!(parse_ranges("5-4").is_err());
        assert!(parse_ranges("x").is_err());
    }

    fn sample_stats() -> RunStats {
        let mut s = RunStats::default();
        for f in Family::BOTH {
            let m = s.sent.entry(f).or_default();
            m.insert(Suite::Icmp, 256);
            m.insert(Suite::Udp, 65_536);
        }
        s.elapsed = Duration::from_millis(250);
        s.complete = true;
        s
    }

    #[test]
    fn json_report_and_summary() {
        let key = RunKey::shared(&[7u8; 16], 0x3f09_c4e1_a2b3_c4d5);
        let req = ProbeRequest {
            families: Family::BOTH.to_vec(),
            target4: Some("10.152.152.10".parse().unwrap()),
            target6: Some("fd19:c33d:88bc::10".parse().unwrap()),
            suites: vec![Suite::Icmp, Suite::Udp],
            only: None,
            rate: Rate::Max,
            key,
            socket: SocketKind::Packet,
            iface: None,
            gateway_mac: None,
            allow_on_link: false,
            uplinks: None,
            uplink_nets: Vec::new(),
            uplink_routers: Vec::new(),
        };
        let plan = req.plan();
        let path = Path {
            target: "10.152.152.10".parse().unwrap(),
            ifindex: 2,
            iface: "eth0".into(),
            mtu: Some(1500),
            source: "10.152.152.11".parse().unwrap(),
            next_hop: "10.152.152.10".parse().unwrap(),
            via_gateway: false,
            macs: Some(MacPair {
                src: [2, 0, 0, 0, 0, 1],
                dst: [2, 0, 0, 0, 0, 2],
            }),
            ethernet: true,
            first_hop: Some("beyond the first hop (time exceeded from 10.152.152.10)".into()),
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let r = ProbeReport::build(
            &req,
            &plan,
            &[(Family::V4, path)],
            &[],
            &sample_stats(),
            2,
            t0,
            t0 + Duration::from_millis(250),
        );
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["run_id"], "3f09c4e1a2b3c4d5");
        assert_eq!(j["threads"], 2);
        assert_eq!(j["key"]["mode"], "shared");
        assert_eq!(j["key"]["fingerprint"], key.fingerprint());
        assert_eq!(j["targets"]["ipv6"], "fd19:c33d:88bc::10");
        assert_eq!(
            (
                j["interface"].as_str(),
                j["socket"].as_str(),
                j["rate"].as_str()
            ),
            (Some("eth0"), Some("packet"), Some("max"))
        );
        assert_eq!(j["families"], serde_json::json!(["ipv4", "ipv6"]));
        assert_eq!(j["suites"], serde_json::json!(["icmp", "udp"]));
        assert_eq!(j["planned"], 2 * (256 + 65_536));
        assert_eq!(j["sent"], 2 * (256 + 65_536));
        assert_eq!(j["counts"]["ipv4"]["total"], 256 + 65_536);
        assert_eq!(j["counts"]["ipv6"]["udp"], 65_536);
        assert_eq!(j["suite_totals"]["icmp"], 512);
        assert_eq!(j["paths"]["ipv4"]["dst_mac"], "02:00:00:00:00:02");
        assert_eq!(
            j["paths"]["ipv4"]["first_hop"],
            "beyond the first hop (time exceeded from 10.152.152.10)"
        );
        assert_eq!(j["started"], "2026-11-30T00:53:20.000Z");
        assert_eq!(j["seconds"], 0.25);
        assert_eq!(j["complete"], true);
        let back: ProbeReport = serde_json::from_value(j).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            r.summary(),
            format!(
                "sent 131,584 probes (ipv4 65,792, ipv6 65,792) in 0.25 s, 526,336 pps, \
                 run 3f09c4e1a2b3c4d5, key shared {}",
                key.fingerprint()
            )
        );
    }
}
