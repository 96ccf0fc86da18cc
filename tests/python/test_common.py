"""Every differentiable op: forward and gradients against the reference across dtypes, strides,
empty and 0-dim inputs, sizes around SIMD widths, the backward= override and torch.ops registration."""

import re

import pytest
import torch

import lowbit  # noqa: F401  (loads the library, registers torch.ops.lowbit)
from cases import CASES, EXTRAS_DIFFERENTIABLE
from helpers import (F32, F64, VALUE_RTOL, assert_close, assert_exact, assert_sign_exact, autograd,
                     gen, int_grad)

HALF = (torch.float16, torch.bfloat16)
TRANSCENDENTAL_RTOL = {F32: 1e-5, F64: 1e-10, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
SPECIALS = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 0.3, -0.3, 2.0, -2.0, 1.7, 3.5, -1e-30, 0.25, 0.75]


def make_input(case, shape, seed, dtype=F32):
    x = (torch.randn(shape, generator=gen(seed), dtype=F64) * 1.5)
    flat = x.view(-1)
    k = min(len(SPECIALS), flat.numel())
    flat[:k] = torch.tensor(SPECIALS[:k], dtype=F64)
    x = x.to(dtype)
    return case.sanitize(x)


def assert_half_of_f32(got, v32, x=None, what="", rel=2e-6):
    """float16/bfloat16 results of a scale that carries a reduction: got must be v32 (the float32
    result) cast to got's dtype, where v32 may be off by `rel` (the float32 reduction's last bits).
    A scale rounded to half precision before use is not: that is computing in half."""
    dt = got.dtype
    cands = [v32.to(dt), (v32.double() * (1 + rel)).float().to(dt),
             (v32.double() * (1 - rel)).float().to(dt)]
    ok = torch.zeros_like(got, dtype=torch.bool)
    for c in cands:
        ok |= (got == c) | (torch.isnan(got) & torch.isnan(c))
    if not bool(ok.all()):
        assert_exact(got, cands[0], x, what + " (float32 result cast to " + str(dt) + ")")


def _f32(t):
    return t.float() if t.dtype in HALF else t


def check_forward(case, got, x, extras, what=""):
    what = f"{case.name} {what}".strip()
    exp = case.ref_fwd(x, *extras)
    if case.fwd == "exact":
        assert_exact(got, exp, x, what)
    elif x.dtype in HALF:
        assert got.dtype == x.dtype, what
        assert_half_of_f32(got, case.ref_fwd(_f32(x), *[_f32(e) for e in extras]), x, what)
    else:
        assert_close(got, exp, VALUE_RTOL[exp.dtype], 0.0, x, what)
        assert_sign_exact(got, exp, what)


def check_dx(case, got, g, x, extras, what=""):
    what = f"{case.name} d/dx {what}".strip()
    assert got is not None, what + ": no gradient"
    exp = case.ref_grad(g, x, *extras)[0]
    if case.grad == "exact":
        assert_exact(got, exp, x, what)
    elif case.grad == "scaled":
        if x.dtype in HALF:
            assert got.dtype == x.dtype, what
            v32 = case.ref_grad(_f32(g), _f32(x), *[_f32(e) for e in extras])[0]
            assert_half_of_f32(got, v32, x, what)
        else:
            assert_close(got, exp, VALUE_RTOL[exp.dtype], 0.0, x, what)
            assert_sign_exact(got, exp, what)
    else:
        rtol = TRANSCENDENTAL_RTOL[exp.dtype]
        scale = float(exp.to(F64).abs().max()) if exp.numel() else 0.0
        assert_close(got, exp, rtol, rtol * scale / 10, x, what)


def check_all(case, x, g, extras, y, dx, dextras, what=""):
    check_forward(case, y, x, extras, what)
    check_dx(case, dx, g, x, extras, what)
    if case.name in EXTRAS_DIFFERENTIABLE:
        exp = case.ref_grad(g, x, *extras)
        # integer-valued g: the sums are exact in any order, so exact comparisons
        for i, (got, e) in enumerate(zip(dextras, exp[1:])):
            assert got is not None, f"{case.name}: no gradient for extra input {i}"
            assert_exact(got, e, what=f"{case.name} d/dextra{i} {what}")


