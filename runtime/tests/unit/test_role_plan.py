"""One source per fact in the collection (issue 21, item 1): which roles run on which host
is the plan in plugins/filter/plan.py, which site.yml and the preflight read; and no
variable with a role default gets a `| default(...)` fallback (the check the ansible-lint
rule envoyage-no-fallback runs, tests/lint_rules/)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"envoyage_test_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plan = _load(ROOT / "plugins" / "filter" / "plan.py")
no_fallback = pytest.importorskip("ansiblelint") and _load(ROOT / "tests" / "lint_rules" / "envoyage_no_fallback.py")


def test_site_runs_each_stage_of_the_plan_in_order_on_its_hosts():
    plays = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
    assert [r["role"] for r in plays[0]["roles"]] == ["envoyage.core.preflight"] and plays[0]["any_errors_fatal"]
    stages = plays[1:]
    assert len(stages) == len(plan.PLAN)
    for play, (stage, groups, _roles) in zip(stages, plan.PLAN, strict=True):
        assert set(play["hosts"].split(":")) == set(groups), play["name"]
        # the inventory-wide defaults first (the plan is read with envoyage_topology), then
        # the stage's roles from the plan, and nothing else
        assert [r["role"] for r in play["roles"]] == ["envoyage.core.common"], play["name"]
        (task,) = play["tasks"]
        include = task["ansible.builtin.include_role"]
        var = task["loop_control"]["loop_var"]
        assert include == {"name": f"envoyage.core.{{{{ {var} }}}}"}, play["name"]
        assert task["loop"] == f"{{{{ '{stage}' | envoyage.core.stage_roles(envoyage_topology) }}}}", play["name"]
    # both hosts set up the tunnel in one play, and a failure on either stops both
    assert stages[0]["any_errors_fatal"] and plan.PLAN[0][0] == "tunnel"


def test_the_preflight_checks_exactly_the_roles_the_host_runs():
    tasks = yaml.safe_load((ROOT / "roles" / "preflight" / "tasks" / "main.yml").read_text())
    (check,) = [t for t in tasks if "ansible.builtin.include_role" in t]
    assert check["ansible.builtin.include_role"]["tasks_from"] == "validate"
    assert check["loop"] == "{{ group_names | envoyage.core.host_roles(envoyage_topology) }}"


@pytest.mark.parametrize("topology", ["a", "c"])
def test_the_plan_puts_each_role_where_it_belongs(topology):
    home = plan.host_roles(["home"], topology)
    vps = plan.host_roles(["vps"], topology) if topology == "a" else []
    for roles in filter(None, (home, vps)):
        assert roles[0] == "runtime"  # everything else runs from its venv
        assert ("wireguard" in roles) == (topology == "a")
        assert roles.count("envoy") == 1
    # the home resolver comes before the control plane that applies zones to it
    assert home.index("unbound") < home.index("control_plane") < home.index("envoy")
    assert "edge" not in home
    # CrowdSec where the internet arrives: the VPS in A, home in C
    assert ("crowdsec" in home) == (topology == "c")
    if vps:
        assert vps.index("envoy") < vps.index("edge")  # the edge supervises that Envoy
        assert "crowdsec" in vps and not {"unbound", "control_plane"} & set(vps)
    assert plan.host_roles("home", topology) == home


def test_every_role_of_the_collection_is_in_the_plan():
    roles = {p.name for p in (ROOT / "roles").iterdir() if (p / "meta" / "main.yml").exists()}
    assert set(plan.all_roles()) == roles - {"common", "preflight"}
    with pytest.raises(ValueError, match="no stage 'edge'"):
        plan.stage_roles("edge", "a")


def test_no_variable_with_a_role_default_gets_a_fallback():
    names = no_fallback.defaulted_names(str(ROOT))
    common = set(yaml.safe_load((ROOT / "roles" / "common" / "defaults" / "main.yml").read_text()))
    assert common <= names and "runtime_wheel" in names
    found = no_fallback.fallbacks(str(ROOT))
    assert not found, "fallbacks of a variable that has a role default (read it as it is):\n" + "\n".join(
        f"{path}:{line}: {name} | default(...)" for path, line, name in found
    )


def test_a_new_fallback_is_named_with_file_and_line(tmp_path):
    (tmp_path / "roles" / "common" / "defaults").mkdir(parents=True)
    (tmp_path / "roles" / "common" / "defaults" / "main.yml").write_text("envoyage_tunnel_prefix: 10.88.0.0/24\n")
    (tmp_path / "roles" / "edge" / "defaults").mkdir(parents=True)
    (tmp_path / "roles" / "edge" / "defaults" / "main.yml").write_text(
        "edge_id: envoyage-edge\n"
        "edge_prefix: \"{{ envoyage_tunnel_prefix | default('10.88.0.0/24') }}\"\n"
        "# a comment about envoyage_tunnel_prefix | default('x') is not a fallback\n"
        "edge_vps: \"{{ groups['vps'] | default([]) }}\"\n"
    )
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "x.yml").write_text("- hosts: all\n  vars:\n    u: \"{{ edge_id|d('x') }}\"\n")
    (tmp_path / "roles" / "edge" / "templates").mkdir()
    (tmp_path / "roles" / "edge" / "templates" / "u.j2").write_text("User={{ edge_id | default('e') }}\n")
    assert sorted(no_fallback.fallbacks(str(tmp_path))) == [
        ("playbooks/x.yml", 3, "edge_id"),
        ("roles/edge/defaults/main.yml", 2, "envoyage_tunnel_prefix"),
        ("roles/edge/templates/u.j2", 1, "edge_id"),
    ]
    # the ansible-lint rule finds the collection's root in a checkout and in an installed copy
    planted = str(tmp_path / "roles" / "edge" / "defaults" / "main.yml")
    assert no_fallback.project_root(planted) is None
    (tmp_path / "MANIFEST.json").write_text("{}")
    assert no_fallback.project_root(planted) == str(tmp_path)
