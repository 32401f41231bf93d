"""Input validation: every bad field is named, good input normalizes predictably."""

import pytest

from envoyage.model import InputError, merge_update, parse_service


def svc(**kw):
    data = {"name": "web", "domains": ["web.example.com"], "upstreams": ["10.0.0.5:8080"]}
    data.update(kw)
    return data


def test_minimal_service_gets_defaults():
    s = parse_service(svc())
    assert s.domains == ("web.example.com",)
    assert str(s.upstreams[0]) == "10.0.0.5:8080"
    assert (s.path, s.access, s.health_check, s.source) == ("/", "public", None, "manual")


def test_domains_are_normalized_and_wildcards_allowed():
    s = parse_service(svc(domains=["Web.Example.COM.", "*.apps.example.com"]))
    assert s.domains == ("web.example.com", "*.apps.example.com")


@pytest.mark.parametrize(
    "data, field, text",
    [
        (svc(name="Bad Name"), "name", "not a valid service name"),
        (svc(domains=[]), "domains", "at least one domain"),
        (svc(domains=["ok.example.com", "bad_domain!"]), "domains[1]", "not a valid domain"),
        (svc(domains=["a.example.com", "A.example.com"]), "domains[1]", "listed twice"),
        (svc(domains=["*"]), "domains[0]", "wildcard"),
        (svc(upstreams=[]), "upstreams", "at least one upstream"),
        (svc(upstreams=["10.0.0.1"]), "upstreams[0]", "HOST:PORT"),
        (svc(upstreams=["10.0.0.1:eighty"]), "upstreams[0]", "'eighty' is not a port number"),
        (svc(upstreams=["10.0.0.1:70000"]), "upstreams[0]", "not a port number"),
        (svc(upstreams=["10.0.0.1:\u00b9"]), "upstreams[0]", "not a port number"),  # a digit, not ASCII
        (svc(upstreams=["http://10.0.0.1:80"]), "upstreams[0]", "without a scheme"),
        (svc(upstreams=["10.0.0.1:80", "nas.lan:80"]), "upstreams", "mix of IP addresses"),
        (svc(path="relative"), "path", "absolute URL path"),
        (svc(access="everyone"), "access", "not one of"),
        (svc(health_check={"path": "/h", "interval": "soon"}), "health_check.interval", "not a duration"),
        (svc(health_check={"path": "/h", "interval": "1s", "timeout": "5s"}), "health_check.timeout", "longer"),
        (svc(health_check={"expected": "200-700"}), "health_check.expected", "between 100 and 599"),
        (svc(health_check={"paht": "/h"}), "health_check.paht", "unknown field"),
        (svc(colour="blue"), "colour", "unknown field"),
        ([1, 2], "body", "JSON object"),
    ],
)
def test_bad_input_names_the_field(data, field, text):
    with pytest.raises(InputError) as exc:
        parse_service(data)
    assert exc.value.field == field
    assert text in exc.value.message


def test_health_check_grammar():
    s = parse_service(
        svc(health_check={"path": "/status", "interval": "500ms", "timeout": "0.2s", "expected": "200,204,300-302"})
    )
    hc = s.health_check
    assert (hc.path, hc.interval_ms, hc.timeout_ms) == ("/status", 500, 200)
    assert hc.expected == ((200, 200), (204, 204), (300, 302))
    assert s.to_json()["health_check"] == {
        "path": "/status",
        "interval": "500ms",
        "timeout": "200ms",
        "expected": "200,204,300-302",
    }


def test_round_trip_and_hash_stable():
    s = parse_service(svc(health_check="/healthz"))
    again = parse_service(s.to_json())
    assert again == s
    assert again.content_hash == s.content_hash
    assert parse_service(svc(upstreams=["10.0.0.6:8080"])).content_hash != s.content_hash


