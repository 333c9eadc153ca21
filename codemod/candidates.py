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

INPLACE = "inplace"
INIT_DERIVED = "init-derived"


def possible_findings(tree: ast.Module) -> frozenset[str]:
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

    # One iterative walk; each entry: node, the innermost function's name, inside an ``__init__``.
    stack: list[tuple[ast.AST, str | None, bool]] = [(tree, None, False)]
    pop, push = stack.pop, stack.append
    while stack:
        node, fn, in_init = pop()
        t = type(node)
        writes = fn is not None and fn not in _NOT_DIFFERENTIABLE
        if t is ast.Call:
            name = _final_name(node.func)
            if name is not None:
                if writes and name.endswith("_") and not name.startswith("__"):
                    inplace_write = True
                positional = [a for a in node.args if type(a) is not ast.Starred]
                starred = len(positional) < len(node.args) or any(kw.arg is None for kw in node.keywords)
                if writes and name in functional and (len(positional) > functional[name] or starred):
                    inplace_write = True  # ``F.relu(x, True)``: the analysis makes a site only for a set flag
                index = modules.get(name)
                if index is not None and (len(positional) > index or starred):
                    inplace_module = True  # ``nn.ReLU(True)``, or unknown ``*args``/``**kwargs``
                if name == "register_parameter" and node.args and type(node.args[0]) is ast.Constant:
                    if isinstance(node.args[0].value, str):
                        parameter_names.add(node.args[0].value)
                if name == "register_buffer" and in_init:
                    init_values.extend(node.args[1:])
                    init_values.extend(kw.value for kw in node.keywords)
            for kw in node.keywords:
                if kw.arg == "inplace":
                    inplace_module = True
                    inplace_write = inplace_write or writes
                elif kw.arg == "out":
                    inplace_write = inplace_write or writes
        elif t is ast.Assign or (t is ast.AnnAssign and node.value is not None):
            targets = node.targets if t is ast.Assign else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if type(sub) is ast.Subscript:
                        inplace_write = inplace_write or writes
                    elif type(sub) is ast.Attribute and sub.attr == "inplace":
                        inplace_module = True  # ``m.inplace = True``
                if type(target) is ast.Attribute and _calls(node.value, parameter_callees):
                    parameter_names.add(target.attr)
            if in_init and any(type(sub) is ast.Attribute for target in targets for sub in ast.walk(target)):
                init_values.append(node.value)
        elif t is ast.AugAssign:
            inplace_write = inplace_write or writes
        elif t is ast.FunctionDef or t is ast.AsyncFunctionDef:
            for child in (*node.decorator_list, node.args, node.returns):
                if child is not None:
                    push((child, fn, in_init))
            inner = in_init or node.name == "__init__"
            for stmt in node.body:
                push((stmt, node.name, inner))
            continue
        elif t is ast.ImportFrom or t is ast.Import:
            for alias in node.names:
                if alias.name.rsplit(".", 1)[-1] == "Parameter" and (t is ast.ImportFrom or alias.asname):
                    parameter_callees.add(alias.asname or alias.name)
        for field in node._fields:
            value = getattr(node, field, None)
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        push((item, fn, in_init))
            elif isinstance(value, ast.AST):
                push((value, fn, in_init))

    found = set()
    if inplace_write or inplace_module:
        found.add(INPLACE)
    if _init_may_derive(init_values, parameter_names, parameter_callees):
        found.add(INIT_DERIVED)
    return frozenset(found)


def _final_name(func: ast.expr) -> str | None:
    t = type(func)
    if t is ast.Attribute:
        return func.attr
    if t is ast.Name:
        return func.id
    return None


def _calls(value: ast.expr, callees: set[str]) -> bool:
    return any(type(sub) is ast.Call and _final_name(sub.func) in callees for sub in ast.walk(value))


def _init_may_derive(values: list[ast.expr], parameter_names: set[str], callees: set[str]) -> bool:
    """Some value assigned in an ``__init__`` reads an attribute that may be a Parameter, or
    holds a Parameter created inside a larger expression (or moved: ``P(t).to(d)``)."""
    for value in values:
        for sub in ast.walk(value):
            t = type(sub)
            if t is ast.Attribute:
                name = sub.attr
                if name in parameter_names or name.startswith(("weight", "bias")) or name.endswith(("_weight", "_bias")):
                    return True
            elif t is ast.Call and sub is not value and _final_name(sub.func) in callees:
                return True
    return False
