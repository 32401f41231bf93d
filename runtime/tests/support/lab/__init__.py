"""Topology A on one machine, in network namespaces: the harness the tests, the demo
(`bash scripts/demo.sh --topology a`, through scripts/topology_a.py) and the benchmarks
share. `Lab` is the one entry point; each concern has its module:

- `nodes`: names, addresses and directories, the namespaces and links, the processes the
  lab starts, the clients' requests;
- `tunnel`: the WireGuard tunnel home dials to the VPS (the project's backend);
- `dns`: BIND as the internet's DNS and Unbound as home's resolver (split horizon);
- `envoy`: the control plane, the home Envoy, `envoyage edge` and the VPS Envoy.

`running_lab` is a Lab up for one test on its own ports; `cli`, `status`, `add` and
`through_tunnel_listener` act on it.

Layout (NET is 10.231 by default; every address below is inside namespaces this
harness creates, or on the two veth interfaces it adds to the root namespace):

    lan-client ns            root ns = home                 router ns (NAT)            vps ns                internet ns
    NET.1.2  ---- eya-lan NET.1.1
                  eya-wan NET.2.2 ---- in0 NET.2.1 | out0 NET.3.1 ---- wan0 NET.3.2 (WireGuard :51820)
                  eya-wgh NET.100.2 ===== WireGuard tunnel (home dials) =====  eya-wgv NET.100.1
                                                                               pub0 NET.4.1 fd00:231:4::1 ---- eth0 NET.4.2 fd00:231:4::2

- Home stays in the root namespace, where dockerd and its containers are: the control
  plane, the home Envoy (LAN listener on every address, tunnel listener on NET.100.2)
  and the labelled containers run there.
- The router masquerades home's traffic to the VPS and drops anything the VPS starts
  towards home, like CGNAT: the VPS reaches home only through the tunnel home dials.
- The VPS runs `envoyage edge`, which runs the VPS Envoy (public port 80 on NET.4.1 and
  fd00:231:4::1, and NET.3.2).
- The internet client reaches only the VPS's public addresses; the LAN client reaches
  only home's LAN address NET.1.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..helpers import ENVOYAGE, TEST_SCOPE, free_port, rmtree, short_tmpdir
from .envoy import Envoys
from .nodes import ROOT as ROOT
from .nodes import VENV as VENV
from .nodes import LabError as LabError
from .nodes import sh as sh


@dataclass
class Lab(Envoys):
    """The whole lab: its nodes, the tunnel, the DNS (with `dns=True`) and Envoyage.
    Every setting is a field (see the concerns' classes); `save`/`load` keep them in
    <dir>/lab.json for the demo's stop command."""

    def network_up(self) -> None:
        """The namespaces, the NAT router and the WireGuard tunnel (what was left of an
        earlier lab with the same tag is removed first)."""
        if os.geteuid() != 0:
            raise LabError("topology A in namespaces needs root (network namespaces, veth, WireGuard)")
        for tool in ("wireguard-go", "wg", "iptables", "ip"):
            if not shutil.which(tool):
                raise LabError(f"{tool} is not installed (apt install wireguard-go wireguard-tools iptables iproute2)")
        self.network_down()
        self.namespaces_up()
        self.tunnel_up()

    def network_down(self) -> None:
        self.tunnel_remove()
        self.namespaces_down()

    def start_all(self) -> None:
        self.write_configs()
        if self.dns:
            self.start_bind()
            self.start_unbound()
        self.start_control()
        self.start_home_envoy()
        self.start_edge()

    def stop_all(self) -> None:
        for name in ("edge", "home-envoy", "control", "unbound", "bind", "app"):
            self.stop(name)

    @classmethod
    def load(cls, directory: Path) -> Lab:
        data = json.loads((directory / "lab.json").read_text())
        data["dir"] = Path(data["dir"])
        return cls(**data)

    def down(self) -> None:
        self.stop_all()
        self.network_down()


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
