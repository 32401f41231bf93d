"""The ADS server: state of the world and delta, held to the xDS contract.

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

import ctypes
import functools
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from . import types as T
from .cache import SnapshotCache, snapshot_key
from .snapshot import Resource, Snapshot

log = logging.getLogger("envoyage.xds")

_stream_ids = itertools.count(1)

_REQ, _WAKE, _END = "req", "wake", "end"

# Bounds on what a client can make this server hold (any local process can connect when
# ADS listens on TCP): a node over these limits is refused, a NACK message is cut.
MAX_NODE_ID = 256  # characters
MAX_NODE_METADATA = 16 * 1024  # bytes of the node's metadata
MAX_NODE_BYTES = 512 * 1024  # the whole Node (Envoy lists its few hundred extensions there)
MAX_NAMES = 50_000  # resource names one stream may subscribe to, per type
MAX_NAME_LENGTH = 1024
MAX_MESSAGE = 1024  # characters of a NACK message that are kept
MAX_REQUEST_BYTES = 4 * 1024 * 1024  # one request from Envoy (they are small)


def bounded_message(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + f"... ({len(text)} characters, cut)"


def node_problem(node) -> str | None:
    """Why a node is refused, or None."""
    if not node.id:
        return "the first request names no node id"
    if len(node.id) > MAX_NODE_ID:
        return f"node id of {len(node.id)} characters (at most {MAX_NODE_ID})"
    meta = node.metadata.ByteSize()
    if meta > MAX_NODE_METADATA:
        return f"node metadata of {meta} bytes (at most {MAX_NODE_METADATA})"
    size = node.ByteSize()
    if size > MAX_NODE_BYTES:
        return f"node description of {size} bytes (at most {MAX_NODE_BYTES})"
    return None


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


class _Stream:
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
        self._cancel_watch = None
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
                        problem = node_problem(req.node)
                        if problem:
                            log.warning("stream %s: refused: %s", self.id, problem)
                            self.context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
                        if not self.server.admit(self, req.node.id):
                            self.context.abort(
                                grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"this xDS server admits {self.server.max_streams} streams",
                            )
                        self._open(req.node)
                    problem = self.request_problem(req)
                    if problem:
                        log.warning("node %s: stream %s closed: %s", self.node_id, self.id, problem)
                        self.context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, problem)
                    if req.type_url in T.MESSAGE_CLASSES:
                        out = self.handle(req)
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

    def _ready(self, type_url: str):
        """(type state, snapshot) when a response for this type may be sent now, else None."""
        st = self.types.get(type_url)
        snap = self.snapshot()
        if st is None or not st.watch_open or snap is None:
            return None
        return st, snap

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

    def handle(self, req) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def respond(self, type_url: str, force: bool = False):  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class _SotwType:
    names: set[str] = field(default_factory=set)
    envoy_version: str = ""  # the version Envoy reported having
    sent_version: str | None = None
    sent_names: set[str] = field(default_factory=set)  # names requested when we last sent
    sent_resources: set[str] = field(default_factory=set)  # names in the last response
    nonce: str = ""
    watch_open: bool = False
    nacked_version: str | None = None
    answered_nonce: str = ""


class SotwStream(_Stream):
    delta = False

    def request_problem(self, req) -> str | None:
        return names_problem(req.resource_names)

    def sent_cluster_names(self) -> set[str]:
        st = self.types.get(T.CLUSTER)
        return set(st.sent_resources) if st else set()

    def handle(self, req: discovery_pb2.DiscoveryRequest) -> list:
        type_url = req.type_url
        first = type_url not in self.types
        st = self.types.setdefault(type_url, _SotwType())
        if first and req.version_info and not req.response_nonce:
            # a reconnect: Envoy says which version it holds; if that is the current
            # one nothing is sent, and status knows at once that this type is in sync
            snap = self.snapshot()
            self._callbacks(
                "on_reported",
                type_url,
                req.version_info,
                snap is not None and snap.version(type_url) == req.version_info,
            )
        if req.response_nonce and req.response_nonce != st.nonce:
            log.debug(
                "node %s %s: stale nonce %s (latest %s) ignored",
                self.node_id,
                T.short(type_url),
                req.response_nonce,
                st.nonce,
            )
            return []
        if req.response_nonce and req.response_nonce != st.answered_nonce:
            st.answered_nonce = req.response_nonce  # one ACK/NACK per response
            if req.HasField("error_detail"):
                st.nacked_version = st.sent_version
                msg = bounded_message(req.error_detail.message)
                log.warning("node %s NACKed %s version %s: %s", self.node_id, T.short(type_url), st.sent_version, msg)
                self._callbacks("on_nack", type_url, st.sent_version or "", msg)
            else:
                st.nacked_version = None
                self._callbacks("on_ack", type_url, req.version_info)
        st.envoy_version = req.version_info
        names = set(req.resource_names) - {"*"}
        # Names Envoy newly asks for need an answer even at an unchanged version (a
        # warming cluster waits for them) -- unless this is a reconnect and Envoy
        # already holds the current version.
        new_names = False
        if type_url not in T.WILDCARD_TYPES and st.sent_version is not None:
            new_names = bool(names - st.sent_names)
        st.names = names
        st.watch_open = True
        resp = self.respond(type_url, force=new_names)
        return [resp] if resp is not None else []

    def respond(self, type_url: str, force: bool = False):
        ready = self._ready(type_url)
        if ready is None:
            return None
        st, snap = ready
        version = snap.version(type_url)
        have = st.sent_version if st.sent_version is not None else st.envoy_version
        if not force and (version == have or version == st.nacked_version):
            return None
        resources = snap.get(type_url)
        if type_url in T.WILDCARD_TYPES:
            chosen = list(resources.values())
        elif type_url == T.ENDPOINT:
            chosen = [resources.get(n) or absent_endpoints(n) for n in sorted(st.names)]
        else:
            chosen = [resources[n] for n in sorted(st.names) if n in resources]
        nonce = self._nonce()
        resp = discovery_pb2.DiscoveryResponse(
            version_info=version, type_url=type_url, nonce=nonce, resources=[r.packed for r in chosen]
        )
        st.sent_version, st.nonce, st.watch_open = version, nonce, False
        st.sent_names = set(st.names)
        st.sent_resources = {r.name for r in chosen}
        log.debug("node %s: sotw %s version %s, %d resources", self.node_id, T.short(type_url), version, len(chosen))
        self._callbacks("on_response", type_url, resp)
        return resp


@dataclass
class _DeltaType:
    wildcard: bool = False
    subscribed: set[str] = field(default_factory=set)
    sent: dict[str, str] = field(default_factory=dict)  # name -> version Envoy has
    nonce: str = ""
    watch_open: bool = True
    initial_pending: bool = True
    last_version: str = ""  # system_version_info of the latest response
    answered_nonce: str = ""
    dirty: bool = True  # subscriptions changed since the last diff
    # what `sent` held before the response in flight, for the names it carries: a NACK
    # rejects the whole response, so Envoy still has exactly that
    pending: dict[str, str | None] = field(default_factory=dict)
    nacked_version: str = ""  # a rejected snapshot version is never sent again
    resync: bool = False  # after a NACK: the next response is a full diff, not parent->child


class DeltaStream(_Stream):
    delta = True

    def request_problem(self, req) -> str | None:
        st = self.types.get(req.type_url)
        return names_problem(req.resource_names_subscribe, len(st.subscribed) if st else 0) or names_problem(
            list(req.initial_resource_versions)
        )

    def sent_cluster_names(self) -> set[str]:
        st = self.types.get(T.CLUSTER)
        return set(st.sent) if st else set()

    @staticmethod
    def _wants(st: _DeltaType, type_url: str, name: str) -> bool:
        """Is `name` covered by this stream's subscription? (set lookups only: O(1))"""
        if st.wildcard or name in st.subscribed:
            return True
        return type_url == T.VHOST and name.split("/", 1)[0] in st.subscribed

    def handle(self, req: discovery_pb2.DeltaDiscoveryRequest) -> list:
        type_url = req.type_url
        log.debug(
            "node %s: delta %s request subscribe=%s unsubscribe=%s nonce=%s%s",
            self.node_id,
            T.short(type_url),
            list(req.resource_names_subscribe)[:5],
            list(req.resource_names_unsubscribe)[:5],
            req.response_nonce,
            " NACK" if req.HasField("error_detail") else "",
        )
        st = self.types.get(type_url)
        reconnect = False
        if st is None:
            st = self.types[type_url] = _DeltaType()
            subscribe = set(req.resource_names_subscribe)
            st.wildcard = type_url in T.WILDCARD_TYPES and (not subscribe or "*" in subscribe)
            st.sent = dict(req.initial_resource_versions)
            reconnect = bool(req.initial_resource_versions)
        if req.response_nonce:
            if req.response_nonce != st.nonce:
                log.debug("node %s %s: stale nonce %s ignored", self.node_id, T.short(type_url), req.response_nonce)
            elif req.response_nonce != st.answered_nonce:
                st.answered_nonce = req.response_nonce  # one ACK/NACK per response
                st.watch_open = True
                if req.HasField("error_detail"):
                    msg = bounded_message(req.error_detail.message)
                    log.warning("node %s NACKed delta %s: %s", self.node_id, T.short(type_url), msg)
                    for name, before in st.pending.items():
                        if before is None:
                            st.sent.pop(name, None)
                        else:
                            st.sent[name] = before
                    st.nacked_version, st.resync = st.last_version, True
                    st.pending = {}
                    self._callbacks("on_nack", type_url, st.last_version, msg)
                else:
                    st.pending = {}
                    self._callbacks("on_ack", type_url, st.last_version)
        if req.resource_names_subscribe or req.resource_names_unsubscribe:
            st.dirty = True
        for name in req.resource_names_subscribe:
            if name == "*":
                st.wildcard = True
                continue
            st.subscribed.add(name)
            if name not in req.initial_resource_versions:
                st.sent.pop(name, None)  # (re)subscription: Envoy wants it now
        for name in req.resource_names_unsubscribe:
            if name == "*":
                st.wildcard = False
                continue
            st.subscribed.discard(name)
            st.sent.pop(name, None)
        resp = self.respond(type_url)
        if reconnect:
            # Envoy listed every resource it holds with its version: in sync when the
            # answer changes and removes nothing (compared per resource)
            snap = self.snapshot()
            in_sync = snap is not None and (resp is None or (not resp.resources and not resp.removed_resources))
            self._callbacks("on_reported", type_url, snap.version(type_url) if in_sync else "", in_sync)
        return [resp] if resp is not None else []

    def respond(self, type_url: str, force: bool = False):
        ready = self._ready(type_url)
        if ready is None:
            return None
        st, snap = ready
        version = snap.version(type_url)
        if (
            not st.initial_pending
            and not st.dirty
            and (version == st.nacked_version or (st.last_version == version and not st.resync))
        ):
            return None  # nothing changed since the last response (or Envoy rejected this version)
        resources = snap.get(type_url)
        parent = snap.changes.get(type_url)
        if (
            parent is not None
            and not st.initial_pending
            and not st.dirty
            and not st.resync
            and parent[0] == st.last_version
        ):
            # Envoy has this snapshot's parent: only what changed in between can differ
            changed = sorted(
                (
                    resources[n]
                    for n in parent[1]
                    if self._wants(st, type_url, n) and st.sent.get(n) != resources[n].version
                ),
                key=lambda r: r.name,
            )
            removed = sorted(n for n in parent[2] if n in st.sent)
        else:
            if st.wildcard:
                wanted = resources
            elif type_url == T.VHOST:  # a subscription to a route configuration covers all its hosts
                wanted = {n: r for n, r in resources.items() if self._wants(st, type_url, n)}
            elif type_url == T.ENDPOINT:  # every endpoint subscription is answered
                wanted = {n: resources.get(n) or absent_endpoints(n) for n in st.subscribed}
            else:
                wanted = {n: resources[n] for n in st.subscribed if n in resources}
            changed = sorted((r for n, r in wanted.items() if st.sent.get(n) != r.version), key=lambda r: r.name)
            removed = sorted(n for n in st.sent if n not in wanted and self._wants(st, type_url, n))
        st.dirty = st.resync = False
        if not changed and not removed and not st.initial_pending:
            st.last_version = version
            return None
        st.initial_pending = False
        nonce = self._nonce()
        resp = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=snap.version(type_url),
            type_url=type_url,
            nonce=nonce,
            resources=[discovery_pb2.Resource(name=r.name, version=r.version, resource=r.packed) for r in changed],
            removed_resources=removed,
        )
        st.pending = {n: st.sent.get(n) for n in itertools.chain((r.name for r in changed), removed)}
        for r in changed:
            st.sent[r.name] = r.version
        for n in removed:
            st.sent.pop(n, None)
        st.nonce, st.watch_open = nonce, False
        st.last_version = version
        if version != st.nacked_version:
            st.nacked_version = ""
        log.debug("node %s: delta %s +%d -%d", self.node_id, T.short(type_url), len(changed), len(removed))
        self._callbacks("on_response", type_url, resp)
        return resp


