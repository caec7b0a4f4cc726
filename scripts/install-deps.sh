#!/usr/bin/env bash
# Installs the system packages leaktest needs to build, test and run its lab.
# Idempotent; run as root on Debian 12 (or newer).
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: must run as root (it installs Debian packages)" >&2
  exit 2
fi
pkgs=(
  build-essential pkg-config libpcap-dev # building the pcap crate
  iproute2 nftables procps util-linux    # namespaces, veth, firewall, setpriv
  iptables                               # lab --format iptables: iptables-nft-restore, ip6tables-nft-restore
  tor openssl                            # the lab's private Tor network (keys via openssl) and gateway
  obfs4proxy                             # the lab's obfs4 bridge and the gateway's client transport
  tshark nmap iputils-ping perl          # independent readers/peers in tests and benchmarks
  man-db                                 # `man -l` renders the generated manual pages in tests
  lintian dpkg-dev                       # scripts/package.sh: checks the .deb, computes its Depends
  chromium                               # renders the HTML report headless in a test (screenshot)
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian tor package starts a system-wide tor; the lab runs its own instances only.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet tor 2>/dev/null; then
  systemctl stop tor tor@default 2>/dev/null || true
fi
