"""Running containers -> desired services (pure).

Rules (docs/labels.md):
- address: the `envoyage-mesh` network if attached, else the network named by
  `envoyage.network`, else the container's only network; host-network containers get
  127.0.0.1; anything else is a problem.
- port: `envoyage.port`, else the one exposed TCP port; none or several is a problem.
- replicas of one compose service (same project and service labels) are endpoints of
  one service; so are containers that set the same `envoyage.name`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..model import InputError, ServiceState, parse_service
from .labels import PREFIX, LabelResult, parse_labels

MESH_NETWORK = "envoyage-mesh"
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    labels: Mapping[str, str]
    network_mode: str = "default"
    networks: Mapping[str, str] = field(default_factory=dict)  # network name -> IPv4 address
    exposed_ports: tuple[str, ...] = ()  # "80/tcp", ...
    running: bool = True
    # the labels its image carries (docker inspect merges them into `labels`)
    image_labels: Mapping[str, str] = field(default_factory=dict)
    # False: the image could not be inspected, so no envoyage.* label is known to be the
    # container's own (none counts)
    image_known: bool = True

    def _from_image(self, key: str, value: str) -> bool:
        return key.startswith(PREFIX) and (not self.image_known or self.image_labels.get(key) == value)

    def own_labels(self) -> dict[str, str]:
        """The labels set on the container (docker run -l, a compose file): an envoyage.*
        label whose value is the image's own is the image's, not the operator's."""
        return {k: v for k, v in self.labels.items() if not self._from_image(k, v)}

    def ignored_image_labels(self) -> list[str]:
        return sorted(k for k, v in self.labels.items() if self._from_image(k, v))

    @classmethod
    def from_inspect(
        cls, data: Mapping[str, Any], image_labels: Mapping[str, str] | None = None, image_known: bool = True
    ) -> ContainerInfo:
        config = data.get("Config") or {}
        state = data.get("State") or {}
        nets = (data.get("NetworkSettings") or {}).get("Networks") or {}
        return cls(
            id=data["Id"],
            name=(data.get("Name") or "").lstrip("/"),
            labels=dict(config.get("Labels") or {}),
            network_mode=(data.get("HostConfig") or {}).get("NetworkMode") or "default",
            # network_mode "none" shows up as a network called "none": it has no address
            networks={n: (v or {}).get("IPAddress") or "" for n, v in nets.items() if n != "none"},
            exposed_ports=tuple(sorted((config.get("ExposedPorts") or {}).keys())),
            running=bool(state.get("Running")) and not state.get("Paused") and not state.get("Restarting"),
            image_labels=dict(image_labels or {}),
            image_known=image_known,
        )

    @property
    def short_id(self) -> str:
        return self.id[:12]


def sanitize_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)[:63].strip("-")
    return name or "container"


def group_name(c: ContainerInfo, lr: LabelResult) -> str:
    if lr.name:
        return lr.name
    project, service = c.labels.get(COMPOSE_PROJECT), c.labels.get(COMPOSE_SERVICE)
    if project and service:
        return sanitize_name(f"{project}-{service}")
    return sanitize_name(c.name or c.short_id)


def container_address(c: ContainerInfo, lr: LabelResult) -> tuple[str | None, str | None]:
    """(ip, problem)."""
    if c.network_mode == "host":
        return "127.0.0.1", None
    if c.network_mode.startswith("container:"):
        return None, (
            "container shares the network of another container (network_mode "
            f"{c.network_mode[:22]}); label that container instead"
        )
    attached = sorted(n for n in c.networks)
    if MESH_NETWORK in c.networks:
        chosen = MESH_NETWORK
    elif lr.network:
        if lr.network not in c.networks:
            return None, (
                f"envoyage.network: container is not attached to network '{lr.network}' "
                f"(attached: {', '.join(attached) or 'none'})"
            )
        chosen = lr.network
    elif len(attached) == 1:
        chosen = attached[0]
    elif not attached:
        return None, "container has no network; attach it to one (or to envoyage-mesh)"
    else:
        return None, f"container is attached to several networks ({', '.join(attached)}); set envoyage.network"
    ip = c.networks.get(chosen) or ""
    if not ip:
        return None, f"container has no IPv4 address on network '{chosen}'"
    return ip, None


