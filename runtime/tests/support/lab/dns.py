"""The lab's split-horizon DNS: BIND in the VPS namespace as the internet's DNS (a
signed zone, example.test) and Unbound on home's LAN address as home's resolver, written
by the runtime's own renderer (envoyage.dns.unbound)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .nodes import Nodes, sh, wait_until


@dataclass
class Dns(Nodes):
    # split-horizon DNS (issue: topology A part 2): Unbound on home's LAN address, BIND in
    # the VPS namespace as "the internet's DNS" with a signed zone example.test
    dns: bool = False
    dns_port: int = 53
    unbound_control_port: int = 18953  # only with TLS control (the lab uses a Unix socket)

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
        wait_until(
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
        wait_until(
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
