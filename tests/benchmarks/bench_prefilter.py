"""CPU of the engine with and without the ``ast`` pre-filter, against a bare LibCST parse of the
same files, all in one process and alternated (so a shared machine's load hits each alike):

    python tests/benchmarks/bench_prefilter.py DIR [--every 4] [--rounds 2]

``--every N`` takes every N-th ``.py`` file (sorted) of DIR. One process (``-j 1``): the CPU
seconds are the whole cost (the whole-program phase, then the rules), nothing hides in workers.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import libcst as cst  # noqa: E402

from codemod.config import ConfigFinder  # noqa: E402
from codemod.discovery import discover  # noqa: E402
from codemod.engine import build_tasks, known_selectors, run  # noqa: E402


def bare_parse(paths: list[str]) -> float:
    start = time.process_time()
    for path in paths:
        with open(path, "rb") as fh:
            data = fh.read()
        try:
            cst.parse_module(data)
        except Exception:
            pass
    return time.process_time() - start


def engine(tasks, prefilter: bool, skeletons: bool = False) -> tuple[float, int, int]:
    gc.collect()
    start = time.process_time()
    results = run(tasks, 1, prefilter=prefilter, skeletons=skeletons)
    return time.process_time() - start, sum(r.parsed for r in results), sum(len(r.results) for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    root = args.corpus.resolve()
    files = discover([str(root)], ConfigFinder(known_selectors()), base=root)[:: args.every]
    tasks = build_tasks(files)
    paths = [t.path for t in tasks]
    print(f"{root}: {len(tasks)} files (every {args.every}), one process, {args.rounds} rounds alternated", flush=True)
    totals = {
        "bare LibCST parse": [],
        "engine without the filter": [],
        "engine with the filter": [],
        "engine with the filter and skeletons": [],
    }
    engine(tasks[:40], False)  # warm-up: lazy imports, the torch table, first-use caches
    for i in range(args.rounds):
        totals["bare LibCST parse"].append((bare_parse(paths), len(paths), 0))
        order = [(False, False), (True, False), (True, True)]
        for prefilter, skeletons in order if i % 2 == 0 else order[::-1]:  # alternate which goes first
            name = f"engine with{'' if prefilter else 'out'} the filter{' and skeletons' if skeletons else ''}"
            totals[name].append(engine(tasks, prefilter, skeletons))
        print("  round: " + ", ".join(f"{k} {v[-1][0]:.1f} CPU s" for k, v in totals.items()), flush=True)
    parse = min(c for c, _, _ in totals["bare LibCST parse"])
    print("| what | files parsed with LibCST | findings | CPU s (best of rounds) | vs bare parse |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in totals.items():
        best = min(runs)
        print(f"| {name} | {best[1]} | {best[2] if 'engine' in name else ''} | {best[0]:.1f} | {best[0] / parse:.2f} |")
    print("\ncommand: " + " ".join([sys.executable, *sys.argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
