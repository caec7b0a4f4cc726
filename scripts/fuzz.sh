#!/usr/bin/env bash
# Fuzzes leaktest's frame parsing with cargo-fuzz on the stable toolchain
# (`-s none` needs no nightly features):
#   decode    FrameSummary::parse and the attribution steps (leaktest-wire)
#   classify  the watcher's whole per-frame path: rule table, Tor flow judge,
#             housekeeping by content, canary ledger, findings (leaktest-watch)
#
#   scripts/fuzz.sh [SECONDS]     (default 60, per target)
#
# Installs cargo-fuzz if missing. Corpora grow in fuzz/corpus/TARGET
# (git-ignored), seeded from fuzz/seeds/decode (probe frames of every kind).
# Crashes land in fuzz/artifacts/TARGET and make this script fail.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in decode classify; do
  mkdir -p "corpus/$target"
  cargo fuzz build -s none "$target"
  cargo fuzz run -s none "$target" "corpus/$target" seeds/decode -- \
      -max_total_time="$secs" -max_len=4096 -print_final_stats=1
done
