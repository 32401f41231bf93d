# -*- coding: utf-8 -*-
# Copyright: Envoyage contributors
# Apache License 2.0 (see LICENSE)

# This documentation fragment is PRIVATE to the collection (as in community.crypto): it may
# change at any time. Do not use it from other collections or standalone modules.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # a private key the module makes when it is missing (an existing key is kept)
    DOCUMENTATION = r"""
options:
  key_type:
    description: The algorithm of a new private key (an existing key is kept as it is).
    type: str
    choices: [ec, rsa, ed25519]
    default: ec
  key_size:
    description: The size of a new RSA key in bits (O(key_type=rsa) only).
    type: int
    choices: [2048, 3072, 4096]
    default: 3072
requirements:
  - cryptography (Debian package C(python3-cryptography)) on the managed host
"""
