"""Envoy's verdict per service, without Envoy: attribution and bisection as pure state."""

from __future__ import annotations

from envoyage.model import ServiceState, parse_service
from envoyage.xds import types as T
from envoyage.xds.assemble import HomeSettings, assemble_home
from envoyage.xds.translate import TranslationCache
from envoyage.xds.verdicts import Verdicts, services_in_change

SETTINGS = HomeSettings("127.0.0.1", 8080, "/tmp/access.log")


def states(*names, port=80):
    return {
        n: ServiceState.of(
            parse_service({"name": n, "domains": [f"{n}.example.com"], "upstreams": [f"10.0.0.1:{port}"]}), i
        )
        for i, n in enumerate(names)
    }


def snap(st, withheld=None):
    a = assemble_home(st.values(), SETTINGS, TranslationCache(), withheld=withheld)
    return a.snapshot, a.delta_snapshot


def test_changed_services_per_type():
    old_sotw, old_delta = snap(states("a", "b"))
    new = states("a", "b", "c")
    new["b"] = states("b", port=81)["b"]
    new_sotw, new_delta = snap(new)
    assert services_in_change(T.ROUTE, new_sotw, old_sotw) == {"c"}  # b's host did not change
    assert services_in_change(T.ENDPOINT, new_sotw, old_sotw) == {"b", "c"}
    assert services_in_change(T.CLUSTER, new_sotw, old_sotw) == {"c"}
    assert services_in_change(T.VHOST, new_delta, old_delta) == {"c"}
    assert services_in_change(T.LISTENER, new_sotw, old_sotw) == set()
    assert services_in_change(T.CLUSTER, new_sotw, None) == {"a", "b", "c"}  # nothing ACKed known


def run_bisection(bad: set[str], names: list[str]):
    """Drive Verdicts as Envoy would: NACK any snapshot serving a bad service."""
    v = Verdicts()
    st = states(*names)
    outcome = v.on_nack("n", "home", T.ROUTE, "v0", "bad regex", set(names), st)
    steps = 0
    while v.bisecting():
        steps += 1
        served = {n for n in names if n not in v.withheld(st.values())}
        version = f"v{steps}"
        v.under_test("home", type("S", (), {"version": lambda self, t, version=version: version})())
        if served & bad:
            outcome = v.on_nack("n", "home", T.ROUTE, version, "bad regex", set(), st)
        else:
            outcome = v.on_ack("n", "home", T.ROUTE, version, st)
    return v, outcome, steps


def test_bisection_finds_the_one_bad_service_in_log_steps():
    names = [f"s{i:02d}" for i in range(32)]
    v, outcome, steps = run_bisection({"s13"}, names)
    assert outcome == "rejected s13" and set(v.rejected) == {"s13"}
    assert steps <= 7
    withheld = v.withheld(states(*names).values())
    assert set(withheld) == {"s13"} and "Envoy rejected this service: bad regex" in withheld["s13"]


def test_bisection_with_two_bad_services_rejects_one_never_a_good_one():
    names = [f"s{i}" for i in range(8)]
    v, outcome, _ = run_bisection({"s1", "s6"}, names)
    assert set(v.rejected) <= {"s1", "s6"} and v.rejected


def test_one_candidate_is_rejected_at_once_and_lifted_when_it_changes():
    v = Verdicts()
    st = states("a", "b")
    assert v.on_nack("n", "home", T.VHOST, "v1", "no", {"b"}, st) == "rejected b"
    assert set(v.withheld(st.values())) == {"b"}
    changed = states("a", "b", port=81)
    assert v.withheld(changed.values()) == {}  # a new content hash: tried again
    assert v.rejected == {}


def test_a_bisection_without_verdict_ends_and_serves_everything():
    now = [0.0]
    v = Verdicts(clock=lambda: now[0])
    st = states("a", "b", "c", "d")
    v.on_nack("n", "home", T.ROUTE, "v0", "no", set(st), st)
    assert v.bisecting() and len(v.withheld(st.values())) == 2
    now[0] = 60.0
    assert v.withheld(st.values()) == {} and not v.bisecting()


def test_nacks_of_other_versions_or_nodes_do_not_steer_a_bisection():
    v = Verdicts()
    st = states("a", "b", "c", "d")
    v.on_nack("n", "home", T.ROUTE, "v0", "no", set(st), st)
    v.under_test("home", type("S", (), {"version": lambda self, t: "v1"})())
    assert v.on_nack("other", "home", T.ROUTE, "v1", "no", set(), st) is None
    assert v.on_ack("n", "home", T.ROUTE, "v9", st) is None
    assert v.bisecting()
