"""The service registry: SQLite through peewee, WAL mode, numbered schema migrations.

The registry holds desired state (services), what the control plane learned about
nodes, and an event log. It is the only store; a restart of the control plane
rebuilds everything else from it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import peewee as pw

from ..model import ServiceSpec, ServiceState, parse_service

db_proxy = pw.DatabaseProxy()


class BaseModel(pw.Model):
    class Meta:
        database = db_proxy


class Service(BaseModel):
    name = pw.CharField(unique=True)
    source = pw.CharField(default="manual")
    spec = pw.TextField()  # JSON of ServiceSpec.to_json()
    problems = pw.TextField(default="[]")  # JSON list of strings
    first_seen = pw.FloatField()
    updated_at = pw.FloatField()
    # since migration 2: where a discovered service comes from (tie-breaker), the
    # source's own problems (bad labels), and source details (containers, raw labels)
    origin = pw.CharField(default="")
    source_problems = pw.TextField(default="[]")
    detail = pw.TextField(default="{}")

    class Meta:
        table_name = "services"


class Node(BaseModel):
    node_id = pw.CharField(unique=True)
    role = pw.CharField()
    first_seen = pw.FloatField()
    last_seen = pw.FloatField()

    class Meta:
        table_name = "nodes"


class Event(BaseModel):
    ts = pw.FloatField(index=True)
    kind = pw.CharField()
    subject = pw.CharField(default="")
    message = pw.TextField(default="")

    class Meta:
        table_name = "events"


def _m1_initial(db: pw.Database) -> None:
    db.execute_sql(
        'CREATE TABLE IF NOT EXISTS "services" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT NULL, '
        '"source" VARCHAR(255) NOT NULL, "spec" TEXT NOT NULL, "problems" TEXT NOT NULL, '
        '"first_seen" REAL NOT NULL, "updated_at" REAL NOT NULL)')
    db.execute_sql('CREATE UNIQUE INDEX IF NOT EXISTS "service_name" ON "services" ("name")')
    db.create_tables([Node, Event])


def _m2_discovery(db: pw.Database) -> None:
    db.execute_sql("ALTER TABLE services ADD COLUMN origin VARCHAR(255) NOT NULL DEFAULT ''")
    db.execute_sql("ALTER TABLE services ADD COLUMN source_problems TEXT NOT NULL DEFAULT '[]'")
    db.execute_sql("ALTER TABLE services ADD COLUMN detail TEXT NOT NULL DEFAULT '{}'")


# Schema migrations, applied in order; the database's `user_version` is the index of
# the last one applied. Append only — never edit a migration that has shipped.
MIGRATIONS: list[Callable[[pw.Database], None]] = [_m1_initial, _m2_discovery]

EVENT_KEEP = 10_000


class RegistryError(RuntimeError):
    pass


class Registry:
    def __init__(self, path: str | os.PathLike, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = pw.SqliteDatabase(
            str(self.path),
            pragmas={"journal_mode": "wal", "synchronous": "normal", "foreign_keys": 1, "busy_timeout": 5000},
            check_same_thread=False,
        )
        self._lock = threading.RLock()
        db_proxy.initialize(self.db)
        try:
            self.db.connect(reuse_if_open=True)
        except pw.DatabaseError as exc:  # pragma: no cover - depends on disk state
            raise RegistryError(f"cannot open registry {self.path}: {exc}") from exc
        os.chmod(self.path, 0o600)
        self.migrate()

    # -- schema ---------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return self.db.execute_sql("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> None:
        with self._lock:
            current = self.schema_version
            if current > len(MIGRATIONS):
                raise RegistryError(
                    f"registry {self.path} has schema version {current}, newer than this envoyage "
                    f"({len(MIGRATIONS)}); upgrade envoyage instead of downgrading"
                )
            for index in range(current, len(MIGRATIONS)):
                with self.db.atomic():
                    MIGRATIONS[index](self.db)
                    self.db.execute_sql(f"PRAGMA user_version = {index + 1}")

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    # -- services -------------------------------------------------------------
    @staticmethod
    def _state(row: Service) -> ServiceState:
        raw = json.loads(row.spec)
        spec = parse_service(raw, name=row.name) if raw is not None else None
        return ServiceState(name=row.name, source=row.source, spec=spec, first_seen=row.first_seen,
                            updated_at=row.updated_at, problems=json.loads(row.problems),
                            source_problems=json.loads(row.source_problems), origin=row.origin,
                            detail=json.loads(row.detail))

    def services(self) -> list[ServiceState]:
        with self._lock:
            return [self._state(r) for r in Service.select().order_by(Service.first_seen, Service.name)]

    def get(self, name: str) -> ServiceState | None:
        with self._lock:
            row = Service.get_or_none(Service.name == name)
            return self._state(row) if row else None

    def add(self, spec: ServiceSpec) -> ServiceState:
        self.add_many([spec])
        return self.get(spec.name)  # type: ignore[return-value]

    def add_many(self, specs: list[ServiceSpec]) -> None:
        """Add services in one transaction: all or none (KeyError names the first taken name)."""
        now = self.clock()
        with self._lock, self.db.atomic():
            names = [s.name for s in specs]
            taken = {r.name for r in Service.select(Service.name).where(Service.name.in_(names))}
            for name in names:
                if name in taken:
                    raise KeyError(name)
            rows = [dict(name=s.name, source=s.source, spec=json.dumps(s.to_json()), problems="[]",
                         first_seen=now, updated_at=now) for s in specs]
            for i in range(0, len(rows), 200):
                Service.insert_many(rows[i:i + 200]).execute()
            events = [dict(ts=now, kind="service.added", subject=s.name, message=", ".join(s.domains)) for s in specs]
            for i in range(0, len(events), 200):
                Event.insert_many(events[i:i + 200]).execute()

    def update(self, spec: ServiceSpec) -> ServiceState:
        with self._lock, self.db.atomic():
            row = Service.get_or_none(Service.name == spec.name)
            if row is None:
                raise KeyError(spec.name)
            row.spec = json.dumps(spec.to_json())
            row.source = spec.source
            row.updated_at = self.clock()
            row.save()
            self._event("service.updated", spec.name, ", ".join(spec.domains))
        return self.get(spec.name)  # type: ignore[return-value]

    def remove(self, name: str) -> bool:
        with self._lock, self.db.atomic():
            removed = Service.delete().where(Service.name == name).execute() > 0
            if removed:
                self._event("service.removed", name, "")
        return removed

    def sync_source(self, source: str, desired: Iterable[ServiceState]) -> tuple[list[str], list[str]]:
        """Make the services owned by `source` exactly `desired` (one transaction).

        Existing rows keep their first_seen. A desired name that belongs to another
        source is skipped and reported. Returns (changed names, skipped names).
        """
        now = self.clock()
        changed: list[str] = []
        skipped: list[str] = []
        with self._lock, self.db.atomic():
            rows = {r.name: r for r in Service.select()}
            wanted = {d.name: d for d in desired}
            for name, row in rows.items():
                if row.source == source and name not in wanted:
                    row.delete_instance()
                    self._event("service.removed", name, f"gone from {source}")
                    changed.append(name)
            for name, want in wanted.items():
                spec_json = json.dumps(want.spec.to_json() if want.spec is not None else None)
                fields = dict(spec=spec_json, origin=want.origin, source_problems=json.dumps(want.source_problems),
                              detail=json.dumps(want.detail, sort_keys=True))
                row = rows.get(name)
                if row is None:
                    Service.create(name=name, source=source, problems="[]", first_seen=now, updated_at=now, **fields)
                    self._event("service.added", name, f"from {source}")
                    changed.append(name)
                elif row.source != source:
                    skipped.append(name)
                elif any(getattr(row, k) != v for k, v in fields.items()):
                    for k, v in fields.items():
                        setattr(row, k, v)
                    row.updated_at = now
                    row.save()
                    self._event("service.updated", name, f"from {source}")
                    changed.append(name)
        return changed, skipped

    def set_problems(self, problems: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
        """Store the problems of every service; returns the services whose problems changed."""
        changed = []
        with self._lock, self.db.atomic():
            for row in Service.select():
                new = problems.get(row.name, [])
                if json.loads(row.problems) != new:
                    row.problems = json.dumps(new)
                    row.save()
                    changed.append((row.name, new))
                    self._event("service.problems", row.name, "; ".join(new) or "resolved")
        return changed

    # -- nodes ----------------------------------------------------------------
    def touch_node(self, node_id: str, role: str) -> None:
        now = self.clock()
        with self._lock, self.db.atomic():
            row = Node.get_or_none(Node.node_id == node_id)
            if row is None:
                Node.create(node_id=node_id, role=role, first_seen=now, last_seen=now)
                self._event("node.registered", node_id, f"role {role}")
            else:
                row.role, row.last_seen = role, now
                row.save()

    def nodes(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(Node.select().order_by(Node.node_id).dicts())

    # -- events ---------------------------------------------------------------
    def _event(self, kind: str, subject: str, message: str) -> None:
        Event.create(ts=self.clock(), kind=kind, subject=subject, message=message)

    def event(self, kind: str, subject: str = "", message: str = "") -> None:
        with self._lock, self.db.atomic():
            self._event(kind, subject, message)
            total = Event.select().count()
            if total > EVENT_KEEP:
                cutoff = Event.select(Event.id).order_by(Event.id.desc()).offset(EVENT_KEEP).limit(1).scalar()
                Event.delete().where(Event.id <= cutoff).execute()

    def events(self, limit: int = 100, kinds: Iterable[str] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            q = Event.select().order_by(Event.id.desc()).limit(limit)
            if kinds:
                q = q.where(Event.kind.in_(list(kinds)))
            return [
                {"ts": e.ts, "kind": e.kind, "subject": e.subject, "message": e.message} for e in q
            ]
