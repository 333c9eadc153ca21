"""Build the project's Docker image with podman, for the container tests.

No registry but PyPI, Debian and npm is reachable here, so the base image is not pulled: a Debian
root file system is made with ``debootstrap`` and ``podman import``\\ ed, then the ``Dockerfile`` is
built on it with ``--build-arg BASE_IMAGE=...``. Pip inside the build gets this machine's package
settings (its CA bundle, its index settings, its local wheel directories) as build secrets and
read-only volumes, derived from ``pip config list``: nothing machine-specific is in the Dockerfile.

Slow steps are cached: the base image's tarball under ``CODEMOD_TEST_CACHE`` (default
``~/.cache/torch-codemod-tests``), keyed by the debootstrap inputs, and the image's layers in
podman's own store. Podman runs with ``runc`` and cgroupfs (crun refuses hybrid cgroups) and with
ulimits no higher than the current ones.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
MIRROR = os.environ.get("CODEMOD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# python3-venv: the Dockerfile makes a venv; git and ca-certificates come with its last stage.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
IMAGE = "localhost/torch-codemod:test"


def podman_argv() -> list[str]:
    return ["podman", "--runtime", "runc", "--cgroup-manager=cgroupfs"]


def ulimits() -> list[str]:
    import resource

    out = []
    for name, rlimit in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        soft, hard = resource.getrlimit(rlimit)
        value = min(1024, soft if soft != resource.RLIM_INFINITY else 1024)
        out += ["--ulimit", f"{name}={value}:{value}"]
    return out


def podman(*args: str, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([*podman_argv(), *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        # pip's notes about an index's missing projects would push the error out of the tail
        stderr = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("WARNING: Location"))
        raise RuntimeError(f"podman {' '.join(args[:3])} failed ({proc.returncode}): {stderr[-3000:]}")
    return proc


def unavailable() -> str | None:
    """Why the container tests cannot run here, or None."""
    for tool in ("podman", "runc", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install podman runc debootstrap uidmap)"
    if os.geteuid() != 0:
        return "debootstrap and rootful podman need root"
    try:
        proc = podman("info", check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"podman info failed: {exc}"
    if proc.returncode != 0:
        return f"podman info failed: {proc.stderr.strip()[-500:]}"
    return None


def cache_dir() -> Path:
    path = Path(os.environ.get("CODEMOD_TEST_CACHE", Path.home() / ".cache" / "torch-codemod-tests"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def base_image() -> str:
    """The Debian base image's tag, imported from the cached tarball or debootstrapped first."""
    key = hashlib.sha256(repr((SUITE, MIRROR, BASE_PACKAGES, "minbase")).encode()).hexdigest()[:16]
    tag = f"localhost/codemod-base:{key}"
    if podman("image", "exists", tag, check=False).returncode == 0:
        return tag
    tarball = cache_dir() / f"debian-{SUITE}-{key}.tar"
    if not tarball.exists():
        with tempfile.TemporaryDirectory(prefix="codemod-rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            proc = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    SUITE,
                    str(rootfs),
                    MIRROR,
                ],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"debootstrap failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for entry in (rootfs / junk).glob("*"):
                    if entry.is_file():
                        entry.unlink()
            partial = tarball.with_suffix(".partial")
            subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
            partial.rename(tarball)
    podman("import", "--change", 'CMD=["/bin/bash"]', str(tarball), tag)
    return tag


def _pip_config() -> dict[str, str]:
    """This machine's effective pip settings (files and PIP_* variables), as ``pip config list``."""
    proc = subprocess.run(["python3", "-m", "pip", "config", "list"], capture_output=True, text=True)
    settings: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^(?::env:|global|install)\.([\w-]+)='(.*)'$", line.strip())
        if m:
            settings[m.group(1)] = m.group(2)
    return settings


def build_inputs(workdir: Path) -> tuple[list[str], dict[str, str]]:
    """podman build options that hand this machine's pip settings to the build: a pip.conf and the CA
    bundle as secrets, and every local directory they name as a read-only volume at the same path.
    Returns (options, the pip settings used)."""
    settings = _pip_config()
    options: list[str] = []
    lines = ["[global]"]
    volumes: set[str] = set()
    for key, value in settings.items():
        if key == "cert":
            shutil.copyfile(value, workdir / "pip-ca")
            options += ["--secret", f"id=pip-ca,src={workdir / 'pip-ca'}"]
            lines.append("cert = /run/secrets/pip-ca")
            continue
        if key in ("constraint", "requirement"):
            shutil.copyfile(value, workdir / "pip-constraints.txt")
            volumes.add(str(workdir))
            value = str(workdir / "pip-constraints.txt")
        for item in value.split():
            local = item[len("file://") :] if item.startswith("file://") else item
            if local.startswith("/") and Path(local).exists():
                # a file index's pages link to ../files/...: its parent goes in whole
                volumes.add(
                    str(Path(local).parent) if item.startswith("file://") or not Path(local).is_dir() else local
                )
        lines.append(f"{key} = {value}")
    (workdir / "pip.conf").write_text("\n".join(lines) + "\n")
    options += ["--secret", f"id=pip.conf,src={workdir / 'pip.conf'}"]
    for path in sorted(volumes):
        options += ["-v", f"{path}:{path}:ro"]
    return options, settings


def build_image(tag: str = IMAGE) -> tuple[str, float]:
    """Build the Dockerfile on the debootstrapped base; returns (tag, seconds the build took)."""
    base = base_image()
    with tempfile.TemporaryDirectory(prefix="codemod-build-") as tmp:
        options, _ = build_inputs(Path(tmp))
        start = time.monotonic()
        # docker format: the OCI image format has no HEALTHCHECK
        podman(
            "build",
            "--format",
            "docker",
            "--network",
            "host",
            "--layers",
            "-f",
            str(ROOT / "Dockerfile"),
            "--build-arg",
            f"BASE_IMAGE={base}",
            "--build-arg",
            "TORCH_INDEX_URL=",
            *options,
            "-t",
            tag,
            str(ROOT),
            timeout=1800,
        )
        return tag, time.monotonic() - start
