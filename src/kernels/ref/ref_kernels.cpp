// The scalar reference kernels: the contract every SIMD kernel is tested against, in float and
// double.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "lowbit/kernels.h"

namespace lowbit {
namespace kernels {

namespace {

#include "../reduce_body.h"
// One message for a NaN or infinite min or max in every range operator.
template <class T>
void check_finite_range(T min, T max) {
  if (!detail::finite_range(min, max)) {
    throw std::invalid_argument("min and max must be finite (not NaN or infinite), got min = " +
                                std::to_string(min) + ", max = " + std::to_string(max));
  }
}
}  // namespace

template <class T>
FakeQuantParams<T> nudge(T min, T max, int num_bits, bool narrow_range) {
  if (num_bits < 2 || num_bits > 16) {
    throw std::invalid_argument("num_bits must be between 2 and 16, inclusive, got " +
                                std::to_string(num_bits));
  }
  check_finite_range(min, max);
  if (!detail::valid_range(min, max)) {
    throw std::invalid_argument("min has to be smaller than max, got min = " + std::to_string(min) +
                                ", max = " + std::to_string(max));
  }
  return detail::nudge_unchecked(min, max, num_bits, narrow_range);
}
template FakeQuantParams<float> nudge(float, float, int, bool);
template FakeQuantParams<double> nudge(double, double, int, bool);

template <class T>
Pow2Range<T> pow2_range(T min, T max, int num_bits, int max_exponent) {
  if (num_bits < 2 || num_bits > 16) {
    throw std::invalid_argument("num_bits must be between 2 and 16, inclusive, got " +
                                std::to_string(num_bits));
  }
  check_finite_range(min, max);
  Pow2Range<T> r;
  detail::pow2_range_unchecked(min, max, num_bits, max_exponent != kNoMaxExponent, max_exponent,
                               &r.min, &r.max, &r.exponent);
  return r;
}
template Pow2Range<float> pow2_range(float, float, int, int);
template Pow2Range<double> pow2_range(double, double, int, int);

namespace ref {

template <class T>
void fake_quant(const T* x, T* y, int64_t n, const FakeQuantParams<T>& p, FakeQuantRounding r) {
  if (r == FakeQuantRounding::kMulInvScale) {
    for (int64_t i = 0; i < n; ++i) y[i] = detail::fake_quant_mul(x[i], p);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = detail::fake_quant_div(x[i], p);
  }
}

template <class T>
void fake_quant_per_channel(const T* x, T* y, int64_t rows, int64_t channels,
                            const FakeQuantParams<T>* p, FakeQuantRounding r) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t k = i * channels + c;
      y[k] = r == FakeQuantRounding::kMulInvScale ? detail::fake_quant_mul(x[k], p[c])
                                                  : detail::fake_quant_div(x[k], p[c]);
    }
  }
}

template <class T>
void masked_grad(const T* g, const T* x, T* dx, int64_t n, T lo, T hi, Interval iv, double* below,
                 double* above) {
  const bool open = iv == Interval::kOpen;
  T lanes_below[kSumLanes] = {};
  T lanes_above[kSumLanes] = {};
  for (int64_t i = 0; i < n; ++i) {
    dx[i] = detail::masked_grad(g[i], x[i], lo, hi, open);
    lanes_below[i % kSumLanes] += g[i] * (x[i] < lo ? T(1) : T(0));
    lanes_above[i % kSumLanes] += g[i] * (x[i] > hi ? T(1) : T(0));
  }
  for (int l = 0; l < kSumLanes; ++l) {
    if (below) *below += static_cast<double>(lanes_below[l]);
    if (above) *above += static_cast<double>(lanes_above[l]);
  }
}

template <class T>
void masked_grad_per_channel(const T* g, const T* x, T* dx, int64_t rows, int64_t channels,
                             const T* lo, const T* hi, T* below, T* above) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t k = i * channels + c;
      dx[k] = detail::masked_grad(g[k], x[k], lo[c], hi[c], false);
      below[c] += g[k] * (x[k] < lo[c] ? T(1) : T(0));
      above[c] += g[k] * (x[k] > hi[c] ? T(1) : T(0));
    }
  }
}

template <class T>
void sign(const T* x, T* y, int64_t n, T scale) {
  for (int64_t i = 0; i < n; ++i) y[i] = detail::sign0_scaled(x[i], scale);
}

