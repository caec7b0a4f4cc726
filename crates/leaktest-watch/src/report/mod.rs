//! The reports of a watch: one typed [`WatchReport`], built once from what
//! the watch found, then written as JSON ([`WatchReport::write_json`]),
//! printed for people ([`terminal`]) or as JUnit XML ([`junit`]). The lab
//! reads the same type back from the watcher's JSON.
//!
//! JSON schema (stable; fields may be added, none removed): `verdict`,
//! `exit_code`, `reasons`, `interface`, `capture{packets, dropped,
//! canaries_sent, canaries_seen, accounting, problems}`, `rules[{rule,
//! about, packets}]`, `tor{packets, endpoints, by_role, ..., flows}`, `allowed`,
//! `housekeeping{packets, by_kind}`, `leak_packets`, `leaks[{family,
//! protocol, src, dst, src_port, dst_port, icmp_type, tcp_flags, cause,
//! cause_detail, rule, probe: null|{run, seq, suite, family, protocol,
//! dst_port, tcp_flags, icmp_type, evidence, key_mode}, ...}]` (one entry
//! per leaked packet, the first
//! [`MAX_LEAK_DETAILS`](crate::findings::MAX_LEAK_DETAILS)), `groups`, and
//! `runs[{run, key_mode, distinct, packets, resets, seqs}]` (every probe of
//! each run seen, as ranges of `seq`). With a timeline (`--run-at`,
//! `--event-fifo`): `watch_start_unix_ns`, `events[{name, source, at_s,
//! start_unix_ns, end_unix_ns, exit_code, problem}]`, `phases[{name,
//! from_unix_ns, to_unix_ns, verdict, leak_packets, probe_leak_packets,
//! first_leak_ms, last_leak_ms, rounds, what}]`, and per leak `event` and
//! `since_event_ms`; a pulse probe's `probe.round`.

pub mod html;
pub mod junit;
pub mod terminal;

use crate::classify::allow::AllowEntry;
use crate::classify::flows::FlowStats;
use crate::classify::housekeeping::HousekeepingKind;
use crate::classify::{LeakCause, LeakFamily, Rule, RULES};
use crate::findings::{cause_text, Findings, LeakGroup, LeakRecord};
use crate::verdict::{Accounting, CaptureHealth, Verdict};
use leaktest_wire::marker::KeyMode;
use leaktest_wire::{Attribution, CaptureStats, Family};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Errors while writing a report file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    File(#[from] leaktest_fs::FsError),
    #[error("cannot write pcapng {}: {source}", path.display())]
    Pcap {
        path: PathBuf,
        source: pcap_file::PcapError,
    },
}

/// What the Tor allowlist looked like during the watch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowlistSummary {
    /// Endpoints in the allowlist at the end.
    pub endpoints: usize,
    /// Whether it came from a control port (else `--allow tor:`/`obfs4:` only).
    pub from_control_port: bool,
    /// Refreshes published during the watch (after the first list).
    pub refreshes: u64,
    /// TCP frames held back until a refresh knew their endpoint or their
    /// wait ended ([`crate::hold`]), then judged.
    #[serde(default)]
    pub held_frames: u64,
}

/// Everything a finished watch measured, borrowed for building the report.
#[derive(Clone, Copy, Debug)]
pub struct WatchOutcome<'a> {
    pub iface: &'a str,
    pub findings: &'a Findings,
    pub health: &'a CaptureHealth,
    pub flows: FlowStats,
    pub allowlist: &'a AllowlistSummary,
    pub allow: &'a [AllowEntry],
    pub stats: CaptureStats,
    pub elapsed_s: f64,
    pub interrupted: bool,
    pub pcap_frames: u64,
}

/// The capture's health in the report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CaptureReport {
    /// Frames the capture delivered to the watch.
    pub packets: u64,
    pub dropped: u64,
    pub canaries_sent: u64,
    pub canaries_seen: u64,
    /// The kernel's counters at the end.
    pub kernel: CaptureStats,
    pub accounting: Option<Accounting>,
    pub problems: Vec<String>,
    /// Why the watch could not prove it saw (empty: proven). With leaks
    /// the verdict is LEAK all the same; the timeline's leak-free phases
    /// are then INCONCLUSIVE, not PASS.
    #[serde(default)]
    pub unproven: Vec<String>,
    pub elapsed_s: f64,
    /// Whether the watch was ended by a signal.
    pub interrupted: bool,
    /// Frames written to the `--pcap` file.
    pub pcap_frames: u64,
}

