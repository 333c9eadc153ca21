"""The web side: verify, decide, store, enqueue, answer. Nothing here calls GitHub or git.

``POST /webhook`` checks the signature on the raw body before anything is parsed or stored (401
otherwise), deduplicates on ``X-GitHub-Delivery``, and answers 202 once the job is stored and
queued. ``/jobs`` and the status page ``/`` name private repositories: they answer only with the
admin token (404 when none is set). ``/metrics`` reads what the workers did from the shared store.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from . import logs, status_page
from .events import EventError, parse_event, verify_signature
from .queue import JobQueue
from .settings import Settings
from .store import STAGE_BUCKETS, Store
from .triggers import Answer, Ignored, decide


log = logging.getLogger("codemod.app")


class _StoreMetrics:
    """What the workers did, read from the shared store at each scrape (workers run in other
    processes, on other machines): jobs by state, job runs by outcome, the time of each stage,
    GitHub's rate limit as last answered, and the depth of each queue."""

    def __init__(self, store: Store, queues: dict[str, JobQueue]) -> None:
        self.store, self.queues = store, queues

    def collect(self):
        gauge = GaugeMetricFamily("codemod_jobs", "Jobs in the store by state", labels=["state"])
        for state, count in sorted(self.store.count_by_state().items()):
            gauge.add_metric([state], count)
        yield gauge
        depth = GaugeMetricFamily("codemod_queue_depth", "Messages waiting on each queue", labels=["queue"])
        for name, queue in self.queues.items():
            depth.add_metric([name], queue.size())
        yield depth
        runs = CounterMetricFamily(
            "codemod_job_runs",
            "Job runs by outcome (done, failed, retried, routed) and result status",
            labels=["outcome", "status"],
        )
        rate = GaugeMetricFamily(
            "codemod_github_rate_limit_remaining",
            "x-ratelimit-remaining of GitHub's last answer to a job, per installation",
            labels=["installation"],
        )
        buckets: dict[str, list[tuple[str, float]]] = {}
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        for name, labels, value in self.store.metrics():
            if name == "jobs_total":
                runs.add_metric([labels["outcome"], labels["status"]], value)
            elif name == "github_rate_limit_remaining":
                rate.add_metric([labels["installation"]], value)
            elif name == "stage_seconds_bucket":
                buckets.setdefault(labels["stage"], []).append((labels["le"], value))
            elif name == "stage_seconds_sum":
                sums[labels["stage"]] = value
            elif name == "stage_seconds_count":
                counts[labels["stage"]] = value
        stages = HistogramMetricFamily(
            "codemod_job_stage_seconds",
            "Time of each job stage (fetch, codemod, verification, github), per finished job",
            labels=["stage"],
        )
        for stage, total in sorted(counts.items()):
            given = dict(buckets.get(stage, []))
            cumulative = [(repr(le), given.get(repr(le), 0.0)) for le in STAGE_BUCKETS] + [("+Inf", total)]
            stages.add_metric([stage], cumulative, sum_value=sums.get(stage, 0.0))
        yield runs
        yield rate
        yield stages


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
                    results = await loop.run_in_executor(
                        self.store_thread, self.store.record_deliveries, [item for item, _ in batch]
                    )
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


class _WebhookPath:
    """ASGI middleware: ``POST /webhook`` straight to the acknowledgement, the rest to the app."""

    MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB

    def __init__(self, app, acknowledge) -> None:
        self.app, self.acknowledge = app, acknowledge

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/webhook":
            return await self.app(scope, receive, send)
        if scope["method"] != "POST":
            return await _answer(send, 405, {"error": "the webhook accepts POST only"}, allow=b"POST")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.MAX_BODY:
                return await _answer(send, 413, {"error": "payload larger than 25 MB"})
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        status, reply = await self.acknowledge(dict(scope["headers"]), b"".join(chunks))
        await _answer(send, status, reply)


