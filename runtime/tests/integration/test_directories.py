"""State, run and log directories made or tampered with by another user are refused,
naming the path and the owner (issue 10, item 3)."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml
from support.helpers import ENVOYAGE, make_config

from envoyage.control.daemon import ControlDaemon
from envoyage.process import UnsafeDirectory

NOBODY = 65534


@pytest.mark.parametrize(
    "which, prepare, needle",
    [
        ("state", lambda p: (p.mkdir(), os.chown(p, NOBODY, NOBODY)), "is owned by nobody"),
        ("run", lambda p: (p.mkdir(), os.chmod(p, 0o777)), "writable by everyone (mode 0777); chmod go-w"),
        ("run", lambda p: (p.mkdir(), os.chmod(p, 0o775)), "writable by its group"),
        ("log", lambda p: (p.mkdir(), os.chmod(p, 0o757)), "writable by everyone"),
        (
            "state",
            lambda p: (p.parent.joinpath("elsewhere").mkdir(), p.symlink_to(p.parent / "elsewhere")),
            "is a symbolic link",
        ),
    ],
)
def test_unsafe_directories_are_refused(workdir, which, prepare, needle):
    path = workdir / which
    prepare(path)
    with pytest.raises(UnsafeDirectory) as exc:
        ControlDaemon(make_config(workdir))
    assert str(path) in str(exc.value) and needle in str(exc.value)
    assert not (workdir / "state" / "envoyage.db").exists()


def test_a_log_directory_shared_with_envoys_group_is_fine(workdir):
    (workdir / "log").mkdir()
    os.chmod(workdir / "log", 0o775)
    d = ControlDaemon(make_config(workdir))
    d.plane.registry.close()
    assert oct(os.stat(workdir / "state").st_mode & 0o777) == "0o700"


def test_the_command_says_why_and_exits_1(workdir):
    (workdir / "run").mkdir()
    os.chown(workdir / "run", NOBODY, NOBODY)
    cfg = workdir / "control.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(workdir / "state"),
                "run_dir": str(workdir / "run"),
                "log_dir": str(workdir / "log"),
                "docker": {"enabled": False},
            }
        )
    )
    r = subprocess.run([ENVOYAGE, "--config", str(cfg), "control"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and f"refusing to use {workdir / 'run'}: it is owned by nobody" in r.stderr
    assert "Traceback" not in r.stderr
