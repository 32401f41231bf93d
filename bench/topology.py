"""Topology A benchmarks, in the namespace harness (runtime/tests/support/lab, on the
venv's path: scripts/lib.sh):

- Docker `start` event -> first 200 through the VPS path (and the LAN path, same event);
- one change at N services: first 200 on the LAN path (home Envoy) and on the VPS path;
- latency and throughput of the same request straight to the app, on the LAN path and on
  the VPS path (wrk, from the namespace each path starts in).

Every request goes to addresses inside namespaces the harness created, or to loopback.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from support.lab import Lab

# Polls `Host: HOST` at URL once per millisecond on one kept-alive connection from inside
# a namespace; prints "ready", then the time.time() of the first 200.
POLLER = r"""
import http.client, sys, time, urllib.parse
url, host, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
u = urllib.parse.urlsplit(url)
conn = None
print("ready", flush=True)
deadline = time.time() + timeout
while time.time() < deadline:
    try:
        if conn is None:
            conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=2)
        conn.request("GET", "/", headers={"Host": host})
        r = conn.getresponse(); r.read()
        if r.status == 200:
            print(time.time(), flush=True); sys.exit(0)
    except Exception:
        conn = None
    time.sleep(0.001)
print("timeout", flush=True); sys.exit(1)
"""


# Asks SERVER for NAME (A) once per millisecond until the answer is EXPECTED; prints
# "ready", then the time.time() of that answer.
DNS_POLLER = r"""
import sys, time
import dns.message, dns.query, dns.rdatatype
server, name, expected, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
query = dns.message.make_query(name, dns.rdatatype.A)
print("ready", flush=True)
deadline = time.time() + timeout
while time.time() < deadline:
    try:
        answer = dns.query.udp(query, server, timeout=0.5)
        if any(rr.address == expected for rrset in answer.answer for rr in rrset if rrset.rdtype == dns.rdatatype.A):
            print(time.time(), flush=True); sys.exit(0)
    except Exception:
        pass
    time.sleep(0.001)
print("timeout", flush=True); sys.exit(1)
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class NsPoller:
    def __init__(self, lab: Lab, ns: str, url: str, host: str, timeout: float = 60, dns: bool = False):
        """HTTP: GET url with Host: host until 200. dns: ask home's resolver for `host`
        until it answers home's LAN address."""
        args = [DNS_POLLER, lab.addr("home_lan"), host, lab.addr("home_lan")] if dns else [POLLER, url, host]
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns[ns], sys.executable, "-c", *args, str(timeout)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def first_ok(self) -> float:
        line = self.proc.stdout.readline().strip()
        self.proc.wait(10)
        if line in ("", "timeout"):
            raise TimeoutError("no 200 in time")
        return float(line)


def _pct(samples, p):
    s = sorted(samples)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(samples):
    return {"n": len(samples), "p50": _pct(samples, 50), "p95": _pct(samples, 95), "max": max(samples, default=None)}


def _paths(lab: Lab):
    return {
        "vps": ("inet", f"http://{lab.addr('vps_public')}:{lab.edge_port}/"),
        "lan": ("lan", f"http://{lab.addr('home_lan')}:{lab.http_port}/"),
    }


def _api(lab: Lab, method: str, path: str, body=None):
    from envoyage.cli.client import ControlClient

    client = ControlClient(str(lab.control_socket))
    return client.post(path, body) if method == "POST" else client.get(path)