class AdsServer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """The gRPC servicer. `key_for` maps a node to its snapshot key (its role for now).

    At most `max_streams` streams are admitted. Over the limit a stream is still let in
    when its node already has an older stream (a reconnect whose old connection is not
    yet known to be dead: that one goes) or when `known(node_id)` says the node is one of
    ours (the oldest stream of a node not known goes); anyone else is refused with
    RESOURCE_EXHAUSTED. A stream that names no node in time is closed.
    """

    def __init__(
        self,
        cache: SnapshotCache,
        callbacks: Iterable = (),
        max_streams: int = 256,
        known: Callable[[str], bool] = lambda node_id: False,
        first_request_timeout: float = 10.0,
        key_for: Callable[..., str] | None = None,
    ):
        """`key_for(node, delta)`: the snapshot key a node is served from (default: its role,
        and the role's VHDS variant for delta nodes)."""
        self.cache = cache
        if key_for is not None:
            self.key_for = key_for
        self.callbacks = list(callbacks)
        self.stopping = threading.Event()
        self.max_streams = max_streams
        self.known = known
        self.first_request_timeout = first_request_timeout
        self._streams: dict[int, _Stream] = {}
        self._streams_lock = threading.Lock()
        self.refused = 0
        self.evicted = 0

    def _streams_add(self, stream: _Stream) -> None:
        with self._streams_lock:
            self._streams[stream.id] = stream

    def _streams_remove(self, stream: _Stream) -> None:
        with self._streams_lock:
            self._streams.pop(stream.id, None)

    def stream_count(self) -> int:
        with self._streams_lock:
            return len(self._streams)

    def admit(self, stream: _Stream, node_id: str) -> bool:
        with self._streams_lock:
            others = [s for s in self._streams.values() if s is not stream]
            if len(others) < self.max_streams:
                return True
            same = [s for s in others if s.node_id == node_id]
            if same:
                victim, why = min(same, key=lambda s: s.started), "the same node opened a new stream"
            elif self.known(node_id):
                strangers = [s for s in others if not s.node_id or not self.known(s.node_id)]
                if not strangers:
                    self.refused += 1
                    return False
                victim = min(strangers, key=lambda s: s.started)
                why = f"stream limit reached and node {node_id!r} is one of ours"
            else:
                self.refused += 1
                log.warning("stream %s (node %r) refused: %d streams open, the limit", stream.id, node_id, len(others))
                return False
            self._streams.pop(victim.id, None)
            self.evicted += 1
        victim.evict(why)
        return True

    def add_callbacks(self, cb) -> None:
        self.callbacks.append(cb)

    def remove_callbacks(self, cb) -> None:
        self.callbacks.remove(cb)

    @staticmethod
    def key_for(node, delta: bool = False) -> str:
        return snapshot_key(node_role(node), delta)

    def StreamAggregatedResources(self, request_iterator, context):  # noqa: N802 - gRPC name
        return SotwStream(self, request_iterator, context).run()

    def DeltaAggregatedResources(self, request_iterator, context):  # noqa: N802 - gRPC name
        return DeltaStream(self, request_iterator, context).run()


