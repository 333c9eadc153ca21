""".pre-commit-hooks.yaml, run by the real ``pre-commit`` tool in a temporary git repository.

``pre-commit try-repo`` installs this checkout (with its uncommitted changes) into the hook's own
virtual environment, exactly as a user's ``.pre-commit-config.yaml`` entry would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRE_COMMIT = shutil.which("pre-commit") or str(Path(sys.executable).parent / "pre-commit")

pytestmark = pytest.mark.skipif(not Path(PRE_COMMIT).exists(), reason="pre-commit is not installed")


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pre-commit-home")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "fixtures" / "repos" / "timesnet", repo)
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "add", "-A")
    return repo


def _hook(repo: Path, home: Path, hook: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRE_COMMIT_HOME": str(home), "PRE_COMMIT_COLOR": "never"}
    return subprocess.run(
        [PRE_COMMIT, "try-repo", str(ROOT), hook, "--all-files", "--verbose"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_codemod_hook_rewrites_then_passes(repo, pre_commit_home):
    model = repo / "timesnet" / "model.py"
    assert "x_enc /= stdev" in model.read_text()
    first = _hook(repo, pre_commit_home, "codemod")
    assert first.returncode == 1, first.stdout + first.stderr  # files were modified: the commit stops
    assert "files were modified by this hook" in first.stdout
    assert "x_enc = x_enc / stdev" in model.read_text()
    _git(repo, "add", "-A")
    second = _hook(repo, pre_commit_home, "codemod")
    assert second.returncode == 0, second.stdout + second.stderr


def test_codemod_check_hook_fails_and_writes_nothing(repo, pre_commit_home):
    model = repo / "timesnet" / "model.py"
    before = model.read_bytes()
    result = _hook(repo, pre_commit_home, "codemod-check")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "IP101" in result.stdout
    assert model.read_bytes() == before
