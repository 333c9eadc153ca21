"""CPU cost of the whole-program phase (per-file summaries on Python's ast, then resolution)
against a bare LibCST parse of the same files, one process:

    python tests/benchmarks/bench_program.py DIR [--limit N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import libcst as cst  # noqa: E402

from codemod.program import Program, summarize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--limit", type=int, default=0, help="bare-parse only the first N files (it is slow)")
    args = parser.parse_args()
    files = sorted(args.corpus.rglob("*.py"))
    data = [(str(p), str(p.relative_to(args.corpus)), p.read_bytes()) for p in files]
    start = time.process_time()
    summaries = [summarize(path, display, text, lazy=True) for path, display, text in data]
    summarized = time.process_time() - start
    start = time.process_time()
    program = Program(s for s in summaries if s is not None)
    program.callers()
    resolved = time.process_time() - start
    sample = data[: args.limit] if args.limit else data
    start = time.process_time()
    for _, _, text in sample:
        try:
            cst.parse_module(text)
        except Exception:
            pass
    parsed = (time.process_time() - start) * len(data) / max(1, len(sample))
    print(
        f"{len(data)} files: summaries {summarized:.1f} CPU s, resolution {resolved:.1f} CPU s, "
        f"bare LibCST parse {parsed:.1f} CPU s{' (extrapolated from %d files)' % len(sample) if args.limit else ''}; "
        f"whole-program phase = {(summarized + resolved) / parsed:.2f}x a bare parse"
    )


if __name__ == "__main__":
    main()
