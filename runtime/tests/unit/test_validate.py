"""The validator drops a bad service with a named problem and keeps everyone else."""

import pytest
from envoy.config.route.v3 import route_components_pb2

from envoyage.model import ServiceState, parse_service
from envoyage.xds import types as T
from envoyage.xds.assemble import HomeSettings, assemble_home
from envoyage.xds.snapshot import InconsistentSnapshot, Snapshot
from envoyage.xds.translate import TranslationCache
from envoyage.xds.validate import check_services, check_snapshot

SETTINGS = HomeSettings("127.0.0.1", 8080, "/tmp/access.log")


def st(name, domains, first_seen):
    s = parse_service({"name": name, "domains": domains, "upstreams": ["10.0.0.1:80"]})
    return ServiceState.of(s, first_seen)


def test_duplicate_domain_earliest_wins_and_other_gets_problem():
    states = [
        st("late", ["a.example.com", "b.example.com"], 5),
        st("early", ["a.example.com"], 1),
        st("other", ["c.example.com"], 3),
    ]
    accepted, problems = check_services(states)
    assert [s.spec.name for s in accepted] == ["early", "other"]
    assert problems == {
        "late": [
            "domain 'a.example.com' is already served by service 'early'",
            "not served until the conflict is resolved",
        ]
    }


def test_tie_broken_by_name():
    accepted, problems = check_services([st("b", ["x.example.com"], 1), st("a", ["x.example.com"], 1)])
    assert [s.spec.name for s in accepted] == ["a"] and "b" in problems


def test_conflict_does_not_break_the_snapshot():
    states = [st("one", ["a.example.com"], 1), st("two", ["a.example.com"], 2), st("three", ["t.example.com"], 3)]
    asm = assemble_home(states, SETTINGS, TranslationCache())
    assert asm.served == ("one", "three")
    assert set(asm.snapshot.get(T.CLUSTER)) == {"svc_one", "svc_three"}


def test_unbuilt_access_mode_is_a_problem_but_served_closed():
    s = parse_service({"name": "v", "domains": ["v.example.com"], "upstreams": ["10.0.0.1:80"], "access": "link-only"})
    accepted, problems = check_services([ServiceState.of(s, 1)])
    assert accepted and "fails closed" in problems["v"][0]


def test_snapshot_invariants():
    snap = assemble_home([st("one", ["a.example.com"], 1)], SETTINGS, TranslationCache()).snapshot
    check_snapshot(snap)
    # a route to a cluster that does not exist
    rc = snap.messages(T.ROUTE)[0]
    bad = type(rc)()
    bad.CopyFrom(rc)
    bad.virtual_hosts[0].routes[0].route.cluster = "svc_missing"
    with pytest.raises(InconsistentSnapshot, match="svc_missing"):
        check_snapshot(snap.replace(T.ROUTE, [bad]))
    # an EDS cluster without endpoints
    with pytest.raises(InconsistentSnapshot, match="no endpoints"):
        check_snapshot(snap.replace(T.ENDPOINT, []))
    # a listener naming a missing route configuration
    with pytest.raises(InconsistentSnapshot, match="missing route configuration"):
        check_snapshot(snap.replace(T.ROUTE, []))
    # two virtual hosts with the same domain
    dup = type(rc)()
    dup.CopyFrom(rc)
    vh = route_components_pb2.VirtualHost(name="again", domains=["a.example.com"])
    dup.virtual_hosts.append(vh)
    with pytest.raises(InconsistentSnapshot, match="a.example.com"):
        check_snapshot(snap.replace(T.ROUTE, [dup]))


def test_duplicate_resource_names_refused():
    snap = assemble_home([st("one", ["a.example.com"], 1)], SETTINGS, TranslationCache()).snapshot
    c = snap.messages(T.CLUSTER)[0]
    with pytest.raises(InconsistentSnapshot, match="appears twice"):
        Snapshot.build({T.CLUSTER: [c, c]})


def test_equal_first_seen_broken_by_origin_container_id():
    def d(name, cid):
        s = parse_service({"name": name, "domains": ["x.example.com"], "upstreams": ["10.0.0.1:80"]})
        return ServiceState.of(s, 5.0, origin=f"container:{cid}")

    accepted, problems = check_services([d("zzz", "0a"), d("aaa", "ff")])
    assert [s.spec.name for s in accepted] == ["zzz"] and "aaa" in problems
