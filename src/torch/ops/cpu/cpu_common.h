// Shared plumbing of the CPU operators: argument checks, dtype rules, contiguity, threading, and
// the typed view of the kernel library (float32 SIMD sets or the scalar reference for float64).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "../op_checks.h"
#include "lowbit/kernels.h"

namespace lowbit {
namespace cpu {

namespace k = ::lowbit::kernels;
using namespace ::lowbit::ops;  // NOLINT: the shared checks

// Elements per task of an element-wise kernel, and per fixed span of a reduction. Reductions are
// split at fixed offsets (never by thread count) so that their sums do not depend on the number of
// threads.
constexpr int64_t kGrain = 1 << 15;
constexpr int64_t kSumSpan = 1 << 16;
static_assert(kGrain % k::kPackedCodeGroup == 0 && kSumSpan % k::kPackedCodeGroup == 0,
              "tasks and spans must start where groups of packed window codes do");

// f(start, len) over [0, numel) in parallel, each task a run of whole kGrain blocks: every start is
// a multiple of kGrain, so a task's packed window codes begin at code + packed_code_bytes(start).
template <class F>
void parallel_blocks(int64_t numel, F&& f) {
  const int64_t blocks = (numel + kGrain - 1) / kGrain;
  at::parallel_for(0, blocks, 1, [&](int64_t b, int64_t e) {
    const int64_t start = b * kGrain;
    f(start, std::min(e * kGrain, numel) - start);
  });
}

// Rows of a [rows, depth] matrix per block whose first element starts a group of packed window
// codes: the blocks' codes then begin at code + packed_code_bytes(row * depth), each in its own
// bytes.
inline int64_t packed_row_unit(int64_t depth) {
  return depth <= 0 ? 1 : k::kPackedCodeGroup / std::gcd(depth, k::kPackedCodeGroup);
}

// f(row, nrows) over the rows of a [rows, depth] matrix in parallel, each task about kGrain
// elements of whole blocks of `unit` rows (packed_row_unit(depth) where tasks write packed codes).
template <class F>
void parallel_row_blocks(int64_t rows, int64_t depth, int64_t unit, F&& f) {
  const int64_t units = (rows + unit - 1) / unit;
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, depth * unit));
  at::parallel_for(0, units, grain,
                   [&](int64_t b, int64_t e) { f(b * unit, std::min(e * unit, rows) - b * unit); });
}

// The CPU forwards' packed window codes of x: uint8, k::packed_code_bytes(x.numel()) of them.
inline at::Tensor empty_packed_codes(const at::Tensor& x) {
  return at::empty({k::packed_code_bytes(x.numel())}, x.options().dtype(at::kByte));
}

// The CPU backward's check of the codes it is given: those of a CPU forward for grad's shape.
inline void check_packed_codes(const at::Tensor& grad, const at::Tensor& code) {
  check_floating_dtype(grad, "grad");
  TORCH_CHECK_TYPE(code.scalar_type() == at::kByte, "code must be a uint8 tensor, got ",
                   code.scalar_type());
  TORCH_CHECK_VALUE(code.dim() == 1 && code.numel() == k::packed_code_bytes(grad.numel()),
                    "code must hold the packed window codes of grad's ", grad.numel(),
                    " elements (", k::packed_code_bytes(grad.numel()),
                    " bytes, as the CPU forward returns them), got shape ", code.sizes());
}

inline void check_floating(const at::Tensor& t, const char* name) {
  check_floating_dtype(t, name);
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor here, got ", t.device());
}

// The kernels for compute type T and an output of `elements` values: float32 uses the chosen SIMD
// set (its non-temporal variant for large outputs), float64 the scalar reference.
template <class T>
struct Kernels;

