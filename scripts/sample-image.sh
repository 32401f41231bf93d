#!/usr/bin/env bash
# Build the tiny sample app image locally (no registry is reachable): a static busybox
# whose httpd answers with the container's hostname (its short id) unless
# /www/index.html is given. Tags: envoyage/sample-app:1 (EXPOSE 80) and
# envoyage/sample-app:noexpose (no exposed port; for tests). Rebuilt only when missing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_debian_packages busybox-static
ensure_dockerd
recipe="$(sha256sum "$0" | cut -c1-16)"
if [ "$(docker image inspect -f '{{index .Config.Labels "io.envoyage.sample-recipe"}}' envoyage/sample-app:1 2>/dev/null)" = "$recipe" ] \
   && docker image inspect envoyage/sample-app:noexpose >/dev/null 2>&1; then
  exit 0
fi
say "building the sample app image envoyage/sample-app:1 from busybox-static"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc"
cp /bin/busybox "$root/bin/busybox"
for app in sh httpd echo cat hostname sleep wget; do ln -s busybox "$root/bin/$app"; done
echo 'root:x:0:0:root:/:/bin/sh' > "$root/etc/passwd"
cat > "$root/bin/serve" <<'SH'
#!/bin/sh
# answer every request with this container's name (or a given page)
[ -f /www/index.html ] || hostname > /www/index.html
httpd -f -p "${PORT:-80}" -h /www &
# as PID 1 only a trapped signal is delivered: `docker stop` ends it at once
trap 'kill $!; exit 0' TERM INT
wait
SH
chmod +x "$root/bin/serve"
tar -C "$root" -c . | docker import --change 'CMD ["/bin/serve"]' --change 'EXPOSE 80' \
  --change 'ENV PATH=/bin' --change "LABEL io.envoyage.sample-recipe=$recipe" - envoyage/sample-app:1 >/dev/null
tar -C "$root" -c . | docker import --change 'CMD ["/bin/serve"]' --change 'ENV PATH=/bin' \
  --change "LABEL io.envoyage.sample-recipe=$recipe" - envoyage/sample-app:noexpose >/dev/null
say "built envoyage/sample-app:1"
