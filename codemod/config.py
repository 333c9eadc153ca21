"""Repository configuration: ``[tool.codemod]`` in pyproject.toml or top-level keys of codemod.toml.

The nearest file above a path applies (codemod.toml wins over pyproject.toml in the same
directory; a pyproject.toml without ``[tool.codemod]`` is skipped). Unknown keys and bad values are
errors that name the file and the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args


class ConfigError(Exception):
    """A configuration problem, with the file and key in its message."""


# What the in-place family rewrites: in-place ops that overwrite saved tensors, or every safe one
# in differentiable code.
Mode = Literal["hazards", "all"]
# Where the smoke cases run.
Device = Literal["cpu", "cuda", "auto"]
# What the App does with a rewrite its smoke test did not prove: a draft PR, or nothing.
Unverified = Literal["draft", "skip"]
MODES: tuple[Mode, ...] = get_args(Mode)
DEVICES: tuple[Device, ...] = get_args(Device)
UNVERIFIED: tuple[Unverified, ...] = get_args(Unverified)
DEFAULT_EXCLUDE = (
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    "__pycache__",
    "node_modules",
    "site-packages",
    ".eggs",
    "*.egg-info",
    "build",
    "dist",
    ".mypy_cache",
    ".pytest_cache",
)


@dataclass(frozen=True)
class SmokeConfig:
    command: str | None = None
    cases: str | None = None
    device: Device = "auto"
    timeout: float = 900.0
    requirements: tuple[str, ...] = ()


@dataclass(frozen=True)
class GithubConfig:
    branch: str = "codemod/autograd"
    unverified: Unverified = "draft"


@dataclass(frozen=True)
class Config:
    root: Path  # directory the patterns are relative to
    source: Path | None = None  # the file it came from (None: defaults)
    include: tuple[str, ...] = ("**/*.py",)
    exclude: tuple[str, ...] = ()
    select: tuple[str, ...] = ()  # empty: all rules
    ignore: tuple[str, ...] = ()
    inplace: Mode = "hazards"
    smoke: SmokeConfig = field(default_factory=SmokeConfig)
    github: GithubConfig = field(default_factory=GithubConfig)

    def is_included(self, path: Path) -> bool:
        rel = _relative(path, self.root)
        if rel is None:
            return True
        return any(_glob_match(pattern, rel) for pattern in self.include)

    def is_excluded(self, path: Path) -> bool:
        """Whether an ``exclude`` pattern matches the path or one of its directories (relative to
        the config's directory)."""
        rel = _relative(path, self.root)
        if rel is None or not self.exclude:
            return False
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(_glob_match(pattern, p) for pattern in self.exclude for p in prefixes)


def is_default_excluded(name: str) -> bool:
    """Directories skipped while walking (virtual environments, VCS and build output)."""
    return any(_glob_match(pattern, name) for pattern in DEFAULT_EXCLUDE)


_TOP_KEYS = {"include", "exclude", "select", "ignore", "inplace", "smoke", "github"}
_SMOKE_KEYS = {"command", "cases", "device", "timeout", "requirements"}
_GITHUB_KEYS = {"branch", "unverified"}


def parse_config(data: dict[str, Any], root: Path, source: Path | None, known_selectors: set[str]) -> Config:
    where = f"{source}" if source else "configuration"
    prefix = "tool.codemod." if source is not None and source.name == "pyproject.toml" else ""

    def err(key: str, problem: str) -> ConfigError:
        return ConfigError(f"{where}: `{prefix}{key}` {problem}")

    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise err(unknown[0], f"is not a known key (known: {', '.join(sorted(_TOP_KEYS))})")

    def str_list(key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise err(key, "must be a list of strings")
        return tuple(value)

    kwargs: dict[str, Any] = {}
    for key in ("include", "exclude"):
        if key in data:
            kwargs[key] = str_list(key, data[key])
    for key in ("select", "ignore"):
        if key in data:
            values = str_list(key, data[key])
            for v in values:
                if v not in known_selectors:
                    raise err(key, f"names unknown rule or family {v!r} (known: {', '.join(sorted(known_selectors))})")
            kwargs[key] = values
    if "inplace" in data:
        if data["inplace"] not in MODES:
            raise err("inplace", f"must be one of {', '.join(repr(m) for m in MODES)}, not {data['inplace']!r}")
        kwargs["inplace"] = data["inplace"]
    if "smoke" in data:
        kwargs["smoke"] = _parse_smoke(data["smoke"], err)
    if "github" in data:
        kwargs["github"] = _parse_github(data["github"], err)
    return Config(root=root, source=source, **kwargs)


def _parse_smoke(data: Any, err) -> SmokeConfig:
    if not isinstance(data, dict):
        raise err("smoke", "must be a table")
    unknown = sorted(set(data) - _SMOKE_KEYS)
    if unknown:
        raise err(f"smoke.{unknown[0]}", f"is not a known key (known: {', '.join(sorted(_SMOKE_KEYS))})")
    kwargs: dict[str, Any] = {}
    if "command" in data:
        if not isinstance(data["command"], str) or not data["command"].strip():
            raise err("smoke.command", "must be a non-empty string")
        kwargs["command"] = data["command"]
    if "cases" in data:
        value = data["cases"]
        if not isinstance(value, str) or not re.fullmatch(r"[^:\s]+:[A-Za-z_][A-Za-z0-9_]*", value):
            raise err("smoke.cases", "must look like 'module_or_path:function', e.g. 'tests/smoke_cases.py:cases'")
        kwargs["cases"] = value
    if "device" in data:
        if data["device"] not in DEVICES:
            raise err("smoke.device", f"must be one of {', '.join(repr(d) for d in DEVICES)}, not {data['device']!r}")
        kwargs["device"] = data["device"]
    if "timeout" in data:
        value = data["timeout"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise err("smoke.timeout", "must be a positive number of seconds")
        kwargs["timeout"] = float(value)
    if "requirements" in data:
        value = data["requirements"]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise err("smoke.requirements", "must be a list of requirement strings")
        kwargs["requirements"] = tuple(value)
    return SmokeConfig(**kwargs)


_REF_BAD = re.compile(r"(^[-/.])|(\.\.)|([\x00-\x20~^:?*\[\\])|(@\{)|(/$)|(\.lock$)|(//)|(\.$)")


def _parse_github(data: Any, err) -> GithubConfig:
    if not isinstance(data, dict):
        raise err("github", "must be a table")
    unknown = sorted(set(data) - _GITHUB_KEYS)
    if unknown:
        raise err(f"github.{unknown[0]}", f"is not a known key (known: {', '.join(sorted(_GITHUB_KEYS))})")
    kwargs: dict[str, Any] = {}
    if "branch" in data:
        value = data["branch"]
        if not isinstance(value, str) or not value or _REF_BAD.search(value):
            raise err("github.branch", f"is not a valid git branch name: {value!r}")
        kwargs["branch"] = value
    if "unverified" in data:
        if data["unverified"] not in UNVERIFIED:
            raise err(
                "github.unverified",
                f"must be one of {', '.join(repr(u) for u in UNVERIFIED)}, not {data['unverified']!r}",
            )
        kwargs["unverified"] = data["unverified"]
    return GithubConfig(**kwargs)


def read_config_file(path: Path, known_selectors: set[str]) -> Config | None:
    """The config in ``path`` (codemod.toml or pyproject.toml), or None for a pyproject.toml
    without ``[tool.codemod]``."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 (byte 0x{exc.object[exc.start]:02x})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if path.name == "pyproject.toml":
        tool = data.get("tool", {})
        if not isinstance(tool, dict) or "codemod" not in tool:
            return None
        section = tool["codemod"]
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: `tool.codemod` must be a table")
        return parse_config(section, path.parent, path, known_selectors)
    return parse_config(data, path.parent, path, known_selectors)


class ConfigFinder:
    """Finds (and caches) the nearest config above each path."""

    def __init__(self, known_selectors: set[str], explicit: Path | None = None) -> None:
        self.known = known_selectors
        self.explicit = read_config_file(explicit, known_selectors) if explicit else None
        if explicit is not None and self.explicit is None:
            raise ConfigError(f"{explicit}: has no [tool.codemod] table")
        self._cache: dict[Path, Config] = {}

    def for_path(self, path: Path) -> Config:
        if self.explicit is not None:
            return self.explicit
        # realpath, not Path.resolve: it never raises (symlink loops are discovery's to report).
        directory = Path(os.path.realpath(path))
        if not os.path.isdir(directory):
            directory = directory.parent
        return self._for_dir(directory)

    def _for_dir(self, directory: Path) -> Config:
        cached = self._cache.get(directory)
        if cached is not None:
            return cached
        config = None
        for name in ("codemod.toml", "pyproject.toml"):
            candidate = directory / name
            if os.path.isfile(candidate):  # False (not an error) in a directory that cannot be searched
                config = read_config_file(candidate, self.known)
                if config is not None:
                    break
        if config is None:
            parent = directory.parent
            config = self._for_dir(parent) if parent != directory else Config(root=Path(os.sep))
        self._cache[directory] = config
        return config


def _relative(path: Path, root: Path) -> str | None:
    try:
        return Path(os.path.realpath(path)).relative_to(os.path.realpath(root)).as_posix()
    except ValueError:
        return None


_glob_cache: dict[str, re.Pattern[str]] = {}


def _glob_match(pattern: str, path: str) -> bool:
    """gitignore-style glob: ``*`` within a segment, ``**`` across segments; a pattern without
    ``/`` matches at any depth."""
    regex = _glob_cache.get(pattern)
    if regex is None:
        p = pattern.strip("/")
        if "/" not in p:
            p = "**/" + p
        out = []
        i = 0
        while i < len(p):
            if p.startswith("**/", i):
                out.append("(?:.*/)?")
                i += 3
            elif p.startswith("**", i):
                out.append(".*")
                i += 2
            elif p[i] == "*":
                out.append("[^/]*")
                i += 1
            elif p[i] == "?":
                out.append("[^/]")
                i += 1
            elif p[i] == "[":
                j = p.find("]", i)
                if j == -1:
                    out.append(re.escape(p[i]))
                    i += 1
                else:
                    out.append(p[i : j + 1])
                    i = j + 1
            else:
                out.append(re.escape(p[i]))
                i += 1
        regex = re.compile("".join(out) + r"\Z")
        _glob_cache[pattern] = regex
    return regex.match(path) is not None
