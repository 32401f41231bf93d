#!/usr/bin/env bash
# Build the runtime wheel and the collection tarball, and install the tarball.
#
#   bash scripts/build-collection.sh [COLLECTIONS_DIR]
#
# - the runtime wheel (envoyage-<version>-py3-none-any.whl) goes into
#   roles/runtime/files/, so the collection carries it (the runtime role installs it);
# - the collection tarball goes into dist/ and is installed into COLLECTIONS_DIR
#   (default $ENVOYAGE_CACHE/collections), as `ansible-galaxy collection install` would
#   from Galaxy;
# - with WHEELHOUSE=1, the runtime's dependencies are also built as wheels into
#   $ENVOYAGE_CACHE/wheelhouse-<hash> (for hosts that install offline: the demo and the
#   Molecule scenarios mount it). Prints the paths as KEY=VALUE lines on stdout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_venv
COLLECTIONS="${1:-$CACHE/collections}"
say "building the runtime wheel"
rm -f "$ROOT"/roles/runtime/files/envoyage-*.whl
log="$(mktemp)"
if ! "$DEPS_VENV/bin/pip" wheel --no-deps --no-build-isolation -q -w "$ROOT/roles/runtime/files" "$ROOT/runtime" >"$log" 2>&1; then
  cat "$log" >&2; rm -f "$log"; die "building the runtime wheel failed"
fi
rm -rf "$ROOT/runtime/build"
wheel="$(ls "$ROOT"/roles/runtime/files/envoyage-*.whl)"
say "building the collection tarball"
mkdir -p "$ROOT/dist"
"$VENV/bin/ansible-galaxy" collection build --force --output-path "$ROOT/dist" "$ROOT" >"$log" 2>&1 \
  || { cat "$log" >&2; rm -f "$log"; die "ansible-galaxy collection build failed"; }
tarball="$(ls -t "$ROOT"/dist/envoyage-core-*.tar.gz | head -n1)"
mkdir -p "$COLLECTIONS"
"$VENV/bin/ansible-galaxy" collection install --force -p "$COLLECTIONS" "$tarball" >"$log" 2>&1 \
  || { cat "$log" >&2; rm -f "$log"; die "ansible-galaxy collection install failed"; }
rm -f "$log"
echo "WHEEL=$wheel"
echo "TARBALL=$tarball"
echo "COLLECTIONS=$COLLECTIONS"
if [ "${WHEELHOUSE:-0}" = 1 ]; then
  hash="$(basename "$DEPS_VENV" | sed 's/^deps-//')"
  house="$CACHE/wheelhouse-$hash"
  if [ ! -f "$house/.envoyage-ready" ]; then
    say "collecting the runtime's dependencies as wheels in $house (once per dependency list)"
    rm -rf "$house"; mkdir -p "$house"
    "$PY" - "$ROOT/runtime/pyproject.toml" > "$house/requirements.txt" <<'PYEOF'
import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))
PYEOF
    "$DEPS_VENV/bin/pip" wheel -q -w "$house" -r "$house/requirements.txt" >"$house/build.log" 2>&1 \
      || { tail -n 20 "$house/build.log" >&2; die "collecting the wheels failed (log: $house/build.log)"; }
    touch "$house/.envoyage-ready"
  fi
  echo "WHEELHOUSE=$house"
fi
