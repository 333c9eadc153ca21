"""Atomic writes of rewritten files: a temporary file beside the original, then ``os.replace``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .discovery import symlink_problem


class WriteError(Exception):
    """A file that could not be written: ``PATH: not written: REASON`` (one line)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: not written: {reason}")
        self.path = path
        self.reason = reason


def write_atomic(path: Path, old_text: str, new_text: str, encoding: str, root: Path | None = None) -> None:
    """Replace ``path``'s content with ``new_text`` if it still holds ``old_text``.

    The new content goes to a temporary file in the same directory (same filesystem), is flushed
    and fsynced, gets the original's permission bits, and replaces the original in one rename:
    a crash leaves either the old file or the new one, never half of each. A symlink is written
    through to its target, and only when that target lies inside ``root`` (the tree the file was
    found in). A file the user cannot write is left alone, even where the directory would allow
    replacing it. Every failure is a ``WriteError``; nothing else escapes.
    """
    if root is not None:
        problem = symlink_problem(path, root)
        if problem:
            raise WriteError(path, problem)
    try:
        target = Path(os.path.realpath(path, strict=True))
        if not os.access(target, os.W_OK):
            raise WriteError(path, "permission denied (the file is read-only)")
        current = target.read_bytes().decode(encoding)
    except (OSError, UnicodeDecodeError) as exc:
        raise WriteError(path, f"cannot re-read it: {_reason(exc)}") from None
    if current != old_text:
        raise WriteError(path, "changed on disk while codemod was running")
    try:
        data = new_text.encode(encoding)
        mode = target.stat().st_mode & 0o7777
    except (OSError, UnicodeEncodeError) as exc:
        raise WriteError(path, _reason(exc)) from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".codemod-tmp", dir=target.parent)
    except OSError as exc:
        raise WriteError(path, f"cannot create a file in {target.parent}: {_reason(exc)}") from None
    try:
        _replace(fd, tmp, target, data, mode)
    except OSError as exc:
        raise WriteError(path, _reason(exc)) from None


def replace_file(target: Path, data: bytes, mode: int) -> None:
    """Give ``target`` the content ``data`` and permission bits ``mode`` in one rename: a
    temporary file beside it (created 0600, so never readable by others on the way), flushed and
    fsynced. A failure leaves ``target`` as it was, removes the temporary file and raises."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".codemod-tmp", dir=target.parent)
    _replace(fd, tmp, target, data, mode)


def _replace(fd: int, tmp: str, target: Path, data: bytes, mode: int) -> None:
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
