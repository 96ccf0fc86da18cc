"""Every operator on every device against the CPU (docs/cuda.md): forward and gradients bit for bit
in float32 and float64, sums of reductions within a tolerance. The CUDA cases skip where torch has
no CUDA device (as on the development machines); the CPU case checks the harness itself."""
import math

import pytest
import torch

import lowbit

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def inputs(shape, dtype, seed=0):
    """Normal(0, 2) values with the special cases first: zeros, clip edges, ties, NaN, infinities."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 2
    flat = x.view(-1)
    special = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, 0.05, -0.05, 6.0, -6.0, 0.25, 1.5,
               5.97647047, -6.02352953, math.inf, -math.inf, math.nan]
    k = min(len(special), flat.numel())
    flat[:k] = torch.tensor(special[:k], dtype=torch.float64)
    return x.to(dtype)


def finite(x):
    return torch.where(torch.isfinite(x), x, torch.full_like(x, 0.3))


def same(a, b):
    """Bit-identical values (NaN equal to NaN)."""
    a, b = a.cpu(), b.cpu()
    assert a.dtype == b.dtype and a.shape == b.shape
    both_nan = torch.isnan(a) & torch.isnan(b)
    diff = ~both_nan & (a != b)
    assert not diff.any(), f"{int(diff.sum())} values differ, first at {diff.nonzero()[0].tolist()}"


def close(a, b, rel):
    a, b = a.cpu().double(), b.cpu().double()
    assert torch.allclose(a, b, rtol=rel, atol=rel, equal_nan=True), (a - b).abs().max()


# (name, function of x, whether x must be finite, tolerance: 0 = bit for bit). Each function takes
# the input and the device of its other tensor arguments.
ELEMENTWISE = [
    ("ste_sign", lambda x, d: lowbit.ste_sign(x), False, 0),
    ("ste_sign_no_clip", lambda x, d: lowbit.ste_sign(x, clip_value=None), False, 0),
    ("approx_sign", lambda x, d: lowbit.approx_sign(x), False, 0),
    ("swish_sign", lambda x, d: lowbit.swish_sign(x), True, 1e-6),
    ("ste_heaviside", lambda x, d: lowbit.ste_heaviside(x), False, 0),
    ("magnitude_aware_sign", lambda x, d: lowbit.magnitude_aware_sign(x, axis=0), True, 1e-6),
    ("ste_tern", lambda x, d: lowbit.ste_tern(x), False, 0),
    ("ste_tern_twn", lambda x, d: lowbit.ste_tern(x, ternary_weight_networks=True), True, 1e-6),
    ("dorefa_activations", lambda x, d: lowbit.dorefa(x, k_bit=2), False, 0),
    ("dorefa_weights", lambda x, d: lowbit.dorefa(x, k_bit=2, mode="weights"), True, 1e-5),
    ("binary_mean_scaling", lambda x, d: lowbit.binary_mean_scaling(x), True, 1e-6),
    ("binary_channel_wise_mean_scaling",
     lambda x, d: lowbit.binary_channel_wise_mean_scaling(x, axis=0), True, 1e-6),
    ("linear_mid_tread_half", lambda x, d: lowbit.linear_mid_tread_half(x), False, 0),
    ("linear_mid_tread_half_32", lambda x, d: lowbit.linear_mid_tread_half(x, bit=32), False, 0),
    ("twn_weight", lambda x, d: lowbit.twn_weight(x), True, 1e-6),
    ("ttq_weight", lambda x, d: lowbit.ttq_weight(
        x, torch.tensor(1.5, device=d, requires_grad=True),
        torch.tensor(0.75, device=d, requires_grad=True)), True, 1e-6),
    ("fake_quant_args", lambda x, d: lowbit.fake_quant_with_min_max_args(x, -1.0, 1.0), False, 0),
    ("fake_quant_vars", lambda x, d: lowbit.fake_quant_with_min_max_vars(
        x, torch.tensor(-2.5, device=d, requires_grad=True),
        torch.tensor(1.75, device=d, requires_grad=True)), False, 0),
    ("fake_quant_vars_degenerate", lambda x, d: lowbit.fake_quant_with_min_max_vars(
        x, torch.tensor(0.0, device=d), torch.tensor(0.0, device=d)), False, 0),
    ("fake_quant_per_channel", lambda x, d: lowbit.fake_quant_with_min_max_vars_per_channel(
        x, torch.linspace(-3, -0.5, x.shape[-1], device=d, requires_grad=True),
        torch.linspace(0.5, 4, x.shape[-1], device=d, requires_grad=True), num_bits=4), False, 0),
    ("fake_quant_pow2", lambda x, d: lowbit.fake_quant_pow2(
        x, torch.tensor(-2.5, device=d), torch.tensor(1.75, device=d), max_exponent=3), False, 0),
    ("fake_quant_pow2_per_channel", lambda x, d: lowbit.fake_quant_pow2(
        x, torch.linspace(-3, -0.5, x.shape[-1], device=d),
        torch.linspace(0.5, 4, x.shape[-1], device=d)), False, 0),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name,fn,needs_finite,tol", ELEMENTWISE, ids=[c[0] for c in ELEMENTWISE])
def test_forward_and_gradient_equal_the_cpu(device, dtype, name, fn, needs_finite, tol):
    x = inputs((37, 5, 3, 11), dtype)
    if needs_finite:
        x = finite(x)
    g = inputs(x.shape, dtype, seed=1)
    g = torch.where(torch.isfinite(g), g, torch.ones_like(g))

    def run(dev):
        xd = x.to(dev).requires_grad_(True)
        y = fn(xd, dev)
        leaves = [xd] + [t for t in _leaves(y) if t is not xd]
        grads = torch.autograd.grad(y, leaves, g.to(dev), allow_unused=True)
        return y.detach(), grads

    y_cpu, g_cpu = run("cpu")
    y_dev, g_dev = run(device)
    check = same if tol == 0 else (lambda a, b: close(a, b, tol))
    check(y_cpu, y_dev)
    check(g_cpu[0], g_dev[0])
    # The gradients of min/max/positive/negative are sums: equal up to the order of the additions.
    for a, b in zip(g_cpu[1:], g_dev[1:]):
        if a is not None:
            assert b is not None and b.device.type == device
            close(a, b, 1e-9 if dtype == torch.float64 else 1e-5)


def _leaves(y):
    """The leaf tensors that require a gradient in y's graph."""
    out, seen, stack = [], set(), [y.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        if hasattr(fn, "variable"):
            out.append(fn.variable)
        stack.extend(f for f, _ in fn.next_functions)
    return out


@pytest.mark.parametrize("device", DEVICES)
def test_explicit_gradient_ops_equal_the_cpu(device):
    x = inputs((64, 9), torch.float32)
    g = finite(inputs(x.shape, torch.float32, seed=2))
    mn, mx = torch.tensor(-1.5), torch.tensor(2.0)
    cmn, cmx = torch.linspace(-2, -0.5, 9), torch.linspace(0.5, 3, 9)

    def run(dev):
        return (
            lowbit.fake_quant_with_min_max_args_gradient(g.to(dev), x.to(dev), -1.0, 1.0),
            lowbit.fake_quant_with_min_max_vars_gradient(g.to(dev), x.to(dev), mn.to(dev),
                                                         mx.to(dev)),
            lowbit.fake_quant_with_min_max_vars_per_channel_gradient(
                g.to(dev), x.to(dev), cmn.to(dev), cmx.to(dev)),
            lowbit.pow2_range(cmn.to(dev), cmx.to(dev), max_exponent=1),
        )

    cpu, dev = run("cpu"), run(device)
    same(cpu[0], dev[0])
    for i in (1, 2):
        same(cpu[i][0], dev[i][0])
        close(cpu[i][1], dev[i][1], 1e-5)
        close(cpu[i][2], dev[i][2], 1e-5)
    same(cpu[3][0], dev[3][0])
    same(cpu[3][1], dev[3][1])


@pytest.mark.parametrize("device", DEVICES)
def test_half_inputs_are_computed_in_float32(device):
    x = inputs((1000,), torch.float16)
    same(lowbit.linear_mid_tread_half(x), lowbit.linear_mid_tread_half(x.to(device)))
    same(lowbit.fake_quant_with_min_max_args(x), lowbit.fake_quant_with_min_max_args(x.to(device)))


@pytest.mark.parametrize("device", DEVICES)
def test_errors_name_the_argument_on_every_device(device):
    x = torch.zeros(4, device=device)
    with pytest.raises(ValueError, match="num_bits"):
        lowbit.fake_quant_with_min_max_vars(x, torch.tensor(-1.0, device=device),
                                            torch.tensor(1.0, device=device), num_bits=1)
    with pytest.raises(ValueError, match="min must be a 1-D tensor"):
        lowbit.fake_quant_with_min_max_vars_per_channel(x, torch.zeros(3, device=device),
                                                        torch.ones(4, device=device))
    with pytest.raises(TypeError, match="floating point"):
        lowbit.ste_sign(torch.zeros(4, dtype=torch.int32, device=device))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_invalid_vars_range_gives_nan_without_a_sync():
    # docs/cuda.md: min >= max cannot be reported without reading the device; the output is NaN.
    x = torch.linspace(-1, 1, 10, device="cuda")
    y = lowbit.fake_quant_with_min_max_vars(x, torch.tensor(1.0, device="cuda"),
                                            torch.tensor(-1.0, device="cuda"))
    assert torch.isnan(y).all()


@pytest.mark.parametrize("device", DEVICES)
def test_quantized_layers_train_like_on_the_cpu(device):
    from lowbit import nn as qnn

    def step(dev):
        torch.manual_seed(0)
        layer = qnn.QuantConv2d(3, 4, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                                kernel_constraint="weight_clip").to(dev)
        x = inputs((2, 3, 8, 8), torch.float32).clamp(-3, 3).to(dev)
        layer(x).square().sum().backward()
        return layer.weight.grad

    close(step("cpu"), step(device), 1e-4)
