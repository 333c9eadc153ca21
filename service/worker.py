"""The worker: one job, start to end.

token narrowed to the repository -> fetch the commit (cached clone) -> ``fix_repository`` (engine
and verification; the service never parses Python) -> one deterministic branch, pushed with
force-with-lease -> create the pull request or update the open one (never a second) -> a check
run on the pushed commit -> the job record. Comments (``recreate``, ``ignore``) and closed pull
requests are jobs too, so that every call to GitHub happens here and none in the web handler.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Any

from codemod.config import ConfigError
from codemod.discovery import DiscoveryError
from codemod.engine import SelectionError, known_selectors
from codemod.verify import VerifyError
from codemod.verify.settings import OperatorSettings

from . import logs, proposal
from .checkout import Author, Checkout, GitError, PushRejected
from .github import GitHubApp, PermanentError, RepoClient, TransientError
from .queue import JobQueue, JobQueues
from .settings import Settings
from .store import Job, ResultCache, Store

log = logging.getLogger("codemod.worker")
_ids = itertools.count(1)


@dataclass
class Routed:
    """The job belongs on another queue (its repository's smoke test asks for CUDA)."""

    queue: str
    reason: str


@dataclass
class Stages:
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = round(self.seconds.get(name, 0.0) + seconds, 3)

    def timed(self, name: str):
        stages = self

        class _Timer:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                stages.add(name, time.perf_counter() - self.start)

        return _Timer()


class Worker:
    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        queue: JobQueue | None = None,
        app: GitHubApp | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or Store(settings.database_url)
        self.queues = JobQueues(settings.queue_url, settings.codemod_queue_name)
        self.queue = queue or self.queues[settings.codemod_queue_name]  # the one this worker takes jobs from
        self.queue_name = settings.codemod_queue_name
        self._client: RepoClient | None = None
        self.app = app or GitHubApp(settings, self.store)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{next(_ids)}"
        self._slug: str | None = settings.codemod_app_slug
        # The sandbox's bounds: the environment's (CODEMOD_SANDBOX_*), with the two the service's
        # settings validate (they may come from .env, which the environment does not see).
        self.sandbox = replace(
            OperatorSettings.from_environment(),
            allow_requirements=settings.codemod_allow_requirements,
            max_timeout=settings.codemod_sandbox_max_timeout,
        )
        for secret in settings.secrets():  # no log line of this process holds one (service.logs)
            logs.add_secret(secret)

    @property
    def slug(self) -> str:
        if self._slug is None:
            self._slug = self.app.slug()
        return self._slug

    @property
    def author(self) -> Author:
        return Author(f"{self.slug}[bot]", f"{self.settings.github_app_id}+{self.slug}[bot]@users.noreply.github.com")

    # -- the loop --------------------------------------------------------------------------------

    def run(self, stop: threading.Event, drain: bool = False) -> None:
        """Take jobs until ``stop`` is set (``drain``: until no job is queued or running)."""
        next_sweep = next_stale = 0.0
        while not stop.is_set():
            if time.monotonic() >= next_sweep:
                for job_id in self.store.requeue_expired(self.settings.codemod_max_attempts, self.queue_name):
                    with logs.job_context(job_id, None):
                        log.warning("job %s: its worker stopped; queued again", job_id)
                    self.queue.put(job_id)
                next_sweep = time.monotonic() + min(5.0, self.settings.codemod_lease_seconds / 3)
            if time.monotonic() >= next_stale:
                for job_id in self.store.stale_queued(60, self.queue_name):  # stored, but its queue entry was lost
                    self.queue.put(job_id)
                next_stale = time.monotonic() + 60
            job_id = self.queue.get(timeout=0.5)
            if job_id is None:
                if drain and self._idle():
                    return
                continue
            self.run_job(job_id)

    def _idle(self) -> bool:
        states = self.store.count_by_state(self.queue_name)
        if states.get("queued"):
            for job_id in self.store.queued_ids(self.queue_name):  # queued in the store but not in the queue
                self.queue.put(job_id)
            return False
        return not states.get("running")

    def run_job(self, job_id: int) -> None:
        settings = self.settings
        job = self.store.claim(job_id, self.id, settings.codemod_lease_seconds, settings.codemod_max_attempts)
        if job is None:
            return
        with logs.job_context(job.id, job.delivery_id):
            self._run_claimed(job)

    def _run_claimed(self, job: Job) -> None:
        settings, job_id = self.settings, job.id
        if not self.store.lock_repo(job.repo, settings.codemod_lease_seconds):
            self.store.release(
                job_id,
                self.id,
                error="waiting for another job of the repository",
                stages=job.stages or {},
                count_attempt=False,
            )
            time.sleep(0.2)
            self.queues.put(job_id, job.queue)
            return
        stages = Stages(dict(job.stages or {}))
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job, stop), daemon=True)
        beat.start()
        log.info(
            "job %s: %s %s (attempt %s)",
            job.id,
            job.kind,
            job.repo,
            job.attempts,
            extra={"repo": job.repo, "event": job.kind},
        )
        self._client = None
        outcome, status = "failed", ""
        try:
            result, pr_url = self.handle(job, stages)
            if isinstance(result, Routed):
                self.store.route(job_id, self.id, queue=result.queue, stages=stages.seconds, note=result.reason)
                self.queues.put(job_id, result.queue)
                log.info("job %s: %s; queued on %s", job.id, result.reason, result.queue, extra={"outcome": "routed"})
                outcome = "routed"
                return
            self.store.finish(job_id, self.id, state="done", stages=stages.seconds, result=result, pr_url=pr_url)
            outcome, status = "done", str(result.get("status", ""))
            log.info("job %s: done %s", job.id, pr_url or status, extra={"outcome": "done", "status": status})
        except (TransientError, GitError) as exc:
            message = self._clean(str(exc))
            if job.attempts < settings.codemod_max_attempts:
                self.store.release(job_id, self.id, error=f"attempt {job.attempts}: {message}", stages=stages.seconds)
                self.queues.put(job_id, job.queue)
                outcome = "retried"
                log.warning("job %s: %s; queued again", job.id, message, extra={"outcome": "retried"})
            else:
                self.store.finish(job_id, self.id, state="failed", stages=stages.seconds, error=message)
                log.error("job %s: failed: %s", job.id, message, extra={"outcome": "failed"})
        except PermanentError as exc:
            self.store.finish(job_id, self.id, state="failed", stages=stages.seconds, error=self._clean(str(exc)))
            log.error("job %s: failed: %s", job.id, self._clean(str(exc)), extra={"outcome": "failed"})
        except Exception as exc:  # the engine's and the verifier's errors name the problem
            message = self._clean(f"{type(exc).__name__}: {exc}")
            self.store.finish(job_id, self.id, state="failed", stages=stages.seconds, error=message)
            log.error(
                "job %s: failed: %s\n%s",
                job.id,
                message,
                self._clean(traceback.format_exc()),
                extra={"outcome": "failed"},
            )
        finally:
            stop.set()
            self.store.unlock_repo(job.repo)
            self._record_metrics(job, outcome, status, stages)

    def _record_metrics(self, job: Job, outcome: str, status: str, stages: Stages) -> None:
        """Counters in the store, so that ``/metrics`` of any webhook replica shows every worker's."""
        try:
            remaining = self._client.rate_remaining() if self._client else None
            self.store.record_job_metrics(
                outcome=outcome,
                status=status,
                stages=stages.seconds if outcome in ("done", "failed") else {},
                rate_remaining=(job.installation_id, remaining) if remaining is not None else None,
            )
        except Exception as exc:  # metrics never fail a job
            log.warning("job %s: metrics not recorded (%s)", job.id, exc)

    def _clean(self, text: str) -> str:
        return logs.scrub(text)

    def _heartbeat(self, job: Job, stop: threading.Event) -> None:
        lease = self.settings.codemod_lease_seconds
        while not stop.wait(lease / 3):
            self.store.renew(job.id, self.id, lease)
            self.store.update_repo(job.repo, busy_until=time.time() + lease)

    # -- one job -----------------------------------------------------------------------------------

    def handle(self, job: Job, stages: Stages) -> tuple[dict[str, Any], str | None]:
        request = job.payload or {}
        with stages.timed("github"):
            client = self.app.repository(job.installation_id, job.repo)
        logs.add_secret(client.token)
        self._client = client
        heard = bool((job.result or {}).get("routed"))  # a CPU worker already answered the comment
        if job.kind == "closed":
            return self._closed(job, request), None
        if job.kind == "ignore":
            known = known_selectors()
            rules = [r.upper() if r.upper() in known else r for r in request.get("rules") or []]
            unknown = [r for r in rules if r not in known]
            if unknown and not request.get("problem"):
                request = {
                    **request,
                    "problem": f"no rule or family is called {', '.join(f'`{r}`' for r in unknown)} "
                    "(`codemod rules` lists them)",
                }
            with stages.timed("github"):
                if request.get("problem") and not heard:
                    client.react(request["issue"], request["comment_id"], "confused")
                    client.comment(
                        request["issue"], f"@{request.get('author', '')} I did not understand: {request['problem']}."
                    )
                    return {"status": "command not understood"}, None
                if not heard:
                    client.react(request["issue"], request["comment_id"], "+1")
            state = self.store.repo_state(job.repo)
            self.store.update_repo(job.repo, ignored_rules=sorted(set(state.ignored_rules or []) | set(rules)))
            result, url = self._build(job, client, stages, files=None, sha=None, base=None, rebuild=False)
            if isinstance(result, Routed):
                return result, None
            with stages.timed("github"):
                client.comment(
                    request["issue"],
                    f"OK: {', '.join(f'`{r}`' for r in rules)} "
                    f"{'is' if len(rules) == 1 else 'are'} ignored for this repository from now on."
                    + (f" The pull request is updated: {url}" if url else ""),
                )
            return {**result, "ignored": rules}, url
        if job.kind == "recreate":
            if not heard:
                with stages.timed("github"):
                    client.react(request["issue"], request["comment_id"], "+1")
            result, url = self._build(job, client, stages, files=None, sha=None, base=None, rebuild=True)
            if isinstance(result, Routed):
                return result, None
            with stages.timed("github"):
                client.comment(
                    request["issue"],
                    f"Recreated from `{result.get('base')}` at "
                    f"{(result.get('sha') or '')[:12]}: {result.get('published', '')}",
                )
            return result, url
        files = request.get("files")
        return self._build(
            job, client, stages, files=files, sha=request.get("sha"), base=request.get("base"), rebuild=False
        )

    def _closed(self, job: Job, request: dict) -> dict[str, Any]:
        state = self.store.repo_state(job.repo)
        fingerprints = (state.proposed or {}).get(str(request["pr"]), [])
        self.store.reject(job.repo, fingerprints)
        return {"status": "declined", "pr": request["pr"], "fingerprints": len(fingerprints)}

    def _build(
        self,
        job: Job,
        client: RepoClient,
        stages: Stages,
        *,
        files: list[str] | None,
        sha: str | None,
        base: str | None,
        rebuild: bool,
    ) -> tuple[dict[str, Any], str | None]:
        base = base or client.default_branch
        checkout = Checkout(self.settings.codemod_data_dir, job.repo, client.clone_url, client.token)
        with stages.timed("fetch"):
            checkout.fetch(sha)
            sha = sha or checkout.tip(base)
            if sha is None:
                raise PermanentError(f"{job.repo}: branch {base} not found")
            checkout.checkout(sha)
        state = self.store.repo_state(job.repo)
        try:
            routed = self._route(checkout)
            if routed:
                return routed, None
            return self._fix_and_publish(job, client, checkout, stages, state, files, sha, base, rebuild)
        except (ConfigError, DiscoveryError, SelectionError, VerifyError) as exc:
            # The repository's config or smoke setup is wrong: say it where its people look.
            with stages.timed("github"):
                client.check_run(
                    sha=sha,
                    name=proposal.CHECK_NAME,
                    conclusion="failure",
                    title="torch-codemod could not run",
                    summary=self._clean(str(exc)),
                    text="",
                    annotations=[],
                )
            raise PermanentError(self._clean(f"{type(exc).__name__}: {exc}")) from None

    def _route(self, checkout: Checkout) -> Routed | None:
        """A CPU worker hands a repository whose smoke test asks for CUDA to the CUDA queue before
        anything runs (only its TOML config is read; the webhook side cannot: it has no checkout)."""
        cuda = self.settings.codemod_cuda_queue_name
        if not cuda or self.queue_name == cuda:
            return None
        from codemod.config import ConfigFinder

        device = ConfigFinder(known_selectors()).for_path(checkout.path).smoke.device
        if device == "cuda":
            return Routed(cuda, 'smoke.device = "cuda"')
        return None

    def _fix_and_publish(self, job, client, checkout, stages, state, files, sha, base, rebuild):
        from codemod.api import fix_repository

        # A person pushed to the App's branch: nothing will be published there, so the smoke test
        # is not run (the check run still reports the findings).
        held = not rebuild and any(
            checkout.tip(b) and checkout.foreign_commits(b, sha, self.author) for b in (state.pushed or {})
        )
        outcome = fix_repository(
            checkout.path,
            files,
            cache=ResultCache(self.store),
            verify=not held,
            declined=self.store.rejected(job.repo),
            ignore=list(state.ignored_rules or []) or None,
            settings=self.sandbox,
        )
        for name, seconds in outcome.seconds.items():
            stages.add(name, seconds)
        data = outcome.to_json()
        result: dict[str, Any] = {
            "status": outcome.status,
            "sha": sha,
            "base": base,
            "branch": outcome.branch,
            "rewrites": len(outcome.rewrites),
            "reported": len(outcome.reported),
            "notes": outcome.notes,
        }
        links = proposal.Links(client.repo.html_url, sha)
        pr = None
        published = "Nothing to propose."
        with stages.timed("github"):
            action = proposal.publication(
                has_changes=bool(outcome.changes), proven=outcome.proven, unverified=outcome.unverified, held=held
            )
            if action in ("publish", "draft", "hold"):
                pr, published = self._publish(job, client, checkout, outcome, data, links, sha, base, rebuild)
            elif action == "skip":
                published = (
                    "Verification did not prove the rewrites; no pull request "
                    '([tool.codemod.github] unverified = "skip").'
                )
            check = proposal.check_run(data, pr.url if pr else None, published)
            client.check_run(
                sha=sha,
                name=proposal.CHECK_NAME,
                conclusion=check.conclusion,
                title=check.title,
                summary=check.summary,
                text=check.text,
                annotations=check.annotations,
            )
        result["published"] = published
        if pr:
            result["pr"] = pr.number
        return result, pr.url if pr else None

    def _publish(self, job, client: RepoClient, checkout: Checkout, outcome, data, links, sha, base, rebuild):
        branch = outcome.branch
        remote = checkout.tip(branch)
        existing = client.open_pull(branch, base)
        state = self.store.repo_state(job.repo)
        stopped = dict(state.stopped or {})
        if remote and not rebuild:
            human = checkout.foreign_commits(branch, sha, self.author)
            if human and not existing:
                return None, f"Not updated: a person pushed to `{branch}` ({human[0][:12]})."
            if human:
                if not stopped.get(str(existing.number)):
                    client.comment(
                        existing.number,
                        f"A commit not made by the App ({human[0][:12]}) is on `{branch}`, "
                        "so I stop updating this pull request and never overwrite it. Comment "
                        f"`@{self.slug} recreate` to rebuild the branch from `{base}` (your commit would "
                        "be dropped).",
                    )
                    stopped[str(existing.number)] = human[0]
                    self.store.update_repo(job.repo, stopped=stopped)
                return existing, f"Not updated: a person pushed to `{branch}` ({human[0][:12]})."
        files = {c.path: c.new_source.encode(c.encoding) for c in outcome.changes}
        commit = checkout.commit(files, proposal.commit_message(data), self.author)
        try:
            checkout.push(commit, branch, remote)
        except PushRejected as exc:
            raise TransientError(f"{branch} moved while the job ran: {exc}") from None
        state = self.store.repo_state(job.repo)
        pushed = dict(state.pushed or {})
        pushed[branch] = commit
        title, body = proposal.title(data), proposal.body(data, links, self.slug, base)
        if existing:
            pr = client.update_pull(existing.number, title=title, body=body)
            published = f"Updated pull request #{pr.number}."
        else:
            pr = client.create_pull(branch=branch, base=base, title=title, body=body, draft=not outcome.proven)
            published = f"Opened pull request #{pr.number}."
        proposed = dict(state.proposed or {})
        proposed[str(pr.number)] = [f.fingerprint for f in outcome.rewrites]
        stopped.pop(str(pr.number), None)
        self.store.update_repo(job.repo, pushed=pushed, proposed=proposed, stopped=stopped)
        return pr, published


def run_workers(settings: Settings, count: int, stop: threading.Event, drain: bool = False) -> None:
    """``count`` worker threads in this process until ``stop`` (or, with ``drain``, the queue is empty)."""
    workers = [Worker(settings) for _ in range(count)]
    threads = [
        threading.Thread(target=w.run, args=(stop, drain), name=f"worker-{i}", daemon=True)
        for i, w in enumerate(workers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)
