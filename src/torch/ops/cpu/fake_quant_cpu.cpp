// CPU kernels of the TF fake quant operators and the power-of-2 ones (spec sections 1 and 4).
#include <torch/library.h>

#include <limits>
#include <tuple>

#include "cpu_common.h"

namespace lowbit {
namespace cpu {
namespace {

using Rounding = k::FakeQuantRounding;

// The straight-through window of the gradient: the nudged range, or everything when degenerate.
template <class T>
std::pair<T, T> grad_window(const k::FakeQuantParams<T>& p) {
  if (p.degenerate)
    return {-std::numeric_limits<T>::infinity(), std::numeric_limits<T>::infinity()};
  return {p.nudged_min, p.nudged_max};
}

at::Tensor fake_quant_per_tensor(const at::Tensor& inputs, const Nudged& n, Rounding r) {
  // The degenerate range (min == max == 0) has all-zero parameters: multiplying gives exactly 0.
  const Rounding rr = n.f.degenerate ? Rounding::kMulInvScale : r;
  return map_unary(inputs, "inputs", [&](const auto& kern, const auto* x, auto* y, int64_t len) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(x)>>;
    kern.fake_quant(x, y, len, n.get(T{}), rr);
  });
}

// dx and the summed gradients below / above the window (in double).
std::tuple<at::Tensor, double, double> masked_grad_sums(const at::Tensor& grad,
                                                        const at::Tensor& inputs, const Nudged& n) {
  check_floating(grad, "gradients");
  check_floating(inputs, "inputs");
  check_same_size(grad, inputs);
  const auto ct = compute_type(inputs.scalar_type());
  const at::Tensor gc = to_compute(grad, ct), xc = to_compute(inputs, ct);
  at::Tensor dx = at::empty(xc.sizes(), xc.options());
  std::pair<double, double> sums;
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    const auto window = grad_window(n.get(T{}));
    const T* gp = gc.data_ptr<T>();
    const T* xp = xc.data_ptr<T>();
    T* dp = dx.data_ptr<T>();
    const Kernels<T> kern(xc.numel());
    sums = span_sums(xc.numel(), [&](int64_t start, int64_t len, double* below, double* above) {
      kern.masked_grad(gp + start, xp + start, dp + start, len, window.first, window.second,
                       k::Interval::kClosed, below, above);
    });
  });
  return {dx.to(inputs.scalar_type()), sums.first, sums.second};
}

// Forward that also returns the packed window codes (empty_packed_codes) for the backward.
std::tuple<at::Tensor, at::Tensor> fake_quant_per_tensor_coded(const at::Tensor& inputs,
                                                               const Nudged& n, Rounding r) {
  check_floating(inputs, "inputs");
  const Rounding rr = n.f.degenerate ? Rounding::kMulInvScale : r;
  const auto ct = compute_type(inputs.scalar_type());
  const at::Tensor xc = to_compute(inputs, ct);
  at::Tensor y = at::empty(xc.sizes(), xc.options());
  at::Tensor code = empty_packed_codes(xc);
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    const auto& p = n.get(T{});
    const auto window = grad_window(p);
    const T* xp = xc.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    uint8_t* cp = code.data_ptr<uint8_t>();
    const Kernels<T> kern(xc.numel());
    parallel_blocks(xc.numel(), [&](int64_t start, int64_t len) {
      kern.fake_quant_packed(xp + start, yp + start, cp + k::packed_code_bytes(start), len, p, rr,
                             window.first, window.second);
    });
  });
  return {y.to(inputs.scalar_type()), code};
}

// ---- args --------------------------------------------------------------------------------------

at::Tensor fq_args(const at::Tensor& inputs, double min, double max, int64_t num_bits,
                   bool narrow_range) {
  check_floating(inputs, "inputs");
  return fake_quant_per_tensor(inputs, args_range(min, max, num_bits, narrow_range),
                               Rounding::kMulInvScale);
}

at::Tensor fq_args_gradient(const at::Tensor& gradients, const at::Tensor& inputs, double min,
                            double max, int64_t num_bits, bool narrow_range) {
  const Nudged n = args_range(min, max, num_bits, narrow_range);
  return map_binary_grad(
      gradients, inputs,
      [&](const auto& kern, const auto* g, const auto* x, auto* dx, int64_t len) {
        using T = std::remove_const_t<std::remove_pointer_t<decltype(x)>>;
        const auto& p = n.get(T{});
        kern.masked_grad(g, x, dx, len, p.nudged_min, p.nudged_max, k::Interval::kClosed, nullptr,
                         nullptr);
      });
}

