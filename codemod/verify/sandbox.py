"""Run one command of an untrusted repository in a sandboxed child process (the parent side).

``codemod verify`` runs a user's smoke tests, which is running code we have never read; the GitHub
App runs it in a worker that holds the App's private key. Everything goes through
:func:`run_sandboxed`, which starts the *launcher* (:mod:`.launcher`, run as a script by the same
interpreter with ``-I -S`` and an empty environment) and hands it a plan through a private pipe.
What the child gets, layer by layer (:func:`detect_isolation` probes once per process, in a real
launcher, so the verdict says what the kernel allowed, or ``none: <why>``):

* **Environment**: only ``PATH``, the locale variables by their exact names (``LANG``, ``LC_ALL``,
  ``LC_CTYPE`` ...; a value must look like a locale), ``TZ``, ``PYTHONHASHSEED``, a fresh ``HOME``
  and ``TMPDIR`` in the working copy, ``USER``/``LOGNAME`` and the keys passed in ``env``; names
  that look like credentials are refused even when passed explicitly.
* **Namespaces**: user (when not root), mount, PID, IPC, UTS and network (unless ``network=True``).
  The PID namespace's init is the launcher's child: when the command ends, init exits and the
  kernel kills every process left in the namespace; ``/proc`` is a fresh one that shows only them.
  The network namespace has only a loopback that is down; the IPC namespace has no SysV objects of
  the host. Unix sockets on the host's filesystem are out of reach because the host's filesystem is.
* **Minimal root**: the child's ``/`` is a fresh tmpfs holding only: the system directories
  (``/usr``, ``/bin``, ``/lib*``, ``/sbin``), a few files of ``/etc`` (loader cache, time zone,
  certificates; a ``passwd`` and ``group`` with just ``root`` and the sandbox user), the interpreter
  and the environments it needs (read-only), ``visible`` paths (read-only), ``writable`` paths,
  ``/dev/null``-like devices, private ``/tmp``, ``/var/tmp``, ``/dev/shm``, and the working copy
  through an overlay: the child sees the copy, its writes land on a tmpfs capped at
  ``Limits.disk_bytes`` (shared with the scratch directories), and nothing it writes reaches the
  parent's copy. Nothing else of the host exists there (no ``/root``, ``/home``, ``/run``, ``/srv``,
  no directory of the parent's ``sys.path`` but the environment's own).
* **Landlock** (no privilege or namespace needed; applied right before ``execve``): where the
  minimal root cannot be built, the filesystem layer: reads only of the trees the minimal root
  would bind read-only plus ``/proc`` and ``/sys``, writes only to the working copy (in place: no
  overlay there), ``writable``, ``/dev/shm`` and the devices. Everywhere: no TCP bind or connect
  unless ``network=True`` (ABI 4), signals and abstract unix sockets only within the run (ABI 6).
  ``CODEMOD_SANDBOX_NAMESPACES=0`` / ``CODEMOD_SANDBOX_LANDLOCK=0`` turn the namespaces (and so
  the minimal root) / Landlock off.
* **User** (started as root): a uid dedicated to the run, no supplementary groups, no
  capabilities, ``PR_SET_NO_NEW_PRIVS``. Not root: the caller's uid inside a user namespace (the
  minimal root is then what keeps the caller's files out of reach).
* **Keyring**: the command joins a fresh session keyring; the parent's keys are not possessed.
* **Limits**: memory and processes through a cgroup where one can be made (v1 or v2; the memory
  limit then also holds for CUDA runs), ``RLIMIT_AS`` (except with ``gpu=True``), ``RLIMIT_CPU``,
  ``RLIMIT_FSIZE``, ``RLIMIT_NPROC`` and ``RLIMIT_CORE=0``; the overlay's tmpfs caps the disk.
* **Lifetime**: the launcher dies with the parent (``PR_SET_PDEATHSIG``), init with the launcher,
  the command with init. On the wall-clock timeout, after a normal exit, and on any exception in
  the parent (a SIGTERM turned into one by :func:`terminate_as_exit`), the process group, the
  cgroup and every process of the dedicated uid are killed; the staging directories are removed.

Output is read by threads (no pipe deadlock) and only the last ``OUTPUT_CAP`` bytes of each stream
are kept.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import re
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
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

OUTPUT_CAP = 1 << 20
"""Bytes kept of each of stdout and stderr (the last ones)."""

SANDBOX_DIR = ".codemod-sandbox"
"""Directory in the workdir holding the child's fresh HOME and TMPDIR."""

