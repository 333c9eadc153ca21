"""Configuration: [tool.codemod] / codemod.toml, nearest file wins, clear errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from codemod.config import ConfigError, ConfigFinder, read_config_file
from codemod.engine import known_selectors

KNOWN = known_selectors()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_full_pyproject_config(tmp_path):
    cfg = read_config_file(
        write(
            tmp_path / "pyproject.toml",
            """
[tool.codemod]
include = ["src/**/*.py"]
exclude = ["third_party/**"]
select = ["inplace"]
ignore = ["IP105"]
inplace = "all"

[tool.codemod.smoke]
command = "python -m pytest -q tests/test_smoke.py"
cases = "tests/smoke_cases.py:cases"
device = "cpu"
timeout = 120
requirements = ["einops>=0.7"]

[tool.codemod.github]
branch = "codemod/autograd-fixes"
unverified = "skip"
""",
        ),
        KNOWN,
    )
    assert cfg.include == ("src/**/*.py",) and cfg.exclude == ("third_party/**",)
    assert cfg.select == ("inplace",) and cfg.ignore == ("IP105",) and cfg.inplace == "all"
    assert cfg.smoke.command.startswith("python -m pytest") and cfg.smoke.timeout == 120.0
    assert cfg.smoke.cases == "tests/smoke_cases.py:cases" and cfg.smoke.device == "cpu"
    assert cfg.smoke.requirements == ("einops>=0.7",)
    assert cfg.github.branch == "codemod/autograd-fixes" and cfg.github.unverified == "skip"


def test_pyproject_without_section_is_skipped(tmp_path):
    assert read_config_file(write(tmp_path / "pyproject.toml", "[project]\nname = 'x'\n"), KNOWN) is None


@pytest.mark.parametrize(
    "text,key",
    [
        ("[tool.codemod]\nselct = ['inplace']\n", "tool.codemod.selct"),
        ("[tool.codemod]\ninplace = 'some'\n", "tool.codemod.inplace"),
        ("[tool.codemod]\nselect = ['nonsense']\n", "tool.codemod.select"),
        ("[tool.codemod]\ninclude = 'x.py'\n", "tool.codemod.include"),
        ("[tool.codemod.smoke]\ntimeout = -1\n", "tool.codemod.smoke.timeout"),
        ("[tool.codemod.smoke]\ndevice = 'tpu'\n", "tool.codemod.smoke.device"),
        ("[tool.codemod.smoke]\ncases = 'no_colon'\n", "tool.codemod.smoke.cases"),
        ("[tool.codemod.smoke]\ncomand = 'x'\n", "tool.codemod.smoke.comand"),
        ("[tool.codemod.github]\nbranch = 'bad..name'\n", "tool.codemod.github.branch"),
        ("[tool.codemod.github]\nunverified = 'maybe'\n", "tool.codemod.github.unverified"),
    ],
)
def test_errors_name_the_key(tmp_path, text, key):
    path = write(tmp_path / "pyproject.toml", text)
    with pytest.raises(ConfigError) as info:
        read_config_file(path, KNOWN)
    assert f"`{key}`" in str(info.value) and str(path) in str(info.value)


def test_codemod_toml_top_level_keys_and_errors(tmp_path):
    cfg = read_config_file(write(tmp_path / "codemod.toml", "inplace = 'all'\n"), KNOWN)
    assert cfg.inplace == "all"
    with pytest.raises(ConfigError, match="`bogus`"):
        read_config_file(write(tmp_path / "codemod.toml", "bogus = 1\n"), KNOWN)


def test_invalid_toml_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_config_file(write(tmp_path / "codemod.toml", "inplace = \n"), KNOWN)


def test_nearest_config_applies(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.codemod]\ninplace = 'all'\n")
    write(tmp_path / "sub" / "codemod.toml", "inplace = 'hazards'\n")
    write(tmp_path / "sub" / "pyproject.toml", "[tool.codemod]\ninplace = 'all'\n")  # codemod.toml wins
    write(tmp_path / "other" / "pyproject.toml", "[project]\nname='x'\n")  # no section: keep looking up
    finder = ConfigFinder(KNOWN)
    assert finder.for_path(write(tmp_path / "a.py", "")).inplace == "all"
    assert finder.for_path(write(tmp_path / "sub" / "deep" / "b.py", "")).inplace == "hazards"
    assert finder.for_path(write(tmp_path / "other" / "c.py", "")).inplace == "all"


def test_explicit_config_file(tmp_path):
    explicit = write(tmp_path / "cfg" / "codemod.toml", "inplace = 'all'\n")
    finder = ConfigFinder(KNOWN, explicit)
    assert finder.for_path(write(tmp_path / "x.py", "")).inplace == "all"


def test_include_exclude_patterns(tmp_path):
    cfg = read_config_file(
        write(
            tmp_path / "pyproject.toml",
            """
[tool.codemod]
include = ["src/**/*.py"]
exclude = ["src/vendor", "*_pb2.py"]
""",
        ),
        KNOWN,
    )
    assert cfg.is_included(tmp_path / "src" / "m" / "a.py")
    assert not cfg.is_included(tmp_path / "scripts" / "a.py")
    assert cfg.is_excluded(tmp_path / "src" / "vendor" / "lib" / "a.py")
    assert cfg.is_excluded(tmp_path / "src" / "m" / "msg_pb2.py")
    assert not cfg.is_excluded(tmp_path / "src" / "m" / "a.py")
