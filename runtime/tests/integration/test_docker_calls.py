"""What the control plane asks of dockerd's socket (root-equivalent: docs/security.md,
"Least privilege"), recorded by a proxy in front of the real socket: reads only
(version, containers, one container, one image, events, networks), and with docker.mesh
on exactly two writes, creating envoyage-mesh and attaching a labelled container to it."""

from __future__ import annotations

import re
import threading

from support.helpers import Setup, UnixProxy, http_get, make_config, wait_for

# method, path (API version prefix and query removed)
READS = [
    r"/version",
    r"/_ping",
    r"/containers/json",
    r"/containers/[0-9a-f]{64}/json",
    r"/images/sha256:[0-9a-f]{64}/json",
    r"/images/[0-9a-f]{64}/json",
    r"/events",
    r"/networks",
]
MESH_WRITES = [r"/networks/create", r"/networks/[0-9a-f]{64}/connect", r"/networks/envoyage-mesh/connect"]
REQUEST = re.compile(rb"(?:^|\r\n)(GET|HEAD|POST|PUT|DELETE|PATCH) (\S+) HTTP/1\.[01]\r\n")


class RecordingProxy(UnixProxy):
    """The cuttable proxy, also writing down every request line the client sends."""

    def __init__(self, target: str, path: str):
        super().__init__(target, path)
        self.requests: list[tuple[str, str]] = []
        self._seen = threading.Lock()

    def observer(self):
        """Per connection: each request line the client sends (one may span two chunks)."""
        tail = b""

        def seen(data: bytes) -> None:
            nonlocal tail
            for method, target in REQUEST.findall(tail + data):
                path = re.sub(r"^/v\d+\.\d+", "", target.decode().split("?", 1)[0])
                with self._seen:
                    self.requests.append((method.decode(), path))
            tail = data[-16:]

        return seen


def matches(path: str, patterns: list[str]) -> bool:
    return any(re.fullmatch(p, path) for p in patterns)


def run_discovery(workdir, docker, mesh: bool):
    proxy = RecordingProxy("/var/run/docker.sock", str(workdir / "docker.sock")).start()
    s = Setup(
        workdir,
        make_config(workdir, docker_enabled=True, docker_mesh=mesh, docker_host=f"unix://{workdir / 'docker.sock'}"),
        "sotw",
    )
    try:
        c = docker.run("ey-calls", {"envoyage.domain": "calls.test"})
        wait_for(
            lambda: http_get(s.http_port, "calls.test", timeout=3)[0] == 200,
            15,
            what="the labelled container to answer",
        )
        c.stop(timeout=5)
        wait_for(lambda: http_get(s.http_port, "calls.test", timeout=3)[0] == 404, 10, what="the route to go")
    finally:
        s.close()
        proxy.cut()
    return list(proxy.requests)


def test_without_the_mesh_the_control_plane_only_reads_from_dockerd(workdir, docker):
    seen = run_discovery(workdir, docker, mesh=False)
    assert seen, "no request went through the proxy"
    assert all(method == "GET" and matches(path, READS) for method, path in seen), seen
    paths = {p for _m, p in seen}
    assert {"/containers/json", "/events", "/networks"} <= paths, paths


def test_with_the_mesh_the_only_writes_create_and_attach_envoyage_mesh(workdir, docker):
    seen = run_discovery(workdir, docker, mesh=True)
    writes = [(m, p) for m, p in seen if m != "GET"]
    assert all(m == "GET" and matches(p, READS) for m, p in seen if m == "GET"), seen
    assert writes and all(m == "POST" and matches(p, MESH_WRITES) for m, p in writes), writes
