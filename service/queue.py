"""The task queue: job ids on huey's storage (a SQLite file, the embedded default, or Redis).

huey acknowledges nothing: an item is gone from the queue once a worker dequeues it. The job
store's lease makes up for that: a job whose worker dies keeps state ``running`` until its lease
expires, then :meth:`Store.requeue_expired` puts its id back here. The queue only says "look at
this job"; the store decides whether a worker may run it (:meth:`Store.claim`).
"""

from __future__ import annotations

import time
from urllib.parse import urlparse


class QueueError(ValueError):
    pass


class JobQueue:
    def __init__(self, url: str, name: str = "codemod-jobs") -> None:
        from huey.storage import RedisStorage, SqliteStorage

        scheme = urlparse(url).scheme
        if scheme in ("redis", "rediss", "unix"):
            self.storage = RedisStorage(name=name, url=url, blocking=True, read_timeout=1)
            self._blocking = True
        elif scheme == "sqlite":
            path = url.removeprefix("sqlite:///")
            if not path or path == url:
                raise QueueError(f"CODEMOD_QUEUE_URL: expected sqlite:///PATH, not {url!r}")
            self.storage = SqliteStorage(name=name, filename=path, strict_fifo=True, timeout=30)
            self._blocking = False
        else:
            raise QueueError(f"CODEMOD_QUEUE_URL: unsupported scheme {scheme!r} (sqlite:///PATH or redis://HOST)")
        self.url = url

    def put(self, *job_ids: int) -> None:
        """One message for ``job_ids`` (a burst of webhooks costs one write); the worker that takes
        it runs the first and puts the rest back for the others (:meth:`get`)."""
        if job_ids:
            self.storage.enqueue(",".join(map(str, job_ids)).encode())

    def get(self, timeout: float = 1.0) -> int | None:
        """The next job id, waiting up to ``timeout`` seconds; None when there is none."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.storage.dequeue()
            if data is not None:
                first, *rest = (int(i) for i in data.split(b","))
                if rest:
                    self.put(*rest)
                return first
            if self._blocking or time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def size(self) -> int:
        return self.storage.queue_size()

    def flush(self) -> None:
        self.storage.flush_queue()


class JobQueues:
    """The queues on one storage by name (CPU jobs and CUDA jobs), opened as they are used."""

    def __init__(self, url: str, default: str) -> None:
        self.url, self.default = url, default
        self._open: dict[str, JobQueue] = {}

    def __getitem__(self, name: str | None) -> JobQueue:
        name = name or self.default
        if name not in self._open:
            self._open[name] = JobQueue(self.url, name)
        return self._open[name]

    def put(self, job_id: int, name: str | None = None) -> None:
        self[name].put(job_id)
