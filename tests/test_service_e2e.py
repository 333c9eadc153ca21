"""The GitHub App end to end, with real parts on loopback: a fake GitHub (a real HTTP server
that PyGithub talks to), git remotes over ``git http-backend``, the webhook app under uvicorn,
``codemod worker`` processes, and the real sandboxed smoke test. Each story uses its own
repository; the whole module runs once on the embedded default (SQLite store and queue) and once
on redis-server + PostgreSQL."""

from __future__ import annotations

import base64
import os
import signal
import time
from pathlib import Path

import pytest

from e2e.fake_github import Fault, Hold
from e2e.world import BACKENDS, BUGGY, CLEAN, MODEL, load_hook, world_on


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory):
    with world_on(request.param, tmp_path_factory.mktemp(f"app-{request.param.replace('+', '-')}")) as w:
        yield w


def open_pulls(world, name):
    return world.gh.open_pulls(f"acme/{name}")


# -- the webhook door ----------------------------------------------------------------------------


def test_bad_or_missing_signature_is_401_and_nothing_stored(world):
    before = len(world.store.deliveries())
    payload = load_hook("ping.json")
    assert world.deliver("ping", payload, secret=None).status_code == 401
    assert world.deliver("ping", payload, secret="wrong").status_code == 401
    assert world.deliver("ping", payload, signature="sha256=" + "0" * 64).status_code == 401
    assert len(world.store.deliveries()) == before
    answer = world.deliver("ping", payload)
    assert (answer.status_code, answer.json()) == (200, {"answer": "pong"})
    assert len(world.store.deliveries()) == before + 1


