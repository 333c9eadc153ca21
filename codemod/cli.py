"""The ``codemod`` command.

Exit codes: 0 nothing needs attention (clean, or every finding was rewritten and written);
1 something would change (``--check``/``--diff``) or a finding was reported but not rewritten,
or a file could not be written; 2 usage, configuration or output error (nothing was written);
3 internal error (a bug: please report it).

Every failure a user can cause ends as one line on stderr, ``codemod: error: PATH: reason``; a
traceback is shown only with ``--debug`` or ``CODEMOD_DEBUG=1``. A file that cannot be read,
parsed or written is reported and the run goes on with the others.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from . import __version__
from .config import DEVICES, MODES, ConfigError, ConfigFinder
from .discovery import DiscoveryError, Skipped, discover, tree_root
from .engine import SelectionError, build_tasks, known_selectors, run
from .findings import FileResult
from .locate import command as locate_command
from .progress import Progress
from .reports import diff as diff_report
from .reports import json_report, sarif, text
from .reports.summary import summarize
from .rules import RULES
from .verify import VerifyError
from .writer import WriteError, write_atomic

EXIT_OK, EXIT_ATTENTION, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class OutputError(Exception):
    """The report cannot go where it was asked to (``-o FILE``, a closed stdout)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 on usage errors, as documented
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="codemod", description="Find and fix PyTorch autograd bugs with LibCST codemods.")
    parser.add_argument("--version", action="version", version=f"torch-codemod {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (also: CODEMOD_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    apply = sub.add_parser(
        "apply",
        help="find autograd bugs and rewrite them in place",
        description="Find in-place writes into tensors autograd saved (and the other rule "
        "families), rewrite the safe ones, report the rest.",
    )
    apply.add_argument("paths", nargs="*", default=["."], metavar="PATH", help="files or directories (default: .)")
    what = apply.add_mutually_exclusive_group()
    what.add_argument(
        "--diff",
        action="store_true",
        help="print a unified diff on stdout and write nothing (the report goes to stderr)",
    )
    what.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if anything would change or is reported"
    )
    apply.add_argument(
        "--select", metavar="LIST", help="comma-separated rule families or codes to run (e.g. inplace,IP101)"
    )
    apply.add_argument("--ignore", metavar="LIST", help="comma-separated rule families or codes to skip")
    apply.add_argument(
        "--mode",
        choices=MODES,
        help="hazards: rewrite in-place ops that overwrite saved tensors (default); all: every safe in-place op in differentiable code",
    )
    apply.add_argument(
        "--format", choices=("text", "json", "sarif"), default="text", help="report format (default: text)"
    )
    apply.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    apply.add_argument(
        "-j", "--jobs", type=int, default=None, metavar="N", help="worker processes (default: all cores)"
    )
    apply.add_argument(
        "--config", metavar="FILE", help="use this pyproject.toml or codemod.toml instead of the nearest one"
    )
    apply.add_argument("--no-progress", action="store_true", help="no progress bar")
    apply.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="color in the text report")

    apply.add_argument(
        "--verify",
        action="store_true",
        help="prove the rewrites with the repository's smoke tests first; write only if they pass",
    )

    verify = sub.add_parser(
        "verify",
        help="prove the rewrites by running the repository's smoke tests",
        description="On throwaway copies of the repository, run the smoke tests on the original "
        "and the rewritten tree in a sandbox and compare outputs and gradients. "
        "Writes nothing. Exit 0 only when every rewrite is proven.",
    )
    verify.add_argument(
        "path", nargs="?", default=".", metavar="PATH", help="repository (or a directory or file in it; default: .)"
    )
    verify.add_argument("--format", choices=("text", "json"), default="text", help="verdict format (default: text)")
    verify.add_argument("-o", "--output", metavar="FILE", help="write the verdict to FILE instead of stdout")
    for p in (apply, verify):
        p.add_argument("--device", choices=DEVICES, help="where the smoke cases run (default: smoke.device, else auto)")
        p.add_argument(
            "--timeout", type=float, metavar="SECONDS", help="per smoke run (default: smoke.timeout, else 900)"
        )
    verify.add_argument("--select", metavar="LIST", help="comma-separated rule families or codes to run")
    verify.add_argument("--ignore", metavar="LIST", help="comma-separated rule families or codes to skip")
    verify.add_argument("--mode", choices=MODES, help="as for apply")
    verify.add_argument("-j", "--jobs", type=int, default=None, metavar="N", help="worker processes for the analysis")
    verify.add_argument(
        "--config", metavar="FILE", help="use this pyproject.toml or codemod.toml instead of the nearest one"
    )

    serve = sub.add_parser("serve", help="run the GitHub App (webhook, job store, queue and workers in one process)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default: 1)")
    worker = sub.add_parser("worker", help="run GitHub App workers alone (scale-out)")
    worker.add_argument("--threads", type=int, default=1, metavar="N", help="worker threads (default: 1)")
    worker.add_argument("--drain", action="store_true", help="exit once no job is queued or running")

    register = sub.add_parser("register", help="create the GitHub App from its manifest and write .env")
    register.add_argument("--org", help="register the App for this organization (default: your account)")
    register.add_argument(
        "--github-url", default="https://github.com", metavar="URL", help="GitHub or GitHub Enterprise"
    )
    register.add_argument("--api-url", metavar="URL", help="its REST API (default: derived from --github-url)")
    register.add_argument("--name", help="the App's name (default: torch-codemod-<random>)")
    register.add_argument("--webhook-url", metavar="URL", help="where GitHub delivers webhooks (POST /webhook)")
    register.add_argument("--env", default=".env", metavar="FILE", help="where to write the credentials (mode 0600)")
    register.add_argument("--port", type=int, default=0, help="local port of the registration page (default: any)")
    register.add_argument("--no-browser", action="store_true", help="only print the page's address")

    rules = sub.add_parser("rules", help="list the rules with an explanation and examples")
    rules.add_argument("selectors", nargs="*", metavar="CODE", help="show only these codes or families, in full")
    rules.add_argument("--format", choices=("text", "json"), default="text")
    locate_command.add_parser(sub)
    for p in (apply, verify, rules):
        p.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show the traceback of an error (also: CODEMOD_DEBUG=1)",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ours = argv[: argv.index("--")] if "--" in argv else argv  # `locate -- CMD --debug` is the command's flag
    debug = "--debug" in ours or bool(os.environ.get("CODEMOD_DEBUG"))
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        command = {
            "apply": cmd_apply,
            "rules": cmd_rules,
            "verify": cmd_verify,
            "locate": locate_command.cmd_locate,
            "serve": _serve,
            "worker": _worker,
            "register": _register,
        }[args.command]
        return command(args)
    except (ConfigError, SelectionError, DiscoveryError, VerifyError, OutputError) as exc:
        return _fail(exc, debug)
    except KeyboardInterrupt:
        _stderr("codemod: interrupted")
        return 130
    except BrokenPipeError:  # the reader went away (``| head``): nothing left to say
        _discard_stdout()
        return EXIT_ATTENTION
    except OSError as exc:  # a path the user gave that cannot be used: one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}", debug)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        _stderr(
            f"codemod: internal error: {type(exc).__name__}: {exc} (a bug; rerun with --debug for the "
            "traceback and please report it)"
        )
        return EXIT_INTERNAL


