"""Topology A after converge: what a user would check by hand (molecule verify)."""

import json
import sys
import time
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "common"))
from checks import (  # noqa: E402
    assert_dns_stays_in_the_lab,
    assert_status_without_problems,
    assert_unit_runs_as,
    eventually,
    get,
    ok,
    resolver_answer,
    scan_and_wait_for_ban,
)

HOME = testinfra.get_host("docker://eym-home")
VPS = testinfra.get_host("docker://eym-vps")
HOME_IP, VPS_IP = "198.18.90.2", "198.18.90.3"
APP = "whoami.example.test"  # no envoyage.domain label: <name>.<envoyage_domain>


@pytest.mark.parametrize(
    "host,unit,user",
    [
        (HOME, "envoyage-control", "envoyage"),
        (HOME, "envoyage-envoy", "envoy"),
        (HOME, "unbound", "unbound"),
        (VPS, "envoyage-edge", "envoyage-edge"),
        (VPS, "crowdsec", "root"),
    ],
)
def test_services_run_under_their_own_users(host, unit, user):
    assert_unit_runs_as(host, unit, user)


def test_the_vps_envoy_runs_under_the_edge_user():
    envoys = VPS.process.filter(comm="envoy")
    assert envoys and all(p.user == "envoyage-edge" for p in envoys)


def test_tunnel_handshake_is_recent():
    def recent():
        out = HOME.check_output("wg show envoyage0 latest-handshakes")
        stamps = [int(line.split()[1]) for line in out.splitlines() if line.strip()]
        return stamps and time.time() - max(stamps) < 180

    eventually(recent, what="a WireGuard handshake in the last 3 minutes")


def test_home_resolver_answers_the_app_with_home_address():
    assert resolver_answer(HOME, APP) == [HOME_IP]


@pytest.mark.parametrize("address", [VPS_IP, HOME_IP])
def test_app_answers_through_the_vps_and_directly_on_home(address):
    body = eventually(lambda: ok(get(address, APP)), what=f"200 from {address}")[1]
    assert body.strip()  # the sample app answers with its container name


def test_status_shows_both_envoys_in_sync():
    def in_sync():
        st = json.loads(HOME.check_output("envoyage status --json"))
        home = [n for n in st["nodes"] if n["role"] == "home" and n["connected"]]
        assert home, st["nodes"]
        want = st["snapshots"][home[0]["snapshot"]]
        assert all(home[0]["types"][t]["last_acked_version"] == v for t, v in want.items() if t in home[0]["types"])
        edge = st["edge"]
        assert edge["connected"] and edge["in_sync"], edge
        assert edge["envoy"] and all(n["connected"] for n in edge["envoy"]), edge["envoy"]
        assert all(not t["error"] for n in edge["envoy"] for t in n["types"].values())
        return True

    eventually(in_sync, what="both Envoys in sync")


@pytest.mark.parametrize(
    "host,path,owner",
    [
        (HOME, "/etc/envoyage/wireguard/envoyage0.key", "root"),
        (VPS, "/etc/envoyage/wireguard/envoyage0.key", "root"),
        (HOME, "/var/lib/envoyage/edge-link.key", "envoyage"),
        (VPS, "/etc/envoyage/edge.secret", "envoyage-edge"),
        (VPS, "/etc/envoyage/crowdsec-bouncer.key", "envoyage-edge"),
    ],
)
def test_key_files_are_0600(host, path, owner):
    f = host.file(path)
    assert f.exists and f.mode == 0o600 and f.user == owner


def test_the_edge_secret_left_home():
    assert not HOME.file("/var/lib/envoyage/edge-secret.outbox").exists
    assert not HOME.file("/var/lib/envoyage/edge-secret.hash").exists  # home keeps only the derived link key
    assert HOME.file("/var/lib/envoyage/edge-link.key").content_string.startswith("envoyage-link-key-v1$")


def test_crowdsec_bans_a_scan_seen_in_the_vps_envoy_log():
    # from this machine (198.18.90.1 on the scenario network), through the VPS Envoy
    scan_and_wait_for_ban(VPS, VPS_IP, APP, "198.18.90.1")


def test_no_name_is_resolved_outside_the_lab():
    assert_dns_stays_in_the_lab(HOME, VPS_IP, APP, VPS_IP)


def test_the_tunnel_status_is_read_without_root_and_shows_no_problem():
    from checks import assert_tunnel_status_healthy

    assert_unit_runs_as(HOME, "envoyage-tunnel-status", "root")
    assert_tunnel_status_healthy(HOME)


def test_from_the_vps_only_the_tunnel_listener_and_the_edge_link_answer_on_home():
    from checks import assert_only_ports_open_over_the_tunnel

    # 80: the LAN listener, 53: Unbound, 22: where sshd would be
    assert_only_ports_open_over_the_tunnel(VPS, "10.88.0.2", open_ports=[18080, 18443], dropped_ports=[80, 53, 22])


@pytest.mark.parametrize("host", [HOME, VPS])
def test_the_tunnel_prefix_has_an_unreachable_route_behind_the_interface(host):
    assert "unreachable 10.88.0.0/24 metric 4294967295" in host.check_output("ip route show type unreachable")


def test_a_healthy_installation_shows_no_problem():
    assert_status_without_problems(HOME)
