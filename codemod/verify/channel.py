"""The harness's result channel: a pipe the parent holds, and a nonce only the harness knows.

The repository's code can write anywhere in its copy, so a result *file* there could be forged
(or be a symlink the parent would follow). Instead the parent makes a pipe, passes its write end
to the harness (``--report-fd``) and a fresh nonce on the harness's stdin, which the harness reads
before it imports anything of the repository; the harness then makes itself non-dumpable (other
processes of the sandbox uid cannot open its ``/proc/PID/fd`` or read its memory) and the fd
close-on-exec (the repository's subprocesses do not inherit it). One frame is accepted::

    codemod-result <nonce> <length>\\n<length bytes of torch.save output>

and nothing after it; anything else (no frame, a wrong nonce, a short or oversized payload) means
the run did not report, which is never proven. What code running *inside* the harness process
says about its own results cannot be told apart from the harness (it computes them); the channel
closes every other way in.
"""

from __future__ import annotations

import os
import secrets
import threading

MAGIC = b"codemod-result"


def frame(nonce: str, payload: bytes) -> bytes:
    return MAGIC + f" {nonce} {len(payload)}\n".encode() + payload


class ResultChannel:
    """Parent side: read the pipe in a thread (so the harness never blocks), keep at most ``cap``."""

    def __init__(self, cap: int) -> None:
        self.nonce = secrets.token_hex(16)
        self.cap = cap
        self._read_fd, self.write_fd = os.pipe()
        os.set_inheritable(self.write_fd, True)
        self._data = bytearray()
        self._overflow = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        limit = self.cap + 200
        try:
            while chunk := os.read(self._read_fd, 1 << 16):
                if len(self._data) + len(chunk) > limit:
                    self._overflow = True
                    continue  # keep draining, store nothing more
                self._data += chunk
        finally:
            os.close(self._read_fd)

    def close_writer(self) -> None:
        """After the run: our copy of the write end goes, so the reader sees the end."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def payload(self, wait: float = 10.0) -> tuple[bytes | None, str]:
        """The payload, or None and why the harness did not report."""
        self.close_writer()
        self._thread.join(wait)
        if self._thread.is_alive():
            return None, "the result channel is still held open"
        if self._overflow:
            return None, f"the harness's result is larger than {self.cap} bytes"
        data = bytes(self._data)
        if not data:
            return None, "the harness did not report a result"
        head, sep, rest = data.partition(b"\n")
        parts = head.split(b" ")
        if not sep or len(parts) != 3 or parts[0] != MAGIC or not secrets.compare_digest(parts[1], self.nonce.encode()):
            return None, "the result channel carried something other than the harness's result"
        if not parts[2].isdigit() or int(parts[2]) != len(rest):
            return None, "the harness's result is incomplete or has trailing data"
        return rest, ""


__all__ = ["MAGIC", "ResultChannel", "frame"]
