"""Files -> parse once -> rules -> edits -> results, in a process pool.

Per file: a cheap text test decides whether any selected rule can have a finding; the rules run
first on the file's skeleton (``skeleton.py``) as Python's parser reads it (``ast_to_cst.py``),
and only when they find anything there is the file parsed once with LibCST's native parser
(where that tree cannot tell, the skeleton is parsed with LibCST first, then the file if need
be); every selected rule reads the same tree and shared index; positions are computed only when
there are findings; edits are applied to the touched statements only. After any edit the rules
run again on the new tree (at most three rounds), applying edits that overlapped and were
deferred, and rewrites that only the first ones made provable, so the output is a fixpoint:
running the engine on it changes nothing.
"""

from __future__ import annotations

import array
import ast
import difflib
import gc
import io
import itertools
import multiprocessing
import os
import re
import sys
import time
import tokenize
import traceback
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

import libcst as cst

from . import ast_to_cst
from .context import FileContext
from .discovery import SourceFile
from .edits import apply_edits
from .findings import FileResult, Finding, Location, RelatedLocation, Result
from .program import FileSummary, Program, summarize
from .project import ProjectFacts
from .rules import RULES, Rule, RuleOptions
from .skeleton import skeleton
from .suppression import is_suppressed, suppressions

_MAX_ROUNDS = 3


class SelectionError(ValueError):
    pass


@dataclass(frozen=True)
class Selection:
    """Enabled rule codes, from ``select``/``ignore`` lists of families or codes."""

    codes: frozenset[str]

    @classmethod
    def build(cls, select: Iterable[str] = (), ignore: Iterable[str] = ()) -> "Selection":
        everything = {c.code: rule.family for rule in RULES for c in rule.codes}
        families = {rule.family for rule in RULES}

        def expand(items: Iterable[str]) -> set[str]:
            out = set()
            for item in items:
                key = item.strip()
                if not key:
                    continue
                if key in families:
                    out |= {code for code, fam in everything.items() if fam == key}
                elif key.upper() in everything:
                    out.add(key.upper())
                elif any(code.startswith(key.upper()) for code in everything):
                    out |= {code for code in everything if code.startswith(key.upper())}
                else:
                    raise SelectionError(
                        f"unknown rule or family {item!r} (families: {', '.join(sorted(families))}; codes like IP101)"
                    )
            return out

        selected = expand(select) if list(select) else set(everything)
        return cls(frozenset(selected - expand(ignore)))

    def rules(self) -> list[type[Rule]]:
        return [rule for rule in RULES if any(c.code in self.codes for c in rule.codes)]


def known_selectors() -> set[str]:
    out = {rule.family for rule in RULES}
    for rule in RULES:
        out |= {c.code for c in rule.codes}
    return out


@dataclass(frozen=True)
class FileTask:
    path: str
    display: str
    codes: frozenset[str]
    mode: str = "hazards"
    confirmed_lines: frozenset[int] = field(default_factory=frozenset)
    # Rule families that may have a finding here, from the whole-program phase's ``ast`` pass
    # (``candidates.possible_findings``); None: undecided (the file is parsed as usual).
    may_find: frozenset[str] | None = None
    # Run the rules first on the tree ``ast_to_cst`` builds from Python's parser, and parse with
    # LibCST only when they find anything there.
    mirror: bool = True


def needs_parse(task: FileTask) -> bool:
    """Whether ``task``'s file must be parsed with LibCST: some selected rule's family may have a
    finding there, or the runtime locator confirmed lines in it, or nothing was decided."""
    if task.may_find is None or task.confirmed_lines:
        return True
    return any(rule.family in task.may_find for rule in RULES if any(c.code in task.codes for c in rule.codes))


