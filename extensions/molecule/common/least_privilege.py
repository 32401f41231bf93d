"""Least privilege and files on the converged instances, from a local attacker's side
(issue 20, items 8 and 9; docs/security.md, "Least privilege" and "Files"): the units'
systemd-analyze scores, what the processes hold, the admin sockets, the access logs,
query strings and logrotate. Shared by both scenarios' verify steps."""

from __future__ import annotations

import re
import uuid

from checks import eventually, get

GOAL = 4.0  # systemd-analyze security's exposure, per unit
NOBODY = "setpriv --reuid nobody --regid nogroup --clear-groups"
CAP_NET_BIND_SERVICE = 1 << 10
CONNECT = (
    'python3 -c "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); '
    "s.sendall(b'POST /quitquitquit HTTP/1.0\\r\\n\\r\\n'); print(s.recv(100))\""
)


def exposure(host, unit):
    """systemd-analyze security's overall exposure level for `unit` (0.0 - 10.0)."""
    out = host.check_output(f"systemd-analyze security --no-pager {unit}")
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out)
    assert m, out[-500:]
    return float(m.group(1))


def assert_exposure_below_goal(host, unit):
    score = exposure(host, unit)
    assert score < GOAL, f"{unit}: exposure {score} (goal below {GOAL})\n" + host.check_output(
        f"systemd-analyze security --no-pager {unit} | grep '✗'"
    )


def capabilities(host, unit):
    """(effective, bounding) capability sets of the unit's main process."""
    pid = host.check_output(f"systemctl show -p MainPID --value {unit}").strip()
    status = host.check_output(f"cat /proc/{pid}/status")
    caps = dict(re.findall(r"^(Cap\w+):\s*([0-9a-f]+)$", status, re.M))
    return int(caps["CapEff"], 16), int(caps["CapBnd"], 16)


def assert_no_capability(host, unit):
    assert capabilities(host, unit) == (0, 0), f"{unit} holds capabilities"


def assert_only_net_bind_service(host, unit, comm="envoy"):
    """The unit's Envoy (its main process or, on the VPS, the edge's child) holds
    CAP_NET_BIND_SERVICE and nothing else."""
    assert capabilities(host, unit)[1] == CAP_NET_BIND_SERVICE
    for proc in host.process.filter(comm=comm):
        status = host.check_output(f"cat /proc/{proc.pid}/status")
        caps = dict(re.findall(r"^(Cap\w+):\s*([0-9a-f]+)$", status, re.M))
        assert int(caps["CapBnd"], 16) == CAP_NET_BIND_SERVICE, (proc.pid, caps)
        assert int(caps["CapEff"], 16) in (0, CAP_NET_BIND_SERVICE), (proc.pid, caps)


def assert_admin_socket_is_the_envoys_alone(host, socket_path, owner, other_users):
    """Envoy's admin socket is 0600 and its owner's; each of `other_users` (setpriv
    prefixes, e.g. nobody, or a member of the socket directory's group) is refused, and
    no Envoy has a TCP admin port on loopback."""
    sock = host.file(socket_path)
    assert sock.is_socket and sock.mode == 0o600 and sock.user == owner, (sock.mode, sock.user)
    assert "LIVE" in host.check_output(
        f'python3 -c "import socket; s = socket.socket(socket.AF_UNIX); '
        f"s.connect('{socket_path}'); s.sendall(b'GET /ready HTTP/1.1\\r\\nHost: x"
        "\\r\\nConnection: close\\r\\n\\r\\n'); print(s.makefile('rb').read().decode())\""
    )
    for who in other_users:
        probe = host.run(f"{who} {CONNECT} {socket_path}")
        assert probe.rc != 0 and "PermissionError" in probe.stderr, (who, probe.stdout, probe.stderr)
    listening = host.check_output("ss -ltnpH")
    envoy_loopback = [
        line
        for line in listening.splitlines()
        if '"envoy"' in line and re.search(r"\s(127\.\d+\.\d+\.\d+|\[::1\]):\d+\s", line)
    ]
    assert not envoy_loopback, envoy_loopback


def assert_access_log_private(host, path, owner, group):
    log = host.file(path)
    assert log.exists and log.mode == 0o640 and log.user == owner and log.group == group, (
        log.mode,
        log.user,
        log.group,
    )
    probe = host.run(f"{NOBODY} cat {path}")
    assert probe.rc != 0 and "Permission denied" in probe.stderr, probe.stdout[:200]


def assert_query_strings_not_logged(address, host_header, hosts_and_logs):
    """A request with a share-link token in its query is logged with its path and
    without the query, in every access log it passes (the sample app answers 404 for the
    path: what counts is that the request went all the way)."""
    marker = f"/share-{uuid.uuid4().hex[:8]}"
    token = "secret" + uuid.uuid4().hex
    eventually(
        lambda: get(address, host_header, f"{marker}?_nxg_token={token}")[0] in (200, 404),
        what=f"{marker} answered by the app through {address}",
    )
    for host, path in hosts_and_logs:
        eventually(
            lambda host=host, path=path: f'"path":"{marker}"' in host.check_output(f"cat {path}"),
            what=f"{marker} in {path}",
        )
        text = host.check_output(f"cat {path}")
        assert "_nxg_token" not in text and token not in text, path


def assert_logrotate_keeps_the_mode(host, path, owner, group, address, host_header):
    """`logrotate -f` (the role's configuration): the live log and its rotated copy stay
    0640 with their owner, and Envoy goes on writing into the live one."""
    host.check_output("logrotate -f /etc/logrotate.d/envoyage")
    for rotated in (path, f"{path}.1"):
        f = host.file(rotated)
        assert f.exists and f.mode == 0o640 and f.user == owner and f.group == group, (rotated, f.mode, f.user)
    marker = f"/after-rotation-{uuid.uuid4().hex[:8]}"
    get(address, host_header, marker)
    eventually(lambda: marker in host.check_output(f"cat {path}"), what=f"{marker} in {path} after rotation")
