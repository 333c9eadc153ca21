"""What the sandbox costs per run: the wall time of ``run_sandboxed`` for a trivial command
(``true``) and for ``python -c pass``, against the same commands run plainly, and how long the
one-time probe takes. Not collected by pytest.

    python tests/benchmarks/bench_sandbox.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from codemod.verify.sandbox import _capabilities, detect_isolation, run_sandboxed  # noqa: E402


def _time(fn, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), max(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    start = time.perf_counter()
    _capabilities()
    print(f"probe (once per process): {time.perf_counter() - start:.3f} s")
    print(detect_isolation().describe())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for label, argv in (("true", ["true"]), ("python -c pass", [sys.executable, "-c", "pass"])):
            plain = _time(lambda: subprocess.run(argv, check=True), args.runs)
            boxed = _time(lambda: run_sandboxed(argv, work, timeout=60), args.runs)
            print(
                f"{label:16} plain median {plain[0] * 1000:7.1f} ms (max {plain[1] * 1000:7.1f}); "
                f"sandboxed median {boxed[0] * 1000:7.1f} ms (max {boxed[1] * 1000:7.1f})"
            )


if __name__ == "__main__":
    main()