# gRPC accepts a few streams over the admission limit, so that admission (which needs
# the node id of the first request) can make room for one of ours
ADMISSION_HEADROOM = 16


class ElasticExecutor(futures.Executor):
    """A thread pool whose idle threads end after `idle` seconds (the standard one keeps
    every thread it ever made: after a peak of hundreds of streams, hundreds of idle
    threads and their memory stay for good). When a busy period ends (streams down to a
    quarter of their peak), freed heap memory is handed back to the system (malloc_trim).

    Every item is accounted for when it is queued: it reserves an idle thread, or starts
    a new one, or (at the limit) waits for the next thread that finishes. An idle thread
    whose wait times out leaves only if it is not reserved, so no item is ever left
    without a thread."""

    def __init__(self, max_workers: int, idle: float = 10.0, name: str = "xds"):
        self._max, self._idle_s, self._name = max_workers, idle, name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._free = 0  # idle threads no queued item has reserved
        self._backlog = 0  # items queued at the limit, for the next thread that finishes
        self._busy = 0
        self._peak = 0
        self._shutdown = False
        self._ids = itertools.count(1)

    @property
    def threads(self) -> int:
        with self._lock:
            return self._threads

    def submit(self, fn, /, *args, **kwargs):
        future: futures.Future = futures.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new work after shutdown")
            self._queue.put((future, fn, args, kwargs))
            if self._free > 0:
                self._free -= 1
            elif self._threads < self._max:
                self._threads += 1
                threading.Thread(target=self._work, name=f"{self._name}-{next(self._ids)}", daemon=True).start()
            else:
                self._backlog += 1
        return future

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._idle_s)
            except queue.Empty:
                with self._lock:
                    if self._free > 0 or self._shutdown:
                        self._free -= 1 if self._free > 0 else 0
                        self._threads -= 1
                        return
                continue  # an item reserved an idle thread: it may be this one
            if item is None:
                with self._lock:
                    self._threads -= 1
                return
            with self._lock:
                self._busy += 1
                self._peak = max(self._peak, self._busy)
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # noqa: BLE001 - handed to the future, as the standard pool does
                    future.set_exception(exc)
            del item, future, fn, args, kwargs
            with self._lock:
                self._busy -= 1
                if self._backlog > 0:
                    self._backlog -= 1  # this thread takes a queued item that found no thread
                else:
                    self._free += 1
                trim = self._peak >= 32 and self._busy <= self._peak // 4
                if trim:
                    self._peak = self._busy
            if trim:
                release_free_memory()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            threads = self._threads
        for _thread in range(threads):
            self._queue.put(None)


