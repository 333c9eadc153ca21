"""Generate ``torch_table.json``: what autograd saves, which ops alias, which methods are in-place.

Everything comes from the installed torch itself:

* ``derivatives.yaml`` (loaded with torchgen, the code that generates autograd) says, for every
  differentiable aten op, which tensors each input's gradient formula needs.  A tensor needed by
  some gradient formula is *saved for backward* whenever that input requires grad.
* ``native_functions.yaml`` says which ops return an alias of an argument (``Tensor(a) self ->
  Tensor(a)``: views, ``reshape``, ``contiguous``, ``to``, ``detach`` ...).
* ``torch.Tensor`` and ``torch`` say which in-place methods and functions have an out-of-place twin.

Run ``python -m codemod.analysis.generate_table`` after upgrading torch and commit the result;
``tests/test_torch_table.py`` fails when the committed table no longer matches the installed torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

TABLE_PATH = Path(__file__).with_name("torch_table.json")


def _is_tensor_type(type_str: str) -> bool:
    return "Tensor" in type_str and "ScalarType" not in type_str and "TensorOptions" not in type_str


def _saved_by_op() -> dict[str, list[dict]]:
    """Per aten op base name, one entry per overload: ``{"args": [...], "kw": [...], "needs": {...}}``.

    ``args`` are the positional arguments in order, ``kw`` the keyword-only ones (so a call can be
    matched to the overloads it may select); ``needs[input]`` lists what the gradient formula of
    ``input`` reads: argument names, and ``@out`` for the op's primary output. Whatever some
    input's formula reads is saved for backward whenever that input requires grad. Internal
    outputs (``layer_norm``'s mean and rstd, ``max``'s indices) are left out: user code cannot
    overwrite them. Sizes and dtypes that formulas read (``self.sym_sizes()``) are not tensors.
    """
    import torchgen
    from torchgen.packaged.autograd.load_derivatives import load_derivatives

    root = os.path.join(os.path.dirname(torchgen.__file__), "packaged")
    infos, _ = load_derivatives(
        f"{root}/autograd/derivatives.yaml",
        f"{root}/ATen/native/native_functions.yaml",
        f"{root}/ATen/native/tags.yaml",
    )
    ops: dict[str, list[dict]] = {}
    for per_key in infos.values():
        info = per_key.get("Default") or next(iter(per_key.values()))
        schema = info.func.func
        base = str(schema.name.name)
        if "backward" in base:
            continue
        tensor_args = {a.name for a in schema.arguments.flat_all if a.type.is_tensor_like()}
        primary = {"result", "result0"}
        if schema.returns and schema.returns[0].name:
            primary.add(schema.returns[0].name)
        if len(schema.returns) > 1:
            primary.discard("result")
        needs: dict[str, set[str]] = {}
        for deriv in info.derivatives:
            needed = set()
            for saved in list(deriv.saved_inputs) + list(deriv.saved_outputs):
                name = str(saved.nctype.name)
                if not _is_tensor_type(str(saved.nctype.type)):
                    continue
                if name in tensor_args:
                    needed.add(name)
                elif name in primary:
                    needed.add("@out")
            for var in deriv.var_names:
                needs.setdefault(var, set()).update(needed)
        ops.setdefault(base, []).append(
            {
                "overload": str(schema.name.overload_name),
                "args": [a.name for a in schema.arguments.flat_positional],
                "kw": [a.name for a in schema.arguments.flat_kwarg_only],
                "required": [a.name for a in schema.arguments.flat_positional if a.default is None],
                "needs": {k: sorted(v) for k, v in sorted(needs.items()) if v},
            }
        )
    return {name: sorted(entries, key=lambda e: e["overload"]) for name, entries in sorted(ops.items())}


def _aliasing_ops() -> list[str]:
    """Base names of aten ops whose (first) return aliases an argument without writing it."""
    import torchgen
    from torchgen.gen import parse_native_yaml

    root = os.path.join(os.path.dirname(torchgen.__file__), "packaged", "ATen", "native")
    parsed = parse_native_yaml(f"{root}/native_functions.yaml", f"{root}/tags.yaml")
    names = set()
    for fn in parsed.native_functions:
        ret = fn.func.returns
        if ret and ret[0].annotation is not None and not ret[0].annotation.is_write:
            names.add(str(fn.func.name.name))
    return sorted(names)


def _inplace_pairs() -> tuple[dict[str, str], dict[str, str]]:
    import torch

    methods = {}
    for name in dir(torch.Tensor):
        if name.endswith("_") and not name.startswith("_") and hasattr(torch.Tensor, name[:-1]):
            methods[name] = name[:-1]
    functions = {}
    for name in dir(torch):
        if name.endswith("_") and not name.startswith("_") and hasattr(torch, name[:-1]):
            if callable(getattr(torch, name)):
                functions[name] = name[:-1]
    return dict(sorted(methods.items())), dict(sorted(functions.items()))


def _tensor_methods() -> list[str]:
    import torch

    return sorted(n for n in dir(torch.Tensor) if not n.startswith("_"))


def build_table() -> dict:
    import torch

    methods, functions = _inplace_pairs()
    return {
        "generated_from": f"torch {torch.__version__.split('+')[0]}",
        "saves": _saved_by_op(),
        "aliasing": _aliasing_ops(),
        "inplace_methods": methods,
        "inplace_functions": functions,
        "tensor_methods": _tensor_methods(),
    }


def dump(table: dict) -> str:
    # One op per line keeps diffs of the committed table readable.
    lines = ["{"]
    lines.append(f'"generated_from": {json.dumps(table["generated_from"])},')
    lines.append('"saves": {')
    saves = list(table["saves"].items())
    for i, (name, entry) in enumerate(saves):
        sep = "," if i < len(saves) - 1 else ""
        lines.append(f"{json.dumps(name)}: {json.dumps(entry, separators=(',', ':'))}{sep}")
    lines.append("},")
    for key in ("aliasing", "inplace_methods", "inplace_functions", "tensor_methods"):
        sep = "," if key != "tensor_methods" else ""
        lines.append(f"{json.dumps(key)}: {json.dumps(table[key], separators=(',', ':'))}{sep}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed table differs")
    parser.add_argument("--output", type=Path, default=TABLE_PATH)
    args = parser.parse_args(argv)
    text = dump(build_table())
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; run python -m codemod.analysis.generate_table", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
