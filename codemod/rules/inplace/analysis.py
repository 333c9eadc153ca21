"""Flow-sensitive analysis of one function: which tensors in-place ops overwrite, what saved them,
and whether an out-of-place rewrite would change what any other reader sees.

The function is interpreted abstractly over its syntax (if/for/while/try/with/match; loops run to
a fixpoint).  The state maps each local name to the set of abstract values that may reach it, plus
three path-sensitive sets:

* ``saved``: values that some op may have saved for backward on the way here (and which op);
* ``escaped``: values stored where this function cannot see later reads (``self.x = v``,
  ``lst.append(v)`` on an argument, ``yield v``);
* ``stale``: values that an in-place site wrote, paired with the site.  If a name bound to such a
  value is read later, rewriting that site out-of-place would change what the read sees.

Values that share storage are linked: a view's ``bases`` are what it views; a container's
``bases`` are its elements; an element taken out of a container has the container as base.
"Everything that shares memory with x" is the closure over those links.

Rewrite decisions feed back into the analysis: once ``x /= s`` is rewritten to ``x = x / s``,
``x`` names a fresh tensor; if it is not rewritten, ``x`` still names the overwritten one.  The
caller (the rule) passes the decisions in and re-runs until they are stable.
"""

from __future__ import annotations

import enum
import itertools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Mapping, Union

import libcst as cst

from ...analysis import torch_api
from ...analysis.index import ClassInfo, FunctionInfo, ModuleIndex, all_params
from ...analysis.syntax import (
    call_display,
    children,
    dotted_name,
    is_false,
    is_true,
    keyword_arg,
    module_list_loops,
    positional_args,
    self_attribute,
    short_code,
    walk_same_scope,
)

if TYPE_CHECKING:
    from ...program import Program


class Kind(enum.Enum):
    FRESH = "fresh"  # new storage: op result, module call, factory, literal
    ALIAS = "alias"  # shares storage with its bases: view, slice, .detach(), element of a container
    CONTAINER = "container"  # tuple/list/dict built here; ``bases`` are the elements it holds
    PARAM = "param"  # a function argument: the caller holds it too
    EXTERNAL = "external"  # module state (self.x), globals, closure variables, .grad
    MUTATED = "mutated"  # the value after the in-place site ``site``


Text = Union[str, Callable[[], str]]


class LazyText:
    """A text computed only if a message needs it; ``quoted``: its format holds a backtick."""

    __slots__ = ("_make", "quoted")

    def __init__(self, make: Callable[[], str], fmt: str) -> None:
        self._make = make
        self.quoted = "`" in fmt

    def __call__(self) -> str:
        return self._make()


def code_text(node: cst.CSTNode, fmt: str = "`{}`", limit: int = 60) -> Callable[[], str]:
    """Source of ``node`` in ``fmt``, computed only if a message needs it (it costs a codegen)."""
    return LazyText(lambda: fmt.format(short_code(node, limit)), fmt)


def fmt_text(fmt: str, inner: Text) -> Text:
    if isinstance(inner, str):
        return fmt.format(inner)
    return LazyText(lambda: fmt.format(inner()), fmt)


class Value:
    """An abstract value, created once per syntax node and role (so loops converge)."""

    __slots__ = (
        "kind",
        "node",
        "_label",
        "bases",
        "tensor",
        "immutable",
        "site",
        "data_alias",
        "low_precision",
        "_external",
        "elements",
        "tuple_kind",
        "grad",
        "operands",
        "view",
        "likely",
        "possible",
        "_hash",
    )
    # Values are hashed by the order of their creation, not by address: sets of values then
    # iterate in the same order in every run, and so do the choices made over them (which op,
    # which view or read a report names). Hashing by ``id`` made those choices vary between runs.
    _serial = itertools.count()

    def __init__(
        self,
        kind: Kind,
        node: cst.CSTNode | None,
        label: Text,
        *,
        tensor: bool | None = None,
        immutable: bool = False,
        external: Text | None = None,
    ) -> None:
        self._hash = next(Value._serial)
        self.kind = kind
        self.node = node
        self._label = label
        self.bases: set[Value] = set()
        self.tensor = tensor  # True: a tensor; False: not a tensor; None: unknown
        self.immutable = immutable  # a Python number/str/tuple/None: ``x op= y`` just rebinds
        self.site: Site | None = None
        self.data_alias = False  # reached through ``.data`` (no shared version counter)
        self.low_precision = False  # known float16/bfloat16
        self._external = external  # what it is, for EXTERNAL values
        self.elements: list[frozenset[Value]] | None = None  # per-position values of a tuple/list display
        self.tuple_kind: str | None = None  # "views" (x.chunk) | "fresh" (x.topk) | "call" (opaque result)
        self.grad: bool | None = None  # False: cannot require grad (factory, .detach(), integers, no_grad)
        # For arithmetic results: the operands. If the result is a tensor and all but one operand
        # are plain numbers, that operand is a tensor too.
        self.operands: tuple[frozenset[Value], ...] | None = None
        self.view = False  # made by a tensor method or indexing of its bases: a tensor result means tensor bases
        # Probably a tensor, not proven: a ``forward`` argument, a receiver of ``.var()``/``.sum()``
        # (which numpy has too). Enough to count as saved for a report, never enough to rewrite.
        self.likely = False
        # The result of a call the analysis has no summary of (a package outside the repository,
        # a dynamic call): it may be, or view, one of the tensors it was given. Such a link counts
        # against a rewrite (P2/P3/P5: a later read of either side), never as evidence that an op
        # saved the written tensor (a new rewrite would then land in code that may be correct).
        self.possible = False

    def __hash__(self) -> int:
        return self._hash

    @property
    def label(self) -> str:
        if not isinstance(self._label, str):
            self._label = self._label()
        return self._label

    @property
    def is_none(self) -> bool:
        """The constant ``None``. A lazy label that quotes code is not computed to tell (it costs
        a codegen, and a quoted text is never the bare name)."""
        if not self.immutable:
            return False
        label = self._label
        if isinstance(label, LazyText) and label.quoted:
            return False
        return self.label == "None"

    @property
    def external(self) -> str | None:
        if self._external is not None and not isinstance(self._external, str):
            self._external = self._external()
        return self._external

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<{self.kind.value} {self.label}>"


class SaveEvent:
    """An op that saved a tensor for backward: ``what`` is "input" (it saves its argument),
    "output" (it saves its result) or "opaque" (an unknown call that may save it)."""

    __slots__ = ("node", "what", "_op", "dead")

    def __init__(self, node: cst.CSTNode, op: Text, what: str, dead: bool = False) -> None:
        self.node = node
        self.what = what
        self._op = op
        self.dead = dead  # inside ``(...).detach()``: that graph is never differentiated

    @property
    def op(self) -> str:  # how to show it: ``torch.var(...)``, ``x * y``
        if not isinstance(self._op, str):
            self._op = self._op()
        return self._op


class EscapeEvent:
    """A value stored where later reads are invisible: "stored in `self.cache`", "yielded"."""

    __slots__ = ("node", "_where")

    def __init__(self, node: cst.CSTNode, where: Text) -> None:
        self.node = node
        self._where = where

    @property
    def where(self) -> str:
        if not isinstance(self._where, str):
            self._where = self._where()
        return self._where


class SiteKind(enum.Enum):
    AUG = "aug"  # x op= y
    INDEX = "index"  # x[i] = v, x[i] op= v
    METHOD = "method"  # x.op_(...)
    FUNCTION = "function"  # torch.op_(x), nn.init.*_(x)
    ACTIVATION = "activation"  # F.act(x, inplace=True)
    MODULE = "module"  # self.act(x) where self.act = nn.Act(inplace=True)
    OUT = "out"  # torch.op(..., out=x)


@dataclass(eq=False)
class Reason:
    """Why a site cannot be rewritten automatically: a safety property P1-P5, or the code's shape."""

    prop: str  # "P1".."P5" | "form"
    text: str
    node: cst.CSTNode | None = None  # where the alias/argument/state comes from (for its line)
    via: "Value | None" = None  # the result of a call without a summary that may link it (``@VIA``)


@dataclass(eq=False)
class Site:
    """An in-place write found by the analysis."""

    key: tuple
    kind: SiteKind
    node: cst.CSTNode  # AugAssign / Assign / Call: what the rule rewrites
    statement: cst.BaseSmallStatement | None  # enclosing small statement (None: in a compound header)
    receiver: cst.BaseExpression | None  # the expression written (x, x[i], x.view(-1), self.buf)
    op: str  # "/=", "div_", "F.relu(..., inplace=True)" ... for messages
    method: str | None = None  # in-place method/function name
    statement_role: str | None = None  # the call is the whole value of: "expr" | "assign" | "return"
    module_attr: str | None = None  # MODULE sites: the attribute (``act``)
    root: str | None = None  # local name whose storage is written, if any
    targets: set[Value] = field(default_factory=set)
    evidence: dict[SaveEvent, Value] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)
    conflicts: dict[cst.CSTNode, str] = field(default_factory=dict)  # later read -> name read
    # Values that share memory with the written one only if a call without a summary returns an
    # alias of its argument: value -> that call's result (a ``possible`` value)
    maybe_shared: dict[Value, Value] = field(default_factory=dict)
    possible_reads: dict[cst.CSTNode, Value] = field(default_factory=dict)  # read -> the call, when only possible
    strict_reads: set[cst.CSTNode] = field(default_factory=set)  # reads seen without such a call between
    # An op saved another view of the written storage (``a = x[:, :2]; torch.sin(a)``, then
    # ``c = x[:, 2:]; c.mul_(3)``): event -> (the saved value, its names, the shared storage
    # value or None when the saved value is a view of the written one, the storage's names)
    storage: dict[SaveEvent, tuple] = field(default_factory=dict)
    not_tensor: bool = False  # certainly not a tensor (list, dict, numpy): not an autograd matter
    tensor_unknown: bool = False
    likely_tensor: bool = False  # not proven, but a forward argument / a receiver of tensor methods
    grad_disabled: bool = False
    autocast: bool = False
    low_precision: bool = False
    nonlocal_target: bool = False  # writes module state / a global / a temporary we cannot name
    container_entry: bool = False  # ``out["p"] *= 2``: an entry of a list or dict
    category: str = "inplace"  # "rng" | "init" | "dtype" for ops that are never rewritten

    def add_reason(self, prop: str, text: str, node: cst.CSTNode | None = None, via: "Value | None" = None) -> None:
        if via is not None:
            text += POSSIBLE_ALIAS
        if not any(r.prop == prop and r.text == text for r in self.reasons):
            self.reasons.append(Reason(prop, text, node, via))


# Appended to a reason that holds only if a call without a summary returns an alias.
POSSIBLE_ALIAS = (
    " (if @VIA returns its argument or a view of it (@WHY): `codemod verify` or `codemod locate` settles it)"
)


class State:
    """Flow state at one program point. Mutated in place; ``copy`` before branching.

    ``pinned`` keeps path correlation that a join would lose: after ``if c: x = f(v); else: x =
    v``, with ``v`` saved only on the first path, ``(x, v)`` is pinned to no saves, because on the
    path where ``x`` still names ``v`` nothing saved it.
    """

    __slots__ = ("env", "saved", "escaped", "stale", "pinned", "pinned_stale")

    def __init__(self, env=None, saved=None, escaped=None, stale=None, pinned=None, pinned_stale=None) -> None:
        self.env: dict[str, frozenset[Value]] = env if env is not None else {}
        self.saved: dict[Value, frozenset[SaveEvent]] = saved if saved is not None else {}
        self.escaped: dict[Value, frozenset[EscapeEvent]] = escaped if escaped is not None else {}
        self.stale: dict[Value, frozenset[Site]] = stale if stale is not None else {}
        self.pinned: dict[tuple[str, Value], frozenset[SaveEvent]] = pinned if pinned is not None else {}
        # The same for writes: the in-place sites passed on the paths where the name refers to
        # the value (``acc = y`` only before ``acc += y`` ran: after ``if acc is None:`` no write
        # has happened on that path).
        self.pinned_stale: dict[tuple[str, Value], frozenset[Site]] = pinned_stale if pinned_stale is not None else {}

    def copy(self) -> "State":
        return State(
            dict(self.env),
            dict(self.saved),
            dict(self.escaped),
            dict(self.stale),
            dict(self.pinned),
            dict(self.pinned_stale),
        )

    def same_as(self, other: "State") -> bool:
        return (
            self.env == other.env
            and self.saved == other.saved
            and self.escaped == other.escaped
            and self.stale == other.stale
            and self.pinned == other.pinned
            and self.pinned_stale == other.pinned_stale
        )

    def bind(self, name: str, values: frozenset[Value]) -> None:
        self.env[name] = values
        if self.pinned:
            for key in [k for k in self.pinned if k[0] == name]:
                del self.pinned[key]
        if self.pinned_stale:
            for key in [k for k in self.pinned_stale if k[0] == name]:
                del self.pinned_stale[key]

    def stale_sites(self) -> frozenset["Site"]:
        return frozenset().union(*self.stale.values()) if self.stale else frozenset()

    def stale_via(self, name: str, value: Value, every: frozenset["Site"] | None = None) -> frozenset["Site"]:
        """The in-place sites passed on the paths where ``name`` refers to ``value``."""
        found = self.pinned_stale.get((name, value))
        if found is not None:
            return found
        return self.stale_sites() if every is None else every

    def narrow(self, name: str, kept: frozenset[Value]) -> None:
        """Only the paths where ``name`` refers to one of ``kept`` go on (a branch on ``name is
        None``): writes passed only on the other paths are not pending here."""
        every = self.stale_sites()
        if not every:
            return
        allowed = frozenset().union(*(self.stale_via(name, v, every) for v in kept)) if kept else frozenset()
        if allowed >= every:
            return
        self.stale = {v: sites & allowed for v, sites in self.stale.items() if sites & allowed}
        self.pinned_stale = {k: sites & allowed for k, sites in self.pinned_stale.items()}

    def saved_via(self, name: str | None, value: Value) -> frozenset[SaveEvent]:
        """What saved ``value``, on the paths where ``name`` refers to it."""
        if name is not None and (name, value) in self.pinned:
            return self.pinned[(name, value)]
        return self.saved.get(value, frozenset())

    def add_saved(self, values: Iterable[Value], event: "SaveEvent") -> None:
        if event.dead:
            return
        saved = self.saved
        for v in values:
            if v.tensor is not False:
                old = saved.get(v)
                if old is None:
                    saved[v] = frozenset((event,))
                elif event not in old:
                    saved[v] = old | {event}
                if self.pinned:
                    for key in [k for k in self.pinned if k[1] is v]:
                        self.pinned[key] = self.pinned[key] | {event}

    def add_escaped(self, values: Iterable[Value], event: "EscapeEvent") -> None:
        for v in values:
            if v.tensor is not False or v.bases:
                self.escaped[v] = self.escaped.get(v, frozenset()) | {event}

    def add_stale(self, values: Iterable[Value], site: "Site") -> None:
        for v in values:
            old = self.stale.get(v)
            if old is None:
                self.stale[v] = frozenset((site,))
            elif site not in old:
                self.stale[v] = old | {site}
        if self.pinned_stale:  # passed on every path that reaches here
            for key, sites in self.pinned_stale.items():
                if site not in sites:
                    self.pinned_stale[key] = sites | {site}


