//! What a profile must produce, probe by probe, and the comparison with the
//! watcher's typed report ([`WatchReport`]).
//!
//! The expectation comes from the gateway model ([`Policy::fate`]) applied to
//! every probe of the catalogue, per sweep: the probes that must leak, the
//! few whose fate depends on bytes the lab does not control ([`Fate::Either`]),
//! and the sender's RSTs answering the target's SYN-ACKs. The watcher reports
//! every probe it saw, per run ([`leaktest_watch::report::RunReport`]), so
//! the comparison is exact: no probe that must leak may be missing, no
//! probe that must not leak may appear, no leaked packet may be without a
//! probe, and the RSTs are counted exactly. A probe that must leak and was
//! not seen is sent again once (the caller does that with
//! [`Comparison::missing`]); then every one must be there.

use crate::profiles::{sweep_suites, Fate, Policy, Sweep};
use leaktest_watch::report::RunReport;
use leaktest_watch::{Verdict, WatchReport};
use leaktest_wire::catalogue::{Family, ProbeKind, ProbeSpec, Suite, TcpFlags, SEQ_FAMILY_BIT};
use std::collections::BTreeMap;

/// A set of probe `seq`s (21 bits: family and catalogue index), as a bitmap.
#[derive(Clone, PartialEq, Eq)]
pub struct SeqSet {
    bits: Vec<u64>,
    len: u64,
}

impl Default for SeqSet {
    fn default() -> Self {
        SeqSet {
            bits: vec![0; (2 * SEQ_FAMILY_BIT as usize) / 64],
            len: 0,
        }
    }
}

impl std::fmt::Debug for SeqSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeqSet({} probes)", self.len)
    }
}

impl SeqSet {
    pub fn insert(&mut self, seq: u32) {
        let (w, b) = (seq as usize / 64, seq % 64);
        if let Some(word) = self.bits.get_mut(w) {
            if *word & (1 << b) == 0 {
                *word |= 1 << b;
                self.len += 1;
            }
        }
    }

    pub fn contains(&self, seq: u32) -> bool {
        self.bits
            .get(seq as usize / 64)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// From inclusive ranges (a watcher's `runs[].seqs`).
    pub fn from_ranges(r: &[(u32, u32)]) -> SeqSet {
        let mut s = SeqSet::default();
        for &(a, b) in r {
            for q in a..=b.min(2 * SEQ_FAMILY_BIT - 1) {
                s.insert(q);
            }
        }
        s
    }

    /// `self` and `other` together.
    pub fn union(&mut self, other: &SeqSet) {
        for (w, o) in self.bits.iter_mut().zip(&other.bits) {
            *w |= o;
        }
        self.len = self.bits.iter().map(|w| u64::from(w.count_ones())).sum();
    }

    /// The probes of `self` not in any of `minus`.
    pub fn without(&self, minus: &[&SeqSet]) -> SeqSet {
        let mut out = SeqSet::default();
        for (i, w) in self.bits.iter().enumerate() {
            let mut v = *w;
            for m in minus {
                v &= !m.bits[i];
            }
            out.bits[i] = v;
        }
        out.len = out.bits.iter().map(|w| u64::from(w.count_ones())).sum();
        out
    }

    /// Maximal inclusive ranges, ascending.
    pub fn ranges(&self) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut start: Option<u32> = None;
        for (wi, &w) in self.bits.iter().enumerate() {
            if (w == 0 && start.is_none()) || (w == u64::MAX && start.is_some()) {
                continue;
            }
            for b in 0..64u32 {
                let q = wi as u32 * 64 + b;
                match (w & (1 << b) != 0, start) {
                    (true, None) => start = Some(q),
                    (false, Some(s)) => {
                        out.push((s, q - 1));
                        start = None;
                    }
                    _ => {}
                }
            }
        }
        if let Some(s) = start {
            out.push((s, 2 * SEQ_FAMILY_BIT - 1));
        }
        out
    }

    /// The first probe, for messages.
    pub fn first(&self) -> Option<ProbeSpec> {
        self.ranges()
            .first()
            .and_then(|(a, _)| ProbeSpec::from_seq(*a))
    }

    /// Probes per (family, suite), for messages.
    pub fn per_suite(&self) -> BTreeMap<(Family, Suite), u64> {
        let mut m = BTreeMap::new();
        for (a, b) in self.ranges() {
            for q in a..=b {
                if let Some(s) = ProbeSpec::from_seq(q) {
                    *m.entry((s.family, s.suite())).or_default() += 1;
                }
            }
        }
        m
    }
}

