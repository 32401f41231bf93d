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
