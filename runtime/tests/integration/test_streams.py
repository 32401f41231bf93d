"""ADS streams are bounded and reclaimed: a stream limit that our own Envoys always get
past, a first-request deadline, and keepalive that drops peers that stopped answering."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from support.helpers import RUN_ID, Setup, http_get, make_config, wait_for

from envoyage.xds import types as T


class FakeClient:
    """A local process posing as an Envoy: opens an ADS stream and then does nothing."""

    def __init__(self, port: int, node_id: str | None):
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        self.requests = []
        if node_id:
            self.requests.append(discovery_pb2.DiscoveryRequest(type_url=T.CLUSTER, node=base_pb2.Node(id=node_id)))
        self._done = False

        def gen():
            yield from self.requests
            while not self._done:
                time.sleep(0.05)

        self.call = stub.StreamAggregatedResources(gen())

    def first(self, timeout=5):
        """The first response, or the gRPC error that ended the stream."""
        try:
            return next(iter(self.call))
        except grpc.RpcError as exc:
            return exc
        except StopIteration:
            return "closed"

    def close(self):
        self._done = True
        self.call.cancel()
        self.channel.close()


def status(setup):
    return json.loads(setup.cli("status", "--json", check=True).stdout)


@pytest.fixture
def limited(workdir, upstreams):
    config = make_config(workdir, xds_max_streams=4, xds_first_request_timeout=1.0)
    s = Setup(workdir, config, "sotw")  # Envoy home-1: one of ours
    up = upstreams("ours")
    s.cli("service", "add", "ours", "-d", "ours.test", "-u", up.address, check=True)
    wait_for(lambda: http_get(s.http_port, "ours.test") == (200, "ours"), 5, what="our service")
    clients: list[FakeClient] = []
    yield s, clients
    for c in clients:
        c.close()
    s.close()


def test_stream_limit_refuses_strangers_but_never_our_envoy(limited):
    s, clients = limited
    for i in range(3):  # with home-1, the limit of 4 is reached
        clients.append(FakeClient(s.daemon.xds_port, f"stranger-{i}"))
        assert not isinstance(clients[-1].first(), grpc.RpcError)
    extra = FakeClient(s.daemon.xds_port, "stranger-extra")
    clients.append(extra)
    err = extra.first()
    assert isinstance(err, grpc.RpcError) and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "admits 4 streams" in err.details()

    # our Envoy restarts (a node this control plane knows): it gets in, a stranger makes room
    s.envoy.stop()
    wait_for(lambda: status(s)["xds"]["streams"] == 3, 5, what="home-1's stream to close")
    clients.append(FakeClient(s.daemon.xds_port, "stranger-late"))  # takes home-1's slot
    assert not isinstance(clients[-1].first(), grpc.RpcError)
    s.envoy.start()
    wait_for(
        lambda: any(n["node_id"] == "home-1" and n["connected"] for n in status(s)["nodes"]),
        10,
        what="home-1 to be admitted at the limit",
    )
    st = status(s)
    assert st["xds"]["evicted"] >= 1 and st["xds"]["refused"] >= 1 and st["xds"]["streams"] <= 4
    up2 = s.plane.add_service(
        {
            "name": "after",
            "domains": ["after.test"],
            "upstreams": [json.loads(s.cli("services", "--json").stdout)[0]["upstreams"][0]],
        }
    )
    assert up2["problems"] == []
    wait_for(lambda: http_get(s.http_port, "after.test") == (200, "ours"), 5, what="changes to reach home-1")


def test_a_stream_that_names_no_node_is_closed(limited):
    s, clients = limited
    silent = FakeClient(s.daemon.xds_port, None)
    clients.append(silent)
    wait_for(lambda: status(s)["xds"]["streams"] == 2, 5, what="the silent stream to be counted")
    wait_for(lambda: status(s)["xds"]["streams"] == 1, 5, what="the silent stream to be closed after 1 s")


HUNG_CLIENT = textwrap.dedent("""
    import sys, time, grpc
    from envoy.config.core.v3 import base_pb2
    from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
    channel = grpc.insecure_channel(sys.argv[1])
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    def gen():
        yield discovery_pb2.DiscoveryRequest(type_url=sys.argv[3], node=base_pb2.Node(id=sys.argv[2]))
        while True:
            time.sleep(1)
    for resp in stub.StreamAggregatedResources(gen()):
        print("got", resp.version_info, flush=True)
