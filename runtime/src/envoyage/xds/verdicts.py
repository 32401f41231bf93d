"""Envoy's own verdict, per service: a service whose resources Envoy rejects is dropped
with Envoy's message, and everyone else is pushed (the failure policy, held to the end).

Envoy NACKs a whole response: with state of the world one bad virtual host rejects the
route configuration, and every later change stays unpushed. `Verdicts` finds the
service(s) responsible from the difference between the rejected snapshot and the last
one that node ACKed: one service is rejected at once; several are bisected (half of the
suspects tried, the others held back, and Envoy's ACK or NACK of that snapshot decides
which half holds the culprit) until one is left. A rejection lasts until the service
changes (its content hash), so a fixed label or API update is tried again.

Pure state; the control plane feeds it ACKs and NACKs and asks it what to hold back.
It keeps one `Verdicts` per node role: what the VPS Envoy rejects is held back from the
edge's set only (the LAN keeps serving it), so nothing that can speak as the edge's
Envoy can take a service off home's LAN.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ..model import ServiceState
from . import types as T
from .snapshot import Snapshot
from .translate import DEFAULT_HOST, service_of

# while bisecting, a snapshot whose verdict does not come within this time ends the
# bisection (the node went away, say): everything held back is served again
VERDICT_TIMEOUT_S = 10.0
MESSAGE_LIMIT = 1024  # characters of Envoy's message kept with a rejection


def services_in_change(type_url: str, rejected: Snapshot, acked: Snapshot | None) -> set[str]:
    """The services whose resources of `type_url` are new or changed in `rejected`
    compared with `acked` (None: the node ACKed nothing we know: every service)."""
    new = rejected.get(type_url)
    old = acked.get(type_url) if acked is not None else {}
    out: set[str] = set()
    if type_url == T.ROUTE:
        for name, res in new.items():
            before = old.get(name)
            old_hosts = {
                vh.name: vh.SerializeToString(deterministic=True)
                for vh in (before.message.virtual_hosts if before is not None else ())
            }
            for vh in res.message.virtual_hosts:
                if vh.name != DEFAULT_HOST and old_hosts.get(vh.name) != vh.SerializeToString(deterministic=True):
                    out.add(vh.name)
        return out
    for name, res in new.items():
        before = old.get(name)
        if before is None or before.version != res.version:
            service = service_of(type_url, name)
            if service:
                out.add(service)
    return out


@dataclass
class _Bisection:
    node_id: str
    key: str
    type_url: str
    message: str
    unknown: set[str]  # not yet known to be good
    suspects: set[str]  # known to hold a culprit
    trying: set[str] = field(default_factory=set)  # served in the snapshot under test
    test_version: str = ""  # that snapshot's version of type_url
    deadline: float = 0.0


HOME_REJECTED = "Envoy rejected this service: {message}; not served until it changes"
EDGE_REJECTED = (
    "the VPS Envoy ({node}) rejected this service: {message}; not served through the VPS until it "
    "changes (the LAN still serves it)"
)


class Verdicts:
    """`rejected_text`: the problem a rejected service shows ({node}: the node that
    rejected it, {message}: Envoy's words)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, rejected_text: str = HOME_REJECTED):
        self._lock = threading.Lock()
        self._clock = clock
        self.rejected_text = rejected_text
        self.rejected: dict[str, tuple[str, str, str]] = {}  # service -> (content hash, Envoy's message, node)
        self._bisect: _Bisection | None = None

    # -- what the control plane asks ------------------------------------------------
    def withheld(self, states: Iterable[ServiceState]) -> dict[str, str]:
        """Services not to serve now, each with the problem to show. Rejections of
        services that changed or went away are forgotten here."""
        with self._lock:
            current = {s.name: s.spec.content_hash for s in states if s.spec is not None}
            self.rejected = {n: r for n, r in self.rejected.items() if current.get(n) == r[0]}
            out = {n: self.rejected_text.format(node=node, message=msg) for n, (_h, msg, node) in self.rejected.items()}
            b = self._bisect
            if b is not None and self._clock() > b.deadline:
                self._bisect = b = None  # no verdict came: serve everything again
            if b is not None:
                for name in b.unknown - b.trying:
                    out.setdefault(
                        name,
                        "held back for a moment: Envoy rejected a change and the "
                        "service responsible is being narrowed down",
                    )
            return out

    def under_test(self, key: str, snapshot: Snapshot | None) -> None:
        """The control plane built the snapshot a bisection step asked for."""
        with self._lock:
            b = self._bisect
            if b is not None and b.key == key and snapshot is not None and not b.test_version:
                b.test_version = snapshot.version(b.type_url)

    def bisecting(self) -> bool:
        with self._lock:
            return self._bisect is not None

    # -- what Envoy says --------------------------------------------------------------
    def on_nack(
        self,
        node_id: str,
        key: str,
        type_url: str,
        version: str,
        message: str,
        candidates: set[str],
        states: Mapping[str, ServiceState],
    ) -> str | None:
        """Returns what changed ("rejected NAME", "bisecting N", ...) or None."""
        message = message[:MESSAGE_LIMIT]
        with self._lock:
            b = self._bisect
            if b is not None:
                if (node_id, key, type_url, version) != (b.node_id, b.key, b.type_url, b.test_version):
                    return None  # not the snapshot under test
                b.message = message
                b.suspects = set(b.trying)
                return self._step(states, confirmed=True)
            candidates = {c for c in candidates if c in states and states[c].spec is not None}
            if not candidates:
                return None
            if len(candidates) == 1:
                (name,) = candidates
                spec = states[name].spec
                assert spec is not None  # candidates have a spec (above)
                self.rejected[name] = (spec.content_hash, message, node_id)
                return f"rejected {name}"
            self._bisect = _Bisection(
                node_id, key, type_url, message, unknown=set(candidates), suspects=set(candidates)
            )
            return self._step(states, confirmed=False)

    def on_ack(
        self, node_id: str, key: str, type_url: str, version: str, states: Mapping[str, ServiceState]
    ) -> str | None:
        with self._lock:
            b = self._bisect
            if b is None or (node_id, key, type_url, version) != (b.node_id, b.key, b.type_url, b.test_version):
                return None
            b.unknown -= b.trying
            b.suspects -= b.trying
            return self._step(states, confirmed=False)

    def _step(self, states: Mapping[str, ServiceState], confirmed: bool) -> str:
        """Next bisection step. `confirmed`: the suspects are exactly what Envoy just
        NACKed; a service is only rejected when Envoy rejected it alone, never by
        elimination (a rejection that does not come again clears everyone)."""
        b = self._bisect
        assert b is not None
        b.suspects = {s for s in b.suspects if s in states and states[s].spec is not None}
        if not b.suspects:
            self._bisect = None
            return "bisection ended: Envoy accepted every suspect"
        if len(b.suspects) == 1 and confirmed:
            self._bisect = None
            (name,) = b.suspects
            spec = states[name].spec
            assert spec is not None  # suspects come from candidates, which have a spec
            self.rejected[name] = (spec.content_hash, b.message, b.node_id)
            return f"rejected {name}"
        ordered = sorted(b.suspects)
        b.trying = set(ordered[: max(1, len(ordered) // 2)])
        b.test_version = ""
        b.deadline = self._clock() + VERDICT_TIMEOUT_S
        return f"bisecting {len(ordered)} suspects"
