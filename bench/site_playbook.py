"""The collection's site playbook on two bare instances (the README's first command,
scripts/demo-nodes.sh): from the command's start to the first request answered through
the VPS, the playbook's own share of it, and a second run (changed=0).

Warm caches: the base image, the apt archives and lists, and the wheelhouse are kept
under /var/cache/envoyage between runs (the first run on a machine builds them)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "eyb-site"
SUBNET = "198.18.82"


def _steps(stderr: str) -> dict[int, int]:
    """'[5/6 31s] ...' progress lines -> {step: seconds since the start}."""
    return {int(m.group(1)): int(m.group(2)) for m in re.finditer(r"\[(\d)/6 (\d+)s\]", stderr)}


def site_playbook(workdir: Path) -> dict:
    env = {
        **os.environ,
        "ENVOYAGE_NODES_NAME": NAME,
        "ENVOYAGE_NODES_SUBNET": SUBNET,
        "ENVOYAGE_NODES_DIR": str(workdir / "nodes"),
        "ENVOYAGE_NODES_DOMAIN": "bench.test",
    }
    demo = ["bash", str(ROOT / "scripts" / "demo.sh")]
    subprocess.run(demo + ["stop"], env=env, capture_output=True, timeout=120)
    try:
        t0 = time.monotonic()
        first = subprocess.run(demo, env=env, capture_output=True, text=True, timeout=1800)
        total = time.monotonic() - t0
        if first.returncode != 0:
            return {"skipped": f"the demo failed: {(first.stderr or '')[-400:]}"}
        steps = _steps(first.stderr)
        answered = re.search(r"answers through the VPS, (\d+) s after the start", first.stderr)
        recap = re.findall(r"changed=(\d+)", (workdir / "nodes" / "site.log").read_text())
        inv = workdir / "nodes" / "inventory.yml"
        rerun_env = {
            **env,
            "ANSIBLE_COLLECTIONS_PATH": str(workdir / "nodes" / "collections"),
            "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_NOCOLOR": "1",
        }
        t1 = time.monotonic()
        second = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", str(inv), str(ROOT / "site.yml")],
            env=rerun_env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        second_s = time.monotonic() - t1
        changed = [int(c) for c in re.findall(r"changed=(\d+)", second.stdout)]
        return {
            "first_request_s": int(answered.group(1)) if answered else round(total),
            "playbook_s": steps.get(6, 0) - steps.get(5, 0),
            "before_playbook_s": steps.get(5, 0),
            "first_changed": [int(c) for c in recap],
            "second_run_s": round(second_s, 1),
            "second_changed": changed,
            "second_ok": second.returncode == 0,
        }
    finally:
        subprocess.run(demo + ["stop"], env=env, capture_output=True, timeout=120)
