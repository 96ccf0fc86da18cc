"""Blueoil quantizers (spec section 3): mean scaling, linear mid-tread half, TWN, TTQ."""

import pytest
import torch

import lowbit
import reference as ref
from helpers import (F32, F64, assert_close, assert_exact, assert_sign_exact, assert_sum_close,
                     autograd, clear_of, gen, int_grad, normal, t32)

INF = torch.tensor(float("inf"))


# --------------------------------------------------------------------------------------------------
# binary mean scaling


def test_binary_mean_scaling_exact():
    sgn = torch.where(torch.randn(6, 7, generator=gen(1)) >= 0, 1.0, -1.0)
    x = sgn * 0.75
    x[0, 0] = 0.75
    x[0, 1] = -0.75
    g = normal(x.shape, seed=2)
    y, dx, _ = autograd(lambda v: lowbit.binary_mean_scaling(v), x, g)
    assert_exact(y, x, x)
    assert_exact(dx, g, x, "identity gradient")
    x2 = t32([0.0, -0.0, 2.0, -2.0])  # mean 1, sign0(0) = +1
    assert lowbit.binary_mean_scaling(x2).tolist() == [1.0, 1.0, 1.0, -1.0]


@pytest.mark.parametrize("shape", [(1,), (7,), (33, 17), (3, 3, 16, 32), (1000003,)], ids=str)
def test_binary_mean_scaling_random(shape):
    x = torch.randn(shape, generator=gen(3))
    g = normal(shape, seed=4)
    y, dx, _ = autograd(lambda v: lowbit.binary_mean_scaling(v), x, g)
    exp = ref.binary_mean_scaling(x)
    assert_close(y, exp, 1e-6, 0.0, x)
    assert_sign_exact(y, exp)
    assert torch.unique(y.abs()).numel() == 1, "one scale for the whole tensor"
    assert_exact(dx, g, x)


@pytest.mark.parametrize("axis", [-1, 0, 1, 2, 3, -2])
def test_binary_channel_wise_mean_scaling_axis_exact(axis):
    shape = (3, 3, 4, 8)  # HWIO
    ax = axis % 4
    mag = (torch.arange(shape[ax], dtype=F32) + 1) * 0.25
    view = [1] * 4
    view[ax] = shape[ax]
    sgn = torch.where(torch.randn(shape, generator=gen(5)) >= 0, 1.0, -1.0)
    x = sgn * mag.reshape(view)
    g = normal(shape, seed=6)
    y, dx, _ = autograd(lambda v: lowbit.binary_channel_wise_mean_scaling(v, axis=axis), x, g)
    assert_exact(y, x, x, f"axis {axis}")
    assert_exact(dx, g, x)


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("shape", [(5, 16), (3, 3, 17, 33), (2, 1000)], ids=str)
def test_binary_channel_wise_mean_scaling_random(shape, axis):
    x = torch.randn(shape, generator=gen(7))
    y = lowbit.binary_channel_wise_mean_scaling(x, axis=axis)
    exp = ref.binary_channel_wise_mean_scaling(x, axis)
    assert_close(y, exp, 1e-6, 0.0, x)
    assert_sign_exact(y, exp)
    # one scale per index of axis
    per_index = y.abs().transpose(0, axis % len(shape)).reshape(shape[axis], -1)
    assert torch.all(per_index == per_index[:, :1])


def test_binary_channel_wise_default_axis_is_last():
    x = torch.randn(3, 3, 4, 8, generator=gen(8))
    assert_exact(lowbit.binary_channel_wise_mean_scaling(x),
                 lowbit.binary_channel_wise_mean_scaling(x, axis=3), x)


# --------------------------------------------------------------------------------------------------
# linear mid-tread half


