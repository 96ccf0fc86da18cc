"""The operators bench/ops.py measures: every lowbit quantizer, what a PyTorch user would write
instead (torch's own operator where it has one, else the usual composition of torch operations with
the detach trick for the straight-through gradient), and the bytes per element each pass must move.

Bytes per element (float32 = 4):
- forward: x in, y out (8); +4 for each extra pass over x that a statistic of the whole tensor or of
  a channel needs (a mean or maximum of |x|), since at 2^24 elements x does not stay in cache.
- forward + backward (training mode, as autograd runs it): the forward, +0.25 where it saves a
  2-bit window code for the backward, then the backward: g in, the code (0.25) or x (4) in, dx out
  (4); the identity gradient of the Blueoil weight quantizers costs nothing (autograd hands g on).
Each case is make(pass_, t) -> (ours, theirs), two zero-argument callables; `t` holds the tensors.
"""
import torch

import lowbit

# [-6, 6] at 8 bits: TF's nudged range has torch's scale and zero point.
FQ_MIN, FQ_MAX, FQ_SCALE, FQ_ZERO = -6.0, 6.0, 12.0 / 255.0, 128
DEPTH = 256  # channels of the per-channel and per-axis cases ([n / DEPTH, DEPTH], the last axis)


class Tensors:
    """The inputs of one size: x ~ N(0, 2) (and its [rows, DEPTH] view), weights w ~ N(0, 0.05)
    (the magnitudes of a trained network's weights), gradients, ranges."""

    def __init__(self, n):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, generator=gen) * 2
        self.g = torch.randn(n, generator=gen)
        self.w = self.x * 0.025
        self.x2 = self.x.view(-1, DEPTH)
        self.g2 = self.g.view(-1, DEPTH)
        self.lo, self.hi = torch.tensor(FQ_MIN), torch.tensor(FQ_MAX)
        self.clo, self.chi = torch.full((DEPTH,), FQ_MIN), torch.full((DEPTH,), FQ_MAX)
        self.scale = torch.tensor([FQ_SCALE])
        self.zero = torch.tensor([float(FQ_ZERO)])
        self.cscale = torch.full((DEPTH,), FQ_SCALE)
        self.czero = torch.full((DEPTH,), FQ_ZERO, dtype=torch.int32)
        self.czero_f = self.czero.float()
        self.pos, self.neg = torch.tensor(1.5), torch.tensor(0.5)


def _ste(y, h):
    """Forward y, gradient that of h: the straight-through (detach) trick."""
    return y.detach() + (h - h.detach())


def _clip(x, c=1.0):
    return torch.clamp(x, -c, c)


def _sign0(x):
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def _mean_abs_but_last(x):
    return x.abs().mean(dim=tuple(range(x.dim() - 1)), keepdim=True)


def _torch_approx_sign(x):
    c = _clip(x)
    return _ste(_sign0(x), c * (2 - c.abs()))  # d/dx = 2 - 2|x| inside [-1, 1], 0 outside


def _torch_swish_sign(x, beta=5.0):
    s = torch.sigmoid(beta * x)
    return _ste(_sign0(x), 2 * s * (1 + beta * x * (1 - s)) - 1)


def _torch_ste_tern(x, t):
    y = torch.where(x > t, torch.ones_like(x), torch.where(x < -t, -torch.ones_like(x),
                                                           torch.zeros_like(x)))
    return _ste(y, _clip(x))


def _torch_dorefa_weights(x, k=2):
    t = torch.tanh(x)
    p = t / (2 * t.abs().max().detach()) + 0.5
    n = 2 ** k - 1
    return 2 * _ste(torch.round(p * n), p * n) / n - 1


def _torch_twn(x):
    a = x.abs()
    m = a > 0.7 * a.mean()
    alpha = (a * m).sum() / m.sum()
    return _ste(torch.where(m, alpha * torch.sign(x), torch.zeros_like(x)), x)


def _torch_ttq(x, pos, neg):
    d = 0.05 * x.abs().max().detach()
    hi, lo = x > d, x < -d
    # Blueoil's d/dnegative is the sum of g below -D (not its negation): -neg forward, +neg backward.
    y = torch.where(hi, pos, torch.where(lo, neg - 2 * neg.detach(), torch.zeros_like(x)))
    # dx = g * (pos above, neg below, 1 between): the scale is a constant of the backward.
    k = torch.where(hi, pos, torch.where(lo, neg, torch.ones_like(x))).detach()
    return y + (k * x - (k * x).detach())


