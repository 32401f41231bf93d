"""The spine against a real Envoy: CLI -> control API -> registry -> xDS -> Envoy."""

from __future__ import annotations

import json
import socket
import threading
import time

from envoy.config.route.v3 import route_components_pb2
from envoy.type.matcher.v3 import regex_pb2
from support.helpers import http_get, run_cli, wait_for

from envoyage.cli.client import ControlClient
from envoyage.xds import types as T
from envoyage.xds.status import BaseCallbacks


def serves(port, host, body=None, status=200):
    def check():
        code, text = http_get(port, host)
        return code == status and (body is None or text == body)

    return check


def test_add_update_remove_through_cli(setup, upstreams):
    alpha, beta = upstreams("alpha"), upstreams("beta")
    out = setup.cli("service", "add", "app", "--domain", "app.example.test", "--upstream", alpha.address, check=True)
    assert "added app" in out.stdout
    wait_for(serves(setup.http_port, "app.example.test", "alpha"), 5, what="app to answer 200 from alpha")
    # Host header with a port matches too (strip_any_host_port)
    assert http_get(setup.http_port, f"app.example.test:{setup.http_port}") == (200, "alpha")

    setup.cli("service", "update", "app", "--upstream", beta.address, check=True)
    wait_for(serves(setup.http_port, "app.example.test", "beta"), 5, what="app to move to the new upstream")

    ls = setup.cli("services", "--json", check=True)
    (svc,) = json.loads(ls.stdout)
    assert svc["upstreams"] == [beta.address] and svc["problems"] == []

    setup.cli("service", "rm", "app", check=True)
    wait_for(serves(setup.http_port, "app.example.test", status=404), 5, what="app to be gone (404)")


def test_status_shows_envoy_in_sync(setup, upstreams):
    up = upstreams("one")
    setup.cli("service", "add", "one", "-d", "one.example.test", "-u", up.address, check=True)
    wait_for(serves(setup.http_port, "one.example.test", "one"), 5, what="service one")

    def in_sync():
        st = json.loads(setup.cli("status", "--json", check=True).stdout)
        node = st["nodes"][0]
        want = st["snapshots"][node["snapshot"]]
        types = {"cds", "eds", "lds", "rds"} | ({"vhds"} if setup.mode == "delta" else set())
        return (
            node["connected"]
            and node["delta"] == (setup.mode == "delta")
            and set(want) == types
            and all(node["types"][t]["last_acked_version"] == v for t, v in want.items())
        )

    wait_for(in_sync, 5, what="all four types ACKed at the snapshot's versions")
    text = setup.cli("status", check=True).stdout
    assert "envoy home-1 (role home" in text and "in sync" in text and "behind" not in text


def test_domain_conflict_is_a_problem_not_an_outage(setup, upstreams):
    a, b = upstreams("a"), upstreams("b")
    setup.cli("service", "add", "first", "-d", "shared.example.test", "-u", a.address, check=True)
    second = setup.cli("service", "add", "second", "-d", "shared.example.test,own.example.test", "-u", b.address)
    assert second.returncode == 1 and "already served by service 'first'" in second.stdout
    wait_for(serves(setup.http_port, "shared.example.test", "a"), 5, what="first to keep its domain")
    assert http_get(setup.http_port, "own.example.test")[0] == 404  # second is not served at all
    setup.cli("service", "rm", "first", check=True)  # the conflict resolves: second takes over
    wait_for(serves(setup.http_port, "shared.example.test", "b"), 5, what="second to take over")
    assert json.loads(setup.cli("services", "--json").stdout)[0]["problems"] == []


def test_unbuilt_access_mode_fails_closed(setup, upstreams):
    up = upstreams("secret")
    out = setup.cli("service", "add", "vpn", "-d", "vpn.example.test", "-u", up.address, "--access", "link-only")
    assert out.returncode == 1 and "fails closed" in out.stdout
    wait_for(serves(setup.http_port, "vpn.example.test", status=403), 5, what="403 for an unbuilt access mode")
    assert up.hits == 0


