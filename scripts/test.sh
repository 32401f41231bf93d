#!/usr/bin/env bash
# Install what is needed and run the whole test suite (unit + integration with real Envoy).
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
bash "$ROOT/scripts/sample-image.sh"  # docker.io, a running dockerd, the sample app image
cd "$ROOT/runtime"
say "running the test suite"
set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider -q -ra "$@" tests
rc=$?
set -e
if [ "$rc" = 5 ]; then
  die "pytest collected no tests: the suite is missing"
fi
exit "$rc"