def event_to_vps(lab: Lab, containers: int) -> dict:
    import docker

    client = docker.from_env()
    label = "io.envoyage.bench"
    events = client.events(decode=True, filters={"type": ["container"], "event": ["start"], "label": [label]})
    started: dict[str, float] = {}
    import threading

    def follow():
        for ev in events:
            started[ev["id"]] = ev["timeNano"] / 1e9

    threading.Thread(target=follow, daemon=True).start()
    vps_ms, lan_ms, dns_ms = [], [], []
    try:
        for i in range(containers):
            host = f"ev-{i}.example.test"
            pollers = {k: NsPoller(lab, ns, url, host) for k, (ns, url) in _paths(lab).items()}
            pollers["dns"] = NsPoller(lab, "lan", "", host, dns=True)
            c = client.containers.run(
                "envoyage/sample-app:1",
                detach=True,
                name=f"ey-bench-a-{i}",
                labels={
                    label: "1",
                    "envoyage.enable": "true",
                    "envoyage.scope": lab.scope,
                    "envoyage.domain": host,
                    "envoyage.healthcheck": "off",
                },
            )
            t_vps, t_lan, t_dns = pollers["vps"].first_ok(), pollers["lan"].first_ok(), pollers["dns"].first_ok()
            deadline = time.time() + 10
            while c.id not in started and time.time() < deadline:
                time.sleep(0.01)
            vps_ms.append((t_vps - started[c.id]) * 1000)
            lan_ms.append((t_lan - started[c.id]) * 1000)
            dns_ms.append((t_dns - started[c.id]) * 1000)
    finally:
        events.close()
        for c in client.containers.list(all=True, filters={"label": label}):
            c.remove(force=True)
        client.close()
    return {"vps_ms": summary(vps_ms), "lan_ms": summary(lan_ms), "dns_ms": summary(dns_ms)}


def one_change_at(lab: Lab, n: int, repeats: int) -> dict:
    """N services, then one more at a time: first 200 on each path after the API call."""
    body = [
        {
            "name": f"bulk-{i}",
            "domains": [f"bulk-{i}.example.test"],
            "upstreams": [f"127.0.0.1:{lab.app_port}"],
            "health_check": "off",
        }
        for i in range(n)
    ]
    t0 = time.time()
    _api(lab, "POST", "/services", body)
    pollers = {k: NsPoller(lab, ns, url, f"bulk-{n - 1}.example.test", 300) for k, (ns, url) in _paths(lab).items()}
    cold = {k: (p.first_ok() - t0) * 1000 for k, p in pollers.items()}
    time.sleep(1)
    lan_ms, vps_ms, dns_ms = [], [], []
    for k in range(repeats):
        host = f"one-{n}-{k}.example.test"
        pollers = {key: NsPoller(lab, ns, url, host) for key, (ns, url) in _paths(lab).items()}
        pollers["dns"] = NsPoller(lab, "lan", "", host, dns=True)
        t0 = time.time()
        _api(
            lab,
            "POST",
            "/services",
            {
                "name": f"one-{n}-{k}",
                "domains": [host],
                "upstreams": [f"127.0.0.1:{lab.app_port}"],
                "health_check": "off",
            },
        )
        vps_ms.append((pollers["vps"].first_ok() - t0) * 1000)
        lan_ms.append((pollers["lan"].first_ok() - t0) * 1000)
        dns_ms.append((pollers["dns"].first_ok() - t0) * 1000)
        time.sleep(0.3)
    dns = _api(lab, "GET", "/status").get("dns") or {}
    return {
        "services": n,
        "cold_lan_ms": cold["lan"],
        "cold_vps_ms": cold["vps"],
        "lan_ms": summary(lan_ms),
        "vps_ms": summary(vps_ms),
        "dns_ms": summary(dns_ms),
        "dns_apply_ms": dns.get("last_apply_ms"),
    }


def unbound_at_scale(lab: Lab, n: int, repeats: int) -> dict:
    """With the N services' zones in the include file: Unbound's start until it answers the
    last of them, and `unbound-control reload` (what a config-file approach would do on
    every change) until it answers again; both against the same Unbound, same run."""
    name = f"bulk-{n - 1}.example.test"
    start_ms, reload_ms = [], []
    for _ in range(repeats):
        lab.stop("unbound")
        t0 = time.time()
        poller = NsPoller(lab, "lan", "", name, dns=True)
        lab.start_unbound()
        start_ms.append((poller.first_ok() - t0) * 1000)
        t0 = time.time()
        lab.unbound_control("reload")
        poller = NsPoller(lab, "lan", "", name, dns=True)
        reload_ms.append((poller.first_ok() - t0) * 1000)
    zones = sum(1 for line in lab.unbound_control("list_local_zones").stdout.splitlines() if "example.test." in line)
    return {
        "services": n,
        "zones": zones,
        "start_to_answer_ms": summary(start_ms),
        "reload_ms": summary(reload_ms),
        "include_bytes": (lab.home_dir / "dns" / "zones.conf").stat().st_size,
    }


