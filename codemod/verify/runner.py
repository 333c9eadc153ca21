"""``codemod verify``: prove the rewrites of one repository by running its smoke tests.

On two throwaway copies of the repository (the original and the rewritten tree), each run in the
sandbox: the configured smoke ``command`` (pass = exit 0) and the built-in harness over the
configured ``cases`` (or, with neither configured, cases discovered in the rewritten files, and
where discovery has none, the repository's own tests that import a rewritten or candidate module:
:func:`codemod.locate.smoke.default_smoke_command`). On the original the in-place locator runs
with the harness and around the command (every Python process of it, through the bootstrap of
:mod:`codemod.locate`, reporting into a directory bound writable for the run and read back as
untrusted data by :mod:`.located`); the lines it confirms upgrade the engine's candidates to
rewrites (never past P1-P5). Nothing here writes to the repository:
``apply --verify`` writes :attr:`VerifyReport.changes` only when :attr:`VerifyReport.proven`.

What the repository's config asks for is bounded by :class:`.settings.OperatorSettings` (the
caller's, else the environment's): the timeout is clamped, limits come only from the operator,
requirements are installed only in the sandbox and only if allowed. Nothing outside the repository
is read as its code: files whose real path leaves the repository (symlinks) are skipped and
reported, and the copies leave such symlinks out. The harness reports through a pipe the parent
holds (:mod:`.channel`), never through a file in the copy.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import DEFAULT_EXCLUDE, ConfigFinder, Mode, SmokeConfig
from ..discovery import discover
from ..engine import FileTask, build_tasks, known_selectors, run
from ..findings import FileResult
from ..locate.run import located_environment
from ..locate.smoke import default_smoke_command, default_smoke_tests
from . import VerifyError
from .channel import ResultChannel
from .compare import CaseVerdict, compare_case
from .located import read_located
from .requirements import check_requirements, install_requirements
from .sandbox import (
    Limits,
    SandboxResult,
    detect_isolation,
    owned_tempdir,
    run_sandboxed,
    sweep_stale,
    terminate_as_exit,
)
from .settings import OperatorSettings


# What verification concluded about a repository's rewrites.
VerifyStatus = Literal["", "proven", "not proven", "nothing to do", "nothing could be verified"]


@dataclass
class VerifyReport:
    root: Path
    status: VerifyStatus = ""  # "": not decided yet
    device: str = ""
    isolation: str = ""
    rewrites: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[CaseVerdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hazards: list[dict[str, Any]] = field(default_factory=list)  # locator findings on the original
    changes: list[tuple[FileTask, FileResult]] = field(default_factory=list)
    results: list[FileResult] = field(default_factory=list)
    smoke_source: str = ""  # configured | discovered | default tests (no config, no discovered case)
    default_tests: list[str] = field(default_factory=list)

    @property
    def proven(self) -> bool:
        return self.status == "proven"

    @property
    def exit_code(self) -> int:
        if self.status == "nothing to do":
            return 1 if self.hazards else 0
        return 0 if self.proven else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "status": self.status,
            "proven": self.proven,
            "device": self.device,
            "isolation": self.isolation,
            "rewrites": self.rewrites,
            "cases": [v.to_json() for v in self.verdicts],
            "locator": self.hazards,
            "notes": self.notes,
            "smoke_source": self.smoke_source,
            "default_tests": self.default_tests,
        }


def repository_root(path: Path, finder: ConfigFinder) -> Path:
    """The directory of the config that applies to ``path``, else ``path`` itself (or its folder)."""
    config = finder.for_path(path)
    if config.source is not None:
        return config.source.parent.resolve()
    return (path if path.is_dir() else path.parent).resolve()


def verify(
    path: str,
    *,
    config: str | None = None,
    device: str | None = None,
    timeout: float | None = None,
    select: list[str] | None = None,
    ignore: list[str] | None = None,
    mode: Mode | None = None,
    jobs: int | None = None,
    limits: Limits | None = None,
    settings: OperatorSettings | None = None,
) -> VerifyReport:
    """Prove the rewrites of the repository at ``path``. ``settings`` are the operator's bounds
    (default: from the environment, :meth:`OperatorSettings.from_environment`); ``limits``, when
    given, replaces the settings' limits. A SIGTERM while it runs (main thread) still kills every
    sandboxed process and removes the copies."""
    settings = settings if settings is not None else OperatorSettings.from_environment()
    with terminate_as_exit():
        return _verify(path, config, device, timeout, select, ignore, mode, jobs, limits or settings.limits(), settings)


def _verify(
    path: str,
    config: str | None,
    device: str | None,
    timeout: float | None,
    select: list[str] | None,
    ignore: list[str] | None,
    mode: Mode | None,
    jobs: int | None,
    limits: Limits,
    settings: OperatorSettings,
) -> VerifyReport:
    try:
        import torch  # the smoke cases and the comparison need it
    except ImportError as exc:
        raise VerifyError(f"codemod verify needs torch in this environment ({exc}); pip install torch") from exc
    finder = ConfigFinder(known_selectors(), Path(config) if config else None)
    target = Path(path)
    if not target.exists():
        raise VerifyError(f"{path}: no such file or directory")
    root = repository_root(target, finder)
    smoke = finder.for_path(target).smoke
    device = device or smoke.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    asked = timeout or smoke.timeout
    timeout = settings.clamp_timeout(asked)
    requirements = check_requirements(smoke.requirements, root) if smoke.requirements else []
    # CUDA needs an unlimited address space: only a cgroup then bounds memory. Where CUDA is not
    # there, asking for it changes nothing (the address-space limit stays).
    gpu = device == "cuda" and torch.cuda.is_available()
    report = VerifyReport(root, isolation=detect_isolation(limits, gpu).describe())
    if timeout < asked:
        report.notes.append(f"the smoke timeout {asked:g} s was clamped to the operator's maximum, {timeout:g} s")

    sources, outside = _inside_repository(discover([str(target)], finder), root)
    report.notes += outside
    tasks = build_tasks(sources, select, ignore, mode)
    results = run(tasks, jobs)

    for prefix in ("codemod-verify-", "codemod-sandbox-"):  # left behind by a verification killed with SIGKILL
        sweep_stale(prefix)
    tmp = owned_tempdir("codemod-verify-")
    try:
        original = _copy(root, Path(tmp) / "original", report.notes)
        changed = [_relative(t, root) for t, r in zip(tasks, results) if r.changed]
        python, site = sys.executable, None
        plan = _Plan(smoke, python, device, timeout, limits, settings.result_bytes, gpu=gpu)
        if not smoke.command and not smoke.cases:
            # Files with a rewrite or a candidate: the located run of their tests may upgrade a candidate.
            touched = sorted({_relative(t, root) for t, r in zip(tasks, results) if r.results})
            report.default_tests = default_smoke_tests(original, touched)
            plan.default = default_smoke_command(original, touched)
        report.smoke_source = "configured" if smoke.command or smoke.cases else "discovered"
        if plan.has_cases(changed) and requirements:
            if not settings.allow_requirements:
                report.status = "nothing could be verified"
                report.notes.append(
                    "the smoke tests could not run: they need smoke.requirements, and installing "
                    "requirements is turned off by the operator (CODEMOD_ALLOW_REQUIREMENTS=0)"
                )
                _finish(report, tasks, results, root)
                return report
            python, site = install_requirements(
                requirements,
                _copy(root, Path(tmp) / "install", []),
                Path(tmp),
                timeout=timeout,
                limits=limits,
                index_url=settings.pip_index_url,
            )
            plan = _Plan(smoke, python, device, timeout, limits, settings.result_bytes, site, gpu, plan.default)
        if not plan.has_cases(changed):
            report.status = "nothing to do" if not changed else "nothing could be verified"
            report.notes.append(_nothing_configured(changed))
            _finish(report, tasks, results, root)
            return report
        track = [
            f"{_relative(t, root)}:{res.location.line}"
            for t, r in zip(tasks, results)
            for res in r.results
            if res.fixed
        ]
        if plan.default and not changed:
            plan.use_default()  # nothing to discover cases in
        before = plan.run_side(original, changed, locate=True, track=track)
        if (
            plan.default
            and not plan.defaulted
            and before.harness is not None
            and not before.harness.get("cases")
            and not before.harness_error
        ):
            plan.use_default()  # discovery found no case to run: the repository's own tests instead
            discovery_notes = before.notes
            before = plan.run_side(original, changed, locate=True, track=track)
            before.notes[:0] = discovery_notes
        if plan.defaulted:
            report.smoke_source = "default tests"
        report.device = before.device
        report.notes += before.notes
        report.hazards = before.locator_findings()
        _upgrade(tasks, results, _confirmed_lines(report.hazards), root, jobs)
        _finish(report, tasks, results, root)
        _annotate_hazards(report.hazards, tasks, results, root)
        if not report.changes:
            report.status = "nothing to do"
            if report.hazards:
                report.notes.append(
                    "the locator found in-place writes into saved tensors that no rule can rewrite safely"
                )
            return report
        rewritten = _copy(root, Path(tmp) / "rewritten", [])
        for task, res in report.changes:
            _replace(rewritten / _relative(task, root), res.new_source.encode(res.encoding))
        after = plan.run_side(rewritten, [_relative(t, root) for t, _ in report.changes], locate=False)
        exact = (before.device or device) == "cpu" and all(r["code"].startswith("IP") for r in report.rewrites)
        report.verdicts = plan.verdicts(before, after, exact)
        unexercised = _mark_exercised(
            report.rewrites, before, tracked=before.harness is not None, command=bool(plan.command)
        )
        if not report.verdicts:
            report.status = "nothing could be verified"
        elif all(v.proven for v in report.verdicts) and not unexercised:
            report.status = "proven"
        else:
            report.status = "not proven"
            if unexercised:
                report.notes.append(
                    "not exercised by any smoke case (add a case that runs it, or a smoke command): "
                    + ", ".join(f"{r['path']}:{r['line']} {r['code']}" for r in unexercised)
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    return report


def _upgrade(
    tasks: list[FileTask], results: list[FileResult], confirmed: dict[str, set[int]], root: Path, jobs: int | None
) -> None:
    """Analyse again, in place, the files where the locator confirmed hazards: the engine may now
    rewrite a candidate on those lines (still only under P1-P5)."""
    again = [i for i, t in enumerate(tasks) if confirmed.get(_relative(t, root))]
    if not again:
        return
    upgraded = [
        FileTask(t.path, t.display, t.codes, t.mode, frozenset(confirmed[_relative(t, root)]))
        for t in (tasks[i] for i in again)
    ]
    for i, res in zip(again, run(upgraded, jobs)):
        results[i] = res


def _mark_exercised(
    rewrites: list[dict[str, Any]], before: _Side, tracked: bool, command: bool
) -> list[dict[str, Any]]:
    """Which smoke cases ran each rewritten line on the original tree (a line the locator
    confirmed ran by definition). Returns the rewrites nothing is known to exercise; with a smoke
    command, whose coverage cannot be seen, none."""
    cases = (before.harness or {}).get("cases", {})
    confirmed = {(f["write"]["path"], f["write"]["line"]) for f in before.locator_findings()}
    for rewrite in rewrites:
        key = (rewrite["path"], rewrite["line"])
        rewrite["exercised_by"] = sorted(
            name for name, record in cases.items() if key in {tuple(e) for e in record.get("executed", [])}
        )
        if not rewrite["exercised_by"] and key in confirmed:
            rewrite["exercised_by"] = ["locator"]
    if command or not tracked:
        return []
    return [r for r in rewrites if not r["exercised_by"]]


def _finish(report: VerifyReport, tasks: list[FileTask], results: list[FileResult], root: Path) -> None:
    report.results = results
    report.changes = [(t, r) for t, r in zip(tasks, results) if r.changed]
    report.rewrites = [
        {"path": _relative(t, root), "line": res.location.line, "code": res.code, "message": res.message}
        for t, r in report.changes
        for res in r.results
        if res.fixed
    ]


def _annotate_hazards(
    hazards: list[dict[str, Any]], tasks: list[FileTask], results: list[FileResult], root: Path
) -> None:
    """Say, for each locator finding, what the engine did at that line."""
    by_path = {_relative(t, root): r for t, r in zip(tasks, results)}
    for hazard in hazards:
        write = hazard["write"]
        result = by_path.get(write["path"])
        at_line = [
            r for r in (result.results if result else []) if r.location.line <= write["line"] <= r.location.end_line
        ]
        fixed = [r for r in at_line if r.fixed]
        if fixed:
            hazard["engine"] = f"rewritten ({fixed[0].code})"
        elif at_line:
            hazard["engine"] = f"reported, not rewritten: {at_line[0].code} {at_line[0].message}"
        elif result is None:
            hazard["engine"] = "not rewritten: the file is not among the files analysed"
        else:
            hazard["engine"] = "not rewritten: no rule can rewrite it safely"


def _nothing_configured(changed: list[str]) -> str:
    if not changed:
        return "no rewrite to verify, and no smoke test configured to run the locator with"
    return (
        "nothing could be verified: no [tool.codemod.smoke] command or cases, and no module in the rewritten "
        "files constructs without arguments with an input that can be inferred"
    )


def _relative(task: FileTask, root: Path) -> str:
    return Path(task.path).resolve().relative_to(root).as_posix()


def _inside_repository(sources: list, root: Path) -> tuple[list, list[str]]:
    """The discovered files whose real path stays in the repository, and a note for each other."""
    kept, notes = [], []
    for source in sources:
        real = Path(os.path.realpath(source.path))
        if real.is_relative_to(root) and real.is_file():
            kept.append(source)
        else:
            notes.append(f"skipped {source.display}: a symlink whose target leaves the repository")
    return kept, notes


def _copy(root: Path, dest: Path, notes: list[str]) -> Path:
    """A throwaway copy of the repository. Symlinks are kept only when their target stays in the
    repository (then as relative links); others, and sockets, fifos and devices, are left out
    (with a note). Files are read with O_NOFOLLOW."""
    excluded = shutil.ignore_patterns(*DEFAULT_EXCLUDE, "*.pyc")
    dest.mkdir()
    for top, dirs, files in os.walk(root):
        rel_top = Path(top).relative_to(root)
        skip = excluded(top, dirs + files)
        dirs[:] = [d for d in dirs if d not in skip]
        for name in sorted(set(dirs + files) - skip):
            source, target = Path(top, name), dest / rel_top / name
            st = os.lstat(source)
            if stat.S_ISLNK(st.st_mode):
                real = Path(os.path.realpath(source))
                if not real.is_relative_to(root):
                    notes.append(
                        f"left out of the copies: {(rel_top / name).as_posix()} (a symlink whose target "
                        "leaves the repository)"
                    )
                    if name in dirs:
                        dirs.remove(name)
                    continue
                os.symlink(os.path.relpath(dest / real.relative_to(root), target.parent), target)
                if name in dirs:
                    dirs.remove(name)  # walked through its target already (or later)
            elif stat.S_ISDIR(st.st_mode):
                target.mkdir()
            elif stat.S_ISREG(st.st_mode):
                _copy_file(source, target, st)
            else:
                notes.append(f"left out of the copies: {(rel_top / name).as_posix()} (not a regular file)")
    return dest


def _copy_file(source: Path, target: Path, st: os.stat_result) -> None:
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as src, open(target, "xb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    os.chmod(target, stat.S_IMODE(st.st_mode) & 0o755 | 0o600)


def _replace(path: Path, data: bytes) -> None:
    """Write a rewritten file into the copy, never through a symlink."""
    if path.is_symlink():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _confirmed_lines(findings: list[dict[str, Any]]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for f in findings:
        write = f.get("write") or {}
        if write.get("path") and not os.path.isabs(write["path"]):
            out.setdefault(write["path"], set()).add(int(write["line"]))
    return out


@dataclass
class _Side:
    """What ran on one copy."""

    harness: dict[str, Any] | None = None
    harness_error: str = ""
    command: SandboxResult | None = None
    device: str = ""
    notes: list[str] = field(default_factory=list)

    located: list[dict[str, Any]] = field(default_factory=list)  # the smoke command's, checked (.located)

    def locator_findings(self) -> list[dict[str, Any]]:
        """The harness cases' locator findings, then the smoke command's, each line pair once."""
        seen, out = set(), []
        records = [f for record in (self.harness or {}).get("cases", {}).values() for f in record.get("locator", [])]
        for f in records + self.located:
            key = (f["write"]["path"], f["write"]["line"], (f.get("saved_by") or {}).get("line"))
            if key not in seen:
                seen.add(key)
                out.append(f)
        return out


@dataclass
class _Plan:
    smoke: SmokeConfig
    python: str
    device: str
    timeout: float
    limits: Limits
    result_bytes: int = 512 << 20
    site: str | None = None
    gpu: bool = False
    default: str | None = None  # the default smoke command (no [tool.codemod.smoke]), if any test fits
    defaulted: bool = False  # whether it replaced the discovered cases

    def __post_init__(self) -> None:
        self.command = self.smoke.command
        self.harness = bool(self.smoke.cases or not self.smoke.command)

    def use_default(self) -> None:
        self.command, self.harness, self.defaulted = self.default, False, True

    def has_cases(self, changed: list[str]) -> bool:
        return bool(self.smoke.command or self.smoke.cases or changed or self.default)

    def run_side(self, copy: Path, changed: list[str], locate: bool, track: list[str] = ()) -> _Side:
        side = _Side()
        visible = [_environment_of(self.python), _environment_of(sys.executable), _PACKAGE_DIR]
        gpu = self.gpu
        if self.harness:
            channel = ResultChannel(self.result_bytes)
            # The harness runs with this interpreter, the copy kept off sys.path (-P) and no user
            # site (-s), so nothing of the repository can stand in for it; the environment is ours
            # (no PYTHONPATH; PYTHONHASHSEED kept). The requirements' environment is added once the
            # channel is open and the harness's own modules are imported.
            argv = [
                sys.executable,
                "-P",
                "-s",
                "-B",
                "-m",
                "codemod.verify.harness",
                "--root",
                str(copy),
                "--report-fd",
                str(channel.write_fd),
                "--device",
                self.device,
            ]
            argv += ["--site", self.site] if self.site else []
            argv += ["--cases", self.smoke.cases] if self.smoke.cases else ["--discover", *changed]
            if locate:
                argv.append("--locate")
            if track:
                argv += ["--track", *track]
            try:
                result = run_sandboxed(
                    argv,
                    copy,
                    timeout=self.timeout,
                    limits=self.limits,
                    env=_child_env(self.python),
                    visible=visible,
                    stdin=channel.nonce + "\n",
                    pass_fds=[channel.write_fd],
                    gpu=gpu,
                )
            finally:
                channel.close_writer()
            payload, why = channel.payload()
            if payload is not None and result.ok:
                import io

                import torch

                try:
                    side.harness = torch.load(io.BytesIO(payload), weights_only=True)
                except Exception as exc:  # noqa: BLE001 - a malformed result is a failed run
                    side.harness = None
                    side.harness_error = f"the harness's result could not be read: {type(exc).__name__}"
            else:
                side.harness_error = _failure(result, "the harness") if not result.ok else why
            if side.harness is not None:
                side.device = side.harness.get("device", "")
                side.notes += side.harness.get("notes", [])
                side.notes += [
                    f"the locator could not run on case {name}: {record['locator_error']}"
                    for name, record in side.harness.get("cases", {}).items()
                    if record.get("locator_error") and record.get("status") == "ok"
                ]
                if side.harness.get("error"):
                    side.harness_error = side.harness["error"]
        if self.command:
            env = {**_child_env(self.python), "CODEMOD_DEVICE": self.device}
            reports = copy.parent / f"{copy.name}-located"
            if locate:
                # Every Python process of the command that imports torch runs the locator (the
                # bootstrap is under _PACKAGE_DIR, visible) and reports into a directory bound
                # writable for this run; the copy itself is an overlay whose writes never come back.
                reports.mkdir(mode=0o755)
                env = located_environment(str(reports), [copy], "exit", base=env)
            side.command = run_sandboxed(
                ["/bin/sh", "-c", self.command],
                copy,
                timeout=self.timeout,
                limits=self.limits,
                env=env,
                visible=visible,
                gpu=gpu,
                writable=[reports] if locate else [],
            )
            side.device = side.device or self.device
            if locate:
                side.located, notes = read_located(reports, copy)
                side.notes += notes
                shutil.rmtree(reports, ignore_errors=True)
        return side

    def verdicts(self, before: _Side, after: _Side, exact: bool) -> list[CaseVerdict]:
        out: list[CaseVerdict] = []
        if after.harness is not None or before.harness is not None or before.harness_error or after.harness_error:
            if before.harness_error or after.harness_error:
                out.append(
                    CaseVerdict(
                        "harness",
                        "harness",
                        f"fails: {before.harness_error}" if before.harness_error else "pass",
                        f"fails: {after.harness_error}" if after.harness_error else "pass",
                        proven=False,
                        reason=after.harness_error or before.harness_error,
                    )
                )
            else:
                orig_cases = before.harness["cases"]
                for name, record in after.harness["cases"].items():
                    out.append(compare_case(name, orig_cases.get(name), record, exact))
        if self.command:
            out.append(
                _command_verdict(
                    self.command, before.command, after.command, "default tests" if self.defaulted else "command"
                )
            )
        return out


def _command_verdict(
    command: str, before: SandboxResult | None, after: SandboxResult | None, label: str = "command"
) -> CaseVerdict:
    orig = "pass" if before and before.ok else f"fails: {_failure(before, 'the command')}"
    new = "pass" if after and after.ok else f"fails: {_failure(after, 'the command')}"
    verdict = CaseVerdict(f"{label}: {command}", "command", orig, new)
    verdict.proven = new == "pass"
    if not verdict.proven:
        verdict.reason = (
            "fails before and after the rewrite, for a reason unrelated to it: " + new[7:]
            if orig == new
            else f"the rewritten copy fails: {new[7:]}"
        )
    return verdict


def _failure(result: SandboxResult | None, what: str) -> str:
    """The first line that says what went wrong."""
    if result is None:
        return f"{what} did not run"
    if result.timed_out:
        return f"{what} timed out after {result.seconds:.0f} s"
    lines = [line.strip() for line in (result.stderr + "\n" + result.stdout).splitlines() if line.strip()]
    # A traceback's last line (pytest prefixes it with "E"), else pytest's summary, else the tail.
    errors = [m.group(1) for m in map(_ERROR_LINE.match, lines) if m]
    if errors:
        return errors[-1][:300]
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    if failed:
        return failed[0][:300]
    tail = lines[-1][:300] if lines else ""
    return f"exit {result.returncode}" + (f": {tail}" if tail else "")


_ERROR_LINE = re.compile(r"^(?:E\s+)?((?:[A-Za-z_][\w.]*)?(?:Error|Exception|Interrupt|Exit)\b:? .*)$")


def _environment_of(python: str) -> str:
    """The virtual environment (or installation) a python executable belongs to."""
    return os.path.dirname(os.path.dirname(python))


# The harness child imports torch-codemod itself; an editable install lives outside site-packages.
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


def _child_env(python: str) -> dict[str, str]:
    # `python` in a smoke command is the environment's (the requirements venv's, if any).
    path = os.pathsep.join([os.path.dirname(python), os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin"])
    return {"PATH": path, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


__all__ = ["OperatorSettings", "VerifyError", "VerifyReport", "repository_root", "verify"]
