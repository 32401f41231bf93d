"""Immutable, versioned, consistent sets of Envoy resources (one per node role).

Versions are content hashes, so the same desired state always yields the same
versions: after a control-plane restart an Envoy that already has everything is sent
nothing. A ClusterLoadAssignment's version also covers its cluster, so a changed
cluster always gets its endpoints re-sent (Envoy keeps a changed EDS cluster warming
until it receives them).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from . import types as T


class InconsistentSnapshot(ValueError):
    """An invariant failed: a reference points at a resource that does not exist."""


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(p)
        h.update(b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class Resource:
    name: str
    message: Message
    version: str
    type_url: str
    data: bytes  # serialized; usually the very bytes object the translation cache holds

    @property
    def packed(self) -> any_pb2.Any:
        """The resource as an `Any`, made when sent (not kept: one less copy of every resource)."""
        return any_pb2.Any(type_url=self.type_url, value=self.data)

    @functools.cached_property
    def hosts(self) -> tuple[tuple[str, tuple[str, ...], frozenset[str]], ...]:
        """For routes: (host name, domains, clusters its routes point at) per virtual host.

        Computed once per resource; snapshots share unchanged resources, so checking a
        5,000-host snapshot after one change walks one host, not 5,000."""
        msg = self.message
        vhosts = msg.virtual_hosts if isinstance(msg, route_pb2.RouteConfiguration) else [msg]
        return tuple(
            (
                vh.name,
                tuple(vh.domains),
                frozenset(r.route.cluster for r in vh.routes if r.HasField("route") and r.route.cluster),
            )
            for vh in vhosts
        )


@dataclass(frozen=True)
class Snapshot:
    resources: Mapping[str, Mapping[str, Resource]]
    versions: Mapping[str, str]
    # free-form labels for humans (`envoyage status`), not part of any version
    meta: Mapping[str, str] = field(default_factory=dict)
    # per type, what changed against the snapshot this one was built from:
    # (that snapshot's version of the type, names new or changed, names removed).
    # Lets a delta stream that had the parent send the difference without a full diff.
    changes: Mapping[str, tuple[str, frozenset[str], frozenset[str]]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        by_type: Mapping[str, Iterable[Message]],
        meta: Mapping[str, str] | None = None,
        serialized: Mapping[str, Mapping[str, bytes]] | None = None,
        previous: Snapshot | None = None,
    ) -> Snapshot:
        """Pack resources and compute per-resource and per-type versions.

        `serialized` may carry already-serialized bytes per type and name (the
        translation cache has them), so unchanged resources are not serialized again;
        resources equal to those of `previous` are reused as they are.
        """
        serialized = serialized or {}
        raw: dict[str, dict[str, tuple[Message, bytes]]] = {}
        for type_url in T.PUSH_ORDER:
            entries: dict[str, tuple[Message, bytes]] = {}
            pre = serialized.get(type_url, {})
            for msg in by_type.get(type_url, ()):
                name = msg.name if type_url != T.ENDPOINT else msg.cluster_name
                if not name:
                    raise InconsistentSnapshot(f"{T.short(type_url)} resource without a name")
                if name in entries:
                    raise InconsistentSnapshot(f"{T.short(type_url)} resource {name!r} appears twice")
                data = pre.get(name)
                if data is None:
                    data = msg.SerializeToString(deterministic=True)
                entries[name] = (msg, data)
            raw[type_url] = entries
        cluster_bytes = {n: d for n, (_msg, d) in raw[T.CLUSTER].items()}
        old_clusters = previous.get(T.CLUSTER) if previous is not None else {}
        resources: dict[str, dict[str, Resource]] = {}
        versions: dict[str, str] = {}
        changes: dict[str, tuple[str, frozenset[str], frozenset[str]]] = {}
        for type_url, entries in raw.items():
            out: dict[str, Resource] = {}
            before = previous.get(type_url) if previous is not None else {}
            fresh: list[str] = []
            for name, (msg, data) in entries.items():
                old = before.get(name)
                if type_url == T.ENDPOINT:
                    old_cluster = old_clusters.get(name)
                    if (
                        old is not None
                        and old.data == data
                        and old_cluster is not None
                        and old_cluster.data == cluster_bytes.get(name)
                    ):
                        out[name] = old  # neither the endpoints nor their cluster changed
                        continue
                    version = _digest(data, cluster_bytes.get(name, b""))
                elif old is not None and old.data == data:
                    out[name] = old
                    continue
                else:
                    version = _digest(data)
                out[name] = Resource(name, msg, version, type_url, data)
                fresh.append(name)
            resources[type_url] = out
            versions[type_url] = _digest(*(f"{n}={r.version}".encode() for n, r in sorted(out.items())))
            if previous is not None:
                changes[type_url] = (
                    previous.version(type_url),
                    frozenset(fresh),
                    frozenset(before.keys() - out.keys()),
                )
        return cls(resources=resources, versions=versions, meta=dict(meta or {}), changes=changes)

    def derive(
        self, by_type: Mapping[str, Iterable[Message]], serialized=None, previous: Snapshot | None = None
    ) -> Snapshot:
        """A snapshot that shares every type of this one except those in `by_type`.

        Used for the delta (VHDS) variant of a role's snapshot: same clusters, endpoints
        and listeners, other routes. Clusters and endpoints cannot be replaced here
        (an endpoint's version depends on its cluster).
        """
        if T.CLUSTER in by_type or T.ENDPOINT in by_type:
            raise ValueError("derive() replaces routes or listeners, not clusters or endpoints")
        part = Snapshot.build(by_type, serialized=serialized, previous=previous)
        resources, versions, changes = dict(self.resources), dict(self.versions), dict(self.changes)
        for type_url in by_type:
            resources[type_url] = part.resources[type_url]
            versions[type_url] = part.versions[type_url]
            changes.pop(type_url, None)
            if type_url in part.changes:
                changes[type_url] = part.changes[type_url]
        return Snapshot(resources=resources, versions=versions, meta=dict(self.meta), changes=changes)

    def get(self, type_url: str) -> Mapping[str, Resource]:
        return self.resources.get(type_url, {})

    def version(self, type_url: str) -> str:
        return self.versions.get(type_url, "")

    def messages(self, type_url: str) -> list[Message]:
        return [r.message for r in self.get(type_url).values()]

    def replace(self, type_url: str, messages: Iterable[Message]) -> Snapshot:
        """A new snapshot with all resources of one type replaced (used by tools and tests)."""
        by_type = {t: self.messages(t) for t in T.PUSH_ORDER}
        by_type[type_url] = list(messages)
        return Snapshot.build(by_type, meta=self.meta)

    def consistent(self) -> None:
        """go-control-plane's Snapshot.Consistent(): every reference resolves."""
        clusters = self.get(T.CLUSTER)
        endpoints = self.get(T.ENDPOINT)
        routes = self.get(T.ROUTE)
        for name, res in clusters.items():
            if res.message.type == res.message.EDS:
                eds_name = res.message.eds_cluster_config.service_name or name
                if eds_name not in endpoints:
                    raise InconsistentSnapshot(f"EDS cluster {name!r} has no endpoints resource {eds_name!r}")
        for name in endpoints:
            if name not in clusters:
                raise InconsistentSnapshot(f"endpoints {name!r} belong to no cluster")
        for lst in self.messages(T.LISTENER):
            for rds_name in _listener_rds_names(lst):
                if rds_name not in routes:
                    raise InconsistentSnapshot(f"listener {lst.name!r} uses missing route configuration {rds_name!r}")
        if self.get(T.VHOST) and not any(rc.HasField("vhds") for rc in self.messages(T.ROUTE)):
            raise InconsistentSnapshot("virtual hosts for VHDS, but no route configuration uses VHDS")
        for res in list(self.get(T.ROUTE).values()) + list(self.get(T.VHOST).values()):
            for host, _domains, targets in res.hosts:
                for target in targets:
                    if target not in clusters:
                        raise InconsistentSnapshot(
                            f"route in virtual host {host!r} points at missing cluster {target!r}"
                        )


def _listener_rds_names(listener) -> list[str]:
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2 as hcm_pb2,
    )

    names = []
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        for flt in chain.filters:
            if flt.typed_config.type_url.endswith("HttpConnectionManager"):
                hcm = hcm_pb2.HttpConnectionManager()
                try:
                    flt.typed_config.Unpack(hcm)
                except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
                    raise InconsistentSnapshot(
                        f"listener {listener.name!r}: its HTTP connection manager cannot be decoded ({exc})"
                    ) from None
                if hcm.HasField("rds"):
                    names.append(hcm.rds.route_config_name)
    return names
