"""One entry point for everything that fixes a repository: ``fix_repository(path, files) -> Outcome``.

``codemod apply --verify`` and the GitHub App (service/) both come through here, so the App never
parses Python and never decides anything the CLI would decide differently. It wraps the engine
and :func:`codemod.verify.runner.verify`:

1. a gate (optional): the files named in ``files`` are analysed afresh, the others come from a
   cache of per-file results keyed by the file's git blob id, the rule selection and the engine
   version; with no finding anywhere, verification is skipped (a clean push costs one analysis of
   the pushed files);
2. verification (the engine on the whole repository with project facts, the smoke runs in the
   sandbox, the locator) - its report is kept as :attr:`Outcome.report`;
3. rewrites whose fingerprint the caller declined (a closed pull request) are left out, file by
   file.

Fingerprints name a finding by its rule, file and the text of its two lines (the write and the
op that saved the tensor), so they survive unrelated line moves and change when that code does.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from . import __version__
from .config import ConfigFinder, Mode, Unverified
from .discovery import discover
from .engine import build_tasks, known_selectors, run
from .findings import FileResult, Result
from .verify.settings import OperatorSettings
from .writer import write_atomic

if TYPE_CHECKING:
    from .verify.runner import VerifyStatus

# An outcome is verification's status, or one of these when verification did not run: nothing was
# found to rewrite (clean), or the rewrites were not verified (``verify=False``, or no smoke test).
OutcomeStatus = Literal["clean", "unverified"]


class ResultCache(Protocol):
    def get_many(self, keys: list[str]) -> dict[str, dict]: ...

    def put_many(self, items: dict[str, dict]) -> None: ...


@dataclass
class Finding:
    path: str  # relative to the repository root, posix
    line: int
    code: str
    message: str
    fixed: bool  # rewritten in the proposed change
    fix: str | None
    saved_line: int | None  # the line of the op that saved the tensor, when known
    saved_message: str | None
    write_text: str  # the two source lines, stripped (for people and fingerprints)
    saved_text: str
    fingerprint: str
    declined: bool = False  # rewritten by the engine, left out because the caller declined it


@dataclass
class Change:
    path: str
    old_source: str
    new_source: str
    encoding: str = "utf-8"


@dataclass
class Outcome:
    root: Path
    status: OutcomeStatus | VerifyStatus
    findings: list[Finding] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    device: str = ""
    isolation: str = ""
    cases: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    locator: list[dict[str, Any]] = field(default_factory=list)
    branch: str = "codemod/autograd"  # [tool.codemod.github]
    unverified: Unverified = "draft"
    seconds: dict[str, float] = field(default_factory=dict)
    report: Any = None  # the VerifyReport, when verification ran

    @property
    def proven(self) -> bool:
        return self.status == "proven"

    @property
    def rewrites(self) -> list[Finding]:
        return [f for f in self.findings if f.fixed]

    @property
    def reported(self) -> list[Finding]:
        return [f for f in self.findings if not f.fixed]

    def write(self) -> None:
        """Write the changes into the repository (atomic per file)."""
        for change in self.changes:
            write_atomic(self.root / change.path, change.old_source, change.new_source, change.encoding)

    def to_json(self, with_changes: bool = False) -> dict[str, Any]:
        data = {
            "status": self.status,
            "proven": self.proven,
            "device": self.device,
            "isolation": self.isolation,
            "findings": [asdict(f) for f in self.findings],
            "changed_files": [c.path for c in self.changes],
            "cases": self.cases,
            "notes": self.notes,
            "locator": self.locator,
            "branch": self.branch,
            "unverified": self.unverified,
            "seconds": self.seconds,
        }
        if with_changes:
            data["changes"] = [asdict(c) for c in self.changes]
        return data

    @classmethod
    def from_json(cls, root: Path, data: dict[str, Any]) -> "Outcome":
        return cls(
            root,
            data["status"],
            [Finding(**f) for f in data["findings"]],
            [Change(**c) for c in data.get("changes", [])],
            data["device"],
            data["isolation"],
            data["cases"],
            list(data["notes"]),
            data["locator"],
            data["branch"],
            data["unverified"],
            {"verification (cached)": 0.0},
        )


def fix_repository(
    path: str | Path,
    files: list[str] | None = None,
    *,
    cache: ResultCache | None = None,
    gate: bool = True,
    verify: bool = True,
    declined: set[str] | frozenset[str] = frozenset(),
    config: str | None = None,
    select: list[str] | None = None,
    ignore: list[str] | None = None,
    mode: Mode | None = None,
    jobs: int | None = None,
    device: str | None = None,
    timeout: float | None = None,
    settings: OperatorSettings | None = None,
) -> Outcome:
    """Find, rewrite and (with ``verify``) prove the fixes of the repository at ``path``.

    ``files``: paths relative to the root that changed (analysed afresh; None: every file).
    ``declined``: fingerprints not to propose. ``settings``: the operator's bounds for the
    sandbox (requirements allowed or not, the longest smoke run, memory, disk...), which the
    repository's config cannot lift; default: from the environment.
    """
    finder = ConfigFinder(known_selectors(), Path(config) if config else None)
    target = Path(path)
    from .verify.runner import repository_root

    root = repository_root(target, finder)
    repo_config = finder.for_path(root)
    outcome = Outcome(root, "", branch=repo_config.github.branch, unverified=repo_config.github.unverified)
    settings = OperatorSettings.from_environment() if settings is None else settings

    start = time.perf_counter()
    if gate:
        found = _gate(root, finder, files, cache, select, ignore, mode, jobs)
        outcome.seconds["codemod"] = time.perf_counter() - start
        if not found:
            outcome.status = "clean"
            return outcome
        if found <= set(declined):
            outcome.status = "nothing to do"
            outcome.notes.append(f"every finding ({len(found)}) was declined by a closed pull request")
            return outcome
    if not verify:
        tasks = build_tasks(discover([str(root)], finder), select, ignore, mode)
        results = run(tasks, jobs)
        outcome.status = "unverified"
        _collect(outcome, results, [(t, r) for t, r in zip(tasks, results) if r.changed], root)
        outcome.seconds["codemod"] = time.perf_counter() - start
        return _decline(outcome, declined)

    options = {
        "config": config,
        "select": select,
        "ignore": ignore,
        "mode": mode,
        "device": device,
        "timeout": timeout,
        "settings": settings,
    }
    key = _tree_key(root, options) if cache is not None else None
    if key is not None:
        hit = cache.get_many([key]).get(key)
        if hit is not None:
            return _decline(Outcome.from_json(root, hit), declined)
    from .verify.runner import verify as run_verify

    started = time.perf_counter()
    report = run_verify(
        str(root),
        config=config,
        device=device,
        timeout=timeout,
        select=select,
        ignore=ignore,
        mode=mode,
        jobs=jobs,
        settings=settings,
    )
    outcome.seconds["verification"] = time.perf_counter() - started
    outcome.report = report
    outcome.status = report.status
    outcome.device, outcome.isolation = report.device, report.isolation
    outcome.cases = [v.to_json() for v in report.verdicts]
    outcome.notes = list(report.notes)
    outcome.locator = report.hazards
    _collect(outcome, report.results, report.changes, root)
    if key is not None:
        cache.put_many({key: outcome.to_json(with_changes=True)})
    return _decline(outcome, declined)


def _tree_key(root: Path, options: dict[str, Any]) -> str:
    """Everything a verification depends on: every file of the tree (smoke tests may read any of
    them), the options, and this version. Identical trees are verified once: a retried job (after
    a GitHub error, or a worker that died) does not run the smoke test again."""
    digest = hashlib.sha256(f"{__version__}\0{sorted((k, repr(v)) for k, v in options.items())}".encode())
    for path in sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + blob_id(path.read_bytes()).encode())
    return "verify:" + digest.hexdigest()


def blob_id(data: bytes) -> str:
    """git's id of a file's content (``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _gate(
    root: Path, finder: ConfigFinder, files: list[str] | None, cache: ResultCache | None, select, ignore, mode, jobs
) -> set[str]:
    """The fingerprints of every finding: changed files analysed afresh, the rest from the cache."""
    tasks = build_tasks(discover([str(root)], finder), select, ignore, mode)
    fresh = None if files is None else {Path(f).as_posix() for f in files}
    keys: dict[int, str] = {}
    for i, task in enumerate(tasks):
        data = Path(task.path).read_bytes()
        selection = hashlib.sha1(",".join(sorted(task.codes)).encode() + task.mode.encode()).hexdigest()[:12]
        keys[i] = f"{blob_id(data)}:{selection}:{__version__}"
    cached = cache.get_many(list(keys.values())) if cache else {}
    todo = [
        i
        for i, task in enumerate(tasks)
        if keys[i] not in cached or (fresh is not None and _rel(task.path, root) in fresh)
    ]
    results = run([tasks[i] for i in todo], jobs) if todo else []
    found: dict[int, list[str]] = {}
    for i, res in zip(todo, results):
        rel = _rel(tasks[i].path, root)
        lines = _lines(root / rel, res)
        found[i] = [_finding(r, rel, lines).fingerprint for r in res.results if not r.suppressed]
    if cache:
        cache.put_many({keys[i]: {"fingerprints": found[i]} for i, res in zip(todo, results) if res.skipped is None})
    for i in keys:
        if i not in found:
            found[i] = cached[keys[i]]["fingerprints"]
    return {f for prints in found.values() for f in prints}


def _rel(path: str, root: Path) -> str:
    p = Path(path).resolve()
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.as_posix()


def _collect(outcome: Outcome, results: list[FileResult], changes, root: Path) -> None:
    for file_result in results:
        rel = _rel(file_result.path, root)
        lines = _lines(root / rel, file_result)
        for res in file_result.results:
            if res.suppressed:
                continue
            outcome.findings.append(_finding(res, rel, lines))
    outcome.changes = [
        Change(
            _rel(task.path, root),
            res.old_source or (root / _rel(task.path, root)).read_text(res.encoding),
            res.new_source,
            res.encoding,
        )
        for task, res in changes
    ]


def _lines(path: Path, result: FileResult) -> list[str]:
    if result.old_source is not None:
        return result.old_source.splitlines()
    try:
        return path.read_text(result.encoding, errors="replace").splitlines()
    except OSError:
        return []


def _finding(res: Result, rel: str, lines: list[str]) -> Finding:
    def text(line: int | None) -> str:
        return lines[line - 1].strip() if line and 0 < line <= len(lines) else ""

    saved = res.related[0] if res.related else None
    write_text, saved_text = text(res.location.line), text(saved.line if saved else None)
    fingerprint = hashlib.sha256("\0".join([res.code, rel, write_text, saved_text]).encode()).hexdigest()[:32]
    return Finding(
        rel,
        res.location.line,
        res.code,
        res.message,
        res.fixed,
        res.fix,
        saved.line if saved else None,
        saved.message if saved else None,
        write_text,
        saved_text,
        fingerprint,
    )


def _decline(outcome: Outcome, declined: set[str] | frozenset[str]) -> Outcome:
    """Leave out the files holding a declined rewrite; their rewrites become reports."""
    if not declined:
        return outcome
    dropped = {f.path for f in outcome.rewrites if f.fingerprint in declined}
    if not dropped:
        return outcome
    outcome.changes = [c for c in outcome.changes if c.path not in dropped]
    for f in outcome.findings:
        if f.fixed and f.path in dropped:
            f.fixed, f.declined = False, True
    outcome.notes.append(
        "left out (a closed pull request declined them): "
        + ", ".join(f"{f.path}:{f.line} {f.code}" for f in outcome.findings if f.declined)
    )
    if not outcome.changes and outcome.status == "proven":
        outcome.status = "nothing to do"
    return outcome


__all__ = ["Change", "Finding", "Outcome", "ResultCache", "blob_id", "fix_repository"]
