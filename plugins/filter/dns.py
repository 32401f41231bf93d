# -*- coding: utf-8 -*-
# Copyright: Envoyage contributors
# Apache License 2.0 (see LICENSE)
"""The filter the unbound role writes Unbound's configuration with: the renderer the
runtime uses (module_utils._unbound), so that the resolver's configuration exists once."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError
from ansible_collections.envoyage.core.plugins.module_utils._unbound import UnboundConfError, render_conf

DOCUMENTATION = r"""
name: dns
short_description: Home's resolver configuration for the Envoyage roles
description:
  - C(unbound_conf) renders Unbound's configuration (unbound.conf) for home's split-horizon
    resolver from a dictionary of settings (C(listen), C(port), C(access), C(forwarders),
    C(include_file), C(control_socket) and the other keys of module_utils._unbound.SETTINGS),
    with the same code the runtime uses.
author: Envoyage developers (@envoyage)
"""


def unbound_conf(settings):
    """unbound.conf for `settings` (a dict); a bad setting fails naming it."""
    if not isinstance(settings, dict):
        raise AnsibleFilterError("unbound_conf: expects a dictionary of settings, not %r" % (settings,))
    try:
        return render_conf(**settings)
    except UnboundConfError as exc:
        raise AnsibleFilterError("unbound_conf: %s" % exc) from None


class FilterModule:
    def filters(self):
        return {"unbound_conf": unbound_conf}
