"""What both daemons (`envoyage control` on home, `envoyage edge` on the VPS) need from
the operating system: directories they can trust, Unix sockets no one else can use,
and a stop on SIGTERM/SIGINT that cannot hang forever."""

from __future__ import annotations

import logging
import os
import pwd
import signal
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("envoyage")


class AlreadyRunning(RuntimeError):
    pass


def socket_server(path: Path, mode: int, gid: int | None, create):
    """Run `create` (which binds a Unix socket at `path`) under umask 0177, so there is
    no moment in which anyone else may connect, then give the socket its group and mode."""
    old = os.umask(0o177)
    try:
        server = create()
    finally:
        os.umask(old)
    if gid is not None:
        os.chown(path, -1, gid)
    os.chmod(path, mode)
    return server


class UnsafeDirectory(OSError):
    pass


def own_directory(path: Path, mode: int, group_write: bool) -> None:
    """Create `path` (mode `mode`) or check that the existing one is safe to use: a real
    directory (not a symlink), owned by this user, and not writable by others (nor by its
    group unless `group_write`). Another user who could write there could replace a
    socket or move the registry's files away."""
    try:
        path.mkdir(mode=mode, parents=True)
        os.chmod(path, mode)  # whatever the umask
        return
    except FileExistsError:
        pass
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeDirectory(
            f"refusing to use {path}: it is a symbolic link (to {os.readlink(path)}); "
            "point the setting at the real directory"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"refusing to use {path}: it is not a directory")
    if st.st_uid != os.geteuid():
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        raise UnsafeDirectory(
            f"refusing to use {path}: it is owned by {owner}, not by the user running "
            f"envoyage ({pwd.getpwuid(os.geteuid()).pw_name}); chown it or remove it"
        )
    writable = stat.S_IWOTH | (0 if group_write else stat.S_IWGRP)
    if st.st_mode & writable:
        who = "everyone" if st.st_mode & stat.S_IWOTH else "its group"
        raise UnsafeDirectory(
            f"refusing to use {path}: it is writable by {who} (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); chmod {'go-w' if not group_write else 'o-w'} it"
        )


def prepare_socket(path: Path) -> None:
    """Make room for a socket at `path`: a stale socket of a crashed run is removed, a
    live one means another control plane, and anything that is not a socket is left
    alone (a misconfigured path never deletes a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(
            f"{path} exists and is not a socket; refusing to replace it (move it away or choose another path)"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink()  # stale socket from a crashed run
    else:
        raise AlreadyRunning(f"another control plane is serving {path}")
    finally:
        probe.close()


def wait_for_termination() -> None:
    """Block until SIGTERM or SIGINT."""
    done = threading.Event()

    def _on_signal(signum, _frame):
        log.info("received %s", signal.Signals(signum).name)
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    done.wait()


def stop_within(stop: Callable[[], None], timeout: float) -> None:
    """Run `stop`; if it hangs (a stuck client, a stuck disk) longer than `timeout`, exit
    anyway: Envoy keeps its configuration, and the registry's WAL is consistent as it is."""
    watchdog = threading.Timer(timeout, _give_up_stopping, args=(timeout,))
    watchdog.daemon = True
    watchdog.start()
    stop()
    watchdog.cancel()


def _give_up_stopping(timeout: float) -> None:
    log.error("shutting down took more than %.0f s; exiting now", timeout)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(1)
