"""Integration fixtures: our control plane (in-process or as a process) and real Envoys."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import yaml

from envoyage.control.daemon import ControlDaemon
from helpers import ENVOYAGE, Envoy, free_port, run_cli, wait_for

pytestmark = pytest.mark.integration


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
