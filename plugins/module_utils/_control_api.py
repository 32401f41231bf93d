# -*- coding: utf-8 -*-
# Copyright: Envoyage contributors
# Apache License 2.0 (see LICENSE)
"""A small client of the Envoyage control API (JSON over HTTP on its Unix socket), for the
envoyage_service module on hosts where the runtime's own client is not importable."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import socket

try:
    from http.client import HTTPConnection
except ImportError:  # pragma: no cover - Python 2 is not supported
    HTTPConnection = object


class ApiError(Exception):
    def __init__(self, status, message, field=None):
        Exception.__init__(self, message)
        self.status, self.message, self.field = status, message, field


class _UnixConnection(HTTPConnection):
    def __init__(self, path, timeout):
        HTTPConnection.__init__(self, "localhost", timeout=timeout)
        self.path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
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
        )
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
