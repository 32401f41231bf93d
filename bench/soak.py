"""Soak of the ADS server: many clients, churn, a stopped consumer, bursts with a real Envoy.

    bash bench/soak.sh            full run (200 clients, 2,000 churn cycles, 5,000 past nodes)
    bash bench/soak.sh --smoke    small N (CI)

Runs `envoyage control` as its own process (TCP, so that simulated clients can connect)
with one real Envoy, and measures that process from /proc: RSS, threads and open file
descriptors before and after. Writes raw samples to bench/results/soak-<UTC>.json and
the "Soak" section of docs/benchmarks.md (between its markers). All traffic goes to
loopback; every loop is bounded in count and time.

Goals (issue 9): after churn RSS within +20 MB of the baseline and descriptors back to
the baseline ± 5; no warming stall (the last service of a burst live within 1 s);
`status` under 100 ms with 5,000 past nodes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peers import Envoyage, proc_stats, wait_for  # noqa: E402
from support.helpers import Upstream  # noqa: E402

from bench import Poller, log, summary  # noqa: E402
from envoyage.xds import types as T  # noqa: E402

BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
ANALYSIS = """**Soak analysis.** Descriptors come back exactly (one SQLite connection for the process;
before issue 9 every gRPC worker and API request kept its own, 593 after a soak), threads
come back to the baseline (the ADS thread pool ends idle threads after 10 s; the standard
pool kept all 400), and there is no warming stall. RSS misses the +20 MB goal: what stays
is a high-water mark, not a leak. Repeated churn rounds do not grow it (a second round of
2,000 cycles *lowers* RSS a little; 8,000 cycles alone add under 4 MB), and most of the rest
comes from having had 200 clients (and their 400 threads) at once. Limiting glibc to two
malloc arenas (set at start; `MALLOC_ARENA_MAX` overrides) and `malloc_trim` when a busy
period ends took it from +73 MB to about +34 MB. The change fan-out to 200 clients
(p50 ~110–190 ms across runs) is dominated by the 200 Python clients of the harness on the
same two cores."""


def proc_counts(pid: int) -> dict:
    rss, cpu = proc_stats(pid)
    threads = int(re.search(r"^Threads:\s+(\d+)", open(f"/proc/{pid}/status").read(), re.M).group(1))
    return {
        "rss_mb": round(rss, 1),
        "threads": threads,
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "cpu_s": round(cpu, 2),
    }


class Client:
    """A simulated Envoy: one ADS stream, ACKs every CDS response, remembers when each
    version arrived."""

    def __init__(self, port: int, node_id: str):
        self.node_id = node_id
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        self.outbox: list = [discovery_pb2.DiscoveryRequest(type_url=T.CLUSTER, node=base_pb2.Node(id=node_id))]
        self.cond = threading.Condition()
        self.seen: dict[str, float] = {}  # version -> time.time() it arrived
        self.closed = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _requests(self):
        while True:
            with self.cond:
                while not self.outbox and not self.closed:
                    self.cond.wait(1)
                if self.closed:
                    return
                batch, self.outbox = self.outbox, []
            yield from batch

    def _run(self):
        try:
            for resp in self.stub.StreamAggregatedResources(self._requests()):
                self.seen[resp.version_info] = time.time()
                with self.cond:
                    self.outbox.append(
                        discovery_pb2.DiscoveryRequest(
                            type_url=T.CLUSTER, version_info=resp.version_info, response_nonce=resp.nonce
                        )
                    )
                    self.cond.notify()
        except grpc.RpcError:
            pass

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify()
        self.channel.close()
        self.thread.join(5)


STOPPED_CLIENT = textwrap.dedent("""
    import sys, time, grpc
    from envoy.config.core.v3 import base_pb2
    from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(grpc.insecure_channel(sys.argv[1]))
    def gen():
        yield discovery_pb2.DiscoveryRequest(type_url=sys.argv[2], node=base_pb2.Node(id="stopped-consumer"))
        while True:
            time.sleep(1)
    for resp in stub.StreamAggregatedResources(gen()):
        print("got", flush=True)
