# -*- coding: utf-8 -*-
# Copyright: Envoyage contributors
# Apache License 2.0 (see LICENSE)
"""Files that hold secrets (or that a daemon reads at start): written atomically, with
their final mode and owner from the first byte on."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import grp
import os
import pwd
import tempfile

KEY_FILE_MODE = 0o600


class SecretFileError(Exception):
    """Why a secret file cannot be used, in a sentence (never its content). `missing`:
    the file does not exist (callers may say how to make one)."""

    def __init__(self, message, missing=False):
        Exception.__init__(self, message)
        self.missing = missing


def read_secret_file(path, what):
    """The bytes of `path`, a file only its owner may read; `what` names it in errors
    ("the private key file", "the edge secret file")."""
    try:
        st = os.stat(path)
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise SecretFileError("%s %s does not exist" % (what, path), missing=True) from None
        raise SecretFileError("cannot read %s %s: %s" % (what, path, exc.strerror or exc)) from None
    if st.st_mode & 0o077:
        raise SecretFileError(
            "%s %s is readable by others (mode %04o); it must be 0600" % (what, path, st.st_mode & 0o7777)
        )
    return data


def write_secret_file(path, content, mode=KEY_FILE_MODE, owner=None, group=None, exclusive=False):
    """Write `content` to `path` atomically: a temporary file in the same directory gets
    its final mode (0600 unless `mode` says otherwise) and owner before the first byte,
    is synced, then renamed over `path` (with `exclusive`, linked to `path`, which fails
    with FileExistsError if another writer got there first); the directory is synced too,
    so the new file survives a power cut. A crash leaves the old file or the new one."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".envoyage-")
    try:
        os.fchmod(fd, mode)
        if owner is not None or group is not None:
            os.fchown(fd, -1 if owner is None else owner, -1 if group is None else group)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.rename(tmp, path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def owner_group_problem(owner, group):
    """A sentence naming the parameter if `owner` or `group` (names or ids) does not exist
    on this host, else None: checked before anything is written."""
    for option, value, lookup, kind in (
        ("owner", owner, pwd.getpwnam, "user"),
        ("group", group, grp.getgrnam, "group"),
    ):
        if value is not None and not str(value).isdigit():
            try:
                lookup(value)
            except KeyError:
                return "%s: there is no %s named %r on this host" % (option, kind, value)
    return None


def target_problem(params, path_options):
    """Before anything is written: a sentence naming the option if a file's directory does
    not exist, or if params' owner or group does not exist on this host; else None."""
    for option in path_options:
        directory = os.path.dirname(os.path.abspath(params[option]))
        if not os.path.isdir(directory):
            return "%s: the directory %s does not exist" % (option, directory)
    return owner_group_problem(params.get("owner"), params.get("group"))


def owner_group_spec():
    """The argument spec of the owner and group options of a module that writes files."""
    return dict(owner=dict(type="str"), group=dict(type="str"))


def apply_owner_group(module, paths, changed):
    """Give `paths` the module's owner and group options (check mode and diff aware). A
    path that does not exist (in check mode: a file the module would make) is left out."""
    for path in paths:
        if not os.path.lexists(path):
            continue
        changed = module.set_owner_if_different(path, module.params["owner"], changed)
        changed = module.set_group_if_different(path, module.params["group"], changed)
    return changed
