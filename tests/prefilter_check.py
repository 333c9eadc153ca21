"""The engine with and without the ``ast`` pre-filter (``codemod/candidates.py``), compared on
everything a user sees: used by ``test_candidates.py`` on the fixtures and by
``benchmarks/compare_prefilter.py`` on real repositories."""

from __future__ import annotations

from pathlib import Path

import ast

from codemod.candidates import possible_findings
from codemod.config import ConfigFinder
from codemod.discovery import discover
from codemod.engine import build_tasks, known_selectors, run
from codemod.findings import FileResult
from codemod.skeleton import skeleton


def outcome(res: FileResult) -> tuple:
    """One file's result without ``parsed`` and timings: findings (with their messages, places,
    related lines, fixes), the rewritten source, the reason it was skipped."""
    return (
        res.path,
        res.skipped,
        res.new_source,
        tuple((r.code, r.message, r.location, tuple(r.related), r.fixed, r.suppressed, r.fix) for r in res.results),
    )


def compare(root: Path, jobs: int, mode: str | None = None) -> tuple[list[str], dict[str, int]]:
    """The files whose results differ between the plain engine (every file parsed with LibCST)
    and the engine with the filter, skeletons and ``ast_to_cst`` trees, and counts from the run
    without the filter."""
    files = discover([str(root)], ConfigFinder(known_selectors()), base=root)
    tasks = build_tasks(files, mode=mode)
    plain = run(tasks, jobs, prefilter=False, mirror=False)
    filtered = run(tasks, jobs, prefilter=True)
    differ = [a.path for a, b in zip(plain, filtered, strict=True) if outcome(a) != outcome(b)]
    findings = [r for res in plain for r in res.results]
    counts = {
        "files": len(tasks),
        "parsed without filter": sum(r.parsed for r in plain),
        "parsed with filter": sum(r.parsed for r in filtered),
        "findings": len(findings),
        "rewrites": sum(r.fixed for r in findings),
        "reports": sum(not r.fixed and not r.suppressed for r in findings),
        "files rewritten": sum(r.new_source is not None for r in plain),
        "skipped": sum(r.skipped is not None for r in plain),
        "skeletons": sum(_has_skeleton(t.path) for t, r in zip(tasks, filtered, strict=True) if r.parsed),
    }
    return differ, counts


def _has_skeleton(path: str) -> bool:
    """Whether the engine analyses a skeleton of the file first (it leaves something out)."""
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        found = possible_findings(ast.parse(data))
    except (SyntaxError, ValueError):
        return False
    return bool(found.blank) and skeleton(data, found.blank) is not None
