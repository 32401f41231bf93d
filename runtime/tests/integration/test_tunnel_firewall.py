"""Home's tunnel interface is not a back door, and nothing leaks when it is gone
(docs/security.md, "The tunnel interface" and "When the tunnel interface is gone"), and
the tunnel's status is readable without root under wireguard-go (docs/topology-a.md).

A lab of its own (scripts/topology_a.py, home in the root namespace on eyf-wgh, the VPS
in eyf-vps), real wireguard-go, real iptables, the machine's real dockerd. Everything
the VPS side sends goes to home's tunnel address; everything home sends goes to the
VPS's tunnel address; when the interfaces are deleted, a guard rule in OUTPUT drops (and
counts) anything for the tunnel prefix, so nothing leaves even without the fix.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import pytest
from support.helpers import ENVOYAGE, Upstream, free_port, wait_for
from support.lab import add, running_lab, status

pytestmark = pytest.mark.integration

PYTHON = sys.executable

# connect (tcp) or send and wait for an answer (udp); prints "open", "timeout" or the
# errno's name, then the seconds it took
PROBE = r"""
import errno, socket, sys, time
kind, host, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
start = time.monotonic()
try:
    if kind == "tcp":
        socket.create_connection((host, port), timeout=timeout).close()
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        s.sendto(b"probe", (host, port))
        s.recvfrom(512)
    print("open")
except socket.timeout:
    print("timeout")
except OSError as exc:
    print(errno.errorcode.get(exc.errno, str(exc.errno)))
print(round(time.monotonic() - start, 3))
"""


def probe(kind: str, host: str, port: int, ns: str | None = None, timeout: float = 2.0) -> tuple[str, float]:
    argv = (["ip", "netns", "exec", ns] if ns else []) + [PYTHON, "-c", PROBE, kind, host, str(port), str(timeout)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 10)
    result, seconds = out.stdout.split()
    return result, float(seconds)


class Listeners:
    """TCP listeners that accept and close, and UDP listeners that echo, in this (the
    root, home's) namespace; all closed at the end."""

    def __init__(self):
        self.socks: list[socket.socket] = []
        self.stop = threading.Event()

    def tcp(self, address: str, port: int) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        s.listen(16)
        s.settimeout(0.2)
        self.socks.append(s)
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def udp(self, address: str, port: int) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((address, port))
        s.settimeout(0.2)
        self.socks.append(s)
        threading.Thread(target=self._echo, args=(s,), daemon=True).start()

    def _accept(self, s):
        while not self.stop.is_set():
            try:
                conn, _ = s.accept()
                conn.close()
            except OSError:
                continue

    def _echo(self, s):
        while not self.stop.is_set():
            try:
                data, peer = s.recvfrom(512)
                s.sendto(data, peer)
            except OSError:
                continue

    def close(self):
        self.stop.set()
        for s in self.socks:
            s.close()


def iptables_s(*args: str, ns: str | None = None) -> str:
    argv = (["ip", "netns", "exec", ns] if ns else []) + ["iptables", "-w", "-S", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout


def ours() -> list[str]:
    """This lab's rules in the root namespace (other labs may add theirs meanwhile)."""
    return [line for line in iptables_s().splitlines() if "eyf-wgh" in line]


@pytest.fixture(scope="module")
def lab():
    with running_lab("eyF-", tag="eyf", net="10.238", edge_health_interval="1s") as lab:
        wait_for(lambda: status(lab)["edge"]["connected"], timeout=30, what="the edge link up")
        yield lab
    # `down` takes home's rules and route with it: nothing is left in the root namespace
    assert ours() == [] and "ENVOYAGE-TUN-eyf" not in iptables_s()
    assert (
        "10.238.100.0/24"
        not in subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    )


@pytest.fixture(scope="module")
def app():
    a = Upstream("echo", echo=True)
    yield a
    a.close()


def test_from_the_vps_only_the_tunnel_listener_and_the_edge_link_are_open_on_home(lab, app, docker):
    home, vps_ns = lab.plan["home"], lab.ns["vps"]
    listeners = Listeners()
    sshd = free_port()
    published = free_port()
    try:
        listeners.tcp("0.0.0.0", sshd)  # stands for sshd (every address, as sshd listens)
        listeners.udp(home, 53)  # stands for Unbound (UDP and TCP)
        listeners.tcp(home, 53)
        docker.run(
            f"eyf-published-{uuid.uuid4().hex[:8]}", labels={"envoyage.enable": "false"}, ports={"80/tcp": published}
        )
        # all of them answer on home itself
        for kind, host, port in (
            ("tcp", "127.0.0.1", sshd),
            ("udp", home, 53),
            ("tcp", home, 53),
            ("tcp", "127.0.0.1", lab.http_port),
        ):
            assert probe(kind, host, port)[0] == "open", (kind, host, port)
        wait_for(
            lambda: probe("tcp", "127.0.0.1", published)[0] == "open",
            timeout=15,
            what="the published container port on home",
        )

        # from the VPS, over the tunnel: nothing but the two ports
        blocked = {
            "sshd": ("tcp", sshd),
            "a Docker-published container port": ("tcp", published),
            "the LAN listener": ("tcp", lab.http_port),
            "DNS over UDP": ("udp", 53),
            "DNS over TCP": ("tcp", 53),
        }
        seen = {what: probe(kind, home, port, ns=vps_ns)[0] for what, (kind, port) in blocked.items()}
        assert seen == {what: "timeout" for what in blocked}, seen
        for port in (lab.tunnel_port, lab.link_port):
            assert probe("tcp", home, port, ns=vps_ns)[0] == "open", port
    finally:
        listeners.close()

    # and what goes through them still works: a request through the VPS, the edge link
    add(lab, "echo", "echo.example.test", app.address)
    out = wait_for(
        lambda: (lambda r: r if r.stdout.endswith("\n200") else None)(
            lab.curl("inet", f"http://{lab.addr('vps_public')}/", "-H", "Host: echo.example.test")
        ),
        timeout=20,
        what="200 through the VPS",
    )
    assert json.loads(out.stdout.rpartition("\n")[0])["path"] == "/"
    assert status(lab)["edge"]["connected"]


def test_home_still_opens_connections_to_the_vps_over_the_tunnel(lab):
    port = free_port()
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            lab.ns["vps"],
            PYTHON,
            "-c",
            "import socket,sys; s=socket.socket(); s.bind((sys.argv[1], int(sys.argv[2]))); "
            "s.listen(1); s.settimeout(20); c,_=s.accept(); c.sendall(b'hello from the vps'); "
            "c.close()",
            lab.plan["vps"],
            str(port),
        ]
    )
    try:

        def hello():
            with socket.create_connection((lab.plan["vps"], port), timeout=3) as s:
                return s.recv(100)

        assert wait_for(hello, timeout=10, what="home's connection to the VPS") == b"hello from the vps"
    finally:
        server.kill()
        server.wait(timeout=10)


