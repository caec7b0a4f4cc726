//! The HTML report: one self-contained page (inline style, no script, no
//! external resource) that a person can open from a CI artifact or print.
//!
//! Everything from the network (addresses, leak details, reasons) goes
//! through `maud`'s escaping; nothing is inserted unescaped but the fixed
//! style sheet.

use super::{GroupReport, ReportError, WatchReport};
use crate::verdict::Verdict;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use std::path::Path;

/// Leaked packets listed one by one (the groups cover the rest).
pub const HTML_LEAK_ROWS: usize = 200;

/// The style sheet of every leaktest page (the lab's too).
pub const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:2em auto;padding:0 1.5em;max-width:70em;color:#1b1b1b;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ccc}
.verdict{padding:1em 1.2em;border-radius:6px;color:#fff;font-size:1.4em;font-weight:bold}
.pass{background:#1e7b34}.leak{background:#b3261e}.inconclusive{background:#a15c00}
.ok{color:#1e7b34;font-weight:bold}.bad{color:#b3261e;font-weight:bold}
table{border-collapse:collapse;width:100%;font-size:.92em}
th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font-family:ui-monospace,monospace;font-size:.95em}
.muted{color:#666}figure.strip{margin:.8em 0}figure.strip svg{max-width:100%;height:auto}
";

impl WatchReport {
    /// The report as one HTML page.
    pub fn to_html(&self) -> String {
        let (class, word) = match self.verdict {
            Verdict::Pass => ("pass", "PASS"),
            Verdict::Leak => ("leak", "LEAK"),
            Verdict::Inconclusive => ("inconclusive", "INCONCLUSIVE"),
        };
        let c = &self.capture;
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { "leaktest watch: " (word) " on " (self.interface) }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    h1 { "leaktest watch on " code { (self.interface) } }
                    div class={ "verdict " (class) } id="verdict" {
                        (word) " (exit " (self.exit_code) ")"
                    }
                    @if !self.reasons.is_empty() {
                        ul { @for r in &self.reasons { li { (r) } } }
                    }
                    @if !self.warnings.is_empty() {
                        h2 { "Warnings" }
                        ul { @for w in &self.warnings { li { (w) } } }
                    }
                    h2 { "Capture" }
                    table {
                        tr { th { "captured frames" } td class="n" id="captured" { (c.packets) } }
                        tr { th { "dropped by the kernel" } td class="n" id="dropped" { (c.dropped) } }
                        tr { th { "canaries sent / seen" } td class="n" {
                            span id="canaries-sent" { (c.canaries_sent) } " / " span id="canaries-seen" { (c.canaries_seen) } } }
                        @if let Some(a) = &c.accounting {
                            tr { th { "kernel counted / delivered / classified" }
                                 td class="n" { (a.kernel_received) " / " (a.delivered) " / " (a.classified) } }
                            tr { th { "capture sealed" } td { (if a.sealed { "yes" } else { "no" }) } }
                        }
                        tr { th { "seconds" } td class="n" { (format!("{:.1}", c.elapsed_s)) } }
                        tr { th { "ended by a signal" } td { (if c.interrupted { "yes" } else { "no" }) } }
                        @if c.pcap_frames > 0 {
                            tr { th { "frames in the pcapng file" } td class="n" { (c.pcap_frames) } }
                        }
                    }
                    @if !c.problems.is_empty() {
                        p { "Problems:" }
                        ul { @for p in &c.problems { li { (p) } } }
                    }
                    h2 { "Leaks" }
                    @if self.groups.is_empty() {
                        p { "No leaked packet." }
                    } @else {
                        p { span id="leak-packets" { (self.leak_packets) } " leaked packets in "
                            span id="leak-groups" { (self.groups.len()) } " groups." }
                        (port_strips(&self.groups))
                        (groups_table(&self.groups))
                    }
                    @if !self.runs.is_empty() {
                        h2 { "Probe runs seen" }
                        table {
                            tr { th { "run" } th { "key" } th { "distinct probes" } th { "packets" } }
                            @for r in &self.runs {
                                tr {
                                    td { code { (r.run) } }
                                    td { (format!("{:?}", r.key_mode).to_lowercase()) }
                                    td class="n" { (r.distinct) }
                                    td class="n" { (r.packets) }
                                }
                            }
                        }
                    }
                    @if !self.leaks.is_empty() {
                        h2 { "Leaked packets" }
                        @if self.leaks.len() > HTML_LEAK_ROWS || self.leaks_truncated {
                            p class="muted" { "The first " (self.leaks.len().min(HTML_LEAK_ROWS)) " of "
                                (self.leak_packets) "; the JSON report and the pcapng file have more." }
                        }
                        table {
                            tr { th { "family" } th { "protocol" } th { "source" } th { "destination" }
                                 th { "probe" } th { "cause" } th { "rule" } }
                            @for l in self.leaks.iter().take(HTML_LEAK_ROWS) {
                                tr {
                                    td { (l.family.name()) }
                                    td { (l.protocol.map(|p| p.to_string()).unwrap_or_default())
                                         @if let Some(f) = &l.tcp_flags { " [" (f) "]" } }
                                    td { code { (l.src) @if let Some(p) = l.src_port { ":" (p) } } }
                                    td { code { (l.dst) @if let Some(p) = l.dst_port { ":" (p) } } }
                                    td { @if let Some(p) = &l.probe {
                                            code { (p.run) } " #" (p.seq) " " (p.suite)
                                        } }
                                    td { (l.cause) ": " (l.cause_detail) }
                                    td { (l.rule.to_string()) }
                                }
                            }
                        }
                    }
                    h2 { "Rules" }
                    table {
                        tr { th { "rule" } th { "what it claims" } th { "frames" } }
                        @for r in &self.rules {
                            tr { td { code { (r.rule.to_string()) } } td { (r.about) } td class="n" { (r.packets) } }
                        }
                    }
                    h2 { "Tor" }
                    table {
                        tr { th { "Tor packets" } td class="n" { (self.tor.packets) } }
                        tr { th { "endpoints seen" } td class="n" { (self.tor.endpoints) } }
                        tr { th { "allowlist endpoints" } td class="n" { (self.tor.allowlist.endpoints) } }
                        tr { th { "from the control port" } td { (if self.tor.allowlist.from_control_port { "yes" } else { "no (--allow entries only)" }) } }
                    }
                    @if !self.allowed.is_empty() {
                        h2 { "Allowed on purpose" }
                        table {
                            tr { th { "--allow" } th { "packets" } }
                            @for a in &self.allowed { tr { td { code { (a.entry) } } td class="n" { (a.packets) } } }
                        }
                    }
                    @if !self.housekeeping.by_kind.is_empty() {
                        h2 { "Link housekeeping" }
                        table {
                            tr { th { "kind" } th { "packets" } }
                            @for (k, n) in &self.housekeeping.by_kind { tr { td { (k) } td class="n" { (n) } } }
                        }
                    }
                    p class="muted" { "Generated by leaktest " (env!("CARGO_PKG_VERSION")) "." }
                }
            }
        };
        page.into_string()
    }

    /// Writes [`WatchReport::to_html`] to `path` (atomically, never over a
    /// device; see `leaktest_fs::write_atomic`).
    pub fn write_html(&self, path: &Path) -> Result<(), ReportError> {
        let page = self.to_html();
        leaktest_fs::write_atomic("HTML report", path, |w| w.write_all(page.as_bytes()))?;
        Ok(())
    }
}