def run(case, x, g, extras, view=None, backward=None):
    extras_grad = case.name in EXTRAS_DIFFERENTIABLE

    def fn(v, *ex):
        if backward is None:
            return case.call(v, *ex)
        return case.call(v, *ex, backward=backward)

    return autograd(fn, x, g, extras, extras_grad=extras_grad, view=view)


# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 13), (3, 4, 6), (2, 1, 3, 8)], ids=str)
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_float32(case, shape):
    x = make_input(case, shape, seed=1)
    g = int_grad(shape, seed=2)
    extras = case.extras(x)
    y, dx, dex = run(case, x, g, extras)
    check_all(case, x, g, extras, y, dx, dex)


@pytest.mark.parametrize("dtype", [F64, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_dtypes(case, dtype):
    """float64 in float64; float16/bfloat16 computed in float32 and cast back; grads in input dtype."""
    x = make_input(case, (9, 17), seed=3, dtype=dtype)
    g = int_grad(x.shape, seed=4, dtype=dtype)
    extras = case.extras(x)
    y, dx, dex = run(case, x, g, extras)
    assert y.dtype == dtype and dx.dtype == dtype
    for e, d in zip(extras, dex):
        if d is not None:
            assert d.dtype == e.dtype
    check_all(case, x, g, extras, y, dx, dex, str(dtype))


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool], ids=str)
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_integer_and_bool_inputs_raise(case, dtype):
    x = torch.arange(12).reshape(3, 4).to(dtype)
    extras = case.extras(torch.zeros(3, 4))
    with pytest.raises((RuntimeError, ValueError, TypeError)):
        case.call(x, *extras)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_integer_input_message_names_argument(case):
    """docs/python-api.md: errors come with a message that names the argument."""
    x = torch.arange(12).reshape(3, 4)
    extras = case.extras(torch.zeros(3, 4))
    with pytest.raises((RuntimeError, ValueError, TypeError)) as info:
        case.call(x, *extras)
    msg = str(info.value)
    assert re.search(rf"\b{case.first_arg}\b", msg), f"message does not name '{case.first_arg}': {msg}"


VIEWS = {
    "transpose": lambda b: b.t(),
    "stride3": lambda b: b[:, ::3],
    "offset_slice": lambda b: b[2:, 5:],
    "transpose_slice": lambda b: b.t()[1::2],
}


@pytest.mark.parametrize("view", list(VIEWS), ids=str)
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_non_contiguous(case, view):
    v = VIEWS[view]
    base = torch.randn(24, 40, generator=gen(5)) * 1.5
    xv = v(base)
    xv.copy_(case.sanitize(xv.contiguous()))
    xv = v(base)
    assert not xv.is_contiguous()
    xc = xv.contiguous()
    extras = case.extras(xc)
    gbase = int_grad(base.shape, seed=6)
    gc = v(gbase).contiguous()
    # the op sees the strided view; the same values contiguous must give the same result
    y, dx, dex = run(case, base, gc, extras, view=v)
    yc, dxc, dexc = run(case, xc, gc, extras)
    if case.fwd == "exact":
        assert_exact(y, yc, xc, "strided vs contiguous forward")
    else:
        assert_close(y, yc, VALUE_RTOL[F32], 0.0, xc, "strided vs contiguous forward")
    check_all(case, xc, gc, extras, y, dx, dex, view)
    # a non-contiguous incoming gradient
    _, dx2, dex2 = run(case, xc, v(gbase), extras)
    check_all(case, xc, gc, extras, yc, dx2, dex2, view + " (strided grad)")


