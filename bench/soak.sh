#!/usr/bin/env bash
# The ADS soak (issue 9): many simulated Envoys, churn, a stopped consumer, bursts with a
# real Envoy; RSS, threads and descriptors of the control plane before and after.
# Writes the "Soak" section of docs/benchmarks.md.   Usage: bash bench/soak.sh [--smoke]
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
ensure_venv
say "running the soak${1:+ ($1)}"
exec "$VENV/bin/python" "$ROOT/bench/soak.py" "$@"
