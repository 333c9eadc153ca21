"""Run one command of an untrusted repository in a sandboxed child process.

``codemod verify`` runs a user's smoke tests, which is running code we have never read. Everything
goes through :func:`run_sandboxed`, which starts a small *launcher* (this file run as a script by
the same interpreter, ``python -I -S sandbox.py --stage1``, with an empty environment, so nothing of
the repository can influence it) that sets the sandbox up while it still has the parent's
privileges, and then ``execve``\\ s the command. The launcher reads its settings
and the child's environment from a private pipe (never argv) and reports setup or ``exec`` failures
through a close-on-exec pipe, so a failure has a clear message instead of a bare exit code.

Which isolation is active, and when (:func:`detect_isolation` probes once per process, in a real
launcher, so what it reports is what the kernel allowed, not what we hoped):

* **Environment** (always): the child sees only ``PATH`` (the interpreter's ``bin`` first),
  ``LANG``/``LC_*``, ``TZ``, ``PYTHONHASHSEED`` (``0`` unless set), a fresh ``HOME`` and ``TMPDIR``
  under ``WORKDIR/.codemod-sandbox/``, ``USER``/``LOGNAME``, and the keys passed in ``env``. Keys
  that look like credentials (``*TOKEN*``, ``*SECRET*``, ``GITHUB_*``, ``AWS_*`` ...) are refused
  even when passed explicitly.
* **Process group** (always): the child starts its own session; after the command ends or times
  out, the whole group is killed with SIGKILL before the output pipes are drained.
* **Network** (``network=False``, the default): as root, ``unshare(CLONE_NEWNET)`` (via ctypes in
  the launcher) gives a network namespace whose only interface is a loopback that is down, so even
  ``127.0.0.1`` is unreachable. Not root: the same inside a new user namespace
  (``CLONE_NEWUSER``), where the kernel allows unprivileged user namespaces. Else, when
  ``bwrap`` is installed and works: ``bwrap --unshare-net --unshare-pid --die-with-parent`` (its
  namespace has its own loopback, up; the host's is unreachable; killing bwrap ends its PID
  namespace, so on this path processes that left the group die too).
  Else none, and :class:`Isolation` says ``"none: <why>"``.
* **User** (started as root): the command runs as a *dedicated* uid/gid, picked at random for
  this run from a range with no passwd entry and no running process (so killing "every process of
  that uid" cannot hit anything else, and ``RLIMIT_NPROC`` counts only this run), with no
  supplementary groups, no capabilities and ``PR_SET_NO_NEW_PRIVS`` (setuid binaries gain
  nothing). The workdir tree is ``lchown``\\ ed to it (hard-linked files are skipped: a link could
  point outside). A passwd/group entry ``codemod-sandbox`` is bind-mounted in the child's mount
  namespace so ``getpass``/``pwd`` work. Directories on the way to the interpreter or the workdir
  that others cannot search (``/root`` is ``0700``, and pyenv lives there) are covered, in the
  child's mount namespace only, by a read-only tmpfs that holds just the needed entries,
  bind-mounted back; the rest of such a directory stays invisible. Not root: the uid is unchanged.
* **Filesystem** (where a mount namespace can be made: as root, or in a user namespace): every
  mount is made read-only and ``nosuid`` (``mount_setattr(AT_RECURSIVE)``, Linux >= 5.12) except
  the workdir; ``/tmp``, ``/var/tmp`` and ``/dev/shm`` are fresh private tmpfs (each capped at
  ``file_size_bytes`` when set), so nothing outside the workdir can be written, even by a root
  child.
  Mounts never propagate back (``MS_PRIVATE``). Else ordinary permissions only.
* **Limits** (always, via ``setrlimit`` in the launcher): ``RLIMIT_CPU``, ``RLIMIT_AS``,
  ``RLIMIT_FSIZE``, ``RLIMIT_NPROC`` (the kernel ignores it for root) and ``RLIMIT_CORE=0``.
  ``None`` leaves a limit as inherited.
* **Timeout and stragglers**: on the wall-clock timeout, and also after a normal exit, the process
  group is killed, and with a dedicated uid every process of that uid is killed too
  (``kill(-1, SIGKILL)`` from a helper running as that uid, which the kernel performs atomically
  with respect to ``fork``, so a fork bomb or a ``setsid`` daemon cannot outrun it), repeated until
  ``/proc`` shows none alive. Without a dedicated uid only the process group is killed: a process
  that calls ``setsid()`` escapes (a stated limitation).

Output is read by threads (no pipe deadlock) and only the last ``OUTPUT_CAP`` bytes of each stream
are kept. Not covered: the child can see other processes in ``/proc`` (no PID namespace) and can
use filesystem unix sockets its uid has permission for; if the parent is SIGKILLed mid-run, the
child is not cleaned up.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import random
import re
import resource
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

OUTPUT_CAP = 1 << 20
"""Bytes kept of each of stdout and stderr (the last ones)."""

SANDBOX_DIR = ".codemod-sandbox"
"""Directory in the workdir holding the child's fresh HOME and TMPDIR."""

