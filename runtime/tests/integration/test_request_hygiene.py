"""Requests as a hostile client sends them, through the real topology A lab (namespaces,
WireGuard, the real control plane, edge and both Envoys): headers a client may not set,
paths written to slip past a route, and slow-loris and connection floods at the edge.
Traffic goes only to addresses inside the namespaces this module's lab creates.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import urllib.parse
import uuid

import pytest
from support.helpers import Upstream, wait_for
from support.lab import Lab, add, running_lab, through_tunnel_listener

pytestmark = pytest.mark.integration

# this lab's edge limits (given to the lab's processes through their environment): short
# enough for a quick test, the connection limit above the slow-loris count
HEADERS_TIMEOUT_S = 2
MAX_CONNECTIONS = 600
MAX_HEAP_MB = 256
LIMITS = {
    "ENVOYAGE_EDGE_REQUEST_HEADERS_TIMEOUT": f"{HEADERS_TIMEOUT_S}s",
    "ENVOYAGE_EDGE_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    "ENVOYAGE_EDGE_ENVOY_MAX_HEAP_MB": str(MAX_HEAP_MB),
}


@contextlib.contextmanager
def environment(values: dict):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def lab():
    with environment(LIMITS), running_lab("eyH-", tag="eyh", net="10.237", edge_health_interval="1s") as lab:
        yield lab


@pytest.fixture(scope="module")
def app(lab):
    a = Upstream("echo", echo=True)
    add(lab, "hyg", "hyg.example.test", a.address, "--no-health-check")
    wait_for(
        lambda: internet(lab, "hyg.example.test")[0] == 200 and lan(lab, "hyg.example.test")[0] == 200,
        timeout=30,
        what="the echo app on both paths",
    )
    yield a
    a.close()


def _curl(lab: Lab, where: str, url: str, *args: str) -> tuple[int, str, str]:
    """(status, body, Location) of one request; paths are sent as written (--path-as-is)."""
    # (this -w replaces lab.curl's: curl keeps the last one)
    out = lab.curl(where, url, "--path-as-is", *args, "-w", "\n%{http_code}\n%{redirect_url}")
    body, code, location = ("\n\n" + out.stdout).rsplit("\n", 2)
    return int(code or 0), body[2:], location


def internet(lab: Lab, host: str, path: str = "/", *args: str) -> tuple[int, str]:
    code, body, _ = _curl(lab, "inet", f"http://{lab.addr('vps_public')}{path}", "-H", f"Host: {host}", *args)
    return code, body


def lan(lab: Lab, host: str, path: str = "/", *args: str) -> tuple[int, str]:
    code, body, _ = _curl(
        lab, "lan", f"http://{lab.addr('home_lan')}:{lab.http_port}{path}", "-H", f"Host: {host}", *args
    )
    return code, body


PATHS = {"vps": internet, "lan": lan}


def seen_by_app(app: Upstream, marker: str) -> dict | None:
    return next((s for s in reversed(app.seen) if marker in s["headers"].get("x-marker", "")), None)


# what a client sends to pass for someone else, or to seem to come from somewhere else
SPOOFED = {
    "X-Forwarded-Host": "admin.example.test",
    "X-Forwarded-Port": "443",
    "X-Forwarded-Prefix": "/admin",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-For": "203.0.113.7",
    "Forwarded": "for=203.0.113.9;proto=https",
    "X-Real-IP": "203.0.113.8",
    "Client-IP": "203.0.113.10",
    "X-Client-IP": "203.0.113.11",
    "X-Cluster-Client-IP": "203.0.113.12",
    "True-Client-IP": "203.0.113.13",
    "CF-Connecting-IP": "203.0.113.14",
    "Remote-User": "admin",
    "Remote-Groups": "admins",
    "Remote-Name": "Admin",
    "Remote-Email": "admin@example.test",
    "X-Remote-User": "admin",
    "X-Forwarded-User": "admin",
    "X-Forwarded-Email": "admin@example.test",
    "X-authentik-username": "akadmin",
    "X-Authentik-Groups": "authentik Admins",
    "X-Authentik-Jwt": "e30.e30.x",
    "X-Auth-Request-User": "admin",
    # every other X-Forwarded-* and Remote-* too (forward-auth providers read these)
    "X-Forwarded-Uri": "/admin",
    "X-Forwarded-Method": "GET",
    "X-Forwarded-Server": "admin.example.test",
    "X-Forwarded-Ssl": "on",
    "Remote-Admin": "true",
}


@pytest.mark.parametrize("path", PATHS)
def test_forwarding_and_identity_headers_from_the_client_never_reach_the_app(lab, app, path):
    marker = uuid.uuid4().hex
    args = [a for name, value in SPOOFED.items() for a in ("-H", f"{name}: {value}")]
    code, _ = PATHS[path](
        lab, "hyg.example.test", "/whoami", "-H", f"X-Marker: {marker}", "-H", "X-Custom-Thing: kept", *args
    )
    assert code == 200
    got = seen_by_app(app, marker)["headers"]
    leaked = sorted(name for name in SPOOFED if name.lower() in got and got[name.lower()] == SPOOFED[name])
    assert leaked == [], f"client headers reached the app on the {path} path: {leaked}"
    assert not [h for h in got if h.startswith(("x-authentik-", "x-auth-request-", "remote-"))]
    # our own hops set what the app may rely on: the client's real address and the scheme
    # it used (plain HTTP here), whatever the client claimed
    client = lab.addr("internet_client" if path == "vps" else "lan_client")
    assert got["x-forwarded-for"] == client and got["x-real-ip"] == client
    assert got["x-forwarded-proto"] == "http"
    assert got["x-custom-thing"] == "kept"  # other headers pass untouched


@pytest.mark.parametrize("path", PATHS)
def test_a_header_with_an_underscore_is_refused(lab, app, path):
    marker = uuid.uuid4().hex
    code, _ = PATHS[path](lab, "hyg.example.test", "/", "-H", f"X-Marker: {marker}", "-H", "X_Remote_User: admin")
    assert code == 400
    assert seen_by_app(app, marker) is None


DISGUISED = [
    "/app/../admin",
    "//admin",
    "/%2e%2e/admin",
    "/app/%2E%2E/admin",
    "/./admin",
    "/app%2F..%2Fadmin",
    "/app%2f..%2fadmin",
]


@pytest.mark.parametrize("path", PATHS)
def test_a_disguised_path_reaches_the_app_as_the_path_it_means(lab, app, path):
    """Every spelling of /admin is /admin for the route and for the app: a path with an
    escaped slash is redirected to /admin (the client asks again); the others are routed
    as /admin at once."""
    request = PATHS[path]
    for disguised in DISGUISED:
        marker = uuid.uuid4().hex
        where = "inet" if path == "vps" else "lan"
        base = f"http://{lab.addr('vps_public')}" if path == "vps" else f"http://{lab.addr('home_lan')}:{lab.http_port}"
        code, _, location = _curl(
            lab, where, base + disguised, "-H", "Host: hyg.example.test", "-H", f"X-Marker: {marker}"
        )
        if "%2f" in disguised.lower():
            assert code == 307 and urllib.parse.urlsplit(location).path == "/admin", (disguised, code, location)
            assert seen_by_app(app, marker) is None
            code, _ = request(
                lab, "hyg.example.test", urllib.parse.urlsplit(location).path, "-H", f"X-Marker: {marker}"
            )
        assert code == 200, disguised
        assert seen_by_app(app, marker)["path"] == "/admin", (path, disguised)


@pytest.mark.parametrize("path", PATHS)
def test_a_disguised_path_cannot_escape_a_services_path_prefix(lab, app, path):
    """A service routed only under /app: /admin on its domain has no route (404), and no
    spelling of /admin that starts with /app reaches it either."""
    add(lab, "gate", "gate.example.test", app.address, "--path", "/app", "--no-health-check")
    request = PATHS[path]
    wait_for(lambda: request(lab, "gate.example.test", "/app/x")[0] == 200, timeout=20, what="the /app service")
    assert request(lab, "gate.example.test", "/admin")[0] == 404
    for disguised in ("/app/../admin", "/app/%2e%2e/admin", "/app/./../admin"):
        marker = uuid.uuid4().hex
        code, _ = request(lab, "gate.example.test", disguised, "-H", f"X-Marker: {marker}")
        assert code == 404, (disguised, code)
        assert seen_by_app(app, marker) is None, disguised


def test_the_tunnel_listener_keeps_only_the_scheme_the_edge_set(lab, app):
    """Home's tunnel listener admits only the VPS (its tunnel address, a PROXY v2 header):
    the X-Forwarded-Proto the edge set from its own scheme is kept (the edge's HTTPS
    listener will say https); every other forwarding or identity header is still removed,
    so even the VPS cannot name a user."""
    marker = uuid.uuid4().hex
    client = "198.51.100.23"
    request = (
        f"GET /tunnel HTTP/1.1\r\nHost: hyg.example.test\r\nConnection: close\r\nX-Marker: {marker}\r\n"
        "X-Forwarded-Proto: https\r\nX-Remote-User: admin\r\nX-Forwarded-Host: admin.example.test\r\n"
        "X-Forwarded-Uri: /admin\r\nX-Forwarded-Protocol: https\r\n"
        "X-Authentik-Username: akadmin\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n"
    )
    assert through_tunnel_listener(lab, client, request.encode()) == "200"
    got = seen_by_app(app, marker)["headers"]
    assert got["x-forwarded-proto"] == "https"
    assert got["x-forwarded-for"] == client and got["x-real-ip"] == client
    assert "x-remote-user" not in got and "x-forwarded-host" not in got and "x-authentik-username" not in got
    assert "x-forwarded-uri" not in got and "x-forwarded-protocol" not in got


# -- the edge under hostile clients --------------------------------------------------------

SLOW_LORIS = r"""
import http.client, json, selectors, socket, sys, threading, time
target, host, count, seconds, cap = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
normal = []
stop = threading.Event()

