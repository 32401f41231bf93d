"""A control-plane restart under load drops nothing: Envoy keeps serving, then resyncs."""

from __future__ import annotations

import json
import threading
import time

import pytest
from support.helpers import Envoy, http_get, run_cli, wait_for

RATE = 100  # requests per second the client aims for
DURATION = 12.0  # seconds of traffic


@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_restart_under_load_has_zero_failed_requests(mode, workdir, control_process, upstreams):
    cp = control_process.start()
    up = upstreams("steady")
    run_cli(
        "service", "add", "steady", "-d", "steady.example.test", "-u", up.address, socket_path=cp.socket, check=True
    )
    envoy = Envoy(workdir, "home-r", cp.xds_port, delta=mode == "delta").start()
    port = int(json.loads(run_cli("status", "--json", socket_path=cp.socket).stdout)["config"]["home_http_port"])
    wait_for(lambda: http_get(port, "steady.example.test") == (200, "steady"), 5, what="steady service")

    results = {"ok": 0, "failed": []}
    stop = threading.Event()

    def client():
        interval = 1.0 / RATE
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                code, body = http_get(port, "steady.example.test", timeout=3)
                if code == 200 and body == "steady":
                    results["ok"] += 1
                else:
                    results["failed"].append((time.monotonic(), code))
            except OSError as exc:
                results["failed"].append((time.monotonic(), repr(exc)))
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    t = threading.Thread(target=client, daemon=True)
    started = time.monotonic()
    t.start()
    time.sleep(3)
    cp.stop()  # SIGTERM: the control plane goes away entirely
    time.sleep(1.5)  # Envoy runs without a control plane for a while
    cp.start()
    remaining = DURATION - (time.monotonic() - started)
    time.sleep(max(0.0, remaining))
    stop.set()
    t.join(10)
    elapsed = time.monotonic() - started

    assert elapsed >= 10
    assert results["failed"] == []
    assert results["ok"] / elapsed >= 50, f"only {results['ok']} requests in {elapsed:.1f}s"

    # Envoy reconnected to the new process, which still knows the service, and new
    # changes reach Envoy again.
    def reconnected():
        st = json.loads(run_cli("status", "--json", socket_path=cp.socket).stdout)
        return st["services"]["total"] == 1 and any(n["connected"] for n in st["nodes"])

    wait_for(reconnected, 10, what="Envoy to reconnect to the restarted control plane")
    more = upstreams("more")
    run_cli("service", "add", "more", "-d", "more.example.test", "-u", more.address, socket_path=cp.socket, check=True)
    wait_for(lambda: http_get(port, "more.example.test") == (200, "more"), 5, what="a change after restart")
    # The reconnect replaced nothing Envoy already had: one listener, created once.
    assert envoy.stats("listener_manager.listener_create_success") == {"listener_manager.listener_create_success": 1}
    envoy.stop()
