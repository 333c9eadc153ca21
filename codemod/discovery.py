"""Which files to analyse: the paths given, walked, filtered by each file's nearest config."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .config import Config, ConfigFinder, is_default_excluded


@dataclass(frozen=True)
class SourceFile:
    path: Path
    display: str  # as shown in reports (relative to the working directory when possible)
    config: Config


class DiscoveryError(Exception):
    pass


def display_path(path: Path, base: Path | None = None) -> str:
    base = base or Path.cwd()
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def discover(paths: list[str], finder: ConfigFinder, base: Path | None = None) -> list[SourceFile]:
    """Files to analyse, in a stable order. Explicit files are taken unless a config excludes
    them (so pre-commit hooks honour ``exclude``); directories are walked, skipping virtual
    environments, VCS and build directories and whatever ``exclude`` names."""
    out: dict[Path, SourceFile] = {}
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise DiscoveryError(f"{raw}: no such file or directory")
        if path.is_file():
            config = finder.for_path(path)
            if not config.is_excluded(path):
                out.setdefault(path.resolve(), SourceFile(path, display_path(path, base), config))
            continue
        for dirpath, dirnames, filenames in os.walk(path):
            here = Path(dirpath)
            dirnames[:] = sorted(
                d for d in dirnames
                if not is_default_excluded(d) and not finder.for_path(here / d).is_excluded(here / d)
            )
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                file = here / name
                config = finder.for_path(file)
                if config.is_included(file) and not config.is_excluded(file):
                    out.setdefault(file.resolve(), SourceFile(file, display_path(file, base), config))
    return list(out.values())
