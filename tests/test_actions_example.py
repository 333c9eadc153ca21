"""The README's GitHub Actions example: valid YAML whose codemod step parses with the real CLI and,
run on a bundled fixture, writes SARIF that code scanning accepts (2.1.0, results with locations)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from codemod.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def _workflow() -> dict:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n(# \.github/workflows/torch-codemod\.yml\n.*?)```", readme, re.S)
    assert block, "the README's Actions example is missing"
    return yaml.safe_load(block.group(1))


def test_workflow_uploads_sarif_even_when_the_check_fails():
    workflow = _workflow()
    assert workflow["permissions"]["security-events"] == "write"
    steps = workflow["jobs"]["codemod"]["steps"]
    upload = next(s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif@"))
    assert upload["if"] == "always()"
    command = next(s["run"] for s in steps if s.get("run", "").startswith("codemod "))
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert (args.command, args.check, args.format) == ("apply", True, "sarif")
    assert upload["with"]["sarif_file"] == args.output


def test_the_workflow_command_on_a_fixture(tmp_path):
    steps = _workflow()["jobs"]["codemod"]["steps"]
    command = next(s["run"] for s in steps if s.get("run", "").startswith("codemod "))
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "fixtures" / "repos" / "timesnet", repo)
    before = (repo / "timesnet" / "model.py").read_text()
    argv = shlex.split(command)
    proc = subprocess.run([sys.executable, "-m", "codemod", *argv[1:]], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr  # --check: there is something to fix
    assert (repo / "timesnet" / "model.py").read_text() == before
    sarif = json.loads((repo / "codemod.sarif").read_text())
    assert sarif["version"] == "2.1.0"
    results = sarif["runs"][0]["results"]
    assert {r["ruleId"] for r in results} >= {"IP101"}
    assert all(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results)
