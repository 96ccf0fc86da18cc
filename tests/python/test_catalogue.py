"""One source of truth (issue 15, part 5): the quantizer catalogue is C++'s, read from the operator
schemas; Python's quantizers read it, and the copies that must stay (the documented Python wrappers
of lowbit._ops) are checked against the schemas argument by argument."""

import inspect
import json

import pytest
import torch

import lowbit
import lowbit._ops as ops
import lowbit.nn as qnn

CATALOGUE = json.loads(torch.ops.lowbit._quantizer_catalogue())["quantizers"]
NAMES = [q["name"] for q in CATALOGUE]


def schema(name):
    return getattr(torch.ops.lowbit, name).default._schema


def test_the_catalogue_lists_every_quantizer_of_the_spec():
    assert NAMES == ["ste_sign", "approx_sign", "swish_sign", "ste_heaviside",
                     "magnitude_aware_sign", "ste_tern", "dorefa", "binary_mean_scaling",
                     "binary_channel_wise_mean_scaling", "linear_mid_tread_half", "twn_weight",
                     "ttq_weight"]
    assert sorted(qnn._QUANTIZERS) == sorted(NAMES + ["none"])


@pytest.mark.parametrize("name", NAMES)
def test_options_are_the_schema_arguments_with_their_defaults(name):
    entry = CATALOGUE[NAMES.index(name)]
    args = schema(name).arguments[1:]
    assert [o["key"] for o in entry["options"]] == [a.name for a in args]
    for o, a in zip(entry["options"], args):
        if str(a.type) == "Tensor":  # ttq_weight's trainable scales
            assert o["parameter"] and o["default"] == 1.0
        else:
            assert not o["parameter"] and o["default"] == a.default_value, o["key"]
    assert qnn.make_quantizer(name).options == {
        o["key"]: o["default"] for o in entry["options"]}


@pytest.mark.parametrize("name", [n for n in ops.__all__])
def test_python_wrappers_take_the_schema_defaults(name):
    """lowbit._ops keeps documented Python signatures: each argument's name and default must be
    the schema's (a default changed in one place fails here)."""
    params = [p for p in inspect.signature(getattr(ops, name)).parameters.values()
              if p.name != "backward"]
    args = schema(name).arguments
    assert [p.name for p in params] == [a.name for a in args]
    for p, a in zip(params, args):
        want = a.default_value if a.has_default_value() else inspect.Parameter.empty
        assert p.default == want, (p.name, p.default, want)


def grid():
    # Steps of 0.001 in [-3, 3): every threshold and clip default of the catalogue is resolved.
    return torch.linspace(-3, 3, 6000, dtype=torch.float64).reshape(3, 2000).float()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("role", ["input", "kernel"])
def test_a_quantizer_by_name_is_its_operator_with_the_defaults(name, role):
    """Forward and gradient of the quantizer object equal the Python wrapper called with only the
    tensor arguments, case by case (the kernel role changes the axis default only)."""
    q = qnn.make_quantizer(name, role=role)
    x1, x2 = grid().requires_grad_(), grid().requires_grad_()
    y1 = q(x1)
    if name == "ttq_weight":
        y2 = ops.ttq_weight(x2, torch.tensor(1.0), torch.tensor(1.0))
    elif role == "kernel" and q.options.get("axis") == 0:
        y2 = getattr(ops, name)(x2, axis=0)
    else:
        y2 = getattr(ops, name)(x2)
    assert torch.equal(y1, y2)
    g = torch.linspace(-1, 1, x1.numel()).reshape(x1.shape)
    (y1 * g).sum().backward()
    (y2 * g).sum().backward()
    assert torch.equal(x1.grad, x2.grad)


@pytest.mark.parametrize("spec,word", [
    ("dorefa(k_bit=0)", "k_bit"),
    ("linear_mid_tread_half(bit=40)", "bit"),
    ({"name": "linear_mid_tread_half", "max_value": float("inf")}, "max_value"),
    ("ste_sign(clip_value=-1)", "clip_value"),
    ({"name": "ste_tern", "clip_value": float("nan")}, "clip_value"),
    ("dorefa(mode=bias)", "bias"),
])
def test_value_checks_are_cs_and_raise_value_errors_naming_the_option(spec, word):
    with pytest.raises(ValueError) as info:
        qnn.make_quantizer(spec)
    assert word in str(info.value) and "Exception raised" not in str(info.value)


def test_precision_comes_from_the_bit_option():
    assert qnn.make_quantizer("dorefa(k_bit=5)").precision == 5
    assert qnn.make_quantizer("linear_mid_tread_half(bit=3)").precision == 3
    assert lowbit.nn.make_quantizer("ttq_weight").precision == 2
