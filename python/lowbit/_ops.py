"""Python functions over torch.ops.lowbit: the spec's names and defaults, plus Blueoil's backward=."""
import torch

__all__ = [
    "fake_quant_with_min_max_args",
    "fake_quant_with_min_max_args_gradient",
    "fake_quant_with_min_max_vars",
    "fake_quant_with_min_max_vars_gradient",
    "fake_quant_with_min_max_vars_per_channel",
    "fake_quant_with_min_max_vars_per_channel_gradient",
    "ste_sign",
    "approx_sign",
    "swish_sign",
    "ste_heaviside",
    "magnitude_aware_sign",
    "ste_tern",
    "dorefa",
    "binary_mean_scaling",
    "binary_channel_wise_mean_scaling",
    "linear_mid_tread_half",
    "twn_weight",
    "ttq_weight",
    "pow2_range",
    "fake_quant_pow2",
]

_ops = torch.ops.lowbit


class _OverrideBackward(torch.autograd.Function):
    """Passes y through; sends grad_y to backward(x, grad_y) for x and unchanged to y's own graph."""

    @staticmethod
    def forward(ctx, x, y, fn):
        ctx.fn = fn
        ctx.save_for_backward(x)
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad_y):
        (x,) = ctx.saved_tensors
        grad_x = ctx.fn(x, grad_y)
        if not isinstance(grad_x, torch.Tensor) or grad_x.shape != x.shape:
            raise RuntimeError("backward(x, grad_y) must return a tensor of the shape of x")
        return grad_x, grad_y, None


def _call(op, x, *args, backward=None):
    if backward is None:
        return op(x, *args)
    if not callable(backward):
        raise TypeError("backward must be a callable backward(x, grad_y) -> grad_x")
    # x enters the op detached, so only the other inputs (min, max, ...) get the default gradient.
    y = op(x.detach(), *args)
    return _OverrideBackward.apply(x, y, backward)


# ---- TensorFlow fake quantization ---------------------------------------------------------------

def fake_quant_with_min_max_args(inputs, min=-6.0, max=6.0, num_bits=8, narrow_range=False,
                                 backward=None):
    """TF fake quant with a fixed float range [min, max], nudged so 0 is exact.

    y = floor((clamp(x) - nudged_min) * inv_scale - quant_zero + 0.5) * scale.
    Gradient: g * 1[nudged_min <= x <= nudged_max] w.r.t. inputs.
    """
    return _call(_ops.fake_quant_with_min_max_args, inputs, float(min), float(max), num_bits,
                 narrow_range, backward=backward)


def fake_quant_with_min_max_args_gradient(gradients, inputs, min=-6.0, max=6.0, num_bits=8,
                                          narrow_range=False):
    """d/dinputs of fake_quant_with_min_max_args: gradients * 1[nudged_min <= inputs <= nudged_max]."""
    return _ops.fake_quant_with_min_max_args_gradient(gradients, inputs, float(min), float(max),
                                                      num_bits, narrow_range)


def fake_quant_with_min_max_vars(inputs, min, max, num_bits=8, narrow_range=False, backward=None):
    """TF fake quant with a range given as 0-dim tensors (trainable): like the args op, dividing by scale.

    Gradients: d/dx = g * 1[in range], d/dmin = sum(g * 1[x < nudged_min]),
    d/dmax = sum(g * 1[x > nudged_max]). min == max == 0 gives 0.
    """
    return _call(_ops.fake_quant_with_min_max_vars, inputs, min, max, num_bits, narrow_range,
                 backward=backward)


def fake_quant_with_min_max_vars_gradient(gradients, inputs, min, max, num_bits=8,
                                          narrow_range=False):
    """(d/dinputs, d/dmin, d/dmax) of fake_quant_with_min_max_vars."""
    return _ops.fake_quant_with_min_max_vars_gradient(gradients, inputs, min, max, num_bits,
                                                      narrow_range)


def fake_quant_with_min_max_vars_per_channel(inputs, min, max, num_bits=8, narrow_range=False,
                                             backward=None):
    """TF fake quant with one range per channel of the LAST dimension (min, max: 1-D tensors)."""
    return _call(_ops.fake_quant_with_min_max_vars_per_channel, inputs, min, max, num_bits,
                 narrow_range, backward=backward)


def fake_quant_with_min_max_vars_per_channel_gradient(gradients, inputs, min, max, num_bits=8,
                                                      narrow_range=False):
    """(d/dinputs, d/dmin[d], d/dmax[d]) of the per-channel fake quant."""
    return _ops.fake_quant_with_min_max_vars_per_channel_gradient(gradients, inputs, min, max,
                                                                  num_bits, narrow_range)


