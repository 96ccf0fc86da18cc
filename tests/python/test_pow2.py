"""Power-of-2 symmetric fixed point (spec section 4): pow2_range and fake_quant_pow2."""

import pytest
import torch

import lowbit
import reference as ref
from helpers import F32, F64, assert_exact, autograd, gen, int_grad, t32


def test_pow2_range_worked_values():
    mn, mx = lowbit.pow2_range(t32(-0.2), t32(0.3), num_bits=8)
    assert float(mn) == -0.5 and float(mx) == 0.49609375
    mn, mx = lowbit.pow2_range(t32(-5.0), t32(3.0), num_bits=16)
    assert float(mn) == -8.0 and float(mx) == 7.999755859375
    mn, mx = lowbit.pow2_range(t32(-100.0), t32(50.0), num_bits=16, max_exponent=3)
    assert float(mn) == -8.0 and float(mx) == 7.999755859375


@pytest.mark.parametrize("num_bits", range(2, 17))
def test_pow2_range(num_bits):
    pairs = [(-0.2, 0.3), (-5.0, 3.0), (0.0, 0.0), (1.0, 2.0), (-3.0, -1.0), (-0.5, 0.5),
             (-1e-9, 1e-9), (-7.5, 100.0), (-0.0078, 0.001), (-1024.0, 1023.0), (2.0, 4.0)]
    for lo, hi in pairs:
        for me in (None, 3, 0, -2):
            mn, mx = t32(lo), t32(hi)
            got = lowbit.pow2_range(mn, mx, num_bits=num_bits, max_exponent=me)
            exp = ref.pow2_range(mn, mx, num_bits, me)
            assert_exact(got[0], exp[0], what=f"pow2_min [{lo}, {hi}] bits {num_bits} me {me}")
            assert_exact(got[1], exp[1], what=f"pow2_max [{lo}, {hi}] bits {num_bits} me {me}")


def test_pow2_range_per_channel_and_float64():
    mins = t32([-0.2, -5.0, 0.0, -3.0, -1e-9])
    maxs = t32([0.3, 3.0, 0.0, -1.0, 1e-9])
    got = lowbit.pow2_range(mins, maxs, num_bits=8)
    exp = ref.pow2_range(mins, maxs, 8)
    assert_exact(got[0], exp[0])
    assert_exact(got[1], exp[1])
    got = lowbit.pow2_range(mins.double(), maxs.double(), num_bits=16, max_exponent=1)
    exp = ref.pow2_range(mins.double(), maxs.double(), 16, 1)
    assert_exact(got[0], exp[0])
    assert_exact(got[1], exp[1])


@pytest.mark.parametrize("num_bits", range(2, 17))
def test_fake_quant_pow2_per_tensor(num_bits):
    x = torch.randn(2000, generator=gen(num_bits)) * 0.4
    x[:4] = t32([0.0, 10.0, -10.0, 0.3])
    mn, mx = x.min(), x.max()
    g = int_grad(x.shape, seed=num_bits + 100)
    y, dx, _ = autograd(lambda v: lowbit.fake_quant_pow2(v, mn, mx, num_bits=num_bits), x, g)
    assert_exact(y, ref.fake_quant_pow2(x, mn, mx, num_bits), x)
    assert_exact(dx, ref.fake_quant_pow2_grad(g, x, mn, mx, num_bits), x)
    # the same as the vars op on the pow2 range
    pmin, pmax = ref.pow2_range(mn, mx, num_bits)
    assert_exact(y, lowbit.fake_quant_with_min_max_vars(x, pmin, pmax, num_bits=num_bits), x)
    # signed fixed point: y = q * 2^-f, q in [-2^(b-1), 2^(b-1) - 1]
    e = int(ref.pow2_exponent(mn, mx))
    f = num_bits - 1 - e
    q = y.double() * 2.0 ** f
    assert torch.equal(q, torch.round(q))
    assert float(q.min()) >= -(2 ** (num_bits - 1)) and float(q.max()) <= 2 ** (num_bits - 1) - 1


def test_fake_quant_pow2_worked_weights():
    # max|w| = 0.3 at 8 bits: [-0.5, 0.49609375], step 2^-8
    x = t32([0.3, -0.3, 0.1, 0.5, -0.6, 0.00195312, 0.005859375])
    y = lowbit.fake_quant_pow2(x, t32(-0.3), t32(0.3), num_bits=8, max_exponent=3)
    assert_exact(y, ref.fake_quant_pow2(x, t32(-0.3), t32(0.3), 8, 3), x)
    assert float(y[3]) == 0.49609375 and float(y[4]) == -0.5
    assert float(y[6]) == 0.0078125  # 1.5 steps rounds up (floor(v + 0.5))