def _merge(dicts: list[dict]) -> dict:
    out = dict(dicts[0])
    for d in dicts[1:]:
        for k, v in d.items():
            old = out.get(k)
            out[k] = v if old is None else (old | v if old is not v else old)
    return out


def _same_on_all(states: list[State], name: str) -> bool:
    """``name`` is bound to the same values in each of ``states``."""
    first = states[0].env.get(name)
    if first is None:
        return False
    for s in states[1:]:
        values = s.env.get(name)
        if values is not first and values != first:
            return False
    return True


def join(states: Iterable[State | None]) -> State | None:
    live = [s for s in states if s is not None]
    if not live:
        return None
    if len(live) == 1:
        return live[0].copy()
    out = State(
        _merge([s.env for s in live]),
        _merge([s.saved for s in live]),
        _merge([s.escaped for s in live]),
        _merge([s.stale for s in live]),
    )
    # Saves seen by a name only on the paths where the name refers to the value. A name bound to
    # the same values on every path, and pinned on none, has nothing to pin.
    pinned_names = {name for s in live for name, _ in s.pinned}
    for name, values in out.env.items():
        if name not in pinned_names and _same_on_all(live, name):
            continue
        for v in values:
            paths = [s for s in live if v in s.env.get(name, ())]
            if len(paths) == len(live) and not any((name, v) in s.pinned for s in live):
                continue
            events = frozenset().union(*(s.saved_via(name, v) for s in paths))
            if events != out.saved.get(v, frozenset()):
                out.pinned[(name, v)] = events
    if out.stale:
        every = out.stale_sites()
        each = [s.stale_sites() for s in live]
        pinned_names = {name for s in live for name, _ in s.pinned_stale}
        for name, values in out.env.items():
            if name not in pinned_names and _same_on_all(live, name):
                continue
            for v in values:
                paths = [(s, e) for s, e in zip(live, each) if v in s.env.get(name, ())]
                if len(paths) == len(live) and not any((name, v) in s.pinned_stale for s in live):
                    continue
                sites = frozenset().union(*(s.stale_via(name, v, e) for s, e in paths))
                if sites != every:
                    out.pinned_stale[(name, v)] = sites
    return out


_NO_GRAD = torch_api.GRAD_DISABLING
_ENABLE_GRAD = torch_api.GRAD_ENABLING
_SET_GRAD = torch_api.GRAD_SETTING
_AUTOCAST = torch_api.AUTOCAST
_AUTOGRAD_FUNCTION = {
    "torch.autograd.Function",
    "torch.autograd.function.Function",
    "torch.autograd.function.InplaceFunction",
}
_LOW_PRECISION = {"torch.float16", "torch.half", "torch.bfloat16"}

AUG_OPS = {
    cst.AddAssign: ("+", "add_"),
    cst.SubtractAssign: ("-", "sub_"),
    cst.MultiplyAssign: ("*", "mul_"),
    cst.DivideAssign: ("/", "div_"),
    cst.FloorDivideAssign: ("//", "floor_divide_"),
    cst.ModuloAssign: ("%", "remainder_"),
    cst.PowerAssign: ("**", "pow_"),
    cst.BitAndAssign: ("&", "bitwise_and_"),
    cst.BitOrAssign: ("|", "bitwise_or_"),
    cst.BitXorAssign: ("^", "bitwise_xor_"),
    cst.LeftShiftAssign: ("<<", "bitwise_left_shift_"),
    cst.RightShiftAssign: (">>", "bitwise_right_shift_"),
}
_BIN_OPS = {
    cst.Multiply: "mul",
    cst.Divide: "div",
    cst.MatrixMultiply: "matmul",
    cst.Power: "pow",
    cst.Add: "add",
    cst.Subtract: "sub",
    cst.Modulo: "remainder",
    cst.FloorDivide: "floor_divide",
}
_DICT_VIEW_METHODS = {"values", "keys", "items"}
_SEQUENCE_QUERY_METHODS = {"index", "count"}
_CONTAINER_STORE_METHODS = {
    "append",
    "extend",
    "insert",
    "update",
    "setdefault",
    "put",
    "put_nowait",
    "appendleft",
    "extendleft",
}
_CONTAINER_BUILTINS = {
    "list",
    "tuple",
    "set",
    "dict",
    "sorted",
    "reversed",
    "zip",
    "enumerate",
    "iter",
    "map",
    "filter",
}
_BUILTINS = {
    "len",
    "isinstance",
    "issubclass",
    "hasattr",
    "callable",
    "id",
    "hash",
    "repr",
    "str",
    "int",
    "float",
    "bool",
    "complex",
    "range",
    "print",
    "type",
    "format",
    "ord",
    "chr",
    "divmod",
    "any",
    "all",
    "super",
    "vars",
    "dir",
    "locals",
    "globals",
    "open",
    "input",
    "slice",
    "object",
    "getattr",
    "setattr",
    "delattr",
    "next",
    "exit",
} | _CONTAINER_BUILTINS
_IMMUTABLE_BUILTINS = {
    "len",
    "int",
    "float",
    "bool",
    "str",
    "repr",
    "complex",
    "hash",
    "id",
    "ord",
    "chr",
    "format",
    "range",
    "isinstance",
    "issubclass",
    "hasattr",
    "callable",
    "divmod",
    "any",
    "all",
    "print",
    "type",
}
# torch functions whose first argument is a sequence of tensors, not a tensor.
_SEQUENCE_FIRST = {
    "cat",
    "stack",
    "hstack",
    "vstack",
    "dstack",
    "concat",
    "concatenate",
    "einsum",
    "broadcast_tensors",
    "meshgrid",
    "block_diag",
    "cartesian_prod",
    "chain_matmul",
    "column_stack",
    "row_stack",
}
# Tensor methods that make a fresh tensor and save nothing.
_FRESH_NO_SAVE_METHODS = {
    "new_zeros",
    "new_ones",
    "new_full",
    "new_empty",
    "new_tensor",
    "new_empty_strided",
    "argmax",
    "argmin",
    "argsort",
    "nonzero",
    "bool",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
}
_MAX_LOOP_PASSES = 6
_INTEGER_FUNCTIONS = {
    "argmax",
    "argmin",
    "argsort",
    "nonzero",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "isnan",
    "isinf",
    "isfinite",
    "isin",
    "bucketize",
    "searchsorted",
    "randint",
    "randperm",
}
_INTEGER_NAME = re.compile(r"(^|_)(ids|idx|idxs|indices|index|labels)$")
# Tensor methods whose result is an integer or bool tensor (cannot require grad).
_INTEGER_METHODS = {
    "long",
    "int",
    "short",
    "bool",
    "byte",
    "char",
    "argmax",
    "argmin",
    "argsort",
    "nonzero",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "isnan",
    "isinf",
    "isfinite",
    "logical_not",
    "logical_and",
    "logical_or",
    "sign",
    "floor_divide",
    "bucketize",
    "searchsorted",
    "count_nonzero",
}


@dataclass
class Summary:
    """What a call of a function of the module does to its arguments."""

    params: list[str]  # positional parameters in order (without self)
    kwonly: set[str]
    saves: dict[str, str]  # parameter -> "input" (saved by a known op) | "opaque" (may be)
    aliases: set[str]  # parameters the returned value may share storage with
    returns_tensor: bool
    varargs: bool
    tensor_params: set[str] = field(default_factory=set)  # parameters used as tensors
    saved_output: str | None = None  # every return is the output of this op, which saves it
    where: str | None = None  # "path:line" of a function of another file
    # parameters the result may share storage with only through a call without a summary
    possible_aliases: set[str] = field(default_factory=set)


class Summaries:
    """Summaries of the module's functions, computed on demand (recursion: assume the worst)."""

    def __init__(self, index: ModuleIndex, program: "Program | None" = None, display: str = "") -> None:
        self.index = index
        self.program = program
        self.display = display
        self._external: dict[str, Summary | None] = {}
        self._cache: dict[int, Summary | None] = {}
        self._busy: set[int] = set()
        self._methods = {
            (id(fn.cls), fn.name): fn for fn in index.functions if fn.cls is not None and fn.parent is None
        }
        self._toplevel = {fn.name: fn for fn in index.functions if fn.cls is None and fn.parent is None}
        self._globals: set[str] | None = None

    def torch_global(self, name: str) -> bool:
        """``name`` is assigned once at module level, to a call of one of torch's callables that
        may not return its argument (``lin = torch.nn.Linear(6, 6)``)."""
        if self._globals is None:
            found: dict[str, str | None] = {}
            for stmt in self.index.module.body:
                for small in stmt.body if isinstance(stmt, cst.SimpleStatementLine) else ():
                    if isinstance(small, (cst.Assign, cst.AnnAssign)):
                        targets = [t.target for t in small.targets] if isinstance(small, cst.Assign) else [small.target]
                        value = small.value
                        qual = self.index.imports.qualify(value.func) if isinstance(value, cst.Call) else None
                        for t in targets:
                            if isinstance(t, cst.Name):
                                found[t.value] = None if t.value in found else qual
            self._globals = {n for n, q in found.items() if q is not None and not torch_api.may_return_alias(q)}
        return name in self._globals

    def method(self, cls: ClassInfo | None, name: str) -> FunctionInfo | None:
        return self._methods.get((id(cls), name)) if cls is not None else None

    def function(self, name: str, caller: FunctionInfo) -> FunctionInfo | None:
        """``name(...)`` called from ``caller``: a function nested in the caller, or a top-level one."""
        for fn in self.index.functions:
            if fn.parent is caller and fn.name == name:
                return fn
        return self._toplevel.get(name)

    def external(self, dotted: str) -> Summary | None:
        """The summary of a function of another file of the run (or one this file imports), from
        the whole-program phase; None when ``dotted`` names nothing of the run."""
        if self.program is None:
            return None
        if dotted not in self._external:
            found = self.program.callee(self.display, dotted)
            self._external[dotted] = (
                None
                if found is None
                else Summary(
                    params=list(found.params),
                    kwonly=set(found.kwonly),
                    saves={p: "opaque" for p in found.saves},
                    aliases=set(found.aliases),
                    returns_tensor=found.saved_output is not None,
                    varargs=found.varargs,
                    saved_output=found.saved_output,
                    where=found.where,
                )
            )
        return self._external[dotted]

    def output_layers(self, cls: ClassInfo | None, attr: str, info, element: int | str | None = None) -> str | None:
        """``self.<attr>`` of ``cls``, set once in ``__init__`` to a module that the program phase
        resolves (constructor arguments and defaults, factories, ``nn.Sequential``'s last layer,
        a module class whose ``forward`` returns an op's output) to torch modules or ops that all
        save their output: their names, to show; None otherwise. ``element``: an element of an
        ``nn.ModuleList`` (``Program.output_layers``)."""
        if self.program is None or cls is None or len(info.values) != 1 or info.values[0].method != "__init__":
            return None
        ctor = info.values[0]
        if ctor.kind == "module" and ctor.qualname is not None and element is None:
            spec = torch_api.module_spec(ctor.qualname)
            if spec is None or not spec.container:
                return None  # a plain module: the rule's own path knows it
        found = self.program.output_layers(self.display, cls.name, attr, element)
        if found is None:
            return None
        for qual, inplace in found:
            spec = torch_api.module_spec(qual)
            if spec is None and not inplace:  # ``forward`` returns an op's output (``torch.sigmoid``)
                fspec = torch_api.function_spec(qual)
                if fspec is None or not fspec.saves_output():
                    return None
                continue
            if inplace or spec is None or spec.container or spec.returns_input or spec.functional is None:
                return None
            fspec = torch_api.function_spec(f"torch.nn.functional.{spec.functional}")
            if fspec is None or not fspec.saves_output():
                return None
        return " or ".join(
            f"{q.replace('torch.nn.', 'nn.')} ({', '.join(sorted(set(w)))})" for (q, _), w in sorted(found.items())
        )

    def get(self, fn: FunctionInfo) -> Summary | None:
        key = id(fn)
        if key in self._cache:
            return self._cache[key]
        if key in self._busy:
            return None
        self._busy.add(key)
        try:
            analyzer = _Analyzer(fn, self.index, {}, grad_disabled_for(fn, self.index))
            analyzer.summaries = self
            analyzer.run()
            summary = analyzer.summary()
        finally:
            self._busy.discard(key)
        self._cache[key] = summary
        return summary


class FunctionAnalysis:
    """Result of analysing one function."""

    def __init__(self, fn: FunctionInfo) -> None:
        self.fn = fn
        self.sites: dict[tuple, Site] = {}
        self.tensor_params: set[str] = set()
        self.makes_grad_leaf = False  # builds a tensor with requires_grad=True itself


