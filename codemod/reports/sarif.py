"""SARIF 2.1.0 for GitHub code scanning (``github/codeql-action/upload-sarif``).

Follows the OASIS schema and GitHub's documented subset: ``tool.driver.rules`` with help text,
results with ``ruleId``/``ruleIndex``, a message, one physical location relative to the source
root, related locations (the op that saved the tensor), and a stable partial fingerprint.

``%SRCROOT%`` is the repository root (``discovery.tree_root``: the directory holding ``.git``,
else the config's), not the working directory, so a run from a subdirectory gives the URIs code
scanning expects. A file outside the root gets an absolute ``file://`` URI.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping

from .. import __version__
from ..findings import FileResult
from ..rules import all_codes
from .summary import Summary

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI = "https://github.com/torch-codemod/torch-codemod"


def _rule_descriptor(code) -> dict:
    examples = []
    for ex in code.examples:
        block = f"Before:\n```python\n{ex.before}```\n"
        block += f"After:\n```python\n{ex.after}```\n" if ex.after is not None else "Reported, not rewritten.\n"
        examples.append(block)
    markdown = f"**{code.summary}**\n\n{code.why}\n\nFix: {code.fix}.\n\n" + "\n".join(examples)
    markdown += "\nSuppress with a trailing `# codemod: ignore[" + code.code + "]` comment."
    return {
        "id": code.code,
        "name": code.name,
        "shortDescription": {"text": code.summary},
        "fullDescription": {"text": code.why},
        "help": {"text": f"{code.summary}. {code.why}", "markdown": markdown},
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["pytorch", "autograd", code.family], "precision": "high"},
    }


def artifact_location(path: Path, root: Path) -> dict:
    """An ``artifactLocation`` for ``path``: relative to ``%SRCROOT%`` (``root``) when inside it."""
    base = Path(os.path.realpath(root))
    for candidate in (Path(os.path.abspath(path)), Path(os.path.realpath(path))):
        if candidate.is_relative_to(base):
            return {"uri": candidate.relative_to(base).as_posix(), "uriBaseId": "%SRCROOT%"}
    return {"uri": Path(os.path.abspath(path)).as_uri()}


def render(
    results: list[FileResult], summary: Summary, root: Path | None = None, paths: Mapping[str, Path] | None = None
) -> str:
    """``paths``: each report path (as in ``results``) to the file it names, for URIs relative to
    ``root`` (default: the working directory; the report paths are then taken as they are)."""
    root = root or Path.cwd()
    paths = paths or {}

    def where(report_path: str) -> dict:
        return artifact_location(paths.get(report_path, Path(report_path)), root)

    codes = all_codes()
    index = {c.code: i for i, c in enumerate(codes)}
    sarif_results = []
    for r in results:
        for res in r.results:
            if res.suppressed:
                continue
            loc = res.location
            region = {"startLine": max(loc.line, 1), "startColumn": max(loc.column, 1)}
            if loc.end_line >= loc.line and loc.end_line > 0:
                region["endLine"] = loc.end_line
                if loc.end_column > 0 and (loc.end_line > loc.line or loc.end_column > loc.column):
                    region["endColumn"] = loc.end_column
            artifact = where(res.path)
            item = {
                "ruleId": res.code,
                "ruleIndex": index[res.code],
                "level": "note" if "mode = all" in res.message else "error",
                "message": {"text": res.message},
                "locations": [{"physicalLocation": {"artifactLocation": artifact, "region": region}}],
                "partialFingerprints": {
                    "torchCodemodFinding/v1": hashlib.sha256(
                        f"{artifact['uri']}\0{res.code}\0{res.message}".encode()
                    ).hexdigest()[:32]
                },
                "properties": {"fixable": res.fixed},
            }
            related = []
            for i, rel in enumerate(res.related, start=1):
                related.append(
                    {
                        "id": i,
                        "message": {"text": rel.message},
                        "physicalLocation": {
                            "artifactLocation": artifact,
                            "region": {"startLine": max(rel.line, 1), "startColumn": max(rel.column, 1)},
                        },
                    }
                )
            if related:
                item["relatedLocations"] = related
            sarif_results.append(item)
    notifications = [
        {
            "level": "warning",
            "message": {"text": f"skipped: {reason}"},
            "locations": [{"physicalLocation": {"artifactLocation": where(path)}}],
        }
        for path, reason in summary.skipped
    ]
    notifications += [
        {
            "level": "error",
            "message": {"text": f"not written: {reason}"},
            "locations": [{"physicalLocation": {"artifactLocation": where(path)}}],
        }
        for path, reason in summary.unwritten
    ]
    base = Path(os.path.realpath(root)).as_uri().rstrip("/") + "/"
    log = {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "torch-codemod",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": INFO_URI,
                        "rules": [_rule_descriptor(c) for c in codes],
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": base}},
                "columnKind": "unicodeCodePoints",
                "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notifications}],
                "results": sarif_results,
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"
