"""The sandbox's child side: run as a script (``python -I -S launcher.py --stage1 ...``) by
:mod:`.sandbox`, it builds the child's world and then ``execve``\\ s the command.

Standard library only, and nothing imported from the repository or from torch-codemod: it starts
with an empty environment and isolated mode, so nothing the repository controls can influence it.
It reads its plan (JSON) from a private pipe, never from argv, and reports a failed step through a
close-on-exec pipe (so the parent gets ``sandbox setup failed: <step>: <why>``).

The process tree, from the parent's side::

    launcher (host PID namespace; PR_SET_PDEATHSIG: dies with the parent)
      -> unshare(user? | mount | PID | IPC | UTS | network) -> fork
         init (PID 1 of a new PID namespace; dies with the launcher)
           builds the minimal root, mounts a fresh /proc, pivot_root
           -> fork: the command (new session keyring, rlimits, no_new_privs, dedicated uid,
              then a Landlock domain where the kernel has Landlock), execve
           reaps every orphan; when the command ends, init exits: the kernel then kills every
           process left in the namespace (daemons, fork bombs), so nothing outlives a run.

The launcher relays the command's exit status (or the signal that killed it) as its own.

Landlock needs neither root nor a namespace: it is the filesystem (and TCP) layer where namespaces
are refused (a non-root container under the runtime's default seccomp profile) and an extra layer
under the minimal root everywhere else. The plan names the trees the command may read and write;
everything else is out of reach, whatever the file modes say.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import resource
import select
import signal
import stat
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACES = {"mount": CLONE_NEWNS, "pid": CLONE_NEWPID, "ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS, "net": CLONE_NEWNET}

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
KEYCTL_JOIN_SESSION_KEYRING = 1

# Syscalls without a glibc wrapper. mount_setattr has one number everywhere (new syscall table).
_SYSCALLS = {"x86_64": {"pivot_root": 155, "keyctl": 250}, "aarch64": {"pivot_root": 41, "keyctl": 219}}
SYS_MOUNT_SETATTR = 442
# Landlock's syscalls, also from the new table (same number on every architecture).
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH, LANDLOCK_RULE_NET_PORT = 1, 2
# Filesystem rights (include/uapi/linux/landlock.h), by the ABI that introduced them.
LL_EXECUTE, LL_WRITE_FILE, LL_READ_FILE, LL_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
LL_REMOVE_DIR, LL_REMOVE_FILE, LL_MAKE_CHAR, LL_MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
LL_MAKE_REG, LL_MAKE_SOCK, LL_MAKE_FIFO, LL_MAKE_BLOCK, LL_MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
LL_REFER, LL_TRUNCATE, LL_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # ABI 2, 3, 5
LL_NET_BIND_TCP, LL_NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
LL_SCOPE_ABSTRACT_UNIX_SOCKET, LL_SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6
_LL_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
_LL_FILE_RIGHTS = LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | LL_TRUNCATE | LL_IOCTL_DEV
_LL_READ = LL_EXECUTE | LL_READ_FILE | LL_READ_DIR


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


class _LandlockRulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _LandlockPathBeneath(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is packed: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        libc.unshare.argtypes = [ctypes.c_int]
        libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        _LIBC = libc
    return _LIBC


def _check(ret: int, what: str) -> None:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _syscall(name: str, *args) -> int:  # type: ignore[no-untyped-def]
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        raise OSError(errno.ENOSYS, f"{name}: unknown syscall number on {platform.machine()}")
    ret = _libc().syscall(ctypes.c_long(numbers[name]), *args)
    _check(ret, name)
    return ret


def _unshare(flags: int, what: str) -> None:
    _check(_libc().unshare(flags), f"unshare({what})")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(s: str | None) -> bytes | None:
        return None if s is None else os.fsencode(s)

    _check(_libc().mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {source or ''} on {target}")


def _mount_setattr(path: str, set_: int = 0, clear: int = 0, recursive: bool = True) -> None:
    attr = _MountAttr(set_, clear, 0, 0)
    ret = _libc().syscall(
        ctypes.c_long(SYS_MOUNT_SETATTR),
        ctypes.c_int(AT_FDCWD),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.c_uint(AT_RECURSIVE if recursive else 0),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    _check(ret, f"mount_setattr({path}{', recursive' if recursive else ''})")


def _prctl(option: int, value: int, what: str) -> None:
    _check(_libc().prctl(option, value, 0, 0, 0), f"prctl({what})")


def die_with_parent(expected_parent: int) -> None:
    """SIGKILL when the parent dies; if it already died (we were reparented), die now."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    if os.getppid() != expected_parent:
        os._exit(125)


