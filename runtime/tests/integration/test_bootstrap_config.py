"""`envoyage envoy-bootstrap` takes the xDS address and port from the control plane's
own configuration, so an Envoy bootstrapped next to a non-default control plane connects."""

from __future__ import annotations

import subprocess

import yaml

from helpers import ENVOYAGE, Envoy, free_port, http_get, run_cli, wait_for


def test_bootstrap_from_a_non_default_config_connects_and_serves(workdir, control_process, upstreams):
    # control_process writes a config with a free, non-default xds_port; make it the
    # nested form the docs show, with a wildcard listen address
    cfg = yaml.safe_load(control_process.config_path.read_text())
    port = cfg.pop("xds_port")
    assert port != 18000
    cfg["xds"] = {"address": "0.0.0.0", "port": port}
    control_process.config_path.write_text(yaml.safe_dump(cfg))
    cp = control_process.start()

    out = workdir / "bootstrap.yaml"
    admin = free_port()
    r = subprocess.run([ENVOYAGE, "envoy-bootstrap", "--node-id", "cfg-home", "--role", "home",
                        "--admin-port", str(admin), "-o", str(out)],
                       env={"ENVOYAGE_CONFIG": str(cp.config_path), "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    xds = yaml.safe_load(out.read_text())["static_resources"]["clusters"][0]["load_assignment"]
    assert xds["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": "127.0.0.1", "port_value": port}

    envoy = Envoy(workdir, "cfg-home", bootstrap_path=out, admin_port=admin).start()
    try:
        up = upstreams("cfg")
        run_cli("service", "add", "cfg", "-d", "cfg.example.test", "-u", up.address, socket_path=cp.socket,
                check=True)
        wait_for(lambda: http_get(cfg["home_http_port"], "cfg.example.test") == (200, "cfg"), 10,
                 what="the service to answer through the Envoy bootstrapped from the config")
    finally:
        envoy.stop()
