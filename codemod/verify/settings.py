"""Operator settings of verification: what the machine running ``codemod verify`` allows,
whatever a repository's config asks for.

A repository's ``[tool.codemod.smoke]`` says what to run (command, cases, device, timeout,
requirements); these settings bound it: the longest a run may take, memory, disk, processes, and
whether requirements are installed at all. They come from the caller (the GitHub App passes its
own :class:`OperatorSettings`) or from the environment of the process (``codemod verify``):

=================================  ===============================================  =========
variable                           meaning                                          default
=================================  ===============================================  =========
``CODEMOD_ALLOW_REQUIREMENTS``     install ``smoke.requirements`` (in the sandbox)  ``1``
``CODEMOD_SANDBOX_MAX_TIMEOUT``    longest smoke run, seconds (longer is clamped)   ``3600``
``CODEMOD_SANDBOX_MEMORY``         memory per run (cgroup; ``16G``, ``512M``)       ``16G``
``CODEMOD_SANDBOX_DISK``           all a run may write (its overlay's tmpfs)        ``4G``
``CODEMOD_SANDBOX_PROCESSES``      processes per run                                ``256``
``CODEMOD_SANDBOX_CPU_SECONDS``    CPU seconds per run                              ``900``
``CODEMOD_SANDBOX_FILE_SIZE``      largest file a run may write                     ``1G``
``CODEMOD_PIP_INDEX_URL``          index for ``smoke.requirements`` names           pip's own
``CODEMOD_SANDBOX_NAMESPACES``     ``0``: no namespaces (Landlock alone)            ``1``
``CODEMOD_SANDBOX_LANDLOCK``       ``0``: no Landlock domain                        ``1``
=================================  ===============================================  =========

The last two are read by :mod:`.sandbox` itself, once per process, when it probes the kernel.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from . import VerifyError
from .sandbox import Limits


@dataclass(frozen=True)
class OperatorSettings:
    allow_requirements: bool = True
    max_timeout: float = 3600.0
    memory_bytes: int | None = 16 << 30
    disk_bytes: int | None = 4 << 30
    processes: int | None = 256
    cpu_seconds: int | None = 900
    file_size_bytes: int | None = 1 << 30
    pip_index_url: str | None = None
    result_bytes: int = 512 << 20  # the largest result the harness may report

    def limits(self) -> Limits:
        return Limits(
            cpu_seconds=self.cpu_seconds,
            memory_bytes=self.memory_bytes,
            file_size_bytes=self.file_size_bytes,
            processes=self.processes,
            disk_bytes=self.disk_bytes,
        )

    def clamp_timeout(self, asked: float) -> float:
        return min(float(asked), float(self.max_timeout))

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if environ is None else environ
        kwargs: dict = {}
        if "CODEMOD_ALLOW_REQUIREMENTS" in env:
            kwargs["allow_requirements"] = _flag("CODEMOD_ALLOW_REQUIREMENTS", env["CODEMOD_ALLOW_REQUIREMENTS"])
        if "CODEMOD_SANDBOX_MAX_TIMEOUT" in env:
            kwargs["max_timeout"] = float(_count("CODEMOD_SANDBOX_MAX_TIMEOUT", env["CODEMOD_SANDBOX_MAX_TIMEOUT"], 1))
        for key, name in (
            ("memory_bytes", "CODEMOD_SANDBOX_MEMORY"),
            ("disk_bytes", "CODEMOD_SANDBOX_DISK"),
            ("file_size_bytes", "CODEMOD_SANDBOX_FILE_SIZE"),
        ):
            if name in env:
                kwargs[key] = _count(name, env[name], 1 << 20, sizes=True)
        for key, name in (("processes", "CODEMOD_SANDBOX_PROCESSES"), ("cpu_seconds", "CODEMOD_SANDBOX_CPU_SECONDS")):
            if name in env:
                kwargs[key] = _count(name, env[name], 1)
        if env.get("CODEMOD_PIP_INDEX_URL"):
            url = env["CODEMOD_PIP_INDEX_URL"]
            if not re.fullmatch(r"(https?|file)://[^\s]+", url):
                raise VerifyError(f"CODEMOD_PIP_INDEX_URL must be an http(s) or file URL, not {url!r}")
            kwargs["pip_index_url"] = url
        return cls(**kwargs)


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _flag(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise VerifyError(f"{name} must be 1 or 0 (true/false), not {value!r}")


def _count(name: str, value: str, least: int, sizes: bool = False) -> int:
    match = (
        re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", value, re.IGNORECASE)
        if sizes
        else re.fullmatch(r"\s*(\d+)\s*()", value)
    )
    if not match:
        raise VerifyError(
            f"{name} must be a whole number{' with an optional K/M/G/T suffix' if sizes else ''}, not {value!r}"
        )
    number = int(match.group(1)) * _UNITS[match.group(2).upper()]
    if number < least:
        raise VerifyError(f"{name} must be at least {least}, not {value!r}")
    return number


__all__ = ["OperatorSettings"]