/// A range of counts: `min` certain, up to `max` possible.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Range {
    pub min: u64,
    pub max: u64,
}

impl Range {
    fn add(&mut self, f: Fate) {
        match f {
            Fate::Leaks => {
                self.min += 1;
                self.max += 1;
            }
            Fate::Either => self.max += 1,
            Fate::Stopped => {}
        }
    }
    pub fn contains(&self, n: u64) -> bool {
        (self.min..=self.max).contains(&n)
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..={}", self.min, self.max)
        }
    }
}

/// What one sweep must produce.
#[derive(Clone, Debug, Default)]
pub struct SweepModel {
    /// Probes that must leak.
    pub certain: SeqSet,
    /// Probes that may leak (the model cannot tell).
    pub possible: SeqSet,
    /// The sender's RSTs to the target's SYN-ACK, per family (IPv4, IPv6):
    /// one when the SYN probe to the target's open port 80 leaks and the
    /// SYN-ACK can find its way back ([`Policy::replies_reach_sender`]).
    pub resets: [Range; 2],
    /// Reflections, per family: the gateway's answers to the spoof suite's
    /// redirected SYNs and DNS queries, out of its uplink to forged sources
    /// (one RST each while the gateway's tor has no listener, as in the
    /// broken profiles; with a listener TransPort's SYN-ACKs and DNSPort's
    /// answers).
    pub reflections: [Range; 2],
    /// The probes whose leak is a reflection: what leaves goes to their
    /// forged source, not to the target (`allowing` judges that address).
    pub reflected: SeqSet,
}

/// The expected outcome of one profile.
#[derive(Clone, Debug, Default)]
pub struct Expectation {
    pub sweeps: BTreeMap<Sweep, SweepModel>,
    /// Leaked probes per (sweep, family, suite), for people.
    pub per_suite: BTreeMap<(Sweep, Family, Suite), Range>,
}

/// Whether a probe that reaches the lab web server is answered with a
/// SYN-ACK, which the sender's kernel (no such connection) answers with a
/// RST: a segment to its open port with SYN and none of ACK, RST, FIN (a
/// listener accepts URG, PSH, ECE and CWR along: RFC 9293 section 3.10.7.2).
pub fn opens_web_connection(spec: &ProbeSpec) -> bool {
    spec.protocol() == 6
        && spec.dst_port() == Some(crate::plan::WEB_PORT)
        && spec.tcp_flags().is_some_and(|f| {
            f.0 & (TcpFlags::SYN | TcpFlags::ACK | TcpFlags::RST | TcpFlags::FIN) == TcpFlags::SYN
        })
        && spec.transport().is_none()
        && !matches!(spec.kind, ProbeKind::Frag { .. })
}

impl Expectation {
    /// Runs the model over the whole catalogue for every sweep.
    pub fn of(policy: &Policy) -> Expectation {
        let mut e = Expectation::default();
        for sweep in Sweep::ALL {
            let mut m = SweepModel::default();
            for (fi, family) in Family::BOTH.into_iter().enumerate() {
                let answers = policy.replies_reach_sender(sweep, family)
                    && policy.senders_rst_leaves(sweep, family);
                for &suite in sweep_suites(sweep) {
                    let mut r = Range::default();
                    for spec in ProbeSpec::all(family, suite) {
                        let f = policy.fate(sweep, &spec);
                        r.add(f);
                        match f {
                            Fate::Leaks => m.certain.insert(spec.seq()),
                            Fate::Either => m.possible.insert(spec.seq()),
                            Fate::Stopped => {}
                        }
                        if answers && opens_web_connection(&spec) {
                            m.resets[fi].add(f);
                        }
                        match policy.reflects(sweep, &spec) {
                            Fate::Stopped => {}
                            f => {
                                m.reflections[fi].add(f);
                                m.reflected.insert(spec.seq());
                            }
                        }
                    }
                    if r.max > 0 {
                        e.per_suite.insert((sweep, family, suite), r);
                    }
                }
            }
            e.sweeps.insert(sweep, m);
        }
        e
    }

