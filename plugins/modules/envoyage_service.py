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
notes:
  - Supports check mode and diff mode.
author:
  - Envoyage developers (@envoyage)
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

import re
from urllib.parse import quote

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.envoyage.core.plugins.module_utils._control_api import ApiError, request

FIELDS = ("domains", "upstreams", "path", "access", "health_check", "websocket", "request_timeout", "idle_timeout")
# what the API returns besides the desired state itself
NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
NOT_COMPARED = ("problems", "domains_unicode", "first_seen", "updated_at", "detail")


def _comparable(service):
    return dict((k, v) for k, v in (service or {}).items() if k not in NOT_COMPARED)


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
    sock, name = p["socket"], p["name"]
    if not NAME_RE.match(name or ""):
        module.fail_json(
            msg="name: %r is not a service name (lowercase letters, digits and '-', up to 63, "
            "starting and ending with a letter or digit)" % name
        )
    url = "/services/%s" % quote(name, safe="")
    try:
        try:
            current = request(sock, "GET", url)[1]
        except ApiError as exc:
            if exc.status != 404:
                raise
            current = None
        if current is not None and current.get("source") not in (None, "manual"):
            module.fail_json(
                msg="name: service '%s' comes from %s discovery; change its labels instead"
                % (name, current.get("source"))
            )
        if p["state"] == "absent":
            if current is not None and not module.check_mode:
                request(sock, "DELETE", url)
            module.exit_json(
                changed=current is not None, service={}, diff={"before": _comparable(current), "after": {}}
            )
        body = dict((k, p[k]) for k in FIELDS if p[k] is not None)
        if p["health_check"] is None:
            body["health_check"] = None
        desired = request(sock, "PUT", url + "?dry_run=1", body)[1]
        before, after = _comparable(current), _comparable(desired)
        changed = before != after
        result = current or {}
        if changed and not module.check_mode:
            if current is None:
                result = request(sock, "POST", "/services", dict(body, name=name))[1]
            else:
                result = request(sock, "PUT", url, body)[1]
        elif changed:
            result = desired
    except ApiError as exc:
        field = exc.field if exc.field and exc.field != "body" else None
        module.fail_json(msg="%s%s" % ("%s: " % field if field else "", exc.message), status=exc.status)
    module.exit_json(changed=changed, service=result, diff={"before": before, "after": after})


if __name__ == "__main__":
    main()
