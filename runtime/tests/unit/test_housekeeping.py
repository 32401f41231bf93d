"""What a user of the collection expects around the code: a license that matches what
galaxy.yml and the runtime's pyproject.toml declare, no placeholder URLs, changelog
fragments antsibull-changelog can read, and a README per role that says what its argument
spec says (scripts/role-readmes.py writes them)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
FRAGMENTS = sorted((ROOT / "changelogs" / "fragments").iterdir())
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "meta").is_dir())


def test_the_license_file_is_the_license_galaxy_yml_and_pyproject_name():
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    pyproject = tomllib.loads((ROOT / "runtime" / "pyproject.toml").read_text())
    assert galaxy["license"] == ["Apache-2.0"]
    assert pyproject["project"]["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "license_file" not in galaxy, "galaxy.yml takes license or license_file, not both"


def test_galaxy_yml_has_no_placeholder_urls():
    text = (ROOT / "galaxy.yml").read_text()
    assert "example.invalid" not in text and "example.com" not in text
    galaxy = yaml.safe_load(text)
    for field in ("repository", "documentation", "homepage", "issues"):
        if field in galaxy:
            assert str(galaxy[field]).startswith("https://"), f"galaxy.yml {field}: {galaxy[field]!r}"


def test_no_unit_or_template_points_at_a_repository_that_does_not_exist():
    """A systemd unit's Documentation= or a template link to an invented URL sends the
    user nowhere; there is no public repository yet, so none is named."""
    made_up = re.compile(r"github\.com/envoyage|example\.invalid")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for top in ("roles", "plugins", "playbooks", "extensions")
        for path in sorted((ROOT / top).rglob("*"))
        if path.is_file() and path.suffix in (".j2", ".yml", ".yaml", ".py", ".service", ".md")
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if made_up.search(line)
    ]
    assert not found, f"invented URLs: {found}"


def _allowed_sections() -> set[str]:
    config = yaml.safe_load((ROOT / "changelogs" / "config.yaml").read_text())
    return {name for name, _title in config["sections"]} | {
        config["prelude_section_name"],
        config["trivial_section_name"],
    }


def test_changelog_config_names_the_sections_fragments_use():
    allowed = _allowed_sections()
    assert {"major_changes", "minor_changes", "breaking_changes", "security_fixes", "bugfixes"} <= allowed
    assert {"release_summary", "trivial"} <= allowed


@pytest.mark.parametrize("fragment", FRAGMENTS, ids=lambda p: p.name)
def test_every_changelog_fragment_parses_and_uses_only_the_configured_sections(fragment):
    assert fragment.suffix in (".yml", ".yaml"), f"{fragment.name}: antsibull-changelog reads .yml/.yaml only"
    data = yaml.safe_load(fragment.read_text())
    assert isinstance(data, dict) and data, f"{fragment.name}: a fragment is a mapping of section -> entries"
    config = yaml.safe_load((ROOT / "changelogs" / "config.yaml").read_text())
    unknown = set(data) - _allowed_sections()
    assert not unknown, f"{fragment.name}: sections not in changelogs/config.yaml: {sorted(unknown)}"
    for section, entries in data.items():
        if section == config["prelude_section_name"]:
            assert isinstance(entries, str) and entries.strip(), f"{fragment.name}: {section} is one text"
            continue
        assert isinstance(entries, list) and entries, f"{fragment.name}: {section} is a list of entries"
        for entry in entries:
            assert isinstance(entry, str) and entry.strip(), f"{fragment.name}: {section}: an empty or non-text entry"


def test_the_role_readmes_are_what_scripts_role_readmes_py_writes():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "role-readmes.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


_ROW = re.compile(r"^\| `([a-z0-9_]+)` \|", re.MULTILINE)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_readme_lists_exactly_the_options_of_its_argument_spec(role):
    readme = ROOT / "roles" / role / "README.md"
    assert readme.exists(), f"roles/{role}/README.md is missing: run python3 scripts/role-readmes.py"
    text = readme.read_text()
    assert text.startswith(f"# envoyage.core.{role}\n")
    spec_file = ROOT / "roles" / role / "meta" / "argument_specs.yml"
    if not spec_file.exists():  # defaults only (common): the README lists them
        defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}
        listed = set(re.findall(r"^- `([a-z0-9_]+)`$", text, re.MULTILINE))
        assert listed == set(defaults), f"{role}: README {sorted(listed ^ set(defaults))}"
        return
    specs = yaml.safe_load(spec_file.read_text())["argument_specs"]
    options = set()
    for spec in specs.values():
        options |= set(spec.get("options") or {})
    documented = set(_ROW.findall(text))
    assert documented == options, (
        f"{role}: in the spec only {sorted(options - documented)}, in the README only {sorted(documented - options)}"
    )


_MARKDOWN = sorted(
    {
        *ROOT.glob("*.md"),
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("roles/*/README.md"),
        *ROOT.glob("bench/*.md"),
        *ROOT.glob("runtime/*.md"),
    }
)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(markdown: Path) -> set[str]:
    """The heading anchors GitHub makes for `markdown` (lower case, punctuation dropped,
    spaces to hyphens), outside code blocks."""
    out, fenced = set(), False
    for line in markdown.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.*)", line)):
            out.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


@pytest.mark.parametrize("markdown", _MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_in_the_docs_leads_to_a_file_and_heading_that_exist(markdown):
    broken = []
    for match in _LINK.finditer(markdown.read_text()):
        target = match.group(1)
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = markdown.parent / path if path else markdown
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{markdown.relative_to(ROOT)}: {broken}"


def test_docs_and_code_cite_only_what_is_in_the_project():
    """The design notes the project was started from are not shipped: docs/architecture.md
    (and the other documents) say what they said, and are what the docs and code cite."""
    outside = re.compile(r"DESIGN\.md|STYLE\.md|shared/notes/")
    places = [*_MARKDOWN, *ROOT.glob("roles/**/*"), *ROOT.glob("plugins/**/*.py"), *ROOT.glob("playbooks/*")]
    places += [*(ROOT / "runtime" / "src" / "envoyage").rglob("*.py")]
    cited = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in places
        if p.is_file() and p.suffix not in (".pyc", ".whl")
        for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if outside.search(line)
    ]
    assert not cited, f"cite docs/architecture.md (or another document in the project) instead: {cited}"


def _architecture_module_map() -> set[str]:
    """The paths docs/architecture.md's module map names (runtime modules relative to
    runtime/src/envoyage, plugins as plugins/<kind>/<file>)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    runtime = text.split("### The runtime's modules", 1)[1].split("\n### ", 1)[0]
    plugins = text.split("### The collection's code (`plugins/`)", 1)[1].split("\n## ", 1)[0]
    named = {
        m for row in runtime.splitlines() if row.startswith("| `") for m in re.findall(r"`([^`]+)`", row.split("|")[1])
    }
    for bullet in re.split(r"\n- ", "\n" + plugins):
        kind = re.match(r"`plugins/(\w+)/`", bullet)
        if kind:
            named |= {f"plugins/{kind.group(1)}/{f}" for f in re.findall(r"`([\w.]+\.py)`", bullet)}
    return named