def build_tasks(
    files: list[SourceFile], select: list[str] | None = None, ignore: list[str] | None = None, mode: str | None = None
) -> list[FileTask]:
    """One task per file: its config's rule selection, narrowed by ``select``/``ignore`` from the
    command line (``select`` replaces the config's, ``ignore`` adds to it), and its mode."""
    if select is not None:
        Selection.build(select)  # validate early, with a clear error
    if ignore is not None:
        Selection.build((), ignore)
    selections: dict[tuple, frozenset[str]] = {}
    tasks = []
    for f in files:
        cfg = f.config
        chosen = select if select is not None else list(cfg.select)
        skipped = list(cfg.ignore) + (ignore or [])
        key = (tuple(chosen), tuple(skipped))
        if key not in selections:
            selections[key] = Selection.build(chosen, skipped).codes
        tasks.append(FileTask(str(f.path), f.display, selections[key], mode or cfg.inplace))
    return tasks


_prefilter_cache: dict[frozenset[str], re.Pattern[bytes]] = {}


def _prefilter(codes: frozenset[str]) -> re.Pattern[bytes] | None:
    pattern = _prefilter_cache.get(codes)
    if pattern is None:
        parts = [rule.prefilter.pattern for rule in RULES if any(c.code in codes for c in rule.codes)]
        if not parts:
            return None
        pattern = re.compile("|".join(f"(?:{p})" for p in parts).encode())
        _prefilter_cache[codes] = pattern
    return pattern


def parse_unvalidated(data: bytes) -> cst.Module:
    """``libcst.parse_module`` without re-validating every node the parser builds (valid by
    construction; the checks cost about a sixth of a parse). Nodes the rules build later are
    validated as usual."""
    from libcst._nodes.base import CSTNode

    validate = CSTNode.__post_init__
    CSTNode.__post_init__ = _no_validation
    try:
        return cst.parse_module(data)
    finally:
        CSTNode.__post_init__ = validate


def _no_validation(self) -> None:
    return None


def analyse_bytes(
    data: bytes, task: FileTask, project: ProjectFacts | None = None, program: Program | None = None
) -> FileResult:
    """Analyse (and rewrite, in memory) one file's bytes; ``project``: facts from the whole run;
    ``program``: the summaries of every function of the run (whole-program analysis)."""
    start = time.perf_counter()
    result = FileResult(task.display)
    pattern = _prefilter(task.codes)
    # Every rule is about torch: a file that never mentions it (configs, tokenizers, plain Python)
    # cannot hold a finding, and is not parsed.
    if pattern is None or b"torch" not in data or not pattern.search(data):
        result.seconds = time.perf_counter() - start
        return result
    if _bracket_depth(data) > _MAX_NESTING:
        refused = _python_refuses(data, task.display)
        if refused:
            result.skipped = refused
            return result
    # A skeleton first (``skeleton.py``): when the rules find nothing in it, they find nothing
    # in the file; otherwise the file is analysed whole below, and only that result counts.
    blank = getattr(task.may_find, "blank", None) if not task.confirmed_lines else None
    skeleton_data = skeleton(data, blank) if blank else None
    if task.mirror and not task.confirmed_lines:
        # The skeleton (or the file) as Python's parser reads it (``ast_to_cst.py``): LibCST
        # parses only files where the rules find anything in that tree.
        found = _mirror_finds(skeleton_data or data, task, project, program)
        if found is False:
            result.parsed = True
            result.seconds = time.perf_counter() - start
            return result
        if found:
            skeleton_data = None  # the skeleton would find it too: analyse the file whole
    rules = _rules(task.codes)
    if skeleton_data is not None:
        outcome = _analyse(skeleton_data, task, rules, project, program)
        if outcome.parsed and outcome.skipped is None and not outcome.results and outcome.new_source is None:
            outcome.seconds = time.perf_counter() - start
            return outcome
        rules = _rules(task.codes)  # fresh ones: a rule may keep state from the skeleton's run
    result = _analyse(data, task, rules, project, program)
    result.seconds = time.perf_counter() - start
    return result


