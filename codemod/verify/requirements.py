"""``smoke.requirements``: checked in the parent, installed only inside the sandbox.

A requirement is untrusted twice: its *string* reaches pip's command line, and installing a local
path runs the repository's build backend. So:

* only two forms are accepted, each checked here: a PEP 508 requirement naming a distribution
  (``einops>=0.7``, extras and markers allowed; no ``name @ URL``), or a path inside the
  repository (``./vendor/x.whl``, ``./pkg``; resolved, symlinks included, and refused if it
  leaves the repository). Anything else, options first (``-r FILE``, ``--index-url=...``,
  ``--log=PATH``), is refused with a one-line reason before pip runs;
* a fresh virtual environment is made per verification (never shared between repositories) on top
  of this one (torch and torch-codemod come from here through a ``.pth`` file);
* **download** (only when names are asked for): ``pip download --only-binary=:all:`` in the
  sandbox with network, into a wheelhouse; wheels only, so no package's code runs while the
  network is there;
* **install**: ``pip install --no-index`` in the sandbox *without* network, from the wheelhouse
  and a throwaway copy of the repository (local paths build here, with the repository's backend,
  as the sandbox's uid, in its minimal root); the environment is the only writable path;
* the operator can turn requirements off (:class:`.settings.OperatorSettings`); the verdict then
  says that the smoke tests could not run and why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from . import VerifyError
from .sandbox import Limits, SandboxResult, hand_over, run_sandboxed


@dataclass(frozen=True)
class Requirement:
    text: str  # as written in the config
    path: str | None  # for a local path: relative to the repository root (posix)


def check_requirements(requirements: tuple[str, ...] | list[str], root: Path) -> list[Requirement]:
    """Each requirement as a name or a path inside ``root``; a VerifyError names the first bad one."""
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as Pep508

    root = Path(os.path.realpath(root))
    out = []
    for raw in requirements:
        text = raw.strip()
        where = f"smoke.requirements: {raw!r}"
        if not text or text.startswith("-"):
            raise VerifyError(
                f"{where} is a pip option, not a requirement (only PEP 508 requirements and "
                "./paths inside the repository are accepted)"
            )
        if text.startswith(("./", "../")) or text in (".", ".."):
            real = Path(os.path.realpath(root / text))
            if not real.is_relative_to(root):
                raise VerifyError(f"{where} leaves the repository")
            if not real.exists():
                raise VerifyError(f"{where}: no such file or directory in the repository")
            out.append(Requirement(raw, real.relative_to(root).as_posix() or "."))
            continue
        try:
            parsed = Pep508(text)
        except InvalidRequirement as exc:
            raise VerifyError(f"{where} is not a PEP 508 requirement ({str(exc).splitlines()[0]})") from None
        if parsed.url:
            raise VerifyError(
                f"{where}: direct URL references are not accepted (name a distribution of the "
                "index, or vendor the file in the repository and give its ./path)"
            )
        out.append(Requirement(raw, None))
    return out


def _make_environment(env_dir: Path) -> str:
    """A venv (no pip) that also sees this interpreter's site-packages."""
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        raise VerifyError(
            f"cannot create the environment for smoke.requirements: "
            f"{(exc.stderr or b'').decode(errors='replace').strip() or exc}"
        ) from exc
    parents = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    Path(site_packages(env_dir), "_codemod_parent.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in parents)
    )
    return str(env_dir / "bin" / "python")


def site_packages(env_dir: Path) -> str:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(env_dir / "lib" / version / "site-packages")


def _last_line(result: SandboxResult) -> str:
    if result.timed_out:
        return f"timed out after {result.seconds:.0f} s"
    lines = [line.strip() for line in (result.stdout + "\n" + result.stderr).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR:", "error:", "codemod sandbox:"))]
    return (errors or lines or [f"exit {result.returncode}"])[-1][:300]


def install_requirements(
    requirements: list[Requirement],
    copy: Path,
    work: Path,
    *,
    timeout: float,
    limits: Limits,
    index_url: str | None = None,
) -> tuple[str, str]:
    """Install into a fresh environment under ``work``; ``copy`` is a throwaway copy of the
    repository (local paths are built from it). Returns the environment's python and its
    site-packages. A VerifyError says which step failed, in one line."""
    env_dir = work / "requirements-env"
    python = _make_environment(env_dir)
    link = os.readlink(python)
    wheelhouse = work / "wheelhouse"
    wheelhouse.mkdir()
    pip = [sys.executable, "-m", "pip", "--isolated", "--no-input", "--disable-pip-version-check", "--no-cache-dir"]
    names = [r.text.strip() for r in requirements if r.path is None]
    paths = [str(copy / r.path) for r in requirements if r.path is not None]
    if names:
        empty = work / "download"
        empty.mkdir()
        index = ["--index-url", index_url] if index_url else []
        result = run_sandboxed(
            [*pip, "download", "--only-binary=:all:", "--dest", str(wheelhouse), *index, "--", *names],
            empty,
            timeout=timeout,
            limits=limits,
            network=True,
            writable=[wheelhouse],
        )
        hand_over(wheelhouse, os.getuid(), os.getgid())
        if not result.ok:
            raise VerifyError(f"cannot download smoke.requirements {names}: {_last_line(result)}")
    result = run_sandboxed(
        [
            *pip,
            "--python",
            python,
            "install",
            "--no-index",
            "--find-links",
            str(wheelhouse),
            "--no-build-isolation",
            "--",
            *names,
            *paths,
        ],
        copy,
        timeout=timeout,
        limits=limits,
        network=False,
        writable=[env_dir],
        visible=[wheelhouse],
    )
    hand_over(env_dir, os.getuid(), os.getgid())  # back from the run's uid: read-only for every later run
    if not result.ok:
        raise VerifyError(f"cannot install smoke.requirements {[r.text for r in requirements]}: {_last_line(result)}")
    if not os.path.islink(python) or os.readlink(python) != link:
        raise VerifyError("the smoke.requirements install replaced the environment's python; refusing to use it")
    return python, site_packages(env_dir)


__all__ = ["Requirement", "check_requirements", "install_requirements", "site_packages"]
