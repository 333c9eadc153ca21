"""The job store (SQLAlchemy + Alembic on a real SQLite file) and the queue: deliveries are
deduplicated, a job is held by one worker under a lease, and a job whose worker died runs again,
once per expiry, up to the attempt limit."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from e2e import servers
from service.queue import JobQueue, QueueError
from service.store import DuplicateDelivery, Store

# the newest migration (each file is named for its revision)
_HEAD = max(p.name.split("_")[0] for p in (Path(__file__).parent.parent / "service/migrations/versions").glob("0*.py"))
JOB = {"kind": "push", "repo": "acme/app", "installation_id": 1, "payload": {"sha": "abc"}}


@pytest.fixture
def store(tmp_path):
    return Store(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")


def test_a_delivery_is_stored_once_with_its_jobs(store):
    [job_id] = store.record_delivery("d-1", "push", [JOB])
    with pytest.raises(DuplicateDelivery):
        store.record_delivery("d-1", "push", [JOB])
    assert [j.id for j in store.jobs()] == [job_id]
    assert store.deliveries()[0].outcome == f"job {job_id}"
    store.record_delivery("d-2", "push", [], "ignored: tag")
    assert store.deliveries()[1].outcome == "ignored: tag"


def test_one_worker_holds_a_job_and_a_dead_workers_job_runs_again_once(store):
    [job_id] = store.record_delivery("d-1", "push", [JOB])
    assert store.claim(job_id, "w1", lease=0.3, max_attempts=2).attempts == 1
    assert store.claim(job_id, "w2", lease=0.3, max_attempts=2) is None  # held
    assert store.requeue_expired(max_attempts=2) == []  # lease still valid
    time.sleep(0.4)  # w1 died: no renewal
    assert store.requeue_expired(max_attempts=2) == [job_id]
    assert store.requeue_expired(max_attempts=2) == []  # handed out once
    job = store.claim(job_id, "w2", lease=0.3, max_attempts=2)
    assert (job.attempts, job.state, job.error) == (2, "running", "the worker stopped during attempt 1")
    assert not store.renew(job_id, "w1", 10)  # the dead worker's lease is gone
    time.sleep(0.4)
    assert store.requeue_expired(max_attempts=2) == []
    failed = store.job(job_id)
    assert failed.state == "failed" and "no attempts left" in failed.error


def test_a_finished_job_is_not_run_again(store):
    [job_id] = store.record_delivery("d-1", "push", [JOB])
    store.claim(job_id, "w1", lease=10, max_attempts=3)
    store.finish(job_id, "w1", state="done", stages={"fetch": 0.1}, result={"status": "clean"})
    assert store.claim(job_id, "w2", lease=10, max_attempts=3) is None
    assert store.job(job_id).to_json()["stages"] == {"fetch": 0.1}


def test_the_schema_is_alembics_and_an_existing_data_dir_is_upgraded_in_place(tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    Store(url).record_delivery("d-1", "push", [JOB])
    again = Store(url)  # a restart (or a new release) runs the migrations again: nothing lost
    assert len(again.jobs()) == 1
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        assert db.execute("select version_num from alembic_version").fetchall() == [(_HEAD,)]


def test_a_data_dir_of_the_first_release_is_upgraded_and_its_jobs_kept(tmp_path):
    from alembic import command
    from alembic.config import Config

    import service.store

    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(service.store.__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0001")  # the first release's schema: no queue column, no metrics table
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        db.execute(
            "insert into jobs (kind, repo, installation_id, payload, state, attempts, created_at, stages) "
            "values ('push', 'acme/old', 1, '{}', 'queued', 0, 1.0, '{}')"
        )
    store = Store(url)
    [job] = store.jobs()
    assert (job.repo, job.state, job.queue) == ("acme/old", "queued", "codemod-jobs")
    store.record_job_metrics(outcome="done", status="clean", stages={"fetch": 0.2}, rate_remaining=(1, 4999))
    store.record_job_metrics(outcome="done", status="clean", stages={"fetch": 2.0}, rate_remaining=(1, 4990))
    metrics = {(name, tuple(sorted(labels.items()))): value for name, labels, value in store.metrics()}
    assert metrics[("jobs_total", (("outcome", "done"), ("status", "clean")))] == 2
    assert metrics[("stage_seconds_count", (("stage", "fetch"),))] == 2
    assert metrics[("stage_seconds_bucket", (("le", "0.5"), ("stage", "fetch")))] == 1
    assert metrics[("stage_seconds_bucket", (("le", "2.5"), ("stage", "fetch")))] == 2
    assert metrics[("github_rate_limit_remaining", (("installation", "1"),))] == 4990  # the last answer, not a sum


def test_one_job_per_repository_at_a_time(store):
    assert store.lock_repo("acme/app", 0.3)
    assert not store.lock_repo("acme/app", 0.3)
    assert store.lock_repo("acme/other", 0.3)
    time.sleep(0.35)
    assert store.lock_repo("acme/app", 0.3)  # a dead worker's lock expires too


def _queue_roundtrip(queue: JobQueue) -> None:
    queue.flush()
    for job_id in (3, 1, 2):
        queue.put(job_id)
    queue.put(7, 8, 9)  # a burst: one message, taken apart by the workers
    assert queue.size() == 4
    assert [queue.get(1) for _ in range(6)] == [3, 1, 2, 7, 8, 9]
    start = time.monotonic()
    assert queue.get(0.3) is None and time.monotonic() - start < 2


def test_the_sqlite_queue_is_fifo(tmp_path):
    _queue_roundtrip(JobQueue(f"sqlite:///{tmp_path / 'queue.sqlite3'}"))


def test_the_redis_queue_is_fifo(tmp_path):
    reason = servers.missing_redis()
    if reason:
        pytest.skip(reason)
    proc, url = servers.start_redis(tmp_path)
    try:
        _queue_roundtrip(JobQueue(url))
    finally:
        servers.stop(proc)


def test_a_bad_queue_url_names_the_variable():
    with pytest.raises(QueueError, match="CODEMOD_QUEUE_URL: unsupported scheme 'amqp'"):
        JobQueue("amqp://localhost")


def test_two_workers_caching_and_rejecting_the_same_keys_at_once_both_succeed():
    """Workers analysing the same blobs (forks, vendored files) put the same cache keys at the same
    time. A read-then-insert lost that race on PostgreSQL (UniqueViolation, the job failed): here
    another transaction holds the key uncommitted while the store inserts it."""
    import shutil
    import threading

    reason = servers.missing_postgres()
    if reason:
        pytest.skip(reason)
    from sqlalchemy import text

    proc, url, pg_dir = servers.start_postgres()
    try:
        store, other = Store(url), Store(url)
        rows = [
            (
                "result_cache",
                "INSERT INTO result_cache (key, value, used_at) VALUES ('k1', '{\"n\": 0}', 0)",
                lambda: store.cache_put_many({"k1": {"n": 1}, "k2": {"n": 2}}),
            ),
            (
                "rejected",
                "INSERT INTO rejected (repo, fingerprint) VALUES ('acme/app', 'f1')",
                lambda: store.reject("acme/app", ["f1", "f2"]),
            ),
        ]
        for table, insert, call in rows:
            errors: list[BaseException] = []

            def run(call=call, errors=errors):
                try:
                    call()
                except BaseException as exc:  # noqa: BLE001 (reported below)
                    errors.append(exc)

            with other.engine.connect() as conn:
                conn.execute(text(insert))  # uncommitted: the store cannot see it yet
                worker = threading.Thread(target=run)
                worker.start()
                worker.join(1.0)  # the store's insert waits on the key's lock
                conn.commit()
            worker.join(30)
            assert not worker.is_alive() and errors == [], (table, errors)
        assert store.cache_get_many(["k1", "k2"]) == {"k1": {"n": 0}, "k2": {"n": 2}}  # the first write stays
        assert store.rejected("acme/app") == {"f1", "f2"}
    finally:
        servers.stop(proc)
        shutil.rmtree(pg_dir, ignore_errors=True)


def _writers_race(url: str) -> None:
    """Four worker processes' stores take writes for one installation at the same instant: exactly
    the budget is granted, and the others are told to wait until the first leaves the window."""
    import threading

    stores = [Store(url) for _ in range(4)]
    granted: list[float] = []
    start = threading.Barrier(len(stores))

    def worker(store: Store) -> None:
        start.wait()
        for _ in range(5):
            granted.append(store.take_write(7, per_minute=12, now=1000.0))

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(granted).count(0.0) == 12 and len(granted) == 20
    assert set(granted) - {0.0} == {60.0}  # the first write leaves at 1060
    assert stores[0].take_write(8, per_minute=12, now=1000.0) == 0.0  # another installation's own budget
    assert stores[0].take_write(7, per_minute=12, now=1059.0) == 1.0
    assert stores[0].take_write(7, per_minute=12, now=1060.5) == 0.0  # the window moved on


def test_the_github_write_budget_is_shared_by_every_worker_on_sqlite(tmp_path):
    _writers_race(f"sqlite:///{tmp_path / 'jobs.sqlite3'}")


def test_the_github_write_budget_is_shared_by_every_worker_on_postgresql():
    import shutil

    reason = servers.missing_postgres()
    if reason:
        pytest.skip(reason)
    proc, url, pg_dir = servers.start_postgres()
    try:
        _writers_race(url)
    finally:
        servers.stop(proc)
        shutil.rmtree(pg_dir, ignore_errors=True)
