"""GitHub through PyGithub: the only module that imports it.

App JWT auth, installation tokens narrowed to the one repository (and to the permissions the job
needs), ``base_url`` from the settings (GitHub Enterprise and local servers work the same), and
``GithubRetry`` for 5xx, 429 and secondary rate limits (``Retry-After``, ``x-ratelimit-reset``)
and network errors. Content-creating requests go through one budget per installation, shared
through the job store by every worker process (GitHub allows 80 a minute). A 404 or 422 is a :class:`PermanentError` with a message that says what was refused;
anything still failing after the retries is a :class:`TransientError` (the job runs again).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from github import Auth, Github, GithubException, GithubIntegration, GithubRetry, RateLimitExceededException
from github.InstallationAuthorization import InstallationAuthorization
from requests.exceptions import RequestException

from .settings import Settings

if TYPE_CHECKING:
    from .store import Store

# PyGithub gives its logger a plain stderr handler of its own at import; its lines go through the
# root's JSON handler instead (service.logs), with the job's ids and without secrets.
for _handler in list(logging.getLogger("github").handlers):
    logging.getLogger("github").removeHandler(_handler)

# What a job does with its token: read code, push its branch, open the PR, the check run, comments.
PERMISSIONS = {"contents": "write", "pull_requests": "write", "checks": "write", "issues": "write", "metadata": "read"}


class GitHubError(Exception):
    pass


class PermanentError(GitHubError):
    """GitHub refused for good (404, 422, 401...): recorded, not retried."""


class TransientError(GitHubError):
    """Still failing after the retries (5xx, rate limits, network): the job runs again later."""


class WriteBudget:
    """At most ``per_minute`` content-creating requests in any 60 s (per process)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.times: deque[float] = deque()
        self.lock = threading.Lock()

    def take(self) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                while self.times and now - self.times[0] >= 60:
                    self.times.popleft()
                if len(self.times) < self.per_minute:
                    self.times.append(now)
                    return
                wait = 60 - (now - self.times[0])
            time.sleep(wait)


class SharedWriteBudget:
    """The same, counted in the job store: every worker process of the installation, on every
    machine, draws on one budget (:meth:`Store.take_write`)."""

    def __init__(self, store: "Store", installation: int, per_minute: int) -> None:
        self.store, self.installation, self.per_minute = store, installation, per_minute

    def take(self) -> None:
        while wait := self.store.take_write(self.installation, self.per_minute):
            time.sleep(wait)


_budgets: dict[int, WriteBudget] = {}


