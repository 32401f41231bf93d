"""A service can only claim the operator's domains (issue 20, item 6), pure parts: the
public-suffix refusal, the zones check in validation and at the API, `domains` in the
configuration, and labels baked into an image."""

import pytest

from envoyage.config import ConfigError, load_config
from envoyage.discovery.containers import ContainerInfo, derive_services
from envoyage.model import InputError, ServiceState, parse_domain, parse_service, zones_problem
from envoyage.xds.validate import check_services


@pytest.mark.parametrize(
    "value,what",
    [
        ("*.com", "a wildcard on the public suffix 'com'"),
        ("*.co.uk", "a wildcard on the public suffix 'co.uk'"),
        ("*.github.io", "a wildcard on the public suffix 'github.io'"),
        ("co.uk", "the public suffix 'co.uk' itself"),
    ],
)
def test_names_anyone_can_register_under_are_refused(value, what):
    with pytest.raises(InputError) as exc:
        parse_domain("domains[0]", value)
    assert what in exc.value.message and exc.value.field == "domains[0]"


@pytest.mark.parametrize("value", ["*.example.co.uk", "*.example.test", "*.localhost", "nas", "app.home.arpa"])
def test_a_wildcard_under_a_registered_name_or_a_private_tld_is_fine(value):
    assert parse_domain("d", value) == value


def test_zones_include_the_zone_and_every_name_under_it():
    zones = ("example.org", "home.arpa")
    assert zones_problem("example.org", zones) is None
    assert zones_problem("*.apps.example.org", zones) is None
    assert zones_problem("nas.home.arpa", zones) is None
    problem = zones_problem("bank.example", zones)
    assert "'bank.example' is not in this installation's domains (example.org, home.arpa)" in problem
    assert zones_problem("evilexample.org", zones) is not None  # a suffix match is not a zone match
    assert zones_problem("anything.test", ()) is None  # no zones configured: any name


def test_a_service_outside_the_zones_is_a_named_problem_and_not_served():
    good = ServiceState.of(parse_service({"name": "web", "domains": ["web.example.org"], "upstreams": ["10.0.0.2:80"]}))
    bad = ServiceState.of(
        parse_service({"name": "evil", "domains": ["login.bank.example"], "upstreams": ["10.0.0.3:80"]}),
        first_seen=-1.0,
    )
    accepted, problems = check_services([good, bad], zones=("example.org",))
    assert [s.name for s in accepted] == ["web"]
    assert "'login.bank.example' is not in this installation's domains (example.org)" in problems["evil"][0]


def test_domains_in_the_configuration_are_checked_and_normalized(tmp_path):
    cfg = tmp_path / "control.yaml"
    cfg.write_text("domains: [Example.ORG, bücher.example]\n")
    assert load_config(cfg, environ={}).domains == ("example.org", "xn--bcher-kva.example")
    for text, message in (
        ("domains: ['*.example.org']\n", "give the zone ('example.org'), not a wildcard"),
        ("domains: [com]\n", "the public suffix 'com' itself"),
        ("domains: 7\n", "'domains' must be a list of domains"),
    ):
        cfg.write_text(text)
        with pytest.raises(ConfigError) as exc:
            load_config(cfg, environ={})
        assert message in str(exc.value)
    cfg.write_text("discovery:\n  trust_image_labels: yes\n")
    assert load_config(cfg, environ={}).discovery_trust_image_labels is True
    assert load_config(None, environ={}).discovery_trust_image_labels is False


def _container(labels, image_labels):
    return ContainerInfo(
        id="b" * 64,
        name="thirdparty",
        labels={**image_labels, **labels},
        image_labels=image_labels,
        networks={"bridge": "172.17.0.5"},
        exposed_ports=("80/tcp",),
    )


def test_an_image_cannot_publish_itself():
    image = {"envoyage.enable": "true", "envoyage.domain": "nas.example.org"}
    assert derive_services([_container({}, image)]) == []
    (svc,) = derive_services([_container({}, image)], trust_image_labels=True)
    assert svc.spec.domains == ("nas.example.org",)


def test_an_image_cannot_pick_the_name_of_a_container_the_operator_enabled():
    image = {"envoyage.domain": "nas.example.org", "envoyage.access": "public"}
    (svc,) = derive_services([_container({"envoyage.enable": "true"}, image)], default_domain="example.org")
    assert svc.spec.domains == ("thirdparty.example.org",)  # the default name, not the image's
    assert any("labels from the image are ignored (envoyage.access, envoyage.domain)" in p for p in svc.source_problems)
    # the operator's own label with another value than the image's counts
    (svc,) = derive_services([_container({"envoyage.enable": "true", "envoyage.domain": "mine.example.org"}, image)])
    assert svc.spec.domains == ("mine.example.org",)


def test_no_label_counts_when_the_image_cannot_be_inspected():
    c = ContainerInfo(
        id="c" * 64,
        name="orphan",
        labels={"envoyage.enable": "true", "envoyage.domain": "x.example.org"},
        image_known=False,
        networks={"bridge": "172.17.0.6"},
        exposed_ports=("80/tcp",),
    )
    assert derive_services([c]) == []
    assert len(derive_services([c], trust_image_labels=True)) == 1