SANDBOX_USER = "codemod-sandbox"

LAUNCHER = str(Path(__file__).resolve().with_name("launcher.py"))

LONGEST_WAIT = 30 * 24 * 3600.0
"""A timeout beyond this (a month) is clamped: a wait never overflows."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of the child (``None`` = leave as inherited / no cap)."""

    cpu_seconds: int | None = 900  # RLIMIT_CPU
    memory_bytes: int | None = 16 << 30  # cgroup memory limit; RLIMIT_AS too unless gpu=True
    file_size_bytes: int | None = 1 << 30  # RLIMIT_FSIZE
    processes: int | None = 256  # cgroup pids.max and RLIMIT_NPROC
    disk_bytes: int | None = 4 << 30  # the tmpfs under the copy's overlay and /tmp (all writes)


@dataclass(frozen=True)
class Isolation:
    """What isolation a run had (or a default run will have), in words for the verdict."""

    network: str  # e.g. "network namespace (...)" or "none: <why>"
    user: str  # e.g. "uid 1500123456 (dedicated ...)" or "unchanged: not started as root"
    limits: str  # e.g. "cpu 900 s, memory 16 GiB (cgroup v1), file 1 GiB, 256 processes, disk 4 GiB"
    filesystem: str = "unchanged"
    processes: str = "none"
    ipc: str = "none"
    keyring: str = "none"

    def describe(self) -> str:
        return (
            f"network: {self.network}; user: {self.user}; filesystem: {self.filesystem}; "
            f"processes: {self.processes}; ipc: {self.ipc}; keyring: {self.keyring}; limits: {self.limits}"
        )


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


class SandboxError(RuntimeError):
    """The sandbox was asked for something it cannot do (bad workdir, credential in ``env``)."""


# -- the environment ---------------------------------------------------------------------------------

_CREDENTIAL_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|PRIVATE_?KEY|API_?KEY|ACCESS_?KEY|AUTH(?!OR)|COOKIE")
_CREDENTIAL_PREFIXES = (
    "GITHUB_",
    "GH_",
    "AWS_",
    "AZURE_",
    "GOOGLE_",
    "GCP_",
    "GCLOUD_",
    "SSH_",
    "GPG_",
    "NPM_",
    "PYPI_",
    "TWINE_",
    "OPENAI_",
    "ANTHROPIC_",
)
_LOCALE_NAMES = frozenset(
    {
        "LANG",
        "LANGUAGE",
        "LC_ALL",
        "LC_CTYPE",
        "LC_NUMERIC",
        "LC_TIME",
        "LC_COLLATE",
        "LC_MONETARY",
        "LC_MESSAGES",
        "LC_PAPER",
        "LC_NAME",
        "LC_ADDRESS",
        "LC_TELEPHONE",
        "LC_MEASUREMENT",
        "LC_IDENTIFICATION",
    }
)
_LOCALE_VALUE = re.compile(r"[A-Za-z0-9_.@:-]{0,64}")
_TZ_VALUE = re.compile(r":?[A-Za-z0-9_/+,.:-]{0,64}")


def looks_like_credential(name: str) -> bool:
    upper = name.upper()
    return upper.startswith(_CREDENTIAL_PREFIXES) or bool(_CREDENTIAL_NAME.search(upper))


def _child_environment(workdir: Path, env: Mapping[str, str] | None) -> dict[str, str]:
    """The allow-listed environment: of the parent's, only the locale (exact names, values that
    look like a locale), TZ, PATH and the hash seed."""
    parent = os.environ
    out = {k: v for k, v in parent.items() if k in _LOCALE_NAMES and _LOCALE_VALUE.fullmatch(v)}
    if "TZ" in parent and _TZ_VALUE.fullmatch(parent["TZ"]):
        out["TZ"] = parent["TZ"]
    interpreter_bin = os.path.dirname(sys.executable)
    path = parent.get("PATH") or "/usr/local/bin:/usr/bin:/bin"
    if interpreter_bin not in path.split(os.pathsep):
        path = interpreter_bin + os.pathsep + path
    seed = parent.get("PYTHONHASHSEED", "0")
    out.update(
        PATH=path,
        HOME=str(workdir / SANDBOX_DIR / "home"),
        TMPDIR=str(workdir / SANDBOX_DIR / "tmp"),
        PYTHONHASHSEED=seed if seed.isdigit() or seed == "random" else "0",
        USER=SANDBOX_USER,
        LOGNAME=SANDBOX_USER,
    )
    for key, value in (env or {}).items():
        if looks_like_credential(key):
            raise SandboxError(f"refusing to pass {key} into the sandbox: the name looks like a credential")
        out[key] = str(value)
    return out