def test_vpn_only_serves_the_lan_networks_and_refuses_everyone_else(workdir, upstreams):
    """Topology C: the LAN listener judges the connection's own address (127.0.0.1 here)."""
    from support.helpers import Setup, make_config

    up = upstreams("private")
    for lan, expect in ((("127.0.0.0/8",), "private"), (("192.168.0.0/16",), None)):
        s = Setup(workdir / f"lan{len(lan[0])}", make_config(workdir / f"lan{len(lan[0])}", lan_cidrs=lan), "sotw")
        try:
            s.cli(
                "service", "add", "nas", "-d", "nas.example.test", "-u", up.address, "--access", "vpn-only", check=True
            )
            if expect:
                wait_for(serves(s.http_port, "nas.example.test", expect), 5, what="vpn-only served to the LAN")
            else:
                hits = up.hits
                wait_for(serves(s.http_port, "nas.example.test", status=403), 5, what="403 outside the LAN")
                assert up.hits == hits
        finally:
            s.close()


def test_late_joining_envoy_gets_current_state(setup, upstreams):
    up = upstreams("late")
    for i in range(3):
        setup.cli("service", "add", f"s{i}", "-d", f"s{i}.example.test", "-u", up.address, check=True)
    wait_for(serves(setup.http_port, "s2.example.test", "late"), 5, what="s2 on the first envoy")
    late = setup.add_envoy("home-2")
    dump = late.config_dump()
    clusters = {
        c["cluster"]["name"]
        for conf in dump["configs"]
        if conf["@type"].endswith("ClustersConfigDump")
        for c in conf.get("dynamic_active_clusters", [])
    }
    assert {"svc_s0", "svc_s1", "svc_s2"} <= clusters
    setup.envoy.stop()  # now only the late Envoy holds the (shared, SO_REUSEPORT) listener
    wait_for(serves(setup.http_port, "s1.example.test", "late"), 5, what="the late envoy to serve s1")


class Recorder(BaseCallbacks):
    def __init__(self):
        self.responses = []
        self.nacks = []
        self.lock = threading.Lock()

    def on_response(self, sid, node_id, type_url, response):
        with self.lock:
            self.responses.append((node_id, T.short(type_url), response))

    def on_nack(self, sid, node_id, type_url, version, message):
        with self.lock:
            self.nacks.append((T.short(type_url), message))

    def take(self):
        with self.lock:
            out, self.responses = self.responses, []
        return out


def _wire(responses):
    """{type: (sorted names sent, sorted names removed)} over the recorded delta responses."""
    out = {}
    for _node, t, resp in responses:
        names, removed = out.setdefault(t, (set(), set()))
        names.update(r.name for r in resp.resources)
        removed.update(resp.removed_resources)
    return {t: (sorted(a), sorted(b)) for t, (a, b) in out.items()}


def test_delta_sends_exactly_the_changed_service(delta_setup, upstreams):
    s = delta_setup
    old, new = upstreams("old"), upstreams("new")
    for i in range(5):
        s.cli("service", "add", f"svc{i}", "-d", f"svc{i}.example.test", "-u", old.address, check=True)
    wait_for(serves(s.http_port, "svc4.example.test", "old"), 5, what="five services")
    time.sleep(0.3)  # let the last ACKs settle
    rec = Recorder()
    s.plane.ads.add_callbacks(rec)

    # change one service's upstream: only its endpoints cross the wire
    s.cli("service", "update", "svc2", "-u", new.address, check=True)
    wait_for(serves(s.http_port, "svc2.example.test", "new"), 5, what="svc2 on its new upstream")
    time.sleep(0.3)
    assert _wire(rec.take()) == {"eds": (["svc_svc2"], [])}

    # add one: its cluster, its endpoints and its virtual host (VHDS), nothing else
    s.cli("service", "add", "extra", "-d", "extra.example.test", "-u", new.address, check=True)
    wait_for(serves(s.http_port, "extra.example.test", "new"), 5, what="extra to answer")
    time.sleep(0.3)
    assert _wire(rec.take()) == {
        "cds": (["svc_extra"], []),
        "eds": (["svc_extra"], []),
        "vhds": (["home_http/extra"], []),
    }

    # remove it: removals arrive as removed_resources
    s.cli("service", "rm", "extra", check=True)
    wait_for(serves(s.http_port, "extra.example.test", status=404), 5, what="extra to be gone")
    time.sleep(0.3)
    wire = _wire(rec.take())
    assert wire["cds"] == ([], ["svc_extra"]) and wire["vhds"] == ([], ["home_http/extra"])
    assert "rds" not in wire and wire.get("eds", ([], ["svc_extra"]))[0] == []
    assert all(http_get(s.http_port, f"svc{i}.example.test")[0] == 200 for i in range(5))