class _Analyzer:
    def __init__(
        self, fn: FunctionInfo, index: ModuleIndex, decisions: Mapping[tuple, str | None], grad_disabled: bool
    ) -> None:
        self.fn = fn
        self.index = index
        self.imports = index.imports
        self.cls: ClassInfo | None = fn.cls
        self.self_name = fn.self_name
        self.decisions = decisions
        self.result = FunctionAnalysis(fn)
        self._memo: dict[tuple, Value] = {}
        self.tensor_inputs: set[Value] = set()  # parameters that flow into a tensor computation
        self._assigning: set[str] = set()  # names the current statement assigns
        self._grad_seen: set[int] = set()
        self._events: dict[tuple, object] = {}
        self.detached = 0  # > 0 while evaluating the receiver of ``.detach()``
        self._loop_cache: dict[int, tuple[State, State | None]] = {}
        self._exits: list[tuple[State, frozenset[Value]]] = []  # (state, returned values) at each exit
        self.summaries: Summaries | None = None
        self._children: dict[Value, set[Value]] = {}
        self.grad_disabled = grad_disabled
        self.autocast = False
        self._statement: cst.BaseSmallStatement | None = None
        self._loop_exits: list[list[State]] = []
        self._loop_continues: list[list[State]] = []
        self.locals = fn.locals
        self._params: dict[str, Value] = {}
        self._module_loops: dict[str, str] | None = None  # ``syntax.module_list_loops``, on first need

    # ================================================================ values
    def save_event(self, node: cst.CSTNode, op: Text, what: str) -> SaveEvent:
        key = ("save", id(node), what)
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = SaveEvent(node, op, what, self.detached > 0)
        return event

    def escape_event(self, node: cst.CSTNode, where: Text) -> EscapeEvent:
        key = ("escape", id(node))
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = EscapeEvent(node, where)
        return event

    def _new(self, key: tuple, factory: Callable[[], Value]) -> Value:
        v = self._memo.get(key)
        if v is None:
            v = factory()
            self._memo[key] = v
        return v

    def link(self, v: Value, bases: Iterable[Value]) -> None:
        new = set(bases) - v.bases
        new.discard(v)
        if new:
            v.bases |= new
            for b in new:
                self._children.setdefault(b, set()).add(v)
            if (
                v.tensor is None
                and v.kind in (Kind.ALIAS, Kind.MUTATED)
                and not v.possible
                and any(b.tensor for b in new)
            ):
                self.set_tensor(v)

    def set_tensor(self, v: Value) -> None:
        """``v`` is a tensor, and so is every view or in-place result derived from it, and what it
        was computed from when that is the only possibility (``a * 2`` is a tensor: so is ``a``)."""
        stack = [v]
        while stack:
            cur = stack.pop()
            if cur.tensor is not None and cur is not v:
                continue
            cur.tensor = True
            for child in self._children.get(cur, ()):
                if child.tensor is None and child.kind in (Kind.ALIAS, Kind.MUTATED) and not child.possible:
                    stack.append(child)
            if cur.view:
                stack.extend(b for b in cur.bases if b.tensor is None and b.kind is not Kind.CONTAINER)
            if cur.operands is not None:
                for ops in cur.operands:
                    self.tensor_inputs.update(o for o in ops if o.kind is Kind.PARAM)
                candidates = [ops for ops in cur.operands if not all(o.tensor is False for o in ops)]
                if len(candidates) == 1:
                    stack.extend(o for o in candidates[0] if o.tensor is None and o.kind is not Kind.CONTAINER)

    def recreate(self, key: tuple, st: State | None, new_bases: Iterable[Value] = ()) -> None:
        """Running a definition again (a loop's next iteration) makes a new object. Facts about the
        old one, and about views of it, no longer apply, unless something still refers to them: a
        name, or the new object itself (``d = d.view(...)`` views what the old view led to)."""
        v = self._memo.get(key)
        if v is None or st is None:
            return
        group = self._views_of(v)
        if not any(st.saved.get(g) or st.escaped.get(g) or st.stale.get(g) for g in group):
            return
        if not group.isdisjoint(new_bases):
            return
        for name, values in st.env.items():
            if name in self._assigning:
                continue
            for w in values:
                if w in group or not group.isdisjoint(w.bases):
                    return
        for g in group:
            st.saved.pop(g, None)
            st.escaped.pop(g, None)
            st.stale.pop(g, None)

    def _views_of(self, v: Value) -> set[Value]:
        """``v`` and the views and in-place results derived from it."""
        group = {v}
        stack = [v]
        while stack:
            for child in self._children.get(stack.pop(), ()):
                if child.kind in (Kind.ALIAS, Kind.MUTATED) and child not in group:
                    group.add(child)
                    stack.append(child)
        return group

    def fresh(
        self,
        node: cst.CSTNode,
        role: str,
        label: Text,
        tensor: bool | None,
        immutable: bool = False,
        st: State | None = None,
    ) -> Value:
        key = (id(node), role)
        if st is not None:
            self.recreate(key, st)
        v = self._memo.get(key)  # ``_new``, inline: the commonest value
        if v is None:
            v = self._memo[key] = Value(Kind.FRESH, node, label, tensor=tensor, immutable=immutable)
        if tensor and not v.tensor:
            self.set_tensor(v)
        return v

    def alias(
        self,
        node: cst.CSTNode,
        role: str,
        bases: Iterable[Value],
        label: Text,
        tensor: bool | None,
        low_precision: bool | None = None,
        st: State | None = None,
    ) -> Value:
        bases = set(bases)
        if st is not None:
            self.recreate((id(node), role), st, bases)
        v = self._new((id(node), role), lambda: Value(Kind.ALIAS, node, label, tensor=tensor))
        self.link(v, bases)
        if tensor and not v.tensor:
            self.set_tensor(v)
        self.set_grad(v, bool(bases) and all(b.grad is False for b in bases))
        if low_precision is None:
            low_precision = any(b.low_precision for b in bases)
        if low_precision:
            v.low_precision = True
        return v

    def container(
        self,
        node: cst.CSTNode,
        role: str,
        elements: list[frozenset[Value]],
        label: str,
        immutable: bool,
        positional: bool,
    ) -> Value:
        v = self._new((id(node), role), lambda: Value(Kind.CONTAINER, node, label, tensor=False, immutable=immutable))
        for values in elements:
            self.link(v, values)
        if positional:
            if v.elements is None or len(v.elements) != len(elements):
                v.elements = [frozenset(e) for e in elements]
            else:
                v.elements = [old | new for old, new in zip(v.elements, elements)]
        return v

    def external(self, key: str, label: str, node: cst.CSTNode, tensor: bool | None = None) -> Value:
        return self._new(("external", key), lambda: Value(Kind.EXTERNAL, node, label, tensor=tensor, external=label))

    def rewritten(self, site: Site | None) -> bool:
        return site is not None and self.decisions.get(site.key) is not None

    def out_of_place(self, site: Site) -> bool:
        """Whether the site is rewritten to an out-of-place op (which saves its input ``self`` when
        its other inputs require grad, where the in-place op saved a clone)."""
        return self.decisions.get(site.key) in (
            "aug",
            "aug-dtype",
            "method",
            "method-dtype",
            "function",
            "rename",
            "chain",
        )

    def closure(self, values: Iterable[Value], possible: bool = True) -> set[Value]:
        """Every value that may share storage with one of ``values``, and every container holding one.

        A container reached because it holds a value is an observer (its other elements are not
        affected); a container reached because a value was taken out of it may hold the value
        anywhere, so its elements are included. Without ``possible``, the results of calls
        without a summary are not followed to what they were given (nor back).
        """
        return set(self._closure(values, possible))

    def closure_via(self, values: Iterable[Value]) -> dict[Value, Value | None]:
        """``closure``, each value mapped to None when it shares storage for sure, or to the result
        of a call without a summary through which alone it may."""
        values = list(values)
        found = self._closure(values, True)
        for v in self._closure(values, False):
            found[v] = None
        return found

    def _closure(self, values: Iterable[Value], possible: bool) -> dict[Value, Value | None]:
        seen: dict[Value, Value | None] = {}
        stack: list[tuple[Value, bool, Value | None]] = [(v, True, None) for v in values]
        while stack:
            v, expand_bases, link = stack.pop()
            if v in seen:
                continue
            seen[v] = link
            # After a rewritten in-place site the value is a fresh tensor: it shares nothing with
            # what it was computed from, but views taken from it later do share its storage.
            fresh = v.kind is Kind.MUTATED and self.rewritten(v.site)
            # A possible alias reached from one of its bases may be that one: not the others.
            if (
                not fresh
                and (expand_bases or v.kind is not Kind.CONTAINER and not v.possible)
                and (possible or not v.possible)
            ):
                for b in v.bases:
                    stack.append((b, True, link or (v if v.possible else None)))
            for child in self._children.get(v, ()):
                if child.kind is Kind.MUTATED and self.rewritten(child.site):
                    continue
                if child.possible and not possible:
                    continue
                stack.append(
                    (
                        child,
                        child.kind is not Kind.CONTAINER and not child.possible,
                        link or (child if child.possible else None),
                    )
                )
        return seen

    def is_tensor(self, values: Iterable[Value]) -> bool | None:
        """True if the values are tensors (Python numbers may mix in: ``x op= y`` is then a plain
        rebinding), False if none is, None if unknown or mixed with mutable non-tensors."""
        found = any_tensor = other = False  # other: a value neither a tensor nor a Python number
        all_not_tensor = True
        for v in values:
            immutable = v.immutable
            if immutable and v.is_none:
                continue
            found = True
            t = v.tensor
            if t is True:
                any_tensor = True
                all_not_tensor = False
            elif t is False:
                other = other or not immutable
            else:
                other = True
                all_not_tensor = False
        if not found:
            return None
        if any_tensor:
            return None if other else True
        return False if all_not_tensor else None

    def mark_tensor(self, values: Iterable[Value]) -> None:
        for v in values:
            if v.tensor is None and v.kind is not Kind.CONTAINER:
                self.set_tensor(v)

    def set_grad(self, v: Value, grad_free: bool) -> None:
        """Record whether ``v`` cannot require grad. "May require grad" wins across loop passes."""
        if id(v) not in self._grad_seen:
            self._grad_seen.add(id(v))
            v.grad = False if grad_free else None
        elif not grad_free:
            v.grad = None

    def grad_free(self, *inputs: Iterable[Value]) -> bool:
        """An op result cannot require grad if autograd is off or no input can."""
        if self.grad_disabled:
            return True
        return all(v.grad is False for values in inputs for v in values if v.tensor is not False)

    # ================================================================ driving
    def run(self) -> FunctionAnalysis:
        node = self.fn.node
        st = State()
        for param in all_params(node.params):
            name = param.name.value
            tensor = _annotation_tensor(param.annotation) if param.annotation else None
            if name == self.self_name:
                tensor = False
            if param.default is not None:
                self.eval(param.default, st)
            v = self._new(
                ("param", name), lambda n=name, t=tensor, p=param: Value(Kind.PARAM, p, f"argument `{n}`", tensor=t)
            )
            if _INTEGER_NAME.search(name):
                v.grad = False  # token ids, labels, indices: integer tensors never require grad
            if self.fn.name == "forward" and name != self.self_name and tensor is None:
                v.likely = True
            self._params[name] = v
            st.bind(name, frozenset({v}))
        end = self.body(node.body, st)
        if end is not None:
            self._exits.append((end, frozenset()))
        self.result.tensor_params = {
            n for n, v in self._params.items() if v.tensor or v.likely or v in self.tensor_inputs
        }
        return self.result

    def summary(self) -> "Summary":
        """What a caller needs to know: which arguments this function may save for backward, and
        which ones its result may share storage with."""
        params = [p.name.value for p in self.fn.node.params.posonly_params + self.fn.node.params.params]
        if self.self_name and params and params[0] == self.self_name:
            params = params[1:]
        saves: dict[str, str] = {}
        aliases: set[str] = set()
        returned: set[Value] = set()
        for state, values in self._exits:
            returned |= values
        returned_group = self.closure_via(returned) if returned else {}
        maybe: set[str] = set()
        for name, value in self._params.items():
            if name == self.self_name:
                continue
            group = self.closure({value}, possible=False)
            for state, _ in self._exits:
                for v in group:
                    for event in state.saved.get(v, ()):
                        strength = "input" if event.what != "opaque" else "opaque"
                        if saves.get(name) != "input":
                            saves[name] = strength
            if value in returned_group:
                (aliases if returned_group[value] is None else maybe).add(name)
        returns_tensor = bool(returned) and self.is_tensor(returned) is True
        node = self.fn.node
        return Summary(
            params,
            {p.name.value for p in node.params.kwonly_params},
            saves,
            aliases,
            returns_tensor,
            isinstance(node.params.star_arg, cst.Param) or node.params.star_kwarg is not None,
            {n for n, v in self._params.items() if v.tensor or v.likely or v in self.tensor_inputs},
            possible_aliases=maybe,
        )

    def body(self, suite, st: State | None) -> State | None:
        if st is None:
            return None
        if isinstance(suite, cst.IndentedBlock):
            for stmt in suite.body:
                if st is None:
                    return None
                st = self.statement(stmt, st)
            return st
        return self.small_statements(suite.body, st)

    def small_statements(self, stmts, st: State | None) -> State | None:
        for small in stmts:
            if st is None:
                break
            self._statement = small
            self._assigning = _assigned_names(small)
            st = self.small(small, st)
            self._assigning = set()
        self._statement = None
        return st

    def statement(self, stmt: cst.BaseStatement, st: State) -> State | None:
        if isinstance(stmt, cst.SimpleStatementLine):
            return self.small_statements(stmt.body, st)
        self._statement = None
        if isinstance(stmt, cst.If):
            self.eval(stmt.test, st)
            then_in, other_in = st.copy(), st.copy()
            self.narrow_none(stmt.test, then_in, other_in)
            then = self.body(stmt.body, then_in)
            if stmt.orelse is None:
                other: State | None = other_in
            elif isinstance(stmt.orelse, cst.If):
                other = self.statement(stmt.orelse, other_in)
            else:
                other = self.body(stmt.orelse.body, other_in)
            return join([then, other])
        if isinstance(stmt, (cst.For, cst.While)):
            return self.loop(stmt, st)
        if isinstance(stmt, cst.With):
            return self.with_(stmt, st)
        if isinstance(stmt, (cst.Try, cst.TryStar)):
            return self.try_(stmt, st)
        if isinstance(stmt, cst.FunctionDef):
            for d in stmt.decorators:
                self.eval(d.decorator, st)
            st.bind(stmt.name.value, frozenset({self.fresh(stmt, "def", f"function `{stmt.name.value}`", False, True)}))
            return st
        if isinstance(stmt, cst.ClassDef):
            st.bind(stmt.name.value, frozenset({self.fresh(stmt, "class", f"class `{stmt.name.value}`", False, True)}))
            return st
        if isinstance(stmt, cst.Match):
            self.eval(stmt.subject, st)
            outs: list[State | None] = [st.copy()]
            for case in stmt.cases:
                branch = st.copy()
                for name in _pattern_names(case.pattern):
                    branch.bind(name, frozenset({self.fresh(case, f"match:{name}", f"`{name}`", None)}))
                if case.guard is not None:
                    self.eval(case.guard, branch)
                outs.append(self.body(case.body, branch))
            return join(outs)
        return st

    def narrow_none(self, test: cst.BaseExpression, yes: State, no: State) -> None:
        """``if name is None:`` / ``if name is not None:``: on each branch only the paths where the
        name may hold such a value. A value after an in-place write, a container or a literal is
        never None; only the literal None is."""
        if not (
            isinstance(test, cst.Comparison)
            and len(test.comparisons) == 1
            and isinstance(test.left, cst.Name)
            and isinstance(test.comparisons[0].comparator, cst.Name)
            and test.comparisons[0].comparator.value == "None"
        ):
            return
        op = test.comparisons[0].operator
        if not isinstance(op, (cst.Is, cst.IsNot)):
            return
        name = test.left.value
        values = yes.env.get(name)
        if name not in self.locals or not values:
            return
        none = frozenset(v for v in values if v.is_none)
        maybe = frozenset(
            v for v in values if not (v.kind in (Kind.MUTATED, Kind.CONTAINER) or (v.immutable and not v.is_none))
        )
        is_none, not_none = (yes, no) if isinstance(op, cst.Is) else (no, yes)
        is_none.narrow(name, maybe)
        not_none.narrow(name, values - none)

    def loop(self, stmt: cst.For | cst.While, st: State) -> State | None:
        # A loop nested in another is re-run on each outer pass; when it is entered with the same
        # state as before, its effects are the same too.
        cached = self._loop_cache.get(id(stmt))
        if cached is not None and cached[0].same_as(st):
            return cached[1].copy() if cached[1] is not None else None
        entry_state = st.copy()
        out = self._loop(stmt, st)
        self._loop_cache[id(stmt)] = (entry_state, out.copy() if out is not None else None)
        return out

    def _loop(self, stmt: cst.For | cst.While, st: State) -> State | None:
        iter_values = self.eval(stmt.iter, st) if isinstance(stmt, cst.For) else frozenset()
        head = st.copy()
        exits: list[State] = []
        for _ in range(_MAX_LOOP_PASSES):
            self._loop_exits.append([])
            self._loop_continues.append([])
            entry = head.copy()
            if isinstance(stmt, cst.For):
                self._statement = None
                item = self.element_of(stmt.target, "iter", iter_values, code_text(stmt.target, "loop variable `{}`"))
                self.store(stmt.target, frozenset({item}), entry, stmt)
            else:
                self.eval(stmt.test, entry)
            end = self.body(stmt.body, entry)
            exits = self._loop_exits.pop()
            continues = self._loop_continues.pop()
            new_head = join([head, end, *continues])
            if new_head is None or new_head.same_as(head):
                break
            head = new_head
        after: State | None = head
        if stmt.orelse is not None:
            after = self.body(stmt.orelse.body, head.copy())
        return join([after, *exits])

    def element_of(self, node: cst.CSTNode, role: str, container_values: frozenset[Value], label: str) -> Value:
        """A value taken out of a container (iteration, unpacking, ``c[i]``)."""
        tensor = None
        if any(v.tuple_kind in ("views", "fresh") for v in container_values):
            tensor = True
        elif container_values and self.is_tensor(container_values):
            tensor = True  # iterating a tensor yields views
        elif container_values and all(
            v.kind is Kind.CONTAINER and v.bases and all(b.tensor is True for b in v.bases) for v in container_values
        ):
            tensor = True  # a list/dict that only ever held tensors
        return self.alias(node, role, container_values, label, tensor)

    def with_(self, stmt: cst.With, st: State) -> State | None:
        saved_grad, saved_autocast = self.grad_disabled, self.autocast
        for item in stmt.items:
            expr = item.item
            qual = self.imports.qualify(expr.func if isinstance(expr, cst.Call) else expr)
            if qual in _NO_GRAD:
                if not (isinstance(expr, cst.Call) and _first_arg_false(expr)):
                    self.grad_disabled = True
            elif qual in _ENABLE_GRAD:
                self.grad_disabled = False
            elif qual in _SET_GRAD and isinstance(expr, cst.Call):
                args = positional_args(expr)
                self.grad_disabled = not (args and is_true(args[0].value))
            elif qual in _AUTOCAST:
                self.autocast = True
            self.eval(expr, st)
            if item.asname is not None:
                self.store(
                    item.asname.name, frozenset({self.fresh(item, "with", code_text(item.asname.name), None)}), st, item
                )
        out = self.body(stmt.body, st)
        self.grad_disabled, self.autocast = saved_grad, saved_autocast
        return out

    def try_(self, stmt: cst.Try | cst.TryStar, st: State) -> State | None:
        # An exception may leave the try body after any statement.
        points = [st.copy()]
        cur: State | None = st
        if isinstance(stmt.body, cst.IndentedBlock):
            for s in stmt.body.body:
                if cur is None:
                    break
                cur = self.statement(s, cur)
                if cur is not None:
                    points.append(cur.copy())
        else:
            cur = self.small_statements(stmt.body.body, cur)
            if cur is not None:
                points.append(cur.copy())
        handler_in = join(points)
        if stmt.orelse is not None and cur is not None:
            cur = self.body(stmt.orelse.body, cur)
        outs = [cur]
        for handler in stmt.handlers:
            h = handler_in.copy() if handler_in is not None else None
            if h is None:
                continue
            self._statement = None
            if handler.type is not None:
                self.eval(handler.type, h)
            if handler.name is not None:
                self.store(
                    handler.name.name, frozenset({self.fresh(handler, "exc", "an exception", False)}), h, handler
                )
            outs.append(self.body(handler.body, h))
        out = join(outs)
        if stmt.finalbody is not None:
            fin_in = join([out, handler_in])
            fin = self.body(stmt.finalbody.body, fin_in) if fin_in is not None else None
            return fin if out is not None else None
        return out

    # ================================================================ small statements
    def small(self, small: cst.BaseSmallStatement, st: State) -> State | None:
        if isinstance(small, cst.Expr):
            self.eval(small.value, st, role="expr")
        elif isinstance(small, cst.Assign):
            values = self.eval(small.value, st, role="assign")
            for target in small.targets:
                self.store(target.target, values, st, small)
        elif isinstance(small, cst.AnnAssign):
            if small.value is not None:
                values = self.eval(small.value, st, role="assign")
                self.store(small.target, values, st, small)
        elif isinstance(small, cst.AugAssign):
            self.augassign(small, st)
        elif isinstance(small, cst.Return):
            values = self.eval(small.value, st, role="return") if small.value is not None else frozenset()
            self._exits.append((st, values))
            return None
        elif isinstance(small, cst.Raise):
            if small.exc is not None:
                self.eval(small.exc, st)
            return None
        elif isinstance(small, cst.Break):
            if self._loop_exits:
                self._loop_exits[-1].append(st.copy())
            return None
        elif isinstance(small, cst.Continue):
            if self._loop_continues:
                self._loop_continues[-1].append(st.copy())
            return None
        elif isinstance(small, cst.Assert):
            self.eval(small.test, st)
            if small.msg is not None:
                self.eval(small.msg, st)
        elif isinstance(small, cst.Del):
            for name in _target_names(small.target):
                st.env.pop(name, None)
        elif isinstance(small, (cst.Import, cst.ImportFrom)) and not isinstance(small.names, cst.ImportStar):
            for alias in small.names:
                if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                    local = alias.asname.name.value
                else:
                    local = (dotted_name(alias.name) or "").split(".")[0]
                st.bind(local, frozenset({self.fresh(alias, "import", f"module `{local}`", False, True)}))
        return st

    def store(self, target: cst.BaseExpression, values: frozenset[Value], st: State, stmt: cst.CSTNode) -> None:
        if isinstance(target, cst.Name):
            st.bind(target.value, values)
        elif isinstance(target, (cst.Tuple, cst.List)):
            self.unpack(target, values, st, stmt)
        elif isinstance(target, cst.Attribute):
            self.eval(target.value, st)
            self.escape(values, stmt, code_text(target, "stored in `{}`"), st)
            attr = self_attribute(target, self.self_name)
            if attr is not None:
                st.bind(f"self.{attr}", values)
        elif isinstance(target, cst.Subscript):
            self.subscript_store(target, values, st, stmt)
        elif isinstance(target, cst.StarredElement):
            self.store(
                target.value,
                frozenset({self.container(target, "star", [values], "a starred list", False, False)}),
                st,
                stmt,
            )

    def unpack(self, target: cst.Tuple | cst.List, values: frozenset[Value], st: State, stmt: cst.CSTNode) -> None:
        starred = any(isinstance(e, cst.StarredElement) for e in target.elements)
        for i, element in enumerate(target.elements):
            parts: set[Value] = set()
            for v in values:
                if not starred and v.elements is not None and len(v.elements) == len(target.elements):
                    parts |= v.elements[i]
                elif v.tuple_kind in ("fresh", "call") and v.kind is Kind.FRESH:
                    parts.add(
                        self.fresh(
                            element, "unpack-fresh", code_text(element.value), True if v.tuple_kind == "fresh" else None
                        )
                    )
                else:
                    part = self.element_of(element, "unpack", frozenset({v}), code_text(element.value))
                    parts.add(part)
                    if (
                        v.tuple_kind == "views"
                        and v.node is not None
                        and not self.grad_disabled
                        and v.bases
                        and not self.grad_free(frozenset(v.bases))
                    ):
                        # One of several views (``a, b = x.chunk(2)``): PyTorch refuses to write it
                        # in place when it requires grad.
                        call = v.node
                        st.add_saved(
                            (part,), self.save_event(call, lambda call=call: short_code(call, 40), "multiview")
                        )
            self.store(
                element.value if not isinstance(element, cst.StarredElement) else element, frozenset(parts), st, stmt
            )

    def escape(self, values: Iterable[Value], node: cst.CSTNode, where: str, st: State) -> None:
        st.add_escaped(values, self.escape_event(node, where))

    # ================================================================ in-place sites
    def site(self, kind: SiteKind, node: cst.CSTNode, receiver: cst.BaseExpression | None, op: str, **kw) -> Site:
        key = (id(node), kind.value)
        site = self.result.sites.get(key)
        if site is None:
            site = Site(key, kind, node, self._statement, receiver, op, **kw)
            self.result.sites[key] = site
        return site

    def write(
        self,
        site: Site,
        st: State,
        targets: frozenset[Value],
        root: str | None,
        *,
        rebinds: bool,
        saves_output: SaveEvent | None = None,
        tensor_proof: bool = False,
        inputs: Iterable[frozenset[Value]] = (),
    ) -> Value:
        """Record an in-place write of ``targets`` at ``site``; return the value after it."""
        site.root = root
        site.targets |= set(targets)
        site.grad_disabled |= self.grad_disabled
        site.autocast |= self.autocast
        site.low_precision |= any(v.low_precision for v in targets)
        if tensor_proof:
            self.mark_tensor(targets)
        verdict = self.is_tensor(targets)
        site.not_tensor = verdict is False
        site.tensor_unknown = verdict is None
        site.likely_tensor |= any(v.likely for v in targets)
        shared = self.closure_via(targets)
        group = set(shared)
        for value, link in shared.items():
            if link is not None:
                site.maybe_shared[value] = link
            else:
                site.maybe_shared.pop(value, None)
        for value in group:
            if shared[value] is not None:
                continue  # evidence only through what surely shares the storage
            events = st.saved_via(root, value) if value in targets else st.saved.get(value, ())
            for event in events:
                if event.what == "leaf" and self.grad_disabled:
                    continue  # writing a leaf under no_grad is how optimizers update it
                if event.what == "multiview" and value not in targets:
                    continue  # only the view itself is refused, not the base
                if event.node is not site.node:  # its own op (rewritten out-of-place) is no hazard
                    if site.evidence.setdefault(event, value) is value and event.what in ("input", "output", "opaque"):
                        note = self._storage_note(value, targets, st)
                        if note is not None:
                            site.storage.setdefault(event, note)
                if event.what == "leaf":
                    site.add_reason(
                        "P5",
                        "rebinding the name would leave the leaf itself (which an optimizer may hold) "
                        "unchanged: write it under `torch.no_grad()`, or compute a new tensor from it",
                        event.node,
                    )
        # A stable order, the written name's own argument first: the report names the argument
        # that the written name holds, not another one a summary may alias with it.
        own = f"`{root}`" if root else None
        ordered = (  # one value needs no order (and its label, maybe a codegen, is not computed)
            sorted(group, key=lambda v: (not (own and v.kind is Kind.PARAM and own in v.label), v.kind.value, v.label))
            if len(group) > 1
            else group
        )
        for v in ordered:
            if v.kind is Kind.PARAM and v.tensor is not False:
                site.add_reason(
                    "P3",
                    f"{v.label} (line @LINE) is not rebound before this write: the caller's tensor would stop changing",
                    v.node,
                    shared[v],
                )
            elif v.kind is Kind.EXTERNAL:
                site.add_reason("P5", f"it writes {v.external}: rewriting would stop updating it", None, shared[v])
            elif v.data_alias:
                site.add_reason(
                    "P5",
                    "it writes through `.data` (line @LINE), which autograd does not track: rewriting would stop updating the original tensor",
                    v.node,
                )
                if not self.grad_disabled and v.node is not None and v in targets and self._computed(v):
                    # In differentiable code the gradient silently ignores such a write into a
                    # computed tensor, whatever was saved: a finding of its own. (Writing a
                    # Parameter's or a module's ``.data`` is how old code updates and clamps
                    # weights: not this finding.)
                    site.evidence.setdefault(self.save_event(v.node, "`.data`", "data"), v)
        for v in group:
            for event in st.escaped.get(v, ()):
                site.add_reason(
                    "P2",
                    f"{v.label} was {event.where} (line @LINE): rewriting would stop updating that copy",
                    event.node,
                    shared[v],
                )
        if self.grad_disabled:
            site.add_reason(
                "P4",
                "autograd is disabled here (no_grad, inference_mode or set_grad_enabled(False)), so the update looks intentional",
            )
        # Later reads of anything sharing this memory would see another value after a rewrite.
        st.add_stale(group, site)
        label = f"`{root}`" if root else (code_text(site.receiver) if site.receiver is not None else "the tensor")
        after = self._new((id(site.node), "after", site.kind.value), lambda: Value(Kind.MUTATED, site.node, label))
        after.site = site
        self.link(after, targets)
        after.low_precision |= site.low_precision
        if verdict and not after.tensor:
            self.set_tensor(after)
        self.set_grad(after, self.grad_free(targets, *inputs))
        if saves_output is not None and not self.grad_disabled:
            st.add_saved((after,), saves_output)
        if root is not None and rebinds and self.decisions.get(site.key) != "drop":
            st.bind(root, frozenset({after}))
        return after

    def _ancestors(self, values: Iterable[Value]) -> set[Value]:
        """``values`` and the tensors they view (through tensor views and slices, in-place results;
        not elements of containers, nor results of calls)."""
        seen: set[Value] = set()
        stack = list(values)
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            if (v.kind is Kind.ALIAS and v.view and not v.possible) or (
                v.kind is Kind.MUTATED and not self.rewritten(v.site)
            ):
                stack.extend(b for b in v.bases if b.kind is not Kind.CONTAINER)
        return seen

    def _storage_note(self, saved: Value, targets: frozenset[Value], st: State) -> tuple | None:
        """How ``saved`` (which an op saved) shares the storage of the written ``targets`` when it
        is neither one of them nor what they view: a view of them, or a sibling view of one
        storage (slices of one tensor share its version counter)."""
        up = self._ancestors(targets)
        if saved in up:
            return None
        mine = self._ancestors([saved])
        if not mine.isdisjoint(targets):
            return (saved, self._names_of(saved, st), None, ())
        common = [c for c in mine & up if c is not saved]
        if not common:
            return None
        named = sorted(
            ((self._names_of(c, st), c) for c in common), key=lambda nc: (not nc[0], nc[1].kind.value, nc[1].label)
        )
        names, base = named[0]
        return (saved, self._names_of(saved, st), base, names)

    @staticmethod
    def _names_of(value: Value, st: State) -> tuple[str, ...]:
        return tuple(sorted(n for n, values in st.env.items() if value in values and not n.startswith("self.")))

    def _computed(self, v: Value) -> bool:
        """``v``'s storage is a tensor this function computed (an op's result, or a view of
        one): not module state, an argument, a module's weight or something unknown."""
        group = self.closure([v], possible=False) - {v}
        return bool(group) and all(
            b.kind in (Kind.FRESH, Kind.ALIAS, Kind.MUTATED) and b.tensor is not False for b in group
        )

    def read(self, name: str, values: frozenset[Value], node: cst.CSTNode, st: State) -> None:
        if st.stale:
            for v in values:
                for site in st.stale.get(v, ()):
                    site.conflicts.setdefault(node, name)
                    link = site.maybe_shared.get(v)
                    if link is None:
                        site.strict_reads.add(node)
                    else:
                        site.possible_reads.setdefault(node, link)

    # ================================================================ augmented assignment
    def augassign(self, node: cst.AugAssign, st: State) -> None:
        rhs = self.eval(node.value, st)
        target = node.target
        symbol, inplace_name = AUG_OPS.get(type(node.operator), (None, None))
        if symbol is None:  # @=: torch.Tensor has no __imatmul__, so Python already rebinds
            values = self.eval(target, st)
            self.store(
                target,
                frozenset({self.fresh(node, "matmul", code_text(target), self.is_tensor(values) or None)}),
                st,
                node,
            )
            return
        display = code_text(node)
        if isinstance(target, cst.Name):
            name = target.value
            local = name in self.locals
            values = st.env.get(name, frozenset()) if local else self.eval(target, st)
            if local:
                self.read(name, values, target, st)
            verdict = self.is_tensor(values)
            if verdict is False or not values:
                for v in values:
                    if not v.immutable and v.kind is Kind.CONTAINER:
                        self.link(v, rhs)  # list += [...] extends in place
                if any(not v.immutable for v in values):
                    return
                rhs_tensor = self.is_tensor(rhs)
                if rhs_tensor:
                    result = self.fresh(node, "aug", f"`{name}`", True)
                elif rhs_tensor is False and all(v.immutable for v in rhs):
                    result = self.fresh(node, "aug", f"`{name}`", False, immutable=True)  # a Python number
                else:
                    result = self.fresh(node, "aug", f"`{name}`", None)
                if local:
                    st.bind(name, frozenset({result}))
                return
            site = self.site(SiteKind.AUG, node, target, f"{symbol}=", method=inplace_name)
            self.op_saves(
                node,
                display,
                st,
                torch_api.method_spec(inplace_name),
                [values, rhs],
                inplace=not self.out_of_place(site),
            )
            site.nonlocal_target = not local
            self.write(
                site,
                st,
                values,
                name if local else None,
                rebinds=local,
                saves_output=self.inplace_output(node, display, inplace_name),
                inputs=(rhs,),
            )
        elif isinstance(target, cst.Subscript):
            self.index_write(node, target, st, f"[...] {symbol}=", inputs=(rhs,))
        elif isinstance(target, cst.Attribute):
            values = self.eval(target, st)
            if self.is_tensor(values) is True:
                site = self.site(SiteKind.AUG, node, target, f"{symbol}=", method=inplace_name)
                site.nonlocal_target = True
                self.write(site, st, values, None, rebinds=False)

    def subscript_store(self, target: cst.Subscript, values: frozenset[Value], st: State, stmt: cst.CSTNode) -> None:
        base_values = self.eval(target.value, st)
        if self.is_tensor(base_values) is False or not base_values:
            for element in target.slice:
                self._eval_slice(element, st)
            for v in base_values:
                if v.kind is Kind.CONTAINER:
                    self.link(v, values)  # the dict/list now holds the values
                else:
                    self.escape(values, stmt, code_text(target.value, "stored in `{}`"), st)
            return
        self.index_write(stmt, target, st, "[...] =", base_values=base_values, inputs=(values,))

    def index_write(
        self,
        node: cst.CSTNode,
        target: cst.Subscript,
        st: State,
        op: str,
        base_values: frozenset[Value] | None = None,
        inputs: Iterable[frozenset[Value]] = (),
    ) -> None:
        if base_values is None:
            base_values = self.eval(target.value, st)
        for element in target.slice:
            self._eval_slice(element, st)
        if self.is_tensor(base_values) is False:
            if isinstance(node, cst.AugAssign) and any(v.kind is Kind.CONTAINER for v in base_values):
                # out["p"] *= 2: the container keeps its entry, and the tensor in it is changed in place.
                symbol, inplace_name = AUG_OPS.get(type(node.operator), ("", None))
                element = self._eval_subscript(target, st, None)
                if self.is_tensor(element) is True and inplace_name is not None:
                    site = self.site(SiteKind.AUG, node, target, f"{symbol}=", method=inplace_name)
                    site.nonlocal_target = True
                    site.container_entry = True
                    self.write(
                        site,
                        st,
                        element,
                        None,
                        rebinds=False,
                        inputs=inputs,
                        saves_output=self.inplace_output(node, code_text(node), inplace_name),
                    )
            return
        root, root_values = self.root_of(target.value, st)
        site = self.site(SiteKind.INDEX, node, target, op)
        site.nonlocal_target = root is None
        self.write(site, st, base_values if root is None else root_values, root, rebinds=True, inputs=inputs)

    def root_of(self, expr: cst.BaseExpression, st: State) -> tuple[str | None, frozenset[Value]]:
        """The local name whose storage ``expr`` views (``x`` for ``x[i].view(-1)``), if any."""
        while True:
            if isinstance(expr, cst.Name):
                if expr.value in self.locals:
                    return expr.value, st.env.get(expr.value, frozenset())
                return None, frozenset()
            if isinstance(expr, cst.Subscript):
                expr = expr.value
            elif isinstance(expr, cst.Attribute) and expr.attr.value in torch_api.ALIAS_ATTRIBUTES:
                expr = expr.value
            elif (
                isinstance(expr, cst.Call)
                and isinstance(expr.func, cst.Attribute)
                and (
                    torch_api.method_returns_alias(expr.func.attr.value)
                    or torch_api.is_inplace_method(expr.func.attr.value)
                )
            ):
                expr = expr.func.value  # views and in-place calls (which return self)
            else:
                return None, frozenset()

    # ================================================================ saving
    def op_saves(
        self,
        node: cst.CSTNode,
        display: Text,
        st: State,
        spec: torch_api.OpSpec | None,
        positional: list[frozenset[Value]],
        keywords: dict[str, frozenset[Value]] | None = None,
        inplace: bool = False,
    ) -> bool:
        """Record which argument values the op saves for backward; return whether it saves its output.

        For a method, ``positional[0]`` is ``self``. An in-place op saves a clone of the original
        ``self`` (an in-place op never breaks its own backward), so ``self`` is not recorded then.
        An unknown op (``spec`` None) may save any tensor it is given.
        """
        if self.grad_disabled:
            return False
        keywords = keywords or {}
        if spec is None:
            event = self.save_event(node, display, "opaque")
            for i, values in enumerate(positional):
                if not (inplace and i == 0):
                    st.add_saved(values, event)
            for values in keywords.values():
                st.add_saved(values, event)
            return False
        saved, out = spec.saves(positional, keywords, self.may_require_grad)
        if saved:
            event = self.save_event(node, display, "input")
            for values in saved:
                if not (inplace and positional and values is positional[0]):
                    st.add_saved(values, event)
        return out

    def may_require_grad(self, values: frozenset[Value]) -> bool:
        """A tensor (proven, or likely) that is not known to be grad-free. An argument of unknown
        type is most often a Python number (``x * scale``): it is not counted."""
        return any((v.tensor is True or (v.tensor is None and v.likely)) and v.grad is not False for v in values)

    def inplace_output(self, node: cst.CSTNode, display: Text, inplace_name: str | None) -> SaveEvent | None:
        """An in-place op whose backward reads its own result (``exp_``, ``relu_``) saves the written tensor."""
        spec = torch_api.method_spec(inplace_name) if inplace_name else None
        if spec is None or self.grad_disabled or not spec.saves_output():
            return None
        return self.save_event(node, display, "output")

    @staticmethod
    def split_args(args) -> tuple[list[frozenset[Value]], dict[str, frozenset[Value]]]:
        positional = [v for k, v, _ in args if isinstance(k, int) or k == "*"]
        keywords = {k: v for k, v, _ in args if isinstance(k, str) and k != "*"}
        return positional, keywords

    # ================================================================ expressions
    def eval(self, expr: cst.BaseExpression, st: State, role: str | None = None) -> frozenset[Value]:
        handler = _EVAL.get(type(expr))
        if handler is None:
            for child in _expr_children(expr):
                self.eval(child, st)
            return frozenset({self.fresh(expr, "other", code_text(expr), None)})
        return handler(self, expr, st, role)

    def _eval_name(self, expr: cst.Name, st: State, role) -> frozenset[Value]:
        name = expr.value
        if name in ("None", "True", "False"):
            return frozenset({self.fresh(expr, "const", name, False, True)})
        if name in self.locals:
            values = st.env.get(name, frozenset())
            self.read(name, values, expr, st)
            return values
        if name in self.imports.names:
            return frozenset({self.external(f"module:{name}", f"module `{name}`", expr, tensor=False)})
        return frozenset({self.external(f"global:{name}", f"the global `{name}`", expr)})

    def _eval_attribute(self, expr: cst.Attribute, st: State, role) -> frozenset[Value]:
        attr = expr.attr.value
        self_attr = self_attribute(expr, self.self_name)
        if self_attr is not None:
            key = f"self.{self_attr}"
            if key in st.env:
                return st.env[key]
            info = self.cls.attr(self_attr) if self.cls else None
            label, tensor = f"module state `{self.self_name}.{self_attr}`", None
            if info is not None:
                if info.is_parameter():
                    label, tensor = f"the Parameter `{self.self_name}.{self_attr}`", True
                elif info.is_buffer():
                    label, tensor = f"the buffer `{self.self_name}.{self_attr}`", True
                elif info.is_module():
                    tensor = False
                elif info.is_python_value():
                    return frozenset({self.fresh(expr, "py-attr", label, False, immutable=True)})
            return frozenset({self.external(key, label, expr, tensor=tensor)})
        qual = self.imports.qualify(expr)
        if qual is not None:
            return frozenset({self.fresh(expr, "qual", qual, False, True)})
        base = self.eval(expr.value, st)
        label = code_text(expr)
        if attr in torch_api.NON_TENSOR_ATTRIBUTES:
            return frozenset({self.fresh(expr, "attr", label, False, True)})
        if attr == "grad":
            return frozenset(
                {self.external(f"grad:{id(expr)}", code_text(expr, "the gradient `{}`"), expr, tensor=True)}
            )
        if attr in torch_api.ALIAS_ATTRIBUTES and self.is_tensor(base) is not False:
            v = self.alias(expr, "attr", base, label, tensor=True)
            if attr == "data":
                v.data_alias = True
                self.set_grad(v, True)
            return frozenset({v})
        return frozenset({self.element_of(expr, "attr", base, label)})

    def _eval_subscript(self, expr: cst.Subscript, st: State, role) -> frozenset[Value]:
        base = self.eval(expr.value, st)
        advanced = False
        for element in expr.slice:
            advanced |= self._eval_slice(element, st)
        label = code_text(expr)
        idx = _int_index(expr)
        if (
            idx is not None
            and base
            and all(v.elements is not None and -len(v.elements) <= idx < len(v.elements) for v in base)
        ):
            return frozenset().union(*(v.elements[idx] for v in base))  # type: ignore[index]
        if self.is_tensor(base):
            if advanced:
                # Indexing with a tensor or a list (x[mask], x[idx]) copies; it does not view.
                result = self.fresh(expr, "gather", label, True, st=st)
                self.set_grad(result, self.grad_free(base))
                return frozenset({result})
            view = self.alias(expr, "sub", base, label, tensor=True, st=st)
            view.view = True  # a slice of a tensor
            return frozenset({view})
        return frozenset({self.element_of(expr, "sub", base, label)})

    def _eval_slice(self, element: cst.SubscriptElement, st: State) -> bool:
        """Evaluate one index; return whether it is an advanced index (a tensor or a list)."""
        sl = element.slice
        if isinstance(sl, cst.Index):
            values = self.eval(sl.value, st)
            if isinstance(sl.value, cst.UnaryOperation) and isinstance(sl.value.operator, cst.BitInvert):
                return True  # x[~mask]: a boolean mask
            return bool(values) and (
                self.is_tensor(values) is True or all(v.kind is Kind.CONTAINER and not v.immutable for v in values)
            )
        if isinstance(sl, cst.Slice):
            for part in (sl.lower, sl.upper, sl.step):
                if part is not None:
                    self.eval(part, st)
        return False

    def _eval_literal(self, expr, st, role) -> frozenset[Value]:
        for child in _expr_children(expr):
            self.eval(child, st)
        return frozenset({self.fresh(expr, "lit", code_text(expr), False, True)})

    def _eval_container(self, expr, st, role) -> frozenset[Value]:
        elements: list[frozenset[Value]] = []
        for element in expr.elements:
            if isinstance(element, cst.DictElement):
                self.eval(element.key, st)
            elements.append(self.eval(element.value, st))
        positional = isinstance(expr, (cst.Tuple, cst.List)) and not any(
            isinstance(e, cst.StarredElement) for e in expr.elements
        )
        return frozenset(
            {self.container(expr, "display", elements, code_text(expr), isinstance(expr, cst.Tuple), positional)}
        )

    def _eval_comprehension(self, expr, st, role) -> frozenset[Value]:
        inner = st.copy()
        comp = expr.for_in
        while comp is not None:
            iter_values = self.eval(comp.iter, inner)
            item = self.element_of(comp.target, "comp", iter_values, code_text(comp.target))
            for name in _target_names(comp.target):
                inner.bind(name, frozenset({item}))
            for cond in comp.ifs:
                self.eval(cond.test, inner)
            comp = comp.inner_for_in
        if isinstance(expr, cst.DictComp):
            self.eval(expr.key, inner)
            values = self.eval(expr.value, inner)
        else:
            values = self.eval(expr.elt, inner)
        st.saved, st.escaped, st.stale, st.pinned = (
            inner.saved,
            inner.escaped,
            inner.stale,
            inner.pinned,
        )  # effects flow back
        st.pinned_stale = inner.pinned_stale
        return frozenset({self.container(expr, "comp", [values], code_text(expr), False, False)})

    def _eval_binary(self, expr: cst.BinaryOperation, st: State, role) -> frozenset[Value]:
        left = self.eval(expr.left, st)
        right = self.eval(expr.right, st)
        lt, rt = self.is_tensor(left), self.is_tensor(right)
        label = code_text(expr)
        if lt is False and rt is False:
            immutable = all(v.immutable for v in left | right)
            if not immutable:
                return frozenset({self.container(expr, "concat", [left, right], label, False, False)})
            return frozenset({self.fresh(expr, "bin", label, False, True)})
        tensor = True if (lt or rt) else None
        op = _BIN_OPS.get(type(expr.operator))
        out = False
        if op is not None:
            out = self.op_saves(expr, label, st, torch_api.method_spec(op), [left, right])
        result = self.fresh(expr, "bin", label, tensor, st=st)
        result.operands = (
            (left, right) if result.operands is None else (result.operands[0] | left, result.operands[1] | right)
        )
        self.set_grad(result, self.grad_free(left, right))
        if any(v.low_precision for v in left | right):
            result.low_precision = True
        if out and not self.grad_disabled:
            st.add_saved((result,), self.save_event(expr, label, "output"))
        return frozenset({result})

    def _eval_unary(self, expr: cst.UnaryOperation, st: State, role) -> frozenset[Value]:
        values = self.eval(expr.expression, st)
        if isinstance(expr.operator, cst.Not):
            return frozenset({self.fresh(expr, "not", "a bool", False, True)})
        t = self.is_tensor(values)
        result = self.fresh(expr, "unary", code_text(expr), t, immutable=t is False, st=st)
        if not isinstance(expr.operator, cst.Not):
            result.operands = (values,) if result.operands is None else (result.operands[0] | values,)
        self.set_grad(result, isinstance(expr.operator, cst.BitInvert) or self.grad_free(values))
        return frozenset({result})

    def _eval_boolop(self, expr: cst.BooleanOperation, st: State, role) -> frozenset[Value]:
        return self.eval(expr.left, st) | self.eval(expr.right, st)

    def _eval_compare(self, expr: cst.Comparison, st: State, role) -> frozenset[Value]:
        values = self.eval(expr.left, st)
        for comp in expr.comparisons:
            values = values | self.eval(comp.comparator, st)
        t = self.is_tensor(values)
        result = self.fresh(expr, "cmp", code_text(expr), t, immutable=t is False)
        self.set_grad(result, True)  # comparisons give bool tensors
        return frozenset({result})

    def _eval_ifexp(self, expr: cst.IfExp, st: State, role) -> frozenset[Value]:
        self.eval(expr.test, st)
        return self.eval(expr.body, st) | self.eval(expr.orelse, st)

    def _eval_lambda(self, expr: cst.Lambda, st: State, role) -> frozenset[Value]:
        return frozenset({self.fresh(expr, "lambda", "a lambda", False, True)})

    def _eval_namedexpr(self, expr: cst.NamedExpr, st: State, role) -> frozenset[Value]:
        values = self.eval(expr.value, st)
        self.store(expr.target, values, st, expr)
        return values

    def _eval_yield(self, expr: cst.Yield, st: State, role) -> frozenset[Value]:
        if isinstance(expr.value, cst.From):
            values = self.eval(expr.value.item, st)
        elif expr.value is not None:
            values = self.eval(expr.value, st)
        else:
            values = frozenset()
        self.escape(values, expr, "yielded to the caller", st)
        return frozenset({self.fresh(expr, "yield", "the value sent in", None)})

    def _eval_await(self, expr: cst.Await, st: State, role) -> frozenset[Value]:
        self.eval(expr.expression, st)
        return frozenset({self.fresh(expr, "await", "an awaited value", None)})

    def _eval_starred(self, expr, st, role) -> frozenset[Value]:
        return self.eval(expr.value, st)

    # ================================================================ calls
    def _eval_call(self, call: cst.Call, st: State, role) -> frozenset[Value]:
        func = call.func
        if isinstance(func, cst.Attribute):
            qual = self.imports.qualify(func)
            if qual is not None:
                return self.call_qualified(call, qual, st, role)
            self_attr = self_attribute(func, self.self_name)
            if self_attr is not None and self.cls is not None:
                return self.call_self(call, self_attr, st, role)
            dotted = dotted_name(func) if self.summaries and self.summaries.program else None
            if dotted and dotted.split(".")[0] not in self.locals:
                external = self.summaries.external(dotted)
                if external is not None:  # ``blocks.gate(...)``: a module of the run, imported
                    return self.user_call(call, None, self.eval_args(call, st), st, dotted, external)
            return self.call_method(call, func, st, role)
        element = self._module_list_element(func)
        if element is not None:  # ``self.blocks[-1](x)``, ``layer(x)`` in ``for layer in self.blocks``
            args = self.eval_args(call, st)
            display = f"{short_code(func)}(...)" if call.args else f"{short_code(func)}()"
            # Every element returns an op's output (a new tensor), as for a resolved ``self.x(...)``.
            result = self.opaque_call(call, args, st, True, display=display, may_alias=False)
            if not self.grad_disabled:
                st.add_saved(result, self.save_event(call, f"{display}` = `{element}", "output"))
            return result
        if isinstance(func, cst.Name) and func.value not in self.locals:
            qual = self.imports.qualify(func)
            if qual is not None:
                return self.call_qualified(call, qual, st, role)
            if func.value in _BUILTINS:
                return self.call_builtin(call, func.value, st)
        self.eval(func, st)
        args = self.eval_args(call, st)
        if isinstance(func, cst.Name):
            target = self.summaries.function(func.value, self.fn) if self.summaries else None
            if target is not None:
                return self.user_call(call, target, args, st, func.value)
            external = self.summaries.external(func.value) if self.summaries else None
            if external is not None:
                return self.user_call(call, None, args, st, func.value, external)
            if func.value not in self.locals and self.summaries is not None and self.summaries.torch_global(func.value):
                # ``lin = torch.nn.Linear(6, 6)`` at module level: one of torch's modules
                return self.opaque_call(call, args, st, may_alias=False)
        return self.opaque_call(call, args, st)

    def user_call(
        self,
        call: cst.Call,
        target: FunctionInfo | None,
        args,
        st: State,
        name: str,
        summary: Summary | None = None,
        possible: bool = False,
    ) -> frozenset[Value]:
        """A call of a function of this module (``target``), or of another file of the run
        (``summary`` from the whole-program phase): use its summary instead of assuming the worst.
        With ``possible``, the summary's aliases are only possible ones (a module's ``forward`` of
        another file, summarized flow-insensitively): they count against a rewrite, never for one."""
        if target is not None:
            summary = self.summaries.get(target) if self.summaries else None
        display = f"{name}(...)" if call.args else f"{name}()"
        if summary is None or summary.varargs or any(k == "*" for k, _, _ in args):
            return self.opaque_call(call, args, st, display=display)
        aliased: set[Value] = set()
        maybe: set[Value] = set()
        for key, values, _ in args:
            param = summary.params[key] if isinstance(key, int) and key < len(summary.params) else key
            if param not in summary.params and param not in summary.kwonly:
                if not self.grad_disabled:
                    st.add_saved(values, self.save_event(call, display, "opaque"))
                continue
            strength = summary.saves.get(param)
            if strength is not None and not self.grad_disabled:
                st.add_saved(values, self.save_event(call, display, strength))
            if param in summary.aliases:
                # (a summary of another file over-approximates: only what may be a tensor counts)
                aliased |= values if summary.where is None else {v for v in values if v.tensor is not False}
            elif param in summary.possible_aliases:
                maybe |= values
        label = fmt_text("the result of `{}`", display)
        if maybe and not aliased:
            possible, aliased = True, maybe
        tensor = True if summary.returns_tensor else None
        if aliased and possible:
            return frozenset({self.possible_alias(call, aliased, label, tensor, st, summary.where or "in this file")})
        if aliased:
            return frozenset({self.alias(call, "user-call", aliased, label, tensor, st=st)})
        result = self.fresh(call, "call", label, tensor, st=st)
        result.tuple_kind = "call"
        if summary.saved_output and summary.where and not self.grad_disabled:
            # ``h = block(x)`` where ``block`` (another file) returns ``torch.sigmoid(...)``.
            op = f"{summary.saved_output}(...)` ({summary.where}) of `{display}"
            st.add_saved((result,), self.save_event(call, op, "output"))
        return frozenset({result})

    def eval_args(self, call: cst.Call, st: State) -> list[tuple[str | int, frozenset[Value], cst.Arg]]:
        out: list[tuple[str | int, frozenset[Value], cst.Arg]] = []
        pos = 0
        for arg in call.args:
            values = self.eval(arg.value, st)
            if arg.keyword is not None:
                out.append((arg.keyword.value, values, arg))
            elif arg.star:
                out.append(("*", values, arg))
            else:
                out.append((pos, values, arg))
                pos += 1
        return out

    def opaque_call(
        self,
        call: cst.Call,
        args,
        st: State,
        tensor: bool | None = None,
        display: Text | None = None,
        receiver: frozenset[Value] = frozenset(),
        may_alias: bool = True,
    ) -> frozenset[Value]:
        """A call we know nothing about: it may save any tensor it is given, and (``may_alias``:
        no summary and nothing in the table says otherwise) return one of them or a view of it."""
        display = display or (lambda: call_display(call))
        if not self.grad_disabled:
            event = self.save_event(call, display, "opaque")
            for _, values, _ in args:
                st.add_saved(values, event)
            st.add_saved(receiver, event)
        label = fmt_text("the result of `{}`", display)
        if may_alias and tensor is not False:
            given = {v for _, values, _ in args for v in values} | set(receiver)
            bases = {v for v in given if not v.immutable and (v.tensor is not False or v.kind is Kind.CONTAINER)}
            if bases:
                return frozenset({self.possible_alias(call, bases, label, tensor, st)})
        result = self.fresh(call, "call", label, tensor, st=st)
        result.tuple_kind = "call"
        return frozenset({result})

    def possible_alias(
        self, call: cst.Call, bases: set[Value], label: Text, tensor: bool | None, st: State, where: str | None = None
    ) -> Value:
        """The result of ``call``, which may be one of ``bases`` or a view of one (``where``: the
        summary that cannot rule it out; None: there is no summary)."""
        key = (id(call), "call-alias")
        # ``h = layer(h)`` in a loop: the result is a new object, which only may be the one passed
        # in (the previous iteration's result, the same abstract value): what was known of that
        # one is not known of the new one, as for a fresh result.
        old = self._memo.get(key)
        self.recreate(key, st, bases - self._views_of(old) if old is not None else bases)
        result = self._new(key, lambda: Value(Kind.ALIAS, call, label, tensor=tensor))
        result.possible = where or True
        self.link(result, bases)
        result.tuple_kind = "call"
        return result

    def call_builtin(self, call: cst.Call, name: str, st: State) -> frozenset[Value]:
        args = self.eval_args(call, st)
        label = code_text(call)
        if name in _CONTAINER_BUILTINS:
            return frozenset({self.container(call, "builtin", [v for _, v, _ in args], label, name == "tuple", False)})
        if name == "getattr" and args:
            return frozenset({self.element_of(call, "getattr", args[0][1], label)})
        if name == "setattr" and len(args) >= 3:
            self.escape(args[2][1], call, code_text(call, "stored by `{}`"), st)
        if name == "next" and args:
            return frozenset({self.element_of(call, "next", args[0][1], label)})
        return frozenset({self.fresh(call, "builtin", label, False, name in _IMMUTABLE_BUILTINS)})

    def call_qualified(self, call: cst.Call, qual: str, st: State, role) -> frozenset[Value]:
        module, _, name = qual.rpartition(".")
        args = self.eval_args(call, st)
        if qual in _NO_GRAD or qual in _ENABLE_GRAD or qual in _SET_GRAD or qual in _AUTOCAST:
            return frozenset({self.fresh(call, "ctx", qual, False)})
        if module.startswith("torch.distributed") and not module.startswith("torch.distributed.nn"):
            # Collectives and process-group queries are not differentiable: nothing is saved.
            return frozenset({self.fresh(call, "dist", code_text(call), None)})
        if module.split(".")[0] in ("numpy", "math"):
            return frozenset({self.fresh(call, "np", code_text(call), False, module.startswith("math"))})
        if module == "torch.nn.init":
            if name.endswith("_") and args and args[0][0] == 0:
                self.inplace_call(
                    call,
                    SiteKind.FUNCTION,
                    args[0][2].value,
                    args[0][1],
                    f"torch.nn.init.{name}",
                    name,
                    st,
                    role,
                    out_saved=False,
                    category="init",
                )
            return frozenset({self.fresh(call, "init", qual, True)})
        if module == "torch.nn" and name[:1].isupper():
            return frozenset({self.fresh(call, "module", code_text(call), False)})
        if module == "torch.nn.functional":
            return self.call_functional(call, name, args, st, role)
        if module in ("torch", "torch.special", "torch.linalg", "torch.fft"):
            return self.call_torch(call, qual, name, args, st, role)
        dotted = dotted_name(call.func) if module.split(".")[0] != "torch" and self.summaries else None
        external = self.summaries.external(dotted) if dotted else None
        if external is not None:
            return self.user_call(call, None, args, st, dotted, external)
        return self.opaque_call(call, args, st, may_alias=torch_api.may_return_alias(qual))

    def call_torch(self, call, qual, name, args, st, role) -> frozenset[Value]:
        display = f"{qual}(...)" if call.args else f"{qual}()"
        label = fmt_text("the result of `{}`", display)
        if name in torch_api.NON_TENSOR_FUNCTIONS:
            return frozenset({self.fresh(call, "torch", label, False, True)})
        first = next((v for k, v, _ in args if k == 0), frozenset())
        first_expr = next((a.value for k, _, a in args if k == 0), None)
        if name not in _SEQUENCE_FIRST and name not in torch_api.FACTORY_FUNCTIONS:
            self.mark_tensor(first)
        if name in torch_api.FACTORY_FUNCTIONS:
            result = self.fresh(call, "factory", label, True, st=st)
            rg = keyword_arg(call, "requires_grad")
            self.set_grad(result, not (rg is not None and not is_false(rg.value)))
            if rg is not None and is_true(rg.value):
                self.result.makes_grad_leaf = True
            if rg is not None and is_true(rg.value) and not self.grad_disabled:
                # A leaf that requires grad: PyTorch refuses any in-place write into it (or a view
                # of it) while grad is on. Recorded like a save, so that such a write is found.
                st.add_saved((result,), self.save_event(call, display, "leaf"))
            dtype = keyword_arg(call, "dtype")
            if dtype is not None:
                result.low_precision = self.imports.qualify(dtype.value) in _LOW_PRECISION
            elif name.endswith("_like") and any(v.low_precision for v in first):
                result.low_precision = True
            return frozenset({result})
        if name in torch_api.ALIAS_FUNCTIONS:
            return frozenset({self.alias(call, "torch-alias", first, label, True)})
        if name in torch_api.aliasing_ops() and name not in torch_api.TUPLE_ALIAS_FUNCTIONS:
            # ``torch.transpose(h, 0, 1)``, ``torch.flatten(h, 1)``: a view, as the method would be
            view = self.alias(call, "torch-view", first, label, True, st=st)
            view.view = True
            return frozenset({view})
        if name in torch_api.TUPLE_ALIAS_FUNCTIONS:
            v = self.container(call, "torch-tuple", [first], label, True, False)
            v.tuple_kind = "views"
            v.kind = Kind.ALIAS  # its elements are views of the argument
            return frozenset({v})
        spec = torch_api.function_spec(qual)
        positional, keywords = self.split_args(args)
        if name.endswith("_") and name in torch_api.table()["inplace_functions"] and first_expr is not None:
            out_saved = self.op_saves(
                call, display, st, torch_api.method_spec(name), positional, keywords, inplace=True
            )
            return self.inplace_call(
                call, SiteKind.FUNCTION, first_expr, first, f"torch.{name}", name, st, role, out_saved
            )
        out_saved = self.op_saves(call, display, st, spec, positional, keywords)
        if name in torch_api.TUPLE_FRESH_FUNCTIONS:
            result = self.fresh(call, "torch", label, False, st=st)
            result.tuple_kind = "fresh"
        else:
            result = self.fresh(call, "torch", label, True, st=st)
        self.set_grad(result, self.grad_free(*positional, *keywords.values()) or name in _INTEGER_FUNCTIONS)
        if keyword_arg(call, "dtype") is None and any(v.low_precision for vs in positional for v in vs):
            result.low_precision = True  # elementwise ops keep a float16/bfloat16 input's dtype
        if out_saved and not self.grad_disabled:
            st.add_saved((result,), self.save_event(call, display, "output"))
        out_arg = next(((v, a) for k, v, a in args if k == "out"), None)
        if out_arg is not None:
            values, arg = out_arg
            root, root_values = self.root_of(arg.value, st)
            site = self.site(SiteKind.OUT, call, arg.value, f"out= of `{display}`", statement_role=role)
            site.nonlocal_target = root is None
            self.write(site, st, values if root is None else root_values, root, rebinds=True)
        return frozenset({result})

    def inplace_call(
        self,
        call: cst.Call,
        kind: SiteKind,
        arg_expr: cst.BaseExpression,
        arg_values: frozenset[Value],
        op: str,
        method: str,
        st: State,
        role,
        out_saved: bool,
        category: str = "inplace",
        module_attr: str | None = None,
    ) -> Value:
        """A call that writes its (first) argument: torch.relu_(x), F.relu(x, inplace=True),
        nn.init.zeros_(w), self.act(x) with an in-place activation module."""
        root, root_values = self.root_of(arg_expr, st)
        is_name = isinstance(arg_expr, cst.Name) and root is not None
        site = self.site(
            kind, call, arg_expr, op, method=method, statement_role=role, module_attr=module_attr, category=category
        )
        if method in torch_api.RNG_INPLACE:
            site.category = "rng"
        # A plain temporary (F.relu(self.bn(x), inplace=True)) is fine to name "none"; a write
        # into self.x[...] or a global is not ours to change.
        site.nonlocal_target = (
            root is None
            and isinstance(arg_expr, (cst.Name, cst.Attribute, cst.Subscript))
            and not self._is_temporary(arg_values)
        )
        targets = root_values if is_name else arg_values
        display = lambda: call_display(call)  # noqa: E731
        return self.write(
            site,
            st,
            targets,
            root if is_name else None,
            rebinds=is_name and kind is not SiteKind.MODULE,
            saves_output=self.save_event(call, display, "output") if out_saved else None,
            tensor_proof=category == "inplace",
        )

    def _is_temporary(self, values: frozenset[Value]) -> bool:
        return bool(values) and all(v.kind is Kind.FRESH for v in values)

    def call_functional(self, call, name, args, st, role) -> frozenset[Value]:
        display = f"F.{name}(...)"
        spec = torch_api.function_spec(f"torch.nn.functional.{name}")
        positional, keywords = self.split_args(args)
        first = next((v for k, v, _ in args if k == 0), frozenset())
        first_expr = next((a.value for k, _, a in args if k == 0), None)
        self.mark_tensor(first)
        inplace_pos = torch_api.FUNCTIONAL_INPLACE_ARG.get(name)
        inplace = False
        if inplace_pos is not None:
            kw = keyword_arg(call, "inplace")
            pos = positional_args(call)
            if kw is not None:
                inplace = is_true(kw.value)
            elif len(pos) > inplace_pos:
                inplace = is_true(pos[inplace_pos].value)
        if inplace and first_expr is not None:
            aten = {"relu6": "hardtanh"}.get(name, name)
            ispec = torch_api.method_spec(f"{aten}_")
            out_saved = self.op_saves(call, display, st, ispec or spec, positional, keywords, inplace=True)
            after = self.inplace_call(
                call, SiteKind.ACTIVATION, first_expr, first, f"F.{name}(..., inplace=True)", name, st, role, out_saved
            )
            return frozenset({after})
        out_saved = self.op_saves(call, display, st, spec, positional, keywords)
        label = fmt_text("the result of `{}`", display)
        if name.startswith("dropout") or name in ("alpha_dropout", "feature_alpha_dropout"):
            result = self.alias(call, "F", first, label, True)  # eval mode returns the input itself
        else:
            result = self.fresh(call, "F", label, True, st=st)
            self.set_grad(result, self.grad_free(*positional, *keywords.values()))
        if any(v.low_precision for v in first):
            result.low_precision = True
        if out_saved and not self.grad_disabled:
            st.add_saved((result,), self.save_event(call, display, "output"))
        return frozenset({result})

    def _module_list_element(self, func: cst.BaseExpression) -> str | None:
        """``func`` calls an element of an ``nn.ModuleList`` attribute whose elements the program
        phase resolves to modules or ops that save their output (``Summaries.output_layers``):
        their names, to show; None otherwise."""
        if self.summaries is None or self.summaries.program is None or self.cls is None:
            return None
        element: int | str = "any"
        if isinstance(func, cst.Subscript) and len(func.slice) == 1 and isinstance(func.slice[0].slice, cst.Index):
            attr = self_attribute(func.value, self.self_name)
            index = func.slice[0].slice.value
            negative = isinstance(index, cst.UnaryOperation) and isinstance(index.operator, cst.Minus)
            number = index.expression if negative else index
            if isinstance(number, cst.Integer):
                element = -int(number.value, 0) if negative else int(number.value, 0)  # ``0x1``, ``1_0``
        elif isinstance(func, cst.Name) and func.value in self.locals:
            if self._module_loops is None:
                self._module_loops = module_list_loops(self.fn.node, self.self_name)
            attr = self._module_loops.get(func.value)
        else:
            return None
        info = self.cls.attr(attr) if attr is not None else None
        return self.summaries.output_layers(self.cls, attr, info, element) if info is not None else None

    def call_self(self, call: cst.Call, attr: str, st: State, role) -> frozenset[Value]:
        """``self.attr(...)``: a submodule call or a method call."""
        args = self.eval_args(call, st)
        display = f"{self.self_name}.{attr}(...)" if call.args else f"{self.self_name}.{attr}()"
        info = self.cls.attr(attr) if self.cls else None
        built = self.summaries.output_layers(self.cls, attr, info) if self.summaries and info is not None else None
        if built is not None:
            # Built by a constructor argument, a factory or an ``nn.Sequential`` (whole-program
            # phase) whose last layer saves its output in every case.
            result = self.opaque_call(call, args, st, True, display=display, may_alias=False)
            if not self.grad_disabled:
                st.add_saved(result, self.save_event(call, f"{display}` = `{built}", "output"))
            return result
        if info is None or not info.is_module():
            target = self.summaries.method(self.cls, attr) if (self.summaries and info is None) else None
            if target is not None:
                return self.user_call(call, target, args, st, f"{self.self_name}.{attr}")
            if info is not None:
                dotted = self._constructed_by(info)
                external = self.summaries.external(f"{dotted}.forward") if dotted and self.summaries else None
                if external is not None:  # ``self.block = Block(...)``, a class of another file of the run
                    return self.user_call(call, None, args, st, f"{self.self_name}.{attr}", external, possible=True)
            return self.opaque_call(call, args, st, display=display, may_alias=self._module_may_alias(info))
        first = next((v for k, v, _ in args if k == 0), frozenset())
        first_expr = next((a.value for k, _, a in args if k == 0), None)
        specs = [torch_api.module_spec(c.qualname) if c.qualname else None for c in info.values]
        if first_expr is None or any(s is None for s in specs):
            forward = self._custom_forward(info)
            if forward is not None:
                return self.user_call(call, forward, args, st, f"{self.self_name}.{attr}")
            return self.opaque_call(call, args, st, display=display, may_alias=self._module_may_alias(info))
        self.mark_tensor(first)
        inplace = info.inplace_constructors()
        after: Value | None = None
        if inplace:
            out_saved = False
            for spec, ctor in zip(specs, info.values):
                if ctor.writes_input and spec.functional is not None:
                    aten = {"relu6": "hardtanh"}.get(spec.functional, spec.functional)
                    ispec = torch_api.method_spec(f"{aten}_") or torch_api.function_spec(
                        f"torch.nn.functional.{spec.functional}"
                    )
                    out_saved |= self.op_saves(call, display, st, ispec, [first], inplace=True)
            cls_name = (inplace[0].qualname or "").rsplit(".", 1)[-1]
            after = self.inplace_call(
                call,
                SiteKind.MODULE,
                first_expr,
                first,
                f"`{display}` ({cls_name} with inplace=True)",
                cls_name,
                st,
                role,
                out_saved,
                module_attr=attr,
            )
        # The constructors built without inplace=True (``nn.ReLU(inplace=True) if a else nn.Softplus()``)
        out_saved = False
        for spec, ctor in zip(specs, info.values):
            if ctor.writes_input or spec.container or spec.returns_input or spec.functional is None:
                if spec.container:
                    self.opaque_call(call, args, st, display=display)
                continue
            fspec = torch_api.function_spec(f"torch.nn.functional.{spec.functional}")
            out_saved |= self.op_saves(call, display, st, fspec, [first], self._module_weights(fspec))
        if after is not None:
            return frozenset({after})
        label = fmt_text("the result of `{}`", display)
        if any(s.returns_input or (s.functional or "").startswith("dropout") for s in specs):
            result = self.alias(call, "module", first, label, True)
        elif any(s.container for s in specs):
            result = self.fresh(call, "module", label, None)
        else:
            result = self.fresh(call, "module", label, True, st=st)
        if out_saved and not self.grad_disabled:
            st.add_saved((result,), self.save_event(call, display, "output"))
        return frozenset({result})

    def _module_weights(self, spec: torch_api.OpSpec | None) -> dict[str, frozenset[Value]]:
        """A module's own parameters are inputs of its op that require grad (``nn.Embedding``
        saves its indices because its weight requires grad)."""
        if spec is None:
            return {}
        weight = self._new(
            ("module-weight",),
            lambda: Value(
                Kind.EXTERNAL, None, "the module's parameters", tensor=True, external="the module's parameters"
            ),
        )
        names = {n for o in spec.overloads for n in (*o.args, *o.kw)}
        return {n: frozenset({weight}) for n in ("weight", "bias") if n in names}

    def _constructed_by(self, info) -> str | None:
        """The dotted name every constructor of ``self.<attr>`` calls (``blocks.Block``), if one."""
        names = {dotted_name(c.node.func) if isinstance(c.node, cst.Call) else None for c in info.values}
        return names.pop() if len(names) == 1 else None

    def _module_may_alias(self, info) -> bool:
        """Whether calling ``self.<attr>`` may return its input (or a view of it): not when every
        constructor is one of torch's (a torch.nn module the table lacks, ``weight_norm(...)``)."""
        if info is None or not info.values:
            return True
        for ctor in info.values:
            qual = ctor.qualname if ctor.kind == "module" else None
            if qual is None and isinstance(ctor.node, cst.Call):
                qual = self.imports.qualify(ctor.node.func)
            if qual is None or torch_api.may_return_alias(qual):
                return True
        return False

    def _custom_forward(self, info) -> FunctionInfo | None:
        """The ``forward`` of the submodule's class, when every constructor of the attribute is
        the same class of this module."""
        names = {c.qualname for c in info.values}
        if len(names) != 1 or self.summaries is None:
            return None
        cls = self.index.class_named(next(iter(names)) or "")
        return self.summaries.method(cls, "forward") if cls is not None else None

    def call_method(self, call: cst.Call, func: cst.Attribute, st: State, role) -> frozenset[Value]:
        name = func.attr.value
        if name == "detach" and not call.args and not _binds_names(func.value):
            # ``torch.sqrt(torch.var(x) + eps).detach()``: what the ops inside save is never used.
            self.detached += 1
            try:
                receiver = self.eval(func.value, st)
            finally:
                self.detached -= 1
        else:
            receiver = self.eval(func.value, st)
        args = self.eval_args(call, st)
        suffix = f".{name}(...)" if call.args else f".{name}()"
        display = lambda: short_code(func.value, 30) + suffix  # noqa: E731
        recv_tensor = self.is_tensor(receiver)
        if name in _CONTAINER_STORE_METHODS and recv_tensor is not True:
            for _, values, _ in args:
                for v in receiver:
                    if v.kind is Kind.CONTAINER:
                        self.link(v, values)
                    else:
                        self.escape(values, call, code_text(func.value, "stored in `{}`"), st)
            return frozenset({self.fresh(call, "store", "None", False, True)})
        if recv_tensor is not True and name in _DICT_VIEW_METHODS and not call.args:
            # ``d.values()`` on something not known to be a tensor: a dict's values, saved by nobody.
            return frozenset({self.element_of(call, name, receiver, code_text(call))})
        if recv_tensor is not True and name in _SEQUENCE_QUERY_METHODS:
            return frozenset({self.fresh(call, "m", code_text(call), False, True)})
        if name in torch_api.tensor_methods() and recv_tensor is not False:
            if torch_api.is_tensor_only_method(name):
                self.mark_tensor(receiver)
            else:
                for v in receiver:
                    v.likely = True
            return self.tensor_method(call, func, name, receiver, args, st, role, display)
        tensor = (
            False if receiver and all(v.tensor is False and v.kind is not Kind.CONTAINER for v in receiver) else None
        )
        return self.opaque_call(call, args, st, tensor=tensor, display=display, receiver=receiver)

    def tensor_method(self, call, func, name, receiver, args, st, role, display) -> frozenset[Value]:
        label = fmt_text("the result of `{}`", display)
        if name in torch_api.NON_TENSOR_METHODS or (name == "type" and not call.args):
            return frozenset({self.fresh(call, "m", label, False, True)})
        if name in ("numpy", "tolist"):
            if name == "numpy":
                return frozenset({self.alias(call, "numpy", receiver, label, False)})
            return frozenset({self.fresh(call, "m", label, False)})
        if name in torch_api.METADATA_INPLACE:
            return frozenset({self.alias(call, "meta", receiver, label, True)})
        if torch_api.is_inplace_method(name):
            return self.inplace_method(call, func, name, receiver, args, st, role, display)
        if name in torch_api.TUPLE_ALIAS_METHODS:
            v = self.container(call, "tuple", [receiver], label, True, False)
            v.tuple_kind = "views"
            v.kind = Kind.ALIAS
            return frozenset({v})
        positional, keywords = self.split_args(args)
        copy_arg = keyword_arg(call, "copy") if name == "to" else None
        aliasing = torch_api.method_returns_alias(name) and not (copy_arg is not None and is_true(copy_arg.value))
        spec = None if name in _FRESH_NO_SAVE_METHODS else torch_api.method_spec(name)
        out_saved = False
        if spec is not None or not (aliasing or name in _FRESH_NO_SAVE_METHODS):
            out_saved = self.op_saves(call, display, st, spec, [receiver, *positional], keywords)
        if name in torch_api.TUPLE_FRESH_METHODS:
            result = self.fresh(call, "m", label, False)
            result.tuple_kind = "fresh"
            return frozenset({result})
        tensor = True if (self.is_tensor(receiver) or torch_api.is_tensor_only_method(name)) else None
        if aliasing:
            low = None
            if name in ("half", "bfloat16") or (name == "to" and _casts_to(call, self.imports, _LOW_PRECISION)):
                low = True
            elif name in ("float", "double", "int", "long", "short", "bool", "byte", "char") or (
                name == "to" and _casts_to(call, self.imports, None)
            ):
                low = False
            result = self.alias(call, "view", receiver, label, tensor, low_precision=low, st=st)
            result.view = True
            if name == "detach" or name in _INTEGER_METHODS:
                self.set_grad(result, True)
        else:
            result = self.fresh(call, "m", label, tensor, st=st)
            result.operands = (receiver,)  # a tensor method's result is a tensor only for a tensor receiver
            result.low_precision = any(v.low_precision for v in receiver)
            self.set_grad(result, name in _INTEGER_METHODS or self.grad_free(receiver, *positional, *keywords.values()))
        if out_saved and not self.grad_disabled:
            st.add_saved((result,), self.save_event(call, display, "output"))
        return frozenset({result})

    def inplace_method(self, call, func, name, receiver, args, st, role, display) -> frozenset[Value]:
        spec = torch_api.method_spec(name)
        positional, keywords = self.split_args(args)
        site = self.site(SiteKind.METHOD, call, func.value, name, method=name, statement_role=role)
        out_saved = self.op_saves(
            call, display, st, spec, [receiver, *positional], keywords, inplace=not self.out_of_place(site)
        )
        root, root_values = self.root_of(func.value, st)
        is_name = isinstance(func.value, cst.Name) and root is not None
        if name in torch_api.RNG_INPLACE:
            site.category = "rng"
        elif name in torch_api.DTYPE_CHANGING_INPLACE:
            site.category = "dtype"
        site.nonlocal_target = root is None and not self._is_temporary(receiver)
        after = self.write(
            site,
            st,
            root_values if is_name else receiver,
            root,
            rebinds=root is not None,
            saves_output=self.save_event(call, display, "output") if out_saved else None,
            tensor_proof=True,
            inputs=[*positional, *keywords.values()],
        )
        return frozenset({after})


