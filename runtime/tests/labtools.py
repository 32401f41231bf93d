"""What the topology A tests (test_topology_a.py, test_split_dns.py) do to a Lab from
scripts/topology_a.py: the envoyage CLI against its home config."""

from __future__ import annotations

import json
import subprocess

from helpers import ENVOYAGE


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