def _mirror_finds(data: bytes, task: FileTask, project: ProjectFacts | None, program: Program | None) -> bool | None:
    """Whether the selected rules find anything (a rewrite, a report, a suppressed finding) in
    the first round on ``data`` as ``ast_to_cst`` builds it; None where that tree cannot tell
    (Python refuses the file, syntax the builder leaves to LibCST, a coding other than UTF-8, a
    rule that fails on it): the file is then parsed with LibCST as if there were no mirror."""
    try:
        source = data.decode("utf-8")
        module, positions = ast_to_cst.build(data)
    except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError, ast_to_cst.Unsupported):
        return None
    ctx = FileContext(task.display, source, module, positions)
    options = RuleOptions(mode=task.mode, suppressions=suppressions(source), project=project, program=program)
    try:
        return any(f.code in task.codes for rule in _rules(task.codes) for f in rule.check(ctx, options))
    except Exception:  # a rule that cannot read this tree: LibCST's will tell
        if os.environ.get("CODEMOD_DEBUG"):
            traceback.print_exc()
        return None


def _rules(codes: frozenset[str]) -> list[Rule]:
    return [rule() for rule in RULES if any(c.code in codes for c in rule.codes)]


def _analyse(
    data: bytes, task: FileTask, rules: list[Rule], project: ProjectFacts | None, program: Program | None
) -> FileResult:
    """Parse ``data`` with LibCST and run ``rules`` on it (``analyse_bytes`` after its tests)."""
    result = FileResult(task.display)
    try:
        module = parse_unvalidated(data)
    except cst.ParserSyntaxError as exc:
        result.skipped = _syntax_error(data, task.display, exc)
        return result
    except Exception as exc:  # the native parser raises plain exceptions on odd input
        result.skipped = _unparsable(data, exc)
        return result
    result.parsed = True
    try:
        source = data.decode(module.encoding)  # LibCST round-trips exactly: no codegen needed
    except (UnicodeDecodeError, LookupError):
        source = module.code
    try:
        current, result.results = rewrite_module(
            module, source, task.display, rules, task.codes, task.mode, task.confirmed_lines, project, program
        )
    except RecursionError:
        result.skipped = "too deeply nested to analyse"
        return result
    except Exception as exc:  # a bug in a rule must not lose the other files
        if os.environ.get("CODEMOD_DEBUG"):
            traceback.print_exc()
        result.skipped = f"internal error while analysing ({type(exc).__name__}: {exc}); please report it"
        return result
    if current is not module:
        new_source = current.code
        if new_source != source:
            result.new_source = new_source
            result.old_source = source
            result.encoding = module.encoding
    return result


