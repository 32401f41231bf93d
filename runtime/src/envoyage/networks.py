"""CIDR lists from the configuration (pure): the good entries, and a named problem for
each bad one, so a typo restricts access (fails closed) instead of stopping the daemon."""

from __future__ import annotations

import ipaddress
from typing import Iterable


def parse_networks(setting: str, items: Iterable[str]) -> tuple[tuple[str, ...], list[str]]:
    networks: list[str] = []
    problems: list[str] = []
    for item in items:
        try:
            net = ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            problems.append(f"{setting}: {item!r} is not a network in CIDR notation (like 192.168.1.0/24); "
                            "it is ignored, so vpn-only services do not admit it")
            continue
        if str(net) not in networks:
            networks.append(str(net))
    return tuple(networks), problems
