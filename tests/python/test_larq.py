"""Larq quantizers (spec section 2): signs of zero, clip boundaries, worked values, axis, dorefa."""

import pytest
import torch

import lowbit
import reference as ref
from helpers import (F32, F64, assert_close, assert_exact, assert_sign_exact, autograd,
                     clear_of, clear_of_dorefa_ties, gen, normal, t32)

INF = torch.tensor(float("inf"))


def around(v):
    """v, its float32 neighbours and the same for -v (v a float32-representable value)."""
    v = t32(v)
    pts = [v, torch.nextafter(v, INF), torch.nextafter(v, -INF)]
    return torch.stack(pts + [-p for p in pts])


# --------------------------------------------------------------------------------------------------
# forward: sign of zero


def test_sign0_of_zero_is_plus_one():
    x = t32([0.0, -0.0, 1e-30, -1e-30, 3.0, -3.0])
    exp = [1.0, 1.0, 1.0, -1.0, 1.0, -1.0]
    assert lowbit.ste_sign(x).tolist() == exp
    assert lowbit.approx_sign(x).tolist() == exp
    assert lowbit.swish_sign(x).tolist() == exp
    assert lowbit.ste_sign(x, clip_value=None).tolist() == exp


def test_heaviside_of_zero_is_zero():
    x = t32([0.0, -0.0, 1e-30, -1e-30, 3.0])
    assert lowbit.ste_heaviside(x).tolist() == [0.0, 0.0, 1.0, 0.0, 1.0]


def test_ste_tern_of_zero_is_zero():
    x = t32([0.0, -0.0, 0.5, -0.5])
    assert lowbit.ste_tern(x).tolist() == [0.0, 0.0, 1.0, -1.0]
    assert lowbit.ste_tern(x, threshold_value=0.0).tolist() == [0.0, 0.0, 1.0, -1.0]


def test_magnitude_aware_sign_of_zero_is_plus_scale():
    x = t32([[0.0, 2.0], [-0.0, -2.0], [3.0, 2.0], [1.0, 2.0]])
    y = lowbit.magnitude_aware_sign(x)
    assert y.tolist() == [[1.0, 2.0], [1.0, -2.0], [1.0, 2.0], [1.0, 2.0]]


# --------------------------------------------------------------------------------------------------
# clipped straight-through estimator


@pytest.mark.parametrize("clip", [1.0, 0.5, 2.5, 1e-3, 0.1, 0.3])
@pytest.mark.parametrize("op", ["ste_sign", "ste_heaviside", "ste_tern", "magnitude_aware_sign"])
def test_clipped_ste_closed_interval(op, clip):
    """g * 1[|x| <= clip], clip rounded to float32 first (0.1, 0.3 and 1e-3 are not representable:
    x = float32(clip) is inside, its upper neighbour outside)."""
    c = float(t32(clip))
    x = torch.cat([around(c), t32([0.0, 10.0, -10.0])]).reshape(-1, 1)
    g = torch.arange(1.0, x.numel() + 1).reshape(-1, 1)
    fns = {
        "ste_sign": lambda v: lowbit.ste_sign(v, clip_value=clip),
        "ste_heaviside": lambda v: lowbit.ste_heaviside(v, clip_value=clip),
        "ste_tern": lambda v: lowbit.ste_tern(v, clip_value=clip),
        "magnitude_aware_sign": lambda v: lowbit.magnitude_aware_sign(v, clip_value=clip, axis=0),
    }
    y, dx, _ = autograd(fns[op], x, g)
    inside = (x.abs() <= t32(clip)).to(F32)
    if op == "magnitude_aware_sign":
        s = ref.magnitude_aware_sign_scale(x, 0)  # axis 0: one scale per row = |x|
        assert_exact(dx, s * (g * inside), x)
    else:
        assert_exact(dx, g * inside, x)
    # inside: x = +-float32(clip) and the inner neighbours; outside: the outer ones and +-10
    assert inside.reshape(-1).tolist() == [1, 0, 1, 1, 0, 1, 1, 0, 0]


