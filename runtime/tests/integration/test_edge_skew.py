"""Version skew on the edge link, on loopback: a newer home sends a resource type an
older edge does not know. The real `envoyage edge` process skips that type, serves the
rest to its real Envoy, and home's status names what was skipped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request

import pytest
from support.helpers import ENVOY, ENVOYAGE, free_port, make_config, wait_for

from envoyage.control.plane import ControlPlane
from envoyage.link import secret
from envoyage.link import server as link_server
from envoyage.xds.cache import SnapshotCache

pytestmark = pytest.mark.integration

FUTURE = "type.googleapis.com/envoyage.link.v9.OfflinePage"


def test_an_edge_skips_a_type_it_does_not_know_and_serves_the_rest(workdir, monkeypatch):
    real = link_server.resource_set

    def newer_home(snap):
        rs = real(snap)
        rs.resources.add(type_url=FUTURE, name="app", body=b"\x0a\x05hello")
        return rs

    monkeypatch.setattr(link_server, "resource_set", newer_home)
    edge_port, admin_port, link_port = free_port(), free_port(), free_port()
    edge_secret = secret.create(workdir / "edge-link.key", workdir / "edge.secret")
    cache = SnapshotCache()
    servicer = link_server.EdgeLinkServer(cache, "edge", workdir / "edge-link.key")
    listener = link_server.LinkListener(servicer, "127.0.0.2", link_port)
    plane = ControlPlane(
        make_config(
            workdir / "home",
            topology="a",
            tunnel_prefix="127.0.0.0/24",
            edge_http_port=edge_port,
            edge_addresses=("127.0.0.1",),
        ),
        cache=cache,
        edge_link=servicer,
        link_listener=listener,
    )
    listener.start()
    (workdir / "edge.yaml").write_text(
        json.dumps(
            {
                "edge_id": "vps",
                "run_dir": str(workdir / "vps-run"),
                "log_dir": str(workdir / "vps-log"),
                "tunnel_prefix": "127.0.0.0/24",
                "link_address": "127.0.0.2",
                "link_port": link_port,
                "secret_file": str(workdir / "edge.secret"),
                "envoy": {
                    "binary": ENVOY,
                    "admin_port": admin_port,
                    "node_id": "vps",
                    "base_id": admin_port,
                    "concurrency": 1,
                },
            }
        )
    )
    log = open(workdir / "edge.log", "ab")
    edge = subprocess.Popen(
        [ENVOYAGE, "-c", str(workdir / "edge.yaml"), "edge"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        plane.add_service(
            {"name": "app", "domains": ["app.example.test"], "upstreams": ["127.0.0.1:9"], "health_check": "off"}
        )
        st = wait_for(
            lambda: (lambda s: s if s.in_sync else None)(servicer.status()),
            timeout=30,
            what="the edge to take the set",
        )
        (problem,) = st.apply_problems
        assert FUTURE in problem and "does not know" in problem and st.apply_error == ""

        def clusters():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/clusters?format=json", timeout=3) as r:
                    return {c["name"] for c in json.load(r)["cluster_statuses"]}
            except OSError:
                return set()

        wait_for(lambda: "svc_app" in clusters(), timeout=20, what="the VPS Envoy to have the service")
        shown = [p for p in plane.problems() if FUTURE in p]
        assert (
            shown and shown[0].startswith("edge: the edge 'vps' took resource set") and "upgrade the edge" in shown[0]
        )
        assert edge_secret not in (workdir / "edge.log").read_text()
    finally:
        os.killpg(edge.pid, signal.SIGTERM)
        edge.wait(20)
        log.close()
        listener.stop()
        plane.registry.close()
