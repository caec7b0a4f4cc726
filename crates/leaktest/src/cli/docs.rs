//! `leaktest man` and `leaktest completions`: manual pages and shell
//! completions generated from the same clap definition as `--help`
//! (`clap_mangen`, `clap_complete`), so they cannot drift from it. Every
//! page gets EXAMPLES and EXIT STATUS sections from the tables below.

use anyhow::{bail, Context};
use clap::CommandFactory;
use roff::{bold, roman, Roff};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_long_help = "Examples:
  leaktest man                        # leaktest(1) on stdout
  leaktest man watch | man -l -       # read leaktest-watch(1)
  leaktest man --dir /usr/local/share/man/man1")]
pub struct ManArgs {
    /// The page of this subcommand (e.g. `watch`, `tor restore`); default: leaktest(1)
    #[arg(value_name = "SUBCOMMAND")]
    command: Vec<String>,
    /// Write every page (leaktest.1, leaktest-probe.1, ...) into this directory instead
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    dir: Option<PathBuf>,
}

#[derive(clap::Args)]
#[command(after_long_help = "Examples:
  leaktest completions bash > /etc/bash_completion.d/leaktest
  leaktest completions zsh > /usr/local/share/zsh/site-functions/_leaktest
  leaktest completions fish > ~/.config/fish/completions/leaktest.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// (command line, what it does) for a page, by the page's name.
fn examples(page: &str) -> &'static [(&'static str, &'static str)] {
    match page {
        "leaktest" => &[
            (
                "leaktest watch --iface eth0 --tor-control 127.0.0.1:9051 --json watch.json",
                "on the gateway: capture and judge every frame leaving eth0",
            ),
            (
                "leaktest probe --target 203.0.113.7 --target6 2001:db8::7",
                "on the workstation: send every probe towards an address beyond the gateway",
            ),
            ("leaktest lab", "build the lab in namespaces and check every verdict"),
        ],
        "leaktest-probe" => &[
            (
                "leaktest probe --target 203.0.113.7",
                "IPv4 only, the whole catalogue at 10,000 pps (about 40 s)",
            ),
            (
                "leaktest probe --target 203.0.113.7 --target6 2001:db8::7 --json run.json",
                "both families, with the JSON report",
            ),
            (
                "leaktest probe --target 203.0.113.7 --suite udp,frag --rate 50k",
                "two suites at 50,000 pps",
            ),
            (
                "leaktest probe --target 203.0.113.7 --socket raw",
                "on the gateway itself, through its own stack and firewall",
            ),
        ],
        "leaktest-watch" => &[
            (
                "leaktest watch --iface eth0 --tor-control 127.0.0.1:9051 --duration 120 --json watch.json",
                "two minutes, Tor's relays from its control port",
            ),
            (
                "leaktest watch --iface eth0 --tor-control /run/tor/control --families both --junit leaktest.xml",
                "a JUnit report for CI",
            ),
            (
                "leaktest watch --iface eth0 --allow udp:198.51.100.0/24:51820",
                "a VPN box: its WireGuard servers are let out on purpose",
            ),
            (
                "leaktest watch --iface eth0 --tor-control 127.0.0.1:9052 --html watch.html --user leaktest",
                "an HTML page too; frames judged as the leaktest user",
            ),
        ],
        "leaktest-tor" => &[
            ("leaktest tor allowlist --list", "what the watcher accepts as Tor"),
            ("leaktest tor restrict", "the old procedure's Step 0"),
            ("leaktest tor restore", "undo it (Step 9)"),
        ],
        "leaktest-tor-restrict" => &[(
            "leaktest tor restrict --tor-control /run/tor/control",
            "restrict Tor to ports 80/443, saving the previous values in the journal",
        )],
        "leaktest-tor-restore" => &[
            ("leaktest tor restore", "put the saved values back"),
            (
                "leaktest tor restore --forget",
                "delete the journal of a Tor that is gone (also an unreadable one)",
            ),
        ],
        "leaktest-tor-allowlist" => &[
            ("leaktest tor allowlist", "count Tor's endpoints by source"),
            (
                "leaktest tor allowlist --json --tor-control /run/tor/control",
                "every endpoint and its roles, as JSON",
            ),
        ],
        "leaktest-lab" => &[
            ("leaktest lab", "every built-in profile"),
            (
                "leaktest lab --ruleset my-gateway.nft --json lab.json",
                "test your own nftables ruleset as the gateway's policy",
            ),
            (
                "leaktest lab --json lab.json --html lab.html",
                "every profile, with a page to open from a CI artifact",
            ),
            ("leaktest lab --keep", "leave the lab up to explore it"),
        ],
        "leaktest-lab-down" => &[("leaktest lab down", "remove every lab left up")],
        "leaktest-fin-rst" => &[
            (
                "leaktest fin-rst --target 203.0.113.7 --port 80 --close-on /tmp/go --json fin-rst.json",
                "on the workstation: 4 connections through the gateway's transparent proxy, ended once /tmp/go exists",
            ),
            (
                "leaktest watch --iface eth0 --tor-control 127.0.0.1:9051 --duration 40 --run-at 15 'conntrack -D -p tcp'",
                "on the gateway meanwhile: forget every TCP connection 15 s in (then touch /tmp/go on the workstation)",
            ),
        ],
        "leaktest-lab-plan" => &[
            ("leaktest lab plan", "the namespaces, addresses, tor's ports and the sweeps' uids"),
            ("leaktest lab plan --json", "the same as JSON, to generate a ruleset from"),
        ],
        "leaktest-report" => &[
            (
                "leaktest report watch.json --html watch.html",
                "a page to open from a CI artifact or to print",
            ),
            ("leaktest report watch.json", "the verdict and leaks as the terminal shows them"),
        ],
        "leaktest-man" => &[
            ("leaktest man watch | man -l -", "read leaktest-watch(1)"),
            ("leaktest man --dir DIR", "write every page into DIR"),
        ],
        "leaktest-completions" => &[(
            "leaktest completions bash > /etc/bash_completion.d/leaktest",
            "install bash completion",
        )],
        _ => &[],
    }
}

