"""git for the worker: a cached clone per repository, fetched (never re-cloned), with the
installation token given to git out of band.

The token travels only in the environment of the one git process that needs it, as an
``http.extraHeader`` through ``GIT_CONFIG_COUNT``: never in a URL, ``.git/config``, a log line or
an error message (stderr is scrubbed before it is raised).
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


class GitError(Exception):
    pass


class PushRejected(GitError):
    """The branch moved since it was fetched (force-with-lease refused the push)."""


@dataclass
class Author:
    name: str
    email: str


class Checkout:
    def __init__(self, cache_dir: Path, repo: str, clone_url: str, token: str) -> None:
        self.path = cache_dir / "repos" / repo.replace("/", "__")
        self.clone_url = clone_url
        self._token = token

    def _env(self, auth: bool) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.path.parent),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "LC_ALL": "C",
        }
        if auth:
            basic = base64.b64encode(f"x-access-token:{self._token}".encode()).decode()
            env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0="http.extraHeader",
                GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
            )
        return env

    def _scrub(self, text: str) -> str:
        basic = base64.b64encode(f"x-access-token:{self._token}".encode()).decode()
        return text.replace(self._token, "***").replace(basic, "***")

    def git(self, *args: str, auth: bool = False, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.path), *args],
            capture_output=True,
            text=True,
            env={**self._env(auth), **(env or {})},
            timeout=600,
        )
        if done.returncode != 0:
            lines = [line for line in self._scrub(done.stderr).splitlines() if line.strip()]
            message = f"git {args[0]}: {lines[-1] if lines else f'exit {done.returncode}'}"
            if args[0] == "push" and any("stale info" in line or "rejected" in line for line in lines):
                raise PushRejected(message)
            raise GitError(message)
        return done.stdout

    def fetch(self, sha: str | None = None) -> None:
        """Every branch of the remote (``refs/remotes/origin/*``), and ``sha`` if it is on none."""
        if not (self.path / ".git").is_dir():
            self.path.mkdir(parents=True, exist_ok=True)
            self.git("init", "-q")
            self.git("remote", "add", "origin", self.clone_url)
        else:
            self.git("remote", "set-url", "origin", self.clone_url)
        self.git("fetch", "-q", "--prune", "--no-tags", "origin", "+refs/heads/*:refs/remotes/origin/*", auth=True)
        if sha and not self.has(sha):
            self.git("fetch", "-q", "--no-tags", "origin", sha, auth=True)

    def has(self, sha: str) -> bool:
        return (
            subprocess.run(
                ["git", "-C", str(self.path), "cat-file", "-e", f"{sha}^{{commit}}"],
                capture_output=True,
                env=self._env(False),
            ).returncode
            == 0
        )

    def tip(self, branch: str) -> str | None:
        done = subprocess.run(
            ["git", "-C", str(self.path), "rev-parse", "-q", "--verify", f"refs/remotes/origin/{branch}"],
            capture_output=True,
            text=True,
            env=self._env(False),
        )
        return done.stdout.strip() or None

    def checkout(self, sha: str) -> None:
        """The working tree at ``sha``, nothing else in it."""
        self.git("checkout", "-q", "-f", "--detach", sha)
        self.git("clean", "-q", "-ffdx")

    def commit(self, files: dict[str, bytes], message: str, author: Author) -> str:
        for rel, data in files.items():
            target = self.path / rel
            target.write_bytes(data)
        self.git("add", "--", *files)
        who = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_COMMITTER_NAME": author.name,
            "GIT_COMMITTER_EMAIL": author.email,
        }
        self.git("commit", "-q", "--no-verify", "-m", message, env=who)
        return self.git("rev-parse", "HEAD").strip()

    def push(self, sha: str, branch: str, expected: str | None) -> None:
        """Point ``branch`` at ``sha`` if it is still at ``expected`` (None: must not exist)."""
        self.git(
            "push",
            "-q",
            f"--force-with-lease=refs/heads/{branch}:{expected or ''}",
            "origin",
            f"{sha}:refs/heads/{branch}",
            auth=True,
        )

    def foreign_commits(self, branch: str, base_sha: str, author: Author) -> list[str]:
        """Commits on the remote ``branch`` (not in ``base_sha``) that the App did not author."""
        out = self.git("log", "--format=%H %ae", f"refs/remotes/origin/{branch}", "--not", base_sha)
        return [line.split()[0] for line in out.splitlines() if line.split()[1:] != [author.email]]