    /// The same expectation with every probe whose destination lies in one
    /// of `nets` taken out (`--allow-net`: the watcher counts those apart,
    /// never as leaks). A probe's destination is the lab's target, or for
    /// the `lan` suite its own destination as its sweep addresses it
    /// ([`crate::plan::sweep_destination`]).
    pub fn allowing(mut self, nets: &[ipnet::IpNet]) -> Expectation {
        if nets.is_empty() {
            return self;
        }
        for (sweep, m) in self.sweeps.iter_mut() {
            let reflected = m.reflected.clone();
            let allowed = |seq: u32| {
                let to = ProbeSpec::from_seq(seq).and_then(|s| {
                    if reflected.contains(seq) {
                        crate::plan::forged_source(&s)
                    } else {
                        crate::plan::sweep_destination(*sweep, &s)
                    }
                });
                to.is_some_and(|d| nets.iter().any(|n| n.contains(&d)))
            };
            // Allowed reflections leave the expected count as well.
            for (q, certain) in reflected
                .ranges()
                .iter()
                .flat_map(|&(a, b)| a..=b)
                .filter(|&q| allowed(q))
                .map(|q| (q, m.certain.contains(q)))
                .collect::<Vec<_>>()
            {
                let fi = usize::from(q & leaktest_wire::catalogue::SEQ_FAMILY_BIT != 0);
                let r = &mut m.reflections[fi];
                r.max = r.max.saturating_sub(1);
                if certain {
                    r.min = r.min.saturating_sub(1);
                }
            }
            for set in [&mut m.certain, &mut m.possible] {
                let out: Vec<(u32, u32)> = set
                    .ranges()
                    .iter()
                    .flat_map(|&(a, b)| a..=b)
                    .filter(|&q| allowed(q))
                    .map(|q| (q, q))
                    .collect();
                if !out.is_empty() {
                    *set = set.without(&[&SeqSet::from_ranges(&out)]);
                }
            }
        }
        // The table for people, from what is left.
        self.per_suite.clear();
        for (sweep, m) in &self.sweeps {
            let certain = m.certain.per_suite();
            let possible = m.possible.per_suite();
            for key in certain.keys().chain(possible.keys()) {
                let min = certain.get(key).copied().unwrap_or(0);
                let max = min + possible.get(key).copied().unwrap_or(0);
                self.per_suite
                    .insert((*sweep, key.0, key.1), Range { min, max });
            }
        }
        self
    }

    /// The same expectation for the sweeps that run only.
    pub fn only(mut self, sweeps: &[Sweep]) -> Expectation {
        self.sweeps.retain(|s, _| sweeps.contains(s));
        self.per_suite.retain(|(s, _, _), _| sweeps.contains(s));
        self
    }

    /// Nothing may leak: the gateway is correct.
    pub fn nothing() -> Expectation {
        Expectation {
            sweeps: Sweep::ALL
                .into_iter()
                .map(|s| (s, SweepModel::default()))
                .collect(),
            per_suite: BTreeMap::new(),
        }
    }

    pub fn verdict(&self) -> Verdict {
        if self.sweeps.values().any(|m| !m.certain.is_empty()) {
            Verdict::Leak
        } else {
            Verdict::Pass
        }
    }

    /// One line per (sweep, family) for people: `ws ipv4: tcp 262144, udp 65535`.
    pub fn summary(&self) -> Vec<String> {
        let mut lines: BTreeMap<(Sweep, Family), Vec<String>> = BTreeMap::new();
        for ((s, f, suite), r) in &self.per_suite {
            lines
                .entry((*s, *f))
                .or_default()
                .push(format!("{suite} {r}"));
        }
        lines
            .into_iter()
            .map(|((s, f), v)| format!("{} {f}: {}", s.name(), v.join(", ")))
            .collect()
    }
}

/// What the watcher saw of one sweep, from one or more watch reports.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub seen: SeqSet,
    pub resets: [u64; 2],
    pub reflections: [u64; 2],
}

impl Observed {
    fn add(&mut self, r: &RunReport) -> Result<(), String> {
        let ranges = r
            .seq_ranges()
            .ok_or_else(|| format!("run {}: unreadable seq ranges", r.run))?;
        self.seen.union(&SeqSet::from_ranges(&ranges));
        self.resets[0] += r.resets.ipv4;
        self.resets[1] += r.resets.ipv6;
        self.reflections[0] += r.reflections.ipv4;
        self.reflections[1] += r.reflections.ipv6;
        Ok(())
    }
}

