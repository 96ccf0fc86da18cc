"""Pure-PyTorch reference of every lowbit operator, written from ../../../shared/spec/quantizers.md.

It never imports lowbit. Element-wise arithmetic is done in the compute dtype (float32 for float32,
float16 and bfloat16 inputs; float64 for float64) one IEEE operation at a time, in the order the spec
writes it, so float32 results are bit-exact. Constants given as Python floats (min, max, clip_value,
thresholds, ...) are first rounded to the compute dtype, as the sources do. Reductions (means, sums of
gradients) are accumulated in float64 and rounded once to the result dtype: they are the "true" value
the tests compare against with a tolerance.
"""

import torch


# ---------------------------------------------------------------------------------------------------
# helpers


def compute_dtype(dtype):
    """float16/bfloat16 are computed in float32; float32/float64 in themselves; others are errors."""
    if dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    if dtype in (torch.float32, torch.float64):
        return dtype
    raise TypeError(f"reference: unsupported dtype {dtype}")


def const(v, dtype):
    """A Python number rounded once to `dtype` (a 0-dim tensor)."""
    return torch.tensor(v, dtype=dtype)


def _up(t):
    """Upcast a tensor to its compute dtype."""
    return t.to(compute_dtype(t.dtype))


def sign0(x):
    """-1 for x < 0, +1 for x >= 0 (so sign0(+-0) = +1)."""
    one = torch.ones_like(x)
    return torch.where(x >= 0, one, -one)


def tfsign(x):
    """-1, 0, +1 (tf.sign / torch.sign)."""
    return torch.sign(x)


def round_half_away(v):
    """std::round: ties away from zero, exact for every float (no v + 0.5 rounding trap)."""
    t = torch.trunc(v)
    frac = v - t  # exact
    return torch.where(frac.abs() >= 0.5, t + torch.sign(v), t)


def round_half_even(v):
    """nearbyint in the default rounding mode."""
    return torch.round(v)  # torch.round is round-half-to-even


def mask(cond, dtype):
    return cond.to(dtype)


def _sum64(t, dims=None):
    t = t.to(torch.float64)
    if dims is None:
        return t.sum()
    return t.sum(dim=dims)


def reduce_dims_except(ndim, axis):
    axis = axis % ndim
    return [d for d in range(ndim) if d != axis]


def mean_abs_except(x, axis):
    """mean(|x|) over every dim except `axis` (keepdim, float64 accumulation, rounded to x.dtype)."""
    if x.dim() == 0:
        return x.abs()
    dims = reduce_dims_except(x.dim(), axis)
    ax = x.abs().to(torch.float64)
    if not dims:
        return ax.to(x.dtype)
    return ax.mean(dim=dims, keepdim=True).to(x.dtype)


def mean_abs_all(x):
    return x.abs().to(torch.float64).mean().to(x.dtype)


# ---------------------------------------------------------------------------------------------------
# 1. TensorFlow fake quantization


class Nudged:
    """Nudged range parameters; every field a tensor shaped like min/max (0-dim or [C])."""

    def __init__(self, scale, inv_scale, zp_from_min, zero_point, nudged_min, nudged_max,
                 quant_zero):
        self.scale = scale
        self.inv_scale = inv_scale
        self.zp_from_min = zp_from_min
        self.zero_point = zero_point
        self.nudged_min = nudged_min
        self.nudged_max = nudged_max
        self.quant_zero = quant_zero


def quant_range(num_bits, narrow_range):
    if not (2 <= num_bits <= 16):
        raise ValueError("num_bits must be between 2 and 16, inclusive")
    qmin = 1 if narrow_range else 0
    qmax = 2 ** num_bits - 1
    return qmin, qmax


