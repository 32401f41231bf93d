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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..module_utils._files import write_secret_file
from ..status import DnsStatus
from .unbound import UnboundControl, UnboundError
from .zones import Zone, desired_zones, diff, parse_include, render_include

log = logging.getLogger("envoyage.dns")


class DnsController:
    def __init__(
        self,
        control: UnboundControl,
        include_file: Path,
        address: str,
        address6: str | None = None,
        ttl: int = 60,
        retry: float = 5.0,
    ):
        self.control = control
        self.include_file = include_file
        self.address, self.address6, self.ttl = address, address6, ttl
        self.retry = retry
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.desired: dict[str, Zone] | None = None  # None until the first set_domains
        self.applied: dict[str, Zone] | None = None  # what Unbound has, as far as we know (None: reconcile)
        # the zones this controller manages: those in its include file (Unbound loaded them
        # at start) and those it added itself; any other zone in Unbound is left alone
        self.known: set[str] = set()
        self.foreign: set[str] = set()  # wanted, but Unbound has them from elsewhere
        self.written = ""
        self.state: dict[str, Any] = {
            "last_apply_at": 0.0,
            "last_apply_ms": None,
            "applies": 0,
            "error": None,
            "error_since": 0.0,
            "last_change": "",
        }
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
        if self._thread.is_alive():  # a daemon that failed to start stops a controller never started
            self._thread.join(10)

    def set_domains(self, domains: Iterable[str]) -> None:
        desired = desired_zones(domains, self.address, self.address6, self.ttl)
        with self._lock:
            if desired == self.desired:
                return
            self.desired = desired
        self._wake.set()

    # -- the worker -----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.retry if self.state["error"] else None)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.apply_now()
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any bug; say what happened
                log.exception("dns: applying failed")
                self.applied = None
                self._failed(f"applying failed unexpectedly ({type(exc).__name__}: {exc})")

    def apply_now(self) -> bool:
        """Persist and apply the desired zones; True when Unbound has them."""
        with self._lock:
            desired = self.desired
            known = set(self.known)
        if desired is None:
            return False
        started = time.perf_counter()
        unbound_error = None
        current = self.applied
        if current is None:
            try:
                current = self._read_unbound(known, desired)
            except UnboundError as exc:
                unbound_error = str(exc)
        # zones Unbound has from its own configuration are neither written nor applied
        # (a second definition in the include file would stop Unbound from starting)
        wanted = {n: z for n, z in desired.items() if n not in self.foreign}
        text = render_include(wanted)
        if text != self.written:
            try:
                write_secret_file(str(self.include_file), text, mode=0o644)  # atomic; Unbound must read it
                self.written = text
            except OSError as exc:
                return self._failed(f"cannot write {self.include_file}: {exc.strerror or exc}")
        if unbound_error:
            return self._failed(unbound_error)
        assert current is not None  # read from Unbound above, or unbound_error returned
        try:
            add, remove = diff(current, wanted)
            self.control.remove(remove)
            with self._lock:
                self.known |= set(add)  # ours from now on, even if adding fails half way
            self.control.add(add)
        except UnboundError as exc:
            self.applied = None  # reconcile with what Unbound really has next time
            return self._failed(str(exc))
        self.applied = wanted
        elapsed = (time.perf_counter() - started) * 1000
        if add or remove:
            change = f"+{len(add)} -{len(remove)} zones"
            log.info("dns: %s applied to Unbound (%d zones, %.1f ms)", change, len(wanted), elapsed)
            self.state["last_change"] = change
        if self.state["error"]:
            log.info("dns: Unbound is in sync again")
        self.state.update(last_apply_at=time.time(), last_apply_ms=round(elapsed, 2), error=None, error_since=0.0)
        self.state["applies"] += 1
        return True

    def _read_unbound(self, known: set[str], desired: dict[str, Zone]) -> dict[str, Zone]:
        """The managed zones as Unbound has them. A wanted zone that Unbound has from its
        own configuration (not ours) is left alone and named as a problem."""
        zones = self.control.list_zones()
        data = self.control.list_data()
        foreign = {n for n in desired if n in zones and n not in known}
        if foreign != self.foreign:
            for name in sorted(foreign - self.foreign):
                log.warning(
                    "dns: Unbound already has a zone %s from its own configuration; Envoyage leaves it alone "
                    "(remove it there to let Envoyage answer it)",
                    name,
                )
            self.foreign = foreign
        return {name: Zone(kind, tuple(sorted(data.get(name, ())))) for name, kind in zones.items() if name in known}

    def _failed(self, why: str) -> bool:
        if self.state["error"] != why:
            log.warning(
                "dns: %s; retrying every %.0f s (the include file is up to date, so a restarted Unbound "
                "starts with every entry)",
                why,
                self.retry,
            )
        if not self.state["error"]:
            self.state["error_since"] = time.time()
        self.state["error"] = why
        return False

    # -- status -----------------------------------------------------------------------
    def status(self) -> DnsStatus:
        with self._lock:
            desired = self.desired or {}
        wanted = {n: z for n, z in desired.items() if n not in self.foreign}
        return DnsStatus(
            **self.state,
            entries=len(desired),
            in_sync=self.applied is not None and self.applied == wanted,
            include_file=str(self.include_file),
            answer=self.address,
            answer6=self.address6,
            foreign=sorted(self.foreign),
        )
