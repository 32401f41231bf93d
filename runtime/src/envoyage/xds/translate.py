"""Pure translation: desired state -> Envoy resources, per node role.

`translate_service` maps one ServiceSpec to its own cluster, endpoints and virtual
host; nothing here does I/O. `TranslationCache` memoizes that per service by content
hash, so a one-service change costs one service's work. `home_listener` and
`route_configuration` assemble the shared pieces.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable
from dataclasses import dataclass

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, extension_pb2, health_check_pb2, protocol_pb2
from envoy.config.core.v3 import proxy_protocol_pb2 as core_proxy_protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.proxy_protocol.v3 import proxy_protocol_pb2
from envoy.extensions.filters.network.connection_limit.v3 import connection_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import (
    header_mutation_pb2 as early_header_mutation_pb2,
)
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.transport_sockets.proxy_protocol.v3 import upstream_proxy_protocol_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import range_pb2
from google.protobuf import any_pb2, duration_pb2, struct_pb2, wrappers_pb2

from ..model import BUILT_ACCESS_MODES, BUILT_AUTH, ServiceSpec
from . import types as T
from .snapshot import Resource, _digest, host_entry

HOME_LISTENER = "home_http"
HOME_ROUTES = "home_http"
# topology A: the home Envoy's listener for the edge, on home's tunnel address; it shares
# the home route configuration (vpn-only routes refuse it by the filter name below)
TUNNEL_LISTENER = "home_tunnel"
EDGE_LISTENER = "edge_http"
EDGE_ROUTES = "edge_http"
# the RBAC filters of the two home listeners; a vpn-only route configures each by name
LAN_ACCESS_FILTER = "envoyage.access.lan"
TUNNEL_ACCESS_FILTER = "envoyage.access.tunnel"


@dataclass(frozen=True)
class HomeAccess:
    """Who may use vpn-only services on the home Envoy: the LAN and VPN client networks,
    never the VPS's tunnel address (`edge_ip`, topology A)."""

    networks: tuple[str, ...] = ()
    edge_ip: str | None = None
    # home's own addresses (single hosts): a local process or a host-network container
    # connecting to home's LAN address is not a LAN client (only listed loopback lets it in)
    denied: tuple[str, ...] = ()


@dataclass(frozen=True)
class EdgeLimits:
    """What one internet client may hold on the edge (VPS) Envoy's public listener
    (config `edge.*`, docs/configuration.md). None of these cuts a WebSocket or a long
    download: those are bounded per service by the route's timeouts."""

    max_connections: int = 5_000  # open connections on the listener; more are closed at once
    request_headers_timeout_ms: int = 10_000  # from a request's first byte to its last header
    idle_timeout_ms: int = 60_000  # a connection with no request in flight
    # a request whose route is not chosen yet; a routed request has its service's idle timeout
    stream_idle_timeout_ms: int = 300_000
    http2_max_concurrent_streams: int = 100
    http2_initial_stream_window: int = 65_536
    http2_initial_connection_window: int = 1_048_576


# bytes buffered per connection before Envoy pushes back on the reader (Envoy's own
# default is 1 MiB; its edge guidance is 32 KiB)
EDGE_CONNECTION_BUFFER = 32_768


@dataclass(frozen=True)
class EdgeSettings:
    """What the edge (VPS) Envoy serves and where it finds home across the tunnel."""

    http_port: int
    addresses: tuple[str, ...]
    access_log_path: str
    home_tunnel_address: str
    home_tunnel_port: int
    health_interval_ms: int = 30_000
    limits: EdgeLimits = EdgeLimits()


ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "method": "%REQ(:METHOD)%",
    "host": "%REQ(:AUTHORITY)%",
    # the path without its query string (NQ; the original path if a route rewrote it):
    # queries carry share-link tokens and other secrets, and whoever reads the access log
    # (CrowdSec, an operator, a backup) must not learn them (docs/security.md, "Files")
    "path": "%PATH(NQ:ORIG_OR_PATH)%",
    "protocol": "%PROTOCOL%",
    "status": "%RESPONSE_CODE%",
    "flags": "%RESPONSE_FLAGS%",
    "bytes_in": "%BYTES_RECEIVED%",
    "bytes_out": "%BYTES_SENT%",
    "duration_ms": "%DURATION%",
    "upstream": "%UPSTREAM_HOST%",
    "route": "%ROUTE_NAME%",
    "user_agent": "%REQ(USER-AGENT)%",
}


def cluster_name(service: str) -> str:
    return f"svc_{service}"


