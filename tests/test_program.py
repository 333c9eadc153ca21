"""Whole-program analysis: callee summaries across files (aliases, outputs saved by a callee's op).

Each fixture under fixtures/program/ is a small repository of several files; the tests run
``codemod apply`` on a copy the way a user does, and run the code before and after.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
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


def _reported_untouched(name: str, tmp_path: Path, capsys, monkeypatch) -> str:
    """Apply to fixture ``name``: findings reported, nothing rewritten; the report."""
    root = _copy(name, tmp_path)
    before = _snapshot(root)
    code, report = _apply(root, capsys, monkeypatch)
    assert code == 1 and _snapshot(root) == before
    return report


_RUNS = tempfile.TemporaryDirectory(prefix="program-")  # removed when the test process ends


def _untouched_silent(name: str, tmp_path: Path, capsys, monkeypatch) -> Path:
    """Apply to fixture ``name``: no finding, every file byte-identical; the copy."""
    root = _copy(name, tmp_path)
    before = _snapshot(root)
    code, report = _apply(root, capsys, monkeypatch)
    assert code == 0 and _snapshot(root) == before and "IP" not in report
    return root


def _summaries(lazy: bool = False, **files: str) -> Program:
    """A run of these files, summarized from their text at paths of a fresh directory that is
    removed before the program is asked anything: resolution and the rules read no file."""
    root = Path(tempfile.mkdtemp(dir=_RUNS.name))
    summaries = [summarize(str(root / name), name, text.encode(), lazy=lazy) for name, text in files.items()]
    shutil.rmtree(root)
    return Program(summaries)


def test_summaries_alias_and_saved_output():
    program = _summaries(
        **{
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
        }
    )
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
    program = _summaries(
        **{
            "a/helpers.py": "def keep(t):\n    return t\n",
            "b/helpers.py": "def keep(t):\n    return t * 2\n",
            "c/model.py": "from helpers import keep\n",
        }
    )
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
    report = _reported_untouched("alias_view", tmp_path, capsys, monkeypatch)
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
    assert (
        "gate/model.py:15:9: IP201" in report and "shares memory with `seen`, which is read again at line 16" in report
    )
    # Alone, the file cannot know what keep returns: it may return an alias (verify settles it).
    monkeypatch.chdir(root)
    assert main(["apply", "--check", "--no-progress", "gate/model.py"]) == 1
    alone = capsys.readouterr().out
    assert "gate/model.py:15:9: IP201" in alone and "IP102" not in alone
    assert (
        "`h` may share memory with `seen`, which is read again at line 16: `keep(h)` (line 14) may return its "
        "argument or a view of it (a call with no summary: outside the repository, or dynamic)"
    ) in alone


def test_call_sites_and_grad_mode():
    program = _summaries(
        **{
            "m/ops.py": "def a(x):\n    return x\n\ndef b(x):\n    return x\n\ndef c(x):\n    return x\n\ndef d(x):\n    return x\n",
            "m/use.py": (
                "import torch\nfrom .ops import a, b, c, d\n\n"
                "class T:\n    @torch.no_grad()\n    def step(self, x):\n        a(x)\n        self.helper(x)\n\n"
                "    def helper(self, x):\n        b(x)\n\n"
                "def run(x):\n    with torch.inference_mode():\n        c(x)\n        def later():\n            c(x)\n    return later\n\n"
                "def main(x):\n    with torch.no_grad(False):\n        d(x)\n"
            ),
        }
    )
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
        (grad,) = torch.autograd.grad(out.sum(), x)
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
    program = _summaries(
        **{
            "w.py": (
                "import torch\n\n"
                "def unpartition(windows, hw):\n    h, w = hw\n    x = windows.view(h, w, -1)\n    return x[:h, :w].contiguous()\n\n"
                "def gated(x, g):\n    y = x.view(-1)\n    return torch.exp(y) * g\n"
            )
        }
    )
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


# ---------------------------------------------------------------- caller contexts (capability 2)
def test_argument_uses_follow_each_callers_value():
    program = _summaries(
        **{
            "p/ops.py": "import torch\n\ndef norm(x, eps=1e-5):\n    x /= x.var() + eps\n    return x\n",
            "p/a.py": (
                "import torch\nfrom .ops import norm\n\n"
                "def fresh(a):\n    h = a @ a\n    y = norm(h)\n    return y\n\n"  # the result is what norm returns
                "def rebinds(a):\n    h = a + 1\n    h = norm(h)\n    return h + 1\n\n"
                "def reads(a):\n    h = a * 2\n    v = h.view(-1)\n    out = norm(h)\n    return out + v\n\n"  # v shares h's storage
                "def arms(a, c):\n    h = a * 2\n    if c:\n        return norm(h)\n    else:\n        return h\n\n"
                "def loop(a):\n    h = a * 2\n    for _ in range(3):\n        y = norm(h)\n    return y\n\n"
                "def saved(a):\n    h = torch.tanh(a)\n    return norm(h)\n\n"
                "def own_arg(a):\n    return norm(a)\n\n"
                # modeling_esmfold-like: the read after the call is past a ``return``; a name linked
                # only through an unknown call is not named as a read
                "def returns(a, mask):\n    h = a * 2\n    if mask is None:\n        y = norm(h)\n        return y\n"
                "    m = h.new_ones(3)\n    return m\n\n"
                "def through_call(a):\n    h = a * 2\n    m = h.new_ones(3)\n    y = norm(h)\n    return y + m\n"
            ),
        }
    )
    uses = {site.caller: use for _, site, use in program.argument_uses("p/ops.py", "norm", "x")}
    assert uses["fresh"].status == "fresh" and uses["rebinds"].status == "fresh" and uses["arms"].status == "fresh"
    assert (uses["reads"].status, uses["reads"].name, uses["reads"].line) == ("read", "v", 18)
    assert (uses["loop"].status, uses["loop"].line) == ("read", 30)  # the next iteration passes it again
    assert (uses["saved"].status, uses["saved"].op, uses["saved"].line) == ("saved", "torch.tanh", 34)
    assert (uses["own_arg"].status, uses["own_arg"].name) == ("unknown", "a")  # its caller may read it
    assert uses["returns"].status == "fresh"
    assert (uses["through_call"].status, uses["through_call"].name) == ("unknown", "m")
    assert program.argument_uses("p/ops.py", "norm", "eps") is None  # never passed: its default, shared by every call


def test_argument_uses_come_from_the_summaries_and_skip_callees_that_write_nothing():
    ops = "import torch\n\ndef norm(x):\n    x /= x.var()\n    return x\n"
    caller = "import torch\nfrom .ops import norm\n\ndef pure(t):\n    return t * 2\n\ndef f(a):\n    h = a * 2\n    y = norm(h)\n    z = pure(y)\n    return z + h\n"
    # lazy: a caller that never mentions torch is summarized from the text it kept
    program = _summaries(
        lazy=True, **{"p/ops.py": ops, "p/a.py": caller.replace("import torch\n", ""), "p/b.py": caller}
    )
    uses = program.argument_uses("p/ops.py", "norm", "x")
    assert [(d, site.line, use.status, use.name, use.line) for d, site, use in uses] == [
        ("p/a.py", 8, "read", "h", 10),
        ("p/b.py", 9, "read", "h", 11),
    ]
    b = program.files["p/b.py"]
    by_callee = {site.callee: site for site in b.call_sites}
    assert by_callee["norm"].uses and by_callee["pure"].uses == ()  # ``pure`` writes nothing: not followed
    # A file that may build an in-place module: any of its functions may write its argument.
    relu = _summaries(**{"p/b.py": caller + "\nact = torch.nn.ReLU(inplace=True)\n"})
    assert {site.callee: site for site in relu.files["p/b.py"].call_sites}["pure"].uses


def test_argument_uses_unknown_when_call_sites_may_be_incomplete():
    ops = "def norm(x):\n    x /= x.var()\n    return x\n"
    assert _summaries(**{"p/ops.py": ops}).argument_uses("p/ops.py", "norm", "x") is None  # no caller: public
    callback = _summaries(
        **{"p/ops.py": ops, "p/a.py": "from .ops import norm\n\ndef f(a):\n    return list(map(norm, [a * 2]))\n"}
    )
    assert callback.argument_uses("p/ops.py", "norm", "x") is None  # passed as a value: calls unseen
    other = _summaries(
        **{
            "p/ops.py": ops,
            "p/a.py": "from .ops import norm\n\ndef f(a, m):\n    norm(a * 2)\n    return m.norm(a * 2)\n",
        }
    )
    assert other.argument_uses("p/ops.py", "norm", "x") is None  # ``m.norm``: maybe this function
    star = _summaries(**{"p/ops.py": ops, "p/a.py": "from .ops import norm\n\ndef f(*a):\n    return norm(*a)\n"})
    assert star.argument_uses("p/ops.py", "norm", "x") is None


def _run_net(root: Path, x):
    model = _import_model(root)
    net = model.Net()
    out = net(x)
    return model, net, out


def test_write_into_an_argument_no_caller_reads_again_is_rewritten(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    root = _copy("caller_fresh", tmp_path)
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    _, _, out = _run_net(root, x)
    with pytest.raises(RuntimeError, match="inplace operation"):
        out.sum().backward()
    # Alone, the callee cannot know its callers: today's report.
    monkeypatch.chdir(root)
    assert main(["apply", "--check", "--no-progress", "pkg/ops.py"]) == 1
    assert "IP202" in capsys.readouterr().out
    code, report = _apply(root, capsys, monkeypatch)
    assert code == 0 and "pkg/ops.py:7:5: IP101" in report
    assert "x = x / s" in (root / "pkg" / "ops.py").read_text()
    assert (root / "pkg" / "model.py").read_bytes() == (
        FIXTURES / "program" / "caller_fresh" / "pkg" / "model.py"
    ).read_bytes()
    model, net, out2 = _run_net(root, x)
    assert torch.equal(out, out2)  # bit-identical outputs
    out2.sum().backward()
    proj = net.proj.detach().clone().requires_grad_(True)
    w = net.w.detach().clone().requires_grad_(True)
    model.meant(x, proj, w).sum().backward()
    assert torch.equal(net.proj.grad, proj.grad) and torch.equal(net.w.grad, w.grad)  # the gradients meant
    train = importlib.import_module("pkg.train")
    train.step(net, x).backward()  # the other caller, in another file, runs backward too
    before = _snapshot(root)
    assert _apply(root, capsys, monkeypatch)[0] == 0 and _snapshot(root) == before  # a fixpoint


def test_caller_that_reads_its_tensor_again_is_named(tmp_path, capsys, monkeypatch):
    report = _reported_untouched("caller_reads", tmp_path, capsys, monkeypatch)
    assert "pkg/ops.py:7:5: IP202" in report and "`x.var(...)` saved for backward (line 6)" in report
    # model.py reads h after the call; train.py's read is in the other arm of the ``if``.
    assert "the caller at pkg/model.py:15 reads `h` again at line 16" in report and "train.py" not in report


def test_caller_that_passes_a_saved_tensor_is_reported_with_both_lines(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    root = _copy("caller_saved", tmp_path)
    _, _, out = _run_net(root, torch.randn(3, 8))
    with pytest.raises(RuntimeError, match="inplace operation"):
        out.sum().backward()  # the hazard: sigmoid's saved output, written by shift_ in another file
    before = _snapshot(root)
    code, report = _apply(root, capsys, monkeypatch)
    assert code == 1 and _snapshot(root) == before
    assert report.count("IP202") == 1 and "pkg/ops.py:6:5: IP202 `x.add_(1)`" in report
    assert (
        "the call at pkg/model.py:13 passes `gate`, which `torch.sigmoid` saved for backward as its output (pkg/model.py:12)"
        in report
    )
    assert "eval.py" not in report  # ``x * 0.5``: nothing saved it


# ---------------------------------------------------------------- module attributes (capability 1)
def test_output_layers_through_constructor_arguments_factories_and_sequential():
    blocks = (
        "import torch\nfrom torch import nn\n\n"
        "class Gate(nn.Module):\n    def __init__(self, dim, act=nn.Tanh):\n        super().__init__()\n        self.act = act()\n"
        "        self.seq = nn.Sequential(nn.Linear(dim, dim), nn.Sigmoid())\n        self.made = make(dim)\n\n"
        "def make(dim):\n    return nn.Sequential(nn.Conv2d(dim, dim, 1), nn.ReLU())\n"
    )
    program = _summaries(
        **{
            "p/blocks.py": blocks,
            "p/model.py": "from torch import nn\nfrom .blocks import Gate\n\ndef build():\n    return Gate(4), Gate(4, nn.SiLU), Gate(4, act=nn.ReLU)\n",
        }
    )
    assert program.output_layers("p/blocks.py", "Gate", "act") == {
        ("torch.nn.Tanh", False): ["the default, p/model.py:5"],
        ("torch.nn.SiLU", False): ["p/model.py:5"],
        ("torch.nn.ReLU", False): ["p/model.py:5"],
    }
    assert program.output_layers("p/blocks.py", "Gate", "seq") == {
        ("torch.nn.Sigmoid", False): ["built by Gate.__init__"]
    }
    assert program.output_layers("p/blocks.py", "Gate", "made") == {
        ("torch.nn.ReLU", False): ["returned by p/blocks.py:11"]
    }
    # A construction whose activation is not a name of torch.nn; a class kept in a registry.
    unknown = _summaries(
        **{"p/blocks.py": blocks, "p/model.py": "from .blocks import Gate\n\ndef build(a):\n    return Gate(4, a)\n"}
    )
    assert unknown.output_layers("p/blocks.py", "Gate", "act") is None
    registry = _summaries(
        **{
            "p/blocks.py": blocks,
            "p/model.py": "from .blocks import Gate\nBLOCKS = {'gate': Gate}\n\ndef build():\n    return Gate(4)\n",
        }
    )
    assert registry.output_layers("p/blocks.py", "Gate", "act") is None
    assert registry.output_layers("p/blocks.py", "Gate", "seq") is not None  # not chosen by a constructor argument


def _fixed_as_meant(root: Path, x, capsys, monkeypatch) -> str:
    """``pkg.model.Net()(x)`` fails at backward; ``codemod apply`` rewrites it (exit 0), after which
    the outputs are bit-identical and the gradients are those of ``pkg.model.meant``: the report."""
    import torch

    def run():
        torch.manual_seed(0)
        model = _import_model(root)
        net = model.Net()
        return model, net, net(x)

    _, _, out = run()
    with pytest.raises(RuntimeError, match="inplace operation"):
        out.sum().backward()
    code, report = _apply(root, capsys, monkeypatch)
    assert code == 0
    model, net, out2 = run()
    assert torch.equal(out, out2)  # bit-identical outputs
    out2.sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    model.meant(net, x).sum().backward()
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, net.parameters()))  # the gradients meant
    return report


def test_activation_chosen_by_callers_and_factory_layers_are_rewritten_and_run(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    report = _fixed_as_meant(_copy("layers_resolved", tmp_path), x, capsys, monkeypatch)
    assert (
        "pkg/blocks.py:15:9: IP102" in report
        and "`nn.Sigmoid (pkg/model.py:13) or nn.Tanh (the default, pkg/model.py:12)`" in report
    )
    assert "pkg/model.py:17:9: IP101" in report and "`nn.ReLU (returned by pkg/blocks.py:19)`" in report
    assert "pkg/model.py:19:9: IP103" in report


def test_layers_that_save_no_output_are_left_alone(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    root = _untouched_silent("layers_harmless", tmp_path, capsys, monkeypatch)
    _import_model(root).Net()(torch.randn(2, 3, 4, 4)).sum().backward()  # correct code: backward runs


def test_module_list_elements_resolve_by_index_and_by_loop():
    blocks = (
        "import torch\nfrom torch import nn\n\n"
        "class Block(nn.Module):\n    def forward(self, x):\n        return torch.sigmoid(x)\n\n"
        "class Gated(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.act = nn.Tanh()\n\n"
        "    def forward(self, x):\n        return self.act(x)\n\n"
        "class Plain(nn.Module):\n    def forward(self, x):\n        return x * 2\n"
    )
    model = (
        "from torch import nn\nfrom .blocks import Block, Gated, Plain\n\n"
        "class Net(nn.Module):\n    def __init__(self, n):\n        super().__init__()\n"
        "        self.same = nn.ModuleList([Block() for _ in range(n)])\n"
        "        self.mixed = nn.ModuleList([Gated(), nn.ReLU(), Plain()])\n"
        "        self.grown = nn.ModuleList([nn.Sigmoid()])\n        self.grown.append(Plain())\n"
    )
    program = _summaries(**{"p/blocks.py": blocks, "p/model.py": model})
    same = {("torch.sigmoid", False): ["returned by Block.forward, p/blocks.py:5"]}
    assert program.output_layers("p/model.py", "Net", "same", "any") == same
    assert program.output_layers("p/model.py", "Net", "same", -1) == same  # a comprehension: every element alike
    assert program.output_layers("p/model.py", "Net", "same") is None  # the list itself is not called
    assert program.output_layers("p/model.py", "Net", "mixed", 0) == {
        ("torch.nn.Tanh", False): ["returned by Gated.forward, p/blocks.py:13"]
    }
    assert program.output_layers("p/model.py", "Net", "mixed", 1) == {
        ("torch.nn.ReLU", False): ["built by Net.__init__"]
    }
    assert program.output_layers("p/model.py", "Net", "mixed", -1) is None  # Plain returns a product
    assert program.output_layers("p/model.py", "Net", "mixed", "any") is None  # the elements disagree
    assert program.output_layers("p/model.py", "Net", "mixed", 3) is None  # out of range
    assert program.output_layers("p/model.py", "Net", "grown", 0) is None  # appended to after it is built


def test_module_list_outputs_are_rewritten_and_run(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    report = _fixed_as_meant(_copy("modulelist_resolved", tmp_path), x, capsys, monkeypatch)
    assert report.count(": IP10") == 3
    assert (
        "pkg/model.py:18:9: IP102 `h.mul_(2)` overwrites `h`, which `block(...)` = `torch.sigmoid (returned by "
        "Block.forward, pkg/blocks.py:12)` saved for backward as its output (line 17)"
    ) in report
    assert (
        "pkg/model.py:20:9: IP101 `y += 1` overwrites `y`, which `self.heads[-1](...)` = `nn.Sigmoid (built by Net.__init__)`"
        in report
    )
    assert (
        "pkg/model.py:24:13: IP102 `z.sub_(0.5)` overwrites `z`, which `head(...)` = `nn.Sigmoid (built by Net.__init__) "
        "or nn.Tanh (returned by Gated.forward, pkg/blocks.py:24)`"
    ) in report


def test_module_lists_whose_elements_save_nothing_or_disagree_are_left_alone(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    root = _untouched_silent("modulelist_harmless", tmp_path, capsys, monkeypatch)
    _import_model(root).Net()(torch.randn(3, 8)).sum().backward()  # correct code: backward runs


# ---------------------------------------------------------------- ``m.inplace = True`` (capability 3)
def _train(root: Path, name: str, torch):
    for module in [m for m in sys.modules if m == "pkg" or m.startswith("pkg.")]:
        del sys.modules[module]
    sys.path.insert(0, str(root))
    try:
        return getattr(importlib.import_module("pkg.train"), name)(torch.randn(3, 8))
    finally:
        sys.path.remove(str(root))


def test_inplace_switched_on_after_construction_is_reported_at_the_switch(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    root = _copy("switch_hazard", tmp_path)
    with pytest.raises(RuntimeError, match="inplace operation"):
        _train(root, "step", torch)
    report = _reported_untouched("switch_hazard", tmp_path / "again", capsys, monkeypatch)
    assert report.count("IP105") == 1  # Head's ReLU; Stem's follows a linear layer
    assert (
        "pkg/model.py:34:21: IP105 `m.inplace = True` turns `act` (`nn.ReLU`, line 19) in place after construction: "
        "`self.act(gate)` (line 23) then overwrites `gate`, which `torch.sigmoid(...)` saved for backward as its output (line 22)"
    ) in report


def test_inplace_switch_on_other_types_is_left_alone(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    root = _untouched_silent("switch_harmless", tmp_path, capsys, monkeypatch)
    _train(root, "step", torch)  # correct code: backward runs


def test_inplace_switched_by_a_helper_of_another_file_or_over_a_local_is_reported(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    root = _copy("switch_helper", tmp_path)
    for name in ("step", "step_local"):
        with pytest.raises(RuntimeError, match="inplace operation"):
            _train(root, name, torch)
    report = _reported_untouched("switch_helper", tmp_path / "again", capsys, monkeypatch)
    assert report.count("IP105") == 2  # Head's ReLU, once per switch; Stem's follows a linear layer
    tail = (
        "turns `Head.act` (`nn.ReLU`, pkg/model.py:19) in place after construction: `self.act(gate)` (pkg/model.py:23) "
        "then overwrites `gate`, which `torch.sigmoid` saved for backward as its output (pkg/model.py:22)"
    )
    assert (
        f"pkg/utils.py:8:13: IP105 `m.inplace = True` over the modules of `Net` (passed at pkg/train.py:9) {tail}"
        in report
    )
    assert (
        f"pkg/train.py:19:13: IP105 `m.inplace = True` over the modules of `Net` (built in step_local()) {tail}"
        in report
    )


def test_inplace_switched_by_a_helper_over_harmless_modules_is_left_alone(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    root = _untouched_silent("switch_helper_harmless", tmp_path, capsys, monkeypatch)
    _train(root, "step", torch)  # correct code: backward runs


def test_who_runs_a_function_without_grad_does_not_depend_on_what_was_asked_before():
    # ``plain.py`` has no torch: a placeholder, summarized only when a query reaches it. Its call
    # of ``f`` must count the same (not at all) whether or not an earlier query loaded it; workers
    # ask in the order their files come, so an answer that depended on it would vary run to run.
    files = {
        "m/ops.py": "def f(x):\n    return x * 2\n",
        "m/grad.py": "import torch\nfrom m.ops import f\n\ndef g(t):\n    with torch.no_grad():\n        return f(t)\n",
        "m/plain.py": "from m.ops import f\n\ndef h(y):\n    return f(y)\n",
    }
    fresh = _summaries(lazy=True, **files)
    asked = _summaries(lazy=True, **files)
    asked.argument_uses("m/ops.py", "f", "x")  # summarizes the placeholders that mention ``f``
    assert asked.files["m/plain.py"].calls  # it did load ``plain.py``
    assert fresh.only_called_without_grad("m/ops.py", "f") == asked.only_called_without_grad("m/ops.py", "f")
    assert fresh.only_called_without_grad("m/ops.py", "f") == "m/ops.py:1"