/// (status, meaning) for a page.
fn exit_status(page: &str) -> &'static [(&'static str, &'static str)] {
    const PROBE: &[(&str, &str)] = &[
        ("0", "every planned probe was handed to the kernel"),
        (
            "2",
            "error: bad option, unusable output or key file, a target on the link or answering at the first hop without --on-link, a route not by the watched uplink, no privilege, no route, a sandbox not entered, interrupted",
        ),
    ];
    const WATCH: &[(&str, &str)] = &[
        ("0", "PASS: nothing leaked and the capture was proven complete"),
        ("1", "LEAK: at least one frame leaked"),
        (
            "2",
            "error: bad option, unusable output or key file, missing interface, another watcher on it, no privilege, unreachable control port, a sandbox not entered or a sandboxed reader that died or misbehaved",
        ),
        ("3", "INCONCLUSIVE: nothing leaked, but the capture was not proven complete"),
        ("130", "a signal before the watch began: nothing was judged"),
    ];
    const LAB: &[(&str, &str)] = &[
        ("0", "every verdict and finding as expected"),
        ("1", "some profile differs from what was expected"),
        ("2", "error"),
        ("128+N", "ended by signal N, after the lab was torn down"),
    ];
    const PLAIN: &[(&str, &str)] = &[("0", "success"), ("2", "error")];
    const FIN_RST: &[(&str, &str)] = &[
        (
            "0",
            "every connection was opened and ended as asked (the verdict is the watcher's)",
        ),
        (
            "2",
            "error: bad option, a connection that could not be opened, interrupted",
        ),
    ];
    match page {
        "leaktest" => &[
            (
                "0",
                "success; PASS (watch); every verdict as expected (lab)",
            ),
            ("1", "LEAK (watch); some profile differs (lab)"),
            ("2", "error"),
            ("3", "INCONCLUSIVE (watch)"),
        ],
        "leaktest-probe" => PROBE,
        "leaktest-fin-rst" => FIN_RST,
        "leaktest-watch" => WATCH,
        "leaktest-lab" | "leaktest-lab-down" => LAB,
        _ => PLAIN,
    }
}

