"""What the App writes: commit message, pull-request title and body, check run. Pure.

Input is :meth:`codemod.api.Outcome.to_json` (plain data); nothing here can see a token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from codemod.config import Unverified

CHECK_NAME = "torch-codemod"
ANNOTATIONS_PER_REQUEST = 50  # GitHub's limit per check-run request


@dataclass
class Links:
    html_url: str  # https://github.com/owner/repo
    sha: str  # the pushed commit the findings are about

    def line(self, path: str, line: int | None) -> str:
        return f"{self.html_url}/blob/{self.sha}/{path}" + (f"#L{line}" if line else "")


@dataclass
class CheckRun:
    conclusion: str
    title: str
    summary: str
    text: str
    annotations: list[list[dict]] = field(default_factory=list)


# What becomes of the App's branch and pull request (``publication``).
Publication = Literal["publish", "draft", "hold", "skip", "nothing"]


def publication(*, has_changes: bool, proven: bool, unverified: Unverified, held: bool) -> Publication:
    """What to do with the branch and PR: ``publish`` (a ready PR), ``draft`` (a draft that shows the
    failure), ``hold`` (a person's commit is on the branch: touch nothing, say so once), ``skip``
    (verification failed and the repository asked for nothing) or ``nothing`` (no rewrite)."""
    if not has_changes:
        return "nothing"
    if held:
        return "hold"
    if proven:
        return "publish"
    return "draft" if unverified == "draft" else "skip"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def title(outcome: dict) -> str:
    rewrites = [f for f in outcome["findings"] if f["fixed"]]
    codes = sorted({f["code"] for f in rewrites})
    prefix = "" if outcome["proven"] else "[unverified] "
    return f"{prefix}Fix {_plural(len(rewrites), 'autograd bug')} ({', '.join(codes)})"


def commit_message(outcome: dict) -> str:
    rewrites = [f for f in outcome["findings"] if f["fixed"]]
    lines = [title(outcome).removeprefix("[unverified] "), ""]
    lines += [
        f"- {f['path']}:{f['line']} {f['code']}: {f['write_text']} -> {f['fix'] or 'rewritten'}" for f in rewrites
    ]
    lines += ["", f"Verification: {outcome['status']}" + (f" on {outcome['device']}" if outcome["device"] else "")]
    return "\n".join(lines) + "\n"


def _code(text: str) -> str:
    text = text.replace("`", "'")
    return f"`{text}`" if text else ""


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _short(text: str, width: int = 160) -> str:
    """A failure's first sentence (a torch error's hint is not needed in a table)."""
    text = " ".join(str(text).split())
    cut = text.find(". ", 0, width)
    text = text[: cut + 1] if cut > 0 else text
    return text if len(text) <= width else text[: width - 1] + "…"


def verification_table(outcome: dict) -> list[str]:
    out = [
        f"**Verification: {outcome['status']}** - device `{outcome['device'] or '-'}`, "
        f"sandbox: {outcome['isolation'] or '-'}",
        "",
    ]
    if outcome["cases"]:
        out += [
            "| smoke case | original | rewritten | outputs | gradients | gradients reached | 2nd iteration |",
            "|---|---|---|---|---|---|---|",
        ]
        for case in outcome["cases"]:
            out.append(
                "| "
                + " | ".join(
                    _cell(c)
                    for c in (
                        case["name"],
                        _short(case["original"]),
                        _short(case["rewritten"]),
                        case["outputs"]["text"],
                        case["gradients"]["text"],
                        case["grads_received"] + (" parameters" if "/" in case["grads_received"] else ""),
                        case["second_iteration"],
                    )
                )
                + " |"
            )
        failed = [c for c in outcome["cases"] if not c["proven"]]
        for case in failed:
            out.append(f"\n**{_cell(case['name'])} not proven:** {_cell(case['reason'])}")
    for note in outcome["notes"]:
        out.append(f"\n> note: {_cell(note)}")
    return out


def proof_sentence(cases: list[dict]) -> str:
    """What a proven verification showed, and no more: harness cases compare outputs and gradients;
    a smoke command (configured, or the tests that import the rewritten modules) only passes."""
    harness = [c for c in cases if c.get("kind") == "harness"]
    commands = [c for c in cases if c.get("kind") == "command"]
    said = []
    if harness:
        said.append(
            f"{_plural(len(harness), 'smoke case')} ran on the original and the rewritten tree in a sandbox "
            "with the same outputs and gradients"
        )
    if commands:
        said.append(
            f"{_plural(len(commands), 'smoke command')} ({', '.join(_code(c['name']) for c in commands)}) "
            "passed on the rewritten tree in a sandbox (outputs not compared)"
        )
    return ("; ".join(said) or "verification passed") + "."


def body(outcome: dict, links: Links, app_slug: str, base: str) -> str:
    rewrites = [f for f in outcome["findings"] if f["fixed"]]
    reported = [f for f in outcome["findings"] if not f["fixed"]]
    out = []
    if outcome["proven"]:
        out.append(
            f"torch-codemod rewrote {_plural(len(rewrites), 'autograd bug')} on `{base}` at {links.sha[:12]}. "
            + proof_sentence(outcome["cases"])
        )
    else:
        out.append(
            f"**Not proven: do not merge as is.** torch-codemod found {_plural(len(rewrites), 'rewrite')} "
            f"on `{base}` at {links.sha[:12]}, but the smoke test did not prove them (see the table)."
        )
    out += ["", "## What changed and why", ""]
    for f in rewrites:
        saved = (
            (
                f" the tensor was saved for backward by [line {f['saved_line']}]({links.line(f['path'], f['saved_line'])})"
                f" {_code(f['saved_text'])};"
            )
            if f["saved_line"]
            else ""
        )
        out.append(
            f"- **{f['code']}** [`{f['path']}:{f['line']}`]({links.line(f['path'], f['line'])}) "
            f"{_code(f['write_text'])} → {_code(f['fix'] or '')}:{saved} {f['message']}"
        )
    out += ["", "## Verification", ""] + verification_table(outcome)
    if reported:
        out += ["", "## Reported, not rewritten", ""]
        for f in reported:
            why = " (left out: a closed pull request declined it)" if f.get("declined") else ""
            out.append(
                f"- **{f['code']}** [`{f['path']}:{f['line']}`]({links.line(f['path'], f['line'])}) "
                f"{_code(f['write_text'])}: {f['message']}{why}"
            )
    out += [
        "",
        "## Configure or suppress",
        "",
        f"- `@{app_slug} recreate` rebuilds this branch from `{base}`; `@{app_slug} ignore IP101` (or a rule "
        "family such as `inplace`) stops that rule for this repository.",
        '- Closing this pull request without merging means "not these": the same findings are not proposed '
        "again until their code changes. A commit you push to this branch is never overwritten (the App then "
        "stops updating it).",
        "- In code: a trailing `# codemod: ignore[IP101]`. In `pyproject.toml`: `[tool.codemod] ignore = "
        '["IP101"]`, and `[tool.codemod.smoke]` for the smoke test; `[tool.codemod.github] unverified = '
        '"skip"` opens no pull request when verification fails.',
    ]
    return "\n".join(out) + "\n"


def annotations(outcome: dict) -> list[list[dict]]:
    """Each finding reported but not rewritten, with both lines; in batches of 50."""
    items = []
    for f in outcome["findings"]:
        if f["fixed"]:
            continue
        message = f["message"]
        if f["saved_line"]:
            message += f"\nsaved at line {f['saved_line']}: {f['saved_text']}"
        items.append(
            {
                "path": f["path"],
                "start_line": f["line"],
                "end_line": f["line"],
                "annotation_level": "warning",
                "title": f"{f['code']} (reported, not rewritten)",
                "message": message[:64000],
                "raw_details": f"write, line {f['line']}: {f['write_text']}"
                + (f"\nsaved, line {f['saved_line']}: {f['saved_text']}" if f["saved_line"] else ""),
            }
        )
    return [items[i : i + ANNOTATIONS_PER_REQUEST] for i in range(0, len(items), ANNOTATIONS_PER_REQUEST)]


def check_run(outcome: dict, pr_url: str | None, published: str) -> CheckRun:
    rewrites = [f for f in outcome["findings"] if f["fixed"]]
    reported = [f for f in outcome["findings"] if not f["fixed"]]
    if not outcome["findings"]:
        return CheckRun("neutral", "No autograd bug found", "torch-codemod found nothing to rewrite or report.", "")
    failed = bool(rewrites) and not outcome["proven"]
    conclusion = "failure" if failed else "neutral"
    head = f"{_plural(len(rewrites), 'rewrite')}, {_plural(len(reported), 'finding')} reported but not rewritten"
    summary = f"{head}. {published}" + (f" Pull request: {pr_url}" if pr_url else "")
    text = "\n".join(verification_table(outcome)) if outcome["cases"] or outcome["notes"] else ""
    return CheckRun(conclusion, head, summary, text, annotations(outcome))
