"""Control-plane configuration: a YAML file, overridden by ENVOYAGE_* variables.

Every setting has a default (docs/configuration.md). The file is optional; a
missing file means "all defaults". Unknown keys and wrong types are errors that name
the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .model import InputError, parse_domain, parse_duration_ms


class ConfigError(ValueError):
    """The configuration file or an ENVOYAGE_* variable is invalid."""


# defaults the control plane (home) and the edge (VPS) share: they must agree
RUN_DIR = Path("/run/envoyage")
LOG_DIR = Path("/var/log/envoyage")
TUNNEL_PREFIX = "10.88.0.0/24"
LINK_PORT = 18443  # the edge link, on home's tunnel address


class _ServesXds:
    """Both daemons serve ADS on a Unix socket: `xds_socket`, by default <run_dir>/xds.sock."""

    run_dir: Path
    xds_socket: Path | None

    @property
    def xds_socket_path(self) -> Path:
        return self.xds_socket or (self.run_dir / "xds.sock")


@dataclass(frozen=True)
class Config(_ServesXds):
    # where things live
    state_dir: Path = Path("/var/lib/envoyage")
    run_dir: Path = RUN_DIR
    log_dir: Path = LOG_DIR
    # the control API (JSON over HTTP on a Unix socket); defaults to run_dir/control.sock
    control_socket: Path | None = None
    # the xDS (ADS) gRPC server: on a Unix socket (default; only the socket's group, the
    # Envoy service user's, may connect) or on TCP (tests, the benchmarks; any local user
    # can connect to a TCP port)
    xds_transport: str = "unix"
    xds_socket: Path | None = None  # default <run_dir>/xds.sock
    xds_socket_group: str = ""  # group name or id that may connect ("": the control plane's own)
    xds_address: str = "127.0.0.1"
    xds_port: int = 18000
    # concurrent ADS streams admitted (each costs two threads); over the limit, an Envoy
    # this control plane has seen before still gets in (an unknown stream makes room)
    xds_max_streams: int = 256
    # gRPC keepalive: a ping every `xds_keepalive` seconds; a peer that does not answer
    # within `xds_keepalive_timeout` is dropped and its stream freed
    xds_keepalive: float = 30.0
    xds_keepalive_timeout: float = 10.0
    # a stream that names no node within this many seconds is closed
    xds_first_request_timeout: float = 10.0
    # a disconnected Envoy leaves `envoyage status` this long after it went (nodes that
    # ACKed our configuration stay listed under known nodes)
    xds_forget_after: float = 3600.0
    # the home Envoy's HTTP listener (what translation puts into the listener)
    home_http_address: str = "0.0.0.0"
    home_http_port: int = 80
    # logging of the control plane itself: debug | info | warning | error
    log_level: str = "info"
    # Docker discovery: on by default; docker_host "" means $DOCKER_HOST or the default
    # socket; docker_mesh creates `envoyage-mesh` and attaches labelled containers
    docker_enabled: bool = True
    docker_host: str = ""
    docker_mesh: bool = False
    # Docker discovery scope: "" takes every labelled container on the daemon; a value
    # takes only containers labelled envoyage.scope=<value> (several control planes, or
    # a demo and tests, sharing one dockerd)
    docker_scope: str = ""
    # the zones this installation serves (e.g. example.org): a label or API request for a
    # name outside them is a named problem and not served. Empty: any name (the roles
    # always set it from envoyage_domain and envoyage_domains)
    domains: tuple = ()
    # labels baked into an image (not set on the container or in the compose file) do not
    # publish anything unless this is true: a pulled image must not expose itself
    discovery_trust_image_labels: bool = False
    # a labelled container without envoyage.domain is served as <name>.<docker_default_domain>
    # ("" = envoyage.domain is required)
    docker_default_domain: str = ""
    # serve the registry even if it is older or smaller than its last known state (after
    # restoring a backup on purpose); `envoyage control --accept-registry` sets it
    accept_registry: bool = False
    # -- topology: "c" = home only; "a" = home + VPS (the tunnel, the edge link, the
    # tunnel listener). "b" (control plane on the VPS) is not available yet.
    topology: str = "c"
    # the WireGuard tunnel (the `wireguard` role brings it up; the control plane reads its
    # status): its interface on home, and the prefix the address plan comes from (the
    # VPS gets the first address, home the second)
    tunnel_interface: str = "envoyage0"
    tunnel_prefix: str = TUNNEL_PREFIX
    # the tunnel's status as the wireguard role's root-run writer keeps it (wireguard-go's
    # control socket is root's alone); default /run/envoyage-tunnel/<tunnel_interface>.json.
    # Read when it exists (a stale one is a problem), else the interface itself
    tunnel_status_file: Path | None = None
    # the edge link (gRPC, our own protocol) on home's tunnel address, and the file with
    # home's link key, derived from the edge's secret (`envoyage link-secret`; 0600)
    link_port: int = LINK_PORT
    link_key_file: Path | None = None  # default <state_dir>/edge-link.key
    # the home Envoy's listener for the edge, on home's tunnel address (PROXY protocol v2,
    # only from the VPS's tunnel address)
    home_tunnel_port: int = 18080
    # what the edge (VPS) Envoy gets: its public HTTP port and addresses, its access log,
    # and how often it checks each service across the tunnel (slow on purpose)
    edge_http_port: int = 80
    edge_addresses: tuple = ("0.0.0.0", "::")
    edge_access_log: Path = Path("/var/log/envoyage/access.log")
    edge_health_interval: float = 30.0
    # what one internet client may hold on the edge Envoy's public listener (docs/security.md;
    # none of these cuts a WebSocket or a long download, which have per-service timeouts)
    edge_max_connections: int = 5000
    edge_request_headers_timeout: float = 10.0
    edge_idle_timeout: float = 60.0
    edge_stream_idle_timeout: float = 300.0
    edge_http2_max_concurrent_streams: int = 100
    edge_http2_initial_stream_window: int = 65536
    edge_http2_initial_connection_window: int = 1048576
    # who may use vpn-only services on the home Envoy: LAN and VPN client networks. Empty
    # lan_cidrs: the networks of home's default-route interface(s). An entry that overlaps
    # the tunnel prefix or one of home's Docker networks is refused (a named problem);
    # loopback only when listed (networks.py)
    lan_cidrs: tuple = ()
    vpn_cidrs: tuple = ()
    # -- split-horizon DNS (docs/dns.md): the home resolver (Unbound) answers every service
    # domain with `dns_answer_address` (home's LAN address), so the LAN stays on the LAN
    dns_enabled: bool = False
    dns_answer_address: str = ""
    dns_answer_address6: str = ""
    dns_ttl: int = 60
    # the file of local zones Unbound includes (it must be able to read it; the directory
    # must be writable by the control plane, which replaces the file atomically)
    dns_include_file: Path = Path("/var/lib/envoyage-dns/zones.conf")
    dns_unbound_config: Path = Path("/etc/unbound/unbound.conf")
    dns_unbound_control: str = "unbound-control"
    # for `envoyage check`: where LAN clients ask (default: the answer address, port 53),
    # a public resolver (what the internet sees), and the VPS's public address
    dns_server: str = ""
    dns_public_resolver: str = "9.9.9.9"
    edge_public_address: str = ""
    _source: str = field(default="defaults", compare=False, repr=False)

    @property
    def db_path(self) -> Path:
        return self.state_dir / "envoyage.db"

    @property
    def socket_path(self) -> Path:
        return self.control_socket or (self.run_dir / "control.sock")

    @property
    def access_log_path(self) -> Path:
        return self.log_dir / "access.log"

    @property
    def tunnel_status_path(self) -> Path:
        return self.tunnel_status_file or Path("/run/envoyage-tunnel") / f"{self.tunnel_interface}.json"

    @property
    def link_key_path(self) -> Path:
        return self.link_key_file or (self.state_dir / "edge-link.key")


@dataclass(frozen=True)
class EdgeConfig(_ServesXds):
    """`envoyage edge` on the VPS (/etc/envoyage/edge.yaml)."""

    edge_id: str = "edge"
    run_dir: Path = RUN_DIR
    log_dir: Path = LOG_DIR
    # the control plane's edge link: home's tunnel address (default: from the tunnel
    # prefix's plan) and port, and the file holding this edge's secret (0600)
    tunnel_prefix: str = TUNNEL_PREFIX
    link_address: str = ""
    link_port: int = LINK_PORT
    secret_file: Path = Path("/etc/envoyage/edge.secret")
    # the Unix socket the VPS Envoy's ADS client connects to (default <run_dir>/xds.sock)
    xds_socket: Path | None = None
    # the edge starts and supervises the VPS Envoy (docs/architecture.md: one supervisor)
    envoy_supervise: bool = True
    envoy_binary: str = "envoy"
    # the VPS Envoy's admin interface: a Unix socket, mode 0600 (default
    # <run_dir>/envoy-admin.sock); a port instead puts it on 127.0.0.1:<port>, which every
    # local user can reach (tests and benchmarks only; 0 = the socket)
    envoy_admin_socket: Path | None = None
    envoy_admin_port: int = 0
    envoy_node_id: str = "edge"
    envoy_base_id: int = 0
    envoy_concurrency: int = 0  # 0: Envoy's default (one worker per core)
    # the VPS Envoy's overload manager: heap (MiB) and downstream connections it keeps under
    envoy_max_heap_mb: int = 512
    envoy_max_connections: int = 10000
    log_level: str = "info"
    _source: str = field(default="defaults", compare=False, repr=False)

    @property
    def envoy_admin_socket_path(self) -> Path | None:
        """Where the VPS Envoy's admin interface listens (None: on 127.0.0.1:envoy_admin_port)."""
        if self.envoy_admin_port:
            return None
        return self.envoy_admin_socket or (self.run_dir / "envoy-admin.sock")

    @property
    def link_target(self) -> str:
        from .module_utils._wireguard import address_plan

        plan = address_plan(self.tunnel_prefix)
        host = self.link_address or plan["home"]
        try:
            inside = ipaddress.ip_address(host) in ipaddress.ip_network(plan["prefix"])
        except ValueError:
            inside = False
        if not inside:
            # the secret travels on this connection: only across the tunnel
            raise ConfigError(
                f"link_address {host!r} is not inside the tunnel prefix {plan['prefix']}; the edge "
                "link runs across the tunnel only"
            )
        return f"[{host}]:{self.link_port}" if ":" in host else f"{host}:{self.link_port}"