std::tuple<at::Tensor, at::Tensor> fq_args_coded(const at::Tensor& inputs, double min, double max,
                                                 int64_t num_bits, bool narrow_range) {
  return fake_quant_per_tensor_coded(inputs, args_range(min, max, num_bits, narrow_range),
                                     Rounding::kMulInvScale);
}

// ---- vars --------------------------------------------------------------------------------------

Nudged vars_range(const at::Tensor& min, const at::Tensor& max, int64_t num_bits,
                  bool narrow_range) {
  check_num_bits(num_bits);
  return nudge_both(scalar_arg(min, "min"), scalar_arg(max, "max"), num_bits, narrow_range);
}

at::Tensor fq_vars(const at::Tensor& inputs, const at::Tensor& min, const at::Tensor& max,
                   int64_t num_bits, bool narrow_range) {
  check_floating(inputs, "inputs");
  return fake_quant_per_tensor(inputs, vars_range(min, max, num_bits, narrow_range),
                               Rounding::kDivScale);
}

std::tuple<at::Tensor, at::Tensor> fq_vars_coded(const at::Tensor& inputs, const at::Tensor& min,
                                                 const at::Tensor& max, int64_t num_bits,
                                                 bool narrow_range) {
  return fake_quant_per_tensor_coded(inputs, vars_range(min, max, num_bits, narrow_range),
                                     Rounding::kDivScale);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fq_vars_gradient(
    const at::Tensor& gradients, const at::Tensor& inputs, const at::Tensor& min,
    const at::Tensor& max, int64_t num_bits, bool narrow_range) {
  const Nudged n = vars_range(min, max, num_bits, narrow_range);
  auto [dx, below, above] = masked_grad_sums(gradients, inputs, n);
  return {dx, at::full_like(min, below, at::MemoryFormat::Contiguous),
          at::full_like(max, above, at::MemoryFormat::Contiguous)};
}

// ---- per channel (the last dimension) ----------------------------------------------------------

struct ChannelRanges {
  std::vector<k::FakeQuantParams<float>> f;
  std::vector<k::FakeQuantParams<double>> d;
  const k::FakeQuantParams<float>* get(float) const { return f.data(); }
  const k::FakeQuantParams<double>* get(double) const { return d.data(); }
  // The straight-through windows of the channels in T: {lo[c]}, {hi[c]}.
  template <class T>
  std::pair<std::vector<T>, std::vector<T>> windows() const {
    const size_t depth = f.size();
    std::pair<std::vector<T>, std::vector<T>> w{std::vector<T>(depth), std::vector<T>(depth)};
    for (size_t c = 0; c < depth; ++c) std::tie(w.first[c], w.second[c]) = grad_window(get(T{})[c]);
    return w;
  }
};

ChannelRanges channel_ranges(const at::Tensor& inputs, const at::Tensor& min, const at::Tensor& max,
                             int64_t num_bits, bool narrow_range) {
  check_per_channel_args(inputs, min, max, num_bits);
  const int64_t depth = inputs.size(-1);
  const at::Tensor mn = min.to(at::kDouble).contiguous(), mx = max.to(at::kDouble).contiguous();
  const double* mnp = mn.data_ptr<double>();
  const double* mxp = mx.data_ptr<double>();
  ChannelRanges r;
  r.f.reserve(static_cast<size_t>(depth));
  r.d.reserve(static_cast<size_t>(depth));
  for (int64_t c = 0; c < depth; ++c) {
    try {
      const Nudged n = nudge_both(mnp[c], mxp[c], num_bits, narrow_range);
      r.f.push_back(n.f);
      r.d.push_back(n.d);
    } catch (const c10::ValueError& e) {
      TORCH_CHECK_VALUE(false, "channel ", c, ": ", e.msg());
    }
  }
  return r;
}

// The per-channel forward; with_codes also returns the window codes (else an undefined tensor).
std::tuple<at::Tensor, at::Tensor> per_channel_forward(const at::Tensor& inputs,
                                                       const at::Tensor& min, const at::Tensor& max,
                                                       int64_t num_bits, bool narrow_range,
                                                       bool with_codes) {
  check_floating(inputs, "inputs");
  const ChannelRanges r = channel_ranges(inputs, min, max, num_bits, narrow_range);
  const int64_t depth = inputs.size(-1);
  const auto ct = compute_type(inputs.scalar_type());
  const at::Tensor xc = to_compute(inputs, ct);
  at::Tensor y = at::empty(xc.sizes(), xc.options());
  at::Tensor code = with_codes ? empty_packed_codes(xc) : at::Tensor();
  if (depth == 0 || xc.numel() == 0) return {y.to(inputs.scalar_type()), code};
  const int64_t rows = xc.numel() / depth;
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    const auto window = r.windows<T>();
    const T* lo = window.first.data();
    const T* hi = window.second.data();
    const T* xp = xc.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    uint8_t* cp = with_codes ? code.data_ptr<uint8_t>() : nullptr;
    const Kernels<T> kern(xc.numel());
    // Without codes any row may start a task (few long rows of an odd length still split).
    const int64_t unit = cp ? packed_row_unit(depth) : 1;
    parallel_row_blocks(rows, depth, unit, [&](int64_t row, int64_t nrows) {
      kern.fake_quant_per_channel_packed(xp + row * depth, yp + row * depth,
                                         cp ? cp + k::packed_code_bytes(row * depth) : nullptr,
                                         nrows, depth, r.get(T{}), Rounding::kMulInvScale, lo, hi);
    });
  });
  return {y.to(inputs.scalar_type()), code};
}