def test_jobs_need_the_admin_token_and_metrics_and_health_answer(world):
    assert world.http.get("/jobs").status_code == 401
    assert world.http.get("/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert world.http.get("/healthz").json()["status"] == "ok"
    metrics = world.http.get("/metrics").text
    assert 'codemod_webhook_deliveries_total{event="ping",outcome="answered"}' in metrics
    assert "codemod_webhook_seconds_bucket" in metrics


# -- the main story: push -> one PR, updated; nothing for what must be ignored -------------------


def test_push_with_the_bug_opens_one_verified_pull_request(world):
    clone, first = world.make_repo("story", BUGGY)
    reply = world.deliver(
        "push", world.push_payload("story", "0" * 40, first, added=list(BUGGY)), delivery="story-push-1"
    )
    assert reply.status_code == 202
    world.drain()
    [pull] = open_pulls(world, "story")
    assert pull["head"]["ref"] == "codemod/autograd" and not pull["draft"]
    assert "x = x / stdev" in world.show("story", "codemod/autograd", "pkg/model.py")
    assert "x /= stdev" in world.show("story", "main", "pkg/model.py")  # main untouched
    body = pull["body"]
    assert "**IP101**" in body and "pkg/model.py#L13" in body and "pkg/model.py#L12" in body
    assert "**Verification: proven**" in body and "| normalized |" in body and "2/2 parameters" in body
    author = world.gh.repos["acme/story"]
    log = clone.git(
        "--git-dir", str(world.gh.bare_path("acme/story")), "log", "-1", "--format=%an <%ae>", "codemod/autograd"
    )
    assert log.startswith("torch-codemod[bot] <")
    [run] = author.check_runs
    assert run["head_sha"] == first and run["conclusion"] == "neutral"
    [job] = world.jobs("story")
    assert job["state"] == "done" and job["pr_url"] == pull["html_url"]
    assert set(job["stages"]) >= {"fetch", "codemod", "verification", "github"}

    # A replayed delivery (same X-GitHub-Delivery) does nothing new.
    again = world.deliver(
        "push", world.push_payload("story", "0" * 40, first, added=list(BUGGY)), delivery="story-push-1"
    )
    assert again.status_code == 200 and again.json() == {"duplicate": "story-push-1"}
    assert len(world.jobs("story")) == 1


def test_a_second_push_updates_the_same_pull_request(world):
    clone = _clone(world, "story")
    before = clone.git("rev-parse", "HEAD")
    second_model = MODEL.replace(
        "class Normalized",
        "class Scaled(nn.Module):\n    def forward(self, x):\n"
        "        y = torch.sigmoid(x)\n        y.mul_(2)\n        return y\n\n\nclass Normalized",
    )
    cases = BUGGY["tests/smoke_cases.py"].replace(
        "from pkg.model import Normalized", "from pkg.model import Normalized, Scaled"
    )
    cases = cases.replace(
        "]\n", ', {"name": "scaled", "module": Scaled, "inputs": lambda: torch.randn(2, 3, requires_grad=True)}]\n'
    )
    after = clone.commit({"pkg/model.py": second_model, "tests/smoke_cases.py": cases}, "a second model")
    world.deliver("push", world.push_payload("story", before, after, modified=["pkg/model.py", "tests/smoke_cases.py"]))
    world.drain()
    [pull] = world.gh.repos["acme/story"].pulls  # still one, open, edited
    assert pull["state"] == "open" and pull["edits"] == 1
    branch_model = world.show("story", "codemod/autograd", "pkg/model.py")
    assert "x = x / stdev" in branch_model and "y = y.mul(2)" in branch_model
    assert pull["body"].count("**IP1") == 2
    parent = clone.git("--git-dir", str(world.gh.bare_path("acme/story")), "rev-parse", "codemod/autograd^")
    assert parent == after  # the branch is rebuilt on the new base: one commit per job


@pytest.mark.parametrize("case", ["bot sender", "bot branch", "other branch", "tag", "deleted"])
def test_pushes_that_do_nothing(world, case):
    name = "story"
    sha = _clone(world, name).git("rev-parse", "HEAD")
    payload = {
        "bot sender": lambda: world.push_payload(name, sha, sha, sender={"login": "torch-codemod[bot]", "type": "Bot"}),
        "bot branch": lambda: world.push_payload(name, sha, sha, ref="refs/heads/codemod/autograd"),
        "other branch": lambda: world.push_payload(name, sha, sha, ref="refs/heads/feature"),
        "tag": lambda: {**world.push_payload(name, "0" * 40, sha), "ref": "refs/tags/v1", "created": True},
        "deleted": lambda: {**world.push_payload(name, sha, "0" * 40), "deleted": True},
    }[case]()
    jobs = len(world.jobs())
    reply = world.deliver("push", payload)
    assert reply.status_code == 202 and "ignored" in reply.json()
    assert len(world.jobs()) == jobs
    assert world.store.deliveries()[-1].outcome.startswith("ignored: ")


def test_a_human_commit_on_the_apps_branch_is_never_overwritten(world):
    work = _clone(world, "story")
    remote = world.gh.bare_path("acme/story")
    work.git("fetch", "-q", str(remote), "codemod/autograd")
    work.git("checkout", "-q", "-b", "mine", "FETCH_HEAD")
    (work.path / "NOTES.md").write_text("my review notes\n")
    human = work.commit({"NOTES.md": "my review notes\n"}, "review notes", branch="codemod/autograd")
    work.git("checkout", "-q", "main")
    base = work.git("rev-parse", "HEAD")
    for i in range(2):
        after = work.commit({"README.md": f"readme {i}\n"}, f"docs {i}")
        world.deliver("push", world.push_payload("story", base, after, added=["README.md"]))
        base = after
        world.drain()
    assert world.bot_branch("story") == human
    comments = [c for c in world.gh.repos["acme/story"].comments if "stop updating" in c["body"]]
    assert len(comments) == 1  # said once


def test_recreate_rebuilds_the_branch_from_the_base_and_answers(world):
    [pull] = open_pulls(world, "story")
    world.comment("story", pull["number"], "@torch-codemod recreate")
    world.drain()
    repo = world.gh.repos["acme/story"]
    assert [r["content"] for r in repo.reactions][-1] == "+1"
    assert "Recreated from `main`" in repo.comments[-1]["body"]
    main = _clone(world, "story").git("rev-parse", "HEAD")
    parent = _clone(world, "story").git(
        "--git-dir", str(world.gh.bare_path("acme/story")), "rev-parse", "codemod/autograd^"
    )
    assert parent == main and len(open_pulls(world, "story")) == 1


def test_adding_a_repository_to_the_installation_scans_it_whole(world):
    clone, sha = world.make_repo("installed", BUGGY)
    event = load_hook("installation_repositories.added.json")
    event["installation"]["id"] = world.gh.installation_id
    event["repositories_added"] = [
        {"id": world.gh.repos["acme/installed"].id, "name": "installed", "full_name": "acme/installed", "private": True}
    ]
    assert world.deliver("installation_repositories", event).status_code == 202
    world.drain()
    [job] = world.jobs("installed")
    assert (job["kind"], job["request"]["files"], job["result"]["sha"]) == ("scan", None, sha)
    [pull] = open_pulls(world, "installed")
    assert "x = x / stdev" in world.show("installed", "codemod/autograd", "pkg/model.py")


# -- failures on GitHub's side and in the worker -------------------------------------------------


def test_github_5xx_429_rate_limits_and_network_errors_are_retried_into_one_pull_request(world):
    clone, sha = world.make_repo("flaky", BUGGY)
    world.gh.faults += [
        Fault("POST", r"/repos/acme/flaky/pulls$", 502, times=2),
        Fault(
            "POST",
            r"/repos/acme/flaky/check-runs$",
            429,
            headers={"Retry-After": "1"},
            body={"message": "API rate limit exceeded"},
        ),
        Fault("GET", r"/repos/acme/flaky$", 500),
        Fault("POST", r"/app/installations/\d+/access_tokens$", 0),
        Fault(
            "GET",
            r"/repos/acme/flaky/pulls$",
            403,
            headers={"Retry-After": "1"},
            body={"message": "You have exceeded a secondary rate limit."},
        ),
    ]
    world.deliver("push", world.push_payload("flaky", "0" * 40, sha, added=list(BUGGY)))
    world.drain()
    assert len(world.gh.repos["acme/flaky"].pulls) == 1
    posts = [r for r in world.gh.requests if r["method"] == "POST" and r["path"] == "/repos/acme/flaky/pulls"]
    assert [r["status"] for r in posts] == [502, 502, 201]
    runs = [r for r in world.gh.requests if r["method"] == "POST" and r["path"] == "/repos/acme/flaky/check-runs"]
    assert [r["status"] for r in runs] == [429, 201] and runs[1]["time"] - runs[0]["time"] >= 0.9
    tokens = [r["status"] for r in world.gh.requests if r["path"].endswith("/access_tokens")][-2:]
    assert tokens == [0, 201]  # a dropped connection, retried
    lists = [r for r in world.gh.requests if r["method"] == "GET" and r["path"] == "/repos/acme/flaky/pulls"]
    assert [r["status"] for r in lists] == [403, 200]
    [job] = world.jobs("flaky")
    assert job["state"] == "done" and job["attempts"] == 1


def test_a_permanent_github_error_is_recorded_with_a_clear_message(world):
    clone, sha = world.make_repo("gone", CLEAN)
    world.gh.faults.append(
        Fault(
            "POST",
            r"/repos/acme/gone/check-runs$",
            422,
            times=10,
            body={"message": "Validation Failed", "errors": [{"field": "head_sha"}]},
        )
    )
    world.deliver("push", world.push_payload("gone", "0" * 40, sha, added=list(CLEAN)))
    world.drain()
    [job] = world.jobs("gone")
    assert job["state"] == "failed" and job["attempts"] == 1
    assert job["error"].startswith("GitHub answered 422 to POST /repos/acme/gone/check-runs: Validation Failed")


def test_a_broken_repository_config_is_reported_on_the_commit(world):
    files = {**CLEAN, "pyproject.toml": CLEAN["pyproject.toml"] + "\n[tool.codemod]\nbogus = 1\n"}
    clone, sha = world.make_repo("misconfigured", files)
    world.deliver("push", world.push_payload("misconfigured", "0" * 40, sha, added=list(files)))
    world.drain()
    [job] = world.jobs("misconfigured")
    assert job["state"] == "failed" and job["error"].startswith("ConfigError: ")
    [run] = world.gh.repos["acme/misconfigured"].check_runs
    assert run["conclusion"] == "failure" and "bogus" in run["output"]["summary"]


def test_a_worker_killed_mid_job_leads_to_one_more_run_and_one_pull_request(world):
    clone, sha = world.make_repo("killed", BUGGY)
    hold = Hold("POST", r"/repos/acme/killed/pulls$")  # the PR is created, the answer never arrives
    world.gh.holds.append(hold)
    world.deliver("push", world.push_payload("killed", "0" * 40, sha, added=list(BUGGY)))
    worker = world.start_worker()
    try:
        assert hold.reached.wait(300), Path(world.logs[-1]).read_text()[-2000:]
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        hold.release.set()
        world.gh.holds.remove(hold)
    [job] = world.jobs("killed")
    assert job["state"] == "running" and job["attempts"] == 1
    time.sleep(3.5)  # the lease (CODEMOD_LEASE_SECONDS=3) expires
    world.drain()
    [job] = world.jobs("killed")
    assert job["state"] == "done" and job["attempts"] == 2
    assert len(world.gh.repos["acme/killed"].pulls) == 1


def test_a_clean_push_opens_nothing_and_leaves_a_neutral_check_run(world):
    clone, sha = world.make_repo("clean", CLEAN)
    world.deliver("push", world.push_payload("clean", "0" * 40, sha, added=list(CLEAN)))
    world.drain()
    repo = world.gh.repos["acme/clean"]
    assert repo.pulls == [] and world.bot_branch("clean") is None
    [run] = repo.check_runs
    assert (run["conclusion"], run["output"]["title"]) == ("neutral", "No autograd bug found")
    assert world.jobs("clean")[0]["stages"].get("verification") is None  # nothing found: no smoke run


# -- people in charge ----------------------------------------------------------------------------


def test_ignore_stops_a_rule_for_the_repository(world):
    clone, sha = world.make_repo("quiet", BUGGY)
    world.deliver("push", world.push_payload("quiet", "0" * 40, sha, added=list(BUGGY)))
    world.drain()
    [pull] = open_pulls(world, "quiet")
    world.comment("quiet", pull["number"], "@torch-codemod ignore IP101")
    world.drain()
    repo = world.gh.repos["acme/quiet"]
    assert repo.reactions[-1]["content"] == "+1" and "`IP101` is ignored" in repo.comments[-1]["body"]
    after = clone.commit({"pkg/model.py": MODEL + "\n\nVERSION = 2\n"}, "bump")
    world.deliver("push", world.push_payload("quiet", sha, after, modified=["pkg/model.py"]))
    world.drain()
    last = world.jobs("quiet")[0]
    assert last["result"]["rewrites"] == 0 and last["result"]["status"] == "clean"
    assert open_pulls(world, "quiet")[0]["edits"] == 0
    world.comment("quiet", pull["number"], "@torch-codemod frobnicate")
    world.comment("quiet", pull["number"], "@torch-codemod ignore XX999")
    world.drain()
    assert [r["content"] for r in repo.reactions[-2:]] == ["confused", "confused"]
    replies = sorted(c["body"] for c in repo.comments[-2:])
    assert "unknown command `frobnicate`" in replies[1] and "no rule or family is called `XX999`" in replies[0]
    assert world.jobs("quiet")[0]["state"] == "done"


def test_a_closed_pull_request_means_not_these_until_the_code_changes(world):
    clone, sha = world.make_repo("declined", BUGGY)
    world.deliver("push", world.push_payload("declined", "0" * 40, sha, added=list(BUGGY)))
    world.drain()
    [pull] = world.gh.repos["acme/declined"].pulls
    pull["state"] = "closed"
    event = load_hook("pull_request.closed.json")
    repo = world.gh.repos["acme/declined"]
    event["repository"].update(id=repo.id, name="declined", full_name=repo.full_name, default_branch="main")
    event["installation"]["id"] = world.gh.installation_id
    event["pull_request"].update(number=pull["number"], merged=False)
    event["pull_request"]["head"]["ref"] = "codemod/autograd"
    world.deliver("pull_request", event)
    world.drain()
    # Unrelated lines move: the same finding is not proposed again.
    moved = "# a comment on top\n\n" + MODEL
    after = clone.commit({"pkg/model.py": moved}, "move lines")
    world.deliver("push", world.push_payload("declined", sha, after, modified=["pkg/model.py"]))
    world.drain()
    assert open_pulls(world, "declined") == []
    assert world.jobs("declined")[0]["result"]["rewrites"] == 0
    # The code of the finding changes: proposed again.
    changed = moved.replace("x /= stdev", "x /= stdev + 1e-6")
    again = clone.commit({"pkg/model.py": changed}, "change the normalization")
    world.deliver("push", world.push_payload("declined", after, again, modified=["pkg/model.py"]))
    world.drain()
    [new] = open_pulls(world, "declined")
    assert "x = x / (stdev + 1e-6)" in world.show("declined", "codemod/autograd", "pkg/model.py")


# -- secrets -------------------------------------------------------------------------------------

LEAK = r"""
import glob, os, sys
found = []
for name, value in os.environ.items():
    if name.startswith(("GITHUB", "CODEMOD_ADMIN")) or "ghs_" in value or "PRIVATE KEY" in value:
        found.append(name + "=" + value)
for path in glob.glob("/proc/[0-9]*/environ"):
    try:
        data = open(path, "rb").read().decode(errors="replace")
    except OSError:
        continue
    for item in data.split("\0"):
        if item.startswith(("GITHUB", "CODEMOD_ADMIN")) or "ghs_" in item:
            found.append(item)
            if item.startswith("GITHUB_PRIVATE_KEY_PATH="):
                try:
                    found.append(open(item.split("=", 1)[1]).read())
                except OSError as exc:
                    found.append("key unreadable: " + type(exc).__name__)
sys.exit("LEAKCHECK ran; found: " + " | ".join(found).replace("\n", " ")[:2000])
"""


def test_a_hostile_smoke_test_cannot_read_the_workers_secrets(world):
    files = {
        **BUGGY,
        "tests/leak.py": LEAK,
        "pyproject.toml": BUGGY["pyproject.toml"].replace(
            "[tool.codemod.smoke]\n", '[tool.codemod.smoke]\ncommand = "python tests/leak.py"\n'
        ),
    }
    clone, sha = world.make_repo("hostile", files)
    world.deliver("push", world.push_payload("hostile", "0" * 40, sha, added=list(files)))
    world.drain()
    [pull] = world.gh.repos["acme/hostile"].pulls
    assert pull["draft"] and "LEAKCHECK ran; found:" in pull["body"]  # it ran, in the sandbox, and failed
    secrets = _secrets(world)
    for secret in secrets:
        assert secret not in pull["body"]
    assert "GITHUB_" not in pull["body"].split("LEAKCHECK ran; found:", 1)[1].split("|")[0]


def test_the_installation_token_appears_nowhere_it_must_not(world):
    tokens = [t for t in world.gh.tokens]
    assert tokens
    secrets = _secrets(world)
    forbidden = tokens + [base64.b64encode(f"x-access-token:{t}".encode()).decode() for t in tokens] + secrets
    # the data dir: cached clones (.git/config included), SQLite files, everything
    for path in world.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for value in forbidden:
                assert value.encode() not in data, f"{path} holds a secret"
    texts = [Path(log).read_text() for log in world.logs]
    for repo in world.gh.repos.values():
        texts += [p["body"] for p in repo.pulls] + [c["body"] for c in repo.comments]
        texts += [str(r["output"]) + str(r["annotations"]) for r in repo.check_runs]
    texts.append(str(world.jobs()))
    texts += [r["path"] + "?" + r["query"] for r in world.gh.requests]  # never in a URL
    for text in texts:
        for value in forbidden:
            assert value not in text
    git_requests = [r for r in world.gh.requests if r.get("git")]
    assert git_requests and all(r["auth"].startswith("Basic ") for r in git_requests)


def _secrets(world) -> list[str]:
    from e2e.world import ADMIN, SECRET

    return [SECRET, ADMIN, world.private_pem.strip().splitlines()[1]]


def _clone(world, name):
    from e2e.world import Clone

    return Clone(world.root / "clones" / name, world.gh.bare_path(f"acme/{name}"))
