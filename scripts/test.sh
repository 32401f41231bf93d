#!/usr/bin/env bash
# Install what is needed and run the whole test suite (unit + integration with real Envoy).
# Usage: bash scripts/test.sh [pytest args...]
#        bash scripts/test.sh --unit [pytest args...]   the unit tests only (runtime/tests/unit, or
#          the test files named, e.g. tests/unit/test_model.py::test_x, relative to runtime/;
#          under a minute): no Debian packages, dockerd or sample image, and no root once
#          the venv exists (the first run makes it, as the whole suite does)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
if [ "${1:-}" = "--unit" ]; then
  shift
  venv_ready || ensure_venv
  cd "$ROOT/runtime"
  say "running the unit tests"
  # test files or directories named on the command line (relative to runtime/) are what
  # runs; without one, the whole of tests/unit
  where=tests/unit
  for arg in "$@"; do
    case "$arg" in -*) ;; *) [ -e "${arg%%::*}" ] && where= ;; esac
  done
  exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q "$@" $where
fi
ensure_venv
# the tests also use network namespaces and iptables (dead-peer test), ss, setpriv and mount;
# topology A: wireguard-go and wg, curl in the namespaces, Unbound and BIND9 (DNSSEC: dnssec-keygen,
# dnssec-signzone, dig)
ensure_debian_packages iproute2 iptables util-linux mount wireguard-go wireguard-tools curl \
  unbound bind9 bind9-utils bind9-dnsutils
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
