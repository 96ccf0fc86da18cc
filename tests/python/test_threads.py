"""Large inputs under several intra-op thread counts: same results as the reference (and as each
other) whatever the split of the work."""

import pytest
import torch

import lowbit
import reference as ref
from helpers import F32, assert_close, assert_exact, assert_sum_close, autograd, gen, int_grad, normal, t32

N = 1 << 20  # 1M elements: large enough for any parallel grain size


@pytest.fixture(params=[1, 2, 4], ids=lambda k: f"threads{k}")
def threads(request):
    old = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old)


def test_operators_run_on_torchs_threads(threads):
    """torch.set_num_threads reaches the operators' at::parallel_for (a build without LibTorch's
    OpenMP flags ran them all on one thread)."""
    assert torch.ops.lowbit._parallel_threads(64) == threads
    assert torch.ops.lowbit._parallel_threads(1) == 1


def test_elementwise_and_sums(threads):
    x = torch.randn(N + 3, generator=gen(1)) * 2
    gi = int_grad(x.shape, seed=2)
    mn, mx = t32(-1.7), t32(2.3)
    y, dx, (dmin, dmax) = autograd(lambda v, a, b: lowbit.fake_quant_with_min_max_vars(v, a, b),
                                   x, gi, (mn, mx))
    edx, edmin, edmax = ref.fake_quant_with_min_max_vars_gradient(gi, x, mn, mx)
    assert_exact(y, ref.fake_quant_with_min_max_vars(x, mn, mx), x)
    assert_exact(dx, edx, x)
    assert_exact(dmin, edmin)
    assert_exact(dmax, edmax)
    assert_exact(lowbit.ste_sign(x), ref.ste_sign(x), x)
    assert_exact(lowbit.dorefa(x, k_bit=4), ref.dorefa(x, 4), x)
    assert_exact(lowbit.linear_mid_tread_half(x, bit=3), ref.linear_mid_tread_half(x, 3), x)
    xm = x[:N].reshape(-1, 16)
    mins = -torch.rand(16, generator=gen(3)) * 2
    maxs = torch.rand(16, generator=gen(4)) * 2 + 0.1
    gm = gi[:N].reshape(-1, 16)
    y, dx, (dmin, dmax) = autograd(
        lambda v, a, b: lowbit.fake_quant_with_min_max_vars_per_channel(v, a, b), xm, gm, (mins, maxs))
    edx, edmin, edmax = ref.fake_quant_with_min_max_vars_per_channel_gradient(gm, xm, mins, maxs)
    assert_exact(y, ref.fake_quant_with_min_max_vars_per_channel(xm, mins, maxs), xm)
    assert_exact(dx, edx, xm)
    assert_exact(dmin, edmin)
    assert_exact(dmax, edmax)


def test_reductions(threads):
    x = torch.randn(N + 5, generator=gen(5))
    exp = ref.binary_mean_scaling(x)
    assert_close(lowbit.binary_mean_scaling(x), exp, 1e-6, 0.0, x)
    xm = x[:N].reshape(-1, 8)
    assert_close(lowbit.magnitude_aware_sign(xm), ref.magnitude_aware_sign(xm), 1e-6, 0.0, xm)
    assert_close(lowbit.binary_channel_wise_mean_scaling(xm, axis=0),
                 ref.binary_channel_wise_mean_scaling(xm, 0), 1e-6, 0.0, xm)
    g = normal(x.shape, seed=6)
    pos, neg = t32(1.5), t32(0.5)
    _, dx, (dp, dn) = autograd(lambda v, p, n: lowbit.ttq_weight(v, p, n), x, g, (pos, neg))
    edx, edp, edn = ref.ttq_weight_grad(g, x, pos, neg)
    assert_exact(dx, edx, x)
    d = ref.ttq_threshold(x)
    assert_sum_close(dp, edp, (g.double().abs() * (x > d)).sum(), F32)
    assert_sum_close(dn, edn, (g.double().abs() * (x < -d)).sum(), F32)


def test_same_result_for_every_thread_count():
    """Not in the spec, but promised by the kernels' design: fixed spans make sums reproducible."""
    x = torch.randn(N + 7, generator=gen(7)) * 2
    g = normal(x.shape, seed=8)
    mn, mx = t32(-1.1), t32(0.9)
    results = []
    old = torch.get_num_threads()
    try:
        for k in (1, 2, 4):
            torch.set_num_threads(k)
            d = lowbit.fake_quant_with_min_max_vars_gradient(g, x, mn, mx)
            s = lowbit.binary_mean_scaling(x)
            results.append((d[1], d[2], s))
    finally:
        torch.set_num_threads(old)
    for r in results[1:]:
        for a, b in zip(results[0], r):
            assert_exact(a, b, what="thread count changed a reduction")


@pytest.mark.parametrize("rows,channels", [(200003, 5), (3, 100001), (4099, 33)])
def test_per_channel_sums_same_for_every_thread_count_and_path(rows, channels):
    """Per-channel fake quant with channels not a multiple of 16 (tasks and sum spans of whole
    blocks of 16 / gcd(channels, 16) rows, codes packed by flat index): autograd's d/dx, d/dmin and
    d/dmax, from the saved codes, equal the gradient op's, from x, bit for bit, and neither changes
    with the thread count; the forward without codes gives the same y."""
    x = torch.randn(rows, channels, generator=gen(9)) * 2
    g = normal(x.shape, seed=10)
    mins = -torch.rand(channels, generator=gen(11)) * 2 - 0.1
    maxs = torch.rand(channels, generator=gen(12)) * 2 + 0.1
    results = []
    old = torch.get_num_threads()
    try:
        for k in (1, 2, 4):
            torch.set_num_threads(k)
            y, dx, (dmin, dmax) = autograd(
                lambda v, a, b: lowbit.fake_quant_with_min_max_vars_per_channel(v, a, b), x, g,
                (mins, maxs))
            # The forward without codes (no gradient needed) splits rows freely: the same y.
            assert_exact(lowbit.fake_quant_with_min_max_vars_per_channel(x, mins, maxs), y, x,
                         "forward without codes")
            assert_exact(y, ref.fake_quant_with_min_max_vars_per_channel(x, mins, maxs), x)
            gdx, gdmin, gdmax = lowbit.fake_quant_with_min_max_vars_per_channel_gradient(
                g, x, mins, maxs)
            assert_exact(dx, gdx, x, "d/dx, codes against x")
            assert_exact(dmin, gdmin, what="d/dmin, codes against x")
            assert_exact(dmax, gdmax, what="d/dmax, codes against x")
            results.append((dx, dmin, dmax))
    finally:
        torch.set_num_threads(old)
    for r in results[1:]:
        for a, b in zip(results[0], r):
            assert_exact(a, b, what="thread count changed a per-channel result")
