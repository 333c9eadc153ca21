"""Soundness of the ``ast`` pre-filter on real code: run the engine over a directory with and
without it and require identical results (findings, reports, rewrites, skipped files).

    python tests/benchmarks/compare_prefilter.py DIR [DIR ...] [--jobs 2] [--mode all]

Prints, per directory: files, files parsed with LibCST with and without the filter, findings,
rewrites, reports, files rewritten, skipped files, and whether everything matched (exit status 1
if not, naming the files that differ).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefilter_check import compare  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--mode", choices=("hazards", "all"), default=None)
    args = parser.parse_args()
    ok = True
    for root in args.dirs:
        differ, counts = compare(root.resolve(), args.jobs, args.mode)
        ok &= not differ
        print(
            f"{root}: {'DIFFERENT' if differ else 'identical'}; " + ", ".join(f"{k} {v}" for k, v in counts.items()),
            flush=True,
        )
        for path in differ:
            print(f"  differs: {path}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