@pytest.mark.parametrize("max_value", [2.0, 1.0, 6.0, 0.7, 1.7, 4.3])
@pytest.mark.parametrize("bit", [1, 2, 3, 4, 5, 8, 16, 32])
def test_linear_mid_tread_half(bit, max_value):
    mv = t32(max_value)
    n = 2 ** min(bit, 16) - 1
    k = torch.arange(0, min(n, 200) + 1, dtype=F32)
    x = torch.cat([
        t32([0.0, -0.0, -1.0, 1e-30, -1e-30]), torch.stack([mv, torch.nextafter(mv, INF),
                                                            torch.nextafter(mv, -INF), mv * 2]),
        (k + 0.5) / n * mv, k / n * mv, torch.rand(300, generator=gen(9)) * (mv * 1.4) - 0.2 * mv,
    ])
    g = normal(x.shape, seed=10)
    y, dx, _ = autograd(lambda v: lowbit.linear_mid_tread_half(v, bit=bit, max_value=max_value), x, g)
    assert_exact(y, ref.linear_mid_tread_half(x, bit, max_value), x)
    assert_exact(dx, ref.linear_mid_tread_half_grad(g, x, bit, max_value), x)


def test_linear_mid_tread_half_values():
    # bit 2, max 6: 1.0 / 6 * 3 = 0.5 exactly in float32 -> floor(1.0) = 1 -> 1/3 * 6 = 2 (ties up)
    y = lowbit.linear_mid_tread_half(t32([1.0, 3.0, -2.0, 7.0, 0.99]), bit=2, max_value=6.0)
    assert y.tolist() == [2.0, 4.0, 0.0, 6.0, 0.0]
    # bit 32: plain clip
    x = t32([-1.0, 0.123, 1.999, 2.5])
    assert lowbit.linear_mid_tread_half(x, bit=32, max_value=2.0).tolist() == \
        [0.0, float(t32(0.123)), float(t32(1.999)), 2.0]


def test_linear_mid_tread_half_grad_open_interval():
    mv = t32(2.0)
    x = torch.stack([t32(0.0), t32(-0.0), mv, t32(1e-30),
                     torch.nextafter(mv, -INF), torch.nextafter(mv, INF), t32(-1e-30), t32(1.0)])
    g = t32([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0])
    _, dx, _ = autograd(lambda v: lowbit.linear_mid_tread_half(v), x, g)
    assert dx.tolist() == [0.0, 0.0, 0.0, 8.0, 16.0, 0.0, 0.0, 128.0]


@pytest.mark.parametrize("dtype", [F64, torch.float16, torch.bfloat16], ids=str)
def test_linear_mid_tread_half_dtypes(dtype):
    x = (torch.rand(500, generator=gen(11), dtype=F64) * 2.6 - 0.3).to(dtype)
    g = normal((500,), seed=12, dtype=dtype)
    y, dx, _ = autograd(lambda v: lowbit.linear_mid_tread_half(v, bit=3, max_value=1.7), x, g)
    assert_exact(y, ref.linear_mid_tread_half(x, 3, 1.7), x)
    assert_exact(dx, ref.linear_mid_tread_half_grad(g, x, 3, 1.7), x)


# --------------------------------------------------------------------------------------------------
# TWN


def test_twn_weight_exact():
    x = t32([2.0, -2.0, 0.5, -0.5, 0.0, 1e-3])
    y, dx, _ = autograd(lambda v: lowbit.twn_weight(v), x, torch.ones(6))
    assert y.tolist() == [2.0, -2.0, 0.0, 0.0, 0.0, 0.0]
    assert dx.tolist() == [1.0] * 6
    # a = mean |x| over the kept elements: (3 + 1) / 2 = 2
    x = t32([3.0, -1.0, 0.1, -0.1])  # mean 1.05, D = 0.735
    assert lowbit.twn_weight(x).tolist() == [2.0, -2.0, 0.0, 0.0]


