//! The reports of a watch (issue 3, item 5): the terminal summary, the JSON
//! contract that scripts rely on, and JUnit XML for CI systems.
//!
//! JSON schema (stable; extra fields may be added, none removed):
//! `verdict`, `reasons`, `interface`,
//! `capture{packets,dropped,canaries_sent,canaries_seen}`,
//! `tor{packets,endpoints}`, `housekeeping{packets}`, `leak_packets`,
//! `leaks[{family, protocol, src, dst, src_port, dst_port, icmp_type,
//! tcp_flags, probe: null|{run, seq, suite, family, protocol, dst_port,
//! tcp_flags, icmp_type}}]` (one entry per leaked packet, first
//! [`MAX_LEAK_DETAILS`](crate::findings::MAX_LEAK_DETAILS)), plus `groups`.

use crate::classify::{HousekeepingKind, Leak, LeakCause, LeakFamily};
use crate::findings::{Findings, LeakGroup, LeakRecord};
use crate::verdict::{CaptureHealth, Verdict};
use leaktest_wire::{Attribution, Evidence};
use leaktest_wire::{Family, Suite};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Errors while writing a report file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot write JSON report {}: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write JUnit report {}: {source}", path.display())]
    Junit {
        path: PathBuf,
        source: quick_junit::SerializeError,
    },
    #[error("cannot write pcapng {}: {source}", path.display())]
    Pcap {
        path: PathBuf,
        source: pcap_file::PcapError,
    },
}

/// A finished watch: its findings, capture health, verdict and reasons.
#[derive(Debug)]
pub struct Report<'a> {
    iface: String,
    findings: &'a Findings,
    health: &'a CaptureHealth,
    verdict: Verdict,
    reasons: Vec<String>,
}

fn mac_string(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn family_name(f: Family) -> &'static str {
    f.name()
}

/// A leaked packet as JSON.
struct JsonLeak<'a>(&'a LeakRecord);

/// A probe as JSON.
struct JsonProbe<'a>(&'a Attribution);

impl Serialize for JsonProbe<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut m = s.serialize_map(Some(10))?;
        m.serialize_entry("run", &format!("{:016x}", p.run.run_id))?;
        m.serialize_entry("seq", &p.seq)?;
        m.serialize_entry("suite", p.spec.suite().name())?;
        m.serialize_entry("family", family_name(p.spec.family))?;
        m.serialize_entry("protocol", &p.spec.protocol())?;
        m.serialize_entry("dst_port", &p.spec.dst_port())?;
        m.serialize_entry("tcp_flags", &p.spec.tcp_flags().map(|f| f.letters()))?;
        m.serialize_entry("icmp_type", &p.spec.icmp_type())?;
        m.serialize_entry("evidence", evidence_name(p.evidence))?;
        m.serialize_entry("key_mode", &p.run.mode)?;
        m.end()
    }
}

fn evidence_name(e: Evidence) -> &'static str {
    match e {
        Evidence::Payload => "payload",
        Evidence::Header => "header",
    }
}

fn addr_or_mac(ip: Option<std::net::IpAddr>, mac: Option<[u8; 6]>) -> String {
    match (ip, mac) {
        (Some(a), _) => a.to_string(),
        (None, Some(m)) => mac_string(&m),
        (None, None) => String::new(),
    }
}