/// Ports per strip pixel: a 65,536-port strip drawn 1,024 pixels wide.
const PORTS_PER_PIXEL: usize = 64;

/// The destination ports that leaked, per family and protocol, as one strip
/// each: 65,536 ports, 64 to a pixel, a pixel as dark as the share of its
/// 64 ports that leaked (from the groups' complete port sets). Inline SVG.
pub fn port_strips(groups: &[GroupReport]) -> Markup {
    use std::collections::BTreeMap;
    // (family, protocol) -> one bit per port.
    let mut sets: BTreeMap<(&'static str, u8), Vec<u64>> = BTreeMap::new();
    for g in groups {
        let (Some(proto), Some(ranges)) = (g.protocol, g.dst_ports.as_deref()) else {
            continue;
        };
        let bits = sets
            .entry((g.family.name(), proto))
            .or_insert_with(|| vec![0u64; 65536 / 64]);
        for part in ranges.split(',').filter(|p| !p.is_empty()) {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.parse::<u16>(), b.parse::<u16>()),
                None => (part.parse::<u16>(), part.parse::<u16>()),
            };
            let (Ok(a), Ok(b)) = (a, b) else { continue };
            for port in a..=b {
                bits[usize::from(port) / 64] |= 1u64 << (port % 64);
            }
        }
    }
    let proto_name = |p: u8| match p {
        6 => "TCP".to_string(),
        17 => "UDP".to_string(),
        132 => "SCTP".to_string(),
        33 => "DCCP".to_string(),
        136 => "UDP-Lite".to_string(),
        n => format!("protocol {n}"),
    };
    let width = 65536 / PORTS_PER_PIXEL;
    html! {
        @for ((family, proto), bits) in &sets {
            @let total: u32 = bits.iter().map(|w| w.count_ones()).sum();
            figure class="strip" {
                figcaption { (family) " " (proto_name(*proto)) ": "
                    span class="strip-total" { (total) } " of 65536 destination ports leaked" }
                svg width=(width) height="22" viewBox={ "0 0 " (width) " 22" } role="img"
                    aria-label={ (family) " " (proto_name(*proto)) " leaked ports" } {
                    rect x="0" y="0" width=(width) height="16" fill="#eeeeee" {}
                    @for (i, w) in bits.iter().enumerate() {
                        @if *w != 0 {
                            rect x=(i) y="0" width="1" height="16" fill="#b3261e"
                                fill-opacity=(format!("{:.2}", f64::from(w.count_ones()) / 64.0)) {}
                        }
                    }
                    @for x in [0, width / 4, width / 2, 3 * width / 4] {
                        rect x=(x) y="16" width="1" height="6" fill="#666666" {}
                    }
                }
                div class="muted" { "ports 0 … 65535, 64 to a pixel" }
            }
        }
    }
}

/// The table of leak groups (one row each), as on the watch page.
pub fn groups_table(groups: &[GroupReport]) -> Markup {
    html! {
        table {
            tr { th { "family" } th { "what" } th { "packets" } th { "where" } th { "origin" } th { "rule" } }
            @for g in groups {
                tr {
                    td { (g.family.name()) }
                    td { (g.what) }
                    td class="n" { (g.packets) }
                    td { (g.detail) }
                    td { (g.origin) }
                    td { code { (g.rule.to_string()) } }
                }
            }
        }
    }
}
