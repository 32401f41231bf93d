"""Resources made once per service and route configurations made from bytes: the same
bytes, versions and checks as building and serializing the messages."""

import pytest
from envoy.config.route.v3 import route_components_pb2, route_pb2

from envoyage.model import ServiceState, parse_service
from envoyage.xds import types as T
from envoyage.xds.assemble import HomeSettings, assemble_home
from envoyage.xds.snapshot import InconsistentSnapshot, Resource, Snapshot
from envoyage.xds.translate import (
    HOME_ROUTES,
    EdgeSettings,
    TranslationCache,
    default_virtual_host,
    route_configuration,
    translate_service,
)
from envoyage.xds.validate import check_snapshot


def _specs(n, **extra):
    return [
        parse_service({"name": f"s{i:03d}", "domains": [f"s{i}.test", f"www.s{i}.test"], "upstreams": [up], **extra})
        for i, up in zip(range(n), ["10.0.0.1:80", "app.internal:8080"] * n, strict=False)
    ]


@pytest.mark.parametrize("edge", [False, True], ids=["home", "edge"])
def test_the_route_configuration_from_bytes_is_the_serialized_message(edge):
    # a name that sorts before "_default" (a digit) and names after it: the default host sits among them
    specs = _specs(5) + [parse_service({"name": "0web", "domains": ["alpha.test"], "upstreams": ["10.0.0.2:80"]})]
    settings = EdgeSettings(
        http_port=80, addresses=("0.0.0.0",), access_log_path="/x", home_tunnel_address="10.1.0.1", home_tunnel_port=81
    )
    cache = TranslationCache(edge=settings) if edge else TranslationCache()
    pieces = cache.translate_all(specs)
    res = cache.route_resource(HOME_ROUTES, pieces.values())
    message = route_configuration(
        HOME_ROUTES,
        [p.virtual_host for p in pieces.values()] + [default_virtual_host(HOME_ROUTES, vhds=False)],
        client_headers=not edge,
    )
    assert res.data == message.SerializeToString(deterministic=True)
    assert res.message == message  # decoded when asked
    assert [h[0] for h in res.hosts] == [vh.name for vh in message.virtual_hosts]
    # unchanged hosts: the very same resource; a host with another domain: a new one
    assert cache.route_resource(HOME_ROUTES, cache.translate_all(specs).values()) is res
    changed = specs[:-1] + [parse_service({"name": "0web", "domains": ["beta.test"], "upstreams": ["10.0.0.2:80"]})]
    assert cache.route_resource(HOME_ROUTES, cache.translate_all(changed).values()).version != res.version


def test_a_vhds_host_is_the_virtual_host_renamed():
    piece = translate_service(_specs(1)[0])
    copy = route_components_pb2.VirtualHost()
    copy.CopyFrom(piece.virtual_host)
    copy.name = f"{HOME_ROUTES}/{piece.virtual_host.name}"
    assert piece.vhds_host_bytes == copy.SerializeToString(deterministic=True)
    assert piece.vhds_resource.name == copy.name and piece.vhds_resource.message == copy
    assert piece.vhds_resource.hosts == ((copy.name, tuple(copy.domains), frozenset({"svc_s000"})),)


def test_snapshots_from_resources_have_the_versions_of_snapshots_from_messages():
    cache = TranslationCache()
    settings = HomeSettings(http_address="127.0.0.1", http_port=8080, access_log_path="/x")
    states = [ServiceState.of(s, first_seen=i) for i, s in enumerate(_specs(6))]
    a = assemble_home(states, settings, cache)
    for snap in (a.snapshot, a.delta_snapshot):
        check_snapshot(snap)
        again = Snapshot.build({t: snap.messages(t) for t in T.PUSH_ORDER})
        assert again.versions == snap.versions
        for t in T.PUSH_ORDER:
            assert {n: r.version for n, r in again.get(t).items()} == {n: r.version for n, r in snap.get(t).items()}
    # one service more: only its resources (and the route configuration) are new
    more = states + [ServiceState.of(_specs(7)[6], first_seen=7)]
    b = assemble_home(more, settings, cache, previous=a.snapshot, previous_delta=a.delta_snapshot)
    assert b.snapshot.changes[T.CLUSTER][1] == {"svc_s006"}
    assert b.delta_snapshot.changes[T.VHOST][1] == {f"{HOME_ROUTES}/s006"}
    assert b.snapshot.changes[T.ROUTE][1] == {HOME_ROUTES}
    assert b.snapshot.get(T.CLUSTER)["svc_s000"] is a.snapshot.get(T.CLUSTER)["svc_s000"]
    check_snapshot(b.snapshot, a.snapshot)
    check_snapshot(b.delta_snapshot, a.delta_snapshot)


def test_a_broken_reference_or_a_domain_twice_is_still_named():
    cache = TranslationCache()
    pieces = cache.translate_all(_specs(2))
    snap = Snapshot.build(
        {
            T.CLUSTER: [p.cluster_resource for p in pieces.values()],
            T.ROUTE: [cache.route_resource("r", pieces.values())],
        }
    )
    with pytest.raises(InconsistentSnapshot, match="EDS cluster 'svc_s000' has no endpoints resource 'svc_s000'"):
        check_snapshot(snap)
    twice = route_pb2.RouteConfiguration(
        name="r",
        virtual_hosts=[
            route_components_pb2.VirtualHost(name="a", domains=["x.test"]),
            route_components_pb2.VirtualHost(name="b", domains=["X.test"]),
        ],
    )
    with pytest.raises(InconsistentSnapshot, match="domain 'X.test' is in virtual hosts 'a' and 'b'"):
        check_snapshot(Snapshot.build({T.ROUTE: [twice]}))


def test_a_route_configuration_whose_spliced_bytes_are_broken_is_refused():
    cache = TranslationCache()
    pieces = cache.translate_all(_specs(3))
    good = cache.route_resource("r", pieces.values())
    broken = Resource(good.name, None, good.version, T.ROUTE, good.data[:-3], hosts=good.hosts)
    resources = {
        T.CLUSTER: [p.cluster_resource for p in pieces.values()],
        T.ENDPOINT: [p.endpoints_resource for p in pieces.values() if p.endpoints_resource],
    }
    check_snapshot(Snapshot.build({**resources, T.ROUTE: [good]}))
    with pytest.raises(InconsistentSnapshot, match="rds resource 'r' made from bytes is not a well-formed message"):
        check_snapshot(Snapshot.build({**resources, T.ROUTE: [broken]}))
