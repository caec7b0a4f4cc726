//! A user's gateway ruleset as the lab loads it (`leaktest lab --ruleset`):
//! its format (nftables, or iptables-save and ip6tables-save files), the
//! sysctls it needs, the verdict its author expects, and the diagnostics
//! that name what keeps it from working in the lab before any sweep runs.
//!
//! A ruleset is data: it is loaded with `nft -f` or `iptables-nft-restore`
//! / `ip6tables-nft-restore` inside the gateway's namespace, never run as a
//! script.

use crate::plan::*;
use crate::LabError;
use leaktest_watch::Verdict;
use std::collections::BTreeSet;

/// How a ruleset file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RulesetFormat {
    /// An nftables script (`nft -f`); `flush ruleset` is put first unless
    /// it is there.
    Nft,
    /// `iptables-save` output (and optionally `ip6tables-save` output),
    /// loaded with the nftables-backed restore tools. Without an IPv6 file
    /// IPv6 has no rules, as on a machine whose tool writes none.
    Iptables,
}

impl std::str::FromStr for RulesetFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nft" | "nftables" => Ok(RulesetFormat::Nft),
            "iptables" => Ok(RulesetFormat::Iptables),
            _ => Err(format!("unknown format {s:?} (nft or iptables)")),
        }
    }
}

/// What kind of box the ruleset protects (`leaktest lab --mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// A Tor gateway with a workstation behind it (Whonix-Gateway): tor's
    /// ports on the internal addresses; all three sweeps; the works-check
    /// fetches a page through Tor from the workstation.
    #[default]
    Gateway,
    /// One machine protecting itself (Tails-like, transparent-Tor tools):
    /// tor's TransPort and DNSPort on 127.0.0.1; the sweeps from the host
    /// as root and as an unprivileged uid; the works-check per [`Check`].
    Host,
    /// A VPN kill switch with the tunnel down: no anonymizer may be used,
    /// nothing may leave but the `--allow` endpoints; all three sweeps; no
    /// works-check, and no Tor network needed.
    Killswitch,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gateway" => Ok(Mode::Gateway),
            "host" => Ok(Mode::Host),
            "killswitch" => Ok(Mode::Killswitch),
            _ => Err(format!("unknown mode {s:?} (gateway, host or killswitch)")),
        }
    }
}

/// How a host (`--mode host`) shows it works (`--check`): an unprivileged
/// process fetches the lab's page and the web server must see an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Check {
    /// A plain lookup (UDP 53 to the lab's resolver) and connection, which
    /// the ruleset must take to DNSPort and TransPort.
    #[default]
    Trans,
    /// Through tor's SocksPort (a Tails-like host has no transparent proxy).
    Socks,
    /// No works-check.
    None,
}

impl std::str::FromStr for Check {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "trans" => Ok(Check::Trans),
            "socks" => Ok(Check::Socks),
            "none" => Ok(Check::None),
            _ => Err(format!("unknown check {s:?} (trans, socks or none)")),
        }
    }
}

/// A user's ruleset and how to judge it.
#[derive(Clone, Debug)]
pub struct UserRuleset {
    /// Its file name, for reports.
    pub name: String,
    pub format: RulesetFormat,
    /// The nftables script, or the `iptables-save` text.
    pub text: String,
    /// The `ip6tables-save` text (`--format iptables` only).
    pub text6: Option<String>,
    /// Sysctls set in the gateway's namespace after the lab's defaults
    /// (forwarding off), `--sysctl KEY=VALUE`.
    pub sysctls: Vec<(String, String)>,
    /// The verdict the author expects (`--expect`): the lab's run matches
    /// when the verdict is this one.
    pub expect: Verdict,
    pub mode: Mode,
    /// The works-check of `--mode host`.
    pub check: Check,
    /// Endpoints let out on purpose (watch `--allow` syntax), besides the
    /// lab's own.
    pub allow: Vec<String>,
    /// The exact findings the run must give (a built-in class profile's),
    /// notes aside; `None`: the verdict alone is compared.
    pub findings: Option<Vec<String>>,
    /// The gateway's tor reaches the network only through the lab's obfs4
    /// bridge (`--bridge`).
    pub bridge: bool,
}