_WRK_LAT = re.compile(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$")


def _wrk(ns: str | None, url: str, host: str, seconds: int, connections: int) -> dict:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Host: {host}", url]
    if ns:
        argv = ["ip", "netns", "exec", ns] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    lat = {}
    for line in out.splitlines():
        m = _WRK_LAT.match(line)
        if m:
            value = float(m.group(2)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(3)]
            lat[f"p{m.group(1)}"] = value
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": float(rps.group(1)) if rps else None,
        "latency_ms": lat,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def paths_load(lab: Lab, seconds: int, connections: int) -> dict:
    host = "load.example.test"
    _api(
        lab,
        "POST",
        "/services",
        {"name": "load", "domains": [host], "upstreams": [f"127.0.0.1:{lab.app_port}"], "health_check": "off"},
    )
    for _, (ns, url) in _paths(lab).items():
        NsPoller(lab, ns, url, host, 30).first_ok()
    out = {}
    for key, ns, url in (
        ("direct", None, f"http://127.0.0.1:{lab.app_port}/"),
        ("lan", lab.ns["lan"], f"http://{lab.addr('home_lan')}:{lab.http_port}/"),
        ("vps", lab.ns["inet"], f"http://{lab.addr('vps_public')}:{lab.edge_port}/"),
    ):
        log(f"topology A: load on the {key} path ({seconds} s, {connections} connections)")
        out[key] = _wrk(ns, url, host, seconds, connections)
    return out


class App:
    """nginx answering 200 "ok" on loopback: the same app behind every path."""

    def __init__(self, workdir: Path, port: int):
        self.port = port
        conf = workdir / "app-nginx.conf"
        conf.write_text(f"""daemon off; worker_processes 1; pid {workdir}/app-nginx.pid; error_log stderr error;
events {{ worker_connections 1024; }}
http {{ access_log off; server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok\\n"; }} }} }}
""")
        self.proc = subprocess.Popen(
            ["/usr/sbin/nginx", "-c", str(conf), "-p", str(workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def topology_a(workdir: Path, params: dict) -> dict:
    tools = ("wireguard-go", "wg", "iptables", "wrk", "unbound", "named", "dnssec-signzone", "dig")
    if not all(shutil.which(t) for t in tools) or not Path("/usr/sbin/nginx").exists():
        return {
            "skipped": "needs wireguard-go, wireguard-tools, iptables, wrk, nginx, unbound and bind9 "
            "(bench/run.sh installs them)"
        }
    from support.helpers import free_port

    lab = Lab(
        workdir / "topology-a",
        tag="eyb",
        net="10.235",
        http_port=free_port(),
        admin_port=free_port(),
        tunnel_port=free_port(),
        link_port=free_port(),
        scope="bench-a",
        dns=True,
        unbound_control_port=free_port(),
    )
    lab.app_port = free_port()
    app = App(workdir, lab.app_port)
    out: dict = {}
    try:
        log("topology A: namespaces, tunnel, control plane, both Envoys")
        lab.network_up()
        lab.start_all()
        out["event_to_first_200"] = event_to_vps(lab, params["containers"])
        log(
            f"topology A: event -> first 200 over {params['containers']} containers: "
            f"VPS p50 {out['event_to_first_200']['vps_ms']['p50']:.1f} ms"
        )
        out["paths"] = paths_load(lab, params["load_seconds"], params["load_connections"])
        out["one_change"] = one_change_at(lab, params["topology_services"], params["repeats"])
        log(
            f"topology A: one change at {params['topology_services']}: LAN p50 "
            f"{out['one_change']['lan_ms']['p50']:.1f} ms, VPS p50 {out['one_change']['vps_ms']['p50']:.1f} ms, "
            f"LAN resolver p50 {out['one_change']['dns_ms']['p50']:.1f} ms"
        )
        out["unbound"] = unbound_at_scale(lab, params["topology_services"], params["repeats"])
        log(
            f"topology A: Unbound with {params['topology_services']} zones: start -> answer p50 "
            f"{out['unbound']['start_to_answer_ms']['p50']:.0f} ms, reload p50 {out['unbound']['reload_ms']['p50']:.0f} ms"
        )
    finally:
        lab.down()
        app.stop()
    return out
