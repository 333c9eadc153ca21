"""Which rule families can have a finding in a file, decided on Python's ``ast`` before LibCST parses it.

The whole-program phase already parses every file with ``ast`` (in the worker processes, about
5x faster than LibCST). ``possible_findings`` reads that tree and names the rule families that
*may* report or rewrite something there; the engine parses with LibCST (and runs the rules) only
where at least one selected family is named. The test is a sound over-approximation of what the
rules look at: it mirrors the syntax each family starts from (``analysis/index.py`` for the
in-place family, ``rules/init_derived/`` for the other) and never looks at dataflow, so a file
it leaves out cannot hold a finding. ``tests/test_candidates.py`` runs the engine with and without
it over every fixture and over generated programs and requires identical results.

A new capability whose finding can sit in a file none of these criteria catch (say, a report in a
caller's file about a call into a function that writes its argument) must add its trigger here.
"""

from __future__ import annotations

import ast

from .ast_walk import CHILDLESS, children, walk

INPLACE = "inplace"
INIT_DERIVED = "init-derived"


class Candidates(frozenset):
    """The rule families that may have a finding in a file (a frozenset of ``Rule.family``), and
    ``blank``: the line ranges (first, last; 1-based, inclusive) of the function bodies that a
    *skeleton* of the file may leave out (``codemod/skeleton.py``); None where no skeleton may
    stand in for the file."""

    __slots__ = ("blank",)

    def __new__(cls, families=(), blank: tuple[tuple[int, int], ...] | None = None) -> "Candidates":
        out = super().__new__(cls, families)
        out.blank = blank
        return out

    def __reduce__(self):
        return Candidates, (frozenset(self), self.blank)


