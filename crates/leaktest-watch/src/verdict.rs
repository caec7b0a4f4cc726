//! The verdict (issue 3, item 4): LEAK if anything leaked; otherwise
//! INCONCLUSIVE unless the capture is proven complete; otherwise PASS.
//!
//! "Proven complete" means: canaries were sent, every one was seen, the
//! kernel dropped nothing, the accounting closes (every frame the kernel
//! counted was delivered or dropped, every frame delivered was classified),
//! every frame was judged in full (no Tor flow went untracked), and the
//! session reported no problem (interface down or gone, Tor allowlist lost
//! mid-run, a capture error, ...). The watcher never says PASS when it
//! cannot prove it saw.

use crate::findings::Findings;
use leaktest_wire::{Family, Suite};
use std::fmt;

/// The frame counts that must agree at the end of a watch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Accounting {
    /// Frames the kernel counted as passing the capture filter (delivered
    /// or dropped), read after the capture was sealed.
    pub kernel_received: u64,
    /// Frames the capture ring delivered.
    pub delivered: u64,
    /// Of those, frames the start barrier discarded (before the watch began).
    pub barrier: u64,
    /// Frames the watch handed to the classifier.
    pub handled: u64,
    /// Frames the classifier decided (counted per rule).
    pub classified: u64,
    /// Whether the capture was sealed, so that the kernel's count is final.
    pub sealed: bool,
}

impl Accounting {
    /// Why the counts do not close; empty when they do. `dropped` is the
    /// kernel's drop count.
    pub fn mismatches(&self, dropped: u64) -> Vec<String> {
        let mut r = Vec::new();
        if !self.sealed {
            r.push(
                "the capture could not be sealed, so the kernel's count of frames is not final"
                    .to_string(),
            );
            return r;
        }
        if self.kernel_received != self.delivered + dropped {
            r.push(format!(
                "the kernel counted {} frames but the capture delivered {} and dropped {}: {} unaccounted for",
                self.kernel_received,
                self.delivered,
                dropped,
                self.kernel_received as i128 - (self.delivered + dropped) as i128
            ));
        }
        if self.delivered != self.barrier + self.handled {
            r.push(format!(
                "the capture delivered {} frames but the watch handled {} (and {} before it began)",
                self.delivered, self.handled, self.barrier
            ));
        }
        if self.handled != self.classified {
            r.push(format!(
                "the watch handled {} frames but classified {}",
                self.handled, self.classified
            ));
        }
        r
    }
}

