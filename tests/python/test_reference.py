"""Self-tests of the pure-PyTorch reference against the spec's worked values (no lowbit needed)."""

import numpy as np
import pytest
import torch

import reference as ref

F32 = torch.float32


def t32(v):
    return torch.tensor(v, dtype=F32)


def test_nudge_minus1_1_8bit_worked_value():
    p = ref.nudge(t32(-1.0), t32(1.0), 8, False)
    # float32: scale = 2/255, zp_from_min = 127.4999.. -> 127
    assert float(p.zp_from_min) < 127.5
    assert float(p.zero_point) == 127.0
    assert abs(float(p.nudged_min) - (-0.996078491)) < 1e-8
    assert abs(float(p.nudged_max) - 1.00392163) < 1e-8
    # exactly the float32 operations in the spec's order
    s = np.float32(2.0) / np.float32(255.0)
    assert float(p.scale) == float(s)
    assert float(p.nudged_min) == float(np.float32(-127.0) * s)
    assert float(p.nudged_max) == float(np.float32(128.0) * s)
    inv = np.float32(255.0) / np.float32(2.0)
    assert float(p.inv_scale) == float(inv)
    assert float(p.quant_zero) == float(np.floor(-np.float32(-127.0) * s * inv + np.float32(0.5)))


def test_nudge_default_range_worked_value():
    p = ref.nudge(t32(-6.0), t32(6.0), 8, False)
    assert float(p.zp_from_min) == 127.5
    assert float(p.zero_point) == 128.0
    assert abs(float(p.nudged_min) - (-6.02352953)) < 1e-7
    assert abs(float(p.nudged_max) - 5.97647047) < 1e-7


def test_nudge_zero_point_rounds_half_away_not_half_even():
    # scale 1 exactly, zp_from_min = 126.5 exactly -> 127 (half-even would give 126)
    p = ref.nudge(t32(-126.5), t32(128.5), 8, False)
    assert float(p.scale) == 1.0 and float(p.zp_from_min) == 126.5
    assert float(p.zero_point) == 127.0
    assert float(p.nudged_min) == -127.0 and float(p.nudged_max) == 128.0


def test_nudge_clamps_zero_point():
    p = ref.nudge(t32(1.0), t32(3.0), 8, False)  # all positive -> zp = qmin -> window starts at 0
    assert float(p.zero_point) == 0.0 and float(p.nudged_min) == 0.0
    p = ref.nudge(t32(-3.0), t32(-1.0), 8, True)  # all negative -> zp = qmax -> window ends at 0
    assert float(p.zero_point) == 255.0 and float(p.nudged_max) == 0.0


def test_round_half_away_exact():
    v = torch.tensor([0.49999997, 0.5, 1.5, 2.5, -2.5, -0.5, -0.49999997, 8388607.5], dtype=F32)
    assert ref.round_half_away(v).tolist() == [0.0, 1.0, 2.0, 3.0, -3.0, -1.0, 0.0, 8388608.0]


def test_args_ties_round_up():
    x = t32([2.5, 3.5, -0.4, 254.5])
    y = ref.fake_quant_with_min_max_args(x, 0.0, 255.0)
    assert y.tolist() == [3.0, 4.0, 0.0, 255.0]
    x = t32([-2.5, -3.5, 2.5])
    y = ref.fake_quant_with_min_max_args(x, -128.0, 127.0)
    assert y.tolist() == [-2.0, -3.0, 3.0]


def test_fake_quant_outputs_multiples_of_scale_and_zero_exact():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, generator=g) * 4
    x[0] = 0.0
    for nb in (2, 5, 8, 16):
        p = ref.nudge(t32(-3.1), t32(2.7), nb, False)
        y = ref.fake_quant_with_min_max_vars(x, t32(-3.1), t32(2.7), nb)
        k = torch.round(y.double() / float(p.scale)).to(F32)  # y = fl32(k * scale), k integer
        assert torch.equal(y, k * p.scale)
        assert float(y[0]) == 0.0


def test_vars_degenerate():
    x = t32([-1.0, 0.0, 2.0])
    g = t32([1.0, 2.0, 3.0])
    assert ref.fake_quant_with_min_max_vars(x, t32(0.0), t32(0.0)).tolist() == [0.0, 0.0, 0.0]
    dx, dmin, dmax = ref.fake_quant_with_min_max_vars_gradient(g, x, t32(0.0), t32(0.0))
    assert dx.tolist() == [1.0, 2.0, 3.0] and float(dmin) == 0.0 and float(dmax) == 0.0


def test_fq_gradient_uses_nudged_closed_range():
    p = ref.nudge(t32(-1.0), t32(1.0), 8, False)
    x = torch.stack([t32(-1.0), p.nudged_min, p.nudged_max, t32(1.0), t32(1.01)])
    g = t32([1.0, 2.0, 4.0, 8.0, 16.0])
    dx, dmin, dmax = ref.fake_quant_with_min_max_vars_gradient(g, x, t32(-1.0), t32(1.0))
    assert dx.tolist() == [0.0, 2.0, 4.0, 8.0, 0.0]
    assert float(dmin) == 1.0 and float(dmax) == 16.0


def test_dorefa_weights_zero_maps_to_one_third():
    y = ref.dorefa(t32([0.0, 1.0, -1.0]), 2, "weights")
    assert abs(float(y[0]) - 1.0 / 3.0) < 1e-6
    assert float(y[1]) == 1.0 and float(y[2]) == -1.0