def nudge(min_t, max_t, num_bits, narrow_range):
    """Spec section 1 nudging, element-wise over min_t/max_t, in their dtype, in the spec's order."""
    dt = min_t.dtype
    assert max_t.dtype == dt
    qmin, qmax = quant_range(num_bits, narrow_range)
    qmin_f = const(float(qmin), dt)
    qmax_f = const(float(qmax), dt)
    scale = (max_t - min_t) / (qmax_f - qmin_f)
    inv_scale = (qmax_f - qmin_f) / (max_t - min_t)  # recomputed, not 1/scale
    zp_from_min = qmin_f - min_t / scale
    zp = torch.where(zp_from_min < qmin_f, qmin_f,
                     torch.where(zp_from_min > qmax_f, qmax_f, round_half_away(zp_from_min)))
    nudged_min = (qmin_f - zp) * scale
    nudged_max = (qmax_f - zp) * scale
    quant_zero = torch.floor(-nudged_min * inv_scale + const(0.5, dt))
    return Nudged(scale, inv_scale, zp_from_min, zp, nudged_min, nudged_max, quant_zero)


def _fq_forward(x, p, divide):
    dt = x.dtype
    clamped = torch.maximum(torch.minimum(x, p.nudged_max), p.nudged_min)  # min first, then max
    shifted = clamped - p.nudged_min
    if divide:
        v = shifted / p.scale
    else:
        v = shifted * p.inv_scale
    return torch.floor(v - p.quant_zero + const(0.5, dt)) * p.scale


def _fq_grads(g, x, p, per_channel_dims=None):
    dt = x.dtype
    inside = (p.nudged_min <= x) & (x <= p.nudged_max)
    dx = g * mask(inside, dt)
    below = g.to(torch.float64) * mask(x < p.nudged_min, torch.float64)
    above = g.to(torch.float64) * mask(x > p.nudged_max, torch.float64)
    if per_channel_dims is None:
        return dx, below.sum(), above.sum()
    if per_channel_dims:
        return dx, below.sum(dim=per_channel_dims), above.sum(dim=per_channel_dims)
    return dx, below, above  # 1-D input: every element is its own channel


def _args_params(min_, max_, num_bits, narrow_range, dt):
    if not (min_ < max_):
        raise ValueError("min has to be smaller than max")
    return nudge(const(min_, dt), const(max_, dt), num_bits, narrow_range)


def fake_quant_with_min_max_args(inputs, min=-6.0, max=6.0, num_bits=8, narrow_range=False):
    x = _up(inputs)
    p = _args_params(min, max, num_bits, narrow_range, x.dtype)
    return _fq_forward(x, p, divide=False).to(inputs.dtype)


def fake_quant_with_min_max_args_gradient(gradients, inputs, min=-6.0, max=6.0, num_bits=8,
                                          narrow_range=False):
    x = _up(inputs)
    g = gradients.to(x.dtype)
    p = _args_params(min, max, num_bits, narrow_range, x.dtype)
    dx, _, _ = _fq_grads(g, x, p)
    return dx.to(inputs.dtype)


def _vars_minmax(min_t, max_t, dt):
    assert min_t.numel() == 1 and max_t.numel() == 1
    return min_t.reshape(()).to(dt), max_t.reshape(()).to(dt)


def fake_quant_with_min_max_vars(inputs, min, max, num_bits=8, narrow_range=False):
    x = _up(inputs)
    mn, mx = _vars_minmax(min, max, x.dtype)
    p = nudge(mn, mx, num_bits, narrow_range)
    y = _fq_forward(x, p, divide=True)
    if bool((mn == 0) & (mx == 0)):
        y = torch.zeros_like(x)
    return y.to(inputs.dtype)


def fake_quant_with_min_max_vars_gradient(gradients, inputs, min, max, num_bits=8,
                                          narrow_range=False):
    """(d/dx, d/dmin, d/dmax); d/dmin, d/dmax shaped like min/max, in their dtype."""
    x = _up(inputs)
    g = gradients.to(x.dtype)
    mn, mx = _vars_minmax(min, max, x.dtype)
    p = nudge(mn, mx, num_bits, narrow_range)
    dx, dmin, dmax = _fq_grads(g, x, p)
    if bool((mn == 0) & (mx == 0)):
        dx = g.clone()
        dmin = torch.zeros((), dtype=torch.float64)
        dmax = torch.zeros((), dtype=torch.float64)
    return (dx.to(inputs.dtype), dmin.reshape(min.shape).to(min.dtype),
            dmax.reshape(max.shape).to(max.dtype))


def _pc_check(x, min_t, max_t):
    assert x.dim() >= 1
    assert min_t.dim() == 1 and min_t.shape[0] == x.shape[-1]
    assert max_t.dim() == 1 and max_t.shape[0] == x.shape[-1]


