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
        files.append({
            "path": r.path,
            "changed": r.changed,
            "skipped": r.skipped,
            "findings": [res.to_dict() for res in r.results if not res.suppressed],
        })
    payload = {
        "tool": {"name": "torch-codemod", "version": __version__},
        "summary": summary.to_dict(),
        "files": files,
    }
    return json.dumps(payload, indent=2) + "\n"
