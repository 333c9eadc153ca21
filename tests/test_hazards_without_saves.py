"""Hazards without a saved tensor (a leaf that requires grad, one of several views), a function
that builds its own tensors that require grad, and torch.linalg names: fixtures/hazards/, run
through ``codemod apply`` as a user runs it, and the code run before and after."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from codemod.cli import main
from fixture_runner import import_source

HAZARDS = Path(__file__).resolve().parent.parent / "fixtures" / "hazards"


def _apply(name: str, tmp_path: Path, capsys, monkeypatch) -> tuple[int, str, str, str]:
    shutil.copy(HAZARDS / name, tmp_path / name)
    before = (tmp_path / name).read_text()
    monkeypatch.chdir(tmp_path)
    code = main(["apply", "--no-progress", name])
    return code, capsys.readouterr().out, before, (tmp_path / name).read_text()


def test_leaf_written_in_place_is_reported_never_rebound(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    code, report, before, after = _apply("leaf_written.py", tmp_path, capsys, monkeypatch)
    assert code == 1 and after == before
    assert "leaf_written.py:8:5: IP204 `w.sin_()` overwrites `w`, a leaf tensor that requires grad" in report
    assert "leaf_written.py:7:9: a leaf that requires grad is created here" in report
    module = import_source(before, "leaf_written")
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        module.step(torch.ones(3))


def test_leaf_written_under_no_grad_is_left_alone(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    code, report, before, after = _apply("leaf_under_no_grad.py", tmp_path, capsys, monkeypatch)
    assert code == 0 and after == before and "IP" not in report
    _, w = import_source(before, "leaf_under_no_grad").step(torch.ones(3))
    assert torch.allclose(w, torch.full((3,), 0.9))


def test_one_of_several_views_is_rewritten_when_nothing_else_reads_them(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    code, report, before, after = _apply("chunk_view_rewritten.py", tmp_path, capsys, monkeypatch)
    assert code == 0 and "a = a.add(1)" in after
    assert "one of the views that `torch.chunk(x * w, 2)` returns (line 7)" in report
    x, w = torch.randn(4, 3), torch.randn(4, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match="is a view and is being modified inplace"):
        import_source(before, "chunk_before").head(x, w)
    rewritten = import_source(after, "chunk_after")
    out = rewritten.head(x, w)
    meant = rewritten.meant(x, w)
    assert torch.equal(out, meant)
    (g_out,) = torch.autograd.grad(out.sum(), w)
    (g_meant,) = torch.autograd.grad(meant.sum(), w)
    assert torch.equal(g_out, g_meant)


def test_one_of_several_views_is_reported_when_another_is_read(tmp_path, capsys, monkeypatch):
    code, report, before, after = _apply("chunk_view_reported.py", tmp_path, capsys, monkeypatch)
    assert code == 1 and after == before
    assert "chunk_view_reported.py:7:5: IP201" in report and "`b`, which is read again at line 8" in report


def test_function_building_its_own_grad_tensors_is_differentiable_code(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    code, report, before, after = _apply("own_tensors_step.py", tmp_path, capsys, monkeypatch)
    assert code == 0 and "y = y.mul(2)" in after and "own_tensors_step.py:10:5: IP102" in report
    with pytest.raises(RuntimeError, match="inplace operation"):
        import_source(before, "own_before").step()
    rewritten = import_source(after, "own_after")
    (y, g), (y_meant, g_meant) = rewritten.step(), rewritten.meant()
    assert torch.equal(y, y_meant) and torch.allclose(g, g_meant, rtol=1e-6, atol=1e-7)


def test_tensors_without_grad_build_no_graph(tmp_path, capsys, monkeypatch):
    code, report, before, after = _apply("own_tensors_no_grad.py", tmp_path, capsys, monkeypatch)
    assert code == 0 and after == before and "IP" not in report


def test_linalg_output_saved(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    code, report, before, after = _apply("linalg_output.py", tmp_path, capsys, monkeypatch)
    assert code == 0 and "n = n.add(1e-6)" in after and "`torch.linalg.vector_norm(...)` saved" in report
    x, w = torch.randn(5), torch.randn(5, requires_grad=True)
    with pytest.raises(RuntimeError, match="inplace operation"):
        import_source(before, "linalg_before").normalized(x, w).sum().backward()
    rewritten = import_source(after, "linalg_after")
    out, meant = rewritten.normalized(x, w), rewritten.meant(x, w)
    assert torch.equal(out, meant)
    (g_out,) = torch.autograd.grad(out.sum(), w)
    (g_meant,) = torch.autograd.grad(meant.sum(), w)
    assert torch.allclose(g_out, g_meant, rtol=1e-6, atol=1e-7)


def test_write_through_data_in_differentiable_code_is_reported(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    code, report, before, after = _apply("data_write.py", tmp_path, capsys, monkeypatch)
    assert code == 1 and after == before
    assert "data_write.py:15:9: IP205 `h.data.mul_(2)` overwrites `h`, through `.data` (line 15)" in report
    assert report.count("IP205") == 1  # not the clipping under no_grad
    model = import_source(before, "data_write").Scale()
    x = torch.ones(3, requires_grad=True)
    out = model(x)
    out.sum().backward()
    assert torch.equal(out.detach(), torch.full((3,), 4.0))
    assert torch.equal(x.grad, torch.full((3,), 2.0))  # what the report says: the write is not in the gradient
