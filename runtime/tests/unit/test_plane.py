"""Control-plane updates: PATCH changes only what is given, PUT replaces the whole service."""

import pytest

from envoyage.control.plane import ControlPlane
from envoyage.model import InputError
from helpers import make_config


@pytest.fixture
def plane(workdir):
    p = ControlPlane(make_config(workdir))
    yield p
    p.registry.close()


BASE = {"name": "web", "domains": ["web.test"], "upstreams": ["10.0.0.1:80"], "health_check": "/status"}


def test_patch_keeps_fields_not_given(plane):
    plane.add_service(BASE)
    svc = plane.update_service("web", {"upstreams": ["10.0.0.2:80"]})
    assert svc["upstreams"] == ["10.0.0.2:80"] and svc["health_check"]["path"] == "/status"


def test_put_replaces_omitted_fields_with_defaults(plane):
    plane.add_service(BASE)
    svc = plane.update_service("web", {"domains": ["web.test"], "upstreams": ["10.0.0.2:80"]}, replace=True)
    assert svc["upstreams"] == ["10.0.0.2:80"] and svc["health_check"] is None


def test_put_with_another_name_or_source_is_refused(plane):
    plane.add_service(BASE)
    with pytest.raises(InputError) as exc:
        plane.update_service("web", {**BASE, "name": "other"}, replace=True)
    assert exc.value.field == "name"
    for replace in (False, True):
        with pytest.raises(InputError) as exc:
            plane.update_service("web", {**BASE, "source": "docker"}, replace=replace)
        assert exc.value.field == "source"
    assert plane.get_service("web")["source"] == "manual"
