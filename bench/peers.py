"""The systems we measure, each behind the same small interface.

Every system serves HTTP on `http_port`, routes `svc-<i>` (Host header) to one upstream,
and can `add(i)` one more route. The poller (bench.py) is the same for all.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import yaml
from support.helpers import ENVOYAGE, Envoy, envoy_command, free_port, wait_for  # noqa: E402

from envoyage.cli.client import ControlClient  # noqa: E402

GCP_XDS = Path(__file__).resolve().parents[2] / "shared" / "peers" / "go-control-plane" / "gcp-xds"


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds user+system) of a process."""
    rss = 0.0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / ticks


def _spawn(cmd, log: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True, **kw)


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def service(i: int, upstream_port: int) -> dict:
    # the same shape as gcp-xds: an EDS cluster + endpoint + virtual host, no health check
    return {
        "name": f"svc-{i}",
        "domains": [f"svc-{i}"],
        "upstreams": [f"127.0.0.1:{upstream_port}"],
        "health_check": "off",
    }


class _ServerAndEnvoy:
    """An xDS server process (`proc`) feeding one Envoy (`envoy`)."""

    proc: subprocess.Popen | None = None
    envoy: Envoy | None = None

    @property
    def server_pid(self) -> int:
        return self.proc.pid

    def stop(self):
        if self.envoy:
            self.envoy.stop()
        _stop(self.proc)


BENCH_SCOPE = "bench"  # discovery only sees the benchmark's own containers (envoyage.scope=bench)


class Envoyage(_ServerAndEnvoy):
    """Our control plane as a process (`envoyage control`) and one Envoy."""

    def __init__(
        self, workdir: Path, upstream_port: int, delta: bool, docker: bool = False, settings: dict | None = None
    ):
        self.name = f"envoyage ({'delta' if delta else 'sotw'})"
        self.workdir, self.upstream_port, self.delta = workdir, upstream_port, delta
        self.http_port = free_port()
        self.xds_port = free_port()
        self.socket = workdir / "run" / "control.sock"
        cfg = {
            "state_dir": str(workdir / "state"),
            "run_dir": str(workdir / "run"),
            "log_dir": str(workdir / "log"),
            "xds_port": self.xds_port,
            "home_http_address": "127.0.0.1",
            "home_http_port": self.http_port,
            "log_level": "warning",
            "docker_enabled": docker,
            "docker_scope": BENCH_SCOPE,
            **(settings or {}),
        }
        self.config = workdir / "control.yaml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.proc = None
        self.envoy = None

    def start(self):
        self.proc = _spawn([ENVOYAGE, "--config", str(self.config), "control"], self.workdir / "control.log")
        wait_for(lambda: self.socket.exists() and self.request("GET", "/status"), 30, what="control plane")
        self.envoy = Envoy(self.workdir, "bench-home", self.xds_port, delta=self.delta).start()
        return self

    def request(self, method: str, path: str, body=None):
        return ControlClient(str(self.socket), timeout=600).request(method, path, body)

    def add(self, i: int) -> None:
        self.request("POST", "/services", service(i, self.upstream_port))

    def add_many(self, first: int, count: int) -> None:
        self.request("POST", "/services", [service(i, self.upstream_port) for i in range(first, first + count)])

    def all_acked_at(self) -> float | None:
        """time.time() at which Envoy had ACKed the current version of every type, or None."""
        st = self.request("GET", "/status")
        for node in st["nodes"]:
            if node["node_id"] != "bench-home" or not node["connected"]:
                continue
            want, types = st["snapshots"][node["snapshot"]], node["types"]
            if all(types.get(t, {}).get("last_acked_version") == v for t, v in want.items()):
                return max(types[t]["last_acked_at"] for t in want)
        return None


