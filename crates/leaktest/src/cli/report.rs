//! `leaktest report`: a watch's JSON report rendered again, as an HTML page
//! or as the terminal text.

use anyhow::Context;
use leaktest_watch::WatchReport;
use std::path::PathBuf;
use std::process::ExitCode;

/// The largest JSON report read (a watch keeps at most a bounded number of
/// leaked packets in it).
const MAX_JSON: u64 = 256 << 20;

#[derive(clap::Args)]
#[command(
    after_long_help = "Exit status: 0 when the report was rendered (whatever its \
verdict), 2 on error (unreadable or malformed JSON, unusable output path)."
)]
pub struct Args {
    /// A JSON report written by `leaktest watch --json`
    #[arg(value_name = "FILE.json")]
    json: PathBuf,
    /// Write a self-contained HTML page here (no script, no external resource) instead of
    /// printing the terminal text
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(p) = &args.html {
        leaktest_fs::check_outputs(&[("--html", p)])?;
    }
    if let Some(p) = &args.html {
        if same_file(&args.json, p) {
            anyhow::bail!(
                "--html {} is the JSON report itself: give another file",
                p.display()
            );
        }
    }
    let text = leaktest_fs::read_bounded_string("the JSON report", &args.json, MAX_JSON)?;
    let report: WatchReport = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a JSON report of leaktest watch",
            args.json.display()
        )
    })?;
    match &args.html {
        Some(p) => report.write_html(p)?,
        None => {
            // A report read from a file may hold anything: control characters
            // are made visible, never sent to the terminal.
            let mut out = leaktest_priv::Sanitized::new(std::io::stdout().lock());
            report.print_terminal(&mut out)?;
            std::io::Write::flush(&mut out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether two paths name one existing file (same device and inode).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
