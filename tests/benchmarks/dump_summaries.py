"""A canonical dump of ``program.summarize`` (lazy and not) over every ``.py`` file of some
directories, one line per file and mode, for comparing two versions of the summaries phase byte
for byte (sets sorted; dicts and lists in their own order, which the rules may depend on):

    python tests/benchmarks/dump_summaries.py OUT DIR [DIR ...]
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from codemod.candidates import Candidates  # noqa: E402
from codemod.program import summarize  # noqa: E402


def canonical(value: object) -> object:
    """``value`` as nested tuples whose ``repr`` does not depend on set iteration order."""
    if isinstance(value, Candidates):
        return ("Candidates", tuple(sorted(value)), value.blank)
    if dataclasses.is_dataclass(value):
        return (
            type(value).__name__,
            tuple((f.name, canonical(getattr(value, f.name))) for f in dataclasses.fields(value)),
        )
    if isinstance(value, (set, frozenset)):
        return ("set", tuple(sorted(repr(canonical(v)) for v in value)))
    if isinstance(value, dict):
        return ("dict", tuple((canonical(k), canonical(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(canonical(v) for v in value))
    if isinstance(value, bytes):
        return ("bytes", len(value), hashlib.sha1(value).hexdigest())
    return value


def main() -> int:
    out, *dirs = sys.argv[1:]
    with open(out, "w") as f:
        for d in dirs:
            for path in sorted(Path(d).rglob("*.py")):
                data = path.read_bytes()
                for lazy in (True, False):
                    try:
                        summary = canonical(summarize(str(path), str(path.relative_to(d)), data, lazy=lazy))
                    except RecursionError:
                        summary = "RecursionError"
                    f.write(f"{path} lazy={lazy} {summary!r}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
