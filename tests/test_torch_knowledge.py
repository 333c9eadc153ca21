"""The torch knowledge in ``codemod/analysis/torch_api.py`` checked against torch itself: each
grad-mode name is the class it claims and does what it claims, each random op changes with the
seed, each view op returns a view (``._base is x``), each may-alias op shares storage for some
input, each metadata read returns no tensor."""

from __future__ import annotations

import importlib

import pytest

from codemod.analysis import torch_api

torch = pytest.importorskip("torch")
F = torch.nn.functional


def resolve(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def public_names_of(cls) -> set[str]:
    """Every name ``cls`` is reachable by in torch, torch.autograd and torch.autograd.grad_mode."""
    found = set()
    for module in (torch, torch.autograd, torch.autograd.grad_mode, torch.amp):
        for name in dir(module):
            if not name.startswith("_") and getattr(module, name, None) is cls:
                found.add(f"{module.__name__}.{name}")
    return found


@pytest.mark.parametrize(
    "names,cls",
    [
        (torch_api.GRAD_DISABLING, None),
        (torch_api.GRAD_ENABLING, "enable_grad"),
        (torch_api.GRAD_SETTING, "set_grad_enabled"),
    ],
)
def test_grad_mode_names_are_every_name_of_their_classes(names, cls):
    classes = {resolve(name) for name in names}
    expected = {torch.no_grad, torch.inference_mode} if cls is None else {getattr(torch, cls)}
    assert classes == expected
    assert names == set().union(*(public_names_of(c) for c in expected))


def test_grad_mode_managers_switch_grad_as_listed():
    for name in torch_api.GRAD_DISABLING:
        with resolve(name)():
            assert not torch.is_grad_enabled(), name
    with torch.no_grad():
        for name in torch_api.GRAD_ENABLING:
            with resolve(name)():
                assert torch.is_grad_enabled(), name
    for name in torch_api.GRAD_SETTING:
        with resolve(name)(False):
            assert not torch.is_grad_enabled(), name
        assert torch.is_grad_enabled()


def test_autocast_names_are_autocast_managers():
    for name in torch_api.AUTOCAST:
        assert issubclass(resolve(name), torch.amp.autocast_mode.autocast), name
    assert public_names_of(torch.autocast) <= torch_api.AUTOCAST


_RANDOM_CALLS = {
    "rand": lambda: torch.rand(8),
    "randn": lambda: torch.randn(8),
    "randint": lambda: torch.randint(0, 1000, (8,)),
    "randperm": lambda: torch.randperm(20),
    "normal": lambda: torch.normal(torch.zeros(8), torch.ones(8)),
    "bernoulli": lambda: torch.bernoulli(torch.full((64,), 0.5)),
    "multinomial": lambda: torch.multinomial(torch.ones(20), 10),
    "poisson": lambda: torch.poisson(torch.full((16,), 5.0)),
    "rand_like": lambda: torch.rand_like(torch.zeros(8)),
    "randn_like": lambda: torch.randn_like(torch.zeros(8)),
    "randint_like": lambda: torch.randint_like(torch.zeros(8), 1000),
    "dropout": lambda: F.dropout(torch.ones(64), 0.5, True),
    "dropout1d": lambda: F.dropout1d(torch.ones(4, 16, 3), 0.5, True),
    "dropout2d": lambda: F.dropout2d(torch.ones(4, 16, 3, 3), 0.5, True),
    "dropout3d": lambda: F.dropout3d(torch.ones(4, 16, 2, 2, 2), 0.5, True),
    "alpha_dropout": lambda: F.alpha_dropout(torch.ones(64), 0.5, True),
    "feature_alpha_dropout": lambda: F.feature_alpha_dropout(torch.ones(4, 16, 3), 0.5, True),
    "gumbel_softmax": lambda: F.gumbel_softmax(torch.zeros(4, 8)),
    "rrelu": lambda: F.rrelu(-torch.ones(64), training=True),
}


def changes_with_the_seed(call) -> bool:
    results = []
    for seed in (0, 1, 0):
        torch.manual_seed(seed)
        results.append(call())
    assert torch.equal(results[0], results[2])  # the seed alone decides
    return not torch.equal(results[0], results[1])


def test_random_functions_change_with_the_seed():
    assert set(_RANDOM_CALLS) == torch_api.RANDOM_FUNCTIONS
    for name, call in _RANDOM_CALLS.items():
        assert changes_with_the_seed(call), name
    assert not changes_with_the_seed(lambda: F.dropout(torch.ones(64), 0.5, False))  # the check can fail


_RANDOM_FILLS = {
    "normal_": (),
    "uniform_": (),
    "bernoulli_": (0.5,),
    "random_": (0, 1000),
    "exponential_": (),
    "cauchy_": (),
    "log_normal_": (),
    "geometric_": (0.5,),
}


def test_random_fills_change_with_the_seed():
    assert set(_RANDOM_FILLS) == torch_api.RNG_INPLACE
    for name, args in _RANDOM_FILLS.items():
        assert changes_with_the_seed(lambda: getattr(torch.zeros(16), name)(*args)), name
    assert not changes_with_the_seed(lambda: torch.zeros(16).fill_(1.0))


def _x():
    return torch.arange(12.0).reshape(3, 4).clone()  # its own storage: ``._base`` is None


_VIEW_CALLS = {
    "t": (),
    "transpose": (0, 1),
    "permute": (1, 0),
    "view": (-1,),
    "view_as": (torch.zeros(4, 3),),
    "unsqueeze": (0,),
    "squeeze": (),
    "expand": (2, 3, 4),
    "expand_as": (torch.zeros(2, 3, 4),),
    "narrow": (0, 0, 1),
    "select": (0, 0),
    "unflatten": (1, (2, 2)),
    "swapaxes": (0, 1),
    "swapdims": (0, 1),
    "movedim": (0, 1),
    "diagonal": (),
    "unbind": (),
    "split": (1,),
    "chunk": (2,),
    "as_strided": ((2,), (1,)),
    "unfold": (0, 2, 1),
    "tensor_split": (2,),
}


def is_view_of(result, x) -> bool:
    parts = result if isinstance(result, tuple) else (result,)
    return bool(parts) and all(part._base is x for part in parts)


def test_view_methods_always_return_views():
    assert set(_VIEW_CALLS) == torch_api.VIEW_METHODS
    for name, args in _VIEW_CALLS.items():
        x = _x()
        assert is_view_of(getattr(x, name)(*args), x), name
    x = _x()
    assert not is_view_of(x.clone(), x) and not is_view_of(x.reshape(2, 6).t().reshape(-1), x)


def test_view_attributes_are_views():
    for name in torch_api.VIEW_ATTRIBUTES:
        x = torch.zeros(3, 4, dtype=torch.complex64) if name in ("real", "imag") else _x()
        assert getattr(x, name)._base is x, name
    assert torch_api.VIEW_ATTRIBUTES <= torch_api.ALIAS_ATTRIBUTES


def shares_storage(result, x) -> bool:
    return result.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()


# An input for which each may-alias method returns the receiver or a tensor on its storage.
_MAY_ALIAS_CALLS = {
    "reshape": (_x, (-1,)),
    "reshape_as": (_x, (torch.zeros(12),)),
    "flatten": (_x, ()),
    "contiguous": (_x, ()),
    "detach": (_x, ()),
    "to": (_x, (torch.float32,)),
    "type_as": (_x, (torch.zeros(1),)),
    "float": (_x, ()),
    "double": (lambda: _x().double(), ()),
    "half": (lambda: _x().half(), ()),
    "bfloat16": (lambda: _x().bfloat16(), ()),
    "cpu": (_x, ()),
    "requires_grad_": (_x, ()),
}
# Named tensors, gone from torch 2.13 (kept for code written against older versions) ...
_NAMED_TENSORS = {"align_to", "refine_names", "rename", "names"}
# ... and ``cuda`` (returns the receiver when it is on that device already; no GPU here).
_NOT_CHECKED_HERE = _NAMED_TENSORS - {"names"} | {"cuda"}


def test_may_alias_methods_share_storage_for_some_input():
    methods = torch_api.MAY_ALIAS_METHODS - torch_api.VIEW_METHODS - torch_api.VIEW_ATTRIBUTES - {"data"}
    assert set(_MAY_ALIAS_CALLS) == methods - _NOT_CHECKED_HERE
    assert torch_api.VIEW_METHODS | torch_api.VIEW_ATTRIBUTES <= torch_api.MAY_ALIAS_METHODS
    for name, (make, args) in _MAY_ALIAS_CALLS.items():
        x = make()
        assert shares_storage(getattr(x, name)(*args), x), name
    x = _x()
    assert shares_storage(x.data, x) and not shares_storage(x.clone(), x)
    assert all(hasattr(torch.Tensor, name) for name in torch_api.MAY_ALIAS_METHODS - _NOT_CHECKED_HERE)
    assert not any(hasattr(torch.Tensor, name) for name in _NAMED_TENSORS)


def test_may_alias_functions_share_storage_for_some_input():
    np = pytest.importorskip("numpy")
    array = np.zeros(4, dtype=np.float32)
    calls = {
        "as_strided": (_x, ((2,), (1,))),
        "as_tensor": (_x, ()),
        "asarray": (_x, ()),
        "narrow": (_x, (0, 0, 1)),
        "select": (_x, (0, 0)),
        "squeeze": (_x, ()),
        "unsqueeze": (_x, (0,)),
        "transpose": (_x, (0, 1)),
        "permute": (_x, ((1, 0),)),
        "reshape": (_x, ((-1,),)),
        "flatten": (_x, ()),
        "unflatten": (_x, (1, (2, 2))),
        "movedim": (_x, (0, 1)),
        "swapaxes": (_x, (0, 1)),
        "swapdims": (_x, (0, 1)),
        "diagonal": (_x, ()),
        "split": (_x, (1,)),
        "chunk": (_x, (2,)),
        "unbind": (_x, ()),
        "tensor_split": (_x, (2,)),
        "t": (_x, ()),
        "view_as_real": (lambda: torch.zeros(3, dtype=torch.complex64), ()),
        "view_as_complex": (lambda: torch.zeros(3, 2), ()),
        "detach": (_x, ()),
        "atleast_1d": (_x, ()),
        "atleast_2d": (_x, ()),
        "atleast_3d": (_x, ()),
        "broadcast_to": (_x, ((2, 3, 4),)),
        "hsplit": (_x, (2,)),
        "vsplit": (_x, (3,)),
        "dsplit": (lambda: torch.zeros(2, 2, 4), (2,)),
    }
    assert set(calls) | {"from_numpy"} == torch_api.MAY_ALIAS_FUNCTIONS
    for name, (make, args) in calls.items():
        x = make()
        result = getattr(torch, name)(x, *args)
        for part in result if isinstance(result, (tuple, list)) else (result,):
            assert shares_storage(part, x), name
    torch.from_numpy(array)[0] = 1.0
    assert array[0] == 1.0


def test_metadata_reads_return_no_tensor():
    x = _x()
    assert torch_api.METADATA_ATTRIBUTES <= torch_api.NON_TENSOR_ATTRIBUTES
    for name in torch_api.METADATA_ATTRIBUTES - _NAMED_TENSORS:
        assert not isinstance(getattr(x, name), torch.Tensor), name
    for name in torch_api.METADATA_METHODS:
        assert not isinstance(getattr(x, name)(), torch.Tensor), name
    assert isinstance(x.sum(), torch.Tensor)  # the check can fail


def test_like_factories_read_only_shape_dtype_and_device():
    extra = {"full_like": (7.0,), "randint_like": (1000,)}
    for name in torch_api.LIKE_FACTORIES:
        results = []
        for x in (_x(), _x() * 2 + 1):
            torch.manual_seed(0)
            results.append(getattr(torch, name)(x, *extra.get(name, ())))
        if name != "empty_like":  # uninitialised memory: only its metadata is defined
            assert torch.equal(*results), name
        assert results[0].shape == (3, 4) and results[0].dtype == torch.float32, name


def test_parameter_and_buffer_classes():
    assert {resolve(name) for name in torch_api.PARAMETER_CLASSES} == {torch.nn.Parameter}
    assert {resolve(name) for name in torch_api.BUFFER_CLASSES} == {torch.nn.Buffer}
