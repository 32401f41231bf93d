"""A tiny JSON client for the control API on its Unix socket (stdlib only)."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


class Unreachable(RuntimeError):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class ControlClient:
    def __init__(self, socket_path: str, timeout: float = 30.0):
        self.socket_path = str(socket_path)
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None) -> Any:
        conn = _UnixConnection(self.socket_path, self.timeout)
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        try:
            conn.request(method, "/v1" + path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except FileNotFoundError:
            raise Unreachable(
                f"no control plane socket at {self.socket_path} (is `envoyage control` running?)"
            ) from None
        except (ConnectionRefusedError, PermissionError) as exc:
            raise Unreachable(f"cannot reach the control plane at {self.socket_path}: {exc.strerror}") from None
        except OSError as exc:
            raise Unreachable(f"control plane at {self.socket_path} did not answer: {exc}") from None
        finally:
            conn.close()
        data = json.loads(raw) if raw else None
        if resp.status >= 400:
            msg = data.get("error", resp.reason) if isinstance(data, dict) else resp.reason
            field = data.get("field") if isinstance(data, dict) else None
            raise ApiError(resp.status, msg, field)
        return data

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)