/// Frames one rule decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCount {
    pub rule: Rule,
    pub about: String,
    pub packets: u64,
}

/// Tor traffic in the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TorReport {
    pub packets: u64,
    /// Distinct endpoints seen.
    pub endpoints: usize,
    pub endpoints_overflow: bool,
    /// Tor frames by the role of their endpoint (`orport`, `dirport`,
    /// `bridge`, `obfs4-bridge`, `transport-bridge`, `proxy`); a frame to an
    /// endpoint with several roles counts under each.
    #[serde(default)]
    pub by_role: BTreeMap<String, u64>,
    pub allowlist: AllowlistSummary,
    pub flows: FlowStats,
}

/// Frames one `--allow` entry let out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowedReport {
    pub entry: String,
    pub packets: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HousekeepingReport {
    pub packets: u64,
    pub by_kind: BTreeMap<String, u64>,
}

/// The probe a leaked packet came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// Run id, 16 hex digits.
    pub run: String,
    pub seq: u32,
    pub suite: String,
    pub family: String,
    pub protocol: u8,
    pub dst_port: Option<u16>,
    pub tcp_flags: Option<String>,
    pub icmp_type: Option<u8>,
    /// The ICMP code (nonzero only in the `icmp-codes` suite).
    #[serde(default)]
    pub icmp_code: Option<u8>,
    /// What sets the probe apart in its suite (`"lsrr tcp-syn"`,
    /// `"chain-5 udp"`, `"tiny-head"`, `"from internet echo"`), if anything.
    #[serde(default)]
    pub detail: Option<String>,
    /// `payload`, `header`, `reset` or `reflection`.
    pub evidence: String,
    pub key_mode: KeyMode,
    /// The pulse round its marker names (`leaktest probe --duration`).
    #[serde(default)]
    pub round: Option<u32>,
}

impl ProbeReport {
    fn of(p: &Attribution) -> ProbeReport {
        ProbeReport {
            run: format!("{:016x}", p.run.run_id),
            seq: p.seq,
            suite: p.spec.suite().name().into(),
            family: p.spec.family.name().into(),
            protocol: p.spec.protocol(),
            dst_port: p.spec.dst_port_with(Some(&p.run.drawn_ports())),
            tcp_flags: p.spec.tcp_flags().map(|f| f.letters()),
            icmp_type: p.spec.icmp_type(),
            icmp_code: p.spec.icmp_code(),
            detail: p.spec.detail(),
            evidence: p.evidence.name().into(),
            key_mode: p.run.mode,
            round: p.round,
        }
    }
}

/// One leaked packet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeakReport {
    pub family: LeakFamily,
    pub protocol: Option<u8>,
    /// IP source, or the MAC address of a non-IP frame.
    pub src: String,
    pub dst: String,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub icmp_type: Option<u8>,
    pub tcp_flags: Option<String>,
    pub probe: Option<ProbeReport>,
    /// `probe`, `forged-canary`, `not-tor`, `housekeeping-shaped`,
    /// `strict-housekeeping` or `unexpected`.
    pub cause: String,
    pub cause_detail: String,
    /// The rule that decided it.
    pub rule: Rule,
    pub ts_sec: u64,
    pub ts_nsec: u32,
    /// Length on the wire.
    pub len: u32,
    /// A fragment with a non-zero offset (no ports).
    pub fragment: bool,
    pub src_mac: Option<String>,
    pub dst_mac: Option<String>,
    pub ethertype: Option<u16>,
    pub vlan: Option<u16>,
    /// The last timeline event that began before it left, and how long
    /// after ([`crate::timeline`]); `None` before the first event.
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub since_event_ms: Option<f64>,
}

