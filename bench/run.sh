#!/usr/bin/env bash
# One command for every benchmark: installs the peers (Caddy, nginx from Debian), starts
# dockerd if needed, runs everything side by side and writes docs/benchmarks.md plus raw
# samples under bench/results/.   Usage: bash bench/run.sh [--smoke]
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
ensure_venv
had_peers=1
dpkg-query -W -f='${Status}' caddy nginx-light 2>/dev/null | grep -c "install ok installed" | grep -qx 2 || had_peers=0
ensure_debian_packages caddy nginx-light
# The benchmark runs its own Caddy and nginx on free ports. When this run installed the
# packages, the daemons they just started (on 80/443) are stopped again; daemons that
# were there before are the user's and are left alone.
if [ "$had_peers" = 0 ]; then
  # only the packaged daemon (Debian's unit starts exactly this command line), not any
  # other Caddy on the machine
  if [ -d /run/systemd/system ]; then
    systemctl stop caddy 2>/dev/null || true
  else
    pkill -f -x '/usr/bin/caddy run --environ --config /etc/caddy/Caddyfile' 2>/dev/null || true
  fi
  [ -f /run/nginx.pid ] && kill "$(cat /run/nginx.pid)" 2>/dev/null || true
fi
# topology A runs in network namespaces with wireguard-go; wrk loads the three paths
ensure_debian_packages wireguard-go wireguard-tools iptables iproute2 wrk unbound bind9 bind9-utils bind9-dnsutils
bash "$ROOT/scripts/sample-image.sh"
if [ ! -x "$ROOT/../shared/peers/go-control-plane/gcp-xds" ]; then
  say "the go-control-plane peer (../shared/peers/go-control-plane/gcp-xds) is missing: its rows are skipped"
fi
say "running the benchmarks${1:+ ($1)}"
exec "$VENV/bin/python" "$ROOT/bench/bench.py" "$@"
