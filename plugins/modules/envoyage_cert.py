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
    description: The certificate's private key file (made with O(key_type) if missing).
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
  key_type:
    description: The algorithm of a new key.
    type: str
    choices: [ec, rsa, ed25519]
    default: ec
  key_size:
    description: The RSA key size of a new key (O(key_type=rsa) only).
    type: int
    choices: [2048, 3072, 4096]
    default: 3072
  days:
    description: How long a new certificate is valid, in days (never longer than the CA).
    type: int
    default: 365
  renew_before_days:
    description: Issue a new certificate when the current one expires within this many days.
    type: int
    default: 30
  owner:
    description: Owner of the key and certificate files (name or id); unchanged when not given.
    type: str
  group:
    description: Group of the key and certificate files (name or id); unchanged when not given.
    type: str
notes:
  - Supports check mode and diff mode (the diff shows the names and the validity).
requirements:
  - cryptography (Debian package C(python3-cryptography)) on the managed host
author:
  - Envoyage developers (@envoyage)
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

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.envoyage.core.plugins.module_utils._files import apply_owner_group, target_problem
from ansible_collections.envoyage.core.plugins.module_utils._pki import (
    PkiError,
    ca_problem,
    cert_pem,
    check_common_name,
    describe,
    issue_leaf,
    key_matches_cert,
    load_cert,
    load_key,
    load_named,
    new_key,
    parse_sans,
    renewal_reason,
    write_file,
)


def _summary(cert):
    if cert is None:
        return {}
    d = describe(cert)
    return {"subject_alt_names": d["subject_alt_names"], "not_after": d["not_after"], "issuer": d["issuer"]}


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
            key_type=dict(type="str", choices=["ec", "rsa", "ed25519"], default="ec"),
            key_size=dict(type="int", choices=[2048, 3072, 4096], default=3072),
            days=dict(type="int", default=365),
            renew_before_days=dict(type="int", default=30),
            owner=dict(type="str"),
            group=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not 1 <= p["days"] <= 3650:
        module.fail_json(msg="days: %d is not between 1 and 3650" % p["days"])
    if not 0 <= p["renew_before_days"] < p["days"]:
        module.fail_json(
            msg="renew_before_days: %d must be at least 0 and less than days (%d)" % (p["renew_before_days"], p["days"])
        )
    problem = target_problem(p, ("key_path", "cert_path"))
    if problem:
        module.fail_json(msg=problem)
    try:
        check_common_name(p["common_name"])
    except PkiError as exc:
        module.fail_json(msg="common_name: %s" % exc)
    try:
        parse_sans(p["subject_alt_names"])  # its errors name subject_alt_names
        ca_key = load_named("ca_key_path", load_key, p["ca_key_path"])
        ca_cert = load_named("ca_cert_path", load_cert, p["ca_cert_path"])
        if not key_matches_cert(ca_key, ca_cert):
            module.fail_json(
                msg="ca_key_path: the CA key %s does not match the CA certificate %s"
                % (p["ca_key_path"], p["ca_cert_path"])
            )
        problem = ca_problem(ca_cert, p["renew_before_days"])
        if problem:
            module.fail_json(msg="ca_cert_path: %s" % problem)
        key = load_named("key_path", load_key, p["key_path"]) if os.path.exists(p["key_path"]) else None
        cert = load_named("cert_path", load_cert, p["cert_path"]) if os.path.exists(p["cert_path"]) else None
        if cert is None:
            reason = "it did not exist"
        elif key is None:
            reason = "its key did not exist"
        elif not key_matches_cert(key, cert):
            reason = "it does not belong to the key"
        else:
            reason = renewal_reason(cert, p["renew_before_days"], p["subject_alt_names"], ca_cert) or ""
        before = _summary(cert)
        if reason:
            if module.check_mode:
                module.exit_json(
                    changed=True,
                    certificate="",
                    reason=reason,
                    diff={
                        "before": before,
                        "after": {"subject_alt_names": [value for _kind, value in parse_sans(p["subject_alt_names"])]},
                    },
                )
            if key is None:
                key = new_key(p["key_path"], p["key_type"], p["key_size"])
            cert = issue_leaf(ca_key, ca_cert, key, p["common_name"], p["subject_alt_names"], p["days"], p["usage"])
            write_file(p["cert_path"], cert_pem(cert), 0o644)
    except PkiError as exc:
        module.fail_json(msg=str(exc))
    changed = apply_owner_group(module, (p["key_path"], p["cert_path"]), bool(reason))
    module.exit_json(
        changed=changed,
        certificate=cert_pem(cert).decode("ascii"),
        info=describe(cert),
        reason=reason,
        diff={"before": before, "after": _summary(cert)},
    )


if __name__ == "__main__":
    main()
