"""``# codemod: ignore`` and ``# codemod: ignore[CODE, ...]`` comments."""

from __future__ import annotations

import io
import re
import tokenize

_PATTERN = re.compile(r"#\s*codemod:\s*ignore(?:\[(?P<codes>[A-Za-z0-9_,\s-]*)\])?", re.IGNORECASE)

ALL = frozenset({"*"})


def suppressions(source: str) -> dict[int, frozenset[str]]:
    """Line -> codes suppressed on that line (``{"*"}`` for all). Only real comments count, not
    text inside strings."""
    if "codemod:" not in source:
        return {}
    out: dict[int, frozenset[str]] = {}
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return {}
    for tok in tokens:
        if tok.type != tokenize.COMMENT:
            continue
        match = _PATTERN.search(tok.string)
        if not match:
            continue
        codes = match.group("codes")
        if codes is None or not codes.strip():
            out[tok.start[0]] = ALL
        else:
            out[tok.start[0]] = frozenset(c.strip().upper() for c in codes.split(",") if c.strip())
    return out


def is_suppressed(table: dict[int, frozenset[str]], lines: range | list[int], code: str) -> bool:
    for line in lines:
        codes = table.get(line)
        if codes is not None and (codes is ALL or "*" in codes or code.upper() in codes):
            return True
    return False