def _fields(cls) -> dict:
    return {f.name: f for f in dataclasses.fields(cls) if not f.name.startswith("_")}


_PATHS = {
    "state_dir",
    "run_dir",
    "log_dir",
    "control_socket",
    "xds_socket",
    "link_key_file",
    "tunnel_status_file",
    "envoy_admin_socket",
    "edge_access_log",
    "secret_file",
    "dns_include_file",
    "dns_unbound_config",
}
_OPTIONAL_PATHS = {"control_socket", "xds_socket", "link_key_file", "tunnel_status_file", "envoy_admin_socket"}
_INTS = {"xds_port", "home_http_port", "link_port", "home_tunnel_port", "edge_http_port"}
_COUNTS = {
    "edge_max_connections": (1, 1_000_000),
    "edge_http2_max_concurrent_streams": (1, 10_000),
    "edge_http2_initial_stream_window": (65_535, 2**31 - 1),
    "edge_http2_initial_connection_window": (65_535, 2**31 - 1),
    "envoy_max_heap_mb": (32, 1_048_576),
    "envoy_max_connections": (1, 1_000_000),
    "xds_max_streams": (1, 100_000),
    "envoy_base_id": (0, 65535),
    "envoy_admin_port": (0, 65535),
    "envoy_concurrency": (0, 1024),
    "dns_ttl": (1, 86_400),
}
_SECONDS = {
    "xds_keepalive": (1.0, 3600.0),
    "xds_keepalive_timeout": (1.0, 600.0),
    "xds_first_request_timeout": (1.0, 600.0),
    "xds_forget_after": (1.0, 30 * 86400.0),
    "edge_health_interval": (1.0, 3600.0),
    "edge_request_headers_timeout": (1.0, 600.0),
    "edge_idle_timeout": (1.0, 86400.0),
    "edge_stream_idle_timeout": (1.0, 86400.0),
}
_BOOLS = {
    "discovery_trust_image_labels",
    "docker_enabled",
    "docker_mesh",
    "accept_registry",
    "envoy_supervise",
    "dns_enabled",
}
_OPTIONAL_STRINGS = {"docker_host", "link_address", "dns_server", "edge_public_address"}
# IP addresses ("" = not set)
_ADDRESSES = {"dns_answer_address": 4, "dns_answer_address6": 6}
# lists of strings (a YAML list, or a comma-separated string in a variable); CIDR
# syntax is checked when used, so a typo is a named problem in status, not a dead daemon
_LISTS = {"edge_addresses", "lan_cidrs", "vpn_cidrs"}
_NAMES = {
    "tunnel_interface": re.compile(r"[A-Za-z0-9_.-]{1,15}"),
    "edge_id": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"),
    "envoy_node_id": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"),
}
_SCOPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_LEVELS = {"debug", "info", "warning", "error"}


