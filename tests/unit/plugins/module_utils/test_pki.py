"""The CA and leaf-certificate backend in plugins/module_utils/_pki.py (the runtime includes
it as envoyage.module_utils._pki; the Ansible modules import the same file)."""

import datetime
import os
import stat

import pytest
from ansible_collections.envoyage.core.plugins.module_utils import _pki as pki


@pytest.fixture(scope="module")
def ca():
    key = pki.generate_key("ec")
    return key, pki.create_ca(key, "Envoyage test CA", days=30)


@pytest.mark.parametrize("key_type,size", [("ec", None), ("rsa", 2048), ("ed25519", None)])
def test_a_ca_of_each_key_type_signs_a_leaf_with_its_names(key_type, size):
    ca_key = pki.generate_key(key_type, size)
    ca_cert = pki.create_ca(ca_key, "root", days=10)
    leaf_key = pki.generate_key("ec")
    leaf = pki.issue_leaf(
        ca_key, ca_cert, leaf_key, "edge", ["edge.example.org", "10.88.0.1", "spiffe://envoyage/edge"], days=5
    )
    assert pki.signed_by(leaf, ca_cert) and pki.key_matches_cert(leaf_key, leaf)
    assert pki.cert_sans(leaf) == [("dns", "edge.example.org"), ("ip", "10.88.0.1"), ("uri", "spiffe://envoyage/edge")]
    assert pki.key_type_of(ca_key) == key_type


def test_a_leaf_never_outlives_its_ca(ca):
    key, cert = ca
    leaf = pki.issue_leaf(key, cert, pki.generate_key(), "x", ["x.example.org"], days=3000)
    assert leaf.not_valid_after_utc <= cert.not_valid_after_utc


def test_renewal_reasons(ca):
    key, cert = ca
    leaf = pki.issue_leaf(key, cert, pki.generate_key(), "x", ["x.example.org"], days=20)
    assert pki.renewal_reason(leaf, 7, ["x.example.org"], cert) is None
    assert "renewal window" in pki.renewal_reason(leaf, 25, ["x.example.org"])
    assert pki.renewal_reason(leaf, 7, ["x.example.org", "y.example.org"]) == "its names changed"
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=40)
    assert "expired" in pki.renewal_reason(leaf, 7, now=later)
    other_key = pki.generate_key()
    other = pki.create_ca(other_key, "another CA", days=30)
    assert pki.renewal_reason(leaf, 7, ca_cert=other) == "it is not signed by this CA"


def test_bad_parameters_are_named():
    with pytest.raises(pki.PkiError, match="key_type 'dsa'"):
        pki.generate_key("dsa")
    with pytest.raises(pki.PkiError, match="key_size 1024"):
        pki.generate_key("rsa", 1024)
    with pytest.raises(pki.PkiError, match="subject_alt_names: 'bad name!'"):
        pki.parse_sans(["bad name!"])
    with pytest.raises(pki.PkiError, match="days: 0 is not between 1 and 36500"):
        pki.create_ca(pki.generate_key(), "x", days=0)


def test_keys_are_written_0600_and_a_readable_or_broken_key_is_refused_without_its_content(tmp_path, ca):
    key = ca[0]
    path = tmp_path / "ca.key"
    pki.write_file(str(path), pki.key_pem(key), 0o600)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert pki.public_pem(pki.load_key(str(path))) == pki.public_pem(key)
    os.chmod(path, 0o640)
    with pytest.raises(pki.PkiError, match="readable by others"):
        pki.load_key(str(path))
    os.chmod(path, 0o600)
    path.write_text("garbage-that-is-secret")
    with pytest.raises(pki.PkiError) as exc:
        pki.load_key(str(path))
    assert "garbage" not in str(exc.value)
