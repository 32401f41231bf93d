#!/usr/bin/env python3
"""Topology A on one machine, in network namespaces: the harness the tests, the demo
(`bash scripts/demo.sh --topology a`) and the benchmarks share.

Layout (NET is 10.231 by default; every address below is inside namespaces this
harness creates, or on the two veth interfaces it adds to the root namespace):

    lan-client ns            root ns = home                 router ns (NAT)            vps ns                internet ns
    NET.1.2  ---- eya-lan NET.1.1
                  eya-wan NET.2.2 ---- in0 NET.2.1 | out0 NET.3.1 ---- wan0 NET.3.2 (WireGuard :51820)
                  eya-wgh NET.100.2 ===== WireGuard tunnel (home dials) =====  eya-wgv NET.100.1
                                                                               pub0 NET.4.1 fd00:231:4::1 ---- eth0 NET.4.2 fd00:231:4::2

- Home stays in the root namespace, where dockerd and its containers are: the control
  plane, the home Envoy (LAN listener on every address, tunnel listener on NET.100.2)
  and the labelled containers run there.
- The router masquerades home's traffic to the VPS and drops anything the VPS starts
  towards home, like CGNAT: the VPS reaches home only through the tunnel home dials.
- The VPS runs `envoyage edge`, which runs the VPS Envoy (public port 80 on NET.4.1 and
  fd00:231:4::1, and NET.3.2).
- The internet client reaches only the VPS's public addresses; the LAN client reaches
  only home's LAN address NET.1.1.

Command line (as root):  topology_a.py up --dir DIR  |  down --dir DIR  |  info --dir DIR
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("ENVOYAGE_VENV", ROOT / ".venv"))

from envoyage.link import secret as link_secret  # noqa: E402  (the checkout's venv has runtime/src)
from envoyage.module_utils import _wireguard as wg  # noqa: E402
from envoyage.module_utils._files import write_secret_file  # noqa: E402


class LabError(RuntimeError):
    pass


def sh(*cmd: str, ns: str | None = None, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    argv = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {(proc.stderr or proc.stdout).strip()[:400]}")
    return proc


def _run_for_wg(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return proc.returncode, proc.stdout, proc.stderr


@dataclass
class Lab:
    dir: Path
    tag: str = "eya"
    net: str = "10.231"
    http_port: int = 18480  # the home Envoy's LAN listener (every address)
    admin_port: int = 19901  # the home Envoy's base id (its admin is a 0600 socket, home_admin_socket)
    tunnel_port: int = 18080  # the home Envoy's tunnel listener
    link_port: int = 18443
    edge_port: int = 80
    edge_admin_port: int = 0  # 0: the VPS Envoy's admin on its 0600 socket (the edge's default)
    wg_port: int = 51820
    scope: str = "topology-a"
    edge_health_interval: str = "30s"
    # split-horizon DNS (issue: topology A part 2): Unbound on home's LAN address, BIND in
    # the VPS namespace as "the internet's DNS" with a signed zone example.test
    dns: bool = False
    dns_port: int = 53
    unbound_control_port: int = 18953  # only with TLS control (the lab uses a Unix socket)
    # who counts as the LAN for vpn-only (None: the LAN client's network and loopback)
    lan_cidrs: list | None = None
    # home's tunnel interface accepts from the VPS only the tunnel listener and the edge
    # link (the backend's apply_firewall, as the wireguard role does; off only to test
    # the layers behind it on their own)
    tunnel_firewall: bool = True
    # pids of what `start_*` started (name -> pid), so `down` can stop them
    pids: dict = field(default_factory=dict)

    # -- names and addresses -------------------------------------------------------------
    @property
    def ns(self) -> dict:
        return {k: f"{self.tag}-{k}" for k in ("lan", "router", "vps", "inet")}

    def addr(self, name: str) -> str:
        table = {
            "home_lan": "1.1",
            "lan_client": "1.2",
            "home_wan": "2.2",
            "router_in": "2.1",
            "router_out": "3.1",
            "vps_wan": "3.2",
            "vps_public": "4.1",
            "internet_client": "4.2",
        }
        return f"{self.net}.{table[name]}"

    @property
    def v6_prefix(self) -> str:
        return "fd00:%s:4::" % self.net.split(".")[1]

    @property
    def vps_public6(self) -> str:
        return self.v6_prefix + "1"

    @property
    def tunnel_prefix(self) -> str:
        return f"{self.net}.100.0/24"

    @property
    def plan(self) -> dict:
        return wg.address_plan(self.tunnel_prefix)

    @property
    def home_wg(self) -> str:
        return f"{self.tag}-wgh"

    @property
    def vps_wg(self) -> str:
        return f"{self.tag}-wgv"

    @property
    def home_dir(self) -> Path:
        return self.dir / "home"

    @property
    def vps_dir(self) -> Path:
        return self.dir / "vps"

    @property
    def home_config(self) -> Path:
        return self.home_dir / "control.yaml"

    @property
    def edge_config(self) -> Path:
        return self.vps_dir / "edge.yaml"

    @property
    def control_socket(self) -> Path:
        return self.home_dir / "run" / "control.sock"

    @property
    def edge_access_log(self) -> Path:
        return self.vps_dir / "log" / "access.log"

    @property
    def home_access_log(self) -> Path:
        return self.home_dir / "log" / "access.log"

    @property
    def home_admin_socket(self) -> Path:
        """The home Envoy's admin interface (0600), as the envoy role runs it."""
        return self.home_dir / "envoy-run" / "admin.sock"

    @property
    def edge_admin_socket(self) -> Path:
        """The VPS Envoy's admin interface (0600), where the edge puts it by default."""
        return self.vps_dir / "run" / "envoy-admin.sock"

    # -- the network ---------------------------------------------------------------------
    def _check_free(self) -> None:
        """Refuse to touch a host that already uses our range on an interface not ours."""
        mine = ipaddress.ip_network(f"{self.net}.0.0/16")
        out = sh("ip", "-o", "addr", "show").stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) > 3 and parts[2] == "inet":
                iface, address = parts[1], parts[3]
                if ipaddress.ip_interface(address).ip in mine and not iface.startswith(self.tag + "-"):
                    raise LabError(
                        f"{address} on {iface} is in {mine}, which this lab would use; choose another range (--net)"
                    )

    def network_up(self) -> None:
        if os.geteuid() != 0:
            raise LabError("topology A in namespaces needs root (network namespaces, veth, WireGuard)")
        for tool in ("wireguard-go", "wg", "iptables", "ip"):
            if not shutil.which(tool):
                raise LabError(f"{tool} is not installed (apt install wireguard-go wireguard-tools iptables iproute2)")
        self.network_down()
        self._check_free()
        ns, n = self.ns, self.net
        for name in ns.values():
            sh("ip", "netns", "add", name)
            sh("ip", "link", "set", "lo", "up", ns=name)
        # LAN: home <-> lan client
        sh("ip", "link", "add", f"{self.tag}-lan", "type", "veth", "peer", "name", "eth0", "netns", ns["lan"])
        sh("ip", "addr", "add", f"{n}.1.1/24", "dev", f"{self.tag}-lan")
        sh("ip", "link", "set", f"{self.tag}-lan", "up")
        sh("ip", "addr", "add", f"{n}.1.2/24", "dev", "eth0", ns=ns["lan"])
        sh("ip", "link", "set", "eth0", "up", ns=ns["lan"])
        # home's uplink into the NAT router
        sh("ip", "link", "add", f"{self.tag}-wan", "type", "veth", "peer", "name", "in0", "netns", ns["router"])
        sh("ip", "addr", "add", f"{n}.2.2/24", "dev", f"{self.tag}-wan")
        sh("ip", "link", "set", f"{self.tag}-wan", "up")
        sh("ip", "addr", "add", f"{n}.2.1/24", "dev", "in0", ns=ns["router"])
        sh("ip", "link", "set", "in0", "up", ns=ns["router"])
        # router <-> VPS ("the internet" between them)
        sh("ip", "link", "add", "out0", "type", "veth", "peer", "name", "wan0", "netns", ns["vps"], ns=ns["router"])
        sh("ip", "addr", "add", f"{n}.3.1/24", "dev", "out0", ns=ns["router"])
        sh("ip", "link", "set", "out0", "up", ns=ns["router"])
        sh("ip", "addr", "add", f"{n}.3.2/24", "dev", "wan0", ns=ns["vps"])
        sh("ip", "link", "set", "wan0", "up", ns=ns["vps"])
        # VPS <-> internet client (IPv4 and IPv6)
        sh("ip", "link", "add", "pub0", "type", "veth", "peer", "name", "eth0", "netns", ns["inet"], ns=ns["vps"])
        sh("ip", "addr", "add", f"{n}.4.1/24", "dev", "pub0", ns=ns["vps"])
        sh("ip", "addr", "add", f"{self.v6_prefix}1/64", "dev", "pub0", "nodad", ns=ns["vps"])
        sh("ip", "link", "set", "pub0", "up", ns=ns["vps"])
        sh("ip", "addr", "add", f"{n}.4.2/24", "dev", "eth0", ns=ns["inet"])
        sh("ip", "addr", "add", f"{self.v6_prefix}2/64", "dev", "eth0", "nodad", ns=ns["inet"])
        sh("ip", "link", "set", "eth0", "up", ns=ns["inet"])
        # the VPS's WAN address is public too: the internet client reaches it through pub0
        sh("ip", "route", "add", f"{n}.3.0/24", "via", f"{n}.4.1", ns=ns["inet"])
        # home reaches the VPS's WAN address through the router, and nothing else there
        sh("ip", "route", "add", f"{n}.3.0/24", "via", f"{n}.2.1", "dev", f"{self.tag}-wan")
        # the router: NAT out, nothing in (CGNAT)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ns["router"])
        sh("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "out0", "-j", "MASQUERADE", ns=ns["router"])
        sh(
            "iptables",
            "-A",
            "FORWARD",
            "-i",
            "out0",
            "-o",
            "in0",
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
            ns=ns["router"],
        )
        sh("iptables", "-A", "FORWARD", "-i", "out0", "-j", "DROP", ns=ns["router"])
        self.tunnel_up()

    def tunnel_up(self, vps_endpoint: str | None = None) -> None:
        """WireGuard with the project's backend: the VPS listens, home dials it."""
        plan = self.plan
        for d in (self.home_dir, self.vps_dir):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        home_pub, _ = wg.ensure_keypair(str(self.home_dir / "wg.key"))
        vps_pub, _ = wg.ensure_keypair(str(self.vps_dir / "wg.key"))
        write_secret_file(
            str(self.vps_dir / "wg.conf"),
            wg.render_vps(wg.read_private_key(str(self.vps_dir / "wg.key")), home_pub, plan, listen_port=self.wg_port),
        )
        write_secret_file(
            str(self.home_dir / "wg.conf"),
            wg.render_home(
                wg.read_private_key(str(self.home_dir / "wg.key")),
                vps_pub,
                vps_endpoint or f"{self.addr('vps_wan')}:{self.wg_port}",
                plan,
            ),
        )
        wg.bring_up(
            self.vps_wg,
            str(self.vps_dir / "wg.conf"),
            plan["vps"],
            plan["prefixlen"],
            netns=self.ns["vps"],
            run=_run_for_wg,
        )
        wg.bring_up(
            self.home_wg,
            str(self.home_dir / "wg.conf"),
            plan["home"],
            plan["prefixlen"],
            run=_run_for_wg,
            allow_tcp=[self.tunnel_port, self.link_port] if self.tunnel_firewall else None,
        )

    def tunnel_down(self) -> None:
        wg.bring_down(self.home_wg, run=_run_for_wg)
        if Path(f"/run/netns/{self.ns['vps']}").exists():
            wg.bring_down(self.vps_wg, netns=self.ns["vps"], run=_run_for_wg)

    def handshake_age(self) -> float | None:
        peers = wg.read_status(self.home_wg, run=_run_for_wg)
        ages = [p.get("handshake_age") for p in peers.values() if p.get("handshake_age") is not None]
        return min(ages) if ages else None

    def network_down(self) -> None:
        for iface in (self.home_wg,):
            sh("ip", "link", "del", iface, check=False)
        # home is the root namespace: its firewall chain and unreachable route go with the
        # lab (the VPS's go with its namespace)
        wg.remove_firewall(self.home_wg, run=_run_for_wg)
        wg.remove_unreachable_route(self.tunnel_prefix, run=_run_for_wg)
        for name in self.ns.values():
            if Path(f"/run/netns/{name}").exists():
                # processes left in it (wireguard-go, envoy) would keep it alive
                pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                sh("ip", "netns", "del", name, check=False)
        for iface in (f"{self.tag}-lan", f"{self.tag}-wan"):
            sh("ip", "link", "del", iface, check=False)
        for name in self.ns.values():
            shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)

    # -- the Envoyage processes -----------------------------------------------------------
    def write_configs(self, secret: bool = True) -> None:
        for sub in ("state", "run", "log"):
            (self.home_dir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.home_dir / "state", 0o700)
        (self.vps_dir / "log").mkdir(parents=True, exist_ok=True)
        (self.vps_dir / "run").mkdir(parents=True, exist_ok=True)
        self.home_config.write_text(
            f"""\
# Envoyage control plane on home, topology A (scripts/topology_a.py)
state_dir: {self.home_dir}/state
run_dir: {self.home_dir}/run
log_dir: {self.home_dir}/log
home_http_address: 0.0.0.0
home_http_port: {self.http_port}
topology: a
tunnel:
  interface: {self.home_wg}
  prefix: {self.tunnel_prefix}
link:
  port: {self.link_port}
home_tunnel_port: {self.tunnel_port}
edge:
  http_port: {self.edge_port}
  addresses: ["0.0.0.0", "::"]
  access_log: {self.edge_access_log}
  health_interval: {self.edge_health_interval}
lan_cidrs: {json.dumps(self.lan_cidrs if self.lan_cidrs is not None else [f"{self.net}.1.0/24", "127.0.0.0/8"])}
docker:
  enabled: true
  scope: {self.scope}
"""
            + (
                f"""dns:
  enabled: true
  answer_address: {self.addr("home_lan")}
  include_file: {self.home_dir}/dns/zones.conf
  unbound_config: {self.unbound_dir}/unbound.conf
  server: {self.addr("home_lan")}:{self.dns_port}
  public_resolver: {self.addr("vps_wan")}
edge_public_address: {self.addr("vps_wan")}
"""
                if self.dns
                else f"""edge_public_address: {self.addr("vps_wan")}
dns:
  public_resolver: {self.addr("vps_wan")}  # the lab's "internet DNS" (BIND with --dns): nothing leaves the lab
"""
            )
        )
        self.edge_config.write_text(f"""\
# Envoyage edge on the VPS, topology A (scripts/topology_a.py)
edge_id: vps
run_dir: {self.vps_dir}/run
log_dir: {self.vps_dir}/log
tunnel_prefix: {self.tunnel_prefix}
link_port: {self.link_port}
secret_file: {self.vps_dir}/edge.secret
envoy:
  binary: {VENV}/bin/envoy
{f"  admin_port: {self.edge_admin_port}" if self.edge_admin_port else "  # admin: <run_dir>/envoy-admin.sock"}
  node_id: vps
  base_id: {self.admin_port + 1}
  concurrency: 1
""")
        if secret and not (self.home_dir / "state" / "edge-link.key").exists():
            link_secret.create(self.home_dir / "state" / "edge-link.key", self.vps_dir / "edge.secret")

    def spawn(self, name: str, argv: list[str], ns: str | None = None, umask: str = "") -> int:
        """Start a process detached from this one (Envoy exits with the process that
        started it, so `setsid -f` starts it and a shell records its pid). `umask`: as the
        role's unit sets it (UMask=)."""
        pidfile = self.dir / f"{name}.pid"
        pidfile.unlink(missing_ok=True)
        full = (["ip", "netns", "exec", ns] if ns else []) + argv
        umask_cmd = f"umask {umask}; " if umask else ""
        with open(self.dir / f"{name}.log", "ab") as log:
            subprocess.run(
                ["setsid", "-f", "sh", "-c", umask_cmd + 'echo $$ > "$0"; exec "$@"', str(pidfile), *full],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=True,
                timeout=10,
            )
        _wait(lambda: pidfile.exists() and pidfile.read_text().strip().isdigit(), 5, f"{name} to start")
        self.pids[name] = int(pidfile.read_text())
        self.save()
        return self.pids[name]

    def stop(self, name: str, timeout: float = 10) -> None:
        pid = self.pids.pop(name, None)
        self.save()
        if not pid:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            if not _alive(pid):
                return

    def start_control(self) -> None:
        self.spawn("control", [str(VENV / "bin" / "envoyage"), "-c", str(self.home_config), "control"], umask="0027")
        _wait(lambda: self.control_socket.exists(), 20, "the control plane's socket", self.dir / "control.log")

    def start_home_envoy(self) -> None:
        boot = self.home_dir / "envoy.yaml"
        subprocess.run(
            [
                str(VENV / "bin" / "envoyage"),
                "-c",
                str(self.home_config),
                "envoy-bootstrap",
                "--node-id",
                "home",
                "--role",
                "home",
                "--admin-socket",
                str(self.home_admin_socket),
                "-o",
                str(boot),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.home_admin_socket.parent.mkdir(mode=0o750, exist_ok=True)  # the unit's RuntimeDirectory
        # UMask=0027 as in the envoy role's unit: the access log is 0640
        self.spawn(
            "home-envoy",
            [
                str(VENV / "bin" / "envoy"),
                "-c",
                str(boot),
                "--concurrency",
                "1",
                "--log-level",
                "warn",
                "--base-id",
                str(self.admin_port),
                "--drain-time-s",
                "1",
            ],
            umask="0027",
        )
        _wait(lambda: self.home_admin("/ready") == "LIVE", 30, "the home Envoy", self.dir / "home-envoy.log")

    def start_edge(self, wait: bool = True) -> None:
        self.spawn("edge", [str(VENV / "bin" / "envoyage"), "-c", str(self.edge_config), "edge"], ns=self.ns["vps"])
        if wait:
            _wait(
                lambda: self.edge_admin("/ready") == "LIVE",
                30,
                "the VPS Envoy (under envoyage edge)",
                self.dir / "edge.log",
            )

    def edge_admin(self, path: str) -> str:
        """GET `path` on the VPS Envoy's admin interface, from inside the vps namespace."""
        where = (
            ["--unix-socket", str(self.edge_admin_socket), f"http://localhost{path}"]
            if not self.edge_admin_port
            else [f"http://127.0.0.1:{self.edge_admin_port}{path}"]
        )
        out = sh("curl", "-s", "--max-time", "3", *where, ns=self.ns["vps"], check=False)
        return out.stdout.strip()

    def home_admin(self, path: str) -> str:
        """GET `path` on the home Envoy's admin interface (its 0600 socket)."""
        out = sh(
            "curl",
            "-s",
            "--max-time",
            "3",
            "--unix-socket",
            str(self.home_admin_socket),
            f"http://localhost{path}",
            check=False,
        )
        return out.stdout.strip()

    # -- DNS: BIND (the internet's DNS, a signed zone) and Unbound (home's resolver) --------
    @property
    def unbound_dir(self) -> Path:
        return self.home_dir / "unbound"

    @property
    def bind_dir(self) -> Path:
        return self.vps_dir / "bind"

    ZONE = "example.test"

    def start_bind(self) -> None:
        """Signs example.test (every name -> the VPS's public address; outside.example.test
        -> an address no service has) and serves it from the VPS namespace on port 53."""
        d = self.bind_dir
        d.mkdir(parents=True, exist_ok=True)
        zone = self.ZONE
        if not (d / f"db.{zone}.signed").exists():
            (d / f"db.{zone}").write_text(f"""$TTL 60
@ IN SOA ns.{zone}. admin.{zone}. 1 3600 600 86400 60
@ IN NS ns.{zone}.
ns IN A {self.addr("vps_wan")}
* IN A {self.addr("vps_wan")}
outside IN A {self.outside_address}
""")
            ksk = sh(
                "dnssec-keygen", "-q", "-K", str(d), "-a", "ECDSAP256SHA256", "-f", "KSK", "-n", "ZONE", zone
            ).stdout.strip()
            zsk = sh("dnssec-keygen", "-q", "-K", str(d), "-a", "ECDSAP256SHA256", "-n", "ZONE", zone).stdout.strip()
            with open(d / f"db.{zone}", "a") as fh:
                fh.write(f"$INCLUDE {d / ksk}.key\n$INCLUDE {d / zsk}.key\n")
            sh(
                "dnssec-signzone",
                "-q",
                "-K",
                str(d),
                "-d",
                str(d),
                "-o",
                zone,
                "-f",
                str(d / f"db.{zone}.signed"),
                "-k",
                str(d / ksk),
                str(d / f"db.{zone}"),
                str(d / zsk),
            )
            key = [line for line in (d / f"{ksk}.key").read_text().splitlines() if not line.startswith(";")][0]
            (d / "trust-anchor").write_text(key.strip() + "\n")
        (d / "named.conf").write_text(f"""options {{
  directory "{d}";
  pid-file "{d}/named.pid";
  managed-keys-directory "{d}";
  listen-on port 53 {{ any; }};
  listen-on-v6 {{ none; }};
  recursion no;
  allow-query {{ any; }};
  dnssec-validation no;
}};
zone "{zone}" {{ type primary; file "{d}/db.{zone}.signed"; }};
""")
        self.spawn("bind", ["named", "-g", "-c", str(d / "named.conf")], ns=self.ns["vps"])
        _wait(
            lambda: (
                sh(
                    "dig", "+short", "+time=1", "+tries=1", f"@{self.addr('vps_wan')}", f"ns.{zone}", check=False
                ).stdout.strip()
                == self.addr("vps_wan")
            ),
            20,
            "BIND",
            self.dir / "bind.log",
        )

    @property
    def outside_address(self) -> str:
        return f"{self.net}.3.77"

    @property
    def trust_anchor(self) -> str:
        return (self.bind_dir / "trust-anchor").read_text().strip()

    def start_unbound(self) -> None:
        from envoyage.dns.unbound import ResolverSettings, render_conf

        d = self.unbound_dir
        d.mkdir(parents=True, exist_ok=True)
        (self.home_dir / "dns").mkdir(parents=True, exist_ok=True)
        settings = ResolverSettings(
            control_socket=str(d / "control.sock"),
            listen=(self.addr("home_lan"),),
            port=self.dns_port,
            include_file=str(self.home_dir / "dns" / "zones.conf"),
            access=(f"{self.net}.1.0/24", "127.0.0.0/8"),
            upstreams=(f"{self.addr('vps_wan')}@53",),
            control_port=self.unbound_control_port,
            key_dir=str(d),
            directory=str(d),
            pidfile=str(d / "unbound.pid"),
            username="",
            trust_anchor_file=None,
            trust_anchors=(self.trust_anchor,),
            logfile=str(d / "unbound.log"),
            no_default_zones=("test",),
        )  # the lab's zone, example.test, is a special-use name
        (d / "unbound.conf").write_text(render_conf(settings))
        include = self.home_dir / "dns" / "zones.conf"
        if not include.exists():
            include.write_text("server:\n")
        self.spawn("unbound", ["unbound", "-d", "-c", str(d / "unbound.conf")])
        _wait(
            lambda: sh("unbound-control", "-c", str(d / "unbound.conf"), "status", check=False).returncode == 0,
            20,
            "Unbound",
            self.dir / "unbound.log",
        )
        os.chmod(d / "control.sock", 0o600)  # the control plane runs as the same user here
        # the namespaces' clients use the resolvers a real one would: the LAN client home's,
        # the internet client the public DNS (BIND)
        for ns, server in (("lan", self.addr("home_lan")), ("inet", self.addr("vps_wan"))):
            Path(f"/etc/netns/{self.ns[ns]}").mkdir(parents=True, exist_ok=True)
            Path(f"/etc/netns/{self.ns[ns]}/resolv.conf").write_text(f"nameserver {server}\n")

    def unbound_control(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("unbound-control", "-c", str(self.unbound_dir / "unbound.conf"), *args, check=check)

    def dig(self, where: str | None, name: str, *args: str, server: str | None = None) -> subprocess.CompletedProcess:
        """dig from a namespace ("lan", "inet") or home (None), against its usual resolver."""
        server = server or (self.addr("vps_wan") if where == "inet" else self.addr("home_lan"))
        return sh(
            "dig",
            "+time=2",
            "+tries=1",
            f"@{server}",
            "-p",
            str(self.dns_port if server == self.addr("home_lan") else 53),
            name,
            *args,
            ns=self.ns[where] if where else None,
            check=False,
        )

    def start_all(self) -> None:
        self.write_configs()
        if self.dns:
            self.start_bind()
            self.start_unbound()
        self.start_control()
        self.start_home_envoy()
        self.start_edge()

    def stop_all(self) -> None:
        for name in ("edge", "home-envoy", "control", "unbound", "bind", "app"):
            self.stop(name)

    # -- clients -------------------------------------------------------------------------
    def curl(self, where: str, url: str, *args: str, timeout: float = 5) -> subprocess.CompletedProcess:
        """curl from the internet client ("inet") or the LAN client ("lan"); the output
        ends with a line holding the status code."""
        return sh(
            "curl",
            "-sS",
            "--max-time",
            str(timeout),
            "-w",
            "\n%{http_code}",
            *args,
            url,
            ns=self.ns[where],
            check=False,
            timeout=timeout + 5,
        )

    # -- state file (for the demo's stop command) ----------------------------------------
    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data["dir"] = str(self.dir)
        (self.dir / "lab.json").write_text(json.dumps(data))

    @classmethod
    def load(cls, directory: Path) -> Lab:
        data = json.loads((directory / "lab.json").read_text())
        data["dir"] = Path(data["dir"])
        return cls(**data)

    def down(self) -> None:
        self.stop_all()
        self.network_down()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][:1] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def _wait(check, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    tail = ""
    if log is not None and log.exists():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise LabError(f"timed out after {timeout:.0f} s waiting for {what}{tail}")


def info(lab: Lab) -> str:
    inet, lan = lab.ns["inet"], lab.ns["lan"]
    envoyage = f"{VENV}/bin/envoyage -c {lab.home_config}"
    if lab.dns:
        paths = f"""  Internet path (client -> VPS Envoy -> WireGuard tunnel -> home Envoy -> app); the internet's
  DNS (BIND9 in the VPS namespace) answers every example.test name with the VPS:
    ip netns exec {inet} curl http://whoami.example.test/
    ip netns exec {inet} curl -g -H 'Host: whoami.example.test' 'http://[{lab.vps_public6}]/'
  LAN path (client -> home Envoy -> app; nothing goes through the VPS): the LAN client's
  resolver is home's Unbound, which answers the same name with home's LAN address:
    ip netns exec {lan} curl http://whoami.example.test:{lab.http_port}/
  A vpn-only service answers on the LAN path only:
    ip netns exec {lan} curl http://private.example.test:{lab.http_port}/
  The same name, two answers (split horizon), and the checks:
    ip netns exec {lan} dig +short whoami.example.test     # {lab.addr("home_lan")}, home
    ip netns exec {inet} dig +short whoami.example.test    # {lab.addr("vps_wan")}, the VPS
    {envoyage} check dns whoami.example.test
    {envoyage} check service whoami
    {envoyage} check tunnel"""
    else:
        paths = f"""  Internet path (client -> VPS Envoy -> WireGuard tunnel -> home Envoy -> app):
    ip netns exec {inet} curl -H 'Host: whoami.example.test' http://{lab.addr("vps_public")}/
    ip netns exec {inet} curl -g -H 'Host: whoami.example.test' 'http://[{lab.vps_public6}]/'
  LAN path (client -> home Envoy -> app; nothing goes through the VPS):
    ip netns exec {lan} curl -H 'Host: whoami.example.test' http://{lab.addr("home_lan")}:{lab.http_port}/
  A vpn-only service answers on the LAN path only:
    ip netns exec {lan} curl -H 'Host: private.example.test' http://{lab.addr("home_lan")}:{lab.http_port}/"""
    return f"""
Topology A is running in network namespaces (state in {lab.dir}).

{paths}
  Add a container and it appears on both paths:
    docker run -d --name envoyage-{lab.scope}-blog -l envoyage.enable=true -l envoyage.scope={lab.scope} \\
      -l envoyage.domain=blog.example.test envoyage/sample-app:1
  Status (tunnel, edge link, both Envoys{", DNS" if lab.dns else ""}):
    {envoyage} status
  Logs: {lab.dir}/*.log, home access log {lab.home_access_log}, VPS access log {lab.edge_access_log}

  Stop it all:  bash {ROOT}/scripts/demo.sh --topology a stop
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down", "info", "network-up"])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/envoyage-topology-a"))
    parser.add_argument("--net", default="10.231", help="first two octets of the lab's addresses")
    parser.add_argument("--scope", default="topology-a")
    parser.add_argument("--tag", default="eya", help="prefix of the namespaces and interfaces (up to 5 characters)")
    parser.add_argument("--http-port", type=int, default=18480, help="the home Envoy's LAN port")
    parser.add_argument(
        "--admin-port",
        type=int,
        default=19901,
        help="the home Envoy's base id (its admin is a "
        "0600 Unix socket in the lab directory); the unbound control port is next to it",
    )
    parser.add_argument(
        "--dns",
        action="store_true",
        help="split-horizon DNS: Unbound on home, BIND9 as the internet's DNS, and the clients' resolvers set to them",
    )
    args = parser.parse_args(argv)
    if not (args.tag.isalnum() and len(args.tag) <= 5):
        parser.error("--tag: letters and digits, up to 5")
    try:
        if args.action == "down":
            lab = Lab.load(args.dir) if (args.dir / "lab.json").exists() else Lab(args.dir, net=args.net, tag=args.tag)
            lab.down()
            return 0
        if args.action == "info":
            print(info(Lab.load(args.dir)))
            return 0
        lab = Lab(
            args.dir,
            net=args.net,
            scope=args.scope,
            tag=args.tag,
            http_port=args.http_port,
            admin_port=args.admin_port,
            dns=args.dns,
            unbound_control_port=args.admin_port + 2,
        )  # next to the admin port: two labs never share it
        lab.save()
        print("==> network namespaces, NAT router and WireGuard tunnel", file=sys.stderr)
        lab.network_up()
        if args.action == "network-up":
            return 0
        print("==> control plane, home Envoy, edge service and VPS Envoy", file=sys.stderr)
        lab.start_all()
        return 0
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