SANDBOX_USER = "codemod-sandbox"


@dataclass(frozen=True)
class Limits:
    """Resource limits of the child (``None`` = leave as inherited)."""

    cpu_seconds: int | None = 900          # RLIMIT_CPU
    memory_bytes: int | None = 16 << 30    # RLIMIT_AS (None = unlimited; CUDA needs None)
    file_size_bytes: int | None = 1 << 30  # RLIMIT_FSIZE
    processes: int | None = 256            # RLIMIT_NPROC (effective only for a non-root uid)


@dataclass(frozen=True)
class Isolation:
    """What isolation a run had (or a default run will have), in words for the verdict."""

    network: str   # e.g. "network namespace (...)" or "none: <why>"
    user: str      # e.g. "uid 1500123456 (dedicated ...)" or "unchanged: not started as root"
    limits: str    # e.g. "cpu 900 s, memory 16 GiB, file 1 GiB, 256 processes"
    filesystem: str = "unchanged"

    def describe(self) -> str:
        return f"network: {self.network}; user: {self.user}; filesystem: {self.filesystem}; limits: {self.limits}"


@dataclass
class SandboxResult:
    """One finished (or killed) run. ``returncode`` is ``None`` when the run timed out, negative
    for a signal; 126/127 with a ``codemod sandbox:`` line in ``stderr`` when the sandbox could not
    be set up or the command could not be executed."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float
    isolation: Isolation

    @property
    def ok(self) -> bool:
        return not self.timed_out and self.returncode == 0


# ---------------------------------------------------------------------------------------------------
# The launcher (stage 1): runs as a script, as the parent's user, in the child process.
# Only the standard library; every step raises OSError with the step's name on failure.

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 4096, 16384, 1 << 18
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
SYS_MOUNT_SETATTR = 442        # the same number on every architecture (new syscall table)
PR_SET_NO_NEW_PRIVS = 38


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.unshare.argtypes = [ctypes.c_int]
    return libc


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _unshare(flags: int, what: str) -> None:
    _check(_libc().unshare(flags), f"unshare({what})")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: None if s is None else os.fsencode(s))
    _check(_libc().mount(enc(source), enc(target), enc(fstype), flags, enc(data)),
           f"mount {source or ''} on {target}")


def _mount_setattr(path: str, set_: int = 0, clear: int = 0, recursive: bool = True) -> None:
    attr = _MountAttr(set_, clear, 0, 0)
    ret = _libc().syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), ctypes.c_char_p(os.fsencode(path)),
                          ctypes.c_uint(AT_RECURSIVE if recursive else 0), ctypes.byref(attr),
                          ctypes.c_size_t(ctypes.sizeof(attr)))
    _check(ret, f"mount_setattr({path}{', recursive' if recursive else ''})")


def _enter_user_namespace() -> None:
    """Unprivileged path: a user namespace mapping our own uid/gid to themselves gives the
    capabilities to make network and mount namespaces; ``execve`` of a non-zero uid drops them."""
    uid, gid = os.getuid(), os.getgid()
    _unshare(CLONE_NEWUSER, "CLONE_NEWUSER")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _mask_directory(directory: str, keep: list[str], mode: int, size: int | None) -> None:
    """Cover ``directory`` with a fresh tmpfs, then bind the ``keep`` paths (files or directories
    below it, opened before the cover) back at their places, with 0755 directories on the way."""
    handles = [(path, os.open(path, os.O_PATH | os.O_CLOEXEC), os.path.isdir(path)) for path in keep]
    options = f"mode={mode:o}" + (f",size={size}" if size else "")
    _mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, options)
    for path, fd, is_dir in handles:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        if is_dir:
            os.makedirs(path, mode=0o755, exist_ok=True)
        else:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)


def _isolate_filesystem(fs: dict) -> None:
    """Private mount namespace: expose hidden paths, bind passwd/group, read-only everything but
    the workdir, fresh scratch directories."""
    _unshare(CLONE_NEWNS, "CLONE_NEWNS")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    for mask in fs["expose"]:
        _mask_directory(mask["dir"], mask["keep"], 0o755, 1 << 20)
    for source, target in fs["binds"]:
        _mount(source, target, None, MS_BIND)
    workdir = fs["workdir"]
    _mount(workdir, workdir, None, MS_BIND | MS_REC)
    if os.path.isdir("/proc/sys"):
        _mount("/proc/sys", "/proc/sys", None, MS_BIND | MS_REC)   # its own mount: stays read-only below
    _mount_setattr("/", set_=MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID)
    _mount_setattr(workdir, clear=MOUNT_ATTR_RDONLY)
    try:  # /proc itself stays writable (a nested sandbox writes /proc/self/uid_map); /proc/sys does not
        _mount_setattr("/proc", clear=MOUNT_ATTR_RDONLY, recursive=False)
    except OSError:
        pass  # it was read-only (and locked) before: keep it so
    for mask in fs["scratch"]:
        _mask_directory(mask["dir"], mask["keep"], 0o1777, mask["size"])


def _apply_limits(rlimits: dict[str, list[int]]) -> None:
    for name, (soft, hard) in rlimits.items():
        resource.setrlimit(getattr(resource, name), (soft, hard))


def _drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if (os.getuid(), os.geteuid(), os.getgid(), os.getegid()) != (uid, uid, gid, gid):
        raise OSError(errno.EPERM, f"still uid {os.getuid()} after setuid({uid})")


def _no_new_privileges() -> None:
    _check(_libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def _setup(cfg: dict) -> None:
    """The launcher's steps, in order; the first failure aborts the run."""
    os.umask(0o022)
    if cfg["userns"]:
        _enter_user_namespace()
    if cfg["net"]:
        _unshare(CLONE_NEWNET, "CLONE_NEWNET")
    if cfg["fs"] is not None:
        _isolate_filesystem(cfg["fs"])
    _apply_limits(cfg["rlimits"])
    _no_new_privileges()
    if cfg["uid"] is not None:
        _drop_privileges(cfg["uid"], cfg["gid"])
    os.chdir(cfg["workdir"])