""")


@pytest.fixture
def client_netns():
    """A network namespace of the test's own, linked to this one by a veth pair
    (10.251.77.1 here, 10.251.77.2 there); cutting its traffic makes a dead peer."""
    ns, host_if = f"eyk{RUN_ID[-6:]}", f"eyk{RUN_ID[-6:]}a"

    def sh(*cmd):
        subprocess.run(cmd, check=True, capture_output=True)

    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "addr", "add", "10.251.77.1/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", "10.251.77.2/30", "dev", "eth0")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)


def test_keepalive_drops_a_peer_whose_link_died(workdir, client_netns):
    # the server listens on the wildcard so that the namespace can reach it (the test's
    # own veth address); Envoy home-1 uses loopback
    config = make_config(workdir, xds_address="0.0.0.0", xds_keepalive=1.0, xds_keepalive_timeout=1.0)
    s = Setup(workdir, config, "sotw")
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            client_netns,
            sys.executable,
            "-c",
            HUNG_CLIENT,
            f"10.251.77.1:{s.daemon.xds_port}",
            "far-1",
            T.CLUSTER,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().startswith("got")
        wait_for(
            lambda: any(n["node_id"] == "far-1" and n["connected"] for n in status(s)["nodes"]),
            5,
            what="the client's stream",
        )
        # the link dies: nothing from the namespace arrives any more, no FIN, no RST
        subprocess.run(["ip", "netns", "exec", client_netns, "iptables", "-A", "OUTPUT", "-j", "DROP"], check=True)
        wait_for(
            lambda: not any(n["node_id"] == "far-1" and n["connected"] for n in status(s)["nodes"]),
            10,
            what="keepalive to drop the dead peer",
        )
        assert s.plane.ads.stream_count() == 1  # only home-1's
    finally:
        proc.kill()
        proc.wait()
        s.close()


GREEDY_CLIENT = textwrap.dedent("""
    import sys, grpc
    from envoy.config.core.v3 import base_pb2
    from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(grpc.insecure_channel(sys.argv[1]))
    req = discovery_pb2.DiscoveryRequest(type_url=sys.argv[2], node=base_pb2.Node(id="greedy"),
                                         resource_names=[f"n{i}" for i in range(2_000_000)])
    try:
        for resp in stub.StreamAggregatedResources(iter([req]), timeout=60):
            print("answered"); break
        else:
            print("closed")
    except grpc.RpcError as exc:
        print(exc.code())
""")


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_hostile_requests_are_refused_without_holding_memory(limited):
    s, clients = limited
    before = rss_mb()
    # a request naming 2,000,000 resources, from another process (its own memory is not ours)
    greedy = subprocess.run(
        [sys.executable, "-c", GREEDY_CLIENT, f"127.0.0.1:{s.daemon.xds_port}", T.ENDPOINT],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert greedy.stdout.strip() in ("StatusCode.RESOURCE_EXHAUSTED", "closed"), greedy.stdout + greedy.stderr
    long_id = FakeClient(s.daemon.xds_port, "x" * 2 * 1024 * 1024)
    clients.append(long_id)
    err = long_id.first()
    assert isinstance(err, grpc.RpcError) and err.code() in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    st = status(s)
    assert [n["node_id"] for n in st["nodes"]] == ["home-1"]
    assert [n["node_id"] for n in st["known_nodes"]] == ["home-1"]
    assert rss_mb() - before < 60, f"the server grew by {rss_mb() - before:.0f} MB"