@pytest.mark.parametrize("shape", [(0,), (0, 3), (4, 0)], ids=str)
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_empty(case, shape):
    x = torch.zeros(shape)
    g = torch.zeros(shape)
    extras = case.extras(x)
    y, dx, dex = run(case, x, g, extras)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert dx.shape == x.shape
    if case.name in EXTRAS_DIFFERENTIABLE:
        for e, d in zip(extras, dex):
            assert_exact(d, torch.zeros_like(e), what="gradient of an extra input on an empty tensor")


@pytest.mark.parametrize("case", [c for c in CASES if c.zero_dim], ids=repr)
def test_zero_dim(case):
    for i, v in enumerate([-2.0, -0.4, -0.0, 0.0, 0.2, 0.5, 1.0, 3.0]):
        x = torch.tensor(v)
        g = torch.tensor(float(i + 1))
        extras = case.extras(x)
        y, dx, dex = run(case, x, g, extras)
        assert y.dim() == 0 and dx.dim() == 0
        check_all(case, x, g, extras, y, dx, dex, f"0-dim x={v}")


SIZES = [1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 129, 1000, 100003, 1000003]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_sizes(case, n):
    """Sizes around every vector width, and large enough to be split across threads."""
    shape = (n, 1) if case.axis_op else (n,)
    x = make_input(case, shape, seed=n)
    g = int_grad(shape, seed=n + 1)
    extras = case.extras(x)
    y, dx, dex = run(case, x, g, extras)
    check_all(case, x, g, extras, y, dx, dex, f"n={n}")


# --------------------------------------------------------------------------------------------------
# backward= override


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_backward_override_constant(case):
    x = make_input(case, (6, 7), seed=8)
    g = int_grad(x.shape, seed=9)
    extras = case.extras(x)
    calls = []

    def times3(xx, gg):
        calls.append((xx.detach().clone(), gg.detach().clone()))
        return gg * 3

    y, dx, dex = run(case, x, g, extras, backward=times3)
    assert calls, "backward= callable was not called"
    check_forward(case, y, x, extras, "forward with backward=")
    assert_exact(dx, g * 3, x, f"{case.name}: d/dx with backward=lambda x, g: g * 3")
    # the callable sees the op's input and the incoming gradient
    seen_x, seen_g = calls[0]
    assert_exact(seen_x, x, what="x passed to backward=")
    assert_exact(seen_g, g, what="grad passed to backward=")
    # the other inputs keep their default gradients
    if case.name in EXTRAS_DIFFERENTIABLE:
        exp = case.ref_grad(g, x, *extras)
        for i, (got, e) in enumerate(zip(dex, exp[1:])):
            assert_exact(got, e, what=f"{case.name} d/dextra{i} with backward=")


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_backward_override_uses_x(case):
    x = make_input(case, (11,), seed=10)
    g = int_grad(x.shape, seed=11)
    extras = case.extras(x)
    y, dx, _ = run(case, x, g, extras, backward=lambda xx, gg: gg * xx + 1.0)
    assert_exact(dx, g * x + 1.0, x, f"{case.name}: backward=lambda x, g: g * x + 1")


# --------------------------------------------------------------------------------------------------
# torch.ops registration, NaN / inf


def test_torch_ops_ste_sign():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0])
    y = torch.ops.lowbit.ste_sign(x, clip_value=1.0)
    assert y.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_torch_ops_forward_matches(case):
    x = make_input(case, (5, 8), seed=12)
    extras = case.extras(x)
    got = case.torch_op(x, *extras)
    check_forward(case, got, x, extras, "torch.ops")


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_nan_inf_do_not_crash(case):
    x = torch.tensor([[float("nan"), float("inf"), float("-inf"), 0.0],
                      [1.0, -1.0, 0.25, -3.0]])
    extras = case.extras(x)
    g = torch.ones_like(x)
    y, dx, _ = run(case, x, g, extras)
    assert y.shape == x.shape and dx.shape == x.shape


# --------------------------------------------------------------------------------------------------
# defaults of the spec's signatures, through the Python functions and through torch.ops