@pytest.mark.parametrize("op", ["ste_sign", "ste_heaviside", "ste_tern", "magnitude_aware_sign"])
def test_clip_value_none_is_identity(op):
    x = t32([-1e6, -2.0, -1.0, 0.0, 0.5, 1.0, 1.5, 1e6])
    g = normal(x.shape, seed=1)
    fns = {
        "ste_sign": lambda v: lowbit.ste_sign(v, clip_value=None),
        "ste_heaviside": lambda v: lowbit.ste_heaviside(v, clip_value=None),
        "ste_tern": lambda v: lowbit.ste_tern(v, clip_value=None),
        "magnitude_aware_sign": lambda v: lowbit.magnitude_aware_sign(v, clip_value=None, axis=0),
    }
    _, dx, _ = autograd(fns[op], x, g)
    if op == "magnitude_aware_sign":
        assert_exact(dx, x.abs() * g, x)
    else:
        assert_exact(dx, g, x)


def test_approx_sign_grad():
    x = torch.cat([around(1.0), around(0.5), t32([0.0, -0.0, 0.25, 0.9, -0.3, 2.0, 1e-7])])
    x = torch.cat([x, torch.randn(200, generator=gen(2)) * 0.8])
    g = normal(x.shape, seed=3)
    y, dx, _ = autograd(lambda v: lowbit.approx_sign(v), x, g)
    assert_exact(y, ref.approx_sign(x), x)
    assert_exact(dx, ref.approx_sign_grad(g, x), x)
    ones = torch.ones(4)
    _, d, _ = autograd(lambda v: lowbit.approx_sign(v), t32([0.0, 0.5, 1.0, 1.5]), ones)
    assert d.tolist() == [2.0, 1.0, 0.0, 0.0]


# --------------------------------------------------------------------------------------------------
# swish_sign


def test_swish_sign_grad_worked_values():
    x = t32([0.0, 0.5, -0.5])
    _, dx, _ = autograd(lambda v: lowbit.swish_sign(v, beta=5.0), x, torch.ones(3))
    assert abs(float(dx[0]) - 5.0) < 1e-6
    assert abs(float(dx[1]) - (-0.084622)) < 1e-6
    assert abs(float(dx[2]) - (-0.084622)) < 1e-6


@pytest.mark.parametrize("beta", [1.0, 2.5, 5.0, 10.0, 0.3])
def test_swish_sign_grad(beta):
    x = torch.cat([torch.randn(500, generator=gen(4)) * 2, t32([0.0, 50.0, -50.0, 1e3, -1e3])])
    g = normal(x.shape, seed=5)
    y, dx, _ = autograd(lambda v: lowbit.swish_sign(v, beta=beta), x, g)
    assert_exact(y, ref.swish_sign(x), x)
    exp = ref.swish_sign_grad(g, x, beta)
    assert_close(dx, exp, 1e-5, 1e-6 * float(exp.abs().max()), x)
    assert torch.isfinite(dx).all()
    # the gradient is not clipped and goes negative
    assert bool((dx < 0).any())


# --------------------------------------------------------------------------------------------------
# magnitude_aware_sign: one scale per index of axis


@pytest.mark.parametrize("axis", [-1, 0, 1, 2, -2, -3])
def test_magnitude_aware_sign_axis_exact(axis):
    shape = (3, 4, 5)
    ax = axis % 3
    # |x| is constant along every slice of `axis`: the means are exact
    mag = (torch.arange(shape[ax], dtype=F32) + 1) * 0.5
    view = [1, 1, 1]
    view[ax] = shape[ax]
    sgn = torch.where(torch.randn(shape, generator=gen(6)) >= 0, 1.0, -1.0)
    x = sgn * mag.reshape(view)
    g = normal(shape, seed=7)
    y, dx, _ = autograd(lambda v: lowbit.magnitude_aware_sign(v, axis=axis), x, g)
    assert_exact(y, x, x, f"axis {axis}")
    s = mag.reshape(view).expand(shape)
    assert_exact(dx, s * (g * (x.abs() <= 1.0).to(F32)), x, f"axis {axis} grad")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("shape,axis", [((3, 5, 17), 1), ((40, 33), -1), ((6,), 0)], ids=str)