def normal_client():
    while not stop.is_set():
        started = time.monotonic()
        try:
            c = http.client.HTTPConnection(target, 80, timeout=5)
            c.request("GET", "/normal", headers={"Host": host})
            r = c.getresponse(); r.read(); c.close()
            normal.append([r.status, time.monotonic() - started])
        except OSError as exc:
            normal.append([0, time.monotonic() - started])
        stop.wait(0.2)

sel = selectors.DefaultSelector()
opened = closed = 0
lifetimes = []
def open_one():
    global opened
    s = socket.create_connection((target, 80), timeout=5)
    s.setblocking(False)
    s.send(b"GET /slow HTTP/1.1\r\nHost: " + host.encode() + b"\r\n")  # never finished
    sel.register(s, selectors.EVENT_READ, [time.monotonic(), time.monotonic()])
    opened += 1

for _ in range(count):
    open_one()
t = threading.Thread(target=normal_client); t.start()
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    for key, _ in sel.select(timeout=0.2):
        s, (born, _last) = key.fileobj, key.data
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if not data:  # the edge closed it (after answering 408, or at once)
            sel.unregister(s); s.close(); closed += 1; lifetimes.append(time.monotonic() - born)
            if opened < cap:
                open_one()  # a real attacker comes back at once
    now = time.monotonic()
    for key in list(sel.get_map().values()):
        if now - key.data[1] >= 1.0:  # trickle: one more header line a second
            try:
                key.fileobj.send(b"X-Slow: %d\r\n" % int(now))
            except OSError:
                pass
            key.data[1] = now
