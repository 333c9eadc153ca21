"""Whole-program facts: what the functions of every file of the run do, seen from any other file.

Three phases, each with one job:

1. **Per-file summaries** (``summarize``, run in the worker processes): Python's own ``ast`` parser
   (several times faster than LibCST) reads a file and records, for each top-level function and
   each method, its parameters, which of them the returned value may share storage with (an
   alias), and whether every ``return`` hands back the output of an op that saves its output for
   backward (``torch.sigmoid``, ``F.relu``: writing that result in place breaks backward). The
   file's imports are recorded as absolute module paths (relative imports resolved against the
   file's own place). A ``FileSummary`` is small and pickles cheaply.
2. **Project resolution** (``Program``, in the parent): modules are keyed by their path; an
   ``import`` resolves to the one module whose path ends with the imported name (ambiguity: not
   resolved), following re-exports through packages' ``__init__``.
3. **Per-file rules** ask ``Program.callee(file, name)`` for the summary of a call's target.

Everything here over-approximates aliasing (an unknown call inside a function may return an
alias of anything it is given), so a summary can turn a rewrite into a report, never the reverse;
``saved_output`` is recorded only when every return is such an op.
"""

from __future__ import annotations

import ast
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable

# Torch knowledge (analysis/torch_api.py): tensor methods and attributes whose result may share
# storage with the receiver, attributes that are not tensors, torch functions that may return (a
# view of) their first argument, and the context managers that switch autograd off.
from .analysis.torch_api import FUNCTIONAL_INPLACE_ARG
from .analysis.torch_api import GRAD_DISABLING as _NO_GRAD
from .analysis.torch_api import MAY_ALIAS_FUNCTIONS as _TORCH_ALIAS_FUNCTIONS
from .analysis.torch_api import MAY_ALIAS_METHODS as _VIEW_METHODS
from .analysis.torch_api import METADATA_ATTRIBUTES as _METADATA
from .ast_walk import CHILDLESS, children, own_nodes, walk


_FUNCTIONAL_INPLACE = frozenset(FUNCTIONAL_INPLACE_ARG)  # torch functions that write an argument in place


@dataclass(frozen=True)
class FunctionSummary:
    """What a call of one function does, as far as its callers are concerned."""

    where: str  # "path:line" of the ``def``
    params: tuple[str, ...]  # positional parameters in order (without ``self``/``cls`` of a method)
    kwonly: frozenset[str]
    varargs: bool
    aliases: frozenset[str]  # parameters the returned value may share storage with
    # parameters that may be saved for backward: given (or an alias) to a call other than a view
    # method, or an operand of an arithmetic operator
    saves: frozenset[str] = frozenset()
    saved_output: str | None = None  # the op every return's value comes from, when it saves its output
    # A factory of modules: what every ``return`` builds, as a layer description (``_layer``).
    returns_layer: tuple | None = None
    # May the function write a tensor in place (in-place syntax in its own body, or the file may
    # build an in-place module)? Where not, its callers' uses of what they pass are not computed.
    writes: bool = True


@dataclass
class FileSummary:
    display: str
    key: tuple[str, ...]  # the module's path components (``("repo", "gate", "model")``)
    is_package: bool
    functions: dict[str, FunctionSummary] = field(default_factory=dict)
    methods: dict[str, dict[str, FunctionSummary]] = field(default_factory=dict)  # class -> name -> summary
    imports: dict[str, tuple[int, str]] = field(default_factory=dict)  # local name -> (level, "module.name")
    # Calls of names: (callee as written, the calling function's qualname or None at module level,
    # whether the call runs with grad disabled: a ``with torch.no_grad():`` block, a decorator)
    calls: list[tuple[str, str | None, bool]] = field(default_factory=list)
    # Not summarized yet (the file never mentions torch): summarized when an import reaches it,
    # from its text kept here (no phase after this one reads a file).
    path: str | None = None
    text: bytes = b""
    # What each call passes and what its caller does with each argument around the call
    # (capability 2, caller contexts): calls of names that are not torch's.
    call_sites: list[CallSite] = field(default_factory=list)
    # Names used other than called: a function mentioned here may be called in ways no call site
    # shows (a callback, ``getattr``), so its call sites are not known to be all of them.
    mentions: frozenset[str] = frozenset()
    # class -> attribute -> how ``__init__`` builds the module in ``self.<attr>`` (``_layer``)
    layers: dict[str, dict[str, tuple]] = field(default_factory=dict)
    # ``m.inplace = True`` over the modules of an object other than ``self`` (``Switch``)
    switches: list[Switch] = field(default_factory=list)
    # class -> the calls in its ``forward`` that would overwrite a saved output if the module
    # called were switched in place after construction (``SwitchTarget``)
    switchable: dict[str, list[SwitchTarget]] = field(default_factory=dict)
    # The rule families that may have a finding in this file (``candidates.possible_findings``);
    # None: not decided here (the engine parses the file if its own text test passes).
    may_find: frozenset[str] | None = None


@dataclass(frozen=True)
class ArgUse:
    """What a caller does with the value it passes as one argument, around the call.

    ``status``: "saved" (an op saved it for backward before the call: ``op`` at ``line``),
    "read" (``name``, sharing its storage, is read again at ``line`` after the call), "unknown"
    (it comes from the caller's own arguments, module state or a global: someone else may read
    it), or "fresh" (nothing reads it again)."""

    status: str
    name: str = ""
    line: int = 0
    op: str = ""


@dataclass(frozen=True)
class CallSite:
    callee: str  # as written, ``self.m`` turned into ``Class.m``
    caller: str | None  # the calling function's qualname
    line: int
    column: int
    args: int  # how many positional arguments
    keywords: tuple[str, ...]
    star: bool  # ``*args``/``**kwargs``: which parameter gets which value is unknown
    # Calls of a capitalized name (a class, maybe): each argument's qualified dotted name
    # (``torch.nn.ReLU``), or "?" for anything else; keyword arguments after the positional ones.
    values: tuple[tuple[str, str], ...] = ()
    # What the caller does with each argument around the call (``_CallerFlow.use``): the
    # positional ones in order, then one per keyword of ``keywords``. Empty where the call is not
    # in a function or passes ``*args``/``**kwargs`` (every use unknown).
    uses: tuple[ArgUse, ...] = ()
    # With ``uses``: the class that built each positional argument (``net = Net()``), as written,
    # or None where it is not known.
    classes: tuple[str | None, ...] = ()


@dataclass(frozen=True)
class Switch:
    """``for m in net.modules(): if isinstance(m, nn.ReLU): m.inplace = True`` in a function: the
    object whose modules it walks is a parameter (``param``: its position) or a local built by a
    class (``built``: the callee as written); ``types``: the qualified classes it keeps (None:
    every module with an ``inplace`` flag)."""

    line: int
    column: int
    function: str
    text: str
    types: frozenset[str] | None
    param: int | None = None
    built: str | None = None


@dataclass(frozen=True)
class SwitchTarget:
    """``self.<attr>(v)`` in ``forward``, where ``attr`` is a torch.nn module with an ``inplace``
    flag built without it and ``v`` an output that ``op`` saved for backward (at ``op_line``)."""

    attr: str
    module: str  # torch.nn.ReLU
    built_line: int
    line: int
    call: str
    written: str  # the name (or the op call) the module would overwrite
    op: str
    op_line: int


def module_key(path: str) -> tuple[tuple[str, ...], bool]:
    parts = os.path.abspath(path).split(os.sep)
    parts = [p for p in parts if p]
    name = parts[-1][:-3] if parts and parts[-1].endswith(".py") else (parts[-1] if parts else "")
    if name == "__init__":
        return tuple(parts[:-1]), True
    return tuple(parts[:-1]) + (name,), False


