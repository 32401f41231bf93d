"""Who counts as the LAN for vpn-only services (pure): CIDR lists from the configuration,
checked against the networks that must never pass as the LAN.

The good entries come back with a named problem for each bad one, so a typo or a
dangerous entry restricts access (fails closed) instead of stopping the daemon:
- the tunnel prefix (topology A): a root user on the VPS who adds a second tunnel address
  would otherwise reach every vpn-only service through home's LAN listener;
- home's Docker networks: every container on home would otherwise pass vpn-only;
- loopback only when the operator lists it.
With no `lan_cidrs` set, the LAN is the network of each address on home's default-route
interface(s) (`default_lan_networks`), checked the same way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(setting: str, items: Iterable[str]) -> tuple[tuple[str, ...], list[str]]:
    networks: list[str] = []
    problems: list[str] = []
    for item in items:
        try:
            net = ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            problems.append(
                f"{setting}: {item!r} is not a network in CIDR notation (like 192.168.1.0/24); "
                "it is ignored, so vpn-only services do not admit it"
            )
            continue
        if str(net) not in networks:
            networks.append(str(net))
    return tuple(networks), problems


@dataclass(frozen=True)
class DockerNetwork:
    """One of dockerd's networks: its name, a subnet, and the gateway address (on home's
    own bridge when the network is home's, i.e. when its containers reach home directly)."""

    name: str
    subnet: str
    gateway: str = ""


def local_docker_networks(networks: Iterable[DockerNetwork], local_addresses: Iterable[str]) -> list[DockerNetwork]:
    """The Docker networks whose containers are on home: their gateway is one of home's own
    addresses (a network of another host's dockerd, e.g. the one a containerised home sits
    on, is not)."""
    local = {str(ipaddress.ip_address(a.split("/")[0])) for a in local_addresses if a}
    if not local:  # home's addresses could not be read: every network counts (fails closed)
        return list(networks)
    out = []
    for net in networks:
        try:
            subnet = ipaddress.ip_network(net.subnet, strict=False)
            # dockerd leaves the gateway out of the default bridge's IPAM: it is the
            # subnet's first address then
            gateway = str(
                ipaddress.ip_address(net.gateway.split("/")[0])
                if net.gateway
                else next(subnet.hosts(), subnet.network_address)
            )
        except ValueError:
            continue
        if gateway in local:
            out.append(net)
    return out


def default_lan_networks(default_interfaces: Sequence[str], addresses: Iterable[tuple[str, str, int]]) -> list[str]:
    """The LAN by default: the network of every global address (IPv4 and IPv6) on the
    interfaces of home's default routes. `addresses`: (interface, address, prefix length)."""
    out: list[str] = []
    for iface, address, prefixlen in addresses:
        if iface not in default_interfaces:
            continue
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            continue
        if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
            continue
        net = str(ipaddress.ip_interface(f"{ip}/{prefixlen}").network)
        if net not in out:
            out.append(net)
    return out


def vpn_only_networks(
    lan_cidrs: Sequence[str],
    vpn_cidrs: Sequence[str],
    *,
    default_lan: Sequence[str] = (),
    tunnel_prefix: str | None = None,
    docker_networks: Iterable[DockerNetwork] = (),
) -> tuple[tuple[str, ...], list[str]]:
    """The networks vpn-only admits on home's LAN listener, and a sentence per refused entry.

    `lan_cidrs` empty: `default_lan` (home's default-route networks) is the LAN. An entry
    that overlaps the tunnel prefix or one of home's Docker networks is refused whole;
    loopback only when an entry names it (never from the default)."""
    problems: list[str] = []
    lan, lan_problems = parse_networks("lan_cidrs", lan_cidrs)
    vpn, vpn_problems = parse_networks("vpn_cidrs", vpn_cidrs)
    problems += lan_problems + vpn_problems
    from_default = not lan_cidrs
    if from_default:
        lan = tuple(default_lan)
        if not lan:
            problems.append(
                "lan_cidrs is not set and home has no default-route address to take the LAN from; "
                "vpn-only services admit no LAN client (set lan_cidrs to your LAN, e.g. 192.168.1.0/24)"
            )
    forbidden: list[tuple[Network, str]] = []
    if tunnel_prefix:
        forbidden.append(
            (
                ipaddress.ip_network(tunnel_prefix, strict=False),
                f"the tunnel prefix {tunnel_prefix} (the VPS could pass as the LAN)",
            )
        )
    for dn in docker_networks:
        try:
            forbidden.append(
                (
                    ipaddress.ip_network(dn.subnet, strict=False),
                    f"the Docker network '{dn.name}' ({dn.subnet}; every container on it could pass as the LAN)",
                )
            )
        except ValueError:
            continue
    admitted: list[str] = []
    for setting, entries in (("lan_cidrs", lan), ("vpn_cidrs", vpn)):
        for entry in entries:
            net = ipaddress.ip_network(entry)
            clash = next(
                (why for other, why in forbidden if other.version == net.version and net.overlaps(other)), None
            )
            origin = "home's default-route network" if setting == "lan_cidrs" and from_default else setting
            if clash:
                problems.append(
                    f"{origin}: {entry} overlaps {clash}; it is refused, so vpn-only services do not "
                    f"admit it (list only your LAN's own networks)"
                )
                continue
            if entry not in admitted:
                admitted.append(entry)
    return tuple(admitted), problems
