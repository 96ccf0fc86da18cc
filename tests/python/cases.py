"""One table of every differentiable lowbit op with its reference, for the cross-cutting tests."""

import torch

import lowbit
import reference as ref
from helpers import clear_of, clear_of_dorefa_ties


class Case:
    """An op in one configuration.

    call(x, *extras, backward=None) runs lowbit; torch_op(x, *extras) runs torch.ops.lowbit;
    ref_fwd(x, *extras) / ref_grad(g, x, *extras) -> (d/dx, d/dextra...) are the reference.
    fwd / grad: "exact" (bit-exact on float32), "scaled" (a reduction-derived scale times an exact
    pattern: rtol, signs exact) or "transcendental" (tanh/cosh: rtol 1e-5 plus a small atol).
    extras(x) builds the extra inputs (min/max, positive/negative) in x's dtype.
    sanitize(x) moves inputs away from thresholds that a reduction decides (see helpers.clear_of).
    first_arg: the documented name of the first argument (for error messages)."""

    def __init__(self, name, call, ref_fwd, ref_grad, torch_op, extras=None, fwd="exact",
                 grad="exact", zero_dim=True, sanitize=None, first_arg="x", axis_op=False):
        self.name = name
        self.call = call
        self.ref_fwd = ref_fwd
        self.ref_grad = ref_grad
        self.torch_op = torch_op
        self.extras = extras or (lambda x: ())
        self.fwd = fwd
        self.grad = grad
        self.zero_dim = zero_dim
        self.sanitize = sanitize or (lambda x: x)
        self.first_arg = first_arg
        self.axis_op = axis_op

    def __repr__(self):
        return self.name


def _t(v, like):
    return torch.tensor(v, dtype=like.dtype)


def _pc_extras(x):
    c = x.shape[-1]
    mins = torch.linspace(-2.0, -0.25, c, dtype=torch.float32).to(x.dtype)
    maxs = torch.linspace(0.5, 3.0, c, dtype=torch.float32).to(x.dtype)
    return mins, maxs


def _ops():
    return torch.ops.lowbit


LIN_MAX = 1.7  # not representable: the float32 rounding of max_value matters