def test_magnitude_aware_sign_backward_from_the_saved_scale(dtype, shape, axis):
    """Autograd saves the scales mean(|x|) in the forward (_magnitude_aware_sign_with_scale) and
    its backward reads x once (_magnitude_aware_sign_backward_scaled): the same bits as the
    backward that computes the scales again."""
    ops = torch.ops.lowbit
    x = (torch.randn(shape, generator=gen(23)) * 0.9).to(dtype)
    g = normal(shape, seed=24).to(dtype)
    y, s = ops._magnitude_aware_sign_with_scale(x, axis)
    compute = torch.float64 if dtype == F64 else F32
    assert s.dtype == compute and s.numel() == shape[axis]
    assert_close(s.reshape(-1), ref.magnitude_aware_sign_scale(x, axis).to(compute).reshape(-1),
                 1e-6, 0.0, x)
    assert_exact(y, lowbit.magnitude_aware_sign(x, axis=axis), x)
    for clip in (1.0, None):
        want = ops._magnitude_aware_sign_backward(g, x, clip, axis)
        assert_exact(ops._magnitude_aware_sign_backward_scaled(g, x, s, clip, axis), want, x)
        _, dx, _ = autograd(lambda v: lowbit.magnitude_aware_sign(v, clip_value=clip, axis=axis),
                            x, g)
        assert_exact(dx, want, x)
    # The given scales are the ones used: twice them doubles every gradient (a power of 2).
    if dtype != torch.float16:
        assert_exact(ops._magnitude_aware_sign_backward_scaled(g, x, s * 2, None, axis), want * 2, x)
    with pytest.raises(TypeError, match="scale must have the compute type"):
        ops._magnitude_aware_sign_backward_scaled(g, x, s.to(torch.float64 if compute == F32
                                                               else F32), 1.0, axis)
    with pytest.raises(ValueError, match=f"scale must have {shape[axis]} element"):
        ops._magnitude_aware_sign_backward_scaled(g, x, s.repeat(2), 1.0, axis)
    with pytest.raises(ValueError, match="clip_value"):
        ops._magnitude_aware_sign_backward_scaled(g, x, s, -1.0, axis)


@pytest.mark.parametrize("shape,axis", [(s, a) for s in [(7,), (4, 9), (3, 5, 17), (2, 3, 3, 8)]
                                        for a in [-1, 0, 1, -2] if -len(s) <= a < len(s)], ids=str)
def test_magnitude_aware_sign_random(shape, axis):
    x = torch.randn(shape, generator=gen(8)) * 0.9
    g = normal(shape, seed=9)
    y, dx, _ = autograd(lambda v: lowbit.magnitude_aware_sign(v, clip_value=1.0, axis=axis), x, g)
    exp = ref.magnitude_aware_sign(x, 1.0, axis)
    assert_close(y, exp, 1e-6, 0.0, x)
    assert_sign_exact(y, exp)
    # one distinct scale per index of axis
    s = ref.magnitude_aware_sign_scale(x, axis)
    assert s.numel() == shape[axis]
    expd = ref.magnitude_aware_sign_grad(g, x, 1.0, axis)
    assert_close(dx, expd, 1e-6, 0.0, x)
    assert_sign_exact(dx, expd)


# --------------------------------------------------------------------------------------------------
# ste_tern


@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.1, 1.0, 0.0, 1e-3])
def test_ste_tern_threshold_boundaries(threshold):
    d = float(t32(threshold))
    x = torch.cat([around(d) if d > 0 else t32([0.0]), t32([0.0, 2.0, -2.0, 0.01, -0.01])])
    x = torch.cat([x, torch.randn(300, generator=gen(10)) * 0.5])
    g = normal(x.shape, seed=11)
    y, dx, _ = autograd(lambda v: lowbit.ste_tern(v, threshold_value=threshold), x, g)
    exp = ref.ste_tern(x, threshold)
    assert_exact(y, exp, x)
    # sign(x) where |x| >= D else 0
    dd = t32(threshold)
    assert torch.equal(exp, torch.where(x.abs() >= dd, torch.sign(x), torch.zeros_like(x)))
    assert_exact(dx, ref.ste_tern_grad(g, x, threshold), x)


def test_ste_tern_twn_exact():
    x = t32([2.0, -2.0, 0.5, -1.5])  # mean|x| = 1.5, D = 0.7 * 1.5 = 1.05
    assert lowbit.ste_tern(x, ternary_weight_networks=True).tolist() == [1.0, -1.0, 0.0, -1.0]
    # threshold_value is ignored with ternary_weight_networks
    assert lowbit.ste_tern(x, threshold_value=3.0, ternary_weight_networks=True).tolist() == \
        [1.0, -1.0, 0.0, -1.0]


