"""Which files to analyse: the paths given, walked, filtered by each file's nearest config.

Every path is read inside a *tree*: the repository root above it (the nearest directory holding
``.git``, else the directory of the config that applies), or the path given when there is none.
A symlink whose target leaves that tree, a symlink loop and a dangling symlink are skipped with a
one-line reason (``symlink_problem``), never read as the repository's code; the writer applies the
same check, so nothing is written through a symlink to a path outside the tree. Directories that
cannot be read are skipped with the reason; the walk goes on.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from .config import Config, ConfigFinder, is_default_excluded


@dataclass(frozen=True)
class SourceFile:
    path: Path
    display: str  # as shown in reports (relative to the working directory when possible)
    config: Config
    root: Path | None = None  # the tree it was found in (resolved): its rewrite may not be written outside it


@dataclass(frozen=True)
class Skipped:
    """A path that was not analysed, and why (shown in every report format)."""

    path: Path
    display: str
    reason: str


class DiscoveryError(Exception):
    pass


def display_path(path: Path, base: Path | None = None) -> str:
    base = base or Path.cwd()
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(base)).as_posix()
    except ValueError:
        try:
            return Path(os.path.realpath(path)).relative_to(os.path.realpath(base)).as_posix()
        except ValueError:
            return path.as_posix()


def symlink_problem(path: Path | str, root: Path | str) -> str | None:
    """Why ``path`` must be neither read nor written as part of the tree under ``root``, or None.

    Resolves every symlink on the way (strictly): a loop, a dangling link or a target outside
    ``root`` is a problem, stated in a few words (``symlink loop``; ``dangling symlink (-> x.py)``;
    ``symlink to /etc/x.py, outside /repo; not followed``). A path without symlinks inside ``root``
    is never a problem. Shared by discovery, the writer and the verifier's copies.
    """
    try:
        target = os.path.realpath(path, strict=True)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR) and os.path.islink(path):
            return f"dangling symlink (-> {os.readlink(path)})"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None  # simply missing: the caller's error, not a symlink's
        return f"cannot resolve: {exc.strerror}"
    real_root = os.path.realpath(root)
    if not Path(target).is_relative_to(real_root):
        return f"symlink to {target}, outside {real_root}; not followed"
    return None


def tree_root(path: Path | str, finder: ConfigFinder | None = None) -> Path:
    """The repository root above ``path`` (resolved): the nearest directory holding ``.git``, else
    the directory of the config that applies to it, else ``path`` (a file: its directory)."""
    # A file's tree is the directory it was named in, not its target's (a symlink may point away).
    start = os.path.realpath(path) if os.path.isdir(path) else os.path.realpath(os.path.dirname(os.path.abspath(path)))
    current = start
    while True:
        if os.path.lexists(os.path.join(current, ".git")):
            return Path(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    if finder is not None and finder.explicit is None:
        source = finder.for_path(Path(start)).source
        if source is not None and Path(start).is_relative_to(os.path.realpath(source.parent)):
            return Path(os.path.realpath(source.parent))
    return Path(start)


def discover(
    paths: list[str], finder: ConfigFinder, base: Path | None = None, skipped: list[Skipped] | None = None
) -> list[SourceFile]:
    """Files to analyse, in a stable order. Explicit files are taken unless a config excludes
    them (so pre-commit hooks honour ``exclude``); directories are walked, skipping virtual
    environments, VCS and build directories and whatever ``exclude`` names. Paths that cannot be
    analysed (symlink problems, unreadable directories) go to ``skipped`` with the reason."""
    skipped = skipped if skipped is not None else []
    out: dict[str, SourceFile] = {}

    def skip(path: Path, reason: str) -> None:
        skipped.append(Skipped(path, display_path(path, base), reason))

    def take(file: Path, root: Path, explicit: bool) -> None:
        problem = symlink_problem(file, root) if explicit or os.path.islink(file) else None
        if problem:
            skip(file, problem)
            return
        config = finder.for_path(file)
        if (explicit or config.is_included(file)) and not config.is_excluded(file):
            out.setdefault(os.path.realpath(file), SourceFile(file, display_path(file, base), config, root))

    for raw in paths:
        path = Path(raw)
        try:
            os.lstat(path)
        except FileNotFoundError:
            raise DiscoveryError(f"{raw}: no such file or directory") from None
        except OSError as exc:
            skip(path, f"cannot access: {exc.strerror}")
            continue
        root = tree_root(path, finder)
        if not os.path.isdir(path):
            take(path, root, explicit=True)
            continue
        problem = symlink_problem(path, root)
        if problem:
            skip(path, problem)
            continue

        def unreadable(exc: OSError) -> None:
            skip(Path(exc.filename), f"cannot read directory: {exc.strerror}")

        for dirpath, dirnames, filenames in os.walk(path, onerror=unreadable):
            here = Path(dirpath)
            keep = []
            for d in sorted(dirnames):
                if is_default_excluded(d):
                    continue
                if os.path.islink(here / d):
                    # Not followed (``os.walk`` semantics); said when it could not be followed anyway.
                    reason = _directory_link_problem(here / d, root)
                    if reason:
                        skip(here / d, reason)
                    continue
                if not finder.for_path(here / d).is_excluded(here / d):
                    keep.append(d)
            dirnames[:] = keep
            for name in sorted(filenames):
                file = here / name
                if name.endswith(".py"):
                    take(file, root, explicit=False)
                elif "." not in name and os.path.islink(file):
                    # A broken link without a suffix may have been meant as a directory.
                    reason = symlink_problem(file, root)
                    if reason and not os.path.exists(file):
                        skip(file, reason)
    return list(out.values())


def _directory_link_problem(link: Path, root: Path) -> str | None:
    problem = symlink_problem(link, root)
    if problem:
        return problem
    target = os.path.realpath(link)
    if Path(os.path.abspath(link)).is_relative_to(target) or Path(os.path.realpath(link.parent)).is_relative_to(target):
        return f"symlink loop (-> {os.readlink(link)}, a directory that contains it); not followed"
    return None
