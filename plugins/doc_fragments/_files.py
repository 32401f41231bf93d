# -*- coding: utf-8 -*-
# Copyright: Envoyage contributors
# Apache License 2.0 (see LICENSE)

# This documentation fragment is PRIVATE to the collection (as in community.crypto): it may
# change at any time. Do not use it from other collections or standalone modules.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # the owner and group of the files a module writes
    DOCUMENTATION = r"""
options:
  owner:
    description: Owner (name or id) of the files the module writes; unchanged when not given.
    type: str
  group:
    description: Group (name or id) of the files the module writes; unchanged when not given.
    type: str
"""
