"""Webhook deliveries: the signature check and typed events. No I/O.

The signature is checked on the raw body before anything is parsed (``X-Hub-Signature-256``:
``sha256=`` + hex HMAC-SHA256 of the body under the webhook secret, compared in constant time).
Only the fields the App decides on are modelled; GitHub's payloads carry many more.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError


class EventError(ValueError):
    """A delivery that is signed but not a payload the App understands."""


def signature_of(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(signature_of(secret, body).encode(), header.encode())


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Account(_Model):
    login: str
    type: str = "User"


class Repository(_Model):
    id: int
    full_name: str
    default_branch: str | None = None
    private: bool = False


class Installation(_Model):
    id: int


class Commit(_Model):
    added: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


class PushEvent(_Model):
    kind: Literal["push"] = "push"
    ref: str
    before: str
    after: str
    created: bool = False
    deleted: bool = False
    forced: bool = False
    repository: Repository
    sender: Account
    installation: Installation | None = None
    commits: tuple[Commit, ...] = ()
    head_commit: Commit | None = None

    @property
    def changed_files(self) -> tuple[str, ...]:
        """Files added or modified by the pushed commits (a removed file needs no analysis)."""
        seen: dict[str, None] = {}
        for commit in self.commits or ((self.head_commit,) if self.head_commit else ()):
            for name in (*commit.added, *commit.modified):
                seen[name] = None
            for name in commit.removed:
                seen.pop(name, None)
        return tuple(seen)


class PingEvent(_Model):
    kind: Literal["ping"] = "ping"
    zen: str = ""
    hook_id: int | None = None


class RepositoryName(_Model):
    id: int
    full_name: str


class InstallationEvent(_Model):
    kind: Literal["installation"] = "installation"
    action: str
    installation: Installation
    sender: Account
    repositories: tuple[RepositoryName, ...] | None = None


class InstallationRepositoriesEvent(_Model):
    kind: Literal["installation_repositories"] = "installation_repositories"
    action: str
    installation: Installation
    sender: Account
    repositories_added: tuple[RepositoryName, ...] = ()


class Comment(_Model):
    id: int
    body: str = ""
    user: Account


class Issue(_Model):
    number: int
    pull_request: dict | None = None


class IssueCommentEvent(_Model):
    kind: Literal["issue_comment"] = "issue_comment"
    action: str
    issue: Issue
    comment: Comment
    repository: Repository
    sender: Account
    installation: Installation | None = None


class Ref(_Model):
    ref: str


class PullRequest(_Model):
    number: int
    merged: bool | None = False
    head: Ref
    base: Ref


class PullRequestEvent(_Model):
    kind: Literal["pull_request"] = "pull_request"
    action: str
    pull_request: PullRequest
    repository: Repository
    sender: Account
    installation: Installation | None = None


class OtherEvent(_Model):
    kind: Literal["other"] = "other"
    name: str


Event = (
    PushEvent
    | PingEvent
    | InstallationEvent
    | InstallationRepositoriesEvent
    | IssueCommentEvent
    | PullRequestEvent
    | OtherEvent
)

_MODELS: dict[str, type[_Model]] = {
    "push": PushEvent,
    "ping": PingEvent,
    "installation": InstallationEvent,
    "installation_repositories": InstallationRepositoriesEvent,
    "issue_comment": IssueCommentEvent,
    "pull_request": PullRequestEvent,
}


def parse_event(name: str, body: bytes) -> Event:
    """The typed event of a delivery whose signature was already checked."""
    model = _MODELS.get(name)
    if model is None:
        return OtherEvent(name=name or "(no X-GitHub-Event)")
    try:
        # pydantic's own JSON parser builds only the fields modelled (a push carries ~8 KB of
        # others), faster than json.loads + model_validate, on the acknowledgement's path
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise EventError(f"{name}: the body is not JSON ({first['msg']})") from None
        if first["type"] == "model_type" and not first["loc"]:
            raise EventError(f"{name}: the body is not a JSON object") from None
        where = ".".join(str(p) for p in first["loc"])
        raise EventError(f"{name}: {where}: {first['msg']}") from None