def release_free_memory() -> None:
    """Return freed heap pages to the system (glibc; a no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives busy threads heaps of their own (up to 8 per core), and memory freed
    in them is rarely returned: with hundreds of short-lived stream threads that is tens
    of MB kept after a peak. Called once at start, before threads exist. A
    MALLOC_ARENA_MAX set in the environment wins."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def serve(
    ads: AdsServer, address: str, port: int = 0, keepalive: float = 30.0, keepalive_timeout: float = 10.0
) -> tuple[grpc.Server, int]:
    """Start the gRPC server on address:port, or on a Unix socket when `address` is
    "unix:/path" (created by the caller's umask; see serve_unix). Returns the server and
    the bound port (port 0 picks a free one; 1 for a socket)."""
    slots = ads.max_streams + ADMISSION_HEADROOM
    server = grpc.server(
        ElasticExecutor(max_workers=slots),
        options=[
            ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
            ("grpc.max_send_message_length", 512 * 1024 * 1024),
            # ping every peer; one that does not answer (a hung or stopped process, a
            # dead link) is dropped and its stream freed
            ("grpc.keepalive_time_ms", int(keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", int(keepalive_timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.http2.min_sent_ping_interval_without_data_ms", int(keepalive * 1000)),
            ("grpc.http2.min_time_between_pings_ms", int(keepalive * 1000)),
            ("grpc.http2.min_ping_interval_without_data_ms", 5000),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=slots,
    )
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(ads, server)
    if address.startswith("unix:"):
        target = address
    else:
        target = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    bound = server.add_insecure_port(target)
    if bound == 0:
        raise OSError(f"cannot listen for xDS on {target} (address in use?)")
    server.start()
    return server, bound