def _probe_steps(cfg: dict) -> dict[str, str | None]:
    """Try each step once (in this throwaway launcher) and say which failed and why."""
    report: dict[str, str | None] = {"userns": None, "net": None, "fs": None, "uid": None}

    def attempt(key: str, step) -> None:  # type: ignore[no-untyped-def]
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - the probe reports every failure as text
            report[key] = str(exc) or type(exc).__name__

    if cfg["userns"]:
        attempt("userns", _enter_user_namespace)
        if report["userns"]:
            report["net"] = report["fs"] = f"no user namespace: {report['userns']}"
            return report
    if cfg["net"]:
        attempt("net", lambda: _unshare(CLONE_NEWNET, "CLONE_NEWNET"))
    if cfg["fs"] is not None:
        attempt("fs", lambda: _isolate_filesystem(cfg["fs"]))
    if cfg["uid"] is not None:
        attempt("uid", lambda: (_no_new_privileges(), _drop_privileges(cfg["uid"], cfg["gid"])))
    return report


def _stage1(args: list[str]) -> int:
    """Entry point of the launcher: ``--stage1 CONFIG_FD STATUS_FD -- ARGV...``."""
    config_fd, status_fd = int(args[0]), int(args[1])
    argv = args[3:]
    os.set_inheritable(status_fd, False)
    with os.fdopen(config_fd, "rb") as f:
        cfg = json.loads(f.read())
    if cfg.get("probe"):
        sys.stdout.write(json.dumps(_probe_steps(cfg)))
        return 0

    def fail(message: str, code: int) -> int:
        os.write(status_fd, message.encode(errors="replace"))
        return code

    try:
        _setup(cfg)
    except Exception as exc:  # noqa: BLE001 - any setup failure is reported, not half-run
        return fail(f"sandbox setup failed: {exc}", 126)
    try:
        os.execvpe(argv[0], argv, cfg["env"])
    except OSError as exc:
        who = f" as uid {cfg['uid']}" if cfg["uid"] is not None else ""
        hint = " (every directory on its path must be searchable by that uid)" if exc.errno == errno.EACCES else ""
        return fail(f"cannot run {argv[0]!r}{who}: {exc.strerror}{hint}", 127 if exc.errno == errno.ENOENT else 126)
    return 126  # not reached


