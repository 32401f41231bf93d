"""The registry persists desired state and survives reopening (a restart)."""

import sqlite3

import pytest

from envoyage.model import parse_service
from envoyage.store.registry import MIGRATIONS, Registry, RegistryError


def spec(name="web"):
    return parse_service({"name": name, "domains": [f"{name}.example.com"], "upstreams": ["10.0.0.1:80"]})


def test_add_update_remove_and_reopen(tmp_path):
    db = tmp_path / "envoyage.db"
    r = Registry(db)
    r.add(spec("a"))
    r.add(spec("b"))
    r.update(parse_service({"name": "a", "domains": ["a2.example.com"], "upstreams": ["10.0.0.2:80"]}))
    assert r.remove("b") and not r.remove("b")
    r.set_problems({"a": ["something"]})
    r.close()
    again = Registry(db)
    (a,) = again.services()
    assert a.spec.domains == ("a2.example.com",) and a.problems == ["something"]
    kinds = [e["kind"] for e in again.events()]
    assert kinds[:4] == ["service.problems", "service.removed", "service.updated", "service.added"]
    assert (db.stat().st_mode & 0o777) == 0o600


def test_wal_mode_and_schema_version(tmp_path):
    r = Registry(tmp_path / "e.db")
    assert r.db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert r.schema_version == len(MIGRATIONS)


def test_duplicate_name_refused(tmp_path):
    r = Registry(tmp_path / "e.db")
    r.add(spec())
    with pytest.raises(KeyError):
        r.add(spec())


def test_newer_schema_refused(tmp_path):
    db = tmp_path / "e.db"
    Registry(db).close()
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    con.close()
    with pytest.raises(RegistryError, match="newer than this envoyage"):
        Registry(db)


def test_sync_source_adds_updates_removes_and_keeps_first_seen(tmp_path):
    from envoyage.model import ServiceState

    clock = iter(range(100, 200)).__next__
    r = Registry(tmp_path / "e.db", clock=lambda: float(clock()))
    r.add(spec("manual"))

    def d(name, port=80, problems=()):
        s = parse_service(
            {"name": name, "domains": [f"{name}.example.com"], "upstreams": [f"10.0.0.1:{port}"], "source": "docker"}
        )
        return ServiceState.of(s, source_problems=list(problems), origin=f"container:{name}")

    changed, skipped = r.sync_source("docker", [d("a"), d("b"), d("manual")])
    assert sorted(changed) == ["a", "b"] and skipped == ["manual"]
    first = {s.name: s.first_seen for s in r.services()}
    changed, _ = r.sync_source("docker", [d("a", port=81), d("b")])
    assert changed == ["a"]
    changed, _ = r.sync_source("docker", [d("a", port=81)])
    assert changed == ["b"]
    changed, _ = r.sync_source("docker", [d("a", port=81)])
    assert changed == []
    states = {s.name: s for s in r.services()}
    assert set(states) == {"manual", "a"} and states["a"].first_seen == first["a"]
    assert states["manual"].source == "manual"
    # a not-servable discovered service is stored with its problems
    bad = ServiceState(
        name="c",
        source="docker",
        spec=None,
        first_seen=0,
        updated_at=0,
        source_problems=["envoyage.port: 'x' is not a port number"],
        detail={"domains": ["c.test"]},
    )
    r.sync_source("docker", [d("a", port=81), bad])
    c = r.get("c")
    assert c.spec is None and c.source_problems == ["envoyage.port: 'x' is not a port number"]
    assert c.to_json()["domains"] == ["c.test"]


def test_migration_from_schema_1_keeps_services(tmp_path):
    import json as _json

    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript(
        'CREATE TABLE services ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT NULL, '
        '"source" VARCHAR(255) NOT NULL, "spec" TEXT NOT NULL, "problems" TEXT NOT NULL, '
        '"first_seen" REAL NOT NULL, "updated_at" REAL NOT NULL);'
        "CREATE TABLE nodes (id INTEGER PRIMARY KEY, node_id VARCHAR(255) NOT NULL UNIQUE, role VARCHAR(255) NOT NULL,"
        " first_seen REAL NOT NULL, last_seen REAL NOT NULL);"
        "CREATE TABLE events (id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind VARCHAR(255) NOT NULL,"
        " subject VARCHAR(255) NOT NULL, message TEXT NOT NULL);"
        "PRAGMA user_version = 1;"
    )
    con.execute(
        "INSERT INTO services (name, source, spec, problems, first_seen, updated_at) VALUES (?,?,?,?,?,?)",
        ("old", "manual", _json.dumps(spec("old").to_json()), "[]", 1.0, 1.0),
    )
    con.commit()
    con.close()
    r = Registry(db)
    assert r.schema_version == len(MIGRATIONS)
    (old,) = r.services()
    assert old.spec == spec("old") and old.origin == "" and old.source_problems == []
