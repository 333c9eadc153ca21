"""Pieces `codemod verify` uses to run the smoke command under the locator (see codemod/verify/runner.py).

* :func:`default_smoke_tests` / :func:`default_smoke_command`: for a repository without
  ``[tool.codemod.smoke]``, the test files that import a rewritten module (directly, or through
  modules of the repository that do), found by a text scan of import lines (verification never
  parses Python), and the pytest command that runs them.
* :func:`smoke_hazards`: after a smoke command ran with :func:`codemod.locate.run.located_environment`
  (``until="exit"``), the merged hazards of every process, in the shape the runner's
  ``report.hazards`` uses (``write``/``saved_by`` with ``path`` and ``line``), so its
  confirmed-lines upgrade applies to them unchanged. It trusts the directory (a run of the user's own
  command); ``codemod verify``, whose command is untrusted, reads it with
  :func:`codemod.verify.located.read_located` instead.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

from ..config import is_default_excluded
from .merge import merge_reports
from .run import read_reports

_FROM = re.compile(r"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]+)", re.M)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([^\n#;]+)", re.M)
_NAME = re.compile(r"[A-Za-z_][\w.]*")


def module_name(relative: str) -> str:
    """``src/pkg/mod.py`` -> ``pkg.mod``; ``pkg/__init__.py`` -> ``pkg``."""
    parts = Path(relative).with_suffix("").parts
    if parts and parts[0] == "src":
        parts = parts[1:]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _python_files(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_default_excluded(d) and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(".py"):
                out.append(Path(dirpath, name).relative_to(root).as_posix())
    return out


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every module an import line of ``source`` may load (with its parent packages)."""
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for dots, name, names in _FROM.findall(source):
        if dots:
            base_parts = package.split(".") if package else []
            base_parts = base_parts[: len(base_parts) - (len(dots) - 1)] if len(dots) > 1 else base_parts
            base = ".".join(p for p in [*base_parts, name] if p)
        else:
            base = name
        if not base:
            continue
        out.update(_with_parents(base))
        out.update(f"{base}.{n.split('.')[0]}" for n in _NAME.findall(names.replace(" as ", " , ")))
    for names in _IMPORT.findall(source):
        for item in names.split(","):
            found = _NAME.match(item.strip())
            if found:
                out.update(_with_parents(found.group(0)))
    return out


def _is_test_file(relative: str) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return (name.startswith("test_") or name.endswith("_test.py")) and name.endswith(".py")


def default_smoke_tests(root: Path, rewritten: list[str]) -> list[str]:
    """Test files (``test_*.py``, ``*_test.py``) that import a rewritten file's module, directly or
    through other modules of the repository; paths relative to ``root``."""
    files = _python_files(root)
    modules = {module_name(f): f for f in files if not _is_test_file(f)}
    targets = {module_name(r) for r in rewritten}
    graph: dict[str, set[str]] = {}
    for f in files:
        try:
            source = (root / f).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        name = module_name(f) if not _is_test_file(f) else f
        graph[name] = {m for m in imported_modules(source, module_name(f), f.endswith("__init__.py")) if m in modules}
    reaches: dict[str, bool] = {}

    def reaches_target(start: str) -> bool:
        seen, todo = {start}, [start]
        while todo:
            current = todo.pop()
            if current in targets and current != start:
                return True
            for nxt in graph.get(current, ()):
                if nxt in targets:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    for f in files:
        if _is_test_file(f):
            reaches[f] = reaches_target(f)
    return sorted(f for f, hit in reaches.items() if hit)


def default_smoke_command(root: Path, rewritten: list[str], python: str = "python") -> str | None:
    """``python -m pytest -q ...`` over :func:`default_smoke_tests`; None when no test imports them."""
    tests = default_smoke_tests(root, rewritten)
    if not tests:
        return None
    return " ".join([shlex.quote(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(shlex.quote, tests)])


def smoke_hazards(report_dir: str) -> list[dict[str, Any]]:
    """The located run's hazards (every process, merged), as JSON-ready dicts."""
    return [hazard.to_json() for hazard in merge_reports(read_reports(report_dir))]
