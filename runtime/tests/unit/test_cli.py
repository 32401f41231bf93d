"""CLI: bootstraps Envoy accepts, clear errors and exit codes on bad arguments."""

import subprocess

import pytest
import yaml
from support.helpers import ENVOY, ENVOYAGE


def cli(*args):
    return subprocess.run([ENVOYAGE, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("delta", [False, True])
def test_bootstrap_is_accepted_by_envoy_validate(tmp_path, delta):
    out = tmp_path / "bootstrap.yaml"
    args = ["envoy-bootstrap", "--node-id", "home-1", "--role", "home", "-o", str(out)]
    if delta:
        args.append("--delta")
    assert cli(*args).returncode == 0
    data = yaml.safe_load(out.read_text())
    assert data["node"] == {"id": "home-1", "cluster": "envoyage-home", "metadata": {"role": "home"}}
    assert data["dynamic_resources"]["ads_config"]["api_type"] == ("DELTA_GRPC" if delta else "GRPC")
    assert data["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    v = subprocess.run([ENVOY, "--mode", "validate", "-c", str(out)], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0, v.stdout + v.stderr
    assert "OK" in v.stdout + v.stderr


@pytest.mark.parametrize(
    "args, needle",
    [
        (["envoy-bootstrap", "--node-id", "bad id!", "--role", "home"], "--node-id"),
        (["envoy-bootstrap", "--node-id", "n", "--role", "home", "--xds-port", "0"], "--xds-port 0"),
        (["envoy-bootstrap", "--node-id", "n", "--role", "moon"], "invalid choice: 'moon'"),
        (["service", "add", "x", "--domain", "x.test"], "--upstream"),
        (["service"], "ACTION"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_message(args, needle):
    r = cli(*args)
    assert r.returncode == 2 and needle in r.stderr


def test_unreachable_control_plane_exit_3(tmp_path):
    r = cli("--socket", str(tmp_path / "none.sock"), "status")
    assert r.returncode == 3 and "is `envoyage control` running?" in r.stderr


def test_bad_config_file_exit_2(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("xds_port: nope\n")
    r = cli("--config", str(cfg), "status")
    assert r.returncode == 2 and "'xds_port' must be a port number" in r.stderr


def _xds_target(path):
    cluster = yaml.safe_load(path.read_text())["static_resources"]["clusters"][0]
    return cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]


@pytest.mark.parametrize(
    "config_text, env, flags, want",
    [
        ("xds: {port: 18100}\n", {}, [], {"address": "127.0.0.1", "port_value": 18100}),
        ("xds: {address: 0.0.0.0, port: 18101}\n", {}, [], {"address": "127.0.0.1", "port_value": 18101}),
        ("xds: {address: '::', port: 18102}\n", {}, [], {"address": "::1", "port_value": 18102}),
        (
            "xds: {address: 127.0.0.2}\n",
            {"ENVOYAGE_XDS_PORT": "18103"},
            [],
            {"address": "127.0.0.2", "port_value": 18103},
        ),
        (
            "xds: {port: 18100}\n",
            {},
            ["--xds-port", "18200", "--xds-address", "127.0.0.9"],
            {"address": "127.0.0.9", "port_value": 18200},
        ),
    ],
)
def test_bootstrap_defaults_come_from_the_config(tmp_path, config_text, env, flags, want):
    cfg = tmp_path / "control.yaml"
    cfg.write_text(config_text)
    out = tmp_path / "b.yaml"
    r = subprocess.run(
        [ENVOYAGE, "envoy-bootstrap", "--node-id", "n", "--role", "home", "-o", str(out), *flags],
        env={"ENVOYAGE_CONFIG": str(cfg), "PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert _xds_target(out) == want


def test_bootstrap_with_a_broken_config_names_it(tmp_path):
    cfg = tmp_path / "control.yaml"
    cfg.write_text("xds: {port: eighty}\n")
    r = cli("--config", str(cfg), "envoy-bootstrap", "--node-id", "n", "--role", "home")
    assert r.returncode == 2 and "'xds_port' must be a port number" in r.stderr


def test_link_secret_writes_the_secret_and_a_derived_key_0600_and_never_replaces_by_accident(tmp_path):
    import os
    import stat

    from envoyage.module_utils import _linkkey as linkkey

    cfg = tmp_path / "control.yaml"
    cfg.write_text(f"state_dir: {tmp_path / 'state'}\n")
    (tmp_path / "state").mkdir(mode=0o700)
    # an older Envoyage's hash of the secret goes once home has the key
    (tmp_path / "state" / "edge-secret.hash").write_text("sha256$00$00\n")
    out = cli("-c", str(cfg), "link-secret", "--secret-file", str(tmp_path / "edge.secret"))
    assert out.returncode == 0, out.stderr
    key_file = tmp_path / "state" / "edge-link.key"
    secret = (tmp_path / "edge.secret").read_text().strip()
    stored = key_file.read_text()
    assert secret not in out.stdout + out.stderr and secret not in stored
    salt, key = linkkey.read_key_file(str(key_file))
    assert key == linkkey.derive(secret, salt) and key.hex() not in out.stdout + out.stderr
    assert not (tmp_path / "state" / "edge-secret.hash").exists()
    for f in (tmp_path / "edge.secret", key_file):
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    again = cli("-c", str(cfg), "link-secret", "--secret-file", str(tmp_path / "other.secret"))
    assert again.returncode == 2 and "already has an edge link key" in again.stderr
    assert key_file.read_text() == stored
    replaced = cli("-c", str(cfg), "link-secret", "--secret-file", str(tmp_path / "other.secret"), "--replace")
    assert replaced.returncode == 0 and key_file.read_text() != stored


def test_edge_bootstrap_uses_the_edge_socket_and_envoy_accepts_it(tmp_path):
    edge = tmp_path / "edge.yaml"
    edge.write_text(f"run_dir: {tmp_path / 'run'}\n")
    out = tmp_path / "bootstrap.yaml"
    r = cli("-c", str(edge), "envoy-bootstrap", "--node-id", "vps", "--role", "edge", "-o", str(out))
    assert r.returncode == 0, r.stderr
    data = yaml.safe_load(out.read_text())
    assert data["node"]["metadata"] == {"role": "edge"}
    target = data["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert target["endpoint"]["address"] == {"pipe": {"path": str(tmp_path / "run" / "xds.sock")}}
    v = subprocess.run([ENVOY, "--mode", "validate", "-c", str(out)], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0, v.stdout + v.stderr