# -- limits ------------------------------------------------------------------------------------------


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


def _describe_limits(limits: Limits, cgroup: str | None, disk: str | None, gpu: bool = False) -> str:
    """``cgroup``: None if a cgroup enforces memory and processes, else why not; ``disk``: None
    if the overlay's tmpfs caps the disk, else why not."""
    parts = [f"cpu {limits.cpu_seconds} s" if limits.cpu_seconds is not None else "cpu unlimited"]
    if limits.memory_bytes is None:
        parts.append("memory unlimited")
    elif cgroup is None:
        parts.append(f"memory {_size(limits.memory_bytes)} (cgroup)")
    elif gpu:
        parts.append(f"memory none: no cgroup ({cgroup}) and CUDA needs an unlimited address space")
    else:
        parts.append(f"memory {_size(limits.memory_bytes)} (address space only: no cgroup: {cgroup})")
    parts.append(f"file {_size(limits.file_size_bytes)}" if limits.file_size_bytes is not None else "file unlimited")
    if limits.processes is None:
        parts.append("processes unlimited")
    else:
        parts.append(f"{limits.processes} processes")
    if limits.disk_bytes is None:
        parts.append("disk unlimited")
    elif disk is None:
        parts.append(f"disk {_size(limits.disk_bytes)}")
    else:
        parts.append(f"disk none: {disk}")
    return ", ".join(parts)


def _rlimits(limits: Limits, gpu: bool) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {"RLIMIT_CORE": [0, 0]}
    if limits.cpu_seconds is not None:
        out["RLIMIT_CPU"] = [limits.cpu_seconds, limits.cpu_seconds + 1]  # SIGXCPU, then SIGKILL
    for name, value in (
        ("RLIMIT_AS", None if gpu else limits.memory_bytes),
        ("RLIMIT_FSIZE", limits.file_size_bytes),
        ("RLIMIT_NPROC", limits.processes),
    ):
        if value is not None:
            out[name] = [value, value]
    return out


