"""The edge secret: made once per edge, known to the edge (a 0600 file), stored on home
only as a salted hash and compared in constant time.

The secret is 256 random bits, so a salted SHA-256 is as strong as a slow password
hash here (there is nothing to guess) and costs nothing per connection attempt.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from ..module_utils.files import SecretFileError, read_secret_file, write_secret_file

SCHEME = "sha256"


class SecretError(ValueError):
    pass


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.sha256(salt + secret.encode()).hexdigest()
    return f"{SCHEME}${salt.hex()}${digest}"


def verify(secret: str, stored: str) -> bool:
    """True if `secret` matches the stored hash (constant time in the secret)."""
    try:
        scheme, salt_hex, digest = stored.strip().split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    if scheme != SCHEME:
        return False
    candidate = hashlib.sha256(salt + secret.encode()).hexdigest()
    return hmac.compare_digest(candidate, digest)


def read_hash(path: Path) -> str:
    """The stored hash; SecretError with a sentence if it is missing, unreadable, open to
    others or not a hash."""
    try:
        text = read_secret_file(str(path), "the edge secret's hash").decode(errors="replace").strip()
    except SecretFileError as exc:
        if exc.missing:
            raise SecretError(f"no edge secret is set up ({path} does not exist; create one with "
                              "`envoyage link-secret`)") from None
        raise SecretError(str(exc)) from None
    if text.count("$") != 2 or not text.startswith(SCHEME + "$"):
        raise SecretError(f"{path} does not hold an edge secret hash")
    return text


def read_secret(path: Path) -> str:
    try:
        text = read_secret_file(str(path), "the edge secret file").decode(errors="replace").strip()
    except SecretFileError as exc:
        raise SecretError(str(exc)) from None
    if not text:
        raise SecretError(f"the edge secret file {path} is empty")
    return text


def create(hash_path: Path, secret_path: Path | None) -> str:
    """A new secret: its hash to `hash_path`, the secret itself to `secret_path` (both
    0600, written atomically). Returns the secret."""
    secret = new_secret()
    if secret_path is not None:
        write_secret_file(str(secret_path), secret + "\n")
    write_secret_file(str(hash_path), hash_secret(secret) + "\n")
    return secret
