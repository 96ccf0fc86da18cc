// CPU kernels of the Larq and Blueoil quantizers (spec sections 2 and 3) and their backward passes.
#include <torch/library.h>

#include <cmath>
#include <tuple>

#include "cpu_common.h"
#include "reductions.h"

namespace lowbit {
namespace cpu {
namespace {

template <class P>
using elem_t = std::remove_const_t<std::remove_pointer_t<P>>;

// ---- statistics --------------------------------------------------------------------------------

// mean(|x|) of xc (already in its compute type and contiguous) over all elements (axis None: a
// 0-dim tensor) or over all dims but `axis` (shape [size(axis)]), in the compute type.
at::Tensor mean_abs_compute(const at::Tensor& xc, c10::optional<int64_t> axis) {
  ChannelLayout l;
  l.inner = xc.numel();
  if (axis) l = channel_layout(xc, *axis);
  at::Tensor s = axis ? at::empty({l.channels}, xc.options()) : at::empty({}, xc.options());
  with_compute_type(xc.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const std::vector<double> sums =
        sum_abs_per_channel<T>(xc.data_ptr<T>(), l.outer, l.channels, l.inner);
    const double count = static_cast<double>(l.outer) * static_cast<double>(l.inner);
    T* sp = s.data_ptr<T>();
    for (int64_t c = 0; c < l.channels; ++c) {
      sp[c] =
          static_cast<T>(count > 0 ? sums[c] / count : std::numeric_limits<double>::quiet_NaN());
    }
  });
  return s;
}

at::Tensor mean_abs(const at::Tensor& x, c10::optional<int64_t> axis) {
  check_floating(x, "x");
  return mean_abs_compute(to_compute(x, compute_type(x.scalar_type())), axis).to(x.scalar_type());
}

// y = sign0(x) * s[c] with one scale per index of `axis` (s in the compute type of x).
at::Tensor sign_per_axis(const at::Tensor& x, const at::Tensor& s, int64_t axis) {
  check_floating(x, "x");
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor xc = to_compute(x, ct), sc = to_compute(s, ct);
  const ChannelLayout l = channel_layout(xc, axis);
  at::Tensor y = at::empty(xc.sizes(), xc.options());
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = xc.data_ptr<T>();
    const T* sp = sc.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    const Kernels<T> kern(xc.numel());
    if (l.inner == 1) {
      at::parallel_for(0, l.outer, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, l.channels)),
                       [&](int64_t b, int64_t e) {
                         kern.sign_per_channel(xp + b * l.channels, yp + b * l.channels, e - b,
                                               l.channels, sp);
                       });
    } else {
      at::parallel_for(
          0, l.outer * l.channels, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, l.inner)),
          [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
              kern.sign(xp + i * l.inner, yp + i * l.inner, l.inner, sp[i % l.channels]);
            }
          });
    }
  });
  return y.to(x.scalar_type());
}

at::Tensor sign_scaled(const at::Tensor& x, double scale_for_double, float scale_for_float) {
  return map_unary(x, "x", [&](const auto& kern, const auto* xp, auto* yp, int64_t n) {
    using T = elem_t<decltype(xp)>;
    if constexpr (std::is_same_v<T, double>) {
      kern.sign(xp, yp, n, scale_for_double);
    } else {
      kern.sign(xp, yp, n, scale_for_float);
    }
  });
}

// The scale of a whole-tensor mean, in the compute type T of x.
template <class T>
T whole_mean_abs(const at::Tensor& x) {
  return mean_abs_compute(to_compute(x, compute_type(x.scalar_type())), c10::nullopt)
      .template item<T>();
}

// max(|tanh(x)|) as k::ref::max_abs_tanh, over fixed spans in parallel.
template <class T>
T max_abs_tanh_all(const T* x, int64_t n) {
  const int64_t spans = (n + kSumSpan - 1) / kSumSpan;
  std::vector<T> partial(static_cast<size_t>(spans), T(0));
  const Kernels<T> kern(n);
  at::parallel_for(0, spans, 1, [&](int64_t b, int64_t e) {
    for (int64_t s = b; s < e; ++s) {
      partial[s] = kern.max_abs_tanh(x + s * kSumSpan, std::min(kSumSpan, n - s * kSumSpan));
    }
  });
  return k::ref::max_abs<T>(partial.data(), spans);
}

