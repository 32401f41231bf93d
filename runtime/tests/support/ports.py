"""Ports for the tests' own listeners (Envoy's listeners and admin, the control plane's
xDS, the lab's ports) that stay theirs until they are bound.

Asking the kernel for a free port (bind to port 0, close, hand the number on) is a race
on a busy machine: until the test's Envoy binds it, the kernel may give the same port to
anyone else (another test's pick, any outgoing connection). So the ports handed out here
come from below the kernel's ephemeral range, which the kernel never hands out itself,
in blocks of BLOCK ports that one process reserves for its lifetime with a lock file
(/tmp/envoyage-ports/block-N): test runs beside each other, from any checkout, never get
the same port. A port is handed out only if nothing is bound to it now; inside a
process the block is handed out round-robin, so a port comes round again only after
BLOCK more picks (by then the test that had it has bound it, or is gone).
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import threading
from pathlib import Path

LOW, HIGH = 20000, 32768  # above every fixed port the demo, the lab and the benchmarks use
BLOCK = 100
LOCK_DIR = Path("/tmp/envoyage-ports")

_lock = threading.Lock()
_blocks: dict[int, int] = {}  # block number -> the descriptor of its locked lock file
_ports: list[int] = []
_cursor = 0


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2]
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _block_starts() -> list[int]:
    """The first port of every block outside the kernel's ephemeral range: below it (from
    LOW up to HIGH) and, on a machine whose range starts low (e.g. "1024 65000"), above it."""
    elow, ehigh = _ephemeral_range()
    below = range(LOW, min(HIGH, elow) - BLOCK + 1, BLOCK)
    above = range(max(ehigh + 1, LOW), 65536 - BLOCK + 1, BLOCK)
    return [*below, *above]


def _reserve_block() -> None:
    starts = _block_starts()
    count = len(starts)
    if not count:
        elow, ehigh = _ephemeral_range()
        raise RuntimeError(
            f"no block of {BLOCK} test ports outside the kernel's ephemeral range {elow}-{ehigh} "
            "(net.ipv4.ip_local_port_range): leave room below or above it"
        )
    try:
        LOCK_DIR.mkdir()
        LOCK_DIR.chmod(0o1777)  # every user's test runs take blocks here (whatever the umask)
    except FileExistsError:
        pass
    start = random.randrange(count)
    for i in range(count):
        n = (start + i) % count
        if n in _blocks:
            continue
        try:
            fd = os.open(LOCK_DIR / f"block-{n}", os.O_RDONLY | os.O_CREAT, 0o644)
        except PermissionError:  # another user's lock file this user may not read
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        _blocks[n] = fd  # held (open and locked) for the process's lifetime
        _ports.extend(range(starts[n], starts[n] + BLOCK))
        return
    raise RuntimeError(
        f"every block of test ports ({count} blocks of {BLOCK} outside the ephemeral range) is taken "
        f"by other test runs or unreadable in {LOCK_DIR}"
    )


def _unbound(port: int) -> bool:
    """Nothing listens on `port` (TCP, any address); TIME_WAIT leftovers do not count,
    as Envoy binds with SO_REUSEADDR."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    with socket.socket(type=socket.SOCK_DGRAM) as u:  # DNS servers in the lab take the port over UDP too
        try:
            u.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port no other test is handed while this process runs it round (see above)."""
    global _cursor
    with _lock:
        while True:
            for _ in range(len(_ports)):
                port = _ports[_cursor % len(_ports)]
                _cursor += 1
                if _unbound(port):
                    return port
            _reserve_block()  # every port of ours is in use: take another block
