//! The report for people: capture health, Tor, allowed and housekeeping
//! counts, the rules that decided the frames, leaks grouped, the verdict and
//! why.

use super::WatchReport;
use std::io::{self, Write};

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
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

/// Prints `r` for people.
pub fn print(r: &WatchReport, w: &mut impl Write) -> io::Result<()> {
    let c = &r.capture;
    writeln!(w, "leaktest watch on {}", r.interface)?;
    let mut rows: Vec<(&str, String)> = vec![
        (
            "capture",
            format!(
                "{} packet{}, {} dropped by the kernel, {}/{} canaries seen",
                thousands(c.packets),
                plural(c.packets),
                thousands(c.dropped),
                c.canaries_seen,
                c.canaries_sent
            ),
        ),
        (
            "tor",
            format!(
                "{} packet{} to {} endpoint{}{}",
                thousands(r.tor.packets),
                plural(r.tor.packets),
                r.tor.endpoints,
                plural(r.tor.endpoints as u64),
                if r.tor.endpoints_overflow {
                    " (or more)"
                } else {
                    ""
                }
            ),
        ),
    ];
    let fl = &r.tor.flows;
    if fl.started + fl.already_open > 0 {
        rows.push((
            "tor flows",
            format!(
                "{} followed from their start, {} already open (judged by cleartext signatures){}",
                fl.started,
                fl.already_open,
                if fl.lost_sync > 0 {
                    format!(", {} lost sync", fl.lost_sync)
                } else {
                    String::new()
                }
            ),
        ));
    }
    for a in &r.allowed {
        rows.push((
            "allowed",
            format!(
                "{} packet{} to {}",
                thousands(a.packets),
                plural(a.packets),
                a.entry
            ),
        ));
    }
    let kinds: Vec<String> = r
        .housekeeping
        .by_kind
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    rows.push(("housekeeping", {
        let n = r.housekeeping.packets;
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
            thousands(r.leak_packets),
            plural(r.leak_packets),
            r.groups.len(),
            plural(r.groups.len() as u64)
        ),
    ));
    let decided: Vec<String> = r
        .rules
        .iter()
        .filter(|x| x.packets > 0)
        .map(|x| format!("{} {}", x.rule, thousands(x.packets)))
        .collect();
    rows.push(("rules", decided.join(", ")));
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    for (k, v) in &rows {
        writeln!(w, "  {k:<width$}  {v}")?;
    }
    if !r.groups.is_empty() {
        writeln!(w)?;
        let table: Vec<[String; 6]> = r
            .groups
            .iter()
            .map(|g| {
                [
                    g.family.name().to_string(),
                    g.what.clone(),
                    thousands(g.packets),
                    clip(&g.detail, 72),
                    g.rule.to_string(),
                    g.origin.clone(),
                ]
            })
            .collect();
        let head = ["family", "what", "packets", "where", "rule", "origin"];
        let mut wd = head.map(|h| h.len());
        for row in &table {
            for (i, c) in row.iter().enumerate() {
                wd[i] = wd[i].max(c.chars().count());
            }
        }
        let line = |w: &mut dyn Write, r: [&str; 6]| -> io::Result<()> {
            writeln!(
                w,
                "    {:<a$}  {:<b$}  {:>c$}  {:<d$}  {:<e$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                a = wd[0],
                b = wd[1],
                c = wd[2],
                d = wd[3],
                e = wd[4]
            )
        };
        line(w, head)?;
        for row in &table {
            line(w, [&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]])?;
        }
        if r.ungrouped_leak_packets > 0 {
            writeln!(
                w,
                "    … and {} packets in further groups",
                r.ungrouped_leak_packets
            )?;
        }
    }
    if !r.events.is_empty() {
        let start = r.watch_start_unix_ns.unwrap_or(0);
        writeln!(w)?;
        writeln!(w, "timeline:")?;
        for e in &r.events {
            let mut l = format!("  {:>8.3} s  {} '{}'", e.at_s, e.source, e.name);
            match (e.ran_ms(), e.exit_code) {
                (Some(ms), Some(c)) => l.push_str(&format!(" ran {ms:.0} ms, exit {c}")),
                (Some(ms), None) => l.push_str(&format!(" ran {ms:.0} ms, killed by a signal")),
                _ if e.source == "run-at" => l.push_str(" still running at the end"),
                _ => {}
            }
            if let Some(p) = &e.problem {
                l.push_str(&format!(" ({p})"));
            }
            writeln!(w, "{l}")?;
        }
        for p in &r.phases {
            writeln!(w, "  {}", p.line(start))?;
        }
    }
    writeln!(w)?;
    writeln!(w, "verdict: {} (exit {})", r.verdict, r.exit_code)?;
    for x in &r.reasons {
        writeln!(w, "  - {x}")?;
    }
    for x in &r.warnings {
        writeln!(w, "  ! {x}")?;
    }
    Ok(())
}