@pytest.mark.parametrize("shape", [(100,), (16, 33), (3, 3, 8, 16)], ids=str)
def test_ste_tern_twn_random(shape):
    x = torch.randn(shape, generator=gen(12))
    x = clear_of(x, lambda v: ref.ste_tern_threshold(v, 0.05, True))
    g = normal(shape, seed=13)
    y, dx, _ = autograd(lambda v: lowbit.ste_tern(v, ternary_weight_networks=True, clip_value=0.8),
                        x, g)
    assert_exact(y, ref.ste_tern(x, 0.05, True, 0.8), x)
    assert_exact(dx, ref.ste_tern_grad(g, x, 0.05, True, 0.8), x)
    assert bool((y == 0).any()) and bool((y == 1).any()) and bool((y == -1).any())


# --------------------------------------------------------------------------------------------------
# dorefa


def test_dorefa_weights_worked_value():
    x = t32([0.0, 0.7, -0.7, 2.0, -2.0])
    y = lowbit.dorefa(x, k_bit=2, mode="weights")
    assert abs(float(y[0]) - 1.0 / 3.0) < 1e-6
    assert_exact(y, ref.dorefa(x, 2, "weights"), x)
    assert float(y[3]) == 1.0 and float(y[4]) == -1.0
    # 1 bit: p * n = 0.5 rounds half-even to 0 -> -1
    assert float(lowbit.dorefa(x, k_bit=1, mode="weights")[0]) == -1.0


