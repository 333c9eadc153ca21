"""Overhead of `codemod locate` on the training steps of a small transformer.

    python tests/benchmarks/bench_locate.py                  # d_model 256, seq 128, batch 8, 2 blocks, CPU
    python tests/benchmarks/bench_locate.py --threads 1 --rounds 3 --steps 30

The same training script (two pre-norm encoder blocks from bench_locator.py, a linear head,
AdamW) runs as a child process, plainly and under ``codemod locate --until exit`` (the injected
bootstrap, the locator, the write-error mode and the backward hook: what a user's run gets), in
alternating rounds. Each child times its own steps after a warm-up, so interpreter and torch
start-up are not counted; the figure is the median step over all rounds. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def child(args: argparse.Namespace) -> int:
    import torch
    from torch import nn

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_locator import EncoderBlock

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = nn.Sequential(EncoderBlock(args.d_model), EncoderBlock(args.d_model), nn.Linear(args.d_model, 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch, args.seq, args.d_model)
    y = torch.randint(0, 10, (args.batch, args.seq))
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        optimizer.step()
        if step >= args.warmup:
            times.append((time.perf_counter() - start) * 1000.0)
    Path(args.out).write_text(json.dumps(times))
    return 0


def run_child(args: argparse.Namespace, located: bool, out: Path) -> list[float]:
    argv = [
        sys.executable,
        __file__,
        "--child",
        "--out",
        str(out),
        "--d-model",
        str(args.d_model),
        "--seq",
        str(args.seq),
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
    ]
    if located:
        argv = [sys.executable, "-m", "codemod", "locate", "--until", "exit", "--", *argv]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(
            f"{'located' if located else 'plain'} run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    if located and "nothing located; watched 1 process" not in proc.stdout:
        raise SystemExit(f"the located run did not run under the locator:\n{proc.stdout}")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    plain: list[float] = []
    located: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):  # alternating: both see the same machine state
            plain += run_child(args, False, Path(tmp, f"plain{i}.json"))
            located += run_child(args, True, Path(tmp, f"located{i}.json"))
    p, q = statistics.median(plain), statistics.median(located)
    print(
        f"Training step (forward, loss, backward, AdamW step) of 2 encoder blocks + head, "
        f"d_model {args.d_model}, seq {args.seq}, batch {args.batch}; threads {args.threads or 'default'}; "
        f"median of {len(plain)} steps over {args.rounds} alternating rounds\n"
    )
    print("| run | median step ms | ratio |")
    print("|---|---:|---:|")
    print(f"| plain `python train.py` | {p:.2f} | 1.00x |")
    print(f"| `codemod locate --until exit -- python train.py` | {q:.2f} | {q / p:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
