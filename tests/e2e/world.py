"""One App world for a test module: a fake GitHub with git remotes, the webhook app under
uvicorn on loopback, and ``codemod worker`` processes; plus the story-telling helpers
(make a repository, push as a person, deliver a signed webhook, drain the queue)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from service.events import signature_of

from .fake_github import FakeGitHub

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / "fixtures" / "webhooks"
APP_ID = 4242
SECRET = "webhook-secret-" + uuid.uuid4().hex
ADMIN = "admin-" + uuid.uuid4().hex

# A tiny repository with the normalization bug: `x /= stdev` overwrites the tensor torch.var saved,
# and the trainable Linear in front makes backward reach it.
PYPROJECT = """\
[project]
name = "tiny"
version = "0.0.1"

[tool.codemod.smoke]
cases = "tests/smoke_cases.py:cases"
device = "cpu"
timeout = 120
"""
MODEL = """\
import torch
import torch.nn as nn


class Normalized(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 3)

    def forward(self, x):
        x = self.proj(x)
        stdev = torch.sqrt(torch.var(x, dim=1, keepdim=True) + 1e-5)
        x /= stdev
        return x
"""
CLEAN_MODEL = MODEL.replace("x /= stdev", "x = x / stdev")
CASES = """\
import torch

from pkg.model import Normalized


def cases():
    return [{"name": "normalized", "module": Normalized, "inputs": lambda: torch.randn(2, 4, 3)}]
"""
BUGGY = {"pyproject.toml": PYPROJECT, "pkg/__init__.py": "", "pkg/model.py": MODEL, "tests/smoke_cases.py": CASES}
CLEAN = {**BUGGY, "pkg/model.py": CLEAN_MODEL}


def load_hook(name: str) -> dict:
    return json.loads((HOOKS / name).read_text())


class Clone:
    """A person's working copy of a repository (pushes straight into the bare remote)."""

    def __init__(self, path: Path, remote: Path) -> None:
        self.path, self.remote = path, remote

    def git(self, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "Ada",
            "GIT_AUTHOR_EMAIL": "ada@example.com",
            "GIT_COMMITTER_NAME": "Ada",
            "GIT_COMMITTER_EMAIL": "ada@example.com",
        }
        return subprocess.run(
            ["git", "-C", str(self.path), *args], check=True, capture_output=True, text=True, env=env
        ).stdout.strip()

    def commit(self, files: dict[str, str], message: str = "change", branch: str = "main") -> str:
        for rel, text in files.items():
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", str(self.remote), f"HEAD:refs/heads/{branch}")
        return self.git("rev-parse", "HEAD")


