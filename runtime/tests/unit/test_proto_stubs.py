"""The committed edge-link stubs are what proto/ generates (the wheel cannot see proto/)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_committed_stubs_match_the_proto(tmp_path):
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen-proto.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    # the messages' .pyi type stubs too (mypy reads them: the .py files are descriptors)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.suffix in (".py", ".pyi"))
    assert generated, "nothing generated"
    for rel in generated:
        committed = ROOT / "runtime" / "src" / rel
        assert committed.exists(), f"{rel} is generated but not committed (run scripts/gen-proto.sh)"
        assert committed.read_text() == (tmp_path / rel).read_text(), (
            f"{rel} differs from what proto/ generates: run scripts/gen-proto.sh and commit"
        )


def test_the_runtime_wheel_includes_the_module_utils_and_the_stubs(tmp_path):
    """The key code lives once in plugins/module_utils; the runtime's wheel carries it."""
    import zipfile

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT / "runtime"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("envoyage-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "envoyage/module_utils/_wireguard.py",
        "envoyage/link/v1/link_pb2.py",
        "envoyage/link/v1/link_pb2_grpc.py",
        "envoyage/edge/daemon.py",
    } <= names
    source = (ROOT / "plugins" / "module_utils" / "_wireguard.py").read_bytes()
    assert zipfile.ZipFile(wheel).read("envoyage/module_utils/_wireguard.py") == source
