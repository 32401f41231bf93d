"""A service can only claim the operator's domains (issue 20, item 6), against a real
dockerd and a real Envoy: a container or an API client naming someone else's domain gets
a named problem and no route; an image that carries envoyage.* labels does not publish
itself or take a LAN name."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from support.helpers import RUN_ID, TEST_LABEL, Setup, http_get, make_config, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def zsetup(workdir, docker):
    s = Setup(
        workdir,
        make_config(workdir, docker_enabled=True, domains=("example.test",), docker_default_domain="example.test"),
        "sotw",
    )
    yield s
    s.close()


def services(setup):
    return {s["name"]: s for s in json.loads(setup.cli("services", "--json", check=True).stdout)}


def test_a_container_cannot_claim_a_domain_outside_the_installation(zsetup, docker):
    docker.run("ey-evil", {"envoyage.domain": "login.bank.example"})
    docker.run("ey-fine", {"envoyage.domain": "fine.example.test"})
    wait_for(lambda: http_get(zsetup.http_port, "fine.example.test")[0] == 200, 10, what="the service in the zone")
    problems = wait_for(
        lambda: services(zsetup).get("ey-evil", {}).get("problems"), 10, what="the claim outside the zones to be named"
    )
    assert any("'login.bank.example' is not in this installation's domains (example.test)" in p for p in problems)
    assert http_get(zsetup.http_port, "login.bank.example")[0] == 404


def test_the_api_refuses_a_domain_outside_the_installation_by_field(zsetup):
    out = zsetup.cli("service", "add", "evil", "-d", "fine.example.test,*.bank.example", "-u", "127.0.0.1:9")
    assert out.returncode != 0
    assert "domains[1]" in out.stdout + out.stderr and "not in this installation's domains" in out.stdout + out.stderr
    out = zsetup.cli("service", "add", "wild", "-d", "*.co.uk", "-u", "127.0.0.1:9")
    assert out.returncode != 0 and "public suffix 'co.uk'" in out.stdout + out.stderr
    assert "evil" not in services(zsetup) and "wild" not in services(zsetup)


def test_labels_baked_into_an_image_do_not_publish_it(zsetup, docker):
    """A pulled third-party image that carries envoyage.enable and a LAN name."""
    tag = f"envoyage/test-labelled:{RUN_ID[-8:]}"
    dockerfile = (
        "FROM envoyage/sample-app:1\n"
        "LABEL envoyage.enable=true envoyage.domain=nas.example.test envoyage.scope="
        + zsetup.config.docker_scope
        + "\n"
    )
    docker.client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=tag, pull=False, rm=True, labels={TEST_LABEL: RUN_ID}
    )
    name = f"ey-img-{uuid.uuid4().hex[:6]}"
    try:
        docker.client.containers.run(tag, name=name, detach=True, labels={TEST_LABEL: RUN_ID})
        # the operator's own service for comparison: a plain container it labelled
        docker.run("ey-mine", {"envoyage.domain": "mine.example.test"})
        wait_for(lambda: http_get(zsetup.http_port, "mine.example.test")[0] == 200, 10, what="the operator's service")
        assert name not in services(zsetup)
        assert http_get(zsetup.http_port, "nas.example.test")[0] == 404
        # enabled by the operator on the container: served under its default name, not
        # the image's, and the ignored labels are named
        # (the image says envoyage.enable=true itself: the operator says it another way)
        docker.run(f"{name}-on", {"envoyage.enable": "yes"}, image=tag)
        wait_for(
            lambda: http_get(zsetup.http_port, f"{name}-on.example.test")[0] == 200,
            10,
            what="the container the operator enabled",
        )
        assert http_get(zsetup.http_port, "nas.example.test")[0] == 404
        assert any(
            "labels from the image are ignored (envoyage.domain" in p and "envoyage.enable" not in p in p
            for p in services(zsetup)[f"{name}-on"]["problems"]
        )
    finally:
        for c in docker.client.containers.list(all=True, filters={"ancestor": tag}):
            c.remove(force=True)
        docker.client.images.remove(tag, force=True)