template <>
struct Kernels<double> {
  explicit Kernels(int64_t) {}
  template <class... A>
  void fake_quant(A... a) const {
    k::ref::fake_quant<double>(a...);
  }
  template <class... A>
  void fake_quant_per_channel(A... a) const {
    k::ref::fake_quant_per_channel<double>(a...);
  }
  template <class... A>
  void masked_grad(A... a) const {
    k::ref::masked_grad<double>(a...);
  }
  template <class... A>
  void masked_grad_per_channel(A... a) const {
    k::ref::masked_grad_per_channel<double>(a...);
  }
  template <class... A>
  void sign(A... a) const {
    k::ref::sign<double>(a...);
  }
  template <class... A>
  void sign_per_channel(A... a) const {
    k::ref::sign_per_channel<double>(a...);
  }
  template <class... A>
  void heaviside(A... a) const {
    k::ref::heaviside<double>(a...);
  }
  template <class... A>
  void ternary(A... a) const {
    k::ref::ternary<double>(a...);
  }
  template <class... A>
  void dorefa_activations(A... a) const {
    k::ref::dorefa_activations<double>(a...);
  }
  template <class... A>
  void linear_mid_tread(A... a) const {
    k::ref::linear_mid_tread<double>(a...);
  }
  template <class... A>
  void approx_sign_grad(A... a) const {
    k::ref::approx_sign_grad<double>(a...);
  }
  template <class... A>
  void fake_quant_packed(A... a) const {
    k::ref::fake_quant_packed<double>(a...);
  }
  template <class... A>
  void fake_quant_per_channel_packed(A... a) const {
    k::ref::fake_quant_per_channel_packed<double>(a...);
  }
  template <class... A>
  void sign_packed(A... a) const {
    k::ref::sign_packed<double>(a...);
  }
  template <class... A>
  void packed_grad(A... a) const {
    k::ref::packed_grad<double>(a...);
  }
  template <class... A>
  void packed_grad_per_channel(A... a) const {
    k::ref::packed_grad_per_channel<double>(a...);
  }
  template <class... A>
  void twn(A... a) const {
    k::ref::twn<double>(a...);
  }
  template <class... A>
  void ttq(A... a) const {
    k::ref::ttq_weight<double>(a...);
  }
  template <class... A>
  void ttq_grad(A... a) const {
    k::ref::ttq_weight_grad<double>(a...);
  }
  template <class... A>
  void clipped_grad_scaled_rows(A... a) const {
    k::ref::clipped_grad_scaled_rows<double>(a...);
  }
  template <class... A>
  void swish_sign_grad(A... a) const {
    k::ref::swish_sign_grad<double>(a...);
  }
  template <class... A>
  double max_abs_tanh(A... a) const {
    return k::ref::max_abs_tanh<double>(a...);
  }
  // The reductions (reductions.h): the same lanes and order as the float32 sets'.
  double sum_abs(const double* x, int64_t n) const { return k::ref::sum_abs<double>(x, n); }
  void sum_abs_rows(const double* x, int64_t rows, int64_t ch, double* acc) const {
    k::ref::sum_abs_rows<double>(x, rows, ch, acc);
  }
  double max_abs(const double* x, int64_t n) const { return k::ref::max_abs<double>(x, n); }
  void sum_abs_above(const double* x, int64_t n, double d, double* s, int64_t* c) const {
    k::ref::sum_abs_above<double>(x, n, d, s, c);
  }
  template <class... A>
  void dorefa_weights(A... a) const {
    k::ref::dorefa_weights<double>(a...);
  }
  template <class... A>
  void dorefa_weights_grad(A... a) const {
    k::ref::dorefa_weights_grad<double>(a...);
  }
};

template <>
struct Kernels<float> {
  explicit Kernels(int64_t elements) : set(&k::f32_kernels(elements)) {}
  const k::F32Kernels* set;
  template <class... A>
  void fake_quant(A... a) const {
    set->fake_quant(a...);
  }
  template <class... A>
  void fake_quant_per_channel(A... a) const {
    set->fake_quant_per_channel(a...);
  }
  template <class... A>
  void masked_grad(A... a) const {
    set->masked_grad(a...);
  }
  template <class... A>
  void masked_grad_per_channel(A... a) const {
    set->masked_grad_per_channel(a...);
  }
  template <class... A>
  void sign(A... a) const {
    set->sign(a...);
  }
  template <class... A>
  void sign_per_channel(A... a) const {
    set->sign_per_channel(a...);
  }
  template <class... A>
  void heaviside(A... a) const {
    set->heaviside(a...);
  }
  template <class... A>
  void ternary(A... a) const {
    set->ternary(a...);
  }
  template <class... A>
  void dorefa_activations(A... a) const {
    set->dorefa_activations(a...);
  }
  template <class... A>
  void linear_mid_tread(A... a) const {
    set->linear_mid_tread(a...);
  }
  template <class... A>
  void approx_sign_grad(A... a) const {
    set->approx_sign_grad(a...);
  }
  template <class... A>
  void fake_quant_packed(A... a) const {
    set->fake_quant_packed(a...);
  }
  template <class... A>
  void fake_quant_per_channel_packed(A... a) const {
    set->fake_quant_per_channel_packed(a...);
  }
  template <class... A>
  void sign_packed(A... a) const {
    set->sign_packed(a...);
  }
  template <class... A>
  void packed_grad(A... a) const {
    set->packed_grad(a...);
  }
  template <class... A>
  void packed_grad_per_channel(A... a) const {
    set->packed_grad_per_channel(a...);
  }
  template <class... A>
  void twn(A... a) const {
    set->twn(a...);
  }
  template <class... A>
  void ttq(A... a) const {
    set->ttq(a...);
  }
  template <class... A>
  void ttq_grad(A... a) const {
    set->ttq_grad(a...);
  }
  template <class... A>
  void clipped_grad_scaled_rows(A... a) const {
    set->clipped_grad_scaled_rows(a...);
  }
  template <class... A>
  void swish_sign_grad(A... a) const {
    set->swish_sign_grad(a...);
  }
  template <class... A>
  float max_abs_tanh(A... a) const {
    return set->max_abs_tanh(a...);
  }
  double sum_abs(const float* x, int64_t n) const { return set->sum_abs(x, n); }
  void sum_abs_rows(const float* x, int64_t rows, int64_t ch, double* acc) const {
    set->sum_abs_rows(x, rows, ch, acc);
  }
  float max_abs(const float* x, int64_t n) const { return set->max_abs(x, n); }
  void sum_abs_above(const float* x, int64_t n, float d, double* s, int64_t* c) const {
    set->sum_abs_above(x, n, d, s, c);
  }
  template <class... A>
  void dorefa_weights(A... a) const {
    set->dorefa_weights(a...);
  }
  template <class... A>
  void dorefa_weights_grad(A... a) const {
    set->dorefa_weights_grad(a...);
  }
};