/// How complete the capture was, as measured by the session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureHealth {
    /// Frames the capture delivered to the watch.
    pub packets: u64,
    /// Frames the kernel dropped (ring full, interface drops).
    pub dropped: u64,
    pub canaries_sent: u64,
    pub canaries_seen: u64,
    /// Frame counts that must agree; `None` in tests and tools that do not
    /// capture.
    pub accounting: Option<Accounting>,
    /// Frames of Tor flows that could not be tracked (the flow table was full).
    pub untracked_flow_frames: u64,
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
        if let Some(a) = &self.accounting {
            r.extend(a.mismatches(self.dropped));
        }
        if self.untracked_flow_frames > 0 {
            r.push(format!(
                "{} frame{} of Tor flows could not be followed (the flow table was full) and were judged by cleartext signatures only",
                self.untracked_flow_frames,
                plural(self.untracked_flow_frames)
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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

    /// Reads a name as [`Verdict::name`] writes it.
    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "pass" => Some(Verdict::Pass),
            "leak" => Some(Verdict::Leak),
            "inconclusive" => Some(Verdict::Inconclusive),
            _ => None,
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
                    "{unattributed} of them {}: traffic that is neither Tor, allowed, nor the gateway's own link housekeeping",
                    if unattributed == 1 { "was not a probe" } else { "were not probes" }
                ));
            }
            // Leaks that imitate what the watcher lets through, by cause.
            let mut imitations: Vec<(String, u64)> = Vec::new();
            for g in findings.groups() {
                let what = match g.key.cause {
                    crate::classify::LeakCause::ForgedCanary(_) => "forged canary frames (a process on the gateway writes frames of the canary's EtherType)",
                    crate::classify::LeakCause::NotTor(_) => "frames to Tor endpoints that do not carry what Tor sends there",
                    crate::classify::LeakCause::HousekeepingShaped(..) => "frames shaped like link housekeeping whose content the gateway's kernel does not send",
                    _ => continue,
                };
                match imitations.iter_mut().find(|(w, _)| w == what) {
                    Some((_, n)) => *n += g.packets,
                    None => imitations.push((what.to_string(), g.packets)),
                }
            }
            for (what, n) in imitations {
                reasons.push(format!(
                    "{n} of them {} {what}",
                    if n == 1 { "was one of the" } else { "were" }
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
        let mut reasons = vec![format!(
            "no leak in {} captured packet{}: {} Tor packet{} to {} endpoint{}, {} housekeeping packet{}{}",
            health.packets,
            plural(health.packets),
            findings.tor_packets,
            plural(findings.tor_packets),
            findings.tor_endpoints(),
            plural(findings.tor_endpoints() as u64),
            findings.housekeeping_packets(),
            plural(findings.housekeeping_packets()),
            match findings.allowed_packets() {
                0 => String::new(),
                n => format!(", {n} allowed by --allow"),
            }
        )];
        reasons.push(format!(
            "the capture was proven complete: all {} canary frame{} seen, no kernel drops{}",
            health.canaries_sent,
            plural(health.canaries_sent),
            if health.accounting.is_some() {
                ", every frame the kernel counted was classified"
            } else {
                ""
            }
        ));
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
    use crate::classify::flows::Followed;
    use crate::classify::housekeeping::HousekeepingKind;
    use crate::classify::{Class, Decision, Leak, LeakCause, Rule, TorFrame};
    use leaktest_wire::{Frame, FrameSummary, LinkType};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    fn healthy() -> CaptureHealth {
        CaptureHealth {
            packets: 100,
            dropped: 0,
            canaries_sent: 5,
            canaries_seen: 5,
            ..CaptureHealth::default()
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

    fn leak() -> Decision {
        let data = crate::testutil::eth4(
            Ipv4Addr::new(10, 152, 152, 11),
            Ipv4Addr::new(203, 0, 113, 7),
            17,
            &crate::testutil::udp(5000, 53, b"q"),
        );
        Decision {
            class: Class::Leak(Leak {
                summary: FrameSummary::parse(&data, LinkType::Ethernet),
                cause: LeakCause::Unexpected,
                probe: None,
            }),
            rule: Rule::Default,
        }
    }

    fn clean_findings() -> Findings {
        let mut f = Findings::new();
        let ep = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)), 443);
        let tor = Decision {
            class: Class::Tor(TorFrame {
                endpoint: ep,
                roles: leaktest_tor::Roles::OR_PORT,
                followed: Followed::FromStart,
            }),
            rule: Rule::Tor,
        };
        for _ in 0..90 {
            f.record(&frame(), &tor);
        }
        for _ in 0..5 {
            let arp = Decision {
                class: Class::Housekeeping(HousekeepingKind::Arp),
                rule: Rule::Arp,
            };
            f.record(&frame(), &arp);
            f.record(
                &frame(),
                &Decision {
                    class: Class::Canary,
                    rule: Rule::Canary,
                },
            );
        }
        f
    }

    #[test]
    fn accounting_must_close() {
        let ok = Accounting {
            kernel_received: 105,
            delivered: 105,
            barrier: 5,
            handled: 100,
            classified: 100,
            sealed: true,
        };
        assert!(ok.mismatches(0).is_empty());
        // Drops are counted by the kernel too.
        assert!(Accounting {
            kernel_received: 110,
            ..ok
        }
        .mismatches(5)
        .is_empty());
        let clean = clean_findings();
        let with = |a: Accounting, dropped| CaptureHealth {
            accounting: Some(a),
            dropped,
            ..healthy()
        };
        assert_eq!(
            Verdict::decide(
                &clean,
                &with(
                    Accounting {
                        kernel_received: 110,
                        ..ok
                    },
                    5
                )
            )
            .0,
            Verdict::Inconclusive,
            "5 drops"
        );
        for (a, what) in [
            (
                Accounting {
                    kernel_received: 106,
                    ..ok
                },
                "1 unaccounted for",
            ),
            (Accounting { handled: 99, ..ok }, "handled 99"),
            (
                Accounting {
                    classified: 99,
                    ..ok
                },
                "classified 99",
            ),
            (
                Accounting {
                    sealed: false,
                    ..ok
                },
                "could not be sealed",
            ),
        ] {
            let (v, reasons) = Verdict::decide(&clean, &with(a, 0));
            assert_eq!(v, Verdict::Inconclusive, "{what}");
            assert!(
                reasons.iter().any(|r| r.contains(what)),
                "{what}: {reasons:?}"
            );
        }
        let (v, reasons) = Verdict::decide(&clean, &with(ok, 0));
        assert_eq!(v, Verdict::Pass, "{reasons:?}");
        assert!(reasons[1].contains("every frame the kernel counted was classified"));
        // Tor flows that could not be followed make a PASS impossible too.
        let h = CaptureHealth {
            untracked_flow_frames: 3,
            ..healthy()
        };
        assert_eq!(Verdict::decide(&clean, &h).0, Verdict::Inconclusive);
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
            "1 of them was not a probe: traffic that is neither Tor, allowed, nor the gateway's own link housekeeping"
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
