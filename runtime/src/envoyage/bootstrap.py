"""Envoy bootstrap for a node fed by the Envoyage control plane over ADS (pure)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

ROLES = ("home", "edge")
_NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
XDS_CLUSTER = "envoyage_xds"


# the admin interface's socket: Envoy's user only (the admin API can quit Envoy, drain
# its listeners and dump its configuration)
ADMIN_SOCKET_MODE = 0o600


class BootstrapError(ValueError):
    pass


def _check_socket_path(flag: str, path: str) -> None:
    if not path.startswith("/") or len(path.encode()) > 107:
        raise BootstrapError(f"{flag} {path!r}: must be an absolute path of at most 107 bytes")


def connect_address(listen_address: str) -> str:
    """Where a local Envoy reaches a server listening on `listen_address`: a wildcard
    (0.0.0.0, ::) listens on loopback too, and loopback is what the bootstrap uses."""
    try:
        ip = ipaddress.ip_address(listen_address)
    except ValueError:
        return listen_address  # a host name: used as it is
    if ip.is_unspecified:
        return "::1" if ip.version == 6 else "127.0.0.1"
    return listen_address


def bootstrap(
    node_id: str,
    role: str,
    *,
    delta: bool = False,
    xds_address: str = "127.0.0.1",
    xds_port: int = 18000,
    admin_address: str = "127.0.0.1",
    admin_port: int = 9901,
    xds_socket: str | None = None,
    max_heap_bytes: int = 0,
    max_connections: int = 0,
    admin_socket: str | None = None,
) -> dict[str, Any]:
    """`xds_socket`: reach the control plane on this Unix socket (a pipe address) instead
    of xds_address:xds_port. `admin_socket`: Envoy's admin interface on this Unix socket,
    mode 0600 (only Envoy's own user, and root, may use it), instead of
    admin_address:admin_port (loopback, which every local user can reach: tests only).
    `max_heap_bytes`, `max_connections` (the VPS Envoy): an overload manager that keeps
    Envoy under that heap and that many downstream connections (overload_manager())."""
    if not _NODE_ID_RE.match(node_id or ""):
        raise BootstrapError(f"--node-id {node_id!r}: use letters, digits, '.', '_' and '-' (up to 128)")
    if role not in ROLES:
        raise BootstrapError(f"--role {role!r}: must be one of {', '.join(ROLES)}")
    for flag, port in (("--xds-port", xds_port), ("--admin-port", admin_port)):
        if not 0 < int(port) < 65536:
            raise BootstrapError(f"{flag} {port}: not a port number")
    try:
        admin_ip = ipaddress.ip_address(admin_address)
    except ValueError:
        raise BootstrapError(f"--admin-address {admin_address!r}: must be a loopback IP address") from None
    if not admin_ip.is_loopback:
        # Security default: the admin interface is never reachable from the network.
        raise BootstrapError(f"--admin-address {admin_address}: Envoy's admin interface must stay on loopback")
    if admin_socket is not None:
        _check_socket_path("--admin-socket", admin_socket)
        admin = {"address": {"pipe": {"path": admin_socket, "mode": ADMIN_SOCKET_MODE}}}
    else:
        admin = {"address": {"socket_address": {"address": admin_address, "port_value": int(admin_port)}}}
    xds_target: dict[str, dict[str, Any]]
    if xds_socket is not None:
        if not xds_socket.startswith("/") or len(xds_socket.encode()) > 107:
            raise BootstrapError(f"--xds-socket {xds_socket!r}: must be an absolute path of at most 107 bytes")
        xds_type, xds_target = "STATIC", {"pipe": {"path": xds_socket}}
    else:
        try:
            ipaddress.ip_address(xds_address)
            xds_type = "STATIC"
        except ValueError:
            xds_type = "LOGICAL_DNS"
        xds_target = {"socket_address": {"address": xds_address, "port_value": int(xds_port)}}
    extra = (
        {"overload_manager": overload_manager(max_heap_bytes, max_connections)}
        if max_heap_bytes or max_connections
        else {}
    )
    return {
        **extra,
        "node": {
            "id": node_id,
            "cluster": f"envoyage-{role}",
            "metadata": {"role": role},
        },
        "admin": admin,
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [
                    {
                        "envoy_grpc": {
                            "cluster_name": XDS_CLUSTER,
                            # reconnect quickly after a control-plane restart
                            "retry_policy": {"retry_back_off": {"base_interval": "0.1s", "max_interval": "2s"}},
                        }
                    }
                ],
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {
            "clusters": [
                {
                    "name": XDS_CLUSTER,
                    "type": xds_type,
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {
                                "http2_protocol_options": {"connection_keepalive": {"interval": "10s", "timeout": "5s"}}
                            },
                        }
                    },
                    "load_assignment": {
                        "cluster_name": XDS_CLUSTER,
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": xds_target}}]}],
                    },
                }
            ]
        },
    }


HEAP_MONITOR = "envoy.resource_monitors.fixed_heap"
CONNECTIONS_MONITOR = "envoy.resource_monitors.global_downstream_max_connections"


def overload_manager(max_heap_bytes: int, max_connections: int) -> dict[str, Any]:
    """Envoy under hostile clients (docs/security.md): past `max_connections` open
    downstream connections every new one is closed at once; as the heap nears
    `max_heap_bytes` Envoy first cuts idle timeouts (down to a tenth), returns free memory
    to the system, then stops accepting connections and finally answers new requests 503
    instead of taking more memory. Either limit may be 0 (not set)."""
    monitors, actions = [], []
    if max_connections:
        monitors.append(
            {
                "name": CONNECTIONS_MONITOR,
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3."
                    "DownstreamConnectionsConfig",
                    "max_active_downstream_connections": int(max_connections),
                },
            }
        )
    if max_heap_bytes:
        monitors.append(
            {
                "name": HEAP_MONITOR,
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig",
                    "max_heap_size_bytes": int(max_heap_bytes),
                },
            }
        )

        def at(value: float) -> list[dict]:
            return [{"name": HEAP_MONITOR, "threshold": {"value": value}}]

        actions = [
            {
                "name": "envoy.overload_actions.reduce_timeouts",
                "triggers": [
                    {"name": HEAP_MONITOR, "scaled": {"scaling_threshold": 0.80, "saturation_threshold": 0.95}}
                ],
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.config.overload.v3.ScaleTimersOverloadActionConfig",
                    "timer_scale_factors": [
                        {"timer": timer, "min_scale": {"value": 10}}
                        for timer in ("HTTP_DOWNSTREAM_CONNECTION_IDLE", "HTTP_DOWNSTREAM_STREAM_IDLE")
                    ],
                },
            },
            {"name": "envoy.overload_actions.shrink_heap", "triggers": at(0.90)},
            {"name": "envoy.overload_actions.stop_accepting_connections", "triggers": at(0.95)},
            {"name": "envoy.overload_actions.stop_accepting_requests", "triggers": at(0.98)},
        ]
    return {"refresh_interval": "0.25s", "resource_monitors": monitors, "actions": actions}
