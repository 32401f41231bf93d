"""Integration fixtures: our control plane (in-process or as a process) and real Envoys."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import ENVOYAGE, Setup, free_port, run_cli, wait_for

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
TEST_LABEL = "io.envoyage.test"


@pytest.fixture(scope="session")
def docker_client():
    """dockerd running (started if needed) and the sample image built, once per run."""
    import docker

    out = subprocess.run(["bash", str(ROOT / "scripts" / "sample-image.sh")], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    client = docker.from_env()
    yield client
    _cleanup(client)
    client.close()


def _cleanup(client):
    for c in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        c.remove(force=True)
    for n in client.networks.list(filters={"label": TEST_LABEL}):
        n.remove()
    for n in client.networks.list(names=["envoyage-mesh"]):
        if n.name == "envoyage-mesh":
            n.reload()
            for c in n.containers:
                n.disconnect(c, force=True)
            n.remove()


class Docker:
    """Run labelled sample-app containers for one test; all removed afterwards."""

    def __init__(self, client):
        self.client = client

    def run(self, name, labels=None, image="envoyage/sample-app:1", **kw):
        all_labels = {TEST_LABEL: "1", "envoyage.enable": "true"}
        all_labels.update(labels or {})
        return self.client.containers.run(image, name=name, labels=all_labels, detach=True, **kw)

    def network(self, name):
        return self.client.networks.create(name, driver="bridge", labels={TEST_LABEL: "1"})


@pytest.fixture
def docker(docker_client):
    _cleanup(docker_client)
    yield Docker(docker_client)
    _cleanup(docker_client)


@pytest.fixture
def dsetup(workdir, docker):
    """Control plane with Docker discovery on, and one (SotW) Envoy."""
    from helpers import make_config

    s = Setup(workdir, make_config(workdir, docker_enabled=True), "sotw")
    yield s
    s.close()


@pytest.fixture
def mesh_setup(workdir, docker):
    from helpers import make_config

    s = Setup(workdir, make_config(workdir, docker_enabled=True, docker_mesh=True), "delta")
    yield s
    s.close()


class ControlProcess:
    """`envoyage control` as a real process, for restart tests."""

    def __init__(self, workdir, config):
        self.workdir = workdir
        self.config_path = workdir / "control.yaml"
        self.config_path.write_text(yaml.safe_dump({
            "state_dir": str(config.state_dir), "run_dir": str(config.run_dir), "log_dir": str(config.log_dir),
            "xds_port": free_port(), "home_http_address": "127.0.0.1", "home_http_port": config.home_http_port,
        }))
        self.xds_port = yaml.safe_load(self.config_path.read_text())["xds_port"]
        self.socket = config.socket_path
        self.log_path = workdir / "control.log"
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([ENVOYAGE, "--config", str(self.config_path), "control"],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: self.socket.exists() and run_cli("status", socket_path=self.socket).returncode == 0,
                 timeout=20, what="control plane to answer")
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