impl Serialize for JsonLeak<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let l: &Leak = &r.leak;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("family", l.family.name())?;
        m.serialize_entry("protocol", &l.protocol)?;
        m.serialize_entry("src", &addr_or_mac(l.src, l.src_mac))?;
        m.serialize_entry("dst", &addr_or_mac(l.dst, l.dst_mac))?;
        m.serialize_entry("src_port", &l.src_port)?;
        m.serialize_entry("dst_port", &l.dst_port)?;
        m.serialize_entry("icmp_type", &l.icmp_type)?;
        m.serialize_entry("tcp_flags", &l.tcp_flags.map(|f| f.letters()))?;
        m.serialize_entry("probe", &l.probe.as_ref().map(JsonProbe))?;
        // Extra fields (not part of the minimal contract).
        m.serialize_entry("cause", l.cause.name())?;
        if let LeakCause::StrictHousekeeping(k) = l.cause {
            m.serialize_entry("housekeeping", k.name())?;
        }
        m.serialize_entry("ts_sec", &r.ts_sec)?;
        m.serialize_entry("ts_nsec", &r.ts_nsec)?;
        m.serialize_entry("len", &r.len)?;
        m.serialize_entry("fragment", &l.fragment)?;
        m.serialize_entry("src_mac", &l.src_mac.as_ref().map(mac_string))?;
        m.serialize_entry("dst_mac", &l.dst_mac.as_ref().map(mac_string))?;
        m.serialize_entry("ethertype", &l.ethertype)?;
        m.end()
    }
}

struct JsonLeaks<'a>(&'a [LeakRecord]);

impl Serialize for JsonLeaks<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for r in self.0 {
            seq.serialize_element(&JsonLeak(r))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct JsonGroup {
    family: &'static str,
    what: String,
    protocol: Option<u8>,
    ethertype: Option<u16>,
    tcp_flags: Option<String>,
    packets: u64,
    dst_ports: Option<String>,
    icmp_types: Option<String>,
    protocols: String,
    suite: Option<&'static str>,
    fragments: u64,
    srcs: Vec<String>,
    dsts: Vec<String>,
    probes: bool,
    suites: Vec<&'static str>,
    runs: Vec<String>,
    housekeeping: Option<&'static str>,
    first_ts: (u64, u32),
    last_ts: (u64, u32),
}

impl JsonGroup {
    fn of(g: &LeakGroup) -> JsonGroup {
        JsonGroup {
            family: g.key.family.name(),
            what: g.what(),
            protocol: g.key.protocol,
            ethertype: g.key.ethertype,
            tcp_flags: g.key.tcp_flags.map(|f| f.letters()),
            packets: g.packets,
            dst_ports: g.dst_ports.as_ref().map(|p| p.ranges()),
            icmp_types: (!g.icmp_types.is_empty()).then(|| g.icmp_types.ranges()),
            protocols: g.protocols.ranges(),
            suite: g.key.suite.map(|s| s.name()),
            fragments: g.fragments,
            srcs: g.srcs.items.iter().map(|a| a.to_string()).collect(),
            dsts: g.dsts.items.iter().map(|a| a.to_string()).collect(),
            probes: g.key.attributed,
            suites: g.suites.iter().map(|s| s.name()).collect(),
            runs: g.runs.items.iter().map(|r| format!("{r:016x}")).collect(),
            housekeeping: g.key.housekeeping.map(|k| k.name()),
            first_ts: g.first_ts,
            last_ts: g.last_ts,
        }
    }
}

/// Groups serialized one at a time (a group's port ranges can be long).
struct JsonGroups<'a>(&'a [LeakGroup]);

impl Serialize for JsonGroups<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for g in self.0 {
            seq.serialize_element(&JsonGroup::of(g))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct JsonCapture<'a> {
    packets: u64,
    dropped: u64,
    canaries_sent: u64,
    canaries_seen: u64,
    problems: &'a [String],
}

#[derive(Serialize)]
struct JsonTor {
    packets: u64,
    endpoints: usize,
}

#[derive(Serialize)]
struct JsonHousekeeping {
    packets: u64,
    by_kind: BTreeMap<&'static str, u64>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    verdict: &'static str,
    exit_code: u8,
    reasons: &'a [String],
    interface: &'a str,
    capture: JsonCapture<'a>,
    tor: JsonTor,
    housekeeping: JsonHousekeeping,
    leak_packets: u64,
    leaks_truncated: bool,
    leaks: JsonLeaks<'a>,
    groups: JsonGroups<'a>,
    ungrouped_leak_packets: u64,
}