at::Tensor fq_per_channel(const at::Tensor& inputs, const at::Tensor& min, const at::Tensor& max,
                          int64_t num_bits, bool narrow_range) {
  return std::get<0>(per_channel_forward(inputs, min, max, num_bits, narrow_range, false));
}

std::tuple<at::Tensor, at::Tensor> fq_per_channel_coded(const at::Tensor& inputs,
                                                        const at::Tensor& min,
                                                        const at::Tensor& max, int64_t num_bits,
                                                        bool narrow_range) {
  return per_channel_forward(inputs, min, max, num_bits, narrow_range, true);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fq_per_channel_gradient(
    const at::Tensor& gradients, const at::Tensor& inputs, const at::Tensor& min,
    const at::Tensor& max, int64_t num_bits, bool narrow_range) {
  check_floating(gradients, "gradients");
  check_floating(inputs, "inputs");
  check_same_size(gradients, inputs);
  const ChannelRanges r = channel_ranges(inputs, min, max, num_bits, narrow_range);
  const int64_t depth = inputs.size(-1);
  const auto ct = compute_type(inputs.scalar_type());
  const at::Tensor gc = to_compute(gradients, ct), xc = to_compute(inputs, ct);
  at::Tensor dx = at::empty(xc.sizes(), xc.options());
  const int64_t rows = depth == 0 ? 0 : xc.numel() / depth;
  std::pair<at::Tensor, at::Tensor> sums;
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    const auto window = r.windows<T>();
    const T* lo = window.first.data();
    const T* hi = window.second.data();
    const T* gp = gc.data_ptr<T>();
    const T* xp = xc.data_ptr<T>();
    T* dp = dx.data_ptr<T>();
    const Kernels<T> kern(xc.numel());
    sums = channel_span_sums<T>(rows, depth, [&](int64_t row, int64_t nrows, T* below, T* above) {
      kern.masked_grad_per_channel(gp + row * depth, xp + row * depth, dp + row * depth, nrows,
                                   depth, lo, hi, below, above);
    });
  });
  return {dx.to(inputs.scalar_type()), sums.first.to(min.scalar_type()).view(min.sizes()),
          sums.second.to(max.scalar_type()).view(max.sizes())};
}

// ---- backward from window codes ----------------------------------------------------------------

