from pathlib import Path

import pytest

from envoyage.config import ConfigError, load_config


def test_defaults_follow_design():
    cfg = load_config(None, environ={})
    assert cfg.db_path == Path("/var/lib/envoyage/envoyage.db")
    assert cfg.socket_path == Path("/run/envoyage/control.sock")
    assert (cfg.xds_address, cfg.xds_port) == ("127.0.0.1", 18000)


def test_file_then_environment(tmp_path):
    f = tmp_path / "control.yaml"
    f.write_text("state_dir: /srv/ey\nxds:\n  port: 18500\nhome_http_port: 8080\n")
    cfg = load_config(f, environ={"ENVOYAGE_HOME_HTTP_PORT": "9090"})
    assert cfg.state_dir == Path("/srv/ey") and cfg.xds_port == 18500 and cfg.home_http_port == 9090


@pytest.mark.parametrize(
    "text, needle",
    [
        ("xds_prot: 1\n", "unknown setting 'xds_prot'"),
        ("xds_port: eighty\n", "'xds_port' must be a port number"),
        ("xds_port: 0\n", "between 1 and 65535"),
        ("log_level: loud\n", "'log_level' must be one of"),
        ("- a\n- b\n", "expected a mapping"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_bad_file_is_named(tmp_path, text, needle):
    f = tmp_path / "control.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(f, environ={})
    assert needle in str(exc.value)
    assert str(f) in str(exc.value)


def test_bad_environment_is_named():
    with pytest.raises(ConfigError, match="ENVOYAGE_XDS_PORT"):
        load_config(None, environ={"ENVOYAGE_XDS_PORT": "x"})


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_xds_transport_defaults_to_unix_and_an_address_or_port_means_tcp(tmp_path):
    cfg = load_config(None, {})
    assert cfg.xds_transport == "unix" and cfg.xds_socket_path == Path("/run/envoyage/xds.sock")
    assert load_config(None, {"ENVOYAGE_XDS_PORT": "18100"}).xds_transport == "tcp"
    f = tmp_path / "c.yaml"
    f.write_text("xds: {address: 127.0.0.1}\n")
    assert load_config(f, {}).xds_transport == "tcp"
    f.write_text("run_dir: /srv/run\nxds: {transport: unix, port: 18100, socket_group: envoy}\n")
    cfg = load_config(f, {})
    assert (cfg.xds_transport, cfg.xds_socket_path, cfg.xds_socket_group) == ("unix", Path("/srv/run/xds.sock"), "envoy")
    f.write_text("xds: {transport: udp}\n")
    with pytest.raises(ConfigError, match="'xds_transport' must be 'unix' or 'tcp'"):
        load_config(f, {})
    f.write_text("xds: {max_streams: many}\n")
    with pytest.raises(ConfigError, match="'xds_max_streams' must be a whole number"):
        load_config(f, {})
    f.write_text("xds: {keepalive: soon}\n")
    with pytest.raises(ConfigError, match="'xds_keepalive' must be a duration"):
        load_config(f, {})