def fake_quant_with_min_max_vars_per_channel(inputs, min, max, num_bits=8, narrow_range=False):
    _pc_check(inputs, min, max)
    x = _up(inputs)
    mn, mx = min.to(x.dtype), max.to(x.dtype)
    p = nudge(mn, mx, num_bits, narrow_range)
    y = _fq_forward(x, p, divide=False)
    degenerate = (mn == 0) & (mx == 0)
    y = torch.where(degenerate, torch.zeros_like(y), y)
    return y.to(inputs.dtype)


def fake_quant_with_min_max_vars_per_channel_gradient(gradients, inputs, min, max, num_bits=8,
                                                      narrow_range=False):
    _pc_check(inputs, min, max)
    x = _up(inputs)
    g = gradients.to(x.dtype)
    mn, mx = min.to(x.dtype), max.to(x.dtype)
    p = nudge(mn, mx, num_bits, narrow_range)
    dims = list(range(x.dim() - 1))
    dx, dmin, dmax = _fq_grads(g, x, p, per_channel_dims=dims)
    degenerate = (mn == 0) & (mx == 0)
    dx = torch.where(degenerate, g, dx)
    zero = torch.zeros((), dtype=torch.float64)
    dmin = torch.where(degenerate, zero, dmin)
    dmax = torch.where(degenerate, zero, dmax)
    return dx.to(inputs.dtype), dmin.to(min.dtype), dmax.to(max.dtype)


# ---------------------------------------------------------------------------------------------------
# 2. Larq quantizers


def clipped_ste(g, x, clip_value):
    if clip_value is None:
        return g.clone()
    return g * mask(x.abs() <= const(clip_value, x.dtype), x.dtype)


def ste_sign(x, clip_value=1.0):
    return sign0(_up(x)).to(x.dtype)


def ste_sign_grad(g, x, clip_value=1.0):
    xc = _up(x)
    return clipped_ste(g.to(xc.dtype), xc, clip_value).to(x.dtype)


def approx_sign(x):
    return sign0(_up(x)).to(x.dtype)


def approx_sign_grad(g, x):
    xc = _up(x)
    dt = xc.dtype
    ax = xc.abs()
    two = const(2.0, dt)
    d = torch.where(ax <= const(1.0, dt), two - two * ax, torch.zeros_like(ax))
    return (g.to(dt) * d).to(x.dtype)


def swish_sign(x, beta=5.0):
    return sign0(_up(x)).to(x.dtype)


def swish_sign_grad(g, x, beta=5.0):
    """Transcendental: computed in float64 (the true value) and rounded; compare with a tolerance."""
    xd = _up(x).to(torch.float64)
    b = float(torch.tensor(beta, dtype=compute_dtype(x.dtype)))
    bx = b * xd
    d = b * (2.0 - bx * torch.tanh(bx / 2.0)) / (1.0 + torch.cosh(bx))
    return (g.to(torch.float64) * d).to(x.dtype)


def ste_heaviside(x, clip_value=1.0):
    xc = _up(x)
    return torch.where(xc > 0, torch.ones_like(xc), torch.zeros_like(xc)).to(x.dtype)


def ste_heaviside_grad(g, x, clip_value=1.0):
    return ste_sign_grad(g, x, clip_value)


def magnitude_aware_sign_scale(x, axis=-1):
    return mean_abs_except(_up(x), axis)


def magnitude_aware_sign(x, clip_value=1.0, axis=-1):
    xc = _up(x)
    s = mean_abs_except(xc, axis)
    return (s * sign0(xc)).to(x.dtype)


def magnitude_aware_sign_grad(g, x, clip_value=1.0, axis=-1):
    xc = _up(x)
    s = mean_abs_except(xc, axis)
    return (s * clipped_ste(g.to(xc.dtype), xc, clip_value)).to(x.dtype)


def ste_tern_threshold(x, threshold_value=0.05, ternary_weight_networks=False):
    xc = _up(x)
    if ternary_weight_networks:
        return const(0.7, xc.dtype) * mean_abs_all(xc)
    return const(threshold_value, xc.dtype)