def test_twn_weight_all_zero_and_threshold_zero():
    assert lowbit.twn_weight(torch.zeros(7)).tolist() == [0.0] * 7
    x = t32([0.0, 1.0, -3.0])  # threshold 0: every non-zero element is kept, a = 2
    assert lowbit.twn_weight(x, threshold=0.0).tolist() == [0.0, 2.0, -2.0]


@pytest.mark.parametrize("threshold", [0.7, 0.3, 1.0, 1.5])
@pytest.mark.parametrize("shape", [(17,), (3, 3, 16, 8), (100003,)], ids=str)
def test_twn_weight_random(shape, threshold):
    x = clear_of(torch.randn(shape, generator=gen(13)), lambda v: ref.twn_threshold(v, threshold))
    g = normal(shape, seed=14)
    y, dx, _ = autograd(lambda v: lowbit.twn_weight(v, threshold=threshold), x, g)
    exp = ref.twn_weight(x, threshold)
    assert_close(y, exp, 1e-6, 0.0, x)
    assert_sign_exact(y, exp)
    assert_exact(dx, g, x)


# --------------------------------------------------------------------------------------------------
# TTQ


def test_ttq_weight_boundaries():
    # D = float32(0.05) * 4 = float32(0.2) exactly: +-D itself is not beyond the threshold
    d = t32(0.2)
    x = torch.stack([t32(4.0), d, -d, torch.nextafter(d, INF), -torch.nextafter(d, INF),
                     torch.nextafter(d, -INF), t32(0.0), t32(-4.0)])
    pos, neg = t32(1.5), t32(0.25)
    g = t32([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0])
    y, dx, (dp, dn) = autograd(lambda v, p, n: lowbit.ttq_weight(v, p, n), x, g, (pos, neg))
    assert y.tolist() == [1.5, 0.0, 0.0, 1.5, -0.25, 0.0, 0.0, -0.25]
    assert dx.tolist() == [1.5, 2.0, 4.0, 12.0, 4.0, 32.0, 64.0, 32.0]
    assert float(dp) == 1.0 + 8.0
    assert float(dn) == 16.0 + 128.0  # not negated


def test_ttq_weight_threshold_in_float32():
    """D = threshold * max|x| in float32: with max|x| = 1, D = float32(0.05) and x = float32(0.05)
    is not beyond it (a float64 threshold 0.05 would put it above)."""
    x = t32([1.0, 0.05, -0.05])
    y = lowbit.ttq_weight(x, t32(2.0), t32(3.0), threshold=0.05)
    assert y.tolist() == [2.0, 0.0, 0.0]


@pytest.mark.parametrize("threshold", [0.05, 0.0, 0.3, 1.0])
@pytest.mark.parametrize("shape", [(1,), (17,), (3, 3, 16, 8), (100003,)], ids=str)
def test_ttq_weight_random(shape, threshold):
    x = torch.randn(shape, generator=gen(15))
    pos, neg = t32(1.3), t32(0.7)
    g = int_grad(shape, seed=16)
    y, dx, (dp, dn) = autograd(lambda v, p, n: lowbit.ttq_weight(v, p, n, threshold=threshold), x, g,
                               (pos, neg))
    assert_exact(y, ref.ttq_weight(x, pos, neg, threshold), x)
    edx, edp, edn = ref.ttq_weight_grad(g, x, pos, neg, threshold)
    assert_exact(dx, edx, x)
    assert_exact(dp, edp, what="d/dpositive")
    assert_exact(dn, edn, what="d/dnegative")
    # random (non-integer) gradients: sums to a tight tolerance
    g = normal(shape, seed=17)
    _, dx, (dp, dn) = autograd(lambda v, p, n: lowbit.ttq_weight(v, p, n, threshold=threshold), x, g,
                               (pos, neg))
    edx, edp, edn = ref.ttq_weight_grad(g, x, pos, neg, threshold)
    assert_exact(dx, edx, x)
    d = ref.ttq_threshold(x, threshold)
    assert_sum_close(dp, edp, (g.double().abs() * (x > d)).sum(), F32, "d/dpositive")
    assert_sum_close(dn, edn, (g.double().abs() * (x < -d)).sum(), F32, "d/dnegative")


