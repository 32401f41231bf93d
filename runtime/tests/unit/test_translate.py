"""Translation is pure: same input, same bytes; one service's resources depend on it alone."""

from envoy.config.cluster.v3 import cluster_pb2

from envoyage.model import ServiceState, parse_service
from envoyage.xds import types as T
from envoyage.xds.assemble import HomeSettings, assemble_home
from envoyage.xds.translate import TranslationCache, translate_service

SETTINGS = HomeSettings("127.0.0.1", 8080, "/tmp/access.log")


def spec(name="web", **kw):
    data = {"name": name, "domains": [f"{name}.example.com"], "upstreams": ["10.0.0.5:8080"]}
    data.update(kw)
    return parse_service(data)


def state(s, first_seen=1.0):
    return ServiceState.of(s, first_seen)


def test_ip_upstreams_become_an_eds_cluster_with_endpoints():
    r = translate_service(spec(upstreams=["10.0.0.5:8080", "10.0.0.6:8080"]))
    assert r.cluster.name == "svc_web" and r.cluster.type == cluster_pb2.Cluster.EDS
    addrs = [
        (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
        for e in r.endpoints.endpoints[0].lb_endpoints
    ]
    assert addrs == [("10.0.0.5", 8080), ("10.0.0.6", 8080)]
    assert r.virtual_host.domains == ["web.example.com"]
    assert r.virtual_host.routes[0].route.cluster == "svc_web"


def test_hostname_upstreams_become_strict_dns():
    r = translate_service(spec(upstreams=["nas.lan:5000"]))
    assert r.cluster.type == cluster_pb2.Cluster.STRICT_DNS and r.endpoints is None
    assert r.cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address == "nas.lan"


def test_health_checks_http_and_default_tcp():
    http = translate_service(spec(health_check={"path": "/status", "interval": "5s", "expected": "200-204"}))
    hc = http.cluster.health_checks[0]
    assert hc.http_health_check.path == "/status" and hc.interval.seconds == 5
    assert [(r.start, r.end) for r in hc.http_health_check.expected_statuses] == [(200, 205)]
    tcp = translate_service(spec()).cluster.health_checks[0]
    assert tcp.HasField("tcp_health_check")


def test_unbuilt_access_mode_fails_closed():
    vh = translate_service(spec(access="link-only")).virtual_host
    assert vh.routes[0].direct_response.status == 403
    assert not vh.routes[0].HasField("route")


def test_translation_is_deterministic():
    assert translate_service(spec()).cluster_bytes == translate_service(spec()).cluster_bytes
    a = assemble_home([state(spec())], SETTINGS, TranslationCache()).snapshot
    b = assemble_home([state(spec())], SETTINGS, TranslationCache()).snapshot
    assert a.versions == b.versions


def test_cache_translates_only_changed_services():
    cache = TranslationCache()
    specs = [spec(f"s{i}") for i in range(50)]
    cache.translate_all(specs)
    assert cache.misses == 50
    specs[7] = spec("s7", upstreams=["10.9.9.9:1"])
    cache.translate_all(specs)
    assert cache.misses == 51 and cache.hits == 49


def test_one_service_change_changes_only_its_resource_versions():
    cache = TranslationCache()
    states = [state(spec(f"s{i}"), i) for i in range(10)]
    before = assemble_home(states, SETTINGS, cache).snapshot
    states[3] = state(spec("s3", upstreams=["10.1.1.1:9"]), 3)
    after = assemble_home(states, SETTINGS, cache).snapshot
    changed = {
        t: sorted(n for n, r in after.get(t).items() if before.get(t)[n].version != r.version) for t in T.PUSH_ORDER
    }
    assert changed == {T.CLUSTER: [], T.ENDPOINT: ["svc_s3"], T.LISTENER: [], T.ROUTE: [], T.VHOST: []}


def test_delta_variant_serves_hosts_over_vhds_one_resource_each():
    cache = TranslationCache()
    states = [state(spec(f"s{i}"), i) for i in range(10)]
    before = assemble_home(states, SETTINGS, cache)
    states[4] = state(spec("s4", domains=["other.example.com"]), 4)
    after = assemble_home(states, SETTINGS, cache, previous=before.snapshot, previous_delta=before.delta_snapshot)
    d0, d1 = before.delta_snapshot, after.delta_snapshot
    (rc,) = d1.messages(T.ROUTE)
    assert rc.HasField("vhds") and not rc.virtual_hosts
    assert sorted(d1.get(T.VHOST)) == sorted([f"home_http/s{i}" for i in range(10)] + ["home_http/_default"])
    changed = {t: sorted(n for n, r in d1.get(t).items() if d0.get(t)[n].version != r.version) for t in T.PUSH_ORDER}
    # a changed host is one VHDS resource; the route configuration itself is untouched
    assert changed == {T.CLUSTER: [], T.ENDPOINT: [], T.LISTENER: [], T.ROUTE: [], T.VHOST: ["home_http/s4"]}
    # the state-of-the-world variant resends its one route configuration instead
    assert before.snapshot.version(T.ROUTE) != after.snapshot.version(T.ROUTE)
    assert not after.snapshot.get(T.VHOST)
    # clusters and endpoints are the very same objects in both variants
    assert d1.get(T.CLUSTER) is after.snapshot.get(T.CLUSTER)


def test_cluster_change_also_bumps_its_endpoints_version():
    cache = TranslationCache()
    before = assemble_home([state(spec())], SETTINGS, cache).snapshot
    after = assemble_home([state(spec(health_check="/h"))], SETTINGS, cache).snapshot
    assert before.get(T.CLUSTER)["svc_web"].version != after.get(T.CLUSTER)["svc_web"].version
    # the endpoints did not change, but Envoy needs them again for the re-warmed cluster
    assert before.get(T.ENDPOINT)["svc_web"].version != after.get(T.ENDPOINT)["svc_web"].version


def test_listener_uses_rds_and_json_access_log():
    snap = assemble_home([], SETTINGS, TranslationCache()).snapshot
    (listener,) = snap.messages(T.LISTENER)
    assert listener.address.socket_address.port_value == 8080
    assert "home_http" in snap.get(T.ROUTE)


def test_health_check_off_means_no_active_check():
    s = spec(health_check="off")
    assert s.health_check == "off" and s.to_json()["health_check"] == "off"
    assert list(translate_service(s).cluster.health_checks) == []
    assert parse_service(s.to_json()) == s


def test_long_lived_requests_by_default_no_response_limit_one_hour_idle():
    route = translate_service(spec()).virtual_host.routes[0].route
    # Envoy's own default would cut every response at 15 s
    assert route.HasField("timeout") and route.timeout.ToMilliseconds() == 0
    assert route.idle_timeout.ToMilliseconds() == 3_600_000
    assert not route.upgrade_configs  # the listener allows WebSocket upgrades


def test_per_service_timeouts_and_websocket_opt_out():
    route = (
        translate_service(spec(request_timeout="30s", idle_timeout="off", websocket=False)).virtual_host.routes[0].route
    )
    assert route.timeout.ToMilliseconds() == 30_000 and route.HasField("idle_timeout")
    assert route.idle_timeout.ToMilliseconds() == 0
    (upgrade,) = route.upgrade_configs
    assert upgrade.upgrade_type == "websocket" and upgrade.HasField("enabled") and not upgrade.enabled.value


def test_listener_allows_websocket_upgrades():
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

    from envoyage.xds.translate import home_listener

    hcm = hcm_pb2.HttpConnectionManager()
    home_listener("127.0.0.1", 8080, "/tmp/a.log").filter_chains[0].filters[0].typed_config.Unpack(hcm)
    assert [u.upgrade_type for u in hcm.upgrade_configs] == ["websocket"]


def _managers():
    """Each listener's HTTP connection manager: home LAN, home tunnel, edge."""
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

    from envoyage.xds.translate import EdgeSettings, edge_listener, home_listener, tunnel_listener

    edge = EdgeSettings(
        http_port=80,
        addresses=("0.0.0.0",),
        access_log_path="/tmp/a.log",
        home_tunnel_address="10.88.0.2",
        home_tunnel_port=18080,
    )
    out = {}
    for listener in (
        home_listener("0.0.0.0", 80, "/tmp/a.log"),
        tunnel_listener("10.88.0.2", 18080, "10.88.0.1", "/tmp/a.log"),
        edge_listener(edge),
    ):
        hcm = hcm_pb2.HttpConnectionManager()
        listener.filter_chains[0].filters[-1].typed_config.Unpack(hcm)
        out[listener.name] = hcm
    return out


def _stripped(hcm) -> tuple[set[str], set[str]]:
    from envoy.extensions.http.early_header_mutation.header_mutation.v3 import header_mutation_pb2

    (ext,) = hcm.early_header_mutation_extensions
    mutation = header_mutation_pb2.HeaderMutation()
    ext.typed_config.Unpack(mutation)
    names = {m.remove for m in mutation.mutations if m.remove}
    prefixes = {m.remove_on_match.key_matcher.prefix for m in mutation.mutations if m.HasField("remove_on_match")}
    return names, prefixes


def test_every_listener_strips_forwarding_and_identity_headers_before_anything_else():
    claims = {
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "forwarded",
        "x-real-ip",
        "client-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "x-forwarded-for",
        "remote-user",
        "remote-groups",
        "remote-name",
        "remote-email",
        "x-remote-user",
        "x-forwarded-user",
    }
    managers = _managers()
    for name, hcm in managers.items():
        names, prefixes = _stripped(hcm)
        assert claims <= names, (name, claims - names)
        assert "x-authentik-" in prefixes, name
    # the LAN and the edge set X-Forwarded-Proto from their own connection; home's tunnel
    # listener (only the edge can talk to it) keeps what the edge set
    assert "x-forwarded-proto" in _stripped(managers["home_http"])[0]
    assert "x-forwarded-proto" in _stripped(managers["edge_http"])[0]
    assert "x-forwarded-proto" not in _stripped(managers["home_tunnel"])[0]
    assert managers["home_tunnel"].xff_num_trusted_hops == 1
    assert managers["home_http"].xff_num_trusted_hops == 0 == managers["edge_http"].xff_num_trusted_hops


def test_every_listener_normalizes_paths_and_refuses_underscore_headers():
    from envoy.config.core.v3 import protocol_pb2
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

    for name, hcm in _managers().items():
        assert hcm.normalize_path.value and hcm.merge_slashes, name
        assert hcm.path_with_escaped_slashes_action == hcm_pb2.HttpConnectionManager.UNESCAPE_AND_REDIRECT, name
        assert (
            hcm.common_http_protocol_options.headers_with_underscores_action
            == protocol_pb2.HttpProtocolOptions.REJECT_REQUEST
        ), name