def ste_tern(x, threshold_value=0.05, ternary_weight_networks=False, clip_value=1.0):
    xc = _up(x)
    d = ste_tern_threshold(x, threshold_value, ternary_weight_networks)
    return tfsign(tfsign(xc + d) + tfsign(xc - d)).to(x.dtype)


def ste_tern_grad(g, x, threshold_value=0.05, ternary_weight_networks=False, clip_value=1.0):
    return ste_sign_grad(g, x, clip_value)


def _check_dorefa(k_bit, mode):
    if mode not in ("activations", "weights"):
        raise ValueError("mode must be 'activations' or 'weights'")
    if k_bit < 1:
        raise ValueError("k_bit must be >= 1")


def dorefa_levels(k_bit, dtype):
    return const(float(2 ** k_bit - 1), dtype)


def dorefa_max_abs_tanh(x):
    xc = _up(x)
    if xc.numel() == 0:
        return torch.zeros((), dtype=xc.dtype)
    return torch.tanh(xc).abs().max()


def dorefa_weights_p_times_n(x, k_bit=2):
    """p * n of the weights mode (before rounding), for tests that must know where ties are."""
    xc = _up(x)
    dt = xc.dtype
    n = dorefa_levels(k_bit, dt)
    t = torch.tanh(xc)
    m = dorefa_max_abs_tanh(x)
    if float(m) == 0.0:
        p = torch.full_like(xc, 0.5)
    else:
        p = t / (const(2.0, dt) * m) + const(0.5, dt)
    return p * n


def dorefa(x, k_bit=2, mode="activations"):
    _check_dorefa(k_bit, mode)
    xc = _up(x)
    dt = xc.dtype
    n = dorefa_levels(k_bit, dt)
    if mode == "activations":
        c = torch.maximum(torch.minimum(xc, const(1.0, dt)), const(0.0, dt))
        y = round_half_even(c * n) / n
    else:
        pn = dorefa_weights_p_times_n(x, k_bit)
        y = const(2.0, dt) * round_half_even(pn) / n - const(1.0, dt)
    return y.to(x.dtype)


def dorefa_grad(g, x, k_bit=2, mode="activations"):
    _check_dorefa(k_bit, mode)
    xc = _up(x)
    dt = xc.dtype
    gc = g.to(dt)
    if mode == "activations":
        return (gc * mask((xc >= 0) & (xc <= 1), dt)).to(x.dtype)
    # weights: transcendental, computed in float64 from the compute-dtype M
    m = float(dorefa_max_abs_tanh(x))
    if m == 0.0:
        return torch.zeros_like(x)
    t = torch.tanh(xc.to(torch.float64))
    return (gc.to(torch.float64) * (1.0 - t * t) / m).to(x.dtype)


# ---------------------------------------------------------------------------------------------------
# 3. Blueoil quantizers


def binary_mean_scaling(x):
    xc = _up(x)
    return (sign0(xc) * mean_abs_all(xc)).to(x.dtype)


def binary_mean_scaling_scale(x):
    return mean_abs_all(_up(x))


def binary_channel_wise_mean_scaling(x, axis=-1):
    xc = _up(x)
    return (sign0(xc) * mean_abs_except(xc, axis)).to(x.dtype)


def identity_grad(g, x, *args, **kwargs):
    return g.to(x.dtype).clone()


def linear_mid_tread_half(x, bit=2, max_value=2.0):
    xc = _up(x)
    dt = xc.dtype
    mv = const(max_value, dt)
    c = torch.maximum(torch.minimum(xc, mv), const(0.0, dt))
    if bit == 32:
        return c.to(x.dtype)
    n = const(float(2 ** bit - 1), dt)
    y = torch.floor((c / mv) * n + const(0.5, dt)) / n * mv
    return y.to(x.dtype)


def linear_mid_tread_half_grad(g, x, bit=2, max_value=2.0):
    xc = _up(x)
    dt = xc.dtype
    mv = const(max_value, dt)
    return (g.to(dt) * mask((xc > 0) & (xc < mv), dt)).to(x.dtype)


def twn_threshold(x, threshold=0.7):
    xc = _up(x)
    return const(threshold, xc.dtype) * mean_abs_all(xc)


