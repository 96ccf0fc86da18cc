"""Comparison, input-generation and autograd helpers shared by the lowbit Python tests."""

import torch

import reference as ref

F32 = torch.float32
F64 = torch.float64

# tolerance for reductions (means, sums of gradients), relative to the sum of |terms|
SUM_RTOL = {torch.float32: 1e-6, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
# one or two units in the last place of the dtype, for forward values that carry a reduction
VALUE_RTOL = {torch.float32: 1e-6, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def gen(seed):
    return torch.Generator().manual_seed(seed)


def t32(v):
    return torch.tensor(v, dtype=F32)


def _fmt(v):
    v = float(v)
    return f"{v!r} ({v.hex()})" if v == v and abs(v) != float("inf") else repr(v)


def _describe(got, exp, bad, x=None, limit=6):
    idx = bad.nonzero()
    lines = [f"{int(bad.sum())} of {bad.numel()} elements differ; first ones:"]
    for row in idx[:limit]:
        i = tuple(int(v) for v in row)
        s = f"  at {i}: expected {_fmt(exp[i])}, got {_fmt(got[i])}"
        if x is not None and tuple(x.shape) == tuple(got.shape):
            s += f", input {_fmt(x[i])}"
        lines.append(s)
    return "\n".join(lines)


def assert_exact(got, exp, x=None, what=""):
    """Bit-exact (torch.equal, so -0 == +0) with dtype and shape."""
    assert isinstance(got, torch.Tensor), f"{what}: got {type(got)}"
    assert got.dtype == exp.dtype, f"{what}: dtype {got.dtype} != {exp.dtype}"
    assert tuple(got.shape) == tuple(exp.shape), f"{what}: shape {tuple(got.shape)} != {tuple(exp.shape)}"
    if torch.equal(got, exp):
        return
    if got.dim() == 0:
        raise AssertionError(f"{what}: expected {_fmt(exp)}, got {_fmt(got)}" +
                             (f", input {_fmt(x)}" if x is not None and x.dim() == 0 else ""))
    bad = ~((got == exp) | (torch.isnan(got) & torch.isnan(exp)))
    if not bool(bad.any()):
        return  # only NaNs in the same places
    raise AssertionError(f"{what}: not bit-exact\n" + _describe(got, exp, bad, x))


def assert_close(got, exp, rtol, atol=0.0, x=None, what=""):
    assert isinstance(got, torch.Tensor), f"{what}: got {type(got)}"
    assert got.dtype == exp.dtype, f"{what}: dtype {got.dtype} != {exp.dtype}"
    assert tuple(got.shape) == tuple(exp.shape), f"{what}: shape {tuple(got.shape)} != {tuple(exp.shape)}"
    g = got.to(F64)
    e = exp.to(F64)
    bad = ~(((g - e).abs() <= atol + rtol * e.abs()) | (g == e))
    if bool(bad.any()):
        if got.dim() == 0:
            raise AssertionError(f"{what}: expected {_fmt(exp)}, got {_fmt(got)} (rtol {rtol}, atol {atol})")
        raise AssertionError(f"{what}: not close (rtol {rtol}, atol {atol})\n" +
                             _describe(got, exp, bad, x))


def assert_sum_close(got, exp, abs_sum, dtype, what=""):
    """A reduction: |got - exp| <= rtol * sum(|terms|) (element-wise for per-channel sums)."""
    rtol = SUM_RTOL[dtype]
    assert got.dtype == exp.dtype, f"{what}: dtype {got.dtype} != {exp.dtype}"
    assert tuple(got.shape) == tuple(exp.shape), f"{what}: shape {tuple(got.shape)} != {tuple(exp.shape)}"
    tol = rtol * abs_sum.to(F64) + 1e-30
    g = got.to(F64)
    e = exp.to(F64)
    bad = (g - e).abs() > tol
    if bool(bad.any()):
        if got.dim() == 0:
            raise AssertionError(f"{what}: expected {_fmt(exp)}, got {_fmt(got)} (tol {float(tol)})")
        raise AssertionError(f"{what}: sums differ beyond {rtol} * sum|terms|\n" +
                             _describe(got, exp, bad))


def assert_sign_exact(got, exp, what=""):
    """For values s * sign: the signs (and zeros) must agree exactly even when s is only close."""
    assert torch.equal(torch.sign(got), torch.sign(exp)), f"{what}: signs differ\n" + \
        _describe(got, exp, torch.sign(got) != torch.sign(exp))


def int_grad(shape, seed, dtype=F32):
    """Integer-valued gradients: every summation order gives the exact same float sum."""
    return torch.randint(-4, 5, shape, generator=gen(seed)).to(dtype)


def normal(shape, seed, dtype=F32, scale=1.0):
    return (torch.randn(shape, generator=gen(seed), dtype=F64) * scale).to(dtype)


def autograd(fn, base, g, extras=(), extras_grad=True, view=None):
    """y = fn(view(base), *extras); y.backward(g). Returns (y, d/dx seen through the view, [d/dextra]).

    `base` is the leaf; `view` (e.g. a transpose or a strided slice) makes the op see a
    non-contiguous input while the gradient still lands on the leaf."""
    leaf = base.detach().clone().requires_grad_(True)
    ex = [e.detach().clone().requires_grad_(extras_grad) for e in extras]
    xin = view(leaf) if view is not None else leaf
    y = fn(xin, *ex)
    assert isinstance(y, torch.Tensor), f"forward returned {type(y)}"
    assert y.requires_grad, "output does not require grad"
    y.backward(g)
    dx = leaf.grad
    if view is not None and dx is not None:
        dx = view(dx)
    return y.detach(), dx, [e.grad for e in ex]


# ---------------------------------------------------------------------------------------------------
# inputs for the fake quant ops: grid points, exact midpoints (ties), boundaries and their neighbours


def fq_values(nmin, nmax, scale, qspan, n, seed):
    """Float32 inputs around one nudged range (all arguments float32 0-dim tensors or floats)."""
    g = gen(seed)
    nmin = torch.as_tensor(nmin, dtype=F32)
    nmax = torch.as_tensor(nmax, dtype=F32)
    scale = torch.as_tensor(scale, dtype=F32)
    k = torch.randint(0, qspan + 1, (n,), generator=g).to(F32)
    grid = nmin + k * scale
    mid = nmin + (k + 0.5) * scale
    width = nmax - nmin
    uni = nmin - width / 4 + torch.rand(n, generator=g) * (width * 1.5)
    inf = torch.tensor(float("inf"))
    specials = torch.stack([
        nmin, nmax,
        torch.nextafter(nmin, -inf), torch.nextafter(nmin, inf),
        torch.nextafter(nmax, -inf), torch.nextafter(nmax, inf),
        t32(0.0), t32(-0.0), t32(1e30), t32(-1e30), nmin - width, nmax + width,
    ])
    return torch.cat([specials, grid, mid, uni])


def fq_values_for_range(min_v, max_v, num_bits, narrow, n, seed, dtype=F32):
    p = ref.nudge(torch.tensor(min_v, dtype=dtype), torch.tensor(max_v, dtype=dtype), num_bits,
                  narrow)
    qmin, qmax = ref.quant_range(num_bits, narrow)
    x = fq_values(p.nudged_min.float(), p.nudged_max.float(), p.scale.float(), qmax - qmin, n, seed)
    return x.to(dtype)


def fq_values_per_channel(mins, maxs, num_bits, narrow, rows, seed):
    """A (rows + 12, C) float32 matrix whose column c is drawn around channel c's nudged range."""
    cols = []
    for c, (a, b) in enumerate(zip(mins.tolist(), maxs.tolist())):
        if a == 0.0 and b == 0.0:
            cols.append(torch.randn(rows // 3 * 3 + 12, generator=gen(seed + c)))
            continue
        cols.append(fq_values_for_range(a, b, num_bits, narrow, rows // 3, seed + c))
    return torch.stack(cols, dim=1)


# ---------------------------------------------------------------------------------------------------
# inputs that keep clear of thresholds computed by a reduction (where the reduction's last bit decides)


def clear_of(x, threshold_fn, rel=1e-5, max_iter=20):
    """Moves elements with ||x| - D| <= rel * D away from D = threshold_fn(x), repeatedly."""
    x = x.clone()
    for _ in range(max_iter):
        d = threshold_fn(x).to(F64)
        ax = x.to(F64).abs()
        near = (ax - d).abs() <= rel * d
        if not bool(near.any()) or float(d) == 0.0:
            return x
        x = torch.where(near, x * 1.01, x)
    raise AssertionError("could not move inputs away from the threshold")


def dorefa_weights_ambiguous(x, k_bit, ulps=2):
    """Elements whose rounded level could change if tanh (and so M) were off by `ulps` ulps: there
    the last bit of the platform's tanh decides, which the spec does not pin down."""
    xc = x.to(F64 if x.dtype == F64 else F32)
    dt = xc.dtype
    inf = torch.tensor(float("inf"), dtype=dt)
    n = ref.dorefa_levels(k_bit, dt)
    t0 = torch.tanh(xc)
    m0 = t0.abs().max() if t0.numel() else torch.zeros((), dtype=dt)
    if float(m0) == 0.0:
        return torch.zeros_like(x, dtype=torch.bool)

    def shift(v, k):
        for _ in range(abs(k)):
            v = torch.nextafter(v, inf if k > 0 else -inf)
        return v

    levels = []
    for dt_ in (-ulps, 0, ulps):
        for dm in (-ulps, 0, ulps):
            t = shift(t0, dt_)
            m = shift(m0, dm)
            p = t / (ref.const(2.0, dt) * m) + ref.const(0.5, dt)
            levels.append(torch.round(p * n))
    lv = torch.stack(levels)
    return (lv != lv[4]).any(dim=0) & (t0.abs() != m0)


def clear_of_dorefa_ties(x, k_bit, max_iter=20):
    """Moves elements where the last bit of tanh could decide the dorefa weights level."""
    x = x.clone()
    for _ in range(max_iter):
        near = dorefa_weights_ambiguous(x, k_bit)
        if not bool(near.any()):
            return x
        x = torch.where(near, x * 0.999, x)
    raise AssertionError("could not move inputs away from dorefa ties")
