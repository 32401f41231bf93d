"""Translation for topology A (pure): the edge role, the home tunnel listener, vpn-only."""

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.transport_sockets.proxy_protocol.v3 import upstream_proxy_protocol_pb2

from envoyage.model import ServiceState, parse_service
from envoyage.xds import types as T
from envoyage.xds.assemble import HomeSettings, TunnelSettings, assemble_edge, assemble_home
from envoyage.xds.translate import (
    LAN_ACCESS_FILTER,
    TUNNEL_ACCESS_FILTER,
    EdgeSettings,
    HomeAccess,
    TranslationCache,
    translate_edge_service,
    translate_service,
)

EDGE = EdgeSettings(
    http_port=80,
    addresses=("0.0.0.0", "::"),
    access_log_path="/var/log/envoyage/access.log",
    home_tunnel_address="10.88.0.2",
    home_tunnel_port=18080,
    health_interval_ms=30_000,
)
HOME = HomeSettings(
    "0.0.0.0",
    80,
    "/var/log/envoyage/access.log",
    tunnel=TunnelSettings(home_address="10.88.0.2", port=18080, edge_ip="10.88.0.1"),
)


def spec(name="web", **kw):
    data = {"name": name, "domains": [f"{name}.example.com"], "upstreams": ["172.17.0.5:8080"]}
    data.update(kw)
    return parse_service(data)


def test_an_edge_service_goes_to_the_home_tunnel_listener_with_a_proxy_v2_header():
    r = translate_edge_service(spec(), EDGE)
    c = r.cluster
    assert c.type == cluster_pb2.Cluster.STATIC and r.endpoints is None
    addr = c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (addr.address, addr.port_value) == ("10.88.0.2", 18080)
    assert c.transport_socket.name == "envoy.transport_sockets.upstream_proxy_protocol"
    proxy = upstream_proxy_protocol_pb2.ProxyProtocolUpstreamTransport()
    c.transport_socket.typed_config.Unpack(proxy)
    assert proxy.config.version == proxy.config.V2
    # a slow health check through home, with the service's Host; only a 5xx counts as down
    hc = c.health_checks[0]
    assert hc.interval.seconds == 30 and hc.http_health_check.host == "web.example.com"
    assert [(r.start, r.end) for r in hc.http_health_check.expected_statuses] == [(100, 500)]
    assert r.virtual_host.domains == ["web.example.com"] and r.virtual_host.routes[0].route.cluster == "svc_web"
    wildcard = translate_edge_service(spec(domains=["*.apps.example.com"]), EDGE)
    assert wildcard.cluster.health_checks[0].http_health_check.host == "health.apps.example.com"
    assert not translate_edge_service(spec(health_check="off"), EDGE).cluster.health_checks


def test_the_edge_snapshot_has_a_dual_stack_public_listener_and_no_vpn_only_service():
    states = [ServiceState.of(spec("web"), 1.0), ServiceState.of(spec("nas", access="vpn-only"), 1.0)]
    snap = assemble_edge(states, TranslationCache(edge=EDGE)).snapshot
    assert set(snap.get(T.CLUSTER)) == {"svc_web"} and not snap.get(T.ENDPOINT)
    listener = snap.get(T.LISTENER)["edge_http"].message
    addresses = [listener.address.socket_address.address] + [
        a.address.socket_address.address for a in listener.additional_addresses
    ]
    assert addresses == ["0.0.0.0", "::"] and listener.address.socket_address.port_value == 80
    routes = snap.get(T.ROUTE)["edge_http"].message
    assert [vh.name for vh in routes.virtual_hosts] == ["_default", "web"]
    assert not routes.request_headers_to_add  # the home Envoy sets the client headers


def test_home_gets_a_tunnel_listener_that_needs_proxy_v2_from_the_edge_address_only():
    snap = assemble_home([ServiceState.of(spec(), 1.0)], HOME, TranslationCache()).snapshot
    listeners = snap.get(T.LISTENER)
    assert set(listeners) == {"home_http", "home_tunnel"}
    tunnel = listeners["home_tunnel"].message
    assert tunnel.address.socket_address.address == "10.88.0.2" and tunnel.freebind.value
    assert [f.name for f in tunnel.listener_filters] == ["envoy.filters.listener.proxy_protocol"]
    rbac = network_rbac_pb2.RBAC()
    tunnel.filter_chains[0].filters[0].typed_config.Unpack(rbac)
    principal = rbac.rules.policies["edge"].principals[0]
    assert (principal.direct_remote_ip.address_prefix, principal.direct_remote_ip.prefix_len.value) == ("10.88.0.1", 32)
    hcm = hcm_pb2.HttpConnectionManager()
    tunnel.filter_chains[0].filters[1].typed_config.Unpack(hcm)
    assert hcm.use_remote_address.value and hcm.http_filters[0].name == TUNNEL_ACCESS_FILTER
    # client headers from the connection (or the PROXY header), replacing the client's own
    headers = {h.header.key: h.header.value for h in snap.get(T.ROUTE)["home_http"].message.request_headers_to_add}
    assert headers == {
        "x-real-ip": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
        "x-forwarded-for": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    }


def test_vpn_only_admits_the_lan_and_vpn_but_never_the_edge_and_nobody_on_the_tunnel():
    access = HomeAccess(networks=("192.168.1.0/24", "10.99.0.0/24"), edge_ip="10.88.0.1")
    route = translate_service(spec(access="vpn-only"), access).virtual_host.routes[0]
    assert route.route.cluster == "svc_web"
    lan = http_rbac_pb2.RBACPerRoute()
    route.typed_per_filter_config[LAN_ACCESS_FILTER].Unpack(lan)
    principal = lan.rbac.rules.policies["lan-or-vpn"].principals[0]
    allowed = [i.direct_remote_ip.address_prefix for i in principal.and_ids.ids[0].or_ids.ids]
    assert allowed == ["192.168.1.0", "10.99.0.0"]
    assert principal.and_ids.ids[1].not_id.direct_remote_ip.address_prefix == "10.88.0.1"
    tunnel = http_rbac_pb2.RBACPerRoute()
    route.typed_per_filter_config[TUNNEL_ACCESS_FILTER].Unpack(tunnel)
    assert not tunnel.rbac.rules.policies  # ALLOW with no policy: nobody
    public = translate_service(spec(), access).virtual_host.routes[0]
    assert not public.typed_per_filter_config
    # no networks at all (every CIDR was malformed): vpn-only admits nobody
    closed = translate_service(spec(access="vpn-only"), HomeAccess()).virtual_host.routes[0]
    none = http_rbac_pb2.RBACPerRoute()
    closed.typed_per_filter_config[LAN_ACCESS_FILTER].Unpack(none)
    assert not none.rbac.rules.policies