def _casts_to(call: cst.Call, imports, dtypes: set[str] | None) -> bool:
    """``x.to(torch.float16)``: does the call name a dtype (in ``dtypes``, or any if None)?"""
    for arg in call.args:
        qual = imports.qualify(arg.value)
        if qual is None or not qual.startswith("torch."):
            continue
        if dtypes is None:
            if qual.rsplit(".", 1)[-1] in (
                "float32",
                "float",
                "float64",
                "double",
                "int64",
                "long",
                "int32",
                "int",
                "bool",
            ):
                return True
        elif qual in dtypes:
            return True
    return False


def _int_index(expr: cst.Subscript) -> int | None:
    if len(expr.slice) != 1 or not isinstance(expr.slice[0].slice, cst.Index):
        return None
    value = expr.slice[0].slice.value
    negative = False
    if isinstance(value, cst.UnaryOperation) and isinstance(value.operator, cst.Minus):
        negative, value = True, value.expression
    if isinstance(value, cst.Integer):
        try:
            n = int(value.value, 0)
        except ValueError:
            return None
        return -n if negative else n
    return None


def _first_arg_false(call: cst.Call) -> bool:
    args = positional_args(call)
    mode = keyword_arg(call, "mode")
    value = mode.value if mode is not None else (args[0].value if args else None)
    return isinstance(value, cst.Name) and value.value == "False"


