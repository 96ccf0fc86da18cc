"""TF fake quantization ops (spec section 1) against the reference: forward, gradients, edge cases."""

import pytest
import torch

import lowbit
import reference as ref
from helpers import (F32, F64, assert_exact, assert_sum_close, autograd,
                     fq_values_for_range, fq_values_per_channel, gen, int_grad, normal, t32)

# (min, max) pairs: symmetric, the spec's worked ranges, all-positive, all-negative, not
# float32-representable, tiny, huge, a half-integer zero point, an endpoint at zero
RANGES = [(-6.0, 6.0), (-1.0, 1.0), (-0.1, 0.3), (0.5, 3.7), (-3.7, -0.5), (-126.5, 128.5),
          (-1e-3, 2e-3), (-100.0, 0.001), (0.0, 1.0), (-1.0, 0.0), (-2.5, 7.3), (-0.7, 1e4)]
BITS = list(range(2, 17))


def _f32(v):
    return float(torch.tensor(v, dtype=F32))


# --------------------------------------------------------------------------------------------------
# worked values of the spec


def test_args_worked_value_minus1_1():
    x = t32([-10.0, -1.0, 0.0, 1.0, 10.0])
    y = lowbit.fake_quant_with_min_max_args(x, min=-1.0, max=1.0, num_bits=8)
    assert abs(float(y[0]) - (-0.996078491)) < 1e-8
    assert abs(float(y[4]) - 1.00392163) < 1e-8
    assert float(y[2]) == 0.0
    assert_exact(y, ref.fake_quant_with_min_max_args(x, -1.0, 1.0, 8), x)
    # -1.0 lies below the nudged min: no gradient
    g = t32([1.0, 2.0, 4.0, 8.0, 16.0])
    _, dx, _ = autograd(lambda v: lowbit.fake_quant_with_min_max_args(v, min=-1.0, max=1.0), x, g)
    assert dx.tolist() == [0.0, 0.0, 4.0, 8.0, 0.0]


def test_args_worked_value_default_range():
    x = t32([-100.0, 0.0, 100.0])
    y = lowbit.fake_quant_with_min_max_args(x)
    assert abs(float(y[0]) - (-6.02352953)) < 1e-7
    assert abs(float(y[2]) - 5.97647047) < 1e-7
    assert float(y[1]) == 0.0
    assert_exact(y, ref.fake_quant_with_min_max_args(x), x)


def test_vars_worked_value_minus1_1():
    x = t32([-10.0, 10.0])
    y = lowbit.fake_quant_with_min_max_vars(x, t32(-1.0), t32(1.0))
    assert abs(float(y[0]) - (-0.996078491)) < 1e-8
    assert abs(float(y[1]) - 1.00392163) < 1e-8


def test_zero_point_rounds_half_away():
    # scale 1, zp_from_min 126.5 -> zp 127 -> nudged [-127, 128] (half-even would give [-126, 129])
    x = t32([-1000.0, 1000.0])
    for y in (lowbit.fake_quant_with_min_max_args(x, min=-126.5, max=128.5),
              lowbit.fake_quant_with_min_max_vars(x, t32(-126.5), t32(128.5)),
              lowbit.fake_quant_with_min_max_vars_per_channel(x.reshape(2, 1), t32([-126.5]),
                                                              t32([128.5])).reshape(2)):
        assert y.tolist() == [-127.0, 128.0]


def test_floor_plus_half_ties_up():
    x = t32([2.5, 3.5, 254.5, -0.5])
    assert lowbit.fake_quant_with_min_max_args(x, min=0.0, max=255.0).tolist() == [3.0, 4.0, 255.0, 0.0]
    x = t32([-2.5, -3.5, 2.5, -127.5])
    exp = [-2.0, -3.0, 3.0, -127.0]
    assert lowbit.fake_quant_with_min_max_args(x, min=-128.0, max=127.0).tolist() == exp
    assert lowbit.fake_quant_with_min_max_vars(x, t32(-128.0), t32(127.0)).tolist() == exp
    y = lowbit.fake_quant_with_min_max_vars_per_channel(x.reshape(4, 1), t32([-128.0]), t32([127.0]))
    assert y.reshape(4).tolist() == exp


def test_zero_maps_to_exact_zero_and_outputs_are_multiples_of_scale():
    for lo, hi in RANGES:
        for nb in (2, 8, 13):
            x = fq_values_for_range(lo, hi, nb, False, 50, seed=1)
            x[0] = 0.0
            y = lowbit.fake_quant_with_min_max_vars(x, t32(lo), t32(hi), num_bits=nb)
            assert float(y[0]) == 0.0
            p = ref.nudge(t32(lo), t32(hi), nb, False)
            k = torch.round(y.double() / float(p.scale)).to(F32)
            assert torch.equal(y, k * p.scale), (lo, hi, nb)


# --------------------------------------------------------------------------------------------------
# forward and autograd against the reference, every num_bits, both narrow_range


