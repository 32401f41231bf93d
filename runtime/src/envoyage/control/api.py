"""The control API: JSON over HTTP, served on the control Unix socket.

Every error is JSON: {"error": "...", "field": "..."} with a 4xx status for bad input.
Nothing is changed unless the whole request is valid. See docs/control-api.md.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import peewee
from flask import Blueprint, Flask, current_app, jsonify, request
from waitress import wasyncore
from werkzeug.exceptions import HTTPException

from ..model import InputError
from .plane import Conflict, ControlPlane, NotFound, OwnedBySource, RegistryRefused

bp = Blueprint("control_api", __name__, url_prefix="/v1")


def _plane() -> ControlPlane:
    return current_app.extensions["envoyage.plane"]


def _error(status: int, message: str, field: str | None = None):
    body: dict[str, Any] = {"error": message}
    if field:
        body["field"] = field
    return jsonify(body), status


class UnsupportedMediaType(Exception):
    pass


def _json_body() -> Any:
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(
            f"send a JSON body with Content-Type: application/json (got {mimetype or 'no content type'})"
        )
    raw = request.get_data(cache=False)
    if not raw:
        raise InputError("body", "a JSON object is required")
    try:
        return json.loads(raw)
    except RecursionError:
        raise InputError("body", "JSON nested too deeply") from None
    except ValueError as exc:  # also bad UTF-8
        raise InputError("body", f"not valid JSON: {exc}") from None


@bp.get("/status")
def status():
    return jsonify(_plane().status_report().to_json())


@bp.get("/services")
def list_services():
    return jsonify({"services": _plane().list_services()})


@bp.post("/services")
def add_service():
    body = _json_body()
    if isinstance(body, list):  # a batch: all or nothing, one push
        if not body:
            raise InputError("body", "an empty list adds nothing")
        if len(body) > 10_000:
            raise InputError("body", "at most 10000 services per request")
        return jsonify({"services": _plane().add_services(body)}), 201
    return jsonify(_plane().add_service(body)), 201


@bp.get("/services/<name>")
def get_service(name: str):
    return jsonify(_plane().get_service(name))


@bp.route("/services/<name>", methods=["PUT", "PATCH"])
def update_service(name: str):
    # PUT replaces the whole desired state (omitted fields take their defaults); PATCH
    # changes only the fields given. `?dry_run=1` on PUT: the service as it would be
    # stored (validated and normalized), nothing stored (automation compares with it)
    if request.method == "PUT" and request.args.get("dry_run", "") in ("1", "true", "yes"):
        return jsonify(_plane().preview_service(name, _json_body()))
    return jsonify(_plane().update_service(name, _json_body(), replace=request.method == "PUT"))


@bp.delete("/services/<name>")
def remove_service(name: str):
    _plane().remove_service(name)
    return "", 204


@bp.post("/backup")
def backup():
    body = _json_body()
    path = body.get("path") if isinstance(body, dict) else None
    if not isinstance(path, str) or not path.startswith("/"):
        raise InputError("path", "give the absolute path of the backup file to write")
    try:
        return jsonify(_plane().registry.backup(path)), 201
    except OSError as exc:
        raise InputError("path", f"cannot write {path}: {exc.strerror or exc}") from None


@bp.get("/events")
def events():
    try:
        limit = int(request.args.get("limit", "100"))
    except ValueError:
        raise InputError("limit", "must be a number") from None
    if not 1 <= limit <= 10_000:
        raise InputError("limit", "must be between 1 and 10000")
    return jsonify({"events": _plane().registry.events(limit=limit)})


def create_app(plane: ControlPlane) -> Flask:
    app = Flask("envoyage.control")
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024  # batches of up to 10,000 services
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["envoyage.plane"] = plane
    app.register_blueprint(bp)

    @app.errorhandler(InputError)
    def _input_error(exc: InputError):
        return _error(400, exc.message, exc.field)

    @app.errorhandler(NotFound)
    def _not_found(exc: NotFound):
        return _error(404, f"no service named '{exc.args[0]}'", "name")

    @app.errorhandler(Conflict)
    def _conflict(exc: Conflict):
        return _error(409, f"a service named '{exc.args[0]}' already exists", "name")

    @app.errorhandler(OwnedBySource)
    def _owned(exc: OwnedBySource):
        return _error(409, str(exc), "name")

    @app.errorhandler(RegistryRefused)
    def _refused(exc: RegistryRefused):
        return _error(503, str(exc))

    @app.errorhandler(UnsupportedMediaType)
    def _media(exc: UnsupportedMediaType):
        return _error(415, str(exc), "body")

    @app.errorhandler(peewee.OperationalError)
    def _store(exc: peewee.OperationalError):
        # the transaction rolled back: nothing was changed. SQLite may have rolled back by
        # itself, so peewee's own rollback fails: the cause is further down the chain.
        chain: list[str] = []
        cause: BaseException | None = exc
        while cause is not None and len(chain) < 10:
            chain.append(str(cause).lower())
            cause = cause.__cause__ or cause.__context__
        if any("full" in text for text in chain):
            return _error(507, "the disk holding the registry is full; nothing was changed (free space and retry)")
        return _error(503, f"the registry cannot be written ({exc}); nothing was changed")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        return _error(exc.code or 500, exc.description or exc.name)

    return app


class ApiServer:
    """The control API's waitress server, its event loop on a thread of its own.

    waitress' loop is not thread-safe: closing its sockets from another thread (what
    `server.close()` does) can leave the loop in a select() on a closed descriptor, which
    then fails with "Bad file descriptor" in that thread. `stop()` lets the running
    requests finish (up to `timeout`), then has the loop's own thread close every socket,
    so the loop ends by itself, and waits for it."""

    def __init__(self, server: Any):
        self.server = server
        self._thread = threading.Thread(target=server.run, name="control-api", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop within `timeout` seconds in all (one deadline for every step, well inside
        the daemon's own stop budget, so the registry still closes after it): first no
        new connection is accepted (the listening socket is closed by the loop's thread),
        then the running requests may finish, then the loop closes every socket."""
        deadline = time.monotonic() + timeout
        server = self.server
        if self._thread.is_alive():
            not_accepting = threading.Event()

            def stop_accepting() -> None:
                # the listening socket only (waitress' own close() also closes the trigger the
                # running requests still need to hand back their answers)
                wasyncore.dispatcher.close(server)
                not_accepting.set()

            server.trigger.pull_trigger(stop_accepting)
            not_accepting.wait(max(0.0, deadline - time.monotonic()))
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=max(0.0, deadline - time.monotonic()))
        if not self._thread.is_alive():
            wasyncore.close_all(server._map)
            return
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        self._thread.join(max(0.0, deadline - time.monotonic()))
