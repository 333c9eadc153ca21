"""A file's skeleton: its text with the bodies of the functions no rule can need left out.

Nearly every model file has some in-place syntax, so the ``ast`` pre-filter (``candidates.py``)
keeps most of them, while few hold a finding. The same ``ast`` pass names the top-level functions
the in-place rules cannot look at (``Candidates.blank``): outside the call-graph closure of the
functions with an in-place write and of those that build module attributes. The engine parses the
skeleton with LibCST first and runs the rules on it; only when they find anything at all (a
report, a rewrite, a suppressed finding) is the whole file parsed and analysed again, and that
second result is the one reported. A skeleton is line for line the file: every kept line is
unchanged and at its place (suppression comments keep their lines), a left-out body becomes
``...`` on its first line and empty lines after it.
"""

from __future__ import annotations

_INDENT = b" \t\f"


def skeleton(data: bytes, blank: tuple[tuple[int, int, int], ...]) -> bytes | None:
    """``data`` with the bodies in ``blank`` (first line, last line, column of the first
    statement; from ``candidates.possible_findings``) left out; None when nothing is left out.
    A body that does not start a line of its own (``def f(a,\\n b): return a``) is kept."""
    lines = data.splitlines(keepends=True)
    changed = False
    for first, last, column in blank:
        if last > len(lines):
            return None  # not the file the ``ast`` pass read
        line = lines[first - 1]
        indent = line[:column]
        if len(indent) != column or indent.strip(_INDENT):
            continue
        lines[first - 1] = indent + b"..." + _ending(line)
        for i in range(first, last):
            lines[i] = _ending(lines[i])
        changed = True
    return b"".join(lines) if changed else None


def _ending(line: bytes) -> bytes:
    return line[len(line.rstrip(b"\r\n")) :]
