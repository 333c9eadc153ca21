"""The built-in smoke harness: runs in a sandboxed child, on one copy of the repository.

    python -m codemod.verify.harness --root COPY (--report-fd FD | --out RESULT.pt)
                                     [--cases SPEC | --discover FILE ...]
                                     [--device cpu|cuda|auto] [--seed 0] [--locate]

For each smoke case, seeded: build the module, make the inputs, forward, loss, backward, record the
outputs and every parameter's gradient, one optimizer step, then forward and backward again (the
second iteration is where ``__init__``-derived tensors fail). Where the first backward fails, the
reference gradient is recomputed with saved tensors snapshotted at save time (pack hooks that
clone), which is the gradient the code as written means; a correct rewrite must reproduce it.
With ``--locate`` one extra forward runs under the in-place locator first.

The result (``torch.save``, plain dicts, tensors and strings; loaded with ``weights_only=True``) is
compared with the other copy's in the parent (:mod:`.compare`). Under ``codemod verify`` it goes
through the result channel (:mod:`.channel`): ``--report-fd`` names the pipe, and the first line
of stdin is the nonce, read before anything of the repository is imported. ``--out`` writes a
file instead (for running the harness by hand).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import traceback
from pathlib import Path
from typing import Any


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _seed(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy

        numpy.random.seed(seed)
    except ImportError:
        pass


def _to_device(value: Any, device: str) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_to_device(v, device) for v in value)
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


def _tensors(value: Any) -> list:
    """Every tensor in an output, in a stable order (tuples, lists, dicts, dataclass-likes)."""
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for k in value for t in _tensors(value[k])]
    if hasattr(value, "__dataclass_fields__"):
        return [t for k in value.__dataclass_fields__ for t in _tensors(getattr(value, k))]
    return []


def _call(module: Any, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return module(**inputs)
    if isinstance(inputs, tuple):
        return module(*inputs)
    return module(inputs)


def _loss(case, output: Any):
    if case.loss is not None:
        return case.loss(output)
    floats = [t for t in _tensors(output) if t.is_floating_point() and t.requires_grad]
    if not floats:
        raise RuntimeError("the output has no floating-point tensor that requires grad (give the case a loss)")
    return sum(t.float().pow(2).mean() for t in floats)


class _Snapshot:
    """Saved tensors cloned when saved: backward then uses the values the forward saw."""

    def __enter__(self):
        from torch.autograd.graph import saved_tensors_hooks

        self._hooks = saved_tensors_hooks(lambda t: t.clone(), lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        return self._hooks.__exit__(*exc)


def _build(case, device: str, seed: int):
    """The module and its inputs, each from its own seed: every build of a case is the same."""
    import torch

    _seed(seed)
    module = case.module()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"the module factory returned {type(module).__name__}, not an nn.Module")
    module = module.to(device)
    module.train()
    _seed(seed + 1)
    try:
        inputs = _to_device(case.inputs(), device)
    except Exception as exc:
        raise RuntimeError(f"the inputs factory raised {_first_line(exc)}") from exc
    return module, inputs


def run_case(case, device: str, seed: int, root: Path, locate: bool) -> dict[str, Any]:
    import torch

    record: dict[str, Any] = {
        "status": "ok",
        "stage": "",
        "error": "",
        "outputs": [],
        "grads": {},
        "grad_source": "",
        "missing_grads": [],
        "nonfinite_grads": [],
        "params": 0,
        "second": "",
        "locator": [],
        "locator_error": "",
    }
    stage = "build"
    try:
        if locate:
            record["locator"], record["locator_error"] = _locate(case, device, seed, root)
        module, inputs = _build(case, device, seed)
        params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        record["params"] = len(params)
        stage = "forward"
        output = _call(module, inputs)
        record["outputs"] = [t.detach().cpu().clone() for t in _tensors(output)]
        stage = "loss"
        loss = _loss(case, output)
        stage = "backward"
        try:
            loss.backward()
            record["grad_source"] = "backward"
        except RuntimeError:
            record["status"], record["stage"], record["error"] = "error", stage, _first_line(sys.exc_info()[1])
            _reference_grads(case, device, seed, record)
            return record
        record["grads"] = _grads(params, record)
        stage = "step"
        optimizer = torch.optim.SGD([p for _, p in params], lr=1e-2)
        optimizer.step()
        optimizer.zero_grad()
        stage = "second"
        try:
            _loss(case, _call(module, inputs)).backward()
            record["second"] = "ok"
        except Exception as exc:
            record["second"] = _first_line(exc)
    except Exception as exc:
        record["status"], record["stage"], record["error"] = "error", stage, _first_line(exc)
        if stage == "build":
            record["trace"] = traceback.format_exc(limit=-3)
    return record


def _grads(params, record) -> dict[str, Any]:
    import torch

    grads = {}
    for name, p in params:
        if p.grad is None:
            record["missing_grads"].append(name)
            continue
        if not bool(torch.isfinite(p.grad).all()):
            record["nonfinite_grads"].append(name)
        grads[name] = p.grad.detach().cpu().clone()
    return grads


def _reference_grads(case, device: str, seed: int, record: dict[str, Any]) -> None:
    """The original's backward failed: recompute the gradient its forward means."""
    try:
        module, inputs = _build(case, device, seed)
        params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        with _Snapshot():
            loss = _loss(case, _call(module, inputs))
        loss.backward()
        scratch = {"missing_grads": [], "nonfinite_grads": []}
        record["grads"] = _grads(params, scratch)
        record["grad_source"] = "snapshot"
    except Exception as exc:
        record["grad_source"] = f"unavailable ({_first_line(exc)})"