class _Retry(GithubRetry):
    """GithubRetry, plus GitHub's documented rule for a rate-limited answer without
    ``Retry-After``: when ``x-ratelimit-remaining`` is 0, wait until ``x-ratelimit-reset``
    (PyGithub waits its fixed ``secondary_rate_wait`` for a secondary limit, however far the reset is).
    Without either header, ``secondary_rate_wait`` (``CODEMOD_GITHUB_SECONDARY_WAIT``, a minute as
    GitHub asks)."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if response is None or response.status not in (403, 429) or "Retry-After" in response.headers:
            return retry
        reset = response.headers.get("X-RateLimit-Reset", "")
        if response.headers.get("X-RateLimit-Remaining") != "0" or not reset.isdigit():
            return retry
        wait = int(reset) - time.time() + 1  # +1: the reset happens somewhere in that second
        if self.max_rate_limit_wait is not None and wait > self.max_rate_limit_wait:
            raise RateLimitExceededException(
                response.status, {"message": f"rate limited for {wait:.0f} s"}, dict(response.headers)
            )
        before = retry.get_backoff_time
        retry.get_backoff_time = lambda: max(before(), wait)
        return retry


@contextmanager
def _errors(what: str):
    try:
        yield
    except RateLimitExceededException as exc:  # still limited after GithubRetry's waits: later
        raise TransientError(f"GitHub rate limit on {what}: {exc.data}") from None
    except GithubException as exc:
        message = exc.data.get("message") if isinstance(exc.data, dict) else str(exc.data)
        errors = exc.data.get("errors") if isinstance(exc.data, dict) else None
        detail = f"{message}" + (f" ({errors})" if errors else "")
        if exc.status in (401, 403, 404, 409, 410, 422):
            raise PermanentError(f"GitHub answered {exc.status} to {what}: {detail}") from None
        raise TransientError(f"GitHub answered {exc.status} to {what}: {detail}") from None
    except RequestException as exc:  # network errors and retries exhausted (urllib3's MaxRetryError)
        raise TransientError(f"{what}: {type(exc).__name__}: {exc}".split(" (Caused by")[0][:400]) from None


class GitHubApp:
    def __init__(self, settings: Settings, store: "Store | None" = None) -> None:
        self.settings, self.store = settings, store
        self.auth = Auth.AppAuth(settings.github_app_id, settings.private_key())
        self.integration = GithubIntegration(auth=self.auth, base_url=settings.github_api_url, retry=self._retry())
        self.budget = _budgets.setdefault(
            settings.codemod_writes_per_minute, WriteBudget(settings.codemod_writes_per_minute)
        )

    def _retry(self) -> GithubRetry:
        return _Retry(
            total=self.settings.codemod_github_retries,
            backoff_factor=self.settings.codemod_github_backoff,
            secondary_rate_wait=self.settings.codemod_github_secondary_wait,
        )

    def slug(self) -> str:
        with _errors("GET /app"):
            return self.integration.get_app().slug

    def repository(self, installation_id: int, full_name: str) -> "RepoClient":
        """A client whose token can reach only ``full_name``."""
        name = full_name.split("/", 1)[1]
        with _errors(f"POST /app/installations/{installation_id}/access_tokens"):
            headers, data = self.integration.requester.requestJsonAndCheck(
                "POST",
                f"/app/installations/{installation_id}/access_tokens",
                input={"repositories": [name], "permissions": PERMISSIONS},
            )
        token = InstallationAuthorization(self.integration.requester, headers, data).token
        gh = Github(
            auth=Auth.Token(token),
            base_url=self.settings.github_api_url,
            retry=self._retry(),
            seconds_between_requests=None,
            seconds_between_writes=None,
        )
        budget = (
            self.budget
            if self.store is None
            else SharedWriteBudget(self.store, installation_id, self.settings.codemod_writes_per_minute)
        )
        return RepoClient(gh, full_name, token, budget)


@dataclass
class PullInfo:
    number: int
    url: str
    state: str
    merged: bool
    head: str


class RepoClient:
    def __init__(self, gh: Github, full_name: str, token: str, budget: WriteBudget | SharedWriteBudget) -> None:
        self.gh, self.full_name, self.token, self.budget = gh, full_name, token, budget
        with _errors(f"GET /repos/{full_name}"):
            self.repo = gh.get_repo(full_name)
            self.default_branch = self.repo.default_branch
            self.clone_url = self.repo.clone_url
            self.owner = self.repo.owner.login

    def rate_remaining(self) -> int | None:
        """``x-ratelimit-remaining`` of the last answer (PyGithub reads the headers); None before any."""
        remaining, _limit = self.gh.requester.rate_limiting
        return remaining if remaining >= 0 else None

    def open_pull(self, branch: str, base: str) -> PullInfo | None:
        with _errors(f"GET /repos/{self.full_name}/pulls"):
            for pull in self.repo.get_pulls(state="open", head=f"{self.owner}:{branch}", base=base):
                if pull.head.ref == branch:
                    return _info(pull)
        return None

    def pull(self, number: int) -> PullInfo:
        with _errors(f"GET /repos/{self.full_name}/pulls/{number}"):
            return _info(self.repo.get_pull(number))

    def create_pull(self, *, branch: str, base: str, title: str, body: str, draft: bool) -> PullInfo:
        self.budget.take()
        with _errors(f"POST /repos/{self.full_name}/pulls"):
            return _info(self.repo.create_pull(base=base, head=branch, title=title, body=body, draft=draft))

    def update_pull(self, number: int, *, title: str, body: str) -> PullInfo:
        self.budget.take()
        with _errors(f"PATCH /repos/{self.full_name}/pulls/{number}"):
            pull = self.repo.get_pull(number)
            pull.edit(title=title, body=body)
            return _info(pull)

    def check_run(
        self,
        *,
        sha: str,
        name: str,
        conclusion: str,
        title: str,
        summary: str,
        text: str,
        annotations: list[list[dict]],
    ) -> int:
        """One check run; annotations in batches (GitHub takes 50 per request)."""
        self.budget.take()
        first = annotations[0] if annotations else []
        output = {"title": title, "summary": summary, "text": text, "annotations": first}
        with _errors(f"POST /repos/{self.full_name}/check-runs"):
            run = self.repo.create_check_run(
                name=name, head_sha=sha, status="completed", conclusion=conclusion, output=output
            )
        for batch in annotations[1:]:
            self.budget.take()
            with _errors(f"PATCH /repos/{self.full_name}/check-runs/{run.id}"):
                run.edit(output={"title": title, "summary": summary, "annotations": batch})
        return run.id

    def comment(self, issue: int, body: str) -> None:
        self.budget.take()
        with _errors(f"POST /repos/{self.full_name}/issues/{issue}/comments"):
            self.repo.get_issue(issue).create_comment(body)

    def react(self, issue: int, comment_id: int, content: str = "+1") -> None:
        self.budget.take()
        with _errors(f"POST /repos/{self.full_name}/issues/comments/{comment_id}/reactions"):
            self.repo.get_issue(issue).get_comment(comment_id).create_reaction(content)


def _info(pull) -> PullInfo:
    return PullInfo(pull.number, pull.html_url, pull.state, bool(pull.merged), pull.head.ref)
