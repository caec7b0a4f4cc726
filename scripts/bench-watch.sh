#!/usr/bin/env bash
# Benchmark of `leaktest watch` (issue 3, "the watcher keeps up"); prints figures, asserts nothing.
#
#  1. Drops at the probe's full rate: the watcher captures the workstation's own sending
#     interface while `leaktest probe --rate max` sends the whole default catalogue (both
#     families) through it, so every probe passes the capture at the sender's top speed.
#  2. Peak RSS for a capture of at least 1,000,000 packets: the same, with sweeps repeated
#     until the watcher has classified >= 1,000,000 frames; `/usr/bin/time -v` reports the
#     maximum resident set size of the largest process (the 64 MiB capture ring is counted
#     in it once touched; separated, the ring is mapped in both the monitor and the reader,
#     so it counts in each, and the monitor peaks last, while it takes the reader's report).
#  3. The same with `--no-sandbox` (one privileged process), to compare in one run.
#
# Everything happens in two namespaces this script creates (unique names, deleted on exit,
# also on error or Ctrl-C), joined by a veth pair made inside them; probes go only to the
# documentation address 198.51.100.1 / 2001:db8:1::1 assigned in the peer namespace.
#
# Usage (root): scripts/bench-watch.sh [--release]   (default: the dev build, opt-level 1)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "bench-watch: needs root (namespaces, capture)" >&2
  exit 2
fi
profile=debug
if [ "${1:-}" = "--release" ]; then
  cargo build --release -q -p leaktest
  profile=release
else
  cargo build -q -p leaktest
fi
bin="$PWD/target/$profile/leaktest"

tag="lbw$$"
# shellcheck source=scripts/bench-netns.sh
source scripts/bench-netns.sh

# run_bench NAME SWEEPS [WATCH ARGS...]: one watch, SWEEPS full-rate sweeps, figures printed.
run_bench() {
  local name="$1" sweeps="$2"
  shift 2
  rm -f "$tmp/ready" "$tmp/watch.json"
  ip netns exec "$ws" /usr/bin/time -v -o "$tmp/time.txt" \
    "$bin" watch --iface bw0 --json "$tmp/watch.json" --ready-file "$tmp/ready" "$@" \
    >"$tmp/watch.out" 2>"$tmp/watch.err" &
  watch_pid=$!
  for _ in $(seq 200); do [ -e "$tmp/ready" ] && break; sleep 0.05; done
  [ -e "$tmp/ready" ] || { echo "bench-watch: the watcher never became ready" >&2; cat "$tmp/watch.err" >&2; exit 1; }
  local sent=0 secs=0
  for i in $(seq "$sweeps"); do
    ip netns exec "$ws" "$bin" probe --on-link --target 198.51.100.1 --target6 2001:db8:1::1 \
      --rate max --json "$tmp/probe.json" >/dev/null
    sent=$((sent + $(jq -r .sent "$tmp/probe.json")))
    secs=$(echo "$secs + $(jq -r .seconds "$tmp/probe.json")" | bc -l)
  done
  sleep 0.5
  # Signal leaktest itself (the child of /usr/bin/time, which would just die on SIGTERM).
  kill -TERM "$(pgrep -P "$watch_pid")"
  wait "$watch_pid" || true
  watch_pid=""
  local packets dropped cs cseen leaks rss
  [ -s "$tmp/watch.json" ] || { echo "bench-watch: no watch report" >&2; cat "$tmp/watch.err" "$tmp/watch.out" >&2; exit 1; }
  packets=$(jq -r .capture.packets "$tmp/watch.json")
  dropped=$(jq -r .capture.dropped "$tmp/watch.json")
  cs=$(jq -r .capture.canaries_sent "$tmp/watch.json")
  cseen=$(jq -r .capture.canaries_seen "$tmp/watch.json")
  leaks=$(jq -r .leak_packets "$tmp/watch.json")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tmp/time.txt")
  printf '%s: probes sent %d in %.2f s of sending (%.0f pps); watcher classified %d frames, %d attributed to probes; kernel drops %d; canaries %d/%d seen; peak RSS %d KiB (%.1f MiB)\n' \
    "$name" "$sent" "$secs" "$(echo "$sent / $secs" | bc -l)" "$packets" "$leaks" "$dropped" "$cseen" "$cs" "$rss" "$(echo "$rss / 1024" | bc -l)"
}

command -v jq >/dev/null || { echo "bench-watch: needs jq" >&2; exit 2; }
command -v bc >/dev/null || { echo "bench-watch: needs bc" >&2; exit 2; }
echo "leaktest watch benchmark ($profile build, $(nproc) cores)"
run_bench "full-rate sweep" 1
run_bench "1M-packet capture" 2
# The same capture read by one privileged process: what privilege separation
# (a sandboxed reader, canaries sent by the monitor) costs, if anything.
run_bench "1M-packet capture, --no-sandbox" 2 --no-sandbox