template <class T>
void sign_per_channel(const T* x, T* y, int64_t rows, int64_t channels, const T* scale) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t c = 0; c < channels; ++c) {
      y[i * channels + c] = detail::sign0_scaled(x[i * channels + c], scale[c]);
    }
  }
}

template <class T>
void heaviside(const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = detail::heaviside(x[i]);
}

template <class T>
void ternary(const T* x, T* y, int64_t n, T threshold) {
  for (int64_t i = 0; i < n; ++i) y[i] = detail::ternary(x[i], threshold);
}

template <class T>
void dorefa_activations(const T* x, T* y, int64_t n, T levels) {
  for (int64_t i = 0; i < n; ++i) y[i] = detail::dorefa_activations(x[i], levels);
}

template <class T>
void linear_mid_tread(const T* x, T* y, int64_t n, T levels, T max_value) {
  for (int64_t i = 0; i < n; ++i) y[i] = detail::linear_mid_tread(x[i], levels, max_value);
}

template <class T>
void approx_sign_grad(const T* g, const T* x, T* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = detail::approx_sign_grad(g[i], x[i]);
}

template <class T>
void fake_quant_packed(const T* x, T* y, uint8_t* code, int64_t n, const FakeQuantParams<T>& p,
                       FakeQuantRounding r, T lo, T hi) {
  fake_quant(x, y, n, p, r);
  if (code != nullptr) pack_window_codes(x, 0, n, lo, hi, code);
}

template <class T>
void fake_quant_per_channel_coded(const T* x, T* y, uint8_t* code, int64_t rows, int64_t channels,
                                  const FakeQuantParams<T>* p, FakeQuantRounding r, const T* lo,
                                  const T* hi) {
  fake_quant_per_channel(x, y, rows, channels, p, r);
  if (code == nullptr) return;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t c = 0; c < channels; ++c) {
      code[i * channels + c] = detail::window_code(x[i * channels + c], lo[c], hi[c]);
    }
  }
}

template <class T>
void fake_quant_per_channel_packed(const T* x, T* y, uint8_t* code, int64_t rows, int64_t channels,
                                   const FakeQuantParams<T>* p, FakeQuantRounding r, const T* lo,
                                   const T* hi) {
  fake_quant_per_channel(x, y, rows, channels, p, r);
  if (code == nullptr) return;
  // pack_codes asks for the elements in order, so the channel follows without a division.
  int64_t c = 0;
  pack_codes(
      0, rows * channels,
      [&](int64_t k) {
        const uint8_t w = detail::window_code(x[k], lo[c], hi[c]);
        c = c + 1 == channels ? 0 : c + 1;
        return w;
      },
      code);
}

template <class T>
void sign_packed(const T* x, T* y, uint8_t* code, int64_t n, T scale, T lo, T hi) {
  sign(x, y, n, scale);
  if (code != nullptr) pack_window_codes(x, 0, n, lo, hi, code);
}

template <class T>
void packed_grad(const T* g, const uint8_t* code, T* dx, int64_t n, double* below, double* above) {
  T lanes_below[kSumLanes] = {};
  T lanes_above[kSumLanes] = {};
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t c = packed_code(code, i);
    dx[i] = detail::coded_grad(g[i], c);
    lanes_below[i % kSumLanes] += g[i] * ((c & detail::kCodeBelow) ? T(1) : T(0));
    lanes_above[i % kSumLanes] += g[i] * ((c & detail::kCodeAbove) ? T(1) : T(0));
  }
  for (int l = 0; l < kSumLanes; ++l) {
    if (below) *below += static_cast<double>(lanes_below[l]);
    if (above) *above += static_cast<double>(lanes_above[l]);
  }
}

template <class T>
void packed_grad_per_channel(const T* g, const uint8_t* code, T* dx, int64_t rows, int64_t channels,
                             T* below, T* above) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t k = i * channels + c;
      const uint8_t ck = packed_code(code, k);
      dx[k] = detail::coded_grad(g[k], ck);
      below[c] += g[k] * ((ck & detail::kCodeBelow) ? T(1) : T(0));
      above[c] += g[k] * ((ck & detail::kCodeAbove) ? T(1) : T(0));
    }
  }
}

