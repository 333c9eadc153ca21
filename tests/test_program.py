"""Whole-program analysis: callee summaries across files (aliases, outputs saved by a callee's op).

Each fixture under fixtures/program/ is a small repository of several files; the tests run
``codemod apply`` on a copy the way a user does, and run the code before and after.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import pytest

from codemod.cli import main
from codemod.program import Program, summarize

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _copy(name: str, tmp_path: Path, group: str = "program") -> Path:
    dest = tmp_path / name
    shutil.copytree(FIXTURES / group / name, dest)
    return dest


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.py"))}


def _apply(root: Path, capsys, monkeypatch, *args: str) -> tuple[int, str]:
    monkeypatch.chdir(root)
    code = main(["apply", "--no-progress", *args, "."])
    return code, capsys.readouterr().out


def _import_model(root: Path):
    for name in [m for m in sys.modules if m == "pkg" or m.startswith("pkg.")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        importlib.invalidate_caches()
        return importlib.import_module("pkg.model")
    finally:
        sys.path.remove(str(root))


def _summaries(**files: str) -> Program:
    return Program(summarize(f"/r/{name}", name, text.encode()) for name, text in files.items())


def test_summaries_alias_and_saved_output():
    program = _summaries(**{
        "pkg/__init__.py": "from .util import keep as kept\n",
        "pkg/util.py": (
            "import torch\nimport torch.nn.functional as F\n\n"
            "def keep(t):\n    return t\n\n"
            "def view(t, n):\n    v = t\n    v = v.reshape(n, -1)\n    return v[0]\n\n"
            "def new(t):\n    return t * 2 + torch.ones(1)\n\n"
            "def act(x, *, slope=0.1):\n    return torch.tanh(x * slope)\n\n"
            "def sometimes(x):\n    if x.sum() > 0:\n        return torch.sigmoid(x)\n    return x * 2\n"
        ),
        "pkg/model.py": "from . import util\nfrom .util import keep\nfrom pkg import kept\nimport pkg.util\n",
    })
    keep = program.callee("pkg/model.py", "keep")
    assert keep is not None and keep.aliases == {"t"} and keep.where == "pkg/util.py:4"
    assert program.callee("pkg/model.py", "kept") == keep  # re-exported by the package
    assert program.callee("pkg/model.py", "pkg.util.keep") == keep  # absolute, dotted
    assert "t" in program.callee("pkg/model.py", "util.view").aliases  # a view of a view (``n`` too: over-approximated)
    assert program.callee("pkg/model.py", "util.new").aliases == frozenset()
    act = program.callee("pkg/model.py", "util.act")
    assert act.saved_output == "torch.tanh" and act.kwonly == {"slope"}
    assert program.callee("pkg/model.py", "util.sometimes").saved_output is None  # not on every path
    assert program.callee("pkg/model.py", "util.missing") is None
    assert program.callee("pkg/model.py", "torch.sigmoid") is None


def test_ambiguous_absolute_import_resolves_to_nothing():
    program = _summaries(**{
        "a/helpers.py": "def keep(t):\n    return t\n",
        "b/helpers.py": "def keep(t):\n    return t * 2\n",
        "c/model.py": "from helpers import keep\n",
    })
    assert program.callee("c/model.py", "keep") is None


def test_output_saved_by_a_callee_in_another_file_is_rewritten_and_runs(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    root = _copy("saved_output", tmp_path)
    torch.manual_seed(0)
    x = torch.randn(3, 8)
    original = _import_model(root)
    net = original.Net()
    out = net(x)
    with pytest.raises(RuntimeError, match="inplace operation"):
        out.sum().backward()

    code, report = _apply(root, capsys, monkeypatch)
    assert code == 0  # everything found was rewritten
    assert "`torch.sigmoid(...)` (pkg/blocks.py:5) of `gate(...)`" in report
    assert "`torch.nn.functional.relu(...)` (pkg/blocks.py:9) of `blocks.act(...)`" in report
    text = (root / "pkg" / "model.py").read_text()
    assert "h = h.mul(2)" in text and "g = g.add(1)" in text

    rewritten = _import_model(root)
    net2 = rewritten.Net()
    out2 = net2(x)
    assert torch.equal(out, out2)  # bit-identical outputs
    out2.sum().backward()
    w = net2.w.detach().clone().requires_grad_(True)
    rewritten.meant(x, w).sum().backward()
    assert torch.equal(net2.w.grad, w.grad)  # the gradient the code meant
    before = _snapshot(root)
    assert _apply(root, capsys, monkeypatch)[0] == 0  # a fixpoint
    assert _snapshot(root) == before


def test_view_returned_by_a_helper_in_another_file_blocks_the_rewrite(tmp_path, capsys, monkeypatch):
    root = _copy("alias_view", tmp_path)
    before = _snapshot(root)
    code, report = _apply(root, capsys, monkeypatch)
    assert code == 1 and _snapshot(root) == before
    assert "pkg/model.py:15:9: IP201" in report and "shares memory with `v`, which is read again at line 16" in report


def test_fresh_result_of_a_helper_in_another_file_is_left_alone(tmp_path, capsys, monkeypatch):
    root = _copy("fresh_result", tmp_path)
    before = _snapshot(root)
    code, report = _apply(root, capsys, monkeypatch)
    assert code == 0 and _snapshot(root) == before and "IP" not in report


def test_alias_returned_by_another_file_is_not_rewritten(tmp_path, capsys, monkeypatch):
    """fixtures/repos/output_change: ``seen = keep(h)`` where ``keep`` (gate/util.py) returns its
    argument. Without callee summaries plain ``apply`` rewrote ``h.mul_(2)`` and the outputs changed."""
    root = _copy("output_change", tmp_path, "repos")
    before = _snapshot(root)
    code, report = _apply(root, capsys, monkeypatch)
    assert code == 1 and _snapshot(root) == before
    assert "gate/model.py:15:9: IP201" in report and "shares memory with `seen`, which is read again at line 16" in report
    # Alone, the file cannot know what keep returns: the rewrite is proposed (verify settles it).
    monkeypatch.chdir(root)
    assert main(["apply", "--check", "--no-progress", "gate/model.py"]) == 1
    assert "IP102" in capsys.readouterr().out


def test_call_sites_and_grad_mode():
    program = _summaries(**{
        "m/ops.py": "def a(x):\n    return x\n\ndef b(x):\n    return x\n\ndef c(x):\n    return x\n\ndef d(x):\n    return x\n",
        "m/use.py": (
            "import torch\nfrom .ops import a, b, c, d\n\n"
            "class T:\n    @torch.no_grad()\n    def step(self, x):\n        a(x)\n        self.helper(x)\n\n"
            "    def helper(self, x):\n        b(x)\n\n"
            "def run(x):\n    with torch.inference_mode():\n        c(x)\n        def later():\n            c(x)\n    return later\n\n"
            "def main(x):\n    with torch.no_grad(False):\n        d(x)\n"
        ),
    })
    assert program.only_called_without_grad("m/ops.py", "a") == "m/ops.py:1"
    assert program.only_called_without_grad("m/use.py", "T.helper")  # only from a no_grad method
    assert program.only_called_without_grad("m/ops.py", "b")  # from there, transitively
    assert program.only_called_without_grad("m/ops.py", "c") is None  # a nested function runs later, with grad
    assert program.only_called_without_grad("m/ops.py", "d") is None  # no_grad(False)
    assert program.only_called_without_grad("m/use.py", "run") is None  # no caller: public


def test_function_only_called_under_no_grad_in_other_files_is_not_rewritten(tmp_path, capsys, monkeypatch):
    root = _copy("no_grad_callers", tmp_path)
    before = _snapshot(root)
    code, report = _apply(root, capsys, monkeypatch)
    assert code == 0 and _snapshot(root) == before and "IP" not in report
    # Alone, ops.py looks like differentiable code (a public function given tensors).
    monkeypatch.chdir(root)
    assert main(["apply", "--check", "--no-progress", "pkg/ops.py"]) == 1
    assert "IP102" in capsys.readouterr().out


def test_one_caller_with_grad_keeps_the_rewrite(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    root = _copy("grad_caller", tmp_path)
    x = torch.randn(4, requires_grad=True)

    def run():
        for name in [m for m in sys.modules if m == "pkg" or m.startswith("pkg.")]:
            del sys.modules[name]
        sys.path.insert(0, str(root))
        try:
            train = importlib.import_module("pkg.train")
        finally:
            sys.path.remove(str(root))
        out = train.evaluate(torch.nn.Identity(), x, torch.zeros(4))
        grad, = torch.autograd.grad(out.sum(), x)
        return out, grad

    with pytest.raises(RuntimeError, match="inplace operation"):
        run()
    code, report = _apply(root, capsys, monkeypatch)
    assert code == 0 and "pkg/ops.py:7:5: IP102" in report
    out, grad = run()
    avg = torch.zeros(4)
    avg.mul_(0.9).add_(torch.exp(x.detach()) * 0.5)  # the first, no_grad call
    assert torch.equal(out.detach(), avg * 0.9 + torch.exp(x.detach()) * 0.5)
    assert torch.allclose(grad, torch.exp(x.detach()) * 0.5)


def test_summary_saves_and_aliases_are_about_storage():
    program = _summaries(**{"w.py": (
        "import torch\n\n"
        "def unpartition(windows, hw):\n    h, w = hw\n    x = windows.view(h, w, -1)\n    return x[:h, :w].contiguous()\n\n"
        "def gated(x, g):\n    y = x.view(-1)\n    return torch.exp(y) * g\n"
    )})
    un = program.callee("w.py", "unpartition")
    assert un.aliases == {"windows"}  # not ``hw``: a slice's bounds share no storage
    assert un.saves == frozenset()  # views only: nothing is saved
    gated = program.callee("w.py", "gated")
    assert gated.saves == {"x", "g"} and gated.aliases == frozenset()


def test_fresh_view_returned_from_another_file_is_not_a_saved_tensor(tmp_path, capsys, monkeypatch):
    """Shaped after detectron2's MViT (``x = window_unpartition(x, ...); x += ori_q``): the result
    is a view of a tensor the helper only reshapes, which nothing saved. Correct code: untouched."""
    root = _copy("unpartition", tmp_path)
    before = _snapshot(root)
    code, report = _apply(root, capsys, monkeypatch)
    assert code == 0 and _snapshot(root) == before and "IP" not in report
