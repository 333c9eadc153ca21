"""Scale-out: two ``codemod worker`` processes on one queue, on redis-server + PostgreSQL (what the
compose file runs): every job runs exactly once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from e2e import servers
from e2e.world import CLEAN, World

REPOS = 8


@pytest.fixture
def world(tmp_path):
    reason = servers.missing_redis() or servers.missing_postgres()
    if reason:
        pytest.skip(reason)
    redis, queue_url = servers.start_redis(tmp_path / "redis")
    postgres, database_url, pg_dir = servers.start_postgres()
    # a lease long enough that a heartbeat starved on a loaded 2-core machine does not hand a running
    # job to the other worker (the short-lease takeover has its own test in test_service_e2e.py)
    w = World(tmp_path, queue_url=queue_url, database_url=database_url, lease_seconds=30)
    yield w
    w.close()
    for proc in (redis, postgres):
        servers.stop(proc)
    shutil.rmtree(pg_dir, ignore_errors=True)


def test_two_workers_one_queue_each_job_runs_once(world):
    names = [f"scale{i}" for i in range(REPOS)]
    for name in names:
        _, sha = world.make_repo(name, CLEAN)
        reply = world.deliver("push", world.push_payload(name, "0" * 40, sha, added=list(CLEAN)))
        assert reply.status_code == 202, reply.text
    workers = [world.start_worker("--drain") for _ in range(2)]
    for proc in workers:
        proc.wait(600)
    logs = "".join(Path(p).read_text() for p in world.logs)
    assert all(proc.returncode == 0 for proc in workers), logs[-3000:]

    jobs = [job for job in world.store.jobs(limit=1000) if job.repo.startswith("acme/scale")]
    assert sorted(job.repo for job in jobs) == sorted(f"acme/{n}" for n in names)
    failed = [(j.repo, j.state, j.error) for j in jobs if j.state != "done"]
    assert not failed, (failed, logs[-3000:])
    assert [job.attempts for job in jobs] == [1] * REPOS
    # the queue handed jobs to both processes (the worker id is host:pid:thread)
    assert len({job.worker.rsplit(":", 1)[0] for job in jobs}) == 2
    # and GitHub saw each job's effect once: one check run per pushed commit
    for name in names:
        runs = world.gh.repos[f"acme/{name}"].check_runs
        assert len(runs) == 1, (name, runs)