def test_fake_quant_pow2_max_exponent_clamps():
    x = t32([50.0, -50.0, 7.9, 3.3])
    y = lowbit.fake_quant_pow2(x, t32(-100.0), t32(100.0), num_bits=8, max_exponent=3)
    assert y.tolist() == [7.9375, -8.0, 7.875, 3.3125]
    y = lowbit.fake_quant_pow2(x, t32(-100.0), t32(100.0), num_bits=8)  # e = 7: step 1
    assert y.tolist() == [50.0, -50.0, 8.0, 3.0]


def test_fake_quant_pow2_bias_16bit():
    x = torch.linspace(-9.0, 9.0, 1001)
    y = lowbit.fake_quant_pow2(x, t32(-5.0), t32(6.0), num_bits=16, max_exponent=3)
    assert_exact(y, ref.fake_quant_pow2(x, t32(-5.0), t32(6.0), 16, 3), x)
    assert float(y.max()) == 7.999755859375 and float(y.min()) == -8.0


@pytest.mark.parametrize("shape", [(40, 6), (2, 3, 5, 7), (6,)], ids=str)
def test_fake_quant_pow2_per_channel(shape):
    c = shape[-1]
    x = torch.randn(shape, generator=gen(c)) * (torch.arange(c, dtype=F32) + 1) * 0.3
    mins = x.reshape(-1, c).min(0).values
    maxs = x.reshape(-1, c).max(0).values
    g = int_grad(shape, seed=c + 1)
    y, dx, _ = autograd(lambda v: lowbit.fake_quant_pow2(v, mins, maxs, num_bits=8), x, g)
    assert_exact(y, ref.fake_quant_pow2(x, mins, maxs, 8), x)
    assert_exact(dx, ref.fake_quant_pow2_grad(g, x, mins, maxs, 8), x)
    pmin, pmax = ref.pow2_range(mins, maxs, 8)
    assert_exact(y, lowbit.fake_quant_with_min_max_vars_per_channel(x, pmin, pmax), x)


def test_fake_quant_pow2_one_element_min_max_is_per_tensor():
    x = torch.randn(10, 4, generator=gen(9))
    y = lowbit.fake_quant_pow2(x, t32([-0.7]), t32([1.9]), num_bits=6)
    assert_exact(y, ref.fake_quant_pow2(x, t32(-0.7), t32(1.9), 6), x)


@pytest.mark.parametrize("dtype", [F64, torch.float16, torch.bfloat16], ids=str)
def test_fake_quant_pow2_dtypes(dtype):
    x = (torch.randn(500, generator=gen(10), dtype=F64) * 2).to(dtype)
    mn, mx = torch.tensor(-1.5, dtype=dtype), torch.tensor(3.0, dtype=dtype)
    g = int_grad((500,), seed=11, dtype=dtype)
    y, dx, _ = autograd(lambda v: lowbit.fake_quant_pow2(v, mn, mx, num_bits=8), x, g)
    assert y.dtype == dtype
    assert_exact(y, ref.fake_quant_pow2(x, mn, mx, 8), x)
    assert_exact(dx, ref.fake_quant_pow2_grad(g, x, mn, mx, 8), x)
    pmin, pmax = lowbit.pow2_range(mn, mx, num_bits=8)
    epmin, epmax = ref.pow2_range(mn, mx, 8)
    assert_exact(pmin, epmin)
    assert_exact(pmax, epmax)


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
def test_pow2_exponent_exact_just_above_a_power_of_two(dtype):
    """e = ceil(log2|v|) exactly: the float just above 2^k needs e = k + 1 (a rounded log2 of it can
    come out as exactly k)."""
    inf = torch.tensor(float("inf"), dtype=dtype)
    for k in (2, 3, 5, 10, 20):
        v = torch.nextafter(torch.tensor(2.0 ** k, dtype=dtype), inf)
        mn, mx = lowbit.pow2_range(-v / 2, v, num_bits=8)
        assert float(mn) == -(2.0 ** (k + 1)), (k, float(v))
        emn, emx = ref.pow2_range(-v / 2, v, 8)
        assert_exact(mn, emn)
        assert_exact(mx, emx)
        # exactly 2^k: e = k
        mn, _ = lowbit.pow2_range(torch.tensor(-1.0, dtype=dtype), torch.tensor(2.0 ** k, dtype=dtype),
                                  num_bits=8)
        assert float(mn) == -(2.0 ** k)
