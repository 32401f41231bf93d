"""Snapshot cache: the current snapshot per key (node role), and who to wake on change.

Like go-control-plane's SimpleCache, the cache knows nothing about streams; streams
register a wake-up function and pull the snapshot when woken. `set_snapshot` refuses
an inconsistent snapshot and keeps the previous one.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

from .snapshot import Snapshot
from .validate import check_snapshot

Waker = Callable[[], None]


def snapshot_key(role: str, delta: bool) -> str:
    """Delta nodes get their role's VHDS variant of the snapshot (one resource per host)."""
    return f"{role}/vhds" if delta else role


class SnapshotCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: dict[str, Snapshot] = {}
        self._watchers: dict[str, dict[int, Waker]] = {}
        self._ids = itertools.count(1)

    def set_snapshot(self, key: str, snapshot: Snapshot) -> bool:
        """Install a snapshot; returns False if it equals the current one (nothing to push)."""
        with self._lock:
            current = self._snapshots.get(key)
        check_snapshot(snapshot, previous=current)
        with self._lock:
            current = self._snapshots.get(key)
            if current is not None and current.versions == snapshot.versions:
                return False
            self._snapshots[key] = snapshot
            wakers = list(self._watchers.get(key, {}).values())
        for wake in wakers:
            wake()
        return True

    def get_snapshot(self, key: str) -> Snapshot | None:
        with self._lock:
            return self._snapshots.get(key)

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._snapshots)

    def watch(self, key: str, wake: Waker) -> Callable[[], None]:
        """Call `wake` whenever the snapshot for `key` changes; returns the cancel function."""
        watch_id = next(self._ids)
        with self._lock:
            self._watchers.setdefault(key, {})[watch_id] = wake

        def cancel() -> None:
            with self._lock:
                self._watchers.get(key, {}).pop(watch_id, None)

        return cancel