def summarize(path: str, display: str, data: bytes, lazy: bool = False) -> FileSummary | None:
    """The file's summary, or None where Python cannot parse it (reported by the rules' phase).

    With ``lazy``, a file that never mentions torch (most of a repository: configs, tokenizers,
    plain helpers) is not parsed now: its summary is a placeholder, parsed only if an import of
    another file reaches it. Its calls are not collected (a file without torch runs nothing under
    ``no_grad``; missing its calls can only keep a function out of differentiable code)."""
    key, is_package = module_key(path)
    if lazy and b"torch" not in data:
        return FileSummary(display, key, is_package, path=path, text=data)
    if b"def " not in data and b"import" not in data:
        return FileSummary(display, key, is_package)
    try:
        tree = compile(data, display, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    out = FileSummary(display, key, is_package)
    from .candidates import possible_findings

    out.may_find = possible_findings(tree)
    torch_names = _Imports()
    for node in _statements(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.split(".")[0]
                target = alias.name if alias.asname else alias.name.split(".")[0]
                out.imports[local] = (0, target)
                torch_names.names[local] = target
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    continue
                local = alias.asname or alias.name
                module = node.module or ""
                target = f"{module}.{alias.name}" if module else alias.name
                out.imports[local] = (node.level, target)
                if not node.level:
                    torch_names.names[local] = target
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.functions[node.name] = _summarize_function(node, own_nodes(node), display, False, torch_names)
        elif isinstance(node, ast.ClassDef):
            methods = {}
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in item.decorator_list)
                    body = own_nodes(item)
                    methods[item.name] = _summarize_function(item, body, display, not static, torch_names)
                    if item.name == "__init__":
                        layers = _init_layers(item, body, torch_names)
                        if any(layer[0] == "list" for layer in layers.values()):
                            for attr in _mutated_lists(node, layers):
                                del layers[attr]
                        if layers:
                            out.layers[node.name] = layers
            out.methods[node.name] = methods
            switchable = _switchable(node, out.layers.get(node.name, {}), torch_names)
            if switchable:
                out.switchable[node.name] = switchable
    if b".inplace" in data:
        out.switches = _switches(tree, torch_names)
    modules = _MAY_BUILD_INPLACE.search(data) is not None
    quiet = {name: fn for name, fn in out.functions.items() if not (fn.writes or modules)}
    quiet.update(
        (f"{cls}.{name}", fn)
        for cls, methods in out.methods.items()
        for name, fn in methods.items()
        if not (fn.writes or modules)
    )
    heads = set(out.imports) | {
        n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }
    methods_of = {
        n.name: {m.name for m in n.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))}
        for n in tree.body
        if isinstance(n, ast.ClassDef)
    }
    sites = _CallSites(out.calls, torch_names, heads, methods_of, quiet)
    sites.visit(tree)
    out.call_sites = sites.arg_sites
    out.mentions = frozenset(sites.mentions)
    return out


_BLOCK_FIELDS = frozenset({"body", "orelse", "finalbody", "handlers", "cases"})
_BLOCKS: dict[type, tuple[str, ...]] = {}


def _statements(tree: ast.Module) -> list[ast.AST]:
    """The module's statements (and the ``except`` handlers and ``case``s that hold some), in
    ``ast.walk``'s order (breadth first): everything above a statement is one of these, so the
    walk of these alone visits them in the order the walk of every node does."""
    nodes: list[ast.AST] = [tree]
    i = 0
    while i < len(nodes):
        node = nodes[i]
        i += 1
        blocks = _BLOCKS.get(type(node))
        if blocks is None:
            blocks = _BLOCKS[type(node)] = tuple(f for f in type(node)._fields if f in _BLOCK_FIELDS)
        for name in blocks:
            nodes += getattr(node, name)
    return nodes


def _inplace_pattern() -> re.Pattern[bytes]:
    from .analysis import torch_api

    names = sorted(torch_api.inplace_activation_modules(), key=len, reverse=True)
    return re.compile(rb"inplace|\b(?:" + b"|".join(n.encode() for n in names) + rb")\(\s*[^)\s]")


# Text that may build an in-place module (``inplace=``, ``nn.ReLU(True)``, ``m.inplace = True``):
# any function of such a file may call one on its argument.
_MAY_BUILD_INPLACE = _inplace_pattern()


class _Imports:
    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def qualify(self, expr: ast.expr) -> str | None:
        parts = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return None
        base = self.names.get(expr.id)
        if base is None:
            return None
        return ".".join([base, *reversed(parts)])


_OUTSIDE = frozenset(sys.stdlib_module_names) | {"numpy"}  # packages a call never resolves into the run from


