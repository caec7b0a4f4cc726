//! `leaktest`: a thin command line over the leaktest libraries.
//!
//! Each subcommand lives in its own module under `cli/`. Every failure that
//! is not a verdict (bad option, missing privilege, unreachable target or
//! control port) prints one line `leaktest: error: ...` and exits with 2.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit status for errors that are not verdicts.
pub const EXIT_ERROR: u8 = 2;

#[derive(Parser)]
#[command(
    after_long_help = "Manual pages: `leaktest man`, `leaktest man SUBCOMMAND`; shell completions: \
`leaktest completions bash|zsh|fish`.\n\nExit status: 0 pass, 1 leak, 2 error, 3 inconclusive \
(watch and lab).",
    name = "leaktest",
    version,
    about = "Prove that a Tor gateway sends nothing in the clear",
    long_about = "Prove that a Tor gateway sends nothing in the clear.\n\n\
        Run `leaktest watch` on the gateway's external interface, then `leaktest probe` on the \
        workstation behind it: every probe carries an authenticated marker, and the watcher \
        reports any packet that leaves the gateway and is not Tor traffic, with the probe that \
        caused it. `leaktest lab` builds a complete Whonix-style lab with a private Tor network \
        in network namespaces and shows the whole suite catching deliberately broken gateways.",
    after_help = "Exit status: 0 pass, 1 leak, 2 error, 3 inconclusive (watch and lab)."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send marker-tagged probes from the workstation side
    #[command(long_about = cli::probe::LONG_ABOUT)]
    Probe(cli::probe::Args),
    /// The FIN/RST check: real TCP connections through the transparent proxy, ended after a change
    #[command(name = "fin-rst", long_about = cli::finrst::LONG_ABOUT)]
    FinRst(cli::finrst::Args),
    /// Capture on the gateway's external interface and judge every outbound packet
    Watch(cli::watch::Args),
    /// Restrict or restore Tor's ports through its control port (the seed's Step 0 / Step 9)
    Tor(cli::tor::Args),
    /// Build an isolated Whonix-style lab with real Tor and run the whole suite in it
    Lab(cli::lab::Args),
    /// Render a watch's JSON report as an HTML page (or as the terminal text)
    Report(cli::report::Args),
    /// Print the manual pages (roff), generated from the same definitions as --help
    Man(cli::docs::ManArgs),
    /// Print shell completions for bash, zsh, fish, elvish or PowerShell
    Completions(cli::docs::CompletionsArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; everything else exits 2 (clap's usage code).
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LEAKTEST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    // A Tor restriction left by a leaktest that was killed (kill -9, crash) is undone first
    // (not by the commands that only print documentation).
    if !matches!(
        cli.command,
        Command::Man(_) | Command::Completions(_) | Command::Report(_)
    ) {
        match leaktest_tor::recover_leftover() {
            Ok(Some(message)) => eprintln!("leaktest: {message}"),
            Ok(None) => {}
            Err(e) => eprintln!("leaktest: warning: {e}"),
        }
    }
    let result = match cli.command {
        Command::Probe(args) => cli::probe::run(args),
        Command::FinRst(args) => cli::finrst::run(args),
        Command::Watch(args) => cli::watch::run(args),
        Command::Tor(args) => cli::tor::run(args),
        Command::Lab(args) => cli::lab::run(args),
        Command::Report(args) => cli::report::run(args),
        Command::Man(args) => cli::docs::run_man(args),
        Command::Completions(args) => cli::docs::run_completions(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("leaktest: error: {}", error_text(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The error as printed: [`one_line`], except a lab diagnosis (a ruleset
/// that does not work in the lab's gateway), whose causes stay one line
/// each, as `leaktest lab --help` promises.
fn error_text(e: &anyhow::Error) -> String {
    let broken = |c: &(dyn std::error::Error + 'static)| {
        matches!(
            c.downcast_ref::<leaktest_lab::LabError>(),
            Some(leaktest_lab::LabError::GatewayBroken(_))
        )
    };
    let Some(diagnosis) = e.chain().find(|c| broken(*c)) else {
        return one_line(e);
    };
    let context: Vec<String> = e
        .chain()
        .take_while(|c| !broken(*c))
        .map(|c| c.to_string())
        .collect();
    context
        .into_iter()
        .chain([diagnosis.to_string()])
        .collect::<Vec<_>>()
        .join(": ")
}

/// The error and its causes on one line. A cause whose text the line already
/// holds is left out: library errors often quote their source in their own
/// message, and repeating it makes the line harder to read.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot write report.json: {source}")]
    struct Quoting {
        source: std::io::Error,
    }

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "Permission denied");
        let e = anyhow::Error::new(Quoting { source: io }).context("writing the reports");
        assert_eq!(
            one_line(&e),
            "writing the reports: cannot write report.json: Permission denied"
        );
    }

    #[test]
    fn a_lab_diagnosis_keeps_a_line_per_cause() {
        let e = anyhow::Error::new(leaktest_lab::LabError::GatewayBroken(
            "x.nft does not work in the lab's gateway:\n  cause one\n  cause two".into(),
        ))
        .context("profile x.nft");
        let text = super::error_text(&e);
        assert!(text.starts_with("profile x.nft: "), "{text}");
        assert!(text.ends_with("\n  cause one\n  cause two"), "{text}");
        // Any other error stays on one line.
        let other = anyhow::anyhow!("no route\nto host");
        assert_eq!(super::error_text(&other), "no route to host");
    }

    #[test]
    fn distinct_causes_are_all_kept_on_one_line() {
        let e = anyhow::anyhow!("no route\nto host").context("target 203.0.113.9");
        assert_eq!(one_line(&e), "target 203.0.113.9: no route to host");
    }
}
