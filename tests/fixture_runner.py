"""Load codemod fixtures and run their smoke functions (shared by the fixture tests).

A fixture is ``fixtures/codemods/<family>/<name>.py``, a small runnable program, plus:

* ``<name>.expected.py``: the rewritten file (absent: the codemod must leave it byte-identical);
* ``<name>.findings``: one ``line:col CODE`` per expected finding (absent: none expected).

Header comments configure it:

* ``# fixture: mode=all`` runs the codemod in ``all`` mode (default ``hazards``);
* ``# fixture: expect=hazard`` the original's backward fails ("modified by an inplace operation"),
  the rewritten one passes; ``expect=works`` both pass; ``expect=fails`` the original fails and
  the file is only reported; ``expect=none`` nothing is executed (no smoke function).

``smoke()`` returns ``(run, leaves)``: ``run()`` computes the outputs (a tensor or a tuple of
tensors) and ``leaves`` are the tensors whose gradients are compared.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "codemods"


@dataclass
class Fixture:
    family: str
    name: str
    path: Path
    source: str
    expected: str | None
    findings: list[tuple[int, int, str]]
    mode: str
    expect: str

    @property
    def id(self) -> str:
        return f"{self.family}/{self.name}"


def load_fixtures(family: str | None = None) -> list[Fixture]:
    out = []
    for path in sorted(FIXTURES.glob("*/*.py")):
        if path.name.endswith(".expected.py"):
            continue
        fam = path.parent.name
        if family is not None and fam != family:
            continue
        source = path.read_text(encoding="utf-8")
        expected_path = path.with_name(path.stem + ".expected.py")
        findings_path = path.with_name(path.stem + ".findings")
        findings = []
        if findings_path.exists():
            for line in findings_path.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                m = re.fullmatch(r"(\d+):(\d+)\s+([A-Z]+\d+)", line)
                if not m:
                    raise ValueError(f"{findings_path}: bad line {line!r} (want 'line:col CODE')")
                findings.append((int(m.group(1)), int(m.group(2)), m.group(3)))
        header = dict(re.findall(r"^# fixture: (\w+)=(\S+)", source, flags=re.M))
        out.append(
            Fixture(
                fam,
                path.stem,
                path,
                source,
                expected_path.read_text(encoding="utf-8") if expected_path.exists() else None,
                findings,
                header.get("mode", "hazards"),
                header.get("expect", "works"),
            )
        )
    return out


_DIRECTORY: Path | None = None


def _import_directory() -> Path:
    """One temporary directory per test process for imported sources, removed at exit (the
    files stay while the process runs: tracebacks and ``inspect`` read them)."""
    global _DIRECTORY
    if _DIRECTORY is None:
        import atexit
        import shutil
        import tempfile

        _DIRECTORY = Path(tempfile.mkdtemp(prefix="codemod-fixtures-"))
        atexit.register(shutil.rmtree, _DIRECTORY, True)
    return _DIRECTORY


def import_source(source: str, name: str):
    """Import ``source`` as a fresh module (a file in a temporary directory)."""
    directory = _import_directory()
    module_name = f"_fixture_{name}_{uuid.uuid4().hex[:8]}"
    file = directory / f"{module_name}.py"
    file.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(module_name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Run:
    outputs: tuple | None  # forward outputs (detached), or None if forward raised
    forward_error: str | None
    backward_error: str | None
    grads: list | None


def run_smoke(module, clone_saved: bool = False) -> Run:
    """Seeded forward and backward of the module's ``smoke()``.

    With ``clone_saved`` every tensor autograd saves is cloned when saved, so later in-place
    writes cannot touch it: backward then computes the gradient the program meant, which is the
    reference the rewritten program's gradient must equal.
    """
    import torch
    from torch.autograd.graph import saved_tensors_hooks

    torch.manual_seed(0)
    run, leaves = module.smoke()
    try:
        if clone_saved:
            with saved_tensors_hooks(lambda t: t.clone(), lambda t: t):
                out = run()
        else:
            out = run()
    except RuntimeError as exc:
        return Run(None, str(exc).splitlines()[0], None, None)
    outs = out if isinstance(out, tuple) else (out,)
    detached = tuple(o.detach().clone() if isinstance(o, torch.Tensor) else o for o in outs)
    loss = sum(o.double().pow(2).sum() for o in outs if isinstance(o, torch.Tensor) and o.requires_grad)
    if not isinstance(loss, torch.Tensor):
        return Run(detached, None, "no output requires grad", None)
    try:
        loss.backward()
    except RuntimeError as exc:
        return Run(detached, None, str(exc).splitlines()[0], None)
    grads = [None if leaf.grad is None else leaf.grad.clone() for leaf in leaves]
    return Run(detached, None, None, grads)


def same_tensors(a, b, close: bool = False) -> bool:
    """Equal sequences: tensors with the same dtype and shape and equal values (bit-identical, or
    ``allclose`` at rtol 1e-6, atol 1e-7 with ``close``), other items equal (``None`` included)."""
    import torch

    if a is None or b is None:
        return a is b
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, torch.Tensor) != isinstance(y, torch.Tensor):
            return False
        if not isinstance(x, torch.Tensor):
            if x != y:
                return False
        elif x.dtype != y.dtype or x.shape != y.shape:
            return False
        elif not (torch.allclose(x, y, rtol=1e-6, atol=1e-7) if close else torch.equal(x, y)):
            return False
    return True


def apply_codemod(fixture: Fixture, source: str | None = None):
    """Run the fixture's rule family on ``source`` (default: the fixture itself), in memory."""
    from codemod.engine import FileTask, Selection, analyse_bytes

    task = FileTask("fixture.py", "fixture.py", Selection.build([fixture.family]).codes, fixture.mode)
    return analyse_bytes((fixture.source if source is None else source).encode("utf-8"), task)


def check_rewrite_and_findings(fixture: Fixture) -> None:
    """The rewrite is the recorded one (or nothing changes) and the findings are the recorded ones."""
    result = apply_codemod(fixture)
    assert result.skipped is None, result.skipped
    if fixture.expected is None:
        assert result.new_source is None, "expected no change, got:\n" + (result.new_source or "")
    else:
        assert result.new_source == fixture.expected
    got = sorted((r.location.line, r.location.column, r.code) for r in result.results if not r.suppressed)
    assert got == sorted(fixture.findings), "\n".join(
        f"{r.location.line}:{r.location.column} {r.code} {r.message}" for r in result.results
    )


def check_second_run_changes_nothing(fixture: Fixture) -> None:
    once = apply_codemod(fixture)
    text = once.new_source if once.new_source is not None else fixture.source
    twice = apply_codemod(fixture, text)
    assert twice.new_source is None, twice.new_source
