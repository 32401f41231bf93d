"""The README's first command (bash scripts/demo.sh): builds the collection, starts the
systemd containers home and vps, runs the site playbook and answers through the VPS and
directly on home; a second start only shows it; stop removes it all. Its own container
names, network and subnet, so a demo the user runs is not touched."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
import testinfra  # noqa: E402
from checks import assert_dns_stays_in_the_lab, assert_status_without_problems, get  # noqa: E402  (the scenarios' checks)

pytestmark = pytest.mark.integration


def docker_names(prefix):
    out = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True, timeout=30)
    return sorted(n for n in out.stdout.split() if n.startswith(prefix))


def test_readme_first_command_brings_up_home_and_vps(tmp_path):
    name = f"eyn{os.getpid() % 100000}"
    env = {
        **os.environ,
        "ENVOYAGE_NODES_NAME": name,
        "ENVOYAGE_NODES_SUBNET": "198.18.81",
        "ENVOYAGE_NODES_DIR": str(tmp_path / "nodes"),
        "ENVOYAGE_NODES_DOMAIN": "demo.test",
    }
    demo = ["bash", str(ROOT / "scripts" / "demo.sh")]
    try:
        out = subprocess.run(demo, env=env, capture_output=True, text=True, timeout=1200)
        assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
        # progress, then the lines a user copies
        assert "[5/6" in out.stderr and "running the site playbook" in out.stderr
        for line in (
            "curl -H 'Host: whoami.demo.test' http://198.18.81.3/",
            "curl -H 'Host: whoami.demo.test' http://198.18.81.2/",
            "demo.sh stop",
        ):
            assert line in out.stdout, out.stdout
        for address in ("198.18.81.3", "198.18.81.2"):  # through the VPS, directly on home
            status, body = get(address, "whoami.demo.test")
            assert status == 200 and body.strip()
        assert docker_names(name) == [f"{name}-home", f"{name}-vps", f"{name}-whoami"]
        home = testinfra.get_host(f"docker://{name}-home")
        assert_dns_stays_in_the_lab(home, "198.18.81.3", "whoami.demo.test", "198.18.81.3")
        # a healthy demo has nothing to complain about (the tunnel's status under
        # wireguard-go included)
        assert_status_without_problems(home)
        again = subprocess.run(demo, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and "already running" in again.stderr
    finally:
        stop = subprocess.run(demo + ["stop"], env=env, capture_output=True, text=True, timeout=120)
    assert stop.returncode == 0, stop.stderr
    assert docker_names(name) == []
    nets = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"], capture_output=True, text=True)
    assert name not in nets.stdout.split()
