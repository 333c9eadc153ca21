"""The in-place locator for a whole process, and its report file.

Started by :mod:`codemod.locate.hook` right after the program imported torch, in that thread:

* an :class:`~codemod.verify.locator.InplaceLocator` entered for the rest of the process (its
  saved-tensor hooks and dispatch mode are thread-local: other threads are not watched);
* a ``TorchFunctionMode`` that notes the errors autograd raises at the write itself, before any
  saved tensor is involved (in-place on a leaf that requires grad, on one of several views from
  ``chunk``/``split``, on a view made under ``no_grad``), with the user's line; the error still
  reaches the program;
* ``torch.autograd._engine_run_backward`` wrapped (``.backward()`` and ``autograd.grad`` both call
  it): once a backward has finished (or raised) and something was located, the process is stopped
  unless the run goes on ``until exit``;
* DataLoader workers switch all of it off: forked children at once (``os.register_at_fork``),
  spawned ones when they enter the worker loop; a process only ever writes its own report.

The report (``<dir>/<pid>.json``, replaced atomically) is written when a new pair of lines is
located, after the first backward, when the process is stopped, and at exit;
the parent (:mod:`codemod.locate.run`) reads them while the command runs. A stopped process saves
its report, then waits to be killed by the parent (which first lets the other ranks finish their
own backward); it exits by itself after a minute if nobody does.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from ..verify.locator import InplaceLocator, LocatorFinding, SourceLine
from . import ENV_DIR, ENV_ROOTS, ENV_UNTIL

STOPPED_EXIT = 86  # only if the parent never kills a stopped process
STOP_WAIT_S = 60.0

# What autograd says when it refuses an in-place write (torch 2.1-2.13), and what we call it.
WRITE_ERRORS = (
    ("leaf-view", "a view of a leaf Variable that requires grad is being used in an in-place operation"),
    ("leaf", "a leaf Variable that requires grad is being used in an in-place operation"),
    ("multi-view", "This view is the output of a function that returns multiple views"),
    ("no-grad-view", "A view was created in no_grad mode and is being modified inplace with grad mode enabled"),
)


def write_error_kind(message: str) -> str | None:
    for kind, text in WRITE_ERRORS:
        if text in message:
            return kind
    return None


def finding_record(finding: LocatorFinding, count: int) -> dict[str, Any]:
    """A saved tensor overwritten in place, as the report files hold it."""
    return {
        "kind": "silent" if finding.silent else "saved-overwrite",
        "op": finding.op,
        "write": finding.write.to_json(),
        "saved_by": finding.saved_by.to_json() if finding.saved_by is not None else None,
        "saver": finding.saver,
        "saver_op": finding.saver_op,
        "shape": list(finding.shape) if finding.shape is not None else None,
        "dtype": finding.dtype,
        "count": count,
        "message": finding.message(),
    }


class _WriteErrors(TorchFunctionMode):
    """Sees each torch call of the program (not the calls torch makes inside it) and notes the
    in-place errors autograd raises there; costs a ``try`` when nothing is raised."""

    def __init__(self, on_error: Callable[[RuntimeError, Any, tuple], None]):
        super().__init__()
        self._on_error = on_error

    def __torch_function__(self, func, types, args=(), kwargs=None):
        try:
            return func(*args, **(kwargs or {}))
        except RuntimeError as exc:
            try:
                self._on_error(exc, func, args)
            except Exception:  # the locator's own failure never replaces the program's error
                pass
            raise


class ProcessRecorder:
    def __init__(self, out_dir: str, roots: list[str], until: str = "backward"):
        self.pid = os.getpid()
        self.path = os.path.join(out_dir, f"{self.pid}.json")
        self.until = until
        self.locator = InplaceLocator(roots)
        self.locator.on_new_finding = self._on_new_finding
        self.write_errors: dict[tuple, dict[str, Any]] = {}
        self.backwards = 0
        self.status = "running"
        self.stop_reason: str | None = None
        self.problems: list[str] = []
        self._errors_mode: _WriteErrors | None = None
        self._active = False
        self._depth = 0  # backward inside backward (reentrant checkpointing): only the outermost counts
        self._lock = threading.Lock()

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self.locator.__enter__()
        self._errors_mode = _WriteErrors(self._on_write_error)
        self._errors_mode.__enter__()
        self._active = True
        atexit.register(self._at_exit)  # no report before there is something to say (a worker may never start)

    def detach(self) -> None:
        """Stop watching (a DataLoader worker, a forked child): modes off, no report from here."""
        self._active = False
        self.locator.on_new_finding = None
        try:
            if self._errors_mode is not None:
                self._errors_mode.__exit__(None, None, None)
            self.locator.__exit__(None, None, None)
        except Exception:  # the program pushed modes of its own on top: leave the stack alone
            pass

    def withdraw(self) -> None:
        """This process turned out to be a DataLoader worker: stop watching and take back its report."""
        mine = self._mine()
        self.detach()
        if mine:
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def _mine(self) -> bool:
        return self._active and os.getpid() == self.pid

    def _at_exit(self) -> None:
        if self._mine() and self.status == "running":
            self.status = "exited"
            self.flush()

    # -- events ----------------------------------------------------------------------------------

    def _on_new_finding(self, finding: LocatorFinding) -> None:
        if self._mine():
            self.flush()

    def _on_write_error(self, exc: RuntimeError, func: Any, args: tuple) -> None:
        if not self._mine() or getattr(exc, "_codemod_located", False):
            return
        kind = write_error_kind(str(exc))
        if kind is None:
            return
        try:
            exc._codemod_located = True  # type: ignore[attr-defined]
        except AttributeError:
            pass
        where = self.locator.user_line(sys._getframe(2))
        key = (kind, where)
        record = self.write_errors.get(key)
        if record is None:
            tensor = args[0] if args and isinstance(args[0], torch.Tensor) else None
            write = where or SourceLine("<unknown>", 0, "")
            record = self.write_errors[key] = {
                "kind": kind,
                "op": getattr(func, "__name__", str(func)),
                "write": write.to_json(),
                "saved_by": None,
                "saver": None,
                "saver_op": None,
                "shape": list(tensor.shape) if tensor is not None else None,
                "dtype": str(tensor.dtype).removeprefix("torch.") if tensor is not None else None,
                "count": 0,
                "message": f"`{write.code or record_op(func)}` ({write.path}:{write.line}): {str(exc).splitlines()[0]}",
            }
        record["count"] += 1
        if self.until == "backward":
            self.stop(f"at the first in-place error ({kind})")
        else:
            self.flush()

    def around_backward(self, run: Callable[[], Any]) -> Any:
        self._depth += 1
        try:
            result = run()
        except BaseException as exc:
            self._depth -= 1
            if self._depth == 0 and self._mine():
                self._after_backward(exc)
            raise
        self._depth -= 1
        if self._depth == 0 and self._mine():
            self._after_backward(None)
        return result

    def _after_backward(self, failed: BaseException | None) -> None:
        try:
            self._check_after_backward(failed)
        except Exception as exc:  # never break the program's backward: stop watching, say why
            self.problems.append(f"the locator failed after a backward: {type(exc).__name__}: {exc}")
            self.flush()
            self.detach()

    def _check_after_backward(self, failed: BaseException | None) -> None:
        self.backwards += 1
        located = bool(self.write_errors) or bool(self.locator.findings)
        if located and self.until == "backward":
            self.stop(
                "after the first backward that followed a located write" if failed is None else "at the backward error"
            )
        elif self.backwards == 1:
            self.flush()

    def stop(self, reason: str) -> None:
        self.status = "stopped"
        self.stop_reason = reason
        self.flush()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        deadline = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < deadline:  # the parent kills the whole run
            time.sleep(0.05)
        os._exit(STOPPED_EXIT)

    # -- the report ------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        hazards = [finding_record(f, n) for f, n in self.locator.counted_findings()]
        hazards += list(self.write_errors.values())
        rank = os.environ.get("RANK")
        return {
            "pid": self.pid,
            "ppid": os.getppid(),
            "rank": int(rank) if rank and rank.isdigit() else None,
            "argv": list(sys.argv),
            "status": self.status,
            "stop_reason": self.stop_reason,
            "backwards": self.backwards,
            "device": "cuda" if torch.cuda.is_initialized() else "cpu",
            "hazards": hazards,
            "problems": self.problems,
        }

    def flush(self) -> None:
        with self._lock:
            try:
                data = json.dumps(self.report())
                tmp = f"{self.path}.{threading.get_ident()}.tmp"
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.write(data)
                os.replace(tmp, self.path)
            except Exception as exc:  # a report that cannot be written must not break the program
                self.problems.append(f"cannot write the report: {exc}")


def record_op(func: Any) -> str:
    return getattr(func, "__name__", str(func))


# ------------------------------------------------------------------------------- process wiring

_RECORDER: ProcessRecorder | None = None


def _detach_in_child() -> None:
    if _RECORDER is not None:
        _RECORDER.detach()


def _patch_backward(recorder: ProcessRecorder) -> None:
    import torch.autograd as autograd

    original = autograd._engine_run_backward

    def _engine_run_backward(*args, **kwargs):
        return recorder.around_backward(lambda: original(*args, **kwargs))

    autograd._engine_run_backward = _engine_run_backward


def _patch_worker_loop() -> None:
    """Spawned DataLoader workers import torch (and start a recorder) before their loop runs."""
    from torch.utils.data._utils import worker

    original = worker._worker_loop

    def _worker_loop(*args, **kwargs):
        if _RECORDER is not None:
            _RECORDER.withdraw()
        return original(*args, **kwargs)

    _worker_loop.__module__, _worker_loop.__qualname__ = original.__module__, original.__qualname__
    worker._worker_loop = _worker_loop


def start_from_environment() -> ProcessRecorder | None:
    """Start recording this process if `codemod locate` asked for it (called once torch is imported)."""
    global _RECORDER
    out_dir = os.environ.get(ENV_DIR)
    if _RECORDER is not None or not out_dir or not os.path.isdir(out_dir):
        return _RECORDER
    roots = [r for r in os.environ.get(ENV_ROOTS, "").split(os.pathsep) if r]
    until = os.environ.get(ENV_UNTIL, "backward")
    recorder = ProcessRecorder(out_dir, roots, until)
    try:
        _patch_backward(recorder)
        _patch_worker_loop()
        os.register_at_fork(after_in_child=_detach_in_child)
        recorder.start()
    except Exception as exc:
        recorder.problems.append(f"the locator could not start: {type(exc).__name__}: {exc}")
        recorder.flush()
        return None
    _RECORDER = recorder
    return recorder
