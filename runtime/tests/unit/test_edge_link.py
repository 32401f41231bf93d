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
