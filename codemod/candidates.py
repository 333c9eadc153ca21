"""Which rule families can have a finding in a file, decided on Python's ``ast`` before LibCST parses it.

The whole-program phase already parses every file with ``ast`` (in the worker processes, about
5x faster than LibCST). ``possible_findings`` reads that tree and names the rule families that
*may* report or rewrite something there; the engine parses with LibCST (and runs the rules) only
where at least one selected family is named. The test is a sound over-approximation of what the
rules look at: it mirrors the syntax each family starts from (``analysis/index.py`` for the
in-place family, ``rules/init_derived.py`` for the other) and never looks at dataflow, so a file
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

    In-place family (``rules/inplace.py``): its findings are writes found in functions the index
    marks ``writes_in_place`` (augmented assignment, index assignment, a call of a name ending in
    ``_``, an ``F.relu(x, True)``-style flag, ``inplace=``/``out=`` keywords), calls of in-place
    activation modules, and ``nn.Sequential`` layers built in place. A write in a function named
    like ``__init__``/``_init_weights`` (never differentiable code) yields nothing unless an
    in-place module is involved, which the file-wide module test catches.

    ``__init__``-derived family (``rules/init_derived.py``): every finding is an assignment (or a
    ``register_buffer`` call) in an ``__init__`` whose value reads a Parameter (an attribute
    assigned a Parameter anywhere in the file, registered with ``register_parameter``, or named
    like ``weight``/``bias``), or holds a Parameter created inside a larger expression.
    """
    from .analysis import torch_api
    from .rules.inplace import _NOT_DIFFERENTIABLE

    scan = _Scan(torch_api.inplace_activation_modules(), torch_api.FUNCTIONAL_INPLACE_ARG, _NOT_DIFFERENTIABLE)
    scan.visit(tree)
    found = set()
    if scan.inplace_write or scan.inplace_module:
        found.add(INPLACE)
    if scan.init_may_derive():
        found.add(INIT_DERIVED)
    return frozenset(found)


def _final_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


class _Scan(ast.NodeVisitor):
    def __init__(self, modules: dict[str, int], functional: dict[str, int], not_differentiable) -> None:
        self.modules = modules
        self.functional = functional
        self.not_differentiable = not_differentiable
        self.functions: list[str] = []  # enclosing function names, innermost last
        self.inplace_write = False  # an in-place write in a function that may be differentiable
        self.inplace_module = False  # something that may build an in-place module or flip ``.inplace``
        # __init__-derived: names that may be Parameters, and the values assigned in __init__.
        self.parameter_names: set[str] = set()
        self.parameter_callees: set[str] = {"Parameter"}  # local names bound to a Parameter class
        self.init_values: list[ast.expr] = []

    # -- scopes ------------------------------------------------------------------------------
    def visit_FunctionDef(self, node) -> None:
        for child in (*node.decorator_list, node.args, node.returns):
            if child is not None:
                self.visit(child)
        self.functions.append(node.name)
        for stmt in node.body:
            self.visit(stmt)
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def _write(self) -> None:
        if self.functions and self.functions[-1] not in self.not_differentiable:
            self.inplace_write = True

    def _in_init(self) -> bool:
        return "__init__" in self.functions

    # -- imports (``from torch.nn import Parameter as P``) --------------------------------------
    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name.rsplit(".", 1)[-1] == "Parameter":
                self.parameter_callees.add(alias.asname or alias.name)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname and alias.name.rsplit(".", 1)[-1] == "Parameter":
                self.parameter_callees.add(alias.asname)

    # -- statements ---------------------------------------------------------------------------
    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._store(target, node.value)
        self._value(node.value, node.targets)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._store(node.target, node.value)
            self._value(node.value, [node.target])
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._write()
        self.generic_visit(node)

    def _store(self, target: ast.expr, value: ast.expr) -> None:
        for sub in ast.walk(target):
            if isinstance(sub, ast.Subscript):
                self._write()
            elif isinstance(sub, ast.Attribute) and sub.attr == "inplace":
                self.inplace_module = True  # ``m.inplace = True``
        if isinstance(target, ast.Attribute) and self._has_parameter_call(value):
            self.parameter_names.add(target.attr)

    def _value(self, value: ast.expr, targets: list[ast.expr]) -> None:
        if self._in_init() and any(isinstance(t, ast.Attribute) for tgt in targets for t in ast.walk(tgt)):
            self.init_values.append(value)

    def visit_Call(self, node: ast.Call) -> None:
        name = _final_name(node.func)
        keywords = {kw.arg for kw in node.keywords}
        if name is not None:
            if name.endswith("_") and not name.startswith("__"):
                self._write()
            positional = [a for a in node.args if not isinstance(a, ast.Starred)]
            starred = len(positional) < len(node.args) or None in keywords
            if name in self.functional and (len(positional) > self.functional[name] or starred):
                self._write()  # ``F.relu(x, True)``: the analysis makes a site only for a set flag
            index = self.modules.get(name)
            if index is not None and (len(positional) > index or starred):
                self.inplace_module = True  # ``nn.ReLU(True)``, or unknown ``*args``/``**kwargs``
            if name == "register_parameter" and node.args and isinstance(node.args[0], ast.Constant):
                if isinstance(node.args[0].value, str):
                    self.parameter_names.add(node.args[0].value)
            if name == "register_buffer" and self._in_init():
                self.init_values.extend(node.args[1:])
                self.init_values.extend(kw.value for kw in node.keywords)
        if "inplace" in keywords:
            self.inplace_module = True
            self._write()
        if "out" in keywords:
            self._write()
        self.generic_visit(node)

    # -- __init__-derived ----------------------------------------------------------------------
    def _is_parameter_call(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Call) and _final_name(node.func) in self.parameter_callees

    def _has_parameter_call(self, value: ast.expr) -> bool:
        return any(self._is_parameter_call(sub) for sub in ast.walk(value))

    def init_may_derive(self) -> bool:
        def parameter_like(name: str) -> bool:
            return (name in self.parameter_names or name.startswith(("weight", "bias"))
                    or name.endswith(("_weight", "_bias")))

        for value in self.init_values:
            for sub in ast.walk(value):
                if isinstance(sub, ast.Attribute) and parameter_like(sub.attr):
                    return True
                if sub is not value and self._is_parameter_call(sub):
                    return True  # a Parameter inside an expression (or moved: ``P(t).to(d)``)
        return False
