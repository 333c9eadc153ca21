"""``codemod verify`` and ``apply --verify`` end to end, on the tiny repositories under
fixtures/repos/ (each a runnable project with its own smoke test), through the real CLI, sandbox
and harness subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from codemod.verify.compare import compare_tensors

REPOS = Path(__file__).resolve().parent.parent / "fixtures" / "repos"


def _copy(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copytree(REPOS / name, dest)
    return dest


def _codemod(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "codemod", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def _verify_json(repo: Path) -> tuple[int, dict]:
    proc = _codemod("verify", str(repo), "--format", "json")
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _line_of(path: Path, text: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


def _snapshot(repo: Path) -> dict[str, bytes]:
    return {p.relative_to(repo).as_posix(): p.read_bytes() for p in repo.rglob("*") if p.is_file()}


def test_normalization_bug_is_proven_with_locator_lines(tmp_path):
    repo = _copy("timesnet", tmp_path)
    before = _snapshot(repo)
    code, verdict = _verify_json(repo)
    assert code == 0, verdict
    assert verdict["status"] == "proven" and verdict["device"] == "cpu"
    model = repo / "timesnet" / "model.py"
    assert {(r["path"], r["line"]) for r in verdict["rewrites"]} >= {
        ("timesnet/model.py", _line_of(model, "x_enc /= stdev"))
    }
    for rewrite in verdict["rewrites"]:  # both statically found rewrites ran in both cases
        assert rewrite["exercised_by"] == ["forecaster", "with_projection"]
    cases = {c["name"]: c for c in verdict["cases"]}
    assert set(cases) == {"forecaster", "with_projection", "command: python -m pytest -q tests/test_smoke.py"}
    for name in ("forecaster", "with_projection"):
        case = cases[name]
        assert case["original"].startswith("fails at backward: RuntimeError: one of the variables needed")
        assert case["rewritten"] == "pass"
        assert case["outputs"]["text"] == "bit-identical"
        assert case["gradients"]["equal"] is True and "snapshotted" in case["gradients"]["text"]
        assert case["grads_received"] == ("6/6" if name == "forecaster" else "8/8")
    command = cases["command: python -m pytest -q tests/test_smoke.py"]
    assert command["original"].startswith("fails") and command["rewritten"] == "pass"
    # The locator names both lines of the normalization hazard (only reachable with the projection).
    hazards = {(f["write"]["line"], (f["saved_by"] or {}).get("line")) for f in verdict["locator"]}
    assert (_line_of(model, "x_enc /= stdev"), _line_of(model, "torch.var(")) in hazards
    assert _snapshot(repo) == before  # verify writes nothing


def test_locator_upgrades_a_candidate_to_a_rewrite(tmp_path):
    repo = _copy("locator_upgrade", tmp_path)
    model = repo / "squash" / "model.py"
    # Statically `squash(...)` is opaque: hazards mode alone does not rewrite `h.mul_(2)`.
    static = _codemod("apply", "--check", str(repo))
    assert static.returncode == 0, static.stdout
    code, verdict = _verify_json(repo)
    assert code == 0, verdict
    line = _line_of(model, "h.mul_(2)")
    assert [(r["path"], r["line"], r["code"]) for r in verdict["rewrites"]] == [("squash/model.py", line, "IP102")]
    (hazard,) = verdict["locator"]
    assert hazard["write"]["line"] == line and hazard["engine"] == "rewritten (IP102)"
    assert hazard["saved_by"]["path"] == "squash/acts.py"
    assert hazard["saved_by"]["line"] == _line_of(repo / "squash" / "acts.py", "torch.sigmoid")
    (case,) = verdict["cases"]
    assert case["original"].startswith("fails at backward") and case["proven"]


def test_a_rewrite_no_case_runs_is_not_proven(tmp_path):
    repo = _copy("locator_upgrade", tmp_path)
    model = repo / "squash" / "model.py"
    model.write_text(
        model.read_text() + ("\n\ndef unused(x):\n    h = torch.sigmoid(x)\n    h.mul_(2)\n    return h\n")
    )
    code, verdict = _verify_json(repo)
    assert code == 1 and verdict["status"] == "not proven"
    (case,) = verdict["cases"]
    assert case["proven"]  # the case itself passes: the other rewrite is what is unproven
    lines = model.read_text().splitlines()
    used = _line_of(model, "h.mul_(2)  #")
    unused = max(i for i, line in enumerate(lines, 1) if line.strip() == "h.mul_(2)")
    # The used one was found by the locator (so it ran); the other was never run.
    assert {r["line"]: r["exercised_by"] for r in verdict["rewrites"]} == {used: ["locator"], unused: []}
    assert any(
        n.startswith("not exercised by any smoke case") and f"squash/model.py:{unused} IP102" in n
        for n in verdict["notes"]
    )


def test_init_derived_second_iteration(tmp_path):
    repo = _copy("init_derived", tmp_path)
    code, verdict = _verify_json(repo)
    assert code == 0, verdict
    case = next(c for c in verdict["cases"] if c["name"] == "scaled_mlp")
    assert case["original"].startswith(
        "fails 2nd iteration: RuntimeError: Trying to backward through the graph a second time"
    )
    assert case["rewritten"] == "pass" and case["second_iteration"].startswith("ok (original: RuntimeError")
    assert case["outputs"]["text"] == "bit-identical" and case["gradients"]["text"] == "bit-identical"
    assert [r["code"] for r in verdict["rewrites"]] == ["ID101"]


def test_clean_repository_nothing_to_do(tmp_path):
    repo = _copy("clean", tmp_path)
    proc = _codemod("verify", str(repo))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: nothing to do" in proc.stdout
    # ReLU(inplace=True) after a convolution is not a hazard: the locator stays quiet.
    assert "locator (original tree)" not in proc.stdout


def test_unrelated_failure_is_not_proven_and_nothing_is_written(tmp_path):
    repo = _copy("unrelated_failure", tmp_path)
    code, verdict = _verify_json(repo)
    assert code == 1 and verdict["status"] == "not proven"
    (case,) = verdict["cases"]
    assert case["original"] == case["rewritten"] and case["original"].startswith("fails")
    assert "unrelated" in case["reason"] and "data/batch.pt" in case["reason"]
    before = _snapshot(repo)
    proc = _codemod("apply", "--verify", str(repo))
    assert proc.returncode == 1 and "nothing was written" in proc.stderr
    assert _snapshot(repo) == before


def test_rewrite_that_changes_outputs_is_refused(tmp_path):
    repo = _copy(
        "output_change_dynamic", tmp_path
    )  # output_change (an alias through keep) and a dynamic call are reported statically; this one escapes through a method call
    before = _snapshot(repo)
    proc = _codemod("apply", "--verify", str(repo))
    assert proc.returncode == 1, proc.stderr
    assert "NOT PROVEN: outputs changed" in proc.stderr and "nothing was written" in proc.stderr
    assert _snapshot(repo) == before


def test_apply_verify_writes_proven_rewrites(tmp_path):
    repo = _copy("timesnet", tmp_path)
    smoke = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_smoke.py"]
    assert subprocess.run(smoke, cwd=repo, capture_output=True).returncode != 0
    proc = _codemod("apply", "--verify", str(repo))
    assert proc.returncode == 0, proc.stderr
    assert "wrote 1 verified file" in proc.stderr
    assert "x_enc = x_enc / stdev" in (repo / "timesnet" / "model.py").read_text()
    assert subprocess.run(smoke, cwd=repo, capture_output=True).returncode == 0


def test_discovery_without_config(tmp_path):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "__init__.py").write_text("")
    (repo / "pkg" / "nets.py").write_text(
        "import torch\nimport torch.nn as nn\n\n\n"
        "class Gated(nn.Module):\n"
        "    def __init__(self, dim=6):\n"
        "        super().__init__()\n"
        "        self.lin = nn.Linear(dim, dim)\n"
        "        self.act = nn.ReLU(inplace=True)\n\n"
        "    def forward(self, x):\n"
        "        return self.act(torch.sigmoid(self.lin(x)))\n\n\n"
        "class NeedsArgs(nn.Module):\n"
        "    def __init__(self, dim):\n"
        "        super().__init__()\n"
        "        self.lin = nn.Linear(dim, dim)\n"
        "        self.act = nn.ReLU(inplace=True)\n\n"
        "    def forward(self, x):\n"
        "        return self.act(torch.sigmoid(self.lin(x)))\n"
    )
    nets = repo / "pkg" / "nets.py"
    code, verdict = _verify_json(repo)
    assert [c["name"] for c in verdict["cases"]] == ["pkg/nets.py:Gated"]
    assert any("NeedsArgs: its constructor needs arguments" in n for n in verdict["notes"])
    # NeedsArgs' rewrite ran in no case: not proven, and the verdict names it.
    assert code == 1 and verdict["status"] == "not proven"
    assert [(r["line"], r["exercised_by"]) for r in verdict["rewrites"]] == [
        (_line_of(nets, "return self.act"), ["pkg/nets.py:Gated"]),
        (len(nets.read_text().splitlines()), []),
    ]

    text = nets.read_text()
    nets.write_text(text[: text.index("class NeedsArgs")].rstrip() + "\n")
    code, verdict = _verify_json(repo)
    assert code == 0 and verdict["status"] == "proven", verdict

    # Only a module that needs arguments: nothing can be verified, and the verdict says so.
    nets.write_text(nets.read_text().replace("def __init__(self, dim=6)", "def __init__(self, dim)"))
    code, verdict = _verify_json(repo)
    assert code == 1 and verdict["status"] == "nothing could be verified"


def test_config_errors_are_usage_errors(tmp_path):
    repo = _copy("clean", tmp_path)
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('device = "cpu"', 'device = "tpu"'))
    proc = _codemod("verify", str(repo))
    assert proc.returncode == 2 and "smoke.device" in proc.stderr
    proc = _codemod("apply", "--verify", "--diff", str(REPOS / "clean"))
    assert proc.returncode == 2 and "--verify" in proc.stderr


def test_bad_cases_spec_is_reported(tmp_path):
    repo = _copy("clean", tmp_path)
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("smoke_cases.py:cases", "smoke_cases.py:nope"))
    # Make a rewrite so the harness must run on both trees.
    model = repo / "clean" / "model.py"
    model.write_text(
        model.read_text().replace("h = self.act(self.conv(x))", "h = self.act(torch.sigmoid(self.conv(x)))")
    )
    code, verdict = _verify_json(repo)
    assert code == 1
    harness = next(c for c in verdict["cases"] if c["name"] == "harness")
    assert "has no function 'nope'" in harness["reason"]


@pytest.mark.parametrize("exact", [True, False])
def test_compare_tensors(exact):
    a = [torch.tensor([1.0, 2.0, 3.0]), torch.arange(3)]
    assert compare_tensors(a, [t.clone() for t in a], exact).text == "bit-identical"
    one_ulp = a[0].clone()
    one_ulp[1] = torch.nextafter(one_ulp[1], torch.tensor(10.0))  # the smallest possible change
    nudged = [one_ulp, a[1]]
    result = compare_tensors(a, nudged, exact)
    assert result.equal is (not exact)
    assert result.max_abs_diff == pytest.approx(float((nudged[0] - a[0]).abs().max()), rel=1e-3)
    far = [a[0] * 2, a[1]]
    assert compare_tensors(a, far, exact).equal is False
    assert "float64" in compare_tensors(a, [a[0].double(), a[1]], exact).text
    assert compare_tensors(a, a[:1], exact).equal is False


def _tiny_wheel(directory: Path) -> Path:
    """A real (pure-Python) wheel, built by hand: pip installs it without any index."""
    import base64
    import hashlib
    import zipfile

    files = {
        "tinyhelper/__init__.py": "def double(t):\n    return t * 2\n",
        "tinyhelper-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinyhelper\nVersion: 0.1\n",
        "tinyhelper-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append("tinyhelper-0.1.dist-info/RECORD,,")
    files["tinyhelper-0.1.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = directory / "tinyhelper-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return wheel


def _repo_with_requirement(tmp_path: Path) -> Path:
    repo = _copy("init_derived", tmp_path)
    (repo / "vendor").mkdir()
    _tiny_wheel(repo / "vendor")
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            "timeout = 300", 'timeout = 300\nrequirements = ["./vendor/tinyhelper-0.1-py3-none-any.whl"]'
        )
    )
    model = repo / "scaler" / "model.py"
    model.write_text(
        "import tinyhelper\n"
        + model.read_text().replace(
            "return self.fc(x) * self.scale", "return tinyhelper.double(self.fc(x)) * self.scale"
        )
    )
    return repo


def test_requirements_are_installed_inside_the_sandbox(tmp_path):
    repo = _repo_with_requirement(tmp_path)
    assert subprocess.run([sys.executable, "-c", "import tinyhelper"], capture_output=True).returncode != 0
    cache = tmp_path / "cache"
    env = {**os.environ, "CODEMOD_CACHE": str(cache)}
    proc = subprocess.run(
        [sys.executable, "-m", "codemod", "verify", str(repo), "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    verdict = json.loads(proc.stdout)
    assert proc.returncode == 0 and verdict["status"] == "proven", proc.stdout + proc.stderr
    # Nothing installed into this environment, and no environment shared with later runs.
    assert subprocess.run([sys.executable, "-c", "import tinyhelper"], capture_output=True).returncode != 0
    assert not cache.exists()


def test_requirements_turned_off_by_the_operator_say_why_nothing_ran(tmp_path):
    repo = _repo_with_requirement(tmp_path)
    env = {**os.environ, "CODEMOD_ALLOW_REQUIREMENTS": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "codemod", "verify", str(repo), "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    verdict = json.loads(proc.stdout)
    assert proc.returncode == 1 and verdict["status"] == "nothing could be verified"
    assert any("requirements is turned off by the operator" in n for n in verdict["notes"]), verdict["notes"]


@pytest.mark.parametrize(
    "requirement",
    [
        "-r/etc/shadow",
        "--index-url=http://127.0.0.1:9/",
        "--log=/tmp/x.log",
        "einops @ http://127.0.0.1:9/einops.whl",
        "./../outside",
        "not a requirement!",
    ],
)
def test_requirement_strings_that_are_not_requirements_are_refused(tmp_path, requirement):
    repo = _copy("init_derived", tmp_path)
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace("timeout = 300", f"timeout = 300\nrequirements = [{json.dumps(requirement)}]")
    )
    proc = _codemod("verify", str(repo))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "smoke.requirements" in lines[0] and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
def test_cuda_device(tmp_path):
    repo = _copy("timesnet", tmp_path)
    proc = _codemod("verify", str(repo), "--device", "cuda", "--format", "json")
    verdict = json.loads(proc.stdout)
    assert proc.returncode == 0 and verdict["device"] == "cuda", proc.stdout
    harness = [c for c in verdict["cases"] if not c["name"].startswith("command")]
    assert harness and all(c["proven"] for c in harness)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_for_without_a_device_says_so(tmp_path):
    repo = _copy("init_derived", tmp_path)
    proc = _codemod("verify", str(repo), "--device", "cuda", "--format", "json")
    verdict = json.loads(proc.stdout)
    assert proc.returncode == 1 and verdict["status"] == "not proven"
    harness = next(c for c in verdict["cases"] if c["name"] == "harness")
    assert "torch sees no CUDA device" in harness["reason"]
