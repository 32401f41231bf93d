"""The edge under hostile clients (pure parts): the `edge.*` limits in control.yaml reach
the edge listener, the `envoy.*` limits in edge.yaml reach the VPS Envoy's bootstrap."""

import pytest
from envoy.extensions.filters.network.connection_limit.v3 import connection_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from envoyage.bootstrap import bootstrap
from envoyage.config import ConfigError, load_config, load_edge_config
from envoyage.control.plane import edge_limits
from envoyage.xds.translate import EdgeLimits, EdgeSettings, edge_listener, home_listener, tunnel_listener


def settings(limits=EdgeLimits()):
    return EdgeSettings(
        http_port=80,
        addresses=("0.0.0.0", "::"),
        access_log_path="/tmp/a.log",
        home_tunnel_address="10.88.0.2",
        home_tunnel_port=18080,
        limits=limits,
    )


def test_defaults_bound_the_edge_listener_without_cutting_long_requests():
    listener = edge_listener(settings())
    assert listener.per_connection_buffer_limit_bytes.value == 32_768
    first, hcm_filter = listener.filter_chains[0].filters
    assert first.name == "envoy.filters.network.connection_limit"
    limit = connection_limit_pb2.ConnectionLimit()
    first.typed_config.Unpack(limit)
    assert limit.max_connections.value == 5_000
    hcm = hcm_pb2.HttpConnectionManager()
    hcm_filter.typed_config.Unpack(hcm)
    assert hcm.request_headers_timeout.seconds == 10
    assert hcm.common_http_protocol_options.idle_timeout.seconds == 60
    assert hcm.stream_idle_timeout.seconds == 300
    h2 = hcm.http2_protocol_options
    assert (
        h2.max_concurrent_streams.value,
        h2.initial_stream_window_size.value,
        h2.initial_connection_window_size.value,
    ) == (100, 65_536, 1_048_576)
    # nothing that would cut a WebSocket or a download: no whole-request or connection age limit
    assert not hcm.HasField("request_timeout")
    assert not hcm.common_http_protocol_options.HasField("max_connection_duration")
    assert not hcm.common_http_protocol_options.HasField("max_stream_duration")


def test_home_listeners_get_no_edge_limits():
    for listener in (
        home_listener("0.0.0.0", 80, "/tmp/a.log"),
        tunnel_listener("10.88.0.2", 18080, "10.88.0.1", "/tmp/a.log"),
    ):
        hcm = hcm_pb2.HttpConnectionManager()
        listener.filter_chains[0].filters[-1].typed_config.Unpack(hcm)
        assert not hcm.HasField("request_headers_timeout"), listener.name
        assert all(f.name != "envoy.filters.network.connection_limit" for f in listener.filter_chains[0].filters)


def test_control_yaml_edge_limits_reach_the_listener(tmp_path):
    f = tmp_path / "control.yaml"
    f.write_text(
        "topology: a\nedge:\n  max_connections: 700\n  request_headers_timeout: 3s\n  idle_timeout: 2m\n"
        "  http2_max_concurrent_streams: 50\n"
    )
    cfg = load_config(f, environ={"ENVOYAGE_EDGE_STREAM_IDLE_TIMEOUT": "90s"})
    limits = edge_limits(cfg)
    assert limits == EdgeLimits(
        max_connections=700,
        request_headers_timeout_ms=3_000,
        idle_timeout_ms=120_000,
        stream_idle_timeout_ms=90_000,
        http2_max_concurrent_streams=50,
    )
    assert edge_limits(load_config(None, environ={})) == EdgeLimits()


@pytest.mark.parametrize(
    "text, named",
    [
        ("edge:\n  max_connections: 0\n", "edge_max_connections"),
        ("edge:\n  request_headers_timeout: 0s\n", "edge_request_headers_timeout"),
        ("edge:\n  http2_initial_stream_window: 100\n", "edge_http2_initial_stream_window"),
    ],
)
def test_an_edge_limit_out_of_range_is_refused_by_name(tmp_path, text, named):
    f = tmp_path / "control.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=named):
        load_config(f, environ={})


def test_edge_yaml_limits_become_the_vps_envoys_overload_manager(tmp_path):
    f = tmp_path / "edge.yaml"
    f.write_text("envoy:\n  max_heap_mb: 300\n")
    cfg = load_edge_config(f, environ={"ENVOYAGE_EDGE_ENVOY_MAX_CONNECTIONS": "2000"})
    assert (cfg.envoy_max_heap_mb, cfg.envoy_max_connections) == (300, 2000)
    assert load_edge_config(None, environ={}).envoy_max_heap_mb == 512
    data = bootstrap(
        "vps",
        "edge",
        xds_socket="/run/envoyage/xds.sock",
        max_heap_bytes=cfg.envoy_max_heap_mb << 20,
        max_connections=cfg.envoy_max_connections,
    )
    om = data["overload_manager"]
    monitors = {m["name"]: m["typed_config"] for m in om["resource_monitors"]}
    assert monitors["envoy.resource_monitors.fixed_heap"]["max_heap_size_bytes"] == 300 << 20
    assert (
        monitors["envoy.resource_monitors.global_downstream_max_connections"]["max_active_downstream_connections"]
        == 2000
    )
    actions = {a["name"] for a in om["actions"]}
    assert {
        "envoy.overload_actions.shrink_heap",
        "envoy.overload_actions.stop_accepting_connections",
        "envoy.overload_actions.stop_accepting_requests",
        "envoy.overload_actions.reduce_timeouts",
    } <= actions
    # the home Envoy's bootstrap is unchanged
    assert "overload_manager" not in bootstrap("home", "home")


def test_the_overload_manager_is_valid_for_envoy(tmp_path):
    import json
    import subprocess

    from support.helpers import ENVOY

    path = tmp_path / "edge.json"
    path.write_text(
        json.dumps(
            bootstrap(
                "vps", "edge", xds_socket=str(tmp_path / "xds.sock"), max_heap_bytes=512 << 20, max_connections=10_000
            )
        )
    )
    out = subprocess.run([ENVOY, "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
