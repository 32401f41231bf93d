"""The Ansible collection envoyage.core as users get it: the tarball builds small and
installs; ansible-doc documents every module; and, on the installed copy, ansible-test
sanity, the collection's unit tests and one integration target per module (check mode,
apply, check mode, apply), run at -vvv and searched for every private key they made."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from support.helpers import ENVOYAGE, rmtree, short_tmpdir

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
MODULES = ("wireguard_keypair", "envoyage_ca", "envoyage_cert", "envoyage_service")


def _site_plan():
    """plugins/filter/plan.py: which roles the site runs (the one list of them)."""
    spec = importlib.util.spec_from_file_location("envoyage_site_plan", ROOT / "plugins" / "filter" / "plan.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ROLES = ("preflight", *_site_plan().all_roles())
PIP_VERSION = "24.2"  # what ansible-test's venvs bootstrap

pytestmark = pytest.mark.integration

# ansible-test bootstraps pip in each of its venvs with a get-pip script from a host that is
# not reachable here; this stand-in runs pip from its wheel (the wheel comes from PyPI,
# which is reachable), with the arguments ansible-test gives get-pip.
GET_PIP = """\
import os
import sys

wheel = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip-{v}-py3-none-any.whl")
sys.path.insert(0, wheel)
from pip._internal.cli.main import main  # noqa: E402

