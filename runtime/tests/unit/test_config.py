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
    assert (cfg.xds_transport, cfg.xds_socket_path, cfg.xds_socket_group) == (
        "unix",
        Path("/srv/run/xds.sock"),
        "envoy",
    )
    f.write_text("xds: {transport: udp}\n")
    with pytest.raises(ConfigError, match="'xds_transport' must be 'unix' or 'tcp'"):
        load_config(f, {})
    f.write_text("xds: {max_streams: many}\n")
    with pytest.raises(ConfigError, match="'xds_max_streams' must be a whole number"):
        load_config(f, {})
    f.write_text("xds: {keepalive: soon}\n")
    with pytest.raises(ConfigError, match="'xds_keepalive' must be a duration"):
        load_config(f, {})


def test_topology_settings(tmp_path):
    f = tmp_path / "control.yaml"
    f.write_text(
        "topology: a\ntunnel:\n  interface: wg-home\n  prefix: 10.77.0.0/24\nlink:\n  port: 18444\n"
        "edge:\n  addresses: ['0.0.0.0']\n  health_interval: 1m\nlan_cidrs: [192.168.1.0/24]\n"
    )
    cfg = load_config(f, environ={"ENVOYAGE_VPN_CIDRS": "10.99.0.0/24, 10.98.0.0/24"})
    assert (cfg.topology, cfg.tunnel_interface, cfg.tunnel_prefix, cfg.link_port) == (
        "a",
        "wg-home",
        "10.77.0.0/24",
        18444,
    )
    assert cfg.edge_addresses == ("0.0.0.0",) and cfg.edge_health_interval == 60.0
    assert cfg.lan_cidrs == ("192.168.1.0/24",) and cfg.vpn_cidrs == ("10.99.0.0/24", "10.98.0.0/24")
    assert cfg.link_key_path == Path("/var/lib/envoyage/edge-link.key")


def test_the_old_secret_hash_setting_is_a_named_error_that_says_what_to_run(tmp_path):
    f = tmp_path / "control.yaml"
    f.write_text("topology: a\nlink:\n  secret_hash_file: /var/lib/envoyage/edge-secret.hash\n")
    with pytest.raises(ConfigError, match="before edge-link version 2.*rerun the site playbook"):
        load_config(f)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("topology: b\n", "topology 'b' (control plane on the VPS) is not available yet"),
        ("topology: x\n", "'topology' must be 'a' (home + VPS) or 'c'"),
        ("tunnel:\n  prefix: 10.77.0.1/24\n", "'tunnel_prefix'"),
        ("tunnel:\n  interface: 'a very long interface name'\n", "'tunnel_interface'"),
        ("lan_cidrs: 12\n", "'lan_cidrs' must be a list"),
    ],
)
def test_bad_topology_settings_are_named(tmp_path, text, needle):
    f = tmp_path / "control.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(f, environ={})
    assert needle in str(exc.value)


def test_edge_config(tmp_path):
    from envoyage.config import load_edge_config

    f = tmp_path / "edge.yaml"
    f.write_text("edge_id: vps1\ntunnel_prefix: 10.77.0.0/24\nenvoy:\n  admin_port: 9902\n")
    cfg = load_edge_config(f, environ={"ENVOYAGE_EDGE_LINK_PORT": "18500"})
    assert cfg.link_target == "10.77.0.2:18500" and cfg.envoy_admin_port == 9902 and cfg.edge_id == "vps1"
    assert cfg.xds_socket_path == Path("/run/envoyage/xds.sock")
    assert cfg.envoy_admin_socket_path is None  # a port given (tests): 127.0.0.1 instead of the socket


def test_the_vps_envoy_admin_is_a_socket_in_the_run_dir_by_default(tmp_path):
    from envoyage.bootstrap import bootstrap
    from envoyage.config import load_edge_config

    f = tmp_path / "edge.yaml"
    f.write_text("edge_id: vps1\nrun_dir: /run/envoyage\n")
    cfg = load_edge_config(f, environ={})
    assert cfg.envoy_admin_port == 0 and cfg.envoy_admin_socket_path == Path("/run/envoyage/envoy-admin.sock")
    f.write_text("edge_id: vps1\nenvoy:\n  admin_socket: /run/x/admin.sock\n")
    assert load_edge_config(f, environ={}).envoy_admin_socket_path == Path("/run/x/admin.sock")
    admin = bootstrap(
        "vps1", "edge", xds_socket="/run/envoyage/xds.sock", admin_socket=str(cfg.envoy_admin_socket_path)
    )["admin"]
    assert admin == {"address": {"pipe": {"path": "/run/envoyage/envoy-admin.sock", "mode": 0o600}}}