// ---- Larq --------------------------------------------------------------------------------------

at::Tensor ste_sign(const at::Tensor& x, c10::optional<double>) {
  return sign_scaled(x, 1.0, 1.0f);
}
// ste_sign's forward with the packed window codes of [-clip, clip] for its backward.
std::tuple<at::Tensor, at::Tensor> ste_sign_coded(const at::Tensor& x, double clip_value) {
  check_clip_value(clip_value);
  check_floating(x, "x");
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor xc = to_compute(x, ct);
  at::Tensor y = at::empty(xc.sizes(), xc.options());
  at::Tensor code = empty_packed_codes(xc);
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = xc.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    uint8_t* cp = code.data_ptr<uint8_t>();
    const T c = static_cast<T>(clip_value);
    const Kernels<T> kern(xc.numel());
    parallel_blocks(xc.numel(), [&](int64_t start, int64_t len) {
      kern.sign_packed(xp + start, yp + start, cp + k::packed_code_bytes(start), len, T(1), -c, c);
    });
  });
  return {y.to(x.scalar_type()), code};
}

at::Tensor approx_sign(const at::Tensor& x) { return sign_scaled(x, 1.0, 1.0f); }
at::Tensor swish_sign(const at::Tensor& x, double) { return sign_scaled(x, 1.0, 1.0f); }

at::Tensor ste_heaviside(const at::Tensor& x, c10::optional<double>) {
  return map_unary(x, "x", [&](const auto& kern, const auto* xp, auto* yp, int64_t n) {
    kern.heaviside(xp, yp, n);
  });
}

at::Tensor magnitude_aware_sign(const at::Tensor& x, c10::optional<double>, int64_t axis) {
  check_floating(x, "x");
  return sign_per_axis(x, mean_abs_compute(to_compute(x, compute_type(x.scalar_type())), axis),
                       axis);
}

// magnitude_aware_sign and its scale mean(|x|) along `axis` (compute type), for the backward.
std::tuple<at::Tensor, at::Tensor> magnitude_aware_sign_with_scale(const at::Tensor& x,
                                                                   int64_t axis) {
  check_floating(x, "x");
  at::Tensor s = mean_abs_compute(to_compute(x, compute_type(x.scalar_type())), axis);
  return {sign_per_axis(x, s, axis), s};
}

at::Tensor ste_tern(const at::Tensor& x, double threshold_value, bool ternary_weight_networks,
                    c10::optional<double>) {
  check_floating(x, "x");
  double td = threshold_value;
  float tf = static_cast<float>(threshold_value);
  if (ternary_weight_networks) {
    if (compute_type(x.scalar_type()) == at::kDouble) {
      td = 0.7 * whole_mean_abs<double>(x);
    } else {
      tf = 0.7f * whole_mean_abs<float>(x);
    }
  }
  return map_unary(x, "x", [&](const auto& kern, const auto* xp, auto* yp, int64_t n) {
    using T = elem_t<decltype(xp)>;
    if constexpr (std::is_same_v<T, double>) {
      kern.ternary(xp, yp, n, td);
    } else {
      kern.ternary(xp, yp, n, tf);
    }
  });
}

// dorefa's weights mode, y in x's dtype and M = max|tanh(x)| (0-dim, compute type).
std::tuple<at::Tensor, at::Tensor> dorefa_weights_with_max(const at::Tensor& x, int64_t k_bit) {
  check_dorefa(k_bit, "weights");
  check_floating(x, "x");
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor xc = to_compute(x, ct);
  at::Tensor y = at::empty(xc.sizes(), xc.options());
  at::Tensor max_abs_tanh = at::empty({}, xc.options());
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    const T m = max_abs_tanh_all<T>(xc.data_ptr<T>(), xc.numel());
    *max_abs_tanh.data_ptr<T>() = m;
    const T* xp = xc.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    const Kernels<T> kern(xc.numel());
    at::parallel_for(0, xc.numel(), kGrain, [&](int64_t b, int64_t e) {
      kern.dorefa_weights(xp + b, yp + b, e - b, dorefa_levels<T>(k_bit), m);
    });
  });
  return {y.to(x.scalar_type()), max_abs_tanh};
}

