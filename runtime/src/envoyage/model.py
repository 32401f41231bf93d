"""Desired state of one service, and the pure validation of user input into it.

`parse_service` turns untrusted JSON (control API, CLI) into a `ServiceSpec` or raises
`InputError` whose `field` names the offending field. Everything downstream (registry,
translation) only ever sees valid specs.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import idna

ACCESS_MODES = ("public", "vpn-only", "link-only", "auth")
# Access modes translated into real filters so far; the others fail closed (403).
BUILT_ACCESS_MODES = ("public", "vpn-only")
# `auth`: "none", "basic" or the name of a configured auth provider. Only "none" is
# built so far; anything else fails closed (403).
BUILT_AUTH = ("none",)
AUTH_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
SOURCES = ("manual", "docker")

NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
PATH_RE = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*\Z")
_HOST_RE = re.compile(r"^(?!-)[A-Za-z0-9.-]{1,253}(?<!-)\Z")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")


class InputError(ValueError):
    """Bad input for one field; `field` is the dotted field name."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class Upstream:
    host: str
    port: int

    @functools.cached_property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
            return True
        except ValueError:
            return False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


HEALTH_OFF = "off"  # health_check value that switches active health checking off
TIMEOUT_OFF = 0  # a timeout of 0 is no timeout ("off" in the API and labels)
DEFAULT_IDLE_TIMEOUT_MS = 3_600_000
MAX_TIMEOUT_MS = 86_400_000


@dataclass(frozen=True)
class HealthCheck:
    path: str = "/"
    interval_ms: int = 10_000
    timeout_ms: int = 2_000
    # inclusive ranges of expected HTTP status codes
    expected: tuple[tuple[int, int], ...] = ((200, 399),)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    domains: tuple[str, ...]
    upstreams: tuple[Upstream, ...]
    path: str = "/"
    access: str = "public"
    # None: a TCP connect check; HEALTH_OFF: no active check; HealthCheck: HTTP check
    health_check: HealthCheck | str | None = None
    source: str = "manual"
    auth: str = "none"
    tls_upstream: bool = False
    # long-lived requests: WebSocket upgrades allowed; no limit on a whole response by
    # default (downloads, streams, server-sent events); a request idle in both
    # directions for `idle_timeout_ms` is ended. TIMEOUT_OFF (0) switches a limit off.
    websocket: bool = True
    request_timeout_ms: int = TIMEOUT_OFF
    idle_timeout_ms: int = DEFAULT_IDLE_TIMEOUT_MS

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "domains": list(self.domains),
            "upstreams": [str(u) for u in self.upstreams],
            "path": self.path,
            "access": self.access,
            "health_check": self.health_check,
            "source": self.source,
            "auth": self.auth,
            "tls_upstream": self.tls_upstream,
            "websocket": self.websocket,
            "request_timeout": _fmt_timeout(self.request_timeout_ms),
            "idle_timeout": _fmt_timeout(self.idle_timeout_ms),
        }
        if isinstance(self.health_check, HealthCheck):
            hc = self.health_check
            data["health_check"] = {
                "path": hc.path,
                "interval": _fmt_ms(hc.interval_ms),
                "timeout": _fmt_ms(hc.timeout_ms),
                "expected": ",".join(f"{a}-{b}" if a != b else str(a) for a, b in hc.expected),
            }
        return data

    @functools.cached_property
    def content_hash(self) -> str:
        """Stable hash of the desired state; the translation cache key (computed once)."""
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _fmt_ms(ms: int) -> str:
    if ms % 3_600_000 == 0:
        return f"{ms // 3_600_000}h"
    if ms % 60_000 == 0 and ms >= 60_000:
        return f"{ms // 60_000}m"
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _fmt_timeout(ms: int) -> str:
    return "off" if ms == TIMEOUT_OFF else _fmt_ms(ms)


def parse_timeout_ms(field_name: str, value: Any) -> int:
    """A request or idle timeout: a duration from 1s to 24h, or 'off' (also 0 or false)."""
    if value is False or value == 0 or (isinstance(value, str) and value.strip().lower() in ("off", "0", "none")):
        return TIMEOUT_OFF
    return parse_duration_ms(field_name, value, low_ms=1_000, high_ms=MAX_TIMEOUT_MS, off_hint=True)


