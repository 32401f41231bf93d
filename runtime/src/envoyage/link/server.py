"""The control plane's side of the edge link (home).

The edge dials in over the tunnel; this server and the edge prove to each other that they
hold the link key derived from the edge secret (a challenge-response, no secret on the
wire: envoyage.module_utils._linkkey; home holds only the key), then it sends the edge role's snapshot as a ResourceSet
whenever it changes, measures the round-trip time, and keeps what the edge reports
about its Envoy for `envoyage status`. One edge at a time: a new authenticated stream
replaces the old one (a reconnect whose old connection is not known to be dead yet).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc

from .. import __version__
from ..module_utils import _linkkey as linkkey
from ..status import EdgeEnvoyNode, EdgeEnvoyType, EdgeLinkStatus, EdgeRefusal, LinkRefusal
from ..xds import types as T
from ..xds.cache import SnapshotCache
from ..xds.snapshot import Snapshot
from . import LINK_VERSION, VERSION_KEY
from .secret import SecretError, read_key
from .v1 import link_pb2, link_pb2_grpc

log = logging.getLogger("envoyage.link")

PING_INTERVAL = 5.0
HELLO_TIMEOUT = 10.0
MAX_MESSAGE = 256 * 1024 * 1024


def set_version(snap: Snapshot) -> str:
    """One version for the whole resource set (from the per-type versions)."""
    h = hashlib.blake2b(digest_size=8)
    for type_url in sorted(snap.versions):
        h.update(f"{type_url}={snap.versions[type_url]};".encode())
    return h.hexdigest()


def resource_set(snap: Snapshot) -> link_pb2.ResourceSet:
    out = link_pb2.ResourceSet(version=set_version(snap))
    for type_url in T.PUSH_ORDER:
        for name, res in sorted(snap.get(type_url).items()):
            out.resources.add(type_url=type_url, name=name, version=res.version, body=res.data)
    return out


class _Session:
    """One authenticated stream. What the reader tells the writer is a few flags and the
    latest pong, never a queue an edge could fill."""

    ids = itertools.count(1)

    def __init__(self, peer: str):
        self.id = next(self.ids)
        self.peer = peer
        self.wake = threading.Event()
        self.closed = threading.Event()
        self.hello = threading.Event()
        self.answer = threading.Event()  # the edge's proof or refusal came
        self.decided = threading.Event()  # the handshake is over (authenticated, or closed)
        self.first = threading.Event()  # the hello came, or the stream ended
        self.authenticated = False  # nothing but the handshake is read before this
        self.edge_nonce = b""
        self.proof: bytes | None = None
        self.bad = ""  # what the peer did wrong in the handshake
        self.refusal: str | None = None
        self.dirty = True  # the snapshot may have changed since it was last sent
        self.pong: int | None = None
        self.edge_id = ""
        self.edge_id_raw = ""  # as the hello said it (the proofs cover it)
        self.software_version = ""
        self.have_version = ""

    def close(self) -> None:
        self.closed.set()
        self.decided.set()
        self.first.set()
        self.answer.set()
        self.wake.set()


def peer_ip(peer: str) -> str:
    """gRPC's peer string ("ipv4:10.88.0.1:53746", "ipv6:[fd00::1]:53746") -> the address."""
    kind, _sep, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rpartition("]:")[0].lstrip("[")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    return ""


def verdict_events(before: list[EdgeEnvoyNode], after: list[EdgeEnvoyNode]) -> list[tuple]:
    """New ACKs and NACKs between two reports of the VPS Envoy: (node id, type URL,
    version, Envoy's message or None for an ACK, the version ACKed before)."""
    old = {(n.node_id, t): v for n in before for t, v in n.types.items()}
    events: list[tuple] = []
    for node in after:
        for tname, t in node.types.items():
            prev = old.get((node.node_id, tname), EdgeEnvoyType())
            type_url = T.BY_SHORT.get(tname, tname)
            node_id = f"edge:{node.node_id}"
            if t.nacked_version and t.error and t.nacked_version != prev.nacked_version:
                events.append((node_id, type_url, t.nacked_version, t.error, t.acked_version))
            if t.acked_version and t.acked_version != prev.acked_version:
                events.append((node_id, type_url, t.acked_version, None, prev.acked_version))
    return events