def enter_user_namespace() -> None:
    """Unprivileged path: a user namespace mapping our own uid/gid to themselves gives the
    capabilities to make the other namespaces; ``execve`` of a non-zero uid drops them."""
    uid, gid = os.getuid(), os.getgid()
    _unshare(CLONE_NEWUSER, "CLONE_NEWUSER")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


# -- the minimal root ---------------------------------------------------------------------------------


def _make_mountpoint(path: str, directory: bool) -> None:
    if os.path.lexists(path):
        return
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if directory:
        os.mkdir(path, 0o755)
    else:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))


def _bind(source: str, target: str, writable: bool) -> None:
    # The source is opened first (O_PATH): the bind then refers to exactly what was checked.
    fd = os.open(source, os.O_PATH | os.O_CLOEXEC)
    try:
        _make_mountpoint(target, os.path.isdir(f"/proc/self/fd/{fd}"))
        _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
    finally:
        os.close(fd)
    if not writable:
        _mount_setattr(target, set_=MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)


def build_root(plan: dict) -> None:
    """Mount the child's whole world on a fresh tmpfs and ``pivot_root`` into it: the system
    directories, the interpreter and environments (read-only), the working copy (through an
    overlay whose writes land on a size-capped tmpfs), private scratch directories, a few device
    nodes and a fresh ``/proc``. The host's filesystem is then unreachable."""
    new = plan["dir"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=16m")
    scratch = plan["scratch"]
    size = f",size={plan['scratch_size']}" if plan.get("scratch_size") else ""
    _mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755" + size)
    for name in ("upper", "work", "tmp", "var-tmp", "shm"):
        os.mkdir(os.path.join(scratch, name))
        os.chmod(os.path.join(scratch, name), 0o1777 if name in ("tmp", "var-tmp", "shm") else 0o755)
    # The scratch directories first: a bound path under /tmp (the working copy) goes on top.
    for name, where in (("tmp", "/tmp"), ("var-tmp", "/var/tmp"), ("shm", "/dev/shm")):
        _make_mountpoint(new + where, True)
        _mount(os.path.join(scratch, name), new + where, None, MS_BIND)
    for source, target, writable in plan["binds"]:
        _bind(source, new + target, writable)
    for path, target in plan["links"]:
        if not os.path.lexists(new + path):
            os.makedirs(os.path.dirname(new + path), mode=0o755, exist_ok=True)
            os.symlink(target, new + path)
    for device in plan["devices"]:
        _bind(device, new + device, True)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        if not os.path.lexists(f"{new}/dev/{name}"):
            os.symlink(target, f"{new}/dev/{name}")
    work = plan.get("workdir")
    if work:
        st = os.stat(work["source"])  # the overlay's root takes the upper directory's owner and mode
        os.chown(os.path.join(scratch, "upper"), st.st_uid, st.st_gid)
        os.chmod(os.path.join(scratch, "upper"), stat.S_IMODE(st.st_mode))
        _make_mountpoint(new + work["path"], True)
        if work["overlay"]:
            _mount(
                "overlay",
                new + work["path"],
                "overlay",
                MS_NOSUID | MS_NODEV,
                f"lowerdir={work['source']},upperdir={scratch}/upper,workdir={scratch}/work",
            )
        else:
            _bind(work["source"], new + work["path"], True)
    _make_mountpoint(new + "/proc", True)
    _mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chdir(new)
    _syscall("pivot_root", ctypes.c_char_p(b"."), ctypes.c_char_p(b"."))
    _check(_libc().umount2(b".", MNT_DETACH), "umount2(old root)")
    os.chdir("/")
    _mount_setattr("/", set_=MOUNT_ATTR_RDONLY, recursive=False)


# -- Landlock -------------------------------------------------------------------------------------------


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; OSError if it has none (or a seccomp filter refuses it)."""
    ret = _libc().syscall(
        ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET),
        ctypes.c_void_p(None),
        ctypes.c_size_t(0),
        ctypes.c_uint(LANDLOCK_CREATE_RULESET_VERSION),
    )
    _check(ret, "landlock_create_ruleset(version)")
    return ret


def _landlock_rule(ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (FileNotFoundError, PermissionError):
        return  # not in this root, or not reachable by this uid anyway: nothing to allow
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= _LL_FILE_RIGHTS  # the kernel refuses directory rights on a file
        rule = _LandlockPathBeneath(access, fd)
        _check(
            _libc().syscall(
                ctypes.c_long(SYS_LANDLOCK_ADD_RULE),
                ctypes.c_int(ruleset),
                ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                ctypes.byref(rule),
                ctypes.c_uint(0),
            ),
            f"landlock_add_rule({path})",
        )
    finally:
        os.close(fd)


def apply_landlock(plan: dict) -> None:
    """Restrict this process and everything it execs to ``plan``: unless ``plan["fs"]`` is false,
    read (and execute) only beneath ``plan["read"]``, write only beneath ``plan["write"]`` (and
    the device files in ``plan["devices"]``); with ``plan["deny_tcp"]`` no TCP bind or connect
    (ABI 4); signals and abstract unix sockets only within the domain (ABI 6). Needs
    ``no_new_privs`` (or CAP_SYS_ADMIN). The rights handled are those the running kernel's ABI
    knows: an older kernel enforces less, never fails for it."""
    abi = landlock_abi()
    fs = _LL_FS_BY_ABI.get(abi, (1 << 16) - 1) if plan.get("fs", True) else 0
    net = (LL_NET_BIND_TCP | LL_NET_CONNECT_TCP) if abi >= 4 and plan.get("deny_tcp") else 0
    scoped = (LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL) if abi >= 6 else 0
    if not fs | net | scoped:
        return  # nothing this kernel could add (the kernel refuses an empty ruleset)
    attr = _LandlockRulesetAttr(fs, net, scoped)
    size = 8 if abi < 4 else 16 if abi < 6 else 24  # the struct as this ABI knows it
    ruleset = _libc().syscall(
        ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint(0)
    )
    _check(ruleset, "landlock_create_ruleset")
    try:
        for path in plan["read"]:
            _landlock_rule(ruleset, path, _LL_READ & fs)
        for path in plan["write"]:
            _landlock_rule(ruleset, path, fs)
        for path in plan["devices"]:
            _landlock_rule(ruleset, path, (LL_READ_FILE | LL_WRITE_FILE | LL_TRUNCATE | LL_IOCTL_DEV) & fs)
        _check(
            _libc().syscall(ctypes.c_long(SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_int(ruleset), ctypes.c_uint(0)),
            "landlock_restrict_self",
        )
    finally:
        os.close(ruleset)


# -- the command ----------------------------------------------------------------------------------------


def _apply_limits(rlimits: dict[str, list[int]]) -> None:
    for name, (soft, hard) in rlimits.items():
        resource.setrlimit(getattr(resource, name), (soft, hard))


def drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if (os.getuid(), os.geteuid(), os.getgid(), os.getegid()) != (uid, uid, gid, gid):
        raise OSError(errno.EPERM, f"still uid {os.getuid()} after setuid({uid})")


def new_session_keyring() -> None:
    """Join a fresh anonymous session keyring: the parent's keys are no longer possessed."""
    _syscall("keyctl", ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING), ctypes.c_char_p(None))


