"""The daemons' Unix sockets (the control API, xDS, the edge's xDS) appear with their
final group and mode, whatever the umask of the process that creates them."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
import threading
from pathlib import Path

import pytest

from envoyage.process import socket_server


def _listen(bind_path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(bind_path))
    s.listen(1)
    return s


@pytest.mark.parametrize("umask", [0o077, 0o027, 0o000])
@pytest.mark.parametrize("mode", [0o660, 0o600])
def test_a_socket_appears_only_with_its_final_group_and_mode(umask, mode):
    with tempfile.TemporaryDirectory(dir="/tmp") as d:  # short: Unix socket paths <= 107 bytes
        path = Path(d) / "api.sock"
        first_seen: list[int] = []
        done = threading.Event()

        def watch() -> None:  # what a client starting beside the daemon would find
            while not done.is_set():
                try:
                    first_seen.append(stat.S_IMODE(path.lstat().st_mode))
                    return
                except FileNotFoundError:
                    pass

        watcher = threading.Thread(target=watch)
        watcher.start()
        old = os.umask(umask)
        try:
            server = socket_server(path, mode, os.getgid(), _listen)
        finally:
            os.umask(old)
            done.set()
            watcher.join()
        try:
            st = path.lstat()
            assert stat.S_ISSOCK(st.st_mode)
            assert stat.S_IMODE(st.st_mode) == mode, f"{stat.S_IMODE(st.st_mode):04o} under umask {umask:04o}"
            assert st.st_gid == os.getgid()
            assert first_seen in ([], [mode]), f"a client saw {first_seen[0]:04o} before the mode was set"
            assert os.listdir(d) == ["api.sock"]  # nothing left at the temporary name
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(str(path))  # the renamed socket is the one listening
        finally:
            server.close()