def test_merge_update_validates_and_refuses_rename():
    s = parse_service(svc())
    assert merge_update(s, {"upstreams": ["10.0.0.9:81"]}).upstreams[0].port == 81
    with pytest.raises(InputError) as exc:
        merge_update(s, {"name": "other"})
    assert exc.value.field == "name"
    with pytest.raises(InputError) as exc:
        merge_update(s, {"domains": ["nope nope"]})
    assert exc.value.field == "domains[0]"


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
fields = st.sampled_from(
    ["name", "domains", "upstreams", "path", "access", "health_check", "source", "auth", "tls_upstream", "other"]
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(fields, json_values, max_size=9))
def test_hostile_json_only_ever_raises_input_error(data):
    try:
        spec = parse_service(data)
    except InputError as exc:
        assert exc.field and exc.message
    else:
        assert parse_service(spec.to_json()) == spec


@pytest.mark.parametrize(
    "given, stored, shown",
    [
        ("bücher.localhost", "xn--bcher-kva.localhost", "bücher.localhost"),
        ("BÜCHER.Localhost.", "xn--bcher-kva.localhost", "bücher.localhost"),
        ("faß.de", "xn--fa-hia.de", "faß.de"),  # non-transitional, as browsers send it (not 'fass.de')
        ("münchen。de", "xn--mnchen-3ya.de", "münchen.de"),  # an ideographic full stop is a dot
        ("*.bücher.example", "*.xn--bcher-kva.example", "*.bücher.example"),
        ("xn--bcher-kva.localhost", "xn--bcher-kva.localhost", "bücher.localhost"),
        ("ab--c.example", "ab--c.example", "ab--c.example"),  # valid ASCII host names stay valid
    ],
)
def test_internationalized_domains_are_stored_in_ascii(given, stored, shown):
    from envoyage.model import domain_display

    s = parse_service(svc(domains=[given]))
    assert s.domains == (stored,)
    assert domain_display(stored) == shown


def test_unicode_and_ascii_forms_of_one_domain_are_the_same_domain():
    with pytest.raises(InputError) as exc:
        parse_service(svc(domains=["bücher.localhost", "xn--bcher-kva.localhost"]))
    assert exc.value.field == "domains[1]" and "listed twice" in exc.value.message


@pytest.mark.parametrize(
    "domain, text",
    [
        ("☠.example", "cannot be encoded as a domain name: Codepoint U+2620"),
        ("xn--abc.example", "the label 'xn--abc' cannot be encoded"),
        ("a\n.x.test", "contains a control character"),
        ("a.x.test\n", "contains a control character"),
        ("bü cher.example", "cannot be encoded"),
        ("a.*.example", "'*' only as the whole first label"),
        ("ü" * 60 + ".example", "cannot be encoded"),  # label longer than 63 once encoded
    ],
)
def test_domains_that_cannot_be_encoded_say_why(domain, text):
    with pytest.raises(InputError) as exc:
        parse_service(svc(domains=[domain]))
    assert exc.value.field == "domains[0]" and text in exc.value.message, exc.value.message


def test_timeouts_and_websocket_defaults_and_round_trip():
    s = parse_service(svc())
    assert (s.websocket, s.request_timeout_ms, s.idle_timeout_ms) == (True, 0, 3_600_000)
    assert (s.to_json()["request_timeout"], s.to_json()["idle_timeout"]) == ("off", "1h")
    t = parse_service(svc(websocket=False, request_timeout="90s", idle_timeout="10m"))
    assert (t.websocket, t.request_timeout_ms, t.idle_timeout_ms) == (False, 90_000, 600_000)
    assert parse_service(t.to_json()) == t  # what the API shows is accepted back unchanged
    assert parse_service(svc(idle_timeout="off", request_timeout=0)).idle_timeout_ms == 0


@pytest.mark.parametrize(
    "data, field, text",
    [
        (svc(websocket="yes"), "websocket", "not true or false"),
        (svc(request_timeout="soon"), "request_timeout", "not a duration (use e.g. 'off', '10s'"),
        (svc(request_timeout="500ms"), "request_timeout", "between 1s and 24h (or 'off')"),
        (svc(idle_timeout="25h"), "idle_timeout", "between 1s and 24h"),
        (svc(idle_timeout="1" * 400), "idle_timeout", "not a duration"),
        (svc(idle_timeout=True), "idle_timeout", "not a duration"),
    ],
)
def test_bad_timeouts_are_named(data, field, text):
    with pytest.raises(InputError) as exc:
        parse_service(data)
    assert exc.value.field == field and text in exc.value.message, exc.value.message
