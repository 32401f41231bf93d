# Copyright: Envoyage contributors
# Apache License 2.0 (see LICENSE)
"""ansible-lint rule envoyage-no-fallback (loaded through `rulesdir` in .ansible-lint):
a variable that has a default in a role's defaults/main.yml (the inventory-wide envoyage_*
of the role common, or a role's own) never gets a `| default(...)` fallback. Its default
is its one source; a fallback states the value a second time, and the two drift (the LAN
ranges once did). Guards on magic and registered variables (`groups['vps'] | default([])`,
`runtime_updated | default(false)`) are not defaults of a role and stay allowed.

`fallbacks(root)` is the check itself, also run by runtime/tests/unit/test_role_plan.py.
"""

import os
import re

import yaml
from ansiblelint.rules import AnsibleLintRule

SCANNED = ("roles", "playbooks")
SUFFIXES = (".yml", ".yaml", ".j2")


def defaulted_names(root):
    """Every variable with a default in roles/*/defaults/main.yml under `root`."""
    names = set()
    roles = os.path.join(root, "roles")
    for role in sorted(os.listdir(roles)) if os.path.isdir(roles) else ():
        path = os.path.join(roles, role, "defaults", "main.yml")
        if os.path.isfile(path):
            with open(path) as f:
                names.update((yaml.safe_load(f) or {}).keys())
    return names


def _pattern(names):
    alternatives = "|".join(sorted((re.escape(n) for n in names), key=len, reverse=True))
    # NAME | default(   NAME|d(   ('NAME' ...) is not a reference and does not match
    return re.compile(r"(?<![\w.'\"\[])(%s)\s*\|\s*(?:default|d)\s*\(" % alternatives)


def line_fallbacks(text, names):
    """(line number, name) of every fallback of one of `names` in `text`; comment lines
    are skipped."""
    if not names:
        return []
    pattern = _pattern(names)
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        out += [(number, m.group(1)) for m in pattern.finditer(line)]
    return out


def fallbacks(root):
    """Every fallback in roles/ and playbooks/ under `root`: (relative path, line, name)."""
    names = defaulted_names(root)
    found = []
    for top in SCANNED:
        for directory, _dirs, files in sorted(os.walk(os.path.join(root, top))):
            for name in sorted(files):
                if not name.endswith(SUFFIXES):
                    continue
                path = os.path.join(directory, name)
                with open(path, errors="replace") as f:
                    text = f.read()
                found += [(os.path.relpath(path, root), n, var) for n, var in line_fallbacks(text, names)]
    return found


def project_root(path):
    """The collection's root above `path` (roles/ beside galaxy.yml in a checkout, or
    beside MANIFEST.json in an installed copy), or None."""
    here = os.path.dirname(os.path.abspath(path))
    while True:
        marked = any(os.path.isfile(os.path.join(here, m)) for m in ("galaxy.yml", "MANIFEST.json"))
        if marked and os.path.isdir(os.path.join(here, "roles")):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


class NoFallbackRule(AnsibleLintRule):
    """A variable with a role default gets no `| default(...)` fallback."""

    id = "envoyage-no-fallback"
    description = (
        "A variable that has a default in a role's defaults/main.yml (common's envoyage_* or a "
        "role's own) must be read as it is: a `| default(...)` fallback states its value twice."
    )
    severity = "HIGH"
    tags = ["envoyage", "idiom"]
    version_changed = "26.0.0"

    _names = {}  # root -> defaulted names

    def matchlines(self, file):
        root = project_root(str(file.path))
        if root is None or not str(file.path).endswith(SUFFIXES):
            return []
        if root not in self._names:
            self._names[root] = defaulted_names(root)
        return [
            self.create_matcherror(
                message="%s has a role default; read it without `| default(...)` (its default is its one source)" % var,
                lineno=number,
                details=var,
                filename=file,
            )
            for number, var in line_fallbacks(file.content, self._names[root])
        ]