class GcpXds(_ServerAndEnvoy):
    """The reference ADS server on go-control-plane (../shared/peers), one Envoy."""

    name = "gcp-xds (go-control-plane)"

    def __init__(self, workdir: Path, upstream_port: int, services: int, step: int):
        self.workdir, self.upstream_port = workdir, upstream_port
        self.http_port, self.xds_port = free_port(), free_port()
        self.services, self.step = services, step
        self.log = workdir / f"gcp-xds-{services}-{step}.log"
        self.proc = None
        self.envoy = None

    @staticmethod
    def available() -> bool:
        return GCP_XDS.exists() and os.access(GCP_XDS, os.X_OK)

    def start(self):
        self.proc = _spawn(
            [
                str(GCP_XDS),
                "-port",
                str(self.xds_port),
                "-services",
                str(self.services),
                "-step",
                str(self.step),
                "-upstream-port",
                str(self.upstream_port),
                "-listen-port",
                str(self.http_port),
                "-quiet",
            ],
            self.log,
        )
        time.sleep(0.3)
        self.envoy = Envoy(self.workdir, f"gcp-{self.services}-{self.step}", self.xds_port, delta=False).start()
        return self

    def bump(self) -> None:
        os.kill(self.proc.pid, signal.SIGUSR1)

    def all_acked_after_ms(self) -> float | None:
        """gcp-xds's own figure: ms from its snapshot being set until all types ACKed."""
        last = None
        for line in self.log.read_text().splitlines():
            if "ALL_ACKED" in line and "after=" in line:
                last = float(line.split("after=")[1].split("ms")[0])
        return last


class EnvoyFiles:
    """Envoy with file-based xDS and no control plane: the floor for any Envoy-based system."""

    name = "Envoy from files (no control plane)"

    def __init__(self, workdir: Path, upstream_port: int):
        self.dir = workdir / "envoy-files"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.upstream_port = upstream_port
        self.http_port, self.admin_port = free_port(), free_port()
        self.services: list[int] = []
        self.proc = None

    def _write(self, name: str, resources: list) -> None:
        tmp = self.dir / f".{name}.tmp"
        tmp.write_text(json.dumps({"resources": resources}))
        os.rename(tmp, self.dir / name)  # atomic: Envoy's watcher sees one complete file

    def _cds(self):
        return [
            {
                "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                "name": f"svc-{i}",
                "type": "STATIC",
                "connect_timeout": "2s",
                "load_assignment": {
                    "cluster_name": f"svc-{i}",
                    "endpoints": [
                        {
                            "lb_endpoints": [
                                {
                                    "endpoint": {
                                        "address": {
                                            "socket_address": {"address": "127.0.0.1", "port_value": self.upstream_port}
                                        }
                                    }
                                }
                            ]
                        }
                    ],
                },
            }
            for i in self.services
        ]

    def _rds(self):
        return [
            {
                "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                "name": "routes",
                "virtual_hosts": [
                    {
                        "name": f"svc-{i}",
                        "domains": [f"svc-{i}", f"svc-{i}:*"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": f"svc-{i}"}}],
                    }
                    for i in self.services
                ],
            }
        ]

    def start(self):
        d = str(self.dir)
        self._write("cds.json", self._cds())
        self._write("rds.json", self._rds())
        hcm = {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager",
            "stat_prefix": "files",
            "rds": {
                "route_config_name": "routes",
                "config_source": {
                    "path_config_source": {"path": f"{d}/rds.json", "watched_directory": {"path": d}},
                    "resource_api_version": "V3",
                },
            },
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                }
            ],
        }
        self._write(
            "lds.json",
            [
                {
                    "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
                    "name": "http",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": self.http_port}},
                    "filter_chains": [
                        {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
                    ],
                }
            ],
        )
        boot = {
            "node": {"id": "files", "cluster": "files"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}}},
            "dynamic_resources": {
                "cds_config": {
                    "path_config_source": {"path": f"{d}/cds.json", "watched_directory": {"path": d}},
                    "resource_api_version": "V3",
                },
                "lds_config": {
                    "path_config_source": {"path": f"{d}/lds.json", "watched_directory": {"path": d}},
                    "resource_api_version": "V3",
                },
            },
        }
        (self.dir / "bootstrap.json").write_text(json.dumps(boot))
        self.proc = _spawn(
            envoy_command(self.dir / "bootstrap.json", self.admin_port, drain=False),
            self.dir / "envoy.log",
        )
        wait_for(lambda: _http_ok(self.admin_port, "/ready"), 30, what="file-based Envoy")
        return self

    def add(self, i: int) -> None:
        self.services.append(i)
        self._write("cds.json", self._cds())  # clusters first, then the routes that use them
        self._write("rds.json", self._rds())

    def stop(self):
        _stop(self.proc)


