"""Unified diffs of rewritten files (``a/`` and ``b/`` prefixes, as git shows them).

The diff is minimal for each changed region (Myers' O(ND) shortest edit script, git's default
algorithm) and costs no more than writing the file. Most of a rewritten file is unchanged, so the
two texts are compared as strings first (slices of doubling length: ``memcmp`` speed, no line
objects) up to the next difference; only there are lines split, in a window that grows until the
texts run equal again for ``_RESYNC`` lines, and the shortest edit script of that window is taken.
``difflib`` did neither: it split and compared every line in Python, and its "popular line"
heuristic (lines that occur often in a file of more than 200 lines count as junk) showed unchanged
lines as removed and re-added. Lines end at ``\n`` only, as git and patch see them.
"""

from __future__ import annotations

from ..findings import FileResult

CONTEXT = 3
_RESYNC = 16  # equal lines that end a changed region (more than 2 * CONTEXT: hunks split there)
_WINDOW = 64  # lines split at a difference, at first (x4 until the texts run equal again)
# Beyond this many changed lines in one window the edit script is not searched for (its trace
# grows as D squared): the window is shown as replaced. Rewrites stay far below.
_MAX_EDIT_DISTANCE = 4000


def _gallop(same, limit: int, known: int, step: int) -> int:
    """The end of the equal run: ``same(lo, hi)`` tells whether items ``lo:hi`` are equal (all
    before ``known`` are); probes of doubling length, then a binary search in the last one."""
    while known < limit:
        probe = min(known + step, limit)
        if same(known, probe):
            known, step = probe, step * 2
            continue
        lo, hi = known, probe
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if same(lo, mid):
                lo = mid
            else:
                hi = mid
        return lo
    return known


def _common_prefix(a: str, i: int, b: str, j: int) -> int:
    """Length of the common prefix of ``a[i:]`` and ``b[j:]``."""
    return _gallop(lambda lo, hi: a[i + lo : i + hi] == b[j + lo : j + hi], min(len(a) - i, len(b) - j), 0, 256)


