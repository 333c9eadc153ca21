"""Unified diffs of rewritten files (``a/`` and ``b/`` prefixes, as git shows them)."""

from __future__ import annotations

import difflib

from ..findings import FileResult


def unified_diff(result: FileResult) -> str:
    if result.new_source is None or result.old_source is None:
        return ""
    old = result.old_source.splitlines(keepends=True)
    new = result.new_source.splitlines(keepends=True)
    if result.path.startswith("/"):
        before, after = result.path, result.path
    else:
        before, after = f"a/{result.path}", f"b/{result.path}"
    lines = list(difflib.unified_diff(old, new, fromfile=before, tofile=after))
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def render(results: list[FileResult]) -> str:
    return "".join(unified_diff(r) for r in results if r.changed)
