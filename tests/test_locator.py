"""The in-place locator against real torch code, one small function per hazard class.

The cases live in a module written to a temporary directory (the ``roots``); each line the locator
must name carries a marker comment (``# W:case`` for the write, ``# S:case`` for the saving op),
so expected line numbers come from the source text. Every expectation is checked against plain
autograd: what the locator reports does break backward (or, through ``.data``, the gradient), and
what it does not report does not.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import re
import sys
import textwrap
import weakref
from pathlib import Path
from types import ModuleType

import pytest

torch = pytest.importorskip("torch")

from torch.autograd.graph import saved_tensors_hooks

from codemod.verify.locator import (
    AUTOGRAD_MESSAGE,
    InplaceLocator,
    LocatorFinding,
    locate,
)

CASES_SOURCE = textwrap.dedent(
    """
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    W = nn.Parameter(torch.randn(4, 4))
    CONV = nn.Conv1d(8, 8, 1)
    RELU_INPLACE = nn.ReLU(inplace=True)
    MASK = torch.ones(8, 8, dtype=torch.bool).triu(1)
    IDX = torch.tensor([0, 2])


    def var_normalization(x):
        means = x.mean(1, keepdim=True).detach()
        x = x - means
        stdev = torch.sqrt(torch.var(x, dim=1, keepdim=True, unbiased=False) + 1e-5)  # S:var_normalization
        x /= stdev  # W:var_normalization
        return x


    def relu_inplace_after_sigmoid(x):
        h = torch.sigmoid(x)  # S:relu_inplace_after_sigmoid
        h = RELU_INPLACE(h)  # W:relu_inplace_after_sigmoid
        return h


    def relu_inplace_after_conv(x):
        h = CONV(x)
        h = RELU_INPLACE(h)
        return h


    def masked_fill_softmax_output(x):
        att = torch.softmax(x @ x.transpose(-1, -2), -1)  # S:masked_fill_softmax_output
        att.masked_fill_(MASK, 0.0)  # W:masked_fill_softmax_output
        return att


    def index_write_softmax_output(x):
        att = torch.softmax(x, -1)  # S:index_write_softmax_output
        att[:, 0] = 0.0  # W:index_write_softmax_output
        return att


    def masked_fill_logits_before_softmax(x):
        scores = x @ x.transpose(-1, -2) / 2.0
        scores.masked_fill_(MASK, float("-inf"))
        return torch.softmax(scores, -1)


    def setitem_on_saved(x):
        h = x * 1
        s = torch.sin(h)  # S:setitem_on_saved
        h[:, IDX] = 0.0  # W:setitem_on_saved
        return s + h


    def write_through_view(x):
        y = torch.tanh(x)  # S:write_through_view
        v = y[:, :2]
        v += 1  # W:write_through_view
        return y


    def write_through_detach(x):
        y = torch.sigmoid(x)  # S:write_through_detach
        d = y.detach()
        d.zero_()  # W:write_through_detach
        return y


    def exp_output_mutated(x):
        y = torch.exp(x)  # S:exp_output_mutated
        y.add_(1.0)  # W:exp_output_mutated
        return y


    def tanh_output_mutated(x):
        y = torch.tanh(x)  # S:tanh_output_mutated
        y *= 2  # W:tanh_output_mutated
        return y


    def mul_after_matmul(x):
        z = x @ W  # S:mul_after_matmul
        x.mul_(2)  # W:mul_after_matmul
        return z


    def clamp_on_saved(x):
        y = torch.sigmoid(x)  # S:clamp_on_saved
        y.clamp_(0.2, 0.8)  # W:clamp_on_saved
        return y


    def zero_on_saved(x):
        h = x * 1
        p = h.pow(3)  # S:zero_on_saved
        h.zero_()  # W:zero_on_saved
        return p + h


    def copy_on_saved(x):
        y = torch.exp(x)  # S:copy_on_saved
        y.copy_(x)  # W:copy_on_saved
        return y


    def fill_on_saved(x):
        y = torch.sqrt(x * x + 1.0)  # S:fill_on_saved
        y.fill_(1.0)  # W:fill_on_saved
        return y


    def out_into_saved(x):
        y = torch.sigmoid(x)  # S:out_into_saved
        with torch.no_grad():
            torch.mul(x, 2.0, out=y)  # W:out_into_saved
        return y


    def foreach_on_saved(x):
        y = torch.exp(x)  # S:foreach_on_saved
        torch._foreach_mul_([y], 2.0)  # W:foreach_on_saved
        return y


    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            ctx.save_for_backward(t)
            return t * t

        @staticmethod
        def backward(ctx, grad):
            (t,) = ctx.saved_tensors
            return 2 * t * grad


    def custom_function_input_mutated(x):
        h = x * 1
        y = Square.apply(h)  # S:custom_function_input_mutated
        h.add_(1.0)  # W:custom_function_input_mutated
        return y


    def data_write_into_saved(x):
        y = torch.sigmoid(x)  # S:data_write_into_saved
        y.data.mul_(3.0)  # W:data_write_into_saved
        return y


    def write_not_into_saved(x):
        y = x + 1.0
        y.mul_(2.0)
        return torch.tanh(y)


    def saved_by_discarded_graph(x):
        h = x * 1
        torch.var(h, dim=1)  # the result is dropped: its node, and what it saved, is freed
        h /= 2.0
        return h


    def repeated_write(x):
        outs = []
        for i in range(3):
            y = torch.exp(x + i)  # S:repeated_write
            y.add_(1.0)  # W:repeated_write
            outs.append(y)
        return torch.stack(outs)
    """
)

# "raises": plain backward raises; "silent": it runs with a wrong gradient; "clean": it is right.
CASES = {
    "var_normalization": "raises",
    "relu_inplace_after_sigmoid": "raises",
    "relu_inplace_after_conv": "clean",
    "masked_fill_softmax_output": "raises",
    "index_write_softmax_output": "raises",
    "masked_fill_logits_before_softmax": "clean",
    "setitem_on_saved": "raises",
    "write_through_view": "raises",
    "write_through_detach": "raises",
    "exp_output_mutated": "raises",
    "tanh_output_mutated": "raises",
    "mul_after_matmul": "raises",
    "clamp_on_saved": "raises",
    "zero_on_saved": "raises",
    "copy_on_saved": "raises",
    "fill_on_saved": "raises",
    "out_into_saved": "raises",
    "foreach_on_saved": "raises",
    "custom_function_input_mutated": "raises",
    "data_write_into_saved": "silent",
    "write_not_into_saved": "clean",
    "saved_by_discarded_graph": "clean",
    "repeated_write": "raises",
}
REPORTED = [name for name, kind in CASES.items() if kind != "clean"]
CLEAN = [name for name, kind in CASES.items() if kind == "clean"]
# The graph node each case's saving op records (checked where the name is stable across versions).
SAVERS = {
    "var_normalization": "VarBackward0",
    "relu_inplace_after_sigmoid": "SigmoidBackward0",
    "masked_fill_softmax_output": "SoftmaxBackward0",
    "setitem_on_saved": "SinBackward0",
    "exp_output_mutated": "ExpBackward0",
    "tanh_output_mutated": "TanhBackward0",
    "zero_on_saved": "PowBackward0",
    "fill_on_saved": "SqrtBackward0",
    "custom_function_input_mutated": "SquareBackward",
}
WRITE_OPS = {
    "var_normalization": "div_.Tensor",
    "relu_inplace_after_sigmoid": "relu_.default",
    "masked_fill_softmax_output": "masked_fill_.Scalar",
    "setitem_on_saved": "index_put_.default",
    "clamp_on_saved": "clamp_.default",
    "zero_on_saved": "zero_.default",
    "copy_on_saved": "copy_.default",
    "fill_on_saved": "fill_.Scalar",
    "out_into_saved": "mul.out",
}


@pytest.fixture(scope="module")
def cases_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("locator_cases")
    (root / "cases_mod.py").write_text(CASES_SOURCE)
    return root


@pytest.fixture(scope="module")
def cases(cases_dir: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("locator_cases_mod", cases_dir / "cases_mod.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def marker_line(tag: str, name: str) -> int:
    """1-based line of the ``# {tag}:{name}`` marker in the written module."""
    lines = CASES_SOURCE.splitlines()
    hits = [i + 1 for i, text in enumerate(lines) if re.search(rf"# {tag}:{name}$", text)]
    assert len(hits) == 1, f"marker {tag}:{name} found {len(hits)} times"
    return hits[0]


