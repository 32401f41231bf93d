"""The modules' own logic, run in-process (no ansible-playbook): check mode, idempotence,
failures that name the parameter, and nothing secret in what they return."""

import json
import os

import pytest
from ansible.module_utils import basic

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core before 2.19
    import contextlib

    @contextlib.contextmanager
    def patch_module_args(args):
        old = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = old


from ansible_collections.envoyage.core.plugins.module_utils import _control_api
from ansible_collections.envoyage.core.plugins.modules import (
    envoyage_ca,
    envoyage_cert,
    envoyage_service,
    wireguard_keypair,
)


class Exit(Exception):
    pass


class Fail(Exception):
    pass


@pytest.fixture(autouse=True)
def capture(monkeypatch):
    def exit_json(self, **kwargs):
        raise Exit(kwargs)

    def fail_json(self, **kwargs):
        raise Fail(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)


def run(module, args, check_mode=False):
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    with patch_module_args(args):
        try:
            module.main()
        except Exit as exc:
            return exc.args[0]
        except Fail as exc:
            return dict(exc.args[0], failed=True)
    raise AssertionError("the module neither exited nor failed")


def test_wireguard_keypair_check_apply_check_apply(tmp_path):
    args = {"path": str(tmp_path / "wg.key")}
    first = run(wireguard_keypair, args, check_mode=True)
    assert first["changed"] and first["public_key"] == "" and not (tmp_path / "wg.key").exists()
    made = run(wireguard_keypair, args)
    assert made["changed"] and made["created"] and len(made["public_key"]) == 44
    assert oct(os.stat(tmp_path / "wg.key").st_mode & 0o777) == "0o600"
    for check in (True, False):
        again = run(wireguard_keypair, args, check_mode=check)
        assert not again["changed"] and again["public_key"] == made["public_key"]
    private = (tmp_path / "wg.key").read_text().strip()
    assert private not in json.dumps(made)


def test_wireguard_keypair_refuses_a_key_others_can_read(tmp_path):
    run(wireguard_keypair, {"path": str(tmp_path / "wg.key")})
    os.chmod(tmp_path / "wg.key", 0o644)
    out = run(wireguard_keypair, {"path": str(tmp_path / "wg.key")})
    assert out["failed"] and out["msg"].startswith("path: ") and "readable by others" in out["msg"]


def test_ca_is_made_once_and_a_mismatch_changes_nothing(tmp_path):
    args = {"key_path": str(tmp_path / "ca.key"), "cert_path": str(tmp_path / "ca.pem")}
    made = run(envoyage_ca, args)
    assert made["changed"] and made["created"] and "PRIVATE KEY" not in json.dumps(made)
    assert not run(envoyage_ca, dict(args, key_type="rsa", common_name="other"))["changed"]
    run(envoyage_ca, {"key_path": str(tmp_path / "b.key"), "cert_path": str(tmp_path / "b.pem")})
    before = (tmp_path / "ca.pem").read_bytes()
    out = run(envoyage_ca, {"key_path": str(tmp_path / "b.key"), "cert_path": str(tmp_path / "ca.pem")})
    assert out["failed"] and "does not match the CA certificate" in out["msg"]
    assert (tmp_path / "ca.pem").read_bytes() == before


def test_cert_is_renewed_when_its_names_change_and_not_otherwise(tmp_path):
    run(envoyage_ca, {"key_path": str(tmp_path / "ca.key"), "cert_path": str(tmp_path / "ca.pem")})
    args = {
        "ca_key_path": str(tmp_path / "ca.key"),
        "ca_cert_path": str(tmp_path / "ca.pem"),
        "key_path": str(tmp_path / "l.key"),
        "cert_path": str(tmp_path / "l.pem"),
        "common_name": "link",
        "subject_alt_names": ["10.88.0.2", "home.internal"],
    }
    first = run(envoyage_cert, args)
    assert first["changed"] and first["reason"] == "it did not exist"
    assert not run(envoyage_cert, dict(args, subject_alt_names=["home.internal", "10.88.0.2"]))["changed"]
    check = run(envoyage_cert, dict(args, subject_alt_names=["home.internal"]), check_mode=True)
    assert check["changed"] and check["reason"] == "its names changed"
    assert run(envoyage_cert, dict(args, subject_alt_names=["home.internal"]))["info"]["subject_alt_names"] == [
        "home.internal"
    ]
    bad = run(envoyage_cert, dict(args, days=10, renew_before_days=30))
    assert bad["failed"] and bad["msg"].startswith("renew_before_days:")


class FakeApi:
    """The control API as envoyage_service sees it (normalizing domains like the real one)."""

    def __init__(self):
        self.services = {}
        self.calls = []

    def __call__(self, socket_path, method, path, body=None, timeout=30):
        self.calls.append((method, path))
        name = path.split("/")[2].split("?")[0] if path.count("/") >= 2 else None
        if method == "GET":
            if name not in self.services:
                raise _control_api.ApiError(404, "no service named %r" % name)
            return 200, dict(self.services[name], problems=[], first_seen=1.0, updated_at=2.0)
        if method == "DELETE":
            del self.services[name]
            return 204, None
        normalized = dict(
            body, name=name or body["name"], domains=[d.lower() for d in body["domains"]], source="manual"
        )
        if method == "PUT" and path.endswith("?dry_run=1"):
            return 200, normalized
        self.services[normalized["name"]] = normalized
        return 201, normalized


def test_service_present_twice_changes_once_and_check_mode_changes_nothing(monkeypatch):
    api = FakeApi()
    monkeypatch.setattr(_control_api, "request", api)
    args = {"name": "nas", "domains": ["NAS.example.org"], "upstreams": ["192.0.2.20:5000"]}
    check = run(envoyage_service, args, check_mode=True)
    assert check["changed"] and check["diff"]["after"]["domains"] == ["nas.example.org"] and not api.services
    assert run(envoyage_service, args)["changed"] and "nas" in api.services
    assert not run(envoyage_service, args)["changed"]
    gone = run(envoyage_service, {"name": "nas", "state": "absent"})
    assert gone["changed"] and not api.services


def test_service_errors_name_the_field(monkeypatch):
    def refuse(socket_path, method, path, body=None, timeout=30):
        if method == "GET":
            raise _control_api.ApiError(404, "no such service")
        raise _control_api.ApiError(400, "'x y' is not a valid domain name", "domains[0]")

    monkeypatch.setattr(_control_api, "request", refuse)
    out = run(envoyage_service, {"name": "bad", "domains": ["x y"], "upstreams": ["192.0.2.1:80"]})
    assert out["failed"] and out["msg"] == "domains[0]: 'x y' is not a valid domain name"


def test_bad_owner_or_common_name_fail_before_anything_is_written(tmp_path):
    out = run(wireguard_keypair, {"path": str(tmp_path / "wg.key"), "owner": "no-such-user-here"})
    assert out["failed"] and out["msg"].startswith("owner: ") and not (tmp_path / "wg.key").exists()
    out = run(
        envoyage_ca,
        {"key_path": str(tmp_path / "ca.key"), "cert_path": str(tmp_path / "ca.pem"), "common_name": "x" * 65},
    )
    assert out["failed"] and out["msg"].startswith("common_name: ") and not (tmp_path / "ca.key").exists()


def test_a_service_name_that_is_not_one_is_refused_before_any_request(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("no request may be made")

    monkeypatch.setattr(_control_api, "request", never)
    for name in ("web?x", "web/../other", "Web", "a b"):
        out = run(envoyage_service, {"name": name, "state": "absent"})
        assert out["failed"] and out["msg"].startswith("name: "), name
