"""What each connected Envoy has: per node and type, last sent, last ACK, last NACK.

`StatusTracker` is a set of server callbacks (go-control-plane's CallbackFuncs idea);
the server calls every registered callback object, so tests can record the stream too.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from ..status import NodeStatus, TypeStatus
from . import types as T
from .cache import snapshot_key


class BaseCallbacks:
    """What the xDS server tells its observers about each stream (every method a no-op
    here: inherit and override what you need). The server calls them in the stream's
    thread; an exception is logged, never breaks the stream."""

    def on_stream_open(self, stream_id: int, node_id: str, role: str, delta: bool) -> None:
        pass

    def on_stream_closed(self, stream_id: int, node_id: str) -> None:
        pass

    def on_response(self, stream_id: int, node_id: str, type_url: str, response: Any) -> None:
        """`response`: the DiscoveryResponse or DeltaDiscoveryResponse sent."""

    def on_ack(self, stream_id: int, node_id: str, type_url: str, version: str) -> None:
        pass

    def on_nack(self, stream_id: int, node_id: str, type_url: str, version: str, message: str) -> None:
        pass

    def on_reported(self, stream_id: int, node_id: str, type_url: str, version: str, in_sync: bool) -> None:
        """A (re)connecting Envoy said what it holds of the type (sotw: `version`; delta: its
        resources, `version` the current one when they match, else ""); `in_sync`: it holds
        the current snapshot's."""


def _type(node: NodeStatus, type_url: str) -> TypeStatus:
    return node.types.setdefault(T.short(type_url), TypeStatus())


class StatusTracker(BaseCallbacks):
    """Disconnected nodes are forgotten `forget_after` seconds after they left, and at
    most `max_past` of them are kept (the most recent), so churn and impostors cannot
    grow this without bound or make `status` slow."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        on_nack: Callable[[str, str, str, str], None] | None = None,
        on_connect: Callable[[str, str, bool], None] | None = None,
        forget_after: float = 3600.0,
        max_past: int = 1000,
    ):
        self._lock = threading.Lock()
        self._nodes: dict[str, NodeStatus] = {}
        self._clock = clock
        self._nack_hook = on_nack
        self._connect_hook = on_connect
        self.forget_after = forget_after
        self.max_past = max_past
        self._past = 0  # disconnected nodes held

    def _prune(self) -> None:
        """Called with the lock held."""
        now = self._clock()
        past = [n for n in self._nodes.values() if not n.connected]
        stale = {n.node_id for n in past if now - n.disconnected_at > self.forget_after}
        keep = [n for n in past if n.node_id not in stale]
        if len(keep) > self.max_past:
            keep.sort(key=lambda n: n.disconnected_at)
            stale.update(n.node_id for n in keep[: len(keep) - self.max_past])
        for node_id in stale:
            del self._nodes[node_id]
        self._past = len(past) - len(stale)

    def on_stream_open(self, stream_id, node_id, role, delta):
        with self._lock:
            node = self._nodes.get(node_id)
            if node is not None and not node.connected:
                self._past -= 1
            if node is None or not node.connected:
                node = NodeStatus(node_id=node_id, role=role, delta=delta, connected_since=self._clock())
                self._nodes[node_id] = node
            node.role, node.delta, node.connected = role, delta, True
            node.snapshot = snapshot_key(role, delta)
            node.streams += 1
        if self._connect_hook:
            self._connect_hook(node_id, role, delta)

    def on_stream_closed(self, stream_id, node_id):
        with self._lock:
            node = self._nodes.get(node_id)
            if node is not None:
                node.streams -= 1
                if node.streams <= 0:
                    node.connected = False
                    node.disconnected_at = self._clock()
                    self._past += 1
                    if self._past > self.max_past:
                        self._prune()

    def on_response(self, stream_id, node_id, type_url, response):
        version = getattr(response, "version_info", "") or getattr(response, "system_version_info", "")
        with self._lock:
            node = self._nodes.get(node_id)
            if node is not None:
                ts = _type(node, type_url)
                ts.last_sent_version, ts.last_sent_at = version, self._clock()
                ts.responses_sent += 1

    def on_ack(self, stream_id, node_id, type_url, version):
        with self._lock:
            node = self._nodes.get(node_id)
            if node is not None:
                ts = _type(node, type_url)
                if version != ts.last_acked_version:
                    ts.reported_at_reconnect = False
                ts.last_acked_version, ts.last_acked_at = version, self._clock()

    def on_reported(self, stream_id, node_id, type_url, version, in_sync):
        with self._lock:
            node = self._nodes.get(node_id)
            if node is not None and in_sync:
                ts = _type(node, type_url)
                ts.last_acked_version = version
                ts.last_acked_at = ts.reported_at = self._clock()
                ts.reported_at_reconnect = True

    def on_nack(self, stream_id, node_id, type_url, version, message):
        with self._lock:
            node = self._nodes.get(node_id)
            if node is not None:
                ts = _type(node, type_url)
                ts.last_nack_version, ts.last_nack_message = version, message
                ts.last_nack_at = self._clock()
                ts.nacks += 1
        if self._nack_hook:
            self._nack_hook(node_id, T.short(type_url), version, message)

    def role(self, node_id: str) -> str:
        with self._lock:
            node = self._nodes.get(node_id)
            return node.role if node is not None else ""

    def acked(self, node_id: str, type_url: str) -> tuple[str, str]:
        """(the node's snapshot key, the version of `type_url` it last ACKed)."""
        with self._lock:
            node = self._nodes.get(node_id)
            if node is None:
                return "", ""
            ts = node.types.get(T.short(type_url))
            return node.snapshot, ts.last_acked_version if ts else ""

    def snapshot(self) -> list[NodeStatus]:
        """Every node known, by node id: copies, which the tracker no longer changes."""
        with self._lock:
            self._prune()
            return [
                dataclasses.replace(n, types={k: dataclasses.replace(t) for k, t in n.types.items()})
                for n in sorted(self._nodes.values(), key=lambda n: n.node_id)
            ]
