"""Read back what the in-place locator wrote during a sandboxed smoke command (the parent side).

The smoke command runs in the sandbox with :mod:`codemod.locate.bootstrap` on its ``PYTHONPATH``
(:func:`codemod.locate.run.located_environment`, ``until="exit"``); each of its Python processes
that imports torch writes a JSON report into a directory the sandbox binds writable for the run.
That directory, and everything in it, was under the control of code we have never read, so it is
read here as hostile data:

* the directory is opened with ``O_NOFOLLOW | O_DIRECTORY``, each ``*.json`` entry relative to it
  with ``O_NOFOLLOW | O_NONBLOCK`` (a symlink, a fifo or a device is refused, never followed or
  waited on), and only regular files of at most :data:`REPORT_CAP` bytes are read, at most
  :data:`MAX_REPORTS` of them;
* the JSON must have the shape the recorder writes; every hazard is rebuilt field by field from
  checked values (known kind, relative ``path`` without ``..`` naming a regular file inside the
  copy, positive ``line``, short strings); anything else is dropped with a note.

What survives only names lines of the repository: the runner uses them to let the engine rewrite a
candidate on those lines (still only under P1-P5), and the rewritten tree must still pass the
smoke command. A forged report can therefore at most make the engine propose a rewrite; it proves
nothing.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from ..locate.merge import KIND_TITLES, merge_reports

REPORT_CAP = 8 << 20  # bytes per report file
MAX_REPORTS = 256  # files read per run
MAX_HAZARDS = 1000  # hazards kept per report
_TEXT_CAP = 500
_MAX_LINE = 10_000_000


def read_located(report_dir: Path, copy: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The merged hazards of every report in ``report_dir`` (paths relative to ``copy``, the
    parent's copy of the tree the command ran on) and a note for each report or hazard refused."""
    notes: list[str] = []
    copy = Path(os.path.realpath(copy))
    try:
        dir_fd = os.open(report_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        return [], [f"the locator's reports could not be read: {exc.strerror}"]
    reports = []
    try:
        names = sorted(n for n in os.listdir(dir_fd) if n.endswith(".json"))
        if len(names) > MAX_REPORTS:
            notes.append(f"the locator left {len(names)} reports; only the first {MAX_REPORTS} were read")
        for name in names[:MAX_REPORTS]:
            data, why = _read_capped(name, dir_fd)
            if data is None:
                notes.append(f"a locator report was refused ({why}): {_shown(name)}")
                continue
            report, why = _checked_report(data, copy)
            if report is None:
                notes.append(f"a locator report was refused ({why}): {_shown(name)}")
                continue
            reports.append(report)
    finally:
        os.close(dir_fd)
    dropped = sum(r.pop("dropped") for r in reports)
    if dropped:
        notes.append(
            f"{dropped} hazard record(s) of the locator's reports were dropped: not of the recorder's shape, "
            "or naming a file that is not in the repository"
        )
    return [hazard.to_json() for hazard in merge_reports(reports)], notes


def _shown(name: str) -> str:
    return ascii(name[:80])


def _read_capped(name: str, dir_fd: int) -> tuple[bytes | None, str]:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        return None, "a symlink" if exc.errno == errno.ELOOP else f"cannot open it: {exc.strerror}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, "not a regular file"
        if st.st_size > REPORT_CAP:
            return None, f"larger than {REPORT_CAP >> 20} MiB"
        chunks, left = [], REPORT_CAP + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        return None, f"cannot read it: {exc.strerror}"
    finally:
        os.close(fd)
    if len(data) > REPORT_CAP:
        return None, f"larger than {REPORT_CAP >> 20} MiB"
    return data, ""


def _checked_report(data: bytes, copy: Path) -> tuple[dict[str, Any] | None, str]:
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        return None, "not JSON"
    if not isinstance(raw, dict) or not isinstance(raw.get("hazards", []), list):
        return None, "not a locator report"
    pid, rank = raw.get("pid"), raw.get("rank")
    report: dict[str, Any] = {
        "pid": pid if _is_int(pid) else None,
        "rank": rank if _is_int(rank) else None,
        "hazards": [],
        "dropped": 0,
    }
    for record in raw.get("hazards", [])[:MAX_HAZARDS]:
        hazard = _checked_hazard(record, copy)
        if hazard is None:
            report["dropped"] += 1
        else:
            report["hazards"].append(hazard)
    return report, ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> str | None:
    return value[:_TEXT_CAP] if isinstance(value, str) else None


def _checked_line(value: Any, copy: Path) -> dict[str, Any] | None:
    """``{"path", "line", "code"}`` naming a regular file inside ``copy``, else None."""
    if not isinstance(value, dict):
        return None
    path, line = value.get("path"), value.get("line")
    if not isinstance(path, str) or not _is_int(line) or not 0 < line <= _MAX_LINE:
        return None
    pure = PurePosixPath(path)
    if not path or "\0" in path or "\\" in path or pure.is_absolute() or ".." in pure.parts:
        return None
    real = Path(os.path.realpath(copy / pure))
    if not real.is_relative_to(copy) or not real.is_file():
        return None
    return {"path": pure.as_posix(), "line": line, "code": _text(value.get("code")) or ""}


def _checked_hazard(record: Any, copy: Path) -> dict[str, Any] | None:
    if not isinstance(record, dict) or record.get("kind") not in KIND_TITLES:
        return None
    write = _checked_line(record.get("write"), copy)
    if write is None:
        return None
    saved_by = record.get("saved_by")
    if saved_by is not None:
        saved_by = _checked_line(saved_by, copy)
        if saved_by is None:
            return None
    shape = record.get("shape")
    if not (isinstance(shape, list) and len(shape) <= 32 and all(_is_int(n) for n in shape)):
        shape = None
    count = record.get("count", 1)
    return {
        "kind": record["kind"],
        "op": _text(record.get("op")) or "",
        "write": write,
        "saved_by": saved_by,
        "saver": _text(record.get("saver")),
        "saver_op": _text(record.get("saver_op")),
        "shape": shape,
        "dtype": _text(record.get("dtype")),
        "message": _text(record.get("message")) or "",
        "count": count if _is_int(count) and 0 < count < 1 << 40 else 1,
    }
