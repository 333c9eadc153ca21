"""The in-place locator: from one forward pass, every in-place write into a tensor autograd saved.

Backward reports an overwritten saved tensor as "one of the variables needed for gradient
computation has been modified by an inplace operation", naming neither the write nor the op that
saved the tensor. The locator names both, at forward time::

    with InplaceLocator(roots=["repo/"]) as loc:
        out = model(x)
    for f in loc.findings:
        print(f.message())   # `x /= stdev` (m.py:29) overwrites a tensor saved by `torch.var(...)` (m.py:28) ...

Two mechanisms, both thread-local and both active only inside the ``with`` block:

* ``saved_tensors_hooks``: the pack hook sees every tensor autograd saves, with its version, the
  user's source line and (resolved a moment later) the name of the graph node that saved it. It
  indexes the record by the tensor's storage, so checking a write is one dict lookup.
* a ``TorchDispatchMode`` sees every aten op. Ops whose schema marks an argument as written
  (``Tensor(a!)``, including ``out=`` and tensor lists) are looked up in that index.

Exact like autograd: a write counts when it lands in the storage of a saved tensor whose saving
node is still alive (the graph was not freed) and whose version is still the saved one. Whether
the write shares the saved tensor's version counter (views, slices, ``.detach()``) is read off the
counter itself once the op has returned (the counter is bumped above the dispatch mode): then
backward will raise. A write that does not move the saved tensor's counter but moves its own and
overlaps the saved bytes went through an alias autograd does not track (``.data``): backward will
silently use the new values, and the finding is marked ``silent``.

Identity pack/unpack hooks switch off autograd's own version check (exp5b in the design's
reference experiments), so the unpack hook re-checks the version and raises the same
RuntimeError autograd would, with both source lines added.
"""

from __future__ import annotations

import functools
import linecache
import os
import re
import site
import sys
import sysconfig
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Self

import torch
from torch.autograd.graph import increment_version, saved_tensors_hooks
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["InplaceLocator", "LocatorFinding", "SourceLine", "locate"]

AUTOGRAD_MESSAGE = "one of the variables needed for gradient computation has been modified by an inplace operation"


# ---------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SourceLine:
    """A line of the user's code: ``path`` is relative to the root it is under (absolute when no
    root matched), ``code`` the stripped source text ('' if unavailable)."""

    path: str
    line: int
    code: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "code": self.code}


@dataclass(frozen=True)
class LocatorFinding:
    """An in-place write into a tensor autograd saved for backward."""

    op: str  # the writing aten op, e.g. "div_.Tensor", "relu_.default", "index_put_.default", "copy_.default"
    write: SourceLine
    saved_by: SourceLine | None  # None: no frame of the user's code when it was saved
    saver: str | None  # the autograd node that saved the tensor, e.g. "VarBackward0"
    saver_op: str | None = None  # the aten op that saved it, e.g. "var.correction"
    silent: bool = False  # written through an alias autograd does not track (.data): no error, wrong gradient
    shape: tuple[int, ...] | None = None  # of the saved tensor that was overwritten
    dtype: str | None = None  # e.g. "float32"

    def message(self) -> str:
        write = f"`{self.write.code or self.op}` ({self.write.path}:{self.write.line})"
        if self.saved_by is not None:
            saved = f"`{_saving_call(self)}` ({self.saved_by.path}:{self.saved_by.line})"
            node = f" for {self.saver}" if self.saver else ""
        else:
            saved, node = f"{self.saver or 'an autograd node'} (no frame of user code)", ""
        if self.silent:
            effect = (
                "it is written through an alias autograd does not track (`.data`), so backward will "
                "not raise but silently compute a wrong gradient"
            )
        else:
            effect = f"backward will raise '{AUTOGRAD_MESSAGE}'"
        return f"{write} overwrites a tensor saved by {saved}{node}: {effect}"

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "write": self.write.to_json(),
            "saved_by": self.saved_by.to_json() if self.saved_by is not None else None,
            "saver": self.saver,
            "saver_op": self.saver_op,
            "silent": self.silent,
            "message": self.message(),
        }


