"""WebSockets and long responses through a real Envoy: no 15 s cut, per-service limits."""

from __future__ import annotations

import http.client
import http.server
import socket
import socketserver
import threading
import time

import pytest
from support.helpers import wait_for
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.sync.server import serve


class WebSocketEcho:
    """A real WebSocket app: echoes every message, prefixed."""

    def __init__(self):
        def echo(ws):
            for message in ws:
                ws.send(f"echo: {message}")

        self.server = serve(echo, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


class Streamer:
    """An app with slow answers: /stream?n=N sends a line every second (chunked, like
    server-sent events), /slow answers after 3 s, /pause sends a line, waits 3 s, sends another."""

    def __init__(self):
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                if self.path == "/slow":
                    time.sleep(3)
                    self._send_chunks([b"slow\n"], 0)
                elif self.path.startswith("/stream"):
                    n = int(self.path.partition("n=")[2] or 1)
                    self._send_chunks([f"data: {i}\n\n".encode() for i in range(n)], 1.0)
                elif self.path == "/pause":
                    self._send_chunks([b"first\n", b"second\n"], 3.0)

            def _send_chunks(self, chunks, gap):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for i, chunk in enumerate(chunks):
                        if i:
                            time.sleep(gap)
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # Envoy gave up on this request

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ws_app():
    app = WebSocketEcho()
    yield app
    app.close()


@pytest.fixture
def streamer():
    app = Streamer()
    yield app
    app.close()


def ws_connect(setup, host):
    sock = socket.create_connection(("127.0.0.1", setup.http_port), timeout=5)
    return connect(f"ws://{host}:{setup.http_port}/", sock=sock, open_timeout=5)


def get(setup, host, path, timeout=30.0):
    """(status, body, seconds) of one request through Envoy; body None if the stream was cut."""
    conn = http.client.HTTPConnection("127.0.0.1", setup.http_port, timeout=timeout)
    started = time.monotonic()
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        try:
            body = resp.read().decode()
        except (http.client.IncompleteRead, ConnectionError):
            body = None
        return resp.status, body, time.monotonic() - started
    finally:
        conn.close()


def test_websocket_echo_through_envoy_and_opt_out(sotw_setup, ws_app):
    s = sotw_setup
    s.cli("service", "add", "ws", "-d", "ws.example.test", "-u", f"127.0.0.1:{ws_app.port}", check=True)

    def echoes():
        with ws_connect(s, "ws.example.test") as ws:
            replies = []
            for text in ("hello", "über", "x" * 70_000):
                ws.send(text)
                replies.append(ws.recv(timeout=5))
            return replies == ["echo: hello", "echo: über", "echo: " + "x" * 70_000]

    wait_for(echoes, 10, what="a WebSocket conversation through Envoy")

    s.cli("service", "update", "ws", "--no-websocket", check=True)

    def refused():
        try:
            with ws_connect(s, "ws.example.test"):
                return False
        except InvalidStatus as exc:
            return exc.response.status_code >= 400

    wait_for(refused, 10, what="the WebSocket upgrade to be refused once the service opts out")


def test_a_response_streaming_longer_than_15s_is_not_cut(sotw_setup, streamer):
    s = sotw_setup
    s.cli(
        "service",
        "add",
        "events",
        "-d",
        "events.example.test",
        "-u",
        f"127.0.0.1:{streamer.port}",
        "--no-health-check",
        check=True,
    )
    wait_for(lambda: get(s, "events.example.test", "/stream?n=1")[0] == 200, 10, what="the streaming app")
    status, body, seconds = get(s, "events.example.test", "/stream?n=18", timeout=40)
    assert status == 200 and seconds > 16.5
    assert body == "".join(f"data: {i}\n\n" for i in range(18))


def test_per_service_request_and_idle_timeouts(sotw_setup, streamer):
    s = sotw_setup
    s.cli(
        "service",
        "add",
        "limits",
        "-d",
        "limits.example.test",
        "-u",
        f"127.0.0.1:{streamer.port}",
        "--no-health-check",
        check=True,
    )
    wait_for(lambda: get(s, "limits.example.test", "/stream?n=1")[0] == 200, 10, what="the app")
    # defaults: a slow answer and a pause mid-stream both get through
    assert get(s, "limits.example.test", "/slow")[:2] == (200, "slow\n")
    assert get(s, "limits.example.test", "/pause")[:2] == (200, "first\nsecond\n")

    s.cli("service", "update", "limits", "--request-timeout", "1s", check=True)
    wait_for(lambda: get(s, "limits.example.test", "/slow")[0] == 504, 10, what="a 504 after the request timeout")
    status, _body, seconds = get(s, "limits.example.test", "/slow")
    assert status == 504 and seconds < 2.9

    s.cli("service", "update", "limits", "--request-timeout", "off", "--idle-timeout", "1s", check=True)
    wait_for(lambda: get(s, "limits.example.test", "/pause")[1] is None, 10, what="the idle timeout to apply")
    status, body, seconds = get(s, "limits.example.test", "/pause")
    assert status == 200 and body is None and seconds < 2.9  # cut after 1 s of silence
