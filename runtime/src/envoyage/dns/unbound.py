"""Unbound: its configuration (pure rendering, the one place the resolver's settings live)
and `unbound-control`, through which zones change live (no restart, no reload)."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .zones import Zone


class UnboundError(RuntimeError):
    """unbound-control failed; the sentence says how."""


@dataclass(frozen=True)
class ResolverSettings:
    """The home resolver. `access`: the only networks that may query (the LAN's);
    `upstreams`: where every other name is forwarded ("addr" or "addr@port");
    `trust_anchor_file`: the root's DNSSEC trust anchor (Debian: /usr/share/dns/root.key,
    kept up to date in /var/lib/unbound/root.key); `trust_anchors`: extra anchors
    ("zone. DS ..." or "zone. DNSKEY ..."), for private signed zones."""

    listen: tuple[str, ...]
    include_file: str
    access: tuple[str, ...]
    upstreams: tuple[str, ...] = ("9.9.9.9", "149.112.112.112")
    port: int = 53
    # unbound-control: on a Unix socket (default: only its owner and group can connect, no
    # network stack at all, and no TLS handshake per change) or, with control_socket None,
    # on 127.0.0.1:control_port with TLS keys (0600) in key_dir
    control_socket: str | None = "/run/unbound/control.sock"
    control_port: int = 8953
    key_dir: str = "/etc/unbound"
    directory: str = "/etc/unbound"
    pidfile: str = "/run/unbound.pid"
    username: str = "unbound"
    trust_anchor_file: str | None = "/var/lib/unbound/root.key"
    trust_anchors: tuple[str, ...] = field(default_factory=tuple)
    logfile: str = ""
    # Unbound answers some special-use names itself (test., invalid., onion., home.arpa.
    # ...); a zone listed here is looked up like any other (the lab serves example.test)
    no_default_zones: tuple[str, ...] = ()


def render_conf(s: ResolverSettings) -> str:
    for net in s.access:
        ipaddress.ip_network(net, strict=False)
    lines = ["# Written by Envoyage: the home resolver (split horizon, docs/dns.md).", "server:"]

    def add(key, value):
        lines.append(f"  {key}: {value}")

    for address in s.listen:
        add("interface", f"{address}@{s.port}" if s.port != 53 else address)
    add("port", s.port)
    add("do-ip6", "yes")
    add("username", f'"{s.username}"')
    add("chroot", '""')
    add("directory", f'"{s.directory}"')
    add("pidfile", f'"{s.pidfile}"')
    add("use-syslog", "no" if s.logfile else "yes")
    if s.logfile:
        add("logfile", f'"{s.logfile}"')
    add("hide-identity", "yes")
    add("hide-version", "yes")
    # only the LAN may ask; everyone else is refused
    add("access-control", "0.0.0.0/0 refuse")
    add("access-control", "::/0 refuse")
    for net in s.access:
        add("access-control", f"{ipaddress.ip_network(net, strict=False)} allow")
    # DNSSEC: validate every answer that comes from outside
    add("module-config", '"validator iterator"')
    if s.trust_anchor_file:
        add("auto-trust-anchor-file", f'"{s.trust_anchor_file}"')
    for anchor in s.trust_anchors:
        add("trust-anchor", f'"{anchor}"')
    add("val-log-level", 1)
    for zone in s.no_default_zones:
        add("local-zone", f'"{zone.rstrip(".")}." nodefault')
    # the service domains (the DNS controller rewrites this file and applies changes live)
    add("include", f'"{s.include_file}"')
    lines += ["", "remote-control:", "  control-enable: yes"]
    if s.control_socket:
        lines += [f'  control-interface: "{s.control_socket}"', "  control-use-cert: no"]
    else:
        lines += [
            "  control-interface: 127.0.0.1",
            f"  control-port: {s.control_port}",
            f'  server-key-file: "{s.key_dir}/unbound_server.key"',
            f'  server-cert-file: "{s.key_dir}/unbound_server.pem"',
            f'  control-key-file: "{s.key_dir}/unbound_control.key"',
            f'  control-cert-file: "{s.key_dir}/unbound_control.pem"',
        ]
    lines += ["", "forward-zone:", '  name: "."']
    for up in s.upstreams:
        lines.append(f"  forward-addr: {up}")
    return "\n".join(lines) + "\n"


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
