"""Facts about the whole run that one file cannot show: attributes written from other files.

Turning ``self.alpha = self.log_alpha.exp()`` into a property is wrong when a trainer elsewhere
does ``agent.alpha = ...`` or a subclass in another file assigns ``self.alpha``: the property has
no setter. Each file is analysed alone (in a worker process), so before the run a cheap text scan
of every file collects those stores. It over-approximates on purpose (a name, not an object), so it
can only turn a rewrite into a report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

# ``obj.name = ``, ``obj.attr.name += `` (not ``==``, ``<=``, ``>=``, ``!=``), receiver captured.
_STORE = re.compile(
    rb"(?<![\w.])([A-Za-z_]\w*(?:\s*\.\s*[A-Za-z_]\w*)*)\s*\.\s*([A-Za-z_]\w*)\s*(?:[-+*/%@&|^]|//|\*\*|<<|>>)?=(?!=)"
)
_SETATTR = re.compile(rb"\bsetattr\(\s*([A-Za-z_][\w.]*)\s*,\s*['\"]([A-Za-z_]\w*)['\"]")
_CLASS = re.compile(rb"^[ \t]*class\s+([A-Za-z_]\w*)\s*(?:\(([^)]*)\))?\s*:", re.M)


@dataclass
class ProjectFacts:
    # attribute name -> "path:line" of a store through something other than ``self``
    foreign_stores: dict[str, str] = field(default_factory=dict)
    # class name -> {attribute -> "path:line"}: ``self.<attribute>`` stored in a file that defines a
    # subclass of that class (and not the class itself)
    subclass_stores: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def scan(cls, files: Iterable[tuple[str, bytes]]) -> "ProjectFacts":
        facts = cls()
        for display, data in files:
            facts.add(display, data)
        return facts

    def add(self, display: str, data: bytes) -> None:
        self_stores: dict[str, int] = {}
        for match in _STORE.finditer(data):
            receiver = re.sub(rb"\s+", b"", match.group(1))
            name = match.group(2).decode()
            if receiver in (b"self", b"cls"):
                self_stores.setdefault(name, match.start())
            elif name not in self.foreign_stores:
                self.foreign_stores[name] = f"{display}:{_line(data, match.start())}"
        for match in _SETATTR.finditer(data):
            name = match.group(2).decode()
            if match.group(1) in (b"self", b"cls"):
                self_stores.setdefault(name, match.start())
            elif name not in self.foreign_stores:
                self.foreign_stores[name] = f"{display}:{_line(data, match.start())}"
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
        for base in bases - defined:
            stores = self.subclass_stores.setdefault(base, {})
            for name, offset in self_stores.items():
                stores.setdefault(name, f"{display}:{_line(data, offset)}")


def _line(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1
