"""Assemble a node role's snapshot from the registry's services (pure, given a cache)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from google.protobuf.message import Message

from ..model import BUILT_ACCESS_MODES, ServiceState
from . import types as T
from .snapshot import Resource, Snapshot
from .translate import (
    EDGE_ROUTES,
    HOME_ROUTES,
    TranslationCache,
    default_vhds_resource,
    edge_listener_resource,
    home_listener_resources,
    vhds_route_resource,
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
    pieces = cache.translate_all(s.spec for s in accepted if s.spec is not None)  # accepted: all have one
    # the translation cache's resources, made once per service: a snapshot reuses each
    # one as it is, and checks and versions only what is new
    clusters = [res.cluster_resource for res in pieces.values()]
    endpoints = [e for e in (res.endpoints_resource for res in pieces.values()) if e is not None]
    tunnel = settings.tunnel
    listeners = home_listener_resources(
        settings.http_address,
        settings.http_port,
        settings.access_log_path,
        (tunnel.home_address, tunnel.port, tunnel.edge_ip) if tunnel is not None else None,
    )
    by_type: dict[str, Iterable[Message | Resource]] = {
        T.CLUSTER: clusters,
        T.ENDPOINT: endpoints,
        T.LISTENER: listeners,
    }
    if sotw:
        by_type[T.ROUTE] = [cache.route_resource(HOME_ROUTES, pieces.values())]
    base = Snapshot.build(
        by_type,
        meta={"role": "home", "services": str(len(pieces))},
        previous=previous or previous_delta,
    )
    delta_snapshot = None
    if delta:
        hosts = [r.vhds_resource for r in pieces.values()] + [default_vhds_resource(HOME_ROUTES)]
        delta_snapshot = base.derive(
            {T.ROUTE: [vhds_route_resource(HOME_ROUTES)], T.VHOST: hosts}, previous=previous_delta
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
        spec
        for spec in (s.spec for s in accepted)
        if spec is not None and (spec.access in EDGE_ACCESS or spec.access not in BUILT_ACCESS_MODES)
    )
    snapshot = Snapshot.build(
        {
            T.CLUSTER: [r.cluster_resource for r in pieces.values()],
            T.LISTENER: [edge_listener_resource(cache.edge)],
            T.ROUTE: [cache.route_resource(EDGE_ROUTES, pieces.values())],
        },
        meta={"role": "edge", "services": str(len(pieces))},
        previous=previous,
    )
    return Assembly(snapshot=snapshot, problems=problems, served=tuple(sorted(pieces)))