def possible_findings(tree: ast.Module) -> Candidates:
    """The rule families (``Rule.family``) that may have a finding in the module ``tree``.

    In-place family (``rules/inplace/``): its findings are writes found in functions the index
    marks ``writes_in_place`` (augmented assignment, index assignment, a call of a name ending in
    ``_``, an ``F.relu(x, True)``-style flag, ``inplace=``/``out=`` keywords), calls of in-place
    activation modules, and ``nn.Sequential`` layers built in place. A write in a function named
    like ``__init__``/``_init_weights`` (never differentiable code) yields nothing unless an
    in-place module is involved, which the file-wide module test catches.

    ``__init__``-derived family (``rules/init_derived/``): every finding is an assignment (or a
    ``register_buffer`` call) in an ``__init__`` whose value reads a Parameter (an attribute
    assigned a Parameter anywhere in the file, registered with ``register_parameter``, or named
    like ``weight``/``bias``), or holds a Parameter created inside a larger expression.
    """
    from .analysis import torch_api

    _NOT_DIFFERENTIABLE = torch_api.NOT_DIFFERENTIABLE_FUNCTIONS

    modules = torch_api.inplace_activation_modules()
    functional = torch_api.FUNCTIONAL_INPLACE_ARG
    inplace_write = False  # an in-place write in a function that may be differentiable
    inplace_module = False  # something that may build an in-place module or flip ``.inplace``
    parameter_names: set[str] = set()  # attributes that may hold a Parameter
    parameter_callees = {"Parameter"}  # names a Parameter class may be called by
    init_values: list[ast.expr] = []  # values assigned (or registered as buffers) in an ``__init__``

    # Top-level functions (module-level ones and methods, not those nested in a function), for
    # the skeleton: each as [name, class, node, writes, stores, names it calls (``f(...)``),
    # attributes of its own it calls (``self.m(...)``), the names its first parameter may have].
    units: list[list] = []
    ctors: dict[str, set[str]] = {}  # attribute -> names called in the values assigned to it

    # One iterative walk; each entry: node, the innermost function's name, inside an ``__init__``,
    # the top-level function it is in (index into ``units``, -1: none), the enclosing class.
    stack: list[tuple[ast.AST, str | None, bool, int, str | None]] = [(tree, None, False, -1, None)]
    pop, push = stack.pop, stack.append
    while stack:
        node, fn, in_init, unit, cls = pop()
        t = type(node)
        if t not in _LOOKED_AT:  # only what it holds matters
            stack += [(child, fn, in_init, unit, cls) for child in children(node) if type(child) not in CHILDLESS]
            continue
        writes = fn is not None and fn not in _NOT_DIFFERENTIABLE
        wrote = False  # this node is an in-place write in code that may be differentiable
        if t is ast.Call:
            name = _final_name(node.func)
            if name is not None:
                if unit >= 0:
                    func = node.func
                    if type(func) is ast.Name:
                        units[unit][5].add(name)
                    elif type(func.value) is ast.Name and func.value.id in units[unit][7]:
                        units[unit][6].add(name)
                if writes and name.endswith("_") and not name.startswith("__"):
                    wrote = True
                positional = [a for a in node.args if type(a) is not ast.Starred]
                starred = len(positional) < len(node.args) or any(kw.arg is None for kw in node.keywords)
                if writes and name in functional and (len(positional) > functional[name] or starred):
                    wrote = True  # ``F.relu(x, True)``: the analysis makes a site only for a set flag
                index = modules.get(name)
                if index is not None and (len(positional) > index or starred):
                    inplace_module = True  # ``nn.ReLU(True)``, or unknown ``*args``/``**kwargs``
                if name == "register_parameter" and node.args and type(node.args[0]) is ast.Constant:
                    if isinstance(node.args[0].value, str):
                        parameter_names.add(node.args[0].value)
                if name == "register_buffer" and in_init:
                    init_values.extend(node.args[1:])
                    init_values.extend(kw.value for kw in node.keywords)
                if unit >= 0 and name in _STORES:
                    units[unit][4] = True
            for kw in node.keywords:
                if kw.arg == "inplace":
                    inplace_module = True
                    wrote = wrote or writes
                elif kw.arg == "out":
                    wrote = wrote or writes
        elif t is ast.Assign or (t is ast.AnnAssign and node.value is not None):
            targets = node.targets if t is ast.Assign else [node.target]
            for target in targets:
                if type(target) is ast.Name:
                    continue  # neither a subscript nor an attribute
                for sub in walk(target):
                    if type(sub) is ast.Subscript:
                        wrote = wrote or writes
                    elif type(sub) is ast.Attribute and sub.attr == "inplace":
                        inplace_module = True  # ``m.inplace = True``
                if type(target) is ast.Attribute:
                    called = {n for sub in walk(node.value) if type(sub) is ast.Call and (n := _final_name(sub.func))}
                    if not called.isdisjoint(parameter_callees):
                        parameter_names.add(target.attr)
                    if unit >= 0 and type(target.value) is ast.Name and target.value.id in units[unit][7]:
                        units[unit][4] = True
                    ctors.setdefault(target.attr, set()).update(called)
            if in_init and any(type(sub) is ast.Attribute for target in targets for sub in walk(target)):
                init_values.append(node.value)
        elif t is ast.AugAssign:
            wrote = writes
        elif t is ast.FunctionDef or t is ast.AsyncFunctionDef:
            for child in (*node.decorator_list, node.args, node.returns):
                if child is not None:
                    push((child, fn, in_init, unit, cls))
            inner = in_init or node.name == "__init__"
            own = unit
            if own < 0:
                own = len(units)
                params = node.args.posonlyargs + node.args.args
                selves = {"self", "cls", params[0].arg} if params and cls is not None else {"self", "cls"}
                units.append([node.name, cls, node, False, False, set(), set(), selves])
            for stmt in node.body:
                push((stmt, node.name, inner, own, cls))
            continue
        elif t is ast.ClassDef and unit < 0:
            for child in (*node.decorator_list, *node.bases, *node.keywords):
                push((child, fn, in_init, unit, cls))
            for stmt in node.body:
                push((stmt, fn, in_init, unit, node.name))
            continue
        elif t is ast.ClassDef:
            units[unit][4] = True  # a class inside a function: kept whole, with its methods
        elif t is ast.ImportFrom or t is ast.Import:
            for alias in node.names:
                if alias.name.rsplit(".", 1)[-1] == "Parameter" and (t is ast.ImportFrom or alias.asname):
                    parameter_callees.add(alias.asname or alias.name)
        if wrote:
            inplace_write = True
            units[unit][3] = True  # ``writes`` implies a function, so a unit
        stack += [(child, fn, in_init, unit, cls) for child in children(node) if type(child) not in CHILDLESS]

    found = set()
    if inplace_write or inplace_module:
        found.add(INPLACE)
    if _init_may_derive(init_values, parameter_names, parameter_callees):
        found.add(INIT_DERIVED)
    # An in-place module makes a site of any call of a module attribute, anywhere: no skeleton.
    blank = _blank_bodies(units, ctors) if found and not inplace_module else None
    return Candidates(found, blank)