class _CallSites(ast.NodeVisitor):
    """Every call of a (dotted) name, with its calling function and grad mode.

    Its ``visit_*`` methods are found by node type in ``_HANDLERS`` (filled below the class), and
    children are read with ``ast_walk``: ``ast.NodeVisitor``'s own lookups cost more than the
    visit of most nodes."""

    _HANDLERS: dict[type, Callable[[_CallSites, ast.AST], None]] = {}

    def __init__(
        self,
        out: list[tuple[str, str | None, bool]],
        imports: _Imports,
        heads: set[str] = frozenset(),
        methods_of: dict[str, set[str]] | None = None,
        quiet: dict[str, FunctionSummary] | None = None,
    ) -> None:
        self.heads = heads  # names a call can resolve through: imports, top-level functions and classes
        self.methods_of = methods_of or {}
        # Functions of this file (``f``, ``Class.m``) that write nothing in place: no rule asks
        # what their callers pass, so it is not followed (``CallSite.uses`` stays empty).
        self.quiet = quiet or {}
        self.out = out
        self.imports = imports
        self.scope: list[str] = []  # class and function names
        self.function: str | None = None
        self.function_node: ast.FunctionDef | ast.AsyncFunctionDef | None = None
        self._flow: _CallerFlow | None = None  # of ``function_node``, built at its first call site
        self.self_class: str | None = None
        self.no_grad = False
        self.arg_sites: list[CallSite] = []
        self.mentions: set[str] = set()
        self._callees: set[int] = set()  # ids of the ``func`` nodes of calls

    def visit(self, node: ast.AST) -> None:
        handler = self._HANDLERS.get(type(node))
        if handler is None:
            self.generic_visit(node)
        else:
            handler(self, node)

    def generic_visit(self, node: ast.AST) -> None:
        handlers = self._HANDLERS
        for child in children(node):
            handler = handlers.get(type(child))
            if handler is not None:
                handler(self, child)
            elif type(child) not in CHILDLESS:
                self.generic_visit(child)

    def _disables(self, expr: ast.expr) -> bool:
        func = expr.func if isinstance(expr, ast.Call) else expr
        if self.imports.qualify(func) not in _NO_GRAD:
            return False
        # ``torch.no_grad(False)``/``inference_mode(False)`` keep grad on
        return not (
            isinstance(expr, ast.Call)
            and expr.args
            and isinstance(expr.args[0], ast.Constant)
            and expr.args[0].value is False
        )

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_FunctionDef(self, node) -> None:
        for d in node.decorator_list:
            self.visit(d)
        saved = (self.function, self.self_class, self.no_grad, self.function_node, self._flow)
        if self.function is None and len(self.scope) <= 1:  # a top-level function or a method
            self.function = ".".join([*self.scope, node.name])
            self.self_class = self.scope[0] if self.scope else None
            self.function_node, self._flow = node, None
        # The calls of a nested function count as its definer's (an over-approximation), but it
        # runs whenever it is called: not in its definer's grad mode.
        self.no_grad = any(self._disables(d) for d in node.decorator_list)
        self.scope.append(node.name)
        for stmt in node.body:
            self.visit(stmt)
        self.scope.pop()
        self.function, self.self_class, self.no_grad, self.function_node, self._flow = saved

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        saved = self.no_grad
        self.no_grad = False
        self.generic_visit(node)
        self.no_grad = saved

    def visit_With(self, node) -> None:
        for item in node.items:
            self.visit(item.context_expr)
        saved = self.no_grad
        self.no_grad = self.no_grad or any(self._disables(item.context_expr) for item in node.items)
        for stmt in node.body:
            self.visit(stmt)
        self.no_grad = saved

    visit_AsyncWith = visit_With

    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted(node.func)
        if name is not None:
            head, _, rest = name.partition(".")
            resolvable = head in self.heads
            if head in ("self", "cls") and self.self_class and rest and "." not in rest:
                name = f"{self.self_class}.{rest}"
                resolvable = rest in self.methods_of.get(self.self_class, ())
            self.out.append((name, self.function, self.no_grad))
            if not resolvable:
                self.mentions.add(name.rsplit(".", 1)[-1])  # ``x.norm()``: a call of some ``norm``, not followed
            elif head not in self.imports.names or self.imports.names[head].split(".")[0] != "torch":
                self.arg_sites.append(self._site(name, node))
        elif isinstance(node.func, ast.Attribute):
            self.mentions.add(node.func.attr)  # ``make().f(x)``: a call of some ``f`` not resolved
        self._callees.add(id(node.func))
        self.generic_visit(node)

    def _site(self, name: str, node: ast.Call) -> CallSite:
        star = any(isinstance(a, ast.Starred) for a in node.args) or any(kw.arg is None for kw in node.keywords)
        values: tuple[tuple[str, str], ...] = ()
        if name.rsplit(".", 1)[-1][:1].isupper() and not star:
            values = tuple((str(i), self.imports.qualify(a) or "?") for i, a in enumerate(node.args)) + tuple(
                (kw.arg, self.imports.qualify(kw.value) or "?") for kw in node.keywords if kw.arg
            )
        uses: tuple[ArgUse, ...] = ()
        classes: tuple[str | None, ...] = ()
        # A capitalized callee builds an object (``Block(config)``): no rule asks what its
        # callers pass (``argument_uses`` follows functions and methods).
        # Nor do calls into the standard library or numpy (``math.sqrt(d)``) resolve into the run.
        head = self.imports.names.get(name.split(".", 1)[0], "").split(".", 1)[0]
        if (
            not star
            and self.function_node is not None
            and name not in self.quiet
            and not name.rsplit(".", 1)[-1][:1].isupper()
            and head not in _OUTSIDE
        ):
            passed = [*node.args, *(kw.value for kw in node.keywords)]
            if all(isinstance(a, ast.Constant) for a in passed):
                uses = tuple(ArgUse("fresh") for _ in passed)  # nothing shares a constant's storage
                classes = tuple(None for _ in node.args)
            else:
                if self._flow is None:
                    self._flow = _CallerFlow(self.function_node, self.imports)
                uses = tuple(self._flow.use(a, node) for a in passed)
                classes = tuple(self._flow.built_by(a) for a in node.args)
        return CallSite(
            name,
            self.function,
            node.lineno,
            node.col_offset,
            len(node.args),
            tuple(kw.arg or "" for kw in node.keywords),
            star or self.function is None,
            values,
            uses,
            classes,
        )

    def visit_Name(self, node: ast.Name) -> None:
        if id(node) not in self._callees and isinstance(node.ctx, ast.Load):
            self.mentions.add(node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if id(node) not in self._callees:
            self.mentions.add(node.attr)
        self.generic_visit(node)


_CallSites._HANDLERS.update(
    (getattr(ast, name[len("visit_") :]), method)
    for name, method in vars(_CallSites).items()
    if name.startswith("visit_")
)


# Expressions whose value shares no storage with a name in them (``a or b`` is ``a`` or ``b``).
_NEW_VALUES = frozenset(
    {
        ast.Constant,
        ast.BinOp,
        ast.UnaryOp,
        ast.Compare,
        ast.Lambda,
        ast.JoinedStr,
        ast.ListComp,
        ast.SetComp,
        ast.DictComp,
        ast.GeneratorExp,
    }
)
_STATEMENT_ASSIGNS = (ast.Assign, ast.AnnAssign, ast.AugAssign)
# Node types, for ``_CallerFlow``'s walk: statements (not definitions), those with a block of
# statements (``body``, ``orelse``, ``finalbody``), and expressions that hold no name, bind
# nothing and have no block.
_STATEMENTS = frozenset(
    t for t in vars(ast).values() if isinstance(t, type) and issubclass(t, ast.stmt) and t is not ast.stmt
) - {ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef}
_WITH_BLOCKS = frozenset(
    t
    for t in vars(ast).values()
    if isinstance(t, type) and issubclass(t, ast.AST) and {"body", "orelse", "finalbody"} & set(t._fields)
)
_PLAIN_EXPRESSIONS = frozenset({ast.Constant, ast.Attribute, ast.Call, ast.Subscript, ast.BinOp, ast.keyword})


class _CallerFlow:
    """One function seen from a call it makes: which of its names share storage with a value it
    passes, whether an op saved that storage before the call, whether it is read after.

    Flow-insensitive and over-approximating (any assignment links its target with every name its
    value may alias, in both directions), except for the call's own statement: in ``y = f(x)`` the
    result is what ``f`` returns, which ``f``'s own analysis keeps consistent, not ``x``."""

    def __init__(self, fn: ast.FunctionDef | ast.AsyncFunctionDef, imports: _Imports) -> None:
        self.imports = imports
        args = fn.args
        self.outside = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
        for extra in (args.vararg, args.kwarg):
            if extra is not None:
                self.outside.add(extra.arg)
        self.loads: dict[str, list[tuple[int, int]]] = {}  # name -> (line, col, line) of each read
        stored: set[str] = set()
        # (statement, targets, aliased names, direct: a plain alias, not one an unknown call may return)
        self.edges: list[tuple[ast.stmt | None, set[str], set[str], bool]] = []
        self.through_call = False
        self.ends: list[tuple[tuple[int, int], tuple[int, int]]] = []  # blocks that end in ``return``/``raise``
        self.saved: dict[str, tuple[int, str]] = {}  # name -> (line, op) of an op that saved its output into it
        self._by_name: dict[str, list[int]] | None = None  # name -> the edges that mention it
        self.loops: list[tuple[tuple[int, int], tuple[int, int]]] = []
        self.arms: list[tuple[tuple[tuple[int, int], tuple[int, int]], ...]] = []  # an ``if``'s two arms
        self.statements: list[ast.stmt] = []
        self.stores: dict[str, int] = {}  # name -> how many times it is bound
        self.built: dict[str, str] = {}  # ``net = Net(...)``: name -> the callee as written
        for node in walk(fn):
            kind = type(node)
            if kind is ast.Name:
                if type(node.ctx) is ast.Load:
                    self.loads.setdefault(node.id, []).append((node.lineno, node.col_offset))
                else:
                    stored.add(node.id)
                    self.stores[node.id] = self.stores.get(node.id, 0) + 1
                continue
            if kind in _PLAIN_EXPRESSIONS:
                continue
            if kind in _STATEMENTS:
                self.statements.append(node)
            if kind in _WITH_BLOCKS and kind is not ast.FunctionDef and kind is not ast.AsyncFunctionDef:
                for block in (
                    getattr(node, "body", None),
                    getattr(node, "orelse", None),
                    getattr(node, "finalbody", None),
                ):
                    if type(block) is list and block and type(block[-1]) in (ast.Return, ast.Raise):
                        self.ends.append(_span(block))
            if kind is ast.If and node.body and node.orelse:
                self.arms.append((_span(node.body), _span(node.orelse)))
            elif (kind is ast.For or kind is ast.AsyncFor or kind is ast.While) and node.end_lineno is not None:
                self.loops.append(((node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset or 0)))
            targets: list[str] = []
            value: ast.expr | None = None
            if isinstance(node, ast.Assign):
                targets, value = [n for t in node.targets for n in _target_names(t)], node.value
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr)) and node.value is not None:
                targets, value = _target_names(node.target), node.value
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
                targets, value = _target_names(node.target), node.iter
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    if item.optional_vars is not None:
                        self.edges.append(
                            (None, set(_target_names(item.optional_vars)), self.names(item.context_expr), False)
                        )
            if value is not None and targets:
                own = node if isinstance(node, _STATEMENT_ASSIGNS) else None
                self.through_call = False
                aliased = self.names(value)
                self.edges.append((own, set(targets), aliased, not self.through_call))
                if len(targets) == 1 and isinstance(node, ast.Assign) and isinstance(value, ast.Call):
                    callee = _dotted(value.func)
                    if callee is not None:
                        self.built[targets[0]] = callee
                op = _saving_op(value, imports) if len(targets) == 1 and isinstance(node, ast.Assign) else None
                if op is not None:
                    self.saved.setdefault(targets[0], (node.lineno, op))
        for positions in self.loads.values():
            positions.sort()
        # A name never assigned here is a global or a builtin: someone else may hold its value.
        self.outside |= set(self.loads) - stored
        self.outside |= {"self", "cls"}

    def built_by(self, arg: ast.expr) -> str | None:
        """The class (a capitalized callee, as written) that built the object ``arg`` passes:
        ``Net()`` itself, or a name bound once, to ``Net(...)``."""
        if isinstance(arg, ast.Name) and self.stores.get(arg.id) == 1:
            callee = self.built.get(arg.id)
        elif isinstance(arg, ast.Call):
            callee = _dotted(arg.func)
        else:
            return None
        return callee if callee is not None and callee.rsplit(".", 1)[-1][:1].isupper() else None

    def statement_of(self, call: ast.Call) -> ast.stmt | None:
        """The innermost statement holding ``call``."""
        best = None
        for stmt in self.statements:
            if (stmt.lineno, stmt.col_offset) <= (call.lineno, call.col_offset) and (
                (call.end_lineno or 0, call.end_col_offset or 0) <= (stmt.end_lineno or 0, stmt.end_col_offset or 0)
            ):
                if best is None or (stmt.lineno, stmt.col_offset) >= (best.lineno, best.col_offset):
                    best = stmt
        return best

    def names(self, expr: ast.expr) -> set[str]:
        """The names whose storage ``expr``'s value may share (an unknown call: any of its operands)."""
        kind = type(expr)
        if kind is ast.Name:
            return {expr.id}
        if kind is ast.Call:
            qual = self.imports.qualify(expr.func)
            if qual is not None and qual.split(".")[0] == "torch":
                name = qual.rsplit(".", 1)[-1]
                if name in _TORCH_ALIAS_FUNCTIONS or name.endswith("_"):
                    return self.names(expr.args[0]) if expr.args else set()
                return set()
            found: set[str] = set()
            if isinstance(expr.func, ast.Attribute):
                found |= self.names(expr.func.value)
                if expr.func.attr in _VIEW_METHODS:
                    return found
            for a in expr.args:
                found |= self.names(a.value if isinstance(a, ast.Starred) else a)
            for kw in expr.keywords:
                found |= self.names(kw.value)
            self.through_call |= bool(found)
            return found
        if kind in _NEW_VALUES:
            return set()
        if kind is ast.Subscript:
            return self.names(expr.value)
        if kind is ast.Attribute:
            return set() if expr.attr in _METADATA else self.names(expr.value)
        found = set()
        for child in children(expr):
            if isinstance(child, ast.expr):
                found |= self.names(child)
        return found

    def use(self, arg: ast.expr, call: ast.Call) -> ArgUse:
        op = _saving_op(arg, self.imports)
        if op is not None:  # ``f(torch.sigmoid(h))``: the callee writes a saved output
            return ArgUse("saved", "", call.lineno, op)
        own = self.statement_of(call)
        self.through_call = False
        start_names = self.names(arg)
        maybe = self._group(start_names, own, False)
        # Facts reported name only plain aliases (``v = h.view(-1)``), never what an unknown call
        # may return: such a link makes the caller's use unknown instead.
        direct = self._group(start_names, own, True) if not self.through_call else set()
        start = (call.lineno, call.col_offset)
        end = (call.end_lineno or call.lineno, call.end_col_offset or 0)
        for name in sorted(maybe):
            if name in self.saved and self.saved[name][0] <= call.lineno:
                if name not in direct:
                    return ArgUse("unknown", name)
                line, saving = self.saved[name]
                return ArgUse("saved", name, line, saving)
        # Names the call's own statement rebinds (``x = f(x)``) hold the callee's result afterwards.
        killed = set()
        if isinstance(own, (ast.Assign, ast.AnnAssign)):
            killed = set(_target_names(own.targets[0] if isinstance(own, ast.Assign) else own.target))
        loop = max((lp for lp in self.loops if lp[0] <= start and end <= lp[1]), default=None)
        # The other arm of an ``if`` around the call cannot run after it (outside a loop), nor
        # can anything after the end of a block around it that returns or raises.
        other_arms = [
            b if a[0] <= start and end <= a[1] else a
            for a, b in self.arms
            if (a[0] <= start and end <= a[1]) or (b[0] <= start and end <= b[1])
        ]
        stop = min((e[1] for e in self.ends if e[0] <= start and end <= e[1]), default=None)
        reads = []
        for name in maybe - killed:
            for line, col in self.loads.get(name, ()):
                pos = (line, col)
                if stop is not None and pos > stop:
                    break
                if loop is None and any(arm[0] <= pos < arm[1] for arm in other_arms):
                    continue
                if start <= pos < end and loop is None:
                    continue  # the call's own arguments (in a loop: read again by the next call)
                if pos >= end or (loop is not None and loop[0] <= pos):
                    reads.append((name not in direct, pos, name))
                    break
        if reads:
            indirect, pos, name = min(reads)
            return ArgUse("unknown", name) if indirect else ArgUse("read", name, pos[0])
        if maybe & self.outside:
            return ArgUse("unknown", sorted(maybe & self.outside)[0])
        return ArgUse("fresh")

    def _group(self, names: set[str], own: ast.stmt | None, direct: bool) -> set[str]:
        """``names`` and every name an assignment links with them (not the call's own statement)."""
        if self._by_name is None:
            self._by_name = {}
            for i, (_, targets, aliased, _) in enumerate(self.edges):
                for n in targets | aliased:
                    self._by_name.setdefault(n, []).append(i)
        group = set(names)
        todo = list(group)
        while todo:
            for i in self._by_name.get(todo.pop(), ()):
                stmt, targets, aliased, plain = self.edges[i]
                if (own is not None and stmt is own) or (direct and not plain):
                    continue
                new = (targets | aliased) - group
                group |= new
                todo.extend(new)
        return group