def code_at(line: int) -> str:
    return CASES_SOURCE.splitlines()[line - 1].strip()


def trainable_input(device: str = "cpu") -> tuple[torch.nn.Linear, torch.Tensor]:
    """A trainable Linear in front (the TimesNet failure needs one) and its output: (2, 8, 4)."""
    gen = torch.Generator().manual_seed(1)
    lin = torch.nn.Linear(4, 4)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(4, 4, generator=gen) / 2)
        lin.bias.copy_(torch.randn(4, generator=gen) / 2)
    lin = lin.to(device)
    inp = torch.randn(2, 8, 4, generator=gen).to(device)
    return lin, lin(inp)


def plain_backward(fn, hooks=None) -> torch.Tensor:
    """The Linear's weight gradient of ``fn`` run without the locator (optionally under hooks)."""
    lin, x = trainable_input()
    if hooks is None:
        out = fn(x)
    else:
        with saved_tensors_hooks(*hooks):
            out = fn(x)
    out.pow(2).sum().backward()
    return lin.weight.grad


CLONE_AT_SAVE = (lambda t: t.clone(), lambda t: t)  # the gradient the code as written means


def only_finding(findings: list[LocatorFinding]) -> LocatorFinding:
    assert len(findings) == 1, [f.message() for f in findings]
    return findings[0]