class _Cgroup:
    """A memory + pids cgroup below the parent's own (v2, else v1), made for one run."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.dirs: list[str] = []
        try:
            self._make(name, limits)
        except OSError:
            self.remove()
            raise

    @staticmethod
    def _own() -> dict[str, str]:
        out = {}
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                for c in controllers.split(",") if controllers else [""]:
                    out[c] = path
        return out

    def _make(self, name: str, limits: Limits) -> None:
        own = self._own()
        if os.path.isfile("/sys/fs/cgroup/cgroup.controllers") and "" in own:
            base = "/sys/fs/cgroup" + own[""]
            with open(os.path.join(base, "cgroup.subtree_control")) as f:
                enabled = f.read().split()
            if not {"memory", "pids"} <= set(enabled):
                raise OSError(f"cgroup v2 {base} does not delegate memory and pids to its children")
            self._dir(
                os.path.join(base, name),
                {"memory.max": limits.memory_bytes, "memory.swap.max": 0, "pids.max": limits.processes},
            )
            return
        for controller, files in (
            (
                "memory",
                {"memory.limit_in_bytes": limits.memory_bytes, "memory.memsw.limit_in_bytes": limits.memory_bytes},
            ),
            ("pids", {"pids.max": limits.processes}),
        ):
            root = f"/sys/fs/cgroup/{controller}"
            if controller not in own or not os.path.isdir(root):
                raise OSError(f"no cgroup {controller} controller is mounted")
            self._dir(os.path.join(root + own[controller], name), files)

    def _dir(self, path: str, files: Mapping[str, int | None]) -> None:
        os.mkdir(path, 0o700)
        self.dirs.append(path)
        for name, value in files.items():
            if value is None:
                continue
            try:
                with open(os.path.join(path, name), "w") as f:
                    f.write(str(value))
            except OSError:
                if name in ("memory.memsw.limit_in_bytes", "memory.swap.max"):
                    continue  # no swap accounting: the memory limit alone holds
                raise

    @property
    def procs(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self.dirs]

    def kill_all(self) -> None:
        deadline = time.monotonic() + 5.0
        for procs in self.procs:
            while time.monotonic() < deadline:
                try:
                    with open(procs) as f:
                        pids = [int(p) for p in f.read().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.01)

    def remove(self) -> None:
        for path in reversed(self.dirs):
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)  # the last process is still being torn down
        self.dirs = []


# -- uids ----------------------------------------------------------------------------------------------

_UID_RANGES = ((1_500_000_000, 1_000_000), (61_184, 4_000))
_uids_in_use: set[int] = set()
_uids_lock = threading.Lock()


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
        if not (
            _mapped(base, "/proc/self/uid_map")
            and _mapped(base + span - 1, "/proc/self/uid_map")
            and _mapped(base, "/proc/self/gid_map")
            and _mapped(base + span - 1, "/proc/self/gid_map")
        ):
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
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
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


def hand_over(tree: Path, uid: int, gid: int) -> None:
    """Make ``tree`` ``uid``'s. Symlinks are changed, not followed; regular files with several
    hard links are skipped (one could be a link to a file outside the tree)."""
    for top, dirs, files in os.walk(tree):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                continue
            os.chown(path, uid, gid, follow_symlinks=False)
    os.chown(tree, uid, gid, follow_symlinks=False)


# -- the minimal root ---------------------------------------------------------------------------------

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "nsswitch.conf",
    "localtime",
    "timezone",
    "host.conf",
    "hosts",
    "gai.conf",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "alternatives",
    "mime.types",
    "os-release",
    "lsb-release",
    "debian_version",
    "protocols",
    "services",
)
_NETWORK_ETC = ("resolv.conf",)
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
_GPU_DEVICES = re.compile(r"nvidia.*|dri")


def _links_on_the_way(path: str, links: dict[str, str], depth: int = 0) -> str:
    """Record every symlink met while resolving ``path`` (location -> target, each location a
    path without symlinks in it), so the same links can be made in the child's root. Returns the
    resolved path."""
    if depth > 40:
        return os.path.realpath(path)
    cur = "/"
    for part in Path(os.path.abspath(path)).parts[1:]:
        nxt = os.path.join(cur, part)
        if os.path.islink(nxt):
            target = os.readlink(nxt)
            links[nxt] = target
            cur = _links_on_the_way(os.path.join(cur, target), links, depth + 1)
        else:
            cur = nxt
    return cur


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _root_plan(
    needed: Iterable[str], writable: Iterable[str], network: bool, gpu: bool, identity: list[list[str]]
) -> tuple[list[list], list[list[str]], list[str]]:
    """Binds (source, target, writable), symlinks (location, target) and devices of the child's
    root, from the system directories and the paths the command needs."""
    links: dict[str, str] = {}
    wanted: dict[str, bool] = {}
    etc = [f"/etc/{name}" for name in _ETC_FILES + (_NETWORK_ETC if network else ())]
    gpu_paths = ["/sys"] if gpu else []
    for path in [*_SYSTEM_DIRS, *etc, *gpu_paths, *needed]:
        if os.path.lexists(path):
            real = _links_on_the_way(path, links)
            if os.path.exists(real) and real != "/":
                wanted.setdefault(real, False)
    for path in writable:
        wanted[_links_on_the_way(str(path), links)] = True
    binds: list[list] = []
    for real in sorted(wanted):
        if not _under(real, [b[1] for b in binds]):
            binds.append([real, real, wanted[real]])
    bound = [b[1] for b in binds] + [t for _, t in identity]
    plan_links = [
        [loc, target]
        for loc, target in sorted(links.items())
        if not _under(os.path.dirname(loc), bound) and loc not in bound
    ]
    binds += [[source, target, False] for source, target in identity]
    devices = [d for d in _DEVICES if os.path.exists(d)]
    if gpu and os.path.isdir("/dev"):
        devices += [f"/dev/{n}" for n in sorted(os.listdir("/dev")) if _GPU_DEVICES.fullmatch(n)]
    return binds, plan_links, devices


def _identity_files(staging: Path, uid: int, gid: int, home: Path) -> list[list[str]]:
    """passwd/group with just root and a ``codemod-sandbox`` entry, bound over /etc's in the child."""
    out = []
    for name, text in (
        (
            "passwd",
            f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
            f"{SANDBOX_USER}:x:{uid}:{gid}:codemod sandbox:{home}:/usr/sbin/nologin\n",
        ),
        ("group", f"root:x:0:\n{SANDBOX_USER}:x:{gid}:\n"),
    ):
        copy = staging / name
        copy.write_text(text)
        copy.chmod(0o644)
        out.append([str(copy), f"/etc/{name}"])
    return out


