"""Unbound's configuration has one renderer (plugins/module_utils/_unbound.py): the unbound
role (its own task, its vars and the filter envoyage.core.unbound_conf, run by
ansible-playbook) and the runtime (envoyage.dns.unbound.render_conf, which the namespace
lab uses) write the same file for the same settings, and the runtime's defaults are the
role's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.helpers import run_local_playbook

from envoyage.dns.unbound import ResolverSettings, render_conf
from envoyage.module_utils import _unbound

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "unbound"
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


def _role_task() -> dict:
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    (task,) = [t for t in tasks if t["name"] == "Write Unbound's configuration"]
    return task


def role_renders(tmp_path: Path, **inputs) -> str:
    """unbound.conf as the role writes it: its task's content expression over its vars,
    templated by ansible-playbook with the collection from this checkout."""
    out = tmp_path / "unbound.conf"
    play = [
        {
            "name": "The unbound role's configuration",
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars": {**yaml.safe_load((ROLE / "vars" / "main.yml").read_text()), **inputs},
            "tasks": [
                {
                    "name": "Render as the role does",
                    "ansible.builtin.copy": {
                        "content": _role_task()["ansible.builtin.copy"]["content"],
                        "dest": str(out),
                    },
                }
            ],
        }
    ]
    proc = run_local_playbook(tmp_path, play)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out.read_text()


@pytest.mark.skipif(not PLAYBOOK.exists(), reason="ansible-playbook is not installed")
@pytest.mark.parametrize(
    "inputs",
    [
        {},  # the role's defaults: no forwarders (resolution from the root servers), port 53
        {"unbound_forwarders": ["198.18.90.3", "192.0.2.53@5353"], "envoyage_dns_port": 5353},
    ],
    ids=["defaults", "forwarders-and-port"],
)
def test_the_role_and_the_runtime_write_the_same_file(tmp_path, inputs):
    role_defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    common = yaml.safe_load((ROOT / "roles" / "common" / "defaults" / "main.yml").read_text())
    inputs = {
        **{k: v for k, v in role_defaults.items() if "{{" not in str(v)},
        # the defaults that read the inventory-wide settings, as they come out for a home
        # at 192.168.1.10 on 192.168.1.0/24
        "unbound_listen": ["192.168.1.10", "127.0.0.1", "::1"],
        "unbound_access": ["192.168.1.0/24", "127.0.0.0/8", "::1/128"],
        "envoyage_dns_include_file": common["envoyage_dns_include_file"],
        "envoyage_dns_port": common["envoyage_dns_port"],
        **inputs,
    }
    assert set(inputs) >= set(role_defaults)
    runtime = render_conf(
        ResolverSettings(
            listen=tuple(inputs["unbound_listen"]),
            port=inputs["envoyage_dns_port"],
            access=tuple(inputs["unbound_access"]),
            upstreams=tuple(inputs["unbound_forwarders"]),
            include_file=inputs["envoyage_dns_include_file"],
            control_socket=inputs["unbound_control_socket"],
        )
    )
    assert role_renders(tmp_path, **inputs) == runtime
    if inputs["unbound_forwarders"]:
        assert "forward-addr: 192.0.2.53@5353" in runtime and "interface: 192.168.1.10@5353" in runtime
    else:
        assert "forward-zone" not in runtime


def test_the_runtimes_defaults_are_the_roles():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    s = ResolverSettings(listen=("192.168.1.10",), include_file="z", access=("192.168.1.0/24",))
    assert s.control_socket == defaults["unbound_control_socket"] == _unbound.CONTROL_SOCKET
    assert list(s.upstreams) == defaults["unbound_forwarders"] == list(_unbound.FORWARDERS)
    common = yaml.safe_load((ROOT / "roles" / "common" / "defaults" / "main.yml").read_text())
    assert s.port == common["envoyage_dns_port"] == _unbound.PORT
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert spec["unbound_control_socket"]["default"] == _unbound.CONTROL_SOCKET
    assert spec["unbound_forwarders"]["default"] == list(_unbound.FORWARDERS)


@pytest.mark.skipif(not shutil.which("unbound-checkconf"), reason="unbound-checkconf is not installed")
def test_unbound_accepts_what_is_rendered(tmp_path):
    include = tmp_path / "zones.conf"
    include.write_text("server:\n")
    conf = tmp_path / "unbound.conf"
    conf.write_text(
        render_conf(
            ResolverSettings(
                listen=("127.0.0.1",),
                include_file=str(include),
                access=("192.168.1.0/24",),
                upstreams=("192.0.2.53",),
                directory=str(tmp_path),
                username="",
                trust_anchor_file=None,
            )
        )
    )
    out = subprocess.run(["unbound-checkconf", str(conf)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
