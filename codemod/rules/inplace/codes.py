"""The in-place family's codes: what each finds, why it matters, the fix, and examples (the
examples are the documentation that ``codemod rules`` prints and tests that run)."""

from __future__ import annotations

from ..base import Example, RuleCode

FAMILY = "inplace"
CODES = (
    RuleCode(
        "IP101",
        "inplace-augassign",
        "`x op= y` overwrites a tensor that autograd saved for backward",
        "An augmented assignment on a tensor is an in-place op: it bumps the tensor's version "
        "counter. If an earlier op saved that tensor for its backward (mul/div/matmul/var/pow save "
        "their inputs; sigmoid/tanh/softmax/exp/sqrt/relu save their output), backward raises "
        "'modified by an inplace operation'. It often passes while the tensor comes straight from "
        "the data loader and fails once a trainable layer sits in front of it.",
        "rewritten",
        (
            Example(
                "def norm(self, x):\n    x = x - x.mean(1, keepdim=True).detach()\n"
                "    stdev = torch.sqrt(torch.var(x, dim=1, keepdim=True, unbiased=False) + 1e-5)\n"
                "    x /= stdev\n    return x\n",
                "def norm(self, x):\n    x = x - x.mean(1, keepdim=True).detach()\n"
                "    stdev = torch.sqrt(torch.var(x, dim=1, keepdim=True, unbiased=False) + 1e-5)\n"
                "    x = x / stdev\n    return x\n",
            ),
            Example(
                "def f(a, b):\n    h = torch.sigmoid(a)\n    h *= b + 1\n    return h\n",
                "def f(a, b):\n    h = torch.sigmoid(a)\n    h = h * (b + 1)\n    return h\n",
            ),
        ),
    ),
    RuleCode(
        "IP102",
        "inplace-method",
        "`x.op_(...)` overwrites a tensor that autograd saved for backward",
        "In-place tensor methods (`add_`, `div_`, `clamp_`, `masked_fill_`, `zero_`, `copy_` ...) "
        "write the tensor's memory. When an earlier op saved that tensor for backward, backward "
        "fails. The out-of-place method computes the same values into a new tensor. Methods with "
        "no out-of-place twin (`zero_`, `fill_`, `copy_`) are fixed by cloning first, which keeps "
        "the tensor connected to the graph exactly as before.",
        "rewritten",
        (
            Example(
                "def f(a, mask):\n    attn = torch.softmax(a, -1)\n    attn.masked_fill_(mask, 0.0)\n    return attn\n",
                "def f(a, mask):\n    attn = torch.softmax(a, -1)\n    attn = attn.masked_fill(mask, 0.0)\n    return attn\n",
            ),
            Example(
                "def f(a):\n    x = torch.tanh(a)\n    y = x.clamp_(-0.5, 0.5)\n    return x + y\n",
                "def f(a):\n    x = torch.tanh(a)\n    x = x.clamp(-0.5, 0.5)\n    y = x\n    return x + y\n",
            ),
        ),
    ),
    RuleCode(
        "IP103",
        "inplace-index",
        "`x[idx] = v` writes into a tensor that autograd saved for backward",
        "Index assignment is an in-place write (`copy_`/`fill_`/`index_put_`) into the tensor. "
        "If the tensor was saved for backward, backward fails. Cloning first (`x = x.clone()`) "
        "gives the write its own storage; values and gradients stay the same. When the right-hand side "
        "reads `x` too (`x[:, :d] = conv(x[:, :d])`), the write goes into a fresh copy instead "
        "(`x_new = x.clone(); x_new[...] = ...; x = x_new`), so what the right-hand side saved stays intact.",
        "rewritten",
        (
            Example(
                "def f(a):\n    att = torch.softmax(a, -1)\n    att[:, 0] = 0\n    return att\n",
                "def f(a):\n    att = torch.softmax(a, -1)\n    att = att.clone()\n    att[:, 0] = 0\n    return att\n",
            ),
            Example(
                "def f(a, w):\n    x = torch.tanh(a)\n    x[:, :2] = x[:, :2] @ w\n    return x\n",
                "def f(a, w):\n    x = torch.tanh(a)\n    x_new = x.clone()\n    x_new[:, :2] = x[:, :2] @ w\n    x = x_new\n    return x\n",
            ),
        ),
    ),
    RuleCode(
        "IP104",
        "inplace-activation",
        "`F.act(x, inplace=True)` / `torch.act_(x)` overwrites a tensor that autograd saved",
        "An in-place activation overwrites its input. After conv, linear or batch norm that is fine "
        "(they save their input, and the activation's input is their output); after sigmoid, tanh, "
        "softmax, exp or another relu (which save their output) backward fails.",
        "rewritten",
        (
            Example(
                "def f(a):\n    h = torch.sigmoid(a)\n    return F.relu(h, inplace=True)\n",
                "def f(a):\n    h = torch.sigmoid(a)\n    return F.relu(h)\n",
            ),
            Example("def f(self, x):\n    return F.relu(self.bn(self.conv(x)), inplace=True)\n", None),
        ),
    ),
    RuleCode(
        "IP105",
        "inplace-module",
        "`nn.Act(inplace=True)` overwrites a tensor that autograd saved",
        "A module built with `inplace=True` overwrites its input on every call. When one of its "
        "inputs was saved for backward (it follows a sigmoid, tanh, softmax or relu) backward "
        "fails. The module is rebuilt without `inplace=True` when every call site allows it.",
        "rewritten",
        (
            Example(
                "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                "        self.act = nn.ReLU(inplace=True)\n\n    def forward(self, x):\n"
                "        return self.act(torch.sigmoid(x))\n",
                "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                "        self.act = nn.ReLU()\n\n    def forward(self, x):\n"
                "        return self.act(torch.sigmoid(x))\n",
            ),
        ),
    ),
    RuleCode(
        "IP106",
        "inplace-out",
        "`torch.op(..., out=x)` overwrites a tensor that autograd saved",
        "`out=` writes the result into an existing tensor. Besides breaking a saved tensor, ops "
        "with `out=` do not support autograd at all when an argument requires grad.",
        "rewritten",
        (
            Example(
                "def f(a, s):\n    x = torch.tanh(a)\n    torch.div(x, s, out=x)\n    return x\n",
                "def f(a, s):\n    x = torch.tanh(a)\n    x = torch.div(x, s)\n    return x\n",
            ),
        ),
    ),
    RuleCode(
        "IP201",
        "inplace-on-alias",
        "in-place write through an alias of a saved tensor; a rewrite would stop updating the alias (P2)",
        "The written tensor shares memory with another name (a view, a slice, `.detach()`, a plain "
        "`y = x`, an element of a container, or something stored elsewhere) that is read later. "
        "Rewriting the write out-of-place would stop updating that other name, which changes what "
        "the program computes, so the hazard is reported for a human to fix.",
        "reported",
        (Example("def f(a):\n    x = torch.exp(a)\n    y = x[:, :3]\n    y += 1\n    return x\n", None),),
    ),
    RuleCode(
        "IP202",
        "inplace-on-argument",
        "in-place write into a function argument that autograd saved (P3)",
        "The written tensor is an argument that was not rebound first, so the caller sees the "
        "change. A rewrite would silently stop updating the caller's tensor.",
        "reported",
        (Example("def norm(x):\n    s = x.var(1, keepdim=True)\n    x /= s\n    return x\n", None),),
    ),
    RuleCode(
        "IP203",
        "inplace-under-no-grad",
        "in-place write under no_grad into a tensor that autograd saved (P4)",
        "Code under `torch.no_grad()`, `inference_mode()` or `set_grad_enabled(False)` usually "
        "updates state on purpose (running statistics, EMA, optimizer steps). If it writes a tensor "
        "that an earlier op saved with grad enabled, backward still fails; it is reported, never "
        "rewritten.",
        "reported",
        (
            Example(
                "def f(a):\n    h = torch.sigmoid(a)\n    with torch.no_grad():\n        h.clamp_(0.1, 0.9)\n    return h\n",
                None,
            ),
        ),
    ),
    RuleCode(
        "IP204",
        "inplace-on-state",
        "in-place write into module state, a Parameter, a buffer, a global or `.grad` that autograd saved (P5)",
        "Module state must keep being updated in place (running statistics, EMA, buffers); a "
        "rewrite would only rebind a local name. When such a write hits a tensor that was saved "
        "for backward, the fix needs a human (often: use the state before the write, or `.clone()` "
        "it when reading).",
        "reported",
        (
            Example(
                "class Decay(nn.Module):\n    def forward(self, x):\n        h = torch.tanh(x)\n        y = h * self.scale\n"
                "        self.scale.mul_(0.99)\n        return y\n",
                None,
            ),
        ),
    ),
    RuleCode(
        "IP205",
        "inplace-through-data",
        "in-place write through `.data` into a tensor that autograd saved: silently wrong gradient (P5)",
        "`.data` shares memory with the tensor but not its version counter, so autograd cannot "
        "detect the write and backward computes a wrong gradient without an error.",
        "reported",
        (Example("def f(a):\n    y = torch.exp(a)\n    y.data.zero_()\n    return y\n", None),),
    ),
    RuleCode(
        "IP206",
        "inplace-unrewritable",
        "in-place write into a saved tensor that has no safe automatic rewrite",
        "The write is a random fill (`normal_`, `uniform_` ...), an init function, a comparison "
        "that keeps the tensor's dtype (`eq_`), part of a statement header, or could not be shown "
        "to act on a tensor (P1). It is reported with the saving op for a human to fix.",
        "reported",
        (Example("def f(a):\n    x = torch.sigmoid(a)\n    x.uniform_()\n    return x\n", None),),
    ),
)
for _c in CODES:
    object.__setattr__(_c, "family", FAMILY)