at::Tensor dorefa(const at::Tensor& x, int64_t k_bit, c10::string_view mode_view) {
  const std::string mode(mode_view.data(), mode_view.size());
  check_dorefa(k_bit, mode);
  check_floating(x, "x");
  if (mode == "activations") {
    return map_unary(x, "x", [&](const auto& kern, const auto* xp, auto* yp, int64_t n) {
      using T = elem_t<decltype(xp)>;
      kern.dorefa_activations(xp, yp, n, dorefa_levels<T>(k_bit));
    });
  }
  return std::get<0>(dorefa_weights_with_max(x, k_bit));
}

// ---- Blueoil -----------------------------------------------------------------------------------

at::Tensor binary_mean_scaling(const at::Tensor& x) {
  check_floating(x, "x");
  const bool dbl = compute_type(x.scalar_type()) == at::kDouble;
  return sign_scaled(x, dbl ? whole_mean_abs<double>(x) : 0.0,
                     dbl ? 0.0f : whole_mean_abs<float>(x));
}

at::Tensor binary_channel_wise_mean_scaling(const at::Tensor& x, int64_t axis) {
  check_floating(x, "x");
  return sign_per_axis(x, mean_abs_compute(to_compute(x, compute_type(x.scalar_type())), axis),
                       axis);
}

at::Tensor linear_mid_tread_half(const at::Tensor& x, int64_t bit, double max_value) {
  check_linear_mid_tread(bit, max_value);
  return map_unary(x, "x", [&](const auto& kern, const auto* xp, auto* yp, int64_t n) {
    using T = elem_t<decltype(xp)>;
    const T mv = static_cast<T>(max_value);
    if (bit == 32) {
      for (int64_t i = 0; i < n; ++i) yp[i] = detail::clamp_tf(xp[i], T(0), mv);
    } else {
      kern.linear_mid_tread(xp, yp, n, dorefa_levels<T>(bit), mv);
    }
  });
}

at::Tensor twn_weight(const at::Tensor& x, double threshold) {
  check_floating(x, "x");
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor xc = to_compute(x, ct);
  at::Tensor y = at::empty(xc.sizes(), xc.options());
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    // As k::ref::twn_weight, in three parallel passes: D from mean(|x|), a over |x| > D, then y.
    const T* xp = xc.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    const int64_t n = xc.numel();
    const T d = static_cast<T>(threshold) * mean_abs_compute(xc, c10::nullopt).template item<T>();
    const auto [sum, count] = sum_abs_above_all<T>(xp, n, d);
    const T a = count > 0 ? static_cast<T>(sum / static_cast<double>(count)) : T(0);
    const Kernels<T> kern(n);
    at::parallel_for(0, n, kGrain,
                     [&](int64_t b, int64_t e) { kern.twn(xp + b, yp + b, e - b, d, a); });
  });
  return y.to(x.scalar_type());
}

// ttq_weight and max|x| (0-dim, compute type), whose D = threshold * max|x| its backward needs.
std::tuple<at::Tensor, at::Tensor> ttq_weight_with_max(const at::Tensor& x,
                                                       const at::Tensor& positive,
                                                       const at::Tensor& negative,
                                                       double threshold) {
  check_floating(x, "x");
  const double wp = scalar_arg(positive, "positive"), wn = scalar_arg(negative, "negative");
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor xc = to_compute(x, ct);
  at::Tensor y = at::empty(xc.sizes(), xc.options());
  at::Tensor max_abs = at::empty({}, xc.options());
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    const T m = max_abs_all<T>(xc.data_ptr<T>(), xc.numel());
    *max_abs.data_ptr<T>() = m;
    const T d = static_cast<T>(threshold) * m;
    const T* xp = xc.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    const Kernels<T> kern(xc.numel());
    at::parallel_for(0, xc.numel(), kGrain, [&](int64_t b, int64_t e) {
      kern.ttq(xp + b, yp + b, e - b, static_cast<T>(wp), static_cast<T>(wn), d);
    });
  });
  return {y.to(x.scalar_type()), max_abs};
}