def service_of(type_url: str, resource_name: str) -> str | None:
    """The service a cluster, endpoints or VHDS host resource belongs to (None: shared)."""
    if type_url in (T.CLUSTER, T.ENDPOINT):
        return resource_name[4:] if resource_name.startswith("svc_") else None
    if type_url == T.VHOST:
        host = resource_name.partition("/")[2]
        return host if host and host != DEFAULT_HOST else None
    return None


def _duration(ms: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def _pack(msg) -> any_pb2.Any:
    # Deterministic bytes: map fields (Struct) must not change order between runs,
    # or versions (content hashes) would change after a restart.
    return any_pb2.Any(
        type_url="type.googleapis.com/" + msg.DESCRIPTOR.full_name,
        value=msg.SerializeToString(deterministic=True),
    )


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def _socket(host: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=host, port_value=port))


@dataclass(frozen=True)
class ServiceResources:
    """Everything one service contributes to a snapshot, with serialized bytes."""

    key: str
    cluster: cluster_pb2.Cluster
    endpoints: endpoint_pb2.ClusterLoadAssignment | None
    virtual_host: route_components_pb2.VirtualHost
    cluster_bytes: bytes
    endpoints_bytes: bytes | None
    virtual_host_bytes: bytes

    @classmethod
    def of(
        cls,
        key: str,
        cluster: cluster_pb2.Cluster,
        endpoints: endpoint_pb2.ClusterLoadAssignment | None,
        virtual_host: route_components_pb2.VirtualHost,
    ) -> ServiceResources:
        return cls(
            key=key,
            cluster=cluster,
            endpoints=endpoints,
            virtual_host=virtual_host,
            cluster_bytes=cluster.SerializeToString(deterministic=True),
            endpoints_bytes=endpoints.SerializeToString(deterministic=True) if endpoints is not None else None,
            virtual_host_bytes=virtual_host.SerializeToString(deterministic=True),
        )

    @functools.cached_property
    def cluster_resource(self) -> Resource:
        """The cluster as a snapshot resource, made once: every snapshot shares it."""
        return Resource(self.cluster.name, self.cluster, _digest(self.cluster_bytes), T.CLUSTER, self.cluster_bytes)

    @functools.cached_property
    def endpoints_resource(self) -> Resource | None:
        if self.endpoints is None or self.endpoints_bytes is None:
            return None
        version = _digest(self.endpoints_bytes, self.cluster_bytes)  # covers the cluster (snapshot.py)
        return Resource(self.endpoints.cluster_name, self.endpoints, version, T.ENDPOINT, self.endpoints_bytes)

    @functools.cached_property
    def virtual_host_frame(self) -> bytes:
        """The virtual host's field header in a route configuration (field 2, its length)."""
        return _field_header(2, len(self.virtual_host_bytes))

    @functools.cached_property
    def host_entry(self) -> tuple[str, tuple[str, ...], frozenset[str]]:
        return host_entry(self.virtual_host)

    @functools.cached_property
    def vhds_host_bytes(self) -> bytes:
        """The virtual host as a VHDS resource (delta nodes), "<route config>/<service>":
        the same bytes with another name (field 1, first in the serialized form), so no
        second copy of the message is kept. Made on first use: a home with only SotW
        Envoys never holds these."""
        return _renamed(self.virtual_host_bytes, f"{HOME_ROUTES}/{self.virtual_host.name}")

    @functools.cached_property
    def vhds_resource(self) -> Resource:
        name = f"{HOME_ROUTES}/{self.virtual_host.name}"
        data = self.vhds_host_bytes
        _host, domains, clusters = self.host_entry
        return Resource(name, None, _digest(data), T.VHOST, data, hosts=((name, domains, clusters),))

    @property
    def vhds_host(self) -> route_components_pb2.VirtualHost:
        """The VHDS resource as a message (decoded when asked, not kept)."""
        return self.vhds_resource.message


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field_header(number: int, length: int) -> bytes:
    """The tag and length of a length-delimited field (a string or a message) in
    protobuf's wire format."""
    return _varint(number << 3 | 2) + _varint(length)


def _field(number: int, payload: bytes) -> bytes:
    return _field_header(number, len(payload)) + payload