def _annotation_tensor(annotation: cst.Annotation) -> bool | None:
    expr = annotation.annotation
    if isinstance(expr, cst.SimpleString):  # "torch.Tensor"
        text = expr.value.strip("'\"")
    else:
        text = dotted_name(expr) or ""
    if text.rsplit(".", 1)[-1] == "Tensor":
        return True
    if text in ("int", "float", "bool", "str", "list", "dict", "tuple", "set", "bytes"):
        return False
    return None


def _assigned_names(small: cst.BaseSmallStatement) -> set[str]:
    if isinstance(small, cst.Assign):
        return {n for t in small.targets for n in _target_names(t.target)}
    if isinstance(small, (cst.AnnAssign, cst.AugAssign)):
        return set(_target_names(small.target))
    return set()


def _target_names(target: cst.BaseExpression) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        out: list[str] = []
        for e in target.elements:
            out += _target_names(e.value)
        return out
    if isinstance(target, cst.StarredElement):
        return _target_names(target.value)
    return []


def _pattern_names(pattern) -> list[str]:
    names = []
    for node in walk_same_scope(pattern):
        if isinstance(node, (cst.MatchAs, cst.MatchStar)) and node.name is not None:
            names.append(node.name.value)
        elif isinstance(node, cst.MatchMapping) and node.rest is not None:
            names.append(node.rest.value)
    return names


