"""`envoyage status` right after a control-plane restart: Envoy's reconnect says what it
holds (SotW: the version per type; delta: every resource's version), so every type is
shown in sync at once, marked as reported at reconnect, with no change needed."""

from __future__ import annotations

import json

import pytest
from support.helpers import Envoy, http_get, run_cli, wait_for

from envoyage.model import parse_service
from envoyage.store.registry import Registry


def node_types(cp):
    st = json.loads(run_cli("status", "--json", socket_path=cp.socket, check=True).stdout)
    nodes = [n for n in st["nodes"] if n["connected"]]
    if not nodes:
        return None, st
    return nodes[0], st


@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_status_after_restart_is_in_sync_at_once(mode, workdir, control_process, upstreams):
    cp = control_process.start()
    up = upstreams("kept")
    run_cli("service", "add", "kept", "-d", "kept.example.test", "-u", up.address, socket_path=cp.socket, check=True)
    envoy = Envoy(workdir, "home-s", cp.xds_port, delta=mode == "delta").start()
    port = int(json.loads(run_cli("status", "--json", socket_path=cp.socket).stdout)["config"]["home_http_port"])
    try:
        wait_for(lambda: http_get(port, "kept.example.test") == (200, "kept"), 5, what="the service")
        cp.stop()
        cp.start()

        def synced():
            node, st = node_types(cp)
            if node is None:
                return False
            want = st["snapshots"].get(node["snapshot"]) or {}
            return want and all(node["types"].get(t, {}).get("last_acked_version") == v for t, v in want.items())

        wait_for(synced, 10, what="every type shown in sync after the restart")
        node, st = node_types(cp)
        types = {"cds", "eds", "lds", "rds"} | ({"vhds"} if mode == "delta" else set())
        assert set(st["snapshots"][node["snapshot"]]) == types
        # no change was made: what status knows, Envoy reported when it reconnected
        assert all(node["types"][t]["reported_at_reconnect"] for t in types), node["types"]
        text = run_cli("status", socket_path=cp.socket, check=True).stdout
        assert text.count("in sync, reported by Envoy at reconnect") == len(types), text
        assert "behind" not in text
        # the listener was never replaced: nothing was resent
        assert envoy.stats("listener_manager.listener_create_success") == {
            "listener_manager.listener_create_success": 1
        }
    finally:
        envoy.stop()


def test_status_after_restart_with_a_change_meanwhile_shows_the_resync(workdir, control_process, upstreams):
    """Delta: a resource that changed while the control plane was down is not 'in sync'
    at reconnect; it is sent, and status then shows the ACKed new version."""
    cp = control_process.start()
    a, b = upstreams("a"), upstreams("b")
    run_cli("service", "add", "moving", "-d", "moving.example.test", "-u", a.address, socket_path=cp.socket, check=True)
    envoy = Envoy(workdir, "home-m", cp.xds_port, delta=True).start()
    port = int(json.loads(run_cli("status", "--json", socket_path=cp.socket).stdout)["config"]["home_http_port"])
    try:
        wait_for(lambda: http_get(port, "moving.example.test") == (200, "a"), 5, what="the service on a")
        cp.stop()
        # the desired state changes while the control plane is down
        registry = Registry(control_process.state_dir / "envoyage.db")
        registry.update(parse_service({"name": "moving", "domains": ["moving.example.test"], "upstreams": [b.address]}))
        registry.close()
        cp.start()
        wait_for(lambda: http_get(port, "moving.example.test") == (200, "b"), 5, what="the change to arrive")
        node, st = node_types(cp)
        want = st["snapshots"][node["snapshot"]]
        assert node["types"]["eds"]["last_acked_version"] == want["eds"]
        assert not node["types"]["eds"]["reported_at_reconnect"]  # ACKed after a real response
    finally:
        envoy.stop()
