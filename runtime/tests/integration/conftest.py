"""Integration fixtures: our control plane (in-process or as a process) and real Envoys."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from support.helpers import ENVOYAGE, RUN_ID, TEST_LABEL, TEST_SCOPE, Setup, free_port, run_cli, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sotw", "delta"])
def setup(request, workdir, config):
    s = Setup(workdir, config, request.param)
    yield s
    s.close()


@pytest.fixture
def delta_setup(workdir, config):
    s = Setup(workdir, config, "delta")
    yield s
    s.close()


ROOT = Path(__file__).resolve().parents[3]
MESH = "envoyage-mesh"


@pytest.fixture(scope="session")
def docker_client():
    """dockerd running (started if needed) and the sample image built, once per run."""
    import docker

    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "sample-image.sh")], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    client = docker.from_env()
    _remove_leftovers(client)
    mesh_existed = bool(client.networks.list(names=[MESH]))
    yield client
    _cleanup(client, mesh_existed)
    client.close()


def _ours(labels) -> bool:
    return (labels or {}).get(TEST_LABEL) == RUN_ID


def _remove_leftovers(client):
    """Containers and networks of earlier test runs that died before cleaning up."""
    for c in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        owner = c.labels.get(TEST_LABEL, "")
        if not (owner.isdigit() and os.path.exists(f"/proc/{owner}")):
            c.remove(force=True)
    for n in client.networks.list(filters={"label": TEST_LABEL}):
        owner = (n.attrs.get("Labels") or {}).get(TEST_LABEL, "")
        if not (owner.isdigit() and os.path.exists(f"/proc/{owner}")):
            n.remove()


def _cleanup(client, mesh_existed=True):
    """Remove what this run made: its containers, its networks, and envoyage-mesh if the
    run created it and nothing else uses it."""
    for c in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={RUN_ID}"}):
        c.remove(force=True)
    for n in client.networks.list(filters={"label": f"{TEST_LABEL}={RUN_ID}"}):
        n.remove()
    if not mesh_existed:
        for n in client.networks.list(names=[MESH]):
            n.reload()
            if n.name == MESH and not n.containers:
                n.remove()


class Docker:
    """Run labelled sample-app containers for one test (in this run's discovery scope)."""

    def __init__(self, client):
        self.client = client

    def run(self, name, labels=None, image="envoyage/sample-app:1", **kw):
        all_labels = {TEST_LABEL: RUN_ID, "envoyage.enable": "true", "envoyage.scope": TEST_SCOPE}
        all_labels.update(labels or {})
        return self.client.containers.run(image, name=name, labels=all_labels, detach=True, **kw)

    def network(self, name):
        return self.client.networks.create(name, driver="bridge", labels={TEST_LABEL: RUN_ID})


@pytest.fixture
def docker(docker_client):
    mesh_existed = bool(docker_client.networks.list(names=[MESH]))
    _cleanup(docker_client, mesh_existed)
    yield Docker(docker_client)
    _cleanup(docker_client, mesh_existed)


@pytest.fixture
def dsetup(workdir, docker):
    """Control plane with Docker discovery on, and one (SotW) Envoy."""
    from support.helpers import make_config

    s = Setup(workdir, make_config(workdir, docker_enabled=True), "sotw")
    yield s
    s.close()


@pytest.fixture
def mesh_setup(workdir, docker):
    from support.helpers import make_config

    s = Setup(workdir, make_config(workdir, docker_enabled=True, docker_mesh=True), "delta")
    yield s
    s.close()


class ControlProcess:
    """`envoyage control` as a real process, for restart tests."""

    def __init__(self, workdir, config):
        self.workdir = workdir
        self.config_path = workdir / "control.yaml"
        self.config_path.write_text(
            yaml.safe_dump(
                {
                    "state_dir": str(config.state_dir),
                    "run_dir": str(config.run_dir),
                    "log_dir": str(config.log_dir),
                    "xds_port": free_port(),
                    "home_http_address": "127.0.0.1",
                    "home_http_port": config.home_http_port,
                    "docker": {"enabled": False, "scope": TEST_SCOPE},
                }
            )
        )
        self.xds_port = yaml.safe_load(self.config_path.read_text())["xds_port"]
        self.socket = config.socket_path
        self.state_dir = config.state_dir
        self.log_path = workdir / "control.log"
        self.proc = None
        self.extra_args: list[str] = []

    def start(self):
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [ENVOYAGE, "--config", str(self.config_path), "control", *self.extra_args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(
            lambda: self.socket.exists() and run_cli("status", socket_path=self.socket).returncode == 0,
            timeout=20,
            what="control plane to answer",
        )
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(15)


@pytest.fixture
def control_process(workdir, config):
    cp = ControlProcess(workdir, config)
    yield cp
    cp.stop(signal.SIGKILL)


@pytest.fixture
def sotw_setup(workdir, config):
    """One state-of-the-world Envoy: for behaviour that translation decides alike for both modes."""
    s = Setup(workdir, config, "sotw")
    yield s
    s.close()


class PrivateDockerd:
    """A dockerd of the test's own (own socket, data and exec root, and its own bridge
    interface and subnet), for tests that stop and restart the daemon: the host's
    dockerd, and whatever runs on it (a demo, the user's containers), is never touched.
    (Not `--bridge none`: that makes dockerd delete the host's docker0.)"""

    def __init__(self, root: Path):
        self.root = root
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.log_path = root / "dockerd.log"
        self.bridge = f"eyd{RUN_ID[-8:]}"
        self.proc: subprocess.Popen | None = None
        self.client = None

    def create_bridge(self) -> None:
        for cmd in (
            ["ip", "link", "add", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", "10.213.47.1/24", "dev", self.bridge],
            ["ip", "link", "set", self.bridge, "up"],
        ):
            subprocess.run(cmd, check=True, capture_output=True)

    def delete_bridge(self) -> None:
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True)

    def start(self) -> PrivateDockerd:
        import docker

        log = open(self.log_path, "ab")
        # no iptables rules (the host's are the host dockerd's business); containers are
        # reached over the test's bridge directly
        self.proc = subprocess.Popen(
            [
                "dockerd",
                "--host",
                self.host,
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "dockerd.pid"),
                "--bridge",
                self.bridge,
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"dockerd exited: {self.log_path.read_text()[-2000:]}")
            if self.client is None:
                self.client = docker.DockerClient(base_url=self.host, timeout=60)
            return self.client.ping()

        wait_for(up, 60, what=f"the test's own dockerd (log {self.log_path})")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # dockerd stops its containers, then itself
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def load_image(self, source_client, name: str) -> None:
        self.client.images.load(b"".join(source_client.images.get(name).save(named=True)))


@pytest.fixture
def private_dockerd(docker_client):
    from support.helpers import rmtree, short_tmpdir

    d = PrivateDockerd(short_tmpdir("eyd-"))
    try:
        d.create_bridge()
        d.start()
        d.load_image(docker_client, "envoyage/sample-app:1")
        yield d
    finally:
        try:
            for c in d.client.containers.list(all=True):
                c.remove(force=True)
        except Exception:  # noqa: BLE001 - the daemon may be down already
            pass
        d.stop()
        if d.client is not None:
            d.client.close()
        d.delete_bridge()
        rmtree(d.root)
