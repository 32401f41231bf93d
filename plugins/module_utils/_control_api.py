# -*- coding: utf-8 -*-
# Copyright: Envoyage contributors
# Apache License 2.0 (see LICENSE)
"""A small client of the Envoyage control API (JSON over HTTP on its Unix socket), for the
envoyage_service module on hosts where the runtime's own client is not importable, and
what that module decides (ensure_service: what changes, in check mode too).

Private to the collection (not public API): its name starts with an underscore, as in
community.crypto."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import socket
from http.client import HTTPConnection
from urllib.parse import quote

# the options of envoyage_service that are the service's fields in the API
SERVICE_FIELDS = (
    "domains",
    "upstreams",
    "path",
    "access",
    "health_check",
    "websocket",
    "request_timeout",
    "idle_timeout",
)
SERVICE_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# what the API returns besides the desired state itself
NOT_COMPARED = ("problems", "domains_unicode", "first_seen", "updated_at", "detail")


class ApiError(Exception):
    def __init__(self, status, message, field=None):
        Exception.__init__(self, message)
        self.status, self.message, self.field = status, message, field

    def option_message(self):
        """The message, prefixed with the field it names (if any, and not the whole body)."""
        field = self.field if self.field and self.field != "body" else None
        return "%s%s" % ("%s: " % field if field else "", self.message)


class _UnixConnection(HTTPConnection):
    def __init__(self, path, timeout):
        HTTPConnection.__init__(self, "localhost", timeout=timeout)
        self.path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
        except BaseException:
            sock.close()  # a control plane that is not there leaves no socket open
            raise
        self.sock = sock


def request(socket_path, method, path, body=None, timeout=30):
    """(status, decoded JSON or None). ApiError for an answer >= 400 (with the API's field)
    and when the control plane cannot be reached."""
    conn = _UnixConnection(socket_path, timeout)
    try:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, "/v1" + path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    except OSError as exc:
        raise ApiError(
            0,
            "the control plane is not reachable on %s (%s); is envoyage-control running?"
            % (socket_path, getattr(exc, "strerror", None) or exc),
        ) from None
    finally:
        conn.close()
    try:
        decoded = json.loads(raw.decode("utf-8")) if raw else None
    except ValueError:
        decoded = {"error": raw.decode("utf-8", "replace").strip()[:300]}
    if resp.status >= 400:
        decoded = decoded if isinstance(decoded, dict) else {}
        raise ApiError(resp.status, decoded.get("error") or "HTTP %d" % resp.status, decoded.get("field"))
    return resp.status, decoded


# -- what envoyage_service decides ------------------------------------------------------


def service_name_problem(name):
    """A sentence naming the option if `name` is not a service name, else None (checked
    before any request, so that a name never becomes another path of the API)."""
    if SERVICE_NAME_RE.match(name or ""):
        return None
    return (
        "name: %r is not a service name (lowercase letters, digits and '-', up to 63, "
        "starting and ending with a letter or digit)" % (name,)
    )


def comparable(service):
    """A service as the API returns it, without what is not part of its desired state."""
    return dict((k, v) for k, v in (service or {}).items() if k not in NOT_COMPARED)


def service_change(current, desired):
    """(before, after) of the diff, and whether they differ: what `desired` (the API's
    normalized form, from a dry run) changes of `current` (None: no such service)."""
    before, after = comparable(current), comparable(desired)
    return before, after, before != after


def ensure_service(socket_path, name, state, fields, check_mode=False):
    """Make the manual service `name` exist as `fields` (SERVICE_FIELDS; None: not given,
    the API's default) describe it, or not exist (state "absent"). The control plane
    normalizes the service first (a dry run), so only a real difference changes anything.

    Returns what envoyage_service returns: `changed`, `service` (as the control plane
    stores it; as it would be in check mode; {} after removal) and `diff` (the service's
    desired state before and after). ApiError (with the field it names) for what the API
    refuses, and for a service from Docker discovery."""
    url = "/services/%s" % quote(name, safe="")
    try:
        current = request(socket_path, "GET", url)[1]
    except ApiError as exc:
        if exc.status != 404:
            raise
        current = None
    if current is not None and current.get("source") not in (None, "manual"):
        raise ApiError(
            409,
            "service '%s' comes from %s discovery; change its labels instead" % (name, current.get("source")),
            "name",
        )
    if state == "absent":
        if current is not None and not check_mode:
            request(socket_path, "DELETE", url)
        return {"changed": current is not None, "service": {}, "diff": {"before": comparable(current), "after": {}}}
    body = dict((k, v) for k, v in fields.items() if k in SERVICE_FIELDS and v is not None)
    if fields.get("health_check") is None:
        body["health_check"] = None  # not given: the control plane's default check
    desired = request(socket_path, "PUT", url + "?dry_run=1", body)[1]
    before, after, changed = service_change(current, desired)
    service = current or {}
    if changed and check_mode:
        service = desired
    elif changed and current is None:
        service = request(socket_path, "POST", "/services", dict(body, name=name))[1]
    elif changed:
        service = request(socket_path, "PUT", url, body)[1]
    return {"changed": changed, "service": service, "diff": {"before": before, "after": after}}
