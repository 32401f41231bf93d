"""What the topology A tests (test_topology_a.py, test_split_dns.py) share: a running Lab
from scripts/topology_a.py, and the envoyage CLI against its home config."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
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
    lab = Lab(
        directory,
        http_port=free_port(),
        admin_port=free_port(),
        tunnel_port=free_port(),
        link_port=free_port(),
        scope=TEST_SCOPE,
        **settings,
    )
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


def proxy_v2(src: str, dst: str, sport: int, dport: int) -> bytes:
    """A PROXY protocol v2 header (TCP over IPv4) naming `src` as the client."""
    addresses = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses)) + addresses


RAW_REQUEST = r"""
import socket, sys
host, port, payload = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
with socket.create_connection((host, port), timeout=5) as s:
    s.sendall(payload)
    data = b""
    while chunk := s.recv(4096):
        data += chunk
print(data.split(b" ", 2)[1].decode() if data else "000")
"""


def through_tunnel_listener(lab, client: str, request: bytes) -> str:
    """Send `request` to home's tunnel listener from the VPS's namespace behind a PROXY v2
    header naming `client`, as the VPS Envoy does; the status code ("000": no answer)."""
    payload = proxy_v2(client, lab.plan["home"], 40000, lab.tunnel_port) + request
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            lab.ns["vps"],
            sys.executable,
            "-c",
            RAW_REQUEST,
            lab.plan["home"],
            str(lab.tunnel_port),
            payload.hex(),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()
