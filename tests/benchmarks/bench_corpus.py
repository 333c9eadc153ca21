"""Speed of ``codemod apply --diff`` on a large real corpus, against a bare LibCST parse and TorchFix.

    python tests/benchmarks/bench_corpus.py                      # transformers 5.23.0 models/
    python tests/benchmarks/bench_corpus.py --corpus DIR --jobs 2
    python tests/benchmarks/bench_corpus.py --torchfix /path/to/venv/bin/torchfix
    python tests/benchmarks/bench_corpus.py --corpus DIR --jobs 2 --baseline /tmp/main-src --no-single

``--baseline SRC`` also times ``python -m codemod.cli apply`` from another checkout's source tree
(``git archive main | tar -x -C SRC``), in the same run, so a change is compared with the code
before it on equal terms.

The default corpus is ``transformers/models`` from the transformers==5.23.0 wheel (downloaded with
pip into ~/.cache/torch-codemod-bench the first time). TorchFix 0.7 needs libcst < 1.6, so it runs
from its own virtual environment:  python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install
torchfix==0.7.0. It costs about 1 CPU-s per file, so it is timed on a sample (``--torchfix-files``)
and codemod is timed on the same sample for the ratio.

Everything is measured in one run, so ratios compare like with like on a shared machine; the
absolute seconds depend on the machine. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import glob
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

CACHE = Path.home() / ".cache" / "torch-codemod-bench"
WHEEL = "transformers==5.23.0"


def default_corpus() -> Path:
    target = CACHE / "transformers-5.23.0"
    models = target / "transformers" / "models"
    if models.is_dir():
        return models
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("transformers-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(target, [n for n in zf.namelist() if n.startswith("transformers/models/")])
    return models


def _parse_file(path: str) -> int:
    import libcst as cst

    with open(path, "rb") as fh:
        cst.parse_module(fh.read())
    return 1


def bare_parse(files: list[str], jobs: int) -> tuple[float, float]:
    """Wall and CPU seconds of parsing every file with LibCST (no analysis)."""
    start = time.perf_counter()
    cpu0 = time.process_time()
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if jobs == 1:
        for f in files:
            _parse_file(f)
    else:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            list(pool.imap_unordered(_parse_file, files, chunksize=8))
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu0 + (child1.ru_utime - child0.ru_utime) + (child1.ru_stime - child0.ru_stime)
    return time.perf_counter() - start, cpu


def run_command(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds, peak RSS (MiB) of a command and its children, and its stderr."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)\n"
        "w = time.perf_counter() - t\n"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(w, r.ru_utime + r.ru_stime, r.ru_maxrss / 1024, file=sys.stderr)\n"
        "sys.stderr.write(p.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], cwd=cwd, capture_output=True, text=True, env=env)
    first, _, rest = proc.stderr.partition("\n")
    wall, cpu, rss = (float(x) for x in first.split())
    return wall, cpu, rss, rest


def codemod_exe() -> str:
    exe = shutil.which("codemod") or str(Path(sys.executable).with_name("codemod"))
    return exe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="directory of .py files (default: transformers 5.23.0 models/)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--torchfix", help="path to a torchfix 0.7 executable (in its own venv)")
    parser.add_argument("--torchfix-files", type=int, default=60, help="sample size for the TorchFix comparison")
    parser.add_argument("--no-scaling", action="store_true", help="skip the 25%%/50%% runs")
    parser.add_argument("--no-single", action="store_true", help="skip the one-process bare parse")
    parser.add_argument("--baseline", type=Path, help="source tree of another version to time in the same run")
    args = parser.parse_args()

    corpus = (args.corpus or default_corpus()).resolve()
    files = sorted(glob.glob(str(corpus / "**" / "*.py"), recursive=True))
    lines = sum(Path(f).read_bytes().count(b"\n") for f in files)
    print(
        f"corpus: {corpus} ({len(files)} files, {lines:,} lines); jobs={args.jobs}; python {sys.version.split()[0]}\n"
    )

    rows = []
    wall1 = cpu1 = None
    if not args.no_single:
        wall1, cpu1 = bare_parse(files, 1)
        rows.append(("bare LibCST parse, 1 process", len(files), wall1, cpu1, None))
    wallj, cpuj = bare_parse(files, args.jobs)
    rows.append((f"bare LibCST parse, {args.jobs} processes", len(files), wallj, cpuj, None))

    cmd = [codemod_exe(), "apply", "--diff", "--no-progress", "-j", str(args.jobs), str(corpus)]
    wall, cpu, rss, err = run_command(cmd, corpus)
    summary = [line for line in err.splitlines() if line.startswith("Scanned")]
    rows.append((f"codemod apply --diff -j {args.jobs}", len(files), wall, cpu, rss))
    base = None
    if args.baseline:
        env = dict(os.environ, PYTHONPATH=str(args.baseline.resolve()))
        bcmd = [
            sys.executable,
            "-m",
            "codemod.cli",
            "apply",
            "--diff",
            "--no-progress",
            "-j",
            str(args.jobs),
            str(corpus),
        ]
        bwall, bcpu, brss, berr = run_command(bcmd, corpus, env)
        base = (bwall, bcpu, [line for line in berr.splitlines() if line.startswith("Scanned")])
        rows.append((f"baseline ({args.baseline}) apply --diff -j {args.jobs}", len(files), bwall, bcpu, brss))

    scaling = []
    if not args.no_scaling:
        for fraction in (0.25, 0.5):
            subset = files[:: int(1 / fraction)]
            w, c, r, _ = run_command(
                [codemod_exe(), "apply", "--diff", "--no-progress", "-j", str(args.jobs), *subset], corpus
            )
            scaling.append((fraction, len(subset), w, c))
        scaling.append((1.0, len(files), wall, cpu))

    print("| what | files | wall s | CPU s | files/s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, n, w, c, r in rows:
        print(f"| {name} | {n} | {w:.1f} | {c:.1f} | {n / w:.0f} | {'' if r is None else f'{r:.0f}'} |")
    print()
    if wall1 is not None:
        print(f"wall ratio codemod / bare parse (1 process): {wall / wall1:.2f}")
    print(f"wall ratio codemod / bare parse ({args.jobs} processes): {wall / wallj:.2f}")
    print(f"CPU ratio codemod / bare parse: {cpu / (cpu1 if cpu1 is not None else cpuj):.2f}")
    if summary:
        print(f"codemod said: {summary[0]}")
    if base is not None:
        print(
            f"baseline wall ratio / bare parse ({args.jobs} processes): {base[0] / wallj:.2f}; "
            f"CPU ratio: {base[1] / (cpu1 if cpu1 is not None else cpuj):.2f}"
        )
        if base[2]:
            print(f"baseline said: {base[2][0]}")
    if scaling:
        print("\n| corpus fraction | files | wall s | CPU s | CPU ms/file |")
        print("|---:|---:|---:|---:|---:|")
        for fraction, n, w, c in scaling:
            print(f"| {fraction:.2f} | {n} | {w:.1f} | {c:.1f} | {1000 * c / n:.1f} |")

    if args.torchfix:
        sample = files[:: max(1, len(files) // args.torchfix_files)][: args.torchfix_files]
        tw, tc, _, terr = run_command([args.torchfix, "-j", "1", *sample], corpus)
        cw, cc, _, _ = run_command([codemod_exe(), "apply", "--diff", "--no-progress", "-j", "1", *sample], corpus)
        checked = [line for line in terr.splitlines() if "Finished checking" in line]
        print(
            f"\nTorchFix comparison on {len(sample)} files, one process each ({checked[-1].strip() if checked else ''}):"
        )
        print("| tool | wall s | CPU s | CPU ms/file |")
        print("|---|---:|---:|---:|")
        print(f"| torchfix 0.7 | {tw:.1f} | {tc:.1f} | {1000 * tc / len(sample):.0f} |")
        print(f"| codemod | {cw:.1f} | {cc:.1f} | {1000 * cc / len(sample):.0f} |")
        print(f"codemod is {tc / cc:.1f}x faster than torchfix (CPU) on the same files")
    print("\ncommand: " + " ".join([sys.executable, *sys.argv]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
