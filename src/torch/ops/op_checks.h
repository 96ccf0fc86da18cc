// Argument checks, dtype rules and the host-side nudging of float ranges that every backend of the
// operators shares (CPU and CUDA), so that both give the same errors for the same bad input.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "lowbit/kernels.h"

namespace lowbit {
namespace ops {

inline void check_floating_dtype(const at::Tensor& t, const char* name) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), name,
                   " must be a floating point tensor (float32, float64, float16 or bfloat16), got ",
                   t.scalar_type());
}

inline void check_same_size(const at::Tensor& grad, const at::Tensor& x) {
  TORCH_CHECK_VALUE(grad.sizes() == x.sizes(), "gradient and input must be the same size, got ",
                    grad.sizes(), " and ", x.sizes());
}

// float16 and bfloat16 are computed in float32; everything is computed on contiguous memory.
inline at::ScalarType compute_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}
inline at::Tensor to_compute(const at::Tensor& t, at::ScalarType ct) {
  return t.to(ct).contiguous();
}

// A statistic of x that a forward returned for its backward (dorefa's M, magnitude_aware_sign's
// scales): `count` values of x's compute type on x's device. Another dtype would not be the value
// the forward computed.
inline void check_saved_statistic(const at::Tensor& s, const char* name, const at::Tensor& x,
                                  int64_t count) {
  const at::ScalarType ct = compute_type(x.scalar_type());
  TORCH_CHECK_TYPE(s.scalar_type() == ct, name, " must have the compute type of x (", ct, "), got ",
                   s.scalar_type());
  TORCH_CHECK_VALUE(s.numel() == count, name, " must have ", count, " element(s), got shape ",
                    s.sizes());
  TORCH_CHECK_VALUE(s.device() == x.device(), name, " must be on ", x.device(), " like x, got ",
                    s.device());
}

// Calls f(T{}) with T the compute type of `t` (float or double).
template <class F>
void with_compute_type(at::ScalarType ct, F&& f) {
  if (ct == at::kDouble) {
    f(double{});
  } else {
    f(float{});
  }
}

// A tensor viewed as [outer, channels, inner] around dimension `axis` (0-dim counts as [1]).
struct ChannelLayout {
  int64_t outer = 1;
  int64_t channels = 1;
  int64_t inner = 1;
  int64_t dim = 0;
};
inline ChannelLayout channel_layout(const at::Tensor& x, int64_t axis) {
  const int64_t rank = x.dim();
  const int64_t r = rank == 0 ? 1 : rank;
  TORCH_CHECK_INDEX(axis >= -r && axis < r, "axis ", axis, " is out of range for a tensor of rank ",
                    rank);
  ChannelLayout l;
  l.dim = axis < 0 ? axis + r : axis;
  if (rank == 0) return l;
  for (int64_t d = 0; d < l.dim; ++d) l.outer *= x.size(d);
  l.channels = x.size(l.dim);
  for (int64_t d = l.dim + 1; d < rank; ++d) l.inner *= x.size(d);
  return l;
}

inline void check_num_bits(int64_t num_bits) {
  TORCH_CHECK_VALUE(num_bits >= 2 && num_bits <= 16,
                    "num_bits must be between 2 and 16, inclusive, got ", num_bits);
}

// Per-channel fake quant: inputs of rank >= 1, min and max 1-D of the size of its last dimension.
inline void check_per_channel_args(const at::Tensor& inputs, const at::Tensor& min,
                                   const at::Tensor& max, int64_t num_bits) {
  check_num_bits(num_bits);
  TORCH_CHECK_VALUE(inputs.dim() >= 1,
                    "inputs must have rank >= 1 for per-channel fake quant, got a 0-dim tensor");
  const int64_t depth = inputs.size(-1);
  for (const auto& [t, name] :
       {std::pair<const at::Tensor&, const char*>{min, "min"}, {max, "max"}}) {
    TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == depth, name,
                      " must be a 1-D tensor whose size is the last dimension of inputs (", depth,
                      "), got shape ", t.sizes());
    TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), name,
                     " must be a floating point tensor, got ", t.scalar_type());
  }
}

inline void check_codes(const at::Tensor& grad, const at::Tensor& code) {
  check_floating_dtype(grad, "grad");
  TORCH_CHECK_TYPE(code.scalar_type() == at::kByte, "code must be a uint8 tensor, got ",
                   code.scalar_type());
  TORCH_CHECK_VALUE(grad.sizes() == code.sizes(), "grad and code must be the same size, got ",
                    grad.sizes(), " and ", code.sizes());
}

inline void check_dorefa(int64_t k_bit, const std::string& mode) {
  TORCH_CHECK_VALUE(mode == "activations" || mode == "weights",
                    "mode must be \"activations\" or \"weights\", got \"", mode, "\"");
  TORCH_CHECK_VALUE(k_bit >= 1 && k_bit <= 32, "k_bit must be between 1 and 32, got ", k_bit);
}

template <class T>
inline T dorefa_levels(int64_t k_bit) {
  return static_cast<T>(std::ldexp(1.0, static_cast<int>(k_bit)) - 1.0);
}

// The window of the clipped straight-through estimator: None (no clipping) or a number >= 0 (inf
// included); NaN or a negative value would silently zero every gradient.
inline void check_clip_value(c10::optional<double> clip_value) {
  TORCH_CHECK_VALUE(!clip_value || *clip_value >= 0,
                    "clip_value must be a number >= 0 or None, got ", *clip_value);
}

inline void check_linear_mid_tread(int64_t bit, double max_value) {
  TORCH_CHECK_VALUE(bit >= 1 && bit <= 32,
                    "bit must be between 1 and 32 (32: no quantization), got ", bit);
  TORCH_CHECK_VALUE(max_value > 0 && std::isfinite(max_value),
                    "max_value must be positive and finite, got ", max_value);
}

// Run a kernel library call that throws std::invalid_argument, as a torch ValueError.
template <class F>
auto checked(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::invalid_argument& e) {
    TORCH_CHECK_VALUE(false, e.what());
  }
}

// Nudged parameters of one range in both compute types, computed once per call.
struct Nudged {
  kernels::FakeQuantParams<float> f;
  kernels::FakeQuantParams<double> d;
  const kernels::FakeQuantParams<float>& get(float) const { return f; }
  const kernels::FakeQuantParams<double>& get(double) const { return d; }
};

inline Nudged nudge_both(double min, double max, int64_t num_bits, bool narrow_range) {
  check_num_bits(num_bits);
  return checked([&] {
    return Nudged{kernels::nudge<float>(static_cast<float>(min), static_cast<float>(max),
                                        static_cast<int>(num_bits), narrow_range),
                  kernels::nudge<double>(min, max, static_cast<int>(num_bits), narrow_range)};
  });
}

// The range of the args operators (two floats): min < max, nudged on the host.
inline Nudged args_range(double min, double max, int64_t num_bits, bool narrow_range) {
  check_num_bits(num_bits);
  TORCH_CHECK_VALUE(std::isfinite(min) && std::isfinite(max),
                    "min and max must be finite (not NaN or infinite), got min = ", min,
                    ", max = ", max);
  TORCH_CHECK_VALUE(min < max, "min has to be smaller than max, got min = ", min, ", max = ", max);
  return nudge_both(min, max, num_bits, narrow_range);
}

}  // namespace ops
}  // namespace lowbit
