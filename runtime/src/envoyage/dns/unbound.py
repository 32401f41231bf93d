"""Unbound: its configuration and `unbound-control`, through which zones change live (no
restart, no reload). The configuration is rendered by module_utils._unbound, which the
unbound role uses too (through the filter envoyage.core.unbound_conf): one renderer."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from ..module_utils import _unbound
from .zones import Zone


class UnboundError(RuntimeError):
    """unbound-control failed; the sentence says how."""


@dataclass(frozen=True)
class ResolverSettings:
    """The home resolver. `access`: the only networks that may query (the LAN's);
    `upstreams`: where every other name is forwarded ("addr" or "addr@port"; none: Unbound
    resolves from the root servers itself); `trust_anchor_file`: the root's DNSSEC trust
    anchor (Debian: /usr/share/dns/root.key, kept up to date in /var/lib/unbound/root.key);
    `trust_anchors`: extra anchors ("zone. DS ..." or "zone. DNSKEY ..."), for private
    signed zones. The defaults are the unbound role's (module_utils._unbound.SETTINGS)."""

    listen: tuple[str, ...]
    include_file: str
    access: tuple[str, ...]
    upstreams: tuple[str, ...] = tuple(_unbound.FORWARDERS)
    port: int = _unbound.PORT
    # unbound-control: on a Unix socket (only its owner and group can connect, no network
    # stack at all, and no TLS handshake per change) or, with control_socket None, on
    # 127.0.0.1:control_port with TLS keys (0600) in key_dir
    control_socket: str | None = _unbound.CONTROL_SOCKET
    control_port: int = _unbound.SETTINGS["control_port"]
    key_dir: str = _unbound.SETTINGS["key_dir"]
    directory: str = _unbound.SETTINGS["directory"]
    pidfile: str = _unbound.SETTINGS["pidfile"]
    username: str = _unbound.SETTINGS["username"]
    trust_anchor_file: str | None = _unbound.SETTINGS["trust_anchor_file"]
    trust_anchors: tuple[str, ...] = field(default_factory=tuple)
    logfile: str = _unbound.SETTINGS["logfile"]
    # Unbound answers some special-use names itself (test., invalid., onion., home.arpa.
    # ...); a zone listed here is looked up like any other (the lab serves example.test)
    no_default_zones: tuple[str, ...] = ()


def render_conf(s: ResolverSettings) -> str:
    """unbound.conf for `s` (a bad setting is a ValueError naming it)."""
    given = asdict(s)
    given["forwarders"] = given.pop("upstreams")
    given["control_socket"] = given["control_socket"] or ""
    given["trust_anchor_file"] = given["trust_anchor_file"] or ""
    return _unbound.render_conf(**given)


class UnboundControl:
    """`unbound-control -c CONFIG ...`; every failure is an UnboundError with a sentence."""

    def __init__(self, config: str, binary: str = "unbound-control", timeout: float = 5.0):
        self.config = config
        self.binary = binary
        self.timeout = timeout

    def run(self, *args: str, stdin: str | None = None) -> str:
        argv = [self.binary, "-c", self.config, *args]
        try:
            proc = subprocess.run(
                argv, input=stdin, capture_output=True, text=True, errors="replace", timeout=self.timeout, check=False
            )
        except FileNotFoundError:
            raise UnboundError(f"{self.binary} is not installed (apt install unbound)") from None
        except OSError as exc:
            raise UnboundError(f"cannot run {self.binary}: {exc.strerror or exc}") from None
        except subprocess.TimeoutExpired:
            raise UnboundError(f"unbound-control {args[0]} did not answer within {self.timeout:.0f} s") from None
        out = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0 or out.startswith("error"):
            if "connect" in out and ("refused" in out or "Connection" in out):
                raise UnboundError("Unbound is not running (unbound-control cannot connect to it)")
            raise UnboundError(f"unbound-control {args[0]} failed: {out[:300] or f'exit {proc.returncode}'}")
        return proc.stdout

    def list_zones(self) -> dict[str, str]:
        """Every local zone Unbound has now: name -> type."""
        out = {}
        for line in self.run("list_local_zones").splitlines():
            parts = line.split()
            if len(parts) == 2:
                out[parts[0].lower()] = parts[1]
        return out

    def list_data(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for line in self.run("list_local_data").splitlines():
            parts = line.split()
            if len(parts) >= 5:
                out.setdefault(parts[0].lower(), []).append(" ".join(parts))
        return out

    def remove(self, names: Iterable[str]) -> None:
        names = list(names)
        if names:
            self.run("local_zones_remove", stdin="".join(f"{n}\n" for n in names))

    def add(self, zones: Mapping[str, Zone]) -> None:
        """Every zone is made explicitly before its data: data for a name inside another
        zone (www.example.org under example.org, or under a zone of the user's own) would
        otherwise land in that zone, and go when it goes."""
        if not zones:
            return
        self.run("local_zones", stdin="".join(f"{n} {z.kind}\n" for n, z in zones.items()))
        self.run("local_datas", stdin="".join(f"{rr}\n" for z in zones.values() for rr in z.data))
