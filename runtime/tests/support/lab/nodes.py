"""The lab's nodes: who is where. Names, addresses and directories of home (the root
namespace), the LAN client, the NAT router, the VPS and the internet client; their
namespaces and links; the processes the lab starts in them; clients' requests."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
VENV = Path(os.environ.get("ENVOYAGE_VENV", ROOT / ".venv"))


class LabError(RuntimeError):
    pass


def sh(*cmd: str, ns: str | None = None, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    argv = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {(proc.stderr or proc.stdout).strip()[:400]}")
    return proc


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][:1] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def wait_until(check, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    tail = ""
    if log is not None and log.exists():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise LabError(f"timed out after {timeout:.0f} s waiting for {what}{tail}")


@dataclass
class Nodes:
    dir: Path
    tag: str = "eya"
    net: str = "10.231"
    http_port: int = 18480  # the home Envoy's LAN listener (every address)
    admin_port: int = 19901  # the home Envoy's base id (its admin is a 0600 socket, home_admin_socket)
    tunnel_port: int = 18080  # the home Envoy's tunnel listener
    link_port: int = 18443
    scope: str = "topology-a"
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
    def home_dir(self) -> Path:
        return self.dir / "home"

    @property
    def vps_dir(self) -> Path:
        return self.dir / "vps"

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

    def namespaces_up(self) -> None:
        """The namespaces, their veth links and addresses, and the NAT router."""
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

    def namespaces_down(self) -> None:
        """Every namespace (and what still runs in it), the veth links, /etc/netns."""
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

    # -- processes -----------------------------------------------------------------------
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
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip().isdigit(), 5, f"{name} to start")
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
            while time.monotonic() < deadline and alive(pid):
                time.sleep(0.05)
            if not alive(pid):
                return

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
