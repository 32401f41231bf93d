"""The xDS state machine against request sequences as Envoy sends them.

Each test drives one ADS stream of our server directly (no network) with the
requests an Envoy sends, and checks the responses: versions per type, nonces per
stream, stale nonces ignored, NACK recorded and not re-pushed, delta diffs.
"""

from __future__ import annotations

import queue
import threading

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2
from google.rpc import status_pb2

from envoyage.model import ServiceState, parse_service
from envoyage.xds import types as T
from envoyage.xds.assemble import HomeSettings, assemble_home
from envoyage.xds.cache import SnapshotCache
from envoyage.xds.server import AdsServer
from envoyage.xds.status import BaseCallbacks, StatusTracker
from envoyage.xds.translate import TranslationCache

SETTINGS = HomeSettings("127.0.0.1", 8080, "/tmp/access.log")


class Snaps:
    """Both variants of a home snapshot: SotW streams read "home", delta streams "home/vhds"."""

    def __init__(self, assembly):
        self.sotw, self.delta = assembly.snapshot, assembly.delta_snapshot


def snapshot(*names, port=80):
    states = [
        ServiceState.of(
            parse_service({"name": n, "domains": [f"{n}.example.com"], "upstreams": [f"10.0.0.1:{port}"]}), i
        )
        for i, n in enumerate(names)
    ]
    return Snaps(assemble_home(states, SETTINGS, TranslationCache()))


class Cache(SnapshotCache):
    def set_snapshot(self, key, snaps):
        changed = super().set_snapshot(key, snaps.sotw)
        return super().set_snapshot(f"{key}/vhds", snaps.delta) or changed


def node(node_id="envoy-1"):
    md = struct_pb2.Struct()
    md.update({"role": "home"})
    return base_pb2.Node(id=node_id, cluster="envoyage-home", metadata=md)


class _Ctx:
    def __init__(self):
        self.cbs = []

    def add_callback(self, cb):
        self.cbs.append(cb)
        return True

    def abort(self, code, details):
        """As gRPC's: ends the RPC with a status, by raising."""
        self.aborted = (code, details)
        raise RuntimeError(f"aborted: {details}")


class Harness:
    """One stream: `send` a request, `recv` responses, `quiet` asserts nothing came."""

    def __init__(self, server: AdsServer, delta: bool):
        self.requests: queue.Queue = queue.Queue()
        self.responses: queue.Queue = queue.Queue()
        self.ctx = _Ctx()
        method = server.DeltaAggregatedResources if delta else server.StreamAggregatedResources
        gen = method(iter(self.requests.get, None), self.ctx)

        def pump():
            try:
                for resp in gen:
                    self.responses.put(resp)
            except RuntimeError as exc:
                if "aborted" not in str(exc):
                    raise
            self.responses.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def send(self, req):
        self.requests.put(req)

    def recv(self, timeout=2.0):
        resp = self.responses.get(timeout=timeout)
        assert resp is not None, "stream ended"
        return resp

    def quiet(self, wait=0.2):
        with pytest.raises(queue.Empty):
            self.responses.get(timeout=wait)

    def close(self):
        self.requests.put(None)


class Recorder(BaseCallbacks):
    def __init__(self):
        self.acks, self.nacks = [], []

    def on_ack(self, sid, node_id, type_url, version):
        self.acks.append((T.short(type_url), version))

    def on_nack(self, sid, node_id, type_url, version, message):
        self.nacks.append((T.short(type_url), version, message))


@pytest.fixture
def env():
    cache = Cache()
    rec = Recorder()
    tracker = StatusTracker()
    server = AdsServer(cache, callbacks=[rec, tracker])
    return cache, server, rec, tracker


def _finish(r, with_node, error):
    """Add the node (first request of a stream) and Envoy's NACK detail."""
    if with_node:
        r.node.CopyFrom(node())
    if error:
        r.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return r


def req(type_url, version="", nonce="", names=(), error=None, with_node=False):
    r = discovery_pb2.DiscoveryRequest(
        type_url=type_url, version_info=version, response_nonce=nonce, resource_names=list(names)
    )
    return _finish(r, with_node, error)


def names_of(resp):
    cls = T.MESSAGE_CLASSES[resp.type_url]
    out = []
    for a in resp.resources:
        m = cls.FromString(a.value)
        out.append(m.cluster_name if resp.type_url == T.ENDPOINT else m.name)
    return sorted(out)


