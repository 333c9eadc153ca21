"""The ``__init__``-derived family's codes: what each finds, why it matters, the fix, and
examples (the examples are the documentation that ``codemod rules`` prints and tests that run)."""

from __future__ import annotations

from ..base import Example, RuleCode

FAMILY = "init-derived"
_BUG = (
    "the graph is built once: the second backward raises 'Trying to backward through the graph a "
    "second time', or (ops that save nothing, retain_graph=True) the value never changes while the "
    "Parameter trains; deepcopy fails and .to()/.double() leave it behind"
)
CODES = tuple(
    RuleCode(code, name, summary, why, fix, examples, FAMILY)
    for code, name, summary, why, fix, examples in (
        (
            "ID101",
            "init-derived-attribute",
            "a tensor computed from Parameters in `__init__`",
            f"`self.x = f(self.param)` in `__init__` computes `x` once: {_BUG}. A `@property` that "
            "recomputes it keeps the state_dict keys, loads old checkpoints strictly, and works with "
            "deepcopy, pickle, `.to()`, `jit.script` and `torch.compile`.",
            "rewritten",
            (
                Example(
                    "class Gate(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                    "        self.x_raw = nn.Parameter(torch.zeros(3))\n        self.x = torch.sigmoid(self.x_raw)\n\n"
                    "    def forward(self, inp):\n        return inp * self.x\n",
                    "class Gate(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                    "        self.x_raw = nn.Parameter(torch.zeros(3))\n\n    @property\n    def x(self):\n"
                    "        return torch.sigmoid(self.x_raw)\n\n    def forward(self, inp):\n        return inp * self.x\n",
                ),
            ),
        ),
        (
            "ID102",
            "init-derived-buffer",
            "a buffer registered from a tensor computed from Parameters",
            f"`self.register_buffer('w', f(self.param))` stores a derived value: {_BUG}, and the stale value "
            "goes into every checkpoint. A property would drop `w` from the state_dict, so this is reported.",
            "reported",
            (
                Example(
                    "class Scale(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                    "        self.log_w = nn.Parameter(torch.zeros(3))\n        self.register_buffer('w', torch.exp(self.log_w))\n",
                    None,
                ),
            ),
        ),
        (
            "ID201",
            "init-derived-uses-locals",
            "a Parameter-derived tensor whose expression uses `__init__` locals or arguments",
            "A property cannot see `__init__`'s locals and arguments. Store them on `self` first (or inline "
            "constants), then the assignment can become a property.",
            "reported",
            (
                Example(
                    "class Mixture(nn.Module):\n    def __init__(self, temperature):\n        super().__init__()\n"
                    "        self.logits = nn.Parameter(torch.zeros(3))\n        self.p = torch.softmax(self.logits / temperature, -1)\n",
                    None,
                ),
            ),
        ),
        (
            "ID202",
            "init-derived-reassigned",
            "a Parameter-derived tensor that is written again (in another method, or twice in `__init__`)",
            "The attribute is assigned, updated (`self.x *= 0.5`) or deleted again, often as a half-fix that "
            "recomputes it in `forward`; a property would make that write fail. Keep one of the two.",
            "reported",
            (
                Example(
                    "class Gate(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                    "        self.raw = nn.Parameter(torch.zeros(3))\n        self.g = torch.sigmoid(self.raw)\n\n"
                    "    def forward(self, x):\n        self.g = torch.sigmoid(self.raw)\n        return x * self.g\n",
                    None,
                ),
            ),
        ),
        (
            "ID203",
            "init-derived-name-taken",
            "a Parameter-derived tensor whose name the class or a subclass already defines",
            "A property of that name would clash with the existing definition (a method, a class attribute, "
            "or a subclass that defines or assigns the name).",
            "reported",
            (
                Example(
                    "class Gate(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                    "        self.raw = nn.Parameter(torch.zeros(3))\n        self.g = torch.sigmoid(self.raw)\n\n\n"
                    "class Fixed(Gate):\n    def __init__(self):\n        super().__init__()\n        self.g = torch.ones(3)\n",
                    None,
                ),
            ),
        ),
        (
            "ID204",
            "init-parameter-unregistered",
            "a Parameter moved with `.to()`/`.cuda()`, cast with `.half()`/`.double()`, or created inside an "
            "expression in `__init__`: never registered",
            "`nn.Parameter(t).to(device)` or `self.w.cuda()` returns a plain tensor when it moves or casts: assigned to `self.x` it is "
            "not registered, so it is never trained, not saved, and not moved by `model.to()`. The same holds for "
            "`torch.exp(nn.Parameter(t))`: the Parameter inside is anonymous. Create the Parameter from a tensor "
            "already on the device (or register it under its own name and derive the value in a property).",
            "reported",
            (
                Example(
                    "class OnDevice(nn.Module):\n    def __init__(self, device):\n        super().__init__()\n"
                    "        self.w = nn.Parameter(torch.zeros(3)).to(device)\n",
                    None,
                ),
            ),
        ),
        (
            "ID205",
            "init-derived-conditional",
            "a Parameter-derived tensor assigned inside a branch or loop of `__init__`",
            "The attribute exists only when the branch runs; a property would always exist. Rewrite by hand.",
            "reported",
            (
                Example(
                    "class Gate(nn.Module):\n    def __init__(self, gated):\n        super().__init__()\n"
                    "        self.raw = nn.Parameter(torch.zeros(3))\n        if gated:\n"
                    "            self.g = torch.sigmoid(self.raw)\n",
                    None,
                ),
            ),
        ),
        (
            "ID206",
            "init-derived-not-recomputable",
            "a Parameter-derived value that a property could not recompute faithfully",
            "The expression draws random numbers, writes a tensor in place, or builds a container, a module or "
            "another object: a property would draw, write or build anew on every access, and changes made to "
            "the value would be lost. Compute the random or stateful part once (a buffer, a submodule) and "
            "derive the rest in `forward`.",
            "reported",
            (
                Example(
                    "class Projection(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                    "        self.scale = nn.Parameter(torch.ones(1))\n        self.proj = torch.randn(3, 3) * self.scale\n",
                    None,
                ),
            ),
        ),
    )
)
