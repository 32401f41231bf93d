"""`envoyage edge`: the VPS side.

It dials the control plane's edge link across the tunnel, keeps the last good resource
set, and is the VPS Envoy's only xDS source, on a Unix socket, through the project's own
ADS server. It also starts and supervises that Envoy (DESIGN.md: one supervisor on the
VPS). What the Envoy ACKs or NACKs goes back over the link.

The last good set lives in memory (`MemoryStore`); the encrypted on-disk cache keyed
from the edge secret, which lets the edge serve after a reboot while home is down, is a
later store with the same two methods.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import stat
import subprocess
import threading
import time
from typing import Any

import grpc

from .. import __version__
from ..bootstrap import bootstrap
from ..config import EdgeConfig
from ..link import LINK_VERSION, VERSION_KEY
from ..link.secret import SecretError, read_secret
from ..link.v1 import link_pb2, link_pb2_grpc
from ..module_utils import _linkkey as linkkey
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


class LinkClient:
    """Keeps one stream to the control plane, reconnecting with backoff (0.2 s doubling
    to 10 s; 10 s after a failed handshake, 30 s after a version mismatch).

    The handshake comes first (envoyage.module_utils._linkkey): the edge sends a nonce,
    checks home's proof of the link key, and only then proves the key itself and takes
    anything from home. The secret never leaves this process."""

    def __init__(self, target: str, secret: str, edge_id: str, apply, envoy_report, stop: threading.Event):
        self.target = target
        self._secret = secret
        self.edge_id = edge_id
        self.apply = apply  # ResourceSet -> error string ("" = applied)
        self.envoy_report = envoy_report  # () -> EnvoyReport
        self.stop = stop
        self.have_version = ""
        self.outbox: queue.Queue | None = None  # one per connection
        self.state: dict[str, Any] = {"connected": False, "last_error": "", "since": 0.0}
        self._call = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="edge-link", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop: cancels the current call (the loop ends once `stop` is set)."""
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()

    def report_soon(self) -> None:
        outbox = self.outbox
        if outbox is not None:
            try:
                outbox.put_nowait("report")  # never blocks an xDS callback; a report is already due then
            except queue.Full:
                pass

    def _requests(self, outbox: queue.Queue, handshake: queue.Queue, nonce: bytes, done: threading.Event):
        yield link_pb2.EdgeMessage(
            hello=link_pb2.Hello(
                edge_id=self.edge_id, software_version=__version__, have_version=self.have_version, nonce=nonce
            )
        )
        while True:  # nothing more until home has proven the key (then our proof), or a refusal
            if done.is_set() or self.stop.is_set():
                return
            try:
                answer = handshake.get(timeout=0.5)
            except queue.Empty:
                continue
            yield answer
            if answer.WhichOneof("kind") != "proof":
                return
            break
        yield link_pb2.EdgeMessage(envoy=self.envoy_report())
        while not done.is_set() and not self.stop.is_set():
            try:
                item = outbox.get(timeout=0.5)
            except queue.Empty:
                continue
            if item == "report":
                while True:  # several ACKs at once: one report
                    try:
                        extra = outbox.get_nowait()
                    except queue.Empty:
                        break
                    if extra != "report":
                        yield extra
                yield link_pb2.EdgeMessage(envoy=self.envoy_report())
            else:
                yield item

    def _run(self) -> None:
        backoff = 0.2
        while not self.stop.is_set():
            try:
                backoff = self._connect(backoff)
            except Exception:  # noqa: BLE001 - the link must outlive any bug: log it, reconnect
                log.exception("edge link: unexpected error; reconnecting")
                self.state["last_error"] = "unexpected error (see the edge's log)"
            if self.stop.is_set():
                break
            self.stop.wait(backoff)
            backoff = min(backoff * 2, 10.0) if backoff < 10.0 else backoff

    def _check_home(self, msg: link_pb2.HomeMessage, nonce: bytes) -> str | None:
        """None if `msg` is home's challenge with a good proof of the link key, else why not."""
        if msg.WhichOneof("kind") != "challenge":
            return (
                f"it sent {msg.WhichOneof('kind') or 'an empty message'} before proving the link key (a control "
                f"plane older than edge-link version {LINK_VERSION}, or not our home)"
            )
        c = msg.challenge
        if len(c.nonce) != linkkey.NONCE_BYTES or not c.salt or len(c.salt) > 64:
            return "its challenge is malformed"
        key = linkkey.derive(self._secret, c.salt)
        if not linkkey.verify(key, c.proof, linkkey.HOME, linkkey.EDGE, self.edge_id[:64], c.salt, nonce, c.nonce):
            return (
                "home's proof of the link key does not verify: the edge's secret and home's link key are not "
                "from the same `envoyage link-secret` (a wrong secret on the edge, a wrong key on home, or not "
                "this edge's home); rerun playbooks/rotate.yml"
            )
        return None

    def _connect(self, backoff: float) -> float:
        """One connection, until it ends; returns the backoff before the next one."""
        channel = grpc.insecure_channel(
            self.target,
            options=[
                ("grpc.max_receive_message_length", 256 * 1024 * 1024),
                ("grpc.keepalive_time_ms", 10_000),
                ("grpc.keepalive_timeout_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2_000),
            ],
        )
        done = threading.Event()
        outbox: queue.Queue = queue.Queue(maxsize=1000)
        handshake: queue.Queue = queue.Queue(maxsize=1)
        nonce = linkkey.new_nonce()
        proven = False
        refused: str | None = None  # why this edge refused the control plane
        hang_up = None
        try:
            call = link_pb2_grpc.EdgeLinkStub(channel).Connect(
                self._requests(outbox, handshake, nonce, done), metadata=[(VERSION_KEY, str(LINK_VERSION))]
            )
            with self._lock:
                self._call = call
            if self.stop.is_set():
                call.cancel()
            for msg in call:
                if refused is not None:
                    continue  # nothing is taken; waiting for home to close (or the timer to hang up)
                if not proven:
                    refused = self._check_home(msg, nonce)
                    if refused is None:
                        c = msg.challenge
                        key = linkkey.derive(self._secret, c.salt)
                        handshake.put(
                            link_pb2.EdgeMessage(
                                proof=link_pb2.EdgeProof(
                                    proof=linkkey.proof(
                                        key, linkkey.EDGE, linkkey.HOME, self.edge_id[:64], c.salt, nonce, c.nonce
                                    )
                                )
                            )
                        )
                        proven = True
                        self.outbox = outbox  # reports may go out from now on
                    else:
                        # say why (home's status names it), give it a moment to go out, then hang up
                        handshake.put(link_pb2.EdgeMessage(refusal=link_pb2.Refusal(reason=refused)))
                        hang_up = threading.Timer(2.0, call.cancel)
                        hang_up.daemon = True
                        hang_up.start()
                    continue
                kind = msg.WhichOneof("kind")
                if kind == "welcome":
                    self.state.update(connected=True, last_error="", since=time.time())
                    backoff = 0.2
                    log.info(
                        "edge link: connected to %s (control plane %s)", self.target, msg.welcome.software_version[:64]
                    )
                elif kind == "resources":
                    error, problems = _outcome(self.apply(msg.resources))
                    # a set taken in part is asked for again on reconnect (an upgraded edge takes it whole)
                    if not error:
                        self.have_version = msg.resources.version if not problems else ""
                    outbox.put(
                        link_pb2.EdgeMessage(
                            applied=link_pb2.Applied(
                                version=msg.resources.version, error=error[:1024], problems=[p[:300] for p in problems]
                            )
                        )
                    )
                elif kind == "ping":
                    outbox.put(link_pb2.EdgeMessage(pong=link_pb2.Pong(nonce=msg.ping.nonce)))
            error = "the control plane closed the link"
        except grpc.RpcError as exc:
            code = exc.code()
            error = f"{code.name if code else 'error'}: {exc.details() or ''}".strip()
            if refused is not None:
                pass  # home hung up on our refusal, or we did
            elif code == grpc.StatusCode.UNAUTHENTICATED:
                log.error("edge link: the control plane refused this edge: %s (check the edge secret)", exc.details())
                backoff = max(backoff, 10.0)
            elif code == grpc.StatusCode.FAILED_PRECONDITION:
                log.error("edge link: %s", exc.details())
                backoff = max(backoff, 30.0)
            elif code != grpc.StatusCode.CANCELLED:
                log.warning("edge link: %s (retrying in %.1f s)", error, backoff)
        finally:
            done.set()
            if hang_up is not None:
                hang_up.cancel()
            self.outbox = None
            with self._lock:
                call, self._call = self._call, None
            if call is not None:
                call.cancel()
            channel.close()
            self.state.update(connected=False)
        if refused is not None:
            error = f"refused the control plane at {self.target}: {refused}"
            log.error("edge link: %s; nothing from it is applied", error)
            backoff = max(backoff, 10.0)
        self.state["last_error"] = error
        return backoff


def _private_directory(path) -> None:
    """No access for others to a directory of ours (the xDS socket's): 0750 at most."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o007:
        os.chmod(path, mode & 0o770)
        log.info("%s: took others' access away (mode %04o -> %04o)", path, mode, mode & 0o770)


def _outcome(result) -> tuple[str, list[str]]:
    """What `apply` returned: an error string, or (error, problems)."""
    if isinstance(result, tuple):
        return result[0], list(result[1])
    return result, []


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
        self.grpc_server = socket_server(path, 0o600, None, lambda bind_path: serve(self.ads, f"unix:{bind_path}"))[0]
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
