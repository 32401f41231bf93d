"""Split-horizon DNS (topology A, part 2) in the namespace harness: a real Unbound on
home's LAN address fed by the control plane's DNS controller, a real BIND9 in the VPS
namespace serving a DNSSEC-signed example.test (every name -> the VPS) as "the internet's
DNS", and the LAN and internet clients using them as their resolvers. Traffic goes only
to addresses inside the namespaces the harness created."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid

import pytest
from support.helpers import Upstream, free_port, wait_for
from support.lab import Lab, add, cli, running_lab, status

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab():
    with running_lab("eyD-", tag="eys", net="10.236", dns=True, unbound_control_port=free_port()) as lab:
        yield lab


@pytest.fixture(scope="module")
def app():
    a = Upstream("app")
    yield a
    a.close()


def answers(lab: Lab, where: str | None, name: str) -> list[str]:
    return lab.dig(where, name, "+short").stdout.split()


def home_zones(lab: Lab) -> set[str]:
    out = lab.unbound_control("list_local_zones").stdout
    return {line.split()[0] for line in out.splitlines() if line.split() and line.split()[0].endswith("example.test.")}


def test_a_new_container_resolves_to_home_on_the_lan_and_never_touches_the_vps(lab, docker):
    name = f"dns-{uuid.uuid4().hex[:6]}"
    domain = f"{name}.example.test"
    home = lab.addr("home_lan")
    c = docker.run(name, labels={"envoyage.domain": domain})
    wait_for(lambda: answers(lab, "lan", domain) == [home], timeout=15, what="the LAN resolver to answer home")
    # the internet still gets the VPS for the same name
    assert answers(lab, "inet", domain) == [lab.addr("vps_wan")]
    # the LAN client, using its resolver as a browser would, is served by the home Envoy
    # (the access log keeps no query string, so the request is told apart by its user agent)
    marker = f"lan-{uuid.uuid4().hex[:8]}"
    out = lab.curl("lan", f"http://{domain}:{lab.http_port}/?m={marker}", "-A", marker)
    assert out.stdout.rpartition("\n")[2] == "200", out.stdout + out.stderr
    lines = lambda path: [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []  # noqa: E731
    mine = lambda path: [x for x in lines(path) if x.get("user_agent") == marker]  # noqa: E731
    wait_for(lambda: mine(lab.home_access_log), timeout=10, what="the request in the home access log")
    assert [x["path"] for x in mine(lab.home_access_log)] == ["/"]
    assert not mine(lab.edge_access_log)
    # the container goes: so does the name (the LAN then gets what the internet gets)
    c.remove(force=True)
    wait_for(
        lambda: answers(lab, "lan", domain) == [lab.addr("vps_wan")],
        timeout=15,
        what="the name to leave the home resolver",
    )
    assert f"{domain}." not in home_zones(lab)


def test_wildcards_resolve_for_any_label_and_other_names_go_upstream_validated(lab, app):
    add(lab, "apps", "*.apps.example.test", app.address)
    home = lab.addr("home_lan")
    for label in ("a", "deep.er", uuid.uuid4().hex[:8]):
        wait_for(
            lambda: answers(lab, "lan", f"{label}.apps.example.test") == [home],
            timeout=10,
            what=f"{label}.apps.example.test on the LAN",
        )
    out = lab.dig("lan", "outside.example.test")
    assert "status: NOERROR" in out.stdout and lab.outside_address in out.stdout
    assert " ad" in out.stdout.split("flags:")[1].split(";")[0], "the upstream answer was not DNSSEC-validated"
    cli(lab, "service", "rm", "apps")
    wait_for(
        lambda: answers(lab, "lan", "a.apps.example.test") == [lab.addr("vps_wan")],
        timeout=10,
        what="the wildcard to leave the home resolver",
    )


TAMPER = r"""
import socket, sys, time
listen, upstream, bad, good = sys.argv[1], sys.argv[2], socket.inet_aton(sys.argv[3]), socket.inet_aton(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((listen, 5353))
up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
up.settimeout(2)
deadline = time.time() + 120
while time.time() < deadline:
    s.settimeout(1)
    try:
        query, client = s.recvfrom(4096)
    except socket.timeout:
        continue
    up.sendto(query, (upstream, 53))
    try:
        answer, _ = up.recvfrom(65535)
    except socket.timeout:
        continue
    s.sendto(answer.replace(good, bad), client)
"""


def test_dnssec_a_record_altered_on_the_way_gives_servfail(lab):
    wan = lab.addr("vps_wan")
    altered = f"{lab.net}.3.78"
    proxy = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns["vps"], sys.executable, "-c", TAMPER, wan, wan, altered, lab.outside_address]
    )
    try:
        time.sleep(0.3)
        lab.unbound_control("forward", f"{wan}@5353")
        lab.unbound_control("flush_zone", "example.test")
        lab.unbound_control("flush_bogus")
        out = lab.dig("lan", "outside.example.test")
        assert "status: SERVFAIL" in out.stdout, out.stdout
        assert altered not in out.stdout
    finally:
        proxy.kill()
        proxy.wait()
        lab.unbound_control("forward", f"{wan}@53")
        lab.unbound_control("flush_zone", "example.test")
        lab.unbound_control("flush_bogus")
    assert lab.outside_address in lab.dig("lan", "outside.example.test").stdout


def test_unbound_down_is_a_named_problem_http_keeps_serving_and_entries_return(lab, app):
    add(lab, "before", "before.example.test", app.address)
    wait_for(
        lambda: answers(lab, "lan", "before.example.test") == [lab.addr("home_lan")],
        timeout=10,
        what="before.example.test on the LAN",
    )
    lab.stop("unbound")
    try:
        add(lab, "during", "during.example.test", app.address)
        problem = wait_for(
            lambda: [p for p in status(lab)["problems"] if p.startswith("dns:")],
            timeout=15,
            what="the DNS problem in status",
        )[0]
        assert "Unbound is not running" in problem
        out = lab.curl("lan", f"http://{lab.addr('home_lan')}:{lab.http_port}/", "-H", "Host: during.example.test")
        assert out.stdout.rpartition("\n")[2] == "200"
    finally:
        lab.start_unbound()
    home = lab.addr("home_lan")
    # the include file had both: a restarted Unbound answers them at once
    assert answers(lab, "lan", "before.example.test") == [home]
    assert answers(lab, "lan", "during.example.test") == [home]
    wait_for(
        lambda: not [p for p in status(lab)["problems"] if p.startswith("dns:")] and status(lab)["dns"]["in_sync"],
        timeout=15,
        what="the DNS problem to clear",
    )


def test_a_controller_restart_with_changes_meanwhile_ends_equal_to_the_registry(lab, app, docker):
    add(lab, "stays", "stays.example.test", app.address)
    gone = docker.run(f"gone-{uuid.uuid4().hex[:6]}", labels={"envoyage.domain": "gone.example.test"})
    wait_for(
        lambda: {"stays.example.test.", "gone.example.test."} <= home_zones(lab),
        timeout=15,
        what="both names in Unbound",
    )
    lab.stop("control")
    try:
        gone.remove(force=True)
        docker.run(f"new-{uuid.uuid4().hex[:6]}", labels={"envoyage.domain": "new.example.test"})
        lab.unbound_control("local_zone_remove", "stays.example.test.")  # Unbound lost one meanwhile
        lab.unbound_control("local_zone", "stray.example.test.", "transparent")  # not ours: left alone
    finally:
        lab.start_control()

    def registry_domains():
        services = json.loads(cli(lab, "services", "--json").stdout)
        return {f"{d}." for s in services if not s["problems"] for d in s["domains"] if not d.startswith("*.")}

    # Docker discovery's first resync after the start brings the registry up to date with
    # what changed while the control plane was down; only then is the registry the truth
    wait_for(
        lambda: "new.example.test." in registry_domains() and "gone.example.test." not in registry_domains(),
        timeout=20,
        what="the registry to have caught up with Docker",
    )
    want = registry_domains()
    wait_for(
        lambda: home_zones(lab) - {"stray.example.test."} == want,
        timeout=20,
        what=f"Unbound's zones to equal the registry's domains {sorted(want)}",
    )
    assert "stray.example.test." in home_zones(lab)
    assert {"stays.example.test.", "new.example.test."} <= want and "gone.example.test." not in want
    lab.unbound_control("local_zone_remove", "stray.example.test.")


def test_check_names_a_broken_tunnel_a_wrong_dns_answer_and_a_dead_service(lab, app):
    add(lab, "web", "web.example.test", app.address)
    wait_for(
        lambda: answers(lab, "lan", "web.example.test") == [lab.addr("home_lan")],
        timeout=10,
        what="web.example.test on the LAN",
    )
    ok = cli(lab, "check", "dns", "web.example.test", "--json")
    assert json.loads(ok.stdout)["ok"], ok.stdout
    # a wrong answer on the LAN
    lab.unbound_control("local_data_remove", "web.example.test.")
    lab.unbound_control("local_data", "web.example.test. 60 IN A 10.9.9.9")
    try:
        out = cli(lab, "check", "dns", "web.example.test", check=False)
        assert out.returncode == 1
        assert (
            f"PROBLEM: LAN clients get 10.9.9.9 for web.example.test, not this home's address {lab.addr('home_lan')}"
        ) in out.stdout
    finally:
        lab.unbound_control("local_data_remove", "web.example.test.")
        lab.unbound_control("local_data", f"web.example.test. 60 IN A {lab.addr('home_lan')}")
    # a dead service: a port bound (so no one else can take it) that nothing listens on
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    add(lab, "dead", "dead.example.test", f"127.0.0.1:{port}", "--no-health-check")
    # the VPS may get the new service a moment after home's resolver answers it
    good = wait_for(
        lambda: (lambda r: r if json.loads(r.stdout)["paths"].get("vps", {}).get("status") == 200 else None)(
            cli(lab, "check", "service", "web", "--json", check=False)
        ),
        timeout=15,
        what="web on both paths",
    )
    paths = json.loads(good.stdout)["paths"]
    assert good.returncode == 0 and set(paths) == {"lan", "vps"} and paths["lan"]["status"] == 200
    out = cli(lab, "check", "service", "dead", check=False)
    assert out.returncode == 1 and "PROBLEM: dead answers 503 on the LAN path" in out.stdout
    assert "PROBLEM: dead answers 503 on the VPS path" in out.stdout
    cli(lab, "service", "rm", "dead")
    dead.close()
    # a broken tunnel
    assert cli(lab, "check", "tunnel").returncode == 0
    lab.tunnel_down()
    try:
        out = wait_for(
            lambda: (lambda r: r if r.returncode == 1 else None)(cli(lab, "check", "tunnel", check=False)),
            timeout=15,
            what="check tunnel to fail",
        )
        assert "PROBLEM: the tunnel is down" in out.stdout
    finally:
        lab.tunnel_up()
    wait_for(
        lambda: cli(lab, "check", "tunnel", check=False).returncode == 0, timeout=30, what="check tunnel to pass again"
    )


def test_a_name_inside_another_service_s_zone_keeps_its_answer_when_the_outer_one_goes(lab, app):
    add(lab, "outer", "nest.example.test", app.address)
    add(lab, "inner", "www.nest.example.test", app.address)
    home = lab.addr("home_lan")
    wait_for(lambda: answers(lab, "lan", "www.nest.example.test") == [home], timeout=10, what="the inner name")
    cli(lab, "service", "rm", "outer")
    wait_for(lambda: "nest.example.test." not in home_zones(lab), timeout=10, what="the outer zone to go")
    assert answers(lab, "lan", "www.nest.example.test") == [home]
    cli(lab, "service", "rm", "inner")
    wait_for(
        lambda: answers(lab, "lan", "www.nest.example.test") == [lab.addr("vps_wan")],
        timeout=10,
        what="the inner name to go too",
    )
