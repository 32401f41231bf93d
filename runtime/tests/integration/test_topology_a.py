"""Topology A end to end: network namespaces as hosts (scripts/topology_a.py), a real
WireGuard tunnel (wireguard-go), the real control plane and edge processes, and two
real Envoys. Traffic goes only to addresses inside the namespaces this test creates.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support.helpers import Upstream, free_port, wait_for
from support.lab import Lab, add, cli, proxy_v2, running_lab, status, through_tunnel_listener

from envoyage.link import LINK_VERSION, VERSION_KEY

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab():
    with running_lab("eyA-", tag="eyt", net="10.232", edge_health_interval="1s") as lab:
        yield lab


@pytest.fixture(scope="module")
def app():
    a = Upstream("echo", echo=True)
    yield a
    a.close()


def problems_of(lab: Lab, prefix: str) -> list[str]:
    return [p for p in status(lab)["problems"] if p.startswith(prefix)]


def wait_problem(lab: Lab, prefix: str, timeout: float = 15) -> str:
    return wait_for(lambda: problems_of(lab, prefix), timeout=timeout, what=f"a '{prefix}' problem in status")[0]


def internet(lab: Lab, host: str, path: str = "/", *args: str, v6: bool = False) -> tuple[int, str]:
    url = f"http://[{lab.vps_public6}]{path}" if v6 else f"http://{lab.addr('vps_public')}{path}"
    out = lab.curl("inet", url, "-g", "-H", f"Host: {host}", *args)
    body, _, code = out.stdout.rpartition("\n")
    return int(code or 0), body


def lan(lab: Lab, host: str, path: str = "/", *args: str) -> tuple[int, str]:
    out = lab.curl("lan", f"http://{lab.addr('home_lan')}:{lab.http_port}{path}", "-H", f"Host: {host}", *args)
    body, _, code = out.stdout.rpartition("\n")
    return int(code or 0), body


def log_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def served_through_vps(lab: Lab, host: str, path: str = "/", timeout: float = 15) -> str:
    def ok():
        code, body = internet(lab, host, path)
        return body if code == 200 else None

    return wait_for(ok, timeout=timeout, what=f"{host} to answer through the VPS")


def test_the_internet_client_is_served_through_the_tunnel_with_its_real_address(lab, app):
    add(lab, "echo", "echo.example.test", app.address)
    body = json.loads(served_through_vps(lab, "echo.example.test"))
    client = lab.addr("internet_client")
    assert body["x_real_ip"] == client and body["x_forwarded_for"] == client
    # IPv6 too
    code, text = internet(lab, "echo.example.test", v6=True)
    assert code == 200
    assert json.loads(text)["x_real_ip"] == lab.v6_prefix + "2"
    # headers the client sends to claim another address are replaced, not passed on
    code, text = internet(
        lab,
        "echo.example.test",
        "/",
        "-H",
        "X-Forwarded-For: 203.0.113.7",
        "-H",
        "X-Real-IP: 203.0.113.8",
        "-H",
        "Forwarded: for=203.0.113.9",
    )
    assert code == 200
    seen = json.loads(text)
    assert seen["x_forwarded_for"] == client and seen["x_real_ip"] == client and seen["forwarded"] is None
    # the home Envoy's access log (tunnel listener) names the internet client
    marker = f"/real-ip-{uuid.uuid4().hex[:8]}"
    assert internet(lab, "echo.example.test", marker)[0] == 200
    line = wait_for(
        lambda: next((e for e in log_lines(lab.home_access_log) if e["path"] == marker), None),
        timeout=10,
        what="the request in the home access log",
    )
    assert line["listener"] == "home_tunnel" and line["client"] == client


def test_a_proxy_header_from_the_client_is_not_believed(lab, app):
    add(lab, "echo", "echo.example.test", app.address)
    served_through_vps(lab, "echo.example.test")
    # the client sends its own PROXY header to the VPS: it is not HTTP, so it is refused
    out = lab.curl(
        "inet", f"http://{lab.addr('vps_public')}/spoof", "-H", "Host: echo.example.test", "--haproxy-protocol"
    )
    assert not any(s["path"] == "/spoof" for s in app.seen), "a request with a client PROXY header reached the app"
    assert out.stdout.rpartition("\n")[2] in ("400", "000")
    # the home tunnel listener takes PROXY headers only from the VPS's tunnel address:
    # from home's own address it closes the connection without an answer
    header = proxy_v2("198.51.100.9", lab.plan["home"], 40000, lab.tunnel_port)
    with socket.create_connection((lab.plan["home"], lab.tunnel_port), timeout=5) as s:
        s.sendall(header + b"GET /not-from-edge HTTP/1.1\r\nHost: echo.example.test\r\n\r\n")
        try:
            answer = s.recv(4096)
        except ConnectionResetError:
            answer = b""
    assert answer == b""
    assert not any(s["path"] == "/not-from-edge" for s in app.seen)


def test_a_lan_request_stays_on_the_lan(lab, app):
    add(lab, "echo", "echo.example.test", app.address)
    served_through_vps(lab, "echo.example.test")
    tag = uuid.uuid4().hex[:8]
    code, text = lan(lab, "echo.example.test", f"/lan-{tag}")
    assert code == 200 and json.loads(text)["x_real_ip"] == lab.addr("lan_client")
    # a later request through the VPS: once it is in both logs, so would the LAN one be
    assert internet(lab, "echo.example.test", f"/inet-{tag}")[0] == 200
    wait_for(
        lambda: (
            any(e["path"] == f"/inet-{tag}" for e in log_lines(lab.edge_access_log))
            and any(e["path"] == f"/inet-{tag}" for e in log_lines(lab.home_access_log))
        ),
        timeout=20,
        what="the marker request in both access logs",
    )
    assert not any(e["path"] == f"/lan-{tag}" for e in log_lines(lab.edge_access_log))
    home = [e for e in log_lines(lab.home_access_log) if e["path"] == f"/lan-{tag}"]
    assert [e["listener"] for e in home] == ["home_http"]


def _proxied_status(lab: Lab, host: str, client: str) -> int:
    """What the home tunnel listener answers the VPS for `host`, with a PROXY v2 header
    naming `client` (sent from the VPS's namespace, as the VPS Envoy does)."""
    return int(
        through_tunnel_listener(lab, client, f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    )


def test_vpn_only_is_refused_from_the_internet_and_served_on_the_lan(lab, app):
    add(lab, "echo", "echo.example.test", app.address)
    add(lab, "private", "private.example.test", app.address, "--access", "vpn-only")
    code, text = wait_for(
        lambda: (lambda r: r if r[0] == 200 else None)(lan(lab, "private.example.test")),
        timeout=15,
        what="the vpn-only service on the LAN",
    )
    assert json.loads(text)["x_real_ip"] == lab.addr("lan_client")
    # the edge has no route for it at all
    code, text = internet(lab, "private.example.test")
    assert code == 404
    routes = lab.edge_admin("/config_dump?resource=dynamic_route_configs")
    assert "private.example.test" not in routes
    # the VPS itself, on the tunnel listener (with a PROXY header) or on the LAN
    # listener's tunnel address, is neither LAN nor VPN
    assert _proxied_status(lab, "private.example.test", "198.51.100.7") == 403
    assert _proxied_status(lab, "echo.example.test", "198.51.100.7") == 200  # a public one is served
    v1 = lab.curl(
        "vps", f"http://{lab.plan['home']}:{lab.tunnel_port}/", "-H", "Host: private.example.test", "--haproxy-protocol"
    )  # curl speaks PROXY v1 only: refused, the connection is closed
    assert v1.stdout.rpartition("\n")[2] == "000"
    # the LAN listener on home's tunnel address: dropped by the tunnel firewall (issue 20;
    # test_tunnel_firewall.py), and refused by vpn-only behind it (test_vpn_only_networks.py)
    direct = lab.curl(
        "vps", f"http://{lab.plan['home']}:{lab.http_port}/", "-H", "Host: private.example.test", timeout=3
    )
    assert direct.stdout.rpartition("\n")[2] == "000"
    cli(lab, "service", "rm", "private")


def test_a_new_labelled_container_appears_on_the_vps_path(lab, docker):
    name = f"eya-{uuid.uuid4().hex[:6]}"
    domain = f"{name}.example.test"
    docker.run(name, labels={"envoyage.domain": domain})
    assert served_through_vps(lab, domain, timeout=30)  # the sample app answers through the VPS
    assert lan(lab, domain)[0] == 200


def test_an_app_that_stops_makes_its_edge_cluster_unhealthy(lab, workdir):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    add(lab, "fragile", "fragile.example.test", f"127.0.0.1:{port}")
    served_through_vps(lab, "fragile.example.test")

    def health() -> str:
        for line in lab.edge_admin("/clusters").splitlines():
            if line.startswith("svc_fragile::") and "::health_flags::" in line:
                return line.rsplit("::", 1)[1]
        return ""

    wait_for(lambda: health() == "healthy", timeout=10, what="the edge cluster to be healthy")
    proc.kill()
    proc.wait()
    wait_for(lambda: "failed_active_hc" in health(), timeout=15, what="the edge cluster to turn unhealthy")
    cli(lab, "service", "rm", "fragile")


def test_tunnel_down_and_up_restores_service_without_restarts(lab, app):
    add(lab, "echo", "echo.example.test", app.address)
    served_through_vps(lab, "echo.example.test")
    pids = dict(lab.pids)
    lab.tunnel_down()
    try:
        wait_for(
            lambda: internet(lab, "echo.example.test")[0] != 200,
            timeout=15,
            what="the VPS path to fail with the tunnel down",
        )
        code, _ = lan(lab, "echo.example.test")
        assert code == 200, "the LAN path must keep serving while the tunnel is down"
        problem = wait_problem(lab, "tunnel:", timeout=10)
        assert "does not exist" in problem or "handshake" in problem
    finally:
        lab.tunnel_up()
    served_through_vps(lab, "echo.example.test", timeout=30)
    wait_for(lambda: status(lab)["edge"]["connected"], timeout=20, what="the edge link to reconnect")
    assert lab.pids == pids
    assert all(os.path.exists(f"/proc/{pid}") for pid in pids.values())


def test_status_shows_the_tunnel_the_link_and_the_edge_envoy(lab, app):
    add(lab, "echo", "echo.example.test", app.address)
    served_through_vps(lab, "echo.example.test")
    st = wait_for(
        lambda: (
            lambda s: (
                s
                if s["edge"]["in_sync"] and s["edge"]["rtt_ms"] is not None and s["tunnel"]["handshake_age"] is not None
                else None
            )
        )(status(lab)),
        timeout=15,
        what="the edge in sync, a round-trip time and a handshake",
    )
    assert st["topology"] == "a"
    assert st["tunnel"]["handshake_age"] is not None and st["tunnel"]["handshake_age"] < 180
    assert st["tunnel"]["rx_bytes"] > 0 and st["tunnel"]["endpoint"].startswith(lab.addr("vps_wan"))
    edge_envoy = st["edge"]["envoy"][0]
    assert edge_envoy["connected"] and set(edge_envoy["types"]) >= {"cds", "lds", "rds"}
    assert all(t["acked_version"] for t in edge_envoy["types"].values())
    assert st["problems"] == []
    text = cli(lab, "status").stdout
    assert "tunnel eyt-wgh: last handshake" in text and "edge vps: connected" in text and "in sync" in text


LINK_PROBE = r"""
import json, os, sys, grpc
from envoyage.link.v1 import link_pb2, link_pb2_grpc
target, metadata, nonce, proof = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] == "nonce", sys.argv[4]
channel = grpc.insecure_channel(target)
got, code, details = [], "OK", ""
messages = [link_pb2.EdgeMessage(hello=link_pb2.Hello(edge_id="vps", nonce=os.urandom(32) if nonce else b""))]
if proof == "random":
    messages.append(link_pb2.EdgeMessage(proof=link_pb2.EdgeProof(proof=os.urandom(32))))
elif proof == "report":
    messages.append(link_pb2.EdgeMessage(envoy=link_pb2.EnvoyReport()))
try:
    call = link_pb2_grpc.EdgeLinkStub(channel).Connect(iter(messages), metadata=metadata, timeout=15)
    for msg in call:
        got.append(msg.WhichOneof("kind"))
except grpc.RpcError as exc:
    code, details = exc.code().name, exc.details()
print(json.dumps({"code": code, "details": details, "got": got}))
"""


def _link_call(lab: Lab, metadata, ns: str | None = "vps", nonce: bool = True, proof: str = "random") -> dict:
    """An edge-link call with this metadata, a hello (with a nonce or not) and then
    `proof` ("random" bytes, a "report" instead, or "none"), from the VPS's namespace (its
    tunnel address) or, with ns=None, from home itself."""
    argv = [
        sys.executable,
        "-c",
        LINK_PROBE,
        f"{lab.plan['home']}:{lab.link_port}",
        json.dumps(metadata),
        "nonce" if nonce else "-",
        proof,
    ]
    if ns:
        argv = ["ip", "netns", "exec", lab.ns[ns]] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_an_edge_with_a_wrong_or_missing_secret_gets_nothing(lab):
    """No secret travels: a peer on the VPS's tunnel address that cannot prove the link key
    gets home's challenge and nothing else; even the secret itself as a bearer token (what
    an edge before link version 2 sent) opens nothing."""
    version = [VERSION_KEY, str(LINK_VERSION)]
    secret = (lab.vps_dir / "edge.secret").read_text().strip()
    before = status(lab)["edge"]["refused"]
    for metadata, proof in (
        ([version], "random"),
        ([version], "report"),
        ([version, ["authorization", f"Bearer {secret}"]], "random"),
    ):
        r = _link_call(lab, metadata, proof=proof)
        assert r["code"] == "UNAUTHENTICATED" and r["got"] == ["challenge"], (metadata, proof, r)
    r = _link_call(lab, [version], nonce=False)
    assert r["code"] == "UNAUTHENTICATED" and r["got"] == [] and "nonce" in r["details"]
    r = _link_call(lab, [[VERSION_KEY, "1"], ["authorization", f"Bearer {secret}"]])
    assert r["code"] == "FAILED_PRECONDITION" and r["got"] == []
    assert "version 1" in r["details"] and f"version {LINK_VERSION}" in r["details"]
    # nothing at all from anywhere but the VPS's tunnel address
    r = _link_call(lab, [version], ns=None)
    assert r["code"] == "UNAUTHENTICATED" and r["got"] == [] and "VPS's tunnel address" in r["details"]
    st = status(lab)["edge"]
    assert st["refused"] == before + 6
    assert "could not prove the link key" in st["last_refused"]["why"] or "tunnel address" in st["last_refused"]["why"]
    # the real edge is still connected and served
    assert st["connected"]
    salt_key = (lab.home_dir / "state" / "edge-link.key").read_text().strip().split("$")
    # home keeps the derived key only: the secret is in none of its files
    for path in lab.home_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert secret.encode() not in path.read_bytes(), f"the edge secret is in {path}"
    for name in ("control.log", "edge.log"):
        log = (lab.dir / name).read_text()
        assert secret not in log and salt_key[2] not in log


def test_a_dead_edge_and_a_wrong_vps_endpoint_are_named_and_home_keeps_serving(lab, app):
    add(lab, "echo", "echo.example.test", app.address)
    served_through_vps(lab, "echo.example.test")
    lab.stop("edge")
    try:
        problem = wait_problem(lab, "edge:", timeout=20)
        assert "no edge connected" in problem
        assert lan(lab, "echo.example.test")[0] == 200
    finally:
        lab.start_edge()
    served_through_vps(lab, "echo.example.test", timeout=30)
    # a wrong endpoint: home dials a port where no VPS listens
    lab.tunnel_down()
    try:
        lab.tunnel_up(vps_endpoint=f"{lab.addr('vps_wan')}:{lab.wg_port + 1}")
        problem = wait_problem(lab, "tunnel:", timeout=15)
        assert "no handshake" in problem
        assert lan(lab, "echo.example.test")[0] == 200
    finally:
        lab.tunnel_down()
        lab.tunnel_up()
    served_through_vps(lab, "echo.example.test", timeout=30)


def test_a_control_plane_started_before_the_tunnel_serves_the_link_once_it_is_up(lab, app):
    """At boot the tunnel may come up after the control plane: the link's address is not
    there yet, which is a named problem until it is, and then the edge connects."""
    add(lab, "echo", "echo.example.test", app.address)
    lab.tunnel_down()
    try:
        lab.stop("control")
        lab.start_control()
        problem = wait_problem(lab, "edge link:", timeout=10)
        assert "cannot listen on" in problem and "is the tunnel up?" in problem
        assert wait_for(lambda: lan(lab, "echo.example.test")[0] == 200, timeout=15, what="the LAN path")
    finally:
        lab.tunnel_up()
    wait_for(lambda: status(lab)["edge"]["connected"], timeout=20, what="the edge to connect")
    served_through_vps(lab, "echo.example.test", timeout=20)
    assert not problems_of(lab, "edge link:")
