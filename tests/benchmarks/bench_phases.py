"""Where the engine's CPU goes, one process, on every N-th file of a corpus: a bare LibCST parse
of every file, the whole-program summaries (``ast``), LibCST's parse of the files the ``ast``
pre-filter keeps (whole, and as skeletons), the ``ast_to_cst`` trees of those skeletons (Python's
parse included), and the analysis of those files without skeletons, with them, and with them and
the ``ast_to_cst`` trees first (parse and rules):

    python tests/benchmarks/bench_phases.py DIR [--every 6]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from codemod import ast_to_cst, engine  # noqa: E402
from codemod.config import ConfigFinder  # noqa: E402
from codemod.discovery import discover  # noqa: E402
from codemod.skeleton import skeleton  # noqa: E402


def timed(fn, items) -> float:
    """CPU seconds of ``fn`` over ``items``, each with the cyclic collector paused and one
    young-generation pass after it (as ``engine.process`` does)."""
    start = time.process_time()
    for item in items:
        gc.disable()
        try:
            fn(item)
        except Exception:
            pass
        finally:
            gc.enable()
            gc.collect(0)
    return time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--every", type=int, default=6)
    args = parser.parse_args()
    root = args.corpus.resolve()
    tasks = engine.build_tasks(discover([str(root)], ConfigFinder(engine.known_selectors()), base=root)[:: args.every])
    engine.run(tasks[:30], 1)  # warm-up
    start = time.process_time()
    program, may_find = engine.build_program(tasks, 1)
    summaries = time.process_time() - start
    engine._set_project(None, program)
    tasks = [replace(t, may_find=m) for t, m in zip(tasks, may_find)]
    kept = [t for t in tasks if t.may_find]  # files the filter keeps
    data = [Path(t.path).read_bytes() for t in kept]
    skeletons = [(skeleton(d, t.may_find.blank) if t.may_find.blank else None) or d for t, d in zip(kept, data)]
    rows = {
        "bare LibCST parse, every file": timed(lambda t: engine.cst.parse_module(Path(t.path).read_bytes()), tasks),
        "whole-program summaries (ast), every file": summaries,
        "LibCST parse of the kept files": timed(engine.parse_unvalidated, data),
        "LibCST parse of their skeletons": timed(engine.parse_unvalidated, skeletons),
        "ast_to_cst trees of their skeletons": timed(ast_to_cst.build, skeletons),
        "analysis of the kept files, without skeletons": timed(
            lambda i: engine.analyse_bytes(
                data[i], replace(kept[i], may_find=frozenset(kept[i].may_find), mirror=False), None, program
            ),
            range(len(kept)),
        ),
        "analysis of the kept files, with skeletons": timed(
            lambda i: engine.analyse_bytes(data[i], replace(kept[i], mirror=False), None, program), range(len(kept))
        ),
        "analysis of the kept files, with skeletons and ast_to_cst trees": timed(
            lambda i: engine.analyse_bytes(data[i], kept[i], None, program), range(len(kept))
        ),
    }
    bare = rows["bare LibCST parse, every file"]
    print(f"{root}: {len(tasks)} files (every {args.every}), {len(kept)} kept by the filter, one process")
    print("| what | CPU s | vs bare parse |\n|---|---:|---:|")
    for name, cpu in rows.items():
        print(f"| {name} | {cpu:.2f} | {cpu / bare:.2f} |")
    print("\ncommand: " + " ".join([sys.executable, *sys.argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
