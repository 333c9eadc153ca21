"""The verdict of ``codemod verify``: a table per smoke case (text) or a JSON document."""

from __future__ import annotations

import json

_HEADERS = ("case", "original", "rewritten", "outputs", "gradients", "grads", "2nd iter", "locator")
_WIDTH = {"case": 28, "original": 44, "rewritten": 30, "outputs": 22, "gradients": 22, "grads": 12}


def _cut(text: str, width: int | None) -> str:
    text = " ".join(text.split())
    if width is None or len(text) <= width:
        return text
    return text[: width - 1] + "…"


def render_text(report) -> str:
    out = [f"codemod verify {report.root}"]
    if report.device or report.isolation:
        out.append(f"device: {report.device or '-'} · sandbox: {report.isolation}")
    if report.rewrites:
        out.append(f"rewrites ({len(report.rewrites)}):")
        for r in report.rewrites:
            ran = r.get("exercised_by")
            where = "" if ran is None else f"  (run by {', '.join(ran)})" if ran else "  (no smoke case runs it)"
            out.append(f"  {r['path']}:{r['line']} {r['code']}{where}")
    if report.verdicts:
        rows = []
        for v in report.verdicts:
            second = v.second_iteration.split(" (original")[0]
            rows.append(
                (
                    v.name,
                    v.original,
                    v.rewritten,
                    v.outputs.text,
                    v.gradients.text,
                    v.grads_received,
                    second,
                    str(len(v.locator)) if v.kind == "harness" else "-",
                )
            )
        cells = [[_cut(c, _WIDTH.get(h)) for h, c in zip(_HEADERS, row)] for row in rows]
        widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(_HEADERS)]
        out.append("")
        out.append("  ".join(h.ljust(w) for h, w in zip(_HEADERS, widths)).rstrip())
        out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
        details = [
            v
            for v in report.verdicts
            if not v.proven or v.original != "pass" or "(original" in v.second_iteration or "(" in v.grads_received
        ]
        if details:
            out.append("")
        for v in details:
            out.append(f"{v.name}:")
            if v.original != "pass":
                out.append(f"  original:  {v.original}")
            if "(original" in v.second_iteration:
                out.append(f"  original 2nd iteration: {v.second_iteration.split('(original: ', 1)[1].rstrip(')')}")
            if v.gradients.text not in ("-",):
                out.append(f"  gradients: {v.gradients.text}")
            if "(" in v.grads_received:
                out.append(f"  parameters: {v.grads_received}")
            if not v.proven:
                out.append(f"  NOT PROVEN: {v.reason}")
    if report.hazards:
        out.append("")
        out.append("locator (original tree):")
        for f in report.hazards:
            out.append(f"  {f.get('message') or _locator_line(f)}")
            if f.get("engine"):
                out.append(f"      -> {f['engine']}")
    for note in report.notes:
        out.append(f"note: {note}")
    out.append("")
    out.append(f"verdict: {report.status}" + _explain(report))
    return "\n".join(out) + "\n"


def _locator_line(f) -> str:
    w, s = f["write"], f.get("saved_by") or {}
    saved = f" saved at {s['path']}:{s['line']}" if s else ""
    return f"{w['path']}:{w['line']} {f['op']} overwrites a tensor{saved}"


def _explain(report) -> str:
    if report.status == "proven" and getattr(report, "smoke_source", "") == "default tests":
        n = len(report.default_tests)
        seen = [f"{r['path']}:{r['line']}" for r in report.rewrites if r.get("exercised_by")]
        return (
            f": the repository's tests that import the rewritten modules ({n} file{'s' if n != 1 else ''}, "
            "found by their import lines; no [tool.codemod.smoke] is configured) pass on the rewritten tree. "
            "That is all it proves: their outputs and gradients were not compared with the original's, and "
            "the tests are known to have run a rewritten line only where the locator saw it run ("
            + (", ".join(seen) or "none")
            + ")"
        )
    if report.status == "proven":
        n = len(report.verdicts)
        if all(v.kind == "command" for v in report.verdicts):
            return ": the smoke command passes on the rewritten tree (its outputs are not compared)"
        return f": every rewrite passes {n} smoke case{'s' if n != 1 else ''} with the original's outputs and gradients"
    if report.status == "not proven":
        failed = [v.name for v in report.verdicts if not v.proven]
        unrun = [r for r in report.rewrites if r.get("exercised_by") == []]
        why = []
        if failed:
            why.append(f"{', '.join(failed)} failed")
        if unrun:
            why.append(f"{len(unrun)} rewrite{'s' if len(unrun) != 1 else ''} no smoke case runs")
        return f": {'; '.join(why) or 'see above'}; nothing may be written"
    if report.status == "nothing could be verified":
        if report.notes:
            return ": no smoke case ran (see the notes above); nothing may be written"
        files = sorted({r["path"] for r in report.rewrites})
        return (
            ": no smoke case ran: [tool.codemod.smoke] configures no command or cases, and no nn.Module class "
            f"in the rewritten files ({', '.join(files) or 'none'}) constructs without arguments with an input "
            "shape to read off its first Linear, Conv or Embedding layer; configure [tool.codemod.smoke] "
            "cases or a command; nothing may be written"
        )
    return ""


def render_json(report) -> str:
    return json.dumps(report.to_json(), indent=2) + "\n"
