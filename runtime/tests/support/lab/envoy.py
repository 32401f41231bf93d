"""The Envoyage side of the lab: the control plane and the home Envoy on home, `envoyage
edge` and the VPS Envoy it runs in the VPS namespace; their configuration files (the
tunnel's and the DNS's settings go into them) and their admin interfaces."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from envoyage.link import secret as link_secret

from ..helpers import envoy_command
from .dns import Dns
from .nodes import VENV, sh, wait_until
from .tunnel import Tunnel


@dataclass
class Envoys(Tunnel, Dns):
    edge_port: int = 80
    edge_admin_port: int = 0  # 0: the VPS Envoy's admin on its 0600 socket (the edge's default)
    edge_health_interval: str = "30s"
    # who counts as the LAN for vpn-only (None: the LAN client's network and loopback)
    lan_cidrs: list | None = None

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

    def start_control(self) -> None:
        self.spawn("control", [str(VENV / "bin" / "envoyage"), "-c", str(self.home_config), "control"], umask="0027")
        wait_until(lambda: self.control_socket.exists(), 20, "the control plane's socket", self.dir / "control.log")

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
            envoy_command(boot, self.admin_port, envoy=str(VENV / "bin" / "envoy")),
            umask="0027",
        )
        wait_until(lambda: self.home_admin("/ready") == "LIVE", 30, "the home Envoy", self.dir / "home-envoy.log")

    def start_edge(self, wait: bool = True) -> None:
        self.spawn("edge", [str(VENV / "bin" / "envoyage"), "-c", str(self.edge_config), "edge"], ns=self.ns["vps"])
        if wait:
            wait_until(
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
