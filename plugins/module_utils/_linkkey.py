# -*- coding: utf-8 -*-
# Copyright: Envoyage contributors
# Apache License 2.0 (see LICENSE)
"""The edge link's key and its challenge-response: the one copy of this code (docs/security.md,
"The edge link"). `envoyage link-secret` (which the roles and playbooks/rotate.yml
run on home) writes home's key file with it; the control plane and the edge prove the
key with it (the runtime has it as envoyage.module_utils).

The edge secret never travels and never rests on home. Home keeps only the link key,
HKDF-SHA256 of the secret with a random salt and the info string LINK_INFO, in a 0600
file next to its salt. The edge has the secret and derives the same key from the salt
home sends. Other keys derived from the secret (the edge cache's) use other info
strings, so the key home holds opens nothing but the link.

A handshake: the edge sends a fresh nonce; home answers with its own nonce, the salt
and its proof; the edge checks home's proof before it sends anything else, then proves
the key itself. A proof is HMAC-SHA256 under the link key over the prover's and the
verifier's role labels, the edge id, the salt and both nonces, so a proof is good for
one handshake and one direction only (a replayed or reflected proof fails).
Only the standard library and `cryptography` are used.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import hashlib
import hmac
import os
import struct

from ._files import SecretFileError, read_secret_file, write_secret_file

LINK_INFO = b"envoyage edge link v1"
SCHEME = "envoyage-link-key-v1"
SALT_BYTES = 16
KEY_BYTES = 32
NONCE_BYTES = 32
PROOF_BYTES = 32
HOME = b"home"
EDGE = b"edge"
# the file name home used before link version 2, for the salted hash of the secret
OLD_HASH_NAME = "edge-secret.hash"
UPGRADE_HINT = (
    "rerun the site playbook (or playbooks/rotate.yml), or `envoyage link-secret --replace` on home, "
    "and give the VPS the new secret"
)


class LinkKeyError(Exception):
    """Why a link key cannot be used, in a sentence (never key material). `missing`: no
    key file exists (callers may say how to make one)."""

    def __init__(self, message, missing=False):
        Exception.__init__(self, message)
        self.missing = missing


def derive(secret, salt, info=LINK_INFO):
    """HKDF-SHA256 of the edge secret (a str) with `salt` and `info`: 32 bytes."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if not secret:
        raise LinkKeyError("the edge secret is empty")
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info).derive(secret.encode("utf-8"))


def new_nonce():
    return os.urandom(NONCE_BYTES)


def _field(data):
    return struct.pack(">I", len(data)) + data


def proof(key, prover, verifier, edge_id, salt, edge_nonce, home_nonce):
    """The proof `prover` (HOME or EDGE) sends `verifier` in one handshake."""
    if not isinstance(edge_id, bytes):
        edge_id = edge_id.encode("utf-8")
    parts = (LINK_INFO, prover, verifier, edge_id, salt, edge_nonce, home_nonce)
    message = b"".join(_field(part) for part in parts)
    return hmac.new(key, message, hashlib.sha256).digest()


def verify(key, got, prover, verifier, edge_id, salt, edge_nonce, home_nonce):
    """True if `got` is `prover`'s proof for this handshake (constant time)."""
    want = proof(key, prover, verifier, edge_id, salt, edge_nonce, home_nonce)
    return hmac.compare_digest(want, bytes(got or b""))


def render_key_file(salt, key):
    return "%s$%s$%s\n" % (SCHEME, binascii.hexlify(salt).decode("ascii"), binascii.hexlify(key).decode("ascii"))


def write_key_file(path, secret, salt=None, owner=None, group=None):
    """Derive the link key of `secret` (a new random salt unless given) and write it to
    `path` (0600, atomically). Returns (salt, key)."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    key = derive(secret, salt)
    write_secret_file(path, render_key_file(salt, key), owner=owner, group=group)
    return salt, key


def _old_hash_next_to(path):
    old = os.path.join(os.path.dirname(os.path.abspath(path)), OLD_HASH_NAME)
    return old if os.path.exists(old) else None


def read_key_file(path):
    """(salt, key) from home's key file; LinkKeyError with a sentence if it is missing,
    open to others, not a link key, or the edge secret's hash of an older Envoyage."""
    try:
        text = read_secret_file(path, "the edge link key file").decode("ascii", "replace").strip()
    except SecretFileError as exc:
        if exc.missing:
            old = _old_hash_next_to(path)
            if old:
                raise LinkKeyError(
                    "%s holds the edge secret's hash of Envoyage before edge-link version 2, which "
                    "this control plane no longer uses: it needs the link key file %s instead; %s"
                    % (old, path, UPGRADE_HINT),
                    missing=True,
                ) from None
            raise LinkKeyError(
                "no edge link key is set up (%s does not exist; create one with `envoyage link-secret`)" % path,
                missing=True,
            ) from None
        raise LinkKeyError(str(exc)) from None
    if text.startswith("sha256$"):
        raise LinkKeyError(
            "%s holds the edge secret's hash of Envoyage before edge-link version 2, not a link key; "
            "%s" % (path, UPGRADE_HINT)
        )
    parts = text.split("$")
    try:
        if len(parts) != 3 or parts[0] != SCHEME:
            raise ValueError(path)
        salt, key = binascii.unhexlify(parts[1]), binascii.unhexlify(parts[2])
    except (ValueError, TypeError, binascii.Error):
        raise LinkKeyError("%s does not hold an edge link key (expected %s$SALT$KEY)" % (path, SCHEME)) from None
    if len(key) != KEY_BYTES or not salt:
        raise LinkKeyError("%s does not hold an edge link key (a key is %d bytes)" % (path, KEY_BYTES))
    return salt, key