def test_dorefa_activations_half_even():
    # 1-bit: n = 1, 0.5 -> 0 (half-even); 2-bit: 0.5 * 3 = 1.5 -> 2 -> 2/3
    y = ref.dorefa(t32([0.5, 1.5, -1.0]), 1, "activations")
    assert y.tolist() == [0.0, 1.0, 0.0]
    y = ref.dorefa(t32([0.5]), 2, "activations")
    assert float(y[0]) == float(np.float32(2.0) / np.float32(3.0))


def test_swish_sign_grad_worked_values():
    d = ref.swish_sign_grad(torch.ones(2), t32([0.0, 0.5]), 5.0)
    assert abs(float(d[0]) - 5.0) < 1e-6
    assert abs(float(d[1]) - (-0.084622)) < 1e-6


def test_signs_of_zero():
    x = t32([0.0, -0.0, 1e-30, -1e-30])
    assert ref.ste_sign(x).tolist() == [1.0, 1.0, 1.0, -1.0]
    assert ref.tfsign(x).tolist() == [0.0, 0.0, 1.0, -1.0]
    assert ref.ste_heaviside(x).tolist() == [0.0, 0.0, 1.0, 0.0]


def test_ste_tern_thresholds():
    x = t32([-0.05, -0.04, 0.0, 0.04, 0.05, 0.3])
    assert ref.ste_tern(x).tolist() == [-1.0, 0.0, 0.0, 0.0, 1.0, 1.0]


def test_linear_mid_tread_half_values():
    x = t32([-1.0, 0.0, 0.33, 0.34, 1.0, 2.0, 3.0])
    # bit 2, max 2: levels 0, 2/3, 4/3, 2 ; 0.33 -> 0.495 -> 0 ; 0.34 -> 0.51 -> 1
    y = ref.linear_mid_tread_half(x)
    two3 = float(np.float32(1.0) / np.float32(3.0) * np.float32(2.0))
    assert y.tolist() == [0.0, 0.0, 0.0, two3, float(np.float32(2) / np.float32(3) * np.float32(2)),
                          2.0, 2.0]
    g = ref.linear_mid_tread_half_grad(torch.ones(7), x)
    assert g.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_twn_and_ttq():
    x = t32([-2.0, -0.1, 0.0, 0.1, 2.0])
    # mean|x| = 0.84, D = 0.588 -> m = {-2, 2}, a = 2
    assert ref.twn_weight(x).tolist() == [-2.0, 0.0, 0.0, 0.0, 2.0]
    assert ref.twn_weight(torch.zeros(3)).tolist() == [0.0, 0.0, 0.0]
    pos, neg = t32(1.5), t32(0.5)
    # D = 0.05 * 2 = 0.1 -> +-0.1 are not beyond it
    assert ref.ttq_weight(x, pos, neg).tolist() == [-0.5, 0.0, 0.0, 0.0, 1.5]
    g = t32([1.0, 2.0, 4.0, 8.0, 16.0])
    dx, dp, dn = ref.ttq_weight_grad(g, x, pos, neg)
    assert dx.tolist() == [0.5, 2.0, 4.0, 8.0, 24.0]
    assert float(dp) == 16.0 and float(dn) == 1.0


def test_pow2_worked_values():
    mn, mx = ref.pow2_range(t32(-0.2), t32(0.3), 8)
    assert float(mn) == -0.5 and float(mx) == 0.49609375
    p = ref.nudge(mn, mx, 8, False)
    assert float(p.scale) == 0.00390625 and float(p.zero_point) == 128.0
    assert float(p.nudged_min) == -0.5 and float(p.nudged_max) == 0.49609375
    mn, mx = ref.pow2_range(t32(-100.0), t32(5.0), 16, max_exponent=3)
    assert float(mn) == -8.0 and float(mx) == 7.999755859375
    mn, mx = ref.pow2_range(t32(-5.0), t32(3.0), 16)
    assert float(mn) == -8.0 and float(mx) == 7.999755859375
    mn, mx = ref.pow2_range(t32(0.0), t32(0.0), 8)
    assert float(mn) == -(2.0 ** -23)


@pytest.mark.parametrize("num_bits", range(2, 17))
def test_pow2_no_nudging(num_bits):
    for m in (0.3, 1.0, 3.0, 100.0, 1e-3):
        mn, mx = ref.pow2_range(t32(-m), t32(m), num_bits)
        p = ref.nudge(mn, mx, num_bits, False)
        assert float(p.nudged_min) == float(mn) and float(p.nudged_max) == float(mx)
        assert float(p.zero_point) == 2.0 ** (num_bits - 1)


def test_float64_differs_from_float32_where_spec_says():
    # the float32 nudging of [-1, 1] is not the float64 one: the reference must not mix them up
    p32 = ref.nudge(t32(-1.0), t32(1.0), 8, False)
    p64 = ref.nudge(torch.tensor(-1.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64),
                    8, False)
    assert p32.nudged_min.dtype == F32 and p64.nudged_min.dtype == torch.float64
    assert float(p32.zp_from_min) != float(p64.zp_from_min) or \
        float(p32.nudged_min) != float(p64.nudged_min)


def test_ceil_log2_exact():
    v = torch.tensor([1.0, 2.0, 0.5, 0.3, 4.0, 1e-7], dtype=F32)
    assert ref.ceil_log2(v).tolist() == [0, 1, -1, -1, 2, -23]
    up = torch.nextafter(torch.tensor([4.0, 1024.0, 0.25]), torch.tensor(float("inf")))
    assert ref.ceil_log2(up).tolist() == [3, 11, -1]
    up64 = torch.nextafter(torch.tensor([4.0, 2.0 ** 40], dtype=torch.float64),
                           torch.tensor(float("inf"), dtype=torch.float64))
    assert ref.ceil_log2(up64).tolist() == [3, 41]
