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
    probe = ("import dns.resolver as r; res = r.Resolver(configure=False); res.nameservers = ['127.0.0.1']; "
             f"print(' '.join(a.address for a in res.resolve('{name}', 'A')))")
    return eventually(lambda: host.check_output(f"/opt/envoyage/venv/bin/python -c \"{probe}\""),
                      what=f"home's resolver answering {name}").split()


def scan_and_wait_for_ban(host, target, host_header, scanner_ip, probes=15):
    """A scripted scan (404s) of `target`, then CrowdSec's ban for the scanner on `host`."""
    for i in range(probes):
        get(target, host_header, f"/scan-{i}.php")

    def banned():
        out = host.check_output("cscli decisions list -o json")
        decisions = [d for alert in (json.loads(out) or []) for d in alert.get("decisions") or []]
        return [d for d in decisions if d["value"] == scanner_ip and d["type"] == "ban"]
    return eventually(banned, what=f"a CrowdSec ban for {scanner_ip}")