class World:
    def __init__(
        self, root: Path, *, queue_url: str | None = None, database_url: str | None = None, lease_seconds: float = 3
    ) -> None:
        self.root = root
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        public = (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        self.key_path = root / "app.pem"
        self.key_path.write_text(self.private_pem)
        self.key_path.chmod(0o600)
        self.gh = FakeGitHub(root / "github", APP_ID, public)
        self.data_dir = root / "data"
        self.env = {
            "GITHUB_APP_ID": str(APP_ID),
            "GITHUB_PRIVATE_KEY_PATH": str(self.key_path),
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "GITHUB_API_URL": self.gh.url,
            "CODEMOD_DATA_DIR": str(self.data_dir),
            "CODEMOD_ADMIN_TOKEN": ADMIN,
            "CODEMOD_LEASE_SECONDS": str(lease_seconds),
            "CODEMOD_GITHUB_BACKOFF": "0.05",
            "CODEMOD_GITHUB_SECONDARY_WAIT": "2",
            "CODEMOD_WRITES_PER_MINUTE": "6000",
            "CODEMOD_CACHE": str(root / "cache"),
        }
        if queue_url:
            self.env["CODEMOD_QUEUE_URL"] = queue_url
        if database_url:
            self.env["CODEMOD_DATABASE_URL"] = database_url
        self.logs: list[str] = []
        self._start_app()

    def _start_app(self) -> None:
        import uvicorn

        from service.app import create_app
        from service.settings import Settings

        self.settings = Settings(_env_file=None, **{k.lower(): v for k, v in self.env.items() if k != "CODEMOD_CACHE"})
        self.app = create_app(self.settings)
        self.store = self.app.state.store
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def close(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(10)
        self.gh.close()

    # -- repositories ------------------------------------------------------------------------------

    def make_repo(self, name: str, files: dict[str, str]) -> tuple[Clone, str]:
        full = f"acme/{name}"
        self.gh.add_repo(full)
        work = self.root / "clones" / name
        work.mkdir(parents=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
        clone = Clone(work, self.gh.bare_path(full))
        sha = clone.commit(files, "initial")
        return clone, sha

    # -- webhooks ----------------------------------------------------------------------------------

    def push_payload(
        self,
        name: str,
        before: str,
        after: str,
        *,
        ref: str = "refs/heads/main",
        added=(),
        modified=(),
        sender: dict | None = None,
    ) -> dict:
        data = load_hook("push.json")
        repo = self.gh.repos[f"acme/{name}"]
        data.update(ref=ref, before=before, after=after, created=False, deleted=False)
        data["repository"].update(id=repo.id, name=name, full_name=repo.full_name, default_branch="main", private=True)
        data["installation"]["id"] = self.gh.installation_id
        data["commits"][0].update(id=after, added=list(added), modified=list(modified), removed=[])
        data["head_commit"] = copy.deepcopy(data["commits"][0])
        if sender:
            data["sender"] = {**data["sender"], **sender}
        return data

    def deliver(
        self,
        event: str,
        payload: dict,
        *,
        delivery: str | None = None,
        secret: str | None = SECRET,
        signature: str | None = None,
    ) -> httpx.Response:
        raw = json.dumps(payload).encode()
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "Content-Type": "application/json",
        }
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        elif secret is not None:
            headers["X-Hub-Signature-256"] = signature_of(secret.encode(), raw)
        return self.http.post("/webhook", content=raw, headers=headers)

    def comment(self, name: str, issue: int, body: str) -> httpx.Response:
        data = load_hook("issue_comment.created.json")
        repo = self.gh.repos[f"acme/{name}"]
        data["repository"].update(id=repo.id, name=name, full_name=repo.full_name, default_branch="main")
        data["installation"]["id"] = self.gh.installation_id
        data["issue"].update(number=issue, pull_request={"url": f"{self.gh.url}/repos/{repo.full_name}/pulls/{issue}"})
        data["comment"].update(id=self.gh.next_id(), body=body)
        return self.deliver("issue_comment", data)

    # -- workers -----------------------------------------------------------------------------------

    def worker_env(self) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(self.root),
            **self.env,
            "PYTHONPATH": str(ROOT),
            "CODEMOD_LOG_LEVEL": "INFO",
        }

    def start_worker(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = self.root / f"worker-{len(self.logs)}.log"
        self.logs.append(str(log))
        return subprocess.Popen(
            [sys.executable, "-m", "codemod", "worker", *extra],
            cwd=self.root,
            env={**self.worker_env(), **(env or {})},
            stdout=open(log, "w"),
            stderr=subprocess.STDOUT,
        )

    def drain(self, timeout: float = 400, env: dict[str, str] | None = None) -> str:
        """Run a worker until no job is queued or running on its queue; its log."""
        proc = self.start_worker("--drain", env=env)
        try:
            proc.wait(timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
        return Path(self.logs[-1]).read_text()

    def jobs(self, repo: str | None = None) -> list[dict]:
        params = {"repo": f"acme/{repo}"} if repo else {}
        return self.http.get("/jobs", params=params, headers={"Authorization": f"Bearer {ADMIN}"}).json()["jobs"]

    def bot_branch(self, name: str) -> str | None:
        return self.gh.branch_sha(self.gh.repos[f"acme/{name}"], "codemod/autograd")

    def show(self, name: str, rev: str, path: str) -> str:
        return subprocess.run(
            ["git", "--git-dir", str(self.gh.bare_path(f"acme/{name}")), "show", f"{rev}:{path}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def clear_data(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


BACKENDS = ["sqlite", "redis+postgresql"]


@contextmanager
def world_on(backend: str, root: Path, **kwargs):
    """A World on the embedded default (``sqlite``) or on a real redis-server queue and a real
    PostgreSQL store (``redis+postgresql``; skipped, with the reason, where they are missing)."""
    import pytest

    from . import servers

    started, pg_dir = [], None
    if backend == "redis+postgresql":
        reason = servers.missing_redis() or servers.missing_postgres()
        if reason:
            pytest.skip(reason)
        redis, kwargs["queue_url"] = servers.start_redis(root / "redis")
        started.append(redis)
        postgres, kwargs["database_url"], pg_dir = servers.start_postgres()
        started.append(postgres)
    world = World(root, **kwargs)
    try:
        yield world
    finally:
        world.close()
        for proc in started:
            servers.stop(proc)
        if pg_dir:
            shutil.rmtree(pg_dir, ignore_errors=True)
