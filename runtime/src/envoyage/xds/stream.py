"""One ADS stream, the plumbing the state-of-the-world (sotw.py) and the delta
(delta.py) protocol share.

Each stream runs in one gRPC worker thread as a generator. A small reader thread puts
Envoy's requests into the stream's queue; the cache puts a wake-up there when the
snapshot changes. All stream state is touched only by the generator thread.

Rules (see ../../../../docs/xds.md and go-control-plane):
- per type: one response in flight ("watch"), reopened by the ACK/NACK of that response;
- a request whose response_nonce is not the latest nonce of its type is stale: ignored
  (in delta only its ACK/NACK meaning is ignored; subscription changes still apply);
- NACK: recorded with Envoy's message; the rejected version is not sent again, the next
  snapshot is;
- on a snapshot change types are answered in the order CDS, EDS, LDS, RDS.
"""

from __future__ import annotations

import functools
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import grpc
from envoy.config.endpoint.v3 import endpoint_pb2

from . import types as T
from .snapshot import Resource, Snapshot

if TYPE_CHECKING:
    from .server import AdsServer

log = logging.getLogger("envoyage.xds")

_stream_ids = itertools.count(1)

_REQ, _WAKE, _END = "req", "wake", "end"

# Bounds on what a client can make this server hold (the node's bounds are admission's,
# in server.py): a stream over these limits is closed, a NACK message is cut.
MAX_NAMES = 50_000  # resource names one stream may subscribe to, per type
MAX_NAME_LENGTH = 1024
MAX_MESSAGE = 1024  # characters of a NACK message that are kept


