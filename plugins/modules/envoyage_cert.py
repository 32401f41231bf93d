#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Envoyage contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: envoyage_cert
short_description: A leaf certificate from the installation's CA, renewed when due
version_added: "0.1.0"
description:
  - Issues a certificate for a key (made here if missing) signed by the CA that
    M(envoyage.core.envoyage_ca) made, for the edge link, LAN names and the like.
  - The certificate is issued again when it is inside the renewal window
    (O(renew_before_days)), has expired, has other names than O(subject_alt_names), was
    not signed by this CA, or does not belong to the key. Otherwise nothing changes.
  - The key is written with mode C(0600), the certificate C(0644), both atomically. No key
    appears in the module's output.
options:
  ca_key_path:
    description: The CA's private key file.
    type: path
    required: true
  ca_cert_path:
    description: The CA's certificate file.
    type: path
    required: true
  key_path:
    description: The certificate's private key file (made with O(key_type) and O(key_size) if missing).
    type: path
    required: true
  cert_path:
    description: The certificate file (PEM).
    type: path
    required: true
  common_name:
    description: The subject common name.
    type: str
    required: true
  subject_alt_names:
    description: DNS names, IP addresses and C(spiffe://) URIs the certificate is for.
    type: list
    elements: str
    required: true
  usage:
    description: What the certificate may be used for.
    type: str
    choices: [server, client, both]
    default: server
  days:
    description: How long a new certificate is valid, in days (never longer than the CA).
    type: int
    default: 365
  renew_before_days:
    description: Issue a new certificate when the current one expires within this many days.
    type: int
    default: 30
attributes:
  diff_mode:
    details: The diff shows the certificate's names, issuer and end of validity.
extends_documentation_fragment:
  - envoyage.core._common
  - envoyage.core._files
  - envoyage.core._private_key
"""

EXAMPLES = r"""
- name: The edge link's certificate on home
  envoyage.core.envoyage_cert:
    ca_key_path: /etc/envoyage/pki/ca.key
    ca_cert_path: /etc/envoyage/pki/ca.pem
    key_path: /etc/envoyage/pki/link.key
    cert_path: /etc/envoyage/pki/link.pem
    common_name: edge-link
    subject_alt_names: [10.88.0.2, home.internal]
    usage: server
    group: envoyage
"""

RETURN = r"""
certificate:
  description: The certificate (PEM). Empty in check mode when it would be issued.
  returned: always
  type: str
info:
  description: Subject, issuer, serial, validity, names and SHA-256 fingerprint of the certificate.
  returned: when a certificate exists after the run
  type: dict
reason:
  description: Why the certificate was issued ("it did not exist", "its names changed", ...), or empty.
  returned: always
  type: str
  sample: its names changed
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.envoyage.core.plugins.module_utils import _files, _pki


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ca_key_path=dict(type="path", required=True),
            ca_cert_path=dict(type="path", required=True),
            key_path=dict(type="path", required=True),
            cert_path=dict(type="path", required=True),
            common_name=dict(type="str", required=True),
            subject_alt_names=dict(type="list", elements="str", required=True),
            usage=dict(type="str", choices=["server", "client", "both"], default="server"),
            days=dict(type="int", default=365),
            renew_before_days=dict(type="int", default=30),
            **_pki.private_key_spec(),
            **_files.owner_group_spec(),
        ),
        supports_check_mode=True,
    )
    p = module.params
    problem = _pki.leaf_options_problem(
        p["common_name"], p["subject_alt_names"], p["days"], p["renew_before_days"]
    ) or _files.target_problem(p, ("key_path", "cert_path"))
    if problem:
        module.fail_json(msg=problem)
    options = dict((k, v) for k, v in p.items() if k not in _files.owner_group_spec())
    try:
        result = _pki.ensure_leaf(check_mode=module.check_mode, **options)
    except _pki.PkiError as exc:
        module.fail_json(msg=str(exc))
    result["reason"] = result["reason"] or ""
    result["changed"] = _files.apply_owner_group(module, (p["key_path"], p["cert_path"]), result["changed"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
