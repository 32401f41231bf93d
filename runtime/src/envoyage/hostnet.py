"""What home's own network looks like (the I/O edge of networks.py): the interfaces of its
default routes and every address on its interfaces, read with `ip -j` (iproute2)."""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass

from .networks import default_lan_networks

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

    @classmethod
    def read(cls) -> "HostNetworks":
        interfaces = [r.get("dev") for family in ("-4", "-6") for r in _ip_json(family, "route", "show", "default")
                      if r.get("dev")]
        addresses = [(link.get("ifname", ""), a.get("local", ""), int(a.get("prefixlen", 0)))
                     for link in _ip_json("addr", "show") for a in link.get("addr_info", []) if a.get("local")]
        return cls(default_lan=tuple(default_lan_networks(interfaces, addresses)),
                   local_addresses=tuple(a for _i, a, _p in addresses))
