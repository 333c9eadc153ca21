"""The sandbox that runs untrusted repository code (codemod/verify/sandbox.py), proven with real
children: real sockets, real forks, real rlimits, real torch. A guarantee the machine cannot give
is skipped with the reason the probe found (shown by ``pytest -ra``)."""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from codemod.verify.sandbox import (
    OUTPUT_CAP,
    Limits,
    SandboxError,
    _Tail,
    detect_isolation,
    looks_like_credential,
    run_sandboxed,
)

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def _isolation():
    return detect_isolation()


def _need_network_namespace() -> None:
    if _isolation().network.startswith("none"):
        pytest.skip(f"no network isolation here: {_isolation().network}")


def _need_dedicated_uid() -> None:
    if not _isolation().user.startswith("a dedicated uid"):
        pytest.skip(f"no uid change here: {_isolation().user}")


def _need_filesystem_isolation() -> None:
    if _isolation().filesystem.startswith("none"):
        pytest.skip(f"no filesystem isolation here: {_isolation().filesystem}")


def _python(code: str, *args: str) -> list[str]:
    return [PY, "-c", textwrap.dedent(code), *args]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    # tmp_path sits below 0700 directories (/tmp/pytest-of-root): the sandbox must expose it.
    work = tmp_path / "work"
    work.mkdir()
    (work / "input.txt").write_text("from the repository\n")
    return work


class _Server:
    """A real TCP server on 127.0.0.1 in this process; counts connections, answers b"pong"."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.sendall(b"pong")


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.sock.close()


CONNECT = """
    import socket, sys
    try:
        conn = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
    except OSError as exc:
        print("cannot connect:", exc.errno, exc)
        sys.exit(2)
    print("got", conn.recv(4).decode())
