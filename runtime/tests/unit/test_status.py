"""What `GET /v1/status` returns and `envoyage status` prints: the typed status
(envoyage.status) serialized in one place, with the JSON shape docs/control-api.md
documents, read back by the CLI."""

from __future__ import annotations

import json

import pytest
from support.helpers import make_config

from envoyage.cli.main import _print_status
from envoyage.control.api import create_app
from envoyage.control.plane import ControlPlane, PlaneHandle
from envoyage.status import (
    DiscoveryStatus,
    DnsStatus,
    EdgeEnvoyNode,
    EdgeEnvoyType,
    EdgeLinkStatus,
    LinkRefusal,
    NodeStatus,
    ReconcileStatus,
    StatusReport,
    TunnelStatus,
    TypeStatus,
)

# the keys of each object, as docs/control-api.md documents them (and the API sent them
# before the status was typed): a client that reads one of these keeps working
TOP = {
    "version",
    "started_at",
    "config",
    "services",
    "snapshots",
    "last_reconcile",
    "registry",
    "xds",
    "nodes",
    "discovery",
    "known_nodes",
    "topology",
    "tunnel",
    "edge",
    "dns",
    "problems",
}
NODE = {"node_id", "role", "delta", "snapshot", "connected", "connected_since", "disconnected_at", "streams", "types"}
TYPE = {
    "last_sent_version",
    "last_sent_at",
    "responses_sent",
    "last_acked_version",
    "last_acked_at",
    "last_nack_version",
    "last_nack_message",
    "last_nack_at",
    "nacks",
    "reported_at_reconnect",
    "reported_at",
}
TUNNEL = {"interface", "peers", "problem", "handshake_age", "rx_bytes", "tx_bytes", "endpoint", "rtt_ms"}
EDGE = {
    "connected",
    "edge_id",
    "peer",
    "connected_since",
    "disconnected_at",
    "software_version",
    "sent_version",
    "sent_at",
    "applied_version",
    "applied_at",
    "apply_error",
    "apply_problems",
    "rtt_ms",
    "envoy",
    "refused",
    "last_refused",
    "edge_refused_home",
    "want_version",
    "in_sync",
    "key_problem",
}
DNS = {
    "last_apply_at",
    "last_apply_ms",
    "applies",
    "error",
    "error_since",
    "last_change",
    "entries",
    "in_sync",
    "include_file",
    "answer",
    "answer6",
    "foreign",
}
DISCOVERY = {
    "enabled",
    "host",
    "connected",
    "last_error",
    "last_resync",
    "resyncs",
    "events_seen",
    "containers",
    "mesh",
    "scope",
}


def _full_report() -> StatusReport:
    """A report with every part filled in (topology A, DNS, Docker, one Envoy)."""
    return StatusReport(
        version="1.2.3",
        started_at=1000.0,
        config={"topology": "a"},
        snapshots={"home": {"cds": "c1", "lds": "l1"}, "edge": {"cds": "e1"}},
        last_reconcile=ReconcileStatus(ok=True, reason="startup", at=1001.0, changed=True, served=2, build_ms=1.5),
        nodes=[
            NodeStatus(
                node_id="home-1",
                role="home",
                snapshot="home",
                connected_since=1000.5,
                streams=1,
                types={
                    "cds": TypeStatus(last_sent_version="c1", last_acked_version="c1", reported_at_reconnect=True),
                    "lds": TypeStatus(
                        last_sent_version="l1",
                        last_acked_version="l0",
                        last_nack_version="l1",
                        last_nack_message="bad listener",
                        last_nack_at=1002.0,
                        nacks=1,
                    ),
                },
            )
        ],
        discovery={"docker": DiscoveryStatus(host="unix:///run/docker.sock", connected=True, containers=3)},
        topology="a",
        tunnel=TunnelStatus(
            interface="envoyage0",
            peers={"peer1": {"handshake_age": 12.0}},
            handshake_age=12.0,
            rx_bytes=2048,
            tx_bytes=1024,
            endpoint="203.0.113.5:51820",
            rtt_ms=20.5,
        ),
        edge=EdgeLinkStatus(
            connected=True,
            edge_id="vps",
            peer="ipv4:10.88.0.2:40000",
            connected_since=1000.8,
            applied_version="e1",
            want_version="e1",
            in_sync=True,
            envoy=[
                EdgeEnvoyNode(
                    node_id="vps",
                    connected=True,
                    types={"cds": EdgeEnvoyType(acked_version="e0", nacked_version="e1", error="bad cluster")},
                )
            ],
            last_refused=LinkRefusal(at=999.0, peer="ipv4:10.88.0.9:1", why="not the VPS's tunnel address"),
        ),
        dns=DnsStatus(entries=2, in_sync=True, answer="192.168.1.10", last_apply_at=1001.0, last_apply_ms=3.25),
        problems=["tunnel: something"],
    )