# ---------------------------------------------------------------------------------------------------
# The parent side.

_CREDENTIAL_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|PRIVATE_?KEY|API_?KEY|ACCESS_?KEY|AUTH(?!OR)|COOKIE")
_CREDENTIAL_PREFIXES = ("GITHUB_", "GH_", "AWS_", "AZURE_", "GOOGLE_", "GCP_", "GCLOUD_", "SSH_", "GPG_", "NPM_",
                        "PYPI_", "TWINE_", "OPENAI_", "ANTHROPIC_")
_UID_RANGES = ((1_500_000_000, 1_000_000), (61_184, 4_000))
_uids_in_use: set[int] = set()
_uids_lock = threading.Lock()


class SandboxError(RuntimeError):
    """The sandbox was asked for something it cannot do (bad workdir, credential in ``env``)."""


def looks_like_credential(name: str) -> bool:
    upper = name.upper()
    return upper.startswith(_CREDENTIAL_PREFIXES) or bool(_CREDENTIAL_NAME.search(upper))


def _child_environment(workdir: Path, env: Mapping[str, str] | None) -> dict[str, str]:
    """The allow-listed environment: nothing of the parent's but locale, PATH, TZ, hash seed."""
    parent = os.environ
    out = {k: v for k, v in parent.items() if k in ("LANG", "TZ") or k.startswith("LC_")}
    interpreter_bin = os.path.dirname(sys.executable)
    path = parent.get("PATH") or "/usr/local/bin:/usr/bin:/bin"
    if interpreter_bin not in path.split(os.pathsep):
        path = interpreter_bin + os.pathsep + path
    home = workdir / SANDBOX_DIR / "home"
    out.update(PATH=path, HOME=str(home), TMPDIR=str(workdir / SANDBOX_DIR / "tmp"),
               PYTHONHASHSEED=parent.get("PYTHONHASHSEED", "0"), USER=SANDBOX_USER, LOGNAME=SANDBOX_USER)
    for key, value in (env or {}).items():
        if looks_like_credential(key):
            raise SandboxError(f"refusing to pass {key} into the sandbox: the name looks like a credential")
        out[key] = str(value)
    return out


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def _describe_limits(limits: Limits, root_child: bool) -> str:
    parts = [f"cpu {limits.cpu_seconds} s" if limits.cpu_seconds is not None else "cpu unlimited",
             f"memory {_size(limits.memory_bytes)}" if limits.memory_bytes is not None else "memory unlimited",
             f"file {_size(limits.file_size_bytes)}" if limits.file_size_bytes is not None else "file unlimited"]
    if limits.processes is None:
        parts.append("processes unlimited")
    else:
        parts.append(f"{limits.processes} processes" + (" (not enforced for root)" if root_child else ""))
    return ", ".join(parts)


def _rlimits(limits: Limits) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {"RLIMIT_CORE": [0, 0]}
    if limits.cpu_seconds is not None:
        out["RLIMIT_CPU"] = [limits.cpu_seconds, limits.cpu_seconds + 1]   # SIGXCPU, then SIGKILL
    for name, value in (("RLIMIT_AS", limits.memory_bytes), ("RLIMIT_FSIZE", limits.file_size_bytes),
                        ("RLIMIT_NPROC", limits.processes)):
        if value is not None:
            out[name] = [value, value]
    return out


def _mapped(uid: int, map_file: str) -> bool:
    try:
        with open(map_file) as f:
            rows = [tuple(int(x) for x in line.split()) for line in f if line.strip()]
    except OSError:
        return True
    return any(inside <= uid < inside + count for inside, _outside, count in rows)


