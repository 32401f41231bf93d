"""`envoyage.*` container labels -> service fields, strictly (pure).

Every invalid value becomes a named, human-readable problem ("envoyage.port: 'eighty'
is not a port number"); a container with any problem is not served, and nobody else
is affected. docs/labels.md documents every label and every problem text.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..model import (
    AUTH_RE,
    CONTROL_RE,
    NAME_RE,
    PATH_RE,
    InputError,
    parse_domain,
    parse_duration_ms,
    parse_status_ranges,
    parse_timeout_ms,
)

PREFIX = "envoyage."
LABELS = (
    "envoyage.enable",
    "envoyage.domain",
    "envoyage.port",
    "envoyage.auth",
    "envoyage.access",
    "envoyage.healthcheck",
    "envoyage.tls.upstream",
    "envoyage.path",
    "envoyage.network",
    "envoyage.name",
    "envoyage.websocket",
    "envoyage.timeout.request",
    "envoyage.timeout.idle",
    "envoyage.scope",
)
SCOPE_LABEL = "envoyage.scope"
LABEL_ACCESS = ("public", "vpn-only", "link-only")
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
_NETWORK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


@dataclass
class LabelResult:
    """What the labels of one container ask for."""

    enabled: bool = False
    name: str | None = None
    domains: list[str] = field(default_factory=list)
    port: int | None = None
    network: str | None = None
    service: dict[str, Any] = field(default_factory=dict)  # fields for parse_service
    problems: list[str] = field(default_factory=list)

    def comparable(self) -> tuple:
        return (tuple(self.domains), self.port, self.network, tuple(sorted(self.service.items(), key=str)))


def parse_bool(label: str, value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InputError(label, f"'{value}' is not true or false")


def parse_port(label: str, value: str) -> int:
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise InputError(label, f"'{value}' is not a port number")
    return int(text)


def parse_healthcheck(label: str, value: str) -> dict[str, Any] | str | None:
    """Grammar: `tcp` | `off` | `PATH [interval=DURATION] [timeout=DURATION] [expect=CODES]`."""
    parts = value.split()
    if not parts:
        raise InputError(label, "empty; give a path like '/health', 'tcp' or 'off'")
    if parts == ["tcp"]:
        return None
    if parts == ["off"]:
        return "off"
    path, options = parts[0], parts[1:]
    if not PATH_RE.match(path):
        raise InputError(label, f"'{path}' is not an absolute URL path (or 'tcp' or 'off')")
    hc: dict[str, Any] = {"path": path}
    for opt in options:
        key, sep, val = opt.partition("=")
        if not sep or key not in ("interval", "timeout", "expect"):
            raise InputError(label, f"'{opt}' is not one of interval=DURATION, timeout=DURATION, expect=CODES")
        if key in ("interval", "timeout"):
            parse_duration_ms(label, val)
            hc[key] = val
        else:
            parse_status_ranges(label, val)
            hc["expected"] = val
    interval = parse_duration_ms(label, hc.get("interval", "10s"))
    timeout = parse_duration_ms(label, hc.get("timeout", "2s"))
    if timeout > interval:
        raise InputError(
            label, f"timeout {hc.get('timeout', '2s')} is longer than interval {hc.get('interval', '10s')}"
        )
    return hc


def in_scope(labels: Mapping[str, str], scope: str) -> bool:
    """Does a container belong to a control plane with this discovery scope ("" = all)?"""
    return not scope or labels.get(SCOPE_LABEL) == scope


def parse_labels(labels: Mapping[str, str], default_domain: str = "") -> LabelResult:
    """`default_domain`: with it, a container without envoyage.domain is served as
    <service name>.<default_domain> (the caller fills that in: it knows the name)."""
    res = LabelResult()
    ours = {k: v for k, v in labels.items() if k.startswith(PREFIX)}
    if not ours:
        return res
    for key in sorted(k for k, v in ours.items() if CONTROL_RE.search(v)):
        res.problems.append(f"{key}: {ours[key]!r} contains a control character")
        del ours[key]

    def attempt(label: str, fn, *args):
        try:
            return fn(label, *args)
        except InputError as exc:
            res.problems.append(f"{label}: {exc.message}")
            return None

    enable = ours.get("envoyage.enable")
    if enable is None:
        return res  # labelled, but not switched on
    enabled = attempt("envoyage.enable", parse_bool, enable)
    if not enabled:
        # 'false' switches a container off; an invalid value is a problem (and off)
        res.enabled = enabled is None
        return res
    res.enabled = True

    for key in sorted(ours):
        if key not in LABELS:
            close = difflib.get_close_matches(key, LABELS, n=1, cutoff=0.8)
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(LABELS)}"
            res.problems.append(f"{key}: unknown label; {hint}")

    domain = ours.get("envoyage.domain")
    if (domain is None or not domain.strip()) and default_domain:
        pass  # <name>.<default_domain>, filled in by derive_services
    elif domain is None or not domain.strip():
        res.problems.append(
            "envoyage.domain: missing; set the domain(s) to serve, e.g. envoyage.domain=app.example.com"
        )
    else:
        for item in domain.split(","):
            d = attempt("envoyage.domain", parse_domain, item.strip())
            if d is not None:
                if d in res.domains:
                    res.problems.append(f"envoyage.domain: '{d}' is listed twice")
                else:
                    res.domains.append(d)
    if "envoyage.port" in ours:
        res.port = attempt("envoyage.port", parse_port, ours["envoyage.port"])
    if "envoyage.name" in ours:
        name = ours["envoyage.name"].strip()
        if NAME_RE.match(name):
            res.name = name
        else:
            res.problems.append(
                f"envoyage.name: '{name}' is not a valid service name (lowercase letters, digits and '-', up to 63)"
            )
    if "envoyage.network" in ours:
        net = ours["envoyage.network"].strip()
        if _NETWORK_RE.match(net):
            res.network = net
        else:
            res.problems.append(f"envoyage.network: '{net}' is not a Docker network name")
    if "envoyage.auth" in ours:
        auth = ours["envoyage.auth"].strip().lower()
        if AUTH_RE.match(auth):
            res.service["auth"] = auth
        else:
            res.problems.append(f"envoyage.auth: '{ours['envoyage.auth']}' is not 'none', 'basic' or a provider name")
    if "envoyage.access" in ours:
        access = ours["envoyage.access"].strip().lower()
        if access in LABEL_ACCESS:
            res.service["access"] = access
        else:
            res.problems.append(f"envoyage.access: '{ours['envoyage.access']}' is not one of {', '.join(LABEL_ACCESS)}")
    if "envoyage.healthcheck" in ours:
        raw_hc = ours["envoyage.healthcheck"]
        hc = attempt("envoyage.healthcheck", parse_healthcheck, raw_hc)
        if hc is not None:
            res.service["health_check"] = hc
    if "envoyage.tls.upstream" in ours:
        tls = attempt("envoyage.tls.upstream", parse_bool, ours["envoyage.tls.upstream"])
        if tls is not None:
            res.service["tls_upstream"] = tls
    if "envoyage.websocket" in ours:
        ws = attempt("envoyage.websocket", parse_bool, ours["envoyage.websocket"])
        if ws is not None:
            res.service["websocket"] = ws
    for label, key in (("envoyage.timeout.request", "request_timeout"), ("envoyage.timeout.idle", "idle_timeout")):
        if label in ours:
            if attempt(label, parse_timeout_ms, ours[label]) is not None:
                res.service[key] = ours[label].strip()
    if "envoyage.path" in ours:
        path = ours["envoyage.path"].strip()
        if PATH_RE.match(path):
            res.service["path"] = path
        else:
            res.problems.append(f"envoyage.path: '{path}' is not an absolute URL path prefix (e.g. /app)")
    return res