def test_every_status_object_has_the_documented_keys():
    doc = _full_report().to_json()
    assert set(doc) == TOP
    assert set(doc["nodes"][0]) == NODE and set(doc["nodes"][0]["types"]["lds"]) == TYPE
    assert set(doc["tunnel"]) == TUNNEL and set(doc["edge"]) == EDGE and set(doc["dns"]) == DNS
    assert set(doc["discovery"]["docker"]) == DISCOVERY
    assert doc["edge"]["envoy"] == [
        {
            "node_id": "vps",
            "connected": True,
            "types": {"cds": {"acked_version": "e0", "nacked_version": "e1", "error": "bad cluster"}},
        }
    ]
    assert doc["edge"]["last_refused"] == {
        "at": 999.0,
        "peer": "ipv4:10.88.0.9:1",
        "why": "not the VPS's tunnel address",
    }
    assert doc["edge"]["edge_refused_home"] is None
    assert doc["services"] == {"total": 0, "with_problems": 0}
    assert doc["xds"] == {"streams": 0, "max_streams": 0, "refused": 0, "evicted": 0}
    assert doc["last_reconcile"]["ok"] and doc["last_reconcile"]["build_ms"] == 1.5
    json.dumps(doc)  # plain JSON all the way down


def test_the_json_reads_back_as_the_same_objects():
    report = _full_report()
    back = StatusReport.from_json(json.loads(json.dumps(report.to_json())))
    assert back == report
    assert isinstance(back.edge.envoy[0].types["cds"], EdgeEnvoyType)
    assert isinstance(back.nodes[0].types["lds"], TypeStatus)
    assert isinstance(back.discovery["docker"], DiscoveryStatus)


def test_a_reader_takes_json_with_fields_missing_or_unknown_as_another_version_sends_it():
    """An older control plane leaves fields out, a newer one adds some: `envoyage status`
    still reads it (defaults for what is missing, the rest ignored)."""
    back = StatusReport.from_json(
        {
            "version": "0.9",
            "nodes": [{"node_id": "n1", "types": {"cds": {"last_acked_version": "v1", "from_the_future": 1}}}],
            "edge": {"connected": False, "envoy": []},
            "tunnel": None,
            "something_new": {"x": 1},
        }
    )
    assert back.version == "0.9" and back.tunnel is None and back.dns is None
    assert back.nodes[0].types["cds"].last_acked_version == "v1" and back.nodes[0].types["cds"].nacks == 0
    assert back.edge == EdgeLinkStatus()
    with pytest.raises(ValueError, match="StatusReport: expected a JSON object"):
        StatusReport.from_json(["not", "an", "object"])  # type: ignore[arg-type]


def test_envoyage_status_prints_every_part_from_the_json(capsys):
    _print_status(StatusReport.from_json(_full_report().to_json()))
    out = capsys.readouterr().out
    assert "services: 0 (0 with problems)" in out
    assert "snapshot home: cds=c1 lds=l1" in out
    assert "discovery docker: connected to unix:///run/docker.sock, 3 labelled containers" in out
    assert (
        "tunnel envoyage0: last handshake 12s ago, 2,048 bytes in, 1,024 bytes out, endpoint 203.0.113.5:51820" in out
    )
    assert ", round trip 20.5 ms" in out
    assert "edge vps: connected" in out and "resource set e1 in sync" in out
    assert "    cds: acked e0, last NACK e1: bad cluster" in out
    assert "dns: 2 zones answered with 192.168.1.10, Unbound in sync" in out and "in 3.2 ms" in out
    assert "envoy home-1 (role home, sotw): connected" in out
    assert "  cds: acked c1 (in sync, reported by Envoy at reconnect), sent c1" in out
    assert "  lds: acked l0 (behind), sent l1" in out and "for l1: bad listener" in out
    assert "PROBLEM: tunnel: something" in out
    assert "REFUSED" not in out and "NOT SERVED" not in out


