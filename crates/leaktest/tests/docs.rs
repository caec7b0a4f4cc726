//! The manual pages and shell completions, as a person would use them:
//! every page rendered by `man -l` with warnings on and none printed, with
//! EXAMPLES and EXIT STATUS; bash loads the completion script and completes
//! subcommands and options with it.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_leaktest");

#[test]
fn every_man_page_renders_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut pages: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    let names: Vec<String> = pages
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "leaktest.1",
        "leaktest-probe.1",
        "leaktest-watch.1",
        "leaktest-tor-restore.1",
        "leaktest-lab.1",
        "leaktest-completions.1",
    ] {
        assert!(names.iter().any(|n| n == want), "{names:?}");
    }
    for page in &pages {
        let o = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(page)
            .env("MANWIDTH", "100")
            .env_remove("MAN_KEEP_FORMATTING")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("man (man-db) is installed by scripts/install-deps.sh");
        let text = String::from_utf8_lossy(&o.stdout);
        let warnings = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{}: {warnings}", page.display());
        assert!(warnings.trim().is_empty(), "{}: {warnings}", page.display());
        for section in ["NAME", "SYNOPSIS", "EXAMPLES", "EXIT STATUS"] {
            assert!(
                text.lines().any(|l| l == section),
                "{}: no {section}",
                page.display()
            );
        }
    }
    // One page to stdout, by subcommand name; an unknown one is an error.
    let o = Command::new(BIN)
        .args(["man", "tor", "restore"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("LEAKTEST-TOR-RESTORE"));
    let o = Command::new(BIN).args(["man", "nope"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

/// What bash's completion offers for the words typed so far.
fn complete(words: &[&str]) -> Vec<String> {
    let script = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(script.status.success());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("leaktest.bash");
    std::fs::write(&file, &script.stdout).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let driver = format!(
        "source {file}; COMP_WORDS=({words}); COMP_CWORD={cword}; \
         COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
         _leaktest leaktest \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$((COMP_CWORD-1))]}}\"; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file = file.display(),
        words = quoted.join(" "),
        cword = words.len() - 1,
    );
    let o = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &driver])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completes_subcommands_and_options() {
    assert_eq!(complete(&["leaktest", "wa"]), ["watch"]);
    let subs = complete(&["leaktest", ""]);
    for s in ["probe", "watch", "tor", "lab", "man", "completions"] {
        assert!(subs.iter().any(|x| x == s), "{subs:?}");
    }
    let opts = complete(&["leaktest", "watch", "--fam"]);
    assert_eq!(opts, ["--families"]);
    let opts = complete(&["leaktest", "probe", "--on"]);
    assert_eq!(opts, ["--on-link"]);
    // The other shells' scripts are generated too.
    for shell in ["zsh", "fish"] {
        let o = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(o.status.success());
        assert!(String::from_utf8_lossy(&o.stdout).contains("leaktest"));
    }
}