def _exec_command(cfg: dict, argv: list[str], status_fd: int) -> None:
    """In the command's process: the last steps, then ``execve``. Never returns."""
    code = 126
    try:
        os.setsid()
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
        if cfg["uid"] is not None:
            drop_privileges(cfg["uid"], cfg["gid"])
        if cfg["layers"].get("keyring"):
            new_session_keyring()
        _apply_limits(cfg["rlimits"])
        _prctl(PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")
        os.chdir(cfg["workdir"])
        for fd in cfg["keep_fds"]:
            os.set_inheritable(fd, True)
        if cfg.get("landlock"):
            apply_landlock(cfg["landlock"])  # last: after it, only what the plan allows
    except Exception as exc:  # noqa: BLE001 - any setup failure is reported, not half-run
        _report(status_fd, f"sandbox setup failed: {exc}")
        os._exit(126)
    try:
        os.execvpe(argv[0], argv, cfg["env"])
    except OSError as exc:
        who = f" as uid {cfg['uid']}" if cfg["uid"] is not None else ""
        hint = " (every directory on its path must be searchable by that uid)" if exc.errno == errno.EACCES else ""
        _report(status_fd, f"cannot run {argv[0]!r}{who}: {exc.strerror}{hint}")
        code = 127 if exc.errno == errno.ENOENT else 126
    os._exit(code)


def _report(fd: int, message: str) -> None:
    try:
        os.write(fd, message.encode(errors="replace")[:4000])
    except OSError:
        pass


def _init(cfg: dict, argv: list[str], status_fd: int, relay_fd: int, launcher: int) -> None:
    """PID 1 of the new PID namespace (or just the middle process without one)."""
    try:
        # getppid() is 0 across a PID namespace: whether the launcher is still alive is asked of
        # its pidfd (readable once it has exited).
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
        poller = select.poll()
        poller.register(launcher, select.POLLIN)
        if poller.poll(0):
            os._exit(125)
        os.close(launcher)
        if cfg.get("root"):
            build_root(cfg["root"])
        if cfg["layers"].get("uts"):
            # The UTS namespace is already private; naming it is cosmetic, and some container
            # runtimes' seccomp profiles refuse sethostname even there (podman, measured): go on.
            _libc().sethostname(b"codemod-sandbox", 15)
    except Exception as exc:  # noqa: BLE001
        _report(status_fd, f"sandbox setup failed: {exc}")
        os._exit(126)
    command = os.fork()
    if command == 0:
        os.close(relay_fd)
        _exec_command(cfg, argv, status_fd)
    os.close(status_fd)
    while True:  # reap every orphan until the command itself has ended
        try:
            pid, status = os.wait()
        except ChildProcessError:
            status = 0xFF00
            break
        except InterruptedError:
            continue
        if pid == command:
            break
    word = f"S{os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"E{os.waitstatus_to_exitcode(status)}"
    os.write(relay_fd, word.encode())
    os._exit(0)  # PID 1 exits: the kernel kills whatever is left in the namespace


def _relay(init: int, relay_r: int) -> int:
    """In the launcher: wait for init, then end the way the command ended."""
    os.waitpid(init, 0)
    word = b""
    while chunk := os.read(relay_r, 64):
        word += chunk
    text = word.decode(errors="replace")
    if text.startswith("S") and text[1:].isdigit():
        sig = int(text[1:])
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        return 128 + sig
    if text.startswith("E") and text[1:].lstrip("-").isdigit():
        return int(text[1:]) & 0xFF
    return 126


def run(cfg: dict, argv: list[str], status_fd: int) -> int:
    os.umask(0o022)
    die_with_parent(cfg["parent_pid"])
    for procs in cfg["cgroups"]:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    layers = cfg["layers"]
    try:
        if cfg["userns"]:
            enter_user_namespace()
        flags = 0
        for name, flag in NAMESPACES.items():
            if layers.get(name):
                flags |= flag
        if flags:
            _unshare(flags, "+".join(n for n in NAMESPACES if layers.get(n)))
    except Exception as exc:  # noqa: BLE001
        _report(status_fd, f"sandbox setup failed: {exc}")
        return 126
    launcher = os.pidfd_open(os.getpid())
    relay_r, relay_w = os.pipe()
    init = os.fork()
    if init == 0:
        os.close(relay_r)
        _init(cfg, argv, status_fd, relay_w, launcher)
    os.close(launcher)
    os.close(relay_w)
    os.close(status_fd)
    return _relay(init, relay_r)


# -- probing ------------------------------------------------------------------------------------------


def _in_fork(step) -> str | None:  # type: ignore[no-untyped-def]
    """Run ``step`` in a forked child; None if it worked, else why not (one line)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            step()
            os._exit(0)
        except BaseException as exc:  # noqa: BLE001 - reported as text
            os.write(w, (str(exc) or type(exc).__name__).encode(errors="replace")[:2000])
            os._exit(1)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        return None
    return data.decode(errors="replace") or f"exit status {os.waitstatus_to_exitcode(status)}"


def probe(cfg: dict) -> dict[str, str | None]:
    """Which layers this kernel grants, each tried in its own throwaway process."""
    report: dict[str, str | None] = {}

    def landlock() -> None:
        _prctl(PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")
        apply_landlock({"read": [], "write": [], "devices": [], "deny_tcp": True})
        try:
            os.close(os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        except PermissionError:
            return
        raise OSError(errno.EPERM, "landlock_restrict_self returned but / is still readable")

    # First: where namespaces are refused, Landlock is what is left.
    if cfg.get("landlock") is False:
        report["landlock"] = "turned off (CODEMOD_SANDBOX_LANDLOCK=0)"
    else:
        report["landlock"] = _in_fork(landlock)
        if report["landlock"] is None:
            report["landlock_abi"] = str(landlock_abi())

    def userns() -> None:
        if cfg["userns"]:
            enter_user_namespace()

    report["userns"] = _in_fork(userns) if cfg["userns"] else None
    if report["userns"]:
        why = f"no user namespace: {report['userns']}"
        return {**report, **{name: why for name in (*NAMESPACES, "root", "keyring")}, "uid": None}
    for name, flag in NAMESPACES.items():
        report[name] = _in_fork(lambda flag=flag, name=name: (userns(), _unshare(flag, name)))

    def whole_root() -> None:
        userns()
        _unshare(CLONE_NEWNS | (CLONE_NEWPID if not report["pid"] else 0), "mount+pid")
        pid = os.fork()
        if pid == 0:
            try:
                build_root(cfg["root"])
                os._exit(0 if os.path.isdir("/proc/self") else 3)
            except BaseException as exc:  # noqa: BLE001
                sys.stderr.write(str(exc))
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise OSError(errno.EPERM, f"building the minimal root failed (exit {os.waitstatus_to_exitcode(status)})")

    report["root"] = (
        _in_fork(whole_root)
        if not report["mount"] and cfg.get("root")
        else (f"no mount namespace: {report['mount']}" if report["mount"] else "not asked for")
    )

    def keyring() -> None:
        userns()
        if cfg["uid"] is not None:
            drop_privileges(cfg["uid"], cfg["gid"])
        new_session_keyring()

    report["keyring"] = _in_fork(keyring)
    report["uid"] = _in_fork(lambda: drop_privileges(cfg["uid"], cfg["gid"])) if cfg["uid"] is not None else None
    return report


def _stage1(args: list[str]) -> int:
    """Entry point: ``--stage1 CONFIG_FD STATUS_FD -- ARGV...``."""
    config_fd, status_fd = int(args[0]), int(args[1])
    argv = args[3:]
    os.set_inheritable(status_fd, False)
    with os.fdopen(config_fd, "rb") as f:
        cfg = json.loads(f.read())
    if cfg.get("probe"):
        sys.stdout.write(json.dumps(probe(cfg)))
        sys.stdout.flush()
        return 0
    return run(cfg, argv, status_fd)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--stage1":
    sys.exit(_stage1(sys.argv[2:]))
