"""Bounded resources of the control plane: file descriptors do not grow with requests,
threads or streams."""

from __future__ import annotations

import os
import threading

from support.helpers import wait_for

from envoyage.cli.client import ControlClient


def db_descriptors(state_dir) -> int:
    """Open descriptors of this process on the registry's files (db, -wal, -shm)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(state_dir / "envoyage.db")):
            count += 1
    return count


def test_sqlite_connections_do_not_grow_with_requests_threads_and_streams(setup, upstreams):
    up = upstreams("fd")
    client = ControlClient(str(setup.socket))
    client.post("/services", {"name": "first", "domains": ["first.test"], "upstreams": [up.address]})
    before = db_descriptors(setup.config.state_dir)
    assert 1 <= before <= 3

    def worker(i):
        for j in range(15):
            c = ControlClient(str(setup.socket))
            c.post("/services", {"name": f"s{i}-{j}", "domains": [f"s{i}-{j}.test"], "upstreams": [up.address]})
            c.get("/status")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # more Envoys: their streams run in gRPC worker threads that touch the registry
    for n in range(3):
        setup.add_envoy(f"extra-{n}")
    wait_for(lambda: len(client.get("/services")["services"]) == 151, 10, what="all services stored")
    assert db_descriptors(setup.config.state_dir) == before