/// The page of `cmd` (named `name`, e.g. `leaktest-tor-restore`) as roff.
fn render_page(cmd: clap::Command, name: &str, w: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone()).title(name.to_uppercase());
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    match cmd.get_before_long_help() {
        // `watch` keeps its long description there (so it reads before the options).
        Some(long) => {
            let mut roff = Roff::new();
            roff.control("SH", ["DESCRIPTION"]);
            paragraphs(&mut roff, &long.to_string());
            roff.to_writer(w)?;
        }
        None => man.render_description_section(w)?,
    }
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(w)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(w)?;
    }
    let mut roff = Roff::new();
    if let Some(notes) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        roff.control("SH", ["NOTES"]);
        paragraphs(&mut roff, &notes.to_string());
    }
    roff.control("SH", ["EXAMPLES"]);
    for (command, what) in examples(name) {
        roff.control("TP", []);
        roff.text([bold(*command)]);
        roff.text([roman(*what)]);
    }
    roff.control("SH", ["EXIT STATUS"]);
    for (status, meaning) in exit_status(name) {
        roff.control("TP", []);
        roff.text([bold(*status)]);
        roff.text([roman(*meaning)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let see: Vec<String> = all_pages()
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n != name)
        .map(|n| format!("{n}(1)"))
        .collect();
    roff.text([roman(see.join(", "))]);
    roff.to_writer(w)?;
    man.render_version_section(w)
}

/// Help text as roff: paragraphs split at blank lines; a paragraph with
/// indented lines (a table, examples) keeps its lines as they are.
fn paragraphs(roff: &mut Roff, text: &str) {
    for para in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
        if para.lines().skip(1).any(|l| l.starts_with("  ")) {
            roff.control("PP", []);
            roff.control("nf", []);
            for line in para.lines() {
                roff.text([roman(line)]);
            }
            roff.control("fi", []);
        } else {
            roff.control("PP", []);
            roff.text([roman(para.replace('\n', " "))]);
        }
    }
}

/// Every page: (name, command), the top one first, hidden commands left out.
fn all_pages() -> Vec<(String, clap::Command)> {
    fn walk(cmd: &clap::Command, name: &str, out: &mut Vec<(String, clap::Command)>) {
        out.push((name.to_string(), cmd.clone()));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let sub_name = format!("{name}-{}", sub.get_name());
            // Subcommands carry their full name in the synopsis.
            let sub = sub
                .clone()
                .bin_name(sub_name.replace('-', " "))
                .display_name(sub_name.clone());
            walk(&sub, &sub_name, out);
        }
    }
    let mut cmd = crate::Cli::command()
        .disable_help_subcommand(true)
        .propagate_version(true);
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, "leaktest", &mut out);
    out
}

pub fn run_man(args: ManArgs) -> anyhow::Result<ExitCode> {
    let pages = all_pages();
    if let Some(dir) = &args.dir {
        for (name, cmd) in pages {
            let path = dir.join(format!("{name}.1"));
            write_page(&path, cmd, &name)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let name = std::iter::once("leaktest".to_string())
        .chain(args.command.iter().cloned())
        .collect::<Vec<_>>()
        .join("-");
    let Some((_, cmd)) = pages.into_iter().find(|(n, _)| *n == name) else {
        bail!("no manual page for `{}`", args.command.join(" "));
    };
    let mut out = std::io::stdout().lock();
    match render_page(cmd, &name, &mut out).and_then(|_| out.flush()) {
        // `leaktest man watch | head`: the reader leaving early is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn write_page(path: &Path, cmd: clap::Command, name: &str) -> anyhow::Result<()> {
    leaktest_fs::write_atomic("manual page", path, |w| render_page(cmd, name, w))
        .with_context(|| format!("writing {}", path.display()))
}

pub fn run_completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "leaktest", &mut out);
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_has_examples_and_exit_status() {
        let pages = all_pages();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for want in [
            "leaktest",
            "leaktest-probe",
            "leaktest-watch",
            "leaktest-tor-restore",
            "leaktest-lab",
            "leaktest-man",
            "leaktest-completions",
        ] {
            assert!(names.contains(&want), "{names:?}");
        }
        for (name, cmd) in pages {
            assert!(!examples(&name).is_empty(), "{name}: no examples");
            assert!(!exit_status(&name).is_empty(), "{name}: no exit status");
            let mut buf = Vec::new();
            render_page(cmd, &name, &mut buf).unwrap();
            let page = String::from_utf8(buf).unwrap();
            for section in [
                ".SH NAME",
                ".SH SYNOPSIS",
                ".SH EXAMPLES",
                ".SH \"EXIT STATUS\"",
            ] {
                assert!(page.contains(section), "{name}: no {section}\n{page}");
            }
        }
    }
}