def test_dorefa_activations_half_even():
    x = t32([0.5, -0.0, 0.0, 1.0, -0.5, 1.5])
    assert lowbit.dorefa(x, k_bit=1).tolist() == [0.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    y = lowbit.dorefa(x, k_bit=2)
    assert_exact(y, ref.dorefa(x, 2), x)
    assert float(y[0]) == float(t32(2.0) / t32(3.0))  # 1.5 -> 2, not 1


@pytest.mark.parametrize("k_bit", [1, 2, 3, 4, 5, 8, 12, 16])
def test_dorefa_activations(k_bit):
    n = 2 ** k_bit - 1
    k = torch.arange(0, n + 1, dtype=F32)
    ties = (k + 0.5) / n  # c * n lands on (or next to) a .5
    x = torch.cat([around(1.0), t32([0.0, -0.0, 0.5, -1e-30, 1e-30]), ties, k / n,
                   torch.rand(400, generator=gen(14)) * 1.4 - 0.2])
    g = normal(x.shape, seed=15)
    y, dx, _ = autograd(lambda v: lowbit.dorefa(v, k_bit=k_bit, mode="activations"), x, g)
    assert_exact(y, ref.dorefa(x, k_bit, "activations"), x)
    assert_exact(dx, ref.dorefa_grad(g, x, k_bit, "activations"), x)
    # closed interval [0, 1]
    _, d, _ = autograd(lambda v: lowbit.dorefa(v, k_bit=k_bit), around(1.0)[:3], torch.ones(3))
    assert d.tolist() == [1.0, 0.0, 1.0]
    _, d, _ = autograd(lambda v: lowbit.dorefa(v, k_bit=k_bit),
                       t32([0.0, -0.0, -1e-30, 1e-30]), torch.ones(4))
    assert d.tolist() == [1.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize("k_bit", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("shape", [(50,), (3, 3, 4, 8)], ids=str)
def test_dorefa_weights(k_bit, shape):
    x = torch.randn(shape, generator=gen(16)) * 0.8
    x.view(-1)[0] = 0.0
    x = clear_of_dorefa_ties(x, k_bit)
    g = normal(shape, seed=17)
    y, dx, _ = autograd(lambda v: lowbit.dorefa(v, k_bit=k_bit, mode="weights"), x, g)
    assert_exact(y, ref.dorefa(x, k_bit, "weights"), x)
    exp = ref.dorefa_grad(g, x, k_bit, "weights")
    assert_close(dx, exp, 1e-5, 1e-6 * float(exp.abs().max()), x)
    # outputs are the 2^k levels 2 i / n - 1
    n = 2 ** k_bit - 1
    lv = torch.round((y.double() + 1) * n / 2)
    assert torch.all((lv >= 0) & (lv <= n))


def test_dorefa_weights_all_zero_input():
    x = torch.zeros(5)
    g = normal((5,), seed=18)
    for k_bit in (1, 2, 3):
        y, dx, _ = autograd(lambda v: lowbit.dorefa(v, k_bit=k_bit, mode="weights"), x, g)
        assert_exact(y, ref.dorefa(x, k_bit, "weights"), x)
        assert_exact(dx, torch.zeros(5), x, "M == 0 gives a zero gradient")


def test_dorefa_float64():
    x = torch.randn(200, generator=gen(19), dtype=F64)
    g = normal((200,), seed=20, dtype=F64)
    y, dx, _ = autograd(lambda v: lowbit.dorefa(v, k_bit=3), x, g)
    assert_exact(y, ref.dorefa(x, 3), x)
    assert_exact(dx, ref.dorefa_grad(g, x, 3), x)
    x = clear_of_dorefa_ties(x, 3)
    y, dx, _ = autograd(lambda v: lowbit.dorefa(v, k_bit=3, mode="weights"), x, g)
    assert_exact(y, ref.dorefa(x, 3, "weights"), x)
    assert_close(dx, ref.dorefa_grad(g, x, 3, "weights"), 1e-12, 1e-14, x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_dorefa_weights_backward_from_the_saved_max(dtype):
    """Autograd's weights mode saves M = max|tanh(x)| in the forward (_dorefa_weights_with_max) and
    its backward reads x once (_dorefa_weights_backward): the same bits as the backward that
    computes M again from x."""
    ops = torch.ops.lowbit
    x = (torch.randn(3000, generator=gen(21)) * 1.5).to(dtype)
    g = normal((3000,), seed=22).to(dtype)
    y, m = ops._dorefa_weights_with_max(x, 3)
    compute = torch.float64 if dtype == F64 else F32
    assert m.dtype == compute and m.dim() == 0
    assert_close(m, ref.dorefa_max_abs_tanh(x).to(compute), 1e-6, 0.0, x)
    assert_exact(y, lowbit.dorefa(x, 3, "weights"), x)
    want = ops._dorefa_backward(g, x, 3, "weights")
    assert_exact(ops._dorefa_weights_backward(g, x, m), want, x)
    _, dx, _ = autograd(lambda v: lowbit.dorefa(v, k_bit=3, mode="weights"), x, g)
    assert_exact(dx, want, x)
    # The given M is the one used: twice M halves every gradient (exactly, a power of 2, where
    # the result's type has no subnormals in the way: float16's start at 6e-5).
    if dtype != torch.float16:
        assert_exact(ops._dorefa_weights_backward(g, x, m * 2), want / 2, x)
    with pytest.raises(TypeError, match="max_abs_tanh must have the compute type"):
        ops._dorefa_weights_backward(g, x, m.to(torch.float64 if compute == F32 else F32))
    with pytest.raises(ValueError, match="max_abs_tanh must have 1 element"):
        ops._dorefa_weights_backward(g, x, m.repeat(2))
    with pytest.raises(ValueError, match="k_bit"):
        ops._dorefa_weights_with_max(x, 0)


@pytest.mark.parametrize("dtype,values,index", [
    (torch.float16, [-1.0341796875, -1.2275390625, -0.70458984375, -0.1407470703125, 0.9541015625,
                     -0.4482421875, -2.158203125, 0.744140625, -0.8779296875, -1.6884765625,
                     1.458984375, -0.64013671875], 2),
    (torch.bfloat16, [-1.0, -0.7265625, -0.35546875, -0.271484375, 2.15625, 0.478515625, -2.953125,
                      -0.357421875], 1),
], ids=["float16", "bfloat16"])
def test_ste_tern_twn_half_threshold_in_float32(dtype, values, index):
    """Half inputs are computed in float32: D = 0.7 * mean|x| keeps the float32 mean. Here
    x[index] lies just above that D (so it maps to sign(x)); a mean first rounded to the half type
    would move D above |x[index]|."""
    x = torch.tensor(values, dtype=dtype)
    d = ref.ste_tern_threshold(x, 0.05, True)
    assert d.dtype == F32 and float(x[index].float().abs()) >= float(d)
    y = lowbit.ste_tern(x, ternary_weight_networks=True)
    assert_exact(y, ref.ste_tern(x, 0.05, True), x)
    assert float(y[index]) == -1.0


def test_per_axis_scales_of_tensors_with_an_empty_dimension():
    """A zero-size dimension after the axis (no element per channel) gives empty outputs and
    gradients, not a division by zero."""
    for shape, axis in (((4, 0), 0), ((3, 0, 2), 1), ((0, 5), -1)):
        x = torch.zeros(shape, requires_grad=True)
        y = lowbit.magnitude_aware_sign(x, axis=axis)
        (dx,) = torch.autograd.grad(y, x, torch.ones(shape))
        assert y.shape == shape and dx.shape == shape
        assert lowbit.binary_channel_wise_mean_scaling(x.detach(), axis=axis).shape == shape
