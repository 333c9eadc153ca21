"""Atomic writes of rewritten files: a temporary file beside the original, then ``os.replace``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class WriteError(Exception):
    pass


def write_atomic(path: Path, old_text: str, new_text: str, encoding: str) -> None:
    """Replace ``path``'s content with ``new_text`` if it still holds ``old_text``.

    The new content goes to a temporary file in the same directory (same filesystem), is flushed
    and fsynced, gets the original's permission bits, and replaces the original in one rename:
    a crash leaves either the old file or the new one, never half of each.
    """
    try:
        current = path.read_bytes().decode(encoding)
    except (OSError, UnicodeDecodeError) as exc:
        raise WriteError(f"{path}: cannot re-read before writing: {exc}") from None
    if current != old_text:
        raise WriteError(f"{path}: changed on disk while codemod was running; not written")
    data = new_text.encode(encoding)
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".codemod-tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