def _processes_of(uid: int) -> list[int]:
    """Pids whose real uid is ``uid`` and that are not zombies."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1 ").split()[0]) == uid and not fields.get("State", "").strip().startswith("Z"):
            pids.append(int(entry))
    return pids


def _allocate_uid() -> int:
    """A uid (and the gid of the same number) nobody uses: no passwd/group entry, no process."""
    import grp
    import pwd

    for base, span in _UID_RANGES:
        if not (_mapped(base, "/proc/self/uid_map") and _mapped(base + span - 1, "/proc/self/uid_map")
                and _mapped(base, "/proc/self/gid_map") and _mapped(base + span - 1, "/proc/self/gid_map")):
            continue
        for _ in range(64):
            uid = base + random.randrange(span)
            with _uids_lock:
                if uid in _uids_in_use:
                    continue
                try:
                    pwd.getpwuid(uid)
                    continue
                except KeyError:
                    pass
                try:
                    grp.getgrgid(uid)
                    continue
                except KeyError:
                    pass
                if _processes_of(uid):
                    continue
                _uids_in_use.add(uid)
                return uid
    raise SandboxError("no free uid for the sandbox (is the uid map of this container too small?)")


def _release_uid(uid: int) -> None:
    with _uids_lock:
        _uids_in_use.discard(uid)


def _kill_every_process_of(uid: int, gid: int) -> None:
    """SIGKILL every process of ``uid``: a helper becomes ``uid`` and calls ``kill(-1)``, which the
    kernel applies to all of them at once (a fork cannot slip through), until none is left."""
    deadline = time.monotonic() + 5.0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # fork with threads (3.12+)
            pid = os.fork()
        if pid == 0:
            try:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        if not _processes_of(uid) or time.monotonic() > deadline:
            return
        time.sleep(0.02)


def _hand_over(workdir: Path, uid: int, gid: int) -> None:
    """Make the workdir tree the sandbox uid's. Symlinks are changed, not followed; regular files
    with several hard links are skipped (one could be a link to a file outside the workdir)."""
    for top, dirs, files in os.walk(workdir):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                continue
            os.chown(path, uid, gid, follow_symlinks=False)
    os.chown(workdir, uid, gid)


def _searchable(path: str, uid: int, gid: int) -> bool:
    st = os.stat(path)
    bit = stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid == gid else stat.S_IXOTH
    return bool(st.st_mode & bit)


def _paths_the_child_needs(program: str | None, workdir: Path, extra: Iterable[str | Path] = ()) -> set[str]:
    """The program, the workdir, ``extra`` and this interpreter's files (the harness imports
    torch and codemod from them), unresolved and resolved."""
    items = {str(workdir), sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix, *map(str, extra)}
    items.update(p for p in sys.path if p and os.path.isabs(p) and os.path.exists(p))
    if program:
        items.add(program)
        venv = os.path.dirname(os.path.dirname(program))
        if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
            items.add(venv)
    return {q for p in items for q in (os.path.abspath(p), os.path.realpath(p))}


def _expose_plan(paths: set[str], uid: int, gid: int) -> list[dict]:
    """For every directory on the way to ``paths`` that ``uid`` cannot search: the entries below it
    that must stay visible. Shallow directories first (deeper ones are masked through them)."""
    keep: dict[str, set[str]] = {}
    for path in paths:
        parts = Path(path).parts
        for i in range(1, len(parts)):
            directory = os.path.join(*parts[:i])
            try:
                if _searchable(directory, uid, gid):
                    continue
            except OSError:
                break
            keep.setdefault(directory, set()).add(os.path.join(directory, parts[i]))
    return [{"dir": d, "keep": sorted(keep[d])} for d in sorted(keep, key=lambda d: (d.count("/"), d))]


def _scratch_plan(workdir: Path, size: int | None, needed: Iterable[str] = ()) -> list[dict]:
    """Fresh tmpfs for the world-writable scratch directories. What the child needs that lives in
    one of them stays visible, bound back at its place: the workdir (tempfile.mkdtemp puts it in
    /tmp) and the interpreter or virtual environment (a CI checkout under /tmp has its venv there);
    those binds keep their mount's flags, so everything but the workdir stays read-only."""
    out, seen = [], set()
    wanted = {str(workdir), *needed}
    for name in ("/tmp", "/var/tmp", "/dev/shm"):
        real = os.path.realpath(name)
        if real in seen or not os.path.isdir(real) or Path(real).is_relative_to(workdir):
            continue
        seen.add(real)
        inside = sorted(p for p in wanted if Path(p).is_relative_to(real) and p != real and os.path.exists(p))
        keep: list[str] = []
        for path in inside:  # sorted: a parent comes before what it contains
            if not any(Path(path).is_relative_to(k) for k in keep):
                keep.append(path)
        out.append({"dir": real, "keep": keep, "size": size})
    return out


