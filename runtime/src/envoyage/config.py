"""Control-plane configuration: a YAML file, overridden by ENVOYAGE_* variables.

Every setting has a default (DESIGN.md day-one decisions). The file is optional; a
missing file means "all defaults". Unknown keys and wrong types are errors that name
the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .model import InputError, parse_duration_ms


class ConfigError(ValueError):
    """The configuration file or an ENVOYAGE_* variable is invalid."""


@dataclass(frozen=True)
class Config:
    # where things live
    state_dir: Path = Path("/var/lib/envoyage")
    run_dir: Path = Path("/run/envoyage")
    log_dir: Path = Path("/var/log/envoyage")
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
    # serve the registry even if it is older or smaller than its last known state (after
    # restoring a backup on purpose); `envoyage control --accept-registry` sets it
    accept_registry: bool = False
    # extra: nothing else yet
    _source: str = field(default="defaults", compare=False, repr=False)

    @property
    def db_path(self) -> Path:
        return self.state_dir / "envoyage.db"

    @property
    def xds_socket_path(self) -> Path:
        return self.xds_socket or (self.run_dir / "xds.sock")

    @property
    def socket_path(self) -> Path:
        return self.control_socket or (self.run_dir / "control.sock")

    @property
    def access_log_path(self) -> Path:
        return self.log_dir / "access.log"


_FIELDS = {f.name: f for f in dataclasses.fields(Config) if not f.name.startswith("_")}
_PATHS = {"state_dir", "run_dir", "log_dir", "control_socket", "xds_socket"}
_INTS = {"xds_port", "home_http_port"}
_COUNTS = {"xds_max_streams": (1, 100_000)}
_SECONDS = {"xds_keepalive": (1.0, 3600.0), "xds_keepalive_timeout": (1.0, 600.0),
            "xds_first_request_timeout": (1.0, 600.0), "xds_forget_after": (1.0, 30 * 86400.0)}
_BOOLS = {"docker_enabled", "docker_mesh", "accept_registry"}
_OPTIONAL_STRINGS = {"docker_host"}
_SCOPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_LEVELS = {"debug", "info", "warning", "error"}


def _coerce(key: str, value: Any, origin: str) -> Any:
    if key in _PATHS:
        if value is None and key in ("control_socket", "xds_socket"):
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
        low, high = _SECONDS[key]
        try:  # the one duration grammar (model.parse_duration_ms), in seconds here
            return parse_duration_ms(key, value, low_ms=int(low * 1000), high_ms=int(high * 1000)) / 1000
        except InputError as exc:
            if "not a duration" in exc.message:
                raise ConfigError(f"{origin}: '{key}' must be a duration such as '30s' or '500ms', "
                                  f"got {value!r}") from None
            raise ConfigError(f"{origin}: '{key}' must be between {low:g}s and {high:g}s, got {value!r}") from None
    if key in _BOOLS:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"{origin}: '{key}' must be true or false, got {value!r}")
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
            raise ConfigError(f"{origin}: 'docker_scope' must be empty (every container) or letters, digits, "
                              f"'_', '.', '-' (up to 63), got {value!r}")
        return value
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


def _flatten(data: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """Accept both flat keys and the nested sections used in docs (xds: {port: ..})."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and key in ("xds", "docker"):
            for sub, subval in value.items():
                flat[f"{key}_{sub}"] = subval
        else:
            flat[key] = value
    for key in flat:
        if key not in _FIELDS:
            raise ConfigError(f"{origin}: unknown setting '{key}' (known: {', '.join(sorted(_FIELDS))})")
    return flat


def load_config(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read the config file (if given) and apply ENVOYAGE_<SETTING> overrides."""
    environ = os.environ if environ is None else environ
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
        for key, value in _flatten(data, str(p)).items():
            values[key] = _coerce(key, value, str(p))
        source = str(p)
    for key in _FIELDS:
        env_key = f"ENVOYAGE_{key.upper()}"
        if env_key in environ:
            values[key] = _coerce(key, environ[env_key], env_key)
    if "xds_transport" not in values and ("xds_port" in values or "xds_address" in values):
        values["xds_transport"] = "tcp"  # an xDS address or port given means TCP
    return Config(**values, _source=source)


def dump_config(cfg: Config) -> dict[str, Any]:
    """The effective configuration as plain data (for `envoyage status` and docs)."""
    out: dict[str, Any] = {}
    for key in _FIELDS:
        value = getattr(cfg, key)
        out[key] = str(value) if isinstance(value, Path) else value
    out["control_socket"] = str(cfg.socket_path)
    out["xds_socket"] = str(cfg.xds_socket_path)
    return out
