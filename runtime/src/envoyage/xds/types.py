"""xDS type URLs and the order in which types are pushed (make-before-break)."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2

_PREFIX = "type.googleapis.com/"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
# VHDS (delta only): one VirtualHost resource per service, named "<route config>/<service>";
# Envoy subscribes with the route configuration's name and gets all of its hosts.
VHOST = _PREFIX + "envoy.config.route.v3.VirtualHost"

# CDS -> EDS -> LDS -> RDS: a route never points at a cluster Envoy does not have yet.
PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE, VHOST)
# LDS and CDS are full state (wildcard); EDS and RDS are named subscriptions.
# VHDS: Envoy subscribes to all hosts of its route configurations (an empty subscription)
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER, VHOST})

MESSAGE_CLASSES = {
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
    VHOST: route_components_pb2.VirtualHost,
}

SHORT = {CLUSTER: "cds", ENDPOINT: "eds", LISTENER: "lds", ROUTE: "rds", VHOST: "vhds"}
BY_SHORT = {v: k for k, v in SHORT.items()}


def short(type_url: str) -> str:
    return SHORT.get(type_url, type_url.rsplit(".", 1)[-1])