# ---- Larq ---------------------------------------------------------------------------------------

def ste_sign(x, clip_value=1.0, backward=None):
    """Larq's ste_sign: -1 for x < 0, +1 for x >= 0. Gradient g * 1[|x| <= clip_value] (None: g)."""
    return _call(_ops.ste_sign, x, clip_value, backward=backward)


def approx_sign(x, backward=None):
    """Larq's approx_sign: sign with the gradient g * (2 - 2|x|) for |x| <= 1, else 0."""
    return _call(_ops.approx_sign, x, backward=backward)


def swish_sign(x, beta=5.0, backward=None):
    """Larq's swish_sign: sign with the SignSwish gradient
    g * beta * (2 - beta*x*tanh(beta*x/2)) / (1 + cosh(beta*x))."""
    return _call(_ops.swish_sign, x, float(beta), backward=backward)


def ste_heaviside(x, clip_value=1.0, backward=None):
    """Larq's ste_heaviside: 1 for x > 0, else 0. Gradient g * 1[|x| <= clip_value]."""
    return _call(_ops.ste_heaviside, x, clip_value, backward=backward)


def magnitude_aware_sign(x, clip_value=1.0, axis=-1, backward=None):
    """Bi-Real Net's sign scaled by mean(|x|) over all dims but `axis` (one scale per index of axis).

    Gradient: scale * g * 1[|x| <= clip_value]; no gradient through the scale.
    """
    return _call(_ops.magnitude_aware_sign, x, clip_value, axis, backward=backward)


def ste_tern(x, threshold_value=0.05, ternary_weight_networks=False, clip_value=1.0, backward=None):
    """Larq's SteTern: sign(x) where |x| >= D, else 0; D = threshold_value, or 0.7 * mean(|x|) with
    ternary_weight_networks. Gradient g * 1[|x| <= clip_value]."""
    return _call(_ops.ste_tern, x, float(threshold_value), ternary_weight_networks, clip_value,
                 backward=backward)


def dorefa(x, k_bit=2, mode="activations", backward=None):
    """Larq's DoReFa quantizer with 2^k_bit - 1 levels, mode "activations" (clip to [0, 1]) or
    "weights" (tanh, normalised by max|tanh|, to [-1, 1]). Rounds half to even."""
    return _call(_ops.dorefa, x, k_bit, mode, backward=backward)


# ---- Blueoil ------------------------------------------------------------------------------------

def binary_mean_scaling(x, backward=None):
    """Blueoil's binary mean scaling (DoReFa weights): sign0(x) * mean(|x|). Gradient: identity."""
    return _call(_ops.binary_mean_scaling, x, backward=backward)


def binary_channel_wise_mean_scaling(x, axis=-1, backward=None):
    """Blueoil's XNOR-Net variant: sign0(x) * mean(|x|) per index of `axis`. Gradient: identity."""
    return _call(_ops.binary_channel_wise_mean_scaling, x, axis, backward=backward)


def linear_mid_tread_half(x, bit=2, max_value=2.0, backward=None):
    """Blueoil's activation quantizer: clip to [0, max_value], 2^bit - 1 levels, ties up.

    bit == 32 means no quantization. Gradient g * 1[0 < x < max_value] (open interval).
    """
    return _call(_ops.linear_mid_tread_half, x, bit, float(max_value), backward=backward)


def twn_weight(x, threshold=0.7, backward=None):
    """Blueoil's Ternary Weight Networks quantizer: a * sign(x) where |x| > threshold * mean(|x|),
    a = mean(|x|) over those. Gradient: identity."""
    return _call(_ops.twn_weight, x, float(threshold), backward=backward)


def ttq_weight(x, positive, negative, threshold=0.05, backward=None):
    """Blueoil's Trained Ternary Quantization: positive where x > D, -negative where x < -D, else 0,
    D = threshold * max(|x|). positive and negative are 0-dim tensors (trainable)."""
    return _call(_ops.ttq_weight, x, positive, negative, float(threshold), backward=backward)


# ---- power of 2 ---------------------------------------------------------------------------------

def pow2_range(min, max, num_bits=8, max_exponent=None):
    """Symmetric power-of-2 range (pow2_min, pow2_max) covering [min, max]: -2^e and 2^e - 2^(e+1-b)."""
    return _ops.pow2_range(min, max, num_bits, max_exponent)


def fake_quant_pow2(x, min, max, num_bits=8, max_exponent=None, backward=None):
    """Power-of-2 fixed-point fake quant: pow2_range, then the vars (or per-channel) fake quant.

    Gradient w.r.t. x only (min and max are statistics).
    """
    return _call(_ops.fake_quant_pow2, x, min, max, num_bits, max_exponent, backward=backward)
