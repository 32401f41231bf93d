#!/usr/bin/env bash
# The demos.
#
#   bash scripts/demo.sh [stop|status]
#       Envoyage as users install it (the README's first command): the collection's site
#       playbook on two local systemd containers, home and vps (scripts/demo-nodes.sh)
#   bash scripts/demo.sh --local [stop|status]
#       the runtime alone on this machine (below)
#   bash scripts/demo.sh --topology a [stop|status]
#       topology A in network namespaces, no Ansible (scripts/demo-topology-a.sh)
#
# --local: a demo of the spine: control plane + a home Envoy + one sample app, all in the
# background, on the embedded SQLite registry. Returns once everything answers.
#
# It also installs Debian's docker.io if missing, starts dockerd if it is not running,
# builds a tiny sample image locally and starts one labelled container: containers
# you start with `envoyage.*` labels appear live.
#
#   bash scripts/demo.sh --local          start (or show, if already running)
#   bash scripts/demo.sh --local stop     stop everything the demo started
#   bash scripts/demo.sh --local status   show what runs
#
# Settings (environment): ENVOYAGE_DEMO_DIR (default /tmp/envoyage-demo),
# ENVOYAGE_DEMO_HTTP_PORT (8080), ENVOYAGE_DEMO_ADMIN_PORT (9901),
# ENVOYAGE_DEMO_APP_PORT (8081). Envoy reaches the control plane on the Unix socket
# $DIR/run/xds.sock, as in production.
# ENVOYAGE_DEMO_SCOPE (demo): the demo's Docker discovery scope. The demo's control plane
# only sees containers labelled envoyage.scope=<scope>, its containers are named
# envoyage-<scope>-*, and `stop` removes only containers in its scope, so a second demo
# or the test suite on the same dockerd never touches it.
set -euo pipefail
if [ "${1:-}" = "--local" ]; then
  shift
elif [ "${1:-}" = "--topology" ]; then
  case "${2:-}" in
    a|A) shift 2; exec bash "$(dirname "$0")/demo-topology-a.sh" "$@" ;;
    c|C) shift 2 ;;  # home only: the local demo
    b|B) echo "error: topology B (control plane on the VPS) is not available yet; use a or c" >&2; exit 2 ;;
    *) echo "error: --topology takes a (home + VPS, in network namespaces) or c (home only)" >&2; exit 2 ;;
  esac
else
  exec bash "$(dirname "$0")/demo-nodes.sh" "$@"
fi
source "$(dirname "$0")/lib.sh"

DIR="${ENVOYAGE_DEMO_DIR:-/tmp/envoyage-demo}"
HTTP_PORT="${ENVOYAGE_DEMO_HTTP_PORT:-8080}"
ADMIN_PORT="${ENVOYAGE_DEMO_ADMIN_PORT:-9901}"
APP_PORT="${ENVOYAGE_DEMO_APP_PORT:-8081}"
SCOPE="${ENVOYAGE_DEMO_SCOPE:-demo}"
[[ "$SCOPE" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$ ]] || die "ENVOYAGE_DEMO_SCOPE '$SCOPE': use letters, digits, '_', '.', '-'"
CONFIG="$DIR/control.yaml"
SOCK="$DIR/run/control.sock"
STOP_CMD="bash $ROOT/scripts/demo.sh --local stop"

running() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

