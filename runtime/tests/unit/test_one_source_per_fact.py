"""One source per fact (issue 21): a fact several roles read is one inventory-wide
`envoyage_*` variable (roles/common/defaults/main.yml), which every role reads directly: a
role has no option of its own for it. The options roles had for such facts are removed, and
the preflight (each role's validate entry point) refuses an inventory that still sets one,
naming the envoyage_* variable to set, so an upgrade does not silently ignore it. And the
preflight's argument spec states common's defaults, not other ones."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.helpers import run_local_playbook

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
COMMON = yaml.safe_load((ROOT / "roles" / "common" / "defaults" / "main.yml").read_text())
SINGLE = re.compile(r"^\{\{ *(envoyage_[a-z_]+) *\}\}$")

# Role options that default to an envoyage_* variable but are the role's own setting: a
# different value breaks no other role.
ROLE_OWN = {
    "envoy_pip_extra_args",  # how this role installs, read by no other role
    "runtime_pip_extra_args",
    "control_plane_lan_cidrs",  # who passes vpn-only; unbound_access is its own list
    "control_plane_dns_answer_address",  # the answer; unbound_interfaces is where it listens
}


def _checks(role: str, name: str) -> dict[str, str]:
    path = ROOT / "roles" / role / "tasks" / "validate.yml"
    tasks = yaml.safe_load(path.read_text()) if path.exists() else []
    checks = [t for t in tasks if t["name"].startswith(name)]
    return {item["option"]: item["common"] for t in checks for item in t["loop"]}


def _one_source_checks(role: str) -> dict[str, str]:
    return _checks(role, "Refuse an option that differs from the inventory-wide")


def _removed(role: str) -> dict[str, str]:
    return _checks(role, "Refuse a removed option that the inventory still sets")


def _roles() -> list[str]:
    return sorted(p.name for p in (ROOT / "roles").iterdir() if p.name not in {"common", "preflight"})


@pytest.mark.parametrize("role", _roles())
def test_no_role_option_only_restates_a_shared_fact(role):
    """A role default that is exactly `{{ envoyage_X }}` is a second name for a fact other
    roles read: the role reads envoyage_X itself instead (only a genuine role setting that
    starts from the inventory-wide value, listed in ROLE_OWN, may)."""
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    shared = {
        name: SINGLE.match(value).group(1)
        for name, value in defaults.items()
        if isinstance(value, str) and SINGLE.match(value) and name not in ROLE_OWN
    }
    assert not shared, f"read the envoyage_* variable directly instead of: {shared}"
    # and no role still pins such an option by comparing it with the shared fact
    assert not _one_source_checks(role)


@pytest.mark.parametrize("role", _roles())
def test_a_removed_option_is_gone_from_the_role_and_refused(role):
    removed = _removed(role)
    assert set(removed.values()) <= set(COMMON) | {"envoyage_domain"}
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    assert not set(removed) & set(defaults)
    for entry in spec.values():
        assert not set(removed) & set(entry.get("options", {}))
    # nothing in the collection, its tests, scripts or docs reads a removed option any more
    # (the validate task names it to refuse it, the changelog to say what to set instead)
    pattern = re.compile(r"\b(" + "|".join(removed) + r")\b") if removed else None
    skip = {ROOT / "roles" / role / "tasks" / "validate.yml", Path(__file__).resolve()}
    for top in ("roles", "playbooks", "extensions", "scripts", "docs", "runtime/tests", "plugins", "README.md"):
        for path in [ROOT / top] if (ROOT / top).is_file() else (ROOT / top).rglob("*"):
            if pattern is None or not path.is_file() or path in skip or path.suffix in {".pyc", ".whl", ".gz"}:
                continue
            found = pattern.search(path.read_text(errors="replace"))
            assert not found, f"{path.relative_to(ROOT)} still names {found and found.group(1)}"


def test_the_preflight_spec_states_commons_defaults():
    spec = yaml.safe_load((ROOT / "roles" / "preflight" / "meta" / "argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    # every common variable is checked (envoyage_domain has no default: it is required)
    assert set(options) == set(COMMON) | {"envoyage_domain"}
    assert options["envoyage_domain"]["required"] and "envoyage_domain" not in COMMON
    for name, value in COMMON.items():
        if "default" not in options[name]:
            # only a templated default (computed per host) may go unstated
            assert isinstance(value, str) and "{{" in value, name
            continue
        stated = options[name]["default"]
        if isinstance(value, list):
            assert stated == value, name
        else:
            assert str(stated) == str(value), name


def _validate(tmp_path: Path, role: str, **inputs) -> subprocess.CompletedProcess[str]:
    """The role's validate entry point, as the preflight runs it, over common's defaults."""
    play = [
        {
            "name": "Preflight of one role",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "roles": ["envoyage.core.common"],
            "tasks": [
                {
                    "name": "Check the role's variables",
                    "ansible.builtin.include_role": {"name": f"envoyage.core.{role}", "tasks_from": "validate"},
                }
            ],
        }
    ]
    return run_local_playbook(tmp_path, play, inputs)


# what the control plane's checks need beyond common's defaults (site.yml gathers the rest)
CONTROL_PLANE = {
    "envoyage_domain": "example.test",
    "envoyage_lan_cidrs": ["192.168.1.0/24"],
    "envoyage_home_address": "192.168.1.10",
    "envoyage_vps_address": "192.0.2.1",
}


@pytest.mark.skipif(not PLAYBOOK.exists(), reason="ansible-playbook is not installed")
@pytest.mark.parametrize(
    ("role", "inputs", "message"),
    [
        ("envoy", {"envoy_service": True}, None),
        # a removed option is refused even at its old default: the role no longer reads it
        ("envoy", {"envoy_service": True, "envoy_group": "other"}, "envoy_group was removed"),
        ("envoy", {"envoy_service": True, "envoy_group": "envoy"}, "set envoyage_envoy_group"),
        ("envoy", {"envoy_service": True, "envoy_log_dir": "/srv/logs"}, "set envoyage_log_dir"),
        ("envoy", {"envoy_service": True, "envoy_venv": "/srv/venv"}, "set envoyage_venv"),
        ("runtime", {"runtime_wheel": "/x.whl"}, None),
        ("runtime", {"runtime_wheel": "/x.whl", "runtime_venv": "/srv/venv"}, "set envoyage_venv"),
        ("unbound", {"envoyage_home_address": "192.168.1.10"}, None),
        ("unbound", {"envoyage_home_address": "192.168.1.10", "unbound_port": 5353}, "set envoyage_dns_port"),
        (
            "unbound",
            {"envoyage_home_address": "192.168.1.10", "unbound_include_file": "/z.conf"},
            "set envoyage_dns_include_file",
        ),
        ("unbound", {"envoyage_home_address": "192.168.1.10", "envoyage_dns_port": 5353}, None),
        # the same group set the one right way: both roles read it
        ("envoy", {"envoy_service": True, "envoyage_envoy_group": "other"}, None),
        # on the VPS the access log is the edge user's, who runs Envoy there
        ("envoy", {"envoy_service": False, "envoy_log_owner": "root"}, "set envoyage_edge_user"),
        ("edge", {}, None),
        ("edge", {"edge_user": "someone"}, "set envoyage_edge_user"),
        ("edge", {"edge_link_port": 19443}, "set envoyage_link_port"),
        ("edge", {"edge_config_dir": "/etc/envoyage"}, "edge_config_dir was removed"),
        ("edge", {"edge_venv": "/srv/venv"}, "set envoyage_venv"),
        ("edge", {"envoyage_tunnel_prefix": "10.99.0.0/33"}, "envoyage_tunnel_prefix:"),
        ("edge", {"envoyage_link_port": 19443}, None),
        ("wireguard", {"envoyage_vps_address": "192.0.2.1"}, None),
        ("control_plane", CONTROL_PLANE, None),
        ("control_plane", {**CONTROL_PLANE, "control_plane_user": "cp"}, "set envoyage_control_plane_user"),
        ("control_plane", {**CONTROL_PLANE, "control_plane_default_domain": "example.org"}, "set envoyage_domain"),
        (
            "control_plane",
            {**CONTROL_PLANE, "control_plane_envoy_group": "envoy"},
            "control_plane_envoy_group was removed",
        ),
        ("control_plane", {**CONTROL_PLANE, "control_plane_vps_address": "192.0.2.1"}, "set envoyage_vps_address"),
        ("control_plane", {**CONTROL_PLANE, "envoyage_tunnel_prefix": "10.88.0.0/33"}, "envoyage_tunnel_prefix:"),
        (
            "wireguard",
            {"envoyage_vps_address": "192.0.2.1", "wireguard_interface": "wg9"},
            "set envoyage_tunnel_interface",
        ),
        ("wireguard", {"envoyage_vps_address": "192.0.2.1", "wireguard_link_port": 18443}, "set envoyage_link_port"),
        (
            "wireguard",
            {"envoyage_vps_address": "192.0.2.1", "envoyage_tunnel_interface": "x" * 16},
            "envoyage_tunnel_interface:",
        ),
    ],
)
def test_the_preflight_refuses_a_removed_option_naming_the_variable_to_set(tmp_path, role, inputs, message):
    proc = _validate(tmp_path, role, **inputs)
    out = proc.stdout + proc.stderr
    if message is None:
        assert proc.returncode == 0, out[-3000:]
    else:
        assert proc.returncode != 0
        assert message in out, out[-3000:]


def _tasks(tasks: list[dict]) -> list[dict]:
    """Every task, with the tasks inside blocks."""
    out = []
    for task in tasks:
        out += _tasks(task["block"]) if "block" in task else [task]
    return out


@pytest.mark.parametrize(
    ("role", "start", "read", "unit"),
    [
        ("envoy", "Start Envoy at boot and now", "Wait for Envoy to be ready", "envoyage-envoy.service"),
        ("crowdsec", "Start CrowdSec at boot and now", "List the registered bouncers", "crowdsec.service"),
    ],
)
def test_check_mode_skips_what_needs_a_unit_that_is_not_there_yet(role, start, read, unit):
    """`--check` on a host where the unit is not installed or not running yet must not fail
    on starting it, nor wait for it (60 s of retries) and fail; on a converged host (where
    it runs) the read still runs in check mode, as Molecule's check step relies on."""
    tasks = _tasks(yaml.safe_load((ROOT / "roles" / role / "tasks" / "main.yml").read_text()))
    names = [t["name"] for t in tasks]
    (facts,) = [t for t in tasks if "ansible.builtin.service_facts" in t]
    (start_task,) = [t for t in tasks if t["name"] == start]
    (read_task,) = [t for t in tasks if t["name"].startswith(read)]
    assert names.index(facts["name"]) < names.index(start) < names.index(read_task["name"])
    assert facts["when"] == "ansible_check_mode"
    assert start_task["when"] == f"not ansible_check_mode or '{unit}' in ansible_facts.services"
    assert read_task["check_mode"] is False
    assert read_task["when"] == (
        f"not ansible_check_mode or ansible_facts.services.get('{unit}', {{}}).get('state') == 'running'"
    )
