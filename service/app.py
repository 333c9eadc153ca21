"""The web side: verify, decide, store, enqueue, answer. Nothing here calls GitHub or git.

``POST /webhook`` checks the signature on the raw body before anything is parsed or stored (401
otherwise), deduplicates on ``X-GitHub-Delivery``, and answers 202 once the job is stored and
queued. ``/jobs`` names private repositories: it answers only with the admin token.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from .events import EventError, parse_event, verify_signature
from .queue import JobQueue
from .settings import Settings
from .store import Store
from .triggers import Answer, Ignored, decide


class _JobStates:
    """Jobs by state, read from the store at each scrape (workers run in other processes)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self):
        gauge = GaugeMetricFamily("codemod_jobs", "Jobs in the store by state", labels=["state"])
        for state, count in sorted(self.store.count_by_state().items()):
            gauge.add_metric([state], count)
        yield gauge


class _GroupCommit:
    """Deliveries that arrive together are stored in one transaction, and each is acknowledged
    once that commit is done: under a burst, one commit serves them all. The queue is told
    afterwards, off the request path (the store is the record: a worker's sweep also enqueues
    queued jobs whose queue entry was lost)."""

    def __init__(self, store: Store, queue: JobQueue) -> None:
        self.store, self.queue = store, queue
        self.pending: list[tuple[tuple, asyncio.Future]] = []
        self.flushing = False
        self.store_thread = ThreadPoolExecutor(1, thread_name_prefix="store")
        self.queue_thread = ThreadPoolExecutor(1, thread_name_prefix="enqueue")

    async def submit(self, delivery: str, event: str, jobs: list[dict], reason: str = "") -> list[int] | None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append(((delivery, event, jobs, reason), future))
        if not self.flushing:
            self.flushing = True
            loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    results = await loop.run_in_executor(self.store_thread, self.store.record_deliveries,
                                                         [item for item, _ in batch])
                except Exception as exc:  # the store is down: every request of the batch fails (GitHub shows it)
                    for _, future in batch:
                        future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results):
                    future.set_result(result)
                ids = [i for result in results if result for i in result]
                if ids:
                    self.queue_thread.submit(self._enqueue, ids)
        finally:
            self.flushing = False

    def _enqueue(self, ids: list[int]) -> None:
        try:
            self.queue.put(*ids)
        except Exception as exc:  # the workers' sweep enqueues them later
            logging.getLogger("codemod.app").warning("jobs %s: could not enqueue (%s)", ids, exc)


def create_app(settings: Settings, *, store: Store | None = None, queue: JobQueue | None = None,
               app_slug: str | None = None) -> FastAPI:
    store = store or Store(settings.database_url)
    queue = queue or JobQueue(settings.queue_url)
    slug = app_slug or settings.codemod_app_slug
    if slug is None:
        from .github import GitHubApp

        slug = GitHubApp(settings).slug()
    secret = settings.github_webhook_secret.get_secret_value().encode()
    admin = settings.codemod_admin_token.get_secret_value() if settings.codemod_admin_token else None

    registry = CollectorRegistry()
    deliveries = Counter("codemod_webhook_deliveries", "Webhook deliveries by event and outcome",
                         ["event", "outcome"], registry=registry)
    latency = Histogram("codemod_webhook_seconds", "Time to acknowledge a delivery", registry=registry,
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
    registry.register(_JobStates(store))

    commits = _GroupCommit(store, queue)
    app = FastAPI(title="torch-codemod", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.queue, app.state.slug = store, queue, slug

    @app.post("/webhook")
    async def webhook(request: Request):
        start = time.perf_counter()
        body = await request.body()
        name = request.headers.get("x-github-event", "")
        if not verify_signature(secret, body, request.headers.get("x-hub-signature-256")):
            deliveries.labels(name or "-", "bad signature").inc()
            return JSONResponse({"error": "bad or missing X-Hub-Signature-256"}, status_code=401)
        delivery = request.headers.get("x-github-delivery")
        if not delivery:
            deliveries.labels(name or "-", "no delivery id").inc()
            return JSONResponse({"error": "missing X-GitHub-Delivery"}, status_code=400)
        try:
            decision = decide(parse_event(name, body), app_slug=slug, branch_prefix=settings.codemod_branch_prefix)
        except EventError as exc:
            decision = Ignored(f"malformed payload: {exc}")
        if isinstance(decision, (Answer, Ignored)):
            reason = decision.text if isinstance(decision, Answer) else f"ignored: {decision.reason}"
            stored = await commits.submit(delivery, name, [], reason)
            outcome = "answered" if isinstance(decision, Answer) else "ignored"
            reply = {"answer": decision.text} if isinstance(decision, Answer) else {"ignored": decision.reason}
            status = 200 if isinstance(decision, Answer) else 202
        else:
            stored = await commits.submit(delivery, name, [
                {"kind": j.kind, "repo": j.repo, "installation_id": j.installation_id, "payload": j.to_payload()}
                for j in decision])
            outcome, reply, status = "queued", {"jobs": stored}, 202
        if stored is None:
            outcome, reply, status = "duplicate", {"duplicate": delivery}, 200
        deliveries.labels(name, outcome).inc()
        latency.observe(time.perf_counter() - start)
        return JSONResponse(reply, status_code=status)

    @app.get("/healthz")
    def healthz():
        store.count_by_state()  # the store answers
        return {"status": "ok", "queued": queue.size()}

    def _admin(request: Request) -> JSONResponse | None:
        if admin is None:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {admin}".encode()):
            return JSONResponse({"error": "Authorization: Bearer <CODEMOD_ADMIN_TOKEN> required"}, status_code=401)
        return None

    @app.get("/jobs")
    def jobs(request: Request, limit: int = 100, repo: str | None = None):
        return _admin(request) or {"jobs": [j.to_json() for j in store.jobs(min(limit, 1000), repo)]}

    @app.get("/jobs/{job_id}")
    def job(job_id: int, request: Request):
        denied = _admin(request)
        if denied:
            return denied
        found = store.job(job_id)
        if found is None:
            return JSONResponse({"error": f"no job {job_id}"}, status_code=404)
        return found.to_json()

    @app.get("/metrics")
    def metrics():
        return PlainTextResponse(generate_latest(registry).decode(), media_type="text/plain; version=0.0.4")

    return app
