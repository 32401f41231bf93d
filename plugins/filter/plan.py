# -*- coding: utf-8 -*-
# Copyright: Envoyage contributors
# Apache License 2.0 (see LICENSE)
"""Which roles run on which host, in which order: the one definition. playbooks/site.yml
runs each stage's roles from it, the preflight role checks the variables of exactly the
roles a host will run, and the tests import it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: plan
short_description: The Envoyage site plan (which roles run on which host)
description:
  - C(stage_roles) returns the roles of one stage of the site playbook, in order, for a
    topology; C('home' | envoyage.core.stage_roles(envoyage_topology)).
  - C(host_roles) returns every role a host runs, in order, from its groups;
    C(group_names | envoyage.core.host_roles(envoyage_topology)).
  - The stages, in order. C(tunnel) on home and the VPS in one play (each side needs the
    other's public key) - runtime, and wireguard in topology A. C(home) - unbound,
    control_plane, envoy, and crowdsec in topology C. C(vps) - envoy, edge, crowdsec.
author: Envoyage developers (@envoyage)
"""

# (stage, the inventory groups whose hosts run it, its roles in order as (role, the
# topologies it runs in; None: every topology)). A VPS exists in topology A only.
PLAN = (
    ("tunnel", ("home", "vps"), (("runtime", None), ("wireguard", ("a",)))),
    ("home", ("home",), (("unbound", None), ("control_plane", None), ("envoy", None), ("crowdsec", ("c",)))),
    ("vps", ("vps",), (("envoy", None), ("edge", None), ("crowdsec", None))),
)


def _stage(name):
    for stage in PLAN:
        if stage[0] == name:
            return stage
    raise ValueError("no stage %r in the site plan (stages: %s)" % (name, ", ".join(s[0] for s in PLAN)))


def stage_roles(stage, topology):
    """The roles of `stage`, in order, in `topology`."""
    return [role for role, topologies in _stage(stage)[2] if topologies is None or topology in topologies]


def host_roles(groups, topology):
    """Every role a host in `groups` (its group_names) runs in `topology`, in the order the
    site playbook runs them (a role that runs in two stages once)."""
    groups = [groups] if isinstance(groups, str) else list(groups)
    out = []
    for name, hosts, _roles in PLAN:
        if any(g in hosts for g in groups):
            out += [r for r in stage_roles(name, topology) if r not in out]
    return out


def all_roles():
    """Every role the site playbook can run (in any topology), in plan order."""
    out = []
    for _name, _hosts, roles in PLAN:
        out += [r for r, _topologies in roles if r not in out]
    return out


class FilterModule:
    def filters(self):
        return {"stage_roles": stage_roles, "host_roles": host_roles}
