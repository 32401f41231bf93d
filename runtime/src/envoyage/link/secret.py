"""The edge secret: made once per edge, known only to the edge (a 0600 file). Home keeps
only the link key derived from it (HKDF; envoyage.module_utils._linkkey, 0600), so the
secret, and every other key derived from it (the edge cache's), stays with the edge.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from ..module_utils._files import SecretFileError, read_secret_file, write_secret_file
from ..module_utils._linkkey import OLD_HASH_NAME, LinkKeyError, read_key_file, write_key_file


class SecretError(ValueError):
    pass


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def read_key(path: Path) -> tuple[bytes, bytes]:
    """(salt, link key) from home's key file; SecretError with a sentence if it is
    missing, open to others, not a key, or an older Envoyage's hash of the secret."""
    try:
        return read_key_file(str(path))
    except LinkKeyError as exc:
        raise SecretError(str(exc)) from None


def read_secret(path: Path) -> str:
    try:
        text = read_secret_file(str(path), "the edge secret file").decode(errors="replace").strip()
    except SecretFileError as exc:
        raise SecretError(str(exc)) from None
    if not text:
        raise SecretError(f"the edge secret file {path} is empty")
    return text


def create(key_path: Path, secret_path: Path | None) -> str:
    """A new secret: the link key derived from it to `key_path`, the secret itself to
    `secret_path` (both 0600, written atomically). An older Envoyage's hash of the
    previous secret next to the key file goes. Returns the secret."""
    secret = new_secret()
    if secret_path is not None:
        write_secret_file(str(secret_path), secret + "\n")
    write_key_file(str(key_path), secret)
    old = Path(key_path).with_name(OLD_HASH_NAME)
    if old != Path(key_path):
        old.unlink(missing_ok=True)
    return secret