def _identity_files(staging: Path, uid: int, gid: int, home: Path) -> list[list[str]]:
    """passwd/group copies with a ``codemod-sandbox`` entry, to bind over /etc's in the child."""
    binds = []
    for name, line in (("passwd", f"{SANDBOX_USER}:x:{uid}:{gid}:codemod sandbox:{home}:/usr/sbin/nologin\n"),
                       ("group", f"{SANDBOX_USER}:x:{gid}:\n")):
        source = Path("/etc", name)
        if not source.is_file():
            continue
        text = source.read_text(errors="replace")
        copy = staging / name
        copy.write_text(text + ("" if text.endswith("\n") or not text else "\n") + line)
        copy.chmod(0o644)
        binds.append([str(copy), str(source)])
    return binds


# -- probing -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Capabilities:
    root: bool
    net: str | None           # None: CLONE_NEWNET works; else why not
    fs: str | None            # None: the mount namespace setup works
    uid: str | None           # None: dropping to a dedicated uid works
    prefix: tuple[str, ...]   # bwrap command line when bwrap supplies the network namespace


def _launcher_argv(config_fd: int, status_fd: int, argv: list[str], prefix: tuple[str, ...] = ()) -> list[str]:
    return [*prefix, sys.executable, "-I", "-S", os.path.abspath(__file__), "--stage1", str(config_fd),
            str(status_fd), "--", *argv]


def _run_probe(cfg: dict, prefix: tuple[str, ...]) -> tuple[dict[str, str | None], str | None]:
    """The launcher's report of which steps work, and why the launcher itself did not run (or None)."""
    config_r, config_w = os.pipe()
    status_r, status_w = os.pipe()
    try:
        proc = subprocess.Popen(_launcher_argv(config_r, status_w, ["true"], prefix), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={}, cwd="/",
                                pass_fds=(config_r, status_w), start_new_session=True)
    finally:
        os.close(config_r)
        os.close(status_w)
    with os.fdopen(config_w, "wb") as f:
        f.write(json.dumps({**cfg, "probe": True}).encode())
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(status_r)
    try:
        return json.loads(out), None
    except ValueError:
        why = (err.decode(errors="replace").strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        failed = f"the probe failed: {why}"
        return {"userns": failed, "net": failed, "fs": failed, "uid": failed}, why


@functools.lru_cache(maxsize=1)
def _capabilities() -> _Capabilities:
    """Probe, once per process, which isolation the kernel grants here."""
    root = os.geteuid() == 0
    with tempfile.TemporaryDirectory(prefix="codemod-sandbox-probe-") as tmp:
        workdir = Path(tmp).resolve()
        uid = _allocate_uid() if root else None
        try:
            fs = {"workdir": str(workdir), "expose": [], "binds": [], "scratch": _scratch_plan(workdir, 1 << 20)}
            cfg = {"userns": not root, "net": True, "fs": fs, "uid": uid, "gid": uid}
            report, _ = _run_probe(cfg, ())
            prefix: tuple[str, ...] = ()
            bwrap = shutil.which("bwrap")
            if report["net"] and bwrap:
                candidate = (bwrap, "--dev-bind", "/", "/", "--unshare-net", "--unshare-pid", "--die-with-parent", "--")
                through, failed = _run_probe({**cfg, "net": False}, candidate)
                if failed is None:
                    prefix, report = candidate, {**through, "net": None}
                else:
                    report["net"] += f"; bwrap failed: {failed}"
            elif report["net"]:
                report["net"] += "; bwrap is not installed"
        finally:
            if uid is not None:
                _release_uid(uid)
    uid_error = report["uid"] if root else f"not started as root (uid {os.geteuid()})"
    return _Capabilities(root, report["net"], report["fs"], uid_error, prefix)


_FS_ACTIVE = "read-only outside the workdir; private /tmp, /var/tmp, /dev/shm"


def _network_words(caps: _Capabilities, network: bool) -> str:
    if network:
        return "host network (network=True was asked for)"
    if caps.net is not None:
        return f"none: {caps.net}"
    if caps.prefix:
        return "bubblewrap --unshare-net (a network namespace with only its own loopback)"
    return "network namespace (only a loopback, down: nothing reachable, not even 127.0.0.1)"


@functools.cache
def detect_isolation(limits: Limits = Limits()) -> Isolation:
    """The isolation a default run (``network=False``) gets on this machine; probes once."""
    caps = _capabilities()
    user = ("a dedicated uid per run (no capabilities, no_new_privs)" if caps.uid is None
            else f"unchanged: {caps.uid}")
    return Isolation(network=_network_words(caps, False), user=user,
                     limits=_describe_limits(limits, caps.root and caps.uid is not None),
                     filesystem=_FS_ACTIVE if caps.fs is None else f"unchanged: {caps.fs}")


# -- running -----------------------------------------------------------------------------------------

class _Tail:
    """Reads a pipe to its end in a thread, keeping only the last ``cap`` bytes."""

    def __init__(self, pipe, cap: int = OUTPUT_CAP) -> None:  # type: ignore[no-untyped-def]
        self.chunks: deque[bytes] = deque()
        self.size = self.dropped = self.peak = 0
        self.cap = cap
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe) -> None:  # type: ignore[no-untyped-def]
        with pipe:
            while chunk := pipe.read1(1 << 16):
                self.chunks.append(chunk)
                self.size += len(chunk)
                while self.size - len(self.chunks[0]) >= self.cap:
                    self.size -= len(self.chunks[0])
                    self.dropped += len(self.chunks.popleft())
                self.peak = max(self.peak, self.size)

    def text(self, wait: float) -> str:
        self.thread.join(wait)
        data = b"".join(list(self.chunks))
        dropped = self.dropped + max(0, len(data) - self.cap)
        data = data[-self.cap:]
        head = f"[codemod sandbox: {dropped} earlier bytes dropped]\n" if dropped else ""
        tail = "" if not self.thread.is_alive() else "\n[codemod sandbox: the pipe is still held open by an escaped process]"
        return head + data.decode(errors="replace") + tail


