"""The operator's status page at ``/``: recent jobs as one server-rendered HTML table.

Everything shown comes from repositories and GitHub (names, branch names, error text) and is
untrusted: every value is escaped, links are only http(s), and the page is served with a Content
Security Policy that allows no script at all.
"""

from __future__ import annotations

import html
import time
from typing import Any

CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #1f2328; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #d0d7de; padding: .35em .6em; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.state-done { color: #1a7f37; } td.state-failed { color: #cf222e; } td.state-running { color: #9a6700; }
code { font-size: 12px; }
.error { color: #cf222e; white-space: pre-wrap; max-width: 40em; }
"""

COLUMNS = ("Job", "Repository", "Commit", "Kind", "State", "Stages", "Verdict", "Pull request", "Finished")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def login_page(message: str = "") -> str:
    note = f"<p class=error>{_e(message)}</p>" if message else ""
    return _page(
        "torch-codemod: sign in",
        "<h1>torch-codemod</h1>" + note + "<form method=post action=/login><label>Admin token (CODEMOD_ADMIN_TOKEN) "
        "<input type=password name=token id=token autocomplete=off></label> "
        "<button type=submit id=sign-in>Show jobs</button></form>",
    )


def _commit(job: dict) -> str:
    sha = (job.get("result") or {}).get("sha") or (job.get("request") or {}).get("sha") or ""
    return f"<code title='{_e(sha)}'>{_e(sha[:12])}</code>" if sha else ""


def _stages(job: dict) -> str:
    return ", ".join(
        f"{_e(name)} {float(seconds):.1f} s" for name, seconds in sorted((job.get("stages") or {}).items())
    )


def _verdict(job: dict) -> str:
    result = job.get("result") or {}
    parts = []
    if result.get("status"):
        parts.append(f"<b>{_e(result['status'])}</b>")
    if result.get("published"):
        parts.append(_e(result["published"]))
    if result.get("routed"):
        parts.append(f"routed: {_e(result['routed'])} ({_e(job.get('queue'))})")
    if job.get("error"):
        parts.append(f"<div class=error>{_e(job['error'])}</div>")
    return "<br>".join(parts)


def _pull(job: dict) -> str:
    url = job.get("pr_url") or ""
    if not url.startswith(("https://", "http://")):
        return ""
    number = (job.get("result") or {}).get("pr")
    return f"<a href='{_e(url)}' rel='noopener noreferrer'>{_e(f'#{number}' if number else url)}</a>"


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp)) if stamp else ""


def jobs_page(jobs: list[dict], counts: dict[str, int]) -> str:
    summary = ", ".join(f"{_e(state)}: {count}" for state, count in sorted(counts.items())) or "no jobs yet"
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    rows = []
    for job in jobs:
        cells = [
            str(int(job["id"])),
            _e(job.get("repo")),
            _commit(job),
            _e(job.get("kind")),
            f"{_e(job.get('state'))} ({int(job.get('attempts') or 0)})",
            _stages(job),
            _verdict(job),
            _pull(job),
            _when(job.get("finished_at")),
        ]
        state_class = _e(job.get("state"))
        rows.append(
            f"<tr data-job='{int(job['id'])}'>"
            + "".join(
                f"<td class='state-{state_class}'>{cell}</td>" if i == 4 else f"<td>{cell}</td>"
                for i, cell in enumerate(cells)
            )
            + "</tr>"
        )
    return _page(
        "torch-codemod: jobs",
        f"<h1>torch-codemod: recent jobs</h1><p id=summary>{summary}</p>"
        f"<table id=jobs><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>",
    )