def twn_weight(x, threshold=0.7):
    xc = _up(x)
    d = twn_threshold(x, threshold)
    m = xc.abs() > d
    if not bool(m.any()):
        return torch.zeros_like(x)
    a = xc.abs()[m].to(torch.float64).mean().to(xc.dtype)
    y = torch.where(m, a * tfsign(xc), torch.zeros_like(xc))
    return y.to(x.dtype)


def ttq_threshold(x, threshold=0.05):
    xc = _up(x)
    if xc.numel() == 0:
        return torch.zeros((), dtype=xc.dtype)
    return const(threshold, xc.dtype) * xc.abs().max()


def ttq_weight(x, positive, negative, threshold=0.05):
    xc = _up(x)
    dt = xc.dtype
    d = ttq_threshold(x, threshold)
    pos = positive.reshape(()).to(dt)
    neg = negative.reshape(()).to(dt)
    zero = torch.zeros_like(xc)
    y = torch.where(xc > d, pos.expand_as(xc), torch.where(xc < -d, (-neg).expand_as(xc), zero))
    return y.to(x.dtype)


def ttq_weight_grad(g, x, positive, negative, threshold=0.05):
    """(d/dx, d/dpositive, d/dnegative)."""
    xc = _up(x)
    dt = xc.dtype
    gc = g.to(dt)
    d = ttq_threshold(x, threshold)
    pos = positive.reshape(()).to(dt)
    neg = negative.reshape(()).to(dt)
    hi = xc > d
    lo = xc < -d
    dx = torch.where(hi, pos * gc, torch.where(lo, neg * gc, gc))
    dpos = _sum64(gc[hi]) if hi.any() else torch.zeros((), dtype=torch.float64)
    dneg = _sum64(gc[lo]) if lo.any() else torch.zeros((), dtype=torch.float64)
    return (dx.to(x.dtype), dpos.reshape(positive.shape).to(positive.dtype),
            dneg.reshape(negative.shape).to(negative.dtype))


# ---------------------------------------------------------------------------------------------------
# 4. Power-of-2 symmetric fixed point


def ceil_log2(v):
    """ceil(log2(v)) for v > 0, exactly (v = m * 2^p with m in [0.5, 1): p, or p - 1 when m == 0.5)."""
    m, p = torch.frexp(v)
    return torch.where(m == 0.5, p - 1, p).to(torch.int64)


def pow2_exponent(min_t, max_t, max_exponent=None):
    """e per element of min/max (an int64 tensor), computed on the compute-dtype values."""
    dt = compute_dtype(min_t.dtype)
    mn = min_t.to(dt)
    mx = max_t.to(dt)
    lo = torch.minimum(mn, const(-1e-7, dt))
    hi = torch.maximum(mx, const(1e-7, dt))
    e = torch.maximum(ceil_log2(lo.abs()), ceil_log2(hi.abs()))
    if max_exponent is not None:
        e = torch.clamp(e, max=max_exponent)
    return e


def pow2_range(min, max, num_bits=8, max_exponent=None):
    quant_range(num_bits, False)
    e = pow2_exponent(min, max, max_exponent).to(torch.float64)
    two = torch.tensor(2.0, dtype=torch.float64)
    pmin = -torch.pow(two, e)
    pmax = torch.pow(two, e) - torch.pow(two, e + 1 - num_bits)
    return pmin.to(min.dtype), pmax.to(max.dtype)


def fake_quant_pow2(x, min, max, num_bits=8, max_exponent=None):
    pmin, pmax = pow2_range(min, max, num_bits, max_exponent)
    if min.numel() == 1:
        return fake_quant_with_min_max_vars(x, pmin.reshape(()), pmax.reshape(()), num_bits, False)
    return fake_quant_with_min_max_vars_per_channel(x, pmin, pmax, num_bits, False)


def fake_quant_pow2_grad(g, x, min, max, num_bits=8, max_exponent=None):
    pmin, pmax = pow2_range(min, max, num_bits, max_exponent)
    if min.numel() == 1:
        return fake_quant_with_min_max_vars_gradient(g, x, pmin.reshape(()), pmax.reshape(()),
                                                     num_bits, False)[0]
    return fake_quant_with_min_max_vars_per_channel_gradient(g, x, pmin, pmax, num_bits, False)[0]