# ---------------------------------------------------------------- state of the world


def test_sotw_initial_ack_and_push(env):
    cache, server, rec, tracker = env
    cache.set_snapshot("home", snapshot("a"))
    h = Harness(server, delta=False)
    h.send(req(T.CLUSTER, with_node=True))
    r1 = h.recv()
    assert r1.type_url == T.CLUSTER and names_of(r1) == ["svc_a"] and r1.nonce
    v1 = r1.version_info
    h.send(req(T.CLUSTER, version=v1, nonce=r1.nonce))  # ACK
    h.quiet()
    assert rec.acks == [("cds", v1)]
    cache.set_snapshot("home", snapshot("a", "b"))
    r2 = h.recv()
    assert names_of(r2) == ["svc_a", "svc_b"] and r2.version_info != v1 and r2.nonce != r1.nonce
    st = tracker.snapshot()[0]
    assert st.node_id == "envoy-1" and st.types["cds"].last_sent_version == r2.version_info
    h.close()


def test_sotw_stale_nonce_ignored(env):
    cache, server, rec, _ = env
    cache.set_snapshot("home", snapshot("a"))
    h = Harness(server, delta=False)
    h.send(req(T.CLUSTER, with_node=True))
    r1 = h.recv()
    h.send(req(T.CLUSTER, version=r1.version_info, nonce=r1.nonce))
    cache.set_snapshot("home", snapshot("a", "b"))
    r2 = h.recv()
    # A request crossing r2 in flight still names r1's nonce: stale, no ACK, no reply.
    h.send(req(T.CLUSTER, version=r1.version_info, nonce=r1.nonce, error="late"))
    h.quiet()
    assert rec.nacks == []
    h.send(req(T.CLUSTER, version=r2.version_info, nonce=r2.nonce))
    h.quiet()
    assert rec.acks[-1] == ("cds", r2.version_info)


def test_sotw_nack_recorded_not_repushed_then_next_snapshot_sent(env):
    cache, server, rec, tracker = env
    cache.set_snapshot("home", snapshot("a"))
    h = Harness(server, delta=False)
    h.send(req(T.ROUTE, names=["home_http"], with_node=True))
    r1 = h.recv()
    h.send(req(T.ROUTE, version=r1.version_info, nonce=r1.nonce, names=["home_http"]))
    cache.set_snapshot("home", snapshot("a", "b"))
    r2 = h.recv()
    # NACK: previous version, r2's nonce, error_detail
    for _ in range(3):  # Envoy may repeat its request; never a re-push loop
        h.send(req(T.ROUTE, version=r1.version_info, nonce=r2.nonce, names=["home_http"], error="bad regex"))
    h.quiet(0.5)
    assert rec.nacks == [("rds", r2.version_info, "bad regex")]
    st = tracker.snapshot()[0].types["rds"]
    assert st.last_nack_message == "bad regex" and st.last_acked_version == r1.version_info
    cache.set_snapshot("home", snapshot("a", "b", "c"))
    r3 = h.recv()
    assert r3.version_info not in (r1.version_info, r2.version_info)


def test_sotw_named_subscription_and_new_names_force_reply(env):
    cache, server, _, _ = env
    cache.set_snapshot("home", snapshot("a", "b"))
    h = Harness(server, delta=False)
    h.send(req(T.ENDPOINT, names=["svc_a"], with_node=True))
    r1 = h.recv()
    assert names_of(r1) == ["svc_a"]
    # the same version, but a new name: Envoy is warming a cluster and needs it
    h.send(req(T.ENDPOINT, version=r1.version_info, nonce=r1.nonce, names=["svc_a", "svc_b"]))
    r2 = h.recv()
    assert names_of(r2) == ["svc_a", "svc_b"] and r2.version_info == r1.version_info


def test_sotw_reconnect_with_current_version_gets_nothing(env):
    cache, server, _, _ = env
    snap = snapshot("a")
    cache.set_snapshot("home", snap)
    h = Harness(server, delta=False)
    h.send(req(T.CLUSTER, version=snap.sotw.version(T.CLUSTER), with_node=True))
    h.quiet()


def test_sotw_first_request_needs_node(env):
    _, server, _, _ = env
    h = Harness(server, delta=False)
    h.send(req(T.CLUSTER))
    assert h.responses.get(timeout=2) is None  # stream closed
    assert h.ctx.aborted[1] == "the first request names no node id"


