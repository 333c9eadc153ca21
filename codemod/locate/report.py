"""The report of a located run: text for people, JSON for machines, SARIF for code scanning."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .. import __version__
from ..reports.sarif import INFO_URI, SCHEMA
from .merge import KIND_TITLES, Hazard
from .run import LocatedRun


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def outcome_line(run: LocatedRun) -> str:
    if run.interrupted:
        return "interrupted (Ctrl-C); the run was ended"
    if run.timed_out:
        return f"timed out after {run.seconds:.1f} s; the run was ended"
    if run.stopped:
        return f"stopped {run.stopped} ({run.seconds:.1f} s)"
    return f"the command exited with status {run.returncode} ({run.seconds:.1f} s)"


def engine_text(engine: dict[str, Any]) -> str:
    action = engine.get("action")
    if action == "rewrite":
        fix = f": `{engine['fix']}`" if engine.get("fix") else ""
        return f"rewrite {engine['code']}{fix}"
    if action == "report":
        return f"{engine['code']} {engine['reason']}"
    if action == "rewritten":
        return f"rewritten {engine['code']}" + (f": `{engine['fix']}`" if engine.get("fix") else "")
    return f"not rewritten: {engine.get('reason', 'not analysed')}"


def _where(line: dict[str, Any]) -> str:
    return f"{line['path']}:{line['line']}"


def render_text(run: LocatedRun, hazards: list[Hazard], root: Path) -> str:
    out: list[str] = []
    for h in hazards:
        write = h.write
        code = f"`{write['code']}`" if write.get("code") else f"`{h.op}`"
        if h.kind in ("saved-overwrite", "silent"):
            head = h.message.replace(f" ({_where(write)})", "", 1)
        else:
            head = f"{code} {KIND_TITLES.get(h.kind, h.kind)}"
        out.append(f"{_where(write)}: {head}")
        if h.saved_by is not None:
            saved_code = f"  `{h.saved_by['code']}`" if h.saved_by.get("code") else ""
            out.append(f"    saved by  {_where(h.saved_by)}{saved_code}  ({h.saver or h.saver_op or '?'})")
        elif h.kind not in ("saved-overwrite", "silent"):
            out.append(f"    error     {h.message.split(': ', 1)[-1]}")
        tensor = f"{h.dtype} {h.shape}" if h.dtype is not None else "?"
        where = f", ranks {', '.join(map(str, sorted(h.ranks)))}" if len(h.ranks) > 1 else ""
        where = where or (f", {_plural(len(h.pids), 'process')}" if len(h.pids) > 1 else "")
        out.append(f"    tensor    {tensor}, written {_plural(h.count, 'time')} by {h.op}{where}")
        out.append(f"    engine    {engine_text(h.engine)}")
        out.append("")
    processes = len(run.processes)
    backwards = sum(int(p.get("backwards", 0)) for p in run.processes)
    if processes == 0:
        seen = "no Python process of the command imported torch (or it ran with -I/-E/-S, which skip the locator)"
    else:
        seen = f"watched {_plural(processes, 'process')} ({backwards} backward pass{'' if backwards == 1 else 'es'})"
    problems = sorted({p for r in run.processes for p in r.get("problems", [])})
    out += [f"codemod locate: problem: {p}" for p in problems]
    rewrites = sum(1 for h in hazards if h.engine.get("action") in ("rewrite", "rewritten"))
    found = f"{_plural(len(hazards), 'hazard')} located, {rewrites} rewritable" if hazards else "nothing located"
    out.append(
        f"codemod locate: {found}; {seen}; {outcome_line(run)}."
        + (f" Paths are relative to {root}." if hazards and root != Path.cwd().resolve() else "")
    )
    return "\n".join(out) + "\n"


def render_json(run: LocatedRun, hazards: list[Hazard], root: Path, changed: list[str]) -> str:
    payload = {
        "tool": {"name": "torch-codemod", "version": __version__},
        "command": run.argv,
        "root": str(root),
        "exit_status": run.returncode,
        "stopped": run.stopped,
        "timed_out": run.timed_out,
        "seconds": round(run.seconds, 3),
        "processes": [
            {k: p.get(k) for k in ("pid", "rank", "argv", "status", "stop_reason", "backwards", "device", "problems")}
            for p in run.processes
        ],
        "hazards": [h.to_json() for h in hazards],
        "changed_files": changed,
    }
    return json.dumps(payload, indent=2) + "\n"


def _artifact(path: str) -> dict[str, str]:
    if os.path.isabs(path):
        return {"uri": Path(path).as_uri()}
    return {"uri": quote(path), "uriBaseId": "%SRCROOT%"}


def render_sarif(run: LocatedRun, hazards: list[Hazard], root: Path) -> str:
    kinds = list(KIND_TITLES)
    rules = [
        {
            "id": f"locate/{kind}",
            "name": kind,
            "shortDescription": {"text": title},
            "fullDescription": {"text": f"Found at run time by `codemod locate`: {title}."},
            "help": {
                "text": "Run `codemod rules` for the rewrite the engine makes, and `codemod locate --diff` to see it."
            },
            "defaultConfiguration": {"level": "warning" if kind == "silent" else "error"},
            "properties": {"tags": ["pytorch", "autograd", "runtime"]},
        }
        for kind, title in KIND_TITLES.items()
    ]
    results = []
    for h in hazards:
        artifact = _artifact(h.write["path"])
        item: dict[str, Any] = {
            "ruleId": f"locate/{h.kind}",
            "ruleIndex": kinds.index(h.kind),
            "level": "warning" if h.kind == "silent" else "error",
            "message": {"text": f"{h.message} Engine: {engine_text(h.engine)}."},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": artifact,
                        "region": {"startLine": max(int(h.write["line"]), 1)},
                    }
                }
            ],
            "partialFingerprints": {
                "torchCodemodLocated/v1": hashlib.sha256("\0".join(map(str, h.key)).encode()).hexdigest()[:32]
            },
            "properties": {
                "count": h.count,
                "shape": h.shape,
                "dtype": h.dtype,
                "rewritable": h.engine.get("action") in ("rewrite", "rewritten"),
            },
        }
        if h.saved_by is not None:
            item["relatedLocations"] = [
                {
                    "id": 1,
                    "message": {"text": f"saved for backward by {h.saver or h.saver_op or 'this op'}"},
                    "physicalLocation": {
                        "artifactLocation": _artifact(h.saved_by["path"]),
                        "region": {"startLine": max(int(h.saved_by["line"]), 1)},
                    },
                }
            ]
        results.append(item)
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
                        "rules": rules,
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": root.resolve().as_uri().rstrip("/") + "/"}},
                "invocations": [
                    {
                        "executionSuccessful": True,
                        "commandLine": " ".join(run.argv),
                        "toolExecutionNotifications": [{"level": "note", "message": {"text": outcome_line(run)}}],
                    }
                ],
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"