def _paths_the_child_needs(program: str | None, extra: Iterable[str | Path] = ()) -> set[str]:
    """The program, ``extra``, and this interpreter with its environment (not the rest of the
    parent's ``sys.path``: a directory there may hold the parent's secrets)."""
    items = {sys.executable, sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *map(str, extra)}
    if program:
        items.add(program)
        venv = os.path.dirname(os.path.dirname(program))
        if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
            items.add(venv)
    return {os.path.abspath(p) for p in items if p}


# -- Landlock ----------------------------------------------------------------------------------------

_PSEUDO_FS = ("/proc", "/sys")


def _landlock_plan(
    caps: _Capabilities,
    workdir: Path,
    program: str | None,
    visible: Iterable[str | Path],
    writable: list[Path],
    network: bool,
    gpu: bool,
) -> dict | None:
    """What the command may do once its Landlock domain is in force (None: no Landlock here).
    Without the minimal root: read and execute only the trees the minimal root would bind
    read-only (system directories, a few files of ``/etc``, the interpreter and its environment,
    ``visible``) plus ``/proc`` and ``/sys``; write only the working copy, ``writable``,
    ``/dev/shm`` and the usual device files. Under the minimal root, which already keeps the host's
    files out, no filesystem rules (a nested sandbox must still write its own ``/proc/self/uid_map``).
    Either way no TCP unless ``network``, and signals and abstract unix sockets only within the run."""
    if caps.layers.get("landlock") is not None:
        return None
    if caps.layers.get("root") is None:
        return {"fs": False, "read": [], "write": [], "devices": [], "deny_tcp": not network}
    binds, _links, devices = _root_plan(
        _paths_the_child_needs(program, visible),
        [str(w) for w in writable],
        network,
        gpu,
        [["", "/etc/passwd"], ["", "/etc/group"]],
    )
    return {
        "fs": True,
        "read": [target for _source, target, rw in binds if not rw] + list(_PSEUDO_FS),
        "write": [str(workdir), *(target for _source, target, rw in binds if rw), "/dev/shm"],
        "devices": devices,
        "deny_tcp": not network,
    }


def _landlock_words(caps: _Capabilities) -> str:
    return f"landlock (ABI {caps.layers.get('landlock_abi')})"


# -- probing ---------------------------------------------------------------------------------------


def _launcher_argv(config_fd: int, status_fd: int, argv: list[str]) -> list[str]:
    return [sys.executable, "-I", "-S", LAUNCHER, "--stage1", str(config_fd), str(status_fd), "--", *argv]


def _start_launcher(
    argv: list[str], cfg: dict, stdin: int, pass_fds: Iterable[int] = ()
) -> tuple[subprocess.Popen, int]:
    """Start the launcher, hand it ``cfg``; returns the process and the read end of its status pipe."""
    config_r, config_w = os.pipe()
    status_r, status_w = os.pipe()
    try:
        proc = subprocess.Popen(
            _launcher_argv(config_r, status_w, argv),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={},
            cwd="/",
            pass_fds=(config_r, status_w, *pass_fds),
            start_new_session=True,
        )
    except BaseException:
        os.close(config_w)
        os.close(status_r)
        raise
    finally:
        os.close(config_r)
        os.close(status_w)
    with os.fdopen(config_w, "wb") as f:
        f.write(json.dumps({**cfg, "parent_pid": os.getpid()}).encode())
    return proc, status_r


@dataclass(frozen=True)
class _Capabilities:
    root: bool
    layers: dict  # layer -> None (works) or why not
    cgroup: str | None  # None: a cgroup can be made


_LAYERS = ("landlock", "userns", "mount", "pid", "ipc", "uts", "net", "root", "keyring", "uid")


def _setting_on(name: str) -> bool:
    """An operator's switch (``0``/``false``/``no``/``off`` turn a layer off; anything else, or
    unset, leaves it on). Read once, when the process first probes."""
    return os.environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off")


