"""``codemod locate [options] -- COMMAND``: the command line around :mod:`codemod.locate`.

Exit status: 1 when a hazard was located; otherwise the command's own (128+N when a signal N
ended it, 124 when ``--timeout`` ended it, 130 on Ctrl-C); 2 for usage and configuration errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import MODES, ConfigFinder
from ..engine import known_selectors
from ..reports import diff as diff_report
from ..writer import WriteError, write_atomic
from . import LocateError

EXIT_LOCATED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_INTERRUPTED = 1, 2, 124, 130

DESCRIPTION = (
    "Run COMMAND (python train.py, python -m pkg.train, pytest, torchrun ...) with the in-place locator in "
    "every Python process it starts, and report each in-place write into a tensor autograd saved for "
    "backward (the write, the op that saved it, the tensor, how often) and each in-place error autograd "
    "raises at the write, with what the rules do there. By default the run is stopped once the first "
    "backward after a located write has finished."
)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "locate",
        help="run a command under the in-place locator (codemod locate -- python train.py)",
        description=DESCRIPTION,
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--diff",
        action="store_true",
        help="print the rewrites at the located lines as a unified diff "
        "(the report and the command's output go to stderr)",
    )
    what.add_argument("--apply", action="store_true", help="write the rewrites at the located lines")
    p.add_argument(
        "--until",
        choices=("backward", "exit"),
        default="backward",
        help="backward: stop the run once the first backward after a located write has finished, or at the "
        "first in-place error (default); exit: let it run to its end",
    )
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="end the run after SECONDS")
    p.add_argument("--format", choices=("text", "json", "sarif"), default="text", help="report format (default: text)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE")
    p.add_argument("--select", metavar="LIST", help="rule families or codes the rewrites may use")
    p.add_argument("--ignore", metavar="LIST", help="rule families or codes to skip")
    p.add_argument("--mode", choices=MODES, help="as for apply")
    p.add_argument("-j", "--jobs", type=int, default=None, metavar="N", help="worker processes for the analysis")
    p.add_argument(
        "--config", metavar="FILE", help="use this pyproject.toml or codemod.toml instead of the nearest one"
    )
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the command to run, after --")
    return p


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def cmd_locate(args) -> int:
    try:
        return _locate(args)
    except LocateError as exc:
        print(f"codemod: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _locate(args) -> int:
    from ..verify.runner import repository_root
    from .merge import merge_reports
    from .report import render_json, render_sarif, render_text
    from .run import run_located
    from .upgrade import analyse_located

    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise LocateError("no command given: codemod locate [options] -- COMMAND [ARGS...]")
    if args.timeout is not None and args.timeout <= 0:
        raise LocateError("--timeout must be positive")
    if args.jobs is not None and args.jobs < 1:
        raise LocateError("--jobs must be at least 1")
    finder = ConfigFinder(known_selectors(), Path(args.config) if args.config else None)
    root = repository_root(Path.cwd(), finder)
    select, ignore = _split(args.select), _split(args.ignore)
    if select is not None or ignore is not None:
        from ..engine import Selection

        Selection.build(select or (), ignore or ())  # a bad code is a usage error before the run, not after

    sys.stdout.flush()
    machine_stdout = args.diff or (args.format != "text" and not args.output)
    run = run_located(argv, roots=[root], until=args.until, timeout=args.timeout, output_to_stderr=machine_stdout)
    hazards = merge_reports(run.processes)
    analysed = analyse_located(hazards, root, finder, select=select, ignore=ignore, mode=args.mode, jobs=args.jobs)
    changes = [(task, result) for task, result in analysed if result.changed]
    failed_writes = False
    if args.apply:
        for task, result in changes:
            try:
                write_atomic(Path(task.path), result.old_source, result.new_source, result.encoding)
            except WriteError as exc:
                print(f"codemod: {exc}", file=sys.stderr)
                failed_writes = True
                continue
            for hazard in hazards:
                if (
                    hazard.engine.get("action") == "rewrite"
                    and Path(root, hazard.write["path"]).resolve() == Path(task.path).resolve()
                ):
                    hazard.engine["action"] = "rewritten"
    changed = [task.display for task, _ in changes]
    if args.format == "json":
        report = render_json(run, hazards, root, changed)
    elif args.format == "sarif":
        report = render_sarif(run, hazards, root)
    else:
        report = render_text(run, hazards, root)
    if args.diff:
        sys.stdout.write(diff_report.render([result for _, result in changes]))
    if args.output:
        Path(args.output).write_text(report, encoding="utf-8")
        sys.stderr.write(
            report.splitlines()[-1] + "\n"
            if args.format == "text"
            else f"codemod locate: {len(hazards)} hazard{'s' if len(hazards) != 1 else ''} located\n"
        )
    elif args.diff:
        sys.stderr.write(report)
    else:
        sys.stdout.write(
            ("\n" if run.stopped and args.format == "text" else "") + report
        )  # the output may stop mid-line
    if hazards or failed_writes:
        return EXIT_LOCATED
    if run.interrupted:
        return EXIT_INTERRUPTED
    if run.timed_out:
        return EXIT_TIMEOUT
    if run.returncode is None:
        return EXIT_LOCATED
    return run.returncode if run.returncode >= 0 else 128 - run.returncode
