// The Autograd kernels of every differentiable operator: forward below autograd, backward through
// the private `_..._backward` ops (so each backend supplies both passes). The backward reads x (or
// the fake quant forwards' window codes) in one pass; a statistic of the whole of x that it needs
// (dorefa's M, magnitude_aware_sign's scales, TTQ's max|x|) is saved by the forward beside x.
#include <torch/autograd.h>
#include <torch/library.h>

#include "../op_checks.h"
#include "lowbit/ops.h"

namespace lowbit {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::Function;
using torch::autograd::variable_list;
using Below = at::AutoDispatchBelowADInplaceOrView;

at::Tensor saved_x(AutogradContext* ctx) { return ctx->get_saved_variables()[0]; }

// Gradient of a straight-through op with n non-tensor arguments after x.
variable_list grad_x_only(at::Tensor dx, size_t n_other) {
  variable_list out{std::move(dx)};
  out.resize(1 + n_other);
  return out;
}

// ---- TF fake quant -----------------------------------------------------------------------------

// The fake quant forwards save window codes, not x (on the CPU 2 bits per element, per tensor and
// per channel; on CUDA a byte): the backward then reads those instead of a float per element.
struct FakeQuantArgs : Function<FakeQuantArgs> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, double min, double max,
                            int64_t num_bits, bool narrow_range) {
    Below guard;
    auto [y, code] =
        internal::fake_quant_with_min_max_args_coded(x, min, max, num_bits, narrow_range);
    ctx->save_for_backward({code});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return grad_x_only(
        std::get<0>(internal::coded_backward(g[0], ctx->get_saved_variables()[0], false)), 4);
  }
};

// vars and per-channel: differentiable w.r.t. inputs, min and max. Only the codes are saved, and
// the dtypes and shapes of min and max: observers may update min and max in place before backward.
template <bool kPerChannel>
struct FakeQuantVars : Function<FakeQuantVars<kPerChannel>> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& min,
                            const at::Tensor& max, int64_t num_bits, bool narrow_range) {
    Below guard;
    auto [y, code] = kPerChannel ? internal::fake_quant_with_min_max_vars_per_channel_coded(
                                       x, min, max, num_bits, narrow_range)
                                 : internal::fake_quant_with_min_max_vars_coded(
                                       x, min, max, num_bits, narrow_range);
    ctx->save_for_backward({code});
    ctx->saved_data["min_dtype"] = static_cast<int64_t>(min.scalar_type());
    ctx->saved_data["min_sizes"] = min.sizes().vec();
    ctx->saved_data["max_dtype"] = static_cast<int64_t>(max.scalar_type());
    ctx->saved_data["max_sizes"] = max.sizes().vec();
    ctx->saved_data["min_device"] = min.device();
    ctx->saved_data["max_device"] = max.device();
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    const at::Tensor code = ctx->get_saved_variables()[0];
    const bool sums = ctx->needs_input_grad(1) || ctx->needs_input_grad(2);
    auto [dx, below, above] = kPerChannel ? internal::coded_backward_per_channel(g[0], code)
                                          : internal::coded_backward(g[0], code, sums);
    if (!sums) return {dx, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    auto& d = ctx->saved_data;
    // The gradients of min and max on their own devices (a CPU range of a CUDA input stays CPU).
    auto like = [&](const at::Tensor& t, const char* dtype, const char* sizes, const char* device) {
      return t.to(d[device].toDevice(), static_cast<at::ScalarType>(d[dtype].toInt()))
          .reshape(d[sizes].toIntVector());
    };
    return {dx, like(below, "min_dtype", "min_sizes", "min_device"),
            like(above, "max_dtype", "max_sizes", "max_device"), at::Tensor(), at::Tensor()};
  }
};

struct FakeQuantPow2 : Function<FakeQuantPow2> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& min,
                            const at::Tensor& max, int64_t num_bits,
                            c10::optional<int64_t> max_exponent) {
    Below guard;
    auto [lo, hi] = pow2_range(min, max, num_bits, max_exponent);
    ctx->save_for_backward({x, lo, hi});
    ctx->saved_data["num_bits"] = num_bits;
    return fake_quant_pow2(x, min, max, num_bits, max_exponent);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    const auto s = ctx->get_saved_variables();
    const int64_t nb = ctx->saved_data["num_bits"].toInt();
    // The power-of-2 range is never nudged, so the window of the vars gradient is exactly [lo, hi].
    at::Tensor dx =
        s[1].numel() == 1
            ? std::get<0>(fake_quant_with_min_max_vars_gradient(g[0], s[0], s[1], s[2], nb, false))
            : std::get<0>(fake_quant_with_min_max_vars_per_channel_gradient(g[0], s[0], s[1], s[2],
                                                                            nb, false));
    return {dx, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// ---- Larq --------------------------------------------------------------------------------------

struct SteSign : Function<SteSign> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, c10::optional<double> clip) {
    ops::check_clip_value(clip);
    Below guard;
    ctx->saved_data["clip"] = clip;
    if (!clip) return ste_sign(x, clip);
    auto [y, code] = internal::ste_sign_coded(x, *clip);
    ctx->save_for_backward({code});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    if (!ctx->saved_data["clip"].toOptional<double>()) return grad_x_only(g[0], 1);
    return grad_x_only(
        std::get<0>(internal::coded_backward(g[0], ctx->get_saved_variables()[0], false)), 1);
  }
};

