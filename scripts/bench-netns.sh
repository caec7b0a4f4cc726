# Sourced by the benchmarks (bench-watch.sh, bench-pulse.sh): two namespaces
# "$ws" (the sender, bw0: 198.51.100.2, 2001:db8:1::2) and "$pe" (the peer,
# bp0: 198.51.100.1, 2001:db8:1::1) joined by a veth pair made inside them,
# a scratch directory "$tmp", and a cleanup on exit, error or Ctrl-C that
# ends the watch started as "$watch_pid" (under /usr/bin/time) and deletes
# both namespaces. Needs "$tag" (unique per run) set before sourcing.
ws="${tag}ws"
pe="${tag}pe"
tmp="$(mktemp -d)"
watch_pid=""
cleanup() {
  if [ -n "$watch_pid" ] && kill -0 "$watch_pid" 2>/dev/null; then
    kill -TERM "$(pgrep -P "$watch_pid")" 2>/dev/null || true
    wait "$watch_pid" 2>/dev/null || true
  fi
  ip netns del "$ws" 2>/dev/null || true
  ip netns del "$pe" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

ip netns add "$ws"
ip netns add "$pe"
ip link add name bw0 netns "$ws" type veth peer name bp0 netns "$pe"
for ns in "$ws" "$pe"; do ip -n "$ns" link set lo up; done
ip -n "$ws" link set bw0 up
ip -n "$pe" link set bp0 up
ip -n "$ws" addr add 198.51.100.2/24 dev bw0
ip -n "$ws" -6 addr add 2001:db8:1::2/64 dev bw0 nodad
ip -n "$pe" addr add 198.51.100.1/24 dev bp0
ip -n "$pe" -6 addr add 2001:db8:1::1/64 dev bp0 nodad
# The peer drops everything but neighbour discovery, so it answers nothing that would add
# inbound noise.
ip netns exec "$pe" nft -f - <<'NFT'
table inet bench {
  chain in {
    type filter hook input priority filter; policy drop;
    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
  }
}
NFT
ip netns exec "$ws" ping -c1 -W1 198.51.100.1 >/dev/null 2>&1 || true
ip netns exec "$ws" ping -6 -c1 -W1 2001:db8:1::1 >/dev/null 2>&1 || true
