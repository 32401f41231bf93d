"""What both daemons (`envoyage control` on home, `envoyage edge` on the VPS) need from
the operating system: directories they can trust, Unix sockets no one else can use,
and a stop on SIGTERM/SIGINT that cannot hang forever."""

from __future__ import annotations

import ctypes
import itertools
import logging
import os
import pwd
import queue
import signal
import socket
import stat
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import TypeVar

log = logging.getLogger("envoyage")

T = TypeVar("T")


class AlreadyRunning(RuntimeError):
    pass


# sun_path holds 108 bytes, one of them the terminating NUL
_MAX_SOCKET_PATH = 107


def _temporary_socket(path: Path) -> Path:
    return path.with_name(f".{path.name}.new")


def socket_server(
    path: Path, mode: int, gid: int | None, create: Callable[[Path], T], discard: Callable[[T], object] | None = None
) -> T:
    """Run `create(bind_path)`, which binds a Unix socket at `bind_path`: a temporary name
    next to `path`, bound under umask 0177 (no moment in which anyone else may connect),
    given its group and `mode`, then renamed to `path`. So the socket appears at `path`
    only with its final group and mode, whatever the process's umask, and a client that
    finds it (an Envoy starting beside the control plane) is never refused by a mode that
    is still being set. A `path` so long that the temporary name would not fit is bound
    directly (still under umask 0177, so the socket is never more open than 0600 before
    its mode is set). If anything fails after `create`, the server is given to `discard`
    (stop it) and the temporary socket is removed: a failed start leaves nothing behind."""
    bind_path = _temporary_socket(path)
    if len(os.fsencode(bind_path)) > _MAX_SOCKET_PATH:
        bind_path = path
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise OSError(
            f"{path}: a Unix socket path may be at most {_MAX_SOCKET_PATH} bytes "
            f"({len(os.fsencode(path))} here); choose a shorter run_dir or socket path"
        )
    if bind_path != path:
        bind_path.unlink(missing_ok=True)
    created = False
    server: T
    try:
        old = os.umask(0o177)
        try:
            server = create(bind_path)
            created = True
        finally:
            os.umask(old)
        if gid is not None:
            os.chown(bind_path, -1, gid)
        os.chmod(bind_path, mode)
        if bind_path != path:
            os.rename(bind_path, path)
    except BaseException:
        if created and discard is not None:
            try:
                discard(server)
            except Exception:  # the original error is the one to report
                log.exception("could not stop the server of %s after a failed start", path)
        if bind_path != path:
            bind_path.unlink(missing_ok=True)
        raise
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
    # a run that crashed between binding and renaming left its temporary socket
    leftover = _temporary_socket(path)
    try:
        if stat.S_ISSOCK(leftover.lstat().st_mode):
            leftover.unlink()
    except FileNotFoundError:
        pass
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


class ElasticExecutor(futures.Executor):
    """A thread pool whose idle threads end after `idle` seconds (the standard one keeps
    every thread it ever made: after a peak of hundreds of streams, hundreds of idle
    threads and their memory stay for good). When a busy period ends (streams down to a
    quarter of their peak), freed heap memory is handed back to the system (malloc_trim).

    Every item is accounted for when it is queued: it reserves an idle thread, or starts
    a new one, or (at the limit) waits for the next thread that finishes. An idle thread
    whose wait times out leaves only if it is not reserved, so no item is ever left
    without a thread."""

    def __init__(self, max_workers: int, idle: float = 10.0, name: str = "xds"):
        self._max, self._idle_s, self._name = max_workers, idle, name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._free = 0  # idle threads no queued item has reserved
        self._backlog = 0  # items queued at the limit, for the next thread that finishes
        self._busy = 0
        self._peak = 0
        self._shutdown = False
        self._ids = itertools.count(1)

    @property
    def threads(self) -> int:
        with self._lock:
            return self._threads

    def submit(self, fn, /, *args, **kwargs):
        future: futures.Future = futures.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new work after shutdown")
            self._queue.put((future, fn, args, kwargs))
            if self._free > 0:
                self._free -= 1
            elif self._threads < self._max:
                self._threads += 1
                threading.Thread(target=self._work, name=f"{self._name}-{next(self._ids)}", daemon=True).start()
            else:
                self._backlog += 1
        return future

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._idle_s)
            except queue.Empty:
                with self._lock:
                    if self._free > 0 or self._shutdown:
                        self._free -= 1 if self._free > 0 else 0
                        self._threads -= 1
                        return
                continue  # an item reserved an idle thread: it may be this one
            if item is None:
                with self._lock:
                    self._threads -= 1
                return
            with self._lock:
                self._busy += 1
                self._peak = max(self._peak, self._busy)
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # noqa: BLE001 - handed to the future, as the standard pool does
                    future.set_exception(exc)
            del item, future, fn, args, kwargs
            with self._lock:
                self._busy -= 1
                if self._backlog > 0:
                    self._backlog -= 1  # this thread takes a queued item that found no thread
                else:
                    self._free += 1
                trim = self._peak >= 32 and self._busy <= self._peak // 4
                if trim:
                    self._peak = self._busy
            if trim:
                release_free_memory()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            threads = self._threads
        for _thread in range(threads):
            self._queue.put(None)


def release_free_memory() -> None:
    """Return freed heap pages to the system (glibc; a no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives busy threads heaps of their own (up to 8 per core), and memory freed
    in them is rarely returned: with hundreds of short-lived stream threads that is tens
    of MB kept after a peak. Called once at start, before threads exist. A
    MALLOC_ARENA_MAX set in the environment wins."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass
