"""Operating the App, end to end on loopback (fake GitHub, git http-backend, uvicorn, ``codemod
worker`` processes, the real sandboxed smoke test): GitHub's secondary rate limit with
``x-ratelimit-reset``, ``unverified = "skip"``, CUDA repositories routed to the GPU worker's queue,
``/metrics`` scraped after the jobs, the status page in headless Chromium, and the JSON logs of the
whole run (ids on every line of a job, no secret anywhere). The tests of this module build on each
other's jobs, in file order; the module runs on SQLite and on redis-server + PostgreSQL."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

import headless
from e2e.fake_github import Fault
from e2e.world import ADMIN, BACKENDS, BUGGY, CLEAN, SECRET, world_on

CUDA_QUEUE = "codemod-jobs-cuda"


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory):
    with world_on(request.param, tmp_path_factory.mktemp(f"ops-{request.param.replace('+', '-')}")) as w:
        yield w


def test_a_secondary_rate_limit_waits_for_x_ratelimit_reset_then_one_pull_request(world):
    _, sha = world.make_repo("limited", BUGGY)
    answered: list[int] = []

    def limited() -> dict:  # GitHub's documented shape: remaining 0 and the reset, no Retry-After
        answered.append(int(time.time()) + 3)
        return {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-used": "5000",
            "x-ratelimit-reset": str(answered[-1]),
            "x-ratelimit-resource": "core",
        }

    world.gh.faults.append(
        Fault(
            "POST",
            r"/repos/acme/limited/pulls$",
            403,
            headers=limited,
            body={
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits",
            },
        )
    )
    world.deliver("push", world.push_payload("limited", "0" * 40, sha, added=list(BUGGY)))
    world.drain()
    posts = [r for r in world.gh.requests if r["method"] == "POST" and r["path"] == "/repos/acme/limited/pulls"]
    assert [r["status"] for r in posts] == [403, 201]
    # not PyGithub's fixed 1 s secondary wait: the retry came after the announced reset
    assert posts[1]["time"] >= answered[0], (posts[1]["time"], answered[0])
    assert len(world.gh.repos["acme/limited"].pulls) == 1
    [job] = world.jobs("limited")
    assert (job["state"], job["attempts"]) == ("done", 1)


def test_a_secondary_rate_limit_without_headers_waits_the_secondary_wait(world):
    # GitHub: with neither Retry-After nor x-ratelimit-remaining 0, wait (at least a minute in
    # production; this world sets CODEMOD_GITHUB_SECONDARY_WAIT=2) before retrying.
    _, sha = world.make_repo("quiet", BUGGY)
    world.gh.faults.append(
        Fault(
            "POST",
            r"/repos/acme/quiet/pulls$",
            403,
            body={
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
            },
        )
    )
    world.deliver("push", world.push_payload("quiet", "0" * 40, sha, added=list(BUGGY)))
    world.drain()
    posts = [r for r in world.gh.requests if r["method"] == "POST" and r["path"] == "/repos/acme/quiet/pulls"]
    assert [r["status"] for r in posts] == [403, 201]
    assert posts[1]["time"] - posts[0]["time"] >= 2.0, posts  # not urllib3's 0.05 s backoff
    [job] = world.jobs("quiet")
    assert (job["state"], job["attempts"]) == ("done", 1)


def test_the_secondary_wait_is_a_minute_by_default():
    from service.settings import Settings

    assert Settings.model_fields["codemod_github_secondary_wait"].default == 60.0


FAILING_SMOKE = {
    **BUGGY,
    "tests/fail.py": "raise SystemExit('the smoke test is broken here')\n",
    "pyproject.toml": BUGGY["pyproject.toml"].replace(
        "[tool.codemod.smoke]\n", '[tool.codemod.smoke]\ncommand = "python tests/fail.py"\n'
    )
    + '\n[tool.codemod.github]\nunverified = "skip"\n',
}


def test_unverified_skip_opens_no_pull_request_when_verification_fails(world):
    _, sha = world.make_repo("skipper", FAILING_SMOKE)
    world.deliver("push", world.push_payload("skipper", "0" * 40, sha, added=list(FAILING_SMOKE)))
    world.drain()
    repo = world.gh.repos["acme/skipper"]
    assert repo.pulls == [] and world.bot_branch("skipper") is None
    [job] = world.jobs("skipper")
    assert job["state"] == "done" and job["result"]["rewrites"] == 1
    assert job["result"]["status"] != "proven"
    assert 'unverified = "skip"' in job["result"]["published"]
    [run] = repo.check_runs
    assert (
        run["head_sha"] == sha
        and 'no pull request ([tool.codemod.github] unverified = "skip")' in run["output"]["summary"]
    )


CUDA = {**CLEAN, "pyproject.toml": CLEAN["pyproject.toml"].replace('device = "cpu"', 'device = "cuda"')}


def test_a_cuda_repository_is_handed_to_the_gpu_workers_queue(world):
    _, sha = world.make_repo("ongpu", CUDA)
    [job_id] = world.deliver("push", world.push_payload("ongpu", "0" * 40, sha, added=list(CUDA))).json()["jobs"]
    cpu_log = world.drain()  # a CPU worker: takes it from the webhook's queue, reads the config, hands it on
    job = world.store.job(job_id)
    assert (job.state, job.queue, job.attempts) == ("queued", CUDA_QUEUE, 0), cpu_log[-2000:]
    assert world.gh.repos["acme/ongpu"].check_runs == []  # nothing ran on the CPU worker
    assert 'smoke.device = \\"cuda\\"; queued on codemod-jobs-cuda' in cpu_log
    gpu = world.start_worker("--drain", env={"CODEMOD_QUEUE_NAME": CUDA_QUEUE})
    assert gpu.wait(400) == 0, Path(world.logs[-1]).read_text()[-2000:]
    job = world.store.job(job_id)
    assert (job.state, job.queue, job.attempts) == ("done", CUDA_QUEUE, 1), job.error
    assert job.worker.split(":")[1] == str(gpu.pid)  # taken by the GPU-queue worker
    assert [r["conclusion"] for r in world.gh.repos["acme/ongpu"].check_runs] == ["neutral"]


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_after_the_jobs(world):
    metrics = _samples(world.http.get("/metrics").text)
    assert metrics['codemod_webhook_deliveries_total{event="push",outcome="queued"}'] >= 3
    done = {k: v for k, v in metrics.items() if k.startswith('codemod_job_runs_total{outcome="done"')}
    assert sum(done.values()) >= 3 and 'codemod_job_runs_total{outcome="routed",status=""}' in metrics
    for stage in ("fetch", "codemod", "verification", "github"):
        count = metrics[f'codemod_job_stage_seconds_count{{stage="{stage}"}}']
        assert count >= 1 and metrics[f'codemod_job_stage_seconds_bucket{{le="+Inf",stage="{stage}"}}'] == count
        assert metrics[f'codemod_job_stage_seconds_sum{{stage="{stage}"}}'] > 0
    remaining = metrics[f'codemod_github_rate_limit_remaining{{installation="{world.gh.installation_id}"}}']
    assert 0 < remaining < 5000 and remaining >= 5000 - world.gh.rate_used
    assert metrics['codemod_queue_depth{queue="codemod-jobs"}'] == 0
    assert metrics[f'codemod_queue_depth{{queue="{CUDA_QUEUE}"}}'] == 0
    assert metrics['codemod_jobs{state="done"}'] >= 3


HOSTILE_REPO = "acme/<img src=x onerror=alert(1)>"


def test_the_status_page_in_a_browser(world, tmp_path):
    if headless.CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    hostile = world.store.add_job(
        kind="push",
        repo=HOSTILE_REPO,
        installation_id=1,
        payload={"sha": "'\"><script>document.title='owned'</script>"},
    )
    world.store.claim(hostile, "w", 10, 3)
    world.store.finish(
        hostile,
        "w",
        state="failed",
        stages={"fetch": 0.5},
        error="<i>italic</i> & <script>document.title='owned'</script>",
        pr_url="javascript:alert(1)",
    )
    browser = headless.Browser()
    try:
        browser.goto(world.url + "/")
        browser.wait_for("document.querySelector('#token') !== null")
        browser.evaluate(
            f"document.querySelector('#token').value = {json.dumps(ADMIN)}; "
            "document.querySelector('#sign-in').click(); true"
        )
        browser.wait_for("document.querySelector('#jobs') !== null")
        rows = browser.evaluate(
            "Array.from(document.querySelectorAll('#jobs tbody tr')).map("
            "tr => Array.from(tr.cells).map(td => td.innerText))"
        )
        links = browser.evaluate(
            "Array.from(document.querySelectorAll('#jobs tbody tr')).map(tr => {"
            "const a = tr.querySelector('a'); return a ? a.href : null})"
        )
        injected = browser.evaluate("document.querySelectorAll('#jobs img, #jobs script, #jobs i').length")
        title = browser.evaluate("document.title")
        (tmp_path / "status.png").write_bytes(browser.screenshot())
    finally:
        browser.close()
    shot = (tmp_path / "status.png").read_bytes()
    assert shot.startswith(b"\x89PNG\r\n\x1a\n") and len(shot) > 5000
    assert injected == 0 and title == "torch-codemod: jobs"
    by_repo = {row[1]: (row, link) for row, link in zip(rows, links)}
    row, link = by_repo[HOSTILE_REPO]  # shown as text, not markup
    assert (
        row[4] == "failed (1)" and "<i>italic</i> & <script>document.title='owned'</script>" in row[6] and link is None
    )
    jobs = {j["repo"]: j for j in world.jobs()}
    row, link = by_repo["acme/limited"]
    limited = jobs["acme/limited"]
    assert row[0] == str(limited["id"]) and row[2] == limited["result"]["sha"][:12]
    assert row[4] == "done (1)" and link == limited["pr_url"] and row[7] == f"#{limited['result']['pr']}"
    assert "proven" in row[6] and all(f"{stage} " in row[5] for stage in ("fetch", "codemod", "verification"))
    # without the admin token: the sign-in form, no job
    page = world.http.get("/")
    assert page.status_code == 401 and "acme/limited" not in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # no script may run at all
    assert world.http.get("/", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200


def test_the_logs_of_the_whole_run_are_json_lines_with_ids_and_no_secret(world):
    jobs = {j["id"]: j for j in world.jobs()}
    secrets = [SECRET, ADMIN, world.private_pem.strip(), *world.private_pem.strip().splitlines()[1:-1]]
    secrets += list(world.gh.tokens)
    assert len(world.gh.tokens) >= 4
    entries = []
    for path in world.logs:
        text = Path(path).read_text()
        for secret in secrets:
            assert secret not in text, f"{path} holds a secret"
        for number, line in enumerate(text.splitlines(), 1):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"{path}:{number} is not a JSON object: {line[:300]}")
    assert all(isinstance(e, dict) and {"time", "level", "logger", "message"} <= set(e) for e in entries)
    # every line written between a job's first and last line (by its thread) carries its ids
    current: dict[tuple, int | None] = {}
    seen_jobs = set()
    for entry in entries:
        key = (entry["process"], entry["thread"])
        started = re.match(r"job (\d+): \w+ acme/", entry["message"])
        if started:
            current[key] = int(started.group(1))
        job_id = current.get(key)
        if job_id is not None:
            assert entry.get("job") == job_id, entry
            assert entry.get("delivery") == jobs[job_id]["delivery"], entry
            seen_jobs.add(job_id)
        if re.match(r"job \d+: (done|failed|.*queued (again|on))", entry["message"]):
            current[key] = None
    assert seen_jobs >= {j["id"] for j in jobs.values() if j["repo"].startswith("acme/") and j["delivery"]}
    # a library's own line (PyGithub's retry of the 403) is a job's line too
    assert any(
        e["logger"].startswith("github")
        and e.get("job") == next(j["id"] for j in jobs.values() if j["repo"] == "acme/limited")
        for e in entries
    )
