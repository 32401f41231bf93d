"""The ADS server: admission of streams and the registry of the open ones, and the gRPC
server that carries them. The protocols are in sotw.py (state of the world) and delta.py
(incremental), on the plumbing they share in stream.py.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc

from ..process import ElasticExecutor
from .cache import SnapshotCache, snapshot_key
from .delta import DeltaStream
from .sotw import SotwStream
from .stream import Stream, node_role

log = logging.getLogger("envoyage.xds")

# Bounds on what a client can make this server hold (any local process can connect when
# ADS listens on TCP): a node over these limits is refused (stream.py bounds the rest).
MAX_NODE_ID = 256  # characters
MAX_NODE_METADATA = 16 * 1024  # bytes of the node's metadata
MAX_NODE_BYTES = 512 * 1024  # the whole Node (Envoy lists its few hundred extensions there)
MAX_REQUEST_BYTES = 4 * 1024 * 1024  # one request from Envoy (they are small)


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


def role_key(node, delta: bool = False) -> str:
    """The snapshot key of a node by default: its role's (the VHDS variant for delta)."""
    return snapshot_key(node_role(node), delta)


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
        self.key_for: Callable[..., str] = key_for if key_for is not None else role_key
        self.callbacks = list(callbacks)
        self.stopping = threading.Event()
        self.max_streams = max_streams
        self.known = known
        self.first_request_timeout = first_request_timeout
        self._streams: dict[int, Stream] = {}
        self._streams_lock = threading.Lock()
        self.refused = 0
        self.evicted = 0

    def _streams_add(self, stream: Stream) -> None:
        with self._streams_lock:
            self._streams[stream.id] = stream

    def _streams_remove(self, stream: Stream) -> None:
        with self._streams_lock:
            self._streams.pop(stream.id, None)

    def stream_count(self) -> int:
        with self._streams_lock:
            return len(self._streams)

    def admit_node(self, stream: Stream, node) -> None:
        """Admit `stream`, whose first request names `node`, or abort it with the reason."""
        problem = node_problem(node)
        if problem:
            log.warning("stream %s: refused: %s", stream.id, problem)
            stream.context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        if not self.admit(stream, node.id):
            stream.context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this xDS server admits {self.max_streams} streams",
            )

    def admit(self, stream: Stream, node_id: str) -> bool:
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

    def StreamAggregatedResources(self, request_iterator, context):  # noqa: N802 - gRPC name
        return SotwStream(self, request_iterator, context).run()

    def DeltaAggregatedResources(self, request_iterator, context):  # noqa: N802 - gRPC name
        return DeltaStream(self, request_iterator, context).run()


# gRPC accepts a few streams over the admission limit, so that admission (which needs
# the node id of the first request) can make room for one of ours
ADMISSION_HEADROOM = 16


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