impl UserRuleset {
    /// The same ruleset with [`TOR_UID_PLACEHOLDER`] replaced by `uid`.
    pub fn with_tor_uid(&self, uid: u32) -> UserRuleset {
        let uid = uid.to_string();
        UserRuleset {
            text: self.text.replace(TOR_UID_PLACEHOLDER, &uid),
            text6: self
                .text6
                .as_ref()
                .map(|t| t.replace(TOR_UID_PLACEHOLDER, &uid)),
            ..self.clone()
        }
    }
}

/// Written in a ruleset, replaced by the uid the lab's tor runs as (so a
/// ruleset that names tor's uid runs unchanged on any machine).
pub const TOR_UID_PLACEHOLDER: &str = "@TOR_UID@";

/// A built-in profile of a class of real-world mistake (issue 9's classes
/// 1, 2 and 5 to 9; classes 3 and 4 are the model profiles `tcp-forward`
/// and `forward-no-nat`): a small ruleset written in the style of the
/// tool class, its mode, and its exact expected findings, measured in
/// this lab.
#[derive(Clone, Debug)]
pub struct ClassProfile {
    pub name: &'static str,
    pub class: u8,
    /// One line: what it gets wrong.
    pub about: &'static str,
    pub mode: Mode,
    pub check: Check,
    pub text: &'static str,
    pub allow: &'static [&'static str],
    /// Sysctls of the box (a forwarding gateway's forwarding on).
    pub sysctls: &'static [(&'static str, &'static str)],
    pub findings: &'static [&'static str],
}

impl ClassProfile {
    /// The profile as a ruleset for the lab (`expect` from its findings).
    pub fn ruleset(&self) -> UserRuleset {
        UserRuleset {
            name: self.name.to_string(),
            format: RulesetFormat::Nft,
            text: self.text.to_string(),
            text6: None,
            sysctls: self
                .sysctls
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            expect: if self.findings.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Leak
            },
            mode: self.mode,
            check: self.check,
            allow: self.allow.iter().map(|a| a.to_string()).collect(),
            findings: Some(self.findings.iter().map(|f| f.to_string()).collect()),
            bridge: false,
        }
    }
}

/// The built-in class profiles, by class.
pub fn classes() -> Vec<ClassProfile> {
    vec![
        ClassProfile {
            name: "host-ipv4-only",
            class: 1,
            about: "a transparent-Tor host tool that filters IPv4 only: all IPv6 from the host leaves",
            mode: Mode::Host,
            check: Check::Trans,
            text: include_str!("../rulesets/class-host-ipv4-only.nft"),
            allow: &[],
            sysctls: &[],
            findings: CLASS_HOST_IPV4_ONLY,
        },
        ClassProfile {
            name: "host-output-accept",
            class: 2,
            about: "a transparent-Tor host tool whose output chain ends in accept: non-SYN TCP, ICMP, other protocols and UDP but 53 leave",
            mode: Mode::Host,
            check: Check::Trans,
            text: include_str!("../rulesets/class-host-output-accept.nft"),
            allow: &[],
            sysctls: &[],
            findings: CLASS_HOST_OUTPUT_ACCEPT,
        },
        ClassProfile {
            name: "gateway-echo",
            class: 5,
            about: "a Tor gateway that forwards and masquerades its clients' ICMP echo: pings leave with the gateway's address",
            mode: Mode::Gateway,
            check: Check::Trans,
            text: include_str!("../rulesets/class-gateway-echo.nft"),
            allow: &[],
            sysctls: &[("net.ipv4.ip_forward", "1"), ("net.ipv6.conf.all.forwarding", "1")],
            findings: CLASS_GATEWAY_ECHO,
        },
        ClassProfile {
            name: "killswitch-any-destination",
            class: 6,
            about: "a kill switch that accepts DNS and the VPN's port without naming a destination: a hole to the whole internet while blocked",
            mode: Mode::Killswitch,
            check: Check::None,
            text: include_str!("../rulesets/class-killswitch-any-destination.nft"),
            allow: &["udp:198.51.100.7:51820"],
            sysctls: &[],
            findings: CLASS_KILLSWITCH_ANY_DESTINATION,
        },
        ClassProfile {
            name: "killswitch-drop-behind-accept",
            class: 7,
            about: "a kill switch whose drop is appended behind a rule that already accepts: everything leaves",
            mode: Mode::Killswitch,
            check: Check::None,
            text: include_str!("../rulesets/class-killswitch-drop-behind-accept.nft"),
            allow: &["udp:198.51.100.7:51820"],
            sysctls: &[],
            findings: CLASS_KILLSWITCH_DROP_BEHIND_ACCEPT,
        },
        ClassProfile {
            name: "killswitch-ipv4-only",
            class: 8,
            about: "a kill-switch recipe written for IPv4 only: all IPv6 leaves",
            mode: Mode::Killswitch,
            check: Check::None,
            text: include_str!("../rulesets/class-killswitch-ipv4-only.nft"),
            allow: &["udp:198.51.100.7:51820"],
            sysctls: &[],
            findings: CLASS_KILLSWITCH_IPV4_ONLY,
        },
        ClassProfile {
            name: "gateway-nd-any-user",
            class: 9,
            about: "a Whonix-style gateway whose output accepts neighbour discovery for every user at any hop limit: seen with the router in the neighbour cache",
            mode: Mode::Gateway,
            check: Check::Trans,
            text: include_str!("../rulesets/class-gateway-nd-any-user.nft"),
            allow: &[],
            sysctls: &[],
            findings: CLASS_GATEWAY_ND_ANY_USER,
        },
    ]
}

