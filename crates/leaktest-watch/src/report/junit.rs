//! The JUnit XML report: one test case per probe family and suite (failed
//! where a probe of it leaked; passed where none did and the family was
//! declared probed with `watch --families`; skipped otherwise, since the
//! watcher cannot see a probe that did not leak), one per family for
//! traffic that is not a probe, and one for the capture's health.

use super::WatchReport;
use crate::classify::LeakFamily;
use leaktest_wire::{Family, Suite};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn failed(message: String, detail: String) -> TestCaseStatus {
    let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
    st.set_message(message).set_type("leak");
    if !detail.is_empty() {
        st.set_description(detail);
    }
    st
}

fn skipped(message: String) -> TestCaseStatus {
    let mut st = TestCaseStatus::skipped();
    st.set_message(message);
    st
}

/// The report as JUnit.
pub fn junit(r: &WatchReport) -> Report {
    let mut suite = TestSuite::new(format!("leaktest watch {}", r.interface));
    suite.add_property(("interface", r.interface.as_str()));
    suite.add_property(("verdict", r.verdict.name()));
    // Warnings (a report that could not be written, a pcap cut short) do not
    // change the verdict, but a CI reader must see them.
    if !r.warnings.is_empty() {
        suite.set_system_err(format!("warning: {}", r.warnings.join("\nwarning: ")));
        for w in &r.warnings {
            suite.add_property(("warning", w.as_str()));
        }
    }
    let lines = |pick: &dyn Fn(&super::GroupReport) -> bool| {
        let mut s = String::new();
        for g in r.groups.iter().filter(|g| pick(g)) {
            s.push_str(&g.line());
            s.push_str(&format!(" [{} packets]\n", g.packets));
        }
        s
    };
    for family in Family::BOTH {
        for s in Suite::ALL {
            let n = r.probe_leaks(family, s.name());
            let declared = r.families_probed.as_ref().map(|f| f.contains(&family));
            let status = if n == 0 {
                match declared {
                    Some(true) => TestCaseStatus::success(),
                    Some(false) => {
                        skipped(format!("no {family} probes: --families left {family} out"))
                    }
                    None => skipped(format!(
                        "not known whether {family} was probed (a probe that did not leak is \
                         not seen): give watch --families 4, 6 or both"
                    )),
                }
            } else {
                let detail = lines(&|g| {
                    g.probes
                        && g.family == LeakFamily::from(family)
                        && g.suites.iter().any(|x| x == s.name())
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
        let n: u64 = r
            .groups
            .iter()
            .filter(|g| !g.probes && g.family == fam)
            .map(|g| g.packets)
            .sum();
        let status = if n == 0 {
            TestCaseStatus::success()
        } else {
            failed(
                format!(
                    "{n} {} packet{} that {} not probes leaked",
                    fam.name(),
                    plural(n),
                    if n == 1 { "was" } else { "were" }
                ),
                lines(&|g| !g.probes && g.family == fam),
            )
        };
        let mut tc = TestCase::new(format!("{} other traffic", fam.name()), status);
        tc.set_classname("leaktest.traffic");
        suite.add_test_case(tc);
    }
    let unproven = r.verdict == crate::verdict::Verdict::Inconclusive
        || (r.verdict == crate::verdict::Verdict::Leak
            && r.reasons
                .iter()
                .any(|x| x.starts_with("also, the capture was incomplete")));
    let status = if !unproven {
        TestCaseStatus::success()
    } else {
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
        st.set_message("the capture was not proven complete")
            .set_type("inconclusive")
            .set_description(r.reasons.join("\n"));
        st
    };
    let mut tc = TestCase::new("capture health", status);
    tc.set_classname("leaktest.capture");
    tc.set_system_out(format!(
        "packets {}, dropped {}, canaries {}/{} seen",
        r.capture.packets, r.capture.dropped, r.capture.canaries_seen, r.capture.canaries_sent
    ));
    suite.add_test_case(tc);
    let mut report = Report::new("leaktest");
    report.add_test_suite(suite);
    report
}
