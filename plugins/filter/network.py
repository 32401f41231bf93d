# -*- coding: utf-8 -*-
# Copyright: Envoyage developers
# Apache License 2.0 (see LICENSE in the runtime package)
"""Filters the roles use to check and plan addresses, over the same code the modules and
the runtime use (module_utils._wireguard), so that the tunnel plan exists once."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

from ansible.errors import AnsibleFilterError
from ansible_collections.envoyage.core.plugins.module_utils._wireguard import (
    WireGuardError,
    address_plan,
    parse_endpoint,
    render_home,
    render_vps,
)

DOCUMENTATION = r"""
name: network
short_description: Tunnel address plan and address checks for the Envoyage roles
description:
  - C(wireguard_conf) renders the tunnel configuration for one side, without the private
    key, with the same code the runtime uses.
  - C(tunnel_plan) returns the tunnel's address plan for a prefix (the VPS gets the first
    host address, home the second), as the runtime computes it.
  - C(default_lan) returns the networks of the default-route interfaces from the facts.
  - C(address_problem), C(cidr_problem), C(overlap_problem) and C(endpoint_problem) return a sentence
    describing what is wrong with a value, or an empty string when it is fine.
author: Envoyage developers (@envoyage)
"""


def tunnel_plan(prefix):
    try:
        return address_plan(str(prefix))
    except WireGuardError as exc:
        raise AnsibleFilterError(str(exc)) from None


def wireguard_conf(peer_public_key, side, prefix, endpoint=None, listen_port=51820):
    """The tunnel configuration (wg setconf format, no private key: the unit loads it from
    its file) for `side` 'home' (dials `endpoint`) or 'vps' (listens on `listen_port`)."""
    try:
        plan = address_plan(str(prefix))
        if side == "home":
            return render_home(None, str(peer_public_key), str(endpoint), plan)
        if side == "vps":
            return render_vps(None, str(peer_public_key), plan, listen_port=int(listen_port))
    except WireGuardError as exc:
        raise AnsibleFilterError(str(exc)) from None
    raise AnsibleFilterError("wireguard_conf: side must be 'home' or 'vps', not %r" % (side,))


def address_problem(value):
    """'' for an IPv4 or IPv6 address, else why not."""
    try:
        ipaddress.ip_address(str(value).strip())
        return ""
    except ValueError:
        return "%r is not an IPv4 or IPv6 address" % (value,)


def cidr_problem(value):
    """'' for a network or address in CIDR notation (host bits allowed), else why not."""
    if isinstance(value, (list, tuple)):
        problems = [cidr_problem(v) for v in value]
        return "; ".join(p for p in problems if p)
    try:
        ipaddress.ip_network(str(value).strip(), strict=False)
        return ""
    except ValueError:
        return "%r is not a network in CIDR notation (e.g. 192.168.1.0/24)" % (value,)


def overlap_problem(value, prefix, what="the tunnel prefix"):
    """'' unless an entry of `value` (a list of CIDRs) overlaps `prefix`; else a sentence
    naming the entry (vpn-only must never admit the tunnel prefix)."""
    try:
        other = ipaddress.ip_network(str(prefix).strip(), strict=False)
    except ValueError:
        return ""
    bad = []
    for item in value if isinstance(value, (list, tuple)) else [value]:
        try:
            net = ipaddress.ip_network(str(item).strip(), strict=False)
        except ValueError:
            continue
        if net.version == other.version and net.overlaps(other):
            bad.append(str(item))
    if not bad:
        return ""
    return "%s overlap%s %s %s: the VPS could pass as the LAN; list only your LAN's own networks" % (
        ", ".join(bad),
        "s" if len(bad) == 1 else "",
        what,
        prefix,
    )


def default_lan(facts):
    """The networks of home's default-route interfaces (IPv4 and global IPv6), from the
    gathered facts: the LAN when envoyage_lan_cidrs is not set."""
    out = []
    for key, version in (("default_ipv4", 4), ("default_ipv6", 6)):
        info = (facts or {}).get(key) or {}
        address, prefix = info.get("address"), info.get("prefix") or info.get("netmask")
        if not address or not prefix:
            continue
        try:
            net = ipaddress.ip_interface("%s/%s" % (address, prefix)).network
        except ValueError:
            continue
        if net.version == version and not (net.is_loopback or net.is_link_local) and str(net) not in out:
            out.append(str(net))
    return out


def _problem(check, value):
    """'' if check(value) passes, else its WireGuardError's sentence."""
    try:
        check(str(value))
        return ""
    except WireGuardError as exc:
        return str(exc)


def prefix_problem(value):
    """'' for a usable tunnel prefix, else why not."""
    return _problem(address_plan, value)


def endpoint_problem(value):
    """'' for host:port or [v6]:port, else why not."""
    return _problem(parse_endpoint, value)


class FilterModule:
    def filters(self):
        return {
            "tunnel_plan": tunnel_plan,
            "wireguard_conf": wireguard_conf,
            "address_problem": address_problem,
            "cidr_problem": cidr_problem,
            "overlap_problem": overlap_problem,
            "default_lan": default_lan,
            "prefix_problem": prefix_problem,
            "endpoint_problem": endpoint_problem,
        }
