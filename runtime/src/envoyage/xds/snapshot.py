"""Immutable, versioned, consistent sets of Envoy resources (one per node role).

Versions are content hashes, so the same desired state always yields the same
versions: after a control-plane restart an Envoy that already has everything is sent
nothing. A ClusterLoadAssignment's version also covers its cluster, so a changed
cluster always gets its endpoints re-sent (Envoy keeps a changed EDS cluster warming
until it receives them).
"""

from __future__ import annotations

import hashlib
import itertools
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


def _type_version(resources: Mapping[str, Resource]) -> str:
    """The version of a type: the digest of "name=version" of every resource, by name
    (the same as _digest over those parts, in one pass over bytes made once per resource)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(b"".join([resources[n].entry for n in sorted(resources)]))
    return h.hexdigest()


class Resource:
    """One resource of a snapshot: its name, version, serialized bytes and message.

    Snapshots share every resource that did not change, and the translation cache hands
    the same Resource to every snapshot its service is in, so what is derived from one
    (its share of the type's version, the hosts and references the checks walk) is
    derived once. A resource made from bytes alone (`message` None: the route
    configuration with every host, a VHDS host) decodes its message when asked and does
    not keep it: at 5,000 services the decoded route configuration is ~10 MB, and a
    snapshot history would hold one per snapshot.
    """

    __slots__ = ("name", "version", "type_url", "data", "entry", "_message", "_hosts", "_refs", "_targets", "_keys")

    def __init__(
        self,
        name: str,
        message: Message | None,
        version: str,
        type_url: str,
        data: bytes,
        hosts: tuple[tuple[str, tuple[str, ...], frozenset[str]], ...] | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.type_url = type_url
        self.data = data  # serialized; usually the very bytes object the translation cache holds
        self.entry = f"{name}={version}".encode() + b"\0"  # its part of the type's version
        self._message = message
        self._hosts = hosts
        self._refs: tuple[str, ...] | None = None
        self._targets: frozenset[str] | None = None
        self._keys: tuple[tuple[str, str], ...] | None = None

    def __repr__(self) -> str:
        return f"Resource({self.name!r}, {T.short(self.type_url)}, version {self.version})"

    @property
    def message(self) -> Message:
        if self._message is not None:
            return self._message
        return T.MESSAGE_CLASSES[self.type_url].FromString(self.data)

    @property
    def decoded_only(self) -> bool:
        """Made from bytes, not from a message (see the class)."""
        return self._message is None

    @property
    def packed(self) -> any_pb2.Any:
        """The resource as an `Any`, made when sent (not kept: one less copy of every resource)."""
        return any_pb2.Any(type_url=self.type_url, value=self.data)

    @property
    def hosts(self) -> tuple[tuple[str, tuple[str, ...], frozenset[str]], ...]:
        """For routes: (host name, domains, clusters its routes point at) per virtual host.

        Computed once per resource; snapshots share unchanged resources, so checking a
        5,000-host snapshot after one change walks one host, not 5,000."""
        if self._hosts is None:
            self._hosts = virtual_host_entries(self.message)
        return self._hosts

    @property
    def references(self) -> tuple[str, ...]:
        """What this resource needs in the same snapshot, once per resource: an EDS
        cluster its endpoints resource, a listener its route configurations."""
        if self._refs is None:
            msg = self.message
            if self.type_url == T.CLUSTER:
                eds = msg.type == msg.EDS
                self._refs = (msg.eds_cluster_config.service_name or self.name,) if eds else ()
            elif self.type_url == T.LISTENER:
                self._refs = tuple(_listener_rds_names(msg))
            else:
                self._refs = ()
        return self._refs

    @property
    def targets(self) -> frozenset[str]:
        """For routes: every cluster their virtual hosts' routes point at."""
        if self._targets is None:
            self._targets = frozenset().union(*(clusters for _host, _domains, clusters in self.hosts))
        return self._targets

    @property
    def domain_keys(self) -> tuple[tuple[str, str], ...]:
        """For routes: (route configuration, domain in lower case) of every domain its
        virtual hosts claim; a VHDS host belongs to the route configuration its name starts with."""
        if self._keys is None:
            group = self.name if self.type_url == T.ROUTE else self.name.split("/", 1)[0]
            self._keys = tuple((group, d.lower()) for _host, domains, _clusters in self.hosts for d in domains)
        return self._keys


def host_entry(vh) -> tuple[str, tuple[str, ...], frozenset[str]]:
    """(name, domains, clusters its routes point at) of one virtual host."""
    return (
        vh.name,
        tuple(vh.domains),
        frozenset(r.route.cluster for r in vh.routes if r.HasField("route") and r.route.cluster),
    )


def virtual_host_entries(msg: Message) -> tuple[tuple[str, tuple[str, ...], frozenset[str]], ...]:
    vhosts = msg.virtual_hosts if isinstance(msg, route_pb2.RouteConfiguration) else [msg]
    return tuple(host_entry(vh) for vh in vhosts)


def _version(type_url: str, name: str, data: bytes, cluster_data: bytes | None) -> str:
    # an endpoints resource's version covers its cluster (see the module docstring)
    return _digest(data, cluster_data or b"") if type_url == T.ENDPOINT else _digest(data)


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
        by_type: Mapping[str, Iterable[Message | Resource]],
        meta: Mapping[str, str] | None = None,
        serialized: Mapping[str, Mapping[str, bytes]] | None = None,
        previous: Snapshot | None = None,
    ) -> Snapshot:
        """Pack resources and compute per-resource and per-type versions.

        `by_type` holds messages or ready Resources (the translation cache's, made once
        per service). `serialized` may carry already-serialized bytes of messages per
        type and name, so they are not serialized again; resources equal to those of
        `previous` are reused as they are.
        """
        serialized = serialized or {}
        cluster_data: dict[str, bytes] = {}  # this snapshot's clusters (an endpoint's version covers its cluster)
        old_clusters = previous.get(T.CLUSTER) if previous is not None else {}
        resources: dict[str, dict[str, Resource]] = {}
        versions: dict[str, str] = {}
        changes: dict[str, tuple[str, frozenset[str], frozenset[str]]] = {}
        for type_url in T.PUSH_ORDER:  # clusters first
            out: dict[str, Resource] = {}
            before = previous.get(type_url) if previous is not None else {}
            pre = serialized.get(type_url, {})
            fresh: list[str] = []
            endpoints = type_url == T.ENDPOINT
            for item in by_type.get(type_url, ()):
                data: bytes | None
                if isinstance(item, Resource):
                    name, msg, data = item.name, None, item.data
                else:
                    name = item.name if not endpoints else item.cluster_name
                    msg, data = item, pre.get(name)
                if not name:
                    raise InconsistentSnapshot(f"{T.short(type_url)} resource without a name")
                if name in out:
                    raise InconsistentSnapshot(f"{T.short(type_url)} resource {name!r} appears twice")
                if data is None:
                    data = msg.SerializeToString(deterministic=True) if msg is not None else b""
                if type_url == T.CLUSTER:
                    cluster_data[name] = data
                old = before.get(name)
                if old is not None:
                    if old is item:
                        out[name] = old  # the very resource the previous snapshot has
                        continue
                    if old.data == data:
                        old_cluster = old_clusters.get(name) if endpoints else None
                        if not endpoints or (old_cluster is not None and old_cluster.data == cluster_data.get(name)):
                            out[name] = old  # unchanged (endpoints: neither they nor their cluster)
                            continue
                if msg is None:
                    res = item
                else:
                    res = Resource(name, msg, _version(type_url, name, data, cluster_data.get(name)), type_url, data)
                out[name] = res
                fresh.append(name)
            resources[type_url] = out
            versions[type_url] = _type_version(out)
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
        """go-control-plane's Snapshot.Consistent(): every reference resolves.

        Each check is a set operation over references computed once per resource; the
        loop that names the first broken reference runs only when one is broken."""
        clusters = self.get(T.CLUSTER)
        endpoints = self.get(T.ENDPOINT)
        routes = self.get(T.ROUTE)
        needed = set(itertools.chain.from_iterable([res.references for res in clusters.values()]))
        if not needed <= endpoints.keys():
            for name, res in clusters.items():
                for eds_name in res.references:
                    if eds_name not in endpoints:
                        raise InconsistentSnapshot(f"EDS cluster {name!r} has no endpoints resource {eds_name!r}")
        if not endpoints.keys() <= clusters.keys():
            for name in endpoints:
                if name not in clusters:
                    raise InconsistentSnapshot(f"endpoints {name!r} belong to no cluster")
        for lst in self.get(T.LISTENER).values():
            for rds_name in lst.references:
                if rds_name not in routes:
                    raise InconsistentSnapshot(f"listener {lst.name!r} uses missing route configuration {rds_name!r}")
        if self.get(T.VHOST) and not any(rc.message.HasField("vhds") for rc in routes.values()):
            raise InconsistentSnapshot("virtual hosts for VHDS, but no route configuration uses VHDS")
        with_hosts = list(routes.values()) + list(self.get(T.VHOST).values())
        if not frozenset().union(*[res.targets for res in with_hosts]) <= clusters.keys():
            for res in with_hosts:
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
