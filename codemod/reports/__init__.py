"""Reports: text, JSON, SARIF 2.1.0, unified diff (and PR markdown for the service)."""

from __future__ import annotations

from .summary import Summary, summarize

__all__ = ["Summary", "summarize"]
