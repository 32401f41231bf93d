"""Topology C (home only) after converge (molecule verify)."""

import json
import time
import urllib.error
import urllib.request

import pytest
import testinfra

HOME = testinfra.get_host("docker://eymc-home")
HOME_IP = "198.18.91.2"
APP = "whoami.example.test"


def get(address, host_header, path="/"):
    req = urllib.request.Request(f"http://{address}{path}", headers={"Host": host_header})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def ok(result):
    """A (status, body) result if the status is 200, else None (keep waiting)."""
    return result if result[0] == 200 else None


def eventually(check, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, AssertionError, ValueError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached in {timeout}s: {last!r}")


@pytest.mark.parametrize("unit,user", [
    ("envoyage-control", "envoyage"), ("envoyage-envoy", "envoy"), ("unbound", "unbound"), ("crowdsec", "root")])
def test_services_run_under_their_own_users(unit, user):
    svc = HOME.service(unit)
    assert svc.is_running and svc.is_enabled
    pid = HOME.check_output(f"systemctl show -p MainPID --value {unit}")
    assert HOME.check_output(f"ps -o user= -p {pid}").strip() == user


def test_no_tunnel_and_no_edge_in_topology_c():
    assert not HOME.service("envoyage-tunnel").is_enabled
    st = json.loads(HOME.check_output("envoyage status --json"))
    assert st.get("edge") is None and st.get("tunnel") is None


def test_app_answers_on_home():
    status, body = eventually(lambda: ok(get(HOME_IP, APP)), what="200 on home")
    assert body.strip()


def test_home_resolver_answers_the_app_with_home_address():
    probe = ("import dns.resolver as r; res = r.Resolver(configure=False); res.nameservers = ['127.0.0.1']; "
             f"print(' '.join(a.address for a in res.resolve('{APP}', 'A')))")
    answer = eventually(lambda: HOME.check_output(f"/opt/envoyage/venv/bin/python -c \"{probe}\""),
                        what="Unbound answering the app's domain")
    assert answer.split() == [HOME_IP]


def test_crowdsec_on_home_bans_a_scan():
    for i in range(15):
        get(HOME_IP, APP, f"/scan-{i}.php")

    def banned():
        out = HOME.check_output("cscli decisions list -o json")
        decisions = [d for alert in (json.loads(out) or []) for d in alert.get("decisions") or []]
        return [d for d in decisions if d["value"] == "198.18.91.1" and d["type"] == "ban"]
    eventually(banned, what="a CrowdSec ban for the scanner")
    key = HOME.file("/etc/envoyage/crowdsec-bouncer.key")
    assert key.mode == 0o600 and key.user == "envoyage"