def _coerce(key: str, value: Any, origin: str) -> Any:
    if key in _PATHS:
        if value is None and key in _OPTIONAL_PATHS:
            return None
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise ConfigError(f"{origin}: '{key}' must be a path, got {value!r}")
        return Path(value)
    if key in _INTS:
        if isinstance(value, bool):
            raise ConfigError(f"{origin}: '{key}' must be a port number, got {value!r}")
        try:
            port = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{origin}: '{key}' must be a port number, got {value!r}") from None
        if not 0 < port < 65536:
            raise ConfigError(f"{origin}: '{key}' must be between 1 and 65535, got {port}")
        return port
    if key in _COUNTS:
        low, high = _COUNTS[key]
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
            raise ConfigError(f"{origin}: '{key}' must be a whole number, got {value!r}")
        if not low <= int(value) <= high:
            raise ConfigError(f"{origin}: '{key}' must be between {low} and {high}, got {value}")
        return int(value)
    if key in _SECONDS:
        shortest, longest = _SECONDS[key]
        try:  # the one duration grammar (model.parse_duration_ms), in seconds here
            return parse_duration_ms(key, value, low_ms=int(shortest * 1000), high_ms=int(longest * 1000)) / 1000
        except InputError as exc:
            if "not a duration" in exc.message:
                raise ConfigError(
                    f"{origin}: '{key}' must be a duration such as '30s' or '500ms', got {value!r}"
                ) from None
            raise ConfigError(
                f"{origin}: '{key}' must be between {shortest:g}s and {longest:g}s, got {value!r}"
            ) from None
    if key in _BOOLS:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"{origin}: '{key}' must be true or false, got {value!r}")
    if key in _LISTS:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{origin}: '{key}' must be a list of strings, got {value!r}")
        return tuple(value)
    if key in _ADDRESSES:
        text = str(value).strip()
        if text:
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                ip = None
            if ip is None or ip.version != _ADDRESSES[key]:
                raise ConfigError(f"{origin}: '{key}' must be an IPv{_ADDRESSES[key]} address, got {value!r}")
            text = str(ip)  # canonical, as Unbound prints it
        return text
    if key in _NAMES:
        if not isinstance(value, str) or not _NAMES[key].fullmatch(value):
            raise ConfigError(f"{origin}: '{key}' must be letters, digits, '_', '.', '-', got {value!r}")
        return value
    if key == "topology":
        text = str(value).strip().lower()
        if text == "b":
            raise ConfigError(
                f"{origin}: topology 'b' (control plane on the VPS) is not available yet; "
                "use 'a' (home + VPS) or 'c' (home only)"
            )
        if text not in ("a", "c"):
            raise ConfigError(f"{origin}: 'topology' must be 'a' (home + VPS) or 'c' (home only), got {value!r}")
        return text
    if key in ("tunnel_prefix",):
        from .module_utils._wireguard import WireGuardError, address_plan

        try:
            address_plan(str(value))
        except WireGuardError as exc:
            raise ConfigError(f"{origin}: 'tunnel_prefix': {exc}") from None
        return str(value)
    if key == "xds_transport":
        if value not in ("unix", "tcp"):
            raise ConfigError(f"{origin}: 'xds_transport' must be 'unix' or 'tcp', got {value!r}")
        return value
    if key == "xds_socket_group":
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise ConfigError(f"{origin}: 'xds_socket_group' must be a group name or id, got {value!r}")
        return str(value)
    if key == "docker_scope":
        if not isinstance(value, str) or (value and not _SCOPE_RE.fullmatch(value)):
            raise ConfigError(
                f"{origin}: 'docker_scope' must be empty (every container) or letters, digits, "
                f"'_', '.', '-' (up to 63), got {value!r}"
            )
        return value
    if key == "domains":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(
                f"{origin}: 'domains' must be a list of domains (your zones, e.g. [example.org]), got {value!r}"
            )
        zones: list[str] = []
        for i, item in enumerate(value):
            try:
                zone = parse_domain(f"domains[{i}]", item)
            except InputError as exc:
                raise ConfigError(f"{origin}: 'domains[{i}]': {exc.message}") from None
            if zone.startswith("*."):
                raise ConfigError(
                    f"{origin}: 'domains[{i}]': give the zone ({zone[2:]!r}), not a wildcard; "
                    "every name under it is included"
                )
            if zone not in zones:
                zones.append(zone)
        return tuple(zones)
    if key == "docker_default_domain":
        if value in ("", None):
            return ""
        try:
            domain = parse_domain(key, value)
        except InputError as exc:
            raise ConfigError(f"{origin}: 'docker_default_domain': {exc.message}") from None
        if domain.startswith("*."):
            raise ConfigError(
                f"{origin}: 'docker_default_domain' must be a plain domain, not a wildcard, got {value!r}"
            )
        return domain
    if key in _OPTIONAL_STRINGS:
        if not isinstance(value, str):
            raise ConfigError(f"{origin}: '{key}' must be a string, got {value!r}")
        return value
    if key == "log_level":
        if str(value).lower() not in _LEVELS:
            raise ConfigError(f"{origin}: 'log_level' must be one of {sorted(_LEVELS)}, got {value!r}")
        return str(value).lower()
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{origin}: '{key}' must be a non-empty string, got {value!r}")
    return value


