"""The job store: deliveries, jobs with leases, per-repository state, and the engine's result
cache. SQLAlchemy 2 over SQLite (the embedded default) or PostgreSQL; the schema is Alembic's
(``service/migrations``), upgraded at start, so a new release upgrades an existing data dir.

A job is claimed with a lease (``lease_until``); a live worker renews it. A worker that dies
(SIGKILL included) stops renewing, and :meth:`Store.requeue_expired` hands the job back to the
queue, once per expiry, until ``max_attempts`` runs were started.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (
    JSON,
    Float,
    Integer,
    String,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


DEFAULT_QUEUE = "codemod-jobs"
# Histogram buckets (seconds) of the job stages in /metrics: a GitHub call to a long smoke test.
STAGE_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0)


class Base(DeclarativeBase):
    pass


class Delivery(Base):
    __tablename__ = "deliveries"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)  # X-GitHub-Delivery
    event: Mapped[str] = mapped_column(String(60))
    received_at: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(Text)  # "job 12, 13" or the reason it was ignored


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str | None] = mapped_column(String(80), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    repo: Mapped[str] = mapped_column(String(200), index=True)
    installation_id: Mapped[int] = mapped_column(Integer)
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(20), index=True)  # queued running done failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[float | None] = mapped_column(Float)
    worker: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    stages: Mapped[dict] = mapped_column(JSON, default=dict)  # stage -> seconds
    result: Mapped[dict | None] = mapped_column(JSON)
    pr_url: Mapped[str | None] = mapped_column(String(400))
    error: Mapped[str | None] = mapped_column(Text)
    queue: Mapped[str] = mapped_column(String(100), default=DEFAULT_QUEUE, index=True)  # the queue it waits on

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "delivery": self.delivery_id,
            "kind": self.kind,
            "repo": self.repo,
            "installation": self.installation_id,
            "state": self.state,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "stages": self.stages or {},
            "result": self.result,
            "pr_url": self.pr_url,
            "error": self.error,
            "request": self.payload,
            "queue": self.queue,
        }


class RepoState(Base):
    __tablename__ = "repo_state"
    repo: Mapped[str] = mapped_column(String(200), primary_key=True)
    ignored_rules: Mapped[list] = mapped_column(JSON, default=list)
    pushed: Mapped[dict] = mapped_column(JSON, default=dict)  # branch -> sha the App last pushed
    proposed: Mapped[dict] = mapped_column(JSON, default=dict)  # PR number -> fingerprints it proposed
    stopped: Mapped[dict] = mapped_column(JSON, default=dict)  # PR number -> a person pushed to its branch
    busy_until: Mapped[float | None] = mapped_column(Float)  # one job per repository at a time


class Rejected(Base):
    __tablename__ = "rejected"
    repo: Mapped[str] = mapped_column(String(200), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)


class CachedResult(Base):
    __tablename__ = "result_cache"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[dict] = mapped_column(JSON)
    used_at: Mapped[float] = mapped_column(Float)


class GitHubWrite(Base):
    """One content-creating request to GitHub: the budget (GitHub allows 80 a minute) is shared by
    every worker process of the installation, on any machine."""

    __tablename__ = "github_writes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    installation: Mapped[int] = mapped_column(Integer, index=True)
    at: Mapped[float] = mapped_column(Float, index=True)


class Metric(Base):
    """A counter or gauge that every worker process adds to (``/metrics`` reads them back)."""

    __tablename__ = "metrics"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    labels: Mapped[str] = mapped_column(String(400), primary_key=True)  # JSON, sorted keys
    value: Mapped[float] = mapped_column(Float)


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema (Alembic upgrade head)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


def make_engine(url: str):
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record):  # WAL: readers never block the writer
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class DuplicateDelivery(Exception):
    pass


class Store:
    def __init__(self, url: str, *, migrate_schema: bool = True) -> None:
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        if migrate_schema:
            migrate(url)
        self.engine = make_engine(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._session.begin() as s:
            yield s

    # -- deliveries and jobs -------------------------------------------------------------------

    def record_delivery(self, delivery_id: str, event: str, jobs: list[dict[str, Any]], reason: str = "") -> list[int]:
        """Store a delivery and its jobs in one transaction; DuplicateDelivery if its id was seen."""
        now = time.time()
        try:
            with self.session() as s:
                s.add(Delivery(id=delivery_id, event=event, received_at=now, outcome=reason or "jobs"))
                s.flush()
                rows = [
                    Job(delivery_id=delivery_id, state="queued", created_at=now, attempts=0, stages={}, **j)
                    for j in jobs
                ]
                s.add_all(rows)
                s.flush()
                ids = [r.id for r in rows]
                if ids:
                    s.get(Delivery, delivery_id).outcome = "job " + ", ".join(map(str, ids))
                return ids
        except IntegrityError:
            raise DuplicateDelivery(delivery_id) from None

    def record_deliveries(self, batch: list[tuple[str, str, list[dict[str, Any]], str]]) -> list[list[int] | None]:
        """Many deliveries in one transaction (the webhook handler's group commit; SQLAlchemy Core
        bulk inserts, a tenth of the ORM's cost): for each, its job ids, or None if the delivery
        id was seen before."""
        now = time.time()
        try:
            with self.engine.begin() as conn:
                seen = set(conn.scalars(select(Delivery.id).where(Delivery.id.in_([d for d, _, _, _ in batch]))))
                out: list[list[int] | None] = []
                deliveries, jobs = [], []
                for delivery_id, event_name, job_list, reason in batch:
                    if delivery_id in seen:
                        out.append(None)
                        continue
                    seen.add(delivery_id)
                    out.append([])
                    deliveries.append(
                        {"id": delivery_id, "event": event_name, "received_at": now, "outcome": reason or "jobs"}
                    )
                    jobs += [
                        {
                            "delivery_id": delivery_id,
                            "state": "queued",
                            "created_at": now,
                            "attempts": 0,
                            "stages": {},
                            **j,
                        }
                        for j in job_list
                    ]
                if deliveries:
                    conn.execute(insert(Delivery), deliveries)
                by_delivery: dict[str, list[int]] = {}
                if jobs:
                    rows = conn.execute(
                        insert(Job).returning(Job.id, Job.delivery_id, sort_by_parameter_order=True), jobs
                    )
                    for job_id, delivery_id in rows:
                        by_delivery.setdefault(delivery_id, []).append(job_id)
                    conn.execute(
                        update(Delivery).where(Delivery.id == bindparam("did")).values(outcome=bindparam("text")),
                        [{"did": d, "text": "job " + ", ".join(map(str, ids))} for d, ids in by_delivery.items()],
                    )
                for i, (delivery_id, _, _, _) in enumerate(batch):
                    if out[i] is not None:
                        out[i] = by_delivery.get(delivery_id, [])
                return out
        except IntegrityError:  # another replica stored one of them meanwhile: one by one
            out = []
            for delivery_id, event_name, job_list, reason in batch:
                try:
                    out.append(self.record_delivery(delivery_id, event_name, job_list, reason))
                except DuplicateDelivery:
                    out.append(None)
            return out

    def stale_queued(self, older_than: float, queue: str | None = None) -> list[int]:
        """Queued jobs nobody took for ``older_than`` seconds (their queue entry may be lost)."""
        with self.session() as s:
            q = select(Job.id).where(Job.state == "queued", Job.created_at < time.time() - older_than)
            return list(s.scalars(_on(q, queue).order_by(Job.id)))

    def add_job(self, **fields) -> int:
        with self.session() as s:
            job = Job(state="queued", created_at=time.time(), attempts=0, stages={}, **fields)
            s.add(job)
            s.flush()
            return job.id

    def job(self, job_id: int) -> Job | None:
        with self.session() as s:
            return s.get(Job, job_id)

    def jobs(self, limit: int = 100, repo: str | None = None) -> list[Job]:
        with self.session() as s:
            q = select(Job).order_by(Job.id.desc()).limit(limit)
            if repo:
                q = q.where(Job.repo == repo)
            return list(s.scalars(q))

    def deliveries(self) -> list[Delivery]:
        with self.session() as s:
            return list(s.scalars(select(Delivery).order_by(Delivery.received_at)))

    def count_by_state(self, queue: str | None = None) -> dict[str, int]:
        with self.session() as s:
            return dict(s.execute(_on(select(Job.state, func.count()), queue).group_by(Job.state)).all())

    def claim(self, job_id: int, worker: str, lease: float, max_attempts: int) -> Job | None:
        """Take the job if it is queued, or running under an expired lease; None if another
        worker holds it or it is finished."""
        now = time.time()
        with self.session() as s:
            done = s.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    Job.attempts < max_attempts,
                    (Job.state == "queued") | ((Job.state == "running") & (Job.lease_until < now)),
                )
                .values(
                    state="running",
                    attempts=Job.attempts + 1,
                    lease_until=now + lease,
                    worker=worker,
                    started_at=func.coalesce(Job.started_at, now),
                )
            )
            if done.rowcount != 1:
                return None
            return s.get(Job, job_id)

    def renew(self, job_id: int, worker: str, lease: float) -> bool:
        with self.session() as s:
            done = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.worker == worker, Job.state == "running")
                .values(lease_until=time.time() + lease)
            )
            return done.rowcount == 1

    def finish(
        self,
        job_id: int,
        worker: str,
        *,
        state: str,
        stages: dict,
        result: dict | None = None,
        pr_url: str | None = None,
        error: str | None = None,
    ) -> None:
        with self.session() as s:
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.worker == worker)
                .values(
                    state=state,
                    stages=stages,
                    result=result,
                    pr_url=pr_url,
                    error=error,
                    finished_at=time.time(),
                    lease_until=None,
                )
            )

    def release(self, job_id: int, worker: str, *, error: str, stages: dict, count_attempt: bool = True) -> None:
        """Give a job back to the queue (a transient failure): it runs again later. A job that
        only waited for its repository does not count that as an attempt."""
        values = {"state": "queued", "lease_until": None, "error": error, "stages": stages}
        if not count_attempt:
            values["attempts"] = Job.attempts - 1
        with self.session() as s:
            s.execute(update(Job).where(Job.id == job_id, Job.worker == worker).values(**values))

    def requeue_expired(self, max_attempts: int, queue: str | None = None) -> list[int]:
        """Jobs whose worker stopped renewing: back to ``queued`` (or ``failed`` after
        ``max_attempts`` runs). Returns the ids to enqueue again; each expiry is handed out once."""
        now = time.time()
        out = []
        with self.session() as s:
            expired = list(s.scalars(_on(select(Job.id).where(Job.state == "running", Job.lease_until < now), queue)))
        for job_id in expired:
            with self.session() as s:
                job = s.get(Job, job_id)
                if job is None or job.state != "running" or (job.lease_until or 0) >= now:
                    continue
                target = "queued" if job.attempts < max_attempts else "failed"
                done = s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.state == "running", Job.lease_until < now)
                    .values(
                        state=target,
                        lease_until=None,
                        error=f"the worker stopped during attempt {job.attempts}"
                        + ("" if target == "queued" else "; no attempts left"),
                    )
                )
                if done.rowcount == 1 and target == "queued":
                    out.append(job_id)
        return out

    def queued_ids(self, queue: str | None = None) -> list[int]:
        with self.session() as s:
            return list(s.scalars(_on(select(Job.id).where(Job.state == "queued"), queue).order_by(Job.id)))

    def route(self, job_id: int, worker: str, *, queue: str, stages: dict, note: str) -> None:
        """Hand a job to another queue (a CUDA repository found by a CPU worker): queued there,
        and the run that found it out is not counted as an attempt."""
        with self.session() as s:
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.worker == worker)
                .values(
                    state="queued",
                    queue=queue,
                    lease_until=None,
                    attempts=Job.attempts - 1,
                    stages=stages,
                    result={"routed": note},
                )
            )

    # -- metrics, shared by every process --------------------------------------------------------

    def record_job_metrics(
        self, *, outcome: str, status: str, stages: dict[str, float], rate_remaining: tuple[int, int] | None
    ) -> None:
        adds: dict[tuple[str, str], float] = {("jobs_total", _labels(outcome=outcome, status=status)): 1}
        for stage, seconds in stages.items():
            adds[("stage_seconds_sum", _labels(stage=stage))] = seconds
            adds[("stage_seconds_count", _labels(stage=stage))] = 1
            for le in STAGE_BUCKETS:
                if seconds <= le:
                    adds[("stage_seconds_bucket", _labels(stage=stage, le=repr(le)))] = 1
        with self.session() as s:
            for (name, labels), value in adds.items():
                _upsert(s, name, labels, value, add=True)
            if rate_remaining is not None:
                installation, remaining = rate_remaining
                _upsert(s, "github_rate_limit_remaining", _labels(installation=str(installation)), remaining, add=False)

    def take_write(self, installation: int, per_minute: int, now: float | None = None) -> float:
        """Count one content-creating request of ``installation`` if fewer than ``per_minute`` were
        made in the last 60 s by any worker: 0.0. Otherwise nothing is counted and the answer is the
        seconds until the oldest of them leaves the window. One statement decides (on PostgreSQL
        after a transaction lock per installation; SQLite holds its write lock from the first statement)."""
        now = time.time() if now is None else now
        with self.session() as s:
            if s.get_bind().dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": 0x636F6D6F00000000 + installation})
            mine = GitHubWrite.installation == installation
            s.execute(delete(GitHubWrite).where(mine, GitHubWrite.at <= now - 60))  # out of every window
            count = select(func.count()).where(mine).scalar_subquery()
            taken = s.execute(
                insert(GitHubWrite.__table__)
                .from_select(
                    ["installation", "at"],
                    select(bindparam("i", installation), bindparam("now", now)).where(count < per_minute),
                )
                .returning(GitHubWrite.__table__.c.id)
            ).first()
            if taken is not None:
                return 0.0
            oldest = s.scalar(select(func.min(GitHubWrite.at)).where(mine))
            return max(0.01, (oldest or now) + 60 - now)

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        with self.session() as s:
            return [
                (m.name, json.loads(m.labels), m.value)
                for m in s.scalars(select(Metric).order_by(Metric.name, Metric.labels))
            ]

    # -- per-repository state ------------------------------------------------------------------

    def repo_state(self, repo: str) -> RepoState:
        with self.session() as s:
            state = s.get(RepoState, repo)
            if state is None:
                state = RepoState(repo=repo, ignored_rules=[], pushed={}, proposed={}, stopped={})
                s.add(state)
                try:
                    s.flush()
                except IntegrityError:
                    s.rollback()
                    state = s.get(RepoState, repo)
            return state

    def update_repo(self, repo: str, **values) -> None:
        self.repo_state(repo)
        with self.session() as s:
            s.execute(update(RepoState).where(RepoState.repo == repo).values(**values))

    def lock_repo(self, repo: str, seconds: float) -> bool:
        """One job per repository at a time (two jobs would race on its branch)."""
        self.repo_state(repo)
        now = time.time()
        with self.session() as s:
            done = s.execute(
                update(RepoState)
                .where(RepoState.repo == repo, (RepoState.busy_until.is_(None)) | (RepoState.busy_until < now))
                .values(busy_until=now + seconds)
            )
            return done.rowcount == 1

    def unlock_repo(self, repo: str) -> None:
        with self.session() as s:
            s.execute(update(RepoState).where(RepoState.repo == repo).values(busy_until=None))

    def reject(self, repo: str, fingerprints: list[str]) -> None:
        if not fingerprints:
            return
        with self.session() as s:  # two workers may reject the same fingerprint at once
            s.execute(
                _insert(s, Rejected)
                .values([{"repo": repo, "fingerprint": f} for f in sorted(set(fingerprints))])
                .on_conflict_do_nothing()
            )

    def rejected(self, repo: str) -> set[str]:
        with self.session() as s:
            return set(s.scalars(select(Rejected.fingerprint).where(Rejected.repo == repo)))

    # -- the engine's per-blob result cache ----------------------------------------------------

    def cache_get_many(self, keys: list[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        with self.session() as s:
            for i in range(0, len(keys), 500):
                for row in s.scalars(select(CachedResult).where(CachedResult.key.in_(keys[i : i + 500]))):
                    out[row.key] = row.value
        return out

    def cache_put_many(self, items: dict[str, dict]) -> None:
        if not items:
            return
        now = time.time()
        rows = [{"key": k, "value": v, "used_at": now} for k, v in items.items()]
        with self.session() as s:  # workers analysing the same blobs insert the same keys at once
            for i in range(0, len(rows), 500):
                s.execute(_insert(s, CachedResult).values(rows[i : i + 500]).on_conflict_do_nothing())


class ResultCache:
    """The engine's cache interface (``get_many``/``put_many``) over the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        return self.store.cache_get_many(keys)

    def put_many(self, items: dict[str, dict]) -> None:
        self.store.cache_put_many(items)


def _on(query, queue: str | None):
    return query if queue is None else query.where(Job.queue == queue)


def _labels(**labels: str) -> str:
    return json.dumps(labels, sort_keys=True)


def _insert(session: Session, table):  # type: ignore[no-untyped-def]
    """An INSERT that can say ON CONFLICT (SQLite and PostgreSQL both speak it)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def _upsert(session: Session, name: str, labels: str, value: float, *, add: bool) -> None:
    """Add ``value`` to the metric (or set it), creating it at first use; one statement, so two
    workers adding at once both count (SQLite and PostgreSQL both speak ON CONFLICT)."""
    stmt = _insert(session, Metric).values(name=name, labels=labels, value=value)
    new = Metric.value + stmt.excluded.value if add else stmt.excluded.value
    session.execute(stmt.on_conflict_do_update(index_elements=[Metric.name, Metric.labels], set_={"value": new}))


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