def test_envoyage_status_names_a_refused_snapshot_and_a_registry_not_served(capsys):
    report = StatusReport(
        last_reconcile=ReconcileStatus(ok=False, reason="x", error="registry not served: smaller"),
        edge=EdgeLinkStatus(connected=False),
    )
    report.registry.problem = "it is smaller than it was"
    _print_status(StatusReport.from_json(report.to_json()))
    out = capsys.readouterr().out
    assert "REGISTRY NOT SERVED: it is smaller than it was." in out
    assert "LAST SNAPSHOT REFUSED: registry not served: smaller" in out
    assert "edge: NOT CONNECTED (last seen never)" in out and "envoys: none connected yet" in out


def test_get_status_is_the_plane_s_report_as_json(workdir):
    plane = ControlPlane(make_config(workdir))
    try:
        plane.reconcile(reason="startup")
        resp = create_app(plane).test_client().get("/v1/status")
        assert resp.status_code == 200
        doc = resp.get_json()
        assert set(doc) == TOP and doc["topology"] == "c"
        assert doc["tunnel"] is None and doc["edge"] is None and doc["dns"] is None and doc["discovery"] == {}
        assert doc["last_reconcile"]["ok"] and doc["last_reconcile"]["reason"] == "startup"
        assert StatusReport.from_json(doc).registry.path == str(plane.registry.path)
    finally:
        plane.registry.close()


def test_the_plane_takes_its_collaborators_through_its_constructor(workdir):
    from envoyage.control.tunnel import TunnelMonitor
    from envoyage.link.server import EdgeLinkServer, LinkListener
    from envoyage.xds.cache import SnapshotCache

    handle = PlaneHandle()
    with pytest.raises(RuntimeError, match="before its ControlPlane was constructed"):
        handle.sync_discovered("docker", [])
    cache = SnapshotCache()
    link = EdgeLinkServer(cache, "edge", workdir / "no.key", on_verdict=handle.edge_verdict)
    listener = LinkListener(link, "127.0.0.1", 1)
    tunnel = TunnelMonitor("wg-test", reader=lambda interface: {}, rtt=lambda: link.status().rtt_ms)
    config = make_config(workdir / "a", topology="a")
    with pytest.raises(ValueError, match="must serve the control plane's snapshot cache"):
        ControlPlane(config, edge_link=link)
    with pytest.raises(ValueError, match="an edge link needs topology 'a'"):
        ControlPlane(make_config(workdir / "c"), cache=cache, edge_link=link)
    plane = ControlPlane(config, cache=cache, handle=handle, edge_link=link, link_listener=listener, tunnel=tunnel)
    try:
        assert handle.sync_discovered("docker", []) is False  # bound: the plane answers (nothing discovered)
        report = plane.status_report()
        assert report.edge is not None and not report.edge.connected
        assert report.tunnel is not None and report.tunnel.interface == "wg-test"
        problems = plane.problems()
        assert "edge link: not listening yet" in problems
        assert any(p.startswith("edge: no edge connected") for p in problems)
        with pytest.raises(RuntimeError, match="bound to another control plane"):
            ControlPlane(config, cache=cache, handle=handle, edge_link=link)
    finally:
        plane.registry.close()
        link.close()


def test_the_daemon_builds_the_plane_with_topology_a_s_parts_and_nothing_runs_yet(workdir):
    from envoyage.control.daemon import ControlDaemon

    d = ControlDaemon(make_config(workdir, topology="a"))
    try:
        assert d.plane.edge_link is d.link_listener.servicer and d.plane.link_listener is d.link_listener
        assert d.plane.edge_link.cache is d.plane.cache and d.plane.tunnel is not None
        assert d.plane.dns is None and d.plane.discovery == {}
        assert not d.link_listener._thread.is_alive()  # started by start(), not by the constructor
    finally:
        d.stop()