/// Where a report goes: a file, or standard output for the path `-`.
enum Out {
    File(BufWriter<File>),
    Stdout(io::Stdout),
}

impl Write for Out {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Out::File(f) => f.write(b),
            Out::Stdout(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::File(f) => f.flush(),
            Out::Stdout(s) => s.flush(),
        }
    }
}

fn create(path: &Path) -> Result<Out, ReportError> {
    if path.as_os_str() == "-" {
        return Ok(Out::Stdout(io::stdout()));
    }
    File::create(path)
        .map(|f| Out::File(BufWriter::with_capacity(1 << 16, f)))
        .map_err(|source| ReportError::Io {
            path: path.to_owned(),
            source,
        })
}

/// Flushes the report and, for a regular file, syncs it to disk (so a
/// report that was said to be written survives a crash right after).
fn finish(mut w: Out, path: &Path) -> Result<(), ReportError> {
    let io_err = |source| ReportError::Io {
        path: path.to_owned(),
        source,
    };
    w.flush().map_err(io_err)?;
    if let Out::File(f) = &w {
        let file = f.get_ref();
        if file.metadata().map(|m| m.is_file()).unwrap_or(false) {
            file.sync_all().map_err(io_err)?;
        }
    }
    Ok(())
}

impl<'a> Report<'a> {
    pub fn new(iface: &str, findings: &'a Findings, health: &'a CaptureHealth) -> Report<'a> {
        let (verdict, reasons) = Verdict::decide(findings, health);
        Report {
            iface: iface.to_owned(),
            findings,
            health,
            verdict,
            reasons,
        }
    }

    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Why the verdict is what it is, as sentences.
    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }

    fn json(&self) -> JsonReport<'_> {
        let f = self.findings;
        let h = self.health;
        JsonReport {
            verdict: self.verdict.name(),
            exit_code: self.verdict.exit_code(),
            reasons: &self.reasons,
            interface: &self.iface,
            capture: JsonCapture {
                packets: h.packets,
                dropped: h.dropped,
                canaries_sent: h.canaries_sent,
                canaries_seen: h.canaries_seen,
                problems: &h.problems,
            },
            tor: JsonTor {
                packets: f.tor_packets,
                endpoints: f.tor_endpoints(),
            },
            housekeeping: JsonHousekeeping {
                packets: f.housekeeping_packets(),
                by_kind: HousekeepingKind::ALL
                    .iter()
                    .map(|k| (k.name(), f.housekeeping_of(*k)))
                    .collect(),
            },
            leak_packets: f.leak_packets,
            leaks_truncated: (f.leaks().len() as u64) < f.leak_packets,
            leaks: JsonLeaks(f.leaks()),
            groups: JsonGroups(f.groups()),
            ungrouped_leak_packets: f.ungrouped_leaks,
        }
    }

    /// Writes the JSON report to `w` (pretty-printed, one trailing newline).
    pub fn write_json_to<W: Write>(&self, mut w: W) -> Result<(), serde_json::Error> {
        serde_json::to_writer_pretty(&mut w, &self.json())?;
        w.write_all(b"\n").map_err(serde_json::Error::io)
    }

    /// Writes the JSON report to `path` (`-`: standard output).
    pub fn write_json(&self, path: impl AsRef<Path>) -> Result<(), ReportError> {
        let path = path.as_ref();
        let mut w = create(path)?;
        self.write_json_to(&mut w)
            .map_err(|source| ReportError::Json {
                path: path.to_owned(),
                source,
            })?;
        finish(w, path)
    }

    /// The JUnit report: one test case per probe family and suite (failed
    /// where a probe of it leaked), one per family for traffic that is not a
    /// probe, and one for the capture's health.
    pub fn junit(&self) -> quick_junit::Report {
        use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
        let f = self.findings;
        let mut suite = TestSuite::new(format!("leaktest watch {}", self.iface));
        suite.add_property(("interface", self.iface.as_str()));
        suite.add_property(("verdict", self.verdict.name()));
        let failed = |message: String, detail: String| {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
            st.set_message(message).set_type("leak");
            if !detail.is_empty() {
                st.set_description(detail);
            }
            st
        };
        for (fi, family) in Family::BOTH.into_iter().enumerate() {
            for (si, s) in Suite::ALL.into_iter().enumerate() {
                let n = f.probe_leaks[fi][si];
                let status = if n == 0 {
                    TestCaseStatus::success()
                } else {
                    let detail = self.group_lines(|g| {
                        g.key.attributed
                            && g.key.family == LeakFamily::from(family)
                            && g.suites.contains(&s)
                    });
                    failed(
                        format!("{n} {family} {s} probe packet{} leaked", plural(n)),
                        detail,
                    )
                };
                let mut tc = TestCase::new(format!("{family} {s}"), status);
                tc.set_classname(format!("leaktest.probes.{family}"));
                suite.add_test_case(tc);
            }
        }
        for fam in [LeakFamily::Ipv4, LeakFamily::Ipv6, LeakFamily::Other] {
            let n = f.unattributed_leaks[fam as usize];
            let status = if n == 0 {
                TestCaseStatus::success()
            } else {
                let detail = self.group_lines(|g| !g.key.attributed && g.key.family == fam);
                failed(
                    format!(
                        "{n} {} packet{} that {} not probes leaked",
                        fam.name(),
                        plural(n),
                        if n == 1 { "was" } else { "were" }
                    ),
                    detail,
                )
            };
            let mut tc = TestCase::new(format!("{} other traffic", fam.name()), status);
            tc.set_classname("leaktest.traffic");
            suite.add_test_case(tc);
        }
        let unproven = self.health.unproven_reasons();
        let status = if unproven.is_empty() {
            TestCaseStatus::success()
        } else {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
            st.set_message("the capture was not proven complete")
                .set_type("inconclusive")
                .set_description(unproven.join("\n"));
            st
        };
        let mut tc = TestCase::new("capture health", status);
        tc.set_classname("leaktest.capture");
        tc.set_system_out(format!(
            "packets {}, dropped {}, canaries {}/{} seen",
            self.health.packets,
            self.health.dropped,
            self.health.canaries_seen,
            self.health.canaries_sent
        ));
        suite.add_test_case(tc);
        let mut report = quick_junit::Report::new("leaktest");
        report.add_test_suite(suite);
        report
    }

    fn group_lines(&self, pick: impl Fn(&LeakGroup) -> bool) -> String {
        let mut s = String::new();
        for g in self.findings.groups().iter().filter(|g| pick(g)) {
            s.push_str(&g.live_line());
            s.push_str(&format!(" [{} packets]\n", g.packets));
        }
        s
    }

    /// Writes the JUnit XML report to `path` (`-`: standard output).
    pub fn write_junit(&self, path: impl AsRef<Path>) -> Result<(), ReportError> {
        let path = path.as_ref();
        let mut w = create(path)?;
        self.junit()
            .serialize(&mut w)
            .map_err(|source| ReportError::Junit {
                path: path.to_owned(),
                source,
            })?;
        finish(w, path)
    }

    /// Prints the final report for people: capture health, Tor and
    /// housekeeping counts, leaks grouped, the verdict and why.
    pub fn print_terminal(&self, w: &mut impl Write) -> io::Result<()> {
        let f = self.findings;
        let h = self.health;
        writeln!(w, "leaktest watch on {}", self.iface)?;
        let mut rows: Vec<(&str, String)> = vec![
            (
                "capture",
                format!(
                    "{} packet{}, {} dropped by the kernel, {}/{} canaries seen",
                    thousands(h.packets),
                    plural(h.packets),
                    thousands(h.dropped),
                    h.canaries_seen,
                    h.canaries_sent
                ),
            ),
            (
                "tor",
                format!(
                    "{} packet{} to {} endpoint{}{}",
                    thousands(f.tor_packets),
                    plural(f.tor_packets),
                    f.tor_endpoints(),
                    plural(f.tor_endpoints() as u64),
                    if f.tor_endpoints_overflow {
                        " (or more)"
                    } else {
                        ""
                    }
                ),
            ),
        ];
        let kinds: Vec<String> = HousekeepingKind::ALL
            .iter()
            .filter(|k| f.housekeeping_of(**k) > 0)
            .map(|k| format!("{} {}", k.name(), f.housekeeping_of(*k)))
            .collect();
        rows.push(("housekeeping", {
            let n = f.housekeeping_packets();
            if kinds.is_empty() {
                format!("{n} packet{}", plural(n))
            } else {
                format!("{n} packet{} ({})", plural(n), kinds.join(", "))
            }
        }));
        rows.push((
            "leaks",
            format!(
                "{} packet{} in {} group{}",
                thousands(f.leak_packets),
                plural(f.leak_packets),
                f.groups().len(),
                plural(f.groups().len() as u64)
            ),
        ));
        let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        for (k, v) in &rows {
            writeln!(w, "  {k:<width$}  {v}")?;
        }
        if !f.groups().is_empty() {
            writeln!(w)?;
            let table: Vec<[String; 5]> = f
                .groups()
                .iter()
                .map(|g| {
                    [
                        g.key.family.name().to_string(),
                        g.what(),
                        thousands(g.packets),
                        clip(&g.detail(), 72),
                        g.origin(),
                    ]
                })
                .collect();
            let head = ["family", "what", "packets", "where", "origin"];
            let mut wd = head.map(|h| h.len());
            for row in &table {
                for (i, c) in row.iter().enumerate() {
                    wd[i] = wd[i].max(c.chars().count());
                }
            }
            let line = |w: &mut dyn Write, r: [&str; 5]| -> io::Result<()> {
                writeln!(
                    w,
                    "    {:<a$}  {:<b$}  {:>c$}  {:<d$}  {}",
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    a = wd[0],
                    b = wd[1],
                    c = wd[2],
                    d = wd[3]
                )
            };
            line(w, head)?;
            for row in &table {
                line(w, [&row[0], &row[1], &row[2], &row[3], &row[4]])?;
            }
            if f.ungrouped_leaks > 0 {
                writeln!(
                    w,
                    "    … and {} packets in further groups",
                    f.ungrouped_leaks
                )?;
            }
        }
        writeln!(w)?;
        writeln!(
            w,
            "verdict: {} (exit {})",
            self.verdict,
            self.verdict.exit_code()
        )?;
        for r in &self.reasons {
            writeln!(w, "  - {r}")?;
        }
        Ok(())
    }
}

