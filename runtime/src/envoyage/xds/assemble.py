"""Assemble a node role's snapshot from the registry's services (pure, given a cache)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..model import BUILT_ACCESS_MODES, ServiceState
from . import types as T
from .snapshot import Snapshot
from .translate import (
    EDGE_ROUTES,
    HOME_ROUTES,
    TranslationCache,
    default_virtual_host,
    edge_listener,
    home_listener,
    tunnel_listener,
    vhds_route_configuration,
)
from .validate import check_services


@dataclass(frozen=True)
class TunnelSettings:
    """Topology A: home's tunnel listener (for the edge) and the VPS's tunnel address."""

    home_address: str
    port: int
    edge_ip: str


@dataclass(frozen=True)
class HomeSettings:
    http_address: str
    http_port: int
    access_log_path: str
    tunnel: TunnelSettings | None = None


@dataclass(frozen=True)
class Assembly:
    snapshot: Snapshot | None  # for state-of-the-world nodes: one route configuration with every host
    problems: dict[str, list[str]]
    served: tuple[str, ...]
    delta_snapshot: Snapshot | None = None  # for delta nodes: the hosts over VHDS, one resource each


def assemble_home(
    states: Iterable[ServiceState],
    settings: HomeSettings,
    cache: TranslationCache,
    previous: Snapshot | None = None,
    previous_delta: Snapshot | None = None,
    sotw: bool = True,
    delta: bool = True,
    withheld: Mapping[str, str] | None = None,
    zones: tuple[str, ...] = (),
) -> Assembly:
    """The home role's snapshots, each checked by SnapshotCache.set_snapshot before use.

    `sotw`: the variant with one route configuration holding every host; `delta`: the
    VHDS variant (one resource per host). Only the variants some node uses are built.
    """
    accepted, problems = check_services(states, withheld, zones)
    pieces = cache.translate_all(s.spec for s in accepted)
    clusters, endpoints = [], []
    cluster_bytes, endpoint_bytes = {}, {}
    for res in pieces.values():
        clusters.append(res.cluster)
        cluster_bytes[res.cluster.name] = res.cluster_bytes
        if res.endpoints is not None:
            endpoints.append(res.endpoints)
            endpoint_bytes[res.endpoints.cluster_name] = res.endpoints_bytes
    listeners = [home_listener(settings.http_address, settings.http_port, settings.access_log_path)]
    if settings.tunnel is not None:
        listeners.append(
            tunnel_listener(
                settings.tunnel.home_address, settings.tunnel.port, settings.tunnel.edge_ip, settings.access_log_path
            )
        )
    by_type = {T.CLUSTER: clusters, T.ENDPOINT: endpoints, T.LISTENER: listeners}
    serialized = {T.CLUSTER: cluster_bytes, T.ENDPOINT: endpoint_bytes}
    if sotw:
        routes, routes_bytes = cache.route_configuration(HOME_ROUTES, pieces.values())
        by_type[T.ROUTE] = [routes]
        serialized[T.ROUTE] = {HOME_ROUTES: routes_bytes}
    base = Snapshot.build(
        by_type,
        meta={"role": "home", "services": str(len(pieces))},
        serialized=serialized,
        previous=previous or previous_delta,
    )
    delta_snapshot = None
    if delta:
        hosts = [r.vhds_host for r in pieces.values()] + [default_virtual_host(HOME_ROUTES, vhds=True)]
        delta_snapshot = base.derive(
            {T.ROUTE: [vhds_route_configuration(HOME_ROUTES)], T.VHOST: hosts},
            serialized={T.VHOST: {r.vhds_host.name: r.vhds_host_bytes for r in pieces.values()}},
            previous=previous_delta,
        )
    return Assembly(
        snapshot=base if sotw else None, problems=problems, served=tuple(sorted(pieces)), delta_snapshot=delta_snapshot
    )


# what the edge serves: public services, and services whose access mode is not built yet
# (the edge answers them 403, failing closed); vpn-only ones never reach the edge
EDGE_ACCESS = ("public",)


def assemble_edge(
    states: Iterable[ServiceState],
    cache: TranslationCache,
    previous: Snapshot | None = None,
    withheld: Mapping[str, str] | None = None,
    zones: tuple[str, ...] = (),
) -> Assembly:
    """The edge role's snapshot: the public services (and, failing closed with a 403,
    those whose access mode is not built yet), routed to home across the tunnel.
    `cache` is a TranslationCache made with the edge's settings."""
    assert cache.edge is not None, "assemble_edge needs a TranslationCache with edge settings"
    accepted, problems = check_services(states, withheld, zones)
    pieces = cache.translate_all(
        s.spec for s in accepted if s.spec.access in EDGE_ACCESS or s.spec.access not in BUILT_ACCESS_MODES
    )
    routes, routes_bytes = cache.route_configuration(EDGE_ROUTES, pieces.values())
    snapshot = Snapshot.build(
        {T.CLUSTER: [r.cluster for r in pieces.values()], T.LISTENER: [edge_listener(cache.edge)], T.ROUTE: [routes]},
        meta={"role": "edge", "services": str(len(pieces))},
        serialized={
            T.CLUSTER: {r.cluster.name: r.cluster_bytes for r in pieces.values()},
            T.ROUTE: {EDGE_ROUTES: routes_bytes},
        },
        previous=previous,
    )
    return Assembly(snapshot=snapshot, problems=problems, served=tuple(sorted(pieces)))
