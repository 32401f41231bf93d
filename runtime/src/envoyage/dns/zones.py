"""Desired DNS state (pure): one Unbound local zone per service domain, answered with the
home LAN address; a wildcard service (`*.apps.example.org`) becomes a redirect zone
(`apps.example.org` and every name under it). Rendering and parsing of the include file
that Unbound loads at start, and the difference between two states."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

HEADER = """\
# Written by Envoyage's DNS controller: one local zone per service domain, answered with
# this home's LAN address (split horizon). Rewritten on every change; do not edit.
server:
"""


@dataclass(frozen=True)
class Zone:
    kind: str  # "transparent" (one name) or "redirect" (the name and everything under it)
    data: tuple[str, ...]  # the zone's resource records, as Unbound's local-data lines


def zone_name(domain: str) -> tuple[str, bool]:
    """("apps.example.org.", True) for "*.apps.example.org"; (domain + ".", False) otherwise."""
    domain = domain.lower().rstrip(".")
    if domain.startswith("*."):
        return domain[2:] + ".", True
    return domain + ".", False


def desired_zones(domains: Iterable[str], address: str, address6: str | None = None, ttl: int = 60) -> dict[str, Zone]:
    """Every domain -> its zone. A name claimed both exactly and as a wildcard's base is
    one redirect zone (it answers the name itself too)."""
    ipaddress.IPv4Address(address)
    if address6:
        ipaddress.IPv6Address(address6)
    kinds: dict[str, str] = {}
    for domain in domains:
        name, wildcard = zone_name(domain)
        if wildcard or name not in kinds:
            kinds[name] = "redirect" if wildcard else kinds.get(name, "transparent")
    out = {}
    for name, kind in sorted(kinds.items()):
        data = [f"{name} {ttl} IN A {address}"]
        if address6:
            data.append(f"{name} {ttl} IN AAAA {address6}")
        out[name] = Zone(kind, tuple(sorted(data)))
    return out


def render_include(zones: Mapping[str, Zone]) -> str:
    lines = [HEADER]
    for name, zone in sorted(zones.items()):
        lines.append(f'  local-zone: "{name}" {zone.kind}\n')
        for rr in zone.data:
            lines.append(f'  local-data: "{rr}"\n')
    return "".join(lines)


def parse_include(text: str) -> dict[str, Zone]:
    """The zones an include file written by render_include holds (anything else is skipped)."""
    kinds: dict[str, str] = {}
    data: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("local-zone:"):
            rest = line[len("local-zone:") :].strip()
            if rest.startswith('"') and rest.count('"') >= 2:
                name = rest[1 : rest.index('"', 1)]
                kinds[name] = rest[rest.index('"', 1) + 1 :].strip()
        elif line.startswith("local-data:"):
            rest = line[len("local-data:") :].strip().strip('"')
            owner = rest.split(" ", 1)[0]
            data.setdefault(owner, []).append(rest)
    return {name: Zone(kind, tuple(data.get(name, ()))) for name, kind in kinds.items()}


def diff(current: Mapping[str, Zone], desired: Mapping[str, Zone]) -> tuple[dict[str, Zone], list[str]]:
    """(zones to (re)add, zone names to remove). A changed zone is removed and added again."""
    add = {n: z for n, z in desired.items() if current.get(n) != z}
    remove = sorted(n for n, z in current.items() if n not in desired or desired[n] != z)
    return add, remove
