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


def test_a_path_that_fits_but_whose_temporary_name_would_not_is_bound_directly():
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        name = "s" * (107 - len(os.fsencode(Path(d))) - 1)  # exactly 107 bytes: fits, the temporary name does not
        path = Path(d) / name
        server = socket_server(path, 0o600, None, _listen)
        try:
            assert stat.S_IMODE(path.lstat().st_mode) == 0o600
            assert os.listdir(d) == [name]
        finally:
            server.close()


def test_a_path_too_long_for_a_unix_socket_is_named_in_the_error():
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        path = Path(d) / ("s" * 120)
        with pytest.raises(OSError, match=r"at most 107 bytes .*shorter run_dir"):
            socket_server(path, 0o600, None, _listen)
        assert os.listdir(d) == []


def test_a_start_that_fails_after_binding_stops_the_server_and_leaves_no_socket():
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        path = Path(d) / "api.sock"
        bound: list[socket.socket] = []
        stopped: list[socket.socket] = []

        def bind(bind_path: Path) -> socket.socket:
            bound.append(_listen(bind_path))
            return bound[-1]

        (path / "x").mkdir(parents=True)  # something in the way: the rename after the bind fails
        with pytest.raises(OSError):
            socket_server(path, 0o600, None, bind, discard=stopped.append)
        assert stopped == bound and len(bound) == 1
        bound[0].close()
        assert os.listdir(d) == ["api.sock"] and (path / "x").is_dir()  # no temporary socket; the directory untouched


def test_a_temporary_socket_left_by_a_crashed_start_is_cleared_before_the_next():
    from envoyage.process import prepare_socket

    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        path = Path(d) / "api.sock"
        crashed = _listen(Path(d) / ".api.sock.new")
        crashed.close()  # the process is gone; its socket file stays
        prepare_socket(path)
        server = socket_server(path, 0o600, None, _listen)
        try:
            assert os.listdir(d) == ["api.sock"]
        finally:
            server.close()
