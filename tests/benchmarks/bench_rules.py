"""The per-file rules phase alone, one process, CPU, on every N-th file of a corpus: LibCST's
parse of the skeletons of the files the ``ast`` pre-filter keeps, and their analysis (parse and
rules, as ``engine.process`` does it), each repeated; the rules' cost is the difference of the
best passes:

    python tests/benchmarks/bench_rules.py DIR [--every 6] [--rounds 3]

To compare two versions, run the copy of this script inside each checkout, alternated.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from codemod import engine  # noqa: E402
from codemod.config import ConfigFinder  # noqa: E402
from codemod.discovery import discover  # noqa: E402
from codemod.skeleton import skeleton  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_phases import timed  # noqa: E402  (CPU seconds, the collector paused as the engine does)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--every", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = args.corpus.resolve()
    tasks = engine.build_tasks(discover([str(root)], ConfigFinder(engine.known_selectors()), base=root)[:: args.every])
    program, may_find = engine.build_program(tasks, 1)
    engine._set_project(None, program)
    tasks = [replace(t, may_find=m) for t, m in zip(tasks, may_find)]
    kept = [t for t in tasks if t.may_find]
    data = [Path(t.path).read_bytes() for t in kept]
    skeletons = [(skeleton(d, t.may_find.blank) if t.may_find.blank else None) or d for t, d in zip(kept, data)]
    parses, analyses = [], []
    for _ in range(args.rounds):
        parses.append(timed(engine.parse_unvalidated, skeletons))
        analyses.append(timed(lambda i: engine.analyse_bytes(data[i], kept[i], None, program), range(len(kept))))
    parse, analysis = min(parses), min(analyses)
    print(f"{root}: {len(kept)} of {len(tasks)} files kept (every {args.every}), one process, best of {args.rounds}")
    print(f"LibCST parse of the skeletons: {parse:.2f} CPU s  ({', '.join(f'{p:.2f}' for p in parses)})")
    print(f"analysis with skeletons: {analysis:.2f} CPU s  ({', '.join(f'{a:.2f}' for a in analyses)})")
    print(f"the rules alone: {analysis - parse:.2f} CPU s, {(analysis - parse) / parse:.2f}x the parse")
    print("command: " + " ".join([sys.executable, *sys.argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