pub(crate) fn mac_string(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

impl LeakReport {
    fn of(r: &LeakRecord) -> LeakReport {
        let s = &r.leak.summary;
        let ip = &s.ip;
        let addr = |a: Option<std::net::IpAddr>, m: Option<[u8; 6]>| match (a, m) {
            (Some(a), _) => a.to_string(),
            (None, Some(m)) => mac_string(&m),
            (None, None) => String::new(),
        };
        LeakReport {
            family: r.leak.family(),
            protocol: ip.protocol.map(|p| p.0),
            src: addr(ip.src, s.l2_src),
            dst: addr(ip.dst, s.l2_dst),
            src_port: ip.src_port,
            dst_port: ip.dst_port,
            icmp_type: ip.icmp_type,
            tcp_flags: ip.tcp_flags.map(|f| f.letters()),
            probe: r.leak.probe.as_ref().map(ProbeReport::of),
            cause: r.leak.cause.name().into(),
            cause_detail: r.leak.cause.detail(),
            rule: r.rule,
            ts_sec: r.ts_sec,
            ts_nsec: r.ts_nsec,
            len: r.len,
            fragment: r.leak.non_first_fragment(),
            src_mac: s.l2_src.as_ref().map(mac_string),
            dst_mac: s.l2_dst.as_ref().map(mac_string),
            ethertype: s.ethertype,
            vlan: s.vlan,
            event: None,
            since_event_ms: None,
        }
    }

    /// What kind of packet it is, for a timeline: `ipv4 udp/53`,
    /// `ipv6 icmpv6 type 135`, `other ethertype 0x88b5`.
    pub fn kind(&self) -> String {
        let fam = self.family.name();
        let proto = match self.protocol {
            Some(p) => leaktest_wire::IpProtocol(p)
                .name()
                .map(str::to_string)
                .unwrap_or_else(|| format!("protocol {p}")),
            None => match self.ethertype {
                Some(e) => format!("ethertype 0x{e:04x}"),
                None => "frame".into(),
            },
        };
        match (self.dst_port, self.icmp_type) {
            (Some(p), _) if !self.fragment => format!("{fam} {proto}/{p}"),
            (_, Some(t)) => format!("{fam} {proto} type {t}"),
            _ => format!("{fam} {proto}"),
        }
    }
}

/// Leaked packets that look alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupReport {
    pub family: LeakFamily,
    /// `tcp [S]`, `udp`, `arp`, `ethertype 0x88b5`, ...
    pub what: String,
    pub protocol: Option<u8>,
    pub ethertype: Option<u16>,
    pub tcp_flags: Option<String>,
    pub packets: u64,
    pub dst_ports: Option<String>,
    pub icmp_types: Option<String>,
    pub protocols: String,
    pub suite: Option<String>,
    pub fragments: u64,
    pub srcs: Vec<String>,
    pub dsts: Vec<String>,
    pub vlans: Vec<u16>,
    /// Whether the packets were tied to a probe.
    pub probes: bool,
    pub suites: Vec<String>,
    pub runs: Vec<String>,
    pub cause: String,
    pub cause_detail: String,
    pub rule: Rule,
    /// The housekeeping kind, for `--strict` and housekeeping-shaped leaks.
    pub housekeeping: Option<HousekeepingKind>,
    pub header_evidence: u64,
    pub reset_evidence: u64,
    #[serde(default)]
    pub reflection_evidence: u64,
    /// Where the packets went, for people.
    pub detail: String,
    /// Which probes, or why it is a leak, for people.
    pub origin: String,
    pub first_ts: (u64, u32),
    pub last_ts: (u64, u32),
}

impl GroupReport {
    fn of(g: &LeakGroup) -> GroupReport {
        GroupReport {
            family: g.key.family,
            what: g.what(),
            protocol: g.key.protocol.map(|p| p.0),
            ethertype: g.key.ethertype,
            tcp_flags: g.key.tcp_flags.map(|f| f.letters()),
            packets: g.packets,
            dst_ports: g.dst_ports.as_ref().map(|p| p.ranges()),
            icmp_types: (!g.icmp_types.is_empty()).then(|| g.icmp_types.ranges()),
            protocols: g.protocols.ranges(),
            suite: g.key.suite.map(|s| s.name().into()),
            fragments: g.fragments,
            srcs: g.srcs.items.iter().map(|a| a.to_string()).collect(),
            dsts: g.dsts.items.iter().map(|a| a.to_string()).collect(),
            vlans: g.vlans.items.clone(),
            probes: g.key.attributed,
            suites: g.suites.iter().map(|s| s.name().into()).collect(),
            runs: g.runs.items.iter().map(|r| format!("{r:016x}")).collect(),
            cause: g.key.cause.name().into(),
            cause_detail: g.key.cause.detail(),
            rule: g.key.rule,
            housekeeping: match g.key.cause {
                LeakCause::StrictHousekeeping(k) | LeakCause::HousekeepingShaped(k, _) => Some(k),
                _ => None,
            },
            header_evidence: g.header_evidence,
            reset_evidence: g.reset_evidence,
            reflection_evidence: g.reflection_evidence,
            detail: g.detail(),
            origin: g.origin(),
            first_ts: g.first_ts,
            last_ts: g.last_ts,
        }
    }

