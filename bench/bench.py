"""Envoyage benchmarks, side by side with peers, in one run.

    python bench/bench.py [--smoke] [--out docs/benchmarks.md]

Writes raw samples to bench/results/<UTC timestamp>.json and the report (method, clock
points, machine, figures, goals) to docs/benchmarks.md. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peers import (  # noqa: E402
    BENCH_SCOPE,
    ENVOYAGE,
    Caddy,
    Envoyage,
    EnvoyFiles,
    GcpXds,
    Nginx,
    proc_stats,
    wait_for,
)
from report import write_report  # noqa: E402
from site_playbook import site_playbook  # noqa: E402
from support.helpers import ENVOY, Upstream  # noqa: E402
from topology import topology_a  # noqa: E402

POLL_INTERVAL = 0.001  # the same poller for every system: one GET per millisecond


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Poller:
    """GETs `Host: <host>` on a kept-alive connection until the answer is 200."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def status(self, host: str) -> int:
        for _ in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                self.conn.request("GET", "/", headers={"Host": host})
                resp = self.conn.getresponse()
                resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return resp.status
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
        return 0

    def until_ok(self, host: str, timeout: float = 60.0) -> float:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.status(host) == 200:
                return time.time()
            time.sleep(POLL_INTERVAL)
        raise TimeoutError(f"{host} did not answer 200 within {timeout}s on port {self.port}")


def pct(samples: list[float], p: float) -> float:
    if not samples:
        return float("nan")
    s = sorted(samples)
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(samples: list[float]) -> dict:
    return {
        "n": len(samples),
        "p50": round(pct(samples, 50), 2),
        "p95": round(pct(samples, 95), 2),
        "min": round(min(samples), 2) if samples else None,
        "max": round(max(samples), 2) if samples else None,
        "samples": [round(x, 3) for x in samples],
    }


def wait_acked(system: Envoyage, since: float, timeout: float = 60.0) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        at = system.all_acked_at()
        if at is not None and at >= since:
            return at
        time.sleep(0.005)
    raise TimeoutError("Envoy did not ACK every type in time")


# -------------------------------------------------------------------------- config -> live


def config_live(workdir: Path, upstream: Upstream, changes: int, base: int = 10) -> dict:
    out: dict = {}
    systems = [
        ("envoyage-sotw", lambda d: Envoyage(d, upstream.port, delta=False)),
        ("envoyage-delta", lambda d: Envoyage(d, upstream.port, delta=True)),
        ("envoy-files", lambda d: EnvoyFiles(d, upstream.port)),
        ("caddy", lambda d: Caddy(d, upstream.port) if Caddy.available() else None),
        ("nginx", lambda d: Nginx(d, upstream.port) if Nginx.available() else None),
    ]
    for key, make in systems:
        d = workdir / f"cfg-{key}"
        d.mkdir()
        system = make(d)
        if system is None:
            out[key] = {"skipped": "not installed"}
            log(f"config->live: {key} skipped (not installed)")
            continue
        log(f"config->live: {system.name}, {changes} changes")
        if isinstance(system, Envoyage):
            system.start()
            system.add_many(0, base)
        else:
            system.services = list(range(base))
            system.start()
        poller = Poller(system.http_port)
        poller.until_ok(f"svc-{base - 1}")
        time.sleep(0.2)
        request_ms, first_ok_ms, live_ms = [], [], []
        try:
            for k in range(changes):
                i = base + k
                t0 = time.time()
                system.add(i)
                t_req = time.time()
                t_ok = poller.until_ok(f"svc-{i}")
                t_live = t_ok
                if isinstance(system, Envoyage):
                    t_live = max(t_ok, wait_acked(system, t0))
                request_ms.append((t_req - t0) * 1000)
                first_ok_ms.append((t_ok - t0) * 1000)
                live_ms.append((t_live - t0) * 1000)
                time.sleep(0.05)
        finally:
            system.stop()
        out[key] = {
            "name": system.name,
            "live_ms": summary(live_ms),
            "first_200_ms": summary(first_ok_ms),
            "request_ms": summary(request_ms),
        }
    # CLI start-up, reported separately (the clock above starts when the API request is sent)
    cli = []
    for _ in range(10):
        t0 = time.time()
        subprocess.run([ENVOYAGE, "--version"], capture_output=True, check=True)
        cli.append((time.time() - t0) * 1000)
    out["cli_startup_ms"] = summary(cli)
    return out


# ------------------------------------------------------------------------ discovery -> live


