"""The edge link: the link key and its handshake (against a real link server and a fake
home on loopback), and a resource set that crosses the link and becomes the same
snapshot on the edge."""

import os
import stat

import pytest

from envoyage.edge.daemon import ResourceSetError, snapshot_from
from envoyage.link import secret
from envoyage.link.server import resource_set, set_version
from envoyage.link.v1 import link_pb2
from envoyage.model import ServiceState, parse_service
from envoyage.module_utils import _linkkey as linkkey
from envoyage.xds import types as T
from envoyage.xds.assemble import assemble_edge
from envoyage.xds.translate import EdgeSettings, TranslationCache

EDGE = EdgeSettings(
    http_port=80,
    addresses=("0.0.0.0", "::"),
    access_log_path="/var/log/envoyage/access.log",
    home_tunnel_address="10.88.0.2",
    home_tunnel_port=18080,
)


def test_home_stores_only_a_key_derived_from_the_secret(tmp_path):
    s = secret.create(tmp_path / "edge.key", tmp_path / "edge.secret")
    stored = (tmp_path / "edge.key").read_text()
    assert s not in stored and stored.startswith("envoyage-link-key-v1$")
    for f in ("edge.key", "edge.secret"):
        assert stat.S_IMODE(os.stat(tmp_path / f).st_mode) == 0o600
    salt, key = secret.read_key(tmp_path / "edge.key")
    assert key == linkkey.derive(s, salt) and len(key) == 32 and len(salt) == 16
    # the edge's other keys (its cache's) come from the same secret with another info: not this key
    assert linkkey.derive(s, salt, info=b"envoyage edge cache v1") != key
    assert secret.read_secret(tmp_path / "edge.secret") == s


def test_a_key_file_open_to_others_missing_or_an_old_hash_is_refused_by_name(tmp_path):
    with pytest.raises(secret.SecretError, match="envoyage link-secret"):
        secret.read_key(tmp_path / "none")
    secret.create(tmp_path / "edge.key", tmp_path / "edge.secret")
    os.chmod(tmp_path / "edge.key", 0o644)
    with pytest.raises(secret.SecretError, match="readable by others"):
        secret.read_key(tmp_path / "edge.key")
    # what an older Envoyage left: the secret's hash, instead of a key or in its place
    old = tmp_path / "old"
    old.mkdir()
    (old / "edge-secret.hash").write_text("sha256$00ff$abcd\n")
    os.chmod(old / "edge-secret.hash", 0o600)
    for path in (old / "edge-link.key", old / "edge-secret.hash"):
        with pytest.raises(secret.SecretError, match="before edge-link version 2.*rerun the site playbook"):
            secret.read_key(path)


def test_proofs_are_bound_to_the_handshake_the_direction_and_the_edge():
    key, salt = os.urandom(32), os.urandom(16)
    ne, nh = linkkey.new_nonce(), linkkey.new_nonce()
    good = linkkey.proof(key, linkkey.EDGE, linkkey.HOME, "vps", salt, ne, nh)
    assert linkkey.verify(key, good, linkkey.EDGE, linkkey.HOME, "vps", salt, ne, nh)
    for changed in (
        (key, linkkey.EDGE, linkkey.HOME, "vps", salt, ne, linkkey.new_nonce()),  # another home nonce
        (key, linkkey.EDGE, linkkey.HOME, "vps", salt, linkkey.new_nonce(), nh),  # another edge nonce
        (key, linkkey.HOME, linkkey.EDGE, "vps", salt, ne, nh),  # reflected as home's proof
        (key, linkkey.EDGE, linkkey.HOME, "other", salt, ne, nh),  # another edge
        (os.urandom(32), linkkey.EDGE, linkkey.HOME, "vps", salt, ne, nh),
    ):  # another key
        assert not linkkey.verify(changed[0], good, *changed[1:])
    assert not linkkey.verify(key, b"", linkkey.EDGE, linkkey.HOME, "vps", salt, ne, nh)