def _renamed(data: bytes, name: str) -> bytes:
    """A serialized message whose field 1 is its name (VirtualHost), with another name.
    Deterministic serialization writes fields by number, so the name comes first."""
    if data[:1] != b"\x0a":
        raise ValueError("not a message that starts with its name")
    length, pos, shift = 0, 1, 0
    while True:
        byte = data[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            break
        shift += 7
    return _field(1, name.encode()) + data[pos + length :]


def _health_checks(spec: ServiceSpec) -> list[health_check_pb2.HealthCheck]:
    hc = spec.health_check
    if isinstance(hc, str):  # model.HEALTH_OFF, the only string value
        return []
    if hc is None:
        # No HTTP check configured: a TCP connect check, so a dead upstream still shows.
        interval, timeout = 10_000, 2_000
        check = health_check_pb2.HealthCheck(tcp_health_check=health_check_pb2.HealthCheck.TcpHealthCheck())
    else:
        interval, timeout = hc.interval_ms, hc.timeout_ms
        http = health_check_pb2.HealthCheck.HttpHealthCheck(
            path=hc.path,
            host=health_host(spec),
            expected_statuses=[range_pb2.Int64Range(start=lo, end=hi + 1) for lo, hi in hc.expected],
        )
        check = health_check_pb2.HealthCheck(http_health_check=http)
    return [_timed(check, interval, timeout)]


def _timed(check: health_check_pb2.HealthCheck, interval_ms: int, timeout_ms: int) -> health_check_pb2.HealthCheck:
    """Interval (also with no traffic), timeout, and down after two failures, up after one."""
    check.interval.CopyFrom(_duration(interval_ms))
    check.no_traffic_interval.CopyFrom(_duration(interval_ms))
    check.timeout.CopyFrom(_duration(timeout_ms))
    check.unhealthy_threshold.value = 2
    check.healthy_threshold.value = 1
    return check


def _lb_endpoints(spec: ServiceSpec) -> list[endpoint_components_pb2.LocalityLbEndpoints]:
    return [
        endpoint_components_pb2.LocalityLbEndpoints(
            lb_endpoints=[
                endpoint_components_pb2.LbEndpoint(
                    endpoint=endpoint_components_pb2.Endpoint(address=_socket(u.host, u.port))
                )
                for u in spec.upstreams
            ]
        )
    ]


def translate_cluster(spec: ServiceSpec) -> tuple[cluster_pb2.Cluster, endpoint_pb2.ClusterLoadAssignment | None]:
    name = cluster_name(spec.name)
    cluster = cluster_pb2.Cluster(
        name=name,
        connect_timeout=_duration(2_000),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        health_checks=_health_checks(spec),
        # An endpoint the control plane removed is gone now, even while it still
        # passes health checks (Envoy would otherwise keep it until a check fails).
        ignore_health_on_host_removal=True,
    )
    if spec.tls_upstream:
        # The app speaks TLS itself. Encrypted, not verified: apps behind a home proxy
        # normally use self-signed certificates (verification comes with the internal CA).
        tls = tls_pb2.UpstreamTlsContext(sni=spec.domains[0].removeprefix("*."))
        cluster.transport_socket.name = "envoy.transport_sockets.tls"
        cluster.transport_socket.typed_config.CopyFrom(_pack(tls))
    if all(u.is_ip for u in spec.upstreams):
        # IP upstreams: an EDS cluster, so endpoint changes never touch the cluster.
        cluster.type = cluster_pb2.Cluster.EDS
        cluster.eds_cluster_config.eds_config.CopyFrom(_ads())
        endpoints = endpoint_pb2.ClusterLoadAssignment(cluster_name=name, endpoints=_lb_endpoints(spec))
        return cluster, endpoints
    # Host names: Envoy resolves them itself (EDS endpoints must be IP addresses).
    cluster.type = cluster_pb2.Cluster.STRICT_DNS
    cluster.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
    cluster.load_assignment.CopyFrom(
        endpoint_pb2.ClusterLoadAssignment(cluster_name=name, endpoints=_lb_endpoints(spec))
    )
    return cluster, None


def _cidr(text: str) -> address_pb2.CidrRange:
    addr, _sep, length = text.partition("/")
    return address_pb2.CidrRange(address_prefix=addr, prefix_len=wrappers_pb2.UInt32Value(value=int(length)))


def _vpn_only(access: HomeAccess) -> dict[str, any_pb2.Any]:
    """Per-route RBAC for vpn-only: on the LAN listener only the LAN and VPN networks (but
    never the VPS's tunnel address); on the tunnel listener nobody."""
    ids = [rbac_pb2.Principal(direct_remote_ip=_cidr(n)) for n in access.networks]
    principal = rbac_pb2.Principal(or_ids=rbac_pb2.Principal.Set(ids=ids)) if ids else None
    excluded = ([access.edge_ip] if access.edge_ip else []) + list(access.denied)
    if principal is not None and excluded:
        nots = [
            rbac_pb2.Principal(not_id=rbac_pb2.Principal(direct_remote_ip=_cidr(f"{ip}/{128 if ':' in ip else 32}")))
            for ip in excluded
        ]
        principal = rbac_pb2.Principal(and_ids=rbac_pb2.Principal.Set(ids=[principal] + nots))
    lan = rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW)
    if principal is not None:
        lan.policies["lan-or-vpn"].CopyFrom(
            rbac_pb2.Policy(permissions=[rbac_pb2.Permission(any=True)], principals=[principal])
        )
    nobody = rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW)  # ALLOW with no policy: denies every request
    return {
        LAN_ACCESS_FILTER: _pack(http_rbac_pb2.RBACPerRoute(rbac=http_rbac_pb2.RBAC(rules=lan))),
        TUNNEL_ACCESS_FILTER: _pack(http_rbac_pb2.RBACPerRoute(rbac=http_rbac_pb2.RBAC(rules=nobody))),
    }