def _grad(f, x, g, *params):
    """fwd + bwd: f(x) forward with autograd, then the gradients of x (and params) for g."""
    xg = x.detach().clone().requires_grad_()
    ps = [p.detach().clone().requires_grad_() for p in params]

    def run():
        return torch.autograd.grad(f(xg, *ps), [xg] + ps, g)

    return run


class Case:
    """One operator: name, its torch counterpart, bytes per element of each pass, and f(t, lib)
    giving the function of (x, *params) for lib "ours" or "torch". params: the names (in Tensors) of
    the differentiable arguments besides x, ours then torch's (learnable ranges, TTQ's scales);
    passes: those measured (a learnable range changes only the backward); weights: x is w (trained
    weights' magnitudes) instead of N(0, 2); same_params: whether both sides' parameters are the same (torch's learnable fake quant learns a scale and a zero point
    where ours learns min and max: their gradients differ by design)."""

    def __init__(self, name, theirs, fwd_bytes, fwd_bwd_bytes, f, flat=True, params=((), ()),
                 passes=("fwd", "fwd_bwd"), same_params=True, weights=False):
        self.name, self.theirs = name, theirs
        self.weights = weights
        self.bytes = {"fwd": fwd_bytes, "fwd_bwd": fwd_bwd_bytes}
        self.f, self.flat, self.params, self.passes = f, flat, params, passes
        self.same_params = same_params

    def make(self, pass_, t):
        x, g = (t.x, t.g) if self.flat else (t.x2, t.g2)
        if self.weights:
            x = t.w
        po, pt = ([getattr(t, p) for p in names] for names in self.params)
        ours, theirs = self.f(t, "ours"), self.f(t, "torch")
        if pass_ == "fwd":
            return (lambda: ours(x, *po)), (lambda: theirs(x, *pt))
        return _grad(ours, x, g, *po), _grad(theirs, x, g, *pt)


# fwd+bwd of the ops that save packed window codes (fake quant per tensor and per channel,
# ste_sign): x in, y and 2 bits of code out; g and the code in, dx out. (On CUDA the codes are a
# byte, 18 bytes in all; the CUDA figures count 16.5 too.)
PACKED = 16.5


def _fq_torch(x):
    return torch.fake_quantize_per_tensor_affine(x, FQ_SCALE, FQ_ZERO, 0, 255)