at::Tensor ttq_weight(const at::Tensor& x, const at::Tensor& positive, const at::Tensor& negative,
                      double threshold) {
  return std::get<0>(ttq_weight_with_max(x, positive, negative, threshold));
}

// ---- backward passes ---------------------------------------------------------------------------

at::Tensor clipped_ste_backward(const at::Tensor& grad, const at::Tensor& x,
                                c10::optional<double> clip_value) {
  check_clip_value(clip_value);
  if (!clip_value) {
    check_floating(x, "x");
    check_same_size(grad, x);
    return grad.to(x.scalar_type()).clone(at::MemoryFormat::Contiguous);
  }
  const double c = *clip_value;
  return map_binary_grad(grad, x,
                         [&](const auto& kern, const auto* g, const auto* xp, auto* dx, int64_t n) {
                           using T = elem_t<decltype(xp)>;
                           kern.masked_grad(g, xp, dx, n, static_cast<T>(-c), static_cast<T>(c),
                                            k::Interval::kClosed, nullptr, nullptr);
                         });
}

// s * clipped STE, with s the scale of each channel along `axis` (no gradient through s):
// l.channels values of x's compute type, contiguous.
at::Tensor magnitude_aware_sign_grad_of(const at::Tensor& grad, const at::Tensor& x,
                                        const at::Tensor& s, c10::optional<double> clip_value,
                                        int64_t axis) {
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor xc = to_compute(x, ct);
  const ChannelLayout l = channel_layout(xc, axis);
  const at::Tensor gc = to_compute(grad, ct);
  at::Tensor dx = at::empty(xc.sizes(), xc.options());
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    // dx = (g * 1[-clip <= x <= clip]) * s[channel], in one pass (the reference's order).
    const bool clip = clip_value.has_value();
    const T c = clip ? static_cast<T>(*clip_value) : T(0);
    const T* gp = gc.data_ptr<T>();
    const T* xp = xc.data_ptr<T>();
    const T* sp = s.data_ptr<T>();
    T* dp = dx.data_ptr<T>();
    if (l.inner == 1) {  // [outer, channels]: rows of channels
      const Kernels<T> kern(xc.numel());
      at::parallel_for(0, l.outer, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, l.channels)),
                       [&](int64_t b, int64_t e) {
                         kern.clipped_grad_scaled_rows(gp + b * l.channels, xp + b * l.channels,
                                                       dp + b * l.channels, e - b, l.channels, clip,
                                                       c, sp);
                       });
    } else {  // blocks of `inner` elements of one channel
      at::parallel_for(0, l.outer * l.channels,
                       std::max<int64_t>(1, kGrain / std::max<int64_t>(1, l.inner)),
                       [&](int64_t b, int64_t e) {
                         for (int64_t k = b; k < e; ++k) {
                           const T scale = sp[k % l.channels];
                           for (int64_t i = k * l.inner; i < (k + 1) * l.inner; ++i) {
                             dp[i] = detail::clipped_grad_scaled(gp[i], xp[i], clip, c, scale);
                           }
                         }
                       });
    }
  });
  return dx.to(x.scalar_type());
}

// s * clipped STE, with s = mean(|x|) along `axis`, in the compute type.
at::Tensor magnitude_aware_sign_backward(const at::Tensor& grad, const at::Tensor& x,
                                         c10::optional<double> clip_value, int64_t axis) {
  check_floating(x, "x");
  check_same_size(grad, x);
  check_clip_value(clip_value);
  const at::Tensor s = mean_abs_compute(to_compute(x, compute_type(x.scalar_type())), axis);
  return magnitude_aware_sign_grad_of(grad, x, s, clip_value, axis);
}