_CALL = re.compile(r"([A-Za-z_][\w.]*)\s*\(")


def _stem(name: str) -> str:
    """'var.correction' -> 'var', '_softmax' -> 'softmax', 'SigmoidBackward0' -> 'sigmoid'."""
    name = name.split(".", 1)[0]
    name = re.sub(r"Backward\d*$", "", name)
    return name.replace("_", "").lower()


def _saving_call(finding: LocatorFinding) -> str:
    """The call on the saving line that did the saving, as ``torch.var(...)``; the whole line when
    no call there is named like the saving op (a module call such as ``self.act(h)``)."""
    assert finding.saved_by is not None
    code = finding.saved_by.code
    stems = {_stem(n) for n in (finding.saver_op, finding.saver) if n}
    calls = [(m.group(1), _stem(m.group(1).rsplit(".", 1)[-1])) for m in _CALL.finditer(code)]
    for name, called in calls:
        if called in stems:
            return f"{name}(...)"
    for name, called in calls:  # F.layer_norm saved by NativeLayerNormBackward0
        if len(called) >= 4 and any(stem.endswith(called) for stem in stems):
            return f"{name}(...)"
    for name, _ in calls:  # Square.apply(h) saved by SquareBackward
        if any(_stem(part) in stems for part in name.split(".")[:-1]):
            return f"{name}(...)"
    return code or (finding.saver or "?")


# ---------------------------------------------------------------------------------- source frames

_THIS_FILE = os.path.realpath(__file__)
_FUNCTION_APPLY_CODE = torch.autograd.function.Function.apply.__func__.__code__  # type: ignore[attr-defined]
_Where = tuple[str, str, int]  # (display path, filename for linecache, line)


@functools.lru_cache(maxsize=1)
def _library_dirs() -> tuple[str, ...]:
    """Directories whose frames are never the user's: torch, the stdlib, every site-packages."""
    dirs = {os.path.dirname(os.path.realpath(torch.__file__))}
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(key):
            dirs.add(os.path.realpath(paths[key]))
    try:
        dirs.update(os.path.realpath(p) for p in site.getsitepackages())
        dirs.add(os.path.realpath(site.getusersitepackages()))
    except AttributeError:  # a virtualenv's old site.py lacks them
        pass
    return tuple(sorted(d.rstrip(os.sep) + os.sep for d in dirs))


_FileKinds = dict[str, tuple[str, bool] | None]  # filename -> (shown as, under a root) or None: a library's
_MAPPERS: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...], _FileKinds]] = {}


class _FrameMapper:
    """Maps a stack to the user's innermost frame; each file is classified once and cached, so a
    walk costs one dict lookup per frame."""

    def __init__(self, roots: Iterable[str | Path]):
        given = tuple(sorted({os.fspath(r) for r in roots}))
        cached = _MAPPERS.get(given)
        if cached is not None:  # classifying a file costs a realpath: share it between locators
            self._roots, self._libraries, self._cache = cached
            return
        real = {os.path.realpath(r).rstrip(os.sep) for r in given}
        self._roots = tuple(sorted(real, key=len, reverse=True))  # the innermost root wins
        self._libraries = _library_dirs()
        self._cache: _FileKinds = {}
        _MAPPERS[given] = (self._roots, self._libraries, self._cache)

    def _classify(self, filename: str) -> tuple[str, bool] | None:
        """(how the file is shown, whether it is under a root), or None for library frames."""
        if filename.startswith("<"):  # exec'd text has no file; frozen modules are the stdlib's
            return None if filename.startswith("<frozen") else (filename, not self._roots)
        real = os.path.realpath(filename)
        if real == _THIS_FILE or any(real.startswith(lib) for lib in self._libraries):
            return None
        for root in self._roots:
            if real.startswith(root + os.sep):
                return os.path.relpath(real, root), True
        return real, not self._roots

    def innermost(self, frame: FrameType | None) -> _Where | None:
        """The innermost frame under a root; failing that the innermost non-library frame
        (absolute path); None when every frame is torch's, the stdlib's or site-packages'."""
        cache = self._cache
        fallback: _Where | None = None
        while frame is not None:
            filename = frame.f_code.co_filename
            try:
                kind = cache[filename]
            except KeyError:
                kind = cache[filename] = self._classify(filename)
            if kind is not None:
                if kind[1]:
                    return kind[0], filename, frame.f_lineno
                if fallback is None:
                    fallback = kind[0], filename, frame.f_lineno
            frame = frame.f_back
        return fallback


