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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

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
    id = pw.AutoField()  # peewee's implicit primary key, declared for the type checker
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
        '"first_seen" REAL NOT NULL, "updated_at" REAL NOT NULL)'
    )
    db.execute_sql('CREATE UNIQUE INDEX IF NOT EXISTS "service_name" ON "services" ("name")')
    db.create_tables([Node, Event])


def _m2_discovery(db: pw.Database) -> None:
    db.execute_sql("ALTER TABLE services ADD COLUMN origin VARCHAR(255) NOT NULL DEFAULT ''")
    db.execute_sql("ALTER TABLE services ADD COLUMN source_problems TEXT NOT NULL DEFAULT '[]'")
    db.execute_sql("ALTER TABLE services ADD COLUMN detail TEXT NOT NULL DEFAULT '{}'")


def _m3_generation(db: pw.Database) -> None:
    # a counter of committed writes, mirrored in a file beside the database: a registry
    # older than its last known state (a lost WAL, a truncated file, a stale restore) shows
    db.execute_sql("CREATE TABLE meta (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)")
    db.execute_sql("INSERT INTO meta (key, value) VALUES ('generation', '0')")


# Schema migrations, applied in order; the database's `user_version` is the index of
# the last one applied. Append only — never edit a migration that has shipped.
MIGRATIONS: list[Callable[[pw.Database], None]] = [_m1_initial, _m2_discovery, _m3_generation]

EVENT_KEEP = 10_000


class RegistryError(RuntimeError):
    pass


