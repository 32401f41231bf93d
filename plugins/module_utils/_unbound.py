# -*- coding: utf-8 -*-
# Copyright: Envoyage contributors
# Apache License 2.0 (see LICENSE)
"""Home's resolver: Unbound's configuration, rendered in this one place. The unbound role
writes it through the filter envoyage.core.unbound_conf (plugins/filter/dns.py) and the
runtime (envoyage.dns.unbound.render_conf, which the namespace lab uses) imports it as
envoyage.module_utils._unbound: the two cannot drift.

Private to the collection (not a public API); only the standard library is used.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

# The defaults the unbound role documents (roles/unbound/defaults/main.yml; a unit test
# keeps the two equal). No forwarders: Unbound resolves from the root servers itself, so
# no third party sees the queries. The control socket: Debian's unit has no runtime
# directory for Unbound, so the socket lies directly in /run (Unbound makes it 0660, its
# owner and group; the control plane's user is in the group).
CONTROL_SOCKET = "/run/unbound.ctl"
FORWARDERS = ()
PORT = 53

# Every setting render_conf takes, with its default (None: required).
SETTINGS = {  # type: dict
    "listen": None,
    "include_file": None,
    "access": None,
    "forwarders": FORWARDERS,
    "port": PORT,
    # unbound-control: on a Unix socket (no network stack at all, and no TLS handshake per
    # change) or, with control_socket empty, on 127.0.0.1:control_port with the TLS keys
    # (0600) of unbound-control-setup in key_dir
    "control_socket": CONTROL_SOCKET,
    "control_port": 8953,
    "key_dir": "/etc/unbound",
    "directory": "/etc/unbound",
    "pidfile": "/run/unbound.pid",
    "username": "unbound",
    # the root's DNSSEC trust anchor (Debian's dns-root-data, kept current here), and extra
    # anchors ("zone. DS ..." or "zone. DNSKEY ...") for private signed zones
    "trust_anchor_file": "/var/lib/unbound/root.key",
    "trust_anchors": (),
    # empty: syslog
    "logfile": "",
    # Unbound answers some special-use names itself (test., invalid., home.arpa. ...); a
    # zone listed here is looked up like any other (the namespace lab serves example.test)
    "no_default_zones": (),
}


class UnboundConfError(ValueError):
    """A setting cannot be rendered; the sentence names it."""


def _strings(name, value):
    if isinstance(value, str):
        return [value]
    try:
        return [str(v) for v in value]
    except TypeError:
        raise UnboundConfError("%s: must be a list, not %r" % (name, value)) from None


def settings(**given):
    """`given` completed with the defaults; an unknown or missing setting is an error."""
    unknown = sorted(set(given) - set(SETTINGS))
    if unknown:
        raise UnboundConfError("unknown Unbound settings: %s" % ", ".join(unknown))
    out = {}
    for name, default in SETTINGS.items():
        value = given.get(name, default)
        if value is None:
            raise UnboundConfError("%s: required" % name)
        out[name] = value
    return out


def render_conf(**given):
    """Unbound's unbound.conf for the home resolver (settings: SETTINGS). Only the `access`
    networks may query (everyone else is refused); every answer from outside is validated
    with DNSSEC; the service zones come from `include_file`, which the DNS controller
    rewrites and applies live; names that are not service zones go to `forwarders`, or,
    with none, are resolved from the root servers."""
    s = settings(**given)
    try:
        port = int(s["port"])
    except (TypeError, ValueError):
        raise UnboundConfError("port: %r is not a port number" % (s["port"],)) from None
    access = []
    for net in _strings("access", s["access"]):
        try:
            access.append(str(ipaddress.ip_network(net.strip(), strict=False)))
        except ValueError:
            raise UnboundConfError("access: %r is not a network in CIDR notation" % (net,)) from None
    lines = [
        "# Written by Envoyage: the home resolver (split horizon, docs/dns.md). The service",
        "# zones are in %s, which the control plane writes and applies live." % s["include_file"],
        "server:",
    ]

    def add(key, value):
        lines.append("  %s: %s" % (key, value))

    for address in _strings("listen", s["listen"]):
        add("interface", "%s@%d" % (address, port) if port != 53 else address)
    add("port", port)
    add("do-ip6", "yes")
    add("username", '"%s"' % s["username"])
    add("chroot", '""')
    add("directory", '"%s"' % s["directory"])
    add("pidfile", '"%s"' % s["pidfile"])
    add("use-syslog", "no" if s["logfile"] else "yes")
    if s["logfile"]:
        add("logfile", '"%s"' % s["logfile"])
    add("hide-identity", "yes")
    add("hide-version", "yes")
    # only the LAN may ask; everyone else is refused
    add("access-control", "0.0.0.0/0 refuse")
    add("access-control", "::/0 refuse")
    for net in access:
        add("access-control", "%s allow" % net)
    # DNSSEC: validate every answer that comes from outside
    add("module-config", '"validator iterator"')
    if s["trust_anchor_file"]:
        add("auto-trust-anchor-file", '"%s"' % s["trust_anchor_file"])
    for anchor in _strings("trust_anchors", s["trust_anchors"]):
        add("trust-anchor", '"%s"' % anchor)
    add("val-log-level", 1)
    for zone in _strings("no_default_zones", s["no_default_zones"]):
        add("local-zone", '"%s." nodefault' % zone.rstrip("."))
    # the service zones (the DNS controller rewrites this file and applies changes live)
    add("include", '"%s"' % s["include_file"])
    lines += ["", "remote-control:", "  control-enable: yes"]
    if s["control_socket"]:
        lines += ['  control-interface: "%s"' % s["control_socket"], "  control-use-cert: no"]
    else:
        key_dir = s["key_dir"]
        lines += [
            "  control-interface: 127.0.0.1",
            "  control-port: %d" % int(s["control_port"]),
            '  server-key-file: "%s/unbound_server.key"' % key_dir,
            '  server-cert-file: "%s/unbound_server.pem"' % key_dir,
            '  control-key-file: "%s/unbound_control.key"' % key_dir,
            '  control-cert-file: "%s/unbound_control.pem"' % key_dir,
        ]
    forwarders = _strings("forwarders", s["forwarders"])
    if forwarders:
        lines += ["", "forward-zone:", '  name: "."']
        lines += ["  forward-addr: %s" % up for up in forwarders]
    return "\n".join(lines) + "\n"
