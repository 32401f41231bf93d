"""The collection's roles as users run them: Molecule scenarios on systemd containers
from the local base image (extensions/molecule/default: topology A, home + vps + a
labelled app; extensions/molecule/topology_c: home only), driven step by step so that one set of instances also
serves the bad-inventory checks and the -vvv secret search.

Shares the base image, the apt caches and the wheelhouse with the README's first command
(scripts/demo-nodes.sh)."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from checks import eventually, get, ok  # the scenarios' checks (extensions/molecule/common)

ROOT = Path(__file__).resolve().parents[3]

VENV_BIN = ROOT / ".venv" / "bin"
# the dependency venv's bin (molecule calls ansible-config, pytest and more by name)
DEPS_BIN = Path(os.path.realpath(VENV_BIN / "ansible")).parent
pytestmark = pytest.mark.integration

if not shutil.which("docker"):
    pytest.fail("docker is missing: scripts/test.sh installs it and starts dockerd", pytrace=False)


STEPS: list[tuple[str, float]] = []  # (command, seconds): printed at the end of each test (-rP)


def sh(argv, env=None, timeout=900, check=True):
    started = time.monotonic()
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    STEPS.append(
        (" ".join(Path(str(a)).name if i == 0 else str(a) for i, a in enumerate(argv))[:80], time.monotonic() - started)
    )
    if check and out.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, argv))} failed ({out.returncode}):\n{out.stdout[-6000:]}\n{out.stderr[-3000:]}"
        )
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("molecule")


@pytest.fixture(scope="module")
def env(work):
    """Built once for both scenarios: the base image, the collection (installed where
    Molecule's converge finds it) and the wheelhouse; the environment Molecule and
    ansible-playbook run in."""
    image = sh(["bash", "scripts/base-image.sh"]).stdout.strip().splitlines()[-1]
    built = sh(
        ["bash", "scripts/build-collection.sh", str(work / "collections")], env={**os.environ, "WHEELHOUSE": "1"}
    ).stdout
    paths = dict(line.split("=", 1) for line in built.splitlines() if re.match(r"^[A-Z]+=", line))
    cache = os.environ.get("ENVOYAGE_CACHE", "/var/cache/envoyage")
    for kind in ("home", "vps"):
        for sub in ("archives/partial", "lists/partial"):
            Path(cache, "apt", kind, sub).mkdir(parents=True, exist_ok=True)
    (work / "home").mkdir()
    return {
        **os.environ,
        "HOME": str(work / "home"),
        "PATH": f"{VENV_BIN}:{DEPS_BIN}:{os.environ['PATH']}",
        "ENVOYAGE_BASE_IMAGE": image,
        "ENVOYAGE_WHEELHOUSE": paths["WHEELHOUSE"],
        "ENVOYAGE_CACHE": cache,
        "ANSIBLE_COLLECTIONS_PATH": paths["COLLECTIONS"],
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_PIPELINING": "1",
        "PY_COLORS": "0",
        "MOLECULE_NO_LOG": "false",
    }


def molecule(env, step, scenario, *extra, check=True, timeout=900):
    out = sh([str(VENV_BIN / "molecule"), step, "-s", scenario, *extra], env=env, timeout=timeout, check=check)
    # the scenarios are where Molecule looks in a collection (extensions/molecule)
    assert "should migrate" not in out.stdout + out.stderr, (out.stdout + out.stderr)[-2000:]
    return out


def docker_read(container, path):
    out = subprocess.run(["docker", "exec", container, "cat", path], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() if out.returncode == 0 else None


def assert_tests_ran(out, at_least):
    """The scenario's testinfra tests ran (not "no tests collected") and all passed."""
    text = out.stdout + out.stderr
    passed = re.findall(r"(\d+) passed", text)
    assert passed and int(passed[-1]) >= at_least and not re.search(r"\d+ (failed|error)", text), text[-3000:]


BAD_INVENTORIES = [
    ("missing domain", {"envoyage_domain": None}, "envoyage_domain"),
    ("topology B", {"envoyage_topology": "b"}, "topology B (the control plane on the VPS) is not available yet"),
    ("malformed address", {"envoyage_home_address": "198.18.90.300"}, "envoyage_home_address: '198.18.90.300'"),
    ("malformed tunnel prefix", {"envoyage_tunnel_prefix": "10.88.0/24"}, "envoyage_tunnel_prefix"),
]


def inventory(work: Path, name: str, overrides: dict) -> Path:
    """An inventory for the default scenario's instances; an override of None drops the
    variable."""
    import yaml

    base = {
        "ansible_connection": "community.docker.docker",
        "ansible_python_interpreter": "/usr/bin/python3",
        "envoyage_topology": "a",
        "envoyage_domain": "example.test",
        "envoyage_vps_address": "198.18.90.3",
        "envoyage_lan_cidrs": ["198.18.90.0/24"],
    }
    base.update(overrides)
    doc = {
        "all": {
            "vars": {k: v for k, v in base.items() if v is not None},
            "children": {"home": {"hosts": {"eym-home": None}}, "vps": {"hosts": {"eym-vps": None}}},
        }
    }
    path = work / f"bad-{re.sub('[^a-z]+', '-', name)}.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(autouse=True)
def step_times():
    """How long each command of the test took (for the Molecule time in CI: pytest -rP)."""
    STEPS.clear()
    yield
    print("\n".join(f"{seconds:7.1f} s  {what}" for what, seconds in STEPS))
    print(f"{sum(seconds for _, seconds in STEPS):7.1f} s  in all")


def assert_check_mode_passes(out) -> None:
    """`molecule check`: the converge playbook in check mode on the converged instances
    ran through on every host: each task supports check mode, or is a read that runs in
    check mode too (check_mode: false). (It may predict changes: the pip module in check
    mode says "changed" whenever extra_args are given, as the inventories do.)"""
    text = out.stdout + out.stderr
    recap = re.findall(r"^(eymc?-\w+)\s*:\s*ok=\d+.*unreachable=(\d+)\s+failed=(\d+)", text, re.M)
    hosts = {host for host, _, _ in recap}
    assert hosts and all(u == "0" and f == "0" for _, u, f in recap), text[-4000:]


def test_topology_a_scenario(env, work):
    """Syntax; create; every bad inventory fails before any change, naming the variable;
    converge at -vvv leaks no secret; idempotence; check mode; verify
    (extensions/molecule/default/tests); the everyday playbooks."""
    molecule(env, "destroy", "default", check=False)
    try:
        molecule(env, "syntax", "default")
        molecule(env, "create", "default")

        def bad_run(case):
            name, overrides, _ = case
            argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory(work, name, overrides)), "site.yml"]
            return sh(argv, env=env, check=False, timeout=300)

        # The bad inventories stop in the preflight, which reads only variables, and change
        # nothing (checked below): they run side by side, and beside the scenario's prepare
        # (the lab's DNS on the VPS, the app on home's Docker), which none of them reaches.
        with ThreadPoolExecutor(len(BAD_INVENTORIES) + 1) as pool:
            prepared = pool.submit(molecule, env, "prepare", "default")
            runs = list(pool.map(bad_run, BAD_INVENTORIES))
            prepared.result()
        for (name, _, message), out in zip(BAD_INVENTORIES, runs, strict=True):
            text = out.stdout + out.stderr
            assert out.returncode != 0, f"{name}: the playbook passed:\n{text[-3000:]}"
            assert message in text, f"{name}: no message naming the variable:\n{text[-3000:]}"
            recap = re.findall(r"^eym-(?:home|vps)\s*:.*changed=(\d+)", text, re.M)
            assert recap and set(recap) == {"0"}, f"{name}: something changed:\n{text[-2000:]}"
        # nothing was installed
        assert sh(["docker", "exec", "eym-home", "test", "-e", "/opt/envoyage"], check=False).returncode != 0
        converge = molecule(env, "converge", "default", "--", "-vvv", timeout=1200)
        output = converge.stdout + converge.stderr
        secrets = {
            "home WireGuard key": docker_read("eym-home", "/etc/envoyage/wireguard/envoyage0.key"),
            "VPS WireGuard key": docker_read("eym-vps", "/etc/envoyage/wireguard/envoyage0.key"),
            "edge secret": docker_read("eym-vps", "/etc/envoyage/edge.secret"),
            "CrowdSec bouncer key": docker_read("eym-vps", "/etc/crowdsec-bouncer.key")
            or docker_read("eym-vps", "/etc/envoyage/crowdsec-bouncer.key"),
        }
        for what, secret in secrets.items():
            assert secret and len(secret) >= 16, f"{what} was not created"
            variants = {
                secret,
                base64.b64encode(secret.encode()).decode(),
                base64.b64encode((secret + "\n").encode()).decode(),
            }
            for v in variants:
                assert v not in output, f"the {what} appears in the -vvv converge output"
        assert "changed=" in output and len(output) > 10_000  # it really was verbose
        # Both run the site playbook against the converged instances and change nothing
        # (idempotence checks that; check mode cannot change anything): side by side.
        with ThreadPoolExecutor(2) as pool:
            idempotent = pool.submit(molecule, env, "idempotence", "default", timeout=600)
            checked = pool.submit(molecule, env, "check", "default", timeout=600)
            idempotent.result()
            assert_check_mode_passes(checked.result())
        verified = molecule(env, "verify", "default", timeout=600)
        assert_tests_ran(verified, at_least=15)
        everyday_jobs(env, work)
    finally:
        molecule(env, "cleanup", "default", check=False)
        molecule(env, "destroy", "default", check=False)


