"""What the topology A tests (test_topology_a.py, test_split_dns.py) share: a running Lab
from scripts/topology_a.py, and the envoyage CLI against its home config."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

from helpers import ENVOYAGE, TEST_SCOPE, free_port, rmtree, short_tmpdir

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from topology_a import Lab  # noqa: E402


@contextlib.contextmanager
def running_lab(prefix: str, **settings):
    """A Lab up (network, tunnel, control plane, both Envoys) on free ports in this run's
    discovery scope; taken down and removed afterwards. `settings`: tag, net, dns, ..."""
    directory = short_tmpdir(prefix)
    lab = Lab(directory, http_port=free_port(), admin_port=free_port(), tunnel_port=free_port(),
              link_port=free_port(), scope=TEST_SCOPE, **settings)
    try:
        lab.network_up()
        lab.start_all()
        yield lab
    finally:
        lab.down()
        rmtree(directory)


def cli(lab, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([ENVOYAGE, "-c", str(lab.home_config), *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"envoyage {' '.join(args)}: {proc.stdout}{proc.stderr}")
    return proc


def status(lab) -> dict:
    return json.loads(cli(lab, "status", "--json").stdout)


def add(lab, name: str, domain: str, upstream: str, *extra: str) -> None:
    """(Re)create a manual service."""
    cli(lab, "service", "rm", name, check=False)
    cli(lab, "service", "add", name, "--domain", domain, "--upstream", upstream, *extra)