def test_nack_keeps_last_good_routes_and_is_shown(setup, upstreams):
    up = upstreams("good")
    setup.cli("service", "add", "good", "-d", "good.example.test", "-u", up.address, check=True)
    wait_for(serves(setup.http_port, "good.example.test", "good"), 5, what="good service")
    time.sleep(0.3)
    rec = Recorder()
    setup.plane.ads.add_callbacks(rec)

    # Valid protobuf, consistent references, but Envoy refuses the regex: inject it
    # through the cache API (there is no back door for this in production code).
    # (state of the world: the route configuration; delta: the host's VHDS resource)
    cache = setup.plane.cache
    key, rtype = ("home/vhds", T.VHOST) if setup.mode == "delta" else ("home", T.ROUTE)
    current = cache.get_snapshot(key)
    msg = current.get(rtype)["home_http" if rtype == T.ROUTE else "home_http/good"].message
    bad = type(msg)()
    bad.CopyFrom(msg)
    host = bad.virtual_hosts[0] if rtype == T.ROUTE else bad
    host.routes.insert(
        0,
        route_components_pb2.Route(
            match=route_components_pb2.RouteMatch(safe_regex=regex_pb2.RegexMatcher(regex="/(unclosed")),
            route=route_components_pb2.RouteAction(cluster="svc_good"),
        ),
    )
    others = [m for m in current.messages(rtype) if m.name != msg.name]
    assert cache.set_snapshot(key, current.replace(rtype, others + [bad]))

    wait_for(lambda: rec.nacks, 5, what="Envoy's NACK")
    time.sleep(3)  # would a loop re-push it?
    pushes = [r for r in rec.take() if r[1] == T.short(rtype)]
    assert len(pushes) == 1, f"rejected routes pushed {len(pushes)} times"
    assert "unclosed" in rec.nacks[0][1] or "missing" in rec.nacks[0][1].lower()
    assert http_get(setup.http_port, "good.example.test") == (200, "good")  # previous routes serve
    assert sum(v for k, v in setup.envoy.stats("update_rejected").items()) >= 1

    status = setup.cli("status", check=True).stdout
    assert "last NACK" in status and rec.nacks[0][1][:40] in status
    events = json.loads(run_cli("status", "--json", socket_path=setup.socket).stdout)
    assert events["nodes"][0]["types"][T.short(rtype)]["nacks"] == 1

    # the next real change replaces the bad snapshot and is accepted
    other = upstreams("other")
    setup.cli("service", "add", "other", "-d", "other.example.test", "-u", other.address, check=True)
    wait_for(serves(setup.http_port, "other.example.test", "other"), 5, what="recovery after NACK")


def _raw(sock_path, data: bytes) -> bytes:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(str(sock_path))
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered (413, say) and closed before reading everything
    chunks = []
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            chunks.append(c)
    except (TimeoutError, ConnectionResetError):
        pass
    s.close()
    return b"".join(chunks)


def _req(method, path, body: bytes, ctype="application/json"):
    return (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n"
    ).encode() + body