def _span(body: list[ast.stmt]) -> tuple[tuple[int, int], tuple[int, int]]:
    last = body[-1]
    return (body[0].lineno, body[0].col_offset), (last.end_lineno or last.lineno, last.end_col_offset or 0)


def _dotted(expr: ast.expr) -> str | None:
    parts = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    return ".".join([expr.id, *reversed(parts)])


def _summarize_function(
    node: ast.FunctionDef | ast.AsyncFunctionDef, body: list[ast.AST], display: str, method: bool, imports: _Imports
) -> FunctionSummary:
    """``node``'s summary; ``body``: its ``own_nodes``."""
    args = node.args
    positional = [a.arg for a in (*args.posonlyargs, *args.args)]
    if method and positional:
        positional = positional[1:]
    names = set(positional) | {a.arg for a in args.kwonlyargs}
    if args.vararg:
        names.add(args.vararg.arg)
    if args.kwarg:
        names.add(args.kwarg.arg)
    # Flow-insensitive: a local may alias whatever any assignment to it may alias (a fixpoint).
    alias_of: dict[str, set[str]] = {n: {n} for n in names}
    assigns: list[tuple[list[str], ast.expr]] = []
    returns: list[ast.expr | None] = []
    for sub in body:
        kind = type(sub)
        if kind is ast.Assign:
            assigns.append(([n for t in sub.targets for n in _target_names(t)], sub.value))
        elif (kind is ast.AnnAssign or kind is ast.AugAssign) and sub.value is not None:
            assigns.append((_target_names(sub.target), sub.value))
        elif kind is ast.NamedExpr:
            assigns.append((_target_names(sub.target), sub.value))
        elif kind is ast.For or kind is ast.AsyncFor or kind is ast.comprehension:
            assigns.append((_target_names(sub.target), sub.iter))
        elif kind is ast.With or kind is ast.AsyncWith:
            for item in sub.items:
                if item.optional_vars is not None:
                    assigns.append((_target_names(item.optional_vars), item.context_expr))
        elif kind is ast.Return:
            returns.append(sub.value)
    changed = True
    while changed:
        changed = False
        for targets, value in assigns:
            found = _aliases(value, alias_of, imports)
            for t in targets:
                have = alias_of.setdefault(t, set())
                if not found <= have:
                    have |= found
                    changed = True
    saves: set[str] = set()
    writes = False
    for sub in body:
        kind = type(sub)
        if not writes and kind in _MAY_WRITE:
            writes = _writes_in_place(sub)
        if kind is ast.BinOp:
            saves |= _aliases(sub.left, alias_of, imports) | _aliases(sub.right, alias_of, imports)
        elif kind is ast.Call:
            func = sub.func
            if type(func) is ast.Attribute and (func.attr in _VIEW_METHODS or func.attr in _METADATA):
                continue
            if type(func) is ast.Attribute:
                saves |= _aliases(func.value, alias_of, imports)
            for a in sub.args:
                saves |= _aliases(a, alias_of, imports)
            for kw in sub.keywords:
                saves |= _aliases(kw.value, alias_of, imports)
    aliases: set[str] = set()
    for value in returns:
        if value is not None:
            aliases |= _aliases(value, alias_of, imports)
    saved = None
    returns_layer = None
    if returns and all(v is not None for v in returns):
        ops = {_saving_op(v, imports) for v in returns}  # type: ignore[arg-type]
        if len(ops) == 1:
            saved = ops.pop()
        built = {_layer(v, imports, frozenset()) for v in returns}  # type: ignore[arg-type]
        if len(built) == 1:
            returns_layer = built.pop()
    return FunctionSummary(
        where=f"{display}:{node.lineno}",
        params=tuple(positional),
        kwonly=frozenset(a.arg for a in args.kwonlyargs),
        varargs=args.vararg is not None or args.kwarg is not None,
        aliases=frozenset(aliases & names),
        saves=frozenset(saves & names),
        saved_output=saved,
        returns_layer=returns_layer,
        writes=writes,
    )


