#!/usr/bin/env bash
# The README's first command: Envoyage as users meet it. Builds the collection tarball,
# installs it, starts two local systemd containers, `home` and `vps` (from a Debian base
# image built here; no registry is reachable), runs the collection's site playbook
# against them (topology A: WireGuard from home to the VPS, the edge on the VPS, Unbound
# and the control plane on home) and starts a labelled app container on home's Docker.
# Prints the URLs and curl lines that work through the VPS and directly on home.
#
#   bash scripts/demo.sh              start (or show, if already running)
#   bash scripts/demo.sh stop         remove the containers, their network and the inventory
#   bash scripts/demo.sh status       show what runs
#
# Settings (environment): ENVOYAGE_NODES_NAME (envoyage-nodes: the containers are
# <name>-home, <name>-vps and <name>-whoami, on the Docker network <name>),
# ENVOYAGE_NODES_SUBNET (198.18.80: a benchmarking range, not a real network),
# ENVOYAGE_NODES_DOMAIN (example.test), ENVOYAGE_NODES_DIR (/var/tmp/envoyage-nodes:
# the inventory and the logs).
# Caches shared with the Molecule scenarios (kept across runs, under $ENVOYAGE_CACHE,
# default /var/cache/envoyage): the base image, the apt archives and lists (one set for
# home instances, one for VPS instances: apt locks them while it works), and a
# wheelhouse of the runtime's dependencies.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

NAME="${ENVOYAGE_NODES_NAME:-envoyage-nodes}"
SUBNET="${ENVOYAGE_NODES_SUBNET:-198.18.80}"
DOMAIN="${ENVOYAGE_NODES_DOMAIN:-example.test}"
DIR="${ENVOYAGE_NODES_DIR:-/var/tmp/envoyage-nodes}"
SCOPE="$NAME"
HOME_IP="$SUBNET.2"
VPS_IP="$SUBNET.3"
STOP_CMD="bash $ROOT/scripts/demo.sh stop"
[[ "$NAME" =~ ^[a-z0-9][a-z0-9-]{0,40}$ ]] || die "ENVOYAGE_NODES_NAME '$NAME': use lowercase letters, digits and '-'"

started=$(date +%s)
step() { say "[$1/6 $(( $(date +%s) - started ))s] $2"; }

stop_all() {
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    local ids
    ids="$(docker ps -aq --filter "name=^${NAME}-(home|vps|whoami)\$")"
    [ -z "$ids" ] || { docker rm -f $ids >/dev/null; say "removed the containers $NAME-home, $NAME-vps, $NAME-whoami"; }
    docker network rm "$NAME" >/dev/null 2>&1 && say "removed the network $NAME" || true
  fi
  rm -rf "$DIR"
}

through_vps() { curl -fsS --max-time 3 -H "Host: whoami.$DOMAIN" "http://$VPS_IP/" >/dev/null 2>&1; }

show() {
  cat <<EOF

Envoyage runs in two local systemd containers, set up by the collection's site playbook
(inventory: $DIR/inventory.yml, playbook log: $DIR/site.log):

  home  $NAME-home  $HOME_IP   control plane, home Envoy, Unbound, WireGuard (dials the VPS)
  vps   $NAME-vps   $VPS_IP   edge service, VPS Envoy, CrowdSec, WireGuard (listens)
  app   $NAME-whoami           a labelled container on home's Docker (no envoyage.domain label:
                               it is served as whoami.$DOMAIN from envoyage_domain)

Through the VPS (the internet's way in), and directly on home (the LAN's):
  curl -H 'Host: whoami.$DOMAIN' http://$VPS_IP/
  curl -H 'Host: whoami.$DOMAIN' http://$HOME_IP/
  curl --resolve whoami.$DOMAIN:80:$VPS_IP http://whoami.$DOMAIN/

Home's resolver answers the LAN with home's address, the demo's public DNS (Unbound on the
VPS container, standing in for the internet's; nothing leaves this machine) the VPS's:
  docker exec $NAME-home envoyage check dns whoami.$DOMAIN

Status, services and the tunnel, on home:
  docker exec $NAME-home envoyage status
  docker exec $NAME-home wg show envoyage0
(The containers have no WireGuard in their kernel, so the tunnel runs on wireguard-go, whose
socket only root can read: envoyage status reads what envoyage-tunnel-status writes.)

Add a service: start a container with labels on this machine's Docker, e.g.
  docker run -d --network $NAME -l envoyage.enable=true -l envoyage.scope=$SCOPE -l envoyage.name=hello envoyage/sample-app:1
  curl -H 'Host: hello.$DOMAIN' http://$VPS_IP/

Re-run the playbook (changes nothing):
  ANSIBLE_COLLECTIONS_PATH=$DIR/collections ANSIBLE_PIPELINING=1 $VENV/bin/ansible-playbook -i $DIR/inventory.yml $ROOT/site.yml

Remove it all:
  $STOP_CMD
EOF
}

case "${1:-start}" in
  stop) stop_all; exit 0 ;;
  status)
    if docker ps -q --filter "name=^$NAME-home\$" 2>/dev/null | grep -q .; then
      docker exec "$NAME-home" envoyage status || true
    else
      echo "the two-node demo is not running"
    fi
    exit 0 ;;
  start) ;;
  *) die "unknown action '$1' (use: start, stop, status)" ;;
esac

[ "$(id -u)" = 0 ] || die "the demo needs root (Docker, systemd containers)"
if [ -f "$DIR/ready" ] && through_vps; then
  say "the two-node demo is already running"
  show
  exit 0