// y = f(kernels, x, y, n) element-wise in parallel, f called on sub-ranges with T* pointers.
template <class F>
at::Tensor map_unary(const at::Tensor& x, const char* name, F&& f) {
  check_floating(x, name);
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor xc = to_compute(x, ct);
  at::Tensor y = at::empty(xc.sizes(), xc.options());
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = xc.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    const Kernels<T> kern(xc.numel());
    at::parallel_for(0, xc.numel(), kGrain,
                     [&](int64_t b, int64_t e) { f(kern, xp + b, yp + b, e - b); });
  });
  return y.scalar_type() == x.scalar_type() ? y : y.to(x.scalar_type());
}

// dx = f(kernels, g, x, dx, n) element-wise in parallel, on sub-ranges.
template <class F>
at::Tensor map_binary_grad(const at::Tensor& grad, const at::Tensor& x, F&& f) {
  check_floating(grad, "gradients");
  check_floating(x, "inputs");
  check_same_size(grad, x);
  const auto ct = compute_type(x.scalar_type());
  const at::Tensor gc = to_compute(grad, ct), xc = to_compute(x, ct);
  at::Tensor dx = at::empty(xc.sizes(), xc.options());
  with_compute_type(ct, [&](auto tag) {
    using T = decltype(tag);
    const T* gp = gc.data_ptr<T>();
    const T* xp = xc.data_ptr<T>();
    T* dp = dx.data_ptr<T>();
    const Kernels<T> kern(xc.numel());
    at::parallel_for(0, xc.numel(), kGrain,
                     [&](int64_t b, int64_t e) { f(kern, gp + b, xp + b, dp + b, e - b); });
  });
  return dx.scalar_type() == x.scalar_type() ? dx : dx.to(x.scalar_type());
}

// Sums of a reduction over `numel` elements split at fixed spans of kSumSpan (never by thread
// count): f(start, len, &below, &above) adds one span's sums; the spans' sums are then added in
// span order.
template <class F>
std::pair<double, double> span_sums(int64_t numel, F&& f) {
  const int64_t spans = (numel + kSumSpan - 1) / kSumSpan;
  std::vector<double> below(static_cast<size_t>(spans), 0.0), above(below);
  at::parallel_for(0, spans, 1, [&](int64_t b, int64_t e) {
    for (int64_t s = b; s < e; ++s) {
      const int64_t start = s * kSumSpan;
      f(start, std::min(kSumSpan, numel - start), &below[s], &above[s]);
    }
  });
  double sb = 0, sa = 0;
  for (int64_t s = 0; s < spans; ++s) {
    sb += below[s];
    sa += above[s];
  }
  return {sb, sa};
}

// The same per channel for a [rows, depth] matrix: spans of whole rows (about kSumSpan elements),
// each summing into its own T arrays f(row, nrows, below[depth], above[depth]); the spans' arrays
// are then added in double, in span order. Returns the two float64 tensors of shape [depth].
template <class T, class F>
std::pair<at::Tensor, at::Tensor> channel_span_sums(int64_t rows, int64_t depth, F&& f) {
  at::Tensor below = at::zeros({depth}, at::kDouble), above = at::zeros({depth}, at::kDouble);
  if (rows == 0 || depth == 0) return {below, above};
  // Whole packed_row_unit blocks per span, so that each span's packed codes are its own bytes.
  const int64_t unit = packed_row_unit(depth);
  const int64_t span_rows = (std::max<int64_t>(1, kSumSpan / depth) + unit - 1) / unit * unit;
  const int64_t spans = (rows + span_rows - 1) / span_rows;
  std::vector<T> partial(static_cast<size_t>(spans * depth * 2), T(0));
  at::parallel_for(0, spans, 1, [&](int64_t b, int64_t e) {
    for (int64_t s = b; s < e; ++s) {
      T* pb = partial.data() + s * depth * 2;
      f(s * span_rows, std::min(span_rows, rows - s * span_rows), pb, pb + depth);
    }
  });
  double* bp = below.data_ptr<double>();
  double* ap = above.data_ptr<double>();
  for (int64_t s = 0; s < spans; ++s) {
    const T* pb = partial.data() + s * depth * 2;
    for (int64_t c = 0; c < depth; ++c) {
      bp[c] += static_cast<double>(pb[c]);
      ap[c] += static_cast<double>(pb[depth + c]);
    }
  }
  return {below, above};
}

// Reads a 1-element tensor argument (min, max, positive, negative) as a double.
inline double scalar_arg(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.numel() == 1, name, " must be a 0-dim or 1-element tensor, got shape ",
                    t.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), name,
                   " must be a floating point tensor, got ", t.scalar_type());
  return t.item<double>();
}

}  // namespace cpu
}  // namespace lowbit