def container_port(c: ContainerInfo, lr: LabelResult) -> tuple[int | None, str | None]:
    if lr.port is not None:
        return lr.port, None
    tcp = sorted((p for p in c.exposed_ports if p.endswith("/tcp")), key=lambda p: int(p.split("/")[0]))
    if len(tcp) == 1:
        return int(tcp[0].split("/")[0]), None
    if not tcp:
        return None, "envoyage.port: missing, and the image exposes no TCP port; set envoyage.port"
    return None, f"envoyage.port: missing, and the image exposes several ports ({', '.join(tcp)}); set envoyage.port"


def derive_services(
    containers: Iterable[ContainerInfo],
    source: str = "docker",
    default_domain: str = "",
    trust_image_labels: bool = False,
) -> list[ServiceState]:
    """Group labelled running containers into desired services (spec None = not servable).
    `default_domain`: a service whose containers name no envoyage.domain is served as
    <service name>.<default_domain>. Unless `trust_image_labels`, envoyage.* labels that
    come from the image are ignored: an image cannot publish itself or claim a name."""
    groups: dict[str, list[tuple[ContainerInfo, LabelResult]]] = {}
    for c in containers:
        if not c.running:
            continue
        lr = parse_labels(c.labels if trust_image_labels else c.own_labels(), default_domain)
        if not lr.enabled:
            continue
        groups.setdefault(group_name(c, lr), []).append((c, lr))

    out: list[ServiceState] = []
    for name, members in sorted(groups.items()):
        members.sort(key=lambda m: m[0].id)
        primary_c, primary = members[0]
        # the labels' own domains, else <name>.<default_domain> (replicas' labels stay as
        # parsed, so comparing them below still compares what they say)
        domains = list(primary.domains)
        if not domains and default_domain and not any(p.startswith("envoyage.domain") for p in primary.problems):
            domains = [f"{name}.{default_domain}"]
        problems: list[str] = []
        upstreams: list[str] = []
        detail_containers = []
        for c, lr in members:
            entry: dict[str, Any] = {"id": c.short_id, "name": c.name}
            own = list(lr.problems)
            ignored = [] if trust_image_labels else c.ignored_image_labels()
            if ignored:  # said, but the container's own labels still count
                own.append(
                    f"labels from the image are ignored ({', '.join(ignored)}): set them on the container "
                    "or in the compose file, or set discovery.trust_image_labels"
                )
            if lr is not primary and lr.comparable() != primary.comparable():
                own.append(f"labels differ from replica {primary_c.name}; its labels are used")
            ip, addr_problem = container_address(c, lr)
            port, port_problem = container_port(c, primary if lr is not primary else lr)
            own += [p for p in (addr_problem, port_problem) if p]
            if ip and port and not lr.problems:
                entry["address"] = f"{ip}:{port}"
                upstreams.append(entry["address"])
            entry["problems"] = own
            detail_containers.append(entry)
            prefix = f"{c.name}: " if len(members) > 1 else ""
            problems += [prefix + p for p in own]
        detail = {"containers": detail_containers, "domains": domains}
        spec = None
        if primary.problems or not upstreams:
            pass  # not servable; problems say why
        else:
            try:
                spec = parse_service(
                    {"name": name, "domains": domains, "upstreams": upstreams, "source": source, **primary.service}
                )
            except InputError as exc:  # a combination the label checks did not catch
                problems.append(f"{exc.field}: {exc.message}")
        if spec is None and not problems:
            problems.append("no usable container")
        out.append(
            ServiceState(
                name=name,
                source=source,
                spec=spec,
                first_seen=0.0,
                updated_at=0.0,
                source_problems=problems,
                origin=f"container:{primary_c.id}",
                detail=detail,
            )
        )
    return out
