#!/usr/bin/env bash
# One command for every benchmark: installs the peers (Caddy, nginx from Debian), starts
# dockerd if needed, runs everything side by side and writes docs/benchmarks.md plus raw
# samples under bench/results/.   Usage: bash bench/run.sh [--smoke]
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
ensure_venv
ensure_debian_packages caddy nginx-light
# The Debian packages start their own daemons on ports 80/443 where they can: the
# benchmark runs its own instances on free ports, so stop the packaged ones.
pkill -x caddy 2>/dev/null || true
[ -f /run/nginx.pid ] && kill "$(cat /run/nginx.pid)" 2>/dev/null || true
bash "$ROOT/scripts/sample-image.sh"
if [ ! -x "$ROOT/../shared/peers/go-control-plane/gcp-xds" ]; then
  say "the go-control-plane peer (../shared/peers/go-control-plane/gcp-xds) is missing: its rows are skipped"
fi
say "running the benchmarks${1:+ ($1)}"
exec "$VENV/bin/python" "$ROOT/bench/bench.py" "$@"