"""


def _marked_processes(marker: str) -> list[int]:
    """Live (non-zombie) processes with ``marker`` in their command line."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry))
    return found


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique argv marker; any process still carrying it at teardown is killed (a safety net
    in case the sandbox failed: the test's own processes, by pid)."""
    mark = f"codemod-sandbox-test-{uuid.uuid4().hex}"
    yield mark
    for pid in _marked_processes(mark):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


# -- 1. environment ----------------------------------------------------------------------------------


def test_parent_secrets_are_invisible_and_home_is_fresh(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "GITHUB_TOKEN": "ghp_not-for-children-1",
        "AWS_SECRET_ACCESS_KEY": "aws-not-for-children-2",
        "DEPLOY_PASSWORD": "pw-not-for-children-3",
        "SSH_AUTH_SOCK": "/run/ssh-not-for-children-4",
        "SOME_UNRELATED_SETTING": "not-on-the-allow-list-5",
    }
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    result = run_sandboxed(
        _python("""
        import json, os, tempfile
        with open(os.path.join(os.environ["HOME"], "home.txt"), "w") as f:
            f.write("ok")
        with tempfile.NamedTemporaryFile(delete=False) as f:
            print(json.dumps({"env": dict(os.environ), "tmp": f.name, "home": os.listdir(os.environ["HOME"]),
                              "tmp_exists": os.path.isfile(f.name)}))
    """),
        workdir,
        timeout=30,
        env={"CODEMOD_DEVICE": "cpu"},
    )
    assert result.ok, result.stderr
    seen = json.loads(result.stdout)
    for value in secrets.values():
        assert value not in result.stdout + result.stderr
    assert set(seen["env"]) - {"LANG", "TZ"} - {k for k in seen["env"] if k.startswith("LC_")} == {
        "PATH",
        "HOME",
        "TMPDIR",
        "PYTHONHASHSEED",
        "USER",
        "LOGNAME",
        "CODEMOD_DEVICE",
    }
    assert seen["env"]["CODEMOD_DEVICE"] == "cpu"
    sandbox = workdir / ".codemod-sandbox"
    assert seen["env"]["HOME"] == str(sandbox / "home") and seen["home"] == ["home.txt"]
    assert seen["tmp"].startswith(str(sandbox / "tmp") + "/") and seen["tmp_exists"]
    again = run_sandboxed(["ls", "-A", str(sandbox / "home")], workdir, timeout=30)
    assert again.ok and again.stdout == "", "HOME must be fresh for every run"


def test_credential_names_are_refused_even_when_passed_explicitly(workdir: Path) -> None:
    with pytest.raises(SandboxError, match="GITHUB_TOKEN"):
        run_sandboxed(["true"], workdir, timeout=10, env={"GITHUB_TOKEN": "x"})
    assert all(map(looks_like_credential, ["HF_TOKEN", "aws_access_key_id", "MY_API_KEY", "NPM_CONFIG_AUTH"]))
    assert not any(
        map(
            looks_like_credential,
            [
                "CODEMOD_DEVICE",
                "OMP_NUM_THREADS",
                "PYTHONPATH",
                "CUDA_VISIBLE_DEVICES",
                "HF_HUB_OFFLINE",
                "GIT_AUTHOR_NAME",
            ],
        )
    )


# -- 2. network --------------------------------------------------------------------------------------


def test_child_cannot_reach_a_server_on_loopback(workdir: Path, server: _Server) -> None:
    _need_network_namespace()
    result = run_sandboxed(_python(CONNECT, str(server.port)), workdir, timeout=30)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "cannot connect" in result.stdout
    assert server.accepted == 0
    assert result.isolation.network.startswith(("network namespace", "bubblewrap"))


def test_with_network_true_the_same_child_connects(workdir: Path, server: _Server) -> None:
    result = run_sandboxed(_python(CONNECT, str(server.port)), workdir, timeout=30, network=True)
    assert result.ok and result.stdout.strip() == "got pong", (result.stdout, result.stderr)
    assert server.accepted == 1
    assert result.isolation.network.startswith("host network")


def test_without_root_a_user_namespace_still_cuts_the_network(workdir: Path, server: _Server) -> None:
    """The non-root path, run for real: the sandbox's own child (a non-root uid with host network)
    runs a second sandbox, which must fall back to a user namespace."""
    _need_dedicated_uid()
    _need_filesystem_isolation()
    inner = """
        import json, sys
        from pathlib import Path
        from codemod.verify.sandbox import run_sandboxed
        work = Path("inner"); work.mkdir()
        r = run_sandboxed([sys.executable, "-c", sys.argv[1], sys.argv[2]], work, timeout=30)
        print(json.dumps({"code": r.returncode, "out": r.stdout, "network": r.isolation.network,
                          "user": r.isolation.user, "fs": r.isolation.filesystem}))
    """
    result = run_sandboxed(
        _python(inner, textwrap.dedent(CONNECT), str(server.port)),
        workdir,
        timeout=60,
        network=True,
        env={"PYTHONPATH": str(REPO)},
        visible=[REPO / "codemod"],
    )
    assert result.ok, result.stderr
    seen = json.loads(result.stdout)
    if seen["network"].startswith("none"):
        pytest.skip(f"unprivileged user namespaces are not allowed here: {seen['network']}")
    assert seen["user"].startswith("unchanged: not started as root")
    assert seen["network"].startswith("network namespace") and seen["fs"].startswith("minimal root")
    assert seen["code"] == 2 and "cannot connect" in seen["out"]
    assert server.accepted == 0


# -- 3. user -----------------------------------------------------------------------------------------


def test_runs_as_a_dedicated_uid_without_privileges(workdir: Path) -> None:
    _need_dedicated_uid()
    result = run_sandboxed(
        _python("""
        import getpass, json, os
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        with open("written.txt", "w") as f:
            f.write("mine")
        print(json.dumps({"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
                          "user": getpass.getuser(), "caps": status["CapEff"].strip(),
                          "nnp": status["NoNewPrivs"].strip(), "input": open("input.txt").read(),
                          "owner": os.stat("written.txt").st_uid}))
    """),
        workdir,
        timeout=30,
    )
    assert result.ok, result.stderr
    seen = json.loads(result.stdout)
    assert seen["uid"] == seen["euid"] != 0 and seen["gid"] != 0
    assert set(seen["groups"]) <= {seen["gid"]}
    assert seen["caps"] == "0000000000000000" and seen["nnp"] == "1"
    assert seen["user"] == "codemod-sandbox" and seen["input"] == "from the repository\n"
    assert seen["owner"] == seen["uid"]
    if not _isolation().filesystem.startswith("none"):
        assert not (workdir / "written.txt").exists()  # the child's writes stay in its overlay
    assert f"uid {seen['uid']}" in result.isolation.user
    import pwd

    with pytest.raises(KeyError):
        pwd.getpwuid(seen["uid"])  # no such user on the host: the passwd entry exists only in the child


# -- 4. rlimits --------------------------------------------------------------------------------------


def test_rlimits_are_set_in_the_child(workdir: Path) -> None:
    limits = Limits(cpu_seconds=7, memory_bytes=3 << 30, file_size_bytes=5 << 20, processes=99)
    result = run_sandboxed(
        _python("""
        import json, resource
        print(json.dumps({n: resource.getrlimit(getattr(resource, n))
                          for n in ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NPROC", "RLIMIT_CORE")}))
    """),
        workdir,
        timeout=30,
        limits=limits,
    )
    assert result.ok, result.stderr
    seen = json.loads(result.stdout)
    assert seen == {
        "RLIMIT_CPU": [7, 8],
        "RLIMIT_AS": [3 << 30] * 2,
        "RLIMIT_FSIZE": [5 << 20] * 2,
        "RLIMIT_NPROC": [99, 99],
        "RLIMIT_CORE": [0, 0],
    }
    assert result.isolation.limits.startswith("cpu 7 s, memory 3 GiB")
    assert "file 5 MiB, 99 processes" in result.isolation.limits


def test_cpu_limit_stops_a_busy_loop_before_the_timeout(workdir: Path) -> None:
    result = run_sandboxed(_python("while True: pass"), workdir, timeout=30, limits=Limits(cpu_seconds=1))
    assert not result.timed_out
    assert result.returncode in (-signal.SIGXCPU, -signal.SIGKILL)
    assert result.seconds < 10


def test_file_size_limit_stops_a_large_write(workdir: Path) -> None:
    result = run_sandboxed(
        _python("""
        import errno, sys
        import os
        try:
            with open("big.bin", "wb") as f:
                f.write(b"x" * (2 << 20))
        except OSError as exc:
            print(errno.errorcode[exc.errno], os.path.getsize("big.bin")); sys.exit(3)
    """),
        workdir,
        timeout=30,
        limits=Limits(file_size_bytes=1 << 20),
    )
    assert result.returncode == 3 and result.stdout.split()[0] == "EFBIG", (result.stdout, result.stderr)
    assert int(result.stdout.split()[1]) <= 1 << 20


# -- 5. timeout and process cleanup ------------------------------------------------------------------


def test_an_endless_loop_is_killed_at_the_timeout(workdir: Path) -> None:
    result = run_sandboxed(_python("while True: pass"), workdir, timeout=1.0)
    assert result.timed_out and result.returncode is None and not result.ok
    assert 1.0 <= result.seconds < 2.5


FORK_BOMB = """
    import os, sys, time
    escape = sys.argv[2] == "escape"
    for i in range(30):                  # hard cap: 30 children, each with one grandchild
        if os.fork() == 0:
            if escape and i % 2:
                os.setsid()              # leaves the process group: only the uid sweep finds it
            os.fork()
            time.sleep(60)
            os._exit(0)
    print("forked", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def test_a_fork_bomb_is_killed_at_the_timeout_and_leaves_nothing(workdir: Path, marker: str) -> None:
    escape = "escape" if _isolation().user.startswith("a dedicated uid") else "stay"
    result = run_sandboxed(_python(FORK_BOMB, marker, escape, "60"), workdir, timeout=2.0)
    assert result.timed_out and result.seconds < 4.0
    assert "forked" in result.stdout
    assert _marked_processes(marker) == []


def test_processes_left_behind_by_a_finished_command_are_killed(workdir: Path, marker: str) -> None:
    escape = "escape" if _isolation().user.startswith("a dedicated uid") else "stay"
    result = run_sandboxed(_python(FORK_BOMB, marker, escape, "0"), workdir, timeout=30)
    assert result.ok and not result.timed_out and result.seconds < 5, result.stderr
    assert _marked_processes(marker) == []


def test_without_root_the_process_group_is_still_killed(workdir: Path, marker: str) -> None:
    """The non-root path has no uid to sweep: the inner sandbox must kill the command's process
    group itself (checked from inside the outer child, before the outer sweep could help)."""
    _need_dedicated_uid()
    inner = """
        import json, os, sys
        from pathlib import Path
        from codemod.verify.sandbox import run_sandboxed
        work = Path("inner"); work.mkdir()
        r = run_sandboxed([sys.executable, "-c", sys.argv[1], sys.argv[2], "stay", "0"], work, timeout=30)
        def marked(pid):
            try:
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
                state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
            except OSError:
                return False
            return sys.argv[2].encode() in cmdline and state != "Z"
        # pid 1 is this (outer) sandbox's own init, which carries the same argv
        alive = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid()) and marked(p)]
        print(json.dumps({"code": r.returncode, "out": r.stdout, "user": r.isolation.user, "alive": len(alive)}))
    """
    result = run_sandboxed(
        _python(inner, textwrap.dedent(FORK_BOMB), marker),
        workdir,
        timeout=60,
        env={"PYTHONPATH": str(REPO)},
        visible=[REPO / "codemod"],
    )
    assert result.ok, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["user"].startswith("unchanged: not started as root")
    assert seen["code"] == 0 and "forked" in seen["out"]
    assert seen["alive"] == 0


# -- 6. memory ---------------------------------------------------------------------------------------


def test_a_memory_bomb_fails_in_the_child_only(workdir: Path) -> None:
    parent_limit = resource.getrlimit(resource.RLIMIT_AS)
    result = run_sandboxed(
        _python("""
        import sys
        chunks = []
        try:
            for _ in range(64):          # at most 4 GiB even if the limit did not hold
                chunks.append(bytearray(64 << 20))
        except MemoryError:
            print("MemoryError after", len(chunks)); sys.exit(3)
    """),
        workdir,
        timeout=60,
        limits=Limits(memory_bytes=512 << 20),
    )
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert result.stdout.startswith("MemoryError after") and int(result.stdout.split()[-1]) < 8
    assert resource.getrlimit(resource.RLIMIT_AS) == parent_limit
    assert len(bytearray(600 << 20)) == 600 << 20  # the parent still allocates past the child's limit


# -- 7. files outside the workdir --------------------------------------------------------------------


@pytest.fixture
def outside() -> Iterator[Path]:
    """A real directory outside the workdir and outside /tmp (which the child sees privately)."""
    bases = [Path(p) for p in ("/srv", "/opt", "/mnt")] if os.geteuid() == 0 else [Path.home()]
    base = next((b for b in bases if b.is_dir() and os.access(b, os.W_OK)), None)
    if base is None:
        pytest.skip("no writable directory outside /tmp for this test")
    path = Path(tempfile.mkdtemp(prefix="codemod-sandbox-outside-", dir=base))
    path.chmod(0o755)  # searchable: permissions alone must not be the guard
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_files_outside_the_workdir_are_untouched(workdir: Path, outside: Path, marker: str) -> None:
    closed, open_ = outside / "closed", outside / "open"
    closed.mkdir(mode=0o755)
    open_.mkdir()
    open_.chmod(0o777)  # world-writable: only a read-only mount protects it
    victim = outside / "victim.txt"
    victim.write_text("original\n")
    os.link(victim, workdir / "link-to-victim.txt")  # a hard link into the workdir must not hand it over
    result = run_sandboxed(
        _python(
            """
        import sys
        for path in sys.argv[1:]:
            try:
                with open(path, "a") as f:
                    f.write("pwned\\n")
                print("wrote", path)
            except OSError as exc:
                print("refused", path, exc.strerror)
    """,
            str(closed / "pwned.txt"),
            str(open_ / "pwned.txt"),
            str(workdir / "link-to-victim.txt"),
            f"/tmp/{marker}.txt",
        ),
        workdir,
        timeout=30,
    )
    assert result.ok, result.stderr
    assert victim.read_text() == "original\n" and victim.stat().st_uid == os.geteuid()
    if os.geteuid() == 0 and _isolation().user.startswith("a dedicated uid"):
        assert f"refused {closed / 'pwned.txt'}" in result.stdout
    assert not (closed / "pwned.txt").exists()
    if not _isolation().filesystem.startswith("none"):
        # Outside the minimal root: the directories do not even exist for the child.
        assert f"refused {open_ / 'pwned.txt'} No such file or directory" in result.stdout
        assert f"wrote /tmp/{marker}.txt" in result.stdout  # a private /tmp ...
        assert not Path(f"/tmp/{marker}.txt").exists()  # ... that is not the host's
    assert not (open_ / "pwned.txt").exists()


def test_the_child_mounts_do_not_leak_into_the_host(workdir: Path) -> None:
    _need_filesystem_isolation()
    before = Path("/proc/self/mountinfo").read_text()
    result = run_sandboxed(
        ["sh", "-c", "touch /etc/codemod-sandbox-probe; cat /proc/self/mountinfo | wc -l"], workdir, timeout=30
    )
    assert "Read-only file system" in result.stderr
    assert not Path("/etc/codemod-sandbox-probe").exists()
    assert Path("/proc/self/mountinfo").read_text() == before


# -- the harness's own needs -------------------------------------------------------------------------


def test_torch_imports_and_runs_backward_as_the_sandbox_user(workdir: Path) -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    result = run_sandboxed(
        _python("""
        import json, os, tempfile, torch
        x = torch.ones(3, requires_grad=True)
        (x * x).sum().backward()
        print(json.dumps({"grad": x.grad.tolist(), "uid": os.getuid(), "tmp": tempfile.gettempdir()}))
    """),
        workdir,
        timeout=120,
    )
    assert result.ok, result.stderr[-2000:]
    seen = json.loads(result.stdout)
    assert seen["grad"] == [2.0, 2.0, 2.0]
    assert seen["tmp"] == str(workdir / ".codemod-sandbox" / "tmp")
    if _isolation().user.startswith("a dedicated uid"):
        assert seen["uid"] != 0


def test_large_output_does_not_deadlock_and_is_capped(workdir: Path) -> None:
    result = run_sandboxed(
        _python("""
        import sys
        for i in range(48):                    # 3 MiB on each stream, interleaved
            sys.stdout.write("o" * 65535 + "\\n"); sys.stderr.write("e" * 65535 + "\\n")
        sys.stdout.write("END-OUT\\n"); sys.stderr.write("END-ERR\\n")
    """),
        workdir,
        timeout=60,
    )
    assert result.ok, result.stderr[-500:]
    assert result.stdout.endswith("END-OUT\n") and result.stderr.endswith("END-ERR\n")
    for text in (result.stdout, result.stderr):
        assert "earlier bytes dropped" in text.splitlines()[0]
        assert len(text.encode()) <= OUTPUT_CAP + 100


def test_capture_holds_at_most_the_cap_while_reading() -> None:
    read_end, write_end = os.pipe()
    reader, writer = os.fdopen(read_end, "rb"), os.fdopen(write_end, "wb")
    tail = _Tail(reader, cap=256 << 10)
    with writer:
        for i in range(128):  # 8 MiB through a 256 KiB window
            writer.write(bytes([65 + i % 26]) * (64 << 10))
    text = tail.text(10.0)
    assert tail.peak < (256 << 10) + (64 << 10)  # never more than the cap plus one read
    assert text.endswith(chr(65 + 127 % 26) * (64 << 10)) and text.startswith(
        f"[codemod sandbox: {(8 << 20) - (256 << 10)} earlier"
    )


def test_stdin_reaches_the_child(workdir: Path) -> None:
    result = run_sandboxed(
        _python("import sys; print(sys.stdin.read().upper())"), workdir, timeout=30, stdin="hello sandbox"
    )
    assert result.ok and result.stdout.strip() == "HELLO SANDBOX"


def test_a_missing_command_is_reported_not_raised(workdir: Path) -> None:
    result = run_sandboxed(["no-such-command-for-codemod"], workdir, timeout=30)
    assert result.returncode == 127 and not result.ok
    assert "codemod sandbox: cannot run 'no-such-command-for-codemod'" in result.stderr


def test_the_root_directory_is_refused_as_workdir() -> None:
    with pytest.raises(SandboxError, match="root directory"):
        run_sandboxed(["true"], Path("/"), timeout=5)


def test_isolation_is_described_in_one_line_and_probed_once() -> None:
    first = detect_isolation()
    assert detect_isolation() is first
    line = first.describe()
    assert "\n" not in line
    for part in ("network: ", "; user: ", "; filesystem: ", "; processes: ", "; ipc: ", "; keyring: ", "; limits: "):
        assert part in line
    assert first.limits.startswith("cpu 900 s, memory 16 GiB")
    assert "file 1 GiB, 256 processes, disk 4 GiB" in first.limits
    assert detect_isolation(Limits(memory_bytes=None, processes=None, disk_bytes=None)).limits == (
        "cpu 900 s, memory unlimited, file 1 GiB, processes unlimited, disk unlimited"
    )


def test_a_program_under_tmp_stays_reachable_and_read_only(workdir: Path, tmp_path: Path) -> None:
    """A checkout (and its venv) under /tmp: the private /tmp must still show the program and the
    paths passed as ``visible``, read-only, while the rest of /tmp is fresh."""
    _need_filesystem_isolation()
    tools = tmp_path / "tools"
    (tools / "bin").mkdir(parents=True)
    (tools / "share").mkdir()
    (tools / "share" / "data.txt").write_text("shared\n")
    secret = tmp_path / "other.txt"
    secret.write_text("not for the child\n")
    script = tools / "bin" / "hello"
    script.write_text(
        f"#!/bin/sh\ncat {tools}/share/data.txt\n"
        f"test -e {secret} && echo SEEN-OTHER\n"
        f"echo x > {tools}/share/new.txt 2>/dev/null && echo WROTE\n"
        "exit 0\n"
    )
    script.chmod(0o755)
    result = run_sandboxed([str(script)], workdir, timeout=30, visible=[tools])
    assert result.ok, result.stderr
    assert result.stdout.splitlines() == ["shared"]
    assert not (tools / "share" / "new.txt").exists()


# -- the layers added against hostile repositories (issue 9) ---------------------------------------


def test_locale_variables_pass_by_exact_name_only(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("LC_GITHUB_TOKEN", "lc-not-for-children-1")
    monkeypatch.setenv("LC_CTYPE", "$(cat /etc/shadow) not-a-locale-2")
    result = run_sandboxed(_python("import json, os; print(json.dumps(dict(os.environ)))"), workdir, timeout=30)
    seen = json.loads(result.stdout)
    assert seen["LC_ALL"] == "C.UTF-8"
    assert "LC_GITHUB_TOKEN" not in seen and "LC_CTYPE" not in seen
    assert "not-for-children" not in result.stdout and "not-a-locale" not in result.stdout


def test_the_child_sees_only_its_own_processes_ipc_and_keys(workdir: Path, marker: str) -> None:
    if _isolation().processes.startswith("none") or _isolation().ipc.startswith("none"):
        pytest.skip(f"no PID or IPC namespace here: {_isolation().describe()}")
    import ctypes
    import platform

    calls = {"x86_64": (248, 250), "aarch64": (217, 219)}.get(platform.machine())
    if calls is None:
        pytest.skip(f"no keyctl syscall numbers for {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    key = libc.syscall(calls[0], b"user", marker.encode(), b"key-not-for-children", 20, -3)  # @s
    assert key > 0
    result = run_sandboxed(
        _python(
            """
        import ctypes, json, os, sys
        libc = ctypes.CDLL(None, use_errno=True)
        found = libc.syscall(int(sys.argv[1]), 10, -3, b"user", sys.argv[2].encode(), 0)   # KEYCTL_SEARCH
        pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        print(json.dumps({"pids": pids, "me": os.getpid(), "shm": open("/proc/sysvipc/shm").read().splitlines()[1:],
                          "root": sorted(os.listdir("/")), "keys": open("/proc/keys").read(), "found": found}))
    """,
            str(calls[1]),
            marker,
        ),
        workdir,
        timeout=30,
    )
    assert result.ok, result.stderr
    seen = json.loads(result.stdout)
    assert seen["pids"] == [1, seen["me"]]  # init and the command itself
    assert seen["shm"] == []
    # the minimal root: system directories, plus the interpreter's own (a venv may live anywhere: CI's clone
    # is under /check), and nothing else of the host's
    interpreter = {
        q.parts[1] for p in (sys.executable, sys.prefix, sys.base_prefix) for q in (Path(p), Path(p).resolve())
    }
    assert (
        set(seen["root"])
        <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "tmp", "usr", "var", "root", "work"}
        | interpreter
    )
    if not _isolation().keyring.startswith("none"):
        assert seen["found"] < 0 and marker not in seen["keys"]


def test_a_huge_timeout_does_not_overflow_the_wait(workdir: Path) -> None:
    result = run_sandboxed(["true"], workdir, timeout=1e18)
    assert result.ok and not result.timed_out


def test_the_launcher_dies_with_its_parent(workdir: Path, marker: str) -> None:
    """The parent SIGKILLed mid-run (no cleanup of its own): PR_SET_PDEATHSIG takes the launcher,
    init and the command with it."""
    parent = subprocess.Popen(
        [
            PY,
            "-c",
            textwrap.dedent("""
        import sys
        from pathlib import Path
        from codemod.verify.sandbox import run_sandboxed
        run_sandboxed([sys.executable, "-c", "import time; time.sleep(600)", sys.argv[1]], Path(sys.argv[2]), timeout=600)
    """),
            marker,
            str(workdir),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 60
    while not _marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _marked_processes(marker), "the sandboxed command never started"
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _marked_processes(marker) == []


def test_the_result_channel_accepts_only_one_frame_with_its_nonce() -> None:
    from codemod.verify.channel import ResultChannel, frame

    def send(*chunks: bytes) -> tuple[bytes | None, str]:
        channel = ResultChannel(cap=1 << 10)
        for chunk in chunks:
            os.write(channel.write_fd, chunk(channel.nonce) if callable(chunk) else chunk)
        return channel.payload()

    assert send(lambda n: frame(n, b"payload")) == (b"payload", "")
    assert send()[0] is None and "did not report" in send()[1]
    assert send(frame("0" * 32, b"forged"))[0] is None
    assert send(frame("0" * 32, b"forged"), lambda n: frame(n, b"payload"))[0] is None  # anything before it
    assert send(lambda n: frame(n, b"payload") + b"trailing")[0] is None
    assert "larger than" in send(lambda n: frame(n, b"x" * (4 << 10)))[1]


def test_operator_settings_from_the_environment() -> None:
    from codemod.verify import VerifyError
    from codemod.verify.settings import OperatorSettings

    settings = OperatorSettings.from_environment(
        {
            "CODEMOD_ALLOW_REQUIREMENTS": "0",
            "CODEMOD_SANDBOX_MEMORY": "512M",
            "CODEMOD_SANDBOX_DISK": "2GiB",
            "CODEMOD_SANDBOX_MAX_TIMEOUT": "60",
        }
    )
    assert not settings.allow_requirements and settings.memory_bytes == 512 << 20 and settings.disk_bytes == 2 << 30
    assert settings.clamp_timeout(1e9) == 60 and settings.clamp_timeout(5) == 5
    assert settings.limits().memory_bytes == 512 << 20
    for key, value in (
        ("CODEMOD_SANDBOX_MEMORY", "lots"),
        ("CODEMOD_ALLOW_REQUIREMENTS", "maybe"),
        ("CODEMOD_SANDBOX_MAX_TIMEOUT", "0"),
        ("CODEMOD_PIP_INDEX_URL", "--log=/x"),
    ):
        with pytest.raises(VerifyError, match=key):
            OperatorSettings.from_environment({key: value})


def test_requirement_strings_are_checked_before_pip(tmp_path: Path) -> None:
    from codemod.verify import VerifyError
    from codemod.verify.requirements import check_requirements

    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "x.whl").write_text("")
    (tmp_path / "escape").symlink_to("/etc")
    ok = check_requirements(["einops>=0.7", "numpy[extra]; python_version >= '3'", "./vendor/x.whl"], tmp_path)
    assert [r.path for r in ok] == [None, None, "vendor/x.whl"]
    for bad, why in (
        ("-r/etc/shadow", "pip option"),
        ("--index-url=http://x", "pip option"),
        ("einops @ https://x/e.whl", "direct URL"),
        ("./escape/passwd", "leaves the repository"),
        ("../x", "leaves the repository"),
        ("einops --log=/tmp/x", "not a PEP 508"),
        ("./missing.whl", "no such file"),
    ):
        with pytest.raises(VerifyError, match=why):
            check_requirements([bad], tmp_path)


def test_directories_of_a_killed_run_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    from codemod.verify.sandbox import OWNER_FILE, owned_tempdir, sweep_stale

    dead = subprocess.Popen([PY, "-c", "pass"])
    dead.wait()
    prefix = f"codemod-sweep-test-{uuid.uuid4().hex[:8]}-"
    live = owned_tempdir(prefix)
    stale = owned_tempdir(prefix)
    _, started, namespace = (stale / OWNER_FILE).read_text().split()
    (stale / OWNER_FILE).write_text(f"{dead.pid} {started} {namespace}\n")  # a pid that is gone
    elsewhere = owned_tempdir(prefix)
    (elsewhere / OWNER_FILE).write_text(f"{dead.pid} {started} pid:[1]\n")  # another PID namespace
    try:
        assert sweep_stale(prefix) == [str(stale)]
        assert live.is_dir() and elsewhere.is_dir() and not stale.exists()
    finally:
        shutil.rmtree(live, ignore_errors=True)
        shutil.rmtree(elsewhere, ignore_errors=True)
