"""CLI: bootstraps Envoy accepts, clear errors and exit codes on bad arguments."""

import subprocess

import pytest
import yaml

from helpers import ENVOY, ENVOYAGE


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