@pytest.mark.parametrize("name", REPORTED)
def test_reported_write_names_both_source_lines(name: str, cases: ModuleType, cases_dir: Path) -> None:
    _, x = trainable_input()
    _, findings = locate(getattr(cases, name), x, roots=[cases_dir])
    finding = only_finding(findings)
    write, saved = marker_line("W", name), marker_line("S", name)
    assert (finding.write.path, finding.write.line, finding.write.code) == ("cases_mod.py", write, code_at(write))
    assert finding.saved_by is not None
    assert (finding.saved_by.path, finding.saved_by.line, finding.saved_by.code) == (
        "cases_mod.py",
        saved,
        code_at(saved),
    )
    assert finding.silent == (CASES[name] == "silent")
    if name in SAVERS:
        assert finding.saver == SAVERS[name]
    if name in WRITE_OPS:
        assert finding.op == WRITE_OPS[name]


@pytest.mark.parametrize("name", CLEAN)
def test_no_report_where_backward_is_fine(name: str, cases: ModuleType, cases_dir: Path) -> None:
    _, x = trainable_input()
    out, findings = locate(getattr(cases, name), x, roots=[cases_dir])
    assert findings == [], [f.message() for f in findings]
    assert out.requires_grad  # the forward did build a graph that could have been broken


@pytest.mark.parametrize("name", list(CASES))
def test_plain_autograd_agrees_with_the_locator(name: str, cases: ModuleType) -> None:
    fn = getattr(cases, name)
    kind = CASES[name]
    if kind == "raises":
        with pytest.raises(RuntimeError, match=AUTOGRAD_MESSAGE):
            plain_backward(fn)
        return
    wrong_or_right = plain_backward(fn)
    meant = plain_backward(fn, CLONE_AT_SAVE)
    if kind == "silent":
        assert not torch.allclose(wrong_or_right, meant)
    else:
        assert torch.equal(wrong_or_right, meant)


@pytest.mark.parametrize("name", list(CASES))
def test_the_locator_keeps_autograd_semantics(name: str, cases: ModuleType) -> None:
    """Backward of a forward run under the locator raises where plain autograd raises (its unpack
    hook re-checks versions) and otherwise gives plain autograd's gradient, wrong ones included."""
    fn = getattr(cases, name)
    lin, x = trainable_input()
    with InplaceLocator():
        out = fn(x)
    if CASES[name] == "raises":
        with pytest.raises(RuntimeError, match=AUTOGRAD_MESSAGE):
            out.pow(2).sum().backward()
    else:
        out.pow(2).sum().backward()
        assert torch.equal(lin.weight.grad, plain_backward(fn))


def test_no_findings_under_no_grad(cases: ModuleType, cases_dir: Path) -> None:
    with torch.no_grad():
        for name in REPORTED:
            _, x = trainable_input()
            _, findings = locate(getattr(cases, name), x, roots=[cases_dir])
            assert findings == [], (name, [f.message() for f in findings])