def _expr_children(expr: cst.CSTNode):
    for child in children(expr):
        if isinstance(child, cst.BaseExpression):
            yield child
        elif not isinstance(child, (cst.BaseStatement, cst.BaseSmallStatement)):
            yield from _expr_children(child)


_EVAL = {
    cst.Name: _Analyzer._eval_name,
    cst.Attribute: _Analyzer._eval_attribute,
    cst.Subscript: _Analyzer._eval_subscript,
    cst.Call: _Analyzer._eval_call,
    cst.BinaryOperation: _Analyzer._eval_binary,
    cst.UnaryOperation: _Analyzer._eval_unary,
    cst.BooleanOperation: _Analyzer._eval_boolop,
    cst.Comparison: _Analyzer._eval_compare,
    cst.IfExp: _Analyzer._eval_ifexp,
    cst.Lambda: _Analyzer._eval_lambda,
    cst.NamedExpr: _Analyzer._eval_namedexpr,
    cst.Yield: _Analyzer._eval_yield,
    cst.Await: _Analyzer._eval_await,
    cst.StarredElement: _Analyzer._eval_starred,
    cst.Integer: _Analyzer._eval_literal,
    cst.Float: _Analyzer._eval_literal,
    cst.Imaginary: _Analyzer._eval_literal,
    cst.SimpleString: _Analyzer._eval_literal,
    cst.ConcatenatedString: _Analyzer._eval_literal,
    cst.FormattedString: _Analyzer._eval_literal,
    cst.Ellipsis: _Analyzer._eval_literal,
    cst.Tuple: _Analyzer._eval_container,
    cst.List: _Analyzer._eval_container,
    cst.Set: _Analyzer._eval_container,
    cst.Dict: _Analyzer._eval_container,
    cst.ListComp: _Analyzer._eval_comprehension,
    cst.SetComp: _Analyzer._eval_comprehension,
    cst.GeneratorExp: _Analyzer._eval_comprehension,
    cst.DictComp: _Analyzer._eval_comprehension,
}


