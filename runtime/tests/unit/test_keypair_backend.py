"""What wireguard_keypair decides, in its backend (plugins/module_utils/_wireguard.py): a key
is made only where none is, check mode writes nothing, and an existing key is never
replaced, with real files in a temporary directory."""

import os
import stat

import pytest

from envoyage.module_utils import _wireguard as wg


def test_a_key_is_made_only_where_none_is_and_check_mode_writes_nothing(tmp_path):
    path = str(tmp_path / "wg.key")
    assert wg.keypair_needs_regeneration(path) == "it did not exist"
    assert wg.ensure_keypair(path, check_mode=True) == (None, True) and not os.path.exists(path)
    assert wg.keypair_diff(path, True) == {
        "before": {"path": path, "exists": False},
        "after": {"path": path, "exists": True},
    }

    public, created = wg.ensure_keypair(path)
    assert created and len(public) == 44 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert wg.keypair_needs_regeneration(path) is None
    content = (tmp_path / "wg.key").read_bytes()
    for check_mode in (True, False):
        assert wg.ensure_keypair(path, check_mode=check_mode) == (public, False)
    assert (tmp_path / "wg.key").read_bytes() == content
    diff = wg.keypair_diff(path, False)
    assert diff["before"] == diff["after"]


def test_an_existing_file_that_is_not_a_usable_key_is_an_error_and_stays(tmp_path):
    path = tmp_path / "wg.key"
    path.write_text("not a key\n")
    os.chmod(path, 0o600)
    assert wg.keypair_needs_regeneration(str(path)) is None  # never replaced, even when broken
    with pytest.raises(wg.WireGuardError, match="does not hold a WireGuard private key"):
        wg.ensure_keypair(str(path))
    assert path.read_text() == "not a key\n"
