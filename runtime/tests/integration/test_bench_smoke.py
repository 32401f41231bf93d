"""The benchmark harness runs end to end (small N): `bash bench/run.sh --smoke`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_bench_smoke_run_writes_report_and_raw_samples(workdir, docker):
    out, results = workdir / "benchmarks.md", workdir / "results"
    run = subprocess.run(
        ["bash", str(ROOT / "bench" / "run.sh"), "--smoke", "--out", str(out), "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = out.read_text()
    for section in ("## Config → live", "## Discovery → live", "## Scale", "## Topology A", "## Goals"):
        assert section in report
    (raw,) = results.glob("smoke-*.json")
    data = json.loads(raw.read_text())
    for key in ("envoyage-sotw", "envoyage-delta", "envoy-files", "caddy", "nginx"):
        assert data["config_live"][key]["live_ms"]["n"] == 5, key
    assert data["discovery_live"]["live_ms"]["n"] == 3
    for n in ("20", "100"):
        row = data["scale"][n]
        assert row["sotw_cold_ms"] > 0 and row["delta_one_change_ms"]["n"] == 2
    ta = data["topology_a"]
    assert ta["event_to_first_200"]["vps_ms"]["n"] == 3 and ta["one_change"]["vps_ms"]["n"] == 2
    assert ta["event_to_first_200"]["dns_ms"]["n"] == 3 and ta["one_change"]["dns_ms"]["n"] == 2
    assert ta["unbound"]["zones"] >= 100 and ta["unbound"]["start_to_answer_ms"]["n"] == 2
    for path in ("direct", "lan", "vps"):
        assert ta["paths"][path]["rps"] > 0 and ta["paths"][path]["non_2xx"] == 0, path


def test_soak_smoke_run_meets_its_goals(workdir):
    out, results = workdir / "benchmarks.md", workdir / "results"
    out.write_text("# Benchmarks\n\nearlier sections stay\n")
    run = subprocess.run(
        ["bash", str(ROOT / "bench" / "soak.sh"), "--smoke", "--out", str(out), "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = out.read_text()
    assert report.startswith("# Benchmarks\n\nearlier sections stay\n") and "## Soak" in report
    (raw,) = results.glob("soak-smoke-*.json")
    data = json.loads(raw.read_text())
    assert data["churn"]["failed"] == 0 and data["churn"]["cycles"] == 100
    # bounded: descriptors come back, no warming stall, status lists every past node (few here)
    assert data["goals"]["fds_back_within_5"] and data["goals"]["no_warming_stall"], data["goals"]
    assert data["status_nodes"] == 1 + 1 + 20 + 200  # home Envoy, stopped consumer, clients, past nodes