def test_unpack_raises_where_identity_hooks_are_silent(cases: ModuleType, cases_dir: Path) -> None:
    fn = cases.tanh_output_mutated
    # Control: identity hooks alone switch autograd's version check off; the gradient is wrong.
    silent = plain_backward(fn, (lambda t: t, lambda t: t))
    assert not torch.allclose(silent, plain_backward(fn, CLONE_AT_SAVE))
    # Under the locator's hooks the same backward raises autograd's error, with both lines.
    _, x = trainable_input()
    with InplaceLocator(roots=[cases_dir]):
        out = fn(x)
    with pytest.raises(RuntimeError, match=AUTOGRAD_MESSAGE) as err:
        out.pow(2).sum().backward()
    text = str(err.value)
    assert f"cases_mod.py:{marker_line('S', 'tanh_output_mutated')}" in text
    assert f"cases_mod.py:{marker_line('W', 'tanh_output_mutated')}" in text
    assert "expected version 0 instead" in text


def test_backward_inside_the_locator_and_repeated_steps(cases: ModuleType, cases_dir: Path) -> None:
    lin, _ = trainable_input()
    inp = torch.randn(2, 8, 4)
    with InplaceLocator(roots=[cases_dir]) as locator:
        for _ in range(3):
            cases.write_not_into_saved(lin(inp)).sum().backward()
        assert locator._index == {}  # every saved tensor released by backward left the index
        out = cases.exp_output_mutated(lin(inp))
        with pytest.raises(RuntimeError, match=AUTOGRAD_MESSAGE):
            out.sum().backward()
    assert len(locator.findings) == 1


def test_graph_and_outputs_are_freed(cases: ModuleType) -> None:
    """Output saves must not form a reference cycle (identity packing of an output would)."""
    _, x = trainable_input()
    with InplaceLocator() as locator:
        out = cases.tanh_output_mutated(torch.sigmoid(x))
        alive = weakref.ref(out)
        del out
    gc.collect()
    assert alive() is None
    assert locator._index == {}


def test_duplicate_hits_are_reported_once(cases: ModuleType, cases_dir: Path) -> None:
    _, x = trainable_input()
    with InplaceLocator(roots=[cases_dir]) as locator:
        cases.repeated_write(x)
        cases.repeated_write(x)
    assert len(locator.findings) == 1


def test_without_roots_paths_are_absolute(cases: ModuleType, cases_dir: Path) -> None:
    module_path = os.path.realpath(cases_dir / "cases_mod.py")
    for roots in ((), [cases_dir / "elsewhere"]):
        _, x = trainable_input()
        _, findings = locate(cases.var_normalization, x, roots=roots)
        finding = only_finding(findings)
        assert finding.write.path == module_path
        assert finding.write.line == marker_line("W", "var_normalization")
        assert finding.saved_by is not None and finding.saved_by.path == module_path


def test_message_and_json(cases: ModuleType, cases_dir: Path) -> None:
    _, x = trainable_input()
    _, findings = locate(cases.var_normalization, x, roots=[cases_dir])
    finding = only_finding(findings)
    write, saved = marker_line("W", "var_normalization"), marker_line("S", "var_normalization")
    message = finding.message()
    assert message.startswith(f"`{code_at(write)}` (cases_mod.py:{write}) overwrites a tensor saved by ")
    assert f"`torch.var(...)` (cases_mod.py:{saved}) for VarBackward0" in message
    data = finding.to_json()
    assert data["write"] == {"path": "cases_mod.py", "line": write, "code": code_at(write)}
    assert data["saved_by"]["line"] == saved
    assert (data["op"], data["saver"], data["silent"], data["message"]) == (
        "div_.Tensor",
        "VarBackward0",
        False,
        message,
    )

    _, x = trainable_input()
    _, findings = locate(cases.data_write_into_saved, x, roots=[cases_dir])
    assert "silently compute a wrong gradient" in only_finding(findings).message()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors(cases: ModuleType, cases_dir: Path) -> None:
    for name in ("var_normalization", "relu_inplace_after_conv", "data_write_into_saved"):
        cases.CONV.to("cuda")
        _, x = trainable_input("cuda")
        _, findings = locate(getattr(cases, name), x, roots=[cases_dir])
        assert len(findings) == (0 if CASES[name] == "clean" else 1), name
        if findings:
            assert findings[0].write.line == marker_line("W", name)
    cases.CONV.to("cpu")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