still_open = len(sel.get_map())
stop.set(); t.join(10)
print(json.dumps({"opened": opened, "closed": closed, "still_open": still_open, "lifetimes": lifetimes,
                  "normal": normal}))
"""


def _envoy_pid(lab: Lab) -> int:
    edge = lab.pids["edge"]
    children = [
        p
        for task in os.listdir(f"/proc/{edge}/task")
        for p in open(f"/proc/{edge}/task/{task}/children").read().split()
    ]
    return next(int(p) for p in children if open(f"/proc/{p}/comm").read().strip() == "envoy")


def _rss_bytes(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_slow_loris_connections_are_cut_and_a_normal_client_keeps_getting_200s(lab, app):
    envoy = _envoy_pid(lab)
    rss = [_rss_bytes(envoy)]
    done = threading.Event()

    def sample():
        while not done.wait(0.25):
            rss.append(_rss_bytes(envoy))

    sampler = threading.Thread(target=sample)
    sampler.start()
    seconds = 12
    try:
        out = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                lab.ns["inet"],
                sys.executable,
                "-c",
                SLOW_LORIS,
                lab.addr("vps_public"),
                "hyg.example.test",
                "500",
                str(seconds),
                "3000",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
    finally:
        done.set()
        sampler.join()
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    normal = [code for code, _ in result["normal"]]
    ok = normal.count(200) / len(normal)
    lifetimes = result["lifetimes"]
    report = (
        f"slow-loris: {result['opened']} connections opened (500 at a time), {result['closed']} cut by the "
        f"edge, longest lived {max(lifetimes, default=0):.1f} s; normal client {normal.count(200)}/"
        f"{len(normal)} x 200; VPS Envoy RSS max {max(rss) / 2**20:.0f} MiB (limit {MAX_HEAP_MB} MiB)"
    )
    print(report)
    assert len(normal) >= 20, report
    assert ok >= 0.95, report
    # every slow connection is cut once the header timeout runs out (plus scheduling slack)
    assert result["closed"] >= 500 and max(lifetimes) < HEADERS_TIMEOUT_S + 3, report
    assert max(rss) < MAX_HEAP_MB * 2**20, report
    # the overload manager watches the heap against the configured limit
    assert "overload.envoy.resource_monitors.fixed_heap.pressure" in lab.edge_admin("/stats?filter=fixed_heap")
    # and the edge is fine afterwards
    assert internet(lab, "hyg.example.test")[0] == 200


OVER_LIMIT = r"""
import json, socket, sys, time
target, held, extra = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
holding = [socket.create_connection((target, 80), timeout=5) for _ in range(held)]
time.sleep(1.0)
refused = 0
for _ in range(extra):
    try:
        s = socket.create_connection((target, 80), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: hyg.example.test\r\n\r\n")
        s.settimeout(3)
        answer = s.recv(100)
        s.close()
    except OSError:
        answer = b""
    refused += answer == b""
alive = 0
for s in holding[:20]:  # the connections inside the limit still serve
    s.sendall(b"GET / HTTP/1.1\r\nHost: hyg.example.test\r\n\r\n")
    s.settimeout(5)
    alive += s.recv(100).startswith(b"HTTP/1.1 200")
for s in holding:
    s.close()
print(json.dumps({"refused": refused, "alive": alive}))
"""


def test_connections_over_the_listener_limit_are_closed_and_service_resumes(lab, app):
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            lab.ns["inet"],
            sys.executable,
            "-c",
            OVER_LIMIT,
            lab.addr("vps_public"),
            str(MAX_CONNECTIONS),
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result == {"refused": 20, "alive": 20}, result
    wait_for(lambda: internet(lab, "hyg.example.test")[0] == 200, timeout=10, what="service after the flood")
    # the VPS Envoy counts what it turned away
    stats = lab.edge_admin("/stats?filter=connection_limit")
    assert any(
        line.endswith(tuple(f": {n}" for n in range(20, 10_000)))
        for line in stats.splitlines()
        if "limited_connections" in line
    ), stats
