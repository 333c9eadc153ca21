"""Signature check, typed events and trigger decisions on GitHub's published webhook examples."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from service.events import EventError, PushEvent, parse_event, signature_of, verify_signature
from service.settings import SettingsError, load_settings
from service.triggers import Answer, Ignored, JobRequest, decide, parse_command

HOOKS = Path(__file__).resolve().parent.parent / "fixtures" / "webhooks"


def load(name: str) -> dict:
    return json.loads((HOOKS / name).read_text())


def body(data: dict) -> bytes:
    return json.dumps(data).encode()


def decide_on(name: str, data: dict):
    return decide(parse_event(name, body(data)), app_slug="torch-codemod")


# -- signatures ----------------------------------------------------------------------------------


def test_signature_accepts_exactly_the_signed_body():
    raw = body(load("push.json"))
    sig = signature_of(b"s3cret", raw)
    assert verify_signature(b"s3cret", raw, sig)
    assert not verify_signature(b"other", raw, sig)
    assert not verify_signature(b"s3cret", raw + b" ", sig)
    assert not verify_signature(b"s3cret", raw, None)
    assert not verify_signature(b"s3cret", raw, sig.replace("sha256=", "sha1="))


# -- push ----------------------------------------------------------------------------------------


def test_push_to_the_default_branch_is_a_job_with_its_python_files():
    data = load("push.json")
    data["commits"][0].update(added=["pkg/new.py", "README.md"], modified=["pkg/model.py"], removed=[])
    [job] = decide_on("push", data)
    assert job == JobRequest(
        "push", "Codertocat/Hello-World", 1, sha=data["after"], base="master", files=("pkg/new.py", "pkg/model.py")
    )


def test_a_file_removed_by_a_later_commit_is_not_analysed():
    data = load("push.json")
    second = copy.deepcopy(data["commits"][0])
    data["commits"][0].update(added=["a.py"], modified=[], removed=[])
    second.update(added=[], modified=[], removed=["a.py"])
    data["commits"].append(second)
    assert isinstance(parse_event("push", body(data)), PushEvent)
    assert decide_on("push", data)[0].files == ()


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"ref": "refs/heads/feature"}, "not the default branch (feature; default master)"),
        ({"ref": "refs/heads/codemod/autograd"}, "push to the App's own branch"),
        ({"sender": {"login": "torch-codemod[bot]", "type": "Bot"}}, "sender is a bot (torch-codemod[bot])"),
    ],
)
def test_pushes_the_app_must_not_act_on(change, reason):
    data = load("push.json")
    data.update(change)
    assert decide_on("push", data) == Ignored(reason)


def test_tags_and_deleted_refs_from_githubs_examples_are_ignored():
    assert decide_on("push", load("push.tag.json")) == Ignored(
        "push without an installation (a repository webhook, not the App's)"
    )
    tag = load("push.tag.json")
    tag["installation"] = {"id": 1}
    assert decide_on("push", tag) == Ignored("tag")
    assert decide_on("push", load("push.deleted.json")) == Ignored("deleted ref")


def test_ping_is_answered():
    assert decide_on("ping", load("ping.json")) == Answer("pong")


def test_installation_scans_each_repository_whole():
    [job] = decide_on("installation", load("installation.created.json"))
    assert (job.kind, job.repo, job.files, job.sha) == ("scan", "Codertocat/Hello-World", None, None)
    [added] = decide_on("installation_repositories", load("installation_repositories.added.json"))
    assert (added.kind, added.repo) == ("scan", "Codertocat/Space")
    removed = load("installation_repositories.added.json")
    removed["action"] = "removed"
    assert decide_on("installation_repositories", removed) == Ignored("installation_repositories removed")


# -- comments and pull requests ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("@torch-codemod recreate", ("recreate", [])),
        ("Thanks!\n@torch-codemod ignore IP101, init-derived", ("ignore", ["IP101", "init-derived"])),
        ("@Torch-Codemod[bot] RECREATE please", ("recreate", ["please"])),
        ("email me at x@torch-codemodder recreate", None),
        ("no command here", None),
    ],
)
def test_parse_command(text, expected):
    assert parse_command(text, "torch-codemod") == expected


def test_comment_commands_become_jobs_and_other_comments_are_ignored():
    data = load("issue_comment.created.json")
    assert decide_on("issue_comment", data) == Ignored("comment without an @torch-codemod command")
    data["comment"]["body"] = "@torch-codemod ignore IP101"
    [job] = decide_on("issue_comment", data)
    assert (job.kind, job.params["rules"], job.params["comment_id"]) == ("ignore", ["IP101"], data["comment"]["id"])
    data["comment"]["body"] = "@torch-codemod recreate"
    assert decide_on("issue_comment", data)[0].kind == "recreate"
    data["comment"]["user"]["type"] = data["sender"]["type"] = "Bot"
    assert isinstance(decide_on("issue_comment", data), Ignored)


def test_closing_the_apps_pull_request_unmerged_is_a_job():
    data = load("pull_request.closed.json")
    assert decide_on("pull_request", data) == Ignored("not the App's pull request")
    data["pull_request"]["head"]["ref"] = "codemod/autograd"
    [job] = decide_on("pull_request", data)
    assert (job.kind, job.params["pr"]) == ("closed", data["pull_request"]["number"])
    data["pull_request"]["merged"] = True
    assert decide_on("pull_request", data) == Ignored("the App's pull request was merged")


def test_malformed_payloads_are_a_clear_error():
    with pytest.raises(EventError, match="push: the body is not JSON"):
        parse_event("push", b"{nope")
    with pytest.raises(EventError, match="push: after: Field required"):
        parse_event(
            "push",
            b'{"ref": "refs/heads/x", "before": "0", "repository": {"id": 1, "full_name": "a/b"}, "sender": {"login": "x"}}',
        )
    assert decide(parse_event("star", b"{}"), app_slug="x") == Ignored("event star is not handled")


# -- settings ------------------------------------------------------------------------------------


def test_settings_errors_name_the_variable(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_PRIVATE_KEY_PATH", "GITHUB_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SettingsError, match="GITHUB_APP_ID: Field required.*GITHUB_WEBHOOK_SECRET: Field required"):
        load_settings()
    monkeypatch.setenv("GITHUB_APP_ID", "twelve")
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "s")
    with pytest.raises(SettingsError, match="GITHUB_APP_ID: Input should be a valid integer"):
        load_settings()
    monkeypatch.setenv("GITHUB_APP_ID", "12")
    with pytest.raises(SettingsError, match="GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH must be set"):
        load_settings()
    monkeypatch.setenv("GITHUB_PRIVATE_KEY_PATH", str(tmp_path / "missing.pem"))
    with pytest.raises(SettingsError, match="GITHUB_PRIVATE_KEY_PATH: cannot read"):
        load_settings()
    monkeypatch.delenv("GITHUB_PRIVATE_KEY_PATH")
    monkeypatch.setenv("GITHUB_PRIVATE_KEY", "not a key")
    with pytest.raises(SettingsError, match="GITHUB_PRIVATE_KEY: not a PEM private key"):
        load_settings()
    (tmp_path / ".env").write_text(
        "GITHUB_PRIVATE_KEY='-----BEGIN RSA PRIVATE KEY-----\\nabc\\n-----END RSA PRIVATE KEY-----'\n"
        f"CODEMOD_DATA_DIR={tmp_path / 'data'}\n"
    )
    monkeypatch.delenv("GITHUB_PRIVATE_KEY")
    with pytest.raises(
        SettingsError, match=r"\.env: .env is readable by other users, smoke tests included \(chmod 600"
    ):
        load_settings()
    (tmp_path / ".env").chmod(0o600)
    settings = load_settings()
    assert settings.github_app_id == 12 and (tmp_path / "data").is_dir()
    assert settings.database_url.startswith("sqlite:///") and settings.github_api_url == "https://api.github.com"
