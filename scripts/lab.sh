#!/usr/bin/env bash
# Installs what leaktest needs, builds it, and runs the lab (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked -p leaktest
exec target/release/leaktest lab "$@"