/// What was found wrong when comparing reports with the expectation.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Comparison {
    pub verdict: Option<Verdict>,
    pub mismatches: Vec<String>,
    /// Observed leaks, grouped for the table.
    pub findings: Vec<String>,
    /// Probes that must leak and were not seen, per sweep (to send again).
    #[serde(skip)]
    pub missing: BTreeMap<Sweep, SeqSet>,
    /// What was seen per sweep (all reports together).
    #[serde(skip)]
    pub observed: BTreeMap<Sweep, Observed>,
}

impl Comparison {
    /// Whether everything matched, missing probes included.
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty() && self.missing.values().all(SeqSet::is_empty)
    }

    /// Missing probes as mismatches (after the one resend).
    pub fn missing_as_mismatches(&mut self) {
        for (sweep, m) in &self.missing {
            if m.is_empty() {
                continue;
            }
            let per: Vec<String> = m
                .per_suite()
                .iter()
                .map(|((f, s), n)| format!("{f} {s} {n}"))
                .collect();
            self.mismatches.push(format!(
                "{}: {} probes that must leak were not seen, even when sent again ({}); first {:?}",
                sweep.name(),
                m.len(),
                per.join(", "),
                m.first()
            ));
        }
    }
}

/// The verdict of several watches of one target: LEAK if any is LEAK, else
/// INCONCLUSIVE if any is INCONCLUSIVE, else PASS; `None` for no watch.
pub fn combined_verdict(verdicts: impl Iterator<Item = Verdict>) -> Option<Verdict> {
    verdicts.reduce(|a, b| match (a, b) {
        (Verdict::Leak, _) | (_, Verdict::Leak) => Verdict::Leak,
        (Verdict::Inconclusive, _) | (_, Verdict::Inconclusive) => Verdict::Inconclusive,
        _ => Verdict::Pass,
    })
}