@pytest.mark.parametrize(
    "node_id, meta_bytes, problem",
    [
        ("x" * 2 * 1024 * 1024, 0, "node id of 2097152 characters (at most 256)"),
        ("ok", 64 * 1024, "node metadata of"),
    ],
)
def test_oversized_nodes_are_refused_and_leave_no_trace(env, node_id, meta_bytes, problem):
    _, server, _, tracker = env
    h = Harness(server, delta=False)
    r = req(T.CLUSTER)
    r.node.id = node_id
    if meta_bytes:
        r.node.metadata.update({"blob": "y" * meta_bytes})
    h.send(r)
    assert h.responses.get(timeout=2) is None
    assert problem in h.ctx.aborted[1]
    assert tracker.snapshot() == []


def test_too_many_resource_names_close_the_stream(env):
    cache, server, _, _ = env
    cache.set_snapshot("home", snapshot("a"))
    h = Harness(server, delta=True)
    h.send(dreq(T.ENDPOINT, subscribe=[f"n{i}" for i in range(50_001)], with_node=True))
    assert h.responses.get(timeout=5) is None
    assert "more than 50000 resource names" in h.ctx.aborted[1]


def test_huge_nack_messages_are_kept_cut(env):
    cache, server, rec, tracker = env
    cache.set_snapshot("home", snapshot("a"))
    h = Harness(server, delta=False)
    h.send(req(T.CLUSTER, with_node=True))
    r1 = h.recv()
    h.send(req(T.CLUSTER, nonce=r1.nonce, error="z" * 4 * 1024 * 1024))
    h.quiet()
    message = tracker.snapshot()[0].types["cds"].last_nack_message
    assert len(message) < 1100 and message.endswith("(4194304 characters, cut)")


def test_disconnected_nodes_are_forgotten_after_a_while_and_bounded():
    now = [1000.0]
    tracker = StatusTracker(clock=lambda: now[0], forget_after=60, max_past=3)
    for i in range(10):
        tracker.on_stream_open(i, f"n{i}", "home", False)
        tracker.on_stream_closed(i, f"n{i}")
        now[0] += 1
    tracker.on_stream_open(99, "live", "home", False)
    assert [n.node_id for n in tracker.snapshot()] == ["live", "n7", "n8", "n9"]  # the 3 most recent
    now[0] += 61
    assert [n.node_id for n in tracker.snapshot()] == ["live"]


def test_sotw_push_order_cds_eds_lds_rds(env):
    cache, server, _, _ = env
    cache.set_snapshot("home", snapshot("a"))
    h = Harness(server, delta=False)
    first = True
    for t, names in ((T.ROUTE, ["home_http"]), (T.LISTENER, []), (T.ENDPOINT, ["svc_a"]), (T.CLUSTER, [])):
        h.send(req(t, names=names, with_node=first))
        first = False
        r = h.recv()
        h.send(req(t, version=r.version_info, nonce=r.nonce, names=names))
    h.quiet()
    cache.set_snapshot("home", snapshot("a", port=81))  # only endpoints change
    r = h.recv()
    assert r.type_url == T.ENDPOINT
    h.quiet()
    cache.set_snapshot("home", snapshot("a", "b", port=81))
    order = [h.recv().type_url for _ in range(2)]
    assert order == [T.CLUSTER, T.ROUTE]


# ---------------------------------------------------------------- delta


def dreq(type_url, subscribe=(), unsubscribe=(), nonce="", error=None, initial=None, with_node=False):
    r = discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url,
        resource_names_subscribe=list(subscribe),
        resource_names_unsubscribe=list(unsubscribe),
        response_nonce=nonce,
    )
    if initial:
        r.initial_resource_versions.update(initial)
    return _finish(r, with_node, error)


def dnames(resp):
    return sorted(r.name for r in resp.resources)


def test_delta_sends_only_changes_and_removals(env):
    cache, server, rec, _ = env
    cache.set_snapshot("home", snapshot("a", "b", "c"))
    h = Harness(server, delta=True)
    h.send(dreq(T.CLUSTER, with_node=True))
    r1 = h.recv()
    assert dnames(r1) == ["svc_a", "svc_b", "svc_c"] and not r1.removed_resources
    h.send(dreq(T.CLUSTER, nonce=r1.nonce))
    h.quiet()
    cache.set_snapshot("home", snapshot("a", "c", "d"))
    r2 = h.recv()
    assert dnames(r2) == ["svc_d"] and list(r2.removed_resources) == ["svc_b"]
    assert rec.acks == [("cds", r1.system_version_info)]


