"""A fake GitHub on loopback: the REST calls the App makes through PyGithub, in GitHub's
documented shapes, and the repositories' git remotes served by ``git http-backend``.

Authentication is checked as GitHub does: App endpoints need a JWT signed with the App's private
key (RS256, ``iss`` = the App id, at most 10 minutes); repository endpoints need an installation
token that was issued for that repository (404 otherwise, as GitHub answers); git over HTTP takes
the token as Basic auth (``x-access-token:TOKEN``). Faults (status, headers, how many times) can
be injected per route, and one route can be held open to let a test kill the worker mid-job.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlparse

import jwt


def _now_iso(delta: float = 0) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Fault:
    method: str
    path: str  # regex on the path
    status: int  # 0: drop the connection without answering
    headers: dict | Callable[[], dict] = field(default_factory=dict)  # a callable: computed when answered
    body: dict = field(default_factory=lambda: {"message": "Server Error"})
    times: int = 1


@dataclass
class Hold:
    """Perform the request, then keep the answer until released (the client may be killed meanwhile)."""

    method: str
    path: str
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class Repo:
    id: int
    owner: str
    name: str
    default_branch: str = "main"
    private: bool = True
    pulls: list[dict] = field(default_factory=list)
    check_runs: list[dict] = field(default_factory=list)
    comments: list[dict] = field(default_factory=list)
    reactions: list[dict] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class FakeGitHub:
    def __init__(
        self, root: Path, app_id: int, public_key: str, slug: str = "torch-codemod", installation_id: int = 1
    ) -> None:
        self.root = root
        self.git_root = root / "git"
        self.git_root.mkdir(parents=True, exist_ok=True)
        self.app_id, self.public_key, self.slug, self.installation_id = app_id, public_key, slug, installation_id
        self.repos: dict[str, Repo] = {}
        self.tokens: dict[str, dict] = {}
        self.requests: list[dict] = []
        self.faults: list[Fault] = []
        self.holds: list[Hold] = []
        self.rate_used = 0  # requests made with installation tokens (x-ratelimit-used)
        self.lock = threading.RLock()
        self._ids = iter(range(1000, 10**9))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        for hold in self.holds:
            hold.release.set()
        self.server.shutdown()
        self.server.server_close()

    def next_id(self) -> int:
        with self.lock:
            return next(self._ids)

    # -- repositories ------------------------------------------------------------------------------

    def add_repo(self, full_name: str, default_branch: str = "main") -> Repo:
        owner, name = full_name.split("/")
        repo = Repo(self.next_id(), owner, name, default_branch)
        bare = self.git_root / owner / f"{name}.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", default_branch, str(bare)], check=True)
        for key, value in (("http.receivepack", "true"), ("uploadpack.allowReachableSHA1InWant", "true")):
            subprocess.run(["git", "-C", str(bare), "config", key, value], check=True)
        self.repos[full_name] = repo
        return repo

    def bare_path(self, full_name: str) -> Path:
        owner, name = full_name.split("/")
        return self.git_root / owner / f"{name}.git"

    def open_pulls(self, full_name: str) -> list[dict]:
        return [p for p in self.repos[full_name].pulls if p["state"] == "open"]

    # -- JSON shapes (GitHub's documented fields the App reads, and a few more) --------------------

    def repo_json(self, repo: Repo) -> dict:
        return {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": {"login": repo.owner, "id": 1, "type": "Organization"},
            "html_url": f"https://github.example/{repo.full_name}",
            "url": f"{self.url}/repos/{repo.full_name}",
            "clone_url": f"{self.url}/git/{repo.full_name}.git",
            "default_branch": repo.default_branch,
            "visibility": "private" if repo.private else "public",
        }

    def bot(self) -> dict:
        return {"login": f"{self.slug}[bot]", "id": 9000 + self.app_id, "type": "Bot"}

    def branch_sha(self, repo: Repo, branch: str) -> str | None:
        done = subprocess.run(
            ["git", "-C", str(self.bare_path(repo.full_name)), "rev-parse", "-q", "--verify", f"refs/heads/{branch}"],
            capture_output=True,
            text=True,
        )
        return done.stdout.strip() or None


def _handler(gh: FakeGitHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args):  # quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, data, headers: dict | None = None) -> None:
            raw = json.dumps(data).encode() if data is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, str(v))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):
            self._route("GET")

        def do_POST(self):
            self._route("POST")

        def do_PATCH(self):
            self._route("PATCH")

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            body = self._body()
            if url.path.startswith("/git/"):
                return self._git(method, url, body)
            record = {
                "method": method,
                "path": url.path,
                "query": url.query,
                "auth": self.headers.get("Authorization", ""),
                "body": body.decode(errors="replace"),
                "time": time.time(),
            }
            with gh.lock:
                gh.requests.append(record)
                fault = next(
                    (f for f in gh.faults if f.times > 0 and f.method == method and re.search(f.path, url.path)), None
                )
                if fault:
                    fault.times -= 1
            if fault:
                record["status"] = fault.status
                if fault.status == 0:  # a network error: the connection drops without an answer
                    self.close_connection = True
                    return None
                return self._send(
                    fault.status, fault.body, fault.headers() if callable(fault.headers) else fault.headers
                )
            try:
                status, data = self._api(method, url, json.loads(body) if body else {})
            except _Reply as reply:
                status, data = reply.status, reply.data
            record["status"] = status
            headers = self._rate_headers()
            hold = next((h for h in gh.holds if h.method == method and re.search(h.path, url.path)), None)
            if hold and not hold.release.is_set():
                hold.reached.set()
                hold.release.wait(60)
            try:
                self._send(status, data, headers)
            except OSError:
                pass  # the client is gone (killed)

        # -- auth --------------------------------------------------------------------------------

        def _app_jwt(self) -> None:
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer "):
                raise _Reply(401, {"message": "A JSON web token could not be decoded"})
            try:
                claims = jwt.decode(auth[7:], gh.public_key, algorithms=["RS256"])
            except jwt.PyJWTError as exc:
                raise _Reply(401, {"message": f"A JSON web token could not be decoded ({exc})"}) from None
            if str(claims.get("iss")) != str(gh.app_id) or claims["exp"] - claims["iat"] > 660:
                raise _Reply(401, {"message": "'Issuer' claim ('iss') must be an Integer / expiration too far"})

        def _rate_headers(self) -> dict:
            """GitHub's rate-limit headers on an installation token's answers (5,000 an hour)."""
            auth = self.headers.get("Authorization", "")
            token = auth.split(" ", 1)[1] if " " in auth else ""
            if token not in gh.tokens:
                return {}
            with gh.lock:
                gh.rate_used += 1
                used = gh.rate_used
            return {
                "x-ratelimit-limit": 5000,
                "x-ratelimit-remaining": 5000 - used,
                "x-ratelimit-used": used,
                "x-ratelimit-reset": int(time.time()) + 3600,
                "x-ratelimit-resource": "core",
            }

        def _token_for(self, repo: Repo) -> dict:
            auth = self.headers.get("Authorization", "")
            token = auth.split(" ", 1)[1] if " " in auth else ""
            info = gh.tokens.get(token)
            if not info or info["expires"] < time.time() or repo.name not in info["repositories"]:
                raise _Reply(404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
            return info

        # -- REST --------------------------------------------------------------------------------

        def _api(self, method: str, url, data: dict):
            path = url.path.rstrip("/")
            if path == "/app" and method == "GET":
                self._app_jwt()
                return 200, {
                    "id": gh.app_id,
                    "slug": gh.slug,
                    "name": "torch-codemod",
                    "owner": {"login": "acme"},
                    "permissions": {},
                    "events": ["push"],
                }
            m = re.fullmatch(r"/app/installations/(\d+)/access_tokens", path)
            if m and method == "POST":
                self._app_jwt()
                if int(m.group(1)) != gh.installation_id:
                    raise _Reply(404, {"message": "Not Found"})
                names = data.get("repositories")
                if not names:
                    raise _Reply(422, {"message": "the App asks for a token to every repository"})
                token = "ghs_" + secrets.token_hex(18)
                gh.tokens[token] = {
                    "repositories": list(names),
                    "expires": time.time() + 3600,
                    "permissions": data.get("permissions", {}),
                }
                return 201, {
                    "token": token,
                    "expires_at": _now_iso(3600),
                    "permissions": data.get("permissions", {}),
                    "repository_selection": "selected",
                    "repositories": [gh.repo_json(r) for r in gh.repos.values() if r.name in names],
                }
            m = re.fullmatch(r"/repos/([^/]+)/([^/]+)(/.*)?", path)
            if not m or f"{m.group(1)}/{m.group(2)}" not in gh.repos:
                raise _Reply(404, {"message": "Not Found"})
            repo = gh.repos[f"{m.group(1)}/{m.group(2)}"]
            self._token_for(repo)
            rest = m.group(3) or ""
            with gh.lock:
                return self._repo_api(method, repo, rest, parse_qs(url.query), data)

        def _repo_api(self, method, repo: Repo, rest: str, query: dict, data: dict):
            if rest == "" and method == "GET":
                return 200, gh.repo_json(repo)
            if rest == "/pulls" and method == "GET":
                state = query.get("state", ["open"])[0]
                head = query.get("head", [None])[0]
                base = query.get("base", [None])[0]
                found = [
                    p
                    for p in repo.pulls
                    if (state == "all" or p["state"] == state)
                    and (head is None or p["head"]["label"] == head)
                    and (base is None or p["base"]["ref"] == base)
                ]
                return 200, found
            if rest == "/pulls" and method == "POST":
                head, base = data.get("head"), data.get("base")
                if any(p["state"] == "open" and p["head"]["ref"] == head for p in repo.pulls):
                    raise _Reply(
                        422,
                        {
                            "message": "Validation Failed",
                            "errors": [
                                {
                                    "resource": "PullRequest",
                                    "code": "custom",
                                    "message": f"A pull request already exists for {repo.owner}:{head}.",
                                }
                            ],
                        },
                    )
                head_sha = gh.branch_sha(repo, head)
                if head_sha is None:
                    raise _Reply(
                        422,
                        {
                            "message": "Validation Failed",
                            "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}],
                        },
                    )
                number = len(repo.pulls) + 1
                pull = {
                    "id": gh.next_id(),
                    "number": number,
                    "state": "open",
                    "title": data.get("title", ""),
                    "body": data.get("body", ""),
                    "draft": bool(data.get("draft")),
                    "merged": False,
                    "html_url": f"https://github.example/{repo.full_name}/pull/{number}",
                    "url": f"{gh.url}/repos/{repo.full_name}/pulls/{number}",
                    "head": {"ref": head, "label": f"{repo.owner}:{head}", "sha": head_sha, "repo": gh.repo_json(repo)},
                    "base": {
                        "ref": base,
                        "label": f"{repo.owner}:{base}",
                        "sha": gh.branch_sha(repo, base),
                        "repo": gh.repo_json(repo),
                    },
                    "user": gh.bot(),
                    "created_at": _now_iso(),
                    "updated_at": _now_iso(),
                    "edits": 0,
                }
                repo.pulls.append(pull)
                return 201, pull
            m = re.fullmatch(r"/pulls/(\d+)", rest)
            if m:
                pull = next((p for p in repo.pulls if p["number"] == int(m.group(1))), None)
                if pull is None:
                    raise _Reply(404, {"message": "Not Found"})
                if method == "PATCH":
                    for key in ("title", "body", "state"):
                        if key in data:
                            pull[key] = data[key]
                    pull["edits"] += 1
                    pull["updated_at"] = _now_iso()
                pull["head"]["sha"] = gh.branch_sha(repo, pull["head"]["ref"])
                return 200, pull
            if rest == "/check-runs" and method == "POST":
                output = data.get("output") or {}
                if len(output.get("annotations") or []) > 50:
                    raise _Reply(422, {"message": "Only 50 annotations may be sent per request"})
                run = {
                    "id": gh.next_id(),
                    "name": data["name"],
                    "head_sha": data["head_sha"],
                    "status": data.get("status"),
                    "conclusion": data.get("conclusion"),
                    "html_url": f"https://github.example/{repo.full_name}/runs/1",
                    "output": {
                        **{k: v for k, v in output.items() if k != "annotations"},
                        "annotations_count": len(output.get("annotations") or []),
                    },
                    "annotations": list(output.get("annotations") or []),
                    "requests": 1,
                }
                repo.check_runs.append(run)
                return 201, {k: v for k, v in run.items() if k not in ("annotations", "requests")}
            m = re.fullmatch(r"/check-runs/(\d+)", rest)
            if m and method == "PATCH":
                run = next((r for r in repo.check_runs if r["id"] == int(m.group(1))), None)
                if run is None:
                    raise _Reply(404, {"message": "Not Found"})
                batch = (data.get("output") or {}).get("annotations") or []
                if len(batch) > 50:
                    raise _Reply(422, {"message": "Only 50 annotations may be sent per request"})
                run["annotations"] += batch
                run["requests"] += 1
                run["output"]["annotations_count"] = len(run["annotations"])
                return 200, {k: v for k, v in run.items() if k not in ("annotations", "requests")}
            m = re.fullmatch(r"/issues/(\d+)", rest)
            if m and method == "GET":
                number = int(m.group(1))
                pull = next((p for p in repo.pulls if p["number"] == number), None)
                issue = {
                    "id": gh.next_id(),
                    "number": number,
                    "state": pull["state"] if pull else "open",
                    "title": pull["title"] if pull else "an issue",
                    "user": {"login": "octocat", "type": "User"},
                    "url": f"{gh.url}/repos/{repo.full_name}/issues/{number}",
                    "html_url": f"https://github.example/{repo.full_name}/issues/{number}",
                }
                if pull:
                    issue["pull_request"] = {"url": pull["url"]}
                return 200, issue
            m = re.fullmatch(r"/issues/(\d+)/comments", rest)
            if m and method == "POST":
                comment = {
                    "id": gh.next_id(),
                    "body": data.get("body", ""),
                    "user": gh.bot(),
                    "issue": int(m.group(1)),
                    "url": f"{gh.url}/repos/{repo.full_name}/issues/comments/0",
                    "html_url": f"https://github.example/{repo.full_name}/issues/{m.group(1)}#comment",
                    "created_at": _now_iso(),
                }
                repo.comments.append(comment)
                return 201, comment
            m = re.fullmatch(r"/issues/comments/(\d+)", rest)
            if m and method == "GET":
                return 200, {
                    "id": int(m.group(1)),
                    "body": "",
                    "user": {"login": "octocat", "type": "User"},
                    "url": f"{gh.url}/repos/{repo.full_name}/issues/comments/{m.group(1)}",
                    "html_url": f"https://github.example/{repo.full_name}/issues/comments/{m.group(1)}",
                }
            m = re.fullmatch(r"/issues/comments/(\d+)/reactions", rest)
            if m and method == "POST":
                if data.get("content") not in ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"):
                    raise _Reply(422, {"message": "Validation Failed"})
                reaction = {
                    "id": gh.next_id(),
                    "content": data["content"],
                    "comment_id": int(m.group(1)),
                    "user": gh.bot(),
                }
                repo.reactions.append(reaction)
                return 201, reaction
            raise _Reply(404, {"message": f"Not Found ({method} {rest})"})

        # -- git over smart HTTP ------------------------------------------------------------------

        def _git(self, method: str, url, body: bytes) -> None:
            m = re.fullmatch(r"/git/([^/]+)/([^/]+)\.git(/.*)", url.path)
            repo = gh.repos.get(f"{m.group(1)}/{m.group(2)}") if m else None
            auth = self.headers.get("Authorization", "")
            token = ""
            if auth.startswith("Basic "):
                user, _, token = base64.b64decode(auth[6:]).decode().partition(":")
            info = gh.tokens.get(token)
            gh.requests.append(
                {"method": method, "path": url.path, "query": url.query, "auth": auth, "git": True, "time": time.time()}
            )
            if repo is None or not info or info["expires"] < time.time() or repo.name not in info["repositories"]:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="GitHub"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": str(gh.git_root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "PATH_INFO": f"/{m.group(1)}/{m.group(2)}.git{m.group(3)}",
                "QUERY_STRING": url.query,
                "REQUEST_METHOD": method,
                "REMOTE_USER": "x-access-token",
                "REMOTE_ADDR": "127.0.0.1",
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "GIT_HTTP_MAX_REQUEST_BUFFER": "100M",
            }
            if self.headers.get("Git-Protocol"):
                env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
            done = subprocess.run(["git", "http-backend"], input=body, capture_output=True, env=env)
            head, _, payload = done.stdout.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode(errors="replace").split("\r\n"):
                key, _, value = line.partition(":")
                if key.lower() == "status":
                    status = int(value.split()[0])
                elif key:
                    headers.append((key, value.strip()))
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


class _Reply(Exception):
    def __init__(self, status: int, data) -> None:
        self.status, self.data = status, data