def _source_line(where: _Where) -> SourceLine:
    shown, filename, line = where
    linecache.checkcache(filename)  # the file may have been edited since it was first read
    return SourceLine(shown, line, linecache.getline(filename, line).strip())


# ---------------------------------------------------------------------------------- write schema

_WriteTargets = tuple[tuple[int, str], ...]
_WRITE_TARGETS: dict[Any, _WriteTargets] = {}


def _write_targets(func: Any) -> _WriteTargets:
    """(position, name) of every argument the op writes, from its schema (``Tensor(a!)``,
    ``out=``, ``Tensor(a!)[]``); cached per overload."""
    try:
        return _WRITE_TARGETS[func]
    except KeyError:
        pass
    schema = getattr(func, "_schema", None)
    targets: _WriteTargets = ()
    if schema is not None:
        targets = tuple(
            (i, a.name) for i, a in enumerate(schema.arguments) if a.alias_info is not None and a.alias_info.is_write
        )
    _WRITE_TARGETS[func] = targets
    return targets


def _written_tensors(targets: _WriteTargets, args: tuple, kwargs: dict) -> Iterable[torch.Tensor]:
    for index, name in targets:
        value = args[index] if index < len(args) else kwargs.get(name)
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (v for v in value if isinstance(v, torch.Tensor))


def _byte_span(t: torch.Tensor) -> tuple[int, int] | None:
    """[first, last) byte of the storage ``t`` can touch (a bounding range; None when empty)."""
    if t.numel() == 0:
        return None
    low = high = t.storage_offset()
    for size, stride in zip(t.shape, t.stride()):
        reach = (size - 1) * stride
        if reach < 0:
            low += reach
        else:
            high += reach
    itemsize = t.element_size()
    return low * itemsize, (high + 1) * itemsize


def _overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    sa, sb = _byte_span(a), _byte_span(b)
    return sa is not None and sb is not None and sa[0] < sb[1] and sb[0] < sa[1]


# ------------------------------------------------------------------------------- saved records


class _Saved:
    """What the pack hook returns, so autograd stores it in the saving node: the tensor (detached
    when it has a graph, because a saved *output* referring to its own node would form a reference
    cycle through C++ that Python cannot collect), its version at save time, and where it was
    saved. It lives exactly as long as the node needs it, which a weakref on it observes."""

    __slots__ = ("__weakref__", "overwrite", "saver", "saver_op", "tensor", "version", "where")

    def __init__(self, tensor: torch.Tensor, version: int, where: _Where | None):
        self.tensor = tensor
        self.version = version
        self.where = where
        self.saver: str | None = None
        self.saver_op: str | None = None
        self.overwrite: tuple[str, _Where | None] | None = None  # the first write that moved its version


class _SavedRef(weakref.ref):
    """Index entry: a weakref to a :class:`_Saved` that removes itself once the node releases it."""

    __slots__ = ("index", "key")

    def __new__(cls, saved: _Saved, key: int, index: dict[int, list[_SavedRef]]) -> Self:
        self = super().__new__(cls, saved, _forget)
        self.key = key
        self.index = index
        return self

    def __init__(self, saved: _Saved, key: int, index: dict[int, list[_SavedRef]]):
        super().__init__(saved, _forget)