class EdgeLinkServer(link_pb2_grpc.EdgeLinkServicer):
    """`edge_ip`: the only peer address that may try (the VPS's tunnel address); anyone
    else on the tunnel is refused before the secret is even looked at."""

    def __init__(
        self,
        cache: SnapshotCache,
        key: str,
        key_path: Path,
        ping_interval: float = PING_INTERVAL,
        edge_ip: str | None = None,
        on_verdict=None,
    ):
        """`on_verdict(node_id, type_url, version, message or None, acked_version)` hears
        each new ACK and NACK of the VPS Envoy (the control plane drops services it rejects)."""
        self.cache = cache
        self.key = key
        self.key_path = key_path
        self.ping_interval = ping_interval
        self.edge_ip = edge_ip
        self.on_verdict = on_verdict
        self._lock = threading.Lock()
        self._session: _Session | None = None
        self._cancel_watch = cache.watch(key, self._on_snapshot)
        self._last_refusal_log = 0.0
        self._refusals_unlogged = 0
        # what `envoyage status` shows about the edge (changed under the lock; `status()`
        # adds what is derived when asked)
        self.state = EdgeLinkStatus()

    def key_problem(self) -> str | None:
        """Why no edge can be admitted (no link key, an older Envoyage's hash), or None."""
        try:
            read_key(self.key_path)
        except SecretError as exc:
            return str(exc)
        return None

    # -- status --------------------------------------------------------------------
    def status(self) -> EdgeLinkStatus:
        """A copy (the nodes of a report are replaced whole, never changed)."""
        with self._lock:
            st = dataclasses.replace(
                self.state, envoy=list(self.state.envoy), apply_problems=list(self.state.apply_problems)
            )
        snap = self.cache.get_snapshot(self.key)
        st.want_version = set_version(snap) if snap is not None else ""
        st.in_sync = bool(st.connected and st.applied_version and st.applied_version == st.want_version)
        st.key_problem = self.key_problem()
        return st

    def _refuse(self, context, code, peer: str, why: str, detail: str):
        now = time.time()
        with self._lock:
            self.state.refused += 1
            self.state.last_refused = LinkRefusal(at=now, peer=peer[:64], why=why[:400])
            # at most one line a minute, however fast someone knocks
            loud = now - self._last_refusal_log >= 60
            if loud:
                self._last_refusal_log, skipped, self._refusals_unlogged = now, self._refusals_unlogged, 0
            else:
                self._refusals_unlogged += 1
        if loud:
            log.warning(
                "edge link: refused %s: %s%s",
                peer[:64],
                why[:400],
                f" ({skipped} more refusals in the last minute not logged)" if skipped else "",
            )
        context.abort(code, detail)

    def _on_snapshot(self) -> None:
        with self._lock:
            session = self._session
        if session is not None:
            session.dirty = True
            session.wake.set()

    # -- the stream ------------------------------------------------------------------
    def Connect(self, request_iterator, context):  # noqa: N802 - gRPC name
        peer = context.peer()
        if self.edge_ip is not None and peer_ip(peer) != self.edge_ip:
            self._refuse(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                peer,
                "not the VPS's tunnel address",
                "this edge link serves only the VPS's tunnel address",
            )
        meta = {k.lower(): v for k, v in context.invocation_metadata()}  # never logged: an older edge sends its secret
        theirs = meta.get(VERSION_KEY, "")[:16]
        if theirs != str(LINK_VERSION):
            self._refuse(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                peer,
                f"link version {theirs or 'none'}",
                f"this edge speaks edge-link version {theirs or '(none)'}, this control plane speaks "
                f"version {LINK_VERSION}; install the same Envoyage version on home and the VPS",
            )
        try:
            salt, key = read_key(self.key_path)
        except SecretError as exc:
            self._refuse(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                peer,
                str(exc),
                "this control plane has no edge link key set up; run the site playbook (or "
                "`envoyage link-secret`) on home",
            )
        session = _Session(peer)
        reader = threading.Thread(
            target=self._read, args=(session, request_iterator), daemon=True, name=f"link-read-{session.id}"
        )
        reader.start()
        context.add_callback(session.close)
        return self._write(session, context, salt, key)

    def _handshake(self, session: _Session, context, salt: bytes, key: bytes):
        """Challenge the edge and check its proof; yields home's challenge. Aborts the call
        (UNAUTHENTICATED, nothing sent but the challenge) if the edge cannot prove the key."""
        session.first.wait(HELLO_TIMEOUT)
        if not session.hello.is_set():
            if context.is_active():
                self._refuse(
                    context,
                    grpc.StatusCode.UNAUTHENTICATED,
                    session.peer,
                    session.bad or "no hello",
                    session.bad or f"no hello within {HELLO_TIMEOUT:.0f} s",
                )
            return
        if len(session.edge_nonce) != linkkey.NONCE_BYTES:
            self._refuse(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                session.peer,
                "no nonce in the hello",
                f"the hello needs a nonce of {linkkey.NONCE_BYTES} bytes (an edge older than edge-link "
                f"version {LINK_VERSION}?)",
            )
        nonce = linkkey.new_nonce()
        edge_id = session.edge_id_raw
        yield link_pb2.HomeMessage(
            challenge=link_pb2.Challenge(
                nonce=nonce,
                salt=salt,
                proof=linkkey.proof(key, linkkey.HOME, linkkey.EDGE, edge_id, salt, session.edge_nonce, nonce),
            )
        )
        answered = session.answer.wait(HELLO_TIMEOUT)
        if not answered or (session.closed.is_set() and session.proof is None and session.refusal is None):
            if context.is_active():
                self._refuse(
                    context,
                    grpc.StatusCode.UNAUTHENTICATED,
                    session.peer,
                    session.bad or "no proof",
                    session.bad or f"no proof of the link key within {HELLO_TIMEOUT:.0f} s",
                )
            return
        if session.refusal is not None:
            with self._lock:
                self.state.edge_refused_home = EdgeRefusal(
                    at=time.time(), edge_id=session.edge_id, reason=session.refusal
                )
            self._refuse(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                session.peer,
                f"the edge {session.edge_id!r} refused this control plane: {session.refusal}",
                "refused by the edge",
            )
        if not linkkey.verify(key, session.proof, linkkey.EDGE, linkkey.HOME, edge_id, salt, session.edge_nonce, nonce):
            self._refuse(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                session.peer,
                f"the edge {session.edge_id!r} could not prove the link key (wrong edge secret, or not "
                "this home's edge)",
                "wrong link key: the edge could not prove it",
            )
        session.authenticated = True
        session.decided.set()

    def _write(self, session: _Session, context, salt: bytes, key: bytes):
        try:
            yield from self._handshake(session, context, salt, key)
            if not session.authenticated:
                return
            with self._lock:
                self.state.edge_refused_home = None
            yield link_pb2.HomeMessage(
                welcome=link_pb2.Welcome(software_version=__version__, link_version=LINK_VERSION)
            )
            self._take(session)
            sent = session.have_version
            nonces = itertools.count(1)
            pending: tuple[int, float] | None = None
            next_ping = time.monotonic()
            while not session.closed.is_set():
                if session.dirty:
                    session.dirty = False
                    snap = self.cache.get_snapshot(self.key)
                    if snap is not None and set_version(snap) != sent:
                        rs = resource_set(snap)
                        yield link_pb2.HomeMessage(resources=rs)
                        sent = rs.version
                        with self._lock:
                            self.state.sent_version, self.state.sent_at = sent, time.time()
                        log.info(
                            "edge link: sent resource set %s (%d resources) to %s",
                            sent,
                            len(rs.resources),
                            session.edge_id,
                        )
                pong, session.pong = session.pong, None
                if pending is not None and pong == pending[0]:
                    with self._lock:
                        self.state.rtt_ms = round((time.monotonic() - pending[1]) * 1000, 2)
                    pending = None
                now = time.monotonic()
                if now >= next_ping:
                    nonce = next(nonces)
                    pending = (nonce, now)
                    next_ping = now + self.ping_interval
                    yield link_pb2.HomeMessage(ping=link_pb2.Ping(nonce=nonce))
                session.wake.wait(max(0.05, next_ping - time.monotonic()))
                session.wake.clear()
        finally:
            session.close()
            self._drop(session)

    def _take(self, session: _Session) -> None:
        """This session is now the edge's; an older one is closed."""
        with self._lock:
            old, self._session = self._session, session
            self.state = dataclasses.replace(
                self.state,
                connected=True,
                edge_id=session.edge_id,
                peer=session.peer[:64],
                connected_since=time.time(),
                rtt_ms=None,
                software_version=session.software_version,
            )
        if old is not None and old is not session:
            log.info("edge link: %s reconnected; closing its previous stream", session.edge_id)
            old.close()
        log.info("edge link: edge %r connected from %s", session.edge_id, session.peer)

    def _drop(self, session: _Session) -> None:
        with self._lock:
            if self._session is session:
                self._session = None
                # what the edge said about its Envoy is no longer known
                self.state = dataclasses.replace(
                    self.state, connected=False, disconnected_at=time.time(), rtt_ms=None, envoy=[]
                )
                log.warning("edge link: edge %r disconnected", session.edge_id)

    def _read(self, session: _Session, requests) -> None:
        try:
            for msg in requests:
                if session.closed.is_set():
                    break
                kind = msg.WhichOneof("kind")
                if kind == "hello" and not session.hello.is_set():
                    session.edge_id_raw = msg.hello.edge_id[:64]
                    session.edge_id = session.edge_id_raw or "edge"
                    session.have_version = msg.hello.have_version[:64]
                    session.edge_nonce = msg.hello.nonce[:64]
                    session.software_version = msg.hello.software_version[:64]
                    session.hello.set()
                    session.first.set()
                elif not session.hello.is_set():
                    session.bad = f"it sent {kind or 'an empty message'} before its hello"
                    break
                elif not session.authenticated:
                    # the handshake only: an edge that has not proven the key is heard on nothing else
                    if kind == "proof" and not session.answer.is_set():
                        session.proof = msg.proof.proof[:64]
                    elif kind == "refusal" and not session.answer.is_set():
                        session.refusal = msg.refusal.reason[:300]
                    else:
                        session.bad = f"it sent {kind or 'an empty message'} before proving the link key"
                        break
                    session.answer.set()
                    session.decided.wait()  # the writer decides; nothing is read meanwhile
                    if not session.authenticated:
                        break
                elif kind == "applied":
                    version, error = msg.applied.version[:64], msg.applied.error[:1024]
                    skipped = [p[:300] for p in msg.applied.problems[:20]]
                    with self._lock:
                        if self._session is session:
                            self.state = dataclasses.replace(
                                self.state,
                                applied_version=version,
                                applied_at=time.time(),
                                apply_error=error,
                                apply_problems=skipped if not error else [],
                            )
                    if error:
                        log.warning("edge %s refused resource set %s: %s", session.edge_id, version, error)
                    for problem in skipped:
                        log.warning("edge %s took resource set %s but %s", session.edge_id, version, problem)
                elif kind == "envoy":
                    nodes = [
                        EdgeEnvoyNode(
                            node_id=n.node_id[:128],
                            connected=n.connected,
                            types={
                                T.short(t.type_url[:200]): EdgeEnvoyType(
                                    acked_version=t.acked_version[:64],
                                    nacked_version=t.nacked_version[:64],
                                    error=t.error[:1024],
                                )
                                for t in n.types[:16]
                            },
                        )
                        for n in msg.envoy.nodes[:16]
                    ]
                    with self._lock:
                        current = self._session is session
                        before = self.state.envoy if current else []
                        if current:
                            self.state.envoy = nodes
                    if current and self.on_verdict is not None:
                        for event in verdict_events(before, nodes):
                            self.on_verdict(*event)
                elif kind == "pong":
                    session.pong = msg.pong.nonce
                    session.wake.set()
        except grpc.RpcError:
            pass
        except Exception:  # noqa: BLE001 - a bad message must not kill the thread silently
            log.exception("edge link: reading from %s failed", session.peer)
        finally:
            session.close()

    def close(self) -> None:
        self._cancel_watch()
        with self._lock:
            session = self._session
        if session is not None:
            session.close()