# The node types ``possible_findings`` looks at.
_LOOKED_AT = frozenset(
    {ast.Call, ast.Assign, ast.AnnAssign, ast.AugAssign, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef}
    | {ast.ImportFrom, ast.Import}
)
# Calls that store a module attribute (``ModuleIndex._register``).
_STORES = frozenset({"register_buffer", "register_parameter", "add_module", "register_module", "setattr"})


def _blank_bodies(units: list[list], ctors: dict[str, set[str]]) -> tuple[tuple[int, int, int], ...]:
    """The bodies a skeleton may leave out, as (first line, last line, column of the first
    statement): every top-level function outside the closure of those the in-place rules can
    look at. Seeds: functions with an in-place write in code that may be differentiable, those
    that store module attributes (``self.x = ...``: the index classifies them) and ``__init__``.
    Closed both ways under the calls the analysis follows in a file: ``self.m(...)`` to the
    methods ``m`` of the class, ``f(...)`` to the module-level functions ``f`` (it summarizes a
    callee; the callers decide whether a function is differentiable code, ``in_scope``), and
    from ``self.x(...)`` to the ``forward`` of each class called in a value stored in an
    attribute ``x`` (``_custom_forward``). Classes are matched by name: an over-approximation.

    The ``__init__``-derived family finds its attributes in ``__init__`` bodies, the stores of
    module attributes and the classes' method names (every ``def`` line stays); the other
    methods (a write elsewhere, a store through another object) only decide whether a finding is
    a rewrite or a report, and any finding in the skeleton has the whole file analysed."""
    from .analysis.torch_api import NOT_DIFFERENTIABLE_FUNCTIONS as _NOT_DIFFERENTIABLE

    by_key: dict[tuple[str | None, str], list[int]] = {}
    for i, (name, cls, *_rest) in enumerate(units):
        by_key.setdefault((cls, name), []).append(i)
    callers: dict[int, list[int]] = {}
    callees: dict[int, list[int]] = {}
    for i, (_name, cls, _node, _writes, _stores, name_calls, self_calls, _selves) in enumerate(units):
        linked = [j for name in name_calls for j in by_key.get((None, name), ())]
        if cls is not None:
            linked += [j for name in self_calls for j in by_key.get((cls, name), ())]
        for j in linked:
            callers.setdefault(j, []).append(i)
        for name in self_calls:
            for built in ctors.get(name, ()):
                linked += by_key.get((built, "forward"), ())
        callees[i] = linked
    # Functions that only store attributes (``__init__`` mostly) are kept for those stores; the
    # rules never analyse them for a finding, so what they call is not needed. A caller that
    # runs without grad by its name (``_NOT_DIFFERENTIABLE``) only ever takes code out of scope:
    # leaving it out can only add findings (then the whole file is analysed), so the closure
    # does not go through it.
    reached = {i for i, unit in enumerate(units) if unit[3]}
    todo = list(reached)
    while todo:
        i = todo.pop()
        linked = [j for j in callers.get(i, ()) if units[j][0] not in _NOT_DIFFERENTIABLE]
        for j in (*callees[i], *linked):
            if j not in reached:
                reached.add(j)
                todo.append(j)
    keep = reached | {i for i, unit in enumerate(units) if unit[4] or unit[0] == "__init__"}
    out = []
    for i, (_name, _cls, node, *_rest) in enumerate(units):
        if i not in keep and node.body[0].lineno > node.lineno:
            out.append((node.body[0].lineno, node.end_lineno, node.body[0].col_offset))
    return tuple(out)


def _final_name(func: ast.expr) -> str | None:
    t = type(func)
    if t is ast.Attribute:
        return func.attr
    if t is ast.Name:
        return func.id
    return None


def _init_may_derive(values: list[ast.expr], parameter_names: set[str], callees: set[str]) -> bool:
    """Some value assigned in an ``__init__`` reads an attribute that may be a Parameter, or
    holds a Parameter created inside a larger expression (or moved: ``P(t).to(d)``)."""
    for value in values:
        for sub in walk(value):
            t = type(sub)
            if t is ast.Attribute:
                name = sub.attr
                if (
                    name in parameter_names
                    or name.startswith(("weight", "bias"))
                    or name.endswith(("_weight", "_bias"))
                ):
                    return True
            elif t is ast.Call and sub is not value and _final_name(sub.func) in callees:
                return True
    return False
