"""What envoyage_ca and envoyage_cert decide, in their backend (plugins/module_utils/_pki.py,
the runtime's envoyage.module_utils._pki): when a CA or a leaf certificate is made again,
what check mode leaves alone, and what is refused, with real files in a temporary directory."""

import datetime
import os
import stat

import pytest

from envoyage.module_utils import _pki as pki


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _ca(tmp_path, **kwargs):
    return pki.ensure_ca(str(tmp_path / "ca.key"), str(tmp_path / "ca.pem"), "Test CA", **kwargs)


def _leaf(tmp_path, sans=("home.internal", "10.88.0.2"), **kwargs):
    return pki.ensure_leaf(
        str(tmp_path / "ca.key"),
        str(tmp_path / "ca.pem"),
        str(tmp_path / "l.key"),
        str(tmp_path / "l.pem"),
        "link",
        list(sans),
        **kwargs,
    )


def test_a_ca_is_made_once_check_mode_writes_nothing_and_other_options_change_nothing(tmp_path):
    check = _ca(tmp_path, check_mode=True)
    assert check["changed"] and check["reason"] == "it did not exist" and check["created"]
    assert check["certificate"] == "" and "info" not in check
    assert check["diff"]["before"] == {"key": False, "certificate": False} and not os.listdir(tmp_path)

    made = _ca(tmp_path)
    assert made["reason"] == "it did not exist" and made["created"]
    assert made["certificate"] == (tmp_path / "ca.pem").read_text()
    assert made["info"]["subject"] == "CN=Test CA" and "PRIVATE KEY" not in str(made)
    assert _mode(tmp_path / "ca.key") == 0o600 and _mode(tmp_path / "ca.pem") == 0o644

    key_before = (tmp_path / "ca.key").read_bytes()
    for check_mode in (True, False):
        again = pki.ensure_ca(
            str(tmp_path / "ca.key"), str(tmp_path / "ca.pem"), "Other", key_type="rsa", check_mode=check_mode
        )
        assert not again["changed"] and again["reason"] is None and not again["created"]
        assert again["certificate"] == made["certificate"] and again["diff"]["before"] == again["diff"]["after"]
    assert (tmp_path / "ca.key").read_bytes() == key_before


def test_a_ca_key_without_its_certificate_gets_one_for_that_key(tmp_path):
    key = pki.new_key(str(tmp_path / "ca.key"))
    assert pki.ca_needs_regeneration(key, None) == "its certificate did not exist"
    made = _ca(tmp_path)
    assert made["reason"] == "its certificate did not exist" and not made["created"]
    cert = pki.load_cert(str(tmp_path / "ca.pem"))
    assert pki.key_matches_cert(pki.load_key(str(tmp_path / "ca.key")), cert)
    assert pki.ca_needs_regeneration(key, cert) is None


def test_a_ca_certificate_without_its_key_or_with_another_key_is_refused_and_left_alone(tmp_path):
    _ca(tmp_path)
    pem = (tmp_path / "ca.pem").read_bytes()
    os.rename(tmp_path / "ca.key", tmp_path / "old.key")
    with pytest.raises(pki.PkiError, match="^key_path: .* does not exist but the CA certificate"):
        _ca(tmp_path)
    assert not (tmp_path / "ca.key").exists()
    pki.new_key(str(tmp_path / "ca.key"))
    with pytest.raises(pki.PkiError, match="^key_path: the CA key .* does not match the CA certificate"):
        _ca(tmp_path)
    assert (tmp_path / "ca.pem").read_bytes() == pem


def test_the_options_are_checked_before_anything_is_read_naming_the_option():
    assert pki.ca_options_problem("CA", 0) == "days: 0 is not between 1 and 36500"
    assert pki.ca_options_problem("x" * 65, 365).startswith("common_name: ")
    assert pki.ca_options_problem("CA", 3650) is None
    assert pki.leaf_options_problem("l", ["a.test"], 3651, 30) == "days: 3651 is not between 1 and 3650"
    assert pki.leaf_options_problem("l", ["a.test"], 10, 30).startswith("renew_before_days: 30 must be")
    assert pki.leaf_options_problem("l", ["bad name!"], 365, 30).startswith("subject_alt_names: ")
    assert pki.leaf_options_problem("", ["a.test"], 365, 30).startswith("common_name: ")
    assert pki.leaf_options_problem("l", ["a.test"], 365, 30) is None