def rewrite_module(
    module: cst.Module,
    source: str,
    display: str,
    rules: list[Rule],
    codes: frozenset[str],
    mode: str = "hazards",
    confirmed_lines: frozenset[int] = frozenset(),
    project: ProjectFacts | None = None,
    program: Program | None = None,
) -> tuple[cst.Module, list[Result]]:
    """Run ``rules`` on a parsed module and apply their edits (in rounds, until nothing is
    deferred). Returns the new module and every finding (suppressed ones marked)."""
    results: list[Result] = []
    reported: set[tuple[str, str]] = set()
    here: dict[int, int | None] = {}  # id of a report -> its line in the current round's source
    current = module
    for round_no in range(_MAX_ROUNDS):
        ctx = FileContext(display, source if round_no == 0 else current.code, current)
        suppressed = suppressions(ctx.source)
        options = RuleOptions(
            mode=mode,
            confirmed_lines=confirmed_lines if round_no == 0 else frozenset(),
            suppressions=suppressed,
            project=project,
            program=program,
        )
        findings = [f for rule in rules for f in rule.check(ctx, options) if f.code in codes]
        edits = []
        this_round: list[tuple[Finding, Result]] = []
        for finding in findings:
            res = _to_result(ctx, finding, display)
            lines = range(res.location.line, res.location.end_line + 1)
            if is_suppressed(suppressed, lines, finding.code):
                res.suppressed = True
            elif finding.fixable:
                edits.extend(finding.edits)
                res.fixed = True
            this_round.append((finding, res))
        if round_no:
            # Later rounds exist to apply deferred edits; what they report again was reported
            # already (its line may have moved, so compare without numbers).
            this_round = [(f, res) for f, res in this_round if res.fixed or _report_key(res) not in reported]
        if not edits:
            results += [res for _, res in this_round]
            break
        current, deferred = apply_edits(current, edits)
        deferred_ids = {id(e) for e in deferred}
        # A finding whose edit was deferred is found again (and fixed) in the next round.
        kept = [res for f, res in this_round if not any(id(e) in deferred_ids for e in f.edits)]
        if round_no:
            # A rewrite can make another one provable (a clone inserted before a write into a view
            # cuts the alias that kept a later write from being rewritten): the later write's
            # earlier report is replaced by its fix. Earlier reports are matched by where their
            # line is in this round's source (``here``), their column and the code they quote.
            fixed_now = {_subject(res, res.location.line) for res in kept if res.fixed}
            results = [res for res in results if res.fixed or _subject(res, here.get(id(res))) not in fixed_now]
        results += kept
        reported |= {_report_key(res) for res in kept if not res.fixed}
        # Where each report's line is in the next round's source (None: its line was edited).
        moved = _line_map(ctx.source, current.code)
        here = {id(res): moved.get(here.get(id(res), res.location.line)) for res in results if not res.fixed}
        # The rules run once more on the rewritten tree (also when nothing was deferred), so the
        # output is a fixpoint: running the engine on it changes nothing.
    results.sort(key=lambda r: (r.location.line, r.location.column, r.code))
    return current, results


def _report_key(res: Result) -> tuple[str, str]:
    return res.code, re.sub(r"\d+", "#", res.message)


def _subject(res: Result, line: int | None) -> tuple[int | None, int, str]:
    """What a finding is about, whatever its code and verdict: its line (in the source of the
    round at hand), its column and the written code it quotes first."""
    quoted = re.match(r"`[^`]*`", res.message)
    return line, res.location.column, quoted.group(0) if quoted else res.message


def _line_map(old: str, new: str) -> dict[int, int]:
    """For each line of ``old`` (1-based) left unchanged in ``new``, its line there."""
    matcher = difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False)
    return {a + 1 + k: b + 1 + k for a, b, size in matcher.get_matching_blocks() for k in range(size)}


def _syntax_error(data: bytes, display: str, exc: cst.ParserSyntaxError) -> str:
    """Python's own parser locates syntax errors exactly; LibCST's native parser often does not."""
    try:
        compile(data, display, "exec", dont_inherit=True)
    except SyntaxError as err:
        return _syntax_message(err)
    except (ValueError, UnicodeDecodeError) as err:
        return f"cannot decode: {err}"
    return f"LibCST cannot parse it: {exc.message.splitlines()[0]}"


# CPython's parser refuses brackets nested deeper than 200; LibCST's native parser recurses on
# them and overflows the thread's stack (a segmentation fault, at about 2,000 levels) instead of
# raising. Such a file is checked by Python's own parser first (the count includes brackets in
# strings and comments, so a high count alone proves nothing).
_MAX_NESTING = 200
_NOT_BRACKETS = re.compile(rb"[^()\[\]{}]+")
_BRACKET_STEPS = bytes.maketrans(b"([{)]}", b"\x01\x01\x01\xff\xff\xff")


def _bracket_depth(data: bytes) -> int:
    """The deepest bracket nesting in ``data`` (about 16 ms per MB: a parse costs 4 s per MB)."""
    steps = array.array("b", _NOT_BRACKETS.sub(b"", data).translate(_BRACKET_STEPS))
    return max(itertools.accumulate(steps), default=0)


