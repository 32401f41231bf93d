"""No warming stall: a burst of add/remove changes never leaves Envoy waiting.

Envoy keeps a new cluster warming until its endpoints arrive, and holds its CDS ACK
meanwhile. A cluster removed milliseconds after it was sent is no longer in the
snapshot when Envoy asks for its endpoints; unless the server answers that request
anyway (with an empty assignment), Envoy waits for its 15 s initial fetch timeout and
every new service answers 503 until then (envoyproxy/envoy#9934)."""

from __future__ import annotations

import time

from support.helpers import http_get, wait_for


def test_burst_of_add_remove_changes_then_the_last_service_answers_within_1s(setup, upstreams):
    up = upstreams("burst")
    plane = setup.plane

    def svc(name):
        return {"name": name, "domains": [f"{name}.example.test"], "upstreams": [up.address], "health_check": "off"}

    plane.add_service(svc("steady"))
    wait_for(lambda: http_get(setup.http_port, "steady.example.test") == (200, "burst"), 5, what="steady")
    for i in range(100):  # 200 changes: every cluster is gone again milliseconds after it was sent
        plane.add_service(svc(f"flash-{i}"))
        plane.remove_service(f"flash-{i}")
    plane.add_service(svc("last"))
    added = time.monotonic()
    wait_for(
        lambda: http_get(setup.http_port, "last.example.test", timeout=1) == (200, "burst"),
        1.0,
        interval=0.01,
        what="the last-added service to answer 200 within 1 s of the burst",
    )
    took = time.monotonic() - added
    assert http_get(setup.http_port, "steady.example.test") == (200, "burst")
    assert http_get(setup.http_port, "flash-99.example.test")[0] == 404
    # Envoy never ran into its initial fetch timeout
    assert "initial fetch timed out" not in setup.envoy.log_path.read_text()
    print(f"last service live {took * 1000:.0f} ms after the burst")