template <class T>
void swish_sign_grad(const T* g, const T* x, T* dx, int64_t n, T beta) {
  for (int64_t i = 0; i < n; ++i) dx[i] = detail::swish_sign_grad(g[i], x[i], beta);
}

template <class T>
T max_abs_tanh(const T* x, int64_t n) {
  T m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T a = std::fabs(detail::dorefa_tanh(x[i]));
    m = (a > m || std::isnan(a)) ? a : m;
  }
  return std::isnan(m) ? std::numeric_limits<T>::quiet_NaN() : m;  // one NaN whatever the payloads
}

template <class T>
T max_abs(const T* x, int64_t n) {
  T m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T a = std::fabs(x[i]);
    m = (a > m || std::isnan(a)) ? a : m;
  }
  return std::isnan(m) ? std::numeric_limits<T>::quiet_NaN() : m;  // one NaN whatever the payloads
}

template <class T>
void dorefa_weights(const T* x, T* y, int64_t n, T levels, T max_abs_tanh) {
  for (int64_t i = 0; i < n; ++i) y[i] = detail::dorefa_weight(x[i], levels, max_abs_tanh);
}

template <class T>
void dorefa_weights_grad(const T* g, const T* x, T* dx, int64_t n, T max_abs_tanh) {
  for (int64_t i = 0; i < n; ++i) dx[i] = detail::dorefa_weight_grad(g[i], x[i], max_abs_tanh);
}

template <class T>
void mean_abs_per_channel(const T* x, int64_t outer, int64_t channels, int64_t inner, T* out) {
  const double count = static_cast<double>(outer) * static_cast<double>(inner);
  for (int64_t c = 0; c < channels; ++c) {
    double s = 0;
    for (int64_t o = 0; o < outer; ++o) {
      const T* row = x + (o * channels + c) * inner;
      for (int64_t j = 0; j < inner; ++j) s += std::fabs(static_cast<double>(row[j]));
    }
    out[c] = static_cast<T>(count > 0 ? s / count : std::numeric_limits<double>::quiet_NaN());
  }
}

template <class T>
double sum_abs(const T* x, int64_t n) {
  return sum_abs_lanes(x, n);
}

template <class T>
void sum_abs_rows(const T* x, int64_t rows, int64_t channels, double* acc) {
  ::lowbit::kernels::sum_abs_rows(x, rows, channels, acc);
}

template <class T>
void sum_abs_above(const T* x, int64_t n, T d, double* sum, int64_t* count) {
  sum_abs_above_lanes(x, n, d, sum, count);
}

template <class T>
void twn_weight(const T* x, T* y, int64_t n, T threshold) {
  T mean = 0;
  mean_abs_per_channel(x, 1, 1, n, &mean);
  const T d = threshold * mean;
  double s = 0;
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > d) {
      s += std::fabs(static_cast<double>(x[i]));
      ++count;
    }
  }
  const T a = count > 0 ? static_cast<T>(s / static_cast<double>(count)) : T(0);
  for (int64_t i = 0; i < n; ++i) y[i] = detail::twn_value(x[i], d, a);
}

template <class T>
void ttq_weight(const T* x, T* y, int64_t n, T positive, T negative, T threshold_abs) {
  for (int64_t i = 0; i < n; ++i) y[i] = detail::ttq_value(x[i], positive, negative, threshold_abs);
}

template <class T>
void ttq_weight_grad(const T* g, const T* x, T* dx, int64_t n, T positive, T negative,
                     T threshold_abs, double* d_positive, double* d_negative) {
  // The sums in the lanes of masked_grad, so that every kernel set gets them bit for bit.
  T lanes_pos[kSumLanes] = {};
  T lanes_neg[kSumLanes] = {};
  for (int64_t i = 0; i < n; ++i) {
    dx[i] = detail::ttq_grad(g[i], x[i], positive, negative, threshold_abs);
    lanes_pos[i % kSumLanes] += g[i] * (x[i] > threshold_abs ? T(1) : T(0));
    lanes_neg[i % kSumLanes] += g[i] * (x[i] < -threshold_abs ? T(1) : T(0));
  }
  for (int l = 0; l < kSumLanes; ++l) {
    *d_negative += static_cast<double>(lanes_neg[l]);
    *d_positive += static_cast<double>(lanes_pos[l]);
  }
}

