"""What the App writes (pure): PR title and body, commit message, check run and its annotations."""

from __future__ import annotations

from service import proposal


def finding(i: int, fixed: bool, **extra) -> dict:
    return {
        "path": "pkg/model.py",
        "line": 10 + i,
        "code": "IP101" if fixed else "IP201",
        "message": f"message {i}",
        "fixed": fixed,
        "fix": "x = x / s" if fixed else None,
        "saved_line": 9 + i,
        "saved_message": "saved",
        "write_text": "x /= s",
        "saved_text": "s = torch.var(x)",
        "fingerprint": f"fp{i}",
        "declined": False,
        **extra,
    }


def outcome(findings, proven=True, cases=None, notes=()):
    return {
        "status": "proven" if proven else "not proven",
        "proven": proven,
        "device": "cpu",
        "isolation": "netns",
        "findings": findings,
        "cases": cases or [],
        "notes": list(notes),
        "locator": [],
        "branch": "codemod/autograd",
        "unverified": "draft",
        "seconds": {},
    }


CASE = {
    "name": "tiny",
    "original": "fails at backward: RuntimeError: one of the variables was modified. Hint: ...",
    "rewritten": "pass",
    "outputs": {"text": "bit-identical"},
    "gradients": {"text": "bit-identical"},
    "grads_received": "2/2",
    "second_iteration": "ok",
    "proven": True,
    "reason": "",
}


def test_body_names_each_rewrite_with_both_lines_links_and_the_verification_table():
    data = outcome([finding(1, True), finding(2, False)], cases=[CASE])
    links = proposal.Links("https://github.example/acme/app", "a" * 40)
    body = proposal.body(data, links, "torch-codemod", "main")
    assert (
        f"[`pkg/model.py:11`](https://github.example/acme/app/blob/{'a' * 40}/pkg/model.py#L11) `x /= s` → `x = x / s`"
        in body
    )
    assert f"[line 10](https://github.example/acme/app/blob/{'a' * 40}/pkg/model.py#L10) `s = torch.var(x)`" in body
    assert (
        "| tiny | fails at backward: RuntimeError: one of the variables was modified. | pass | bit-identical |" in body
    )
    assert "2/2 parameters | ok |" in body
    assert "## Reported, not rewritten" in body and "**IP201**" in body
    assert "@torch-codemod recreate" in body and "# codemod: ignore[IP101]" in body
    assert proposal.title(data) == "Fix 1 autograd bug (IP101)"


def test_an_unproven_proposal_says_so_first():
    failing = {**CASE, "rewritten": "fails", "proven": False, "reason": "the rewritten copy fails"}
    data = outcome([finding(1, True)], proven=False, cases=[failing])
    body = proposal.body(data, proposal.Links("https://x/a/b", "b" * 40), "bot", "main")
    assert body.startswith("**Not proven: do not merge as is.**")
    assert "**tiny not proven:** the rewritten copy fails" in body
    assert proposal.title(data).startswith("[unverified] ")
    assert proposal.check_run(data, None, "").conclusion == "failure"


def test_annotations_cover_every_reported_finding_in_batches_of_50():
    data = outcome([finding(i, False) for i in range(120)] + [finding(999, True)])
    batches = proposal.annotations(data)
    assert [len(b) for b in batches] == [50, 50, 20]
    first = batches[0][0]
    assert (first["path"], first["start_line"], first["annotation_level"]) == ("pkg/model.py", 10, "warning")
    assert "saved at line 9: s = torch.var(x)" in first["message"]
    run = proposal.check_run(data, "https://x/pull/1", "Opened pull request #1.")
    assert run.conclusion == "neutral" and run.annotations == batches
    assert run.title == "1 rewrite, 120 findings reported but not rewritten"


def test_nothing_found_is_a_neutral_check_run_without_annotations():
    run = proposal.check_run(outcome([]), None, "")
    assert (run.conclusion, run.title, run.annotations) == ("neutral", "No autograd bug found", [])


def test_the_commit_message_lists_the_rewrites():
    message = proposal.commit_message(outcome([finding(1, True)]))
    assert message.startswith("Fix 1 autograd bug (IP101)\n\n- pkg/model.py:11 IP101: x /= s -> x = x / s\n")


def test_what_is_published_follows_the_verdict_and_the_repositorys_choice():
    def act(**kw):
        return proposal.publication(**{"has_changes": True, "proven": True, "unverified": "draft", "held": False, **kw})

    assert act() == "publish"
    assert act(proven=False) == "draft"
    assert act(proven=False, unverified="skip") == "skip"
    assert act(held=True) == act(held=True, proven=False) == "hold"
    assert act(has_changes=False) == "nothing"


def test_a_proven_pr_claims_only_what_its_smoke_runs_compared():
    links = proposal.Links("https://github.com/o/r", "a" * 40)
    harness = {**CASE, "kind": "harness"}
    command = {
        **CASE,
        "kind": "command",
        "name": "default tests: python -m pytest -q tests/test_block.py",
        "outputs": {"text": "-"},
        "gradients": {"text": "-"},
    }
    only_command = proposal.body(outcome([finding(0, True)], cases=[command]), links, "codemod", "main")
    assert "outputs not compared" in only_command and "same outputs and gradients" not in only_command
    only_harness = proposal.body(outcome([finding(0, True)], cases=[harness]), links, "codemod", "main")
    assert (
        "1 smoke case ran on the original and the rewritten tree in a sandbox with the same outputs and gradients"
        in only_harness
        and "outputs not compared" not in only_harness
    )
    both = proposal.body(outcome([finding(0, True)], cases=[harness, command]), links, "codemod", "main")
    assert "same outputs and gradients" in both and "outputs not compared" in both
