"""Docker-label discovery against a real dockerd and a real Envoy."""

from __future__ import annotations

import json
import time

import pytest
from support.helpers import RUN_ID, TEST_LABEL, TEST_SCOPE, Setup, UnixProxy, http_get, make_config, wait_for


class serves:
    """A wait_for check: `host` answers `status` (and `body`); remembers what it last saw."""

    def __init__(self, setup, host, body=None, status=200):
        self.setup, self.host, self.body, self.status, self.last = setup, host, body, status, None

    def __call__(self):
        code, text = self.last = http_get(self.setup.http_port, self.host, timeout=3)
        return code == self.status and (self.body is None or text.strip() == self.body)

    def __repr__(self):
        return f"last answer {self.last}"


def services(setup):
    return {s["name"]: s for s in json.loads(setup.cli("services", "--json", check=True).stdout)}


def problems_of(setup, name):
    return services(setup).get(name, {}).get("problems")


def test_start_stop_die_rename_live(dsetup, docker):
    c = docker.run("ey-web", {"envoyage.domain": "web.test"})
    wait_for(serves(dsetup, "web.test", c.id[:12]), 5, what="the labelled container to answer")
    c.stop(timeout=5)
    wait_for(serves(dsetup, "web.test", status=404), 5, what="the route to go on stop")
    c.start()
    wait_for(serves(dsetup, "web.test", c.id[:12]), 5, what="the route to return on start")
    c.kill()
    wait_for(serves(dsetup, "web.test", status=404), 5, what="the route to go when it dies")
    c.start()
    wait_for(serves(dsetup, "web.test", c.id[:12]), 5, what="the route after a restart")
    c.rename("ey-web-renamed")
    wait_for(lambda: set(services(dsetup)) == {"ey-web-renamed"}, 5, what="the service to follow the rename")
    assert http_get(dsetup.http_port, "web.test") == (200, c.id[:12] + "\n")
    c.remove(force=True)
    wait_for(lambda: services(dsetup) == {}, 5, what="destroy to remove the service")


def test_network_connect_and_disconnect(dsetup, docker):
    n1, n2 = docker.network("ey-net1"), docker.network("ey-net2")
    c = docker.run("ey-netapp", {"envoyage.domain": "net.test"}, network="ey-net1")
    wait_for(serves(dsetup, "net.test", c.id[:12]), 5, what="service on its only network")
    n2.connect(c)
    wait_for(
        lambda: (
            problems_of(dsetup, "ey-netapp")
            == ["container is attached to several networks (ey-net1, ey-net2); set envoyage.network"]
        ),
        5,
        what="a problem when attached to two networks",
    )
    wait_for(serves(dsetup, "net.test", status=404), 5, what="an ambiguous container not to be served")
    n1.disconnect(c)
    wait_for(serves(dsetup, "net.test", c.id[:12]), 5, what="service again on the remaining network")
    c.reload()
    ip = c.attrs["NetworkSettings"]["Networks"]["ey-net2"]["IPAddress"]
    assert services(dsetup)["ey-netapp"]["upstreams"] == [f"{ip}:80"]


BAD = [
    ({"envoyage.domain": "bad.test", "envoyage.port": "eighty"}, {}, "envoyage.port: 'eighty' is not a port number"),
    (
        {"envoyage.domain": "bad.test", "envoyage.access": "everyone"},
        {},
        "envoyage.access: 'everyone' is not one of public, vpn-only, link-only",
    ),
    ({}, {}, "envoyage.domain: missing; set the domain(s) to serve, e.g. envoyage.domain=app.example.com"),
    (
        {"envoyage.domain": "bad.test", "envoyage.healtcheck": "/h"},
        {},
        "envoyage.healtcheck: unknown label; did you mean envoyage.healthcheck?",
    ),
    (
        {"envoyage.domain": "bad.test", "envoyage.healthcheck": "/h interval=soon"},
        {},
        "envoyage.healthcheck: 'soon' is not a duration (use e.g. '10s' or '500ms')",
    ),
    ({"envoyage.domain": "bad..test"}, {}, "envoyage.domain: 'bad..test' is not a valid domain name"),
    (
        {"envoyage.domain": "bad.test"},
        {"image": "envoyage/sample-app:noexpose"},
        "envoyage.port: missing, and the image exposes no TCP port; set envoyage.port",
    ),
    (
        {"envoyage.domain": "bad.test"},
        {"ports": {"81/tcp": None}},
        "envoyage.port: missing, and the image exposes several ports (80/tcp, 81/tcp); set envoyage.port",
    ),
    (
        {"envoyage.domain": "bad.test", "envoyage.network": "nope"},
        {},
        "envoyage.network: container is not attached to network 'nope' (attached: bridge)",
    ),
    (
        {"envoyage.domain": "bad.test"},
        {"network_mode": "none"},
        "container has no network; attach it to one (or to envoyage-mesh)",
    ),
]


