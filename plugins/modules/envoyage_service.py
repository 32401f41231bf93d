#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Envoyage contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: envoyage_service
short_description: Manual services of an Envoyage home, through its control API
version_added: "0.1.0"
description:
  - Adds, changes or removes a manual service (one not discovered from Docker labels, such
    as a NAS, a router's web page or a VM) through the control plane's API on its Unix socket, so
    the change is validated and pushed to the Envoys at once.
  - With O(state=present) the service ends exactly as the options describe it; options not
    given take their defaults (as the API's C(PUT)). The control plane validates and
    normalizes the service first (C(?dry_run=1)), so a run that would change nothing changes
    nothing, and check mode and diff mode show the real difference.
  - A service discovered from Docker labels cannot be changed here; change its labels.
options:
  name:
    description: The service name (lowercase letters, digits and C(-)).
    type: str
    required: true
  state:
    description: Whether the service should exist.
    type: str
    choices: [present, absent]
    default: present
  domains:
    description: Domains to serve (C(*.example.org) wildcards allowed). Required with O(state=present).
    type: list
    elements: str
  upstreams:
    description: Upstream C(HOST:PORT) endpoints. Required with O(state=present).
    type: list
    elements: str
  path:
    description: Path prefix to route.
    type: str
    default: /
  access:
    description: Who may reach it (modes not built yet answer 403).
    type: str
    choices: [public, vpn-only, link-only, auth]
    default: public
  health_check:
    description:
      - C(off) for no active check, a path such as C(/health) for an HTTP check, or a
        dictionary with C(path), C(interval), C(timeout) and C(expected). Not given, the
        control plane checks that a TCP connection can be made.
    type: raw
  websocket:
    description: Allow WebSocket upgrades.
    type: bool
    default: true
  request_timeout:
    description: Limit on a whole request and response (C(30s), C(5m)) or C(off).
    type: str
    default: "off"
  idle_timeout:
    description: End a request idle in both directions for this long, or C(off).
    type: str
    default: 1h
  socket:
    description: The control API's Unix socket.
    type: path
    default: /run/envoyage/control.sock
extends_documentation_fragment:
  - envoyage.core._common
"""

EXAMPLES = r"""
- name: The NAS web interface, LAN only
  envoyage.core.envoyage_service:
    name: nas
    domains: [nas.example.org]
    upstreams: [192.168.1.20:5000]
    access: vpn-only
    health_check: /

- name: Gone
  envoyage.core.envoyage_service:
    name: old-wiki
    state: absent
"""

RETURN = r"""
service:
  description: The service as the control plane stores it (with its problems, if any). Empty after removal.
  returned: always
  type: dict
  sample: {"name": "nas", "domains": ["nas.example.org"], "upstreams": ["192.168.1.20:5000"], "problems": []}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.envoyage.core.plugins.module_utils import _control_api


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            domains=dict(type="list", elements="str"),
            upstreams=dict(type="list", elements="str"),
            path=dict(type="str", default="/"),
            access=dict(type="str", choices=["public", "vpn-only", "link-only", "auth"], default="public"),
            health_check=dict(type="raw"),
            websocket=dict(type="bool", default=True),
            request_timeout=dict(type="str", default="off"),
            idle_timeout=dict(type="str", default="1h"),
            socket=dict(type="path", default="/run/envoyage/control.sock"),
        ),
        required_if=[("state", "present", ("domains", "upstreams"))],
        supports_check_mode=True,
    )
    p = module.params
    problem = _control_api.service_name_problem(p["name"])
    if problem:
        module.fail_json(msg=problem)
    try:
        result = _control_api.ensure_service(
            p["socket"],
            p["name"],
            p["state"],
            dict((k, p[k]) for k in _control_api.SERVICE_FIELDS),
            check_mode=module.check_mode,
        )
    except _control_api.ApiError as exc:
        module.fail_json(msg=exc.option_message(), status=exc.status)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
