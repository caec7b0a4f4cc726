#!/usr/bin/env bash
# Builds the Debian package target/debian/leaktest_<version>-1_<arch>.deb:
# the release binary, manual pages and bash/zsh/fish completions (generated
# by the binary from its own clap definition, so they match --help), and the
# README. Then checks it: lintian (no errors), the file list, and the
# installed binary run from an extracted tree (--version, man -l).
# Run as root on Debian 12 (installs cargo-deb and lintian if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v lintian >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends lintian >/dev/null
fi
if ! cargo deb --version >/dev/null 2>&1; then
  cargo install --locked cargo-deb
fi
cargo build --release -p leaktest
out=target/release/package
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
target/release/leaktest man --dir "$out/man"
gzip -9n "$out"/man/*.1
target/release/leaktest completions bash >"$out/completions/leaktest"
target/release/leaktest completions zsh >"$out/completions/_leaktest"
target/release/leaktest completions fish >"$out/completions/leaktest.fish"
rm -f target/debian/leaktest_*.deb
cargo deb -p leaktest --no-build --strip
deb=$(ls target/debian/leaktest_*.deb)
echo "package: $deb ($(du -k "$deb" | cut -f1) KiB)"
bash scripts/check-package.sh "$deb"