# settings of older versions, with what to do instead
_RETIRED = {
    "link_secret_hash_file": "(the edge secret's hash) is from Envoyage before edge-link version 2: home now "
    "keeps a link key derived from the secret (link.key_file); rerun the site "
    "playbook (or playbooks/rotate.yml), which writes the key and this file anew"
}

_SECTIONS = ("xds", "docker", "discovery", "tunnel", "link", "edge", "envoy", "dns")


def _flatten(data: Mapping[str, Any], origin: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Accept both flat keys and the nested sections used in docs (xds: {port: ..})."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and key in _SECTIONS:
            for sub, subval in value.items():
                flat[f"{key}_{sub}"] = subval
        else:
            flat[key] = value
    for key in flat:
        if key in _RETIRED and key not in fields:
            raise ConfigError(f"{origin}: '{key}' {_RETIRED[key]}")
        if key not in fields:
            raise ConfigError(f"{origin}: unknown setting '{key}' (known: {', '.join(sorted(fields))})")
    return flat


def load_config(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the config file (if given) and apply ENVOYAGE_<SETTING> overrides."""
    return _load(Config, path, environ)


def load_edge_config(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> EdgeConfig:
    """The edge's config file, with ENVOYAGE_EDGE_<SETTING> overrides."""
    return _load(EdgeConfig, path, environ, env_prefix="ENVOYAGE_EDGE_")


def _load(cls, path, environ, env_prefix: str = "ENVOYAGE_"):
    environ = os.environ if environ is None else environ
    fields = _fields(cls)
    values: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"{p}: expected a mapping of settings at the top level")
        for key, value in _flatten(data, str(p), fields).items():
            values[key] = _coerce(key, value, str(p))
        source = str(p)
    for key in fields:
        env_key = f"{env_prefix}{key.upper()}"
        if env_key in environ:
            values[key] = _coerce(key, environ[env_key], env_key)
    if cls is Config and "xds_transport" not in values and ("xds_port" in values or "xds_address" in values):
        values["xds_transport"] = "tcp"  # an xDS address or port given means TCP
    return cls(**values, _source=source)


def dump_config(cfg: Config) -> dict[str, Any]:
    """The effective configuration as plain data (for `envoyage status` and docs)."""
    out: dict[str, Any] = {}
    for key in _fields(type(cfg)):
        value = getattr(cfg, key)
        out[key] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
    out["xds_socket"] = str(cfg.xds_socket_path)
    if isinstance(cfg, Config):
        out["control_socket"] = str(cfg.socket_path)
        out["link_key_file"] = str(cfg.link_key_path)
    return out
