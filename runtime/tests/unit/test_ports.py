"""The ports support.ports hands out: never one the kernel hands out itself, never one
another test run holds, never one something listens on."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import ports

CHILD = """
import sys
from support import ports
taken = [ports.free_port() for _ in range(5)]
print(" ".join(map(str, sorted(ports._blocks))), flush=True)
sys.stdin.read()  # hold the block until the parent is done
"""


def test_runs_beside_each_other_never_get_the_same_ports():
    tests_dir = Path(ports.__file__).resolve().parents[1]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(tests_dir), "PATH": "/usr/bin:/bin"},
    )
    try:
        theirs = {int(n) for n in child.stdout.readline().split()}
        assert theirs
        mine = [ports.free_port() for _ in range(2 * ports.BLOCK + 10)]  # more than one block's worth
        blocks = {(p - ports.LOW) // ports.BLOCK for p in mine}
        assert not blocks & theirs, f"a port of a block another run holds: {sorted(blocks & theirs)}"
        elow, ehigh = ports._ephemeral_range()
        assert not [p for p in mine if elow <= p <= ehigh]  # the kernel never picks these for anyone
    finally:
        child.communicate("", timeout=10)


def test_a_port_something_listens_on_is_skipped():
    first = ports.free_port()
    held = []  # someone else (not a test run) listens on every port of ours but one
    try:
        for p in ports._ports:
            if p != first:
                h = socket.socket()
                h.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Envoy: TIME_WAIT is no obstacle
                held.append(h)
                try:
                    h.bind(("127.0.0.1", p))
                    h.listen(1)
                except OSError:
                    pass
        assert all(ports.free_port() == first for _ in range(3))
    finally:
        for h in held:
            h.close()


def test_a_machine_whose_ephemeral_range_starts_low_gets_ports_above_it(monkeypatch):
    monkeypatch.setattr(ports, "_ephemeral_range", lambda: (1024, 65000))  # a common tuning
    starts = ports._block_starts()
    assert starts and all(s > 65000 and s + ports.BLOCK <= 65536 for s in starts)


def test_no_room_outside_the_ephemeral_range_is_a_named_error(monkeypatch):
    monkeypatch.setattr(ports, "_ephemeral_range", lambda: (1024, 65535))
    monkeypatch.setattr(ports, "_ports", [])
    monkeypatch.setattr(ports, "_blocks", {})
    with pytest.raises(RuntimeError, match="outside the kernel's ephemeral range 1024-65535"):
        ports.free_port()
