"""Run the user's command with the locator in every Python process it starts.

The command runs as the user would run it (same environment, working directory, terminal output),
with :mod:`codemod.locate.bootstrap` prepended to ``PYTHONPATH``, in a process group of its own.
Each Python process that imports torch writes a report file into a private directory; this side
reads them while the command runs. When one process says it stopped (by default after the first
backward that followed a located write, or at the first in-place error), the others that located
something get a moment to reach the end of their own backward, then the whole run is ended:
SIGTERM to the process group and every descendant (torchrun starts its ranks in sessions of
their own), SIGKILL to whatever is left two seconds later. The same happens at ``--timeout``, at
Ctrl-C, and to leftovers once the command exits: nothing outlives ``codemod locate``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ENV_DIR, ENV_PACKAGE, ENV_ROOTS, ENV_UNTIL, LocateError

BOOTSTRAP = Path(__file__).resolve().parent / "bootstrap"
PACKAGE = Path(__file__).resolve().parents[1]  # the codemod package
POLL_S = 0.05
GRACE_S = 5.0  # for the other processes that located something to finish their backward
TERM_WAIT_S = 2.0


@dataclass
class LocatedRun:
    """What happened to the command."""

    argv: list[str]
    returncode: int | None = None  # the command's own exit status (None: it was ended by us)
    stopped: str | None = None  # why the run was ended early
    timed_out: bool = False
    interrupted: bool = False
    seconds: float = 0.0
    processes: list[dict[str, Any]] = field(default_factory=list)  # one report per located process


def located_environment(
    report_dir: str, roots: list[Path], until: str, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The command's environment: the caller's, plus what the bootstrap needs."""
    env = dict(os.environ if base is None else base)
    previous = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(BOOTSTRAP) + (os.pathsep + previous if previous else "")
    env[ENV_DIR] = report_dir
    env[ENV_ROOTS] = os.pathsep.join(str(r) for r in roots)
    env[ENV_UNTIL] = until
    env[ENV_PACKAGE] = _package_only(report_dir)
    return env


def _package_only(report_dir: str) -> str:
    """A directory holding only torch-codemod's package (a link to it), for an interpreter of another
    environment to import the recorder from without seeing anything else of ours."""
    holder = Path(report_dir, "package")
    holder.mkdir(exist_ok=True)
    link = holder / PACKAGE.name
    if not link.exists():
        link.symlink_to(PACKAGE, target_is_directory=True)
    return str(holder)


def read_reports(report_dir: str) -> list[dict[str, Any]]:
    out = []
    for entry in sorted(os.listdir(report_dir)):
        if not entry.endswith(".json"):
            continue
        try:
            with open(os.path.join(report_dir, entry), encoding="utf-8") as fh:
                out.append(json.load(fh))
        except (OSError, ValueError):  # replaced atomically; a vanished file is read next time
            continue
    return out


def run_located(
    argv: list[str],
    *,
    roots: list[Path],
    until: str = "backward",
    timeout: float | None = None,
    cwd: str | None = None,
    grace: float = GRACE_S,
    output_to_stderr: bool = False,
    keep_reports: str | None = None,
) -> LocatedRun:
    """``output_to_stderr``: the command's standard output goes to this process's standard error
    (when standard output carries a diff or a machine-readable report). ``keep_reports``: an
    existing directory for the per-process reports, left in place (default: a temporary one)."""
    if not argv:
        raise LocateError("no command given: codemod locate [options] -- COMMAND [ARGS...]")
    run = LocatedRun(list(argv))
    reports = nullcontext(keep_reports) if keep_reports else tempfile.TemporaryDirectory(prefix="codemod-locate-")
    with reports as report_dir:
        env = located_environment(report_dir, roots, until)
        start = time.monotonic()
        try:
            stdout = sys.stderr.fileno() if output_to_stderr else None
            proc = subprocess.Popen(argv, env=env, cwd=cwd, process_group=0, stdout=stdout)
        except FileNotFoundError as exc:
            raise LocateError(f"{argv[0]}: command not found") from exc
        except PermissionError as exc:
            raise LocateError(f"{argv[0]}: cannot run it ({exc.strerror})") from exc
        except OSError as exc:
            raise LocateError(f"{argv[0]}: cannot run it ({exc})") from exc
        try:
            run.returncode, run.stopped, run.timed_out = _watch(proc, report_dir, start, timeout, grace)
        except KeyboardInterrupt:
            run.interrupted = True
        finally:
            end_process_tree(proc, report_dir)  # and leftovers of a command that exited (daemons, orphans)
            run.seconds = time.monotonic() - start
            run.processes = read_reports(report_dir)
    return run


def _watch(
    proc: subprocess.Popen, report_dir: str, start: float, timeout: float | None, grace: float
) -> tuple[int | None, str | None, bool]:
    """Wait for the command; returns (its exit status, why it was stopped, whether it timed out)."""
    while True:
        try:
            return proc.wait(timeout=POLL_S), None, False
        except subprocess.TimeoutExpired:
            pass
        reports = read_reports(report_dir)
        stopped = [r for r in reports if r.get("status") == "stopped"]
        if stopped:
            _let_others_finish(report_dir, grace)
            end_process_tree(proc, report_dir, gently=False)
            return None, stopped[0].get("stop_reason") or "stopped", False
        if timeout is not None and time.monotonic() - start > timeout:
            end_process_tree(proc, report_dir)
            return None, None, True


def _let_others_finish(report_dir: str, grace: float) -> None:
    """Processes that located something and are still running will stop at the end of their own
    backward (the other ranks): give them ``grace`` seconds to get there."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        pending = [
            r
            for r in read_reports(report_dir)
            if r.get("status") == "running" and r.get("hazards") and _alive(r.get("pid"))
        ]
        if not pending:
            return
        time.sleep(POLL_S)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return children
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc; empty where there is none)."""
    children = _children_map()
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _signal_all(pgid: int, pids: list[int], sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def _located_processes(report_dir: str) -> list[int]:
    """Processes that wrote a report and still run with this run's environment (an orphaned rank
    is no longer a descendant; the environment check rules out a reused pid)."""
    tag = f"{ENV_DIR}={report_dir}".encode()
    out = []
    for report in read_reports(report_dir):
        pid = report.get("pid")
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if tag in fh.read().split(b"\0"):
                    out.append(pid)
        except (OSError, TypeError):
            continue
    return out


def end_process_tree(proc: subprocess.Popen, report_dir: str, gently: bool = True) -> None:
    """SIGTERM to the command's process group, every descendant (some live in sessions of their
    own) and every process that reported, then SIGKILL to what is left; reaps the command.
    Not ``gently`` (a stopped run, whose reports are saved): SIGKILL at once, so that launchers
    such as torchrun do not print their own shutdown tracebacks."""
    others = sorted(set(descendants(proc.pid) + _located_processes(report_dir)) - {proc.pid})

    def finished() -> bool:
        return proc.poll() is not None and not _group_alive(proc.pid) and not any(_alive(p) for p in others)

    if finished():
        return
    if gently:
        _signal_all(proc.pid, others + ([proc.pid] if proc.poll() is None else []), signal.SIGTERM)
    deadline = time.monotonic() + (TERM_WAIT_S if gently else 0.0)
    while time.monotonic() < deadline:
        if finished():
            return
        time.sleep(POLL_S)
    leader = [proc.pid] if proc.poll() is None else []
    _signal_all(proc.pid, others + leader + descendants(proc.pid) + _located_processes(report_dir), signal.SIGKILL)
    proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except OSError:
        return False
    return True
