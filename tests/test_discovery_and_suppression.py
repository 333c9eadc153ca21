"""Which files are analysed, and ``# codemod: ignore`` comments."""

from __future__ import annotations

from pathlib import Path

import pytest

from codemod.config import ConfigFinder
from codemod.discovery import DiscoveryError, discover
from codemod.engine import known_selectors
from codemod.suppression import is_suppressed, suppressions


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_walk_skips_venvs_vcs_and_excluded(tmp_path):
    touch(tmp_path / "pyproject.toml", "[tool.codemod]\nexclude = ['third_party']\n")
    keep = touch(tmp_path / "pkg" / "model.py")
    touch(tmp_path / ".venv" / "lib" / "x.py")
    touch(tmp_path / ".git" / "hooks" / "x.py")
    touch(tmp_path / "third_party" / "lib.py")
    touch(tmp_path / "pkg" / "notes.txt")
    files = discover([str(tmp_path)], ConfigFinder(known_selectors()), base=tmp_path)
    assert [f.path.resolve() for f in files] == [keep.resolve()]
    assert files[0].display == "pkg/model.py"


def test_explicit_files_honour_exclude(tmp_path):
    touch(tmp_path / "pyproject.toml", "[tool.codemod]\nexclude = ['gen_*.py']\n")
    excluded = touch(tmp_path / "gen_a.py")
    kept = touch(tmp_path / "a.py")
    files = discover([str(excluded), str(kept)], ConfigFinder(known_selectors()), base=tmp_path)
    assert [f.display for f in files] == ["a.py"]


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(DiscoveryError, match="no such file"):
        discover([str(tmp_path / "nope")], ConfigFinder(known_selectors()))


def test_suppression_comments():
    source = """x = 1  # codemod: ignore
y = 2  # codemod: ignore[IP101, ip102]
s = "# codemod: ignore"
z = 3  # an unrelated comment
"""
    table = suppressions(source)
    assert set(table) == {1, 2}
    assert is_suppressed(table, [1], "IP105")
    assert is_suppressed(table, [2], "IP102") and not is_suppressed(table, [2], "IP103")
    assert not is_suppressed(table, [3], "IP101")  # inside a string: not a comment
    assert suppressions("x = 1\n") == {}
