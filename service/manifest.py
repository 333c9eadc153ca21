"""The GitHub App manifest: exactly the permissions and events the App needs (pure, no I/O).

GitHub sends ``installation`` and ``installation_repositories`` to every App and rejects a
manifest that lists them, so only the events the App subscribes to are named.
"""

from __future__ import annotations

PERMISSIONS = {
    "contents": "write",  # clone, push the App's branch
    "pull_requests": "write",  # open and update the single PR
    "checks": "write",  # check runs with annotations
    "issues": "write",  # answer @app commands in comments, react to them
    "metadata": "read",  # every App has it
}
EVENTS = ["push", "issue_comment", "pull_request"]


def manifest(
    name: str, redirect_url: str, *, webhook_url: str | None = None, homepage: str = "https://github.com/apps"
) -> dict:
    """The manifest GitHub's "create an App from a manifest" flow posts (``manifest`` form field)."""
    out = {
        "name": name,
        "url": homepage,
        "redirect_url": redirect_url,
        "public": False,
        "default_permissions": dict(PERMISSIONS),
        "default_events": list(EVENTS),
    }
    if webhook_url:
        out["hook_attributes"] = {"url": webhook_url, "active": True}
    return out


def new_app_url(github_url: str, org: str | None) -> str:
    """Where the manifest is posted: the user's or an organization's "new App" page."""
    base = github_url.rstrip("/")
    return f"{base}/organizations/{org}/settings/apps/new" if org else f"{base}/settings/apps/new"


def api_url_for(github_url: str) -> str:
    """The REST API of a GitHub: api.github.com for github.com, ``/api/v3`` on GitHub Enterprise."""
    base = github_url.rstrip("/")
    return "https://api.github.com" if base in ("https://github.com", "http://github.com") else f"{base}/api/v3"