def test_ttq_weight_one_element_parameters():
    x = torch.randn(40, generator=gen(18))
    pos, neg = t32([1.1]), t32([0.9])
    g = int_grad((40,), seed=19)
    y, dx, (dp, dn) = autograd(lambda v, p, n: lowbit.ttq_weight(v, p, n), x, g, (pos, neg))
    assert_exact(y, ref.ttq_weight(x, pos, neg), x)
    edx, edp, edn = ref.ttq_weight_grad(g, x, pos, neg)
    assert_exact(dx, edx, x)
    assert_exact(dp, edp)
    assert_exact(dn, edn)


@pytest.mark.parametrize("dtype", [F64, torch.float16, torch.bfloat16], ids=str)
def test_ttq_weight_dtypes(dtype):
    x = torch.randn(300, generator=gen(20), dtype=F64).to(dtype)
    pos, neg = torch.tensor(1.25, dtype=dtype), torch.tensor(0.5, dtype=dtype)
    g = int_grad((300,), seed=21, dtype=dtype)
    y, dx, (dp, dn) = autograd(lambda v, p, n: lowbit.ttq_weight(v, p, n), x, g, (pos, neg))
    assert_exact(y, ref.ttq_weight(x, pos, neg), x)
    edx, edp, edn = ref.ttq_weight_grad(g, x, pos, neg)
    assert_exact(dx, edx, x)
    assert_exact(dp, edp)
    assert_exact(dn, edn)


@pytest.mark.parametrize("dtype", [F32, F64, torch.float16], ids=str)
def test_ttq_weight_backward_from_the_saved_max(dtype):
    """Autograd saves max|x| in the forward (_ttq_weight_with_max) and its backward reads x once
    (_ttq_weight_backward_from_max): the same bits as the backward that computes it again."""
    ops = torch.ops.lowbit
    x = torch.randn(3000, generator=gen(22), dtype=F64).to(dtype)
    pos, neg = torch.tensor(1.25, dtype=dtype), torch.tensor(0.5, dtype=dtype)
    g = normal((3000,), seed=23).to(dtype)
    y, m = ops._ttq_weight_with_max(x, pos, neg, 0.3)
    compute = F64 if dtype == F64 else F32
    assert m.dtype == compute and m.dim() == 0
    assert float(m) == float(x.abs().max())
    assert_exact(y, lowbit.ttq_weight(x, pos, neg, threshold=0.3), x)
    want = ops._ttq_weight_backward(g, x, pos, neg, 0.3)
    got = ops._ttq_weight_backward_from_max(g, x, pos, neg, 0.3, m)
    for w, o in zip(want, got):
        assert_exact(o, w, x)
    _, dx, (dp, dn) = autograd(lambda v, p, n: lowbit.ttq_weight(v, p, n, threshold=0.3), x, g,
                               (pos, neg))
    assert_exact(dx, want[0], x)
    assert_exact(dp, want[1])
    assert_exact(dn, want[2])
    # The given maximum is the one used: with max/2 the threshold halves, elements between move out
    # of the zero band and get the scales' gradients.
    half = ops._ttq_weight_backward_from_max(g, x, pos, neg, 0.3, m / 2)
    assert_exact(half[0], ops._ttq_weight_backward(g, x, pos, neg, 0.15)[0], x)
    with pytest.raises(TypeError, match="max_abs must have the compute type"):
        ops._ttq_weight_backward_from_max(g, x, pos, neg, 0.3, m.to(F64 if compute == F32 else F32))
    with pytest.raises(ValueError, match="max_abs must have 1 element"):
        ops._ttq_weight_backward_from_max(g, x, pos, neg, 0.3, m.repeat(2))
