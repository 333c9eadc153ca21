"""Every init-derived fixture: the rewrite, the findings, idempotence, and training as proof.

Fixture headers: ``# fixture: derived=a,b`` names the attributes that must follow their
Parameters after the rewrite; ``# fixture: expect=error`` (the original's second backward fails),
``expect=stale`` (the original trains but the derived value never changes), ``expect=works`` (the
original is fine), ``expect=none`` (nothing is run). ``smoke()`` returns ``(make_model, inputs)``.
"""

from __future__ import annotations

import copy
import pickle
import re

import pytest

from fixture_runner import (
    check_rewrite_and_findings,
    check_second_run_changes_nothing,
    import_source,
    load_fixtures,
    same_tensors,
)

FIXTURES = load_fixtures("init-derived")


def test_there_are_enough_fixtures():
    assert len(FIXTURES) >= 25, [f.id for f in FIXTURES]
    assert sum(f.expected is not None for f in FIXTURES) >= 10
    assert sum(f.expected is None for f in FIXTURES) >= 10


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.id for f in FIXTURES])
def test_rewrite_and_findings(fixture):
    check_rewrite_and_findings(fixture)


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.id for f in FIXTURES])
def test_second_run_changes_nothing(fixture):
    check_second_run_changes_nothing(fixture)


def _train(model, inputs, steps=2):
    """Two SGD steps; returns the error of the first failing backward, or None."""
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        out = model(*inputs)
        loss = sum(o.double().pow(2).sum() for o in (out if isinstance(out, tuple) else (out,)))
        try:
            loss.backward()
        except RuntimeError as exc:
            return str(exc).splitlines()[0]
        opt.step()
    return None


def _snapshot(model, names):
    return {n: getattr(model, n).detach().clone() for n in names}


RUNNABLE = [f for f in FIXTURES if f.expect != "none"]


@pytest.mark.parametrize("fixture", RUNNABLE, ids=[f.id for f in RUNNABLE])
def test_training_proves_it(fixture):
    torch = pytest.importorskip("torch")
    derived = (
        [n for n in re.findall(r"^# fixture: derived=(\S+)", fixture.source, flags=re.M)[0].split(",")]
        if "derived=" in fixture.source
        else []
    )
    original = import_source(fixture.source, fixture.name)
    torch.manual_seed(0)
    make, inputs = original.smoke()
    model = make()
    before = _snapshot(model, derived)
    first_out = model(*inputs)
    error = _train(model, inputs)
    if fixture.expect == "error":
        assert error is not None and "second time" in error, error
    elif fixture.expect == "stale":
        assert error is None, error
        after = _snapshot(model, derived)
        assert all(torch.equal(before[n], after[n]) for n in derived), "the derived value was expected to stay stale"
    else:
        assert error is None, error
    if fixture.expected is None:
        return
    rewritten = import_source(fixture.expected, fixture.name + "_rw")
    torch.manual_seed(0)
    make2, inputs2 = rewritten.smoke()
    fixed = make2()
    torch.manual_seed(0)
    reference = original.smoke()[0]()
    # Same first forward, same state_dict keys; an original checkpoint loads strictly.
    out2 = fixed(*inputs2)
    outs1 = first_out if isinstance(first_out, tuple) else (first_out,)
    outs2 = out2 if isinstance(out2, tuple) else (out2,)
    assert same_tensors(tuple(o.detach() for o in outs1), tuple(o.detach() for o in outs2))
    assert list(fixed.state_dict()) == list(reference.state_dict())
    fixed.load_state_dict(reference.state_dict(), strict=True)
    # Training works and the derived values follow their Parameters.
    start = _snapshot(fixed, derived)
    assert _train(fixed, inputs2) is None
    end = _snapshot(fixed, derived)
    assert all(not torch.equal(start[n], end[n]) for n in derived), "a derived value did not follow its Parameter"
    # deepcopy and pickle work, also after a forward.
    fixed(*inputs2)
    clone = copy.deepcopy(fixed)
    pickle.loads(pickle.dumps(fixed))
    assert all(torch.equal(getattr(clone, n), getattr(fixed, n)) for n in derived)