fi

step 1 "checking what is needed (Python venv with Ansible, Docker)"
ensure_venv
ensure_debian_packages curl
ensure_dockerd
bash "$ROOT/scripts/sample-image.sh"

step 2 "the base image (a bare Debian 12 with systemd; built once, about a minute)"
IMAGE="$(bash "$ROOT/scripts/base-image.sh" | tail -n1)"

step 3 "building the runtime wheel and the collection tarball, installing the collection"
stop_all >/dev/null 2>&1 || true
mkdir -p "$DIR"
chmod 700 "$DIR"
eval "$(WHEELHOUSE=1 bash "$ROOT/scripts/build-collection.sh" "$DIR/collections" | grep -E '^[A-Z]+=')"
say "collection: $(basename "$TARBALL"), runtime wheel: $(basename "$WHEEL")"

step 4 "starting the containers $NAME-home and $NAME-vps"
# apt caches per instance kind (apt locks them, so two instances cannot share one at once)
mkdir -p "$CACHE"/apt/{home,vps}/{archives,lists}/partial
docker network create --subnet "$SUBNET.0/24" --gateway "$SUBNET.1" "$NAME" >/dev/null
node() {  # node NAME IP EXTRA...
  local host="$1" ip="$2"; shift 2
  docker run -d --name "$NAME-$host" --hostname "$host" --network "$NAME" --ip "$ip" \
    --cap-add NET_ADMIN --cap-add SYS_ADMIN --device /dev/net/tun \
    --tmpfs /run --tmpfs /run/lock -v /sys/fs/cgroup:/sys/fs/cgroup:ro --cgroupns host \
    --stop-signal SIGRTMIN+3 --sysctl net.ipv6.conf.all.disable_ipv6=0 \
    -v "$CACHE/apt/$host/archives:/var/cache/apt/archives" -v "$CACHE/apt/$host/lists:/var/lib/apt/lists" \
    -v "$WHEELHOUSE:/var/cache/envoyage-wheels:ro" \
    --label "io.envoyage.nodes=$NAME" "$@" "$IMAGE" /sbin/init >/dev/null
}
node home "$HOME_IP" -v /var/run/docker.sock:/var/run/docker.sock
node vps "$VPS_IP"
for host in home vps; do
  for _ in $(seq 100); do
    state="$(docker exec "$NAME-$host" systemctl is-system-running 2>/dev/null || true)"
    case "$state" in running|degraded) break ;; esac
    sleep 0.2
  done
done
cat > "$DIR/inventory.yml" <<EOF
# The two-node demo (scripts/demo-nodes.sh). A real inventory: docs/install.md.
all:
  vars:
    ansible_connection: community.docker.docker
    ansible_python_interpreter: /usr/bin/python3
    envoyage_topology: a
    envoyage_domain: $DOMAIN
    envoyage_vps_address: $VPS_IP
    envoyage_lan_cidrs: ["$SUBNET.0/24"]
    # the instances install the runtime's dependencies from the shared wheelhouse
    envoyage_pip_extra_args: --no-index --find-links /var/cache/envoyage-wheels
    # this control plane sees only this demo's containers on the machine's Docker
    control_plane_docker_scope: $SCOPE
    # nothing leaves this machine: home's resolver and \`envoyage check dns\` ask the demo's
    # own "public DNS" on the VPS container (extensions/molecule/common/lab_dns.yml), never the internet
    unbound_forwarders: ["$VPS_IP"]
    control_plane_dns_public_resolver: $VPS_IP
  children:
    home:
      hosts:
        $NAME-home:
    vps:
      hosts:
        $NAME-vps:
EOF

step 5 "running the site playbook, after the demo's own public DNS (full log: $DIR/site.log)"
set +e
{ ANSIBLE_COLLECTIONS_PATH="$DIR/collections" ANSIBLE_PIPELINING=1 ANSIBLE_NOCOLOR=1 \
    "$VENV/bin/ansible-playbook" -i "$DIR/inventory.yml" "$ROOT/extensions/molecule/common/lab_dns.yml" \
  && ANSIBLE_COLLECTIONS_PATH="$DIR/collections" ANSIBLE_PIPELINING=1 ANSIBLE_NOCOLOR=1 \
    "$VENV/bin/ansible-playbook" -i "$DIR/inventory.yml" "$ROOT/site.yml"; } 2>&1 | tee "$DIR/site.log" \
  | sed -u -n 's/^TASK \[\(.*\)\] \**$/    \1/p; s/^PLAY \[\(.*\)\] \**$/  \1/p'
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" != 0 ]; then
  grep -E -A12 '^(fatal|failed):' "$DIR/site.log" | head -n 40 >&2 || tail -n 30 "$DIR/site.log" >&2
  die "the site playbook failed (full log: $DIR/site.log; remove it all: $STOP_CMD)"
fi
grep -A3 '^PLAY RECAP' "$DIR/site.log" >&2

step 6 "starting the labelled app and waiting for it through the VPS"
docker run -d --name "$NAME-whoami" --network "$NAME" -l envoyage.enable=true -l "envoyage.scope=$SCOPE" \
  -l envoyage.name=whoami envoyage/sample-app:1 >/dev/null
for i in $(seq 150); do
  through_vps && break
  [ "$i" = 150 ] && die "whoami.$DOMAIN did not answer through the VPS within 30 s (docker exec $NAME-home envoyage status)"
  sleep 0.2
done
touch "$DIR/ready"
say "whoami.$DOMAIN answers through the VPS, $(( $(date +%s) - started )) s after the start"
show
