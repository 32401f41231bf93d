"""`envoyage edge`: the VPS side.

It dials the control plane's edge link across the tunnel (envoyage.link.client), keeps
the last good resource set, and is the VPS Envoy's only xDS source, on a Unix socket,
through the project's own ADS server. It also starts and supervises that Envoy
(docs/architecture.md, "Who owns what": one supervisor on the VPS). What the Envoy ACKs
or NACKs goes back over the link.

The last good set lives in memory (`MemoryStore`); the encrypted on-disk cache keyed
from the edge secret, which lets the edge serve after a reboot while home is down, is a
later store with the same two methods.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import threading
import time
from typing import Any

from ..bootstrap import bootstrap
from ..config import EdgeConfig
from ..link.client import LinkClient
from ..link.secret import SecretError, read_secret
from ..link.v1 import link_pb2
from ..process import (
    limit_malloc_arenas,
    own_directory,
    prepare_socket,
    socket_server,
    stop_within,
    wait_for_termination,
)
from ..xds import types as T
from ..xds.cache import SnapshotCache
from ..xds.server import AdsServer, serve
from ..xds.snapshot import InconsistentSnapshot, Snapshot
from ..xds.status import BaseCallbacks, StatusTracker

log = logging.getLogger("envoyage.edge")

ROLE = "edge"


class ResourceSetError(ValueError):
    pass


def snapshot_from(rs: link_pb2.ResourceSet, previous: Snapshot | None, problems: list[str] | None = None) -> Snapshot:
    """The resource set as a snapshot for the local ADS server (refusing undecodable
    resources with a sentence). Resources of a type this edge does not know (a newer home
    during an upgrade) are skipped, one sentence per type added to `problems`; the rest
    is served (a resource that refers to a skipped one still makes the set inconsistent)."""
    by_type: dict[str, list] = {}
    serialized: dict[str, dict[str, bytes]] = {}
    unknown: dict[str, list[str]] = {}
    for res in rs.resources:
        cls = T.MESSAGE_CLASSES.get(res.type_url)
        if cls is None:
            unknown.setdefault(res.type_url[:200], []).append(res.name[:100])
            continue
        before = previous.get(res.type_url).get(res.name) if previous is not None else None
        if before is not None and before.data == res.body:
            msg = before.message  # unchanged: one change at 1,000 services decodes one resource
        else:
            msg = cls()
            try:
                msg.ParseFromString(res.body)
            except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
                raise ResourceSetError(
                    f"resource {res.name!r} ({T.short(res.type_url)}) cannot be decoded: {exc}"
                ) from None
        name = msg.cluster_name if res.type_url == T.ENDPOINT else msg.name
        if name != res.name:
            raise ResourceSetError(
                f"resource {res.name[:100]!r} ({T.short(res.type_url)}) is named {name[:100]!r} inside"
            )
        by_type.setdefault(res.type_url, []).append(msg)
        serialized.setdefault(res.type_url, {})[res.name] = res.body
    if problems is not None:
        for type_url, names in sorted(unknown.items())[:10]:
            shown = ", ".join(repr(n) for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            problems.append(
                f"skipped {len(names)} resource(s) of a type this edge does not know ({type_url}: "
                f"{shown}); upgrade the edge to the control plane's version"
            )
    return Snapshot.build(by_type, meta={"role": ROLE, "set": rs.version}, serialized=serialized, previous=previous)


class MemoryStore:
    """The last good resource set, in memory only (see the module docstring)."""

    def __init__(self) -> None:
        self._set: link_pb2.ResourceSet | None = None

    def load(self) -> link_pb2.ResourceSet | None:
        return self._set

    def save(self, rs: link_pb2.ResourceSet) -> None:
        self._set = rs


class _Reporter(BaseCallbacks):
    def __init__(self, notify):
        self.notify = notify

    def on_stream_open(self, stream_id, node_id, role, delta):
        self.notify()

    def on_stream_closed(self, stream_id, node_id):
        self.notify()

    def on_ack(self, stream_id, node_id, type_url, version):
        self.notify()

    def on_nack(self, stream_id, node_id, type_url, version, message):
        self.notify()

    def on_reported(self, stream_id, node_id, type_url, version, in_sync):
        self.notify()


def _private_directory(path) -> None:
    """No access for others to a directory of ours (the xDS socket's): 0750 at most."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o007:
        os.chmod(path, mode & 0o770)
        log.info("%s: took others' access away (mode %04o -> %04o)", path, mode, mode & 0o770)


class EnvoySupervisor:
    """Starts the VPS Envoy and restarts it when it exits (backoff 1 s doubling to 30 s,
    back to 1 s after a minute of uptime)."""

    def __init__(self, argv: list[str], stop: threading.Event):
        self.argv = argv
        self.stop_event = stop
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.last_exit: int | None = None
        self._thread = threading.Thread(target=self._run, name="envoy-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        backoff = 1.0
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL)
            except OSError as exc:
                log.error("cannot start Envoy (%s): %s", self.argv[0], exc)
                self.last_exit = -1
            else:
                log.info("Envoy started (pid %d)", self.proc.pid)
                self.last_exit = self.proc.wait()
                if self.stop_event.is_set():
                    return
                log.error("Envoy exited with status %s; restarting in %.0f s", self.last_exit, backoff)
            self.restarts += 1
            if time.monotonic() - started > 60:
                backoff = 1.0
            self.stop_event.wait(backoff)
            backoff = min(backoff * 2, 30.0)

    def terminate(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._thread.join(2)


class EdgeDaemon:
    def __init__(self, config: EdgeConfig):
        self.config = config
        own_directory(config.run_dir, 0o750, group_write=False)
        _private_directory(config.run_dir)
        own_directory(config.log_dir, 0o755, group_write=True)
        self.secret = read_secret(config.secret_file)
        self.stop_event = threading.Event()
        self.cache = SnapshotCache()
        self.store = MemoryStore()
        self.status = StatusTracker()
        self.link = LinkClient(
            config.link_target, self.secret, config.edge_id, self.apply, self.envoy_report, self.stop_event
        )
        # one snapshot for SotW and delta Envoys alike (the edge's set has no VHDS variant)
        self.ads = AdsServer(
            self.cache,
            callbacks=[self.status, _Reporter(self.link.report_soon)],
            key_for=lambda node, delta=False: ROLE,
        )
        self.grpc_server = None
        self.envoy: EnvoySupervisor | None = None
        self.applied: dict[str, Any] = {"version": "", "at": 0.0, "error": "", "problems": []}

    # -- resources ---------------------------------------------------------------------
    def apply(self, rs: link_pb2.ResourceSet) -> tuple[str, list[str]]:
        """Install a resource set; on any problem keep the last good one and say why.
        Returns (error, what was skipped of a set that was taken)."""
        problems: list[str] = []
        try:
            self.cache.set_snapshot(ROLE, snapshot_from(rs, self.cache.get_snapshot(ROLE), problems))
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, the last good set stays
            why = (
                str(exc)
                if isinstance(exc, (ResourceSetError, InconsistentSnapshot))
                else f"{type(exc).__name__}: {exc}"
            )
            log.error("resource set %s refused, the last good set keeps serving: %s", rs.version[:64], why[:1024])
            self.applied.update(error=why, at=time.time())
            return why, []
        self.store.save(rs)
        self.applied.update(version=rs.version, at=time.time(), error="", problems=problems)
        log.info("resource set %s applied (%d resources)", rs.version, len(rs.resources))
        for problem in problems:
            log.warning("resource set %s: %s", rs.version[:64], problem)
        return "", problems

    def envoy_report(self) -> link_pb2.EnvoyReport:
        report = link_pb2.EnvoyReport()
        for node in self.status.snapshot():
            n = report.nodes.add(node_id=node.node_id, connected=node.connected)
            for short, t in node.types.items():
                n.types.add(
                    type_url=T.BY_SHORT.get(short, short),
                    acked_version=t.last_acked_version,
                    nacked_version=t.last_nack_version,
                    error=t.last_nack_message,
                )
        return report

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.config
        path = cfg.xds_socket_path
        if path.parent != cfg.run_dir:
            # its directory is made private below: never a shared one such as /run
            raise OSError(
                f"xds_socket {path} must be directly inside run_dir {cfg.run_dir} (the edge makes that "
                "directory private to itself)"
            )
        # only the VPS Envoy (this user's child) may connect: what it reports is believed
        # about the edge set, so nobody else may speak as an Envoy here
        own_directory(path.parent, 0o750, group_write=False)
        _private_directory(path.parent)
        prepare_socket(path)
        self.grpc_server = socket_server(
            path, 0o600, None, lambda bind_path: serve(self.ads, f"unix:{bind_path}"), discard=lambda s: s[0].stop(0)
        )[0]
        log.info("xDS for the VPS Envoy on %s (mode 0600)", path)
        self.link.start()
        if cfg.envoy_supervise:
            boot = cfg.run_dir / "envoy-edge.json"
            # the admin interface on a 0600 socket in the run directory (0750): only this
            # user (and root) can quit, drain or dump the VPS Envoy
            admin = cfg.envoy_admin_socket_path
            data = bootstrap(
                cfg.envoy_node_id,
                ROLE,
                xds_socket=str(path),
                admin_port=cfg.envoy_admin_port or 9901,
                admin_socket=str(admin) if admin is not None else None,
                max_heap_bytes=cfg.envoy_max_heap_mb << 20,
                max_connections=cfg.envoy_max_connections,
            )
            boot.write_text(json.dumps(data, indent=1))
            argv = [
                cfg.envoy_binary,
                "-c",
                str(boot),
                "--base-id",
                str(cfg.envoy_base_id),
                "--log-level",
                "warning",
                "--drain-time-s",
                "5",
            ]
            if cfg.envoy_concurrency:
                argv += ["--concurrency", str(cfg.envoy_concurrency)]
            self.envoy = EnvoySupervisor(argv, self.stop_event)
            self.envoy.start()

    def stop(self) -> None:
        if self.stop_event.is_set():
            return
        log.info("shutting down")
        self.stop_event.set()
        self.link.close()
        if self.envoy is not None:
            self.envoy.terminate()
        self.ads.stopping.set()
        if self.grpc_server is not None:
            self.grpc_server.stop(grace=0.5).wait(5)
            try:
                self.config.xds_socket_path.unlink()
            except FileNotFoundError:
                pass
        log.info("stopped")


def run(config: EdgeConfig) -> int:
    limit_malloc_arenas()
    # what the edge and the VPS Envoy create (the access log above all, which holds client
    # addresses and paths) is not for other users: 0640 at most, as the unit's UMask says
    os.umask(os.umask(0o027) | 0o027)
    try:
        daemon = EdgeDaemon(config)
        daemon.start()
    except (SecretError, OSError) as exc:
        log.error("%s", exc)
        return 1
    wait_for_termination()
    stop_within(daemon.stop, 15.0)  # Envoy gets 10 s to drain, then the rest
    return 0
