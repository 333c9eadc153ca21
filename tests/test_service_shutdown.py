"""Graceful shutdown: SIGTERM to ``codemod worker`` while it runs a job. It takes no new job,
finishes the running one (the PR is opened, the job is done after one attempt) and exits 0; the
job queued behind it stays queued for the next worker."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from e2e.world import BUGGY, World


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.close()


def test_sigterm_finishes_the_running_job_and_takes_no_other(world):
    _, first = world.make_repo("term1", BUGGY)
    _, second = world.make_repo("term2", BUGGY)
    [job1] = world.deliver("push", world.push_payload("term1", "0" * 40, first, added=list(BUGGY))).json()["jobs"]
    worker = world.start_worker()
    try:
        deadline = time.monotonic() + 120
        while world.store.job(job1).state != "running":
            assert time.monotonic() < deadline and worker.poll() is None, Path(world.logs[-1]).read_text()[-2000:]
            time.sleep(0.1)
        # a second job arrives while the first runs; then the operator stops the worker
        [job2] = world.deliver("push", world.push_payload("term2", "0" * 40, second, added=list(BUGGY))).json()["jobs"]
        worker.send_signal(signal.SIGTERM)
        assert world.store.job(job1).state == "running"  # the signal came mid-job
        assert worker.wait(300) == 0, Path(world.logs[-1]).read_text()[-2000:]
    finally:
        if worker.poll() is None:
            worker.kill()
    done = world.store.job(job1)
    assert (done.state, done.attempts) == ("done", 1), done.error
    assert len(world.gh.open_pulls("acme/term1")) == 1
    waiting = world.store.job(job2)
    assert (waiting.state, waiting.attempts) == ("queued", 0)
    assert world.gh.open_pulls("acme/term2") == []