@pytest.mark.parametrize("labels, kw, problem", BAD, ids=[b[2].split(":")[0] + f"-{i}" for i, b in enumerate(BAD)])
def test_bad_labels_are_a_problem_and_break_nobody(dsetup, docker, labels, kw, problem):
    good = docker.run("ey-good", {"envoyage.domain": "good.test"})
    wait_for(serves(dsetup, "good.test", good.id[:12]), 5, what="the good container")
    docker.run("ey-bad", labels, **kw)
    wait_for(lambda: problems_of(dsetup, "ey-bad"), 5, what="the bad container's problem")
    assert problems_of(dsetup, "ey-bad") == [problem]
    assert http_get(dsetup.http_port, "good.test") == (200, good.id[:12] + "\n")
    if labels.get("envoyage.domain") == "bad.test":
        assert http_get(dsetup.http_port, "bad.test")[0] == 404  # never served half-configured
    text = dsetup.cli("services").stdout
    assert f"problem: ey-bad: {problem}" in text


def test_replicas_are_load_balanced(dsetup, docker):
    compose = {
        "envoyage.domain": "shop.test",
        "com.docker.compose.project": "shop",
        "com.docker.compose.service": "web",
    }
    r1 = docker.run("shop-web-1", compose)
    r2 = docker.run("shop-web-2", compose)
    wait_for(
        lambda: len(services(dsetup).get("shop-web", {}).get("upstreams", [])) == 2,
        5,
        what="both replicas as endpoints of one service",
    )
    assert list(services(dsetup)) == ["shop-web"]
    seen = set()

    def both_answer():
        seen.add(http_get(dsetup.http_port, "shop.test")[1].strip())
        return {r1.id[:12], r2.id[:12]} <= seen

    wait_for(both_answer, 10, interval=0.01, what="requests to reach both replicas")
    r1.stop(timeout=5)
    wait_for(
        lambda: services(dsetup)["shop-web"]["upstreams"] and len(services(dsetup)["shop-web"]["upstreams"]) == 1,
        5,
        what="the stopped replica to leave",
    )
    wait_for(
        lambda: all(http_get(dsetup.http_port, "shop.test") == (200, r2.id[:12] + "\n") for _ in range(10)),
        5,
        what="all traffic on the remaining replica",
    )


def test_domain_conflict_earliest_wins_and_the_other_takes_over(dsetup, docker):
    first = docker.run("ey-first", {"envoyage.domain": "same.test"})
    wait_for(serves(dsetup, "same.test", first.id[:12]), 5, what="the first claimant")
    second = docker.run("ey-second", {"envoyage.domain": "same.test"})
    wait_for(
        lambda: (
            problems_of(dsetup, "ey-second")
            == [
                "domain 'same.test' is already served by service 'ey-first'",
                "not served until the conflict is resolved",
            ]
        ),
        5,
        what="a problem on the second claimant",
    )
    assert http_get(dsetup.http_port, "same.test")[1].strip() == first.id[:12]
    first.stop(timeout=5)
    wait_for(serves(dsetup, "same.test", second.id[:12]), 5, what="the second to take over")
    assert problems_of(dsetup, "ey-second") == []


def test_dockerd_restart_resyncs_without_duplicates_or_leftovers(workdir, private_dockerd):
    """dockerd stops (and with it every container) and comes back: a dockerd of the
    test's own, so the host's daemon and whatever runs on it are never touched."""
    d = private_dockerd
    s = Setup(workdir, make_config(workdir, docker_enabled=True, docker_host=d.host, docker_scope=""), "sotw")
    try:

        def run(name, domain, **kw):
            return d.client.containers.run(
                "envoyage/sample-app:1",
                name=name,
                detach=True,
                **kw,
                labels={"envoyage.enable": "true", "envoyage.domain": domain},
            )

        keep = run("ey-keep", "keep.test", restart_policy={"Name": "always"})
        gone = run("ey-gone", "gone.test")
        wait_for(serves(s, "keep.test", keep.id[:12]), 10, what="keep")
        wait_for(serves(s, "gone.test", gone.id[:12]), 10, what="gone")

        d.stop()  # dockerd stops every container, then itself
        wait_for(
            lambda: not json.loads(s.cli("status", "--json").stdout)["discovery"]["docker"]["connected"],
            10,
            what="discovery to notice dockerd is gone",
        )
        d.start()
        # 'keep' restarts by policy, 'gone' stays stopped: after the resync exactly keep remains
        wait_for(lambda: set(services(s)) == {"ey-keep"}, 20, what="a resync with no leftovers")
        wait_for(serves(s, "keep.test", keep.id[:12]), 10, what="keep to answer after the resync")
        assert http_get(s.http_port, "gone.test")[0] == 404
        status = json.loads(s.cli("status", "--json").stdout)["discovery"]["docker"]
        assert status["connected"] and status["resyncs"] >= 2
        assert len(services(s)["ey-keep"]["upstreams"]) == 1  # no duplicate endpoint
    finally:
        s.close()


