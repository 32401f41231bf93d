"""Label parsing: each invalid value is one named, human-readable problem."""

import pytest

from envoyage.discovery.labels import parse_labels

BASE = {"envoyage.enable": "true", "envoyage.domain": "app.example.com"}


def labels(**kw):
    out = dict(BASE)
    out.update({f"envoyage.{k.replace('_', '.')}": v for k, v in kw.items()})
    return out


def test_minimal_labels():
    r = parse_labels(BASE)
    assert r.enabled and r.domains == ["app.example.com"] and r.problems == [] and r.port is None


@pytest.mark.parametrize(
    "value, enabled", [("true", True), ("Yes", True), ("1", True), ("false", False), ("off", False)]
)
def test_enable_values(value, enabled):
    assert parse_labels({"envoyage.enable": value, "envoyage.domain": "a.example.com"}).enabled is enabled


def test_no_enable_label_means_ignored():
    r = parse_labels({"envoyage.domain": "a.example.com"})
    assert not r.enabled and not r.problems


def test_all_options():
    r = parse_labels(
        labels(
            domain="a.example.com, *.b.example.com",
            port="8080",
            auth="none",
            access="public",
            healthcheck="/status interval=5s timeout=1s expect=200-204",
            tls_upstream="true",
            path="/app",
            network="backend",
            name="my-app",
        )
    )
    assert r.problems == []
    assert r.domains == ["a.example.com", "*.b.example.com"] and r.port == 8080 and r.network == "backend"
    assert r.name == "my-app"
    assert r.service == {
        "auth": "none",
        "access": "public",
        "tls_upstream": True,
        "path": "/app",
        "health_check": {"path": "/status", "interval": "5s", "timeout": "1s", "expected": "200-204"},
    }


def test_healthcheck_tcp_means_default():
    assert "health_check" not in parse_labels(labels(healthcheck="tcp")).service


@pytest.mark.parametrize(
    "extra, problem",
    [
        ({"envoyage.enable": "maybe"}, "envoyage.enable: 'maybe' is not true or false"),
        ({"envoyage.domain": ""}, "envoyage.domain: missing; set the domain(s) to serve"),
        ({"envoyage.domain": "ok.example.com,bad domain"}, "envoyage.domain: 'bad domain' is not a valid domain name"),
        ({"envoyage.domain": "a.example.com,a.example.com"}, "envoyage.domain: 'a.example.com' is listed twice"),
        ({"envoyage.port": "eighty"}, "envoyage.port: 'eighty' is not a port number"),
        ({"envoyage.port": "70000"}, "envoyage.port: '70000' is not a port number"),
        ({"envoyage.port": "\u00b9"}, "envoyage.port: '\u00b9' is not a port number"),
        ({"envoyage.access": "everyone"}, "envoyage.access: 'everyone' is not one of public, vpn-only, link-only"),
        (
            {"envoyage.auth": "Bad Provider!"},
            "envoyage.auth: 'Bad Provider!' is not 'none', 'basic' or a provider name",
        ),
        (
            {"envoyage.healthcheck": "status"},
            "envoyage.healthcheck: 'status' is not an absolute URL path (or 'tcp' or 'off')",
        ),
        ({"envoyage.healthcheck": "/s every=5s"}, "envoyage.healthcheck: 'every=5s' is not one of interval=DURATION"),
        ({"envoyage.healthcheck": "/s interval=soon"}, "envoyage.healthcheck: 'soon' is not a duration"),
        (
            {"envoyage.healthcheck": "/s interval=1s timeout=5s"},
            "envoyage.healthcheck: timeout 5s is longer than interval 1s",
        ),
        ({"envoyage.healthcheck": "/s expect=2xx"}, "envoyage.healthcheck: '2xx' is not a status code or range"),
        ({"envoyage.tls.upstream": "sometimes"}, "envoyage.tls.upstream: 'sometimes' is not true or false"),
        ({"envoyage.path": "app"}, "envoyage.path: 'app' is not an absolute URL path prefix"),
        ({"envoyage.network": "bad net"}, "envoyage.network: 'bad net' is not a Docker network name"),
        ({"envoyage.name": "Bad_Name"}, "envoyage.name: 'Bad_Name' is not a valid service name"),
        ({"envoyage.prot": "80"}, "envoyage.prot: unknown label; did you mean envoyage.port?"),
        ({"envoyage.colour": "red"}, "envoyage.colour: unknown label; known: envoyage.enable, envoyage.domain"),
    ],
)
def test_each_problem_kind(extra, problem):
    data = dict(BASE)
    data.update(extra)
    r = parse_labels(data)
    assert r.enabled
    assert len(r.problems) == 1 and r.problems[0].startswith(problem), r.problems


def test_unicode_domain_label_is_accepted_in_ascii_form():
    r = parse_labels(labels(domain="bücher.localhost,*.straße.example"))
    assert r.problems == [] and r.domains == ["xn--bcher-kva.localhost", "*.xn--strae-oqa.example"]


def test_unencodable_domain_label_is_a_named_problem():
    r = parse_labels(labels(domain="☠.localhost"))
    assert r.problems and r.problems[0].startswith("envoyage.domain: '☠.localhost': the label '☠' cannot be encoded")


def test_websocket_and_timeout_labels():
    r = parse_labels(labels(websocket="false", timeout_request="2m", timeout_idle="off"))
    assert r.problems == []
    assert r.service == {"websocket": False, "request_timeout": "2m", "idle_timeout": "off"}


def test_bad_timeout_labels_are_named_problems():
    r = parse_labels(labels(timeout_request="forever", timeout_idle="48h", websocket="maybe"))
    assert sorted(r.problems) == [
        "envoyage.timeout.idle: '48h' must be between 1s and 24h (or 'off')",
        "envoyage.timeout.request: 'forever' is not a duration (use e.g. 'off', '10s' or '500ms')",
        "envoyage.websocket: 'maybe' is not true or false",
    ]


def test_scope_label_is_known_and_in_scope_decides():
    from envoyage.discovery.labels import in_scope

    r = parse_labels({**BASE, "envoyage.scope": "demo"})
    assert r.problems == []
    assert in_scope({"envoyage.scope": "demo"}, "demo") and in_scope({}, "") and in_scope({"envoyage.scope": "x"}, "")
    assert not in_scope({}, "demo") and not in_scope({"envoyage.scope": "other"}, "demo")