def analyze_function(
    fn: FunctionInfo, index: ModuleIndex, decisions: Mapping[tuple, str | None], summaries: Summaries | None = None
) -> FunctionAnalysis:
    """Analyse ``fn``; ``decisions`` maps site keys to the chosen rewrite form (None: not rewritten)."""
    outer, Value._serial = Value._serial, itertools.count()  # each analysis numbers its values from 0
    try:
        analyzer = _Analyzer(fn, index, decisions, grad_disabled_for(fn, index))
        analyzer.summaries = summaries
        return analyzer.run()
    finally:
        Value._serial = outer


def grad_disabled_for(fn: FunctionInfo, index: ModuleIndex) -> bool:
    if any(_decorator_disables_grad(d, index) for d in fn.node.decorators):
        return True
    if fn.cls is not None and fn.parent is None and fn.name in ("forward", "backward", "setup_context", "jvp", "vjp"):
        # torch.autograd.Function runs forward and backward with grad mode off.
        if any(index.imports.qualify_dotted(b) in _AUTOGRAD_FUNCTION for b in fn.cls.bases):
            return True
    return False


def _decorator_disables_grad(decorator: cst.Decorator, index: ModuleIndex) -> bool:
    expr = decorator.decorator
    qual = index.imports.qualify(expr.func if isinstance(expr, cst.Call) else expr)
    if qual in _NO_GRAD:
        return not (isinstance(expr, cst.Call) and _first_arg_false(expr))
    if qual in _SET_GRAD and isinstance(expr, cst.Call):
        args = positional_args(expr)
        return not (args and is_true(args[0].value))
    return False


def _binds_names(expr: cst.CSTNode) -> bool:
    """Whether ``expr`` binds a name (``:=``), through which its intermediate values live on."""
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.NamedExpr):
            return True
        if not isinstance(node, cst.Lambda):
            stack.extend(children(node))
    return False