struct ApproxSign : Function<ApproxSign> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
    ctx->save_for_backward({x});
    Below guard;
    return approx_sign(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {internal::approx_sign_backward(g[0], saved_x(ctx))};
  }
};

struct SwishSign : Function<SwishSign> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, double beta) {
    ctx->save_for_backward({x});
    ctx->saved_data["beta"] = beta;
    Below guard;
    return swish_sign(x, beta);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return grad_x_only(
        internal::swish_sign_backward(g[0], saved_x(ctx), ctx->saved_data["beta"].toDouble()), 1);
  }
};

struct SteHeaviside : Function<SteHeaviside> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, c10::optional<double> clip) {
    ops::check_clip_value(clip);
    ctx->save_for_backward({x});
    ctx->saved_data["clip"] = clip;
    Below guard;
    return ste_heaviside(x, clip);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return grad_x_only(internal::clipped_ste_backward(g[0], saved_x(ctx),
                                                      ctx->saved_data["clip"].toOptional<double>()),
                       1);
  }
};

// Saves the scales mean(|x|) beside x, so the backward reads x only once.
struct MagnitudeAwareSign : Function<MagnitudeAwareSign> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, c10::optional<double> clip,
                            int64_t axis) {
    ops::check_clip_value(clip);
    ctx->saved_data["clip"] = clip;
    ctx->saved_data["axis"] = axis;
    Below guard;
    auto [y, scale] = internal::magnitude_aware_sign_with_scale(x, axis);
    ctx->save_for_backward({x, scale});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    const auto s = ctx->get_saved_variables();
    return grad_x_only(internal::magnitude_aware_sign_backward_scaled(
                           g[0], s[0], s[1], ctx->saved_data["clip"].toOptional<double>(),
                           ctx->saved_data["axis"].toInt()),
                       2);
  }
};

struct SteTern : Function<SteTern> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, double threshold_value,
                            bool twn, c10::optional<double> clip) {
    ops::check_clip_value(clip);
    ctx->save_for_backward({x});
    ctx->saved_data["clip"] = clip;
    Below guard;
    return ste_tern(x, threshold_value, twn, clip);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return grad_x_only(internal::clipped_ste_backward(g[0], saved_x(ctx),
                                                      ctx->saved_data["clip"].toOptional<double>()),
                       3);
  }
};

// The weights mode saves M = max|tanh(x)| beside x, so the backward reads x only once.
struct Dorefa : Function<Dorefa> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t k_bit,
                            c10::string_view mode) {
    const std::string m(mode.data(), mode.size());
    ctx->saved_data["k_bit"] = k_bit;
    ctx->saved_data["mode"] = m;
    Below guard;
    if (m != "weights") {
      ctx->save_for_backward({x});
      return dorefa(x, k_bit, m);
    }
    auto [y, max_abs_tanh] = internal::dorefa_weights_with_max(x, k_bit);
    ctx->save_for_backward({x, max_abs_tanh});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    const auto saved = ctx->get_saved_variables();
    if (saved.size() == 2) {
      return grad_x_only(internal::dorefa_weights_backward(g[0], saved[0], saved[1]), 2);
    }
    return grad_x_only(internal::dorefa_backward(g[0], saved[0], ctx->saved_data["k_bit"].toInt(),
                                                 ctx->saved_data["mode"].toStringRef()),
                       2);
  }
};

// ---- Blueoil -----------------------------------------------------------------------------------

// Blueoil's weight quantizers whose default gradient is the identity.
struct BinaryMeanScaling : Function<BinaryMeanScaling> {
  static at::Tensor forward(AutogradContext*, const at::Tensor& x) {
    Below guard;
    return binary_mean_scaling(x);
  }
  static variable_list backward(AutogradContext*, variable_list g) { return {g[0]}; }
};

struct BinaryChannelWiseMeanScaling : Function<BinaryChannelWiseMeanScaling> {
  static at::Tensor forward(AutogradContext*, const at::Tensor& x, int64_t axis) {
    Below guard;
    return binary_channel_wise_mean_scaling(x, axis);
  }
  static variable_list backward(AutogradContext*, variable_list g) { return grad_x_only(g[0], 1); }
};

struct TwnWeight : Function<TwnWeight> {
  static at::Tensor forward(AutogradContext*, const at::Tensor& x, double threshold) {
    Below guard;
    return twn_weight(x, threshold);
  }
  static variable_list backward(AutogradContext*, variable_list g) { return grad_x_only(g[0], 1); }
};