class LinkListener:
    """Serves the edge link on home's tunnel address. The address exists only while the
    tunnel is up, so binding is retried (every `retry` seconds) until it works; until
    then `problem` says why."""

    def __init__(self, servicer: EdgeLinkServer, address: str, port: int, retry: float = 2.0):
        self.servicer = servicer
        self.address, self.port = address, port
        self.retry = retry
        self.server: grpc.Server | None = None
        self.problem: str | None = "not listening yet"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="link-listen", daemon=True)

    @property
    def target(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def _try_bind(self) -> bool:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="link"),
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE),
                ("grpc.max_receive_message_length", 4 * 1024 * 1024),
                ("grpc.keepalive_time_ms", 10_000),
                ("grpc.keepalive_timeout_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=4,
        )
        link_pb2_grpc.add_EdgeLinkServicer_to_server(self.servicer, server)
        try:
            bound = server.add_insecure_port(self.target)
        except RuntimeError:
            bound = 0
        if not bound:
            server.stop(None)
            return False
        server.start()
        self.server = server
        if self._stop.is_set():  # stop() came while binding
            server.stop(None)
        return True

    def _run(self) -> None:
        warned = False
        while not self._stop.is_set():
            if self._try_bind():
                self.problem = None
                log.info("edge link listening on %s", self.target)
                return
            self.problem = (
                f"cannot listen on {self.target}: the address is not on this host "
                "(is the tunnel up?) or the port is taken"
            )
            if not warned:
                log.warning("edge link: %s; retrying every %.0f s", self.problem, self.retry)
                warned = True
            self._stop.wait(self.retry)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.servicer.close()
        if self.server is not None:
            self.server.stop(grace=0.5).wait(5)
