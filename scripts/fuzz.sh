#!/usr/bin/env bash
# Fuzzes leaktest's frame decoder (FrameSummary::parse and attribute) with
# cargo-fuzz on the stable toolchain: `-s none` needs no nightly features.
#
#   scripts/fuzz.sh [SECONDS]     (default 60)
#
# Installs cargo-fuzz if missing. The corpus grows in fuzz/corpus/decode
# (git-ignored), seeded from fuzz/seeds/decode (probe frames of every kind).
# Crashes land in fuzz/artifacts/decode and make this script fail.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p corpus/decode
cargo fuzz build -s none decode
cargo fuzz run -s none decode corpus/decode seeds/decode -- \
    -max_total_time="$secs" -max_len=2048 -print_final_stats=1
