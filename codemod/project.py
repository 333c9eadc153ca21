"""Facts about the whole run that one file cannot show: attributes written from other files.

Turning ``self.alpha = self.log_alpha.exp()`` into a property is wrong when a trainer elsewhere
does ``agent.alpha = ...`` or a subclass in another file assigns ``self.alpha``: the property has
no setter. Each file is analysed alone (in a worker process), so before the run a cheap text scan
of every file collects those stores. It over-approximates on purpose (a name, not an object), so it
can only turn a rewrite into a report.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Iterable

# ``.name = ``, ``.name += `` (not ``==``, ``<=``, ``>=``, ``!=``); the receiver is read backwards
# from the dot (a pattern that captured it directly is seven times slower).
_STORE = re.compile(rb"\.([A-Za-z_]\w*)[ \t]*(?:[-+*/%@&|^]|//|\*\*|<<|>>)?=(?!=)")
_IDENT = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
_SETATTR = re.compile(rb"\bsetattr\(\s*([A-Za-z_][\w.]*)\s*,\s*['\"]([A-Za-z_]\w*)['\"]")
_CLASS = re.compile(rb"^[ \t]*class\s+([A-Za-z_]\w*)\s*(?:\(([^)]*)\))?\s*:", re.M)


@dataclass
class ProjectFacts:
    # attribute name -> "path:line" of a store through something other than ``self``
    foreign_stores: dict[str, str] = field(default_factory=dict)
    # class name -> the ``self.*`` stores ({attribute: "path:line"}) of each file that defines a
    # subclass of that class (and not the class itself)
    subclass_files: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    @classmethod
    def scan(cls, files: Iterable[tuple[str, bytes]]) -> "ProjectFacts":
        facts = cls()
        for display, data in files:
            facts.add(display, data)
        return facts

    def subclass_store(self, cls_name: str, attr: str) -> str | None:
        """Where a subclass of ``cls_name`` in another file stores ``self.<attr>``, if anywhere."""
        for stores in self.subclass_files.get(cls_name, ()):
            if attr in stores:
                return stores[attr]
        return None

    def add(self, display: str, data: bytes) -> None:
        lines = _Lines(data)
        self_stores: dict[str, int] = {}
        for match in _STORE.finditer(data):
            receiver = _receiver(data, match.start())
            if receiver is None:
                continue
            name = match.group(1).decode()
            if receiver in (b"self", b"cls"):
                self_stores.setdefault(name, match.start())
            elif name not in self.foreign_stores:
                self.foreign_stores[name] = f"{display}:{lines.line(match.start())}"
        for match in _SETATTR.finditer(data):
            name = match.group(2).decode()
            if match.group(1) in (b"self", b"cls"):
                self_stores.setdefault(name, match.start())
            elif name not in self.foreign_stores:
                self.foreign_stores[name] = f"{display}:{lines.line(match.start())}"
        if not self_stores:
            return
        defined = set()
        bases = set()
        for match in _CLASS.finditer(data):
            defined.add(match.group(1).decode())
            for base in (match.group(2) or b"").split(b","):
                base = base.strip().split(b"[")[0].rsplit(b".", 1)[-1]
                if base and b"=" not in base:
                    bases.add(base.decode())
        subclassed = bases - defined
        if subclassed:
            stores = {name: f"{display}:{lines.line(offset)}" for name, offset in self_stores.items()}
            for base in subclassed:
                self.subclass_files.setdefault(base, []).append(stores)


class _Lines:
    """Offset -> line number, with the newline index built on first use."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.starts: list[int] | None = None

    def line(self, offset: int) -> int:
        if self.starts is None:
            self.starts = [m.start() for m in re.finditer(b"\n", self.data)]
        return bisect.bisect_right(self.starts, offset - 1) + 1


def _receiver(data: bytes, dot: int) -> bytes | None:
    """The dotted name ending just before ``data[dot]`` (``self``, ``self.agent``); ``b""`` for a
    subscript or call (``x[0].alpha``, ``f().alpha``); None where no attribute is stored (an
    ellipsis or a sentence in a docstring: ``...  patch_length=12``)."""
    start = dot
    while start > 0 and data[start - 1] in _IDENT:
        start -= 1
    receiver = data[start:dot]
    if not receiver:
        return b"" if dot > 0 and data[dot - 1] in b")]" else None
    if receiver.endswith(b".") or receiver[:1].isdigit() or receiver.startswith(b"."):
        return None
    return receiver
