"""What the scenarios' verify steps (and the demo's test) check, written once: HTTP with
a Host header, waiting for a condition, a unit's user, home's resolver, CrowdSec bans."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request


def get(address, host_header, path="/"):
    """(status, body) of GET http://address/path with that Host header; (None, '') if
    nothing answers."""
    req = urllib.request.Request(f"http://{address}{path}", headers={"Host": host_header})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (urllib.error.URLError, OSError):
        return None, ""


def ok(result):
    """A (status, body) result if the status is 200, else None (keep waiting)."""
    return result if result[0] == 200 else None


def eventually(check, timeout=30.0, what="condition"):
    """The first truthy result of check(), polled for `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, AssertionError, ValueError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what} not reached in {timeout}s: {last!r}")


def assert_unit_runs_as(host, unit, user):
    svc = host.service(unit)
    assert svc.is_running and svc.is_enabled, f"{unit} is not running and enabled"
    pid = host.check_output(f"systemctl show -p MainPID --value {unit}")
    assert host.check_output(f"ps -o user= -p {pid}").strip() == user


def resolver_answer(host, name):
    """The A records home's resolver (127.0.0.1) gives for `name`, asked with dnspython
    from the runtime's venv (the base image has no dig)."""
    probe = (
        "import dns.resolver as r; res = r.Resolver(configure=False); res.nameservers = ['127.0.0.1']; "
        f"print(' '.join(a.address for a in res.resolve('{name}', 'A')))"
    )
    return eventually(
        lambda: host.check_output(f'/opt/envoyage/venv/bin/python -c "{probe}"'),
        what=f"home's resolver answering {name}",
    ).split()


def scan_and_wait_for_ban(host, target, host_header, scanner_ip, probes=15):
    """A scripted scan (404s) of `target`, then CrowdSec's ban for the scanner on `host`."""
    for i in range(probes):
        get(target, host_header, f"/scan-{i}.php")

    def banned():
        out = host.check_output("cscli decisions list -o json")
        decisions = [d for alert in (json.loads(out) or []) for d in alert.get("decisions") or []]
        return [d for d in decisions if d["value"] == scanner_ip and d["type"] == "ban"]

    return eventually(banned, what=f"a CrowdSec ban for {scanner_ip}")


def assert_dns_stays_in_the_lab(home, lab_dns, name, vps_address):
    """Home's resolver forwards every name it does not hold to the lab's public DNS, and
    `envoyage check dns` asks that one for the internet's view (never a public resolver):
    the lab's DNS answers `name` with the VPS, and a name outside the lab gets NXDOMAIN
    from it at once."""
    conf = home.file("/etc/unbound/unbound.conf").content_string
    assert f"forward-addr: {lab_dns}" in conf, conf
    out = home.run(f"envoyage check dns {name}")
    assert out.rc == 0 and f"{lab_dns}" in out.stdout and vps_address in out.stdout, out.stdout + out.stderr
    probe = (
        "import dns.resolver as r, dns.resolver; res = r.Resolver(configure=False); "
        f"res.nameservers = ['{lab_dns}']; res.lifetime = 3\n"
        "try:\n    res.resolve('example.org', 'A')\nexcept r.NXDOMAIN:\n    print('nxdomain')"
    )
    assert home.check_output(f'/opt/envoyage/venv/bin/python -c "{probe}"') == "nxdomain"


PROBE = (
    "import socket, sys\n"
    "try:\n    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close(); print('open')\n"
    "except socket.timeout:\n    print('timeout')\n"
    "except OSError as exc:\n    print(exc.strerror)"
)


def tcp_probe(host, address, port):
    """'open', 'timeout' (dropped) or the error, for a TCP connect from `host`."""
    return host.check_output(f'python3 -c "{PROBE}" {address} {port}')


def assert_only_ports_open_over_the_tunnel(vps, home_tunnel_address, open_ports, dropped_ports):
    """From the VPS, over the tunnel: the tunnel listener and the edge link connect, every
    other port of home's is dropped (a timeout, not even a refusal)."""
    seen = {port: tcp_probe(vps, home_tunnel_address, port) for port in list(open_ports) + list(dropped_ports)}
    assert seen == {**{p: "open" for p in open_ports}, **{p: "timeout" for p in dropped_ports}}, seen


def assert_tunnel_status_healthy(home, interface="envoyage0"):
    """`envoyage status` (the control plane's own user) reads the tunnel without a problem,
    from the root-written status file, which holds no key."""

    def healthy():
        st = json.loads(home.check_output("envoyage status --json"))
        assert st["tunnel"]["problem"] is None, st["tunnel"]
        assert not [p for p in st["problems"] if p.startswith("tunnel")], st["problems"]
        return st["tunnel"]["handshake_age"] is not None and st["tunnel"]["handshake_age"] < 180

    eventually(healthy, what="the tunnel's status without a problem")
    status = home.file(f"/run/envoyage-tunnel/{interface}.json")
    assert status.exists and status.mode == 0o644 and status.user == "root"
    private = home.check_output(f"cat /etc/envoyage/wireguard/{interface}.key").strip()
    assert private and private not in status.content_string and "PrivateKey" not in status.content_string


def assert_status_without_problems(home, timeout=60.0):
    """`envoyage status` on home names no problem (the edge in sync, the tunnel read)."""

    def clean():
        st = json.loads(home.check_output("envoyage status --json"))
        assert not st["problems"] and (st["edge"] is None or st["edge"]["in_sync"]), st["problems"]
        return st

    eventually(clean, timeout=timeout, what="envoyage status without a problem")