def test_malformed_control_requests_change_nothing(setup, upstreams):
    up = upstreams("stable")
    setup.cli("service", "add", "stable", "-d", "stable.example.test", "-u", up.address, check=True)
    wait_for(serves(setup.http_port, "stable.example.test", "stable"), 5, what="stable service")
    key = "home/vhds" if setup.mode == "delta" else "home"
    before_versions = dict(setup.plane.cache.get_snapshot(key).versions)
    before_services = setup.plane.list_services()

    cases = [
        (_req("POST", "/v1/services", b"{not json"), b"400", b"not valid JSON"),
        (_req("POST", "/v1/services", b"[]"), b"400", b"an empty list adds nothing"),
        (_req("POST", "/v1/services", b"42"), b"400", b"JSON object"),
        (
            _req(
                "POST",
                "/v1/services",
                json.dumps({"name": "x", "domains": ["ok.test"], "upstreams": ["1.2.3.4:eighty"]}).encode(),
            ),
            b"400",
            b"upstreams[0]",
        ),
        (
            _req(
                "POST",
                "/v1/services",
                json.dumps({"name": "stable", "domains": ["z.test"], "upstreams": ["1.2.3.4:80"]}).encode(),
            ),
            b"409",
            b"already exists",
        ),
        (_req("PATCH", "/v1/services/stable", json.dumps({"domains": ["bad domain"]}).encode()), b"400", b"domains[0]"),
        (_req("PATCH", "/v1/services/stable", json.dumps({"name": "renamed"}).encode()), b"400", b"renamed"),
        (
            _req("PUT", "/v1/services/stable", json.dumps({"domains": ["stable.example.test"]}).encode()),
            b"400",
            b"upstreams",
        ),
        (_req("DELETE", "/v1/services/nope", b""), b"404", b"no service named 'nope'"),
        (_req("POST", "/v1/services", b"{" + b'"a":1,' * 3_000_000 + b'"b":2}'), b"413", b""),
        (
            _req(
                "POST",
                "/v1/services",
                json.dumps(
                    [
                        {"name": "ok1", "domains": ["ok1.test"], "upstreams": ["1.2.3.4:80"]},
                        {"name": "ok2", "domains": ["ok2.test"], "upstreams": ["1.2.3.4:x"]},
                    ]
                ).encode(),
            ),
            b"400",
            b"[1].upstreams[0]",
        ),
        (
            _req(
                "POST",
                "/v1/services",
                json.dumps(
                    [
                        {"name": "ok1", "domains": ["ok1.test"], "upstreams": ["1.2.3.4:80"]},
                        {"name": "stable", "domains": ["ok2.test"], "upstreams": ["1.2.3.4:80"]},
                    ]
                ).encode(),
            ),
            b"409",
            b"stable",
        ),
        (b"GARBAGE\r\n\r\n", b"", b"400"),  # not HTTP at all: an HTTP/0.9-style error page
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, b"", b""),  # a TLS hello
    ]
    for data, status, needle in cases:
        answer = _raw(setup.socket, data)
        if status:
            assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == status, (data[:60], answer[:200])
        assert needle in answer, (data[:60], answer[:300])

    assert setup.plane.cache.get_snapshot(key).versions == before_versions
    assert setup.plane.cache.keys() == [key]  # only the variant a connected node uses is built
    assert setup.plane.list_services() == before_services
    assert http_get(setup.http_port, "stable.example.test") == (200, "stable")
    bad_cli = setup.cli("service", "add", "bad", "-d", "ok.test", "-u", "10.0.0.1:eighty")
    assert (
        bad_cli.returncode == 2 and "upstreams[0]: '10.0.0.1:eighty': 'eighty' is not a port number" in bad_cli.stderr
    )


def test_batch_add_is_one_push(setup, upstreams):
    up = upstreams("batch")
    body = [{"name": f"b{i}", "domains": [f"b{i}.example.test"], "upstreams": [up.address]} for i in range(50)]
    before = setup.plane.registry.events(limit=10_000)
    answer = ControlClient(str(setup.socket)).post("/services", body)
    assert len(answer["services"]) == 50
    wait_for(
        lambda: all(http_get(setup.http_port, f"b{i}.example.test") == (200, "batch") for i in range(50)),
        10,
        what="every service of the batch to answer",
    )
    added = [e for e in setup.plane.registry.events(limit=10_000) if e not in before and e["kind"] == "service.added"]
    assert len(added) == 50
    assert setup.plane.last_reconcile.reason == "50 services added"


def test_internationalized_domain_through_cli_and_envoy(sotw_setup, upstreams):
    s = sotw_setup
    books, other = upstreams("books"), upstreams("other")
    out = s.cli("service", "add", "books", "-d", "bücher.localhost", "-u", books.address, check=True)
    assert "xn--bcher-kva.localhost (bücher.localhost)" in out.stdout
    # browsers send the ASCII form in Host
    wait_for(serves(s.http_port, "xn--bcher-kva.localhost", "books"), 5, what="the IDN service")
    listing = s.cli("services", check=True).stdout
    assert "xn--bcher-kva.localhost (bücher.localhost)" in listing
    (svc,) = json.loads(s.cli("services", "--json", check=True).stdout)
    assert svc["domains"] == ["xn--bcher-kva.localhost"] and svc["domains_unicode"] == ["bücher.localhost"]
    # the same name in another spelling is the same domain: a conflict, not a second host
    conflict = s.cli("service", "add", "other", "-d", "BÜCHER.localhost", "-u", other.address)
    assert conflict.returncode == 1 and "problem: domain 'xn--bcher-kva.localhost'" in conflict.stdout
    problems = {x["name"]: x["problems"] for x in json.loads(s.cli("services", "--json", check=True).stdout)}
    assert any("xn--bcher-kva.localhost" in p and "books" in p for p in problems["other"]), problems
    assert http_get(s.http_port, "xn--bcher-kva.localhost") == (200, "books")
    bad = s.cli("service", "add", "skull", "-d", "☠.localhost", "-u", other.address)
    assert bad.returncode == 2 and "cannot be encoded as a domain name" in bad.stderr
