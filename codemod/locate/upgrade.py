"""What the rules do at the lines the locator found, and the rewrites that follow.

The located write lines become the engine's ``confirmed_lines`` for their files (the mechanism
`codemod verify` uses for the harness's locator): a confirmed line counts as a hazard even where
the static analysis could not show one, so its candidate is rewritten, but only where P1-P5 hold;
otherwise the rule reports it with the property that failed. Only the files holding located
lines are analysed (their static rewrites come along, as ``codemod apply FILE`` would make them).
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import ConfigFinder, Mode
from ..discovery import discover
from ..engine import FileTask, build_tasks, run
from ..findings import FileResult, Result
from .merge import Hazard

_PROPERTY = re.compile(r"\((P[1-5])\)")


def confirmed_lines(hazards: list[Hazard], root: Path) -> dict[Path, set[int]]:
    """Write lines per file under ``root`` (lines outside it, or in files that are gone, are left out)."""
    out: dict[Path, set[int]] = {}
    for hazard in hazards:
        path = hazard.write.get("path") or ""
        if not path or path.startswith("<") or os.path.isabs(path):
            continue
        file = (root / path).resolve()
        if file.is_file():
            out.setdefault(file, set()).add(int(hazard.write["line"]))
    return out


def analyse_located(
    hazards: list[Hazard],
    root: Path,
    finder: ConfigFinder,
    *,
    select: list[str] | None = None,
    ignore: list[str] | None = None,
    mode: Mode | None = None,
    jobs: int | None = None,
) -> list[tuple[FileTask, FileResult]]:
    """Run the rules on the files with located lines (those lines confirmed), and say in each
    hazard's ``engine`` what they do there. Returns every analysed file with its result."""
    lines = confirmed_lines(hazards, root)
    files = discover([str(p) for p in sorted(lines)], finder) if lines else []
    tasks = [
        replace(t, confirmed_lines=frozenset(lines[Path(t.path).resolve()]))
        for t in build_tasks(files, select, ignore, mode)
    ]
    results = run(tasks, jobs) if tasks else []
    by_file = {Path(t.path).resolve(): r for t, r in zip(tasks, results)}
    for hazard in hazards:
        hazard.engine = engine_decision(hazard, root, by_file)
    return list(zip(tasks, results))


def engine_decision(hazard: Hazard, root: Path, by_file: dict[Path, FileResult]) -> dict[str, Any]:
    path = hazard.write.get("path") or ""
    if not path or path.startswith("<") or os.path.isabs(path):
        return {"action": "none", "reason": f"the line is outside {root}, which is not analysed"}
    file = (root / path).resolve()
    result = by_file.get(file)
    if result is None:
        if not file.is_file():
            return {"action": "none", "reason": "the file no longer exists"}
        return {"action": "none", "reason": "the file is excluded by the [tool.codemod] configuration"}
    if result.skipped:
        return {"action": "none", "reason": f"the file was skipped: {result.skipped}"}
    line = int(hazard.write["line"])
    at_line = [r for r in result.results if r.location.line <= line <= r.location.end_line]
    live = [r for r in at_line if not r.suppressed]
    if at_line and not live:
        return {"action": "none", "code": at_line[0].code, "reason": "suppressed by a `# codemod: ignore` comment"}
    fixed = [r for r in live if r.fixed]
    if fixed:
        return _decision("rewrite", fixed[0])
    if live:
        return _decision("report", live[0])
    return {
        "action": "none",
        "reason": "no rule can rewrite this write (it is not one of the in-place forms the "
        "rules know, or not in differentiable code they analyse)" + _HINTS.get(hazard.kind, ""),
    }


_HINTS = {
    "leaf": "; a leaf that requires grad (a Parameter) is written in place only under `torch.no_grad()`",
    "leaf-view": "; a leaf that requires grad (a Parameter) is written in place only under `torch.no_grad()`",
    "multi-view": "; write into a `.clone()` of the view, or compute it out of place",
    "no-grad-view": "; make the view and the write both inside, or both outside, `no_grad`",
}


def _decision(action: str, result: Result) -> dict[str, Any]:
    found = _PROPERTY.search(result.message)
    return {
        "action": action,
        "code": result.code,
        "fix": result.fix,
        "property": found.group(1) if found else None,
        "reason": result.message,
    }