def _edge_snapshot():
    states = [
        ServiceState.of(
            parse_service({"name": n, "domains": [f"{n}.example.com"], "upstreams": ["127.0.0.1:9000"], "access": a}),
            1.0,
        )
        for n, a in (("web", "public"), ("wiki", "public"), ("nas", "vpn-only"))
    ]
    return assemble_edge(states, TranslationCache(edge=EDGE)).snapshot


def test_a_resource_set_becomes_the_same_snapshot_on_the_edge():
    snap = _edge_snapshot()
    wire = link_pb2.ResourceSet.FromString(resource_set(snap).SerializeToString())
    assert wire.version == set_version(snap)
    on_edge = snapshot_from(wire, None)
    assert dict(on_edge.versions) == dict(snap.versions)
    assert set(on_edge.get(T.CLUSTER)) == {"svc_web", "svc_wiki"}  # vpn-only never reaches the edge


def test_a_resource_of_an_unknown_type_is_skipped_with_a_problem_and_the_rest_is_served():
    """Version skew: a newer home sends a type this edge does not know yet."""
    snap = _edge_snapshot()
    rs = resource_set(snap)
    page = "type.googleapis.com/envoyage.link.v2.OfflinePage"
    for name in ("web", "wiki", "nas", "shop"):
        rs.resources.add(type_url=page, name=name, body=b"\x0a\x03abc")
    problems: list[str] = []
    on_edge = snapshot_from(rs, None, problems)
    assert dict(on_edge.versions) == dict(snap.versions) and set(on_edge.get(T.CLUSTER)) == {"svc_web", "svc_wiki"}
    (problem,) = problems
    assert "skipped 4 resource(s) of a type this edge does not know" in problem and page in problem
    assert "'web'" in problem and "1 more" in problem and "upgrade the edge" in problem


def test_the_edge_applies_a_set_with_an_unknown_type_and_says_what_it_skipped(tmp_path):
    from envoyage.config import EdgeConfig
    from envoyage.edge.daemon import EdgeDaemon

    (tmp_path / "edge.secret").write_text("s3cret\n")
    os.chmod(tmp_path / "edge.secret", 0o600)
    daemon = EdgeDaemon(
        EdgeConfig(
            run_dir=tmp_path / "run",
            log_dir=tmp_path / "log",
            secret_file=tmp_path / "edge.secret",
            envoy_supervise=False,
        )
    )
    rs = resource_set(_edge_snapshot())
    rs.resources.add(type_url="type.googleapis.com/envoyage.link.v9.Future", name="x", body=b"")
    error, problems = daemon.apply(rs)
    assert error == "" and len(problems) == 1 and "envoyage.link.v9.Future" in problems[0]
    assert set(daemon.cache.get_snapshot("edge").get(T.CLUSTER)) == {"svc_web", "svc_wiki"}
    assert daemon.applied["problems"] == problems


def test_a_broken_resource_is_refused_by_name():
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
            (hcm,) = [
                f for f in lst.filter_chains[0].filters if f.name == "envoy.filters.network.http_connection_manager"
            ]
            hcm.typed_config.value = b"\xff\xff\xff\xff"
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
            _ = EdgeConfig(link_address=outside).link_target


def test_the_link_server_refuses_every_peer_but_the_vps_before_anything_else(tmp_path):
    import grpc

    from envoyage.link.server import peer_ip

    assert peer_ip("ipv4:10.88.0.1:53746") == "10.88.0.1" and peer_ip("ipv6:[fd00::1]:5") == "fd00::1"
    s = secret.create(tmp_path / "k", tmp_path / "s")
    for edge_ip, expect in (("127.0.0.9", grpc.StatusCode.UNAUTHENTICATED), ("127.0.0.1", None)):
        with LinkServer(tmp_path / "k", edge_ip=edge_ip) as home:
            client = edge_client(home.target, s)
            try:
                if expect is None:
                    wait(lambda: home.servicer.status().connected, "the edge to be admitted")
                else:
                    wait(lambda: home.servicer.status().refused == 1, "the refusal")
                    assert "only the VPS's tunnel address" in client.state["last_error"]
                    assert home.servicer.status().last_refused.why == "not the VPS's tunnel address"
            finally:
                client.stop.set()
                client.close()


