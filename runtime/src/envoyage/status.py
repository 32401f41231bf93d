"""What the control plane reports about itself: typed, and serialized in one place.

`GET /v1/status` (control/api.py), `envoyage status` (cli/main.py, which reads the JSON
back into these classes), the edge daemon's report of its Envoy and the web UI all use
the dataclasses below. Each one turns into JSON with `to_json()` and back with
`from_json()`, both implemented once here (`_Json`), so a field is declared in exactly
one place. docs/control-api.md documents the fields.

This module imports nothing of Envoyage: the xDS status tracker, the edge link, the DNS
controller, the tunnel monitor and Docker discovery all fill these classes in, and the
CLI reads them without loading gRPC or Envoy's protobufs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

J = TypeVar("J", bound="_Json")


class _Json:
    """`to_json()` and `from_json()` for the dataclasses of this module.

    `from_json` is lenient the way a reader of another version must be: a field the JSON
    lacks takes its default, a key the class does not know is ignored."""

    def to_json(self) -> dict[str, Any]:
        return _encode(self)

    @classmethod
    def from_json(cls: type[J], data: dict[str, Any]) -> J:
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        hints = _HINTS.get(cls) or _HINTS.setdefault(cls, typing.get_type_hints(cls))
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{name: _decode(hints[name], value) for name, value in data.items() if name in known})


_HINTS: dict[type, dict[str, Any]] = {}  # each class's field types, resolved once
_NAMES: dict[type, tuple[str, ...]] = {}  # each class's field names, in order


def _encode(value: Any) -> Any:
    """`value` as plain JSON data (what `dataclasses.asdict` gives, without its deep copy
    of every leaf: status values are str, numbers, bool and None)."""
    if isinstance(value, _Json):
        cls = type(value)
        names = _NAMES.get(cls) or _NAMES.setdefault(cls, tuple(f.name for f in dataclasses.fields(cls)))  # type: ignore[arg-type]
        return {name: _encode(getattr(value, name)) for name in names}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(hint: Any, value: Any) -> Any:
    """`value` (parsed JSON) as the type `hint` names: dataclasses of this module are
    rebuilt, inside lists, dicts and `X | None`; everything else is kept as it is."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _decode(inner[0], value) if len(inner) == 1 else value
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_decode(item, v) for v in value]
    if origin is dict:
        _key, item = typing.get_args(hint)
        return {k: _decode(item, v) for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, _Json):
        return hint.from_json(value)
    return value


# -- the Envoys connected to this control plane's xDS server ---------------------------
@dataclass
class TypeStatus(_Json):
    """One resource type (cds, eds, lds, rds, vhds) of one Envoy node."""

    last_sent_version: str = ""
    last_sent_at: float = 0.0
    responses_sent: int = 0
    last_acked_version: str = ""
    last_acked_at: float = 0.0
    last_nack_version: str = ""
    last_nack_message: str = ""  # Envoy's own text
    last_nack_at: float = 0.0
    nacks: int = 0
    # True while the ACKed version is the one Envoy reported holding when it
    # (re)connected, before any response of this control plane
    reported_at_reconnect: bool = False
    reported_at: float = 0.0


@dataclass
class NodeStatus(_Json):
    """One Envoy node (all its streams), by node id."""

    node_id: str = ""
    role: str = ""
    delta: bool = False
    snapshot: str = ""  # the snapshot key this node is served from ("home", "home/vhds", "edge")
    connected: bool = True
    connected_since: float = 0.0
    disconnected_at: float = 0.0
    streams: int = 0
    types: dict[str, TypeStatus] = field(default_factory=dict)  # by short type name


# -- topology A: the tunnel and the edge link ------------------------------------------
@dataclass
class TunnelStatus(_Json):
    """The WireGuard tunnel as home sees it (the VPS is its only peer)."""

    interface: str = ""
    peers: dict[str, dict[str, Any]] = field(default_factory=dict)  # as the wg status reader gives them
    problem: str | None = None
    handshake_age: float | None = None  # seconds since the last handshake
    rx_bytes: int | None = None
    tx_bytes: int | None = None
    endpoint: str | None = None
    rtt_ms: float | None = None  # the edge link's round trip


@dataclass
class EdgeEnvoyType(_Json):
    """One resource type of the VPS Envoy, as the edge reports it."""

    acked_version: str = ""
    nacked_version: str = ""
    error: str = ""  # Envoy's text of its last NACK


@dataclass
class EdgeEnvoyNode(_Json):
    """The VPS Envoy (one node), as the edge reports it."""

    node_id: str = ""
    connected: bool = False
    types: dict[str, EdgeEnvoyType] = field(default_factory=dict)  # by short type name