@functools.lru_cache(maxsize=1)
def _capabilities() -> _Capabilities:
    """Probe, once per process, which isolation the kernel grants here."""
    root = os.geteuid() == 0
    with tempfile.TemporaryDirectory(prefix="codemod-sandbox-probe-") as tmp:
        base = Path(tmp)
        for name in ("root", "scratch", "work"):
            (base / name).mkdir()
        uid = _allocate_uid() if root else None
        try:
            binds, links, devices = _root_plan(_paths_the_child_needs(None), [], False, False, [])
            plan = {
                "dir": str(base / "root"),
                "scratch": str(base / "scratch"),
                "scratch_size": 1 << 20,
                "binds": binds,
                "links": links,
                "devices": devices,
                "workdir": {"path": str(base / "work"), "source": str(base / "work"), "overlay": True},
            }
            cfg = {
                "probe": True,
                "userns": not root,
                "root": plan,
                "uid": uid,
                "gid": uid,
                "landlock": _setting_on("CODEMOD_SANDBOX_LANDLOCK"),
            }
            proc, status_r = _start_launcher(["true"], cfg, subprocess.DEVNULL)
            try:
                out, err = proc.communicate(timeout=60)
            finally:
                os.close(status_r)
            try:
                layers = json.loads(out)
            except ValueError:
                why = (err.decode(errors="replace").strip().splitlines() or [f"exit {proc.returncode}"])[-1]
                layers = dict.fromkeys(_LAYERS, f"the probe failed: {why}")
        finally:
            if uid is not None:
                _release_uid(uid)
    if not root:
        layers["uid"] = f"not started as root (uid {os.geteuid()})"
    if not _setting_on("CODEMOD_SANDBOX_NAMESPACES"):
        layers.update(
            dict.fromkeys(
                ("userns", "mount", "pid", "ipc", "uts", "net", "root"), "turned off (CODEMOD_SANDBOX_NAMESPACES=0)"
            )
        )
    cgroup: str | None = "not started as root" if not root else None
    if root:
        try:
            _Cgroup(f"codemod-probe-{os.getpid()}-{random.randrange(1 << 30)}", Limits()).remove()
        except OSError as exc:
            cgroup = str(exc)
    return _Capabilities(root, layers, cgroup)


def _words(caps: _Capabilities, network: bool, uid_words: str, limits: Limits, gpu: bool) -> Isolation:
    layers = caps.layers
    landlock = layers.get("landlock") is None
    scoped = landlock and int(layers.get("landlock_abi") or 0) >= 6

    def layer(name: str, good: str) -> str:
        return good if layers.get(name) is None else f"none: {layers[name]}"

    if network:
        net = "host network (network=True was asked for)"
    elif layers.get("net") is None:
        net = "network namespace (only a loopback, down: nothing reachable, not even 127.0.0.1)"
        if landlock and int(layers.get("landlock_abi") or 0) >= 4:
            net += f"; {_landlock_words(caps)}: TCP connect and bind denied as well"
    elif landlock and int(layers.get("landlock_abi") or 0) >= 4:
        net = (
            f"{_landlock_words(caps)}: TCP connect and bind denied (UDP and unix sockets on the file system "
            f"are not covered; no network namespace: {layers['net']})"
        )
    else:
        why = layers["landlock"] if not landlock else "its ABI has no network rules (needs 4)"
        net = f"none: {layers['net']}; no landlock: {why}"
    landlock_fs = (
        f"{_landlock_words(caps)}: writes only to the copy (and /dev/shm), reads only of the system "
        f"directories, the interpreter and its environment, the copy, /proc and /sys"
    )
    if layers.get("root") is None:
        fs = (
            "minimal root (system directories, the interpreter and its environment read-only; the copy "
            "through an overlay; private /tmp; fresh /proc)"
        )
    elif landlock:
        fs = f"{landlock_fs} (no minimal root: {layers['root']})"
    else:
        fs = f"none: {layers['root']}; no landlock: {layers['landlock']}"
    processes = layer("pid", "PID namespace (init kills every leftover process)")
    if scoped:
        processes += f"; {_landlock_words(caps)}: signals only within the run"
    ipc = layer("ipc", "IPC namespace")
    if scoped:
        ipc += f"; {_landlock_words(caps)}: abstract unix sockets only within the run"
    disk = None if layers.get("root") is None else "no overlay without the minimal root"
    return Isolation(
        network=net,
        user=uid_words,
        filesystem=fs,
        processes=processes,
        ipc=ipc,
        keyring=layer("keyring", "a fresh session keyring"),
        limits=_describe_limits(limits, caps.cgroup, disk, gpu),
    )


@functools.cache
def detect_isolation(limits: Limits = Limits(), gpu: bool = False) -> Isolation:
    """The isolation a run with ``network=False`` gets on this machine; probes once."""
    caps = _capabilities()
    user = (
        "a dedicated uid per run (no capabilities, no_new_privs)"
        if caps.layers.get("uid") is None
        else f"unchanged: {caps.layers['uid']}"
    )
    return _words(caps, False, user, limits, gpu)


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
        data = data[-self.cap :]
        head = f"[codemod sandbox: {dropped} earlier bytes dropped]\n" if dropped else ""
        tail = (
            ""
            if not self.thread.is_alive()
            else "\n[codemod sandbox: the pipe is still held open by an escaped process]"
        )
        return head + data.decode(errors="replace") + tail