def split_lines(text: str) -> list[str]:
    """Lines ending at ``\n`` (kept); the last one may lack it."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _take_lines(text: str, start: int, count: int) -> int:
    """The offset after ``count`` lines from ``start`` (or the end of ``text``)."""
    pos = start
    for _ in range(count):
        nl = text.find("\n", pos)
        if nl < 0:
            return len(text)
        pos = nl + 1
    return pos


def _starts(lines: list[str], offset: int) -> list[int]:
    out = [offset]
    for line in lines:
        offset += len(line)
        out.append(offset)
    return out


class Change:
    """Lines ``i1:i2`` of the old text (characters ``a1:a2``) became lines ``j1:j2`` of the new
    one (characters ``b1:b2``)."""

    __slots__ = ("i1", "i2", "j1", "j2", "a1", "a2", "b1", "b2")

    def __init__(self, i1: int, i2: int, j1: int, j2: int, a1: int, a2: int, b1: int, b2: int) -> None:
        self.i1, self.i2, self.j1, self.j2, self.a1, self.a2, self.b1, self.b2 = i1, i2, j1, j2, a1, a2, b1, b2


def changes(old: str, new: str) -> list[Change]:
    """The changed regions of ``old`` -> ``new``, in order."""
    out: list[Change] = []
    pa = pb = 0  # offsets of the same line start in both texts; everything before is accounted for
    la = lb = 0  # their line numbers
    while True:
        same = _common_prefix(old, pa, new, pb)
        if pa + same == len(old) and pb + same == len(new):
            return out
        cut = old.rfind("\n", pa, pa + same) + 1 or pa  # the start of the line holding the difference
        skipped = old.count("\n", pa, cut)
        la, lb, pb, pa = la + skipped, lb + skipped, pb + cut - pa, cut
        window = _WINDOW
        while True:
            ea, eb = _take_lines(old, pa, window), _take_lines(new, pb, window)
            wa, wb = split_lines(old[pa:ea]), split_lines(new[pb:eb])
            blocks = _myers(wa, wb)
            last = blocks[-1] if blocks else (len(wa), len(wb), 0)
            tail_equal = last[0] + last[2] == len(wa) and last[1] + last[2] == len(wb)
            at_end = ea == len(old) and eb == len(new)
            if at_end or (tail_equal and last[2] >= _RESYNC):
                break
            window *= 4
        starts_a, starts_b = _starts(wa, pa), _starts(wb, pb)
        i = j = 0
        for bi, bj, size in [*blocks, (len(wa), len(wb), 0)]:
            if bi > i or bj > j:
                out.append(
                    Change(la + i, la + bi, lb + j, lb + bj, starts_a[i], starts_a[bi], starts_b[j], starts_b[bj])
                )
            i, j = bi + size, bj + size
        if not (tail_equal and last[2]):
            return out  # the window reached both ends
        i, j = last[0], last[1]  # go on from the start of the window's trailing equal run
        la, lb, pa, pb = la + i, lb + j, starts_a[i], starts_b[j]


def _equal_run(a: list[str], b: list[str], i: int, j: int) -> int:
    """How many lines are equal from ``a[i]`` and ``b[j]`` on."""
    limit = min(len(a) - i, len(b) - j)
    if limit <= 0 or a[i] != b[j]:
        return 0
    return _gallop(lambda lo, hi: a[i + lo : i + hi] == b[j + lo : j + hi], limit, 1, 8)


def _myers(a: list[str], b: list[str]) -> list[tuple[int, int, int]]:
    n, m = len(a), len(b)
    if not n or not m:
        return []
    offset = n + m + 1
    v = [0] * (2 * offset + 1)
    trace: list[list[int]] = []
    for d in range(min(n + m, _MAX_EDIT_DISTANCE) + 1):
        trace.append(v[offset - d - 1 : offset + d + 2])
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and v[offset + k - 1] < v[offset + k + 1]):
                x = v[offset + k + 1]  # down: insert b[y]
            else:
                x = v[offset + k - 1] + 1  # right: delete a[x]
            y = x - k
            if x < n and y < m:
                x += _equal_run(a, b, x, y)
            v[offset + k] = x
            if x >= n and x - k >= m:
                return _backtrack(trace, n, m)
    return []  # too many changes: everything between the equal head and tail is replaced


def _backtrack(trace: list[list[int]], n: int, m: int) -> list[tuple[int, int, int]]:
    blocks = []
    x, y = n, m
    for d in range(len(trace) - 1, -1, -1):
        saved = trace[d]  # v before step d, for k in -d-1 .. d+1

        def at(k: int) -> int:
            return saved[k + d + 1]

        k = x - y
        if d == 0:
            start_x, start_y = 0, 0
        else:
            prev_k = k + 1 if k == -d or (k != d and at(k - 1) < at(k + 1)) else k - 1
            prev_x = at(prev_k)
            prev_y = prev_x - prev_k
            start_x, start_y = (prev_x, prev_y + 1) if prev_k == k + 1 else (prev_x + 1, prev_y)
        if x > start_x:
            blocks.append((start_x, start_y, x - start_x))
        if d:
            x, y = prev_x, prev_y
    blocks.reverse()
    return blocks


def _range(start: int, stop: int) -> str:
    length = stop - start
    if length == 1:
        return str(start + 1)
    return f"{start + 1 if length else start},{length}"


def _line(prefix: str, text: str) -> str:
    return prefix + text if text.endswith("\n") else prefix + text + "\n\\ No newline at end of file\n"


def diff_texts(old: str, new: str, before: str, after: str, context: int = CONTEXT) -> str:
    """A unified diff of two texts; empty when they are equal."""
    found = changes(old, new)
    if not found:
        return ""
    out = [f"--- {before}\n", f"+++ {after}\n"]
    hunk = [found[0]]
    for change in found[1:]:
        if change.i1 - hunk[-1].i2 > 2 * context:
            out.append(_hunk(old, new, hunk, context))
            hunk = []
        hunk.append(change)
    out.append(_hunk(old, new, hunk, context))
    return "".join(out)


def _hunk(old: str, new: str, hunk: list[Change], context: int) -> str:
    first, last = hunk[0], hunk[-1]
    lead_start, lead = first.a1, 0
    while lead < context and lead_start > 0:
        lead_start = old.rfind("\n", 0, lead_start - 1) + 1
        lead += 1
    trail_end = _take_lines(old, last.a2, context)
    trail = len(split_lines(old[last.a2 : trail_end]))
    a_start, b_start = first.i1 - lead, first.j1 - lead
    a_stop, b_stop = last.i2 + trail, last.j2 + trail
    body = [f"@@ -{_range(a_start, a_stop)} +{_range(b_start, b_stop)} @@\n"]
    pos = lead_start
    for c in hunk:
        body += [_line(" ", line) for line in split_lines(old[pos : c.a1])]
        body += [_line("-", line) for line in split_lines(old[c.a1 : c.a2])]
        body += [_line("+", line) for line in split_lines(new[c.b1 : c.b2])]
        pos = c.a2
    body += [_line(" ", line) for line in split_lines(old[pos:trail_end])]
    return "".join(body)


def unified_diff(result: FileResult) -> str:
    if result.new_source is None or result.old_source is None:
        return ""
    if result.path.startswith("/"):
        before, after = result.path, result.path
    else:
        before, after = f"a/{result.path}", f"b/{result.path}"
    return diff_texts(result.old_source, result.new_source, before, after)


def render(results: list[FileResult]) -> str:
    return "".join(unified_diff(r) for r in results if r.changed)