// The same from the forward's scale (_magnitude_aware_sign_with_scale), without a pass over x for
// it.
at::Tensor magnitude_aware_sign_backward_scaled(const at::Tensor& grad, const at::Tensor& x,
                                                const at::Tensor& scale,
                                                c10::optional<double> clip_value, int64_t axis) {
  check_floating(x, "x");
  check_same_size(grad, x);
  check_clip_value(clip_value);
  check_saved_statistic(scale, "scale", x, channel_layout(x, axis).channels);
  return magnitude_aware_sign_grad_of(grad, x, scale.contiguous(), clip_value, axis);
}

at::Tensor approx_sign_backward(const at::Tensor& grad, const at::Tensor& x) {
  return map_binary_grad(grad, x,
                         [&](const auto& kern, const auto* g, const auto* xp, auto* dx, int64_t n) {
                           kern.approx_sign_grad(g, xp, dx, n);
                         });
}

at::Tensor swish_sign_backward(const at::Tensor& grad, const at::Tensor& x, double beta) {
  return map_binary_grad(grad, x,
                         [&](const auto& kern, const auto* g, const auto* xp, auto* dx, int64_t n) {
                           using T = elem_t<decltype(xp)>;
                           kern.swish_sign_grad(g, xp, dx, n, static_cast<T>(beta));
                         });
}

// g * (1 - tanh(x)^2) / m, m a value of x's compute type.
at::Tensor dorefa_weights_grad_of(const at::Tensor& grad, const at::Tensor& x, double m) {
  return map_binary_grad(grad, x,
                         [&](const auto& kern, const auto* g, const auto* xp, auto* dx, int64_t n) {
                           using T = elem_t<decltype(xp)>;
                           kern.dorefa_weights_grad(g, xp, dx, n, static_cast<T>(m));
                         });
}

at::Tensor dorefa_backward(const at::Tensor& grad, const at::Tensor& x, int64_t k_bit,
                           c10::string_view mode_view) {
  const std::string mode(mode_view.data(), mode_view.size());
  check_dorefa(k_bit, mode);
  if (mode == "activations") {
    return map_binary_grad(
        grad, x, [&](const auto& kern, const auto* g, const auto* xp, auto* dx, int64_t n) {
          using T = elem_t<decltype(xp)>;
          kern.masked_grad(g, xp, dx, n, T(0), T(1), k::Interval::kClosed, nullptr, nullptr);
        });
  }
  check_floating(x, "x");
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor xc = to_compute(x, ct);
  double m = 0;
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    m = static_cast<double>(max_abs_tanh_all<T>(xc.data_ptr<T>(), xc.numel()));
  });
  return dorefa_weights_grad_of(grad, x, m);
}

// The weights mode's backward from the forward's M: a value of x's compute type, as
// _dorefa_weights_with_max gives it (a float32 M for float64 x would not be the reference's).
at::Tensor dorefa_weights_backward(const at::Tensor& grad, const at::Tensor& x,
                                   const at::Tensor& max_abs_tanh) {
  check_floating(x, "x");
  check_saved_statistic(max_abs_tanh, "max_abs_tanh", x, 1);
  return dorefa_weights_grad_of(grad, x, max_abs_tanh.item<double>());
}

at::Tensor linear_mid_tread_half_backward(const at::Tensor& grad, const at::Tensor& x, int64_t bit,
                                          double max_value) {
  check_linear_mid_tread(bit, max_value);
  return map_binary_grad(grad, x,
                         [&](const auto& kern, const auto* g, const auto* xp, auto* dx, int64_t n) {
                           using T = elem_t<decltype(xp)>;
                           kern.masked_grad(g, xp, dx, n, T(0), static_cast<T>(max_value),
                                            k::Interval::kOpen, nullptr, nullptr);
                         });
}

