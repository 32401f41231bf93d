"""What the edge may decide, in topology A's lab (scripts/topology_a.py: namespaces, a
real tunnel, the real control plane and edge processes, two real Envoys): the VPS Envoy's
verdicts, real or forged on the edge's xDS socket, take a service off the VPS only, never
off home's LAN; and only the edge's own user can reach that socket.
"""

from __future__ import annotations

import os
import queue
import stat
import subprocess
from pathlib import Path

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2
from support.helpers import Upstream, wait_for
from support.lab import Lab, add, cli, running_lab, status

from envoyage.xds import types as T

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab():
    with running_lab("eyL-", tag="eyl", net="10.239", edge_health_interval="1s") as lab:
        yield lab


@pytest.fixture(scope="module")
def app():
    a = Upstream("app")
    yield a
    a.close()


def internet(lab: Lab, host: str, path: str = "/") -> int:
    out = lab.curl("inet", f"http://{lab.addr('vps_public')}{path}", "-H", f"Host: {host}")
    return int(out.stdout.rpartition("\n")[2] or 0)


def lan(lab: Lab, host: str) -> int:
    out = lab.curl("lan", f"http://{lab.addr('home_lan')}:{lab.http_port}/", "-H", f"Host: {host}")
    return int(out.stdout.rpartition("\n")[2] or 0)


def problems_of(lab: Lab, name: str) -> list[str]:
    import json

    services = json.loads(cli(lab, "services", "--json").stdout)
    return next(s["problems"] for s in services if s["name"] == name)


def forge_nack(lab: Lab, socket_path: str, node_id: str, message: str) -> str:
    """Speak as an Envoy on the edge's xDS socket: take the clusters, NACK them."""
    channel = grpc.insecure_channel(f"unix:{socket_path}")
    node = base_pb2.Node(id=node_id, cluster="edge")
    node.metadata.fields["role"].string_value = "edge"
    outbox: queue.Queue = queue.Queue()
    outbox.put(discovery_pb2.DiscoveryRequest(node=node, type_url=T.CLUSTER))

    def send():
        while True:
            item = outbox.get()
            if item is None:
                return
            yield item

    try:
        stream = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(send(), timeout=20)
        first = next(stream)
        outbox.put(
            discovery_pb2.DiscoveryRequest(
                node=node,
                type_url=T.CLUSTER,
                version_info="",
                response_nonce=first.nonce,
                error_detail=status_pb2.Status(code=13, message=message),
            )
        )
        wait_for(lambda: home_heard_nack(lab, node_id), timeout=10, what="the edge to report the forged NACK")
        outbox.put(None)
        return first.version_info
    finally:
        channel.close()


def home_heard_nack(lab: Lab, node_id: str) -> bool:
    st = status(lab)["edge"]
    return any(n["node_id"] == node_id and n["types"].get("cds", {}).get("nacked_version") for n in st["envoy"])


def test_a_nack_reported_by_the_edge_takes_the_service_off_the_vps_only(lab, app):
    """A forged NACK (anything that reaches the edge's xDS socket could send one, as could
    a VPS Envoy that really rejects a service): the service leaves the edge's set, with a
    problem naming the edge, and home's LAN keeps serving it."""
    add(lab, "victim", "victim.example.test", app.address)
    wait_for(
        lambda: internet(lab, "victim.example.test") == 200 and lan(lab, "victim.example.test") == 200,
        timeout=20,
        what="victim on both paths",
    )
    socket_path = str(lab.vps_dir / "run" / "xds.sock")
    forge_nack(lab, socket_path, "forger", "forged: cluster svc_victim is bad")
    problem = wait_for(
        lambda: [p for p in problems_of(lab, "victim") if "rejected this service" in p],
        timeout=15,
        what="the verdict on victim",
    )[0]
    wait_for(lambda: internet(lab, "victim.example.test") == 404, timeout=15, what="victim to leave the VPS Envoy")
    # the LAN path keeps serving it
    assert [lan(lab, "victim.example.test") for _ in range(5)] == [200] * 5
    assert "the VPS Envoy (edge:forger)" in problem and "forged: cluster svc_victim is bad" in problem
    assert "the LAN still serves it" in problem
    # a changed service is tried again on the VPS
    cli(lab, "service", "update", "victim", "--path", "/v2")
    wait_for(
        lambda: internet(lab, "victim.example.test", "/v2") == 200, timeout=20, what="the changed service on the VPS"
    )


SOCKET_PROBE = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
    "try:\n"
    "    s.connect(sys.argv[1])\n"
    "except OSError as exc:\n"
    "    print(type(exc).__name__); sys.exit(3)\n"
    "print('connected')\n"
)


def connect_as(path: Path, *user: str) -> subprocess.CompletedProcess:
    argv = (["setpriv", *user] if user else []) + ["/usr/bin/python3", "-c", SOCKET_PROBE, str(path)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=20)


def test_only_the_edge_s_own_user_can_reach_its_xds_socket(lab):
    sock = lab.vps_dir / "run" / "xds.sock"
    st = os.stat(sock)
    # open the way down to the run directory, so only its mode and the socket's decide
    opened = [(d, stat.S_IMODE(os.stat(d).st_mode)) for d in (lab.dir, lab.vps_dir)]
    try:
        for d, mode in opened:
            os.chmod(d, mode | 0o011)
        edge_gid = str(st.st_gid)
        for user in (
            ["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"],
            # a member of the edge's group (it may read the edge's logs) is not its Envoy either
            ["--reuid", "nobody", "--regid", edge_gid, "--clear-groups"],
        ):
            out = connect_as(sock, *user)
            assert out.returncode == 3 and "PermissionError" in out.stdout, (user, out.stdout, out.stderr)
        assert connect_as(sock).stdout.strip() == "connected"  # the edge's own user (its Envoy)
    finally:
        for d, mode in opened:
            os.chmod(d, mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert stat.S_IMODE(os.stat(sock.parent).st_mode) & 0o007 == 0
    assert status(lab)["edge"]["connected"]
