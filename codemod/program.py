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
from dataclasses import dataclass, field
from typing import Iterable

# Tensor methods and attributes whose result shares storage with the receiver.
_VIEW_METHODS = frozenset({
    "view", "view_as", "reshape", "reshape_as", "transpose", "permute", "squeeze", "unsqueeze", "flatten",
    "unflatten", "t", "expand", "expand_as", "narrow", "select", "contiguous", "detach", "as_strided", "movedim",
    "swapaxes", "swapdims", "diagonal", "unfold", "split", "chunk", "unbind", "tensor_split", "real", "imag",
    "T", "mT", "H", "mH", "data", "view_as_real", "view_as_complex", "to", "type_as", "float", "double", "half",
    "bfloat16", "cpu", "cuda", "requires_grad_", "align_to", "refine_names", "rename",
})
# Attributes of a tensor that are not tensors.
_METADATA = frozenset({"shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "layout", "names"})
# torch functions that return (a view of) their first argument.
_TORCH_ALIAS_FUNCTIONS = frozenset({
    "as_strided", "as_tensor", "asarray", "from_numpy", "narrow", "select", "squeeze", "unsqueeze", "transpose",
    "permute", "reshape", "flatten", "unflatten", "movedim", "swapaxes", "swapdims", "diagonal", "split", "chunk",
    "unbind", "tensor_split", "t", "view_as_real", "view_as_complex", "detach", "atleast_1d", "atleast_2d",
    "atleast_3d", "broadcast_to", "hsplit", "vsplit", "dsplit",
})


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
    # Not summarized yet (the file never mentions torch): summarized when an import reaches it.
    path: str | None = None
    # The rule families that may have a finding in this file (``candidates.possible_findings``);
    # None: not decided here (the engine parses the file if its own text test passes).
    may_find: frozenset[str] | None = None


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
        return FileSummary(display, key, is_package, path=path)
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
    for node in ast.walk(tree):
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
    _CallSites(out.calls, torch_names).visit(tree)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.functions[node.name] = _summarize_function(node, display, False, torch_names)
        elif isinstance(node, ast.ClassDef):
            methods = {}
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in item.decorator_list)
                    methods[item.name] = _summarize_function(item, display, not static, torch_names)
            out.methods[node.name] = methods
    return out


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


_NO_GRAD = frozenset({"torch.no_grad", "torch.inference_mode", "torch.autograd.no_grad",
                      "torch.autograd.grad_mode.no_grad", "torch.autograd.grad_mode.inference_mode"})


class _CallSites(ast.NodeVisitor):
    """Every call of a (dotted) name, with its calling function and grad mode."""

    def __init__(self, out: list[tuple[str, str | None, bool]], imports: _Imports) -> None:
        self.out = out
        self.imports = imports
        self.scope: list[str] = []  # class and function names
        self.function: str | None = None
        self.self_class: str | None = None
        self.no_grad = False

    def _disables(self, expr: ast.expr) -> bool:
        func = expr.func if isinstance(expr, ast.Call) else expr
        if self.imports.qualify(func) not in _NO_GRAD:
            return False
        # ``torch.no_grad(False)``/``inference_mode(False)`` keep grad on
        return not (isinstance(expr, ast.Call) and expr.args and isinstance(expr.args[0], ast.Constant)
                    and expr.args[0].value is False)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_FunctionDef(self, node) -> None:
        for d in node.decorator_list:
            self.visit(d)
        saved = (self.function, self.self_class, self.no_grad)
        if self.function is None and len(self.scope) <= 1:  # a top-level function or a method
            self.function = ".".join([*self.scope, node.name])
            self.self_class = self.scope[0] if self.scope else None
        # The calls of a nested function count as its definer's (an over-approximation), but it
        # runs whenever it is called: not in its definer's grad mode.
        self.no_grad = any(self._disables(d) for d in node.decorator_list)
        self.scope.append(node.name)
        for stmt in node.body:
            self.visit(stmt)
        self.scope.pop()
        self.function, self.self_class, self.no_grad = saved

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
            if head in ("self", "cls") and self.self_class and rest and "." not in rest:
                name = f"{self.self_class}.{rest}"
            self.out.append((name, self.function, self.no_grad))
        self.generic_visit(node)


def _dotted(expr: ast.expr) -> str | None:
    parts = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    return ".".join([expr.id, *reversed(parts)])


def _summarize_function(node: ast.FunctionDef | ast.AsyncFunctionDef, display: str, method: bool,
                        imports: _Imports) -> FunctionSummary:
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
    for sub in _own_nodes(node):
        if isinstance(sub, ast.Assign):
            assigns.append(([n for t in sub.targets for n in _target_names(t)], sub.value))
        elif isinstance(sub, (ast.AnnAssign, ast.AugAssign)) and sub.value is not None:
            assigns.append((_target_names(sub.target), sub.value))
        elif isinstance(sub, ast.NamedExpr):
            assigns.append((_target_names(sub.target), sub.value))
        elif isinstance(sub, (ast.For, ast.AsyncFor, ast.comprehension)):
            assigns.append((_target_names(sub.target), sub.iter))
        elif isinstance(sub, (ast.With, ast.AsyncWith)):
            for item in sub.items:
                if item.optional_vars is not None:
                    assigns.append((_target_names(item.optional_vars), item.context_expr))
        elif isinstance(sub, ast.Return):
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
    for sub in _own_nodes(node):
        if isinstance(sub, ast.BinOp):
            saves |= _aliases(sub.left, alias_of, imports) | _aliases(sub.right, alias_of, imports)
        elif isinstance(sub, ast.Call):
            func = sub.func
            if isinstance(func, ast.Attribute) and (func.attr in _VIEW_METHODS or func.attr in _METADATA):
                continue
            if isinstance(func, ast.Attribute):
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
    if returns and all(v is not None for v in returns):
        ops = {_saving_op(v, imports) for v in returns}  # type: ignore[arg-type]
        if len(ops) == 1:
            saved = ops.pop()
    return FunctionSummary(
        where=f"{display}:{node.lineno}",
        params=tuple(positional),
        kwonly=frozenset(a.arg for a in args.kwonlyargs),
        varargs=args.vararg is not None or args.kwarg is not None,
        aliases=frozenset(aliases & names),
        saves=frozenset(saves & names),
        saved_output=saved,
    )


def _own_nodes(fn: ast.AST) -> Iterable[ast.AST]:
    """The nodes of a function's body, not those of functions or classes nested in it."""
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        stack.extend(ast.iter_child_nodes(node))


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
    if isinstance(expr, ast.Name):
        return set(alias_of.get(expr.id, ()))
    if isinstance(expr, (ast.Constant, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.Lambda,
                         ast.JoinedStr, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        if isinstance(expr, ast.BoolOp):  # ``a or b`` is one of its operands
            return set().union(*(_aliases(v, alias_of, imports) for v in expr.values))
        return set()
    if isinstance(expr, ast.Call):
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
    if isinstance(expr, ast.Subscript):  # ``x[i]`` shares ``x``'s storage, never the index's
        return _aliases(expr.value, alias_of, imports)
    if isinstance(expr, ast.Attribute):
        return set() if expr.attr in _METADATA else _aliases(expr.value, alias_of, imports)
    found = set()
    for child in ast.iter_child_nodes(expr):
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

    def callers(self) -> dict[str, list[tuple[str | None, bool]]]:
        """A function's ``where`` -> its call sites in the run: (the caller's ``where``, or None
        at module level; whether the call runs with grad disabled)."""
        if self._callers is None:
            self._callers = {}
            for display, source in self.files.items():
                for callee, caller, no_grad in source.calls:
                    target = self.callee(display, callee)
                    if target is None:
                        continue
                    caller_fn = self.callee(display, caller) if caller else None
                    self._callers.setdefault(target.where, []).append(
                        (caller_fn.where if caller_fn is not None else None, no_grad))
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
        try:
            with open(source.path, "rb") as fh:
                data = fh.read()
        except OSError:
            data = b""
        loaded = summarize(source.path, source.display, data) or FileSummary(source.display, source.key, source.is_package)
        self.files[source.display] = self.by_key[source.key] = loaded
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
        imported = source.imports.get(head)
        if imported is None:
            return None
        level, target = imported
        names = target.split(".") + rest
        # ``names`` is a module path followed by attributes: try the longest module prefix first.
        for cut in range(len(names) - 1, 0, -1):
            module = self._module(source, level, names[:cut])
            if module is not None:
                return self._lookup(module, names[cut:], depth + 1)
        return None

    def _module(self, source: FileSummary, level: int, names: list[str]) -> FileSummary | None:
        if level:
            package = source.key if source.is_package else source.key[:-1]
            if level > 1:
                package = package[: len(package) - (level - 1)]
            return self.by_key.get(tuple(package) + tuple(names))
        found = self._suffixes.get(tuple(names), [])
        return found[0] if len(found) == 1 else None
