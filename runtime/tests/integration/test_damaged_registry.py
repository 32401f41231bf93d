"""A damaged registry is never pushed as an empty configuration (issue 10, item 2):
clean stops checkpoint the WAL, backups are consistent, a registry older or smaller than
it last was is refused with a sentence saying what happened, and one unreadable row is
quarantined by name while the rest serves."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3

from support.helpers import Envoy, http_get, run_cli, wait_for


def count_rows(path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT COUNT(*) FROM services").fetchone()[0]


def status(cp):
    return json.loads(run_cli("status", "--json", socket_path=cp.socket, check=True).stdout)


def setup_three(cp, workdir, upstreams):
    up = upstreams("kept")
    for name in ("one", "two", "three"):
        run_cli("service", "add", name, "-d", f"{name}.test", "-u", up.address, socket_path=cp.socket, check=True)
    envoy = Envoy(workdir, "home-d", cp.xds_port, delta=False).start()
    port = status(cp)["config"]["home_http_port"]
    wait_for(
        lambda: all(http_get(port, f"{n}.test") == (200, "kept") for n in ("one", "two", "three")),
        10,
        what="three services",
    )
    return envoy, port


def test_truncated_registry_is_refused_and_envoy_keeps_serving_then_a_backup_restores(
    workdir, control_process, upstreams
):
    cp = control_process.start()
    db = cp.state_dir / "envoyage.db"
    envoy, port = setup_three(cp, workdir, upstreams)
    try:
        backup = workdir / "backup.db"
        out = run_cli("backup", str(backup), socket_path=cp.socket, check=True).stdout
        assert "3 services" in out and oct(backup.stat().st_mode & 0o777) == "0o600"
        assert count_rows(backup) == 3

        cp.stop()
        # a clean stop checkpoints: the database file alone holds everything
        wal = db.with_name("envoyage.db-wal")
        assert not wal.exists() or wal.stat().st_size == 0
        assert count_rows(db) == 3

        os.truncate(db, 0)  # the review: a database truncated to 0 bytes
        cp.start()
        st = status(cp)
        assert st["registry"]["problem"] and "holds 0 services" in st["registry"]["problem"]
        assert "last held 3" in st["registry"]["problem"]
        text = run_cli("status", socket_path=cp.socket, check=True).stdout
        assert "REGISTRY NOT SERVED" in text and "--accept-registry" in text
        # nothing was pushed: Envoy keeps serving its last configuration
        assert all(http_get(port, f"{n}.test") == (200, "kept") for n in ("one", "two", "three"))
        refused = run_cli("service", "add", "four", "-d", "four.test", "-u", "10.0.0.1:80", socket_path=cp.socket)
        assert refused.returncode == 1 and "no changes while the registry is not served" in refused.stderr

        # restore the backup: it is the last known state, so it is served as it is
        cp.stop()
        for suffix in ("-wal", "-shm"):
            db.with_name("envoyage.db" + suffix).unlink(missing_ok=True)
        db.write_bytes(backup.read_bytes())
        cp.start()
        assert status(cp)["registry"]["problem"] is None
        assert status(cp)["services"]["total"] == 3
    finally:
        envoy.stop()


def test_garbage_in_the_wal_is_detected(workdir, control_process, upstreams):
    cp = control_process.start()
    db = cp.state_dir / "envoyage.db"
    envoy, port = setup_three(cp, workdir, upstreams)
    try:
        cp.stop(sig=signal.SIGKILL)  # no checkpoint: the last writes live only in the WAL
        wal = db.with_name("envoyage.db-wal")
        assert wal.stat().st_size > 32
        with open(wal, "r+b") as fh:  # keep the header, garble every frame
            fh.seek(32)
            fh.write(os.urandom(wal.stat().st_size - 32))
        cp.start()
        problem = status(cp)["registry"]["problem"]
        assert problem and "damaged or older than it was" in problem
        assert all(http_get(port, f"{n}.test") == (200, "kept") for n in ("one", "two", "three"))
        # the operator accepts it as it is: then it is served (and says so in the log)
        cp.stop()
        cp.extra_args = ["--accept-registry"]
        cp.start()
        assert status(cp)["registry"]["problem"] is None
    finally:
        envoy.stop()


def test_one_unreadable_row_is_quarantined_by_name_and_the_rest_serves(workdir, control_process, upstreams):
    cp = control_process.start()
    db = cp.state_dir / "envoyage.db"
    envoy, port = setup_three(cp, workdir, upstreams)
    try:
        cp.stop()
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            conn.execute(
                'UPDATE services SET spec = \'{"name": "two", "domains": ["bad domain"]\' WHERE name = \'two\''
            )
        cp.start()
        services = {s["name"]: s for s in json.loads(run_cli("services", "--json", socket_path=cp.socket).stdout)}
        assert set(services) == {"one", "two", "three"}
        assert any("quarantined" in p for p in services["two"]["problems"]), services["two"]
        assert services["one"]["problems"] == [] and status(cp)["registry"]["problem"] is None
        wait_for(lambda: http_get(port, "two.test")[0] == 404, 10, what="the quarantined service to be dropped")
        assert http_get(port, "one.test") == (200, "kept") and http_get(port, "three.test") == (200, "kept")
    finally:
        envoy.stop()
