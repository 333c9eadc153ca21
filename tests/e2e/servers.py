"""Real redis-server and PostgreSQL 15 servers for the scale-out runs (started per test session;
``.ci/run`` installs them). ``None`` with the reason when the binaries are not on this machine."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN = Path(os.environ.get("CODEMOD_PG_BIN", "/usr/lib/postgresql/15/bin"))
NOBODY = 65534


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 30) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def _missing(reason: str | None) -> str | None:
    if reason and os.environ.get("CODEMOD_REQUIRE_SERVERS"):
        raise RuntimeError(f"CODEMOD_REQUIRE_SERVERS is set but {reason}")
    return reason


def missing_redis() -> str | None:
    return _missing(
        None
        if shutil.which("redis-server")
        else "redis-server is not installed (apt-get install redis-server; .ci/run does)"
    )


def missing_postgres() -> str | None:
    return _missing(None if (PG_BIN / "postgres").exists() else f"PostgreSQL 15 binaries not found in {PG_BIN}")


def start_redis(root: Path) -> tuple[subprocess.Popen, str]:
    root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if not _wait_port(port):
        proc.kill()
        raise RuntimeError("redis-server did not start")
    return proc, f"redis://127.0.0.1:{port}/0"


def _as_nobody(args: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root
    if os.geteuid() != 0:
        return args
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *args]


def start_postgres() -> tuple[subprocess.Popen, str, Path]:
    """A throwaway cluster in its own directory (owned by nobody when we are root: postgres
    refuses to run as root, and pytest's tmp dirs are private to root)."""
    root = Path(tempfile.mkdtemp(prefix="codemod-pg-"))
    root.chmod(0o755)
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        os.chown(root, NOBODY, NOBODY)
        os.chown(data, NOBODY, NOBODY)
    subprocess.run(
        _as_nobody([str(PG_BIN / "initdb"), "-N", "-A", "trust", "-U", "codemod", "-D", str(data)]),
        check=True,
        capture_output=True,
    )
    port = _free_port()
    proc = subprocess.Popen(
        _as_nobody(
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
                "-k",
                str(root),
                "-c",
                "fsync=off",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if not _wait_port(port):
        proc.kill()
        raise RuntimeError("postgres did not start")
    deadline = time.time() + 30
    while True:
        done = subprocess.run(
            _as_nobody([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "codemod", "codemod"]),
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
            break
        if time.time() > deadline:
            proc.kill()
            raise RuntimeError(f"createdb failed: {done.stderr.strip()}")
        time.sleep(0.2)
    return proc, f"postgresql+psycopg://codemod@127.0.0.1:{port}/codemod", root


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