def test_the_rules_survive_a_tunnel_restart_and_a_second_bring_up_adds_nothing(lab):
    before = ours()
    chain = iptables_s("ENVOYAGE-TUN-eyf-wgh")
    assert chain.count("-j DROP") == 1 and f"--dports {min(lab.tunnel_port, lab.link_port)}," in chain
    lab.tunnel_down()
    # while the interface is gone the rules stay (keyed on its name, they match nothing)
    assert ours() == before
    lab.tunnel_up()
    lab.tunnel_up()
    after = ours()
    assert after == before
    for hook in ("INPUT", "FORWARD", "DOCKER-USER"):
        jumps = [line for line in after if line.startswith(f"-A {hook} ")]
        assert jumps == [f"-A {hook} -i eyf-wgh -j ENVOYAGE-TUN-eyf-wgh"], (hook, jumps)
    # in DOCKER-USER above Docker's RETURN
    docker_user = iptables_s("DOCKER-USER").splitlines()
    assert docker_user.index("-A DOCKER-USER -i eyf-wgh -j ENVOYAGE-TUN-eyf-wgh") < docker_user.index(
        "-A DOCKER-USER -j RETURN"
    )
    wait_for(lambda: lab.handshake_age() is not None, timeout=30, what="a handshake after the restart")
    assert probe("tcp", lab.plan["home"], lab.http_port, ns=lab.ns["vps"])[0] == "timeout"
    assert wait_for(
        lambda: probe("tcp", lab.plan["home"], lab.tunnel_port, ns=lab.ns["vps"])[0] == "open",
        timeout=20,
        what="the tunnel listener after the restart",
    )


