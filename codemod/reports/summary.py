"""Counts over a run, for the one-screen summary and the machine formats."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from ..findings import FileResult

# What the run did with rewrites: wrote them, only checked for them, or printed them as a diff.
RunMode = Literal["apply", "check", "diff"]


@dataclass
class Summary:
    files: int = 0  # scanned (matched the paths and config)
    parsed: int = 0  # passed the text pre-filter and were parsed
    changed_files: int = 0
    rewrites: int = 0  # findings fixed by a rewrite
    reported: int = 0  # findings reported but not rewritten
    suppressed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    unwritten: list[tuple[str, str]] = field(default_factory=list)  # rewrites that could not be written: (path, reason)
    seconds: float = 0.0
    mode: RunMode = "apply"
    written: bool = False  # files were written

    def to_dict(self) -> dict:
        data = asdict(self)
        data["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        data["unwritten"] = [{"path": p, "reason": r} for p, r in self.unwritten]
        return data

    @property
    def needs_attention(self) -> bool:
        """Something would change, was reported, or could not be written."""
        if self.reported or self.unwritten:
            return True
        return self.mode != "apply" and (self.rewrites > 0 or self.changed_files > 0)


def summarize(results: list[FileResult], seconds: float, mode: RunMode, written: bool) -> Summary:
    s = Summary(files=len(results), seconds=seconds, mode=mode, written=written)
    for r in results:
        s.parsed += r.parsed
        if r.write_error:
            s.unwritten.append((r.path, r.write_error))
        else:
            s.changed_files += r.changed
        if r.skipped:
            s.skipped.append((r.path, r.skipped))
        for res in r.results:
            if res.suppressed:
                s.suppressed += 1
            elif res.fixed:
                s.rewrites += not r.write_error
            else:
                s.reported += 1
    return s