def test_a_leaf_is_issued_once_and_again_only_when_its_names_change_keeping_its_key(tmp_path):
    _ca(tmp_path)
    check = _leaf(tmp_path, check_mode=True)
    assert check["reason"] == "it did not exist" and check["certificate"] == "" and check["diff"]["before"] == {}
    assert check["diff"]["after"] == {"subject_alt_names": ["home.internal", "10.88.0.2"]}
    assert not (tmp_path / "l.key").exists() and not (tmp_path / "l.pem").exists()

    made = _leaf(tmp_path)
    assert made["reason"] == "it did not exist" and made["certificate"] == (tmp_path / "l.pem").read_text()
    assert made["diff"]["after"]["subject_alt_names"] == ["home.internal", "10.88.0.2"]
    assert _mode(tmp_path / "l.key") == 0o600 and _mode(tmp_path / "l.pem") == 0o644
    key = (tmp_path / "l.key").read_bytes()

    same = _leaf(tmp_path, sans=("10.88.0.2", "HOME.internal."))
    assert same["reason"] is None and same["certificate"] == made["certificate"]

    check = _leaf(tmp_path, sans=("home.internal",), check_mode=True)
    assert check["reason"] == "its names changed" and check["diff"]["before"] == made["diff"]["after"]
    assert (tmp_path / "l.pem").read_text() == made["certificate"]
    renamed = _leaf(tmp_path, sans=("home.internal",))
    assert renamed["reason"] == "its names changed" and renamed["info"]["subject_alt_names"] == ["home.internal"]
    assert (tmp_path / "l.key").read_bytes() == key


def test_why_a_leaf_is_issued_again(tmp_path):
    _ca(tmp_path)
    _leaf(tmp_path)
    ca_cert = pki.load_cert(str(tmp_path / "ca.pem"))
    key, cert = pki.load_key(str(tmp_path / "l.key")), pki.load_cert(str(tmp_path / "l.pem"))
    sans = ["home.internal", "10.88.0.2"]

    assert pki.leaf_needs_regeneration(key, cert, ca_cert, sans, 30) is None
    assert pki.leaf_needs_regeneration(key, None, ca_cert, sans, 30) == "it did not exist"
    assert pki.leaf_needs_regeneration(None, cert, ca_cert, sans, 30) == "its key did not exist"
    assert pki.leaf_needs_regeneration(pki.generate_key(), cert, ca_cert, sans, 30) == "it does not belong to the key"
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=340)
    assert "within the renewal window of 30 days" in pki.leaf_needs_regeneration(key, cert, ca_cert, sans, 30, later)
    other_key = pki.generate_key()
    other = pki.create_ca(other_key, "Test CA")  # the same name, another key
    assert pki.leaf_needs_regeneration(key, cert, other, sans, 30) == "it is not signed by this CA"


def test_a_leaf_whose_key_is_gone_or_replaced_is_issued_for_the_key_there(tmp_path):
    _ca(tmp_path)
    _leaf(tmp_path)
    os.unlink(tmp_path / "l.key")
    again = _leaf(tmp_path)
    assert again["reason"] == "its key did not exist"
    pki.new_key(str(tmp_path / "l.key"))
    again = _leaf(tmp_path)
    assert again["reason"] == "it does not belong to the key"
    assert pki.key_matches_cert(pki.load_key(str(tmp_path / "l.key")), pki.load_cert(str(tmp_path / "l.pem")))


def test_an_issuing_ca_that_does_not_fit_is_refused_naming_the_option(tmp_path):
    with pytest.raises(pki.PkiError, match="^ca_key_path: the private key file .* does not exist"):
        _leaf(tmp_path)
    _ca(tmp_path, days=20)
    with pytest.raises(pki.PkiError, match="^ca_cert_path: the CA expires on .* within the renewal window"):
        _leaf(tmp_path)
    pki.new_key(str(tmp_path / "ca.key"))
    with pytest.raises(pki.PkiError, match="^ca_key_path: the CA key .* does not match"):
        _leaf(tmp_path, renew_before_days=5)
    assert not (tmp_path / "l.key").exists() and not (tmp_path / "l.pem").exists()
