"""In-place ops that overwrite a tensor autograd saved for backward.

``x /= stdev`` after ``torch.var(x)`` bumps x's version counter; backward then raises "one of the
variables needed for gradient computation has been modified by an inplace operation".  The rule
finds such writes with the dataflow analysis (``analysis.py`` beside this file), rewrites the ones that
are safe to make out-of-place (safety contract P1-P5 in DESIGN.md), and reports the rest with the
property that failed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import libcst as cst

from ...analysis import torch_api
from ...analysis.index import ClassInfo, FunctionInfo, ModuleIndex
from ...analysis.syntax import is_number, short_code, walk
from ...context import FileContext
from ...findings import Finding, NodeEdit, Related, StatementEdit
from ..base import Rule, RuleOptions
from . import edits as rw
from .analysis import (
    POSSIBLE_ALIAS,
    FunctionAnalysis,
    Kind,
    Site,
    SiteKind,
    Summaries,
    analyze_function,
    grad_disabled_for,
)
from .codes import CODES, FAMILY

_CODE_BY_KIND = {
    SiteKind.AUG: "IP101",
    SiteKind.INDEX: "IP103",
    SiteKind.METHOD: "IP102",
    SiteKind.FUNCTION: "IP104",
    SiteKind.ACTIVATION: "IP104",
    SiteKind.MODULE: "IP105",
    SiteKind.OUT: "IP106",
}
_CODE_BY_PROPERTY = {"P1": "IP206", "P2": "IP201", "P3": "IP202", "P4": "IP203", "P5": "IP204", "form": "IP206"}
_MAX_SOLVE_ROUNDS = 60
_NOT_DIFFERENTIABLE = torch_api.NOT_DIFFERENTIABLE_FUNCTIONS


@dataclass
class _Plan:
    """The decision for one site. ``reasons`` say why it is not rewritten, as (property, text);
    the text is built only if the site is reported (it needs line numbers, hence positions)."""

    form: rw.Form | None
    reasons: list[tuple[str, Callable[[], str]]]


class InplaceRule(Rule):
    family = FAMILY
    codes = CODES
    # Augmented assignment, index assignment, ``name_(``, ``inplace``, ``out=``.
    prefilter = re.compile(r"(?:[-+*/%&|^]|<<|>>|\*\*|//)=|\]\s*=[^=]|[a-z0-9]_\s*\(|inplace|,\s*out\s*=")

    def check(self, ctx: FileContext, options: RuleOptions) -> list[Finding]:
        return _Solver(ctx, options).run()


class _Solver:
    def __init__(self, ctx: FileContext, options: RuleOptions) -> None:
        self.ctx = ctx
        self.index: ModuleIndex = ctx.index
        self.options = options
        self.analyses: dict[int, FunctionAnalysis] = {}
        self.decisions: dict[int, dict[tuple, str | None]] = {}
        self.plans: dict[tuple, _Plan] = {}
        self.forced: dict[tuple, str | None] = {}
        self._scope_cache: dict[int, bool] = {}
        self._caller_map: dict[int, list[FunctionInfo]] | None = None
        self.summaries = Summaries(self.index, options.program, ctx.path)
        self._names_in: dict[int, set[str]] = {}
        self._caller_contexts: dict[tuple[int, str], tuple[str, str] | None] = {}
        _mark_switches(self.index)

    # ------------------------------------------------------------------ solving
    def run(self) -> list[Finding]:
        functions = [
            fn for fn in self.index.functions if fn.writes_in_place or fn.self_calls & self._inplace_attrs(fn.cls)
        ]
        for _ in range(3):
            for fn in functions:
                self.solve(fn)
            if not self.settle_modules():
                break
        findings = []
        for fn in functions:
            findings += self.findings_for(fn)
        findings += self.sequential_findings()
        if self.options.program is not None:
            findings += self.program_switch_findings()
        return findings

    def program_switch_findings(self) -> list[Finding]:
        """``m.inplace = True`` over the modules of an object other than ``self`` (a helper given
        the model, a local ``net = Net()``): reported at that line when a module it turns in place,
        in a class of this file or another, is then called on an output an op saved for backward
        (whole-program phase: ``Program.switch_hazards``)."""
        hazards = self.options.program.switch_hazards(self.ctx.path)
        if not hazards:
            return []
        lines = {switch.line for switch, _, _, _ in hazards}
        nodes = {}
        for node in walk(self.ctx.module):
            if (
                isinstance(node, cst.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0].target, cst.Attribute)
                and node.targets[0].target.attr.value == "inplace"
            ):
                line = self.ctx.line(node)
                if line in lines:
                    nodes.setdefault(line, node)
        out = []
        for switch, walked, holder, t in hazards:
            node = nodes.get(switch.line)
            if node is None:
                continue
            where, cls = holder.rsplit(":", 1)
            module = t.module.replace("torch.nn.", "nn.")
            message = (
                f"`{short_code(node)}` over the modules of `{walked.split(' ', 1)[0]}` {walked.split(' ', 1)[1]} "
                f"turns `{cls}.{t.attr}` (`{module}`, {where}:{t.built_line}) in place after "
                f"construction: `{t.call}` ({where}:{t.line}) then overwrites `{t.written}`, which `{t.op}` saved for "
                f"backward as its output ({where}:{t.op_line}); not rewritten: keep this module out of the switch, "
                f"or pass it a copy"
            )
            out.append(Finding("IP105", message, node))
        return out

    def _inplace_attrs(self, cls: ClassInfo | None) -> set[str]:
        if cls is None:
            return set()
        return {name for name, info in cls.attrs.items() if info.inplace_constructors()}

    def solve(self, fn: FunctionInfo) -> None:
        """Choose the rewrites of one function.

        Rewrites are added one at a time, earliest first (fixing an early write can make a later
        one harmless: after ``x = x.mul(2)``, ``x.add_(1)`` writes a fresh tensor), each time
        re-analysing the function as it would be after the rewrites chosen so far. A chosen site
        that becomes unsafe is dropped for good. Both directions are monotone, so this ends, and
        the result is a fixpoint: analysing the rewritten file proposes nothing more.
        """
        decisions: dict[tuple, str | None] = {}
        banned: set[tuple] = set()
        for _ in range(_MAX_SOLVE_ROUNDS):
            analysis = analyze_function(fn, self.index, decisions, self.summaries)
            self.analyses[id(fn)] = analysis  # in_scope reads its tensor arguments
            proposed = self.decide(analysis, decisions)
            unsafe = [k for k in decisions if proposed.get(k) is None]
            if unsafe:
                banned.update(unsafe)
                for k in unsafe:
                    del decisions[k]
                continue
            changed = False
            for k in decisions:
                if proposed[k] != decisions[k]:  # e.g. "drop" became "rebind"
                    decisions[k] = proposed[k]
                    changed = True
            wanted = [k for k, form in proposed.items() if form is not None and k not in decisions and k not in banned]
            if wanted:
                # The earliest wanted site, with the rest of its chain (x.mul_(2).add_(1)).
                group = {wanted[0]}
                for head, inner in self._chain_heads(analysis.sites).items():
                    if wanted[0] == head or wanted[0] in inner:
                        group = {head, *inner}
                for k in group:
                    if proposed.get(k) is not None:
                        decisions[k] = proposed[k]
                changed = True
            if not changed:
                break
        self.analyses[id(fn)] = analysis
        self.decisions[id(fn)] = decisions

    def decide(self, analysis: FunctionAnalysis, current: dict[tuple, str | None]) -> dict[tuple, str | None]:
        decisions: dict[tuple, str | None] = {}
        sites = analysis.sites
        heads = self._chain_heads(sites)
        # A chain x.mul_(2).add_(1) is rewritten as one unit: the head carries the evidence of
        # every link (the inner links are rewritten by the head's edit).
        for head_key, inner in heads.items():
            for key in inner:
                for event, value in sites[key].evidence.items():
                    sites[head_key].evidence.setdefault(event, value)
        for key, site in sites.items():
            plan = self.plan(site, analysis, current)
            self.plans[key] = plan
            decisions[key] = plan.form
        # Inner links of a rewritten chain are rewritten by the head's edit.
        for head_key, inner in heads.items():
            form = decisions.get(head_key)
            for key in inner:
                if form in ("method", "rename") and self.plans[key].form is not None:
                    decisions[key] = "chain"
                elif form is not None and form not in ("clone",):
                    decisions[head_key] = None
                    self.plans[head_key] = _Plan(
                        None, [("form", lambda: "an earlier in-place call of the same chain cannot be rewritten")]
                    )
        for key, form in self.forced.items():
            if key in decisions:
                decisions[key] = form
        return decisions

    def _chain_heads(self, sites: dict[tuple, Site]) -> dict[tuple, list[tuple]]:
        """For each in-place method call whose receiver is itself an in-place call: the inner sites."""
        by_node = {id(s.node): s for s in sites.values() if s.kind is SiteKind.METHOD}
        inner_ids = set()
        heads: dict[tuple, list[tuple]] = {}
        for site in by_node.values():
            chain = rw.inplace_chain(site.node) if isinstance(site.node, cst.Call) else []
            for call in chain[1:]:
                inner_ids.add(id(call))
        for site in by_node.values():
            if id(site.node) in inner_ids:
                continue
            chain = rw.inplace_chain(site.node) if isinstance(site.node, cst.Call) else []
            inner = [by_node[id(c)].key for c in chain[1:] if id(c) in by_node]
            if inner:
                heads[site.key] = inner
        return heads

    # ------------------------------------------------------------------ one site
    def wants_rewrite(self, site: Site, fn: FunctionInfo) -> bool:
        """Rewrites happen only in differentiable code (see ``in_scope``): a hazard
        there (or one the runtime locator confirmed), or any safe site in ``all`` mode."""
        if self.line_confirmed(site):
            return True
        if not self.in_scope(fn):
            return False
        return bool(site.evidence) or self.options.mode == "all"

    def suppressed(self, site: Site) -> bool:
        if not self.options.suppressions:
            return False
        node = site.statement if site.kind is SiteKind.AUG and site.statement is not None else site.node
        span = self.ctx.positions.span(node)
        if span is None:
            return False
        lines = range(span.line, span.end_line + 1)
        codes = {_CODE_BY_KIND[site.kind], *_CODE_BY_PROPERTY.values(), "IP205"}
        return any(self.options.suppressed(lines, code) for code in codes)

    def line_confirmed(self, site: Site) -> bool:
        if not self.options.confirmed_lines:
            return False
        return self.ctx.line(site.node) in self.options.confirmed_lines

    def plan(self, site: Site, analysis: FunctionAnalysis, current: dict[tuple, str | None]) -> _Plan:
        if site.not_tensor or self.suppressed(site):
            return _Plan(None, [])
        if self._switch_of(site) is not None:  # the constructor says nothing of inplace: no edit to make
            return _Plan(None, [("form", lambda: "the module is turned in place after construction")])
        reasons: list[tuple[str, Callable[[], str]]] = []
        possible: list[tuple[str, Callable[[], str]]] = []  # through a call that only may return an alias: named last
        for r in site.reasons:
            context = self.caller_context(analysis.fn, r) if r.prop == "P3" else None
            into = reasons if r.via is None else possible
            if context is None:
                into.append((r.prop, lambda r=r: self._reason_text(r.text, r.node, r.via)))
            elif context[0] != "fresh":  # every caller passes a value it never reads again: no obstacle
                into.append(
                    (
                        "P3",
                        lambda text=context[1], r=r: (
                            text + (self._reason_text(POSSIBLE_ALIAS, None, r.via) if r.via is not None else "")
                        ),
                    )
                )
        if site.tensor_unknown:
            # P1: whatever saved it, a value not proven to be a tensor may be a number, a numpy
            # array or a dict, where the rewrite would change behaviour or crash.
            name = site.root or (short_code(site.receiver) if site.receiver is not None else "the target")
            reasons.append(("P1", lambda: f"could not tell that `{name}` is a tensor"))
        if site.category == "rng":
            reasons.append(
                ("form", lambda: f"`{site.method}` is a random fill: rewriting it would change the random stream")
            )
        elif site.category == "init":
            reasons.append(("form", lambda: "initialisation functions write on purpose and are never rewritten"))
        elif site.category == "dtype":
            reasons.append(
                ("form", lambda: f"`{site.method}` keeps the tensor's dtype while its out-of-place form returns bool")
            )
        if site.container_entry:
            reasons.append(
                (
                    "form",
                    lambda: (
                        f"it changes an entry of `{short_code(site.receiver.value)}` in place; "
                        f"`{short_code(site.receiver)} = {short_code(site.receiver)} {site.op[:-1]} ...` would fix it"
                    ),
                )
            )
        elif site.nonlocal_target and not any(p in ("P5", "P3", "P2") for p, _ in reasons):
            reasons.append(
                ("P5", lambda: f"it writes `{short_code(site.receiver)}`, which is not a local tensor of this function")
            )
        form = self.form_for(site, current)
        if form is None:
            reasons.append(("form", lambda: self._form_problem(site)))
        conflict = self.conflict_reason(site, form)
        if conflict is not None:
            (possible if conflict[2] else reasons).append(conflict[:2])
        reasons += possible
        if reasons or not self.wants_rewrite(site, analysis.fn):
            return _Plan(None, reasons)
        if form == "clone" and not site.evidence and not self.line_confirmed(site):
            # Clone-first fixes a hazard; without one (mode = all) it would only add a copy, and
            # the write stays in place, so the next run would clone again.
            return _Plan(None, [])
        return _Plan(form, [])

    def form_for(self, site: Site, current: dict[tuple, str | None]) -> rw.Form | None:
        kind = site.kind
        stmt = site.statement
        receiver = site.receiver
        root_is_receiver = isinstance(receiver, cst.Name) and site.root == receiver.value
        low = site.low_precision or site.autocast
        if kind is SiteKind.AUG:
            if isinstance(stmt, cst.AugAssign) and site.root is not None:
                if low and not is_number(stmt.value):
                    return "aug-dtype"
                return "aug"
            return None
        if kind is SiteKind.INDEX:
            if site.root is None or stmt is None:
                return None
            if isinstance(stmt, (cst.Assign, cst.AugAssign)) and rw.names_read(stmt.value, site.root):
                # ``x[:, :d] = conv(x[:, :d])``: the right-hand side saves a view of ``x``, so a
                # copy made first would be overwritten too; write into a fresh copy instead.
                return "clone-into" if rw.clone_into(stmt, site.root, "_") is not None else None
            return "clone"
        if kind is SiteKind.METHOD:
            twin = torch_api.inplace_methods().get(site.method or "")
            base = rw.chain_base(site.node) if isinstance(site.node, cst.Call) else receiver
            base_is_root = isinstance(base, cst.Name) and site.root == base.value
            chain = rw.inplace_chain(site.node) if isinstance(site.node, cst.Call) else []
            if twin and chain and base_is_root and self._statement_form(site) and not (low and len(chain) > 1):
                return "method-dtype" if low and not all(is_number(a.value) for a in site.node.args) else "method"
            if site.root is not None and stmt is not None:
                return None if self._root_read_elsewhere(site) else "clone"
            if site.root is None and not site.nonlocal_target and twin and chain:
                return "rename"
            return None
        if kind is SiteKind.FUNCTION:
            twin = torch_api.table()["inplace_functions"].get(site.method or "")
            if twin and root_is_receiver and self._statement_form(site):
                return "function"
            if site.root is not None and stmt is not None:
                return "clone"
            if twin and site.root is None and not site.nonlocal_target:
                return "rename"
            return None
        if kind is SiteKind.ACTIVATION:
            if site.root is None:
                return "drop" if not site.nonlocal_target else None
            if root_is_receiver:
                previous = current.get(site.key)
                if previous in ("rebind", "clone"):
                    return previous
                if any(name == site.root for name in site.conflicts.values()):
                    if self._statement_form(site):
                        return "rebind"
                    return "clone" if stmt is not None else None
                return "drop"
            return "clone" if stmt is not None else None
        if kind is SiteKind.MODULE:
            return "drop"
        if kind is SiteKind.OUT:
            if root_is_receiver and site.statement_role == "expr" and isinstance(stmt, cst.Expr):
                return "out"
            return None
        return None

    def _statement_form(self, site: Site) -> bool:
        stmt = site.statement
        role = site.statement_role
        if stmt is None or role is None:
            return False
        if role == "expr":
            return isinstance(stmt, cst.Expr) and stmt.value is site.node
        if role == "return":
            return isinstance(stmt, cst.Return) and stmt.value is site.node
        if role == "assign":
            return self._assign_target(site) is not None
        return False

    def _assign_target(self, site: Site) -> str | None:
        stmt = site.statement
        if (
            isinstance(stmt, cst.Assign)
            and stmt.value is site.node
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0].target, cst.Name)
        ):
            return stmt.targets[0].target.value
        return None

    def _root_read_elsewhere(self, site: Site) -> bool:
        """``y = x * x.add_(1)``: ``x`` is read beside the write in the same statement, so a copy
        made before the statement would be written (and saved) just the same."""
        stmt = site.statement
        scope = stmt.value if isinstance(stmt, cst.Assign) else stmt
        return rw.names_read(scope, site.root) > 1

    def _form_problem(self, site: Site) -> str:
        if site.statement is None:
            return "it is part of a compound statement's header, where no statement can be inserted"
        if site.kind is SiteKind.METHOD and site.root is not None and self._root_read_elsewhere(site):
            return (
                f"`{site.root}` is also read elsewhere in this statement, so a copy made before it would be "
                "overwritten as well; split the statement first"
            )
        if site.kind is SiteKind.OUT:
            return "`out=` into something other than a local name, or inside a larger expression"
        return "the written tensor is not a local name of this function"

    def conflict_reason(self, site: Site, form: rw.Form | None) -> tuple[str, Callable[[], str], bool] | None:
        """A later read that would see a different value after the rewrite (P2), if any, and
        whether every such read only may share the storage (through a call without a summary)."""
        rebinding = form in (
            "aug",
            "aug-dtype",
            "method",
            "method-dtype",
            "function",
            "rebind",
            "clone",
            "clone-into",
            "out",
        )
        relevant = [(node, name) for node, name in site.conflicts.items() if not (rebinding and name == site.root)]
        if not relevant:
            return None

        def text() -> str:
            # A read that surely shares the storage first; one that does only if a call without a
            # summary returns an alias, when there is no other.
            node, name = min(
                relevant,
                key=lambda item: (
                    item[0] not in site.strict_reads,
                    self._later_iteration(site, item[0]),
                    self._position(item[0]),
                ),
            )
            read_line = self.ctx.line(node)
            if self._later_iteration(site, node):
                read_line = f"{read_line} (in the loop's next iteration)"
            if name == site.root or (site.root is None and form == "drop" and self._reads_input(site, name)):
                return f"`{name}` is read again at line {read_line} and would no longer see this change"
            via = site.possible_reads.get(node) if node not in site.strict_reads else None
            if via is not None:
                written = site.root or (short_code(site.receiver) if site.receiver is not None else "the tensor")
                return (
                    f"`{written}` may share memory with `{name}`, which is read again at line {read_line}: "
                    f"{self._via_text(via)} may return its argument or a view of it ({self._unknown_call(via)}), "
                    f"and then rewriting would stop updating `{name}`; `codemod verify` or `codemod locate` "
                    f"settles it"
                )
            return self._alias_text(site, name, read_line)

        return ("P2", text, all(node not in site.strict_reads for node, _ in relevant))

    def _later_iteration(self, site: Site, read: cst.CSTNode) -> bool:
        """A read recorded after the write that comes before its end in the source: it runs in a
        later iteration of a loop around both (the write's own operands are read before it)."""
        write, at = self.ctx.positions.span(site.node), self.ctx.positions.span(read)
        if write is None or at is None:
            return False
        return (at.line, at.column) < (write.end_line, write.end_column)

    def _reads_input(self, site: Site, name: str) -> bool:
        return isinstance(site.receiver, cst.Name) and site.receiver.value == name

    def _alias_text(self, site: Site, name: str, read_line: int) -> str:
        written = site.root or (short_code(site.receiver) if site.receiver is not None else "the tensor")
        link = self._alias_link(site)
        if link is not None:
            return (
                f"`{written}` shares memory with `{name}` (`{short_code(link)}`, line {self.ctx.line(link)}), "
                f"which is read again at line {read_line}: rewriting would stop updating `{name}`"
            )
        return f"`{written}` shares memory with `{name}`, which is read again at line {read_line}: rewriting would stop updating `{name}`"

    def _alias_link(self, site: Site) -> cst.BaseExpression | None:
        """The first (in the source) expression through which the written tensor is an alias:
        ``site.targets`` is a set, so a stable choice needs an order."""
        links = [v.node for v in site.targets if v.kind is Kind.ALIAS and isinstance(v.node, cst.BaseExpression)]
        return min(links, key=self._position, default=None)

    def _reason_text(self, text: str, node: cst.CSTNode | None, via=None) -> str:
        """Fill in ``@LINE`` with the line of ``node`` (where the alias, argument or store is), and
        ``@VIA`` with the call without a summary that may link it to the written tensor."""
        if "@LINE" in text:
            line = self.ctx.line(node) if node is not None else 0
            text = text.replace(" (line @LINE)", "") if not line else text.replace("@LINE", str(line))
        if "@VIA" in text:
            text = text.replace("@VIA", self._via_text(via)).replace("@WHY", self._unknown_call(via))
        return text

    @staticmethod
    def _unknown_call(via) -> str:
        if via is not None and isinstance(via.possible, str):
            return f"its summary, {via.possible}, does not rule it out"
        return "a call with no summary: outside the repository, or dynamic"

    def _via_text(self, via) -> str:
        node = via.node if via is not None else None
        if node is None:
            return "a call"
        return f"`{short_code(node)}` (line {self.ctx.line(node)})"

    def _switch_of(self, site: Site) -> cst.CSTNode | None:
        """For a call of a module that ``m.inplace = True`` turned in place: that statement."""
        if site.kind is not SiteKind.MODULE:
            return None
        ctors = self._module_constructors(site)
        if not ctors or any(c.inplace for c in ctors):
            return None
        return next((c.switched for c in ctors if c.switched is not None), None)

    def switch_finding(self, site: Site, switch: cst.CSTNode) -> Finding:
        evidence, related = self.evidence_text(site)
        ctor = next(c for c in self._module_constructors(site) if c.switched is switch)
        name = (ctor.qualname or "").replace("torch.nn.", "nn.")
        call = short_code(site.node)
        message = (
            f"`{short_code(switch)}` turns `{site.module_attr}` (`{name}`, line {self.ctx.line(ctor.node)}) in place "
            f"after construction: `{call}` (line {self.ctx.line(site.node)}) then overwrites "
            f"{self._overwritten(site, evidence)}; not rewritten: keep this module out of the switch, or pass it a copy"
        )
        return Finding("IP105", message, switch, [Related(site.node, f"`{call}` writes its input in place"), *related])

    def caller_context(self, fn: FunctionInfo, reason) -> tuple[str, str] | None:
        """A write into argument ``reason.node`` seen from every call site of the run: ("fresh", "")
        when each caller passes a value it never reads again (rewriting the callee is safe and fixes
        the caller's backward), ("read"/"saved", why not) naming the first caller that reads its
        tensor after the call or passes a tensor an op saved; None when the call sites are not
        all known (no caller in the run: a public function)."""
        program = self.options.program
        param = reason.node
        if program is None or fn.parent is not None or not isinstance(param, cst.Param):
            return None
        name = param.name.value
        key = (id(fn), name)
        if key not in self._caller_contexts:
            self._caller_contexts[key] = self._caller_context(program, fn, name)
        return self._caller_contexts[key]

    def _caller_context(self, program, fn: FunctionInfo, name: str) -> tuple[str, str] | None:
        uses = program.argument_uses(self.ctx.path, fn.qualname, name)
        if uses is None:
            return None
        for status in ("saved", "read", "unknown"):
            for display, call, use in uses:
                if use.status != status:
                    continue
                at = f"{display}:{call.line}"
                if status == "saved":
                    what = f"`{use.name}`" if use.name else "the output"
                    return (
                        "saved",
                        f"argument `{name}` is written in place, and the call at {at} passes {what}, which "
                        f"`{use.op}` saved for backward as its output ({display}:{use.line}): the hazard is in "
                        f"that caller",
                    )
                if status == "read":
                    return (
                        "read",
                        f"argument `{name}` is not rebound before this write, and the caller at {at} reads "
                        f"`{use.name}` again at line {use.line}, which would no longer see this change",
                    )
                return None  # it comes from the caller's own argument or state: not followed further
        return ("fresh", "")

    def caller_saved_findings(self, fn: FunctionInfo, analysis: FunctionAnalysis) -> list[Finding]:
        """Writes into an argument that a caller of the run passes after an op saved it: the
        hazard is in the caller, reported at the write with both lines, even when nothing in
        this function saved the tensor."""
        out = []
        for site in analysis.sites.values():
            if site.evidence or site.not_tensor or site.grad_disabled or self.suppressed(site):
                continue
            for r in site.reasons:
                # (not through a call that only may return an alias: the write may not reach it)
                context = self.caller_context(fn, r) if r.prop == "P3" and r.via is None else None
                if context is not None and context[0] == "saved":
                    subject = self._subject(site)
                    node = site.node if site.kind is not SiteKind.AUG or site.statement is None else site.statement
                    message = f"{subject} overwrites {self._written(site)}; not rewritten (P3): {context[1]}"
                    out.append(Finding("IP202", message, node, [Related(r.node, "the argument written in place")]))
                    break
        return out

    def definite(self, site: Site) -> bool:
        return any(e.what != "opaque" for e in site.evidence)

    # ------------------------------------------------------------------ modules
    def settle_modules(self) -> bool:
        """Rewrite an in-place activation module only if every call site allows it; return True
        if forced decisions changed (the functions must be solved again)."""
        changed = False
        for cls in self.index.classes:
            for attr in self._inplace_attrs(cls):
                sites = [
                    s
                    for a in self.analyses.values()
                    for s in a.sites.values()
                    if s.kind is SiteKind.MODULE and s.module_attr == attr and a.fn.cls is cls
                ]
                if not sites:
                    continue
                escapes = self._attr_escapes(cls, attr)
                ok = (
                    not escapes
                    and any(self.plans[s.key].form == "drop" for s in sites)
                    and all(
                        self.plans[s.key].form == "drop" or (not self.plans[s.key].reasons and not s.evidence)
                        for s in sites
                    )
                )
                for s in sites:
                    want = "drop" if ok else None
                    if self.forced.get(s.key, "unset") != want:
                        self.forced[s.key] = want
                        changed = True
        return changed

    def _attr_escapes(self, cls: ClassInfo, attr: str) -> bool:
        """``self.attr`` used other than called directly (passed on, put in a Sequential ...)."""
        info = cls.attr(attr)
        return info is None or info.other_uses > 0

    # ------------------------------------------------------------------ scope ("all" mode)
    def in_scope(self, fn: FunctionInfo) -> bool:
        """Differentiable code: ``forward`` methods, functions given tensors (an argument used as a
        tensor), and what they call in this file (searched backwards from ``fn``, so only the
        callers on the way get summarized). Never ``__init__``, init or data-loading methods."""
        cached = self._scope_cache.get(id(fn))
        if cached is None:
            cached = self._scope_cache[id(fn)] = self._reached_from_root(fn)
        return cached

    def _is_root(self, fn: FunctionInfo) -> bool:
        if fn.name in _NOT_DIFFERENTIABLE:
            return False
        if fn.name == "forward":
            return True
        analysis = self.analyses.get(id(fn))
        if analysis is not None and (analysis.tensor_params or analysis.makes_grad_leaf):
            return True  # given tensors, or builds its own that require grad (a training step)
        summary = self.summaries.get(fn)
        return summary is not None and bool(summary.tensor_params)

    def _reached_from_root(self, fn: FunctionInfo) -> bool:
        if fn.name in _NOT_DIFFERENTIABLE or self._only_called_without_grad(fn, set()):
            return False
        program = self.options.program
        if program is not None and program.only_called_without_grad(self.ctx.path, fn.qualname):
            return False  # every call in the run (this file or others) runs under no_grad
        callers = self._callers()
        seen = {id(fn)}
        stack = [fn]
        while stack:
            cur = stack.pop()
            if self._is_root(cur):
                return True
            for caller in callers.get(id(cur), ()):
                if id(caller) not in seen and caller.name not in _NOT_DIFFERENTIABLE:
                    seen.add(id(caller))
                    stack.append(caller)
        return False

    def _only_called_without_grad(self, fn: FunctionInfo, seen: set[int]) -> bool:
        """Every caller in this file runs without grad (``@torch.no_grad()``, ``__getitem__``,
        init code, or is itself only called so): ``fn`` never builds a graph from here."""
        seen.add(id(fn))
        callers = [c for c in self._callers().get(id(fn), ()) if c is not fn]
        if not callers:
            return False
        for caller in callers:
            if caller.name in _NOT_DIFFERENTIABLE or grad_disabled_for(caller, self.index):
                continue
            if id(caller) in seen or not self._only_called_without_grad(caller, seen):
                return False
        return True

    def _callers(self) -> dict[int, list[FunctionInfo]]:
        if self._caller_map is None:
            by_method = {(id(f.cls), f.name): f for f in self.index.functions if f.cls is not None and f.parent is None}
            by_name = {f.name: f for f in self.index.functions if f.cls is None and f.parent is None}
            callers: dict[int, list[FunctionInfo]] = {}
            for f in self.index.functions:
                callees = [by_method.get((id(f.cls), m)) for m in f.self_calls] + [by_name.get(n) for n in f.name_calls]
                callees += [g for g in self.index.functions if g.parent is f and g.name in f.name_calls]
                for callee in callees:
                    if callee is not None:
                        callers.setdefault(id(callee), []).append(f)
            self._caller_map = callers
        return self._caller_map

    # ------------------------------------------------------------------ findings
    def findings_for(self, fn: FunctionInfo) -> list[Finding]:
        analysis = self.analyses[id(fn)]
        decisions = self.decisions[id(fn)]
        out = []
        inner_of_reported: set[tuple] = set()
        for head, inner in self._chain_heads(analysis.sites).items():
            if decisions.get(head) is None:
                inner_of_reported |= set(inner)  # one report for ``x.mul_(a).add_(b)``: the whole chain
        for key, site in analysis.sites.items():
            form = decisions.get(key)
            if form == "chain" or (form is None and key in inner_of_reported):
                continue
            plan = self.plans[key]
            switch = self._switch_of(site)
            if switch is not None:
                if site.evidence and self.definite(site) and self.in_scope(fn):
                    out.append(self.switch_finding(site, switch))
                continue
            if form is not None:
                if (
                    site.kind is SiteKind.MODULE
                    and not site.evidence
                    and not self.line_confirmed(site)
                    and self.options.mode != "all"
                ):
                    continue  # a harmless call of a module rewritten because of another call
                out.append(self.rewrite_finding(site, form))
            elif (
                site.evidence
                and plan.reasons
                and (self.definite(site) or self.line_confirmed(site))
                and (self.in_scope(fn) or self.line_confirmed(site))
                and (site.likely_tensor or not any(prop == "P1" for prop, _ in plan.reasons))
            ):
                out.append(self.report_finding(site, plan))
        if self.options.program is not None:
            out += self.caller_saved_findings(fn, analysis)
        return out

    def evidence_text(self, site: Site) -> tuple[str, list[Related]]:
        order = {"leaf": -2, "multiview": -1, "input": 0, "output": 1, "data": 2, "opaque": 3}
        events = sorted(site.evidence, key=lambda e: (order[e.what], self._position(e.node)))
        if not events:
            return "", []
        event = events[0]
        line = self.ctx.line(event.node)
        op = event.op.strip("`")
        note = site.storage.get(event)
        if note is not None:
            return self._storage_text(site, event, note, op, line)
        if event.what == "input":
            text = f"which `{op}` saved for backward (line {line})"
            rel = f"`{op}` saves this tensor for backward"
        elif event.what == "output":
            text = f"which `{op}` saved for backward as its output (line {line})"
            rel = f"`{op}` saves its output for backward"
        elif event.what == "leaf":
            text = f"a leaf tensor that requires grad (`{op}`, line {line}): PyTorch refuses to write it in place"
            rel = "a leaf that requires grad is created here"
        elif event.what == "data":
            text = (
                f"through `.data` (line {line}) in differentiable code: autograd does not see the write, "
                "so the gradient silently ignores it"
            )
            rel = "`.data` hides the tensor from autograd"
        elif event.what == "multiview":
            text = (
                f"one of the views that `{op}` returns (line {line}): PyTorch refuses to write such a view "
                "in place while it requires grad"
            )
            rel = f"`{op}` returns several views of one tensor"
        else:
            text = f"which was passed to `{op}` (line {line}), which may save it for backward"
            rel = f"`{op}` may save this tensor for backward"
        return text, [Related(event.node, rel)]

    def _storage_text(self, site: Site, event, note: tuple, op: str, line: int) -> tuple[str, list[Related]]:
        """The saved tensor is another view of the written storage: name that view, the storage
        they share and the op that saved it (views and slices share one version counter)."""
        saved, saved_names, base, base_names = note
        view = (
            f"`{saved_names[0]}`"
            if saved_names
            else f"`{short_code(saved.node)}`"
            if saved.node is not None
            else "a view"
        )
        if saved_names and isinstance(saved.node, cst.BaseExpression):
            view += f" (`{short_code(saved.node)}`, line {self.ctx.line(saved.node)})"
        elif saved.node is not None:
            view += f" (line {self.ctx.line(saved.node)})"
        what = {"input": "saved", "output": "saved as its output"}.get(event.what)
        if base is None:
            other = "a view of it"
            tail = "and a view shares its tensor's version counter"
            lead = ""
        else:
            storage = f"`{base_names[0]}`" if base_names else base.label
            other = f"another view of {storage}"
            tail = "and the views of one tensor share its version counter"
            own = self._alias_link(site)
            lead = f" (`{short_code(own)}`, line {self.ctx.line(own)})" if own is not None and site.root else ""
            lead += f", a view of {storage}"
        if what is not None:
            text = f"\0{lead}: `{op}` {what} {view}, {other}, for backward (line {line}), {tail}"
        else:
            text = (
                f"\0{lead}: {view}, {other}, was passed to `{op}` (line {line}), which may save it for backward, {tail}"
            )
        rel = f"`{op}` saves {view} for backward" if what is not None else f"`{op}` may save {view} for backward"
        return text, [Related(event.node, rel)]

    def _position(self, node) -> tuple[int, int]:
        """Line and column: two saving ops on one line (``(d - d.min()) / (d.max() - d.min())``)
        are named in a stable order, the first on the line."""
        span = self.ctx.positions.span(node)
        return (span.line, span.column) if span is not None else (0, 0)

    def _subject(self, site: Site) -> str:
        if site.kind is SiteKind.AUG or site.kind is SiteKind.INDEX:
            return f"`{short_code(site.statement if site.statement is not None else site.node)}`"
        return f"`{short_code(site.node)}`"

    def _overwritten(self, site: Site, evidence: str) -> str:
        """What the write overwrites, then why that is a hazard (``evidence_text``; one that
        starts with NUL goes on without a comma)."""
        if evidence.startswith("\0"):
            return f"{self._written(site)}{evidence[1:]}"
        return f"{self._written(site)}, {evidence}"

    def _written(self, site: Site) -> str:
        if site.root:
            return f"`{site.root}`"
        if site.receiver is not None:
            return f"`{short_code(site.receiver)}`"
        return "its input"

    def rewrite_finding(self, site: Site, form: rw.Form) -> Finding:
        code = _CODE_BY_KIND[site.kind]
        evidence, related = self.evidence_text(site)
        subject = self._subject(site)
        if evidence:
            message = f"{subject} overwrites {self._overwritten(site, evidence)}"
        elif self.line_confirmed(site):
            message = f"{subject} overwrites {self._written(site)}, which the runtime locator saw saved for backward"
        else:
            message = f"{subject} modifies {self._written(site)} in place (mode = all rewrites every safe in-place op)"
        edits, text = self.edits_for(site, form)
        if text:
            message += f"; rewrite: `{text}`"
        finding = Finding(
            code, message, site.node if site.kind is not SiteKind.AUG else site.statement, related, edits, text
        )
        if site.kind is SiteKind.MODULE:
            for ctor in self._module_constructors(site):
                finding.related.append(Related(ctor.node, "built with inplace=True here"))
        return finding

    def report_finding(self, site: Site, plan: _Plan) -> Finding:
        prop, text_fn = plan.reasons[0]
        text = text_fn()
        code = _CODE_BY_PROPERTY.get(prop, "IP206")
        if (prop == "P5" and "`.data`" in text) or any(e.what == "data" for e in site.evidence):
            code = "IP205"
        evidence, related = self.evidence_text(site)
        subject = self._subject(site)
        tag = f" ({prop})" if prop.startswith("P") else ""
        message = f"{subject} overwrites {self._overwritten(site, evidence)}; not rewritten{tag}: {text}"
        node = site.node if site.kind is not SiteKind.AUG or site.statement is None else site.statement
        return Finding(code, message, node, related)

    # ------------------------------------------------------------------ edits
    def edits_for(self, site: Site, form: rw.Form) -> tuple[list, str]:
        stmt = site.statement
        if form in ("aug", "aug-dtype"):
            new = rw.augassign_replacement(stmt, keep_dtype=form == "aug-dtype")
            return [StatementEdit(stmt, replacement=[new])], rw.statement_code([new])
        if form == "clone":
            new = rw.clone_of(site.root)
            return [StatementEdit(stmt, before=[new])], rw.statement_code([new])
        if form == "clone-into":
            stmts = rw.clone_into(stmt, site.root, self._fresh_name(site, f"{site.root}_new"))
            return [StatementEdit(stmt, replacement=stmts, comment_on=1)], rw.statement_code(stmts)
        if form in ("method", "method-dtype"):
            root = site.root
            value: cst.BaseExpression = rw.out_of_place_chain(site.node)
            if form == "method-dtype":
                value = rw.to_dtype_of(value, root)
            return self._rebind_edit(site, root, value)
        if form == "function":
            twin = torch_api.table()["inplace_functions"][site.method]
            return self._rebind_edit(site, site.root, rw.renamed_function(site.node, twin))
        if form == "rename":
            if site.kind is SiteKind.FUNCTION:
                new_call = rw.renamed_function(site.node, torch_api.table()["inplace_functions"][site.method])
            else:
                new_call = rw.out_of_place_chain(site.node)
            return [NodeEdit(site.node, new_call)], short_code(new_call, 80)
        if form == "drop":
            if site.kind is SiteKind.MODULE:
                edits = []
                texts = []
                for ctor in self._module_constructors(site):
                    spec_index = torch_api.inplace_activation_modules().get((ctor.qualname or "").rsplit(".", 1)[-1])
                    new_call = rw.without_arg(ctor.node, "inplace", spec_index)
                    edits.append(NodeEdit(ctor.node, new_call))
                    texts.append(short_code(new_call, 80))
                return edits, "; ".join(texts)
            new_call = self._without_inplace(site.node, site.method)
            return [NodeEdit(site.node, new_call)], short_code(new_call, 80)
        if form == "rebind":
            return self._rebind_edit(site, site.root, self._without_inplace(site.node, site.method))
        if form == "out":
            new_call = rw.without_arg(site.node, "out", None)
            new = rw.assign(site.root, new_call)
            return [StatementEdit(stmt, replacement=[new])], rw.statement_code([new])
        raise AssertionError(form)

    def _fresh_name(self, site: Site, stem: str) -> str:
        """``stem`` (or ``stem_2``...) if the function holding ``site`` spells no such name."""
        fn = next((a.fn for a in self.analyses.values() if a.sites.get(site.key) is site), None)
        scope = fn.node if fn is not None else self.ctx.module
        taken = self._names_in.get(id(scope))
        if taken is None:
            taken = self._names_in[id(scope)] = {n.value for n in walk(scope) if isinstance(n, cst.Name)}
        name, i = stem, 1
        while name in taken:
            i += 1
            name = f"{stem}_{i}"
        taken.add(name)
        return name

    def _without_inplace(self, call: cst.Call, name: str | None) -> cst.Call:
        return rw.without_arg(call, "inplace", torch_api.FUNCTIONAL_INPLACE_ARG.get(name or ""))

    def _rebind_edit(self, site: Site, root: str, value: cst.BaseExpression) -> tuple[list, str]:
        stmt = site.statement
        first = rw.assign(root, value)
        role = site.statement_role
        if role == "expr":
            new = [first]
        elif role == "return":
            new = [first, cst.Return(value=cst.Name(root))]
        else:
            target = self._assign_target(site)
            new = [first] if target == root else [first, rw.assign(target, cst.Name(root))]
        return [StatementEdit(stmt, replacement=new)], rw.statement_code(new)

    def _module_constructors(self, site: Site):
        """The constructors (``nn.ReLU(inplace=True)``) of the module a MODULE site calls."""
        cls = next((a.fn.cls for a in self.analyses.values() if a.sites.get(site.key) is site), None)
        info = cls.attr(site.module_attr) if cls is not None and site.module_attr else None
        return info.inplace_constructors() if info else []

    # ------------------------------------------------------------------ nn.Sequential
    def sequential_findings(self) -> list[Finding]:
        """``nn.Sequential(..., nn.Sigmoid(), nn.ReLU(inplace=True))``: the in-place layer
        overwrites the previous layer's saved output."""
        out = []
        for node in self.index.sequential_calls:
            if self.index.imports.qualify(node.func) != "torch.nn.Sequential" or any(a.star for a in node.args):
                continue
            elements = [a.value for a in node.args if a.keyword is None]
            for prev, cur in zip(elements, elements[1:]):
                finding = self._sequential_pair(prev, cur)
                if finding is not None:
                    out.append(finding)
        return out

    def _sequential_pair(self, prev: cst.BaseExpression, cur: cst.BaseExpression) -> Finding | None:
        if not (isinstance(prev, cst.Call) and isinstance(cur, cst.Call)):
            return None
        cur_ctor = self.index.classify_constructor(cur)
        prev_ctor = self.index.classify_constructor(prev)
        if not cur_ctor.inplace or prev_ctor.kind != "module" or prev_ctor.qualname is None:
            return None
        spec = torch_api.module_spec(prev_ctor.qualname)
        if spec is None or spec.functional is None:
            return None
        if prev_ctor.inplace:
            aten = {"relu6": "hardtanh"}.get(spec.functional, spec.functional)
            op_spec = torch_api.method_spec(f"{aten}_")
        else:
            op_spec = torch_api.function_spec(f"torch.nn.functional.{spec.functional}")
        if op_spec is None:
            return None
        if not op_spec.saves_output():
            return None
        prev_name = prev_ctor.qualname.rsplit(".", 1)[-1]
        cur_name = cur_ctor.qualname.rsplit(".", 1)[-1]
        index = torch_api.inplace_activation_modules().get(cur_name)
        new_call = rw.without_arg(cur, "inplace", index)
        text = short_code(new_call, 80)
        message = (
            f"`{short_code(cur)}` overwrites the output of the previous layer `{short_code(prev)}`, "
            f"which `{prev_name}` saves for backward (line {self.ctx.line(prev)}); rewrite: `{text}`"
        )
        related = [Related(prev, f"`{prev_name}` saves its output for backward")]
        return Finding("IP105", message, cur, related, [NodeEdit(cur, new_call)], text)


# ------------------------------------------------------------------ ``m.inplace = True``
_MODULE_WALKS = frozenset({"modules", "children", "named_modules", "named_children"})


def _mark_switches(index: ModuleIndex) -> None:
    """``for m in self.modules(): if isinstance(m, nn.ReLU): m.inplace = True`` in a method of a
    class: mark the matching torch.nn modules of that class (and of this file's classes it holds,
    transitively) as written in place by that statement. The ``isinstance``/``type(m) in`` filter
    names the types; a condition that says nothing of the type other than ``hasattr(m, "inplace")``
    leaves the statement out (it may pick instances, not types)."""
    by_name = {c.name: c for c in index.classes}
    for cls in index.classes:
        for method in cls.methods.values():
            params = method.params.params
            if not params or _T(method.body) is not cst.IndentedBlock:
                continue
            found: list[tuple[cst.CSTNode, frozenset[str] | None]] = []
            _scan_switches(method.body.body, params[0].name.value, None, None, {}, index, found)
            for switch, types in found:
                seen: set[int] = set()
                stack = [cls]
                while stack:
                    holder = stack.pop()
                    if id(holder) in seen:
                        continue
                    seen.add(id(holder))
                    for info in holder.attrs.values():
                        for ctor in info.values:
                            if ctor.kind != "module" or ctor.qualname is None:
                                continue
                            if ctor.qualname in by_name:
                                stack.append(by_name[ctor.qualname])
                                continue
                            spec = torch_api.module_spec(ctor.qualname)
                            if (
                                spec is not None
                                and spec.inplace_index is not None
                                and not ctor.inplace
                                and ctor.switched is None
                                and (types is None or ctor.qualname in types)
                            ):
                                ctor.switched = switch


def _T(node):
    return type(node)


def _scan_switches(
    stmts,
    self_name: str,
    var: str | None,
    types: frozenset[str] | None,
    type_vars: dict[str, str],
    index: ModuleIndex,
    found: list,
) -> None:
    for stmt in stmts:
        t = _T(stmt)
        if t is cst.For:
            it = stmt.iter
            loop_var = var
            if (
                _T(it) is cst.Call
                and _T(it.func) is cst.Attribute
                and it.func.attr.value in _MODULE_WALKS
                and _T(it.func.value) is cst.Name
                and it.func.value.value == self_name
            ):
                target = stmt.target
                if _T(target) is cst.Tuple and target.elements:
                    target = target.elements[-1].value
                loop_var = target.value if _T(target) is cst.Name else None
                if loop_var is not None:
                    _scan_switches(_body(stmt.body), self_name, loop_var, None, {}, index, found)
                continue
            _scan_switches(_body(stmt.body), self_name, var, types, type_vars, index, found)
        elif t is cst.If:
            if var is None:
                _scan_switches(_body(stmt.body), self_name, var, types, type_vars, index, found)
                continue
            picked = _type_filter(stmt.test, var, type_vars, index)
            if picked is not False:
                narrowed = picked if types is None else (types if picked is None else types & picked)
                _scan_switches(_body(stmt.body), self_name, var, narrowed, type_vars, index, found)
        elif t is cst.SimpleStatementLine:
            for small in stmt.body:
                if _T(small) is not cst.Assign or len(small.targets) != 1:
                    continue
                target, value = small.targets[0].target, small.value
                if (
                    var is not None
                    and _T(target) is cst.Attribute
                    and target.attr.value == "inplace"
                    and _T(target.value) is cst.Name
                    and target.value.value == var
                    and _T(value) is cst.Name
                    and value.value == "True"
                ):
                    found.append((small, types))
                elif (
                    var is not None
                    and _T(target) is cst.Name
                    and _T(value) is cst.Call
                    and _T(value.func) is cst.Name
                    and value.func.value == "type"
                    and len(value.args) == 1
                    and _T(value.args[0].value) is cst.Name
                    and value.args[0].value.value == var
                ):
                    type_vars = {**type_vars, target.value: var}  # ``t = type(m)``
        elif t in (cst.With, cst.While, cst.Try):
            _scan_switches(_body(stmt.body), self_name, var, types, type_vars, index, found)


def _body(block) -> list:
    return list(block.body) if _T(block) is cst.IndentedBlock else []


def _type_filter(test, var: str, type_vars: dict[str, str], index: ModuleIndex):
    """The qualified types an ``if`` on the loop's module keeps: a frozenset; None for
    ``hasattr(m, "inplace")`` (every type); False for any other condition (not followed)."""

    def names(expr) -> frozenset[str] | None:
        elements = [e.value for e in expr.elements] if _T(expr) in (cst.Tuple, cst.List, cst.Set) else [expr]
        quals = [index.imports.qualify(e) for e in elements]
        return None if any(q is None for q in quals) else frozenset(quals)

    def is_var(expr) -> bool:
        if _T(expr) is cst.Name:
            return type_vars.get(expr.value) == var
        return (
            _T(expr) is cst.Call
            and _T(expr.func) is cst.Name
            and expr.func.value == "type"
            and len(expr.args) == 1
            and _T(expr.args[0].value) is cst.Name
            and expr.args[0].value.value == var
        )

    if _T(test) is cst.Call and _T(test.func) is cst.Name and len(test.args) == 2:
        first, second = test.args[0].value, test.args[1].value
        if _T(first) is cst.Name and first.value == var:
            if test.func.value == "isinstance":
                return names(second) or False
            if test.func.value == "hasattr" and _T(second) is cst.SimpleString and second.evaluated_value == "inplace":
                return None
    if _T(test) is cst.Comparison and len(test.comparisons) == 1 and is_var(test.left):
        op = _T(test.comparisons[0].operator)
        if op in (cst.In, cst.Is, cst.Equal):
            return names(test.comparisons[0].comparator) or False
    return False