def _feed(pipe, data: bytes) -> None:  # type: ignore[no-untyped-def]
    try:
        with pipe:
            pipe.write(data)
    except (BrokenPipeError, OSError):
        pass


def _wait_exit(pid: int, seconds: float) -> bool:
    """Wait for ``pid`` to exit, without reaping it (its pgid must stay reserved until the group
    is killed). True if it exited in time."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(max(0.0, seconds) * 1000))
        finally:
            os.close(fd)
    deadline = time.monotonic() + seconds
    while True:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def _read_status(fd: int, seconds: float) -> tuple[str, bool]:
    """The launcher's failure message ('' once the command is exec'd) and whether it said so in time."""
    data = b""
    deadline = time.monotonic() + seconds
    with os.fdopen(fd, "rb", buffering=0) as f:
        while True:
            ready, _, _ = select.select([f], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return data.decode(errors="replace"), False
            chunk = f.read(4096)
            if not chunk:
                return data.decode(errors="replace"), True
            data += chunk


def _prepare_workdir(workdir: Path) -> None:
    """A fresh HOME and TMPDIR in the workdir (removed first if a previous run left them)."""
    base = workdir / SANDBOX_DIR
    if base.is_symlink() or base.is_file():
        base.unlink()
    shutil.rmtree(base, ignore_errors=True)
    (base / "home").mkdir(parents=True)
    (base / "tmp").mkdir()


def run_sandboxed(argv: list[str], workdir: Path, *, timeout: float, limits: Limits = Limits(),
                  env: Mapping[str, str] | None = None, network: bool = False,
                  stdin: str | None = None, visible: Iterable[str | Path] = ()) -> SandboxResult:
    """Run ``argv`` in ``workdir`` (a throwaway copy: it becomes the sandbox uid's and gets a
    ``.codemod-sandbox/`` directory) with the isolation described in the module docstring.
    Returns when the command has ended or ``timeout`` seconds of wall clock have passed; either
    way nothing it started is left running. ``visible``: more paths the child must reach (e.g. a
    virtual environment a shell command finds on PATH) through directories it cannot search."""
    if not argv:
        raise SandboxError("run_sandboxed needs a command")
    workdir = Path(workdir).resolve()
    if not workdir.is_dir():
        raise SandboxError(f"the sandbox workdir {workdir} is not a directory")
    if workdir == Path(workdir.anchor):
        raise SandboxError("the sandbox workdir cannot be the root directory")
    caps = _capabilities()
    child_env = _child_environment(workdir, env)
    _prepare_workdir(workdir)

    program = argv[0] if os.sep in argv[0] else shutil.which(argv[0], path=child_env["PATH"])
    program = os.path.abspath(program) if program else None
    uid = gid = None
    user_words = f"unchanged: {caps.uid}"
    expose: list[dict] = []
    needed = _paths_the_child_needs(program, workdir, visible)
    if caps.uid is None:
        candidate = _allocate_uid()
        try:
            expose = _expose_plan(needed, candidate, candidate)
        except BaseException:
            _release_uid(candidate)
            raise
        if expose and caps.fs is not None:
            _release_uid(candidate)
            user_words = (f"unchanged: {expose[0]['dir']} is not searchable by other users and no mount "
                          f"namespace can expose what the command needs ({caps.fs})")
        else:
            uid = gid = candidate
            user_words = f"uid {uid} (dedicated to this run, no capabilities, no_new_privs)"
    isolation = Isolation(network=_network_words(caps, network), user=user_words,
                          limits=_describe_limits(limits, caps.root and uid is None),
                          filesystem=_FS_ACTIVE if caps.fs is None else f"unchanged: {caps.fs}")
    staging = Path(tempfile.mkdtemp(prefix="codemod-sandbox-"))
    try:
        if uid is not None:
            _hand_over(workdir, uid, gid)  # type: ignore[arg-type]
        fs = None
        if caps.fs is None:
            staging.chmod(0o755)
            binds = _identity_files(staging, uid, gid, Path(child_env["HOME"])) if uid is not None else []
            fs = {"workdir": str(workdir), "expose": expose, "binds": binds,
                  "scratch": _scratch_plan(workdir, limits.file_size_bytes, needed)}
        native_net = not network and caps.net is None and not caps.prefix
        cfg = {"userns": not caps.root and (native_net or fs is not None), "net": native_net, "fs": fs,
               "uid": uid, "gid": gid, "rlimits": _rlimits(limits), "env": child_env, "workdir": str(workdir)}
        prefix = caps.prefix if not network else ()
        return _launch(argv, cfg, prefix, timeout, stdin, isolation)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if uid is not None:
            _release_uid(uid)


def _launch(argv: list[str], cfg: dict, prefix: tuple[str, ...], timeout: float, stdin: str | None,
            isolation: Isolation) -> SandboxResult:
    started = time.monotonic()
    config_r, config_w = os.pipe()
    status_r, status_w = os.pipe()
    try:
        proc = subprocess.Popen(_launcher_argv(config_r, status_w, argv, prefix),
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={}, cwd="/",
                                pass_fds=(config_r, status_w), start_new_session=True)
    except BaseException:
        for fd in (config_w, status_r):
            os.close(fd)
        raise
    finally:
        os.close(config_r)
        os.close(status_w)
    out, err = _Tail(proc.stdout), _Tail(proc.stderr)
    with os.fdopen(config_w, "wb") as f:
        f.write(json.dumps(cfg).encode())
    failure, in_time = _read_status(status_r, timeout)
    if stdin is not None and not failure:
        threading.Thread(target=_feed, args=(proc.stdin, stdin.encode()), daemon=True).start()
    elif proc.stdin is not None:
        proc.stdin.close()
    exited = in_time and _wait_exit(proc.pid, timeout - (time.monotonic() - started))
    _kill_group(proc.pid)
    if cfg["uid"] is not None:
        _kill_every_process_of(cfg["uid"], cfg["gid"])
    code = proc.wait()
    seconds = time.monotonic() - started
    stdout, stderr = out.text(5.0), err.text(5.0)
    if failure:
        stderr += ("" if not stderr or stderr.endswith("\n") else "\n") + f"codemod sandbox: {failure}\n"
    return SandboxResult(returncode=code if exited else None, stdout=stdout, stderr=stderr,
                         timed_out=not exited, seconds=seconds, isolation=isolation)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


__all__ = ["OUTPUT_CAP", "Isolation", "Limits", "SandboxError", "SandboxResult", "detect_isolation",
           "looks_like_credential", "run_sandboxed"]


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--stage1":
    sys.exit(_stage1(sys.argv[2:]))