_MAY_WRITE = frozenset({ast.AugAssign, ast.Lambda, ast.Assign, ast.AnnAssign, ast.Call})  # see ``_writes_in_place``


def _writes_in_place(node: ast.AST) -> bool:
    """In-place syntax, as ``candidates.possible_findings`` sees it (a superset of the writes the
    in-place analysis finds): augmented or index assignment, an attribute stored, a call of a
    name ending in ``_``, ``inplace=``/``out=``, a functional activation given its flag."""
    t = type(node)
    if t is ast.AugAssign:
        return True
    if t is ast.Lambda:  # not walked by ``own_nodes``, but analysed with its function
        return any(_writes_in_place(sub) for sub in walk(node.body))
    if t is ast.Assign or t is ast.AnnAssign:
        targets = node.targets if t is ast.Assign else [node.target]
        return any(
            type(sub) in (ast.Subscript, ast.Attribute)
            for target in targets
            if type(target) is not ast.Name  # the common ``x = ...``
            for sub in walk(target)
        )
    if t is ast.Call:
        func = node.func
        name = func.attr if type(func) is ast.Attribute else func.id if type(func) is ast.Name else None
        if name is not None and ((name.endswith("_") and not name.startswith("__")) or name in _FUNCTIONAL_INPLACE):
            return True
        return any(kw.arg in ("inplace", "out") for kw in node.keywords)
    return False


# How a module is built, as far as what its output is matters (the layer that produces it):
#   ("torch", "torch.nn.Tanh", inplace)     a torch.nn module class, constructed
#   ("param", name, position, default)     ``act(...)`` where ``act`` is a parameter of ``__init__``;
#                                          ``default`` is a layer description or None
#   ("call", "dotted")                     the result of a function of the run (a factory), or a
#                                          module class of the run (its ``forward`` returns the output)
#   ("self", attr)                         what ``self.<attr>`` returns (in ``forward``: ``return self.act(h)``)
#   ("list", (layer, ...), exact)          an ``nn.ModuleList``: its elements; ``exact`` where they are
#                                          listed one by one (a comprehension: one layer for all of them)
# ``nn.Sequential(a, ..., z)`` is described by its last layer ``z``; anything else is None.
_CONTAINERS = frozenset({"torch.nn.Sequential", "torch.nn.modules.container.Sequential"})
_LISTS = frozenset({"torch.nn.ModuleList", "torch.nn.modules.container.ModuleList"})
# Methods that change what a module container holds after it is built.
_MUTATORS = frozenset(
    {"append", "extend", "insert", "add_module", "register_module", "pop", "__setitem__", "__delitem__", "__iadd__"}
)


def _layer(
    expr: ast.expr,
    imports: _Imports,
    params: frozenset[str],
    positions: dict[str, int] | None = None,
    defaults: dict[str, ast.expr] | None = None,
) -> tuple | None:
    if not isinstance(expr, ast.Call):
        return None
    func = expr.func
    if isinstance(func, ast.Name) and func.id in params:
        default = (defaults or {}).get(func.id)
        built = None
        if default is not None:
            qual = imports.qualify(default)
            built = ("torch", qual, _inplace_kw(expr)) if qual and qual.startswith("torch.nn.") else None
            if built is None and not (isinstance(default, ast.Constant) and default.value is None):
                return None
        return ("param", func.id, (positions or {}).get(func.id, -1), built, _inplace_kw(expr))
    qual = imports.qualify(func)
    if qual in _CONTAINERS:
        if not expr.args or any(isinstance(a, ast.Starred) for a in expr.args) or expr.keywords:
            return None
        return _layer(expr.args[-1], imports, params, positions, defaults)
    if qual in _LISTS:
        if len(expr.args) != 1 or expr.keywords:
            return None
        items = expr.args[0]
        if isinstance(items, (ast.List, ast.Tuple)) and items.elts:
            if any(isinstance(e, ast.Starred) for e in items.elts):
                return None
            layers = tuple(_layer(e, imports, params, positions, defaults) for e in items.elts)
            return None if None in layers else ("list", layers, True)
        if isinstance(items, (ast.ListComp, ast.GeneratorExp)):
            bound = {n for g in items.generators for n in _target_names(g.target)}
            one = _layer(items.elt, imports, params - bound, positions, defaults)
            return ("list", (one,), False) if one is not None else None
        return None
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self":
        return ("self", func.attr)
    if qual is not None and qual.startswith("torch.nn.") and qual.count(".") == 2:
        return ("torch", qual, _inplace_kw(expr))
    dotted = _dotted(func)
    if dotted is not None and (qual is None or not qual.startswith("torch")):
        return ("call", dotted)
    return None


def _inplace_kw(call: ast.Call) -> bool:
    return any(
        kw.arg == "inplace" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False)
        for kw in call.keywords
    )


def _init_layers(
    init: ast.FunctionDef | ast.AsyncFunctionDef, body: list[ast.AST], imports: _Imports
) -> dict[str, tuple]:
    """``self.<attr> = <a module>`` in ``__init__`` (``body``: its ``own_nodes``), for attributes
    assigned exactly once there."""
    args = init.args
    positional = [a.arg for a in (*args.posonlyargs, *args.args)][1:]
    positions = {n: i for i, n in enumerate(positional)}
    defaults: dict[str, ast.expr] = {}
    for a, d in zip(reversed(positional), reversed(args.defaults)):
        defaults[a] = d
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        if d is not None:
            defaults[a.arg] = d
    params = frozenset(positional) | {a.arg for a in args.kwonlyargs}
    stored = {n.id for n in walk(init) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    found: dict[str, tuple | None] = {}
    for node in body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                    layer = _layer(node.value, imports, params - stored, positions, defaults) if node.value else None
                    found[t.attr] = None if t.attr in found else layer
    return {k: v for k, v in found.items() if v is not None}


_MODULE_WALKS = frozenset({"modules", "children", "named_modules", "named_children"})


def _switchable(cls: ast.ClassDef, layers: dict[str, tuple], imports: _Imports) -> list[SwitchTarget]:
    """``SwitchTarget``s of ``cls``: in its ``forward``, calls of an activation module attribute
    (built without ``inplace``) on an output an op saved: a plain name bound once, to that op's
    result, or the op's call itself."""
    from .analysis import torch_api

    flags = torch_api.inplace_activation_modules()
    attrs = {
        a: layer[1]
        for a, layer in layers.items()
        if layer[0] == "torch"
        and not layer[2]
        and layer[1].startswith("torch.nn.")
        and layer[1].rsplit(".", 1)[-1] in flags
    }
    forward = next(
        (n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "forward"), None
    )
    if not attrs or forward is None:
        return []
    built = {}
    for item in cls.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == "__init__":
            for sub in own_nodes(item):
                if isinstance(sub, ast.Assign) and len(sub.targets) == 1 and isinstance(sub.targets[0], ast.Attribute):
                    built[sub.targets[0].attr] = sub.lineno
    saved: dict[str, tuple[str, int]] = {}
    stores: dict[str, int] = {}
    calls = []
    for sub in own_nodes(forward):
        if isinstance(sub, ast.Name) and not isinstance(sub.ctx, ast.Load):
            stores[sub.id] = stores.get(sub.id, 0) + 1
        if isinstance(sub, ast.Assign) and len(sub.targets) == 1 and isinstance(sub.targets[0], ast.Name):
            op = _saving_op(sub.value, imports)
            if op is not None:
                saved[sub.targets[0].id] = (op, sub.lineno)
        elif (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Attribute)
            and isinstance(sub.func.value, ast.Name)
            and sub.func.value.id == "self"
            and sub.func.attr in attrs
            and len(sub.args) == 1
            and not sub.keywords
        ):
            calls.append(sub)
    out = []
    for call in sorted(calls, key=lambda c: (c.lineno, c.col_offset)):
        arg = call.args[0]
        op = _saving_op(arg, imports)
        if op is not None:
            written, op_line = ast.unparse(arg), arg.lineno
        elif isinstance(arg, ast.Name) and arg.id in saved and stores.get(arg.id) == 1:
            (op, op_line), written = saved[arg.id], arg.id
        else:
            continue
        attr = call.func.attr
        out.append(
            SwitchTarget(attr, attrs[attr], built.get(attr, 0), call.lineno, ast.unparse(call), written, op, op_line)
        )
    return out


