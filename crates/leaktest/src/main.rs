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
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send marker-tagged probes from the workstation side
    #[command(long_about = cli::probe::LONG_ABOUT)]
    Probe(cli::probe::Args),
    /// Capture on the gateway's external interface and judge every outbound packet
    Watch(cli::watch::Args),
    /// Restrict or restore Tor's ports through its control port (the seed's Step 0 / Step 9)
    Tor(cli::tor::Args),
    /// Build an isolated Whonix-style lab with real Tor and run the whole suite in it
    Lab(cli::lab::Args),
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
    // A Tor restriction left by a leaktest that was killed (kill -9, crash) is undone first.
    match leaktest_tor::recover_leftover() {
        Ok(Some(message)) => eprintln!("leaktest: {message}"),
        Ok(None) => {}
        Err(e) => eprintln!("leaktest: warning: {e}"),
    }
    let result = match cli.command {
        Command::Probe(args) => cli::probe::run(args),
        Command::Watch(args) => cli::watch::run(args),
        Command::Tor(args) => cli::tor::run(args),
        Command::Lab(args) => cli::lab::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("leaktest: error: {}", one_line(&e));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}
