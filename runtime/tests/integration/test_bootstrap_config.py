"""`envoyage envoy-bootstrap` takes the xDS address and port from the control plane's
own configuration, so an Envoy bootstrapped next to a non-default control plane connects."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys

import yaml
from support.helpers import ENVOYAGE, Envoy, free_port, http_get, run_cli, wait_for


@contextlib.contextmanager
def control_on_a_unix_socket(workdir):
    """`envoyage control` with its defaults (ADS on the Unix socket in run_dir), Docker off,
    in a directory another user may enter (only the sockets' own modes may stop it):
    yields (config path, the home Envoy's HTTP port, the process); stopped afterwards."""
    os.chmod(workdir, 0o755)
    http_port = free_port()
    config = workdir / "control.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(workdir / "state"),
                "run_dir": str(workdir / "run"),
                "log_dir": str(workdir / "log"),
                "home_http_address": "127.0.0.1",
                "home_http_port": http_port,
                "docker": {"enabled": False},
            }
        )
    )
    (workdir / "run").mkdir(mode=0o755)
    with open(workdir / "control.log", "ab") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [ENVOYAGE, "--config", str(config), "control"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield config, http_port, proc
    finally:
        proc.terminate()
        proc.wait(20)


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
    r = subprocess.run(
        [
            ENVOYAGE,
            "envoy-bootstrap",
            "--node-id",
            "cfg-home",
            "--role",
            "home",
            "--admin-port",
            str(admin),
            "-o",
            str(out),
        ],
        env={"ENVOYAGE_CONFIG": str(cp.config_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    xds = yaml.safe_load(out.read_text())["static_resources"]["clusters"][0]["load_assignment"]
    assert xds["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": port,
    }

    envoy = Envoy(workdir, "cfg-home", bootstrap_path=out, admin_port=admin).start()
    try:
        up = upstreams("cfg")
        run_cli("service", "add", "cfg", "-d", "cfg.example.test", "-u", up.address, socket_path=cp.socket, check=True)
        wait_for(
            lambda: http_get(cfg["home_http_port"], "cfg.example.test") == (200, "cfg"),
            10,
            what="the service to answer through the Envoy bootstrapped from the config",
        )
    finally:
        envoy.stop()


def test_default_unix_socket_serves_our_envoy_and_no_other_user(workdir, upstreams):
    """By default ADS is on a Unix socket (mode 0660, the control plane's group): the
    Envoy bootstrapped from the same config connects over it; another local user cannot
    connect, and no TCP port is open."""
    with control_on_a_unix_socket(workdir) as (config, http_port, proc):
        envoy = None
        try:
            sock = workdir / "run" / "xds.sock"
            wait_for(sock.exists, 20, what="the xDS socket")
            st = sock.stat()
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == os.getgid()
            out = workdir / "bootstrap.yaml"
            admin = free_port()
            r = subprocess.run(
                [
                    ENVOYAGE,
                    "--config",
                    str(config),
                    "envoy-bootstrap",
                    "--node-id",
                    "pipe-home",
                    "--role",
                    "home",
                    "--admin-port",
                    str(admin),
                    "-o",
                    str(out),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert r.returncode == 0, r.stderr
            xds = yaml.safe_load(out.read_text())["static_resources"]["clusters"][0]["load_assignment"]
            assert xds["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] == {"pipe": {"path": str(sock)}}
            envoy = Envoy(workdir, "pipe-home", bootstrap_path=out, admin_port=admin).start()
            up = upstreams("piped")
            run_cli(
                "service",
                "add",
                "piped",
                "-d",
                "piped.test",
                "-u",
                up.address,
                socket_path=workdir / "run" / "control.sock",
                check=True,
            )
            wait_for(
                lambda: http_get(http_port, "piped.test") == (200, "piped"),
                10,
                what="the service through the Envoy connected over the Unix socket",
            )
            # another local user (nobody) is refused by the socket's mode
            probe = subprocess.run(
                [
                    "setpriv",
                    "--reuid=nobody",
                    "--regid=nogroup",
                    "--clear-groups",
                    sys.executable,
                    "-c",
                    f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({str(sock)!r})",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert probe.returncode != 0 and "PermissionError" in probe.stderr, probe.stderr
            # and the control plane listens on no TCP port at all
            listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
            assert f"pid={proc.pid}," not in listening, listening
        finally:
            if envoy is not None:
                envoy.stop()
    assert not (workdir / "run" / "xds.sock").exists()  # removed on a clean stop


def test_a_socket_path_that_is_a_regular_file_is_never_deleted(workdir):
    from support.helpers import make_config

    from envoyage.control.daemon import ControlDaemon

    precious = workdir / "notes.txt"
    precious.write_text("keep me")
    daemon = ControlDaemon(make_config(workdir, control_socket=precious))
    try:
        try:
            daemon.start()
        except OSError as exc:
            assert "exists and is not a socket; refusing to replace it" in str(exc)
        else:
            raise AssertionError("the control plane started on a regular file")
    finally:
        daemon.stop()
    assert precious.read_text() == "keep me"


def test_admin_on_a_0600_socket_answers_envoys_user_and_refuses_another(workdir, upstreams):
    """As the roles bootstrap it (`--admin-socket`): Envoy's admin interface is a Unix
    socket of mode 0600 and no TCP port; root (Envoy's user here) reads /ready through
    it, another local user (nobody) cannot even connect, though the directory lets it in."""
    admin_sock = workdir / "admin.sock"
    with control_on_a_unix_socket(workdir) as (config, http_port, proc):
        envoy = None
        try:
            wait_for((workdir / "run" / "xds.sock").exists, 20, what="the xDS socket")
            out = workdir / "bootstrap.yaml"
            r = subprocess.run(
                [
                    ENVOYAGE,
                    "--config",
                    str(config),
                    "envoy-bootstrap",
                    "--node-id",
                    "sock-home",
                    "--role",
                    "home",
                    "--admin-socket",
                    str(admin_sock),
                    "-o",
                    str(out),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert r.returncode == 0, r.stderr
            assert yaml.safe_load(out.read_text())["admin"] == {
                "address": {"pipe": {"path": str(admin_sock), "mode": 0o600}}
            }
            envoy = Envoy(workdir, "sock-home", bootstrap_path=out, admin_socket=admin_sock).start()
            st = admin_sock.stat()
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
            assert envoy.admin("/ready") == "LIVE"
            probe = subprocess.run(
                [
                    "setpriv",
                    "--reuid=nobody",
                    "--regid=nogroup",
                    "--clear-groups",
                    sys.executable,
                    "-c",
                    f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({str(admin_sock)!r}); "
                    "s.sendall(b'POST /quitquitquit HTTP/1.0\\r\\n\\r\\n'); print(s.recv(100))",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert probe.returncode != 0 and "PermissionError" in probe.stderr, probe.stdout + probe.stderr
            assert envoy.proc.poll() is None and envoy.admin("/ready") == "LIVE"  # nobody could not quit it
            # no admin port on TCP: Envoy listens on nothing but the LAN listener xDS gave it
            listening = [
                line.split()[3]
                for line in subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout.splitlines()
                if f"pid={envoy.proc.pid}," in line
            ]
            assert listening == [f"127.0.0.1:{http_port}"], listening
        finally:
            if envoy is not None:
                envoy.stop()