async def _answer(send, status: int, reply: dict, allow: bytes | None = None) -> None:
    raw = json.dumps(reply, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    if allow is not None:
        headers.append((b"allow", allow))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": raw})


def create_app(
    settings: Settings, *, store: Store | None = None, queue: JobQueue | None = None, app_slug: str | None = None
) -> FastAPI:
    store = store or Store(settings.database_url)
    queue = queue or JobQueue(settings.queue_url, settings.codemod_queue_name)
    slug = app_slug or settings.codemod_app_slug
    if slug is None:
        from .github import GitHubApp

        slug = GitHubApp(settings).slug()
    secret = settings.github_webhook_secret.get_secret_value().encode()
    admin = settings.codemod_admin_token.get_secret_value() if settings.codemod_admin_token else None

    registry = CollectorRegistry()
    deliveries = Counter(
        "codemod_webhook_deliveries", "Webhook deliveries by event and outcome", ["event", "outcome"], registry=registry
    )
    latency = Histogram(
        "codemod_webhook_seconds",
        "Time to acknowledge a delivery",
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    )
    depths = {settings.codemod_queue_name: queue}
    if settings.codemod_cuda_queue_name and settings.codemod_cuda_queue_name != settings.codemod_queue_name:
        depths[settings.codemod_cuda_queue_name] = JobQueue(settings.queue_url, settings.codemod_cuda_queue_name)
    registry.register(_StoreMetrics(store, depths))

    commits = _GroupCommit(store, queue)
    app = FastAPI(title="torch-codemod", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.queue, app.state.slug = store, queue, slug

    async def acknowledge(headers: dict[bytes, bytes], body: bytes) -> tuple[int, dict]:
        """Verify, decide, store, answer: the whole of a delivery's path."""
        start = time.perf_counter()
        name = headers.get(b"x-github-event", b"").decode("latin-1")
        signature = headers.get(b"x-hub-signature-256")
        if not verify_signature(secret, body, signature.decode("latin-1") if signature else None):
            deliveries.labels(name or "-", "bad signature").inc()
            return 401, {"error": "bad or missing X-Hub-Signature-256"}
        delivery = headers.get(b"x-github-delivery", b"").decode("latin-1")
        if not delivery:
            deliveries.labels(name or "-", "no delivery id").inc()
            return 400, {"error": "missing X-GitHub-Delivery"}
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
            stored = await commits.submit(
                delivery,
                name,
                [
                    {
                        "kind": j.kind,
                        "repo": j.repo,
                        "installation_id": j.installation_id,
                        "payload": j.to_payload(),
                        "queue": settings.codemod_queue_name,
                    }
                    for j in decision
                ],
            )
            outcome, reply, status = "queued", {"jobs": stored}, 202
        if stored is None:
            outcome, reply, status = "duplicate", {"duplicate": delivery}, 200
        deliveries.labels(name, outcome).inc()
        latency.observe(time.perf_counter() - start)
        if log.isEnabledFor(logging.INFO):
            with logs.job_context(None, delivery):
                log.info("delivery %s: %s %s", delivery, name, outcome, extra={"event": name, "outcome": outcome})
        return status, reply

    # ``POST /webhook`` is served by a bare ASGI layer in front of the framework's routing and
    # middleware (measured: half of a delivery's CPU time went there); errors still reach
    # Starlette's error middleware, which wraps this one.
    app.add_middleware(_WebhookPath, acknowledge=acknowledge)

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

    cookie = hmac.new(admin.encode(), b"codemod status page", "sha256").hexdigest() if admin else None

    def _page_allowed(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {admin}".encode()):
            return True
        return hmac.compare_digest(request.cookies.get("codemod_admin", "").encode(), cookie.encode())

    def _html(text: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(
            text,
            status_code=status,
            headers={
                "Content-Security-Policy": status_page.CSP,
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
        )

    @app.get("/")
    def status(request: Request, limit: int = 50):
        if admin is None:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        if not _page_allowed(request):
            return _html(status_page.login_page(), 401)
        recent = [j.to_json() for j in store.jobs(min(max(limit, 1), 500))]
        return _html(status_page.jobs_page(recent, store.count_by_state()))

    @app.post("/login")
    async def login(request: Request):
        if admin is None:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        token = (parse_qs((await request.body()).decode(errors="replace")).get("token") or [""])[0]
        if not hmac.compare_digest(token.encode(), admin.encode()):
            return _html(status_page.login_page("That is not the admin token."), 401)
        answer = RedirectResponse("/", status_code=303)
        # the cookie is a MAC of the token, not the token; the page is the only thing it opens
        answer.set_cookie("codemod_admin", cookie, httponly=True, samesite="strict", path="/")
        return answer

    @app.get("/metrics")
    def metrics():
        return PlainTextResponse(generate_latest(registry).decode(), media_type="text/plain; version=0.0.4")

    return app