def _locate(case, device: str, seed: int, root: Path) -> tuple[list[dict[str, Any]], str]:
    from .locator import InplaceLocator

    try:
        module, inputs = _build(case, device, seed)
        locator = InplaceLocator(roots=[root])
        with locator:
            _call(module, inputs)
        return [f.to_json() for f in locator.findings], ""
    except Exception as exc:
        return [], _first_line(exc)


class _LineTracker:
    """Which of the given lines (``relative/path.py:LINE``) ran: a rewrite no smoke case executes
    is not proven by them. A tracer only for frames of the files named, so the rest runs at full
    speed."""

    def __init__(self, root: Path, targets: list[str]):
        self.hit: set[tuple[str, int]] = set()
        self._lines: dict[str, set[int]] = {}
        for item in targets:
            path, _, line = item.rpartition(":")
            self._lines.setdefault(path, set()).add(int(line))
        self._root = root
        self._files: dict[str, str | None] = {}

    def _relative(self, filename: str) -> str | None:
        rel = self._files.get(filename, "")
        if rel == "":
            try:
                rel = Path(filename).resolve().relative_to(self._root).as_posix()
            except (ValueError, OSError):
                rel = None
            self._files[filename] = rel
        return rel

    def _global(self, frame, event, arg):
        rel = self._relative(frame.f_code.co_filename)
        if rel is None or rel not in self._lines:
            return None
        lines, hit = self._lines[rel], self.hit

        def local(frame, event, arg):
            if event == "line" and frame.f_lineno in lines:
                hit.add((rel, frame.f_lineno))
            return local

        return local(frame, event, arg) if event == "line" else local

    def __enter__(self):
        if self._lines:
            self._previous = sys.gettrace()
            sys.settrace(self._global)
        return self

    def __exit__(self, *exc):
        if self._lines:
            sys.settrace(self._previous)
        return False


def _device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("device 'cuda' was asked for, but torch sees no CUDA device here")
    return requested


def _open_channel(fd: int) -> tuple[int, str]:
    """Take the nonce off stdin and keep the channel away from everything the repository starts:
    close-on-exec, and this process non-dumpable (its /proc/PID/fd and memory are then closed to
    other processes of the same uid)."""
    nonce = sys.stdin.readline().strip()
    os.set_inheritable(fd, False)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except (OSError, AttributeError):
        pass
    return fd, nonce


def _send(fd: int, nonce: str, payload: bytes) -> None:
    from .channel import frame

    data = memoryview(frame(nonce, payload))
    while data:
        data = data[os.write(fd, data) :]
    os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codemod.verify.harness")
    parser.add_argument("--root", required=True)
    parser.add_argument("--out")
    parser.add_argument("--report-fd", type=int)
    parser.add_argument("--site", action="append", default=[], help="site directory to add (after the channel is open)")
    parser.add_argument("--cases")
    parser.add_argument("--discover", nargs="*", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--locate", action="store_true")
    parser.add_argument("--track", nargs="*", metavar="PATH:LINE", help="report which of these lines ran")
    args = parser.parse_args(argv)
    if (args.out is None) == (args.report_fd is None):
        parser.error("give exactly one of --out and --report-fd")
    channel = _open_channel(args.report_fd) if args.report_fd is not None else None

    import site

    import torch

    from . import channel as _channel, compare as _compare, locator as _locator  # noqa: F401 - imported before any site
    from .cases import CaseError, discover_cases, load_cases

    for directory in args.site:  # the requirements' environment: cannot shadow what is imported already
        site.addsitedir(directory)

    root = Path(args.root).resolve()
    sys.path.insert(0, str(root))
    result: dict[str, Any] = {"device": "", "torch": str(torch.__version__), "error": "", "notes": [], "cases": {}}
    try:
        result["device"] = _device(args.device)
        if args.cases:
            cases = load_cases(args.cases, root)
        else:
            _seed(args.seed)
            cases, result["notes"] = discover_cases([root / f for f in args.discover or []], root)
        for case in cases:
            with _LineTracker(root, args.track or []) as tracker:
                record = run_case(case, result["device"], args.seed, root, args.locate)
            record["executed"] = sorted(tracker.hit)
            result["cases"][case.name] = record
    except (CaseError, SystemExit) as exc:
        result["error"] = str(exc)
    except Exception as exc:
        result["error"] = f"the harness failed: {_first_line(exc)}"
    if channel is None:
        torch.save(result, args.out)
        return 0
    buffer = io.BytesIO()
    torch.save(result, buffer)
    _send(*channel, buffer.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
