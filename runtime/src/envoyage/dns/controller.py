"""The DNS controller: keeps Unbound's local zones equal to the served services' domains.

Every change is applied live through `unbound-control` (only the zones that changed; no
restart, no reload of anything else) and persisted to the include file Unbound loads at
start, written atomically (a crash never leaves half a file). Applying happens on a
thread of its own, so a slow or dead Unbound never holds up a push to Envoy. After a
failure, and at start, the controller reconciles: it reads the zones Unbound has, and
fixes the ones it manages (those in its include file or wanted now); zones it never
wrote (Unbound's defaults, the user's own) are never touched.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from ..module_utils.wireguard import write_secret_file
from .unbound import UnboundControl, UnboundError
from .zones import Zone, desired_zones, diff, parse_include, render_include

log = logging.getLogger("envoyage.dns")


class DnsController:
    def __init__(self, control: UnboundControl, include_file: Path, address: str, address6: str | None = None,
                 ttl: int = 60, retry: float = 5.0):
        self.control = control
        self.include_file = include_file
        self.address, self.address6, self.ttl = address, address6, ttl
        self.retry = retry
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.desired: dict[str, Zone] | None = None  # None until the first set_domains
        self.applied: dict[str, Zone] | None = None  # what Unbound has, as far as we know (None: reconcile)
        self.known: set[str] = set()  # every zone this controller manages
        self.written = ""
        self.state: dict[str, Any] = {"last_apply_at": 0.0, "last_apply_ms": None, "applies": 0, "error": None,
                                      "error_since": 0.0, "last_change": ""}
        try:
            prior = parse_include(include_file.read_text())
            self.known |= set(prior)
            self.written = include_file.read_text()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot read %s: %s", include_file, exc)
        self._thread = threading.Thread(target=self._run, name="dns", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)

    def set_domains(self, domains: Iterable[str]) -> None:
        desired = desired_zones(domains, self.address, self.address6, self.ttl)
        with self._lock:
            if desired == self.desired:
                return
            self.desired = desired
            self.known |= set(desired)
        self._wake.set()

    # -- the worker -----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.retry if self.state["error"] else None)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.apply_now()

    def apply_now(self) -> bool:
        """Persist and apply the desired zones; True when Unbound has them."""
        with self._lock:
            desired = self.desired
            known = set(self.known)
        if desired is None:
            return False
        started = time.perf_counter()
        text = render_include(desired)
        if text != self.written:
            try:
                write_secret_file(str(self.include_file), text, mode=0o644)  # atomic; Unbound must read it
                self.written = text
            except OSError as exc:
                return self._failed(f"cannot write {self.include_file}: {exc.strerror or exc}")
        try:
            if self.applied is None:
                current = self._read_unbound(known)
            else:
                current = self.applied
            add, remove = diff(current, desired)
            self.control.remove(remove)
            self.control.add(add)
        except UnboundError as exc:
            self.applied = None  # reconcile with what Unbound really has next time
            return self._failed(str(exc))
        self.applied = desired
        elapsed = (time.perf_counter() - started) * 1000
        if add or remove:
            change = f"+{len(add)} -{len(remove)} zones"
            log.info("dns: %s applied to Unbound (%d zones, %.1f ms)", change, len(desired), elapsed)
            self.state["last_change"] = change
        if self.state["error"]:
            log.info("dns: Unbound is in sync again")
        self.state.update(last_apply_at=time.time(), last_apply_ms=round(elapsed, 2), error=None, error_since=0.0)
        self.state["applies"] += 1
        return True

    def _read_unbound(self, known: set[str]) -> dict[str, Zone]:
        zones = self.control.list_zones()
        data = self.control.list_data()
        return {name: Zone(kind, tuple(sorted(data.get(name, ())))) for name, kind in zones.items() if name in known}

    def _failed(self, why: str) -> bool:
        if self.state["error"] != why:
            log.warning("dns: %s; retrying every %.0f s (the include file is up to date, so a restarted Unbound "
                        "starts with every entry)", why, self.retry)
        if not self.state["error"]:
            self.state["error_since"] = time.time()
        self.state["error"] = why
        return False

    # -- status -----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        with self._lock:
            desired = self.desired or {}
        st = dict(self.state)
        st.update(entries=len(desired), in_sync=self.applied is not None and self.applied == desired,
                  include_file=str(self.include_file), answer=self.address, answer6=self.address6)
        return st