def _forget(ref: _SavedRef) -> None:
    entries = ref.index.get(ref.key)
    if entries is not None:
        try:
            entries.remove(ref)
        except ValueError:
            pass
        if not entries:
            ref.index.pop(ref.key, None)


_RESULT_SLOTS: dict[type, int] = {}


def _saved_result_count(node: Any) -> int:
    """How many of its own outputs a node type saves (``_raw_saved_result``, ``result1``, ...)."""
    kind = type(node)
    try:
        return _RESULT_SLOTS[kind]
    except KeyError:
        count = sum(1 for name in dir(kind) if name.startswith("_raw_saved_result"))
        _RESULT_SLOTS[kind] = count
        return count


def _outputs(out: Any) -> tuple[Any, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _first_node(out: Any) -> Any:
    for t in _outputs(out):
        if isinstance(t, torch.Tensor) and t.grad_fn is not None:
            return t.grad_fn
    return None


@dataclass
class _Hit:
    """A write about to land in a saved tensor; confirmed once the op has returned and bumped the
    version counters (that happens above the dispatch mode)."""

    saved: _SavedRef
    saved_version: int
    written: torch.Tensor
    written_version: int
    op: str
    where: _Where | None


# ------------------------------------------------------------------------------------ the locator


class _WriteWatch(TorchDispatchMode):
    """Sees every aten op; the work is the locator's, this only routes to it."""

    def __init__(self, locator: InplaceLocator):
        super().__init__()
        self._locator = locator

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return self._locator._on_op(func, args, kwargs or {})


class InplaceLocator:
    """Context manager reporting every in-place write into a tensor saved for backward.

    ``roots``: the user's directories; a source line is the innermost frame inside one of them
    (outside torch, site-packages and the stdlib). With no roots: the innermost frame outside
    torch, site-packages and the stdlib, shown as an absolute path.
    """

    def __init__(self, roots: Sequence[str | Path] = ()):
        self._frames = _FrameMapper(roots)
        self._index: dict[int, list[_SavedRef]] = {}  # storage data_ptr -> saved tensors there
        self._found: dict[tuple[_Where | None, _Where | None], LocatorFinding] = {}  # by (write, saved_by)
        self._pending: list[_Saved] = []  # input saves; the next dispatched op is the saver
        self._claimed: list[_Saved] = []  # claimed by the last op; named from its output's grad_fn
        self._hits: list[_Hit] = []  # writes into saved tensors, confirmed once the op returned
        self._unbumped: list[tuple[torch.Tensor, int]] = []  # see _expect_bumps
        self._unsettled = False  # any of _claimed, _hits, _unbumped is non-empty
        self._last_out: Any = None
        self._last_op: str | None = None
        self._last_node: Any = None  # the last op's autograd node, once looked up
        self._result_quota: int | None = None  # output saves that node still makes
        self._muted = False
        self._active: list[tuple[saved_tensors_hooks, _WriteWatch]] = []
        self._counts: dict[tuple[_Where | None, _Where | None], int] = {}  # writes per (write, saved_by)
        # Called with each new finding (a new pair of lines) as soon as it is confirmed; a whole-run
        # recorder uses it to save its report before the process may be stopped.
        self.on_new_finding: Callable[[LocatorFinding], None] | None = None

    # -- public ----------------------------------------------------------------------------------

    @property
    def findings(self) -> list[LocatorFinding]:
        """Every write into a saved tensor so far, deduplicated by (write line, saving line)."""
        self._settle()
        return list(self._found.values())

    def counted_findings(self) -> list[tuple[LocatorFinding, int]]:
        """Every finding with how many writes landed on that pair of lines (a loop counts each time)."""
        self._settle()
        return [(finding, self._counts.get(key, 1)) for key, finding in self._found.items()]

    def user_line(self, frame: FrameType | None) -> SourceLine | None:
        """The innermost line of the user's code on ``frame``'s stack (as findings show lines)."""
        where = self._frames.innermost(frame)
        return _source_line(where) if where is not None else None

    def __enter__(self) -> Self:
        hooks = saved_tensors_hooks(self._pack, self._unpack)
        mode = _WriteWatch(self)
        hooks.__enter__()
        try:
            mode.__enter__()
        except BaseException:
            hooks.__exit__(None, None, None)
            raise
        self._active.append((hooks, mode))
        return self

    def __exit__(self, *exc: object) -> None:
        hooks, mode = self._active.pop()
        try:
            self._settle()
        finally:
            mode.__exit__(*exc)
            hooks.__exit__(*exc)
            self._last_out = self._last_node = None
            self._result_quota = None
            self._pending.clear()

    # -- pack / unpack ---------------------------------------------------------------------------

    def _pack(self, t: torch.Tensor) -> _Saved:
        if self._unsettled:
            self._settle()
        caller = sys._getframe(1)
        saved = _Saved(t, t._version, self._frames.innermost(caller))
        if caller.f_code is _FUNCTION_APPLY_CODE:  # ctx.save_for_backward in an autograd.Function
            cls = caller.f_locals.get("cls")
            saved.saver_op = getattr(cls, "__name__", None)
            saved.saver = f"{saved.saver_op}Backward" if saved.saver_op else None
        elif self._is_output_save(t):
            saved.saver = self._last_node.name()
            saved.saver_op = self._last_op
        else:
            self._pending.append(saved)
        if t.grad_fn is not None:
            self._muted = True
            try:
                saved.tensor = t.detach()
            finally:
                self._muted = False
        try:
            key = t.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):  # sparse, nested, storage-less tensors
            return saved
        if key:
            self._index.setdefault(key, []).append(_SavedRef(saved, key, self._index))
        return saved

    def _is_output_save(self, t: torch.Tensor) -> bool:
        """Output saves of op K come right after K returns, before the input saves of op K+1; a
        pack of one of K's outputs is K's own only while K's node type has result slots left."""
        if self._last_out is None:
            return False
        if self._result_quota is None:
            self._last_node = _first_node(self._last_out)
            self._result_quota = _saved_result_count(self._last_node) if self._last_node is not None else 0
        if self._result_quota <= 0 or not any(t is o for o in _outputs(self._last_out)):
            return False
        self._result_quota -= 1
        return True

    def _unpack(self, saved: _Saved) -> torch.Tensor:
        t = saved.tensor
        if t._version != saved.version:
            raise RuntimeError(self._version_error(saved, t._version))
        return t

    def _version_error(self, saved: _Saved, now: int) -> str:
        if saved.overwrite is None:
            self._settle()
        t = saved.tensor
        text = (
            f"{AUTOGRAD_MESSAGE}: [{t.type()} {list(t.shape)}], saved by {saved.saver or 'an autograd node'}"
            f"{_describe(saved.where)}, is at version {now}; expected version {saved.version} instead."
        )
        if saved.overwrite is not None:
            op, where = saved.overwrite
            text += f" It was overwritten in place by {op}{_describe(where)}."
        else:
            text += " The in-place write happened outside the in-place locator."
        return f"{text} [in-place locator]"

    # -- dispatch --------------------------------------------------------------------------------

    def _on_op(self, func: Any, args: tuple, kwargs: dict) -> Any:
        if self._muted:
            return func(*args, **kwargs)
        if self._unsettled:
            self._settle()
        name = func.__name__
        if self._pending:
            for saved in self._pending:
                saved.saver_op = name
            self._claimed.extend(self._pending)
            self._pending.clear()
            self._unsettled = True
        targets = _WRITE_TARGETS.get(func)
        if targets is None:
            targets = _write_targets(func)
        if targets:
            if self._index:
                self._match(name, targets, args, kwargs)
            if name.startswith("_foreach_"):
                self._expect_bumps(targets, args, kwargs)
        out = func(*args, **kwargs)
        self._last_out = out
        self._last_op = name
        self._last_node = None
        self._result_quota = None
        return out

    def _match(self, op: str, targets: _WriteTargets, args: tuple, kwargs: dict) -> None:
        where: _Where | None = None
        located = False
        for written in _written_tensors(targets, args, kwargs):
            try:
                key = written.untyped_storage().data_ptr()
            except (RuntimeError, NotImplementedError):
                continue
            for ref in self._index.get(key, ()):
                saved = ref()
                if saved is None or saved.tensor._version != saved.version:
                    continue  # released, or already overwritten (the earlier write is the culprit)
                if saved.tensor.device != written.device:
                    continue
                if not located:
                    where, located = self._frames.innermost(sys._getframe(1)), True
                self._hits.append(_Hit(ref, saved.version, written, written._version, op, where))
                self._unsettled = True

    def _expect_bumps(self, targets: _WriteTargets, args: tuple, kwargs: dict) -> None:
        """In-place ``_foreach_*`` ops bump the written tensors' versions without a dispatch mode
        and do not with one (torch 2.13, measured): remember them, so that :meth:`_settle` can
        bump what the op left alone and the program keeps autograd's semantics."""
        for written in _written_tensors(targets, args, kwargs):
            if not written.is_inference():
                self._unbumped.append((written, written._version))
                self._unsettled = True

    def _settle(self) -> None:
        """Name the savers claimed by the last op and confirm the last op's hits: both need the
        autograd layer above the dispatch mode to have finished with that op."""
        self._unsettled = False
        if self._unbumped:
            missed = [t for t, version in self._unbumped if t._version == version]
            self._unbumped = []
            if missed:
                increment_version(missed)
        if self._claimed:
            node = _first_node(self._last_out)
            if node is not None:
                name = node.name()
                for saved in self._claimed:
                    saved.saver = name
            else:  # an op inside the autograd kernel (a clone of self): the real saver comes next
                self._pending[:0] = self._claimed
            self._claimed = []
        if self._hits:
            hits, self._hits = self._hits, []
            for hit in hits:
                self._confirm(hit)

    def _confirm(self, hit: _Hit) -> None:
        saved = hit.saved()
        if saved is None:
            return  # the saving node was released by the write itself
        if saved.tensor._version != hit.saved_version:
            silent = False  # the write moved the saved tensor's own version counter
        elif hit.written._version != hit.written_version and _overlap(saved.tensor, hit.written):
            silent = True  # a data write autograd cannot see: a .data alias
        else:
            return
        if saved.overwrite is None:
            saved.overwrite = (hit.op, hit.where)
        key = (hit.where, saved.where)
        self._counts[key] = self._counts.get(key, 0) + 1
        if key in self._found:  # the same two lines again (a loop): source text is read once
            return
        write = _source_line(hit.where) if hit.where is not None else SourceLine("<unknown>", 0, "")
        saved_by = _source_line(saved.where) if saved.where is not None else None
        t = saved.tensor
        finding = LocatorFinding(
            hit.op,
            write,
            saved_by,
            saved.saver,
            saved.saver_op,
            silent,
            tuple(t.shape),
            str(t.dtype).removeprefix("torch."),
        )
        self._found[key] = finding
        if self.on_new_finding is not None:
            self.on_new_finding(finding)


def _describe(where: _Where | None) -> str:
    if where is None:
        return ""
    line = _source_line(where)
    code = f" `{line.code}`" if line.code else ""
    return f" at {line.path}:{line.line}{code}"


def locate(
    fn: Callable[..., Any], *args: Any, roots: Sequence[str | Path] = (), **kwargs: Any
) -> tuple[Any, list[LocatorFinding]]:
    """Run ``fn(*args, **kwargs)`` under an :class:`InplaceLocator`; return its result and findings."""
    with InplaceLocator(roots) as locator:
        result = fn(*args, **kwargs)
    return result, locator.findings