CASES = [
    Case("fake_quant_with_min_max_args",
         lambda x, backward=None: lowbit.fake_quant_with_min_max_args(
             x, min=-1.5, max=2.25, num_bits=6, narrow_range=False, backward=backward),
         lambda x: ref.fake_quant_with_min_max_args(x, -1.5, 2.25, 6, False),
         lambda g, x: (ref.fake_quant_with_min_max_args_gradient(g, x, -1.5, 2.25, 6, False),),
         lambda x: _ops().fake_quant_with_min_max_args(x, -1.5, 2.25, 6, False),
         first_arg="inputs"),
    Case("fake_quant_with_min_max_vars",
         lambda x, a, b, backward=None: lowbit.fake_quant_with_min_max_vars(
             x, a, b, num_bits=7, narrow_range=True, backward=backward),
         lambda x, a, b: ref.fake_quant_with_min_max_vars(x, a, b, 7, True),
         lambda g, x, a, b: ref.fake_quant_with_min_max_vars_gradient(g, x, a, b, 7, True),
         lambda x, a, b: _ops().fake_quant_with_min_max_vars(x, a, b, 7, True),
         extras=lambda x: (_t(-1.25, x), _t(0.75, x)), first_arg="inputs"),
    Case("fake_quant_with_min_max_vars_per_channel",
         lambda x, a, b, backward=None: lowbit.fake_quant_with_min_max_vars_per_channel(
             x, a, b, num_bits=4, narrow_range=False, backward=backward),
         lambda x, a, b: ref.fake_quant_with_min_max_vars_per_channel(x, a, b, 4, False),
         lambda g, x, a, b: ref.fake_quant_with_min_max_vars_per_channel_gradient(g, x, a, b, 4,
                                                                                  False),
         lambda x, a, b: _ops().fake_quant_with_min_max_vars_per_channel(x, a, b, 4, False),
         extras=_pc_extras, zero_dim=False, first_arg="inputs"),
    Case("ste_sign",
         lambda x, backward=None: lowbit.ste_sign(x, clip_value=1.0, backward=backward),
         lambda x: ref.ste_sign(x),
         lambda g, x: (ref.ste_sign_grad(g, x, 1.0),),
         lambda x: _ops().ste_sign(x, 1.0)),
    Case("ste_sign_clip_none",
         lambda x, backward=None: lowbit.ste_sign(x, clip_value=None, backward=backward),
         lambda x: ref.ste_sign(x),
         lambda g, x: (ref.ste_sign_grad(g, x, None),),
         lambda x: _ops().ste_sign(x, None)),
    Case("approx_sign",
         lambda x, backward=None: lowbit.approx_sign(x, backward=backward),
         lambda x: ref.approx_sign(x),
         lambda g, x: (ref.approx_sign_grad(g, x),),
         lambda x: _ops().approx_sign(x)),
    Case("swish_sign",
         lambda x, backward=None: lowbit.swish_sign(x, beta=5.0, backward=backward),
         lambda x: ref.swish_sign(x, 5.0),
         lambda g, x: (ref.swish_sign_grad(g, x, 5.0),),
         lambda x: _ops().swish_sign(x, 5.0),
         grad="transcendental"),
    Case("ste_heaviside",
         lambda x, backward=None: lowbit.ste_heaviside(x, clip_value=0.5, backward=backward),
         lambda x: ref.ste_heaviside(x, 0.5),
         lambda g, x: (ref.ste_heaviside_grad(g, x, 0.5),),
         lambda x: _ops().ste_heaviside(x, 0.5)),
    Case("magnitude_aware_sign",
         lambda x, backward=None: lowbit.magnitude_aware_sign(x, clip_value=1.0, axis=-1,
                                                              backward=backward),
         lambda x: ref.magnitude_aware_sign(x, 1.0, -1),
         lambda g, x: (ref.magnitude_aware_sign_grad(g, x, 1.0, -1),),
         lambda x: _ops().magnitude_aware_sign(x, 1.0, -1),
         fwd="scaled", grad="scaled", zero_dim=False, axis_op=True),
    Case("ste_tern",
         lambda x, backward=None: lowbit.ste_tern(x, threshold_value=0.3, backward=backward),
         lambda x: ref.ste_tern(x, 0.3, False, 1.0),
         lambda g, x: (ref.ste_tern_grad(g, x, 0.3, False, 1.0),),
         lambda x: _ops().ste_tern(x, 0.3, False, 1.0)),
    Case("ste_tern_twn",
         lambda x, backward=None: lowbit.ste_tern(x, ternary_weight_networks=True, clip_value=1.0,
                                                  backward=backward),
         lambda x: ref.ste_tern(x, 0.05, True, 1.0),
         lambda g, x: (ref.ste_tern_grad(g, x, 0.05, True, 1.0),),
         lambda x: _ops().ste_tern(x, 0.05, True, 1.0),
         sanitize=lambda x: clear_of(x, lambda v: ref.ste_tern_threshold(v, 0.05, True))),
    Case("dorefa_activations",
         lambda x, backward=None: lowbit.dorefa(x, k_bit=2, mode="activations", backward=backward),
         lambda x: ref.dorefa(x, 2, "activations"),
         lambda g, x: (ref.dorefa_grad(g, x, 2, "activations"),),
         lambda x: _ops().dorefa(x, 2, "activations")),
    Case("dorefa_weights",
         lambda x, backward=None: lowbit.dorefa(x, k_bit=3, mode="weights", backward=backward),
         lambda x: ref.dorefa(x, 3, "weights"),
         lambda g, x: (ref.dorefa_grad(g, x, 3, "weights"),),
         lambda x: _ops().dorefa(x, 3, "weights"),
         grad="transcendental", sanitize=lambda x: clear_of_dorefa_ties(x, 3)),
    Case("binary_mean_scaling",
         lambda x, backward=None: lowbit.binary_mean_scaling(x, backward=backward),
         lambda x: ref.binary_mean_scaling(x),
         lambda g, x: (ref.identity_grad(g, x),),
         lambda x: _ops().binary_mean_scaling(x),
         fwd="scaled"),
    Case("binary_channel_wise_mean_scaling",
         lambda x, backward=None: lowbit.binary_channel_wise_mean_scaling(x, axis=-1,
                                                                          backward=backward),
         lambda x: ref.binary_channel_wise_mean_scaling(x, -1),
         lambda g, x: (ref.identity_grad(g, x),),
         lambda x: _ops().binary_channel_wise_mean_scaling(x, -1),
         fwd="scaled", zero_dim=False, axis_op=True),
    Case("linear_mid_tread_half",
         lambda x, backward=None: lowbit.linear_mid_tread_half(x, bit=3, max_value=LIN_MAX,
                                                               backward=backward),
         lambda x: ref.linear_mid_tread_half(x, 3, LIN_MAX),
         lambda g, x: (ref.linear_mid_tread_half_grad(g, x, 3, LIN_MAX),),
         lambda x: _ops().linear_mid_tread_half(x, 3, LIN_MAX)),
    Case("twn_weight",
         lambda x, backward=None: lowbit.twn_weight(x, threshold=0.7, backward=backward),
         lambda x: ref.twn_weight(x, 0.7),
         lambda g, x: (ref.identity_grad(g, x),),
         lambda x: _ops().twn_weight(x, 0.7),
         fwd="scaled", sanitize=lambda x: clear_of(x, lambda v: ref.twn_threshold(v, 0.7))),
    Case("ttq_weight",
         lambda x, p, n, backward=None: lowbit.ttq_weight(x, p, n, threshold=0.05, backward=backward),
         lambda x, p, n: ref.ttq_weight(x, p, n, 0.05),
         lambda g, x, p, n: ref.ttq_weight_grad(g, x, p, n, 0.05),
         lambda x, p, n: _ops().ttq_weight(x, p, n, 0.05),
         extras=lambda x: (_t(1.25, x), _t(0.75, x))),
    Case("fake_quant_pow2",
         lambda x, a, b, backward=None: lowbit.fake_quant_pow2(x, a, b, num_bits=8, backward=backward),
         lambda x, a, b: ref.fake_quant_pow2(x, a, b, 8),
         lambda g, x, a, b: (ref.fake_quant_pow2_grad(g, x, a, b, 8),),
         lambda x, a, b: _ops().fake_quant_pow2(x, a, b, 8, None),
         extras=lambda x: (_t(-0.3, x), _t(0.7, x))),
]

# ops whose extra inputs are differentiable (fake_quant_pow2's min/max are statistics)
EXTRAS_DIFFERENTIABLE = {"fake_quant_with_min_max_vars", "fake_quant_with_min_max_vars_per_channel",
                         "ttq_weight"}

BY_NAME = {c.name: c for c in CASES}
