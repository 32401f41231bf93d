#!/usr/bin/env bash
# Topology A on one machine: home (this host's root namespace: control plane, home Envoy,
# Docker containers) dials a WireGuard tunnel through a NAT router namespace to a "VPS"
# namespace (envoyage edge + the VPS Envoy); an "internet" client namespace reaches only
# the VPS, a "LAN" client namespace only home. Split-horizon DNS: home's Unbound answers the
# LAN client with home's address, BIND9 (the "internet's DNS", DNSSEC-signed, in the VPS
# namespace) answers the internet client with the VPS's. Layout: scripts/topology_a.py.
#
#   bash scripts/demo.sh --topology a          start (or show, if already running)
#   bash scripts/demo.sh --topology a stop     stop it and remove every namespace and interface
#   bash scripts/demo.sh --topology a status   show what runs
#
# Settings (environment): ENVOYAGE_DEMO_A_DIR (/tmp/envoyage-topology-a),
# ENVOYAGE_DEMO_A_NET (10.231: the lab's addresses are 10.231.x.y, inside the namespaces
# and on two veth interfaces the demo adds), ENVOYAGE_DEMO_A_TAG (eya: the namespaces are
# eya-lan, eya-router, eya-vps, eya-inet), ENVOYAGE_DEMO_A_HTTP_PORT (18480: the home
# Envoy's LAN port), ENVOYAGE_DEMO_A_ADMIN_PORT (19901), ENVOYAGE_DEMO_SCOPE (demo-a).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DIR="${ENVOYAGE_DEMO_A_DIR:-/tmp/envoyage-topology-a}"
NET="${ENVOYAGE_DEMO_A_NET:-10.231}"
SCOPE="${ENVOYAGE_DEMO_SCOPE:-demo-a}"
TAG="${ENVOYAGE_DEMO_A_TAG:-eya}"
HTTP_PORT="${ENVOYAGE_DEMO_A_HTTP_PORT:-18480}"
ADMIN_PORT="${ENVOYAGE_DEMO_A_ADMIN_PORT:-19901}"

lab() { "$VENV/bin/python" "$ROOT/scripts/topology_a.py" "$@"; }

stop_all() {
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    local ids
    ids="$(docker ps -aq --filter "label=envoyage.scope=$SCOPE" 2>/dev/null || true)"
    [ -z "$ids" ] || { docker rm -f $ids >/dev/null; say "removed the demo containers"; }
  fi
  if [ -x "$VENV/bin/python" ]; then
    lab down --dir "$DIR" --net "$NET" --tag "$TAG"
    say "stopped the processes and removed the namespaces, the tunnel and the veth interfaces"
  fi
}

case "${1:-start}" in
  stop) stop_all; exit 0 ;;
  status)
    if [ -f "$DIR/lab.json" ]; then
      "$VENV/bin/envoyage" -c "$DIR/home/control.yaml" status || true
    else
      echo "topology A demo: not running"
    fi
    exit 0 ;;
  start) ;;
  *) die "unknown action '$1' (use: start, stop, status)" ;;
esac

[ "$(id -u)" = 0 ] || die "the topology A demo needs root (network namespaces, WireGuard interfaces)"
if [ -f "$DIR/lab.json" ] && "$VENV/bin/envoyage" -c "$DIR/home/control.yaml" status >/dev/null 2>&1; then
  say "topology A is already running"
  lab info --dir "$DIR"
  exit 0
fi
ensure_venv
ensure_debian_packages iproute2 iptables wireguard-go wireguard-tools curl unbound bind9 bind9-utils bind9-dnsutils
bash "$ROOT/scripts/sample-image.sh"
stop_all >/dev/null 2>&1 || true
rm -rf "$DIR"
lab up --dir "$DIR" --net "$NET" --scope "$SCOPE" --tag "$TAG" --http-port "$HTTP_PORT" --admin-port "$ADMIN_PORT" --dns || { stop_all >/dev/null 2>&1 || true; die "topology A did not come up (logs in $DIR/*.log)"; }

say "starting labelled containers: whoami.example.test (public) and private.example.test (vpn-only)"
docker run -d --name "envoyage-$SCOPE-whoami" -l envoyage.enable=true -l "envoyage.scope=$SCOPE" \
  -l envoyage.name=whoami -l envoyage.domain=whoami.example.test envoyage/sample-app:1 >/dev/null
docker run -d --name "envoyage-$SCOPE-private" -l envoyage.enable=true -l "envoyage.scope=$SCOPE" \
  -l envoyage.name=private -l envoyage.domain=private.example.test -l envoyage.access=vpn-only \
  envoyage/sample-app:1 >/dev/null
for i in $(seq 150); do
  if ip netns exec "$TAG-inet" curl -fsS --max-time 2 -H 'Host: whoami.example.test' "http://$NET.4.1/" >/dev/null 2>&1; then
    break
  fi
  [ "$i" = 150 ] && die "whoami.example.test did not answer through the VPS within 30 s (logs in $DIR/*.log)"
  sleep 0.2
done
say "whoami.example.test answers from the internet namespace, through the VPS and the tunnel"
lab info --dir "$DIR"
