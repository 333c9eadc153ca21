"""``codemod apply --diff`` against ``codemod apply`` (writing) on one 50,000-line generated file.

    python tests/benchmarks/bench_diff.py                 # 50,000 lines, 5 repeats
    python tests/benchmarks/bench_diff.py --lines 200000 --repeats 3

The file is generated code with many repeated lines (as generated files have) and an in-place
hazard every 500 blocks, so the rewrite changes lines spread over the whole file. Two
measurements, alternated within one run so both see the same machine state, medians reported:

- the output step alone, in this process, from the same analysis result: rendering the diff
  against writing the file (``write_atomic``: re-read, compare, temporary file, fsync, rename);
  also the ``difflib`` diff that the renderer replaced, with how many lines each diff marks changed;
- the whole command, ``codemod apply --diff`` against ``codemod apply``, each on a fresh copy
  (one process per run; the analysis dominates both).
"""

from __future__ import annotations

import argparse
import difflib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from codemod.engine import FileTask, Selection, analyse_bytes  # noqa: E402
from codemod.reports.diff import unified_diff  # noqa: E402
from codemod.writer import write_atomic  # noqa: E402

# Lines that repeat in every block are what difflib calls popular (more than 1% of the lines of a
# file of over 200): it will not anchor a match on them, so the two rewrites of a hazard block,
# separated only by such lines, came out as one replaced region.
BLOCK = (
    "def layer_{i}(x, w):\n    h = torch.matmul(x, w)\n    h = h + 1\n"
    "    t = torch.var(h, dim=0, keepdim=True)\n    return h * t\n\n\n"
)
HAZARD = (
    "def norm_{i}(a, w):\n    x = a * 2\n    s = torch.var(x, dim=0, keepdim=True)\n    x /= s\n"
    "    h = torch.matmul(x, w)\n    h = h + 1\n    t = torch.var(h, dim=0, keepdim=True)\n    h /= t\n"
    "    return h\n\n\n"
)


def generate(lines: int) -> str:
    out, count, i = ["import torch\n\n\n"], 3, 0
    while count < lines:
        block = (HAZARD if i % 500 == 250 else BLOCK).format(i=i)
        out.append(block)
        count += block.count("\n")
        i += 1
    return "".join(out)


def changed_lines(diff: str) -> int:
    return sum(1 for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---")))


def difflib_diff(old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True), "a/x", "b/x"))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-cli", action="store_true", help="only the output step")
    args = parser.parse_args()

    source = generate(args.lines)
    result = analyse_bytes(source.encode(), FileTask("gen.py", "gen.py", Selection.build().codes))
    assert result.changed, "the generated file has nothing to rewrite"
    with tempfile.TemporaryDirectory(prefix="bench-diff-") as tmp:
        path = Path(tmp) / "gen.py"
        diff_s, write_s, difflib_s = [], [], []
        for _ in range(args.repeats):
            path.write_text(source)
            write_s.append(timed(lambda: write_atomic(path, result.old_source, result.new_source, "utf-8")))
            diff_s.append(timed(lambda: unified_diff(result)))
            difflib_s.append(timed(lambda: difflib_diff(result.old_source, result.new_source)))
        ours, theirs = unified_diff(result), difflib_diff(result.old_source, result.new_source)
        print(
            f"file: {source.count(chr(10)):,} lines, {len(source):,} bytes; "
            f"{sum(r.fixed for r in result.results)} rewrites ({changed_lines(ours)} lines changed in the diff)"
        )
        print()
        print("| output step (median of %d) | ms | vs write |" % args.repeats)
        print("|---|---:|---:|")
        w = statistics.median(write_s)
        for name, values in (
            ("write (write_atomic)", write_s),
            ("diff (reports/diff.py)", diff_s),
            ("diff (difflib, before)", difflib_s),
        ):
            print(f"| {name} | {statistics.median(values) * 1000:.1f} | {statistics.median(values) / w:.2f}x |")
        print()
        print(f"lines marked changed: reports/diff.py {changed_lines(ours)}, difflib {changed_lines(theirs)}")

        if args.skip_cli:
            return
        cli_diff, cli_write = [], []
        for _ in range(args.repeats):
            for mode, into in (("--diff", cli_diff), ("write", cli_write)):
                path.write_text(source)
                argv = [sys.executable, "-m", "codemod", "apply", "--no-progress", "-j", "1", str(path)]
                if mode == "--diff":
                    argv.insert(4, "--diff")
                into.append(timed(lambda: subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        d, w = statistics.median(cli_diff), statistics.median(cli_write)
        print()
        print("| whole command (median of %d) | s |" % args.repeats)
        print("|---|---:|")
        print(f"| codemod apply --diff | {d:.2f} |")
        print(f"| codemod apply (writes) | {w:.2f} |")
        print(f"\nratio --diff / write: {d / w:.2f}")


if __name__ == "__main__":
    main()