def _serve(args) -> int:
    from service import cli as service_cli  # the service's dependencies load only for its commands

    return service_cli.serve(args.host, args.port, args.workers)


def _register(args) -> int:
    from service import register as service_register

    return service_register.main(args)


def _worker(args) -> int:
    from service import cli as service_cli

    return service_cli.worker(args.threads, args.drain)


def _fail(exc: BaseException | str, debug: bool) -> int:
    if debug and isinstance(exc, BaseException):
        traceback.print_exception(exc)
    message = " ".join(str(exc).split("\n")[0].split()) if not isinstance(exc, str) else exc
    _stderr(f"codemod: error: {message}")
    return EXIT_USAGE


def _stderr(line: str) -> None:
    if sys.stderr is not None:
        try:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def _discard_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _emit(text_out: str) -> None:
    """The command's output on stdout; a reader that went away (``| head -1``) is not an error."""
    if sys.stdout is None:
        raise OutputError("stdout is closed; give -o FILE for the output")
    try:
        sys.stdout.write(text_out)
        sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot write to stdout: {getattr(exc, 'strerror', None) or exc}") from None


def check_output_target(output: str | None, needs_stdout: bool = True) -> None:
    """Refuse, before any work is done, a report target that cannot be written: ``-o`` into a
    missing or unwritable directory, onto a directory, or a closed stdout."""
    if output:
        target = Path(output)
        parent = target.parent
        if os.path.isdir(target):
            raise OutputError(f"-o {output}: is a directory")
        if not os.path.isdir(parent):
            raise OutputError(f"-o {output}: directory {parent} does not exist")
        writable = os.access(target, os.W_OK) if os.path.lexists(target) else os.access(parent, os.W_OK | os.X_OK)
        if not writable:
            raise OutputError(f"-o {output}: permission denied")
    if needs_stdout and sys.stdout is None:
        raise OutputError("stdout is closed; give -o FILE for the report")


