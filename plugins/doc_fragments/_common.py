# -*- coding: utf-8 -*-
# Copyright: Envoyage contributors
# Apache License 2.0 (see LICENSE)

# This documentation fragment is PRIVATE to the collection (as in community.crypto): it may
# change at any time. Do not use it from other collections or standalone modules.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # what every module of the collection documents alike: who wrote it, and that it
    # supports check mode and diff mode in full
    DOCUMENTATION = r"""
options: {}
author:
  - Envoyage developers (@envoyage)
attributes:
  check_mode:
    description: Can run in check mode and return what would change without changing the target.
    support: full
  diff_mode:
    description: Returns what has changed (or would change, in check mode) in diff mode.
    support: full
"""