def _defaults_table():
    import reference as ref
    from helpers import t32

    mm = (t32(-0.9), t32(1.3))
    pc = (t32([-0.9, -2.0, -0.1, -3.0, -1.0]), t32([1.3, 0.5, 0.2, 3.0, 1.0]))
    pn = (t32(1.2), t32(0.8))
    return [
        ("fake_quant_with_min_max_args", (),
         lambda x: ref.fake_quant_with_min_max_args(x, -6.0, 6.0, 8, False)),
        ("fake_quant_with_min_max_vars", mm,
         lambda x: ref.fake_quant_with_min_max_vars(x, *mm, 8, False)),
        ("fake_quant_with_min_max_vars_per_channel", pc,
         lambda x: ref.fake_quant_with_min_max_vars_per_channel(x, *pc, 8, False)),
        ("ste_sign", (), ref.ste_sign),
        ("approx_sign", (), ref.approx_sign),
        ("swish_sign", (), ref.swish_sign),
        ("ste_heaviside", (), ref.ste_heaviside),
        ("ste_tern", (), lambda x: ref.ste_tern(x, 0.05, False)),
        ("dorefa", (), lambda x: ref.dorefa(x, 2, "activations")),
        ("linear_mid_tread_half", (), lambda x: ref.linear_mid_tread_half(x, 2, 2.0)),
        ("ttq_weight", pn, lambda x: ref.ttq_weight(x, *pn, 0.05)),
        ("fake_quant_pow2", mm, lambda x: ref.fake_quant_pow2(x, *mm, 8, None)),
    ]


@pytest.mark.parametrize("entry", _defaults_table(), ids=lambda e: e[0])
def test_defaults(entry):
    name, extras, expected = entry
    x = torch.randn(40, 5, generator=gen(13)) * 4
    x[0, :] = torch.tensor([0.0, 0.05, -0.05, 1.0, 2.0])
    exp = expected(x)
    assert_exact(getattr(lowbit, name)(x, *extras), exp, x, f"lowbit.{name} defaults")
    assert_exact(getattr(torch.ops.lowbit, name)(x, *extras), exp, x,
                 f"torch.ops.lowbit.{name} defaults")


def test_defaults_gradients():
    import reference as ref
    from helpers import t32

    x = torch.randn(40, 5, generator=gen(14)) * 4
    g = int_grad(x.shape, seed=15)
    _, dx, _ = autograd(lambda v: lowbit.ste_sign(v), x, g)
    assert_exact(dx, ref.ste_sign_grad(g, x, 1.0), x)
    _, dx, _ = autograd(lambda v: lowbit.ste_tern(v), x, g)
    assert_exact(dx, ref.ste_tern_grad(g, x, 0.05, False, 1.0), x)
    _, dx, _ = autograd(lambda v: lowbit.magnitude_aware_sign(v), x, g)
    assert_close(dx, ref.magnitude_aware_sign_grad(g, x, 1.0, -1), 1e-6, 0.0, x)
    _, dx, _ = autograd(lambda v: lowbit.linear_mid_tread_half(v), x, g)
    assert_exact(dx, ref.linear_mid_tread_half_grad(g, x, 2, 2.0), x)
    _, dx, _ = autograd(lambda v: lowbit.swish_sign(v), x, g)
    exp = ref.swish_sign_grad(g, x, 5.0)
    assert_close(dx, exp, 1e-5, 1e-6 * float(exp.abs().max()), x)
    assert_exact(lowbit.fake_quant_with_min_max_args_gradient(g, x),
                 ref.fake_quant_with_min_max_args_gradient(g, x, -6.0, 6.0, 8, False), x)
    mm = (t32(-0.9), t32(1.3))
    got = lowbit.fake_quant_with_min_max_vars_gradient(g, x, *mm)
    exp = ref.fake_quant_with_min_max_vars_gradient(g, x, *mm, 8, False)
    for a, b in zip(got, exp):
        assert_exact(a.reshape(b.shape), b)
    mn, mx = lowbit.pow2_range(t32(-0.3), t32(0.3))
    assert float(mn) == -0.5 and float(mx) == 0.49609375