template <class T>
void twn(const T* x, T* y, int64_t n, T threshold_abs, T a) {
  for (int64_t i = 0; i < n; ++i) y[i] = detail::twn_value(x[i], threshold_abs, a);
}

template <class T>
void clipped_grad_scaled_rows(const T* g, const T* x, T* dx, int64_t rows, int64_t channels,
                              bool clipped, T clip, const T* scale) {
  for (int64_t k = 0; k < rows * channels; ++k) {
    dx[k] = detail::clipped_grad_scaled(g[k], x[k], clipped, clip, scale[k % channels]);
  }
}

#define LOWBIT_INSTANTIATE_REF(T)                                                                  \
  template void fake_quant<T>(const T*, T*, int64_t, const FakeQuantParams<T>&,                    \
                              FakeQuantRounding);                                                  \
  template void fake_quant_per_channel<T>(const T*, T*, int64_t, int64_t,                          \
                                          const FakeQuantParams<T>*, FakeQuantRounding);           \
  template void masked_grad<T>(const T*, const T*, T*, int64_t, T, T, Interval, double*, double*); \
  template void masked_grad_per_channel<T>(const T*, const T*, T*, int64_t, int64_t, const T*,     \
                                           const T*, T*, T*);                                      \
  template void sign<T>(const T*, T*, int64_t, T);                                                 \
  template void sign_per_channel<T>(const T*, T*, int64_t, int64_t, const T*);                     \
  template void heaviside<T>(const T*, T*, int64_t);                                               \
  template void ternary<T>(const T*, T*, int64_t, T);                                              \
  template void dorefa_activations<T>(const T*, T*, int64_t, T);                                   \
  template void linear_mid_tread<T>(const T*, T*, int64_t, T, T);                                  \
  template void approx_sign_grad<T>(const T*, const T*, T*, int64_t);                              \
  template void fake_quant_packed<T>(const T*, T*, uint8_t*, int64_t, const FakeQuantParams<T>&,   \
                                     FakeQuantRounding, T, T);                                     \
  template void fake_quant_per_channel_coded<T>(const T*, T*, uint8_t*, int64_t, int64_t,          \
                                                const FakeQuantParams<T>*, FakeQuantRounding,      \
                                                const T*, const T*);                               \
  template void fake_quant_per_channel_packed<T>(const T*, T*, uint8_t*, int64_t, int64_t,         \
                                                 const FakeQuantParams<T>*, FakeQuantRounding,     \
                                                 const T*, const T*);                              \
  template void sign_packed<T>(const T*, T*, uint8_t*, int64_t, T, T, T);                          \
  template void packed_grad<T>(const T*, const uint8_t*, T*, int64_t, double*, double*);           \
  template void packed_grad_per_channel<T>(const T*, const uint8_t*, T*, int64_t, int64_t, T*,     \
                                           T*);                                                    \
  template void swish_sign_grad<T>(const T*, const T*, T*, int64_t, T);                            \
  template void dorefa_weights<T>(const T*, T*, int64_t, T, T);                                    \
  template void dorefa_weights_grad<T>(const T*, const T*, T*, int64_t, T);                        \
  template T max_abs_tanh<T>(const T*, int64_t);                                                   \
  template T max_abs<T>(const T*, int64_t);                                                        \
  template void mean_abs_per_channel<T>(const T*, int64_t, int64_t, int64_t, T*);                  \
  template void twn_weight<T>(const T*, T*, int64_t, T);                                           \
  template double sum_abs<T>(const T*, int64_t);                                                   \
  template void sum_abs_rows<T>(const T*, int64_t, int64_t, double*);                              \
  template void sum_abs_above<T>(const T*, int64_t, T, double*, int64_t*);                         \
  template void twn<T>(const T*, T*, int64_t, T, T);                                               \
  template void clipped_grad_scaled_rows<T>(const T*, const T*, T*, int64_t, int64_t, bool, T,     \
                                            const T*);                                             \
  template void ttq_weight<T>(const T*, T*, int64_t, T, T, T);                                     \
  template void ttq_weight_grad<T>(const T*, const T*, T*, int64_t, T, T, T, double*, double*);

LOWBIT_INSTANTIATE_REF(float)
LOWBIT_INSTANTIATE_REF(double)
#undef LOWBIT_INSTANTIATE_REF

}  // namespace ref
}  // namespace kernels
}  // namespace lowbit
