"""Bad requests to the control API get a 4xx (or 507) naming the problem, never a 500,
and change nothing (issue 10, item 4). The review's inputs, verbatim."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from support.helpers import make_config, rmtree, short_tmpdir
from test_spine import _raw, _req

from envoyage.control.daemon import ControlDaemon


def answer(sock, method, path, body: bytes, ctype="application/json"):
    raw = _raw(sock, _req(method, path, body, ctype))
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(payload) if payload.startswith(b"{") else payload


@pytest.fixture
def api(workdir, config):
    d = ControlDaemon(config)
    d.start()
    yield d
    d.stop()


GOOD = json.dumps({"name": "ok", "domains": ["ok.test"], "upstreams": ["10.0.0.1:80"]}).encode()


@pytest.mark.parametrize(
    "body, ctype, status, needle",
    [
        (b"[" * 100000, "application/json", 400, "JSON nested too deeply"),
        (
            json.dumps(
                {
                    "name": "iv",
                    "domains": ["iv.test"],
                    "upstreams": ["10.0.0.1:80"],
                    "health_check": {"interval": int("9" * 400)},
                }
            ).encode(),
            "application/json",
            400,
            "not a duration",
        ),
        (b"name=x&domains=y", "application/x-www-form-urlencoded", 415, "Content-Type: application/json"),
        (
            b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
            415,
            "Content-Type: application/json",
        ),
        (GOOD, "text/plain", 415, "got text/plain"),
        (b"\xff\xfe{}", "application/json", 400, "not valid JSON"),
    ],
)
def test_bad_requests_get_a_named_4xx_and_change_nothing(api, body, ctype, status, needle):
    got, payload = answer(api.config.socket_path, "POST", "/v1/services", body, ctype)
    assert got == status and needle in payload["error"], payload
    assert api.plane.list_services() == []


def test_a_full_disk_is_507_with_nothing_half_written_and_recovers():
    root = short_tmpdir()
    state = root / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(state)], check=True)
    d = None
    try:
        d = ControlDaemon(make_config(root))
        d.start()
        sock = d.config.socket_path
        assert answer(sock, "POST", "/v1/services", GOOD)[0] == 201
        filler = state / "filler"
        with open(filler, "wb") as fh:  # fill the disk
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        batch = json.dumps(
            [
                {"name": f"b{i}", "domains": [f"b{i}.test"], "upstreams": ["10.0.0.1:80"], "path": "/" + "p" * 2000}
                for i in range(200)
            ]
        ).encode()
        status, payload = answer(sock, "POST", "/v1/services", batch)
        assert status == 507 and "disk holding the registry is full" in payload["error"], payload
        assert [s["name"] for s in d.plane.list_services()] == ["ok"]  # nothing half-written
        os.unlink(filler)
        assert answer(sock, "POST", "/v1/services", batch)[0] == 201
        assert len(d.plane.list_services()) == 201
    finally:
        if d is not None:
            d.stop()
        subprocess.run(["umount", str(state)], check=False)
        rmtree(root)


def test_slow_clients_hold_no_threads(api):
    """Hundreds of connections trickling a byte at a time: the API's threads stay bounded
    (waitress: one event loop, a fixed pool of request threads), and it keeps answering."""
    import socket
    import threading
    import time

    from envoyage.cli.client import ControlClient

    before = threading.active_count()
    conns = []
    for _ in range(90):  # below the connection limit, so a real request still gets in
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(api.config.socket_path))
        s.sendall(b"POST /v1/services HTTP/1.1\r\n")
        conns.append(s)
    try:
        peak = before
        for _ in range(3):
            for s in conns:
                s.sendall(b"X")  # one byte a second, never finishing the headers
            peak = max(peak, threading.active_count())
            time.sleep(1)
        assert peak <= before + 8, f"{peak - before} more threads for 90 slow clients"
        assert ControlClient(str(api.config.socket_path), timeout=5).get("/status")["services"]["total"] == 0
    finally:
        for s in conns:
            s.close()