stop_all() {
  local any=0
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    local ids
    ids="$(docker ps -aq --filter "label=envoyage.scope=$SCOPE" 2>/dev/null || true)"
    if [ -n "$ids" ]; then
      docker rm -f $ids >/dev/null
      say "removed the demo containers"
      any=1
    fi
  fi
  for name in envoy control app; do
    if running "$name"; then
      kill "$(cat "$DIR/$name.pid")" 2>/dev/null || true
      for _ in $(seq 50); do running "$name" || break; sleep 0.1; done
      running "$name" && kill -9 "$(cat "$DIR/$name.pid")" 2>/dev/null || true
      say "stopped $name"
      any=1
    fi
    rm -f "$DIR/$name.pid"
  done
  [ "$any" = 1 ] || say "the demo was not running"
}

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_until() {  # wait_until SECONDS DESCRIPTION COMMAND...
  local secs="$1" what="$2"; shift 2
  local i
  for i in $(seq $((secs * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  for log in "$DIR"/*.log; do
    [ -s "$log" ] && { echo "--- last lines of $log" >&2; tail -n 5 "$log" >&2; }
  done
  die "timed out after ${secs}s waiting for $what (logs in $DIR/*.log)"
}

show() {
  cat <<INFO

Envoyage demo is running (state in $DIR, registry $DIR/state/envoyage.db).

  Open:          http://hello.localhost:$HTTP_PORT/
  Or:            curl -H 'Host: hello.localhost' http://127.0.0.1:$HTTP_PORT/
  CLI:           export PATH=$VENV/bin:\$PATH ENVOYAGE_CONFIG=$CONFIG
                 envoyage status
                 envoyage services
                 envoyage service add notes --domain notes.localhost --upstream 127.0.0.1:$APP_PORT
  Docker:        http://whoami.localhost:$HTTP_PORT/ is the labelled container envoyage-$SCOPE-whoami.
                 Start your own and it appears live (the demo only sees its scope, envoyage.scope=$SCOPE):
                 docker run -d --name envoyage-$SCOPE-blog -l envoyage.enable=true -l envoyage.scope=$SCOPE \\
                   -l envoyage.domain=blog.localhost envoyage/sample-app:1
                 curl http://blog.localhost:$HTTP_PORT/
  Envoy admin:   http://127.0.0.1:$ADMIN_PORT/ (loopback only)
  Logs:          $DIR/control.log  $DIR/envoy.log  $DIR/log/access.log (JSON lines)

  Stop it all:   $STOP_CMD
INFO
}

case "${1:-start}" in
  stop) stop_all; exit 0 ;;
  status)
    for name in control envoy app; do
      if running "$name"; then echo "$name: running (pid $(cat "$DIR/$name.pid"))"; else echo "$name: stopped"; fi
    done
    exit 0 ;;
  start) ;;
  *) die "unknown action '$1' (use: start, stop, status)" ;;
esac

if running control && running envoy && running app; then
  say "the demo is already running"
  show
  exit 0
fi
stop_all >/dev/null 2>&1 || true

ensure_venv
bash "$ROOT/scripts/sample-image.sh"
mkdir -p "$DIR/app" "$DIR/run" "$DIR/log" "$DIR/state"
for p in "$HTTP_PORT" "$ADMIN_PORT" "$APP_PORT"; do
  port_free "$p" || die "port $p is in use; set ENVOYAGE_DEMO_*_PORT (see the top of $0)"
done

cat > "$CONFIG" <<YAML
# Envoyage control plane configuration for the demo (docs/configuration.md)
state_dir: $DIR/state
run_dir: $DIR/run
log_dir: $DIR/log
home_http_address: 127.0.0.1
home_http_port: $HTTP_PORT
log_level: info
docker:
  enabled: true
  scope: $SCOPE
YAML

cat > "$DIR/app/index.html" <<HTML
<!doctype html>
<html><head><meta charset="utf-8"><title>Hello from Envoyage</title></head>
<body><h1>Hello from Envoyage</h1>
<p>This page is served by a sample app behind a home Envoy that the Envoyage control plane configures over xDS.</p>
</body></html>
HTML

say "starting the sample app on 127.0.0.1:$APP_PORT"
setsid nohup "$PY" -m http.server "$APP_PORT" --bind 127.0.0.1 --directory "$DIR/app" >"$DIR/app.log" 2>&1 </dev/null &
echo $! > "$DIR/app.pid"

say "starting the control plane (xDS on $DIR/run/xds.sock, control API on $SOCK)"
setsid nohup "$VENV/bin/envoyage" --config "$CONFIG" control >"$DIR/control.log" 2>&1 </dev/null &
echo $! > "$DIR/control.pid"
wait_until 20 "the control plane" "$VENV/bin/envoyage" --config "$CONFIG" status

say "starting the home Envoy (HTTP on 127.0.0.1:$HTTP_PORT, admin on 127.0.0.1:$ADMIN_PORT)"
"$VENV/bin/envoyage" --config "$CONFIG" envoy-bootstrap --node-id demo-home --role home \
  --admin-port "$ADMIN_PORT" -o "$DIR/envoy.yaml"
# Envoy terminates when the process that started it exits, so it is started through
# `setsid -f` (whose parent is gone at once); the shell in between records its pid.
rm -f "$DIR/envoy.pid"
setsid -f bash -c 'echo $$ > "$1"; shift; exec "$@"' envoy-launcher "$DIR/envoy.pid" \
  "$VENV/bin/envoy" -c "$DIR/envoy.yaml" --concurrency 1 --log-level warn --base-id "$ADMIN_PORT" \
  >"$DIR/envoy.log" 2>&1 </dev/null
wait_until 10 "the Envoy process" test -s "$DIR/envoy.pid"
wait_until 30 "Envoy to become ready" curl -fsS "http://127.0.0.1:$ADMIN_PORT/ready"

services="$("$VENV/bin/envoyage" --config "$CONFIG" service ls --json)"
if ! grep -q '"name": "hello"' <<<"$services"; then
  say "adding the sample service 'hello' (hello.localhost -> 127.0.0.1:$APP_PORT)"
  "$VENV/bin/envoyage" --config "$CONFIG" service add hello --domain hello.localhost \
    --upstream "127.0.0.1:$APP_PORT" --health-path /
fi
wait_until 15 "hello.localhost to answer through Envoy" \
  curl -fsS -H 'Host: hello.localhost' "http://127.0.0.1:$HTTP_PORT/"
say "hello.localhost answers through Envoy"

say "starting the labelled container envoyage-$SCOPE-whoami (whoami.localhost)"
docker run -d --name "envoyage-$SCOPE-whoami" -l envoyage.enable=true -l "envoyage.scope=$SCOPE" \
  -l envoyage.domain=whoami.localhost \
  -l envoyage.healthcheck=/ envoyage/sample-app:1 >/dev/null
wait_until 15 "whoami.localhost to answer through Envoy (Docker discovery)" \
  curl -fsS -H 'Host: whoami.localhost' "http://127.0.0.1:$HTTP_PORT/"
say "whoami.localhost answers through Envoy (discovered from its labels)"
show
