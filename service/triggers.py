"""What a delivery asks of the App: a job, an answer, or a reason to ignore it. Pure.

Pushes count only when they move the default branch and come from a person: deleted refs, tags,
the App's own branches and Bot senders are ignored (an installation-token push triggers a
webhook: without that rule the App would answer itself forever).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from .events import (
    Event,
    InstallationEvent,
    InstallationRepositoriesEvent,
    IssueCommentEvent,
    OtherEvent,
    PingEvent,
    PullRequestEvent,
    PushEvent,
)

JobKind = Literal["push", "scan", "recreate", "ignore", "closed"]


@dataclass(frozen=True)
class JobRequest:
    kind: JobKind
    repo: str
    installation_id: int
    sha: str | None = None  # the pushed commit (None: the default branch's tip)
    base: str | None = None  # the base branch (None: the default branch)
    files: tuple[str, ...] | None = None  # files pushed (None: the whole repository)
    params: dict = field(default_factory=dict)  # comment id, rules to ignore, PR number

    def to_payload(self) -> dict:
        return {
            "sha": self.sha,
            "base": self.base,
            "files": list(self.files) if self.files is not None else None,
            **self.params,
        }


@dataclass(frozen=True)
class Ignored:
    reason: str


@dataclass(frozen=True)
class Answer:
    """Answered at once, no job (``ping``)."""

    text: str


Decision = list[JobRequest] | Ignored | Answer

_ZERO = "0" * 40


def decide(event: Event, *, app_slug: str, branch_prefix: str = "codemod/") -> Decision:
    if isinstance(event, PingEvent):
        return Answer("pong")
    if isinstance(event, PushEvent):
        return _push(event, branch_prefix)
    if isinstance(event, InstallationEvent):
        if event.action != "created":
            return Ignored(f"installation {event.action}")
        return [JobRequest("scan", r.full_name, event.installation.id) for r in event.repositories or ()] or Ignored(
            "installation created without repositories"
        )
    if isinstance(event, InstallationRepositoriesEvent):
        if event.action != "added":
            return Ignored(f"installation_repositories {event.action}")
        return [JobRequest("scan", r.full_name, event.installation.id) for r in event.repositories_added] or Ignored(
            "no repository added"
        )
    if isinstance(event, IssueCommentEvent):
        return _comment(event, app_slug)
    if isinstance(event, PullRequestEvent):
        return _pull_request(event, branch_prefix)
    if isinstance(event, OtherEvent):
        return Ignored(f"event {event.name} is not handled")
    return Ignored("event is not handled")


def _push(event: PushEvent, branch_prefix: str) -> Decision:
    if event.installation is None:
        return Ignored("push without an installation (a repository webhook, not the App's)")
    if event.deleted or event.after == _ZERO:
        return Ignored("deleted ref")
    if event.ref.startswith("refs/tags/"):
        return Ignored("tag")
    if not event.ref.startswith("refs/heads/"):
        return Ignored(f"not a branch: {event.ref}")
    branch = event.ref.removeprefix("refs/heads/")
    if branch.startswith(branch_prefix):
        return Ignored("push to the App's own branch")
    if branch != event.repository.default_branch:
        return Ignored(f"not the default branch ({branch}; default {event.repository.default_branch})")
    if event.sender.type == "Bot":
        return Ignored(f"sender is a bot ({event.sender.login})")
    files = tuple(f for f in event.changed_files if f.endswith(".py"))
    return [
        JobRequest("push", event.repository.full_name, event.installation.id, sha=event.after, base=branch, files=files)
    ]


_RULE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")


def parse_command(body: str, app_slug: str) -> tuple[str, list[str]] | None:
    """``@slug recreate`` or ``@slug ignore IP101 init-derived``: the first such line of a comment."""
    mention = re.compile(rf"(?:^|\s)@{re.escape(app_slug)}(?:\[bot\])?\s+(\S+)(.*)$", re.IGNORECASE)
    for line in body.splitlines():
        m = mention.search(line.strip())
        if m:
            return m.group(1).lower(), [a.strip(",") for a in m.group(2).split() if a.strip(",")]
    return None


def _comment(event: IssueCommentEvent, app_slug: str) -> Decision:
    if event.action != "created":
        return Ignored(f"comment {event.action}")
    if event.installation is None:
        return Ignored("comment without an installation")
    if event.sender.type == "Bot" or event.comment.user.type == "Bot":
        return Ignored(f"comment by a bot ({event.comment.user.login})")
    command = parse_command(event.comment.body, app_slug)
    if command is None:
        return Ignored(f"comment without an @{app_slug} command")
    verb, args = command
    params = {"comment_id": event.comment.id, "issue": event.issue.number, "author": event.comment.user.login}
    repo, inst = event.repository.full_name, event.installation.id
    if verb == "recreate":
        return [JobRequest("recreate", repo, inst, params=params)]
    if verb == "ignore":
        rules = [a for a in args if _RULE.match(a)]
        if not rules:
            return [
                JobRequest(
                    "ignore",
                    repo,
                    inst,
                    params={**params, "rules": [], "problem": "name a rule code or family, e.g. `ignore IP101`"},
                )
            ]
        return [JobRequest("ignore", repo, inst, params={**params, "rules": rules})]
    return [
        JobRequest(
            "ignore",
            repo,
            inst,
            params={**params, "rules": [], "problem": f"unknown command `{verb}` (known: recreate, ignore CODE)"},
        )
    ]


def _pull_request(event: PullRequestEvent, branch_prefix: str) -> Decision:
    if event.action != "closed":
        return Ignored(f"pull_request {event.action}")
    if event.installation is None:
        return Ignored("pull request without an installation")
    if not event.pull_request.head.ref.startswith(branch_prefix):
        return Ignored("not the App's pull request")
    if event.pull_request.merged:
        return Ignored("the App's pull request was merged")
    return [
        JobRequest(
            "closed",
            event.repository.full_name,
            event.installation.id,
            base=event.pull_request.base.ref,
            params={"pr": event.pull_request.number},
        )
    ]
