# -*- coding: utf-8 -*-
# Copyright: Envoyage contributors
# Apache License 2.0 (see LICENSE)
"""Files that hold secrets (or that a daemon reads at start): written atomically, with
their final mode and owner from the first byte on."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile

KEY_FILE_MODE = 0o600


def write_secret_file(path, content, mode=KEY_FILE_MODE, owner=None, group=None):
    """Write `content` to `path` atomically: a temporary file in the same directory gets
    its final mode (0600 unless `mode` says otherwise) and owner before the first byte,
    is synced, then renamed over `path`. A crash leaves the old file or the new one."""
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
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
