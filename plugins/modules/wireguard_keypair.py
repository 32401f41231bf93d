#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Envoyage contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: wireguard_keypair
short_description: Create a WireGuard key pair once, and return its public key
version_added: "0.1.0"
description:
  - Creates a WireGuard private key at O(path) unless one is there, and returns the
    matching public key. An existing key is never replaced, so a tunnel keeps its identity
    across runs.
  - The private key never leaves the host and never appears in the module's output; the
    file is written atomically with mode C(0600) from its first byte.
  - A key file that others can read, or that holds something else, fails the module and is
    left as it is.
options:
  path:
    description: The private key file. Its directory must exist.
    type: path
    required: true
attributes:
  check_mode:
    details: A key that does not exist yet is reported as C(changed), and RV(public_key) is empty.
extends_documentation_fragment:
  - envoyage.core._common
  - envoyage.core._files
requirements:
  - cryptography (Debian package C(python3-cryptography)) on the managed host
"""

EXAMPLES = r"""
- name: The tunnel key of this host
  envoyage.core.wireguard_keypair:
    path: /etc/envoyage/wireguard.key
  register: wg

- name: Use the public key elsewhere
  ansible.builtin.debug:
    msg: "{{ wg.public_key }}"
"""

RETURN = r"""
public_key:
  description: The public key (base64), for the peer's configuration. Empty in check mode when the key does not exist yet.
  returned: always
  type: str
  sample: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
path:
  description: The private key file.
  returned: always
  type: str
  sample: /etc/envoyage/wireguard.key
created:
  description: Whether the key was created by this run.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.envoyage.core.plugins.module_utils import _files, _wireguard


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            **_files.owner_group_spec(),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    problem = _files.owner_group_problem(module.params["owner"], module.params["group"])
    if problem:
        module.fail_json(msg=problem)
    try:
        public, created = _wireguard.ensure_keypair(path, check_mode=module.check_mode)
    except _wireguard.WireGuardError as exc:
        module.fail_json(msg="path: %s" % exc)
    changed = _files.apply_owner_group(module, (path,), created)
    module.exit_json(
        changed=changed,
        public_key=public or "",
        path=path,
        created=created,
        diff=_wireguard.keypair_diff(path, created),
    )


if __name__ == "__main__":
    main()
