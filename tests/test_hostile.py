"""Hostile repositories through ``codemod verify``, against a worker that holds secrets (issue 9).

The worker (tests/hostile/worker.py) is what the GitHub App's worker is to an attacker: secrets in
its environment (``GITHUB_PRIVATE_KEY``, ``LC_GITHUB_TOKEN``, a harmless-looking name), a key in its
session keyring, SysV shared memory and a message queue, a 0600 key file outside /tmp, a 0700
directory on its ``PYTHONPATH`` holding a ``.env``, a world-readable file outside /tmp; beside it a
process with a secret argument, a TCP listener on loopback and a unix socket under /run. Each
hostile repository tries one attack (tests/hostile/snoop.py does the looking) and reports what it
found through the verdict; every test then checks: no secret in anything verify printed, no
listener heard anything, no file appeared outside the copies, no process of the run survived, no
copy was left behind, and nothing forged a "proven". Everything runs twice: as root (as the App's
worker runs) and as an unprivileged user (uid 65534, with only its own permissions).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from codemod.verify import sandbox
from codemod.verify.sandbox import detect_isolation
from test_sandbox import _marked_processes as _marked

REPO = Path(__file__).resolve().parents[1]
HOSTILE = Path(__file__).resolve().parent / "hostile"
FIXTURE = REPO / "fixtures" / "repos" / "init_derived"
NOBODY = 65534

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="building the worker's world (a socket under /run, another user) needs root"
)


class _Listener:
    """A listener in a thread that records every connection and what it was sent."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.heard: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.heard.append(conn.recv(4096) or b"<connected>")
                except OSError:
                    self.heard.append(b"<connected>")