def _feed(pipe, data: bytes) -> None:  # type: ignore[no-untyped-def]
    try:
        with pipe:
            pipe.write(data)
    except (BrokenPipeError, OSError):
        pass


def _wait_exit(pid: int, seconds: float) -> bool:
    """Wait for ``pid`` to exit, without reaping it (its pgid must stay reserved until the group
    is killed). True if it exited in time. Any ``seconds`` works (waited in slices)."""
    deadline = time.monotonic() + min(max(0.0, seconds), LONGEST_WAIT)
    fd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if poller.poll(int(min(max(0.0, left), 3600.0) * 1000)):
                return True
            if left <= 0:
                return False
    finally:
        os.close(fd)


def _read_status(fd: int, seconds: float) -> tuple[str, bool]:
    """The launcher's failure message ('' once the command is exec'd) and whether it said so in time."""
    data = b""
    deadline = time.monotonic() + min(max(0.0, seconds), LONGEST_WAIT)
    with os.fdopen(fd, "rb", buffering=0) as f:
        while True:
            ready, _, _ = select.select([f], [], [], min(max(0.0, deadline - time.monotonic()), 3600.0))
            if not ready:
                if time.monotonic() < deadline:
                    continue
                return data.decode(errors="replace"), False
            chunk = f.read(4096)
            if not chunk or len(data) > 1 << 16:
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


OWNER_FILE = ".codemod-owner"


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot): a pid with the same start time is the
    same process, not a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner() -> str:
    """This process as an owner: pid, start time, PID namespace (another namespace's pids cannot
    be judged from here)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = "-"
    return f"{os.getpid()} {_start_time(os.getpid())} {namespace}"


def owned_tempdir(prefix: str) -> Path:
    """A temporary directory that names its owner, so that a later run can remove it if its owner
    died without cleaning up (SIGKILL): see :func:`sweep_stale`."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    (path / OWNER_FILE).write_text(_owner() + "\n")
    return path


