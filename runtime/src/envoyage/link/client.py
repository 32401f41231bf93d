"""The edge's side of the edge link (the VPS): it dials the control plane's link server
(server.py) across the tunnel, proves it holds the link key, takes the resource sets home
sends and reports what the VPS Envoy made of them."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import grpc

from .. import __version__
from ..module_utils import _linkkey as linkkey
from . import LINK_VERSION, VERSION_KEY
from .v1 import link_pb2, link_pb2_grpc

log = logging.getLogger("envoyage.edge")


class LinkClient:
    """Keeps one stream to the control plane, reconnecting with backoff (0.2 s doubling
    to 10 s; 10 s after a failed handshake, 30 s after a version mismatch).

    The handshake comes first (envoyage.module_utils._linkkey): the edge sends a nonce,
    checks home's proof of the link key, and only then proves the key itself and takes
    anything from home. The secret never leaves this process."""

    def __init__(self, target: str, secret: str, edge_id: str, apply, envoy_report, stop: threading.Event):
        self.target = target
        self._secret = secret
        self.edge_id = edge_id
        self.apply = apply  # ResourceSet -> error string ("" = applied)
        self.envoy_report = envoy_report  # () -> EnvoyReport
        self.stop = stop
        self.have_version = ""
        self.outbox: queue.Queue | None = None  # one per connection
        self.state: dict[str, Any] = {"connected": False, "last_error": "", "since": 0.0}
        self._call = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="edge-link", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop: cancels the current call (the loop ends once `stop` is set)."""
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()

    def report_soon(self) -> None:
        outbox = self.outbox
        if outbox is not None:
            try:
                outbox.put_nowait("report")  # never blocks an xDS callback; a report is already due then
            except queue.Full:
                pass

    def _requests(self, outbox: queue.Queue, handshake: queue.Queue, nonce: bytes, done: threading.Event):
        yield link_pb2.EdgeMessage(
            hello=link_pb2.Hello(
                edge_id=self.edge_id, software_version=__version__, have_version=self.have_version, nonce=nonce
            )
        )
        while True:  # nothing more until home has proven the key (then our proof), or a refusal
            if done.is_set() or self.stop.is_set():
                return
            try:
                answer = handshake.get(timeout=0.5)
            except queue.Empty:
                continue
            yield answer
            if answer.WhichOneof("kind") != "proof":
                return
            break
        yield link_pb2.EdgeMessage(envoy=self.envoy_report())
        while not done.is_set() and not self.stop.is_set():
            try:
                item = outbox.get(timeout=0.5)
            except queue.Empty:
                continue
            if item == "report":
                while True:  # several ACKs at once: one report
                    try:
                        extra = outbox.get_nowait()
                    except queue.Empty:
                        break
                    if extra != "report":
                        yield extra
                yield link_pb2.EdgeMessage(envoy=self.envoy_report())
            else:
                yield item

    def _run(self) -> None:
        backoff = 0.2
        while not self.stop.is_set():
            try:
                backoff = self._connect(backoff)
            except Exception:  # noqa: BLE001 - the link must outlive any bug: log it, reconnect
                log.exception("edge link: unexpected error; reconnecting")
                self.state["last_error"] = "unexpected error (see the edge's log)"
            if self.stop.is_set():
                break
            self.stop.wait(backoff)
            backoff = min(backoff * 2, 10.0) if backoff < 10.0 else backoff

    def _check_home(self, msg: link_pb2.HomeMessage, nonce: bytes) -> str | None:
        """None if `msg` is home's challenge with a good proof of the link key, else why not."""
        if msg.WhichOneof("kind") != "challenge":
            return (
                f"it sent {msg.WhichOneof('kind') or 'an empty message'} before proving the link key (a control "
                f"plane older than edge-link version {LINK_VERSION}, or not our home)"
            )
        c = msg.challenge
        if len(c.nonce) != linkkey.NONCE_BYTES or not c.salt or len(c.salt) > 64:
            return "its challenge is malformed"
        key = linkkey.derive(self._secret, c.salt)
        if not linkkey.verify(key, c.proof, linkkey.HOME, linkkey.EDGE, self.edge_id[:64], c.salt, nonce, c.nonce):
            return (
                "home's proof of the link key does not verify: the edge's secret and home's link key are not "
                "from the same `envoyage link-secret` (a wrong secret on the edge, a wrong key on home, or not "
                "this edge's home); rerun playbooks/rotate.yml"
            )
        return None

    def _connect(self, backoff: float) -> float:
        """One connection, until it ends; returns the backoff before the next one."""
        channel = grpc.insecure_channel(
            self.target,
            options=[
                ("grpc.max_receive_message_length", 256 * 1024 * 1024),
                ("grpc.keepalive_time_ms", 10_000),
                ("grpc.keepalive_timeout_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_pings_without_data", 0),
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2_000),
            ],
        )
        done = threading.Event()
        outbox: queue.Queue = queue.Queue(maxsize=1000)
        handshake: queue.Queue = queue.Queue(maxsize=1)
        nonce = linkkey.new_nonce()
        proven = False
        refused: str | None = None  # why this edge refused the control plane
        hang_up = None
        try:
            call = link_pb2_grpc.EdgeLinkStub(channel).Connect(
                self._requests(outbox, handshake, nonce, done), metadata=[(VERSION_KEY, str(LINK_VERSION))]
            )
            with self._lock:
                self._call = call
            if self.stop.is_set():
                call.cancel()
            for msg in call:
                if refused is not None:
                    continue  # nothing is taken; waiting for home to close (or the timer to hang up)
                if not proven:
                    refused = self._check_home(msg, nonce)
                    if refused is None:
                        c = msg.challenge
                        key = linkkey.derive(self._secret, c.salt)
                        handshake.put(
                            link_pb2.EdgeMessage(
                                proof=link_pb2.EdgeProof(
                                    proof=linkkey.proof(
                                        key, linkkey.EDGE, linkkey.HOME, self.edge_id[:64], c.salt, nonce, c.nonce
                                    )
                                )
                            )
                        )
                        proven = True
                        self.outbox = outbox  # reports may go out from now on
                    else:
                        # say why (home's status names it), give it a moment to go out, then hang up
                        handshake.put(link_pb2.EdgeMessage(refusal=link_pb2.Refusal(reason=refused)))
                        hang_up = threading.Timer(2.0, call.cancel)
                        hang_up.daemon = True
                        hang_up.start()
                    continue
                kind = msg.WhichOneof("kind")
                if kind == "welcome":
                    self.state.update(connected=True, last_error="", since=time.time())
                    backoff = 0.2
                    log.info(
                        "edge link: connected to %s (control plane %s)", self.target, msg.welcome.software_version[:64]
                    )
                elif kind == "resources":
                    error, problems = _outcome(self.apply(msg.resources))
                    # a set taken in part is asked for again on reconnect (an upgraded edge takes it whole)
                    if not error:
                        self.have_version = msg.resources.version if not problems else ""
                    outbox.put(
                        link_pb2.EdgeMessage(
                            applied=link_pb2.Applied(
                                version=msg.resources.version, error=error[:1024], problems=[p[:300] for p in problems]
                            )
                        )
                    )
                elif kind == "ping":
                    outbox.put(link_pb2.EdgeMessage(pong=link_pb2.Pong(nonce=msg.ping.nonce)))
            error = "the control plane closed the link"
        except grpc.RpcError as exc:
            code = exc.code()
            error = f"{code.name if code else 'error'}: {exc.details() or ''}".strip()
            if refused is not None:
                pass  # home hung up on our refusal, or we did
            elif code == grpc.StatusCode.UNAUTHENTICATED:
                log.error("edge link: the control plane refused this edge: %s (check the edge secret)", exc.details())
                backoff = max(backoff, 10.0)
            elif code == grpc.StatusCode.FAILED_PRECONDITION:
                log.error("edge link: %s", exc.details())
                backoff = max(backoff, 30.0)
            elif code != grpc.StatusCode.CANCELLED:
                log.warning("edge link: %s (retrying in %.1f s)", error, backoff)
        finally:
            done.set()
            if hang_up is not None:
                hang_up.cancel()
            self.outbox = None
            with self._lock:
                call, self._call = self._call, None
            if call is not None:
                call.cancel()
            channel.close()
            self.state.update(connected=False)
        if refused is not None:
            error = f"refused the control plane at {self.target}: {refused}"
            log.error("edge link: %s; nothing from it is applied", error)
            backoff = max(backoff, 10.0)
        self.state["last_error"] = error
        return backoff


def _outcome(result) -> tuple[str, list[str]]:
    """What `apply` returned: an error string, or (error, problems)."""
    if isinstance(result, tuple):
        return result[0], list(result[1])
    return result, []