""")


def churn(port: int, cycles: int, prefix: str = "churn", threads: int = 4, deadline_s: float = 600) -> dict:
    """`cycles` connect / first response / disconnect cycles, each a new node id."""
    lat: list[float] = []
    failed = [0]
    stop_at = time.monotonic() + deadline_s
    lock = threading.Lock()
    counter = iter(range(cycles))

    def worker():
        while time.monotonic() < stop_at:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            try:
                stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
                req = discovery_pb2.DiscoveryRequest(type_url=T.CLUSTER, node=base_pb2.Node(id=f"{prefix}-{i}"))
                call = stub.StreamAggregatedResources(iter([req]), timeout=10)
                next(iter(call))
                call.cancel()
                with lock:
                    lat.append((time.perf_counter() - t0) * 1000)
            except (grpc.RpcError, StopIteration):
                with lock:
                    failed[0] += 1
            finally:
                channel.close()

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {
        "cycles": len(lat),
        "failed": failed[0],
        "seconds": round(time.monotonic() - started, 1),
        "connect_to_first_response_ms": summary(lat),
    }


def run(params: dict, workdir: Path) -> dict:
    upstream = Upstream("soak")
    system = Envoyage(
        workdir, upstream.port, delta=False, settings={"xds_max_streams": params["clients"] + 64, "xds_keepalive": "5s"}
    )
    out: dict = {"params": params}
    system.start()
    pid = system.server_pid
    poller = Poller(system.http_port)
    clients: list[Client] = []
    stopped = None
    try:
        system.add_many(0, params["services"])
        poller.until_ok(f"svc-{params['services'] - 1}")
        time.sleep(1)
        out["baseline"] = proc_counts(pid)
        log(f"soak: baseline {out['baseline']}")

        # many clients and a stopped consumer
        for i in range(params["clients"]):
            clients.append(Client(system.xds_port, f"sim-{i}"))
        stopped = subprocess.Popen(
            [sys.executable, "-c", STOPPED_CLIENT, f"127.0.0.1:{system.xds_port}", T.CLUSTER],
            stdout=subprocess.PIPE,
            text=True,
        )
        stopped.stdout.readline()
        os.kill(stopped.pid, signal.SIGSTOP)
        wait_for(lambda: all(c.seen for c in clients), 60, what="every simulated client's first response")
        out["with_clients"] = proc_counts(pid)
        log(f"soak: {len(clients)} clients connected {out['with_clients']}")

        # one change: how long until every client has it
        fanout = []
        for k in range(params["changes"]):
            before = {c.node_id: set(c.seen) for c in clients}
            t0 = time.time()
            system.add(params["services"] + k)
            wait_for(
                lambda: all(set(c.seen) - before[c.node_id] for c in clients), 30, what="every client to get the change"
            )
            fanout.append(max(min(t for v, t in c.seen.items() if v not in before[c.node_id]) for c in clients) - t0)
        out["change_to_all_clients_ms"] = summary([x * 1000 for x in fanout])

        # churn: connect / first response / disconnect, a new node each time
        log(f"soak: {params['cycles']} churn cycles")
        out["churn"] = churn(system.xds_port, params["cycles"])
        out["after_churn"] = proc_counts(pid)
        log(f"soak: after churn {out['after_churn']}")

        # a burst of add/remove changes with the real Envoy: no warming stall
        base = params["services"] + params["changes"]
        for k in range(params["burst"]):
            system.add(base + k)
            system.request("DELETE", f"/services/svc-{base + k}")
        t0 = time.time()
        system.add(base + params["burst"])
        out["burst_last_live_ms"] = round((poller.until_ok(f"svc-{base + params['burst']}", 30) - t0) * 1000, 1)
        log(f"soak: burst of {2 * params['burst']} changes, last service live after {out['burst_last_live_ms']} ms")
        out["after_burst"] = proc_counts(pid)
        log(f"soak: after the burst {out['after_burst']}")

        # past nodes: status with thousands of disconnected nodes
        more = params["past_nodes"] - params["cycles"]
        if more > 0:
            out["churn_more"] = churn(system.xds_port, more, prefix="past")
        status_ms = []
        for _ in range(params["status_repeats"]):
            t0 = time.perf_counter()
            st = system.request("GET", "/status")
            status_ms.append((time.perf_counter() - t0) * 1000)
        out["status_ms"] = summary(status_ms)
        out["status_nodes"] = len(st["nodes"])
        out["after_past_nodes"] = proc_counts(pid)
        log(f"soak: after {params['past_nodes']} past nodes {out['after_past_nodes']}")
        out["status_bytes"] = len(json.dumps(st))

        # everyone leaves; what stays?
        for c in clients:
            c.close()
        clients = []
        stopped.kill()
        stopped.wait()
        stopped = None
        time.sleep(16)  # idle server threads end 10 s after their last stream
        out["after"] = proc_counts(pid)
        log(f"soak: after {out['after']}")
        # a leak grows with every round; a high-water mark does not: churn once more
        churn(system.xds_port, params["cycles"], prefix="again")
        time.sleep(2)
        out["after_second_churn"] = proc_counts(pid)
        log(f"soak: after a second churn {out['after_second_churn']}")
        out["second_churn_rss_delta_mb"] = round(out["after_second_churn"]["rss_mb"] - out["after"]["rss_mb"], 1)
        out["rss_delta_mb"] = round(out["after"]["rss_mb"] - out["baseline"]["rss_mb"], 1)
        out["fds_delta"] = out["after"]["fds"] - out["baseline"]["fds"]
        out["threads_delta"] = out["after"]["threads"] - out["baseline"]["threads"]
        out["goals"] = {
            "rss_within_20mb": out["rss_delta_mb"] <= 20,
            "fds_back_within_5": abs(out["fds_delta"]) <= 5,
            "no_warming_stall": out["burst_last_live_ms"] <= 1000,
            "status_under_100ms": out["status_ms"]["p50"] <= 100,
        }
        return out
    finally:
        for c in clients:
            c.close()
        if stopped is not None:
            stopped.kill()
            stopped.wait()
        system.stop()
        upstream.close()


def render(res: dict, raw: Path) -> str:
    p, g = res["params"], res["goals"]
    mark = {True: "met", False: "MISSED"}
    try:
        raw_name = raw.relative_to(HERE.parent)
    except ValueError:
        raw_name = raw
    lines = [
        BEGIN,
        "## Soak: the ADS server under clients, churn and bursts",
        "",
        f"`bash bench/soak.sh` ({res['date']}, {res['duration_s']} s; raw samples: `{raw_name}`). "
        f"`envoyage control` as its own process with one real Envoy and {p['services']} services; "
        f"{p['clients']} simulated Envoys (each a gRPC stream that ACKs), one stopped consumer (SIGSTOP), "
        f"{p['cycles'] + max(0, p['past_nodes'] - p['cycles'])} connect/disconnect cycles with a new node id each, "
        f"{2 * p['burst']} rapid add/remove changes. Measured from /proc of the control-plane process.",
        "",
        "| | RSS | threads | open fds |",
        "|---|---|---|---|",
    ]
    for key, label in (
        ("baseline", "baseline"),
        ("with_clients", f"{p['clients']} clients connected"),
        ("after", "after churn, clients gone"),
    ):
        c = res[key]
        lines.append(f"| {label} | {c['rss_mb']:.1f} MB | {c['threads']} | {c['fds']} |")
    ch = res["churn"]
    lines += [
        "",
        f"- One change reaches all {p['clients']} clients: p50 {res['change_to_all_clients_ms']['p50']:.0f} ms, "
        f"p95 {res['change_to_all_clients_ms']['p95']:.0f} ms.",
        f"- Churn: {ch['cycles']} cycles in {ch['seconds']} s ({ch['failed']} failed), connect to first response "
        f"p50 {ch['connect_to_first_response_ms']['p50']:.1f} ms.",
        f"- After churn: RSS {res['rss_delta_mb']:+.1f} MB (goal ≤ +20 MB: {mark[g['rss_within_20mb']]}), "
        f"descriptors {res['fds_delta']:+d} (goal ± 5: {mark[g['fds_back_within_5']]}), threads "
        f"{res['threads_delta']:+d}. Another {ch['cycles']} churn cycles afterwards: RSS "
        f"{res['second_churn_rss_delta_mb']:+.1f} MB (a leak would grow with every round).",
        f"- Warming: after the burst the last-added service answered 200 after {res['burst_last_live_ms']:.0f} ms "
        f"(goal ≤ 1 s: {mark[g['no_warming_stall']]}; it was 11–15 s before issue 9).",
        f"- `status` with {p['past_nodes']} past nodes: p50 {res['status_ms']['p50']:.1f} ms, "
        f"p95 {res['status_ms']['p95']:.1f} ms, {res['status_nodes']} nodes listed ({res['status_bytes'] / 1024:.0f} KiB; "
        f"disconnected nodes are forgotten after `xds.forget_after`, at most 1,000 kept) "
        f"(goal < 100 ms: {mark[g['status_under_100ms']]}).",
        "",
        ANALYSIS,
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(report: Path, section: str) -> None:
    text = report.read_text() if report.exists() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section.rstrip("\n") + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    report.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="small N: checks that everything runs (CI)")
    ap.add_argument(
        "--out",
        default=str(HERE.parent / "docs" / "benchmarks.md"),
        help="the report whose Soak section is (re)written",
    )
    ap.add_argument("--results", default=str(HERE / "results"), help="where raw samples go")
    args = ap.parse_args()
    if args.smoke:
        params = {
            "services": 20,
            "clients": 20,
            "changes": 3,
            "cycles": 100,
            "burst": 20,
            "past_nodes": 200,
            "status_repeats": 5,
        }
    else:
        params = {
            "services": 200,
            "clients": 200,
            "changes": 10,
            "cycles": 2000,
            "burst": 100,
            "past_nodes": 5000,
            "status_repeats": 20,
        }
    started = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="ey-soak-"))
    try:
        res = run(params, workdir)
    finally:
        subprocess.run(["rm", "-rf", str(workdir)])
    res["smoke"] = args.smoke
    res["duration_s"] = round(time.time() - started, 1)
    res["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    res_dir = Path(args.results)
    res_dir.mkdir(parents=True, exist_ok=True)
    raw = res_dir / f"soak-{'smoke-' if args.smoke else ''}{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    raw.write_text(json.dumps(res, indent=1))
    write_section(Path(args.out), render(res, raw))
    log(f"soak: raw samples {raw}; report {args.out} ({res['duration_s']} s); goals {res['goals']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
