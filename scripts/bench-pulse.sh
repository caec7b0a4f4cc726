#!/usr/bin/env bash
# Benchmark of the pulse (issue 10: "the pulse at its default interval costs <= 5% of one
# core on the sender and the watcher"); prints figures, asserts nothing.
#
# `leaktest probe --duration SECONDS` (default interval 100 ms, both families: 152 probes a
# round, 1,520 per second) sends from one namespace to a peer; `leaktest watch` captures the
# sender's own interface, so every probe passes its capture and is judged (a probe leak: the
# watcher's most expensive frame), the worst case for the watcher. CPU is user + system time
# from `/usr/bin/time` (for the watch: the monitor and its sandboxed reader, which it waits
# for), divided by the wall time, as a share of one core.
#
# Everything happens in two namespaces this script creates (unique names, deleted on exit,
# also on error or Ctrl-C), joined by a veth pair made inside them; probes go only to the
# documentation address 198.51.100.1 / 2001:db8:1::1 assigned in the peer namespace.
#
# Usage (root): scripts/bench-pulse.sh [SECONDS] [--release]   (default 20 s, dev build)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "bench-pulse: needs root (namespaces, capture)" >&2
  exit 2
fi
secs="${1:-20}"
profile=debug
if [ "${2:-}" = "--release" ]; then
  cargo build --release -q -p leaktest
  profile=release
else
  cargo build -q -p leaktest
fi
bin="$PWD/target/$profile/leaktest"
command -v jq >/dev/null || { echo "bench-pulse: needs jq" >&2; exit 2; }
command -v bc >/dev/null || { echo "bench-pulse: needs bc" >&2; exit 2; }

tag="lbp$$"
# shellcheck source=scripts/bench-netns.sh
source scripts/bench-netns.sh

# share TIMEFILE: (user + system) / wall, in % of one core.
share() {
  awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} /Elapsed \(wall clock\)/ {
      n = split($2, p, ":"); w = 0; for (i = 1; i <= n; i++) w = w * 60 + p[i] }
    END { printf "%.2f%% of one core (user %.2f s + system %.2f s over %.2f s)", 100 * (u + s) / w, u, s, w }' "$1"
}

echo "leaktest pulse benchmark ($profile build, $(nproc) cores, ${secs} s at the default interval)"
ip netns exec "$ws" /usr/bin/time -v -o "$tmp/watch-time.txt" \
  "$bin" watch --iface bw0 --json "$tmp/watch.json" --ready-file "$tmp/ready" \
  >"$tmp/watch.out" 2>"$tmp/watch.err" &
watch_pid=$!
for _ in $(seq 200); do [ -e "$tmp/ready" ] && break; sleep 0.05; done
[ -e "$tmp/ready" ] || { echo "bench-pulse: the watcher never became ready" >&2; cat "$tmp/watch.err" >&2; exit 1; }
ip netns exec "$ws" /usr/bin/time -v -o "$tmp/probe-time.txt" \
  "$bin" probe --on-link --target 198.51.100.1 --target6 2001:db8:1::1 \
  --duration "$secs" --json "$tmp/probe.json" >/dev/null
sleep 0.5
kill -TERM "$(pgrep -P "$watch_pid")"
wait "$watch_pid" || true
watch_pid=""
[ -s "$tmp/watch.json" ] || { echo "bench-pulse: no watch report" >&2; cat "$tmp/watch.err" >&2; exit 1; }
printf 'sender: %d probes in %d of %d rounds (%d late); %s\n' \
  "$(jq -r .sent "$tmp/probe.json")" "$(jq -r .pulse.rounds_sent "$tmp/probe.json")" \
  "$(jq -r .pulse.rounds "$tmp/probe.json")" "$(jq -r .pulse.late_rounds "$tmp/probe.json")" \
  "$(share "$tmp/probe-time.txt")"
printf 'watcher: %d frames classified, %d of them pulse probes; kernel drops %d; %s\n' \
  "$(jq -r .capture.packets "$tmp/watch.json")" "$(jq -r .leak_packets "$tmp/watch.json")" \
  "$(jq -r .capture.dropped "$tmp/watch.json")" "$(share "$tmp/watch-time.txt")"
