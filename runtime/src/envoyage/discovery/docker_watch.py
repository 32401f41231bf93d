"""Docker discovery: follow dockerd's event stream and keep the registry in step.

The only I/O edge of discovery. Reads containers, events and networks; the one write
(`docker.mesh`: create `envoyage-mesh` and attach labelled containers) is in
`_ensure_mesh`/`_attach`. Everything else is the pure `derive_services`.

- Full resync at start and after every reconnect (dockerd restarted, socket gone).
- Events: container start/die/stop/kill/destroy/rename/pause/unpause and network
  connect/disconnect re-inspect that one container.
- While dockerd is unreachable the last known state stays; nothing is removed in bulk.
- A scope (`docker.scope`) limits discovery to containers labelled envoyage.scope=<scope>;
  containers of other scopes are not seen at all.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from ..networks import DockerNetwork
from ..status import DiscoveryStatus
from .containers import MESH_NETWORK, ContainerInfo, derive_services
from .labels import PREFIX, SCOPE_LABEL, in_scope, parse_labels

log = logging.getLogger("envoyage.discovery")

# `docker stop`/`kill` announce themselves with a kill event before the process exits:
# the route goes at once, so Envoy stops sending new requests before the app is gone.
STOP_SIGNALS = {"15", "9", "2", "3", "SIGTERM", "SIGKILL", "SIGINT", "SIGQUIT", "TERM", "KILL", "INT", "QUIT"}
CONTAINER_ACTIONS = {"start", "die", "stop", "kill", "destroy", "rename", "pause", "unpause", "restart", "oom"}
NETWORK_ACTIONS = {"connect", "disconnect"}
SOURCE = "docker"


def default_docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


class DockerWatcher:
    def __init__(
        self,
        sync: Callable[[str, list], None],
        docker_host: str = "",
        mesh: bool = False,
        backoff: tuple[float, float] = (0.2, 5.0),
        scope: str = "",
        default_domain: str = "",
        on_networks: Callable[[list], None] | None = None,
        trust_image_labels: bool = False,
    ):
        """`on_networks(list of DockerNetwork)` hears dockerd's networks at every resync and
        whenever one is created or removed (vpn-only never admits them)."""
        self._sync = sync
        self._on_networks = on_networks
        self.trust_image_labels = trust_image_labels
        self._image_labels: dict[str, dict[str, str]] = {}  # image id -> its labels (an image never changes)
        self.docker_host = docker_host or default_docker_host()
        self.mesh = mesh
        self.default_domain = default_domain  # <name>.<default_domain> when envoyage.domain is not set
        self.scope = scope  # "": every labelled container; else only those with envoyage.scope=<scope>
        self._backoff = backoff
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None  # docker.DockerClient while connected
        self._events: Any = None  # its event stream
        self.containers: dict[str, ContainerInfo] = {}
        self.connected = False
        self.last_error = ""
        self.last_resync = 0.0
        self.events_seen = 0
        self.resyncs = 0

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="docker-discovery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        events = self._events
        if events is not None:
            try:
                events.close()
            except Exception:  # noqa: BLE001 - closing a dead stream
                pass
        if self._thread is not None:
            self._thread.join(5)

    def status(self) -> DiscoveryStatus:
        return DiscoveryStatus(
            enabled=True,
            host=self.docker_host,
            connected=self.connected,
            last_error=self.last_error,
            last_resync=self.last_resync,
            resyncs=self.resyncs,
            events_seen=self.events_seen,
            containers=len(self.containers),
            mesh=self.mesh,
            scope=self.scope,
        )

    # -- the loop -----------------------------------------------------------------
    def _run(self) -> None:
        import docker  # imported here: only the discovery thread needs it

        delay = self._backoff[0]
        while not self._stop.is_set():
            try:
                self._client = docker.DockerClient(base_url=self.docker_host, timeout=30)
                since = int(time.time()) - 1
                self._resync()
                # Events since just before the resync: nothing that happened during it is lost.
                self._events = self._client.events(decode=True, since=since, filters={"type": ["container", "network"]})
                if not self.connected:
                    log.info("docker: connected to %s, %d labelled containers", self.docker_host, len(self.containers))
                self.connected, self.last_error, delay = True, "", self._backoff[0]
                for event in self._events:
                    if self._stop.is_set():
                        break
                    self._on_event(event)
                if not self._stop.is_set():
                    raise ConnectionError("event stream ended")
            except Exception as exc:  # noqa: BLE001 - any failure: keep state, reconnect
                if self._stop.is_set():
                    break
                message = f"{type(exc).__name__}: {exc}"
                if self.connected or message != self.last_error:
                    log.warning(
                        "docker: %s unreachable (%s); keeping the last known state, retrying", self.docker_host, message
                    )
                self.connected, self.last_error = False, message
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff[1])
            finally:
                if self._client is not None:
                    try:
                        self._client.close()
                    except Exception:  # noqa: BLE001
                        pass
        self.connected = False

    def _inspect(self, container_id: str) -> ContainerInfo | None:
        import docker

        try:
            data = self._client.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return None
        labels = (data.get("Config") or {}).get("Labels") or {}
        if not any(k.startswith(PREFIX) for k in labels) or not in_scope(labels, self.scope):
            return None
        image = self._labels_of_image(data.get("Image") or "")
        return ContainerInfo.from_inspect(data, image_labels=image, image_known=image is not None)

    def _labels_of_image(self, image_id: str) -> dict[str, str] | None:
        """The image's own labels (to tell them from the container's); None when the image
        cannot be inspected (then no envoyage.* label counts: fails closed)."""
        import docker

        if not image_id:
            return None
        if image_id not in self._image_labels:
            try:
                labels = (self._client.api.inspect_image(image_id).get("Config") or {}).get("Labels") or {}
            except docker.errors.NotFound:
                return None
            if len(self._image_labels) > 1024:
                self._image_labels.clear()
            self._image_labels[image_id] = dict(labels)
        return self._image_labels[image_id]

    def _resync(self) -> None:
        found: dict[str, ContainerInfo] = {}
        wanted = ["envoyage.enable"] + ([f"{SCOPE_LABEL}={self.scope}"] if self.scope else [])
        for summary in self._client.api.containers(filters={"label": wanted}):
            info = self._inspect(summary["Id"])
            if info is not None and info.running:
                found[info.id] = info
        if self.mesh:
            self._ensure_mesh()
            for info in list(found.values()):
                if self._attach(info):
                    refreshed = self._inspect(info.id)
                    if refreshed is not None:
                        found[info.id] = refreshed
        self.containers = found
        self._publish_networks()
        self.last_resync = time.time()
        self.resyncs += 1
        self._publish("resync")

    def _on_event(self, event: dict[str, Any]) -> None:
        kind, action = event.get("Type"), (event.get("Action") or "").split(":")[0]
        actor = event.get("Actor") or {}
        if kind == "container" and action in CONTAINER_ACTIONS:
            container_id = actor.get("ID") or event.get("id")
        elif kind == "network" and action in ("create", "destroy"):
            self._publish_networks()
            return
        elif kind == "network" and action in NETWORK_ACTIONS:
            container_id = (actor.get("Attributes") or {}).get("container")
        else:
            return
        if not container_id:
            return
        self.events_seen += 1
        stopping = action == "kill" and (actor.get("Attributes") or {}).get("signal") in STOP_SIGNALS
        if action == "destroy" or stopping:
            info = None
        else:
            info = self._inspect(container_id)
        if info is not None and info.running and self.mesh and action == "start" and self._attach(info):
            return  # the network connect event that follows re-inspects it
        before = self.containers.get(container_id)
        if info is None or not info.running:
            if before is None:
                return
            self.containers.pop(container_id, None)
        else:
            if before == info:
                return
            self.containers[container_id] = info
        self._publish(f"{kind} {action} {container_id[:12]}")

    def _publish_networks(self) -> None:
        if self._on_networks is None:
            return
        found = []
        for net in self._client.api.networks():
            for cfg in (net.get("IPAM") or {}).get("Config") or []:
                if cfg.get("Subnet"):
                    found.append(
                        DockerNetwork(name=net.get("Name", ""), subnet=cfg["Subnet"], gateway=cfg.get("Gateway", ""))
                    )
        self._on_networks(found)

    def _publish(self, reason: str) -> None:
        self._sync(
            reason,
            derive_services(
                self.containers.values(),
                source=SOURCE,
                default_domain=self.default_domain,
                trust_image_labels=self.trust_image_labels,
            ),
        )

    # -- the only writes to Docker (docker.mesh) ---------------------------------------
    def _ensure_mesh(self) -> None:
        if not any(n.get("Name") == MESH_NETWORK for n in self._client.api.networks(names=[MESH_NETWORK])):
            log.info("docker: creating network %s", MESH_NETWORK)
            self._client.api.create_network(MESH_NETWORK, driver="bridge", labels={"envoyage.managed": "true"})

    def _attach(self, info: ContainerInfo) -> bool:
        if info.network_mode == "host" or MESH_NETWORK in info.networks:
            return False
        if not parse_labels(info.labels).enabled:
            return False
        import docker

        try:
            self._ensure_mesh()
            log.info("docker: attaching %s to %s", info.name, MESH_NETWORK)
            self._client.api.connect_container_to_network(info.id, MESH_NETWORK)
        except docker.errors.APIError as exc:
            # not fatal: the container is addressed by the usual rules instead
            log.warning("docker: cannot attach %s to %s: %s", info.name, MESH_NETWORK, exc.explanation or exc)
            return False
        return True