// (dx, sum below, sum above) with the sums as 0-dim float64 tensors (zeros unless `sums`).
std::tuple<at::Tensor, at::Tensor, at::Tensor> coded_backward(const at::Tensor& grad,
                                                              const at::Tensor& code, bool sums) {
  check_packed_codes(grad, code);
  const auto ct = compute_type(grad.scalar_type());
  const at::Tensor gc = to_compute(grad, ct), cc = code.contiguous();
  at::Tensor dx = at::empty(gc.sizes(), gc.options());
  std::pair<double, double> s{0.0, 0.0};
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    const T* gp = gc.data_ptr<T>();
    const uint8_t* cp = cc.data_ptr<uint8_t>();
    T* dp = dx.data_ptr<T>();
    const Kernels<T> kern(gc.numel());
    if (!sums) {  // no fixed spans needed: one call (one fence of its streaming stores) per task
      parallel_blocks(gc.numel(), [&](int64_t start, int64_t len) {
        kern.packed_grad(gp + start, cp + k::packed_code_bytes(start), dp + start, len, nullptr,
                         nullptr);
      });
      return;
    }
    s = span_sums(gc.numel(), [&](int64_t start, int64_t len, double* below, double* above) {
      kern.packed_grad(gp + start, cp + k::packed_code_bytes(start), dp + start, len, below, above);
    });
  });
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  return {dx.to(grad.scalar_type()), at::scalar_tensor(s.first, f64),
          at::scalar_tensor(s.second, f64)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> coded_backward_per_channel(const at::Tensor& grad,
                                                                          const at::Tensor& code) {
  check_packed_codes(grad, code);
  TORCH_CHECK_VALUE(grad.dim() >= 1, "grad must have rank >= 1 for the per-channel backward");
  const int64_t depth = grad.size(-1);
  const auto ct = compute_type(grad.scalar_type());
  const at::Tensor gc = to_compute(grad, ct), cc = code.contiguous();
  at::Tensor dx = at::empty(gc.sizes(), gc.options());
  const int64_t rows = depth == 0 ? 0 : gc.numel() / depth;
  std::pair<at::Tensor, at::Tensor> sums;
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    const T* gp = gc.data_ptr<T>();
    const uint8_t* cp = cc.data_ptr<uint8_t>();
    T* dp = dx.data_ptr<T>();
    const Kernels<T> kern(gc.numel());
    sums = channel_span_sums<T>(rows, depth, [&](int64_t row, int64_t nrows, T* below, T* above) {
      kern.packed_grad_per_channel(gp + row * depth, cp + k::packed_code_bytes(row * depth),
                                   dp + row * depth, nrows, depth, below, above);
    });
  });
  return {dx.to(grad.scalar_type()), sums.first, sums.second};
}

// ---- power of 2 --------------------------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor> pow2_range(const at::Tensor& min, const at::Tensor& max,
                                              int64_t num_bits,
                                              c10::optional<int64_t> max_exponent) {
  check_num_bits(num_bits);
  check_floating(min, "min");
  check_floating(max, "max");
  TORCH_CHECK_VALUE(min.sizes() == max.sizes(), "min and max must have the same shape, got ",
                    min.sizes(), " and ", max.sizes());
  const auto ct = compute_type(min.scalar_type());
  const at::Tensor mn = to_compute(min, ct), mx = to_compute(max.to(min.scalar_type()), ct);
  at::Tensor lo = at::empty(mn.sizes(), mn.options()), hi = at::empty(mn.sizes(), mn.options());
  const int me = max_exponent ? static_cast<int>(*max_exponent) : k::kNoMaxExponent;
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < mn.numel(); ++i) {
      const auto r = checked([&] {
        return k::pow2_range<T>(mn.data_ptr<T>()[i], mx.data_ptr<T>()[i],
                                static_cast<int>(num_bits), me);
      });
      lo.data_ptr<T>()[i] = r.min;
      hi.data_ptr<T>()[i] = r.max;
    }
  });
  return {lo.to(min.scalar_type()), hi.to(min.scalar_type())};
}

at::Tensor fq_pow2(const at::Tensor& x, const at::Tensor& min, const at::Tensor& max,
                   int64_t num_bits, c10::optional<int64_t> max_exponent) {
  check_floating(x, "x");
  auto [lo, hi] = pow2_range(min, max, num_bits, max_exponent);
  if (lo.numel() == 1) return fq_vars(x, lo, hi, num_bits, false);
  return fq_per_channel(x, lo, hi, num_bits, false);
}

}  // namespace

TORCH_LIBRARY_IMPL(lowbit, CPU, m) {
  m.impl("fake_quant_with_min_max_args", fq_args);
  m.impl("fake_quant_with_min_max_args_gradient", fq_args_gradient);
  m.impl("fake_quant_with_min_max_vars", fq_vars);
  m.impl("fake_quant_with_min_max_vars_gradient", fq_vars_gradient);
  m.impl("fake_quant_with_min_max_vars_per_channel", fq_per_channel);
  m.impl("fake_quant_with_min_max_vars_per_channel_gradient", fq_per_channel_gradient);
  m.impl("pow2_range", pow2_range);
  m.impl("_fake_quant_with_min_max_args_coded", fq_args_coded);
  m.impl("_fake_quant_with_min_max_vars_coded", fq_vars_coded);
  m.impl("_fake_quant_with_min_max_vars_per_channel_coded", fq_per_channel_coded);
  m.impl("_coded_backward", coded_backward);
  m.impl("_coded_backward_per_channel", coded_backward_per_channel);
  m.impl("fake_quant_pow2", fq_pow2);
}

}  // namespace cpu
}  // namespace lowbit
