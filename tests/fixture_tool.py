"""Show what the codemod does with fixtures, and record it once reviewed.

    python tests/fixture_tool.py inplace/timesnet_norm          # show diff and findings
    python tests/fixture_tool.py inplace/timesnet_norm --write  # write .expected.py / .findings

Recording is for after a human has read the diff: the fixture tests then pin that behaviour.
"""

from __future__ import annotations

import argparse
import difflib
import sys

from codemod.engine import FileTask, Selection, analyse_bytes
from fixture_runner import load_fixtures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*", help="family/name (default: all)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.write and not args.names:
        parser.error("--write records reviewed fixtures: name them (family/name ...)")
    for fx in load_fixtures():
        if args.names and fx.id not in args.names:
            continue
        result = analyse_bytes(
            fx.source.encode(), FileTask("f.py", "f.py", Selection.build([fx.family]).codes, fx.mode)
        )
        print(f"=== {fx.id} (mode={fx.mode}, expect={fx.expect})")
        if result.skipped:
            print("SKIPPED", result.skipped)
        if result.new_source is not None:
            sys.stdout.writelines(
                difflib.unified_diff(fx.source.splitlines(True), result.new_source.splitlines(True), "before", "after")
            )
        for r in result.results:
            print(f"  {r.location.line}:{r.location.column} {r.code} {'[fixed]' if r.fixed else ''} {r.message}")
        if args.write:
            expected = fx.path.with_name(fx.name + ".expected.py")
            findings = fx.path.with_name(fx.name + ".findings")
            if result.new_source is not None:
                expected.write_text(result.new_source, encoding="utf-8")
            elif expected.exists():
                expected.unlink()
            lines = [f"{r.location.line}:{r.location.column} {r.code}" for r in result.results if not r.suppressed]
            if lines:
                findings.write_text("\n".join(lines) + "\n", encoding="utf-8")
            elif findings.exists():
                findings.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
