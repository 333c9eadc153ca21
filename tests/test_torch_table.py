"""The saved-tensor table: generated from the installed torch, and true at run time."""

from __future__ import annotations

import pytest

from codemod.analysis import generate_table, torch_api

torch = pytest.importorskip("torch")
pytest.importorskip("torchgen")


def test_generator_reproduces_the_committed_table():
    committed = generate_table.TABLE_PATH.read_text(encoding="utf-8")
    regenerated = generate_table.dump(generate_table.build_table())
    assert regenerated == committed, "run: python -m codemod.analysis.generate_table"


def test_check_mode_exit_code(tmp_path):
    stale = tmp_path / "table.json"
    stale.write_text("{}\n", encoding="utf-8")
    assert generate_table.main(["--check", "--output", str(stale)]) == 1
    assert generate_table.main(["--check"]) == 0


def _leaf(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) + 0.5).requires_grad_()


# (description, function of (a, b) returning the output, table lookup: spec, positional count)
# a and b are non-leaf tensors that require grad; every case checks both "mutate a input after the
# op" and "mutate the output after the op" against what the table predicts.
CASES = [
    ("a * b", lambda a, b: a * b, ("mul", 2)),
    ("a / b", lambda a, b: a / b, ("div", 2)),
    ("a + b", lambda a, b: a + b, ("add", 2)),
    ("a @ b", lambda a, b: a @ b, ("matmul", 2)),
    ("a.pow(2)", lambda a, b: a.pow(2), ("pow", 2)),
    ("a.var(1)", lambda a, b: a.var(1), ("var", 2)),
    ("a.mean(1)", lambda a, b: a.mean(1), ("mean", 2)),
    ("a.sum(1)", lambda a, b: a.sum(1), ("sum", 2)),
    ("a.sigmoid()", lambda a, b: a.sigmoid(), ("sigmoid", 1)),
    ("a.tanh()", lambda a, b: a.tanh(), ("tanh", 1)),
    ("a.exp()", lambda a, b: a.exp(), ("exp", 1)),
    ("a.sqrt()", lambda a, b: a.sqrt(), ("sqrt", 1)),
    ("a.relu()", lambda a, b: a.relu(), ("relu", 1)),
    ("a.log()", lambda a, b: a.log(), ("log", 1)),
    ("a.sin()", lambda a, b: a.sin(), ("sin", 1)),
    ("a.abs()", lambda a, b: a.abs(), ("abs", 1)),
    ("a.clamp(0.6, 1)", lambda a, b: a.clamp(0.6, 1.0), ("clamp", 3)),
    ("a.std(1)", lambda a, b: a.std(1), ("std", 2)),
    ("a.max()", lambda a, b: a.max(), ("max", 1)),
    ("a.max(1).values", lambda a, b: a.max(1)[0], ("max", 2)),
    ("a.amax(1)", lambda a, b: a.amax(1), ("amax", 2)),
    ("a.softmax(-1)", lambda a, b: torch.softmax(a, -1), ("softmax", 2)),
    ("a.log_softmax(-1)", lambda a, b: torch.log_softmax(a, -1), ("log_softmax", 2)),
    ("a.cumsum(1)", lambda a, b: a.cumsum(1), ("cumsum", 2)),
    ("a.t()", lambda a, b: a.t() * 1, ("t", 1)),
    ("a.rsqrt()", lambda a, b: a.rsqrt(), ("rsqrt", 1)),
    ("a.reciprocal()", lambda a, b: a.reciprocal(), ("reciprocal", 1)),
]


def _predicted(spec_name: str, n_positional: int):
    """What the table predicts when the first argument (and, for binary ops, the second) is a
    tensor that requires grad, and the other arguments are Python numbers."""
    spec = torch_api.method_spec(spec_name)
    assert spec is not None, spec_name
    tensors = {0, 1} if spec_name in ("mul", "div", "add", "matmul") else {0}
    every = [frozenset({i}) for i in range(n_positional)]
    saved, out = spec.saves(every, {}, lambda item: next(iter(item)) in tensors)
    saved_positions = {next(iter(item)) for item in saved}
    return saved_positions, out


def _backward_fails(build, mutate) -> bool:
    a0, b0 = _leaf(4, 4, seed=1), _leaf(4, 4, seed=2)
    a, b = a0 * 1, b0 * 1
    out = build(a, b)
    mutate(a, b, out)
    try:
        out.sum().backward()
    except RuntimeError as exc:
        assert "inplace" in str(exc)
        return True
    return False


@pytest.mark.parametrize("desc,build,lookup", CASES, ids=[c[0] for c in CASES])
def test_table_matches_runtime(desc, build, lookup):
    name, n = lookup
    saved_positions, out_saved = _predicted(name, n)
    # Mutating the first input after the op fails iff the table says it is saved.
    assert _backward_fails(build, lambda a, b, out: a.add_(1)) == (0 in saved_positions), desc
    if n >= 2 and name in ("mul", "div", "matmul", "add"):
        assert _backward_fails(build, lambda a, b, out: b.add_(1)) == (1 in saved_positions), desc
    # Mutating the output fails iff the table says the output is saved.
    assert _backward_fails(build, lambda a, b, out: out.add_(1)) == out_saved, desc


def test_unknown_operands_do_not_count_as_requiring_grad():
    # x * scale: x is saved only if scale requires grad; a Python number never does.
    spec = torch_api.method_spec("mul")
    saved, _ = spec.saves(["x", "two"], {}, lambda item: item == "x")
    assert saved == ["two"]
    saved, _ = spec.saves(["x", "w"], {}, lambda item: True)
    assert set(saved) == {"x", "w"}


def test_overloads_are_told_apart():
    # torch.max(x) saves x and its output; torch.max(x, dim) saves neither (only sizes/indices).
    spec = torch_api.method_spec("max")
    assert spec.saves(["x"], {}, lambda item: True) == (["x"], True)
    assert spec.saves(["x", "d"], {}, lambda item: True) == ([], False)
    assert spec.saves(["x"], {"dim": "d"}, lambda item: True) == ([], False)


def test_module_specs_match_torch_signatures():
    import inspect

    for name, index in torch_api.inplace_activation_modules().items():
        params = [p for p in inspect.signature(getattr(torch.nn, name).__init__).parameters if p != "self"]
        assert params.index("inplace") == index, name
    import torch.nn.functional as F

    for name, index in torch_api.FUNCTIONAL_INPLACE_ARG.items():
        params = list(inspect.signature(getattr(F, name)).parameters)
        assert params.index("inplace") == index, name


def test_inplace_twins_exist_on_tensor():
    for inplace, twin in torch_api.inplace_methods().items():
        assert hasattr(torch.Tensor, inplace) and hasattr(torch.Tensor, twin)