class Registry:
    def __init__(self, path: str | os.PathLike, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection for the whole process: every access holds self._lock, so no
        # thread needs its own (peewee's default, thread_safe=True, opens one per thread
        # and never closes it: gRPC workers and API requests leaked a descriptor each).
        self.db = pw.SqliteDatabase(
            str(self.path),
            pragmas={"journal_mode": "wal", "synchronous": "normal", "foreign_keys": 1, "busy_timeout": 5000},
            check_same_thread=False,
            thread_safe=False,
        )
        self._lock = threading.RLock()
        self._services: dict[str, ServiceState] | None = None
        self._ordered: list[ServiceState] | None = None  # services(), kept until a write
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
        """Checkpoint the WAL into the database file (so the file alone holds everything,
        e.g. for a copy taken while stopped), then close."""
        with self._lock:
            if not self.db.is_closed():
                try:
                    self.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                except pw.DatabaseError:  # pragma: no cover - a damaged file: close anyway
                    pass
                self.db.close()

    # -- integrity: generation, marker, backup ------------------------------------
    @property
    def marker_path(self) -> Path:
        return self.path.with_name(self.path.name + ".state")

    def generation(self) -> int:
        with self._lock:
            row = self.db.execute_sql("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            return int(row[0]) if row else 0

    def _write_marker(self) -> None:
        data = {"generation": self.generation(), "services": len(self._cache()), "at": self.clock()}
        tmp = self.marker_path.with_name(self.marker_path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, self.marker_path)

    def integrity_problem(self) -> str | None:
        """Why this registry must not be served as it is, or None: it is older or smaller
        than the state last written (the marker beside it)."""
        try:
            known = json.loads(self.marker_path.read_text())
            known_gen, known_count = int(known["generation"]), int(known["services"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return f"{self.marker_path} is unreadable; cannot tell whether {self.path} is complete"
        gen, count = self.generation(), len(self.services())
        if gen < known_gen or (gen == known_gen and count != known_count):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(known.get("at", 0)))
            return (
                f"the registry {self.path} holds {count} services at write generation {gen}, but it last held "
                f"{known_count} at generation {known_gen} ({when}): it is damaged or older than it was "
                "(a lost or corrupted -wal file, a truncated database, a stale copy)"
            )
        return None

    def accept_as_is(self) -> None:
        """The operator accepts the registry as it is (e.g. after restoring a backup)."""
        with self._lock:
            self._write_marker()

    def backup(self, dest: str | os.PathLike) -> dict[str, Any]:
        """A consistent copy through SQLite's backup API, written atomically, mode 0600."""
        dest = Path(dest)
        if not dest.is_absolute():
            raise ValueError(f"{dest}: give an absolute path")
        tmp = dest.with_name(f".{dest.name}.tmp")
        with self._lock:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.close(fd)
            import sqlite3

            target = sqlite3.connect(str(tmp))
            try:
                self.db.connection().backup(target)
                target.execute("PRAGMA journal_mode=DELETE")
            finally:
                target.close()
            os.replace(tmp, dest)
            return {
                "path": str(dest),
                "services": len(self._cache()),
                "generation": self.generation(),
                "bytes": dest.stat().st_size,
            }

    # -- services -------------------------------------------------------------
    # The registry keeps a read cache of every service (ServiceState is rebuilt only for
    # rows a write touched): reconciling 5,000 services must not re-read and re-parse
    # 5,000 rows. All writes go through this class, in this process.
    @staticmethod
    def _state(row: Service) -> ServiceState:
        try:
            raw = json.loads(row.spec)
            spec = parse_service(raw, name=row.name) if raw is not None else None
            return ServiceState(
                name=row.name,
                source=row.source,
                spec=spec,
                first_seen=row.first_seen,
                updated_at=row.updated_at,
                problems=json.loads(row.problems),
                source_problems=json.loads(row.source_problems),
                origin=row.origin,
                detail=json.loads(row.detail),
            )
        except (ValueError, TypeError, AttributeError) as exc:  # InputError is a ValueError
            # one unreadable or no longer valid row is quarantined by name; the rest serves
            try:
                problems = list(json.loads(row.problems))
            except (ValueError, TypeError):
                problems = []
            return ServiceState(
                name=str(row.name),
                source=str(row.source),
                spec=None,
                first_seen=float(row.first_seen or 0),
                updated_at=float(row.updated_at or 0),
                problems=problems,
                source_problems=[
                    f"the stored desired state cannot be used ({exc}); the service is "
                    "quarantined: update it (`envoyage service update`) or remove it"
                ],
            )

    def _cache(self) -> dict[str, ServiceState]:
        if self._services is None:
            self._services = {r.name: self._state(r) for r in Service.select()}
        return self._services

    def _refresh(self, names: Iterable[str]) -> None:
        cache = self._cache()
        names = list(names)
        if names:
            self._ordered = None
        for name in names:
            cache.pop(name, None)
        for i in range(0, len(names), 500):
            for row in Service.select().where(Service.name.in_(names[i : i + 500])):
                cache[row.name] = self._state(row)

    def _write(self, names_fn, marker: bool = True):
        """Run a write in a transaction, then refresh the cache for the names it returns
        and record the new generation beside the database (`marker=False`: the caller
        does, once its cache is complete)."""
        try:
            with self.db.atomic():
                names = names_fn()
                self.db.execute_sql("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        except Exception:
            self._services = self._ordered = None  # the transaction rolled back: reload on next read
            raise
        self._refresh(names)
        if marker:
            self._write_marker()

    def services(self) -> list[ServiceState]:
        with self._lock:
            if self._ordered is None:
                self._ordered = sorted(self._cache().values(), key=lambda s: (s.first_seen, s.name))
            return list(self._ordered)

    def get(self, name: str) -> ServiceState | None:
        with self._lock:
            return self._cache().get(name)

    def add(self, spec: ServiceSpec) -> ServiceState:
        self.add_many([spec])
        return self.get(spec.name)  # type: ignore[return-value]

    def add_many(self, specs: list[ServiceSpec]) -> None:
        """Add services in one transaction: all or none (KeyError names the first taken name)."""
        now = self.clock()

        def write():
            for s in specs:
                if s.name in self._cache():
                    raise KeyError(s.name)
            # plain executemany: peewee's query builder costs ~0.1 ms a row, too much for 5,000
            conn = self.db.connection()
            conn.executemany(
                "INSERT INTO services (name, source, spec, problems, first_seen, updated_at, origin,"
                " source_problems, detail) VALUES (?, ?, ?, '[]', ?, ?, '', '[]', '{}')",
                [(s.name, s.source, json.dumps(s.to_json()), now, now) for s in specs],
            )
            conn.executemany(
                "INSERT INTO events (ts, kind, subject, message) VALUES (?, 'service.added', ?, ?)",
                [(now, s.name, ", ".join(s.domains)) for s in specs],
            )
            return []  # the cache is filled below from what was written, not re-read

        with self._lock:
            self._write(write, marker=False)
            cache = self._cache()
            for s in specs:
                cache[s.name] = ServiceState.of(s, now)
            self._ordered = None
            self._write_marker()  # with the count that includes them

    def update(self, spec: ServiceSpec) -> ServiceState:
        def write():
            row = Service.get_or_none(Service.name == spec.name)
            if row is None:
                raise KeyError(spec.name)
            row.spec = json.dumps(spec.to_json())
            row.source = spec.source
            row.updated_at = self.clock()
            row.save()
            self._event("service.updated", spec.name, ", ".join(spec.domains))
            return [spec.name]

        with self._lock:
            self._write(write)
            return self._cache()[spec.name]

    def remove(self, name: str) -> bool:
        def write():
            if Service.delete().where(Service.name == name).execute() > 0:
                self._event("service.removed", name, "")
            return [name]

        with self._lock:
            existed = name in self._cache()
            self._write(write)
            return existed

    def sync_source(self, source: str, desired: Iterable[ServiceState]) -> tuple[list[str], list[str]]:
        """Make the services owned by `source` exactly `desired` (one transaction).

        Existing rows keep their first_seen. A desired name that belongs to another
        source is skipped and reported. Returns (changed names, skipped names).
        """
        now = self.clock()
        changed: list[str] = []
        skipped: list[str] = []

        def write():
            cache = self._cache()
            wanted = {d.name: d for d in desired}
            for name, old in list(cache.items()):
                if old.source == source and name not in wanted:
                    Service.delete().where(Service.name == name).execute()
                    self._event("service.removed", name, f"gone from {source}")
                    changed.append(name)
            for name, want in wanted.items():
                have = cache.get(name)
                if have is not None and have.source != source:
                    skipped.append(name)
                    continue
                if have is not None and (have.spec, have.origin, have.source_problems, have.detail) == (
                    want.spec,
                    want.origin,
                    want.source_problems,
                    want.detail,
                ):
                    continue
                fields = dict(
                    spec=json.dumps(want.spec.to_json() if want.spec is not None else None),
                    origin=want.origin,
                    source_problems=json.dumps(want.source_problems),
                    detail=json.dumps(want.detail, sort_keys=True),
                    updated_at=now,
                )
                if have is None:
                    Service.create(name=name, source=source, problems="[]", first_seen=now, **fields)
                    self._event("service.added", name, f"from {source}")
                else:
                    Service.update(**fields).where(Service.name == name).execute()
                    self._event("service.updated", name, f"from {source}")
                changed.append(name)
            return changed

        with self._lock:
            self._write(write)
        return changed, skipped

    def set_problems(self, problems: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
        """Store the problems of every service; returns the services whose problems changed."""

        def write():
            for name, new in changed:
                Service.update(problems=json.dumps(new)).where(Service.name == name).execute()
                self._event("service.problems", name, "; ".join(new) or "resolved")
            return [name for name, _new in changed]

        with self._lock:
            changed = [
                (name, problems.get(name, []))
                for name, state in self._cache().items()
                if state.problems != problems.get(name, [])
            ]
            if changed:  # no write (and no new generation) when nothing changed
                self._write(write)
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
            return cast("list[dict[str, Any]]", list(Node.select().order_by(Node.node_id).dicts()))

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
            return [{"ts": e.ts, "kind": e.kind, "subject": e.subject, "message": e.message} for e in q]