// The findings each class profile gives in this lab (measured with
// `leaktest lab --profile NAME`; `lab_e2e` runs them all), per sweep,
// family and suite. The senders' RSTs to the target's SYN-ACKs (`[R]`
// lines) are reported but not pinned: whether a redirected connection's
// 4-tuple is reused by a later sweep decides a few of them.
const CLASS_HOST_IPV4_ONLY: &[&str] = &[
    "gw-root ipv6 icmp ×256",
    "gw-root ipv6 ip ×256",
    "gw-root ipv6 tcp ×327680",
    "gw-root ipv6 udp ×65536",
    "gw-root ipv6 flags ×68352",
    "gw-root ipv6 icmp-codes ×2560",
    "gw-root ipv6 lan ×27",
    "gw-user ipv6 icmp ×256",
    "gw-user ipv6 ip ×256",
    "gw-user ipv6 tcp ×327680",
    "gw-user ipv6 udp ×65536",
    "gw-user ipv6 flags ×68352",
    "gw-user ipv6 icmp-codes ×2560",
    "gw-user ipv6 lan ×27",
];
const CLASS_HOST_OUTPUT_ACCEPT: &[&str] = &[
    "gw-root ipv4 icmp ×256",
    "gw-root ipv4 ip ×256",
    "gw-root ipv4 tcp ×262144",
    "gw-root ipv4 udp ×65535",
    "gw-root ipv4 flags ×2640",
    "gw-root ipv4 icmp-codes ×1280",
    "gw-root ipv4 lan ×16",
    "gw-root ipv6 icmp ×256",
    "gw-root ipv6 ip ×256",
    "gw-root ipv6 tcp ×262144",
    "gw-root ipv6 udp ×65535",
    "gw-root ipv6 flags ×2640",
    "gw-root ipv6 icmp-codes ×2560",
    "gw-root ipv6 lan ×12",
    "gw-user ipv4 icmp ×256",
    "gw-user ipv4 ip ×256",
    "gw-user ipv4 tcp ×262144",
    "gw-user ipv4 udp ×65535",
    "gw-user ipv4 flags ×2640",
    "gw-user ipv4 icmp-codes ×1280",
    "gw-user ipv4 lan ×16",
    "gw-user ipv6 icmp ×256",
    "gw-user ipv6 ip ×256",
    "gw-user ipv6 tcp ×262144",
    "gw-user ipv6 udp ×65535",
    "gw-user ipv6 flags ×2640",
    "gw-user ipv6 icmp-codes ×2560",
    "gw-user ipv6 lan ×12",
];
const CLASS_GATEWAY_ECHO: &[&str] = &[
    "ws ipv4 icmp ×1",
    "ws ipv4 icmp-codes ×256",
    "ws ipv4 ipopt ×5",
    "ws ipv4 lan ×7",
    "ws ipv4 spoof ×1",
    "ws ipv6 icmp ×1",
    "ws ipv6 icmp-codes ×256",
    "ws ipv6 ipopt ×2",
    "ws ipv6 ext6 ×13",
    "ws ipv6 lan ×5",
    "ws ipv6 spoof ×1",
];
const CLASS_KILLSWITCH_ANY_DESTINATION: &[&str] = &[
    "gw-root ipv4 udp ×2",
    "gw-root ipv4 lan ×10",
    "gw-root ipv6 udp ×2",
    "gw-root ipv6 lan ×6",
    "gw-user ipv4 udp ×2",
    "gw-user ipv4 lan ×10",
    "gw-user ipv6 udp ×2",
    "gw-user ipv6 lan ×6",
];
const CLASS_KILLSWITCH_DROP_BEHIND_ACCEPT: &[&str] = &[
    "gw-root ipv4 icmp ×256",
    "gw-root ipv4 ip ×256",
    "gw-root ipv4 tcp ×327680",
    "gw-root ipv4 udp ×65536",
    "gw-root ipv4 flags ×68352",
    "gw-root ipv4 icmp-codes ×1280",
    "gw-root ipv4 lan ×39",
    "gw-root ipv6 icmp ×256",
    "gw-root ipv6 ip ×256",
    "gw-root ipv6 tcp ×327680",
    "gw-root ipv6 udp ×65536",
    "gw-root ipv6 flags ×68352",
    "gw-root ipv6 icmp-codes ×2560",
    "gw-root ipv6 lan ×27",
    "gw-user ipv4 icmp ×256",
    "gw-user ipv4 ip ×256",
    "gw-user ipv4 tcp ×327680",
    "gw-user ipv4 udp ×65536",
    "gw-user ipv4 flags ×68352",
    "gw-user ipv4 icmp-codes ×1280",
    "gw-user ipv4 lan ×39",
    "gw-user ipv6 icmp ×256",
    "gw-user ipv6 ip ×256",
    "gw-user ipv6 tcp ×327680",
    "gw-user ipv6 udp ×65536",
    "gw-user ipv6 flags ×68352",
    "gw-user ipv6 icmp-codes ×2560",
    "gw-user ipv6 lan ×27",
];
const CLASS_KILLSWITCH_IPV4_ONLY: &[&str] = &[
    "gw-root ipv6 icmp ×256",
    "gw-root ipv6 ip ×256",
    "gw-root ipv6 tcp ×327680",
    "gw-root ipv6 udp ×65536",
    "gw-root ipv6 flags ×68352",
    "gw-root ipv6 icmp-codes ×2560",
    "gw-root ipv6 lan ×27",
    "gw-user ipv6 icmp ×256",
    "gw-user ipv6 ip ×256",
    "gw-user ipv6 tcp ×327680",
    "gw-user ipv6 udp ×65536",
    "gw-user ipv6 flags ×68352",
    "gw-user ipv6 icmp-codes ×2560",
    "gw-user ipv6 lan ×27",
];
const CLASS_GATEWAY_ND_ANY_USER: &[&str] = &[
    "gw-root ipv6 icmp ×4",
    "gw-root ipv6 icmp-codes ×1024",
    "gw-user ipv6 icmp ×4",
    "gw-user ipv6 icmp-codes ×1024",
];