// TTQ's gradients with D = threshold * m, m = max|x|: the forward's (0-dim, x's compute type) when
// given, else computed here.
std::tuple<at::Tensor, at::Tensor, at::Tensor> ttq_weight_grad_of(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& positive,
    const at::Tensor& negative, double threshold, const c10::optional<at::Tensor>& max_abs) {
  check_floating(grad, "gradients");
  check_floating(x, "x");
  check_same_size(grad, x);
  const double wp = scalar_arg(positive, "positive"), wn = scalar_arg(negative, "negative");
  if (max_abs) check_saved_statistic(*max_abs, "max_abs", x, 1);
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor gc = to_compute(grad, ct), xc = to_compute(x, ct);
  at::Tensor dx = at::empty(xc.sizes(), xc.options());
  double dp = 0, dn = 0;
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    const T m = max_abs ? max_abs->item<T>() : max_abs_all<T>(xc.data_ptr<T>(), xc.numel());
    const T d = static_cast<T>(threshold) * m;
    const T* gp = gc.data_ptr<T>();
    const T* xp = xc.data_ptr<T>();
    T* dxp = dx.data_ptr<T>();
    const Kernels<T> kern(xc.numel());
    std::tie(dp, dn) = span_sums(xc.numel(), [&](int64_t start, int64_t len, double* p, double* m) {
      kern.ttq_grad(gp + start, xp + start, dxp + start, len, static_cast<T>(wp),
                    static_cast<T>(wn), d, p, m);
    });
  });
  return {dx.to(x.scalar_type()), at::full_like(positive, dp, at::MemoryFormat::Contiguous),
          at::full_like(negative, dn, at::MemoryFormat::Contiguous)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ttq_weight_backward(const at::Tensor& grad,
                                                                   const at::Tensor& x,
                                                                   const at::Tensor& positive,
                                                                   const at::Tensor& negative,
                                                                   double threshold) {
  return ttq_weight_grad_of(grad, x, positive, negative, threshold, c10::nullopt);
}

// The same from the forward's max|x| (_ttq_weight_with_max), without a pass over x for it.
std::tuple<at::Tensor, at::Tensor, at::Tensor> ttq_weight_backward_from_max(
    const at::Tensor& grad, const at::Tensor& x, const at::Tensor& positive,
    const at::Tensor& negative, double threshold, const at::Tensor& max_abs) {
  return ttq_weight_grad_of(grad, x, positive, negative, threshold, max_abs);
}

}  // namespace

TORCH_LIBRARY_IMPL(lowbit, CPU, m) {
  m.impl("ste_sign", ste_sign);
  m.impl("approx_sign", approx_sign);
  m.impl("swish_sign", swish_sign);
  m.impl("ste_heaviside", ste_heaviside);
  m.impl("magnitude_aware_sign", magnitude_aware_sign);
  m.impl("ste_tern", ste_tern);
  m.impl("dorefa", dorefa);
  m.impl("binary_mean_scaling", binary_mean_scaling);
  m.impl("binary_channel_wise_mean_scaling", binary_channel_wise_mean_scaling);
  m.impl("linear_mid_tread_half", linear_mid_tread_half);
  m.impl("twn_weight", twn_weight);
  m.impl("ttq_weight", ttq_weight);
  m.impl("_mean_abs", mean_abs);
  m.impl("_ste_sign_coded", ste_sign_coded);
  m.impl("_clipped_ste_backward", clipped_ste_backward);
  m.impl("_approx_sign_backward", approx_sign_backward);
  m.impl("_magnitude_aware_sign_backward", magnitude_aware_sign_backward);
  m.impl("_magnitude_aware_sign_with_scale", magnitude_aware_sign_with_scale);
  m.impl("_magnitude_aware_sign_backward_scaled", magnitude_aware_sign_backward_scaled);
  m.impl("_swish_sign_backward", swish_sign_backward);
  m.impl("_dorefa_backward", dorefa_backward);
  m.impl("_dorefa_weights_with_max", dorefa_weights_with_max);
  m.impl("_dorefa_weights_backward", dorefa_weights_backward);
  m.impl("_linear_mid_tread_half_backward", linear_mid_tread_half_backward);
  m.impl("_ttq_weight_backward", ttq_weight_backward);
  m.impl("_ttq_weight_with_max", ttq_weight_with_max);
  m.impl("_ttq_weight_backward_from_max", ttq_weight_backward_from_max);
}

}  // namespace cpu
}  // namespace lowbit