@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize("num_bits", BITS)
def test_args_forward_and_grad(num_bits, narrow):
    for i, (lo, hi) in enumerate(RANGES):
        x = fq_values_for_range(_f32(lo), _f32(hi), num_bits, narrow, 40, seed=100 + i)
        g = normal(x.shape, seed=200 + i)
        fn = lambda v: lowbit.fake_quant_with_min_max_args(v, min=lo, max=hi, num_bits=num_bits,
                                                           narrow_range=narrow)
        y, dx, _ = autograd(fn, x, g)
        what = f"args [{lo}, {hi}] bits {num_bits} narrow {narrow}"
        assert_exact(y, ref.fake_quant_with_min_max_args(x, lo, hi, num_bits, narrow), x, what)
        exp_dx = ref.fake_quant_with_min_max_args_gradient(g, x, lo, hi, num_bits, narrow)
        assert_exact(dx, exp_dx, x, what + " d/dx")
        got = lowbit.fake_quant_with_min_max_args_gradient(g, x, min=lo, max=hi, num_bits=num_bits,
                                                           narrow_range=narrow)
        assert_exact(got, exp_dx, x, what + " _gradient")


@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize("num_bits", BITS)
def test_vars_forward_and_grad(num_bits, narrow):
    for i, (lo, hi) in enumerate(RANGES):
        mn, mx = t32(lo), t32(hi)
        x = fq_values_for_range(lo, hi, num_bits, narrow, 40, seed=300 + i)
        g = int_grad(x.shape, seed=400 + i)
        fn = lambda v, a, b: lowbit.fake_quant_with_min_max_vars(v, a, b, num_bits=num_bits,
                                                                 narrow_range=narrow)
        y, dx, (dmin, dmax) = autograd(fn, x, g, (mn, mx))
        what = f"vars [{lo}, {hi}] bits {num_bits} narrow {narrow}"
        assert_exact(y, ref.fake_quant_with_min_max_vars(x, mn, mx, num_bits, narrow), x, what)
        edx, edmin, edmax = ref.fake_quant_with_min_max_vars_gradient(g, x, mn, mx, num_bits, narrow)
        assert_exact(dx, edx, x, what + " d/dx")
        # integer gradients: the sums are exact in any order
        assert_exact(dmin, edmin, what=what + " d/dmin")
        assert_exact(dmax, edmax, what=what + " d/dmax")
        gdx, gdmin, gdmax = lowbit.fake_quant_with_min_max_vars_gradient(
            g, x, mn, mx, num_bits=num_bits, narrow_range=narrow)
        assert_exact(gdx, edx, x, what + " _gradient d/dx")
        assert gdmin.numel() == 1 and gdmax.numel() == 1
        assert_exact(gdmin.reshape(()), edmin, what=what + " _gradient d/dmin")
        assert_exact(gdmax.reshape(()), edmax, what=what + " _gradient d/dmax")


@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize("num_bits", BITS)
def test_per_channel_forward_and_grad(num_bits, narrow):
    mins = t32([lo for lo, _ in RANGES])
    maxs = t32([hi for _, hi in RANGES])
    x = fq_values_per_channel(mins, maxs, num_bits, narrow, 60, seed=500 + num_bits)
    x = x.reshape(3, -1, len(RANGES))  # rank 3: the channel is the last dim
    g = int_grad(x.shape, seed=600 + num_bits)
    fn = lambda v, a, b: lowbit.fake_quant_with_min_max_vars_per_channel(
        v, a, b, num_bits=num_bits, narrow_range=narrow)
    y, dx, (dmin, dmax) = autograd(fn, x, g, (mins, maxs))
    what = f"per_channel bits {num_bits} narrow {narrow}"
    assert_exact(y, ref.fake_quant_with_min_max_vars_per_channel(x, mins, maxs, num_bits, narrow), x,
                 what)
    edx, edmin, edmax = ref.fake_quant_with_min_max_vars_per_channel_gradient(g, x, mins, maxs,
                                                                              num_bits, narrow)
    assert_exact(dx, edx, x, what + " d/dx")
    assert_exact(dmin, edmin, what=what + " d/dmin")
    assert_exact(dmax, edmax, what=what + " d/dmax")
    gdx, gdmin, gdmax = lowbit.fake_quant_with_min_max_vars_per_channel_gradient(
        g, x, mins, maxs, num_bits=num_bits, narrow_range=narrow)
    assert_exact(gdx, edx, x, what + " _gradient d/dx")
    assert_exact(gdmin, edmin, what=what + " _gradient d/dmin")
    assert_exact(gdmax, edmax, what=what + " _gradient d/dmax")


def test_per_channel_equals_args_per_column():
    # per_channel and args both multiply by inv_scale: each column is the args op on its own range
    g = gen(7)
    mins = -torch.rand(9, generator=g) * 5
    maxs = torch.rand(9, generator=g) * 5 + 0.01
    x = torch.randn(100, 9, generator=g) * 4
    y = lowbit.fake_quant_with_min_max_vars_per_channel(x, mins, maxs)
    for c in range(9):
        col = lowbit.fake_quant_with_min_max_args(x[:, c], min=float(mins[c]), max=float(maxs[c]))
        assert_exact(y[:, c], col, x[:, c], f"channel {c} vs args")