struct LinearMidTreadHalf : Function<LinearMidTreadHalf> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t bit,
                            double max_value) {
    ctx->save_for_backward({x});
    ctx->saved_data["bit"] = bit;
    ctx->saved_data["max_value"] = max_value;
    Below guard;
    return linear_mid_tread_half(x, bit, max_value);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return grad_x_only(
        internal::linear_mid_tread_half_backward(g[0], saved_x(ctx), ctx->saved_data["bit"].toInt(),
                                                 ctx->saved_data["max_value"].toDouble()),
        2);
  }
};

// Saves max|x| beside x, so the backward reads x only once.
struct TtqWeight : Function<TtqWeight> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& positive,
                            const at::Tensor& negative, double threshold) {
    ctx->saved_data["threshold"] = threshold;
    Below guard;
    auto [y, max_abs] = internal::ttq_weight_with_max(x, positive, negative, threshold);
    ctx->save_for_backward({x, positive, negative, max_abs});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    const auto s = ctx->get_saved_variables();
    auto [dx, dp, dn] = internal::ttq_weight_backward_from_max(
        g[0], s[0], s[1], s[2], ctx->saved_data["threshold"].toDouble(), s[3]);
    return {dx, dp, dn, at::Tensor()};
  }
};

// Whether autograd will need a backward: otherwise the coded forwards' codes are not worth writing.
bool any_requires_grad(std::initializer_list<const at::Tensor*> ts) {
  if (!torch::autograd::GradMode::is_enabled()) return false;
  for (const at::Tensor* t : ts) {
    if (t->requires_grad()) return true;
  }
  return false;
}

// ---- registration ------------------------------------------------------------------------------

TORCH_LIBRARY_IMPL(lowbit, Autograd, m) {
  m.impl("fake_quant_with_min_max_args",
         [](const at::Tensor& x, double min, double max, int64_t nb, bool nr) {
           if (!any_requires_grad({&x})) {
             Below guard;
             return fake_quant_with_min_max_args(x, min, max, nb, nr);
           }
           return FakeQuantArgs::apply(x, min, max, nb, nr);
         });
  m.impl("fake_quant_with_min_max_vars", [](const at::Tensor& x, const at::Tensor& min,
                                            const at::Tensor& max, int64_t nb, bool nr) {
    if (!any_requires_grad({&x, &min, &max})) {
      Below guard;
      return fake_quant_with_min_max_vars(x, min, max, nb, nr);
    }
    return FakeQuantVars<false>::apply(x, min, max, nb, nr);
  });
  m.impl(
      "fake_quant_with_min_max_vars_per_channel",
      [](const at::Tensor& x, const at::Tensor& min, const at::Tensor& max, int64_t nb, bool nr) {
        if (!any_requires_grad({&x, &min, &max})) {
          Below guard;
          return fake_quant_with_min_max_vars_per_channel(x, min, max, nb, nr);
        }
        return FakeQuantVars<true>::apply(x, min, max, nb, nr);
      });
  m.impl("fake_quant_pow2",
         [](const at::Tensor& x, const at::Tensor& min, const at::Tensor& max, int64_t nb,
            c10::optional<int64_t> me) { return FakeQuantPow2::apply(x, min, max, nb, me); });
  m.impl("ste_sign", [](const at::Tensor& x, c10::optional<double> clip) {
    if (!any_requires_grad({&x})) {
      Below guard;
      return ste_sign(x, clip);
    }
    return SteSign::apply(x, clip);
  });
  m.impl("approx_sign", [](const at::Tensor& x) { return ApproxSign::apply(x); });
  m.impl("swish_sign", [](const at::Tensor& x, double beta) { return SwishSign::apply(x, beta); });
  m.impl("ste_heaviside", [](const at::Tensor& x, c10::optional<double> clip) {
    return SteHeaviside::apply(x, clip);
  });
  m.impl("magnitude_aware_sign", [](const at::Tensor& x, c10::optional<double> clip, int64_t axis) {
    return MagnitudeAwareSign::apply(x, clip, axis);
  });
  m.impl("ste_tern", [](const at::Tensor& x, double t, bool twn, c10::optional<double> clip) {
    return SteTern::apply(x, t, twn, clip);
  });
  m.impl("dorefa", [](const at::Tensor& x, int64_t k_bit, c10::string_view mode) {
    return Dorefa::apply(x, k_bit, mode);
  });
  m.impl("binary_mean_scaling", [](const at::Tensor& x) { return BinaryMeanScaling::apply(x); });
  m.impl("binary_channel_wise_mean_scaling", [](const at::Tensor& x, int64_t axis) {
    return BinaryChannelWiseMeanScaling::apply(x, axis);
  });
  m.impl("linear_mid_tread_half", [](const at::Tensor& x, int64_t bit, double max_value) {
    return LinearMidTreadHalf::apply(x, bit, max_value);
  });
  m.impl("twn_weight", [](const at::Tensor& x, double t) { return TwnWeight::apply(x, t); });
  m.impl("ttq_weight", [](const at::Tensor& x, const at::Tensor& p, const at::Tensor& n, double t) {
    return TtqWeight::apply(x, p, n, t);
  });
}

}  // namespace
}  // namespace lowbit