def test_scope_limits_discovery_to_its_own_containers(dsetup, docker):
    """A control plane with a discovery scope serves only containers labelled with it:
    another scope's container (a demo's, say) and an unscoped one are not seen at all."""
    mine = docker.run("ey-mine", {"envoyage.domain": "mine.test"})
    docker.run("ey-other", {"envoyage.domain": "other.test", "envoyage.scope": "someone-else"})
    unscoped = docker.client.containers.run(
        "envoyage/sample-app:1",
        name="ey-unscoped",
        detach=True,
        labels={TEST_LABEL: RUN_ID, "envoyage.enable": "true", "envoyage.domain": "unscoped.test"},
    )
    wait_for(serves(dsetup, "mine.test", mine.id[:12]), 10, what="the container in scope")
    unscoped.restart(timeout=1)  # events for it arrive too, and are ignored
    time.sleep(0.5)
    assert set(services(dsetup)) == {"ey-mine"}
    assert http_get(dsetup.http_port, "other.test")[0] == 404
    assert http_get(dsetup.http_port, "unscoped.test")[0] == 404
    assert json.loads(dsetup.cli("status", "--json").stdout)["discovery"]["docker"]["scope"] == TEST_SCOPE


def test_unreachable_dockerd_keeps_last_state_then_resyncs(workdir, docker):
    """dockerd unreachable (containers still running): nothing is removed in bulk;
    what changed meanwhile is picked up by the resync on reconnect."""
    proxy = UnixProxy("/var/run/docker.sock", str(workdir / "docker.sock")).start()
    s = Setup(
        workdir, make_config(workdir, docker_enabled=True, docker_host=f"unix://{workdir / 'docker.sock'}"), "delta"
    )
    try:
        a = docker.run("ey-a", {"envoyage.domain": "a.test"})
        b = docker.run("ey-b", {"envoyage.domain": "b.test"})
        wait_for(serves(s, "b.test", b.id[:12]), 5, what="b")
        wait_for(serves(s, "a.test", a.id[:12]), 5, what="a")
        proxy.cut()
        wait_for(
            lambda: not json.loads(s.cli("status", "--json").stdout)["discovery"]["docker"]["connected"],
            10,
            what="discovery to notice dockerd is unreachable",
        )
        time.sleep(1)  # a few failed reconnects
        assert set(services(s)) == {"ey-a", "ey-b"}  # the last known state stays...
        assert http_get(s.http_port, "a.test") == (200, a.id[:12] + "\n")  # ...and keeps serving
        b.stop(timeout=5)  # changes while discovery is blind
        c = docker.run("ey-c", {"envoyage.domain": "c.test"})
        proxy.start()
        wait_for(lambda: set(services(s)) == {"ey-a", "ey-c"}, 15, what="the resync after reconnecting")
        wait_for(serves(s, "c.test", c.id[:12]), 5, what="c after the resync")
        assert http_get(s.http_port, "b.test")[0] == 404
        assert json.loads(s.cli("status", "--json").stdout)["discovery"]["docker"]["connected"]
    finally:
        s.close()
        proxy.cut()


def test_mesh_creates_network_and_attaches(mesh_setup, docker, docker_client):
    docker.network("ey-front")
    docker.network("ey-back")
    # two networks and no envoyage.network: without the mesh this would be a problem
    c = docker.run("ey-meshed", {"envoyage.domain": "mesh.test"}, network="ey-front")
    docker_client.networks.get("ey-back").connect(c)

    def served_over_mesh():
        c.reload()
        nets = c.attrs["NetworkSettings"]["Networks"]
        mesh_ip = (nets.get("envoyage-mesh") or {}).get("IPAddress")
        return mesh_ip and services(mesh_setup)["ey-meshed"]["upstreams"] == [f"{mesh_ip}:80"]

    wait_for(served_over_mesh, 10, what="the container to be attached to envoyage-mesh and routed over it")
    wait_for(serves(mesh_setup, "mesh.test", c.id[:12]), 5, what="the container to answer over envoyage-mesh")
    assert problems_of(mesh_setup, "ey-meshed") == []
    net = docker_client.networks.get("envoyage-mesh")
    assert net.attrs["Labels"] == {"envoyage.managed": "true"}


def test_internationalized_domain_label(dsetup, docker):
    c = docker.run("ey-idn", {"envoyage.domain": "straße.test"})
    wait_for(serves(dsetup, "xn--strae-oqa.test", c.id[:12]), 10, what="the IDN label to be served")
    assert services(dsetup)["ey-idn"]["domains_unicode"] == ["straße.test"]
