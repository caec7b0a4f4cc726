//! Running `leaktest lab` from a test: the fixtures under
//! `tests/rulesets`, a scratch file, one run with its JSON document, and
//! its findings without the notes. Shared by `lab_ruleset` and `lab_modes`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/rulesets")
        .join(name)
}

pub fn write_tmp(name: &str, text: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("leaktest-lab-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs `leaktest lab` with `args`; returns its output, JSON document and
/// wall time.
pub fn lab(args: &[&str]) -> (Output, serde_json::Value, f64) {
    let json = std::env::temp_dir().join(format!(
        "leaktest-lab-cli-{}-{}.json",
        std::process::id(),
        args.len()
    ));
    let _ = std::fs::remove_file(&json);
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_leaktest"))
        .arg("lab")
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "leaktest lab {args:?}: {secs:.1} s\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let doc = std::fs::read_to_string(&json)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(serde_json::Value::Null);
    let _ = std::fs::remove_file(&json);
    (out, doc, secs)
}

pub fn findings(doc: &serde_json::Value) -> Vec<String> {
    doc["profiles"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .filter(|f| !f.starts_with("note: "))
        .collect()
}