def translate_virtual_host(
    spec: ServiceSpec, access: HomeAccess = HomeAccess(), cluster: str | None = None
) -> route_components_pb2.VirtualHost:
    route = route_components_pb2.Route(
        name=spec.name,
        match=route_components_pb2.RouteMatch(prefix=spec.path),
    )
    if spec.access not in BUILT_ACCESS_MODES:
        unbuilt = f"access mode '{spec.access}'"
    elif spec.auth not in BUILT_AUTH:
        unbuilt = f"auth '{spec.auth}'"
    else:
        unbuilt = ""
    if unbuilt:
        # Fail closed: a protection that is not built yet never serves the upstream.
        route.direct_response.status = 403
        route.direct_response.body.inline_string = (
            f"403 Forbidden: {unbuilt} is not available in this version of Envoyage.\n"
        )
    else:
        route.route.cluster = cluster or cluster_name(spec.name)
        if spec.access == "vpn-only":
            for name, config in _vpn_only(access).items():
                route.typed_per_filter_config[name].CopyFrom(config)
        # A request that could not reach an endpoint (a replica just went away) is
        # tried once more on another endpoint; nothing that reached the app is retried.
        retry = route.route.retry_policy
        retry.retry_on = "connect-failure,refused-stream,reset-before-request"
        retry.num_retries.value = 2
        retry.retry_host_predicate.add(name="envoy.retry_host_predicates.previous_hosts").typed_config.CopyFrom(
            _pack(previous_hosts_pb2.PreviousHostsPredicate())
        )
        retry.host_selection_retry_max_attempts = 3
        # Long-lived requests (downloads, streams, server-sent events, WebSockets):
        # Envoy's default 15 s limit on a whole response is replaced by the service's
        # (none by default), and the idle limit by the service's (0 = none).
        route.route.timeout.CopyFrom(_duration(spec.request_timeout_ms))
        route.route.idle_timeout.CopyFrom(_duration(spec.idle_timeout_ms))
        if not spec.websocket:
            # the listener allows WebSocket upgrades; this service opts out
            route.route.upgrade_configs.add(upgrade_type="websocket").enabled.value = False
    return route_components_pb2.VirtualHost(
        name=spec.name,
        domains=list(spec.domains),
        routes=[route],
    )


def translate_service(spec: ServiceSpec, access: HomeAccess = HomeAccess()) -> ServiceResources:
    cluster, endpoints = translate_cluster(spec)
    return ServiceResources.of(spec.content_hash, cluster, endpoints, translate_virtual_host(spec, access))