def write_report(output: str, content: str) -> None:
    try:
        Path(output).write_text(content, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"-o {output}: cannot write the report: {exc.strerror or exc}") from None


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def cmd_verify(args) -> int:
    from .reports import verdict
    from .verify.runner import verify

    if args.jobs is not None and args.jobs < 1:
        raise SelectionError("--jobs must be at least 1")
    check_output_target(args.output)
    report = verify(
        args.path,
        config=args.config,
        device=args.device,
        timeout=args.timeout,
        select=_split(args.select),
        ignore=_split(args.ignore),
        mode=args.mode,
        jobs=args.jobs,
    )
    text_out = verdict.render_json(report) if args.format == "json" else verdict.render_text(report)
    if args.output:
        _stderr(f"verdict: {report.status}")
        write_report(args.output, text_out)
    else:
        _emit(text_out)
    return report.exit_code


def _write_all(pairs, write_root) -> list[str]:
    """Write every rewritten file; one that cannot be written is reported (``write_error``) and
    the others are still written. Returns the paths written."""
    written = []
    for task, result in pairs:
        if not result.changed:
            continue
        try:
            write_atomic(Path(task.path), result.old_source, result.new_source, result.encoding, write_root(task))
            written.append(task.path)
        except WriteError as exc:
            _stderr(f"codemod: error: {exc}")
            result.write_error = exc.reason
    return written


def _apply_verified(args) -> int:
    """``apply --verify``: one repository, written only when verification proves every rewrite."""
    from .api import fix_repository
    from .reports import verdict

    if args.diff or args.check:
        raise SelectionError("--verify writes files; it cannot be combined with --diff or --check")
    if len(args.paths) != 1:
        raise SelectionError("--verify takes one repository path")
    report = fix_repository(
        args.paths[0],
        gate=False,
        config=args.config,
        device=args.device,
        timeout=args.timeout,
        select=_split(args.select),
        ignore=_split(args.ignore),
        mode=args.mode,
        jobs=args.jobs,
    ).report
    sys.stderr.write(verdict.render_text(report))
    if report.status != "proven":
        if report.changes:
            _stderr("codemod: verification did not prove the rewrites; nothing was written")
        return report.exit_code
    root = Path(report.root)
    written = _write_all(report.changes, lambda task: root)
    n = len(written)
    _stderr(f"codemod: wrote {n} verified file{'s' if n != 1 else ''}")
    return EXIT_OK if n == len(report.changes) else EXIT_ATTENTION


