"""Human-readable report: one line per finding, related lines indented, then a summary."""

from __future__ import annotations

from ..findings import FileResult
from .summary import Summary


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def render(results: list[FileResult], summary: Summary, color: bool = False) -> str:
    def paint(text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if color else text

    lines: list[str] = []
    for r in results:
        for res in r.results:
            if res.suppressed:
                continue
            loc = f"{res.path}:{res.location.line}:{res.location.column}"
            if res.fixed and r.write_error:
                tag = paint("not written", "31")
            elif res.fixed:
                tag = paint("fixed" if summary.written else "fixable", "32")
            else:
                tag = paint("needs a human", "33")
            lines.append(f"{paint(loc, '1')}: {paint(res.code, '31' if not res.fixed else '36')} {res.message} [{tag}]")
            for rel in res.related:
                lines.append(f"    {res.path}:{rel.line}:{rel.column}: {rel.message}")
    for path, reason in summary.skipped:
        lines.append(f"{paint(path, '1')}: skipped: {reason}")
    for path, reason in summary.unwritten:
        lines.append(f"{paint(path, '1')}: not written: {reason}")
    lines.append(summary_line(summary))
    return "\n".join(lines) + "\n"


def summary_line(s: Summary) -> str:
    verb = "rewrote" if s.written else "would rewrite"
    parts = [f"Scanned {_plural(s.files, 'file')} in {s.seconds:.1f}s ({s.parsed} parsed)"]
    if s.changed_files:
        parts.append(f"{verb} {_plural(s.changed_files, 'file')} ({_plural(s.rewrites, 'rewrite')})")
    else:
        parts.append("nothing to rewrite")
    parts.append(f"{_plural(s.reported, 'finding')} reported but not rewritten")
    if s.suppressed:
        parts.append(f"{s.suppressed} suppressed")
    parts.append(f"{_plural(len(s.skipped), 'file')} skipped")
    if s.unwritten:
        parts.append(f"{_plural(len(s.unwritten), 'file')} NOT written")
    return "; ".join(parts) + "."