CASES = [
    Case("fake_quant_with_min_max_args", "torch.fake_quantize_per_tensor_affine", 8, PACKED,
         lambda t, lib: (lambda x: lowbit.fake_quant_with_min_max_args(x, FQ_MIN, FQ_MAX))
         if lib == "ours" else _fq_torch),
    Case("fake_quant_with_min_max_vars", "torch.fake_quantize_per_tensor_affine", 8, PACKED,
         lambda t, lib: (lambda x: lowbit.fake_quant_with_min_max_vars(x, t.lo, t.hi))
         if lib == "ours" else _fq_torch),
    # The learnable range: gradients of min and max (torch's learnable op: of scale and zero point).
    Case("fake_quant_with_min_max_vars (learnable range)",
         "torch._fake_quantize_learnable_per_tensor_affine", 8, PACKED,
         lambda t, lib: (lambda x, a, b: lowbit.fake_quant_with_min_max_vars(x, a, b))
         if lib == "ours" else
         (lambda x, a, b: torch._fake_quantize_learnable_per_tensor_affine(x, a, b, 0, 255, 1.0)),
         params=(("lo", "hi"), ("scale", "zero")), passes=("fwd_bwd",),
         same_params=False),
    Case("fake_quant_with_min_max_vars_per_channel", "torch.fake_quantize_per_channel_affine", 8,
         PACKED,
         lambda t, lib: (lambda x: lowbit.fake_quant_with_min_max_vars_per_channel(x, t.clo, t.chi))
         if lib == "ours" else
         (lambda x: torch.fake_quantize_per_channel_affine(x, t.cscale, t.czero, 1, 0, 255)),
         flat=False),
    Case("fake_quant_with_min_max_vars_per_channel (learnable range)",
         "torch._fake_quantize_learnable_per_channel_affine", 8, PACKED,
         lambda t, lib: (lambda x, a, b: lowbit.fake_quant_with_min_max_vars_per_channel(x, a, b))
         if lib == "ours" else
         (lambda x, a, b: torch._fake_quantize_learnable_per_channel_affine(x, a, b, 1, 0, 255,
                                                                            1.0)),
         flat=False, params=(("clo", "chi"), ("cscale", "czero_f")),
         passes=("fwd_bwd",), same_params=False),
    Case("fake_quant_pow2", "torch.fake_quantize_per_tensor_affine (power-of-2 scale)", 8, 20,
         lambda t, lib: (lambda x: lowbit.fake_quant_pow2(x, t.lo, t.hi)) if lib == "ours" else
         (lambda x: torch.fake_quantize_per_tensor_affine(x, 8.0 / 128, 0, -128, 127))),
    Case("ste_sign", "where + clamp, detach trick", 8, PACKED,
         lambda t, lib: lowbit.ste_sign if lib == "ours" else (lambda x: _ste(_sign0(x), _clip(x)))),
    Case("approx_sign", "where + clamp + polynomial, detach trick", 8, 20,
         lambda t, lib: lowbit.approx_sign if lib == "ours" else _torch_approx_sign),
    Case("swish_sign", "where + sigmoid polynomial, detach trick", 8, 20,
         lambda t, lib: lowbit.swish_sign if lib == "ours" else _torch_swish_sign),
    Case("ste_heaviside", "(x > 0) + clamp, detach trick", 8, 20,
         lambda t, lib: lowbit.ste_heaviside if lib == "ours" else
         (lambda x: _ste((x > 0).to(x.dtype), _clip(x)))),
    Case("magnitude_aware_sign", "mean(|x|) per channel * sign, detach trick", 12, 24,
         lambda t, lib: lowbit.magnitude_aware_sign if lib == "ours" else
         (lambda x: _mean_abs_but_last(x).detach() * _ste(_sign0(x), _clip(x))), flat=False),
    Case("ste_tern", "nested where + clamp, detach trick", 8, 20,
         lambda t, lib: lowbit.ste_tern if lib == "ours" else (lambda x: _torch_ste_tern(x, 0.05))),
    Case("ste_tern (ternary_weight_networks)", "0.7 mean(|x|), nested where, detach trick", 12, 24,
         lambda t, lib: (lambda x: lowbit.ste_tern(x, ternary_weight_networks=True))
         if lib == "ours" else
         (lambda x: _torch_ste_tern(x, 0.7 * x.abs().mean().detach()))),
    Case("dorefa (activations)", "clamp + round, detach trick", 8, 20,
         lambda t, lib: (lambda x: lowbit.dorefa(x, 2)) if lib == "ours" else
         (lambda x: _ste(torch.round(torch.clamp(x, 0, 1) * 3) / 3, torch.clamp(x, 0, 1)))),
    Case("dorefa (weights)", "tanh, max, round, detach trick", 12, 24,
         lambda t, lib: (lambda x: lowbit.dorefa(x, 2, "weights")) if lib == "ours" else
         _torch_dorefa_weights),
    # The same on weights of a trained network's magnitude, |x| mostly below 0.625, where tanh is
    # its polynomial alone (the case above is compute-bound by the exponential).
    Case("dorefa (weights, w ~ N(0, 0.05))", "tanh, max, round, detach trick", 12, 24,
         lambda t, lib: (lambda x: lowbit.dorefa(x, 2, "weights")) if lib == "ours" else
         _torch_dorefa_weights, weights=True),
    Case("binary_mean_scaling", "mean(|x|) * sign, detach trick", 12, 12,
         lambda t, lib: lowbit.binary_mean_scaling if lib == "ours" else
         (lambda x: _ste(x.abs().mean() * _sign0(x), x))),
    Case("binary_channel_wise_mean_scaling", "mean(|x|) per channel * sign, detach trick", 12, 12,
         lambda t, lib: lowbit.binary_channel_wise_mean_scaling if lib == "ours" else
         (lambda x: _ste(_mean_abs_but_last(x) * _sign0(x), x)), flat=False),
    Case("linear_mid_tread_half", "clamp + floor, detach trick", 8, 20,
         lambda t, lib: lowbit.linear_mid_tread_half if lib == "ours" else
         (lambda x: _ste(torch.floor(torch.clamp(x, 0, 2) / 2 * 3 + 0.5) / 3 * 2,
                         torch.clamp(x, 0, 2)))),
    Case("twn_weight", "mean(|x|), masked mean, where, detach trick", 16, 16,
         lambda t, lib: lowbit.twn_weight if lib == "ours" else _torch_twn),
    Case("ttq_weight", "max(|x|), nested where, detach trick", 12, 24,
         lambda t, lib: lowbit.ttq_weight if lib == "ours" else _torch_ttq,
         params=(("pos", "neg"), ("pos", "neg"))),
]