@pytest.mark.parametrize("rows,channels", [(1, 1), (1, 7), (3, 16), (5, 17), (2, 33), (1000, 3),
                                           (64, 65), (1, 1000)])
def test_per_channel_shapes(rows, channels):
    g = gen(rows * 1000 + channels)
    mins = -torch.rand(channels, generator=g) * 4
    maxs = torch.rand(channels, generator=g) * 4 + 0.05
    x = torch.randn(rows, channels, generator=g) * 3
    gr = normal(x.shape, seed=channels)
    y, dx, (dmin, dmax) = autograd(
        lambda v, a, b: lowbit.fake_quant_with_min_max_vars_per_channel(v, a, b), x, gr, (mins, maxs))
    assert_exact(y, ref.fake_quant_with_min_max_vars_per_channel(x, mins, maxs), x)
    edx, edmin, edmax = ref.fake_quant_with_min_max_vars_per_channel_gradient(gr, x, mins, maxs)
    assert_exact(dx, edx, x, "d/dx")
    p = ref.nudge(mins, maxs, 8, False)
    abs_below = (gr.double().abs() * (x < p.nudged_min)).sum(0)
    abs_above = (gr.double().abs() * (x > p.nudged_max)).sum(0)
    assert_sum_close(dmin, edmin, abs_below, F32, "d/dmin")
    assert_sum_close(dmax, edmax, abs_above, F32, "d/dmax")
    # a 1-D input: every element is its own channel
    x1 = x[0].clone()
    assert_exact(lowbit.fake_quant_with_min_max_vars_per_channel(x1, mins, maxs),
                 ref.fake_quant_with_min_max_vars_per_channel(x1, mins, maxs), x1, "1-D")


def test_vars_random_gradients_sums():
    x = torch.randn(100003, generator=gen(11)) * 2
    g = normal(x.shape, seed=12)
    mn, mx = t32(-1.3), t32(2.1)
    _, dx, (dmin, dmax) = autograd(lambda v, a, b: lowbit.fake_quant_with_min_max_vars(v, a, b),
                                   x, g, (mn, mx))
    edx, edmin, edmax = ref.fake_quant_with_min_max_vars_gradient(g, x, mn, mx)
    assert_exact(dx, edx, x, "d/dx")
    p = ref.nudge(mn, mx, 8, False)
    assert_sum_close(dmin, edmin, (g.double().abs() * (x < p.nudged_min)).sum(), F32, "d/dmin")
    assert_sum_close(dmax, edmax, (g.double().abs() * (x > p.nudged_max)).sum(), F32, "d/dmax")
    gdx, gdmin, gdmax = lowbit.fake_quant_with_min_max_vars_gradient(g, x, mn, mx)
    assert_exact(gdx, dx, x, "_gradient vs autograd d/dx")
    assert_sum_close(gdmin.reshape(()), edmin, (g.double().abs() * (x < p.nudged_min)).sum(), F32)
    assert_sum_close(gdmax.reshape(()), edmax, (g.double().abs() * (x > p.nudged_max)).sum(), F32)


def test_vars_min_max_one_element_1d():
    x = torch.randn(50, generator=gen(3))
    mn, mx = t32([-0.8]), t32([1.1])
    g = int_grad(x.shape, seed=4)
    y, dx, (dmin, dmax) = autograd(lambda v, a, b: lowbit.fake_quant_with_min_max_vars(v, a, b),
                                   x, g, (mn, mx))
    assert_exact(y, ref.fake_quant_with_min_max_vars(x, mn, mx), x)
    edx, edmin, edmax = ref.fake_quant_with_min_max_vars_gradient(g, x, mn, mx)
    assert_exact(dx, edx, x)
    assert_exact(dmin, edmin)
    assert_exact(dmax, edmax)


# --------------------------------------------------------------------------------------------------
# boundaries: the closed nudged interval


@pytest.mark.parametrize("op", ["args", "vars", "per_channel"])
def test_gradient_closed_nudged_interval(op):
    lo, hi = -1.0, 1.0
    p = ref.nudge(t32(lo), t32(hi), 8, False)
    inf = torch.tensor(float("inf"))
    x = torch.stack([p.nudged_min, p.nudged_max, torch.nextafter(p.nudged_min, -inf),
                     torch.nextafter(p.nudged_max, inf), torch.nextafter(p.nudged_min, inf),
                     torch.nextafter(p.nudged_max, -inf), t32(lo), t32(hi)])
    g = t32([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0])
    exp_dx = t32([1.0, 2.0, 0.0, 0.0, 16.0, 32.0, 0.0, 128.0])
    if op == "args":
        _, dx, _ = autograd(lambda v: lowbit.fake_quant_with_min_max_args(v, min=lo, max=hi), x, g)
        assert_exact(dx, exp_dx, x)
        return
    if op == "vars":
        fn = lambda v, a, b: lowbit.fake_quant_with_min_max_vars(v, a, b)
        extras = (t32(lo), t32(hi))
        xin, gin = x, g
    else:
        fn = lambda v, a, b: lowbit.fake_quant_with_min_max_vars_per_channel(v, a, b)
        extras = (t32([lo]), t32([hi]))
        xin, gin = x.reshape(-1, 1), g.reshape(-1, 1)
    _, dx, (dmin, dmax) = autograd(fn, xin, gin, extras)
    assert_exact(dx.reshape(-1), exp_dx, x)
    assert float(dmin.sum()) == 4.0 + 64.0  # nextafter below nudged_min and -1.0 itself
    assert float(dmax.sum()) == 8.0


