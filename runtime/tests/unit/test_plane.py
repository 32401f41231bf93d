"""Control-plane updates: PATCH changes only what is given, PUT replaces the whole service."""

import pytest
from support.helpers import make_config

from envoyage.control.plane import ControlPlane
from envoyage.model import InputError


@pytest.fixture
def plane(workdir):
    p = ControlPlane(make_config(workdir))
    yield p
    p.registry.close()


BASE = {"name": "web", "domains": ["web.test"], "upstreams": ["10.0.0.1:80"], "health_check": "/status"}


def test_patch_keeps_fields_not_given(plane):
    plane.add_service(BASE)
    svc = plane.update_service("web", {"upstreams": ["10.0.0.2:80"]})
    assert svc["upstreams"] == ["10.0.0.2:80"] and svc["health_check"]["path"] == "/status"


def test_put_replaces_omitted_fields_with_defaults(plane):
    plane.add_service(BASE)
    svc = plane.update_service("web", {"domains": ["web.test"], "upstreams": ["10.0.0.2:80"]}, replace=True)
    assert svc["upstreams"] == ["10.0.0.2:80"] and svc["health_check"] is None


def test_put_with_another_name_or_source_is_refused(plane):
    plane.add_service(BASE)
    with pytest.raises(InputError) as exc:
        plane.update_service("web", {**BASE, "name": "other"}, replace=True)
    assert exc.value.field == "name"
    for replace in (False, True):
        with pytest.raises(InputError) as exc:
            plane.update_service("web", {**BASE, "source": "docker"}, replace=replace)
        assert exc.value.field == "source"
    assert plane.get_service("web")["source"] == "manual"


def test_a_malformed_cidr_is_a_named_problem_and_the_rest_keeps_serving(workdir):
    from envoyage.xds import types as T
    from envoyage.xds.translate import LAN_ACCESS_FILTER

    p = ControlPlane(make_config(workdir, lan_cidrs=("10.0.0/8", "192.168.1.0/24"), vpn_cidrs=("vpn",)))
    try:
        p.variants.add(False)
        p.add_service(dict(BASE, access="vpn-only"))
        problems = p.status_report().problems
        assert any("lan_cidrs: '10.0.0/8' is not a network in CIDR notation" in x for x in problems)
        assert any("vpn_cidrs: 'vpn'" in x for x in problems)
        assert p.get_service("web")["problems"] == []
        route = p.cache.get_snapshot("home").get(T.ROUTE)["home_http"].message
        (vh,) = [v for v in route.virtual_hosts if v.name == "web"]
        assert LAN_ACCESS_FILTER in vh.routes[0].typed_per_filter_config  # served, to the good network only
        assert b"192.168.1.0" in vh.routes[0].typed_per_filter_config[LAN_ACCESS_FILTER].value
    finally:
        p.registry.close()


def test_topology_a_builds_an_edge_snapshot_and_c_does_not(workdir):
    c = ControlPlane(make_config(workdir / "c"))
    a = ControlPlane(make_config(workdir / "a", topology="a"))
    try:
        for p in (a, c):
            p.add_service(BASE)
        assert "edge" not in c.cache.keys() and c.status_report().edge is None
        edge = a.cache.get_snapshot("edge")
        assert set(edge.get("type.googleapis.com/envoy.config.cluster.v3.Cluster")) == {"svc_web"}
    finally:
        a.registry.close()
        c.registry.close()


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "::0", "10.88.0.2", "192.168.1.5", "xds.example"])
def test_topology_a_refuses_xds_on_the_tunnel_address(workdir, address):
    from envoyage.control.daemon import ControlDaemon

    d = ControlDaemon(make_config(workdir / address.replace(":", "_"), topology="a", xds_address=address))
    try:
        with pytest.raises(OSError, match="is not a loopback address, so xDS could be reached over the tunnel"):
            d.start()
    finally:
        d.stop()


def test_a_service_the_vps_envoy_rejects_is_dropped_from_the_edge_set_only_with_its_message(workdir):
    from envoyage.link.server import verdict_events
    from envoyage.status import EdgeEnvoyNode, EdgeEnvoyType
    from envoyage.xds import types as T

    p = ControlPlane(make_config(workdir, topology="a"))
    p.variants.add(False)  # a state-of-the-world home Envoy is connected
    try:
        p.add_service(dict(BASE, name="good", domains=["good.test"]))
        acked = p.cache.get_snapshot("edge").version(T.CLUSTER)
        p.add_service(dict(BASE, name="bad", domains=["bad.test"]))
        rejected = p.cache.get_snapshot("edge").version(T.CLUSTER)
        report = [
            EdgeEnvoyNode(
                node_id="vps",
                connected=True,
                types={"cds": EdgeEnvoyType(acked_version=acked, nacked_version=rejected, error="bad cluster svc_bad")},
            )
        ]
        before = [EdgeEnvoyNode(node_id="vps", connected=True, types={"cds": EdgeEnvoyType(acked_version=acked)})]
        (event,) = verdict_events(before, report)
        assert event == ("edge:vps", T.CLUSTER, rejected, "bad cluster svc_bad", acked)
        p.on_envoy_verdict(*event[:4], key="edge", acked_version=event[4])
        (problem,) = p.get_service("bad")["problems"]
        assert "the VPS Envoy (edge:vps) rejected this service: bad cluster svc_bad" in problem
        assert "the LAN still serves it" in problem
        assert set(p.cache.get_snapshot("edge").get(T.CLUSTER)) == {"svc_good"}
        # the edge's verdict stays on the edge: home's own Envoy keeps serving the service
        assert {"svc_good", "svc_bad"} <= set(p.cache.get_snapshot("home").get(T.CLUSTER))
        assert p.get_service("good")["problems"] == []
        assert verdict_events(report, report) == []  # the same report twice is no new verdict
    finally:
        p.registry.close()


def test_vpn_only_never_admits_home_itself_or_its_docker_bridges(workdir):
    """Docker's bridges on home count before Docker discovery reports anything, and home's
    own addresses are refused unless loopback is listed."""
    from envoyage.hostnet import HostNetworks
    from envoyage.networks import DockerNetwork
    from envoyage.xds import types as T
    from envoyage.xds.translate import LAN_ACCESS_FILTER

    host = HostNetworks(
        default_lan=("192.168.1.0/24",),
        local_addresses=("127.0.0.1", "192.168.1.10", "172.17.0.1"),
        bridges=(DockerNetwork("docker0", "172.17.0.0/16", "172.17.0.1"),),
    )

    def rbac(lan):
        p = ControlPlane(make_config(workdir / lan[-1].replace("/", "_"), lan_cidrs=lan), host_networks=host)
        try:
            p.variants.add(False)
            p.add_service(dict(BASE, access="vpn-only"))
            route = p.cache.get_snapshot("home").get(T.ROUTE)["home_http"].message
            (vh,) = [v for v in route.virtual_hosts if v.name == "web"]
            return vh.routes[0].typed_per_filter_config[LAN_ACCESS_FILTER].value, p.status_report().problems
        finally:
            p.registry.close()

    config, problems = rbac(("192.168.1.0/24", "172.16.0.0/12"))
    assert any("172.16.0.0/12 overlaps the Docker network 'docker0'" in x for x in problems)
    assert b"192.168.1.10" in config and b"172.16.0.0" not in config  # home itself is excluded
    config, _ = rbac(("192.168.1.0/24", "127.0.0.0/8"))
    assert b"192.168.1.10" not in config  # loopback listed: local processes may use vpn-only