def cmd_apply(args) -> int:
    if args.jobs is not None and args.jobs < 1:
        raise SelectionError("--jobs must be at least 1")
    if args.verify:
        return _apply_verified(args)
    check_output_target(args.output, needs_stdout=args.diff or not args.output)
    finder = ConfigFinder(known_selectors(), Path(args.config) if args.config else None)
    skipped: list[Skipped] = []
    files = discover(args.paths, finder, skipped=skipped)
    tasks = build_tasks(files, _split(args.select), _split(args.ignore), args.mode)
    write = not (args.diff or args.check)
    progress = Progress(len(tasks), enabled=not args.no_progress)
    start = time.perf_counter()
    results = run(tasks, args.jobs, on_result=progress.advance)
    progress.close()
    elapsed = time.perf_counter() - start

    exit_code = EXIT_OK
    written = False
    if write:
        roots = {str(f.path): f.root for f in files}
        written = bool(_write_all(zip(tasks, results), lambda task: roots.get(task.path)))
    results += [FileResult(s.display, skipped=s.reason) for s in skipped]
    mode = "diff" if args.diff else "check" if args.check else "apply"
    summary = summarize(results, elapsed, mode, written)
    if summary.needs_attention:
        exit_code = EXIT_ATTENTION

    color = args.color == "always" or (
        args.color == "auto" and sys.stdout is not None and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    )
    if args.format == "json":
        report = json_report.render(results, summary)
    elif args.format == "sarif":
        locations = {f.display: f.path for f in files} | {s.display: s.path for s in skipped}
        root = tree_root(Path(args.paths[0]), finder) if args.paths else Path.cwd()
        report = sarif.render(results, summary, root=root, paths=locations)
    else:
        report = text.render(results, summary, color=color and not args.output and not args.diff)
    if args.diff:
        _emit(diff_report.render(results))
    if args.output:
        _stderr(text.summary_line(summary))
        write_report(args.output, report)
    elif args.diff:
        sys.stderr.write(report)
    else:
        _emit(report)
        if args.format != "text":
            _stderr(text.summary_line(summary))
    return exit_code


def cmd_rules(args) -> int:
    check_output_target(None)
    wanted = {s.upper() if s.upper()[:2].isalpha() and any(ch.isdigit() for ch in s) else s for s in args.selectors}
    codes = []
    for rule in RULES:
        for code in rule.codes:
            if (
                not wanted
                or code.code in wanted
                or rule.family in wanted
                or any(code.code.startswith(w) for w in wanted)
            ):
                codes.append((rule.family, code))
    if wanted and not codes:
        raise SelectionError(f"no rule matches {', '.join(sorted(wanted))}")
    if args.format == "json":
        data = [
            {
                "code": c.code,
                "name": c.name,
                "family": fam,
                "summary": c.summary,
                "why": c.why,
                "fix": c.fix,
                "examples": [{"before": e.before, "after": e.after, "mode": e.mode} for e in c.examples],
            }
            for fam, c in codes
        ]
        _emit(json.dumps(data, indent=2) + "\n")
        return EXIT_OK
    full = bool(wanted)
    out = []
    family = None
    for fam, c in codes:
        if fam != family:
            out.append(f"{fam}:" if not out else f"\n{fam}:")
            family = fam
        out.append(f"  {c.code} {c.name} ({c.fix})")
        out.append(f"      {c.summary}")
        if full:
            out.append("")
            out.extend("      " + line for line in _wrap(c.why, 88))
        for ex in c.examples[: None if full else 1]:
            out.append("      before:")
            out.extend("        " + line for line in ex.before.rstrip("\n").splitlines())
            if ex.after is not None:
                out.append("      after:")
                out.extend("        " + line for line in ex.after.rstrip("\n").splitlines())
            else:
                out.append("      (reported, not rewritten)")
    if not full:
        out.append("\nRun `codemod rules CODE` for the full explanation and all examples.")
    _emit("\n".join(out) + "\n")
    return EXIT_OK


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
