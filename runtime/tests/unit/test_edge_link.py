"""The edge link's pure parts: the secret's hash, and a resource set that crosses the
link and becomes the same snapshot on the edge."""

import os
import stat

import pytest

from envoyage.edge.daemon import ResourceSetError, snapshot_from
from envoyage.link import secret
from envoyage.link.server import resource_set, set_version
from envoyage.link.v1 import link_pb2
from envoyage.model import ServiceState, parse_service
from envoyage.xds import types as T
from envoyage.xds.assemble import assemble_edge
from envoyage.xds.translate import EdgeSettings, TranslationCache

EDGE = EdgeSettings(http_port=80, addresses=("0.0.0.0", "::"), access_log_path="/var/log/envoyage/access.log",
                    home_tunnel_address="10.88.0.2", home_tunnel_port=18080)


def test_the_secret_is_stored_hashed_and_checked(tmp_path):
    s = secret.create(tmp_path / "edge.hash", tmp_path / "edge.secret")
    stored = (tmp_path / "edge.hash").read_text()
    assert s not in stored and stored.startswith("sha256$")
    for f in ("edge.hash", "edge.secret"):
        assert stat.S_IMODE(os.stat(tmp_path / f).st_mode) == 0o600
    assert secret.verify(s, secret.read_hash(tmp_path / "edge.hash"))
    assert not secret.verify(s + "x", stored) and not secret.verify("", stored)
    assert not secret.verify(s, "garbage")
    assert secret.read_secret(tmp_path / "edge.secret") == s


def test_a_hash_file_open_to_others_or_missing_is_refused(tmp_path):
    with pytest.raises(secret.SecretError, match="envoyage link-secret"):
        secret.read_hash(tmp_path / "none")
    secret.create(tmp_path / "edge.hash", tmp_path / "edge.secret")
    os.chmod(tmp_path / "edge.hash", 0o644)
    with pytest.raises(secret.SecretError, match="readable by others"):
        secret.read_hash(tmp_path / "edge.hash")


def _edge_snapshot():
    states = [ServiceState.of(parse_service({"name": n, "domains": [f"{n}.example.com"],
                                             "upstreams": ["127.0.0.1:9000"], "access": a}), 1.0)
              for n, a in (("web", "public"), ("wiki", "public"), ("nas", "vpn-only"))]
    return assemble_edge(states, TranslationCache(edge=EDGE)).snapshot


def test_a_resource_set_becomes_the_same_snapshot_on_the_edge():
    snap = _edge_snapshot()
    wire = link_pb2.ResourceSet.FromString(resource_set(snap).SerializeToString())
    assert wire.version == set_version(snap)
    on_edge = snapshot_from(wire, None)
    assert dict(on_edge.versions) == dict(snap.versions)
    assert set(on_edge.get(T.CLUSTER)) == {"svc_web", "svc_wiki"}  # vpn-only never reaches the edge


def test_an_unknown_or_broken_resource_is_refused_by_name():
    rs = link_pb2.ResourceSet(version="v1")
    rs.resources.add(type_url="type.googleapis.com/envoyage.link.v1.OfflinePage", name="page", body=b"")
    with pytest.raises(ResourceSetError, match="type this edge does not know"):
        snapshot_from(rs, None)
    rs = link_pb2.ResourceSet(version="v2")
    rs.resources.add(type_url=T.CLUSTER, name="svc_x", body=b"\xff\xff\xff")
    with pytest.raises(ResourceSetError, match="svc_x.*cannot be decoded"):
        snapshot_from(rs, None)


def test_a_resource_whose_name_differs_inside_is_refused():
    rs = resource_set(_edge_snapshot())
    rs.resources[0].name = "svc_other"
    with pytest.raises(ResourceSetError, match="is named"):
        snapshot_from(rs, None)


def test_a_listener_with_an_undecodable_connection_manager_is_refused_not_a_crash():
    from envoy.config.listener.v3 import listener_pb2

    from envoyage.xds.snapshot import InconsistentSnapshot

    snap = _edge_snapshot()
    rs = resource_set(snap)
    for r in rs.resources:
        if r.type_url == T.LISTENER:
            lst = listener_pb2.Listener.FromString(r.body)
            lst.filter_chains[0].filters[0].typed_config.value = b"\xff\xff\xff\xff"
            r.body = lst.SerializeToString()
    from envoyage.xds.cache import SnapshotCache

    cache = SnapshotCache()
    with pytest.raises(InconsistentSnapshot, match="cannot be decoded"):
        cache.set_snapshot("edge", snapshot_from(rs, snap))  # what the edge does with a set
    assert cache.get_snapshot("edge") is None


def test_the_edge_link_address_must_be_inside_the_tunnel():
    from envoyage.config import ConfigError, EdgeConfig

    assert EdgeConfig(link_address="10.88.0.2").link_target == "10.88.0.2:18443"
    for outside in ("203.0.113.5", "home.example.org"):
        with pytest.raises(ConfigError, match="not inside the tunnel prefix"):
            EdgeConfig(link_address=outside).link_target


def test_the_link_server_refuses_every_peer_but_the_vps_before_looking_at_the_secret(tmp_path):
    import grpc
    from concurrent import futures

    from envoyage.link import LINK_VERSION, VERSION_KEY
    from envoyage.link.server import EdgeLinkServer, peer_ip
    from envoyage.link.v1 import link_pb2_grpc
    from envoyage.xds.cache import SnapshotCache

    assert peer_ip("ipv4:10.88.0.1:53746") == "10.88.0.1" and peer_ip("ipv6:[fd00::1]:5") == "fd00::1"
    s = secret.create(tmp_path / "h", tmp_path / "s")
    for edge_ip, expect in (("127.0.0.9", grpc.StatusCode.UNAUTHENTICATED), ("127.0.0.1", None)):
        servicer = EdgeLinkServer(SnapshotCache(), "edge", tmp_path / "h", edge_ip=edge_ip)
        server = grpc.server(futures.ThreadPoolExecutor(4))
        link_pb2_grpc.add_EdgeLinkServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            call = link_pb2_grpc.EdgeLinkStub(channel).Connect(
                iter([link_pb2.EdgeMessage(hello=link_pb2.Hello(edge_id="vps"))]),
                metadata=[("authorization", f"Bearer {s}"), (VERSION_KEY, str(LINK_VERSION))], timeout=3)
            first = next(iter(call))
            assert expect is None and first.WhichOneof("kind") == "welcome"
            call.cancel()
        except grpc.RpcError as exc:
            assert exc.code() == expect and "only the VPS's tunnel address" in exc.details()
            assert servicer.status()["refused"] == 1
        finally:
            channel.close()
            servicer.close()
            server.stop(None)


def test_reconnecting_to_a_dead_control_plane_does_not_pile_up_threads():
    import socket
    import threading
    import time

    from envoyage.edge.daemon import LinkClient

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    stop = threading.Event()
    client = LinkClient(f"127.0.0.1:{port}", "not-a-real-secret", "vps", lambda rs: "", link_pb2.EnvoyReport, stop)
    client.start()
    try:
        time.sleep(1.0)
        before = threading.active_count()
        time.sleep(3.0)  # several more attempts (backoff 0.2 s doubling)
        assert threading.active_count() <= before + 1
        assert "UNAVAILABLE" in client.state["last_error"]
    finally:
        stop.set()
        client.close()