    /// The line printed live, and in JUnit failures.
    pub fn line(&self) -> String {
        format!(
            "LEAK {} {} {} ({}) [rule {}]",
            self.family.name(),
            self.what,
            self.detail,
            self.origin,
            self.rule
        )
    }
}

/// The sender's RSTs of one run, per family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerFamily {
    pub ipv4: u64,
    pub ipv6: u64,
}

impl PerFamily {
    pub fn get(&self, f: Family) -> u64 {
        match f {
            Family::V4 => self.ipv4,
            Family::V6 => self.ipv6,
        }
    }
}

/// The probes of one run the watch saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// Run id, 16 hex digits.
    pub run: String,
    pub key_mode: KeyMode,
    /// Distinct probes seen.
    pub distinct: u64,
    /// Leaked packets attributed to the run.
    pub packets: u64,
    /// The sender's RSTs answering the target's SYN-ACKs.
    pub resets: PerFamily,
    /// The gateway's reflections to forged sources (their probes are in `seqs`).
    #[serde(default)]
    pub reflections: PerFamily,
    /// Every probe seen, as ranges of `seq`: `0-255,1049088`.
    pub seqs: String,
}

impl RunReport {
    /// The `seq`s of [`RunReport::seqs`], ascending. `None` if malformed.
    pub fn seq_ranges(&self) -> Option<Vec<(u32, u32)>> {
        let mut v = Vec::new();
        for part in self.seqs.split(',').filter(|p| !p.is_empty()) {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                None => {
                    let x = part.parse().ok()?;
                    (x, x)
                }
            };
            if a > b {
                return None;
            }
            v.push((a, b));
        }
        Some(v)
    }
}

/// The whole report of one watch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchReport {
    pub verdict: Verdict,
    pub exit_code: u8,
    pub reasons: Vec<String>,
    pub interface: String,
    pub capture: CaptureReport,
    /// Frames per rule of the classifier's table, in table order.
    pub rules: Vec<RuleCount>,
    pub tor: TorReport,
    /// Frames per `--allow` entry (counted apart from Tor).
    pub allowed: Vec<AllowedReport>,
    pub housekeeping: HousekeepingReport,
    pub leak_packets: u64,
    pub leaks_truncated: bool,
    pub leaks: Vec<LeakReport>,
    pub groups: Vec<GroupReport>,
    pub ungrouped_leak_packets: u64,
    pub runs: Vec<RunReport>,
    /// Attributed packets of runs beyond the tracked number.
    pub untracked_run_packets: u64,
    /// Problems writing other reports (the verdict stands).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The families the workstation probed, as the operator declared them
    /// (`watch --families`); `None`: not declared. The watcher cannot know
    /// what was probed and did not leak, so a family's probe test cases in
    /// the JUnit report pass only when declared here.
    #[serde(default)]
    pub families_probed: Option<Vec<Family>>,
    /// When the watch began (Unix ns), with a timeline.
    #[serde(default)]
    pub watch_start_unix_ns: Option<u64>,
    /// The timeline's events (`--run-at`, `--event-fifo`), by start.
    #[serde(default)]
    pub events: Vec<crate::timeline::Event>,
    /// What leaked before the first event and after each, with a verdict
    /// each ([`crate::timeline`]); empty without events.
    #[serde(default)]
    pub phases: Vec<crate::timeline::Phase>,
}

