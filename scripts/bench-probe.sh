#!/usr/bin/env bash
# Benchmark of `leaktest probe` (issue 2). Not a test: it prints figures, asserts nothing.
#
# In two network namespaces it creates (joined by a veth made inside them; deleted on exit,
# also on error or Ctrl-C), it sends, in the same run:
#   1. 65,536 UDP probes: `leaktest probe --suite udp --family 4 --rate max`
#   2. the same sweep with `nmap -sU -p- --min-rate 1000000 -Pn -n --max-retries 0`
#   3. 327,680 IPv4 TCP probes with leaktest (a longer single-family sweep)
#   4. the whole default suite, both families (787,460 probes) with leaktest
# and prints each rate, the leaktest/nmap ratio, and the default suite's sending seconds.
#
# Rates are measured on the receiving side, independently of both tools: a sampler inside the
# receiving namespace reads the veth's rx_packets counter every ~2 ms; a burst's rate is the
# packets counted between its first and last sample of at least 16 frames divided by that
# time (±2 ms).
# Each tool's own figure is printed beside it. The receiver drops the probes in netfilter
# (after the counter) so that its kernel does not spend the shared CPU answering them.
#
# Usage (root): scripts/bench-probe.sh            # REPEAT=3 rounds by default
#   LEAKTEST=/path/to/leaktest REPEAT=5 scripts/bench-probe.sh
# Addresses used: 203.0.113.1-2/24 and 2001:db8::1-2/64, only inside the two namespaces.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "bench-probe: must run as root (namespaces, raw sockets)" >&2
  exit 2
fi
for tool in ip nmap nft; do
  command -v "$tool" >/dev/null || { echo "bench-probe: $tool missing (scripts/install-deps.sh)" >&2; exit 2; }
done

repo=$(cd "$(dirname "$0")/.." && pwd)
REPEAT=${REPEAT:-3}
if [ -z "${LEAKTEST:-}" ]; then
  (cd "$repo" && cargo build --release --quiet -p leaktest)
  LEAKTEST="$repo/target/release/leaktest"
fi
[ -x "$LEAKTEST" ] || { echo "bench-probe: $LEAKTEST is not executable" >&2; exit 2; }

# Unique per run: parallel runs and leftovers of crashed runs never collide.
tag="lb$(printf '%x' $$)$(printf '%02x' $((RANDOM % 256)))"
ns_s="${tag}s" ns_r="${tag}r" if_s="${tag}s" if_r="${tag}r"
work=$(mktemp -d /tmp/bench-probe.XXXXXX)
pids=()

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # Only processes this script started, by PID.
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns delete "$ns_s" 2>/dev/null || true
  ip netns delete "$ns_r" 2>/dev/null || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$ns_s"
ip netns add "$ns_r"
ip link add name "$if_s" netns "$ns_s" type veth peer name "$if_r" netns "$ns_r"
for ns in "$ns_s" "$ns_r"; do ip -n "$ns" link set lo up; done
ip -n "$ns_s" link set "$if_s" up
ip -n "$ns_r" link set "$if_r" up
ip -n "$ns_s" addr add 203.0.113.1/24 dev "$if_s"
ip -n "$ns_r" addr add 203.0.113.2/24 dev "$if_r"
ip -n "$ns_s" addr add 2001:db8::1/64 dev "$if_s" nodad
ip -n "$ns_r" addr add 2001:db8::2/64 dev "$if_r" nodad
ip netns exec "$ns_r" nft -f - <<'EOF'
table inet bench {
  chain pre {
    type filter hook prerouting priority -450; policy accept;
    ip saddr 203.0.113.1 drop
    ip6 saddr 2001:db8::1 icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
    ip6 saddr 2001:db8::1 drop
  }
}
EOF
# Resolve neighbours once so that no tool's first packets wait for ARP/ND.
ip netns exec "$ns_s" ping -c 1 -W 1 -q 203.0.113.2 >/dev/null 2>&1 || true
ip netns exec "$ns_s" ping -6 -c 1 -W 1 -q 2001:db8::2 >/dev/null 2>&1 || true
sleep 0.5 # let link-up housekeeping (MLD, RS) pass before measuring

rt=""
if command -v chrt >/dev/null && chrt -f 10 true 2>/dev/null; then rt="chrt -f 10"; fi
# Receiver-side sampler: prints "<packets> <seconds>" of the next burst (≥16 packets in one
# sample starts it; 0.5 s without change ends it; 120 s bound). Bash builtins only, so the
# sampler itself costs little CPU.
sampler() {
  # Real-time priority: the senders keep both cores busy, and a sampler that
  # is scheduled late would misplace the burst's first and last counts.
  $rt ip netns exec "$ns_r" bash -c '
    f=/sys/class/net/$1/statistics/rx_packets
    exec {z}<> <(:)
    read -r prev <"$f"; t=$EPOCHREALTIME; prev_t=${t/./}
    deadline=$((prev_t + 120000000)); base=""
    while :; do
      read -t 0.002 -u "$z" _ || true
      read -r v <"$f"; t=$EPOCHREALTIME; t=${t/./}
      if [ -z "$base" ]; then
        if (( v - prev >= 16 )); then base=$prev; t0=$prev_t; last=$v; tl=$t; big=$v; tb=$t; fi
      elif (( v != last )); then
        (( v - last >= 16 )) && { big=$v; tb=$t; }
        last=$v; tl=$t
      elif (( t - tl > 500000 )); then break
      fi
      prev=$v; prev_t=$t
      (( t > deadline )) && break
    done
    if [ -z "$base" ]; then echo "0 0"; else
      # The burst ends at its last sample of >= 16 frames: a stray frame
      # (ARP, ND) long after it must not stretch the burst.
      d=$((tb - t0)); printf "%d %d.%06d\n" $((big - base)) $((d / 1000000)) $((d % 1000000))
    fi' sampler "$if_r" >"$1" &
  pids+=($!)
  sleep 0.2 # sampler has its baseline before the tool starts
}