def parse_duration_ms(
    field_name: str, value: Any, low_ms: int = 100, high_ms: int = 3_600_000, off_hint: bool = False
) -> int:
    """'10s', '500ms', '1m', '2h', '1d' or a number of seconds -> milliseconds, within [low_ms, high_ms]."""
    if isinstance(value, bool):
        raise InputError(field_name, f"{value!r} is not a duration (use e.g. '10s' or '500ms')")
    if isinstance(value, (int, float)):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise InputError(field_name, f"{value!r} is not a duration (use e.g. '10s' or '500ms')")
    m = _DURATION_RE.fullmatch(text)
    if not m or len(text) > 20:
        hint = "'off', " if off_hint else ""
        raise InputError(field_name, f"{value!r} is not a duration (use e.g. {hint}'10s' or '500ms')")
    number, unit = float(m.group(1)), m.group(2) or "s"
    ms = int(number * {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[unit])
    if not low_ms <= ms <= high_ms:
        raise InputError(
            field_name,
            f"{value!r} must be between {_fmt_ms(low_ms)} and {_fmt_ms(high_ms)}" + (" (or 'off')" if off_hint else ""),
        )
    return ms


CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def domain_to_ascii(field_name: str, value: str) -> str:
    """One domain (no wildcard) -> its ASCII form, as browsers send it in Host.

    Unicode labels are encoded with UTS #46, non-transitional (IDNA 2008, 'faß' stays
    'faß': xn--fa-hia); ASCII labels are only lower-cased and checked, so names such as
    'ab--c' that browsers accept stay valid; an 'xn--' label must decode."""
    if value.isascii():
        mapped = value.lower()  # checked as a host name by the caller
    else:
        try:
            mapped = idna.uts46_remap(value, std3_rules=True, transitional=False)
        except idna.IDNAError as exc:
            raise InputError(field_name, f"{value!r} cannot be encoded as a domain name: {exc}") from None
    labels = []
    for label in mapped.split("."):
        try:
            if not label.isascii():
                label = idna.alabel(label).decode("ascii")
            elif label.startswith("xn--"):
                idna.ulabel(label)  # an A-label must be valid punycode of a valid U-label
        except (idna.IDNAError, UnicodeError) as exc:
            raise InputError(
                field_name, f"{value!r}: the label {label!r} cannot be encoded as a domain name: {exc}"
            ) from None
        labels.append(label)
    return ".".join(labels)


def parse_domain(field_name: str, value: Any) -> str:
    """A domain (or '*.domain') -> its lower-case ASCII form; Unicode names are accepted."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(field_name, f"{value!r} is not a domain name")
    if CONTROL_RE.search(value):
        raise InputError(field_name, f"{value!r} contains a control character")
    domain = value.strip().rstrip(".")
    wildcard = domain.startswith("*.")
    if domain == "*":
        raise InputError(field_name, "'*' alone is not allowed; use a wildcard like '*.example.com'")
    rest = domain[2:] if wildcard else domain
    if not rest or "*" in rest:
        raise InputError(field_name, f"{value!r} is not a valid domain name ('*' only as the whole first label)")
    rest = domain_to_ascii(field_name, rest)
    labels = rest.split(".")
    if len(rest) + 2 * wildcard > 253 or not all(_LABEL_RE.fullmatch(lbl) for lbl in labels):
        raise InputError(field_name, f"{value!r} is not a valid domain name")
    if is_public_suffix(rest):
        what = f"a wildcard on the public suffix '{rest}'" if wildcard else f"the public suffix '{rest}' itself"
        raise InputError(
            field_name,
            f"{value!r} is {what}: anyone can register names under it, so no one installation can claim them all",
        )
    return f"*.{rest}" if wildcard else rest


@functools.lru_cache(maxsize=1)
def _public_suffixes():
    """The Public Suffix List from the maintained `publicsuffixlist` package (loaded once).
    Unknown TLDs (test, localhost, home.arpa, a LAN's own names) are not public suffixes."""
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList(accept_unknown=False)


def is_public_suffix(name: str) -> bool:
    """'com', 'co.uk', 'github.io': names under which anyone can register (ASCII form)."""
    return bool(name) and _public_suffixes().is_public(name)


def zone_of(domain: str, zones: tuple[str, ...]) -> str | None:
    """The configured zone `domain` (or a wildcard's base) lies in, else None."""
    base = domain[2:] if domain.startswith("*.") else domain
    return next((z for z in zones if base == z or base.endswith("." + z)), None)


def zones_problem(domain: str, zones: tuple[str, ...]) -> str | None:
    """Why `domain` may not be served by this installation (None: it may). With no
    zones configured every name is allowed."""
    if not zones or zone_of(domain, zones) is not None:
        return None
    return (
        f"'{domain_display(domain)}' is not in this installation's domains ({', '.join(zones)}); add its zone to "
        "the 'domains' setting if it is yours"
    )


def domain_display(domain: str) -> str:
    """The Unicode form of a stored (ASCII) domain, for people; the ASCII form if it has none."""
    if "xn--" not in domain:
        return domain
    wildcard = domain.startswith("*.")
    rest = domain[2:] if wildcard else domain
    try:
        shown = idna.decode(rest)
    except (idna.IDNAError, UnicodeError):
        return domain
    return f"*.{shown}" if wildcard else shown


def parse_upstream(field_name: str, value: Any) -> Upstream:
    if not isinstance(value, str) or not value.strip():
        raise InputError(field_name, f"{value!r} is not an upstream; use HOST:PORT")
    text = value.strip()
    for prefix in ("http://", "https://"):
        if text.startswith(prefix):
            raise InputError(field_name, f"{value!r}: give HOST:PORT without a scheme")
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
    else:
        host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise InputError(field_name, f"{value!r} is not an upstream; use HOST:PORT")
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise InputError(field_name, f"{value!r}: '{port_text}' is not a port number")
    if "%" in host:
        raise InputError(
            field_name,
            f"{value!r}: IPv6 zone ids ('%...') are not supported; use an address Envoy can reach without one",
        )
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if not _HOST_RE.match(host) or ".." in host:
            raise InputError(field_name, f"{value!r}: '{host}' is not a host name or IP address") from None
        host = host.lower()
    return Upstream(host, int(port_text))


def parse_status_ranges(field_name: str, value: Any) -> tuple[tuple[int, int], ...]:
    """'200-399', '200,204', '200-299,301' -> inclusive ranges."""
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if not text:
        raise InputError(field_name, f"{value!r} is not a list of status codes (e.g. '200-399')")
    ranges = []
    for part in text.split(","):
        lo, _sep, hi = part.strip().partition("-")
        hi = hi or lo
        if not (f"{lo}{hi}".isascii() and lo.isdigit() and hi.isdigit()) or not (100 <= int(lo) <= int(hi) <= 599):
            raise InputError(field_name, f"'{part.strip()}' is not a status code or range between 100 and 599")
        ranges.append((int(lo), int(hi)))
    return tuple(ranges)


def parse_health_check(field_name: str, value: Any) -> HealthCheck | str | None:
    if value is None or value == "tcp":
        return None
    if value is False or value == HEALTH_OFF:
        return HEALTH_OFF
    if isinstance(value, str):
        value = {"path": value}
    if not isinstance(value, Mapping):
        raise InputError(field_name, "expected an object with path, interval, timeout, expected")
    unknown = set(value) - {"path", "interval", "timeout", "expected"}
    if unknown:
        raise InputError(f"{field_name}.{sorted(unknown)[0]}", "unknown field")
    path = value.get("path", "/")
    if not isinstance(path, str) or not PATH_RE.match(path):
        raise InputError(f"{field_name}.path", f"{path!r} is not an absolute URL path")
    interval = parse_duration_ms(f"{field_name}.interval", value.get("interval", "10s"))
    timeout = parse_duration_ms(f"{field_name}.timeout", value.get("timeout", "2s"))
    if timeout > interval:
        raise InputError(f"{field_name}.timeout", "must not be longer than the interval")
    expected = parse_status_ranges(f"{field_name}.expected", value.get("expected", "200-399"))
    return HealthCheck(path=path, interval_ms=interval, timeout_ms=timeout, expected=expected)


def _parse_list(field_name: str, value: Any, parse_one, empty_message: str, split) -> list:
    """A non-empty list (or a string `split` into one) of unique items, each parsed."""
    if isinstance(value, str):
        value = split(value)
    if not isinstance(value, list) or not value:
        raise InputError(field_name, empty_message)
    items: list = []
    for i, raw in enumerate(value):
        item = parse_one(f"{field_name}[{i}]", raw)
        if item in items:
            raise InputError(f"{field_name}[{i}]", f"'{item}' is listed twice")
        items.append(item)
    return items


_SERVICE_FIELDS = {
    "name",
    "domains",
    "upstreams",
    "path",
    "access",
    "health_check",
    "source",
    "auth",
    "tls_upstream",
    "websocket",
    "request_timeout",
    "idle_timeout",
}


def parse_service(data: Any, *, name: str | None = None) -> ServiceSpec:
    """Validate untrusted input into a ServiceSpec. `name` (from the URL) wins if given."""
    if not isinstance(data, Mapping):
        raise InputError("body", "expected a JSON object")
    unknown = set(data) - _SERVICE_FIELDS
    if unknown:
        raise InputError(sorted(unknown)[0], f"unknown field (known: {', '.join(sorted(_SERVICE_FIELDS))})")
    svc_name = name if name is not None else data.get("name")
    if not isinstance(svc_name, str) or not NAME_RE.match(svc_name):
        raise InputError(
            "name", f"{svc_name!r} is not a valid service name (lowercase letters, digits and '-', up to 63)"
        )
    domains = _parse_list(
        "domains",
        data.get("domains"),
        parse_domain,
        "at least one domain is required",
        split=lambda text: text.split(","),
    )
    upstreams = _parse_list(
        "upstreams",
        data.get("upstreams"),
        parse_upstream,
        "at least one upstream HOST:PORT is required",
        split=lambda text: [text],
    )
    if any(u.is_ip for u in upstreams) and not all(u.is_ip for u in upstreams):
        raise InputError("upstreams", "mix of IP addresses and host names; use one kind per service")
    path = data.get("path", "/")
    if not isinstance(path, str) or not PATH_RE.match(path):
        raise InputError("path", f"{path!r} is not an absolute URL path prefix")
    access = data.get("access", "public")
    if access not in ACCESS_MODES:
        raise InputError("access", f"{access!r} is not one of {', '.join(ACCESS_MODES)}")
    source = data.get("source", "manual")
    if source not in SOURCES:
        raise InputError("source", f"{source!r} is not one of {', '.join(SOURCES)}")
    auth = data.get("auth", "none")
    if not isinstance(auth, str) or not AUTH_RE.match(auth):
        raise InputError("auth", f"{auth!r} is not 'none', 'basic' or an auth provider name")
    tls_upstream = data.get("tls_upstream", False)
    if not isinstance(tls_upstream, bool):
        raise InputError("tls_upstream", f"{tls_upstream!r} is not true or false")
    websocket = data.get("websocket", True)
    if not isinstance(websocket, bool):
        raise InputError("websocket", f"{websocket!r} is not true or false")
    request_timeout = parse_timeout_ms("request_timeout", data.get("request_timeout", "off"))
    idle_timeout = parse_timeout_ms("idle_timeout", data.get("idle_timeout", _fmt_ms(DEFAULT_IDLE_TIMEOUT_MS)))
    return ServiceSpec(
        name=svc_name,
        auth=auth,
        tls_upstream=tls_upstream,
        websocket=websocket,
        request_timeout_ms=request_timeout,
        idle_timeout_ms=idle_timeout,
        domains=tuple(domains),
        upstreams=tuple(upstreams),
        path=path,
        access=access,
        health_check=parse_health_check("health_check", data.get("health_check")),
        source=source,
    )


def merge_update(current: ServiceSpec, changes: Any) -> ServiceSpec:
    """Apply a partial update (PATCH body) to a spec, validating the result."""
    if not isinstance(changes, Mapping):
        raise InputError("body", "expected a JSON object")
    if "name" in changes and changes["name"] != current.name:
        raise InputError("name", "a service cannot be renamed; remove it and add it again")
    merged = current.to_json()
    merged.update(changes)
    return parse_service(merged, name=current.name)


@dataclass
class ServiceState:
    """A service as the registry holds it: desired state plus what the system saw.

    `spec` is None for a discovered service whose labels could not be turned into a
    valid spec; `source_problems` then says why (and it is not served).
    """

    name: str
    source: str
    spec: ServiceSpec | None
    first_seen: float
    updated_at: float
    problems: list[str] = field(default_factory=list)
    source_problems: list[str] = field(default_factory=list)
    origin: str = ""  # e.g. "container:<id>": the tie-breaker between equal first_seen
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: ServiceSpec, first_seen: float = 0.0, **kw: Any) -> ServiceState:
        return cls(
            name=spec.name,
            source=spec.source,
            spec=spec,
            first_seen=first_seen,
            updated_at=kw.pop("updated_at", first_seen),
            **kw,
        )

    def to_json(self) -> dict[str, Any]:
        if self.spec is not None:
            data = self.spec.to_json()
        else:
            data = {
                "name": self.name,
                "source": self.source,
                "domains": list(self.detail.get("domains", [])),
                "upstreams": [],
                "path": None,
                "access": None,
                "health_check": None,
                "auth": None,
                "tls_upstream": None,
                "websocket": None,
                "request_timeout": None,
                "idle_timeout": None,
            }
        data["domains_unicode"] = [domain_display(d) for d in data["domains"]]
        data["first_seen"] = self.first_seen
        data["updated_at"] = self.updated_at
        data["problems"] = list(self.problems)
        if self.detail:
            data["detail"] = dict(self.detail)
        return data
