"""The speed goal of issue 12: ``codemod apply --diff -j 2`` over a corpus against a bare LibCST
parse of the same files on both cores, alternated round by round in one run (the machine is
shared: compare the ratios of one round, not seconds across runs):

    python tests/benchmarks/bench_goal.py --corpus DIR [--rounds 3] [--baseline SRC]

``--baseline SRC``: also time the command from another source tree (``git archive main | tar -x
-C SRC``) in each round. The order of the commands rotates from round to round. Prints each
round's wall seconds and ratios to the bare parse of that round, then the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_corpus import bare_parse  # noqa: E402
from codemod.config import ConfigFinder  # noqa: E402
from codemod.discovery import discover  # noqa: E402
from codemod.engine import known_selectors  # noqa: E402

HERE = Path(__file__).resolve().parents[2]


def command(source: Path, corpus: Path, jobs: int) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(source))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "codemod.cli", "apply", "--diff", "--no-progress", "-j", str(jobs), "."],
        cwd=corpus,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    said = next((line for line in proc.stderr.splitlines() if line.startswith("Scanned")), proc.stderr.strip()[-200:])
    return wall, said


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path)
    args = parser.parse_args()
    corpus = args.corpus.resolve()
    files = [str(f.path) for f in discover([str(corpus)], ConfigFinder(known_selectors()), base=corpus)]
    runs = {
        "bare parse": lambda: (bare_parse(files, args.jobs)[0], ""),
        "codemod": lambda: command(HERE, corpus, args.jobs),
    }
    if args.baseline:
        runs["baseline"] = lambda: command(args.baseline.resolve(), corpus, args.jobs)
    names = list(runs)
    print(
        f"{corpus}: {len(files)} files, -j {args.jobs}, {args.rounds} rounds, load {os.getloadavg()[0]:.1f}", flush=True
    )
    walls: dict[str, list[float]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in names[1:]}
    for i in range(args.rounds):
        order = names[i % len(names) :] + names[: i % len(names)]
        this: dict[str, float] = {}
        for name in order:
            this[name], said = runs[name]()
            walls[name].append(this[name])
            if said:
                print(f"  {name} said: {said}", flush=True)
        for name in names[1:]:
            ratios[name].append(this[name] / this["bare parse"])
        print(
            f"round {i + 1} ({' -> '.join(order)}, load {os.getloadavg()[0]:.1f}): "
            + ", ".join(f"{n} {this[n]:.1f} s" for n in names)
            + "; "
            + ", ".join(f"{n}/bare {ratios[n][-1]:.2f}" for n in names[1:]),
            flush=True,
        )
    print("\n| what | wall s per round | median wall s | median ratio to the bare parse |")
    print("|---|---|---:|---:|")
    for name in names:
        ratio = f"{statistics.median(ratios[name]):.2f}" if name in ratios else "1.00"
        print(
            f"| {name} | {', '.join(f'{w:.1f}' for w in walls[name])} | {statistics.median(walls[name]):.1f} | {ratio} |"
        )
    print("\ncommand: " + " ".join([sys.executable, *sys.argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
