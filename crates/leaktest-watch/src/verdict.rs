//! The verdict (issue 3, item 4): LEAK if anything leaked; otherwise
//! INCONCLUSIVE unless the capture is proven complete; otherwise PASS.
//!
//! "Proven complete" means: canaries were sent, every one was seen, the
//! kernel dropped nothing, and the session reported no problem (interface
//! down or gone, Tor allowlist lost mid-run, a capture error, ...). The
//! watcher never says PASS when it cannot prove it saw.

use crate::findings::Findings;
use leaktest_wire::{Family, Suite};
use std::fmt;

/// How complete the capture was, as measured by the session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureHealth {
    /// Frames the capture delivered.
    pub packets: u64,
    /// Frames the kernel dropped (ring full, interface drops).
    pub dropped: u64,
    pub canaries_sent: u64,
    pub canaries_seen: u64,
    /// Anything else that makes the capture unproven, as human sentences
    /// (e.g. "interface eth0 went down at 12:00:01").
    pub problems: Vec<String>,
}

impl CaptureHealth {
    /// Why this capture is not proven complete; empty when it is.
    pub fn unproven_reasons(&self) -> Vec<String> {
        let mut r = Vec::new();
        if self.canaries_sent == 0 {
            r.push("no canary frame was sent, so the capture was never proven to see".to_string());
        } else if self.canaries_seen < self.canaries_sent {
            let missed = self.canaries_sent - self.canaries_seen;
            r.push(format!(
                "{missed} of {} canary frames were not seen by the capture",
                self.canaries_sent
            ));
        } else if self.canaries_seen > self.canaries_sent {
            r.push(format!(
                "the capture saw {} canary frames but only {} were sent: canary accounting is inconsistent",
                self.canaries_seen, self.canaries_sent
            ));
        }
        if self.dropped > 0 {
            r.push(format!(
                "the kernel dropped {} packet{} that the capture never saw",
                self.dropped,
                plural(self.dropped)
            ));
        }
        r.extend(self.problems.iter().cloned());
        r
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The outcome of a watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Pass,
    Leak,
    Inconclusive,
}

impl Verdict {
    /// Process exit status: 0 PASS, 1 LEAK, 3 INCONCLUSIVE.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Leak => 1,
            Verdict::Inconclusive => 3,
        }
    }

    /// Lower-case name, as in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Leak => "leak",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// Decides the verdict and says why, in sentences.
    pub fn decide(findings: &Findings, health: &CaptureHealth) -> (Verdict, Vec<String>) {
        let unproven = health.unproven_reasons();
        if findings.leak_packets > 0 {
            let attributed = findings
                .groups()
                .iter()
                .filter(|g| g.key.attributed)
                .map(|g| g.packets)
                .sum::<u64>();
            let groups = findings.groups().len();
            let mut reasons = vec![format!(
                "{} packet{} left the interface in the clear ({} group{}{})",
                findings.leak_packets,
                plural(findings.leak_packets),
                groups,
                plural(groups as u64),
                if findings.ungrouped_leaks > 0 {
                    format!(
                        " and {} packets in further groups",
                        findings.ungrouped_leaks
                    )
                } else {
                    String::new()
                }
            )];
            if attributed > 0 {
                let mut per: Vec<String> = Vec::new();
                for (fi, family) in Family::BOTH.into_iter().enumerate() {
                    for (si, suite) in Suite::ALL.into_iter().enumerate() {
                        let n = findings.probe_leaks[fi][si];
                        if n > 0 {
                            per.push(format!("{family} {suite} {n}"));
                        }
                    }
                }
                reasons.push(format!(
                    "{attributed} of them carried the marker of a leaktest probe ({})",
                    per.join(", ")
                ));
            }
            let unattributed: u64 = findings.unattributed_leaks.iter().sum();
            if unattributed > 0 {
                reasons.push(format!(
                    "{unattributed} of them {}: traffic that is neither Tor nor the gateway's own link housekeeping",
                    if unattributed == 1 { "was not a probe" } else { "were not probes" }
                ));
            }
            // A capture that missed things may have missed more leaks; say so.
            for u in unproven {
                reasons.push(format!("also, the capture was incomplete: {u}"));
            }
            return (Verdict::Leak, reasons);
        }
        if !unproven.is_empty() {
            return (Verdict::Inconclusive, unproven);
        }
        let reasons = vec![
            format!(
                "no leak in {} captured packet{}: {} Tor packet{} to {} endpoint{}, {} housekeeping packet{}",
                health.packets,
                plural(health.packets),
                findings.tor_packets,
                plural(findings.tor_packets),
                findings.tor_endpoints(),
                plural(findings.tor_endpoints() as u64),
                findings.housekeeping_packets(),
                plural(findings.housekeeping_packets()),
            ),
            format!(
                "the capture was proven complete: all {} canary frame{} seen, no kernel drops",
                health.canaries_sent,
                plural(health.canaries_sent)
            ),
        ];
        (Verdict::Pass, reasons)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Leak => "LEAK",
            Verdict::Inconclusive => "INCONCLUSIVE",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Class, HousekeepingKind, Leak, LeakCause, LeakFamily};
    use leaktest_capture::Frame;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    fn healthy() -> CaptureHealth {
        CaptureHealth {
            packets: 100,
            dropped: 0,
            canaries_sent: 5,
            canaries_seen: 5,
            problems: vec![],
        }
    }

    fn frame() -> Frame<'static> {
        Frame {
            ts_sec: 1,
            ts_nsec: 0,
            data: &[],
            orig_len: 60,
        }
    }

    fn leak() -> Class {
        Class::Leak(Leak {
            family: LeakFamily::Ipv4,
            cause: LeakCause::Unexpected,
            src_mac: None,
            dst_mac: None,
            ethertype: Some(0x0800),
            protocol: Some(17),
            src: Some(IpAddr::V4(Ipv4Addr::new(10, 152, 152, 11))),
            dst: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))),
            src_port: Some(5000),
            dst_port: Some(53),
            icmp_type: None,
            tcp_flags: None,
            fragment: false,
            probe: None,
        })
    }

    fn clean_findings() -> Findings {
        let mut f = Findings::new();
        let ep = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)), 443);
        for _ in 0..90 {
            f.record(&frame(), &Class::Tor(ep));
        }
        for _ in 0..5 {
            f.record(&frame(), &Class::Housekeeping(HousekeepingKind::Arp));
            f.record(&frame(), &Class::Canary);
        }
        f
    }

    #[test]
    fn verdict_rules_table() {
        let mut leaky = clean_findings();
        leaky.record(&frame(), &leak());
        let clean = clean_findings();
        let with = |edit: &dyn Fn(&mut CaptureHealth)| {
            let mut h = healthy();
            edit(&mut h);
            h
        };
        let cases: Vec<(&str, &Findings, CaptureHealth, Verdict)> = vec![
            ("clean and proven", &clean, healthy(), Verdict::Pass),
            ("a leak", &leaky, healthy(), Verdict::Leak),
            (
                "a leak beats an unproven capture",
                &leaky,
                with(&|h| h.dropped = 3),
                Verdict::Leak,
            ),
            (
                "no canary sent",
                &clean,
                with(&|h| {
                    h.canaries_sent = 0;
                    h.canaries_seen = 0
                }),
                Verdict::Inconclusive,
            ),
            (
                "no canary seen",
                &clean,
                with(&|h| h.canaries_seen = 0),
                Verdict::Inconclusive,
            ),
            (
                "one canary missed",
                &clean,
                with(&|h| h.canaries_seen = 4),
                Verdict::Inconclusive,
            ),
            (
                "more canaries seen than sent",
                &clean,
                with(&|h| h.canaries_seen = 6),
                Verdict::Inconclusive,
            ),
            (
                "a kernel drop",
                &clean,
                with(&|h| h.dropped = 1),
                Verdict::Inconclusive,
            ),
            (
                "interface went away",
                &clean,
                with(&|h| h.problems.push("interface eth0 went away".into())),
                Verdict::Inconclusive,
            ),
            (
                "allowlist lost",
                &clean,
                with(&|h| {
                    h.problems
                        .push("the Tor allowlist became unavailable".into())
                }),
                Verdict::Inconclusive,
            ),
        ];
        for (name, f, h, want) in cases {
            let (got, reasons) = Verdict::decide(f, &h);
            assert_eq!(got, want, "{name}");
            assert!(!reasons.is_empty(), "{name}: a verdict always says why");
        }
    }

    #[test]
    fn reasons_are_sentences_naming_the_cause() {
        let (_, r) = Verdict::decide(
            &clean_findings(),
            &CaptureHealth {
                canaries_seen: 3,
                dropped: 2,
                problems: vec!["interface eth0 went down".into()],
                ..healthy()
            },
        );
        assert_eq!(
            r,
            vec![
                "2 of 5 canary frames were not seen by the capture".to_string(),
                "the kernel dropped 2 packets that the capture never saw".to_string(),
                "interface eth0 went down".to_string(),
            ]
        );
        let mut leaky = clean_findings();
        leaky.record(&frame(), &leak());
        let (_, r) = Verdict::decide(
            &leaky,
            &CaptureHealth {
                dropped: 1,
                ..healthy()
            },
        );
        assert_eq!(r[0], "1 packet left the interface in the clear (1 group)");
        assert_eq!(
            r[1],
            "1 of them was not a probe: traffic that is neither Tor nor the gateway's own link housekeeping"
        );
        assert!(r[2].starts_with("also, the capture was incomplete: the kernel dropped 1 packet "));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(
            [Verdict::Pass, Verdict::Leak, Verdict::Inconclusive].map(|v| v.exit_code()),
            [0, 1, 3]
        );
    }
}
