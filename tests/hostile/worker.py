"""The GitHub App's worker as an attacker sees it: a process that holds secrets (a key in its
session keyring, SysV shared memory and a message queue, whatever the test put in its environment)
and then runs ``codemod`` in-process on a repository. Used by tests/test_hostile.py, as root and as
an unprivileged user.

    python tests/hostile/worker.py '{"keyring_desc": ..., "secret": ..., "ipc_key": ..., "ipc_secret": ...,
                                     "argv": [...]}'
"""

import ctypes
import json
import platform
import sys

ADD_KEY = {"x86_64": 248, "aarch64": 217}
KEYCTL = {"x86_64": 250, "aarch64": 219}
IPC_CREAT, IPC_RMID = 0o1000, 0


def main() -> int:
    spec = json.loads(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    machine = platform.machine()
    secret = spec["secret"].encode()
    # A session keyring of our own, holding the secret (as the App might keep a token there).
    if libc.syscall(KEYCTL[machine], 1, b"codemod-hostile-worker") < 0:
        raise OSError(ctypes.get_errno(), "keyctl(JOIN_SESSION_KEYRING)")
    if libc.syscall(ADD_KEY[machine], b"user", spec["keyring_desc"].encode(), secret, len(secret), -3) < 0:
        raise OSError(ctypes.get_errno(), "add_key")
    # SysV shared memory and a message queue, world-readable: only an IPC namespace keeps them out.
    secret = spec["ipc_secret"].encode()
    shm = libc.shmget(spec["ipc_key"], 4096, IPC_CREAT | 0o666)
    if shm < 0:
        raise OSError(ctypes.get_errno(), "shmget")
    addr = libc.shmat(shm, None, 0)
    ctypes.memmove(addr, secret, len(secret))
    queue = libc.msgget(spec["ipc_key"], IPC_CREAT | 0o666)
    if queue < 0:
        raise OSError(ctypes.get_errno(), "msgget")
    message = ctypes.create_string_buffer(ctypes.sizeof(ctypes.c_long) + len(secret))
    ctypes.memmove(ctypes.addressof(message), ctypes.byref(ctypes.c_long(1)), ctypes.sizeof(ctypes.c_long))
    ctypes.memmove(ctypes.addressof(message) + ctypes.sizeof(ctypes.c_long), secret, len(secret))
    libc.msgsnd(queue, message, len(secret), 0)
    try:
        from codemod.cli import main as codemod

        return codemod(spec["argv"])
    finally:
        libc.shmdt(ctypes.c_void_p(addr))
        libc.shmctl(shm, IPC_RMID, None)
        libc.msgctl(queue, IPC_RMID, None)


if __name__ == "__main__":
    sys.exit(main())