def test_delta_reconnect_with_initial_versions_sends_only_difference(env):
    cache, server, _, _ = env
    snap = snapshot("a", "b")
    cache.set_snapshot("home", snap)
    have = {n: r.version for n, r in snap.delta.get(T.CLUSTER).items()}
    have["svc_gone"] = "old"
    have["svc_a"] = "stale"
    h = Harness(server, delta=True)
    h.send(dreq(T.CLUSTER, initial=have, with_node=True))
    r = h.recv()
    assert dnames(r) == ["svc_a"] and list(r.removed_resources) == ["svc_gone"]


def test_delta_nack_not_repushed_and_envoy_still_lacks_the_rejected_response(env):
    """A NACK rejects the whole response: Envoy keeps what it had. The rejected version
    is never pushed again by itself; the next snapshot brings everything Envoy lacks
    (the control plane drops the service Envoy rejected from it: see verdicts)."""
    cache, server, rec, _ = env
    cache.set_snapshot("home", snapshot("a"))
    h = Harness(server, delta=True)
    h.send(dreq(T.VHOST, subscribe=["home_http"], with_node=True))
    r1 = h.recv()
    assert dnames(r1) == ["home_http/_default", "home_http/a"]
    h.send(dreq(T.VHOST, nonce=r1.nonce))
    cache.set_snapshot("home", snapshot("a", "b"))
    r2 = h.recv()
    assert dnames(r2) == ["home_http/b"]
    h.send(dreq(T.VHOST, nonce=r2.nonce, error="rejected"))
    h.quiet(0.5)
    assert rec.nacks == [("vhds", r2.system_version_info, "rejected")]
    cache.set_snapshot("home", snapshot("a", "b", "c"))
    assert dnames(h.recv()) == ["home_http/b", "home_http/c"]


def test_delta_nack_of_a_batch_resends_its_good_resources_with_the_next_snapshot(env):
    cache, server, _, _ = env
    cache.set_snapshot("home", snapshot("a"))
    h = Harness(server, delta=True)
    h.send(dreq(T.VHOST, subscribe=["home_http"], with_node=True))
    r1 = h.recv()
    h.send(dreq(T.VHOST, nonce=r1.nonce))
    cache.set_snapshot("home", snapshot("a", "b", "c", "d"))
    r2 = h.recv()
    assert dnames(r2) == ["home_http/b", "home_http/c", "home_http/d"]
    h.send(dreq(T.VHOST, nonce=r2.nonce, error="rejected"))
    h.quiet(0.3)
    cache.set_snapshot("home", snapshot("a", "b", "c"))  # d, the bad one, dropped
    r3 = h.recv()
    assert dnames(r3) == ["home_http/b", "home_http/c"] and list(r3.removed_resources) == []


def test_delta_vhds_wildcard_subscription_and_removal(env):
    cache, server, _, _ = env
    cache.set_snapshot("home", snapshot("a", "b"))
    h = Harness(server, delta=True)
    h.send(dreq(T.VHOST, with_node=True))  # Envoy's VHDS subscribes with an empty list: every host
    r1 = h.recv()
    assert dnames(r1) == ["home_http/_default", "home_http/a", "home_http/b"]
    h.send(dreq(T.VHOST, nonce=r1.nonce))
    cache.set_snapshot("home", snapshot("b"))
    r2 = h.recv()
    assert dnames(r2) == [] and list(r2.removed_resources) == ["home_http/a"]


def test_delta_named_subscribe_unsubscribe(env):
    cache, server, _, _ = env
    cache.set_snapshot("home", snapshot("a", "b"))
    h = Harness(server, delta=True)
    h.send(dreq(T.ENDPOINT, subscribe=["svc_a"], with_node=True))
    r1 = h.recv()
    assert dnames(r1) == ["svc_a"]
    h.send(dreq(T.ENDPOINT, nonce=r1.nonce))
    h.send(dreq(T.ENDPOINT, subscribe=["svc_b"], unsubscribe=["svc_a"]))
    r2 = h.recv()
    assert dnames(r2) == ["svc_b"] and not r2.removed_resources
    h.send(dreq(T.ENDPOINT, nonce=r2.nonce))
    cache.set_snapshot("home", snapshot("a", "b", port=99))  # both change; only b is subscribed
    assert dnames(h.recv()) == ["svc_b"]


