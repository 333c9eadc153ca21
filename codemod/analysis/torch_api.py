"""What the analysis knows about torch's Python API.

Two sources:

* ``torch_table.json``, generated from the installed torch (``generate_table.py``): for every
  aten op, which tensors each input's gradient reads (hence saves); which ops return an alias of
  an argument; which in-place methods/functions have an out-of-place twin; the method names of
  ``torch.Tensor``.
* The hand-written maps below, for what the table cannot say: Python-level names that are not
  aten ops (``F.softmax`` runs ``aten::_softmax``; ``F.cross_entropy`` saves only internal
  tensors), ``torch.nn`` module classes, methods that may return ``self`` (``.float()``), and
  calls whose result is not a tensor.

Everything here is data and pure lookups: no torch import at analysis time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

TABLE_PATH = Path(__file__).with_name("torch_table.json")

OUT = "@out"  # marker for "the op's primary output" in ``needs`` lists


@lru_cache(maxsize=1)
def table() -> dict:
    with open(TABLE_PATH, encoding="utf-8") as fh:
        return json.load(fh)


@dataclass(frozen=True)
class Overload:
    args: tuple[str, ...]  # positional arguments, in order
    kw: tuple[str, ...] = ()  # keyword-only arguments
    required: tuple[str, ...] = ()
    needs: dict[str, frozenset[str]] = field(default_factory=dict)  # input -> what its gradient reads

    def accepts(self, n_positional: int, keywords: set[str]) -> bool:
        if n_positional > len(self.args):
            return False
        names = set(self.args) | set(self.kw)
        if not keywords <= names:
            return False
        provided = set(self.args[:n_positional]) | keywords
        return set(self.required) <= provided


@dataclass(frozen=True)
class OpSpec:
    """How a call maps onto autograd: the op's overloads, each with its arguments and, for each
    input, the tensors (argument names or ``@out``) its gradient formula reads."""

    name: str
    overloads: tuple[Overload, ...]

    @property
    def args(self) -> tuple[str, ...]:
        return self.overloads[0].args if self.overloads else ()

    def candidates(self, n_positional: int, keywords: set[str]) -> list[Overload]:
        """The overloads a call with these arguments may select (all of them if none fits)."""
        keywords = set(keywords) - _IGNORED_KEYWORDS
        fits = [
            o
            for o in self.overloads
            if o.accepts(
                n_positional, {k if k in o.args or k in o.kw else _KEYWORD_ALIASES.get(k, k) for k in keywords}
            )
        ]
        return fits or list(self.overloads)

    def saves(self, positional: list, keywords: dict, may_require_grad) -> tuple[list, bool]:
        """Which argument values are saved for backward, and whether the output is.

        ``positional``/``keywords`` hold one item per argument (any object); ``may_require_grad``
        says whether an argument's item may require grad.
        """
        saved_items: list = []
        out = False
        keywords = {k: v for k, v in keywords.items() if k not in _IGNORED_KEYWORDS}
        for overload in self.candidates(len(positional), set(keywords)):
            names = set(overload.args) | set(overload.kw)
            bound = dict(zip(overload.args, positional))
            for k, v in keywords.items():
                k = k if k in names else _KEYWORD_ALIASES.get(k, k)
                if k in names:
                    bound[k] = v
            for inp, needed in overload.needs.items():
                item = bound.get(inp)
                if item is None or not may_require_grad(item):
                    continue
                for name in needed:
                    if name == OUT:
                        out = True
                    elif name in bound and not any(bound[name] is x for x in saved_items):
                        saved_items.append(bound[name])
        return saved_items, out

    def saves_output(self) -> bool:
        """Whether the output is saved when its inputs require grad."""
        return any(OUT in needed for o in self.overloads for needed in o.needs.values())


_KEYWORD_ALIASES = {"input": "self"}
_IGNORED_KEYWORDS = {"out", "dtype", "layout", "device", "pin_memory", "memory_format", "non_blocking", "copy"}


def _spec_from_table(name: str, aten: str | None = None, rename: dict[str, str] | None = None) -> OpSpec | None:
    entries = table()["saves"].get(aten or name)
    if entries is None:
        return None
    inverse = {v: k for k, v in (rename or {}).items()}

    def r(x: str) -> str:
        return inverse.get(x, x)

    overloads = tuple(
        Overload(
            tuple(r(a) for a in e["args"]),
            tuple(r(a) for a in e["kw"]),
            tuple(r(a) for a in e["required"]),
            {r(k): frozenset(r(x) for x in v) for k, v in e["needs"].items()},
        )
        for e in entries
    )
    return OpSpec(name, overloads)


def _composite(name: str, args: tuple[str, ...], saves: tuple[str, ...] = (), out: bool = False) -> OpSpec:
    """A Python-level function that decomposes into several aten ops: ``saves`` are the arguments
    some piece saves whenever any input requires grad; ``out`` if the returned tensor is saved."""
    needed = frozenset(saves + ((OUT,) if out else ()))
    overload = Overload(args, (), args[:1], {a: needed for a in args} if needed else {})
    return OpSpec(name, (overload,))


# torch.nn.functional names -> (aten op, {python arg name: aten arg name}) or a composite spec.
# Python argument order follows torch.nn.functional's signatures.
_FUNCTIONAL: dict[str, OpSpec | tuple[str, dict[str, str]]] = {
    "relu": ("relu", {"input": "self"}),
    "relu6": ("hardtanh", {"input": "self"}),
    "elu": ("elu", {"input": "self"}),
    "selu": _composite("selu", ("input",), ("input",)),
    "celu": ("celu", {"input": "self"}),
    "leaky_relu": ("leaky_relu", {"input": "self"}),
    "hardtanh": ("hardtanh", {"input": "self"}),
    "gelu": ("gelu", {"input": "self"}),
    "silu": ("silu", {"input": "self"}),
    "mish": ("mish", {"input": "self"}),
    "hardswish": ("hardswish", {"input": "self"}),
    "hardsigmoid": ("hardsigmoid", {"input": "self"}),
    "sigmoid": ("sigmoid", {"input": "self"}),
    "tanh": ("tanh", {"input": "self"}),
    "softplus": ("softplus", {"input": "self"}),
    "softsign": _composite("softsign", ("input",), ("input",)),
    "tanhshrink": _composite("tanhshrink", ("input",), ("input",)),
    "threshold": ("threshold", {"input": "self"}),
    "rrelu": _composite("rrelu", ("input",), ("input",)),
    "glu": ("glu", {"input": "self"}),
    "logsigmoid": ("log_sigmoid_forward", {"input": "self"}),
    "softmax": _composite("softmax", ("input", "dim"), (), out=True),
    "softmin": _composite("softmin", ("input", "dim"), (), out=False),
    "log_softmax": _composite("log_softmax", ("input", "dim"), (), out=True),
    "gumbel_softmax": _composite("gumbel_softmax", ("logits",)),
    "dropout": _composite("dropout", ("input", "p", "training", "inplace")),
    "dropout1d": _composite("dropout1d", ("input", "p", "training", "inplace")),
    "dropout2d": _composite("dropout2d", ("input", "p", "training", "inplace")),
    "dropout3d": _composite("dropout3d", ("input", "p", "training", "inplace")),
    "alpha_dropout": _composite("alpha_dropout", ("input", "p", "training", "inplace")),
    "feature_alpha_dropout": _composite("feature_alpha_dropout", ("input", "p", "training", "inplace")),
    "linear": ("linear", {}),
    "bilinear": _composite("bilinear", ("input1", "input2", "weight", "bias"), ("input1", "input2", "weight")),
    "conv1d": _composite("conv1d", ("input", "weight", "bias"), ("input", "weight")),
    "conv2d": _composite("conv2d", ("input", "weight", "bias"), ("input", "weight")),
    "conv3d": _composite("conv3d", ("input", "weight", "bias"), ("input", "weight")),
    "conv_transpose1d": _composite("conv_transpose1d", ("input", "weight", "bias"), ("input", "weight")),
    "conv_transpose2d": _composite("conv_transpose2d", ("input", "weight", "bias"), ("input", "weight")),
    "conv_transpose3d": _composite("conv_transpose3d", ("input", "weight", "bias"), ("input", "weight")),
    "layer_norm": _composite(
        "layer_norm", ("input", "normalized_shape", "weight", "bias"), ("input", "weight", "bias")
    ),
    "rms_norm": _composite("rms_norm", ("input", "normalized_shape", "weight"), ("input", "weight")),
    "group_norm": _composite("group_norm", ("input", "num_groups", "weight", "bias"), ("input", "weight")),
    "batch_norm": _composite(
        "batch_norm", ("input", "running_mean", "running_var", "weight", "bias"), ("input", "weight")
    ),
    "instance_norm": _composite(
        "instance_norm", ("input", "running_mean", "running_var", "weight", "bias"), ("input", "weight")
    ),
    "local_response_norm": _composite("local_response_norm", ("input",), ("input",), out=True),
    "normalize": _composite("normalize", ("input",), ("input",)),
    "embedding": _composite("embedding", ("input", "weight"), ("input",)),
    "one_hot": _composite("one_hot", ("tensor",)),
    "pad": _composite("pad", ("input", "pad")),
    "interpolate": _composite("interpolate", ("input",)),
    "upsample": _composite("upsample", ("input",)),
    "pixel_shuffle": _composite("pixel_shuffle", ("input",)),
    "pixel_unshuffle": _composite("pixel_unshuffle", ("input",)),
    "unfold": _composite("unfold", ("input",)),
    "fold": _composite("fold", ("input",)),
    "max_pool1d": _composite("max_pool1d", ("input",), ("input",)),
    "max_pool2d": _composite("max_pool2d", ("input",), ("input",)),
    "max_pool3d": _composite("max_pool3d", ("input",), ("input",)),
    "avg_pool1d": _composite("avg_pool1d", ("input",), ("input",)),
    "avg_pool2d": _composite("avg_pool2d", ("input",), ("input",)),
    "avg_pool3d": _composite("avg_pool3d", ("input",), ("input",)),
    "adaptive_avg_pool1d": _composite("adaptive_avg_pool1d", ("input",), ("input",)),
    "adaptive_avg_pool2d": _composite("adaptive_avg_pool2d", ("input",), ("input",)),
    "adaptive_avg_pool3d": _composite("adaptive_avg_pool3d", ("input",), ("input",)),
    "adaptive_max_pool1d": _composite("adaptive_max_pool1d", ("input",), ("input",)),
    "adaptive_max_pool2d": _composite("adaptive_max_pool2d", ("input",), ("input",)),
    "scaled_dot_product_attention": _composite(
        "scaled_dot_product_attention",
        ("query", "key", "value", "attn_mask"),
        ("query", "key", "value", "attn_mask"),
        out=True,
    ),
    "multi_head_attention_forward": _composite(
        "multi_head_attention_forward", ("query", "key", "value"), ("query", "key", "value")
    ),
    "cross_entropy": _composite("cross_entropy", ("input", "target", "weight"), ("target", "weight")),
    "nll_loss": ("nll_loss_forward", {"input": "self"}),
    "mse_loss": ("mse_loss", {"input": "self"}),
    "l1_loss": _composite("l1_loss", ("input", "target")),
    "smooth_l1_loss": ("smooth_l1_loss", {"input": "self"}),
    "huber_loss": _composite("huber_loss", ("input", "target"), ("input", "target")),
    "binary_cross_entropy": ("binary_cross_entropy", {"input": "self"}),
    "binary_cross_entropy_with_logits": ("binary_cross_entropy_with_logits", {"input": "self"}),
    "kl_div": _composite("kl_div", ("input", "target"), ("input", "target")),
    "cosine_similarity": _composite("cosine_similarity", ("x1", "x2"), ("x1", "x2")),
    "pairwise_distance": _composite("pairwise_distance", ("x1", "x2"), ("x1", "x2")),
    "grid_sample": ("grid_sampler_2d", {}),
    "affine_grid": _composite("affine_grid", ("theta",)),
}

# torch.<name> / Tensor.<name> that are Python-level or composite (not in derivatives.yaml).
_TORCH_COMPOSITE: dict[str, OpSpec] = {
    "softmax": _composite("softmax", ("input", "dim"), (), out=True),
    "log_softmax": _composite("log_softmax", ("input", "dim"), (), out=True),
    "matmul": _composite("matmul", ("input", "other"), ("input", "other")),
    "einsum": _composite("einsum", ("equation", "operands"), ("operands",)),
    "layer_norm": _composite(
        "layer_norm", ("input", "normalized_shape", "weight", "bias"), ("input", "weight", "bias")
    ),
    "group_norm": _composite("group_norm", ("input", "num_groups", "weight", "bias"), ("input", "weight")),
    "batch_norm": _composite("batch_norm", ("input", "weight", "bias"), ("input", "weight")),
    "dropout": _composite("dropout", ("input", "p", "train")),
    "square": _composite("square", ("input",), ("input",)),
    "square_": _composite("square_", ("input",), ("input",)),
    "float_power_": _composite("float_power_", ("input", "exponent"), ("input", "exponent")),
    "float_power": _composite("float_power", ("input", "exponent"), ("input", "exponent")),
    "narrow": _composite("narrow", ("input",)),
    "cdist": _composite("cdist", ("x1", "x2"), ("x1", "x2"), out=True),
    "tensordot": _composite("tensordot", ("a", "b"), ("a", "b")),
    "chain_matmul": _composite("chain_matmul", ("matrices",), ("matrices",)),
    "stack": _composite("stack", ("tensors",)),
    "hstack": _composite("hstack", ("tensors",)),
    "vstack": _composite("vstack", ("tensors",)),
    "concat": _composite("concat", ("tensors",)),
    "concatenate": _composite("concatenate", ("tensors",)),
    "flatten": _composite("flatten", ("input",)),
    "reshape": _composite("reshape", ("input",)),
    "contiguous": _composite("contiguous", ("input",)),
    "to": _composite("to", ("input",)),
    "type_as": _composite("type_as", ("input", "other")),
    "view_as": _composite("view_as", ("input", "other")),
    "reshape_as": _composite("reshape_as", ("input", "other")),
    "expand_as": _composite("expand_as", ("input", "other")),
    # copy_ has a hand-written autograd kernel (CopyBackwards) that saves nothing.
    "copy_": _composite("copy_", ("input", "src")),
}

# Methods/attributes that return ``self`` or a tensor sharing its storage (besides the table's
# ``aliasing`` list of aten views): dtype/device conversions return self when nothing changes.
ALIAS_METHODS = frozenset(
    {
        "float",
        "double",
        "half",
        "bfloat16",
        "int",
        "long",
        "short",
        "bool",
        "byte",
        "char",
        "cpu",
        "cuda",
        "to",
        "type",
        "type_as",
        "contiguous",
        "requires_grad_",
        "view_as",
        "reshape_as",
        "expand_as",
        "as_subclass",
        "numpy",
        "detach",
        "flatten",
        "squeeze",
        "unsqueeze",
        "data",
        "T",
        "mT",
        "H",
        "mH",
        "real",
        "imag",
        "coalesce",
    }
)
ALIAS_ATTRIBUTES = frozenset({"T", "mT", "H", "mH", "real", "imag", "data"})

# Tensor methods whose result is not a tensor.
NON_TENSOR_METHODS = frozenset(
    {
        "item",
        "tolist",
        "size",
        "dim",
        "ndimension",
        "numel",
        "nelement",
        "element_size",
        "is_contiguous",
        "is_floating_point",
        "is_complex",
        "is_signed",
        "data_ptr",
        "stride",
        "storage_offset",
        "get_device",
        "equal",
        "untyped_storage",
        "storage",
        "is_set_to",
        "is_pinned",
        "is_shared",
        "has_names",
        "is_nonzero",
        "__len__",
        "dim_order",
        "allclose",
        "backward",
        "register_hook",
        "retain_grad",
        "record_stream",
        "tobytes",
    }
)
NON_TENSOR_ATTRIBUTES = frozenset(
    {
        "shape",
        "dtype",
        "device",
        "ndim",
        "requires_grad",
        "is_leaf",
        "grad_fn",
        "is_cuda",
        "layout",
        "names",
        "itemsize",
        "nbytes",
        "is_sparse",
        "is_quantized",
        "is_meta",
    }
)
# Tensor methods returning a tuple of tensors: views of self ...
TUPLE_ALIAS_METHODS = frozenset(
    {"split", "chunk", "unbind", "tensor_split", "hsplit", "vsplit", "dsplit", "split_with_sizes"}
)
# ... or fresh tensors.
TUPLE_FRESH_METHODS = frozenset(
    {
        "topk",
        "sort",
        "kthvalue",
        "mode",
        "cummax",
        "cummin",
        "aminmax",
        "frexp",
        "unique_consecutive",
        "slogdet",
        "qr",
        "svd",
        "lu",
    }
)

# In-place methods that change only metadata or bookkeeping, never the data autograd saved.
METADATA_INPLACE = frozenset(
    {
        "requires_grad_",
        "detach_",
        "resize_",
        "resize_as_",
        "as_strided_",
        "squeeze_",
        "unsqueeze_",
        "t_",
        "transpose_",
        "swapaxes_",
        "swapdims_",
        "share_memory_",
        "set_",
        "retain_grad",
        "rename_",
        "refine_names_",
        "align_to_",
        "pin_memory_",
        "apply_",
        "map_",
        "map2_",
        "resize_as_sparse_",
        "sparse_resize_",
        "sparse_resize_and_clear_",
    }
)
# In-place random fills: never rewritten (state, RNG stream), reported when hazardous.
RNG_INPLACE = frozenset(
    {"normal_", "uniform_", "bernoulli_", "random_", "exponential_", "cauchy_", "log_normal_", "geometric_"}
)
# In-place ops whose out-of-place twin returns another dtype (comparisons, float_power): a rewrite
# would change the tensor's dtype, so they are reported, not rewritten.
DTYPE_CHANGING_INPLACE = frozenset(
    {
        "eq_",
        "ne_",
        "ge_",
        "gt_",
        "le_",
        "lt_",
        "greater_",
        "greater_equal_",
        "less_",
        "less_equal_",
        "not_equal_",
        "logical_and_",
        "logical_or_",
        "logical_xor_",
        "logical_not_",
        "float_power_",
    }
)
# Rewritten with a factory instead of a same-named method.
SPECIAL_INPLACE = frozenset({"zero_", "fill_", "copy_"})
# In-place ops without an out-of-place twin: only the clone-first rewrite applies.
CLONE_ONLY_INPLACE = frozenset({"fill_diagonal_"})

# Functions and methods that are never differentiable code, by the name torch.nn and its users
# give them (initialisation, indexing of datasets, repr).
NOT_DIFFERENTIABLE_FUNCTIONS = frozenset(
    {
        "__init__",
        "reset_parameters",
        "_reset_parameters",
        "init_weights",
        "_init_weights",
        "__getitem__",
        "__len__",
        "extra_repr",
    }
)

# --- Torch knowledge the rule families and the whole-program summaries share ----------------
# One home for these lists; tests/test_torch_knowledge.py checks each against torch itself.

# Context managers (and decorators) that switch autograd off: one class each under several names.
GRAD_DISABLING = frozenset(
    {
        "torch.no_grad",
        "torch.autograd.no_grad",
        "torch.autograd.grad_mode.no_grad",
        "torch.inference_mode",
        "torch.autograd.inference_mode",
        "torch.autograd.grad_mode.inference_mode",
    }
)
# ... that switch it back on ...
GRAD_ENABLING = frozenset({"torch.enable_grad", "torch.autograd.enable_grad", "torch.autograd.grad_mode.enable_grad"})
# ... that set it from their argument ...
GRAD_SETTING = frozenset(
    {
        "torch.set_grad_enabled",
        "torch.autograd.set_grad_enabled",
        "torch.autograd.grad_mode.set_grad_enabled",
    }
)
# ... and that run ops in lower precision (autocast).
AUTOCAST = frozenset({"torch.autocast", "torch.amp.autocast", "torch.cuda.amp.autocast", "torch.cpu.amp.autocast"})

# torch functions (``torch.*``, ``torch.nn.functional.*``) whose result depends on the random
# generator (dropout and rrelu in training mode).
RANDOM_FUNCTIONS = frozenset(
    {
        "rand",
        "randn",
        "randint",
        "randperm",
        "normal",
        "bernoulli",
        "multinomial",
        "poisson",
        "rand_like",
        "randn_like",
        "randint_like",
        "dropout",
        "dropout1d",
        "dropout2d",
        "dropout3d",
        "alpha_dropout",
        "feature_alpha_dropout",
        "gumbel_softmax",
        "rrelu",
    }
)
# Tensor methods that fill the tensor from the random generator: ``RNG_INPLACE``.

# Tensor methods whose result is always a view of the receiver (``x.t()._base is x``; each
# element for the ones returning a tuple) ...
VIEW_METHODS = frozenset(
    {
        "t",
        "transpose",
        "permute",
        "view",
        "view_as",
        "unsqueeze",
        "squeeze",
        "expand",
        "expand_as",
        "narrow",
        "select",
        "unflatten",
        "swapaxes",
        "swapdims",
        "movedim",
        "diagonal",
        "unbind",
        "split",
        "chunk",
        "as_strided",
        "unfold",
        "tensor_split",
    }
)
# ... and attributes (``real``/``imag`` of a complex tensor).
VIEW_ATTRIBUTES = frozenset({"T", "mT", "H", "mH", "real", "imag"})
# Tensor methods and attributes whose result may share storage with the receiver: the views, the
# ones that are views for some inputs (``reshape``, ``flatten``) and the ones that return the
# receiver itself when nothing changes (``contiguous``, ``to``, ``float``).
MAY_ALIAS_METHODS = (
    VIEW_METHODS
    | VIEW_ATTRIBUTES
    | frozenset(
        {
            "reshape",
            "reshape_as",
            "flatten",
            "contiguous",
            "detach",
            "data",
            "to",
            "type_as",
            "float",
            "double",
            "half",
            "bfloat16",
            "cpu",
            "cuda",
            "requires_grad_",
            # named-tensor methods, gone from torch 2.13, kept for code written against older versions
            "align_to",
            "refine_names",
            "rename",
        }
    )
)
# torch functions whose result may be (a view of) their first argument.
MAY_ALIAS_FUNCTIONS = frozenset(
    {
        "as_strided",
        "as_tensor",
        "asarray",
        "from_numpy",
        "narrow",
        "select",
        "squeeze",
        "unsqueeze",
        "transpose",
        "permute",
        "reshape",
        "flatten",
        "unflatten",
        "movedim",
        "swapaxes",
        "swapdims",
        "diagonal",
        "split",
        "chunk",
        "unbind",
        "tensor_split",
        "t",
        "view_as_real",
        "view_as_complex",
        "detach",
        "atleast_1d",
        "atleast_2d",
        "atleast_3d",
        "broadcast_to",
        "hsplit",
        "vsplit",
        "dsplit",
    }
)
# Tensor attributes that are metadata, not tensors (a subset of ``NON_TENSOR_ATTRIBUTES``) ...
METADATA_ATTRIBUTES = frozenset({"shape", "dtype", "device", "ndim", "requires_grad", "is_cuda", "layout", "names"})
# ... methods that read only metadata ...
METADATA_METHODS = frozenset(
    {
        "size",
        "dim",
        "numel",
        "nelement",
        "ndimension",
        "element_size",
        "stride",
        "is_contiguous",
        "is_floating_point",
        "get_device",
        "type",
    }
)
# The classes that make a Parameter and a buffer when assigned to a module's attribute.
PARAMETER_CLASSES = frozenset({"torch.nn.Parameter", "torch.nn.parameter.Parameter"})
BUFFER_CLASSES = frozenset({"torch.nn.Buffer", "torch.nn.parameter.Buffer"})
# Factories that read only the shape, dtype and device of their tensor argument.
LIKE_FACTORIES = frozenset(
    {"zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "randint_like"}
)


def inplace_methods() -> dict[str, str]:
    return table()["inplace_methods"]


def is_inplace_method(name: str) -> bool:
    return (
        name.endswith("_")
        and not name.startswith("_")
        and (name in inplace_methods() or name in SPECIAL_INPLACE or name in RNG_INPLACE or name in CLONE_ONLY_INPLACE)
        and name not in METADATA_INPLACE
    )


@lru_cache(maxsize=None)
def tensor_methods() -> frozenset[str]:
    return frozenset(table()["tensor_methods"])


# Names that exist on numpy arrays or builtin containers too: calling them proves nothing.
_SHARED_METHOD_NAMES = frozenset(
    {
        "all",
        "any",
        "argmax",
        "argmin",
        "argsort",
        "astype",
        "clip",
        "conj",
        "copy",
        "cumprod",
        "cumsum",
        "diagonal",
        "dot",
        "fill",
        "flatten",
        "item",
        "max",
        "mean",
        "min",
        "nonzero",
        "prod",
        "put",
        "ravel",
        "repeat",
        "reshape",
        "resize",
        "round",
        "sort",
        "squeeze",
        "std",
        "sum",
        "swapaxes",
        "take",
        "tolist",
        "trace",
        "transpose",
        "var",
        "view",
        "append",
        "extend",
        "insert",
        "pop",
        "remove",
        "index",
        "count",
        "clear",
        "update",
        "get",
        "keys",
        "values",
        "items",
        "add",
        "split",
        "format",
        "replace",
        "strip",
        "join",
        "real",
        "imag",
        "T",
        "size",
        "shape",
        "dtype",
        "tobytes",
        "byteswap",
        "partition",
        "searchsorted",
        "to",
        "type",
        "abs",
        "float",
        "int",
        "bool",
        "__len__",
        "numpy",
        "data",
        "device",
    }
)


def is_tensor_only_method(name: str) -> bool:
    """A method that exists on torch.Tensor but not on numpy arrays or builtin containers."""
    return name in tensor_methods() and name not in _SHARED_METHOD_NAMES


@lru_cache(maxsize=None)
def aliasing_ops() -> frozenset[str]:
    return frozenset(table()["aliasing"])


def method_returns_alias(name: str) -> bool:
    return name in ALIAS_METHODS or name in aliasing_ops()


# Python-level alias names of aten ops (torch/_torch_docs.py documents them as aliases).
OP_ALIASES = {
    "absolute": "abs",
    "arccos": "acos",
    "arccosh": "acosh",
    "arcsin": "asin",
    "arcsinh": "asinh",
    "arctan": "atan",
    "arctan2": "atan2",
    "arctanh": "atanh",
    "clip": "clamp",
    "divide": "div",
    "true_divide": "div",
    "multiply": "mul",
    "subtract": "sub",
    "negative": "neg",
    "fix": "trunc",
    "greater": "gt",
    "greater_equal": "ge",
    "less": "lt",
    "less_equal": "le",
    "not_equal": "ne",
}
# Ops with no gradient at all: they save nothing.
NON_DIFFERENTIABLE = frozenset(
    {
        "bitwise_and",
        "bitwise_or",
        "bitwise_xor",
        "bitwise_not",
        "bitwise_left_shift",
        "bitwise_right_shift",
        "logical_and",
        "logical_or",
        "logical_xor",
        "logical_not",
        "gcd",
        "lcm",
        "floor_divide",
        "heaviside",
        "detach",
        "requires_grad",
        "resize",
        "resize_as",
        "swapaxes",
        "swapdims",
    }
)


@lru_cache(maxsize=None)
def method_spec(name: str) -> OpSpec | None:
    """Spec for ``tensor.<name>(...)``; ``self`` is the receiver (the first positional)."""
    base = name[:-1] if name.endswith("_") else name
    if base in NON_DIFFERENTIABLE:
        return OpSpec(name, (Overload(("self", "other"), (), ("self",), {}),))
    if base in OP_ALIASES:
        return method_spec(OP_ALIASES[base] + ("_" if name.endswith("_") else ""))
    spec = _TORCH_COMPOSITE.get(name)
    if spec is not None:
        first = spec.args[0]

        def r(x: str) -> str:
            return "self" if x == first else x

        overloads = tuple(
            Overload(
                tuple(r(a) for a in o.args),
                o.kw,
                tuple(r(a) for a in o.required),
                {r(k): frozenset(r(x) for x in v) for k, v in o.needs.items()},
            )
            for o in spec.overloads
        )
        return OpSpec(name, overloads)
    spec = _spec_from_table(name)
    if spec is None and name.endswith("_"):
        # In-place variant without its own derivatives entry uses the functional formula.
        spec = _spec_from_table(name, aten=name[:-1])
    return spec


@lru_cache(maxsize=None)
def function_spec(qualname: str) -> OpSpec | None:
    """Spec for a call of a fully qualified torch function (``torch.var``, ``torch.nn.functional.relu``)."""
    module, _, name = qualname.rpartition(".")
    if module == "torch.nn.functional":
        entry = _FUNCTIONAL.get(name)
        if entry is None:
            return None
        if isinstance(entry, OpSpec):
            return entry
        aten, rename = entry
        return _spec_from_table(name, aten=aten, rename=rename)
    if module in ("torch", "torch.special", "torch.linalg", "torch.fft", "torch.Tensor"):
        base = name[:-1] if name.endswith("_") else name
        if base in NON_DIFFERENTIABLE or base in OP_ALIASES:
            return method_spec(name)
        if name in _TORCH_COMPOSITE:
            return _TORCH_COMPOSITE[name]
        aten = name
        if module == "torch.special" and not name.startswith("special_"):
            aten = f"special_{name}"
        elif module == "torch.linalg" and not name.startswith("linalg_"):
            aten = f"linalg_{name}"
        elif module == "torch.fft" and not name.startswith("fft_"):
            aten = f"fft_{name}"
        spec = _spec_from_table(name, aten=aten)
        if spec is None:
            spec = _spec_from_table(name, aten=name)
        if spec is None and name.endswith("_"):
            spec = _spec_from_table(name, aten=name[:-1])
        return spec
    return None


# torch.* callables whose result is not a tensor (or is a tuple/namespace we do not track).
NON_TENSOR_FUNCTIONS = frozenset(
    {
        "is_tensor",
        "is_floating_point",
        "is_complex",
        "numel",
        "get_default_dtype",
        "set_default_dtype",
        "device",
        "dtype",
        "Size",
        "Generator",
        "manual_seed",
        "seed",
        "initial_seed",
        "is_grad_enabled",
        "is_inference_mode_enabled",
        "no_grad",
        "enable_grad",
        "set_grad_enabled",
        "inference_mode",
        "autocast",
        "compile",
        "typename",
        "is_storage",
        "finfo",
        "iinfo",
        "get_num_threads",
        "set_num_threads",
        "equal",
        "allclose",
        "is_nonzero",
        "save",
        "load",
        "promote_types",
        "result_type",
        "can_cast",
        "use_deterministic_algorithms",
        "broadcast_shapes",
        "is_same_size",
        "vmap",
        "cond",
    }
)
TUPLE_ALIAS_FUNCTIONS = frozenset(
    {
        "split",
        "chunk",
        "unbind",
        "tensor_split",
        "hsplit",
        "vsplit",
        "dsplit",
        "meshgrid",
        "broadcast_tensors",
        "split_with_sizes",
    }
)
TUPLE_FRESH_FUNCTIONS = frozenset(
    {
        "topk",
        "sort",
        "kthvalue",
        "mode",
        "cummax",
        "cummin",
        "aminmax",
        "frexp",
        "unique_consecutive",
        "lu",
        "qr",
        "svd",
        "slogdet",
        "var_mean",
        "std_mean",
    }
)
# torch.* factories: fresh tensors that do not require grad.
FACTORY_FUNCTIONS = frozenset(
    {
        "zeros",
        "ones",
        "empty",
        "full",
        "rand",
        "randn",
        "randint",
        "randperm",
        "arange",
        "linspace",
        "logspace",
        "eye",
        "zeros_like",
        "ones_like",
        "empty_like",
        "full_like",
        "rand_like",
        "randn_like",
        "randint_like",
        "tensor",
        "tril_indices",
        "triu_indices",
        "empty_strided",
        "bernoulli",
        "multinomial",
        "normal",
        "poisson",
    }
)
# torch.* calls that may share memory with their argument.
ALIAS_FUNCTIONS = frozenset({"as_tensor", "from_numpy", "asarray", "as_strided", "frombuffer", "from_dlpack"})

# Callables of torch outside the op table that hand back what a function they are given returns
# (which may be one of their tensor arguments): their result may be an alias of those.
PASS_THROUGH_FUNCTIONS = frozenset(
    {
        "torch.utils.checkpoint.checkpoint",
        "torch.utils.checkpoint.checkpoint_sequential",
        "torch.jit.annotate",
        "torch.func.functional_call",
        "torch.nn.utils.stateless.functional_call",
        "torch.cond",
        "torch.compiler.disable",
    }
)
# Callables outside torch known never to return (a view of) an argument.
_NEVER_ALIAS = frozenset({"copy.deepcopy"})


def may_return_alias(qualname: str) -> bool:
    """For a call the analysis has no summary of (``qualname``, qualified through the imports):
    whether its result may share storage with a tensor it is given. torch's own callables are
    known (the op table, its modules and factories): only the pass-through ones above, and the
    tensor methods that view ``self`` (``torch.Tensor.view``), may. Any other package is unknown:
    it may (``einops.rearrange`` returns a view)."""
    if qualname in _NEVER_ALIAS:
        return False
    if qualname.split(".")[0] != "torch":
        return True
    if qualname.startswith("torch.Tensor."):
        return method_returns_alias(qualname.rsplit(".", 1)[-1])
    spec = module_spec(qualname)
    if spec is not None:  # an instance of this torch.nn class, called
        return spec.returns_input or spec.container or "dropout" in (spec.functional or "")
    return qualname in PASS_THROUGH_FUNCTIONS


@dataclass(frozen=True)
class ModuleSpec:
    """What calling an instance of a ``torch.nn`` module class does."""

    functional: str | None  # torch.nn.functional name whose saving behaviour it has
    inplace_index: int | None = None  # position of the ``inplace`` constructor argument
    returns_input: bool = False  # output aliases the input (Identity, Flatten)
    container: bool = False  # Sequential


_ACT = {
    "ReLU": ("relu", 0),
    "ReLU6": ("relu6", 0),
    "LeakyReLU": ("leaky_relu", 1),
    "ELU": ("elu", 1),
    "SELU": ("selu", 0),
    "CELU": ("celu", 1),
    "SiLU": ("silu", 0),
    "Mish": ("mish", 0),
    "Hardswish": ("hardswish", 0),
    "Hardsigmoid": ("hardsigmoid", 0),
    "Hardtanh": ("hardtanh", 2),
    "RReLU": ("rrelu", 2),
    "Threshold": ("threshold", 2),
    "Dropout": ("dropout", 1),
    "Dropout1d": ("dropout1d", 1),
    "Dropout2d": ("dropout2d", 1),
    "Dropout3d": ("dropout3d", 1),
    "AlphaDropout": ("alpha_dropout", 1),
    "FeatureAlphaDropout": ("feature_alpha_dropout", 1),
}
_PLAIN = {
    "GELU": "gelu",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "Softplus": "softplus",
    "Softmax": "softmax",
    "LogSoftmax": "log_softmax",
    "Softmin": "softmin",
    "Softsign": "softsign",
    "Tanhshrink": "tanhshrink",
    "LogSigmoid": "logsigmoid",
    "GLU": "glu",
    "Linear": "linear",
    "Bilinear": "bilinear",
    "LazyLinear": "linear",
    "Conv1d": "conv1d",
    "Conv2d": "conv2d",
    "Conv3d": "conv3d",
    "ConvTranspose1d": "conv_transpose1d",
    "ConvTranspose2d": "conv_transpose2d",
    "ConvTranspose3d": "conv_transpose3d",
    "LazyConv1d": "conv1d",
    "LazyConv2d": "conv2d",
    "LazyConv3d": "conv3d",
    "BatchNorm1d": "batch_norm",
    "BatchNorm2d": "batch_norm",
    "BatchNorm3d": "batch_norm",
    "SyncBatchNorm": "batch_norm",
    "LazyBatchNorm1d": "batch_norm",
    "LazyBatchNorm2d": "batch_norm",
    "InstanceNorm1d": "instance_norm",
    "InstanceNorm2d": "instance_norm",
    "InstanceNorm3d": "instance_norm",
    "LayerNorm": "layer_norm",
    "RMSNorm": "rms_norm",
    "GroupNorm": "group_norm",
    "LocalResponseNorm": "local_response_norm",
    "Embedding": "embedding",
    "MaxPool1d": "max_pool1d",
    "MaxPool2d": "max_pool2d",
    "MaxPool3d": "max_pool3d",
    "AvgPool1d": "avg_pool1d",
    "AvgPool2d": "avg_pool2d",
    "AvgPool3d": "avg_pool3d",
    "AdaptiveAvgPool1d": "adaptive_avg_pool1d",
    "AdaptiveAvgPool2d": "adaptive_avg_pool2d",
    "AdaptiveAvgPool3d": "adaptive_avg_pool3d",
    "AdaptiveMaxPool1d": "adaptive_max_pool1d",
    "AdaptiveMaxPool2d": "adaptive_max_pool2d",
    "Upsample": "interpolate",
    "UpsamplingNearest2d": "interpolate",
    "UpsamplingBilinear2d": "interpolate",
    "PixelShuffle": "pixel_shuffle",
    "PixelUnshuffle": "pixel_unshuffle",
    "Unfold": "unfold",
    "Fold": "fold",
    "ZeroPad2d": "pad",
    "ConstantPad1d": "pad",
    "ConstantPad2d": "pad",
    "ConstantPad3d": "pad",
    "MultiheadAttention": "multi_head_attention_forward",
    "CrossEntropyLoss": "cross_entropy",
    "MSELoss": "mse_loss",
    "L1Loss": "l1_loss",
    "NLLLoss": "nll_loss",
    "BCELoss": "binary_cross_entropy",
    "BCEWithLogitsLoss": "binary_cross_entropy_with_logits",
    "SmoothL1Loss": "smooth_l1_loss",
    "HuberLoss": "huber_loss",
    "KLDivLoss": "kl_div",
    "CosineSimilarity": "cosine_similarity",
    "PairwiseDistance": "pairwise_distance",
}


@lru_cache(maxsize=None)
def module_spec(qualname: str) -> ModuleSpec | None:
    """Spec for a ``torch.nn.<Class>`` (qualified name), or None if unknown."""
    module, _, name = qualname.rpartition(".")
    if module not in ("torch.nn", "torch.nn.modules"):
        return None
    if name in _ACT:
        fn, idx = _ACT[name]
        return ModuleSpec(fn, inplace_index=idx)
    if name in _PLAIN:
        return ModuleSpec(_PLAIN[name])
    if name in ("Identity", "Flatten", "Unflatten"):
        return ModuleSpec(None, returns_input=True)
    if name == "Sequential":
        return ModuleSpec(None, container=True)
    return None


def inplace_activation_modules() -> dict[str, int]:
    """``torch.nn`` class name -> position of its ``inplace`` constructor argument."""
    return {name: idx for name, (_, idx) in _ACT.items()}


# F.<act>(x, inplace=...) functions: name -> position of ``inplace`` in the Python signature.
FUNCTIONAL_INPLACE_ARG = {
    "relu": 1,
    "relu6": 1,
    "elu": 2,
    "selu": 1,
    "celu": 2,
    "leaky_relu": 2,
    "hardtanh": 3,
    "silu": 1,
    "mish": 1,
    "hardswish": 1,
    "hardsigmoid": 1,
    "rrelu": 4,
    "threshold": 3,
    "dropout": 3,
    "dropout1d": 3,
    "dropout2d": 3,
    "dropout3d": 3,
    "alpha_dropout": 3,
    "feature_alpha_dropout": 3,
}