def bounded_message(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + f"... ({len(text)} characters, cut)"


def names_problem(names, already: int = 0) -> str | None:
    if already + len(names) > MAX_NAMES:
        return f"more than {MAX_NAMES} resource names"
    if any(len(n) > MAX_NAME_LENGTH for n in names):
        return f"a resource name longer than {MAX_NAME_LENGTH} characters"
    return None


@functools.lru_cache(maxsize=4096)
def absent_endpoints(name: str) -> Resource:
    """An empty ClusterLoadAssignment for a cluster Envoy asks about that the snapshot no
    longer has. Envoy keeps a new cluster warming (and holds its CDS ACK) until its
    endpoints arrive; a cluster removed milliseconds after it was sent would otherwise
    wait for Envoy's 15 s initial fetch timeout (envoyproxy/envoy#9934). Every endpoint
    subscription is answered, so Envoy is never left waiting."""
    msg = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    return Resource(name, msg, ABSENT_VERSION, T.ENDPOINT, msg.SerializeToString(deterministic=True))


ABSENT_VERSION = "absent"


def node_role(node) -> str:
    role = ""
    if node is not None and node.HasField("metadata"):
        value = node.metadata.fields.get("role")
        if value is not None and value.HasField("string_value"):
            role = value.string_value
    return role or "home"


class Stream:
    """Common plumbing of one ADS stream."""

    delta = False

    def __init__(self, server: AdsServer, requests: Iterator, context: grpc.ServicerContext):
        self.server = server
        self.cache = server.cache
        self.id = next(_stream_ids)
        self.context = context
        self.started = time.monotonic()
        self.events: queue.Queue = queue.Queue()
        self.node_id = ""
        self.role = ""
        self.key = ""
        self.nonce_counter = itertools.count(1)
        self._cancel_watch: Callable[[], None] | None = None
        self._requests = requests
        self.types: dict = {}  # type URL -> per-type stream state
        context.add_callback(lambda: self.events.put((_END, None)))

    def _read(self) -> None:
        try:
            for req in self._requests:
                self.events.put((_REQ, req))
        except Exception as exc:  # noqa: BLE001 - stream torn down by the peer
            log.debug("stream %s: reader ended: %s", self.id, exc)
        finally:
            self.events.put((_END, None))

    def _nonce(self) -> str:
        return f"{self.id}-{next(self.nonce_counter)}"

    def _callbacks(self, name: str, *args) -> None:
        for cb in self.server.callbacks:
            try:
                getattr(cb, name)(self.id, self.node_id, *args)
            except Exception:  # noqa: BLE001 - a broken observer never breaks a stream
                log.exception("callback %s failed", name)

    def evict(self, reason: str) -> None:
        """End this stream from another thread (it makes room for another)."""
        log.warning("stream %s (node %r): closed: %s", self.id, self.node_id, reason)
        self.events.put((_END, None))

    def run(self) -> Iterator:
        self.server._streams_add(self)
        threading.Thread(target=self._read, name=f"xds-reader-{self.id}", daemon=True).start()
        try:
            while True:
                try:
                    kind, req = self.events.get(timeout=None if self.node_id else self.server.first_request_timeout)
                except queue.Empty:
                    log.warning(
                        "stream %s: no request naming a node within %.0fs; closing",
                        self.id,
                        self.server.first_request_timeout,
                    )
                    return
                if kind == _END or self.server.stopping.is_set():
                    return
                out: list = []
                if kind == _REQ:
                    if not self.node_id:
                        self.server.admit_node(self, req.node)  # aborts the stream when refused
                        self._open(req.node)
                    problem = self.request_problem(req)
                    if problem:
                        log.warning("node %s: stream %s closed: %s", self.node_id, self.id, problem)
                        self.context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, problem)
                    if req.type_url in T.MESSAGE_CLASSES:
                        resp = self.handle(req)
                        if resp is not None:
                            out = [resp]
                    else:
                        log.warning("node %s asked for unsupported type %s", self.node_id, req.type_url)
                elif kind == _WAKE:
                    out = self.on_snapshot()
                yield from out
        finally:
            self.server._streams_remove(self)
            if self._cancel_watch:
                self._cancel_watch()
            if self.node_id:
                self._callbacks("on_stream_closed")
                log.info("node %s: %s stream %s closed", self.node_id, "delta" if self.delta else "sotw", self.id)

    def _open(self, node) -> None:
        self.node_id = node.id
        self.role = node_role(node)
        self.key = self.server.key_for(node, self.delta)
        self._cancel_watch = self.cache.watch(self.key, lambda: self.events.put((_WAKE, None)))
        self._callbacks("on_stream_open", self.role, self.delta)
        log.info(
            "node %s (role %s) connected: %s stream %s",
            self.node_id,
            self.role,
            "delta" if self.delta else "sotw",
            self.id,
        )

    def snapshot(self) -> Snapshot | None:
        return self.cache.get_snapshot(self.key)

    def sent_cluster_names(self) -> set[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def request_problem(self, req) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def push_order(self, snap: Snapshot) -> tuple[str, ...]:
        """CDS, EDS, LDS, RDS; but when clusters only go away, routes first (break after)."""
        sent = self.sent_cluster_names()
        if sent and set(snap.get(T.CLUSTER)) < sent:
            return (T.LISTENER, T.ROUTE, T.VHOST, T.CLUSTER, T.ENDPOINT)
        return T.PUSH_ORDER

    def on_snapshot(self) -> list:
        snap = self.snapshot()
        if snap is None:
            return []
        out = []
        for type_url in self.push_order(snap):
            resp = self.respond(type_url)
            if resp is not None:
                out.append(resp)
        return out

    def handle(self, req):  # pragma: no cover - abstract
        """Take one request of a known type; the response it calls for, or None."""
        raise NotImplementedError

    def respond(self, type_url: str, force: bool = False):
        """The response for `type_url` when one may be sent now (the stream asked for the
        type, its previous response is answered, a snapshot exists) and `response` finds
        something to send (`force`: even at an unchanged version), else None."""
        st = self.types.get(type_url)
        snap = self.snapshot()
        if st is None or not st.watch_open or snap is None:
            return None
        return self.response(type_url, st, snap, snap.version(type_url), force)

    def response(self, type_url: str, st, snap: Snapshot, version: str, force: bool):  # pragma: no cover - abstract
        """The protocol's response for one type (`st`: the stream's state of it), or None."""
        raise NotImplementedError
