"""Join the per-process reports of a located run into one list of hazards.

Each process of the run (every rank of a distributed run, every pytest worker) reports what it
located; the same pair of lines found by several processes is one hazard, with the counts added
and the processes (ranks where known) that saw it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KIND_TITLES = {
    "saved-overwrite": "overwrites a tensor autograd saved",
    "silent": "overwrites a saved tensor through `.data` (no error, a wrong gradient)",
    "leaf": "in-place write into a leaf tensor that requires grad",
    "leaf-view": "in-place write into a view of a leaf tensor that requires grad",
    "multi-view": "in-place write into one of several views (`chunk`/`split`/`unbind`)",
    "no-grad-view": "in-place write with grad enabled into a view made under no_grad",
}


@dataclass
class Hazard:
    kind: str
    op: str
    write: dict[str, Any]  # {"path", "line", "code"}
    saved_by: dict[str, Any] | None
    saver: str | None
    saver_op: str | None
    shape: list[int] | None
    dtype: str | None
    message: str
    count: int = 0
    ranks: set[int] = field(default_factory=set)
    pids: set[int] = field(default_factory=set)
    engine: dict[str, Any] = field(default_factory=dict)  # what the rules do at the write (see .engine)

    @property
    def key(self) -> tuple:
        saved = self.saved_by or {}
        return (self.kind, self.write["path"], self.write["line"], saved.get("path"), saved.get("line"))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "op": self.op,
            "write": self.write,
            "saved_by": self.saved_by,
            "saver": self.saver,
            "saver_op": self.saver_op,
            "shape": self.shape,
            "dtype": self.dtype,
            "count": self.count,
            "processes": len(self.pids),
            "ranks": sorted(self.ranks),
            "message": self.message,
            "engine": self.engine,
        }


def merge_reports(reports: list[dict[str, Any]]) -> list[Hazard]:
    """Hazards of every process, deduplicated by (kind, write line, saving line), in source order."""
    merged: dict[tuple, Hazard] = {}
    for report in reports:
        for record in report.get("hazards", []):
            hazard = Hazard(
                record["kind"],
                record.get("op", ""),
                record["write"],
                record.get("saved_by"),
                record.get("saver"),
                record.get("saver_op"),
                record.get("shape"),
                record.get("dtype"),
                record.get("message", ""),
            )
            hazard = merged.setdefault(hazard.key, hazard)
            hazard.count += int(record.get("count", 1))
            hazard.pids.add(report.get("pid"))
            if report.get("rank") is not None:
                hazard.ranks.add(report["rank"])
    return sorted(merged.values(), key=lambda h: (h.write["path"], h.write["line"], h.kind))