def _switches(tree: ast.Module, imports: _Imports) -> list[Switch]:
    """``Switch``es in the module's functions and methods (over ``self``: the rule's own)."""
    out: list[Switch] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            _scan_switches(node, node.name, False, imports, out)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in item.decorator_list)
                    _scan_switches(item, f"{node.name}.{item.name}", not static, imports, out)
    return out


def _scan_switches(
    fn: ast.FunctionDef | ast.AsyncFunctionDef, qualname: str, method: bool, imports: _Imports, out: list[Switch]
) -> None:
    args = fn.args
    positional = [a.arg for a in (*args.posonlyargs, *args.args)]
    if method and positional:
        positional = positional[1:]
    stores: dict[str, int] = {}
    built: dict[str, str] = {}
    for sub in own_nodes(fn):
        if isinstance(sub, ast.Name) and not isinstance(sub.ctx, ast.Load):
            stores[sub.id] = stores.get(sub.id, 0) + 1
        if (
            isinstance(sub, ast.Assign)
            and len(sub.targets) == 1
            and isinstance(sub.targets[0], ast.Name)
            and isinstance(sub.value, ast.Call)
        ):
            callee = _dotted(sub.value.func)
            if callee is not None and callee.rsplit(".", 1)[-1][:1].isupper():
                built[sub.targets[0].id] = callee

    def walk(
        stmts: list[ast.stmt], var: str | None, over: tuple[int | None, str | None] | None, types: frozenset[str] | None
    ) -> None:
        for stmt in stmts:
            if isinstance(stmt, (ast.For, ast.AsyncFor)):
                it, target = stmt.iter, stmt.target
                if (
                    isinstance(it, ast.Call)
                    and isinstance(it.func, ast.Attribute)
                    and it.func.attr in _MODULE_WALKS
                    and isinstance(it.func.value, ast.Name)
                ):
                    obj = it.func.value.id
                    if isinstance(target, ast.Tuple) and target.elts:
                        target = target.elts[-1]
                    found: tuple[int | None, str | None] | None = None
                    if obj in positional and not stores.get(obj):
                        found = (positional.index(obj), None)
                    elif stores.get(obj) == 1 and obj in built:
                        found = (None, built[obj])
                    if found is not None and isinstance(target, ast.Name):
                        walk(stmt.body, target.id, found, None)
                    continue
                walk(stmt.body, var, over, types)
            elif isinstance(stmt, ast.If):
                if var is None:
                    walk(stmt.body, var, over, types)
                    continue
                picked = _switch_filter(stmt.test, var, imports)
                if picked is not False:
                    walk(
                        stmt.body, var, over, picked if types is None else (types if picked is None else types & picked)
                    )
            elif isinstance(stmt, (ast.With, ast.AsyncWith, ast.While, ast.Try)):
                walk(stmt.body, var, over, types)
            elif (
                isinstance(stmt, ast.Assign)
                and var is not None
                and over is not None
                and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Attribute)
                and stmt.targets[0].attr == "inplace"
                and isinstance(stmt.targets[0].value, ast.Name)
                and stmt.targets[0].value.id == var
                and isinstance(stmt.value, ast.Constant)
                and stmt.value.value is True
            ):
                out.append(Switch(stmt.lineno, stmt.col_offset, qualname, ast.unparse(stmt), types, *over))

    walk(fn.body, None, None, None)


def _switch_filter(test: ast.expr, var: str, imports: _Imports) -> frozenset[str] | None | bool:
    """The qualified types an ``if`` on the walked module keeps: ``isinstance(m, nn.ReLU)`` or
    ``type(m) in (...)``: a frozenset; ``hasattr(m, "inplace")``: None (every type); any other
    condition: False (not followed)."""

    def names(expr: ast.expr) -> frozenset[str] | bool:
        elements = expr.elts if isinstance(expr, (ast.Tuple, ast.List, ast.Set)) else [expr]
        quals = [imports.qualify(e) for e in elements]
        return False if any(q is None for q in quals) else frozenset(quals)  # type: ignore[arg-type]

    if isinstance(test, ast.Call) and isinstance(test.func, ast.Name) and len(test.args) == 2 and not test.keywords:
        first, second = test.args
        if isinstance(first, ast.Name) and first.id == var:
            if test.func.id == "isinstance":
                return names(second)
            if test.func.id == "hasattr" and isinstance(second, ast.Constant) and second.value == "inplace":
                return None
    if (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], (ast.In, ast.Is, ast.Eq))
        and isinstance(test.left, ast.Call)
        and isinstance(test.left.func, ast.Name)
        and test.left.func.id == "type"
        and len(test.left.args) == 1
        and isinstance(test.left.args[0], ast.Name)
        and test.left.args[0].id == var
    ):
        return names(test.comparators[0])
    return False


def _mutated_lists(cls: ast.ClassDef, layers: dict[str, tuple]) -> set[str]:
    """The ``nn.ModuleList`` attributes of ``layers`` that a method of ``cls`` changes after
    building them (``self.blocks.append(...)``, ``self.blocks[0] = ...``, ``self.blocks += ...``)."""
    lists = {attr for attr, layer in layers.items() if layer[0] == "list"}
    changed: set[str] = set()

    def held(expr: ast.expr) -> str | None:
        if isinstance(expr, ast.Subscript):
            expr = expr.value
        if (
            isinstance(expr, ast.Attribute)
            and isinstance(expr.value, ast.Name)
            and expr.value.id == "self"
            and expr.attr in lists
        ):
            return expr.attr
        return None

    for node in walk(cls):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _MUTATORS:
            attr = held(node.func.value)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            attr = next(
                (
                    a
                    for t in targets
                    for a in [held(t)]
                    if a is not None and (isinstance(t, ast.Subscript) or isinstance(node, ast.AugAssign))
                ),
                None,
            )
        else:
            continue
        if attr is not None:
            changed.add(attr)
    return changed


def _target_names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for e in target.elts for n in _target_names(e)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _aliases(expr: ast.expr, alias_of: dict[str, set[str]], imports: _Imports) -> set[str]:
    """The parameters ``expr``'s value may share storage with (over-approximated)."""
    kind = type(expr)
    if kind is ast.Name:
        return set(alias_of.get(expr.id, ()))
    if kind is ast.BoolOp:  # ``a or b`` is one of its operands
        return set().union(*(_aliases(v, alias_of, imports) for v in expr.values))
    if kind in _NEW_VALUES:
        return set()
    if kind is ast.Call:
        qual = imports.qualify(expr.func)
        if qual is not None and qual.split(".")[0] == "torch":
            name = qual.rsplit(".", 1)[-1]
            if name in _TORCH_ALIAS_FUNCTIONS or name.endswith("_"):
                return _aliases(expr.args[0], alias_of, imports) if expr.args else set()
            return set()  # a torch op returns a new tensor
        # A method of a tensor, or a call of something unknown: it may return its receiver or any
        # argument (or a view of one). A view method's arguments are sizes and dimensions.
        found: set[str] = set()
        if isinstance(expr.func, ast.Attribute):
            found |= _aliases(expr.func.value, alias_of, imports)
            if expr.func.attr in _VIEW_METHODS:
                return found
        for a in expr.args:
            found |= _aliases(a, alias_of, imports)
        for kw in expr.keywords:
            found |= _aliases(kw.value, alias_of, imports)
        return found
    if kind is ast.Subscript:  # ``x[i]`` shares ``x``'s storage, never the index's
        return _aliases(expr.value, alias_of, imports)
    if kind is ast.Attribute:
        return set() if expr.attr in _METADATA else _aliases(expr.value, alias_of, imports)
    found = set()
    for child in children(expr):
        if isinstance(child, ast.expr):
            found |= _aliases(child, alias_of, imports)
    return found


