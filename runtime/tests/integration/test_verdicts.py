"""Envoy's verdict per service: a service that passes our validation but that Envoy
rejects is dropped with Envoy's message, and every other change keeps reaching Envoy."""

from __future__ import annotations

import dataclasses
import json
import time

from envoy.config.route.v3 import route_components_pb2
from envoy.type.matcher.v3 import regex_pb2
from support.helpers import http_get, wait_for

from envoyage.model import parse_service


def svc(name, address, **kw):
    return {"name": name, "domains": [f"{name}.example.test"], "upstreams": [address], "health_check": "off", **kw}


def inject_rejected_translation(monkeypatch, data):
    """Make the translation of this exact service (its content hash) one that Envoy
    refuses (a regex RE2 rejects): valid protobuf with consistent references, so only
    Envoy can tell. It goes through the translation cache, as a translation bug would."""
    from envoyage.xds import translate

    bad_hash = parse_service(data).content_hash

    def translate_service(spec, *args, **kwargs):
        good = real(spec, *args, **kwargs)
        if spec.content_hash != bad_hash:
            return good
        host = route_components_pb2.VirtualHost()
        host.CopyFrom(good.virtual_host)
        host.routes.insert(
            0,
            route_components_pb2.Route(
                match=route_components_pb2.RouteMatch(safe_regex=regex_pb2.RegexMatcher(regex="/(unclosed")),
                route=route_components_pb2.RouteAction(cluster=good.cluster.name),
            ),
        )
        return dataclasses.replace(
            good, virtual_host=host, virtual_host_bytes=host.SerializeToString(deterministic=True)
        )

    real = translate.translate_service
    monkeypatch.setattr(translate, "translate_service", translate_service)


def problems(setup):
    return {s["name"]: s["problems"] for s in json.loads(setup.cli("services", "--json", check=True).stdout)}


def test_a_service_envoy_rejects_is_dropped_and_later_changes_go_live(setup, upstreams, monkeypatch):
    up = upstreams("app")
    plane = setup.plane
    plane.add_service(svc("steady", up.address))
    wait_for(lambda: http_get(setup.http_port, "steady.example.test") == (200, "app"), 5, what="steady")
    inject_rejected_translation(monkeypatch, svc("broken", up.address))
    plane.add_service(svc("broken", up.address))
    wait_for(
        lambda: any("Envoy rejected this service" in p for p in problems(setup)["broken"]),
        5,
        what="the rejected service to show Envoy's verdict",
    )
    (problem,) = [p for p in problems(setup)["broken"] if "Envoy rejected" in p]
    assert "unclosed" in problem or "missing" in problem.lower(), problem  # Envoy's own words

    plane.add_service(svc("later", up.address))
    added = time.monotonic()
    wait_for(
        lambda: http_get(setup.http_port, "later.example.test") == (200, "app"),
        1.0,
        interval=0.01,
        what="a service added after the rejected one to be live within a second",
    )
    print(f"live {1000 * (time.monotonic() - added):.0f} ms after the add")
    assert http_get(setup.http_port, "broken.example.test")[0] == 404
    assert http_get(setup.http_port, "steady.example.test") == (200, "app")
    assert problems(setup)["later"] == [] and problems(setup)["steady"] == []
    assert json.loads(setup.cli("status", "--json").stdout)["last_reconcile"]["ok"]

    # changing the rejected service (a new content hash) tries it again
    setup.cli("service", "update", "broken", "--path", "/v2", check=True)
    wait_for(
        lambda: http_get(setup.http_port, "broken.example.test", "/v2") == (200, "app"),
        5,
        what="the changed service to be tried again and served",
    )
    assert problems(setup)["broken"] == []


def test_a_rejected_service_in_a_batch_is_found_by_bisection(setup, upstreams, monkeypatch):
    up = upstreams("app")
    plane = setup.plane
    plane.add_service(svc("steady", up.address))
    wait_for(lambda: http_get(setup.http_port, "steady.example.test") == (200, "app"), 5, what="steady")
    batch = [svc(f"b{i}", up.address) for i in range(6)]
    inject_rejected_translation(monkeypatch, batch[4])
    plane.add_services(batch)
    for i in (0, 1, 2, 3, 5):
        wait_for(
            lambda i=i: http_get(setup.http_port, f"b{i}.example.test") == (200, "app"),
            10,
            what=f"b{i} of the batch to be served",
        )
    wait_for(
        lambda: any("Envoy rejected this service" in p for p in problems(setup)["b4"]),
        5,
        what="b4 to be found and rejected",
    )
    found = problems(setup)
    assert all(found[f"b{i}"] == [] for i in (0, 1, 2, 3, 5)), found
    assert http_get(setup.http_port, "b4.example.test")[0] == 404
    assert not plane.verdicts.bisecting()