def discovery_live(workdir: Path, upstream: Upstream, containers: int) -> dict:
    try:
        import docker
    except ImportError:
        return {"skipped": "the docker package is missing"}
    sample = HERE.parent / "scripts" / "sample-image.sh"
    built = subprocess.run(["bash", str(sample)], capture_output=True, text=True)
    if built.returncode != 0:
        return {"skipped": f"no dockerd / sample image: {built.stderr.strip()[-300:]}"}
    client = docker.from_env()
    label = "io.envoyage.bench"
    for c in client.containers.list(all=True, filters={"label": label}):
        c.remove(force=True)
    d = workdir / "discovery"
    d.mkdir()
    system = Envoyage(d, upstream.port, delta=False, docker=True).start()
    poller = Poller(system.http_port)
    started: dict[str, float] = {}
    stop = threading.Event()
    events = client.events(decode=True, filters={"type": ["container"], "event": ["start"], "label": [label]})

    def follow():
        for ev in events:
            started[ev["id"]] = ev["timeNano"] / 1e9
            if stop.is_set():
                break

    threading.Thread(target=follow, daemon=True).start()
    log(f"discovery->live: {containers} labelled containers")
    live_ms, start_ms, total_ms = [], [], []
    try:
        for i in range(containers):
            t_run = time.time()
            c = client.containers.run(
                "envoyage/sample-app:1",
                detach=True,
                name=f"ey-bench-{i}",
                labels={
                    label: "1",
                    "envoyage.enable": "true",
                    "envoyage.scope": BENCH_SCOPE,
                    "envoyage.domain": f"disc-{i}",
                    "envoyage.healthcheck": "off",
                },
            )
            t_ok = poller.until_ok(f"disc-{i}")
            wait_for(lambda: c.id in started, 10, what="the start event")
            t_start = started[c.id]
            live_ms.append((t_ok - t_start) * 1000)
            start_ms.append((t_start - t_run) * 1000)
            total_ms.append((t_ok - t_run) * 1000)
    finally:
        stop.set()
        events.close()
        system.stop()
        for c in client.containers.list(all=True, filters={"label": label}):
            c.remove(force=True)
    return {
        "name": system.name,
        "live_ms": summary(live_ms),
        "container_start_ms": summary(start_ms),
        "docker_run_to_200_ms": summary(total_ms),
    }


# ---------------------------------------------------------------------------------- scale


def _all_clusters_active(envoy, n: int) -> bool:
    st = envoy.stats("cluster_manager.")
    return st.get("cluster_manager.active_clusters", 0) >= n + 1 and st.get("cluster_manager.warming_clusters", 0) == 0


def scale(workdir: Path, upstream: Upstream, sizes: list[int], one_change_repeats: int) -> dict:
    out: dict = {}
    for n in sizes:
        row: dict = {}
        # --- gcp-xds: cold (1 -> n) and one change at n
        if GcpXds.available():
            log(f"scale {n}: gcp-xds cold")
            g = GcpXds(workdir, upstream.port, services=1, step=n - 1).start()
            try:
                poller = Poller(g.http_port)
                poller.until_ok("svc-0")
                _, cpu0 = proc_stats(g.server_pid)
                t0 = time.time()
                g.bump()
                poller.until_ok(f"svc-{n - 1}", timeout=300)
                wait_for(lambda: _all_clusters_active(g.envoy, n), 300, interval=0.005, what="gcp clusters")
                t = time.time()
                rss, cpu1 = proc_stats(g.server_pid)
                wait_for(lambda: g.all_acked_after_ms() is not None, 30, what="gcp ALL_ACKED")
                row["gcp_cold_ms"] = (t - t0) * 1000
                row["gcp_cold_own_all_acked_ms"] = g.all_acked_after_ms()
                row["gcp_rss_mb"], row["gcp_cpu_s"] = rss, cpu1 - cpu0
            finally:
                g.stop()
            log(f"scale {n}: gcp-xds one change")
            g = GcpXds(workdir, upstream.port, services=n, step=1).start()
            try:
                poller = Poller(g.http_port)
                poller.until_ok(f"svc-{n - 1}", timeout=300)
                wait_for(lambda: _all_clusters_active(g.envoy, n), 300, interval=0.005, what="gcp clusters")
                samples = []
                for k in range(one_change_repeats):
                    t0 = time.time()
                    g.bump()
                    poller.until_ok(f"svc-{n + k}", timeout=120)
                    wait_for(
                        lambda: _all_clusters_active(g.envoy, n + k + 1), 120, interval=0.002, what="gcp new cluster"
                    )
                    samples.append((time.time() - t0) * 1000)
                    time.sleep(0.3)
                row["gcp_one_change_ms"] = summary(samples)
                row["gcp_rss_after_mb"] = proc_stats(g.server_pid)[0]
            finally:
                g.stop()
        else:
            row["gcp"] = "skipped: ../shared/peers/go-control-plane/gcp-xds not found"
        # --- envoyage, state of the world and delta
        for mode in ("sotw", "delta"):
            log(f"scale {n}: envoyage {mode}")
            d = workdir / f"scale-{n}-{mode}"
            d.mkdir()
            e = Envoyage(d, upstream.port, delta=mode == "delta").start()
            try:
                poller = Poller(e.http_port)
                e.add(0)
                poller.until_ok("svc-0")
                wait_acked(e, 0)
                _, cpu0 = proc_stats(e.server_pid)
                t0 = time.time()
                e.add_many(1, n - 1)
                t_req = time.time()
                poller.until_ok(f"svc-{n - 1}", timeout=300)
                wait_for(lambda: _all_clusters_active(e.envoy, n), 300, interval=0.005, what="clusters")
                t_ok = time.time()
                t_ack = wait_acked(e, t0, timeout=300)
                rss, cpu1 = proc_stats(e.server_pid)
                row[f"{mode}_cold_ms"] = (max(t_ok, t_ack) - t0) * 1000
                row[f"{mode}_cold_request_ms"] = (t_req - t0) * 1000
                row[f"{mode}_rss_mb"], row[f"{mode}_cpu_s"] = rss, cpu1 - cpu0
                samples, request = [], []
                for k in range(one_change_repeats):
                    t0 = time.time()
                    e.add(n + k)
                    request.append((time.time() - t0) * 1000)
                    t_ok = poller.until_ok(f"svc-{n + k}", timeout=120)
                    samples.append((max(t_ok, wait_acked(e, t0)) - t0) * 1000)
                    time.sleep(0.3)
                row[f"{mode}_one_change_ms"] = summary(samples)
                row[f"{mode}_one_change_request_ms"] = summary(request)
                row[f"{mode}_rss_after_mb"] = proc_stats(e.server_pid)[0]
                row["envoy_rss_mb"] = proc_stats(e.envoy.proc.pid)[0]
            finally:
                e.stop()
        # --- Caddy /load with the same n routes
        if Caddy.available():
            log(f"scale {n}: caddy /load")
            d = workdir / f"caddy-{n}"
            d.mkdir()
            c = Caddy(d, upstream.port)
            c.services = [0]
            c.start()
            try:
                poller = Poller(c.http_port)
                poller.until_ok("svc-0")
                c.services = list(range(n))
                t0 = time.time()
                c.load()
                poller.until_ok(f"svc-{n - 1}", timeout=300)
                row["caddy_load_ms"] = (time.time() - t0) * 1000
                row["caddy_rss_mb"] = proc_stats(c.server_pid)[0]
            finally:
                c.stop()
        out[str(n)] = row
    return out


