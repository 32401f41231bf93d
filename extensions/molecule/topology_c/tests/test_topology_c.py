"""Topology C (home only) after converge (molecule verify)."""

import json
import sys
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "common"))
from checks import assert_unit_runs_as, eventually, get, ok, resolver_answer, scan_and_wait_for_ban  # noqa: E402

HOME = testinfra.get_host("docker://eymc-home")
HOME_IP = "198.18.91.2"
APP = "whoami.example.test"


@pytest.mark.parametrize(
    "unit,user",
    [("envoyage-control", "envoyage"), ("envoyage-envoy", "envoy"), ("unbound", "unbound"), ("crowdsec", "root")],
)
def test_services_run_under_their_own_users(unit, user):
    assert_unit_runs_as(HOME, unit, user)


def test_no_tunnel_and_no_edge_in_topology_c():
    assert not HOME.service("envoyage-tunnel").is_enabled
    st = json.loads(HOME.check_output("envoyage status --json"))
    assert st.get("edge") is None and st.get("tunnel") is None


def test_app_answers_on_home():
    body = eventually(lambda: ok(get(HOME_IP, APP)), what="200 on home")[1]
    assert body.strip()


def test_home_resolver_answers_the_app_with_home_address():
    assert resolver_answer(HOME, APP) == [HOME_IP]


def test_crowdsec_on_home_bans_a_scan():
    scan_and_wait_for_ban(HOME, HOME_IP, APP, "198.18.91.1")
    key = HOME.file("/etc/envoyage/crowdsec-bouncer.key")
    assert key.mode == 0o600 and key.user == "envoyage"
