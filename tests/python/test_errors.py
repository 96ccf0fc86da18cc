"""Bad arguments raise RuntimeError/ValueError/TypeError with a message naming the argument."""

import pytest
import torch

import lowbit
from helpers import t32

ERRORS = (RuntimeError, ValueError, TypeError)


def raises_naming(word, fn):
    with pytest.raises(ERRORS) as info:
        fn()
    msg = str(info.value)
    assert word in msg, f"message does not name '{word}': {msg!r}"
    return msg


X = torch.randn(4, 3)
G = torch.randn(4, 3)
MN, MX = t32(-1.0), t32(1.0)
PMN, PMX = t32([-1.0, -2.0, -0.5]), t32([1.0, 2.0, 0.5])

NUM_BITS_OPS = {
    "args": lambda nb: lowbit.fake_quant_with_min_max_args(X, num_bits=nb),
    "args_gradient": lambda nb: lowbit.fake_quant_with_min_max_args_gradient(G, X, num_bits=nb),
    "vars": lambda nb: lowbit.fake_quant_with_min_max_vars(X, MN, MX, num_bits=nb),
    "vars_gradient": lambda nb: lowbit.fake_quant_with_min_max_vars_gradient(G, X, MN, MX,
                                                                             num_bits=nb),
    "per_channel": lambda nb: lowbit.fake_quant_with_min_max_vars_per_channel(X, PMN, PMX,
                                                                              num_bits=nb),
    "per_channel_gradient": lambda nb: lowbit.fake_quant_with_min_max_vars_per_channel_gradient(
        G, X, PMN, PMX, num_bits=nb),
    "pow2_range": lambda nb: lowbit.pow2_range(MN, MX, num_bits=nb),
    "fake_quant_pow2": lambda nb: lowbit.fake_quant_pow2(X, MN, MX, num_bits=nb),
    "torch.ops args": lambda nb: torch.ops.lowbit.fake_quant_with_min_max_args(X, -6.0, 6.0, nb,
                                                                               False),
}


@pytest.mark.parametrize("num_bits", [-3, 0, 1, 17, 32])
@pytest.mark.parametrize("op", list(NUM_BITS_OPS))
def test_num_bits_out_of_range(op, num_bits):
    raises_naming("num_bits", lambda: NUM_BITS_OPS[op](num_bits))


def test_num_bits_message():
    msg = raises_naming("num_bits", lambda: lowbit.fake_quant_with_min_max_args(X, num_bits=1))
    assert "between 2 and 16" in msg


@pytest.mark.parametrize("num_bits", [2, 16])
def test_num_bits_limits_accepted(num_bits):
    for op in NUM_BITS_OPS.values():
        op(num_bits)


@pytest.mark.parametrize("lo,hi", [(1.0, 1.0), (2.0, -1.0), (0.0, 0.0), (-1.0, -1.5)])
def test_args_min_not_smaller_than_max(lo, hi):
    raises_naming("min", lambda: lowbit.fake_quant_with_min_max_args(X, min=lo, max=hi))
    raises_naming("min", lambda: lowbit.fake_quant_with_min_max_args_gradient(G, X, min=lo, max=hi))


def test_vars_min_max_wrong_size():
    bad = t32([-1.0, -2.0])
    raises_naming("min", lambda: lowbit.fake_quant_with_min_max_vars(X, bad, MX))
    raises_naming("min", lambda: lowbit.fake_quant_with_min_max_vars_gradient(G, X, bad, MX))
    raises_naming("max", lambda: lowbit.fake_quant_with_min_max_vars(X, MN, t32([1.0, 2.0])))
    raises_naming("min", lambda: lowbit.fake_quant_with_min_max_vars(X, torch.zeros(0), MX))


@pytest.mark.parametrize("bad", ["size", "rank2", "rank0", "empty"])
def test_per_channel_min_max_wrong(bad):
    m = {"size": t32([-1.0, -2.0, -0.5, -1.0]), "rank2": PMN.reshape(1, 3), "rank0": t32(-1.0),
         "empty": torch.zeros(0)}[bad]
    raises_naming("min", lambda: lowbit.fake_quant_with_min_max_vars_per_channel(X, m, PMX))
    raises_naming("min", lambda: lowbit.fake_quant_with_min_max_vars_per_channel_gradient(
        G, X, m, PMX))
    mx = m.abs()
    raises_naming("max", lambda: lowbit.fake_quant_with_min_max_vars_per_channel(X, PMN, mx))


def test_per_channel_zero_dim_input():
    with pytest.raises(ERRORS):
        lowbit.fake_quant_with_min_max_vars_per_channel(t32(0.5), t32([-1.0]), t32([1.0]))
    with pytest.raises(ERRORS):
        lowbit.fake_quant_with_min_max_vars_per_channel_gradient(t32(1.0), t32(0.5), t32([-1.0]),
                                                                 t32([1.0]))


@pytest.mark.parametrize("gshape", [(3, 4), (4, 3, 1), (12,), (4, 2)], ids=str)
def test_gradient_ops_shape_mismatch(gshape):
    g = torch.ones(gshape)
    raises_naming("gradient", lambda: lowbit.fake_quant_with_min_max_args_gradient(g, X))
    raises_naming("gradient", lambda: lowbit.fake_quant_with_min_max_vars_gradient(g, X, MN, MX))
    raises_naming("gradient", lambda: lowbit.fake_quant_with_min_max_vars_per_channel_gradient(
        g, X, PMN, PMX))


@pytest.mark.parametrize("mode", ["foo", "", "activation", "weight"])
def test_dorefa_unknown_mode(mode):
    raises_naming("mode", lambda: lowbit.dorefa(X, k_bit=2, mode=mode))


@pytest.mark.parametrize("k_bit", [0, -1])
def test_dorefa_k_bit_below_one(k_bit):
    raises_naming("k_bit", lambda: lowbit.dorefa(X, k_bit=k_bit))
    raises_naming("k_bit", lambda: lowbit.dorefa(X, k_bit=k_bit, mode="weights"))


def test_fake_quant_pow2_min_max_wrong_size():
    with pytest.raises(ERRORS):
        lowbit.fake_quant_pow2(X, t32([-1.0, -1.0]), t32([1.0, 1.0]))  # X has 3 channels


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool], ids=str)
def test_gradient_ops_integer_inputs(dtype):
    xi = torch.ones(4, 3).to(dtype)
    with pytest.raises(ERRORS):
        lowbit.fake_quant_with_min_max_args_gradient(G, xi)
    with pytest.raises(ERRORS):
        lowbit.fake_quant_with_min_max_vars_gradient(G, xi, MN, MX)
    with pytest.raises(ERRORS):
        lowbit.fake_quant_with_min_max_vars_per_channel_gradient(G, xi, PMN, PMX)
    with pytest.raises(ERRORS):
        lowbit.fake_quant_with_min_max_args_gradient(xi, X)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool], ids=str)
def test_pow2_integer_min_max(dtype):
    with pytest.raises(ERRORS):
        lowbit.pow2_range(torch.tensor(-1).to(dtype), torch.tensor(1).to(dtype))
    with pytest.raises(ERRORS):
        lowbit.fake_quant_pow2(X, torch.tensor(-1).to(dtype), torch.tensor(1).to(dtype))