def wait_for_200(address, host_header, seconds=60):
    try:
        return bool(eventually(lambda: ok(get(address, host_header)), timeout=seconds))
    except AssertionError:
        return False


def everyday_jobs(env, work: Path) -> None:
    """The small playbooks against the converged scenario: add a service, back up the
    registry, rotate the edge secret and the WireGuard keys."""
    good = inventory(
        work,
        "good",
        {
            "envoyage_pip_extra_args": "--no-index --find-links /var/cache/envoyage-wheels",
            "control_plane_docker_scope": "eym",
        },
    )

    def playbook(name, *extra):
        return sh([str(VENV_BIN / "ansible-playbook"), "-i", str(good), name, *extra], env=env, timeout=600)

    app_ip = sh(
        ["docker", "inspect", "-f", '{{(index .NetworkSettings.Networks "eym-net").IPAddress}}', "eym-whoami"]
    ).stdout.strip()
    playbook(
        "envoyage.core.add_service",
        "-e",
        "service_name=manual",
        "-e",
        "service_domain=manual.example.test",
        "-e",
        f"service_upstream={app_ip}:80",
    )
    assert wait_for_200("198.18.90.3", "manual.example.test"), "the manual service is not served through the VPS"
    again = playbook(
        "envoyage.core.add_service",
        "-e",
        "service_name=manual",
        "-e",
        "service_domain=manual.example.test",
        "-e",
        f"service_upstream={app_ip}:80",
    )
    assert re.search(r"eym-home\s*:.*changed=0", again.stdout), again.stdout[-1500:]

    backups = work / "backups"
    playbook("envoyage.core.backup", "-e", f"backup_dir={backups}")
    (backup,) = backups.glob("envoyage-eym-home-*.db")
    assert backup.stat().st_mode & 0o777 == 0o600
    assert backup.read_bytes()[:16] == b"SQLite format 3\x00"

    def wg_public(host):
        return sh(["docker", "exec", host, "wg", "show", "envoyage0", "public-key"]).stdout.strip()

    before = (wg_public("eym-home"), wg_public("eym-vps"), docker_read("eym-vps", "/etc/envoyage/edge.secret"))
    out = playbook("envoyage.core.rotate")
    after = (wg_public("eym-home"), wg_public("eym-vps"), docker_read("eym-vps", "/etc/envoyage/edge.secret"))
    assert all(a != b for a, b in zip(before, after, strict=True)), "rotate left a key or the secret as it was"
    assert after[2] not in out.stdout + out.stderr
    assert docker_read("eym-home", "/var/lib/envoyage/edge-secret.outbox") is None
    assert wait_for_200("198.18.90.3", "whoami.example.test", 90), "nothing answers through the VPS after rotate"


def test_topology_c_scenario(env):
    """Home only, `molecule test`: syntax, converge, idempotence, check mode, verify
    (extensions/molecule/topology_c/tests)."""
    out = molecule(env, "test", "topology_c", timeout=1500)
    assert_tests_ran(out, at_least=8)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)  # Molecule's colours, if any
    for step in ("syntax", "idempotence", "check"):
        assert re.search(rf"topology_c\W+{step}\W+Executed: Successful", text), (
            f"no successful {step} step:\n{text[-3000:]}"
        )