class Caddy:
    """Caddy (Debian package) configured through its admin API `/load`."""

    name = "Caddy /load"

    def __init__(self, workdir: Path, upstream_port: int):
        self.dir = workdir / "caddy"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.upstream_port = upstream_port
        self.http_port, self.admin_port = free_port(), free_port()
        self.services: list[int] = []
        self.proc = None

    @staticmethod
    def available() -> bool:
        return shutil.which("caddy") is not None

    def config(self) -> dict:
        routes = [
            {
                "match": [{"host": [f"svc-{i}"]}],
                "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": f"127.0.0.1:{self.upstream_port}"}]}],
            }
            for i in self.services
        ]
        return {
            "admin": {"listen": f"127.0.0.1:{self.admin_port}"},
            "apps": {
                "http": {
                    "servers": {
                        "bench": {
                            "listen": [f"127.0.0.1:{self.http_port}"],
                            "routes": routes,
                            "automatic_https": {"disable": True},
                        }
                    }
                }
            },
        }

    def start(self):
        (self.dir / "caddy.json").write_text(json.dumps(self.config()))
        env = dict(os.environ, HOME=str(self.dir), XDG_DATA_HOME=str(self.dir), XDG_CONFIG_HOME=str(self.dir))
        self.proc = _spawn(["caddy", "run", "--config", str(self.dir / "caddy.json")], self.dir / "caddy.log", env=env)
        wait_for(lambda: _http_ok(self.admin_port, "/config/"), 30, what="caddy")
        return self

    def load(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=600)
        conn.request("POST", "/load", body=json.dumps(self.config()), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        conn.close()
        if resp.status != 200:
            raise RuntimeError(f"caddy /load: {resp.status}")

    def add(self, i: int) -> None:
        self.services.append(i)
        self.load()

    @property
    def server_pid(self) -> int:
        return self.proc.pid

    def stop(self):
        _stop(self.proc)


class Nginx:
    """nginx (Debian package): write the config, `nginx -s reload`."""

    name = "nginx reload"

    def __init__(self, workdir: Path, upstream_port: int):
        self.dir = workdir / "nginx"
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        self.upstream_port = upstream_port
        self.http_port = free_port()
        self.services: list[int] = []
        self.proc = None

    @staticmethod
    def available() -> bool:
        return shutil.which("nginx") is not None or os.path.exists("/usr/sbin/nginx")

    def _write(self):
        servers = "\n".join(
            f"  server {{ listen 127.0.0.1:{self.http_port}; server_name svc-{i}; "
            f"location / {{ proxy_pass http://127.0.0.1:{self.upstream_port}; }} }}"
            for i in self.services
        )
        d = self.dir
        text = (
            f"pid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\nworker_processes 1;\n"
            f"events {{ worker_connections 1024; }}\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {d}/tmp1; proxy_temp_path {d}/tmp2;\n"
            f"  fastcgi_temp_path {d}/tmp3; uwsgi_temp_path {d}/tmp4; scgi_temp_path {d}/tmp5;\n"
            f"  server_names_hash_max_size 65536; server_names_hash_bucket_size 128;\n"
            f"  server {{ listen 127.0.0.1:{self.http_port} default_server; return 404; }}\n{servers}\n}}\n"
        )
        tmp = d / ".nginx.conf.tmp"
        tmp.write_text(text)
        os.rename(tmp, d / "nginx.conf")

    def start(self):
        self._write()
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        self.exe = exe
        self.proc = _spawn(
            [exe, "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir), "-g", "daemon off;"], self.dir / "nginx.out"
        )
        wait_for(lambda: _http_status(self.http_port, "/", "none") == 404, 30, what="nginx")
        return self

    def add(self, i: int) -> None:
        self.services.append(i)
        self._write()
        os.kill(self.proc.pid, signal.SIGHUP)  # what `nginx -s reload` sends, without its process start-up

    def stop(self):
        _stop(self.proc)


def _http_status(port: int, path: str, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return 0
    finally:
        conn.close()


def _http_ok(port: int, path: str) -> bool:
    return _http_status(port, path, f"127.0.0.1:{port}") == 200