def test_the_architecture_module_map_names_every_module_and_only_modules_that_exist():
    """docs/architecture.md's module map is the one description of who owns which
    concern: a new module must be added to it, a removed one taken out."""
    named = _architecture_module_map()
    src = ROOT / "runtime" / "src" / "envoyage"
    modules = {
        str(p.relative_to(src))
        for p in src.rglob("*.py")
        if p.name != "__init__.py" and "link/v1" not in str(p) and "module_utils" not in p.parts
    }
    plugin_files = {
        str(p.relative_to(ROOT))
        for kind in ("module_utils", "filter")
        for p in (ROOT / "plugins" / kind).glob("*.py")
        if p.name != "__init__.py"
    }
    listed_runtime = {n for n in named if n.endswith(".py") and not n.startswith("plugins/")}
    listed_plugins = {n for n in named if n.startswith("plugins/")}
    assert modules - listed_runtime == set(), (
        f"runtime modules missing from the module map: {sorted(modules - listed_runtime)}"
    )
    assert listed_runtime - modules == set(), (
        f"the module map names modules that do not exist: {sorted(listed_runtime - modules)}"
    )
    assert plugin_files - listed_plugins == set(), (
        f"plugins missing from the module map: {sorted(plugin_files - listed_plugins)}"
    )
    assert listed_plugins - plugin_files == set(), (
        f"the module map names plugins that do not exist: {sorted(listed_plugins - plugin_files)}"
    )
