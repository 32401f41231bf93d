"""Lint and types, as CI runs them: `ruff check`, `ruff format --check` and `mypy` over the
whole project (the configurations are ruff.toml and mypy.ini at its root). Each test fails
with the tool's own output, so the message names every file and line to fix.

Run the tools by hand from the project root with the runtime's venv:
`.venv/bin/python -m ruff check .`, `.venv/bin/python -m ruff format .`,
`.venv/bin/python -m mypy`."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    if importlib.util.find_spec(tool) is None:
        pytest.fail(
            f"{tool} is not installed in {sys.prefix} (it is in the runtime's test extra: pip install -e 'runtime[test]')"
        )
    return subprocess.run(
        [sys.executable, "-m", tool, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ruff_check_finds_nothing():
    out = _run("ruff", "check", "--output-format", "concise", "--no-fix", ".")
    assert out.returncode == 0, f"ruff check found problems:\n{out.stdout}{out.stderr}"


def test_ruff_format_leaves_every_file_as_it_is():
    out = _run("ruff", "format", "--check", ".")
    assert out.returncode == 0, (
        f"ruff format would change these files (run `.venv/bin/python -m ruff format .`):\n{out.stdout}{out.stderr}"
    )


def test_mypy_finds_no_type_error():
    out = _run("mypy")
    assert out.returncode == 0, f"mypy found type errors:\n{out.stdout}{out.stderr}"