/// Compares the watcher's reports (every watch of the target: both parts
/// of a run in two parts, the one that saw the probes sent again) with the
/// expectation; `runs` maps each
/// probe run id (16 hex digits) to the sweep that sent it.
pub fn compare(
    reports: &[&WatchReport],
    expect: &Expectation,
    runs: &BTreeMap<String, Sweep>,
) -> Comparison {
    let mut c = Comparison::default();
    let mut bad = |m: String| c.mismatches.push(m);
    let want = expect.verdict();
    // One verdict over every watch of the target (a run in two parts, a
    // watch of the probes sent again): LEAK if any saw a leak, else
    // INCONCLUSIVE if any could not prove it saw, else PASS.
    c.verdict = combined_verdict(reports.iter().map(|r| r.verdict));
    if c.verdict != Some(want) {
        let reasons: Vec<String> = reports
            .iter()
            .filter(|r| Some(r.verdict) == c.verdict)
            .flat_map(|r| r.reasons.iter().cloned())
            .collect();
        bad(format!(
            "verdict {} instead of {} (reasons: {})",
            c.verdict.map(|v| v.to_string()).unwrap_or("missing".into()),
            want,
            reasons.join("; ")
        ));
    }
    let mut observed: BTreeMap<Sweep, Observed> = BTreeMap::new();
    for r in reports {
        if r.verdict == Verdict::Inconclusive {
            bad(format!(
                "a watch was inconclusive: {}",
                r.reasons.join("; ")
            ));
        }
        if r.untracked_run_packets > 0 {
            bad(format!(
                "{} leaked packets of runs beyond the watcher's tracking",
                r.untracked_run_packets
            ));
        }
        let attributed: u64 = r.runs.iter().map(|x| x.packets).sum();
        let unattributed = r.leak_packets.saturating_sub(attributed);
        if unattributed > 0 {
            let what: Vec<String> = r
                .groups
                .iter()
                .filter(|g| !g.probes)
                .map(|g| {
                    format!(
                        "{} {} ×{} ({})",
                        g.family.name(),
                        g.what,
                        g.packets,
                        g.origin
                    )
                })
                .collect();
            bad(format!(
                "{unattributed} leaked packets that carry no probe marker: {}",
                what.join("; ")
            ));
        }
        for run in &r.runs {
            match runs.get(&run.run) {
                Some(s) => {
                    if let Err(e) = observed.entry(*s).or_default().add(run) {
                        bad(e);
                    }
                }
                None => bad(format!(
                    "the watcher saw run {} that the lab did not start",
                    run.run
                )),
            }
        }
    }
    for sweep in Sweep::ALL {
        let model = expect.sweeps.get(&sweep).cloned().unwrap_or_default();
        let obs = observed.get(&sweep).cloned().unwrap_or_default();
        let extra = obs.seen.without(&[&model.certain, &model.possible]);
        if !extra.is_empty() {
            let per: Vec<String> = extra
                .per_suite()
                .iter()
                .map(|((f, s), n)| format!("{f} {s} {n}"))
                .collect();
            bad(format!(
                "{}: {} probes leaked that the model stops ({}); first {:?}",
                sweep.name(),
                extra.len(),
                per.join(", "),
                extra.first()
            ));
        }
        for (fi, family) in Family::BOTH.into_iter().enumerate() {
            if !model.reflections[fi].contains(obs.reflections[fi]) {
                bad(format!(
                    "{} {family}: {} reflections to forged sources, expected {}",
                    sweep.name(),
                    obs.reflections[fi],
                    model.reflections[fi]
                ));
            }
            if !model.resets[fi].contains(obs.resets[fi]) {
                bad(format!(
                    "{} {family}: {} sender RSTs to the target's SYN-ACK, expected {}",
                    sweep.name(),
                    obs.resets[fi],
                    model.resets[fi]
                ));
            }
        }
        let missing = model.certain.without(&[&obs.seen]);
        // Findings for people: what leaked, per family and suite.
        for ((f, s), n) in obs.seen.per_suite() {
            c.findings.push(format!("{} {f} {s} ×{n}", sweep.name()));
        }
        for (fi, family) in Family::BOTH.into_iter().enumerate() {
            if obs.resets[fi] > 0 {
                c.findings.push(format!(
                    "{} {family} tcp [R] ×{} (the sender's RST to the target's SYN-ACK)",
                    sweep.name(),
                    obs.resets[fi]
                ));
            }
        }
        c.missing.insert(sweep, missing);
        c.observed.insert(sweep, obs);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles::builtin;
    use leaktest_watch::report::{PerFamily, RunReport};
    use leaktest_wire::marker::KeyMode;

    fn runs() -> BTreeMap<String, Sweep> {
        [
            ("00000000000000aa", Sweep::Workstation),
            ("00000000000000bb", Sweep::GatewayRoot),
            ("00000000000000cc", Sweep::GatewayUser),
        ]
        .into_iter()
        .map(|(r, s)| (r.to_string(), s))
        .collect()
    }

    fn report(verdict: Verdict, runs: Vec<RunReport>, unattributed: u64) -> WatchReport {
        let json = serde_json::json!({
            "verdict": verdict, "exit_code": verdict.exit_code(), "reasons": [], "interface": "ext0",
            "capture": {"packets": 0, "dropped": 0, "canaries_sent": 1, "canaries_seen": 1,
                        "kernel": {"received": 0, "dropped": 0, "if_dropped": 0}, "accounting": null,
                        "problems": [], "elapsed_s": 1.0, "interrupted": false, "pcap_frames": 0},
            "rules": [], "tor": {"packets": 0, "endpoints": 0, "endpoints_overflow": false,
                "allowlist": {"endpoints": 0, "from_control_port": false, "refreshes": 0},
                "flows": {"started": 0, "already_open": 0, "lost_sync": 0, "untracked_frames": 0, "bytes_followed": 0, "violations": 0}},
            "allowed": [], "housekeeping": {"packets": 0, "by_kind": {}},
            "leak_packets": runs.iter().map(|r| r.packets).sum::<u64>() + unattributed,
            "leaks_truncated": false, "leaks": [], "groups": [], "ungrouped_leak_packets": 0,
            "runs": runs, "untracked_run_packets": 0
        });
        serde_json::from_value(json).unwrap()
    }

    fn run(id: &str, seqs: &SeqSet, resets: [u64; 2]) -> RunReport {
        let r = seqs.ranges();
        RunReport {
            run: id.into(),
            key_mode: KeyMode::Shared,
            distinct: seqs.len(),
            packets: seqs.len() + resets[0] + resets[1],
            resets: PerFamily {
                ipv4: resets[0],
                ipv6: resets[1],
            },
            reflections: PerFamily::default(),
            seqs: r
                .iter()
                .map(|(a, b)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    fn profile(name: &str) -> Expectation {
        Expectation::of(
            &builtin()
                .into_iter()
                .find(|p| p.name == name)
                .unwrap()
                .policy,
        )
    }

    #[test]
    fn a_leak_in_any_watch_is_the_verdict() {
        use Verdict::*;
        let v = |x: &[Verdict]| combined_verdict(x.iter().copied());
        assert_eq!(v(&[]), None);
        assert_eq!(v(&[Pass]), Some(Pass));
        assert_eq!(v(&[Pass, Pass]), Some(Pass));
        assert_eq!(v(&[Pass, Leak]), Some(Leak));
        assert_eq!(v(&[Inconclusive, Pass]), Some(Inconclusive));
        assert_eq!(v(&[Inconclusive, Leak]), Some(Leak));
        assert_eq!(v(&[Leak, Inconclusive, Pass]), Some(Leak));
    }

    #[test]
    fn seq_sets() {
        let mut s = SeqSet::default();
        for q in [0, 1, 2, 63, 64, 65, 1 << 20, (2 << 20) - 1] {
            s.insert(q);
        }
        s.insert(1);
        assert_eq!(s.len(), 8);
        assert_eq!(
            s.ranges(),
            vec![
                (0, 2),
                (63, 65),
                (1 << 20, 1 << 20),
                ((2 << 20) - 1, (2 << 20) - 1)
            ]
        );
        assert_eq!(SeqSet::from_ranges(&s.ranges()), s);
        let t = SeqSet::from_ranges(&[(1, 64)]);
        assert_eq!(
            s.without(&[&t]).ranges(),
            vec![
                (0, 0),
                (65, 65),
                (1 << 20, 1 << 20),
                ((2 << 20) - 1, (2 << 20) - 1)
            ]
        );
    }

    #[test]
    fn clean_pass_matches_whonix() {
        let e = profile("whonix");
        assert_eq!(e.verdict(), Verdict::Pass);
        let c = compare(&[&report(Verdict::Pass, vec![], 0)], &e, &runs());
        assert!(c.ok(), "{:?}", c.mismatches);
    }

    #[test]
    fn exactly_the_model_passes_and_every_difference_is_named() {
        let e = profile("output-root");
        let m = &e.sweeps[&Sweep::GatewayRoot];
        // Root's SYN to port 80 leaks and so do the ECN SYN and the 16 flag
        // combinations with SYN and none of ACK, RST, FIN (URG, PSH, ECE,
        // CWR free): the web server answers each, the gateway resets each.
        assert_eq!(
            m.resets[0],
            Range { min: 18, max: 18 },
            "root's SYN-like probes to port 80 leak: 18 RSTs"
        );
        let exact = run("00000000000000bb", &m.certain, [18, 18]);
        let c = compare(&[&report(Verdict::Leak, vec![exact], 0)], &e, &runs());
        assert!(c.ok(), "{:?}", c.mismatches);
        // One probe missing: not a mismatch yet, it is sent again.
        let mut less = m.certain.clone();
        let gone = less.ranges()[0].0;
        less = less.without(&[&SeqSet::from_ranges(&[(gone, gone)])]);
        let c = compare(
            &[&report(
                Verdict::Leak,
                vec![run("00000000000000bb", &less, [18, 18])],
                0,
            )],
            &e,
            &runs(),
        );
        assert!(c.mismatches.is_empty(), "{:?}", c.mismatches);
        assert_eq!(c.missing[&Sweep::GatewayRoot].ranges(), vec![(gone, gone)]);
        assert!(!c.ok());
        // The resend's report completes it.
        let resend = run(
            "00000000000000bb",
            &SeqSet::from_ranges(&[(gone, gone)]),
            [0, 0],
        );
        let c = compare(
            &[
                &report(
                    Verdict::Leak,
                    vec![run("00000000000000bb", &less, [18, 18])],
                    0,
                ),
                &report(Verdict::Leak, vec![resend], 0),
            ],
            &e,
            &runs(),
        );
        assert!(c.ok(), "{:?}", c.mismatches);
        // Still missing after the resend: a mismatch.
        let mut c = compare(
            &[&report(
                Verdict::Leak,
                vec![run("00000000000000bb", &less, [18, 18])],
                0,
            )],
            &e,
            &runs(),
        );
        c.missing_as_mismatches();
        assert!(
            c.mismatches[0].contains("were not seen, even when sent again"),
            "{:?}",
            c.mismatches
        );
        // A probe the model stops, a missing or extra RST, an unattributed
        // packet, an unknown run: each a mismatch.
        let mut more = m.certain.clone();
        // A FIN+ACK is conntrack-invalid on output: the model stops it.
        let fin = ProbeSpec {
            family: Family::V6,
            kind: ProbeKind::Tcp {
                flags: TcpFlags(TcpFlags::FIN | TcpFlags::ACK),
                dst_port: 1,
            },
        }
        .seq();
        more.insert(fin);
        for (r, unattributed, want) in [
            (
                run("00000000000000bb", &more, [18, 18]),
                0,
                "that the model stops",
            ),
            (
                run("00000000000000bb", &m.certain, [17, 18]),
                0,
                "sender RSTs",
            ),
            (
                run("00000000000000bb", &m.certain, [19, 18]),
                0,
                "sender RSTs",
            ),
            (
                run("00000000000000bb", &m.certain, [18, 18]),
                1,
                "no probe marker",
            ),
            (
                run("00000000000000dd", &m.certain, [18, 18]),
                0,
                "did not start",
            ),
        ] {
            let c = compare(
                &[&report(Verdict::Leak, vec![r], unattributed)],
                &e,
                &runs(),
            );
            assert!(
                c.mismatches.iter().any(|x| x.contains(want)),
                "{want}: {:?}",
                c.mismatches
            );
        }
    }

    #[test]
    fn a_leak_where_a_pass_is_due_and_inconclusive_never_match() {
        let e = Expectation::nothing();
        let one = SeqSet::from_ranges(&[(600, 600)]);
        let c = compare(
            &[&report(
                Verdict::Leak,
                vec![run("00000000000000aa", &one, [0, 0])],
                0,
            )],
            &e,
            &runs(),
        );
        assert!(c.mismatches.len() >= 2, "{:?}", c.mismatches);
        let c = compare(&[&report(Verdict::Inconclusive, vec![], 0)], &e, &runs());
        assert!(!c.ok());
    }

    #[test]
    fn the_ip_suite_tcp_probe_is_forwarded_unredirected_under_a_syn_redirect() {
        // Its fixed head has no flags and data offset 0: no SYN rule takes
        // it and conntrack never calls it new, in every run (before the
        // head, its flags were run-id bytes and the model said "either").
        let e = profile("tcp-forward");
        let m = &e.sweeps[&Sweep::Workstation];
        let ip6 = ProbeSpec {
            family: Family::V4,
            kind: ProbeKind::Ip { protocol: 6 },
        }
        .seq();
        assert!(m.certain.contains(ip6));
        let mut only = SeqSet::default();
        only.insert(ip6);
        let without = m.certain.without(&[&only]);
        let c = compare(
            &[&report(
                Verdict::Leak,
                vec![run("00000000000000aa", &without, [0, 0])],
                0,
            )],
            &e,
            &runs(),
        );
        assert!(!c.ok());
    }

    #[test]
    fn allowed_networks_leave_the_expectation() {
        let e = profile("forward-masquerade");
        let lan_echo = ProbeSpec {
            family: Family::V4,
            kind: ProbeKind::Lan {
                dest: leaktest_wire::catalogue::LanDest::Private10,
                transport: leaktest_wire::catalogue::Transport::Echo,
            },
        };
        let ws = &e.sweeps[&Sweep::Workstation];
        assert!(ws.certain.contains(lan_echo.seq()));
        let nets: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let a = e.clone().allowing(&nets);
        let ws2 = &a.sweeps[&Sweep::Workstation];
        assert!(!ws2.certain.contains(lan_echo.seq()));
        // Only that: every other leak stays.
        assert!(ws2.certain.len() < ws.certain.len());
        assert_eq!(a.verdict(), Verdict::Leak);
        // Allowing the target's networks allows everything: a PASS is due.
        let all: Vec<ipnet::IpNet> = [
            "198.51.100.0/24",
            "2001:db8:80::/64",
            "0.0.0.0/1",
            "128.0.0.0/1",
            "::/1",
            "8000::/1",
        ]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
        let b = e.allowing(&all);
        assert!(b
            .sweeps
            .values()
            .all(|m| m.certain.is_empty() && m.possible.is_empty()));
        assert_eq!(b.verdict(), Verdict::Pass);
    }
}
