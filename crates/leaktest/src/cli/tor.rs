//! `leaktest tor`: the seed's Step 0 / Step 9 (restrict Tor to ports 80 and 443 through the
//! control port, journaled, and restore), and a look at the allowlist the watcher would use.

use anyhow::Context;
use leaktest_tor::restrict::{self, Journal, JournalMode, Restored, RESTRICTION};
use leaktest_tor::{fetch_allowlist, ConnectOptions, ControlTarget, Controller};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: TorCommand,
}

#[derive(clap::Subcommand)]
enum TorCommand {
    /// Restrict Tor to ports 80/443 at run time (Step 0), saving the previous values first.
    ///
    /// Sets ReachableDirAddresses *:80, ReachableORAddresses *:443 and FascistFirewall 1 with
    /// SETCONF (nothing is written to torrc). Unnecessary with the watcher's Tor-aware
    /// allowlist, and it changes which guards Tor picks: undo it with `leaktest tor restore`.
    Restrict(ControlArgs),
    /// Put back the values saved by `leaktest tor restrict` (Step 9)
    Restore(RestoreArgs),
    /// Print the endpoints Tor may use, as the watcher's allowlist sees them
    Allowlist(AllowlistArgs),
}

#[derive(clap::Args)]
struct ControlArgs {
    /// Tor's control port: HOST:PORT, PORT, or a unix socket path such as /run/tor/control
    /// [default: 127.0.0.1:9051; for restore: the one recorded in the journal]
    #[arg(long, value_name = "ADDR|PATH")]
    tor_control: Option<String>,
    /// Name of an environment variable holding the control-port password (HASHEDPASSWORD)
    #[arg(long, value_name = "VAR")]
    tor_password_env: Option<String>,
    /// Journal file [default: this network namespace's, STATE/tor-restrict-net<INODE>.json in
    /// $LEAKTEST_STATE_DIR, else /var/lib/leaktest]. A journal is applied only to the Tor it
    /// restricted, from the namespace it was written in
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RestoreArgs {
    #[command(flatten)]
    control: ControlArgs,
    /// Delete the journal without contacting Tor (for a Tor that no longer exists), also one
    /// that cannot be read
    #[arg(long)]
    forget: bool,
    /// Restore even though the leaktest that restricted Tor is still running
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct AllowlistArgs {
    /// Tor's control port: HOST:PORT, PORT, or a unix socket path such as /run/tor/control
    /// [default: 127.0.0.1:9051]
    #[arg(long, value_name = "ADDR|PATH")]
    tor_control: Option<String>,
    /// Name of an environment variable holding the control-port password (HASHEDPASSWORD)
    #[arg(long, value_name = "VAR")]
    tor_password_env: Option<String>,
    /// Extra Tor endpoints, as for `leaktest watch --allow tor:ADDR:PORT` or `obfs4:ADDR:PORT`
    #[arg(long, value_name = "tor:ADDR:PORT")]
    allow: Vec<String>,
    /// Print every endpoint and its roles (orport, bridge, obfs4-bridge, ...), one per line
    #[arg(long)]
    list: bool,
    /// Print JSON: {"endpoints": N, "sources": {...}, "list": [{"endpoint", "roles"}...]}
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        TorCommand::Restrict(a) => run_restrict(a),
        TorCommand::Restore(a) => run_restore(a),
        TorCommand::Allowlist(a) => run_allowlist(a),
    }
}

fn journal_path(arg: &Option<PathBuf>) -> PathBuf {
    arg.clone().unwrap_or_else(restrict::default_journal_path)
}

fn run_restrict(a: ControlArgs) -> anyhow::Result<ExitCode> {
    let opts = ConnectOptions::from_cli(a.tor_control.as_deref(), a.tor_password_env.as_deref())?;
    let path = journal_path(&a.journal);
    let mut ctl = Controller::connect(&opts)?;
    let journal = restrict::restrict(&mut ctl, &path, JournalMode::Manual)?;
    ctl.quit();
    let set: Vec<String> = RESTRICTION
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!("Tor restricted: {}", set.join(", "));
    println!("previous values saved in {}:", path.display());
    for p in &journal.previous {
        println!("  {}", describe(p));
    }
    println!("undo with `leaktest tor restore`");
    eprintln!(
        "note: `leaktest watch` reads Tor's relays from the control port, so this restriction is \
         not needed; it also changes Tor's guard selection while it lasts"
    );
    Ok(ExitCode::SUCCESS)
}

fn describe(p: &restrict::PreviousValue) -> String {
    if p.was_default {
        format!(
            "{} (default{})",
            p.key,
            if p.values.is_empty() {
                String::new()
            } else {
                format!(": {}", p.values.join(", "))
            }
        )
    } else {
        format!("{} {}", p.key, p.values.join(", "))
    }
}

fn run_restore(a: RestoreArgs) -> anyhow::Result<ExitCode> {
    let path = journal_path(&a.control.journal);
    if a.forget {
        // Also a journal that cannot be read or parsed: that is what --forget is for. But
        // only a regular file that is a journal or named like one (a typo in --journal must
        // not delete /etc/tor/torrc), and not one a running leaktest still holds.
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => {
                println!("nothing to forget: no journal at {}", path.display());
                return Ok(ExitCode::SUCCESS);
            }
        };
        if !meta.file_type().is_file() {
            anyhow::bail!(
                "{} is not a regular file, so not a journal: nothing deleted",
                path.display()
            );
        }
        let who = match Journal::load(&path) {
            Ok(Some(j)) => {
                if j.mode == JournalMode::Guard && j.owner_alive() && !a.force {
                    anyhow::bail!(
                        "leaktest pid {} holds this restriction and restores it when it ends; \
                         nothing deleted (--force to delete it anyway)",
                        j.pid
                    );
                }
                format!("written by pid {}", j.pid)
            }
            Ok(None) => "gone meanwhile".to_string(),
            Err(_) => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if !(name.starts_with("tor-restrict") && name.ends_with(".json")) {
                    anyhow::bail!(
                        "{} is not a journal (it cannot be read as one) and is not named like \
                         one (tor-restrict*.json): nothing deleted",
                        path.display()
                    );
                }
                "it was unreadable".to_string()
            }
        };
        Journal::remove(&path)?;
        println!("deleted {} without contacting Tor ({who})", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let Some(journal) = Journal::load(&path)? else {
        println!("nothing to restore: no journal at {}", path.display());
        return Ok(ExitCode::SUCCESS);
    };
    if journal.mode == JournalMode::Guard && journal.owner_alive() && !a.force {
        anyhow::bail!(
            "leaktest pid {} holds this restriction and restores it when it ends (use --force to restore now)",
            journal.pid
        );
    }
    if journal.other_namespace() {
        anyhow::bail!(
            "{} was written in network namespace {}, this is another: restore it from that \
             namespace (or --forget it if that namespace is gone)",
            path.display(),
            journal.netns.unwrap_or(0)
        );
    }
    let target = a
        .control
        .tor_control
        .as_deref()
        .map(ControlTarget::parse)
        .transpose()?;
    let opts =
        restrict::journal_connect_options(&journal, target, a.control.tor_password_env.as_deref())?;
    let mut ctl = Controller::connect(&opts)?;
    let restored = restrict::restore(&mut ctl, &path).context("restoring Tor's configuration");
    ctl.quit();
    match restored? {
        Restored::Nothing => println!("nothing to restore: no journal at {}", path.display()),
        Restored::Applied(j) => {
            println!("Tor's configuration restored:");
            for p in &j.previous {
                println!("  {}", describe(p));
            }
        }
        Restored::TorGone(j) => println!(
            "the Tor this journal restricted (pid {}) has exited, and its run-time restriction \
             with it: deleted {} without changing the Tor now answering",
            j.tor.as_ref().map_or(0, |t| t.pid),
            path.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn run_allowlist(a: AllowlistArgs) -> anyhow::Result<ExitCode> {
    let opts = ConnectOptions::from_cli(a.tor_control.as_deref(), a.tor_password_env.as_deref())?;
    let (entries, mut list) = leaktest_watch::parse_allow_list(&a.allow)?;
    if let Some(e) = entries.first() {
        anyhow::bail!(
            "--allow {e}: only Tor endpoints (tor:ADDR:PORT, obfs4:ADDR:PORT) belong to Tor's allowlist"
        );
    }
    let mut ctl = Controller::connect(&opts)?;
    let version = ctl
        .protocol_info_cached()
        .and_then(|p| p.tor_version.clone());
    let (fresh, counts) = fetch_allowlist(&mut ctl)?;
    ctl.quit();
    list.extend(&fresh);
    let sorted = list.sorted();
    let roles = |s: &std::net::SocketAddr| list.roles(s).unwrap_or_default().names().join(",");
    if a.json {
        let v = serde_json::json!({
            "tor_version": version,
            "endpoints": sorted.len(),
            "sources": counts,
            "list": sorted
                .iter()
                .map(|s| serde_json::json!({"endpoint": s.to_string(), "roles": list.roles(s).unwrap_or_default().names()}))
                .collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} endpoints (Tor {}): consensus {}, compiled-in directories {}, DirAuthority {}, \
         FallbackDir {}, bridges {}, proxies {}, --allow {}",
        sorted.len(),
        version.as_deref().unwrap_or("?"),
        counts.consensus,
        counts.default_dirs,
        counts.dir_authorities,
        counts.fallback_dirs,
        counts.bridges,
        counts.proxies,
        a.allow.len()
    );
    if a.list {
        for s in &sorted {
            println!("{s} {}", roles(s));
        }
    }
    Ok(ExitCode::SUCCESS)
}