def sweep_stale(prefix: str, base: str | None = None) -> list[str]:
    """Remove this user's ``prefix*`` temporary directories whose owner is gone. Returns them."""
    removed = []
    base = base or tempfile.gettempdir()
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    for entry in entries:
        try:
            if not (
                entry.name.startswith(prefix)
                and entry.is_dir(follow_symlinks=False)
                and entry.stat(follow_symlinks=False).st_uid == os.geteuid()
            ):
                continue
            fd = os.open(os.path.join(entry.path, OWNER_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd) as f:
                pid_text, started, namespace = (f.read(200).split() + ["", "", ""])[:3]
        except (OSError, ValueError):
            continue
        if namespace != _owner().split()[2] or not pid_text.isdigit():
            continue
        if _start_time(int(pid_text)) != started:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """While inside, SIGTERM raises ``SystemExit(143)`` in the main thread, so every ``finally``
    runs: sandboxed processes are killed and throwaway copies removed. Elsewhere (a worker
    thread) nothing changes: there the children die with the process (``PR_SET_PDEATHSIG``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # type: ignore[no-untyped-def]
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_sandboxed(
    argv: list[str],
    workdir: Path,
    *,
    timeout: float,
    limits: Limits = Limits(),
    env: Mapping[str, str] | None = None,
    network: bool = False,
    stdin: str | None = None,
    visible: Iterable[str | Path] = (),
    writable: Iterable[str | Path] = (),
    pass_fds: Iterable[int] = (),
    gpu: bool = False,
) -> SandboxResult:
    """Run ``argv`` in ``workdir`` (a throwaway copy: it becomes the sandbox uid's and gets a
    ``.codemod-sandbox/`` directory; with the minimal root the child's writes to it stay in the
    sandbox) with the isolation described in the module docstring. Returns when the command has
    ended or ``timeout`` seconds of wall clock have passed; either way nothing it started is left
    running. ``visible``: more paths the child must see (read-only); ``writable``: paths it may
    write (bound as they are, owned by the run's uid for the run); ``pass_fds``: file descriptors
    the command inherits; ``gpu``: the NVIDIA devices and ``/sys`` are visible and there is no
    address-space limit (the cgroup's memory limit still holds)."""
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
    writable = [Path(w).resolve() for w in writable]
    visible = list(visible)
    uid = gid = None
    user_words = f"unchanged: {caps.layers['uid']}"
    if caps.root and caps.layers.get("uid") is None:
        uid = gid = _allocate_uid()
        user_words = f"uid {uid} (dedicated to this run, no capabilities, no_new_privs)"
    isolation = _words(caps, network, user_words, limits, gpu)
    staging = owned_tempdir("codemod-sandbox-")
    cgroup: _Cgroup | None = None
    try:
        staging.chmod(0o755)
        if uid is not None:
            for tree in (workdir, *writable):
                hand_over(tree, uid, gid)  # type: ignore[arg-type]
        layers = {name: caps.layers.get(name) is None for name in ("mount", "pid", "ipc", "uts", "keyring")}
        layers["net"] = not network and caps.layers.get("net") is None
        root = None
        if caps.layers.get("root") is None:
            for name in ("root", "scratch"):
                (staging / name).mkdir()
            identity = _identity_files(
                staging,
                uid if uid is not None else os.getuid(),
                gid if gid is not None else os.getgid(),
                Path(child_env["HOME"]),
            )
            needed = _paths_the_child_needs(program, visible)
            binds, links, devices = _root_plan(needed, [str(w) for w in writable], network, gpu, identity)
            root = {
                "dir": str(staging / "root"),
                "scratch": str(staging / "scratch"),
                "scratch_size": limits.disk_bytes,
                "binds": binds,
                "links": links,
                "devices": devices,
                "workdir": {"path": str(workdir), "source": str(workdir), "overlay": True},
            }
        landlock = _landlock_plan(caps, workdir, program, visible, writable, network, gpu)
        if caps.cgroup is None and (limits.memory_bytes is not None or limits.processes is not None):
            cgroup = _Cgroup(f"codemod-sandbox-{os.getpid()}-{random.randrange(1 << 40):x}", limits)
        cfg = {
            "userns": not caps.root and caps.layers.get("userns") is None,
            "layers": layers,
            "root": root,
            "cgroups": cgroup.procs if cgroup else [],
            "uid": uid,
            "gid": gid,
            "rlimits": _rlimits(limits, gpu),
            "env": child_env,
            "workdir": str(workdir),
            "keep_fds": list(pass_fds),
            "landlock": landlock,
        }
        return _launch(argv, cfg, timeout, stdin, isolation, cgroup, tuple(pass_fds))
    finally:
        if cgroup is not None:
            cgroup.kill_all()
            cgroup.remove()
        if uid is not None:
            _kill_every_process_of(uid, gid)  # type: ignore[arg-type]
            _release_uid(uid)
        shutil.rmtree(staging, ignore_errors=True)


def _launch(
    argv: list[str],
    cfg: dict,
    timeout: float,
    stdin: str | None,
    isolation: Isolation,
    cgroup: _Cgroup | None,
    pass_fds: tuple[int, ...],
) -> SandboxResult:
    started = time.monotonic()
    proc, status_r = _start_launcher(argv, cfg, subprocess.PIPE if stdin is not None else subprocess.DEVNULL, pass_fds)
    try:
        out, err = _Tail(proc.stdout), _Tail(proc.stderr)
        failure, in_time = _read_status(status_r, timeout)
        if stdin is not None and not failure:
            threading.Thread(target=_feed, args=(proc.stdin, stdin.encode()), daemon=True).start()
        elif proc.stdin is not None:
            proc.stdin.close()
        exited = in_time and _wait_exit(proc.pid, timeout - (time.monotonic() - started))
    finally:
        _kill_group(proc.pid)
        if cgroup is not None:
            cgroup.kill_all()
        if cfg["uid"] is not None:
            _kill_every_process_of(cfg["uid"], cfg["gid"])
        code = proc.wait()
    seconds = time.monotonic() - started
    stdout, stderr = out.text(5.0), err.text(5.0)
    if failure:
        stderr += ("" if not stderr or stderr.endswith("\n") else "\n") + f"codemod sandbox: {failure}\n"
    return SandboxResult(
        returncode=code if exited else None,
        stdout=stdout,
        stderr=stderr,
        timed_out=not exited,
        seconds=seconds,
        isolation=isolation,
    )


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


__all__ = [
    "OUTPUT_CAP",
    "Isolation",
    "Limits",
    "SandboxError",
    "SandboxResult",
    "detect_isolation",
    "hand_over",
    "looks_like_credential",
    "owned_tempdir",
    "run_sandboxed",
    "sweep_stale",
    "terminate_as_exit",
]