def test_delta_subscription_change_in_stale_request_still_applies(env):
    cache, server, _, _ = env
    cache.set_snapshot("home", snapshot("a", "b"))
    h = Harness(server, delta=True)
    h.send(dreq(T.ENDPOINT, subscribe=["svc_a"], with_node=True))
    r1 = h.recv()
    h.send(dreq(T.ENDPOINT, nonce=r1.nonce))
    cache.set_snapshot("home", snapshot("a", "b", port=7))
    r2 = h.recv()
    h.send(dreq(T.ENDPOINT, subscribe=["svc_b"], nonce=r1.nonce))  # stale nonce
    h.send(dreq(T.ENDPOINT, nonce=r2.nonce))
    assert dnames(h.recv()) == ["svc_b"]


def test_delta_incremental_diff_from_parent_snapshot(env):
    """A stream that has a snapshot's parent gets exactly the parent->child difference."""
    cache, server, _, _ = env
    tc = TranslationCache()

    def build(names, prev=None):
        states = [
            ServiceState.of(
                parse_service({"name": n, "domains": [f"{n}.example.com"], "upstreams": ["10.0.0.1:80"]}), i
            )
            for i, n in enumerate(names)
        ]
        asm = assemble_home(
            states, SETTINGS, tc, previous=prev.sotw if prev else None, previous_delta=prev.delta if prev else None
        )
        return Snaps(asm)

    s1 = build([f"s{i}" for i in range(50)])
    cache.set_snapshot("home", s1)
    h = Harness(server, delta=True)
    h.send(dreq(T.CLUSTER, with_node=True))
    r1 = h.recv()
    assert len(r1.resources) == 50
    h.send(dreq(T.CLUSTER, nonce=r1.nonce))
    h.quiet()
    s2 = build([f"s{i}" for i in range(50) if i != 7] + ["new"], prev=s1)
    parent, fresh, removed = s2.delta.changes[T.CLUSTER]
    assert parent == s1.delta.version(T.CLUSTER) and fresh == {"svc_new"} and removed == {"svc_s7"}
    cache.set_snapshot("home", s2)
    r2 = h.recv()
    assert dnames(r2) == ["svc_new"] and list(r2.removed_resources) == ["svc_s7"]


# ---------------------------------------------------------------- no warming stall


def test_sotw_endpoints_of_a_cluster_no_longer_in_the_snapshot_are_answered_empty(env):
    """Envoy asks for the endpoints of a cluster that was removed right after it was sent:
    it gets an empty assignment, so the cluster finishes warming (no 15 s stall)."""
    from envoy.config.endpoint.v3 import endpoint_pb2

    cache, server, _, _ = env
    cache.set_snapshot("home", snapshot("a"))
    h = Harness(server, delta=False)
    h.send(req(T.ENDPOINT, names=["svc_a", "svc_gone"], with_node=True))
    r = h.recv()
    assert names_of(r) == ["svc_a", "svc_gone"]
    gone = [endpoint_pb2.ClusterLoadAssignment.FromString(a.value) for a in r.resources][1]
    assert gone.cluster_name == "svc_gone" and not gone.endpoints
    h.close()


def test_delta_endpoint_subscription_to_an_absent_cluster_is_answered_empty(env):
    cache, server, _, _ = env
    cache.set_snapshot("home", snapshot("a"))
    h = Harness(server, delta=True)
    h.send(dreq(T.ENDPOINT, subscribe=["svc_a"], with_node=True))
    r1 = h.recv()
    assert [r.name for r in r1.resources] == ["svc_a"]
    h.send(dreq(T.ENDPOINT, nonce=r1.nonce, subscribe=["svc_flash"]))
    r2 = h.recv()
    assert [r.name for r in r2.resources] == ["svc_flash"] and not r2.removed_resources
    # once the cluster really exists, its real endpoints follow
    h.send(dreq(T.ENDPOINT, nonce=r2.nonce))
    cache.set_snapshot("home", snapshot("a", "flash"))
    r3 = h.recv()
    assert [r.name for r in r3.resources] == ["svc_flash"] and r3.resources[0].version != "absent"
    h.close()