def _python_refuses(data: bytes, display: str) -> str | None:
    try:
        compile(data, display, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as err:
        return _syntax_message(err)
    except (RecursionError, MemoryError, ValueError):
        return "too deeply nested to parse"
    return None


def _unparsable(data: bytes, exc: Exception) -> str:
    """One line on why the parser refused ``data`` (encodings, mostly)."""
    if isinstance(exc, UnicodeDecodeError):
        line = data.count(b"\n", 0, exc.start) + 1
        try:
            encoding, declared = tokenize.detect_encoding(io.BytesIO(data).readline)
        except SyntaxError:
            encoding, declared = exc.encoding, [b""]
        how = (
            f"its coding line declares {encoding}" if any(b"coding" in d for d in declared) else "no coding line: UTF-8"
        )
        return f"cannot decode byte 0x{data[exc.start]:02x} at line {line} ({how})"
    message = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, SyntaxError) and "encoding" in message:
        return f"cannot decode: {message}"
    return f"cannot parse: {type(exc).__name__}: {message}".rstrip(": ")


def _syntax_message(err: SyntaxError) -> str:
    return f"syntax error at line {err.lineno}: {err.msg}" if err.lineno else f"syntax error: {err.msg}"


def _to_result(ctx: FileContext, finding: Finding, path: str) -> Result:
    span = ctx.positions.span(finding.node)
    if span is None:
        location = Location(0, 0, 0, 0)
    else:
        location = Location(span.line, span.column, span.end_line, span.end_column)
    related = []
    for rel in finding.related:
        rspan = ctx.positions.span(rel.node)
        if rspan is not None:
            related.append(RelatedLocation(rel.message, rspan.line, rspan.column))
    return Result(path, finding.code, finding.message, location, related, fix=finding.replacement_text)


# The run's project facts, set in the parent before the pool forks (and by the pool initializer
# where workers are spawned): shipping them with every task would pickle them once per file.
_project: ProjectFacts | None = None
_program: Program | None = None


def _set_project(project: ProjectFacts | None, program: Program | None = None) -> None:
    global _project, _program
    _project = project
    _program = program


def project_facts(tasks: list[FileTask]) -> ProjectFacts:
    """Scan every file of the run for facts one file cannot show."""
    facts = ProjectFacts()
    for task in tasks:
        try:
            with open(task.path, "rb") as fh:
                facts.add(task.display, fh.read())
        except OSError:
            continue  # reported when the file itself is processed
    return facts


