"""The lab's WireGuard tunnel, with the project's backend (module_utils/_wireguard.py) as
the wireguard role uses it: the VPS listens, home dials it through the NAT router, and
home's tunnel interface takes from the VPS only the tunnel listener and the edge link."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from envoyage.module_utils import _wireguard as wg
from envoyage.module_utils._files import write_secret_file

from .nodes import Nodes, sh


def _run_for_wg(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return proc.returncode, proc.stdout, proc.stderr


@dataclass
class Tunnel(Nodes):
    wg_port: int = 51820
    # home's tunnel interface accepts from the VPS only the tunnel listener and the edge
    # link (the backend's apply_firewall, as the wireguard role does; off only to test
    # the layers behind it on their own)
    tunnel_firewall: bool = True

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

    def tunnel_remove(self) -> None:
        """Home's tunnel interface, its firewall chain and unreachable route (home is the
        root namespace, so they would outlive the lab; the VPS's go with its namespace)."""
        sh("ip", "link", "del", self.home_wg, check=False)
        wg.remove_firewall(self.home_wg, run=_run_for_wg)
        wg.remove_unreachable_route(self.tunnel_prefix, run=_run_for_wg)
