"""``codemod verify`` with the in-place locator around the smoke command, and the default smoke
source (the repository's own tests that import the rewritten modules), end to end through the real
CLI, sandbox and locator; and what a hostile command can do with forged locator reports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

REPOS = Path(__file__).resolve().parent.parent / "fixtures" / "repos"


def _copy(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(REPOS / name, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _verify(repo: Path, fmt: str = "json") -> tuple[int, dict | str]:
    proc = subprocess.run(
        [sys.executable, "-m", "codemod", "verify", str(repo), "--format", fmt],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.stdout, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout) if fmt == "json" else proc.stdout


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _snapshot(repo: Path) -> dict[str, bytes]:
    return {p.relative_to(repo).as_posix(): p.read_bytes() for p in repo.rglob("*") if p.is_file()}


def test_hazard_found_by_the_smoke_command_upgrades_and_is_proven(tmp_path):
    repo = _copy("smoke_locate", tmp_path)
    model = repo / "squash" / "model.py"
    before = _snapshot(repo)
    static = subprocess.run(
        [sys.executable, "-m", "codemod", "apply", "--check", str(repo)], capture_output=True, text=True, timeout=300
    )
    assert static.returncode == 0, (
        static.stdout
    )  # the engine alone rewrites nothing: the activation is looked up by name
    code, verdict = _verify(repo)
    line = _line_of(model, "h.mul_(2)")
    assert code == 0 and verdict["status"] == "proven", verdict
    assert verdict["smoke_source"] == "configured"
    assert [(r["path"], r["line"], r["code"], r["exercised_by"]) for r in verdict["rewrites"]] == [
        ("squash/model.py", line, "IP102", ["locator"])
    ]
    (hazard,) = verdict["locator"]
    assert (hazard["write"]["path"], hazard["write"]["line"]) == ("squash/model.py", line)
    assert (hazard["saved_by"]["path"], hazard["saved_by"]["line"]) == ("squash/acts.py", 5)
    assert hazard["engine"] == "rewritten (IP102)"
    (case,) = verdict["cases"]
    assert case["name"].startswith("command: python -m pytest")
    assert (
        case["original"].startswith("fails: RuntimeError: one of the variables needed") and case["rewritten"] == "pass"
    )
    assert _snapshot(repo) == before  # verify writes nothing


def test_default_smoke_source_runs_the_tests_that_import_the_rewritten_module(tmp_path):
    repo = _copy("default_smoke", tmp_path)
    model = repo / "squash" / "model.py"
    code, verdict = _verify(repo)
    assert code == 0 and verdict["status"] == "proven", verdict
    assert verdict["smoke_source"] == "default tests"
    assert verdict["default_tests"] == ["tests/test_block.py"]  # not test_unrelated.py: it imports no rewritten module
    # One rewrite the engine made statically, one it made only because the located tests confirmed it.
    assert {(r["line"], r["code"]) for r in verdict["rewrites"]} == {
        (_line_of(model, "gate.mul_(0.5)"), "IP102"),
        (_line_of(model, "h.mul_(2)"), "IP102"),
    }
    (case,) = verdict["cases"]
    assert case["name"] == "default tests: python -m pytest -q -p no:cacheprovider tests/test_block.py"
    assert case["original"].startswith("fails: RuntimeError") and case["rewritten"] == "pass"
    assert any("Block: its constructor needs arguments" in n for n in verdict["notes"])  # why discovery had no case
    code, text = _verify(repo, "text")
    claim = text.split("verdict: ", 1)[1]
    assert claim.startswith("proven: the repository's tests that import the rewritten modules (1 file")
    assert "outputs and gradients were not compared" in claim
    assert "with the original's outputs and gradients" not in claim


def test_default_tests_failing_before_and_after_are_unrelated_and_prove_nothing(tmp_path):
    repo = _copy("default_smoke", tmp_path)
    (repo / "tests" / "test_broken.py").write_text(
        "from squash.model import Block\n\n\ndef test_broken():\n    assert Block(4) is None, 'broken for its own reasons'\n"
    )
    before = _snapshot(repo)
    code, verdict = _verify(repo)
    assert code == 1 and verdict["status"] == "not proven", verdict
    assert verdict["default_tests"] == ["tests/test_block.py", "tests/test_broken.py"]
    (case,) = verdict["cases"]
    assert case["original"].startswith("fails") and case["rewritten"].startswith("fails")
    assert case["reason"].startswith("fails before and after the rewrite, for a reason unrelated to it")
    assert _snapshot(repo) == before


def test_default_tests_that_break_on_the_rewritten_tree_are_not_proven(tmp_path):
    repo = _copy("default_smoke", tmp_path)
    # A test that passes on the original only while its tensors are still written in place.
    (repo / "tests" / "test_block.py").write_text(
        textwrap.dedent("""
        import torch

        from squash.model import Block


        def test_writes_in_place(monkeypatch):
            calls = []
            real = torch.Tensor.mul_
            monkeypatch.setattr(torch.Tensor, "mul_", lambda self, *a: calls.append(a) or real(self, *a))
            with torch.no_grad():
                Block(4)(torch.randn(3, 4))
            assert (2,) in calls and (0.5,) in calls
        """)
    )
    code, verdict = _verify(repo)
    assert verdict["smoke_source"] == "default tests"
    assert code == 1 and verdict["status"] == "not proven", verdict
    (case,) = verdict["cases"]
    assert case["original"] == "pass" and case["rewritten"].startswith("fails")
    assert case["reason"].startswith("the rewritten copy fails")


# ------------------------------------------------------------------------ forged locator reports

_FORGE = textwrap.dedent("""
    import json, os, sys
    out = os.environ.get("CODEMOD_LOCATE_DIR")
    if not out:
        sys.exit(1)  # the rewritten tree: the command always fails there
    def hazard(path, line):
        return {"kind": "saved-overwrite", "op": "mul_.Tensor", "write": {"path": path, "line": line, "code": "x"},
                "saved_by": None, "count": 1, "message": "forged"}
    LINE = int(open("line.txt").read())
    MODE = open("mode.txt").read().strip()
    if MODE == "valid":
        json.dump({"pid": 1, "hazards": [hazard("squash/model.py", LINE)]}, open(os.path.join(out, "1.json"), "w"))
        sys.exit(0)
    # A symlink to a well-formed report planted in the repository (the parent's copy has it too).
    os.symlink(os.path.abspath("planted.json"), os.path.join(out, "link.json"))
    with open(os.path.join(out, "big.json"), "w") as fh:
        fh.write(json.dumps({"pid": 2, "hazards": [hazard("squash/model.py", LINE)]}) + " " * (9 << 20))
    open(os.path.join(out, "garbage.json"), "w").write("{not json")
    open(os.path.join(out, "list.json"), "w").write("[1, 2]")
    os.mkfifo(os.path.join(out, "fifo.json"))
    os.mkdir(os.path.join(out, "dir.json"))
    bad = [hazard("../original/squash/model.py", LINE), hazard(os.path.abspath("squash/model.py"), LINE),
           hazard("squash/model.py", str(LINE)), hazard("squash/model.py", True), hazard("squash/nope.py", LINE),
           hazard("squash/escape/model.py", LINE), {**hazard("squash/model.py", LINE), "kind": "made-up"},
           {**hazard("squash/model.py", LINE), "saved_by": {"path": "/etc/passwd", "line": 1}}, "text", None]
    json.dump({"pid": "x", "rank": [], "hazards": bad}, open(os.path.join(out, "bad.json"), "w"))
    sys.exit(0)
    """)


def _forging_repo(tmp_path: Path, mode: str) -> Path:
    repo = _copy("smoke_locate", tmp_path)
    line = _line_of(repo / "squash" / "model.py", "h.mul_(2)")
    (repo / "forge.py").write_text(_FORGE)
    (repo / "line.txt").write_text(str(line))
    (repo / "mode.txt").write_text(mode)
    report = {
        "pid": 3,
        "hazards": [
            {
                "kind": "saved-overwrite",
                "op": "mul_",
                "write": {"path": "squash/model.py", "line": line, "code": "x"},
                "saved_by": None,
                "message": "planted",
            }
        ],
    }
    (repo / "planted.json").write_text(json.dumps(report))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.py").write_text("import torch\n")
    (repo / "squash" / "escape").symlink_to(outside)  # a directory link that leaves the repository
    text = (repo / "pyproject.toml").read_text()
    (repo / "pyproject.toml").write_text(
        text.replace(
            'command = "python -m pytest -q -p no:cacheprovider tests/test_block.py"', 'command = "python forge.py"'
        )
    )
    return repo


def test_forged_reports_are_refused_without_a_crash_and_prove_nothing(tmp_path):
    repo = _forging_repo(tmp_path, "hostile")
    before = _snapshot(repo)
    code, verdict = _verify(repo)
    # Nothing of the forgeries got through: no hazard, no upgrade, so nothing to rewrite or prove.
    assert verdict["locator"] == [] and verdict["rewrites"] == [], verdict
    assert verdict["status"] == "nothing to do" and not verdict["proven"]
    notes = "\n".join(verdict["notes"])
    for name, why in [
        ("link.json", "a symlink"),
        ("big.json", "larger than 8 MiB"),
        ("garbage.json", "not JSON"),
        ("list.json", "not a locator report"),
        ("fifo.json", "not a regular file"),
        ("dir.json", "not a regular file"),
    ]:
        assert f"a locator report was refused ({why}): '{name}'" in notes, notes
    assert "10 hazard record(s) of the locator's reports were dropped" in notes
    assert _snapshot(repo) == before


def test_a_well_formed_forged_report_can_only_propose_a_rewrite_that_must_still_pass(tmp_path):
    repo = _forging_repo(tmp_path, "valid")
    before = _snapshot(repo)
    code, verdict = _verify(repo)
    # The forged line is a real candidate: the engine may rewrite it (P1-P5 still apply) ...
    assert [(r["path"], r["code"]) for r in verdict["rewrites"]] == [("squash/model.py", "IP102")]
    # ... but the rewritten tree has to pass the smoke command, and here it does not: nothing proven or written.
    assert code == 1 and verdict["status"] == "not proven" and not verdict["proven"]
    (case,) = verdict["cases"]
    assert case["original"] == "pass" and case["rewritten"].startswith("fails")
    assert _snapshot(repo) == before


def test_read_located_rebuilds_hazards_from_checked_fields_only(tmp_path):
    from codemod.verify.located import read_located

    copy = tmp_path / "copy"
    (copy / "pkg").mkdir(parents=True)
    (copy / "pkg" / "m.py").write_text("import torch\n")
    reports = tmp_path / "reports"
    reports.mkdir()
    write = {"path": "pkg/m.py", "line": 3, "code": "h.mul_(2)", "extra": "dropped"}
    record = {
        "kind": "saved-overwrite",
        "op": "mul_",
        "write": write,
        "saved_by": {"path": "./pkg/m.py", "line": 2},
        "saver": "SigmoidBackward0",
        "shape": [3, "4"],
        "dtype": "float32",
        "count": 2,
        "message": "m" * 5000,
        "engine": {"action": "rewrite"},
        "evil": True,
    }
    (reports / "a.json").write_text(json.dumps({"pid": 7, "rank": 0, "hazards": [record, dict(record, count=True)]}))
    (reports / "notes.txt").write_text("not a report: ignored")
    (hazard,), notes = read_located(reports, copy)
    assert notes == []
    assert hazard["write"] == {"path": "pkg/m.py", "line": 3, "code": "h.mul_(2)"}
    assert hazard["saved_by"] == {"path": "pkg/m.py", "line": 2, "code": ""}
    assert hazard["shape"] is None and hazard["count"] == 3 and len(hazard["message"]) == 500
    assert hazard["engine"] == {} and "evil" not in hazard  # nothing the child said about the engine is kept
    # The directory itself replaced by a symlink (to a directory of good reports): not followed.
    linked = tmp_path / "linked"
    linked.symlink_to(reports)
    hazards, notes = read_located(linked, copy)
    assert hazards == [] and notes == ["the locator's reports could not be read: Not a directory"]