class TranslationCache:
    """Memoizes translate_service by content hash; forgets entries not used by the last build."""

    def __init__(self, access: HomeAccess | None = None, edge: EdgeSettings | None = None) -> None:
        """Home translation by default (`access`: who may use vpn-only services); with
        `edge`, the edge role's translation for those settings."""
        self.access = access or HomeAccess()
        self.edge = edge
        self._entries: dict[str, ServiceResources] = {}
        self.hits = 0
        self.misses = 0
        # the last route configuration built, keyed by its name and virtual hosts' bytes
        self._routes: tuple[tuple, Resource] | None = None

    def route_resource(self, name: str, pieces: Iterable[ServiceResources]) -> Resource:
        """The shared route configuration with every host, rebuilt only when a virtual
        host changed. Made from the hosts' bytes (the same bytes as serializing
        `route_configuration(...)`, without building that message: at 5,000 services it
        is ~10 MB, copied from every host, and kept by every snapshot in the history)."""
        ordered = sorted(pieces, key=_host_name)
        key = (name, tuple([r.virtual_host_bytes for r in ordered]))
        if self._routes is None or self._routes[0] != key:
            head, tail = _route_configuration_parts(name, client_headers=self.edge is None)
            default_name, default_frame, default_bytes, default_entry = _default_host(name)
            # the default host among the others by name, as route_configuration() orders them
            at = bisect.bisect([r.host_entry[0] for r in ordered], default_name)
            parts = [head]
            for r in ordered[:at]:
                parts += (r.virtual_host_frame, r.virtual_host_bytes)
            parts += (default_frame, default_bytes)
            for r in ordered[at:]:
                parts += (r.virtual_host_frame, r.virtual_host_bytes)
            parts.append(tail)
            data = b"".join(parts)
            entries = [r.host_entry for r in ordered]
            entries.insert(at, default_entry)
            self._routes = (key, Resource(name, None, _digest(data), T.ROUTE, data, hosts=tuple(entries)))
        return self._routes[1]

    def route_configuration(
        self, name: str, pieces: Iterable[ServiceResources]
    ) -> tuple[route_pb2.RouteConfiguration, bytes]:
        """The same as a message and its bytes (tools and tests)."""
        res = self.route_resource(name, pieces)
        return res.message, res.data

    def translate_all(self, specs: Iterable[ServiceSpec]) -> dict[str, ServiceResources]:
        fresh: dict[str, ServiceResources] = {}
        out: dict[str, ServiceResources] = {}
        for spec in specs:
            key = spec.content_hash
            res = self._entries.get(key) or fresh.get(key)
            if res is None:
                self.misses += 1
                res = (
                    translate_service(spec, self.access)
                    if self.edge is None
                    else translate_edge_service(spec, self.edge)
                )
            else:
                self.hits += 1
            fresh[key] = res
            out[spec.name] = res
        self._entries = fresh
        return out


# Headers no client may set (docs/security.md): where the client is and how it came in
# (our own hop sets X-Forwarded-For and X-Forwarded-Proto from the connection), and who it
# is (identity headers come only from an auth provider's answer, never from the client).
FORWARDING_HEADERS = (
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-proto",
    "forwarded",
    "x-real-ip",
    "client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
)
IDENTITY_HEADERS = (
    "remote-user",
    "remote-groups",
    "remote-name",
    "remote-email",
    "x-remote-user",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
)
# every header starting with one of these: authentik's, oauth2-proxy's
IDENTITY_PREFIXES = ("x-authentik-", "x-auth-request-", "remote-")
# every X-Forwarded-* header (-Uri, -Method, -Server, -Ssl, -Scheme, ... as forward-auth
# providers and apps read them); on home's tunnel listener all but X-Forwarded-Proto (RE2
# has no lookahead: "x-forwarded-" followed by anything that is not exactly "proto")
FORWARDED_PREFIX = "x-forwarded-"
FORWARDED_BUT_PROTO = r"x-forwarded-(|[^p].*|p[^r].*|pr[^o].*|pro[^t].*|prot[^o].*|p|pr|pro|prot|proto.+)"


def _strip_client_headers(keep: tuple[str, ...] = ()) -> extension_pb2.TypedExtensionConfig:
    """An early header mutation: runs before routing, before Envoy's own X-Forwarded-*
    handling and before every HTTP filter, so what it removes nothing downstream ever sees
    (and an auth filter later in the chain may still set identity headers)."""
    mutations = [
        mutation_rules_pb2.HeaderMutation(remove=name)
        for name in FORWARDING_HEADERS + IDENTITY_HEADERS
        if name not in keep
    ]
    matchers = [string_pb2.StringMatcher(prefix=prefix) for prefix in IDENTITY_PREFIXES]
    matchers.append(
        string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=FORWARDED_BUT_PROTO))
        if "x-forwarded-proto" in keep
        else string_pb2.StringMatcher(prefix=FORWARDED_PREFIX)
    )
    mutations += [
        mutation_rules_pb2.HeaderMutation(
            remove_on_match=mutation_rules_pb2.HeaderMutation.RemoveOnMatch(key_matcher=m)
        )
        for m in matchers
    ]
    return extension_pb2.TypedExtensionConfig(
        name="envoy.http.early_header_mutation.header_mutation",
        typed_config=_pack(early_header_mutation_pb2.HeaderMutation(mutations=mutations)),
    )