# -- the handshake, against the real link server and a fake home ------------------------


def wait(cond, what, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class LinkServer:
    """A gRPC server on loopback with a servicer (the real EdgeLinkServer by default)."""

    def __init__(self, key_path=None, servicer=None, edge_ip=None, cache=None):
        from concurrent import futures

        import grpc

        from envoyage.link.server import EdgeLinkServer
        from envoyage.link.v1 import link_pb2_grpc
        from envoyage.xds.cache import SnapshotCache

        self.cache = cache or SnapshotCache()
        self.servicer = servicer or EdgeLinkServer(self.cache, "edge", key_path, edge_ip=edge_ip)
        self.server = grpc.server(futures.ThreadPoolExecutor(8))
        link_pb2_grpc.add_EdgeLinkServicer_to_server(self.servicer, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{self.port}"
        self.server.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if hasattr(self.servicer, "close"):
            self.servicer.close()
        self.server.stop(None)


def edge_client(target, edge_secret, applied=None):
    """The real edge's link client; `applied` records every resource set it takes."""
    import threading

    from envoyage.link.client import LinkClient

    sets = applied if applied is not None else []
    client = LinkClient(
        target, edge_secret, "vps", lambda rs: sets.append(rs) or "", link_pb2.EnvoyReport, threading.Event()
    )
    client.start()
    return client


def _snapshot_cache():
    from envoyage.xds.cache import SnapshotCache

    cache = SnapshotCache()
    cache.set_snapshot("edge", _edge_snapshot())
    return cache


class FakeHome:
    """What answers on home's tunnel address when it is not home: records every byte of
    every message and all metadata it gets; with `replay`, answers with a challenge it
    captured from the real home before (its nonce, salt and proof)."""

    def __init__(self, replay=None):
        import threading

        self.metadata: list = []
        self.messages: list = []
        self.replay = replay
        self.done = threading.Event()

    def Connect(self, request_iterator, context):  # noqa: N802
        import time

        self.metadata.append(list(context.invocation_metadata()))
        hello = next(request_iterator)
        self.messages.append(hello)
        if self.replay is not None:
            yield link_pb2.HomeMessage(challenge=self.replay)
        else:  # a guess: any nonce, any salt, a proof made with no key it could know
            yield link_pb2.HomeMessage(
                challenge=link_pb2.Challenge(nonce=os.urandom(32), salt=os.urandom(16), proof=os.urandom(32))
            )
        yield link_pb2.HomeMessage(welcome=link_pb2.Welcome(software_version="fake", link_version=2))
        yield link_pb2.HomeMessage(resources=resource_set(_edge_snapshot()))
        deadline = time.monotonic() + 3
        for msg in request_iterator:
            self.messages.append(msg)
            if time.monotonic() > deadline:
                break
        self.done.set()


def test_a_fake_home_learns_nothing_usable_and_the_edge_takes_nothing_from_it(tmp_path):
    edge_secret = secret.create(tmp_path / "k", tmp_path / "s")
    salt, key = secret.read_key(tmp_path / "k")
    for replay in (None, "captured"):
        captured = None
        if replay:  # a challenge the real home sent once (someone on the path recorded it)
            with LinkServer(tmp_path / "k", cache=_snapshot_cache()) as home:
                captured = _capture_challenge(home.target)
        fake = FakeHome(replay=captured)
        applied: list = []
        with LinkServer(servicer=fake) as server:
            client = edge_client(server.target, edge_secret, applied)
            try:
                wait(lambda: fake.done.is_set(), "the fake home's stream to end")
                wait(lambda: "refused the control plane" in client.state["last_error"], "the edge's refusal")
            finally:
                client.stop.set()
                client.close()
        assert applied == [] and not client.state["connected"]  # nothing taken, not even the welcome
        assert "home's proof of the link key does not verify" in client.state["last_error"]
        wire = b"".join(m.SerializeToString() for m in fake.messages) + repr(fake.metadata).encode()
        for needle in (edge_secret.encode(), key, key.hex().encode(), salt.hex().encode()):
            assert needle not in wire
        assert {m.WhichOneof("kind") for m in fake.messages} == {"hello", "refusal"}  # no proof, no report
        (hello,) = [m.hello for m in fake.messages if m.WhichOneof("kind") == "hello"]
        assert len(hello.nonce) == 32
        # nothing it got proves anything for another nonce, the nonce the real home would pick
        other = linkkey.new_nonce()
        for m in fake.messages:
            for blob in (m.SerializeToString(), m.refusal.reason.encode()):
                assert not linkkey.verify(key, blob, linkkey.EDGE, linkkey.HOME, "vps", salt, hello.nonce, other)
        assert [k for k, _v in fake.metadata[0] if k == "authorization"] == []


def _capture_challenge(target):
    """One handshake's challenge from `target`, as a recorder on the path sees it."""
    import grpc

    from envoyage.link import LINK_VERSION, VERSION_KEY
    from envoyage.link.v1 import link_pb2_grpc

    channel = grpc.insecure_channel(target)
    try:
        call = link_pb2_grpc.EdgeLinkStub(channel).Connect(
            iter([link_pb2.EdgeMessage(hello=link_pb2.Hello(edge_id="vps", nonce=os.urandom(32)))]),
            metadata=[(VERSION_KEY, str(LINK_VERSION))],
            timeout=5,
        )
        first = next(iter(call))
        call.cancel()
        return first.challenge
    finally:
        channel.close()


class Recorder:
    """A man in the middle on the link: relays between the real edge and the real home and
    keeps every message of both directions."""

    def __init__(self, home_target):
        self.home_target = home_target
        self.edge_messages: list = []
        self.home_messages: list = []

    def Connect(self, request_iterator, context):  # noqa: N802
        import grpc

        from envoyage.link.v1 import link_pb2_grpc

        channel = grpc.insecure_channel(self.home_target)

        def up():
            for msg in request_iterator:
                self.edge_messages.append(msg)
                yield msg

        try:
            for msg in link_pb2_grpc.EdgeLinkStub(channel).Connect(up(), metadata=context.invocation_metadata()):
                self.home_messages.append(msg)
                yield msg
        except grpc.RpcError:
            pass
        finally:
            channel.close()


def test_a_recorded_handshake_replayed_on_a_new_connection_gets_nothing(tmp_path):
    import grpc

    from envoyage.link import LINK_VERSION, VERSION_KEY
    from envoyage.link.v1 import link_pb2_grpc

    edge_secret = secret.create(tmp_path / "k", tmp_path / "s")
    with LinkServer(tmp_path / "k", cache=_snapshot_cache()) as home:
        recorder = Recorder(home.target)
        applied: list = []
        with LinkServer(servicer=recorder) as tap:
            client = edge_client(tap.target, edge_secret, applied)
            try:
                wait(lambda: applied, "the real edge, through the recorder, to get its set")
            finally:
                client.stop.set()
                client.close()
        hello, proof = (
            next(m for m in recorder.edge_messages if m.WhichOneof("kind") == k) for k in ("hello", "proof")
        )
        wait(lambda: not home.servicer.status().connected, "the recorded session to end")
        refused = home.servicer.status().refused
        # the recorded hello and proof, replayed as they were
        channel = grpc.insecure_channel(home.target)
        got, code, details = [], None, ""
        try:
            call = link_pb2_grpc.EdgeLinkStub(channel).Connect(
                iter([hello, proof, link_pb2.EdgeMessage(envoy=link_pb2.EnvoyReport())]),
                metadata=[(VERSION_KEY, str(LINK_VERSION))],
                timeout=5,
            )
            for msg in call:
                got.append(msg.WhichOneof("kind"))
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details()
        finally:
            channel.close()
        assert code == grpc.StatusCode.UNAUTHENTICATED and "wrong link key" in details
        assert got == ["challenge"]  # a fresh challenge, and nothing after the replayed proof
        st = home.servicer.status()
        assert st.refused == refused + 1 and not st.connected
        assert "could not prove the link key" in st.last_refused.why
        # and the recorded challenge does not fool the edge (its nonce is fresh every time)
        captured = next(m.challenge for m in recorder.home_messages if m.WhichOneof("kind") == "challenge")
    fake = FakeHome(replay=captured)
    applied = []
    with LinkServer(servicer=fake) as server:
        client = edge_client(server.target, edge_secret, applied)
        try:
            wait(lambda: "does not verify" in client.state["last_error"], "the edge to refuse the replay")
        finally:
            client.stop.set()
            client.close()
    assert applied == []


def test_a_wrong_key_on_either_side_is_refused_with_a_named_problem(tmp_path):
    """A wrong secret on the edge, or a key on home from another secret: the edge refuses
    home's proof, home's status says which edge refused it and why; nothing is served."""
    from support.helpers import make_config

    from envoyage.control.plane import ControlPlane
    from envoyage.xds.cache import SnapshotCache

    right = secret.create(tmp_path / "k", tmp_path / "s")
    other = secret.create(tmp_path / "k2", tmp_path / "s2")
    for key_file, edge_secret in ((tmp_path / "k", other), (tmp_path / "k2", right)):
        applied: list = []
        with LinkServer(key_file, cache=SnapshotCache()) as home:
            plane = ControlPlane(
                make_config(tmp_path / f"home-{key_file.name}", topology="a"),
                cache=home.cache,
                edge_link=home.servicer,
            )
            client = edge_client(home.target, edge_secret, applied)
            try:
                problem = wait(
                    lambda: [p for p in plane.problems() if "refused this control plane" in p],
                    "a named problem in home's status",
                )[0]
            finally:
                client.stop.set()
                client.close()
                plane.registry.close()
        assert "edge link: the edge 'vps' refused this control plane" in problem
        assert "not from the same `envoyage link-secret`" in problem and "rotate.yml" in problem
        assert applied == [] and "does not verify" in client.state["last_error"]
        assert right not in problem and other not in problem


def test_an_edge_that_cannot_prove_the_key_gets_nothing_and_home_says_why(tmp_path):
    import grpc

    from envoyage.link import LINK_VERSION, VERSION_KEY
    from envoyage.link.v1 import link_pb2_grpc

    secret.create(tmp_path / "k", tmp_path / "s")
    with LinkServer(tmp_path / "k", cache=_snapshot_cache()) as home:
        for answer in (
            link_pb2.EdgeMessage(proof=link_pb2.EdgeProof(proof=os.urandom(32))),
            link_pb2.EdgeMessage(envoy=link_pb2.EnvoyReport()),  # no proof at all
            None,
        ):  # only a hello
            messages = [link_pb2.EdgeMessage(hello=link_pb2.Hello(edge_id="vps", nonce=os.urandom(32)))]
            channel = grpc.insecure_channel(home.target)
            got, code = [], None
            try:
                call = link_pb2_grpc.EdgeLinkStub(channel).Connect(
                    iter(messages + ([answer] if answer is not None else [])),
                    metadata=[(VERSION_KEY, str(LINK_VERSION))],
                    timeout=15,
                )
                for msg in call:
                    got.append(msg.WhichOneof("kind"))
            except grpc.RpcError as exc:
                code = exc.code()
            finally:
                channel.close()
            assert got == ["challenge"] and code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.CANCELLED)
        assert home.servicer.status().envoy == [] and not home.servicer.status().connected
        # an older edge (no nonce, its secret as a bearer token) is told what is wrong
        channel = grpc.insecure_channel(home.target)
        try:
            call = link_pb2_grpc.EdgeLinkStub(channel).Connect(
                iter([link_pb2.EdgeMessage(hello=link_pb2.Hello(edge_id="vps"))]),
                metadata=[(VERSION_KEY, "1"), ("authorization", "Bearer old-secret")],
                timeout=5,
            )
            with pytest.raises(grpc.RpcError) as exc:
                list(call)
        finally:
            channel.close()
        assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "version 1" in exc.value.details()


def test_reconnecting_to_a_dead_control_plane_does_not_pile_up_threads():
    import socket
    import threading
    import time

    from envoyage.link.client import LinkClient

    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # held, not listening: refused, and no one else may take it
    port = dead.getsockname()[1]
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
        dead.close()