# --------------------------------------------------------------------------------------------------
# min == max == 0


def test_vars_degenerate_zero_range():
    x = t32([-3.0, -0.0, 0.0, 0.5, 7.0, float("inf")])
    g = t32([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    y, dx, (dmin, dmax) = autograd(lambda v, a, b: lowbit.fake_quant_with_min_max_vars(v, a, b),
                                   x, g, (t32(0.0), t32(0.0)))
    assert y.tolist() == [0.0] * 6
    assert_exact(dx, g)
    assert float(dmin) == 0.0 and float(dmax) == 0.0
    gdx, gdmin, gdmax = lowbit.fake_quant_with_min_max_vars_gradient(g, x, t32(0.0), t32(0.0))
    assert_exact(gdx, g)
    assert float(gdmin.reshape(())) == 0.0 and float(gdmax.reshape(())) == 0.0


def test_per_channel_degenerate_channels():
    mins = t32([0.0, -1.0, 0.0, -2.0])
    maxs = t32([0.0, 1.0, 0.0, 0.5])
    x = torch.randn(25, 4, generator=gen(5)) * 3
    g = int_grad(x.shape, seed=6)
    y, dx, (dmin, dmax) = autograd(
        lambda v, a, b: lowbit.fake_quant_with_min_max_vars_per_channel(v, a, b), x, g, (mins, maxs))
    assert torch.all(y[:, 0] == 0) and torch.all(y[:, 2] == 0)
    assert_exact(y, ref.fake_quant_with_min_max_vars_per_channel(x, mins, maxs), x)
    edx, edmin, edmax = ref.fake_quant_with_min_max_vars_per_channel_gradient(g, x, mins, maxs)
    assert_exact(dx, edx, x)
    assert_exact(dx[:, 0], g[:, 0])
    assert_exact(dmin, edmin)
    assert_exact(dmax, edmax)
    assert dmin[0] == 0 and dmax[2] == 0
    gdx, gdmin, gdmax = lowbit.fake_quant_with_min_max_vars_per_channel_gradient(g, x, mins, maxs)
    assert_exact(gdx, edx, x)
    assert_exact(gdmin, edmin)
    assert_exact(gdmax, edmax)


# --------------------------------------------------------------------------------------------------
# float64 and half precision


@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize("num_bits", [2, 8, 16])
def test_float64(num_bits, narrow):
    # ranges representable in float32 so that the args' Python floats mean the same in both
    for i, (lo, hi) in enumerate(RANGES):
        lo, hi = _f32(lo), _f32(hi)
        x = fq_values_for_range(lo, hi, num_bits, narrow, 40, seed=700 + i, dtype=F64)
        g = int_grad(x.shape, seed=800 + i, dtype=F64)
        what = f"f64 [{lo}, {hi}] bits {num_bits}"
        y, dx, _ = autograd(lambda v: lowbit.fake_quant_with_min_max_args(
            v, min=lo, max=hi, num_bits=num_bits, narrow_range=narrow), x, g)
        assert_exact(y, ref.fake_quant_with_min_max_args(x, lo, hi, num_bits, narrow), x, what)
        assert_exact(dx, ref.fake_quant_with_min_max_args_gradient(g, x, lo, hi, num_bits, narrow), x)
        mn, mx = torch.tensor(lo, dtype=F64), torch.tensor(hi, dtype=F64)
        y, dx, (dmin, dmax) = autograd(lambda v, a, b: lowbit.fake_quant_with_min_max_vars(
            v, a, b, num_bits=num_bits, narrow_range=narrow), x, g, (mn, mx))
        assert_exact(y, ref.fake_quant_with_min_max_vars(x, mn, mx, num_bits, narrow), x, what)
        edx, edmin, edmax = ref.fake_quant_with_min_max_vars_gradient(g, x, mn, mx, num_bits, narrow)
        assert_exact(dx, edx, x)
        assert_exact(dmin, edmin)
        assert_exact(dmax, edmax)
    mins = torch.tensor([_f32(lo) for lo, _ in RANGES], dtype=F64)
    maxs = torch.tensor([_f32(hi) for _, hi in RANGES], dtype=F64)
    x = fq_values_per_channel(mins, maxs, num_bits, narrow, 30, seed=900).to(F64)
    g = int_grad(x.shape, seed=901, dtype=F64)
    y, dx, (dmin, dmax) = autograd(lambda v, a, b: lowbit.fake_quant_with_min_max_vars_per_channel(
        v, a, b, num_bits=num_bits, narrow_range=narrow), x, g, (mins, maxs))
    assert_exact(y, ref.fake_quant_with_min_max_vars_per_channel(x, mins, maxs, num_bits, narrow), x)
    edx, edmin, edmax = ref.fake_quant_with_min_max_vars_per_channel_gradient(g, x, mins, maxs,
                                                                              num_bits, narrow)
    assert_exact(dx, edx, x)
    assert_exact(dmin, edmin)
    assert_exact(dmax, edmax)


def test_float64_nudging_is_not_float32():
    # [-1, 1] at 8 bits nudges differently in float64 than in float32; each in its own type
    x = torch.tensor([-10.0, 10.0], dtype=F64)
    y = lowbit.fake_quant_with_min_max_vars(x, torch.tensor(-1.0, dtype=F64),
                                            torch.tensor(1.0, dtype=F64))
    exp = ref.fake_quant_with_min_max_vars(x, torch.tensor(-1.0, dtype=F64),
                                           torch.tensor(1.0, dtype=F64))
    assert_exact(y, exp, x)
    y = lowbit.fake_quant_with_min_max_args(x, min=-1.0, max=1.0)
    assert_exact(y, ref.fake_quant_with_min_max_args(x, -1.0, 1.0), x)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype):
    lo, hi = -1.5, 2.25  # representable in both half types
    x = (torch.randn(301, generator=gen(21)) * 2).to(dtype)
    g = int_grad(x.shape, seed=22, dtype=dtype)
    y, dx, _ = autograd(lambda v: lowbit.fake_quant_with_min_max_args(v, min=lo, max=hi), x, g)
    assert_exact(y, ref.fake_quant_with_min_max_args(x, lo, hi), x, "args")
    assert_exact(dx, ref.fake_quant_with_min_max_args_gradient(g, x, lo, hi), x, "args d/dx")
    mn, mx = torch.tensor(lo, dtype=dtype), torch.tensor(hi, dtype=dtype)
    y, dx, (dmin, dmax) = autograd(lambda v, a, b: lowbit.fake_quant_with_min_max_vars(v, a, b),
                                   x, g, (mn, mx))
    assert_exact(y, ref.fake_quant_with_min_max_vars(x, mn, mx), x, "vars")
    edx, edmin, edmax = ref.fake_quant_with_min_max_vars_gradient(g, x, mn, mx)
    assert_exact(dx, edx, x, "vars d/dx")
    assert_exact(dmin, edmin, what="vars d/dmin")
    assert_exact(dmax, edmax, what="vars d/dmax")
    xm = x.reshape(43, 7)
    gm = g.reshape(43, 7)
    mins = torch.tensor([-1.5, -0.5, 0.25, -4.0, -0.125, -2.0, 0.0], dtype=dtype)
    maxs = torch.tensor([2.25, 0.5, 3.0, -0.5, 0.125, 6.0, 0.0], dtype=dtype)
    y, dx, (dmin, dmax) = autograd(
        lambda v, a, b: lowbit.fake_quant_with_min_max_vars_per_channel(v, a, b), xm, gm, (mins, maxs))
    assert_exact(y, ref.fake_quant_with_min_max_vars_per_channel(xm, mins, maxs), xm, "per_channel")
    edx, edmin, edmax = ref.fake_quant_with_min_max_vars_per_channel_gradient(gm, xm, mins, maxs)
    assert_exact(dx, edx, xm, "per_channel d/dx")
    assert_exact(dmin, edmin, what="per_channel d/dmin")
    assert_exact(dmax, edmax, what="per_channel d/dmax")


# --------------------------------------------------------------------------------------------------
# inf / NaN, non-contiguous, empty, 0-dim


def test_inf_clamps_to_range_and_nan_does_not_crash():
    x = t32([float("inf"), float("-inf"), float("nan"), 0.5])
    xf = x[[0, 1, 3]]
    y = lowbit.fake_quant_with_min_max_args(x, min=-1.0, max=1.0)
    assert_exact(y[[0, 1, 3]], ref.fake_quant_with_min_max_args(xf, -1.0, 1.0), xf)
    p = ref.nudge(t32(-1.0), t32(1.0), 8, False)
    assert float(y[1]) == float(p.nudged_min)
    assert abs(float(y[0]) - float(p.nudged_max)) <= float(p.scale) / 2
    y = lowbit.fake_quant_with_min_max_vars(x, t32(-1.0), t32(1.0))
    assert_exact(y[[0, 1, 3]], ref.fake_quant_with_min_max_vars(xf, t32(-1.0), t32(1.0)), xf)
    y = lowbit.fake_quant_with_min_max_vars_per_channel(x.reshape(4, 1), t32([-1.0]), t32([1.0]))
    exp = ref.fake_quant_with_min_max_vars_per_channel(xf.reshape(3, 1), t32([-1.0]), t32([1.0]))
    assert_exact(y[[0, 1, 3]], exp)
    # gradients do not crash either
    g = torch.ones(4)
    lowbit.fake_quant_with_min_max_args_gradient(g, x)
    lowbit.fake_quant_with_min_max_vars_gradient(g, x, t32(-1.0), t32(1.0))
    lowbit.fake_quant_with_min_max_vars_per_channel_gradient(g.reshape(4, 1), x.reshape(4, 1),
                                                             t32([-1.0]), t32([1.0]))


@pytest.mark.parametrize("view", ["transpose", "stride2", "offset_slice", "expand"])
def test_non_contiguous(view):
    base = torch.randn(40, 24, generator=gen(31)) * 3
    views = {"transpose": lambda b: b.t(), "stride2": lambda b: b[:, ::2],
             "offset_slice": lambda b: b[3:, 5:], "expand": lambda b: b[:, :1].expand(40, 9)}
    v = views[view]
    xv = v(base)
    assert not xv.is_contiguous()
    xc = xv.contiguous()
    c = xv.shape[-1]
    mins = -torch.rand(c, generator=gen(32)) * 3
    maxs = torch.rand(c, generator=gen(33)) * 3 + 0.1
    gbase = int_grad(base.shape, seed=34)
    gv = v(gbase)
    gc = gv.contiguous()
    ops = {
        "args": (lambda x: lowbit.fake_quant_with_min_max_args(x, min=-2.0, max=1.5), ()),
        "vars": (lambda x, a, b: lowbit.fake_quant_with_min_max_vars(x, a, b), (t32(-2.0), t32(1.5))),
        "per_channel": (lambda x, a, b: lowbit.fake_quant_with_min_max_vars_per_channel(x, a, b),
                        (mins, maxs)),
    }
    for name, (fn, extras) in ops.items():
        assert_exact(fn(xv, *extras), fn(xc, *extras), xc, name + " forward")
        if view != "expand":
            _, dx, dex = autograd(fn, base, gc, extras, view=v)
            _, dxc, dexc = autograd(fn, xc, gc, extras)
            assert_exact(dx, dxc, xc, name + " d/dx")
            for a, b in zip(dex, dexc):
                assert_exact(a, b, what=name + " d/dmin,max")
    # the _gradient ops with non-contiguous gradients and inputs
    assert_exact(lowbit.fake_quant_with_min_max_args_gradient(gv, xv, min=-2.0, max=1.5),
                 ref.fake_quant_with_min_max_args_gradient(gc, xc, -2.0, 1.5), xc)
    got = lowbit.fake_quant_with_min_max_vars_gradient(gv, xv, t32(-2.0), t32(1.5))
    exp = ref.fake_quant_with_min_max_vars_gradient(gc, xc, t32(-2.0), t32(1.5))
    assert_exact(got[0], exp[0], xc)
    assert_exact(got[1].reshape(()), exp[1])
    assert_exact(got[2].reshape(()), exp[2])
    got = lowbit.fake_quant_with_min_max_vars_per_channel_gradient(gv, xv, mins, maxs)
    exp = ref.fake_quant_with_min_max_vars_per_channel_gradient(gc, xc, mins, maxs)
    for a, b in zip(got, exp):
        assert_exact(a, b)
    # non-contiguous min/max of per_channel
    mm = torch.stack([mins, maxs], dim=1)  # mm[:, 0] is strided
    assert_exact(lowbit.fake_quant_with_min_max_vars_per_channel(xc, mm[:, 0], mm[:, 1]),
                 ref.fake_quant_with_min_max_vars_per_channel(xc, mins, maxs), xc)


@pytest.mark.parametrize("shape", [(0,), (0, 5), (3, 0), (2, 0, 4)])
def test_empty(shape):
    x = torch.zeros(shape)
    g = torch.zeros(shape)
    y, dx, _ = autograd(lambda v: lowbit.fake_quant_with_min_max_args(v), x, g)
    assert y.shape == x.shape and dx.shape == x.shape
    assert lowbit.fake_quant_with_min_max_args_gradient(g, x).shape == x.shape
    y, dx, (dmin, dmax) = autograd(lambda v, a, b: lowbit.fake_quant_with_min_max_vars(v, a, b), x, g,
                                   (t32(-1.0), t32(1.0)))
    assert y.shape == x.shape and float(dmin) == 0.0 and float(dmax) == 0.0
    c = shape[-1]
    mins, maxs = -torch.ones(c), torch.ones(c)
    y, dx, (dmin, dmax) = autograd(
        lambda v, a, b: lowbit.fake_quant_with_min_max_vars_per_channel(v, a, b), x, g, (mins, maxs))
    assert y.shape == x.shape
    assert_exact(dmin, torch.zeros(c))
    assert_exact(dmax, torch.zeros(c))
    gdx, gdmin, gdmax = lowbit.fake_quant_with_min_max_vars_per_channel_gradient(g, x, mins, maxs)
    assert gdx.shape == x.shape
    assert_exact(gdmin, torch.zeros(c))
    assert_exact(gdmax, torch.zeros(c))


def test_zero_dim_inputs():
    for v in (-7.0, -0.3, 0.0, 0.37, 5.9):
        x = t32(v)
        g = t32(2.0)
        y, dx, _ = autograd(lambda t: lowbit.fake_quant_with_min_max_args(t, min=-1.0, max=1.0), x, g)
        assert_exact(y, ref.fake_quant_with_min_max_args(x, -1.0, 1.0), x)
        assert_exact(dx, ref.fake_quant_with_min_max_args_gradient(g, x, -1.0, 1.0), x)
        y, dx, (dmin, dmax) = autograd(lambda t, a, b: lowbit.fake_quant_with_min_max_vars(t, a, b),
                                       x, g, (t32(-1.0), t32(1.0)))
        edx, edmin, edmax = ref.fake_quant_with_min_max_vars_gradient(g, x, t32(-1.0), t32(1.0))
        assert_exact(y, ref.fake_quant_with_min_max_vars(x, t32(-1.0), t32(1.0)), x)
        assert_exact(dx, edx, x)
        assert_exact(dmin, edmin)
        assert_exact(dmax, edmax)


@pytest.mark.parametrize("n", [1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 100003, 1000003])
def test_large_and_odd_sizes(n):
    x = torch.randn(n, generator=gen(n)) * 4
    g = int_grad((n,), seed=n + 1)
    y = lowbit.fake_quant_with_min_max_args(x, min=-3.0, max=2.5, num_bits=5)
    assert_exact(y, ref.fake_quant_with_min_max_args(x, -3.0, 2.5, 5), x, "args")
    mn, mx = t32(-3.0), t32(2.5)
    y, dx, (dmin, dmax) = autograd(lambda v, a, b: lowbit.fake_quant_with_min_max_vars(v, a, b),
                                   x, g, (mn, mx))
    assert_exact(y, ref.fake_quant_with_min_max_vars(x, mn, mx), x, "vars")
    edx, edmin, edmax = ref.fake_quant_with_min_max_vars_gradient(g, x, mn, mx)
    assert_exact(dx, edx, x, "vars d/dx")
    assert_exact(dmin, edmin, what="vars d/dmin")
    assert_exact(dmax, edmax, what="vars d/dmax")
    assert_exact(lowbit.fake_quant_with_min_max_args_gradient(g, x, min=-3.0, max=2.5, num_bits=5),
                 ref.fake_quant_with_min_max_args_gradient(g, x, -3.0, 2.5, 5), x, "args_gradient")
    # per channel as [rows, c] for the first channel count that divides n
    c = next(k for k in (33, 17, 16, 8, 7, 5, 1) if n % k == 0)
    xm, gm = x.reshape(-1, c), g.reshape(-1, c)
    mins = -torch.rand(c, generator=gen(n + 2)) * 3
    maxs = torch.rand(c, generator=gen(n + 3)) * 3 + 0.1
    y, dx, (dmin, dmax) = autograd(
        lambda v, a, b: lowbit.fake_quant_with_min_max_vars_per_channel(v, a, b), xm, gm, (mins, maxs))
    assert_exact(y, ref.fake_quant_with_min_max_vars_per_channel(xm, mins, maxs), xm, "per_channel")
    edx, edmin, edmax = ref.fake_quant_with_min_max_vars_per_channel_gradient(gm, xm, mins, maxs)
    assert_exact(dx, edx, xm, "per_channel d/dx")
    assert_exact(dmin, edmin, what="per_channel d/dmin")
    assert_exact(dmax, edmax, what="per_channel d/dmax")


@pytest.mark.parametrize("dtype", [F64, torch.float16, torch.bfloat16], ids=str)
def test_gradient_ops_dtypes(dtype):
    x = (torch.randn(60, 5, generator=gen(41), dtype=F64) * 2).to(dtype)
    g = int_grad(x.shape, seed=42, dtype=dtype)
    got = lowbit.fake_quant_with_min_max_args_gradient(g, x, min=-1.5, max=2.25, num_bits=5)
    assert_exact(got, ref.fake_quant_with_min_max_args_gradient(g, x, -1.5, 2.25, 5), x)
    mn, mx = torch.tensor(-1.5, dtype=dtype), torch.tensor(2.25, dtype=dtype)
    got = lowbit.fake_quant_with_min_max_vars_gradient(g, x, mn, mx, num_bits=5)
    exp = ref.fake_quant_with_min_max_vars_gradient(g, x, mn, mx, 5)
    assert_exact(got[0], exp[0], x)
    assert_exact(got[1].reshape(()), exp[1])
    assert_exact(got[2].reshape(()), exp[2])
    mins = torch.tensor([-1.5, -0.5, 0.0, -4.0, 0.25], dtype=dtype)
    maxs = torch.tensor([2.25, 0.5, 0.0, -0.5, 3.0], dtype=dtype)
    got = lowbit.fake_quant_with_min_max_vars_per_channel_gradient(g, x, mins, maxs, num_bits=5)
    exp = ref.fake_quant_with_min_max_vars_per_channel_gradient(g, x, mins, maxs, 5)
    for a, b in zip(got, exp):
        assert_exact(a, b)


def test_vars_min_max_one_element_2d():
    x = torch.randn(30, generator=gen(43))
    mn, mx = t32([[-0.6]]), t32([[0.9]])
    g = int_grad(x.shape, seed=44)
    y, dx, (dmin, dmax) = autograd(lambda v, a, b: lowbit.fake_quant_with_min_max_vars(v, a, b),
                                   x, g, (mn, mx))
    assert_exact(y, ref.fake_quant_with_min_max_vars(x, mn, mx), x)
    edx, edmin, edmax = ref.fake_quant_with_min_max_vars_gradient(g, x, mn, mx)
    assert_exact(dx, edx, x)
    assert_exact(dmin, edmin)
    assert_exact(dmax, edmax)


@pytest.mark.parametrize("rows,channels", [(200003, 5), (4099, 33)])
def test_per_channel_random_gradient_sums_many_rows(rows, channels):
    """Per-channel d/dmin, d/dmax over many rows with non-integer gradients: a tight tolerance."""
    x = torch.randn(rows, channels, generator=gen(45)) * 2
    g = normal(x.shape, seed=46)
    mins = -torch.rand(channels, generator=gen(47)) * 2 - 0.1
    maxs = torch.rand(channels, generator=gen(48)) * 2 + 0.1
    _, dx, (dmin, dmax) = autograd(
        lambda v, a, b: lowbit.fake_quant_with_min_max_vars_per_channel(v, a, b), x, g, (mins, maxs))
    edx, edmin, edmax = ref.fake_quant_with_min_max_vars_per_channel_gradient(g, x, mins, maxs)
    assert_exact(dx, edx, x)
    p = ref.nudge(mins, maxs, 8, False)
    assert_sum_close(dmin, edmin, (g.double().abs() * (x < p.nudged_min)).sum(0), F32, "d/dmin")
    assert_sum_close(dmax, edmax, (g.double().abs() * (x > p.nudged_max)).sum(0), F32, "d/dmax")
    gdx, gdmin, gdmax = lowbit.fake_quant_with_min_max_vars_per_channel_gradient(g, x, mins, maxs)
    assert_exact(gdx, edx, x)
    assert_sum_close(gdmin, edmin, (g.double().abs() * (x < p.nudged_min)).sum(0), F32, "d/dmin")
    assert_sum_close(gdmax, edmax, (g.double().abs() * (x > p.nudged_max)).sum(0), F32, "d/dmax")


@pytest.mark.parametrize("rows,channels", [(37, 5), (3, 16), (2049, 3), (1, 1)])
def test_per_channel_cpu_codes_are_packed(rows, channels):
    """The CPU per-channel forward saves 2 bits per element for its backward, in the packed layout
    of kernels.h by flat element index (group i // 16: plane 0 "in or above" at byte (i % 16) // 8,
    plane 1 "below or above" 2 bytes further, bit i % 8; bits past the end 0); its backward reads
    them back (dx = g inside the channel's closed nudged window) and refuses codes of another
    size."""
    x = torch.randn(rows, channels, generator=gen(60)) * 3
    x.view(-1)[::11] = float("nan")
    mins = -torch.rand(channels, generator=gen(61)) * 2 - 0.1
    maxs = torch.rand(channels, generator=gen(62)) * 2 + 0.1
    y, code = torch.ops.lowbit._fake_quant_with_min_max_vars_per_channel_coded(
        x, mins, maxs, 8, False)
    n = x.numel()
    assert code.dtype == torch.uint8 and tuple(code.shape) == ((n + 15) // 16 * 4,)
    i = torch.arange((n + 15) // 16 * 16)
    byte, bit = 4 * (i // 16) + (i % 16) // 8, i % 8
    plane0 = (code.long()[byte] >> bit) & 1
    plane1 = (code.long()[byte + 2] >> bit) & 1
    p = ref.nudge(mins, maxs, 8, False)
    lo, hi = p.nudged_min.repeat(rows), p.nudged_max.repeat(rows)
    xf = x.reshape(-1)
    inside, below = (lo <= xf) & (xf <= hi), xf < lo
    above = (xf > hi) & ~below
    assert torch.equal(plane0[:n], (inside | above).long())
    assert torch.equal(plane1[:n], (below | above).long())
    assert not plane0[n:].any() and not plane1[n:].any()
    g = normal(x.shape, seed=63)
    dx, dmin, dmax = torch.ops.lowbit._coded_backward_per_channel(g, code)
    assert torch.equal(dx, torch.where(inside.view(x.shape), g, torch.zeros_like(g)))
    want_min = torch.where(below.view(x.shape), g.double(), torch.zeros_like(g.double())).sum(0)
    want_max = torch.where(above.view(x.shape), g.double(), torch.zeros_like(g.double())).sum(0)
    torch.testing.assert_close(dmin, want_min, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(dmax, want_max, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="code must hold the packed window codes"):
        torch.ops.lowbit._coded_backward_per_channel(g, torch.zeros(n, dtype=torch.uint8))


def test_vars_backward_survives_in_place_updates_of_min_and_max():
    """Observers update min/max buffers in place after the forward (moving averages): the backward
    must not need their old values, and the range used is the forward's."""
    x = torch.linspace(-3, 3, 25, requires_grad=True)
    lo, hi = torch.tensor(-1.0, requires_grad=True), torch.tensor(1.5, requires_grad=True)
    y = lowbit.fake_quant_with_min_max_vars(x, lo, hi, num_bits=4)
    with torch.no_grad():
        lo.mul_(2.0)
        hi.mul_(2.0)
    y.sum().backward()
    dx, dmin, dmax = lowbit.fake_quant_with_min_max_vars_gradient(
        torch.ones(25), x.detach(), torch.tensor(-1.0), torch.tensor(1.5), num_bits=4)
    assert torch.equal(x.grad, dx)
    assert torch.equal(lo.grad, dmin) and torch.equal(hi.grad, dmax)
