"""A one-line progress bar on a terminal (stderr), for long runs only."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, enabled: bool, stream=None, min_files: int = 20) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.enabled = enabled and total >= min_files and self.stream.isatty()
        self.done = 0
        self.start = time.monotonic()
        self._last = 0.0

    def advance(self, _result=None) -> None:
        self.done += 1
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.1 and self.done < self.total:
            return
        self._last = now
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} files {now - self.start:5.1f}s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 70 + "\r")
            self.stream.flush()
