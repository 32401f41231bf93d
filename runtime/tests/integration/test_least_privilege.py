"""Least privilege and files in topology A, from a local attacker's side (issue 20, items 8
and 9): an unprivileged user (nobody) on either node cannot use either Envoy's admin
interface (a 0600 Unix socket, no TCP port) nor read the access logs (0640), and a query
string (a share-link token) never reaches an access log. Namespace lab with real Envoys,
wireguard-go, the control plane and the edge; traffic only inside its namespaces."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support.helpers import Upstream, wait_for
from support.lab import Lab, add, running_lab

pytestmark = pytest.mark.integration

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture(scope="module")
def lab():
    with running_lab("eyP-", tag="eyp", net="10.241") as lab:
        yield lab


@pytest.fixture(scope="module")
def app():
    a = Upstream("echo", echo=True)
    yield a
    a.close()


def as_nobody(lab: Lab, code: str, ns: str | None = None) -> subprocess.CompletedProcess:
    argv = (["ip", "netns", "exec", lab.ns[ns]] if ns else []) + NOBODY + [sys.executable, "-c", code]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def opened_up(path: Path) -> list[tuple[Path, int]]:
    """Let every user through the directories above `path` (the lab's own), so that only
    the mode of `path` itself can stop another user; returns what to restore."""
    changed = []
    for d in reversed(path.parents):
        if str(d).startswith("/tmp/") or d == Path("/tmp"):
            mode = stat.S_IMODE(d.stat().st_mode)
            if mode & 0o005 != 0o005:
                changed.append((d, mode))
                os.chmod(d, mode | 0o005)
    return changed


def restore(changed: list[tuple[Path, int]]) -> None:
    for d, mode in changed:
        os.chmod(d, mode)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


@pytest.mark.parametrize("which", ["home", "edge"])
def test_an_envoy_admin_interface_is_a_0600_socket_another_user_cannot_connect_to(lab, which):
    sock = lab.home_admin_socket if which == "home" else lab.edge_admin_socket
    admin = lab.home_admin if which == "home" else lab.edge_admin
    st = sock.stat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    assert admin("/ready") == "LIVE"  # Envoy's own user (root in the lab) uses it
    changed = opened_up(sock)
    try:
        probe = as_nobody(
            lab,
            "import socket; s = socket.socket(socket.AF_UNIX); "
            f"s.connect({str(sock)!r}); s.sendall(b'POST /quitquitquit HTTP/1.0\\r\\n\\r\\n'); "
            "print(s.recv(200))",
            ns="vps" if which == "edge" else None,
        )
    finally:
        restore(changed)
    assert probe.returncode != 0 and "PermissionError" in probe.stderr, probe.stdout + probe.stderr
    assert admin("/ready") == "LIVE"  # it did not quit


@pytest.mark.parametrize("which", ["home", "edge"])
def test_no_admin_port_on_loopback_where_any_user_could_reach_it(lab, which):
    ns = lab.ns["vps"] if which == "edge" else None
    pidfile = lab.dir / ("home-envoy.pid" if which == "home" else "edge.pid")
    pid = int(pidfile.read_text())
    out = subprocess.run(
        (["ip", "netns", "exec", ns] if ns else []) + ["ss", "-ltnpH"], capture_output=True, text=True, timeout=10
    ).stdout
    # the VPS Envoy is the edge's child: look for envoy processes in the listing
    envoys = [line for line in out.splitlines() if '"envoy"' in line and (which == "edge" or f"pid={pid}," in line)]
    loopback = [line for line in envoys if line.split()[3].startswith(("127.", "[::1]", "[::ffff:127."))]
    assert envoys and not loopback, out
    assert lab.edge_admin("/ready") == "LIVE" and lab.home_admin("/ready") == "LIVE"


def test_a_query_string_never_reaches_an_access_log_and_the_path_still_does(lab, app):
    add(lab, "echo", "echo.example.test", app.address)
    marker = f"/share-{uuid.uuid4().hex[:8]}"
    query = "_nxg_token=secret-" + uuid.uuid4().hex

    def served(where: str) -> bool:
        url = (
            f"http://{lab.addr('vps_public')}{marker}?{query}"
            if where == "inet"
            else f"http://{lab.addr('home_lan')}:{lab.http_port}{marker}?{query}"
        )
        out = lab.curl(where, url, "-H", "Host: echo.example.test")
        body, _, code = out.stdout.rpartition("\n")
        return code == "200" and query in body  # the app still gets its query

    wait_for(lambda: served("inet"), 15, what="the request through the VPS")
    assert served("lan")
    # both logs show the request, the path without its query (what CrowdSec reads)
    wait_for(
        lambda: (
            sum(x["path"] == marker for x in lines(lab.home_access_log)) >= 2
            and any(x["path"] == marker for x in lines(lab.edge_access_log))
        ),
        10,
        what="the requests in both access logs",
    )
    for log in (lab.home_access_log, lab.edge_access_log):
        text = log.read_text()
        assert "_nxg_token" not in text and "secret-" not in text, log


@pytest.mark.parametrize("which", ["home", "edge"])
def test_another_user_cannot_read_an_access_log(lab, app, which):
    log = lab.home_access_log if which == "home" else lab.edge_access_log
    add(lab, "echo", "echo.example.test", app.address)
    wait_for(
        lambda: lab.curl("inet", f"http://{lab.addr('vps_public')}/", "-H", "Host: echo.example.test").stdout.endswith(
            "200"
        ),
        15,
        what="a request through the VPS",
    )
    wait_for(log.exists, 10, what=f"{log}")
    assert stat.S_IMODE(log.stat().st_mode) == 0o640, oct(log.stat().st_mode)
    changed = opened_up(log)
    try:
        probe = as_nobody(lab, f"print(open({str(log)!r}).read()[:100])")
    finally:
        restore(changed)
    assert probe.returncode != 0 and "PermissionError" in probe.stderr, probe.stdout + probe.stderr
