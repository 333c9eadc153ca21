"""Overhead of the in-place locator on a small transformer encoder block.

    python tests/benchmarks/bench_locator.py                       # d_model 256, seq 128, batch 8, CPU
    python tests/benchmarks/bench_locator.py --device cuda --repeats 50
    python tests/benchmarks/bench_locator.py --threads 1          # steadier on a shared machine

The block is written in plain torch ops (not ``nn.TransformerEncoderLayer``, whose fused fast path
would hide the ops): pre-norm multi-head attention with softmax, LayerNorm, a GELU feed-forward
and residuals. Plain and located runs alternate within one process, so both see the same machine
state; each figure is the median of ``--repeats`` runs after a warm-up. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from torch.utils._python_dispatch import TorchDispatchMode

from codemod.verify.locator import InplaceLocator


class EncoderBlock(nn.Module):
    """A pre-norm transformer encoder block; trainable, so the forward saves tensors for backward."""

    def __init__(self, d_model: int = 256, heads: int = 8, ff: int = 1024):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, ff)
        self.ff2 = nn.Linear(ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, d_model = x.shape
        head_dim = d_model // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(d_model, dim=-1)
        q = q.view(batch, seq, self.heads, head_dim).transpose(1, 2)
        k = k.view(batch, seq, self.heads, head_dim).transpose(1, 2)
        v = v.view(batch, seq, self.heads, head_dim).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(head_dim)
        attn = torch.softmax(scores, dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(batch, seq, d_model)
        x = x + self.proj(y)
        x = x + self.ff2(F.gelu(self.ff1(self.ln2(x))))
        return x


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1000.0


def measure(d_model: int, seq: int, batch: int, device: torch.device, repeats: int, warmup: int) -> dict[str, float]:
    """Median milliseconds of each run kind, plus the tensors saved and aten ops per forward."""
    torch.manual_seed(0)
    block = EncoderBlock(d_model).to(device)
    x = torch.randn(batch, seq, d_model, device=device)
    root = Path(__file__).resolve().parent

    def forward() -> torch.Tensor:
        return block(x)

    def located_forward() -> torch.Tensor:
        with InplaceLocator(roots=[root]) as locator:
            out = block(x)
        assert not locator.findings, locator.findings  # the block writes nothing in place
        return out

    def forward_backward() -> None:
        block.zero_grad(set_to_none=True)
        block(x).square().mean().backward()

    def located_forward_backward() -> None:
        block.zero_grad(set_to_none=True)
        located_forward().square().mean().backward()

    runs = {
        "forward": forward,
        "located": located_forward,
        "forward+backward": forward_backward,
        "located+backward": located_forward_backward,
    }
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():  # interleaved: plain and located see the same conditions
            samples[name].append(timed(fn, device))
    result = {name: statistics.median(values) for name, values in samples.items()}

    with InplaceLocator(roots=[root]) as locator, _OpCounter() as counter:
        block(x)
        result["saved"] = sum(len(refs) for refs in locator._index.values())
    result["ops"] = counter.count
    return result


class _OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    configs = [
        (args.d_model, args.seq, args.batch, "the goal's size"),
        (64, 16, 1, "tiny, so per-op Python overhead dominates"),
    ]
    print(
        f"In-place locator overhead on a transformer encoder block: {device.type}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats} interleaved runs\n"
    )
    print(
        "| block (d_model, seq, batch) | aten ops / saved tensors per forward | run | plain ms | under locator ms | ratio |"
    )
    print("|---|---:|---|---:|---:|---:|")
    for d_model, seq, batch, note in configs:
        m = measure(d_model, seq, batch, device, args.repeats, args.warmup)
        label = f"{d_model}, {seq}, {batch} ({note})"
        counts = f"{m['ops']} / {m['saved']}"
        for run, plain, located in (
            ("forward", "forward", "located"),
            ("forward + backward", "forward+backward", "located+backward"),
        ):
            ratio = m[located] / m[plain]
            print(f"| {label} | {counts} | {run} | {m[plain]:.2f} | {m[located]:.2f} | {ratio:.2f}x |")
            label, counts = "", ""
    return 0


if __name__ == "__main__":
    sys.exit(main())
