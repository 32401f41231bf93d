"""The tunnel as the control plane sees it (topology A): it reads the WireGuard
interface's status (the `wireguard` role owns the interface itself) and adds the edge
link's round-trip time."""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable

from ..module_utils._wireguard import WireGuardError, read_status, tunnel_problem
from ..status import TunnelStatus


class TunnelMonitor:
    """`status()` reads the tunnel at most every `max_age` seconds (status calls are cheap):
    the status file of the wireguard role's root-run writer when there is one (the control
    plane's user may not use wireguard-go's socket; a stale file is a problem), else
    `wg show` on the interface."""

    def __init__(
        self,
        interface: str,
        rtt: Callable[[], float | None] = lambda: None,
        max_age: float = 2.0,
        reader=read_status,
        status_file=None,
    ):
        self.interface = interface
        self.rtt = rtt
        self.max_age = max_age
        self.reader = reader if status_file is None else functools.partial(reader, status_file=str(status_file))
        self._lock = threading.Lock()
        self._cached: tuple[float, TunnelStatus] | None = None

    def status(self) -> TunnelStatus:
        with self._lock:
            cached = self._cached
        now = time.monotonic()
        if cached is None or now - cached[0] > self.max_age:
            # read outside the lock: a slow `wg` never holds up other status calls
            cached = (now, self._read())
            with self._lock:
                self._cached = cached
        return dataclasses.replace(cached[1], rtt_ms=self.rtt())

    def _read(self) -> TunnelStatus:
        try:
            peers = self.reader(self.interface)
        except WireGuardError as exc:
            return TunnelStatus(interface=self.interface, problem=str(exc))
        out = TunnelStatus(interface=self.interface, peers=peers, problem=tunnel_problem(peers))
        if peers:
            # the VPS is home's only peer
            peer = next(iter(peers.values()))
            out.handshake_age, out.rx_bytes = peer.get("handshake_age"), peer.get("rx_bytes")
            out.tx_bytes, out.endpoint = peer.get("tx_bytes"), peer.get("endpoint")
        return out