def _http_manager(
    stat_prefix: str,
    routes: str,
    access_log_path: str,
    access_filter: str | None,
    trusted_edge: bool = False,
    limits: EdgeLimits | None = None,
) -> listener_components_pb2.Filter:
    """`trusted_edge`: the home tunnel listener, whose only peer is the edge (network RBAC
    on the VPS's tunnel address, PROXY v2 required): the X-Forwarded-Proto the edge set from
    its own scheme is kept. `limits`: the edge's bounds on hostile clients."""
    access_log = file_pb2.FileAccessLog(path=access_log_path)
    # "listener" tells the LAN, tunnel and edge paths apart in the logs
    access_log.log_format.json_format.CopyFrom(_struct(dict(ACCESS_LOG_FORMAT, listener=stat_prefix)))
    filters = []
    if access_filter:
        # no rules here: only routes that configure this filter by name are restricted
        filters.append(hcm_pb2.HttpFilter(name=access_filter, typed_config=_pack(http_rbac_pb2.RBAC())))
    filters.append(hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=_pack(router_pb2.Router())))
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        rds=hcm_pb2.Rds(route_config_name=routes, config_source=_ads()),
        strip_any_host_port=True,
        # the client is the connection's peer (or, on the tunnel listener, the address the
        # PROXY header from the VPS names), never what a client writes into its headers
        use_remote_address=wrappers_pb2.BoolValue(value=True),
        # WebSocket upgrades are allowed on every route unless a service opts out
        upgrade_configs=[hcm_pb2.HttpConnectionManager.UpgradeConfig(upgrade_type="websocket")],
        http_filters=filters,
        access_log=[accesslog_pb2.AccessLog(name="envoy.access_loggers.file", typed_config=_pack(access_log))],
        early_header_mutation_extensions=[_strip_client_headers(keep=("x-forwarded-proto",) if trusted_edge else ())],
        # one path for one resource: /app/../admin, //admin and /%2e%2e/admin are routed
        # (and reach the app) as /admin; an escaped slash (/app%2F..%2Fadmin) is unescaped
        # and redirected to the normalized path, so the client asks again for what it meant
        normalize_path=wrappers_pb2.BoolValue(value=True),
        merge_slashes=True,
        path_with_escaped_slashes_action=hcm_pb2.HttpConnectionManager.UNESCAPE_AND_REDIRECT,
    )
    # X_USER and X-User would be one header to many apps (CGI, PHP, nginx): refused (400)
    hcm.common_http_protocol_options.headers_with_underscores_action = protocol_pb2.HttpProtocolOptions.REJECT_REQUEST
    if trusted_edge:
        # the edge is the one trusted hop: Envoy keeps its X-Forwarded-Proto (with no hop
        # trusted it overwrites it with this connection's scheme); X-Forwarded-For is
        # stripped above, so the client's address still comes from the PROXY header
        hcm.xff_num_trusted_hops = 1
    if limits is not None:
        hcm.request_headers_timeout.CopyFrom(_duration(limits.request_headers_timeout_ms))
        hcm.stream_idle_timeout.CopyFrom(_duration(limits.stream_idle_timeout_ms))
        hcm.common_http_protocol_options.idle_timeout.CopyFrom(_duration(limits.idle_timeout_ms))
        h2 = hcm.http2_protocol_options
        h2.max_concurrent_streams.value = limits.http2_max_concurrent_streams
        h2.initial_stream_window_size.value = limits.http2_initial_stream_window
        h2.initial_connection_window_size.value = limits.http2_initial_connection_window
    return listener_components_pb2.Filter(name="envoy.filters.network.http_connection_manager", typed_config=_pack(hcm))


def home_listener(address: str, port: int, access_log_path: str) -> listener_pb2.Listener:
    return listener_pb2.Listener(
        name=HOME_LISTENER,
        address=_socket(address, port),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[_http_manager(HOME_LISTENER, HOME_ROUTES, access_log_path, LAN_ACCESS_FILTER)]
            )
        ],
    )


def tunnel_listener(address: str, port: int, edge_ip: str, access_log_path: str) -> listener_pb2.Listener:
    """Topology A: what the edge sends lands here, on home's tunnel address. Every
    connection must start with a PROXY v2 header (the internet client's address) and
    come from the VPS's tunnel address; anything else is closed."""
    only_edge = rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW)
    only_edge.policies["edge"].CopyFrom(
        rbac_pb2.Policy(
            permissions=[rbac_pb2.Permission(any=True)],
            # the directly connected peer, not the address from the PROXY header
            principals=[rbac_pb2.Principal(direct_remote_ip=_cidr(f"{edge_ip}/{128 if ':' in edge_ip else 32}"))],
        )
    )
    rbac = network_rbac_pb2.RBAC(stat_prefix="home_tunnel_peer", rules=only_edge)
    listener = listener_pb2.Listener(
        name=TUNNEL_LISTENER,
        address=_socket(address, port),
        # binds even while the tunnel interface (and so the address) is not there yet
        freebind=wrappers_pb2.BoolValue(value=True),
        listener_filters=[
            listener_components_pb2.ListenerFilter(
                name="envoy.filters.listener.proxy_protocol",
                # v2 only: the edge sends nothing else
                typed_config=_pack(
                    proxy_protocol_pb2.ProxyProtocol(
                        disallowed_versions=[core_proxy_protocol_pb2.ProxyProtocolConfig.V1]
                    )
                ),
            )
        ],
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(name="envoy.filters.network.rbac", typed_config=_pack(rbac)),
                    _http_manager(
                        TUNNEL_LISTENER, HOME_ROUTES, access_log_path, TUNNEL_ACCESS_FILTER, trusted_edge=True
                    ),
                ]
            )
        ],
    )
    return listener


