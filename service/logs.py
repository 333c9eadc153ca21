"""Structured logs: one JSON object per line, with the delivery id and the job id on every line a
job writes (PyGithub's, urllib3's and git's lines included), and no secret ever.

The ids travel in context variables (:func:`job_context`), so a library that knows nothing of
jobs still logs them; secrets are replaced in the finished line, exception text included.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time
from contextlib import contextmanager

_delivery: contextvars.ContextVar[str | None] = contextvars.ContextVar("codemod_delivery", default=None)
_job: contextvars.ContextVar[int | None] = contextvars.ContextVar("codemod_job", default=None)

# Secrets known to this process (the webhook secret, the private key, tokens as they are issued).
_secrets: list[str] = []


def add_secret(value: str | None) -> None:
    """Never write ``value`` (or any line of it, for a PEM) to a log line."""
    if not value:
        return
    for item in [value.strip(), *(line.strip() for line in value.splitlines() if len(line.strip()) >= 16)]:
        if item and item not in _secrets:
            _secrets.append(item)
    _secrets.sort(key=len, reverse=True)  # the whole value before its parts


def scrub(text: str) -> str:
    for secret in list(_secrets):
        if secret in text:
            text = text.replace(secret, "***")
    return text


@contextmanager
def job_context(job_id: int | None, delivery_id: str | None):
    """Every log line written inside carries ``job`` and ``delivery``."""
    tokens = (_job.set(job_id), _delivery.set(delivery_id))
    try:
        yield
    finally:
        _job.reset(tokens[0])
        _delivery.reset(tokens[1])


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "thread": record.threadName,
            "message": record.getMessage(),
        }
        job, delivery = _job.get(), _delivery.get()
        if job is not None:
            entry["job"] = job
        if delivery is not None:
            entry["delivery"] = delivery
        for key in ("event", "outcome", "repo", "status"):
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return scrub(json.dumps(entry, default=str))


def configure(secrets: list[str] = ()) -> None:
    """JSON lines on stderr for the whole process (``CODEMOD_LOG_LEVEL``, default INFO)."""
    for secret in secrets:
        add_secret(secret)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(os.environ.get("CODEMOD_LOG_LEVEL", "INFO").upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.captureWarnings(True)  # a library's warning is a JSON line too
