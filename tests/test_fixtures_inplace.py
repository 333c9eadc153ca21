"""Every in-place fixture: the rewrite, the findings, idempotence, and running code as proof."""

from __future__ import annotations

import pytest

from fixture_runner import (
    check_rewrite_and_findings,
    check_second_run_changes_nothing,
    import_source,
    load_fixtures,
    run_smoke,
    same_tensors,
)

FIXTURES = load_fixtures("inplace")


def test_there_are_enough_fixtures():
    assert len(FIXTURES) >= 50, [f.id for f in FIXTURES]
    assert sum(f.expected is not None for f in FIXTURES) >= 20
    assert sum(f.expected is None for f in FIXTURES) >= 20


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.id for f in FIXTURES])
def test_rewrite_and_findings(fixture):
    check_rewrite_and_findings(fixture)


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.id for f in FIXTURES])
def test_second_run_changes_nothing(fixture):
    check_second_run_changes_nothing(fixture)


RUNNABLE = [f for f in FIXTURES if f.expect != "none"]


@pytest.mark.parametrize("fixture", RUNNABLE, ids=[f.id for f in RUNNABLE])
def test_running_code_proves_it(fixture):
    pytest.importorskip("torch")
    original = import_source(fixture.source, fixture.name)
    before = run_smoke(original)
    reference = run_smoke(import_source(fixture.source, fixture.name), clone_saved=True)
    assert before.forward_error is None, before.forward_error
    if fixture.expect == "hazard":
        assert before.backward_error is not None and "inplace operation" in before.backward_error, before.backward_error
    elif fixture.expect == "fails":
        assert before.backward_error is not None, "the original was expected to fail at backward"
    else:
        assert before.backward_error is None, before.backward_error
    if fixture.expected is None:
        return  # unchanged: nothing more to prove
    rewritten = import_source(fixture.expected, fixture.name + "_rw")
    after = run_smoke(rewritten)
    assert after.forward_error is None, after.forward_error
    assert after.backward_error is None, after.backward_error
    # Same forward outputs, bit for bit (dtype and shape too).
    assert same_tensors(before.outputs, after.outputs)
    # Gradients equal what the original program means (saved tensors snapshotted when saved).
    assert reference.backward_error is None, reference.backward_error
    assert same_tensors(reference.grads, after.grads, close=True)
    if before.grads is not None:
        assert same_tensors(before.grads, after.grads, close=True)
