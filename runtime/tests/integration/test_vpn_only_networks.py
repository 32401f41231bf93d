"""vpn-only means the LAN or a VPN client, nothing else (issue 20, item 1), tried as the
attackers would: a root user on the VPS who adds a second address in the tunnel prefix,
and a container on home's Docker network. The lab lists the old private-range defaults
explicitly (10.0.0.0/8 covers the tunnel prefix; the Docker bridge's subnet): both are
refused with a named problem, and the LAN client's own network still gets in."""

from __future__ import annotations

import subprocess

import pytest
from docker.types import IPAMConfig, IPAMPool
from support.helpers import RUN_ID, TEST_LABEL, Upstream, wait_for
from support.lab import add, running_lab, status

pytestmark = pytest.mark.integration

NET = "10.240"
LATE_SUBNET = "192.168.231.0/24"  # a Docker network made while the lab runs takes it


@pytest.fixture(scope="module")
def bridge_subnet(docker_client):
    return docker_client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Subnet"]


@pytest.fixture(scope="module")
def lab(bridge_subnet):
    with running_lab(
        "eyV-", tag="eyv", net=NET, lan_cidrs=["10.0.0.0/8", bridge_subnet, f"{NET}.1.0/24", LATE_SUBNET]
    ) as lab:
        yield lab


@pytest.fixture(scope="module")
def app():
    a = Upstream("private", echo=True)
    yield a
    a.close()


def lan_status(lab) -> int:
    out = lab.curl("lan", f"http://{lab.addr('home_lan')}:{lab.http_port}/", "-H", "Host: private.example.test")
    return int(out.stdout.rpartition("\n")[2] or 0)


def test_only_the_lan_passes_vpn_only(lab, app, docker, bridge_subnet):
    add(lab, "private", "private.example.test", app.address, "--access", "vpn-only")
    # the refused entries are named, with what they overlap
    problems = status(lab)["problems"]
    assert any(p.startswith("lan_cidrs: 10.0.0.0/8 overlaps the tunnel prefix") for p in problems), problems
    assert any(p.startswith(f"lan_cidrs: {bridge_subnet} overlaps the Docker network 'bridge'") for p in problems), (
        problems
    )
    # a LAN client gets in
    wait_for(lambda: lan_status(lab) == 200, timeout=15, what="the vpn-only service on the LAN")
    seen_before = len(app.seen)

    # a root user on the VPS adds a second address in the tunnel prefix and asks home's
    # LAN listener across the tunnel (home's WireGuard accepts the whole prefix from it)
    extra = f"{NET}.100.9"
    subprocess.run(["ip", "-n", lab.ns["vps"], "addr", "add", f"{extra}/32", "dev", lab.vps_wg], check=True)
    try:
        out = lab.curl(
            "vps",
            f"http://{lab.plan['home']}:{lab.http_port}/",
            "--interface",
            extra,
            "-H",
            "Host: private.example.test",
            timeout=4,
        )
        assert out.stdout.rpartition("\n")[2] in ("403", "000"), out.stdout  # refused, or dropped at the tunnel
    finally:
        subprocess.run(["ip", "-n", lab.ns["vps"], "addr", "del", f"{extra}/32", "dev", lab.vps_wg])
    # the same source address judged by the LAN listener itself (from home, past any
    # firewall on the tunnel interface): 403
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--interface",
            lab.plan["home"],
            "-H",
            "Host: private.example.test",
            f"http://{lab.addr('home_lan')}:{lab.http_port}/",
        ],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert out.stdout == "403", out

    # a container on home's Docker network (the default bridge)
    got = docker.client.containers.run(
        "envoyage/sample-app:1",
        [
            "sh",
            "-c",
            "wget -S -O - --header 'Host: private.example.test' "
            f"http://{lab.addr('home_lan')}:{lab.http_port}/ 2>&1; true",
        ],
        remove=True,
        stdout=True,
        stderr=True,
        labels={TEST_LABEL: RUN_ID},
    ).decode(errors="replace")
    assert "403" in got and "HTTP/1.1 200" not in got, got
    # home itself (a local user, a host-network container) on home's LAN address
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--interface",
            lab.addr("home_lan"),
            "-H",
            "Host: private.example.test",
            f"http://{lab.addr('home_lan')}:{lab.http_port}/",
        ],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert out.stdout == "403", out
    assert len(app.seen) == seen_before, "a request from the tunnel prefix, home or a container reached the app"
    # the LAN still gets in
    assert lan_status(lab) == 200 and len(app.seen) == seen_before + 1


def test_a_docker_network_made_later_is_refused_at_once(lab, app, docker):
    """A network created while the control plane runs (docker compose up) takes a subnet
    a LAN entry covers: the entry is refused as soon as dockerd reports the network."""
    add(lab, "private", "private.example.test", app.address, "--access", "vpn-only")
    wait_for(lambda: lan_status(lab) == 200, timeout=15, what="the vpn-only service on the LAN")
    net = docker.client.networks.create(
        f"eyv-late-{RUN_ID[-6:]}",
        driver="bridge",
        labels={TEST_LABEL: RUN_ID},
        ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=LATE_SUBNET)]),
    )
    try:
        wait_for(
            lambda: any(
                p.startswith(f"lan_cidrs: {LATE_SUBNET} overlaps the Docker network '{net.name}'")
                for p in status(lab)["problems"]
            ),
            timeout=15,
            what="the late network to be named",
        )
        seen = len(app.seen)
        got = docker.client.containers.run(
            "envoyage/sample-app:1",
            [
                "sh",
                "-c",
                "wget -S -O - --header 'Host: private.example.test' "
                f"http://{lab.addr('home_lan')}:{lab.http_port}/ 2>&1; true",
            ],
            remove=True,
            stdout=True,
            stderr=True,
            network=net.name,
            labels={TEST_LABEL: RUN_ID},
        ).decode(errors="replace")
        assert "403" in got and "HTTP/1.1 200" not in got, got
        assert len(app.seen) == seen
        assert lan_status(lab) == 200
    finally:
        net.remove()