def machine() -> dict:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    envoy = subprocess.run([ENVOY, "--version"], capture_output=True, text=True).stdout.strip().split("version:")[-1]

    def version(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "not installed"

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "envoy": envoy.strip(),
        "caddy": version(["caddy", "version"]),
        "nginx": subprocess.run(["/usr/sbin/nginx", "-v"], capture_output=True, text=True).stderr.strip()
        if os.path.exists("/usr/sbin/nginx")
        else "not installed",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="small N: checks that everything runs (CI)")
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "benchmarks.md"), help="the report to write")
    ap.add_argument("--results", default=str(HERE / "results"), help="where raw samples go")
    args = ap.parse_args()
    if args.smoke:
        params = {
            "changes": 5,
            "containers": 3,
            "sizes": [20, 100],
            "repeats": 2,
            "topology_services": 100,
            "load_seconds": 2,
            "load_connections": 8,
        }
    else:
        params = {
            "changes": 40,
            "containers": 30,
            "sizes": [100, 1000, 5000],
            "repeats": 5,
            "topology_services": 1000,
            "load_seconds": 10,
            "load_connections": 16,
        }
    results = {"smoke": args.smoke, "params": params, "machine": machine()}
    workdir = Path(tempfile.mkdtemp(prefix="ey-bench-"))
    upstream = Upstream("ok")
    started = time.time()
    try:
        results["config_live"] = config_live(workdir, upstream, params["changes"])
        results["discovery_live"] = discovery_live(workdir, upstream, params["containers"])
        results["scale"] = scale(workdir, upstream, params["sizes"], params["repeats"])
        results["topology_a"] = topology_a(workdir, params)
        # two systemd containers and a whole site playbook: the full run only (CI runs the
        # same command as a test, tests/integration/test_demo_nodes.py)
        results["site_playbook"] = {"skipped": "smoke run"} if args.smoke else site_playbook(workdir)
    finally:
        upstream.close()
        shutil.rmtree(workdir, ignore_errors=True)
    results["duration_s"] = round(time.time() - started, 1)
    res_dir = Path(args.results)
    res_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    raw = res_dir / f"{'smoke-' if args.smoke else ''}{stamp}.json"
    raw.write_text(json.dumps(results, indent=1))
    write_report(results, Path(args.out), raw)
    log(f"raw samples: {raw}")
    log(f"report: {args.out} ({results['duration_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
