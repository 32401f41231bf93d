"""Input that passes validation must also pass Envoy (issue 10, item 1).

The review's inputs verbatim, then a hypothesis property over every field of the API and
every label: whatever is accepted is translated and handed to a real `envoy --mode
validate` (all accepted examples in one configuration, so Envoy runs once)."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.helpers import ENVOY

from envoyage.discovery.labels import LABELS, parse_labels
from envoyage.model import InputError, parse_service
from envoyage.xds.translate import default_virtual_host, home_listener, route_configuration, translate_service

BASE = {"name": "dnl", "domains": ["ok.x.test"], "upstreams": ["10.0.0.1:80"]}


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"domains": ["a\n.x.test"]}, "domains[0]"),
        ({"domains": ["a.x.test\n"]}, "domains[0]"),
        ({"name": "dnl\n"}, "name"),
        ({"health_check": {"path": "/health\n"}}, "health_check.path"),
        ({"path": "/app\n"}, "path"),
        ({"upstreams": ['[fe80::1%a b"c]:80']}, "upstreams[0]"),
        ({"upstreams": ["[fe80::1%eth0]:80"]}, "upstreams[0]"),
        ({"upstreams": ["nas.lan\n:80"]}, "upstreams[0]"),
        ({"auth": "none\n"}, "auth"),
    ],
)
def test_the_reviews_inputs_are_refused_with_the_field_named(changes, field):
    with pytest.raises(InputError) as exc:
        parse_service({**BASE, **changes})
    assert exc.value.field == field


@pytest.mark.parametrize(
    "label, value",
    [
        ("envoyage.domain", "a\n.rob.test"),
        ("envoyage.name", "web\n"),
        ("envoyage.path", "/x\n"),
        ("envoyage.healthcheck", "/h\n"),
        ("envoyage.network", "front\n"),
    ],
)
def test_control_characters_in_labels_are_named_problems(label, value):
    r = parse_labels({"envoyage.enable": "true", "envoyage.domain": "ok.test", label: value})
    assert f"{label}: {value!r} contains a control character" in r.problems


def test_the_api_refuses_to_create_discovered_services(tmp_path):
    from support.helpers import make_config

    from envoyage.control.plane import ControlPlane

    plane = ControlPlane(make_config(tmp_path))
    with pytest.raises(InputError) as exc:
        plane.add_service({**BASE, "source": "docker"})
    assert exc.value.field == "source" and "created by docker discovery" in exc.value.message
    assert plane.list_services() == []
    plane.registry.close()


def near(*valid):
    """Arbitrary text, a valid value, or a valid value with arbitrary text around it."""
    return st.one_of(
        st.text(max_size=30),
        st.sampled_from(valid),
        st.builds(lambda v, a, b: a + v + b, st.sampled_from(valid), st.text(max_size=3), st.text(max_size=3)),
    )


DOMAINS = ("a.test", "bücher.test", "*.w.test", "xn--bcher-kva.test", "faß.test", "ab--c.test", "x.y.z.test")
FIELDS = {
    "name": near("web", "a-b", "x1"),
    "domains": st.one_of(st.lists(near(*DOMAINS), min_size=1, max_size=3), near(*DOMAINS)),
    "upstreams": st.one_of(
        st.lists(near("10.0.0.1:80", "[::1]:8080", "nas.lan:5000", "h:1"), min_size=1, max_size=2), near("10.0.0.1:80")
    ),
    "path": near("/", "/app", "/a;b=c", "/%20x", "/~u/"),
    "access": near("public"),
    "auth": near("none"),
    "health_check": st.one_of(
        near("/h", "off", "tcp"),
        st.fixed_dictionaries(
            {},
            optional={
                "path": near("/health", "/"),
                "interval": near("10s", "500ms"),
                "timeout": near("1s", "200ms"),
                "expected": near("200-399", "204", "200,301-302"),
            },
        ),
    ),
    "websocket": st.booleans(),
    "request_timeout": near("off", "30s", "1h", "24h"),
    "idle_timeout": near("off", "1s", "10m"),
}
LABEL_VALUES = {label: near("x") for label in LABELS} | {
    "envoyage.domain": near(*DOMAINS, "a.test,b.test"),
    "envoyage.path": near("/x", "/"),
    "envoyage.healthcheck": near("/h interval=5s timeout=1s expect=200", "off", "tcp"),
    "envoyage.timeout.request": near("30s", "off"),
    "envoyage.timeout.idle": near("5m", "off"),
    "envoyage.websocket": near("true", "false"),
    "envoyage.name": near("web"),
    "envoyage.tls.upstream": near("true", "false"),
    "envoyage.access": near("public"),
    "envoyage.auth": near("none"),
}


def test_property_whatever_the_api_and_labels_accept_envoy_accepts(tmp_path):
    accepted = []

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.fixed_dictionaries({}, optional=FIELDS), st.fixed_dictionaries({}, optional=LABEL_VALUES))
    def collect(fields, labels):
        try:
            accepted.append(parse_service({**BASE, **fields}))
        except InputError:
            pass
        res = parse_labels({"envoyage.enable": "true", "envoyage.domain": "lbl.test", **labels})
        if not res.problems:
            try:
                accepted.append(
                    parse_service(
                        {"name": res.name or "lbl", "domains": res.domains, "upstreams": ["10.0.0.2:80"], **res.service}
                    )
                )
            except InputError:
                pass

    collect()
    assert len(accepted) >= 100, f"only {len(accepted)} accepted examples: too few to mean much"
    print(f"{len(accepted)} accepted examples validated by Envoy")
    clusters, hosts, seen_domains = [], [], set()
    for i, spec in enumerate(accepted):
        # unique names and domains per example: Envoy judges each service, not our conflicts
        domains = tuple(d for d in spec.domains if d not in seen_domains) or (f"ex{i}.t",)
        seen_domains.update(domains)
        res = translate_service(dataclasses.replace(spec, name=f"ex{i}", domains=domains))
        cluster = json_format.MessageToDict(res.cluster)
        if res.endpoints is not None:  # no ADS server here: the endpoints go inline
            cluster.pop("edsClusterConfig")
            cluster["type"] = "STATIC"
            cluster["loadAssignment"] = json_format.MessageToDict(res.endpoints)
        clusters.append(cluster)
        hosts.append(res.virtual_host)
    rc = route_configuration("home_http", hosts + [default_virtual_host("home_http", vhds=False)])
    listener = json_format.MessageToDict(home_listener("127.0.0.1", 18080, str(tmp_path / "a.log")))
    hcm = listener["filterChains"][0]["filters"][0]["typedConfig"]
    hcm.pop("rds")
    hcm["routeConfig"] = json_format.MessageToDict(rc)
    bootstrap = {
        "admin": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": 0}}},
        "staticResources": {"listeners": [listener], "clusters": clusters},
    }
    path = tmp_path / "all.json"
    path.write_text(json.dumps(bootstrap))
    v = subprocess.run([ENVOY, "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=120)
    assert v.returncode == 0, (v.stdout + v.stderr)[-3000:]