def edge_listener(settings: EdgeSettings) -> listener_pb2.Listener:
    """The VPS Envoy's public HTTP listener, on every address in settings (IPv4 and IPv6)."""
    first, *more = settings.addresses
    limits = settings.limits
    # a connection over the limit is closed as soon as it is accepted (the VPS Envoy's
    # bootstrap also caps all its connections and its heap: bootstrap.py)
    connection_limit = connection_limit_pb2.ConnectionLimit(stat_prefix=EDGE_LISTENER)
    connection_limit.max_connections.value = limits.max_connections
    listener = listener_pb2.Listener(
        name=EDGE_LISTENER,
        address=_socket(first, settings.http_port),
        per_connection_buffer_limit_bytes=wrappers_pb2.UInt32Value(value=EDGE_CONNECTION_BUFFER),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.connection_limit", typed_config=_pack(connection_limit)
                    ),
                    _http_manager(EDGE_LISTENER, EDGE_ROUTES, settings.access_log_path, None, limits=limits),
                ]
            )
        ],
    )
    for addr in more:
        listener.additional_addresses.add().address.CopyFrom(_socket(addr, settings.http_port))
    return listener


def translate_edge_service(spec: ServiceSpec, settings: EdgeSettings) -> ServiceResources:
    """One public service on the edge: its domains, routed across the tunnel to the home
    Envoy's tunnel listener with a PROXY v2 header naming the client, and a slow health
    check of the service through home (a 5xx from home counts as down)."""
    name = cluster_name(spec.name)
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=_duration(5_000),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[
                        endpoint_components_pb2.LbEndpoint(
                            endpoint=endpoint_components_pb2.Endpoint(
                                address=_socket(settings.home_tunnel_address, settings.home_tunnel_port)
                            )
                        )
                    ]
                )
            ],
        ),
    )
    proxy = upstream_proxy_protocol_pb2.ProxyProtocolUpstreamTransport(
        config=core_proxy_protocol_pb2.ProxyProtocolConfig(version=core_proxy_protocol_pb2.ProxyProtocolConfig.V2)
    )
    proxy.transport_socket.name = "envoy.transport_sockets.raw_buffer"
    proxy.transport_socket.typed_config.CopyFrom(_pack(raw_buffer_pb2.RawBuffer()))
    cluster.transport_socket.name = "envoy.transport_sockets.upstream_proxy_protocol"
    cluster.transport_socket.typed_config.CopyFrom(_pack(proxy))
    hc = spec.health_check
    if not isinstance(hc, str):  # not model.HEALTH_OFF, the only string value
        expected = (
            [range_pb2.Int64Range(start=lo, end=hi + 1) for lo, hi in hc.expected]
            if hc is not None
            else [range_pb2.Int64Range(start=100, end=500)]
        )  # anything but a 5xx from home
        check = health_check_pb2.HealthCheck(
            http_health_check=health_check_pb2.HealthCheck.HttpHealthCheck(
                path=hc.path if hc is not None else "/", host=health_host(spec), expected_statuses=expected
            )
        )
        interval = settings.health_interval_ms
        cluster.health_checks.append(_timed(check, interval, min(5_000, interval)))
    return ServiceResources.of(spec.content_hash, cluster, None, translate_virtual_host(spec, cluster=name))


def health_host(spec: ServiceSpec) -> str:
    """The Host header a health check sends: the first domain (a wildcard's base name
    with a label in front, so that it matches the wildcard)."""
    domain = spec.domains[0]
    return "health." + domain[2:] if domain.startswith("*.") else domain


DEFAULT_HOST = "_default"  # service names cannot start with "_"


