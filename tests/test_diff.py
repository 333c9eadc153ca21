"""Unified diffs: they apply, they are minimal (no unchanged line shown as removed and re-added),
and a large generated file's diff shows only the rewritten lines."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from codemod.reports.diff import diff_texts

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))


def lcs_length(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def apply_patch(old: list[str], patch: str) -> list[str]:
    """A strict patch applier: every context and removed line must match."""
    lines = patch.splitlines(keepends=True)
    out, i, pos = [], 0, 2
    while pos < len(lines):
        header = re.match(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@\n", lines[pos])
        assert header, lines[pos]
        start = int(header[1]) - 1 if int(header[2] or 1) else int(header[1])
        assert start >= i
        out += old[i:start]
        i, pos = start, pos + 1
        while pos < len(lines) and not lines[pos].startswith("@@"):
            kind, text = lines[pos][0], lines[pos][1:]
            if pos + 1 < len(lines) and lines[pos + 1].startswith("\\ No newline"):
                text, pos = text[:-1], pos + 1
            if kind in " -":
                assert old[i] == text, (old[i], text)
                i += 1
            if kind in " +":
                out.append(text)
            pos += 1
    return out + old[i:]


def changed_count(patch: str) -> int:
    return sum(1 for line in patch.splitlines()[2:] if line[:1] in "+-")


def check(old: list[str], new: list[str], context: int = 3) -> str:
    patch = diff_texts("".join(old), "".join(new), "a/x", "b/x", context)
    if old == new:
        assert patch == ""
        return patch
    assert patch.startswith("--- a/x\n+++ b/x\n@@ ")
    assert apply_patch(old, patch) == new
    assert changed_count(patch) == len(old) + len(new) - 2 * lcs_length(old, new)  # minimal
    return patch


def _lines(rng: random.Random, alphabet: list[str], n: int) -> list[str]:
    lines = [rng.choice(alphabet) for _ in range(n)]
    if lines and rng.random() < 0.3:
        lines[-1] = lines[-1].rstrip("\n") or "z"  # no newline at the end
    return lines


@pytest.mark.parametrize("seed", range(6))
def test_small_random_texts(seed):
    rng = random.Random(seed)
    for _ in range(400):
        alphabet = ["a\n", "b\n", "c\n", "\n"][: rng.randint(1, 4)]
        check(_lines(rng, alphabet, rng.randint(0, 14)), _lines(rng, alphabet, rng.randint(0, 14)), rng.randint(0, 3))


@pytest.mark.parametrize("seed", range(8))
def test_local_edits_in_large_texts(seed):
    """Edits far apart and close together, in texts with many repeated lines (where difflib's junk
    heuristic showed unchanged lines as changed), longer than the diff's first window."""
    rng = random.Random(seed)
    alphabet = [f"line {i}\n" for i in range(40)] + ["\n", "    return x\n"] * 10
    old = [rng.choice(alphabet) for _ in range(rng.randint(200, 600))]
    new = list(old)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(new) + 1)
        kind = rng.choice(["insert", "delete", "replace", "block"])
        if kind == "insert":
            new[at:at] = [rng.choice(alphabet) for _ in range(rng.randint(1, 3))]
        elif kind == "delete":
            del new[at : at + rng.randint(1, 3)]
        elif kind == "replace":
            new[at : at + 1] = [f"changed {rng.random()}\n"]
        else:
            new[at:at] = [f"inserted {i}\n" for i in range(rng.randint(60, 300))]  # longer than a window
    check(old, new)


def test_generated_file_diff_shows_only_the_rewritten_lines(tmp_path):
    from bench_diff import generate

    from codemod.engine import FileTask, Selection, analyse_bytes
    from codemod.reports.diff import unified_diff

    source = generate(12_000)
    result = analyse_bytes(source.encode(), FileTask("gen.py", "gen.py", Selection.build().codes))
    rewrites = sum(r.fixed for r in result.results)
    patch = unified_diff(result)
    assert rewrites >= 4 and changed_count(patch) == 2 * rewrites  # `x /= s` -> `x = x / s`, nothing else
    from bench_diff import difflib_diff

    assert changed_count(difflib_diff(result.old_source, result.new_source)) > 2 * rewrites  # what it replaced
    (tmp_path / "gen.py").write_text(source)
    subprocess.run(["git", "apply", "-"], cwd=tmp_path, input=patch, text=True, check=True)
    assert (tmp_path / "gen.py").read_text() == result.new_source