wait_sampler() { wait "${pids[-1]}" || true; unset 'pids[-1]'; }
pps_of() { awk '{ if ($2 > 0) printf "%.0f", $1 / $2; else print 0 }' "$1"; }
json_num() { sed -n "s/^ *\"$2\": *\([0-9.e+-]*\),\{0,1\}$/\1/p" "$1" | head -1; }
# A JSON number rounded to $3 decimals ("?" if absent).
json_fmt() { local v; v=$(json_num "$1" "$2"); [ -n "$v" ] && printf "%.${3}f" "$v" || printf '?'; }

printf 'bench-probe: %s, %s CPUs, kernel %s, load average %s\n' "$("$LEAKTEST" --version 2>/dev/null || echo leaktest)" "$(nproc)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"
ratios=()
for round in $(seq 1 "$REPEAT"); do
  # 1. leaktest, 65,536 UDP probes.
  sampler "$work/lt.rx"
  ip netns exec "$ns_s" "$LEAKTEST" probe --on-link --target 203.0.113.2 --suite udp --family 4 \
    --rate max --json "$work/lt.json" >"$work/lt.out"
  wait_sampler
  lt_rx=$(pps_of "$work/lt.rx")
  # 2. nmap, same sweep.
  sampler "$work/nm.rx"
  ip netns exec "$ns_s" nmap -v -sU -p- --min-rate 1000000 -Pn -n --max-retries 0 203.0.113.2 \
    >"$work/nm.out" 2>&1
  wait_sampler
  nm_rx=$(pps_of "$work/nm.rx")
  nm_elapsed=$(sed -n 's/.*Completed UDP Scan at .*, \([0-9.]*\)s elapsed.*/\1/p' "$work/nm.out" | tail -1)
  ratio=$(awk -v a="$lt_rx" -v b="$nm_rx" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "n/a" }')
  ratios+=("$ratio")
  read -r lt_n lt_s <"$work/lt.rx"
  read -r nm_n nm_s <"$work/nm.rx"
  printf 'round %d  udp 65,536  leaktest: %7s pps at receiver (%d frames in %.3f s; own figure %s pps)\n' \
    "$round" "$lt_rx" "$lt_n" "$lt_s" "$(json_fmt "$work/lt.json" pps 0)"
  printf '          udp 65,535  nmap:     %7s pps at receiver (%d frames in %.3f s; scan phase %ss)\n' \
    "$nm_rx" "$nm_n" "$nm_s" "${nm_elapsed:-?}"
  printf '          ratio leaktest/nmap: %s\n' "$ratio"
  # 3. a longer single-family sweep: 327,680 IPv4 TCP probes.
  sampler "$work/tcp.rx"
  ip netns exec "$ns_s" "$LEAKTEST" probe --on-link --target 203.0.113.2 --suite tcp --family 4 \
    --rate max --json "$work/tcp.json" >"$work/tcp.out"
  wait_sampler
  read -r tcp_n tcp_s <"$work/tcp.rx"
  printf '          tcp 327,680 (ipv4): %7s pps at receiver (%d frames in %.3f s; own figure %s pps)\n' \
    "$(pps_of "$work/tcp.rx")" "$tcp_n" "$tcp_s" "$(json_fmt "$work/tcp.json" pps 0)"
  # 4. the whole default suite, both families.
  sampler "$work/all.rx"
  ip netns exec "$ns_s" "$LEAKTEST" probe --on-link --target 203.0.113.2 --target6 2001:db8::2 \
    --rate max --json "$work/all.json" >"$work/all.out"
  wait_sampler
  read -r all_n all_s <"$work/all.rx"
  printf '          default suite: %s probes sent in %s s of sending (%s pps); receiver saw %d frames in %.3f s (%s pps)\n' \
    "$(json_num "$work/all.json" sent)" "$(json_fmt "$work/all.json" seconds 3)" \
    "$(json_fmt "$work/all.json" pps 0)" "$all_n" "$all_s" "$(pps_of "$work/all.rx")"
done
printf 'ratios leaktest/nmap over %d rounds: %s (load average now: %s)\n' "$REPEAT" "${ratios[*]}" \
  "$(cut -d' ' -f1-3 /proc/loadavg)"