def process(task: FileTask) -> FileResult:
    try:
        with open(task.path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return FileResult(task.display, skipped=f"cannot read: {exc.strerror}")
    # A parsed tree is millions of small objects; the cyclic collector's automatic passes over
    # them cost about 13% of the run. Off while one file is analysed, then one young-generation
    # pass frees that file's cyclic garbage (memory stays flat).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return analyse_bytes(data, task, _project, _program)
    finally:
        if enabled:
            gc.enable()
        gc.collect(0)


def _pool_context():
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def run(
    tasks: list[FileTask],
    jobs: int | None = None,
    on_result: Callable[[FileResult], None] | None = None,
    prefilter: bool = True,
    skeletons: bool = True,
    mirror: bool = True,
) -> list[FileResult]:
    """Process every task; results come back in task order.

    Rules that read facts about the whole run (``needs_project``) first run without them; only
    if one of them rewrites something are the facts collected (a text scan of every file) and the
    files with such rewrites analysed again with them. Facts can only turn a rewrite into a report.

    The whole-program phase comes first: every file is summarized (Python's ``ast``, in the
    workers) and the summaries are resolved across files into a ``Program`` the rules consult.
    The same ``ast`` pass decides which rule families may have a finding in each file
    (``candidates.possible_findings``); with ``prefilter``, only files where a selected family
    may have one are parsed with LibCST and analysed, the others are reported clean at once.
    With ``skeletons`` (and ``prefilter``), a file is first analysed as its skeleton
    (``skeleton.py``) and parsed whole only where that finds anything. With ``mirror``, the
    rules first run on the file (or its skeleton) as Python's parser reads it (``ast_to_cst.py``),
    and LibCST parses only the files where they find anything there.
    """
    _set_project(None)
    program, may_find = build_program(tasks, jobs)
    if prefilter:
        if not skeletons:
            may_find = [None if found is None else frozenset(found) for found in may_find]
        tasks = [replace(t, may_find=found) for t, found in zip(tasks, may_find)]
    if not mirror:
        tasks = [replace(t, mirror=False) for t in tasks]
    _set_project(None, program)
    try:
        results = _run(tasks, jobs, on_result)
        codes = _project_codes()
        again = [i for i, res in enumerate(results) if any(r.fixed and r.code in codes for r in res.results)]
        if again:
            _set_project(project_facts(tasks), program)
            for i, res in zip(again, _run([tasks[i] for i in again], jobs, None)):
                results[i] = res
    finally:
        _set_project(None)
    return results


def build_program(tasks: list[FileTask], jobs: int | None = None) -> tuple[Program, list[frozenset[str] | None]]:
    """Phase 1 (per-file summaries, in the workers) and phase 2 (resolution across files); with
    the program, each task's ``may_find`` (None where its file was not summarized)."""
    summaries = _map(_summarize_task, tasks, jobs)
    may_find = [s.may_find if s is not None else None for s in summaries]
    return Program(s for s in summaries if s is not None), may_find


def _summarize_task(task: FileTask) -> FileSummary | None:
    try:
        with open(task.path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None  # reported when the file itself is processed
    # As in ``process``: the cyclic collector's passes over a parsed tree cost about a quarter of
    # the summary; one young-generation pass after each file frees its garbage.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return summarize(task.path, task.display, data, lazy=True)
    finally:
        if enabled:
            gc.enable()
        gc.collect(0)


def _map(fn, tasks: list[FileTask], jobs: int | None) -> list:
    jobs = jobs or os.cpu_count() or 1
    if jobs <= 1 or len(tasks) < 8:
        return [fn(t) for t in tasks]
    chunk = max(1, min(32, len(tasks) // (jobs * 8)))
    with _pool_context().Pool(jobs) as pool:
        return pool.map(fn, tasks, chunksize=chunk)


def _project_codes() -> frozenset[str]:
    return frozenset(c.code for rule in RULES if rule.needs_project for c in rule.codes)


def _run(tasks: list[FileTask], jobs: int | None, on_result: Callable[[FileResult], None] | None) -> list[FileResult]:
    jobs = jobs or os.cpu_count() or 1
    results: list[FileResult | None] = [None] * len(tasks)
    # Files where no selected rule can have a finding are done without being read again.
    todo = []
    for i, task in enumerate(tasks):
        if needs_parse(task):
            todo.append((i, task))
        else:
            results[i] = FileResult(task.display)
            if on_result:
                on_result(results[i])
    if jobs <= 1 or len(todo) < 8:
        for i, task in todo:
            results[i] = process(task)
            if on_result:
                on_result(results[i])
        return results  # type: ignore[return-value]
    # Largest files first, in small chunks, so no worker is left with a long tail.
    by_size = sorted(todo, key=lambda item: -_size(item[1].path))
    chunk = max(1, min(8, len(todo) // (jobs * 16)))
    with _pool_context().Pool(jobs, initializer=_set_project, initargs=(_project, _program)) as pool:
        for task_index, res in pool.imap_unordered(_indexed_process, by_size, chunksize=chunk):
            results[task_index] = res
            if on_result:
                on_result(res)
    return results  # type: ignore[return-value]


def _indexed_process(item: tuple[int, FileTask]) -> tuple[int, FileResult]:
    index, task = item
    return index, process(task)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