/// `1234567` as `1,234,567`, for people.
fn thousands(n: u64) -> String {
    let d = n.to_string();
    let mut s = String::with_capacity(d.len() + d.len() / 3);
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i) % 3 == 0 {
            s.push(',');
        }
        s.push(c);
    }
    s
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Cuts `s` to at most `max` characters, marking the cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Class, Classifier, ClassifierConfig};
    use crate::testutil::*;
    use leaktest_capture::Frame;
    use leaktest_wire::catalogue::ProbeKind;
    use leaktest_wire::LinkType;
    use leaktest_wire::{MarkerKeys, ProbeSpec, RunKey, TcpFlags};
    use serde_json::Value;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    fn healthy() -> CaptureHealth {
        CaptureHealth {
            packets: 0,
            dropped: 0,
            canaries_sent: 4,
            canaries_seen: 4,
            problems: vec![],
        }
    }

    /// A watch that saw Tor, housekeeping, a canary, TCP and ICMPv6 probe
    /// leaks and one unexpected IPv6 UDP packet.
    fn leaky() -> (Findings, CaptureHealth) {
        let mut c = Classifier::new(
            ClassifierConfig {
                strict: false,
                own_macs: vec![GW_MAC],
                own_addrs: vec![IpAddr::V4(GW4), IpAddr::V6(GW6)],
            },
            MarkerKeys::open(),
        );
        let tor = vec![SocketAddr::new(IpAddr::V4(NET4), 9001)];
        let key = RunKey::open(0x1122334455667788);
        let mut frames = vec![
            eth4(GW4, NET4, 6, &tcp(40000, 9001, 0x18, b"tls")),
            arp(GW_MAC, 1, GW_MAC, GW4, NET4),
            leaktest_capture::Canary::with_key(GW_MAC, [3; 16], 1)
                .frame(0)
                .to_vec(),
            eth6(GW6, NET6, 17, &udp(5000, 443, b"x")),
        ];
        for port in [21u16, 22, 23, 25, 80] {
            let spec = ProbeSpec {
                family: leaktest_wire::Family::V4,
                kind: ProbeKind::Tcp {
                    flags: TcpFlags(TcpFlags::SYN),
                    dst_port: port,
                },
            };
            frames.push(eth4(
                WS4,
                NET4,
                6,
                &tcp(40000, port, TcpFlags::SYN, &key.payload_marker(spec.seq())),
            ));
        }
        let icmp6 = ProbeSpec {
            family: leaktest_wire::Family::V6,
            kind: ProbeKind::Icmp { icmp_type: 128 },
        };
        frames.push(eth6(
            GW6,
            NET6,
            58,
            &icmp(
                128,
                0,
                &[&[0, 1, 0, 1][..], &key.payload_marker(icmp6.seq())].concat(),
            ),
        ));
        let mut f = Findings::new();
        for (i, d) in frames.iter().enumerate() {
            let class = c.classify(d, LinkType::Ethernet, &tor);
            f.record(
                &Frame {
                    ts_sec: 1_700_000_000 + i as u64,
                    ts_nsec: 1,
                    data: d,
                    orig_len: d.len() as u32,
                },
                &class,
            );
        }
        let health = CaptureHealth {
            packets: frames.len() as u64,
            ..healthy()
        };
        (f, health)
    }

    fn json_of(r: &Report<'_>) -> Value {
        let mut buf = Vec::new();
        r.write_json_to(&mut buf).unwrap();
        serde_json::from_slice(&buf).unwrap()
    }

    fn is_u64(v: &Value) -> bool {
        v.as_u64().is_some()
    }

    fn check_schema(v: &Value) {
        let o = v.as_object().unwrap();
        assert!(["pass", "leak", "inconclusive"].contains(&o["verdict"].as_str().unwrap()));
        assert!(o["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.is_string()));
        assert!(o["interface"].is_string());
        for k in ["packets", "dropped", "canaries_sent", "canaries_seen"] {
            assert!(is_u64(&o["capture"][k]), "capture.{k}");
        }
        assert!(is_u64(&o["tor"]["packets"]) && is_u64(&o["tor"]["endpoints"]));
        assert!(is_u64(&o["housekeeping"]["packets"]));
        assert!(is_u64(&o["leak_packets"]));
        let opt_u = |x: &Value, max: u64| x.is_null() || x.as_u64().is_some_and(|n| n <= max);
        let flags = |x: &Value| {
            x.is_null()
                || x.as_str()
                    .is_some_and(|s| s.chars().all(|c| "FSRPAUEC".contains(c)))
        };
        for l in o["leaks"].as_array().unwrap() {
            assert!(["ipv4", "ipv6", "other"].contains(&l["family"].as_str().unwrap()));
            assert!(opt_u(&l["protocol"], 255));
            assert!(l["src"].is_string() && l["dst"].is_string());
            assert!(opt_u(&l["src_port"], 65535) && opt_u(&l["dst_port"], 65535));
            assert!(opt_u(&l["icmp_type"], 255));
            assert!(flags(&l["tcp_flags"]));
            let p = &l["probe"];
            if !p.is_null() {
                let run = p["run"].as_str().unwrap();
                assert!(run.len() == 16 && run.chars().all(|c| c.is_ascii_hexdigit()));
                assert!(is_u64(&p["seq"]));
                assert!(
                    ["icmp", "ip", "tcp", "udp", "frag"].contains(&p["suite"].as_str().unwrap())
                );
                assert!(["ipv4", "ipv6"].contains(&p["family"].as_str().unwrap()));
                assert!(opt_u(&p["protocol"], 255) && !p["protocol"].is_null());
                assert!(opt_u(&p["dst_port"], 65535));
                assert!(flags(&p["tcp_flags"]));
                assert!(opt_u(&p["icmp_type"], 255));
            }
        }
    }

    #[test]
    fn json_report_of_a_leak() {
        let (f, h) = leaky();
        let r = Report::new("ext0", &f, &h);
        assert_eq!(r.verdict(), Verdict::Leak);
        let v = json_of(&r);
        check_schema(&v);
        assert_eq!(v["verdict"], "leak");
        assert_eq!(v["interface"], "ext0");
        assert_eq!(v["capture"]["packets"], 10);
        assert_eq!(v["capture"]["canaries_seen"], 4);
        assert_eq!(
            (v["tor"]["packets"].as_u64(), v["tor"]["endpoints"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(v["housekeeping"]["packets"], 1);
        assert_eq!(v["housekeeping"]["by_kind"]["arp"], 1);
        assert_eq!(v["leak_packets"], 7);
        let leaks = v["leaks"].as_array().unwrap();
        assert_eq!(leaks.len(), 7);
        let u = &leaks[0];
        assert_eq!(u["family"], "ipv6");
        assert_eq!(u["protocol"], 17);
        assert_eq!(u["src"], GW6.to_string());
        assert_eq!(u["dst_port"], 443);
        assert_eq!(u["tcp_flags"], Value::Null);
        assert_eq!(u["probe"], Value::Null);
        let t = &leaks[1];
        assert_eq!(
            (t["family"].as_str(), t["protocol"].as_u64()),
            (Some("ipv4"), Some(6))
        );
        assert_eq!(
            (t["dst_port"].as_u64(), t["tcp_flags"].as_str()),
            (Some(21), Some("S"))
        );
        assert_eq!(t["src"], WS4.to_string());
        assert_eq!(t["probe"]["run"], "1122334455667788");
        assert_eq!(t["probe"]["suite"], "tcp");
        assert_eq!(t["probe"]["family"], "ipv4");
        assert_eq!(t["probe"]["protocol"], 6);
        assert_eq!(t["probe"]["dst_port"], 21);
        assert_eq!(t["probe"]["tcp_flags"], "S");
        assert_eq!(t["probe"]["icmp_type"], Value::Null);
        assert_eq!(t["probe"]["evidence"], "payload");
        let i = &leaks[6];
        assert_eq!(
            (i["protocol"].as_u64(), i["icmp_type"].as_u64()),
            (Some(58), Some(128))
        );
        assert_eq!(i["probe"]["suite"], "icmp");
        assert_eq!(i["probe"]["family"], "ipv6");
        assert_eq!(i["probe"]["icmp_type"], 128);
        assert_eq!(i["probe"]["dst_port"], Value::Null);
        let groups = v["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[1]["dst_ports"], "21-23,25,80");
        assert_eq!(groups[1]["packets"], 5);
    }

    #[test]
    fn json_report_of_a_pass_and_an_inconclusive_watch() {
        let mut f = Findings::new();
        let ep = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)), 443);
        let d = [0u8; 60];
        let fr = Frame {
            ts_sec: 1,
            ts_nsec: 0,
            data: &d,
            orig_len: 60,
        };
        f.record(&fr, &Class::Tor(ep));
        let h = CaptureHealth {
            packets: 5,
            ..healthy()
        };
        let v = json_of(&Report::new("ext0", &f, &h));
        check_schema(&v);
        assert_eq!(v["verdict"], "pass");
        assert_eq!(v["leaks"], Value::Array(vec![]));
        let h = CaptureHealth { dropped: 9, ..h };
        let v = json_of(&Report::new("ext0", &f, &h));
        check_schema(&v);
        assert_eq!(v["verdict"], "inconclusive");
        assert!(v["reasons"][0]
            .as_str()
            .unwrap()
            .contains("dropped 9 packets"));
    }

    #[test]
    fn write_json_creates_the_file() {
        let (f, h) = leaky();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        Report::new("ext0", &f, &h).write_json(&p).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        check_schema(&v);
        let err = Report::new("ext0", &f, &h)
            .write_json(dir.path().join("missing/r.json"))
            .unwrap_err();
        assert!(err.to_string().starts_with("cannot write "), "{err}");
    }

    #[test]
    fn junit_read_back_by_an_xml_reader() {
        let (f, h) = leaky();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("junit.xml");
        Report::new("ext0", &f, &h).write_junit(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap();
        let cases: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        // 2 families x 5 suites, 3 "other traffic" cases, capture health.
        assert_eq!(cases.len(), 14);
        let failed: Vec<String> = cases
            .iter()
            .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
            .map(|c| c.attribute("name").unwrap().to_string())
            .collect();
        assert_eq!(failed, vec!["ipv4 tcp", "ipv6 icmp", "ipv6 other traffic"]);
        let tcp = cases
            .iter()
            .find(|c| c.attribute("name") == Some("ipv4 tcp"))
            .unwrap();
        assert_eq!(tcp.attribute("classname"), Some("leaktest.probes.ipv4"));
        let failure = tcp.children().find(|n| n.has_tag_name("failure")).unwrap();
        assert_eq!(
            failure.attribute("message"),
            Some("5 ipv4 tcp probe packets leaked")
        );
        assert!(failure
            .text()
            .unwrap_or("")
            .contains("dst ports 21-23,25,80"));
        let suite = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite"))
            .unwrap();
        assert_eq!(suite.attribute("tests"), Some("14"));
        assert_eq!(suite.attribute("failures"), Some("3"));

        // An inconclusive watch fails only the capture-health case.
        let clean = Findings::new();
        let h = CaptureHealth {
            canaries_seen: 1,
            ..healthy()
        };
        let xml = Report::new("ext0", &clean, &h).junit().to_string().unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let failed: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
            .map(|c| c.attribute("name").unwrap())
            .collect();
        assert_eq!(failed, vec!["capture health"]);
    }

    #[test]
    fn thousands_separators() {
        let t: Vec<String> = [0, 7, 999, 1000, 65535, 1_000_000, u64::MAX]
            .into_iter()
            .map(thousands)
            .collect();
        assert_eq!(
            t,
            [
                "0",
                "7",
                "999",
                "1,000",
                "65,535",
                "1,000,000",
                "18,446,744,073,709,551,615"
            ]
        );
    }

    #[test]
    fn terminal_report_is_grouped_and_aligned() {
        let (f, h) = leaky();
        let mut out = Vec::new();
        Report::new("ext0", &f, &h)
            .print_terminal(&mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("leaktest watch on ext0\n"), "{text}");
        assert!(
            text.contains("  tor           1 packet to 1 endpoint\n"),
            "{text}"
        );
        assert!(
            text.contains("  housekeeping  1 packet (arp 1)\n"),
            "{text}"
        );
        assert!(text.contains("verdict: LEAK (exit 1)\n"), "{text}");
        assert!(
            text.contains(
                "  - 6 of them carried the marker of a leaktest probe (ipv4 tcp 5, ipv6 icmp 1)\n"
            ),
            "{text}"
        );
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("family"))
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(table.len(), 4, "{text}");
        // Columns line up: "packets" is right-aligned under its header.
        let col = table[0].find("packets").unwrap() + "packets".len();
        for row in &table[1..] {
            assert_eq!(row.as_bytes()[col], b' ', "{text}");
            assert!(row.as_bytes()[col - 1].is_ascii_digit(), "{text}");
        }
        assert!(table[2].contains("tcp [S]") && table[2].contains("dst ports 21-23,25,80"));
        assert!(table[2].contains("probes tcp, run 1122334455667788"));
        println!("{text}");
    }
}