/// Checks a `--sysctl KEY=VALUE` argument. Only keys that live in a network
/// namespace are accepted (`net.ipv4.`, `net.ipv6.`, `net.netfilter.`,
/// `net.core.` ones that the namespace owns are not all per-namespace, so
/// they are refused): anything else would change the host itself.
pub fn parse_sysctl(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    let (k, v) = (k.trim(), v.trim());
    let per_netns = ["net.ipv4.", "net.ipv6.", "net.netfilter."];
    if !per_netns.iter().any(|p| k.starts_with(p)) {
        return Err(format!(
            "{k}: only per-namespace network keys (net.ipv4.*, net.ipv6.*, net.netfilter.*) can be set in the lab's gateway"
        ));
    }
    // Global on kernels before 5.12 though written from a namespace.
    let global = [
        "net.netfilter.nf_conntrack_max",
        "net.netfilter.nf_conntrack_expect_max",
        "net.netfilter.nf_conntrack_buckets",
    ];
    if global.contains(&k) {
        return Err(format!("{k}: shared with the host on some kernels"));
    }
    if k.contains("..") || k.contains('/') || v.is_empty() || v.contains('\n') {
        return Err(format!("{s:?}: not a sysctl setting"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// What the ruleset's text names, as far as the diagnostics need it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Named {
    /// Interface names in `iifname`/`oifname`/`iif`/`oif` (nft) or
    /// `-i`/`-o` (iptables); a trailing `*` or `+` is a wildcard.
    pub interfaces: BTreeSet<String>,
    /// Users in `skuid` (nft) or `--uid-owner` (iptables), as written.
    pub users: BTreeSet<String>,
    /// Ports UDP 53 is redirected to (`redirect to :P`, `dnat to …:P`,
    /// `--to-ports P`, `--to-destination …:P`).
    pub dns_ports: BTreeSet<u16>,
    /// Ports TCP is redirected to, the same way.
    pub tcp_redirect_ports: BTreeSet<u16>,
}

/// Splits a line into tokens: words, quoted strings (unquoted), and the
/// punctuation `{ } , ;` on its own.
fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                if !quoted {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ if quoted => cur.push(c),
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            '{' | '}' | ',' | ';' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(c.to_string());
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `line` up to a `#` that is not inside a quoted string.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// The values after token `i` (a keyword): one word, or a `{ a, b }` set;
/// `==` and `!=` are skipped.
fn values(t: &[String], i: usize) -> Vec<String> {
    let mut j = i + 1;
    while t.get(j).is_some_and(|x| x == "==" || x == "!=" || x == "!") {
        j += 1;
    }
    match t.get(j).map(String::as_str) {
        Some("{") => t[j + 1..]
            .iter()
            .take_while(|x| *x != "}")
            .filter(|x| *x != ",")
            .cloned()
            .collect(),
        Some(v) => vec![v.to_string()],
        None => vec![],
    }
}

/// The port at the end of a redirect or DNAT target (`:9040`, `9040`,
/// `10.152.152.10:5300`, `[fd19::10]:5300`, `9040-9041` takes the first).
fn port_of(v: &str) -> Option<u16> {
    let p = if let Some(rest) = v.strip_prefix('[') {
        rest.split_once("]:")?.1
    } else if v.matches(':').count() == 1 {
        v.split_once(':')?.1
    } else if v.contains(':') {
        return None; // an IPv6 address without a port
    } else {
        v
    };
    p.split('-').next()?.parse().ok()
}

/// Reads what a ruleset names (comments skipped).
pub fn named(text: &str, format: RulesetFormat) -> Named {
    let mut n = Named::default();
    for raw in text.lines() {
        let line = strip_comment(raw);
        let t = tokens(line);
        let has = |w: &str| t.iter().any(|x| x == w);
        let udp53 = match format {
            RulesetFormat::Nft => t.windows(2).enumerate().any(|(i, w)| {
                w[0] == "udp"
                    && w[1] == "dport"
                    && values(&t, i + 1).iter().any(|v| v == "53" || v == "domain")
            }),
            RulesetFormat::Iptables => {
                (has("udp") || has("-p") && line.contains("udp"))
                    && t.windows(2).any(|w| {
                        (w[0] == "--dport" || w[0] == "--destination-port") && w[1] == "53"
                    })
            }
        };
        let tcp = has("tcp");
        for (i, w) in t.iter().enumerate() {
            // `fib saddr . iif oif missing`: keys of a fib lookup, not matches.
            let in_fib = t[..i].iter().any(|x| x == "fib")
                && (i > 0 && t[i - 1] == "."
                    || t.get(i + 1).is_some_and(|n| {
                        matches!(
                            n.as_str(),
                            "." | "oif" | "oifname" | "missing" | "exists" | "type"
                        )
                    }));
            match (format, w.as_str()) {
                (RulesetFormat::Nft, "iifname" | "oifname" | "iif" | "oif") if in_fib => {}
                (RulesetFormat::Nft, "iifname" | "oifname" | "iif" | "oif")
                | (RulesetFormat::Iptables, "-i" | "-o" | "--in-interface" | "--out-interface") => {
                    n.interfaces.extend(
                        values(&t, i).into_iter().filter(|v| {
                            v != "vmap" && v != "map" && v != "." && !v.starts_with('@')
                        }),
                    )
                }
                (RulesetFormat::Nft, "skuid") | (RulesetFormat::Iptables, "--uid-owner") => n
                    .users
                    .extend(values(&t, i).into_iter().filter(|v| !v.starts_with('@'))),
                (RulesetFormat::Nft, "redirect" | "dnat") => {
                    // `redirect to :P`, `dnat to ADDR:P`, `dnat ip to ADDR:P`.
                    let target = t[i + 1..]
                        .iter()
                        .skip_while(|x| *x != "to")
                        .nth(1)
                        .and_then(|v| port_of(v));
                    if let Some(p) = target {
                        if udp53 {
                            n.dns_ports.insert(p);
                        } else if tcp {
                            n.tcp_redirect_ports.insert(p);
                        }
                    }
                }
                (RulesetFormat::Iptables, "--to-ports" | "--to-destination") => {
                    if let Some(p) = t.get(i + 1).and_then(|v| port_of(v)) {
                        if udp53 {
                            n.dns_ports.insert(p);
                        } else if tcp {
                            n.tcp_redirect_ports.insert(p);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    n
}

/// The lab gateway's interfaces, for the diagnostics.
const LAB_INTERFACES: [&str; 3] = ["lo", GW_EXT_IF, GW_INT_IF];

fn interface_exists(name: &str) -> bool {
    match name.strip_suffix(['*', '+']) {
        Some(prefix) => LAB_INTERFACES.iter().any(|i| i.starts_with(prefix)),
        None => LAB_INTERFACES.contains(&name),
    }
}

/// Lines naming what in the ruleset does not fit the lab, each with its
/// fix: interfaces the gateway lacks, users nothing runs as (and tor's uid
/// never named), DNS or TCP redirected to ports where tor does not listen.
/// `tor_uid` is the uid the lab's tor runs as; `uid_of` resolves a user
/// name (the passwd database).
pub fn diagnose(
    r: &UserRuleset,
    tor: &crate::gateway::GatewayTor,
    uid_of: &dyn Fn(&str) -> Option<u32>,
) -> Vec<String> {
    let tor_uid = tor.uid;
    let mut out = Vec::new();
    let mut n = named(&r.text, r.format);
    if let Some(t6) = &r.text6 {
        let n6 = named(t6, r.format);
        n.interfaces.extend(n6.interfaces);
        n.users.extend(n6.users);
        n.dns_ports.extend(n6.dns_ports);
        n.tcp_redirect_ports.extend(n6.tcp_redirect_ports);
    }
    for i in &n.interfaces {
        // A kill switch's tunnel is down by design.
        let tunnel = ["tun", "tap", "wg", "ppp"].iter().any(|p| i.starts_with(p));
        let down_by_design = r.mode == Mode::Killswitch && tunnel;
        if !interface_exists(i) && !down_by_design {
            out.push(format!(
                "the ruleset names interface {i:?}, which the lab's gateway does not have: it has {GW_EXT_IF} (uplink), {GW_INT_IF} (internal) and lo, as a Whonix-Gateway (`leaktest lab plan`)"
            ));
        }
    }
    let lab_uids = [tor_uid, 0, crate::suite::UNPRIVILEGED_UID];
    let mut tor_named = false;
    for u in &n.users {
        if let Some((a, b)) = u.split_once('-') {
            if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                // A range of uids: only whether tor's is in it matters.
                tor_named |= (a..=b).contains(&tor_uid);
                continue;
            }
        }
        let uid = u.parse::<u32>().ok().or_else(|| uid_of(u));
        match uid {
            Some(x) if x == tor_uid => tor_named = true,
            Some(x) if lab_uids.contains(&x) => {}
            Some(x) => out.push(format!(
                "the ruleset names uid {x}{}, which nothing in the lab runs as (tor runs as uid {tor_uid}, the sweeps as 0 and {}): if it is tor's uid on your gateway, pass --tor-user {x}",
                if u.parse::<u32>().is_ok() { String::new() } else { format!(" ({u})") },
                crate::suite::UNPRIVILEGED_UID
            )),
            None => out.push(format!(
                "the ruleset names user {u:?}, which has no passwd entry here: pass tor's user by number in the ruleset and --tor-user UID"
            )),
        }
    }
    if !n.users.is_empty() && !tor_named {
        out.push(format!(
            "tor runs as uid {tor_uid}, which the ruleset never names: its own traffic will be dropped (--tor-user NAME|UID runs tor as the user the ruleset lets out)"
        ));
    }
    for p in &n.dns_ports {
        if *p != tor.dns_port {
            out.push(format!(
                "DNS (UDP 53) is redirected to port {p}, where nothing listens on the lab's gateway: tor's DNSPort is {} (--torrc 'DNSPort ...' moves it)",
                tor.dns_port
            ));
        }
    }
    for p in &n.tcp_redirect_ports {
        if *p != tor.trans_port {
            out.push(format!(
                "TCP is redirected to port {p}, where nothing listens on the lab's gateway: tor's TransPort is {} (--torrc 'TransPort ...' moves it)",
                tor.trans_port
            ));
        }
    }
    // A kill switch has no tor: its uid rules are not tor's.
    if r.mode == Mode::Killswitch {
        out.retain(|l| !l.contains("tor runs as uid") && !l.contains("nothing in the lab runs as"));
    }
    out
}

/// Everything the lab loads for `r`: the sysctl defaults (forwarding off)
/// then the user's, in order.
pub fn sysctls(r: &UserRuleset) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = crate::profiles::Policy::WHONIX
        .sysctls()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.extend(r.sysctls.iter().cloned());
    v
}

/// Refuses what would make a ruleset more than data for the lab: nft's
/// `include` (it reads any file of the host, as root, and echoes it in
/// errors).
pub fn check_data(text: &str, format: RulesetFormat) -> Result<(), LabError> {
    if format == RulesetFormat::Nft {
        for (n, l) in text.lines().enumerate() {
            if l.split_whitespace().next() == Some("include") {
                return Err(LabError::Missing(format!(
                    "a ruleset without `include` (line {}): the lab loads one file as data; put the included rules in it",
                    n + 1
                )));
            }
        }
    }
    Ok(())
}

/// Reads a ruleset's files for the lab. `path6` only with
/// [`RulesetFormat::Iptables`].
pub fn read(
    path: &std::path::Path,
    path6: Option<&std::path::Path>,
    format: RulesetFormat,
) -> Result<(String, Option<String>), LabError> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| LabError::Io(format!("reading {}", p.display()), e))
    };
    let text = read(path)?;
    check_data(&text, format)?;
    let text6 = match (path6, format) {
        (Some(p), RulesetFormat::Iptables) => Some(read(p)?),
        (Some(_), RulesetFormat::Nft) => return Err(LabError::Missing(
            "--format iptables for an IPv6 rules file (an nftables ruleset holds both families)"
                .into(),
        )),
        (None, _) => None,
    };
    Ok((text, text6))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str, format: RulesetFormat) -> UserRuleset {
        UserRuleset {
            name: "t".into(),
            format,
            text: text.into(),
            text6: None,
            sysctls: vec![],
            expect: Verdict::Pass,
            mode: Mode::Gateway,
            check: Check::Trans,
            allow: vec![],
            findings: None,
            bridge: false,
        }
    }

    const WHONIX_NFT: &str = r#"
table inet filter {
  chain rpfilter {
    type filter hook prerouting priority raw; policy accept;
    iifname "eth1" fib saddr . iif oif missing drop
    fib daddr . iif type local accept
  }
  chain prerouting {
    type nat hook prerouting priority dstnat;
    iifname "eth1" udp dport 53 redirect to :5300
    iifname "eth1" tcp flags & (fin|syn|rst|ack) == syn redirect to :9040
  }
  chain output {
    type filter hook output priority filter; policy drop;
    oifname "lo" accept
    meta skuid 103 accept # tor
  }
}
"#;

    #[test]
    fn reads_interfaces_users_and_redirect_ports() {
        let n = named(WHONIX_NFT, RulesetFormat::Nft);
        assert_eq!(
            n.interfaces.iter().map(String::as_str).collect::<Vec<_>>(),
            ["eth1", "lo"]
        );
        assert_eq!(
            n.users.iter().map(String::as_str).collect::<Vec<_>>(),
            ["103"]
        );
        assert_eq!(n.dns_ports.iter().copied().collect::<Vec<_>>(), [5300]);
        assert_eq!(
            n.tcp_redirect_ports.iter().copied().collect::<Vec<_>>(),
            [9040]
        );
        let ipt = "*nat\n-A PREROUTING -i eth1 -p udp -m udp --dport 53 -j REDIRECT --to-ports 5400\n\
                   -A PREROUTING -i eth1 -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j REDIRECT --to-ports 9040\n\
                   COMMIT\n*filter\n-A OUTPUT -o eth0 -m owner --uid-owner debian-tor -j ACCEPT\n-A OUTPUT ! -o wlan+ -j DROP\nCOMMIT\n";
        let n = named(ipt, RulesetFormat::Iptables);
        assert_eq!(
            n.interfaces.iter().map(String::as_str).collect::<Vec<_>>(),
            ["eth0", "eth1", "wlan+"]
        );
        assert_eq!(n.dns_ports.iter().copied().collect::<Vec<_>>(), [5400]);
        assert_eq!(
            n.tcp_redirect_ports.iter().copied().collect::<Vec<_>>(),
            [9040]
        );
        assert_eq!(
            n.users.iter().map(String::as_str).collect::<Vec<_>>(),
            ["debian-tor"]
        );
    }

    fn tor(uid: u32) -> crate::gateway::GatewayTor {
        crate::gateway::GatewayTor {
            dir: "/nonexistent".into(),
            uid,
            gid: uid,
            trans_port: TRANS_PORT,
            dns_port: DNS_PORT,
            socks_port: SOCKS_PORT,
        }
    }

    #[test]
    fn each_misfit_is_one_line_with_its_fix() {
        let none = |_: &str| None;
        // Written for this lab: nothing to say.
        assert_eq!(
            diagnose(&user(WHONIX_NFT, RulesetFormat::Nft), &tor(103), &none),
            Vec::<String>::new()
        );
        // Tor runs as another uid here.
        let d = diagnose(&user(WHONIX_NFT, RulesetFormat::Nft), &tor(102), &none);
        assert_eq!(d.len(), 2, "{d:#?}");
        assert!(
            d[0].contains("uid 103") && d[0].contains("--tor-user 103"),
            "{d:?}"
        );
        assert!(d[1].contains("never names"), "{d:?}");
        // Other interface names and a DNS port nothing listens on.
        let other = WHONIX_NFT.replace("eth1", "int0").replace(":5300", ":5353");
        let d = diagnose(&user(&other, RulesetFormat::Nft), &tor(103), &none);
        assert_eq!(d.len(), 2, "{d:#?}");
        assert!(d[0].contains("\"int0\"") && d[0].contains("eth1 (internal)"));
        assert!(d[1].contains("port 5353") && d[1].contains("DNSPort is 5300"));
        // Wildcards match the lab's names.
        let wild = WHONIX_NFT.replace("\"eth1\"", "\"eth*\"");
        assert!(diagnose(&user(&wild, RulesetFormat::Nft), &tor(103), &none).is_empty());
        // A user name resolved by the passwd database.
        let named_user = WHONIX_NFT.replace("skuid 103", "skuid debian-tor");
        let uid_of = |n: &str| (n == "debian-tor").then_some(103);
        assert!(diagnose(&user(&named_user, RulesetFormat::Nft), &tor(103), &uid_of).is_empty());
        let d = diagnose(&user(&named_user, RulesetFormat::Nft), &tor(103), &none);
        assert!(d[0].contains("no passwd entry"), "{d:?}");
    }

    #[test]
    fn sets_maps_ranges_ports_and_quoted_comments() {
        let t = r#"
  iifname vmap { "eth1" : jump a, "eth0" : jump b }
  oifname @uplinks accept
  meta skuid 0-999 accept
  udp dport { 53, 5353 } dnat to [fd19::10]:5300 comment "see # here"
  ip6 daddr fd19::10 dnat to fd19::10
  fib daddr . iif type local accept
  iifname . ip saddr { "eth1" . 10.0.0.1 } accept
"#;
        let n = named(t, RulesetFormat::Nft);
        assert!(n.interfaces.is_empty(), "{n:?}");
        assert_eq!(n.dns_ports.iter().copied().collect::<Vec<_>>(), [5300]);
        assert!(n.tcp_redirect_ports.is_empty(), "{n:?}");
        assert_eq!(
            n.users.iter().map(String::as_str).collect::<Vec<_>>(),
            ["0-999"]
        );
        let r = UserRuleset {
            text: t.into(),
            ..user("", RulesetFormat::Nft)
        };
        let d = diagnose(&r, &tor(103), &|_| None);
        assert!(
            !d.iter().any(|l| l.contains("uid") || l.contains("user")),
            "{d:?}"
        );
        assert!(check_data("include \"/etc/shadow\"\n", RulesetFormat::Nft).is_err());
        assert!(check_data("# include is a word\n", RulesetFormat::Nft).is_ok());
    }

    #[test]
    fn only_namespace_sysctls_are_accepted() {
        assert_eq!(
            parse_sysctl("net.ipv4.ip_forward=1"),
            Ok(("net.ipv4.ip_forward".into(), "1".into()))
        );
        assert!(parse_sysctl("net.ipv6.conf.all.forwarding = 1").is_ok());
        for bad in [
            "kernel.panic=1",
            "vm.swappiness=1",
            "net.core.rmem_max=1",
            "net.ipv4.ip_forward",
            "net.ipv4.ip_forward=",
            "net.ipv4/../../x=1",
            "net.netfilter.nf_conntrack_max=1",
        ] {
            assert!(parse_sysctl(bad).is_err(), "{bad}");
        }
    }
}
