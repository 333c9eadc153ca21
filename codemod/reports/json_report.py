"""JSON report: the summary and every finding with positions."""

from __future__ import annotations

import json

from .. import __version__
from ..findings import FileResult
from .summary import Summary


def render(results: list[FileResult], summary: Summary) -> str:
    files = []
    for r in results:
        if not (r.results or r.changed or r.skipped):
            continue
        files.append(
            {
                "path": r.path,
                "changed": r.changed,
                "skipped": r.skipped,
                "not_written": r.write_error,
                "findings": [_finding(res, r, summary) for res in r.results if not res.suppressed],
            }
        )
    payload = {
        "tool": {"name": "torch-codemod", "version": __version__},
        "summary": summary.to_dict(),
        "files": files,
    }
    return json.dumps(payload, indent=2) + "\n"


def _finding(res, file: FileResult, summary: Summary) -> dict:
    """``fixable``: a rewrite exists; ``fixed``: it was written (never under ``--check``/``--diff``)."""
    data = res.to_dict()
    data["fixable"] = res.fixed
    data["fixed"] = res.fixed and summary.mode == "apply" and not file.write_error
    return data
