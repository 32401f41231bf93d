"""Stopping the control plane ends its control API cleanly: no error in any of its
threads, with a client connected and requests just served (the waitress loop used to be
closed from another thread and could fail with "Bad file descriptor")."""

from __future__ import annotations

import http.client
import socket
import threading

from support.helpers import make_config, rmtree, short_tmpdir

from envoyage.control.daemon import ControlDaemon


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self.path)


def test_stopping_the_control_plane_leaves_no_error_in_any_thread():
    errors: list[str] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(f"{args.thread.name}: {args.exc_type.__name__}: {args.exc_value}")
    try:
        for _ in range(10):
            root = short_tmpdir()
            daemon = ControlDaemon(make_config(root))
            daemon.start()
            idle = UnixHTTPConnection(str(daemon.config.socket_path))  # a client that stays connected
            idle.request("GET", "/v1/status")
            assert idle.getresponse().read()
            busy = UnixHTTPConnection(str(daemon.config.socket_path))
            busy.request("GET", "/v1/services")
            assert busy.getresponse().status == 200
            daemon.stop()
            idle.close()
            busy.close()
            names = {t.name for t in threading.enumerate()}
            assert "control-api" not in names, "the control API's thread is still running after stop()"
            assert not [n for n in names if n.startswith("waitress-")], f"request threads left: {sorted(names)}"
            assert not daemon.config.socket_path.exists()
            rmtree(root)
    finally:
        threading.excepthook = previous
    assert errors == []


def test_a_stuck_request_does_not_hold_the_stop_past_its_deadline():
    """A request that never finishes (a handler blocked on a dead disk, say) must not keep
    the control API's stop from returning: the daemon still has to close the registry
    within its own stop budget, or it is killed with the WAL unflushed."""
    from waitress.server import create_server

    from envoyage.control.api import ApiServer

    release = threading.Event()
    entered = threading.Event()

    def stuck_app(environ, start_response):
        entered.set()
        release.wait(60)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"late"]

    root = short_tmpdir()
    path = root / "api.sock"
    server = ApiServer(create_server(stuck_app, unix_socket=str(path), unix_socket_perms="600", threads=2))
    server.start()
    client = UnixHTTPConnection(str(path))
    try:
        client.request("GET", "/")
        assert entered.wait(10), "the request never reached the app"
        server.stop(timeout=1.0)
        assert not release.is_set()  # stop() came back while the request was still stuck
        refused = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            refused.settimeout(2)
            try:
                refused.connect(str(path))
                refused.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = refused.recv(100)
            except OSError:
                answer = b""
            assert answer == b"", "a new client still got in after stop()"
        finally:
            refused.close()
    finally:
        release.set()
        client.close()
        rmtree(root)
