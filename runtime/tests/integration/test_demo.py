"""The README's first command: the demo starts, serves hello.localhost, and stops."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from support.helpers import ENVOYAGE, TEST_SCOPE, free_port, http_get

ROOT = Path(__file__).resolve().parents[3]


def test_demo_script_starts_serves_and_stops(workdir, docker):
    env = dict(os.environ)
    ports = {k: str(free_port()) for k in ("HTTP", "ADMIN", "APP")}
    env.update({f"ENVOYAGE_DEMO_{k}_PORT": v for k, v in ports.items()})
    env["ENVOYAGE_DEMO_DIR"] = str(workdir / "demo")
    # its own scope: the default demo (scope "demo"), if one runs, is not touched
    env["ENVOYAGE_DEMO_SCOPE"] = f"{TEST_SCOPE}-demo"
    demo = ["bash", str(ROOT / "scripts" / "demo.sh"), "--local"]
    pids = []
    try:
        out = subprocess.run(demo, env=env, capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr[-3000:]
        assert f"http://hello.localhost:{ports['HTTP']}/" in out.stdout
        assert "demo.sh --local stop" in out.stdout
        code, body = http_get(int(ports["HTTP"]), "hello.localhost")
        assert code == 200 and "Hello from Envoyage" in body
        # the labelled demo container, found by Docker discovery
        code, body = http_get(int(ports["HTTP"]), "whoami.localhost")
        assert code == 200 and len(body.strip()) == 12
        again = subprocess.run(demo, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and "already running" in again.stderr
        pids = [int((workdir / "demo" / f"{name}.pid").read_text()) for name in ("envoy", "control", "app")]
        # a second start from the state the first one left (the registry already has its
        # services) works too, and `envoyage services | head` is not an error
        subprocess.run(demo + ["stop"], env=env, capture_output=True, text=True, timeout=60)
        second = subprocess.run(demo, env=env, capture_output=True, text=True, timeout=180)
        assert second.returncode == 0, second.stderr[-3000:]
        piped = subprocess.run(
            f"'{ENVOYAGE}' -c '{workdir}/demo/control.yaml' services --json | head -1",
            shell=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert piped.stdout.strip() == "[" and "Broken pipe" not in piped.stderr
        pids = [int((workdir / "demo" / f"{name}.pid").read_text()) for name in ("envoy", "control", "app")]
    finally:
        stop = subprocess.run(demo + ["stop"], env=env, capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0 and "stopped envoy" in stop.stderr and "removed the demo containers" in stop.stderr
    status = subprocess.run(demo + ["status"], env=env, capture_output=True, text=True, timeout=60)
    assert "running" not in status.stdout
    for pid in pids:  # nothing is left behind
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_topology_a_demo_starts_serves_both_paths_and_stops_leaving_nothing(workdir, docker):
    env = dict(os.environ)
    tag = "eyd"
    env.update(
        {
            "ENVOYAGE_DEMO_A_DIR": str(workdir / "demo-a"),
            "ENVOYAGE_DEMO_A_NET": "10.234",
            "ENVOYAGE_DEMO_A_TAG": tag,
            "ENVOYAGE_DEMO_A_HTTP_PORT": str(free_port()),
            "ENVOYAGE_DEMO_A_ADMIN_PORT": str(free_port()),
            "ENVOYAGE_DEMO_SCOPE": f"{TEST_SCOPE}-a",
        }
    )
    demo = ["bash", str(ROOT / "scripts" / "demo.sh"), "--topology", "a"]
    try:
        out = subprocess.run(demo, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        # every curl line it prints works as printed
        lines = [
            line.strip()
            for line in out.stdout.splitlines()
            if line.strip().startswith("ip netns exec") and " curl " in line
        ]
        assert len(lines) == 4, out.stdout
        # the same name, two answers: home's address on the LAN, the VPS's on the internet
        lan_dns = subprocess.run(
            ["ip", "netns", "exec", f"{tag}-lan", "dig", "+short", "whoami.example.test"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        inet_dns = subprocess.run(
            ["ip", "netns", "exec", f"{tag}-inet", "dig", "+short", "whoami.example.test"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert (lan_dns.stdout.strip(), inet_dns.stdout.strip()) == ("10.234.1.1", "10.234.3.2")
        checks = [line.strip() for line in out.stdout.splitlines() if " check " in line]
        assert len(checks) == 3, out.stdout
        for line in checks:  # dns, service, tunnel: all as printed, all fine
            done = subprocess.run(line, shell=True, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0 and done.stdout.rstrip().endswith("ok"), (line, done.stdout, done.stderr)
        for line in lines:
            got = subprocess.run(
                line + " -sS --max-time 5 -w '\\n%{http_code}'", shell=True, capture_output=True, text=True, timeout=20
            )
            assert got.stdout.rpartition("\n")[2] == "200", (line, got.stdout, got.stderr)
        vpn_only_from_internet = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                f"{tag}-inet",
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Host: private.example.test",
                "http://10.234.4.1/",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert vpn_only_from_internet.stdout == "404"
    finally:
        stop = subprocess.run(demo + ["stop"], env=env, capture_output=True, text=True, timeout=120)
    assert stop.returncode == 0, stop.stderr
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"{tag}-" not in netns and f"{tag}-" not in links
    assert not Path(f"/etc/netns/{tag}-lan").exists()
    assert not docker.client.containers.list(all=True, filters={"label": f"envoyage.scope={TEST_SCOPE}-a"})