def test_the_status_writer_lets_an_unprivileged_control_plane_read_the_tunnel(lab):
    """wireguard-go's socket is root's alone: the writer (root) keeps a file the control
    plane's user reads, and the file holds no key."""
    out_dir = Path(tempfile.mkdtemp(prefix="eyf-status-", dir="/tmp"))
    os.chmod(out_dir, 0o755)
    path = out_dir / "eyf-wgh.json"
    lab.spawn(
        "status-writer",
        [ENVOYAGE, "tunnel", "status", "--interface", lab.home_wg, "--output", str(path), "--interval", "0.5"],
    )
    read = (
        "import json, sys; from envoyage.control.tunnel import TunnelMonitor; "
        "m = TunnelMonitor(sys.argv[1], status_file=sys.argv[2] if len(sys.argv) > 2 else None); "
        "print(json.dumps(m.status().to_json()))"
    )
    nobody = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", PYTHON, "-c", read, lab.home_wg]
    try:
        wait_for(path.exists, timeout=10, what="the status file")
        first = json.loads(path.read_text())["written_at"]
        without = json.loads(subprocess.run(nobody, capture_output=True, text=True, timeout=30, check=True).stdout)
        assert "only root may use it" in without["problem"]
        with_file = json.loads(
            subprocess.run(nobody + [str(path)], capture_output=True, text=True, timeout=30, check=True).stdout
        )
        assert with_file["problem"] is None, with_file
        assert with_file["handshake_age"] < 180 and with_file["rx_bytes"] > 0 and with_file["tx_bytes"] > 0
        assert with_file["endpoint"] == f"{lab.addr('vps_wan')}:{lab.wg_port}"
        text = path.read_text()
        keys = [wg_key(lab.home_dir / "wg.key"), wg_key(lab.vps_dir / "wg.key")]
        pubs = [subprocess.run(["wg", "pubkey"], input=k, capture_output=True, text=True).stdout.strip() for k in keys]
        assert not any(k in text for k in keys + pubs)
        assert oct(path.stat().st_mode & 0o777) == "0o644"
        wait_for(lambda: json.loads(path.read_text())["written_at"] > first, timeout=5, what="a fresh write")
    finally:
        lab.stop("status-writer")
        subprocess.run(["rm", "-rf", str(out_dir)], check=False)


def wg_key(path: Path) -> str:
    return path.read_text().strip()


def test_with_the_interfaces_gone_the_tunnel_prefix_is_unreachable_not_the_default_route(lab):
    """Last in this module: it deletes both interfaces (and brings the tunnel back)."""
    home_ns, vps_ns = None, lab.ns["vps"]
    prefix = lab.tunnel_prefix
    guard = ["OUTPUT", "-d", prefix, "-m", "comment", "--comment", "eyf-test-guard", "-j", "DROP"]

    def ipt(ns, *args):
        return subprocess.run(
            (["ip", "netns", "exec", ns] if ns else []) + ["iptables", "-w", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout

    def guarded_packets(ns) -> int:
        for line in ipt(ns, "-L", "OUTPUT", "-v", "-n", "-x").splitlines():
            if "eyf-test-guard" in line:
                return int(line.split()[0])
        raise AssertionError("guard rule missing")

    # a VPS has a default route (here: into the lab's router, which drops it); home has
    # the machine's. The guard drops and counts anything for the prefix that gets as far
    # as OUTPUT, i.e. that found a route.
    subprocess.run(["ip", "-n", vps_ns, "route", "add", "default", "via", lab.addr("router_out")], check=True)
    for ns in (home_ns, vps_ns):
        ipt(ns, "-I", *guard)
    try:
        subprocess.run(["ip", "link", "del", lab.home_wg], check=True)
        subprocess.run(["ip", "-n", vps_ns, "link", "del", lab.vps_wg], check=True)
        for ns, target in ((home_ns, lab.plan["vps"]), (vps_ns, lab.plan["home"])):
            route = subprocess.run(
                (["ip", "-n", ns] if ns else ["ip"]) + ["route", "get", target], capture_output=True, text=True
            )
            assert "No route to host" in route.stderr, (ns, route.stdout, route.stderr)
        for ns, target, port in (
            (vps_ns, lab.plan["home"], lab.tunnel_port),
            (vps_ns, lab.plan["home"], lab.link_port),
            (home_ns, lab.plan["vps"], 22),
        ):
            result, seconds = probe("tcp", target, port, ns=ns, timeout=3)
            assert (result, seconds < 1.0) == ("EHOSTUNREACH", True), (ns, target, result, seconds)
        assert probe("udp", lab.plan["home"], 53, ns=vps_ns, timeout=1)[0] == "EHOSTUNREACH"
        assert (guarded_packets(home_ns), guarded_packets(vps_ns)) == (0, 0)
    finally:
        for ns in (home_ns, vps_ns):
            subprocess.run(
                (["ip", "netns", "exec", ns] if ns else []) + ["iptables", "-w", "-D", *guard], check=False, timeout=30
            )
        subprocess.run(["ip", "-n", vps_ns, "route", "del", "default"], check=False)
        lab.tunnel_up()
    wait_for(lambda: lab.handshake_age() is not None, timeout=30, what="a handshake after the tunnel came back")
