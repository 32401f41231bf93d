"""Envoy bootstrap for a node fed by the Envoyage control plane over ADS (pure)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

ROLES = ("home", "edge")
_NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
XDS_CLUSTER = "envoyage_xds"


class BootstrapError(ValueError):
    pass


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


def bootstrap(node_id: str, role: str, *, delta: bool = False, xds_address: str = "127.0.0.1",
              xds_port: int = 18000, admin_address: str = "127.0.0.1", admin_port: int = 9901,
              xds_socket: str | None = None) -> dict[str, Any]:
    """`xds_socket`: reach the control plane on this Unix socket (a pipe address) instead
    of xds_address:xds_port."""
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
    return {
        "node": {
            "id": node_id,
            "cluster": f"envoyage-{role}",
            "metadata": {"role": role},
        },
        "admin": {"address": {"socket_address": {"address": admin_address, "port_value": int(admin_port)}}},
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
                            "retry_policy": {
                                "retry_back_off": {"base_interval": "0.1s", "max_interval": "2s"}
                            },
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
                                "http2_protocol_options": {
                                    "connection_keepalive": {"interval": "10s", "timeout": "5s"}
                                }
                            },
                        }
                    },
                    "load_assignment": {
                        "cluster_name": XDS_CLUSTER,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {"address": xds_target}
                                    }
                                ]
                            }
                        ],
                    },
                }
            ]
        },
    }