sys.exit(main(["install"] + [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]))
"""


def _ansible_test_cache() -> None:
    cache = Path.home() / ".ansible" / "test" / "cache"
    script = cache / f"get_pip_{PIP_VERSION.replace('.', '_')}.py"
    wheel = cache / f"pip-{PIP_VERSION}-py3-none-any.whl"
    cache.mkdir(parents=True, exist_ok=True)
    if not wheel.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--disable-pip-version-check",
                "-q",
                "--no-deps",
                "-d",
                str(cache),
                f"pip=={PIP_VERSION}",
            ],
            check=True,
            timeout=300,
        )
    if not script.exists():
        script.write_text(GET_PIP.format(v=PIP_VERSION))


@pytest.fixture(scope="module")
def collection():
    """Build the tarball from the checkout (with the runtime wheel in it) and install it, as
    scripts/build-collection.sh does; yields (tarball, installed path)."""
    work = short_tmpdir("eyC-")
    try:
        built = subprocess.run(
            ["bash", str(ROOT / "scripts" / "build-collection.sh"), str(work / "collections")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert built.returncode == 0, built.stdout + built.stderr
        tarball = Path(dict(line.split("=", 1) for line in built.stdout.splitlines() if "=" in line)["TARBALL"])
        path = work / "collections" / "ansible_collections" / "envoyage" / "core"
        _ansible_test_cache()
        yield tarball, path
    finally:
        rmtree(work)


def _ansible_test(path: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "ansible-test"), *args, "--python", "3.11"],
        cwd=path,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(path.parents[2])),
    )


def test_the_tarball_is_small_and_holds_the_collection_not_the_tests_or_caches(collection):
    tarball, path = collection
    # the collection, the runtime's sources and its wheel (about 400 KB with issue 20's security
    # work); a cache or a test tree in it would be megabytes
    assert tarball.stat().st_size < 480_000, f"{tarball.stat().st_size} bytes"
    names = tarfile.open(tarball).getnames()
    for wanted in (
        "COLLECTION.md",
        "meta/runtime.yml",
        "MANIFEST.json",
        "plugins/module_utils/_wireguard.py",
        "plugins/module_utils/_pki.py",
        *(f"plugins/modules/{m}.py" for m in MODULES),
        "changelogs/changelog.yaml",
        "runtime/pyproject.toml",
        "playbooks/site.yml",
        "plugins/filter/network.py",
        "plugins/filter/plan.py",
        "plugins/filter/dns.py",
        "plugins/module_utils/_unbound.py",
        "tests/lint_rules/envoyage_no_fallback.py",
        "extensions/molecule/default/molecule.yml",
        *(f"roles/{r}/meta/argument_specs.yml" for r in ROLES),
    ):
        assert wanted in names, wanted
    for unwanted in (".venv", "bench", "scripts", "runtime/tests", ".hypothesis", ".git", "__pycache__"):
        assert not any(n == unwanted or n.startswith(unwanted + "/") or f"/{unwanted}/" in n for n in names), unwanted
    assert (path / "plugins" / "modules" / "envoyage_ca.py").exists()
    # the runtime role installs the wheel the collection carries
    assert any(n.startswith("roles/runtime/files/envoyage-") and n.endswith(".whl") for n in names)


def test_ansible_lint_production_profile_passes(collection):
    """The roles, playbooks and Molecule scenarios as installed (deliberate exceptions are
    in .ansible-lint-ignore, with the reason)."""
    _, path = collection
    out = subprocess.run(
        [str(BIN / "ansible-lint"), "--nocolor"],
        cwd=path,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(path.parents[2])),
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    assert "Profile 'production' was required, and it passed" in out.stdout + out.stderr


def test_ansible_lint_refuses_a_fallback_of_a_variable_with_a_role_default(collection):
    """The project's rule envoyage-no-fallback (tests/lint_rules/, loaded by .ansible-lint)
    names a `| default(...)` fallback of a common variable, with file and line."""
    _, path = collection
    planted = path / "roles" / "edge" / "tasks" / "planted_fallback.yml"
    planted.write_text(
        "---\n- name: A fallback of a common variable\n  ansible.builtin.debug:\n"
        "    msg: \"{{ envoyage_tunnel_prefix | default('10.88.0.0/24') }}\"\n"
    )
    try:
        out = subprocess.run(
            [str(BIN / "ansible-lint"), "--nocolor", str(planted.relative_to(path))],
            cwd=path,
            capture_output=True,
            text=True,
            timeout=600,
            env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(path.parents[2])),
        )
    finally:
        planted.unlink()
    log = out.stdout + out.stderr
    assert out.returncode != 0, log[-3000:]
    assert "envoyage-no-fallback" in log and "roles/edge/tasks/planted_fallback.yml:4" in log, log[-3000:]


def test_every_role_documents_and_validates_its_variables(collection):
    """Each role's defaults are all in its argument spec (and the other way round), so a
    misspelt or mistyped inventory variable fails at the preflight, naming it."""
    import yaml

    _, path = collection
    for role in ROLES:
        spec = yaml.safe_load((path / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        options = set(spec["main"].get("options") or {})
        assert spec.get("validate") == spec["main"] or role == "preflight", f"{role}: validate differs from main"
        defaults_file = path / "roles" / role / "defaults" / "main.yml"
        defaults = set(yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.exists() else set()
        assert defaults <= options, f"{role}: defaults without a spec: {sorted(defaults - options)}"
        for name, option in spec["main"].get("options", {}).items():
            assert name.startswith(f"{role}_") or role == "preflight", f"{role}: {name} lacks the role prefix"
            assert option.get("description"), f"{role}: {name} has no description"


def test_ansible_doc_documents_every_module_with_examples_and_return_values(collection):
    import json

    _, path = collection
    out = subprocess.run(
        [str(BIN / "ansible-doc"), "--json", *(f"envoyage.core.{m}" for m in MODULES)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(path.parents[2])),
    )
    assert out.returncode == 0, out.stderr
    docs = json.loads(out.stdout)
    for module in MODULES:
        doc = docs[f"envoyage.core.{module}"]
        assert doc["doc"]["short_description"] and doc["examples"].strip() and doc["return"], module
        for name, option in doc["doc"]["options"].items():
            assert option.get("description"), f"{module}: option {name} has no description"


def test_ansible_doc_shows_every_role_option_and_each_role_has_its_readme(collection):
    """`ansible-doc -t role envoyage.core.<role>` on the installed copy shows every option of
    the role's argument spec, with its description, and the role's README (written from the
    same spec by scripts/role-readmes.py) came along in the tarball."""
    import json

    import yaml

    _, path = collection
    specs = {
        role.name: yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
        for role in sorted((path / "roles").iterdir())
        if (role / "meta" / "argument_specs.yml").exists()
    }
    assert len(specs) >= 8, sorted(specs)
    out = subprocess.run(
        [str(BIN / "ansible-doc"), "-t", "role", "--json", *(f"envoyage.core.{r}" for r in specs)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(path.parents[2])),
    )
    assert out.returncode == 0, out.stderr
    docs = json.loads(out.stdout)
    for role, spec in specs.items():
        shown = docs[f"envoyage.core.{role}"]["entry_points"]
        assert set(shown) == set(spec), f"{role}: entry points {sorted(shown)}"
        for entry, entry_spec in spec.items():
            options = shown[entry].get("options") or {}
            assert set(options) == set(entry_spec.get("options") or {}), f"{role}/{entry}: options differ"
            assert all(o.get("description") for o in options.values()), f"{role}/{entry}: an option lacks a description"
        readme = (path / "roles" / role / "README.md").read_text()
        for name in spec["main"].get("options") or {}:
            assert f"| `{name}` |" in readme, f"roles/{role}/README.md does not list {name}"


def test_sanity(collection):
    _, path = collection
    out = _ansible_test(path, "sanity")
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]


def test_unit_tests(collection):
    _, path = collection
    out = _ansible_test(path, "units", "--venv")
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    assert " passed" in out.stdout


@pytest.mark.parametrize("target", MODULES)
def test_integration_target_and_no_secret_in_its_output(collection, target):
    _, path = collection
    keep = short_tmpdir("eyT-")
    try:
        (path / "tests" / "integration" / "integration_config.yml").write_text(
            f"envoyage_bin: {ENVOYAGE}\nenvoyage_target_dir: {keep}\n"
        )
        out = _ansible_test(path, "integration", "--local", "-vvv", target)
        log = out.stdout + out.stderr
        assert out.returncode == 0, log[-6000:]
        assert "failed=0" in log
        # every private key the target made, in any form, is absent from the -vvv output
        secrets = []
        for f in keep.iterdir():
            text = f.read_text(errors="replace").strip()
            if "PRIVATE KEY" in text:  # PEM: every base64 line of it
                secrets += [line for line in text.splitlines() if line and not line.startswith("-----")]
            elif len(text) == 44 and text.endswith("="):  # a WireGuard key
                secrets.append(text)
        if target != "envoyage_service":
            assert secrets, f"{target} made no keys in {keep}"
        leaked = [s for s in secrets if s in log]
        assert not leaked, f"{len(leaked)} lines of private keys appear in the output of {target}"
    finally:
        rmtree(keep)
