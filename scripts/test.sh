#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, the Debian package and its
# checks, unit and end-to-end tests (the end-to-end tests build network
# namespaces: run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The Debian package builds and passes its checks (lintian, file list, the
# extracted binary and its manual page).
bash scripts/package.sh
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