@dataclass
class LinkRefusal(_Json):
    """The last peer the edge link turned away."""

    at: float = 0.0
    peer: str = ""
    why: str = ""


@dataclass
class EdgeRefusal(_Json):
    """The edge refused this control plane (it could not prove the link key)."""

    at: float = 0.0
    edge_id: str = ""
    reason: str = ""


@dataclass
class EdgeLinkStatus(_Json):
    """The edge link and what the edge said over it."""

    connected: bool = False
    edge_id: str = ""
    peer: str = ""
    connected_since: float = 0.0
    disconnected_at: float = 0.0
    software_version: str = ""  # the edge's Envoyage version
    sent_version: str = ""  # the last resource set sent
    sent_at: float = 0.0
    applied_version: str = ""  # the last resource set the edge took
    applied_at: float = 0.0
    apply_error: str = ""  # why the edge refused the last set
    apply_problems: list[str] = field(default_factory=list)  # what the edge skipped of a set it took
    rtt_ms: float | None = None
    envoy: list[EdgeEnvoyNode] = field(default_factory=list)
    refused: int = 0  # peers turned away
    last_refused: LinkRefusal | None = None
    edge_refused_home: EdgeRefusal | None = None
    want_version: str = ""  # the resource set the edge should have
    in_sync: bool = False
    key_problem: str | None = None  # why no edge can be admitted


# -- LAN DNS (dns.enabled) --------------------------------------------------------------
@dataclass
class DnsStatus(_Json):
    """The DNS controller: Unbound's local zones against the served domains."""

    last_apply_at: float = 0.0
    last_apply_ms: float | None = None
    applies: int = 0
    error: str | None = None
    error_since: float = 0.0
    last_change: str = ""
    entries: int = 0  # zones wanted
    in_sync: bool = False
    include_file: str = ""
    answer: str = ""
    answer6: str | None = None
    foreign: list[str] = field(default_factory=list)  # zones Unbound has from its own configuration


# -- discovery ---------------------------------------------------------------------------
@dataclass
class DiscoveryStatus(_Json):
    """One discovery source (Docker)."""

    enabled: bool = True
    host: str = ""
    connected: bool = False
    last_error: str = ""
    last_resync: float = 0.0
    resyncs: int = 0
    events_seen: int = 0
    containers: int = 0  # labelled containers
    mesh: bool = False
    scope: str = ""


# -- the control plane as a whole ---------------------------------------------------------
@dataclass
class ReconcileStatus(_Json):
    """The last reconcile: a snapshot built and pushed (`ok`), or why not (`error`)."""

    ok: bool = False
    reason: str = ""
    at: float = 0.0
    error: str | None = None
    changed: bool = False
    served: int = 0  # services in the snapshot
    versions: dict[str, dict[str, str]] = field(default_factory=dict)  # per snapshot key, per type
    build_ms: float | None = None


@dataclass
class ServiceCounts(_Json):
    """Services in the registry, and how many have a problem."""

    total: int = 0
    with_problems: int = 0


@dataclass
class RegistryStatus(_Json):
    """The registry (SQLite) that holds the desired state."""

    path: str = ""
    generation: int = 0
    problem: str | None = None  # why the registry is not served


@dataclass
class XdsStatus(_Json):
    """The xDS server's streams: open now, the limit (`xds.max_streams`), how many were
    refused at the limit, and how many were closed to make room (for the same node's new
    stream, or for a node of ours at the limit)."""

    streams: int = 0
    max_streams: int = 0
    refused: int = 0
    evicted: int = 0


@dataclass
class StatusReport(_Json):
    """`GET /v1/status`."""

    version: str = ""
    started_at: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)  # the effective configuration
    services: ServiceCounts = field(default_factory=ServiceCounts)
    # per snapshot key ("home"; "home/vhds" for delta nodes; "edge"): version per type
    snapshots: dict[str, dict[str, str]] = field(default_factory=dict)
    last_reconcile: ReconcileStatus | None = None
    registry: RegistryStatus = field(default_factory=RegistryStatus)
    xds: XdsStatus = field(default_factory=XdsStatus)
    nodes: list[NodeStatus] = field(default_factory=list)
    discovery: dict[str, DiscoveryStatus] = field(default_factory=dict)
    known_nodes: list[dict[str, Any]] = field(default_factory=list)  # nodes that ACKed before (the registry's)
    topology: str = ""
    tunnel: TunnelStatus | None = None  # topology A
    edge: EdgeLinkStatus | None = None  # topology A
    dns: DnsStatus | None = None  # dns.enabled
    problems: list[str] = field(default_factory=list)  # everything wrong that is not one service's
