"""What envoyage_service decides, in its backend (plugins/module_utils/_control_api.py),
against the real control API on a Unix socket: a service is written only when the
control plane's normalized form differs, check mode writes nothing, and refusals name
the field."""

import json
import threading

import pytest
from support.helpers import make_config
from waitress.server import create_server

from envoyage.control.api import create_app
from envoyage.control.plane import ControlPlane, NotFound
from envoyage.module_utils import _control_api as api

NAS = {"domains": ["NAS.example.org"], "upstreams": ["192.0.2.20:5000"], "access": "vpn-only"}


def _fields(**given):
    return {name: given.get(name) for name in api.SERVICE_FIELDS}


@pytest.fixture
def control(workdir):
    """The control API on a Unix socket in the test's directory; a GET of the service
    `fromdocker` answers as for a service Docker discovery found."""
    plane = ControlPlane(make_config(workdir))
    app = create_app(plane)

    def wsgi(environ, start_response):
        if environ["REQUEST_METHOD"] == "GET" and environ["PATH_INFO"] == "/v1/services/fromdocker":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps({"name": "fromdocker", "source": "docker"}).encode()]
        return app(environ, start_response)

    sock = workdir / "control.sock"
    server = create_server(wsgi, unix_socket=str(sock), unix_socket_perms="600")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield str(sock), plane
    finally:
        # closed inside its own loop (a close from this thread races the loop's select)
        server.trigger.pull_trigger(server.close)
        thread.join(5)
        server.task_dispatcher.shutdown()
        plane.registry.close()


def test_present_check_apply_apply_then_absent(control):
    sock, plane = control
    check = api.ensure_service(sock, "nas", "present", _fields(**NAS), check_mode=True)
    assert (
        check["changed"] and check["diff"]["before"] == {} and check["diff"]["after"]["domains"] == ["nas.example.org"]
    )
    with pytest.raises(NotFound):  # check mode wrote nothing
        plane.get_service("nas")

    made = api.ensure_service(sock, "nas", "present", _fields(**NAS))
    assert made["changed"] and made["service"]["source"] == "manual"
    assert plane.get_service("nas")["access"] == "vpn-only"
    again = api.ensure_service(sock, "nas", "present", _fields(**NAS))
    assert not again["changed"] and again["diff"]["before"] == again["diff"]["after"]

    moved = dict(NAS, upstreams=["192.0.2.21:5000"])
    check = api.ensure_service(sock, "nas", "present", _fields(**moved), check_mode=True)
    assert check["changed"] and check["diff"]["before"]["upstreams"] == ["192.0.2.20:5000"]
    assert plane.get_service("nas")["upstreams"] == ["192.0.2.20:5000"]
    assert api.ensure_service(sock, "nas", "present", _fields(**moved))["changed"]
    assert plane.get_service("nas")["upstreams"] == ["192.0.2.21:5000"]

    assert api.ensure_service(sock, "nas", "absent", _fields(), check_mode=True)["changed"]
    assert plane.get_service("nas")
    gone = api.ensure_service(sock, "nas", "absent", _fields())
    assert gone["changed"] and gone["service"] == {} and gone["diff"]["after"] == {}
    assert not api.ensure_service(sock, "nas", "absent", _fields())["changed"]


def test_refusals_name_the_field_and_change_nothing(control):
    sock, plane = control
    with pytest.raises(api.ApiError) as exc:
        api.ensure_service(sock, "bad", "present", _fields(domains=["x y"], upstreams=["192.0.2.1:80"]))
    assert exc.value.status == 400 and exc.value.option_message().startswith("domains")
    with pytest.raises(api.ApiError) as exc:
        api.ensure_service(sock, "fromdocker", "absent", _fields())
    assert (
        exc.value.option_message()
        == "name: service 'fromdocker' comes from docker discovery; change its labels instead"
    )
    assert plane.list_services() == []


def test_names_that_are_not_service_names_are_refused_before_any_request(tmp_path):
    for name in ("web?x", "web/../other", "Web", "a b", "", "-web"):
        assert api.service_name_problem(name).startswith("name: "), name
    assert api.service_name_problem("nas-2") is None
    with pytest.raises(api.ApiError) as exc:  # no control plane: a sentence, not a traceback
        api.ensure_service(str(tmp_path / "none.sock"), "nas", "absent", _fields())
    assert exc.value.status == 0 and "is envoyage-control running?" in exc.value.message
