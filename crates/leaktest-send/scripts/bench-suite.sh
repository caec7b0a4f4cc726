#!/usr/bin/env bash
# Sends the whole default suite (787,460 probes, IPv4 + IPv6) with
# `leaktest probe --rate max` from a workstation namespace to a gateway
# namespace over a veth, and prints the rate, the CPU time the sender used and
# how many packets the gateway's interface counted.
#
#   crates/leaktest-send/scripts/bench-suite.sh [path/to/leaktest] [extra probe options]
#
# RPS=1 steers the gateway namespace's receive processing to CPU 1 and pins
# the sender to CPU 0. Without it, a veth runs the receiving stack (RST and
# ICMP replies included) inside the sender's system calls, so the figure is
# sender + gateway on one core.
#
# Namespaces get a unique name per run and are deleted on exit. Addresses:
# 10.152.152.0/24 and fd19:c33d:88bc::/64 only. Needs root.
set -euo pipefail
cd "$(dirname "$0")/../../.."
BIN=${1:-target/release/leaktest}
shift || true
[ -x "$BIN" ] || { echo "build first: cargo build --release -p leaktest" >&2; exit 2; }
N=ltb$$
JSON=$(mktemp)
cleanup() {
  ip netns del "${N}w" 2>/dev/null || true
  ip netns del "${N}g" 2>/dev/null || true
  rm -f "$JSON"
}
trap cleanup EXIT
ip netns add "${N}w"
ip netns add "${N}g"
ip link add name "${N}w" netns "${N}w" type veth peer name "${N}g" netns "${N}g"
ip -n "${N}w" addr add 10.152.152.11/24 dev "${N}w"
ip -n "${N}g" addr add 10.152.152.10/24 dev "${N}g"
ip -n "${N}w" -6 addr add fd19:c33d:88bc::11/64 dev "${N}w" nodad
ip -n "${N}g" -6 addr add fd19:c33d:88bc::10/64 dev "${N}g" nodad
for s in w g; do ip -n "${N}$s" link set "${N}$s" up; ip -n "${N}$s" link set lo up; done
PIN=()
if [ "${RPS:-0}" = 1 ]; then
  ip netns exec "${N}g" sh -c "echo 2 > /sys/class/net/${N}g/queues/rx-0/rps_cpus"
  PIN=(taskset -c 0)
fi
rx() { ip -n "${N}g" -j -s link show dev "${N}g" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["packets"])'; }
rx0=$(rx)
TIMES=$(mktemp)
ip netns exec "${N}w" /usr/bin/time -o "$TIMES" -f "%U %S" "${PIN[@]}" "$BIN" probe \
  --target 10.152.152.10 --target6 fd19:c33d:88bc::10 --rate max --json "$JSON" "$@"
rx1=$(rx)
read -r user sys < "$TIMES"
rm -f "$TIMES"
python3 - "$JSON" "$user" "$sys" "$((rx1 - rx0))" "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
user, sys_t, rx, ncpu, load = float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
cpu = user + sys_t
print(f"probes sent      {j['sent']:,} of {j['planned']:,} (retries {j['retries']})")
print(f"gateway received {rx:,} packets (probes + ARP/NDP + resolution datagrams)")
print(f"sending time     {j['seconds']:.2f} s, {j['pps']:,.0f} pps")
print(f"sender CPU       {cpu:.2f} s (user {user:.2f}, sys {sys_t:.2f}): {j['sent'] / cpu:,.0f} probes per CPU-second")
print(f"machine          {ncpu} CPUs, load average {load} at the end")
EOF