impl WatchReport {
    /// Builds the report and decides the verdict.
    pub fn build(o: &WatchOutcome<'_>) -> WatchReport {
        let f = o.findings;
        let h = o.health;
        let (verdict, reasons) = Verdict::decide(f, h);
        WatchReport {
            verdict,
            exit_code: verdict.exit_code(),
            reasons,
            interface: o.iface.to_string(),
            capture: CaptureReport {
                packets: h.packets,
                dropped: h.dropped,
                canaries_sent: h.canaries_sent,
                canaries_seen: h.canaries_seen,
                kernel: o.stats,
                accounting: h.accounting,
                problems: h.problems.clone(),
                unproven: h.unproven_reasons(),
                elapsed_s: o.elapsed_s,
                interrupted: o.interrupted,
                pcap_frames: o.pcap_frames,
            },
            rules: RULES
                .iter()
                .map(|r| RuleCount {
                    rule: *r,
                    about: r.about().into(),
                    packets: f.by_rule[r.index()],
                })
                .collect(),
            tor: TorReport {
                packets: f.tor_packets,
                endpoints: f.tor_endpoints(),
                endpoints_overflow: f.tor_endpoints_overflow,
                by_role: leaktest_tor::Roles::NAMED
                    .iter()
                    .zip(f.tor_by_role)
                    .filter(|(_, n)| *n > 0)
                    .map(|((_, name), n)| (name.to_string(), n))
                    .collect(),
                allowlist: o.allowlist.clone(),
                flows: o.flows,
            },
            allowed: o
                .allow
                .iter()
                .enumerate()
                .map(|(i, e)| AllowedReport {
                    entry: e.to_string(),
                    packets: f.allowed.get(i).copied().unwrap_or(0),
                })
                .collect(),
            housekeeping: HousekeepingReport {
                packets: f.housekeeping_packets(),
                by_kind: HousekeepingKind::ALL
                    .iter()
                    .map(|k| (k.name().to_string(), f.housekeeping_of(*k)))
                    .collect(),
            },
            leak_packets: f.leak_packets,
            leaks_truncated: (f.leaks().len() as u64) < f.leak_packets,
            leaks: f.leaks().iter().map(LeakReport::of).collect(),
            groups: f.groups().iter().map(GroupReport::of).collect(),
            ungrouped_leak_packets: f.ungrouped_leaks,
            runs: f
                .runs()
                .iter()
                .map(|r| RunReport {
                    run: format!("{:016x}", r.run_id),
                    key_mode: r.mode,
                    distinct: r.distinct,
                    packets: r.packets,
                    resets: PerFamily {
                        ipv4: r.resets[0],
                        ipv6: r.resets[1],
                    },
                    reflections: PerFamily {
                        ipv4: r.reflections[0],
                        ipv6: r.reflections[1],
                    },
                    seqs: ranges_text(&r.ranges()),
                })
                .collect(),
            untracked_run_packets: f.untracked_run_packets,
            warnings: Vec::new(),
            families_probed: None,
            watch_start_unix_ns: None,
            events: Vec::new(),
            phases: Vec::new(),
        }
    }

    /// Probe leaks of one family and suite.
    pub fn probe_leaks(&self, family: Family, suite: &str) -> u64 {
        self.groups
            .iter()
            .filter(|g| {
                g.probes
                    && g.family == LeakFamily::from(family)
                    && g.suites.iter().any(|s| s == suite)
            })
            .map(|g| g.packets - g.reset_evidence)
            .sum()
    }

    /// Writes the JSON report to `w` (pretty-printed, one trailing newline).
    pub fn write_json_to(&self, mut w: impl Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut w, self).map_err(io::Error::from)?;
        w.write_all(b"\n")
    }

    /// Writes the JSON report to `path` atomically.
    pub fn write_json(&self, path: &Path) -> Result<(), ReportError> {
        leaktest_fs::write_atomic("JSON report", path, |w| self.write_json_to(w))?;
        Ok(())
    }

    /// Writes the JUnit XML report to `path` atomically.
    pub fn write_junit(&self, path: &Path) -> Result<(), ReportError> {
        let xml = junit::junit(self);
        leaktest_fs::write_atomic("JUnit report", path, |w| {
            xml.serialize(w)
                .map_err(|e| io::Error::other(e.to_string()))
        })?;
        Ok(())
    }

    /// Prints the report for people.
    pub fn print_terminal(&self, w: &mut impl Write) -> io::Result<()> {
        terminal::print(self, w)
    }
}

/// `[(0, 255), (300, 300)]` as `0-255,300`.
fn ranges_text(r: &[(u32, u32)]) -> String {
    let mut s = String::new();
    for (a, b) in r {
        if !s.is_empty() {
            s.push(',');
        }
        if a == b {
            s.push_str(&a.to_string());
        } else {
            s.push_str(&format!("{a}-{b}"));
        }
    }
    s
}

/// A cause for people (re-exported for the terminal report).
pub fn describe_cause(c: LeakCause) -> String {
    cause_text(c)
}

#[cfg(test)]
mod tests;