def default_virtual_host(route_config: str, vhds: bool) -> route_components_pb2.VirtualHost:
    """Answers hosts no service claims with a plain 404 (and gives VHDS a first host:
    Envoy does not finish initializing on an empty VHDS response)."""
    route = route_components_pb2.Route(name=DEFAULT_HOST, match=route_components_pb2.RouteMatch(prefix="/"))
    route.direct_response.status = 404
    route.direct_response.body.inline_string = "404 Not Found: no service is configured for this host.\n"
    name = f"{route_config}/{DEFAULT_HOST}" if vhds else DEFAULT_HOST
    return route_components_pb2.VirtualHost(name=name, domains=["*"], routes=[route])


# other headers in which a client could claim an address: removed before the app sees them
CLIENT_CLAIMS = ["forwarded", "x-client-ip", "true-client-ip", "cf-connecting-ip"]


def _client_headers() -> list[base_pb2.HeaderValueOption]:
    """What the app learns about the client from the home Envoy: its address (from the
    connection, or from the edge's PROXY header), replacing whatever the client sent."""
    overwrite = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    return [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=key, value="%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
            append_action=overwrite,
        )
        for key in ("x-real-ip", "x-forwarded-for")
    ]


def vhds_route_configuration(name: str) -> route_pb2.RouteConfiguration:
    """A route configuration whose virtual hosts come over VHDS (delta nodes)."""
    return route_pb2.RouteConfiguration(
        name=name,
        vhds=route_pb2.Vhds(config_source=_ads()),
        request_headers_to_add=_client_headers(),
        request_headers_to_remove=CLIENT_CLAIMS,
    )


def route_configuration(
    name: str, virtual_hosts: Iterable[route_components_pb2.VirtualHost], client_headers: bool = True
) -> route_pb2.RouteConfiguration:
    """`client_headers`: the home Envoy sets X-Real-IP and X-Forwarded-For (the edge
    leaves them to home)."""
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=sorted(virtual_hosts, key=lambda vh: vh.name),
        request_headers_to_add=_client_headers() if client_headers else [],
        request_headers_to_remove=CLIENT_CLAIMS if client_headers else [],
    )


@functools.lru_cache(maxsize=8)
def _default_host(route_config: str) -> tuple[str, bytes, bytes, tuple[str, tuple[str, ...], frozenset[str]]]:
    """The default virtual host of a route configuration: name, field header, bytes, host entry."""
    vh = default_virtual_host(route_config, vhds=False)
    data = vh.SerializeToString(deterministic=True)
    return vh.name, _field_header(2, len(data)), data, host_entry(vh)


def _host_name(res: ServiceResources) -> str:
    return res.host_entry[0]


@functools.lru_cache(maxsize=8)
def _route_configuration_parts(name: str, client_headers: bool) -> tuple[bytes, bytes]:
    """route_configuration(name, [], client_headers) serialized, split where its virtual
    hosts (field 2) go: the name (field 1) before them, the header fields after."""
    head = route_pb2.RouteConfiguration(name=name).SerializeToString(deterministic=True)
    rest = route_configuration(name, [], client_headers=client_headers)
    rest.ClearField("name")
    return head, rest.SerializeToString(deterministic=True)


@functools.lru_cache(maxsize=8)
def vhds_route_resource(name: str) -> Resource:
    """vhds_route_configuration(name) as a snapshot resource (the same one every time)."""
    rc = vhds_route_configuration(name)
    data = rc.SerializeToString(deterministic=True)
    return Resource(name, rc, _digest(data), T.ROUTE, data)


@functools.lru_cache(maxsize=8)
def default_vhds_resource(route_config: str) -> Resource:
    vh = default_virtual_host(route_config, vhds=True)
    data = vh.SerializeToString(deterministic=True)
    return Resource(vh.name, vh, _digest(data), T.VHOST, data)


def _resource(msg) -> Resource:
    data = msg.SerializeToString(deterministic=True)
    return Resource(msg.name, msg, _digest(data), T.LISTENER, data)


@functools.lru_cache(maxsize=8)
def home_listener_resources(
    address: str, port: int, access_log_path: str, tunnel: tuple[str, int, str] | None
) -> tuple[Resource, ...]:
    """The home listeners (and, with `tunnel` (address, port, edge ip), the tunnel
    listener) as snapshot resources, built once per setting instead of on every change."""
    listeners = [home_listener(address, port, access_log_path)]
    if tunnel is not None:
        listeners.append(tunnel_listener(tunnel[0], tunnel[1], tunnel[2], access_log_path))
    return tuple(_resource(lst) for lst in listeners)


@functools.lru_cache(maxsize=8)
def edge_listener_resource(settings: EdgeSettings) -> Resource:
    return _resource(edge_listener(settings))


def _struct(data: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data)
    return s
