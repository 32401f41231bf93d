"""What home's own network looks like (the I/O edge of networks.py): the interfaces of its
default routes and every address on its interfaces, read with `ip -j` (iproute2)."""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
from dataclasses import dataclass

from .networks import DockerNetwork, default_lan_networks

DOCKER_BRIDGES = ("docker", "br-")  # the interface names dockerd gives its bridges

log = logging.getLogger("envoyage.hostnet")


def _ip_json(*args: str) -> list:
    try:
        out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=10, check=True).stdout
        data = json.loads(out or "[]")
        return data if isinstance(data, list) else []
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.warning("cannot read home's addresses (ip -j %s): %s", " ".join(args), exc)
        return []


@dataclass(frozen=True)
class HostNetworks:
    """`default_lan`: the networks of the addresses on the default-route interfaces;
    `local_addresses`: every address of this host (to tell home's Docker networks from
    another host's)."""

    default_lan: tuple[str, ...] = ()
    local_addresses: tuple[str, ...] = ()
    # the networks of Docker's bridges on home (docker0, br-<id>, docker_gwbridge): Docker
    # networks even before (or without) Docker discovery reporting them
    bridges: tuple[DockerNetwork, ...] = ()

    def own_addresses(self) -> tuple[str, ...]:
        """Home's addresses that are not loopback (what vpn-only never admits unless
        loopback is listed)."""
        return tuple(a for a in self.local_addresses if not ipaddress.ip_address(a).is_loopback)

    @classmethod
    def read(cls) -> HostNetworks:
        interfaces = [
            r.get("dev")
            for family in ("-4", "-6")
            for r in _ip_json(family, "route", "show", "default")
            if r.get("dev")
        ]
        addresses = [
            (link.get("ifname", ""), a.get("local", ""), int(a.get("prefixlen", 0)))
            for link in _ip_json("addr", "show")
            for a in link.get("addr_info", [])
            if a.get("local")
        ]
        bridges = tuple(
            DockerNetwork(name=iface, subnet=str(ipaddress.ip_interface(f"{addr}/{plen}").network), gateway=addr)
            for iface, addr, plen in addresses
            if iface.startswith(DOCKER_BRIDGES) and not ipaddress.ip_address(addr).is_link_local
        )
        return cls(
            default_lan=tuple(default_lan_networks(interfaces, addresses)),
            local_addresses=tuple(a for _i, a, _p in addresses),
            bridges=bridges,
        )
