#!/usr/bin/env bash
# Build the local systemd base image for the two-node demo and the Molecule scenarios:
# a bare Debian 12 (debootstrap minbase + python3 + systemd), imported into the local
# dockerd. No image registry is reachable, so nothing is pulled.
#
#   bash scripts/base-image.sh        build it unless the current recipe is there; prints the tag
#
# The image is tagged envoyage/debian12-systemd:<recipe hash>; a changed recipe (this file)
# gives a new tag, so an old image is never mistaken for a current one. The debootstrap
# tree is cached as a tarball in $ENVOYAGE_CACHE/base-<hash>.tar (default
# /var/cache/envoyage), so a machine whose dockerd lost its images re-imports it in seconds.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PACKAGES="python3,systemd,systemd-sysv,dbus,iproute2,ca-certificates,procps,iputils-ping"
recipe="$( { cat "$0"; echo "$PACKAGES"; } | sha256sum | cut -c1-12)"
TAG="envoyage/debian12-systemd:$recipe"
TARBALL="$CACHE/base-$recipe.tar"

ensure_dockerd
if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "$TAG"
  exit 0
fi
mkdir -p "$CACHE"
exec 8>"$CACHE/base-image.lock"
flock 8
if ! docker image inspect "$TAG" >/dev/null 2>&1; then
  if [ ! -s "$TARBALL" ]; then
    ensure_debian_packages debootstrap
    # the machine's own Debian mirror (deb822 sources), else deb.debian.org
    mirror="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs: *//p' | grep -v security | head -n1 || true)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    root="$(mktemp -d "$CACHE/base-root.XXXXXX")"
    trap 'rm -rf "$root"' EXIT
    say "building the base image (debootstrap bookworm from $mirror, about a minute, once)"
    if ! debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$mirror" \
         >"$CACHE/base-image.log" 2>&1; then
      tail -n 20 "$CACHE/base-image.log" >&2
      die "debootstrap failed (full log: $CACHE/base-image.log)"
    fi
    security="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs: *\(.*security.*\)/\1/p' | head -n1 || true)"
    cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${security:-http://deb.debian.org/debian-security} bookworm-security main
EOF
    # units that do not belong in a container
    for unit in getty@tty1.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
                e2scrub_all.timer fstrim.timer systemd-udevd.service systemd-udevd-control.socket \
                systemd-udevd-kernel.socket systemd-firstboot.service systemd-modules-load.service \
                sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount; do
      ln -sf /dev/null "$root/etc/systemd/system/$unit"
    done
    : > "$root/etc/machine-id"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
    tar -C "$root" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    rm -rf "$root"
    trap - EXIT
  fi
  say "importing the base image $TAG"
  docker import --change 'ENV container=docker' --change 'CMD ["/sbin/init"]' \
    --change "LABEL io.envoyage.base-recipe=$recipe" "$TARBALL" "$TAG" >/dev/null
fi
flock -u 8
echo "$TAG"