def _saving_op(expr: ast.expr, imports: _Imports) -> str | None:
    """``torch.sigmoid`` when ``expr`` is a call of an op that saves its output for backward."""
    if not isinstance(expr, ast.Call):
        return None
    qual = imports.qualify(expr.func)
    if qual is None or not qual.startswith("torch.") or any(kw.arg == "inplace" for kw in expr.keywords):
        return None
    from .analysis import torch_api

    if qual.startswith("torch.nn.functional."):
        spec = torch_api.function_spec(qual)
    elif qual.count(".") == 1:
        spec = torch_api.function_spec(qual)
    else:
        return None
    return qual if spec is not None and spec.saves_output() else None


class Program:
    """The run's summaries, resolved across files."""

    def __init__(self, summaries: Iterable[FileSummary]) -> None:
        self.files: dict[str, FileSummary] = {}
        self.by_key: dict[tuple[str, ...], FileSummary] = {}
        self._suffixes: dict[tuple[str, ...], list[FileSummary]] = {}
        for s in summaries:
            self.files[s.display] = s
            self.by_key[s.key] = s
            for i in range(len(s.key)):
                self._suffixes.setdefault(s.key[i:], []).append(s)
        self._cache: dict[tuple[str, str], FunctionSummary | None] = {}
        self._callers: dict[str, list[tuple[str | None, bool]]] | None = None
        self._grad_free: dict[str, bool] = {}
        self._scanned: dict[str, set[str]] = {}
        self._summarized_late: set[str] = set()  # placeholders summarized since (``_load``)
        # file -> (its summary, the last names of the callees of its call sites), for _sites_calling
        self._site_names: dict[str, tuple[FileSummary, frozenset[str]]] = {}

    def callers(self) -> dict[str, list[tuple[str | None, bool]]]:
        """A function's ``where`` -> its call sites in the run: (the caller's ``where``, or None
        at module level; whether the call runs with grad disabled)."""
        if self._callers is None:
            self._callers = {}
            for display, source in self.files.items():
                if display in self._summarized_late:
                    # A placeholder (no torch in it) runs nothing under no_grad, and its calls
                    # count nowhere: whether a query summarized it already must not change this.
                    continue
                for callee, caller, no_grad in source.calls:
                    target = self.callee(display, callee)
                    if target is None:
                        continue
                    caller_fn = self.callee(display, caller) if caller else None
                    self._callers.setdefault(target.where, []).append(
                        (caller_fn.where if caller_fn is not None else None, no_grad)
                    )
        return self._callers

    def only_called_without_grad(self, display: str, qualname: str) -> str | None:
        """Where ``qualname`` of ``display`` is called in the run, and every call runs with grad
        disabled (directly, or from functions themselves only so called): one such call site's
        function, to name in a report; None otherwise (no caller: a public function)."""
        fn = self.callee(display, qualname)
        if fn is None:
            return None
        return fn.where if self._grad_free_at(fn.where, set()) else None

    def _grad_free_at(self, where: str, seen: set[str]) -> bool:
        top = not seen
        if where in self._grad_free:
            return self._grad_free[where]
        sites = self.callers().get(where, [])
        seen.add(where)
        result = bool(sites) and all(
            no_grad or (caller is not None and caller not in seen and self._grad_free_at(caller, seen))
            for caller, no_grad in sites
        )
        if top:  # inside a cycle, an answer depends on the way in: kept only for the first asked
            self._grad_free[where] = result
        return result

    def __len__(self) -> int:
        return len(self.files)

    def argument_uses(self, display: str, qualname: str, param: str) -> list[tuple[str, CallSite, ArgUse]] | None:
        """What every caller in the run passes as ``param`` of ``qualname`` (a function of
        ``display``) and does with it around the call: (the caller's file, the call, the use).
        None when the answer is not known to be complete: no call site in the run (a public
        function), a call that does not say which value ``param`` gets, or the function's name
        used other than called somewhere (a callback: calls no call site shows)."""
        fn = self.callee(display, qualname)
        if fn is None:
            return None
        position = fn.params.index(param) if param in fn.params else None
        if position is None and param not in fn.kwonly:
            return None
        name = qualname.rsplit(".", 1)[-1]
        # The files summarized already are asked first: a mention there settles the answer
        # without summarizing the placeholders that mention the name.
        if self._mentioned(name):
            return None
        self._load_mentioning(name)
        if self._mentioned(name):
            return None
        found: list[tuple[str, CallSite, ArgUse]] = []
        for caller_display, site in self._sites_calling(name):
            target = self.callee(caller_display, site.callee)
            if target is None or target.where != fn.where or site.star:
                return None  # an unresolved call of some ``name``: maybe this function
            if param in site.keywords:
                use = self._arg_use(site, param)
            elif position is not None and position < site.args:
                use = self._arg_use(site, position)
            else:
                return None  # the parameter's default, shared by every call
            found.append((caller_display, site, use))
        return found or None

    def output_layers(
        self, display: str, cls: str, attr: str, element: int | str | None = None
    ) -> dict[tuple[str, bool], list[str]] | None:
        """The torch.nn modules whose output ``self.<attr>(...)`` of class ``cls`` returns: through
        constructor defaults and arguments (every construction of ``cls`` in the run), the last
        layer of an ``nn.Sequential``, factory functions of the run, module classes of the run
        whose ``forward`` returns such an output (or the output of an op: ``torch.sigmoid``).
        Each as (class or op qualname, built with inplace=True) -> the places that chose it
        ("pkg/model.py:12", "default"); None when any possibility is unknown.

        ``element``: ``self.<attr>`` is an ``nn.ModuleList`` and the module called is one of its
        elements: its index (``self.blocks[-1]``), or "any" (a loop over it, a computed index),
        where every element must be known."""
        source = self.files.get(display)
        layer = source.layers.get(cls, {}).get(attr) if source is not None else None
        if layer is None or (layer[0] == "list") != (element is not None):
            return None
        found: dict[tuple[str, bool], list[str]] = {}
        label = f"built by {cls}.__init__"
        if element is None:
            return found if self._resolve_layer(display, cls, layer, found, 0, label) else None
        _, elements, exact = layer
        if isinstance(element, int) and exact:
            if not -len(elements) <= element < len(elements):
                return None
            elements = (elements[element],)
        return found if all(self._resolve_layer(display, cls, e, found, 0, label) for e in elements) else None

    def _resolve_layer(self, display: str, cls: str | None, layer: tuple, found: dict, depth: int, label: str) -> bool:
        if depth > 6:
            return False
        kind = layer[0]
        if kind == "torch":
            found.setdefault((layer[1], layer[2]), []).append(label)
            return True
        if kind == "self" and cls is not None:
            source = self.files.get(display)
            inner = source.layers.get(cls, {}).get(layer[1]) if source is not None else None
            return inner is not None and self._resolve_layer(display, cls, inner, found, depth + 1, label)
        if kind == "call":
            fn = self.callee(display, layer[1])
            if fn is None:
                return self._module_output(display, layer[1], found, depth)
            if fn.returns_layer is None:
                return False
            fn_display = fn.where.rsplit(":", 1)[0]
            return self._resolve_layer(fn_display, None, fn.returns_layer, found, depth + 1, f"returned by {fn.where}")
        if kind == "param" and cls is not None:
            _, name, position, default, inplace = layer
            values = self._constructions(display, cls, name, position)
            if values is None:
                return False
            for value, at in values:
                if value is None:
                    if default is None:
                        return False
                    found.setdefault((default[1], default[2] or inplace), []).append(f"the default, {at}")
                elif value.startswith("torch.nn.") and value.count(".") == 2:
                    found.setdefault((value, inplace), []).append(at)
                else:
                    return False
            return True
        return False

    def switch_hazards(self, display: str) -> list[tuple[Switch, str, str, SwitchTarget]]:
        """For each ``m.inplace = True`` of ``display`` over the modules of an object other than
        ``self`` (``Switch``): the module classes of the run it reaches (the class that built a
        local, or what every call of the function passes as that parameter) and, held in them
        (attributes, ``nn.ModuleList`` elements, transitively), the calls that it turns into
        writes over a saved output: (switch, the object walked: "Net (passed at file:line)", the
        holding class's "file:Class", target)."""
        source = self.files.get(display)
        if source is None or not source.switches:
            return []
        out = []
        for switch in source.switches:
            owners: list[tuple[tuple[str, str], str]] = []
            if switch.built is not None:
                owner = self._class_of(display, switch.built)
                owners = [(owner, f"built in {switch.function}()")] if owner is not None else []
            elif switch.param is not None:
                owners = self._classes_passed(display, switch.function, switch.param)
            seen: set[tuple[str, str]] = set()
            for owner, how in owners:
                for holder, target in self._switchable_in(owner, switch.types, seen, 0):
                    out.append((switch, f"{owner[1]} ({how})", holder, target))
        return out

    def _classes_passed(self, display: str, qualname: str, position: int) -> list[tuple[tuple[str, str], str]]:
        """The module classes of the run that built what the calls of ``qualname`` pass at
        ``position``, each with the first call that passes it ("passed at file:line"); calls
        whose argument's class is not known are left out."""
        fn = self.callee(display, qualname)
        if fn is None:
            return []
        name = qualname.rsplit(".", 1)[-1]
        self._load_mentioning(name)
        found = []
        for caller_display, site in self._sites_calling(name):
            if position >= len(site.classes):
                continue
            target = self.callee(caller_display, site.callee)
            built = site.classes[position]
            if target is None or target.where != fn.where or built is None:
                continue
            owner = self._class_of(caller_display, built)
            if owner is not None and owner not in [o for o, _ in found]:
                found.append((owner, f"passed at {caller_display}:{site.line}"))
        return found

    def _switchable_in(
        self, owner: tuple[str, str], types: frozenset[str] | None, seen: set, depth: int
    ) -> list[tuple[str, SwitchTarget]]:
        if owner in seen or depth > 8:
            return []
        seen.add(owner)
        display, cls = owner
        source = self._load(self.files[display])
        out = [(f"{display}:{cls}", t) for t in source.switchable.get(cls, ()) if types is None or t.module in types]
        for layer in source.layers.get(cls, {}).values():
            for held in layer[1] if layer[0] == "list" else (layer,):
                if held[0] == "call":
                    inner = self._class_of(display, held[1])
                    if inner is not None:
                        out += self._switchable_in(inner, types, seen, depth + 1)
        return out

    def _module_output(self, display: str, dotted: str, found: dict, depth: int) -> bool:
        """``dotted(...)`` builds a module class of the run: what its ``forward`` returns, when
        every ``return`` is the output of one op that saves it, or of one module attribute."""
        owner = self._class_of(display, dotted)
        if owner is None:
            return False
        cls_display, cls = owner
        forward = self.files[cls_display].methods.get(cls, {}).get("forward")
        if forward is None:
            return False
        label = f"returned by {cls}.forward, {forward.where}"
        if forward.saved_output is not None:
            found.setdefault((forward.saved_output, False), []).append(label)
            return True
        if forward.returns_layer is not None and forward.returns_layer[0] == "self":
            return self._resolve_layer(cls_display, cls, forward.returns_layer, found, depth + 1, label)
        return False

    def _constructions(self, display: str, cls: str, param: str, position: int) -> list[tuple[str | None, str]] | None:
        """What every construction of class ``cls`` (of ``display``) in the run passes as its
        ``__init__`` parameter ``param``: (qualified name or None for its default, "file:line").
        None when a construction may be unseen (the class used other than called, or a call of
        its name that does not resolve to it, or no construction at all)."""
        if self._mentioned(cls):
            return None  # passed around as a value (a registry, a subclass): constructions unseen
        self._load_mentioning(cls)
        if self._mentioned(cls):
            return None
        init = self.files[display].methods.get(cls, {}).get("__init__")
        if init is None:
            return None
        out: list[tuple[str | None, str]] = []
        for caller_display, site in self._sites_calling(cls):
            if self._class_of(caller_display, site.callee) != (display, cls) or site.star:
                return None
            values = dict(site.values)
            value = values.get(param, values.get(str(position)) if position >= 0 else None)
            if value == "?":
                return None
            out.append((value, f"{caller_display}:{site.line}"))
        return out or None

    def _class_of(self, display: str, dotted: str) -> tuple[str, str] | None:
        """The (file, class) that ``dotted`` names in ``display``, found like a method's owner."""
        source = self.files.get(display)
        if source is None:
            return None
        parts = dotted.split(".")
        for _ in range(8):
            source = self._load(source)
            head, rest = parts[0], parts[1:]
            if not rest and head in source.methods:
                return source.display, head
            followed = self._through_import(source, head, rest)
            if followed is None:
                return None
            source, parts = followed
        return None

    @staticmethod
    def _arg_use(site: CallSite, which: int | str) -> ArgUse:
        """What the caller of ``site`` does with the value it passes as argument ``which`` (a
        position or a keyword), from the caller's summary."""
        if not site.uses:
            return ArgUse("unknown")
        index = which if isinstance(which, int) else site.args + site.keywords.index(which)
        return site.uses[index]

    def _sites_calling(self, name: str) -> Iterable[tuple[str, CallSite]]:
        """Every call site of the run whose callee's last name is ``name``, with its file, file by
        file as the files are when asked (one summarized meanwhile is seen as it was)."""
        for display, source in list(self.files.items()):
            known = self._site_names.get(display)
            if known is None or known[0] is not source:  # a placeholder since summarized: new names
                known = self._site_names[display] = (
                    source,
                    frozenset(site.callee.rsplit(".", 1)[-1] for site in source.call_sites),
                )
            if name in known[1]:
                for site in source.call_sites:
                    if site.callee.rsplit(".", 1)[-1] == name:
                        yield display, site

    def _mentioned(self, name: str) -> bool:
        """``name`` is used other than called in a file summarized so far."""
        return any(name in source.mentions for source in self.files.values())

    def _load_mentioning(self, name: str) -> None:
        """Summarize the placeholders whose text mentions ``name`` (their calls count too)."""
        needle = name.encode()
        for source in list(self.files.values()):
            if source.path is None or name in self._scanned.setdefault(source.display, set()):
                continue
            self._scanned[source.display].add(name)
            if needle in source.text:
                self._load(source)

    def callee(self, display: str, dotted: str) -> FunctionSummary | None:
        """The summary of the function that ``dotted`` (a local name, ``mod.fn``, ``Class.method``)
        names in file ``display``; None when it is not a function of the run."""
        key = (display, dotted)
        if key not in self._cache:
            self._cache[key] = None  # a cycle of re-exports resolves to nothing
            source = self.files.get(display)
            self._cache[key] = self._lookup(source, dotted.split("."), 0) if source is not None else None
        return self._cache[key]

    def _load(self, source: FileSummary) -> FileSummary:
        """A placeholder's summary, parsed now (once)."""
        if source.path is None:
            return source
        loaded = summarize(source.path, source.display, source.text) or FileSummary(
            source.display, source.key, source.is_package
        )
        self.files[source.display] = self.by_key[source.key] = loaded
        self._summarized_late.add(source.display)
        for i in range(len(loaded.key)):
            entries = self._suffixes[loaded.key[i:]]
            entries[entries.index(source)] = loaded
        return loaded

    def _lookup(self, source: FileSummary, parts: list[str], depth: int) -> FunctionSummary | None:
        if depth > 8 or not parts:
            return None
        source = self._load(source)
        head, rest = parts[0], parts[1:]
        if head in source.functions:
            return source.functions[head] if not rest else None
        if head in source.methods:
            # ``Class(...)`` is not a function call; ``Class.method`` is one (unbound).
            return source.methods[head].get(rest[0]) if len(rest) == 1 else None
        followed = self._through_import(source, head, rest)
        return self._lookup(followed[0], followed[1], depth + 1) if followed is not None else None

    def _through_import(self, source: FileSummary, head: str, rest: list[str]) -> tuple[FileSummary, list[str]] | None:
        """``head.rest`` where ``head`` is imported in ``source``: the module of the run it names
        and the attributes left to look up there."""
        imported = source.imports.get(head)
        if imported is None:
            return None
        level, target = imported
        names = target.split(".") + rest
        # ``names`` is a module path followed by attributes: try the longest module prefix first.
        for cut in range(len(names) - 1, 0, -1):
            module = self._module(source, level, names[:cut])
            if module is not None:
                return module, names[cut:]
        return None

    def _module(self, source: FileSummary, level: int, names: list[str]) -> FileSummary | None:
        if level:
            package = source.key if source.is_package else source.key[:-1]
            if level > 1:
                package = package[: len(package) - (level - 1)]
            return self.by_key.get(tuple(package) + tuple(names))
        found = self._suffixes.get(tuple(names), [])
        return found[0] if len(found) == 1 else None
