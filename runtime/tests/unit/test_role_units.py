"""The roles' systemd units and file handling, checked from their templates (issue 20,
items 8 and 9): every service unit renders to a sandbox that `systemd-analyze security
--offline` scores below 4.0, no capability beyond what each needs (none for the control
plane, in either topology), and rotate.yml takes every path from the roles. The same
units are scored live on the Molecule instances (extensions/molecule/*/tests/test_least_privilege.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
GOAL = 4.0

VALUES = {
    "ansible_managed": "managed",
    "envoyage_topology": "a",
    "envoyage_control_plane_user": "envoyage",
    "envoyage_envoy_group": "envoy",
    "control_plane_dns": True,
    "control_plane_docker_group": "docker",
    "envoyage_venv": "/opt/envoyage/venv",
    "control_plane_config": "/etc/envoyage/control.yaml",
    "control_plane_state_dir": "/var/lib/envoyage",
    "envoyage_dns_include_file": "/var/lib/envoyage-dns/zones.conf",
    "envoyage_edge_user": "envoyage-edge",
    "edge_config": "/etc/envoyage/edge.yaml",
    "envoy_user": "envoy",
    "envoyage_config_dir": "/etc/envoyage",
    "envoy_node_id": "home",
    "envoyage_log_dir": "/var/log/envoyage",
    "envoy_admin_socket": "/run/envoyage-envoy/admin.sock",
    "envoy_log_owner": "envoy",
    "envoy_log_group": "envoy",
    "envoy_log_rotate_days": 14,
}
UNITS = {
    "envoyage-control.service": "roles/control_plane/templates/envoyage-control.service.j2",
    "envoyage-edge.service": "roles/edge/templates/envoyage-edge.service.j2",
    "envoyage-envoy.service": "roles/envoy/templates/envoyage-envoy.service.j2",
}


def render(template: str, **overrides) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["dirname"] = os.path.dirname
    return env.from_string((ROOT / template).read_text()).render(**{**VALUES, **overrides})


def settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Z][A-Za-z]+)=(.*)$", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_every_unit_is_sandboxed(unit):
    s = settings(render(UNITS[unit]))
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "PrivateDevices": "yes",
        "MemoryDenyWriteExecute": "yes",
        "UMask": "0027",
        "SystemCallArchitectures": "native",
        "RestrictNamespaces": "yes",
    }.items():
        assert s.get(key) == [value], (unit, key, s.get(key))
    assert s["SystemCallFilter"][0] == "@system-service"
    assert s["User"][0] not in ("root", "0")
    families = s["RestrictAddressFamilies"][0].split()
    assert set(families) <= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    # AF_NETLINK only where `ip -j` runs (the control plane, hostnet.py)
    assert ("AF_NETLINK" in families) == (unit == "envoyage-control.service")


@pytest.mark.parametrize("topology", ["a", "c"])
def test_the_control_plane_has_no_capability_at_all(topology):
    s = settings(render(UNITS["envoyage-control.service"], envoyage_topology=topology))
    assert s["CapabilityBoundingSet"] == [""] and s.get("AmbientCapabilities", [""]) == [""]
    assert s["ReadWritePaths"] == ["/var/lib/envoyage /var/lib/envoyage-dns"]
    no_dns = settings(render(UNITS["envoyage-control.service"], control_plane_dns=False))
    assert no_dns["ReadWritePaths"] == ["/var/lib/envoyage"]


@pytest.mark.parametrize("unit", ["envoyage-edge.service", "envoyage-envoy.service"])
def test_the_envoys_bind_low_ports_and_nothing_else(unit):
    s = settings(render(UNITS[unit]))
    assert s["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"] and s["AmbientCapabilities"] == [
        "CAP_NET_BIND_SERVICE"
    ]
    assert s["ReadWritePaths"] == ["/var/log/envoyage"]


def test_the_home_envoy_admin_is_a_socket_not_a_port():
    text = render(UNITS["envoyage-envoy.service"])
    assert "--admin-socket /run/envoyage-envoy/admin.sock" in text and "--admin-port" not in text


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
@pytest.mark.parametrize("topology", ["a", "c"])
@pytest.mark.parametrize("unit", sorted(UNITS))
def test_systemd_analyze_scores_every_unit_below_the_goal(tmp_path, unit, topology):
    path = tmp_path / unit
    path.write_text(render(UNITS[unit], envoyage_topology=topology))
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out.stdout)
    assert m, out.stdout[-500:] + out.stderr[-500:]
    assert float(m.group(1)) < GOAL, out.stdout


def test_logrotate_rotates_as_the_logs_owner_and_keeps_their_mode():
    text = render("roles/envoy/templates/logrotate.j2")
    assert "copytruncate" in text and "su envoy envoy" in text and "create" not in text.split("{", 1)[1]


@pytest.mark.parametrize(
    ("playbook", "names"),
    [
        (
            "rotate.yml",
            (
                "wireguard_dir",
                "envoyage_tunnel_interface",
                "control_plane_config",
                "envoyage_venv",
                "control_plane_secret_outbox",
                "control_plane_link_key_file",
                "envoyage_control_plane_user",
            ),
        ),
        ("backup.yml", ("envoyage_venv", "control_plane_config", "control_plane_state_dir")),
    ],
)
def test_the_everyday_playbooks_take_every_path_from_the_roles(playbook, names):
    text = (ROOT / "playbooks" / playbook).read_text()
    plays = yaml.safe_load(text)
    literal = [v for v in _strings(plays) if re.search(r"(^|[\s\[,])/(etc|var|opt|run|usr)/", v) and "{{" not in v]
    assert not literal, literal
    for name in names:
        assert name in text, name


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