def _process_tree(root: int) -> str:
    """Each process under ``root``: pid, parent, state, kernel wait channel and command line."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    lines, todo = [], [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            wchan = Path(f"/proc/{pid}/wchan").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        lines.append(f"{pid} state={state} wchan={wchan} {cmd[:300]}")
    return "\n".join(lines)


class World:
    """The worker's secrets and surroundings, for one user (root or NOBODY)."""

    def __init__(self, user: str) -> None:
        self.uid = 0 if user == "root" else NOBODY
        self.id = uuid.uuid4().hex[:10]
        self.secrets = {
            name: f"s3cr3t-{name}-{self.id}"
            for name in (
                "env-key",
                "env-webhook",
                "lc",
                "plain",
                "keyfile",
                "dotenv",
                "public",
                "argv",
                "keyring",
                "ipc",
                "symlink",
                "rootonly",
            )
        }
        base = next(Path(b) for b in ("/srv", "/opt", "/mnt", "/var/tmp") if os.path.isdir(b) and os.access(b, os.W_OK))
        self.base = Path(tempfile.mkdtemp(prefix="codemod-hostile-", dir=base))
        self.base.chmod(0o755)
        self.app = self._dir("app", 0o700)  # on PYTHONPATH, with a .env
        self._file(self.app / ".env", f"GITHUB_APP_KEY={self.secrets['dotenv']}\n", 0o600)
        self._file(self.app / "app_settings.py", "DEBUG = False\n", 0o600)
        self.keys = self._dir("keys", 0o700)
        self.key_file = self._file(self.keys / "private-key.pem", f"{self.secrets['keyfile']}\n", 0o600)
        self.public_file = self._file(self.base / "public.txt", f"{self.secrets['public']}\n", 0o644)
        self.outside_py = self._file(
            self.base / "outside_model.py", _OUTSIDE_MODEL.format(secret=self.secrets["symlink"]), 0o600
        )
        self.rootonly = self.base / "rootonly.txt"
        self.rootonly.write_text(f"{self.secrets['rootonly']}\n")
        self.rootonly.chmod(0o600)  # root's, whoever the worker is
        self.open_dir = self._dir("open", 0o777)
        self.cache = self._dir("cache", 0o700)
        self.tmp = self._dir("tmp", 0o700)  # the worker's TMPDIR: copies go there
        self.home = self._dir("home", 0o700)
        self.repos = self._dir("repos", 0o755)
        self.marker = f"codemod-hostile-daemon-{self.id}"
        self.tcp = _Listener(socket.create_server(("127.0.0.1", 0)))
        self.socket_path = f"/run/codemod-hostile-{self.id}.sock"
        unix = socket.socket(socket.AF_UNIX)
        unix.bind(self.socket_path)
        os.chmod(self.socket_path, 0o666)
        unix.listen()
        self.unix = _Listener(unix)
        self.argv_process = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(3600)", f"--key={self.secrets['argv']}"]
        )
        self.ipc_key = int(self.id[:7], 16)
        self.write_targets = [
            str(self.open_dir / "pwned"),
            f"/tmp/codemod-hostile-pwned-{self.id}",
            str(Path(sysconfig.get_paths()["purelib"]) / f"codemod-hostile-{self.id}.pth"),
            str(self.cache / "pwned"),
            str(REPO / f"pwned-{self.id}"),
            str(self.base / "pwned"),
            str(self.app / "pwned.py"),
        ]

    def _dir(self, name: str, mode: int) -> Path:
        path = self.base / name
        path.mkdir()
        os.chown(path, self.uid, self.uid)
        path.chmod(mode)
        return path

    def _file(self, path: Path, text: str, mode: int) -> Path:
        path.write_text(text)
        os.chown(path, self.uid, self.uid)
        path.chmod(mode)
        return path

    def close(self) -> None:
        self.argv_process.kill()
        self.argv_process.wait()
        self.tcp.sock.close()
        self.unix.sock.close()
        with _suppress():
            os.unlink(self.socket_path)
        for pid in _marked(self.marker):
            with _suppress():
                os.kill(pid, signal.SIGKILL)
        for target in self.write_targets:
            with _suppress():
                os.unlink(target)
        shutil.rmtree(self.base, ignore_errors=True)

    # -- repositories ---------------------------------------------------------------------------

    def repository(self, name: str, smoke: str, files: dict[str, str] | None = None) -> Path:
        """The init_derived fixture (it has a rewrite, so both copies run) with ``smoke`` as its
        smoke table, the snoop and its targets, and ``files``."""
        repo = self.repos / name
        shutil.copytree(FIXTURE, repo)
        pyproject = repo / "pyproject.toml"
        text = pyproject.read_text()
        pyproject.write_text(text[: text.index("[tool.codemod.smoke]")] + "[tool.codemod.smoke]\n" + smoke + "\n")
        targets = json.dumps(
            {
                "key_file": str(self.key_file),
                "env_file": str(self.app / ".env"),
                "public_file": str(self.public_file),
                "unix_socket": self.socket_path,
                "tcp_port": self.tcp.sock.getsockname()[1],
                "ipc_key": self.ipc_key,
                "keyring_desc": f"codemod-hostile-{self.id}",
                "pythonpath_dir": str(self.app),
                "marker": self.marker,
                "write_targets": self.write_targets,
            }
        )
        for directory in [repo, *(repo / Path(p).parent for p in (files or {}) if p.endswith("/snoop.py"))]:
            directory.mkdir(parents=True, exist_ok=True)
            shutil.copy(HOSTILE / "snoop.py", directory / "snoop.py")
            (directory / "targets.json").write_text(targets)
        for rel, content in (files or {}).items():
            if rel.endswith("/snoop.py"):
                continue
            path = repo / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        for top, dirs, names in os.walk(repo):
            for entry in dirs + names + [""]:
                os.chown(os.path.join(top, entry), self.uid, self.uid, follow_symlinks=False)
        return repo

    # -- the worker -------------------------------------------------------------------------------

    def environment(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEMOD_", "PYTEST_"))}
        env.update(
            GITHUB_PRIVATE_KEY=self.secrets["env-key"],
            GITHUB_WEBHOOK_SECRET=self.secrets["env-webhook"],
            LC_GITHUB_TOKEN=self.secrets["lc"],
            APP_SETTINGS=self.secrets["plain"],
            PYTHONPATH=os.pathsep.join([str(self.app), str(REPO)]),
            TMPDIR=str(self.tmp),
            HOME=str(self.home),
            CODEMOD_CACHE=str(self.cache),
            CODEMOD_SANDBOX_MAX_TIMEOUT="120",
        )
        env.update(extra)
        return env

    def command(self, *argv: str) -> list[str]:
        spec = json.dumps(
            {
                "keyring_desc": f"codemod-hostile-{self.id}",
                "secret": self.secrets["keyring"],
                "ipc_key": self.ipc_key,
                "ipc_secret": self.secrets["ipc"],
                "argv": list(argv),
            }
        )
        worker = [sys.executable, str(HOSTILE / "worker.py"), spec]
        return worker if self.uid == 0 else [*_unprivileged(self.uid), *worker]

    def start(self, *argv: str, **extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(*argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.environment(**extra),
            cwd=str(self.base),
        )

    def verify(self, repo: Path, **extra: str) -> tuple[subprocess.CompletedProcess, dict | None]:
        proc = self.start("verify", str(repo), "--format", "json", **extra)
        try:
            out, err = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:  # say what hung (every run is clamped to 120 s), then fail
            tree = _process_tree(proc.pid)
            for line in tree.splitlines():
                with contextlib.suppress(OSError):
                    os.kill(int(line.split()[0]), signal.SIGKILL)
            out, err = proc.communicate(timeout=60)
            pytest.fail(f"verify did not end in 900 s; its processes:\n{tree}\nstderr:\n{err[-3000:]}")
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        try:
            verdict = json.loads(out)
        except ValueError:
            verdict = None
        return done, verdict

    # -- what must hold after every run -----------------------------------------------------------

    def assert_clean(self, proc: subprocess.CompletedProcess) -> None:
        output = proc.stdout + proc.stderr
        leaked = [name for name, value in self.secrets.items() if value in output]
        assert not leaked, f"secrets in verify's output: {leaked}\n{output[-3000:]}"
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert self.tcp.heard == [] and self.unix.heard == [], (self.tcp.heard, self.unix.heard)
        assert [t for t in self.write_targets if os.path.lexists(t)] == []
        deadline = time.monotonic() + 5
        while _marked(self.marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _marked(self.marker) == [], "a process of the run survived it"
        assert os.listdir(self.tmp) == [], "verify left files in its TMPDIR (copies not removed)"
        assert self.argv_process.poll() is None


_OUTSIDE_MODEL = """import torch
import torch.nn as nn

TOKEN = "{secret}"


class Leaky(nn.Module):
    def __init__(self):
        super().__init__()
        self.raw = nn.Parameter(torch.zeros(3))
        self.scale = torch.sigmoid(self.raw)

    def forward(self, x):
        return x * self.scale
"""


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)


def _unprivileged(uid: int) -> list[str]:
    """A command prefix that runs as ``uid`` in a private mount namespace where directories on
    the way to this interpreter and checkout that ``uid`` cannot search (a 0700 /root holding
    pyenv) are covered by a 0755 tmpfs with just those entries bound back."""
    masks: dict[str, set[str]] = {}
    for path in (os.path.realpath(sys.executable), sys.base_prefix, sys.prefix, str(REPO)):
        parts = Path(os.path.realpath(path)).parts
        for i in range(1, len(parts)):
            directory = str(Path(*parts[:i]))
            if not os.stat(directory).st_mode & stat.S_IXOTH:
                masks.setdefault(directory, set()).add(str(Path(*parts[: i + 1])))
                break
    aside = tempfile.mkdtemp(prefix="codemod-hostile-aside-")
    lines = ["set -e"]
    for n, (directory, keep) in enumerate(sorted(masks.items())):
        for m, path in enumerate(sorted(keep)):
            lines += [f"mkdir -p {aside}/{n}-{m}", f"mount --bind {path} {aside}/{n}-{m}"]
        lines.append(f"mount -t tmpfs -o mode=755 tmpfs {directory}")
        for m, path in enumerate(sorted(keep)):
            lines += [f"mkdir -p {path}", f"mount --move {aside}/{n}-{m} {path}"]
    lines.append(f'exec setpriv --reuid={uid} --regid={uid} --clear-groups "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "; ".join(lines), "sh"]


@pytest.fixture(scope="module", params=["root", "unprivileged"])
def world(request) -> Iterator[World]:
    if not detect_isolation().filesystem.startswith("minimal root"):
        pytest.skip(f"no minimal root here: {detect_isolation().filesystem}")
    made = World(request.param)
    yield made
    made.close()


def _case(verdict: dict, prefix: str) -> dict:
    return next(c for c in verdict["cases"] if c["name"].startswith(prefix))


# -- 3, 4, 5, 6: the environment, the filesystem, processes, IPC, keyring, sockets -------------------


def test_a_smoke_command_finds_nothing_and_reaches_nobody(world: World) -> None:
    repo = world.repository("snoop", 'command = "python snoop.py"\ntimeout = 120')
    proc, verdict = world.verify(repo)
    assert verdict is not None, proc.stderr
    command = _case(verdict, "command")
    for side in ("original", "rewritten"):
        assert "snoop ran (command); found []; reached []" in command[side], command
    assert verdict["status"] != "proven"
    world.assert_clean(proc)
    for layer in (
        "network: network namespace",
        "processes: PID namespace",
        "ipc: IPC namespace",
        "keyring: a fresh session keyring",
        "filesystem: minimal root",
    ):
        assert layer in verdict["isolation"], verdict["isolation"]


def test_the_harness_process_finds_nothing_either(world: World) -> None:
    cases = "import snoop\n\n\ndef cases():\n    raise RuntimeError(snoop.collect('harness'))\n"
    repo = world.repository(
        "harness_snoop",
        'cases = "tests/smoke_cases.py:cases"\ntimeout = 300',
        {"tests/smoke_cases.py": "import sys, os\nsys.path.insert(0, os.getcwd())\n" + cases},
    )
    proc, verdict = world.verify(repo)
    assert verdict is not None, proc.stderr
    harness = _case(verdict, "harness")
    assert "snoop ran (harness); found []; reached []" in harness["reason"], harness
    world.assert_clean(proc)


# -- 1: requirements build with the repository's own backend ---------------------------------------

_BACKEND = """import base64, hashlib, os, sys, zipfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import snoop


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    loot = snoop.collect("backend")
    files = {"evil_loot.py": "LOOT = %r\\n" % loot,
             "evilpkg-0.1.dist-info/METADATA": "Metadata-Version: 2.1\\nName: evilpkg\\nVersion: 0.1\\n",
             "evilpkg-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: evil\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (name, digest, len(text.encode())))
    files["evilpkg-0.1.dist-info/RECORD"] = "\\n".join(record + ["evilpkg-0.1.dist-info/RECORD,,"]) + "\\n"
    name = "evilpkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return name
"""


def test_a_requirement_with_an_in_tree_backend_builds_inside_the_sandbox(world: World) -> None:
    pyproject = (
        '[build-system]\nrequires = []\nbuild-backend = "evil_backend"\nbackend-path = ["."]\n\n'
        '[project]\nname = "evilpkg"\nversion = "0.1"\n'
    )
    repo = world.repository(
        "backend",
        'command = "python -c \\"import evil_loot; raise RuntimeError(evil_loot.LOOT)\\""\n'
        'requirements = ["./evilpkg"]\ntimeout = 300',
        {"evilpkg/pyproject.toml": pyproject, "evilpkg/evil_backend.py": _BACKEND, "evilpkg/snoop.py": ""},
    )
    proc, verdict = world.verify(repo)
    assert verdict is not None, proc.stdout + proc.stderr
    command = _case(verdict, "command")
    assert "snoop ran (backend); found []; reached []" in command["original"], command
    world.assert_clean(proc)


# -- 2: requirement strings that are pip options ----------------------------------------------------


def test_requirement_options_are_refused_before_pip_runs(world: World) -> None:
    log = world.open_dir / "pip.log"
    for requirement in (
        f"-r{world.key_file}",
        f"--log={log}",
        f"--index-url=http://127.0.0.1:{world.tcp.sock.getsockname()[1]}/",
        f"-r {world.rootonly}",
    ):
        repo = world.repository(
            f"options-{abs(hash(requirement))}", f'command = "true"\nrequirements = {json.dumps([requirement])}'
        )
        proc, _ = world.verify(repo)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "is a pip option" in proc.stderr, proc.stderr
        assert not log.exists()
        world.assert_clean(proc)


# -- 7: an endless timeout, a daemon, SIGTERM to the worker ----------------------------------------

_DAEMON_THEN_SLEEP = (
    'command = "python -c \\"import snoop, time; snoop._leave_a_daemon(snoop._targets()); time.sleep(10**9)\\""'
)


def test_a_huge_timeout_is_clamped_and_the_daemon_dies(world: World) -> None:
    repo = world.repository("timeout", _DAEMON_THEN_SLEEP + "\ntimeout = 1000000000")
    proc, verdict = world.verify(repo, CODEMOD_SANDBOX_MAX_TIMEOUT="3")
    assert verdict is not None, proc.stderr
    assert any("clamped to the operator's maximum, 3 s" in n for n in verdict["notes"]), verdict["notes"]
    assert "timed out after 3 s" in _case(verdict, "command")["original"]
    assert verdict["status"] == "not proven"
    world.assert_clean(proc)


def _start_until_running(world: World, repo: Path) -> subprocess.Popen:
    """``codemod verify`` on ``repo``, once its smoke command has started its daemon."""
    proc = world.start("verify", str(repo), "--format", "json")
    deadline = time.monotonic() + 120
    while not _marked(world.marker) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert _marked(world.marker), "the smoke command never started"
    return proc


def test_sigterm_to_the_worker_kills_the_run_and_removes_the_copies(world: World) -> None:
    repo = world.repository("sigterm", _DAEMON_THEN_SLEEP + "\ntimeout = 600")
    proc = _start_until_running(world, repo)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    world.assert_clean(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))


def test_sigkill_to_the_worker_still_kills_the_run_and_the_next_run_removes_the_copies(world: World) -> None:
    repo = world.repository("sigkill", _DAEMON_THEN_SLEEP + "\ntimeout = 600")
    proc = _start_until_running(world, repo)
    proc.kill()
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while _marked(world.marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _marked(world.marker) == [], "PR_SET_PDEATHSIG did not take the run with the worker"
    assert os.listdir(world.tmp), "nothing was left behind to sweep (the test proves nothing)"
    again, verdict = world.verify(world.repository("after-sigkill", 'command = "true"\ntimeout = 60'))
    assert verdict is not None and verdict["status"] == "proven", again.stdout + again.stderr
    world.assert_clean(again)


# -- 8: symlinks out of the repository -------------------------------------------------------------


def test_symlinks_out_of_the_repository_are_neither_read_nor_copied(world: World) -> None:
    repo = world.repository("symlink", 'command = "python snoop.py"\ntimeout = 120')
    (repo / "scaler" / "leak.py").symlink_to(world.outside_py)
    (repo / "app_link").symlink_to(world.app, target_is_directory=True)
    (repo / "key.py").symlink_to(world.key_file)
    proc, verdict = world.verify(repo)
    assert verdict is not None, proc.stdout + proc.stderr
    assert not any(r["path"].endswith(("leak.py", "key.py")) for r in verdict["rewrites"]), verdict["rewrites"]
    assert "snoop ran (command); found []" in _case(verdict, "command")["original"]
    notes = "\n".join(verdict["notes"])
    for name in ("app_link", "key.py"):
        assert f"{name} (a symlink whose target leaves the repository)" in notes, notes
    world.assert_clean(proc)


# -- 9: forging the harness's result ------------------------------------------------------------------

_FORGE = """import os, sys
sys.path.insert(0, os.getcwd())
import forgery

payload = forgery.forged_payload(sys.argv)
with open(".codemod-harness.pt", "wb") as f:      # where torch-codemod once read its result
    f.write(payload)
os.symlink(%(rootonly)r, "result.pt")
for fd in range(3, 256):                          # the channel, whichever fd it is, without the nonce
    for nonce in (b"0" * 32, b""):
        try:
            os.write(fd, forgery.frame(nonce, payload))
        except OSError:
            pass
os._exit(0)                                       # before the real harness can report
"""


@pytest.mark.parametrize("how", ["planted", "shadowed"])
def test_a_forged_result_is_never_proven(world: World, how: str) -> None:
    """planted: the smoke cases plant a perfect result where torch-codemod once read it, write
    frames on every fd, and exit before the harness reports. shadowed: the repository's own
    ``random.py`` and ``codemod/verify/harness.py`` wait for the harness (were the copy on its
    sys.path) to take its nonce."""
    files = {"forgery.py": (HOSTILE / "fake_harness.py").read_text()}
    if how == "planted":
        files["tests/smoke_cases.py"] = _FORGE % {"rootonly": str(world.rootonly)}
    else:
        files.update(
            {
                "random.py": (HOSTILE / "shadow_random.py").read_text(),
                "codemod/__init__.py": "",
                "codemod/verify/__init__.py": "",
                "codemod/verify/harness.py": files["forgery.py"],
            }
        )
    repo = world.repository(f"forge-{how}", 'cases = "tests/smoke_cases.py:cases"\ntimeout = 300', files)
    proc, verdict = world.verify(repo)
    assert verdict is not None, proc.stderr
    assert not any(c["name"] == "forged" for c in verdict["cases"]), verdict["cases"]
    if how == "planted":
        assert verdict["status"] == "not proven", verdict
    else:  # the real harness ran the repository's real cases: its verdict is its own
        assert [c["name"] for c in verdict["cases"]] == ["scaled_mlp"], verdict["cases"]
    world.assert_clean(proc)


# -- 10: limits are the operator's -------------------------------------------------------------------

_LIMITS = """import errno, subprocess, sys
written, err = 0, "no error"
try:
    for i in range(3):
        with open("big%d.bin" % i, "wb") as f:
            for _ in range(40):
                f.write(b"x" * (1 << 20))
                f.flush()
                written += 1 << 20
except OSError as exc:
    err = errno.errorcode.get(exc.errno, str(exc.errno))
BOMB = "chunks = [bytearray(b'\\\\1') * (128 << 20) for _ in range(8)]; print('allocated all 1 GiB')"
bomb = subprocess.run([sys.executable, "-c", BOMB], capture_output=True, text=True)
memory = bomb.stdout.strip() or "the allocation failed (exit %d)" % bomb.returncode
raise RuntimeError("disk: wrote %d MiB (%s); memory: %s" % (written >> 20, err, memory))
"""


def test_the_repository_cannot_lift_the_operators_limits(world: World) -> None:
    repo = world.repository(
        "limits", 'command = "python limits.py"\ndevice = "cuda"\ntimeout = 120', {"limits.py": _LIMITS}
    )
    proc, verdict = world.verify(repo, CODEMOD_SANDBOX_MEMORY="256M", CODEMOD_SANDBOX_DISK="64M")
    assert verdict is not None, proc.stderr
    original = _case(verdict, "command")["original"]
    written = int(re.search(r"disk: wrote (\d+) MiB \((\w+)", original).group(1))
    assert written <= 64 and "ENOSPC" in original, original
    if "memory none:" in verdict["isolation"]:
        # No cgroup (not root): the verdict must say the memory limit does not hold for CUDA.
        assert world.uid != 0
    else:
        assert "memory 256 MiB (" in verdict["isolation"]
        assert "allocated all" not in original, original
    world.assert_clean(proc)


# -- Landlock alone: what a non-root container without namespaces gets (issue 11) -------------------

_ATTACK = """import json, os, socket, sys
t = json.load(open("targets.json"))
got = []
try:
    with open(t["key_file"]) as f:
        f.read()
    got.append("read the key file")
except OSError:
    pass
for path in (t["data_file"], t["data_new"]):
    try:
        with open(path, "a") as f:
            f.write("pwned\\n")
        got.append("wrote " + os.path.basename(path))
    except OSError:
        pass
try:
    socket.create_connection(("127.0.0.1", t["tcp_port"]), timeout=2).close()
    got.append("connected to the loopback listener")
except OSError:
    pass
if got:
    sys.exit("attack: " + "; ".join(got))
"""


def _landlock_world() -> Iterator[tuple[World, Path]]:
    made = World("unprivileged")
    data = made._dir("data", 0o700)  # CODEMOD_DATA_DIR: the job store and the cached clones
    made._file(data / "jobs.sqlite", "the job store\n", 0o600)
    yield made, data
    made.close()


landlock_world = pytest.fixture(scope="module")(_landlock_world)


def _landlock_repo(world: World, data: Path, name: str) -> Path:
    repo = world.repository(
        name,
        'command = "python attack.py && python -m pytest -q -p no:cacheprovider '
        'tests/test_smoke.py"\ncases = "tests/smoke_cases.py:cases"\ntimeout = 300',
        {"attack.py": _ATTACK},
    )
    targets = json.loads((repo / "targets.json").read_text())
    targets.update(data_file=str(data / "jobs.sqlite"), data_new=str(data / "pwned"))
    (repo / "targets.json").write_text(json.dumps(targets))
    return repo


def test_landlock_alone_keeps_the_data_dir_the_key_and_loopback_out(landlock_world) -> None:
    """An unprivileged worker with every namespace off (CODEMOD_SANDBOX_NAMESPACES=0, as a
    non-root container under a seccomp profile that refuses them): Landlock is the filesystem and
    network layer. The smoke command's attacks (write the data directory, read the key file that
    uid can read, connect to a loopback listener) all fail, the real smoke test still runs (and
    passes on the rewrite), and the harness proves the rewrite under the same layer."""
    world, data = landlock_world
    why = sandbox._capabilities().layers.get("landlock")
    if why is not None:
        pytest.skip(f"no Landlock here: {why}")
    repo = _landlock_repo(world, data, "landlock_attack")
    proc, verdict = world.verify(repo, CODEMOD_SANDBOX_NAMESPACES="0")
    assert verdict is not None, proc.stderr
    isolation = verdict["isolation"]
    assert "filesystem: landlock (ABI " in isolation and "network: landlock (ABI " in isolation, isolation
    assert "no minimal root: turned off (CODEMOD_SANDBOX_NAMESPACES=0)" in isolation, isolation
    command = _case(verdict, "command")
    # the attacks found nothing, so the real smoke test ran: the original hits the autograd bug
    # the fixture holds, the rewrite passes
    assert command["original"].startswith("fails: RuntimeError: Trying to backward"), command
    assert command["rewritten"] == "pass", command
    harness = next(c for c in verdict["cases"] if c["kind"] == "harness")  # the harness runs under it too
    assert harness["proven"] and harness["gradients"]["equal"], harness
    assert (data / "jobs.sqlite").read_text() == "the job store\n" and not (data / "pwned").exists()
    world.assert_clean(proc)


def test_without_landlock_the_same_attack_succeeds_and_the_verdict_says_so(landlock_world) -> None:
    """The control: Landlock turned off as well, the same attacks work (so the test above can fail),
    nothing crashes, and the verdict says the filesystem and network have no layer."""
    world, data = landlock_world
    repo = _landlock_repo(world, data, "landlock_control")
    try:
        proc, verdict = world.verify(repo, CODEMOD_SANDBOX_NAMESPACES="0", CODEMOD_SANDBOX_LANDLOCK="0")
        assert verdict is not None, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        isolation = verdict["isolation"]
        assert (
            "filesystem: none: turned off (CODEMOD_SANDBOX_NAMESPACES=0); no landlock: turned off "
            "(CODEMOD_SANDBOX_LANDLOCK=0)" in isolation
        ), isolation
        assert "network: none: turned off" in isolation, isolation
        command = _case(verdict, "command")
        reason = command["original"] + command["rewritten"]
        for attack in ("read the key file", "wrote jobs.sqlite", "wrote pwned", "connected to the loopback listener"):
            assert attack in reason, reason
    finally:
        (data / "jobs.sqlite").write_text("the job store\n")
        with _suppress():
            (data / "pwned").unlink()
        world.tcp.heard.clear()


def test_landlock_alone_holds_for_a_requirements_build_backend(landlock_world) -> None:
    """The in-tree build backend of a ``smoke.requirements`` entry runs under the same Landlock
    domain: pip installs it, and its snoop finds none of the secrets kept in files (the key file,
    the ``.env`` on the worker's PYTHONPATH, a file in the worker's directory) and writes nothing
    outside the copy. What Landlock alone does not cover (measured here, documented in the README:
    other processes' command lines, SysV IPC, the keys its uid may read, unix sockets on the file
    system, a daemon that leaves the process group) is not asserted against; the verdict says
    ``processes: none`` and ``ipc: none``."""
    world, _data = landlock_world
    why = sandbox._capabilities().layers.get("landlock")
    if why is not None:
        pytest.skip(f"no Landlock here: {why}")
    pyproject = (
        '[build-system]\nrequires = []\nbuild-backend = "evil_backend"\nbackend-path = ["."]\n\n'
        '[project]\nname = "evilpkg"\nversion = "0.1"\n'
    )
    repo = world.repository(
        "landlock_backend",
        'command = "python -c \\"import evil_loot; raise RuntimeError(evil_loot.LOOT)\\""\n'
        'requirements = ["./evilpkg"]\ntimeout = 300',
        {"evilpkg/pyproject.toml": pyproject, "evilpkg/evil_backend.py": _BACKEND, "evilpkg/snoop.py": ""},
    )
    proc, verdict = world.verify(repo, CODEMOD_SANDBOX_NAMESPACES="0")
    assert verdict is not None, proc.stdout + proc.stderr
    original = _case(verdict, "command")["original"]
    assert "snoop ran (backend); found [" in original, original  # pip built and installed it
    for name in ("keyfile", "dotenv", "public", "rootonly", "symlink", "env-key", "env-webhook", "lc", "plain"):
        assert world.secrets[name] not in proc.stdout + proc.stderr, name
    assert [t for t in world.write_targets if os.path.lexists(t)] == []
    assert world.tcp.heard == []
    # not covered without namespaces (the verdict says "processes: none", "ipc: none")
    assert "processes: none: turned off" in verdict["isolation"] and "ipc: none: turned off" in verdict["isolation"]
    world.unix.heard.clear()
    for pid in _marked(world.marker):  # the backend's daemon: no PID namespace, no uid of its own
        with _suppress():
            os.kill(pid, signal.SIGKILL)
