"""Compare the harness results of the original and the rewritten copy, case by case."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RTOL, ATOL = 1e-5, 1e-6


@dataclass
class Comparison:
    """``None`` for a check that could not be made (say why in ``note``)."""

    equal: bool | None
    text: str
    max_abs_diff: float | None = None


@dataclass
class CaseVerdict:
    name: str
    kind: str  # "harness" or "command"
    original: str  # "pass" or "fails: <first line>"
    rewritten: str
    outputs: Comparison = field(default_factory=lambda: Comparison(None, "-"))
    gradients: Comparison = field(default_factory=lambda: Comparison(None, "-"))
    grads_received: str = "-"  # "N/N" or "3/4 (missing: a.b)"
    second_iteration: str = "-"  # of the rewritten copy; the original's in parentheses
    locator: list[dict[str, Any]] = field(default_factory=list)
    proven: bool = False
    reason: str = ""  # why not proven

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "original": self.original,
            "rewritten": self.rewritten,
            "outputs": {
                "equal": self.outputs.equal,
                "text": self.outputs.text,
                "max_abs_diff": self.outputs.max_abs_diff,
            },
            "gradients": {
                "equal": self.gradients.equal,
                "text": self.gradients.text,
                "max_abs_diff": self.gradients.max_abs_diff,
            },
            "grads_received": self.grads_received,
            "second_iteration": self.second_iteration,
            "locator": self.locator,
            "proven": self.proven,
            "reason": self.reason,
        }


def _status(record: dict[str, Any]) -> str:
    if record["status"] == "ok":
        return "pass" if record.get("second") in ("ok", "") else f"fails 2nd iteration: {record['second']}"
    return f"fails at {record['stage']}: {record['error']}"


def compare_tensors(a: list, b: list, exact: bool) -> Comparison:
    import torch

    if len(a) != len(b):
        return Comparison(False, f"different number of tensors ({len(a)} vs {len(b)})")
    worst = 0.0
    identical = True
    for i, (x, y) in enumerate(zip(a, b)):
        if x.dtype != y.dtype or x.shape != y.shape:
            return Comparison(False, f"tensor {i}: {x.dtype}{tuple(x.shape)} vs {y.dtype}{tuple(y.shape)}")
        if torch.equal(x, y):
            continue
        identical = False
        if not (x.is_floating_point() or x.is_complex()):
            return Comparison(False, f"tensor {i}: integer values differ")
        diff = (x.double() - y.double()).abs()
        finite = torch.isfinite(diff)
        both_nan = torch.isnan(x) & torch.isnan(y)
        worst = max(worst, float(diff[finite].max()) if bool(finite.any()) else float("inf"))
        if not bool((finite | both_nan).all()):
            return Comparison(False, f"tensor {i}: non-finite values differ", float("inf"))
        if exact or not torch.allclose(x, y, rtol=RTOL, atol=ATOL, equal_nan=True):
            return Comparison(
                False,
                f"differ: max abs diff {worst:.3g}"
                + (" (bit-identical expected)" if exact else f" (rtol {RTOL:g}, atol {ATOL:g})"),
                worst,
            )
    if identical:
        return Comparison(True, "bit-identical", 0.0)
    return Comparison(True, f"allclose: max abs diff {worst:.3g} (rtol {RTOL:g}, atol {ATOL:g})", worst)


def compare_case(name: str, orig: dict[str, Any] | None, new: dict[str, Any] | None, exact: bool) -> CaseVerdict:
    if new is None:
        return CaseVerdict(
            name,
            "harness",
            _status(orig) if orig else "-",
            "missing",
            proven=False,
            reason="the case did not run on the rewritten copy",
        )
    verdict = CaseVerdict(name, "harness", _status(orig) if orig else "did not run", _status(new))
    verdict.locator = list(orig.get("locator", [])) if orig else []
    verdict.second_iteration = new.get("second") or "-"
    if orig is not None and orig.get("second") and orig["second"] != "ok":
        verdict.second_iteration += f" (original: {orig['second']})"
    if new["status"] == "ok" or new["grads"]:
        missing = new["missing_grads"] + new["nonfinite_grads"]
        got = new["params"] - len(missing)
        inherited = _missing_in_original(orig, missing)
        verdict.grads_received = f"{got}/{new['params']}"
        if missing:
            verdict.grads_received += f" (no finite gradient: {', '.join(missing)}"
            verdict.grads_received += "; the same in the original)" if inherited == set(missing) else ")"
    if orig is not None and orig["outputs"] and new["outputs"]:
        verdict.outputs = compare_tensors(orig["outputs"], new["outputs"], exact)
    elif orig is not None:
        verdict.outputs = Comparison(
            None, "original produced no output" if not orig["outputs"] else "rewritten produced no output"
        )
    if orig is not None and orig["grads"] and new["grads"]:
        names = sorted(set(orig["grads"]) | set(new["grads"]))
        a = [orig["grads"].get(n) for n in names]
        b = [new["grads"].get(n) for n in names]
        if any(t is None for t in a + b):
            only = [n for n in names if n not in orig["grads"] or n not in new["grads"]]
            verdict.gradients = Comparison(False, f"gradients for different parameters: {', '.join(only)}")
        else:
            verdict.gradients = compare_tensors(a, b, exact)
            if orig.get("grad_source") == "snapshot":
                verdict.gradients.text += " vs the original's forward with saved tensors snapshotted"
    elif orig is not None:
        verdict.gradients = Comparison(
            None, f"no reference gradient ({orig.get('grad_source') or 'the original failed first'})"
        )
    verdict.proven, verdict.reason = _proven(verdict, orig, new)
    return verdict


def _missing_in_original(orig: dict[str, Any] | None, names: list[str]) -> set[str]:
    """Which of ``names`` got no finite gradient in the original either (its own backward, or the
    snapshotted reference where that failed): a parameter the forward never uses is the
    repository's business, not the rewrite's."""
    if orig is None or not orig.get("grad_source"):
        return set()
    if orig["grad_source"] == "backward":
        return set(names) & set(orig["missing_grads"] + orig["nonfinite_grads"])
    if orig["grad_source"] == "snapshot":
        import torch

        return {n for n in names if n not in orig["grads"] or not bool(torch.isfinite(orig["grads"][n]).all())}
    return set()


def _proven(v: CaseVerdict, orig: dict[str, Any] | None, new: dict[str, Any]) -> tuple[bool, str]:
    if new["status"] != "ok":
        if (
            orig is not None
            and orig["status"] != "ok"
            and orig["stage"] == new["stage"]
            and orig["error"] == new["error"]
        ):
            return False, f"fails before and after the rewrite, for a reason unrelated to it: {new['error']}"
        return False, f"the rewritten copy fails at {new['stage']}: {new['error']}"
    if new.get("second") not in ("ok",):
        return False, f"the rewritten copy fails its 2nd iteration: {new['second']}"
    missing = new["missing_grads"] + new["nonfinite_grads"]
    if set(missing) - _missing_in_original(orig, missing):
        return (
            False,
            f"parameters without a finite gradient: {', '.join(sorted(set(missing) - _missing_in_original(orig, missing)))}",
        )
    if v.outputs.equal is False:
        return False, f"outputs changed: {v.outputs.text}"
    if v.gradients.equal is False:
        return False, f"gradients changed: {v.gradients.text}"
    if orig is None or not orig["outputs"]:
        return False, "the original produced no output to compare with"
    return True, ""
